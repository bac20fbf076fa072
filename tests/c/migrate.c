/*
 * migrate.c: a post-copy migration through the C API, as a libvirt user writes it.
 *
 *   migrate replay FILE
 *       replays a recorded transcript: the recorded flags and parameters, events printed;
 *       exits 0 when the replay matched (whatever the migration's own result), 1 when it diverged
 *   migrate live SRC_QMP DST_QMP URI
 *       VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY | VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY, then the
 *       completed job statistics and both domains' states
 *   migrate live-thread SRC_QMP DST_QMP URI
 *       VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY; a second thread waits for the first migration
 *       iteration, then calls lpc_domain_migrate_start_post_copy() while migrate blocks
 *   migrate live-abort SRC_QMP DST_QMP URI
 *       VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY at 1 MiB/s; a second thread aborts the job in
 *       pre-copy (after checking VIR_DOMAIN_ABORT_JOB_POSTCOPY and the destination refuse to);
 *       migrate fails with VIR_ERR_OPERATION_ABORTED (or QEMU's own failure when the cancel
 *       meets the stream's start) and the source runs on
 *   migrate live-callback SRC_QMP DST_QMP URI
 *       VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY; the migration-iteration callback itself calls
 *       lpc_domain_migrate_start_post_copy() at iteration 2, as virsh does
 *
 * Output: one line per event ("src event lifecycle 3 7"), then "result: ..." and "state: ...".
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt_postcopy.h>

struct side {
    const char *name;
    int lifecycle[32][2];
    int nlifecycle;
    int last_iteration;
    int job_completed_nparams;
    int completed;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static lpc_domain *switch_in_callback; /* live-callback: the source domain */
static int callback_switch_rc = -2;
static pthread_cond_t iterated = PTHREAD_COND_INITIALIZER;
static int freed_opaques;

static void
on_lifecycle(lpc_domain *dom, int event, int detail, void *opaque)
{
    struct side *s = opaque;
    (void)dom;
    pthread_mutex_lock(&lock);
    printf("%s event lifecycle %d %d\n", s->name, event, detail);
    if (s->nlifecycle < 32) {
        s->lifecycle[s->nlifecycle][0] = event;
        s->lifecycle[s->nlifecycle][1] = detail;
        s->nlifecycle++;
    }
    pthread_mutex_unlock(&lock);
}

static void
on_iteration(lpc_domain *dom, int iteration, void *opaque)
{
    struct side *s = opaque;
    (void)dom;
    pthread_mutex_lock(&lock);
    printf("%s event migration-iteration %d\n", s->name, iteration);
    s->last_iteration = iteration;
    pthread_cond_broadcast(&iterated);
    pthread_mutex_unlock(&lock);
    if (switch_in_callback && iteration == 2) {
        /* The callback gets the handle the caller registered on. */
        callback_switch_rc = dom == switch_in_callback
            ? lpc_domain_migrate_start_post_copy(dom, 0) : -3;
        printf("callback: start_post_copy=%d\n", callback_switch_rc);
    }
}

static void
on_job_completed(lpc_domain *dom, virTypedParameterPtr params, int nparams, void *opaque)
{
    struct side *s = opaque;
    unsigned long long iteration = 0;
    (void)dom;
    pthread_mutex_lock(&lock);
    if (virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_MEMORY_ITERATION, &iteration) < 0)
        iteration = 0;
    printf("%s event job-completed nparams=%d memory_iteration>0=%d\n",
           s->name, nparams, iteration > 0);
    s->completed = 1;
    s->job_completed_nparams = nparams;
    pthread_mutex_unlock(&lock);
}

static void
opaque_freed(void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&lock);
    freed_opaques++;
    pthread_mutex_unlock(&lock);
}

