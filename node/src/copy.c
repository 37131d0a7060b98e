/* svd's chunk copy: a replica whose records may claim chunks it does not
 * hold (its copy marker is set: a snapshot installed, or the group created
 * empty to join) copies them from the other replicas in the background, so
 * that it holds every one before the scheduler counts on it.
 *
 * A pass: count (one pool job, one view of the records: what is missing
 * and about how many bytes; nothing missing clears the marker, if it is
 * still the one the view saw), then fetch (page jobs list the missing
 * chunks from a cursor; repair.c fetches each from another replica, at
 * most COPY_CONCURRENT per node and n->copy_rate bytes per second), then
 * the next pass counts again: only a count finding nothing clears the
 * marker. A pass with failed fetches waits COPY_RETRY_MS before the next;
 * a chunk no replica has is logged and counted, and the marker stays. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_assert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    COPY_PAGES_PER_JOB = 64, /* pages a page job reads looking for a missing chunk */
    COPY_JOBS_MAX = 1,       /* count and page jobs in the pool (it serves reads too) */
    COPY_LOST_LOGGED = 10,   /* chunks no replica had, logged one by one per pass */
};

#define COPY_BURST_MAX (UINT64_C(1) << 40) /* token bucket bound: no overflow */

enum phase { PHASE_IDLE, PHASE_COUNT, PHASE_FETCH };

/* A missing chunk to fetch. */
struct item {
    uint8_t id[SV_SEG_ID_BYTES];
    struct sv_crypto_chunk_ad ad;
    uint64_t bytes; /* plaintext, estimated (0: unknown) */
};

/* A group's pass. While job is set, the job in the pool owns cur and items. */
struct sv__copy_group {
    enum phase phase;
    bool job;
    bool again;                /* a snapshot was installed during the pass */
    bool more;                 /* pages follow the items */
    uint64_t pass;             /* number (fetches of another one are not counted) */
    uint64_t next_ms;          /* no pass starts before */
    uint64_t left, bytes_left; /* the last count, less what was copied since */
    uint64_t avg;              /* plaintext bytes of a chunk of unknown size */
    uint32_t inflight;         /* fetches */
    uint32_t failed, lost;     /* fetches that failed; of those, no replica had a copy */
    uint32_t n, next;          /* items[next..n) are still to fetch */
    struct sv_sm_cursor cur;
    struct item items[COPY_PAGE];
};

/* A fetch in flight: its group by id, which may be gone when it ends. */
struct copy_fetch {
    uint64_t group, pass;
    uint64_t est; /* sealed bytes debited from the bucket */
    uint64_t plain;
};

static void pump(struct sv_node *n);

/* ---- the count ------------------------------------------------------------ */

struct count_job {
    uv_work_t w;
    struct sv_node *node;
    struct group *g;
    int rc;
    bool pending, cleared, stale;
    uint64_t missing, missing_bytes, missing_unknown;
    uint64_t known, known_bytes; /* every chunk of known size, for the average */
};

static void count_cb(void *arg, const struct sv_sm_chunk *c)
{
    struct count_job *j = arg;
    j->known += c->bytes != 0;
    j->known_bytes += c->bytes;
    int has = j->rc ? 0 : sv_seg_has(j->node->seg, c->id);
    if (has < 0) {
        j->rc = has;
    } else if (!has) {
        j->missing++;
        j->missing_bytes += c->bytes;
        j->missing_unknown += c->bytes == 0;
    }
}

