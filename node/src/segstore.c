/* ShardVault chunk segment store: io_uring segment files + LevelDB index (see segstore.h). */
#define _GNU_SOURCE
#include "segstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <leveldb/c.h>
#include <liburing.h>

#include "sv_assert.h"
#include "sv_codec.h"
#include "sv_dio.h"

enum {
    MAGIC = 0x47535653u, /* "SVSG" little endian */
    VERSION = 1,
    CRC_OFF = 60,
    RING_ENTRIES = 64,
    PENDING_SLOTS = 2 * SV_SEG_PENDING_MAX, /* open addressing, load <= 1/2 */
    SCAN_WINDOW = 2 * SV_SEG_RECORD_MAX,    /* recovery read window */
    INDEX_PATH_MAX = 4096,                  /* "<dir>/index" */
    KEY_BYTES = 1 + SV_SEG_ID_BYTES,
    LOC_BYTES = 16,
    TAIL_BYTES = 12,
    BATCH_IOV = 1024,        /* iovecs per vectored write of a batch (IOV_MAX) */
    RUN_BYTES = 8u << 20,    /* a batch's vectored write stops at the record crossing this */
    DIRECT_MIN = 256u << 10, /* writes this big go through direct I/O (see write_run) */
    DIO_ALIGN = 4096,        /* direct I/O: buffer address, file offset and length */
    COMPACT_BUF = RUN_BYTES + SV_SEG_RECORD_MAX, /* compaction copies between two writes */
};

_Static_assert((PENDING_SLOTS & (PENDING_SLOTS - 1)) == 0, "slot count is a power of two");
_Static_assert((long)SCAN_WINDOW >= (long)SV_SEG_RECORD_MAX, "a record fits in the scan window");
_Static_assert((long)SV_SEG_BYTES_MIN >= (long)SV_SEG_HEADER_BYTES, "a segment holds a header");
_Static_assert(SV_SEG_ERRMSG_MAX >= 64, "room for a message");

struct loc {
    uint32_t seg;
    uint32_t len; /* payload bytes */
    uint64_t off;
};

enum { PEND_PUT = 1, PEND_DEL = 2 };

/* A record put during a batch, written by flush(). */
struct qrec {
    uint8_t h[SV_SEG_HEADER_BYTES];
    const void *data; /* the caller's, valid until sv_seg_batch_end */
    uint32_t len;
    uint32_t seg;
    uint64_t off;
};

/* An id put or deleted since the last sync; lookups see it before the index. */
struct pend {
    uint8_t id[SV_SEG_ID_BYTES];
    struct loc loc;
    uint8_t kind; /* 0 = free slot */
};

struct seg {
    uint32_t no;
    int fd;
    uint64_t size; /* bytes of records (logical end; the file may hold a failed tail) */
    uint64_t live; /* live bytes as of the last sync */
    int64_t delta; /* live bytes changed since the last sync */
    bool dirty;    /* written since the last sync */
    bool victim;   /* being compacted */
};

struct sv_seg_store {
    struct sv_seg_opts opts;
    char *dir;
    int dirfd;
    bool dir_dirty;  /* a segment was created since the last sync */
    bool force_roll; /* an fsync failed: do not append to the active segment again */
    struct io_uring ring;
    leveldb_t *db;
    leveldb_options_t *dbopts;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts_sync;
    leveldb_writeoptions_t *wopts_nosync;
    leveldb_writebatch_t *batch; /* index changes since the last sync */
    struct pend *pend;           /* PENDING_SLOTS */
    uint32_t *pend_used;         /* slot numbers in use, n_pend of them */
    uint32_t n_pend;
    struct seg *segs; /* SV_SEG_SEGMENTS_MAX, sorted by no; the last is active */
    uint32_t n_segs;
    uint64_t records;      /* live records as of the last sync */
    int64_t records_delta; /* since the last sync */
    uint8_t *bad;          /* SV_SEG_BAD_MAX ids, sorted */
    uint32_t n_bad;
    uint8_t *iobuf; /* COMPACT_BUF: compaction copies */
    int dfd;        /* O_DIRECT write fd of segment dfd_no; -1: none open */
    uint32_t dfd_no;
    bool no_direct; /* the file system refused direct I/O: not tried again */
    uint8_t *dbuf;  /* DIO_ALIGN-aligned staging of one direct write */
    size_t dbuf_cap;
    bool batching;  /* between sv_seg_batch_begin and _end */
    struct qrec *q; /* records queued by puts of the batch, in append order */
    uint32_t n_q, cap_q;
    struct iovec *iov; /* BATCH_IOV, for flush() */
    uint32_t tail_seg; /* the tail as of the last sync (0: none yet) */
    uint64_t tail_off;
    char errmsg[SV_SEG_ERRMSG_MAX];
};

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

