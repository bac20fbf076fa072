//! What the link did: the qdisc's own counters (`tc -s -j qdisc`), the sockets of the migration
//! (`ss -tni` inside each namespace), sampled while a migration runs, summed up in a
//! [`LinkReport`].

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{describe, Host, Probe, TestbedError, DST_ADDR};

/// A qdisc's counters (`tc -s -j qdisc show dev X`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QdiscStats {
    /// Bytes the qdisc has let through (frames with their Ethernet header).
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    /// Bytes waiting in the qdisc now.
    pub backlog: u64,
    pub qlen: u64,
    /// The rate tbf is configured with, bytes per second.
    pub rate: u64,
}

/// One TCP socket as `ss -tni` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpConn {
    pub state: String,
    pub local: SocketAddrV4,
    pub peer: SocketAddrV4,
    /// Bytes received and not yet read by the application.
    pub recv_q: u64,
    /// Bytes written by the application and not yet acknowledged by the peer (queued in the
    /// socket, in the qdisc, or in flight).
    pub send_q: u64,
    /// Of `send_q`, bytes not yet handed to the network (`notsent:`).
    pub notsent: u64,
    /// Smoothed round-trip time, ms (`rtt:` srtt/rttvar).
    pub srtt_ms: Option<f64>,
    /// What this socket has sent again.
    pub retrans: Retransmissions,
}

/// What TCP sent again, on one socket or summed over several: after a drop at tbf's queue, or
/// when one of TCP's timers fired before an acknowledgement came (a busy host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retransmissions {
    /// Bytes sent again (`bytes_retrans:`).
    pub bytes: u64,
    /// Segments sent again (`retrans:now/total`, the total).
    pub segments: u64,
    /// Segments the peer reported receiving twice (`dsack_dups:`, D-SACK, RFC 2883): a
    /// retransmission whose original had arrived, so not a loss.
    pub dsack_dups: u64,
}

impl Retransmissions {
    /// Segments sent again that the peer did not report as duplicates: packets lost on the way
    /// (the kernel's own test, `dsack_dups` against `total_retrans`). A retransmission the peer
    /// reported twice-received was a timer firing early, not a loss.
    pub fn lost_segments(&self) -> u64 {
        self.segments.saturating_sub(self.dsack_dups)
    }
}

impl std::iter::Sum for Retransmissions {
    fn sum<I: Iterator<Item = Retransmissions>>(iter: I) -> Retransmissions {
        iter.fold(Retransmissions::default(), |a, r| Retransmissions {
            bytes: a.bytes + r.bytes,
            segments: a.segments + r.segments,
            dsack_dups: a.dsack_dups + r.dsack_dups,
        })
    }
}

impl Probe {
    /// The counters of the root qdisc on `host`'s veth end (its egress direction).
    pub fn qdisc_stats(&self, host: Host) -> Result<QdiscStats, TestbedError> {
        let tc = self.tools().tc.clone();
        let out = self.run(host, &tc, ["-s", "-j", "qdisc", "show", "dev", host.dev()])?;
        parse_qdisc(&out).map_err(|what| TestbedError::Parse {
            command: describe(&self.command(host, &tc)) + " -s -j qdisc show",
            what,
        })
    }

    /// Every TCP socket (not listening) in `host`'s namespace.
    pub fn tcp_conns(&self, host: Host) -> Result<Vec<TcpConn>, TestbedError> {
        let ss = self.tools().ss.clone();
        let out = self.run(host, &ss, ["-tniH"])?;
        parse_ss(&out).map_err(|what| TestbedError::Parse {
            command: "ss -tniH".into(),
            what,
        })
    }

    /// The migration's connections as seen in `host`: sockets between the two hosts with the
    /// destination's `port` at one end.
    pub fn migration_conns(&self, host: Host, port: u16) -> Result<Vec<TcpConn>, TestbedError> {
        let dst = SocketAddrV4::new(DST_ADDR, port);
        Ok(self
            .tcp_conns(host)?
            .into_iter()
            .filter(|c| c.peer == dst || c.local == dst)
            .filter(|c| c.state != "LISTEN")
            .collect())
    }

