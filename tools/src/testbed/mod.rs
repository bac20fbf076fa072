//! Two hosts on one machine: the source and the destination of a migration, each a network
//! namespace, joined by a veth pair whose two directions are shaped by the kernel's `tbf` qdisc.
//!
//! ```text
//!   source host (netns)                                  destination host (netns)
//!   lo up                                                lo up
//!   pc-src 169.254.213.1/30 ==== veth pair ==== pc-dst 169.254.213.2/30
//!   egress: tbf (rate, burst, limit)             egress: tbf (rate, burst, limit)
//!   tcp_wmem, tcp_rmem (per namespace)           tcp_wmem, tcp_rmem (per namespace)
//! ```
//!
//! Each namespace is held by a process of ours (`unshare --net sh -c ...`) that reads a pipe whose
//! only writer is this process. When the [`Testbed`] is dropped, or this process ends in any way
//! (return, panic, Ctrl-C, SIGKILL), the pipe closes; the holder then kills every process left in
//! its namespace and exits, and the kernel frees the namespace and the veth pair with it. Nothing
//! is named, mounted or created in the machine's own namespace, so two testbeds (of two workers)
//! never collide, and nothing outlives the run. See docs/testbed.md.
//!
//! The addresses are IPv4 link-local (169.254.0.0/16, RFC 3927): routers never forward them, and
//! they exist only on the two veth ends inside the two namespaces, which have no other interface
//! than `lo`; they route nowhere else.

pub mod delay;
mod error;
pub mod fault;
pub mod measure;

use std::ffi::OsStr;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub use delay::DelayStage;
pub use error::{effective_uid, require_root, TestbedError, Tools};
pub use measure::{Backlog, LinkMonitor, LinkReport, QdiscStats, TcpConn};

/// The source host's address on the link.
pub const SRC_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 213, 1);
/// The destination host's address on the link (the migration URI's host).
pub const DST_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 213, 2);
/// Both addresses are in one /30: the two ends and nothing else.
pub const PREFIX_LEN: u8 = 30;
/// The veth end in the source host (its egress is the source -> destination direction).
pub const SRC_DEV: &str = "pc-src";
/// The veth end in the destination host (its egress is the destination -> source direction).
pub const DST_DEV: &str = "pc-dst";
/// With a delay stage: the wire namespace's ends of the source's and destination's veth pairs.
pub const WIRE_SRC_DEV: &str = "w-src";
pub const WIRE_DST_DEV: &str = "w-dst";

/// One of the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    Source,
    Destination,
}

impl Host {
    pub fn name(self) -> &'static str {
        match self {
            Host::Source => "source",
            Host::Destination => "destination",
        }
    }

    /// This host's address on the link.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Host::Source => SRC_ADDR,
            Host::Destination => DST_ADDR,
        }
    }

    /// This host's veth end; its egress qdisc shapes the direction leaving this host.
    pub fn dev(self) -> &'static str {
        match self {
            Host::Source => SRC_DEV,
            Host::Destination => DST_DEV,
        }
    }

    pub fn peer(self) -> Host {
        match self {
            Host::Source => Host::Destination,
            Host::Destination => Host::Source,
        }
    }
}

/// `net.ipv4.tcp_wmem` / `tcp_rmem`: minimum, initial and maximum buffer in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMem {
    pub min: u64,
    pub default: u64,
    pub max: u64,
}

impl TcpMem {
    fn sysctl_value(self) -> String {
        format!("{} {} {}", self.min, self.default, self.max)
    }
}

/// The link's parameters. Both directions get the same `tbf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// The rate of each direction, bytes per second (the only rate model: the kernel's).
    pub rate_bytes_per_sec: u64,
    /// tbf's bucket: bytes that may leave back to back at line speed after an idle period.
    pub burst_bytes: u64,
    /// tbf's queue: bytes that may wait for tokens; more is dropped (the switch's buffer).
    pub limit_bytes: u64,
    /// The round trip the link models, used to size the TCP buffers: [`LAN_RTT`] plus
    /// `added_rtt`.
    pub model_rtt: Duration,
    /// Round trip added by the delay stage (half each way); zero: no stage, the veth pair joins
    /// the hosts directly. Whether it is zero is fixed when the testbed is built.
    pub added_rtt: Duration,
    pub tcp_wmem: TcpMem,
    pub tcp_rmem: TcpMem,
}