__attribute__((format(printf, 3, 4))) static int seterr(struct sv_seg_store *s, int rc,
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
static int dberr(struct sv_seg_store *s, char *err, const char *what)
{
    int rc = strstr(err, "No space left") ? -ENOSPC : SV_SEG_E_INDEX;
    seterr(s, rc, "%s: %s", what, err);
    leveldb_free(err);
    return rc;
}

/* ---- encoding: sv_codec.h ---- */

static void header_encode(uint8_t *h, const uint8_t *id, const void *data, uint32_t len)
{
    memset(h, 0, SV_SEG_HEADER_BYTES);
    sv_put32(h, MAGIC);
    h[4] = VERSION;
    sv_put32(h + 8, len);
    memcpy(h + 16, id, SV_SEG_ID_BYTES);
    uint32_t crc = sv_crc32c(0, h, CRC_OFF);
    if (len > 0)
        crc = sv_crc32c(crc, data, len);
    sv_put32(h + CRC_OFF, crc);
}

/* Header fields are sane (the record can be parsed); payload not checked. */
static bool header_sane(const uint8_t *h)
{
    return sv_get32(h) == MAGIC && h[4] == VERSION && h[5] == 0 && h[6] == 0 && h[7] == 0 &&
           sv_get32(h + 8) <= SV_SEG_PAYLOAD_MAX;
}

static bool record_valid(const uint8_t *h, const void *payload)
{
    uint32_t len = sv_get32(h + 8);
    uint32_t crc = sv_crc32c(0, h, CRC_OFF);
    if (len > 0)
        crc = sv_crc32c(crc, payload, len);
    return crc == sv_get32(h + CRC_OFF);
}

static void key_encode(uint8_t *k, char prefix, const uint8_t *id)
{
    k[0] = (uint8_t)prefix;
    memcpy(k + 1, id, SV_SEG_ID_BYTES);
}

static void loc_encode(uint8_t *v, const struct loc *l)
{
    sv_put32(v, l->seg);
    sv_put64(v + 4, l->off);
    sv_put32(v + 12, l->len);
}

static struct loc loc_decode(const uint8_t *v)
{
    struct loc l = {.seg = sv_get32(v), .off = sv_get64(v + 4), .len = sv_get32(v + 12)};
    return l;
}

static uint64_t rec_bytes(uint32_t len)
{
    return SV_SEG_HEADER_BYTES + (uint64_t)len;
}

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

static int64_t ring_readv(struct sv_seg_store *s, int fd, struct iovec *iov, int iovcnt,
                          uint64_t off)
{
    int rc = fault(s, SV_SEG_IO_READ);
    return rc < 0 ? rc : ring_xfer(s, false, fd, iov, iovcnt, off);
}

static int64_t ring_read(struct sv_seg_store *s, int fd, void *buf, size_t len, uint64_t off)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    return ring_readv(s, fd, &iov, 1, off);
}

/* ---- segments ---- */

static void seg_name(char *buf, size_t cap, uint32_t no)
{
    snprintf(buf, cap, "seg-%08u", no);
}

static struct seg *seg_find(struct sv_seg_store *s, uint32_t no)
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

static struct seg *active(struct sv_seg_store *s)
{
    ASSERT(s->n_segs > 0);
    return &s->segs[s->n_segs - 1];
}

/* Start segment number no (higher than every existing one). */
static int seg_create(struct sv_seg_store *s, uint32_t no)
{
    char name[32];
    if (s->n_segs == SV_SEG_SEGMENTS_MAX)
        return seterr(s, SV_SEG_E_TOO_MANY_SEGMENTS, "%u segment files in %s", s->n_segs, s->dir);
    ASSERT(s->n_segs == 0 || no > active(s)->no);
    seg_name(name, sizeof name, no);
    int fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return seterr(s, -errno, "create %s/%s", s->dir, name);
    s->segs[s->n_segs++] = (struct seg){.no = no, .fd = fd, .dirty = true};
    s->dir_dirty = true;
    return 0;
}

