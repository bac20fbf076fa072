use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::driver::{ApiCall, ApiValue, DomainEvent, Milestone, Side, VirError};
use crate::engine::{EngineError, Incoming, Transport};
use crate::qmp::Framer;

/// A connected QMP monitor: a writer, and a reader thread that feeds lines into the loop.
#[derive(Debug)]
pub struct Monitor {
    writer: Box<dyn WriteStream>,
    reader: Option<Box<dyn ReadStream>>,
    closer: Closer,
}

/// Shuts a monitor's socket down, so its reader thread ends and QEMU sees the client go (a QMP
/// monitor serves one client at a time).
#[derive(Debug)]
enum Closer {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Closer {
    fn close(&self) {
        let _ = match self {
            Closer::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Closer::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

trait WriteStream: Write + Send + std::fmt::Debug {}
impl<T: Write + Send + std::fmt::Debug> WriteStream for T {}
trait ReadStream: std::io::Read + Send + std::fmt::Debug {}
impl<T: std::io::Read + Send + std::fmt::Debug> ReadStream for T {}

impl Monitor {
    /// Connects to a QMP socket: a unix socket path, or `tcp:HOST:PORT`. Retries until `timeout`
    /// (QEMU creates the socket a moment after it starts).
    pub fn connect(addr: &str, timeout: Duration) -> std::io::Result<Monitor> {
        let start = Instant::now();
        loop {
            let r: std::io::Result<Monitor> = if let Some(hp) = addr.strip_prefix("tcp:") {
                TcpStream::connect(hp).and_then(|s| {
                    Ok(Monitor {
                        reader: Some(Box::new(s.try_clone()?)),
                        closer: Closer::Tcp(s.try_clone()?),
                        writer: Box::new(s),
                    })
                })
            } else {
                UnixStream::connect(Path::new(addr)).and_then(|s| {
                    Ok(Monitor {
                        reader: Some(Box::new(s.try_clone()?)),
                        closer: Closer::Unix(s.try_clone()?),
                        writer: Box::new(s),
                    })
                })
            };
            match r {
                Ok(m) => return Ok(m),
                Err(e) if start.elapsed() >= timeout => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot connect to QMP socket {addr}: {e}"),
                    ))
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

enum LoopMsg {
    Line(Side, String),
    Eof(Side, String),
    Api(ApiCall, Sender<Result<ApiValue, VirError>>),
    Note(String),
    Tick,
    /// Made by the transport itself: the deadline passed.
    Deadline(Duration),
}

/// A handle another thread uses to call the API while `migrate` blocks.
#[derive(Debug, Clone)]
pub struct Controller {
    tx: Sender<LoopMsg>,
}

impl std::fmt::Debug for LoopMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopMsg")
    }
}

impl Controller {
    /// Calls the API and waits for its result. Err(None) when the migration loop is gone.
    pub fn call(&self, call: ApiCall) -> Option<Result<ApiValue, VirError>> {
        let (tx, rx) = channel();
        self.tx.send(LoopMsg::Api(call, tx)).ok()?;
        rx.recv().ok()
    }

    /// Puts a remark of the harness into the loop's input (and so into a recording).
    pub fn note(&self, text: impl Into<String>) {
        let _ = self.tx.send(LoopMsg::Note(text.into()));
    }
}

/// Timings the live transport measured (the driver has no clock).
#[derive(Debug, Clone, Default)]
pub struct TransportStats {
    /// The driver's milestones: the source's MIGRATION_PASS >= 2 processed -> `migrate-start-postcopy`
    /// requested (and written, when the source monitor was free).
    pub switch_latency: Option<Duration>,
    pub started: Option<Instant>,
    pub postcopy_at: Option<Duration>,
    pub ended_at: Option<Duration>,
}

type EventSink = Box<dyn FnMut(Side, &DomainEvent) + Send>;
type StopHook = Box<dyn FnMut(Side) + Send>;

/// The engine's transport over two live monitors.
pub struct LiveTransport {
    writers: [Box<dyn WriteStream>; 2],
    closers: [Closer; 2],
    rx: Receiver<LoopMsg>,
    tx: Sender<LoopMsg>,
    waiting: Vec<(ApiCall, Sender<Result<ApiValue, VirError>>)>,
    on_event: Option<EventSink>,
    on_stop: Option<StopHook>,
    pass2_at: Option<Instant>,
    /// When the driver is told the deadline passed, and how long the deadline was.
    deadline: Option<(Instant, Duration)>,
    deadline_expiries: u32,
    pub stats: TransportStats,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for LiveTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTransport")
            .field("stats", &self.stats)
            .finish()
    }
}

fn spawn_reader(side: Side, mut r: Box<dyn ReadStream>, tx: Sender<LoopMsg>) {
    thread::spawn(move || {
        let mut framer = Framer::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => {
                    let why = if framer.has_partial() {
                        "end of file in the middle of a message"
                    } else {
                        "end of file"
                    };
                    let _ = tx.send(LoopMsg::Eof(side, why.into()));
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(LoopMsg::Eof(side, e.to_string()));
                    return;
                }
            };
            match framer.push(&buf[..n]) {
                Ok(lines) => {
                    for line in lines {
                        if tx.send(LoopMsg::Line(side, line)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(LoopMsg::Eof(side, e.to_string()));
                    return;
                }
            }
        }
    });
}

impl LiveTransport {
    pub fn new(mut src: Monitor, mut dst: Monitor) -> LiveTransport {
        let (tx, rx) = channel();
        for (side, m) in [(Side::Src, &mut src), (Side::Dst, &mut dst)] {
            if let Some(r) = m.reader.take() {
                spawn_reader(side, r, tx.clone());
            }
        }
        LiveTransport {
            writers: [src.writer, dst.writer],
            closers: [src.closer, dst.closer],
            rx,
            tx,
            waiting: Vec::new(),
            on_event: None,
            on_stop: None,
            pass2_at: None,
            deadline: None,
            deadline_expiries: 0,
            stats: TransportStats {
                started: Some(Instant::now()),
                ..Default::default()
            },
            warnings: Vec::new(),
        }
    }

    pub fn controller(&self) -> Controller {
        Controller {
            tx: self.tx.clone(),
        }
    }

    pub fn on_event(&mut self, f: impl FnMut(Side, &DomainEvent) + Send + 'static) {
        self.on_event = Some(Box::new(f));
    }

    pub fn on_stop(&mut self, f: impl FnMut(Side) + Send + 'static) {
        self.on_stop = Some(Box::new(f));
    }

    /// Feeds the loop an [`Incoming::Tick`] every `period` (a switch policy's samples,
    /// docs/driver-behaviour.md §7.1). The ticking thread ends with the loop.
    pub fn tick_every(&mut self, period: Duration) {
        let tx = self.tx.clone();
        thread::spawn(move || loop {
            thread::sleep(period);
            if tx.send(LoopMsg::Tick).is_err() {
                return;
            }
        });
    }

    /// The call's overall deadline, from now: when it passes the driver is told (and once more
    /// after a grace period for its cleanup: `limit` clamped to 5-30 s); a driver that still has
    /// not ended after that ends the run with a transport error.
    pub fn set_deadline(&mut self, limit: Duration) {
        self.deadline = Some((Instant::now() + limit, limit));
        self.deadline_expiries = 0;
    }

    fn receive(&mut self) -> Result<LoopMsg, EngineError> {
        let Some((at, limit)) = self.deadline else {
            return self
                .rx
                .recv()
                .map_err(|e| EngineError::transport("all monitor readers stopped", e));
        };
        match self
            .rx
            .recv_timeout(at.saturating_duration_since(Instant::now()))
        {
            Ok(msg) => Ok(msg),
            Err(RecvTimeoutError::Disconnected) => {
                Err(EngineError::transport_ended("all monitor readers stopped"))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.deadline_expiries += 1;
                if self.deadline_expiries > 2 {
                    return Err(EngineError::transport_ended(format!(
                        "the migration did not end after its deadline of {} s and the grace period",
                        limit.as_secs_f64()
                    )));
                }
                let grace = limit.clamp(Duration::from_secs(5), Duration::from_secs(30));
                self.deadline = Some((Instant::now() + grace, limit));
                Ok(LoopMsg::Deadline(limit))
            }
        }
    }

    fn elapsed(&self) -> Duration {
        self.stats.started.map(|s| s.elapsed()).unwrap_or_default()
    }
}

impl Drop for LiveTransport {
    fn drop(&mut self) {
        for c in &self.closers {
            c.close();
        }
    }
}

impl Transport for LiveTransport {
    fn next(&mut self) -> Result<Incoming, EngineError> {
        let msg = self.receive()?;
        Ok(match msg {
            LoopMsg::Deadline(limit) => Incoming::Deadline { limit },
            LoopMsg::Line(side, line) => Incoming::Line { side, line },
            LoopMsg::Eof(side, reason) => Incoming::Closed { side, reason },
            LoopMsg::Note(text) => Incoming::Note(text),
            LoopMsg::Tick => Incoming::Tick,
            LoopMsg::Api(call, reply) => {
                self.waiting.push((call.clone(), reply));
                Incoming::Api(call)
            }
        })
    }

    fn send(&mut self, side: Side, line: &str) -> Result<(), EngineError> {
        let w = &mut self.writers[match side {
            Side::Src => 0,
            Side::Dst => 1,
        }];
        w.write_all(line.as_bytes())
            .and_then(|_| w.flush())
            .map_err(|e| {
                EngineError::transport(format!("{} monitor write failed", side.tag()), e)
            })?;
        Ok(())
    }

    fn milestone(&mut self, milestone: &Milestone) {
        match milestone {
            Milestone::Pass2Seen { .. } => {
                self.pass2_at.get_or_insert_with(Instant::now);
            }
            Milestone::SwitchRequested(_) => {
                if let (Some(at), None) = (self.pass2_at, self.stats.switch_latency) {
                    self.stats.switch_latency = Some(at.elapsed());
                }
            }
            Milestone::PostcopyActive { .. } => {
                if self.stats.postcopy_at.is_none() {
                    self.stats.postcopy_at = Some(self.elapsed());
                }
            }
        }
    }

    fn api_return(
        &mut self,
        call: &ApiCall,
        result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError> {
        if let Some(pos) = self.waiting.iter().position(|(c, _)| c == call) {
            let (_, reply) = self.waiting.remove(pos);
            let _ = reply.send(result.clone());
        }
        Ok(())
    }

    fn stop_qemu(&mut self, side: Side) {
        if let Some(f) = self.on_stop.as_mut() {
            f(side);
        }
    }

    fn domain_event(&mut self, side: Side, event: &DomainEvent) {
        if let Some(f) = self.on_event.as_mut() {
            f(side, event);
        }
    }

    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }

    fn finished(&mut self) -> bool {
        self.stats.ended_at = Some(self.elapsed());
        // Answer callers still waiting: the job is over.
        true
    }
}
