/* The pure scheduler (sched.h): node states, repairs, drains, rebalance and
 * leader transfers decided from the map, the heartbeats and the time. */
#include "sv_sched.h"

#include "sv_assert.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifdef SV_SCHED_BUGS
#define HAS_BUG(bugs, b) (((bugs) & (b)) != 0)
#else
#define HAS_BUG(bugs, b) ((void)(bugs), false)
#endif

_Static_assert(SV_CFG_NODES_MAX <= 64, "node and zone sets are 64-bit masks");

/* One round's working state; node index i is the same in in->map, in->nodes
 * and next (the plan never adds nodes). */
struct plan {
    const struct sv_sched_in *in;
    struct sv_sched_out *out;
    struct sv_map *m; /* &out->next */
    bool health_known;
    bool pending;                     /* a repair or drain is pending or in flight */
    bool alive[SV_CFG_NODES_MAX];     /* heard within down_after */
    uint32_t zone[SV_CFG_NODES_MAX];  /* zone index */
    uint32_t moves[SV_CFG_NODES_MAX]; /* replacements in flight it is `to` or `out` of */
    uint32_t load[SV_CFG_NODES_MAX];  /* replicas it holds in next */
    uint32_t leads[SV_CFG_NODES_MAX]; /* groups it leads */
    bool busy[SV_CFG_SHARDS_MAX + 1]; /* group acted on or reported this round */
};

static int node_index(const struct plan *p, uint64_t id)
{
    for (uint32_t i = 0; i < p->m->n_nodes; i++)
        if (p->m->nodes[i].id == id)
            return (int)i;
    return -1;
}

static uint32_t node_state(const struct plan *p, uint64_t id)
{
    int i = node_index(p, id);
    return i < 0 ? SV_MAP_REMOVED : p->m->nodes[i].state;
}

static bool healthy(const struct plan *p, int i)
{
    return i >= 0 && p->m->nodes[i].state == SV_MAP_UP && p->alive[i];
}

/* Silence counted from the later of the last heartbeat and the takeover. */
static uint64_t silent_ms(const struct plan *p, uint32_t i)
{
    uint64_t last = p->in->nodes[i].last_ms,
             heard = last > p->in->since_ms ? last : p->in->since_ms;
    return p->in->now_ms > heard ? p->in->now_ms - heard : 0;
}

static void act(struct plan *p, uint32_t type, uint32_t reason, uint64_t group, uint64_t node,
                uint64_t to, uint32_t state)
{
    struct sv_sched_out *o = p->out;
    ASSERT(o->n < SV_SCHED_ACTIONS_MAX);
    o->a[o->n++] = (struct sv_sched_action){
        .type = type, .reason = reason, .group = group, .node = node, .to = to, .state = state};
}

static void report(struct plan *p, uint64_t group, uint64_t node, uint32_t reason)
{
    act(p, SV_SCHED_A_REPORT, reason, group, node, 0, 0);
}

/* The new replica of group's replacement in flight, 0 when none. */
static uint64_t new_replica(const struct sv_map_group *g)
{
    return g->out && g->n ? g->ids[g->n - 1] : 0;
}

/* Group gi's voters on live nodes are a majority: its configuration can
 * change. The new replica of a replacement counts as a voter once the
 * replacement's driver says it was promoted: a learner until then (counted
 * a learner after its promotion, a group whose other voter went silent
 * looked quorum-less, and that voter's node was never evicted: sched-sim
 * seed 942). */
static bool quorum_ok(const struct plan *p, uint64_t gi)
{
    const struct sv_map_group *g = &p->m->groups[gi];
    uint64_t fresh = p->in->groups[gi].new_voter ? 0 : new_replica(g);
    uint32_t voters = 0, live = 0;
    for (uint32_t k = 0; k < g->n; k++) {
        if (g->ids[k] == fresh)
            continue;
        int i = node_index(p, g->ids[k]);
        voters++;
        live += i >= 0 && p->alive[i];
    }
    return live * 2 > voters;
}

