/* ShardVault Raft log storage: the hard state, log entries and snapshot of MANY
 * raft groups (multi-raft) in one store, made durable by group commit.
 *
 * Use. For every group with a ready batch (sv_raft_ready), the node calls
 * ops->stage(group, &rd); once all groups of a loop turn are staged it calls
 * ops->commit() ONCE: everything staged becomes durable with one sync, and
 * only then does it send the batches' messages (persist before send, see
 * raft.h). Nothing staged is visible to load() or survives a crash before
 * commit() returns 0. After a commit, the state of every group is exactly
 * what its staged batches describe, applied in staging order:
 *   - rd.hs_changed: the hard state is replaced;
 *   - rd.snapshot: the snapshot replaces the group's snapshot and its whole log;
 *   - rd.n_entries: the log is truncated from rd.entries[0].index on, then the
 *     entries are appended (entries[0].index <= last index + 1, and above the
 *     snapshot index).
 * Within one batch the order is hard state, snapshot, entries (as raft.h).
 * Locally taken snapshots (sv_raft_snapshot) are recorded with
 * ops->save_snapshot() and the log prefix they cover dropped with
 * ops->compact(); both are staged like a batch.
 *
 * Two implementations share the table (STYLE.md rule 3):
 *   sv_logstore_leveldb_ops  one LevelDB database in a directory, plus payload
 *                            files for big entries; stage() adds to an
 *                            in-memory write batch (and writes big entries'
 *                            data to the active payload file, page cache
 *                            only), commit() fdatasyncs the payload files
 *                            written (if any), then is one leveldb_write with
 *                            sync=true;
 *   sv_logstore_mem_ops      in memory, for tests and the simulator; it has no
 *                            durability, but sv_logstore_mem_crash() drops what
 *                            is staged exactly as a crash would.
 *
 * LevelDB layout (keys big endian so iteration follows group, then index;
 * values little endian, each starting with a CRC32C over the group id, the
 * key's index or chunk number, and the rest of the value):
 *   "v"                               -> u32 format version (2; a version 1
 *                                        store, all entries inline, is read
 *                                        and marked 2 at open)
 *   "g" group(u64) "e" index(u64)     -> crc, term(u64), type(u8), len(u32), then
 *                                        either data (len bytes, inline), or,
 *                                        only when len >= SV_LOG_PAYLOAD_MIN_BYTES,
 *                                        the payload's file(u32), offset(u64)
 *                                        and pcrc(u32): a CRC32C over group,
 *                                        index and the len payload bytes
 *   "g" group(u64) "h"                -> crc, term(u64), vote(u64), commit(u64)
 *   "g" group(u64) "s"                -> crc, index(u64), term(u64), len(u64),
 *                                        chunks(u32), conf_len(u32), conf
 *                                        (sv_raft_conf_encode)
 *   "g" group(u64) "d" chunk(u32)     -> crc (also over the snapshot index),
 *                                        SV_LOG_SNAP_CHUNK_BYTES of snapshot data
 *                                        (the last chunk shorter)
 * The store keeps, per group, the range of entry indexes, the snapshot index
 * and chunk count in memory (read at open: two seeks and one get per group),
 * both as of the last commit and as staged; truncation, compaction and group
 * destruction delete exactly the keys that range names.
 *
 * Payload files "payload-%08u.log" (in the same directory, numbered
 * upwards; LevelDB ignores the names) hold the data of entries of at least
 * SV_LOG_PAYLOAD_MIN_BYTES, raw, back to back, so that big entries are
 * written once instead of through LevelDB's log, memtable flush and
 * compactions. Files are written with direct I/O (O_DIRECT) where the file
 * system allows it, each payload then starting at a multiple of
 * SV_LOG_PAYLOAD_ALIGN and zero-padded up to the next one: a payload is
 * read back only on restart or for a follower far behind, and copying it
 * into the page cache was most of a node's CPU under large puts. Only the
 * highest (active) file is appended to; a new one is started when an entry
 * would take it past SV_LOG_PAYLOAD_FILE_BYTES, after a failed sync, and
 * for the first payload after open. Crash safety: commit() fdatasyncs every
 * payload file written since the last commit (and the directory when a file
 * was created) BEFORE the synced leveldb_write, so a committed reference
 * always points at durable bytes; bytes that no committed record references
 * (a batch a crash or failure kept from committing) are ignored. Reclaim:
 * the store keeps in memory, per file and group, the highest index whose
 * payload the file holds (rebuilt at open by scanning the entry records);
 * after a successful commit it deletes every file but the active one in
 * which each group's highest index is below the group's first live index
 * (compaction, a snapshot replacing the log) or whose groups were
 * destroyed. At open, files no record references are deleted. A commit that
 * wrote no payload costs no extra sync. Space: a file lives as long as any
 * of its entries, so a group whose log is not compacted (an idle one) keeps
 * the files holding its last entries whole, the other groups' dead bytes in
 * them included (live payloads are not copied forward).
 *
 * Errors: 0, a negative errno, or a negative enum sv_log_err; the store keeps
 * a message with context (s->errmsg). A store is used by one thread at a time.
 */
