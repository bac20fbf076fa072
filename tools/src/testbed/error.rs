//! What can go wrong building or driving the testbed, and the checks that a host can carry it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Everything the testbed can fail with. A host that cannot carry the testbed gets an error that
/// names what is missing and how to get it; there is no fallback to another link model.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error(
        "the testbed needs root (it creates network namespaces, a veth pair and qdiscs), \
         but runs as uid {uid}: run it as root"
    )]
    NotRoot { uid: u32 },
    #[error("`{tool}` is not in PATH ({searched}): install the {package} package (apt-get install {package})")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
        searched: String,
    },
    #[error(
        "this kernel or sandbox cannot create a network namespace (needs CONFIG_NET_NS and \
         CAP_SYS_ADMIN): `unshare --net` failed: {stderr}"
    )]
    NoNetns { stderr: String },
    #[error(
        "the kernel has no `{qdisc}` queueing discipline (module sch_{qdisc}); the testbed shapes \
         the link with it: {stderr}"
    )]
    NoQdisc { qdisc: &'static str, stderr: String },
    #[error("bad link parameter: {what}")]
    BadParameter { what: String },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot read the output of `{command}`: {what}")]
    Parse { command: String, what: String },
    #[error("cannot read the output of `{command}`")]
    ParseJson {
        command: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {host} host's namespace holder (pid {pid}) {what}")]
    Holder {
        host: &'static str,
        pid: u32,
        what: String,
    },
    #[error("cannot read {path}")]
    Proc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The commands the testbed runs, found once in PATH (plus /usr/sbin and /sbin, where iproute2
/// installs `ip`, `tc` and `ss` on Debian, outside a normal user's PATH).
#[derive(Debug, Clone)]
pub struct Tools {
    pub ip: PathBuf,
    pub tc: PathBuf,
    pub ss: PathBuf,
    pub nsenter: PathBuf,
    pub unshare: PathBuf,
    pub sh: PathBuf,
}

/// Each tool and the Debian package that carries it.
const TOOLS: [(&str, &str); 6] = [
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("ss", "iproute2"),
    ("nsenter", "util-linux"),
    ("unshare", "util-linux"),
    ("sh", "dash"),
];

impl Tools {
    /// Finds every tool in `$PATH`, /usr/sbin and /sbin.
    pub fn find() -> Result<Tools, TestbedError> {
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        path.push(":/usr/sbin:/sbin:/usr/bin:/bin");
        Tools::find_in(&path)
    }

    /// Finds every tool in the directories of `path` (a PATH-style list), in this order.
    pub fn find_in(path: &OsStr) -> Result<Tools, TestbedError> {
        let dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
        let searched = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut found = Vec::new();
        for (tool, package) in TOOLS {
            let hit = dirs.iter().map(|d| d.join(tool)).find(|p| is_executable(p));
            match hit {
                Some(p) => found.push(p),
                None => {
                    return Err(TestbedError::MissingTool {
                        tool,
                        package,
                        searched,
                    })
                }
            }
        }
        let mut it = found.into_iter();
        let mut next = || it.next().unwrap_or_default();
        Ok(Tools {
            ip: next(),
            tc: next(),
            ss: next(),
            nsenter: next(),
            unshare: next(),
            sh: next(),
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The effective uid of this process, from /proc/self/status (no libc needed).
pub fn effective_uid() -> Result<u32, TestbedError> {
    let path = PathBuf::from("/proc/self/status");
    let text = std::fs::read_to_string(&path).map_err(|source| TestbedError::Proc {
        path: path.clone(),
        source,
    })?;
    // "Uid:\treal\teffective\tsaved\tfs"
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TestbedError::Parse {
            command: "/proc/self/status".into(),
            what: "no effective uid on the Uid: line".into(),
        })
}

/// Root is needed for namespaces, veth pairs and qdiscs.
pub fn require_root() -> Result<(), TestbedError> {
    match effective_uid()? {
        0 => Ok(()),
        uid => Err(TestbedError::NotRoot { uid }),
    }
}
