/* ShardVault chunk segment store: append-only segment files written, read and
 * synced through io_uring, with a LevelDB index (chunk id -> location).
 *
 * Layout of a store directory:
 *   seg-%08u   segment files, numbered from 1 upwards; records are appended to
 *              the highest one (the *active* segment), and a new one is started
 *              when the next record would take it past opts.segment_bytes
 *              (a record never straddles two segments; a segment holds at
 *              least one record, so it may exceed segment_bytes by less than
 *              one record when segment_bytes < SV_SEG_RECORD_MAX);
 *   index/     the LevelDB index:
 *                "c" + id (32 B) -> segment (u32), offset (u64), payload length
 *                                   (u32), little endian;
 *                "b" + id        -> ""  the chunk was found corrupt (bad list);
 *                "t"             -> segment (u32), offset (u64): the log tail
 *                                   as of the last successful sync.
 *
 * A record is a 64-byte header followed by the payload (the already encrypted
 * chunk, opaque to the store), all little endian:
 *   0 magic "SVSG" (u32)   4 format version (u16)   6 flags (u16, 0)
 *   8 payload length (u32) 12 reserved (u32, 0)     16 chunk id (32 bytes)
 *  48 reserved (u64, 0)   56 reserved (u32, 0)      60 CRC32C (u32) of header
 *                                                      bytes 0..59 + payload
 * Records are not padded: the next one starts right after the payload.
 *
 * Durability contract. sv_seg_put() returns once the record is written to the
 * segment file (in the page cache) and visible to sv_seg_get(), but it is not
 * durable. sv_seg_sync() fsyncs every segment written since the previous sync
 * (one io_uring submission), THEN writes the index changes of all puts and
 * deletes since the previous sync in one LevelDB batch with sync=true. After
 * sv_seg_sync() returns 0, every put and delete made before it survives a
 * crash (power loss included). Operations after the last successful sync may
 * or may not survive. The node batches many puts per sync (group commit).
 *
 * Recovery (in sv_seg_open). Bytes before the synced tail were fsynced, so
 * they are trusted; the log after it is checked record by record: from the
 * tail offset in the tail's segment, and from the start in every later
 * segment (puts after the last sync may have started new ones). The first
 * record that is torn (short), has a bad magic/version/length or a wrong CRC
 * ends the log: its segment is truncated there and any later segment removed.
 * Complete records past the tail are put back in the index (redo, in log
 * order); records before it are left to the index, which may have deleted or
 * replaced them. If the tail's segment is shorter than the tail (synced bytes
 * lost, e.g. a damaged disk or a test), that segment is scanned from its start
 * to find the last whole record, skipping (not cutting at) complete records
 * whose CRC fails: bit rot in synced data is left for sv_seg_get to report.
 * Then the whole index is scanned once: entries pointing past the end of a
 * (truncated) segment or into a missing one are dropped, and the live bytes
 * per segment are counted. Open is therefore O(index entries + bytes written
 * after the last sync); a persistent per-segment count is a later optimisation.
 * Without a tail (new store, or an index lost), every segment is scanned and
 * indexed (the index is rebuilt from the segments).
 *
 * Space. Deleting a chunk only removes its index entry; the bytes become dead
 * in their segment (dead = segment size - live bytes). sv_seg_compact() copies
 * the live records of segments whose dead fraction exceeds a threshold into
 * the active segment, syncs (copies durable, then the index switched to them),
 * and only then unlinks the old segment and fsyncs the directory, so a crash
 * at any point loses nothing that was synced. The copies are written in
 * batches (as sv_seg_batch_begin's), at most COMPACT_BUF bytes read ahead of
 * a write; sv_seg_compact_keep leaves the unlinks to a caller that need not
 * hold the store for them.
 *
 * I/O. One io_uring ring lives inside the store. Record writes are writev
 * SQEs (header + payload), reads are read SQEs, syncs are fsync SQEs. Every
 * call submits and waits for its completions. A *batch* (sv_seg_batch_begin
 * .. sv_seg_batch_end) turns the puts between them into one writev per run of
 * up to 512 records in the same segment: a buffered write is handed to a
 * kernel worker thread, so one hand-off per batch instead of one per record
 * is what makes many small puts cheap. A write of at least 256 KiB (a
 * big record, or a batch's run; runs stop after about 8 MiB) goes around
 * the page cache where the file system has direct I/O: its bytes are
 * copied into an aligned buffer, its whole 4 KiB blocks written with
 * O_DIRECT and the partial blocks at either end through the page cache
 * (copying chunks into the page cache was a fifth of a node's CPU under
 * large puts); the bytes on file are the same. Only directory operations
 * (open, ftruncate, unlink, fsync of the directory) are plain syscalls, since
 * liburing 2.3 has no ftruncate and they happen only at open/compaction/error.
 *
 * Errors: 0 on success, a negative errno for system errors (ENOSPC is
 * -ENOSPC), or a negative enum sv_seg_err for domain errors; the store keeps a
 * message with context (sv_seg_errmsg). A store is used by one thread at a time.
 */
