/* sched-sim: the pure scheduler (sv_sched.h) driven through thousands of
 * seeded schedules of a modelled cluster (nodes dying, coming back, added,
 * drained, removed; meta leader changes; auto_evict toggled), with each
 * group's Raft configuration modelled step by step, and its invariants
 * checked after every simulated second (deterministic: a seed replays).
 *
 * Invariants:
 *  - copies: a group's up-to-date copies (voters on live nodes; at most R
 *    counted, a drain or a rebalance holds R + 1 for a moment) never fall
 *    below the previous second's unless a node died in that second;
 *  - zones: a replacement never begins into a zone holding another replica
 *    of the group (the replaced one excluded), and at the end every group's
 *    replicas are in distinct zones (the simulated clusters start that way;
 *    a replacement turned into a repair may put two in one zone for a while,
 *    which the scheduler then moves apart);
 *  - targets: a replacement never targets a node that is not up and heard;
 *  - eviction: never before evict_after of silence;
 *  - leaders: leadership moves for balance only SV_SCHED_LEADER_CALM_MS
 *    after the map last changed and the meta leader took over, never the
 *    meta group's, and (in a calm after the end) settles in fewer moves
 *    than there are groups;
 *  - progress: once events stop (auto_evict on, every node holding a group
 *    without quorum revived), while R zones have live up nodes the world
 *    goes quiet within QUIET_MAX seconds with every group at R replicas on
 *    up nodes, in fewer than MOVES_MAX replacements (no flapping);
 *  - balance at the end, the weaker form zones allow: no live up node holds
 *    two more replicas than another that could take one of them with zones
 *    kept distinct (exact balance within one of the mean is impossible when
 *    a zone holds fewer nodes than the others). */
#include "sv_sched.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    NODES_MAX = 16,
    SHARDS_MAX = 32,
    VOTERS_MAX = SV_CFG_REPLICAS_MAX + 1,
    RING_LINES = 256,
    LINE_MAX_ = 200,
    QUIET_MAX = 1500, /* seconds after the events stop */
};

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t below(struct rng *r, uint32_t n)
{
    return (uint32_t)(rnd(r) % n);
}

/* A group's Raft configuration, as the model keeps it. */
struct conf {
    uint64_t voters[VOTERS_MAX];
    uint32_t n_voters;
    uint64_t learner; /* the new replica while a learner, 0 none */
    bool committed;   /* the last change committed */
    uint32_t catchup; /* seconds of copying the new replica still needs */
    uint64_t leader;  /* a live voter, 0 none */
    uint64_t progress_ms;
    uint32_t copies; /* up-to-date copies after the previous second */
};

struct world {
    struct rng rng;
    uint64_t seed;
    uint32_t bugs, zones, R;
    uint64_t now_ms, since_ms, second;
    bool live[NODES_MAX];
    bool died; /* a node died this second */
    struct sv_map map;
    struct sv_sched_node nodes[SV_CFG_NODES_MAX];
    struct sv_sched_group groups[SHARDS_MAX + 1];
    struct conf conf[SHARDS_MAX + 1];
    struct sv_sched_out out;
    uint64_t seen_epoch, changed_ms; /* as sched_run.c keeps them (sv_sched_in's) */
    uint64_t moves;                  /* replacements begun since the events stopped */
    uint64_t balanced;               /* leadership moves for balance since then */
    bool failed;
    char ring[RING_LINES][LINE_MAX_];
    uint32_t ring_n, ring_next;
    bool verbose;
};

__attribute__((format(printf, 2, 3))) static void trace(struct world *w, const char *fmt, ...)
{
    char *line = w->ring[w->ring_next];
    int off = snprintf(line, LINE_MAX_, "[%5" PRIu64 "s] ", w->second);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, LINE_MAX_ - (size_t)off, fmt, ap);
    va_end(ap);
    if (w->verbose)
        puts(line);
    w->ring_next = (w->ring_next + 1) % RING_LINES;
    if (w->ring_n < RING_LINES)
        w->ring_n++;
}

