/* svd's replica replacements: the meta group's leader drives every
 * replacement the recorded map holds (a group whose `out` is set: the
 * replica on node `out` is being replaced by the last one of its set, `to`;
 * scheduler.h). Each is a condition checked and an action repeated, judged
 * by sv_sched_replace_step from the group's configuration as its leader
 * answers CONF requests:
 *
 *   1. the map places a replica on `to` too (sched_run.c's map change);
 *      `to` creates the group, empty, and waits
 *   2. `to` is a learner, committed            (CONF add learner)
 *   3. `to` is a voter, committed              (CONF promote: only once its
 *      heartbeat says it holds every chunk, at an applied index within
 *      PROMOTE_LAG of the commit index, and the leader finds its log that
 *      close too)
 *   4. `out` is out of the configuration, committed (CONF remove)
 *   5. the map no longer places a replica on `out` (sched_run.c's map
 *      change); `out` stops the group and deletes its data
 *
 * The map drops `out` only after step 4, so a node deletes a group's data
 * only once its removal is committed. Steps are idempotent: a lost answer,
 * a new shard leader or a new meta leader only means asking again, from
 * the recorded map. A `to` that leaves the cluster mid-way (drained,
 * evicted, removed) is taken out of the configuration again and dropped
 * from the map (abandoned). */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_sched.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MOVE_RETRY_MS = 300,    /* between CONF requests of one replacement */
    CONF_TIMEOUT_MS = 2000, /* a CONF not answered by then is asked again elsewhere */
    PROMOTE_LAG = 64,       /* entries a learner may lag the commit index when promoted:
                               under steady writes it is rarely exactly at it */
};

/* CONF requests (FLAGS): what the shard's leader is asked to do. */
enum conf_change {
    CONF_QUERY = 0,
    CONF_ADD_LEARNER, /* NODE as a learner */
    CONF_PROMOTE,     /* NODE to voter */
    CONF_REMOVE,      /* LEADER (the replica replaced) out */
    CONF_TRANSFER,    /* leadership to NODE */
    CONF_DROP,        /* NODE out (a replacement abandoned) */
};
/* CONF answers (FLAGS): the roles in the latest configuration. */
enum { CONF_VOTER = 1, CONF_LEARNER = 2, CONF_COMMITTED = 4, CONF_OTHER_SHIFT = 3 };

/* One replacement the recorded map holds (group's `out` is being replaced
 * by the last replica of its set, `to`). */
struct sv__repl {
    uint64_t out, to;
    uint64_t conf_id; /* request id of the CONF in flight, 0 when none */
    uint64_t leader;  /* the group's leader as last heard, 0 when unknown */
    uint64_t next_ms;
    uint64_t conf_ms;    /* when the CONF in flight went out */
    uint64_t started_ms; /* when this meta leader began driving it */
    uint32_t rr;         /* the replica asked next when no leader is known */
    bool known;          /* conf holds a CONF answer */
    struct sv_sched_conf conf;
    uint64_t match, commit; /* of `to`, and the leader's commit index, as answered */
    enum sv_sched_step step;
    bool abandon;      /* `to` left the cluster: it was taken out again */
    bool finished;     /* the configuration part is done: the map may drop out (or to) */
    bool remove_asked; /* a CONF remove went out and no answer came since: `out` may be
                          leaving the configuration */
    char why[160];     /* what it waits for */
};

static struct sv__repl *repl(struct sv_node *n, uint64_t group)
{
    if (group >= n->n_repls) {
        uint32_t count = n->map->n_shards + 1 > group ? n->map->n_shards + 1 : (uint32_t)group + 1;
        struct sv__repl **p = realloc(n->repls, count * sizeof *p);
        if (!p)
            return NULL;
        memset(p + n->n_repls, 0, (count - n->n_repls) * sizeof *p);
        n->repls = p;
        n->n_repls = count;
    }
    if (!n->repls[group])
        n->repls[group] = calloc(1, sizeof *n->repls[group]);
    return n->repls[group];
}

static void forget(struct sv_node *n, uint64_t group)
{
    if (group < n->n_repls) {
        free(n->repls[group]);
        n->repls[group] = NULL;
    }
}

