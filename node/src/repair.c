/* svd's chunk repair: a chunk that is missing here or fails authentication
 * is fetched from another replica, checked and stored; the caller hears of
 * the outcome through its callback. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A chunk being fetched from another replica to repair ours. */
struct fetch {
    struct fetch *next;
    uint64_t id;   /* request id of the CHUNK_FETCH frames */
    uint64_t conn; /* the connection the last one went out on: only its reply counts */
    uint64_t group;
    uint8_t chunk_id[SV_SEG_ID_BYTES];
    struct sv_crypto_chunk_ad ad;
    uint64_t tried; /* replicas asked, by index in the group's replica list; bits
                     * 32 and up: the peer site's nodes (dr_peers), by index */
    uint64_t deadline_ms;
    void *arg;
    sv__repair_cb cb;
    bool no_sync;  /* a copy's: the copy marker covers it until the next sync */
    bool bad_seen; /* a replica answered with a copy that is corrupt there or fails
                    * authentication here */
};

/* A healthy copy being stored here. */
struct repair_job {
    uv_work_t w;
    struct sv_node *node;
    void *arg;
    sv__repair_cb cb;
    uint8_t id[SV_SEG_ID_BYTES];
    uint8_t *sealed;
    size_t len;
    int rc;
    bool no_sync;
    bool sync_failed; /* the put went through, its sync did not */
};

static void repair_work(uv_work_t *req)
{
    struct repair_job *r = req->data;
    struct sv_node *n = r->node;
    pthread_mutex_lock(&n->seg_mu);
    r->rc = sv_seg_put(n->seg, r->id, r->sealed, r->len);
    if (!r->rc && !r->no_sync)
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
        snprintf(what, sizeof what, "segment sync after a repair: %s", sv_strerror(r->rc));
        sv__node_fatal(n, what);
        r->cb(n, r->arg, SV_ST_UNAVAILABLE, "this node is stopping; retry", 0);
    } else if (r->rc) {
        LOG_ERROR("storing the repaired chunk: %s", sv_strerror(r->rc));
        r->cb(n, r->arg, r->rc == -ENOSPC ? SV_ST_NO_SPACE : SV_ST_INTERNAL,
              "could not store the repaired chunk", 0);
    } else {
        r->cb(n, r->arg, 0, NULL, r->len); /* the caller logs it (or not: copy.c's are many) */
    }
    sv__stats_repair(n, r->rc ? SV_ST_INTERNAL : SV_ST_OK);
    free(r->sealed);
    free(r);
}

/* The connection to ask next for f's chunk: another replica of the group
 * not asked yet, then, on a standby site (its chunks may exist nowhere in
 * it: a shard re-seeded), a node of the primary site; NULL when none is
 * left. */
static struct sv_conn *fetch_source(struct sv_node *n, struct fetch *f)
{
    struct group *g = sv__group(n, f->group);
    for (uint32_t i = 0; g && i < g->n_replicas; i++) {
        if (f->tried >> i & 1 || g->replicas[i] == n->me->id)
            continue;
        f->tried |= 1ull << i;
        struct sv_conn *c = sv__peer(n, g->replicas[i]);
        if (c)
            return c;
    }
    for (uint32_t i = 0; g && f->group && sv__dr_standby(n) && i < n->dr_n_peers && i < 32; i++) {
        if (f->tried >> (32 + i) & 1)
            continue;
        f->tried |= 1ull << (32 + i);
        struct sv_conn *c = sv__dr_peer_conn_at(n, i);
        if (c)
            return c;
    }
    return NULL;
}

/* Ask the next source not asked yet; false when none is left. */
static bool fetch_next(struct sv_node *n, struct fetch *f)
{
    struct sv_conn *c;
    while ((c = fetch_source(n, f))) {
        struct sv_msg m = {0};
        m.shard = f->group - 1;
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
            f->conn = sv_conn_id(c);
            f->deadline_ms = uv_now(&n->loop) + FETCH_TIMEOUT_MS;
            return true;
        }
    }
    return false;
}

