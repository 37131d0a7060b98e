/* Applying committed entries to the shard state machine: sessions, versions, commands. */
#define _POSIX_C_SOURCE 200809L
#include "sm_internal.h"

#include "errors.h"
#include "proto.h"
#include "sv_assert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SESSION_ENTRY = 20 };

struct session {
    uint32_t n;
    uint8_t v[4 + SV_SM_RESULTS_PER_SESSION * SESSION_ENTRY];
};

struct apply {
    struct sv_sm *sm;
    struct sv_seg_store *seg;
    uint64_t group;
    uint64_t index; /* the command's (the primary's, for a shipped one) */
    uint64_t epoch; /* ... and its site epoch */
    char *errmsg;
    size_t errlen;
    struct session sess; /* the command's session record, read once by session_lookup */
    bool sess_loaded;
    bool copy; /* a held chunk this replica lacks: the copy marker was set */
};

static int seg_fail(struct apply *a, int rc, const char *what)
{
    if (a->errmsg && a->errlen)
        snprintf(a->errmsg, a->errlen, "segment store %s: %s (%s)", what, sv_seg_strerror(rc),
                 sv_seg_errmsg(a->seg));
    return rc;
}

/* Store chunk id (d[0..len)). The segment store holds a bounded number of
 * unsynced changes: when they are full, sync them and try again. */
static int put_chunk(struct apply *a, uint64_t upload, uint32_t idx, const uint8_t *d, size_t len)
{
    uint8_t id[SV_SEG_ID_BYTES];
    sv_chunk_id(a->group, upload, idx, id);
    int rc = sv_seg_put(a->seg, id, d, len);
    if (rc == SV_SEG_E_PENDING_FULL) {
        rc = sv_seg_sync(a->seg);
        if (rc == 0)
            rc = sv_seg_put(a->seg, id, d, len);
    }
    return rc ? seg_fail(a, rc, "put") : 0;
}

/* The staged records stop claiming chunk idx of upload: it is deleted only
 * once they are written (sv_sm_commit; sm.h, the invariant). Deleting it
 * here, before them, let a crash leave the old records claiming a chunk
 * already gone, served so by stale reads until the log was applied again. */
static int release_chunk(struct apply *a, uint64_t upload, uint32_t idx)
{
    uint8_t id[SV_SEG_ID_BYTES];
    sv_chunk_id(a->group, upload, idx, id);
    return sv__sm_release(a->sm, id);
}

static int delete_chunks(struct apply *a, uint64_t upload, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = release_chunk(a, upload, i);
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
    int rc = sv__sm_db_get_at(a->sm, true, k, key_session(k, a->group, c->session, 0), &v, &vlen);
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
    return sv__sm_stage(a->sm, k, klen, out.v, 4 + (size_t)out.n * SESSION_ENTRY);
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
    *found = sv__sm_obj_get(a->sm, true, a->group, c->tenant, c->bucket, c->bucket_len, c->key,
                            c->key_len, cur);
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
    o.index = a->index;
    o.epoch = a->epoch;
    memcpy(o.sha256, c->sha256, 32);
    sv__sm_obj_encode(&o, v);
    size_t klen = key_obj(k, a->group, c->tenant, c->bucket, c->bucket_len, c->key, c->key_len);
    int rc = sv__sm_stage(a->sm, k, klen, v, sizeof v);
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
    uint8_t *v = sv__sm_upload_encode(&u, &vlen);
    if (!v)
        return -ENOMEM;
    int rc = sv__sm_stage(a->sm, k, key_upload(k, a->group, c->upload), v, vlen);
    free(v);
    res->status = SV_ST_OK;
    res->upload = c->upload;
    return rc;
}

/* CHUNK c. stored: a held one whose bytes were put when it was held (the
 * held record has none, c->data_len is 0): when no upload takes it, it
 * is deleted; when this replica lacks it (the held record came in a
 * snapshot), the copy marker is set and a->copy says so. */
