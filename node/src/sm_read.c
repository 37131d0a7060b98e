/* Reading the shard state machine: object lists and expired uploads (see sm.h). */
#include "sm_internal.h"

#include <errno.h>
#include <string.h>

/* memcmp order of byte strings, a proper prefix first. */
static int cmp_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    return c ? c : (alen > blen) - (alen < blen);
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
        if (sv__sm_obj_decode(v, vlen, &o)) {
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
    int end = sv__sm_iter_end(it);
    return rc ? rc : end;
}

int sv_sm_diverged(struct sv_sm *sm, uint64_t group, uint64_t epoch, uint64_t after,
                   const uint8_t *start, size_t slen, uint32_t limit, bool *more,
                   sv_sm_diverged_cb cb, void *arg)
{
    uint8_t seek[PFX + 8 + 2 * SV_SM_NAME_MAX + 1];
    *more = false;
    if (slen > sizeof seek - PFX || !limit)
        return -EINVAL;
    size_t pl = key_pfx(seek, group, 'o'), sl = pl;
    if (slen)
        memcpy(seek + pl, start, slen), sl += slen;
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, sm->ropts);
    uint32_t n = 0;
    int rc = 0;
    for (leveldb_iter_seek(it, (const char *)seek, sl); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < pl || memcmp(k, seek, pl))
            break;
        if (slen && klen == sl && !memcmp(k, seek, sl))
            continue; /* start itself was reported */
        struct sv_obj o;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        if (sv__sm_obj_decode(v, vlen, &o)) {
            rc = -EIO;
            break;
        }
        if (o.epoch != epoch || o.index <= after)
            continue;
        if (n == limit) {
            *more = true;
            break;
        }
        cb(arg, k + pl, klen - pl, &o);
        n++;
    }
    int end = sv__sm_iter_end(it);
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
    return sv__sm_iter_end(it);
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
