use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::driver::{ApiCall, MigrateRequest, Side, SwitchPolicy};

pub const FORMAT_VERSION: u32 = 1;
pub const MAGIC: &str = "libvirt-postcopy-qmp-transcript";

#[derive(Debug, Error)]
pub enum TranscriptError {
    #[error("cannot read transcript {file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {what}")]
    Corrupt {
        file: String,
        line: usize,
        what: String,
    },
}

/// The first line of a transcript.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub scenario: String,
    pub recorder: String,
    /// QEMU version strings from the greetings, by monitor.
    pub qemu: QemuVersions,
    /// The migration request: flags (value and names), URI, bandwidths in MiB/s.
    pub flags: u32,
    pub flag_names: Vec<String>,
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcopy_bandwidth: Option<u64>,
    /// Where the source connected, when it differs from `uri` (a relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Our switch policy (`lpc.switch_policy`), when the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_policy: Option<SwitchPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QemuVersions {
    pub src: String,
    pub dst: String,
}

/// An API call as recorded: the call, and when it returned, its result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiRecord {
    pub call: String,
    #[serde(default)]
    pub flags: u32,
}

impl ApiRecord {
    pub fn from_call(call: &ApiCall) -> Self {
        let flags = match call {
            ApiCall::StartPostCopy { flags } | ApiCall::AbortJob { flags } => *flags,
            ApiCall::GetJobStats => 0,
        };
        ApiRecord {
            call: call.name().to_string(),
            flags,
        }
    }

    pub fn to_call(&self) -> Option<ApiCall> {
        Some(match self.call.as_str() {
            "start_postcopy" => ApiCall::StartPostCopy { flags: self.flags },
            "abort_job" => ApiCall::AbortJob { flags: self.flags },
            "get_job_stats" => ApiCall::GetJobStats,
            _ => return None,
        })
    }
}

/// One line after the header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A line QEMU sent on monitor `mon` (greeting, reply or event), as it was consumed.
    Recv { t: u64, mon: MonitorTag, msg: Value },
    /// A command the driver wrote to monitor `mon`.
    Send { t: u64, mon: MonitorTag, msg: Value },
    /// The monitor closed.
    Closed {
        t: u64,
        mon: MonitorTag,
        reason: String,
    },
    /// An API call from the user, at the point the driver took it.
    Api { t: u64, api: ApiRecord },
    /// What the API call returned: "ok", or the libvirt error code name and message.
    ApiReturn {
        t: u64,
        call: String,
        result: String,
    },
    /// A further migrate call on the same domains (for example a recovery with
    /// VIR_MIGRATE_POSTCOPY_RESUME); the header holds the first.
    Migrate {
        t: u64,
        flags: u32,
        #[serde(default)]
        flag_names: Vec<String>,
        uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connect_uri: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bandwidth: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        postcopy_bandwidth: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switch_policy: Option<SwitchPolicy>,
    },
    /// The io layer's period passed (a switch policy's tick, `Input::Tick`).
    Tick { t: u64 },
    /// Something the test harness did to the world (a cut link, a killed QEMU), for readers.
    Note { t: u64, text: String },
}

impl Record {
    pub fn migrate(t: u64, req: &MigrateRequest) -> Record {
        Record::Migrate {
            t,
            flags: req.flags,
            flag_names: crate::driver::vocab::flag_names(req.flags)
                .into_iter()
                .map(String::from)
                .collect(),
            uri: req.uri.clone(),
            connect_uri: req.connect_uri.clone(),
            bandwidth: req.bandwidth_mib,
            postcopy_bandwidth: req.postcopy_bandwidth_mib,
            switch_policy: req.switch_policy,
        }
    }

    /// The migrate call a `migrate` record stands for (None for any other record).
    pub fn request(&self) -> Option<MigrateRequest> {
        let Record::Migrate {
            flags,
            uri,
            connect_uri,
            bandwidth,
            postcopy_bandwidth,
            switch_policy,
            ..
        } = self
        else {
            return None;
        };
        Some(MigrateRequest {
            flags: *flags,
            uri: uri.clone(),
            bandwidth_mib: *bandwidth,
            postcopy_bandwidth_mib: *postcopy_bandwidth,
            connect_uri: connect_uri.clone(),
            switch_policy: *switch_policy,
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MonitorTag {
    Src,
    Dst,
}

impl From<Side> for MonitorTag {
    fn from(s: Side) -> Self {
        match s {
            Side::Src => MonitorTag::Src,
            Side::Dst => MonitorTag::Dst,
        }
    }
}

impl From<MonitorTag> for Side {
    fn from(m: MonitorTag) -> Self {
        match m {
            MonitorTag::Src => Side::Src,
            MonitorTag::Dst => Side::Dst,
        }
    }
}

/// A whole transcript: the header and its records with their line numbers (1-based).
#[derive(Debug, Clone)]
pub struct Transcript {
    pub file: String,
    pub header: Header,
    pub records: Vec<(usize, Record)>,
}

impl Transcript {
    pub fn parse(file: &str, text: &str) -> Result<Transcript, TranscriptError> {
        let corrupt = |line: usize, what: String| TranscriptError::Corrupt {
            file: file.to_string(),
            line,
            what,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((hl, first)) = lines.next() else {
            return Err(corrupt(1, "empty transcript: no header line".into()));
        };
        let raw: Value = serde_json::from_str(first)
            .map_err(|e| corrupt(hl + 1, format!("header is not JSON: {e}")))?;
        if raw.get("format").and_then(Value::as_str) != Some(MAGIC) {
            return Err(corrupt(
                hl + 1,
                format!("header lacks \"format\": \"{MAGIC}\""),
            ));
        }
        let version = raw.get("version").and_then(Value::as_u64).unwrap_or(0);
        if version != u64::from(FORMAT_VERSION) {
            return Err(corrupt(
                hl + 1,
                format!("unsupported transcript version {version} (this build reads version {FORMAT_VERSION})"),
            ));
        }
        let header: Header = serde_json::from_value(raw)
            .map_err(|e| corrupt(hl + 1, format!("invalid header: {e}")))?;
        let mut records = Vec::new();
        for (i, l) in lines {
            let rec: Record = serde_json::from_str(l)
                .map_err(|e| corrupt(i + 1, format!("invalid record: {e}")))?;
            if let Record::Api { api, .. } = &rec {
                if api.to_call().is_none() {
                    return Err(corrupt(i + 1, format!("unknown API call '{}'", api.call)));
                }
            }
            if let Record::Send { msg, .. } = &rec {
                if msg.get("execute").and_then(Value::as_str).is_none() {
                    return Err(corrupt(i + 1, "send record without \"execute\"".into()));
                }
            }
            records.push((i + 1, rec));
        }
        Ok(Transcript {
            file: file.to_string(),
            header,
            records,
        })
    }

    /// The migration request the transcript was recorded with.
    pub fn request(&self) -> MigrateRequest {
        MigrateRequest {
            flags: self.header.flags,
            uri: self.header.uri.clone(),
            bandwidth_mib: self.header.bandwidth,
            postcopy_bandwidth_mib: self.header.postcopy_bandwidth,
            connect_uri: self.header.connect_uri.clone(),
            switch_policy: self.header.switch_policy,
        }
    }

    /// One line of JSON per record, the header first.
    pub fn header_line(header: &Header) -> String {
        serde_json::to_string(header).unwrap_or_default()
    }
}
