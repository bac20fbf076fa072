//! The library's public API: domains reached by their QMP monitors or replayed from a transcript,
//! and libvirt's migration calls on them (virDomainMigrate3, virDomainMigrateStartPostCopy,
//! virDomainAbortJobFlags, virDomainGetJobStats, virDomainGetState, domain events).
//!
//! Rust programs use it directly; the C ABI ([`crate::ffi`]) only translates to it. The migration
//! itself is the driver's ([`crate::driver`]) through the engine; this module keeps what a
//! libvirt domain object keeps between calls: its state, whether a migration job runs on it (and
//! the live transport's controller, to reach that job from other threads), the last completed
//! statistics and the event callbacks.
//!
//! Every caller migrates through [`migrate_with`]: the C ABI (through [`migrate`] and
//! [`migrate_with_recovery`]), `postcopy migrate`, the scenarios, the benchmark and the live
//! tests. What the tools add (a recording, an event hook on the migration's thread, the QEMU
//! stop hook, the moment the job starts) are [`MigrateOptions`]; calls from other threads go to
//! the [`Domain`] ([`Domain::api`], [`Domain::note`]), which routes them to the running job.
//!
//! ```no_run
//! use postcopy_shim::api::{self, Domain};
//! use postcopy_shim::postcopy_core::driver::vocab::*;
//! use postcopy_shim::postcopy_core::driver::MigrateRequest;
//!
//! let (src, dst) = (Domain::open_qmp("/run/src.qmp"), Domain::open_qmp("/run/dst.qmp"));
//! let flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
//! match api::migrate(&src, &dst, MigrateRequest::new(flags, "tcp:127.0.0.1:4444")) {
//!     Ok(outcome) => println!("{:?}", outcome.stats.get(param::memory_iteration())),
//!     Err(e) => eprintln!("{}", e.message()),
//! }
//! ```

use std::path::Path;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::driver::domain::{self, answer_on_destination, answer_without_job, state_after};
use crate::driver::policy::check_policy;
use crate::driver::vocab::{code, event, state};
use crate::driver::{
    check_driver_flags, check_public_flags, ApiCall, ApiValue, DomainEvent, DomainState, JobStats,
    MigrateRequest, Outcome, Side, VirError,
};
use crate::engine::{self, EngineError, Incoming, Report, Transport};
use crate::io::run::{self, Hooks, Idle};
use crate::io::{Controller, Recorder};
pub use crate::io::{EventHook, RecordSpec, StopHook, TransportStats};
use crate::transcript::ReplayTransport;

/// A domain-event callback: the domain, the event, and for JOB_COMPLETED the completed statistics.
pub type EventCallback = Box<dyn FnMut(&Domain, &DomainEvent, Option<&JobStats>) + Send>;

/// The error of an engine failure that is not the driver's: a transport failure becomes
/// VIR_ERR_OPERATION_FAILED with its causes, anything else (protocol, replay divergence, input
/// ended) VIR_ERR_INTERNAL_ERROR with its text. A divergence's text starts with "replay diverged",
/// so its message starts with "internal error: replay diverged".
pub fn engine_error(e: EngineError) -> VirError {
    match e {
        EngineError::Transport { .. } => VirError::new(code::OPERATION_FAILED, e.with_causes()),
        other => VirError::new(code::INTERNAL_ERROR, other.to_string()),
    }
}

/// The event ids a callback can be registered for (others: VIR_ERR_INVALID_ARG, as libvirt's
/// "unsupported event ID").
pub fn check_event_id(event_id: i32) -> Result<(), VirError> {
    if [
        event::ID_LIFECYCLE,
        event::ID_MIGRATION_ITERATION,
        event::ID_JOB_COMPLETED,
    ]
    .contains(&event_id)
    {
        Ok(())
    } else {
        Err(VirError::new(
            code::INVALID_ARG,
            format!("unsupported event ID {event_id}"),
        ))
    }
}

#[derive(Debug)]
enum Target {
    Qmp(String),
    Replay {
        replay: Arc<ReplayShared>,
        side: Side,
    },
}

#[derive(Debug)]
struct Job {
    role: Side,
    replay: bool,
    /// The running migration's loop, once it exists (live only).
    controller: Option<Controller>,
}

