use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use super::format::{Record, Transcript};
use crate::driver::vocab::flag_names;
use crate::driver::{
    ApiCall, ApiValue, DomainEvent, MigrateRequest, Milestone, Side, SwitchedBy, VirError,
};
use crate::engine::{self, api_result_text, Divergence, EngineError, Incoming, Report, Transport};
use crate::qmp::Command;

/// A command line without its id, for comparison and display: `src -> migrate {"uri":...}`.
fn command_text(side: Side, msg: &Value) -> String {
    let name = msg.get("execute").and_then(Value::as_str).unwrap_or("?");
    match msg.get("arguments") {
        Some(a) => format!("{} -> {name} {a}", side.tag()),
        None => format!("{} -> {name}", side.tag()),
    }
}

fn strip_id(msg: &Value) -> Value {
    let mut m = msg.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("id");
    }
    m
}

/// Serves a recorded transcript to the engine and checks every command the shim sends against it.
#[derive(Debug)]
pub struct ReplayTransport {
    t: Transcript,
    pos: usize,
    /// Commands the shim sent that no record has matched yet.
    sent: VecDeque<(Side, Value)>,
    /// Recorded id -> the shim's id, per monitor.
    ids: BTreeMap<(Side, String), Value>,
    returns: VecDeque<(String, String)>,
    poll_pending: bool,
    /// The input being handled is a tick: a `query-migrate` sent now is the policy's sample,
    /// left out of the trace with its reply (the switch it led to is traced).
    tick_pending: bool,
    poll_ids: BTreeSet<String>,
    /// The readable trace: one line per message, ids and timestamps left out.
    pub trace: Vec<String>,
    last_line: usize,
    next_request: Option<MigrateRequest>,
}

impl ReplayTransport {
    pub fn new(t: Transcript) -> Self {
        ReplayTransport {
            t,
            pos: 0,
            sent: VecDeque::new(),
            ids: BTreeMap::new(),
            returns: VecDeque::new(),
            poll_pending: false,
            tick_pending: false,
            poll_ids: BTreeSet::new(),
            trace: Vec::new(),
            last_line: 1,
            next_request: None,
        }
    }

    pub fn transcript(&self) -> &Transcript {
        &self.t
    }

    /// Replays every migrate call of the transcript in turn: the header's, then each `migrate`
    /// record's. Stops at the first error.
    pub fn replay_all(&mut self) -> (Vec<Report>, Option<EngineError>) {
        let mut reports = Vec::new();
        let mut req = self.t.request();
        loop {
            let memory = reports.last().map(|r: &Report| r.memory.clone());
            match engine::run_with(req, memory, self) {
                Ok(r) => reports.push(r),
                Err(e) => return (reports, Some(e)),
            }
            match self.next_request.take() {
                Some(next) => req = next,
                None => return (reports, None),
            }
        }
    }

    fn diverge(&self, line: usize, expected: String, got: String) -> EngineError {
        EngineError::Divergence(Box::new(Divergence {
            file: self.t.file.clone(),
            line,
            expected,
            got,
        }))
    }

    fn describe_recv(&self, side: Side, msg: &Value) -> Option<String> {
        let tag = side.tag();
        if let Some(q) = msg.get("QMP") {
            let v = q
                .get("version")
                .and_then(|v| v.get("qemu"))
                .cloned()
                .unwrap_or(Value::Null);
            return Some(format!(
                "{tag} <- greeting QEMU {}.{}.{}",
                v.get("major").unwrap_or(&Value::Null),
                v.get("minor").unwrap_or(&Value::Null),
                v.get("micro").unwrap_or(&Value::Null)
            ));
        }
        if let Some(ev) = msg.get("event").and_then(Value::as_str) {
            let data = msg.get("data").map(|d| format!(" {d}")).unwrap_or_default();
            return Some(format!("{tag} <- {ev}{data}"));
        }
        if let Some(id) = msg.get("id").and_then(Value::as_str) {
            if self.poll_ids.contains(&format!("{}{id}", tag)) {
                return None;
            }
        }
        if let Some(e) = msg.get("error") {
            return Some(format!("{tag} <- error {e}"));
        }
        let r = msg.get("return").map(|r| r.to_string()).unwrap_or_default();
        if r.len() <= 100 {
            Some(format!("{tag} <- return {r}"))
        } else {
            Some(format!("{tag} <- return ({} bytes)", r.len()))
        }
    }
}

