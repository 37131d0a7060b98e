/* The shard state machine: what a committed Raft entry of a shard does to the
 * node's object metadata (LevelDB) and chunk store (svsegstore).
 *
 * Commands (the data of a NORMAL Raft entry) are built by the leader from a
 * client request; every replica applies them in log order with the same
 * result. Chunk payloads in commands are already sealed (crypto.h) by the
 * leader, so a command never carries plaintext.
 *   PUT     a whole small object in one entry (0 or 1 chunk)
 *   BEGIN   open an upload (id chosen by the leader: term << 32 | counter,
 *           unique in the shard since a term has one leader)
 *   CHUNK   one sealed chunk of an open upload (idempotent per index)
 *   COMMIT  make an upload the key's new version if if_version allows and
 *           every chunk 0..n-1 arrived; the old version's chunks are deleted
 *   DELETE  remove the live version (a tombstone keeps the version number,
 *           so versions grow per key across deletes)
 *   ABORT   drop an upload and its chunks (expired uploads)
 *   MAP     (meta group 0) record the cluster map (config.h's encoding)
 * PUT, COMMIT and DELETE carry (session, seq): a repeated pair returns the
 * stored result without applying again (exactly-once, Raft thesis §6.3);
 * results of seqs below ack_below are forgotten.
 *
 * LevelDB layout, all keys start with 'S' + group (u64 BE):
 *   'a'                              -> applied index (u64 LE)
 *   'o' tenant(BE) bucket 0x00 key   -> object: version, size, mtime_ms,
 *                                       upload (u64 LE), n_chunks (u32),
 *                                       deleted (u8), sha256[32], the index
 *                                       and site epoch that wrote it (u64
 *                                       LE each; absent in records written
 *                                       before they were kept)
 *   'u' upload(BE)                   -> upload: tenant, mtime_ms (u64: of
 *                                       BEGIN, then of the last chunk),
 *                                       bucket and key (u16 length each),
 *                                       chunk bitmap length (u32) and bitmap
 *   'm'                              -> group 0 only: the cluster map
 *   's' session(BE) 0(u64)           -> the session's recent results: count
 *                                       (u32), then per write seq (u64),
 *                                       status (u32), version (u64), by seq
 *   'd'                              -> a standby's shipping state (SHIP,
 *                                       SEED): the cursor, closed time,
 *                                       primary commit, the primary's site
 *                                       epoch, the open seed's index and
 *                                       next piece, then (absent in older
 *                                       records) the applied primary index,
 *                                       release, held entries and bytes,
 *                                       cut epoch (u64 LE each); in
 *                                       snapshot images
 *   'h' index(BE)                    -> a standby's held entry (SHIP): the
 *                                       primary's command at that index,
 *                                       committed here, run once the
 *                                       release passes its stamp; a CHUNK's
 *                                       without its bytes (put in the
 *                                       segment store when held, under its
 *                                       chunk id, unless that id was taken;
 *                                       deleted if the cut drops it, copied
 *                                       from a replica if a snapshot brought
 *                                       the record without them)
 *   'D'                              -> a primary's DR_MARK: its standby's
 *                                       cursor (u64 LE)
 *   'c'                              -> chunk copy pending: the applied index
 *                                       it was set at (u64 LE); this node's
 *                                       own business, in no snapshot image
 * and, outside the groups' ranges:
 *   'X' chunk id                     -> (empty) a release: the chunk is no
 *                                       longer claimed, its deletion from
 *                                       the segment store may be pending
 * Each entry's changes and the new applied index go in ONE write batch, so
 * a crash leaves either all or none of an entry applied.
 *
 * Durability invariant: nothing durable claims more than what is durable
 * beneath it. The applied index is the state machine's claim that every
 * entry up to it is in the metadata AND in the segment store; at start the
 * node applies only the entries above it; an object or upload record claims
 * its chunks. So sv_sm_commit makes the chunk WRITES of the staged entries
 * durable (sv_seg_sync) BEFORE it writes their records, and their chunk
 * DELETES only AFTER (sv_sm_release): a chunk deleted first would still be
 * claimed by the records a crash leaves, and a stale read, a CHUNK_FETCH or
 * copy.c would find it missing until the log is applied again (jepsen
 * register-kill: "no healthy copy", every replica having deleted that old
 * version). A release record ('X', in the records' batch) marks each such
 * chunk until it is deleted; sv_sm_redo_releases deletes what a crash left
 * at the next start. Every records' write is synced, so LevelDB keeps
 * every commit it acknowledged, in order. It used to be synced only when it
 * carried release records, and it-powercut lost acknowledged writes: LevelDB
 * switches to a new log file when its memtable fills without syncing the old
 * one, and a sync syncs only the current file; a power cut before the old
 * memtable reached a table file then kept a synced batch of the new log and
 * lost the unsynced end of the old one, under an applied index past it. The
 * chunk deletions are not synced (the next commit's segment sync carries
 * them, and only after it do their release records go, so a deletion lost to
 * a power cut is done again at the next start); neither is the deletion of
 * the release records (one that survives costs a second deletion of
 * nothing). The entries after the applied index are applied again from the
 * Raft log (the write-ahead log): a chunk put again replaces its copy, a
 * chunk deleted again is already gone. It is NOT opened with paranoid
 * checks: a power cut tears the last record of its log, and paranoid checks report that as
 * corruption and refuse to open (it-powercut found a node that could not start so); without them
 * the torn record is dropped. Chunks live in the segment store under sv_chunk_id(group, upload,
 * index). Thread safety: LevelDB is thread-safe; the caller serialises use of the segment store.
 */