/* Zones (bit per zone index) holding a replica of g other than skip. */
static uint64_t zones_of(const struct plan *p, const struct sv_map_group *g, uint64_t skip)
{
    uint64_t zones = 0;
    for (uint32_t k = 0; k < g->n; k++) {
        int i = node_index(p, g->ids[k]);
        if (g->ids[k] != skip && i >= 0)
            zones |= 1ull << p->zone[i];
    }
    return zones;
}

/* Node index i may receive a replica of group replacing the one on `from`
 * (throttle aside); *why says what ruled it out. */
static bool target_fits(const struct plan *p, uint64_t group, uint64_t from, uint32_t i,
                        uint32_t *why)
{
    const struct sv_map_group *g = &p->m->groups[group];
    uint32_t bugs = p->in->bugs, st = p->m->nodes[i].state;
    bool leaving_ok = HAS_BUG(bugs, SV_SCHED_BUG_ONTO_LEAVING) && st == SV_MAP_DRAINING;
    *why = SV_SCHED_R_NO_ZONE;
    if ((st != SV_MAP_UP && !leaving_ok) || !p->alive[i] ||
        sv_map_holds(p->m, group, p->m->nodes[i].id))
        return false;
    if (!HAS_BUG(bugs, SV_SCHED_BUG_IGNORE_ZONES) && (zones_of(p, g, from) >> p->zone[i] & 1))
        return false;
    *why = SV_SCHED_R_NO_SPACE;
    return p->in->nodes[i].disk_free >= p->in->groups[group].bytes + SV_SCHED_DISK_MIN;
}

/* The best target for group's replica on `from`: fewest replicas, then
 * lowest id; -1 with *why (no-zone, no-space, throttled) when none. */
static int target_find(const struct plan *p, uint64_t group, uint64_t from, bool throttle,
                       uint32_t *why)
{
    int best = -1;
    *why = SV_SCHED_R_NO_ZONE;
    for (uint32_t i = 0; i < p->m->n_nodes; i++) {
        uint32_t w;
        if (!target_fits(p, group, from, i, &w)) {
            if (w == SV_SCHED_R_NO_SPACE && *why == SV_SCHED_R_NO_ZONE)
                *why = w;
            continue;
        }
        if (throttle && p->moves[i] >= p->m->set.moves_per_node) {
            *why = SV_SCHED_R_THROTTLED;
            continue;
        }
        if (best < 0 || p->load[i] < p->load[best] ||
            (p->load[i] == p->load[best] && p->m->nodes[i].id < p->m->nodes[best].id))
            best = (int)i;
    }
    return best;
}

static void replace_begin(struct plan *p, uint64_t group, uint64_t from, uint32_t to,
                          uint32_t reason)
{
    char err[192];
    uint64_t to_id = p->m->nodes[to].id;
    struct sv_map_group *g = &p->m->groups[group];
    if (sv_map_replace(p->m, group, from, to_id, err, sizeof err)) {
        /* The map's own checks refuse what a deliberate defect chose:
         * record it anyway, as a defective scheduler would. */
        ASSERT(p->in->bugs && g->n < SV_CFG_REPLICAS_MAX && !g->out);
        g->ids[g->n++] = to_id;
        g->out = from;
        p->m->epoch++;
    }
    int fi = node_index(p, from);
    if (fi >= 0)
        p->moves[fi]++;
    p->moves[to]++;
    p->load[to]++;
    p->busy[group] = true;
    p->pending = true;
    act(p, SV_SCHED_A_REPLACE, reason, group, from, to_id, 0);
}

/* ---- 1. node states ------------------------------------------------------ */

static void set_state(struct plan *p, uint32_t i, uint32_t state, uint32_t reason)
{
    char err[128];
    int rc = sv_map_node_state(p->m, p->m->nodes[i].id, state, err, sizeof err);
    ASSERT(rc == 0);
    act(p, SV_SCHED_A_STATE, reason, ~0ull, p->m->nodes[i].id, 0, state);
}

/* Evict down node i when that can lead to a repair: none of its groups lost
 * quorum, and some group of it has a target (throttling aside: it passes),
 * or it holds nothing. Reported otherwise. */
