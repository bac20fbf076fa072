//! Fuzzes the transcript loader and the replay engine: `Transcript::parse` on arbitrary UTF-8,
//! and, when it parses, `engine::run` over a `ReplayTransport`. Every `Err` is an accepted
//! outcome (corrupt transcript, divergence, protocol error, input ended); only panics, hangs and
//! runaway memory are bugs.
//!
//! Text without the transcript magic is also tried behind a fixed header, so the fuzzer spends
//! its time on records instead of rediscovering the header line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postcopy_core::engine;
use postcopy_core::transcript::{ReplayTransport, Transcript, TranscriptError};

const HEADER: &str = r#"{"format":"libvirt-postcopy-qmp-transcript","version":1,"scenario":"fuzz","recorder":"fuzz","qemu":{"src":"10.0.2","dst":"10.0.2"},"flags":32769,"flag_names":["LIVE","POSTCOPY"],"uri":"tcp:127.0.0.1:4444","bandwidth":32}"#;

fn replay(text: &str) {
    match Transcript::parse("fuzz.jsonl", text) {
        Ok(t) => {
            let req = t.request();
            let mut transport = ReplayTransport::new(t);
            let _ = engine::run(req, &mut transport);
        }
        Err(TranscriptError::Corrupt { .. }) => {}
        Err(e) => panic!("Transcript::parse returned {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    replay(text);
    if !text.contains("libvirt-postcopy-qmp-transcript") {
        replay(&format!("{HEADER}\n{text}"));
    }
});