/* Close the direct write fd (of segment no, or of any segment: 0). */
static void direct_close(struct sv_seg_store *s, uint32_t no)
{
    if (s->dfd >= 0 && (no == 0 || s->dfd_no == no)) {
        close(s->dfd);
        s->dfd = -1;
    }
}

/* Close segment at position i (no longer referenced) and drop it from the
 * table; its file stays. */
static void seg_forget(struct sv_seg_store *s, uint32_t i)
{
    ASSERT(i < s->n_segs);
    close(s->segs[i].fd);
    direct_close(s, s->segs[i].no);
    memmove(&s->segs[i], &s->segs[i + 1], (s->n_segs - i - 1) * sizeof s->segs[0]);
    s->n_segs--;
}

/* Close and unlink segment at position i (no longer referenced). */
static int seg_remove(struct sv_seg_store *s, uint32_t i)
{
    char name[32];
    seg_name(name, sizeof name, s->segs[i].no);
    seg_forget(s, i);
    if (unlinkat(s->dirfd, name, 0) < 0)
        return seterr(s, -errno, "unlink %s/%s", s->dir, name);
    return 0;
}

static int dir_fsync(struct sv_seg_store *s)
{
    if (fsync(s->dirfd) < 0)
        return seterr(s, -errno, "fsync directory %s", s->dir);
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
        return seterr(s, -errno, "dup directory fd");
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return seterr(s, -errno, "read directory %s", s->dir);
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
            return seterr(s, SV_SEG_E_TOO_MANY_SEGMENTS, "over %d segment files in %s",
                          SV_SEG_SEGMENTS_MAX, s->dir);
        }
        nos[n++] = no;
    }
    closedir(d);
    qsort(nos, n, sizeof nos[0], cmp_u32);
    for (uint32_t i = 0; i < n; i++) {
        char name[32];
        struct stat st;
        seg_name(name, sizeof name, nos[i]);
        int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return seterr(s, -errno, "open %s/%s", s->dir, name);
        s->segs[s->n_segs++] = (struct seg){.no = nos[i], .fd = fd};
        if (fstat(fd, &st) < 0)
            return seterr(s, -errno, "stat %s/%s", s->dir, name);
        s->segs[s->n_segs - 1].size = (uint64_t)st.st_size;
    }
    return 0;
}

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

static void pend_clear(struct sv_seg_store *s)
{
    for (uint32_t i = 0; i < s->n_pend; i++)
        s->pend[s->pend_used[i]].kind = 0;
    s->n_pend = 0;
    leveldb_writebatch_clear(s->batch);
}

/* Where id is now: pending changes first, then the index. */
static int lookup(struct sv_seg_store *s, const uint8_t *id, struct loc *l)
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
        return dberr(s, err, "index get");
    if (v == NULL)
        return SV_SEG_E_NOT_FOUND;
    if (vlen != LOC_BYTES) {
        leveldb_free(v);
        return seterr(s, SV_SEG_E_INDEX, "index entry of %zu bytes", vlen);
    }
    *l = loc_decode((const uint8_t *)v);
    leveldb_free(v);
    return 0;
}

/* Record that id moves to *to (NULL: deleted), with the accounting. The
 * caller checked there is a free pending slot (or id already has one). */
static void pend_set(struct sv_seg_store *s, const uint8_t *id, const struct loc *from,
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
        struct seg *g = seg_find(s, from->seg);
        ASSERT(g != NULL);
        g->delta -= (int64_t)rec_bytes(from->len);
        s->records_delta--;
    }
    if (to) {
        uint8_t v[LOC_BYTES];
        struct seg *g = seg_find(s, to->seg);
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

static bool pend_full(struct sv_seg_store *s, const uint8_t *id)
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
    return err ? dberr(s, err, "bad list write") : 0;
}