static void node_evict_try(struct plan *p, uint32_t i)
{
    uint64_t id = p->m->nodes[i].id;
    if (!p->m->set.auto_evict) {
        report(p, ~0ull, id, SV_SCHED_R_AUTO_EVICT_OFF);
        return;
    }
    bool held = false, repairable = false;
    uint32_t why = SV_SCHED_R_NONE;
    for (uint64_t gi = 0; gi <= p->m->n_shards; gi++) {
        const struct sv_map_group *g = &p->m->groups[gi];
        if (!sv_map_holds(p->m, gi, id))
            continue;
        held = true;
        if (!quorum_ok(p, gi)) {
            report(p, ~0ull, id, SV_SCHED_R_QUORUM_LOST);
            return;
        }
        uint32_t w;
        if (g->out || target_find(p, gi, id, false, &w) >= 0)
            repairable = true; /* in flight: abandoned or finished, then repaired */
        else if (!why)
            why = w;
    }
    if (held && !repairable)
        report(p, ~0ull, id, why);
    else
        set_state(p, i, SV_MAP_EVICTED, SV_SCHED_R_EVICTED);
}

static void nodes_judge(struct plan *p)
{
    const struct sv_map_settings *set = &p->m->set;
    uint64_t evict_ms =
        HAS_BUG(p->in->bugs, SV_SCHED_BUG_EVICT_EARLY) ? set->down_after_ms : set->evict_after_ms;
    for (uint32_t i = 0; i < p->m->n_nodes; i++) {
        uint32_t st = p->m->nodes[i].state;
        if (st == SV_MAP_DOWN && p->alive[i])
            set_state(p, i, SV_MAP_UP, SV_SCHED_R_NODE_BACK);
        else if (st == SV_MAP_UP && silent_ms(p, i) >= set->down_after_ms)
            set_state(p, i, SV_MAP_DOWN, SV_SCHED_R_NODE_DOWN);
        else if (st == SV_MAP_DOWN && silent_ms(p, i) >= evict_ms)
            node_evict_try(p, i);
    }
}

/* ---- 2, 3. repairs and drains --------------------------------------------- */

/* The replica of g to replace first (on an evicted/removed node, else on a
 * draining one), 0 when none; *reason: repair or drain. */
static uint64_t group_leaving(const struct plan *p, const struct sv_map_group *g, uint32_t *reason)
{
    for (uint32_t k = 0; k < g->n; k++) {
        uint32_t st = node_state(p, g->ids[k]);
        if (st == SV_MAP_EVICTED || st == SV_MAP_REMOVED) {
            *reason = SV_SCHED_R_REPAIR;
            return g->ids[k];
        }
    }
    for (uint32_t k = 0; k < g->n; k++)
        if (node_state(p, g->ids[k]) == SV_MAP_DRAINING) {
            *reason = SV_SCHED_R_DRAIN;
            return g->ids[k];
        }
    return 0;
}

/* A replica of g other than out and the new one is on a silent node that
 * is leaving (evicted, removed, draining) while `out` is heard: the new replica replaces that one
 * instead (its removal loses no copy; `out`, a drain's or a rebalance's, waits). Two replicas may
 * share a zone afterwards: group_zone_fix moves one.
 * Only while `out` is still a voter and its removal was not asked: once it
 * may have left the configuration, the map would keep it as a replica the
 * configuration lacks, and the replacement of the silent one would wait
 * forever for it (complete voters short by one: sched-sim seed 793). That
 * replacement finishes instead, and the silent replica is repaired or
 * drained after it. */
