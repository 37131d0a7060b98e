/* svd's node: multi-raft host, request handling and the persist pipeline (see node.h). */
#define _GNU_SOURCE
#include "node.h"

#include "config.h"
#include "crypto.h"
#include "logstore.h"
#include "proto.h"
#include "raftwire.h"
#include "segstore.h"
#include "sm.h"
#include "sv_assert.h"
#include "sv_codec.h"
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

enum {
    TICK_MS = 100,
    ELECTION_TICKS = 10,        /* 1 to 2 s */
    REQUEST_TIMEOUT_MS = 10000, /* a request waiting on Raft longer gets UNAVAILABLE */
    JOBS_MAX = 4,               /* persist jobs in flight per node (see cycle) */
    PEER_RETRY_MS = 300,        /* between dials of an unreachable peer */
    UPLOAD_SCAN_MS = 5000,      /* leaders look for expired uploads this often */
    MAP_CHECK_MS = 1000,        /* until the meta group's map is recorded and checked */
    SEG_COMPACT_MS = 30000,     /* segments with mostly deleted chunks are compacted this often */
    EXPIRED_BATCH = 64,         /* uploads aborted per scan */
    DISK_RESERVE_BYTES = 64u << 20, /* writes are refused below this much free space */
    DISK_WRITE_FACTOR = 4,          /* reserved per byte of a write not applied yet */
    DISK_CHECK_MS = 100,            /* free space is looked up at most this often */
    APPLY_RETRY_MS = 1000,          /* an apply that found the disk full is tried again */
    REPAIR_ATTEMPTS = 2,            /* re-reads of a chunk after repairing it */
    RAFT_MSG_BYTES = 256u << 10,    /* payload per append (one 1 MiB chunk still goes alone) */
    PROPOSALS_QUEUED_MAX = 4096,    /* per group while its batch is on disk */
    SNAPSHOT_ENTRIES = 2048,        /* take a snapshot after this many applied entries */
    SNAPSHOT_BYTES = 32u << 20,     /* ... or this many bytes of log */
    SNAPSHOT_TRAILING = 64,         /* entries kept behind a snapshot for slow followers */
};

/* ---- logging ------------------------------------------------------------ */

static uint64_t log_node;

__attribute__((format(printf, 2, 3))) static void logf_(const char *level, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32], line[1024];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ node=%" PRIu64 " %s %s\n", when, ts.tv_nsec / 1000000, log_node,
            level, line);
}
#define LOG_INFO(...) logf_("INFO", __VA_ARGS__)
#define LOG_WARN(...) logf_("WARN", __VA_ARGS__)
#define LOG_ERROR(...) logf_("ERROR", __VA_ARGS__)

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- structures --------------------------------------------------------- */

/* A request waiting on Raft (a proposal's apply, or a read point), or a
 * read running in the pool. Owns a copy of the request body. */
struct waiter {
    struct waiter *next;
    struct sv_node *node;
    uint64_t conn, req_id;
    uint32_t type;
    uint64_t group;
    uint64_t index, term; /* proposal */
    uint64_t ctx;         /* read index request, 0 = not asked yet */
    uint64_t read_index;
    uint64_t deadline_ms;
    int repairs;
    uint8_t *body;
    size_t body_len;
    size_t unapplied; /* a write's entry bytes, counted in node->unapplied until freed */
};

struct inmsg {
    struct inmsg *next;
    struct sv_raft_msg m;
};

struct prop {
    struct prop *next;
    uint8_t *data;
    size_t len;
    struct waiter *w; /* NULL for the node's own proposals */
};

struct group {
    uint64_t id;
    struct sv_raft *r;
    uint64_t replicas[SV_CFG_REPLICAS_MAX];
    uint32_t n_replicas;
    /* The batch in the persist job. */
    bool busy;
    struct sv_raft_ready rd;
    struct sv_sm_result *res;
    size_t res_cap;
    /* Inputs that arrived while busy. */
    struct inmsg *inbox, **inbox_tail;
    uint32_t ticks;
    struct prop *props, **props_tail;
    uint32_t n_props;
    /* Requests. */
    struct waiter *waiting, **waiting_tail; /* proposals, in index order */
    struct waiter *reads;                   /* waiting for their read index */
    struct waiter *ready_reads;             /* read index known, waiting for apply */
    /* State seen by the loop (refreshed when not busy). */
    uint64_t applied;
    uint64_t snap_index;
    uint64_t log_bytes; /* applied payload bytes since the last snapshot */
    enum sv_raft_role role;
    uint64_t term, leader, commit;
    uint64_t up_term;
    uint32_t up_ctr;
    bool want_snapshot;
    /* A snapshot taken here, to be written to the log store by the next job. */
    bool snap_pending, snap_staged, rd_taken;
    /* The batch has something the log store must make durable; a batch that
     * only moves the commit index does not (it is recomputed after a
     * restart, and never below the applied index: see open_group). */
    bool rd_persist;
    uint64_t hs_term, hs_vote; /* as last persisted */
    int map_state;             /* meta group: 0 not checked, 1 checked, 2 differs */
    bool map_busy;
    struct sv_raft_snapshot snap;
};

/* One half of a job. A job that is not split runs both halves in turn on
 * persist's work request. */
struct half {
    uv_work_t w;
    bool need, started, done; /* loop thread */
    int rc;                   /* the worker's result, read once done */
    char errmsg[256];
};

struct job {
    struct job *next; /* the node's jobs, oldest first */
    struct sv_node *node;
    struct group **gs;
    size_t n;
    bool split;   /* the halves run on their own threads, each when its stage is free */
    bool replied; /* the applied entries were answered */
    struct half persist, apply;
    /* Set by the worker once the log store commit is durable: the batches'
     * messages (votes, append acknowledgements) may go out while the job
     * goes on applying committed entries. */
    atomic_bool persisted;
    bool msgs_sent; /* loop thread only */
};

struct sv_node {
    struct sv_cfg cfg;
    const struct sv_cfg_node *me;
    uv_loop_t loop;
    struct sv_tp *tp;
    struct sv_logstore *log;
    struct sv_seg_store *seg;
    pthread_mutex_t seg_mu;
    struct sv_sm *sm;
    struct sv_crypto_key *kek, *dek;
    char data_dir[SV_CFG_PATH_MAX + 16];

    struct group **groups; /* indexed by group id, NULL when not hosted */
    uint32_t n_group_ids;
    uint64_t peer_conn[SV_CFG_NODES_MAX];
    uint64_t peer_next_dial[SV_CFG_NODES_MAX];

    uv_timer_t tick;
    uv_prepare_t prepare;
    uv_check_t check;
    uv_signal_t sigterm, sigint;
    uv_async_t persisted; /* a job's batches are durable */
    struct job *jobs;     /* persist jobs in flight, oldest first */
    bool persist_busy;    /* a persist half (or a whole job) is running */
    bool apply_busy;      /* an apply half (or a whole job) is running */
    bool failed;          /* a job failed: start nothing more */

    uint64_t next_ctx;
    uint64_t next_fetch;
    uint64_t last_upload_scan_ms;
    uint64_t last_compact_ms;
    uint64_t last_map_check_ms;
    uint64_t disk_checked_ms;
    uint64_t disk_free;
    uint64_t unapplied;      /* entry bytes of this node's proposed writes not yet answered */
    uint64_t apply_retry_ms; /* the disk was full: no apply half starts before this */
    struct fetch *fetches;
    int jobs_in_pool; /* read and repair jobs */
    bool stopping;
    int exit_code;
};

/* A chunk being fetched from another replica to repair ours. */
struct fetch {
    struct fetch *next;
    uint64_t id; /* request id of the CHUNK_FETCH frames */
    struct waiter *w;
    uint8_t chunk_id[SV_SEG_ID_BYTES];
    struct sv_crypto_chunk_ad ad;
    uint32_t tried; /* replicas asked, by index in the group's replica list */
    uint64_t deadline_ms;
};

static void cycle(struct sv_node *n);
static void start_read(struct sv_node *n, struct waiter *w);
static void drain(struct sv_node *n, struct group *g);

/* ---- replies ------------------------------------------------------------ */

static void send_msg(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                     struct sv_msg *m)
{
    struct sv_conn *c = sv_tp_conn(n->tp, conn);
    if (!c)
        return; /* the client went away; a retry finds the result through its session */
    SV_MSG_SET(m, SV_F_STATUS);
    uint8_t *body;
    size_t len;
    int rc = sv_msg_encode(m, &body, &len);
    if (rc) {
        LOG_ERROR("encode reply: %s", sv_proto_strerror(rc));
        return;
    }
    rc = sv_conn_send(c, type | SV_MSG_RESP, req_id, body, len);
    free(body);
    if (rc == -ENOBUFS)
        sv_conn_close(c, "client does not read its replies");
}

static void reply_status(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                         int status, const char *text)
{
    struct sv_msg m = {0};
    m.status = status;
    if (text) {
        m.msg.p = (const uint8_t *)text;
        m.msg.len = strlen(text);
        SV_MSG_SET(&m, SV_F_MSG);
    }
    send_msg(n, conn, type, req_id, &m);
}

static void reply_not_leader(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                             uint64_t leader)
{
    const struct sv_cfg_node *ln = leader ? sv_cfg_node(&n->cfg, leader) : NULL;
    if (!ln || leader == n->me->id) {
        reply_status(n, conn, type, req_id, SV_ST_UNAVAILABLE, "no leader for this shard yet");
        return;
    }
    struct sv_msg m = {0};
    m.status = SV_ST_NOT_LEADER;
    m.leader = leader;
    m.addr.p = (const uint8_t *)ln->addr;
    m.addr.len = strlen(ln->addr);
    SV_MSG_SET(&m, SV_F_LEADER);
    SV_MSG_SET(&m, SV_F_ADDR);
    send_msg(n, conn, type, req_id, &m);
}

static void waiter_free(struct waiter *w)
{
    if (!w)
        return;
    w->node->unapplied -= w->unapplied;
    free(w->body);
    free(w);
}

static void waiter_fail(struct waiter *w, int status, const char *text)
{
    reply_status(w->node, w->conn, w->type, w->req_id, status, text);
    waiter_free(w);
}

/* ---- peers and Raft messages -------------------------------------------- */

static int node_index(const struct sv_node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        if (n->cfg.nodes[i].id == id)
            return (int)i;
    return -1;
}

static struct sv_conn *peer(struct sv_node *n, uint64_t id)
{
    int i = node_index(n, id);
    if (i < 0 || id == n->me->id)
        return NULL;
    struct sv_conn *c = sv_tp_conn(n->tp, n->peer_conn[i]);
    if (c)
        return c;
    uint64_t now = uv_now(&n->loop);
    if (now < n->peer_next_dial[i])
        return NULL;
    n->peer_next_dial[i] = now + PEER_RETRY_MS;
    char name[32];
    snprintf(name, sizeof name, "node-%" PRIu64, id);
    if (sv_tp_connect(n->tp, n->cfg.nodes[i].addr, name, &c))
        return NULL;
    n->peer_conn[i] = sv_conn_id(c);
    return c;
}

