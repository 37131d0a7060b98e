/* svd's object requests: writes sealed into commands and proposed; reads,
 * lists and chunk fetches served from the state machine and the segment
 * store in the pool. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An upload id no other leader of the group, on this site or the other,
 * can choose: the site epoch's low 8 bits (a promotion changes it, and only
 * one site writes at a time), the term's low 24 bits, a counter. Chunk ids
 * derive from it, so a promoted standby's new objects never overwrite the
 * chunks of those the old primary shipped. The limits: 256 promotions and
 * 16 M terms of a group before a wrap could reuse an id. */
static uint64_t new_upload_id(const struct sv_node *n, struct group *g)
{
    if (g->up_term != g->term) {
        g->up_term = g->term;
        g->up_ctr = 0;
    }
    uint64_t era = (n->map->site_epoch - 1) & 0xff;
    return era << 56 | (g->term & 0xffffff) << 32 | ++g->up_ctr;
}

void sv__objects_serve_ready(struct sv_node *n, struct group *g)
{
    struct waiter **pp = &g->ready_reads;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->read_index <= g->applied) {
            *pp = w->next;
            sv__objects_start_read(n, w);
        } else {
            pp = &w->next;
        }
    }
}

struct read_job {
    uv_work_t w;
    struct waiter *wt;
    uint8_t *out; /* encoded reply body */
    size_t out_len;
    bool repair; /* our copy of the chunk is bad or missing */
    int status;  /* the reply's status (stats.c counts it) */
    uint8_t chunk_id[SV_SEG_ID_BYTES];
    struct sv_crypto_chunk_ad ad;
};

/* Name chunk idx of object o in r (chunk id and the associated data that
 * binds its ciphertext). */