/// The round trip a LAN between two hypervisors has, used to size buffers when none is given.
pub const LAN_RTT: Duration = Duration::from_millis(1);

impl LinkConfig {
    /// A link of `rate_mib_s` MiB/s each way with the defaults below.
    ///
    /// How the defaults are chosen (also in docs/testbed.md):
    /// - TCP buffers: the maximum of `tcp_wmem` and `tcp_rmem` = 2 x (bandwidth-delay product at
    ///   `model_rtt` + 5 ms at the rate), at least 128 KiB. That is about where Linux's
    ///   autotuning settles on a real path of this rate and round trip with a shallow switch
    ///   buffer (it sizes a socket's buffers to about twice its congestion window, and the
    ///   window grows to the BDP plus the queue it can build), so the bytes that wait in the
    ///   source's socket at the switch are those a real link would hold, not the 4 MiB (send) /
    ///   32 MiB (receive) that this machine's defaults allow. The minimum and initial values are
    ///   the kernel's (4 KiB; 16 KiB send, 128 KiB receive).
    /// - `limit` (tbf's queue, the switch's buffer) = twice that buffer, at least 64 KiB: the
    ///   two connections of a migration (postcopy-preempt) can each have a send buffer in
    ///   flight, and a queue shallower than that turns the testbed into a lossy link (measured:
    ///   with a 5 ms queue, 14,000 drops and 37 % of the bytes sent twice over 2 x 48 MiB; with
    ///   this one, none).
    /// - `burst` = 1 ms at the rate, at least 16 KiB (about ten full-size frames): tbf needs a
    ///   bucket of at least one frame, and a small bucket keeps the rate exact over short
    ///   windows.
    ///
    /// At 32 MiB/s and 1 ms: BDP 33 KiB, buffers 394 KiB (12 ms of the link), queue 788 KiB.
    pub fn new(rate_mib_s: f64) -> LinkConfig {
        LinkConfig::with_rtt(rate_mib_s, Duration::ZERO)
    }

    /// As [`LinkConfig::new`], with `added_rtt` added by the delay stage (and the buffers sized
    /// for a round trip of [`LAN_RTT`] + `added_rtt`).
    pub fn with_rtt(rate_mib_s: f64, added_rtt: Duration) -> LinkConfig {
        let model_rtt = LAN_RTT + added_rtt;
        let rate = (rate_mib_s * 1024.0 * 1024.0).round().max(1.0) as u64;
        let at = |d: Duration| (rate as f64 * d.as_secs_f64()).round() as u64;
        let burst = at(Duration::from_millis(1)).max(16 * 1024);
        let bdp = at(model_rtt);
        let buf = (2 * (bdp + at(Duration::from_millis(5)))).max(128 * 1024);
        let limit = (2 * buf).max(64 * 1024);
        LinkConfig {
            rate_bytes_per_sec: rate,
            burst_bytes: burst,
            limit_bytes: limit,
            model_rtt,
            added_rtt,
            tcp_wmem: TcpMem {
                min: 4096,
                default: 16 * 1024,
                max: buf,
            },
            tcp_rmem: TcpMem {
                min: 4096,
                default: 128 * 1024,
                max: buf,
            },
        }
    }

    pub fn rate_mib_s(&self) -> f64 {
        self.rate_bytes_per_sec as f64 / (1024.0 * 1024.0)
    }