static int apply_chunk_as(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res,
                          bool stored)
{
    struct upload u;
    int rc = sv__sm_get_upload(a->sm, a->group, c->upload, &u);
    if (rc == -ENOENT) {
        res->status = SV_ST_NOT_FOUND; /* committed or aborted already */
        return stored ? release_chunk(a, c->upload, c->chunk) : 0;
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
    if (!stored) {
        rc = put_chunk(a, c->upload, c->chunk, c->data, c->data_len);
    } else {
        uint8_t id[SV_SEG_ID_BYTES], k[PFX], v[8];
        sv_chunk_id(a->group, c->upload, c->chunk, id);
        int has = sv_seg_has(a->seg, id);
        if (has < 0) {
            rc = seg_fail(a, has, "index");
        } else if (!has) {
            sv_put64(v, a->index);
            rc = sv__sm_stage(a->sm, k, key_pfx(k, a->group, 'c'), v, 8);
            a->copy = true;
        }
    }
    if (rc)
        goto out;
    u.bitmap[c->chunk / 8] |= (uint8_t)(1u << (c->chunk % 8));
    u.mtime_ms = c->mtime_ms; /* the TTL counts from the upload's last chunk, not its start */
    size_t vlen;
    uint8_t k[PFX + 8], *v = sv__sm_upload_encode(&u, &vlen);
    if (!v) {
        rc = -ENOMEM;
        goto out;
    }
    rc = sv__sm_stage(a->sm, k, key_upload(k, a->group, c->upload), v, vlen);
    free(v);
    res->status = SV_ST_OK;
out:
    free(u.bitmap);
    return rc;
}

static int apply_chunk(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    return apply_chunk_as(a, c, res, false);
}

/* Remove upload id: its chunks and record. */
static int drop_upload(struct apply *a, uint64_t id, const struct upload *u, uint32_t keep)
{
    uint8_t k[PFX + 8];
    for (uint32_t i = keep; i < u->nbits; i++) {
        if (!(u->bitmap[i / 8] >> (i % 8) & 1))
            continue;
        int rc = release_chunk(a, id, i);
        if (rc)
            return rc;
    }
    return sv__sm_stage(a->sm, k, key_upload(k, a->group, id), NULL, 0);
}

static int apply_commit(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    int rc = session_lookup(a, c, res);
    if (rc)
        return rc < 0 ? rc : 0;
    struct upload u;
    rc = sv__sm_get_upload(a->sm, a->group, c->upload, &u);
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
    int found = sv__sm_obj_get(a->sm, true, a->group, c->tenant, c->bucket, c->bucket_len, c->key,
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
        struct sv_obj t = {.version = cur.version,
                           .mtime_ms = c->mtime_ms,
                           .deleted = true,
                           .index = a->index,
                           .epoch = a->epoch};
        sv__sm_obj_encode(&t, v);
        size_t klen = key_obj(k, a->group, c->tenant, c->bucket, c->bucket_len, c->key, c->key_len);
        if ((rc = sv__sm_stage(a->sm, k, klen, v, sizeof v)))
            return rc;
        res->status = SV_ST_OK;
        res->version = cur.version;
    }
    return session_store(a, c, res);
}

static int apply_abort(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    struct upload u;
    int rc = sv__sm_get_upload(a->sm, a->group, c->upload, &u);
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

/* A change of the map (meta group). With if_version, one recorded at that
 * epoch (map.h's encoding: from svmap2 on, the epoch follows the 6-byte
 * magic; the first record has none and counts as 1): two changes made from
 * the same map cannot both land. */
static int apply_map(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    uint8_t k[PFX];
    size_t klen = key_pfx(k, a->group, 'm');
    char *cur = NULL;
    size_t cur_len = 0;
    int rc = 0;
    if (c->has_if_version)
        rc = sv__sm_db_get_at(a->sm, true, k, klen, &cur, &cur_len);
    uint64_t epoch = !cur ? 0
                     : cur_len >= 14 && !memcmp(cur, "svmap", 5) && cur[5] >= '2'
                         ? sv_get64((const uint8_t *)cur + 6)
                         : 1;
    free(cur);
    if (!rc && c->has_if_version && epoch != c->if_version) {
        res->status = SV_ST_VERSION_CONFLICT;
        res->version = epoch;
    } else if (!rc) {
        rc = sv__sm_stage(a->sm, k, klen, c->data, c->data_len);
        res->status = SV_ST_OK;
    }
    return rc;
}

static int apply_ship(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res);
static int apply_seed(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res);

/* Command c at index (the primary's, for a shipped one). */
static int apply_cmd(struct apply *a, uint64_t index, const struct sv_cmd *c,
                     struct sv_sm_result *res)
{
    a->index = index;
    a->epoch = c->epoch;
    switch (c->type) {
    case SV_CMD_PUT:
        return apply_put(a, index, c, res);
    case SV_CMD_BEGIN:
        return apply_begin(a, c, res);
    case SV_CMD_CHUNK:
        return apply_chunk(a, c, res);
    case SV_CMD_COMMIT:
        return apply_commit(a, c, res);
    case SV_CMD_DELETE:
        return apply_delete(a, c, res);
    case SV_CMD_MAP:
        return apply_map(a, c, res);
    case SV_CMD_SHIP:
        return apply_ship(a, c, res);
    case SV_CMD_SEED:
        return apply_seed(a, c, res);
    case SV_CMD_DR_MARK: {
        uint8_t k[PFX], v[8];
        sv_put64(v, c->upload);
        res->status = SV_ST_OK;
        return sv__sm_stage(a->sm, k, key_pfx(k, a->group, 'D'), v, 8);
    }
    default:
        return apply_abort(a, c, res);
    }
}

static size_t key_ship(uint8_t *k, uint64_t group)
{
    return key_pfx(k, group, 'd');
}

enum { SHIP_LEN_V1 = 24, SHIP_LEN_V2 = 48, SHIP_LEN = 88 };

/* A record of SHIP_LEN_V1 bytes (written before epochs and seeds) has epoch
 * 0; one of either older length held nothing: all it shipped ran. */
int sv__sm_ship_decode(const char *v, size_t vlen, struct sv_sm_ship *st)
{
    memset(st, 0, sizeof *st);
    if (!v)
        return 0;
    if (vlen != SHIP_LEN_V1 && vlen != SHIP_LEN_V2 && vlen != SHIP_LEN)
        return -EIO;
    const uint8_t *p = (const uint8_t *)v;
    st->cursor = sv_get64(p);
    st->closed_ms = sv_get64(p + 8);
    st->commit = sv_get64(p + 16);
    st->applied = st->cursor;
    if (vlen >= SHIP_LEN_V2) {
        st->epoch = sv_get64(p + 24);
        st->seed = sv_get64(p + 32);
        st->seed_next = sv_get64(p + 40);
    }
    if (vlen == SHIP_LEN) {
        st->applied = sv_get64(p + 48);
        st->release_ms = sv_get64(p + 56);
        st->held = sv_get64(p + 64);
        st->held_bytes = sv_get64(p + 72);
        st->cut_epoch = sv_get64(p + 80);
    }
    return 0;
}

static int ship_store(struct apply *a, const struct sv_sm_ship *st)
{
    uint8_t k[PFX], v[SHIP_LEN];
    sv_put64(v, st->cursor);
    sv_put64(v + 8, st->closed_ms);
    sv_put64(v + 16, st->commit);
    sv_put64(v + 24, st->epoch);
    sv_put64(v + 32, st->seed);
    sv_put64(v + 40, st->seed_next);
    sv_put64(v + 48, st->applied);
    sv_put64(v + 56, st->release_ms);
    sv_put64(v + 64, st->held);
    sv_put64(v + 72, st->held_bytes);
    sv_put64(v + 80, st->cut_epoch);
    return sv__sm_stage(a->sm, k, key_ship(k, a->group), v, sizeof v);
}

/* The shipping state as applied so far (the staged changes included). */
static int ship_load(struct apply *a, struct sv_sm_ship *st)
{
    uint8_t k[PFX];
    char *cur = NULL;
    size_t cur_len = 0;
    int rc = sv__sm_db_get_at(a->sm, true, k, key_ship(k, a->group), &cur, &cur_len);
    if (!rc)
        rc = sv__sm_ship_decode(cur, cur_len, st);
    free(cur);
    return rc;
}

int sv_sm_ship_state(struct sv_sm *sm, uint64_t group, struct sv_sm_ship *out)
{
    uint8_t k[PFX];
    char *v = NULL;
    size_t vlen = 0;
    int rc = sv__sm_db_get_at(sm, false, k, key_ship(k, group), &v, &vlen);
    if (!rc)
        rc = sv__sm_ship_decode(v, vlen, out);
    free(v);
    v = NULL;
    if (!rc)
        rc = sv__sm_db_get_at(sm, false, k, key_pfx(k, group, 'D'), &v, &vlen);
    if (!rc && v)
        out->mark = vlen == 8 ? sv_get64((const uint8_t *)v) : 0;
    free(v);
    return rc;
}

/* Whether a shipped command runs: the primary's object commands do; its
 * MAP, SHIP, DR_MARK and SEED (a shard's log never holds them), entries
 * that are not commands, and what does not decode change nothing. */
static bool ship_runs(const uint8_t *data, size_t len, struct sv_cmd *inner)
{
    return len && !sv_cmd_decode(data, len, inner) && inner->type != SV_CMD_MAP &&
           inner->type != SV_CMD_SHIP && inner->type != SV_CMD_DR_MARK &&
           inner->type != SV_CMD_SEED;
}

static size_t key_held(uint8_t *k, uint64_t group, uint64_t index)
{
    size_t n = key_pfx(k, group, 'h');
    sv_put64be(k + n, index);
    return n + 8;
}

/* A held CHUNK whose bytes went to the segment store when it was held. */
static bool stored_chunk(const struct sv_cmd *c)
{
    return c->type == SV_CMD_CHUNK && c->data_len == 0; /* a client's always has bytes */
}

/* Run the shipped command data[0..len) at the primary's index (a held
 * record's: a stored chunk's bytes are in the segment store). */
static int ship_run(struct apply *a, uint64_t index, const uint8_t *data, size_t len)
{
    struct sv_cmd inner;
    struct sv_sm_result ir;
    if (!ship_runs(data, len, &inner))
        return 0;
    memset(&ir, 0, sizeof ir);
    a->sess_loaded = false;
    if (!stored_chunk(&inner))
        return apply_cmd(a, index, &inner, &ir);
    a->index = index;
    a->epoch = inner.epoch;
    return apply_chunk_as(a, &inner, &ir, true);
}

/* Hold the shipped entry at index (data[0..len)): a CHUNK's sealed bytes
 * go to the segment store now, under its chunk id, and the record keeps
 * the command without them (so a standby does not write every chunk a
 * second time); unless that id is taken (a chunk sent again): then the
 * whole entry is kept. *kept: the record's size. */
static int hold(struct apply *a, uint64_t index, const uint8_t *data, size_t len, size_t *kept)
{
    uint8_t k[PFX + 8];
    size_t klen = key_held(k, a->group, index);
    struct sv_cmd inner;
    *kept = len;
    if (ship_runs(data, len, &inner) && inner.type == SV_CMD_CHUNK && inner.data_len) {
        uint8_t id[SV_SEG_ID_BYTES];
        sv_chunk_id(a->group, inner.upload, inner.chunk, id);
        int has = sv_seg_has(a->seg, id);
        if (has < 0)
            return seg_fail(a, has, "index");
        if (!has) {
            int rc = put_chunk(a, inner.upload, inner.chunk, inner.data, inner.data_len);
            if (rc)
                return rc;
            inner.data = NULL;
            inner.data_len = 0;
            *kept = sv_cmd_encoded_len(&inner);
            uint8_t *v = malloc(*kept);
            if (!v)
                return -ENOMEM;
            sv_cmd_encode(&inner, v);
            rc = sv__sm_stage(a->sm, k, klen, v, *kept);
            free(v);
            return rc;
        }
    }
    return sv__sm_stage(a->sm, k, klen, data, len);
}

/* A dropped held record: a stored chunk's bytes go too. */
static int unhold(struct apply *a, const uint8_t *data, size_t len)
{
    struct sv_cmd inner;
    if (ship_runs(data, len, &inner) && stored_chunk(&inner))
        return release_chunk(a, inner.upload, inner.chunk);
    return 0;
}

/* Whether the entry data[0..len) may run at release: its stamp is below it
 * (one that changes nothing has none). */
static bool ship_released(const uint8_t *data, size_t len, uint64_t release_ms)
{
    struct sv_cmd inner;
    return !ship_runs(data, len, &inner) || inner.mtime_ms < release_ms;
}

/* Run the held entries, in index order, while the release passes them; a
 * cut (drop) removes the rest. The staged changes are committed first: the
 * held records are then all in the database. */
static int held_walk(struct apply *a, struct sv_sm_ship *st, bool drop)
{
    int rc = sv_sm_commit(a->sm, a->seg, a->errmsg, a->errlen);
    if (rc)
        return rc;
    uint8_t pfx[PFX];
    key_pfx(pfx, a->group, 'h');
    bool running = true;
    leveldb_iterator_t *it = leveldb_create_iterator(a->sm->db, a->sm->ropts);
    for (leveldb_iter_seek(it, (const char *)pfx, sizeof pfx); leveldb_iter_valid(it) && !rc;
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen != PFX + 8 || memcmp(k, pfx, PFX))
            break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        running = running && ship_released(v, vlen, st->release_ms);
        if (!running && !drop)
            break;
        uint64_t index = sv_get64be(k + PFX);
        /* A chunk put in a segment batch is written at its end, from the
         * caller's bytes: these are the iterator's, gone at its next step. */
        if (running && !(rc = ship_run(a, index, v, vlen))) {
            int frc = sv_seg_batch_flush(a->seg);
            rc = frc ? seg_fail(a, frc, "write") : 0;
            st->applied = index;
        } else if (!running) {
            rc = unhold(a, v, vlen);
        }
        if (!rc)
            rc = sv__sm_stage(a->sm, k, klen, NULL, 0);
        st->held -= st->held ? 1 : 0;
        st->held_bytes -= st->held_bytes > vlen ? vlen : st->held_bytes;
    }
    int end = sv__sm_iter_end(it);
    if (!rc && !end && drop)
        st->held = st->held_bytes = 0;
    return rc ? rc : end;
}

/* A promoted site's cut (c->chunk == 1): the held entries below the release
 * run, the rest go (they are past the cut: a failback of the old primary
 * puts them in its ledger), once per site epoch. */
static int apply_cut(struct apply *a, const struct sv_cmd *c, struct sv_sm_ship *st,
                     struct sv_sm_result *res)
{
    res->status = SV_ST_OK;
    if (st->cut_epoch >= c->session) {
        res->version = st->applied;
        return 0;
    }
    if (c->seq > st->release_ms)
        st->release_ms = c->seq;
    int rc = held_walk(a, st, true);
    if (rc)
        return rc;
    st->cut_epoch = c->session;
    res->version = st->applied;
    res->upload = a->copy;
    return ship_store(a, st);
}

/* The whole batch is checked before anything in it is applied: its
 * entries follow each other from c->upload + 1. Entries at or below the
 * cursor were applied by an earlier batch (a proposal repeated by a new
 * leader) and are skipped; a batch starting past cursor + 1 would leave a
 * gap and is refused whole. Each entry runs or is held (sm.h, SV_CMD_SHIP);
 * the release first runs what it passes of the entries held before. */
static int apply_ship(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    struct sv_sm_ship st;
    int rc = ship_load(a, &st);
    if (rc)
        return rc;
    struct sv_raft_entry e;
    size_t off = 0;
    uint64_t next = c->upload + 1;
    uint32_t count = 0;
    while ((rc = sv_ship_next(c->data, c->data_len, &off, &e)) == 1 && e.index == next)
        next++, count++;
    if (rc || count != c->n_chunks || (c->chunk && count)) {
        res->status = SV_ST_BAD_REQUEST; /* only a bug ships this: every replica skips it */
        return 0;
    }
    if (c->chunk)
        return apply_cut(a, c, &st, res);
    /* A cursor counts in one primary's log: a batch of another (a site
     * epoch not the cursor's) or one during a seed would mix two logs. A
     * shard that never shipped takes the first epoch it is given. */
    bool fresh = !st.epoch && !st.cursor;
    if (c->upload > st.cursor || st.seed || (!fresh && c->session != st.epoch)) {
        res->status = SV_ST_VERSION_CONFLICT;
        res->version = st.cursor;
        return 0;
    }
    st.epoch = c->session;
    if (c->seq > st.release_ms) {
        st.release_ms = c->seq;
        if (st.held && (rc = held_walk(a, &st, false)))
            return rc;
    }
    off = 0;
    while (sv_ship_next(c->data, c->data_len, &off, &e) == 1) {
        if (e.index <= st.cursor)
            continue;
        /* an entry that is not a command is held as an empty record */
        const uint8_t *d = e.type == SV_RAFT_ENTRY_NORMAL && e.len ? e.data : (const uint8_t *)"";
        size_t dlen = e.type == SV_RAFT_ENTRY_NORMAL ? e.len : 0;
        if (!st.held && ship_released(d, dlen, st.release_ms)) {
            if ((rc = ship_run(a, e.index, d, dlen)))
                return rc;
            st.applied = e.index;
        } else {
            size_t kept;
            if ((rc = hold(a, e.index, d, dlen, &kept)))
                return rc;
            st.held++;
            st.held_bytes += kept;
        }
        st.cursor = e.index;
    }
    if (c->mtime_ms > st.closed_ms && st.cursor >= c->size)
        st.closed_ms = c->mtime_ms;
    if (c->size > st.commit)
        st.commit = c->size;
    if ((rc = ship_store(a, &st)))
        return rc;
    res->status = SV_ST_OK;
    res->version = st.cursor;
    res->upload = a->copy; /* dr.c starts the copy pass */
    return 0;
}

/* The records of a seed piece: whole, each a key of this group that is
 * not this node's own ('a', 'c') nor a primary's shipping state ('d',
 * 'D'). Returns the number of records, or -1 when malformed. */
static long seed_check(const struct apply *a, const uint8_t *p, size_t len)
{
    uint8_t pfx[9] = {'S'};
    sv_put64be(pfx + 1, a->group);
    long n = 0;
    for (size_t off = 0; off < len; n++) {
        if (len - off < 4)
            return -1;
        uint32_t kl = sv_get32(p + off);
        if (len - off - 4 < (uint64_t)kl + 4 || kl < PFX || memcmp(p + off + 4, pfx, 9))
            return -1;
        off += 4 + kl;
        uint32_t vl = sv_get32(p + off);
        if (len - off - 4 < vl)
            return -1;
        off += 4 + vl;
    }
    return n;
}

/* Stage the records of a checked piece, but the shipping states. */
static int seed_put(struct apply *a, const uint8_t *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        uint32_t kl = sv_get32(p + off);
        const uint8_t *k = p + off + 4;
        off += 4 + kl;
        uint32_t vl = sv_get32(p + off);
        const uint8_t *v = p + off + 4;
        off += 4 + vl;
        char tag = kl >= PFX ? (char)k[9] : 0;
        if (kl == PFX && (tag == 'a' || tag == 'c' || tag == 'd' || tag == 'D'))
            continue;
        if (tag == 'h') /* a held entry of a site the image's primary once followed */
            continue;
        int rc = sv__sm_stage(a->sm, k, kl, v, vl);
        if (rc)
            return rc;
    }
    return 0;
}

