/* The shard state machine on LevelDB and the segment store (see sm.h). */
#define _POSIX_C_SOURCE 200809L
#include "sm.h"

#include "errors.h"
#include "log.h"
#include "proto.h"
#include "sv_assert.h"
#include "sv_codec.h"

#include <errno.h>
#include <leveldb/c.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    CMD_FIXED = 1 + 8 + 2 + 2 + 8 + 4 + 4 + 1 + 8 + 8 + 8 + 8 + 8 + 8 + 32 + 4,
    OBJ_LEN = 8 * 4 + 4 + 1 + 32,
    PFX = 1 + 8 + 1, /* 'S' group tag */
    OKEY_MAX = PFX + 8 + SV_SM_NAME_MAX + 1 + SV_SM_NAME_MAX,
};

/* A key changed by an entry applied since the last sv_sm_commit. */
struct staged {
    uint64_t hash;
    uint32_t klen, vlen, vcap;
    bool deleted;
    uint8_t *kv; /* klen key bytes, then vcap bytes of room for the value */
};

struct sv_sm {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts;
    /* The staged changes, open addressing (load <= 1/2), used by the apply
     * thread only: applying reads through them, sv_sm_commit writes them. */
    struct staged *st;
    uint32_t st_cap, st_n;
};

/* ---- commands ---------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

size_t sv_cmd_encoded_len(const struct sv_cmd *c)
{
    return CMD_FIXED + c->bucket_len + c->key_len + c->data_len;
}

void sv_cmd_encode(const struct sv_cmd *c, uint8_t *p)
{
    *p++ = c->type;
    sv_put64(p, c->tenant), p += 8;
    put16(p, c->bucket_len), p += 2;
    put16(p, c->key_len), p += 2;
    if (c->bucket_len)
        memcpy(p, c->bucket, c->bucket_len);
    p += c->bucket_len;
    if (c->key_len)
        memcpy(p, c->key, c->key_len);
    p += c->key_len;
    sv_put64(p, c->upload), p += 8;
    sv_put32(p, c->chunk), p += 4;
    sv_put32(p, c->n_chunks), p += 4;
    *p++ = c->has_if_version;
    sv_put64(p, c->if_version), p += 8;
    sv_put64(p, c->session), p += 8;
    sv_put64(p, c->seq), p += 8;
    sv_put64(p, c->ack_below), p += 8;
    sv_put64(p, c->mtime_ms), p += 8;
    sv_put64(p, c->size), p += 8;
    memcpy(p, c->sha256, 32), p += 32;
    sv_put32(p, c->data_len), p += 4;
    if (c->data_len && c->data)
        memcpy(p, c->data, c->data_len);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int sv_cmd_decode(const uint8_t *p, size_t len, struct sv_cmd *c)
{
    memset(c, 0, sizeof *c);
    if (len < CMD_FIXED)
        return -EINVAL;
    const uint8_t *end = p + len;
    c->type = *p++;
    c->tenant = sv_get64(p), p += 8;
    c->bucket_len = get16(p), p += 2;
    c->key_len = get16(p), p += 2;
    if (c->type < SV_CMD_PUT || c->type > SV_CMD_MAP || c->bucket_len > SV_SM_NAME_MAX ||
        c->key_len > SV_SM_NAME_MAX ||
        (size_t)(end - p) < CMD_FIXED - 13u + c->bucket_len + c->key_len)
        return -EINVAL;
    c->bucket = p, p += c->bucket_len;
    c->key = p, p += c->key_len;
    c->upload = sv_get64(p), p += 8;
    c->chunk = sv_get32(p), p += 4;
    c->n_chunks = sv_get32(p), p += 4;
    c->has_if_version = *p++ != 0;
    c->if_version = sv_get64(p), p += 8;
    c->session = sv_get64(p), p += 8;
    c->seq = sv_get64(p), p += 8;
    c->ack_below = sv_get64(p), p += 8;
    c->mtime_ms = sv_get64(p), p += 8;
    c->size = sv_get64(p), p += 8;
    memcpy(c->sha256, p, 32), p += 32;
    c->data_len = sv_get32(p), p += 4;
    if (c->data_len > SV_SM_DATA_MAX || (size_t)(end - p) != c->data_len)
        return -EINVAL;
    c->data = p;
    return 0;
}

void sv_chunk_id(uint64_t group, uint64_t upload, uint32_t index, uint8_t id[SV_SEG_ID_BYTES])
{
    memset(id, 0, SV_SEG_ID_BYTES);
    sv_put64be(id, group);
    sv_put64be(id + 8, upload);
    id[16] = (uint8_t)(index >> 24);
    id[17] = (uint8_t)(index >> 16);
    id[18] = (uint8_t)(index >> 8);
    id[19] = (uint8_t)index;
}

void sv_object_id(uint64_t tenant, const uint8_t *bucket, size_t blen, const uint8_t *key,
                  size_t klen, uint8_t oid[16])
{
    uint8_t t[8], md[32], zero = 0;
    unsigned mdlen = 0;
    sv_put64(t, tenant);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ASSERT(ctx);
    ASSERT(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    EVP_DigestUpdate(ctx, t, 8);
    EVP_DigestUpdate(ctx, bucket, blen);
    EVP_DigestUpdate(ctx, &zero, 1);
    EVP_DigestUpdate(ctx, key, klen);
    ASSERT(EVP_DigestFinal_ex(ctx, md, &mdlen) == 1);
    EVP_MD_CTX_free(ctx);
    memcpy(oid, md, 16);
}

/* ---- keys and records --------------------------------------------------- */