#[derive(Debug)]
struct Inner {
    state: DomainState,
    job: Option<Job>,
    completed: Option<JobStats>,
    /// What the last migrate call's job kept (libvirt keeps it in the domain object), for a
    /// recovery call with VIR_MIGRATE_POSTCOPY_RESUME.
    memory: Option<crate::driver::JobMemory>,
    /// The transcript of the last recorded migration (source only): API calls made after it,
    /// with no job, are recorded there too.
    transcript: Option<Recorder<Idle>>,
}

type SharedCallback = Arc<Mutex<EventCallback>>;

#[derive(Default)]
struct Callbacks {
    next_id: i32,
    list: Vec<(i32, i32, SharedCallback)>,
}

/// One domain: the guest of one QEMU, reached through its QMP monitor or replayed.
pub struct Domain {
    target: Target,
    inner: Mutex<Inner>,
    changed: Condvar,
    callbacks: Mutex<Callbacks>,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A callback that panicked leaves consistent data behind: every update is one assignment.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unsupported_flags(flags: u32, function: &str) -> VirError {
    VirError::new(
        code::INVALID_ARG,
        format!("unsupported flags (0x{flags:x}) in function {function}"),
    )
}

fn replay_call() -> VirError {
    VirError::new(
        code::OPERATION_UNSUPPORTED,
        "API calls during a replayed migration come from its transcript",
    )
}

impl Domain {
    fn new(target: Target) -> Arc<Domain> {
        Arc::new(Domain {
            target,
            inner: Mutex::new(Inner {
                state: DomainState::new(state::RUNNING, state::RUNNING_UNPAUSED),
                job: None,
                completed: None,
                memory: None,
                transcript: None,
            }),
            changed: Condvar::new(),
            callbacks: Mutex::new(Callbacks::default()),
        })
    }

    /// A domain whose QEMU monitor is at `qmp`: a unix socket path or `tcp:HOST:PORT`.
    /// Nothing is connected until a migration needs it.
    pub fn open_qmp(qmp: &str) -> Arc<Domain> {
        Domain::new(Target::Qmp(qmp.to_string()))
    }

    fn active(inner: &Inner) -> bool {
        inner.state.state != state::SHUTOFF
    }

    /// virDomainGetState.
    pub fn state(&self, flags: u32) -> Result<DomainState, VirError> {
        if flags != 0 {
            return Err(unsupported_flags(flags, "qemuDomainGetState"));
        }
        Ok(lock(&self.inner).state)
    }

