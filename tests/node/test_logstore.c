/* logstore-test: the Raft log storage through its ops table, both
 * implementations (round trips, truncation, group commit and crashes,
 * compaction, group destruction, limits), corruption detection in LevelDB,
 * big entries in LevelDB's payload files (round trips, crashes, truncation,
 * reclaim by compaction and destruction, corruption, a failed write, the
 * format version 1 upgrade), and a 3-node, 2-group svraft cluster
 * persisting through LevelDB stores that is restarted from them. */
#define _GNU_SOURCE
#include "logstore.h"
#include "sv_codec.h"

#define CHECK_STRERROR(rc) sv_logstore_strerror(rc)
#include "check.h"

#include <leveldb/c.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char root[256];
static int dirs;

/* ---- helpers ---- */

struct fx {
    const struct sv_logstore_ops *ops;
    char dir[300];
    struct sv_logstore *s;
};

static void fx_open(struct fx *f, const struct sv_logstore_ops *ops)
{
    memset(f, 0, sizeof *f);
    f->ops = ops;
    snprintf(f->dir, sizeof f->dir, "%s/db%d", root, dirs++);
    char err[SV_LOG_ERRMSG_MAX];
    int rc = ops->open(f->dir, &f->s, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "open %s: %s\n", f->dir, err);
        abort();
    }
}

/* Restart: committed state stays, staged state is lost (a crash). */
static void fx_crash(struct fx *f)
{
    if (f->ops == &sv_logstore_mem_ops) {
        sv_logstore_mem_crash(f->s);
        return;
    }
    f->ops->close(f->s);
    char err[SV_LOG_ERRMSG_MAX];
    int rc = f->ops->open(f->dir, &f->s, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "reopen %s: %s\n", f->dir, err);
        abort();
    }
}

static void fx_close(struct fx *f)
{
    f->ops->close(f->s);
    f->s = NULL;
}

static uint8_t pat(uint64_t index, uint64_t term, uint32_t i)
{
    return (uint8_t)(index * 131 + term * 7 + i * 13);
}

/* n entries from index first with term, data of a varying length (0 too). */
static struct sv_raft_entry *make_entries(uint64_t first, size_t n, uint64_t term)
{
    struct sv_raft_entry *e = calloc(n, sizeof *e);
    CHECK(e != NULL);
    for (size_t i = 0; i < n; i++) {
        e[i].index = first + i;
        e[i].term = term;
        e[i].type = (uint8_t)(i % 3);
        e[i].len = (uint32_t)((first + i) * 37 % 300);
        e[i].data = malloc(e[i].len ? e[i].len : 1);
        CHECK(e[i].data != NULL);
        for (uint32_t k = 0; k < e[i].len; k++)
            e[i].data[k] = pat(e[i].index, term, k);
    }
    return e;
}

static void free_entries(struct sv_raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].data);
    free(e);
}

static int stage_entries(struct fx *f, uint64_t group, uint64_t first, size_t n, uint64_t term)
{
    struct sv_raft_entry *e = make_entries(first, n, term);
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.entries = e;
    rd.n_entries = n;
    int rc = f->ops->stage(f->s, group, &rd);
    free_entries(e, n);
    return rc;
}

static int stage_hs(struct fx *f, uint64_t group, uint64_t term, uint64_t vote, uint64_t commit)
{
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.hs_changed = true;
    rd.hs.term = term;
    rd.hs.vote = vote;
    rd.hs.commit = commit;
    return f->ops->stage(f->s, group, &rd);
}

/* Is entry e what make_entries(…, term) made for its index? */
static bool entry_ok(const struct sv_raft_entry *e, uint64_t index, uint64_t term, uint64_t first)
{
    if (e->index != index || e->term != term || e->type != (uint8_t)((index - first) % 3) ||
        e->len != (uint32_t)(index * 37 % 300))
        return false;
    for (uint32_t k = 0; k < e->len; k++)
        if (e->data[k] != pat(index, term, k))
            return false;
    return true;
}

static void make_snapshot(struct sv_raft_snapshot *snap, uint64_t index, uint64_t term,
                          uint64_t len)
{
    memset(snap, 0, sizeof *snap);
    snap->meta.index = index;
    snap->meta.term = term;
    snap->meta.conf.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        snap->meta.conf.servers[i].id = i + 1;
        snap->meta.conf.servers[i].role = i == 2 ? SV_RAFT_LEARNER : SV_RAFT_VOTER;
    }
    snap->len = len;
    snap->data = malloc(len ? len : 1);
    CHECK(snap->data != NULL);
    for (uint64_t i = 0; i < len; i++)
        snap->data[i] = (uint8_t)(i * 251 + index);
}