    /// The bytes that stand between the source and the destination QEMU right now.
    pub fn backlog(&self, port: u16) -> Result<Backlog, TestbedError> {
        let src = self.migration_conns(Host::Source, port)?;
        let dst = self.migration_conns(Host::Destination, port)?;
        let q = self.qdisc_stats(Host::Source)?;
        let src_send_q: u64 = src.iter().map(|c| c.send_q).sum();
        let dst_recv_q: u64 = dst.iter().map(|c| c.recv_q).sum();
        Ok(Backlog {
            src_send_q,
            src_notsent: src.iter().map(|c| c.notsent).sum(),
            qdisc_backlog: q.backlog,
            dst_recv_q,
            total: src_send_q + dst_recv_q,
        })
    }
}

/// The bytes in front of the destination QEMU at one moment (the driver's switch to post-copy:
/// the device state waits behind all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Written by the source QEMU, not yet acknowledged by the destination's kernel (includes
    /// `src_notsent` and `qdisc_backlog`).
    pub src_send_q: u64,
    /// Of `src_send_q`, still in the socket's buffer.
    pub src_notsent: u64,
    /// Of `src_send_q`, waiting in tbf's queue.
    pub qdisc_backlog: u64,
    /// Received by the destination's kernel, not yet read by the destination QEMU.
    pub dst_recv_q: u64,
    /// `src_send_q + dst_recv_q`.
    pub total: u64,
}

/// The link object of `postcopy migrate --json` (issue 13).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkReport {
    /// What shaped the link: "netns+veth+tbf", with "+delay-stage" when a round trip is added.
    pub model: String,
    /// The configured rate of each direction.
    pub rate_mib_s: f64,
    /// Source -> destination bytes (the qdisc's counter) over the time between the first and
    /// the last sample in which they grew.
    pub achieved_mib_s: f64,
    /// Distinct migration connections seen in the source host.
    pub connections: usize,
    /// [`Backlog::total`] at the switch, when one was marked.
    pub backlog_at_switch_bytes: Option<u64>,
    /// Round trip added by a delay stage (0: none).
    pub rtt_ms: f64,
}

/// More than the JSON object: for tests and the documentation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkDetail {
    pub report: LinkReport,
    /// Bytes the source's egress qdisc let through while monitored.
    pub bytes: u64,
    /// From the first to the last sample in which the counter grew.
    pub active: Duration,
    /// Packets tbf dropped at its queue (the sender then retransmits them).
    pub drops: u64,
    /// What the source's migration sockets retransmitted (as of their last sample each).
    pub retrans: Retransmissions,
    pub backlog_at_switch: Option<Backlog>,
    /// The connections (source-side local address) seen.
    pub conns: Vec<SocketAddrV4>,
    /// Mean smoothed RTT of the migration sockets over the samples, ms.
    pub mean_srtt_ms: Option<f64>,
    pub samples: usize,
}

#[derive(Debug, Default)]
struct Samples {
    /// (time, source egress bytes)
    bytes: Vec<(Instant, u64)>,
    drops: u64,
    conns: BTreeSet<SocketAddrV4>,
    /// The last retransmission counters seen per connection.
    retrans: std::collections::BTreeMap<SocketAddrV4, Retransmissions>,
    srtt: Vec<f64>,
    switch: Option<Backlog>,
    errors: Vec<String>,
}

/// Samples the link every `interval` in a thread while a migration runs.
#[derive(Debug)]
pub struct LinkMonitor {
    probe: Probe,
    port: u16,
    rate_mib_s: f64,
    rtt_ms: f64,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<JoinHandle<()>>,
}

