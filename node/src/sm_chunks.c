/* The chunks a group's records claim, and the marker of a chunk copy pending (see sm.h). */
#include "sm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert((long)SV_SM_CURSOR_KEY_MAX >= (long)OKEY_MAX, "a cursor holds any object key");
_Static_assert((long)SV_SM_CURSOR_KEY_MAX >= (long)PFX + 8, "a cursor holds any upload key");

void sv_sm_chunk_ref(uint64_t group, uint64_t tenant, const uint8_t *bucket, size_t blen,
                     const uint8_t *key, size_t klen, uint64_t upload, uint32_t index,
                     uint8_t id[SV_SEG_ID_BYTES], struct sv_crypto_chunk_ad *ad)
{
    sv_chunk_id(group, upload, index, id);
    memset(ad, 0, sizeof *ad);
    ad->tenant_id = tenant;
    sv_object_id(tenant, bucket, blen, key, klen, ad->object_id);
    ad->chunk_index = index;
    ad->version = upload;
}

/* One enumeration call: where it stands and what it reports. */
struct walk {
    uint64_t group;
    struct sv_sm_cursor *cur;
    uint32_t limit, n;
    sv_sm_chunk_cb cb;
    void *arg;
};

/* Report chunk index of the record at k (the rest of c filled); false once
 * the page is full, the cursor then naming this chunk. */
static bool emit(struct walk *w, const uint8_t *k, size_t klen, uint32_t index,
                 struct sv_sm_chunk *c)
{
    if (w->n == w->limit) {
        memcpy(w->cur->key, k, klen);
        w->cur->klen = (uint32_t)klen;
        w->cur->index = index;
        return false;
    }
    sv_chunk_id(w->group, c->ad.version, index, c->id);
    c->ad.chunk_index = index;
    w->cb(w->arg, c);
    w->n++;
    return true;
}

/* An object record: chunks from..n_chunks-1 of a live version. */
static int walk_object(struct walk *w, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                       uint32_t from, bool *full)
{
    struct sv_obj o;
    if (sv__sm_obj_decode(v, vlen, &o) || klen < PFX + 8)
        return -EIO;
    if (o.deleted || from >= o.n_chunks)
        return 0;
    const uint8_t *b = k + PFX + 8, *z = memchr(b, 0, klen - PFX - 8);
    if (!z)
        return -EIO;
    struct sv_sm_chunk c;
    sv_sm_chunk_ref(w->group, sv_get64be(k + PFX), b, (size_t)(z - b), z + 1,
                    klen - (size_t)(z + 1 - k), o.upload, from, c.id, &c.ad);
    c.bytes = (o.size + o.n_chunks - 1) / o.n_chunks;
    for (uint32_t i = from; i < o.n_chunks; i++)
        if (!emit(w, k, klen, i, &c))
            return *full = true, 0;
    return 0;
}

/* An upload record: its received chunks from index from on. */
static int walk_upload(struct walk *w, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
                       uint32_t from, bool *full)
{
    struct upload u;
    if (klen != PFX + 8)
        return -EIO;
    int rc = sv__sm_upload_decode(v, vlen, &u);
    if (rc)
        return rc;
    struct sv_sm_chunk c;
    sv_sm_chunk_ref(w->group, u.tenant, u.bucket, u.blen, u.key, u.klen, sv_get64be(k + PFX), from,
                    c.id, &c.ad);
    c.bytes = 0;
    for (uint32_t i = from; i < u.nbits; i++)
        if (u.bitmap[i / 8] >> (i % 8) & 1 && !emit(w, k, klen, i, &c)) {
            *full = true;
            break;
        }
    free(u.bitmap);
    return 0;
}

/* Walk the records tagged tag from *cur (or their first) until the page is
 * full (*full) or they end. */
