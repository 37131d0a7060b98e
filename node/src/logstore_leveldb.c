/* ShardVault Raft log storage on LevelDB: records, commit, load (sv_logstore_leveldb_ops). */
#define _GNU_SOURCE
#include "logstore_internal.h"

#include "sv_assert.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- LevelDB records ---- */

int sv__logstore_scratch_reserve(struct store *st, size_t n)
{
    if (n <= st->scratch_cap)
        return 0;
    uint8_t *p = realloc(st->scratch, n);
    if (p == NULL)
        return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "scratch of %zu bytes", n);
    st->scratch = p;
    st->scratch_cap = n;
    return 0;
}

/* An entry value holds its data inline (ENTRY_HDR + len bytes) or, for an
 * entry of at least SV_LOG_PAYLOAD_MIN_BYTES, a payload reference; *is_ref
 * says which. False for any other length. */
bool sv__logstore_entry_value_ok(const uint8_t *p, size_t vlen, bool *is_ref)
{
    if (vlen < ENTRY_HDR)
        return false;
    uint32_t len = sv_get32(p + 13);
    *is_ref = len >= SV_LOG_PAYLOAD_MIN_BYTES && vlen == ENTRY_HDR + PAYLOAD_REF;
    return *is_ref || vlen == ENTRY_HDR + (size_t)len;
}

static void db_put(struct store *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    leveldb_writebatch_put(st->batch, (const char *)k, klen, (const char *)v, vlen);
}

void sv__logstore_db_del(struct store *st, const uint8_t *k, size_t klen)
{
    leveldb_writebatch_delete(st->batch, (const char *)k, klen);
}

void sv__logstore_db_del_entries(struct store *st, uint64_t group, uint64_t from, uint64_t to)
{
    uint8_t k[KEY_ENTRY_LEN];
    for (uint64_t i = from; i <= to; i++) {
        sv__logstore_db_del(st, k, key_entry(k, group, i));
        if (i == UINT64_MAX)
            break;
    }
}

void sv__logstore_db_put_hs(struct store *st, uint64_t group, const struct sv_raft_hard_state *hs)
{
    uint8_t k[KEY_GROUP_LEN], v[HS_LEN];
    sv_put64(v + 4, hs->term);
    sv_put64(v + 12, hs->vote);
    sv_put64(v + 20, hs->commit);
    sv_put32(v, value_crc(group, 0, 0, 'h', v + 4, HS_LEN - 4, NULL, 0));
    db_put(st, k, key_group(k, group, 'h'), v, sizeof v);
}

/* Entry e with its data inline, or (loc) a reference to its payload. */
int sv__logstore_db_put_entry(struct store *st, uint64_t group, const struct sv_raft_entry *e,
                              const struct ploc *loc)
{
    size_t body = loc != NULL ? PAYLOAD_REF : (size_t)e->len;
    int rc = sv__logstore_scratch_reserve(st, ENTRY_HDR + body);
    if (rc != 0)
        return rc;
    uint8_t *v = st->scratch, k[KEY_ENTRY_LEN];
    sv_put64(v + 4, e->term);
    v[12] = e->type;
    sv_put32(v + 13, e->len);
    if (loc != NULL) {
        sv_put32(v + ENTRY_HDR, loc->no);
        sv_put64(v + ENTRY_HDR + 4, loc->off);
        sv_put32(v + ENTRY_HDR + 12, loc->crc);
    } else if (e->len > 0) {
        memcpy(v + ENTRY_HDR, e->data, e->len);
    }
    sv_put32(v, value_crc(group, e->index, 0, 'e', v + 4, ENTRY_HDR - 4 + body, NULL, 0));
    db_put(st, k, key_entry(k, group, e->index), v, ENTRY_HDR + body);
    return 0;
}

