//! ci/e2e's libvirt client: a migration with VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY through
//! virDomainMigrateToURI3, from one thread, with no event loop and no StartPostCopy call.
//!
//! The `virt` crate is built against the installed libvirt-dev (9.0), whose header has no
//! VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: the flag is passed as the raw bit `1 << 21`.
//!
//!     virt-client migrate SRC_URI DOMAIN DEST_URI MIGRATE_URI postcopy-after-precopy|refuse
//!
//! `postcopy-after-precopy`: LIVE|PEER2PEER|POSTCOPY|POSTCOPY_AFTER_PRECOPY, 20 MiB/s; must succeed.
//! `refuse`: LIVE|PEER2PEER|POSTCOPY_AFTER_PRECOPY (no POSTCOPY); must fail with
//! VIR_ERR_INVALID_ARG.

use std::process::ExitCode;

use virt::connect::Connect;
use virt::domain::MigrateParameters;
use virt::error::ErrorNumber;
use virt::sys;

const VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY: u32 = 1 << 21;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 || args[1] != "migrate" {
        eprintln!("usage: virt-client migrate SRC_URI DOMAIN DEST_URI MIGRATE_URI postcopy-after-precopy|refuse");
        return ExitCode::from(2);
    }
    let (src_uri, name, dest_uri, mig_uri, mode) =
        (&args[2], &args[3], &args[4], &args[5], &args[6]);
    let conn = match Connect::open(Some(src_uri)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot connect to {src_uri}: {e}");
            return ExitCode::from(1);
        }
    };
    let dom = match conn.lookup_domain_by_name(name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no domain {name}: {e}");
            return ExitCode::from(1);
        }
    };
    let base = sys::VIR_MIGRATE_LIVE | sys::VIR_MIGRATE_PEER2PEER;
    let flags = match mode.as_str() {
        "postcopy-after-precopy" => {
            base | sys::VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
        }
        "refuse" => base | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY,
        other => {
            eprintln!("unknown mode {other}");
            return ExitCode::from(2);
        }
    };
    let params = MigrateParameters {
        uri: Some(mig_uri.clone()),
        bandwidth: Some(20),
        ..Default::default()
    };
    let result = dom.migrate_to_uri3(Some(dest_uri), params, flags);
    match (mode.as_str(), result) {
        ("postcopy-after-precopy", Ok(())) => {
            println!("virDomainMigrateToURI3(flags=0x{flags:x}) succeeded");
            ExitCode::SUCCESS
        }
        ("refuse", Err(e))
            if e.code() == virt::error::ErrorNumberEnum::Known(ErrorNumber::InvalidArg) =>
        {
            println!(
                "virDomainMigrateToURI3(flags=0x{flags:x}) refused: VIR_ERR_INVALID_ARG: {}",
                e.message()
            );
            ExitCode::SUCCESS
        }
        (_, Ok(())) => {
            eprintln!(
                "virDomainMigrateToURI3(flags=0x{flags:x}) succeeded, expected VIR_ERR_INVALID_ARG"
            );
            ExitCode::from(1)
        }
        (_, Err(e)) => {
            eprintln!(
                "virDomainMigrateToURI3(flags=0x{flags:x}) failed: {:?}: {}",
                e.code(),
                e.message()
            );
            ExitCode::from(1)
        }
    }
}