static size_t key_pfx(uint8_t *k, uint64_t group, char tag)
{
    k[0] = 'S';
    sv_put64be(k + 1, group);
    k[9] = (uint8_t)tag;
    return PFX;
}

static size_t key_obj(uint8_t *k, uint64_t group, uint64_t tenant, const uint8_t *b, size_t blen,
                      const uint8_t *key, size_t klen)
{
    size_t n = key_pfx(k, group, 'o');
    sv_put64be(k + n, tenant), n += 8;
    memcpy(k + n, b, blen), n += blen;
    k[n++] = 0;
    if (klen)
        memcpy(k + n, key, klen);
    return n + klen;
}

static size_t key_upload(uint8_t *k, uint64_t group, uint64_t upload)
{
    size_t n = key_pfx(k, group, 'u');
    sv_put64be(k + n, upload);
    return n + 8;
}

static size_t key_session(uint8_t *k, uint64_t group, uint64_t session, uint64_t seq)
{
    size_t n = key_pfx(k, group, 's');
    sv_put64be(k + n, session);
    sv_put64be(k + n + 8, seq);
    return n + 16;
}

static void obj_encode(const struct sv_obj *o, uint8_t *v)
{
    sv_put64(v, o->version);
    sv_put64(v + 8, o->size);
    sv_put64(v + 16, o->mtime_ms);
    sv_put64(v + 24, o->upload);
    sv_put32(v + 32, o->n_chunks);
    v[36] = o->deleted;
    memcpy(v + 37, o->sha256, 32);
}

static int obj_decode(const uint8_t *v, size_t len, struct sv_obj *o)
{
    if (len != OBJ_LEN)
        return -EIO;
    o->version = sv_get64(v);
    o->size = sv_get64(v + 8);
    o->mtime_ms = sv_get64(v + 16);
    o->upload = sv_get64(v + 24);
    o->n_chunks = sv_get32(v + 32);
    o->deleted = v[36] != 0;
    memcpy(o->sha256, v + 37, 32);
    return 0;
}

/* An upload record, decoded; bitmap malloc'd. */
struct upload {
    uint64_t tenant, mtime_ms;
    uint8_t bucket[SV_SM_NAME_MAX], key[SV_SM_NAME_MAX];
    uint16_t blen, klen;
    uint32_t nbits;
    uint8_t *bitmap;
};

static int upload_decode(const uint8_t *v, size_t len, struct upload *u)
{
    memset(u, 0, sizeof *u);
    if (len < 16 + 2)
        return -EIO;
    u->tenant = sv_get64(v);
    u->mtime_ms = sv_get64(v + 8);
    size_t off = 16;
    u->blen = get16(v + off), off += 2;
    if (u->blen > SV_SM_NAME_MAX || len < off + u->blen + 2)
        return -EIO;
    memcpy(u->bucket, v + off, u->blen), off += u->blen;
    u->klen = get16(v + off), off += 2;
    if (u->klen > SV_SM_NAME_MAX || len < off + u->klen + 4)
        return -EIO;
    memcpy(u->key, v + off, u->klen), off += u->klen;
    u->nbits = sv_get32(v + off), off += 4;
    size_t nbytes = (u->nbits + 7) / 8;
    if (u->nbits > SV_SM_CHUNKS_MAX || len != off + nbytes)
        return -EIO;
    u->bitmap = calloc(1, nbytes + 1);
    if (!u->bitmap)
        return -ENOMEM;
    memcpy(u->bitmap, v + off, nbytes);
    return 0;
}

/* Encode u into a malloc'd value. */
static uint8_t *upload_encode(const struct upload *u, size_t *len)
{
    size_t nbytes = (u->nbits + 7) / 8;
    *len = 16 + 2 + u->blen + 2 + u->klen + 4 + nbytes;
    uint8_t *v = malloc(*len), *p = v;
    if (!v)
        return NULL;
    sv_put64(p, u->tenant), p += 8;
    sv_put64(p, u->mtime_ms), p += 8;
    put16(p, u->blen), p += 2;
    memcpy(p, u->bucket, u->blen), p += u->blen;
    put16(p, u->klen), p += 2;
    memcpy(p, u->key, u->klen), p += u->klen;
    sv_put32(p, u->nbits), p += 4;
    if (nbytes)
        memcpy(p, u->bitmap, nbytes);
    return v;
}

/* ---- open / close ------------------------------------------------------- */

int sv_sm_open(const char *dir, struct sv_sm **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    struct sv_sm *sm = calloc(1, sizeof *sm);
    if (!sm)
        return -ENOMEM;
    sm->opts = leveldb_options_create();
    /* Most puts look up a key that does not exist yet: a Bloom filter answers
     * that without reading a block of every table. */
    sm->filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(sm->opts, sm->filter);
    leveldb_options_set_create_if_missing(sm->opts, 1);
    leveldb_options_set_compression(sm->opts, leveldb_no_compression);
    sm->ropts = leveldb_readoptions_create();
    sm->wopts = leveldb_writeoptions_create(); /* not synced: sm.h, the invariant */
    char *err = NULL;
    sm->db = leveldb_open(sm->opts, dir, &err);
    if (err) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "state machine database %s: %s", dir, err);
        leveldb_free(err);
        sv_sm_close(sm);
        return -EIO;
    }
    *out = sm;
    return 0;
}

