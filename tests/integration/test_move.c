/* Integration: one replica of a live shard moves from node 1 to node 4 (the
 * same zone) while writers keep writing to it. Every acknowledged write
 * stays readable, the map epoch grows by two (the new replica placed, the
 * old one dropped), clients follow the new map, the old node stops the
 * group and deletes its data, the new replica is a real one (the shard
 * keeps serving everything with another old replica down), and a restarted
 * old node places its groups from the adopted map, not from cluster.conf. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include "proto.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    NODES = 4,
    ZONES = 3,
    BASE_PORT = 17650,
    KEYS_MAX = 4096,
    BIG_BYTES = 5 << 19, /* 2.5 MiB: three chunks */
    BIG_COUNT = 3,
    MOVE_TIMEOUT_MS = 150000,
};

static struct it_cluster cl_;
static struct sv_client *client_;
static uint32_t shard_;    /* the shard that moves */
static uint64_t from_ = 1; /* its replica on node 1 (zone of nodes 1 and 4) */
static uint64_t to_ = 4;

/* Keys of shard_ written by the writers: acked[i] once acknowledged. */
static char keys_[KEYS_MAX][32];
static atomic_bool acked_[KEYS_MAX];
static atomic_int next_key_;
static atomic_bool stop_;
static atomic_int write_errors_;
static atomic_bool moving_; /* the MOVE request is out */
static atomic_int during_;  /* writes acknowledged while it was */

static uint32_t shard_of(const char *bucket, const char *key)
{
    return sv_shard_of(sv_object_hash(0, (const uint8_t *)bucket, strlen(bucket),
                                      (const uint8_t *)key, strlen(key)),
                       8);
}

/* Fill keys_ with names of objects in shard_ (8 shards). */
static void make_keys(void)
{
    int n = 0;
    for (int i = 0; n < KEYS_MAX; i++) {
        char k[32];
        snprintf(k, sizeof k, "k-%d", i);
        if (shard_of("mv", k) == shard_)
            snprintf(keys_[n++], sizeof keys_[0], "%s", k);
    }
}

static void *writer(void *arg)
{
    struct sv_client *c = arg;
    while (!atomic_load(&stop_)) {
        /* Round and round the keys until the move is over (the last keys
         * hold the big objects). */
        int i = atomic_fetch_add(&next_key_, 1) % (KEYS_MAX - BIG_COUNT);
        int rc = sv_client_put(c, "mv", keys_[i], keys_[i], strlen(keys_[i]), SV_IF_ANY, NULL);
        if (rc == SV_OK) {
            atomic_store(&acked_[i], true);
            if (atomic_load(&moving_))
                atomic_fetch_add(&during_, 1);
        } else
            atomic_fetch_add(&write_errors_, 1);
    }
    return NULL;
}

/* ---- a MOVE request over TLS ---------------------------------------------- */

static int call(int port, uint32_t type, const struct sv_msg *m, struct sv_msg *r, uint8_t **body,
                uint64_t timeout_ms)
{
    return it_call(&cl_, port, type, m, r, body, timeout_ms);
}

static int move_call(int id, const struct sv_msg *m, uint64_t timeout_ms, char *text, size_t tl,
                     uint64_t *leader)
{
    struct sv_msg r;
    uint8_t *body = NULL;
    *leader = 0;
    if (call(BASE_PORT + id, SV_MSG_MOVE, m, &r, &body, timeout_ms))
        return -1;
    int st = (int)r.status;
    snprintf(text, tl, "%s: %.*s", sv_status_name(st), (int)r.msg.len,
             r.msg.p ? (const char *)r.msg.p : "");
    if (SV_MSG_HAS(&r, SV_F_LEADER))
        *leader = r.leader;
    sv_msg_free(&r);
    free(body);
    return st;
}

static struct sv_msg move_msg(uint64_t shard, uint64_t from, uint64_t to)
{
    struct sv_msg m = {0};
    m.shard = shard;
    m.node = from;
    m.leader = to;
    SV_MSG_SET(&m, SV_F_SHARD);
    SV_MSG_SET(&m, SV_F_NODE);
    SV_MSG_SET(&m, SV_F_LEADER);
    return m;
}