/* Send msgs[0..count) of group g (those selected by early/!early). */
static void send_raft(struct sv_node *n, struct group *g, struct sv_raft_msg *msgs, size_t count,
                      bool early)
{
    struct sv_raftwire_msg batch[64];
    for (uint32_t ni = 0; ni < n->cfg.n_nodes; ni++) {
        uint64_t to = n->cfg.nodes[ni].id;
        size_t nb = 0;
        for (size_t i = 0; i <= count; i++) {
            bool take =
                i < count && msgs[i].to == to && sv_raft_msg_may_send_early(&msgs[i]) == early;
            if (take) {
                batch[nb].group = g->id;
                batch[nb].msg = msgs[i];
                nb++;
            }
            if (nb == 0 || (nb < 64 && i < count))
                continue;
            struct sv_conn *c = peer(n, to);
            size_t off = 0;
            while (c && off < nb) {
                uint8_t *body;
                size_t len, done;
                int rc =
                    sv_raftwire_encode(batch + off, nb - off, SV_WIRE_BODY_MAX, &body, &len, &done);
                if (rc) {
                    LOG_ERROR("raft message to node %" PRIu64 ": %s", to, sv_raftwire_strerror(rc));
                    break;
                }
                sv_conn_send(c, SV_MSG_RAFT, 0, body, len); /* a drop is a lost message */
                free(body);
                off += done;
            }
            nb = 0;
        }
    }
}

static void refresh(struct group *g)
{
    struct sv_raft_status st;
    sv_raft_status(g->r, &st);
    bool was_leader = g->role == SV_RAFT_LEADER;
    g->role = st.role;
    g->term = st.term;
    g->leader = st.leader;
    g->commit = st.commit;
    if (was_leader && g->role != SV_RAFT_LEADER) {
        /* Our proposals may or may not commit under the next leader: the
         * clients retry with the same session and sequence number. */
        struct waiter *w;
        while ((w = g->waiting)) {
            g->waiting = w->next;
            waiter_fail(w, SV_ST_UNAVAILABLE, "leadership changed; retry");
        }
        g->waiting_tail = &g->waiting;
        while ((w = g->reads)) {
            g->reads = w->next;
            waiter_fail(w, SV_ST_UNAVAILABLE, "leadership changed; retry");
        }
        while ((w = g->ready_reads)) {
            g->ready_reads = w->next;
            waiter_fail(w, SV_ST_UNAVAILABLE, "leadership changed; retry");
        }
    }
}

static void step(struct sv_node *n, struct group *g, const struct sv_raft_msg *m)
{
    (void)n;
    if (g->busy) {
        struct inmsg *im = calloc(1, sizeof *im);
        if (!im || sv_raft_msg_copy(&im->m, m)) {
            free(im); /* dropped like a lost message */
            return;
        }
        *g->inbox_tail = im;
        g->inbox_tail = &im->next;
        return;
    }
    sv_raft_step(g->r, m);
    refresh(g);
}

static void on_raft(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    const char *pn = sv_conn_peer_name(c);
    uint64_t from = 0;
    if (!pn || sscanf(pn, "node-%" SCNu64, &from) != 1 || node_index(n, from) < 0) {
        sv_conn_close(c, "raft traffic from a connection without a node certificate");
        return;
    }
    struct sv_raftwire_msg *msgs;
    size_t count;
    char em[128];
    int rc = sv_raftwire_decode(f->body, f->body_len, &msgs, &count, em, sizeof em);
    if (rc) {
        LOG_WARN("malformed raft frame from node %" PRIu64 ": %s", from, em);
        sv_conn_close(c, "malformed raft frame");
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const struct sv_raftwire_msg *rm = &msgs[i];
        if (rm->msg.from != from || rm->msg.to != n->me->id || rm->group >= n->n_group_ids ||
            !n->groups[rm->group])
            continue; /* not for us, or forged: ignore */
        step(n, n->groups[rm->group], &rm->msg);
    }
    sv_raftwire_free(msgs, count);
}

/* ---- proposals ---------------------------------------------------------- */

static void do_propose(struct sv_node *n, struct group *g, uint8_t *data, size_t len,
                       struct waiter *w)
{
    uint64_t index = 0;
    int rc = sv_raft_propose(g->r, data, len, &index);
    free(data);
    if (rc) {
        if (w) {
            if (rc == SV_RAFT_E_NOT_LEADER) {
                reply_not_leader(n, w->conn, w->type, w->req_id, g->leader);
                waiter_free(w);
            } else {
                waiter_fail(w, rc == SV_RAFT_E_TOO_BIG ? SV_ST_TOO_BIG : SV_ST_UNAVAILABLE,
                            sv_raft_strerror(rc));
            }
        }
        return;
    }
    refresh(g);
    if (!w)
        return;
    w->index = index;
    w->term = g->term;
    w->next = NULL;
    *g->waiting_tail = w;
    g->waiting_tail = &w->next;
}

/* Propose data (ownership moves here) for w (may be NULL). */
static void propose(struct sv_node *n, struct group *g, uint8_t *data, size_t len, struct waiter *w)
{
    if (!g->busy) {
        do_propose(n, g, data, len, w);
        return;
    }
    struct prop *p = calloc(1, sizeof *p);
    if (!p || g->n_props >= PROPOSALS_QUEUED_MAX) {
        free(p);
        free(data);
        if (w)
            waiter_fail(w, SV_ST_UNAVAILABLE, "too many writes queued on this shard; retry");
        return;
    }
    p->data = data;
    p->len = len;
    p->w = w;
    *g->props_tail = p;
    g->props_tail = &p->next;
    g->n_props++;
}

static uint64_t new_upload_id(struct group *g)
{
    if (g->up_term != g->term) {
        g->up_term = g->term;
        g->up_ctr = 0;
    }
    return g->term << 32 | ++g->up_ctr;
}

/* ---- the persist job ----------------------------------------------------
 *
 * One job at a time per node takes the ready batches of every group that has
 * one. Its two halves: *persist* (the batches' log entries, hard state and
 * staged snapshots into the log store, one sync) and *apply* (committed
 * entries into the state machine and the segment store, one write each).
 * Raft wants persist before apply only for entries of the same batch; when no
 * group's batch commits an entry it also persists (the common case: entries
 * are committed by later batches), the halves run on two pool threads at once
 * and a reply goes out when its entry is applied, not after an unrelated sync.
 * Otherwise one thread runs persist, then apply. */

__attribute__((format(printf, 3, 4))) static int half_fail(struct half *h, int rc, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->errmsg, sizeof h->errmsg, fmt, ap);
    va_end(ap);
    return h->rc = rc;
}

static int job_persist(struct job *j)
{
    struct sv_logstore *log = j->node->log;
    struct half *h = &j->persist;
    bool staged = false;
    int rc = 0;
    for (size_t i = 0; i < j->n && !rc; i++) {
        struct group *g = j->gs[i];
        if (g->rd_taken && g->rd_persist) {
            rc = log->ops->stage(log, g->id, &g->rd);
            staged = true;
        }
        if (!rc && g->snap_staged) {
            staged = true;
            rc = log->ops->save_snapshot(log, g->id, &g->snap);
            if (!rc)
                rc = log->ops->compact(log, g->id, g->snap.meta.index);
        }
        if (rc)
            half_fail(h, rc, "log store stage group %" PRIu64 ": %s (%.200s)", g->id,
                      sv_logstore_strerror(rc), log->errmsg);
    }
    if (!rc && staged && (rc = log->ops->commit(log)))
        half_fail(h, rc, "log store commit: %s (%.200s)", sv_logstore_strerror(rc), log->errmsg);
    return rc;
}

static int job_apply(struct job *j)
{
    struct sv_node *n = j->node;
    struct half *h = &j->apply;
    int rc = 0;
    pthread_mutex_lock(&n->seg_mu);
    /* The chunks of every entry applied below go out in one write (they live
     * in the batches' entries until the job finishes). */
    sv_seg_batch_begin(n->seg);
    for (size_t i = 0; i < j->n && !rc; i++) {
        struct group *g = j->gs[i];
        const struct sv_raft_ready *rd = &g->rd;
        if (!g->rd_taken)
            continue;
        if (rd->snapshot) {
            rc = sv_sm_install(n->sm, n->seg, g->id, rd->snapshot->meta.index, rd->snapshot->data,
                               rd->snapshot->len);
            if (rc)
                half_fail(h, rc, "install snapshot of group %" PRIu64, g->id);
        }
        if (!rc && rd->n_committed > g->res_cap) {
            void *p = realloc(g->res, rd->n_committed * sizeof *g->res);
            if (!p) {
                rc = half_fail(h, -ENOMEM, "out of memory for %zu results", rd->n_committed);
                break;
            }
            g->res = p;
            g->res_cap = rd->n_committed;
        }
        for (size_t k = 0; k < rd->n_committed && !rc; k++) {
            if (rd->committed[k].index <= g->applied)
                continue; /* already in the state machine (restart) */
            rc = sv_sm_apply(n->sm, n->seg, g->id, &rd->committed[k], &g->res[k], h->errmsg,
                             sizeof h->errmsg);
        }
    }
    /* The chunks on file, then durable, then the records that point at them
     * (sm.h: the invariant); the records of the whole job in one write. */
    int wrc = sv_seg_batch_end(n->seg);
    if (!rc && wrc)
        rc = half_fail(h, wrc, "segment write: %s (%.200s)", sv_seg_strerror(wrc),
                       sv_seg_errmsg(n->seg));
    if (!rc)
        rc = sv_sm_commit(n->sm, n->seg, h->errmsg, sizeof h->errmsg);
    else
        sv_sm_discard(n->sm);
    pthread_mutex_unlock(&n->seg_mu);
    return h->rc = rc;
}

/* Both halves, one after the other; the messages that waited for the sync go
 * out (through on_persisted) while apply runs. */
static void job_work(uv_work_t *req)
{
    struct job *j = req->data;
    if (job_persist(j))
        return;
    atomic_store(&j->persisted, true);
    uv_async_send(&j->node->persisted);
    job_apply(j);
}

static void persist_work(uv_work_t *req)
{
    job_persist(req->data);
}

static void apply_work(uv_work_t *req)
{
    job_apply(req->data);
}

static void reply_result(struct sv_node *n, struct waiter *w, const struct sv_sm_result *res)
{
    struct sv_msg m = {0};
    m.status = res->status;
    if (w->type == SV_MSG_PUT_BEGIN && res->status == SV_ST_OK) {
        m.upload = res->upload;
        SV_MSG_SET(&m, SV_F_UPLOAD);
    } else if (w->type != SV_MSG_PUT_CHUNK && res->version) {
        m.version = res->version;
        SV_MSG_SET(&m, SV_F_VERSION);
    }
    if (res->status == SV_ST_BAD_REQUEST && w->type == SV_MSG_PUT_COMMIT) {
        static const char t[] = "upload incomplete: a chunk is missing or the name differs";
        m.msg.p = (const uint8_t *)t;
        m.msg.len = sizeof t - 1;
        SV_MSG_SET(&m, SV_F_MSG);
    }
    send_msg(n, w->conn, w->type, w->req_id, &m);
}

static void serve_ready_reads(struct sv_node *n, struct group *g)
{
    struct waiter **pp = &g->ready_reads;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->read_index <= g->applied) {
            *pp = w->next;
            start_read(n, w);
        } else {
            pp = &w->next;
        }
    }
}

static void fatal(struct sv_node *n, const char *what)
{
    LOG_ERROR("fatal: %s; stopping this node (the cluster keeps serving from the other "
              "replicas; restart the node once the cause is fixed)",
              what);
    n->exit_code = 1;
    n->stopping = true;
    if (!n->jobs)
        uv_stop(&n->loop); /* else once the jobs in flight are done (job_finish) */
}

static void maybe_snapshot(struct sv_node *n, struct group *g);

/* Send the messages of a job's batches that had to wait for the
 * sync (persist before send, raft.h), once. */
