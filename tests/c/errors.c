/*
 * errors.c: every error path of the C API reachable without QEMU, and misuse.
 *
 *   errors FIXTURE NOT_A_TRANSCRIPT TRUNCATED_FIXTURE
 *
 * Each check prints "ok - ..." or "not ok - ..."; the exit status is the number of failures.
 * What the header documents as undefined (using a handle after freeing it) is not exercised.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt_postcopy.h>

static int failures;

static void
check(int cond, const char *what)
{
    printf("%s - %s\n", cond ? "ok" : "not ok", what);
    if (!cond)
        failures++;
}

/* The last call failed with this code and exactly this message, from the QEMU driver. */
static void
check_error(int rc, int code, const char *message, const char *what)
{
    virErrorPtr err = lpc_get_last_error();
    int good = rc == -1 && err && err->code == code && err->domain == VIR_FROM_QEMU &&
               err->level == VIR_ERR_ERROR && lpc_get_last_error_code() == code &&
               (!message || strcmp(err->message, message) == 0);
    if (!good)
        printf("# rc=%d code=%d (want %d) message=%s\n", rc, err ? err->code : 0, code,
               err ? err->message : "(none)");
    check(good, what);
}

static void
check_null(const void *p, int code, const char *what)
{
    check_error(p ? 0 : -1, code, NULL, what);
}

static int freed;

static void
count_free(void *opaque)
{
    (*(int *)opaque)++;
}

static void
lifecycle(lpc_domain *dom, int event, int detail, void *opaque)
{
    (void)dom; (void)event; (void)detail; (void)opaque;
}

static void *
other_thread(void *arg)
{
    int *result = arg;
    /* The main thread's error is not this thread's. */
    result[0] = lpc_get_last_error() == NULL && lpc_get_last_error_code() == VIR_ERR_OK &&
                strcmp(lpc_get_last_error_message(), "no error") == 0;
    lpc_domain_migrate_start_post_copy(NULL, 0);
    result[1] = lpc_get_last_error_code() == VIR_ERR_INVALID_ARG;
    return NULL;
}

static virTypedParameterPtr
params_of(const char *uri, int *n)
{
    virTypedParameterPtr p = calloc(2, sizeof(*p));
    *n = 0;
    if (!p)
        return NULL;
    if (uri) {
        strcpy(p[*n].field, VIR_MIGRATE_PARAM_URI);
        p[*n].type = VIR_TYPED_PARAM_STRING;
        p[*n].value.s = (char *)uri;
        (*n)++;
    }
    return p;
}

/* Migrates with p[0] and a second parameter of this name and type (a string or the int 10):
 * the call must fail with this error. */
static void
check_second_param(lpc_domain *src, lpc_domain *dst, virTypedParameterPtr p, const char *field,
                   int type, int code, const char *message, const char *what)
{
    strcpy(p[1].field, field);
    p[1].type = type;
    if (type == VIR_TYPED_PARAM_STRING)
        p[1].value.s = (char *)"tcp:127.0.0.1:2";
    else
        p[1].value.i = 10;
    check_error(lpc_domain_migrate(src, dst, p, 2, VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY),
                code, message, what);
}

