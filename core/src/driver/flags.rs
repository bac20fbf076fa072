//! The flag checks of virDomainMigrate3 and of the QEMU driver's Begin and Prepare
//! (docs/driver-behaviour.md §1).

use super::vocab::*;

/// Flag checks of the public API (libvirt-domain.c, all six virDomainMigrate* entry points).
pub fn check_public_flags(flags: u32) -> Result<(), VirError> {
    if flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0 && flags & VIR_MIGRATE_POSTCOPY == 0 {
        return Err(VirError::new(
            code::INVALID_ARG,
            "Flag 'VIR_MIGRATE_POSTCOPY' is required by flag 'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY'",
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY != 0 && flags & VIR_MIGRATE_POSTCOPY_RESUME != 0 {
        return Err(VirError::new(
            code::INVALID_ARG,
            "Flags 'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY' and 'VIR_MIGRATE_POSTCOPY_RESUME' are mutually exclusive",
        ));
    }
    Ok(())
}

/// The driver's flag checks, run in Begin (source) and again in Prepare (destination):
/// virCheckFlags, libvirt's post-copy rules, our flag's rules, then the shim's scope
/// (docs/driver-behaviour.md §1).
pub fn check_driver_flags(flags: u32, function: &str) -> Result<(), VirError> {
    let unknown = flags & !QEMU_MIGRATION_FLAGS;
    if unknown != 0 {
        return Err(VirError::new(
            code::INVALID_ARG,
            format!("unsupported flags (0x{unknown:x}) in function {function}"),
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY != 0
        && (flags & VIR_MIGRATE_LIVE == 0 || flags & VIR_MIGRATE_PAUSED != 0)
    {
        return Err(VirError::new(
            code::ARGUMENT_UNSUPPORTED,
            "post-copy migration is not supported with non-live or paused migration",
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY != 0 && flags & VIR_MIGRATE_TUNNELLED != 0 {
        return Err(VirError::new(
            code::ARGUMENT_UNSUPPORTED,
            "post-copy is not supported with tunnelled migration",
        ));
    }
    if flags & VIR_MIGRATE_POSTCOPY_RESUME != 0 && flags & VIR_MIGRATE_POSTCOPY == 0 {
        return Err(VirError::new(
            code::ARGUMENT_UNSUPPORTED,
            "resuming failed post-copy migration requires post-copy to be enabled",
        ));
    }
    check_public_flags(flags)?;
    for (bit, name) in OUT_OF_SCOPE_FLAGS {
        if flags & bit != 0 {
            return Err(VirError::new(
                code::ARGUMENT_UNSUPPORTED,
                format!("migration flag {name} is not supported by the post-copy shim"),
            ));
        }
    }
    Ok(())
}