impl ReplayTransport {
    /// A switch policy's sample: counted on one trace line until something else is traced.
    fn count_policy_sample(&mut self) {
        const LINE: &str = "switch policy sampled query-migrate x";
        if let Some(n) = self
            .trace
            .last()
            .and_then(|l| l.strip_prefix(LINE))
            .and_then(|n| n.parse::<u64>().ok())
        {
            if let Some(last) = self.trace.last_mut() {
                *last = format!("{LINE}{}", n + 1);
            }
        } else {
            self.trace.push(format!("{LINE}1"));
        }
    }
}

/// What one record means for the engine: input for it, or nothing (checked or noted).
type Step = Result<Option<Incoming>, EngineError>;

impl ReplayTransport {
    /// The recording ended: whatever the shim still sent or returned has no counterpart.
    fn at_end(&mut self) -> Result<Incoming, EngineError> {
        if let Some((side, msg)) = self.sent.pop_front() {
            return Err(self.diverge(
                self.last_line + 1,
                "end of the recording".into(),
                command_text(side, &msg),
            ));
        }
        if let Some((call, result)) = self.returns.pop_front() {
            return Err(self.diverge(
                self.last_line + 1,
                "end of the recording".into(),
                format!("api {call} -> {result}"),
            ));
        }
        Ok(Incoming::End)
    }

    fn replay_record(&mut self, line: usize, rec: Record) -> Step {
        match rec {
            Record::Send { mon, msg, .. } => self.check_sent(line, Side::from(mon), &msg),
            Record::Recv { mon, msg, .. } => self.received(line, Side::from(mon), msg),
            Record::Closed { mon, reason, .. } => {
                let side = Side::from(mon);
                self.trace.push(format!("{} closed: {reason}", side.tag()));
                Ok(Some(Incoming::Closed { side, reason }))
            }
            Record::Api { api, .. } => {
                let Some(call) = api.to_call() else {
                    return Err(self.diverge(line, "a known API call".into(), api.call.clone()));
                };
                if call == ApiCall::GetJobStats {
                    self.poll_pending = true;
                } else {
                    self.trace
                        .push(format!("api {} flags=0x{:x}", api.call, api.flags));
                }
                Ok(Some(Incoming::Api(call)))
            }
            Record::Tick { .. } => {
                self.tick_pending = true;
                Ok(Some(Incoming::Tick))
            }
            Record::Note { text, .. } => {
                self.trace.push(format!("# {text}"));
                // The live transport's deadline is recorded as a note; it is input to the driver.
                Ok(super::deadline_from_note(&text).map(|limit| Incoming::Deadline { limit }))
            }
            rec @ Record::Migrate { .. } => {
                if let Some((side, msg)) = self.sent.pop_front() {
                    return Err(self.diverge(
                        line,
                        "the end of this migrate call".into(),
                        command_text(side, &msg),
                    ));
                }
                let req = rec.request();
                let flags = req.as_ref().map_or(0, |r| r.flags);
                self.next_request = req;
                self.trace.push(format!(
                    "=== migrate again: {}",
                    flag_names(flags).join(" | ")
                ));
                Ok(Some(Incoming::End))
            }
            Record::ApiReturn { call, result, .. } => {
                let expected = format!("api {call} -> {result}");
                let Some((gc, gr)) = self.returns.pop_front() else {
                    return Err(self.diverge(line, expected, "no API return yet".into()));
                };
                let got = format!("api {gc} -> {gr}");
                if got != expected {
                    return Err(self.diverge(line, expected, got));
                }
                Ok(None)
            }
        }
    }