static bool snapshot_eq(const struct sv_raft_snapshot *a, const struct sv_raft_snapshot *b)
{
    return a->meta.index == b->meta.index && a->meta.term == b->meta.term &&
           a->meta.conf.n == b->meta.conf.n &&
           memcmp(a->meta.conf.servers, b->meta.conf.servers,
                  a->meta.conf.n * sizeof a->meta.conf.servers[0]) == 0 &&
           a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* ---- tests on both implementations ---- */

static void test_roundtrip(const struct sv_logstore_ops *ops)
{
    struct fx f;
    fx_open(&f, ops);
    /* group 7: hard state + entries in one ready */
    struct sv_raft_entry *e = make_entries(1, 10, 2);
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.hs_changed = true;
    rd.hs = (struct sv_raft_hard_state){.term = 3, .vote = 2, .commit = 5};
    rd.entries = e;
    rd.n_entries = 10;
    CHECK_RC(ops->stage(f.s, 7, &rd), 0);
    free_entries(e, 10);
    /* group 8: a received snapshot (several LevelDB chunks) and entries after it */
    struct sv_raft_snapshot snap;
    make_snapshot(&snap, 20, 4, 3 * SV_LOG_SNAP_CHUNK_BYTES + 123);
    e = make_entries(21, 5, 4);
    memset(&rd, 0, sizeof rd);
    rd.hs_changed = true;
    rd.hs = (struct sv_raft_hard_state){.term = 4, .vote = 0, .commit = 20};
    rd.snapshot = &snap;
    rd.entries = e;
    rd.n_entries = 5;
    CHECK_RC(ops->stage(f.s, 8, &rd), 0);
    free_entries(e, 5);

    struct sv_logstore_loaded l;
    CHECK_RC(ops->load(f.s, 7, &l), SV_LOG_E_NOT_FOUND); /* staged only */
    sv_logstore_loaded_free(&l);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);

    size_t n;
    uint64_t ids[4];
    CHECK_RC(ops->list_groups(f.s, ids, 4, &n), 0);
    CHECK(n == 2 && ids[0] == 7 && ids[1] == 8);

    CHECK_RC(ops->load(f.s, 7, &l), 0);
    CHECK(l.restore.hs.term == 3 && l.restore.hs.vote == 2 && l.restore.hs.commit == 5);
    CHECK(l.restore.snapshot == NULL);
    CHECK(l.restore.n_entries == 10 && l.restore.entries == l.entries);
    for (size_t i = 0; i < l.n_entries && i < 10; i++)
        CHECK(entry_ok(&l.entries[i], 1 + i, 2, 1));
    sv_logstore_loaded_free(&l);

    CHECK_RC(ops->load(f.s, 8, &l), 0);
    CHECK(l.restore.hs.term == 4 && l.restore.hs.commit == 20);
    CHECK(l.restore.snapshot != NULL && snapshot_eq(l.restore.snapshot, &snap));
    CHECK(l.restore.n_entries == 5);
    for (size_t i = 0; i < l.n_entries && i < 5; i++)
        CHECK(entry_ok(&l.entries[i], 21 + i, 4, 21));
    sv_logstore_loaded_free(&l);

    /* A smaller snapshot replaces the log and leaves no stale chunk behind. */
    free(snap.data);
    make_snapshot(&snap, 30, 5, 1000);
    memset(&rd, 0, sizeof rd);
    rd.snapshot = &snap;
    CHECK_RC(ops->stage(f.s, 8, &rd), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    CHECK_RC(ops->load(f.s, 8, &l), 0);
    CHECK(l.restore.snapshot != NULL && snapshot_eq(l.restore.snapshot, &snap));
    CHECK(l.restore.n_entries == 0 && l.restore.hs.term == 4);
    sv_logstore_loaded_free(&l);
    free(snap.data);

    CHECK_RC(ops->load(f.s, 9, &l), SV_LOG_E_NOT_FOUND);
    CHECK(strstr(f.s->errmsg, "group 9") != NULL);
    sv_logstore_loaded_free(&l);
    CHECK_RC(ops->commit(f.s), 0); /* nothing staged */
    fx_close(&f);
}

static void test_truncate(const struct sv_logstore_ops *ops)
{
    struct fx f;
    fx_open(&f, ops);
    CHECK_RC(stage_entries(&f, 1, 1, 10, 1), 0);
    CHECK_RC(ops->commit(f.s), 0);
    /* a new leader overwrites the tail from 6 */
    CHECK_RC(stage_entries(&f, 1, 6, 2, 3), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    struct sv_logstore_loaded l;
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 7);
    for (size_t i = 0; i < l.n_entries && i < 7; i++)
        CHECK(entry_ok(&l.entries[i], 1 + i, i < 5 ? 1 : 3, i < 5 ? 1 : 6));
    sv_logstore_loaded_free(&l);

    /* truncation of entries that are themselves only staged */
    CHECK_RC(stage_entries(&f, 1, 8, 5, 3), 0);                 /* 8..12 */
    CHECK_RC(stage_entries(&f, 1, 9, 1, 4), 0);                 /* 9, drops 10..12 */
    CHECK_RC(stage_entries(&f, 1, 11, 1, 4), SV_LOG_E_BAD_ARG); /* gap after 9 */
    CHECK_RC(stage_entries(&f, 1, 0, 1, 4), SV_LOG_E_BAD_ARG);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 9);
    if (l.n_entries == 9) {
        CHECK(entry_ok(&l.entries[7], 8, 3, 8));
        CHECK(entry_ok(&l.entries[8], 9, 4, 9));
    }
    sv_logstore_loaded_free(&l);

    /* non-contiguous entries in one batch are refused, nothing staged */
    struct sv_raft_entry *e = make_entries(10, 3, 4);
    e[2].index = 20;
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.entries = e;
    rd.n_entries = 3;
    CHECK_RC(ops->stage(f.s, 1, &rd), SV_LOG_E_BAD_ARG);
    CHECK_RC(ops->stage(f.s, 2, &rd), SV_LOG_E_BAD_ARG);
    free_entries(e, 3);
    CHECK_RC(ops->commit(f.s), 0);
    size_t n;
    uint64_t id;
    CHECK_RC(ops->list_groups(f.s, &id, 1, &n), 0);
    CHECK(n == 1 && id == 1);
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 9);
    sv_logstore_loaded_free(&l);
    fx_close(&f);
}

static void test_group_commit_crash(const struct sv_logstore_ops *ops)
{
    enum { GROUPS = 50 };
    struct fx f;
    fx_open(&f, ops);
    for (uint64_t g = 1; g <= GROUPS; g++) {
        CHECK_RC(stage_hs(&f, g, g, g % 3, g % 5), 0);
        CHECK_RC(stage_entries(&f, g, 1, (size_t)g, 1), 0);
    }
    CHECK_RC(ops->commit(f.s), 0); /* one sync for all 50 groups */
    /* staged but never committed: new groups, more entries, a truncation,
     * a new hard state, a destroyed group */
    for (uint64_t g = GROUPS + 1; g <= GROUPS + 10; g++)
        CHECK_RC(stage_entries(&f, g, 1, 3, 1), 0);
    CHECK_RC(stage_entries(&f, 1, 2, 5, 2), 0);
    CHECK_RC(stage_entries(&f, 10, 3, 1, 2), 0);
    CHECK_RC(stage_hs(&f, 2, 99, 1, 2), 0);
    CHECK_RC(ops->destroy_group(f.s, 3), 0);
    fx_crash(&f);

    uint64_t ids[GROUPS + 20];
    size_t n;
    CHECK_RC(ops->list_groups(f.s, ids, GROUPS + 20, &n), 0);
    CHECK(n == GROUPS);
    for (size_t i = 0; i < n && i < GROUPS; i++)
        CHECK(ids[i] == i + 1);
    for (uint64_t g = 1; g <= GROUPS + 10; g++) {
        struct sv_logstore_loaded l;
        int rc = ops->load(f.s, g, &l);
        if (g > GROUPS) {
            CHECK_RC(rc, SV_LOG_E_NOT_FOUND);
            sv_logstore_loaded_free(&l);
            continue;
        }
        CHECK_RC(rc, 0);
        CHECK(l.restore.hs.term == g && l.restore.hs.vote == g % 3 && l.restore.hs.commit == g % 5);
        CHECK(l.n_entries == g);
        for (size_t i = 0; i < l.n_entries && i < g; i++)
            CHECK(entry_ok(&l.entries[i], 1 + i, 1, 1));
        sv_logstore_loaded_free(&l);
    }
    /* the store is still usable after the crash */
    CHECK_RC(stage_entries(&f, 1, 2, 1, 2), 0);
    CHECK_RC(ops->commit(f.s), 0);
    struct sv_logstore_loaded l;
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 2 && l.n_entries == 2 && entry_ok(&l.entries[1], 2, 2, 2));
    sv_logstore_loaded_free(&l);
    fx_close(&f);
}