static int bad_add(struct sv_seg_store *s, const uint8_t *id)
{
    uint32_t pos;
    if (bad_find(s, id, &pos))
        return 0;
    if (s->n_bad == SV_SEG_BAD_MAX)
        return seterr(s, SV_SEG_E_BAD_LIST_FULL, "%d ids", SV_SEG_BAD_MAX);
    int rc = bad_write(s, id, true);
    if (rc < 0)
        return rc;
    uint8_t *at = s->bad + (size_t)pos * SV_SEG_ID_BYTES;
    memmove(at + SV_SEG_ID_BYTES, at, (size_t)(s->n_bad - pos) * SV_SEG_ID_BYTES);
    memcpy(at, id, SV_SEG_ID_BYTES);
    s->n_bad++;
    return 0;
}

static int bad_remove(struct sv_seg_store *s, const uint8_t *id)
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

/* ---- append ---- */

/* The direct write fd of segment g, opened on first use; -1 where the file
 * system refuses direct I/O (not asked again). */
static int direct_fd(struct sv_seg_store *s, const struct seg *g)
{
    if (s->no_direct)
        return -1;
    if (s->dfd >= 0 && s->dfd_no == g->no)
        return s->dfd;
    direct_close(s, 0);
    char name[32];
    seg_name(name, sizeof name, g->no);
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
            direct_close(s, 0);
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
            return seterr(s, -ENOMEM, "batch of %u records", cap);
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
static int append(struct sv_seg_store *s, const uint8_t *id, const void *data, uint32_t len,
                  struct loc *l)
{
    uint8_t h[SV_SEG_HEADER_BYTES];
    uint64_t rec = rec_bytes(len);
    struct seg *a = active(s);
    if (s->force_roll || (a->size > 0 && a->size + rec > s->opts.segment_bytes)) {
        int rc = seg_create(s, a->no + 1);
        if (rc < 0)
            return rc;
        s->force_roll = false;
        a = active(s);
    }
    if (s->batching)
        return queue(s, a, id, data, len, l);
    header_encode(h, id, data, len);
    struct iovec iov[2] = {{.iov_base = h, .iov_len = sizeof h},
                           {.iov_base = (void *)data, .iov_len = len}};
    int64_t n = write_run(s, a, iov, 2, a->size, rec);
    if (n < 0) {
        char name[32];
        seg_name(name, sizeof name, a->no);
        /* Best effort: drop partial bytes now; recovery would truncate them anyway. */
        if (ftruncate(a->fd, (off_t)a->size) < 0) {
            /* The next append overwrites them; nothing else to do. */
        }
        return seterr(s, (int)n, "write of %llu bytes at %s/%s offset %llu",
                      (unsigned long long)rec, s->dir, name, (unsigned long long)a->size);
    }
    ASSERT((uint64_t)n == rec);
    *l = (struct loc){.seg = a->no, .off = a->size, .len = len};
    a->size += rec;
    a->dirty = true;
    return 0;
}

static void discard_unsynced(struct sv_seg_store *s);

/* Queued records from the i-th on were not written: each segment's end goes
 * back to its first unwritten record (latest first), and everything since the
 * last sync is discarded, as after a failed fsync. */
static void drop_queue(struct sv_seg_store *s, uint32_t i)
{
    for (uint32_t k = s->n_q; k-- > i;) {
        struct seg *g = seg_find(s, s->q[k].seg);
        g->size = s->q[k].off;
        if (ftruncate(g->fd, (off_t)g->size) < 0) {
            /* Recovery cuts the log at the first torn record anyway. */
        }
    }
    s->n_q = 0;
    discard_unsynced(s);
}

/* Write the queued records: one vectored write per run of records in the same
 * segment (at most BATCH_IOV / 2 records each). If a write fails, each
 * segment's end goes back to its first unwritten record and everything since
 * the last sync is discarded, as after a failed fsync. */
static int flush(struct sv_seg_store *s)
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
        struct seg *g = seg_find(s, first->seg);
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
    seg_name(name, sizeof name, s->q[i].seg);
    uint64_t off = s->q[i].off;
    drop_queue(s, i);
    return seterr(s, (int)rc, "batched write at %s/%s offset %llu; unsynced puts discarded", s->dir,
                  name, (unsigned long long)off);
}

void sv_seg_batch_begin(struct sv_seg_store *s)
{
    ASSERT(s != NULL && !s->batching && s->n_q == 0);
    s->batching = true;
}

