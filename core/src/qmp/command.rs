//! The QMP commands the shim sends, as values: a name and the arguments each one takes.
//!
//! Every command the driver (and the session's negotiation) sends is one variant here, so a
//! command name is written once and a reply is matched to the command that was sent, never to a
//! name derived again afterwards. Arguments are encoded in the order QEMU's schema lists them,
//! which is also the order libvirt sends them.

use std::fmt;

use serde_json::{json, Value};

/// One QMP command with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Capability negotiation; the session sends it by itself after the greeting.
    QmpCapabilities,
    QueryMigrateCapabilities,
    /// The argument object `{"capabilities": [{"capability": ..., "state": ...}, ...]}`, as the
    /// driver's `params` module plans it.
    MigrateSetCapabilities(Value),
    QueryMigrateParameters,
    /// The argument object: the parameters to set, by QEMU name.
    MigrateSetParameters(Value),
    /// `exit_on_error` is sent only where QEMU has it (9.1 and later).
    MigrateIncoming {
        uri: String,
        exit_on_error: Option<bool>,
    },
    /// No `detach`: QEMU always ignored it and 11.1 refuses it; upstream libvirt dropped it.
    Migrate {
        uri: String,
        resume: bool,
    },
    /// Leaves the `pre-switchover` pause.
    MigrateContinue,
    MigrateStartPostcopy,
    MigrateRecover {
        uri: String,
    },
    MigratePause,
    MigrateCancel,
    QueryMigrate,
    QueryStatus,
    Cont,
}

impl Command {
    /// `migrate-set-capabilities` turning on only the `events` capability.
    pub fn enable_events() -> Command {
        Command::MigrateSetCapabilities(
            json!({"capabilities": [{"capability": "events", "state": true}]}),
        )
    }

    /// `migrate-set-parameters` with one parameter.
    pub fn set_parameter(name: &str, value: Value) -> Command {
        let mut args = serde_json::Map::new();
        args.insert(name.to_string(), value);
        Command::MigrateSetParameters(Value::Object(args))
    }

    /// The name QEMU knows the command by.
    pub fn name(&self) -> &'static str {
        match self {
            Command::QmpCapabilities => "qmp_capabilities",
            Command::QueryMigrateCapabilities => "query-migrate-capabilities",
            Command::MigrateSetCapabilities(_) => "migrate-set-capabilities",
            Command::QueryMigrateParameters => "query-migrate-parameters",
            Command::MigrateSetParameters(_) => "migrate-set-parameters",
            Command::MigrateIncoming { .. } => "migrate-incoming",
            Command::Migrate { .. } => "migrate",
            Command::MigrateContinue => "migrate-continue",
            Command::MigrateStartPostcopy => "migrate-start-postcopy",
            Command::MigrateRecover { .. } => "migrate-recover",
            Command::MigratePause => "migrate-pause",
            Command::MigrateCancel => "migrate_cancel",
            Command::QueryMigrate => "query-migrate",
            Command::QueryStatus => "query-status",
            Command::Cont => "cont",
        }
    }

    /// The `arguments` member, None for a command sent without one.
    pub fn arguments(&self) -> Option<Value> {
        match self {
            Command::MigrateSetCapabilities(args) | Command::MigrateSetParameters(args) => {
                Some(args.clone())
            }
            Command::MigrateIncoming { uri, exit_on_error } => {
                let mut args = json!({ "uri": uri });
                if let Some(exit) = exit_on_error {
                    args["exit-on-error"] = json!(exit);
                }
                Some(args)
            }
            Command::Migrate { uri, resume } => Some(json!({"uri": uri, "resume": resume})),
            Command::MigrateContinue => Some(json!({"state": "pre-switchover"})),
            Command::MigrateRecover { uri } => Some(json!({ "uri": uri })),
            Command::QmpCapabilities
            | Command::QueryMigrateCapabilities
            | Command::QueryMigrateParameters
            | Command::MigrateStartPostcopy
            | Command::MigratePause
            | Command::MigrateCancel
            | Command::QueryMigrate
            | Command::QueryStatus
            | Command::Cont => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