#ifndef SV_SM_H
#define SV_SM_H

#include "crypto.h"
#include "segstore.h"

#include <shardvault/raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sv_cmd_type {
    SV_CMD_PUT = 1,
    SV_CMD_BEGIN = 2,
    SV_CMD_CHUNK = 3,
    SV_CMD_COMMIT = 4,
    SV_CMD_DELETE = 5,
    SV_CMD_ABORT = 6, /* remove an upload; when mtime_ms != 0, only if idle since then */
    SV_CMD_MAP = 7,   /* meta group only: data is the encoded cluster map */
    /* A standby site's shard: entries of the primary site's shard, in its log
     * order (dr.c). upload = the primary index the batch follows, size = the
     * primary's commit index, mtime_ms = the closed time (0: none; the batch
     * reaches every entry the primary committed before it), n_chunks = the
     * entries in data, data = sv_ship_entry records (sv_ship_next). Applied
     * exactly once per primary index: entries at or below the group's cursor
     * are skipped, a batch that would leave a gap is refused whole
     * (VERSION_CONFLICT, version = the cursor); each command inside is
     * applied as the primary applied it, at the primary's index.
     * seq = the release: the site's frontier as the standby's meta leader
     * last knew it (0: none). A command runs when its stamp (mtime_ms) is
     * below the release and nothing before it is held; otherwise it is
     * held ('h') until a later SHIP's release passes it (the result's
     * upload is 1 when a held chunk that ran is not on this replica: the
     * copy marker is set). With chunk = 1
     * (a cut: the promoted site's cut, session = its new site epoch) the
     * held commands below the release run, the rest are dropped, and the
     * shard is cut at that epoch; n_chunks is then 0. */
    SV_CMD_SHIP = 8,
    /* A primary's shard: upload = the cursor its standby reached. Every
     * replica keeps its log from there on (dr.c), so that a new leader can
     * still answer the standby. Skipped inside a SHIP. */
    SV_CMD_DR_MARK = 9,
    /* A standby site's shard, re-seeded from an image of the primary's
     * (dr.c: its log no longer holds the standby's cursor, or the site
     * follows a new primary). upload = the primary index of the image,
     * size = the primary's commit index, mtime_ms = the image's closed
     * time, session = the site epoch of the primary it follows, chunk = the
     * piece's number, n_chunks = 1 on the last piece, data = records of the
     * image (sv_sm_snapshot's format, this group's keys; a primary's own
     * 'd' and 'D' are skipped). Piece 0 removes every record of the group
     * (their chunks released) and starts the seed; each next piece must
     * follow (else VERSION_CONFLICT: the standby starts again); the last
     * sets the cursor to upload and the copy marker (the chunks come from
     * the other replicas or the primary site, copy.c). SHIP is refused
     * while a seed is open. */
    SV_CMD_SEED = 10,
};