/* Send CONF change for group to its leader (or a replica, which
 * redirects); target is the node the change is about. */
static void send_conf(struct sv_node *n, uint64_t group, struct sv__repl *r, uint32_t change,
                      uint64_t target)
{
    const struct sv_map_group *mg = sv_map_group(n->map, group);
    uint64_t to = r->leader;
    if (!to || !sv_map_holds(n->map, group, to))
        to = n->health->groups[group].leader; /* as its heartbeats say */
    if (!to || !sv_map_holds(n->map, group, to))
        to = mg->ids[r->rr++ % mg->n];
    struct sv_msg m = {0};
    m.shard = group; /* the group id (0: the meta group) */
    m.node = target;
    m.leader = r->out;
    m.flags = change;
    m.fields = 1u << SV_F_SHARD | 1u << SV_F_NODE | 1u << SV_F_LEADER | 1u << SV_F_FLAGS;
    uint8_t *body;
    size_t len;
    if (sv_msg_encode(&m, &body, &len))
        return;
    r->conf_id = ++n->next_fetch; /* request ids of this node's requests to peers */
    r->conf_ms = uv_now(&n->loop);
    if (to == n->me->id) {
        /* This node leads the group too: answer itself. */
        struct sv_wire_frame f = {
            .type = SV_MSG_CONF, .req_id = r->conf_id, .body = body, .body_len = len};
        sv__move_conf(n, NULL, &f, &m);
    } else {
        struct sv_conn *c = sv__peer(n, to);
        if (!c || sv_conn_send(c, SV_MSG_CONF, r->conf_id, body, len)) {
            r->leader = 0;
            r->conf_id = 0;
            snprintf(r->why, sizeof r->why, "node %" PRIu64 " unreachable", to);
        }
    }
    free(body);
}

/* The new replica holds every chunk and has applied enough: its heartbeat
 * (sampled together) says complete at an applied index within the
 * promotion lag of the commit index the leader answered. */
static bool new_complete(const struct sv_node *n, uint64_t group, const struct sv__repl *r)
{
    const struct sv__hnode *hn = sv__health_node(n, r->to);
    if (!hn || !r->known)
        return false;
    const struct sv__hreplica *hr = &hn->groups[group];
    return hr->complete && hr->seen_ms && hr->applied + PROMOTE_LAG >= r->commit &&
           r->match + PROMOTE_LAG >= r->commit;
}

/* Node id is heard within down_after and says it holds every chunk of
 * group. */
static bool live_complete(const struct sv_node *n, uint64_t id, uint64_t group, uint64_t now_ms)
{
    const struct sv__hnode *hn = sv__health_node(n, id);
    return hn && hn->last_ms && now_ms - hn->last_ms < n->map->set.down_after_ms &&
           hn->groups[group].complete;
}

/* What the planner's step needs beyond the leader's answer: heartbeats. */
static void fill_conf(const struct sv_node *n, uint64_t group, struct sv__repl *r, uint64_t now_ms)
{
    const struct sv_map_group *mg = sv_map_group(n->map, group);
    const struct sv_map_node *tn = sv_map_node(n->map, r->to);
    struct sv_sched_conf *c = &r->conf;
    c->new_gone = !tn || tn->state == SV_MAP_DRAINING || tn->state == SV_MAP_EVICTED ||
                  tn->state == SV_MAP_REMOVED;
    c->new_complete = new_complete(n, group, r);
    c->replicas = mg->n - 1;
    c->out_complete = c->out_role == 1 && live_complete(n, r->out, group, now_ms);
    c->complete_voters = c->out_complete + (c->new_role == 1 && c->new_complete);
    for (uint32_t k = 0; k + 1 < mg->n; k++)
        if (mg->ids[k] != r->out)
            c->complete_voters += live_complete(n, mg->ids[k], group, now_ms);
}

