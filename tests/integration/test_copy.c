/* Integration: a replica moved to a new node gets the shard's records in a
 * snapshot (the shard's log was compacted), and then copies every chunk
 * those records claim from the other replicas on its own, with no client
 * read asking for one: its copy metrics end at 0 pending and at least the
 * objects' bytes copied, its log says the group is complete, no read
 * repair ran on it, and with the other replicas killed it serves every
 * object (stale reads) from its own chunks. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include "proto.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    NODES = 4,
    ZONES = 3,
    BASE_PORT = 17850,
    SMALL = 2400, /* small objects: more entries than SNAPSHOT_ENTRIES (2048) */
    WRITERS = 4,
    BIG_BYTES = 5 << 19, /* 2.5 MiB: three chunks */
    BIG_COUNT = 3,
    SEAL_OVERHEAD = 33, /* SV_CRYPTO_SEAL_OVERHEAD per chunk */
    COPY_TIMEOUT_MS = 120000,
};

static struct it_cluster cl_;
static struct sv_client *client_;
static uint32_t shard_;
static const uint64_t from_ = 1, to_ = 4; /* the same zone */
static char keys_[SMALL + BIG_COUNT][32];
static atomic_int next_key_, write_errors_;

/* Fill keys_ with names of objects in shard_ (8 shards). */
static void make_keys(void)
{
    int n = 0;
    for (int i = 0; n < SMALL + BIG_COUNT; i++) {
        char k[32];
        snprintf(k, sizeof k, "c-%d", i);
        if (sv_shard_of(sv_object_hash(0, (const uint8_t *)"cp", 2, (const uint8_t *)k, strlen(k)),
                        8) == shard_)
            snprintf(keys_[n++], sizeof keys_[0], "%s", k);
    }
}

static void *writer(void *arg)
{
    struct sv_client *c = arg;
    for (int i; (i = atomic_fetch_add(&next_key_, 1)) < SMALL;)
        if (sv_client_put(c, "cp", keys_[i], keys_[i], strlen(keys_[i]), SV_IF_ANY, NULL))
            atomic_fetch_add(&write_errors_, 1);
    return NULL;
}

static int set_up(void)
{
    it_up(&cl_, it_bin_dir(), "copy", NODES, ZONES, BASE_PORT);
    client_ = it_client(&cl_, 30000);
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    bool found = false;
    for (size_t i = 0; s && i < s->n_shards && !found; i++) {
        bool has_from = false, has_to = false;
        for (size_t j = 0; j < s->shards[i].n_replicas; j++) {
            has_from |= s->shards[i].replicas[j].node == from_;
            has_to |= s->shards[i].replicas[j].node == to_;
        }
        if (has_from && !has_to) {
            shard_ = (uint32_t)s->shards[i].id;
            found = true;
        }
    }
    sv_client_status_free(s);
    CHECK(found);
    if (found)
        make_keys();
    return found ? 0 : 1;
}

static void tear_down(void)
{
    sv_client_close(client_);
    it_down(&cl_);
}

/* A copy metric of node id (NAN when it cannot be read). */
static double copy_metric(int id, const char *series)
{
    char *m = NULL;
    double v = NAN;
    if (it_http_get(it_metrics_port(&cl_, id), "/metrics", &m) == 200 && m)
        v = it_metric(m, series);
    free(m);
    return v;
}

static uint8_t *big_[BIG_COUNT];

/* The shard's objects, then enough small writes that its log is compacted
 * into a snapshot: the new replica cannot get them from the log. */
static void fill_shard(void)
{
    for (int i = 0; i < BIG_COUNT; i++) {
        big_[i] = malloc(BIG_BYTES);
        it_fill(big_[i], BIG_BYTES, 300 + (uint64_t)i);
        CHECK_RC(
            sv_client_put(client_, "cp", keys_[SMALL + i], big_[i], BIG_BYTES, SV_IF_ANY, NULL),
            SV_OK);
    }
    pthread_t w[WRITERS];
    struct sv_client *wc[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        wc[i] = it_client(&cl_, 30000);
        pthread_create(&w[i], NULL, writer, wc[i]);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(w[i], NULL);
        sv_client_close(wc[i]);
    }
    CHECK_EQ_INT(atomic_load(&write_errors_), 0);
}