/* Scratch bytes db_put_snapshot needs. */
size_t sv__logstore_snap_scratch(const struct sv_raft_snapshot *snap)
{
    size_t meta = SNAP_HDR + sv_raft_conf_encoded_len(&snap->meta.conf);
    return meta > CHUNK_HDR + SV_LOG_SNAP_CHUNK_BYTES ? meta : CHUNK_HDR + SV_LOG_SNAP_CHUNK_BYTES;
}

/* Snapshot meta and data chunks; chunks of a previous, longer snapshot are
 * deleted (their CRCs name the old index, so a leftover would be caught). */
int sv__logstore_db_put_snapshot(struct store *st, uint64_t group,
                                 const struct sv_raft_snapshot *snap, uint32_t old_chunks)
{
    size_t clen = sv_raft_conf_encoded_len(&snap->meta.conf);
    uint32_t chunks = chunks_for(snap->len);
    int rc = sv__logstore_scratch_reserve(st, sv__logstore_snap_scratch(snap));
    if (rc != 0)
        return rc;
    uint8_t *v = st->scratch, k[KEY_CHUNK_LEN];
    sv_put64(v + 4, snap->meta.index);
    sv_put64(v + 12, snap->meta.term);
    sv_put64(v + 20, snap->len);
    sv_put32(v + 28, chunks);
    sv_put32(v + 32, (uint32_t)clen);
    sv_raft_conf_encode(&snap->meta.conf, v + SNAP_HDR);
    sv_put32(v, value_crc(group, 0, 0, 's', v + 4, SNAP_HDR - 4 + clen, NULL, 0));
    db_put(st, k, key_group(k, group, 's'), v, SNAP_HDR + clen);
    for (uint32_t c = 0; c < chunks; c++) {
        uint64_t off = (uint64_t)c * SV_LOG_SNAP_CHUNK_BYTES;
        size_t n = (size_t)(snap->len - off < SV_LOG_SNAP_CHUNK_BYTES ? snap->len - off
                                                                      : SV_LOG_SNAP_CHUNK_BYTES);
        memcpy(v + CHUNK_HDR, snap->data + off, n);
        sv_put32(v, value_crc(group, c, snap->meta.index, 'd', v + CHUNK_HDR, n, NULL, 0));
        db_put(st, k, key_chunk(k, group, c), v, CHUNK_HDR + n);
    }
    for (uint32_t c = chunks; c < old_chunks; c++)
        sv__logstore_db_del(st, k, key_chunk(k, group, c));
    return 0;
}

/* ---- LevelDB implementation ---- */

static int db_commit(struct sv_logstore *s)
{
    struct store *st = (struct store *)s;
    if (st->n_dirty == 0)
        return 0;
    /* Payloads durable first: a committed reference never points at bytes
     * a crash can lose. */
    int rc = sv__logstore_payload_sync(st);
    if (rc != 0) {
        leveldb_writebatch_clear(st->batch);
        sv__logstore_settle(st, false);
        return rc;
    }
    char *err = NULL;
    leveldb_write(st->db, st->wopts_sync, st->batch, &err);
    leveldb_writebatch_clear(st->batch);
    if (err != NULL) {
        sv__logstore_settle(st, false);
        return sv__logstore_dberr(st, err, "commit");
    }
    sv__logstore_settle(st, true);
    if (st->reclaim_due)
        sv__logstore_payload_reclaim(st);
    return 0;
}

/* Read key into a malloc'd value (*v, *vlen); *v is NULL when absent. */
int sv__logstore_db_get(struct store *st, const uint8_t *k, size_t klen, char **v, size_t *vlen)
{
    char *err = NULL;
    *v = leveldb_get(st->db, st->ropts, (const char *)k, klen, vlen, &err);
    if (err != NULL)
        return sv__logstore_dberr(st, err, "get");
    return 0;
}

int sv__logstore_corrupt(struct store *st, uint64_t group, const char *what, uint64_t at)
{
    return sv__logstore_seterr(st, SV_LOG_E_CORRUPT, "group %llu: %s %llu",
                               (unsigned long long)group, what, (unsigned long long)at);
}