/* Forget the staged changes, adding each to wb first when wb is not NULL. */
static void staged_drain(struct sv_sm *sm, leveldb_writebatch_t *wb)
{
    for (uint32_t i = 0; i < sm->st_cap && sm->st_n; i++) {
        struct staged *e = &sm->st[i];
        if (!e->kv)
            continue;
        if (wb && e->deleted)
            leveldb_writebatch_delete(wb, (const char *)e->kv, e->klen);
        else if (wb)
            leveldb_writebatch_put(wb, (const char *)e->kv, e->klen, (const char *)e->kv + e->klen,
                                   e->vlen);
        free(e->kv);
        e->kv = NULL;
        sm->st_n--;
    }
}

void sv_sm_close(struct sv_sm *sm)
{
    if (!sm)
        return;
    staged_drain(sm, NULL);
    free(sm->st);
    if (sm->db)
        leveldb_close(sm->db);
    leveldb_writeoptions_destroy(sm->wopts);
    leveldb_readoptions_destroy(sm->ropts);
    leveldb_options_destroy(sm->opts);
    leveldb_filterpolicy_destroy(sm->filter);
    free(sm);
}

static uint64_t key_hash(const uint8_t *k, size_t klen)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

/* The slot of key: its staged change, or the free slot where it would go. */
static struct staged *staged_slot(struct sv_sm *sm, const uint8_t *k, size_t klen, uint64_t h)
{
    uint32_t mask = sm->st_cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        struct staged *e = &sm->st[i];
        if (!e->kv || (e->hash == h && e->klen == klen && !memcmp(e->kv, k, klen)))
            return e;
    }
}

static int staged_grow(struct sv_sm *sm)
{
    uint32_t cap = sm->st_cap ? 2 * sm->st_cap : 1024;
    struct staged *old = sm->st, *st = calloc(cap, sizeof *st);
    if (!st)
        return -ENOMEM;
    uint32_t old_cap = sm->st_cap;
    sm->st = st;
    sm->st_cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].kv)
            *staged_slot(sm, old[i].kv, old[i].klen, old[i].hash) = old[i];
    free(old);
    return 0;
}

/* Stage key := v (vlen bytes), or its deletion when v is NULL. */
static int stage(struct sv_sm *sm, const uint8_t *k, size_t klen, const void *v, size_t vlen)
{
    if (2 * (sm->st_n + 1) > sm->st_cap && staged_grow(sm))
        return -ENOMEM;
    uint64_t h = key_hash(k, klen);
    struct staged *e = staged_slot(sm, k, klen, h);
    if (!e->kv || e->vcap < vlen) {
        uint8_t *kv = realloc(e->kv, klen + vlen + 1);
        if (!kv)
            return -ENOMEM;
        if (!e->kv)
            sm->st_n++;
        memcpy(kv, k, klen);
        *e = (struct staged){.hash = h, .klen = (uint32_t)klen, .vcap = (uint32_t)vlen, .kv = kv};
    }
    e->deleted = v == NULL;
    e->vlen = v ? (uint32_t)vlen : 0;
    if (v && vlen)
        memcpy(e->kv + klen, v, vlen);
    return 0;
}

/* Get key; *v malloc'd (free with free(): LevelDB's values are malloc'd too)
 * or NULL when absent. With staged, the changes not yet committed count
 * (the apply thread only). */
static int db_get_at(struct sv_sm *sm, bool staged, const uint8_t *k, size_t klen, char **v,
                     size_t *vlen)
{
    if (staged && sm->st_n) {
        const struct staged *e = staged_slot(sm, k, klen, key_hash(k, klen));
        if (e->kv) {
            *v = NULL;
            *vlen = 0;
            if (e->deleted)
                return 0;
            if (!(*v = malloc(e->vlen + 1)))
                return -ENOMEM;
            memcpy(*v, e->kv + e->klen, e->vlen);
            *vlen = e->vlen;
            return 0;
        }
    }
    char *err = NULL;
    *v = leveldb_get(sm->db, sm->ropts, (const char *)k, klen, vlen, &err);
    if (err) {
        LOG_ERROR("sm: leveldb get: %s", err);
        leveldb_free(err);
        return -EIO;
    }
    return 0;
}

static int db_get(struct sv_sm *sm, const uint8_t *k, size_t klen, char **v, size_t *vlen)
{
    return db_get_at(sm, false, k, klen, v, vlen);
}

int sv_sm_applied(struct sv_sm *sm, uint64_t group, uint64_t *index)
{
    uint8_t k[PFX];
    char *v;
    size_t vlen;
    *index = 0;
    int rc = db_get(sm, k, key_pfx(k, group, 'a'), &v, &vlen);
    if (rc || !v)
        return rc;
    if (vlen == 8)
        *index = sv_get64((const uint8_t *)v);
    else
        rc = -EIO;
    free(v);
    return rc;
}

int sv_sm_map(struct sv_sm *sm, uint64_t group, uint8_t **out, size_t *len)
{
    uint8_t k[PFX];
    char *v;
    size_t vlen;
    int rc = db_get(sm, k, key_pfx(k, group, 'm'), &v, &vlen);
    if (rc)
        return rc;
    if (!v)
        return -ENOENT;
    *out = malloc(vlen ? vlen : 1);
    if (*out) {
        memcpy(*out, v, vlen);
        *len = vlen;
    }
    free(v);
    return *out ? 0 : -ENOMEM;
}