static void drive(struct sv_node *n, uint64_t group, struct sv__repl *r, uint64_t now_ms)
{
    if (r->conf_id && now_ms - r->conf_ms >= CONF_TIMEOUT_MS) {
        snprintf(r->why, sizeof r->why, "node %" PRIu64 " did not answer", r->leader);
        r->conf_id = 0; /* lost with its connection, or a dead node: ask another */
        r->leader = 0;
    }
    if (r->conf_id || now_ms < r->next_ms || r->finished)
        return;
    r->next_ms = now_ms + MOVE_RETRY_MS;
    if (!r->known) {
        send_conf(n, group, r, CONF_QUERY, r->to);
        return;
    }
    fill_conf(n, group, r, now_ms);
    uint32_t why = 0;
    r->step = sv_sched_replace_step(&r->conf, 0, &why);
    switch (r->step) {
    case SV_SCHED_S_ADD_LEARNER:
        send_conf(n, group, r, CONF_ADD_LEARNER, r->to);
        break;
    case SV_SCHED_S_PROMOTE:
        send_conf(n, group, r, CONF_PROMOTE, r->to);
        break;
    case SV_SCHED_S_REMOVE:
        r->remove_asked = true;
        send_conf(n, group, r, CONF_REMOVE, r->to);
        break;
    case SV_SCHED_S_REMOVE_NEW:
        send_conf(n, group, r, CONF_DROP, r->to);
        break;
    case SV_SCHED_S_MAP_FINISH:
    case SV_SCHED_S_MAP_ABANDON:
        r->abandon = r->step == SV_SCHED_S_MAP_ABANDON;
        r->finished = true;
        break;
    default:
        r->why[0] = 0;
        if (why)
            snprintf(r->why, sizeof r->why, "%s", sv_sched_reason_name(why));
        send_conf(n, group, r, CONF_QUERY, r->to);
    }
}

void sv__move_tick(struct sv_node *n, uint64_t now_ms)
{
    bool leading = sv__health_leading(n);
    for (uint64_t group = 0; group < n->n_repls || group <= n->map->n_shards; group++) {
        const struct sv_map_group *mg = sv_map_group(n->map, group);
        bool held = leading && mg && mg->out;
        struct sv__repl *r = group < n->n_repls ? n->repls[group] : NULL;
        if (!held) {
            if (r)
                forget(n, group);
            continue;
        }
        uint64_t to = mg->ids[mg->n - 1];
        if (r && (r->out != mg->out || r->to != to)) {
            forget(n, group);
            r = NULL;
        }
        if (!r && !(r = repl(n, group)))
            continue;
        if (!r->out) {
            r->out = mg->out;
            r->to = to;
            r->started_ms = now_ms;
            LOG_INFO("group %" PRIu64 ": driving the replacement of node %" PRIu64
                     " by node %" PRIu64,
                     group, r->out, r->to);
        }
        drive(n, group, r, now_ms);
    }
}

/* The state of group's replacement, if it is the one the map holds now:
 * the state of the one before (same group, done a round ago, not yet
 * forgotten by sv__move_tick) must not end or describe a new one. */
static const struct sv__repl *current(const struct sv_node *n, uint64_t group)
{
    const struct sv__repl *r = group < n->n_repls ? n->repls[group] : NULL;
    const struct sv_map_group *mg = sv_map_group(n->map, group);
    if (r && (!mg || !mg->out || r->out != mg->out || r->to != mg->ids[mg->n - 1]))
        return NULL;
    return r;
}

uint64_t sv__move_started(const struct sv_node *n, uint64_t group)
{
    const struct sv__repl *r = current(n, group);
    return r ? r->started_ms : 0;
}

void sv__move_roles(const struct sv_node *n, uint64_t group, uint64_t out, uint64_t to,
                    bool *out_voter, bool *new_voter)
{
    const struct sv__repl *r = group < n->n_repls ? n->repls[group] : NULL;
    bool known = r && r->out == out && r->to == to && r->known;
    *out_voter = known && r->conf.out_role == 1 && !r->remove_asked;
    *new_voter = known && r->conf.new_role == 1;
}

bool sv__move_finished(const struct sv_node *n, uint64_t group, bool *abandoned)
{
    const struct sv__repl *r = current(n, group);
    if (abandoned)
        *abandoned = r && r->abandon;
    return r && r->finished;
}

