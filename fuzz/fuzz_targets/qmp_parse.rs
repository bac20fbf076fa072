//! Fuzzes the sans-IO QMP layer: `Framer` (default and tiny line limits, arbitrary chunking),
//! `Message::parse` on every line, and a `Session` fed the same lines, with `execute()` calls
//! interleaved and `eof()` at the end. Peer input may only produce the errors the protocol
//! documents for the state the session is in; anything else (a panic, an unexpected error variant,
//! a state machine that moves the wrong way) is a bug.
//!
//! Input layout: byte 0 = mode (bits 0-1: 0 greeting taken from the input, 1 fixed QEMU greeting,
//! 2/3 fixed greeting plus the negotiation reply so the session starts ready; bits 2-7: the small
//! line limit), byte 1 = chunk size for `push` (1..=256) and when to send commands, rest = the
//! monitor's byte stream.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use postcopy_core::qmp::{Command, Framer, Message, Output, ProtocolError, Session, SessionState};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}"#;
const NEGOTIATED: &str = r#"{"return": {}, "id": "lpc-0"}"#;
/// The command `which` selects.
fn command_for(which: u8) -> Command {
    match which % 6 {
        0 => Command::QueryMigrate,
        1 => Command::QueryStatus,
        2 => Command::MigrateStartPostcopy,
        3 => Command::MigrateCancel,
        4 => Command::QueryMigrateCapabilities,
        _ => Command::Migrate {
            uri: "tcp:127.0.0.1:4444".into(),
            resume: which & 1 == 1,
        },
    }
}

/// What `Framer` must return for the whole stream, however it is chunked: complete lines without
/// the `\n` and one trailing `\r`, all-whitespace lines skipped; and whether a partial line remains.
fn reference_lines(data: &[u8]) -> (Vec<String>, bool) {
    let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let tail = parts.pop().unwrap_or(&[]);
    let lines = parts
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    (lines, tail.iter().any(|b| !b.is_ascii_whitespace()))
}

struct Driver {
    /// Each command's context is its number, so a reply names the command it answers.
    session: Session<u64>,
    next_id: u64,
    issued: BTreeSet<u64>,
    replied: BTreeSet<u64>,
}

impl Driver {
    fn new() -> Self {
        Driver {
            session: Session::new(),
            next_id: 1,
            issued: BTreeSet::new(),
            replied: BTreeSet::new(),
        }
    }

    fn receive(&mut self, line: &str) {
        let before = self.session.state();
        let parsed = Message::parse(line);
        if let Err(e) = &parsed {
            assert!(
                matches!(e, ProtocolError::Malformed { .. }),
                "Message::parse returned {e:?}"
            );
        }
        let out = self.session.receive(line);
        let after = self.session.state();
        match (&parsed, &out) {
            (Err(pe), Err(se)) => assert_eq!(pe, se, "parse and receive disagree on {line:?}"),
            (Err(pe), Ok(o)) => panic!("parse failed ({pe:?}) but receive gave {o:?}"),
            _ => {}
        }
        match out {
            Err(e) => {
                assert_eq!(before, after, "state changed on error {e:?}");
                match e {
                    ProtocolError::Malformed { .. } => {}
                    ProtocolError::MissingGreeting { .. } => {
                        assert_eq!(before, SessionState::AwaitingGreeting)
                    }
                    ProtocolError::NegotiationFailed { .. } => {
                        assert_eq!(before, SessionState::Negotiating)
                    }
                    other => panic!("receive returned a non-peer error: {other:?}"),
                }
            }
            Ok(Output::Greeting { transmit, .. }) => {
                assert_eq!(before, SessionState::AwaitingGreeting);
                assert_eq!(after, SessionState::Negotiating);
                assert!(self.session.greeting().is_some());
                check_encoded(&transmit, "qmp_capabilities");
            }
            Ok(Output::Ready) => {
                assert_eq!(before, SessionState::Negotiating);
                assert_eq!(after, SessionState::Ready);
            }
            Ok(Output::Reply {
                command,
                context: id,
                transmit,
                ..
            }) => {
                assert_eq!(before, after);
                assert!(
                    self.issued.contains(&id),
                    "reply for command {id} ({command}) never sent"
                );
                assert!(self.replied.insert(id), "second reply for command {id}");
                // The monitor is free: the next queued command goes out, and only then.
                match (transmit, self.session.in_flight()) {
                    (Some(line), Some(next)) => check_encoded(&line, next.name()),
                    (None, None) => assert_eq!(self.session.queued(), 0),
                    other => panic!("transmitted and in flight disagree: {other:?}"),
                }
            }
            Ok(Output::Event { .. }) | Ok(Output::Dropped { .. }) => {
                assert_eq!(before, after)
            }
        }
    }