static int
watch(lpc_domain *dom, struct side *s)
{
    if (lpc_domain_event_register_any(dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                      LPC_EVENT_CALLBACK(on_lifecycle), s, opaque_freed) < 0 ||
        lpc_domain_event_register_any(dom, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                      LPC_EVENT_CALLBACK(on_iteration), s, opaque_freed) < 0 ||
        lpc_domain_event_register_any(dom, VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                      LPC_EVENT_CALLBACK(on_job_completed), s, opaque_freed) < 0) {
        fprintf(stderr, "register: %s\n", lpc_get_last_error_message());
        return -1;
    }
    return 0;
}

static int
print_state(lpc_domain *dom, const char *name, int *state, int *reason)
{
    if (lpc_domain_get_state(dom, state, reason, 0) < 0) {
        fprintf(stderr, "get_state: %s\n", lpc_get_last_error_message());
        return -1;
    }
    printf("state: %s %d %d\n", name, *state, *reason);
    return 0;
}

struct switcher {
    lpc_domain *src;
    lpc_domain *dst;
    struct side *src_side;
    int rc;
    int stats_type;
    int dst_code;
    int dst_stats_code;
    int again_code;
    virTypedParameterPtr params;
    int nparams;
};

/* The second thread: once the first pass runs, look at the job, then switch to post-copy. */
static void *
switch_to_postcopy(void *arg)
{
    struct switcher *w = arg;
    virTypedParameterPtr params = NULL;
    int nparams = 0;
    struct timespec second = { 1, 0 };

    pthread_mutex_lock(&lock);
    while (w->src_side->last_iteration < 1)
        pthread_cond_wait(&iterated, &lock);
    pthread_mutex_unlock(&lock);

    if (lpc_domain_get_job_stats(w->src, &w->stats_type, &params, &nparams, 0) == 0)
        lpc_typed_params_free(params, nparams);
    /* The destination's job lock is held by the incoming migration. */
    if (lpc_domain_migrate_start_post_copy(w->dst, 0) < 0)
        w->dst_code = lpc_get_last_error_code();
    if (lpc_domain_get_job_stats(w->dst, &w->stats_type, &params, &nparams, 0) < 0)
        w->dst_stats_code = lpc_get_last_error_code();
    /* One migration at a time: the job lock is taken. */
    if (lpc_domain_migrate(w->src, w->dst, w->params, w->nparams,
                           VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY) < 0)
        w->again_code = lpc_get_last_error_code();

    nanosleep(&second, NULL);
    w->rc = lpc_domain_migrate_start_post_copy(w->src, 0);
    if (w->rc < 0)
        fprintf(stderr, "start_post_copy: %s\n", lpc_get_last_error_message());
    return NULL;
}

struct aborter {
    lpc_domain *src;
    lpc_domain *dst;
    struct side *src_side;
    int postcopy_code;
    int dst_code;
    int rc;
};

static void *
abort_job(void *arg)
{
    struct aborter *a = arg;

    pthread_mutex_lock(&lock);
    while (a->src_side->last_iteration < 1)
        pthread_cond_wait(&iterated, &lock);
    pthread_mutex_unlock(&lock);
    /* Still in pre-copy: pausing a post-copy migration does not apply. */
    if (lpc_domain_abort_job_flags(a->src, VIR_DOMAIN_ABORT_JOB_POSTCOPY) < 0)
        a->postcopy_code = lpc_get_last_error_code();
    if (lpc_domain_abort_job_flags(a->dst, 0) < 0)
        a->dst_code = lpc_get_last_error_code();
    a->rc = lpc_domain_abort_job_flags(a->src, 0);
    if (a->rc < 0)
        fprintf(stderr, "abort: %s\n", lpc_get_last_error_message());
    return NULL;
}

#define QEMU_FAILED_PREFIX "operation failed: job 'migration out' failed: "