static void group_retarget(struct plan *p, uint64_t gi, struct sv_map_group *g)
{
    int oi = node_index(p, g->out);
    if (oi < 0 || !p->alive[oi] || !p->in->groups[gi].out_voter)
        return;
    for (uint32_t k = 0; k + 1 < g->n; k++) {
        int i = node_index(p, g->ids[k]);
        uint32_t st = node_state(p, g->ids[k]);
        if (g->ids[k] == g->out || (i >= 0 && p->alive[i]) ||
            (st != SV_MAP_EVICTED && st != SV_MAP_REMOVED && st != SV_MAP_DRAINING))
            continue;
        p->moves[oi]--;
        if (i >= 0)
            p->moves[i]++;
        g->out = g->ids[k];
        p->m->epoch++;
        act(p, SV_SCHED_A_REPLACE, SV_SCHED_R_REPAIR, gi, g->out, new_replica(g), 0);
        return;
    }
}

static void group_in_flight(struct plan *p, uint64_t gi)
{
    const struct sv_sched_group *hg = &p->in->groups[gi];
    uint64_t since = hg->progress_ms > p->in->since_ms ? hg->progress_ms : p->in->since_ms;
    struct sv_map_group *g = &p->m->groups[gi];
    p->pending = true;
    p->busy[gi] = true;
    group_retarget(p, gi, g);
    if (p->in->now_ms >= since + SV_SCHED_STALL_MS)
        report(p, gi, new_replica(&p->m->groups[gi]), SV_SCHED_R_SNAPSHOT_FAILING);
}

/* Begin group gi's repair (repairs true) or drain, or say why not. */
static void group_plan(struct plan *p, uint64_t gi, bool repairs)
{
    const struct sv_map_group *g = &p->m->groups[gi];
    uint32_t reason = SV_SCHED_R_NONE, why;
    uint64_t from = group_leaving(p, g, &reason);
    if (!from || (reason == SV_SCHED_R_REPAIR) != repairs)
        return;
    p->pending = true;
    p->busy[gi] = true;
    if (!p->health_known) {
        report(p, gi, from, SV_SCHED_R_HEALTH_UNKNOWN);
        return;
    }
    if (!quorum_ok(p, gi)) {
        report(p, gi, from, SV_SCHED_R_QUORUM_LOST);
        return;
    }
    if (g->n >= SV_CFG_REPLICAS_MAX) {
        report(p, gi, from, SV_SCHED_R_NO_SPACE);
        return;
    }
    int to = target_find(p, gi, from, true, &why);
    if (to < 0)
        report(p, gi, from, why);
    else
        replace_begin(p, gi, from, (uint32_t)to, reason);
}

/* Two replicas of g in one zone (after a retarget): the later one moves to
 * a zone holding none, when a target exists. */
static void group_zone_fix(struct plan *p, uint64_t gi)
{
    const struct sv_map_group *g = &p->m->groups[gi];
    uint32_t why;
    for (uint32_t k = 1; k < g->n; k++) {
        struct sv_map_group before = *g;
        before.n = k; /* the replicas before ids[k] */
        int i = node_index(p, g->ids[k]);
        if (i < 0 || !(zones_of(p, &before, 0) >> p->zone[i] & 1))
            continue;
        p->pending = true;
        p->busy[gi] = true;
        int to = g->n < SV_CFG_REPLICAS_MAX && p->health_known && quorum_ok(p, gi)
                     ? target_find(p, gi, g->ids[k], true, &why)
                     : -1;
        if (to >= 0)
            replace_begin(p, gi, g->ids[k], (uint32_t)to, SV_SCHED_R_REBALANCE);
        return;
    }
}

/* Why node id's eviction is held past evict_after (its node report of this
 * round: auto-evict-off, no-zone-available, no-space), or DOWN_WAITING. A
 * quorum-lost hold is about some other group of the node: not this one's. */
static uint32_t down_reason(const struct plan *p, uint64_t id)
{
    for (size_t i = 0; i < p->out->n; i++) {
        const struct sv_sched_action *a = &p->out->a[i];
        if (a->type == SV_SCHED_A_REPORT && a->group == ~0ull && a->node == id &&
            (a->reason == SV_SCHED_R_AUTO_EVICT_OFF || a->reason == SV_SCHED_R_NO_ZONE ||
             a->reason == SV_SCHED_R_NO_SPACE))
            return a->reason;
    }
    return SV_SCHED_R_DOWN_WAITING;
}

