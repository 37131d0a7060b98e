/* svd's upkeep: snapshots that bound the Raft log, expired uploads aborted,
 * segment compaction, the disk's free space. */
#define _GNU_SOURCE
#include "node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

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
    g->pool_refs--;
    g->want_snapshot = false;
    if (g->closing) {
        /* Leaving this node: no snapshot to keep. */
    } else if (s->rc) {
        LOG_WARN("snapshot of group %" PRIu64 " at %" PRIu64 ": %s", g->id, s->index,
                 sv_strerror(s->rc));
    } else if (g->busy || s->index <= g->snap_index) {
        /* The group moved on while the image was made; the next turn retries. */
    } else {
        /* The configuration as of the snapshot's index: a change appended
         * after it belongs to the entries that follow. */
        struct sv_raft_conf conf;
        int rc = sv_raft_conf_at(g->r, s->index, &conf);
        if (!rc)
            rc = sv_raft_snapshot(g->r, s->index, s->img, s->len, sv__dr_trailing(n, g, s->index));
        if (rc) {
            LOG_WARN("snapshot of group %" PRIu64 ": %s", g->id, sv_strerror(rc));
        } else {
            g->snap_index = s->index;
            g->log_bytes = 0;
            g->snap.meta.index = s->index;
            g->snap.meta.term = sv_raft_term_at(g->r, s->index);
            g->snap.meta.conf = conf;
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
void sv__upkeep_snapshot(struct sv_node *n, struct group *g)
{
    if (g->want_snapshot || g->busy || g->snap_pending || g->snap_staged || n->stopping ||
        g->closing)
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
    g->pool_refs++;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &s->w, snap_work, snap_after);
}

/* ---- disk space ---------------------------------------------------------- */

bool sv__disk_full(struct sv_node *n, size_t need)
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
    s->g->pool_refs--;
    for (size_t i = 0; i < s->n && s->g->role == SV_RAFT_LEADER && !n->stopping && !s->g->closing;
         i++) {
        /* mtime_ms: the abort holds only if the upload is still idle when
         * it applies (a chunk may be in the log ahead of it). */
        struct sv_cmd cmd = {.type = SV_CMD_ABORT, .upload = s->ids[i], .mtime_ms = s->before_ms};
        size_t len = sv_cmd_encoded_len(&cmd);
        uint8_t *buf = malloc(len);
        if (!buf)
            break;
        sv_cmd_encode(&cmd, buf);
        LOG_INFO("group %" PRIu64 ": removing abandoned upload %" PRIx64, s->g->id, s->ids[i]);
        sv__host_propose(n, s->g, buf, len, NULL);
    }
    free(s);
}

static void scan_uploads(struct sv_node *n)
{
    uint64_t before = n->clock.wall_ms(n->clock.arg) - (uint64_t)n->cfg.upload_ttl_s * 1000;
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
        g->pool_refs++;
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
    sv__stats_seg_sizes(n);
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
        LOG_WARN("segment compaction: %s (%s); nothing was lost", sv_strerror(cj->rc), cj->errmsg);
    } else if (cj->rc) {
        /* A failed write, read or sync of the store: what the disk holds is
         * in doubt (sm.h: nothing may claim more than the disk holds). */
        char what[SV_SEG_ERRMSG_MAX + 64];
        snprintf(what, sizeof what, "segment compaction: %s (%s)", sv_strerror(cj->rc), cj->errmsg);
        sv__node_fatal(cj->node, what);
    } else if (cj->reclaimed)
        LOG_INFO("segment compaction reclaimed %" PRIu64 " bytes in %" PRIu64 " ms, %" PRIu64
                 " ms of it holding the segment store",
                 cj->reclaimed, cj->total_ns / 1000000, cj->held_ns / 1000000);
    sv__stats_compacted(cj->node, cj->rc, cj->held_ns, cj->reclaimed);
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

void sv__upkeep_tick(struct sv_node *n, uint64_t now_ms)
{
    /* A standby writes nothing of its own: the primary's aborts are shipped. */
    if (now_ms - n->last_upload_scan_ms >= UPLOAD_SCAN_MS && !sv__dr_standby(n)) {
        n->last_upload_scan_ms = now_ms;
        scan_uploads(n);
    }
    if (now_ms - n->last_compact_ms >= SEG_COMPACT_MS && !n->stopping) {
        n->last_compact_ms = now_ms;
        compact_segments(n);
    }
}
