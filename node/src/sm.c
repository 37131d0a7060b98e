/* The shard state machine's store: records, staged changes, open, commit (see sm.h). */
#define _POSIX_C_SOURCE 200809L
#include "sm_internal.h"

#include "log.h"
#include "sv_assert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- records ------------------------------------------------------------ */

void sv__sm_obj_encode(const struct sv_obj *o, uint8_t *v)
{
    sv_put64(v, o->version);
    sv_put64(v + 8, o->size);
    sv_put64(v + 16, o->mtime_ms);
    sv_put64(v + 24, o->upload);
    sv_put32(v + 32, o->n_chunks);
    v[36] = o->deleted;
    memcpy(v + 37, o->sha256, 32);
    sv_put64(v + 69, o->index);
    sv_put64(v + 77, o->epoch);
}

int sv__sm_obj_decode(const uint8_t *v, size_t len, struct sv_obj *o)
{
    if (len != OBJ_LEN && len != OBJ_LEN_NO_INDEX)
        return -EIO;
    o->version = sv_get64(v);
    o->size = sv_get64(v + 8);
    o->mtime_ms = sv_get64(v + 16);
    o->upload = sv_get64(v + 24);
    o->n_chunks = sv_get32(v + 32);
    o->deleted = v[36] != 0;
    memcpy(o->sha256, v + 37, 32);
    o->index = len == OBJ_LEN ? sv_get64(v + 69) : 0;
    o->epoch = len == OBJ_LEN ? sv_get64(v + 77) : 0;
    return 0;
}

int sv__sm_upload_decode(const uint8_t *v, size_t len, struct upload *u)
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
uint8_t *sv__sm_upload_encode(const struct upload *u, size_t *len)
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
    sm->wopts = leveldb_writeoptions_create(); /* not synced: forget_done only */
    sm->sync_wopts = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(sm->sync_wopts, 1);
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
void sv__sm_staged_drain(struct sv_sm *sm, leveldb_writebatch_t *wb)
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
    if (!wb)
        sm->n_rel = 0;
}

