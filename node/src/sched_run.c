/* svd's scheduler, run by the meta group's leader: every SCHED_MS it takes
 * the recorded map, the operators' requests waiting (drain, remove, set,
 * join, move), the replacements whose configuration part is done
 * (move.c), feeds the result and the heartbeats (health.c) to the pure
 * planner (scheduler.h), and proposes the one next map. Only the meta
 * leader writes the map, one proposal at a time, each made from the epoch
 * it read: nothing it plans is lost or doubled by a change of leader, and
 * the next leader plans again from the record.
 *
 * Operators' requests are answered once the recorded map shows them (a
 * move once it is done). Every decision and every report that changed goes
 * to a log of the last SCHED_LOG_MAX (SCHED_LOG); the last round's reports
 * answer HEALTH. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_sched.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SCHED_LOG_MAX = 256,
    OP_TIMEOUT_MS = 15000,    /* an operator's request not recorded by then: UNAVAILABLE */
    MOVE_TIMEOUT_MS = 180000, /* a MOVE not done by then */
    PROPOSE_WAIT_MS = 3000,   /* a proposed map not read back by then is planned again */
    TRANSFER_EVERY_MS = 5000, /* between leadership transfers of one group */
};

/* An operator's request waiting for the map to show it. */
struct op {
    struct op *next;
    uint64_t conn, req_id;
    uint32_t type;
    uint64_t node, group, to; /* NODE; MOVE: group, from (node), to */
    uint64_t flags;
    char key[32];
    uint64_t value;
    uint64_t cut_ms; /* DR_PROMOTE: the consistent cut (map.h, site_cut_ms) */
    char zone[SV_CFG_NAME_MAX], addr[SV_CFG_ADDR_MAX];
    uint64_t deadline_ms;
};

struct log_entry {
    uint64_t wall_ms;
    struct sv_sched_action a;
    char text[200];
};

struct sv__sched {
    struct op *ops;
    struct sv_map next;        /* scratch: the map being planned */
    struct sv_sched_out *out;  /* the last round's plan */
    struct sv_sched_out *prev; /* the plan of the round before */
    bool have_plan, have_prev; /* out, prev are of this term */
    uint64_t proposed_epoch;   /* the epoch a proposed map would make, 0 none in flight */
    uint64_t proposed_ms;
    uint64_t planned_ms;
    uint64_t seen_epoch; /* the epoch of the map planned last */
    uint64_t changed_ms; /* when a map to plan first had a new epoch (sv_sched_in's) */
    struct log_entry log[SCHED_LOG_MAX];
    uint64_t n_log; /* entries ever logged (the ring holds the last SCHED_LOG_MAX) */
    uint64_t transfer_ms[SV_CFG_SHARDS_MAX + 1];
    struct sv_sched_node hn[SV_CFG_NODES_MAX];
    struct sv_sched_group hg[SV_CFG_SHARDS_MAX + 1];
};

int sv__sched_open(struct sv_node *n)
{
    struct sv__sched *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->out = malloc(sizeof *s->out);
    s->prev = malloc(sizeof *s->prev);
    n->sched = s;
    return s->out && s->prev ? 0 : -ENOMEM;
}

static void answer(struct sv_node *n, struct op *o, int status, const char *text);

void sv__sched_close(struct sv_node *n)
{
    if (!n->sched)
        return;
    while (n->sched->ops) {
        struct op *o = n->sched->ops;
        n->sched->ops = o->next;
        answer(n, o, SV_ST_UNAVAILABLE, "this node is stopping; retry");
    }
    free(n->sched->out);
    free(n->sched->prev);
    free(n->sched);
    n->sched = NULL;
}

/* ---- the decision log ---------------------------------------------------- */

static void log_action(struct sv_node *n, const struct sv_sched_action *a)
{
    struct sv__sched *s = n->sched;
    struct log_entry *e = &s->log[s->n_log++ % SCHED_LOG_MAX];
    e->wall_ms = n->clock.wall_ms(n->clock.arg);
    e->a = *a;
    sv_sched_action_text(a, e->text, sizeof e->text);
    if (a->type == SV_SCHED_A_REPORT)
        LOG_WARN("scheduler: %s: %s", sv_sched_reason_name(a->reason), e->text);
    else
        LOG_INFO("scheduler: %s: %s", sv_sched_reason_name(a->reason), e->text);
    sv__stats_sched(n, a);
}