enum {
    SV_SM_NAME_MAX = 1024,              /* bucket or key bytes */
    SV_SM_CHUNKS_MAX = 1u << 20,        /* chunks in one object: 1 TiB */
    SV_SM_DATA_MAX = (1u << 20) + 64,   /* sealed chunk in a command */
    SV_SM_SHIP_MAX = (1u << 20) + 8192, /* entries in one SHIP command */
    SV_SM_RESULTS_PER_SESSION = 256,    /* stored results per session, oldest dropped */
};

/* A decoded command; byte pointers point into the encoded buffer. */
struct sv_cmd {
    uint8_t type;
    uint64_t tenant;
    const uint8_t *bucket;
    uint16_t bucket_len;
    const uint8_t *key;
    uint16_t key_len;
    uint64_t upload;
    uint32_t chunk;
    uint32_t n_chunks;
    bool has_if_version;
    uint64_t if_version;
    uint64_t session, seq, ack_below;
    uint64_t mtime_ms;
    uint64_t size;
    uint8_t sha256[32];
    uint64_t epoch; /* the site epoch of the primary whose leader made it (0: none) */
    const uint8_t *data;
    uint32_t data_len;
};

/* Encoded size, and encoding into out (that many bytes, caller-owned). With
 * c->data NULL and c->data_len > 0, the last data_len bytes of out are left
 * for the caller to fill (the leader seals a chunk straight into them). */
size_t sv_cmd_encoded_len(const struct sv_cmd *c);
void sv_cmd_encode(const struct sv_cmd *c, uint8_t *out);
/* Decode p[0..len) (borrowed; *c points into it). 0 or -EINVAL. */
int sv_cmd_decode(const uint8_t *p, size_t len, struct sv_cmd *c);

/* One shipped entry in a SHIP command's data: index (u64 LE), term (u64
 * LE), type (u8), len (u32 LE), then the entry's bytes. */
enum { SV_SHIP_ENTRY_HEAD = 8 + 8 + 1 + 4 };
/* Append e at out (SV_SHIP_ENTRY_HEAD + e->len bytes); returns that size. */
size_t sv_ship_put(uint8_t *out, const struct sv_raft_entry *e);
/* The entry at *off of data[0..len) into *e (e->data points into data),
 * *off moved past it: 1, 0 at the end, -EINVAL when malformed. */
int sv_ship_next(const uint8_t *data, size_t len, size_t *off, struct sv_raft_entry *e);

/* A standby shard's shipping state (SHIP commands keep it). */
struct sv_sm_ship {
    uint64_t cursor;    /* the last primary index committed here (applied or held) */
    uint64_t closed_ms; /* every entry the primary committed before this is committed here */
    uint64_t commit;    /* the primary's commit index, as last shipped */
    uint64_t mark;      /* a primary: its standby's cursor, as DR_MARK recorded it */
    uint64_t epoch;     /* the primary site's epoch the cursor counts in (0: none yet) */
    uint64_t seed;      /* a seed open (SEED): the image's primary index; 0: none */
    uint64_t seed_next; /* ... the number of the piece it expects next */
    /* The consistent cut (dr.c): an entry runs once the site's release
     * passed its stamp (the primary leader's HLC when it was proposed);
     * until then it is held, and so is every entry after it. */
    uint64_t applied;    /* the last primary index run: every entry up to it ran */
    uint64_t release_ms; /* entries stamped before it run */
    uint64_t held;       /* entries committed here, not run yet ('h' records) */
    uint64_t held_bytes; /* ... their size */
    uint64_t cut_epoch;  /* the site epoch whose promotion cut the shard (0: none) */
};
struct sv_sm;
/* Group's shipping state (zeros when nothing was shipped). 0 or -EIO. */
int sv_sm_ship_state(struct sv_sm *sm, uint64_t group, struct sv_sm_ship *out);

/* Chunk id of chunk `index` of `upload` in `group`: group (u64 BE), upload
 * (u64 BE), index (u32 BE), zeros. */
void sv_chunk_id(uint64_t group, uint64_t upload, uint32_t index, uint8_t id[SV_SEG_ID_BYTES]);
/* Object id bound into a chunk's ciphertext: the first 16 bytes of
 * SHA-256(tenant LE, bucket, 0x00, key). */
void sv_object_id(uint64_t tenant, const uint8_t *bucket, size_t blen, const uint8_t *key,
                  size_t klen, uint8_t oid[16]);

