/* Integration: the scheduler on a real cluster of 6 nodes in 3 zones (16
 * shards, 3 replicas, down after 3 s, evicted after 8 s), one cluster for
 * every scenario, in this order:
 *   1. a killed node is evicted and its replicas rebuilt in the zones that
 *      lost them; every object stays readable during the repair and after,
 *      and a repaired shard serves every object from its new replica alone;
 *   2. the evicted node, restarted, serves nothing and stays evicted; wiped
 *      (deploy/cluster start --reset) it rejoins as a new node that gets its
 *      share by rebalancing;
 *   3. a drained node ends with no replica; removing it is refused before
 *      the drain and accepted after;
 *   4. the meta group's leader killed during a repair: the next one takes
 *      over and drives it (shards on both dead nodes wait: one live voter of
 *      three); the old leader, back before evict_after, is up again and
 *      every shard is repaired;
 *   5. a whole zone killed: every shard keeps serving (2 of 3 replicas), the
 *      zone's nodes are not evicted (no zone could take their replicas), and
 *      come back up when restarted;
 *   6. auto-evict off holds an eviction past evict_after; on, it proceeds.
 * Each scenario prints its timings ("it-sched: ..."). */
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
    NODES = 6,
    ZONES = 3,
    SHARDS = 16,
    REPLICAS = 3,
    BASE_PORT = 17950, /* nodes on 17951..17958 (7, 8: rejoined), metrics on 18951..18958 */
    IDS_MAX = 8,
    DOWN_S = 3,
    EVICT_S = 8,
    SMALL = 300,
    BIG = 12,
    OBJECTS = SMALL + BIG,
    BIG_BYTES = 5 << 19, /* 2.5 MiB: three chunks of 1 MiB */
    EXTRA = 20,          /* objects written while a zone is down */
    POLL_MS = 500,
};
/* A repair has evict_after and one minute (the bound). */
#define REPAIR_BOUND_MS ((EVICT_S + 60) * 1000ull)

static const char bucket_[] = "sched";
static struct it_cluster cl_;
static struct sv_client *client_;
static uint64_t evicted_[IDS_MAX + 1]; /* nodes evicted or removed so far (a set by id) */

/* ---- the objects ---------------------------------------------------------- */

static void obj_key(int i, char *k, size_t cap)
{
    snprintf(k, cap, "obj-%d", i);
}

/* Object i: small ones of 1..8000 bytes, then the big ones; seeded bytes. */
static size_t obj_size(int i)
{
    return i < SMALL ? 1 + (size_t)(i * 7919) % 8000 : BIG_BYTES;
}

static uint8_t *obj_bytes(int i, size_t *len)
{
    *len = obj_size(i);
    uint8_t *b = malloc(*len);
    ASSERT(b);
    it_fill(b, *len, 1000 + (uint64_t)i);
    return b;
}

static uint32_t obj_shard(int i)
{
    char k[32];
    obj_key(i, k, sizeof k);
    return sv_shard_of(sv_object_hash(0, bucket_, strlen(bucket_), k, strlen(k)), SHARDS);
}

static int put_obj(struct sv_client *c, int i)
{
    char k[32];
    size_t len;
    obj_key(i, k, sizeof k);
    uint8_t *b = obj_bytes(i, &len);
    int rc = sv_client_put(c, bucket_, k, b, len, SV_IF_ANY, NULL);
    free(b);
    return rc;
}

/* Read object i and compare it: 0, or why not in why. */
static int check_obj(struct sv_client *c, int i, enum sv_consistency cons, char *why, size_t cap)
{
    char k[32];
    obj_key(i, k, sizeof k);
    void *data = NULL;
    size_t len = 0, want_len;
    int rc = sv_client_get(c, bucket_, k, cons, &data, &len, NULL);
    if (rc) {
        snprintf(why, cap, "%s: %s: %s", k, sv_client_strerror(rc), sv_client_errmsg());
        return rc;
    }
    uint8_t *want = obj_bytes(i, &want_len);
    bool same = len == want_len && !memcmp(data, want, len);
    free(want);
    free(data);
    if (!same) {
        snprintf(why, cap, "%s: %zu bytes read differ from the %zu written", k, len, want_len);
        return -1;
    }
    return 0;
}

/* Read objects [0, n) (only those of shard when shard >= 0) and count what
 * fails, printing the first few. */
static int read_all(struct sv_client *c, int n, int shard, enum sv_consistency cons,
                    const char *what)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (shard >= 0 && obj_shard(i) != (uint32_t)shard)
            continue;
        char why[600];
        if (check_obj(c, i, cons, why, sizeof why) && bad++ < 5)
            fprintf(stderr, "it-sched: %s: %s\n", what, why);
    }
    return bad;
}

/* ---- the cluster as the scheduler sees it --------------------------------- */

static double ms_since(uint64_t t0)
{
    return (double)(it_now_ms() - t0) / 1000.0;
}

static struct sv_node_list *nodes_get(void)
{
    struct sv_node_list *l = NULL;
    int rc = sv_client_nodes(client_, &l);
    if (rc) {
        fprintf(stderr, "it-sched: NODES: %s: %s\n", sv_client_strerror(rc), sv_client_errmsg());
        return NULL;
    }
    return l;
}

static const struct sv_node_info *node_in(const struct sv_node_list *l, uint64_t id)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (l->nodes[i].id == id)
            return &l->nodes[i];
    return NULL;
}

/* Node id's state as the meta leader says ("" when unknown) into st. */
static void state_of(uint64_t id, char *st, size_t cap)
{
    struct sv_node_list *l = nodes_get();
    const struct sv_node_info *ni = node_in(l, id);
    snprintf(st, cap, "%s", ni ? ni->state : "");
    sv_client_node_list_free(l);
}

static bool up(const struct sv_node_list *l, uint64_t id)
{
    const struct sv_node_info *ni = node_in(l, id);
    return ni && !strcmp(ni->state, "up");
}