static int walk_tag(struct sv_sm *sm, const struct sv_sm_view *view, struct walk *w, char tag,
                    bool *full)
{
    uint8_t pfx[PFX];
    size_t pl = key_pfx(pfx, w->group, tag);
    struct sv_sm_cursor *cur = w->cur;
    bool resume = cur->klen >= PFX && !memcmp(cur->key, pfx, PFX);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    if (view)
        leveldb_readoptions_set_snapshot(ro, view->snap);
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, ro);
    leveldb_readoptions_destroy(ro); /* the iterator keeps what it needs */
    int rc = 0;
    if (resume)
        leveldb_iter_seek(it, (const char *)cur->key, cur->klen);
    else
        leveldb_iter_seek(it, (const char *)pfx, pl);
    for (; leveldb_iter_valid(it) && !rc && !*full; leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < pl || memcmp(k, pfx, pl))
            break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        /* The cursor's record still there: on from its chunk; another
         * (the cursor's was removed since): from its first. */
        uint32_t from = resume && klen == cur->klen && !memcmp(k, cur->key, klen) ? cur->index : 0;
        rc = tag == 'o' ? walk_object(w, k, klen, v, vlen, from, full)
                        : walk_upload(w, k, klen, v, vlen, from, full);
    }
    int end = sv__sm_iter_end(it);
    return rc ? rc : end;
}

int sv_sm_chunks(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group,
                 struct sv_sm_cursor *cur, uint32_t limit, bool *more, sv_sm_chunk_cb cb, void *arg)
{
    *more = false;
    if (!limit)
        return -EINVAL;
    if (cur->klen >= PFX && cur->key[PFX - 1] == 'v')
        return 0; /* past the last record already */
    struct walk w = {.group = group, .cur = cur, .limit = limit, .cb = cb, .arg = arg};
    bool full = false;
    /* Objects first, then uploads: a cursor in the uploads skips the objects. */
    bool in_uploads = cur->klen >= PFX && cur->key[PFX - 1] == 'u';
    int rc = in_uploads ? 0 : walk_tag(sm, view, &w, 'o', &full);
    if (!rc && !full) {
        if (!in_uploads)
            cur->klen = 0; /* the uploads from their first */
        rc = walk_tag(sm, view, &w, 'u', &full);
    }
    if (!rc && !full) {
        /* Done: the cursor stays past every record. */
        cur->klen = (uint32_t)key_pfx(cur->key, group, 'v');
        cur->index = 0;
    }
    *more = !rc && full;
    return rc;
}

/* ---- the marker ---------------------------------------------------------- */

int sv_sm_copy_pending(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group,
                       bool *pending, uint64_t *since)
{
    uint8_t k[PFX];
    size_t klen = key_pfx(k, group, 'c'), vlen = 0;
    char *err = NULL;
    *pending = false;
    if (since)
        *since = 0;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    if (view)
        leveldb_readoptions_set_snapshot(ro, view->snap);
    char *v = leveldb_get(sm->db, ro, (const char *)k, klen, &vlen, &err);
    leveldb_readoptions_destroy(ro);
    if (err) {
        leveldb_free(err);
        return -EIO;
    }
    if (!v)
        return 0;
    int rc = vlen == 8 ? 0 : -EIO;
    if (!rc && since)
        *since = sv_get64((const uint8_t *)v);
    *pending = rc == 0;
    leveldb_free(v);
    return rc;
}

/* Put (since, or the deletion when del) as the marker, synced. */
static int marker_write(struct sv_sm *sm, uint64_t group, uint64_t since, bool del)
{
    uint8_t k[PFX], v[8];
    size_t klen = key_pfx(k, group, 'c');
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    if (del) {
        leveldb_writebatch_delete(wb, (const char *)k, klen);
    } else {
        sv_put64(v, since);
        leveldb_writebatch_put(wb, (const char *)k, klen, (const char *)v, sizeof v);
    }
    int rc = sv__sm_write_batch(sm, sm->sync_wopts, wb, "copy marker", NULL, 0);
    leveldb_writebatch_destroy(wb);
    return rc;
}

int sv_sm_copy_mark(struct sv_sm *sm, uint64_t group, uint64_t since)
{
    return marker_write(sm, group, since, false);
}

int sv_sm_copy_done(struct sv_sm *sm, uint64_t group, uint64_t since)
{
    bool pending;
    uint64_t now;
    int rc = sv_sm_copy_pending(sm, NULL, group, &pending, &now);
    if (rc || !pending)
        return rc;
    if (now != since)
        return -ESTALE;
    return marker_write(sm, group, 0, true);
}
