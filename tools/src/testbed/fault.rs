//! Faults on the real link, executed when the caller says (the driver and the scenario decide
//! when; this only carries them out).

use std::time::{Duration, Instant};

use super::{Host, Probe, TestbedError, DST_ADDR};

impl Probe {
    /// A hard cut: destroys every migration connection (to or from the destination's `port`)
    /// in both hosts with `ss -K`, and returns how many sockets it destroyed.
    ///
    /// A socket destroyed by `ss -K` fails with ECONNABORTED in the process that holds it, and
    /// sends a RST that makes its peer fail with ECONNRESET. To give both QEMUs the same error
    /// (each its own socket aborted, as when our relay closed both ends), the link is down while
    /// both ends are destroyed, so no RST crosses; it comes back up afterwards unless
    /// `keep_down`.
    pub fn cut(&self, port: u16, keep_down: bool) -> Result<usize, TestbedError> {
        let ss = self.tools().ss.clone();
        self.set_link_up(false)?;
        let mut killed = 0;
        let mut first_err = None;
        for host in [Host::Destination, Host::Source] {
            let filter = format!(
                "( dport = :{port} or sport = :{port} ) and ( dst {DST_ADDR} or src {DST_ADDR} )"
            );
            match self.run(host, &ss, ["-K", "-tnH", &filter]) {
                Ok(out) => {
                    killed += out
                        .lines()
                        .filter(|l| !l.starts_with(char::is_whitespace) && !l.trim().is_empty())
                        .count()
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let up = if keep_down {
            Ok(())
        } else {
            self.set_link_up(true)
        };
        match first_err {
            Some(e) => Err(e),
            None => up.map(|()| killed),
        }
    }

    /// Sets the link (the source's veth end, which takes the carrier of the other end with it)
    /// down or up. Down is a silent partition: no RST, no FIN, packets are dropped; tbf's
    /// configuration is kept and comes back with the link.
    pub fn set_link_up(&self, up: bool) -> Result<(), TestbedError> {
        let ip = self.tools().ip.clone();
        let state = if up { "up" } else { "down" };
        self.run(
            Host::Source,
            &ip,
            ["link", "set", "dev", Host::Source.dev(), state],
        )?;
        Ok(())
    }

    /// Whether the source's veth end is administratively up.
    pub fn link_is_up(&self) -> Result<bool, TestbedError> {
        let ip = self.tools().ip.clone();
        let out = self.run(
            Host::Source,
            &ip,
            ["-o", "link", "show", "dev", Host::Source.dev()],
        )?;
        let flags = out
            .split('<')
            .nth(1)
            .and_then(|r| r.split('>').next())
            .unwrap_or("");
        Ok(flags.split(',').any(|f| f == "UP"))
    }

    /// A silent partition of `down` (blocking): the link down, then up again. Returns how long
    /// the link was actually down. The link is brought back up even if the wait is interrupted
    /// by an error in between.
    pub fn partition(&self, down: Duration) -> Result<Duration, TestbedError> {
        self.set_link_up(false)?;
        let t0 = Instant::now();
        std::thread::sleep(down);
        let r = self.set_link_up(true);
        let lasted = t0.elapsed();
        r.map(|()| lasted)
    }
}
