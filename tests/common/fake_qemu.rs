//! The driver tests' fake QEMU pair (tests/driver_unit.rs, tests/driver_policy.rs): it answers
//! every command the driver sends from a table (or holds the ones a test names, until it answers
//! them), and collects what the driver did: commands sent, events, API answers, milestones,
//! warnings, the call's end.

#![allow(dead_code)] // each test file uses what it needs

use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{
    Action, ApiCall, ApiValue, DomainEvent, Input, MigrateRequest, Migration, Milestone, Outcome,
    PerSide, Side, SwitchedBy, Ticket, VirError,
};
use postcopy_core::qmp::{Command, QmpError};
use serde_json::{json, Value};
use std::collections::VecDeque;

pub const ALL_CAPS: &[&str] = &[
    "xbzrle",
    "rdma-pin-all",
    "auto-converge",
    "zero-blocks",
    "events",
    "postcopy-ram",
    "x-colo",
    "release-ram",
    "return-path",
    "pause-before-switchover",
    "multifd",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "x-ignore-shared",
    "validate-uuid",
    "background-snapshot",
    "zero-copy-send",
    "postcopy-preempt",
    "switchover-ack",
    "dirty-limit",
    "mapped-ram",
];

pub struct Fake {
    pub m: Migration,
    pub sent: Vec<(Side, String, Option<Value>)>,
    pub events: Vec<(Side, DomainEvent)>,
    pub api: Vec<(ApiCall, Result<ApiValue, VirError>)>,
    pub done: Option<Result<Outcome, VirError>>,
    pub stopped: Vec<Side>,
    pub milestones: Vec<Milestone>,
    pub warnings: Vec<String>,
    pub status: [&'static str; 2],
    /// `ram` of the `query-migrate` reply, when a test sets it.
    pub ram: Option<Value>,
    /// A command QEMU does not answer yet (the driver's wait stays where it is)...
    pub hold: Option<&'static str>,
    /// ... and the held ones, until `release`.
    pub held: Vec<(Side, Command, Ticket)>,
    /// `error-desc` of the `query-migrate` reply.
    pub error_desc: Option<&'static str>,
    /// Replies that replace the table's: (side, command, return value).
    pub replies: Vec<(Side, &'static str, Value)>,
    pub src_caps: Vec<&'static str>,
    pub dst_caps: Vec<&'static str>,
    /// Commands whose reply is an error: (side, command, desc).
    pub fail: Vec<(Side, &'static str, &'static str)>,
    pub src_running: bool,
}

pub fn req(flags: u32) -> MigrateRequest {
    MigrateRequest {
        flags,
        uri: "tcp:127.0.0.1:4444".into(),
        bandwidth_mib: Some(32),
        postcopy_bandwidth_mib: None,
        connect_uri: None,
        switch_policy: None,
    }
}

impl Fake {
    pub fn new(flags: u32) -> Fake {
        Fake::with(flags, ALL_CAPS.to_vec(), ALL_CAPS.to_vec())
    }

    pub fn with(flags: u32, src_caps: Vec<&'static str>, dst_caps: Vec<&'static str>) -> Fake {
        Fake::build(req(flags), (10, 0, 2), src_caps, dst_caps)
    }

    /// The one constructor: a migration of `req` between two QEMUs of `version` offering these
    /// capabilities.
    fn build(
        req: MigrateRequest,
        version: (u64, u64, u64),
        src_caps: Vec<&'static str>,
        dst_caps: Vec<&'static str>,
    ) -> Fake {
        Fake {
            m: Migration::new(req, PerSide::new(version, version)),
            sent: Vec::new(),
            events: Vec::new(),
            api: Vec::new(),
            done: None,
            stopped: Vec::new(),
            milestones: Vec::new(),
            warnings: Vec::new(),
            status: ["none", "none"],
            ram: None,
            hold: None,
            held: Vec::new(),
            error_desc: None,
            replies: Vec::new(),
            src_caps,
            dst_caps,
            fail: Vec::new(),
            src_running: true,
        }
    }

    pub fn reply_for(&self, side: Side, cmd: &str) -> Result<Value, postcopy_core::qmp::QmpError> {
        if let Some((_, _, desc)) = self.fail.iter().find(|(s, c, _)| *s == side && *c == cmd) {
            return Err(postcopy_core::qmp::QmpError {
                class: "GenericError".into(),
                desc: (*desc).into(),
            });
        }
        if let Some((_, _, v)) = self
            .replies
            .iter()
            .find(|(s, c, _)| *s == side && *c == cmd)
        {
            return Ok(v.clone());
        }
        let i = if side == Side::Src { 0 } else { 1 };
        Ok(match cmd {
            "query-migrate-capabilities" => {
                let caps = if side == Side::Src {
                    &self.src_caps
                } else {
                    &self.dst_caps
                };
                Value::Array(
                    caps.iter()
                        .map(|c| json!({"capability": c, "state": false}))
                        .collect(),
                )
            }
            "query-status" => match side {
                Side::Src => {
                    json!({"status": if self.src_running {"running"} else {"paused"}, "running": self.src_running})
                }
                Side::Dst => json!({"status": "inmigrate", "running": false}),
            },
            "query-migrate-parameters" => {
                json!({"tls-creds": "", "tls-hostname": "", "max-bandwidth": 134217728, "downtime-limit": 300, "max-postcopy-bandwidth": 0, "announce-max": 550})
            }
            // "-": a reply without `status` (a QEMU the driver cannot read).
            "query-migrate" if self.status[i] == "-" => json!({"total-time": 1000}),
            "query-migrate" => {
                let mut r = match &self.ram {
                    Some(ram) => json!({"status": self.status[i], "total-time": 1000, "ram": ram}),
                    None => json!({"status": self.status[i], "total-time": 1000, "downtime": 5,
                    "ram": {"total": 100, "transferred": 90, "remaining": 10, "dirty-sync-count": 3, "postcopy-requests": 7, "mbps": 8.0}}),
                };
                if let Some(d) = self.error_desc {
                    r["error-desc"] = json!(d);
                }
                r
            }
            _ => json!({}),
        })
    }

    /// Feeds one input, then answers every command until the driver waits for an event.
    pub fn feed(&mut self, input: Input) {
        let mut queue: VecDeque<Action> = self.m.handle(input).into();
        self.drain(&mut queue);
    }

    pub fn start(&mut self) {
        let mut queue: VecDeque<Action> = self.m.start().into();
        self.drain(&mut queue);
    }

    pub fn drain(&mut self, queue: &mut VecDeque<Action>) {
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Send {
                    side,
                    command,
                    ticket,
                } => {
                    if self.hold == Some(command.name()) {
                        self.sent
                            .push((side, command.name().to_string(), command.arguments()));
                        self.held.push((side, command, ticket));
                        continue;
                    }
                    let result = self.reply_for(side, command.name());
                    let resumes = command == Command::Cont && result.is_ok();
                    self.sent
                        .push((side, command.name().to_string(), command.arguments()));
                    queue.extend(self.m.handle(Input::Reply {
                        side,
                        command,
                        ticket,
                        result,
                    }));
                    if resumes {
                        // QEMU announces the running vCPUs, as after any `cont`.
                        queue.extend(self.m.handle(Input::Event {
                            side,
                            name: "RESUME".into(),
                            data: json!({}),
                        }));
                    }
                }
                Action::Emit { side, event } => self.events.push((side, event)),
                Action::ApiReturn { call, result } => self.api.push((call, result)),
                Action::StopQemu { side } => self.stopped.push(side),
                Action::Milestone(m) => self.milestones.push(m),
                Action::Warn(w) => self.warnings.push(w),
                Action::Done(r) => self.done = Some(r),
            }
        }
    }