__attribute__((format(printf, 3, 4))) static void fail(struct world *w, const char *what,
                                                       const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = true;
    char why[LINE_MAX_];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    printf("sched-sim: seed %" PRIu64 ": VIOLATION %s at %" PRIu64 " s: %s\n", w->seed, what,
           w->second, why);
    printf("  (%u nodes, %u zones, %u shards, %u replicas; last %u steps:)\n", w->map.n_nodes,
           w->zones, w->map.n_shards, w->R, w->ring_n);
    uint32_t start = (w->ring_next + RING_LINES - w->ring_n) % RING_LINES;
    for (uint32_t i = 0; i < w->ring_n; i++)
        printf("  %s\n", w->ring[(start + i) % RING_LINES]);
}

static int idx(const struct world *w, uint64_t id)
{
    for (uint32_t i = 0; i < w->map.n_nodes; i++)
        if (w->map.nodes[i].id == id)
            return (int)i;
    return -1;
}

static bool is_live(const struct world *w, uint64_t id)
{
    int i = idx(w, id);
    return i >= 0 && w->live[i];
}

static uint32_t state(const struct world *w, uint64_t id)
{
    int i = idx(w, id);
    return i < 0 ? SV_MAP_REMOVED : w->map.nodes[i].state;
}

static bool is_voter(const struct conf *c, uint64_t id)
{
    for (uint32_t k = 0; k < c->n_voters; k++)
        if (c->voters[k] == id)
            return true;
    return false;
}

static uint32_t live_voters(const struct world *w, const struct conf *c)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < c->n_voters; k++)
        n += is_live(w, c->voters[k]);
    return n;
}

static bool has_quorum(const struct world *w, const struct conf *c)
{
    return live_voters(w, c) * 2 > c->n_voters;
}

static void map_copy(struct sv_map *dst, const struct sv_map *src)
{
    memcpy(dst, src, offsetof(struct sv_map, groups) + (src->n_shards + 1) * sizeof src->groups[0]);
}

/* ---- the world ----------------------------------------------------------- */

static void world_init(struct world *w, uint64_t seed, uint32_t bugs)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
    w->rng.s = seed;
    w->bugs = bugs;
    uint32_t n = 4 + below(&w->rng, 9);
    w->zones = 2 + below(&w->rng, 3);
    w->R = 1 + below(&w->rng, w->zones < 3 ? w->zones : 3);
    struct sv_map *m = &w->map;
    m->epoch = 1;
    m->n_shards = 1 + below(&w->rng, SHARDS_MAX);
    m->replicas = w->R;
    m->n_nodes = n;
    m->set = SV_MAP_SETTINGS_DEFAULT;
    m->set.down_after_ms = 3000;
    m->set.evict_after_ms = 3000 + 1000 * below(&w->rng, 8);
    m->set.moves_per_node = 1 + below(&w->rng, 3);
    for (uint32_t i = 0; i < n; i++) {
        m->nodes[i].id = i + 1;
        snprintf(m->nodes[i].zone, sizeof m->nodes[i].zone, "z%u",
                 i < w->zones ? i : below(&w->rng, w->zones));
        snprintf(m->nodes[i].addr, sizeof m->nodes[i].addr, "n%u", i + 1);
        m->nodes[i].state = SV_MAP_UP;
        w->live[i] = true;
    }
    /* R distinct zones per group, the least loaded node of each */
    uint32_t load[NODES_MAX] = {0};
    for (uint32_t g = 0; g <= m->n_shards; g++) {
        for (uint32_t j = 0; j < w->R; j++) {
            char zone[16];
            snprintf(zone, sizeof zone, "z%u", (g + j) % w->zones);
            int best = -1;
            for (uint32_t i = 0; i < n; i++)
                if (!strcmp(m->nodes[i].zone, zone) && (best < 0 || load[i] < load[best]))
                    best = (int)i;
            load[best]++;
            m->groups[g].ids[m->groups[g].n++] = m->nodes[best].id;
        }
        struct conf *c = &w->conf[g];
        memcpy(c->voters, m->groups[g].ids, w->R * sizeof c->voters[0]);
        c->n_voters = w->R;
        c->committed = true;
        c->copies = w->R;
        w->groups[g].bytes = 1 << 20;
    }
    w->now_ms = 1000000;
}

/* ---- events -------------------------------------------------------------- */

static int pick_node(struct world *w, bool (*ok)(const struct world *, uint32_t))
{
    uint32_t cand[SV_CFG_NODES_MAX], n = 0;
    for (uint32_t i = 0; i < w->map.n_nodes; i++)
        if (ok(w, i))
            cand[n++] = i;
    return n ? (int)cand[below(&w->rng, n)] : -1;
}