/* a was in the plan of the round before (a report that has not changed is
 * logged once). */
static bool planned_before(const struct sv__sched *s, const struct sv_sched_action *a)
{
    for (size_t i = 0; s->have_prev && i < s->prev->n; i++) {
        const struct sv_sched_action *b = &s->prev->a[i];
        if (b->type == a->type && b->reason == a->reason && b->group == a->group &&
            b->node == a->node && b->to == a->to)
            return true;
    }
    return false;
}

/* ---- operators' requests ------------------------------------------------- */

static void send_settings(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id);

static void answer(struct sv_node *n, struct op *o, int status, const char *text)
{
    if (status == SV_ST_OK && o->type == SV_MSG_CLUSTER_SET) {
        /* a setting changed: the answer is every setting, as CLUSTER_SET
         * without a key answers */
        if (o->conn)
            send_settings(n, o->conn, o->type, o->req_id);
        free(o);
        return;
    }
    struct sv_msg m = {0};
    m.status = status;
    m.epoch = n->map->epoch;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_EPOCH;
    if (status == SV_ST_OK && (o->type == SV_MSG_DR_PROMOTE || o->type == SV_MSG_DR_DEMOTE ||
                               o->type == SV_MSG_DR_FAILBACK)) {
        m.version = n->map->site_epoch;
        SV_MSG_SET(&m, SV_F_VERSION);
        if (o->type == SV_MSG_DR_PROMOTE && n->map->site_cut_ms) {
            m.mtime_ms = n->map->site_cut_ms;
            SV_MSG_SET(&m, SV_F_MTIME_MS);
        }
    }
    if (text && text[0]) {
        m.msg = (struct sv_bytes){(const uint8_t *)text, strlen(text)};
        SV_MSG_SET(&m, SV_F_MSG);
    }
    if (o->conn)
        sv__send_msg(n, o->conn, o->type, o->req_id, &m);
    free(o);
}

/* The recorded map shows o. */
static bool recorded(const struct sv_map *map, const struct op *o)
{
    const struct sv_map_node *mn = sv_map_node(map, o->node);
    const struct sv_map_group *mg = sv_map_group(map, o->group);
    switch (o->type) {
    case SV_MSG_DRAIN:
        return mn && mn->state == (o->flags & 1 ? SV_MAP_UP : SV_MAP_DRAINING);
    case SV_MSG_NODE_REMOVE:
        return mn && mn->state == SV_MAP_REMOVED;
    case SV_MSG_JOIN:
        return mn != NULL;
    case SV_MSG_MOVE:
        return mg && !mg->out && sv_map_holds(map, o->group, o->to) &&
               !sv_map_holds(map, o->group, o->node);
    case SV_MSG_DR_PROMOTE:
        return map->site_role == SV_MAP_PRIMARY && map->site_epoch >= o->value;
    case SV_MSG_DR_DEMOTE:
        return map->site_role == SV_MAP_FENCED;
    case SV_MSG_DR_FAILBACK:
        return map->site_role == SV_MAP_STANDBY && map->site_epoch == o->value;
    default: /* CLUSTER_SET: the planner's settings are compared in set_value */
        return false;
    }
}

/* Setting name of CLUSTER_SET, its place in set and the value's scale. */
static const struct setting {
    const char *name;
    size_t off;
    bool u32;
    uint64_t scale, min, max;
} settings[] = {
    {"down-after", offsetof(struct sv_map_settings, down_after_ms), false, 1000, 1, 86400},
    {"evict-after", offsetof(struct sv_map_settings, evict_after_ms), false, 1000, 1, 86400},
    {"auto-evict", offsetof(struct sv_map_settings, auto_evict), true, 1, 0, 1},
    {"repair-rate", offsetof(struct sv_map_settings, repair_rate), false, 1, 1u << 20,
     UINT64_C(1) << 40},
    {"moves-per-node", offsetof(struct sv_map_settings, moves_per_node), true, 1, 1, 64},
    {"rebalance", offsetof(struct sv_map_settings, rebalance), true, 1, 0, 1},
};

static const struct setting *setting(const char *name)
{
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        if (!strcmp(settings[i].name, name))
            return &settings[i];
    return NULL;
}