#ifndef SHARDVAULT_LOGSTORE_H
#define SHARDVAULT_LOGSTORE_H

#include <shardvault/raft.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SV_LOG_API __attribute__((visibility("default")))

/* Limits. */
enum {
    SV_LOG_GROUPS_MAX = 1 << 16, /* groups in one store (staged included) */
    SV_LOG_ENTRY_BYTES_MAX = SV_RAFT_ENTRY_BYTES_MAX,
    SV_LOG_SNAPSHOT_BYTES_MAX = 256u << 20, /* one stored snapshot (below raft's 1 GiB) */
    SV_LOG_SNAP_CHUNK_BYTES = 1u << 20,     /* LevelDB value size for snapshot data */
    SV_LOG_PAYLOAD_MIN_BYTES = 64u << 10,   /* entries this big go to payload files */
    SV_LOG_PAYLOAD_FILE_BYTES = 16u << 20,  /* a payload file is rolled at this size */
    SV_LOG_PAYLOAD_ALIGN = 4096,            /* payload offsets in a file written directly */
    SV_LOG_PENDING_BYTES_MAX = 768u << 20,  /* staged bytes between two commits */
    SV_LOG_PENDING_OPS_MAX = 1 << 20,       /* staged puts + deletes between two commits */
    SV_LOG_LOAD_ENTRIES_MAX = 1 << 24,      /* entries load() returns for one group */
    SV_LOG_ERRMSG_MAX = 256                 /* errmsg text, with NUL */
};

_Static_assert((uint64_t)SV_LOG_SNAPSHOT_BYTES_MAX <= (uint64_t)SV_RAFT_SNAPSHOT_BYTES_MAX,
               "raft limit first");
_Static_assert((uint64_t)SV_LOG_PENDING_BYTES_MAX >=
                   (uint64_t)SV_LOG_SNAPSHOT_BYTES_MAX + 2ull * SV_LOG_ENTRY_BYTES_MAX,
               "one batch with a full snapshot and full entries fits between commits");
_Static_assert((uint64_t)SV_LOG_SNAPSHOT_BYTES_MAX / SV_LOG_SNAP_CHUNK_BYTES <
                   (uint64_t)SV_LOG_PENDING_OPS_MAX,
               "a full snapshot fits in the pending operations");

/* Domain errors: -2600 .. -2551, the log store's range of the node's error
 * space (errors.h; disjoint from -errno and every other module's). */
enum sv_log_err {
    SV_LOG_OK = 0,
    SV_LOG_E_NOT_FOUND = -2600, /* no such group */
    SV_LOG_E_CORRUPT,           /* stored data fails its checksum or is inconsistent */
    SV_LOG_E_TOO_BIG,           /* entry or snapshot over its *_MAX */
    SV_LOG_E_BAD_ARG,           /* invalid argument (index out of range, gap, ...) */
    SV_LOG_E_PENDING_FULL,      /* SV_LOG_PENDING_*_MAX reached: commit first */
    SV_LOG_E_GROUPS_FULL,       /* SV_LOG_GROUPS_MAX groups */
    SV_LOG_E_DB,                /* LevelDB reported an error (message in errmsg) */
    SV_LOG_E_NOMEM,             /* allocation failed */
    SV_LOG_E_LAST_
};

/* Static string for an error code: sv_log_err values and negative errnos. */
SV_LOG_API const char *sv_logstore_strerror(int err);

struct sv_logstore_ops;

/* Common head of every store; implementations embed it first. */
struct sv_logstore {
    const struct sv_logstore_ops *ops;
    char errmsg[SV_LOG_ERRMSG_MAX]; /* context of the last error, "" if none */
};

/* What load() returns. restore points into this struct (snap, entries), so
 * the struct must not be copied or moved while restore is used; free it with
 * sv_logstore_loaded_free(). */