int sv_seg_batch_end(struct sv_seg_store *s)
{
    ASSERT(s != NULL && s->batching);
    s->errmsg[0] = 0;
    s->batching = false;
    return flush(s);
}

int sv_seg_put(struct sv_seg_store *s, const uint8_t *id, const void *data, size_t len)
{
    struct loc old, l;
    ASSERT(s != NULL && id != NULL && (data != NULL || len == 0));
    s->errmsg[0] = 0;
    if (len > SV_SEG_PAYLOAD_MAX)
        return seterr(s, SV_SEG_E_TOO_BIG, "%zu bytes, at most %d", len, SV_SEG_PAYLOAD_MAX);
    if (pend_full(s, id))
        return seterr(s, SV_SEG_E_PENDING_FULL, "%d ids changed since the last sync",
                      SV_SEG_PENDING_MAX);
    int rc = lookup(s, id, &old);
    if (rc < 0 && rc != SV_SEG_E_NOT_FOUND)
        return rc;
    bool had = rc == 0;
    rc = append(s, id, data, (uint32_t)len, &l);
    if (rc < 0)
        return rc;
    pend_set(s, id, had ? &old : NULL, &l);
    return bad_remove(s, id);
}

int sv_seg_delete(struct sv_seg_store *s, const uint8_t *id)
{
    struct loc old;
    ASSERT(s != NULL && id != NULL);
    s->errmsg[0] = 0;
    if (pend_full(s, id))
        return seterr(s, SV_SEG_E_PENDING_FULL, "%d ids changed since the last sync",
                      SV_SEG_PENDING_MAX);
    int rc = lookup(s, id, &old);
    if (rc < 0)
        return rc;
    pend_set(s, id, &old, NULL);
    return bad_remove(s, id);
}

/* ---- sync ---- */

static void tail_encode(uint8_t *v, uint32_t seg, uint64_t off)
{
    sv_put32(v, seg);
    sv_put64(v + 4, off);
}

/* The fsyncs failed: nothing since the last sync is known durable, so forget
 * it (never index it) and stop appending to a file whose state is unknown. */
static void discard_unsynced(struct sv_seg_store *s)
{
    pend_clear(s);
    for (uint32_t i = 0; i < s->n_segs; i++)
        s->segs[i].delta = 0;
    s->records_delta = 0;
    s->force_roll = true;
}

/* fsync each fd, RING_ENTRIES per submission; the first error wins. */
static int fsync_all(struct sv_seg_store *s, const int *fds, unsigned n)
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

int sv_seg_sync(struct sv_seg_store *s)
{
    int fds[SV_SEG_SEGMENTS_MAX + 1];
    unsigned n = 0;
    ASSERT(s != NULL);
    s->errmsg[0] = 0;

    /* 1. fsync every segment written since the last sync, and the directory if
     * a segment was created, submitted together. */
    if (s->n_q > 0) {
        int rc = flush(s);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < s->n_segs; i++)
        if (s->segs[i].dirty)
            fds[n++] = s->segs[i].fd;
    unsigned n_seg = n;
    if (s->dir_dirty)
        fds[n++] = s->dirfd;
    if (n == 0 && s->n_pend == 0 && s->tail_seg == active(s)->no && s->tail_off == active(s)->size)
        return 0; /* nothing happened since the last sync: no disk flush */
    if (n > 0) {
        int rc = fsync_all(s, fds, n);
        if (rc < 0) {
            discard_unsynced(s);
            return seterr(s, rc, "fsync of %u segment(s) in %s; unsynced puts discarded", n_seg,
                          s->dir);
        }
        for (uint32_t i = 0; i < s->n_segs; i++)
            s->segs[i].dirty = false;
        s->dir_dirty = false;
    }

    /* 2. The index batch, with the new tail, durably. */
    uint8_t v[TAIL_BYTES];
    char *err = NULL;
    tail_encode(v, active(s)->no, active(s)->size);
    leveldb_writebatch_put(s->batch, "t", 1, (const char *)v, sizeof v);
    leveldb_write(s->db, s->wopts_sync, s->batch, &err);
    if (err)
        return dberr(s, err, "index batch write"); /* pending kept: sync may be retried */
    pend_clear(s);
    s->tail_seg = active(s)->no;
    s->tail_off = active(s)->size;
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
    int rc = s->n_q > 0 ? flush(s) : 0;
    if (rc < 0)
        return rc;
    rc = lookup(s, id, &l);
    if (rc < 0)
        return rc;
    *len = l.len;
    if (cap < l.len)
        return seterr(s, SV_SEG_E_BUF_TOO_SMALL, "%u bytes, buffer %zu", l.len, cap);
    struct seg *g = seg_find(s, l.seg);
    ASSERT(g != NULL);
    seg_name(name, sizeof name, l.seg);
    struct iovec iov[2] = {{.iov_base = h, .iov_len = sizeof h},
                           {.iov_base = buf, .iov_len = l.len}};
    int64_t n = ring_readv(s, g->fd, iov, 2, l.off);
    if (n < 0)
        return seterr(s, (int)n, "read %s/%s offset %llu", s->dir, name, (unsigned long long)l.off);
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
        bad_add(s, id); /* best effort: the caller learns of the corruption anyway */
        return seterr(s, SV_SEG_E_CORRUPT, "%s at %s/%s offset %llu", why, s->dir, name,
                      (unsigned long long)l.off);
    }
    return 0;
}

