//! A TCP relay on loopback between the source QEMU and the destination's migration port: the
//! link emulator of the benchmark and the fault injector of the live tests in one piece.
//!
//! The source connects to the relay's port; for every connection (QEMU opens a second one for
//! postcopy-preempt) the relay connects to the destination and copies bytes both ways. On command
//! it throttles the source -> destination direction (bytes per second, a token bucket), adds
//! latency, stalls (holds bytes back), or cuts every connection (both QEMUs then see the stream
//! fail). New connections are accepted after a cut, so a recovery can go through the same relay.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Control {
    /// Source -> destination rate in bytes/s; 0 = unlimited.
    rate: AtomicU64,
    /// One-way delay added to the source -> destination direction, in microseconds.
    latency_us: AtomicU64,
    stalled: AtomicBool,
    /// Refuse new connections (the link is down).
    down: AtomicBool,
    stop: AtomicBool,
    bytes_fwd: AtomicU64,
    bytes_back: AtomicU64,
    connections: AtomicU64,
    streams: Mutex<Vec<TcpStream>>,
}

/// A running relay; dropped, it stops and closes every connection.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    ctl: Arc<Control>,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and relays to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let ctl = Arc::new(Control::default());
        let c = ctl.clone();
        thread::spawn(move || accept_loop(listener, target, c));
        Ok(Relay { port, ctl })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Source -> destination bandwidth, bytes per second (0: unlimited).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.ctl.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    pub fn set_latency(&self, one_way: Duration) {
        self.ctl
            .latency_us
            .store(one_way.as_micros() as u64, Ordering::SeqCst);
    }

    /// Holds every byte back (both directions) until [`Relay::resume`].
    pub fn stall(&self) {
        self.ctl.stalled.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.ctl.stalled.store(false, Ordering::SeqCst);
    }

    /// Closes every open connection; with `stay_down`, refuses new ones until [`Relay::up`].
    pub fn cut(&self, stay_down: bool) {
        if stay_down {
            self.ctl.down.store(true, Ordering::SeqCst);
        }
        if let Ok(mut s) = self.ctl.streams.lock() {
            for st in s.drain(..) {
                let _ = st.shutdown(Shutdown::Both);
            }
        }
    }

    /// The link is back: new connections are accepted again.
    pub fn up(&self) {
        self.ctl.down.store(false, Ordering::SeqCst);
    }

    /// Bytes relayed source -> destination and back, and connections accepted so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.ctl.bytes_fwd.load(Ordering::SeqCst),
            self.ctl.bytes_back.load(Ordering::SeqCst),
            self.ctl.connections.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        self.cut(true);
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, ctl: Arc<Control>) {
    while !ctl.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if ctl.down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                ctl.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = ctl.streams.lock() {
                    for st in [&client, &server] {
                        if let Ok(c) = st.try_clone() {
                            s.push(c);
                        }
                    }
                }
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let c1 = ctl.clone();
                thread::spawn(move || pump(client, server, c1, true));
                let c2ctl = ctl.clone();
                thread::spawn(move || pump(s2, c2, c2ctl, false));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Copies one direction. Forward (source -> destination) is rate limited and delayed.
fn pump(mut from: TcpStream, mut to: TcpStream, ctl: Arc<Control>, forward: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    // Token bucket: at most 50 ms of burst.
    let mut tokens: f64 = 0.0;
    let mut last = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while ctl.stalled.load(Ordering::SeqCst) && !ctl.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(5));
        }
        if forward {
            let lat = ctl.latency_us.load(Ordering::SeqCst);
            if lat > 0 {
                thread::sleep(Duration::from_micros(lat));
            }
            let rate = ctl.rate.load(Ordering::SeqCst) as f64;
            if rate > 0.0 {
                let mut sent = 0usize;
                while sent < n {
                    let now = Instant::now();
                    tokens =
                        (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate * 0.05);
                    last = now;
                    if tokens < 1.0 {
                        thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    let chunk = (tokens as usize).min(n - sent);
                    if to.write_all(&buf[sent..sent + chunk]).is_err() {
                        return finish(&from, &to);
                    }
                    tokens -= chunk as f64;
                    sent += chunk;
                }
                ctl.bytes_fwd.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let counter = if forward {
            &ctl.bytes_fwd
        } else {
            &ctl.bytes_back
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    finish(&from, &to);
}

fn finish(from: &TcpStream, to: &TcpStream) {
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
