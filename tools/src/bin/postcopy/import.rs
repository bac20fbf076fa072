//! `postcopy import-libvirt-log`: one migration from two libvirt daemon logs, as a transcript.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::error::CliError;
use postcopy_tools::libvirt_log::{import, ImportOptions};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The source daemon's log (log_filters "1:qemu.qemu_monitor 1:qemu.qemu_process
    /// 1:qemu.qemu_migration", a file output).
    #[arg(long)]
    src_log: PathBuf,
    /// The destination daemon's log.
    #[arg(long)]
    dst_log: PathBuf,
    /// The domain's name.
    #[arg(long)]
    domain: String,
    /// The scenario name written into the header (default: the domain's name).
    #[arg(long)]
    scenario: Option<String>,
    /// Where to write the transcript (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print what the source log says about the switch, as KEY=VALUE lines.
    #[arg(long)]
    summary: bool,
}

pub fn main(a: ImportArgs) -> Result<ExitCode, CliError> {
    let read = |p: &PathBuf| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| CliError::Read(p.clone(), e))
    };
    let src = read(&a.src_log)?;
    let dst = read(&a.dst_log)?;
    let opts = ImportOptions {
        scenario: a.scenario.clone().unwrap_or_else(|| a.domain.clone()),
        domain: a.domain.clone(),
        description: Some(format!(
            "imported from {} and {}",
            a.src_log.display(),
            a.dst_log.display()
        )),
    };
    let imported = import(&src, &dst, &opts)?;
    match &a.out {
        Some(p) => {
            std::fs::write(p, imported.to_jsonl()).map_err(|e| CliError::Write(p.clone(), e))?
        }
        None => print!("{}", imported.to_jsonl()),
    }
    if a.summary {
        let s = &imported.summary;
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        println!("start_postcopy_count={}", s.start_postcopy_count);
        println!("start_postcopy_by_api={}", s.start_postcopy_by_api);
        println!("pass2_ms={}", opt(s.pass2_ms));
        println!("start_postcopy_ms={}", opt(s.start_postcopy_ms));
        println!("latency_ms={}", opt(s.latency_ms()));
        println!("after_pass2={}", s.after_pass2);
        println!("src_statuses={}", s.src_statuses.join(" "));
        println!(
            "pre_switchover_before_reply={}",
            s.pre_switchover_before_reply
        );
        println!("migrate_continue_count={}", s.migrate_continue_count);
        let sample = s.sample_before_switch;
        println!("bytes_sent_before_switch={}", opt(sample.map(|x| x.sent)));
        println!("ram_bytes={}", opt(sample.map(|x| x.total)));
        println!("flags={}", imported.header.flag_names.join("|"));
    }
    Ok(ExitCode::SUCCESS)
}