/* A replica on a down node, not yet evicted, of a group nothing else said
 * anything about: waiting for evict_after, or for what holds the eviction
 * (said per group too: HEALTH, and so `svctl status`, shows only groups). */
static void group_down_waiting(struct plan *p, uint64_t gi)
{
    const struct sv_map_group *g = &p->m->groups[gi];
    for (uint32_t k = 0; k < g->n; k++)
        if (node_state(p, g->ids[k]) == SV_MAP_DOWN) {
            p->pending = true;
            report(p, gi, g->ids[k], down_reason(p, g->ids[k]));
            return;
        }
}

/* ---- 4. balance ------------------------------------------------------------ */

/* One move from src to dst (indices) of a group src holds, if any fits. */
static bool rebalance_pair(struct plan *p, uint32_t src, uint32_t dst)
{
    uint64_t from = p->m->nodes[src].id;
    for (uint64_t gi = 0; gi <= p->m->n_shards; gi++) {
        uint32_t why;
        if (p->busy[gi] || p->m->groups[gi].out || !sv_map_holds(p->m, gi, from) ||
            p->m->groups[gi].n >= SV_CFG_REPLICAS_MAX || !target_fits(p, gi, from, dst, &why))
            continue;
        replace_begin(p, gi, from, dst, SV_SCHED_R_REBALANCE);
        p->load[src]--; /* projected: it leaves once the replacement ends */
        return true;
    }
    return false;
}

static bool movable(const struct plan *p, uint32_t i)
{
    return healthy(p, (int)i) && p->moves[i] < p->m->set.moves_per_node;
}

/* The most loaded movable node that can give one to a node holding two
 * fewer, to the least loaded such node: one move; false when none. */
static bool rebalance_one(struct plan *p)
{
    uint32_t n = p->m->n_nodes;
    for (uint32_t spread = 0; spread < n * n; spread++) {
        /* pairs in order of decreasing load difference, then ids */
        int best_s = -1, best_d = -1;
        uint32_t best_gap = 1;
        for (uint32_t s = 0; s < n; s++)
            for (uint32_t d = 0; d < n; d++)
                if (movable(p, s) && movable(p, d) && p->load[s] > p->load[d] + best_gap) {
                    best_gap = p->load[s] - p->load[d];
                    best_s = (int)s;
                    best_d = (int)d;
                }
        if (best_s < 0)
            return false;
        if (rebalance_pair(p, (uint32_t)best_s, (uint32_t)best_d))
            return true;
        /* that pair cannot move anything (zones): look at the others */
        for (uint32_t s = 0; s < n; s++)
            for (uint32_t d = 0; d < n; d++)
                if (movable(p, s) && movable(p, d) && p->load[s] > p->load[d] + 1 &&
                    rebalance_pair(p, s, d))
                    return true;
        return false;
    }
    return false;
}

static void rebalance(struct plan *p)
{
    uint32_t budget = p->m->n_nodes * p->m->set.moves_per_node;
    while (budget-- && rebalance_one(p))
        ;
}

/* A healthy replica of g (not the new one of a replacement, nor `out`) that
 * leads the fewest groups, -1 when none. */
static int leader_pick(const struct plan *p, const struct sv_map_group *g, uint64_t skip)
{
    int best = -1;
    uint64_t fresh = new_replica(g);
    for (uint32_t k = 0; k < g->n; k++) {
        int i = node_index(p, g->ids[k]);
        if (g->ids[k] == fresh || g->ids[k] == g->out || g->ids[k] == skip || !healthy(p, i))
            continue;
        if (best < 0 || p->leads[i] < p->leads[best])
            best = i;
    }
    return best;
}

static void transfer(struct plan *p, uint64_t gi, int from, int to, uint32_t reason)
{
    if (from >= 0)
        p->leads[from]--;
    p->leads[to]++;
    act(p, SV_SCHED_A_TRANSFER, reason, gi, from >= 0 ? p->m->nodes[from].id : 0,
        p->m->nodes[to].id, 0);
}