    /// A recorded command: the shim must have sent the same one (its id aside).
    fn check_sent(&mut self, line: usize, side: Side, msg: &Value) -> Step {
        let expected = command_text(side, msg);
        let Some((gs, got)) = self.sent.pop_front() else {
            return Err(self.diverge(
                line,
                expected,
                "nothing: the shim sent no command here".into(),
            ));
        };
        if gs != side || strip_id(&got) != strip_id(msg) {
            return Err(self.diverge(line, expected, command_text(gs, &got)));
        }
        if let (Some(rid), Some(gid)) = (msg.get("id"), got.get("id")) {
            self.ids.insert((side, rid.to_string()), gid.clone());
        }
        Ok(None)
    }

    /// A recorded message from QEMU: handed to the engine with the shim's id in place of the
    /// recorded one, once the shim has nothing left to send or return before it.
    fn received(&mut self, line: usize, side: Side, mut msg: Value) -> Step {
        if let Some((gs, got)) = self.sent.pop_front() {
            return Err(self.diverge(
                line,
                format!("no command here (next recorded: {} <- message)", side.tag()),
                command_text(gs, &got),
            ));
        }
        if let Some((call, result)) = self.returns.pop_front() {
            return Err(self.diverge(
                line,
                "no API return here".into(),
                format!("api {call} -> {result}"),
            ));
        }
        if let Some(rid) = msg.get("id").cloned() {
            if let Some(ours) = self.ids.get(&(side, rid.to_string())) {
                msg["id"] = ours.clone();
            }
        }
        if let Some(t) = self.describe_recv(side, &msg) {
            self.trace.push(t);
        }
        Ok(Some(Incoming::Line {
            side,
            line: msg.to_string(),
        }))
    }
}

impl Transport for ReplayTransport {
    fn next(&mut self) -> Result<Incoming, EngineError> {
        self.tick_pending = false;
        loop {
            let Some((line, rec)) = self.t.records.get(self.pos).cloned() else {
                return self.at_end();
            };
            self.pos += 1;
            self.last_line = line;
            if let Some(incoming) = self.replay_record(line, rec)? {
                return Ok(incoming);
            }
        }
    }

    fn send(&mut self, side: Side, line: &str) -> Result<(), EngineError> {
        let msg: Value = serde_json::from_str(line)
            .map_err(|e| EngineError::transport("shim sent invalid JSON", e))?;
        let query = side == Side::Src
            && msg.get("execute").and_then(Value::as_str) == Some(Command::QueryMigrate.name());
        let is_poll = query && (self.poll_pending || self.tick_pending);
        if is_poll {
            if self.tick_pending {
                self.count_policy_sample();
            } else {
                self.poll_pending = false;
            }
            if let Some(id) = msg.get("id").and_then(Value::as_str) {
                self.poll_ids.insert(format!("{}{id}", side.tag()));
            }
        } else {
            self.trace.push(command_text(side, &strip_id(&msg)));
        }
        self.sent.push_back((side, msg));
        Ok(())
    }

    fn api_return(
        &mut self,
        call: &ApiCall,
        result: &Result<ApiValue, VirError>,
    ) -> Result<(), EngineError> {
        let text = api_result_text(result);
        if *call != ApiCall::GetJobStats {
            self.trace
                .push(format!("api {} returned {text}", call.name()));
        }
        self.returns.push_back((call.name().to_string(), text));
        Ok(())
    }

    fn stop_qemu(&mut self, side: Side) {
        self.trace.push(format!(
            "{} qemu stopped (libvirt's qemuProcessStop)",
            side.tag()
        ));
    }

    fn domain_event(&mut self, side: Side, event: &DomainEvent) {
        self.trace
            .push(format!("{} event {}", side.tag(), event.describe()));
    }

    fn warn(&mut self, message: &str) {
        self.trace.push(format!("warning: {message}"));
    }

    fn milestone(&mut self, milestone: &Milestone) {
        if let Milestone::SwitchRequested(SwitchedBy::Policy {
            policy,
            pass,
            reason,
        }) = milestone
        {
            self.trace.push(format!(
                "switch policy {} switches (pass {pass}): {}",
                policy.name(),
                reason.describe()
            ));
        }
    }

    fn finished(&mut self) -> bool {
        false
    }
}