static bool can_kill(const struct world *w, uint32_t i)
{
    return w->live[i];
}

static bool can_revive(const struct world *w, uint32_t i)
{
    return !w->live[i] && w->map.nodes[i].state != SV_MAP_REMOVED;
}

static bool can_drain(const struct world *w, uint32_t i)
{
    return w->map.nodes[i].state == SV_MAP_UP;
}

static bool can_remove(const struct world *w, uint32_t i)
{
    return w->map.nodes[i].state == SV_MAP_DRAINING &&
           sv_map_node_replicas(&w->map, w->map.nodes[i].id) == 0;
}

static void kill_node(struct world *w, uint32_t i)
{
    w->live[i] = false;
    w->died = true;
    trace(w, "event: node %" PRIu64 " dies", w->map.nodes[i].id);
}

static void event(struct world *w)
{
    char err[256];
    uint32_t e = below(&w->rng, 100);
    int i;
    if (e < 6 && (i = pick_node(w, can_kill)) >= 0) {
        kill_node(w, (uint32_t)i);
    } else if (e < 12 && (i = pick_node(w, can_revive)) >= 0) {
        w->live[i] = true;
        trace(w, "event: node %" PRIu64 " back", w->map.nodes[i].id);
    } else if (e < 14 && w->map.n_nodes < NODES_MAX) {
        uint32_t n = w->map.n_nodes;
        char zone[16], addr[16];
        snprintf(zone, sizeof zone, "z%u", below(&w->rng, w->zones));
        snprintf(addr, sizeof addr, "n%u", n + 1);
        if (sv_map_node_add(&w->map, n + 1, zone, addr, err, sizeof err))
            fail(w, "model", "node add refused: %s", err);
        w->live[n] = true;
        trace(w, "event: node %u added in %s", n + 1, zone);
    } else if (e < 16 && (i = pick_node(w, can_drain)) >= 0) {
        sv_map_node_state(&w->map, w->map.nodes[i].id, SV_MAP_DRAINING, err, sizeof err);
        trace(w, "event: node %" PRIu64 " drains", w->map.nodes[i].id);
    } else if (e < 20 && (i = pick_node(w, can_remove)) >= 0) {
        sv_map_node_state(&w->map, w->map.nodes[i].id, SV_MAP_REMOVED, err, sizeof err);
        w->live[i] = false;
        trace(w, "event: node %" PRIu64 " removed", w->map.nodes[i].id);
    } else if (e < 22) {
        w->since_ms = w->now_ms;
        for (uint32_t k = 0; k < SV_CFG_NODES_MAX; k++)
            w->nodes[k].last_ms = 0;
        trace(w, "event: meta leader change");
    } else if (e < 23) {
        w->map.set.auto_evict ^= 1;
        w->map.epoch++;
        trace(w, "event: auto_evict %u", w->map.set.auto_evict);
    }
}

/* ---- heartbeats ---------------------------------------------------------- */

static bool new_complete(const struct world *w, const struct conf *c, uint64_t fresh)
{
    return is_live(w, fresh) && (is_voter(c, fresh) || (c->learner == fresh && !c->catchup));
}

static void heartbeats(struct world *w)
{
    for (uint32_t i = 0; i < w->map.n_nodes; i++) {
        w->nodes[i].disk_free = 1ull << 40;
        if (w->live[i])
            w->nodes[i].last_ms = w->now_ms;
    }
    for (uint32_t g = 0; g <= w->map.n_shards; g++) {
        struct conf *c = &w->conf[g];
        const struct sv_map_group *mg = &w->map.groups[g];
        if (!has_quorum(w, c))
            c->leader = 0;
        else if (!c->leader || !is_live(w, c->leader) || !is_voter(c, c->leader))
            for (uint32_t k = 0; k < c->n_voters && (!c->leader || !is_live(w, c->leader)); k++)
                c->leader = c->voters[k];
        uint64_t fresh = mg->out ? mg->ids[mg->n - 1] : 0;
        w->groups[g].leader = c->leader;
        w->groups[g].progress_ms = c->progress_ms;
        /* proposals are made at once here: none is ever unanswered */
        w->groups[g].out_voter = mg->out && is_voter(c, mg->out);
        w->groups[g].new_voter = mg->out && is_voter(c, fresh);
        w->groups[g].complete = 0;
        for (uint32_t k = 0; k < mg->n; k++)
            if (mg->ids[k] == fresh ? new_complete(w, c, fresh)
                                    : is_voter(c, mg->ids[k]) && is_live(w, mg->ids[k]))
                w->groups[g].complete |= 1u << k;
    }
}

