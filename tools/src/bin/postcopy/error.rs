//! What the `postcopy` command reports when it cannot do what it was asked, and how.

use std::path::PathBuf;

use postcopy_core::driver::policy::PolicyError;
use postcopy_core::driver::VirError;
use postcopy_core::transcript::TranscriptError;
use postcopy_tools::bench::BenchError;
use postcopy_tools::libvirt_log::ImportError;
use postcopy_tools::scenario::ScenarioError;

/// A command that could not run (a migration that ran and failed is a result, not this).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(
        "guest kernel {} not found: build it with qemu-fixtures/guest/build.sh target/guest",
        .0.display()
    )]
    NoKernel(PathBuf),
    #[error("the scenario did not run to its end")]
    Scenario(#[from] ScenarioError),
    #[error("the migrate call did not run")]
    Migrate(#[source] VirError),
    #[error("the benchmark stopped")]
    Bench(#[from] BenchError),
    #[error("no default workload {0:?} (a, b)")]
    UnknownWorkload(String),
    #[error("--workload {0:?}: want NAME:MEMORY_MIB:GUEST, MEMORY_MIB a number")]
    BadWorkload(String),
    #[error("unknown policy {0:?}")]
    UnknownPolicy(String),
    #[error("--preempt takes off and on, not {0:?}")]
    BadPreempt(String),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("cannot build the testbed (two hosts and their link)")]
    Testbed(#[source] postcopy_tools::testbed::TestbedError),
    #[error("cannot import the logs")]
    Import(#[from] ImportError),
    #[error("cannot load the transcript")]
    Transcript(#[from] TranscriptError),
    #[error("--switch-policy")]
    Policy(#[from] PolicyError),
}

/// A command-line value that does not parse (clap prints it after the option's name).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArgError {
    #[error("unknown trigger '{0}' (postcopy, dst-running, iteration:N, ms:N)")]
    Trigger(String),
    #[error("not a number: {0}")]
    Number(String),
    #[error("not a rate in MiB/s above 0: {0}")]
    Rate(String),
    #[error("expected {0}")]
    Shape(&'static str),
    #[error("unknown side '{0}' (src or dst)")]
    Side(String),
}

/// Prints `e` on stderr, then each of its causes on a line of its own.
pub(crate) fn print(command: &str, e: &CliError) {
    let chain = postcopy_tools::error_chain(e);
    let mut lines = chain.iter();
    if let Some(first) = lines.next() {
        eprintln!("postcopy {command}: {first}");
    }
    for cause in lines {
        eprintln!("  caused by: {cause}");
    }
}