int
main(int argc, char **argv)
{
    lpc_domain *d, *d2, *rs, *rd, *rs2;
    lpc_replay *r;
    virTypedParameterPtr p, stats = (virTypedParameterPtr)&freed, rp = NULL;
    int n, type = -7, nstats = -7, state = -7, reason = -7, rc, id, id2, nrp = 0, thread_result[2];
    unsigned int rflags = 0;
    pthread_t t;
    const unsigned int pc = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;

    if (argc != 4) {
        fprintf(stderr, "usage: %s FIXTURE NOT_A_TRANSCRIPT TRUNCATED_FIXTURE\n", argv[0]);
        return 2;
    }

    /* Handles */
    check_null(lpc_domain_open_qmp(NULL, 0), VIR_ERR_INVALID_ARG, "open_qmp(NULL)");
    check_error(lpc_domain_open_qmp("/nonexistent", 1) ? 0 : -1, VIR_ERR_INVALID_ARG,
                "invalid argument: unsupported flags (0x1) in function lpc_domain_open_qmp",
                "open_qmp with a flag");
    d = lpc_domain_open_qmp("/nonexistent/qmp.sock", 0);
    d2 = lpc_domain_open_qmp("tcp:127.0.0.1:1", 0);
    check(d && d2 && lpc_get_last_error() == NULL &&
          strcmp(lpc_get_last_error_message(), "no error") == 0, "open_qmp, no error after");
    lpc_domain_free(NULL);
    lpc_replay_free(NULL);
    lpc_typed_params_free(NULL, 0);
    lpc_typed_params_free(NULL, 5);
    check(1, "_free(NULL) of every handle type");
    /* Every call resets the last error first (the header's conventions), a _free too. */
    lpc_domain_migrate_start_post_copy(NULL, 0);
    lpc_domain_free(NULL);
    check(lpc_get_last_error() == NULL, "domain_free resets the last error");
    lpc_domain_migrate_start_post_copy(NULL, 0);
    lpc_replay_free(NULL);
    check(lpc_get_last_error() == NULL, "replay_free resets the last error");
    lpc_domain_migrate_start_post_copy(NULL, 0);
    lpc_typed_params_free(NULL, 0);
    check(lpc_get_last_error() == NULL && lpc_get_last_error_code() == VIR_ERR_OK,
          "typed_params_free resets the last error");

    /* virDomainMigrateStartPostCopy without a job (docs/driver-behaviour.md §6 rows 3 and 8) */
    check_error(lpc_domain_migrate_start_post_copy(NULL, 0), VIR_ERR_INVALID_ARG,
                "invalid argument: dom in lpc_domain_migrate_start_post_copy must not be NULL",
                "start_post_copy(NULL)");
    check_error(lpc_domain_migrate_start_post_copy(d, 1), VIR_ERR_INVALID_ARG,
                "invalid argument: unsupported flags (0x1) in function qemuDomainMigrateStartPostCopy",
                "start_post_copy flags != 0");
    check_error(lpc_domain_migrate_start_post_copy(d, 0), VIR_ERR_OPERATION_INVALID,
                "Requested operation is not valid: post-copy can only be started while outgoing "
                "migration is in progress",
                "start_post_copy with no migration");

    /* virDomainAbortJobFlags without a job */
    check_error(lpc_domain_abort_job_flags(NULL, 0), VIR_ERR_INVALID_ARG, NULL, "abort(NULL)");
    check_error(lpc_domain_abort_job_flags(d, 0), VIR_ERR_OPERATION_INVALID,
                "Requested operation is not valid: no job is active on the domain",
                "abort with no job");
    check_error(lpc_domain_abort_job_flags(d, VIR_DOMAIN_ABORT_JOB_POSTCOPY),
                VIR_ERR_OPERATION_INVALID,
                "Requested operation is not valid: current job is not outgoing migration in "
                "post-copy mode",
                "abort(POSTCOPY) with no job");
    check_error(lpc_domain_abort_job_flags(d, 0x8), VIR_ERR_INVALID_ARG,
                "invalid argument: unsupported flags (0x8) in function qemuDomainAbortJobFlags",
                "abort with an unknown flag");

    /* virDomainGetJobStats, virDomainGetState */
    check_error(lpc_domain_get_job_stats(d, NULL, &stats, &nstats, 0), VIR_ERR_INVALID_ARG,
                "invalid argument: type in lpc_domain_get_job_stats must not be NULL",
                "job_stats(type NULL)");
    check_error(lpc_domain_get_job_stats(d, &type, &stats, &nstats, 0x4), VIR_ERR_INVALID_ARG,
                "invalid argument: unsupported flags (0x4) in function qemuDomainGetJobStats",
                "job_stats unknown flag");
    check(type == -7 && nstats == -7 && stats == (virTypedParameterPtr)&freed,
          "outputs untouched on error");
    rc = lpc_domain_get_job_stats(d, &type, &stats, &nstats, 0);
    check(rc == 0 && type == VIR_DOMAIN_JOB_NONE && nstats == 0 && stats == NULL,
          "job_stats with no job: VIR_DOMAIN_JOB_NONE, nothing");
    rc = lpc_domain_get_job_stats(d, &type, &stats, &nstats, VIR_DOMAIN_JOB_STATS_COMPLETED);
    check(rc == 0 && type == VIR_DOMAIN_JOB_NONE && nstats == 0, "completed stats before any");
    check_error(lpc_domain_get_state(d, NULL, NULL, 0), VIR_ERR_INVALID_ARG, NULL,
                "get_state(state NULL)");
    check_error(lpc_domain_get_state(d, &state, &reason, 1), VIR_ERR_INVALID_ARG,
                "invalid argument: unsupported flags (0x1) in function qemuDomainGetState",
                "get_state flags");
    rc = lpc_domain_get_state(d, &state, NULL, 0);
    check(rc == 0 && state == VIR_DOMAIN_RUNNING, "get_state, reason optional");

    /* virDomainMigrate3: flags (public API, then the driver's Begin: docs/driver-behaviour.md §1) */
    p = params_of("tcp:127.0.0.1:1", &n);
    check_error(lpc_domain_migrate(d, d2, p, n,
                                   VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY),
                VIR_ERR_INVALID_ARG,
                "invalid argument: Flag 'VIR_MIGRATE_POSTCOPY' is required by flag "
                "'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY'",
                "AFTER_PRECOPY without POSTCOPY");
    check_error(lpc_domain_migrate(d, d2, p, n, pc | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY |
                                   VIR_MIGRATE_POSTCOPY_RESUME),
                VIR_ERR_INVALID_ARG,
                "invalid argument: Flags 'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY' and "
                "'VIR_MIGRATE_POSTCOPY_RESUME' are mutually exclusive",
                "AFTER_PRECOPY with POSTCOPY_RESUME");
    check_error(lpc_domain_migrate(d, d2, p, n, pc | (1U << 30)), VIR_ERR_INVALID_ARG,
                "invalid argument: unsupported flags (0x40000000) in function "
                "qemuDomainMigrateBegin3Params",
                "unknown flag bit");
    check_error(lpc_domain_migrate(d, d2, p, n, VIR_MIGRATE_POSTCOPY),
                VIR_ERR_ARGUMENT_UNSUPPORTED,
                "argument unsupported: post-copy migration is not supported with non-live or "
                "paused migration",
                "POSTCOPY without LIVE");
    check_error(lpc_domain_migrate(d, d2, p, n, pc | VIR_MIGRATE_PAUSED),
                VIR_ERR_ARGUMENT_UNSUPPORTED,
                "argument unsupported: post-copy migration is not supported with non-live or "
                "paused migration",
                "POSTCOPY with PAUSED");
    check_error(lpc_domain_migrate_auto_recover(d, d2, p, n, pc, 0), VIR_ERR_INVALID_ARG,
                "invalid argument: deadline_ms in lpc_domain_migrate_auto_recover must be greater "
                "than zero",
                "auto_recover with no deadline");
    check_error(lpc_domain_migrate_auto_recover(NULL, d2, p, n, pc, 1000), VIR_ERR_INVALID_ARG,
                "invalid argument: src in lpc_domain_migrate_auto_recover must not be NULL",
                "auto_recover(src NULL)");
    check_error(lpc_domain_migrate_auto_recover(d, d2, NULL, 1, pc, 1000), VIR_ERR_INVALID_ARG,
                "invalid argument: params in lpc_domain_migrate_auto_recover must not be NULL",
                "auto_recover names itself in a parameter error");
    check_error(lpc_domain_migrate_auto_recover(d, d2, p, -1, pc, 1000), VIR_ERR_INVALID_ARG,
                "invalid argument: nparams in lpc_domain_migrate_auto_recover must be greater "
                "than or equal to zero",
                "auto_recover names itself in a count error");
    check_error(lpc_domain_migrate_auto_recover(d, d2, NULL, 0, pc, 1000), VIR_ERR_INVALID_ARG,
                "invalid argument: lpc_domain_migrate_auto_recover requires the "
                "VIR_MIGRATE_PARAM_URI parameter (where the destination QEMU listens)",
                "auto_recover names itself when the URI is missing");
    check_error(lpc_domain_migrate(d, d2, NULL, 1, pc), VIR_ERR_INVALID_ARG,
                "invalid argument: params in lpc_domain_migrate must not be NULL",
                "migrate names itself in a parameter error");
    check_error(lpc_domain_migrate_auto_recover(d, d2, p, n,
                                                VIR_MIGRATE_LIVE |
                                                VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, 1000),
                VIR_ERR_INVALID_ARG,
                "invalid argument: Flag 'VIR_MIGRATE_POSTCOPY' is required by flag "
                "'VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY'",
                "auto_recover checks flags as migrate does");
    check_error(lpc_domain_migrate(d, d2, p, n, pc | VIR_MIGRATE_TUNNELLED),
                VIR_ERR_ARGUMENT_UNSUPPORTED,
                "argument unsupported: post-copy is not supported with tunnelled migration",
                "POSTCOPY with TUNNELLED");
    check_error(lpc_domain_migrate(d, d2, p, n, VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY_RESUME),
                VIR_ERR_ARGUMENT_UNSUPPORTED,
                "argument unsupported: resuming failed post-copy migration requires post-copy "
                "to be enabled",
                "POSTCOPY_RESUME without POSTCOPY");
    check_error(lpc_domain_migrate(d, d2, p, n, pc | VIR_MIGRATE_TLS),
                VIR_ERR_ARGUMENT_UNSUPPORTED, NULL, "TLS is out of the shim's scope");

    /* virDomainMigrate3: handles and typed parameters */
    check_error(lpc_domain_migrate(NULL, d2, p, n, pc), VIR_ERR_INVALID_ARG,
                "invalid argument: src in lpc_domain_migrate must not be NULL", "migrate(NULL)");
    check_error(lpc_domain_migrate(d, NULL, p, n, pc), VIR_ERR_INVALID_ARG, NULL,
                "migrate(dst NULL)");
    check_error(lpc_domain_migrate(d, d, p, n, pc), VIR_ERR_INVALID_ARG, NULL,
                "migrate to itself");
    check_error(lpc_domain_migrate(d, d2, NULL, 1, pc), VIR_ERR_INVALID_ARG, NULL,
                "params NULL with nparams 1");
    check_error(lpc_domain_migrate(d, d2, p, -1, pc), VIR_ERR_INVALID_ARG, NULL,
                "negative nparams");
    check_error(lpc_domain_migrate(d, d2, NULL, 0, pc), VIR_ERR_INVALID_ARG, NULL,
                "no VIR_MIGRATE_PARAM_URI");
    check_second_param(d, d2, p, VIR_MIGRATE_PARAM_URI, VIR_TYPED_PARAM_STRING,
                       VIR_ERR_INVALID_ARG,
                       "invalid argument: parameter 'migrate_uri' occurs multiple times",
                       "duplicate parameter");
    check_second_param(d, d2, p, VIR_MIGRATE_PARAM_BANDWIDTH, VIR_TYPED_PARAM_INT,
                       VIR_ERR_INVALID_ARG,
                       "invalid argument: invalid type 'int' for parameter 'bandwidth', "
                       "expected 'ullong'",
                       "wrongly typed parameter");
    check_second_param(d, d2, p, VIR_MIGRATE_PARAM_DEST_NAME, VIR_TYPED_PARAM_STRING,
                       VIR_ERR_ARGUMENT_UNSUPPORTED,
                       "argument unsupported: parameter 'destination_name' not supported",
                       "unsupported parameter");
    free(p);

    /* Events */
    check_error(lpc_domain_event_register_any(d, VIR_DOMAIN_EVENT_ID_REBOOT,
                                              LPC_EVENT_CALLBACK(lifecycle), &freed, count_free),
                VIR_ERR_INVALID_ARG, NULL, "register an unsupported event id");
    check(freed == 0, "a failed registration keeps the opaque (no free callback)");
    check_error(lpc_domain_event_register_any(d, VIR_DOMAIN_EVENT_ID_LIFECYCLE, NULL, NULL, NULL),
                VIR_ERR_INVALID_ARG, NULL, "register a NULL callback");
    id = lpc_domain_event_register_any(d, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                       LPC_EVENT_CALLBACK(lifecycle), &freed, count_free);
    id2 = lpc_domain_event_register_any(d, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                        LPC_EVENT_CALLBACK(lifecycle), &freed, count_free);
    check(id >= 0 && id2 >= 0 && id != id2, "register two callbacks");
    check(lpc_domain_event_deregister_any(d, id) == 0 && freed == 1,
          "deregister runs the free callback");
    check_error(lpc_domain_event_deregister_any(d, id), VIR_ERR_INVALID_ARG, NULL,
                "deregister twice");
    check(freed == 1, "... and frees nothing the second time");

    /* Per-thread last error */
    lpc_domain_migrate_start_post_copy(d, 0);
    thread_result[0] = thread_result[1] = 0;
    if (pthread_create(&t, NULL, other_thread, thread_result) == 0)
        pthread_join(t, NULL);
    check(thread_result[0] && thread_result[1], "another thread has its own last error");
    check(lpc_get_last_error_code() == VIR_ERR_OPERATION_INVALID, "... and leaves ours alone");
    lpc_reset_last_error();
    check(lpc_get_last_error() == NULL, "reset_last_error");

    /* Replays */
    check_null(lpc_replay_open(NULL, 0), VIR_ERR_INVALID_ARG, "replay_open(NULL)");
    check_null(lpc_replay_open("/nonexistent.jsonl", 0), VIR_ERR_OPERATION_FAILED,
               "replay_open of a missing file");
    check_null(lpc_replay_open(argv[2], 0), VIR_ERR_INTERNAL_ERROR,
               "replay_open of something else");
    check_null(lpc_replay_get_source(NULL), VIR_ERR_INVALID_ARG, "replay_get_source(NULL)");
    r = lpc_replay_open(argv[1], 0);
    check(r != NULL, "replay_open");
    check_error(lpc_replay_get_migrate_params(r, &rp, NULL, &rflags), VIR_ERR_INVALID_ARG, NULL,
                "replay_get_migrate_params(nparams NULL)");
    check(lpc_replay_get_migrate_params(r, &rp, &nrp, &rflags) == 1 && nrp >= 1 &&
          strcmp(rp[0].field, VIR_MIGRATE_PARAM_URI) == 0 &&
          rp[0].type == VIR_TYPED_PARAM_STRING, "replay_get_migrate_params");
    rs = lpc_replay_get_source(r);
    rs2 = lpc_replay_get_source(r);
    rd = lpc_replay_get_destination(r);
    check(rs && rs2 && rd, "replay domains");
    check_error(lpc_domain_migrate(rs, d2, rp, nrp, rflags), VIR_ERR_INVALID_ARG, NULL,
                "a replay domain with a live one");
    check_error(lpc_domain_migrate(rd, rs, rp, nrp, rflags), VIR_ERR_INVALID_ARG, NULL,
                "a replay's domains the wrong way round");
    check_error(lpc_domain_migrate(rs, rd, rp, nrp, rflags ^ VIR_MIGRATE_AUTO_CONVERGE),
                VIR_ERR_INTERNAL_ERROR, NULL, "other flags than recorded");
    check(strncmp(lpc_get_last_error_message(), LPC_REPLAY_DIVERGED_PREFIX,
                  strlen(LPC_REPLAY_DIVERGED_PREFIX)) == 0,
          "... make the replay diverge, and say so");
    check_error(lpc_domain_migrate(rs, rd, rp, nrp, rflags), VIR_ERR_OPERATION_INVALID, NULL,
                "no more calls after a divergence");
    lpc_typed_params_free(rp, nrp);
    rp = NULL;
    nrp = 0;
    lpc_replay_free(r);
    check(lpc_domain_get_state(rs, &state, &reason, 0) == 0, "replay domains outlive their replay");

    /* A transcript's recorded call is replayed once. */
    r = lpc_replay_open(argv[1], 0);
    lpc_domain_free(rs2);
    rs2 = lpc_replay_get_source(r);
    lpc_domain_free(rd);
    rd = lpc_replay_get_destination(r);
    check(lpc_replay_get_migrate_params(r, &rp, &nrp, &rflags) == 1 &&
          lpc_domain_migrate(rs2, rd, rp, nrp, rflags) == 0, "replay the recorded call");
    lpc_typed_params_free(rp, nrp);
    rp = (virTypedParameterPtr)&freed;
    check(lpc_replay_get_migrate_params(r, &rp, &nrp, &rflags) == 0 &&
          rp == (virTypedParameterPtr)&freed, "then no call is left");
    lpc_replay_free(r);
    lpc_domain_free(rs);
    lpc_domain_free(rs2);
    lpc_domain_free(rd);

    /* A recording that ends before the migration does is a replay that did not match. */
    r = lpc_replay_open(argv[3], 0);
    rs2 = lpc_replay_get_source(r);
    rd = lpc_replay_get_destination(r);
    check(lpc_replay_get_migrate_params(r, &rp, &nrp, &rflags) == 1, "truncated: params");
    check_error(lpc_domain_migrate(rs2, rd, rp, nrp, rflags), VIR_ERR_INTERNAL_ERROR, NULL,
                "truncated: migrate fails");
    check(strncmp(lpc_get_last_error_message(), LPC_REPLAY_DIVERGED_PREFIX,
                  strlen(LPC_REPLAY_DIVERGED_PREFIX)) == 0, "... as a replay that diverged");
    lpc_typed_params_free(rp, nrp);
    check(lpc_replay_get_migrate_params(r, &rp, &nrp, &rflags) == 0,
          "... after which no call is left");
    lpc_replay_free(r);
    lpc_domain_free(rs2);
    lpc_domain_free(rd);

    lpc_domain_free(d);
    lpc_domain_free(d2);
    check(freed == 2, "releasing a domain releases its callbacks");

    printf("%d failure(s)\n", failures);
    return failures;
}