/* ---- the plan and its checks ------------------------------------------------ */

static void check_action(struct world *w, const struct sv_sched_action *a)
{
    const struct sv_map *m = &w->map;
    int i = idx(w, a->type == SV_SCHED_A_REPLACE ? a->to : a->node);
    bool begun = a->type == SV_SCHED_A_REPLACE && !m->groups[a->group].out; /* not retargeted */
    /* up, and heard within down_after (it may have died since: unknown) */
    const struct sv_map *next = &w->out.next; /* node-back in the same round counts */
    if (begun && (i < 0 || next->nodes[i].state != SV_MAP_UP || w->nodes[i].last_ms < w->since_ms ||
                  !w->nodes[i].last_ms || w->now_ms - w->nodes[i].last_ms >= m->set.down_after_ms))
        fail(w, "onto-leaving", "group %" PRIu64 " replaced onto node %" PRIu64 " (%s)", a->group,
             a->to, i < 0 ? "unknown" : sv_map_state_name(next->nodes[i].state));
    if (begun) {
        const struct sv_map_group *g = &m->groups[a->group];
        for (uint32_t k = 0; k < g->n; k++) {
            int j = idx(w, g->ids[k]);
            if (j >= 0 && g->ids[k] != a->node && !strcmp(m->nodes[j].zone, next->nodes[i].zone))
                fail(w, "zones",
                     "group %" PRIu64 ": new replica on node %" PRIu64
                     " in zone %s of node %" PRIu64,
                     a->group, a->to, m->nodes[j].zone, g->ids[k]);
        }
    }
    /* leadership moves for balance only when calm, never the meta group's */
    if (a->type == SV_SCHED_A_TRANSFER && a->reason == SV_SCHED_R_LEADER_BALANCE) {
        uint64_t calm = w->changed_ms > w->since_ms ? w->changed_ms : w->since_ms;
        if (a->group == 0 || w->now_ms < calm + SV_SCHED_LEADER_CALM_MS)
            fail(w, "leader-balance",
                 "group %" PRIu64 ": leadership moved for balance %" PRIu64
                 " ms after the last change",
                 a->group, w->now_ms - calm);
    }
    if (a->type == SV_SCHED_A_STATE && a->state == SV_MAP_EVICTED) {
        uint64_t last = w->nodes[i].last_ms > w->since_ms ? w->nodes[i].last_ms : w->since_ms;
        if (w->now_ms - last < m->set.evict_after_ms)
            fail(w, "evict-early", "node %" PRIu64 " evicted after %" PRIu64 " ms of silence",
                 a->node, w->now_ms - last);
    }
}

static void plan(struct world *w)
{
    if (w->map.epoch != w->seen_epoch) {
        w->seen_epoch = w->map.epoch;
        w->changed_ms = w->now_ms;
    }
    struct sv_sched_in in = {.map = &w->map,
                             .nodes = w->nodes,
                             .groups = w->groups,
                             .now_ms = w->now_ms,
                             .since_ms = w->since_ms,
                             .changed_ms = w->changed_ms,
                             .bugs = w->bugs};
    sv_sched_plan(&in, &w->out);
    for (size_t k = 0; k < w->out.n; k++) {
        const struct sv_sched_action *a = &w->out.a[k];
        char t[LINE_MAX_ - 20];
        if (a->type != SV_SCHED_A_REPORT) {
            sv_sched_action_text(a, t, sizeof t);
            trace(w, "plan: %s", t);
        }
        check_action(w, a);
        if (a->type == SV_SCHED_A_REPLACE)
            w->moves++;
        if (a->type == SV_SCHED_A_TRANSFER && a->reason == SV_SCHED_R_LEADER_BALANCE)
            w->balanced++;
    }
    map_copy(&w->map, &w->out.next);
    for (size_t k = 0; k < w->out.n; k++) {
        const struct sv_sched_action *a = &w->out.a[k];
        if (a->type != SV_SCHED_A_TRANSFER)
            continue;
        struct conf *c = &w->conf[a->group];
        if (is_voter(c, a->to) && is_live(w, a->to))
            c->leader = a->to;
    }
}

