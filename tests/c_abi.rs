//! The C ABI tested from C, as its users build against it: `ci/install-prefix` installs the
//! library, header and pkg-config file into a prefix; the C programs in tests/c/ are compiled with
//! `gcc -Wall -Wextra -Werror -pedantic -fsanitize=address` against it through pkg-config and run.
//!
//! Live tests need qemu-system-x86_64 (ci/install-deps qemu); POSTCOPY_SKIP_LIVE=1 skips them.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use postcopy_tools::guest_report::GuestLine;
use postcopy_tools::qemu::{QemuConfig, QemuProcess, SerialFollower};

const CFLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-g",
    "-fsanitize=address",
    "-fno-omit-frame-pointer",
    "-pthread",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn work() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-abi")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The prefix the library is installed into, once per test run.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let p = work().join("prefix");
        let o = Command::new(root().join("ci/install-prefix"))
            .arg(&p)
            .output()
            .expect("run ci/install-prefix");
        assert!(o.status.success(), "ci/install-prefix: {}", text(&o));
        p
    })
}

fn pkg_config() -> Vec<String> {
    let o = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libvirt-postcopy"])
        .env("PKG_CONFIG_PATH", prefix().join("lib/pkgconfig"))
        .output()
        .expect("run pkg-config");
    assert!(o.status.success(), "pkg-config: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Builds a C program against the installed library, with AddressSanitizer.
fn build(source: &Path, name: &str) -> PathBuf {
    let bin = work().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join(name);
    let o = Command::new("gcc")
        .args(CFLAGS)
        .arg(source)
        .arg("-o")
        .arg(&exe)
        .args(pkg_config())
        .arg(format!("-Wl,-rpath,{}", prefix().join("lib").display()))
        .output()
        .expect("run gcc");
    assert!(o.status.success(), "gcc {}: {}", source.display(), text(&o));
    exe
}

fn run(exe: &Path, args: &[&str]) -> Output {
    let o = Command::new(exe)
        .args(args)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=99",
        )
        .output()
        .expect("run the C program");
    let t = text(&o);
    assert!(
        !t.contains("AddressSanitizer") && !t.contains("LeakSanitizer"),
        "{} {args:?}: sanitizer report:\n{t}",
        exe.display()
    );
    o
}

fn c_source(name: &str) -> PathBuf {
    root().join("tests/c").join(name)
}

fn fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("qemu-fixtures")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no fixtures found");
    out
}

#[test]
fn the_header_compiles_alone_in_c_and_cpp() {
    let dir = work().join("header");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("alone.c");
    std::fs::write(&src, "#include <libvirt_postcopy.h>\n").unwrap();
    let include = format!("-I{}", prefix().join("include").display());
    for (compiler, lang, std) in [
        ("gcc", "c", "-std=c99"),
        ("gcc", "c", "-std=c11"),
        ("g++", "c++", "-std=c++11"),
        ("g++", "c++", "-std=c++17"),
    ] {
        let o = Command::new(compiler)
            .args(["-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .args([std, "-x", lang, &include])
            .arg(&src)
            .output()
            .expect("run the compiler");
        assert!(
            o.status.success(),
            "{compiler} {std}: the header alone does not compile:\n{}",
            text(&o)
        );
    }
}

/// The functions the header declares (comments left out; function-pointer typedefs are not calls).
fn declared() -> BTreeSet<String> {
    let h = std::fs::read_to_string(prefix().join("include/libvirt_postcopy.h")).unwrap();
    let mut code = String::new();
    let mut rest = h.as_str();
    while let Some(i) = rest.find("/*") {
        code.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    code.push_str(rest);
    let mut out = BTreeSet::new();
    let b = code.as_bytes();
    for (i, _) in code.match_indices("lpc_") {
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'(') {
            continue;
        }
        let end = code[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(code.len(), |n| i + n);
        if code[end..].trim_start().starts_with('(') {
            out.insert(code[i..end].to_string());
        }
    }
    out
}

#[test]
fn every_declared_function_is_exported_and_every_export_declared() {
    let so = prefix().join("lib/libpostcopy_shim.so");
    let o = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("run nm");
    assert!(o.status.success(), "nm: {}", text(&o));
    let exported: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] != "A").then(|| f[2].to_string())
        })
        .collect();
    let clashing: Vec<&String> = exported
        .iter()
        .filter(|s| s.to_ascii_lowercase().starts_with("vir"))
        .collect();
    assert!(
        clashing.is_empty(),
        "symbols that may clash with libvirt.so: {clashing:?}"
    );
    let declared = declared();
    assert!(
        declared.len() >= 19,
        "too few declarations found: {declared:?}"
    );
    assert_eq!(exported, declared, "exported (left) vs declared (right)");
    let rust: BTreeSet<String> = postcopy_shim::ffi::DECLARED
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        rust, declared,
        "checked prototypes (left) vs declared (right)"
    );
    let readelf = Command::new("readelf")
        .args(["-d"])
        .arg(&so)
        .output()
        .expect("run readelf");
    assert!(
        String::from_utf8_lossy(&readelf.stdout).contains("[libpostcopy_shim.so.0]"),
        "soname: {}",
        text(&readelf)
    );
}

