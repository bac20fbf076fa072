//! A validator of QMP commands against a QAPI schema (the `query-qmp-schema` reply, by name),
//! shared by tests/qapi_schema.rs (schemas recorded in libvirt's tarball) and
//! tests/qemu_schema_live.rs (the schema of a QEMU binary, asked at test time).
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// A `query-qmp-schema` reply, by entity name.
pub type Schema = BTreeMap<String, Value>;

/// Indexes a `query-qmp-schema` reply by name.
pub fn index(reply: &Value) -> Schema {
    reply
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| Some((e["name"].as_str()?.to_string(), e.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Validates `value` against schema type `ty`; returns what is wrong.
pub fn check(schema: &Schema, ty: &str, value: &Value, at: &str) -> Result<(), String> {
    let t = schema
        .get(ty)
        .ok_or_else(|| format!("{at}: type {ty} not in the schema"))?;
    match t["meta-type"].as_str().unwrap_or("") {
        "builtin" => {
            let ok = match t["json-type"].as_str().unwrap_or("") {
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "int" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "value" => true,
                other => return Err(format!("{at}: builtin json-type {other}")),
            };
            ok.then_some(())
                .ok_or_else(|| format!("{at}: {value} is not a {}", t["json-type"]))
        }
        "enum" => {
            let s = value
                .as_str()
                .ok_or_else(|| format!("{at}: {value} is not an enum string"))?;
            let values: Vec<&str> = t["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .or_else(|| {
                    t["members"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|m| m["name"].as_str()).collect())
                })
                .unwrap_or_default();
            values
                .contains(&s)
                .then_some(())
                .ok_or_else(|| format!("{at}: '{s}' is not a value of {ty}"))
        }
        "array" => {
            let elem = t["element-type"].as_str().unwrap_or("");
            let arr = value
                .as_array()
                .ok_or_else(|| format!("{at}: {value} is not an array"))?;
            arr.iter()
                .enumerate()
                .try_for_each(|(i, v)| check(schema, elem, v, &format!("{at}[{i}]")))
        }
        "alternate" => {
            let members = t["members"].as_array().cloned().unwrap_or_default();
            members
                .iter()
                .any(|m| check(schema, m["type"].as_str().unwrap_or(""), value, at).is_ok())
                .then_some(())
                .ok_or_else(|| format!("{at}: {value} matches no branch of {ty}"))
        }
        "object" => {
            let obj = value
                .as_object()
                .ok_or_else(|| format!("{at}: {value} is not an object"))?;
            let members = t["members"].as_array().cloned().unwrap_or_default();
            for (k, v) in obj {
                let m = members
                    .iter()
                    .find(|m| m["name"] == json!(k))
                    .ok_or_else(|| format!("{at}: argument '{k}' does not exist in this QEMU"))?;
                check(
                    schema,
                    m["type"].as_str().unwrap_or(""),
                    v,
                    &format!("{at}.{k}"),
                )?;
            }
            for m in &members {
                let name = m["name"].as_str().unwrap_or("");
                if m.get("default").is_none() && !obj.contains_key(name) {
                    return Err(format!("{at}: required argument '{name}' missing"));
                }
            }
            Ok(())
        }
        other => Err(format!("{at}: meta-type {other}")),
    }
}

/// Validates one command and its arguments.
pub fn command(schema: &Schema, name: &str, args: Option<&Value>) -> Result<(), String> {
    let c = schema
        .get(name)
        .filter(|c| c["meta-type"] == json!("command"))
        .ok_or_else(|| format!("command {name} does not exist"))?;
    let arg_type = c["arg-type"].as_str().unwrap_or("");
    check(schema, arg_type, args.unwrap_or(&json!({})), name)
}

/// The validator refuses what a schema lacks: an unknown capability (the error names it) and a
/// `migrate-continue` without its required `state`. Returns the two errors for further checks.
pub fn assert_refuses_unknown_capability_and_missing_state(schema: &Schema) -> (String, String) {
    let caps = command(
        schema,
        "migrate-set-capabilities",
        Some(&serde_json::json!({"capabilities": [{"capability": "no-such", "state": true}]})),
    )
    .expect_err("an unknown capability is refused");
    assert!(caps.contains("no-such"), "{caps}");
    let state = command(schema, "migrate-continue", Some(&serde_json::json!({})))
        .expect_err("migrate-continue requires state");
    (caps, state)
}

/// Whether a `migrate-set-capabilities` argument turns capability `c` on.
pub fn cap_on(caps: &Value, c: &str) -> bool {
    caps["capabilities"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["capability"] == c && x["state"] == true))
}