/* ---- the Raft configuration model ------------------------------------------ */

static void conf_drop(struct conf *c, uint64_t id)
{
    for (uint32_t k = 0; k < c->n_voters; k++)
        if (c->voters[k] == id) {
            c->voters[k] = c->voters[--c->n_voters];
            return;
        }
}

static void replace_run(struct world *w, uint32_t g)
{
    struct sv_map_group *mg = &w->map.groups[g];
    struct conf *c = &w->conf[g];
    uint64_t out = mg->out, fresh = mg->ids[mg->n - 1];
    char err[256];
    if (c->learner && is_live(w, c->learner) && c->catchup) {
        c->catchup--;
        c->progress_ms = w->now_ms;
    }
    if (!c->committed) {
        c->committed = has_quorum(w, c);
        return;
    }
    uint32_t st = state(w, fresh), why;
    struct sv_sched_conf sc = {
        .new_role = is_voter(c, fresh)    ? 1
                    : c->learner == fresh ? 2
                                          : 0,
        .out_role = is_voter(c, out) ? 1 : 0,
        .committed = c->committed,
        .new_complete = new_complete(w, c, fresh),
        .new_gone = st == SV_MAP_DRAINING || st == SV_MAP_EVICTED || st == SV_MAP_REMOVED,
        .out_complete = is_voter(c, out) && is_live(w, out),
        .complete_voters = live_voters(w, c),
        .replicas = mg->n - 1,
    };
    enum sv_sched_step s = sv_sched_replace_step(&sc, w->bugs, &why);
    bool leader = has_quorum(w, c); /* a proposal needs a leader */
    switch (s) {
    case SV_SCHED_S_WAIT:
        return;
    case SV_SCHED_S_ADD_LEARNER:
        if (!leader)
            return;
        c->learner = fresh;
        c->catchup = 1 + below(&w->rng, 6);
        c->progress_ms = w->now_ms;
        break;
    case SV_SCHED_S_PROMOTE:
        if (!leader)
            return;
        c->learner = 0;
        c->voters[c->n_voters++] = fresh;
        break;
    case SV_SCHED_S_REMOVE:
        if (!leader)
            return;
        conf_drop(c, out);
        break;
    case SV_SCHED_S_REMOVE_NEW:
        if (!leader)
            return;
        conf_drop(c, fresh);
        if (c->learner == fresh)
            c->learner = 0;
        break;
    case SV_SCHED_S_MAP_FINISH:
        if (sv_map_remove(&w->map, g, out, err, sizeof err))
            fail(w, "model", "finish refused: %s", err);
        trace(w, "group %u: replacement of %" PRIu64 " by %" PRIu64 " done", g, out, fresh);
        return;
    case SV_SCHED_S_MAP_ABANDON:
        if (sv_map_remove(&w->map, g, fresh, err, sizeof err))
            fail(w, "model", "abandon refused: %s", err);
        trace(w, "group %u: replacement of %" PRIu64 " by %" PRIu64 " abandoned", g, out, fresh);
        return;
    }
    static const char *const names[] = {"wait",   "add learner", "promote", "remove out",
                                        "finish", "remove new",  "abandon"};
    trace(w, "group %u: %s (out %" PRIu64 ", new %" PRIu64 ")", g, names[s], out, fresh);
    c->committed = false;
}

/* ---- invariants -------------------------------------------------------------- */

static void check_state(struct world *w, bool at_end)
{
    const struct sv_map *m = &w->map;
    for (uint32_t g = 0; g <= m->n_shards && !w->failed; g++) {
        struct conf *c = &w->conf[g];
        const struct sv_map_group *mg = &m->groups[g];
        uint32_t copies = live_voters(w, c);
        copies = copies < w->R ? copies : w->R;
        if (copies < c->copies && !w->died)
            fail(w, "copies", "group %u: %u up-to-date copies, %u the second before", g, copies,
                 c->copies);
        c->copies = copies;
        if (!at_end)
            goto config;
        uint32_t zones = 0;
        for (uint32_t k = 0; k < mg->n; k++) {
            int i = idx(w, mg->ids[k]);
            if (mg->ids[k] == mg->out || i < 0 || m->nodes[i].state != SV_MAP_UP)
                continue; /* leaving: counts for no zone */
            uint32_t z = (uint32_t)atoi(m->nodes[i].zone + 1);
            if (zones >> z & 1)
                fail(w, "zones", "group %u: two replicas in zone z%u", g, z);
            zones |= 1u << z;
        }
    config:
        if (!mg->out) {
            bool same = c->n_voters == mg->n && !c->learner;
            for (uint32_t k = 0; k < mg->n; k++)
                same &= is_voter(c, mg->ids[k]);
            if (!same)
                fail(w, "model", "group %u: configuration and map disagree", g);
        }
    }
}