    fn check(&self) -> Result<(), TestbedError> {
        let bad = |what: String| Err(TestbedError::BadParameter { what });
        if self.rate_bytes_per_sec < 1024 {
            return bad(format!(
                "rate {} B/s: at least 1 KiB/s",
                self.rate_bytes_per_sec
            ));
        }
        // tbf refuses a bucket smaller than a frame: 1514 bytes on Ethernet.
        if self.burst_bytes < 1514 {
            return bad(format!(
                "burst {} bytes: at least one frame (1514)",
                self.burst_bytes
            ));
        }
        if self.limit_bytes < 1514 {
            return bad(format!(
                "limit {} bytes: at least one frame (1514)",
                self.limit_bytes
            ));
        }
        for (name, m) in [("tcp_wmem", self.tcp_wmem), ("tcp_rmem", self.tcp_rmem)] {
            if m.min == 0 || m.min > m.default || m.default > m.max {
                return bad(format!(
                    "{name} {}: needs 0 < min <= default <= max",
                    m.sysctl_value()
                ));
            }
        }
        Ok(())
    }
}

/// A process that holds one host's network namespace open. Dropped: its pipe closes, it kills
/// what is left in the namespace and exits.
#[derive(Debug)]
struct Holder {
    name: &'static str,
    child: Child,
    /// The write end of the holder's stdin; closing it is the signal to go.
    pipe: Option<ChildStdin>,
}

/// The holder, run by `sh` in a new network namespace. It ignores the signals a terminal or a
/// process group sends (so Ctrl-C cannot kill it before it has cleaned up), waits for its stdin
/// to close (the testbed dropped, or our process gone however it ended), then kills every process
/// still in its namespace (a QEMU started there) so that the namespace and the veth pair go.
const HOLDER_SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
read -r _ || :
me=$(readlink /proc/$$/ns/net)
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ] && kill -9 "$pid" 2>/dev/null
done
exit 0
"#;