static uint64_t setting_get(const struct sv_map_settings *set, const struct setting *st)
{
    const char *p = (const char *)set + st->off;
    uint64_t v = st->u32 ? *(const uint32_t *)(const void *)p : *(const uint64_t *)(const void *)p;
    return v / st->scale;
}

static void setting_put(struct sv_map_settings *set, const struct setting *st, uint64_t v)
{
    char *p = (char *)set + st->off;
    if (st->u32)
        *(uint32_t *)(void *)p = (uint32_t)v;
    else
        *(uint64_t *)(void *)p = v * st->scale;
}

/* Apply o to map (the scratch map of this round). 0, or a BAD_REQUEST with
 * the sentence in err. */
static int op_apply(struct sv_map *map, const struct op *o, char *err, size_t cap)
{
    const struct sv_map_node *mn = sv_map_node(map, o->node);
    switch (o->type) {
    case SV_MSG_DRAIN:
        if (!mn || mn->state == SV_MAP_EVICTED || mn->state == SV_MAP_REMOVED) {
            snprintf(err, cap, "node %" PRIu64 " is %s", o->node,
                     mn ? sv_map_state_name(mn->state) : "not in the cluster map");
            return SV_ST_BAD_REQUEST;
        }
        return sv_map_node_state(map, o->node, o->flags & 1 ? SV_MAP_UP : SV_MAP_DRAINING, err, cap)
                   ? SV_ST_BAD_REQUEST
                   : 0;
    case SV_MSG_NODE_REMOVE: {
        uint32_t held = mn ? sv_map_node_replicas(map, o->node) : 0;
        if (mn && held && !(o->flags & 1)) {
            snprintf(err, cap,
                     "node %" PRIu64 " still holds %u replicas: drain it first (svctl node "
                     "drain %" PRIu64 "), or remove it with --force to have them rebuilt "
                     "elsewhere",
                     o->node, held, o->node);
            return SV_ST_BAD_REQUEST;
        }
        return sv_map_node_state(map, o->node, SV_MAP_REMOVED, err, cap) ? SV_ST_BAD_REQUEST : 0;
    }
    case SV_MSG_JOIN:
        if (mn)
            return !strcmp(mn->zone, o->zone) && !strcmp(mn->addr, o->addr) &&
                           mn->state == SV_MAP_UP
                       ? 0
                       : (snprintf(err, cap, "node id %" PRIu64 " is taken", o->node),
                          SV_ST_BAD_REQUEST);
        return sv_map_node_add(map, o->node, o->zone, o->addr, err, cap) ? SV_ST_BAD_REQUEST : 0;
    case SV_MSG_MOVE:
        return sv_map_replace(map, o->group, o->node, o->to, err, cap) ? SV_ST_BAD_REQUEST : 0;
    case SV_MSG_DR_PROMOTE:
        if (map->site_role == SV_MAP_PRIMARY) {
            snprintf(err, cap, "this site is the primary already (site epoch %" PRIu64 ")",
                     map->site_epoch);
            return SV_ST_BAD_REQUEST;
        }
        if (map->site_role == SV_MAP_STANDBY)
            map->site_cut_ms = o->cut_ms;
        map->site_role = SV_MAP_PRIMARY;
        map->site_epoch = o->value;
        map->epoch++;
        return 0;
    case SV_MSG_DR_DEMOTE:
        if (map->site_role != SV_MAP_FENCED) {
            map->site_role = SV_MAP_FENCED;
            map->epoch++;
        }
        return 0;
    case SV_MSG_DR_FAILBACK:
        /* the standby of the primary at epoch value: every shard's cursor
         * counts in another log, so each is re-seeded (dr.c) */
        if (map->site_role != SV_MAP_FENCED || map->site_epoch >= o->value) {
            snprintf(err, cap, "only a fenced site fails back to a newer primary");
            return SV_ST_BAD_REQUEST;
        }
        map->site_role = SV_MAP_STANDBY;
        map->site_epoch = o->value;
        map->epoch++;
        return 0;
    default: {
        const struct setting *st = setting(o->key);
        struct sv_map_settings set = map->set;
        setting_put(&set, st, o->value);
        if (set.evict_after_ms < set.down_after_ms) {
            snprintf(err, cap,
                     "evict-after (%" PRIu64 " s) must not be below down-after (%" PRIu64 " s)",
                     set.evict_after_ms / 1000, set.down_after_ms / 1000);
            return SV_ST_BAD_REQUEST;
        }
        if (memcmp(&set, &map->set, sizeof set)) {
            map->set = set;
            map->epoch++;
        }
        return 0;
    }
    }
}

