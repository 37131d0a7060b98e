/* svd's registry of Raft groups: created and restored here, their inputs
 * (peer messages, ticks, proposals, read index requests) stepped in or queued
 * while a group's batch is on disk. Reports upwards through n->ev only. */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_assert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct group *sv__group(const struct sv_node *n, uint64_t id)
{
    return id < n->n_group_ids ? n->groups[id] : NULL;
}

void sv__host_refresh(struct sv_node *n, struct group *g)
{
    struct sv_raft_status st;
    sv_raft_status(g->r, &st);
    bool was_leader = g->role == SV_RAFT_LEADER;
    g->role = st.role;
    g->term = st.term;
    g->leader = st.leader;
    g->commit = st.commit;
    if (was_leader && g->role != SV_RAFT_LEADER)
        n->ev.leader_lost(n, g);
    sv__stats_group_refresh(n, g);
}

void sv__host_step(struct sv_node *n, struct group *g, const struct sv_raft_msg *m)
{
    if (g->busy) {
        struct inmsg *im = calloc(1, sizeof *im);
        if (!im || sv_raft_msg_copy(&im->m, m)) {
            free(im); /* dropped like a lost message */
            return;
        }
        *g->inbox_tail = im;
        g->inbox_tail = &im->next;
        return;
    }
    sv_raft_step(g->r, m);
    sv__host_refresh(n, g);
}

static void do_propose(struct sv_node *n, struct group *g, uint8_t *data, size_t len, void *tag)
{
    uint64_t index = 0;
    int rc = sv_raft_propose(g->r, data, len, &index);
    free(data);
    if (!rc)
        sv__host_refresh(n, g);
    if (tag)
        n->ev.proposed(n, g, tag, rc, index, g->term);
}

void sv__host_propose(struct sv_node *n, struct group *g, uint8_t *data, size_t len, void *tag)
{
    if (!g->busy) {
        do_propose(n, g, data, len, tag);
        return;
    }
    struct prop *p = calloc(1, sizeof *p);
    if (!p || g->n_props >= PROPOSALS_QUEUED_MAX) {
        free(p);
        free(data);
        if (tag)
            n->ev.proposed(n, g, tag, -EAGAIN, 0, 0);
        return;
    }
    p->data = data;
    p->len = len;
    p->tag = tag;
    *g->props_tail = p;
    g->props_tail = &p->next;
    g->n_props++;
}

void sv__host_read_index(struct sv_node *n, struct group *g, uint64_t ctx)
{
    if (!g->busy) {
        if (sv_raft_read_index(g->r, ctx))
            n->ev.read_index(n, g, ctx, 0); /* no leader known */
        return;
    }
    if (g->n_read_ctxs == g->read_ctxs_cap) {
        uint32_t cap = g->read_ctxs_cap ? 2 * g->read_ctxs_cap : 16;
        uint64_t *p = realloc(g->read_ctxs, cap * sizeof *p);
        if (!p) {
            n->ev.read_index(n, g, ctx, 0);
            return;
        }
        g->read_ctxs = p;
        g->read_ctxs_cap = cap;
    }
    g->read_ctxs[g->n_read_ctxs++] = ctx;
}

void sv__host_drain(struct sv_node *n, struct group *g)
{
    struct inmsg *im;
    while ((im = g->inbox) && !g->busy) {
        g->inbox = im->next;
        sv_raft_step(g->r, &im->m);
        sv_raft_msg_free(&im->m);
        free(im);
    }
    if (!g->inbox)
        g->inbox_tail = &g->inbox;
    for (; g->ticks; g->ticks--)
        sv_raft_tick(g->r);
    sv__host_refresh(n, g);
    struct prop *p;
    while ((p = g->props)) {
        g->props = p->next;
        g->n_props--;
        do_propose(n, g, p->data, p->len, p->tag);
        free(p);
    }
    g->props_tail = &g->props;
    uint32_t count = g->n_read_ctxs;
    g->n_read_ctxs = 0;
    for (uint32_t i = 0; i < count; i++)
        sv__host_read_index(n, g, g->read_ctxs[i]);
}

