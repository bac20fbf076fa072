//! Import of libvirt daemon debug logs into the transcript format.
//!
//! A virtqemud (or libvirtd) run with `log_filters = "1:qemu.qemu_monitor 1:qemu.qemu_process
//! 1:qemu.qemu_migration"` and a file output logs every QMP message of every domain:
//!
//! * `QEMU_MONITOR_NEW: mon=0x... fd=N` when a monitor is opened; the thread that opens it has
//!   just logged `Connect monitor to vm=0x... name='NAME'` (qemu_process.c), which names the
//!   domain. Monitor pointers are reused after `QEMU_MONITOR_CLOSE: mon=0x...`.
//! * `QEMU_MONITOR_SEND_MSG: mon=0x... msg={...}` when a command is queued, by the thread that
//!   sends it (`QEMU_MONITOR_IO_WRITE: mon=0x... buf={...}` is the write itself, by the monitor's
//!   I/O thread; it is used only for logs without SEND_MSG).
//! * `QEMU_MONITOR_RECV_REPLY: mon=0x... reply={...}` and `QEMU_MONITOR_RECV_EVENT: mon=0x...
//!   event={...}`, and the greeting as the debug line `Line [{"QMP": ...}]` of the monitor's I/O
//!   thread.
//! * `qemuMigrationSrcPerform` (qemu_migration.c) at the start of each migration API call on the
//!   source, with its `flags=0x...`.
//!
//! [`import`] merges a source and a destination log, in time order, into one transcript of one
//! domain: `recv` and `send` records for its monitors, and for each source-side migration call
//! after the first a `migrate` record at the point the call started. A command written on the
//! source by a thread other than the one running the migration call in progress (the thread that
//! logged the latest `qemuMigrationSrcPerform`) is a client's API call:
//! `migrate-start-postcopy` (virDomainMigrateStartPostCopy, virsh's client-side switch or `virsh
//! migrate-postcopy`), `migrate-pause` (virDomainAbortJobFlags(POSTCOPY)) and `query-migrate`
//! (virDomainGetJobInfo, virsh's progress polling) are wrapped in `api`/`api_return` records.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use postcopy_core::driver::policy::Sample;
use postcopy_core::driver::MigrateRequest;
use postcopy_core::transcript::format::{ApiRecord, MonitorTag, QemuVersions};
use postcopy_core::transcript::{Header, Record};

/// The recorder name written into imported transcripts.
pub const RECORDER: &str = "libvirt 11.3.0 log (import-libvirt-log)";

/// One log entry (a line and its continuation lines).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
    pub thread: u64,
    pub func: String,
    pub msg: String,
}

/// Parses a libvirt log: `YYYY-MM-DD HH:MM:SS.mmm+0000: TID: level : func:line : message`.
/// Lines that do not start with a timestamp continue the previous entry.
pub fn parse_entries(text: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for line in text.lines() {
        match parse_head(line) {
            Some(e) => out.push(e),
            None => {
                if let Some(last) = out.last_mut() {
                    last.msg.push('\n');
                    last.msg.push_str(line);
                }
            }
        }
    }
    out
}

fn parse_head(line: &str) -> Option<Entry> {
    let b = line.as_bytes();
    if b.len() < 30 || b[4] != b'-' || b[10] != b' ' || b[19] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let rest = line.get(23..)?;
    // "+0000: 1234: debug : func:123 : message"
    let rest = rest.split_once(": ")?.1;
    let (tid, rest) = rest.split_once(": ")?;
    let thread = tid.trim().parse::<u64>().ok()?;
    let (_level, rest) = rest.split_once(" : ")?;
    let (loc, msg) = rest.split_once(" : ")?;
    let func = loc.rsplit_once(':').map(|(f, _)| f).unwrap_or(loc);
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    let secs = days as u64 * 86400 + h * 3600 + mi * 60 + s;
    Some(Entry {
        ms: secs * 1000 + ms,
        thread,
        func: func.to_string(),
        msg: msg.to_string(),
    })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// What a log entry says about QMP.
#[derive(Debug, Clone, PartialEq)]
enum Qmp {
    Connect { name: String },
    New { mon: String },
    Close { mon: String },
    Send { mon: String, msg: Value },
    Write { mon: String, msg: Value },
    Reply { mon: String, msg: Value },
    Event { mon: String, msg: Value },
    Greeting { msg: Value },
    Perform { flags: u32 },
}

/// The first JSON value in `s`.
fn first_json(s: &str) -> Option<Value> {
    serde_json::Deserializer::from_str(s)
        .into_iter::<Value>()
        .next()?
        .ok()
}

fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let i = msg.find(key)?;
    Some(&msg[i + key.len()..])
}