/* Answer the requests the recorded map shows, and those past their time. */
static void ops_settle(struct sv_node *n, uint64_t now_ms)
{
    struct op **pp = &n->sched->ops;
    while (*pp) {
        struct op *o = *pp;
        bool done = o->type == SV_MSG_CLUSTER_SET
                        ? setting_get(&n->map->set, setting(o->key)) == o->value
                        : recorded(n->map, o);
        if (!done && now_ms < o->deadline_ms) {
            pp = &o->next;
            continue;
        }
        *pp = o->next;
        if (done && o->type == SV_MSG_JOIN)
            sv__health_heard(n, o->node, now_ms); /* silent from now on only */
        if (done)
            answer(n, o, SV_ST_OK, NULL);
        else
            answer(n, o, SV_ST_UNAVAILABLE,
                   "not recorded in time (the meta group may have "
                   "lost its leader); retry");
    }
}

/* o's change is in map: recorded, or (a move) under way. */
static bool in_map(const struct sv_map *map, const struct op *o)
{
    const struct sv_map_group *mg = sv_map_group(map, o->group);
    if (o->type == SV_MSG_MOVE && mg && mg->out == o->node && sv_map_holds(map, o->group, o->to))
        return true;
    return recorded(map, o);
}

/* Put the waiting requests into map (again each round until the record
 * shows them: a proposal may be lost with a leader); refused ones are
 * answered now. */
static void ops_plan(struct sv_node *n, struct sv_map *map)
{
    struct op **pp = &n->sched->ops;
    while (*pp) {
        struct op *o = *pp;
        char err[256] = "";
        int status = in_map(map, o) ? 0 : op_apply(map, o, err, sizeof err);
        if (status) {
            *pp = o->next;
            answer(n, o, status, err);
            continue;
        }
        pp = &o->next;
    }
}

/* ---- a round ------------------------------------------------------------ */

/* The replacements whose configuration part is done leave the map. */
static void finish_replacements(struct sv_node *n, struct sv_map *map)
{
    for (uint64_t g = 0; g <= map->n_shards; g++) {
        const struct sv_map_group *mg = &map->groups[g];
        bool abandoned;
        if (!mg->out || !sv__move_finished(n, g, &abandoned))
            continue;
        uint64_t node = abandoned ? mg->ids[mg->n - 1] : mg->out;
        char err[256];
        if (sv_map_remove(map, g, node, err, sizeof err))
            LOG_ERROR("scheduler: %s", err);
        else
            LOG_INFO("group %" PRIu64 ": replacement %s; node %" PRIu64 " leaves its map entry", g,
                     abandoned ? "abandoned" : "done", node);
    }
}

/* The planner's view of the heartbeats. */
static void fill_in(struct sv_node *n, const struct sv_map *map, struct sv_sched_in *in)
{
    struct sv__sched *s = n->sched;
    const struct sv__health *h = n->health;
    for (uint32_t i = 0; i < map->n_nodes; i++) {
        const struct sv__hnode *hn = sv__health_node(n, map->nodes[i].id);
        s->hn[i] = (struct sv_sched_node){0};
        if (hn)
            s->hn[i] = (struct sv_sched_node){hn->last_ms, hn->free, hn->bytes};
    }
    for (uint64_t g = 0; g <= map->n_shards; g++) {
        const struct sv_map_group *mg = &map->groups[g];
        struct sv_sched_group *sg = &s->hg[g];
        *sg = (struct sv_sched_group){.leader = h->groups[g].leader, .bytes = h->groups[g].bytes};
        if (mg->out)
            sv__move_roles(n, g, mg->out, mg->ids[mg->n - 1], &sg->out_voter, &sg->new_voter);
        for (uint32_t k = 0; k < mg->n; k++) {
            const struct sv__hnode *hn = sv__health_node(n, mg->ids[k]);
            const struct sv__hreplica *r = hn ? &hn->groups[g] : NULL;
            if (r && r->complete && r->seen_ms)
                sg->complete |= 1u << k;
            if (mg->out && k == mg->n - 1) {
                /* Progress counts from the replacement's start at the
                 * earliest: an idle group's new replica changes nothing. */
                uint64_t start = sv__move_started(n, g);
                uint64_t seen = r ? r->progress_ms : 0;
                sg->progress_ms = seen > start ? seen : start ? start : h->since_ms;
            }
        }
    }
    *in = (struct sv_sched_in){.map = map,
                               .nodes = s->hn,
                               .groups = s->hg,
                               .now_ms = uv_now(&n->loop),
                               .since_ms = h->since_ms};
}

