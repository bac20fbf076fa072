//! The QMP protocol state machine and framing: greeting, negotiation, ids, errors, and every way a
//! peer can misbehave (never a panic, always an error naming what was wrong).

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use postcopy_core::qmp::{Framer, Message, Output, ProtocolError, Session, SessionState};
use serde_json::json;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2"}, "capabilities": ["oob"]}}"#;

fn ready() -> Session {
    let mut s = Session::new();
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
    let line = s
        .command("migrate", Some(&json!({"uri": "tcp:h:1"})), 7)
        .expect("ready");
    assert_eq!(
        line,
        "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:h:1\"},\"id\":\"lpc-7\"}\n"
    );
    assert_eq!(s.pending(), Some("migrate"));
    match s
        .receive(r#"{"return": {}, "id": "lpc-7"}"#)
        .expect("reply")
    {
        Output::Reply {
            id,
            command,
            result,
        } => {
            assert_eq!((id, command.as_str()), (7, "migrate"));
            assert_eq!(result, Ok(json!({})));
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(s.pending(), None);
}

#[test]
fn error_replies_carry_class_and_desc() {
    let mut s = ready();
    s.command("migrate-start-postcopy", None, 3).expect("ready");
    match s.receive(r#"{"error": {"class": "GenericError", "desc": "Postcopy must be started after migration has been started"}, "id": "lpc-3"}"#) {
        Ok(Output::Reply { result: Err(e), .. }) => {
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
    let e = s.command("migrate", None, 1).expect_err("not ready");
    assert_eq!(
        e.to_string(),
        "command 'migrate' sent in session state awaiting-greeting; it needs state ready"
    );
}

#[test]
fn a_missing_greeting_is_an_error() {
    let mut s = Session::new();
    let e = s.receive(r#"{"return": {}}"#).expect_err("no greeting");
    assert!(matches!(e, ProtocolError::MissingGreeting { .. }), "{e}");
    assert!(e.to_string().starts_with("expected the QMP greeting"));
}

#[test]
fn failed_negotiation_is_an_error() {
    let mut s = Session::new();
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
    s.command("query-status", None, 9).expect("still ready");
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
    s.command("migrate-incoming", None, 4).expect("ready");
    let e = s.eof().expect("cut short");
    assert_eq!(
        e.to_string(),
        "monitor closed (EOF) while waiting for the reply to 'migrate-incoming'"
    );
    assert_eq!(s.state(), SessionState::Closed);
    let mut idle = ready();
    assert_eq!(idle.eof(), None);
    let mut fresh = Session::new();
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