    /// Runs `call` on the migration job of this domain, or answers it as libvirt does without one.
    fn call(&self, call: ApiCall) -> Result<ApiValue, VirError> {
        let mut g = lock(&self.inner);
        loop {
            let Some(job) = &g.job else {
                let result = Err(answer_without_job(&call, Domain::active(&g)));
                if let Some(t) = g.transcript.as_mut() {
                    // The call is answered either way; a transcript that cannot be written
                    // only loses this record.
                    let _ = t.record_idle_api(&call, &result);
                }
                return result;
            };
            if job.replay {
                return Err(replay_call());
            }
            if job.role == Side::Dst {
                return Err(answer_on_destination(&call));
            }
            match job.controller.clone() {
                None => g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(c) => {
                    drop(g);
                    if let Some(r) = c.call(call.clone()) {
                        return r;
                    }
                    // The loop ended: answer once the migration has recorded how it ended.
                    g = lock(&self.inner);
                    g = self
                        .changed
                        .wait_while(g, |i| i.job.is_some())
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// Makes `call` on this domain (one of the calls another thread makes while a migration runs),
    /// as [`Domain::start_postcopy`], [`Domain::abort_job`] or [`Domain::job_stats`] with flags 0.
    pub fn api(&self, call: ApiCall) -> Result<ApiValue, VirError> {
        match call {
            ApiCall::StartPostCopy { flags } => self.start_postcopy(flags).map(|_| ApiValue::Done),
            ApiCall::AbortJob { flags } => self.abort_job(flags).map(|_| ApiValue::Done),
            ApiCall::GetJobStats => self.job_stats(0).map(ApiValue::Stats),
        }
    }

    /// Writes a remark of the caller (a cut link, a killed QEMU) into the transcript of the
    /// migration running on this domain, between the messages it falls between. False when no
    /// live migration runs on it (a recording without one has nothing to put it between).
    pub fn note(&self, text: impl Into<String>) -> bool {
        let controller = lock(&self.inner)
            .job
            .as_ref()
            .and_then(|j| j.controller.clone());
        match controller {
            Some(c) => {
                c.note(text);
                true
            }
            None => false,
        }
    }

    /// virDomainMigrateStartPostCopy.
    pub fn start_postcopy(&self, flags: u32) -> Result<(), VirError> {
        self.call(ApiCall::StartPostCopy { flags }).map(|_| ())
    }

    /// virDomainAbortJobFlags (0 or VIR_DOMAIN_ABORT_JOB_POSTCOPY).
    pub fn abort_job(&self, flags: u32) -> Result<(), VirError> {
        self.call(ApiCall::AbortJob { flags }).map(|_| ())
    }

    /// virDomainGetJobStats (flags: VIR_DOMAIN_JOB_STATS_COMPLETED, _KEEP_COMPLETED).
    pub fn job_stats(&self, flags: u32) -> Result<JobStats, VirError> {
        let known = virt_sys::VIR_DOMAIN_JOB_STATS_COMPLETED
            | virt_sys::VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED;
        if flags & !known != 0 {
            return Err(unsupported_flags(flags & !known, "qemuDomainGetJobStats"));
        }
        if flags & virt_sys::VIR_DOMAIN_JOB_STATS_COMPLETED != 0 {
            let g = lock(&self.inner);
            if g.job.as_ref().is_some_and(|j| j.role == Side::Dst) {
                return Err(domain::stats_only_on_source());
            }
            return Ok(g.completed.clone().unwrap_or_else(domain::no_job_stats));
        }
        if lock(&self.inner).job.is_none() {
            return Ok(domain::no_job_stats());
        }
        match self.call(ApiCall::GetJobStats) {
            Ok(ApiValue::Stats(s)) => Ok(s),
            Ok(ApiValue::Done) => Ok(domain::no_job_stats()),
            // The job ended between the two looks: libvirt would have found no job.
            Err(_) if lock(&self.inner).job.is_none() => Ok(domain::no_job_stats()),
            Err(e) => Err(e),
        }
    }

    /// Registers a callback for one event id (VIR_DOMAIN_EVENT_ID_LIFECYCLE, _MIGRATION_ITERATION,
    /// _JOB_COMPLETED). Returns its id.
    pub fn register(&self, event_id: i32, cb: EventCallback) -> Result<i32, VirError> {
        check_event_id(event_id)?;
        let mut c = lock(&self.callbacks);
        let id = c.next_id;
        c.next_id += 1;
        c.list.push((id, event_id, Arc::new(Mutex::new(cb))));
        Ok(id)
    }

    /// Removes a callback; it is dropped once no event is being delivered to it.
    pub fn deregister(&self, callback_id: i32) -> Result<(), VirError> {
        let mut c = lock(&self.callbacks);
        let Some(pos) = c.list.iter().position(|(id, _, _)| *id == callback_id) else {
            return Err(VirError::new(
                code::INVALID_ARG,
                format!("could not find event callback {callback_id} for deregistration"),
            ));
        };
        c.list.remove(pos);
        Ok(())
    }

    fn dispatch(&self, ev: &DomainEvent, stats: Option<&JobStats>) {
        let id = match ev {
            DomainEvent::Lifecycle { .. } => event::ID_LIFECYCLE,
            DomainEvent::MigrationIteration { .. } => event::ID_MIGRATION_ITERATION,
            DomainEvent::JobCompleted => event::ID_JOB_COMPLETED,
        };
        // Called without the registry lock, so a callback may (de)register callbacks.
        let targets: Vec<SharedCallback> = lock(&self.callbacks)
            .list
            .iter()
            .filter(|(_, eid, _)| *eid == id)
            .map(|(_, _, cb)| cb.clone())
            .collect();
        for cb in targets {
            (lock(&cb))(self, ev, stats);
        }
    }

    fn apply_event(&self, ev: &DomainEvent) {
        if let DomainEvent::Lifecycle { event, detail } = ev {
            if let Some(st) = state_after(*event, *detail) {
                lock(&self.inner).state = st;
            }
        }
    }

    fn begin_job(&self, role: Side, replay: bool) -> Result<(), VirError> {
        let mut g = lock(&self.inner);
        domain::check_begin_job(g.job.is_some(), Domain::active(&g))?;
        g.job = Some(Job {
            role,
            replay,
            controller: None,
        });
        Ok(())
    }

    fn set_controller(&self, c: Controller) {
        if let Some(j) = lock(&self.inner).job.as_mut() {
            j.controller = Some(c);
        }
        self.changed.notify_all();
    }

    fn end_job(&self, state: Option<DomainState>, completed: Option<JobStats>) {
        let mut g = lock(&self.inner);
        g.job = None;
        if let Some(st) = state {
            g.state = st;
        }
        if completed.is_some() {
            g.completed = completed;
        }
        drop(g);
        self.changed.notify_all();
    }
}

/// The part of a replay its domains share.
#[derive(Debug)]
struct ReplayShared {
    /// The migrate calls the transcript recorded, in order: the header's, then each `migrate`
    /// record's.
    requests: Vec<MigrateRequest>,
    progress: Mutex<ReplayProgress>,
}

#[derive(Debug)]
struct ReplayProgress {
    /// None while a call replays, and for good once a replay failed (diverged).
    transport: Option<ReplayTransport>,
    /// The next recorded call.
    next: usize,
    /// A call failed to replay: no more calls.
    failed: bool,
}

/// A recorded transcript standing in for two QEMUs: its source and destination domains.
#[derive(Debug)]
pub struct Replay {
    shared: Arc<ReplayShared>,
    src: Arc<Domain>,
    dst: Arc<Domain>,
}

impl Replay {
    /// Loads a transcript (VIR_ERR_OPERATION_FAILED if unreadable, VIR_ERR_INTERNAL_ERROR if corrupt).
    pub fn open(path: &Path) -> Result<Replay, VirError> {
        let t = crate::load_transcript(path).map_err(|e| match e {
            crate::transcript::TranscriptError::Io { .. } => {
                VirError::new(code::OPERATION_FAILED, e.to_string())
            }
            other => VirError::new(code::INTERNAL_ERROR, other.to_string()),
        })?;
        let mut requests = vec![t.request()];
        requests.extend(t.records.iter().filter_map(|(_, r)| r.request()));
        let shared = Arc::new(ReplayShared {
            requests,
            progress: Mutex::new(ReplayProgress {
                transport: Some(ReplayTransport::new(t)),
                next: 0,
                failed: false,
            }),
        });
        let side = |side| {
            Domain::new(Target::Replay {
                replay: shared.clone(),
                side,
            })
        };
        Ok(Replay {
            src: side(Side::Src),
            dst: side(Side::Dst),
            shared,
        })
    }

    pub fn source(&self) -> Arc<Domain> {
        self.src.clone()
    }

    pub fn destination(&self) -> Arc<Domain> {
        self.dst.clone()
    }

    /// The next migrate call the transcript recorded (flags, URI, bandwidths); None once every
    /// recorded call was made, or once one failed to replay.
    pub fn next_request(&self) -> Option<MigrateRequest> {
        let p = lock(&self.shared.progress);
        if p.failed {
            return None;
        }
        self.shared.requests.get(p.next).cloned()
    }
}

enum Dispatch {
    Event(Side, DomainEvent),
    End(Option<JobStats>),
}

/// A replay that also hands domain events to the API's hook.
struct ReplayWithEvents<'a, F: FnMut(Side, &DomainEvent)> {
    inner: &'a mut ReplayTransport,
    on_event: F,
}

impl<F: FnMut(Side, &DomainEvent)> Transport for ReplayWithEvents<'_, F> {
    fn next(&mut self) -> Result<Incoming, EngineError> {
        self.inner.next()
    }
    fn send(&mut self, side: Side, line: &str) -> Result<(), EngineError> {
        self.inner.send(side, line)
    }
    fn api_return(
        &mut self,
        call: &ApiCall,
        result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError> {
        self.inner.api_return(call, result)
    }
    fn stop_qemu(&mut self, side: Side) {
        self.inner.stop_qemu(side)
    }
    fn domain_event(&mut self, side: Side, event: &DomainEvent) {
        self.inner.domain_event(side, event);
        (self.on_event)(side, event)
    }
    fn milestone(&mut self, milestone: &crate::driver::Milestone) {
        self.inner.milestone(milestone)
    }
    fn warn(&mut self, message: &str) {
        self.inner.warn(message)
    }
    fn finished(&mut self) -> bool {
        self.inner.finished()
    }
}

enum Mode {
    Live(String, String),
    Replay(Arc<ReplayShared>),
}

/// [`migrate`] with the opt-in automatic recovery policy: while a call fails in post-copy (the
/// source left PAUSED/POSTCOPY_FAILED), waits the policy's delay and calls again with
/// VIR_MIGRATE_POSTCOPY_RESUME, until a call succeeds or the policy gives up. `on_attempt` sees
/// every call's result (for reporting). Returns the last call's result.
pub fn migrate_with_recovery(
    src: &Arc<Domain>,
    dst: &Arc<Domain>,
    req: MigrateRequest,
    policy: &crate::driver::RecoveryPolicy,
    mut on_attempt: impl FnMut(&MigrateRequest, &Result<Outcome, VirError>),
) -> Result<Outcome, VirError> {
    let mut calls = with_recovery(req, Some(policy), |req| {
        let r = migrate(src, dst, req.clone());
        on_attempt(req, &r);
        let in_postcopy_failure = r.is_err() && failed_in_postcopy(src);
        (r, in_postcopy_failure)
    });
    calls.pop().unwrap_or_else(|| {
        Err(VirError::new(
            code::INTERNAL_ERROR,
            "no migrate call was made",
        ))
    })
}

/// True when the domain (a source) was left paused by a failed post-copy: the state a recovery
/// with VIR_MIGRATE_POSTCOPY_RESUME starts from.
pub fn failed_in_postcopy(src: &Domain) -> bool {
    src.state(0)
        .is_ok_and(|st| st == DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED))
}

/// The loop of [`migrate_with_recovery`], for a caller that makes each migrate call itself (with
/// its own [`MigrateOptions`]): calls `call` with `req`; while the call reports a failure in
/// post-copy (its second value) and `policy` allows, sleeps the policy's delay and calls again
/// with VIR_MIGRATE_POSTCOPY_RESUME. Returns every call's first value, in order. Without a policy,
/// one call.
pub fn with_recovery<T>(
    mut req: MigrateRequest,
    policy: Option<&crate::driver::RecoveryPolicy>,
    mut call: impl FnMut(&MigrateRequest) -> (T, bool),
) -> Vec<T> {
    let mut out = Vec::new();
    let mut failed_at: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        let (r, failed_in_postcopy) = call(&req);
        out.push(r);
        let Some(policy) = policy.filter(|_| failed_in_postcopy) else {
            return out;
        };
        let since = failed_at.get_or_insert_with(Instant::now).elapsed();
        let Some(delay) = policy.next_delay(attempt, since) else {
            return out;
        };
        thread::sleep(delay);
        attempt += 1;
        req.flags = crate::driver::recovery::resume_flags(req.flags);
    }
}

/// virDomainMigrate3 from `src` to `dst`: blocks until the migration completed or failed.
/// `src` and `dst` are two live domains, or the source and the destination of one replay.
pub fn migrate(
    src: &Arc<Domain>,
    dst: &Arc<Domain>,
    req: MigrateRequest,
) -> Result<Outcome, VirError> {
    migrate_with(src, dst, req, MigrateOptions::default()).and_then(|m| m.report.result)
}

/// What a tool adds to a migrate call (the C ABI and [`migrate`] add nothing).
#[derive(Default)]
pub struct MigrateOptions {
    /// Record both monitors into a transcript (live domains only). API calls made on the source
    /// after the migration are recorded there too, until its next migration.
    pub record: Option<RecordSpec>,
    /// Called on the migration's own thread for every domain event, as soon as it happens (the
    /// registered callbacks run later, on another thread). It must not wait for an API call on
    /// these domains: make that call from another thread.
    pub on_event: Option<EventHook>,
    /// Called where libvirt would stop a QEMU process (qemuProcessStop): the caller owns them.
    /// Live domains only.
    pub on_stop: Option<StopHook>,
    /// Told once the job runs: from then on, calls on the source from other threads
    /// ([`Domain::api`], [`Domain::note`], ...) reach the migration.
    pub job_started: Option<Sender<()>>,
    /// The call's overall deadline (live domains; None: [`DEFAULT_DEADLINE`]). When it passes,
    /// the call fails with VIR_ERR_OPERATION_TIMEOUT naming the phases: before post-copy the
    /// migration is cancelled as virDomainAbortJob would; once the guest runs on the destination
    /// nothing is cancelled or killed, post-copy is paused and both sides are left recoverable
    /// (docs/driver-behaviour.md §10.4).
    pub deadline: Option<Duration>,
}

/// The deadline of a live migrate call when [`MigrateOptions::deadline`] is not set: 10 minutes.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

impl std::fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("record", &self.record)
            .field("on_event", &self.on_event.is_some())
            .field("on_stop", &self.on_stop.is_some())
            .field("job_started", &self.job_started.is_some())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A migrate call that ran to the driver's end, whether the migration completed
/// (`report.result`) or not.
#[derive(Debug)]
pub struct Migration {
    /// The call's result, the states it left the domains in, and what its job kept.
    pub report: Report,
    /// What the live transport timed (the switch); all empty for a replay.
    pub stats: TransportStats,
    /// What the driver warned about on the way.
    pub warnings: Vec<String>,
}

/// [`migrate`] with a tool's [`MigrateOptions`]: the one entry of every caller (the C ABI through
/// [`migrate`], `postcopy migrate`, the scenarios, the benchmark). `Err` is a call that failed
/// before or outside the driver (refused flags, a busy domain, a monitor that cannot be reached);
/// a migration that failed is `Ok` with the error in `report.result`.
pub fn migrate_with(
    src: &Arc<Domain>,
    dst: &Arc<Domain>,
    req: MigrateRequest,
    mut opts: MigrateOptions,
) -> Result<Migration, VirError> {
    let invalid = |m: &str| Err(VirError::new(code::INVALID_ARG, m));
    if Arc::ptr_eq(src, dst) {
        return invalid("the source and the destination are the same domain");
    }
    let mut req = req;
    let mode = match (&src.target, &dst.target) {
        (Target::Qmp(a), Target::Qmp(b)) => {
            // libvirt checks flags in the public API and in Begin, before any QEMU is involved.
            check_public_flags(req.flags)
                .and_then(|_| check_driver_flags(req.flags, "qemuDomainMigrateBegin3Params"))
                .and_then(|_| check_policy(req.switch_policy, req.flags))?;
            Mode::Live(a.clone(), b.clone())
        }
        (
            Target::Replay {
                replay: r1,
                side: Side::Src,
            },
            Target::Replay {
                replay: r2,
                side: Side::Dst,
            },
        ) if Arc::ptr_eq(r1, r2) => {
            if opts.record.is_some() || opts.on_stop.is_some() {
                return invalid("a replay is neither recorded nor stops QEMU processes");
            }
            Mode::Replay(r1.clone())
        }
        _ => {
            return invalid(
                "the source and the destination must be two live domains, or the source and the destination of one replay",
            )
        }
    };
    let replay = matches!(mode, Mode::Replay(_));
    src.begin_job(Side::Src, replay)?;
    if let Err(e) = dst.begin_job(Side::Dst, replay) {
        src.end_job(None, None);
        return Err(e);
    }
    // A replay serves its recorded calls in turn, each from where the previous one stopped.
    let mut replaying = None;
    if let Mode::Replay(shared) = &mode {
        let mut p = lock(&shared.progress);
        let (next, transport) = (p.next, p.transport.take());
        drop(p);
        let (Some(rt), Some(recorded)) = (transport, shared.requests.get(next)) else {
            src.end_job(None, None);
            dst.end_job(None, None);
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "every migrate call of this replay was made (or the replay failed)",
            ));
        };
        // Where the source connected is part of the recorded setup, not of the API call.
        req.connect_uri = recorded.connect_uri.clone();
        replaying = Some((shared.clone(), rt, next));
    }