struct sv_obj {
    uint64_t version, size, mtime_ms, upload;
    uint64_t index; /* the Raft index (the primary's, when shipped) that wrote it; 0: unknown */
    uint64_t epoch; /* the site epoch of the primary whose command wrote it; 0: unknown */
    uint32_t n_chunks;
    bool deleted;
    uint8_t sha256[32];
};

struct sv_sm_result {
    int status;       /* enum sv_status (proto.h) */
    uint64_t version; /* PUT/COMMIT: new version; DELETE: deleted version */
    uint64_t upload;  /* BEGIN: the upload id */
    uint64_t stamp;   /* the command's stamp (mtime_ms): the node's HLC keeps up with it */
};

struct sv_sm;
struct sv_sm_view;

/* Open (creating) the state machine database in dir. */
int sv_sm_open(const char *dir, struct sv_sm **out, char *errmsg, size_t errlen);
void sv_sm_close(struct sv_sm *sm);

/* Applied index of group (0 when none). 0 or -EIO. */
int sv_sm_applied(struct sv_sm *sm, uint64_t group, uint64_t *index);

/* Apply committed entry e of group. NOOP and CONF entries only advance the
 * applied index. The entry's changes are staged in memory: later entries see
 * them, sv_sm_commit writes them, the reads below (sv_sm_get, sv_sm_list...)
 * do not see them before. The domain result goes to *res; the return value
 * is 0 or an I/O error (LevelDB or segment store failure; -ENOSPC when a disk
 * is full, -ENOMEM), after which nothing staged since the last commit is kept
 * and the node must apply the entries again before committing anything.
 * seg is borrowed. Staging and committing belong to one thread at a time. */
int sv_sm_apply(struct sv_sm *sm, struct sv_seg_store *seg, uint64_t group,
                const struct sv_raft_entry *e, struct sv_sm_result *res, char *errmsg,
                size_t errlen);

/* Make the staged changes of every entry applied since the last commit
 * durable, in the order of the invariant above: sv_sm_commit_records, then
 * sv_sm_release. sv_sm_commit_records: first the segment store
 * (sv_seg_sync: their chunk writes and any queued batch records), then one
 * LevelDB batch with the records, their release records and the new applied
 * index, synced. 0 (also when nothing
 * is staged: no sync then), the
 * segment store's error (-ENOSPC: a full disk; nothing was committed, the
 * entries may be applied again once there is room), or -EIO (LevelDB; it
 * refuses writes after a failed one, so the caller must stop); errmsg (may
 * be NULL) says why. On failure nothing staged is kept: the entries must be
 * applied again (from the Raft log) before anything else is committed. seg
 * is borrowed. */
int sv_sm_commit(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen);
int sv_sm_commit_records(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen);

/* Delete from seg the chunks released by the records sv_sm_commit_records
 * wrote (not synced: the next commit's segment sync carries the deletions),
 * and the release records of the release before (whose deletions that
 * commit's sync made durable; not synced). 0, or the
 * segment store's error or -EIO (never -ENOSPC: the records are written, the
 * entries cannot be applied again; the caller stops), the release records
 * then left for sv_sm_redo_releases. seg is borrowed. */
int sv_sm_release(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen);

/* At start, before anything reads or applies: delete the chunks whose
 * release records a crash left (between sv_sm_commit_records and
 * sv_sm_release), as sv_sm_release. 0 or its errors. seg is borrowed. */
int sv_sm_redo_releases(struct sv_sm *sm, struct sv_seg_store *seg, char *errmsg, size_t errlen);

/* Forget the staged changes (the caller gave up on the entries, e.g. their
 * chunk writes failed; it applies them again later). */
void sv_sm_discard(struct sv_sm *sm);

/* The cluster map recorded in group (by a MAP command) into a new malloc'd
 * buffer: 0, -ENOENT (none yet), -ENOMEM or -EIO. */
int sv_sm_map(struct sv_sm *sm, uint64_t group, uint8_t **out, size_t *len);

/* Object record of (tenant, bucket, key) in group: 0, -ENOENT (never
 * written; a tombstone is returned with deleted = true), -EIO. */
int sv_sm_get(struct sv_sm *sm, uint64_t group, uint64_t tenant, const uint8_t *bucket, size_t blen,
              const uint8_t *key, size_t klen, struct sv_obj *o);

/* Live objects of bucket in group whose key starts with prefix and sorts
 * after start_after (may be empty), ascending, at most limit: cb per
 * object (key borrowed for the call). *more is set when more follow. */
