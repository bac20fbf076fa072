//! The delay stage: added round trip for every connection of a migration, in one shared queue.
//!
//! It exists because this kernel has no `netem` (nor `fq`, whose earliest-departure-time pacing
//! could delay packets from BPF): the delay has to come from a stage of ours. It sits in a third
//! network namespace, the "wire", between the two hosts' veth pairs:
//!
//! ```text
//!   source: pc-src ==== w-src  [wire: one forwarder thread]  w-dst ==== pc-dst :destination
//! ```
//!
//! One thread, entered into the wire namespace with setns(2), reads every frame arriving on
//! either wire end (an AF_PACKET socket per end, with `PACKET_VNET_HDR` so that GSO frames pass
//! whole and checksum offload survives) and writes it out of the other end `one_way` after it
//! arrived. Each direction is one time-ordered queue for all connections, and a frame never waits
//! longer than `one_way`: the stage adds delay, not bandwidth and not a per-connection buffer.
//! The rate still comes only from tbf on the hosts' egress. Its cost: frames cross user space,
//! so a thread delayed by the scheduler (2 shared cores) delays them more (jitter, not loss: the
//! sockets' receive buffers are large).

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::TestbedError;

/// The running forwarder. Dropped: stopped (its thread ends within 20 ms).
#[derive(Debug)]
pub struct DelayStage {
    one_way_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    late: Arc<Lateness>,
    thread: Option<JoinHandle<()>>,
}

/// How late frames left compared to their due time (the stage's own jitter: the thread waits
/// for the scheduler).
#[derive(Debug, Default)]
struct Lateness {
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

/// The largest frame a GSO-capable veth hands over (64 KiB), its virtio-net header, and room.
const FRAME_MAX: usize = 128 * 1024;

impl DelayStage {
    /// Starts forwarding between interfaces `a` and `b` of the namespace `netns` (a path such
    /// as /proc/PID/ns/net), delaying each frame by `one_way`.
    pub fn start(
        netns: &Path,
        a: &str,
        b: &str,
        one_way: Duration,
    ) -> Result<DelayStage, TestbedError> {
        let ns = File::open(netns).map_err(|source| TestbedError::Proc {
            path: netns.to_path_buf(),
            source,
        })?;
        let one_way_us = Arc::new(AtomicU64::new(one_way.as_micros() as u64));
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (a, b) = (a.to_string(), b.to_string());
        let late = Arc::new(Lateness::default());
        let (d, s, f, l) = (
            one_way_us.clone(),
            stop.clone(),
            forwarded.clone(),
            late.clone(),
        );
        let thread = thread::Builder::new()
            .name("testbed-delay".into())
            .spawn(move || {
                let sockets = enter(&ns).and_then(|()| Ok([open_packet(&a)?, open_packet(&b)?]));
                match sockets {
                    Ok(socks) => {
                        let _ = ready_tx.send(Ok(()));
                        forward(&socks, &d, &s, &f, &l);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| TestbedError::Spawn {
                command: "the delay stage's thread".into(),
                source,
            })?;
        let ready = ready_rx.recv().unwrap_or_else(|_| {
            Err(TestbedError::Parse {
                command: "the delay stage".into(),
                what: "its thread ended before it was ready".into(),
            })
        });
        let stage = DelayStage {
            one_way_us,
            stop,
            forwarded,
            late,
            thread: Some(thread),
        };
        ready.map(|()| stage)
    }

    /// Changes the delay of frames that arrive from now on.
    pub fn set_one_way(&self, one_way: Duration) {
        self.one_way_us
            .store(one_way.as_micros() as u64, Ordering::SeqCst);
    }

    /// Mean and largest delay beyond the due time of the frames forwarded so far.
    pub fn lateness(&self) -> (Duration, Duration) {
        let n = self.forwarded().max(1);
        (
            Duration::from_micros(self.late.sum_us.load(Ordering::SeqCst) / n),
            Duration::from_micros(self.late.max_us.load(Ordering::SeqCst)),
        )
    }

    /// Frames forwarded so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for DelayStage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn os_error(what: &str) -> TestbedError {
    TestbedError::Spawn {
        command: format!("the delay stage: {what}"),
        source: std::io::Error::last_os_error(),
    }
}

/// Moves this thread (only this one) into the network namespace `ns`.
fn enter(ns: &File) -> Result<(), TestbedError> {
    // SAFETY: setns takes a valid open descriptor (borrowed from `ns`, alive for the call) and a
    // namespace type; it changes only the calling thread's network namespace.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(os_error("setns into the wire namespace"));
    }
    Ok(())
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32, what: &str) -> Result<(), TestbedError> {
    // SAFETY: `value` lives for the call and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_error(what));
    }
    Ok(())
}

/// An AF_PACKET socket bound to interface `dev` of this thread's namespace, that sees frames
/// arriving on it (not the ones it sends), each preceded by its virtio-net header.
fn open_packet(dev: &str) -> Result<OwnedFd, TestbedError> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: a plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        return Err(os_error("AF_PACKET socket"));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = sock.as_raw_fd();
    set_int(
        fd,
        libc::SOL_PACKET,
        libc::PACKET_VNET_HDR,
        1,
        "PACKET_VNET_HDR",
    )?;
    set_int(
        fd,
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        1,
        "PACKET_IGNORE_OUTGOING",
    )?;
    // Room for a round trip's worth of frames at any rate we shape to, if the thread lags.
    set_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        32 << 20,
        "SO_RCVBUFFORCE",
    )?;
    set_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        8 << 20,
        "SO_SNDBUFFORCE",
    )?;
    let name = CString::new(dev).map_err(|_| TestbedError::BadParameter {
        what: format!("interface name {dev:?}"),
    })?;
    // SAFETY: `name` is a NUL-terminated string that lives for the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(os_error(&format!(
            "no interface {dev} in the wire namespace"
        )));
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all;
    sll.sll_ifindex = index as i32;
    // SAFETY: `sll` is a valid sockaddr_ll that lives for the call, its size passed with it.
    let r = unsafe {
        libc::bind(
            fd,
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_error(&format!("bind to {dev}")));
    }
    Ok(sock)
}

