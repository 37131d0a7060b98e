/* ShardVault chunk segment store: errors, put, delete, sync, get and stats (see segstore.h). */
#define _GNU_SOURCE
#include "segstore_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sv_assert.h"

/* ---- errors ---- */

const char *sv_seg_strerror(int err)
{
    static const char *const names[] = {
        "not found",
        "corrupt record",
        "payload too big",
        "buffer too small",
        "too many unsynced operations (sync first)",
        "too many segment files (compact first)",
        "bad list full",
        "index (LevelDB) error",
        "bad argument",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == SV_SEG_E_LAST_ - SV_SEG_E_NOT_FOUND,
                   "one name per error");
    if (err == 0)
        return "ok";
    if (err >= SV_SEG_E_NOT_FOUND && err < SV_SEG_E_LAST_)
        return names[err - SV_SEG_E_NOT_FOUND];
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

__attribute__((format(printf, 3, 4))) int sv__seg_seterr(struct sv_seg_store *s, int rc,
                                                         const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(s->errmsg, sizeof s->errmsg, "%s: ", sv_seg_strerror(rc));
    if (n < 0 || (size_t)n >= sizeof s->errmsg)
        return rc;
    va_start(ap, fmt);
    vsnprintf(s->errmsg + n, sizeof s->errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

/* LevelDB reports errors as strings; a full disk is still -ENOSPC for callers. */
int sv__seg_dberr(struct sv_seg_store *s, char *err, const char *what)
{
    int rc = strstr(err, "No space left") ? -ENOSPC : SV_SEG_E_INDEX;
    sv__seg_seterr(s, rc, "%s: %s", what, err);
    leveldb_free(err);
    return rc;
}

/* ---- put and delete ---- */

int sv_seg_put(struct sv_seg_store *s, const uint8_t *id, const void *data, size_t len)
{
    struct loc old, l;
    ASSERT(s != NULL && id != NULL && (data != NULL || len == 0));
    s->errmsg[0] = 0;
    if (len > SV_SEG_PAYLOAD_MAX)
        return sv__seg_seterr(s, SV_SEG_E_TOO_BIG, "%zu bytes, at most %d", len,
                              SV_SEG_PAYLOAD_MAX);
    if (sv__seg_pend_full(s, id))
        return sv__seg_seterr(s, SV_SEG_E_PENDING_FULL, "%d ids changed since the last sync",
                              SV_SEG_PENDING_MAX);
    int rc = sv__seg_lookup(s, id, &old);
    if (rc < 0 && rc != SV_SEG_E_NOT_FOUND)
        return rc;
    bool had = rc == 0;
    rc = sv__seg_append(s, id, data, (uint32_t)len, &l);
    if (rc < 0)
        return rc;
    sv__seg_pend_set(s, id, had ? &old : NULL, &l);
    return sv__seg_bad_remove(s, id);
}

int sv_seg_delete(struct sv_seg_store *s, const uint8_t *id)
{
    struct loc old;
    ASSERT(s != NULL && id != NULL);
    s->errmsg[0] = 0;
    if (sv__seg_pend_full(s, id))
        return sv__seg_seterr(s, SV_SEG_E_PENDING_FULL, "%d ids changed since the last sync",
                              SV_SEG_PENDING_MAX);
    int rc = sv__seg_lookup(s, id, &old);
    if (rc < 0)
        return rc;
    sv__seg_pend_set(s, id, &old, NULL);
    return sv__seg_bad_remove(s, id);
}

/* Take the ids starting with prefix off the bad list, durably (one synced
 * write; memory follows once it succeeded). They need not be indexed:
 * compaction drops a corrupt record it cannot copy but keeps it listed. */
static int bad_remove_prefix(struct sv_seg_store *s, const uint8_t *prefix, size_t plen)
{
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    uint32_t matched = 0;
    for (uint32_t i = 0; i < s->n_bad; i++) {
        const uint8_t *id = s->bad + (size_t)i * SV_SEG_ID_BYTES;
        if (memcmp(id, prefix, plen) != 0)
            continue;
        uint8_t k[KEY_BYTES];
        key_encode(k, 'b', id);
        leveldb_writebatch_delete(wb, (const char *)k, sizeof k);
        matched++;
    }
    char *err = NULL;
    if (matched > 0)
        leveldb_write(s->db, s->wopts_sync, wb, &err);
    leveldb_writebatch_destroy(wb);
    if (err)
        return sv__seg_dberr(s, err, "bad list write");
    uint32_t keep = 0;
    for (uint32_t i = 0; i < s->n_bad; i++) {
        const uint8_t *id = s->bad + (size_t)i * SV_SEG_ID_BYTES;
        if (memcmp(id, prefix, plen) == 0)
            continue;
        if (keep != i)
            memcpy(s->bad + (size_t)keep * SV_SEG_ID_BYTES, id, SV_SEG_ID_BYTES);
        keep++;
    }
    s->n_bad = keep;
    return 0;
}

int sv_seg_delete_prefix(struct sv_seg_store *s, const uint8_t *prefix, size_t plen,
                         uint64_t *deleted)
{
    ASSERT(s != NULL && prefix != NULL && !s->batching);
    s->errmsg[0] = 0;
    if (deleted)
        *deleted = 0;
    if (plen == 0 || plen > SV_SEG_ID_BYTES)
        return sv__seg_seterr(s, SV_SEG_E_BAD_ARG, "id prefix of %zu bytes", plen);
    /* Nothing pending afterwards: the index alone says where every chunk is,
     * and no id the scan meets already has a pending slot. */
    int rc = sv_seg_sync(s);
    if (rc < 0)
        return rc;
    uint8_t start[KEY_BYTES];
    start[0] = 'c';
    memcpy(start + 1, prefix, plen);
    uint64_t n = 0;
    /* The iterator reads the index as of now; the syncs below write to it
     * behind the scan (only ids already passed), which it does not see. */
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
    for (leveldb_iter_seek(it, (const char *)start, 1 + plen); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);
        if (klen < 1 + plen || memcmp(k, start, 1 + plen) != 0)
            break;
        if (klen != KEY_BYTES || vlen != LOC_BYTES) {
            rc = sv__seg_seterr(s, SV_SEG_E_INDEX, "index entry of %zu+%zu bytes", klen, vlen);
            goto err_after_iter;
        }
        uint8_t id[SV_SEG_ID_BYTES];
        memcpy(id, k + 1, SV_SEG_ID_BYTES);
        struct loc l = loc_decode((const uint8_t *)v);
        if (s->n_pend == SV_SEG_PENDING_MAX && (rc = sv_seg_sync(s)) < 0)
            goto err_after_iter;
        sv__seg_pend_set(s, id, &l, NULL);
        n++;
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err) {
        rc = sv__seg_dberr(s, err, "index scan by prefix");
        goto err_after_iter;
    }
    leveldb_iter_destroy(it);
    if ((rc = bad_remove_prefix(s, prefix, plen)) < 0)
        return rc;
    if ((rc = sv_seg_sync(s)) < 0)
        return rc;
    if (deleted)
        *deleted = n;
    return 0;

err_after_iter:
    leveldb_iter_destroy(it);
    return rc;
}

/* ---- sync ---- */

/* The fsyncs failed: nothing since the last sync is known durable, so forget
 * it (never index it) and stop appending to a file whose state is unknown. */
void sv__seg_discard_unsynced(struct sv_seg_store *s)
{
    sv__seg_pend_clear(s);
    for (uint32_t i = 0; i < s->n_segs; i++)
        s->segs[i].delta = 0;
    s->records_delta = 0;
    s->force_roll = true;
}

int sv_seg_sync(struct sv_seg_store *s)
{
    int fds[SV_SEG_SEGMENTS_MAX + 1];
    unsigned n = 0;
    ASSERT(s != NULL);
    s->errmsg[0] = 0;

    /* 1. fsync every segment written since the last sync, and the directory if
     * a segment was created, submitted together. */
    if (s->n_q > 0) {
        int rc = sv__seg_flush(s);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < s->n_segs; i++)
        if (s->segs[i].dirty)
            fds[n++] = s->segs[i].fd;
    unsigned n_seg = n;
    if (s->dir_dirty)
        fds[n++] = s->dirfd;
    if (n == 0 && s->n_pend == 0 && s->tail_seg == sv__seg_active(s)->no &&
        s->tail_off == sv__seg_active(s)->size)
        return 0; /* nothing happened since the last sync: no disk flush */
    if (n > 0) {
        int rc = sv__seg_fsync_all(s, fds, n);
        if (rc < 0) {
            sv__seg_discard_unsynced(s);
            return sv__seg_seterr(s, rc, "fsync of %u segment(s) in %s; unsynced puts discarded",
                                  n_seg, s->dir);
        }
        for (uint32_t i = 0; i < s->n_segs; i++)
            s->segs[i].dirty = false;
        s->dir_dirty = false;
    }

    /* 2. The index batch, with the new tail, durably. */
    uint8_t v[TAIL_BYTES];
    char *err = NULL;
    tail_encode(v, sv__seg_active(s)->no, sv__seg_active(s)->size);
    leveldb_writebatch_put(s->batch, "t", 1, (const char *)v, sizeof v);
    leveldb_write(s->db, s->wopts_sync, s->batch, &err);
    if (err)
        return sv__seg_dberr(s, err, "index batch write"); /* pending kept: sync may be retried */
    sv__seg_pend_clear(s);
    s->tail_seg = sv__seg_active(s)->no;
    s->tail_off = sv__seg_active(s)->size;
    for (uint32_t i = 0; i < s->n_segs; i++) {
        struct seg *g = &s->segs[i];
        ASSERT(g->delta >= 0 || (uint64_t)-g->delta <= g->live);
        g->live = (uint64_t)((int64_t)g->live + g->delta);
        g->delta = 0;
    }
    s->records = (uint64_t)((int64_t)s->records + s->records_delta);
    s->records_delta = 0;
    return 0;
}

/* ---- get ---- */

int sv_seg_get(struct sv_seg_store *s, const uint8_t *id, void *buf, size_t cap, size_t *len)
{
    struct loc l;
    uint8_t h[SV_SEG_HEADER_BYTES];
    char name[32];
    ASSERT(s != NULL && id != NULL && len != NULL && (buf != NULL || cap == 0));
    s->errmsg[0] = 0;
    int rc = s->n_q > 0 ? sv__seg_flush(s) : 0;
    if (rc < 0)
        return rc;
    rc = sv__seg_lookup(s, id, &l);
    if (rc < 0)
        return rc;
    *len = l.len;
    if (cap < l.len)
        return sv__seg_seterr(s, SV_SEG_E_BUF_TOO_SMALL, "%u bytes, buffer %zu", l.len, cap);
    struct seg *g = sv__seg_find(s, l.seg);
    ASSERT(g != NULL);
    sv__seg_name(name, sizeof name, l.seg);
    struct iovec iov[2] = {{.iov_base = h, .iov_len = sizeof h},
                           {.iov_base = buf, .iov_len = l.len}};
    int64_t n = sv__seg_ring_readv(s, g->fd, iov, 2, l.off);
    if (n < 0)
        return sv__seg_seterr(s, (int)n, "read %s/%s offset %llu", s->dir, name,
                              (unsigned long long)l.off);
    const char *why = NULL;
    if ((uint64_t)n < rec_bytes(l.len))
        why = "short record";
    else if (!header_sane(h) || sv_get32(h + 8) != l.len)
        why = "bad header";
    else if (memcmp(h + 16, id, SV_SEG_ID_BYTES) != 0)
        why = "record holds another id";
    else if (!record_valid(h, buf))
        why = "checksum mismatch";
    if (why) {
        sv__seg_bad_add(s, id); /* best effort: the caller learns of the corruption anyway */
        return sv__seg_seterr(s, SV_SEG_E_CORRUPT, "%s at %s/%s offset %llu", why, s->dir, name,
                              (unsigned long long)l.off);
    }
    return 0;
}

/* ---- stats ---- */

void sv_seg_stats(const struct sv_seg_store *s, struct sv_seg_stats *st)
{
    ASSERT(s != NULL && st != NULL);
    memset(st, 0, sizeof *st);
    for (uint32_t i = 0; i < s->n_segs; i++) {
        const struct seg *g = &s->segs[i];
        uint64_t live = (uint64_t)((int64_t)g->live + g->delta);
        st->live_bytes += live;
        st->dead_bytes += g->size - live;
    }
    st->live_records = (uint64_t)((int64_t)s->records + s->records_delta);
    st->segments = s->n_segs;
    st->bad_chunks = s->n_bad;
}

const char *sv_seg_errmsg(const struct sv_seg_store *s)
{
    return s->errmsg;
}