/* Leadership transfers the plan asks for, at most one per group every
 * TRANSFER_EVERY_MS. */
static void transfers(struct sv_node *n, uint64_t now_ms)
{
    struct sv__sched *s = n->sched;
    for (size_t i = 0; i < s->out->n; i++) {
        const struct sv_sched_action *a = &s->out->a[i];
        if (a->type != SV_SCHED_A_TRANSFER || a->group > SV_CFG_SHARDS_MAX ||
            now_ms - s->transfer_ms[a->group] < TRANSFER_EVERY_MS)
            continue;
        s->transfer_ms[a->group] = now_ms;
        sv__move_transfer(n, a->group, n->health->groups[a->group].leader, a->to);
    }
}

static void plan(struct sv_node *n, uint64_t now_ms)
{
    struct sv__sched *s = n->sched;
    s->next = *n->map;
    ops_plan(n, &s->next);
    finish_replacements(n, &s->next);
    if (s->next.epoch != s->seen_epoch) {
        s->seen_epoch = s->next.epoch;
        s->changed_ms = now_ms;
    }
    struct sv_sched_in in;
    fill_in(n, &s->next, &in);
    in.changed_ms = s->changed_ms;
    struct sv_sched_out *t = s->prev;
    s->prev = s->out;
    s->out = t;
    s->have_prev = s->have_plan;
    sv_sched_plan(&in, s->out);
    for (size_t i = 0; i < s->out->n; i++)
        if (!planned_before(s, &s->out->a[i]))
            log_action(n, &s->out->a[i]);
    s->have_plan = true;
    if (s->out->next.epoch != n->map->epoch) {
        int rc = sv__meta_propose(n, &s->out->next, n->map->epoch);
        if (rc) {
            LOG_WARN("scheduler: proposing map epoch %" PRIu64 ": %s", s->out->next.epoch,
                     sv_strerror(rc));
        } else {
            s->proposed_epoch = s->out->next.epoch;
            s->proposed_ms = now_ms;
        }
    }
    sv__copy_set_rate(n, n->map->set.repair_rate);
    transfers(n, now_ms);
}

void sv__sched_tick(struct sv_node *n, uint64_t now_ms)
{
    struct sv__sched *s = n->sched;
    if (!sv__health_leading(n)) {
        s->have_plan = s->have_prev = false;
        s->proposed_epoch = 0;
        /* A node that is not the meta leader answers nothing more: its
         * waiting requests go back to be asked again. */
        while (s->ops) {
            struct op *o = s->ops;
            s->ops = o->next;
            answer(n, o, SV_ST_UNAVAILABLE, "the meta group's leader changed; retry");
        }
        sv__copy_set_rate(n, n->map->set.repair_rate);
        return;
    }
    ops_settle(n, now_ms);
    if (s->proposed_epoch && n->map->epoch < s->proposed_epoch &&
        now_ms - s->proposed_ms < PROPOSE_WAIT_MS)
        return; /* the last proposal is not read back yet */
    s->proposed_epoch = 0;
    if (now_ms - s->planned_ms < SCHED_MS && !s->ops)
        return;
    s->planned_ms = now_ms;
    plan(n, now_ms);
}

/* ---- requests ------------------------------------------------------------ */

/* Not the meta leader: name it, or (not knowing it) a member of the meta
 * group, which knows. */
static bool redirect(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    if (sv__health_leading(n))
        return false;
    const struct group *g = sv__group(n, 0);
    uint64_t leader = g ? g->leader : n->health->hint;
    const struct sv_map_group *mg = sv_map_group(n->map, 0);
    for (uint32_t k = 0; !leader && k < mg->n; k++)
        if (mg->ids[k] != n->me->id)
            leader = mg->ids[k];
    sv__reply_not_leader(n, sv_conn_id(c), f->type, f->req_id, leader);
    return true;
}

