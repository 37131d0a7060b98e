/* svd's metrics: the node's families in one registry (metrics.h), the
 * scrape-time values, the hooks the other files call (one line each), and
 * the /metrics and /health endpoint on the node's metrics address. */
#define _GNU_SOURCE
#include "node_int.h"

#include "metrics.h"
#include "sv_sched.h"
#include "sv_assert.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#ifndef SV_VERSION
#error "SV_VERSION (the project's version) comes from CMakeLists.txt"
#endif

/* Request types, as the `type` label names them; the last is any other. */
static const struct {
    uint32_t type;
    const char *name;
} req_types[] = {
    {SV_MSG_PUT, "put"},
    {SV_MSG_PUT_BEGIN, "put_begin"},
    {SV_MSG_PUT_CHUNK, "put_chunk"},
    {SV_MSG_PUT_COMMIT, "put_commit"},
    {SV_MSG_DELETE, "delete"},
    {SV_MSG_GET, "get"},
    {SV_MSG_GET_CHUNK, "get_chunk"},
    {SV_MSG_STAT, "stat"},
    {SV_MSG_LIST, "list"},
    {SV_MSG_CHUNK_FETCH, "chunk_fetch"},
    {SV_MSG_MAP, "map"},
    {SV_MSG_STATUS, "status"},
    {0, "other"},
};
enum { REQ_TYPES = sizeof req_types / sizeof req_types[0] };

/* Reply statuses, as the `result` label names them; the last is any other. */
static const char *const results[] = {
    [SV_ST_OK] = "ok",
    [SV_ST_NOT_FOUND] = "not_found",
    [SV_ST_VERSION_CONFLICT] = "version_conflict",
    [SV_ST_NOT_LEADER] = "not_leader",
    [SV_ST_UNAVAILABLE] = "unavailable",
    [SV_ST_BAD_REQUEST] = "bad_request",
    [SV_ST_TOO_BIG] = "too_big",
    [SV_ST_DENIED] = "denied",
    [SV_ST_NO_SPACE] = "no_space",
    [SV_ST_INTERNAL] = "internal",
    [SV_ST_CORRUPT] = "corrupt",
    [SV_ST_LAST_] = "unknown",
};
enum { RESULTS = SV_ST_LAST_ + 1 };
_Static_assert(sizeof results / sizeof results[0] == RESULTS, "a label per status");

enum { KIND_REQUEST, KIND_RAFT, KINDS };
enum { DIR_IN, DIR_OUT, DIRS };
enum { REPAIR_OK, REPAIR_NO_COPY, REPAIR_CANCELLED, REPAIR_STORE_FAILED, REPAIR_RESULTS };
static const char *const repair_results[] = {"ok", "no_healthy_copy", "cancelled", "store_failed"};
enum { COMPACT_OK, COMPACT_NO_SPACE, COMPACT_ERROR, COMPACT_RESULTS };
static const char *const compact_results[] = {"ok", "no_space", "error"};

enum {
    ENTRY_BUCKETS = 16, /* entries per persist job: 0 (hard state only), 1, 2, 4, ... 16384 */
};

/* A hosted group's leader changes, counted as host.c refreshes it (its Raft
 * values are read from the group itself at scrape time). */
struct stats_group {
    uint64_t leader, term; /* the last leader seen, and its term */
    struct sv_counter *leader_changes;
};

struct sv__stats {
    struct sv_node *node;
    struct sv_metrics *reg;
    struct sv_metrics_http *http;
    bool http_closed;

    struct sv_metrics_family *raft_term, *raft_leader, *raft_commit, *raft_applied,
        *raft_leader_changes;
    struct stats_group **groups; /* by group id; NULL when not hosted */
    uint32_t groups_cap;

    struct sv_metrics_family *requests, *request_duration, *repairs, *compactions;
    /* Registered when first used (the "ok" row and the known types' latency
     * at open), so a scrape shows only the results that happened. */
    struct sv_counter *req[REQ_TYPES][RESULTS];
    struct sv_histogram *req_latency[REQ_TYPES];
    struct sv_counter *repair[REPAIR_RESULTS];
    struct sv_counter *compact[COMPACT_RESULTS];
    struct sv_counter *bytes[KINDS][DIRS];
    struct sv_counter *compacted_bytes, *copy_bytes;
    struct sv_metrics_family *sched;
    struct sv_counter *sched_reason[SV_SCHED_R_COUNT_];
    struct sv_histogram *compact_hold, *persist_sync, *persist_entries, *apply;
    /* Arguments of the sv_connections_refused_total series, one per limit. */
    struct tp_limit_arg {
        const struct sv_node *node;
        enum sv_tp_limit limit;
    } tp_limits[SV_TP_LIMITS];

