/* Private to svlogstore: the store's structures and what its files share (API: logstore.h). */
#ifndef SHARDVAULT_LOGSTORE_INTERNAL_H
#define SHARDVAULT_LOGSTORE_INTERNAL_H

#include "logstore.h"

#include "sv_codec.h"

#include <leveldb/c.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    FORMAT_VERSION = 2, /* 1: every entry inline; still read, upgraded at open */
    KEY_GROUP_LEN = 10, /* "g" group type */
    KEY_ENTRY_LEN = 18, /* + index */
    KEY_CHUNK_LEN = 14, /* + chunk */
    ENTRY_HDR = 4 + 8 + 1 + 4,
    HS_LEN = 4 + 24,
    SNAP_HDR = 4 + 8 + 8 + 8 + 4 + 4,
    CHUNK_HDR = 4,
    PAYLOAD_REF = 4 + 8 + 4, /* file, offset, payload CRC */
    OP_BYTES = 64            /* accounting overhead of one staged record */
};

_Static_assert((size_t)SV_LOG_PAYLOAD_MIN_BYTES > (size_t)PAYLOAD_REF,
               "an entry's value length tells inline data from a payload reference");

/* Per-group range as seen by the store. The log holds entries first..last
 * (none when first == last + 1). */
struct gmeta {
    bool exists;
    bool corrupt; /* stored metadata failed its checks at open */
    uint64_t first, last;
    uint64_t snap_index;
    uint32_t snap_chunks;
};

/* The memory implementation's committed records of a group. */
struct memg {
    bool has_hs;
    struct sv_raft_hard_state hs;
    bool has_snap;
    struct sv_raft_snapshot snap; /* data malloc'd */
    struct sv_raft_entry *ents;   /* indexes base..base+n-1 */
    uint64_t base;
    size_t n, cap;
    uint64_t res_lo; /* lowest index staged appends may place (UINT64_MAX: none) */
};

struct group {
    uint64_t id;
    struct gmeta c; /* as of the last commit */
    struct gmeta s; /* as staged */
    bool dirty;
    struct memg m;
};

/* A payload file's reference from one group: the highest index of that
 * group whose data the file holds (entries of a group only get higher
 * indexes in later files, except after truncation, where this errs on the
 * side of keeping the file). */
struct pref {
    uint64_t group;
    uint64_t max_index;
};

/* A payload file of the LevelDB store, payload-<no>.log. */
struct pfile {
    uint32_t no;
    int fd;      /* write fd while active or holding unsynced bytes, else -1 */
    bool dirty;  /* written since the last sync */
    bool direct; /* fd is O_DIRECT: appends are SV_LOG_PAYLOAD_ALIGN-aligned and padded */
    struct pref *refs;
    size_t n_refs, cap_refs;
};

/* Where stage() put one entry's payload. */
struct ploc {
    uint32_t no;
    uint64_t off;
    uint32_t crc;
};

enum memop_kind { OP_HS = 1, OP_SNAP_REPLACE, OP_SNAP_SAVE, OP_ENTRIES, OP_COMPACT, OP_DESTROY };

struct memop {
    enum memop_kind kind;
    uint64_t group;
    struct sv_raft_hard_state hs;
    struct sv_raft_snapshot snap; /* data owned until applied */
    struct sv_raft_entry *ents;   /* owned until applied */
    size_t n;
    uint64_t index;
};

struct store {
    struct sv_logstore pub;
    struct group *groups; /* sorted by id */
    size_t n_groups, cap_groups;
    uint64_t *dirty; /* ids of groups staged since the last commit */
    size_t n_dirty, cap_dirty;
    uint64_t pend_bytes, pend_ops;
    /* LevelDB */
    leveldb_t *db;
    leveldb_options_t *dbopts;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts_sync;
    leveldb_writebatch_t *batch;
    uint8_t *scratch;
    size_t scratch_cap;
    /* payload files, ascending by number; the last is the active one (the
     * one appended to) when p_active */
    int dirfd;
    struct pfile *pfiles;
    size_t n_pfiles, cap_pfiles;
    bool p_active;
    bool p_roll;      /* a sync failed: start a new file before the next append */
    bool dir_dirty;   /* a payload file was created since the last directory sync */
    bool reclaim_due; /* compaction, a replacing snapshot or a destruction staged */
    uint32_t p_next;  /* number of the next payload file */
    uint64_t p_off;   /* append offset in the active file */
    struct ploc *locs;
    size_t cap_locs;
    uint8_t *dio; /* SV_LOG_PAYLOAD_ALIGN-aligned staging of one direct append */
    size_t dio_cap;
    /* memory */
    struct memop *mops;
    size_t n_mops, cap_mops;
};

static inline bool is_mem(const struct store *st)
{
    return st->db == NULL;
}

/* ---- encoding: sv_codec.h ---- */

/* Checksum of a value: binds it to its group, its position a (index, chunk
 * number), b (snapshot index for chunks) and its kind, then the bytes after
 * the CRC field (two pieces, so payloads need not be copied to check). */
static inline uint32_t value_crc(uint64_t group, uint64_t a, uint64_t b, uint8_t kind,
                                 const void *p1, size_t n1, const void *p2, size_t n2)
{
    uint8_t h[25];
    sv_put64(h, group);
    sv_put64(h + 8, a);
    sv_put64(h + 16, b);
    h[24] = kind;
    uint32_t crc = sv_crc32c(0, h, sizeof h);
    crc = sv_crc32c(crc, p1, n1);
    if (n2 > 0)
        crc = sv_crc32c(crc, p2, n2);
    return crc;
}

