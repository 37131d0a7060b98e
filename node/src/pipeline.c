/* svd's persist/apply pipeline: group commit of every group's ready batch
 * (one log store sync per job), applying committed entries, answering
 * through n->ev. See node.h for the shape of a job. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_assert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                      sv_strerror(rc), log->errmsg);
    }
    for (uint32_t i = 0; i < j->n_drops && !rc; i++) {
        /* A group that left this node: its log goes (again, after a crash
         * between the halves: then there is nothing left to remove). */
        rc = log->ops->destroy_group(log, j->drops[i]);
        if (rc == SV_LOG_E_NOT_FOUND)
            rc = 0;
        else if (rc)
            half_fail(h, rc, "log store remove group %" PRIu64 ": %s (%.200s)", j->drops[i],
                      sv_strerror(rc), log->errmsg);
        staged = true;
    }
    uint64_t t0 = uv_hrtime();
    if (!rc && staged && (rc = log->ops->commit(log)))
        half_fail(h, rc, "log store commit: %s (%.200s)", sv_strerror(rc), log->errmsg);
    if (!rc && staged)
        sv__stats_persisted(j, uv_hrtime() - t0);
    return rc;
}

static int job_apply(struct job *j)
{
    struct sv_node *n = j->node;
    struct half *h = &j->apply;
    int rc = 0;
    uint64_t t0 = uv_hrtime();
    pthread_mutex_lock(&n->seg_mu);
    for (uint32_t i = 0; i < j->n_drops && !rc; i++)
        rc = sv_sm_drop(n->sm, n->seg, j->drops[i], h->errmsg, sizeof h->errmsg);
    if (rc) {
        pthread_mutex_unlock(&n->seg_mu);
        return h->rc = rc;
    }
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
        rc = half_fail(h, wrc, "segment write: %s (%.200s)", sv_strerror(wrc),
                       sv_seg_errmsg(n->seg));
    if (!rc)
        rc = sv_sm_commit(n->sm, n->seg, h->errmsg, sizeof h->errmsg);
    else
        sv_sm_discard(n->sm);
    sv__stats_applied(n, uv_hrtime() - t0);
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
            sv__peers_send(n, g, g->rd.msgs, g->rd.n_msgs, false);
    }
}

void sv__pipeline_on_persisted(uv_async_t *a)
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
                     "copied from the other replicas in the background",
                     g->id, g->applied);
            sv__copy_installed(n, g);
        }
        for (size_t k = 0; k < rd->n_committed; k++) {
            const struct sv_raft_entry *e = &rd->committed[k];
            bool fresh = e->index > g->applied;
            if (fresh) {
                g->applied = e->index;
                g->log_bytes += e->len;
            }
            n->ev.applied(n, g, e, &g->res[k], fresh);
        }
        n->ev.idle(n, g);
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
            sv__node_fatal(n, bad->errmsg[0] ? bad->errmsg : "persist job failed");
        n->failed = true;
        /* Leave the groups busy: nothing more is persisted or answered. */
        free(j->gs);
        free(j->drops);
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
            for (size_t k = 0; k < rd->n_reads; k++)
                n->ev.read_index(n, g, rd->reads[k].ctx, rd->reads[k].index);
            sv_raft_advance(g->r, rd);
        }
        g->busy = false; /* in a job for its batch, its snapshot, or both */
        sv__host_drain(n, g);
        n->ev.idle(n, g);
    }
    for (uint32_t i = 0; i < j->n_drops; i++)
        LOG_INFO("group %" PRIu64 ": its data on this node is deleted", j->drops[i]);
    free(j->gs);
    free(j->drops);
    free(j);
    sv__host_reap(n);
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
void sv__pipeline_advance(struct sv_node *n)
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
        sv__pipeline_advance(n);
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
    sv__pipeline_advance(n);
}

/* Take the ready batches of the groups not in a job into a new job, when a
 * stage is free for it and no older job still waits to start: taking them
 * sooner would only make the batches smaller. */
void sv__pipeline_cycle(struct sv_node *n)
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
            sv__peers_send(n, g, g->rd.msgs, g->rd.n_msgs, true);
        }
        if (g->snap_pending) {
            g->snap_pending = false;
            g->snap_staged = true;
        }
        g->busy = true;
        gs[count++] = g;
    }
    if (!count && !n->n_drops)
        return;
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        sv__node_fatal(n, "out of memory");
        free(gs);
        return;
    }
    j->node = n;
    j->gs = gs;
    j->n = count;
    j->drops = n->drops;
    j->n_drops = n->n_drops;
    n->drops = NULL;
    n->n_drops = 0;
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
    j->persist.need = persist || j->n_drops || !j->split;
    j->apply.need = apply || j->n_drops || !j->split;
    /* Only messages and read states: nothing to wait for but older jobs. */
    atomic_store(&j->persisted, !j->persist.need);
    sv__pipeline_advance(n);
}