    /* The request whose frame is being dispatched: a reply to it while it
     * is still the latest frame is timed from its arrival. */
    uint64_t cur_conn, cur_req, cur_start_ns;
    uint32_t cur_type;
    /* A waiter's reply just counted: its latency is taken when the waiter is
     * freed (sv__stats_waiter_done), from the waiter's start. */
    bool pending;
    uint64_t pending_conn, pending_req;

    /* The segment store's sizes, copied by the pool jobs that hold
     * n->seg_mu (an apply holds it long; a scrape must not wait). */
    _Atomic uint64_t seg_live, seg_dead;
};

/* ---- registration -------------------------------------------------------- */

static const char *const group_label[] = {"group"};

static int family(struct sv__stats *s, struct sv_metrics_family **out,
                  const struct sv_metrics_desc *d, char *errmsg, size_t errlen)
{
    int rc = sv_metrics_family_new(s->reg, d, out);
    if (rc)
        snprintf(errmsg, errlen, "metrics: registering %s: %s", d->name, sv_strerror(rc));
    return rc;
}

/* The counter of f with values into *slot, registered on first use; NULL
 * when it cannot be (no memory: the event goes uncounted). Loop thread. */
static struct sv_counter *counter_at(struct sv_metrics_family *f, struct sv_counter **slot,
                                     const char *const *values)
{
    if (!*slot && sv_metrics_counter(f, values, slot))
        *slot = NULL;
    return *slot;
}

static struct sv_counter *req_counter(struct sv__stats *s, int t, int r)
{
    const char *values[] = {req_types[t].name, results[r]};
    return counter_at(s->requests, &s->req[t][r], values);
}

static struct sv_histogram *req_histogram(struct sv__stats *s, int t)
{
    const char *values[] = {req_types[t].name};
    if (!s->req_latency[t] && sv_metrics_histogram(s->request_duration, values, &s->req_latency[t]))
        s->req_latency[t] = NULL;
    return s->req_latency[t];
}

/* 0 when p was registered, else the one way a first use fails. */
static int made(const void *p)
{
    return p ? 0 : -ENOMEM;
}

static int type_index(uint32_t type)
{
    int t = 0;
    while (t < REQ_TYPES - 1 && req_types[t].type != type)
        t++;
    return t;
}

static int result_index(int64_t status)
{
    return status >= 0 && status < SV_ST_LAST_ ? (int)status : SV_ST_LAST_;
}

/* ---- scrape-time values (loop thread) ------------------------------------ */

static double group_term(void *arg)
{
    return (double)((const struct group *)arg)->term;
}

static double group_leader(void *arg)
{
    return ((const struct group *)arg)->role == SV_RAFT_LEADER;
}

static double group_commit(void *arg)
{
    return (double)((const struct group *)arg)->commit;
}

static double group_applied(void *arg)
{
    return (double)((const struct group *)arg)->applied;
}

static double disk_free(void *arg)
{
    const struct sv_node *n = arg;
    struct statvfs sv;
    if (statvfs(n->data_dir, &sv))
        return NAN;
    return (double)sv.f_bavail * (double)sv.f_frsize; /* what the node may use (admission) */
}

static double connections(void *arg)
{
    return (double)sv_tp_conn_count(((const struct sv_node *)arg)->tp);
}

static double client_connections(void *arg)
{
    struct sv_tp_stats st;
    sv_tp_stats(((const struct sv_node *)arg)->tp, &st);
    return (double)st.clients;
}

static double connections_refused(void *arg)
{
    const struct tp_limit_arg *a = arg;
    struct sv_tp_stats st;
    sv_tp_stats(a->node->tp, &st);
    return (double)st.refused[a->limit];
}

static double reads_queued(void *arg)
{
    return (double)((const struct sv_node *)arg)->reads_queued;
}

static double reads_refused(void *arg)
{
    return (double)((const struct sv_node *)arg)->reads_refused;
}

static double in_flight_refused(void *arg)
{
    return (double)((const struct sv_node *)arg)->in_flight_refused;
}

static double map_epoch(void *arg)
{
    return (double)((const struct sv_node *)arg)->map->epoch;
}

/* Groups of the map with fewer replicas on up nodes than it asks for (a
 * replacement's new replica does not count until it is done). */
static double under_replicated(void *arg)
{
    const struct sv_map *m = ((const struct sv_node *)arg)->map;
    uint32_t count = 0;
    for (uint64_t g = 0; g <= m->n_shards; g++) {
        const struct sv_map_group *mg = &m->groups[g];
        uint32_t healthy = 0;
        for (uint32_t k = 0; k < mg->n - (mg->out ? 1 : 0); k++) {
            const struct sv_map_node *mn = sv_map_node(m, mg->ids[k]);
            healthy += mn && (mn->state == SV_MAP_UP || mn->state == SV_MAP_DRAINING);
        }
        count += healthy < m->replicas;
    }
    return count;
}