/* The zone of node id ("" when unknown). */
static const char *zone_of(const struct sv_node_list *l, uint64_t id)
{
    const struct sv_node_info *ni = node_in(l, id);
    return ni ? ni->zone : "";
}

/* Up nodes of zone other than skip. */
static int zone_up(const struct sv_node_list *l, const char *zone, uint64_t skip)
{
    int k = 0;
    for (size_t i = 0; i < l->n; i++)
        k += l->nodes[i].id != skip && !strcmp(l->nodes[i].state, "up") &&
             !strcmp(l->nodes[i].zone, zone);
    return k;
}

static char *metrics_of(uint64_t id)
{
    char *m = NULL;
    if (it_http_get(it_metrics_port(&cl_, (int)id), "/metrics", &m) != 200) {
        free(m);
        return NULL;
    }
    return m;
}

static double metric_of(uint64_t id, const char *series)
{
    char *m = metrics_of(id);
    double v = m ? it_metric(m, series) : NAN;
    free(m);
    return v;
}

/* The meta group's leader, as the nodes' metrics say (the highest term's
 * leader), 0 when none says so. */
static uint64_t meta_leader(void)
{
    uint64_t best = 0;
    double best_term = -1;
    for (uint64_t id = 1; id <= IDS_MAX; id++) {
        char *m = metrics_of(id);
        if (!m)
            continue;
        double lead = it_metric(m, "sv_raft_leader{group=\"0\"}");
        double term = it_metric(m, "sv_raft_term{group=\"0\"}");
        if (lead == 1 && term > best_term) {
            best = id;
            best_term = term;
        }
        free(m);
    }
    return best;
}

/* Node id hosts a replica of the meta group. */
static bool meta_member(uint64_t id)
{
    return !isnan(metric_of(id, "sv_raft_term{group=\"0\"}"));
}

static bool is_gone(uint64_t id)
{
    return id <= IDS_MAX && evicted_[id];
}

/* Every shard at 3 replicas in 3 zones, none on a node evicted or removed,
 * no replacement in flight (and, quiet, nothing reported at all), and the
 * map the status shows is the meta leader's: true; why says what is left
 * otherwise. */
static bool settled(bool quiet, char *why, size_t cap)
{
    struct sv_health *h = NULL;
    struct sv_cluster_status *s = NULL;
    bool ok = false;
    int rc = sv_client_health(client_, &h);
    if (rc) {
        snprintf(why, cap, "HEALTH: %s", sv_client_strerror(rc));
        goto out;
    }
    if (!h->known) {
        snprintf(why, cap, "health not known yet");
        goto out;
    }
    for (size_t i = 0; i < h->n; i++) {
        const struct sv_health_group *g = &h->groups[i];
        if (quiet || !strcmp(g->reason, "catching-up")) {
            snprintf(why, cap, "group %" PRIu64 ": %s: %s", g->group, g->reason, g->text);
            goto out;
        }
        for (size_t k = 0; k < g->n_replicas; k++)
            if (is_gone(g->replicas[k])) {
                snprintf(why, cap, "group %" PRIu64 " still on node %" PRIu64 " (%s)", g->group,
                         g->replicas[k], g->reason);
                goto out;
            }
    }
    if ((rc = sv_client_status(client_, &s))) {
        snprintf(why, cap, "STATUS: %s", sv_client_strerror(rc));
        goto out;
    }
    if (s->epoch != h->epoch) {
        snprintf(why, cap, "status map epoch %" PRIu64 ", meta leader's %" PRIu64, s->epoch,
                 h->epoch);
        goto out;
    }
    if (s->n_shards != SHARDS) {
        snprintf(why, cap, "%zu shards", s->n_shards);
        goto out;
    }
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_status_shard *sh = &s->shards[i];
        if (sh->n_replicas != REPLICAS) {
            snprintf(why, cap, "shard %" PRIu64 " has %zu replicas", sh->id, sh->n_replicas);
            goto out;
        }
        for (size_t a = 0; a < sh->n_replicas; a++) {
            if (is_gone(sh->replicas[a].node)) {
                snprintf(why, cap, "shard %" PRIu64 " on node %" PRIu64, sh->id,
                         sh->replicas[a].node);
                goto out;
            }
            for (size_t b = 0; b < a; b++)
                if (!strcmp(sh->replicas[a].zone, sh->replicas[b].zone)) {
                    snprintf(why, cap, "shard %" PRIu64 ": nodes %" PRIu64 " and %" PRIu64 " in %s",
                             sh->id, sh->replicas[a].node, sh->replicas[b].node,
                             sh->replicas[a].zone);
                    goto out;
                }
        }
    }
    ok = true;
out:
    sv_client_health_free(h);
    sv_client_status_free(s);
    return ok;
}

static bool holds(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t k = 0; k < n; k++)
        if (ids[k] == id)
            return true;
    return false;
}

/* Scenario 4 with nodes a (evicted) and l (down) dead: a group with
 * replicas on both has one live voter of three and cannot change its
 * configuration (Raft needs a majority to commit one): it keeps its replica
 * on a. Every other group is repaired: true, *stuck the groups held so;
 * why says what is left otherwise. */