static int obj_get(struct sv_sm *sm, bool staged, uint64_t group, uint64_t tenant,
                   const uint8_t *bucket, size_t blen, const uint8_t *key, size_t klen,
                   struct sv_obj *o)
{
    uint8_t k[OKEY_MAX];
    char *v;
    size_t vlen;
    memset(o, 0, sizeof *o);
    if (blen > SV_SM_NAME_MAX || klen > SV_SM_NAME_MAX)
        return -ENOENT;
    int rc =
        db_get_at(sm, staged, k, key_obj(k, group, tenant, bucket, blen, key, klen), &v, &vlen);
    if (rc)
        return rc;
    if (!v)
        return -ENOENT;
    rc = obj_decode((const uint8_t *)v, vlen, o);
    free(v);
    return rc;
}

int sv_sm_get(struct sv_sm *sm, uint64_t group, uint64_t tenant, const uint8_t *bucket, size_t blen,
              const uint8_t *key, size_t klen, struct sv_obj *o)
{
    return obj_get(sm, false, group, tenant, bucket, blen, key, klen, o);
}

/* An upload's record as the apply thread sees it (staged changes count). */
static int get_upload(struct sv_sm *sm, uint64_t group, uint64_t id, struct upload *u)
{
    uint8_t k[PFX + 8];
    char *v;
    size_t vlen;
    int rc = db_get_at(sm, true, k, key_upload(k, group, id), &v, &vlen);
    if (rc)
        return rc;
    if (!v)
        return -ENOENT;
    rc = upload_decode((const uint8_t *)v, vlen, u);
    free(v);
    return rc;
}

/* ---- apply -------------------------------------------------------------- */

enum { SESSION_ENTRY = 20 };

struct session {
    uint32_t n;
    uint8_t v[4 + SV_SM_RESULTS_PER_SESSION * SESSION_ENTRY];
};

struct apply {
    struct sv_sm *sm;
    struct sv_seg_store *seg;
    uint64_t group;
    char *errmsg;
    size_t errlen;
    struct session sess; /* the command's session record, read once by session_lookup */
    bool sess_loaded;
};

static int seg_fail(struct apply *a, int rc, const char *what)
{
    if (a->errmsg && a->errlen)
        snprintf(a->errmsg, a->errlen, "segment store %s: %s (%s)", what, sv_seg_strerror(rc),
                 sv_seg_errmsg(a->seg));
    return rc;
}

/* Store chunk id (d[0..len)), or delete it when d is NULL (a missing chunk
 * is fine). The segment store holds a bounded number of unsynced changes:
 * when they are full, sync them and try again, for every change an entry
 * makes (an upload of many chunks aborted in one entry is one such entry). */
static int seg_change(struct apply *a, const uint8_t *id, const uint8_t *d, size_t len)
{
    int rc = d ? sv_seg_put(a->seg, id, d, len) : sv_seg_delete(a->seg, id);
    if (rc == SV_SEG_E_PENDING_FULL) {
        rc = sv_seg_sync(a->seg);
        if (rc == 0)
            rc = d ? sv_seg_put(a->seg, id, d, len) : sv_seg_delete(a->seg, id);
    }
    if (rc == SV_SEG_E_NOT_FOUND && !d)
        rc = 0;
    return rc ? seg_fail(a, rc, d ? "put" : "delete") : 0;
}

static int put_chunk(struct apply *a, uint64_t upload, uint32_t idx, const uint8_t *d, size_t len)
{
    uint8_t id[SV_SEG_ID_BYTES];
    sv_chunk_id(a->group, upload, idx, id);
    return seg_change(a, id, d, len);
}

static int delete_chunks(struct apply *a, uint64_t upload, uint32_t n)
{
    uint8_t id[SV_SEG_ID_BYTES];
    for (uint32_t i = 0; i < n; i++) {
        sv_chunk_id(a->group, upload, i, id);
        int rc = seg_change(a, id, NULL, 0);
        if (rc)
            return rc;
    }
    return 0;
}

/* A session's record: the results of its recent writes, as n entries of
 * (seq u64, status u32, version u64), ascending by seq. One get and one put
 * per write, whatever the number of writes the session made. */

static int session_load(struct apply *a, const struct sv_cmd *c, struct session *s)
{
    uint8_t k[PFX + 16];
    char *v;
    size_t vlen;
    s->n = 0;
    int rc = db_get_at(a->sm, true, k, key_session(k, a->group, c->session, 0), &v, &vlen);
    if (rc || !v)
        return rc;
    uint32_t n = vlen >= 4 ? sv_get32((const uint8_t *)v) : UINT32_MAX;
    if (n > SV_SM_RESULTS_PER_SESSION || vlen != 4 + (size_t)n * SESSION_ENTRY) {
        free(v);
        return -EIO;
    }
    memcpy(s->v, v, vlen);
    s->n = n;
    free(v);
    return 0;
}

/* The session result stored for (session, seq), if any: 1 found, 0 not, <0 error. */
static int session_lookup(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    if (c->session == 0)
        return 0;
    int rc = session_load(a, c, &a->sess);
    if (rc)
        return rc;
    a->sess_loaded = true;
    const struct session *sp = &a->sess;
    for (uint32_t i = 0; i < sp->n; i++) {
        const uint8_t *e = sp->v + 4 + i * SESSION_ENTRY;
        if (sv_get64(e) == c->seq) {
            res->status = (int)sv_get32(e + 8);
            res->version = sv_get64(e + 12);
            return 1;
        }
    }
    return 0;
}

/* Record the result for (session, seq), forgetting results below ack_below
 * and, past SV_SM_RESULTS_PER_SESSION, the oldest. */
