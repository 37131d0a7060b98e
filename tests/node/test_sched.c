/* sched-test: the pure scheduler (sched.h), one rule at a time on the
 * default deployment (6 nodes in 3 zones, 16 shards of 3 replicas). */
#define _GNU_SOURCE
#include "sv_sched.h"

#define CHECK_STRERROR(rc) sv_map_strerror(rc)
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NOW = 1000000, SHARDS = 16 };

struct world {
    struct sv_map m;
    struct sv_sched_node nodes[SV_CFG_NODES_MAX];
    struct sv_sched_group groups[SV_CFG_SHARDS_MAX + 1];
    struct sv_sched_in in;
    struct sv_sched_out out;
};

static void plan(struct world *w);
static void apply(struct world *w);

/* Run rounds, finishing every replacement at once and following every
 * transfer, until the scheduler has nothing to do. */
static void settle(struct world *w)
{
    char err[128];
    for (int round = 0; round < 100; round++) {
        plan(w);
        apply(w);
        bool any = false;
        for (uint32_t g = 0; g <= w->m.n_shards; g++)
            if (w->m.groups[g].out) {
                CHECK_RC(sv_map_remove(&w->m, g, w->m.groups[g].out, err, sizeof err), 0);
                any = true;
            }
        for (size_t k = 0; k < w->out.n; k++)
            if (w->out.a[k].type == SV_SCHED_A_TRANSFER)
                w->groups[w->out.a[k].group].leader = w->out.a[k].to;
        if (!any && !w->out.n)
            return;
    }
    CHECK_MSG(false, "the scheduler never settled");
}

/* Nodes 1..6, node i in zone z((i - 1) % 3): zone z0 is nodes 1 and 4.
 * cluster.conf's placement puts the meta group on nodes 1-3 (one more
 * replica each): the world starts from the map the scheduler balanced. */
static struct world *world_new(void)
{
    struct sv_cfg c;
    memset(&c, 0, sizeof c);
    c.n_shards = SHARDS;
    c.replicas = 3;
    c.n_nodes = 6;
    c.n_zones = 3;
    for (uint32_t i = 0; i < 6; i++) {
        c.nodes[i].id = i + 1;
        snprintf(c.nodes[i].zone, sizeof c.nodes[i].zone, "z%u", i % 3);
        snprintf(c.nodes[i].addr, sizeof c.nodes[i].addr, "10.0.0.%u:7100", i + 1);
        c.nodes[i].zone_index = i % 3;
    }
    struct world *w = calloc(1, sizeof *w);
    ASSERT(w);
    sv_test_defer(free, w);
    sv_map_from_cfg(&c, &w->m);
    for (uint32_t i = 0; i < SV_CFG_NODES_MAX; i++)
        w->nodes[i] = (struct sv_sched_node){.last_ms = NOW, .disk_free = 1ull << 40};
    for (uint32_t g = 0; g <= SHARDS; g++)
        w->groups[g] = (struct sv_sched_group){.leader = w->m.groups[g].ids[0], .bytes = 1 << 20};
    w->in = (struct sv_sched_in){.nodes = w->nodes, .groups = w->groups, .now_ms = NOW};
    for (uint32_t g = 0; g <= SHARDS; g++)
        w->groups[g].progress_ms = NOW;
    settle(w);
    for (uint32_t i = 0; i < 6; i++) {
        uint32_t n = sv_map_node_replicas(&w->m, i + 1);
        CHECK(n == 8 || n == 9);
    }
    return w;
}

static void plan(struct world *w)
{
    w->in.map = &w->m;
    sv_sched_plan(&w->in, &w->out);
    if (sv_test_verbose())
        for (size_t k = 0; k < w->out.n; k++) {
            char t[256];
            sv_sched_action_text(&w->out.a[k], t, sizeof t);
            sv_test_log("%s", t);
        }
}

static void apply(struct world *w)
{
    w->m = w->out.next;
}