typedef void (*sv_sm_list_cb)(void *arg, const uint8_t *key, size_t klen, const struct sv_obj *o);
int sv_sm_list(struct sv_sm *sm, uint64_t group, uint64_t tenant, const uint8_t *bucket,
               size_t blen, const uint8_t *prefix, size_t plen, const uint8_t *start_after,
               size_t salen, uint32_t limit, bool *more, sv_sm_list_cb cb, void *arg);

/* Object records of group (live versions and tombstones, every tenant
 * and bucket) written by a command of site epoch epoch at an index above
 * after: what a site wrote as the primary past a cut (dr.c's divergence
 * ledger; the records it was shipped carry another epoch, and indexes of
 * another log). From the record after the object key
 * start (its bytes after the group's 'o' tag: tenant BE, bucket, 0, key;
 * empty: the first), in key order, at most limit; cb gets each (key
 * borrowed for the call), *more is set when more may follow. Records
 * written before the index was kept (index 0) never count. 0, -EINVAL or
 * -EIO. */
typedef void (*sv_sm_diverged_cb)(void *arg, const uint8_t *okey, size_t klen,
                                  const struct sv_obj *o);
int sv_sm_diverged(struct sv_sm *sm, uint64_t group, uint64_t epoch, uint64_t after,
                   const uint8_t *start, size_t slen, uint32_t limit, bool *more,
                   sv_sm_diverged_cb cb, void *arg);

/* Uploads of group idle since before before_ms (no BEGIN or chunk applied
 * since): up to cap ids into ids, *n set. */
int sv_sm_expired_uploads(struct sv_sm *sm, uint64_t group, uint64_t before_ms, uint64_t *ids,
                          size_t cap, size_t *n);

/* Image of group's state (every record but the applied index) as committed
 * when view was made (NULL: now) into a new malloc'd buffer: repeated (u32
 * key length, key, u32 value length, value). 0, -ENOMEM, -EFBIG (over max
 * bytes), -EIO. */
int sv_sm_snapshot(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group, size_t max,
                   uint8_t **out, size_t *len);

/* A frozen view of the committed state (a LevelDB snapshot): an image made
 * from it later is exactly the state at the time of sv_sm_view, whatever
 * was committed meanwhile. NULL when out of memory. Any thread. */
struct sv_sm_view *sv_sm_view(struct sv_sm *sm);
void sv_sm_view_release(struct sv_sm *sm, struct sv_sm_view *v);
/* The digest of group's objects and open uploads as of view (NULL: now):
 * SHA-256 over each 'o' and 'u' record's key and value, in key order
 * (what two sites that applied the same entries hold alike: shipped
 * records keep the primary's index, epoch and upload ids). *applied and
 * *cursor (may be NULL) get the applied index and, for a standby, the last
 * primary index that ran (held entries are not in the records) in that
 * view. 0, -ENOMEM or -EIO. Any thread. */
int sv_sm_digest(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group, uint8_t out[32],
                 uint64_t *applied, uint64_t *cursor);

/* group's applied index as of view (0 when none). 0 or -EIO. */
int sv_sm_view_applied(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group,
                       uint64_t *index);

/* Replace group's state by an image from sv_sm_snapshot and set its applied
 * index and the copy marker (at index: the image's records may claim chunks
 * this node lacks), in one synced write (commits the staged changes first,
 * with seg as sv_sm_commit). 0, -EINVAL (malformed image), -ENOSPC (segment store),
 * -EIO. */
int sv_sm_install(struct sv_sm *sm, struct sv_seg_store *seg, uint64_t group, uint64_t index,
                  const uint8_t *img, size_t len);

/* Remove group from this node (its replica moved elsewhere): every record
 * under 'S' + group (applied index, objects and tombstones, uploads,
 * sessions, the map, the copy marker) and every chunk in seg whose id starts with the group
 * (sv_chunk_id), whatever record named it or not. The staged changes are
 * committed first (as sv_sm_commit, with seg), so that none of the group's
 * can be written after it. Then the records go, in synced LevelDB batches,
 * the applied index in the first; only then the chunks, found by id prefix
 * in the segment index (sv_seg_delete_prefix), removed and synced. Top
 * down, as the invariant above needs: records claim chunks, chunks claim
 * nothing. A crash while the records go leaves some records and every
 * chunk (no claim outruns the disk); a crash after leaves no record and
 * some unclaimed chunks, which only the id prefix finds. Either way, a
 * second call finishes the drop, and calling it again changes nothing:
 * it is idempotent, and a group with nothing left costs a scan and writes
 * nothing of its own. After 0, sv_sm_applied gives 0 for group and sv_sm_get finds
 * nothing in it; other groups are untouched. Until a call returns 0 the
 * group must not be hosted again (what is left of it is no state to apply
 * entries on). 0, -EIO (LevelDB), or the segment store's code (its commit
 * or its removals), with errmsg (may be NULL) saying which. seg is
 * borrowed; the apply thread only (it commits the staged changes), and it
 * holds seg for as long as the removals take. */
