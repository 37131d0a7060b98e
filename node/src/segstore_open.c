/* ShardVault segment store: open, recovery of the log and the index after a crash, close. */
#define _GNU_SOURCE
#include "segstore_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sv_assert.h"

/* ---- open and recovery ---- */

/* Close and unlink segment at position i (no longer referenced). */
static int seg_remove(struct sv_seg_store *s, uint32_t i)
{
    char name[32];
    sv__seg_name(name, sizeof name, s->segs[i].no);
    sv__seg_forget(s, i);
    if (unlinkat(s->dirfd, name, 0) < 0)
        return sv__seg_seterr(s, -errno, "unlink %s/%s", s->dir, name);
    return 0;
}

static int dir_fsync(struct sv_seg_store *s)
{
    if (fsync(s->dirfd) < 0)
        return sv__seg_seterr(s, -errno, "fsync directory %s", s->dir);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Open every seg-* file of the directory, in number order. */
static int segs_load(struct sv_seg_store *s)
{
    uint32_t nos[SV_SEG_SEGMENTS_MAX];
    uint32_t n = 0;
    int dfd = dup(s->dirfd);
    if (dfd < 0)
        return sv__seg_seterr(s, -errno, "dup directory fd");
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return sv__seg_seterr(s, -errno, "read directory %s", s->dir);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned no;
        char tail;
        if (strncmp(e->d_name, "seg-", 4) != 0 || strlen(e->d_name) != 12 ||
            sscanf(e->d_name, "seg-%8u%c", &no, &tail) != 1 || no == 0)
            continue;
        if (n == SV_SEG_SEGMENTS_MAX) {
            closedir(d);
            return sv__seg_seterr(s, SV_SEG_E_TOO_MANY_SEGMENTS, "over %d segment files in %s",
                                  SV_SEG_SEGMENTS_MAX, s->dir);
        }
        nos[n++] = no;
    }
    closedir(d);
    qsort(nos, n, sizeof nos[0], cmp_u32);
    for (uint32_t i = 0; i < n; i++) {
        char name[32];
        struct stat st;
        sv__seg_name(name, sizeof name, nos[i]);
        int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return sv__seg_seterr(s, -errno, "open %s/%s", s->dir, name);
        s->segs[s->n_segs++] = (struct seg){.no = nos[i], .fd = fd};
        if (fstat(fd, &st) < 0)
            return sv__seg_seterr(s, -errno, "stat %s/%s", s->dir, name);
        s->segs[s->n_segs - 1].size = (uint64_t)st.st_size;
    }
    return 0;
}

/* Read [off, off + len) of a segment into the scan window. */
static int scan_fill(struct sv_seg_store *s, struct seg *g, uint8_t *win, uint64_t off,
                     uint64_t len)
{
    int64_t n = sv__seg_ring_read(s, g->fd, win, len, off);
    if (n < 0)
        return sv__seg_seterr(s, (int)n, "recovery read of segment %u", g->no);
    if ((uint64_t)n < len)
        return sv__seg_seterr(s, -EIO, "segment %u shrank during recovery", g->no);
    return 0;
}

/* Scan segment g from offset from, indexing (redo) every complete record at
 * or after redo_from into batch. *end gets where the valid log ends: the first
 * record that is torn or bad, or the file size. With lenient, a complete
 * record with a sane header but a bad checksum is skipped rather than ending
 * the log (bit rot in synced data, found later by get). */
