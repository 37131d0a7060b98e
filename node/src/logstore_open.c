/* ShardVault Raft log storage on LevelDB: open (format version, group scan) and close. */
#define _GNU_SOURCE
#include "logstore_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Is the iterator at an entry key of group? Sets *index. */
bool sv__logstore_at_entry(leveldb_iterator_t *it, uint64_t group, uint64_t *index)
{
    if (!leveldb_iter_valid(it))
        return false;
    size_t klen;
    const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
    uint8_t want[KEY_GROUP_LEN];
    key_group(want, group, 'e');
    if (klen != KEY_ENTRY_LEN || memcmp(k, want, sizeof want) != 0)
        return false;
    *index = sv_get64be(k + KEY_GROUP_LEN);
    return true;
}

/* Build the metadata of group from the database (open). */
static int scan_group(struct store *st, leveldb_iterator_t *it, uint64_t group, struct gmeta *m)
{
    sv__logstore_meta_empty(m);
    m->exists = true;
    uint8_t k[KEY_ENTRY_LEN];
    char *v;
    size_t vlen;
    int rc = sv__logstore_db_get(st, k, key_group(k, group, 's'), &v, &vlen);
    if (rc != 0)
        return rc;
    if (v != NULL) {
        struct sv_raft_snapshot snap;
        uint32_t chunks;
        if (sv__logstore_snap_meta_decode(st, group, (const uint8_t *)v, vlen, &snap, &chunks) ==
            0) {
            m->snap_index = snap.meta.index;
            m->snap_chunks = chunks;
        } else {
            m->corrupt = true;
        }
        leveldb_free(v);
    }
    uint64_t first, last;
    leveldb_iter_seek(it, (const char *)k, key_group(k, group, 'e'));
    bool has = sv__logstore_at_entry(it, group, &first);
    if (has) {
        leveldb_iter_seek(it, (const char *)k, key_group(k, group, 'f'));
        if (leveldb_iter_valid(it))
            leveldb_iter_prev(it);
        else
            leveldb_iter_seek_to_last(it);
        if (!sv__logstore_at_entry(it, group, &last) || last < first || last < m->snap_index)
            m->corrupt = true;
    }
    if (has && !m->corrupt) {
        m->first = first;
        m->last = last;
    } else {
        m->first = m->snap_index + 1;
        m->last = m->snap_index;
    }
    return 0;
}

static int db_scan(struct store *st)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ropts);
    int rc = 0;
    leveldb_iter_seek(it, "g", 1);
    while (leveldb_iter_valid(it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < KEY_GROUP_LEN || k[0] != 'g')
            break;
        uint64_t id = sv_get64be(k + 1);
        struct group *g;
        if ((rc = sv__logstore_group_insert(st, id, &g)) != 0)
            goto err_after_iter;
        if ((rc = scan_group(st, it, id, &g->c)) != 0)
            goto err_after_iter;
        g->s = g->c;
        if (id == UINT64_MAX)
            break;
        uint8_t next[9];
        next[0] = 'g';
        sv_put64be(next + 1, id + 1);
        leveldb_iter_seek(it, (const char *)next, sizeof next);
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err != NULL)
        rc = sv__logstore_dberr(st, err, "scan");
err_after_iter:
    leveldb_iter_destroy(it);
    return rc;
}

void sv__logstore_db_close(struct sv_logstore *s)
{
    if (s == NULL)
        return;
    struct store *st = (struct store *)s;
    if (st->batch != NULL)
        leveldb_writebatch_destroy(st->batch);
    if (st->db != NULL)
        leveldb_close(st->db);
    if (st->wopts_sync != NULL)
        leveldb_writeoptions_destroy(st->wopts_sync);
    if (st->ropts != NULL)
        leveldb_readoptions_destroy(st->ropts);
    if (st->dbopts != NULL)
        leveldb_options_destroy(st->dbopts);
    if (st->dirfd >= 0)
        close(st->dirfd);
    sv__logstore_store_free(st);
}

int sv__logstore_db_open(const char *dir, struct sv_logstore **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    struct store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        if (errmsg != NULL && errlen > 0)
            snprintf(errmsg, errlen, "out of memory");
        return SV_LOG_E_NOMEM;
    }
    st->pub.ops = &sv_logstore_leveldb_ops;
    st->dirfd = -1;
    st->dbopts = leveldb_options_create();
    leveldb_options_set_create_if_missing(st->dbopts, 1);
    /* Entries are mostly sealed chunks: incompressible, up to 1 MiB each, and
     * deleted soon after (log compaction). No compression; a larger memtable
     * and files mean fewer level-0 flushes and compactions per byte. */
    leveldb_options_set_compression(st->dbopts, leveldb_no_compression);
    leveldb_options_set_write_buffer_size(st->dbopts, 32u << 20);
    leveldb_options_set_max_file_size(st->dbopts, 32u << 20);
    st->ropts = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(st->ropts, 1);
    st->wopts_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(st->wopts_sync, 1);
    st->batch = leveldb_writebatch_create();

    char *err = NULL;
    int rc;
    st->db = leveldb_open(st->dbopts, dir, &err);
    if (err != NULL) {
        rc = sv__logstore_dberr(st, err, dir);
        goto err_after_store;
    }
    char *v;
    size_t vlen;
    if ((rc = sv__logstore_db_get(st, (const uint8_t *)"v", 1, &v, &vlen)) != 0)
        goto err_after_store;
    uint32_t version = 0;
    if (v != NULL) {
        version = vlen == 4 ? sv_get32((const uint8_t *)v) : 0;
        leveldb_free(v);
        if (version != 1 && version != FORMAT_VERSION) {
            rc = sv__logstore_seterr(st, SV_LOG_E_CORRUPT, "%s: unknown format version", dir);
            goto err_after_store;
        }
    }
    if (version != FORMAT_VERSION) {
        /* New store, or version 1 (every entry inline, which version 2 still
         * reads): from now on an older build must refuse the store. */
        uint8_t ver[4];
        sv_put32(ver, FORMAT_VERSION);
        leveldb_put(st->db, st->wopts_sync, "v", 1, (const char *)ver, sizeof ver, &err);
        if (err != NULL) {
            rc = sv__logstore_dberr(st, err, "write format version");
            goto err_after_store;
        }
    }
    if ((rc = db_scan(st)) != 0)
        goto err_after_store;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = sv__logstore_seterr(st, -errno, "open directory %s", dir);
        goto err_after_store;
    }
    if ((rc = sv__logstore_payload_scan(st)) != 0 ||
        (rc = sv__logstore_payload_sweep(st, dir)) != 0)
        goto err_after_store;
    st->pub.errmsg[0] = '\0';
    *out = &st->pub;
    return 0;

err_after_store:
    if (errmsg != NULL && errlen > 0)
        snprintf(errmsg, errlen, "%s", st->pub.errmsg);
    sv__logstore_db_close(&st->pub);
    return rc;
}
