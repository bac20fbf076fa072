//! Starts the two local QEMUs of a migration (`postcopy migrate`, the scenarios, the benchmark, the
//! live tests): TCG, our guest kernel, a QMP unix socket each, the serial console to a file the
//! host timestamps.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postcopy_core::driver::Side;

use crate::testbed::{Host, Probe};

/// How to start a QEMU.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub binary: PathBuf,
    pub kernel: PathBuf,
    pub append: String,
    pub memory_mib: u64,
    /// Extra arguments (for example `-L` for an extracted QEMU 7.2).
    pub extra_args: Vec<String>,
    /// Extra environment (for example QEMU_MODULE_DIR).
    pub env: Vec<(String, String)>,
    /// Start QEMU inside this testbed host's network namespace (`nsenter --net`, which then
    /// execs QEMU: the pid is QEMU's). QMP stays on the unix socket. None: this machine's own.
    pub host: Option<(Probe, Host)>,
}

impl QemuConfig {
    /// Our guest (`append` is its command line, qemu-fixtures/guest/README.md) in `memory_mib`
    /// of RAM under `binary`, or under the QEMU extracted at `root` ([`extracted_qemu`]).
    pub fn guest(
        binary: &Path,
        root: Option<&Path>,
        kernel: &Path,
        append: &str,
        memory_mib: u64,
    ) -> QemuConfig {
        let (env, extra_args) = extracted_qemu(root);
        QemuConfig {
            binary: binary.to_path_buf(),
            kernel: kernel.to_path_buf(),
            append: append.to_string(),
            memory_mib,
            extra_args,
            env,
            host: None,
        }
    }

    /// The same QEMU started inside `host` of the testbed `probe` belongs to.
    pub fn in_host(&self, probe: &Probe, host: Host) -> QemuConfig {
        QemuConfig {
            host: Some((probe.clone(), host)),
            ..self.clone()
        }
    }
}

/// The environment and extra arguments that run a QEMU extracted from Debian's .deb files under
/// `root` (its modules and firmware live there, seabios comes from the system); none without.
pub fn extracted_qemu(root: Option<&Path>) -> (Vec<(String, String)>, Vec<String>) {
    let Some(root) = root else {
        return (Vec::new(), Vec::new());
    };
    let env = vec![(
        "QEMU_MODULE_DIR".to_string(),
        root.join("usr/lib/x86_64-linux-gnu/qemu")
            .display()
            .to_string(),
    )];
    let args = vec![
        "-L".to_string(),
        root.join("usr/share/qemu").display().to_string(),
        "-L".to_string(),
        "/usr/share/seabios".to_string(),
    ];
    (env, args)
}

/// A QEMU process of ours. Dropped: killed, unless [`QemuProcess::keep`] was called (a guest that
/// may hold the only copy of some memory is never killed by us).
#[derive(Debug)]
pub struct QemuProcess {
    pub name: String,
    pub qmp: PathBuf,
    pub serial: PathBuf,
    child: Option<Child>,
    keep: bool,
}