#ifndef SHARDVAULT_SEGSTORE_H
#define SHARDVAULT_SEGSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbols of the library's public API (everything else is hidden). */
#define SV_SEG_API __attribute__((visibility("default")))

/* Limits. */
enum {
    SV_SEG_ID_BYTES = 32,                   /* chunk id, opaque */
    SV_SEG_HEADER_BYTES = 64,               /* record header */
    SV_SEG_PAYLOAD_MAX = (1u << 20) + 4096, /* 1 MiB chunk + crypto overhead */
    SV_SEG_RECORD_MAX = SV_SEG_HEADER_BYTES + SV_SEG_PAYLOAD_MAX, /* one record on disk */
    SV_SEG_BYTES_MAX = 64u << 20, /* default and largest segment size */
    SV_SEG_BYTES_MIN = 4096,      /* smallest opts.segment_bytes */
    SV_SEG_SEGMENTS_MAX = 4096,   /* segment files (each keeps an fd) */
    SV_SEG_PENDING_MAX = 16384,   /* ids put/deleted between two syncs */
    SV_SEG_BAD_MAX = 4096,        /* ids on the bad list */
    SV_SEG_ERRMSG_MAX = 256       /* sv_seg_errmsg() text, with NUL */
};

_Static_assert(SV_SEG_RECORD_MAX < SV_SEG_BYTES_MAX, "a segment holds many full records");
_Static_assert(SV_SEG_BYTES_MIN <= SV_SEG_BYTES_MAX, "segment size range");
_Static_assert((uint64_t)SV_SEG_BYTES_MAX *SV_SEG_SEGMENTS_MAX <= (1ull << 48),
               "offsets and totals fit comfortably in 64 bits");

/* Domain errors: -2400 .. -2351, the segment store's range of the node's
 * error space (errors.h; disjoint from -errno and every other module's). */
enum sv_seg_err {
    SV_SEG_OK = 0,
    SV_SEG_E_NOT_FOUND = -2400, /* no chunk with this id */
    SV_SEG_E_CORRUPT,           /* stored record fails its checksum or header check */
    SV_SEG_E_TOO_BIG,           /* payload over SV_SEG_PAYLOAD_MAX */
    SV_SEG_E_BUF_TOO_SMALL,     /* get: cap < payload length (*len says how much) */
    SV_SEG_E_PENDING_FULL,      /* SV_SEG_PENDING_MAX unsynced operations: sync first */
    SV_SEG_E_TOO_MANY_SEGMENTS, /* SV_SEG_SEGMENTS_MAX segment files: compact first */
    SV_SEG_E_BAD_LIST_FULL,     /* SV_SEG_BAD_MAX ids on the bad list: repair some */
    SV_SEG_E_INDEX,             /* LevelDB reported an error (message in errmsg) */
    SV_SEG_E_BAD_ARG,           /* invalid argument or option */
    SV_SEG_E_LAST_
};

/* Static string for an error code: sv_seg_err values and negative errnos
 * (unknown codes give "unknown error"). */
SV_SEG_API const char *sv_seg_strerror(int err);

/* I/O operations as seen by the fault-injection hook. */
enum sv_seg_io {
    SV_SEG_IO_WRITE = 1, /* appending a record */
    SV_SEG_IO_READ,      /* reading a record (get, recovery, compaction) */
    SV_SEG_IO_FSYNC,     /* fsync of a segment */
    SV_SEG_IO_DIRECT,    /* the direct part of a big write (-EINVAL: the file
                          * system refuses the alignment; the store goes on
                          * buffered) */
};