#[test]
fn c_error_paths_without_qemu() {
    let exe = build(&c_source("errors.c"), "errors");
    let fixture = root().join("qemu-fixtures/qemu-10.0/postcopy-start-api.jsonl");
    let not_a_transcript = c_source("errors.c");
    let truncated = work().join("truncated.jsonl");
    let whole = std::fs::read_to_string(&fixture).unwrap();
    let head: Vec<&str> = whole.lines().take(20).collect();
    std::fs::write(&truncated, head.join("\n") + "\n").unwrap();
    let o = run(
        &exe,
        &[
            fixture.to_str().unwrap(),
            not_a_transcript.to_str().unwrap(),
            truncated.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 failure(s)"));
}

/// (side, kind) of each domain event, from a replay snapshot's trace or the C program's output.
fn events(lines: &str, from_snapshot: bool) -> Vec<String> {
    lines
        .lines()
        .filter_map(|l| {
            let (side, rest) = l.split_once(" event ")?;
            if side != "src" && side != "dst" {
                return None;
            }
            let kind = if from_snapshot {
                if let Some(n) = rest.strip_prefix("MIGRATION_ITERATION ") {
                    format!("migration-iteration {n}")
                } else if rest == "JOB_COMPLETED" {
                    "job-completed".into()
                } else {
                    "lifecycle".into()
                }
            } else if rest.starts_with("job-completed") {
                "job-completed".into()
            } else if rest.starts_with("lifecycle") {
                "lifecycle".into()
            } else {
                rest.to_string()
            };
            Some(format!("{side} {kind}"))
        })
        .collect()
}

#[test]
fn c_replays_every_fixture_and_matches_the_recording() {
    let exe = build(&c_source("migrate.c"), "migrate");
    for f in fixtures() {
        let t0 = Instant::now();
        let o = run(&exe, &["replay", f.to_str().unwrap()]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{}: the C replay did not match:\n{}",
            f.display(),
            text(&o)
        );
        let rel = f.strip_prefix(root().join("qemu-fixtures")).unwrap();
        let snap = root().join(format!(
            "tests/snapshots/replay__every_fixture_replays_and_matches_its_snapshot@{}.snap",
            rel.display().to_string().replace('/', "__")
        ));
        if let Ok(snap) = std::fs::read_to_string(&snap) {
            let results = |t: &str| -> Vec<String> {
                t.lines()
                    .filter_map(|l| l.strip_prefix("result: "))
                    .map(String::from)
                    .collect()
            };
            let (want, got) = (results(&snap), results(&out));
            assert_eq!(
                want.len(),
                got.len(),
                "{}: {want:?} vs {got:?}",
                f.display()
            );
            for (want, got) in want.iter().zip(&got) {
                if want.starts_with("completed") {
                    assert_eq!(got, "completed", "{}", f.display());
                } else {
                    let message = got.splitn(3, ' ').nth(2).unwrap_or("?");
                    assert!(
                        want.ends_with(message),
                        "{}: C result {got:?}, snapshot {want:?}",
                        f.display()
                    );
                }
            }
            assert_eq!(
                events(&out, false),
                events(&snap, true),
                "{}: events seen by the C callbacks (left) vs the snapshot (right)",
                f.display()
            );
        }
        eprintln!("{}: C replay matches ({:?})", f.display(), t0.elapsed());
    }
}

#[test]
fn the_readme_example_compiles_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## C API")
        .nth(1)
        .expect("README has a \"## C API\" section");
    let section = section.split("\n## ").next().unwrap();
    let code = section
        .split("```c\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("the C API section has a ```c block");
    let dir = work().join("readme");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("example.c");
    std::fs::write(&src, format!("{code}\n")).unwrap();
    let exe = build(&src, "readme-example");
    // Without arguments it explains itself and fails, cleanly.
    let o = run(&exe, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

// ---------------------------------------------------------------------------------------------
// Live QEMU

fn live_enabled() -> bool {
    if std::env::var_os("POSTCOPY_SKIP_LIVE").is_some() {
        eprintln!("POSTCOPY_SKIP_LIVE set: live C test skipped");
        return false;
    }
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a source (guest ready) and a destination QEMU, runs the C program on them, and checks
/// that the guest runs on the destination with its memory intact (on the source after an abort).
fn live(mode: &str) -> String {
    // Two migrations at once would share two cores between four TCG QEMUs.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = build(&c_source("migrate.c"), "migrate-live");
    let guest = work().join("guest");
    let st = Command::new(root().join("qemu-fixtures/guest/build.sh"))
        .arg(&guest)
        .status()
        .expect("run qemu-fixtures/guest/build.sh");
    assert!(st.success(), "guest build failed");
    let dir = work().join(format!("live-{mode}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = QemuConfig {
        binary: "qemu-system-x86_64".into(),
        kernel: guest.join("postcopy-guest.elf"),
        append: "ro=64 hot=16 cold=32 rate=40 beat=20".into(),
        memory_mib: 192,
        extra_args: vec![],
        env: vec![],
    };
    let mut src = QemuProcess::start(&cfg, &dir, "src", false)
        .expect("start source QEMU (ci/install-deps qemu)");
    let dst = QemuProcess::start(&cfg, &dir, "dst", true).expect("start destination QEMU");
    src.wait_serial("READY", Duration::from_secs(120))
        .expect("guest ready");
    let uri = format!("tcp:127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let o = run(
        &exe,
        &[
            mode,
            src.qmp.to_str().unwrap(),
            dst.qmp.to_str().unwrap(),
            &uri,
        ],
    );
    let took = t0.elapsed();
    let out = text(&o);
    assert!(o.status.success(), "C {mode}:\n{out}");
    let (mut runs, stopped) = if mode == "live-abort" {
        (src, dst)
    } else {
        (dst, src)
    };
    drop(stopped);
    let mut follow = SerialFollower::new(&runs.serial);
    if mode == "live-abort" {
        follow.poll(); // what the source said before the migration proves nothing
    }
    let start = Instant::now();
    let mut ok = 0;
    while ok < 1 && start.elapsed() < Duration::from_secs(60) {
        for l in follow.poll() {
            let r = GuestLine::parse(&l)
                .unwrap_or_else(|e| panic!("guest console corrupted on the destination: {e}"));
            assert!(
                !r.as_ref().is_some_and(GuestLine::is_failure),
                "guest memory check failed on the destination: {l}"
            );
            ok += usize::from(matches!(r, Some(GuestLine::CheckOk { .. })));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok >= 1, "the guest did not run on after {mode}");
    assert!(runs.alive());
    eprintln!("C {mode}: migration took {took:?}\n{out}");
    out
}

#[test]
fn c_migrates_a_live_guest_with_postcopy_after_precopy() {
    if !live_enabled() {
        return;
    }
    let out = live("live");
    assert!(out.contains("result: completed"), "{out}");
    assert!(out.contains("src event migration-iteration 2"), "{out}");
}

#[test]
fn c_starts_postcopy_from_a_second_thread_while_migrate_blocks() {
    if !live_enabled() {
        return;
    }
    let out = live("live-thread");
    assert!(out.contains("thread: start_post_copy=0"), "{out}");
}

#[test]
fn c_starts_postcopy_from_the_iteration_callback_as_virsh_does() {
    if !live_enabled() {
        return;
    }
    let out = live("live-callback");
    assert!(out.contains("callback: start_post_copy=0"), "{out}");
}

#[test]
fn c_links_the_static_library_too() {
    let lib = prefix().join("lib");
    let exe = work().join("bin/migrate-static");
    std::fs::create_dir_all(work().join("bin")).unwrap();
    let o = Command::new("pkg-config")
        .args(["--libs-only-l", "--static", "libvirt-postcopy"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .output()
        .expect("run pkg-config");
    assert!(o.status.success(), "pkg-config: {}", text(&o));
    let libs: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter(|l| *l != "-lpostcopy_shim")
        .map(String::from)
        .collect();
    let o = Command::new("gcc")
        .args(CFLAGS)
        .arg(format!("-I{}", prefix().join("include").display()))
        .arg(c_source("migrate.c"))
        .arg(lib.join("libpostcopy_shim.a"))
        .args(&libs)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run gcc");
    assert!(o.status.success(), "gcc (static): {}", text(&o));
    let fixture = root().join("qemu-fixtures/qemu-10.0/postcopy-after-precopy.jsonl");
    let o = run(&exe, &["replay", fixture.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let ldd = Command::new("ldd").arg(&exe).output().expect("run ldd");
    assert!(
        !String::from_utf8_lossy(&ldd.stdout).contains("libpostcopy_shim"),
        "linked the shared library: {}",
        text(&ldd)
    );
}

#[test]
fn c_aborts_a_live_migration_in_precopy() {
    if !live_enabled() {
        return;
    }
    let out = live("live-abort");
    assert!(out.contains("abort: postcopy-flag="), "{out}");
}