impl Holder {
    fn start(tools: &Tools, name: &'static str) -> Result<Holder, TestbedError> {
        let mut cmd = Command::new(&tools.unshare);
        cmd.arg("--net")
            .arg("--")
            .arg(&tools.sh)
            .arg("-c")
            .arg(HOLDER_SCRIPT)
            .arg("pc-netns-holder")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| TestbedError::Spawn {
            command: describe(&cmd),
            source,
        })?;
        let pipe = child.stdin.take();
        let mut holder = Holder { name, child, pipe };
        holder.wait_in_own_namespace()?;
        Ok(holder)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Waits until the holder has left our namespace: right after the spawn, /proc/PID/ns/net
    /// is still ours, and configuring it would configure this machine's own network.
    fn wait_in_own_namespace(&mut self) -> Result<(), TestbedError> {
        let ours =
            std::fs::read_link("/proc/self/ns/net").map_err(|source| TestbedError::Proc {
                path: "/proc/self/ns/net".into(),
                source,
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                if !status.success() {
                    return Err(TestbedError::NoNetns {
                        stderr: stderr.trim().to_string(),
                    });
                }
                return Err(self.error(format!("exited at once ({status})")));
            }
            // The holder execs sh after unshare(2); once its namespace differs from ours it is
            // in its own.
            let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid()));
            let ns = std::fs::read_link(self.netns_path());
            if let (Ok(_), Ok(ns)) = (exe, ns) {
                if ns != ours {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(self.error("did not enter a new network namespace within 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn error(&self, what: String) -> TestbedError {
        TestbedError::Holder {
            host: self.name,
            pid: self.pid(),
            what,
        }
    }

    /// Closes the pipe and waits for the holder to clean up and exit; kills it after 10 s.
    fn stop(&mut self) -> Result<(), TestbedError> {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(
                        self.error("did not exit within 10 s of the teardown; killed".into())
                    );
                }
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A cheap handle that runs commands in the testbed's namespaces: measurements and faults use
/// it, from any thread. It does not keep the namespaces alive; once the [`Testbed`] is gone its
/// commands fail.
#[derive(Debug, Clone)]
pub struct Probe {
    tools: Tools,
    src_netns: PathBuf,
    dst_netns: PathBuf,
}

impl Probe {
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The namespace file of a host (/proc/PID/ns/net of its holder).
    pub fn netns_path(&self, host: Host) -> &PathBuf {
        match host {
            Host::Source => &self.src_netns,
            Host::Destination => &self.dst_netns,
        }
    }

    /// `program` to be run inside `host`'s network namespace (through nsenter; nothing else of
    /// the process changes: same mount namespace, files, unix sockets).
    pub fn command(&self, host: Host, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(&self.tools.nsenter);
        let mut net = std::ffi::OsString::from("--net=");
        net.push(self.netns_path(host));
        c.arg(net).arg("--").arg(program);
        c
    }

    /// Runs a tool inside `host`'s namespace; its stdout, or an error with its stderr.
    pub fn run<I, S>(&self, host: Host, program: &PathBuf, args: I) -> Result<String, TestbedError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(host, program);
        c.args(args);
        run_output(&mut c)
    }

    fn ip<const N: usize>(&self, host: Host, args: [&str; N]) -> Result<String, TestbedError> {
        self.run(host, &self.tools.ip, args)
    }

    fn tc<const N: usize>(&self, host: Host, args: [&str; N]) -> Result<String, TestbedError> {
        self.run(host, &self.tools.tc, args)
    }

    /// Writes a sysctl of `host`'s namespace (/proc/sys/net is per network namespace, as seen by
    /// the process that opens it; no procps needed).
    fn write_sysctl(&self, host: Host, key: &str, value: &str) -> Result<(), TestbedError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let script = r#"printf '%s\n' "$1" > "$2""#;
        let sh = self.tools.sh.clone();
        self.run(host, &sh, ["-c", script, "sh", value, &path])?;
        Ok(())
    }

    /// Reads a sysctl of `host`'s namespace.
    pub fn read_sysctl(&self, host: Host, key: &str) -> Result<String, TestbedError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let sh = self.tools.sh.clone();
        let out = self.run(host, &sh, ["-c", r#"cat "$1""#, "sh", &path])?;
        Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// The two hosts and their link. Dropped: torn down (see the module documentation).
#[derive(Debug)]
pub struct Testbed {
    probe: Probe,
    config: LinkConfig,
    // Fields drop in order: the delay stage's thread stops first, then the namespaces go (the
    // veth pairs with whichever end's namespace is freed first).
    delay: Option<DelayStage>,
    dst: Holder,
    src: Holder,
    /// The namespace between the hosts, with a delay stage only.
    wire: Option<Holder>,
}

impl Testbed {
    /// Checks the host, creates the two namespaces and the link, and applies `config`.
    pub fn new(config: LinkConfig) -> Result<Testbed, TestbedError> {
        config.check()?;
        require_root()?;
        let tools = Tools::find()?;
        let src = Holder::start(&tools, Host::Source.name())?;
        let dst = Holder::start(&tools, Host::Destination.name())?;
        let wire = if config.added_rtt.is_zero() {
            None
        } else {
            Some(Holder::start(&tools, "wire")?)
        };
        let probe = Probe {
            tools,
            src_netns: src.netns_path(),
            dst_netns: dst.netns_path(),
        };
        let mut tb = Testbed {
            probe,
            config: config.clone(),
            delay: None,
            dst,
            src,
            wire,
        };
        tb.configure(&config)?;
        Ok(tb)
    }

    /// Brings the topology to `config`; running it again with the same or another config only
    /// changes what differs (every step is a create-if-missing or a replace).
    pub fn configure(&mut self, config: &LinkConfig) -> Result<(), TestbedError> {
        config.check()?;
        if config.added_rtt.is_zero() != self.wire.is_none() {
            return Err(TestbedError::BadParameter {
                what: format!(
                    "added round trip {:?}: a testbed built {} a delay stage keeps it that way; \
                     build another",
                    config.added_rtt,
                    if self.wire.is_none() {
                        "without"
                    } else {
                        "with"
                    }
                ),
            });
        }
        for host in [Host::Source, Host::Destination] {
            self.probe.ip(host, ["link", "set", "lo", "up"])?;
        }
        if self.wire.is_some() {
            self.build_wire(config)?;
        } else if self
            .probe
            .ip(Host::Source, ["-o", "link", "show", "dev", SRC_DEV])
            .is_err()
        {
            let peer_ns = self.dst.pid().to_string();
            self.probe.ip(
                Host::Source,
                [
                    "link", "add", SRC_DEV, "type", "veth", "peer", "name", DST_DEV, "netns",
                    &peer_ns,
                ],
            )?;
        }
        let p = &self.probe;
        for host in [Host::Source, Host::Destination] {
            let cidr = format!("{}/{}", host.addr(), PREFIX_LEN);
            p.ip(host, ["addr", "replace", &cidr, "dev", host.dev()])?;
            p.ip(host, ["link", "set", "dev", host.dev(), "up"])?;
            p.write_sysctl(host, "net.ipv4.tcp_wmem", &config.tcp_wmem.sysctl_value())?;
            p.write_sysctl(host, "net.ipv4.tcp_rmem", &config.tcp_rmem.sysctl_value())?;
            self.shape(host, config)?;
        }
        self.config = config.clone();
        Ok(())
    }

    /// The delay stage's topology: each host's veth end paired with an end in the wire
    /// namespace, and the forwarder between those (see [`delay`]; it exists because this kernel
    /// has no netem).
    fn build_wire(&mut self, config: &LinkConfig) -> Result<(), TestbedError> {
        let Some(wire) = &self.wire else {
            return Ok(());
        };
        let (wire_ns, wire_path) = (wire.pid().to_string(), wire.netns_path());
        let p = &self.probe;
        for (host, wire_dev) in [
            (Host::Source, WIRE_SRC_DEV),
            (Host::Destination, WIRE_DST_DEV),
        ] {
            if p.ip(host, ["-o", "link", "show", "dev", host.dev()])
                .is_err()
            {
                p.ip(
                    host,
                    [
                        "link",
                        "add",
                        host.dev(),
                        "type",
                        "veth",
                        "peer",
                        "name",
                        wire_dev,
                        "netns",
                        &wire_ns,
                    ],
                )?;
            }
        }
        let in_wire = |args: &[&str]| {
            let mut c = Command::new(&p.tools.nsenter);
            c.arg(format!("--net={}", wire_path.display()))
                .arg("--")
                .arg(&p.tools.ip)
                .args(args);
            run_output(&mut c)
        };
        for dev in [WIRE_SRC_DEV, WIRE_DST_DEV] {
            in_wire(&["link", "set", "dev", dev, "up"])?;
        }
        let one_way = config.added_rtt / 2;
        match &self.delay {
            Some(d) => d.set_one_way(one_way),
            None => {
                self.delay = Some(DelayStage::start(
                    &wire_path,
                    WIRE_SRC_DEV,
                    WIRE_DST_DEV,
                    one_way,
                )?)
            }
        }
        Ok(())
    }

    /// `tbf` on `host`'s egress: the direction leaving `host`.
    fn shape(&self, host: Host, config: &LinkConfig) -> Result<(), TestbedError> {
        let rate = format!("{}bit", config.rate_bytes_per_sec * 8);
        let burst = config.burst_bytes.to_string();
        let limit = config.limit_bytes.to_string();
        let r = self.probe.tc(
            host,
            [
                "qdisc",
                "replace",
                "dev",
                host.dev(),
                "root",
                "tbf",
                "rate",
                &rate,
                "burst",
                &burst,
                "limit",
                &limit,
            ],
        );
        match r {
            Err(TestbedError::CommandFailed { stderr, .. }) if qdisc_missing(&stderr) => {
                Err(TestbedError::NoQdisc {
                    qdisc: "tbf",
                    stderr,
                })
            }
            other => other.map(drop),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// A handle for measurements and faults, usable from other threads.
    pub fn probe(&self) -> Probe {
        self.probe.clone()
    }

    /// `program` to be run inside `host` (see [`Probe::command`]). QMP stays on unix sockets,
    /// which work across network namespaces; the migration URI is `tcp:<DST_ADDR>:<port>`.
    pub fn command(&self, host: Host, program: impl AsRef<OsStr>) -> Command {
        self.probe.command(host, program)
    }

    /// The migration URI for a destination listening on `port`.
    pub fn migration_uri(&self, port: u16) -> String {
        format!("tcp:{DST_ADDR}:{port}")
    }

    /// The pids of the two holder processes (source, destination).
    pub fn holder_pids(&self) -> (u32, u32) {
        (self.src.pid(), self.dst.pid())
    }

    /// The pid of the wire namespace's holder (with a delay stage).
    pub fn wire_pid(&self) -> Option<u32> {
        self.wire.as_ref().map(Holder::pid)
    }

    /// Frames the delay stage has forwarded (with one).
    pub fn delayed_frames(&self) -> Option<u64> {
        self.delay.as_ref().map(DelayStage::forwarded)
    }

    /// Mean and largest lateness of the delay stage's frames (with one).
    pub fn delay_lateness(&self) -> Option<(Duration, Duration)> {
        self.delay.as_ref().map(DelayStage::lateness)
    }

    /// Tears down now and reports a holder that had to be killed (Drop does the same silently).
    pub fn teardown(mut self) -> Result<(), TestbedError> {
        self.delay.take();
        let d = self.dst.stop();
        let s = self.src.stop();
        let w = self.wire.as_mut().map_or(Ok(()), Holder::stop);
        d.and(s).and(w)
    }
}

/// Whether `tc`'s complaint means the kernel lacks the qdisc: "Error: Specified qdisc kind is
/// unknown." from the kernel (iproute2 6.1 on 6.x kernels, as `netem` gives here), or tc's own
/// "Unknown qdisc" from older iproute2.
fn qdisc_missing(stderr: &str) -> bool {
    stderr.contains("qdisc kind is unknown") || stderr.contains("Unknown qdisc")
}

/// `program args...` as a shell-like string for messages.
pub(crate) fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `c` to its end; its stdout, or an error carrying its stderr.
pub(crate) fn run_output(c: &mut Command) -> Result<String, TestbedError> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TestbedError::Spawn {
            command: describe(c),
            source,
        })?;
    if !out.status.success() {
        return Err(TestbedError::CommandFailed {
            command: describe(c),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qdisc_is_recognised_in_tcs_words() {
        assert!(qdisc_missing("Error: Specified qdisc kind is unknown."));
        assert!(qdisc_missing(
            "Unknown qdisc \"tbf\", hence option \"rate\" is unparsable"
        ));
        assert!(!qdisc_missing("Error: Exclusivity flag on, cannot modify."));
        let e = TestbedError::NoQdisc {
            qdisc: "tbf",
            stderr: "Error: Specified qdisc kind is unknown.".into(),
        };
        assert_eq!(
            e.to_string(),
            "the kernel has no `tbf` queueing discipline (module sch_tbf); the testbed shapes the \
             link with it: Error: Specified qdisc kind is unknown."
        );
    }

    #[test]
    fn defaults_scale_with_the_rate_and_the_round_trip() {
        let c = LinkConfig::with_rtt(32.0, Duration::from_millis(10));
        // BDP at 11 ms + 5 ms of queue, twice: 2 x 16 ms at 32 MiB/s.
        assert_eq!(c.tcp_wmem.max, 2 * (369099 + 167772));
        assert_eq!(c.limit_bytes, 2 * c.tcp_wmem.max);
        assert_eq!(c.added_rtt, Duration::from_millis(10));
        // A slow link keeps the floors.
        let slow = LinkConfig::new(1.0);
        assert_eq!(slow.tcp_rmem.max, 128 * 1024);
        assert_eq!(slow.burst_bytes, 16 * 1024);
    }
}