static size_t count(const struct world *w, uint32_t type, uint32_t reason)
{
    size_t n = 0;
    for (size_t k = 0; k < w->out.n; k++)
        n += w->out.a[k].type == type && w->out.a[k].reason == reason;
    return n;
}

/* The action about node (any group) of that type and reason, or NULL. */
static const struct sv_sched_action *find(const struct world *w, uint32_t type, uint32_t reason,
                                          uint64_t node)
{
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type == type && w->out.a[k].reason == reason && w->out.a[k].node == node)
            return &w->out.a[k];
    return NULL;
}

static void set_state(struct world *w, uint64_t id, uint32_t state)
{
    char err[128];
    CHECK_RC(sv_map_node_state(&w->m, id, state, err, sizeof err), 0);
}

static uint32_t state_of(const struct sv_map *m, uint64_t id)
{
    return sv_map_node(m, id)->state;
}

static void silent(struct world *w, uint64_t id, uint64_t ms)
{
    w->nodes[id - 1].last_ms = NOW - ms;
}

/* Groups node id holds. */
static uint32_t held(const struct world *w, uint64_t id)
{
    return sv_map_node_replicas(&w->m, id);
}

static void test_quiet(void)
{
    struct world *w = world_new();
    plan(w);
    CHECK(w->out.n == 0);
    CHECK(w->out.health_known);
    CHECK(w->out.next.epoch == w->m.epoch);
    CHECK(!memcmp(&w->out.next, &w->m, sizeof w->m));
}

static void test_down_and_back(void)
{
    struct world *w = world_new();
    silent(w, 1, 9999);
    plan(w);
    CHECK(w->out.n == 0); /* 1 ms short of down_after */
    silent(w, 1, 10000);
    plan(w);
    CHECK(find(w, SV_SCHED_A_STATE, SV_SCHED_R_NODE_DOWN, 1) != NULL);
    CHECK(state_of(&w->out.next, 1) == SV_MAP_DOWN && w->out.next.epoch == w->m.epoch + 1);
    /* Every group with a replica there waits, said once each. */
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_DOWN_WAITING) == held(w, 1));
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
    apply(w);
    /* Still silent, short of evict_after: down-waiting, not evicted. */
    silent(w, 1, 59999);
    plan(w);
    CHECK(count(w, SV_SCHED_A_STATE, SV_SCHED_R_EVICTED) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_DOWN_WAITING) == held(w, 1));
    /* Heard again. */
    silent(w, 1, 0);
    plan(w);
    CHECK(find(w, SV_SCHED_A_STATE, SV_SCHED_R_NODE_BACK, 1) != NULL);
    CHECK(state_of(&w->out.next, 1) == SV_MAP_UP);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_DOWN_WAITING) == 0);
}

/* Evicted at evict_after; its groups repaired in its own zone (z0: node 4),
 * moves_per_node at a time, the rest throttled. */
static void test_evict_and_repair(void)
{
    struct world *w = world_new();
    set_state(w, 1, SV_MAP_DOWN);
    silent(w, 1, 60000);
    plan(w);
    CHECK(find(w, SV_SCHED_A_STATE, SV_SCHED_R_EVICTED, 1) != NULL);
    CHECK(state_of(&w->out.next, 1) == SV_MAP_EVICTED);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 2);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_THROTTLED) == held(w, 1) - 2);
    for (size_t k = 0; k < w->out.n; k++) {
        const struct sv_sched_action *a = &w->out.a[k];
        if (a->type != SV_SCHED_A_REPLACE)
            continue;
        const struct sv_map_group *g = &w->out.next.groups[a->group];
        CHECK(a->node == 1 && a->to == 4);
        CHECK(g->out == 1 && g->ids[g->n - 1] == 4 && g->n == 4);
    }
    /* In flight: counted against node 4 (and 1), nothing more begins. */
    apply(w);
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_THROTTLED) == held(w, 1) - 2);
    /* moves_per_node 3: one more. */
    w->m.set.moves_per_node = 3;
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 1);
}