static void send_persisted(struct sv_node *n, struct job *j)
{
    if (j->msgs_sent || !atomic_load(&j->persisted))
        return;
    j->msgs_sent = true;
    for (size_t i = 0; i < j->n; i++) {
        struct group *g = j->gs[i];
        if (g->rd_taken)
            send_raft(n, g, g->rd.msgs, g->rd.n_msgs, false);
    }
}

static void on_persisted(uv_async_t *a)
{
    struct sv_node *n = a->data;
    for (struct job *j = n->jobs; j; j = j->next)
        send_persisted(n, j);
}

/* Answer the requests whose entries the job applied (once its apply half is
 * done: with a split job, possibly before its persist half). */
static void job_reply(struct sv_node *n, struct job *j)
{
    j->replied = true;
    for (size_t i = 0; i < j->n; i++) {
        struct group *g = j->gs[i];
        struct sv_raft_ready *rd = &g->rd;
        if (!g->rd_taken)
            continue;
        if (rd->snapshot) {
            g->applied = rd->snapshot->meta.index;
            g->snap_index = rd->snapshot->meta.index;
            LOG_INFO("group %" PRIu64 ": installed a snapshot at index %" PRIu64
                     " from the leader; chunks it references that this node lacks are "
                     "fetched from a replica when first read",
                     g->id, g->applied);
        }
        for (size_t k = 0; k < rd->n_committed; k++) {
            const struct sv_raft_entry *e = &rd->committed[k];
            bool fresh = e->index > g->applied;
            if (fresh) {
                g->applied = e->index;
                g->log_bytes += e->len;
            }
            struct waiter *w;
            while ((w = g->waiting) && w->index <= e->index) {
                g->waiting = w->next;
                if (!g->waiting)
                    g->waiting_tail = &g->waiting;
                if (w->index == e->index && w->term == e->term && fresh)
                    reply_result(n, w, &g->res[k]);
                else
                    reply_status(n, w->conn, w->type, w->req_id, SV_ST_UNAVAILABLE,
                                 "superseded by another leader's entry; retry");
                waiter_free(w);
            }
        }
        serve_ready_reads(n, g);
    }
}

/* Both halves are done: hand the batches back to their groups. */
static void job_finish(struct sv_node *n, struct job *j)
{
    ASSERT(n->jobs == j);
    n->jobs = j->next;
    struct half *bad = j->persist.rc ? &j->persist : j->apply.rc ? &j->apply : NULL;
    if (bad || n->failed) {
        if (bad)
            fatal(n, bad->errmsg[0] ? bad->errmsg : "persist job failed");
        n->failed = true;
        /* Leave the groups busy: nothing more is persisted or answered. */
        free(j->gs);
        free(j);
        uv_stop(&n->loop);
        return;
    }
    send_persisted(n, j);
    if (!j->replied)
        job_reply(n, j);
    for (size_t i = 0; i < j->n; i++) {
        struct group *g = j->gs[i];
        struct sv_raft_ready *rd = &g->rd;
        if (g->snap_staged) {
            g->snap_staged = false;
            free(g->snap.data);
            g->snap.data = NULL;
        }
        if (g->rd_taken) {
            g->rd_taken = false;
            if (g->rd_persist && rd->hs_changed) {
                g->hs_term = rd->hs.term;
                g->hs_vote = rd->hs.vote;
            }
            for (size_t k = 0; k < rd->n_reads; k++) {
                for (struct waiter **pp = &g->reads; *pp; pp = &(*pp)->next) {
                    struct waiter *w = *pp;
                    if (w->ctx != rd->reads[k].ctx)
                        continue;
                    *pp = w->next;
                    w->read_index = rd->reads[k].index;
                    w->next = g->ready_reads;
                    g->ready_reads = w;
                    break;
                }
            }
            sv_raft_advance(g->r, rd);
        }
        g->busy = false; /* in a job for its batch, its snapshot, or both */
        drain(n, g);
        serve_ready_reads(n, g);
        maybe_snapshot(n, g);
    }
    free(j->gs);
    free(j);
    if (n->stopping && !n->jobs)
        uv_stop(&n->loop);
}

static void job_after(uv_work_t *req, int status);

/* h is needed, has not started, its stage is free and no older job's same
 * half is still to be done. */
static bool may_start(const struct half *h, bool older, bool busy)
{
    return h->need && !h->started && !older && !busy;
}

static void start(struct sv_node *n, struct half *h, bool *busy, uv_work_cb work)
{
    h->started = *busy = true;
    uv_queue_work(&n->loop, &h->w, work, job_after);
}

/* Start the halves whose stage is free and whose turn it is: a job's persist
 * after every older job's persist, its apply after every older apply; a job
 * that is not split needs both stages and every older job done. After a
 * failure nothing more starts. */
static void pump(struct sv_node *n)
{
    bool older_p = false, older_a = false; /* an older job's half is not done */
    /* After a full disk, nothing is written before the retry time (on_tick
     * pumps): a persist would only fail on the same disk. */
    bool wait = n->apply_retry_ms && uv_now(&n->loop) < n->apply_retry_ms;
    for (struct job *j = n->jobs; j && !n->failed; j = j->next) {
        if (!j->split) {
            if (may_start(&j->persist, older_p || older_a,
                          n->persist_busy || n->apply_busy || wait)) {
                j->apply.started = n->apply_busy = true;
                start(n, &j->persist, &n->persist_busy, job_work);
            }
        } else {
            if (may_start(&j->persist, older_p, n->persist_busy || wait))
                start(n, &j->persist, &n->persist_busy, persist_work);
            if (may_start(&j->apply, older_a, n->apply_busy || wait))
                start(n, &j->apply, &n->apply_busy, apply_work);
        }
        older_p |= j->persist.need && !j->persist.done;
        older_a |= j->apply.need && !j->apply.done;
    }
}

/* h still keeps its job: running, or waiting to start (after a failure a
 * half that never started never will). */
static bool half_open(const struct sv_node *n, const struct half *h)
{
    return h->need && (h->started ? !h->done : !n->failed);
}

/* A half completed: send what its sync allows, finish the jobs that are done
 * (oldest first), start what may start now. After a failure, jobs whose
 * halves never started are dropped as they reach the head. */
static void advance(struct sv_node *n)
{
    for (struct job *j = n->jobs; j; j = j->next)
        if (!j->persist.rc)
            send_persisted(n, j);
    struct job *j;
    while ((j = n->jobs) && !half_open(n, &j->persist) && !half_open(n, &j->apply))
        job_finish(n, j);
    pump(n);
}

/* h is done and its stage free; a failed half stops the node's jobs. */
static void half_done(struct sv_node *n, struct half *h, bool *busy)
{
    h->done = true;
    *busy = false;
    if (h->rc)
        n->failed = true;
}

/* The apply half of j found the disk full (the segment store's ENOSPC):
 * nothing of it was committed and the entries stay in the Raft log, so it
 * waits and runs again (alone: its persist half is done), instead of the
 * node stopping. Every replica fills at the same rate, so stopping would
 * take the whole shard down. */
static void apply_later(struct sv_node *n, struct job *j)
{
    if (!n->apply_retry_ms)
        LOG_WARN("disk full while applying committed entries (%s): applying paused, tried "
                 "again every %d ms; nothing is lost (the entries are in the Raft log); "
                 "free space in %s to resume",
                 j->apply.errmsg, APPLY_RETRY_MS, n->data_dir);
    n->apply_retry_ms = uv_now(&n->loop) + APPLY_RETRY_MS;
    j->split = true;
    j->apply.started = j->apply.done = false;
    j->apply.rc = 0;
    j->apply.errmsg[0] = 0;
    n->apply_busy = false;
}

/* A half completed: the apply half of a split job, or its persist half, or
 * both halves of a job that is not split. Each reads only the results of
 * the halves it ran (the other one may still be running). */
static void job_after(uv_work_t *req, int status)
{
    (void)status;
    struct job *j = req->data;
    struct sv_node *n = j->node;
    bool whole = req == &j->persist.w && !j->split;
    /* (apply.rc is read only once that half ran: a split job's apply half
     * may still be running when its persist half completes.) */
    if ((req == &j->apply.w || (whole && !j->persist.rc)) && j->apply.rc == -ENOSPC) {
        if (whole) {
            half_done(n, &j->persist, &n->persist_busy);
            atomic_store(&j->persisted, true);
        }
        apply_later(n, j);
        advance(n);
        return;
    }
    if (n->apply_retry_ms && req == &j->apply.w) {
        LOG_INFO("applying committed entries again: the disk has room");
        n->apply_retry_ms = 0;
    }
    if (req == &j->apply.w) {
        half_done(n, &j->apply, &n->apply_busy);
        if (!j->apply.rc)
            job_reply(n, j);
    } else {
        half_done(n, &j->persist, &n->persist_busy);
        if (!j->split)
            half_done(n, &j->apply, &n->apply_busy);
        else if (!j->persist.rc)
            atomic_store(&j->persisted, true);
    }
    advance(n);
}

/* Feed a group what arrived while its batch was on disk. */
static void drain(struct sv_node *n, struct group *g)
{
    struct inmsg *im;
    while ((im = g->inbox) && !g->busy) {
        g->inbox = im->next;
        sv_raft_step(g->r, &im->m);
        sv_raft_msg_free(&im->m);
        free(im);
    }
    if (!g->inbox)
        g->inbox_tail = &g->inbox;
    for (; g->ticks; g->ticks--)
        sv_raft_tick(g->r);
    refresh(g);
    struct prop *p;
    while ((p = g->props)) {
        g->props = p->next;
        g->n_props--;
        do_propose(n, g, p->data, p->len, p->w);
        free(p);
    }
    g->props_tail = &g->props;
    for (struct waiter *w = g->reads; w; w = w->next) {
        if (w->ctx)
            continue;
        w->ctx = ++n->next_ctx;
        if (sv_raft_read_index(g->r, w->ctx))
            w->deadline_ms = 0; /* expires on the next tick: no leader known */
    }
}

/* Take the ready batches of the groups not in a job into a new job, when a
 * stage is free for it and no older job still waits to start: taking them
 * sooner would only make the batches smaller. */
static void cycle(struct sv_node *n)
{
    if (n->stopping || n->failed || n->persist_busy)
        return;
    size_t in_flight = 0;
    for (const struct job *j = n->jobs; j; j = j->next, in_flight++)
        if ((j->persist.need && !j->persist.started) || (j->apply.need && !j->apply.started))
            return;
    if (in_flight >= JOBS_MAX)
        return;
    struct group **gs = NULL;
    size_t count = 0;
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g || g->busy)
            continue; /* its batch is in a job */
        bool ready = sv_raft_has_ready(g->r);
        if (!ready && !g->snap_pending)
            continue;
        if (!gs && !(gs = malloc(n->n_group_ids * sizeof *gs)))
            return;
        if (ready) {
            sv_raft_ready(g->r, &g->rd);
            g->busy = true;
            g->rd_taken = true;
            g->rd_persist =
                g->rd.n_entries || g->rd.snapshot ||
                (g->rd.hs_changed && (g->rd.hs.term != g->hs_term || g->rd.hs.vote != g->hs_vote));
            send_raft(n, g, g->rd.msgs, g->rd.n_msgs, true);
        }
        if (g->snap_pending) {
            g->snap_pending = false;
            g->snap_staged = true;
        }
        g->busy = true;
        gs[count++] = g;
    }
    if (!count)
        return;
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        fatal(n, "out of memory");
        free(gs);
        return;
    }
    j->node = n;
    j->gs = gs;
    j->n = count;
    j->persist.w.data = j;
    j->apply.w.data = j;
    struct job **tail = &n->jobs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = j;
    bool persist = false, apply = false;
    j->split = true;
    for (size_t i = 0; i < count; i++) {
        const struct group *g = gs[i];
        const struct sv_raft_ready *rd = &g->rd;
        persist |= g->snap_staged || (g->rd_taken && g->rd_persist);
        if (!g->rd_taken)
            continue;
        apply |= rd->snapshot || rd->n_committed;
        if (rd->snapshot || (rd->n_committed && rd->n_entries &&
                             rd->committed[rd->n_committed - 1].index >= rd->entries[0].index))
            j->split = false; /* it commits what it persists: in turn */
    }
    j->persist.need = persist || !j->split;
    j->apply.need = apply || !j->split;
    /* Only messages and read states: nothing to wait for but older jobs. */
    atomic_store(&j->persisted, !j->persist.need);
    advance(n);
}