void sv__sched_request(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                       const struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    if (redirect(n, c, f))
        return;
    const char *missing = NULL;
    if (f->type == SV_MSG_CLUSTER_SET && SV_MSG_HAS(m, SV_F_KEY)) {
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(m->key.len < 31 ? m->key.len : 31),
                 (const char *)m->key.p);
        const struct setting *st = setting(name);
        if (!st || !SV_MSG_HAS(m, SV_F_SIZE) || m->size < st->min || m->size > st->max) {
            char text[200];
            snprintf(text, sizeof text,
                     st ? "%s takes a value in %" PRIu64 "..%" PRIu64
                        : "no setting %s: down-after, evict-after, auto-evict, repair-rate, "
                          "moves-per-node, rebalance",
                     name, st ? st->min : 0, st ? st->max : 0);
            sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST, text);
            return;
        }
    } else if (f->type == SV_MSG_CLUSTER_SET) {
        sv__sched_reply_settings(n, c, f);
        return;
    }
    if (f->type == SV_MSG_JOIN &&
        (!SV_MSG_HAS(m, SV_F_NODE) || !SV_MSG_HAS(m, SV_F_ZONE) || !SV_MSG_HAS(m, SV_F_ADDR) ||
         m->zone.len >= SV_CFG_NAME_MAX || m->addr.len >= SV_CFG_ADDR_MAX))
        missing = "JOIN needs NODE, ZONE and ADDR";
    else if ((f->type == SV_MSG_DRAIN || f->type == SV_MSG_NODE_REMOVE) &&
             !SV_MSG_HAS(m, SV_F_NODE))
        missing = "NODE is missing";
    else if (f->type == SV_MSG_DR_PROMOTE) {
        bool force = SV_MSG_HAS(m, SV_F_FLAGS) && (m->flags & 1);
        if (n->map->site_role == SV_MAP_PRIMARY)
            missing = "this site is the primary already";
        else if (!force && sv__dr_primary_answers(n))
            missing = "the primary site still answers (within the last 3 s): promoting now "
                      "would make two primaries; fence it first (svctl dr demote on it), or "
                      "promote with --force";
        else if (!force && n->map->site_role == SV_MAP_STANDBY && !sv__health_frontier(n)) {
            sv__reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE,
                             "the site's frontier is not known yet (a shard's leader has not "
                             "reported it to this meta leader): retry, or promote with --force "
                             "(a forced promotion with no frontier cuts no shard: each keeps "
                             "every entry it received)");
            return;
        }
    } else if (f->type == SV_MSG_DR_FAILBACK) {
        if (n->map->site_role != SV_MAP_FENCED)
            missing = "only a fenced site fails back (this site is not fenced)";
        else if (!SV_MSG_HAS(m, SV_F_VERSION) || m->version <= n->map->site_epoch)
            missing = "DR_FAILBACK needs VERSION: the new primary's site epoch, above this "
                      "site's";
        else if (!sv__dr_peer_newer(n) || n->dr_peer_epoch < m->version) {
            /* the peer is polled every second: the promotion may not be heard yet */
            char text[160];
            snprintf(text, sizeof text,
                     "this site has not heard the peer site as the primary at site epoch "
                     "%" PRIu64 " yet; retry",
                     m->version);
            sv__reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE, text);
            return;
        }
    } else if (f->type == SV_MSG_MOVE &&
               (!SV_MSG_HAS(m, SV_F_SHARD) || !SV_MSG_HAS(m, SV_F_NODE) ||
                !SV_MSG_HAS(m, SV_F_LEADER) || m->shard >= n->map->n_shards))
        missing = "MOVE needs SHARD, NODE (from) and LEADER (to)";
    if (missing) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST, missing);
        return;
    }
    struct op *o = calloc(1, sizeof *o);
    if (!o) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    o->conn = conn;
    o->req_id = f->req_id;
    o->type = f->type;
    o->node = m->node;
    o->flags = m->flags;
    o->deadline_ms = uv_now(&n->loop) + (f->type == SV_MSG_MOVE ? MOVE_TIMEOUT_MS : OP_TIMEOUT_MS);
    if (f->type == SV_MSG_MOVE) {
        o->group = m->shard + 1;
        o->to = m->leader;
    }
    if (f->type == SV_MSG_CLUSTER_SET) {
        snprintf(o->key, sizeof o->key, "%.*s", (int)m->key.len, (const char *)m->key.p);
        o->value = m->size;
    }
    if (f->type == SV_MSG_JOIN) {
        snprintf(o->zone, sizeof o->zone, "%.*s", (int)m->zone.len, (const char *)m->zone.p);
        snprintf(o->addr, sizeof o->addr, "%.*s", (int)m->addr.len, (const char *)m->addr.p);
    }
    if (f->type == SV_MSG_DR_PROMOTE) { /* past any epoch the peer site answered */
        o->value =
            (n->map->site_epoch > n->dr_peer_epoch ? n->map->site_epoch : n->dr_peer_epoch) + 1;
        o->cut_ms = sv__health_frontier(n);
        if (!o->cut_ms)
            o->cut_ms = UINT64_MAX;
    }
    if (f->type == SV_MSG_DR_FAILBACK)
        o->value = m->version;
    if (f->type == SV_MSG_JOIN)
        sv__health_heard(n, o->node, uv_now(&n->loop));
    o->next = n->sched->ops;
    n->sched->ops = o;
    n->sched->planned_ms = 0; /* plan at the next tick */
}