/* Remove every record of the group but the applied index and the copy
 * marker, releasing the chunks they claim. The staged changes are
 * committed first: what is in the database is then all there is. */
static int seed_wipe(struct apply *a)
{
    int rc = sv_sm_commit(a->sm, a->seg, a->errmsg, a->errlen);
    if (rc)
        return rc;
    uint8_t pfx[9] = {'S'};
    sv_put64be(pfx + 1, a->group);
    leveldb_iterator_t *it = leveldb_create_iterator(a->sm->db, a->sm->ropts);
    for (leveldb_iter_seek(it, (const char *)pfx, sizeof pfx); leveldb_iter_valid(it) && !rc;
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < sizeof pfx || memcmp(k, pfx, sizeof pfx))
            break;
        if (klen == PFX && (k[9] == 'a' || k[9] == 'c'))
            continue;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        if (klen > PFX && k[9] == 'o') {
            struct sv_obj o;
            if (!sv__sm_obj_decode(v, vlen, &o) && !o.deleted)
                rc = delete_chunks(a, o.upload, o.n_chunks);
        } else if (klen == PFX + 8 && k[9] == 'h') {
            rc = unhold(a, v, vlen);
        } else if (klen == PFX + 8 && k[9] == 'u') {
            struct upload u;
            if (!(rc = sv__sm_upload_decode(v, vlen, &u))) {
                rc = drop_upload(a, sv_get64be(k + PFX), &u, 0);
                free(u.bitmap);
            }
            continue; /* drop_upload removed the record */
        }
        if (!rc)
            rc = sv__sm_stage(a->sm, k, klen, NULL, 0);
    }
    int end = sv__sm_iter_end(it);
    return rc ? rc : end;
}