fn mon_of(msg: &str) -> Option<String> {
    let rest = field(msg, "mon=")?;
    Some(rest.split(|c: char| c.is_whitespace()).next()?.to_string())
}

fn classify(e: &Entry) -> Option<Qmp> {
    let m = e.msg.as_str();
    if let Some(rest) = m.strip_prefix("QEMU_MONITOR_NEW: ") {
        return Some(Qmp::New { mon: mon_of(rest)? });
    }
    if let Some(rest) = m.strip_prefix("QEMU_MONITOR_CLOSE: ") {
        return Some(Qmp::Close { mon: mon_of(rest)? });
    }
    if let Some(rest) = m.strip_prefix("QEMU_MONITOR_SEND_MSG: ") {
        return Some(Qmp::Send {
            mon: mon_of(rest)?,
            msg: first_json(field(rest, "msg=")?)?,
        });
    }
    if let Some(rest) = m.strip_prefix("QEMU_MONITOR_IO_WRITE: ") {
        return Some(Qmp::Write {
            mon: mon_of(rest)?,
            msg: first_json(field(rest, "buf=")?)?,
        });
    }
    if let Some(rest) = m.strip_prefix("QEMU_MONITOR_RECV_REPLY: ") {
        return Some(Qmp::Reply {
            mon: mon_of(rest)?,
            msg: first_json(field(rest, "reply=")?)?,
        });
    }
    if let Some(rest) = m.strip_prefix("QEMU_MONITOR_RECV_EVENT: ") {
        return Some(Qmp::Event {
            mon: mon_of(rest)?,
            msg: first_json(field(rest, "event=")?)?,
        });
    }
    if let Some(rest) = m.strip_prefix("Line [") {
        let v = first_json(rest)?;
        return v.get("QMP").is_some().then_some(Qmp::Greeting { msg: v });
    }
    if let Some(rest) = m.strip_prefix("Connect monitor to vm=") {
        let name = field(rest, "name='")?;
        return Some(Qmp::Connect {
            name: name.split('\'').next()?.to_string(),
        });
    }
    if e.func == "qemuMigrationSrcPerform" {
        let f = field(m, "flags=0x")?;
        let hex: String = f.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        return Some(Qmp::Perform {
            flags: u32::from_str_radix(&hex, 16).ok()?,
        });
    }
    None
}