static int count_chunks(struct count_job *j, const struct sv_sm_view *view)
{
    struct sv_node *n = j->node;
    uint64_t since;
    int rc = sv_sm_copy_pending(n->sm, view, j->g->id, &j->pending, &since);
    struct sv_sm_cursor cur = {0};
    for (bool more = j->pending; !rc && more;) {
        pthread_mutex_lock(&n->seg_mu);
        rc = sv_sm_chunks(n->sm, view, j->g->id, &cur, COPY_COUNT_PAGE, &more, count_cb, j);
        pthread_mutex_unlock(&n->seg_mu);
        if (!rc)
            rc = j->rc;
    }
    if (rc || !j->pending || j->missing)
        return rc;
    /* Under seg_mu, as the apply half installs snapshots: a marker set
     * again since the view stays. The copies were put without a sync
     * (sv__repair_copy): they are made durable before the marker that
     * covers them goes. */
    pthread_mutex_lock(&n->seg_mu);
    rc = sv_seg_sync(n->seg);
    if (!rc)
        rc = sv_sm_copy_done(n->sm, j->g->id, since);
    pthread_mutex_unlock(&n->seg_mu);
    j->stale = rc == -ESTALE;
    j->cleared = rc == 0;
    return j->stale ? 0 : rc;
}

static void count_work(uv_work_t *req)
{
    struct count_job *j = req->data;
    struct sv_sm_view *view = sv_sm_view(j->node->sm);
    j->rc = view ? count_chunks(j, view) : -ENOMEM;
    sv_sm_view_release(j->node->sm, view);
}

/* What a count found: the marker cleared, or the fetch phase begins. */
static void count_done(struct sv_node *n, struct group *g, struct sv__copy_group *c,
                       const struct count_job *j)
{
    uint64_t now = uv_now(&n->loop);
    c->phase = PHASE_IDLE;
    if (j->rc) {
        LOG_WARN("group %" PRIu64 ": counting the chunks to copy: %s; again in %d ms", g->id,
                 sv_strerror(j->rc), COPY_RETRY_MS);
        c->next_ms = now + COPY_RETRY_MS;
    } else if (j->stale) {
        c->next_ms = now; /* a snapshot was installed meanwhile: count again */
    } else if (!j->pending || j->cleared) {
        if (j->cleared)
            LOG_INFO("group %" PRIu64 ": every chunk its records claim is on this node", g->id);
        g->copy_pending = false;
        c->left = c->bytes_left = 0;
    } else {
        c->avg = j->known ? j->known_bytes / j->known : SV_CRYPTO_CHUNK_MAX;
        c->left = j->missing;
        c->bytes_left = j->missing_bytes + j->missing_unknown * c->avg;
        LOG_INFO("group %" PRIu64 ": %" PRIu64 " chunks (about %" PRIu64
                 " bytes) its records claim are not on this node: copying them from the other "
                 "replicas",
                 g->id, c->left, c->bytes_left);
        c->phase = PHASE_FETCH;
        memset(&c->cur, 0, sizeof c->cur);
        c->more = true;
        c->n = c->next = 0;
    }
}

static void count_after(uv_work_t *req, int status)
{
    (void)status;
    struct count_job *j = req->data;
    struct sv_node *n = j->node;
    struct group *g = j->g;
    n->jobs_in_pool--;
    g->pool_refs--;
    n->copy_jobs--;
    g->copy->job = false;
    if (g->copy->again) {
        g->copy->again = false;
        g->copy->phase = PHASE_IDLE; /* the count may predate the snapshot: again */
    } else if (!g->closing) {
        count_done(n, g, g->copy, j);
    }
    free(j);
    pump(n);
}

static void start_count(struct sv_node *n, struct group *g, struct sv__copy_group *c)
{
    struct count_job *j = calloc(1, sizeof *j);
    if (!j)
        return; /* the next tick tries again */
    j->node = n;
    j->g = g;
    j->w.data = j;
    c->phase = PHASE_COUNT;
    c->job = true;
    c->pass = ++n->copy_passes;
    c->failed = c->lost = 0;
    g->pool_refs++;
    n->jobs_in_pool++;
    n->copy_jobs++;
    uv_queue_work(&n->loop, &j->w, count_work, count_after);
}

/* ---- pages of missing chunks ---------------------------------------------- */

struct page_job {
    uv_work_t w;
    struct sv_node *node;
    struct group *g;
    int rc;
};

static void page_cb(void *arg, const struct sv_sm_chunk *ch)
{
    struct page_job *j = arg;
    struct sv__copy_group *c = j->g->copy;
    int has = j->rc ? 1 : sv_seg_has(j->node->seg, ch->id);
    if (has < 0)
        j->rc = has;
    if (has)
        return;
    ASSERT(c->n < COPY_PAGE);
    struct item *it = &c->items[c->n++];
    memcpy(it->id, ch->id, sizeof it->id);
    it->ad = ch->ad;
    it->bytes = ch->bytes;
}

