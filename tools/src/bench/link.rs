//! The benchmark's link emulator: a TCP relay on loopback with a bandwidth limit (source ->
//! destination) and a one-way propagation delay in both directions, so that RTT does not cap
//! throughput.
//!
//! Why not [`crate::relay::Relay`]: its delay is a sleep per read chunk (≤ 16 KiB) on the
//! forward path, so a delay of d also caps the rate at 16 KiB/d, and page requests on the return
//! path are not delayed at all. Here each chunk is stamped when it is read and released `delay`
//! later (a queue between a reader and a writer thread per direction), then paced by a token
//! bucket; the queue is bounded (about one bandwidth-delay product plus 256 KiB), so the sender
//! sees backpressure as on a real link.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    bytes_fwd: AtomicU64,
    bytes_back: AtomicU64,
    connections: AtomicU64,
    streams: Mutex<Vec<TcpStream>>,
}

/// A running link; dropped, it closes every connection.
#[derive(Debug)]
pub struct Link {
    port: u16,
    shared: Arc<Shared>,
}

impl Link {
    /// Listens on 127.0.0.1 and relays to `target` at `rate` bytes/s (0: unlimited) with
    /// `one_way` delay in each direction.
    pub fn start(target: SocketAddr, rate: u64, one_way: Duration) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || accept(listener, target, rate, one_way, s));
        Ok(Link { port, shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes delivered source -> destination and back, connections accepted.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.shared.bytes_fwd.load(Ordering::SeqCst),
            self.shared.bytes_back.load(Ordering::SeqCst),
            self.shared.connections.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(mut s) = self.shared.streams.lock() {
            for st in s.drain(..) {
                let _ = st.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept(listener: TcpListener, target: SocketAddr, rate: u64, one_way: Duration, s: Arc<Shared>) {
    while !s.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                s.connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut l) = s.streams.lock() {
                    for st in [&client, &server] {
                        if let Ok(c) = st.try_clone() {
                            l.push(c);
                        }
                    }
                }
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let sf = s.clone();
                thread::spawn(move || pipe(client, server, rate, one_way, sf, true));
                let sb = s.clone();
                thread::spawn(move || pipe(s2, c2, 0, one_way, sb, false));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn pipe(
    from: TcpStream,
    mut to: TcpStream,
    rate: u64,
    delay: Duration,
    s: Arc<Shared>,
    forward: bool,
) {
    // Room for one bandwidth-delay product plus 256 KiB in flight on the "wire".
    let bdp = (rate as f64 * delay.as_secs_f64()) as usize;
    let cap = ((bdp + 256 * 1024) / CHUNK).max(16);
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(cap);
    let mut reader = match from.try_clone() {
        Ok(r) => r,
        Err(_) => return,
    };
    let stop = s.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if stop.stop.load(Ordering::SeqCst)
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    let rate_f = rate as f64;
    // Token bucket with a 10 ms burst.
    let burst = (rate_f * 0.010).max(CHUNK as f64);
    let mut tokens = 0.0f64;
    let mut last = Instant::now();
    let counter = if forward { &s.bytes_fwd } else { &s.bytes_back };
    'outer: for (due, data) in rx {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if rate == 0 {
            if to.write_all(&data).is_err() {
                break;
            }
        } else {
            let mut sent = 0;
            while sent < data.len() {
                let now = Instant::now();
                tokens = (tokens + now.duration_since(last).as_secs_f64() * rate_f).min(burst);
                last = now;
                if tokens < 1.0 {
                    thread::sleep(Duration::from_micros(500));
                    continue;
                }
                let chunk = (tokens as usize).min(data.len() - sent);
                if to.write_all(&data[sent..sent + chunk]).is_err() {
                    break 'outer;
                }
                tokens -= chunk as f64;
                sent += chunk;
            }
        }
        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
