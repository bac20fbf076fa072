//! Our switch policies in the sans-IO driver (docs/driver-behaviour.md §7.1): a tick samples
//! `query-migrate` while the source is in pre-copy, one sample at a time; the policy's verdict on
//! the counters decides `migrate-start-postcopy`. A fake QEMU answers the main line's commands at
//! once and holds the policy's samples until the test answers them with the counters it chose.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use std::collections::VecDeque;

use postcopy_core::driver::policy::{SwitchPolicy, SwitchReason};
use postcopy_core::driver::vocab::*;
use postcopy_core::driver::{
    Action, ApiCall, Input, MigrateRequest, Migration, Milestone, Outcome, PerSide, Side,
    SwitchedBy, Ticket, VirError,
};
use postcopy_core::qmp::{Command, QmpError};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};

const PC: u32 = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;
const MIB: u64 = 1024 * 1024;

struct Fake {
    m: Migration,
    sent: Vec<(Side, String)>,
    /// The policy's `query-migrate`s, unanswered.
    held: VecDeque<(Command, Ticket)>,
    milestones: Vec<Milestone>,
    warnings: Vec<String>,
    done: Option<Result<Outcome, VirError>>,
    src_status: &'static str,
}

impl Fake {
    fn new(flags: u32, policy: SwitchPolicy) -> Fake {
        let mut req = MigrateRequest::new(flags, "tcp:127.0.0.1:4444");
        req.switch_policy = Some(policy);
        Fake {
            m: Migration::new(req, PerSide::new((10, 0, 2), (10, 0, 2))),
            sent: Vec::new(),
            held: VecDeque::new(),
            milestones: Vec::new(),
            warnings: Vec::new(),
            done: None,
            src_status: "none",
        }
    }

    fn reply_for(&self, side: Side, cmd: &str) -> Value {
        match cmd {
            "query-migrate-capabilities" => Value::Array(
                [
                    "events",
                    "postcopy-ram",
                    "return-path",
                    "pause-before-switchover",
                ]
                .iter()
                .map(|c| json!({"capability": c, "state": false}))
                .collect(),
            ),
            "query-status" => match side {
                Side::Src => json!({"status": "running", "running": true}),
                Side::Dst => json!({"status": "inmigrate", "running": false}),
            },
            "query-migrate-parameters" => json!({"max-bandwidth": 134217728}),
            "query-migrate" => json!({"status": self.src_status}),
            _ => json!({}),
        }
    }

    fn run(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Send {
                    side,
                    command,
                    ticket,
                } => {
                    self.sent.push((side, command.name().to_string()));
                    if command == Command::QueryMigrate && self.src_status == "active" {
                        self.held.push_back((command, ticket));
                        continue;
                    }
                    let result = Ok(self.reply_for(side, command.name()));
                    queue.extend(self.m.handle(Input::Reply {
                        side,
                        command,
                        ticket,
                        result,
                    }));
                }
                Action::Milestone(m) => self.milestones.push(m),
                Action::Warn(w) => self.warnings.push(w),
                Action::Done(r) => self.done = Some(r),
                _ => {}
            }
        }
    }

    fn feed(&mut self, input: Input) {
        let actions = self.m.handle(input);
        self.run(actions);
    }

    fn src_status(&mut self, st: &'static str) {
        self.src_status = st;
        self.feed(Input::Event {
            side: Side::Src,
            name: "MIGRATION".into(),
            data: json!({"status": st}),
        });
    }

    /// Up to pre-copy: `migrate` answered, the source `active`.
    fn migrating(flags: u32, policy: SwitchPolicy) -> Fake {
        let mut f = Fake::new(flags, policy);
        let actions = f.m.start();
        f.run(actions);
        assert_eq!(f.count("migrate"), 1, "migration must start: {:?}", f.done);
        f.src_status("setup");
        f.feed(Input::Event {
            side: Side::Src,
            name: "MIGRATION_PASS".into(),
            data: json!({"pass": 1}),
        });
        f.src_status("active");
        f
    }

    fn count(&self, cmd: &str) -> usize {
        self.sent.iter().filter(|(_, c)| c == cmd).count()
    }

    /// A tick, and the answer to the sample it asked for: `ram` counters.
    fn sample(&mut self, ram: Value) {
        self.feed(Input::Tick);
        self.answer(Ok(json!({"status": "active", "ram": ram})));
    }

    fn answer(&mut self, result: Result<Value, QmpError>) {
        let (command, ticket) = self.held.pop_front().expect("a sample was asked for");
        self.feed(Input::Reply {
            side: Side::Src,
            command,
            ticket,
            result,
        });
    }

    fn switched(&self) -> Vec<SwitchedBy> {
        self.milestones
            .iter()
            .filter_map(|m| match m {
                Milestone::SwitchRequested(by) => Some(*by),
                _ => None,
            })
            .collect()
    }
}