static int session_store(struct apply *a, const struct sv_cmd *c, const struct sv_sm_result *res)
{
    if (c->session == 0)
        return 0;
    ASSERT(a->sess_loaded); /* every write looks its session up first */
    const struct session *sp = &a->sess;
    struct session out;
    out.n = 0;
    uint32_t skip =
        sp->n + 1 > SV_SM_RESULTS_PER_SESSION ? sp->n + 1 - SV_SM_RESULTS_PER_SESSION : 0;
    bool placed = false;
    for (uint32_t i = 0; i <= sp->n; i++) {
        const uint8_t *e = i < sp->n ? sp->v + 4 + i * SESSION_ENTRY : NULL;
        if (!placed && (!e || sv_get64(e) > c->seq)) {
            uint8_t *d = out.v + 4 + out.n++ * SESSION_ENTRY;
            sv_put64(d, c->seq);
            sv_put32(d + 8, (uint32_t)res->status);
            sv_put64(d + 12, res->version);
            placed = true;
        }
        if (!e)
            break;
        if (skip) {
            skip--;
            continue;
        }
        if (sv_get64(e) < c->ack_below)
            continue;
        memcpy(out.v + 4 + out.n++ * SESSION_ENTRY, e, SESSION_ENTRY);
    }
    sv_put32(out.v, out.n);
    uint8_t k[PFX + 16];
    size_t klen = key_session(k, a->group, c->session, 0);
    return stage(a->sm, k, klen, out.v, 4 + (size_t)out.n * SESSION_ENTRY);
}

/* Does the current record allow a write with c's condition? */
static bool version_ok(const struct sv_cmd *c, int found, const struct sv_obj *cur)
{
    bool live = found == 0 && !cur->deleted;
    if (!c->has_if_version)
        return true;
    if (c->if_version == 0)
        return !live;
    return live && cur->version == c->if_version;
}

/* Read c's key (*found: 0 or -ENOENT) and check c's condition against it:
 * 0 it holds, 1 a version conflict (res says so), <0 an I/O error. */
static int check_version(struct apply *a, const struct sv_cmd *c, struct sv_obj *cur, int *found,
                         struct sv_sm_result *res)
{
    *found = obj_get(a->sm, true, a->group, c->tenant, c->bucket, c->bucket_len, c->key, c->key_len,
                     cur);
    if (*found && *found != -ENOENT)
        return *found;
    if (!version_ok(c, *found, cur)) {
        res->status = SV_ST_VERSION_CONFLICT;
        res->version = *found == 0 && !cur->deleted ? cur->version : 0;
        return 1;
    }
    return 0;
}

/* Make (upload, n_chunks) the new version of c's key, whose current record
 * check_version read into cur. */
static int install_checked(struct apply *a, const struct sv_cmd *c, uint64_t upload,
                           uint32_t n_chunks, const struct sv_obj *cur, int found,
                           struct sv_sm_result *res)
{
    uint8_t k[OKEY_MAX], v[OBJ_LEN];
    struct sv_obj o = {0};
    o.version = (found == 0 ? cur->version : 0) + 1;
    o.size = c->size;
    o.mtime_ms = c->mtime_ms;
    o.upload = upload;
    o.n_chunks = n_chunks;
    memcpy(o.sha256, c->sha256, 32);
    obj_encode(&o, v);
    size_t klen = key_obj(k, a->group, c->tenant, c->bucket, c->bucket_len, c->key, c->key_len);
    int rc = stage(a->sm, k, klen, v, sizeof v);
    if (rc)
        return rc;
    if (found == 0 && !cur->deleted) {
        rc = delete_chunks(a, cur->upload, cur->n_chunks);
        if (rc)
            return rc;
    }
    res->status = SV_ST_OK;
    res->version = o.version;
    return 0;
}

/* check_version, then install_checked: 0 installed, 1 conflict, <0 error. */
static int install_version(struct apply *a, const struct sv_cmd *c, uint64_t upload,
                           uint32_t n_chunks, struct sv_sm_result *res)
{
    struct sv_obj cur;
    int found;
    int rc = check_version(a, c, &cur, &found, res);
    return rc ? rc : install_checked(a, c, upload, n_chunks, &cur, found, res);
}

/* The condition is checked before the chunk is stored: a conflicting put
 * writes nothing to the segment store. */
static int apply_put(struct apply *a, uint64_t index, const struct sv_cmd *c,
                     struct sv_sm_result *res)
{
    int rc = session_lookup(a, c, res);
    if (rc)
        return rc < 0 ? rc : 0;
    struct sv_obj cur;
    int found;
    rc = check_version(a, c, &cur, &found, res);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        uint64_t upload = c->upload ? c->upload : index;
        uint32_t n = c->data_len ? 1 : 0;
        if (n && (rc = put_chunk(a, upload, 0, c->data, c->data_len)))
            return rc;
        if ((rc = install_checked(a, c, upload, n, &cur, found, res)))
            return rc;
    }
    return session_store(a, c, res);
}

static int apply_begin(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    uint8_t k[PFX + 8];
    struct upload u = {0};
    u.tenant = c->tenant;
    u.mtime_ms = c->mtime_ms;
    u.blen = c->bucket_len;
    u.klen = c->key_len;
    memcpy(u.bucket, c->bucket, c->bucket_len);
    memcpy(u.key, c->key, c->key_len);
    size_t vlen;
    uint8_t *v = upload_encode(&u, &vlen);
    if (!v)
        return -ENOMEM;
    int rc = stage(a->sm, k, key_upload(k, a->group, c->upload), v, vlen);
    free(v);
    res->status = SV_ST_OK;
    res->upload = c->upload;
    return rc;
}