static bool repaired_but_stuck(uint64_t a, uint64_t l, int *stuck, char *why, size_t cap)
{
    struct sv_health *h = NULL;
    struct sv_cluster_status *s = NULL;
    bool ok = false;
    *stuck = 0;
    if (sv_client_health(client_, &h) || !h->known) {
        snprintf(why, cap, "health not known");
        goto out;
    }
    for (size_t i = 0; i < h->n; i++) {
        const struct sv_health_group *g = &h->groups[i];
        bool on_a = holds(g->replicas, g->n_replicas, a),
             on_l = holds(g->replicas, g->n_replicas, l);
        if (on_a && on_l)
            continue;
        if (on_a || !strcmp(g->reason, "catching-up")) {
            snprintf(why, cap, "group %" PRIu64 ": %s: %s", g->group, g->reason, g->text);
            goto out;
        }
    }
    if (sv_client_status(client_, &s) || s->epoch != h->epoch) {
        snprintf(why, cap, "status not at the meta leader's epoch");
        goto out;
    }
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_status_shard *sh = &s->shards[i];
        uint64_t ids[16];
        for (size_t k = 0; k < sh->n_replicas; k++)
            ids[k] = sh->replicas[k].node;
        if (holds(ids, sh->n_replicas, a) && holds(ids, sh->n_replicas, l)) {
            (*stuck)++;
            continue;
        }
        bool zones_ok = sh->n_replicas == REPLICAS;
        for (size_t x = 0; x < sh->n_replicas; x++)
            for (size_t y = 0; y < x; y++)
                zones_ok &= strcmp(sh->replicas[x].zone, sh->replicas[y].zone) != 0;
        if (!zones_ok || holds(ids, sh->n_replicas, a)) {
            snprintf(why, cap, "shard %" PRIu64 ": %zu replicas, zones %s", sh->id, sh->n_replicas,
                     zones_ok ? "distinct" : "not distinct");
            goto out;
        }
    }
    ok = true;
out:
    sv_client_health_free(h);
    sv_client_status_free(s);
    return ok;
}

/* Every node that is not evicted or removed is up (none was evicted
 * alive, none left down). */
static void check_all_up(const char *what)
{
    struct sv_node_list *l = nodes_get();
    CHECK(l != NULL);
    for (size_t i = 0; l && i < l->n; i++)
        CHECK_MSG(is_gone(l->nodes[i].id) || !strcmp(l->nodes[i].state, "up"),
                  "%s: node %" PRIu64 " is %s", what, l->nodes[i].id, l->nodes[i].state);
    sv_client_node_list_free(l);
}

/* settled() within timeout_ms: the time it took in ms, or -1 (checked). */
static int64_t wait_settled(bool quiet, uint64_t t0, uint64_t timeout_ms, const char *what)
{
    char why[1400] = "";
    while (it_now_ms() - t0 < timeout_ms) {
        if (settled(quiet, why, sizeof why))
            return (int64_t)(it_now_ms() - t0);
        usleep(POLL_MS * 1000);
    }
    CHECK_MSG(false, "%s: not settled after %.1f s: %s", what, ms_since(t0), why);
    return -1;
}

/* Node id reaches state within timeout_ms of t0: the time in ms, or -1. */
static int64_t wait_state(uint64_t id, const char *state, uint64_t t0, uint64_t timeout_ms)
{
    char st[32] = "";
    while (it_now_ms() - t0 < timeout_ms) {
        state_of(id, st, sizeof st);
        if (!strcmp(st, state))
            return (int64_t)(it_now_ms() - t0);
        usleep(POLL_MS * 1000);
    }
    CHECK_MSG(false, "node %" PRIu64 " is '%s', not %s, %.1f s on", id, st, state, ms_since(t0));
    return -1;
}

static void set(const char *name, uint64_t value)
{
    struct sv_cluster_settings s;
    memset(&s, 0, sizeof s);
    CHECK_RC(sv_client_cluster_set(client_, name, value, &s), SV_OK);
    /* the answer is every setting after the change, not only the status */
    uint64_t got = !strcmp(name, "evict-after")  ? s.evict_after_s
                   : !strcmp(name, "auto-evict") ? s.auto_evict
                                                 : value;
    CHECK_MSG(got == value && s.down_after_s >= 1 && s.moves_per_node >= 1 && s.epoch >= 1,
              "cluster set %s %" PRIu64 " answered %s=%" PRIu64 ", down-after %" PRIu64, name,
              value, name, got, s.down_after_s);
}

/* The scheduler's log holds an event of action, reason about node. */
static bool logged(const char *action, const char *reason, int64_t node)
{
    struct sv_sched_log *l = NULL;
    bool found = false;
    if (sv_client_sched_log(client_, &l) == 0)
        for (size_t i = 0; i < l->n && !found; i++)
            found = !strcmp(l->events[i].action, action) && !strcmp(l->events[i].reason, reason) &&
                    (node < 0 || l->events[i].node == node);
    sv_client_sched_log_free(l);
    return found;
}

static void print_health(const char *what)
{
    struct sv_health *h = NULL;
    if (sv_client_health(client_, &h))
        return;
    printf("it-sched: %s: health known %d, %zu groups reported\n", what, h->known, h->n);
    for (size_t i = 0; i < h->n; i++)
        printf("  group %" PRIu64 ": %s: %s\n", h->groups[i].group, h->groups[i].reason,
               h->groups[i].text);
    sv_client_health_free(h);
}

/* The scheduler's last n decisions, for a failure's diagnosis. */
static void print_log(const char *what, size_t n)
{
    struct sv_sched_log *l = NULL;
    if (sv_client_sched_log(client_, &l))
        return;
    printf("it-sched: %s: the scheduler's last %zu decisions:\n", what, n);
    for (size_t i = l->n > n ? l->n - n : 0; i < l->n; i++)
        printf("  %s %s: %s\n", l->events[i].action, l->events[i].reason, l->events[i].text);
    sv_client_sched_log_free(l);
}

/* ---- a reader during a repair --------------------------------------------- */

struct reader {
    pthread_t t;
    struct sv_client *c;
    atomic_bool stop;
    atomic_int reads, errors;
};

static void *reader_run(void *arg)
{
    struct reader *r = arg;
    for (int i = 0; !atomic_load(&r->stop); i = (i + 1) % OBJECTS) {
        char why[600];
        if (check_obj(r->c, i, SV_LINEARIZABLE, why, sizeof why)) {
            if (atomic_fetch_add(&r->errors, 1) < 5)
                fprintf(stderr, "it-sched: reader: %s\n", why);
        } else {
            atomic_fetch_add(&r->reads, 1);
        }
    }
    return NULL;
}