void sv__sched_fence(struct sv_node *n)
{
    for (const struct op *o = n->sched->ops; o; o = o->next)
        if (o->type == SV_MSG_DR_DEMOTE)
            return;
    struct op *o = calloc(1, sizeof *o);
    if (!o)
        return;
    o->type = SV_MSG_DR_DEMOTE; /* conn 0: nobody waits for the answer */
    o->deadline_ms = uv_now(&n->loop) + OP_TIMEOUT_MS;
    o->next = n->sched->ops;
    n->sched->ops = o;
    n->sched->planned_ms = 0;
}

void sv__sched_reply_settings(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    send_settings(n, sv_conn_id(c), f->type, f->req_id);
}

static void send_settings(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id)
{
    enum { N = sizeof settings / sizeof settings[0] };
    struct sv_item items[N];
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < N; i++) {
        items[i].key =
            (struct sv_bytes){(const uint8_t *)settings[i].name, strlen(settings[i].name)};
        items[i].size = setting_get(&n->map->set, &settings[i]);
        items[i].fields = 1u << SV_I_KEY | 1u << SV_I_SIZE;
    }
    struct sv_msg m = {0};
    m.epoch = n->map->epoch;
    m.items = items;
    m.n_items = N;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_EPOCH | 1u << SV_F_ITEMS;
    sv__send_msg(n, conn, type, req_id, &m);
}

/* Is the health of the cluster known to this leader (sched's last plan). */
static bool health_known(const struct sv_node *n)
{
    return n->sched->have_plan && n->sched->out->health_known;
}

static void set_str(struct sv_bytes *b, const char *s)
{
    b->p = (const uint8_t *)s;
    b->len = strlen(s);
}

void sv__sched_reply_nodes(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    if (redirect(n, c, f))
        return;
    const struct sv_map *map = n->map;
    struct sv_item *items = calloc(map->n_nodes ? map->n_nodes : 1, sizeof *items);
    if (!items) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    uint64_t now = uv_now(&n->loop);
    for (uint32_t i = 0; i < map->n_nodes; i++) {
        const struct sv_map_node *mn = &map->nodes[i];
        const struct sv__hnode *hn = sv__health_node(n, mn->id);
        struct sv_item *it = &items[i];
        it->id = mn->id;
        set_str(&it->zone, mn->zone);
        set_str(&it->addr, mn->addr);
        set_str(&it->state, sv_map_state_name(mn->state));
        it->n_replicas_count = sv_map_node_replicas(map, mn->id);
        it->fields = 1u << SV_I_ID | 1u << SV_I_ZONE | 1u << SV_I_ADDR | 1u << SV_I_STATE |
                     1u << SV_I_N_REPLICAS;
        if (hn && hn->last_ms) {
            /* A silent node leads nothing any more, whatever it last said. */
            it->n_leaders = now - hn->last_ms < map->set.down_after_ms ? hn->n_leaders : 0;
            it->bytes = hn->bytes;
            it->free = hn->free;
            it->age_ms = now - hn->last_ms;
            it->fields |=
                1u << SV_I_N_LEADERS | 1u << SV_I_BYTES | 1u << SV_I_FREE | 1u << SV_I_AGE_MS;
        }
    }
    struct sv_msg m = {0};
    m.epoch = map->epoch;
    m.flags = health_known(n);
    m.items = items;
    m.n_items = map->n_nodes;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_EPOCH | 1u << SV_F_FLAGS | 1u << SV_F_ITEMS;
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}

