/* Private declarations shared by the state machine's files (sm*.c; the API is sm.h). */
#ifndef SV_SM_INTERNAL_H
#define SV_SM_INTERNAL_H

#include "sm.h"
#include "sv_codec.h"

#include <leveldb/c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    OBJ_LEN = 8 * 4 + 4 + 1 + 32 + 8 + 8,
    OBJ_LEN_NO_INDEX = OBJ_LEN - 16, /* a record written before index and epoch were kept */
    PFX = 1 + 8 + 1,                 /* 'S' group tag */
    OKEY_MAX = PFX + 8 + SV_SM_NAME_MAX + 1 + SV_SM_NAME_MAX,
};

/* A key changed by an entry applied since the last sv_sm_commit. */
struct staged {
    uint64_t hash;
    uint32_t klen, vlen, vcap;
    bool deleted;
    uint8_t *kv; /* klen key bytes, then vcap bytes of room for the value */
};

struct sv_sm {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts;      /* not synced */
    leveldb_writeoptions_t *sync_wopts; /* synced */
    /* The staged changes, open addressing (load <= 1/2), used by the apply
     * thread only: applying reads through them, sv_sm_commit writes them. */
    struct staged *st;
    uint32_t st_cap, st_n;
    /* Chunks the staged records stop claiming (SV_SEG_ID_BYTES each): deleted
     * from the segment store only once those records are written (sm.h, the
     * invariant), each with its 'X' release record staged beside them. */
    uint8_t *rel; /* chunk ids released by the records being committed */
    uint32_t n_rel, rel_cap;
    uint8_t *done; /* ... deleted by the last release, its release records kept until a
                      segment sync makes the deletions durable */
    uint32_t n_done, done_cap;
};

/* A frozen view of the committed state (sv_sm_view). */
struct sv_sm_view {
    const leveldb_snapshot_t *snap;
};

/* An upload record, decoded; bitmap malloc'd. */
struct upload {
    uint64_t tenant, mtime_ms;
    uint8_t bucket[SV_SM_NAME_MAX], key[SV_SM_NAME_MAX];
    uint16_t blen, klen;
    uint32_t nbits;
    uint8_t *bitmap;
};

/* ---- encoding (sm.h has the layout) ------------------------------------- */

static inline void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Release record 'X' + chunk id (outside every group's 'S' range: in no
 * snapshot image, redone at open by sv_sm_redo_releases). */
enum { RKEY = 1 + SV_SEG_ID_BYTES };

static inline size_t key_pfx(uint8_t *k, uint64_t group, char tag)
{
    k[0] = 'S';
    sv_put64be(k + 1, group);
    k[9] = (uint8_t)tag;
    return PFX;
}

static inline size_t key_obj(uint8_t *k, uint64_t group, uint64_t tenant, const uint8_t *b,
                             size_t blen, const uint8_t *key, size_t klen)
{
    size_t n = key_pfx(k, group, 'o');
    sv_put64be(k + n, tenant), n += 8;
    memcpy(k + n, b, blen), n += blen;
    k[n++] = 0;
    if (klen)
        memcpy(k + n, key, klen);
    return n + klen;
}

static inline size_t key_upload(uint8_t *k, uint64_t group, uint64_t upload)
{
    size_t n = key_pfx(k, group, 'u');
    sv_put64be(k + n, upload);
    return n + 8;
}

static inline size_t key_session(uint8_t *k, uint64_t group, uint64_t session, uint64_t seq)
{
    size_t n = key_pfx(k, group, 's');
    sv_put64be(k + n, session);
    sv_put64be(k + n + 8, seq);
    return n + 16;
}

/* ---- records and the staged changes (sm.c) ------------------------------ */

/* A shipping state record ('d', v NULL: none) into *st. 0 or -EIO. */
int sv__sm_ship_decode(const char *v, size_t vlen, struct sv_sm_ship *st);

void sv__sm_obj_encode(const struct sv_obj *o, uint8_t *v);
/* 0 or -EIO (not an object record). */
int sv__sm_obj_decode(const uint8_t *v, size_t len, struct sv_obj *o);
/* Decode an upload record into *u (u->bitmap malloc'd): 0, -EIO or -ENOMEM. */
int sv__sm_upload_decode(const uint8_t *v, size_t len, struct upload *u);
/* Encode u into a malloc'd value (*len bytes); NULL when out of memory. */
uint8_t *sv__sm_upload_encode(const struct upload *u, size_t *len);

/* Stage key := v (vlen bytes), or its deletion when v is NULL: 0 or -ENOMEM. */
int sv__sm_stage(struct sv_sm *sm, const uint8_t *k, size_t klen, const void *v, size_t vlen);
/* Chunk id (SV_SEG_ID_BYTES, copied) is no longer claimed by the staged
 * records: stage its release record and note it for sv_sm_release. 0 or
 * -ENOMEM. */
int sv__sm_release(struct sv_sm *sm, const uint8_t *id);
/* Forget the staged changes, adding each to wb first when wb is not NULL
 * (NULL: the releases noted are forgotten too). */
void sv__sm_staged_drain(struct sv_sm *sm, leveldb_writebatch_t *wb);
/* Get key; *v malloc'd (free with free()) or NULL when absent. With staged,
 * the changes not yet committed count (the apply thread only). 0, -ENOMEM
 * or -EIO. */
int sv__sm_db_get_at(struct sv_sm *sm, bool staged, const uint8_t *k, size_t klen, char **v,
                     size_t *vlen);
/* Object record of (tenant, bucket, key) in group, staged changes counting
 * or not: 0, -ENOENT, -EIO. */
int sv__sm_obj_get(struct sv_sm *sm, bool staged, uint64_t group, uint64_t tenant,
                   const uint8_t *bucket, size_t blen, const uint8_t *key, size_t klen,
                   struct sv_obj *o);
/* An upload's record as the apply thread sees it (staged changes count):
 * 0, -ENOENT, -ENOMEM, -EIO; u->bitmap malloc'd on success. */
int sv__sm_get_upload(struct sv_sm *sm, uint64_t group, uint64_t id, struct upload *u);
/* Write wb with wopts: 0 or -EIO with errmsg (may be NULL) set; what names
 * the write in it. */
int sv__sm_write_batch(struct sv_sm *sm, const leveldb_writeoptions_t *wopts,
                       leveldb_writebatch_t *wb, const char *what, char *errmsg, size_t errlen);
/* Destroy it: 0, or -EIO (logged) if it stopped on a read error rather than
 * at the end. */
int sv__sm_iter_end(leveldb_iterator_t *it);

#endif