int sv_seg_mark_bad(struct sv_seg_store *s, const uint8_t *id)
{
    ASSERT(s != NULL && id != NULL);
    s->errmsg[0] = 0;
    return bad_add(s, id);
}

int sv_seg_bad_list(struct sv_seg_store *s, uint8_t *ids, size_t cap, size_t *n)
{
    ASSERT(s != NULL && n != NULL && (ids != NULL || cap == 0));
    *n = cap < s->n_bad ? cap : s->n_bad;
    if (*n > 0)
        memcpy(ids, s->bad, *n * SV_SEG_ID_BYTES);
    return 0;
}

/* ---- compaction ---- */

/* Copy the record of id at l to the active segment: read into buf, which
 * the batch the compaction runs in keeps until its next flush. */
static int relocate(struct sv_seg_store *s, const uint8_t *id, const struct loc *l, uint8_t *buf)
{
    struct seg *g = seg_find(s, l->seg);
    struct loc to;
    ASSERT(g != NULL);
    int64_t n = ring_read(s, g->fd, buf, rec_bytes(l->len), l->off);
    if (n < 0)
        return seterr(s, (int)n, "compaction read of segment %u", l->seg);
    if ((uint64_t)n < rec_bytes(l->len) || !header_sane(buf) || sv_get32(buf + 8) != l->len ||
        memcmp(buf + 16, id, SV_SEG_ID_BYTES) != 0 ||
        !record_valid(buf, buf + SV_SEG_HEADER_BYTES)) {
        /* Not worth copying: the replica repairs it; keep it listed. */
        int rc = bad_add(s, id);
        if (rc < 0)
            return rc;
        pend_set(s, id, l, NULL);
        return 0;
    }
    int rc = append(s, id, buf + SV_SEG_HEADER_BYTES, l->len, &to);
    if (rc < 0)
        return rc;
    pend_set(s, id, l, &to);
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
        return seterr(s, SV_SEG_E_BAD_ARG, "threshold %g not in [0, 1)", threshold);
    int rc = sv_seg_sync(s); /* the index is now the whole truth */
    if (rc < 0)
        return rc;
    uint32_t active_no = active(s)->no;
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
        rc = seterr(s, e->nos == NULL ? -ENOMEM : -errno, "compaction of %u segments", n_victims);
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
        struct seg *g = seg_find(s, l.seg);
        if (g == NULL || !g->victim)
            continue;
        uint8_t id[SV_SEG_ID_BYTES];
        memcpy(id, k + 1, SV_SEG_ID_BYTES);
        if (pend_full(s, id) && (rc = sv_seg_sync(s)) < 0) /* writes the queue first */
            goto err_after_iter;
        if (used + rec_bytes(l.len) > COMPACT_BUF && (rc = flush(s)) < 0)
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
        rc = dberr(s, err, "compaction scan");
        goto err_after_iter;
    }
    leveldb_iter_destroy(it);

    /* Copies durable and indexed before any old file goes. */
    if ((rc = sv_seg_sync(s)) < 0)
        goto err_after_victims;
    for (uint32_t v = 0; v < n_victims; v++) {
        struct seg *g = seg_find(s, victims[v]);
        ASSERT(g != NULL && g->live == 0);
        reclaimed += g->size;
        e->nos[e->n++] = g->no;
        seg_forget(s, (uint32_t)(g - s->segs));
    }
    if (reclaimed_bytes)
        *reclaimed_bytes = reclaimed;
    return 0;