static void on_prepare(uv_prepare_t *h)
{
    cycle(h->data);
}

static void on_check(uv_check_t *h)
{
    cycle(h->data);
}

/* ---- snapshots ---------------------------------------------------------- */

struct snap_job {
    uv_work_t w;
    struct sv_node *node;
    struct group *g;
    uint64_t index;
    struct sv_sm_view *view; /* the state machine at index */
    uint8_t *img;
    size_t len;
    int rc;
};

static void snap_work(uv_work_t *req)
{
    struct snap_job *s = req->data;
    struct sv_node *n = s->node;
    /* No segment sync here: the view holds only committed state, and every
     * commit made its chunks durable first (sm.h), so the chunks the image
     * references are on disk before the log entries that carry them go. */
    s->rc = sv_sm_snapshot(n->sm, s->view, s->g->id, SV_LOG_SNAPSHOT_BYTES_MAX, &s->img, &s->len);
    sv_sm_view_release(n->sm, s->view);
}

static void snap_after(uv_work_t *req, int status)
{
    (void)status;
    struct snap_job *s = req->data;
    struct sv_node *n = s->node;
    struct group *g = s->g;
    n->jobs_in_pool--;
    g->want_snapshot = false;
    if (s->rc) {
        LOG_WARN("snapshot of group %" PRIu64 " at %" PRIu64 ": %s", g->id, s->index,
                 strerror(-s->rc));
    } else if (g->busy || s->index <= g->snap_index) {
        /* The group moved on while the image was made; the next turn retries. */
    } else {
        int rc = sv_raft_snapshot(g->r, s->index, s->img, s->len, SNAPSHOT_TRAILING);
        if (rc) {
            LOG_WARN("snapshot of group %" PRIu64 ": %s", g->id, sv_raft_strerror(rc));
        } else {
            /* Membership is fixed at bootstrap for now, so the latest
             * configuration is the one at the snapshot index. */
            struct sv_raft_status st;
            sv_raft_status(g->r, &st);
            g->snap_index = s->index;
            g->log_bytes = 0;
            g->snap.meta.index = s->index;
            g->snap.meta.term = sv_raft_term_at(g->r, s->index);
            g->snap.meta.conf = st.conf;
            g->snap.len = s->len;
            g->snap.data = s->img; /* moves to the group until the log store has it */
            s->img = NULL;
            g->snap_pending = true;
        }
    }
    free(s->img);
    free(s);
}

/* The raft group keeps every entry since its last snapshot in memory (and
 * the log store on disk): bound both. The image is the state machine at
 * the applied index, taken while no batch of the group is on disk.
 * Persisting the snapshot and compacting the stored log go through the next
 * ready batch (the group reports its new snapshot there). */
static void maybe_snapshot(struct sv_node *n, struct group *g)
{
    if (g->want_snapshot || g->busy || g->snap_pending || g->snap_staged || n->stopping)
        return;
    if (g->applied - g->snap_index < SNAPSHOT_ENTRIES && g->log_bytes < SNAPSHOT_BYTES)
        return;
    struct snap_job *s = calloc(1, sizeof *s);
    if (!s)
        return;
    s->node = n;
    s->g = g;
    s->index = g->applied;
    /* Frozen now: g is in no job, so its committed state is exactly at
     * g->applied, and a later job may apply more of g while the image is
     * made (which then would hold entries past index, applied twice by a
     * follower that installs it). */
    if (!(s->view = sv_sm_view(n->sm))) {
        free(s);
        return;
    }
    s->w.data = s;
    g->want_snapshot = true;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &s->w, snap_work, snap_after);
}

/* ---- reads -------------------------------------------------------------- */

struct read_job {
    uv_work_t w;
    struct waiter *wt;
    uint8_t *out; /* encoded reply body */
    size_t out_len;
    bool repair; /* our copy of the chunk is bad or missing */
    uint8_t chunk_id[SV_SEG_ID_BYTES];
    struct sv_crypto_chunk_ad ad;
};

/* Name chunk idx of object o in r (chunk id and the associated data that
 * binds its ciphertext). */
static void chunk_ref(struct read_job *r, uint64_t group, uint64_t tenant, const struct sv_msg *m,
                      const struct sv_obj *o, uint32_t idx)
{
    sv_chunk_id(group, o->upload, idx, r->chunk_id);
    r->ad.tenant_id = tenant;
    sv_object_id(tenant, m->bucket.p, m->bucket.len, m->key.p, m->key.len, r->ad.object_id);
    r->ad.chunk_index = idx;
    r->ad.version = o->upload;
}

/* Open the chunk r names, read from our segment store with result seg_rc
 * (sealed[0..slen) when 0), into plain (SV_CRYPTO_CHUNK_MAX bytes). 0, 1
 * when our copy is bad or missing (r->repair set), or a status. */
static int open_chunk(struct sv_node *n, struct read_job *r, uint64_t group, int seg_rc,
                      const uint8_t *sealed, size_t slen, uint8_t *plain, size_t *plen)
{
    unsigned idx = r->ad.chunk_index;
    uint64_t upload = r->ad.version;
    int st = 0;
    if (seg_rc == 0) {
        int rc = sv_crypto_open(n->dek, &r->ad, sealed, slen, plain, SV_CRYPTO_CHUNK_MAX, plen);
        if (rc) {
            LOG_WARN("chunk %u of upload %" PRIx64 " in group %" PRIu64
                     " fails authentication (%s): repairing from a replica",
                     idx, upload, group, sv_crypto_strerror(rc));
            pthread_mutex_lock(&n->seg_mu);
            sv_seg_mark_bad(n->seg, r->chunk_id);
            pthread_mutex_unlock(&n->seg_mu);
            st = 1;
        }
    } else if (seg_rc == SV_SEG_E_CORRUPT || seg_rc == SV_SEG_E_NOT_FOUND) {
        LOG_WARN("chunk %u of upload %" PRIx64 " in group %" PRIu64
                 " is %s here: repairing from a replica",
                 idx, upload, group, seg_rc == SV_SEG_E_CORRUPT ? "corrupt" : "missing");
        st = 1;
    } else {
        LOG_ERROR("read chunk: %s", sv_seg_strerror(seg_rc));
        st = SV_ST_INTERNAL;
    }
    if (st == 1)
        r->repair = true;
    return st;
}

struct list_ctx {
    struct sv_item *items;
    uint32_t n;
    bool failed; /* a key could not be copied */
};

static void list_cb(void *arg, const uint8_t *key, size_t klen, const struct sv_obj *o)
{
    struct list_ctx *l = arg;
    struct sv_item *it = &l->items[l->n++];
    memset(it, 0, sizeof *it);
    uint8_t *copy = malloc(klen ? klen : 1);
    if (copy)
        memcpy(copy, key, klen);
    else
        l->failed = true;
    it->key.p = copy;
    it->key.len = copy ? klen : 0;
    it->size = o->size;
    it->version = o->version;
    it->mtime_ms = o->mtime_ms;
    SV_ITEM_SET(it, SV_I_KEY);
    SV_ITEM_SET(it, SV_I_SIZE);
    SV_ITEM_SET(it, SV_I_VERSION);
    SV_ITEM_SET(it, SV_I_MTIME_MS);
}

static void read_work(uv_work_t *req)
{
    struct read_job *r = req->data;
    struct waiter *w = r->wt;
    struct sv_node *n = w->node;
    struct sv_msg m, out = {0};
    uint8_t *plain = NULL, *sealed = NULL;
    bool locked = false;
    struct list_ctx lc = {0};
    if (sv_msg_decode(w->body, w->body_len, &m, NULL, 0)) {
        out.status = SV_ST_BAD_REQUEST;
        goto encode;
    }
    uint64_t tenant = 0;
    if (w->type == SV_MSG_CHUNK_FETCH) {
        uint8_t id[SV_SEG_ID_BYTES];
        sv_chunk_id(w->group, m.upload, (uint32_t)m.chunk, id);
        plain = malloc(SV_CRYPTO_SEALED_MAX);
        size_t len = 0;
        pthread_mutex_lock(&n->seg_mu);
        int rc = plain ? sv_seg_get(n->seg, id, plain, SV_CRYPTO_SEALED_MAX, &len) : -ENOMEM;
        pthread_mutex_unlock(&n->seg_mu);
        out.status = rc == 0                    ? SV_ST_OK
                     : rc == SV_SEG_E_NOT_FOUND ? SV_ST_NOT_FOUND
                     : rc == SV_SEG_E_CORRUPT   ? SV_ST_CORRUPT
                                                : SV_ST_INTERNAL;
        if (rc == 0) {
            out.data.p = plain;
            out.data.len = len;
            SV_MSG_SET(&out, SV_F_DATA);
        }
        goto encode;
    }
    if (w->type == SV_MSG_LIST) {
        uint32_t limit = SV_MSG_HAS(&m, SV_F_LIMIT) && m.limit && m.limit < SV_MSG_LIST_LIMIT_MAX
                             ? (uint32_t)m.limit
                             : SV_MSG_LIST_LIMIT_MAX;
        lc.items = calloc(limit, sizeof *lc.items);
        bool more = false;
        int rc = lc.items ? sv_sm_list(n->sm, w->group, tenant, m.bucket.p, m.bucket.len,
                                       m.prefix.p, m.prefix.len, m.start_after.p, m.start_after.len,
                                       limit, &more, list_cb, &lc)
                          : -ENOMEM;
        out.status = rc || lc.failed ? SV_ST_INTERNAL : SV_ST_OK;
        out.items = lc.items;
        out.n_items = lc.n;
        out.flags = more;
        SV_MSG_SET(&out, SV_F_ITEMS);
        SV_MSG_SET(&out, SV_F_FLAGS);
        goto encode;
    }
    /* The object's record and its chunk are read under seg_mu, which every
     * apply holds: a write that replaces the object and deletes its old
     * chunks cannot come between (the chunk would look missing). */
    if (w->type != SV_MSG_STAT) { /* a STAT reads no chunk: no wait behind an apply */
        pthread_mutex_lock(&n->seg_mu);
        locked = true;
    }
    struct sv_obj o;
    int rc = sv_sm_get(n->sm, w->group, tenant, m.bucket.p, m.bucket.len, m.key.p, m.key.len, &o);
    if (rc == -ENOENT || (rc == 0 && o.deleted)) {
        out.status = SV_ST_NOT_FOUND;
        goto encode;
    }
    if (rc) {
        out.status = SV_ST_INTERNAL;
        goto encode;
    }
    uint32_t idx = 0;
    if (w->type == SV_MSG_GET_CHUNK) {
        if (!SV_MSG_HAS(&m, SV_F_VERSION) || m.version != o.version) {
            out.status = SV_ST_VERSION_CONFLICT;
            out.version = o.version;
            SV_MSG_SET(&out, SV_F_VERSION);
            goto encode;
        }
        if (!SV_MSG_HAS(&m, SV_F_CHUNK) || m.chunk >= o.n_chunks) {
            out.status = SV_ST_BAD_REQUEST;
            goto encode;
        }
        idx = (uint32_t)m.chunk;
    } else {
        out.version = o.version;
        out.size = o.size;
        out.mtime_ms = o.mtime_ms;
        out.n_chunks = o.n_chunks;
        out.upload = o.upload;
        memcpy(out.sha256, o.sha256, 32);
        SV_MSG_SET(&out, SV_F_VERSION);
        SV_MSG_SET(&out, SV_F_SIZE);
        SV_MSG_SET(&out, SV_F_MTIME_MS);
        SV_MSG_SET(&out, SV_F_N_CHUNKS);
        SV_MSG_SET(&out, SV_F_UPLOAD);
        SV_MSG_SET(&out, SV_F_SHA256);
    }
    if (w->type == SV_MSG_STAT || (w->type == SV_MSG_GET && o.n_chunks == 0)) {
        out.status = SV_ST_OK;
        goto encode;
    }
    plain = malloc(SV_CRYPTO_CHUNK_MAX);
    sealed = malloc(SV_CRYPTO_SEALED_MAX);
    if (!plain || !sealed) {
        out.status = SV_ST_INTERNAL;
        goto encode;
    }
    chunk_ref(r, w->group, tenant, &m, &o, idx);
    size_t slen = 0, plen = 0;
    int seg_rc = sv_seg_get(n->seg, r->chunk_id, sealed, SV_CRYPTO_SEALED_MAX, &slen);
    pthread_mutex_unlock(&n->seg_mu);
    locked = false;
    int st = open_chunk(n, r, w->group, seg_rc, sealed, slen, plain, &plen);
    free(sealed);
    sealed = NULL;
    if (st == 1) {
        sv_msg_free(&m);
        free(plain);
        return; /* the loop fetches a healthy copy */
    }
    out.status = st;
    if (st == 0) {
        out.data.p = plain;
        out.data.len = plen;
        SV_MSG_SET(&out, SV_F_DATA);
    }
encode:
    if (locked)
        pthread_mutex_unlock(&n->seg_mu);
    free(sealed);
    SV_MSG_SET(&out, SV_F_STATUS);
    if (sv_msg_encode(&out, &r->out, &r->out_len))
        r->out = NULL;
    for (uint32_t i = 0; i < lc.n; i++)
        free((void *)lc.items[i].key.p);
    free(lc.items);
    if (plain) {
        memset(plain, 0, SV_CRYPTO_CHUNK_MAX);
        free(plain);
    }
    sv_msg_free(&m);
}