static void test_auto_evict_off(void)
{
    struct world *w = world_new();
    w->m.set.auto_evict = 0;
    set_state(w, 1, SV_MAP_DOWN);
    silent(w, 1, 600000);
    plan(w);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_AUTO_EVICT_OFF, 1) != NULL);
    CHECK(state_of(&w->out.next, 1) == SV_MAP_DOWN);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
    /* Its groups say why they wait past evict_after (HEALTH shows groups). */
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_DOWN_WAITING) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_AUTO_EVICT_OFF) == held(w, 1) + 1);
}

/* Zone z2 (nodes 3 and 6) dead: nothing to place into; both stay down. */
static void test_no_zone(void)
{
    struct world *w = world_new();
    set_state(w, 3, SV_MAP_DOWN);
    set_state(w, 6, SV_MAP_DOWN);
    silent(w, 3, 70000);
    silent(w, 6, 70000);
    plan(w);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_ZONE, 3) != NULL);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_ZONE, 6) != NULL);
    CHECK(state_of(&w->out.next, 3) == SV_MAP_DOWN && state_of(&w->out.next, 6) == SV_MAP_DOWN);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
    /* Their groups say so too (HEALTH shows groups), not down-waiting. */
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_DOWN_WAITING) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_ZONE) == held(w, 3) + held(w, 6) + 2);
    /* An operator's removal makes the groups report it themselves. */
    set_state(w, 3, SV_MAP_REMOVED);
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_ZONE) == held(w, 3) + held(w, 6) + 1);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
}

/* Two nodes of a group silent: its configuration cannot change. */
static void test_quorum_lost(void)
{
    struct world *w = world_new();
    const struct sv_map_group *g = &w->m.groups[1];
    uint64_t a = g->ids[0], b = g->ids[1];
    set_state(w, a, SV_MAP_DOWN);
    set_state(w, b, SV_MAP_DOWN);
    silent(w, a, 70000);
    silent(w, b, 20000);
    plan(w);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_QUORUM_LOST, a) != NULL);
    CHECK(state_of(&w->out.next, a) == SV_MAP_DOWN);
    /* Evicted anyway (by an operator's removal): the group says so. */
    set_state(w, a, SV_MAP_REMOVED);
    plan(w);
    bool said = false;
    for (size_t k = 0; k < w->out.n; k++)
        said |= w->out.a[k].group == 1 && w->out.a[k].type == SV_SCHED_A_REPORT &&
                w->out.a[k].reason == SV_SCHED_R_QUORUM_LOST && w->out.a[k].node == a;
    CHECK(said);
    CHECK(w->out.next.groups[1].out == 0);
}

/* Two nodes of zone z0 drain together: the groups on them have nowhere to
 * go (never onto the other draining node); a drain elsewhere proceeds. */
static void test_drain_together(void)
{
    struct world *w = world_new();
    set_state(w, 1, SV_MAP_DRAINING);
    set_state(w, 4, SV_MAP_DRAINING);
    w->m.set.moves_per_node = 64;
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_DRAIN) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_ZONE) == held(w, 1) + held(w, 4));
    /* A seventh node in z0 takes them all. */
    char err[128];
    CHECK_RC(sv_map_node_add(&w->m, 7, "z0", "10.0.0.7:7100", err, sizeof err), 0);
    w->nodes[6] = (struct sv_sched_node){.last_ms = NOW, .disk_free = 1ull << 40};
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_DRAIN) == held(w, 1) + held(w, 4));
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type == SV_SCHED_A_REPLACE)
            CHECK(w->out.a[k].to == 7);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REBALANCE) == 0);
}