static void reader_start(struct reader *r)
{
    memset(r, 0, sizeof *r);
    r->c = it_client(&cl_, 30000);
    pthread_create(&r->t, NULL, reader_run, r);
}

static void reader_stop(struct reader *r, const char *what)
{
    atomic_store(&r->stop, true);
    pthread_join(r->t, NULL);
    sv_client_close(r->c);
    printf("it-sched: %s: %d reads byte-equal, %d failed\n", what, atomic_load(&r->reads),
           atomic_load(&r->errors));
    CHECK_EQ_INT(atomic_load(&r->errors), 0);
    CHECK(atomic_load(&r->reads) > 0);
}

/* ---- set-up ---------------------------------------------------------------- */

static int set_up(void)
{
    char opts[128];
    snprintf(opts, sizeof opts, "--shards %d --down-after %d --evict-after %d", SHARDS, DOWN_S,
             EVICT_S);
    it_up_opts(&cl_, it_bin_dir(), "sched", NODES, ZONES, BASE_PORT, opts);
    client_ = it_client(&cl_, 20000);
    uint64_t t0 = it_now_ms();
    int bad = 0;
    for (int i = 0; i < OBJECTS; i++) {
        int rc = put_obj(client_, i);
        if (rc && bad++ < 5)
            fprintf(stderr, "it-sched: put %d: %s: %s\n", i, sv_client_strerror(rc),
                    sv_client_errmsg());
    }
    CHECK_EQ_INT(bad, 0);
    printf("it-sched: wrote %d objects (%d of 2.5 MiB) in %.1f s\n", OBJECTS, BIG, ms_since(t0));
    /* Every node up and heard, nothing to do: the scenarios start from rest. */
    return bad || wait_settled(true, it_now_ms(), 30000, "set-up") < 0;
}

static void tear_down(void)
{
    sv_client_close(client_);
    it_down(&cl_);
}

/* ---- 1. a node killed --------------------------------------------------------- */

static uint64_t victim_; /* the node scenario 1 kills (scenario 2 restarts it) */

static void test_kill_repair(void)
{
    struct sv_node_list *l = nodes_get();
    CHECK(l != NULL);
    if (!l)
        return;
    uint64_t leader = meta_leader();
    CHECK(leader != 0);
    /* Not a member of the meta group (scenario 4 is about that): the
     * highest such id, so that its zone-mate is a low id. */
    for (uint64_t id = NODES; id >= 1 && !victim_; id--)
        if (id != leader && !meta_member(id) && up(l, id))
            victim_ = id;
    CHECK(victim_ != 0);
    char zone[SV_CLIENT_NAME_MAX + 1];
    snprintf(zone, sizeof zone, "%s", zone_of(l, victim_));
    uint64_t mate = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->nodes[i].id != victim_ && !strcmp(l->nodes[i].zone, zone))
            mate = l->nodes[i].id;
    uint64_t held = node_in(l, victim_) ? node_in(l, victim_)->replicas : 0;
    sv_client_node_list_free(l);
    CHECK(mate != 0 && held > 0);
    if (!victim_ || !mate)
        return;
    /* The shards on the victim: one of them is read from its new replica. */
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    bool on_victim[SHARDS] = {false};
    for (size_t i = 0; s && i < s->n_shards && i < SHARDS; i++)
        for (size_t k = 0; k < s->shards[i].n_replicas; k++)
            on_victim[s->shards[i].id] |= s->shards[i].replicas[k].node == victim_;
    sv_client_status_free(s);
    printf("it-sched: 1: meta leader %" PRIu64 "; killing node %" PRIu64 " (%s, %" PRIu64
           " replicas; its zone-mate is node %" PRIu64 ")\n",
           leader, victim_, zone, held, mate);

    struct reader r;
    reader_start(&r);
    usleep(300 * 1000);
    uint64_t t0 = it_now_ms();
    it_kill(&cl_, (int)victim_);
    int64_t t_down = -1, t_evicted = -1, t_replace = -1;
    char st[32] = "", why[1400] = "";
    bool done = false;
    while (!done && it_now_ms() - t0 < REPAIR_BOUND_MS) {
        usleep(POLL_MS * 1000);
        state_of(victim_, st, sizeof st);
        if (t_down < 0 && (!strcmp(st, "down") || !strcmp(st, "evicted")))
            t_down = (int64_t)(it_now_ms() - t0);
        if (t_evicted < 0 && !strcmp(st, "evicted")) {
            t_evicted = (int64_t)(it_now_ms() - t0);
            evicted_[victim_] = 1;
        }
        if (t_evicted >= 0 && t_replace < 0 && logged("replace", "repair", (int64_t)victim_))
            t_replace = (int64_t)(it_now_ms() - t0);
        done = t_evicted >= 0 && settled(true, why, sizeof why);
    }
    int64_t t_done = done ? (int64_t)(it_now_ms() - t0) : -1;
    reader_stop(&r, "1: reader during the repair");
    printf("it-sched: 1: node %" PRIu64 " down after %.1f s, evicted after %.1f s, first repair "
           "seen after %.1f s, every shard at 3 in 3 zones after %.1f s\n",
           victim_, t_down / 1000.0, t_evicted / 1000.0, t_replace / 1000.0, t_done / 1000.0);
    CHECK_MSG(done, "1: no full repair within %llu s: %s", REPAIR_BOUND_MS / 1000, why);
    CHECK(t_down >= (DOWN_S - 1) * 1000);
    CHECK(t_evicted >= (EVICT_S - 1) * 1000);
    CHECK_MSG(!strcmp(st, "evicted"), "node %" PRIu64 " is %s", victim_, st);
    CHECK(t_replace >= 0);
    CHECK_EQ_INT(read_all(client_, OBJECTS, -1, SV_LINEARIZABLE, "1: after the repair"), 0);

    /* The new replicas are real: the zone-mate holds every chunk of what it
     * received, and one repaired shard with its two other replicas killed
     * serves every object from it (stale reads: no quorum). The two are
     * kept from being evicted meanwhile. */
    CHECK(metric_of(mate, "sv_copy_groups_pending") == 0);
    CHECK(metric_of(mate, "sv_copy_chunks_missing") == 0);
    CHECK_RC(sv_client_status(client_, &s), SV_OK);
    int shard = -1;
    size_t best = 0;
    for (size_t i = 0; s && i < s->n_shards; i++) {
        uint64_t id = s->shards[i].id;
        size_t bytes = 0;
        for (int o = 0; o < OBJECTS; o++)
            bytes += obj_shard(o) == id ? obj_size(o) : 0;
        if (id < SHARDS && on_victim[id] && bytes > best) {
            best = bytes;
            shard = (int)id;
        }
    }
    CHECK(shard >= 0);
    uint64_t others[2] = {0, 0};
    int n_others = 0;
    for (size_t i = 0; s && shard >= 0 && i < s->n_shards; i++)
        for (size_t k = 0; s->shards[i].id == (uint64_t)shard && k < s->shards[i].n_replicas; k++)
            if (s->shards[i].replicas[k].node != mate && n_others < 2)
                others[n_others++] = s->shards[i].replicas[k].node;
    sv_client_status_free(s);
    CHECK_EQ_INT(n_others, 2);
    if (n_others != 2)
        return;
    set("evict-after", 60);
    uint64_t t1 = it_now_ms();
    it_kill(&cl_, (int)others[0]);
    it_kill(&cl_, (int)others[1]);
    struct sv_client *c = it_client(&cl_, 15000);
    int n = 0;
    for (int o = 0; o < OBJECTS; o++)
        n += obj_shard(o) == (uint32_t)shard;
    CHECK_EQ_INT(read_all(c, OBJECTS, shard, SV_STALE, "1: from the new replica alone"), 0);
    sv_client_close(c);
    CHECK(!it_log_has(&cl_, (int)mate, "repairing from a replica"));
    printf("it-sched: 1: shard %d (%d objects, %zu bytes) read from node %" PRIu64
           " alone (nodes %" PRIu64 " and %" PRIu64 " killed) in %.1f s\n",
           shard, n, best, mate, others[0], others[1], ms_since(t1));
    it_start(&cl_, (int)others[0]);
    it_start(&cl_, (int)others[1]);
    uint64_t t2 = it_now_ms();
    int64_t back = wait_settled(true, t2, 60000, "1: the two replicas back");
    printf("it-sched: 1: nodes %" PRIu64 " and %" PRIu64 " up again, nothing reported, after "
           "%.1f s\n",
           others[0], others[1], back / 1000.0);
    set("evict-after", EVICT_S);
    /* Past evict_after from their restart: every live node still up (the
     * meta leader of before, one of the two, lost its quorum: it must beat
     * at the next one). */
    usleep((EVICT_S + 2) * 1000 * 1000);
    check_all_up("1");
}

