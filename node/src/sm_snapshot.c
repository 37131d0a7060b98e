/* Shard state machine snapshots: frozen views, images of a group, installing one (see sm.h). */
#include "sm_internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

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

int sv_sm_view_applied(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group,
                       uint64_t *index)
{
    uint8_t k[PFX];
    size_t vlen = 0;
    char *err = NULL;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(ro, view->snap);
    char *v = leveldb_get(sm->db, ro, (const char *)k, key_pfx(k, group, 'a'), &vlen, &err);
    leveldb_readoptions_destroy(ro);
    int rc = err || (v && vlen != 8) ? -EIO : 0;
    *index = !rc && v ? sv_get64((const uint8_t *)v) : 0;
    leveldb_free(err);
    leveldb_free(v);
    return rc;
}

int sv_sm_digest(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group, uint8_t out[32],
                 uint64_t *applied, uint64_t *cursor)
{
    uint8_t pfx[9] = {'S'};
    sv_put64be(pfx + 1, group);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return -ENOMEM;
    }
    uint64_t a = 0, c = 0;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    if (view)
        leveldb_readoptions_set_snapshot(ro, view->snap);
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, ro);
    leveldb_readoptions_destroy(ro);
    for (leveldb_iter_seek(it, (const char *)pfx, sizeof pfx); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < PFX || memcmp(k, pfx, sizeof pfx))
            break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vlen);
        if (klen == PFX && k[9] == 'a' && vlen == 8)
            a = sv_get64(v);
        else if (klen == PFX && k[9] == 'd') {
            struct sv_sm_ship st; /* what ran: held entries are not in the records */
            c = sv__sm_ship_decode((const char *)v, vlen, &st) ? 0 : st.applied;
        }
        if (k[9] != 'o' && k[9] != 'u')
            continue;
        uint8_t len[8];
        sv_put32(len, (uint32_t)klen);
        sv_put32(len + 4, (uint32_t)vlen);
        EVP_DigestUpdate(md, len, 8);
        EVP_DigestUpdate(md, k, klen);
        EVP_DigestUpdate(md, v, vlen);
    }
    int rc = sv__sm_iter_end(it);
    unsigned int n = 0;
    if (!rc && EVP_DigestFinal_ex(md, out, &n) != 1)
        rc = -EIO;
    EVP_MD_CTX_free(md);
    if (applied)
        *applied = a;
    if (cursor)
        *cursor = c;
    return rc;
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
        if (klen == PFX && (k[9] == 'a' || k[9] == 'c'))
            continue; /* this node's own: its applied index, its copy marker */
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
    int end = sv__sm_iter_end(it);
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
    if (sv__sm_iter_end(it)) {
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
    /* The image's records may claim chunks this node does not hold: the
     * copy marker says so from the same write on (copy.c fetches them). */
    leveldb_writebatch_put(wb, (const char *)k, key_pfx(k, group, 'c'), (const char *)v, 8);
    rc = sv__sm_write_batch(sm, sm->sync_wopts, wb, "install snapshot", NULL, 0);
    leveldb_writebatch_destroy(wb);
    return rc;
}