/* Read pages from the cursor until one has a missing chunk, the records
 * end, or COPY_PAGES_PER_JOB pages were read. */
static void page_work(uv_work_t *req)
{
    struct page_job *j = req->data;
    struct sv_node *n = j->node;
    struct sv__copy_group *c = j->g->copy;
    c->n = c->next = 0;
    for (int pages = 0; !j->rc && c->more && !c->n && pages < COPY_PAGES_PER_JOB; pages++) {
        pthread_mutex_lock(&n->seg_mu);
        int rc = sv_sm_chunks(n->sm, NULL, j->g->id, &c->cur, COPY_PAGE, &c->more, page_cb, j);
        pthread_mutex_unlock(&n->seg_mu);
        if (rc)
            j->rc = rc;
    }
}

static void page_after(uv_work_t *req, int status)
{
    (void)status;
    struct page_job *j = req->data;
    struct sv_node *n = j->node;
    struct group *g = j->g;
    struct sv__copy_group *c = g->copy;
    n->jobs_in_pool--;
    g->pool_refs--;
    n->copy_jobs--;
    c->job = false;
    if (j->rc) {
        LOG_WARN("group %" PRIu64 ": listing the chunks to copy: %s; the pass ends", g->id,
                 sv_strerror(j->rc));
        c->n = c->next = 0;
        c->more = false;
        c->failed++;
    }
    free(j);
    pump(n);
}

static void start_page(struct sv_node *n, struct group *g, struct sv__copy_group *c)
{
    struct page_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->node = n;
    j->g = g;
    j->w.data = j;
    c->job = true;
    g->pool_refs++;
    n->jobs_in_pool++;
    n->copy_jobs++;
    uv_queue_work(&n->loop, &j->w, page_work, page_after);
}

/* ---- fetches ---------------------------------------------------------------- */

/* Tokens for the time since the last refill, at most a second's worth
 * (and at least one whole chunk, so any rate moves). */
static void refill(struct sv_node *n, uint64_t now)
{
    uint64_t ms = now - n->copy_refill_ms, rate = n->copy_rate;
    n->copy_refill_ms = now;
    if (ms > 1000)
        ms = 1000;
    if (rate > COPY_BURST_MAX)
        rate = COPY_BURST_MAX;
    int64_t burst = (int64_t)(rate > SV_SEG_PAYLOAD_MAX ? rate : SV_SEG_PAYLOAD_MAX);
    n->copy_tokens += (int64_t)(rate / 1000 * ms + rate % 1000 * ms / 1000);
    if (n->copy_tokens > burst)
        n->copy_tokens = burst;
}

static void on_fetched(struct sv_node *n, void *arg, int status, const char *text, size_t bytes)
{
    struct copy_fetch *f = arg;
    n->copy_inflight--;
    n->copy_tokens += (int64_t)f->est - (int64_t)bytes; /* a failed fetch moved little */
    struct group *g = sv__group(n, f->group);
    struct sv__copy_group *c = g ? g->copy : NULL;
    if (c && c->pass == f->pass) {
        c->inflight--;
        if (!status) {
            c->left -= c->left > 0;
            c->bytes_left -= c->bytes_left < f->plain ? c->bytes_left : f->plain;
        } else {
            c->failed++;
            if (status == SV_ST_CORRUPT && ++c->lost <= COPY_LOST_LOGGED)
                LOG_WARN("group %" PRIu64 " (shard %" PRId64 "): a chunk to copy was not "
                         "copied: %s; tried again in the next pass",
                         f->group, (int64_t)f->group - 1, text ? text : "");
        }
    }
    if (!status)
        sv__stats_copied(n, bytes);
    free(f);
    if (!n->stopping)
        pump(n);
}