static int
live_abort(const char *src_qmp, const char *dst_qmp, const char *uri)
{
    lpc_domain *src = lpc_domain_open_qmp(src_qmp, 0);
    lpc_domain *dst = lpc_domain_open_qmp(dst_qmp, 0);
    virTypedParameterPtr params = NULL;
    int nparams = 0, maxparams = 0, ret = 1, rc, code, state, reason, aborted;
    struct side s = { "src", {{0}}, 0, 0, 0, 0 }, d = { "dst", {{0}}, 0, 0, 0, 0 };
    struct aborter a = { NULL, NULL, NULL, 0, 0, -1 };
    char msg[512];
    pthread_t thread;

    if (!src || !dst || watch(src, &s) < 0 || watch(dst, &d) < 0)
        goto cleanup;
    if (virTypedParamsAddString(&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_URI, uri) < 0 ||
        virTypedParamsAddULLong(&params, &nparams, &maxparams,
                                VIR_MIGRATE_PARAM_BANDWIDTH, 1) < 0)
        goto cleanup;
    a.src = src;
    a.dst = dst;
    a.src_side = &s;
    if (pthread_create(&thread, NULL, abort_job, &a) != 0)
        goto cleanup;
    rc = lpc_domain_migrate(src, dst, params, nparams, VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY);
    code = lpc_get_last_error_code();
    snprintf(msg, sizeof(msg), "%s", lpc_get_last_error_message());
    printf("result: %d %s\n", rc, msg);
    pthread_mutex_lock(&lock);
    s.last_iteration = s.last_iteration < 1 ? 1 : s.last_iteration; /* never wait forever */
    pthread_cond_broadcast(&iterated);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    printf("abort: postcopy-flag=%d dst=%d rc=%d\n", a.postcopy_code, a.dst_code, a.rc);
    /* The call follows QEMU's final status, as libvirt does: `cancelled`, or QEMU's own `failed`
     * when the cancel lands at the very start of the stream (about one run in six on QEMU
     * 10.0.2: "Channel error: Input/output error"; tests/live_faults.rs says more). */
    aborted = code == VIR_ERR_OPERATION_ABORTED ||
              (code == VIR_ERR_OPERATION_FAILED &&
               strncmp(msg, QEMU_FAILED_PREFIX, strlen(QEMU_FAILED_PREFIX)) == 0);
    if (rc != -1 || !aborted || a.rc != 0 ||
        a.postcopy_code != VIR_ERR_OPERATION_INVALID || a.dst_code != VIR_ERR_OPERATION_INVALID)
        goto cleanup;
    if (print_state(src, "src", &state, &reason) < 0 || state != VIR_DOMAIN_RUNNING)
        goto cleanup;
    ret = 0;

 cleanup:
    virTypedParamsFree(params, nparams);
    lpc_domain_free(src);
    lpc_domain_free(dst);
    return ret;
}

static int
replay(const char *file)
{
    lpc_replay *r = lpc_replay_open(file, 0);
    lpc_domain *src = NULL, *dst = NULL;
    virTypedParameterPtr params = NULL;
    int nparams = 0, rc, ret = 1, state, reason;
    unsigned int flags = 0;
    struct side s = { "src", {{0}}, 0, 0, 0, 0 }, d = { "dst", {{0}}, 0, 0, 0, 0 };

    if (!r) {
        fprintf(stderr, "%s\n", lpc_get_last_error_message());
        return 1;
    }
    src = lpc_replay_get_source(r);
    dst = lpc_replay_get_destination(r);
    if (!src || !dst || watch(src, &s) < 0 || watch(dst, &d) < 0)
        goto cleanup;

    /* Every migrate call the transcript recorded, in turn. */
    while ((rc = lpc_replay_get_migrate_params(r, &params, &nparams, &flags)) == 1) {
        rc = lpc_domain_migrate(src, dst, params, nparams, flags);
        if (rc == 0) {
            printf("result: completed\n");
        } else {
            virErrorPtr err = lpc_get_last_error();
            if (!err || err->domain != VIR_FROM_QEMU || err->level != VIR_ERR_ERROR)
                goto cleanup;
            if (strncmp(err->message, LPC_REPLAY_DIVERGED_PREFIX,
                        strlen(LPC_REPLAY_DIVERGED_PREFIX)) == 0) {
                printf("diverged: %s\n", err->message);
                goto cleanup;
            }
            printf("result: error %d %s\n", err->code, err->message);
        }
        /* After the error is read: every call, this one too, resets the last error. */
        lpc_typed_params_free(params, nparams);
        params = NULL;
        nparams = 0;
        if (print_state(src, "src", &state, &reason) < 0 ||
            print_state(dst, "dst", &state, &reason) < 0)
            goto cleanup;
    }
    if (rc < 0)
        goto cleanup;
    lpc_replay_free(r); /* the domains keep what they need */
    r = NULL;
    ret = 0;

 cleanup:
    lpc_typed_params_free(params, nparams);
    lpc_replay_free(r);
    lpc_domain_free(src);
    lpc_domain_free(dst);
    if (ret == 0 && freed_opaques != 6) {
        fprintf(stderr, "expected 6 opaque frees, got %d\n", freed_opaques);
        ret = 1;
    }
    return ret;
}