static int apply_chunk(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    struct upload u;
    int rc = get_upload(a->sm, a->group, c->upload, &u);
    if (rc == -ENOENT) {
        res->status = SV_ST_NOT_FOUND; /* committed or aborted already */
        return 0;
    }
    if (rc)
        return rc;
    if (c->chunk >= SV_SM_CHUNKS_MAX) {
        res->status = SV_ST_TOO_BIG;
        goto out;
    }
    if (c->chunk >= u.nbits) {
        uint32_t nbits = c->chunk + 1;
        uint8_t *b = calloc(1, (nbits + 7) / 8 + 1);
        if (!b) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(b, u.bitmap, (u.nbits + 7) / 8);
        free(u.bitmap);
        u.bitmap = b;
        u.nbits = nbits;
    }
    rc = put_chunk(a, c->upload, c->chunk, c->data, c->data_len);
    if (rc)
        goto out;
    u.bitmap[c->chunk / 8] |= (uint8_t)(1u << (c->chunk % 8));
    u.mtime_ms = c->mtime_ms; /* the TTL counts from the upload's last chunk, not its start */
    size_t vlen;
    uint8_t k[PFX + 8], *v = upload_encode(&u, &vlen);
    if (!v) {
        rc = -ENOMEM;
        goto out;
    }
    rc = stage(a->sm, k, key_upload(k, a->group, c->upload), v, vlen);
    free(v);
    res->status = SV_ST_OK;
out:
    free(u.bitmap);
    return rc;
}

/* Remove upload id: its chunks and record. */
static int drop_upload(struct apply *a, uint64_t id, const struct upload *u, uint32_t keep)
{
    uint8_t cid[SV_SEG_ID_BYTES], k[PFX + 8];
    for (uint32_t i = keep; i < u->nbits; i++) {
        if (!(u->bitmap[i / 8] >> (i % 8) & 1))
            continue;
        sv_chunk_id(a->group, id, i, cid);
        int rc = seg_change(a, cid, NULL, 0);
        if (rc)
            return rc;
    }
    return stage(a->sm, k, key_upload(k, a->group, id), NULL, 0);
}

static int apply_commit(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    int rc = session_lookup(a, c, res);
    if (rc)
        return rc < 0 ? rc : 0;
    struct upload u;
    rc = get_upload(a->sm, a->group, c->upload, &u);
    if (rc == -ENOENT) {
        res->status = SV_ST_NOT_FOUND;
        return session_store(a, c, res);
    }
    if (rc)
        return rc;
    bool complete = c->n_chunks <= u.nbits && c->n_chunks <= SV_SM_CHUNKS_MAX &&
                    (c->n_chunks > 0 || c->size == 0) && u.blen == c->bucket_len &&
                    u.klen == c->key_len && !memcmp(u.bucket, c->bucket, u.blen) &&
                    !memcmp(u.key, c->key, u.klen) && u.tenant == c->tenant;
    for (uint32_t i = 0; complete && i < c->n_chunks; i++)
        complete = u.bitmap[i / 8] >> (i % 8) & 1;
    if (!complete) {
        /* Missing chunks: the client may still send them and commit again. */
        res->status = SV_ST_BAD_REQUEST;
        free(u.bitmap);
        return 0;
    }
    rc = install_version(a, c, c->upload, c->n_chunks, res);
    if (rc >= 0)
        rc = drop_upload(a, c->upload, &u, rc == 1 ? 0 : c->n_chunks);
    free(u.bitmap);
    if (rc < 0)
        return rc;
    return session_store(a, c, res);
}

static int apply_delete(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    int rc = session_lookup(a, c, res);
    if (rc)
        return rc < 0 ? rc : 0;
    struct sv_obj cur;
    int found = obj_get(a->sm, true, a->group, c->tenant, c->bucket, c->bucket_len, c->key,
                        c->key_len, &cur);
    if (found && found != -ENOENT)
        return found;
    if (found || cur.deleted) {
        res->status = SV_ST_NOT_FOUND;
    } else if (c->has_if_version && c->if_version != cur.version) {
        res->status = SV_ST_VERSION_CONFLICT;
        res->version = cur.version;
    } else {
        rc = delete_chunks(a, cur.upload, cur.n_chunks);
        if (rc)
            return rc;
        uint8_t k[OKEY_MAX], v[OBJ_LEN];
        struct sv_obj t = {.version = cur.version, .mtime_ms = c->mtime_ms, .deleted = true};
        obj_encode(&t, v);
        size_t klen = key_obj(k, a->group, c->tenant, c->bucket, c->bucket_len, c->key, c->key_len);
        if ((rc = stage(a->sm, k, klen, v, sizeof v)))
            return rc;
        res->status = SV_ST_OK;
        res->version = cur.version;
    }
    return session_store(a, c, res);
}

static int apply_abort(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    struct upload u;
    int rc = get_upload(a->sm, a->group, c->upload, &u);
    if (rc == -ENOENT) {
        res->status = SV_ST_NOT_FOUND;
        return 0;
    }
    if (rc)
        return rc;
    if (c->mtime_ms != 0 && u.mtime_ms >= c->mtime_ms) {
        /* A chunk applied since the leader found the upload idle. */
        free(u.bitmap);
        res->status = SV_ST_VERSION_CONFLICT;
        return 0;
    }
    rc = drop_upload(a, c->upload, &u, 0);
    free(u.bitmap);
    res->status = SV_ST_OK;
    return rc;
}