    let (tx, rx) = channel::<Dispatch>();
    let dispatcher = {
        let (s, d) = (src.clone(), dst.clone());
        thread::spawn(move || {
            let dom = |side| if side == Side::Src { &s } else { &d };
            let mut completed = Vec::new();
            for msg in rx {
                match msg {
                    Dispatch::Event(side, DomainEvent::JobCompleted) => completed.push(side),
                    Dispatch::Event(side, ev) => dom(side).dispatch(&ev, None),
                    Dispatch::End(stats) => {
                        for side in completed.drain(..) {
                            dom(side).dispatch(&DomainEvent::JobCompleted, stats.as_ref());
                        }
                    }
                }
            }
        })
    };
    let on_event = {
        let (s, d, tx) = (src.clone(), dst.clone(), tx.clone());
        let mut hook = opts.on_event.take();
        move |side: Side, ev: &DomainEvent| {
            if side == Side::Src { &s } else { &d }.apply_event(ev);
            let _ = tx.send(Dispatch::Event(side, ev.clone()));
            if let Some(f) = hook.as_mut() {
                f(side, ev);
            }
        }
    };
    let job_started = opts.job_started.take();

    let memory = if req.flags & crate::driver::vocab::VIR_MIGRATE_POSTCOPY_RESUME != 0 {
        lock(&src.inner).memory.clone()
    } else {
        None
    };
    let result: Result<Migration, EngineError> = match mode {
        Mode::Live(a, b) => {
            // The previous recording ends here; this call starts or continues its own.
            lock(&src.inner).transcript = None;
            let (ctx, crx) = channel::<Controller>();
            let s = src.clone();
            let receiver = thread::spawn(move || {
                if let Ok(c) = crx.recv() {
                    s.set_controller(c);
                    if let Some(tx) = job_started {
                        let _ = tx.send(());
                    }
                }
            });
            let hooks = Hooks {
                on_event: Some(Box::new(on_event)),
                on_stop: opts.on_stop.take(),
                controller: Some(ctx),
                deadline: opts.deadline.unwrap_or(DEFAULT_DEADLINE),
            };
            let r = run::migrate(&a, &b, req, memory, opts.record.as_ref(), hooks);
            let _ = receiver.join();
            r.map(|live| {
                lock(&src.inner).transcript = live.recorder;
                Migration {
                    report: live.report,
                    stats: live.stats,
                    warnings: live.warnings,
                }
            })
        }
        Mode::Replay(_) => match replaying {
            Some((shared, mut rt, next)) => {
                if let Some(tx) = job_started {
                    let _ = tx.send(());
                }
                let r = engine::run_with(
                    req,
                    memory,
                    &mut ReplayWithEvents {
                        inner: &mut rt,
                        on_event,
                    },
                );
                let mut p = lock(&shared.progress);
                match &r {
                    Ok(_) => {
                        p.transport = Some(rt);
                        p.next = next + 1;
                    }
                    Err(_) => p.failed = true,
                }
                r.map(|report| Migration {
                    report,
                    stats: TransportStats::default(),
                    warnings: Vec::new(),
                })
            }
            None => Err(EngineError::Ended("no replay to run".into())),
        },
    };

    let (outcome, completed) = match result {
        Ok(m) => {
            lock(&src.inner).memory = Some(m.report.memory.clone());
            let completed = m.report.result.as_ref().ok().map(|o| o.stats.clone());
            src.end_job(Some(m.report.src_state), completed.clone());
            dst.end_job(Some(m.report.dst_state), None);
            (Ok(m), completed)
        }
        Err(e) => {
            src.end_job(None, None);
            dst.end_job(None, None);
            let e = match e {
                // Any failure of a replay (the recording ends early, a message it cannot take),
                // not only a different command, means it did not match.
                EngineError::Divergence(_) => engine_error(e),
                other if replay => {
                    VirError::new(code::INTERNAL_ERROR, format!("replay diverged: {other}"))
                }
                other => engine_error(other),
            };
            (Err(e), None)
        }
    };
    let _ = tx.send(Dispatch::End(completed));
    drop(tx);
    let _ = dispatcher.join();
    outcome
}