/* Repairs before drains: with one move per node, the repairs get the slots. */
static void test_repair_first(void)
{
    struct world *w = world_new();
    set_state(w, 1, SV_MAP_EVICTED);
    set_state(w, 4, SV_MAP_DRAINING);
    w->m.set.moves_per_node = 1;
    plan(w);
    /* Group holding 1 and 4 both: z0 has no healthy node. Every other. */
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_DRAIN) == 0);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_ZONE) > 0);
    /* Zone z1 instead: node 2 evicted, 5 draining, a new node 7 in z1. */
    w = world_new();
    char err[128];
    CHECK_RC(sv_map_node_add(&w->m, 7, "z1", "10.0.0.7:7100", err, sizeof err), 0);
    w->nodes[6] = (struct sv_sched_node){.last_ms = NOW, .disk_free = 1ull << 40};
    set_state(w, 2, SV_MAP_EVICTED);
    set_state(w, 5, SV_MAP_DRAINING);
    w->m.set.moves_per_node = 1;
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 1);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_DRAIN) == 0);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_THROTTLED) == held(w, 2) + held(w, 5) - 1);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REBALANCE) == 0);
}

/* A new node: rebalance onto it, moves_per_node at a time, only when
 * nothing is pending; fewest replicas, then lowest id, among targets. */
static void test_rebalance(void)
{
    struct world *w = world_new();
    char err[128];
    CHECK_RC(sv_map_node_add(&w->m, 7, "z1", "10.0.0.7:7100", err, sizeof err), 0);
    CHECK_RC(sv_map_node_add(&w->m, 8, "z1", "10.0.0.8:7100", err, sizeof err), 0);
    for (int i = 6; i < 8; i++)
        w->nodes[i] = (struct sv_sched_node){.last_ms = NOW, .disk_free = 1ull << 40};
    plan(w);
    size_t moves = count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REBALANCE);
    CHECK(moves == 4);
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type == SV_SCHED_A_REPLACE) {
            CHECK(w->out.a[k].to == 7 || w->out.a[k].to == 8);
            CHECK(w->out.a[k].node == 2 || w->out.a[k].node == 5); /* zone z1 stays z1 */
        }
    apply(w);
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REBALANCE) == 0);
    /* A repair pending holds rebalance back, and prefers node 7 (fewest,
     * then lowest id) over 8 and 2. */
    w = world_new();
    CHECK_RC(sv_map_node_add(&w->m, 7, "z1", "10.0.0.7:7100", err, sizeof err), 0);
    CHECK_RC(sv_map_node_add(&w->m, 8, "z1", "10.0.0.8:7100", err, sizeof err), 0);
    for (int i = 6; i < 8; i++)
        w->nodes[i] = (struct sv_sched_node){.last_ms = NOW, .disk_free = 1ull << 40};
    set_state(w, 5, SV_MAP_EVICTED);
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REBALANCE) == 0);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 6); /* 2, 7, 8: two each */
    const struct sv_sched_action *first = find(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR, 5);
    CHECK(first && first->to == 7);
}

static void test_no_space(void)
{
    struct world *w = world_new();
    set_state(w, 1, SV_MAP_EVICTED);
    w->nodes[3].disk_free = SV_SCHED_DISK_MIN + (1 << 20) - 1; /* node 4 */
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_NO_SPACE) == held(w, 1));
    w->nodes[3].disk_free++;
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 2);
}

/* A new meta leader judges nobody before down_after; until every node is
 * heard it moves nothing. */
static void test_health_unknown(void)
{
    struct world *w = world_new();
    set_state(w, 1, SV_MAP_EVICTED);
    w->in.since_ms = NOW - 3000;
    for (int i = 0; i < 6; i++)
        w->nodes[i].last_ms = i == 2 ? 0 : NOW - 100;
    plan(w);
    CHECK(!w->out.health_known);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_HEALTH_UNKNOWN) == held(w, 1) + 1);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 0);
    CHECK(count(w, SV_SCHED_A_STATE, SV_SCHED_R_NODE_DOWN) == 0);
    /* Heard from before the takeover counts for nothing. */
    w->nodes[2].last_ms = NOW - 3001;
    plan(w);
    CHECK(!w->out.health_known);
    /* Once heard: known, and the repairs begin. */
    w->nodes[2].last_ms = NOW;
    plan(w);
    CHECK(w->out.health_known);
    CHECK(count(w, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR) == 2);
    /* Or silent for down_after since the takeover: known, and down. */
    w->nodes[2].last_ms = 0;
    w->in.since_ms = NOW - 10000;
    plan(w);
    CHECK(w->out.health_known);
    CHECK(find(w, SV_SCHED_A_STATE, SV_SCHED_R_NODE_DOWN, 3) != NULL);
}