static int scan_segment(struct sv_seg_store *s, struct seg *g, uint64_t from, uint64_t redo_from,
                        bool lenient, uint8_t *win, leveldb_writebatch_t *batch, uint64_t *end)
{
    uint64_t off = from, win_off = 0, win_len = 0;
    while (off < g->size) {
        uint64_t left = g->size - off;
        if (left < SV_SEG_HEADER_BYTES)
            break;
        if (off < win_off || off + SV_SEG_HEADER_BYTES > win_off + win_len) {
            win_off = off;
            win_len = left < SCAN_WINDOW ? left : SCAN_WINDOW;
            int rc = scan_fill(s, g, win, win_off, win_len);
            if (rc < 0)
                return rc;
        }
        const uint8_t *h = win + (off - win_off);
        if (!header_sane(h))
            break;
        uint32_t len = sv_get32(h + 8);
        uint64_t rec = rec_bytes(len);
        if (rec > left)
            break;
        if (off + rec > win_off + win_len) {
            win_off = off;
            win_len = left < SCAN_WINDOW ? left : SCAN_WINDOW;
            int rc = scan_fill(s, g, win, win_off, win_len);
            if (rc < 0)
                return rc;
            h = win;
        }
        if (!record_valid(h, h + SV_SEG_HEADER_BYTES)) {
            if (!lenient)
                break;
        } else if (off >= redo_from) {
            uint8_t k[KEY_BYTES], v[LOC_BYTES];
            struct loc l = {.seg = g->no, .off = off, .len = len};
            key_encode(k, 'c', h + 16);
            loc_encode(v, &l);
            leveldb_writebatch_put(batch, (const char *)k, sizeof k, (const char *)v, sizeof v);
        }
        off += rec;
    }
    *end = off;
    return 0;
}

/* Cut the log at (segment position i, end): truncate, drop later segments. */
static int cut_log(struct sv_seg_store *s, uint32_t i, uint64_t end)
{
    struct seg *g = &s->segs[i];
    if (ftruncate(g->fd, (off_t)end) < 0)
        return sv__seg_seterr(s, -errno, "truncate segment %u to %llu", g->no,
                              (unsigned long long)end);
    g->size = end;
    int rc = sv__seg_fsync_all(s, &g->fd, 1);
    if (rc < 0)
        return sv__seg_seterr(s, rc, "fsync of truncated segment %u", g->no);
    while (s->n_segs > i + 1)
        if ((rc = seg_remove(s, s->n_segs - 1)) < 0)
            return rc;
    return dir_fsync(s);
}

static int recover(struct sv_seg_store *s)
{
    uint32_t tail_seg = 0;
    uint64_t tail_off = 0;
    bool have_tail = false;
    size_t vlen;
    char *err = NULL;
    int rc = 0;

    char *v = leveldb_get(s->db, s->ropts, "t", 1, &vlen, &err);
    if (err)
        return sv__seg_dberr(s, err, "read tail");
    if (v != NULL) {
        if (vlen == TAIL_BYTES) {
            tail_seg = sv_get32((const uint8_t *)v);
            tail_off = sv_get64((const uint8_t *)v + 4);
            have_tail = true;
        }
        leveldb_free(v);
    }
    if (s->n_segs == 0)
        return 0;

    uint8_t *win = malloc(SCAN_WINDOW);
    if (win == NULL)
        return sv__seg_seterr(s, -ENOMEM, "recovery window");
    leveldb_writebatch_t *batch = leveldb_writebatch_create();

    /* Without a tail (new or lost index), everything is redone. */
    for (uint32_t i = 0; i < s->n_segs; i++) {
        struct seg *g = &s->segs[i];
        uint64_t from = 0, redo_from = 0, end;
        bool lenient;
        if (have_tail && g->no < tail_seg)
            continue;
        if (have_tail && g->no == tail_seg) {
            redo_from = tail_off;
            if (g->size >= tail_off) {
                from = tail_off; /* synced records are trusted */
                lenient = false;
            } else {
                lenient = true; /* synced bytes vanished: find the last whole record */
            }
        } else {
            lenient = !have_tail && i + 1 < s->n_segs;
        }
        if ((rc = scan_segment(s, g, from, redo_from, lenient, win, batch, &end)) < 0)
            goto err_after_batch;
        /* An index-less rebuild does not cut a middle segment: later ones hold
         * synced records too. */
        if (end < g->size && (have_tail || i + 1 == s->n_segs)) {
            if ((rc = cut_log(s, i, end)) < 0)
                goto err_after_batch;
            break;
        }
    }
    uint8_t t[TAIL_BYTES];
    tail_encode(t, sv__seg_active(s)->no, sv__seg_active(s)->size);
    leveldb_writebatch_put(batch, "t", 1, (const char *)t, sizeof t);
    leveldb_write(s->db, s->wopts_sync, batch, &err);
    if (err)
        rc = sv__seg_dberr(s, err, "recovery index write");

err_after_batch:
    leveldb_writebatch_destroy(batch);
    free(win);
    return rc;
}