static void test_compact_destroy(const struct sv_logstore_ops *ops)
{
    struct fx f;
    fx_open(&f, ops);
    CHECK_RC(stage_hs(&f, 5, 2, 1, 100), 0);
    CHECK_RC(stage_entries(&f, 5, 1, 100, 2), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK_RC(ops->compact(f.s, 5, 10), SV_LOG_E_BAD_ARG); /* no snapshot covers it */
    CHECK_RC(ops->compact(f.s, 6, 0), SV_LOG_E_NOT_FOUND);

    struct sv_raft_snapshot snap;
    make_snapshot(&snap, 60, 2, 5000);
    CHECK_RC(ops->save_snapshot(f.s, 5, &snap), 0);
    CHECK_RC(ops->compact(f.s, 5, 50), 0); /* keeps 51..60 as trailing entries */
    CHECK_RC(ops->compact(f.s, 5, 61), SV_LOG_E_BAD_ARG);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    struct sv_logstore_loaded l;
    CHECK_RC(ops->load(f.s, 5, &l), 0);
    CHECK(l.restore.snapshot != NULL && snapshot_eq(l.restore.snapshot, &snap));
    CHECK(l.n_entries == 40 && l.n_entries > 0 && l.entries[0].index == 61);
    for (size_t i = 0; i < l.n_entries && i < 40; i++)
        CHECK(entry_ok(&l.entries[i], 61 + i, 2, 1));
    CHECK(l.restore.hs.commit == 100);
    sv_logstore_loaded_free(&l);

    /* an older snapshot is refused; a later one past the log too */
    struct sv_raft_snapshot old;
    make_snapshot(&old, 40, 2, 10);
    CHECK_RC(ops->save_snapshot(f.s, 5, &old), SV_LOG_E_BAD_ARG);
    old.meta.index = 101;
    CHECK_RC(ops->save_snapshot(f.s, 5, &old), SV_LOG_E_BAD_ARG);
    free(old.data);

    /* compaction and appends staged in one commit, then a crash drops a later one */
    CHECK_RC(ops->compact(f.s, 5, 60), 0);
    CHECK_RC(stage_entries(&f, 5, 101, 5, 3), 0);
    CHECK_RC(ops->commit(f.s), 0);
    struct sv_raft_snapshot snap2;
    make_snapshot(&snap2, 90, 2, 70000);
    CHECK_RC(ops->save_snapshot(f.s, 5, &snap2), 0);
    CHECK_RC(ops->compact(f.s, 5, 90), 0);
    fx_crash(&f);
    CHECK_RC(ops->load(f.s, 5, &l), 0);
    CHECK(l.restore.snapshot != NULL && snapshot_eq(l.restore.snapshot, &snap));
    CHECK(l.n_entries == 45 && l.n_entries > 0 && l.entries[0].index == 61);
    if (l.n_entries == 45)
        CHECK(entry_ok(&l.entries[44], 105, 3, 101));
    sv_logstore_loaded_free(&l);
    free(snap2.data);

    /* destroy, then reuse the id */
    CHECK_RC(ops->destroy_group(f.s, 5), 0);
    CHECK_RC(ops->destroy_group(f.s, 5), SV_LOG_E_NOT_FOUND);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    size_t n;
    uint64_t id;
    CHECK_RC(ops->list_groups(f.s, &id, 1, &n), 0);
    CHECK(n == 0);
    CHECK_RC(ops->load(f.s, 5, &l), SV_LOG_E_NOT_FOUND);
    sv_logstore_loaded_free(&l);
    CHECK_RC(stage_entries(&f, 5, 1, 3, 7), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    CHECK_RC(ops->load(f.s, 5, &l), 0);
    CHECK(l.restore.snapshot == NULL && l.n_entries == 3 && l.restore.hs.term == 0);
    sv_logstore_loaded_free(&l);
    free(snap.data);
    fx_close(&f);
}

static void test_limits(const struct sv_logstore_ops *ops)
{
    struct fx f;
    fx_open(&f, ops);
    uint8_t small[8] = {0};
    struct sv_raft_entry e = {
        .term = 1, .index = 1, .len = SV_LOG_ENTRY_BYTES_MAX + 1u, .data = small};
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.entries = &e;
    rd.n_entries = 1;
    CHECK_RC(ops->stage(f.s, 1, &rd), SV_LOG_E_TOO_BIG);
    struct sv_raft_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.meta.index = 5;
    snap.len = (uint64_t)SV_LOG_SNAPSHOT_BYTES_MAX + 1;
    snap.data = small;
    memset(&rd, 0, sizeof rd);
    rd.snapshot = &snap;
    CHECK_RC(ops->stage(f.s, 1, &rd), SV_LOG_E_TOO_BIG);
    snap.len = 0;
    snap.meta.index = 0;
    CHECK_RC(ops->stage(f.s, 1, &rd), SV_LOG_E_BAD_ARG);
    memset(&rd, 0, sizeof rd);
    CHECK_RC(ops->stage(f.s, 1, &rd), 0); /* nothing to persist: no group */
    CHECK_RC(ops->commit(f.s), 0);
    size_t n;
    uint64_t id;
    CHECK_RC(ops->list_groups(f.s, &id, 1, &n), 0);
    CHECK(n == 0);
    /* SV_LOG_GROUPS_MAX groups fit; one more is a handled outcome */
    for (uint64_t g = 1; g <= SV_LOG_GROUPS_MAX; g++)
        CHECK_RC(stage_hs(&f, g, 1, 0, 0), 0);
    CHECK_RC(stage_hs(&f, SV_LOG_GROUPS_MAX + 1, 1, 0, 0), SV_LOG_E_GROUPS_FULL);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    CHECK_RC(ops->list_groups(f.s, &id, 1, &n), 0);
    CHECK(n == SV_LOG_GROUPS_MAX && id == 1);
    CHECK_RC(stage_hs(&f, 0, 1, 0, 0), SV_LOG_E_GROUPS_FULL);
    CHECK_RC(ops->destroy_group(f.s, 77), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK_RC(stage_hs(&f, 0, 1, 0, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    CHECK_RC(ops->list_groups(f.s, &id, 1, &n), 0);
    CHECK(n == SV_LOG_GROUPS_MAX && id == 0);
    CHECK(strcmp(sv_logstore_strerror(SV_LOG_E_CORRUPT), "corrupt log record") == 0);
    CHECK(strcmp(sv_logstore_strerror(-28), "No space left on device") == 0);
    CHECK(strcmp(sv_logstore_strerror(12345), "unknown error") == 0);
    fx_close(&f);
}

/* ---- LevelDB only ---- */

static void raw_key_entry(uint8_t *k, uint64_t group, uint64_t index)
{
    k[0] = 'g';
    for (int i = 0; i < 8; i++) {
        k[1 + i] = (uint8_t)(group >> (56 - 8 * i));
        k[10 + i] = (uint8_t)(index >> (56 - 8 * i));
    }
    k[9] = 'e';
}

/* Open the store's LevelDB directly; action 'f' flips a byte of key's value
 * at off, 'd' deletes key, '?' returns whether it exists. */
static bool raw(const char *dir, const uint8_t *k, size_t klen, char action, size_t off)
{
    char *err = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_t *db = leveldb_open(o, dir, &err);
    CHECK(err == NULL);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    size_t vlen;
    char *v = leveldb_get(db, ro, (const char *)k, klen, &vlen, &err);
    CHECK(err == NULL);
    bool found = v != NULL;
    if (action == 'f' && v != NULL && off < vlen) {
        v[off] ^= 0x40;
        leveldb_put(db, wo, (const char *)k, klen, v, vlen, &err);
        CHECK(err == NULL);
    } else if (action == 'd') {
        leveldb_delete(db, wo, (const char *)k, klen, &err);
        CHECK(err == NULL);
    }
    leveldb_free(v);
    leveldb_writeoptions_destroy(wo);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    return found;
}

static void test_corrupt(void)
{
    const struct sv_logstore_ops *ops = &sv_logstore_leveldb_ops;
    struct fx f;
    fx_open(&f, ops);
    for (uint64_t g = 1; g <= 4; g++) {
        CHECK_RC(stage_hs(&f, g, 3, 1, 2), 0);
        CHECK_RC(stage_entries(&f, g, 1, 5, 1), 0);
    }
    struct sv_raft_snapshot snap;
    make_snapshot(&snap, 5, 1, 2 * SV_LOG_SNAP_CHUNK_BYTES);
    CHECK_RC(ops->save_snapshot(f.s, 4, &snap), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_close(&f);

    uint8_t k[18];
    raw_key_entry(k, 1, 3);
    CHECK(raw(f.dir, k, sizeof k, 'f', 20)); /* a payload byte of entry 3 */
    raw_key_entry(k, 2, 3);
    CHECK(raw(f.dir, k, sizeof k, 'd', 0)); /* a hole in the log */
    raw_key_entry(k, 3, 1);
    k[9] = 'h';
    CHECK(raw(f.dir, k, 10, 'f', 9)); /* the hard state's term */
    raw_key_entry(k, 4, 0);
    k[9] = 'd';
    memset(k + 10, 0, 4);
    k[13] = 1;
    CHECK(raw(f.dir, k, 14, 'f', 1000)); /* snapshot data, second chunk */

    char err[SV_LOG_ERRMSG_MAX];
    CHECK_RC(ops->open(f.dir, &f.s, err, sizeof err), 0);
    struct sv_logstore_loaded l;
    for (uint64_t g = 1; g <= 4; g++) {
        CHECK_RC(ops->load(f.s, g, &l), SV_LOG_E_CORRUPT);
        sv_logstore_loaded_free(&l);
    }
    CHECK(strstr(f.s->errmsg, "group 4") != NULL);
    /* a corrupted group is repaired by rewriting it (as from a leader) */
    CHECK_RC(stage_entries(&f, 1, 3, 3, 2), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 5);
    sv_logstore_loaded_free(&l);
    fx_close(&f);

    /* compaction really deletes the keys */
    fx_open(&f, ops);
    CHECK_RC(stage_entries(&f, 9, 1, 30, 1), 0);
    free(snap.data);
    make_snapshot(&snap, 20, 1, 10);
    CHECK_RC(ops->save_snapshot(f.s, 9, &snap), 0);
    CHECK_RC(ops->compact(f.s, 9, 20), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_close(&f);
    raw_key_entry(k, 9, 20);
    CHECK(!raw(f.dir, k, sizeof k, '?', 0));
    raw_key_entry(k, 9, 1);
    CHECK(!raw(f.dir, k, sizeof k, '?', 0));
    raw_key_entry(k, 9, 21);
    CHECK(raw(f.dir, k, sizeof k, '?', 0));
    free(snap.data);
}

/* ---- a 3-node, 2-group raft cluster on LevelDB stores ---- */

enum { NODES = 3, GROUPS = 2, PROPOSALS = 1000, MORE = 100 };

struct qmsg {
    uint64_t group;
    struct sv_raft_msg m;
};

struct app {
    uint64_t *vals; /* applied NORMAL payloads, in order */
    size_t n, cap;
};

struct cluster {
    char dir[NODES + 1][300];
    struct sv_logstore *s[NODES + 1];
    struct sv_raft *r[NODES + 1][GROUPS + 1];
    struct app app[NODES + 1][GROUPS + 1];
    struct qmsg *q;
    size_t qhead, qn, qcap;
    uint64_t commits; /* store commits */
    uint64_t stages;
};

static void app_push(struct app *a, uint64_t v)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 256;
        a->vals = realloc(a->vals, a->cap * sizeof *a->vals);
        CHECK(a->vals != NULL);
    }
    a->vals[a->n++] = v;
}

static void app_from_image(struct app *a, const uint8_t *data, uint64_t len)
{
    a->n = 0;
    for (uint64_t off = 0; off + 8 <= len; off += 8) {
        uint64_t v;
        memcpy(&v, data + off, 8);
        app_push(a, v);
    }
}

static void enqueue(struct cluster *c, uint64_t group, const struct sv_raft_msg *m)
{
    if (c->qn == c->qcap) {
        c->qcap = c->qcap ? c->qcap * 2 : 256;
        c->q = realloc(c->q, c->qcap * sizeof *c->q);
        CHECK(c->q != NULL);
    }
    c->q[c->qn].group = group;
    CHECK_RC(sv_raft_msg_copy(&c->q[c->qn].m, m), 0);
    c->qn++;
}

/* All ready batches of a node: stage every group, ONE commit, then send,
 * apply and advance (persist before send). */
static void process(struct cluster *c, int node)
{
    for (int round = 0; round < 100; round++) {
        struct sv_raft_ready rd[GROUPS + 1];
        bool any = false, has[GROUPS + 1] = {false};
        for (int g = 1; g <= GROUPS; g++) {
            if (!sv_raft_has_ready(c->r[node][g]))
                continue;
            sv_raft_ready(c->r[node][g], &rd[g]);
            CHECK_RC(c->s[node]->ops->stage(c->s[node], (uint64_t)g, &rd[g]), 0);
            c->stages++;
            has[g] = any = true;
        }
        if (!any)
            return;
        CHECK_RC(c->s[node]->ops->commit(c->s[node]), 0);
        c->commits++;
        for (int g = 1; g <= GROUPS; g++) {
            if (!has[g])
                continue;
            for (size_t i = 0; i < rd[g].n_msgs; i++)
                enqueue(c, (uint64_t)g, &rd[g].msgs[i]);
            if (rd[g].snapshot != NULL)
                app_from_image(&c->app[node][g], rd[g].snapshot->data, rd[g].snapshot->len);
            for (size_t i = 0; i < rd[g].n_committed; i++) {
                const struct sv_raft_entry *e = &rd[g].committed[i];
                if (e->type == SV_RAFT_ENTRY_NORMAL && e->len == 8) {
                    uint64_t v;
                    memcpy(&v, e->data, 8);
                    app_push(&c->app[node][g], v);
                }
            }
            sv_raft_advance(c->r[node][g], &rd[g]);
        }
    }
    CHECK(!"a node never ran out of ready batches");
}

static void settle_cluster(struct cluster *c)
{
    for (int iter = 0; iter < 100000; iter++) {
        for (int n = 1; n <= NODES; n++)
            process(c, n);
        if (c->qhead == c->qn) {
            c->qhead = c->qn = 0;
            return;
        }
        /* one loop turn of every node: all its messages, of every group,
         * then one process() (so one commit covers many groups) */
        while (c->qhead < c->qn) {
            struct qmsg *qm = &c->q[c->qhead++];
            CHECK(qm->m.to >= 1 && qm->m.to <= NODES);
            CHECK_RC(sv_raft_step(c->r[qm->m.to][qm->group], &qm->m), 0);
            sv_raft_msg_free(&qm->m);
        }
    }
    CHECK(!"the cluster never went quiet");
}

static void tick(struct cluster *c, int ticks)
{
    for (int t = 0; t < ticks; t++) {
        for (int n = 1; n <= NODES; n++)
            for (int g = 1; g <= GROUPS; g++)
                sv_raft_tick(c->r[n][g]);
        settle_cluster(c);
    }
}

static int leader_of(struct cluster *c, int g)
{
    int leader = 0;
    for (int n = 1; n <= NODES; n++) {
        struct sv_raft_status st;
        sv_raft_status(c->r[n][g], &st);
        if (st.role == SV_RAFT_LEADER)
            leader = n;
    }
    return leader;
}

static void elect(struct cluster *c)
{
    for (int t = 0; t < 500; t++) {
        bool all = true;
        for (int g = 1; g <= GROUPS; g++)
            all = all && leader_of(c, g) != 0;
        if (all)
            return;
        tick(c, 1);
    }
    CHECK(!"no leader elected");
}

static void options(struct sv_raft_options *o, int node, int g)
{
    sv_raft_options_default(o, (sv_raft_id)node);
    o->seed = (uint64_t)(node * 1000 + g);
}

static void propose(struct cluster *c, uint64_t from, uint64_t to)
{
    for (uint64_t seq = from; seq < to; seq++) {
        for (int g = 1; g <= GROUPS; g++) {
            int l = leader_of(c, g);
            CHECK(l != 0);
            if (l == 0)
                return;
            uint64_t v = (uint64_t)g << 32 | seq;
            CHECK_RC(sv_raft_propose(c->r[l][g], &v, sizeof v, NULL), 0);
        }
        if (seq % 64 == 63)
            settle_cluster(c);
    }
    settle_cluster(c);
    tick(c, 3); /* followers learn the commit index */
}

static void check_apps(struct cluster *c, uint64_t count)
{
    for (int n = 1; n <= NODES; n++)
        for (int g = 1; g <= GROUPS; g++) {
            struct app *a = &c->app[n][g];
            CHECK(a->n == count);
            bool ok = a->n == count;
            for (size_t i = 0; ok && i < count; i++)
                ok = a->vals[i] == ((uint64_t)g << 32 | i);
            CHECK(ok);
            if (!ok)
                fprintf(stderr, "    node %d group %d: %zu applied, want %" PRIu64 "\n", n, g, a->n,
                        count);
        }
}

static void open_node(struct cluster *c, int n)
{
    char err[SV_LOG_ERRMSG_MAX];
    CHECK_RC(sv_logstore_leveldb_ops.open(c->dir[n], &c->s[n], err, sizeof err), 0);
}

static void test_cluster(void)
{
    struct cluster *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    struct sv_raft_conf conf;
    memset(&conf, 0, sizeof conf);
    conf.n = NODES;
    for (int i = 0; i < NODES; i++) {
        conf.servers[i].id = (sv_raft_id)(i + 1);
        conf.servers[i].role = SV_RAFT_VOTER;
    }
    for (int n = 1; n <= NODES; n++) {
        snprintf(c->dir[n], sizeof c->dir[n], "%s/node%d", root, n);
        open_node(c, n);
        for (int g = 1; g <= GROUPS; g++) {
            struct sv_raft_options o;
            options(&o, n, g);
            CHECK_RC(sv_raft_create(&o, NULL, &c->r[n][g]), 0);
            CHECK_RC(sv_raft_bootstrap(c->r[n][g], &conf), 0);
        }
    }
    settle_cluster(c);
    elect(c);
    propose(c, 0, PROPOSALS);
    check_apps(c, PROPOSALS);

    /* node 1 snapshots group 1 and compacts its stored log */
    struct sv_raft_status st;
    sv_raft_status(c->r[1][1], &st);
    struct app *a = &c->app[1][1];
    struct sv_raft_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.meta.index = st.applied;
    snap.meta.term = sv_raft_term_at(c->r[1][1], st.applied);
    snap.meta.conf = st.conf;
    snap.len = a->n * 8;
    snap.data = (uint8_t *)a->vals;
    CHECK_RC(sv_raft_snapshot(c->r[1][1], st.applied, snap.data, snap.len, 0), 0);
    CHECK_RC(c->s[1]->ops->save_snapshot(c->s[1], 1, &snap), 0);
    CHECK_RC(c->s[1]->ops->compact(c->s[1], 1, st.applied), 0);
    CHECK_RC(c->s[1]->ops->commit(c->s[1]), 0);
    settle_cluster(c);

    uint64_t commit_before[GROUPS + 1];
    for (int g = 1; g <= GROUPS; g++) {
        sv_raft_status(c->r[leader_of(c, g)][g], &st);
        commit_before[g] = st.commit;
    }

    /* restart every node from its store; in-flight messages are lost and
     * the state machines are volatile */
    for (size_t i = c->qhead; i < c->qn; i++)
        sv_raft_msg_free(&c->q[i].m);
    c->qhead = c->qn = 0;
    for (int n = 1; n <= NODES; n++) {
        for (int g = 1; g <= GROUPS; g++) {
            sv_raft_destroy(c->r[n][g]);
            c->app[n][g].n = 0;
        }
        sv_logstore_leveldb_ops.close(c->s[n]);
    }
    for (int n = 1; n <= NODES; n++) {
        open_node(c, n);
        uint64_t ids[GROUPS + 1];
        size_t cnt;
        CHECK_RC(c->s[n]->ops->list_groups(c->s[n], ids, GROUPS + 1, &cnt), 0);
        CHECK(cnt == GROUPS);
        for (int g = 1; g <= GROUPS; g++) {
            struct sv_logstore_loaded l;
            CHECK_RC(c->s[n]->ops->load(c->s[n], (uint64_t)g, &l), 0);
            if (n == 1 && g == 1) {
                CHECK(l.restore.snapshot != NULL && l.restore.snapshot->meta.index > 1000);
                CHECK(l.n_entries < 10);
            }
            if (l.restore.snapshot != NULL)
                app_from_image(&c->app[n][g], l.restore.snapshot->data, l.restore.snapshot->len);
            struct sv_raft_options o;
            options(&o, n, g);
            o.seed += 7;
            CHECK_RC(sv_raft_create(&o, &l.restore, &c->r[n][g]), 0);
            sv_logstore_loaded_free(&l);
            sv_raft_status(c->r[n][g], &st);
            CHECK(st.role == SV_RAFT_FOLLOWER);
            CHECK(st.last_index >= commit_before[g]);
        }
    }
    settle_cluster(c);
    elect(c);
    tick(c, 3);
    check_apps(c, PROPOSALS); /* every committed entry is still there */
    propose(c, PROPOSALS, PROPOSALS + MORE);
    check_apps(c, PROPOSALS + MORE);
    for (int g = 1; g <= GROUPS; g++) {
        sv_raft_status(c->r[leader_of(c, g)][g], &st);
        CHECK(st.commit > commit_before[g] + MORE - 1);
    }
    CHECK(c->stages > c->commits); /* group commit: several groups per sync */
    printf("    cluster: %" PRIu64 " batches staged, %" PRIu64 " commits\n", c->stages, c->commits);

    for (size_t i = c->qhead; i < c->qn; i++)
        sv_raft_msg_free(&c->q[i].m);
    free(c->q);
    for (int n = 1; n <= NODES; n++) {
        for (int g = 1; g <= GROUPS; g++) {
            sv_raft_destroy(c->r[n][g]);
            free(c->app[n][g].vals);
        }
        sv_logstore_leveldb_ops.close(c->s[n]);
    }
    free(c);
}

/* ---- LevelDB payload files ---- */

/* Length of entry index in the payload tests: payload files and inline
 * mixed, with the two lengths around SV_LOG_PAYLOAD_MIN_BYTES. */
static uint32_t big_len(uint64_t index)
{
    switch (index % 4) {
    case 0:
        return (uint32_t)(index * 37 % 300);
    case 1:
        return SV_LOG_PAYLOAD_MIN_BYTES - 1; /* the biggest inline */
    case 2:
        return SV_LOG_PAYLOAD_MIN_BYTES; /* the smallest in a payload file */
    default:
        return SV_LOG_PAYLOAD_MIN_BYTES + (uint32_t)(index * 4099 % 100000);
    }
}

/* Stage entries first..first+n-1 of term with big_len(index) bytes each,
 * or len bytes each when len != 0. */
static int stage_big(struct fx *f, uint64_t group, uint64_t first, size_t n, uint64_t term,
                     uint32_t len)
{
    struct sv_raft_entry *e = calloc(n, sizeof *e);
    CHECK(e != NULL);
    for (size_t i = 0; i < n; i++) {
        e[i].index = first + i;
        e[i].term = term;
        e[i].type = (uint8_t)(e[i].index % 3);
        e[i].len = len ? len : big_len(e[i].index);
        e[i].data = malloc(e[i].len ? e[i].len : 1);
        CHECK(e[i].data != NULL);
        for (uint32_t k = 0; k < e[i].len; k++)
            e[i].data[k] = pat(e[i].index, term, k);
    }
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.entries = e;
    rd.n_entries = n;
    int rc = f->ops->stage(f->s, group, &rd);
    free_entries(e, n);
    return rc;
}

/* Is e entry index of term as stage_big(…, len) made it? */
static bool big_ok(const struct sv_raft_entry *e, uint64_t index, uint64_t term, uint32_t len)
{
    bool ok = e->index == index && e->term == term && e->type == (uint8_t)(index % 3) &&
              e->len == (len ? len : big_len(index));
    for (uint32_t k = 0; ok && k < e->len; k++)
        ok = e->data[k] == pat(index, term, k);
    return ok;
}

/* Load group and check it holds exactly entries first..last as stage_big
 * made them: term t1 below index `from`, t2 from it on (len as staged). */
static void check_big(struct fx *f, uint64_t group, uint64_t first, uint64_t last, uint64_t t1,
                      uint64_t from, uint64_t t2, uint32_t len)
{
    struct sv_logstore_loaded l;
    CHECK_RC(f->ops->load(f->s, group, &l), 0);
    CHECK(l.n_entries == last - first + 1);
    for (size_t i = 0; i < l.n_entries && i <= last - first; i++)
        CHECK(big_ok(&l.entries[i], first + i, first + i < from ? t1 : t2, len));
    sv_logstore_loaded_free(&l);
}

/* Number of payload files in dir; *last gets the name of the highest. */
static int payload_files(const char *dir, char *last, size_t cap)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (d == NULL)
        return -1;
    int n = 0;
    if (last != NULL && cap > 0)
        last[0] = '\0';
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "payload-", 8) != 0)
            continue;
        n++;
        if (last != NULL && strcmp(de->d_name, last) > 0)
            snprintf(last, cap, "%s", de->d_name);
    }
    closedir(d);
    return n;
}

static void test_payload(void)
{
    const struct sv_logstore_ops *ops = &sv_logstore_leveldb_ops;
    struct fx f;
    struct sv_logstore_loaded l;
    fx_open(&f, ops);
    CHECK(payload_files(f.dir, NULL, 0) == 0);

    /* Round trip across close/open; staged data is not visible before commit. */
    CHECK_RC(stage_hs(&f, 1, 2, 1, 0), 0);
    CHECK_RC(stage_big(&f, 1, 1, 12, 2, 0), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1); /* written at stage, page cache */
    CHECK_RC(ops->load(f.s, 1, &l), SV_LOG_E_NOT_FOUND);
    sv_logstore_loaded_free(&l);
    CHECK_RC(ops->commit(f.s), 0);
    check_big(&f, 1, 1, 12, 2, 13, 2, 0);
    fx_crash(&f);
    check_big(&f, 1, 1, 12, 2, 13, 2, 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1);

    /* A crash before commit: the staged payloads (in a new file: every open
     * starts one) are never seen, and their file goes at the next open. */
    CHECK_RC(stage_big(&f, 1, 13, 4, 2, 0), 0);
    CHECK_RC(stage_big(&f, 2, 1, 4, 1, 0), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 2);
    fx_crash(&f);
    CHECK(payload_files(f.dir, NULL, 0) == 1);
    check_big(&f, 1, 1, 12, 2, 13, 2, 0);
    CHECK_RC(ops->load(f.s, 2, &l), SV_LOG_E_NOT_FOUND);
    sv_logstore_loaded_free(&l);

    /* Truncation, then re-append from index 7 with term 3 (file 2). */
    CHECK_RC(stage_big(&f, 1, 7, 10, 3, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    check_big(&f, 1, 1, 16, 2, 7, 3, 0);
    CHECK(payload_files(f.dir, NULL, 0) == 2);
    /* truncated again within the same file, in one commit with a new group */
    CHECK_RC(stage_big(&f, 1, 15, 6, 3, 0), 0); /* 15..20, file 3 */
    CHECK_RC(stage_big(&f, 2, 1, 6, 1, 0), 0);  /* file 3 too */
    CHECK_RC(stage_big(&f, 1, 19, 2, 4, 0), 0); /* 19..20 again, term 4 */
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    CHECK(payload_files(f.dir, NULL, 0) == 3);
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 20);
    for (size_t i = 0; i < l.n_entries && i < 20; i++)
        CHECK(big_ok(&l.entries[i], 1 + i, i < 6 ? 2 : i < 18 ? 3 : 4, 0));
    sv_logstore_loaded_free(&l);
    check_big(&f, 2, 1, 6, 1, 7, 1, 0);

    /* Compaction of group 1 to 16: files 1 (entries 1..12) and 2 (7..16)
     * hold no live entry any more and are deleted; file 3 (group 1's 15..20,
     * group 2) stays. */
    struct sv_raft_snapshot snap;
    make_snapshot(&snap, 16, 3, 100);
    CHECK_RC(ops->save_snapshot(f.s, 1, &snap), 0);
    free(snap.data);
    CHECK_RC(ops->compact(f.s, 1, 16), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 3); /* staged only */
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1);
    fx_crash(&f);
    CHECK(payload_files(f.dir, NULL, 0) == 1);
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.restore.snapshot != NULL && l.restore.snapshot->meta.index == 16);
    CHECK(l.n_entries == 4 && l.entries[0].index == 17 && l.entries[3].term == 4);
    sv_logstore_loaded_free(&l);
    check_big(&f, 2, 1, 6, 1, 7, 1, 0);

    /* A file shared by two groups stays until neither refers to it. */
    CHECK_RC(ops->destroy_group(f.s, 2), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1);
    make_snapshot(&snap, 20, 4, 100);
    CHECK_RC(ops->save_snapshot(f.s, 1, &snap), 0);
    free(snap.data);
    CHECK_RC(ops->compact(f.s, 1, 20), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 0);

    /* A received snapshot replaces the log: its files go too, and the active
     * file is never deleted while it is appended to. */
    CHECK_RC(stage_big(&f, 1, 21, 4, 4, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1);
    fx_crash(&f);
    CHECK_RC(stage_big(&f, 3, 1, 3, 1, 0), 0); /* the new active file */
    make_snapshot(&snap, 40, 5, 100);
    struct sv_raft_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.snapshot = &snap;
    CHECK_RC(ops->stage(f.s, 1, &rd), 0);
    free(snap.data);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1);
    CHECK_RC(ops->destroy_group(f.s, 3), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 1); /* active: kept */
    fx_crash(&f);
    CHECK(payload_files(f.dir, NULL, 0) == 0); /* no longer active, unreferenced */
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.restore.snapshot != NULL && l.n_entries == 0);
    sv_logstore_loaded_free(&l);

    /* A file is rolled when the next entry would take it past
     * SV_LOG_PAYLOAD_FILE_BYTES: 3 entries of 3/8 of it make two files. */
    uint32_t huge = SV_LOG_PAYLOAD_FILE_BYTES / 8 * 3;
    CHECK_RC(stage_big(&f, 1, 41, 3, 5, huge), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 2);
    CHECK_RC(ops->commit(f.s), 0);
    /* a reclaim in the same session keeps the rolled file, still live */
    CHECK_RC(stage_entries(&f, 4, 1, 3, 1), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK_RC(ops->destroy_group(f.s, 4), 0);
    CHECK_RC(ops->commit(f.s), 0);
    CHECK(payload_files(f.dir, NULL, 0) == 2);
    check_big(&f, 1, 41, 43, 5, 44, 5, huge);
    fx_crash(&f);
    check_big(&f, 1, 41, 43, 5, 44, 5, huge);
    CHECK(payload_files(f.dir, NULL, 0) == 2);
    fx_close(&f);
}