/// `ram` of a 256 MiB guest: `sent` MiB sent once (as normal pages), `transferred` MiB on the
/// wire, the rate and the dirty rate in MiB/s.
fn ram(sent: u64, transferred: u64, rate: u64, dirty: u64) -> Value {
    json!({"total": 256 * MIB, "remaining": (256 - sent) * MIB, "transferred": transferred * MIB,
           "normal": sent * MIB / 4096, "duplicate": 0, "page-size": 4096,
           "mbps": (rate * MIB * 8) as f64 / 1e6, "dirty-pages-rate": dirty * MIB / 4096,
           "dirty-sync-count": 1})
}

/// Under `policy`, the samples `before` switch nothing and the sample `at` switches, once, in the
/// first pass: the reason the policy gave.
fn switch_reason(policy: SwitchPolicy, before: &[Value], at: Value) -> SwitchReason {
    let mut f = Fake::migrating(PC, policy);
    for r in before {
        f.sample(r.clone());
    }
    assert_eq!(f.count("migrate-start-postcopy"), 0);
    f.sample(at);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
    let [SwitchedBy::Policy {
        policy: by,
        pass: 1,
        reason,
    }] = f.switched()[..]
    else {
        panic!("one switch by the policy in pass 1: {:?}", f.switched());
    };
    assert_eq!(by, policy);
    // Switched: later ticks sample nothing.
    let asked = f.count("query-migrate");
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), asked);
    assert!(f.held.is_empty());
    reason
}

#[test]
fn half_pass_switches_on_the_first_sample_at_half() {
    assert_eq!(
        switch_reason(
            SwitchPolicy::HalfPass,
            &[ram(10, 10, 32, 0), ram(100, 100, 32, 0)],
            ram(130, 130, 32, 0)
        ),
        SwitchReason::HalfSent {
            sent: 130 * MIB,
            total: 256 * MIB
        }
    );
}

#[test]
fn a_tick_samples_only_in_pre_copy_and_one_sample_at_a_time() {
    let mut f = Fake::new(PC, SwitchPolicy::HalfPass);
    let actions = f.m.start();
    f.run(actions);
    // Before the source is active (setup): nothing.
    f.src_status("setup");
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), 0);
    f.src_status("active");
    f.feed(Input::Tick);
    f.feed(Input::Tick);
    assert_eq!(
        f.count("query-migrate"),
        1,
        "the second tick waits for the first sample"
    );
    f.answer(Ok(json!({"status": "active", "ram": ram(10, 10, 32, 0)})));
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), 2);
}

#[test]
fn a_stalled_link_never_switches() {
    // The guest dirties 64 MiB/s over a 32 MiB/s link: a switch, if the link moved. It stalls
    // for three samples, then moves again.
    let stalled = ram(100, 100, 32, 64);
    assert_eq!(
        switch_reason(
            SwitchPolicy::Adaptive { rtt_us: 0 },
            &[stalled.clone(), stalled.clone(), stalled],
            ram(101, 101, 32, 64)
        ),
        SwitchReason::NoNetProgress {
            dirty_rate: 64 * MIB,
            rate: 33_554_432
        }
    );
}

#[test]
fn adaptive_stays_while_the_pass_gains() {
    let mut f = Fake::migrating(PC, SwitchPolicy::Adaptive { rtt_us: 0 });
    for sent in [10, 50, 100, 200] {
        f.sample(ram(sent, sent, 32, 8));
    }
    assert_eq!(f.count("migrate-start-postcopy"), 0);
    assert!(f.switched().is_empty());
}

#[test]
fn start_postcopy_first_stops_the_policy() {
    let mut f = Fake::migrating(PC, SwitchPolicy::HalfPass);
    f.sample(ram(10, 10, 32, 0));
    f.feed(Input::Api(ApiCall::StartPostCopy { flags: 0 }));
    assert_eq!(f.switched(), [SwitchedBy::Api { pass: 1 }]);
    // A sample in flight when the API switched changes nothing.
    f.feed(Input::Tick);
    assert_eq!(f.count("query-migrate"), 1);
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

#[test]
fn a_failed_sample_warns_and_the_policy_goes_on() {
    let mut f = Fake::migrating(PC, SwitchPolicy::HalfPass);
    f.feed(Input::Tick);
    f.answer(Err(QmpError {
        class: "GenericError".into(),
        desc: "no migration".into(),
    }));
    assert_eq!(
        f.warnings,
        ["switch policy: query-migrate failed: no migration"]
    );
    f.sample(ram(10, 10, 32, 0));
    f.sample(ram(200, 200, 32, 0));
    assert_eq!(f.count("migrate-start-postcopy"), 1);
}

#[test]
fn a_policy_without_postcopy_is_refused_in_begin() {
    let mut f = Fake::new(VIR_MIGRATE_LIVE, SwitchPolicy::HalfPass);
    let actions = f.m.start();
    f.run(actions);
    let e = f.done.clone().unwrap().unwrap_err();
    assert_eq!(e.code, code::INVALID_ARG);
    assert_eq!(
        e.message(),
        "invalid argument: switch policy 'half-pass' requires VIR_MIGRATE_POSTCOPY"
    );
    assert_eq!(f.count("migrate"), 0);
    assert_eq!(
        f.count("migrate-set-capabilities"),
        2,
        "only attach's events"
    );
}
