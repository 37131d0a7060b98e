/* Comparing the two sites of a disaster-recovery pair (dr.c): the records a
 * fenced old primary wrote past a shard's cut (DR_DIVERGED, the divergence
 * ledger's source: sv_client_dr_failback) and a shard's digest at the
 * primary index it stands at (DR_DIGEST: sv_client_dr_verify). Both walk a
 * frozen view of the state machine in the thread pool. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DR_DIVERGED_LIMIT = 256, /* records in one DR_DIVERGED answer, by default */
};

/* ---- the divergence ledger's source ---------------------------------------- */

/* Records of one DR_DIVERGED answer, copied out of the scan. */
struct diverged {
    struct sv_item *items;
    uint8_t *keys; /* each record's object key, SV_SM_CURSOR_KEY_MAX bytes apart */
    uint32_t n;
    size_t last_len; /* the last record's key length */
};

static void diverged_cb(void *arg, const uint8_t *okey, size_t klen, const struct sv_obj *o)
{
    struct diverged *d = arg;
    uint8_t *k = d->keys + (size_t)d->n * SV_SM_CURSOR_KEY_MAX;
    memcpy(k, okey, klen);
    const uint8_t *zero = klen > 8 ? memchr(k + 8, 0, klen - 8) : NULL;
    if (!zero)
        return; /* not an object key: never written so */
    struct sv_item *it = &d->items[d->n++];
    d->last_len = klen;
    it->tenant = sv_get64be(k);
    it->bucket = (struct sv_bytes){k + 8, (size_t)(zero - (k + 8))};
    it->key = (struct sv_bytes){zero + 1, klen - (size_t)(zero + 1 - k)};
    it->version = o->version;
    it->size = o->size;
    it->mtime_ms = o->mtime_ms;
    it->index = o->index;
    memcpy(it->sha256, o->sha256, 32);
    const char *state = o->deleted ? "deleted" : "live";
    it->state = (struct sv_bytes){(const uint8_t *)state, strlen(state)};
    it->fields = 1u << SV_I_TENANT | 1u << SV_I_BUCKET | 1u << SV_I_KEY | 1u << SV_I_VERSION |
                 1u << SV_I_SIZE | 1u << SV_I_MTIME_MS | 1u << SV_I_INDEX | 1u << SV_I_STATE;
    if (!o->deleted)
        SV_ITEM_SET(it, SV_I_SHA256);
}

/* A DR_DIVERGED page read in the pool (a scan of the whole shard, at worst). */
struct diverged_job {
    uv_work_t w;
    struct sv_node *n;
    uint64_t group, epoch, after, conn, req_id;
    uint32_t type, limit;
    uint8_t start[SV_SM_CURSOR_KEY_MAX];
    size_t start_len;
    struct diverged d;
    bool more;
    int rc;
};

static void diverged_work(uv_work_t *req)
{
    struct diverged_job *j = req->data;
    j->rc = sv_sm_diverged(j->n->sm, j->group, j->epoch, j->after, j->start_len ? j->start : NULL,
                           j->start_len, j->limit, &j->more, diverged_cb, &j->d);
}

static void diverged_after(uv_work_t *req, int status)
{
    (void)status;
    struct diverged_job *j = req->data;
    struct sv_node *n = j->n;
    n->jobs_in_pool--;
    if (j->rc) {
        sv__reply_status(n, j->conn, j->type, j->req_id, SV_ST_INTERNAL,
                         "the shard's records could not be read");
    } else {
        struct sv_msg r = {0};
        r.items = j->d.items;
        r.n_items = j->d.n;
        r.fields = 1u << SV_F_ITEMS;
        if (j->more && j->d.n) {
            r.data = (struct sv_bytes){j->d.keys + (size_t)(j->d.n - 1) * SV_SM_CURSOR_KEY_MAX,
                                       j->d.last_len};
            SV_MSG_SET(&r, SV_F_DATA);
        }
        sv__send_msg(n, j->conn, j->type, j->req_id, &r);
    }
    free(j->d.items);
    free(j->d.keys);
    free(j);
}