/// One QMP message of the domain, with where and when it was logged.
#[derive(Debug, Clone)]
struct Msg {
    ms: u64,
    thread: u64,
    mon: MonitorTag,
    kind: MsgKind,
    msg: Value,
    /// Order within its log (ties on `ms` keep the log's order).
    seq: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgKind {
    Send,
    Recv,
    Perform(u32),
}

/// The domain's messages in one log: every monitor opened for `domain`, until it closes.
fn extract(text: &str, domain: &str, tag: MonitorTag) -> Vec<Msg> {
    let entries = parse_entries(text);
    let parsed: Vec<(usize, &Entry, Qmp)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| classify(e).map(|q| (i, e, q)))
        .collect();
    let have_send = parsed.iter().any(|(_, _, q)| matches!(q, Qmp::Send { .. }));
    // The name each thread last connected a monitor for.
    let mut connecting: BTreeMap<u64, String> = BTreeMap::new();
    let mut ours: BTreeSet<String> = BTreeSet::new();
    let mut greeting: BTreeMap<u64, (u64, usize, Value)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut active = false;
    let push = |out: &mut Vec<Msg>, e: &Entry, seq, kind, msg: Value| {
        out.push(Msg {
            ms: e.ms,
            thread: e.thread,
            mon: tag,
            kind,
            msg,
            seq,
        })
    };
    for (seq, e, q) in parsed {
        match q {
            Qmp::Connect { name } => {
                connecting.insert(e.thread, name);
            }
            Qmp::New { mon } => {
                if connecting.get(&e.thread).map(String::as_str) == Some(domain) {
                    ours.insert(mon);
                    active = true;
                } else {
                    ours.remove(&mon);
                }
                connecting.remove(&e.thread);
            }
            Qmp::Close { mon } if ours.remove(&mon) => {
                active = !ours.is_empty();
            }
            Qmp::Greeting { msg } => {
                greeting.insert(e.thread, (e.ms, seq, msg));
            }
            Qmp::Send { mon, msg } if ours.contains(&mon) => {
                push(&mut out, e, seq, MsgKind::Send, msg)
            }
            Qmp::Write { mon, msg } if !have_send && ours.contains(&mon) => {
                push(&mut out, e, seq, MsgKind::Send, msg)
            }
            Qmp::Reply { mon, msg } | Qmp::Event { mon, msg } if ours.contains(&mon) => {
                // The greeting was read by the same I/O thread just before.
                if let Some((ms, gseq, g)) = greeting.remove(&e.thread) {
                    out.push(Msg {
                        ms,
                        thread: e.thread,
                        mon: tag,
                        kind: MsgKind::Recv,
                        msg: g,
                        seq: gseq,
                    });
                }
                push(&mut out, e, seq, MsgKind::Recv, msg)
            }
            Qmp::Perform { flags } if active => {
                push(&mut out, e, seq, MsgKind::Perform(flags), Value::Null)
            }
            _ => {}
        }
    }
    out.sort_by_key(|m| (m.ms, m.seq));
    out
}

/// Why two logs do not make a transcript.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("no QMP traffic of domain '{0}' in the source log")]
    NoTraffic(String),
    #[error(
        "no qemuMigrationSrcPerform call for domain '{0}' in the source log (log_filters must include 1:qemu.qemu_migration)"
    )]
    NoPerform(String),
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub domain: String,
    pub scenario: String,
    pub description: Option<String>,
}

/// The result of an import: the transcript's lines, and facts about the switch to post-copy.
#[derive(Debug, Clone)]
pub struct Imported {
    pub header: Header,
    pub records: Vec<Record>,
    pub summary: Summary,
}

impl Imported {
    /// The transcript as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut s = serde_json::to_string(&self.header).unwrap_or_default();
        s.push('\n');
        for r in &self.records {
            s.push_str(&serde_json::to_string(r).unwrap_or_default());
            s.push('\n');
        }
        s
    }
}

/// What the source log says about the switch to post-copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `migrate-start-postcopy` commands written on the source.
    pub start_postcopy_count: usize,
    /// How many of them came from a client API call (not from the migration thread).
    pub start_postcopy_by_api: usize,
    /// When MIGRATION_PASS with pass 2 was received, ms since the transcript's start.
    pub pass2_ms: Option<u64>,
    /// When the first `migrate-start-postcopy` was written.
    pub start_postcopy_ms: Option<u64>,
    /// Whether the first `migrate-start-postcopy` came after pass 2 was received.
    pub after_pass2: bool,
    /// The statuses of MIGRATION events on the source, in order, without repeats.
    pub src_statuses: Vec<String>,
    /// The source reported `pre-switchover` before the reply to the first
    /// `migrate-start-postcopy` arrived (the reply raced with the state change).
    pub pre_switchover_before_reply: bool,
    /// `migrate-continue` commands written on the source.
    pub migrate_continue_count: usize,
    /// The counters of the last `query-migrate` reply on the source before the first
    /// `migrate-start-postcopy` (its `sent` and `total`: memory sent, a page each time, and
    /// guest RAM). On QEMU > 10.0 this is the reply the flag's switch was decided on
    /// (docs/driver-behaviour.md §7 rule 2).
    pub sample_before_switch: Option<Sample>,
}