void sv__host_tick(struct sv_node *n)
{
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g)
            continue;
        if (g->busy) {
            g->ticks++;
        } else {
            sv_raft_tick(g->r);
            sv__host_refresh(n, g);
        }
    }
    sv__host_reap(n);
    if (n->follow_again) {
        n->follow_again = false;
        sv__host_follow(n);
    }
}

int sv__group_open(struct sv_node *n, uint64_t id, char *errmsg, size_t errlen)
{
    ASSERT(id < n->n_group_ids && !n->groups[id]);
    struct group *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->id = id;
    const struct sv_map_group *mg = sv_map_group(n->map, id);
    g->n_replicas = mg->n;
    memcpy(g->replicas, mg->ids, mg->n * sizeof mg->ids[0]);
    g->inbox_tail = &g->inbox;
    g->props_tail = &g->props;
    g->waiting_tail = &g->waiting;
    struct sv_raft_options o;
    sv_raft_options_default(&o, n->me->id);
    o.election_ticks = ELECTION_TICKS;
    o.heartbeat_ticks = 1;
    o.max_msg_bytes = RAFT_MSG_BYTES;
    o.seed = n->me->id * 1000003u + id * 7919u + n->clock.seed(n->clock.arg);
    struct sv_logstore_loaded l = {0};
    int rc = n->log->ops->load(n->log, id, &l);
    if (rc == 0) {
        uint64_t applied = 0;
        rc = sv_sm_applied(n->sm, id, &applied);
        uint64_t snap = l.restore.snapshot ? l.restore.snapshot->meta.index : 0;
        if (!rc && applied < snap) {
            /* The state machine lost applied entries that the snapshot covers
             * (only after a power failure): install the snapshot again. */
            rc = sv_sm_install(n->sm, n->seg, id, snap, l.snap.data, l.snap.len);
            applied = snap;
        }
        l.restore.applied = applied;
        /* Batches that only moved the commit index were not synced: the
         * stored commit may lag, but never below what was applied. */
        if (l.restore.hs.commit < applied)
            l.restore.hs.commit = applied;
        g->hs_term = l.restore.hs.term;
        g->hs_vote = l.restore.hs.vote;
        if (!rc) {
            rc = sv_raft_create(&o, &l.restore, &g->r);
        }
        g->applied = applied;
        g->snap_index = snap;
    } else if (rc == SV_LOG_E_NOT_FOUND && n->map->epoch > 1) {
        /* Placed here by a change of the map: an empty member that the
         * group's leader adds as a learner and catches up (never a
         * bootstrap, which would start a second history of the group). */
        /* Its records will claim chunks it lacks (copy.c fetches them). */
        rc = sv_sm_copy_mark(n->sm, id, 0);
        if (!rc)
            rc = sv_raft_create(&o, NULL, &g->r);
        LOG_INFO("group %" PRIu64 ": created empty, waiting for its leader to add this node", id);
    } else if (rc == SV_LOG_E_NOT_FOUND) {
        rc = sv_raft_create(&o, NULL, &g->r);
        struct sv_raft_conf conf = {0};
        for (uint32_t i = 0; i < g->n_replicas; i++) {
            conf.servers[i].id = g->replicas[i];
            conf.servers[i].role = SV_RAFT_VOTER;
        }
        conf.n = g->n_replicas;
        if (!rc)
            rc = sv_raft_bootstrap(g->r, &conf);
    }
    sv_logstore_loaded_free(&l);
    if (!rc)
        rc = sv_sm_copy_pending(n->sm, NULL, id, &g->copy_pending, NULL);
    if (rc) {
        snprintf(errmsg, errlen, "group %" PRIu64 ": %s", id, sv_strerror(rc));
        sv_raft_destroy(g->r);
        free(g);
        return rc;
    }
    n->groups[id] = g;
    sv__host_refresh(n, g);
    sv__stats_group_add(n, g);
    return 0;
}

/* Whether group id's data is queued for deletion or being deleted. */
static bool dropping(const struct sv_node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->n_drops; i++)
        if (n->drops[i] == id)
            return true;
    for (const struct job *j = n->jobs; j; j = j->next)
        for (uint32_t i = 0; i < j->n_drops; i++)
            if (j->drops[i] == id)
                return true;
    return false;
}