/* ---- the end ------------------------------------------------------------------ */

static bool usable(const struct world *w, uint32_t i)
{
    return w->live[i] && w->map.nodes[i].state == SV_MAP_UP;
}

static bool capacity(const struct world *w)
{
    uint32_t zones = 0;
    for (uint32_t i = 0; i < w->map.n_nodes; i++)
        if (usable(w, i))
            zones |= 1u << atoi(w->map.nodes[i].zone + 1);
    return (uint32_t)__builtin_popcount(zones) >= w->R;
}

static bool quiet(const struct world *w)
{
    for (size_t k = 0; k < w->out.n; k++)
        if (w->out.a[k].type != SV_SCHED_A_REPORT)
            return false;
    for (uint32_t g = 0; g <= w->map.n_shards; g++)
        if (w->map.groups[g].out)
            return false;
    return true;
}

/* Group g's replica on node index s could move to node index d. */
static bool could_move(const struct world *w, uint32_t g, uint32_t s, uint32_t d)
{
    const struct sv_map *m = &w->map;
    const struct sv_map_group *mg = &m->groups[g];
    if (!sv_map_holds(m, g, m->nodes[s].id) || sv_map_holds(m, g, m->nodes[d].id))
        return false;
    for (uint32_t k = 0; k < mg->n; k++) {
        int i = idx(w, mg->ids[k]);
        if (mg->ids[k] != m->nodes[s].id && !strcmp(m->nodes[i].zone, m->nodes[d].zone))
            return false;
    }
    return true;
}

static void check_end(struct world *w)
{
    const struct sv_map *m = &w->map;
    for (uint32_t g = 0; g <= m->n_shards && !w->failed; g++) {
        const struct sv_map_group *mg = &m->groups[g];
        if (mg->n != w->R)
            fail(w, "progress", "group %u has %u replicas, want %u", g, mg->n, w->R);
        for (uint32_t k = 0; k < mg->n; k++)
            if (state(w, mg->ids[k]) != SV_MAP_UP)
                fail(w, "progress", "group %u: replica on node %" PRIu64 " (%s)", g, mg->ids[k],
                     sv_map_state_name(state(w, mg->ids[k])));
    }
    uint32_t load[NODES_MAX];
    for (uint32_t i = 0; i < m->n_nodes; i++)
        load[i] = sv_map_node_replicas(m, m->nodes[i].id);
    for (uint32_t s = 0; s < m->n_nodes; s++)
        for (uint32_t d = 0; d < m->n_nodes; d++) {
            if (w->failed || !usable(w, s) || !usable(w, d) || load[s] <= load[d] + 1)
                continue;
            for (uint32_t g = 0; g <= m->n_shards; g++)
                if (could_move(w, g, s, d)) {
                    fail(w, "balance",
                         "node %" PRIu64 " holds %u, node %" PRIu64 " %u: group %u could move",
                         m->nodes[s].id, load[s], m->nodes[d].id, load[d], g);
                    break;
                }
        }
}

/* Events stop: auto_evict on, and every dead node revived when some group
 * lost its quorum (nothing could repair it otherwise). */
static void events_stop(struct world *w)
{
    if (!w->map.set.auto_evict) {
        w->map.set.auto_evict = 1;
        w->map.epoch++;
    }
    bool lost = false;
    for (uint32_t g = 0; g <= w->map.n_shards; g++)
        lost |= !has_quorum(w, &w->conf[g]);
    for (uint32_t i = 0; lost && i < w->map.n_nodes; i++)
        if (can_revive(w, i))
            w->live[i] = true;
    trace(w, "events stop%s", lost ? ": every node revived" : "");
    w->moves = 0;
    w->balanced = 0;
}

