//! libvirt's values that the core keeps as its own constants (postcopy_core::driver::libvirt_values)
//! held against libvirt's header, through virt-sys.

use postcopy_shim::postcopy_core::driver::libvirt_values as sys;

#[test]
fn every_value_the_core_keeps_is_libvirts() {
    assert_eq!(
        sys::VIR_DOMAIN_ABORT_JOB_POSTCOPY as i64,
        virt_sys::VIR_DOMAIN_ABORT_JOB_POSTCOPY as i64,
        "VIR_DOMAIN_ABORT_JOB_POSTCOPY"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_ID_JOB_COMPLETED as i64,
        virt_sys::VIR_DOMAIN_EVENT_ID_JOB_COMPLETED as i64,
        "VIR_DOMAIN_EVENT_ID_JOB_COMPLETED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as i64,
        virt_sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as i64,
        "VIR_DOMAIN_EVENT_ID_LIFECYCLE"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION as i64,
        virt_sys::VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION as i64,
        "VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_RESUMED as i64,
        virt_sys::VIR_DOMAIN_EVENT_RESUMED as i64,
        "VIR_DOMAIN_EVENT_RESUMED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_RESUMED_MIGRATED as i64,
        virt_sys::VIR_DOMAIN_EVENT_RESUMED_MIGRATED as i64,
        "VIR_DOMAIN_EVENT_RESUMED_MIGRATED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_RESUMED_POSTCOPY as i64,
        virt_sys::VIR_DOMAIN_EVENT_RESUMED_POSTCOPY as i64,
        "VIR_DOMAIN_EVENT_RESUMED_POSTCOPY"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED as i64,
        virt_sys::VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED as i64,
        "VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_RESUMED_UNPAUSED as i64,
        virt_sys::VIR_DOMAIN_EVENT_RESUMED_UNPAUSED as i64,
        "VIR_DOMAIN_EVENT_RESUMED_UNPAUSED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_STARTED as i64,
        virt_sys::VIR_DOMAIN_EVENT_STARTED as i64,
        "VIR_DOMAIN_EVENT_STARTED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_STARTED_MIGRATED as i64,
        virt_sys::VIR_DOMAIN_EVENT_STARTED_MIGRATED as i64,
        "VIR_DOMAIN_EVENT_STARTED_MIGRATED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_STOPPED as i64,
        virt_sys::VIR_DOMAIN_EVENT_STOPPED as i64,
        "VIR_DOMAIN_EVENT_STOPPED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_STOPPED_CRASHED as i64,
        virt_sys::VIR_DOMAIN_EVENT_STOPPED_CRASHED as i64,
        "VIR_DOMAIN_EVENT_STOPPED_CRASHED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_STOPPED_FAILED as i64,
        virt_sys::VIR_DOMAIN_EVENT_STOPPED_FAILED as i64,
        "VIR_DOMAIN_EVENT_STOPPED_FAILED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_STOPPED_MIGRATED as i64,
        virt_sys::VIR_DOMAIN_EVENT_STOPPED_MIGRATED as i64,
        "VIR_DOMAIN_EVENT_STOPPED_MIGRATED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_SUSPENDED as i64,
        virt_sys::VIR_DOMAIN_EVENT_SUSPENDED as i64,
        "VIR_DOMAIN_EVENT_SUSPENDED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED as i64,
        virt_sys::VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED as i64,
        "VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY as i64,
        virt_sys::VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY as i64,
        "VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY"
    );
    assert_eq!(
        sys::VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED as i64,
        virt_sys::VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED as i64,
        "VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_CANCELLED as i64,
        virt_sys::VIR_DOMAIN_JOB_CANCELLED as i64,
        "VIR_DOMAIN_JOB_CANCELLED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_COMPLETED as i64,
        virt_sys::VIR_DOMAIN_JOB_COMPLETED as i64,
        "VIR_DOMAIN_JOB_COMPLETED"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_DATA_PROCESSED),
        virt_sys::VIR_DOMAIN_JOB_DATA_PROCESSED.to_str().ok(),
        "VIR_DOMAIN_JOB_DATA_PROCESSED"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_DATA_REMAINING),
        virt_sys::VIR_DOMAIN_JOB_DATA_REMAINING.to_str().ok(),
        "VIR_DOMAIN_JOB_DATA_REMAINING"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_DATA_TOTAL),
        virt_sys::VIR_DOMAIN_JOB_DATA_TOTAL.to_str().ok(),
        "VIR_DOMAIN_JOB_DATA_TOTAL"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_DOWNTIME),
        virt_sys::VIR_DOMAIN_JOB_DOWNTIME.to_str().ok(),
        "VIR_DOMAIN_JOB_DOWNTIME"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_FAILED as i64,
        virt_sys::VIR_DOMAIN_JOB_FAILED as i64,
        "VIR_DOMAIN_JOB_FAILED"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_BPS),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_BPS.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_BPS"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_CONSTANT),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_CONSTANT.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_CONSTANT"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_ITERATION),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_ITERATION.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_ITERATION"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_NORMAL),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_NORMAL.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_NORMAL"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_PROCESSED),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_PROCESSED.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_PROCESSED"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_REMAINING),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_REMAINING.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_REMAINING"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_MEMORY_TOTAL),
        virt_sys::VIR_DOMAIN_JOB_MEMORY_TOTAL.to_str().ok(),
        "VIR_DOMAIN_JOB_MEMORY_TOTAL"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_NONE as i64,
        virt_sys::VIR_DOMAIN_JOB_NONE as i64,
        "VIR_DOMAIN_JOB_NONE"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_OPERATION),
        virt_sys::VIR_DOMAIN_JOB_OPERATION.to_str().ok(),
        "VIR_DOMAIN_JOB_OPERATION"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT as i64,
        virt_sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT as i64,
        "VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_SETUP_TIME),
        virt_sys::VIR_DOMAIN_JOB_SETUP_TIME.to_str().ok(),
        "VIR_DOMAIN_JOB_SETUP_TIME"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_STATS_COMPLETED as i64,
        virt_sys::VIR_DOMAIN_JOB_STATS_COMPLETED as i64,
        "VIR_DOMAIN_JOB_STATS_COMPLETED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED as i64,
        virt_sys::VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED as i64,
        "VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_SUCCESS),
        virt_sys::VIR_DOMAIN_JOB_SUCCESS.to_str().ok(),
        "VIR_DOMAIN_JOB_SUCCESS"
    );
    assert_eq!(
        Some(sys::VIR_DOMAIN_JOB_TIME_ELAPSED),
        virt_sys::VIR_DOMAIN_JOB_TIME_ELAPSED.to_str().ok(),
        "VIR_DOMAIN_JOB_TIME_ELAPSED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_JOB_UNBOUNDED as i64,
        virt_sys::VIR_DOMAIN_JOB_UNBOUNDED as i64,
        "VIR_DOMAIN_JOB_UNBOUNDED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_PAUSED as i64,
        virt_sys::VIR_DOMAIN_PAUSED as i64,
        "VIR_DOMAIN_PAUSED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_PAUSED_MIGRATION as i64,
        virt_sys::VIR_DOMAIN_PAUSED_MIGRATION as i64,
        "VIR_DOMAIN_PAUSED_MIGRATION"
    );
    assert_eq!(
        sys::VIR_DOMAIN_PAUSED_POSTCOPY as i64,
        virt_sys::VIR_DOMAIN_PAUSED_POSTCOPY as i64,
        "VIR_DOMAIN_PAUSED_POSTCOPY"
    );
    assert_eq!(
        sys::VIR_DOMAIN_PAUSED_POSTCOPY_FAILED as i64,
        virt_sys::VIR_DOMAIN_PAUSED_POSTCOPY_FAILED as i64,
        "VIR_DOMAIN_PAUSED_POSTCOPY_FAILED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_PAUSED_UNKNOWN as i64,
        virt_sys::VIR_DOMAIN_PAUSED_UNKNOWN as i64,
        "VIR_DOMAIN_PAUSED_UNKNOWN"
    );
    assert_eq!(
        sys::VIR_DOMAIN_PAUSED_USER as i64,
        virt_sys::VIR_DOMAIN_PAUSED_USER as i64,
        "VIR_DOMAIN_PAUSED_USER"
    );
    assert_eq!(
        sys::VIR_DOMAIN_RUNNING as i64,
        virt_sys::VIR_DOMAIN_RUNNING as i64,
        "VIR_DOMAIN_RUNNING"
    );
    assert_eq!(
        sys::VIR_DOMAIN_RUNNING_MIGRATED as i64,
        virt_sys::VIR_DOMAIN_RUNNING_MIGRATED as i64,
        "VIR_DOMAIN_RUNNING_MIGRATED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_RUNNING_MIGRATION_CANCELED as i64,
        virt_sys::VIR_DOMAIN_RUNNING_MIGRATION_CANCELED as i64,
        "VIR_DOMAIN_RUNNING_MIGRATION_CANCELED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_RUNNING_POSTCOPY as i64,
        virt_sys::VIR_DOMAIN_RUNNING_POSTCOPY as i64,
        "VIR_DOMAIN_RUNNING_POSTCOPY"
    );
    assert_eq!(
        sys::VIR_DOMAIN_RUNNING_POSTCOPY_FAILED as i64,
        virt_sys::VIR_DOMAIN_RUNNING_POSTCOPY_FAILED as i64,
        "VIR_DOMAIN_RUNNING_POSTCOPY_FAILED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_RUNNING_UNPAUSED as i64,
        virt_sys::VIR_DOMAIN_RUNNING_UNPAUSED as i64,
        "VIR_DOMAIN_RUNNING_UNPAUSED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_SHUTOFF as i64,
        virt_sys::VIR_DOMAIN_SHUTOFF as i64,
        "VIR_DOMAIN_SHUTOFF"
    );
    assert_eq!(
        sys::VIR_DOMAIN_SHUTOFF_CRASHED as i64,
        virt_sys::VIR_DOMAIN_SHUTOFF_CRASHED as i64,
        "VIR_DOMAIN_SHUTOFF_CRASHED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_SHUTOFF_FAILED as i64,
        virt_sys::VIR_DOMAIN_SHUTOFF_FAILED as i64,
        "VIR_DOMAIN_SHUTOFF_FAILED"
    );
    assert_eq!(
        sys::VIR_DOMAIN_SHUTOFF_MIGRATED as i64,
        virt_sys::VIR_DOMAIN_SHUTOFF_MIGRATED as i64,
        "VIR_DOMAIN_SHUTOFF_MIGRATED"
    );
    assert_eq!(
        sys::VIR_ERR_ARGUMENT_UNSUPPORTED as i64,
        virt_sys::VIR_ERR_ARGUMENT_UNSUPPORTED as i64,
        "VIR_ERR_ARGUMENT_UNSUPPORTED"
    );
    assert_eq!(
        sys::VIR_ERR_INTERNAL_ERROR as i64,
        virt_sys::VIR_ERR_INTERNAL_ERROR as i64,
        "VIR_ERR_INTERNAL_ERROR"
    );
    assert_eq!(
        sys::VIR_ERR_INVALID_ARG as i64,
        virt_sys::VIR_ERR_INVALID_ARG as i64,
        "VIR_ERR_INVALID_ARG"
    );
    assert_eq!(
        sys::VIR_ERR_NO_DOMAIN as i64,
        virt_sys::VIR_ERR_NO_DOMAIN as i64,
        "VIR_ERR_NO_DOMAIN"
    );
    assert_eq!(
        sys::VIR_ERR_OPERATION_ABORTED as i64,
        virt_sys::VIR_ERR_OPERATION_ABORTED as i64,
        "VIR_ERR_OPERATION_ABORTED"
    );
    assert_eq!(
        sys::VIR_ERR_OPERATION_FAILED as i64,
        virt_sys::VIR_ERR_OPERATION_FAILED as i64,
        "VIR_ERR_OPERATION_FAILED"
    );
    assert_eq!(
        sys::VIR_ERR_OPERATION_INVALID as i64,
        virt_sys::VIR_ERR_OPERATION_INVALID as i64,
        "VIR_ERR_OPERATION_INVALID"
    );
    assert_eq!(
        sys::VIR_ERR_OPERATION_TIMEOUT as i64,
        virt_sys::VIR_ERR_OPERATION_TIMEOUT as i64,
        "VIR_ERR_OPERATION_TIMEOUT"
    );
    assert_eq!(
        sys::VIR_ERR_OPERATION_UNSUPPORTED as i64,
        virt_sys::VIR_ERR_OPERATION_UNSUPPORTED as i64,
        "VIR_ERR_OPERATION_UNSUPPORTED"
    );
    assert_eq!(
        sys::VIR_ERR_SYSTEM_ERROR as i64,
        virt_sys::VIR_ERR_SYSTEM_ERROR as i64,
        "VIR_ERR_SYSTEM_ERROR"
    );
    assert_eq!(
        sys::VIR_FROM_QEMU as i64,
        virt_sys::VIR_FROM_QEMU as i64,
        "VIR_FROM_QEMU"
    );
    assert_eq!(
        sys::VIR_MIGRATE_ABORT_ON_ERROR as i64,
        virt_sys::VIR_MIGRATE_ABORT_ON_ERROR as i64,
        "VIR_MIGRATE_ABORT_ON_ERROR"
    );
    assert_eq!(
        sys::VIR_MIGRATE_AUTO_CONVERGE as i64,
        virt_sys::VIR_MIGRATE_AUTO_CONVERGE as i64,
        "VIR_MIGRATE_AUTO_CONVERGE"
    );
    assert_eq!(
        sys::VIR_MIGRATE_CHANGE_PROTECTION as i64,
        virt_sys::VIR_MIGRATE_CHANGE_PROTECTION as i64,
        "VIR_MIGRATE_CHANGE_PROTECTION"
    );
    assert_eq!(
        sys::VIR_MIGRATE_COMPRESSED as i64,
        virt_sys::VIR_MIGRATE_COMPRESSED as i64,
        "VIR_MIGRATE_COMPRESSED"
    );
    assert_eq!(
        sys::VIR_MIGRATE_LIVE as i64,
        virt_sys::VIR_MIGRATE_LIVE as i64,
        "VIR_MIGRATE_LIVE"
    );
    assert_eq!(
        sys::VIR_MIGRATE_NON_SHARED_DISK as i64,
        virt_sys::VIR_MIGRATE_NON_SHARED_DISK as i64,
        "VIR_MIGRATE_NON_SHARED_DISK"
    );
    assert_eq!(
        sys::VIR_MIGRATE_NON_SHARED_INC as i64,
        virt_sys::VIR_MIGRATE_NON_SHARED_INC as i64,
        "VIR_MIGRATE_NON_SHARED_INC"
    );
    assert_eq!(
        sys::VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES as i64,
        virt_sys::VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES as i64,
        "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES"
    );
    assert_eq!(
        sys::VIR_MIGRATE_OFFLINE as i64,
        virt_sys::VIR_MIGRATE_OFFLINE as i64,
        "VIR_MIGRATE_OFFLINE"
    );
    assert_eq!(
        sys::VIR_MIGRATE_PARALLEL as i64,
        virt_sys::VIR_MIGRATE_PARALLEL as i64,
        "VIR_MIGRATE_PARALLEL"
    );
    assert_eq!(
        Some(sys::VIR_MIGRATE_PARAM_BANDWIDTH),
        virt_sys::VIR_MIGRATE_PARAM_BANDWIDTH.to_str().ok(),
        "VIR_MIGRATE_PARAM_BANDWIDTH"
    );
    assert_eq!(
        Some(sys::VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY),
        virt_sys::VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY.to_str().ok(),
        "VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY"
    );
    assert_eq!(
        Some(sys::VIR_MIGRATE_PARAM_URI),
        virt_sys::VIR_MIGRATE_PARAM_URI.to_str().ok(),
        "VIR_MIGRATE_PARAM_URI"
    );
    assert_eq!(
        sys::VIR_MIGRATE_PAUSED as i64,
        virt_sys::VIR_MIGRATE_PAUSED as i64,
        "VIR_MIGRATE_PAUSED"
    );
    assert_eq!(
        sys::VIR_MIGRATE_PEER2PEER as i64,
        virt_sys::VIR_MIGRATE_PEER2PEER as i64,
        "VIR_MIGRATE_PEER2PEER"
    );
    assert_eq!(
        sys::VIR_MIGRATE_PERSIST_DEST as i64,
        virt_sys::VIR_MIGRATE_PERSIST_DEST as i64,
        "VIR_MIGRATE_PERSIST_DEST"
    );
    assert_eq!(
        sys::VIR_MIGRATE_POSTCOPY as i64,
        virt_sys::VIR_MIGRATE_POSTCOPY as i64,
        "VIR_MIGRATE_POSTCOPY"
    );
    assert_eq!(
        sys::VIR_MIGRATE_POSTCOPY_RESUME as i64,
        virt_sys::VIR_MIGRATE_POSTCOPY_RESUME as i64,
        "VIR_MIGRATE_POSTCOPY_RESUME"
    );
    assert_eq!(
        sys::VIR_MIGRATE_RDMA_PIN_ALL as i64,
        virt_sys::VIR_MIGRATE_RDMA_PIN_ALL as i64,
        "VIR_MIGRATE_RDMA_PIN_ALL"
    );
    assert_eq!(
        sys::VIR_MIGRATE_TLS as i64,
        virt_sys::VIR_MIGRATE_TLS as i64,
        "VIR_MIGRATE_TLS"
    );
    assert_eq!(
        sys::VIR_MIGRATE_TUNNELLED as i64,
        virt_sys::VIR_MIGRATE_TUNNELLED as i64,
        "VIR_MIGRATE_TUNNELLED"
    );
    assert_eq!(
        sys::VIR_MIGRATE_UNDEFINE_SOURCE as i64,
        virt_sys::VIR_MIGRATE_UNDEFINE_SOURCE as i64,
        "VIR_MIGRATE_UNDEFINE_SOURCE"
    );
    assert_eq!(
        sys::VIR_MIGRATE_UNSAFE as i64,
        virt_sys::VIR_MIGRATE_UNSAFE as i64,
        "VIR_MIGRATE_UNSAFE"
    );
    assert_eq!(
        sys::VIR_MIGRATE_ZEROCOPY as i64,
        virt_sys::VIR_MIGRATE_ZEROCOPY as i64,
        "VIR_MIGRATE_ZEROCOPY"
    );
}