/* ---- 2. the evicted node comes back ----------------------------------------- */

static void test_evicted_rejoins(void)
{
    CHECK(victim_ != 0 && evicted_[victim_]);
    if (!victim_)
        return;
    uint64_t t0 = it_now_ms();
    it_start(&cl_, (int)victim_);
    bool said = false;
    while (!said && it_now_ms() - t0 < 20000) {
        usleep(POLL_MS * 1000);
        said = it_log_has(&cl_, (int)victim_, "evicted in the cluster map");
    }
    CHECK_MSG(said, "node %" PRIu64 " did not log that it is evicted", victim_);
    printf("it-sched: 2: node %" PRIu64 " restarted, said it is evicted after %.1f s\n", victim_,
           ms_since(t0));
    /* It serves nothing: no group, no heartbeat that would make it up. */
    usleep((DOWN_S + 1) * 1000 * 1000);
    struct sv_node_list *l = nodes_get();
    const struct sv_node_info *ni = node_in(l, victim_);
    CHECK(ni && !strcmp(ni->state, "evicted"));
    CHECK(ni && ni->replicas == 0);
    sv_client_node_list_free(l);
    char *m = metrics_of(victim_);
    CHECK(m != NULL);
    CHECK_MSG(m && !strstr(m, "sv_raft_term{"), "node %" PRIu64 " still hosts a group", victim_);
    free(m);

    /* Wiped, it rejoins as a new node (the next id) in its zone. */
    uint64_t fresh = IDS_MAX - 1; /* 7: the ids in cluster.conf are 1..6 */
    uint64_t t1 = it_now_ms();
    CHECK_EQ_INT(it_sh("'%s/deploy/cluster' start %d --reset --dir '%s' >&2", SV_SOURCE_DIR,
                       (int)victim_, cl_.dir),
                 0);
    int64_t joined = wait_state(fresh, "up", t1, 30000);
    CHECK(joined >= 0);
    /* It gets its share: within one of its zone's mean (a zone holds one
     * replica of every group: its nodes split them). */
    char why[1400] = "";
    bool balanced = false;
    while (!balanced && it_now_ms() - t1 < 90000) {
        usleep(POLL_MS * 1000);
        if (!settled(true, why, sizeof why))
            continue;
        l = nodes_get();
        balanced = l != NULL;
        for (size_t i = 0; l && i < l->n; i++) {
            const struct sv_node_info *a = &l->nodes[i];
            if (strcmp(a->state, "up"))
                continue;
            uint64_t sum = 0, k = 0;
            for (size_t j = 0; j < l->n; j++)
                if (!strcmp(l->nodes[j].state, "up") && !strcmp(l->nodes[j].zone, a->zone)) {
                    sum += l->nodes[j].replicas;
                    k++;
                }
            if ((double)a->replicas > (double)sum / (double)k + 1 ||
                (double)a->replicas < (double)sum / (double)k - 1) {
                balanced = false;
                snprintf(why, sizeof why,
                         "node %" PRIu64 " holds %" PRIu64 " of its zone's %" PRIu64, a->id,
                         a->replicas, sum);
            }
        }
        sv_client_node_list_free(l);
    }
    CHECK_MSG(balanced, "2: not balanced after %.1f s: %s", ms_since(t1), why);
    l = nodes_get();
    for (size_t i = 0; l && i < l->n; i++)
        printf("it-sched: 2: node %" PRIu64 " %s %s: %" PRIu64 " replicas, %" PRIu64 " leaders\n",
               l->nodes[i].id, l->nodes[i].zone, l->nodes[i].state, l->nodes[i].replicas,
               l->nodes[i].leaders);
    CHECK(node_in(l, fresh) && node_in(l, fresh)->replicas > 0);
    CHECK(node_in(l, victim_) && !strcmp(node_in(l, victim_)->state, "evicted"));
    sv_client_node_list_free(l);
    printf("it-sched: 2: node %" PRIu64 " rejoined as node %" PRIu64 ", up after %.1f s, "
           "balanced after %.1f s\n",
           victim_, fresh, joined / 1000.0, ms_since(t1));
    check_all_up("2");
}

