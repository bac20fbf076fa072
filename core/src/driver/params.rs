//! Migration capabilities and parameters, as libvirt's qemu_migration_params.c plans them.

use serde_json::{json, Map, Value};

use super::stats::ReplyError;
use super::vocab::{
    code, VirError, VIR_MIGRATE_AUTO_CONVERGE, VIR_MIGRATE_POSTCOPY, VIR_MIGRATE_TUNNELLED,
};

/// The capabilities libvirt 11.3 knows, in its enum order (qemuMigrationCapability). Commands list
/// them in this order; capabilities QEMU offers beyond these are never sent.
pub const KNOWN_CAPS: &[&str] = &[
    "xbzrle",
    "auto-converge",
    "rdma-pin-all",
    "events",
    "postcopy-ram",
    "compress",
    "pause-before-switchover",
    "late-block-activate",
    "multifd",
    "dirty-bitmaps",
    "return-path",
    "zero-copy-send",
    "postcopy-preempt",
    "switchover-ack",
    "mapped-ram",
];

/// The parameters libvirt 11.3 knows, in its enum order (qemuMigrationParam).
pub const KNOWN_PARAMS: &[&str] = &[
    "compress-level",
    "compress-threads",
    "decompress-threads",
    "cpu-throttle-initial",
    "cpu-throttle-increment",
    "tls-creds",
    "tls-hostname",
    "max-bandwidth",
    "downtime-limit",
    "block-incremental",
    "xbzrle-cache-size",
    "max-postcopy-bandwidth",
    "multifd-channels",
    "multifd-compression",
    "multifd-zlib-level",
    "multifd-zstd-level",
    "avail-switchover-bandwidth",
    "direct-io",
];

/// libvirt's default `max-bandwidth` when the caller gives none: QEMU_DOMAIN_MIG_BANDWIDTH_MAX
/// (INT64_MAX / 1 MiB) MiB/s, sent in bytes.
pub const DEFAULT_MAX_BANDWIDTH_MIB: u64 = (i64::MAX as u64) / (1024 * 1024);
pub const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Source,
    Destination,
}

/// The known capability names found in a `query-migrate-capabilities` reply (their state ignored).
pub fn supported_caps(reply: &Value) -> Result<Vec<String>, ReplyError> {
    let arr = reply.as_array().ok_or(ReplyError::CapabilitiesNotArray)?;
    let mut names = Vec::new();
    for item in arr {
        let name = item
            .get("capability")
            .and_then(Value::as_str)
            .ok_or_else(|| ReplyError::CapabilityWithoutName {
                entry: item.to_string(),
            })?;
        if KNOWN_CAPS.contains(&name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn has(list: &[String], cap: &str) -> bool {
    list.iter().any(|c| c == cap)
}

/// Decides every capability for one side (qemuMigrationParamsCheck + the always-on list).
/// `local` and `peer` are the supported lists minus `events`. Returns the argument of
/// `migrate-set-capabilities`: every supported known capability with an explicit state.
pub fn plan_caps(
    flags: u32,
    party: Party,
    local: &[String],
    peer: &[String],
) -> Result<Value, VirError> {
    let mut on: Vec<&str> = Vec::new();
    let require = |cap: &'static str, on: &mut Vec<&str>| -> Result<(), VirError> {
        if !has(local, cap) {
            return Err(VirError::new(
                code::ARGUMENT_UNSUPPORTED,
                format!("Migration option '{cap}' is not supported by QEMU binary"),
            ));
        }
        on.push(cap);
        Ok(())
    };
    let optional = |cap: &'static str, on: &mut Vec<&str>| {
        if has(local, cap) && has(peer, cap) {
            on.push(cap);
        }
    };
    if flags & VIR_MIGRATE_POSTCOPY != 0 {
        require("postcopy-ram", &mut on)?;
        optional("postcopy-preempt", &mut on);
    }
    if flags & VIR_MIGRATE_TUNNELLED == 0 {
        require("return-path", &mut on)?;
        optional("switchover-ack", &mut on);
    }
    if party == Party::Source && flags & VIR_MIGRATE_AUTO_CONVERGE != 0 {
        require("auto-converge", &mut on)?;
    }
    let always = match party {
        Party::Source => "pause-before-switchover",
        Party::Destination => "late-block-activate",
    };
    if has(local, always) {
        on.push(always);
    }
    Ok(caps_json(local, |c| on.contains(&c)))
}

/// `migrate-set-capabilities` argument with every supported capability set to false (reset).
pub fn cleared_caps(local: &[String]) -> Value {
    caps_json(local, |_| false)
}

fn caps_json(local: &[String], state: impl Fn(&str) -> bool) -> Value {
    let list: Vec<Value> = KNOWN_CAPS
        .iter()
        .filter(|c| **c != "events" && has(local, c))
        .map(|c| json!({"capability": c, "state": state(c)}))
        .collect();
    json!({ "capabilities": list })
}

/// The known parameters of a `query-migrate-parameters` reply, in libvirt's order: what the reset
/// restores.
pub fn original_params(reply: &Value) -> Value {
    let mut out = Map::new();
    if let Some(obj) = reply.as_object() {
        for name in KNOWN_PARAMS {
            if let Some(v) = obj.get(*name) {
                out.insert((*name).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Parameters set for a fresh migration (TLS disabled, bandwidths).
pub fn migration_params(
    party: Party,
    current: &Value,
    bandwidth_mib: Option<u64>,
    postcopy_bandwidth_mib: Option<u64>,
) -> Value {
    let mut out = Map::new();
    if current.get("tls-creds").is_some() {
        out.insert("tls-creds".into(), json!(""));
        out.insert("tls-hostname".into(), json!(""));
    }
    if party == Party::Source {
        let bw = bandwidth_mib.unwrap_or(DEFAULT_MAX_BANDWIDTH_MIB);
        out.insert("max-bandwidth".into(), json!(bw.saturating_mul(MIB)));
    }
    if let Some(pbw) = postcopy_bandwidth_mib {
        out.insert(
            "max-postcopy-bandwidth".into(),
            json!(pbw.saturating_mul(MIB)),
        );
    }
    Value::Object(out)
}