    /// QEMU answers the held commands now.
    pub fn release(&mut self) {
        self.hold = None;
        for (side, command, ticket) in std::mem::take(&mut self.held) {
            let result = self.reply_for(side, command.name());
            self.feed(Input::Reply {
                side,
                command,
                ticket,
                result,
            });
        }
    }

    pub fn event(&mut self, side: Side, name: &str, data: Value) {
        self.feed(Input::Event {
            side,
            name: name.into(),
            data,
        });
    }

    pub fn status(&mut self, side: Side, st: &'static str) {
        self.status[if side == Side::Src { 0 } else { 1 }] = st;
        self.event(side, "MIGRATION", json!({"status": st}));
    }

    pub fn pass(&mut self, n: u64) {
        self.event(Side::Src, "MIGRATION_PASS", json!({"pass": n}));
    }

    pub fn count(&self, cmd: &str) -> usize {
        self.sent.iter().filter(|(_, c, _)| c == cmd).count()
    }

    pub fn args_of(&self, side: Side, cmd: &str) -> Vec<Value> {
        self.sent
            .iter()
            .filter(|(s, c, _)| *s == side && c == cmd)
            .map(|(_, _, a)| a.clone().unwrap_or(Value::Null))
            .collect()
    }

    pub fn lifecycle(&self, side: Side) -> Vec<&'static str> {
        self.events
            .iter()
            .filter(|(s, _)| *s == side)
            .filter_map(|(_, e)| match e {
                DomainEvent::Lifecycle { event, detail } => Some(event::name(*event, *detail)),
                _ => None,
            })
            .collect()
    }

    /// Runs a migration up to the `migrate` command (the source job is in perform3).
    pub fn started(flags: u32) -> Fake {
        Fake::started_on(flags, (10, 0, 2))
    }

    /// As `started`, with both QEMUs of `version`.
    pub fn started_on(flags: u32, version: (u64, u64, u64)) -> Fake {
        let mut f = Fake::build(req(flags), version, ALL_CAPS.to_vec(), ALL_CAPS.to_vec());
        f.start();
        assert_eq!(
            f.count("migrate"),
            1,
            "migration must have started: {:?}",
            f.done
        );
        f.status(Side::Src, "setup");
        f.status(Side::Dst, "active");
        f.pass(1);
        f.status(Side::Src, "active");
        f
    }

    /// From a started migration in pre-copy, goes through the switch to postcopy-active.
    pub fn through_switch(&mut self) {
        self.event(Side::Src, "STOP", json!({}));
        self.status(Side::Src, "pre-switchover");
        assert_eq!(self.count("migrate-continue"), 1);
        self.status(Side::Src, "device");
        self.status(Side::Src, "postcopy-active");
        self.status(Side::Dst, "postcopy-active");
    }

    pub fn complete(&mut self) {
        self.status(Side::Dst, "completed");
        self.status(Side::Src, "completed");
    }
}

impl Fake {
    /// A fake pair for `req` (a test's own request: a switch policy, other flags).
    pub fn for_request(req: MigrateRequest) -> Fake {
        Fake::build(req, (10, 0, 2), ALL_CAPS.to_vec(), ALL_CAPS.to_vec())
    }

    /// QEMU answers the first held command now, with `result`.
    pub fn answer_held(&mut self, result: Result<Value, QmpError>) {
        assert!(!self.held.is_empty(), "a command was held");
        let (side, command, ticket) = self.held.remove(0);
        self.feed(Input::Reply {
            side,
            command,
            ticket,
            result,
        });
    }

    /// Who requested the switch, each time (the driver's milestones).
    pub fn switched(&self) -> Vec<SwitchedBy> {
        self.milestones
            .iter()
            .filter_map(|m| match m {
                Milestone::SwitchRequested(by) => Some(*by),
                _ => None,
            })
            .collect()
    }
}