static void start_fetch(struct sv_node *n, struct waiter *w, const struct read_job *r);

static void read_after(uv_work_t *req, int status)
{
    (void)status;
    struct read_job *r = req->data;
    struct waiter *w = r->wt;
    struct sv_node *n = w->node;
    n->jobs_in_pool--;
    if (r->repair && w->repairs < REPAIR_ATTEMPTS) {
        w->repairs++;
        start_fetch(n, w, r);
    } else if (r->repair) {
        waiter_fail(w, SV_ST_CORRUPT, "chunk still corrupt after repair");
    } else if (!r->out) {
        waiter_fail(w, SV_ST_INTERNAL, "could not encode the reply");
    } else {
        struct sv_conn *c = sv_tp_conn(n->tp, w->conn);
        if (c && sv_conn_send(c, w->type | SV_MSG_RESP, w->req_id, r->out, r->out_len) == -ENOBUFS)
            sv_conn_close(c, "client does not read its replies");
        waiter_free(w);
    }
    if (r->out) {
        memset(r->out, 0, r->out_len);
        free(r->out);
    }
    free(r);
}

static void start_read(struct sv_node *n, struct waiter *w)
{
    struct read_job *r = calloc(1, sizeof *r);
    if (!r) {
        waiter_fail(w, SV_ST_INTERNAL, "out of memory");
        return;
    }
    r->wt = w;
    r->w.data = r;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &r->w, read_work, read_after);
}

/* ---- repair: fetch a healthy copy of a chunk from another replica ------- */

struct repair_job {
    uv_work_t w;
    struct sv_node *node;
    struct waiter *wt;
    uint8_t id[SV_SEG_ID_BYTES];
    uint8_t *sealed;
    size_t len;
    int rc;
    bool sync_failed; /* the put went through, its sync did not */
};

static void repair_work(uv_work_t *req)
{
    struct repair_job *r = req->data;
    struct sv_node *n = r->node;
    pthread_mutex_lock(&n->seg_mu);
    r->rc = sv_seg_put(n->seg, r->id, r->sealed, r->len);
    if (!r->rc)
        r->sync_failed = (r->rc = sv_seg_sync(n->seg)) != 0;
    pthread_mutex_unlock(&n->seg_mu);
}

static void repair_after(uv_work_t *req, int status)
{
    (void)status;
    struct repair_job *r = req->data;
    struct sv_node *n = r->node;
    n->jobs_in_pool--;
    if (r->sync_failed) {
        char what[128];
        snprintf(what, sizeof what, "segment sync after a repair: %s", sv_seg_strerror(r->rc));
        fatal(n, what);
        waiter_fail(r->wt, SV_ST_UNAVAILABLE, "this node is stopping; retry");
    } else if (r->rc) {
        LOG_ERROR("storing the repaired chunk: %s", sv_seg_strerror(r->rc));
        waiter_fail(r->wt, r->rc == -ENOSPC ? SV_ST_NO_SPACE : SV_ST_INTERNAL,
                    "could not store the repaired chunk");
    } else {
        LOG_INFO("chunk repaired from a replica");
        start_read(n, r->wt); /* read again: now from the repaired copy */
    }
    free(r->sealed);
    free(r);
}

static bool fetch_next(struct sv_node *n, struct fetch *f)
{
    struct group *g = n->groups[f->w->group];
    for (uint32_t i = 0; i < g->n_replicas; i++) {
        if (f->tried >> i & 1 || g->replicas[i] == n->me->id)
            continue;
        f->tried |= 1u << i;
        struct sv_conn *c = peer(n, g->replicas[i]);
        if (!c)
            continue;
        struct sv_msg m = {0};
        m.shard = g->id - 1;
        m.upload = sv_get64be(f->chunk_id + 8);
        m.chunk = (uint64_t)f->chunk_id[16] << 24 | (uint64_t)f->chunk_id[17] << 16 |
                  (uint64_t)f->chunk_id[18] << 8 | f->chunk_id[19];
        SV_MSG_SET(&m, SV_F_SHARD);
        SV_MSG_SET(&m, SV_F_UPLOAD);
        SV_MSG_SET(&m, SV_F_CHUNK);
        uint8_t *body;
        size_t len;
        if (sv_msg_encode(&m, &body, &len))
            return false;
        int rc = sv_conn_send(c, SV_MSG_CHUNK_FETCH, f->id, body, len);
        free(body);
        if (rc == 0) {
            f->deadline_ms = uv_now(&n->loop) + 3000;
            return true;
        }
    }
    return false;
}

static void fetch_done(struct sv_node *n, struct fetch *f)
{
    for (struct fetch **pp = &n->fetches; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    free(f);
}

static void start_fetch(struct sv_node *n, struct waiter *w, const struct read_job *r)
{
    struct fetch *f = calloc(1, sizeof *f);
    if (!f) {
        waiter_fail(w, SV_ST_INTERNAL, "out of memory");
        return;
    }
    f->id = ++n->next_fetch;
    f->w = w;
    memcpy(f->chunk_id, r->chunk_id, sizeof f->chunk_id);
    f->ad = r->ad;
    f->next = n->fetches;
    n->fetches = f;
    if (!fetch_next(n, f)) {
        fetch_done(n, f);
        waiter_fail(w, SV_ST_CORRUPT, "chunk corrupt here and no replica reachable");
    }
}

static void on_fetch_reply(struct sv_node *n, const struct sv_wire_frame *fr)
{
    struct fetch *f = n->fetches;
    while (f && f->id != fr->req_id)
        f = f->next;
    if (!f)
        return; /* late: already answered or given up */
    struct sv_msg m;
    int rc = sv_msg_decode(fr->body, fr->body_len, &m, NULL, 0);
    bool ok = rc == 0 && m.status == SV_ST_OK && SV_MSG_HAS(&m, SV_F_DATA);
    uint8_t *plain = ok ? malloc(SV_CRYPTO_CHUNK_MAX) : NULL;
    size_t plen;
    /* Only a copy that authenticates under the chunk's binding is taken. */
    if (ok && (!plain || sv_crypto_open(n->dek, &f->ad, m.data.p, m.data.len, plain,
                                        SV_CRYPTO_CHUNK_MAX, &plen)))
        ok = false;
    free(plain);
    struct repair_job *r = ok ? calloc(1, sizeof *r) : NULL;
    if (r && (r->sealed = malloc(m.data.len))) {
        memcpy(r->sealed, m.data.p, m.data.len);
        r->len = m.data.len;
        r->node = n;
        r->wt = f->w;
        memcpy(r->id, f->chunk_id, sizeof r->id);
        r->w.data = r;
        n->jobs_in_pool++;
        uv_queue_work(&n->loop, &r->w, repair_work, repair_after);
        fetch_done(n, f);
    } else {
        free(r);
        if (!fetch_next(n, f)) {
            struct waiter *w = f->w;
            fetch_done(n, f);
            waiter_fail(w, SV_ST_CORRUPT, "no healthy copy of the chunk found");
        }
    }
    sv_msg_free(&m);
}

/* ---- requests ----------------------------------------------------------- */

/* A waiter for request f; keep_body copies the body (reads decode it again
 * in the pool; writes have turned it into a command already). */
static struct waiter *waiter_new(struct sv_node *n, struct sv_conn *c,
                                 const struct sv_wire_frame *f, uint64_t group, bool keep_body)
{
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (keep_body) {
        w->body = malloc(f->body_len ? f->body_len : 1);
        if (!w->body) {
            free(w);
            return NULL;
        }
        memcpy(w->body, f->body, f->body_len);
        w->body_len = f->body_len;
    }
    w->node = n;
    w->conn = sv_conn_id(c);
    w->req_id = f->req_id;
    w->type = f->type;
    w->group = group;
    w->deadline_ms = uv_now(&n->loop) + REQUEST_TIMEOUT_MS;
    return w;
}

static bool disk_full(struct sv_node *n, size_t need)
{
    uint64_t now = uv_now(&n->loop);
    if (now - n->disk_checked_ms >= DISK_CHECK_MS || n->disk_checked_ms == 0) {
        struct statvfs sv;
        if (statvfs(n->data_dir, &sv) == 0)
            n->disk_free = (uint64_t)sv.f_bavail * sv.f_frsize;
        n->disk_checked_ms = now;
    }
    /* Each byte of a write lands in a payload file or the log, then in a
     * segment, on every replica; the followers fill as this disk does. */
    return n->disk_free < DISK_RESERVE_BYTES + DISK_WRITE_FACTOR * (n->unapplied + need);
}

static void handle_map(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    uint32_t count = n->cfg.n_nodes + n->cfg.n_shards;
    struct sv_item *items = calloc(count, sizeof *items);
    if (!items) {
        reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++) {
        struct sv_item *it = &items[i];
        const struct sv_cfg_node *cn = &n->cfg.nodes[i];
        it->id = cn->id;
        it->addr.p = (const uint8_t *)cn->addr;
        it->addr.len = strlen(cn->addr);
        it->zone.p = (const uint8_t *)cn->zone;
        it->zone.len = strlen(cn->zone);
        SV_ITEM_SET(it, SV_I_ID);
        SV_ITEM_SET(it, SV_I_ADDR);
        SV_ITEM_SET(it, SV_I_ZONE);
    }
    for (uint32_t s = 0; s < n->cfg.n_shards; s++) {
        struct sv_item *it = &items[n->cfg.n_nodes + s];
        it->id = s;
        it->n_replicas = sv_cfg_replicas(&n->cfg, s + 1, it->replicas);
        SV_ITEM_SET(it, SV_I_ID);
        SV_ITEM_SET(it, SV_I_REPLICAS);
        struct group *g = n->groups[s + 1];
        if (g && g->leader) {
            it->leader = g->leader;
            SV_ITEM_SET(it, SV_I_LEADER);
        }
    }
    struct sv_msg m = {0};
    m.n_shards = n->cfg.n_shards;
    m.items = items;
    m.n_items = count;
    m.node = n->me->id;
    SV_MSG_SET(&m, SV_F_N_SHARDS);
    SV_MSG_SET(&m, SV_F_ITEMS);
    SV_MSG_SET(&m, SV_F_NODE);
    send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}

static void handle_status(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct sv_item *items = calloc(n->n_group_ids, sizeof *items);
    if (!items) {
        reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    uint32_t count = 0;
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g)
            continue;
        struct sv_item *it = &items[count++];
        const char *role = sv_raft_role_name(g->role);
        it->id = id - 1; /* shard s is group s + 1 */
        it->role.p = (const uint8_t *)role;
        it->role.len = strlen(role);
        it->leader = g->leader;
        it->term = g->term;
        it->applied = g->applied;
        it->commit = g->commit;
        it->n_replicas = g->n_replicas;
        memcpy(it->replicas, g->replicas, g->n_replicas * sizeof g->replicas[0]);
        SV_ITEM_SET(it, SV_I_ID);
        SV_ITEM_SET(it, SV_I_ROLE);
        SV_ITEM_SET(it, SV_I_LEADER);
        SV_ITEM_SET(it, SV_I_TERM);
        SV_ITEM_SET(it, SV_I_APPLIED);
        SV_ITEM_SET(it, SV_I_COMMIT);
        SV_ITEM_SET(it, SV_I_REPLICAS);
    }
    struct sv_msg m = {0};
    m.node = n->me->id;
    m.addr.p = (const uint8_t *)n->me->addr;
    m.addr.len = strlen(n->me->addr);
    m.zone.p = (const uint8_t *)n->me->zone;
    m.zone.len = strlen(n->me->zone);
    m.n_shards = n->cfg.n_shards;
    m.items = items;
    m.n_items = count;
    SV_MSG_SET(&m, SV_F_NODE);
    SV_MSG_SET(&m, SV_F_ADDR);
    SV_MSG_SET(&m, SV_F_ZONE);
    SV_MSG_SET(&m, SV_F_N_SHARDS);
    SV_MSG_SET(&m, SV_F_ITEMS);
    send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}

