use serde_json::{json, Map, Value};

use super::{ProtocolError, ID_PREFIX};

/// An error reply from QEMU: `{"error": {"class": ..., "desc": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpError {
    pub class: String,
    pub desc: String,
}

/// The greeting QEMU sends when a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: (u64, u64, u64),
    pub package: String,
    pub capabilities: Vec<String>,
}

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Greeting(Greeting),
    /// A reply; `id` is the raw id (None when QEMU could not parse our command).
    Return {
        id: Option<Value>,
        value: Value,
    },
    Error {
        id: Option<Value>,
        error: QmpError,
    },
    Event {
        name: String,
        data: Value,
    },
}

fn malformed(reason: &str, line: &str) -> ProtocolError {
    let mut shown = line.to_string();
    if shown.len() > 200 {
        let mut cut = 200;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    ProtocolError::Malformed {
        reason: reason.to_string(),
        line: shown,
    }
}

impl Message {
    pub fn parse(line: &str) -> Result<Message, ProtocolError> {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| malformed(&format!("invalid JSON ({e})"), line))?;
        let Value::Object(obj) = value else {
            return Err(malformed("not a JSON object", line));
        };
        Self::from_object(obj, line)
    }

    fn from_object(obj: Map<String, Value>, line: &str) -> Result<Message, ProtocolError> {
        if let Some(qmp) = obj.get("QMP") {
            let v = qmp
                .get("version")
                .and_then(|v| v.get("qemu"))
                .ok_or_else(|| malformed("greeting without QMP.version.qemu", line))?;
            let num = |k: &str| v.get(k).and_then(Value::as_u64);
            let (Some(major), Some(minor), Some(micro)) =
                (num("major"), num("minor"), num("micro"))
            else {
                return Err(malformed("greeting version lacks major/minor/micro", line));
            };
            let package = qmp
                .get("version")
                .and_then(|v| v.get("package"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string();
            let capabilities = qmp
                .get("capabilities")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Message::Greeting(Greeting {
                version: (major, minor, micro),
                package,
                capabilities,
            }));
        }
        if let Some(name) = obj.get("event") {
            let name = name
                .as_str()
                .ok_or_else(|| malformed("event name is not a string", line))?
                .to_string();
            let data = obj.get("data").cloned().unwrap_or_else(|| json!({}));
            return Ok(Message::Event { name, data });
        }
        let id = obj.get("id").cloned();
        if let Some(value) = obj.get("return") {
            return Ok(Message::Return {
                id,
                value: value.clone(),
            });
        }
        if let Some(err) = obj.get("error") {
            let class = err.get("class").and_then(Value::as_str);
            let desc = err.get("desc").and_then(Value::as_str);
            let (Some(class), Some(desc)) = (class, desc) else {
                return Err(malformed("error reply without class and desc", line));
            };
            return Ok(Message::Error {
                id,
                error: QmpError {
                    class: class.to_string(),
                    desc: desc.to_string(),
                },
            });
        }
        Err(malformed("neither greeting, event, return nor error", line))
    }
}

/// Encodes a command with our id prefix; one line, newline-terminated.
pub fn encode_command(name: &str, arguments: Option<&Value>, id: u64) -> String {
    let mut obj = Map::new();
    obj.insert("execute".into(), Value::String(name.to_string()));
    if let Some(args) = arguments {
        obj.insert("arguments".into(), args.clone());
    }
    obj.insert("id".into(), Value::String(format!("{ID_PREFIX}{id}")));
    let mut s = Value::Object(obj).to_string();
    s.push('\n');
    s
}

/// Decodes one of our ids; None for an id that is not ours.
pub(crate) fn decode_id(id: &Value) -> Option<u64> {
    id.as_str()?.strip_prefix(ID_PREFIX)?.parse().ok()
}