static inline size_t key_group(uint8_t *k, uint64_t group, char type)
{
    k[0] = 'g';
    sv_put64be(k + 1, group);
    k[9] = (uint8_t)type;
    return KEY_GROUP_LEN;
}

static inline size_t key_entry(uint8_t *k, uint64_t group, uint64_t index)
{
    key_group(k, group, 'e');
    sv_put64be(k + KEY_GROUP_LEN, index);
    return KEY_ENTRY_LEN;
}

static inline size_t key_chunk(uint8_t *k, uint64_t group, uint32_t chunk)
{
    key_group(k, group, 'd');
    k[10] = (uint8_t)(chunk >> 24);
    k[11] = (uint8_t)(chunk >> 16);
    k[12] = (uint8_t)(chunk >> 8);
    k[13] = (uint8_t)chunk;
    return KEY_CHUNK_LEN;
}

static inline uint32_t chunks_for(uint64_t len)
{
    return (uint32_t)((len + SV_LOG_SNAP_CHUNK_BYTES - 1) / SV_LOG_SNAP_CHUNK_BYTES);
}

/* Functions shared by the store's files; each one's contract is the comment where it is defined. */

/* ---- logstore.c: errors, groups, staging (the ops both implementations share) ---- */
__attribute__((format(printf, 3, 4))) int sv__logstore_seterr(struct store *st, int rc,
                                                              const char *fmt, ...);
int sv__logstore_dberr(struct store *st, char *err, const char *what);
struct group *sv__logstore_group_find(struct store *st, uint64_t id);
void sv__logstore_meta_empty(struct gmeta *m);
int sv__logstore_group_insert(struct store *st, uint64_t id, struct group **out);
void sv__logstore_settle(struct store *st, bool ok);
int sv__logstore_stage(struct sv_logstore *s, uint64_t group, const struct sv_raft_ready *rd);
int sv__logstore_save_snapshot(struct sv_logstore *s, uint64_t group,
                               const struct sv_raft_snapshot *snap);
int sv__logstore_compact(struct sv_logstore *s, uint64_t group, uint64_t index);
int sv__logstore_destroy_group(struct sv_logstore *s, uint64_t group);
int sv__logstore_list_groups(struct sv_logstore *s, uint64_t *ids, size_t cap, size_t *n);
int sv__logstore_loaded_alloc_entries(struct store *st, struct sv_logstore_loaded *out,
                                      uint64_t count);
void sv__logstore_loaded_finish(struct sv_logstore_loaded *out, bool has_snap);
void sv__logstore_store_free(struct store *st);

/* ---- logstore_mem.c: staged operations of the memory store ---- */
int sv__logstore_mop_push(struct store *st, const struct memop *op);
void sv__logstore_mop_free(struct memop *op);
void sv__logstore_mop_rollback(struct store *st, size_t mark);
int sv__logstore_copy_snapshot(struct store *st, struct sv_raft_snapshot *dst,
                               const struct sv_raft_snapshot *src);
int sv__logstore_copy_entries(struct store *st, struct memop *op, const struct sv_raft_entry *e,
                              size_t n);
int sv__logstore_mem_reserve(struct store *st, struct group *g, uint64_t first, uint64_t hi);

/* ---- logstore_payload.c: payload files ---- */
int sv__logstore_payload_append(struct store *st, uint64_t group, const struct sv_raft_entry *e,
                                struct ploc *loc);
int sv__logstore_payload_sync(struct store *st);
void sv__logstore_payload_reclaim(struct store *st);
int sv__logstore_payload_read(struct store *st, uint64_t group, struct sv_raft_entry *d,
                              const uint8_t *ref, int *fd, uint32_t *fd_no);
int sv__logstore_payload_scan(struct store *st);
int sv__logstore_payload_sweep(struct store *st, const char *dir);

/* ---- logstore_leveldb.c: LevelDB records, written and read ---- */
int sv__logstore_scratch_reserve(struct store *st, size_t n);
bool sv__logstore_entry_value_ok(const uint8_t *p, size_t vlen, bool *is_ref);
void sv__logstore_db_del(struct store *st, const uint8_t *k, size_t klen);
void sv__logstore_db_del_entries(struct store *st, uint64_t group, uint64_t from, uint64_t to);
void sv__logstore_db_put_hs(struct store *st, uint64_t group, const struct sv_raft_hard_state *hs);
int sv__logstore_db_put_entry(struct store *st, uint64_t group, const struct sv_raft_entry *e,
                              const struct ploc *loc);
size_t sv__logstore_snap_scratch(const struct sv_raft_snapshot *snap);
int sv__logstore_db_put_snapshot(struct store *st, uint64_t group,
                                 const struct sv_raft_snapshot *snap, uint32_t old_chunks);
int sv__logstore_db_get(struct store *st, const uint8_t *k, size_t klen, char **v, size_t *vlen);
int sv__logstore_corrupt(struct store *st, uint64_t group, const char *what, uint64_t at);
int sv__logstore_snap_meta_decode(struct store *st, uint64_t group, const uint8_t *v, size_t vlen,
                                  struct sv_raft_snapshot *snap, uint32_t *chunks);

/* ---- logstore_open.c: opening and closing the LevelDB store ---- */
bool sv__logstore_at_entry(leveldb_iterator_t *it, uint64_t group, uint64_t *index);
void sv__logstore_db_close(struct sv_logstore *s);
int sv__logstore_db_open(const char *dir, struct sv_logstore **out, char *errmsg, size_t errlen);

#endif /* SHARDVAULT_LOGSTORE_INTERNAL_H */
