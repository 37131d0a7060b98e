/* Private to svsegstore: the store's structures and what its files share (API: segstore.h). */
#ifndef SHARDVAULT_SEGSTORE_INTERNAL_H
#define SHARDVAULT_SEGSTORE_INTERNAL_H

#include "segstore.h"

#include "sv_codec.h"

#include <leveldb/c.h>
#include <liburing.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

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

/* ---- encoding: sv_codec.h ---- */

static inline void header_encode(uint8_t *h, const uint8_t *id, const void *data, uint32_t len)
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
static inline bool header_sane(const uint8_t *h)
{
    return sv_get32(h) == MAGIC && h[4] == VERSION && h[5] == 0 && h[6] == 0 && h[7] == 0 &&
           sv_get32(h + 8) <= SV_SEG_PAYLOAD_MAX;
}

static inline bool record_valid(const uint8_t *h, const void *payload)
{
    uint32_t len = sv_get32(h + 8);
    uint32_t crc = sv_crc32c(0, h, CRC_OFF);
    if (len > 0)
        crc = sv_crc32c(crc, payload, len);
    return crc == sv_get32(h + CRC_OFF);
}

static inline void key_encode(uint8_t *k, char prefix, const uint8_t *id)
{
    k[0] = (uint8_t)prefix;
    memcpy(k + 1, id, SV_SEG_ID_BYTES);
}

static inline void loc_encode(uint8_t *v, const struct loc *l)
{
    sv_put32(v, l->seg);
    sv_put64(v + 4, l->off);
    sv_put32(v + 12, l->len);
}

static inline struct loc loc_decode(const uint8_t *v)
{
    struct loc l = {.seg = sv_get32(v), .off = sv_get64(v + 4), .len = sv_get32(v + 12)};
    return l;
}

static inline uint64_t rec_bytes(uint32_t len)
{
    return SV_SEG_HEADER_BYTES + (uint64_t)len;
}

static inline void tail_encode(uint8_t *v, uint32_t seg, uint64_t off)
{
    sv_put32(v, seg);
    sv_put64(v + 4, off);
}

/* Functions shared by the store's files; each one's contract is the comment where it is defined. */

/* ---- segstore.c: errors, put, delete, sync ---- */
__attribute__((format(printf, 3, 4))) int sv__seg_seterr(struct sv_seg_store *s, int rc,
                                                         const char *fmt, ...);
int sv__seg_dberr(struct sv_seg_store *s, char *err, const char *what);
void sv__seg_discard_unsynced(struct sv_seg_store *s);

/* ---- segstore_io.c: io_uring, segment files, appends and batches ---- */
int64_t sv__seg_ring_readv(struct sv_seg_store *s, int fd, struct iovec *iov, int iovcnt,
                           uint64_t off);
int64_t sv__seg_ring_read(struct sv_seg_store *s, int fd, void *buf, size_t len, uint64_t off);
int sv__seg_fsync_all(struct sv_seg_store *s, const int *fds, unsigned n);
void sv__seg_name(char *buf, size_t cap, uint32_t no);
struct seg *sv__seg_find(struct sv_seg_store *s, uint32_t no);
struct seg *sv__seg_active(struct sv_seg_store *s);
int sv__seg_create(struct sv_seg_store *s, uint32_t no);
void sv__seg_direct_close(struct sv_seg_store *s, uint32_t no);
void sv__seg_forget(struct sv_seg_store *s, uint32_t i);
int sv__seg_append(struct sv_seg_store *s, const uint8_t *id, const void *data, uint32_t len,
                   struct loc *l);
void sv__seg_drop_queue(struct sv_seg_store *s, uint32_t i);
int sv__seg_flush(struct sv_seg_store *s);

/* ---- segstore_index.c: pending index changes, the bad list ---- */
void sv__seg_pend_clear(struct sv_seg_store *s);
int sv__seg_lookup(struct sv_seg_store *s, const uint8_t *id, struct loc *l);
void sv__seg_pend_set(struct sv_seg_store *s, const uint8_t *id, const struct loc *from,
                      const struct loc *to);
bool sv__seg_pend_full(struct sv_seg_store *s, const uint8_t *id);
int sv__seg_bad_add(struct sv_seg_store *s, const uint8_t *id);
int sv__seg_bad_remove(struct sv_seg_store *s, const uint8_t *id);

#endif /* SHARDVAULT_SEGSTORE_INTERNAL_H */