impl QemuProcess {
    /// Starts the QEMU `name` (its files are `name.qmp`, `name.serial`, `name.stderr` in `dir`);
    /// `incoming`: the destination of a migration, paused and waiting for it.
    pub fn start(
        cfg: &QemuConfig,
        dir: &Path,
        name: &str,
        incoming: bool,
    ) -> Result<QemuProcess, StartError> {
        let qmp = dir.join(format!("{name}.qmp"));
        let serial = dir.join(format!("{name}.serial"));
        let _ = std::fs::remove_file(&qmp);
        let mut cmd = match &cfg.host {
            Some((probe, host)) => probe.command(*host, &cfg.binary),
            None => Command::new(&cfg.binary),
        };
        cmd.args([
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-display",
            "none",
            "-nodefaults",
            "-no-user-config",
        ])
        .arg("-m")
        .arg(cfg.memory_mib.to_string())
        .arg("-kernel")
        .arg(&cfg.kernel)
        .arg("-append")
        .arg(&cfg.append)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .args(&cfg.extra_args);
        if incoming {
            cmd.args(["-S", "-incoming", "defer"]);
        }
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        let stderr = dir.join(format!("{name}.stderr"));
        let stderr = File::create(&stderr).map_err(|source| StartError::Create {
            path: stderr,
            source,
        })?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().map_err(|source| StartError::Spawn {
            name: name.to_string(),
            binary: cfg.binary.clone(),
            source,
        })?;
        Ok(QemuProcess {
            name: name.to_string(),
            qmp,
            serial,
            child: Some(child),
            keep: false,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Leave the process running when this handle is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the serial console shows a line starting with `prefix`; returns that line.
    pub fn wait_serial(&mut self, prefix: &str, timeout: Duration) -> std::io::Result<String> {
        let start = Instant::now();
        loop {
            if let Ok(f) = File::open(&self.serial) {
                for line in BufReader::new(f).lines().map_while(Result::ok) {
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
            }
            if !self.alive() {
                let err = std::fs::read_to_string(self.serial.with_extension("stderr"))
                    .unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "{} QEMU exited: {}",
                    self.name,
                    err.trim()
                )));
            }
            if start.elapsed() > timeout {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} guest printed no '{prefix}' within {timeout:?}",
                        self.name
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if !self.keep {
            self.kill();
        }
    }
}

/// Why a QEMU (or the pair) did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the {name} QEMU ({})", binary.display())]
    Spawn {
        name: String,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the guest on the {name} QEMU did not get ready")]
    NotReady {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// The two QEMUs of a local migration: the source runs the guest (it printed READY), the
/// destination waits for the incoming migration (`-S -incoming defer`).
#[derive(Debug)]
pub struct QemuPair {
    pub src: QemuProcess,
    pub dst: QemuProcess,
}

impl QemuPair {
    /// How long the guest may take to fill its memory and print READY.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

    /// Starts both QEMUs in `dir` (sockets `src.qmp`, `dst.qmp`; serial files `src.serial`,
    /// `dst.serial`) and waits for the guest on the source.
    pub fn start(cfg: &QemuConfig, dir: &Path) -> Result<QemuPair, StartError> {
        QemuPair::start_each(cfg, cfg, dir)
    }

    /// [`QemuPair::start`] with the source in the testbed's source host and the destination in
    /// its destination host (`probe`'s namespaces); the migration URI is then the destination
    /// host's address ([`crate::testbed::Testbed::migration_uri`]).
    pub fn start_in_hosts(
        cfg: &QemuConfig,
        probe: &Probe,
        dir: &Path,
    ) -> Result<QemuPair, StartError> {
        QemuPair::start_each(
            &cfg.in_host(probe, Host::Source),
            &cfg.in_host(probe, Host::Destination),
            dir,
        )
    }

    fn start_each(
        src_cfg: &QemuConfig,
        dst_cfg: &QemuConfig,
        dir: &Path,
    ) -> Result<QemuPair, StartError> {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut src = QemuProcess::start(src_cfg, dir, "src", false)?;
        let dst = QemuProcess::start(dst_cfg, dir, "dst", true)?;
        src.wait_serial("READY", Self::READY_TIMEOUT)
            .map_err(|source| StartError::NotReady {
                name: "src".into(),
                source,
            })?;
        Ok(QemuPair { src, dst })
    }

    pub fn side(&mut self, side: Side) -> &mut QemuProcess {
        match side {
            Side::Src => &mut self.src,
            Side::Dst => &mut self.dst,
        }
    }

    /// Kills one QEMU (SIGKILL), as libvirt's qemuProcessStop or a fault does.
    pub fn kill(&mut self, side: Side) {
        self.side(side).kill();
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now (a migration stream on loopback).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Follows a serial log as it grows and timestamps each complete line on the host.
#[derive(Debug)]
pub struct SerialFollower {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl SerialFollower {
    pub fn new(path: &Path) -> Self {
        SerialFollower {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
        }
    }

    /// New complete lines since the last call.
    pub fn poll(&mut self) -> Vec<String> {
        let Ok(mut f) = File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = String::new();
        let n = std::io::Read::read_to_string(&mut f, &mut buf).unwrap_or(0);
        self.offset += n as u64;
        self.partial.push_str(&buf);
        let mut out = Vec::new();
        while let Some(pos) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=pos).collect();
            out.push(line.trim_end().to_string());
        }
        out
    }
}

/// Finds the guest kernel: $POSTCOPY_GUEST, or the build output of ci/build-guest.
pub fn default_kernel() -> PathBuf {
    if let Ok(p) = std::env::var("POSTCOPY_GUEST") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/guest/postcopy-guest.elf")
}

/// The guest command line to boot under the QEMU whose `--version` line (without "QEMU emulator
/// version ") is `version`: `guest`, plus ` tlbflush=1` for a QEMU after 10.0 unless `guest` sets
/// `tlbflush=` itself. Returns the line and whether the key was added.
///
/// Why: QEMU 11.1.3 under TCG (the only version after 10.0 measured; 10.0.2 is not affected)
/// loses writes to a page that stays in TCG's software TLB across a dirty-bitmap sync that found
/// no newly dirtied page: the sync clears the page's dirty bit but leaves its TLB entry on the fast
/// path, so later writes mark nothing, the page is neither sent again nor discarded at the switch,
/// and the destination runs with the copy sent first (qemu-fixtures/README.md, "QEMU 11.1.3 under
/// TCG loses guest memory in post-copy"). Our guest's own variables and stack are such pages: it
/// never flushes its TLB (paging off, no context switches). With `tlbflush=1` it does, on every
/// tick, as a kernel's context switches do, and its memory verifies after post-copy.
pub fn guest_cmdline_for(version: &str, guest: &str) -> (String, bool) {
    let after_10_0 = {
        let mut parts = version
            .split_whitespace()
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor) > (10, 0),
            _ => false,
        }
    };
    let sets_it = guest.split_whitespace().any(|t| t.starts_with("tlbflush="));
    if after_10_0 && !sets_it {
        (format!("{} tlbflush=1", guest.trim_end()), true)
    } else {
        (guest.to_string(), false)
    }
}
