/*
 * libvirt_postcopy.h: the post-copy migration API of libvirt's QEMU driver, as a C library.
 *
 * This header is the ABI contract of libpostcopy_shim.so.0 (pkg-config: libvirt-postcopy).
 * It is written by hand; the Rust implementation is generated against it (bindgen), so the two
 * cannot drift apart.
 *
 * Vocabulary. Everything a libvirt programmer knows keeps its libvirt meaning and value:
 * migration flags (VIR_MIGRATE_*), typed parameters (virTypedParameter, VIR_MIGRATE_PARAM_*,
 * VIR_DOMAIN_JOB_*), job types (virDomainJobType), domain states and reasons (virDomainState,
 * virDomain*Reason), event ids and details (VIR_DOMAIN_EVENT_ID_*, virDomainEvent*DetailType),
 * errors (virErrorNumber codes, the VIR_FROM_QEMU domain, libvirt's message texts). They come from
 * <libvirt/libvirt.h>; this header adds only VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, proposed for
 * libvirt and defined here when libvirt's header lacks it, and two migration parameters of our
 * own under the LPC_ prefix (LPC_MIGRATE_PARAM_SWITCH_POLICY, _RTT), which libvirt does not have.
 *
 * Names. Every symbol of this library starts with lpc_ (macros LPC_); none starts with vir, so a
 * program can link this library beside libvirt.so.
 *
 * Conventions (as libvirt's):
 *  - functions returning int return 0 (or a non-negative value) on success, -1 on error;
 *    functions returning a pointer return NULL on error;
 *  - on error, the calling thread's last error is set (lpc_get_last_error()); every call resets
 *    it first, so after a success lpc_get_last_error() returns NULL;
 *  - output arguments are written only on success;
 *  - every pointer argument is checked: NULL where a value is required, a negative count, an
 *    unknown flag bit fail with VIR_ERR_INVALID_ARG;
 *  - every handle returned (lpc_*_open, lpc_replay_get_*) is a reference the caller owns and
 *    releases exactly once with its _free function; no function takes over a handle passed to
 *    it; handles keep what they need alive, so they can be freed in any order; _free(NULL) does
 *    nothing. Using a handle after freeing it is undefined behaviour, as with virDomainFree.
 *  - every entry point is a panic boundary: an internal failure of the library becomes -1 with
 *    VIR_ERR_INTERNAL_ERROR, never an abort.
 *
 * Threads. Handles may be used from several threads at once: while lpc_domain_migrate() blocks
 * in one thread, others may call lpc_domain_migrate_start_post_copy(), lpc_domain_abort_job_flags(),
 * lpc_domain_get_job_stats() and lpc_domain_get_state() on the same domains. Event callbacks run on
 * a thread of the library (like libvirt's event loop) and may call those functions too.
 */

