/* svd's replica move: one replica of one shard goes from node A to node B
 * without the shard ever having fewer up-to-date copies. The meta group's
 * leader runs it, one step at a time, each step a condition it checks and
 * an action it repeats until the condition holds:
 *
 *   1. the map places a replica on B too       (a map change, epoch + 1);
 *      B creates the group, empty, and waits
 *   2. B is a learner of the group, committed  (CONF add learner, to the
 *                                               shard's leader)
 *   3. B is a voter, committed                 (CONF promote: refused by the
 *                                               leader until B's log is
 *                                               within PROMOTE_LAG entries
 *                                               of its commit index)
 *   4. A is out of the configuration, committed (CONF remove)
 *   5. the map no longer places a replica on A (a map change, epoch + 1);
 *      A stops the group and deletes its data
 *
 * The map drops A only after step 4, so a node deletes a group's data only
 * once its removal is committed. Steps are idempotent: a lost reply or a new
 * shard leader only means asking again. A meta leader that dies mid-move
 * leaves the move where it was (the scheduler, which drives moves, will
 * resume from the recorded map and configuration). */
#define _GNU_SOURCE
#include "node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MOVE_TIMEOUT_MS = 120000, /* a move not done by then is answered UNAVAILABLE */
    MOVE_RETRY_MS = 300,      /* between attempts of a step */
    MOVE_MAP_WAIT_MS = 1500,  /* for a proposed map to be recorded and read back */
    PROMOTE_LAG = 64,         /* entries a learner may lag the commit index when promoted:
                                 under steady writes it is rarely exactly at it */
};

enum step { STEP_MAP_ADD = 1, STEP_LEARNER, STEP_PROMOTE, STEP_REMOVE, STEP_MAP_REMOVE };

enum conf_change { CONF_QUERY = 0, CONF_ADD_LEARNER, CONF_PROMOTE, CONF_REMOVE };
enum { CONF_VOTER = 1, CONF_LEARNER = 2, CONF_COMMITTED = 4 };

struct move {
    uint64_t conn, req_id; /* who asked */
    uint64_t group, from, to;
    enum step step;
    uint64_t next_ms, deadline_ms;
    uint64_t conf_id; /* request id of the CONF in flight, 0 when none */
    uint64_t leader;  /* the shard's leader as last heard, 0 when unknown */
    uint32_t rr;      /* the replica asked next when no leader is known */
    char why[160];    /* what the step waits for */
};

static const char *const step_names[] = {"",
                                         "placing the new replica in the map",
                                         "adding it as a learner",
                                         "catching it up and promoting it",
                                         "removing the old replica",
                                         "dropping the old replica from the map"};

static void finish(struct sv_node *n, int status, const char *text)
{
    struct move *mv = n->move;
    n->move = NULL;
    struct sv_msg m = {0};
    m.status = status;
    m.epoch = n->map->epoch;
    SV_MSG_SET(&m, SV_F_EPOCH);
    if (text) {
        m.msg.p = (const uint8_t *)text;
        m.msg.len = strlen(text);
        SV_MSG_SET(&m, SV_F_MSG);
    }
    sv__send_msg(n, mv->conn, SV_MSG_MOVE, mv->req_id, &m);
    free(mv);
}

static bool meta_leader(const struct sv_node *n)
{
    const struct group *g = sv__group(n, 0);
    return g && g->role == SV_RAFT_LEADER && !g->closing;
}

/* Propose the map with the move's change of this step. */
static void propose_map(struct sv_node *n, struct move *mv)
{
    struct sv_map *next = malloc(sizeof *next);
    if (!next)
        return;
    *next = *n->map;
    char err[256] = "";
    int rc = mv->step == STEP_MAP_ADD ? sv_map_add(next, mv->group, mv->to, err, sizeof err)
                                      : sv_map_remove(next, mv->group, mv->from, err, sizeof err);
    if (!rc)
        rc = sv__meta_propose(n, next, n->map->epoch);
    if (rc)
        snprintf(mv->why, sizeof mv->why, "map change: %.140s", err[0] ? err : sv_strerror(rc));
    free(next);
}

/* Send a CONF for the step to the shard's leader (or a replica, which
 * redirects). */