/* Unlink f and report status (0: stored) to its caller. */
static void fetch_end(struct sv_node *n, struct fetch *f, int status, const char *text)
{
    for (struct fetch **pp = &n->fetches; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    if (status) {
        sv__stats_repair(n, status);
        f->cb(n, f->arg, status, text, 0);
    }
    free(f);
}

static void start(struct sv_node *n, uint64_t group, const uint8_t *chunk_id,
                  const struct sv_crypto_chunk_ad *ad, void *arg, sv__repair_cb cb, bool no_sync)
{
    struct fetch *f = calloc(1, sizeof *f);
    if (!f) {
        cb(n, arg, SV_ST_INTERNAL, "out of memory", 0);
        return;
    }
    f->no_sync = no_sync;
    f->id = ++n->next_fetch;
    f->group = group;
    f->arg = arg;
    f->cb = cb;
    memcpy(f->chunk_id, chunk_id, sizeof f->chunk_id);
    f->ad = *ad;
    f->next = n->fetches;
    n->fetches = f;
    if (!fetch_next(n, f))
        fetch_end(n, f, SV_ST_UNAVAILABLE,
                  "chunk bad or missing here and no replica reachable; retry");
}

/* The end of a fetch no replica answered with a healthy copy. CORRUPT only
 * when one answered with a damaged one: NOT_FOUND, an error or silence is
 * no proof of loss (the replica may not have applied the entry yet, or no
 * longer holds that version, our record being stale: a node just
 * restarted), so the caller may retry (UNAVAILABLE). */
static void fetch_failed(struct sv_node *n, struct fetch *f, const char *none)
{
    if (f->bad_seen)
        fetch_end(n, f, SV_ST_CORRUPT, "no healthy copy of the chunk found");
    else
        fetch_end(n, f, SV_ST_UNAVAILABLE, none);
}

void sv__repair_start(struct sv_node *n, uint64_t group, const uint8_t *chunk_id,
                      const struct sv_crypto_chunk_ad *ad, void *arg, sv__repair_cb cb)
{
    start(n, group, chunk_id, ad, arg, cb, false);
}

void sv__repair_copy(struct sv_node *n, uint64_t group, const uint8_t *chunk_id,
                     const struct sv_crypto_chunk_ad *ad, void *arg, sv__repair_cb cb)
{
    start(n, group, chunk_id, ad, arg, cb, true);
}

void sv__repair_on_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *fr)
{
    struct fetch *f = n->fetches;
    while (f && f->id != fr->req_id)
        f = f->next;
    /* Late (answered or given up already), or from a connection the fetch
     * did not go out on: another node answering for the one asked. */
    if (!f || f->conn != sv_conn_id(c))
        return;
    struct sv_msg m;
    int rc = sv_msg_decode(fr->body, fr->body_len, &m, NULL, 0);
    bool ok = rc == 0 && m.status == SV_ST_OK && SV_MSG_HAS(&m, SV_F_DATA);
    if (rc == 0 && m.status == SV_ST_CORRUPT)
        f->bad_seen = true;
    uint8_t *plain = ok ? malloc(SV_CRYPTO_CHUNK_MAX) : NULL;
    size_t plen;
    /* Only a copy that authenticates under the chunk's binding is taken. */
    if (ok && !plain)
        ok = false;
    else if (ok && sv_crypto_open(n->dek, &f->ad, m.data.p, m.data.len, plain, SV_CRYPTO_CHUNK_MAX,
                                  &plen))
        ok = false, f->bad_seen = true;
    free(plain);
    struct repair_job *r = ok ? calloc(1, sizeof *r) : NULL;
    if (r && (r->sealed = malloc(m.data.len))) {
        memcpy(r->sealed, m.data.p, m.data.len);
        r->len = m.data.len;
        r->node = n;
        r->arg = f->arg;
        r->cb = f->cb;
        r->no_sync = f->no_sync;
        memcpy(r->id, f->chunk_id, sizeof r->id);
        r->w.data = r;
        n->jobs_in_pool++;
        uv_queue_work(&n->loop, &r->w, repair_work, repair_after);
        fetch_end(n, f, 0, NULL);
    } else {
        free(r);
        if (!fetch_next(n, f))
            fetch_failed(n, f, "no replica holds the chunk (not found, or not applied yet); retry");
    }
    sv_msg_free(&m);
}

void sv__repair_tick(struct sv_node *n, uint64_t now_ms)
{
    for (struct fetch *f = n->fetches, *next; f; f = next) {
        next = f->next;
        if (f->deadline_ms > now_ms || fetch_next(n, f))
            continue;
        fetch_failed(n, f, "no replica answered with the chunk; retry");
    }
}

void sv__repair_close(struct sv_node *n)
{
    while (n->fetches)
        fetch_end(n, n->fetches, SV_ST_UNAVAILABLE, "this node is stopping; retry");
}
