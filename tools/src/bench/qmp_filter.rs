//! The benchmark's "postcopy-preempt off" factor: a destination QEMU that does not offer the
//! capability, as every QEMU did before 7.1 (and in 2014, when the flag was proposed).
//!
//! libvirt 11.3 (and our driver, `params::plan_caps`) turns postcopy-preempt on when both QEMUs
//! list it in `query-migrate-capabilities`, and there is no flag to turn it off. So the benchmark
//! puts this relay between the driver and the destination's QMP socket: it passes every line
//! through unchanged, except that it removes the `postcopy-preempt` entry from a
//! `query-migrate-capabilities` reply. The driver then plans the capability off on the source (the
//! peer lacks it) and never sets it on the destination, which keeps QEMU's default (off). The
//! transcript of such a run shows the reply as the driver saw it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde_json::Value;

/// The capability the relay hides.
pub const HIDDEN: &str = "postcopy-preempt";

/// Removes [`HIDDEN`] from a `query-migrate-capabilities` reply line; any other line is returned
/// as it came. A reply is recognised by its shape: `return` is a list of objects with a
/// `capability` member (no other QMP reply has that shape).
pub fn filter_line(line: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let Some(list) = v.get_mut("return").and_then(Value::as_array_mut) else {
        return line.to_string();
    };
    if list.is_empty() || !list.iter().all(|c| c.get("capability").is_some()) {
        return line.to_string();
    }
    let before = list.len();
    list.retain(|c| c.get("capability").and_then(Value::as_str) != Some(HIDDEN));
    if list.len() == before {
        return line.to_string();
    }
    let mut out = v.to_string();
    out.push_str("\r\n");
    out
}

/// A relay listening on its own socket, connected to QEMU's for every client.
#[derive(Debug)]
pub struct QmpFilter {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl QmpFilter {
    /// Listens on `path`, relaying each connection to the QMP socket `qemu`.
    pub fn start(path: &Path, qemu: &Path) -> std::io::Result<QmpFilter> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (st, qemu) = (stop.clone(), qemu.to_path_buf());
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = UnixStream::connect(&qemu) else {
                    continue; // the client sees its connection close
                };
                relay(client, upstream);
            }
        });
        Ok(QmpFilter {
            path: path.to_path_buf(),
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for QmpFilter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; it sees the flag and ends.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Two pumps: client -> QEMU unchanged, QEMU -> client line by line through [`filter_line`].
/// Each ends when its reader sees EOF or an error (QEMU gone, client gone) and shuts the other
/// direction down.
fn relay(client: UnixStream, upstream: UnixStream) {
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let (mut from, mut to) = (c2, u2);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    thread::spawn(move || {
        let mut to = client;
        let mut r = BufReader::new(upstream);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if to.write_all(filter_line(&line).as_bytes()).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = r.get_ref().shutdown(std::net::Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_preempt_from_a_capabilities_reply_only() {
        let caps = r#"{"return": [{"state": false, "capability": "postcopy-ram"}, {"state": false, "capability": "postcopy-preempt"}], "id": "libvirt-3"}"#;
        let out: Value = serde_json::from_str(&filter_line(caps)).expect("JSON");
        assert_eq!(
            out,
            serde_json::json!({"return": [{"state": false, "capability": "postcopy-ram"}],
                               "id": "libvirt-3"})
        );
        assert!(filter_line(caps).ends_with("\r\n"));
        for other in [
            "{\"return\": {}}\r\n",
            "{\"return\": []}\r\n",
            "{\"event\": \"STOP\"}\r\n",
            "{\"return\": [{\"state\": false, \"capability\": \"postcopy-ram\"}]}\r\n",
            "not json\r\n",
        ] {
            assert_eq!(filter_line(other), other);
        }
    }
}