/* Encode cmd into a new buffer, sealing plain (may be NULL) for (tenant,
 * bucket/key, chunk, upload) straight into the command's data. NULL + status
 * on error. */
static uint8_t *build_cmd(struct sv_node *n, struct sv_cmd *cmd, const struct sv_bytes *plain,
                          size_t *len, int *status)
{
    *status = SV_ST_OK;
    cmd->data = NULL;
    cmd->data_len = plain && plain->len ? (uint32_t)sv_crypto_sealed_len(plain->len) : 0;
    *len = sv_cmd_encoded_len(cmd);
    uint8_t *buf = malloc(*len);
    if (!buf) {
        *status = SV_ST_INTERNAL;
        return NULL;
    }
    sv_cmd_encode(cmd, buf);
    if (cmd->data_len) {
        struct sv_crypto_chunk_ad ad = {
            .tenant_id = cmd->tenant, .chunk_index = cmd->chunk, .version = cmd->upload};
        sv_object_id(cmd->tenant, cmd->bucket, cmd->bucket_len, cmd->key, cmd->key_len,
                     ad.object_id);
        size_t slen;
        int rc = sv_crypto_seal(n->dek, &ad, plain->p, plain->len, buf + *len - cmd->data_len,
                                cmd->data_len, &slen);
        if (rc) {
            LOG_ERROR("seal: %s", sv_crypto_strerror(rc));
            free(buf);
            *status = SV_ST_INTERNAL;
            return NULL;
        }
    }
    return buf;
}

static void handle_write(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                         const struct sv_msg *m, struct group *g)
{
    uint64_t conn = sv_conn_id(c);
    struct sv_cmd cmd = {0};
    cmd.tenant = 0;
    cmd.bucket = m->bucket.p;
    cmd.bucket_len = (uint16_t)m->bucket.len;
    cmd.key = m->key.p;
    cmd.key_len = (uint16_t)m->key.len;
    cmd.session = m->session;
    cmd.seq = m->seq;
    cmd.ack_below = m->ack_below;
    cmd.has_if_version = SV_MSG_HAS(m, SV_F_IF_VERSION);
    cmd.if_version = m->if_version;
    cmd.mtime_ms = wall_ms();
    cmd.size = m->size;
    memcpy(cmd.sha256, m->sha256, 32);
    const struct sv_bytes *plain = NULL;
    bool ok = true;
    switch (f->type) {
    case SV_MSG_PUT:
        ok = SV_MSG_HAS(m, SV_F_SESSION) && SV_MSG_HAS(m, SV_F_SEQ) && SV_MSG_HAS(m, SV_F_SIZE) &&
             SV_MSG_HAS(m, SV_F_SHA256) && m->data.len == m->size && m->size <= SV_MSG_CHUNK_MAX;
        cmd.type = SV_CMD_PUT;
        cmd.upload = new_upload_id(g);
        plain = &m->data;
        break;
    case SV_MSG_PUT_BEGIN:
        cmd.type = SV_CMD_BEGIN;
        cmd.upload = new_upload_id(g);
        break;
    case SV_MSG_PUT_CHUNK:
        ok = SV_MSG_HAS(m, SV_F_UPLOAD) && SV_MSG_HAS(m, SV_F_CHUNK) && SV_MSG_HAS(m, SV_F_DATA) &&
             m->data.len > 0 && m->data.len <= SV_MSG_CHUNK_MAX && m->chunk < SV_SM_CHUNKS_MAX;
        cmd.type = SV_CMD_CHUNK;
        cmd.upload = m->upload;
        cmd.chunk = (uint32_t)m->chunk;
        plain = &m->data;
        break;
    case SV_MSG_PUT_COMMIT:
        ok = SV_MSG_HAS(m, SV_F_UPLOAD) && SV_MSG_HAS(m, SV_F_N_CHUNKS) &&
             SV_MSG_HAS(m, SV_F_SIZE) && SV_MSG_HAS(m, SV_F_SHA256) &&
             SV_MSG_HAS(m, SV_F_SESSION) && SV_MSG_HAS(m, SV_F_SEQ) &&
             m->n_chunks <= SV_SM_CHUNKS_MAX;
        cmd.type = SV_CMD_COMMIT;
        cmd.upload = m->upload;
        cmd.n_chunks = (uint32_t)m->n_chunks;
        break;
    default: /* SV_MSG_DELETE */
        ok = SV_MSG_HAS(m, SV_F_SESSION) && SV_MSG_HAS(m, SV_F_SEQ);
        cmd.type = SV_CMD_DELETE;
        break;
    }
    if (!ok) {
        reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                     "missing or invalid field for this request");
        return;
    }
    if (cmd.type != SV_CMD_DELETE && disk_full(n, plain ? plain->len : 0)) {
        char t[96];
        snprintf(t, sizeof t, "disk full on node %" PRIu64 "; nothing was written", n->me->id);
        reply_status(n, conn, f->type, f->req_id, SV_ST_NO_SPACE, t);
        return;
    }
    int status;
    size_t len;
    uint8_t *buf = build_cmd(n, &cmd, plain, &len, &status);
    if (!buf) {
        reply_status(n, conn, f->type, f->req_id, status, "could not build the command");
        return;
    }
    struct waiter *w = waiter_new(n, c, f, g->id, false);
    if (!w) {
        free(buf);
        reply_status(n, conn, f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    w->unapplied = len;
    n->unapplied += len;
    propose(n, g, buf, len, w);
}

static void handle_read(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        const struct sv_msg *m, struct group *g)
{
    struct waiter *w = waiter_new(n, c, f, g->id, true);
    if (!w) {
        reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    bool stale = SV_MSG_HAS(m, SV_F_CONSISTENCY) && m->consistency == 1;
    /* A chunk of a given version never changes: any replica holding it may
     * serve it, and a peer's repair fetch is never linearised. */
    if (stale || f->type == SV_MSG_GET_CHUNK || f->type == SV_MSG_CHUNK_FETCH) {
        start_read(n, w);
        return;
    }
    /* Linearizable: ReadIndex (thesis §6.4) through the leader. */
    if (g->role != SV_RAFT_LEADER) {
        reply_not_leader(n, w->conn, w->type, w->req_id, g->leader);
        waiter_free(w);
        return;
    }
    w->next = g->reads;
    g->reads = w;
    if (!g->busy) {
        w->ctx = ++n->next_ctx;
        if (sv_raft_read_index(g->r, w->ctx))
            w->deadline_ms = 0;
    }
}

static void on_request(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    uint64_t conn = sv_conn_id(c);
    struct sv_msg m;
    char em[128] = "";
    int rc = sv_msg_decode(f->body, f->body_len, &m, em, sizeof em);
    if (rc) {
        char why[192];
        snprintf(why, sizeof why, "malformed request body: %s", em);
        sv_conn_close(c, why);
        sv_msg_free(&m);
        return;
    }
    if (n->stopping) {
        reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE, "node is shutting down");
        goto out;
    }
    switch (f->type) {
    case SV_MSG_MAP:
        handle_map(n, c, f);
        goto out;
    case SV_MSG_STATUS:
        handle_status(n, c, f);
        goto out;
    case SV_MSG_PUT:
    case SV_MSG_PUT_BEGIN:
    case SV_MSG_PUT_CHUNK:
    case SV_MSG_PUT_COMMIT:
    case SV_MSG_DELETE:
    case SV_MSG_GET:
    case SV_MSG_GET_CHUNK:
    case SV_MSG_STAT:
    case SV_MSG_LIST:
    case SV_MSG_CHUNK_FETCH:
        break;
    default:
        reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST, "unknown request type");
        goto out;
    }
    uint64_t shard;
    if (f->type == SV_MSG_LIST || f->type == SV_MSG_CHUNK_FETCH) {
        if (!SV_MSG_HAS(&m, SV_F_SHARD) || m.shard >= n->cfg.n_shards ||
            (f->type == SV_MSG_LIST && !sv_bucket_valid(m.bucket.p, m.bucket.len))) {
            reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "needs a valid SHARD and BUCKET");
            goto out;
        }
        shard = m.shard;
    } else {
        if (!sv_bucket_valid(m.bucket.p, m.bucket.len) || !sv_key_valid(m.key.p, m.key.len)) {
            reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "invalid bucket or key name");
            goto out;
        }
        shard = sv_shard_of(sv_object_hash(0, m.bucket.p, m.bucket.len, m.key.p, m.key.len),
                            n->cfg.n_shards);
    }
    if (f->type == SV_MSG_CHUNK_FETCH) {
        const char *pn = sv_conn_peer_name(c);
        if (!pn || strncmp(pn, "node-", 5)) {
            sv_conn_close(c, "chunk fetch from a connection without a node certificate");
            goto out;
        }
    }
    struct group *g = n->groups[shard + 1];
    if (!g) {
        uint64_t ids[SV_CFG_REPLICAS_MAX];
        sv_cfg_replicas(&n->cfg, shard + 1, ids);
        reply_not_leader(n, conn, f->type, f->req_id, ids[0]);
        goto out;
    }
    bool write = f->type == SV_MSG_PUT || f->type == SV_MSG_PUT_BEGIN ||
                 f->type == SV_MSG_PUT_CHUNK || f->type == SV_MSG_PUT_COMMIT ||
                 f->type == SV_MSG_DELETE;
    if (write) {
        if (g->role != SV_RAFT_LEADER)
            reply_not_leader(n, conn, f->type, f->req_id, g->leader);
        else
            handle_write(n, c, f, &m, g);
    } else {
        handle_read(n, c, f, &m, g);
    }