/* Groups with at most half their replicas on up or draining nodes: no
 * quorum while that lasts. */
static double unavailable(void *arg)
{
    const struct sv_map *m = ((const struct sv_node *)arg)->map;
    uint32_t count = 0;
    for (uint64_t g = 0; g <= m->n_shards; g++) {
        const struct sv_map_group *mg = &m->groups[g];
        uint32_t live = 0, voters = mg->n - (mg->out ? 1 : 0);
        for (uint32_t k = 0; k < voters; k++) {
            const struct sv_map_node *mn = sv_map_node(m, mg->ids[k]);
            live += mn && (mn->state == SV_MAP_UP || mn->state == SV_MAP_DRAINING);
        }
        count += live * 2 <= voters;
    }
    return count;
}

static double moves_in_flight(void *arg)
{
    const struct sv_map *m = ((const struct sv_node *)arg)->map;
    uint32_t count = 0;
    for (uint64_t g = 0; g <= m->n_shards; g++)
        count += m->groups[g].out != 0;
    return count;
}

static double apply_paused(void *arg)
{
    return ((const struct sv_node *)arg)->apply_retry_ms != 0;
}

static double seg_live(void *arg)
{
    return (double)atomic_load_explicit(&((struct sv__stats *)arg)->seg_live, memory_order_relaxed);
}

static double seg_dead(void *arg)
{
    return (double)atomic_load_explicit(&((struct sv__stats *)arg)->seg_dead, memory_order_relaxed);
}

/* Chunk copy (copy.c): what the hosted groups still lack, and how many do. */
static double copy_missing(void *arg)
{
    const struct sv_node *n = arg;
    double sum = 0;
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        uint64_t chunks = 0, bytes;
        if (n->groups[id])
            sv__copy_progress(n, n->groups[id], &chunks, &bytes);
        sum += (double)chunks;
    }
    return sum;
}

static double copy_pending(void *arg)
{
    const struct sv_node *n = arg;
    double count = 0;
    for (uint32_t id = 0; id < n->n_group_ids; id++)
        count += n->groups[id] && !sv__copy_complete(n, n->groups[id]);
    return count;
}

/* Disaster recovery (dr.c), over the shards this node leads. */
static double dr_standby(void *arg)
{
    return sv__dr_standby(arg);
}

static double dr_lag(void *arg)
{
    struct sv__dr_summary s;
    sv__dr_summary(arg, &s);
    return s.lag_ms < 0 ? NAN : (double)s.lag_ms / 1000.0;
}

static double dr_stalled(void *arg)
{
    struct sv__dr_summary s;
    sv__dr_summary(arg, &s);
    return s.stalled;
}

static double dr_seeding(void *arg)
{
    struct sv__dr_summary s;
    sv__dr_summary(arg, &s);
    return s.seeding;
}

static double dr_behind(void *arg)
{
    struct sv__dr_summary s;
    sv__dr_summary(arg, &s);
    return (double)s.behind;
}

static double dr_held(void *arg)
{
    struct sv__dr_summary s;
    sv__dr_summary(arg, &s);
    return (double)s.held_bytes;
}

/* ---- open, start, stop, free --------------------------------------------- */

/* One family whose single series (no labels, or the given values) is a
 * scrape-time function. */
static int fn_family(struct sv__stats *s, const struct sv_metrics_desc *d,
                     const char *const *values, sv_metrics_gauge_fn fn, void *arg, char *errmsg,
                     size_t errlen)
{
    struct sv_metrics_family *f;
    int rc = family(s, &f, d, errmsg, errlen);
    if (!rc && (rc = sv_metrics_series_fn(f, values, fn, arg)))
        snprintf(errmsg, errlen, "metrics: %s: %s", d->name, sv_strerror(rc));
    return rc;
}

static int register_all(struct sv__stats *s, char *errmsg, size_t errlen)
{
    struct sv_node *n = s->node;
    uint64_t lat[SV_METRICS_LATENCY_BUCKETS], entries[ENTRY_BUCKETS];
    sv_metrics_exp_bounds(lat, SV_METRICS_LATENCY_BUCKETS, SV_METRICS_LATENCY_START_NS,
                          SV_METRICS_LATENCY_FACTOR);
    entries[0] = 0;
    sv_metrics_exp_bounds(entries + 1, ENTRY_BUCKETS - 1, 1, 2);
    static const char *const type_result[] = {"type", "result"};
    static const char *const type_label[] = {"type"};
    static const char *const kind_dir[] = {"kind", "direction"};
    static const char *const result_label[] = {"result"};
    static const char *const state_label[] = {"state"};
    static const char *const reason_label[] = {"reason"};
    static const char *const limit_label[] = {"limit"};
    const struct sv_metrics_desc seconds = {
        .type = SV_METRIC_HISTOGRAM,
        .bounds = lat,
        .n_bounds = SV_METRICS_LATENCY_BUCKETS,
        .unit_div = 1000000000,
    };
    struct sv_metrics_desc d;
    struct sv_metrics_family *f;
    int rc;
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        if ((rc = (expr)))                                                                         \
            return rc;                                                                             \
    } while (0)