/* Count live bytes per segment, dropping entries that point past the log. */
static int index_scan(struct sv_seg_store *s)
{
    leveldb_writebatch_t *batch = leveldb_writebatch_create();
    leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropts);
    char *err = NULL;
    int rc = 0;
    bool drop = false;
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = leveldb_iter_key(it, &klen);
        const char *v = leveldb_iter_value(it, &vlen);
        if (klen == KEY_BYTES && k[0] == 'b') {
            if (s->n_bad < SV_SEG_BAD_MAX)
                memcpy(s->bad + (size_t)s->n_bad++ * SV_SEG_ID_BYTES, k + 1, SV_SEG_ID_BYTES);
            continue;
        }
        if (klen == 0 || k[0] != 'c')
            continue;
        struct seg *g = NULL;
        struct loc l = {0};
        if (klen == KEY_BYTES && vlen == LOC_BYTES) {
            l = loc_decode((const uint8_t *)v);
            g = sv__seg_find(s, l.seg);
        }
        if (g == NULL || l.off + rec_bytes(l.len) > g->size) {
            leveldb_writebatch_delete(batch, k, klen);
            drop = true;
            continue;
        }
        g->live += rec_bytes(l.len);
        s->records++;
    }
    leveldb_iter_get_error(it, &err);
    if (err) {
        rc = sv__seg_dberr(s, err, "index scan");
        goto err_after_iter;
    }
    if (drop) {
        leveldb_write(s->db, s->wopts_sync, batch, &err);
        if (err)
            rc = sv__seg_dberr(s, err, "index repair write");
    }
err_after_iter:
    leveldb_iter_destroy(it);
    leveldb_writebatch_destroy(batch);
    return rc;
}

static void segs_close(struct sv_seg_store *s)
{
    for (uint32_t i = 0; i < s->n_segs; i++)
        close(s->segs[i].fd);
    s->n_segs = 0;
    sv__seg_direct_close(s, 0);
}