out:
    sv_msg_free(&m);
}

static void on_frame(void *arg, struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct sv_node *n = arg;
    if (f->type == SV_MSG_RAFT)
        on_raft(n, c, f);
    else if (f->type == (SV_MSG_CHUNK_FETCH | SV_MSG_RESP))
        on_fetch_reply(n, f);
    else if (f->type & SV_MSG_RESP)
        sv_conn_close(c, "unexpected response frame");
    else
        on_request(n, c, f);
}

/* ---- timers ------------------------------------------------------------- */

static void expire(struct sv_node *n, struct waiter **list, uint64_t now)
{
    struct waiter **pp = list;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->deadline_ms > now) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (w->type == SV_MSG_GET || w->type == SV_MSG_STAT || w->type == SV_MSG_LIST) {
            struct group *g = n->groups[w->group];
            reply_not_leader(n, w->conn, w->type, w->req_id, g ? g->leader : 0);
            waiter_free(w);
        } else {
            waiter_fail(w, SV_ST_UNAVAILABLE, "timed out waiting for the shard; retry");
        }
    }
}

struct scan_job {
    uv_work_t w;
    struct sv_node *node;
    struct group *g;
    uint64_t before_ms;
    uint64_t ids[EXPIRED_BATCH];
    size_t n;
};

static void scan_work(uv_work_t *req)
{
    struct scan_job *s = req->data;
    sv_sm_expired_uploads(s->node->sm, s->g->id, s->before_ms, s->ids, EXPIRED_BATCH, &s->n);
}

static void scan_after(uv_work_t *req, int status)
{
    (void)status;
    struct scan_job *s = req->data;
    struct sv_node *n = s->node;
    n->jobs_in_pool--;
    for (size_t i = 0; i < s->n && s->g->role == SV_RAFT_LEADER && !n->stopping; i++) {
        /* mtime_ms: the abort holds only if the upload is still idle when
         * it applies (a chunk may be in the log ahead of it). */
        struct sv_cmd cmd = {.type = SV_CMD_ABORT, .upload = s->ids[i], .mtime_ms = s->before_ms};
        size_t len = sv_cmd_encoded_len(&cmd);
        uint8_t *buf = malloc(len);
        if (!buf)
            break;
        sv_cmd_encode(&cmd, buf);
        LOG_INFO("group %" PRIu64 ": removing abandoned upload %" PRIx64, s->g->id, s->ids[i]);
        propose(n, s->g, buf, len, NULL);
    }
    free(s);
}

/* The meta group records the cluster map once, at bootstrap; every member
 * then checks its own cluster.conf against the recorded map, so a node
 * started with a different configuration says so loudly. */
struct map_job {
    uv_work_t w;
    struct sv_node *node;
    uint8_t *mine, *rec;
    size_t mine_len, rec_len;
    int rc;
};

static void map_work(uv_work_t *req)
{
    struct map_job *m = req->data;
    m->rc = sv_cfg_map_encode(&m->node->cfg, &m->mine, &m->mine_len);
    if (!m->rc)
        m->rc = sv_sm_map(m->node->sm, 0, &m->rec, &m->rec_len);
}

static void map_after(uv_work_t *req, int status)
{
    (void)status;
    struct map_job *m = req->data;
    struct sv_node *n = m->node;
    struct group *g = n->groups[0];
    n->jobs_in_pool--;
    g->map_busy = false;
    if (m->rc == -ENOENT && g->role == SV_RAFT_LEADER && !n->stopping) {
        struct sv_cmd cmd = {
            .type = SV_CMD_MAP, .data = m->mine, .data_len = (uint32_t)m->mine_len};
        size_t len = sv_cmd_encoded_len(&cmd);
        uint8_t *buf = malloc(len);
        if (buf) {
            sv_cmd_encode(&cmd, buf);
            LOG_INFO("meta group: recording the cluster map (%u nodes, %u shards)", n->cfg.n_nodes,
                     n->cfg.n_shards);
            propose(n, g, buf, len, NULL);
        }
    } else if (m->rc == 0) {
        bool same = m->rec_len == m->mine_len && !memcmp(m->rec, m->mine, m->mine_len);
        if (same)
            LOG_INFO("meta group: this node's cluster.conf matches the recorded cluster map");
        else
            LOG_ERROR("meta group: this node's cluster.conf DIFFERS from the cluster map "
                      "recorded at bootstrap: every node must be started with the same file");
        g->map_state = same ? 1 : 2;
    }
    free(m->mine);
    free(m->rec);
    free(m);
}

static void check_map(struct sv_node *n)
{
    struct group *g = n->groups[0];
    if (!g || g->map_state || g->map_busy || g->applied == 0)
        return;
    struct map_job *m = calloc(1, sizeof *m);
    if (!m)
        return;
    m->node = n;
    m->w.data = m;
    g->map_busy = true;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &m->w, map_work, map_after);
}

static void scan_uploads(struct sv_node *n)
{
    uint64_t before = wall_ms() - (uint64_t)n->cfg.upload_ttl_s * 1000;
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g || g->role != SV_RAFT_LEADER)
            continue;
        struct scan_job *s = calloc(1, sizeof *s);
        if (!s)
            return;
        s->node = n;
        s->g = g;
        s->before_ms = before;
        s->w.data = s;
        n->jobs_in_pool++;
        uv_queue_work(&n->loop, &s->w, scan_work, scan_after);
    }
}

struct compact_job {
    uv_work_t w;
    struct sv_node *node;
    uint64_t reclaimed;
    uint64_t held_ns, total_ns; /* the segment store was held for held_ns of total_ns */
    int rc;
    char errmsg[SV_SEG_ERRMSG_MAX];
};

static void compact_work(uv_work_t *req)
{
    struct compact_job *cj = req->data;
    struct sv_node *n = cj->node;
    struct sv_seg_emptied e;
    /* The copies may take the free space down to half the reserve, no
     * further: on a disk every replica fills alike, compaction must not be
     * what fills it. */
    struct statvfs sv;
    uint64_t budget = 0;
    if (statvfs(n->data_dir, &sv) == 0) {
        uint64_t free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
        budget = free_bytes > DISK_RESERVE_BYTES / 2 ? free_bytes - DISK_RESERVE_BYTES / 2 : 0;
    }
    pthread_mutex_lock(&n->seg_mu);
    uint64_t t0 = uv_hrtime();
    cj->rc = sv_seg_compact_keep(n->seg, 0.5, budget, &cj->reclaimed, &e);
    cj->held_ns = uv_hrtime() - t0;
    if (cj->rc)
        snprintf(cj->errmsg, sizeof cj->errmsg, "%s", sv_seg_errmsg(n->seg));
    pthread_mutex_unlock(&n->seg_mu);
    /* Freeing the emptied files is the slow part: applies go on meanwhile. */
    if (!cj->rc)
        cj->rc = sv_seg_unlink_emptied(&e, cj->errmsg, sizeof cj->errmsg);
    cj->total_ns = uv_hrtime() - t0;
}

static void compact_after(uv_work_t *req, int status)
{
    (void)status;
    struct compact_job *cj = req->data;
    cj->node->jobs_in_pool--;
    if (cj->rc == -ENOSPC) {
        LOG_WARN("segment compaction: %s (%s); nothing was lost", sv_seg_strerror(cj->rc),
                 cj->errmsg);
    } else if (cj->rc) {
        /* A failed write, read or sync of the store: what the disk holds is
         * in doubt (sm.h: nothing may claim more than the disk holds). */
        char what[SV_SEG_ERRMSG_MAX + 64];
        snprintf(what, sizeof what, "segment compaction: %s (%s)", sv_seg_strerror(cj->rc),
                 cj->errmsg);
        fatal(cj->node, what);
    } else if (cj->reclaimed)
        LOG_INFO("segment compaction reclaimed %" PRIu64 " bytes in %" PRIu64 " ms, %" PRIu64
                 " ms of it holding the segment store",
                 cj->reclaimed, cj->total_ns / 1000000, cj->held_ns / 1000000);
    free(cj);
}

/* Deleted and replaced chunks leave dead bytes in their segments: copy the
 * live records of mostly-dead segments forward and remove the old files. */
static void compact_segments(struct sv_node *n)
{
    struct compact_job *cj = calloc(1, sizeof *cj);
    if (!cj)
        return;
    cj->node = n;
    cj->w.data = cj;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &cj->w, compact_work, compact_after);
}

static void on_tick(uv_timer_t *t)
{
    struct sv_node *n = t->data;
    uint64_t now = uv_now(&n->loop);
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g)
            continue;
        if (g->busy) {
            g->ticks++;
        } else {
            sv_raft_tick(g->r);
            refresh(g);
        }
        expire(n, &g->waiting, now);
        g->waiting_tail = &g->waiting;
        for (struct waiter *w = g->waiting; w; w = w->next)
            g->waiting_tail = &w->next;
        expire(n, &g->reads, now);
        expire(n, &g->ready_reads, now);
    }
    for (struct fetch *f = n->fetches, *next; f; f = next) {
        next = f->next;
        if (f->deadline_ms > now || fetch_next(n, f))
            continue;
        struct waiter *w = f->w;
        fetch_done(n, f);
        waiter_fail(w, SV_ST_CORRUPT, "no replica answered with a healthy copy of the chunk");
    }
    if (now - n->last_upload_scan_ms >= UPLOAD_SCAN_MS) {
        n->last_upload_scan_ms = now;
        scan_uploads(n);
    }
    if (now - n->last_map_check_ms >= MAP_CHECK_MS) {
        n->last_map_check_ms = now;
        check_map(n);
    }
    if (n->apply_retry_ms && now >= n->apply_retry_ms)
        advance(n);
    if (now - n->last_compact_ms >= SEG_COMPACT_MS && !n->stopping) {
        n->last_compact_ms = now;
        compact_segments(n);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct sv_node *n = s->data;
    LOG_INFO("signal %d: stopping", signum);
    n->stopping = true;
    if (n->apply_retry_ms) {
        /* Applying waits for room that may never come: the entries stay in
         * the Raft log, and are applied after the next start. */
        n->failed = true;
        advance(n);
    }
    if (!n->jobs)
        uv_stop(&n->loop);
}

static void on_close(void *arg, struct sv_conn *c, int err, const char *reason)
{
    (void)arg, (void)c, (void)err, (void)reason;
}

/* ---- open / run --------------------------------------------------------- */

static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t r = read(fd, buf, cap);
    int err = r < 0 ? -errno : 0;
    close(fd);
    if (r >= 0)
        *len = (size_t)r;
    return err;
}