/* Decode and verify the snapshot meta value of group (data not read). */
int sv__logstore_snap_meta_decode(struct store *st, uint64_t group, const uint8_t *v, size_t vlen,
                                  struct sv_raft_snapshot *snap, uint32_t *chunks)
{
    if (vlen < SNAP_HDR || sv_get32(v) != value_crc(group, 0, 0, 's', v + 4, vlen - 4, NULL, 0))
        return sv__logstore_corrupt(st, group, "snapshot metadata, length", vlen);
    memset(snap, 0, sizeof *snap);
    snap->meta.index = sv_get64(v + 4);
    snap->meta.term = sv_get64(v + 12);
    snap->len = sv_get64(v + 20);
    *chunks = sv_get32(v + 28);
    uint32_t clen = sv_get32(v + 32);
    if (clen != vlen - SNAP_HDR || snap->len > SV_LOG_SNAPSHOT_BYTES_MAX ||
        *chunks != chunks_for(snap->len) || snap->meta.index == 0 ||
        sv_raft_conf_decode(v + SNAP_HDR, clen, &snap->meta.conf) != 0)
        return sv__logstore_corrupt(st, group, "snapshot metadata at", snap->meta.index);
    return 0;
}

static int db_load_snapshot(struct store *st, uint64_t group, struct sv_raft_snapshot *snap)
{
    uint8_t k[KEY_CHUNK_LEN];
    char *v;
    size_t vlen;
    uint32_t chunks;
    int rc = sv__logstore_db_get(st, k, key_group(k, group, 's'), &v, &vlen);
    if (rc != 0)
        return rc;
    if (v == NULL)
        return sv__logstore_corrupt(st, group, "snapshot metadata missing, chunks", 0);
    rc = sv__logstore_snap_meta_decode(st, group, (const uint8_t *)v, vlen, snap, &chunks);
    leveldb_free(v);
    if (rc != 0)
        return rc;
    snap->data = malloc(snap->len ? snap->len : 1);
    if (snap->data == NULL)
        return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "snapshot of %llu bytes",
                                   (unsigned long long)snap->len);
    for (uint32_t c = 0; c < chunks; c++) {
        uint64_t off = (uint64_t)c * SV_LOG_SNAP_CHUNK_BYTES;
        size_t want = (size_t)(snap->len - off < SV_LOG_SNAP_CHUNK_BYTES ? snap->len - off
                                                                         : SV_LOG_SNAP_CHUNK_BYTES);
        if ((rc = sv__logstore_db_get(st, k, key_chunk(k, group, c), &v, &vlen)) != 0)
            return rc;
        const uint8_t *p = (const uint8_t *)v;
        bool ok =
            v != NULL && vlen == CHUNK_HDR + want &&
            sv_get32(p) == value_crc(group, c, snap->meta.index, 'd', p + CHUNK_HDR, want, NULL, 0);
        if (ok)
            memcpy(snap->data + off, p + CHUNK_HDR, want);
        leveldb_free(v);
        if (!ok)
            return sv__logstore_corrupt(st, group, "snapshot data chunk", c);
    }
    return 0;
}