/* Calm enough to move leadership for balance: nothing pending or in
 * flight, the map unchanged this round and for SV_SCHED_LEADER_CALM_MS
 * before it, this meta leader in office that long. Leadership moves cost a
 * moment of unavailability each, and right after a start, a takeover or a
 * repair the heartbeats' leader counts are still settling by themselves. */
static bool leaders_calm(const struct plan *p)
{
    const struct sv_sched_in *in = p->in;
    uint64_t since = in->changed_ms > in->since_ms ? in->changed_ms : in->since_ms;
    return !p->pending && p->m->epoch == in->map->epoch &&
           in->now_ms >= since + SV_SCHED_LEADER_CALM_MS;
}

static void leaders_plan(struct plan *p)
{
    uint32_t eligible = 0, total = 0;
    for (uint32_t i = 0; i < p->m->n_nodes; i++)
        eligible += healthy(p, (int)i);
    for (uint64_t gi = 0; gi <= p->m->n_shards; gi++) {
        uint64_t lead = p->in->groups[gi].leader;
        int li = lead ? node_index(p, lead) : -1;
        if (!lead || !sv_map_holds(p->m, gi, lead))
            continue;
        if (healthy(p, li)) {
            total++;
            continue;
        }
        int to = leader_pick(p, &p->m->groups[gi], 0);
        if (to >= 0) {
            transfer(p, gi, li, to, SV_SCHED_R_LEADER_OFF);
            total++;
        }
    }
    if (!eligible || !leaders_calm(p))
        return;
    /* shards only: the meta group's leadership moves only off a node
     * that is down or draining (above) */
    for (uint64_t gi = 1; gi <= p->m->n_shards; gi++) {
        int li = node_index(p, p->in->groups[gi].leader);
        if (!healthy(p, li) || !sv_map_holds(p->m, gi, p->m->nodes[li].id) ||
            p->leads[li] * eligible <= total + eligible) /* leads <= mean + 1 */
            continue;
        int to = leader_pick(p, &p->m->groups[gi], p->m->nodes[li].id);
        /* never onto a node that would then lead above mean + 1 itself:
         * that would only call for the next move */
        if (to >= 0 && p->leads[to] + 1 < p->leads[li] &&
            (p->leads[to] + 1) * eligible <= total + eligible) {
            transfer(p, gi, li, to, SV_SCHED_R_LEADER_BALANCE);
            return; /* one a round: the next round sees its effect */
        }
    }
}

/* ---- the round ------------------------------------------------------------ */

static void plan_init(struct plan *p, const struct sv_sched_in *in, struct sv_sched_out *out)
{
    memset(p, 0, sizeof *p);
    p->in = in;
    p->out = out;
    p->m = &out->next;
    /* the used part only: a map holds room for SV_CFG_SHARDS_MAX groups */
    memcpy(&out->next, in->map,
           offsetof(struct sv_map, groups) + (in->map->n_shards + 1) * sizeof in->map->groups[0]);
    out->n = 0;
    const struct sv_map *m = in->map;
    p->health_known = true;
    uint32_t zones = 0;
    bool waited = in->now_ms >= in->since_ms + m->set.down_after_ms;
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const struct sv_sched_node *hn = &in->nodes[i];
        uint32_t j = 0;
        while (j < i && strcmp(m->nodes[j].zone, m->nodes[i].zone))
            j++;
        p->zone[i] = j < i ? p->zone[j] : zones++;
        p->alive[i] = hn->last_ms && hn->last_ms >= in->since_ms &&
                      in->now_ms < hn->last_ms + m->set.down_after_ms;
        p->load[i] = sv_map_node_replicas(m, m->nodes[i].id);
        uint32_t st = m->nodes[i].state;
        if (st != SV_MAP_EVICTED && st != SV_MAP_REMOVED && !waited &&
            !(hn->last_ms && hn->last_ms >= in->since_ms))
            p->health_known = false;
    }
    for (uint64_t gi = 0; gi <= m->n_shards; gi++) {
        const struct sv_map_group *g = &m->groups[gi];
        int li = in->groups[gi].leader ? node_index(p, in->groups[gi].leader) : -1;
        if (li >= 0 && sv_map_holds(m, gi, in->groups[gi].leader))
            p->leads[li]++;
        if (!g->out)
            continue;
        int a = node_index(p, g->out), b = node_index(p, new_replica(g));
        if (a >= 0)
            p->moves[a]++;
        if (b >= 0)
            p->moves[b]++;
    }
    out->health_known = p->health_known;
}