/* ---- 3. drain, remove ------------------------------------------------------- */

static uint64_t drained_;

static void test_drain_remove(void)
{
    struct sv_node_list *l = nodes_get();
    uint64_t leader = meta_leader();
    /* A node of a zone the scenarios above left alone, not the meta leader. */
    const char *vz = "";
    for (size_t i = 0; l && i < l->n; i++)
        if (l->nodes[i].id == victim_)
            vz = l->nodes[i].zone;
    for (size_t i = 0; l && i < l->n && !drained_; i++)
        if (strcmp(l->nodes[i].zone, vz) && l->nodes[i].id != leader && up(l, l->nodes[i].id))
            drained_ = l->nodes[i].id;
    CHECK(drained_ != 0);
    uint64_t held = node_in(l, drained_) ? node_in(l, drained_)->replicas : 0;
    sv_client_node_list_free(l);
    if (!drained_)
        return;
    /* Not drained: refused, with a sentence. */
    CHECK_RC(sv_client_node_remove(client_, drained_, false), SV_E_BAD_ARGUMENT);
    printf("it-sched: 3: removing node %" PRIu64 " undrained: %s\n", drained_, sv_client_errmsg());
    CHECK(strstr(sv_client_errmsg(), "drain it first") != NULL);
    char st[32];
    state_of(drained_, st, sizeof st);
    CHECK(!strcmp(st, "up"));

    uint64_t t0 = it_now_ms();
    CHECK_RC(sv_client_node_drain(client_, drained_, false), SV_OK);
    state_of(drained_, st, sizeof st);
    CHECK(!strcmp(st, "draining"));
    int64_t empty = -1;
    char why[1400] = "";
    while (empty < 0 && it_now_ms() - t0 < 120000) {
        usleep(POLL_MS * 1000);
        l = nodes_get();
        const struct sv_node_info *ni = node_in(l, drained_);
        if (ni && ni->replicas == 0) {
            evicted_[drained_] = 1; /* for settled(): nothing may stay on it */
            if (settled(true, why, sizeof why))
                empty = (int64_t)(it_now_ms() - t0);
            evicted_[drained_] = 0;
        } else if (ni) {
            snprintf(why, sizeof why, "node %" PRIu64 " %s, %" PRIu64 " replicas", drained_,
                     ni->state, ni->replicas);
        }
        sv_client_node_list_free(l);
    }
    CHECK_MSG(empty >= 0, "3: node %" PRIu64 " not drained after %.1f s: %s", drained_,
              ms_since(t0), why);
    printf("it-sched: 3: node %" PRIu64 " drained (%" PRIu64 " replicas) in %.1f s\n", drained_,
           held, empty / 1000.0);
    CHECK_RC(sv_client_node_remove(client_, drained_, false), SV_OK);
    state_of(drained_, st, sizeof st);
    CHECK_MSG(!strcmp(st, "removed"), "node %" PRIu64 " is %s", drained_, st);
    evicted_[drained_] = 1;
    it_kill(&cl_, (int)drained_); /* it serves nothing: save the CPU */
    CHECK_EQ_INT(read_all(client_, OBJECTS, -1, SV_LINEARIZABLE, "3: after the drain"), 0);
    check_all_up("3");
}

/* ---- 4. the meta leader killed during a repair ---------------------------------- */