static void send_conf(struct sv_node *n, struct move *mv)
{
    static const enum conf_change change[] = {[STEP_LEARNER] = CONF_ADD_LEARNER,
                                              [STEP_PROMOTE] = CONF_PROMOTE,
                                              [STEP_REMOVE] = CONF_REMOVE};
    const struct sv_map_group *mg = sv_map_group(n->map, mv->group);
    uint64_t to = mv->leader;
    if (!to || !sv_map_holds(n->map, mv->group, to))
        to = mg->ids[mv->rr++ % mg->n];
    struct sv_msg m = {0};
    m.shard = mv->group - 1;
    m.node = mv->step == STEP_REMOVE ? mv->from : mv->to;
    m.flags = change[mv->step];
    SV_MSG_SET(&m, SV_F_SHARD);
    SV_MSG_SET(&m, SV_F_NODE);
    SV_MSG_SET(&m, SV_F_FLAGS);
    uint8_t *body;
    size_t len;
    if (sv_msg_encode(&m, &body, &len))
        return;
    mv->conf_id = ++n->next_fetch; /* request ids of this node's requests to peers */
    if (to == n->me->id) {
        /* This node leads the shard too: answer itself. */
        struct sv_wire_frame f = {
            .type = SV_MSG_CONF, .req_id = mv->conf_id, .body = body, .body_len = len};
        sv__move_conf(n, NULL, &f, &m);
    } else {
        struct sv_conn *c = sv__peer(n, to);
        if (!c || sv_conn_send(c, SV_MSG_CONF, mv->conf_id, body, len)) {
            mv->leader = 0;
            snprintf(mv->why, sizeof mv->why, "node %" PRIu64 " unreachable", to);
        }
    }
    free(body);
}

/* The step's condition holds, judged from a CONF answer (flags). */
static bool conf_done(const struct move *mv, uint64_t flags)
{
    bool committed = flags & CONF_COMMITTED;
    uint64_t role = flags & 3;
    switch (mv->step) {
    case STEP_LEARNER:
        return committed && role != 0;
    case STEP_PROMOTE:
        return committed && role == CONF_VOTER;
    case STEP_REMOVE:
        return committed && role == 0;
    default:
        return false;
    }
}

void sv__move_tick(struct sv_node *n, uint64_t now_ms)
{
    struct move *mv = n->move;
    if (!mv)
        return;
    if (now_ms >= mv->deadline_ms || !meta_leader(n)) {
        char text[320];
        snprintf(text, sizeof text, "replica move of shard %" PRIu64 " stopped while %s%s%s",
                 mv->group - 1, step_names[mv->step], mv->why[0] ? ": " : "", mv->why);
        LOG_WARN("%s", text);
        finish(n, SV_ST_UNAVAILABLE, text);
        return;
    }
    /* The map steps are judged from the map this node holds (the meta
     * group's record, read back every MAP_CHECK_MS). */
    if (mv->step == STEP_MAP_ADD && sv_map_holds(n->map, mv->group, mv->to)) {
        mv->step = STEP_LEARNER;
        mv->next_ms = 0;
    } else if (mv->step == STEP_MAP_REMOVE && !sv_map_holds(n->map, mv->group, mv->from)) {
        LOG_INFO("replica move of shard %" PRIu64 " from node %" PRIu64 " to node %" PRIu64
                 " done (map epoch %" PRIu64 ")",
                 mv->group - 1, mv->from, mv->to, n->map->epoch);
        finish(n, SV_ST_OK, NULL);
        return;
    }
    if (now_ms < mv->next_ms)
        return;
    if (mv->step == STEP_MAP_ADD || mv->step == STEP_MAP_REMOVE) {
        propose_map(n, mv);
        mv->next_ms = now_ms + MOVE_MAP_WAIT_MS;
    } else {
        send_conf(n, mv);
        mv->next_ms = now_ms + MOVE_RETRY_MS;
    }
}

/* Take a CONF answer m for the running move. */
static void on_conf(struct sv_node *n, const struct sv_msg *m)
{
    struct move *mv = n->move;
    mv->conf_id = 0;
    if (m->status == SV_ST_NOT_LEADER) {
        mv->leader = SV_MSG_HAS(m, SV_F_LEADER) ? m->leader : 0;
        snprintf(mv->why, sizeof mv->why, "looking for the shard's leader");
        mv->next_ms = 0;
        return;
    }
    if (m->status != SV_ST_OK) {
        snprintf(mv->why, sizeof mv->why, "%.*s", (int)(m->msg.len > 150 ? 150 : m->msg.len),
                 (const char *)m->msg.p);
        return;
    }
    if (!conf_done(mv, m->flags)) {
        snprintf(mv->why, sizeof mv->why,
                 "the change is not committed yet (match %" PRIu64 " of commit %" PRIu64 ")",
                 m->version, m->size);
        return;
    }
    LOG_INFO("replica move of shard %" PRIu64 ": done %s", mv->group - 1, step_names[mv->step]);
    mv->why[0] = 0;
    mv->step++;
    mv->next_ms = 0;
}

void sv__move_on_conf_reply(struct sv_node *n, const struct sv_wire_frame *f)
{
    if (!n->move || f->req_id != n->move->conf_id)
        return; /* late */
    struct sv_msg m;
    if (!sv_msg_decode(f->body, f->body_len, &m, NULL, 0))
        on_conf(n, &m);
    sv_msg_free(&m);
}

/* Answer a CONF request (or, with c NULL, the running move directly). */
static void conf_answer(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        struct sv_msg *m)
{
    if (c)
        sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, m);
    else if (n->move && n->move->conf_id == f->req_id)
        on_conf(n, m);
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

