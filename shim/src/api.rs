//! The library's public API: domains reached by their QMP monitors or replayed from a transcript,
//! and libvirt's migration calls on them (virDomainMigrate3, virDomainMigrateStartPostCopy,
//! virDomainAbortJobFlags, virDomainGetJobStats, virDomainGetState, domain events).
//!
//! Rust programs use it directly; the C ABI ([`crate::ffi`]) only translates to it. The migration
//! itself is the driver's ([`crate::driver`]) through the engine; this module keeps what a
//! libvirt domain object keeps between calls: its state, whether a migration job runs on it (and
//! the [`Controller`] to reach that job from other threads), the last completed statistics and
//! the event callbacks.
//!
//! ```no_run
//! use postcopy_shim::api::{self, Domain};
//! use postcopy_shim::driver::vocab::*;
//! use postcopy_shim::driver::MigrateRequest;
//!
//! let (src, dst) = (Domain::open_qmp("/run/src.qmp"), Domain::open_qmp("/run/dst.qmp"));
//! let flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
//! match api::migrate(&src, &dst, MigrateRequest::new(flags, "tcp:127.0.0.1:4444")) {
//!     Ok(outcome) => println!("{:?}", outcome.stats.get(param::memory_iteration())),
//!     Err(e) => eprintln!("{}", e.message()),
//! }
//! ```

use std::path::Path;
use std::sync::mpsc::channel;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use crate::driver::vocab::{code, event, job, state};
use crate::driver::{
    abort_without_job, check_driver_flags, check_public_flags, start_postcopy_without_job, ApiCall,
    ApiValue, DomainEvent, DomainState, JobStats, MigrateRequest, Outcome, Side, VirError,
};
use crate::engine::{self, EngineError, Incoming, Report, Transport};
use crate::io::run::{self, Hooks};
use crate::io::Controller;
use crate::transcript::{Record, ReplayTransport};

/// A domain-event callback: the domain, the event, and for JOB_COMPLETED the completed statistics.
pub type EventCallback = Box<dyn FnMut(&Domain, &DomainEvent, Option<&JobStats>) + Send>;

/// The error of an engine failure that is not the driver's: I/O becomes VIR_ERR_OPERATION_FAILED,
/// anything else (protocol, replay divergence, input ended) VIR_ERR_INTERNAL_ERROR with its text.
/// A divergence's text starts with "replay diverged", so its message starts with
/// "internal error: replay diverged".
pub fn engine_error(e: EngineError) -> VirError {
    match e {
        EngineError::Io(m) => VirError::new(code::OPERATION_FAILED, m),
        other => VirError::new(code::INTERNAL_ERROR, other.to_string()),
    }
}

/// The statistics of "no job" (virDomainGetJobStats with no job: VIR_DOMAIN_JOB_NONE, nothing).
fn no_job() -> JobStats {
    JobStats {
        job_type: job::NONE,
        params: Vec::new(),
    }
}