bool sv__host_serves(const struct sv_node *n)
{
    const struct sv_map_node *me = sv_map_node(n->map, n->me->id);
    return me && me->state != SV_MAP_EVICTED && me->state != SV_MAP_REMOVED;
}

/* An evicted or removed node says once why it serves nothing. */
static void say_left(struct sv_node *n)
{
    if (sv__host_serves(n) || n->said_left)
        return;
    n->said_left = true;
    LOG_ERROR("this node is %s in the cluster map (epoch %" PRIu64
              "): it is no member of its groups any more and serves none of them; the data "
              "of groups still placed here is kept until they are rebuilt elsewhere. To use "
              "this machine again, wipe it and add it as a new node (deploy/cluster start "
              "%" PRIu64 " --reset)",
              sv_map_state_name(sv_map_node(n->map, n->me->id)->state), n->map->epoch, n->me->id);
}

void sv__host_follow(struct sv_node *n)
{
    bool serves = sv__host_serves(n);
    say_left(n);
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        bool placed = sv_map_holds(n->map, id, n->me->id);
        bool held = placed && serves;
        if (held && !g && dropping(n, id)) {
            n->follow_again = true; /* once its old data is gone (sv__host_tick) */
        } else if (held && !g) {
            char err[256] = "";
            int rc = sv__group_open(n, id, err, sizeof err);
            if (rc)
                LOG_ERROR("cluster map places group %u here, but it does not open: %s", id, err);
            else
                LOG_INFO("group %u: hosted here from map epoch %" PRIu64, id, n->map->epoch);
        } else if (!held && g && !g->closing) {
            /* The map drops a replica only once the group's configuration
             * removing it is committed (move.c): nothing here is needed. A
             * node that left the cluster keeps the data of groups still
             * placed on it (they may need it until rebuilt elsewhere). */
            LOG_INFO("group %u: no longer hosted here (map epoch %" PRIu64 "): stopping it%s", id,
                     n->map->epoch, placed ? "" : ", then deleting its data");
            g->closing = true;
            g->keep_data = placed;
            n->n_closing++;
            n->ev.leader_lost(n, g); /* its requests are answered: retry elsewhere */
        } else if (held && g && g->closing) {
            g->closing = false; /* placed here again before it was reaped */
            n->n_closing--;
        }
    }
    sv__host_reap(n);
}

void sv__host_reap(struct sv_node *n)
{
    for (uint32_t id = 0; id < n->n_group_ids && n->n_closing; id++) {
        struct group *g = n->groups[id];
        if (!g || !g->closing || g->busy || g->pool_refs || g->waiting || g->reads ||
            g->ready_reads)
            continue;
        uint64_t *d = g->keep_data ? n->drops : realloc(n->drops, (n->n_drops + 1) * sizeof *d);
        if (!d && !g->keep_data)
            return; /* tried again on the next tick */
        n->drops = d;
        if (!g->keep_data)
            n->drops[n->n_drops++] = id;
        for (struct prop *p = g->props, *next; p; p = next) {
            next = p->next;
            if (p->tag) /* answered as by a follower: the client asks the map again */
                n->ev.proposed(n, g, p->tag, SV_RAFT_E_NOT_LEADER, 0, 0);
            free(p->data);
            free(p);
        }
        g->props = NULL;
        g->props_tail = &g->props;
        n->n_closing--;
        sv__group_free(n, g);
    }
}

void sv__group_free(struct sv_node *n, struct group *g)
{
    ASSERT(!g->waiting && !g->reads && !g->ready_reads);
    for (struct inmsg *im = g->inbox, *next; im; im = next) {
        next = im->next;
        sv_raft_msg_free(&im->m);
        free(im);
    }
    for (struct prop *p = g->props, *next; p; p = next) {
        next = p->next;
        free(p->data);
        if (p->tag)
            n->ev.proposed(n, g, p->tag, -ECANCELED, 0, 0);
        free(p);
    }
    if (n->groups[g->id] == g)
        n->groups[g->id] = NULL;
    sv_raft_destroy(g->r);
    free(g->read_ctxs);
    free(g->res);
    free(g->snap.data);
    free(g->copy);
    sv__dr_group_free(g);
    sv__stats_group_remove(n, g);
    free(g);
}