struct sv_seg_opts {
    /* Segment size; 0 means SV_SEG_BYTES_MAX. Range SV_SEG_BYTES_MIN..MAX. */
    uint64_t segment_bytes;
    /* Test hook, NULL in production: called before each I/O the store submits;
     * a negative errno return makes that I/O fail with it exactly as if the
     * kernel had returned it (no I/O is done). */
    int (*fault)(void *arg, enum sv_seg_io io);
    void *fault_arg;
};

struct sv_seg_stats {
    uint64_t live_bytes;   /* header + payload of indexed records (unsynced included) */
    uint64_t dead_bytes;   /* segment bytes not referenced by the index */
    uint64_t live_records; /* indexed chunks */
    uint32_t segments;     /* segment files */
    uint32_t bad_chunks;   /* ids in the bad list */
};

struct sv_seg_store;

/* Open (creating if needed) the store in dir and recover it (see top).
 * opts may be NULL for defaults; it is copied. On success *out is a store owned
 * by the caller, released with sv_seg_close(). On failure *out is NULL and
 * errmsg (errlen bytes, may be NULL/0) says why. */
SV_SEG_API int sv_seg_open(const char *dir, const struct sv_seg_opts *opts,
                           struct sv_seg_store **out, char *errmsg, size_t errlen);

/* Sync (sv_seg_sync) and free the store; returns the sync's result. The store
 * is freed even when the sync fails (unsynced operations are then lost).
 * NULL is accepted. */
SV_SEG_API int sv_seg_close(struct sv_seg_store *s);

/* Append a record for id (SV_SEG_ID_BYTES bytes) with len bytes of data
 * (len <= SV_SEG_PAYLOAD_MAX; data may be NULL when len is 0). Replaces any
 * chunk with the same id and takes it off the bad list. Returns once written
 * (in a batch: once queued, see sv_seg_batch_begin), NOT durable: see
 * sv_seg_sync. Outside a batch the store does not keep id or data. On error
 * nothing is indexed and the store stays usable (-ENOSPC after a full disk). */
SV_SEG_API int sv_seg_put(struct sv_seg_store *s, const uint8_t *id, const void *data, size_t len);

/* Batches. After sv_seg_batch_begin, sv_seg_put only queues its record: the
 * chunk is placed and indexed (lookups and deletes see it) but its bytes are
 * written by sv_seg_batch_end, or earlier by any sv_seg_get or sv_seg_sync,
 * so the caller keeps every put's data valid and unchanged until then.
 * sv_seg_batch_end returns the writes' result: if one fails, the chunks put
 * and deleted since the last sync are discarded (as when an fsync fails: see
 * sv_seg_sync), the error is returned and the next put goes to a new segment.
 * sv_seg_compact must not be called inside a batch. */
SV_SEG_API void sv_seg_batch_begin(struct sv_seg_store *s);
SV_SEG_API int sv_seg_batch_end(struct sv_seg_store *s);
/* Write the puts queued so far (a batch stays open): the caller may then
 * change or free their data. Outside a batch nothing is queued: 0. Errors
 * as sv_seg_batch_end's. */
SV_SEG_API int sv_seg_batch_flush(struct sv_seg_store *s);

/* Make every put and delete made so far durable (see the contract at top).
 * If an fsync fails, the puts and deletes since the previous sync are
 * discarded (their fate after a crash is unknown, so they are not indexed),
 * the error is returned and the next put goes to a new segment. */
SV_SEG_API int sv_seg_sync(struct sv_seg_store *s);

/* Read chunk id into buf (cap bytes, caller-owned); *len gets the payload
 * length (also on SV_SEG_E_BUF_TOO_SMALL). The record's CRC, magic, version,
 * length and id are verified: on a mismatch it returns SV_SEG_E_CORRUPT and
 * adds id to the bad list (the caller repairs it from a replica with
 * sv_seg_put). buf contents are unspecified on error. */
SV_SEG_API int sv_seg_get(struct sv_seg_store *s, const uint8_t *id, void *buf, size_t cap,
                          size_t *len);

/* Whether chunk id is here and not known bad, from the index alone (no
 * read; a put since the last sync counts): 1, 0 (not indexed, or on the
 * bad list), or SV_SEG_E_INDEX. */
SV_SEG_API int sv_seg_has(struct sv_seg_store *s, const uint8_t *id);

/* Remove chunk id (not durable until sv_seg_sync); its bytes become dead.
 * SV_SEG_E_NOT_FOUND if there is no such chunk. Also drops it from the bad list. */
SV_SEG_API int sv_seg_delete(struct sv_seg_store *s, const uint8_t *id);

