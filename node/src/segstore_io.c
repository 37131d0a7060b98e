/* ShardVault segment store's write path: io_uring, segment files, direct I/O, batched appends. */
#define _GNU_SOURCE
#include "segstore_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sv_assert.h"
#include "sv_dio.h"

/* ---- io_uring: submit and wait (the node will reap these from its loop) ---- */

static int fault(struct sv_seg_store *s, enum sv_seg_io io)
{
    return s->opts.fault ? s->opts.fault(s->opts.fault_arg, io) : 0;
}

static struct io_uring_sqe *get_sqe(struct sv_seg_store *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    ASSERT(sqe != NULL); /* every call waits for its completions: the ring is empty */
    return sqe;
}

/* Submit what is queued and reap n completions; returns the first error or
 * the result of the last completion. */
static int submit_wait(struct sv_seg_store *s, unsigned n, int *results)
{
    int rc;
    do {
        rc = io_uring_submit_and_wait(&s->ring, n);
    } while (rc == -EINTR);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < n; i++) {
        struct io_uring_cqe *cqe;
        do {
            rc = io_uring_wait_cqe(&s->ring, &cqe);
        } while (rc == -EINTR);
        if (rc < 0)
            return rc;
        uint64_t k = io_uring_cqe_get_data64(cqe);
        ASSERT(k < n);
        results[k] = cqe->res;
        io_uring_cqe_seen(&s->ring, cqe);
    }
    return 0;
}

/* Vectored transfer of the whole iov at off, resubmitting after short counts.
 * A read that hits end of file returns the bytes read so far. */
static int64_t ring_xfer(struct sv_seg_store *s, bool write, int fd, struct iovec *iov, int iovcnt,
                         uint64_t off)
{
    int64_t done = 0;
    int rc;
    while (iovcnt > 0) {
        if (iov[0].iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        struct io_uring_sqe *sqe = get_sqe(s);
        if (write)
            io_uring_prep_writev(sqe, fd, iov, (unsigned)iovcnt, off);
        else
            io_uring_prep_readv(sqe, fd, iov, (unsigned)iovcnt, off);
        io_uring_sqe_set_data64(sqe, 0);
        int res;
        rc = submit_wait(s, 1, &res);
        if (rc < 0)
            return rc;
        if (res == -EINTR || res == -EAGAIN)
            continue;
        if (res < 0)
            return res;
        if (res == 0) {
            if (write)
                return -EIO; /* a write that makes no progress */
            return done;
        }
        done += res;
        off += (uint64_t)res;
        size_t left = (size_t)res;
        while (iovcnt > 0 && left >= iov[0].iov_len) {
            left -= iov[0].iov_len;
            iov++;
            iovcnt--;
        }
        if (left > 0) {
            iov[0].iov_base = (uint8_t *)iov[0].iov_base + left;
            iov[0].iov_len -= left;
        }
    }
    return done;
}

int64_t sv__seg_ring_readv(struct sv_seg_store *s, int fd, struct iovec *iov, int iovcnt,
                           uint64_t off)
{
    int rc = fault(s, SV_SEG_IO_READ);
    return rc < 0 ? rc : ring_xfer(s, false, fd, iov, iovcnt, off);
}

int64_t sv__seg_ring_read(struct sv_seg_store *s, int fd, void *buf, size_t len, uint64_t off)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    return sv__seg_ring_readv(s, fd, &iov, 1, off);
}

/* fsync each fd, RING_ENTRIES per submission; the first error wins. */
int sv__seg_fsync_all(struct sv_seg_store *s, const int *fds, unsigned n)
{
    int results[RING_ENTRIES];
    int rc = fault(s, SV_SEG_IO_FSYNC);
    for (unsigned done = 0; rc == 0 && done < n;) {
        unsigned k = n - done < RING_ENTRIES ? n - done : RING_ENTRIES;
        for (unsigned i = 0; i < k; i++) {
            struct io_uring_sqe *sqe = get_sqe(s);
            io_uring_prep_fsync(sqe, fds[done + i], 0);
            io_uring_sqe_set_data64(sqe, i);
        }
        rc = submit_wait(s, k, results);
        for (unsigned i = 0; rc == 0 && i < k; i++)
            if (results[i] < 0)
                rc = results[i];
        done += k;
    }
    return rc;
}

/* ---- segments ---- */

void sv__seg_name(char *buf, size_t cap, uint32_t no)
{
    snprintf(buf, cap, "seg-%08u", no);
}