int sv_sm_apply(struct sv_sm *sm, struct sv_seg_store *seg, uint64_t group,
                const struct sv_raft_entry *e, struct sv_sm_result *res, char *errmsg,
                size_t errlen)
{
    memset(res, 0, sizeof *res);
    struct apply a = {.sm = sm, .seg = seg, .group = group, .errmsg = errmsg, .errlen = errlen};
    int rc = 0;
    if (e->type == SV_RAFT_ENTRY_NORMAL) {
        struct sv_cmd c;
        if (sv_cmd_decode(e->data, e->len, &c)) {
            /* Only a bug can put a malformed command in the log: every
             * replica skips it the same way. */
            res->status = SV_ST_INTERNAL;
        } else {
            switch (c.type) {
            case SV_CMD_PUT:
                rc = apply_put(&a, e->index, &c, res);
                break;
            case SV_CMD_BEGIN:
                rc = apply_begin(&a, &c, res);
                break;
            case SV_CMD_CHUNK:
                rc = apply_chunk(&a, &c, res);
                break;
            case SV_CMD_COMMIT:
                rc = apply_commit(&a, &c, res);
                break;
            case SV_CMD_DELETE:
                rc = apply_delete(&a, &c, res);
                break;
            case SV_CMD_MAP: {
                uint8_t k[PFX];
                rc = stage(sm, k, key_pfx(k, group, 'm'), c.data, c.data_len);
                res->status = SV_ST_OK;
                break;
            }
            default:
                rc = apply_abort(&a, &c, res);
                break;
            }
        }
    }
    if (rc == 0) {
        uint8_t k[PFX], v[8];
        sv_put64(v, e->index);
        rc = stage(sm, k, key_pfx(k, group, 'a'), v, 8);
    }
    if (rc) {
        staged_drain(sm, NULL);
        if (errmsg && errlen && !errmsg[0])
            snprintf(errmsg, errlen, "apply: %s", sv_strerror(rc));
    }
    return rc;
}

void sv_sm_discard(struct sv_sm *sm)
{
    staged_drain(sm, NULL);
}

/* Write wb with wopts; 0 or -EIO with errmsg (may be NULL) set. -EIO for a
 * full disk too: LevelDB refuses every write after a failed one until it is
 * opened again, so this is no condition to wait out. */
static int write_batch(struct sv_sm *sm, const leveldb_writeoptions_t *wopts,
                       leveldb_writebatch_t *wb, const char *what, char *errmsg, size_t errlen)
{
    char *err = NULL;
    leveldb_write(sm->db, wopts, wb, &err);
    if (!err)
        return 0;
    if (errmsg && errlen)
        snprintf(errmsg, errlen, "state machine %s: %s", what, err);
    leveldb_free(err);
    return -EIO;
}

int sv_sm_commit(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen)
{
    if (!sm->st_n)
        return 0;
    /* The chunks beneath the records first (sm.h: the invariant). */
    int rc = sv_seg_sync(seg);
    if (rc) {
        staged_drain(sm, NULL);
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "segment sync: %s (%s)", sv_seg_strerror(rc),
                     sv_seg_errmsg(seg));
        return rc;
    }
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    staged_drain(sm, wb);
    rc = write_batch(sm, sm->wopts, wb, "write", errmsg, errlen);
    leveldb_writebatch_destroy(wb);
    return rc;
}

/* ---- reads -------------------------------------------------------------- */

/* memcmp order of byte strings, a proper prefix first. */
static int cmp_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    return c ? c : (alen > blen) - (alen < blen);
}

/* Destroy it; -EIO if it stopped on a read error rather than at the end
 * (an iteration cut short must not pass for the whole range). */
static int iter_end(leveldb_iterator_t *it)
{
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    if (!err)
        return 0;
    LOG_ERROR("sm: iterator: %s", err);
    leveldb_free(err);
    return -EIO;
}

int sv_sm_list(struct sv_sm *sm, uint64_t group, uint64_t tenant, const uint8_t *bucket,
               size_t blen, const uint8_t *prefix, size_t plen, const uint8_t *start_after,
               size_t salen, uint32_t limit, bool *more, sv_sm_list_cb cb, void *arg)
{
    uint8_t base[OKEY_MAX], seek[OKEY_MAX];
    *more = false;
    if (blen > SV_SM_NAME_MAX || plen > SV_SM_NAME_MAX || salen > SV_SM_NAME_MAX)
        return -EINVAL;
    size_t bl = key_obj(base, group, tenant, bucket, blen, NULL, 0);
    /* Seek to the later of prefix and start_after. */
    bool after = salen && cmp_bytes(start_after, salen, prefix, plen) > 0;
    size_t sl = after ? key_obj(seek, group, tenant, bucket, blen, start_after, salen)
                      : key_obj(seek, group, tenant, bucket, blen, prefix, plen);
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, sm->ropts);
    uint32_t n = 0;
    int rc = 0;
    for (leveldb_iter_seek(it, (const char *)seek, sl); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < bl || memcmp(k, base, bl))
            break;
        const uint8_t *name = k + bl;
        size_t nlen = klen - bl;
        if (nlen < plen || (plen && memcmp(name, prefix, plen)))
            break; /* names with the prefix are contiguous and we started at them */
        if (after && cmp_bytes(name, nlen, start_after, salen) <= 0)
            continue;
        struct sv_obj o;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        if (obj_decode(v, vlen, &o)) {
            rc = -EIO;
            break;
        }
        if (o.deleted)
            continue;
        if (n == limit) {
            *more = true;
            break;
        }
        cb(arg, name, nlen, &o);
        n++;
    }
    int end = iter_end(it);
    return rc ? rc : end;
}