static int
live(const char *src_qmp, const char *dst_qmp, const char *uri, int from_thread, int from_callback)
{
    lpc_domain *src = lpc_domain_open_qmp(src_qmp, 0);
    lpc_domain *dst = lpc_domain_open_qmp(dst_qmp, 0);
    virTypedParameterPtr params = NULL, stats = NULL;
    int nparams = 0, maxparams = 0, nstats = 0, type = -1, ret = 1, state, reason, i;
    unsigned long long iteration = 0, requests = 0;
    unsigned int flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_POSTCOPY;
    struct side s = { "src", {{0}}, 0, 0, 0, 0 }, d = { "dst", {{0}}, 0, 0, 0, 0 };
    struct switcher w = { NULL, NULL, NULL, -1, -1, 0, 0, 0, NULL, 0 };
    pthread_t thread;
    int saw_suspended_postcopy = 0, saw_resumed_postcopy = 0;

    if (!from_thread && !from_callback)
        flags |= VIR_MIGRATE_POSTCOPY_AFTER_PRECOPY;
    if (from_callback)
        switch_in_callback = src;
    if (!src || !dst || watch(src, &s) < 0 || watch(dst, &d) < 0)
        goto cleanup;
    /* libvirt's own helpers build the parameters; the library reads them as libvirt does. */
    if (virTypedParamsAddString(&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_URI, uri) < 0 ||
        virTypedParamsAddULLong(&params, &nparams, &maxparams,
                                VIR_MIGRATE_PARAM_BANDWIDTH, 24) < 0)
        goto cleanup;

    if (from_thread) {
        w.src = src;
        w.dst = dst;
        w.src_side = &s;
        w.params = params;
        w.nparams = nparams;
        if (pthread_create(&thread, NULL, switch_to_postcopy, &w) != 0)
            goto cleanup;
    }
    if (lpc_domain_migrate(src, dst, params, nparams, flags) < 0) {
        fprintf(stderr, "migrate: %s\n", lpc_get_last_error_message());
        if (from_thread) {
            /* Unblock the thread if no iteration ever came. */
            pthread_mutex_lock(&lock);
            s.last_iteration = 1;
            pthread_cond_broadcast(&iterated);
            pthread_mutex_unlock(&lock);
            pthread_join(thread, NULL);
        }
        goto cleanup;
    }
    printf("result: completed\n");
    if (from_callback && callback_switch_rc != 0)
        goto cleanup;
    if (from_thread) {
        pthread_join(thread, NULL);
        printf("thread: start_post_copy=%d running-job-type=%d dst-start=%d dst-stats=%d "
               "migrate-again=%d\n",
               w.rc, w.stats_type, w.dst_code, w.dst_stats_code, w.again_code);
        if (w.rc != 0 || w.dst_code != VIR_ERR_OPERATION_TIMEOUT ||
            w.dst_stats_code != VIR_ERR_OPERATION_UNSUPPORTED ||
            w.again_code != VIR_ERR_OPERATION_TIMEOUT)
            goto cleanup;
    }

    if (lpc_domain_get_job_stats(src, &type, &stats, &nstats,
                                 VIR_DOMAIN_JOB_STATS_COMPLETED) < 0) {
        fprintf(stderr, "get_job_stats: %s\n", lpc_get_last_error_message());
        goto cleanup;
    }
    for (i = 0; i < nstats; i++) {
        if (stats[i].type == VIR_TYPED_PARAM_ULLONG)
            printf("stat: %s %llu\n", stats[i].field, stats[i].value.ul);
        else
            printf("stat: %s %d\n", stats[i].field, stats[i].value.i);
    }
    virTypedParamsGetULLong(stats, nstats, VIR_DOMAIN_JOB_MEMORY_ITERATION, &iteration);
    virTypedParamsGetULLong(stats, nstats, VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS, &requests);
    printf("job: type=%d memory_iteration=%llu postcopy_requests=%llu\n",
           type, iteration, requests);
    if (type != VIR_DOMAIN_JOB_COMPLETED || iteration < 1)
        goto cleanup;

    for (i = 0; i < s.nlifecycle; i++)
        saw_suspended_postcopy |= s.lifecycle[i][0] == VIR_DOMAIN_EVENT_SUSPENDED &&
                                  s.lifecycle[i][1] == VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY;
    for (i = 0; i < d.nlifecycle; i++)
        saw_resumed_postcopy |= d.lifecycle[i][0] == VIR_DOMAIN_EVENT_RESUMED &&
                                d.lifecycle[i][1] == VIR_DOMAIN_EVENT_RESUMED_POSTCOPY;
    if (!saw_suspended_postcopy || !saw_resumed_postcopy || !s.completed ||
        s.job_completed_nparams <= 0) {
        fprintf(stderr, "missing events: suspended-postcopy=%d resumed-postcopy=%d completed=%d\n",
                saw_suspended_postcopy, saw_resumed_postcopy, s.completed);
        goto cleanup;
    }

    if (print_state(src, "src", &state, &reason) < 0 ||
        state != VIR_DOMAIN_SHUTOFF || reason != VIR_DOMAIN_SHUTOFF_MIGRATED)
        goto cleanup;
    if (print_state(dst, "dst", &state, &reason) < 0 ||
        state != VIR_DOMAIN_RUNNING || reason != VIR_DOMAIN_RUNNING_MIGRATED)
        goto cleanup;
    /* The job is over: libvirt's answers without a job. */
    if (lpc_domain_migrate_start_post_copy(src, 0) != -1 ||
        lpc_get_last_error_code() != VIR_ERR_OPERATION_INVALID ||
        strcmp(lpc_get_last_error_message(),
               "Requested operation is not valid: domain is not running") != 0)
        goto cleanup;
    ret = 0;

 cleanup:
    virTypedParamsFree(params, nparams);
    /* Our array is compatible with libvirt's release function too. */
    virTypedParamsFree(stats, nstats);
    lpc_domain_free(src);
    lpc_domain_free(dst);
    return ret;
}

int
main(int argc, char **argv)
{
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The libvirt helpers used here (virTypedParams*) need libvirt initialised. */
    if (virInitialize() < 0)
        return 1;
    if (argc == 3 && strcmp(argv[1], "replay") == 0)
        ret = replay(argv[2]);
    else if (argc == 5 && strcmp(argv[1], "live") == 0)
        ret = live(argv[2], argv[3], argv[4], 0, 0);
    else if (argc == 5 && strcmp(argv[1], "live-thread") == 0)
        ret = live(argv[2], argv[3], argv[4], 1, 0);
    else if (argc == 5 && strcmp(argv[1], "live-abort") == 0)
        ret = live_abort(argv[2], argv[3], argv[4]);
    else if (argc == 5 && strcmp(argv[1], "live-callback") == 0)
        ret = live(argv[2], argv[3], argv[4], 0, 1);
    else {
        fprintf(stderr, "usage: %s replay FILE | live[-thread|-callback|-abort] SRC_QMP DST_QMP URI\n",
                argv[0]);
        return 2;
    }
    return ret;
}
