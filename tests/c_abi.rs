//! The C ABI tested from C, as its users build against it: `ci/install-prefix` installs the
//! library, header and pkg-config file into a prefix; the C programs in tests/c/ and the README's
//! example are compiled by the `cc` crate (`-Wall -Wextra -Werror -pedantic`, AddressSanitizer)
//! against it through pkg-config, and run.
//!
//! Live tests need qemu-system-x86_64 (ci/install-deps qemu); POSTCOPY_SKIP_LIVE=1 skips them.

#![allow(clippy::panic, clippy::unwrap_used)] // tests state their expectations by panicking

mod common;
#[path = "common/qemu.rs"]
mod qemu;

use pretty_assertions::assert_eq;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::live::live_enabled;
use common::root;
use postcopy_tools::guest_report::GuestLine;
use postcopy_tools::qemu::{QemuPair, SerialFollower};

/// The C (or C++) compiler as a user of the library runs it: warnings are errors, `-pedantic`,
/// AddressSanitizer, the header from the installed prefix. Outside a build script `cc` is told
/// the target itself (this machine).
fn compiler(cpp: bool, std: &str) -> Command {
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let tool = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .emit_rerun_if_env_changed(false)
        .target(&target)
        .host(&target)
        .opt_level(0)
        .debug(true)
        .cpp(cpp)
        .std(std)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .flag("-pedantic")
        .flag("-fsanitize=address")
        .flag("-fno-omit-frame-pointer")
        .flag("-pthread")
        .include(prefix().join("include"))
        .try_get_compiler()
        .unwrap_or_else(|e| panic!("no C compiler: {e}"));
    tool.to_command()
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
    let o = compiler(false, "c11")
        .arg(source)
        .arg("-o")
        .arg(&exe)
        .args(pkg_config())
        .arg(format!("-Wl,-rpath,{}", prefix().join("lib").display()))
        .output()
        .expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {}: {}",
        source.display(),
        text(&o)
    );
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
            if p.is_dir() && p.ends_with("mutated") {
                continue; // edited recordings that do not complete (tests/replay.rs asserts them)
            } else if p.is_dir() {
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
    for (cpp, lang, std) in [
        (false, "c", "c99"),
        (false, "c", "c11"),
        (true, "c++", "c++11"),
        (true, "c++", "c++17"),
    ] {
        let o = compiler(cpp, std)
            .args(["-fsyntax-only", "-x", lang])
            .arg(&src)
            .output()
            .expect("run the compiler");
        assert!(
            o.status.success(),
            "{lang} {std}: the header alone does not compile:\n{}",
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

/// The C example of the README's "C API" section, as written there, built once per test run.
fn readme_example() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(build_readme_example).clone()
}

fn build_readme_example() -> PathBuf {
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
    build(&src, "readme-example")
}

#[test]
fn the_readme_example_compiles_as_written() {
    let exe = readme_example();
    // Without arguments it explains itself and fails, cleanly.
    let o = run(&exe, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("usage:") && text(&o).contains("SRC_QMP DST_QMP"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_readme_example_migrates_a_live_guest() {
    if !live_enabled("the_readme_example_migrates_a_live_guest") {
        return;
    }
    let out = live(readme_example, None);
    let passes = out
        .lines()
        .find_map(|l| l.strip_prefix("migrated after "))
        .and_then(|l| l.strip_suffix(" memory passes"))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(passes.is_some_and(|n| n >= 2), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Live QEMU

/// Starts a source (guest ready) and a destination QEMU, runs the C program on them (migrate.c
/// in `mode`, or with no mode the README's example: SRC_QMP DST_QMP URI), and checks that the
/// guest runs on the destination with its memory intact (on the source after an abort).
fn live(build_exe: impl FnOnce() -> PathBuf, mode: Option<&str>) -> String {
    // Two migrations at once would share two cores between four TCG QEMUs; and a program must
    // not be rebuilt while another test runs it.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = build_exe();
    let name = mode.unwrap_or("readme-example");
    let dir = work().join(format!("live-{name}-{}", std::process::id()));
    // Each QEMU in its host of the testbed (tbf, 32 MiB/s): the URI is the destination host's.
    let cfg = qemu::config(common::live::GUEST, common::live::GUEST_MEMORY_MIB);
    let (_testbed, QemuPair { src, dst }, uri) = qemu::start_pair_on_testbed(&cfg, &dir, 32.0);
    let t0 = Instant::now();
    let args: Vec<&str> = mode
        .into_iter()
        .chain([src.qmp.to_str().unwrap(), dst.qmp.to_str().unwrap(), &uri])
        .collect();
    let o = run(&exe, &args);
    let took = t0.elapsed();
    let out = text(&o);
    assert!(o.status.success(), "C {name}:\n{out}");
    let aborted = mode == Some("live-abort");
    let (mut runs, stopped) = if aborted { (src, dst) } else { (dst, src) };
    drop(stopped);
    let mut follow = SerialFollower::new(&runs.serial);
    if aborted {
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
    assert!(ok >= 1, "the guest did not run on after {name}");
    assert!(runs.alive());
    eprintln!("C {name}: migration took {took:?}\n{out}");
    out
}

/// migrate.c in one of its live modes.
fn live_mode(mode: &str) -> String {
    live(|| build(&c_source("migrate.c"), "migrate-live"), Some(mode))
}

#[test]
fn c_migrates_a_live_guest_with_postcopy_after_precopy() {
    if !live_enabled("this live C test") {
        return;
    }
    let out = live_mode("live");
    assert!(out.contains("result: completed"), "{out}");
    assert!(out.contains("src event migration-iteration 2"), "{out}");
}

#[test]
fn c_starts_postcopy_from_a_second_thread_while_migrate_blocks() {
    if !live_enabled("this live C test") {
        return;
    }
    let out = live_mode("live-thread");
    assert!(out.contains("thread: start_post_copy=0"), "{out}");
}

#[test]
fn c_starts_postcopy_from_the_iteration_callback_as_virsh_does() {
    if !live_enabled("this live C test") {
        return;
    }
    let out = live_mode("live-callback");
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
    let o = compiler(false, "c11")
        .arg(c_source("migrate.c"))
        .arg(lib.join("libpostcopy_shim.a"))
        .args(&libs)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C compiler");
    assert!(o.status.success(), "static link: {}", text(&o));
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
    if !live_enabled("this live C test") {
        return;
    }
    let out = live_mode("live-abort");
    assert!(out.contains("abort: postcopy-flag="), "{out}");
    // The call's result follows QEMU's final status (tests/c/migrate.c, tests/live_faults.rs):
    // cancelled, or QEMU's own failure when the cancel met the stream's start.
    assert!(
        out.contains("result: -1 operation aborted: job 'migration out' canceled by client")
            || out.contains("result: -1 operation failed: job 'migration out' failed: "),
        "{out}"
    );
}