void sv_sm_close(struct sv_sm *sm)
{
    if (!sm)
        return;
    sv__sm_staged_drain(sm, NULL);
    free(sm->st);
    free(sm->rel);
    free(sm->done);
    if (sm->db)
        leveldb_close(sm->db);
    leveldb_writeoptions_destroy(sm->wopts);
    leveldb_writeoptions_destroy(sm->sync_wopts);
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
int sv__sm_stage(struct sv_sm *sm, const uint8_t *k, size_t klen, const void *v, size_t vlen)
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

static void release_key(uint8_t *k, const uint8_t *id)
{
    k[0] = 'X';
    memcpy(k + 1, id, SV_SEG_ID_BYTES);
}

/* Note id for sv_sm_release (a duplicate only costs a deletion of nothing). */
static int release_note(struct sv_sm *sm, const uint8_t *id)
{
    if (sm->n_rel == sm->rel_cap) {
        uint32_t cap = sm->rel_cap ? 2 * sm->rel_cap : 64;
        uint8_t *p = realloc(sm->rel, (size_t)cap * SV_SEG_ID_BYTES);
        if (!p)
            return -ENOMEM;
        sm->rel = p;
        sm->rel_cap = cap;
    }
    memcpy(sm->rel + (size_t)sm->n_rel++ * SV_SEG_ID_BYTES, id, SV_SEG_ID_BYTES);
    return 0;
}

int sv__sm_release(struct sv_sm *sm, const uint8_t *id)
{
    uint8_t k[RKEY];
    release_key(k, id);
    int rc = sv__sm_stage(sm, k, sizeof k, "", 0);
    return rc ? rc : release_note(sm, id);
}

/* Get key; *v malloc'd (free with free(): LevelDB's values are malloc'd too)
 * or NULL when absent. With staged, the changes not yet committed count
 * (the apply thread only). */
int sv__sm_db_get_at(struct sv_sm *sm, bool staged, const uint8_t *k, size_t klen, char **v,
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
    return sv__sm_db_get_at(sm, false, k, klen, v, vlen);
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

int sv__sm_obj_get(struct sv_sm *sm, bool staged, uint64_t group, uint64_t tenant,
                   const uint8_t *bucket, size_t blen, const uint8_t *key, size_t klen,
                   struct sv_obj *o)
{
    uint8_t k[OKEY_MAX];
    char *v;
    size_t vlen;
    memset(o, 0, sizeof *o);
    if (blen > SV_SM_NAME_MAX || klen > SV_SM_NAME_MAX)
        return -ENOENT;
    int rc = sv__sm_db_get_at(sm, staged, k, key_obj(k, group, tenant, bucket, blen, key, klen), &v,
                              &vlen);
    if (rc)
        return rc;
    if (!v)
        return -ENOENT;
    rc = sv__sm_obj_decode((const uint8_t *)v, vlen, o);
    free(v);
    return rc;
}

int sv_sm_get(struct sv_sm *sm, uint64_t group, uint64_t tenant, const uint8_t *bucket, size_t blen,
              const uint8_t *key, size_t klen, struct sv_obj *o)
{
    return sv__sm_obj_get(sm, false, group, tenant, bucket, blen, key, klen, o);
}

/* An upload's record as the apply thread sees it (staged changes count). */
int sv__sm_get_upload(struct sv_sm *sm, uint64_t group, uint64_t id, struct upload *u)
{
    uint8_t k[PFX + 8];
    char *v;
    size_t vlen;
    int rc = sv__sm_db_get_at(sm, true, k, key_upload(k, group, id), &v, &vlen);
    if (rc)
        return rc;
    if (!v)
        return -ENOENT;
    rc = sv__sm_upload_decode((const uint8_t *)v, vlen, u);
    free(v);
    return rc;
}

void sv_sm_discard(struct sv_sm *sm)
{
    sv__sm_staged_drain(sm, NULL);
}

/* Write wb with wopts; 0 or -EIO with errmsg (may be NULL) set. -EIO for a
 * full disk too: LevelDB refuses every write after a failed one until it is
 * opened again, so this is no condition to wait out. */
int sv__sm_write_batch(struct sv_sm *sm, const leveldb_writeoptions_t *wopts,
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

int sv_sm_commit_records(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen)
{
    if (!sm->st_n)
        return 0;
    /* The chunks beneath the records first (sm.h: the invariant). */
    int rc = sv_seg_sync(seg);
    if (rc) {
        sv__sm_staged_drain(sm, NULL);
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "segment sync: %s (%s)", sv_seg_strerror(rc),
                     sv_seg_errmsg(seg));
        return rc;
    }
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    sv__sm_staged_drain(sm, wb);
    /* Synced, always (sm.h: LevelDB's sync covers only its current log
     * file, so an unsynced batch left at the end of a log it switched away
     * from could be lost under a later synced one, and the applied index
     * would claim entries whose records are gone). */
    rc = sv__sm_write_batch(sm, sm->sync_wopts, wb, "write", errmsg, errlen);
    leveldb_writebatch_destroy(wb);
    if (rc)
        sm->n_rel = 0; /* the node stops: their release records are not written */
    return rc;
}

/* Remove the release records of the chunks deleted by the release before
 * (a segment sync since has made those deletions durable; not synced: one
 * that survives a crash only costs a second deletion of nothing). */
static int forget_done(struct sv_sm *sm, char *errmsg, size_t errlen)
{
    if (!sm->n_done)
        return 0;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    for (uint32_t i = 0; i < sm->n_done; i++) {
        uint8_t k[RKEY];
        release_key(k, sm->done + (size_t)i * SV_SEG_ID_BYTES);
        leveldb_writebatch_delete(wb, (const char *)k, sizeof k);
    }
    sm->n_done = 0;
    int rc = sv__sm_write_batch(sm, sm->wopts, wb, "release records", errmsg, errlen);
    leveldb_writebatch_destroy(wb);
    return rc;
}

int sv_sm_release(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen)
{
    if (!sm->n_rel)
        return 0;
    /* Releases come after a commit of records, whose segment sync made the
     * previous release's deletions durable: their records may go. */
    int rc = forget_done(sm, errmsg, errlen);
    for (uint32_t i = 0; i < sm->n_rel && !rc; i++) {
        const uint8_t *id = sm->rel + (size_t)i * SV_SEG_ID_BYTES;
        rc = sv_seg_delete(seg, id);
        if (rc == SV_SEG_E_PENDING_FULL && !(rc = sv_seg_sync(seg)))
            rc = sv_seg_delete(seg, id);
        if (rc == SV_SEG_E_NOT_FOUND)
            rc = 0; /* deleted before a crash, or never stored here */
    }
    if (rc) {
        /* The release records stay: sv_sm_redo_releases does them at the
         * next start. Not -ENOSPC: the records are written, so the entries
         * cannot be applied again (pipeline.c's retry); the node stops. */
        if (errmsg && errlen && !errmsg[0])
            snprintf(errmsg, errlen, "segment store, deleting %u released chunk(s): %s (%s)",
                     sm->n_rel, sv_seg_strerror(rc), sv_seg_errmsg(seg));
        sm->n_rel = 0;
        return rc == -ENOSPC ? -EIO : rc;
    }
    /* The deletions are not synced here: the next commit's segment sync
     * carries them, and only then do their release records go (the next
     * release, or sv_sm_redo_releases). A power cut before that keeps the
     * release records, and the next start deletes the chunks again: no
     * chunk comes back, none is left unclaimed. */
    uint8_t *t = sm->done;
    uint32_t cap = sm->done_cap;
    sm->done = sm->rel;
    sm->done_cap = sm->rel_cap;
    sm->n_done = sm->n_rel;
    sm->rel = t;
    sm->rel_cap = cap;
    sm->n_rel = 0;
    return 0;
}

int sv_sm_commit(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen)
{
    int rc = sv_sm_commit_records(sm, seg, errmsg, errlen);
    return rc ? rc : sv_sm_release(sm, seg, errmsg, errlen);
}

int sv_sm_redo_releases(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen)
{
    if (errmsg && errlen)
        errmsg[0] = 0;
    ASSERT(!sm->st_n && !sm->n_rel);
    int rc = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, sm->ropts);
    for (leveldb_iter_seek(it, "X", 1); leveldb_iter_valid(it) && !rc; leveldb_iter_next(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        if (klen < 1 || k[0] != 'X')
            break;
        if (klen == RKEY)
            rc = release_note(sm, (const uint8_t *)k + 1);
    }
    if (sv__sm_iter_end(it) && !rc) {
        rc = -EIO;
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "state machine scan of release records: read error");
    }
    if (rc) {
        sm->n_rel = 0;
        return rc;
    }
    if (sm->n_rel)
        LOG_INFO("deleting %u chunk(s) released by records written before a crash", sm->n_rel);
    rc = sv_sm_release(sm, seg, errmsg, errlen);
    if (!rc && sm->n_done && (rc = sv_seg_sync(seg)) && errmsg && errlen)
        snprintf(errmsg, errlen, "segment sync after released deletions: %s (%s)",
                 sv_seg_strerror(rc), sv_seg_errmsg(seg));
    return rc ? rc : forget_done(sm, errmsg, errlen);
}

/* Destroy it; -EIO if it stopped on a read error rather than at the end
 * (an iteration cut short must not pass for the whole range). */
int sv__sm_iter_end(leveldb_iterator_t *it)
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