struct sv_logstore_loaded {
    struct sv_raft_restore restore; /* hs, snapshot (&snap or NULL), entries; applied = 0 */
    struct sv_raft_snapshot snap;   /* snap.data malloc'd, owned here */
    struct sv_raft_entry *entries;  /* malloc'd array, each data malloc'd, owned here */
    size_t n_entries;
};

/* Free everything load() allocated in *l (not l itself) and zero it.
 * Accepts a zeroed struct. */
SV_LOG_API void sv_logstore_loaded_free(struct sv_logstore_loaded *l);

struct sv_logstore_ops {
    const char *name; /* "leveldb" or "memory" */

    /* Open (creating if needed) the store in dir (LevelDB; the memory store
     * ignores dir and always starts empty). On success *out is owned by the
     * caller and released with close(). On failure *out is NULL and errmsg
     * (errlen bytes, may be NULL/0) says why. */
    int (*open)(const char *dir, struct sv_logstore **out, char *errmsg, size_t errlen);

    /* Free the store. Whatever is staged and not committed is DROPPED (as in
     * a crash): close never commits. NULL is accepted. */
    void (*close)(struct sv_logstore *s);

    /* Record group's ready batch rd (borrowed; everything needed is copied)
     * into the pending batch: hs if rd->hs_changed, rd->snapshot, rd->entries
     * (see the file comment). Messages, committed entries and reads are
     * ignored. A group that does not exist yet is created. All or nothing: on
     * error nothing of rd is staged. SV_LOG_E_BAD_ARG (entries not contiguous,
     * entries[0].index past last + 1 or not above the snapshot index),
     * SV_LOG_E_TOO_BIG, SV_LOG_E_PENDING_FULL, SV_LOG_E_GROUPS_FULL,
     * SV_LOG_E_CORRUPT (the group's stored metadata is damaged), NOMEM. */
    int (*stage)(struct sv_logstore *s, uint64_t group, const struct sv_raft_ready *rd);

    /* Stage a snapshot the application took locally (sv_raft_snapshot):
     * replaces the stored snapshot, keeps the log (see compact). snap is
     * borrowed; its data is copied. snap->meta.index must not be below the
     * current snapshot index and must be <= the last index (BAD_ARG). */
    int (*save_snapshot)(struct sv_logstore *s, uint64_t group,
                         const struct sv_raft_snapshot *snap);

    /* Stage dropping the entries with index <= index, which must be covered
     * by the (staged or stored) snapshot: index <= snapshot index, else
     * SV_LOG_E_BAD_ARG. Costs one delete per dropped entry (PENDING_FULL when
     * too many: compact in steps). NOT_FOUND for an unknown group. */
    int (*compact)(struct sv_logstore *s, uint64_t group, uint64_t index);

    /* Stage removing every record of group. NOT_FOUND for an unknown group. */
    int (*destroy_group)(struct sv_logstore *s, uint64_t group);

    /* Make everything staged durable with one sync (group commit). 0 when
     * nothing is staged. On failure what was staged is dropped (its fate on
     * disk is unknown: the caller closes and reopens the store, then reloads
     * its groups) and the error is returned. */
    int (*commit)(struct sv_logstore *s);

    /* Load group as of the last commit into *out (caller-owned struct, zeroed
     * or freed before; filled buffers are owned by *out, freed with
     * sv_logstore_loaded_free, also on error). Entries are the ones after the
     * snapshot, contiguous; every value's checksum and the range's contiguity
     * are verified: SV_LOG_E_CORRUPT otherwise. SV_LOG_E_NOT_FOUND when the
     * group has no committed record. Staged changes are not seen. */
    int (*load)(struct sv_logstore *s, uint64_t group, struct sv_logstore_loaded *out);

    /* Copy up to cap ids of the groups that exist as of the last commit,
     * ascending, into ids (caller-owned); *n gets the total number of groups
     * (may exceed cap). */
    int (*list_groups)(struct sv_logstore *s, uint64_t *ids, size_t cap, size_t *n);
};

SV_LOG_API extern const struct sv_logstore_ops sv_logstore_leveldb_ops;
SV_LOG_API extern const struct sv_logstore_ops sv_logstore_mem_ops;

/* Memory store only (s opened through sv_logstore_mem_ops): drop everything
 * staged and not committed, as a crash would. The store stays usable and
 * keeps every committed change. */
SV_LOG_API void sv_logstore_mem_crash(struct sv_logstore *s);

#ifdef __cplusplus
}
#endif

#endif /* SHARDVAULT_LOGSTORE_H */