/* Remove every chunk whose id starts with prefix[0..plen) (1 <= plen <=
 * SV_SEG_ID_BYTES, else SV_SEG_E_BAD_ARG; prefix borrowed), those put since
 * the last sync included, and take every id with that prefix off the bad
 * list (indexed or not), then sync: on 0 the removals, and every put and
 * delete made before the call, are durable (see sv_seg_sync, whose failure
 * semantics apply). *deleted (may be NULL) gets the number of chunks
 * removed (0 on failure). The store is synced first, so that one scan of
 * the index (a LevelDB iterator from "c" + prefix) sees every chunk; it
 * syncs again whenever SV_SEG_PENDING_MAX removals are pending, so any
 * number may match, and the caller holds the store for as long as that
 * takes. On failure some removals may be durable already and the rest
 * pending or lost: calling it again removes what is left. Not inside a
 * batch. */
SV_SEG_API int sv_seg_delete_prefix(struct sv_seg_store *s, const uint8_t *prefix, size_t plen,
                                    uint64_t *deleted);

/* Add id to the bad list (written to the index at once, durable with the next
 * sync); SV_SEG_E_BAD_LIST_FULL when it holds SV_SEG_BAD_MAX ids. The chunk
 * stays indexed until it is replaced by sv_seg_put or removed by sv_seg_delete. */
SV_SEG_API int sv_seg_mark_bad(struct sv_seg_store *s, const uint8_t *id);

/* Copy up to cap ids of the bad list into ids (cap * SV_SEG_ID_BYTES bytes,
 * caller-owned), in id order; *n gets how many were copied. The list is kept
 * in memory (loaded at open) and reflects every call made so far. */
SV_SEG_API int sv_seg_bad_list(struct sv_seg_store *s, uint8_t *ids, size_t cap, size_t *n);

/* Reclaim space: every segment other than the active one whose dead bytes
 * exceed threshold * its size (0 <= threshold < 1) has its live records copied
 * to the active segment, then the store syncs, then the segment is unlinked.
 * Syncs even when nothing is compacted. *reclaimed_bytes (may be NULL) gets the
 * size of the removed files. Records found corrupt while copying are put on
 * the bad list and dropped from the index. */
SV_SEG_API int sv_seg_compact(struct sv_seg_store *s, double threshold, uint64_t *reclaimed_bytes);

/* Segment files a compaction emptied, left for sv_seg_unlink_emptied. */
struct sv_seg_emptied {
    int dirfd;     /* the store directory (a duplicate); -1 when nothing to do */
    uint32_t n;    /* segment numbers in nos */
    uint32_t *nos; /* owned */
};

/* sv_seg_compact in two steps, so that the slow part need not hold the store,
 * and within a budget: segments are taken (in file order) only while the
 * live bytes to copy stay within max_copy_bytes (UINT64_MAX: no limit), so a
 * nearly full disk is not filled by the copies; emptied segments are always
 * taken.
 * sv_seg_compact_keep copies and syncs as sv_seg_compact does, then closes
 * the emptied segments and forgets them, leaving their files to *e (always
 * set; empty on error). sv_seg_unlink_emptied unlinks them and fsyncs the
 * directory (freeing 64 MiB took an ext4 file system up to a second under
 * load); it touches no store, so it may run while another thread uses the
 * store, and frees *e. On failure it returns a negative errno with errmsg
 * (caller-owned) filled. A crash before the unlinks leaves files that no
 * index entry refers to: the next compaction takes them as wholly dead. */
SV_SEG_API int sv_seg_compact_keep(struct sv_seg_store *s, double threshold,
                                   uint64_t max_copy_bytes, uint64_t *reclaimed_bytes,
                                   struct sv_seg_emptied *e);
SV_SEG_API int sv_seg_unlink_emptied(struct sv_seg_emptied *e, char *errmsg, size_t errlen);
/* Close and free *e without unlinking anything. */
SV_SEG_API void sv_seg_emptied_free(struct sv_seg_emptied *e);

/* Fill *st (caller-owned) with the current counts. */
SV_SEG_API void sv_seg_stats(const struct sv_seg_store *s, struct sv_seg_stats *st);

/* Context for the last error returned by the store (owned by the store, valid
 * until the next call on it); "" if none. */
SV_SEG_API const char *sv_seg_errmsg(const struct sv_seg_store *s);

#ifdef __cplusplus
}
#endif

#endif /* SHARDVAULT_SEGSTORE_H */