/* Ask the meta group's leader to move shard_'s replica; its status. */
static int move_replica(char *why, size_t wl)
{
    uint64_t end = it_now_ms() + MOVE_TIMEOUT_MS;
    int node = 1;
    struct sv_msg m = move_msg(shard_, from_, to_);
    while (it_now_ms() < end) {
        uint64_t leader;
        int st = move_call(node, &m, end - it_now_ms(), why, wl, &leader);
        if (st == SV_ST_NOT_LEADER && leader >= 1 && leader <= NODES)
            node = (int)leader;
        else if (st < 0 || st == SV_ST_NOT_LEADER || st == SV_ST_UNAVAILABLE)
            node = node % NODES + 1;
        if (st >= 0 && st != SV_ST_NOT_LEADER && st != SV_ST_UNAVAILABLE)
            return st;
        usleep(st < 0 ? 200000 : 300000);
    }
    return SV_ST_UNAVAILABLE;
}

/* Turn the scheduler's rebalancing off (it would move replicas onto node 4
 * on its own, and the test moves one by hand); its status. */
static int rebalance_off(void)
{
    struct sv_msg m = {0};
    m.key = (struct sv_bytes){(const uint8_t *)"rebalance", 9};
    m.size = 0;
    SV_MSG_SET(&m, SV_F_KEY);
    SV_MSG_SET(&m, SV_F_SIZE);
    int node = 1;
    for (uint64_t end = it_now_ms() + 30000; it_now_ms() < end;) {
        struct sv_msg r;
        uint8_t *body = NULL;
        int st =
            call(BASE_PORT + node, SV_MSG_CLUSTER_SET, &m, &r, &body, 10000) ? -1 : (int)r.status;
        uint64_t leader = st >= 0 && SV_MSG_HAS(&r, SV_F_LEADER) ? r.leader : 0;
        if (st >= 0)
            sv_msg_free(&r);
        free(body);
        if (st == SV_ST_OK)
            return st;
        node = st == SV_ST_NOT_LEADER && leader >= 1 && leader <= NODES ? (int)leader
                                                                        : node % NODES + 1;
        usleep(300000);
    }
    return SV_ST_UNAVAILABLE;
}

/* The map's epoch once no replica moves: the meta leader's HEALTH, which
 * lists every group (the meta group too) with a replacement in flight or
 * below its replica count, is known and empty, at one epoch over two looks a
 * second apart. (A rebalance may start before rebalance_off lands.) */
static uint64_t settled_epoch(void)
{
    uint64_t last = 0;
    for (uint64_t end = it_now_ms() + 120000; it_now_ms() < end;) {
        struct sv_health *h = NULL;
        bool calm = sv_client_health(client_, &h) == SV_OK && h && h->known && h->n == 0;
        uint64_t epoch = calm ? h->epoch : 0;
        sv_client_health_free(h);
        if (calm && epoch == last)
            return epoch;
        last = epoch;
        usleep(1000000);
    }
    return 0;
}

static uint64_t epoch0_; /* the map's epoch before the move */

/* ---- the test --------------------------------------------------------------- */

static int set_up(void)
{
    it_up(&cl_, it_bin_dir(), "move", NODES, ZONES, BASE_PORT);
    client_ = it_client(&cl_, 30000);
    CHECK_EQ_INT(rebalance_off(), SV_ST_OK);
    epoch0_ = settled_epoch();
    CHECK(epoch0_ >= 2);
    /* A shard that node 1 holds and node 4 (same zone) does not. */
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    if (!s)
        return 1;
    CHECK(s->epoch == epoch0_);
    bool found = false;
    for (size_t i = 0; i < s->n_shards && !found; i++) {
        bool has1 = false, has4 = false;
        for (size_t j = 0; j < s->shards[i].n_replicas; j++) {
            has1 |= s->shards[i].replicas[j].node == from_;
            has4 |= s->shards[i].replicas[j].node == to_;
        }
        if (has1 && !has4) {
            shard_ = (uint32_t)s->shards[i].id;
            found = true;
        }
    }
    sv_client_status_free(s);
    CHECK(found);
    make_keys();
    return found ? 0 : 1;
}

static void tear_down(void)
{
    sv_client_close(client_);
    it_down(&cl_);
}

/* Moves that do not fit are refused by the meta leader, with the reason,
 * and change nothing; the other nodes send the request to it. */