int sv_seg_open(const char *dir, const struct sv_seg_opts *opts, struct sv_seg_store **out,
                char *errmsg, size_t errlen)
{
    char path[INDEX_PATH_MAX];
    char *err = NULL;
    int rc;
    ASSERT(dir != NULL && out != NULL);
    *out = NULL;

    struct sv_seg_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        rc = -ENOMEM;
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "out of memory");
        return rc;
    }
    s->dfd = -1;
    if (opts)
        s->opts = *opts;
    if (s->opts.segment_bytes == 0)
        s->opts.segment_bytes = SV_SEG_BYTES_MAX;
    if (s->opts.segment_bytes < SV_SEG_BYTES_MIN || s->opts.segment_bytes > SV_SEG_BYTES_MAX) {
        rc = sv__seg_seterr(s, SV_SEG_E_BAD_ARG, "segment_bytes %llu not in [%d, %u]",
                            (unsigned long long)s->opts.segment_bytes, SV_SEG_BYTES_MIN,
                            SV_SEG_BYTES_MAX);
        goto err_after_alloc;
    }
    s->dir = strdup(dir);
    if (s->dir == NULL) {
        rc = sv__seg_seterr(s, -ENOMEM, "copy of the directory name");
        goto err_after_alloc;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        rc = sv__seg_seterr(s, -errno, "mkdir %s", dir);
        goto err_after_dirname;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        rc = sv__seg_seterr(s, -errno, "open %s", dir);
        goto err_after_dirname;
    }
    if ((rc = io_uring_queue_init(RING_ENTRIES, &s->ring, 0)) < 0) {
        sv__seg_seterr(s, rc, "io_uring_queue_init");
        goto err_after_dirfd;
    }

    s->pend = calloc(PENDING_SLOTS, sizeof *s->pend);
    s->pend_used = calloc(SV_SEG_PENDING_MAX, sizeof *s->pend_used);
    s->segs = calloc(SV_SEG_SEGMENTS_MAX, sizeof *s->segs);
    s->bad = calloc(SV_SEG_BAD_MAX, SV_SEG_ID_BYTES);
    s->iobuf = malloc(COMPACT_BUF);
    s->iov = malloc(BATCH_IOV * sizeof *s->iov);
    if (!s->pend || !s->pend_used || !s->segs || !s->bad || !s->iobuf || !s->iov) {
        rc = sv__seg_seterr(s, -ENOMEM, "store tables");
        goto err_after_mem;
    }

    s->dbopts = leveldb_options_create();
    /* Every put of a new chunk looks up an id that is not there. */
    s->filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(s->dbopts, s->filter);
    leveldb_options_set_create_if_missing(s->dbopts, 1);
    s->ropts = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(s->ropts, 1);
    s->wopts_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(s->wopts_sync, 1);
    s->wopts_nosync = leveldb_writeoptions_create();
    s->batch = leveldb_writebatch_create();
    if ((size_t)snprintf(path, sizeof path, "%s/index", dir) >= sizeof path) {
        rc = sv__seg_seterr(s, SV_SEG_E_BAD_ARG, "directory name too long");
        goto err_after_dbopts;
    }
    s->db = leveldb_open(s->dbopts, path, &err);
    if (err) {
        rc = sv__seg_dberr(s, err, "open index");
        goto err_after_dbopts;
    }

    if ((rc = segs_load(s)) < 0)
        goto err_after_segs;
    if ((rc = recover(s)) < 0)
        goto err_after_segs;
    if ((rc = index_scan(s)) < 0)
        goto err_after_segs;
    if (s->n_segs == 0) {
        if ((rc = sv__seg_create(s, 1)) < 0)
            goto err_after_segs;
        if ((rc = sv_seg_sync(s)) < 0)
            goto err_after_segs;
    }
    *out = s;
    return 0;

err_after_segs:
    segs_close(s);
    leveldb_close(s->db);
err_after_dbopts:
    leveldb_writebatch_destroy(s->batch);
    leveldb_writeoptions_destroy(s->wopts_nosync);
    leveldb_writeoptions_destroy(s->wopts_sync);
    leveldb_readoptions_destroy(s->ropts);
    leveldb_options_destroy(s->dbopts);
    leveldb_filterpolicy_destroy(s->filter);
err_after_mem:
    free(s->iov);
    free(s->iobuf);
    free(s->dbuf);
    free(s->bad);
    free(s->segs);
    free(s->pend_used);
    free(s->pend);
    io_uring_queue_exit(&s->ring);
err_after_dirfd:
    close(s->dirfd);
err_after_dirname:
    free(s->dir);
err_after_alloc:
    if (errmsg && errlen)
        snprintf(errmsg, errlen, "%s", s->errmsg);
    free(s);
    return rc;
}

int sv_seg_close(struct sv_seg_store *s)
{
    if (s == NULL)
        return 0;
    s->batching = false;
    int rc = sv_seg_sync(s);
    segs_close(s);
    leveldb_close(s->db);
    leveldb_writebatch_destroy(s->batch);
    leveldb_writeoptions_destroy(s->wopts_nosync);
    leveldb_writeoptions_destroy(s->wopts_sync);
    leveldb_readoptions_destroy(s->ropts);
    leveldb_options_destroy(s->dbopts);
    leveldb_filterpolicy_destroy(s->filter);
    free(s->q);
    free(s->iov);
    free(s->iobuf);
    free(s->dbuf);
    free(s->bad);
    free(s->segs);
    free(s->pend_used);
    free(s->pend);
    io_uring_queue_exit(&s->ring);
    close(s->dirfd);
    free(s->dir);
    free(s);
    return rc;
}