static int apply_seed(struct apply *a, const struct sv_cmd *c, struct sv_sm_result *res)
{
    struct sv_sm_ship st;
    int rc = ship_load(a, &st);
    if (rc)
        return rc;
    if (seed_check(a, c->data, c->data_len) < 0) {
        res->status = SV_ST_BAD_REQUEST; /* every replica refuses it alike */
        return 0;
    }
    if (c->chunk == 0) {
        if ((rc = seed_wipe(a)))
            return rc;
        st = (struct sv_sm_ship){.epoch = c->session, .seed = c->upload, .seed_next = 0};
    } else if (st.seed != c->upload || st.seed_next != c->chunk || st.epoch != c->session) {
        res->status = SV_ST_VERSION_CONFLICT;
        res->version = st.cursor;
        return 0;
    }
    if ((rc = seed_put(a, c->data, c->data_len)))
        return rc;
    st.seed_next = c->chunk + 1;
    if (c->n_chunks) {
        /* The last piece: the image is whole. Its records may claim chunks
         * no replica here holds yet: the copy marker says so from this
         * write on. */
        uint8_t k[PFX], v[8];
        sv_put64(v, a->index);
        if ((rc = sv__sm_stage(a->sm, k, key_pfx(k, a->group, 'c'), v, 8)))
            return rc;
        st.cursor = st.applied = c->upload;
        st.commit = c->size;
        st.closed_ms = c->mtime_ms;
        st.seed = st.seed_next = 0;
    }
    if ((rc = ship_store(a, &st)))
        return rc;
    res->status = SV_ST_OK;
    res->version = st.cursor;
    return 0;
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
        if (sv_cmd_decode(e->data, e->len, &c))
            /* Only a bug can put a malformed command in the log: every
             * replica skips it the same way. */
            res->status = SV_ST_INTERNAL;
        else if (!(rc = apply_cmd(&a, e->index, &c, res)) && c.type <= SV_CMD_ABORT)
            res->stamp = c.mtime_ms;
    }
    if (rc == 0) {
        uint8_t k[PFX], v[8];
        sv_put64(v, e->index);
        rc = sv__sm_stage(sm, k, key_pfx(k, group, 'a'), v, 8);
    }
    if (rc) {
        sv__sm_staged_drain(sm, NULL);
        if (errmsg && errlen && !errmsg[0])
            snprintf(errmsg, errlen, "apply: %s", sv_strerror(rc));
    }
    return rc;
}