#define SERIES(expr, name)                                                                         \
    do {                                                                                           \
        if ((rc = (expr))) {                                                                       \
            snprintf(errmsg, errlen, "metrics: %s: %s", name, sv_strerror(rc));                    \
            return rc;                                                                             \
        }                                                                                          \
    } while (0)

    SERIES(sv_metrics_build_info(s->reg, SV_VERSION), "sv_build_info");

    /* Raft, per group (series added and removed with the groups). */
    d = (struct sv_metrics_desc){.type = SV_METRIC_GAUGE,
                                 .name = "sv_raft_term",
                                 .help = "Current Raft term of the group on this node.",
                                 .labels = group_label,
                                 .n_labels = 1};
    TRY(family(s, &s->raft_term, &d, errmsg, errlen));
    d.name = "sv_raft_leader";
    d.help = "1 when this node is the group's Raft leader, else 0 (follower or candidate).";
    TRY(family(s, &s->raft_leader, &d, errmsg, errlen));
    d.name = "sv_raft_commit_index";
    d.help = "Highest log index this node knows to be committed in the group.";
    TRY(family(s, &s->raft_commit, &d, errmsg, errlen));
    d.name = "sv_raft_applied_index";
    d.help = "Highest log index of the group applied to this node's state machine.";
    TRY(family(s, &s->raft_applied, &d, errmsg, errlen));
    d.type = SV_METRIC_COUNTER;
    d.name = "sv_raft_leader_changes_total";
    d.help = "Leaders this node has seen for the group since the group was opened here (a "
             "known leader in a new term, or another node).";
    TRY(family(s, &s->raft_leader_changes, &d, errmsg, errlen));

    /* Requests. */
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_requests_total",
        .help = "Requests answered, by type and result (ok or the reply's status).",
        .labels = type_result,
        .n_labels = 2};
    TRY(family(s, &s->requests, &d, errmsg, errlen));
    d = seconds;
    d.name = "sv_request_duration_seconds";
    d.help = "Time from a request's arrival to its reply being queued, by type.";
    d.labels = type_label;
    d.n_labels = 1;
    TRY(family(s, &s->request_duration, &d, errmsg, errlen));
    for (int t = 0; t < REQ_TYPES - 1; t++) {
        SERIES(made(req_counter(s, t, SV_ST_OK)), "sv_requests_total");
        SERIES(made(req_histogram(s, t)), "sv_request_duration_seconds");
    }
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_transport_body_bytes_total",
        .help = "Frame body bytes (TLS and frame headers not counted): kind request = request "
                "bodies in, reply bodies out; kind raft = Raft frames in and out.",
        .labels = kind_dir,
        .n_labels = 2};
    TRY(family(s, &f, &d, errmsg, errlen));
    static const char *const kinds[] = {"request", "raft"}, *const dirs[] = {"in", "out"};
    for (int k = 0; k < KINDS; k++)
        for (int di = 0; di < DIRS; di++)
            SERIES(sv_metrics_counter(f, (const char *[]){kinds[k], dirs[di]}, &s->bytes[k][di]),
                   d.name);

    /* The persist pipeline. */
    d = seconds;
    d.name = "sv_persist_sync_duration_seconds";
    d.help = "Time of a persist job's log store commit (one sync for every group's batch).";
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_histogram(f, NULL, &s->persist_sync), d.name);
    d = (struct sv_metrics_desc){.type = SV_METRIC_HISTOGRAM,
                                 .name = "sv_persist_job_entries",
                                 .help = "Raft log entries made durable by one persist job's sync.",
                                 .bounds = entries,
                                 .n_bounds = ENTRY_BUCKETS};
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_histogram(f, NULL, &s->persist_entries), d.name);
    d = seconds;
    d.name = "sv_apply_duration_seconds";
    d.help = "Time of an apply half: committed entries into the segment store (written and "
             "synced) and the state machine, waiting for the segment store included.";
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_histogram(f, NULL, &s->apply), d.name);

    /* The segment store. */
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_GAUGE,
        .name = "sv_seg_bytes",
        .help = "Segment file bytes: live (records the index points to) or dead (reclaimable "
                "by compaction); as of the last apply or compaction.",
        .labels = state_label,
        .n_labels = 1};
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_series_fn(f, (const char *[]){"live"}, seg_live, s), d.name);
    SERIES(sv_metrics_series_fn(f, (const char *[]){"dead"}, seg_dead, s), d.name);
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_seg_compactions_total",
        .help = "Segment compaction runs, by result (ok, no_space: stopped by the disk, "
                "error: the node stops).",
        .labels = result_label,
        .n_labels = 1};
    TRY(family(s, &s->compactions, &d, errmsg, errlen));
    SERIES(made(counter_at(s->compactions, &s->compact[COMPACT_OK], &compact_results[COMPACT_OK])),
           d.name);
    d = (struct sv_metrics_desc){.type = SV_METRIC_COUNTER,
                                 .name = "sv_seg_compacted_bytes_total",
                                 .help = "Bytes of segment files removed by compaction."};
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_counter(f, NULL, &s->compacted_bytes), d.name);
    d = seconds;
    d.name = "sv_seg_compaction_hold_seconds";
    d.help = "Time a compaction held the segment store (applies wait meanwhile).";
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_histogram(f, NULL, &s->compact_hold), d.name);
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_repairs_total",
        .help = "Chunk repairs from another replica, by result (ok, no_healthy_copy, "
                "cancelled: the node stopped, store_failed).",
        .labels = result_label,
        .n_labels = 1};
    TRY(family(s, &s->repairs, &d, errmsg, errlen));
    SERIES(made(counter_at(s->repairs, &s->repair[REPAIR_OK], &repair_results[REPAIR_OK])), d.name);
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_copy_bytes_total",
        .help = "Sealed chunk bytes copied eagerly from other replicas by a new replica."};
    TRY(family(s, &f, &d, errmsg, errlen));
    SERIES(sv_metrics_counter(f, NULL, &s->copy_bytes), d.name);
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_GAUGE,
        .name = "sv_copy_chunks_missing",
        .help = "Chunks the hosted groups' records claim that are not here yet (as of each "
                "group's last count, less those copied since)."};
    TRY(fn_family(s, &d, NULL, copy_missing, n, errmsg, errlen));
    d.name = "sv_copy_groups_pending";
    d.help = "Hosted groups not yet known to hold every chunk their records claim.";
    TRY(fn_family(s, &d, NULL, copy_pending, n, errmsg, errlen));

    /* The node. */
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_GAUGE,
        .name = "sv_disk_free_bytes",
        .help = "Free bytes for the node in its data directory's file system (statvfs at scrape)."};
    TRY(fn_family(s, &d, NULL, disk_free, n, errmsg, errlen));
    d.name = "sv_transport_connections";
    d.help = "Open connections of the node's transport (clients and nodes, both directions).";
    TRY(fn_family(s, &d, NULL, connections, n, errmsg, errlen));
    d.name = "sv_transport_client_connections";
    d.help = "Of them, connections accepted and not (yet) known as another node's: what the "
             "client limits count (max_connections less 256 kept for nodes, "
             "max_connections_per_source).";
    TRY(fn_family(s, &d, NULL, client_connections, n, errmsg, errlen));
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_connections_refused_total",
        .help = "Connections refused or closed by a limit: full (every connection taken), "
                "clients (the clients' share full and no node certificate shown), source "
                "(max_connections_per_source from that address), idle (a client silent for "
                "idle_timeout_s).",
        .labels = limit_label,
        .n_labels = 1};
    struct sv_metrics_family *refused;
    TRY(family(s, &refused, &d, errmsg, errlen));
    for (int l = 0; l < SV_TP_LIMITS; l++) {
        const char *v[] = {sv_tp_limit_name((enum sv_tp_limit)l)};
        s->tp_limits[l] = (struct tp_limit_arg){n, (enum sv_tp_limit)l};
        SERIES(sv_metrics_series_fn(refused, v, connections_refused, &s->tp_limits[l]), d.name);
    }
    d = (struct sv_metrics_desc){.type = SV_METRIC_GAUGE};
    d.name = "sv_reads_queued";
    d.help = "Reads waiting for the thread pool (at most 2 run there at once, so that the "
             "persist and apply jobs always find a thread).";
    TRY(fn_family(s, &d, NULL, reads_queued, n, errmsg, errlen));
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_reads_refused_total",
        .help = "Reads answered UNAVAILABLE (node busy) because 1024 reads were waiting already."};
    TRY(fn_family(s, &d, NULL, reads_refused, n, errmsg, errlen));
    d.name = "sv_requests_in_flight_refused_total";
    d.help = "Client requests answered UNAVAILABLE because 512 requests of their connection "
             "were waiting for their answers already.";
    TRY(fn_family(s, &d, NULL, in_flight_refused, n, errmsg, errlen));
    d = (struct sv_metrics_desc){.type = SV_METRIC_GAUGE};
    d.name = "sv_map_epoch";
    d.help = "Epoch of the cluster map this node routes by.";
    TRY(fn_family(s, &d, NULL, map_epoch, n, errmsg, errlen));
    d.name = "sv_sched_under_replicated_groups";
    d.help = "Groups (shards and the meta group) with fewer replicas on up or draining nodes "
             "than the replica count, by this node's map.";
    TRY(fn_family(s, &d, NULL, under_replicated, n, errmsg, errlen));
    d.name = "sv_sched_unavailable_groups";
    d.help = "Groups with at most half their replicas on up or draining nodes (no quorum), by "
             "this node's map.";
    TRY(fn_family(s, &d, NULL, unavailable, n, errmsg, errlen));
    d.name = "sv_sched_moves_in_flight";
    d.help = "Replica replacements in progress (repairs, drains, rebalancing), by this node's "
             "map.";
    TRY(fn_family(s, &d, NULL, moves_in_flight, n, errmsg, errlen));
    d.name = "sv_dr_standby";
    d.help = "1 when this node's site is a disaster-recovery standby (read-only), 0 on the "
             "primary.";
    TRY(fn_family(s, &d, NULL, dr_standby, n, errmsg, errlen));
    d.name = "sv_dr_lag_seconds";
    d.help = "Standby: the largest lag over the shards this node leads (wall clock minus the "
             "shard's frontier, the time before which it holds every entry the primary "
             "committed); NaN when it leads none or a frontier is not known yet.";
    TRY(fn_family(s, &d, NULL, dr_lag, n, errmsg, errlen));
    d.name = "sv_dr_stalled_shards";
    d.help = "Shards this node leads whose shipping is stalled (standby: no answer or a refusal "
             "from the primary; primary: no pull from the standby for 5 s).";
    TRY(fn_family(s, &d, NULL, dr_stalled, n, errmsg, errlen));
    d.name = "sv_dr_reseeding_shards";
    d.help = "Standby shards this node leads that are not whole yet: their image from the "
             "primary or its chunks still coming (initial-sync or reseeding); the site is not "
             "fit to promote while any is.";
    TRY(fn_family(s, &d, NULL, dr_seeding, n, errmsg, errlen));
    d.name = "sv_dr_entries_behind";
    d.help = "Entries the standby has not run over the shards this node leads (the primary's "
             "commit index, as last exchanged, minus the last index that ran: entries not "
             "received yet and entries held for the consistent cut).";
    TRY(fn_family(s, &d, NULL, dr_behind, n, errmsg, errlen));
    d.name = "sv_dr_held_bytes";
    d.help = "Standby: bytes of shipped entries the shards this node leads hold until the "
             "site's release (its lowest shard frontier) passes their stamp.";
    TRY(fn_family(s, &d, NULL, dr_held, n, errmsg, errlen));
    d = (struct sv_metrics_desc){
        .type = SV_METRIC_COUNTER,
        .name = "sv_sched_decisions_total",
        .help = "Scheduler decisions and reports made by this node as the meta group's leader, "
                "by reason (evicted counts evictions, repair the replacements of lost "
                "replicas).",
        .labels = reason_label,
        .n_labels = 1};
    TRY(family(s, &s->sched, &d, errmsg, errlen));
    d = (struct sv_metrics_desc){.type = SV_METRIC_GAUGE};
    d.name = "sv_apply_paused";
    d.help = "1 while applying committed entries is paused because the disk is full, else 0.";
    TRY(fn_family(s, &d, NULL, apply_paused, n, errmsg, errlen));