void sv_sched_plan(const struct sv_sched_in *in, struct sv_sched_out *out)
{
    struct plan p;
    plan_init(&p, in, out);
    if (!p.health_known)
        report(&p, ~0ull, 0, SV_SCHED_R_HEALTH_UNKNOWN);
    nodes_judge(&p);
    for (uint64_t gi = 0; gi <= p.m->n_shards; gi++)
        if (p.m->groups[gi].out)
            group_in_flight(&p, gi);
    for (uint64_t gi = 0; gi <= p.m->n_shards; gi++)
        if (!p.busy[gi])
            group_plan(&p, gi, true);
    for (uint64_t gi = 0; gi <= p.m->n_shards; gi++)
        if (!p.busy[gi])
            group_plan(&p, gi, false);
    for (uint64_t gi = 0; gi <= p.m->n_shards; gi++)
        if (!p.busy[gi] && !p.m->groups[gi].out)
            group_zone_fix(&p, gi);
    for (uint64_t gi = 0; gi <= p.m->n_shards; gi++)
        if (!p.busy[gi])
            group_down_waiting(&p, gi);
    if (!p.health_known)
        return;
    if (!p.pending && p.m->set.rebalance)
        rebalance(&p);
    leaders_plan(&p);
}

/* ---- a replacement's steps ------------------------------------------------ */

enum sv_sched_step sv_sched_replace_step(const struct sv_sched_conf *c, uint32_t bugs,
                                         uint32_t *why)
{
    *why = SV_SCHED_R_NONE;
    if (!c->committed) {
        *why = SV_SCHED_R_CATCHING_UP;
        return SV_SCHED_S_WAIT;
    }
    /* a gone new replica that is a complete voter still counts (its node
     * came back, evicted): the replacement finishes, a repair follows */
    bool new_counts = c->new_role == 1 && c->new_complete && c->complete_voters <= c->replicas;
    if (c->new_gone && c->out_role && !new_counts)
        return c->new_role ? SV_SCHED_S_REMOVE_NEW : SV_SCHED_S_MAP_ABANDON;
    if (!c->new_role)
        return c->new_gone ? SV_SCHED_S_WAIT : SV_SCHED_S_ADD_LEARNER;
    if (c->new_role == 2) {
        if (HAS_BUG(bugs, SV_SCHED_BUG_REMOVE_EARLY) && c->out_role)
            return SV_SCHED_S_REMOVE;
        if (c->new_complete)
            return SV_SCHED_S_PROMOTE;
        *why = SV_SCHED_R_CATCHING_UP;
        return SV_SCHED_S_WAIT;
    }
    if (!c->out_role)
        return SV_SCHED_S_MAP_FINISH;
    if (!c->new_complete) {
        *why = SV_SCHED_R_CATCHING_UP;
        return SV_SCHED_S_WAIT;
    }
    if (c->out_complete && c->complete_voters <= c->replicas) {
        *why = SV_SCHED_R_DOWN_WAITING;
        return SV_SCHED_S_WAIT;
    }
    return SV_SCHED_S_REMOVE;
}

bool sv_sched_bugs_compiled(void)
{
#ifdef SV_SCHED_BUGS
    return true;
#else
    return false;
#endif
}

/* ---- names and sentences ---------------------------------------------------- */