void sv__move_conf(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                   const struct sv_msg *req)
{
    struct group *g = SV_MSG_HAS(req, SV_F_SHARD) && req->shard < n->map->n_shards
                          ? sv__group(n, req->shard + 1)
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
    if (!SV_MSG_HAS(req, SV_F_NODE) || !SV_MSG_HAS(req, SV_F_FLAGS) || req->flags > CONF_REMOVE) {
        conf_status(n, c, f, SV_ST_BAD_REQUEST, "CONF needs SHARD, NODE and FLAGS 0..3");
        return;
    }
    struct sv_raft_status st;
    sv_raft_status(g->r, &st);
    int role = sv_raft_conf_role(&st.conf, req->node);
    uint64_t match = 0;
    sv_raft_match(g->r, req->node, &match);
    enum sv_raft_conf_change change = 0;
    if (req->flags == CONF_ADD_LEARNER && !role)
        change = SV_RAFT_ADD_LEARNER;
    else if (req->flags == CONF_PROMOTE && role == SV_RAFT_LEARNER)
        change = SV_RAFT_PROMOTE;
    else if (req->flags == CONF_REMOVE && role)
        change = SV_RAFT_REMOVE;
    if (change && g->busy) {
        conf_status(n, c, f, SV_ST_UNAVAILABLE, "the group's batch is on disk; retry");
        return;
    }
    if (change == SV_RAFT_PROMOTE && match + PROMOTE_LAG < st.commit) {
        char text[128];
        snprintf(text, sizeof text, "catching up: its log is at %" PRIu64 " of %" PRIu64, match,
                 st.commit);
        conf_status(n, c, f, SV_ST_UNAVAILABLE, text);
        return;
    }
    if (change) {
        int rc = sv_raft_propose_conf(g->r, change, req->node, NULL);
        if (rc) {
            conf_status(n, c, f, SV_ST_UNAVAILABLE, sv_strerror(rc));
            return;
        }
        LOG_INFO("group %" PRIu64 ": proposed %s node %" PRIu64, g->id,
                 change == SV_RAFT_ADD_LEARNER ? "adding learner"
                 : change == SV_RAFT_PROMOTE   ? "promoting"
                                               : "removing",
                 req->node);
        sv__host_refresh(n, g);
        sv_raft_status(g->r, &st);
        role = sv_raft_conf_role(&st.conf, req->node);
    }
    struct sv_msg m = {0};
    m.status = SV_ST_OK;
    m.flags = (uint64_t)(role == SV_RAFT_VOTER     ? CONF_VOTER
                         : role == SV_RAFT_LEARNER ? CONF_LEARNER
                                                   : 0) |
              (st.conf_index <= st.commit ? CONF_COMMITTED : 0);
    m.version = match;
    m.size = st.commit;
    SV_MSG_SET(&m, SV_F_STATUS);
    SV_MSG_SET(&m, SV_F_FLAGS);
    SV_MSG_SET(&m, SV_F_VERSION);
    SV_MSG_SET(&m, SV_F_SIZE);
    conf_answer(n, c, f, &m);
}

void sv__move_request(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                      const struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    if (!meta_leader(n)) {
        const struct group *g = sv__group(n, 0);
        sv__reply_not_leader(n, conn, f->type, f->req_id,
                             g ? g->leader : sv_map_group(n->map, 0)->ids[0]);
        return;
    }
    if (n->move) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE,
                         "a replica move is running; retry when it is done");
        return;
    }
    if (!SV_MSG_HAS(m, SV_F_SHARD) || !SV_MSG_HAS(m, SV_F_NODE) || !SV_MSG_HAS(m, SV_F_LEADER) ||
        m->shard >= n->map->n_shards) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "MOVE needs SHARD, NODE (from) and LEADER (to)");
        return;
    }
    /* The move must fit the map as a whole (map.h's rules for a move). */
    struct sv_map *check = malloc(sizeof *check);
    struct move *mv = calloc(1, sizeof *mv);
    char err[256] = "";
    int rc = check && mv ? 0 : -ENOMEM;
    if (!rc) {
        *check = *n->map;
        rc = sv_map_move(check, m->shard + 1, m->node, m->leader, err, sizeof err);
    }
    free(check);
    if (rc) {
        free(mv);
        sv__reply_status(n, conn, f->type, f->req_id,
                         rc == -ENOMEM ? SV_ST_INTERNAL : SV_ST_BAD_REQUEST,
                         rc == -ENOMEM ? "out of memory" : err);
        return;
    }
    mv->conn = conn;
    mv->req_id = f->req_id;
    mv->group = m->shard + 1;
    mv->from = m->node;
    mv->to = m->leader;
    mv->step = STEP_MAP_ADD;
    mv->deadline_ms = uv_now(&n->loop) + MOVE_TIMEOUT_MS;
    n->move = mv;
    LOG_INFO("replica move of shard %" PRIu64 " from node %" PRIu64 " to node %" PRIu64 ": started",
             m->shard, mv->from, mv->to);
    sv__move_tick(n, uv_now(&n->loop));
}

void sv__move_close(struct sv_node *n)
{
    if (n->move)
        finish(n, SV_ST_UNAVAILABLE, "this node is stopping; the move stopped");
}