static void test_meta_leader_killed(void)
{
    /* A meta leader that stays: leader-balance moves leaderships at rest
     * (one per group every 5 s at most), none once a repair is pending. */
    uint64_t leader = meta_leader(), t_stable = it_now_ms();
    for (uint64_t again = 0; it_now_ms() - t_stable < 30000; leader = again) {
        usleep(6000 * 1000);
        if ((again = meta_leader()) == leader)
            break;
    }
    struct sv_node_list *l = nodes_get();
    CHECK(leader != 0 && l != NULL);
    if (!leader || !l)
        return;
    /* A node outside the meta group (both dead would leave it no quorum),
     * outside the leader's zone, whose zone has another node up to take its
     * replicas. */
    uint64_t a = 0;
    char lz[SV_CLIENT_NAME_MAX + 1];
    snprintf(lz, sizeof lz, "%s", zone_of(l, leader));
    for (size_t i = 0; i < l->n && !a; i++) {
        const struct sv_node_info *ni = &l->nodes[i];
        if (up(l, ni->id) && strcmp(ni->zone, lz) && zone_up(l, ni->zone, ni->id) > 0 &&
            !meta_member(ni->id))
            a = ni->id;
    }
    sv_client_node_list_free(l);
    CHECK(a != 0);
    if (!a)
        return;
    printf("it-sched: 4: meta leader %" PRIu64 " (%s); killing node %" PRIu64 "\n", leader, lz, a);
    uint64_t t0 = it_now_ms();
    it_kill(&cl_, (int)a);
    /* Until a replacement is in flight. */
    bool flight = false;
    while (!flight && it_now_ms() - t0 < REPAIR_BOUND_MS) {
        usleep(250 * 1000);
        struct sv_health *h = NULL;
        if (sv_client_health(client_, &h) == 0)
            for (size_t i = 0; i < h->n && !flight; i++)
                flight = !strcmp(h->groups[i].reason, "catching-up");
        sv_client_health_free(h);
    }
    CHECK(flight);
    evicted_[a] = 1;
    double t_flight = ms_since(t0);
    /* The old leader must come back as itself: no eviction for a while. */
    set("evict-after", 30);
    /* The leader of now: leadership may have moved since (leader-balance). */
    leader = meta_leader();
    l = nodes_get();
    char az[SV_CLIENT_NAME_MAX + 1];
    snprintf(az, sizeof az, "%s", zone_of(l, a));
    snprintf(lz, sizeof lz, "%s", zone_of(l, leader));
    sv_client_node_list_free(l);
    CHECK_MSG(leader != 0 && leader != a && strcmp(az, lz),
              "4: the meta leader %" PRIu64 " moved into the zone of node %" PRIu64
              " (%s): its repairs would have no target",
              leader, a, az);
    printf("it-sched: 4: killing the meta leader, node %" PRIu64 " (%s)\n", leader, lz);
    uint64_t t1 = it_now_ms();
    it_kill(&cl_, (int)leader);
    uint64_t next = 0;
    while (!next && it_now_ms() - t1 < 30000) {
        usleep(250 * 1000);
        next = meta_leader();
    }
    CHECK(next != 0 && next != leader);
    double t_next = ms_since(t1);
    int stuck = 0;
    char why[1400] = "";
    int64_t done = -1;
    /* Not checked, observed: the groups on both dead nodes keep their
     * replacements in flight, and those count against moves_per_node on
     * the target, which can hold every other repair back until the old
     * leader returns (see the report of the issue). */
    while (done < 0 && it_now_ms() - t1 < 25000) {
        usleep(POLL_MS * 1000);
        if (repaired_but_stuck(a, leader, &stuck, why, sizeof why))
            done = (int64_t)(it_now_ms() - t1);
    }
    if (done < 0)
        printf("it-sched: 4: with the old leader down, not every repairable shard repaired "
               "after %.1f s: %s\n",
               ms_since(t1), why);
    char st[32];
    state_of(a, st, sizeof st);
    CHECK_MSG(!strcmp(st, "evicted"), "node %" PRIu64 " is %s", a, st);
    state_of(leader, st, sizeof st);
    CHECK_MSG(!strcmp(st, "down"), "node %" PRIu64 " is %s", leader, st);
    print_health("4: repaired, the old leader down");
    printf("it-sched: 4: replacement in flight %.1f s after the kill of node %" PRIu64
           "; meta leader %" PRIu64 " killed, node %" PRIu64 " leads %.1f s later; every "
           "shard not on both dead nodes repaired %.1f s after that kill (%d on both wait)\n",
           t_flight, a, leader, next, t_next, done / 1000.0, stuck);
    /* The old leader back: the groups it held back are repaired too. */
    uint64_t t2 = it_now_ms();
    it_start(&cl_, (int)leader);
    int64_t back = wait_settled(true, t2, REPAIR_BOUND_MS, "4: the old leader back");
    state_of(leader, st, sizeof st);
    CHECK_MSG(!strcmp(st, "up"), "node %" PRIu64 " is %s", leader, st);
    printf("it-sched: 4: node %" PRIu64 " up again, every shard repaired, nothing reported, "
           "%.1f s after its start\n",
           leader, back / 1000.0);
    CHECK_EQ_INT(read_all(client_, OBJECTS, -1, SV_LINEARIZABLE, "4: after the repair"), 0);
    check_all_up("4");
    set("evict-after", EVICT_S);
}

/* ---- 5. a whole zone down ----------------------------------------------------- */