/* The transfer of group gi in the last plan, or NULL. */
static const struct sv_sched_action *transfer_of(const struct world *w, uint64_t gi)
{
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type == SV_SCHED_A_TRANSFER && w->out.a[k].group == gi)
            return &w->out.a[k];
    return NULL;
}

static uint32_t leads(const struct world *w, uint64_t id)
{
    uint32_t n = 0;
    for (uint32_t g = 0; g <= SHARDS; g++)
        n += w->groups[g].leader == id;
    return n;
}

static void test_leaders(void)
{
    struct world *w = world_new();
    /* Leadership off a draining node to a healthy replica: at once (right
     * after a map change too), the meta group's included. */
    uint64_t d = w->m.groups[0].ids[1];
    set_state(w, d, SV_MAP_DRAINING);
    w->m.set.moves_per_node = 1;
    w->in.changed_ms = NOW;
    for (uint32_t g = 0; g <= SHARDS; g++)
        if (sv_map_holds(&w->m, g, d))
            w->groups[g].leader = d;
    plan(w);
    CHECK(count(w, SV_SCHED_A_TRANSFER, SV_SCHED_R_LEADER_OFF) == held(w, d));
    CHECK(transfer_of(w, 0) && transfer_of(w, 0)->reason == SV_SCHED_R_LEADER_OFF);
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type == SV_SCHED_A_TRANSFER)
            CHECK(w->out.a[k].to != d && sv_map_holds(&w->m, w->out.a[k].group, w->out.a[k].to));
    CHECK(count(w, SV_SCHED_A_TRANSFER, SV_SCHED_R_LEADER_BALANCE) == 0);

    /* One node leading everything it holds, the meta group included. */
    w = world_new();
    for (uint32_t g = 0; g <= SHARDS; g++)
        if (sv_map_holds(&w->m, g, 1))
            w->groups[g].leader = 1;
    CHECK(w->groups[0].leader == 1);
    uint32_t before = leads(w, 1);
    CHECK(before * 6 > 17 + 6); /* more than one above the mean */
    /* Not calm yet: the map changed, or this meta leader took over, less
     * than SV_SCHED_LEADER_CALM_MS ago. */
    w->in.changed_ms = NOW - SV_SCHED_LEADER_CALM_MS + 1;
    plan(w);
    CHECK(count(w, SV_SCHED_A_TRANSFER, SV_SCHED_R_LEADER_BALANCE) == 0);
    w->in.changed_ms = 0;
    w->in.since_ms = NOW - SV_SCHED_LEADER_CALM_MS + 1;
    plan(w);
    CHECK(w->out.health_known && w->out.n == 0);
    w->in.since_ms = 0;
    /* A replacement in flight: not calm. */
    struct sv_map *saved = malloc(sizeof *saved);
    ASSERT(saved);
    *saved = w->m;
    char err[128];
    CHECK_RC(sv_map_replace(&w->m, 5, w->m.groups[5].ids[0],
                            w->m.groups[5].ids[0] > 3 ? w->m.groups[5].ids[0] - 3
                                                      : w->m.groups[5].ids[0] + 3,
                            err, sizeof err),
             0);
    plan(w);
    CHECK(count(w, SV_SCHED_A_TRANSFER, SV_SCHED_R_LEADER_BALANCE) == 0);
    w->m = *saved;
    free(saved);
    /* A state change in this very round (a down node heard again): not calm. */
    set_state(w, 6, SV_MAP_DOWN);
    plan(w);
    CHECK(find(w, SV_SCHED_A_STATE, SV_SCHED_R_NODE_BACK, 6) != NULL);
    CHECK(count(w, SV_SCHED_A_TRANSFER, SV_SCHED_R_LEADER_BALANCE) == 0);
    set_state(w, 6, SV_MAP_UP);
    /* Calm: one transfer a round, off node 1, never the meta group's; node
     * 1 ends at most one above the mean (17 groups / 6 nodes). */
    w->in.changed_ms = NOW - SV_SCHED_LEADER_CALM_MS;
    uint32_t rounds = 0, moved = 0;
    for (; rounds < 50; rounds++) {
        plan(w);
        size_t n = count(w, SV_SCHED_A_TRANSFER, SV_SCHED_R_LEADER_BALANCE);
        CHECK(n <= 1 && w->out.n == n);
        if (!n)
            break;
        const struct sv_sched_action *a = &w->out.a[0];
        CHECK(a->group != 0 && a->node == 1 && a->to != 1);
        w->groups[a->group].leader = a->to;
        moved++;
    }
    CHECK(moved > 1 && rounds < 50);
    CHECK(leads(w, 1) == before - moved && leads(w, 1) * 6 <= 17 + 6);
    CHECK(w->groups[0].leader == 1);
    for (uint64_t id = 2; id <= 6; id++)
        CHECK_MSG(leads(w, id) * 6 <= 17 + 6, "node %u leads %u", (unsigned)id, leads(w, id));
    /* The meta group's leader draining: its leadership moves (leader-off). */
    set_state(w, 1, SV_MAP_DRAINING);
    plan(w);
    CHECK(transfer_of(w, 0) && transfer_of(w, 0)->reason == SV_SCHED_R_LEADER_OFF);
}