/// libvirt's state after a lifecycle event of a migration (the B.4 table, read backwards).
fn state_after(ev: i32, detail: i32) -> Option<DomainState> {
    let s = |st, reason| Some(DomainState::new(st, reason));
    match (ev, detail) {
        (event::STARTED, event::STARTED_MIGRATED) => s(state::PAUSED, state::PAUSED_MIGRATION),
        (event::SUSPENDED, event::SUSPENDED_MIGRATED) => s(state::PAUSED, state::PAUSED_MIGRATION),
        (event::SUSPENDED, event::SUSPENDED_POSTCOPY) => s(state::PAUSED, state::PAUSED_POSTCOPY),
        (event::SUSPENDED, event::SUSPENDED_POSTCOPY_FAILED) => {
            s(state::PAUSED, state::PAUSED_POSTCOPY_FAILED)
        }
        (event::RESUMED, event::RESUMED_POSTCOPY) => s(state::RUNNING, state::RUNNING_POSTCOPY),
        (event::RESUMED, event::RESUMED_POSTCOPY_FAILED) => {
            s(state::RUNNING, state::RUNNING_POSTCOPY_FAILED)
        }
        (event::RESUMED, event::RESUMED_MIGRATED) => s(state::RUNNING, state::RUNNING_MIGRATED),
        (event::RESUMED, _) => s(state::RUNNING, state::RUNNING_UNPAUSED),
        (event::STOPPED, event::STOPPED_MIGRATED) => s(state::SHUTOFF, state::SHUTOFF_MIGRATED),
        _ => None,
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
                return engine::idle_api(&call, Domain::active(&g));
            };
            if job.replay {
                return Err(replay_call());
            }
            if job.role == Side::Dst {
                return Err(match call {
                    ApiCall::StartPostCopy { flags } if flags != 0 => {
                        start_postcopy_without_job(flags, true)
                    }
                    ApiCall::StartPostCopy { .. } => VirError::new(
                        code::OPERATION_TIMEOUT,
                        "cannot acquire state change lock (held by monitor=remoteDispatchDomainMigratePrepare3Params)",
                    ),
                    ApiCall::AbortJob { flags }
                        if flags & !crate::driver::vocab::VIR_DOMAIN_ABORT_JOB_POSTCOPY != 0 =>
                    {
                        abort_without_job(flags, true)
                    }
                    ApiCall::AbortJob { .. } => VirError::new(
                        code::OPERATION_INVALID,
                        "cannot abort incoming migration; use virDomainDestroy instead",
                    ),
                    ApiCall::GetJobStats => VirError::new(
                        code::OPERATION_UNSUPPORTED,
                        "migration statistics are available only on the source host",
                    ),
                });
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
                return Err(VirError::new(
                    code::OPERATION_UNSUPPORTED,
                    "migration statistics are available only on the source host",
                ));
            }
            return Ok(g.completed.clone().unwrap_or_else(no_job));
        }
        if lock(&self.inner).job.is_none() {
            return Ok(no_job());
        }
        match self.call(ApiCall::GetJobStats) {
            Ok(ApiValue::Stats(s)) => Ok(s),
            Ok(ApiValue::Done) => Ok(no_job()),
            // The job ended between the two looks: libvirt would have found no job.
            Err(_) if lock(&self.inner).job.is_none() => Ok(no_job()),
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
        if g.job.is_some() {
            return Err(VirError::new(
                code::OPERATION_TIMEOUT,
                "cannot acquire state change lock (held by monitor=remoteDispatchDomainMigratePerform3Params)",
            ));
        }
        if !Domain::active(&g) {
            return Err(VirError::new(
                code::OPERATION_INVALID,
                "domain is not running",
            ));
        }
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
        for (_, r) in &t.records {
            if let Record::Migrate {
                flags,
                uri,
                connect_uri,
                bandwidth,
                postcopy_bandwidth,
                ..
            } = r
            {
                let mut req = MigrateRequest::new(*flags, uri.clone());
                req.connect_uri = connect_uri.clone();
                req.bandwidth_mib = *bandwidth;
                req.postcopy_bandwidth_mib = *postcopy_bandwidth;
                requests.push(req);
            }
        }
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
    let failed = DomainState::new(state::PAUSED, state::PAUSED_POSTCOPY_FAILED);
    let mut calls = run::with_recovery(req, Some(policy), |req| {
        let r = migrate(src, dst, req.clone());
        on_attempt(req, &r);
        let in_postcopy_failure = r.is_err() && src.state(0).is_ok_and(|st| st == failed);
        (r, in_postcopy_failure)
    });
    calls.pop().unwrap_or_else(|| {
        Err(VirError::new(
            code::INTERNAL_ERROR,
            "no migrate call was made",
        ))
    })
}

/// virDomainMigrate3 from `src` to `dst`: blocks until the migration completed or failed.
/// `src` and `dst` are two live domains, or the source and the destination of one replay.
pub fn migrate(
    src: &Arc<Domain>,
    dst: &Arc<Domain>,
    req: MigrateRequest,
) -> Result<Outcome, VirError> {
    let invalid = |m: &str| Err(VirError::new(code::INVALID_ARG, m));
    if Arc::ptr_eq(src, dst) {
        return invalid("the source and the destination are the same domain");
    }
    let mut req = req;
    let mode = match (&src.target, &dst.target) {
        (Target::Qmp(a), Target::Qmp(b)) => {
            // libvirt checks flags in the public API and in Begin, before any QEMU is involved.
            check_public_flags(req.flags)
                .and_then(|_| check_driver_flags(req.flags, "qemuDomainMigrateBegin3Params"))?;
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
        ) if Arc::ptr_eq(r1, r2) => Mode::Replay(r1.clone()),
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
        move |side: Side, ev: &DomainEvent| {
            if side == Side::Src { &s } else { &d }.apply_event(ev);
            let _ = tx.send(Dispatch::Event(side, ev.clone()));
        }
    };

    let memory = if req.flags & crate::driver::vocab::VIR_MIGRATE_POSTCOPY_RESUME != 0 {
        lock(&src.inner).memory.clone()
    } else {
        None
    };
    let result: Result<Report, EngineError> = match mode {
        Mode::Live(a, b) => {
            let (ctx, crx) = channel::<Controller>();
            let s = src.clone();
            let receiver = thread::spawn(move || {
                if let Ok(c) = crx.recv() {
                    s.set_controller(c);
                }
            });
            let hooks = Hooks {
                on_event: Some(Box::new(on_event)),
                controller: Some(ctx),
                ..Default::default()
            };
            let r =
                run::migrate_continuing(&a, &b, req, memory, None, hooks).map(|live| live.report);
            let _ = receiver.join();
            r
        }
        Mode::Replay(_) => match replaying {
            Some((shared, mut rt, next)) => {
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
                r
            }
            None => Err(EngineError::Ended("no replay to run".into())),
        },
    };

    let (outcome, completed) = match result {
        Ok(report) => {
            lock(&src.inner).memory = Some(report.memory.clone());
            let completed = report.result.as_ref().ok().map(|o| o.stats.clone());
            src.end_job(Some(report.src_state), completed.clone());
            dst.end_job(Some(report.dst_state), None);
            (report.result, completed)
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