impl LinkMonitor {
    /// Starts sampling the link of `probe` for the migration to the destination's `port`.
    pub fn start(
        probe: Probe,
        port: u16,
        rate_mib_s: f64,
        rtt_ms: f64,
        interval: Duration,
    ) -> LinkMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let (p, s, st) = (probe.clone(), samples.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                sample(&p, port, &s);
                thread::sleep(interval);
            }
            sample(&p, port, &s);
        });
        LinkMonitor {
            probe,
            port,
            rate_mib_s,
            rtt_ms,
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Records the backlog now (call it at the switch to post-copy).
    pub fn mark_switch(&self) -> Result<Backlog, TestbedError> {
        let b = self.probe.backlog(self.port)?;
        if let Ok(mut s) = self.samples.lock() {
            s.switch = Some(b);
        }
        Ok(b)
    }

    /// Stops sampling and sums up.
    pub fn finish(mut self) -> Result<LinkDetail, TestbedError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = std::mem::take(&mut *self.samples.lock().map_err(|_| TestbedError::Parse {
            command: "link monitor".into(),
            what: "a sampling thread panicked".into(),
        })?);
        if s.bytes.is_empty() {
            return Err(TestbedError::Parse {
                command: "link monitor".into(),
                what: format!("no sample of the qdisc succeeded: {}", s.errors.join("; ")),
            });
        }
        let (bytes, active) = active_span(&s.bytes);
        let achieved = if active.is_zero() {
            0.0
        } else {
            bytes as f64 / active.as_secs_f64() / (1024.0 * 1024.0)
        };
        let report = LinkReport {
            model: if self.rtt_ms > 0.0 {
                "netns+veth+tbf+delay-stage".into()
            } else {
                "netns+veth+tbf".into()
            },
            rate_mib_s: self.rate_mib_s,
            achieved_mib_s: achieved,
            connections: s.conns.len(),
            backlog_at_switch_bytes: s.switch.map(|b| b.total),
            rtt_ms: self.rtt_ms,
        };
        Ok(LinkDetail {
            report,
            bytes,
            active,
            drops: s.drops,
            retrans: s.retrans.values().copied().sum(),
            backlog_at_switch: s.switch,
            conns: s.conns.into_iter().collect(),
            mean_srtt_ms: (!s.srtt.is_empty())
                .then(|| s.srtt.iter().sum::<f64>() / s.srtt.len() as f64),
            samples: s.bytes.len(),
        })
    }
}

impl Drop for LinkMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sample(p: &Probe, port: u16, s: &Mutex<Samples>) {
    // The counter is read somewhere inside the `tc` run: stamp it with the run's midpoint.
    let before = Instant::now();
    let q = p.qdisc_stats(Host::Source);
    let at = before + before.elapsed() / 2;
    let conns = p.migration_conns(Host::Source, port);
    let Ok(mut s) = s.lock() else { return };
    match q {
        Ok(q) => {
            s.bytes.push((at, q.bytes));
            s.drops = q.drops;
        }
        Err(e) => s.errors.push(e.to_string()),
    }
    match conns {
        Ok(cs) => {
            for c in cs {
                if c.peer.ip() == &DST_ADDR {
                    s.conns.insert(c.local);
                    s.retrans.insert(c.local, c.retrans);
                }
                if let Some(r) = c.srtt_ms {
                    s.srtt.push(r);
                }
            }
        }
        Err(e) => s.errors.push(e.to_string()),
    }
}

/// The bytes counted between the first and the last sample in which the counter grew, and the
/// time between those samples: a mean rate over a window inside the transfer, never stretched by
/// idle time before or after it (so it cannot understate the rate).
fn active_span(samples: &[(Instant, u64)]) -> (u64, Duration) {
    let mut first: Option<(Instant, u64)> = None;
    let mut last: Option<(Instant, u64)> = None;
    for w in samples.windows(2) {
        let (_, b0) = w[0];
        let (t1, b1) = w[1];
        if b1 > b0 {
            if first.is_none() {
                first = Some(w[0]);
            }
            last = Some((t1, b1));
        }
    }
    match (first, last) {
        (Some((t0, b0)), Some((t1, b1))) => (b1 - b0, t1.duration_since(t0)),
        _ => (0, Duration::ZERO),
    }
}

fn parse_qdisc(out: &str) -> Result<QdiscStats, String> {
    let v: serde_json::Value = serde_json::from_str(out).map_err(|e| format!("{e}: {out}"))?;
    let root = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|q| q["root"] == serde_json::Value::Bool(true))
        })
        .ok_or_else(|| format!("no root qdisc in {out}"))?;
    let n = |k: &str| root[k].as_u64().unwrap_or(0);
    Ok(QdiscStats {
        bytes: n("bytes"),
        packets: n("packets"),
        drops: n("drops"),
        overlimits: n("overlimits"),
        backlog: n("backlog"),
        qlen: n("qlen"),
        rate: root["options"]["rate"].as_u64().unwrap_or(0),
    })
}