void sv__move_describe(const struct sv_node *n, uint64_t group, char *buf, size_t cap)
{
    const struct sv__repl *r = current(n, group);
    static const char *const steps[] = {"waiting", "adding the new replica as a learner",
                                        "promoting the new replica", "removing the old replica",
                                        "dropping the old replica from the map"};
    if (!r)
        snprintf(buf, cap, "starting");
    else
        snprintf(buf, cap, "%s%s%s",
                 r->step > SV_SCHED_S_MAP_FINISH ? "taking the new replica out again"
                                                 : steps[r->step],
                 r->why[0] ? ": " : "", r->why);
}

void sv__move_transfer(struct sv_node *n, uint64_t group, uint64_t leader, uint64_t to)
{
    struct sv__repl tmp = {.leader = leader};
    send_conf(n, group, &tmp, CONF_TRANSFER, to);
}

/* Take a CONF answer m for group's replacement r. */
static void on_conf(struct sv_node *n, struct sv__repl *r, const struct sv_msg *m)
{
    (void)n;
    r->conf_id = 0;
    if (m->status == SV_ST_NOT_LEADER) {
        r->leader = SV_MSG_HAS(m, SV_F_LEADER) ? m->leader : 0;
        snprintf(r->why, sizeof r->why, "looking for the group's leader");
        r->next_ms = 0;
        return;
    }
    if (m->status != SV_ST_OK) {
        snprintf(r->why, sizeof r->why, "%.*s", (int)(m->msg.len > 150 ? 150 : m->msg.len),
                 (const char *)m->msg.p);
        return;
    }
    /* A leader's answer, sent after any earlier request of ours reached it
     * (one in flight at a time): the roles below include that request's. */
    r->known = true;
    r->remove_asked = false;
    r->conf.new_role = m->flags & 3;
    r->conf.out_role = m->flags >> CONF_OTHER_SHIFT & 3;
    r->conf.committed = m->flags & CONF_COMMITTED;
    r->match = m->version;
    r->commit = m->size;
    r->why[0] = 0;
    r->next_ms = 0; /* judge the next step now */
}

void sv__move_on_conf_reply(struct sv_node *n, const struct sv_wire_frame *f)
{
    struct sv__repl *r = NULL;
    for (uint32_t g = 0; g < n->n_repls && !r; g++)
        if (n->repls[g] && n->repls[g]->conf_id == f->req_id)
            r = n->repls[g];
    if (!r)
        return; /* late, or a leadership transfer's */
    struct sv_msg m;
    if (!sv_msg_decode(f->body, f->body_len, &m, NULL, 0))
        on_conf(n, r, &m);
    sv_msg_free(&m);
}

/* Answer a CONF request (or, with c NULL, this node's own replacement). */
static void conf_answer(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        struct sv_msg *m)
{
    if (c) {
        sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, m);
        return;
    }
    for (uint32_t g = 0; g < n->n_repls; g++)
        if (n->repls[g] && n->repls[g]->conf_id == f->req_id) {
            on_conf(n, n->repls[g], m);
            return;
        }
}

static void conf_status(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        int status, const char *text)
{
    struct sv_msg m = {0};
    m.status = status;
    m.msg.p = (const uint8_t *)text;
    m.msg.len = strlen(text);
    SV_MSG_SET(&m, SV_F_MSG);
    SV_MSG_SET(&m, SV_F_STATUS);
    conf_answer(n, c, f, &m);
}

static uint64_t role_flags(const struct sv_raft_status *st, uint64_t node)
{
    int role = node ? sv_raft_conf_role(&st->conf, node) : 0;
    return role == SV_RAFT_VOTER ? CONF_VOTER : role == SV_RAFT_LEARNER ? CONF_LEARNER : 0;
}

/* The Raft change a CONF request asks of g, 0 when the configuration holds
 * it already (or, for a transfer, when it cannot be done). */
static enum sv_raft_conf_change conf_change(const struct sv_msg *req, int role, int other)
{
    switch (req->flags) {
    case CONF_ADD_LEARNER:
        return role ? 0 : SV_RAFT_ADD_LEARNER;
    case CONF_PROMOTE:
        return role == SV_RAFT_LEARNER ? SV_RAFT_PROMOTE : 0;
    case CONF_REMOVE:
        return other ? SV_RAFT_REMOVE : 0;
    case CONF_DROP:
        return role ? SV_RAFT_REMOVE : 0;
    default:
        return 0;
    }
}

/* Make the change req asks of g (this node leads it). 0, or a status with
 * text. */