static void test_refused(void)
{
    uint64_t holder = 0; /* a node holding shard_ besides from_ */
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    for (size_t j = 0; s && j < s->shards[shard_].n_replicas; j++)
        if (s->shards[shard_].replicas[j].node != from_)
            holder = s->shards[shard_].replicas[j].node;
    sv_client_status_free(s);
    CHECK(holder != 0);
    struct sv_msg taken = move_msg(shard_, from_, holder), bad_shard = move_msg(99, from_, to_),
                  no_shard = move_msg(shard_, from_, to_);
    no_shard.fields &= ~(1u << SV_F_SHARD);
    char text[256] = "";
    uint64_t leader = 0, end = it_now_ms() + 15000;
    int meta = 0; /* the meta leader, once one answers as such */
    while (!meta && it_now_ms() < end) {
        for (int id = 1; id <= NODES && !meta; id++) {
            int st = move_call(id, &taken, 5000, text, sizeof text, &leader);
            if (st == SV_ST_BAD_REQUEST)
                meta = id;
            else
                CHECK_MSG(st == SV_ST_NOT_LEADER || st == SV_ST_UNAVAILABLE, "node %d: %s", id,
                          text);
        }
        if (!meta)
            usleep(300000);
    }
    CHECK(meta != 0);
    CHECK_MSG(strstr(text, "holds a replica of the group already") != NULL, "%s", text);
    for (int id = 1; id <= NODES && meta; id++) {
        if (id == meta)
            continue;
        /* A meta member names the leader; a node outside the group names
         * a member, which redirects again. */
        CHECK_EQ_INT(move_call(id, &taken, 5000, text, sizeof text, &leader), SV_ST_NOT_LEADER);
        CHECK(leader >= 1 && leader <= 3 && leader != (uint64_t)id);
        if (id <= 3)
            CHECK_EQ_U64(leader, (uint64_t)meta);
    }
    if (meta) {
        CHECK_EQ_INT(move_call(meta, &bad_shard, 5000, text, sizeof text, &leader),
                     SV_ST_BAD_REQUEST);
        CHECK_EQ_INT(move_call(meta, &no_shard, 5000, text, sizeof text, &leader),
                     SV_ST_BAD_REQUEST);
        CHECK_MSG(strstr(text, "needs SHARD") != NULL, "%s", text);
    }
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    CHECK(s && s->epoch == epoch0_);
    sv_client_status_free(s);
}

static uint8_t *big_[BIG_COUNT];

static void test_move_under_load(void)
{
    /* Objects of several chunks in the shard before the move. */
    for (int i = 0; i < BIG_COUNT; i++) {
        big_[i] = malloc(BIG_BYTES);
        it_fill(big_[i], BIG_BYTES, 100 + (uint64_t)i);
        CHECK_RC(sv_client_put(client_, "mv", keys_[KEYS_MAX - 1 - i], big_[i], BIG_BYTES,
                               SV_IF_ANY, NULL),
                 SV_OK);
    }
    atomic_store(&next_key_, 0);
    pthread_t w[4];
    struct sv_client *wc[4];
    for (int i = 0; i < 4; i++) {
        wc[i] = it_client(&cl_, 30000);
        pthread_create(&w[i], NULL, writer, wc[i]);
    }
    usleep(500000);
    char why[256] = "";
    atomic_store(&moving_, true);
    uint64_t t0 = it_now_ms();
    int st = move_replica(why, sizeof why);
    uint64_t took = it_now_ms() - t0;
    atomic_store(&moving_, false);
    CHECK_MSG(st == SV_ST_OK, "move: %s", why);
    usleep(1000000); /* writes after the move too */
    atomic_store(&stop_, true);
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i], NULL);
        sv_client_close(wc[i]);
    }
    int written = 0;
    for (int i = 0; i < KEYS_MAX - BIG_COUNT; i++)
        written += atomic_load(&acked_[i]);
    printf("it-move: the move took %llu ms; %d writes acknowledged during it, %d keys written, "
           "%d writes failed\n",
           (unsigned long long)took, atomic_load(&during_), written, atomic_load(&write_errors_));
    CHECK(atomic_load(&during_) > 50);
}