impl Summary {
    pub fn latency_ms(&self) -> Option<u64> {
        self.start_postcopy_ms?.checked_sub(self.pass2_ms?)
    }
}

fn exec(m: &Value) -> &str {
    m.get("execute").and_then(Value::as_str).unwrap_or("")
}

fn version_of(greeting: Option<&Value>) -> String {
    greeting
        .and_then(|g| g.pointer("/QMP/version"))
        .map(|v| {
            let q = &v["qemu"];
            let pkg = v
                .get("package")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            format!("{}.{}.{} {pkg}", q["major"], q["minor"], q["micro"])
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Imports one migration of `opts.domain` from the source's and the destination's daemon logs.
pub fn import(src_log: &str, dst_log: &str, opts: &ImportOptions) -> Result<Imported, ImportError> {
    let src = extract(src_log, &opts.domain, MonitorTag::Src);
    let dst = extract(dst_log, &opts.domain, MonitorTag::Dst);
    if src.is_empty() {
        return Err(ImportError::NoTraffic(opts.domain.clone()));
    }
    let performs: Vec<(u64, u64, u32)> = src
        .iter()
        .filter_map(|m| match m.kind {
            MsgKind::Perform(f) => Some((m.ms, m.thread, f)),
            _ => None,
        })
        .collect();
    let Some(&(perform_ms, _, flags)) = performs.first() else {
        return Err(ImportError::NoPerform(opts.domain.clone()));
    };
    let mut all: Vec<Msg> = src.into_iter().chain(dst).collect();
    all.sort_by_key(|m| (m.ms, m.mon == MonitorTag::Dst, m.seq));
    let t0 = all.first().map(|m| m.ms).unwrap_or(0);

    // Header facts.
    let greeting = |tag| {
        all.iter()
            .find(|m| m.mon == tag && m.msg.get("QMP").is_some())
            .map(|m| &m.msg)
    };
    let incoming_uri = all
        .iter()
        .find(|m| m.mon == MonitorTag::Dst && exec(&m.msg) == "migrate-incoming")
        .and_then(|m| m.msg.pointer("/arguments/uri"))
        .and_then(Value::as_str)
        .map(String::from);
    let src_migrates: Vec<&Msg> = all
        .iter()
        .filter(|m| m.mon == MonitorTag::Src && exec(&m.msg) == "migrate")
        .collect();
    let src_uri = src_migrates
        .first()
        .and_then(|m| m.msg.pointer("/arguments/uri"))
        .and_then(Value::as_str)
        .map(String::from);
    let uri = incoming_uri
        .clone()
        .or_else(|| src_uri.clone())
        .unwrap_or_default();
    let mib = |key: &str| {
        all.iter()
            .filter(|m| {
                m.mon == MonitorTag::Src
                    && m.ms >= perform_ms
                    && exec(&m.msg) == "migrate-set-parameters"
            })
            .find_map(|m| m.msg.pointer(&format!("/arguments/{key}"))?.as_u64())
            .map(|b| b / (1024 * 1024))
    };
    let request = MigrateRequest {
        flags,
        uri: uri.clone(),
        bandwidth_mib: mib("max-bandwidth"),
        postcopy_bandwidth_mib: mib("max-postcopy-bandwidth").filter(|b| *b > 0),
        connect_uri: src_uri.filter(|s| *s != uri),
        switch_policy: None,
    };
    let qemu = QemuVersions {
        src: version_of(greeting(MonitorTag::Src)),
        dst: version_of(greeting(MonitorTag::Dst)),
    };
    let header = postcopy_shim::transcript_header(
        &request,
        &opts.scenario,
        RECORDER,
        qemu,
        opts.description.clone(),
    );

    // Records.
    let mut records = Vec::new();
    let mut summary = Summary::default();
    let mut perform_no = 0;
    let mut switch_id: Option<Value> = None;
    let mut switch_replied = false;
    // Replies to API calls still to come: (monitor id, call, kind).
    let mut api_ids: BTreeMap<String, &'static str> = BTreeMap::new();
    for m in &all {
        let t = m.ms - t0;
        match m.kind {
            MsgKind::Perform(f) => {
                perform_no += 1;
                if perform_no > 1 {
                    // This call's URIs: where the destination listens (migrate-incoming, or
                    // migrate-recover for a recovery) and where the source connects.
                    let after = |mon: MonitorTag, names: &[&str]| {
                        all.iter()
                            .find(|x| {
                                x.mon == mon
                                    && x.ms >= m.ms
                                    && x.kind == MsgKind::Send
                                    && names.contains(&exec(&x.msg))
                            })
                            .and_then(|x| x.msg.pointer("/arguments/uri"))
                            .and_then(Value::as_str)
                            .map(String::from)
                    };
                    let call_uri = after(MonitorTag::Dst, &["migrate-incoming", "migrate-recover"])
                        .unwrap_or_else(|| uri.clone());
                    let call_connect =
                        after(MonitorTag::Src, &["migrate"]).filter(|c| *c != call_uri);
                    let call = MigrateRequest {
                        flags: f,
                        uri: call_uri,
                        connect_uri: call_connect,
                        ..request.clone()
                    };
                    records.push(Record::migrate(t, &call));
                }
            }
            MsgKind::Send => {
                let name = exec(&m.msg);
                // The thread running the migrate call in progress (calls are sequential): the
                // one that logged the latest qemuMigrationSrcPerform. A worker thread may run a
                // later call after serving a client's call, hence by time.
                let current = performs.iter().rev().find(|p| p.0 <= m.ms).map(|p| p.1);
                let client =
                    m.mon == MonitorTag::Src && m.ms >= perform_ms && current != Some(m.thread);
                let api = match name {
                    "migrate-start-postcopy" if client => Some(("start_postcopy", 0)),
                    "migrate-pause" if client => Some(("abort_job", 1)),
                    "query-migrate" if client => Some(("get_job_stats", 0)),
                    _ => None,
                };
                if name == "migrate-continue" && m.mon == MonitorTag::Src {
                    summary.migrate_continue_count += 1;
                }
                if name == "migrate-start-postcopy"
                    && m.mon == MonitorTag::Src
                    && summary.start_postcopy_count == 0
                {
                    switch_id = m.msg.get("id").cloned();
                }
                if name == "migrate-start-postcopy" && m.mon == MonitorTag::Src {
                    summary.start_postcopy_count += 1;
                    if api.is_some() {
                        summary.start_postcopy_by_api += 1;
                    }
                    if summary.start_postcopy_ms.is_none() {
                        summary.start_postcopy_ms = Some(t);
                        summary.after_pass2 = summary.pass2_ms.is_some();
                    }
                }
                if let Some((call, flags)) = api {
                    records.push(Record::Api {
                        t,
                        api: ApiRecord {
                            call: call.to_string(),
                            flags,
                        },
                    });
                    if let Some(id) = m.msg.get("id").and_then(Value::as_str) {
                        api_ids.insert(id.to_string(), call);
                    }
                }
                records.push(Record::Send {
                    t,
                    mon: m.mon,
                    msg: m.msg.clone(),
                });
            }
            MsgKind::Recv => {
                if m.mon == MonitorTag::Src {
                    match m.msg.get("event").and_then(Value::as_str) {
                        Some("MIGRATION_PASS")
                            if m.msg.pointer("/data/pass").and_then(Value::as_u64) == Some(2)
                                && summary.pass2_ms.is_none() =>
                        {
                            summary.pass2_ms = Some(t)
                        }
                        Some("MIGRATION") => {
                            if let Some(s) = m.msg.pointer("/data/status").and_then(Value::as_str) {
                                if s == "pre-switchover" && switch_id.is_some() && !switch_replied {
                                    summary.pre_switchover_before_reply = true;
                                }
                                if summary.src_statuses.last().map(String::as_str) != Some(s) {
                                    summary.src_statuses.push(s.to_string());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if m.mon == MonitorTag::Src && summary.start_postcopy_ms.is_none() {
                    if let Some(sample) = m.msg.get("return").and_then(Sample::from_query_migrate) {
                        summary.sample_before_switch = Some(sample);
                    }
                }
                records.push(Record::Recv {
                    t,
                    mon: m.mon,
                    msg: m.msg.clone(),
                });
                if m.mon == MonitorTag::Src
                    && switch_id.is_some()
                    && m.msg.get("id") == switch_id.as_ref()
                {
                    switch_replied = true;
                }
                let id = m.msg.get("id").and_then(Value::as_str).unwrap_or("");
                if m.mon == MonitorTag::Src {
                    if let Some(call) = api_ids.remove(id) {
                        let result = match (call, m.msg.get("error")) {
                            (_, Some(e)) => format!(
                                "VIR_ERR_INTERNAL_ERROR: internal error: unable to execute QEMU command: {}",
                                e.get("desc").and_then(Value::as_str).unwrap_or("")
                            ),
                            ("get_job_stats", None) => "ok stats job_type=2".to_string(),
                            _ => "ok".to_string(),
                        };
                        records.push(Record::ApiReturn {
                            t,
                            call: call.to_string(),
                            result,
                        });
                    }
                }
            }
        }
    }
    Ok(Imported {
        header,
        records,
        summary,
    })
}

/// The name the shim gives an event (`DomainEvent::describe`: `SUSPENDED_POSTCOPY`,
/// `MIGRATION_ITERATION 2`, `JOB_COMPLETED`), from the text `virsh event --timestamp` printed
/// for it (tools/virsh-domain-event.c, without the timestamp): `event 'lifecycle' for domain
/// 'NAME': Suspended Post-copy`, `event 'migration-iteration' for domain 'NAME': iteration:
/// '2'`, `event 'job-completed' for domain 'NAME':` followed by its parameters. Another event
/// type gives `Other("TYPE")` (also one without details, as `event 'control-error' for domain
/// 'NAME'`); text that is not an event of `domain` gives `None`.
pub fn virsh_event(text: &str, domain: &str) -> Option<VirshEvent> {
    let rest = text.strip_prefix("event '")?;
    let (kind, rest) = rest.split_once('\'')?;
    let rest = rest.strip_prefix(&format!(" for domain '{domain}'"))?;
    // Events without details (`control-error`) end at the domain's name.
    let rest = match rest.strip_prefix(':') {
        Some(r) => r,
        None if rest.is_empty() => rest,
        None => return None,
    };
    let first = rest.lines().next().unwrap_or("").trim();
    Some(match kind {
        "lifecycle" => {
            let (ev, detail) = first.split_once(' ')?;
            VirshEvent::Modelled(format!(
                "{}_{}",
                ev.to_ascii_uppercase(),
                lifecycle_detail(detail)
            ))
        }
        "migration-iteration" => {
            let n = first
                .strip_prefix("iteration: '")?
                .strip_suffix('\'')?
                .parse::<u64>()
                .ok()?;
            VirshEvent::Modelled(format!("MIGRATION_ITERATION {n}"))
        }
        "job-completed" => VirshEvent::Modelled("JOB_COMPLETED".to_string()),
        other => VirshEvent::Other(other.to_string()),
    })
}

/// An event `virsh event` printed, as [`virsh_event`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirshEvent {
    /// A LIFECYCLE, MIGRATION_ITERATION or JOB_COMPLETED event, named as the shim names it.
    Modelled(String),
    /// Another event type (virsh's name for it).
    Other(String),
}

/// virsh's lifecycle detail strings (virshDomainEventDetail) as the shim's detail names.
fn lifecycle_detail(detail: &str) -> String {
    match detail {
        "Post-copy Error" => "POSTCOPY_FAILED".to_string(),
        "Post-copy" => "POSTCOPY".to_string(),
        "I/O Error" => "IOERROR".to_string(),
        "API error" => "API_ERROR".to_string(),
        "Event wakeup" => "WAKEUP".to_string(),
        d => d.to_ascii_uppercase().replace(' ', "_"),
    }
}