    fn command(&mut self, which: u8) {
        let command = command_for(which);
        let name = command.name();
        let id = self.next_id;
        let before = self.session.state();
        let busy = self.session.in_flight().is_some();
        match self.session.execute(command, id) {
            Ok(line) => {
                assert_eq!(before, SessionState::Ready);
                match line {
                    Some(line) => {
                        assert!(!busy, "a command went out while another was in flight");
                        check_encoded(&line, name);
                    }
                    None => assert!(busy, "a command waited on a free monitor"),
                }
                self.issued.insert(id);
                self.next_id += 1;
            }
            Err(ProtocolError::WrongState { state, needed, .. }) => {
                assert_ne!(before, SessionState::Ready);
                assert_eq!(state, before);
                assert_eq!(needed, SessionState::Ready);
            }
            Err(other) => panic!("execute() returned {other:?}"),
        }
        assert_eq!(before, self.session.state());
    }

    fn eof(&mut self) {
        let before = self.session.state();
        let pending = self.session.in_flight().is_some();
        let r = self.session.eof();
        assert_eq!(self.session.state(), SessionState::Closed);
        match r {
            None => assert!(before != SessionState::AwaitingGreeting && !pending),
            Some(ProtocolError::Eof { .. }) => {
                assert!(before == SessionState::AwaitingGreeting || pending)
            }
            Some(other) => panic!("eof() returned {other:?}"),
        }
    }
}

fn check_encoded(line: &str, name: &str) {
    assert!(
        line.ends_with('\n') && line.matches('\n').count() == 1,
        "{line:?}"
    );
    let v: serde_json::Value = serde_json::from_str(line).expect("encoded command is JSON");
    assert_eq!(v["execute"], name);
    assert!(v["id"].as_str().is_some_and(|s| s.starts_with("lpc-")));
}

fuzz_target!(|input: &[u8]| {
    let (mode, chunk, data) = match input {
        [m, c, rest @ ..] => (*m, *c, rest),
        _ => return,
    };
    let small = usize::from(mode >> 2);
    let chunk = usize::from(chunk) + 1;

    // The framer with the real limit: nothing here comes near 16 MiB, so no error, and the same
    // lines as splitting the whole stream at once.
    let mut framer = Framer::new();
    let mut tiny = Framer::with_limit(small);
    let mut tiny_failed = false;
    let mut lines = Vec::new();
    for piece in data.chunks(chunk) {
        lines.extend(framer.push(piece).expect("no line reaches MAX_LINE"));
        if !tiny_failed {
            match tiny.push(piece) {
                Ok(ls) => {
                    for l in &ls {
                        assert!(!l.contains('\n'));
                        let _ = Message::parse(l);
                    }
                }
                Err(ProtocolError::LineTooLong { max }) => {
                    assert_eq!(max, small);
                    // The IO layer drops the monitor here; pushing more must still not panic.
                    let _ = tiny.push(b"\n{}\n");
                    tiny_failed = true;
                }
                Err(other) => panic!("Framer::push returned {other:?}"),
            }
        }
    }
    let (expected, partial) = reference_lines(data);
    assert_eq!(lines, expected);
    assert_eq!(framer.has_partial(), partial);
    let _ = tiny.has_partial();

    let mut d = Driver::new();
    let mut lines = lines.iter().map(String::as_str);
    match mode & 3 {
        0 => {
            if let Some(g) = lines.next() {
                d.receive(g);
            }
        }
        1 => d.receive(GREETING),
        _ => {
            d.receive(GREETING);
            d.receive(NEGOTIATED);
            assert_eq!(d.session.state(), SessionState::Ready);
        }
    }
    for (i, line) in lines.enumerate() {
        // Occasionally send a command first, so that replies can match something in flight.
        let sel = (chunk as u8) ^ (i as u8).wrapping_mul(37) ^ line.len() as u8;
        if sel.is_multiple_of(3) {
            d.command(sel / 3);
        }
        d.receive(line);
    }
    d.eof();
    // A closed session still rejects commands without panicking.
    d.command(0);
});
