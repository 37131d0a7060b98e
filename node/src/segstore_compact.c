/* ShardVault segment store compaction: live records copied forward, emptied segments unlinked. */
#define _GNU_SOURCE
#include "segstore_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sv_assert.h"

/* ---- compaction ---- */

/* Copy the record of id at l to the active segment: read into buf, which
 * the batch the compaction runs in keeps until its next flush. */
static int relocate(struct sv_seg_store *s, const uint8_t *id, const struct loc *l, uint8_t *buf)
{
    struct seg *g = sv__seg_find(s, l->seg);
    struct loc to;
    ASSERT(g != NULL);
    int64_t n = sv__seg_ring_read(s, g->fd, buf, rec_bytes(l->len), l->off);
    if (n < 0)
        return sv__seg_seterr(s, (int)n, "compaction read of segment %u", l->seg);
    if ((uint64_t)n < rec_bytes(l->len) || !header_sane(buf) || sv_get32(buf + 8) != l->len ||
        memcmp(buf + 16, id, SV_SEG_ID_BYTES) != 0 ||
        !record_valid(buf, buf + SV_SEG_HEADER_BYTES)) {
        /* Not worth copying: the replica repairs it; keep it listed. */
        int rc = sv__seg_bad_add(s, id);
        if (rc < 0)
            return rc;
        sv__seg_pend_set(s, id, l, NULL);
        return 0;
    }
    int rc = sv__seg_append(s, id, buf + SV_SEG_HEADER_BYTES, l->len, &to);
    if (rc < 0)
        return rc;
    sv__seg_pend_set(s, id, l, &to);
    return 0;
}

int sv_seg_compact_keep(struct sv_seg_store *s, double threshold, uint64_t max_copy_bytes,
                        uint64_t *reclaimed_bytes, struct sv_seg_emptied *e)
{
    uint32_t victims[SV_SEG_SEGMENTS_MAX];
    uint32_t n_victims = 0;
    uint64_t reclaimed = 0;
    ASSERT(s != NULL && !s->batching && e != NULL);
    *e = (struct sv_seg_emptied){.dirfd = -1};
    s->errmsg[0] = 0;
    if (reclaimed_bytes)
        *reclaimed_bytes = 0;
    if (!(threshold >= 0.0 && threshold < 1.0))
        return sv__seg_seterr(s, SV_SEG_E_BAD_ARG, "threshold %g not in [0, 1)", threshold);
    int rc = sv_seg_sync(s); /* the index is now the whole truth */
    if (rc < 0)
        return rc;
    uint32_t active_no = sv__seg_active(s)->no;
    uint64_t copy = 0; /* live bytes of the victims: what the copies take */
    for (uint32_t i = 0; i < s->n_segs; i++) {
        struct seg *g = &s->segs[i];
        ASSERT(g->live <= g->size);
        g->victim = g->no != active_no &&
                    (double)(g->size - g->live) > threshold * (double)g->size &&
                    g->live <= max_copy_bytes - copy;
        if (g->no != active_no && g->size == 0)
            g->victim = true;
        if (g->victim)
            copy += g->live;
        if (g->victim)
            victims[n_victims++] = g->no;
    }
    if (n_victims == 0)
        return 0;
    e->nos = malloc(n_victims * sizeof *e->nos);
    e->dirfd = e->nos != NULL ? fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0) : -1;
    if (e->dirfd < 0) {
        rc = sv__seg_seterr(s, e->nos == NULL ? -ENOMEM : -errno, "compaction of %u segments",
                            n_victims);
        goto err_after_victims;
    }

    /* Copy the live records; the iterator reads the index as of now. The
     * copies are written in batches (one vectored write per run instead of
     * a write per record: a segment of small records took seconds), read
     * into iobuf until it is full. */
    size_t used = 0; /* bytes of iobuf the queued copies use */
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
    sv_seg_batch_begin(s);
    for (leveldb_iter_seek(it, "c", 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);
        if (klen == 0 || k[0] != 'c')
            break;
        if (klen != KEY_BYTES || vlen != LOC_BYTES)
            continue;
        struct loc l = loc_decode((const uint8_t *)v);
        struct seg *g = sv__seg_find(s, l.seg);
        if (g == NULL || !g->victim)
            continue;
        uint8_t id[SV_SEG_ID_BYTES];
        memcpy(id, k + 1, SV_SEG_ID_BYTES);
        if (sv__seg_pend_full(s, id) && (rc = sv_seg_sync(s)) < 0) /* writes the queue first */
            goto err_after_iter;
        if (used + rec_bytes(l.len) > COMPACT_BUF && (rc = sv__seg_flush(s)) < 0)
            goto err_after_iter;
        if (s->n_q == 0)
            used = 0;
        if ((rc = relocate(s, id, &l, s->iobuf + used)) < 0)
            goto err_after_iter;
        used += rec_bytes(l.len);
    }
    if ((rc = sv_seg_batch_end(s)) < 0)
        goto err_after_iter;
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err) {
        rc = sv__seg_dberr(s, err, "compaction scan");
        goto err_after_iter;
    }
    leveldb_iter_destroy(it);

    /* Copies durable and indexed before any old file goes. */
    if ((rc = sv_seg_sync(s)) < 0)
        goto err_after_victims;
    for (uint32_t v = 0; v < n_victims; v++) {
        struct seg *g = sv__seg_find(s, victims[v]);
        ASSERT(g != NULL && g->live == 0);
        reclaimed += g->size;
        e->nos[e->n++] = g->no;
        sv__seg_forget(s, (uint32_t)(g - s->segs));
    }
    if (reclaimed_bytes)
        *reclaimed_bytes = reclaimed;
    return 0;

err_after_iter:
    s->batching = false;
    if (s->n_q > 0) /* queued copies not written: the index as of the last sync */
        sv__seg_drop_queue(s, 0);
    leveldb_iter_destroy(it);
err_after_victims:
    for (uint32_t i = 0; i < s->n_segs; i++)
        s->segs[i].victim = false;
    sv_seg_emptied_free(e);
    return rc;
}

int sv_seg_unlink_emptied(struct sv_seg_emptied *e, char *errmsg, size_t errlen)
{
    int rc = 0;
    char name[32];
    for (uint32_t i = 0; i < e->n && rc == 0; i++) {
        sv__seg_name(name, sizeof name, e->nos[i]);
        if (unlinkat(e->dirfd, name, 0) < 0 && errno != ENOENT) {
            rc = -errno;
            snprintf(errmsg, errlen, "unlink %s: %s", name, strerror(errno));
        }
    }
    if (rc == 0 && e->n > 0 && fsync(e->dirfd) < 0) {
        rc = -errno;
        snprintf(errmsg, errlen, "fsync of the segment directory: %s", strerror(errno));
    }
    sv_seg_emptied_free(e);
    return rc;
}

void sv_seg_emptied_free(struct sv_seg_emptied *e)
{
    if (e->dirfd >= 0)
        close(e->dirfd);
    free(e->nos);
    *e = (struct sv_seg_emptied){.dirfd = -1};
}

int sv_seg_compact(struct sv_seg_store *s, double threshold, uint64_t *reclaimed_bytes)
{
    struct sv_seg_emptied e;
    int rc = sv_seg_compact_keep(s, threshold, UINT64_MAX, reclaimed_bytes, &e);
    if (rc == 0 && (rc = sv_seg_unlink_emptied(&e, s->errmsg, sizeof s->errmsg)) < 0 &&
        reclaimed_bytes)
        *reclaimed_bytes = 0;
    return rc;
}