#undef SERIES
#undef TRY
    return 0;
}

int sv__stats_open(struct sv_node *n, char *errmsg, size_t errlen)
{
    struct sv__stats *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errmsg, errlen, "metrics: out of memory");
        return -ENOMEM;
    }
    s->node = n;
    int rc = sv_metrics_new(&s->reg);
    if (rc) {
        snprintf(errmsg, errlen, "metrics: out of memory");
        goto err_after_stats;
    }
    rc = register_all(s, errmsg, errlen);
    if (rc)
        goto err_after_reg;
    n->stats = s;
    sv__stats_seg_sizes(n); /* no pool job runs yet: no need for seg_mu */
    return 0;

err_after_reg:
    sv_metrics_free(s->reg);
err_after_stats:
    free(s);
    return rc;
}

/* 503 with a reason while the node does not serve. Loop thread. */
static bool health(void *arg, char *reason, size_t len)
{
    const struct sv_node *n = arg;
    /* (failed alone is also how a SIGTERM ends a full disk's pause.) */
    if (n->exit_code || (n->failed && !n->stopping))
        snprintf(reason, len, "node %" PRIu64 " stopped after a storage failure (see its log)",
                 n->me->id);
    else if (n->stopping)
        snprintf(reason, len, "node %" PRIu64 " is stopping", n->me->id);
    else if (n->apply_retry_ms)
        snprintf(reason, len,
                 "node %" PRIu64 ": disk full, applying committed entries is paused "
                 "(writes to this node's shards wait)",
                 n->me->id);
    else
        return true;
    return false;
}

