/* svd's heartbeats: every node tells the meta group's leader every second
 * that it lives, what it stores, how much disk it has left and, per group it
 * hosts, its role, term, applied and commit indexes and whether it holds
 * every chunk (copy.c). The meta leader keeps the latest of each in a table
 * (struct sv__health) that the scheduler (sched_run.c) reads; the table
 * starts empty whenever this node becomes the meta leader, and what it was
 * told is never written anywhere: a new leader asks again. */
#define _GNU_SOURCE
#include "node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BEATS_UNANSWERED_MAX = 2 /* then the beat goes to a meta member in turn */ };

/* ---- the table ----------------------------------------------------------- */

static struct sv__hnode *hnode(struct sv_node *n, uint64_t id)
{
    struct sv__health *h = n->health;
    for (uint32_t i = 0; i < h->n_nodes; i++)
        if (h->nodes[i].id == id)
            return &h->nodes[i];
    if (h->n_nodes == SV_CFG_NODES_MAX)
        return NULL;
    struct sv__hnode *hn = &h->nodes[h->n_nodes];
    memset(hn, 0, sizeof *hn);
    hn->id = id;
    hn->groups = calloc(SV_CFG_SHARDS_MAX + 1, sizeof *hn->groups);
    if (!hn->groups)
        return NULL;
    h->n_nodes++;
    return hn;
}

void sv__health_heard(struct sv_node *n, uint64_t id, uint64_t now_ms)
{
    struct sv__hnode *hn = sv__health_leading(n) ? hnode(n, id) : NULL;
    if (hn && hn->last_ms < now_ms)
        hn->last_ms = now_ms;
}

const struct sv__hnode *sv__health_node(const struct sv_node *n, uint64_t id)
{
    const struct sv__health *h = n->health;
    for (uint32_t i = 0; h && i < h->n_nodes; i++)
        if (h->nodes[i].id == id)
            return &h->nodes[i];
    return NULL;
}

static void table_clear(struct sv__health *h)
{
    for (uint32_t i = 0; i < h->n_nodes; i++)
        free(h->nodes[i].groups);
    h->n_nodes = 0;
    memset(h->groups, 0, sizeof h->groups);
}

int sv__health_open(struct sv_node *n)
{
    n->health = calloc(1, sizeof *n->health);
    return n->health ? 0 : -ENOMEM;
}

void sv__health_close(struct sv_node *n)
{
    if (!n->health)
        return;
    table_clear(n->health);
    free(n->health);
    n->health = NULL;
}

bool sv__health_leading(const struct sv_node *n)
{
    const struct group *g = sv__group(n, 0);
    return g && g->role == SV_RAFT_LEADER && !g->closing && n->health->leader_term == g->term;
}

/* Take one group item of node hn's heartbeat. */
static void take_group(struct sv_node *n, struct sv__hnode *hn, const struct sv_item *it,
                       uint64_t now_ms)
{
    struct sv__health *h = n->health;
    if (!SV_ITEM_HAS(it, SV_I_ID) || it->id > SV_CFG_SHARDS_MAX)
        return;
    struct sv__hgroup *hg = &h->groups[it->id];
    struct sv__hreplica *r = &hn->groups[it->id];
    bool progress = r->applied != it->applied || r->left != it->left;
    r->applied = it->applied;
    r->left = it->left;
    r->complete = it->complete == 1;
    r->seen_ms = now_ms;
    if (progress)
        r->progress_ms = now_ms;
    bool leads = it->role.len == 6 && !memcmp(it->role.p, "leader", 6);
    if (leads && SV_ITEM_HAS(it, SV_I_MTIME_MS) && it->mtime_ms > hg->closed_ms)
        hg->closed_ms = it->mtime_ms;
    if (leads && it->term >= hg->term) {
        hg->leader = hn->id;
        hg->term = it->term;
        hg->commit = it->commit;
        hg->bytes = it->bytes;
    } else if (hg->leader == hn->id && !leads) {
        hg->leader = 0;
    }
}

/* Record heartbeat m of node m->node. */
static void take(struct sv_node *n, const struct sv_msg *m, uint64_t now_ms)
{
    struct sv__hnode *hn = hnode(n, m->node);
    if (!hn)
        return;
    hn->last_ms = now_ms;
    hn->bytes = m->size;
    hn->free = m->free;
    hn->n_leaders = 0;
    for (uint32_t i = 0; i < m->n_items; i++) {
        take_group(n, hn, &m->items[i], now_ms);
        hn->n_leaders += m->items[i].role.len == 6 && !memcmp(m->items[i].role.p, "leader", 6);
    }
}