void sv__dr_diverged(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                     struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    if (!SV_MSG_HAS(m, SV_F_SHARD) || !SV_MSG_HAS(m, SV_F_VERSION) ||
        m->shard >= n->map->n_shards ||
        (SV_MSG_HAS(m, SV_F_DATA) && m->data.len > SV_SM_CURSOR_KEY_MAX)) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "DR_DIVERGED needs SHARD and VERSION (the cut); DATA is where to go on");
        return;
    }
    struct group *g = sv__group(n, m->shard + 1);
    if (!g || g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, conn, f->type, f->req_id,
                             g ? g->leader : sv_map_group(n->map, m->shard + 1)->ids[0]);
        return;
    }
    if (n->map->site_role != SV_MAP_FENCED) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "only a fenced site has diverged from the primary (this site is not "
                         "fenced)");
        return;
    }
    uint32_t limit = SV_MSG_HAS(m, SV_F_LIMIT) && m->limit && m->limit < DR_DIVERGED_LIMIT
                         ? (uint32_t)m->limit
                         : DR_DIVERGED_LIMIT;
    struct diverged_job *j = calloc(1, sizeof *j);
    if (j) {
        j->d.items = calloc(limit, sizeof *j->d.items);
        j->d.keys = malloc((size_t)limit * SV_SM_CURSOR_KEY_MAX);
    }
    if (!j || !j->d.items || !j->d.keys) {
        if (j) {
            free(j->d.items);
            free(j->d.keys);
        }
        free(j);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    j->n = n;
    j->group = g->id;
    j->epoch = n->map->site_epoch;
    j->after = m->version;
    j->limit = limit;
    j->conn = conn;
    j->req_id = f->req_id;
    j->type = f->type;
    if (SV_MSG_HAS(m, SV_F_DATA)) {
        memcpy(j->start, m->data.p, m->data.len);
        j->start_len = m->data.len;
    }
    j->w.data = j;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &j->w, diverged_work, diverged_after);
}

/* ---- digests: a shard compared across the sites ---------------------------- */

struct digest_job {
    uv_work_t w;
    struct sv_node *n;
    struct sv_sm_view *view;
    uint64_t group, conn, req_id;
    uint32_t type;
    bool standby;
    uint8_t out[32];
    uint64_t applied, cursor;
    int rc;
};

static void digest_work(uv_work_t *req)
{
    struct digest_job *j = req->data;
    j->rc = sv_sm_digest(j->n->sm, j->view, j->group, j->out, &j->applied, &j->cursor);
}

static void digest_after(uv_work_t *req, int status)
{
    (void)status;
    struct digest_job *j = req->data;
    struct sv_node *n = j->n;
    n->jobs_in_pool--;
    sv_sm_view_release(n->sm, j->view);
    if (j->rc) {
        sv__reply_status(n, j->conn, j->type, j->req_id, SV_ST_INTERNAL,
                         "the shard's records could not be read");
    } else {
        struct sv_msg r = {0};
        memcpy(r.sha256, j->out, 32);
        /* the primary index the digest stands at: the last a standby ran,
         * a primary's own applied index */
        r.version = j->standby ? j->cursor : j->applied;
        r.fields = 1u << SV_F_SHA256 | 1u << SV_F_VERSION;
        sv__send_msg(n, j->conn, j->type, j->req_id, &r);
    }
    free(j);
}

void sv__dr_digest(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                   struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    if (!SV_MSG_HAS(m, SV_F_SHARD) || m->shard >= n->map->n_shards) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST, "DR_DIGEST needs SHARD");
        return;
    }
    struct group *g = sv__group(n, m->shard + 1);
    if (!sv__dr_leads(g)) {
        sv__reply_not_leader(n, conn, f->type, f->req_id,
                             g ? g->leader : sv_map_group(n->map, m->shard + 1)->ids[0]);
        return;
    }
    struct digest_job *j = calloc(1, sizeof *j);
    if (!j || !(j->view = sv_sm_view(n->sm))) {
        free(j);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    j->n = n;
    j->group = g->id;
    j->conn = conn;
    j->req_id = f->req_id;
    j->type = f->type;
    j->standby = n->map->site_role == SV_MAP_STANDBY;
    j->w.data = j;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &j->w, digest_work, digest_after);
}