/* A replacement in flight whose new replica is silent on progress. */
static void test_snapshot_failing(void)
{
    struct world *w = world_new();
    char err[128];
    set_state(w, 1, SV_MAP_DRAINING);
    CHECK_RC(sv_map_replace(&w->m, 1, w->m.groups[1].ids[0], 4, err, sizeof err), 0);
    w->groups[1].progress_ms = NOW - SV_SCHED_STALL_MS + 1;
    plan(w);
    CHECK(count(w, SV_SCHED_A_REPORT, SV_SCHED_R_SNAPSHOT_FAILING) == 0);
    w->groups[1].progress_ms = NOW - SV_SCHED_STALL_MS;
    plan(w);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_SNAPSHOT_FAILING, 4) != NULL);
}

/* The replacement's action about group gi (a REPLACE), or NULL. */
static const struct sv_sched_action *replace_of(const struct world *w, uint64_t gi)
{
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type == SV_SCHED_A_REPLACE && w->out.a[k].group == gi)
            return &w->out.a[k];
    return NULL;
}

/* A drain's replacement held by another replica's node, evicted and
 * silent: the new replica replaces that one instead, only while `out` is
 * heard and still a voter with no removal asked (once its removal may be
 * under way, the map would keep a replica the configuration lacks). */
static void test_retarget(void)
{
    struct world *w = world_new();
    char err[128];
    const struct sv_map_group *g = &w->m.groups[1];
    uint64_t x = g->ids[0], y = g->ids[1], t = x > 3 ? x - 3 : x + 3; /* t: x's zone */
    set_state(w, x, SV_MAP_DRAINING);
    CHECK_RC(sv_map_replace(&w->m, 1, x, t, err, sizeof err), 0);
    set_state(w, y, SV_MAP_EVICTED);
    silent(w, y, 70000);
    /* out_voter false: the driver does not know, or asked for x's removal */
    plan(w);
    CHECK(replace_of(w, 1) == NULL);
    CHECK(w->out.next.groups[1].out == x && w->out.next.groups[1].n == 4);
    w->groups[1].out_voter = true;
    plan(w);
    const struct sv_sched_action *a = replace_of(w, 1);
    CHECK(a && a->reason == SV_SCHED_R_REPAIR && a->node == y && a->to == t);
    CHECK(w->out.next.groups[1].out == y && w->out.next.epoch > w->m.epoch);
    CHECK(w->out.next.groups[1].ids[3] == t);
    /* `out` silent itself: nothing gained, nothing changed */
    silent(w, x, 20000);
    plan(w);
    CHECK(replace_of(w, 1) == NULL && w->out.next.groups[1].out == x);
}

