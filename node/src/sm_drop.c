/* Dropping a group this node no longer hosts: its records, then its chunks (see sm.h). */
#define _POSIX_C_SOURCE 200809L
#include "sm_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

enum {
    /* Key bytes after which a batch of deletions is written (synced): a
     * group's keys alone may add up to hundreds of MiB, too much to hold
     * in one batch. */
    DROP_BATCH_BYTES = 4u << 20,
};

_Static_assert((long)DROP_BATCH_BYTES > (long)OKEY_MAX, "a batch holds any key");

static int write_synced(struct sv_sm *sm, leveldb_writebatch_t *wb, uint64_t group, char *errmsg,
                        size_t errlen)
{
    char what[64];
    snprintf(what, sizeof what, "drop of group %" PRIu64, group);
    return sv__sm_write_batch(sm, sm->sync_wopts, wb, what, errmsg, errlen);
}

/* Delete every key under 'S' + group, in synced batches of about
 * DROP_BATCH_BYTES of keys, the applied index in the first. Nothing is
 * written when the group has no key. 0 or -EIO. */
static int drop_records(struct sv_sm *sm, uint64_t group, char *errmsg, size_t errlen)
{
    uint8_t pfx[9] = {'S'}, ak[PFX];
    sv_put64be(pfx + 1, group);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    /* The applied index first: once any record is gone it would claim
     * entries whose changes the records no longer hold. */
    size_t aklen = key_pfx(ak, group, 'a');
    leveldb_writebatch_delete(wb, (const char *)ak, aklen);
    size_t bytes = aklen;
    bool found = false;
    int rc = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(sm->db, sm->ropts);
    for (leveldb_iter_seek(it, (const char *)pfx, sizeof pfx); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        if (klen < sizeof pfx || memcmp(k, pfx, sizeof pfx))
            break;
        found = true;
        if (klen == aklen && !memcmp(k, ak, aklen))
            continue; /* in the batch already */
        leveldb_writebatch_delete(wb, k, klen);
        bytes += klen;
        if (bytes >= DROP_BATCH_BYTES) {
            /* The iterator reads the database as of its creation: the
             * deletions written behind it do not disturb the scan. */
            if ((rc = write_synced(sm, wb, group, errmsg, errlen)))
                break;
            leveldb_writebatch_clear(wb);
            bytes = 0;
        }
    }
    if (sv__sm_iter_end(it) && !rc) {
        rc = -EIO;
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "state machine scan of group %" PRIu64 ": read error", group);
    }
    if (!rc && found && bytes)
        rc = write_synced(sm, wb, group, errmsg, errlen);
    leveldb_writebatch_destroy(wb);
    return rc;
}

/* Why this order (sm.h, Durability in node/README.md): the invariant is that
 * nothing durable claims more than what is durable beneath it. The records
 * are the claims (the applied index claims every entry up to it, an object
 * or upload record its chunks); the chunks claim nothing. So the claims go
 * first and durably, and only then what they claim:
 *   1. the staged changes are committed (sv_sm_commit: their chunks synced,
 *      then their records), so no record of the group waits in memory to be
 *      written after the drop, claiming chunks it deleted;
 *   2. every record of the group is deleted in synced batches, the applied
 *      index in the first. The state machine's writes are usually not
 *      synced, the Raft log redoing what a power cut loses; nothing redoes
 *      a lost deletion, and records back after the chunks' deletions became
 *      durable would claim chunks that are gone. Synced, they cannot be;
 *   3. the chunks are deleted by id prefix in the segment index and synced.
 * A cut during 2 leaves every chunk and the whole group or some records
 * without the applied index: what survives still has its chunks. A cut
 * during 3 leaves no record and some chunks nothing claims, which no record
 * could lead to: hence the prefix scan rather than the records (as DELETE
 * and ABORT use). In both cases a second drop does the rest, and a finished
 * drop done again finds nothing and writes nothing of its own. The reverse
 * order would let a cut leave records, and an applied index, over chunks
 * already gone. */
int sv_sm_drop(struct sv_sm *sm, struct sv_seg_store *seg, uint64_t group, char *errmsg,
               size_t errlen)
{
    if (errmsg && errlen)
        errmsg[0] = 0;
    int rc = sv_sm_commit(sm, seg, errmsg, errlen);
    if (rc)
        return rc;
    if ((rc = drop_records(sm, group, errmsg, errlen)))
        return rc;
    uint8_t pfx[8];
    sv_put64be(pfx, group); /* sv_chunk_id's first 8 bytes */
    rc = sv_seg_delete_prefix(seg, pfx, sizeof pfx, NULL);
    if (rc && errmsg && errlen)
        snprintf(errmsg, errlen, "drop of group %" PRIu64 ": deleting its chunks: %s (%s)", group,
                 sv_seg_strerror(rc), sv_seg_errmsg(seg));
    return rc;
}
