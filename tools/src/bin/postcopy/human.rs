//! `postcopy migrate`'s output for a reader: the same facts as `--json`, in words.

use serde_json::Value;

/// Prints the result object of `postcopy migrate` (what `--json` prints) for a reader.
pub(crate) fn print(v: &Value) {
    print!("{}", text(v));
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn flags(v: &Value) -> String {
    let names: Vec<&str> = v
        .get("flag_names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let value = v.get("flags").and_then(Value::as_u64).unwrap_or(0);
    if names.is_empty() {
        format!("none (0x{value:x})")
    } else {
        format!("{} (0x{value:x})", names.join(" | "))
    }
}

/// One migrate call: its result, flags, switch and the states it left.
fn call(v: &Value, s: &mut String, indent: &str) {
    s.push_str(&format!("{indent}flags: {}\n", flags(v)));
    if let Some(e) = v.get("error") {
        s.push_str(&format!(
            "{indent}error: {} ({})\n",
            str_of(e, "message"),
            str_of(e, "code_name")
        ));
    }
    if let Some(sw) = v.get("switch_requested").filter(|s| !s.is_null()) {
        s.push_str(&format!(
            "{indent}post-copy requested by {} at pass {}\n",
            str_of(sw, "by"),
            sw["pass"]
        ));
        if let Some(why) = sw.get("reason").and_then(Value::as_str) {
            s.push_str(&format!("{indent}  because {why}\n"));
        }
    }
    if let Some(p) = v.get("postcopy").and_then(Value::as_bool) {
        let went = if p { "yes" } else { "no" };
        s.push_str(&format!("{indent}went through post-copy: {went}\n"));
    }
    s.push_str(&format!(
        "{indent}source: {}\n{indent}destination: {}\n",
        v["source"]["state"].as_str().unwrap_or("?"),
        v["destination"]["state"].as_str().unwrap_or("?")
    ));
}

/// What the guest said about its memory, in a sentence.
fn guest(g: &Value) -> String {
    let n = |k: &str| g.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (ok, failed, beats) = (
        n("destination_checks_ok"),
        n("destination_check_failures"),
        n("destination_heartbeats"),
    );
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let counts = format!(
        "{} OK, {}, {}",
        plural(ok, "check", "checks"),
        plural(failed, "failure", "failures"),
        plural(beats, "heartbeat", "heartbeats")
    );
    let mut s = if failed > 0 {
        format!("guest memory check FAILED on the destination: {counts}\n")
    } else if ok > 0 {
        format!("guest memory verified on the destination: {counts}\n")
    } else {
        format!("guest memory not verified on the destination (no check reported): {counts}\n")
    };
    for f in g
        .get("failures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        s.push_str(&format!("    {}\n", f.as_str().unwrap_or("?")));
    }
    s
}

pub(crate) fn text(v: &Value) -> String {
    let mut s = format!("migration: {}\n", str_of(v, "result"));
    call(v, &mut s, "  ");
    if let Some(calls) = v.get("migrate_calls").and_then(Value::as_array) {
        s.push_str(&format!("  migrate calls: {}\n", calls.len()));
        for (i, c) in calls.iter().enumerate() {
            s.push_str(&format!("    call {}: {}\n", i + 1, str_of(c, "result")));
            call(c, &mut s, "      ");
        }
    }
    if let Some(t) = v.get("recovery_time_ms") {
        s.push_str(&format!("  recovered in {t} ms\n"));
    }
    if let Some(l) = v.get("switch_latency_us") {
        s.push_str(&format!(
            "  switch latency (MIGRATION_PASS 2 -> migrate-start-postcopy): {l} us\n"
        ));
    }
    if let Some(Value::Object(st)) = v.get("stats") {
        s.push_str("  job statistics:\n");
        for (k, val) in st {
            s.push_str(&format!("    {k:<28} {val}\n"));
        }
    }
    if let Some(g) = v.get("guest") {
        s.push_str("  ");
        s.push_str(&guest(g));
    }
    for key in ["link", "stall"] {
        if let Some(x) = v.get(key) {
            s.push_str(&format!("  {key}: {x}\n"));
        }
    }
    if let Some(list) = v.get("partitions").and_then(Value::as_array) {
        for p in list {
            s.push_str(&format!("  partition: {p}\n"));
        }
    }
    for (key, title) in [
        ("faults", "what the harness did (faults, QEMUs stopped)"),
        ("warnings", "warnings"),
    ] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            s.push_str(&format!("  {title}:\n"));
            for f in list {
                s.push_str(&format!("    {}\n", f.as_str().unwrap_or("?")));
            }
        }
    }
    if let Some(calls) = v.get("api_calls").and_then(Value::as_array) {
        s.push_str("  API calls besides migrate:\n");
        for c in calls {
            s.push_str(&format!(
                "    {}: {}\n",
                str_of(c, "call"),
                str_of(c, "result")
            ));
        }
    }
    if let Some(q) = v.get("qemu_alive") {
        let alive = |k: &str| {
            if q[k].as_bool() == Some(true) {
                "running"
            } else {
                "gone"
            }
        };
        s.push_str(&format!(
            "  QEMU processes: source {}, destination {}\n",
            alive("src"),
            alive("dst")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn a_completed_migration_names_its_flags_and_the_guest_check_in_words() {
        let v = json!({
            "flags": 0x200401, "flag_names": ["LIVE", "POSTCOPY", "POSTCOPY_AFTER_PRECOPY"],
            "result": "completed", "postcopy": true,
            "switch_requested": {"by": "driver (VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY)", "pass": 2},
            "source": {"state": "shut off (migrated)"},
            "destination": {"state": "running (migrated)"},
            "stats": {"memory_iteration": 2},
            "guest": {"destination_checks_ok": 2, "destination_check_failures": 0,
                      "destination_heartbeats": 1, "failures": []},
            "qemu_alive": {"src": false, "dst": true},
        });
        assert_eq!(
            super::text(&v),
            "migration: completed
  flags: LIVE | POSTCOPY | POSTCOPY_AFTER_PRECOPY (0x200401)
  post-copy requested by driver (VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY) at pass 2
  went through post-copy: yes
  source: shut off (migrated)
  destination: running (migrated)
  job statistics:
    memory_iteration             2
  guest memory verified on the destination: 2 checks OK, 0 failures, 1 heartbeat
  QEMU processes: source gone, destination running
"
        );
    }

    #[test]
    fn a_failed_check_says_so_and_lists_the_failures() {
        let v = json!({
            "flags": 1, "flag_names": ["LIVE"], "result": "completed", "postcopy": false,
            "source": {"state": "shut off (migrated)"},
            "destination": {"state": "running (migrated)"},
            "guest": {"destination_checks_ok": 0, "destination_check_failures": 1,
                      "destination_heartbeats": 0, "failures": ["FAIL ro page 12"]},
        });
        let t = super::text(&v);
        assert!(
            t.contains(
                "  guest memory check FAILED on the destination: 0 checks OK, 1 failure, 0 heartbeats\n    FAIL ro page 12\n"
            ),
            "{t}"
        );
    }
}