/* A group of two replicas replacing one (a drain): once the new replica is
 * a voter (the driver says so) the group keeps its quorum with the other
 * replica's node silent, and that node is evicted at evict_after; while
 * the new one is counted a learner, the group looks quorum-less. */
static void test_quorum_new_voter(void)
{
    struct world *w = world_new();
    char err[128];
    const struct sv_map_group *g = &w->m.groups[1];
    uint64_t x = g->ids[0], y = g->ids[1], t = x > 3 ? x - 3 : x + 3; /* t: x's zone */
    CHECK_RC(sv_map_remove(&w->m, 1, g->ids[2], err, sizeof err), 0);
    set_state(w, x, SV_MAP_DRAINING);
    CHECK_RC(sv_map_replace(&w->m, 1, x, t, err, sizeof err), 0);
    set_state(w, y, SV_MAP_DOWN);
    silent(w, y, 60000);
    plan(w);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_QUORUM_LOST, y) != NULL);
    CHECK(state_of(&w->out.next, y) == SV_MAP_DOWN);
    w->groups[1].new_voter = true;
    plan(w);
    CHECK(find(w, SV_SCHED_A_REPORT, SV_SCHED_R_QUORUM_LOST, y) == NULL);
    CHECK(find(w, SV_SCHED_A_STATE, SV_SCHED_R_EVICTED, y) != NULL);
    CHECK(state_of(&w->out.next, y) == SV_MAP_EVICTED);
}

static enum sv_sched_step step(uint32_t new_role, uint32_t out_role, bool committed, bool complete,
                               bool gone, uint32_t *why)
{
    struct sv_sched_conf c = {.new_role = new_role,
                              .out_role = out_role,
                              .committed = committed,
                              .new_complete = complete,
                              .new_gone = gone};
    return sv_sched_replace_step(&c, 0, why);
}

static void test_replace_step(void)
{
    uint32_t why;
    CHECK(step(0, 1, true, false, false, &why) == SV_SCHED_S_ADD_LEARNER);
    CHECK(step(2, 1, false, false, false, &why) == SV_SCHED_S_WAIT);
    CHECK(step(2, 1, true, false, false, &why) == SV_SCHED_S_WAIT);
    CHECK(why == SV_SCHED_R_CATCHING_UP);
    CHECK(step(2, 1, true, true, false, &why) == SV_SCHED_S_PROMOTE);
    CHECK(step(1, 1, true, true, false, &why) == SV_SCHED_S_REMOVE);
    /* a promoted replica gone silent holds the removal back */
    CHECK(step(1, 1, true, false, false, &why) == SV_SCHED_S_WAIT);
    CHECK(step(1, 0, false, true, false, &why) == SV_SCHED_S_WAIT);
    CHECK(step(1, 0, true, true, false, &why) == SV_SCHED_S_MAP_FINISH);
    /* out complete while another voter went silent: removing it would
     * leave 2 complete copies of 3; held */
    struct sv_sched_conf h = {.new_role = 1,
                              .out_role = 1,
                              .committed = true,
                              .new_complete = true,
                              .out_complete = true,
                              .complete_voters = 3,
                              .replicas = 3};
    CHECK(sv_sched_replace_step(&h, 0, &why) == SV_SCHED_S_WAIT);
    CHECK(why == SV_SCHED_R_DOWN_WAITING);
    h.complete_voters = 4;
    CHECK(sv_sched_replace_step(&h, 0, &why) == SV_SCHED_S_REMOVE);
    h.out_complete = false; /* a repair: out is silent */
    h.complete_voters = 2;
    CHECK(sv_sched_replace_step(&h, 0, &why) == SV_SCHED_S_REMOVE);
    /* the new replica's node gone: abandoned while `out` is a member */
    CHECK(step(2, 1, true, false, true, &why) == SV_SCHED_S_REMOVE_NEW);
    CHECK(step(1, 1, true, false, true, &why) == SV_SCHED_S_REMOVE_NEW);
    CHECK(step(0, 1, true, false, true, &why) == SV_SCHED_S_MAP_ABANDON);
    CHECK(step(1, 0, true, false, true, &why) == SV_SCHED_S_MAP_FINISH);
    /* gone includes draining: a complete new voter the group needs (out is
     * silent) finishes, one it does not need (out complete) is taken out */
    struct sv_sched_conf d = {.new_role = 1,
                              .out_role = 1,
                              .committed = true,
                              .new_complete = true,
                              .new_gone = true,
                              .complete_voters = 3,
                              .replicas = 3};
    CHECK(sv_sched_replace_step(&d, 0, &why) == SV_SCHED_S_REMOVE);
    d.out_complete = true;
    d.complete_voters = 4;
    CHECK(sv_sched_replace_step(&d, 0, &why) == SV_SCHED_S_REMOVE_NEW);
    CHECK(!sv_sched_bugs_compiled());
    /* the defect is not compiled in: the flag changes nothing */
    struct sv_sched_conf c = {.new_role = 2, .out_role = 1, .committed = true};
    CHECK(sv_sched_replace_step(&c, SV_SCHED_BUG_REMOVE_EARLY, &why) == SV_SCHED_S_WAIT);
}