int sv__stats_start(struct sv_node *n, char *errmsg, size_t errlen)
{
    /* sv_metrics_http_start's message names the address. */
    return sv_metrics_http_start(&n->loop, n->me->metrics, n->stats->reg, health, n,
                                 &n->stats->http, errmsg, errlen);
}

static void on_http_closed(void *arg)
{
    ((struct sv__stats *)arg)->http_closed = true;
}

void sv__stats_stop(struct sv_node *n)
{
    struct sv__stats *s = n->stats;
    if (!s || !s->http)
        return;
    sv_metrics_http_stop(s->http, on_http_closed, s);
    s->http = NULL;
    while (!s->http_closed)
        uv_run(&n->loop, UV_RUN_ONCE);
}

void sv__stats_free(struct sv_node *n)
{
    struct sv__stats *s = n->stats;
    if (!s)
        return;
    ASSERT(!s->http);
    for (uint32_t i = 0; i < s->groups_cap; i++)
        ASSERT(!s->groups[i]); /* every group's series were removed */
    free(s->groups);
    sv_metrics_free(s->reg);
    free(s);
    n->stats = NULL;
}

/* ---- groups (loop thread) ------------------------------------------------ */

void sv__stats_group_add(struct sv_node *n, struct group *g)
{
    struct sv__stats *s = n->stats;
    if (g->id >= s->groups_cap) {
        uint32_t cap =
            (uint32_t)g->id + 1 > 2 * s->groups_cap ? (uint32_t)g->id + 1 : 2 * s->groups_cap;
        struct stats_group **p = realloc(s->groups, cap * sizeof *p);
        if (!p)
            goto err;
        memset(p + s->groups_cap, 0, (cap - s->groups_cap) * sizeof *p);
        s->groups = p;
        s->groups_cap = cap;
    }
    ASSERT(!s->groups[g->id]);
    struct stats_group *sg = calloc(1, sizeof *sg);
    if (!sg)
        goto err;
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, g->id);
    const char *values[] = {id};
    int rc = sv_metrics_series_fn(s->raft_term, values, group_term, g);
    if (!rc)
        rc = sv_metrics_series_fn(s->raft_leader, values, group_leader, g);
    if (!rc)
        rc = sv_metrics_series_fn(s->raft_commit, values, group_commit, g);
    if (!rc)
        rc = sv_metrics_series_fn(s->raft_applied, values, group_applied, g);
    if (!rc)
        rc = sv_metrics_counter(s->raft_leader_changes, values, &sg->leader_changes);
    s->groups[g->id] = sg;
    if (rc) {
        sv__stats_group_remove(n, g);
        goto err;
    }
    sv__stats_group_refresh(n, g);
    return;