/* ---- sending -------------------------------------------------------------- */

static const char *role_name(enum sv_raft_role role)
{
    switch (role) {
    case SV_RAFT_LEADER:
        return "leader";
    case SV_RAFT_CANDIDATE:
        return "candidate";
    default:
        return "follower";
    }
}

/* This node's heartbeat into m (items malloc'd: the caller frees them). */
static int make(struct sv_node *n, struct sv_msg *m)
{
    uint32_t count = 0;
    for (uint64_t id = 0; id < n->n_group_ids; id++)
        count += n->groups[id] && !n->groups[id]->closing;
    struct sv_item *items = calloc(count ? count : 1, sizeof *items);
    if (!items)
        return -ENOMEM;
    uint32_t k = 0;
    for (uint64_t id = 0; id < n->n_group_ids && k < count; id++) {
        struct group *g = n->groups[id];
        if (!g || g->closing)
            continue;
        struct sv_item *it = &items[k++];
        const char *role = role_name(g->role);
        uint64_t chunks_left = 0, bytes_left = 0;
        sv__copy_progress(n, g, &chunks_left, &bytes_left);
        it->id = id;
        it->role = (struct sv_bytes){(const uint8_t *)role, strlen(role)};
        it->term = g->term;
        it->applied = g->applied;
        it->commit = g->commit;
        it->leader = g->leader;
        it->complete = sv__copy_complete(n, g);
        it->left = chunks_left;
        it->fields = 1u << SV_I_ID | 1u << SV_I_ROLE | 1u << SV_I_TERM | 1u << SV_I_APPLIED |
                     1u << SV_I_COMMIT | 1u << SV_I_LEADER | 1u << SV_I_COMPLETE | 1u << SV_I_LEFT;
        if (id && g->role == SV_RAFT_LEADER && (it->mtime_ms = sv__dr_closed(n, g)))
            SV_ITEM_SET(it, SV_I_MTIME_MS);
    }
    sv__disk_full(n, 0); /* refreshes n->disk_free */
    m->node = n->me->id;
    m->size = sv__stats_stored_bytes(n);
    m->free = n->disk_free;
    m->items = items;
    m->n_items = k;
    m->fields = 1u << SV_F_NODE | 1u << SV_F_SIZE | 1u << SV_F_FREE | 1u << SV_F_ITEMS;
    return 0;
}

uint64_t sv__health_frontier(struct sv_node *n)
{
    struct sv__health *h = n->health;
    if (!sv__health_leading(n) || n->map->site_role != SV_MAP_STANDBY)
        return 0;
    if (h->closed_epoch != n->map->site_epoch) {
        /* another primary's log: its times start again */
        for (uint32_t g = 0; g <= SV_CFG_SHARDS_MAX; g++)
            h->groups[g].closed_ms = 0;
        h->closed_epoch = n->map->site_epoch;
        return 0;
    }
    uint64_t f = UINT64_MAX;
    for (uint32_t g = 1; g <= n->map->n_shards; g++)
        if (h->groups[g].closed_ms < f)
            f = h->groups[g].closed_ms;
    return f == UINT64_MAX ? 0 : f;
}

/* The release a heartbeat's answer brings (a standby's meta leader's frontier). */
static void release_heard(struct sv_node *n, uint64_t frontier_ms)
{
    if (n->dr_release_epoch != n->map->site_epoch) {
        n->dr_release_epoch = n->map->site_epoch;
        n->dr_release_ms = 0;
    }
    if (frontier_ms > n->dr_release_ms)
        n->dr_release_ms = frontier_ms;
}

/* How often this node beats: a standby's more often, as its beats carry
 * the closed times the site's frontier (the release) is made of. */
static uint64_t beat_ms(const struct sv_node *n)
{
    return n->map->site_role == SV_MAP_STANDBY ? DR_BEAT_MS : HEARTBEAT_MS;
}

/* Where the heartbeat goes: the node a NOT_LEADER answer named (or that
 * took the last one), else the meta leader this node's group 0 knows, else
 * a member in turn. The group's own idea may be stale (a member the group
 * left behind keeps its last leader), so answers come first. */