fn parse_addr(s: &str) -> Option<SocketAddrV4> {
    let (ip, port) = s.rsplit_once(':')?;
    let ip: Ipv4Addr = ip
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddrV4::new(ip, port.parse().ok()?))
}

/// `ss -tniH`: a line per socket (`STATE RECV-Q SEND-Q LOCAL PEER`), then an indented line of
/// `key:value` details. IPv6 sockets are skipped (the testbed has IPv4 addresses only).
fn parse_ss(out: &str) -> Result<Vec<TcpConn>, String> {
    let mut conns: Vec<TcpConn> = Vec::new();
    for line in out.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let Some(c) = conns.last_mut() else { continue };
            for tok in line.split_whitespace() {
                if let Some(v) = tok.strip_prefix("notsent:") {
                    c.notsent = v.parse().unwrap_or(0);
                } else if let Some(v) = tok.strip_prefix("bytes_retrans:") {
                    c.retrans.bytes = v.parse().unwrap_or(0);
                } else if let Some(v) = tok.strip_prefix("retrans:") {
                    c.retrans.segments = v
                        .split('/')
                        .nth(1)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                } else if let Some(v) = tok.strip_prefix("dsack_dups:") {
                    c.retrans.dsack_dups = v.parse().unwrap_or(0);
                } else if let Some(v) = tok.strip_prefix("rtt:") {
                    c.srtt_ms = v.split('/').next().and_then(|x| x.parse().ok());
                }
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            return Err(format!("a socket line with {} fields: {line}", f.len()));
        }
        let (Some(local), Some(peer)) = (parse_addr(f[3]), parse_addr(f[4])) else {
            continue;
        };
        let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e} in {line}"));
        conns.push(TcpConn {
            state: f[0].to_string(),
            local,
            peer,
            recv_q: num(f[1])?,
            send_q: num(f[2])?,
            notsent: 0,
            srtt_ms: None,
            retrans: Retransmissions::default(),
        });
    }
    Ok(conns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_and_details() {
        let out = "ESTAB 0      123456 169.254.213.1:40000 169.254.213.2:4444 \n\t cubic wscale:7,7 rto:201 rtt:0.812/0.1 mss:1448 bytes_retrans:2896 retrans:0/2 dsack_dups:1 notsent:65000 minrtt:0.02\nESTAB 77 0 169.254.213.2:4444 169.254.213.1:40000\n";
        let c = parse_ss(out).expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].send_q, 123456);
        assert_eq!(c[0].notsent, 65000);
        assert_eq!(c[0].srtt_ms, Some(0.812));
        assert_eq!(
            c[0].retrans,
            Retransmissions {
                bytes: 2896,
                segments: 2,
                dsack_dups: 1
            }
        );
        assert_eq!(c[0].retrans.lost_segments(), 1);
        assert_eq!(c[1].recv_q, 77);
        assert_eq!(c[1].local, "169.254.213.2:4444".parse().expect("addr"));
    }

    #[test]
    fn qdisc_json() {
        let out = r#"[{"kind":"tbf","handle":"8002:","root":true,"refcnt":3,"options":{"rate":33554432,"burst":33789,"lat":4089},"bytes":10,"packets":1,"drops":2,"overlimits":3,"requeues":0,"backlog":4,"qlen":1}]"#;
        let q = parse_qdisc(out).expect("parses");
        assert_eq!(
            q,
            QdiscStats {
                bytes: 10,
                packets: 1,
                drops: 2,
                overlimits: 3,
                backlog: 4,
                qlen: 1,
                rate: 33554432
            }
        );
    }

    #[test]
    fn the_active_span_excludes_idle_samples() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let s = [
            (ms(0), 0),
            (ms(100), 0),
            (ms(200), 50),
            (ms(300), 150),
            (ms(400), 150),
        ];
        assert_eq!(active_span(&s), (150, Duration::from_millis(200)));
        assert_eq!(active_span(&s[..2]), (0, Duration::ZERO));
    }
}