#ifndef LIBVIRT_POSTCOPY_H
#define LIBVIRT_POSTCOPY_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY:
 *
 * Migration flag (virDomainMigrateFlags): switch to post-copy as soon as the first full pre-copy
 * pass is done (QEMU's MIGRATION_PASS >= 2 while still in pre-copy), in the driver, without a
 * client-side lpc_domain_migrate_start_post_copy(). Requires VIR_MIGRATE_POSTCOPY; excludes
 * VIR_MIGRATE_POSTCOPY_RESUME (both VIR_ERR_INVALID_ARG). Proposed for libvirt with this value.
 */
#ifndef VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY
# define VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY (1 << 21)
#endif

/**
 * LPC_MIGRATE_PARAM_SWITCH_POLICY:
 *
 * Migration parameter (string) of this library, not of libvirt: the driver itself switches to
 * post-copy by a policy of ours (docs/driver-behaviour.md section 7.1), sampling QEMU's
 * query-migrate every 100 ms while pre-copy runs:
 *  - "half-pass": once half of the guest's memory has been sent once;
 *  - "adaptive": once staying in pre-copy to the end of the pass is predicted to cost the guest
 *    at least as much stall as switching now (in particular when the guest dirties memory at
 *    least as fast as the link sends it); never while the link makes no progress.
 * Requires VIR_MIGRATE_POSTCOPY; excludes VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY and
 * VIR_MIGRATE_POSTCOPY_RESUME (VIR_ERR_INVALID_ARG, as an unknown policy name).
 * virDomainMigrateStartPostCopy still works, and the first switch request wins.
 */
#define LPC_MIGRATE_PARAM_SWITCH_POLICY "lpc.switch_policy"

/**
 * LPC_MIGRATE_PARAM_SWITCH_POLICY_RTT:
 *
 * Migration parameter (ullong, microseconds) of this library: the round trip of one post-copy
 * page request that the "adaptive" policy assumes (QEMU does not know it); default 0. Only with
 * LPC_MIGRATE_PARAM_SWITCH_POLICY "adaptive" (otherwise VIR_ERR_INVALID_ARG).
 */
#define LPC_MIGRATE_PARAM_SWITCH_POLICY_RTT "lpc.switch_policy.rtt"

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/**
 * lpc_get_last_error:
 *
 * The last error of the calling thread, as libvirt's virGetLastError() reports it: code (a
 * virErrorNumber), domain (VIR_FROM_QEMU), message (libvirt's full text, such as "Requested
 * operation is not valid: post-copy can only be started while outgoing migration is in
 * progress"), level VIR_ERR_ERROR; the other fields are 0 or NULL.
 *
 * Errors that are not the driver's own (the QMP socket cannot be reached, a monitor breaks, QEMU
 * speaks something that is not QMP) are VIR_ERR_OPERATION_FAILED (input/output) or
 * VIR_ERR_INTERNAL_ERROR (protocol), with the text of the failure. A replay that does not match
 * its transcript fails with VIR_ERR_INTERNAL_ERROR and a message that starts with
 * LPC_REPLAY_DIVERGED_PREFIX: a different command names the transcript line, the recorded and the
 * sent message; a recording that ends while the driver still waits (or that the library cannot
 * read) says so after "replay diverged: ".
 *
 * Returns: a pointer owned by the library, valid until the next lpc_ call in this thread; NULL
 * when the last call succeeded.
 */
virErrorPtr lpc_get_last_error(void);

/**
 * lpc_get_last_error_code:
 *
 * Returns: the virErrorNumber of the calling thread's last error, VIR_ERR_OK (0) if none.
 */
int lpc_get_last_error_code(void);

/**
 * lpc_get_last_error_message:
 *
 * Returns: the message of the calling thread's last error, or "no error" (as
 * virGetLastErrorMessage()). Owned by the library, valid until the next lpc_ call in this thread.
 */
const char *lpc_get_last_error_message(void);

/**
 * lpc_reset_last_error:
 *
 * Clears the calling thread's last error.
 */
void lpc_reset_last_error(void);

/** The start of the message of a replay that diverged from its transcript. */
#define LPC_REPLAY_DIVERGED_PREFIX "internal error: replay diverged"

/* ------------------------------------------------------------------------------------------ */
/* Handles                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/**
 * lpc_domain:
 *
 * One domain: the guest of one QEMU process, reached through its QMP monitor (the role of
 * virDomainPtr). It is the source or the destination of a migration. The library connects to the
 * monitor only while a migration runs; it does not start or stop QEMU: where libvirt would stop
 * the source QEMU after a completed migration, the domain's state becomes
 * VIR_DOMAIN_SHUTOFF/VIR_DOMAIN_SHUTOFF_MIGRATED and the process is left to its owner.
 *
 * The library knows a domain's state from the migrations it ran: before the first one it is
 * VIR_DOMAIN_RUNNING/VIR_DOMAIN_RUNNING_UNPAUSED; a destination QEMU must run with
 * "-incoming defer".
 */
typedef struct lpc_domain lpc_domain;

/**
 * lpc_replay:
 *
 * A recorded QMP transcript (qemu-fixtures/ format) standing in for two QEMUs. Its source and
 * destination domains (lpc_replay_get_source(), lpc_replay_get_destination()) behave as live ones,
 * except that the QMP replies and events come from the recording, every command the library
 * sends is checked against it, and the API calls recorded in it (for example a StartPostCopy made
 * from another thread) are made again at their recorded point. Each recorded migrate call is
 * replayed once, in order (lpc_replay_get_migrate_params()); after a divergence, no more.
 */
typedef struct lpc_replay lpc_replay;

/**
 * lpc_domain_open_qmp:
 * @qmp: the QMP monitor: a unix socket path, or "tcp:HOST:PORT"
 * @flags: 0
 *
 * Opens a domain handle. Nothing is connected yet: a monitor that cannot be reached fails the
 * migration that needs it.
 *
 * Returns: a new handle to release with lpc_domain_free(), or NULL on error.
 */
lpc_domain *lpc_domain_open_qmp(const char *qmp, unsigned int flags);

/**
 * lpc_domain_free:
 * @dom: a handle, or NULL
 *
 * Releases a reference to a domain handle. A migration running on it keeps it alive until it
 * returns.
 */
void lpc_domain_free(lpc_domain *dom);

/**
 * lpc_replay_open:
 * @path: a transcript file (JSON lines)
 * @flags: 0
 *
 * Loads a transcript. Errors: VIR_ERR_OPERATION_FAILED if the file cannot be read,
 * VIR_ERR_INTERNAL_ERROR if it is not a transcript.
 *
 * Returns: a new handle to release with lpc_replay_free(), or NULL on error.
 */
lpc_replay *lpc_replay_open(const char *path, unsigned int flags);

/**
 * lpc_replay_free:
 * @replay: a handle, or NULL
 *
 * Releases a reference to a replay. Its domains stay usable.
 */
void lpc_replay_free(lpc_replay *replay);

/**
 * lpc_replay_get_source:
 * @replay: a replay
 *
 * Returns: a new reference to the replay's source domain (lpc_domain_free()), or NULL on error.
 */
lpc_domain *lpc_replay_get_source(lpc_replay *replay);

/**
 * lpc_replay_get_destination:
 * @replay: a replay
 *
 * Returns: a new reference to the replay's destination domain (lpc_domain_free()), or NULL.
 */
lpc_domain *lpc_replay_get_destination(lpc_replay *replay);

/**
 * lpc_replay_get_migrate_params:
 * @replay: a replay
 * @params: where to store the recorded migration parameters (VIR_MIGRATE_PARAM_URI, and
 *          VIR_MIGRATE_PARAM_BANDWIDTH / _BANDWIDTH_POSTCOPY, LPC_MIGRATE_PARAM_SWITCH_POLICY /
 *          _RTT when recorded)
 * @nparams: where to store their count
 * @flags: where to store the recorded migration flags (virDomainMigrateFlags)
 *
 * The arguments the next recorded migrate call was made with, for lpc_domain_migrate(). A
 * transcript may record several calls (a failed post-copy, then a VIR_MIGRATE_POSTCOPY_RESUME):
 * each lpc_domain_migrate() on the replay's domains replays the next one. The array is allocated
 * as lpc_domain_get_job_stats() allocates its own; release it with lpc_typed_params_free().
 *
 * Returns: 1 when the parameters of the next call were stored, 0 when every recorded call has
 * been made (outputs untouched), -1 on error.
 */
int lpc_replay_get_migrate_params(lpc_replay *replay,
                                  virTypedParameterPtr *params,
                                  int *nparams,
                                  unsigned int *flags);

/* ------------------------------------------------------------------------------------------ */
/* Migration                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/**
 * lpc_domain_migrate:
 * @src: the source domain
 * @dst: the destination domain (its QEMU runs with -incoming defer)
 * @params: migration parameters: VIR_MIGRATE_PARAM_URI (string, required: where the destination
 *          QEMU listens, "tcp:HOST:PORT" or "unix:PATH"), VIR_MIGRATE_PARAM_BANDWIDTH and
 *          VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY (ullong, MiB/s), and our own
 *          LPC_MIGRATE_PARAM_SWITCH_POLICY (string) and LPC_MIGRATE_PARAM_SWITCH_POLICY_RTT
 *          (ullong); NULL if @nparams is 0
 * @nparams: number of @params
 * @flags: virDomainMigrateFlags: VIR_MIGRATE_LIVE, VIR_MIGRATE_POSTCOPY,
 *         VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, VIR_MIGRATE_POSTCOPY_RESUME, ...
 *
 * Migrates @src to @dst as virDomainMigrate3() does with libvirt's QEMU driver (Begin, Prepare,
 * Perform, Finish, Confirm), and returns when the migration completed or failed. Other threads may
 * call lpc_domain_migrate_start_post_copy(), lpc_domain_abort_job_flags() or
 * lpc_domain_get_job_stats() meanwhile; events go to the callbacks registered on @src and @dst.
 * @src and @dst are two live domains, or the source and the destination of one replay.
 *
 * Errors are libvirt's: flag checks of the public API and of the driver (VIR_ERR_INVALID_ARG
 * "unsupported flags (0x...) in function qemuDomainMigrateBegin3Params",
 * VIR_ERR_ARGUMENT_UNSUPPORTED "post-copy migration is not supported with non-live or paused
 * migration", ...), out-of-scope flags (TLS, tunnelled, storage, persistence, offline:
 * VIR_ERR_ARGUMENT_UNSUPPORTED), parameters (VIR_ERR_ARGUMENT_UNSUPPORTED "parameter '%s' not
 * supported", VIR_ERR_INVALID_ARG for a wrong type or a duplicate), QEMU's refusals
 * (VIR_ERR_INTERNAL_ERROR "unable to execute QEMU command ..."), a failed or cancelled job
 * (VIR_ERR_OPERATION_FAILED, VIR_ERR_OPERATION_ABORTED). With live domains the flag checks run
 * before any monitor is contacted; in a replay they run where the recording has them. A domain
 * already migrating fails with VIR_ERR_OPERATION_TIMEOUT (libvirt's "cannot acquire state change
 * lock"), a domain shut off by an earlier migration with VIR_ERR_OPERATION_INVALID "domain is not
 * running".
 *
 * Returns: 0 when the migration completed, -1 otherwise.
 */
int lpc_domain_migrate(lpc_domain *src,
                       lpc_domain *dst,
                       virTypedParameterPtr params,
                       int nparams,
                       unsigned int flags);

/**
 * lpc_domain_migrate_auto_recover:
 * @src, @dst, @params, @nparams, @flags: as lpc_domain_migrate()
 * @deadline_ms: how long after the failure recovery attempts may start, in milliseconds (> 0)
 *
 * lpc_domain_migrate() with the opt-in automatic recovery policy, which libvirt and the management
 * layers we know of lack: when the migration fails in post-copy (the source left
 * VIR_DOMAIN_PAUSED/VIR_DOMAIN_PAUSED_POSTCOPY_FAILED, for example after the link was cut), the
 * library waits (0.5 s, doubling up to 5 s) and calls lpc_domain_migrate() again with
 * VIR_MIGRATE_POSTCOPY_RESUME added (and VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY removed), until a
 * call succeeds or the next attempt would start later than @deadline_ms after the failure. Each
 * attempt is an ordinary call: its errors, states and events are those of lpc_domain_migrate().
 * Live domains only.
 *
 * Returns: 0 once a call completed the migration, -1 with the last call's error otherwise.
 */
int lpc_domain_migrate_auto_recover(lpc_domain *src,
                                    lpc_domain *dst,
                                    virTypedParameterPtr params,
                                    int nparams,
                                    unsigned int flags,
                                    unsigned int deadline_ms);

/**
 * lpc_domain_migrate_start_post_copy:
 * @dom: the source domain of a running migration
 * @flags: 0
 *
 * Switches a running VIR_MIGRATE_POSTCOPY migration to post-copy, with the contract and errors of
 * virDomainMigrateStartPostCopy(): VIR_ERR_INVALID_ARG "unsupported flags (0x%x) in function
 * qemuDomainMigrateStartPostCopy"; VIR_ERR_OPERATION_INVALID "domain is not running", "post-copy
 * can only be started while outgoing migration is in progress", "switching to post-copy requires
 * migration to be started with VIR_MIGRATE_POSTCOPY flag"; QEMU's refusal as
 * VIR_ERR_INTERNAL_ERROR "unable to execute QEMU command 'migrate-start-postcopy': ...".
 *
 * On the destination of a running migration libvirt waits 30 s for the job lock and then fails
 * with VIR_ERR_OPERATION_TIMEOUT "cannot acquire state change lock (held by
 * monitor=remoteDispatchDomainMigratePrepare3Params)"; this library returns that error at once.
 * During a replayed migration the recorded calls are the only ones: a call from the program fails
 * with VIR_ERR_OPERATION_UNSUPPORTED.
 *
 * Returns: 0 on success, -1 on error.
 */
int lpc_domain_migrate_start_post_copy(lpc_domain *dom, unsigned int flags);

/**
 * lpc_domain_abort_job_flags:
 * @dom: the source domain of a running migration
 * @flags: 0 or VIR_DOMAIN_ABORT_JOB_POSTCOPY
 *
 * As virDomainAbortJobFlags(): 0 cancels a migration still in pre-copy (lpc_domain_migrate then
 * fails with VIR_ERR_OPERATION_ABORTED); VIR_DOMAIN_ABORT_JOB_POSTCOPY pauses a migration in
 * post-copy (migrate-pause). Errors: VIR_ERR_INVALID_ARG for other flag bits;
 * VIR_ERR_OPERATION_INVALID "no job is active on the domain", "current job is not outgoing
 * migration in post-copy mode", "cannot abort migration in post-copy mode", "cannot abort
 * incoming migration; use virDomainDestroy instead" (on the destination), "domain is not running".
 *
 * Returns: 0 on success, -1 on error.
 */
int lpc_domain_abort_job_flags(lpc_domain *dom, unsigned int flags);

/**
 * lpc_domain_get_job_stats:
 * @dom: a domain
 * @type: where to store the job type (virDomainJobType)
 * @params: where to store the statistics, under libvirt's names (VIR_DOMAIN_JOB_TIME_ELAPSED,
 *          VIR_DOMAIN_JOB_MEMORY_ITERATION, VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS, ...)
 * @nparams: where to store their count
 * @flags: 0 (the running job) or VIR_DOMAIN_JOB_STATS_COMPLETED (the last completed migration)
 *
 * As virDomainGetJobStats() on the source. With no job (or no completed job), *type is
 * VIR_DOMAIN_JOB_NONE and no parameter is returned. On the destination of a running migration:
 * VIR_ERR_OPERATION_UNSUPPORTED "migration statistics are available only on the source host".
 * VIR_DOMAIN_JOB_OPERATION is an int parameter, all others are ullong.
 *
 * Memory: the array is allocated with malloc(3) and holds no strings; release it with
 * lpc_typed_params_free(*params, *nparams). libvirt's virTypedParamsFree() is compatible with it.
 * *params is NULL when *nparams is 0.
 *
 * Returns: 0 on success, -1 on error.
 */
int lpc_domain_get_job_stats(lpc_domain *dom,
                             int *type,
                             virTypedParameterPtr *params,
                             int *nparams,
                             unsigned int flags);

/**
 * lpc_typed_params_free:
 * @params: an array returned by this library, or NULL
 * @nparams: its count
 *
 * Releases a typed-parameter array this library allocated (and the strings it holds).
 */
void lpc_typed_params_free(virTypedParameterPtr params, int nparams);

/**
 * lpc_domain_get_state:
 * @dom: a domain
 * @state: where to store the state (virDomainState)
 * @reason: where to store the reason (virDomainRunningReason, virDomainPausedReason, ...), or NULL
 * @flags: 0
 *
 * As virDomainGetState(): during a migration the state follows the lifecycle events, afterwards
 * it is the driver's final one (source VIR_DOMAIN_SHUTOFF/VIR_DOMAIN_SHUTOFF_MIGRATED, destination
 * VIR_DOMAIN_RUNNING/VIR_DOMAIN_RUNNING_MIGRATED after a completed migration).
 *
 * Returns: 0 on success, -1 on error.
 */
int lpc_domain_get_state(lpc_domain *dom, int *state, int *reason, unsigned int flags);

/* ------------------------------------------------------------------------------------------ */
/* Events                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/**
 * lpc_event_generic_cb:
 *
 * The type under which every callback is registered (as virConnectDomainEventGenericCallback);
 * cast a callback with LPC_EVENT_CALLBACK(). It is called with the arguments of the type that
 * belongs to its event id:
 *  - VIR_DOMAIN_EVENT_ID_LIFECYCLE: lpc_event_lifecycle_cb, with virDomainEventType and its detail
 *    (VIR_DOMAIN_EVENT_SUSPENDED / VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY, ...);
 *  - VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION: lpc_event_migration_iteration_cb, with QEMU's pass
 *    number (1 during the first pass);
 *  - VIR_DOMAIN_EVENT_ID_JOB_COMPLETED: lpc_event_job_completed_cb, with the completed job's
 *    statistics (as lpc_domain_get_job_stats(VIR_DOMAIN_JOB_STATS_COMPLETED); owned by the
 *    library, valid during the call).
 */
typedef void (*lpc_event_generic_cb)(void);
typedef void (*lpc_event_lifecycle_cb)(lpc_domain *dom, int event, int detail, void *opaque);
typedef void (*lpc_event_migration_iteration_cb)(lpc_domain *dom, int iteration, void *opaque);
typedef void (*lpc_event_job_completed_cb)(lpc_domain *dom,
                                           virTypedParameterPtr params,
                                           int nparams,
                                           void *opaque);

/** Casts a typed event callback to lpc_event_generic_cb (as VIR_DOMAIN_EVENT_CALLBACK). */
#define LPC_EVENT_CALLBACK(cb) ((lpc_event_generic_cb)(cb))

/**
 * lpc_domain_event_register_any:
 * @dom: a domain
 * @eventID: VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION or
 *           VIR_DOMAIN_EVENT_ID_JOB_COMPLETED (others: VIR_ERR_INVALID_ARG)
 * @cb: the callback, cast with LPC_EVENT_CALLBACK()
 * @opaque: passed to @cb
 * @freecb: called with @opaque when the callback is deregistered or the domain released, or NULL
 *
 * As virConnectDomainEventRegisterAny() for one domain. Callbacks run on a thread of the library,
 * in the order the driver emits the events, and have all run when lpc_domain_migrate() returns.
 * A callback may call the other lpc_domain_* functions, except lpc_domain_migrate() and
 * lpc_domain_free() of a domain whose migration is running.
 *
 * Returns: a callback id (>= 0) for lpc_domain_event_deregister_any(), or -1 on error.
 */
int lpc_domain_event_register_any(lpc_domain *dom,
                                  int eventID,
                                  lpc_event_generic_cb cb,
                                  void *opaque,
                                  virFreeCallback freecb);

/**
 * lpc_domain_event_deregister_any:
 * @dom: the domain the callback was registered on
 * @callbackID: what lpc_domain_event_register_any() returned
 *
 * Returns: 0, or -1 (VIR_ERR_INVALID_ARG) if no such callback is registered.
 */
int lpc_domain_event_deregister_any(lpc_domain *dom, int callbackID);

#ifdef __cplusplus
}
#endif

#endif /* LIBVIRT_POSTCOPY_H */