static int db_load(struct sv_logstore *s, uint64_t group, struct sv_logstore_loaded *out)
{
    struct store *st = (struct store *)s;
    memset(out, 0, sizeof *out);
    struct group *g = sv__logstore_group_find(st, group);
    if (g == NULL || !g->c.exists)
        return sv__logstore_seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    if (g->c.corrupt)
        return sv__logstore_corrupt(st, group, "damaged metadata found at open, snapshot",
                                    g->c.snap_index);
    const struct gmeta *m = &g->c;

    uint8_t k[KEY_ENTRY_LEN];
    char *v;
    size_t vlen;
    int rc = sv__logstore_db_get(st, k, key_group(k, group, 'h'), &v, &vlen);
    if (rc != 0)
        return rc;
    if (v != NULL) {
        const uint8_t *p = (const uint8_t *)v;
        bool ok = vlen == HS_LEN && sv_get32(p) == value_crc(group, 0, 0, 'h', p + 4, 24, NULL, 0);
        if (ok) {
            out->restore.hs.term = sv_get64(p + 4);
            out->restore.hs.vote = sv_get64(p + 12);
            out->restore.hs.commit = sv_get64(p + 20);
        }
        leveldb_free(v);
        if (!ok)
            return sv__logstore_corrupt(st, group, "hard state, length", vlen);
    }
    if (m->snap_index > 0) {
        if ((rc = db_load_snapshot(st, group, &out->snap)) != 0)
            return rc;
        if (out->snap.meta.index != m->snap_index)
            return sv__logstore_corrupt(st, group, "snapshot index changed to",
                                        out->snap.meta.index);
    }

    uint64_t from = m->first > m->snap_index ? m->first : m->snap_index + 1;
    if (m->last < from) {
        sv__logstore_loaded_finish(out, m->snap_index > 0);
        return 0;
    }
    if ((rc = sv__logstore_loaded_alloc_entries(st, out, m->last - from + 1)) != 0)
        return rc;
    int pfd = -1;
    uint32_t pfd_no = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ropts);
    key_entry(k, group, from);
    leveldb_iter_seek(it, (const char *)k, sizeof k);
    for (uint64_t i = from; i <= m->last; i++, leveldb_iter_next(it)) {
        size_t klen;
        const uint8_t *kk =
            leveldb_iter_valid(it) ? (const uint8_t *)leveldb_iter_key(it, &klen) : NULL;
        key_entry(k, group, i);
        if (kk == NULL || klen != sizeof k || memcmp(kk, k, sizeof k) != 0) {
            rc = sv__logstore_corrupt(st, group, "missing entry", i);
            goto err_after_iter;
        }
        const uint8_t *p = (const uint8_t *)leveldb_iter_value(it, &vlen);
        bool is_ref;
        if (!sv__logstore_entry_value_ok(p, vlen, &is_ref) ||
            sv_get32(p) != value_crc(group, i, 0, 'e', p + 4, vlen - 4, NULL, 0)) {
            rc = sv__logstore_corrupt(st, group, "checksum or length mismatch in entry", i);
            goto err_after_iter;
        }
        struct sv_raft_entry *d = &out->entries[out->n_entries];
        d->index = i;
        d->term = sv_get64(p + 4);
        d->type = p[12];
        d->len = sv_get32(p + 13);
        d->data = malloc(d->len ? d->len : 1);
        if (d->data == NULL) {
            rc = sv__logstore_seterr(st, SV_LOG_E_NOMEM, "entry %llu", (unsigned long long)i);
            goto err_after_iter;
        }
        out->n_entries++;
        if (is_ref) {
            if ((rc = sv__logstore_payload_read(st, group, d, p + ENTRY_HDR, &pfd, &pfd_no)) != 0)
                goto err_after_iter;
        } else if (d->len > 0) {
            memcpy(d->data, p + ENTRY_HDR, d->len);
        }
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err != NULL) {
        rc = sv__logstore_dberr(st, err, "iterate entries");
        goto err_after_iter;
    }
    leveldb_iter_destroy(it);
    if (pfd >= 0)
        close(pfd);
    sv__logstore_loaded_finish(out, m->snap_index > 0);
    return 0;

err_after_iter:
    leveldb_iter_destroy(it);
    if (pfd >= 0)
        close(pfd);
    return rc;
}

const struct sv_logstore_ops sv_logstore_leveldb_ops = {
    .name = "leveldb",
    .open = sv__logstore_db_open,
    .close = sv__logstore_db_close,
    .stage = sv__logstore_stage,
    .save_snapshot = sv__logstore_save_snapshot,
    .compact = sv__logstore_compact,
    .destroy_group = sv__logstore_destroy_group,
    .commit = db_commit,
    .load = db_load,
    .list_groups = sv__logstore_list_groups,
};