static void test_copy_after_move(void)
{
    fill_shard();
    char why[256] = "";
    CHECK_EQ_INT(it_move(&cl_, shard_, from_, to_, 150000, why, sizeof why), SV_ST_OK);
    /* The new replica copies in the background; nothing reads from it. */
    uint64_t end = it_now_ms() + COPY_TIMEOUT_MS;
    double pending = NAN, copied = NAN;
    const double want = (double)BIG_COUNT * (BIG_BYTES + 3 * SEAL_OVERHEAD);
    while (it_now_ms() < end) {
        pending = copy_metric((int)to_, "sv_copy_groups_pending");
        copied = copy_metric((int)to_, "sv_copy_bytes_total");
        if (pending == 0 && copied >= want)
            break;
        usleep(250000);
    }
    printf("it-copy: node %d copied %.0f bytes, %.0f groups pending\n", (int)to_, copied, pending);
    CHECK(it_log_has(&cl_, (int)to_, "installed a snapshot at index"));
    CHECK_MSG(pending == 0, "groups pending: %f", pending);
    CHECK_MSG(copied >= want, "copied %f < %f", copied, want);
    CHECK(copy_metric((int)to_, "sv_copy_chunks_missing") == 0);
    CHECK(it_log_has(&cl_, (int)to_, "every chunk its records claim is on this node"));
    /* No read repaired anything there: the copy did all of it. */
    CHECK(!it_log_has(&cl_, (int)to_, "repairing from a replica"));
    /* The source's replica had every chunk: nothing was lost. */
    CHECK(!it_log_has(&cl_, (int)to_, "chunks not copied"));
}

/* The other replicas killed, the new one alone serves stale reads of
 * every object from its own chunks: a missing one would need a repair
 * from a replica, and none is left. */
static void test_reads_from_new_replica(void)
{
    /* The move was answered once the meta leader's map showed it; the node
     * a status asks for the map may adopt it up to a second later. */
    struct sv_cluster_status *s = NULL;
    for (uint64_t end = it_now_ms() + 10000; it_now_ms() < end; usleep(200000)) {
        sv_client_status_free(s);
        s = NULL;
        CHECK_RC(sv_client_status(client_, &s), SV_OK);
        bool moved = s && s->shards[shard_].n_replicas == 3;
        for (size_t j = 0; moved && j < s->shards[shard_].n_replicas; j++)
            moved = s->shards[shard_].replicas[j].node != from_;
        if (moved)
            break;
    }
    int killed = 0;
    for (size_t j = 0; s && j < s->shards[shard_].n_replicas; j++) {
        uint64_t id = s->shards[shard_].replicas[j].node;
        CHECK(id != from_);
        if (id != to_) {
            it_kill(&cl_, (int)id);
            killed++;
        }
    }
    sv_client_status_free(s);
    CHECK_EQ_INT(killed, 2);
    struct sv_client *c = it_client(&cl_, 10000);
    for (int i = 0; i < SMALL + BIG_COUNT; i += i < SMALL ? 7 : 1) {
        void *data = NULL;
        size_t len = 0;
        const void *want = i < SMALL ? (const void *)keys_[i] : big_[i - SMALL];
        size_t want_len = i < SMALL ? strlen(keys_[i]) : BIG_BYTES;
        CHECK_RC(sv_client_get(c, "cp", keys_[i], SV_STALE, &data, &len, NULL), SV_OK);
        CHECK(len == want_len && data && !memcmp(data, want, len));
        free(data);
    }
    sv_client_close(c);
    CHECK(!it_log_has(&cl_, (int)to_, "repairing from a replica"));
    for (int i = 0; i < BIG_COUNT; i++)
        free(big_[i]);
}

static const struct sv_test tests[] = {
    {"a moved replica copies every chunk", test_copy_after_move},
    {"the new replica alone serves every object", test_reads_from_new_replica},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-copy",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
