/* Integration: kill -9 of a shard leader in the middle of writes, then of a
 * follower; every acknowledged write stays readable; killed nodes restart
 * and catch up (the cluster keeps its data when another node dies next). */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { WRITERS = 4, KEYS_MAX = 100000 };

static struct it_cluster cl_;
static atomic_bool stop_;
/* acked_[w][i]: writer w's i-th write was acknowledged with version 1. */
static uint8_t *acked_[WRITERS];
static atomic_int written_[WRITERS];
static atomic_int errors_;

static void *writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    struct sv_client *c = it_client(&cl_, 20000);
    char key[64], val[256];
    for (int i = 0; i < KEYS_MAX && !atomic_load(&stop_); i++) {
        snprintf(key, sizeof key, "w%d-%06d", w, i);
        size_t len = (size_t)(i % 200) + 16;
        it_fill(val, len, (uint64_t)w << 32 | (uint64_t)i);
        /* Large every 10th write: a 2.5 MiB object in chunks. */
        if (i % 10 == 9) {
            size_t big = (5u << 20) / 2;
            char *b = malloc(big);
            it_fill(b, big, (uint64_t)w << 32 | (uint64_t)i);
            int rc = sv_client_put(c, "crash", key, b, big, SV_IF_ABSENT, NULL);
            free(b);
            if (rc == SV_OK)
                acked_[w][i] = 2;
            else
                atomic_fetch_add(&errors_, 1);
        } else {
            int rc = sv_client_put(c, "crash", key, val, len, SV_IF_ABSENT, NULL);
            if (rc == SV_OK)
                acked_[w][i] = 1;
            else
                atomic_fetch_add(&errors_, 1);
        }
        atomic_store(&written_[w], i + 1);
    }
    sv_client_close(c);
    return NULL;
}

static void run_writers_while(void (*fault)(void))
{
    pthread_t t[WRITERS];
    atomic_store(&stop_, false);
    for (int w = 0; w < WRITERS; w++)
        pthread_create(&t[w], NULL, writer, (void *)(intptr_t)w);
    sleep(2);
    fault();
    sleep(4);
    atomic_store(&stop_, true);
    for (int w = 0; w < WRITERS; w++)
        pthread_join(t[w], NULL);
}

static int victim_;

/* The leader and the replicas of the shard the writers' first key is in. */
static uint64_t writers_shard(uint64_t reps[16], size_t *n)
{
    struct sv_client *c = it_client(&cl_, 10000);
    uint64_t leader = it_leader_of(&cl_, c, "crash", "w0-000000", reps, n);
    sv_client_close(c);
    return leader;
}

static void kill_leader(void)
{
    uint64_t reps[16];
    size_t n;
    uint64_t leader = writers_shard(reps, &n);
    CHECK(leader != 0);
    victim_ = (int)(leader ? leader : 1);
    fprintf(stderr, "killing leader node %d\n", victim_);
    it_kill(&cl_, victim_);
}

static void kill_follower(void)
{
    uint64_t reps[16];
    size_t n;
    uint64_t leader = writers_shard(reps, &n);
    victim_ = 0;
    for (size_t i = 0; i < n; i++)
        if (reps[i] != leader)
            victim_ = (int)reps[i];
    CHECK(victim_ != 0);
    if (!victim_)
        victim_ = 2;
    fprintf(stderr, "killing follower node %d\n", victim_);
    it_kill(&cl_, victim_);
}

/* Every acknowledged write is readable with the content written. */
static void verify_acked(const char *when)
{
    struct sv_client *c = it_client(&cl_, 30000);
    int checked = 0, bad = 0;
    char key[64];
    for (int w = 0; w < WRITERS; w++) {
        int n = atomic_load(&written_[w]);
        for (int i = 0; i < n; i++) {
            if (!acked_[w][i])
                continue;
            snprintf(key, sizeof key, "w%d-%06d", w, i);
            void *d = NULL;
            size_t len = 0;
            int rc = sv_client_get(c, "crash", key, SV_LINEARIZABLE, &d, &len, NULL);
            size_t want = acked_[w][i] == 2 ? (5u << 20) / 2 : (size_t)(i % 200) + 16;
            char *exp = malloc(want);
            it_fill(exp, want, (uint64_t)w << 32 | (uint64_t)i);
            if (rc != SV_OK || len != want || memcmp(d, exp, want)) {
                if (bad++ < 5)
                    fprintf(stderr, "%s: acknowledged %s: %s (%s)\n", when, key,
                            sv_client_strerror(rc), sv_client_errmsg());
            }
            free(exp);
            free(d);
            checked++;
        }
    }
    fprintf(stderr, "%s: %d acknowledged writes checked, %d bad; %d writes failed\n", when, checked,
            bad, atomic_load(&errors_));
    CHECK(checked > 20);
    CHECK(bad == 0);
    sv_client_close(c);
}

/* True once node id has applied, in every shard it holds, as far as the
 * most advanced replica (no writes run meanwhile). */
static bool caught_up(int id, int timeout_ms)
{
    struct sv_client *c = it_client(&cl_, 5000);
    uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
    bool ok = false;
    while (!ok && it_now_ms() < end) {
        struct sv_cluster_status *st = NULL;
        if (sv_client_status(c, &st) == 0) {
            ok = true;
            for (size_t i = 0; i < st->n_shards; i++) {
                uint64_t best = 0, mine = UINT64_MAX;
                for (size_t k = 0; k < st->shards[i].n_replicas; k++) {
                    const struct sv_status_replica *r = &st->shards[i].replicas[k];
                    if (r->applied > best)
                        best = r->applied;
                    if (r->node == (uint64_t)id)
                        mine = r->applied;
                }
                if (mine != UINT64_MAX && mine < best)
                    ok = false;
            }
            sv_client_status_free(st);
        }
        if (!ok)
            usleep(200 * 1000);
    }
    sv_client_close(c);
    return ok;
}

/* ---- runner: each test builds on the one before ---- */

static int set_up(void)
{
    for (int w = 0; w < WRITERS; w++)
        acked_[w] = calloc(KEYS_MAX, 1);
    it_up(&cl_, it_bin_dir(), "crash", 3, 3, 17200);
    return 0;
}

static void tear_down(void)
{
    it_down(&cl_);
    for (int w = 0; w < WRITERS; w++)
        free(acked_[w]);
}

static void test_kill_leader(void)
{
    run_writers_while(kill_leader);
    verify_acked("after leader kill");
    it_start(&cl_, victim_);
    CHECK(caught_up(victim_, 20000));
}

static void test_kill_follower(void)
{
    for (int w = 0; w < WRITERS; w++) {
        memset(acked_[w], 0, KEYS_MAX);
        atomic_store(&written_[w], 0);
    }
    /* Keys restart at 0 with new contents: clear them first. */
    it_down(&cl_);
    it_up(&cl_, it_bin_dir(), "crash2", 3, 3, 17250);
    run_writers_while(kill_follower);
    verify_acked("after follower kill");
    it_start(&cl_, victim_);
}

/* The restarted follower catches up (applied index of every shard it
 * holds reaches the others'); then, with it back, lose another replica:
 * the shards keep a quorum and every write. */
static void test_catch_up(void)
{
    CHECK(caught_up(victim_, 20000));
    int other = victim_ == 1 ? 2 : 1;
    it_kill(&cl_, other);
    verify_acked("restarted follower + one other");
    it_start(&cl_, other);
}

static const struct sv_test tests[] = {
    {"kill -9 leader mid-write", test_kill_leader},
    {"kill -9 follower", test_kill_follower},
    {"restart and catch up", test_catch_up},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-crash",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