int sv_node_keygen(const char *master_path, const char *data_key_path, char *errmsg, size_t errlen)
{
    int rc = sv_crypto_master_create(master_path, 1, errmsg, errlen);
    if (rc)
        return rc;
    struct sv_crypto_key *kek = NULL, *dek = NULL;
    uint8_t wrapped[SV_CRYPTO_WRAPPED_LEN];
    rc = sv_crypto_master_load(master_path, &kek, errmsg, errlen);
    if (!rc)
        rc = sv_crypto_key_generate(1, &dek);
    if (!rc)
        rc = sv_crypto_dek_wrap(kek, 0, dek, wrapped, errmsg, errlen);
    if (!rc) {
        int fd = open(data_key_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = -errno;
            snprintf(errmsg, errlen, "%s: %s", data_key_path, strerror(errno));
        } else {
            if (write(fd, wrapped, sizeof wrapped) != (ssize_t)sizeof wrapped || fsync(fd)) {
                rc = -EIO;
                snprintf(errmsg, errlen, "%s: write failed", data_key_path);
            }
            close(fd);
        }
    }
    sv_crypto_key_free(dek);
    sv_crypto_key_free(kek);
    return rc;
}

static int open_group(struct sv_node *n, uint64_t id, char *errmsg, size_t errlen)
{
    struct group *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->id = id;
    g->n_replicas = sv_cfg_replicas(&n->cfg, id, g->replicas);
    g->inbox_tail = &g->inbox;
    g->props_tail = &g->props;
    g->waiting_tail = &g->waiting;
    struct sv_raft_options o;
    sv_raft_options_default(&o, n->me->id);
    o.election_ticks = ELECTION_TICKS;
    o.heartbeat_ticks = 1;
    o.max_msg_bytes = RAFT_MSG_BYTES;
    o.seed = n->me->id * 1000003u + id * 7919u + (uint64_t)time(NULL);
    struct sv_logstore_loaded l = {0};
    int rc = n->log->ops->load(n->log, id, &l);
    if (rc == 0) {
        uint64_t applied = 0;
        rc = sv_sm_applied(n->sm, id, &applied);
        uint64_t snap = l.restore.snapshot ? l.restore.snapshot->meta.index : 0;
        if (!rc && applied < snap) {
            /* The state machine lost applied entries that the snapshot covers
             * (only after a power failure): install the snapshot again. */
            rc = sv_sm_install(n->sm, n->seg, id, snap, l.snap.data, l.snap.len);
            applied = snap;
        }
        l.restore.applied = applied;
        /* Batches that only moved the commit index were not synced: the
         * stored commit may lag, but never below what was applied. */
        if (l.restore.hs.commit < applied)
            l.restore.hs.commit = applied;
        g->hs_term = l.restore.hs.term;
        g->hs_vote = l.restore.hs.vote;
        if (!rc)
            rc = sv_raft_create(&o, &l.restore, &g->r);
        g->applied = applied;
        g->snap_index = snap;
    } else if (rc == SV_LOG_E_NOT_FOUND) {
        rc = sv_raft_create(&o, NULL, &g->r);
        struct sv_raft_conf conf = {0};
        for (uint32_t i = 0; i < g->n_replicas; i++) {
            conf.servers[i].id = g->replicas[i];
            conf.servers[i].role = SV_RAFT_VOTER;
        }
        conf.n = g->n_replicas;
        if (!rc)
            rc = sv_raft_bootstrap(g->r, &conf);
    }
    sv_logstore_loaded_free(&l);
    if (rc) {
        snprintf(errmsg, errlen, "group %" PRIu64 ": %s", id,
                 rc <= SV_RAFT_E_NOT_LEADER && rc > SV_RAFT_E_LAST_ - 1 ? sv_raft_strerror(rc)
                                                                        : sv_logstore_strerror(rc));
        sv_raft_destroy(g->r);
        free(g);
        return rc;
    }
    refresh(g);
    n->groups[id] = g;
    return 0;
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0700) && errno != EEXIST)
        return -errno;
    return 0;
}

int sv_node_open(const char *config_path, uint64_t id, struct sv_node **out, char *errmsg,
                 size_t errlen)
{
    *out = NULL;
    log_node = id;
    struct sv_node *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    int rc = sv_cfg_load(config_path, &n->cfg, errmsg, errlen);
    if (rc)
        goto err;
    n->me = sv_cfg_node(&n->cfg, id);
    if (!n->me) {
        snprintf(errmsg, errlen, "node %" PRIu64 " is not in %s", id, config_path);
        rc = -EINVAL;
        goto err;
    }
    char path[SV_CFG_PATH_MAX + 32], cert[SV_CFG_PATH_MAX + 16], key[SV_CFG_PATH_MAX + 16];
    snprintf(n->data_dir, sizeof n->data_dir, "%s/data", n->me->dir);
    snprintf(cert, sizeof cert, "%s/node.pem", n->me->dir);
    snprintf(key, sizeof key, "%s/node.key", n->me->dir);
    if ((rc = mkdir_p(n->me->dir)) || (rc = mkdir_p(n->data_dir))) {
        snprintf(errmsg, errlen, "%s: %s", n->data_dir, strerror(-rc));
        goto err;
    }
    /* Keys: the data key is unwrapped with the master key, kept in memory only. */
    rc = sv_crypto_master_load(n->cfg.master_key, &n->kek, errmsg, errlen);
    if (rc)
        goto err;
    uint8_t wrapped[SV_CRYPTO_WRAPPED_LEN + 1];
    size_t wlen = 0;
    rc = read_file(n->cfg.data_key, wrapped, sizeof wrapped, &wlen);
    if (!rc)
        rc = sv_crypto_dek_unwrap(n->kek, 0, wrapped, wlen, &n->dek, errmsg, errlen);
    else
        snprintf(errmsg, errlen, "%s: %s", n->cfg.data_key, strerror(-rc));
    if (rc)
        goto err;
#ifdef __GLIBC__
    /* Chunks pass through malloc'd buffers of 1-2 MiB (frames, sealing, Raft
     * entries). With glibc's defaults such buffers go back to the kernel on
     * free (munmap, heap trimming) and are page-faulted in and zeroed again on
     * the next use: about a quarter of the nodes' CPU on 64 MiB puts
     * (measured). Keep them in the heap. Process-wide; svd runs one node. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    /* Stores. */
    snprintf(path, sizeof path, "%s/raftlog", n->data_dir);
    rc = sv_logstore_leveldb_ops.open(path, &n->log, errmsg, errlen);
    if (rc)
        goto err;
    snprintf(path, sizeof path, "%s/chunks", n->data_dir);
    rc = sv_seg_open(path, NULL, &n->seg, errmsg, errlen);
    if (rc)
        goto err;
    pthread_mutex_init(&n->seg_mu, NULL);
    snprintf(path, sizeof path, "%s/meta", n->data_dir);
    rc = sv_sm_open(path, &n->sm, errmsg, errlen);
    if (rc)
        goto err;
    /* Groups placed here. */
    n->n_group_ids = n->cfg.n_shards + 1;
    n->groups = calloc(n->n_group_ids, sizeof *n->groups);
    if (!n->groups) {
        rc = -ENOMEM;
        goto err;
    }
    for (uint32_t gid = 0; gid < n->n_group_ids; gid++) {
        uint64_t ids[SV_CFG_REPLICAS_MAX];
        uint32_t k = sv_cfg_replicas(&n->cfg, gid, ids);
        for (uint32_t i = 0; i < k; i++) {
            if (ids[i] == id && (rc = open_group(n, gid, errmsg, errlen)))
                goto err;
        }
    }
    /* Loop and transport. */
    rc = uv_loop_init(&n->loop);
    if (rc) {
        snprintf(errmsg, errlen, "uv_loop_init: %s", uv_strerror(rc));
        goto err;
    }
    struct sv_tp_config tc = {.loop = &n->loop,
                              .listen_addr = n->me->addr,
                              .ca_file = n->cfg.ca,
                              .cert_file = cert,
                              .key_file = key,
                              .arg = n,
                              .on_frame = on_frame,
                              .on_close = on_close};
    rc = sv_tp_start(&tc, &n->tp, errmsg, errlen);
    if (rc)
        goto err_loop;
    uv_timer_init(&n->loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    uv_prepare_init(&n->loop, &n->prepare);
    n->prepare.data = n;
    uv_prepare_start(&n->prepare, on_prepare);
    uv_async_init(&n->loop, &n->persisted, on_persisted);
    n->persisted.data = n;
    uv_check_init(&n->loop, &n->check);
    n->check.data = n;
    uv_check_start(&n->check, on_check);
    uv_signal_init(&n->loop, &n->sigterm);
    n->sigterm.data = n;
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_init(&n->loop, &n->sigint);
    n->sigint.data = n;
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uint32_t hosted = 0;
    for (uint32_t gid = 0; gid < n->n_group_ids; gid++)
        hosted += n->groups[gid] != NULL;
    LOG_INFO("listening on %s (zone %s), %u groups hosted of %u shards + meta", n->me->addr,
             n->me->zone, hosted, n->cfg.n_shards);
    *out = n;
    return 0;
err_loop:
    uv_loop_close(&n->loop);
err:
    if (n->groups) {
        for (uint32_t gid = 0; gid < n->n_group_ids; gid++) {
            if (n->groups[gid]) {
                sv_raft_destroy(n->groups[gid]->r);
                free(n->groups[gid]);
            }
        }
        free(n->groups);
    }
    sv_sm_close(n->sm);
    sv_seg_close(n->seg);
    if (n->log)
        n->log->ops->close(n->log);
    sv_crypto_key_free(n->dek);
    sv_crypto_key_free(n->kek);
    free(n);
    return rc ? rc : -EINVAL;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void free_list(struct waiter *w)
{
    while (w) {
        struct waiter *next = w->next;
        waiter_free(w);
        w = next;
    }
}

int sv_node_run(struct sv_node *n)
{
    uv_run(&n->loop, UV_RUN_DEFAULT);
    /* Stopping: let the running persist job and pool jobs finish. */
    n->stopping = true;
    while (n->jobs || n->jobs_in_pool > 0)
        uv_run(&n->loop, UV_RUN_ONCE);
    sv_tp_stop(n->tp);
    uv_walk(&n->loop, close_walk, NULL);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&n->loop);
    if (rc)
        LOG_WARN("loop close: %s", uv_strerror(rc));
    int code = n->exit_code;
    for (struct fetch *f = n->fetches, *next; f; f = next) {
        next = f->next;
        waiter_free(f->w);
        free(f);
    }
    for (uint32_t gid = 0; gid < n->n_group_ids; gid++) {
        struct group *g = n->groups[gid];
        if (!g)
            continue;
        free_list(g->waiting);
        free_list(g->reads);
        free_list(g->ready_reads);
        for (struct inmsg *im = g->inbox, *next; im; im = next) {
            next = im->next;
            sv_raft_msg_free(&im->m);
            free(im);
        }
        for (struct prop *p = g->props, *next; p; p = next) {
            next = p->next;
            free(p->data);
            waiter_free(p->w);
            free(p);
        }
        sv_raft_destroy(g->r);
        free(g->res);
        free(g->snap.data);
        free(g);
    }
    free(n->groups);
    sv_sm_close(n->sm);
    rc = sv_seg_close(n->seg);
    if (rc) {
        LOG_ERROR("closing the segment store: %s", sv_seg_strerror(rc));
        code = 1;
    }
    pthread_mutex_destroy(&n->seg_mu);
    n->log->ops->close(n->log);
    sv_crypto_key_free(n->dek);
    sv_crypto_key_free(n->kek);
    LOG_INFO("stopped");
    free(n);
    return code;
}