static const char *const reason_names[SV_SCHED_R_COUNT_] = {
    [SV_SCHED_R_NONE] = "none",
    [SV_SCHED_R_NODE_DOWN] = "node-down",
    [SV_SCHED_R_NODE_BACK] = "node-back",
    [SV_SCHED_R_EVICTED] = "evicted",
    [SV_SCHED_R_REPAIR] = "repair",
    [SV_SCHED_R_DRAIN] = "drain",
    [SV_SCHED_R_REBALANCE] = "rebalance",
    [SV_SCHED_R_LEADER_OFF] = "leader-off",
    [SV_SCHED_R_LEADER_BALANCE] = "leader-balance",
    [SV_SCHED_R_NO_ZONE] = "no-zone-available",
    [SV_SCHED_R_NO_SPACE] = "no-space",
    [SV_SCHED_R_QUORUM_LOST] = "quorum-lost",
    [SV_SCHED_R_THROTTLED] = "throttled",
    [SV_SCHED_R_AUTO_EVICT_OFF] = "auto-evict-off",
    [SV_SCHED_R_HEALTH_UNKNOWN] = "health-unknown",
    [SV_SCHED_R_CATCHING_UP] = "catching-up",
    [SV_SCHED_R_SNAPSHOT_FAILING] = "snapshot-failing",
    [SV_SCHED_R_DOWN_WAITING] = "down-waiting",
};

const char *sv_sched_reason_name(uint32_t reason)
{
    return reason < SV_SCHED_R_COUNT_ ? reason_names[reason] : "?";
}

/* What a report says, after "shard S: " or "node N: ". */
static const char *const report_text[SV_SCHED_R_COUNT_] = {
    [SV_SCHED_R_NO_ZONE] = "no healthy node in a zone without a replica",
    [SV_SCHED_R_NO_SPACE] = "no healthy node with room on its disk",
    [SV_SCHED_R_QUORUM_LOST] = "most replicas are on silent nodes: the configuration cannot change",
    [SV_SCHED_R_THROTTLED] = "every candidate takes part in moves_per_node moves already",
    [SV_SCHED_R_AUTO_EVICT_OFF] = "stays down: evictions are held (auto_evict off)",
    [SV_SCHED_R_HEALTH_UNKNOWN] = "not every node heard since this meta leader took over",
    [SV_SCHED_R_CATCHING_UP] = "the new replica copies data",
    [SV_SCHED_R_SNAPSHOT_FAILING] = "the new replica made no progress for 60 s",
    [SV_SCHED_R_DOWN_WAITING] = "a replica's node is down, waiting for evict_after",
};

static int subject(const struct sv_sched_action *a, char *buf, size_t cap)
{
    if (a->group == ~0ull)
        return a->node ? snprintf(buf, cap, "node %llu: ", (unsigned long long)a->node)
                       : snprintf(buf, cap, "cluster: ");
    if (a->group == 0)
        return snprintf(buf, cap, "meta group: ");
    return snprintf(buf, cap, "shard %llu: ", (unsigned long long)(a->group - 1));
}

void sv_sched_action_text(const struct sv_sched_action *a, char *buf, size_t cap)
{
    if (!cap)
        return;
    int off = subject(a, buf, cap);
    size_t at = off < 0 ? 0 : (size_t)off < cap ? (size_t)off : cap - 1;
    char *b = buf + at;
    size_t room = cap - at;
    unsigned long long node = a->node, to = a->to;
    const char *why = sv_sched_reason_name(a->reason);
    switch (a->type) {
    case SV_SCHED_A_STATE:
        snprintf(b, room, "now %s (%s)", sv_map_state_name(a->state), why);
        break;
    case SV_SCHED_A_REPLACE:
        snprintf(b, room, "replica on node %llu replaced by one on node %llu (%s)", node, to, why);
        break;
    case SV_SCHED_A_TRANSFER:
        snprintf(b, room, "leadership from node %llu to node %llu (%s)", node, to, why);
        break;
    case SV_SCHED_A_REPORT: {
        const char *t = a->reason < SV_SCHED_R_COUNT_ ? report_text[a->reason] : NULL;
        if (a->node && a->group != ~0ull)
            snprintf(b, room, "%s (node %llu; %s)", t ? t : "cannot act", node, why);
        else
            snprintf(b, room, "%s (%s)", t ? t : "cannot act", why);
        break;
    }
    default:
        snprintf(b, room, "action %u (%s)", a->type, why);
    }
}