err_after_iter:
    s->batching = false;
    if (s->n_q > 0) /* queued copies not written: the index as of the last sync */
        drop_queue(s, 0);
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
        seg_name(name, sizeof name, e->nos[i]);
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

/* ---- open and recovery ---- */

/* Read [off, off + len) of a segment into the scan window. */
static int scan_fill(struct sv_seg_store *s, struct seg *g, uint8_t *win, uint64_t off,
                     uint64_t len)
{
    int64_t n = ring_read(s, g->fd, win, len, off);
    if (n < 0)
        return seterr(s, (int)n, "recovery read of segment %u", g->no);
    if ((uint64_t)n < len)
        return seterr(s, -EIO, "segment %u shrank during recovery", g->no);
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
        return seterr(s, -errno, "truncate segment %u to %llu", g->no, (unsigned long long)end);
    g->size = end;
    int rc = fsync_all(s, &g->fd, 1);
    if (rc < 0)
        return seterr(s, rc, "fsync of truncated segment %u", g->no);
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
        return dberr(s, err, "read tail");
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
        return seterr(s, -ENOMEM, "recovery window");
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
    tail_encode(t, active(s)->no, active(s)->size);
    leveldb_writebatch_put(batch, "t", 1, (const char *)t, sizeof t);
    leveldb_write(s->db, s->wopts_sync, batch, &err);
    if (err)
        rc = dberr(s, err, "recovery index write");

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
            g = seg_find(s, l.seg);
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
        rc = dberr(s, err, "index scan");
        goto err_after_iter;
    }
    if (drop) {
        leveldb_write(s->db, s->wopts_sync, batch, &err);
        if (err)
            rc = dberr(s, err, "index repair write");
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
    direct_close(s, 0);
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
        rc = seterr(s, SV_SEG_E_BAD_ARG, "segment_bytes %llu not in [%d, %u]",
                    (unsigned long long)s->opts.segment_bytes, SV_SEG_BYTES_MIN, SV_SEG_BYTES_MAX);
        goto err_after_alloc;
    }
    s->dir = strdup(dir);
    if (s->dir == NULL) {
        rc = seterr(s, -ENOMEM, "copy of the directory name");
        goto err_after_alloc;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        rc = seterr(s, -errno, "mkdir %s", dir);
        goto err_after_dirname;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        rc = seterr(s, -errno, "open %s", dir);
        goto err_after_dirname;
    }
    if ((rc = io_uring_queue_init(RING_ENTRIES, &s->ring, 0)) < 0) {
        seterr(s, rc, "io_uring_queue_init");
        goto err_after_dirfd;
    }

    s->pend = calloc(PENDING_SLOTS, sizeof *s->pend);
    s->pend_used = calloc(SV_SEG_PENDING_MAX, sizeof *s->pend_used);
    s->segs = calloc(SV_SEG_SEGMENTS_MAX, sizeof *s->segs);
    s->bad = calloc(SV_SEG_BAD_MAX, SV_SEG_ID_BYTES);
    s->iobuf = malloc(COMPACT_BUF);
    s->iov = malloc(BATCH_IOV * sizeof *s->iov);
    if (!s->pend || !s->pend_used || !s->segs || !s->bad || !s->iobuf || !s->iov) {
        rc = seterr(s, -ENOMEM, "store tables");
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
        rc = seterr(s, SV_SEG_E_BAD_ARG, "directory name too long");
        goto err_after_dbopts;
    }
    s->db = leveldb_open(s->dbopts, path, &err);
    if (err) {
        rc = dberr(s, err, "open index");
        goto err_after_dbopts;
    }

    if ((rc = segs_load(s)) < 0)
        goto err_after_segs;
    if ((rc = recover(s)) < 0)
        goto err_after_segs;
    if ((rc = index_scan(s)) < 0)
        goto err_after_segs;
    if (s->n_segs == 0) {
        if ((rc = seg_create(s, 1)) < 0)
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