struct seg *sv__seg_find(struct sv_seg_store *s, uint32_t no)
{
    uint32_t lo = 0, hi = s->n_segs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->segs[mid].no == no)
            return &s->segs[mid];
        if (s->segs[mid].no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

struct seg *sv__seg_active(struct sv_seg_store *s)
{
    ASSERT(s->n_segs > 0);
    return &s->segs[s->n_segs - 1];
}

/* Start segment number no (higher than every existing one). */
int sv__seg_create(struct sv_seg_store *s, uint32_t no)
{
    char name[32];
    if (s->n_segs == SV_SEG_SEGMENTS_MAX)
        return sv__seg_seterr(s, SV_SEG_E_TOO_MANY_SEGMENTS, "%u segment files in %s", s->n_segs,
                              s->dir);
    ASSERT(s->n_segs == 0 || no > sv__seg_active(s)->no);
    sv__seg_name(name, sizeof name, no);
    int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return sv__seg_seterr(s, -errno, "create %s/%s", s->dir, name);
    s->segs[s->n_segs++] = (struct seg){.no = no, .fd = fd, .dirty = true};
    s->dir_dirty = true;
    return 0;
}

/* Close the direct write fd (of segment no, or of any segment: 0). */
void sv__seg_direct_close(struct sv_seg_store *s, uint32_t no)
{
    if (s->dfd >= 0 && (no == 0 || s->dfd_no == no)) {
        close(s->dfd);
        s->dfd = -1;
    }
}

/* Close segment at position i (no longer referenced) and drop it from the
 * table; its file stays. */
void sv__seg_forget(struct sv_seg_store *s, uint32_t i)
{
    ASSERT(i < s->n_segs);
    close(s->segs[i].fd);
    sv__seg_direct_close(s, s->segs[i].no);
    memmove(&s->segs[i], &s->segs[i + 1], (s->n_segs - i - 1) * sizeof s->segs[0]);
    s->n_segs--;
}

/* ---- append ---- */

/* The direct write fd of segment g, opened on first use; -1 where the file
 * system refuses direct I/O (not asked again). */
static int direct_fd(struct sv_seg_store *s, const struct seg *g)
{
    if (s->no_direct)
        return -1;
    if (s->dfd >= 0 && s->dfd_no == g->no)
        return s->dfd;
    sv__seg_direct_close(s, 0);
    char name[32];
    sv__seg_name(name, sizeof name, g->no);
    s->dfd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC | O_DIRECT);
    s->dfd_no = g->no;
    s->no_direct = s->dfd < 0 && errno == EINVAL;
    return s->dfd;
}

/* Write the bytes of iov (bytes in all) at off of segment g. Big writes go
 * around the page cache: copying chunks into it was a fifth of a node's CPU
 * under large puts, and a chunk is read far less often than written. The
 * bytes are gathered into an aligned buffer; the whole DIO_ALIGN blocks go
 * out with direct I/O, the partial blocks at either end through the page
 * cache as before, one write after the other. Record layout and recovery
 * are the same either way. Falls back to buffered writes where the file
 * system refuses direct I/O (EINVAL) or no staging buffer can be had. */
static int64_t write_run(struct sv_seg_store *s, struct seg *g, struct iovec *iov, int cnt,
                         uint64_t off, uint64_t bytes)
{
    int rc = fault(s, SV_SEG_IO_WRITE);
    if (rc < 0)
        return rc;
    uint64_t first = sv_align_up(off, DIO_ALIGN);
    uint64_t last = (off + bytes) & ~(uint64_t)(DIO_ALIGN - 1); /* direct: [first, last) */
    size_t lead = off & (DIO_ALIGN - 1);
    int dfd = bytes >= DIRECT_MIN && last > first ? direct_fd(s, g) : -1;
    if (dfd < 0 || !sv_dio_reserve(&s->dbuf, &s->dbuf_cap, lead + bytes, DIO_ALIGN))
        return ring_xfer(s, true, g->fd, iov, cnt, off);
    uint8_t *b = s->dbuf + lead; /* b[i] goes to off + i; s->dbuf is at a block start */
    size_t at = 0;
    for (int i = 0; i < cnt; at += iov[i].iov_len, i++)
        memcpy(b + at, iov[i].iov_base, iov[i].iov_len);
    struct iovec head = {b, first - off}, mid = {b + (first - off), last - first},
                 tail = {b + (last - off), off + bytes - last};
    int64_t n = head.iov_len ? ring_xfer(s, true, g->fd, &head, 1, off) : 0;
    if (n >= 0) {
        n = fault(s, SV_SEG_IO_DIRECT);
        if (n == 0)
            n = ring_xfer(s, true, dfd, &mid, 1, first);
        if (n == -EINVAL) { /* alignment refused: buffered from now on */
            sv__seg_direct_close(s, 0);
            s->no_direct = true;
            mid = (struct iovec){b + (first - off), last - first};
            n = ring_xfer(s, true, g->fd, &mid, 1, first);
        }
    }
    if (n >= 0 && tail.iov_len)
        n = ring_xfer(s, true, g->fd, &tail, 1, last);
    return n < 0 ? n : (int64_t)bytes;
}

static int queue(struct sv_seg_store *s, struct seg *a, const uint8_t *id, const void *data,
                 uint32_t len, struct loc *l)
{
    if (s->n_q == s->cap_q) {
        uint32_t cap = s->cap_q ? 2 * s->cap_q : 256;
        struct qrec *q = realloc(s->q, cap * sizeof *q);
        if (q == NULL)
            return sv__seg_seterr(s, -ENOMEM, "batch of %u records", cap);
        s->q = q;
        s->cap_q = cap;
    }
    struct qrec *r = &s->q[s->n_q++];
    *r = (struct qrec){.data = data, .len = len, .seg = a->no, .off = a->size};
    header_encode(r->h, id, data, len);
    *l = (struct loc){.seg = a->no, .off = a->size, .len = len};
    a->size += rec_bytes(len);
    a->dirty = true;
    return 0;
}