/* Iterate the records of group with tag; cb returns false to stop. */
static int scan(struct sv_sm *sm, uint64_t group, char tag,
                bool (*cb)(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen),
                void *arg)
{
    uint8_t pfx[PFX];
    size_t pl = key_pfx(pfx, group, tag);
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, sm->ropts);
    for (leveldb_iter_seek(it, (const char *)pfx, pl); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < pl || memcmp(k, pfx, pl))
            break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        if (!cb(arg, k, klen, v, vlen))
            break;
    }
    return iter_end(it);
}

struct expired {
    uint64_t before_ms, *ids;
    size_t cap, n;
};

static bool expired_cb(void *arg, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    struct expired *e = arg;
    if (klen != PFX + 8 || vlen < 16)
        return true;
    if (sv_get64(v + 8) < e->before_ms) {
        if (e->n == e->cap)
            return false;
        e->ids[e->n++] = sv_get64be(k + PFX);
    }
    return true;
}

int sv_sm_expired_uploads(struct sv_sm *sm, uint64_t group, uint64_t before_ms, uint64_t *ids,
                          size_t cap, size_t *n)
{
    struct expired e = {before_ms, ids, cap, 0};
    int rc = scan(sm, group, 'u', expired_cb, &e);
    *n = e.n;
    return rc;
}

/* ---- snapshots ---------------------------------------------------------- */

struct sv_sm_view {
    const leveldb_snapshot_t *snap;
};

struct sv_sm_view *sv_sm_view(struct sv_sm *sm)
{
    struct sv_sm_view *v = malloc(sizeof *v);
    if (v)
        v->snap = leveldb_create_snapshot(sm->db);
    return v;
}

void sv_sm_view_release(struct sv_sm *sm, struct sv_sm_view *v)
{
    if (!v)
        return;
    leveldb_release_snapshot(sm->db, v->snap);
    free(v);
}

int sv_sm_snapshot(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group, size_t max,
                   uint8_t **out, size_t *len)
{
    uint8_t pfx[9] = {'S'};
    sv_put64be(pfx + 1, group);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    if (view)
        leveldb_readoptions_set_snapshot(ro, view->snap);
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, ro);
    leveldb_readoptions_destroy(ro); /* the iterator keeps what it needs */
    for (leveldb_iter_seek(it, (const char *)pfx, sizeof pfx); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < sizeof pfx || memcmp(k, pfx, sizeof pfx))
            break;
        if (klen == PFX && k[9] == 'a')
            continue;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        size_t need = n + 8 + klen + vlen;
        if (need > max) {
            rc = -EFBIG;
            break;
        }
        if (need > cap) {
            while (cap < need)
                cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
        }
        sv_put32(buf + n, (uint32_t)klen), n += 4;
        memcpy(buf + n, k, klen), n += klen;
        sv_put32(buf + n, (uint32_t)vlen), n += 4;
        memcpy(buf + n, v, vlen), n += vlen;
    }
    int end = iter_end(it);
    if (!rc)
        rc = end;
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

int sv_sm_install(struct sv_sm *sm, struct sv_seg_store *seg, uint64_t group, uint64_t index,
                  const uint8_t *img, size_t len)
{
    uint8_t pfx[9] = {'S'};
    sv_put64be(pfx + 1, group);
    /* Validate the whole image before touching anything. */
    for (size_t off = 0; off < len;) {
        if (len - off < 4)
            return -EINVAL;
        uint32_t kl = sv_get32(img + off);
        if (len - off - 4 < (uint64_t)kl + 4 || kl < PFX || memcmp(img + off + 4, pfx, 9))
            return -EINVAL;
        off += 4 + kl;
        uint32_t vl = sv_get32(img + off);
        if (len - off - 4 < vl)
            return -EINVAL;
        off += 4 + vl;
    }
    /* The image replaces what is in the database, so that must be all. */
    int rc = sv_sm_commit(sm, seg, NULL, 0);
    if (rc)
        return rc;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, sm->ropts);
    for (leveldb_iter_seek(it, (const char *)pfx, sizeof pfx); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        if (klen < sizeof pfx || memcmp(k, pfx, sizeof pfx))
            break;
        leveldb_writebatch_delete(wb, k, klen);
    }
    if (iter_end(it)) {
        leveldb_writebatch_destroy(wb);
        return -EIO;
    }
    for (size_t off = 0; off < len;) {
        uint32_t kl = sv_get32(img + off);
        const uint8_t *k = img + off + 4;
        off += 4 + kl;
        uint32_t vl = sv_get32(img + off);
        leveldb_writebatch_put(wb, (const char *)k, kl, (const char *)img + off + 4, vl);
        off += 4 + vl;
    }
    uint8_t k[PFX], v[8];
    sv_put64(v, index);
    leveldb_writebatch_put(wb, (const char *)k, key_pfx(k, group, 'a'), (const char *)v, 8);
    leveldb_writeoptions_t *sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(sync, 1);
    rc = write_batch(sm, sync, wb, "install snapshot", NULL, 0);
    leveldb_writeoptions_destroy(sync);
    leveldb_writebatch_destroy(wb);
    return rc;
}