err:
    /* The group serves without its series; nothing else depends on them. */
    LOG_WARN("metrics: group %" PRIu64 " has no series: out of memory", g->id);
}

void sv__stats_group_remove(struct sv_node *n, struct group *g)
{
    struct sv__stats *s = n->stats;
    if (g->id >= s->groups_cap || !s->groups[g->id])
        return;
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, g->id);
    const char *values[] = {id};
    struct sv_metrics_family *fs[] = {s->raft_term, s->raft_leader, s->raft_commit, s->raft_applied,
                                      s->raft_leader_changes};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        sv_metrics_series_remove(fs[i], values); /* -ENOENT after a failed add */
    free(s->groups[g->id]);
    s->groups[g->id] = NULL;
}

void sv__stats_group_refresh(struct sv_node *n, struct group *g)
{
    struct sv__stats *s = n->stats;
    struct stats_group *sg = g->id < s->groups_cap ? s->groups[g->id] : NULL;
    if (!sg || !g->leader || (g->leader == sg->leader && g->term == sg->term))
        return;
    /* One leader per term: a known leader in a new term is an election won. */
    sg->leader = g->leader;
    sg->term = g->term;
    sv_counter_inc(sg->leader_changes);
}

/* ---- requests (loop thread) ---------------------------------------------- */

void sv__stats_frame_in(struct sv_node *n, const struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct sv__stats *s = n->stats;
    if (f->type == SV_MSG_RAFT) {
        sv_counter_add(s->bytes[KIND_RAFT][DIR_IN], f->body_len);
    } else if (!(f->type & SV_MSG_RESP)) {
        sv_counter_add(s->bytes[KIND_REQUEST][DIR_IN], f->body_len);
        s->cur_conn = sv_conn_id(c);
        s->cur_req = f->req_id;
        s->cur_type = f->type;
        s->cur_start_ns = uv_hrtime();
    }
}