static void chunk_ref(struct read_job *r, uint64_t group, uint64_t tenant, const struct sv_msg *m,
                      const struct sv_obj *o, uint32_t idx)
{
    sv_sm_chunk_ref(group, tenant, m->bucket.p, m->bucket.len, m->key.p, m->key.len, o->upload, idx,
                    r->chunk_id, &r->ad);
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
                     idx, upload, group, sv_strerror(rc));
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
        LOG_ERROR("read chunk: %s", sv_strerror(seg_rc));
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
    const struct sv_msg *m = &w->m;
    struct sv_msg out = {0};
    uint8_t *plain = NULL, *sealed = NULL;
    bool locked = false;
    struct list_ctx lc = {0};
    uint64_t tenant = w->ctx.tenant;
    if (w->type == SV_MSG_CHUNK_FETCH) {
        uint8_t id[SV_SEG_ID_BYTES];
        sv_chunk_id(w->group, m->upload, (uint32_t)m->chunk, id);
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
        uint32_t limit = SV_MSG_HAS(m, SV_F_LIMIT) && m->limit && m->limit < SV_MSG_LIST_LIMIT_MAX
                             ? (uint32_t)m->limit
                             : SV_MSG_LIST_LIMIT_MAX;
        lc.items = calloc(limit, sizeof *lc.items);
        bool more = false;
        int rc = lc.items ? sv_sm_list(n->sm, w->group, tenant, m->bucket.p, m->bucket.len,
                                       m->prefix.p, m->prefix.len, m->start_after.p,
                                       m->start_after.len, limit, &more, list_cb, &lc)
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
    int rc =
        sv_sm_get(n->sm, w->group, tenant, m->bucket.p, m->bucket.len, m->key.p, m->key.len, &o);
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
        if (!SV_MSG_HAS(m, SV_F_VERSION) || m->version != o.version) {
            out.status = SV_ST_VERSION_CONFLICT;
            out.version = o.version;
            SV_MSG_SET(&out, SV_F_VERSION);
            goto encode;
        }
        if (!SV_MSG_HAS(m, SV_F_CHUNK) || m->chunk >= o.n_chunks) {
            out.status = SV_ST_BAD_REQUEST;
            goto encode;
        }
        idx = (uint32_t)m->chunk;
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
    chunk_ref(r, w->group, tenant, m, &o, idx);
    size_t slen = 0, plen = 0;
    int seg_rc = sv_seg_get(n->seg, r->chunk_id, sealed, SV_CRYPTO_SEALED_MAX, &slen);
    pthread_mutex_unlock(&n->seg_mu);
    locked = false;
    int st = open_chunk(n, r, w->group, seg_rc, sealed, slen, plain, &plen);
    free(sealed);
    sealed = NULL;
    if (st == 1) {
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
    r->status = (int)out.status;
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
}

/* The repair read_after started for w ended. */
static void on_repaired(struct sv_node *n, void *arg, int status, const char *text, size_t bytes)
{
    struct waiter *w = arg;
    (void)bytes;
    if (status) {
        sv__waiter_fail(w, status, text);
    } else {
        LOG_INFO("chunk repaired from a replica");
        sv__objects_start_read(n, w); /* read again: now from the repaired copy */
    }
}

static void read_submit(struct sv_node *n, struct waiter *w);

/* Start the queued reads the pool has room for; fail them when stopping. */
static void read_next(struct sv_node *n)
{
    while (n->read_q && (n->stopping || n->reads_in_pool < READS_IN_POOL)) {
        struct waiter *w = n->read_q;
        if (!(n->read_q = w->next))
            n->read_q_tail = &n->read_q;
        n->reads_queued--;
        w->next = NULL;
        if (n->stopping)
            sv__waiter_fail(w, SV_ST_UNAVAILABLE, "node is shutting down");
        else if (w->counted && !sv_tp_conn(n->tp, w->conn))
            sv__waiter_free(w); /* its client went: nobody to answer */
        else
            read_submit(n, w);
    }
}

static void read_after(uv_work_t *req, int status)
{
    (void)status;
    struct read_job *r = req->data;
    struct waiter *w = r->wt;
    struct sv_node *n = w->node;
    n->jobs_in_pool--;
    n->reads_in_pool--;
    if (r->repair && w->repairs < REPAIR_ATTEMPTS) {
        w->repairs++;
        sv__repair_start(n, w->group, r->chunk_id, &r->ad, w, on_repaired);
    } else if (r->repair) {
        sv__waiter_fail(w, SV_ST_CORRUPT, "chunk still corrupt after repair");
    } else if (!r->out) {
        sv__waiter_fail(w, SV_ST_INTERNAL, "could not encode the reply");
    } else {
        struct sv_conn *c = sv_tp_conn(n->tp, w->conn);
        int rc =
            c ? sv_conn_send(c, w->type | SV_MSG_RESP, w->req_id, r->out, r->out_len) : -ENOTCONN;
        if (rc == -ENOBUFS)
            sv_conn_close(c, "client does not read its replies");
        if (c)
            sv__stats_reply(n, w->conn, w->type, w->req_id, r->status, rc ? 0 : r->out_len);
        sv__waiter_free(w);
    }
    if (r->out) {
        memset(r->out, 0, r->out_len);
        free(r->out);
    }
    free(r);
    read_next(n);
}

static void read_submit(struct sv_node *n, struct waiter *w)
{
    struct read_job *r = calloc(1, sizeof *r);
    if (!r) {
        sv__waiter_fail(w, SV_ST_INTERNAL, "out of memory");
        return;
    }
    r->wt = w;
    r->w.data = r;
    n->jobs_in_pool++;
    n->reads_in_pool++;
    uv_queue_work(&n->loop, &r->w, read_work, read_after);
}

void sv__objects_start_read(struct sv_node *n, struct waiter *w)
{
    /* Another node's (a repair's or a copy's CHUNK_FETCH, a peer site's
     * pull) goes first: a flood of client reads must not stall them. */
    if ((n->reads_in_pool < READS_IN_POOL && !n->read_q) || w->ctx.role != SV_ROLE_CLIENT) {
        read_submit(n, w);
    } else if (n->reads_queued >= READS_QUEUED_MAX) {
        n->reads_refused++;
        char t[96];
        snprintf(t, sizeof t, "node busy: %u reads waiting; retry", n->reads_queued);
        sv__waiter_fail(w, SV_ST_UNAVAILABLE, t);
    } else {
        if (!n->read_q_tail)
            n->read_q_tail = &n->read_q;
        w->next = NULL;
        *n->read_q_tail = w;
        n->read_q_tail = &w->next;
        n->reads_queued++;
    }
}

/* Encode cmd into a new buffer, sealing plain (may be NULL) for (tenant,
 * bucket/key, chunk, upload) straight into the command's data. NULL + status
 * on error. */
static uint8_t *build_cmd(struct sv_node *n, struct sv_cmd *cmd, const struct sv_bytes *plain,
                          size_t *len, int *status)
{
    *status = SV_ST_OK;
    cmd->epoch = n->map->site_epoch; /* whose write it is: a failback's ledger tells by it */
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
        struct sv_crypto_chunk_ad ad;
        uint8_t id[SV_SEG_ID_BYTES];
        sv_sm_chunk_ref(0, cmd->tenant, cmd->bucket, cmd->bucket_len, cmd->key, cmd->key_len,
                        cmd->upload, cmd->chunk, id, &ad);
        size_t slen;
        int rc = sv_crypto_seal(n->dek, &ad, plain->p, plain->len, buf + *len - cmd->data_len,
                                cmd->data_len, &slen);
        if (rc) {
            LOG_ERROR("seal: %s", sv_strerror(rc));
            free(buf);
            *status = SV_ST_INTERNAL;
            return NULL;
        }
    }
    return buf;
}