static uint64_t target(struct sv_node *n)
{
    const struct group *g = sv__group(n, 0);
    const struct sv_map_group *mg = sv_map_group(n->map, 0);
    /* A hint naming this node holds only while it leads: a leader that
     * lost its group (its quorum killed) gets no answer that would change
     * the hint, and beat at itself, unheard, until the next leader evicted
     * it alive. */
    if (n->health->hint == n->me->id && !sv__health_leading(n))
        n->health->hint = 0;
    /* Beats going unanswered: their target may be dead (a killed meta
     * leader's connection is redialled, not refused, so nothing else says
     * so) and the hint and the group's idea name it still. Ask a member in
     * turn: its answer names the leader. Unanswered, the other nodes were
     * judged down (and evicted) alive until the old leader came back. */
    if (n->health->unanswered >= BEATS_UNANSWERED_MAX * HEARTBEAT_MS / beat_ms(n)) {
        n->health->hint = 0;
        n->health->unanswered = 0;
        if (mg->n)
            return mg->ids[n->health->rr++ % mg->n];
    }
    if (n->health->hint && sv_map_node(n->map, n->health->hint))
        return n->health->hint;
    if (g && g->leader)
        return g->leader;
    return mg->n ? mg->ids[n->health->rr++ % mg->n] : 0;
}

static void send_beat(struct sv_node *n, uint64_t now_ms)
{
    struct sv_msg m = {0};
    if (make(n, &m))
        return;
    uint64_t to = target(n);
    if (to == n->me->id) {
        if (sv__health_leading(n)) {
            take(n, &m, now_ms);
            release_heard(n, sv__health_frontier(n));
        } else
            n->health->hint = 0; /* it led once: ask the others again */
    } else if (to) {
        uint8_t *body;
        size_t len;
        struct sv_conn *c = sv__peer(n, to);
        if (c && !sv_msg_encode(&m, &body, &len)) {
            sv_conn_send(c, SV_MSG_HEARTBEAT, ++n->next_fetch, body, len);
            free(body);
            n->health->sent_to = to;
            n->health->unanswered++;
        } else if (!c) {
            n->health->hint = 0;
        }
    }
    free(m.items);
}

void sv__health_tick(struct sv_node *n, uint64_t now_ms)
{
    struct sv__health *h = n->health;
    const struct group *g = sv__group(n, 0);
    /* A new term of leadership starts from an empty table. */
    if (g && g->role == SV_RAFT_LEADER && !g->closing && h->leader_term != g->term) {
        table_clear(h);
        h->leader_term = g->term;
        h->since_ms = now_ms;
        LOG_INFO("meta group: leading in term %" PRIu64 "; health unknown until every node is "
                 "heard",
                 g->term);
    } else if (!(g && g->role == SV_RAFT_LEADER) && h->leader_term) {
        table_clear(h);
        h->leader_term = 0;
    }
    if (now_ms - h->sent_ms < beat_ms(n) || n->stopping || n->joining || !sv__host_serves(n))
        return;
    h->sent_ms = now_ms;
    send_beat(n, now_ms);
}

void sv__health_on_beat(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        const struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    if (!sv__health_leading(n)) {
        const struct group *g = sv__group(n, 0);
        sv__reply_not_leader(n, conn, f->type, f->req_id, g ? g->leader : 0);
        return;
    }
    if (!SV_MSG_HAS(m, SV_F_NODE) || m->node != sv__peer_id(n, c)) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "HEARTBEAT needs NODE, the sender's own id");
        return;
    }
    take(n, m, uv_now(&n->loop));
    struct sv_msg r = {0};
    r.status = SV_ST_OK;
    r.fields = 1u << SV_F_STATUS;
    if ((r.mtime_ms = sv__health_frontier(n)))
        SV_MSG_SET(&r, SV_F_MTIME_MS);
    sv__send_msg(n, conn, f->type, f->req_id, &r);
}

void sv__health_on_reply(struct sv_node *n, const struct sv_wire_frame *f)
{
    struct sv_msg m;
    if (sv_msg_decode(f->body, f->body_len, &m, NULL, 0))
        return;
    n->health->unanswered = 0;
    if (m.status == SV_ST_NOT_LEADER && SV_MSG_HAS(&m, SV_F_LEADER))
        n->health->hint = m.leader;
    else if (m.status == SV_ST_OK) {
        n->health->hint = n->health->sent_to; /* it leads: keep sending there */
        if (SV_MSG_HAS(&m, SV_F_MTIME_MS))
            release_heard(n, m.mtime_ms);
    } else
        n->health->hint = 0;
    sv_msg_free(&m);
}