static void start_fetch(struct sv_node *n, struct group *g, struct sv__copy_group *c,
                        const struct item *it)
{
    struct copy_fetch *f = malloc(sizeof *f);
    if (!f) {
        c->failed++;
        return;
    }
    f->group = g->id;
    f->pass = c->pass;
    f->plain = it->bytes ? it->bytes : c->avg;
    f->est = f->plain + SV_CRYPTO_SEAL_OVERHEAD;
    n->copy_tokens -= (int64_t)f->est;
    n->copy_inflight++;
    c->inflight++;
    sv__repair_copy(n, g->id, it->id, &it->ad, f, on_fetched); /* may end at once */
}

/* The fetch phase ran out of pages and fetches: the next pass counts. */
static void end_pass(struct sv_node *n, struct group *g, struct sv__copy_group *c)
{
    uint64_t now = uv_now(&n->loop);
    c->phase = PHASE_IDLE;
    c->next_ms = now;
    if (!c->failed)
        return;
    c->next_ms = now + COPY_RETRY_MS;
    LOG_WARN("group %" PRIu64 " (shard %" PRId64 "): copy pass %" PRIu64 " left %" PRIu32
             " chunks not copied (%" PRIu32 " no other replica had a healthy copy of); "
             "the group is not complete; next pass in %d ms",
             g->id, (int64_t)g->id - 1, c->pass, c->failed, c->lost, COPY_RETRY_MS);
}

/* ---- the driver ------------------------------------------------------------- */

/* Start what g's pass may start now. */
static void advance(struct sv_node *n, struct group *g, uint64_t now)
{
    if (!g->copy && !(g->copy = calloc(1, sizeof *g->copy)))
        return;
    struct sv__copy_group *c = g->copy;
    if (c->job)
        return;
    if (c->phase == PHASE_IDLE) {
        if (now >= c->next_ms && !c->inflight && n->copy_jobs < COPY_JOBS_MAX)
            start_count(n, g, c);
        return;
    }
    while (c->phase == PHASE_FETCH && c->next < c->n && n->copy_inflight < COPY_CONCURRENT &&
           n->copy_rate && n->copy_tokens > 0)
        start_fetch(n, g, c, &c->items[c->next++]);
    if (c->phase != PHASE_FETCH || c->next < c->n || c->job)
        return;
    if (c->more && n->copy_jobs < COPY_JOBS_MAX)
        start_page(n, g, c);
    else if (!c->more && !c->inflight)
        end_pass(n, g, c);
}

static void pump(struct sv_node *n)
{
    if (n->copy_pumping || n->stopping || n->failed)
        return;
    n->copy_pumping = true;
    uint64_t now = uv_now(&n->loop);
    refill(n, now);
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (g && g->copy_pending && !g->closing)
            advance(n, g, now);
    }
    n->copy_pumping = false;
}

void sv__copy_tick(struct sv_node *n, uint64_t now_ms)
{
    (void)now_ms; /* pump reads the loop's time itself, as callbacks do */
    pump(n);
}

void sv__copy_installed(struct sv_node *n, struct group *g)
{
    (void)n;
    g->copy_pending = true;
    if (g->copy && g->copy->phase != PHASE_IDLE) {
        g->copy->again = g->copy->phase == PHASE_COUNT;
        g->copy->next_ms = 0; /* the fetch phase ends as it is; the next count sees it all */
    }
}

void sv__copy_set_rate(struct sv_node *n, uint64_t bytes_per_s)
{
    n->copy_rate = bytes_per_s;
    int64_t burst = (int64_t)(bytes_per_s > COPY_BURST_MAX ? COPY_BURST_MAX : bytes_per_s);
    if (n->copy_tokens > burst)
        n->copy_tokens = burst;
}

bool sv__copy_complete(const struct sv_node *n, const struct group *g)
{
    (void)n;
    return !g->copy_pending;
}

void sv__copy_progress(const struct sv_node *n, const struct group *g, uint64_t *chunks_left,
                       uint64_t *bytes_left)
{
    (void)n;
    bool known = g->copy_pending && g->copy;
    *chunks_left = known ? g->copy->left : 0;
    *bytes_left = known ? g->copy->bytes_left : 0;
}