static void test_map_followed(void)
{
    /* Epoch 1 + the new replica placed + the old one dropped. */
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    if (!s)
        return;
    CHECK_MSG(s->epoch == epoch0_ + 2, "epoch %llu", (unsigned long long)s->epoch);
    bool has_from = false, has_to = false;
    for (size_t j = 0; j < s->shards[shard_].n_replicas; j++) {
        has_from |= s->shards[shard_].replicas[j].node == from_;
        has_to |= s->shards[shard_].replicas[j].node == to_;
    }
    CHECK(has_to && !has_from);
    sv_client_status_free(s);
    char hosted[64];
    snprintf(hosted, sizeof hosted, "hosted here from map epoch %llu",
             (unsigned long long)epoch0_ + 1);
    CHECK(it_log_has(&cl_, 4, hosted));
    char text[64];
    snprintf(text, sizeof text, "group %u: no longer hosted here", shard_ + 1);
    CHECK(it_log_has(&cl_, 1, text));
    snprintf(text, sizeof text, "group %u: its data on this node is deleted", shard_ + 1);
    uint64_t end = it_now_ms() + 10000;
    while (!it_log_has(&cl_, 1, text) && it_now_ms() < end)
        usleep(100000);
    CHECK(it_log_has(&cl_, 1, text));
}

/* Every acknowledged write reads back, through a client that started with
 * the old map (it follows the new epoch) and one that starts now. */
static void read_all(struct sv_client *c)
{
    int bad = 0;
    for (int i = 0; i < KEYS_MAX - BIG_COUNT; i++) {
        if (!atomic_load(&acked_[i]))
            continue;
        void *d = NULL;
        size_t len = 0;
        int rc = sv_client_get(c, "mv", keys_[i], SV_LINEARIZABLE, &d, &len, NULL);
        if (rc != SV_OK || len != strlen(keys_[i]) || memcmp(d, keys_[i], len))
            bad++;
        free(d);
    }
    CHECK_MSG(bad == 0, "%d acknowledged writes do not read back", bad);
    for (int i = 0; i < BIG_COUNT; i++) {
        void *d = NULL;
        size_t len = 0;
        CHECK_RC(sv_client_get(c, "mv", keys_[KEYS_MAX - 1 - i], SV_LINEARIZABLE, &d, &len, NULL),
                 SV_OK);
        CHECK(len == BIG_BYTES && d && !memcmp(d, big_[i], BIG_BYTES));
        free(d);
    }
}

static void test_reads(void)
{
    read_all(client_);
    struct sv_client *fresh = it_client(&cl_, 30000);
    read_all(fresh);
    sv_client_close(fresh);
}

/* With another old replica down, the shard serves from node 4 and the
 * third: node 4 holds a real replica (and its chunks, or repairs them). */
static void test_new_replica_real(void)
{
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    int other = 0;
    for (size_t j = 0; s && j < s->shards[shard_].n_replicas; j++) {
        uint64_t id = s->shards[shard_].replicas[j].node;
        if (id != to_ && !other)
            other = (int)id;
    }
    sv_client_status_free(s);
    CHECK(other != 0);
    if (!other)
        return;
    it_kill(&cl_, other);
    read_all(client_);
    CHECK_RC(sv_client_put(client_, "mv", keys_[0], keys_[0], strlen(keys_[0]), SV_IF_ANY, NULL),
             SV_OK);
    it_start(&cl_, other);
}

/* Node 1 restarted places its groups from the map it adopted (DATA/map):
 * the moved shard stays away from it. */
static void test_restart_old_node(void)
{
    it_kill(&cl_, (int)from_);
    it_start(&cl_, (int)from_);
    usleep(3000000);
    char text[64];
    snprintf(text, sizeof text, "group %u: created", shard_ + 1);
    CHECK(!it_log_has(&cl_, 1, text));
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    for (size_t i = 0; s && i < s->n_nodes; i++)
        CHECK_MSG(strcmp(s->nodes[i].state, "up") == 0, "node %llu %s",
                  (unsigned long long)s->nodes[i].id, s->nodes[i].state);
    for (size_t j = 0; s && j < s->shards[shard_].n_replicas; j++)
        CHECK(s->shards[shard_].replicas[j].node != from_);
    sv_client_status_free(s);
    read_all(client_);
    for (int i = 0; i < BIG_COUNT; i++)
        free(big_[i]);
}

static const struct sv_test tests[] = {
    {"moves that do not fit are refused", test_refused},
    {"move under load", test_move_under_load},
    {"map followed", test_map_followed},
    {"acknowledged writes read back", test_reads},
    {"the new replica is a real one", test_new_replica_real},
    {"old node restarted", test_restart_old_node},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-move",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
    .timeout_s = 400,
};