static void test_zone_down(void)
{
    struct sv_node_list *l = nodes_get();
    CHECK(l != NULL);
    if (!l)
        return;
    /* The zone with the most nodes up. */
    const char *zone = NULL;
    int most = 0;
    for (size_t i = 0; i < l->n; i++) {
        int k = zone_up(l, l->nodes[i].zone, 0);
        if (k > most) {
            most = k;
            zone = l->nodes[i].zone;
        }
    }
    uint64_t dead[IDS_MAX];
    int n_dead = 0;
    for (size_t i = 0; zone && i < l->n; i++)
        if (up(l, l->nodes[i].id) && !strcmp(l->nodes[i].zone, zone))
            dead[n_dead++] = l->nodes[i].id;
    char zname[SV_CLIENT_NAME_MAX + 1];
    snprintf(zname, sizeof zname, "%s", zone ? zone : "");
    sv_client_node_list_free(l);
    CHECK(n_dead > 0);
    printf("it-sched: 5: killing %s (%d nodes)\n", zname, n_dead);
    print_health("5: before");
    uint64_t t0 = it_now_ms();
    for (int i = 0; i < n_dead; i++)
        it_kill(&cl_, (int)dead[i]);
    /* Service goes on: writes and reads. */
    int bad = 0;
    for (int i = OBJECTS; i < OBJECTS + EXTRA; i++) {
        int rc = put_obj(client_, i);
        if (rc && bad++ < 5)
            fprintf(stderr, "it-sched: 5: put %d: %s: %s\n", i, sv_client_strerror(rc),
                    sv_client_errmsg());
    }
    CHECK_EQ_INT(bad, 0);
    double t_writes = ms_since(t0);
    CHECK_EQ_INT(read_all(client_, OBJECTS + EXTRA, -1, SV_LINEARIZABLE, "5: zone down"), 0);
    double t_reads = ms_since(t0);
    /* Past evict_after, and well past: down, never evicted (no zone could
     * take their replicas), and said why. */
    bool evicted = false;
    while (it_now_ms() - t0 < (DOWN_S + EVICT_S + 5) * 1000ull) {
        usleep(POLL_MS * 1000);
        for (int i = 0; i < n_dead; i++) {
            char st[32];
            state_of(dead[i], st, sizeof st);
            if (!strcmp(st, "evicted")) {
                evicted = true;
                fprintf(stderr, "it-sched: 5: node %" PRIu64 " evicted\n", dead[i]);
            }
        }
    }
    CHECK(!evicted);
    if (evicted)
        print_log("5: evicted", 60);
    for (int i = 0; i < n_dead; i++) {
        char st[32];
        state_of(dead[i], st, sizeof st);
        CHECK_MSG(!strcmp(st, "down"), "node %" PRIu64 " is %s", dead[i], st);
        CHECK_MSG(logged("report", "no-zone-available", (int64_t)dead[i]),
                  "no no-zone-available report for node %" PRIu64, dead[i]);
    }
    print_health("5: zone down past evict_after");
    struct sv_health *h = NULL;
    CHECK_RC(sv_client_health(client_, &h), SV_OK);
    int reported = 0;
    for (size_t i = 0; h && i < h->n; i++)
        reported += !strcmp(h->groups[i].reason, "no-zone-available");
    CHECK_MSG(h && reported == (int)h->n && h->n == SHARDS + 1,
              "%d of %zu groups reported no-zone-available", reported, h ? h->n : 0);
    sv_client_health_free(h);
    /* Restarted one by one, the first back is a target for the others'
     * replicas, which are past evict_after: they would be evicted (rightly:
     * their zone has a healthy node again). They come back as themselves. */
    set("evict-after", 60);
    uint64_t t1 = it_now_ms();
    for (int i = 0; i < n_dead; i++)
        it_start(&cl_, (int)dead[i]);
    for (int i = 0; i < n_dead; i++)
        CHECK(wait_state(dead[i], "up", t1, 30000) >= 0);
    int64_t back = wait_settled(true, t1, 60000, "5: the zone back");
    check_all_up("5");
    set("evict-after", EVICT_S);
    CHECK_EQ_INT(read_all(client_, OBJECTS + EXTRA, -1, SV_LINEARIZABLE, "5: zone back"), 0);
    printf("it-sched: 5: %d writes done %.1f s and every object read %.1f s after the kill; "
           "none evicted %.0f s on; the zone up again, nothing reported, %.1f s after its "
           "start\n",
           EXTRA, t_writes, t_reads, (double)(DOWN_S + EVICT_S + 5), back / 1000.0);
}

/* ---- 6. auto-evict off ------------------------------------------------------------ */

static void test_auto_evict_off(void)
{
    uint64_t leader = meta_leader();
    struct sv_node_list *l = nodes_get();
    CHECK(l != NULL);
    if (!l)
        return;
    uint64_t w = 0;
    for (size_t i = 0; i < l->n && !w; i++)
        if (l->nodes[i].id != leader && up(l, l->nodes[i].id) &&
            zone_up(l, l->nodes[i].zone, l->nodes[i].id) > 0)
            w = l->nodes[i].id;
    sv_client_node_list_free(l);
    CHECK(w != 0);
    if (!w)
        return;
    set("auto-evict", 0);
    uint64_t t0 = it_now_ms();
    it_kill(&cl_, (int)w);
    char st[32] = "";
    bool evicted = false;
    while (it_now_ms() - t0 < (DOWN_S + EVICT_S + 4) * 1000ull) {
        usleep(POLL_MS * 1000);
        state_of(w, st, sizeof st);
        evicted |= !strcmp(st, "evicted");
    }
    CHECK(!evicted);
    CHECK_MSG(!strcmp(st, "down"), "node %" PRIu64 " is %s", w, st);
    CHECK_MSG(logged("report", "auto-evict-off", (int64_t)w),
              "no auto-evict-off report for node %" PRIu64, w);
    print_health("6: auto-evict off past evict_after");
    struct sv_health *h = NULL;
    CHECK_RC(sv_client_health(client_, &h), SV_OK);
    int reported = 0;
    for (size_t i = 0; h && i < h->n; i++)
        reported += !strcmp(h->groups[i].reason, "auto-evict-off");
    CHECK_MSG(h && h->n > 0 && reported == (int)h->n, "%d of %zu groups reported auto-evict-off",
              reported, h ? h->n : 0);
    sv_client_health_free(h);
    uint64_t t1 = it_now_ms();
    set("auto-evict", 1);
    int64_t ev = wait_state(w, "evicted", t1, 10000);
    evicted_[w] = 1;
    int64_t done = wait_settled(true, t1, REPAIR_BOUND_MS, "6: the repair");
    printf("it-sched: 6: node %" PRIu64 " still down %.0f s after its kill (auto-evict off); "
           "on: evicted after %.1f s, repaired after %.1f s\n",
           w, (double)(DOWN_S + EVICT_S + 4), ev / 1000.0, done / 1000.0);
    CHECK_EQ_INT(read_all(client_, OBJECTS + EXTRA, -1, SV_LINEARIZABLE, "6: after the repair"), 0);
}

static const struct sv_test tests[] = {
    {"1 a killed node is evicted and repaired", test_kill_repair},
    {"2 the evicted node serves nothing, then rejoins", test_evicted_rejoins},
    {"3 drain, then remove", test_drain_remove},
    {"4 the meta leader killed during a repair", test_meta_leader_killed},
    {"5 a whole zone down", test_zone_down},
    {"6 auto-evict off holds an eviction", test_auto_evict_off},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-sched",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