/// The forwarding loop: frames in, each queued with its due time, sent when due.
fn forward(
    socks: &[OwnedFd; 2],
    one_way_us: &AtomicU64,
    stop: &AtomicBool,
    forwarded: &AtomicU64,
    late: &Lateness,
) {
    let mut queues: [VecDeque<(Instant, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut buf = vec![0u8; FRAME_MAX];
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let next_due = queues
            .iter()
            .filter_map(|q| q.front().map(|(t, _)| *t))
            .min();
        let wait = next_due
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(20));
        let mut fds = [
            libc::pollfd {
                fd: socks[0].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: socks[1].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Round up so a frame due in 0.3 ms does not make a busy loop of 0 ms polls.
        let ms = wait.as_micros().div_ceil(1000) as i32;
        // SAFETY: `fds` is a valid array of two pollfd that lives for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        for (i, p) in fds.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            loop {
                // SAFETY: `buf` is valid for FRAME_MAX bytes for the call.
                let n = unsafe {
                    libc::recv(p.fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                };
                if n <= 0 {
                    break;
                }
                let due = Instant::now() + Duration::from_micros(one_way_us.load(Ordering::SeqCst));
                queues[i].push_back((due, buf[..n as usize].to_vec()));
            }
        }
        let now = Instant::now();
        for (i, q) in queues.iter_mut().enumerate() {
            let out = socks[1 - i].as_raw_fd();
            while q.front().is_some_and(|(t, _)| *t <= now) {
                let Some((due, frame)) = q.pop_front() else {
                    break;
                };
                let us = now.duration_since(due).as_micros() as u64;
                late.sum_us.fetch_add(us, Ordering::Relaxed);
                late.max_us.fetch_max(us, Ordering::Relaxed);
                // A frame that cannot be sent (the link is down: a partition) is lost, as on a
                // wire.
                // SAFETY: `frame` is valid for its length for the call.
                unsafe { libc::send(out, frame.as_ptr().cast(), frame.len(), 0) };
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