/* Damage to a payload file: a flipped byte, a short file, a missing file. */
static void test_payload_corrupt(void)
{
    const struct sv_logstore_ops *ops = &sv_logstore_leveldb_ops;
    struct fx f;
    struct sv_logstore_loaded l;
    fx_open(&f, ops);
    CHECK_RC(stage_big(&f, 1, 1, 8, 1, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_close(&f);
    char name[256], path[600];
    CHECK(payload_files(f.dir, name, sizeof name) == 1);
    snprintf(path, sizeof path, "%s/%s", f.dir, name);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    CHECK(size > 3 * SV_LOG_PAYLOAD_MIN_BYTES);
    /* Entry 7's payload is the file's last one: it ends at the end of a
     * buffered file, before the padding of a file written directly. */
    off_t unpadded = 0, padded = 0, pad7 = 0;
    for (uint64_t i = 1; i <= 8; i++) {
        off_t len = big_len(i),
              up = (len + SV_LOG_PAYLOAD_ALIGN - 1) / SV_LOG_PAYLOAD_ALIGN * SV_LOG_PAYLOAD_ALIGN;
        if (len < SV_LOG_PAYLOAD_MIN_BYTES)
            continue;
        unpadded += len;
        padded += up;
        pad7 = up - len;
    }
    CHECK(size == unpadded || size == padded);
    off_t end = size == unpadded ? size : size - pad7;
    uint8_t b;
    off_t at = end - 1000; /* in entry 7's payload */
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x10;
    CHECK(pwrite(fd, &b, 1, at) == 1);

    char err[SV_LOG_ERRMSG_MAX];
    CHECK_RC(ops->open(f.dir, &f.s, err, sizeof err), 0);
    CHECK_RC(ops->load(f.s, 1, &l), SV_LOG_E_CORRUPT);
    sv_logstore_loaded_free(&l);
    CHECK(strstr(f.s->errmsg, "payload checksum mismatch in entry 7") != NULL);
    b ^= 0x10; /* repaired: loads again */
    CHECK(pwrite(fd, &b, 1, at) == 1);
    check_big(&f, 1, 1, 8, 1, 9, 1, 0);
    CHECK(ftruncate(fd, end - 1) == 0);
    CHECK_RC(ops->load(f.s, 1, &l), SV_LOG_E_CORRUPT);
    sv_logstore_loaded_free(&l);
    CHECK(strstr(f.s->errmsg, "past the end of its file, entry 7") != NULL);
    close(fd);
    CHECK(unlink(path) == 0);
    CHECK_RC(ops->load(f.s, 1, &l), SV_LOG_E_CORRUPT);
    sv_logstore_loaded_free(&l);
    CHECK(strstr(f.s->errmsg, "payload file missing, entry 2") != NULL);
    /* the entry record's reference is covered by its checksum as before */
    CHECK_RC(stage_big(&f, 1, 1, 8, 2, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_close(&f);
    uint8_t k[18];
    raw_key_entry(k, 1, 3);
    CHECK(raw(f.dir, k, sizeof k, 'f', 20)); /* the file offset of entry 3 */
    CHECK_RC(ops->open(f.dir, &f.s, err, sizeof err), 0);
    CHECK_RC(ops->load(f.s, 1, &l), SV_LOG_E_CORRUPT);
    sv_logstore_loaded_free(&l);
    CHECK(strstr(f.s->errmsg, "checksum or length mismatch in entry 3") != NULL);
    fx_close(&f);
}

/* Set (v != 0) or read the store's format version key directly. */
static uint32_t raw_version(const char *dir, uint32_t v)
{
    char *err = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_t *db = leveldb_open(o, dir, &err);
    CHECK(err == NULL);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    uint8_t b[4];
    if (v != 0) {
        sv_put32(b, v);
        leveldb_put(db, wo, "v", 1, (const char *)b, sizeof b, &err);
        CHECK(err == NULL);
    }
    size_t vlen = 0;
    char *got = leveldb_get(db, ro, "v", 1, &vlen, &err);
    CHECK(err == NULL && got != NULL && vlen == 4);
    uint32_t out = got != NULL && vlen == 4 ? sv_get32((const uint8_t *)got) : 0;
    leveldb_free(got);
    leveldb_writeoptions_destroy(wo);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    return out;
}

/* Format version 2 (payload references) reads a version 1 store (every
 * entry inline, as stored by older builds) and marks it 2; an unknown
 * version is refused. */
static void test_format_version(void)
{
    const struct sv_logstore_ops *ops = &sv_logstore_leveldb_ops;
    struct fx f;
    fx_open(&f, ops);
    CHECK_RC(stage_entries(&f, 1, 1, 10, 1), 0); /* all inline, as version 1 */
    CHECK_RC(ops->commit(f.s), 0);
    fx_close(&f);
    CHECK(raw_version(f.dir, 0) == 2);
    CHECK(raw_version(f.dir, 1) == 1);
    char err[SV_LOG_ERRMSG_MAX];
    CHECK_RC(ops->open(f.dir, &f.s, err, sizeof err), 0);
    struct sv_logstore_loaded l;
    CHECK_RC(ops->load(f.s, 1, &l), 0);
    CHECK(l.n_entries == 10);
    for (size_t i = 0; i < l.n_entries && i < 10; i++)
        CHECK(entry_ok(&l.entries[i], 1 + i, 1, 1));
    sv_logstore_loaded_free(&l);
    CHECK_RC(stage_big(&f, 1, 11, 4, 1, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_close(&f);
    CHECK(raw_version(f.dir, 0) == 2);
    CHECK(raw_version(f.dir, 3) == 3);
    CHECK_RC(ops->open(f.dir, &f.s, err, sizeof err), SV_LOG_E_CORRUPT);
    CHECK(f.s == NULL && strstr(err, "unknown format version") != NULL);
}

/* A payload write that fails (file size limit: EFBIG after a short write)
 * stages nothing; the store goes on and overwrites the partial bytes. On a
 * file system with direct I/O the limit first cuts a direct write to an
 * unaligned length, which the kernel refuses (EINVAL): the file goes on
 * buffered, and the test covers that fallback too. */
static void test_payload_write_fails(void)
{
    const struct sv_logstore_ops *ops = &sv_logstore_leveldb_ops;
    struct fx f;
    fx_open(&f, ops);
    CHECK_RC(stage_big(&f, 1, 1, 4, 1, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f); /* the next payload goes to a new, empty file */

    struct sigaction ign = {.sa_handler = SIG_IGN}, old_sa;
    CHECK(sigaction(SIGXFSZ, &ign, &old_sa) == 0);
    struct rlimit old_lim, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old_lim) == 0);
    lim = old_lim;
    lim.rlim_cur = 100000; /* entry 6 (64 KiB) fits, entry 7 is cut short */
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = stage_big(&f, 1, 5, 4, 2, 0);
    CHECK(setrlimit(RLIMIT_FSIZE, &old_lim) == 0);
    CHECK(sigaction(SIGXFSZ, &old_sa, NULL) == 0);
    CHECK_RC(rc, -EFBIG);
    CHECK(strstr(f.s->errmsg, "write of entry 7") != NULL);
    CHECK_RC(stage_hs(&f, 1, 5, 0, 0), 0);
    CHECK_RC(ops->commit(f.s), 0); /* nothing of the failed stage */
    check_big(&f, 1, 1, 4, 1, 5, 1, 0);

    CHECK_RC(stage_big(&f, 1, 5, 4, 3, 0), 0);
    CHECK_RC(ops->commit(f.s), 0);
    fx_crash(&f);
    check_big(&f, 1, 1, 8, 1, 5, 3, 0);
    fx_close(&f);
}

/* ---- runner ---- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* sv_crc32c (hardware or table path, whichever this CPU takes) against the
 * standard check value and a bit-at-a-time reference, at every length and
 * alignment up to 300 bytes. */
static void test_crc32c(void)
{
    CHECK(sv_crc32c(0, "123456789", 9) == UINT32_C(0xE3069283));
    uint8_t buf[320];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; len <= 300; len++) {
            uint32_t ref = ~0u;
            for (size_t k = 0; k < len; k++) {
                ref ^= buf[off + k];
                for (int b = 0; b < 8; b++)
                    ref = (ref & 1) ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
            }
            CHECK(sv_crc32c(0, buf + off, len) == ~ref);
        }
    }
    /* Continuing a CRC over a split buffer gives the CRC of the whole. */
    CHECK(sv_crc32c(sv_crc32c(0, buf, 100), buf + 100, 200) == sv_crc32c(0, buf, 300));
}

/* Both implementations pass the tests that take an ops table. */
#define BOTH(t)                                                                                    \
    static void mem_##t(void)                                                                      \
    {                                                                                              \
        test_##t(&sv_logstore_mem_ops);                                                            \
    }                                                                                              \
    static void leveldb_##t(void)                                                                  \
    {                                                                                              \
        test_##t(&sv_logstore_leveldb_ops);                                                        \
    }
BOTH(roundtrip)
BOTH(truncate)
BOTH(group_commit_crash)
BOTH(compact_destroy)
BOTH(limits)
#undef BOTH

static int set_up(void)
{
    snprintf(root, sizeof root, "%s/logstore-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    return 0;
}

static void tear_down(void)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const struct sv_test tests[] = {
    {"memory/roundtrip", mem_roundtrip},
    {"memory/truncate", mem_truncate},
    {"memory/group_commit_crash", mem_group_commit_crash},
    {"memory/compact_destroy", mem_compact_destroy},
    {"memory/limits", mem_limits},
    {"leveldb/roundtrip", leveldb_roundtrip},
    {"leveldb/truncate", leveldb_truncate},
    {"leveldb/group_commit_crash", leveldb_group_commit_crash},
    {"leveldb/compact_destroy", leveldb_compact_destroy},
    {"leveldb/limits", leveldb_limits},
    {"crc32c", test_crc32c},
    {"leveldb/corrupt", test_corrupt},
    {"leveldb/payload", test_payload},
    {"leveldb/payload_corrupt", test_payload_corrupt},
    {"leveldb/format_version", test_format_version},
    {"leveldb/payload_write_fails", test_payload_write_fails},
    {"leveldb/cluster", test_cluster},
};

const struct sv_test_suite sv_test_suite = {
    .name = "logstore-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
};