static int conf_apply(struct sv_node *n, struct group *g, const struct sv_msg *req,
                      const struct sv_raft_status *st, char *text, size_t cap)
{
    int role = sv_raft_conf_role(&st->conf, req->node);
    int other = req->leader ? sv_raft_conf_role(&st->conf, req->leader) : 0;
    if (req->flags == CONF_TRANSFER) {
        if (role != SV_RAFT_VOTER || req->node == n->me->id)
            return 0;
        int rc = sv_raft_transfer_leader(g->r, req->node);
        if (!rc)
            LOG_INFO("group %" PRIu64 ": handing leadership to node %" PRIu64, g->id, req->node);
        return 0;
    }
    enum sv_raft_conf_change change = conf_change(req, role, other);
    if (!change)
        return 0;
    if (g->busy) {
        snprintf(text, cap, "the group's batch is on disk; retry");
        return SV_ST_UNAVAILABLE;
    }
    uint64_t match = 0;
    sv_raft_match(g->r, req->node, &match);
    if (change == SV_RAFT_PROMOTE && match + PROMOTE_LAG < st->commit) {
        snprintf(text, cap, "catching up: its log is at %" PRIu64 " of %" PRIu64, match,
                 st->commit);
        return SV_ST_UNAVAILABLE;
    }
    uint64_t subject = req->flags == CONF_REMOVE ? req->leader : req->node;
    int rc = sv_raft_propose_conf(g->r, change, subject, NULL);
    if (rc) {
        snprintf(text, cap, "%s", sv_strerror(rc));
        return SV_ST_UNAVAILABLE;
    }
    LOG_INFO("group %" PRIu64 ": proposed %s node %" PRIu64, g->id,
             change == SV_RAFT_ADD_LEARNER ? "adding learner"
             : change == SV_RAFT_PROMOTE   ? "promoting"
                                           : "removing",
             subject);
    sv__host_refresh(n, g);
    return 0;
}

void sv__move_conf(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                   const struct sv_msg *req)
{
    struct group *g = SV_MSG_HAS(req, SV_F_SHARD) && req->shard <= n->map->n_shards
                          ? sv__group(n, req->shard)
                          : NULL;
    if (!g || g->closing || g->role != SV_RAFT_LEADER) {
        struct sv_msg m = {0};
        m.status = SV_ST_NOT_LEADER;
        m.leader = g ? g->leader : 0;
        SV_MSG_SET(&m, SV_F_STATUS);
        if (m.leader)
            SV_MSG_SET(&m, SV_F_LEADER);
        conf_answer(n, c, f, &m);
        return;
    }
    if (!SV_MSG_HAS(req, SV_F_NODE) || !SV_MSG_HAS(req, SV_F_FLAGS) || req->flags > CONF_DROP ||
        (req->flags == CONF_REMOVE && !SV_MSG_HAS(req, SV_F_LEADER))) {
        conf_status(n, c, f, SV_ST_BAD_REQUEST,
                    "CONF needs SHARD (group), NODE, FLAGS 0..5 and, to remove, LEADER");
        return;
    }
    struct sv_raft_status st;
    sv_raft_status(g->r, &st);
    char text[160] = "";
    int status = conf_apply(n, g, req, &st, text, sizeof text);
    if (status) {
        conf_status(n, c, f, status, text);
        return;
    }
    sv_raft_status(g->r, &st);
    uint64_t match = 0;
    sv_raft_match(g->r, req->node, &match);
    struct sv_msg m = {0};
    m.status = SV_ST_OK;
    m.flags = role_flags(&st, req->node) |
              role_flags(&st, SV_MSG_HAS(req, SV_F_LEADER) ? req->leader : 0) << CONF_OTHER_SHIFT |
              (st.conf_index <= st.commit ? CONF_COMMITTED : 0);
    m.version = match;
    m.size = st.commit;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_FLAGS | 1u << SV_F_VERSION | 1u << SV_F_SIZE;
    conf_answer(n, c, f, &m);
}

void sv__move_close(struct sv_node *n)
{
    for (uint32_t g = 0; g < n->n_repls; g++)
        free(n->repls[g]);
    free(n->repls);
    n->repls = NULL;
    n->n_repls = 0;
}
