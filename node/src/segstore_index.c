/* ShardVault segment store's LevelDB index side: pending changes, lookups, the bad list. */
#define _GNU_SOURCE
#include "segstore_internal.h"

#include <string.h>

#include "sv_assert.h"

/* ---- pending index changes ---- */

static uint32_t id_hash(const uint8_t *id)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < SV_SEG_ID_BYTES; i++)
        h = (h ^ id[i]) * 16777619u;
    return h;
}

static struct pend *pend_slot(struct sv_seg_store *s, const uint8_t *id)
{
    uint32_t i = id_hash(id) & (PENDING_SLOTS - 1);
    while (s->pend[i].kind != 0 && memcmp(s->pend[i].id, id, SV_SEG_ID_BYTES) != 0)
        i = (i + 1) & (PENDING_SLOTS - 1);
    return &s->pend[i];
}

void sv__seg_pend_clear(struct sv_seg_store *s)
{
    for (uint32_t i = 0; i < s->n_pend; i++)
        s->pend[s->pend_used[i]].kind = 0;
    s->n_pend = 0;
    leveldb_writebatch_clear(s->batch);
}

/* Where id is now: pending changes first, then the index. */
int sv__seg_lookup(struct sv_seg_store *s, const uint8_t *id, struct loc *l)
{
    struct pend *p = pend_slot(s, id);
    if (p->kind == PEND_PUT) {
        *l = p->loc;
        return 0;
    }
    if (p->kind == PEND_DEL)
        return SV_SEG_E_NOT_FOUND;
    uint8_t k[KEY_BYTES];
    size_t vlen;
    char *err = NULL;
    key_encode(k, 'c', id);
    char *v = leveldb_get(s->db, s->ropts, (const char *)k, sizeof k, &vlen, &err);
    if (err)
        return sv__seg_dberr(s, err, "index get");
    if (v == NULL)
        return SV_SEG_E_NOT_FOUND;
    if (vlen != LOC_BYTES) {
        leveldb_free(v);
        return sv__seg_seterr(s, SV_SEG_E_INDEX, "index entry of %zu bytes", vlen);
    }
    *l = loc_decode((const uint8_t *)v);
    leveldb_free(v);
    return 0;
}

/* Record that id moves to *to (NULL: deleted), with the accounting. The
 * caller checked there is a free pending slot (or id already has one). */
void sv__seg_pend_set(struct sv_seg_store *s, const uint8_t *id, const struct loc *from,
                      const struct loc *to)
{
    struct pend *p = pend_slot(s, id);
    uint8_t k[KEY_BYTES];
    key_encode(k, 'c', id);
    if (p->kind == 0) {
        ASSERT(s->n_pend < SV_SEG_PENDING_MAX);
        s->pend_used[s->n_pend++] = (uint32_t)(p - s->pend);
        memcpy(p->id, id, SV_SEG_ID_BYTES);
    }
    if (from) {
        struct seg *g = sv__seg_find(s, from->seg);
        ASSERT(g != NULL);
        g->delta -= (int64_t)rec_bytes(from->len);
        s->records_delta--;
    }
    if (to) {
        uint8_t v[LOC_BYTES];
        struct seg *g = sv__seg_find(s, to->seg);
        ASSERT(g != NULL);
        g->delta += (int64_t)rec_bytes(to->len);
        s->records_delta++;
        p->kind = PEND_PUT;
        p->loc = *to;
        loc_encode(v, to);
        leveldb_writebatch_put(s->batch, (const char *)k, sizeof k, (const char *)v, sizeof v);
    } else {
        p->kind = PEND_DEL;
        leveldb_writebatch_delete(s->batch, (const char *)k, sizeof k);
    }
}

bool sv__seg_pend_full(struct sv_seg_store *s, const uint8_t *id)
{
    return s->n_pend == SV_SEG_PENDING_MAX && pend_slot(s, id)->kind == 0;
}

/* ---- bad list ---- */

static bool bad_find(const struct sv_seg_store *s, const uint8_t *id, uint32_t *pos)
{
    uint32_t lo = 0, hi = s->n_bad;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = memcmp(s->bad + (size_t)mid * SV_SEG_ID_BYTES, id, SV_SEG_ID_BYTES);
        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return false;
}

static int bad_write(struct sv_seg_store *s, const uint8_t *id, bool add)
{
    uint8_t k[KEY_BYTES];
    char *err = NULL;
    key_encode(k, 'b', id);
    if (add)
        leveldb_put(s->db, s->wopts_nosync, (const char *)k, sizeof k, "", 0, &err);
    else
        leveldb_delete(s->db, s->wopts_nosync, (const char *)k, sizeof k, &err);
    return err ? sv__seg_dberr(s, err, "bad list write") : 0;
}

int sv__seg_bad_add(struct sv_seg_store *s, const uint8_t *id)
{
    uint32_t pos;
    if (bad_find(s, id, &pos))
        return 0;
    if (s->n_bad == SV_SEG_BAD_MAX)
        return sv__seg_seterr(s, SV_SEG_E_BAD_LIST_FULL, "%d ids", SV_SEG_BAD_MAX);
    int rc = bad_write(s, id, true);
    if (rc < 0)
        return rc;
    uint8_t *at = s->bad + (size_t)pos * SV_SEG_ID_BYTES;
    memmove(at + SV_SEG_ID_BYTES, at, (size_t)(s->n_bad - pos) * SV_SEG_ID_BYTES);
    memcpy(at, id, SV_SEG_ID_BYTES);
    s->n_bad++;
    return 0;
}

int sv__seg_bad_remove(struct sv_seg_store *s, const uint8_t *id)
{
    uint32_t pos;
    if (!bad_find(s, id, &pos))
        return 0;
    int rc = bad_write(s, id, false);
    if (rc < 0)
        return rc;
    uint8_t *at = s->bad + (size_t)pos * SV_SEG_ID_BYTES;
    memmove(at, at + SV_SEG_ID_BYTES, (size_t)(s->n_bad - pos - 1) * SV_SEG_ID_BYTES);
    s->n_bad--;
    return 0;
}

int sv_seg_mark_bad(struct sv_seg_store *s, const uint8_t *id)
{
    ASSERT(s != NULL && id != NULL);
    s->errmsg[0] = 0;
    return sv__seg_bad_add(s, id);
}

int sv_seg_has(struct sv_seg_store *s, const uint8_t *id)
{
    ASSERT(s != NULL && id != NULL);
    s->errmsg[0] = 0;
    struct loc l;
    int rc = sv__seg_lookup(s, id, &l);
    if (rc == SV_SEG_E_NOT_FOUND)
        return 0;
    if (rc < 0)
        return rc;
    uint32_t pos;
    return !bad_find(s, id, &pos);
}

int sv_seg_bad_list(struct sv_seg_store *s, uint8_t *ids, size_t cap, size_t *n)
{
    ASSERT(s != NULL && n != NULL && (ids != NULL || cap == 0));
    *n = cap < s->n_bad ? cap : s->n_bad;
    if (*n > 0)
        memcpy(ids, s->bad, *n * SV_SEG_ID_BYTES);
    return 0;
}