/* Write one record at the end of the active segment (starting a new one when
 * needed); *l gets its location. On failure the segment's logical end is
 * unchanged, so the next append overwrites any partial bytes. In a batch the
 * record is only queued (flush() writes it). */
int sv__seg_append(struct sv_seg_store *s, const uint8_t *id, const void *data, uint32_t len,
                   struct loc *l)
{
    uint8_t h[SV_SEG_HEADER_BYTES];
    uint64_t rec = rec_bytes(len);
    struct seg *a = sv__seg_active(s);
    if (s->force_roll || (a->size > 0 && a->size + rec > s->opts.segment_bytes)) {
        int rc = sv__seg_create(s, a->no + 1);
        if (rc < 0)
            return rc;
        s->force_roll = false;
        a = sv__seg_active(s);
    }
    if (s->batching)
        return queue(s, a, id, data, len, l);
    header_encode(h, id, data, len);
    struct iovec iov[2] = {{.iov_base = h, .iov_len = sizeof h},
                           {.iov_base = (void *)data, .iov_len = len}};
    int64_t n = write_run(s, a, iov, 2, a->size, rec);
    if (n < 0) {
        char name[32];
        sv__seg_name(name, sizeof name, a->no);
        /* Best effort: drop partial bytes now; recovery would truncate them anyway. */
        if (ftruncate(a->fd, (off_t)a->size) < 0) {
            /* The next append overwrites them; nothing else to do. */
        }
        return sv__seg_seterr(s, (int)n, "write of %llu bytes at %s/%s offset %llu",
                              (unsigned long long)rec, s->dir, name, (unsigned long long)a->size);
    }
    ASSERT((uint64_t)n == rec);
    *l = (struct loc){.seg = a->no, .off = a->size, .len = len};
    a->size += rec;
    a->dirty = true;
    return 0;
}

/* Queued records from the i-th on were not written: each segment's end goes
 * back to its first unwritten record (latest first), and everything since the
 * last sync is discarded, as after a failed fsync. */
void sv__seg_drop_queue(struct sv_seg_store *s, uint32_t i)
{
    for (uint32_t k = s->n_q; k-- > i;) {
        struct seg *g = sv__seg_find(s, s->q[k].seg);
        g->size = s->q[k].off;
        if (ftruncate(g->fd, (off_t)g->size) < 0) {
            /* Recovery cuts the log at the first torn record anyway. */
        }
    }
    s->n_q = 0;
    sv__seg_discard_unsynced(s);
}

/* Write the queued records: one vectored write per run of records in the same
 * segment (at most BATCH_IOV / 2 records each). If a write fails, each
 * segment's end goes back to its first unwritten record and everything since
 * the last sync is discarded, as after a failed fsync. */
int sv__seg_flush(struct sv_seg_store *s)
{
    uint32_t i = 0;
    int64_t rc = 0;
    while (i < s->n_q) {
        const struct qrec *first = &s->q[i];
        uint64_t bytes = 0;
        int cnt = 0;
        uint32_t k = i;
        for (; k < s->n_q && s->q[k].seg == first->seg && cnt + 2 <= BATCH_IOV && bytes < RUN_BYTES;
             k++) {
            ASSERT(s->q[k].off == first->off + bytes);
            s->iov[cnt++] = (struct iovec){.iov_base = s->q[k].h, .iov_len = SV_SEG_HEADER_BYTES};
            s->iov[cnt++] =
                (struct iovec){.iov_base = (void *)s->q[k].data, .iov_len = s->q[k].len};
            bytes += rec_bytes(s->q[k].len);
        }
        struct seg *g = sv__seg_find(s, first->seg);
        ASSERT(g != NULL);
        rc = write_run(s, g, s->iov, cnt, first->off, bytes);
        if (rc < 0)
            break;
        ASSERT((uint64_t)rc == bytes);
        i = k;
    }
    if (i == s->n_q) {
        s->n_q = 0;
        return 0;
    }
    char name[32];
    sv__seg_name(name, sizeof name, s->q[i].seg);
    uint64_t off = s->q[i].off;
    sv__seg_drop_queue(s, i);
    return sv__seg_seterr(s, (int)rc, "batched write at %s/%s offset %llu; unsynced puts discarded",
                          s->dir, name, (unsigned long long)off);
}

void sv_seg_batch_begin(struct sv_seg_store *s)
{
    ASSERT(s != NULL && !s->batching && s->n_q == 0);
    s->batching = true;
}

int sv_seg_batch_flush(struct sv_seg_store *s)
{
    ASSERT(s != NULL);
    s->errmsg[0] = 0;
    return s->n_q ? sv__seg_flush(s) : 0;
}

int sv_seg_batch_end(struct sv_seg_store *s)
{
    ASSERT(s != NULL && s->batching);
    s->errmsg[0] = 0;
    s->batching = false;
    return sv__seg_flush(s);
}