int sv_sm_drop(struct sv_sm *sm, struct sv_seg_store *seg, uint64_t group, char *errmsg,
               size_t errlen);

/* ---- the chunks a group's records claim (sm_chunks.c) ------------------- */

enum {
    /* An object record's key: 'S' group tag, tenant, bucket, 0, key. */
    SV_SM_CURSOR_KEY_MAX = 1 + 8 + 1 + 8 + SV_SM_NAME_MAX + 1 + SV_SM_NAME_MAX,
};

/* One chunk a record claims: its id in the segment store and the binding a
 * copy fetched from another replica must authenticate under. */
struct sv_sm_chunk {
    uint8_t id[SV_SEG_ID_BYTES];
    struct sv_crypto_chunk_ad ad;
    /* Plaintext bytes, estimated: the object's size over its chunk count
     * (exact but for the last chunk); 0 when unknown (an open upload). */
    uint64_t bytes;
};

/* Where an enumeration resumes: zeroed, the start; sv_sm_chunks advances
 * it. Plain data, owned by the caller (about 2 KiB). */
struct sv_sm_cursor {
    uint32_t klen;  /* 0: from the first record */
    uint32_t index; /* next chunk index of the record at key */
    uint8_t key[SV_SM_CURSOR_KEY_MAX];
};

/* The chunk id and associated data of chunk index of (tenant, bucket, key)
 * written as upload (the object's version in its chunks' binding): what
 * objects.c seals and reads with, and what sv_sm_chunks reports. */
void sv_sm_chunk_ref(uint64_t group, uint64_t tenant, const uint8_t *bucket, size_t blen,
                     const uint8_t *key, size_t klen, uint64_t upload, uint32_t index,
                     uint8_t id[SV_SEG_ID_BYTES], struct sv_crypto_chunk_ad *ad);

/* Up to limit chunks that group's committed records claim (as of view, or
 * now when view is NULL), from *cur on: chunks 0..n_chunks-1 of every live
 * object version (tombstones claim none), then the received chunks of every
 * open upload (its bitmap), in key order. cb gets each (borrowed for the
 * call); *cur is advanced past them, *more set when the enumeration is not
 * done. A record changed between two calls is seen as it is then (a
 * caller that needs one point in time passes one view to every call).
 * 0, -EINVAL (limit 0), -ENOMEM or -EIO. Any thread. */
typedef void (*sv_sm_chunk_cb)(void *arg, const struct sv_sm_chunk *c);
int sv_sm_chunks(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group,
                 struct sv_sm_cursor *cur, uint32_t limit, bool *more, sv_sm_chunk_cb cb,
                 void *arg);

/* The copy marker: set when group's records may claim chunks this node
 * does not hold (a snapshot installed, a replica created empty to join),
 * cleared once a full pass found every claimed chunk here (copy.c).
 * *since (may be NULL) gets the applied index it was set at. As of view
 * (NULL: now). 0 or -EIO. Any thread. */
int sv_sm_copy_pending(struct sv_sm *sm, const struct sv_sm_view *view, uint64_t group,
                       bool *pending, uint64_t *since);
/* Set the marker of group at since, synced. 0 or -EIO. */
int sv_sm_copy_mark(struct sv_sm *sm, uint64_t group, uint64_t since);
/* Clear the marker of group, synced, if it is still the one set at since
 * (a snapshot installed meanwhile set it again: that one stays). 0 when
 * cleared or already clear, -ESTALE when set at another index, -EIO. The
 * caller serialises it with sv_sm_install (both under the node's seg_mu). */
int sv_sm_copy_done(struct sv_sm *sm, uint64_t group, uint64_t since);

#endif