static void test_names(void)
{
    for (uint32_t r = 0; r < SV_SCHED_R_COUNT_; r++)
        for (uint32_t q = 0; q < r; q++)
            CHECK(strcmp(sv_sched_reason_name(r), sv_sched_reason_name(q)));
    CHECK(!strcmp(sv_sched_reason_name(SV_SCHED_R_NO_ZONE), "no-zone-available"));
    CHECK(!strcmp(sv_sched_reason_name(SV_SCHED_R_DOWN_WAITING), "down-waiting"));
    CHECK(!strcmp(sv_sched_reason_name(SV_SCHED_R_COUNT_), "?"));
    char t[160];
    struct sv_sched_action a = {
        .type = SV_SCHED_A_REPORT, .reason = SV_SCHED_R_NO_ZONE, .group = 5, .node = 3};
    sv_sched_action_text(&a, t, sizeof t);
    CHECK_MSG(strstr(t, "shard 4") && strstr(t, "no healthy node in a zone without a replica"),
              "%s", t);
    a = (struct sv_sched_action){.type = SV_SCHED_A_STATE,
                                 .reason = SV_SCHED_R_EVICTED,
                                 .group = ~0ull,
                                 .node = 2,
                                 .state = SV_MAP_EVICTED};
    sv_sched_action_text(&a, t, sizeof t);
    CHECK_MSG(!strcmp(t, "node 2: now evicted (evicted)"), "%s", t);
    char small[8];
    sv_sched_action_text(&a, small, sizeof small);
    CHECK(strlen(small) == 7);
}

static const struct sv_test tests[] = {
    {"quiet", test_quiet},
    {"down and back", test_down_and_back},
    {"evict and repair", test_evict_and_repair},
    {"auto-evict off", test_auto_evict_off},
    {"no zone", test_no_zone},
    {"quorum lost", test_quorum_lost},
    {"drain together", test_drain_together},
    {"repair first", test_repair_first},
    {"rebalance", test_rebalance},
    {"no space", test_no_space},
    {"health unknown", test_health_unknown},
    {"leaders", test_leaders},
    {"snapshot failing", test_snapshot_failing},
    {"retarget", test_retarget},
    {"quorum with a new voter", test_quorum_new_voter},
    {"replace step", test_replace_step},
    {"names", test_names},
};

const struct sv_test_suite sv_test_suite = {
    .name = "sched-test",
    SV_TEST_TABLE(tests),
};