void sv__sched_reply_health(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    if (redirect(n, c, f))
        return;
    const struct sv_map *map = n->map;
    const struct sv__sched *s = n->sched;
    uint32_t cap = map->n_shards + 1;
    struct sv_item *items = calloc(cap, sizeof *items);
    char(*texts)[200] = calloc(cap, sizeof *texts);
    if (!items || !texts) {
        free(items);
        free(texts);
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    uint32_t k = 0;
    for (uint64_t g = 0; g <= map->n_shards; g++) {
        const struct sv_map_group *mg = &map->groups[g];
        const struct sv_sched_action *rep = NULL;
        for (size_t i = 0; s->have_plan && i < s->out->n && !rep; i++)
            if (s->out->a[i].type == SV_SCHED_A_REPORT && s->out->a[i].group == g)
                rep = &s->out->a[i];
        if (!mg->out && !rep)
            continue;
        struct sv_item *it = &items[k++];
        it->id = g;
        it->n_replicas = mg->n;
        memcpy(it->replicas, mg->ids, mg->n * sizeof mg->ids[0]);
        it->fields = 1u << SV_I_ID | 1u << SV_I_REPLICAS | 1u << SV_I_REASON | 1u << SV_I_TEXT;
        if (rep) {
            set_str(&it->reason, sv_sched_reason_name(rep->reason));
            sv_sched_action_text(rep, texts[g], sizeof texts[g]);
        } else {
            set_str(&it->reason, sv_sched_reason_name(SV_SCHED_R_CATCHING_UP));
            sv__move_describe(n, g, texts[g], sizeof texts[g]);
        }
        set_str(&it->text, texts[g]);
        const struct sv__hnode *hn = mg->out ? sv__health_node(n, mg->ids[mg->n - 1]) : NULL;
        if (hn && hn->groups[g].seen_ms) {
            it->left = hn->groups[g].left;
            SV_ITEM_SET(it, SV_I_LEFT);
        }
    }
    struct sv_msg m = {0};
    m.epoch = map->epoch;
    m.flags = health_known(n);
    m.items = items;
    m.n_items = k;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_EPOCH | 1u << SV_F_FLAGS | 1u << SV_F_ITEMS;
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
    free(texts);
}

static const char *action_name(uint32_t type)
{
    static const char *const names[] = {"", "state", "replace", "transfer", "report"};
    return type <= SV_SCHED_A_REPORT ? names[type] : "?";
}

void sv__sched_reply_log(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    if (redirect(n, c, f))
        return;
    const struct sv__sched *s = n->sched;
    uint64_t first = s->n_log > SCHED_LOG_MAX ? s->n_log - SCHED_LOG_MAX : 0;
    uint32_t count = (uint32_t)(s->n_log - first);
    struct sv_item *items = calloc(count ? count : 1, sizeof *items);
    if (!items) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct log_entry *e = &s->log[(first + i) % SCHED_LOG_MAX];
        struct sv_item *it = &items[i];
        it->mtime_ms = e->wall_ms;
        set_str(&it->key, action_name(e->a.type));
        set_str(&it->reason, sv_sched_reason_name(e->a.reason));
        set_str(&it->text, e->text);
        it->fields = 1u << SV_I_MTIME_MS | 1u << SV_I_KEY | 1u << SV_I_REASON | 1u << SV_I_TEXT;
        if (e->a.group != UINT64_MAX) {
            it->id = e->a.group;
            SV_ITEM_SET(it, SV_I_ID);
        }
        if (e->a.node) {
            it->leader = e->a.node;
            SV_ITEM_SET(it, SV_I_LEADER);
        }
    }
    struct sv_msg m = {0};
    m.items = items;
    m.n_items = count;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_ITEMS;
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}
