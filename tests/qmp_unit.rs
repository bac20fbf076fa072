//! The QMP protocol state machine and framing: greeting, negotiation, ids, errors, and every way a
//! peer can misbehave (never a panic, always an error naming what was wrong).

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use postcopy_core::qmp::{Command, Framer, Message, Output, ProtocolError, Session, SessionState};
use pretty_assertions::assert_eq;
use serde_json::json;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2"}, "capabilities": ["oob"]}}"#;

fn ready() -> Session {
    let mut s: Session = Session::new();
    match s.receive(GREETING).expect("greeting") {
        Output::Greeting { greeting, transmit } => {
            assert_eq!(greeting.version, (10, 0, 2));
            assert_eq!(greeting.capabilities, ["oob"]);
            assert_eq!(
                transmit,
                "{\"execute\":\"qmp_capabilities\",\"id\":\"lpc-0\"}\n"
            );
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(s.state(), SessionState::Negotiating);
    assert_eq!(
        s.receive(r#"{"return": {}, "id": "lpc-0"}"#).expect("ok"),
        Output::Ready
    );
    assert_eq!(s.state(), SessionState::Ready);
    s
}

#[test]
fn handshake_then_commands_with_our_prefix() {
    let mut s = ready();
    let migrate = Command::Migrate {
        uri: "tcp:h:1".into(),
        resume: false,
    };
    let line = s.execute(migrate.clone(), ()).expect("ready");
    assert_eq!(
        line.as_deref(),
        Some("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:h:1\",\"resume\":false},\"id\":\"lpc-1\"}\n")
    );
    assert_eq!(s.in_flight(), Some(&migrate));
    match s
        .receive(r#"{"return": {}, "id": "lpc-1"}"#)
        .expect("reply")
    {
        Output::Reply {
            command,
            context: (),
            result,
            transmit,
        } => {
            assert_eq!(command, migrate);
            assert_eq!(result, Ok(json!({})));
            assert_eq!(transmit, None);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(s.in_flight(), None);
}

#[test]
fn error_replies_carry_class_and_desc() {
    let mut s = ready();
    s.execute(Command::MigrateStartPostcopy, ()).expect("ready");
    match s.receive(r#"{"error": {"class": "GenericError", "desc": "Postcopy must be started after migration has been started"}, "id": "lpc-1"}"#) {
        Ok(Output::Reply { command, result: Err(e), .. }) => {
            assert_eq!(command, Command::MigrateStartPostcopy);
            assert_eq!(e.class, "GenericError");
            assert!(e.desc.starts_with("Postcopy must be started"));
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn events_pass_through_with_their_data() {
    let mut s = ready();
    let o = s
        .receive(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION_PASS", "data": {"pass": 2}}"#)
        .expect("event");
    assert_eq!(
        o,
        Output::Event {
            name: "MIGRATION_PASS".into(),
            data: json!({"pass": 2})
        }
    );
    let o = s.receive(r#"{"event": "STOP"}"#).expect("event");
    assert_eq!(
        o,
        Output::Event {
            name: "STOP".into(),
            data: json!({})
        }
    );
}

#[test]
fn a_command_before_negotiation_names_the_state_it_needs() {
    let mut s = Session::new();
    let e = s.execute(Command::Cont, ()).expect_err("not ready");
    assert_eq!(
        e.to_string(),
        "command 'cont' sent in session state awaiting-greeting; it needs state ready"
    );
}

#[test]
fn a_missing_greeting_is_an_error() {
    let mut s: Session = Session::new();
    let e = s.receive(r#"{"return": {}}"#).expect_err("no greeting");
    assert!(matches!(e, ProtocolError::MissingGreeting { .. }), "{e}");
    assert!(e.to_string().starts_with("expected the QMP greeting"));
}

#[test]
fn failed_negotiation_is_an_error() {
    let mut s: Session = Session::new();
    s.receive(GREETING).expect("greeting");
    let e = s
        .receive(r#"{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": "lpc-0"}"#)
        .expect_err("fails");
    assert_eq!(e.to_string(), "QMP capability negotiation failed: nope");
}

#[test]
fn malformed_json_and_shapes_are_named() {
    let mut s = ready();
    for (line, reason) in [
        ("{not json", "invalid JSON"),
        ("[1,2]", "not a JSON object"),
        (
            r#"{"hello": 1}"#,
            "neither greeting, event, return nor error",
        ),
        (
            r#"{"error": {"class": "X"}, "id": "lpc-1"}"#,
            "error reply without class and desc",
        ),
        (r#"{"event": 5}"#, "event name is not a string"),
        (
            r#"{"QMP": {"version": {}}}"#,
            "greeting without QMP.version.qemu",
        ),
    ] {
        let e = s.receive(line).expect_err(line);
        assert!(e.to_string().contains(reason), "{line}: {e}");
    }
    // The session is still usable after garbage.
    s.execute(Command::QueryStatus, ()).expect("still ready");
}

#[test]
fn replies_to_unknown_ids_and_without_ids_are_dropped() {
    let mut s = ready();
    for (line, why) in [
        (r#"{"return": {}, "id": "lpc-99"}"#, "reply to unknown id"),
        (
            r#"{"return": {}, "id": "libvirt-5"}"#,
            "reply to unknown id",
        ),
        (r#"{"return": {}}"#, "reply without id"),
        (
            r#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#,
            "error reply without id",
        ),
    ] {
        match s.receive(line).expect("not fatal") {
            Output::Dropped { reason } => assert!(reason.contains(why), "{line}: {reason}"),
            o => panic!("{line}: {o:?}"),
        }
    }
}

#[test]
fn eof_in_the_middle_of_a_command_names_it() {
    let mut s = ready();
    let incoming = Command::MigrateIncoming {
        uri: "tcp:h:1".into(),
        exit_on_error: None,
    };
    s.execute(incoming, ()).expect("ready");
    let e = s.eof().expect("cut short");
    assert_eq!(
        e.to_string(),
        "monitor closed (EOF) while waiting for the reply to 'migrate-incoming'"
    );
    assert_eq!(s.state(), SessionState::Closed);
    let mut idle = ready();
    assert_eq!(idle.eof(), None);
    let mut fresh: Session = Session::new();
    assert!(fresh
        .eof()
        .expect("no greeting")
        .to_string()
        .contains("waiting for the greeting"));
}

#[test]
fn framing_splits_lines_across_reads() {
    let mut f = Framer::new();
    assert!(f.push(b"{\"a\":").expect("ok").is_empty());
    assert!(f.has_partial());
    let lines = f.push(b"1}\r\n\n{\"b\":2}\n{\"c\"").expect("ok");
    assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
    assert!(f.has_partial());
}

#[test]
fn an_over_long_line_is_refused() {
    let mut f = Framer::with_limit(16);
    let e = f.push(&[b'x'; 17]).expect_err("too long");
    assert_eq!(e, ProtocolError::LineTooLong { max: 16 });
    let mut f = Framer::with_limit(16);
    assert!(f.push(b"0123456789abcdefXYZ\n").is_err());
}

#[test]
fn messages_parse_without_a_session() {
    assert!(matches!(Message::parse(GREETING), Ok(Message::Greeting(_))));
    assert!(matches!(
        Message::parse(r#"{"return": [], "id": 1}"#),
        Ok(Message::Return { .. })
    ));
}

#[test]
fn a_line_in_many_pieces_is_framed_once_whole() {
    let mut f = Framer::new();
    for b in b"{\"event\":\"STOP\"}\r" {
        assert!(f.push(&[*b]).expect("ok").is_empty());
    }
    assert_eq!(f.push(b"\n{\"a\"").expect("ok"), ["{\"event\":\"STOP\"}"]);
    assert_eq!(f.push(b":1}\n").expect("ok"), ["{\"a\":1}"]);
    assert!(!f.has_partial());
}

#[test]
fn a_command_waits_for_the_monitor_and_goes_out_with_the_reply() {
    // libvirt holds a monitor for one command at a time; the session keeps that rule.
    let mut s: Session<&str> = Session::new();
    s.receive(GREETING).expect("greeting");
    s.receive(r#"{"return": {}, "id": "lpc-0"}"#)
        .expect("ready");
    assert_eq!(s.in_flight(), None);
    let first = s.execute(Command::MigrateStartPostcopy, "switch");
    assert_eq!(
        first,
        Ok(Some(
            "{\"execute\":\"migrate-start-postcopy\",\"id\":\"lpc-1\"}\n".to_string()
        ))
    );
    assert_eq!(s.execute(Command::QueryMigrate, "stats"), Ok(None));
    assert_eq!(s.execute(Command::Cont, "cont"), Ok(None));
    assert_eq!(s.queued(), 2);
    // An event or a reply to another id does not free the monitor.
    assert!(matches!(
        s.receive(r#"{"event": "STOP"}"#),
        Ok(Output::Event { .. })
    ));
    assert!(matches!(
        s.receive(r#"{"return": {}, "id": "lpc-2"}"#),
        Ok(Output::Dropped { .. })
    ));
    assert_eq!(s.in_flight(), Some(&Command::MigrateStartPostcopy));
    let replies: Vec<_> = ["lpc-1", "lpc-2", "lpc-3"]
        .iter()
        .map(|id| {
            match s
                .receive(&format!(r#"{{"return": {{}}, "id": "{id}"}}"#))
                .expect("reply")
            {
                Output::Reply {
                    command,
                    context,
                    transmit,
                    ..
                } => (command.name(), context, transmit),
                o => panic!("{o:?}"),
            }
        })
        .collect();
    assert_eq!(
        replies,
        [
            (
                "migrate-start-postcopy",
                "switch",
                Some("{\"execute\":\"query-migrate\",\"id\":\"lpc-2\"}\n".to_string())
            ),
            (
                "query-migrate",
                "stats",
                Some("{\"execute\":\"cont\",\"id\":\"lpc-3\"}\n".to_string())
            ),
            ("cont", "cont", None),
        ]
    );
    assert_eq!((s.in_flight(), s.queued()), (None, 0));
}

#[test]
fn eof_drops_the_queued_commands_and_names_the_one_in_flight() {
    let mut s = ready();
    s.execute(Command::QueryMigrate, ()).expect("ready");
    s.execute(Command::Cont, ()).expect("ready");
    assert_eq!(
        s.eof().map(|e| e.to_string()),
        Some("monitor closed (EOF) while waiting for the reply to 'query-migrate'".into())
    );
    assert_eq!((s.in_flight(), s.queued()), (None, 0));
    let e = s.execute(Command::Cont, ()).expect_err("closed");
    assert_eq!(
        e.to_string(),
        "command 'cont' sent in session state closed; it needs state ready"
    );
}

#[test]
fn every_command_has_its_qemu_name_and_arguments() {
    let caps = json!({"capabilities": [{"capability": "postcopy-ram", "state": true}]});
    let cases: Vec<(Command, &str, Option<serde_json::Value>)> = vec![
        (Command::QmpCapabilities, "qmp_capabilities", None),
        (
            Command::QueryMigrateCapabilities,
            "query-migrate-capabilities",
            None,
        ),
        (
            Command::MigrateSetCapabilities(caps.clone()),
            "migrate-set-capabilities",
            Some(caps),
        ),
        (
            Command::enable_events(),
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
        ),
        (
            Command::QueryMigrateParameters,
            "query-migrate-parameters",
            None,
        ),
        (
            Command::set_parameter("max-postcopy-bandwidth", json!(8u64 << 20)),
            "migrate-set-parameters",
            Some(json!({"max-postcopy-bandwidth": 8u64 << 20})),
        ),
        (
            Command::MigrateIncoming {
                uri: "tcp:h:1".into(),
                exit_on_error: Some(false),
            },
            "migrate-incoming",
            Some(json!({"uri": "tcp:h:1", "exit-on-error": false})),
        ),
        (
            Command::MigrateIncoming {
                uri: "tcp:h:1".into(),
                exit_on_error: None,
            },
            "migrate-incoming",
            Some(json!({"uri": "tcp:h:1"})),
        ),
        (
            Command::Migrate {
                uri: "tcp:h:1".into(),
                resume: true,
            },
            "migrate",
            Some(json!({"uri": "tcp:h:1", "resume": true})),
        ),
        (
            Command::MigrateContinue,
            "migrate-continue",
            Some(json!({"state": "pre-switchover"})),
        ),
        (
            Command::MigrateStartPostcopy,
            "migrate-start-postcopy",
            None,
        ),
        (
            Command::MigrateRecover {
                uri: "tcp:h:1".into(),
            },
            "migrate-recover",
            Some(json!({"uri": "tcp:h:1"})),
        ),
        (Command::MigratePause, "migrate-pause", None),
        (Command::MigrateCancel, "migrate_cancel", None),
        (Command::QueryMigrate, "query-migrate", None),
        (Command::QueryStatus, "query-status", None),
        (Command::Cont, "cont", None),
    ];
    for (command, name, args) in cases {
        assert_eq!((command.name(), command.arguments()), (name, args));
        assert_eq!(command.to_string(), name);
    }
    // Arguments keep QEMU's schema order on the wire (the recorded fixtures compare bytes).
    let mut s = ready();
    let line = s
        .execute(
            Command::MigrateIncoming {
                uri: "tcp:h:1".into(),
                exit_on_error: Some(false),
            },
            (),
        )
        .expect("ready");
    assert_eq!(
        line.as_deref(),
        Some("{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:h:1\",\"exit-on-error\":false},\"id\":\"lpc-1\"}\n")
    );
}