void sv__stats_reply(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                     int64_t status, size_t bytes)
{
    struct sv__stats *s = n->stats;
    int t = type_index(type);
    struct sv_counter *c = req_counter(s, t, result_index(status));
    if (c)
        sv_counter_inc(c);
    sv_counter_add(s->bytes[KIND_REQUEST][DIR_OUT], bytes);
    if (conn == s->cur_conn && req_id == s->cur_req && type == s->cur_type) {
        /* Still the latest request in: answered at once, or by its waiter
         * before another request came (which sv__stats_waiter_done skips). */
        struct sv_histogram *h = req_histogram(s, t);
        if (h)
            sv_histogram_observe(h, uv_hrtime() - s->cur_start_ns);
        s->pending = false;
    } else {
        /* A waiter's reply: every caller frees the waiter right after. */
        s->pending = true;
        s->pending_conn = conn;
        s->pending_req = req_id;
    }
}

void sv__stats_waiter_done(struct waiter *w)
{
    struct sv__stats *s = w->node->stats;
    if (!s->pending || w->conn != s->pending_conn || w->req_id != s->pending_req)
        return; /* freed without a reply (the node stops), or timed at the reply */
    s->pending = false;
    struct sv_histogram *h = req_histogram(s, type_index(w->type));
    if (h)
        sv_histogram_observe(h, uv_hrtime() - w->start_ns);
}

void sv__stats_status(const struct sv_node *n, struct sv_msg *m)
{
    m->metrics.p = (const uint8_t *)n->me->metrics;
    m->metrics.len = strlen(n->me->metrics);
    SV_MSG_SET(m, SV_F_METRICS);
}

void sv__stats_raft_sent(struct sv_node *n, size_t bytes)
{
    sv_counter_add(n->stats->bytes[KIND_RAFT][DIR_OUT], bytes);
}

/* ---- the pipeline and the stores ----------------------------------------- */

void sv__stats_persisted(struct job *j, uint64_t ns)
{
    struct sv__stats *s = j->node->stats;
    uint64_t entries = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->gs[i]->rd_taken && j->gs[i]->rd_persist)
            entries += j->gs[i]->rd.n_entries;
    sv_histogram_observe(s->persist_sync, ns);
    sv_histogram_observe(s->persist_entries, entries);
}

void sv__stats_seg_sizes(struct sv_node *n)
{
    struct sv__stats *s = n->stats;
    struct sv_seg_stats st;
    sv_seg_stats(n->seg, &st);
    atomic_store_explicit(&s->seg_live, st.live_bytes, memory_order_relaxed);
    atomic_store_explicit(&s->seg_dead, st.dead_bytes, memory_order_relaxed);
}

void sv__stats_applied(struct sv_node *n, uint64_t ns)
{
    sv_histogram_observe(n->stats->apply, ns);
    sv__stats_seg_sizes(n);
}

void sv__stats_compacted(struct sv_node *n, int rc, uint64_t held_ns, uint64_t reclaimed)
{
    struct sv__stats *s = n->stats;
    int r = !rc ? COMPACT_OK : rc == -ENOSPC ? COMPACT_NO_SPACE : COMPACT_ERROR;
    struct sv_counter *c = counter_at(s->compactions, &s->compact[r], &compact_results[r]);
    if (c)
        sv_counter_inc(c);
    if (!rc) {
        sv_counter_add(s->compacted_bytes, reclaimed);
        sv_histogram_observe(s->compact_hold, held_ns);
    }
}

void sv__stats_repair(struct sv_node *n, int status)
{
    struct sv__stats *s = n->stats;
    int r = status == SV_ST_OK            ? REPAIR_OK
            : status == SV_ST_CORRUPT     ? REPAIR_NO_COPY
            : status == SV_ST_UNAVAILABLE ? REPAIR_CANCELLED
                                          : REPAIR_STORE_FAILED;
    struct sv_counter *c = counter_at(s->repairs, &s->repair[r], &repair_results[r]);
    if (c)
        sv_counter_inc(c);
}

void sv__stats_sched(struct sv_node *n, const struct sv_sched_action *a)
{
    struct sv__stats *s = n->stats;
    if (a->reason >= SV_SCHED_R_COUNT_)
        return;
    const char *values[] = {sv_sched_reason_name(a->reason)};
    struct sv_counter *c = counter_at(s->sched, &s->sched_reason[a->reason], values);
    if (c)
        sv_counter_inc(c);
}

uint64_t sv__stats_stored_bytes(const struct sv_node *n)
{
    return atomic_load_explicit(&n->stats->seg_live, memory_order_relaxed);
}

void sv__stats_copied(struct sv_node *n, size_t bytes)
{
    sv_counter_add(n->stats->copy_bytes, bytes);
}