static void second(struct world *w, bool events)
{
    w->second++;
    w->now_ms += 1000;
    w->died = false;
    if (events)
        event(w);
    heartbeats(w);
    plan(w);
    for (uint32_t g = 0; g <= w->map.n_shards && !w->failed; g++)
        if (w->map.groups[g].out)
            replace_run(w, g);
    check_state(w, false);
}

/* One schedule; true when every invariant held. */
static bool run(struct world *w, uint64_t seed, uint32_t bugs, bool verbose)
{
    world_init(w, seed, bugs);
    w->verbose = verbose;
    uint32_t event_s = 30 + below(&w->rng, 200);
    for (uint32_t t = 0; t < event_s && !w->failed; t++)
        second(w, true);
    if (w->failed)
        return false;
    events_stop(w);
    uint64_t moves_max = 4u * (w->map.n_shards + 1) * w->R + 16;
    uint32_t quiet_s = 0; /* two quiet seconds: a plan after the last replacement ended */
    for (uint32_t t = 0; t < QUIET_MAX && !w->failed && quiet_s < 2; t++) {
        second(w, false);
        if (w->moves > moves_max)
            fail(w, "progress", "%" PRIu64 " replacements since the events stopped", w->moves);
        quiet_s = t > 20 && quiet(w) ? quiet_s + 1 : 0;
    }
    if (!w->failed && capacity(w)) {
        uint32_t g = 0;
        while (g < w->map.n_shards && !w->map.groups[g].out)
            g++;
        if (!quiet(w))
            fail(w, "progress",
                 "not quiet %u s after the events stopped (group %u: out %" PRIu64
                 ", %u voters, learner %" PRIu64 ", committed %d)",
                 QUIET_MAX, g, w->map.groups[g].out, w->conf[g].n_voters, w->conf[g].learner,
                 w->conf[g].committed);
        check_state(w, true);
        check_end(w);
        /* Calm from here on: leadership may move for balance, a bounded
         * number of times (no flapping), and the world goes quiet again. */
        for (uint32_t t = 0; t < SV_SCHED_LEADER_CALM_MS / 1000 + 60 && !w->failed; t++)
            second(w, false);
        if (!w->failed && !quiet(w))
            fail(w, "progress", "not quiet %u s into the calm",
                 SV_SCHED_LEADER_CALM_MS / 1000 + 60);
        if (w->balanced > w->map.n_shards + 1u)
            fail(w, "progress", "%" PRIu64 " leadership moves for balance", w->balanced);
    }
    return !w->failed;
}

static const struct {
    const char *name;
    uint32_t bit;
} bug_names[] = {
    {"remove-early", SV_SCHED_BUG_REMOVE_EARLY},
    {"ignore-zones", SV_SCHED_BUG_IGNORE_ZONES},
    {"onto-leaving", SV_SCHED_BUG_ONTO_LEAVING},
    {"evict-early", SV_SCHED_BUG_EVICT_EARLY},
};

static int usage(void)
{
    fprintf(stderr, "usage: sched-sim [--seed S] [--runs N] [--bug NAME] [--verbose]\n"
                    "  bugs: remove-early ignore-zones onto-leaving evict-early\n");
    return 2;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, runs = 2000;
    uint32_t bugs = 0;
    const char *bug = "";
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else if (!strcmp(argv[i], "--bug") && i + 1 < argc) {
            i++;
            size_t k = 0;
            while (k < sizeof bug_names / sizeof bug_names[0] && strcmp(bug_names[k].name, argv[i]))
                k++;
            if (k == sizeof bug_names / sizeof bug_names[0])
                return usage();
            bugs |= bug_names[k].bit;
            bug = argv[i];
        } else {
            return usage();
        }
    }
    if (bugs && !sv_sched_bugs_compiled()) {
        fprintf(stderr, "sched-sim: --bug needs the svsched_bugs library\n");
        return 2;
    }
    struct world *w = calloc(1, sizeof *w);
    if (!w)
        return 2;
    for (uint64_t r = 0; r < runs; r++)
        if (!run(w, seed + r, bugs, verbose)) {
            printf("sched-sim: FAILED: seed %" PRIu64 " (replay: sched-sim --seed %" PRIu64
                   " --runs 1%s%s)\n",
                   seed + r, seed + r, bugs ? " --bug " : "", bug);
            free(w);
            return 1;
        }
    printf("sched-sim: %" PRIu64 " schedules from seed %" PRIu64 ": every invariant held\n", runs,
           seed);
    free(w);
    return 0;
}