/* A new command's stamp (dr.c, the consistent cut): the wall clock, never
 * below a stamp this node made or applied: a hybrid logical clock, at the
 * grain of a millisecond. */
static uint64_t stamp_now(struct sv_node *n)
{
    uint64_t wall = n->clock.wall_ms(n->clock.arg);
    if (wall > n->hlc_ms)
        n->hlc_ms = wall;
    return n->hlc_ms;
}

void sv__objects_write(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                       const struct sv__ctx *ctx, const struct sv_msg *m, struct group *g)
{
    uint64_t conn = sv_conn_id(c);
    if (sv__dr_cutting(n, g)) {
        char t[160];
        snprintf(t, sizeof t,
                 "shard %" PRIu64 " is applying the promotion's cut (site epoch %" PRIu64
                 "); retry",
                 g->id - 1, n->map->site_epoch);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE, t);
        return;
    }
    struct sv_cmd cmd = {0};
    cmd.tenant = ctx->tenant;
    cmd.bucket = m->bucket.p;
    cmd.bucket_len = (uint16_t)m->bucket.len;
    cmd.key = m->key.p;
    cmd.key_len = (uint16_t)m->key.len;
    cmd.session = m->session;
    cmd.seq = m->seq;
    cmd.ack_below = m->ack_below;
    cmd.has_if_version = SV_MSG_HAS(m, SV_F_IF_VERSION);
    cmd.if_version = m->if_version;
    cmd.mtime_ms = stamp_now(n);
    cmd.size = m->size;
    memcpy(cmd.sha256, m->sha256, 32);
    const struct sv_bytes *plain = NULL;
    bool ok = true;
    switch (f->type) {
    case SV_MSG_PUT:
        ok = SV_MSG_HAS(m, SV_F_SESSION) && SV_MSG_HAS(m, SV_F_SEQ) && SV_MSG_HAS(m, SV_F_SIZE) &&
             SV_MSG_HAS(m, SV_F_SHA256) && m->data.len == m->size && m->size <= SV_MSG_CHUNK_MAX;
        cmd.type = SV_CMD_PUT;
        cmd.upload = new_upload_id(n, g);
        plain = &m->data;
        break;
    case SV_MSG_PUT_BEGIN:
        cmd.type = SV_CMD_BEGIN;
        cmd.upload = new_upload_id(n, g);
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
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "missing or invalid field for this request");
        return;
    }
    if (cmd.type != SV_CMD_DELETE && sv__disk_full(n, plain ? plain->len : 0)) {
        char t[96];
        snprintf(t, sizeof t, "disk full on node %" PRIu64 "; nothing was written", n->me->id);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_NO_SPACE, t);
        return;
    }
    int status;
    size_t len;
    uint8_t *buf = build_cmd(n, &cmd, plain, &len, &status);
    if (!buf) {
        sv__reply_status(n, conn, f->type, f->req_id, status, "could not build the command");
        return;
    }
    struct waiter *w = sv__waiter_new(n, c, f, ctx, g->id);
    if (!w) {
        free(buf);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    w->unapplied = len;
    n->unapplied += len;
    sv__host_propose(n, g, buf, len, w);
}

void sv__objects_read(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                      const struct sv__ctx *ctx, struct sv_msg *m, uint8_t *body, struct group *g)
{
    struct waiter *w = sv__waiter_new(n, c, f, ctx, g->id);
    if (!w) {
        free(body);
        sv_msg_free(m);
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    w->body = body;
    w->body_len = f->body_len;
    w->m = *m;
    memset(m, 0, sizeof *m);
    bool stale = SV_MSG_HAS(&w->m, SV_F_CONSISTENCY) && w->m.consistency == 1;
    /* A chunk of a given version never changes: any replica holding it may
     * serve it, and a peer's repair fetch is never linearised. */
    if (stale || f->type == SV_MSG_GET_CHUNK || f->type == SV_MSG_CHUNK_FETCH) {
        sv__objects_start_read(n, w);
        return;
    }
    /* Linearizable: ReadIndex (thesis §6.4) through the leader. */
    if (g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, w->conn, w->type, w->req_id, g->leader);
        sv__waiter_free(w);
        return;
    }
    w->read_ctx = ++n->next_ctx;
    w->next = g->reads;
    g->reads = w;
    sv__host_read_index(n, g, w->read_ctx);
}
