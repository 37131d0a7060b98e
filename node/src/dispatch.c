/* svd's dispatch: every frame goes through a table from its type to the role
 * that may send it and its handler; requests carry a context (tenant,
 * principal, role); waiters, replies and deadlines live here. */
#define _GNU_SOURCE
#include "node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- replies ------------------------------------------------------------ */

void sv__send_msg(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                  struct sv_msg *m)
{
    struct sv_conn *c = sv_tp_conn(n->tp, conn);
    if (!c)
        return; /* the client went away; a retry finds the result through its session */
    SV_MSG_SET(m, SV_F_STATUS);
    uint8_t *body;
    size_t len;
    int rc = sv_msg_encode(m, &body, &len);
    if (rc) {
        LOG_ERROR("encode reply: %s", sv_strerror(rc));
        return;
    }
    rc = sv_conn_send(c, type | SV_MSG_RESP, req_id, body, len);
    free(body);
    if (rc == -ENOBUFS)
        sv_conn_close(c, "client does not read its replies");
    sv__stats_reply(n, conn, type, req_id, m->status, rc ? 0 : len);
}

void sv__reply_status(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id, int status,
                      const char *text)
{
    struct sv_msg m = {0};
    m.status = status;
    if (text) {
        m.msg.p = (const uint8_t *)text;
        m.msg.len = strlen(text);
        SV_MSG_SET(&m, SV_F_MSG);
    }
    sv__send_msg(n, conn, type, req_id, &m);
}

void sv__reply_not_leader(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                          uint64_t leader)
{
    const struct sv_map_node *ln = leader ? sv_map_node(n->map, leader) : NULL;
    if (!ln || leader == n->me->id) {
        sv__reply_status(n, conn, type, req_id, SV_ST_UNAVAILABLE, "no leader for this shard yet");
        return;
    }
    struct sv_msg m = {0};
    m.status = SV_ST_NOT_LEADER;
    m.leader = leader;
    m.addr.p = (const uint8_t *)ln->addr;
    m.addr.len = strlen(ln->addr);
    m.epoch = n->map->epoch; /* a client with an older map refreshes it */
    SV_MSG_SET(&m, SV_F_LEADER);
    SV_MSG_SET(&m, SV_F_ADDR);
    SV_MSG_SET(&m, SV_F_EPOCH);
    sv__send_msg(n, conn, type, req_id, &m);
}

/* ---- waiters ------------------------------------------------------------ */

/* The node's data on a connection (sv_conn_data) is the number of its
 * client requests in flight (waiters), held in the pointer itself: nothing
 * to allocate, nothing to free when the connection goes. */
static uint32_t in_flight(const struct sv_conn *c)
{
    return (uint32_t)(uintptr_t)sv_conn_data(c);
}

static void in_flight_set(struct sv_conn *c, uint32_t v)
{
    sv_conn_set_data(c, (void *)(uintptr_t)v);
}

struct waiter *sv__waiter_new(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                              const struct sv__ctx *ctx, uint64_t group)
{
    struct waiter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    if (ctx->role == SV_ROLE_CLIENT) {
        in_flight_set(c, in_flight(c) + 1);
        w->counted = true;
    }
    w->node = n;
    w->ctx = *ctx;
    w->conn = sv_conn_id(c);
    w->req_id = f->req_id;
    w->type = f->type;
    w->group = group;
    w->deadline_ms = uv_now(&n->loop) + REQUEST_TIMEOUT_MS;
    w->start_ns = uv_hrtime();
    return w;
}

void sv__waiter_free(struct waiter *w)
{
    if (!w)
        return;
    w->node->unapplied -= w->unapplied;
    struct sv_conn *c = w->counted && w->node->tp ? sv_tp_conn(w->node->tp, w->conn) : NULL;
    if (c) /* (none when the connection closed meanwhile) */
        in_flight_set(c, in_flight(c) - 1);
    if (w->body) /* a read: m was decoded from it */
        sv_msg_free(&w->m);
    free(w->body);
    sv__stats_waiter_done(w);
    free(w);
}

void sv__waiter_fail(struct waiter *w, int status, const char *text)
{
    sv__reply_status(w->node, w->conn, w->type, w->req_id, status, text);
    sv__waiter_free(w);
}

static void fail_list(struct waiter **list, int status, const char *text)
{
    struct waiter *w;
    while ((w = *list)) {
        *list = w->next;
        if (text)
            sv__waiter_fail(w, status, text);
        else
            sv__waiter_free(w);
    }
}

void sv__dispatch_forget(struct sv_node *n, struct group *g)
{
    (void)n;
    fail_list(&g->waiting, 0, NULL);
    g->waiting_tail = &g->waiting;
    fail_list(&g->reads, 0, NULL);
    fail_list(&g->ready_reads, 0, NULL);
}

/* ---- events from the host and the pipeline ------------------------------ */

static void on_leader_lost(struct sv_node *n, struct group *g)
{
    (void)n;
    /* Our proposals may or may not commit under the next leader: the
     * clients retry with the same session and sequence number. */
    static const char why[] = "leadership changed; retry";
    fail_list(&g->waiting, SV_ST_UNAVAILABLE, why);
    g->waiting_tail = &g->waiting;
    fail_list(&g->reads, SV_ST_UNAVAILABLE, why);
    fail_list(&g->ready_reads, SV_ST_UNAVAILABLE, why);
}

static void on_proposed(struct sv_node *n, struct group *g, void *tag, int rc, uint64_t index,
                        uint64_t term)
{
    struct waiter *w = tag;
    if (rc == -ECANCELED) {
        sv__waiter_free(w);
    } else if (rc == -EAGAIN) {
        sv__waiter_fail(w, SV_ST_UNAVAILABLE, "too many writes queued on this shard; retry");
    } else if (rc == SV_RAFT_E_NOT_LEADER) {
        sv__reply_not_leader(n, w->conn, w->type, w->req_id, g->leader);
        sv__waiter_free(w);
    } else if (rc) {
        sv__waiter_fail(w, rc == SV_RAFT_E_TOO_BIG ? SV_ST_TOO_BIG : SV_ST_UNAVAILABLE,
                        sv_strerror(rc));
    } else {
        w->index = index;
        w->term = term;
        w->next = NULL;
        *g->waiting_tail = w;
        g->waiting_tail = &w->next;
    }
}

static void reply_result(struct sv_node *n, struct waiter *w, const struct sv_sm_result *res)
{
    struct sv_msg m = {0};
    m.status = res->status;
    if (w->type == SV_MSG_PUT_BEGIN && res->status == SV_ST_OK) {
        m.upload = res->upload;
        SV_MSG_SET(&m, SV_F_UPLOAD);
    } else if (w->type != SV_MSG_PUT_CHUNK && res->version) {
        m.version = res->version;
        SV_MSG_SET(&m, SV_F_VERSION);
    }
    if (res->status == SV_ST_BAD_REQUEST && w->type == SV_MSG_PUT_COMMIT) {
        static const char t[] = "upload incomplete: a chunk is missing or the name differs";
        m.msg.p = (const uint8_t *)t;
        m.msg.len = sizeof t - 1;
        SV_MSG_SET(&m, SV_F_MSG);
    }
    sv__send_msg(n, w->conn, w->type, w->req_id, &m);
}

static void on_applied(struct sv_node *n, struct group *g, const struct sv_raft_entry *e,
                       const struct sv_sm_result *res, bool fresh)
{
    if (fresh)
        sv__dr_on_applied(n, g, e, res);
    if (res->stamp > n->hlc_ms) /* the hybrid logical clock keeps up (objects.c) */
        n->hlc_ms = res->stamp;
    struct waiter *w;
    while ((w = g->waiting) && w->index <= e->index) {
        g->waiting = w->next;
        if (!g->waiting)
            g->waiting_tail = &g->waiting;
        if (w->index == e->index && w->term == e->term && fresh)
            reply_result(n, w, res);
        else
            sv__reply_status(n, w->conn, w->type, w->req_id, SV_ST_UNAVAILABLE,
                             "superseded by another leader's entry; retry");
        sv__waiter_free(w);
    }
}

static void on_read_index(struct sv_node *n, struct group *g, uint64_t ctx, uint64_t index)
{
    for (struct waiter **pp = &g->reads; *pp; pp = &(*pp)->next) {
        struct waiter *w = *pp;
        if (w->read_ctx != ctx)
            continue;
        if (!index) {
            w->deadline_ms = 0; /* expires on the next tick: no leader known */
            return;
        }
        *pp = w->next;
        w->read_index = index;
        if (w->type == SV_MSG_DR_PULL || w->type == SV_MSG_DR_SEED) {
            (w->type == SV_MSG_DR_PULL ? sv__dr_serve : sv__dr_seed_serve)(n, g, w);
            return;
        }
        w->next = g->ready_reads;
        g->ready_reads = w;
        sv__objects_serve_ready(n, g);
        return;
    }
}

void sv__dispatch_events(struct sv__events *ev)
{
    ev->leader_lost = on_leader_lost;
    ev->proposed = on_proposed;
    ev->applied = on_applied;
    ev->read_index = on_read_index;
}

/* ---- requests ----------------------------------------------------------- */

static void handle_status(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                          const struct sv__ctx *ctx, struct sv_msg *req, uint8_t **body)
{
    (void)ctx, (void)req, (void)body;
    struct sv_item *items = calloc(n->n_group_ids, sizeof *items);
    if (!items) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    uint32_t count = 0;
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g)
            continue;
        struct sv_item *it = &items[count++];
        const char *role = sv_raft_role_name(g->role);
        it->id = id - 1; /* shard s is group s + 1 */
        it->role.p = (const uint8_t *)role;
        it->role.len = strlen(role);
        it->leader = g->leader;
        it->term = g->term;
        it->applied = g->applied;
        it->commit = g->commit;
        it->n_replicas = g->n_replicas;
        memcpy(it->replicas, g->replicas, g->n_replicas * sizeof g->replicas[0]);
        SV_ITEM_SET(it, SV_I_ID);
        SV_ITEM_SET(it, SV_I_ROLE);
        SV_ITEM_SET(it, SV_I_LEADER);
        SV_ITEM_SET(it, SV_I_TERM);
        SV_ITEM_SET(it, SV_I_APPLIED);
        SV_ITEM_SET(it, SV_I_COMMIT);
        SV_ITEM_SET(it, SV_I_REPLICAS);
    }
    struct sv_msg m = {0};
    m.node = n->me->id;
    m.addr.p = (const uint8_t *)n->me->addr;
    m.addr.len = strlen(n->me->addr);
    m.zone.p = (const uint8_t *)n->me->zone;
    m.zone.len = strlen(n->me->zone);
    m.n_shards = n->map->n_shards;
    m.epoch = n->map->epoch;
    SV_MSG_SET(&m, SV_F_EPOCH);
    m.items = items;
    m.n_items = count;
    SV_MSG_SET(&m, SV_F_NODE);
    SV_MSG_SET(&m, SV_F_ADDR);
    SV_MSG_SET(&m, SV_F_ZONE);
    SV_MSG_SET(&m, SV_F_N_SHARDS);
    SV_MSG_SET(&m, SV_F_ITEMS);
    sv__stats_status(n, &m);
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}

/* Encode cmd into a new buffer, sealing plain (may be NULL) for (tenant,
 * bucket/key, chunk, upload) straight into the command's data. NULL + status
 * on error. */
/* A request for an object's shard (or the shard a LIST or CHUNK_FETCH
 * names): the group hosted here, or a redirect. */
static void handle_object(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                          const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    uint64_t conn = sv_conn_id(c);
    uint64_t shard;
    if (f->type == SV_MSG_LIST || f->type == SV_MSG_CHUNK_FETCH) {
        if (!SV_MSG_HAS(m, SV_F_SHARD) || m->shard >= n->map->n_shards ||
            (f->type == SV_MSG_LIST && !sv_bucket_valid(m->bucket.p, m->bucket.len))) {
            sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                             "needs a valid SHARD and BUCKET");
            return;
        }
        shard = m->shard;
    } else {
        if (!sv_bucket_valid(m->bucket.p, m->bucket.len) || !sv_key_valid(m->key.p, m->key.len)) {
            sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                             "invalid bucket or key name");
            return;
        }
        shard = sv_shard_of(
            sv_object_hash(ctx->tenant, m->bucket.p, m->bucket.len, m->key.p, m->key.len),
            n->map->n_shards);
    }
    struct group *g = sv__group(n, shard + 1);
    if (!g) {
        sv__reply_not_leader(n, conn, f->type, f->req_id, sv_map_group(n->map, shard + 1)->ids[0]);
        return;
    }
    bool write = f->type == SV_MSG_PUT || f->type == SV_MSG_PUT_BEGIN ||
                 f->type == SV_MSG_PUT_CHUNK || f->type == SV_MSG_PUT_COMMIT ||
                 f->type == SV_MSG_DELETE;
    if (!write) {
        sv__objects_read(n, c, f, ctx, m, *body, g);
        *body = NULL;
    } else if (sv__dr_refuse_write(n, conn, f->type, f->req_id)) {
        /* a standby site: READ_ONLY answered */
    } else if (g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, conn, f->type, f->req_id, g->leader);
    } else {
        sv__objects_write(n, c, f, ctx, m, g);
    }
}

static void handle_map(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                       const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)m, (void)body;
    sv__meta_reply_map(n, c, f);
}

static void handle_map_get(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                           const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)m, (void)body;
    sv__meta_reply_map_get(n, c, f);
}

/* Operators' requests to the meta leader (sched_run.c). */
static void handle_sched(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                         const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)body;
    if (f->type == SV_MSG_NODES)
        sv__sched_reply_nodes(n, c, f);
    else if (f->type == SV_MSG_HEALTH)
        sv__sched_reply_health(n, c, f);
    else if (f->type == SV_MSG_SCHED_LOG)
        sv__sched_reply_log(n, c, f);
    else
        sv__sched_request(n, c, f, m);
}

/* A new node's JOIN: its certificate must name the node it asks for (it is
 * not in the map yet, so it arrives as a client). */
static void handle_join(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)body;
    const char *pn = sv_conn_peer_name(c);
    char want[64];
    sv_cfg_cert_name(n->cfg.site, m->node, want, sizeof want);
    if (!SV_MSG_HAS(m, SV_F_NODE) || !pn || strcmp(pn, want)) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_DENIED,
                         "JOIN needs a node certificate naming the node that joins");
        return;
    }
    sv__sched_request(n, c, f, m);
}

static void handle_heartbeat(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                             const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)body;
    sv__health_on_beat(n, c, f, m);
}

static void handle_conf(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)body;
    sv__move_conf(n, c, f, m);
}

static void handle_dr_status(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                             const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)m, (void)body;
    sv__dr_reply_status(n, c, f);
}

static void handle_dr_pull(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                           const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)body;
    (f->type == SV_MSG_DR_PULL ? sv__dr_pull : sv__dr_seed)(n, c, f, ctx, m);
}

static void handle_dr_shard(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                            const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body)
{
    (void)ctx, (void)body;
    (f->type == SV_MSG_DR_DIVERGED ? sv__dr_diverged : sv__dr_digest)(n, c, f, m);
}

/* A handler gets the decoded body m; when its route keeps the body, m
 * points into *body, a copy it may take (setting *body to NULL). */
typedef void (*handler_fn)(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                           const struct sv__ctx *ctx, struct sv_msg *m, uint8_t **body);

/* Who may send each request type, what handles it, and whether the request
 * outlives the frame (reads wait for a read point and run in the pool). */
static const struct route {
    uint32_t type;
    enum sv__role role;
    bool keep_body;
    handler_fn handle;
} routes[] = {
    {SV_MSG_MAP, SV_ROLE_CLIENT, false, handle_map},
    {SV_MSG_STATUS, SV_ROLE_CLIENT, false, handle_status},
    {SV_MSG_PUT, SV_ROLE_CLIENT, false, handle_object},
    {SV_MSG_PUT_BEGIN, SV_ROLE_CLIENT, false, handle_object},
    {SV_MSG_PUT_CHUNK, SV_ROLE_CLIENT, false, handle_object},
    {SV_MSG_PUT_COMMIT, SV_ROLE_CLIENT, false, handle_object},
    {SV_MSG_DELETE, SV_ROLE_CLIENT, false, handle_object},
    {SV_MSG_GET, SV_ROLE_CLIENT, true, handle_object},
    {SV_MSG_GET_CHUNK, SV_ROLE_CLIENT, true, handle_object},
    {SV_MSG_STAT, SV_ROLE_CLIENT, true, handle_object},
    {SV_MSG_LIST, SV_ROLE_CLIENT, true, handle_object},
    {SV_MSG_CHUNK_FETCH, SV_ROLE_PEER, true, handle_object},
    {SV_MSG_MAP_GET, SV_ROLE_NODE, false, handle_map_get},
    {SV_MSG_CONF, SV_ROLE_NODE, false, handle_conf},
    {SV_MSG_HEARTBEAT, SV_ROLE_NODE, false, handle_heartbeat},
    {SV_MSG_JOIN, SV_ROLE_CLIENT, false, handle_join},
    /* Until roles exist (the security issue: operator), any client. */
    {SV_MSG_MOVE, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_NODES, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_HEALTH, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_SCHED_LOG, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_DRAIN, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_NODE_REMOVE, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_CLUSTER_SET, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_DR_STATUS, SV_ROLE_CLIENT, false, handle_dr_status},
    {SV_MSG_DR_PROMOTE, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_DR_DEMOTE, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_DR_FAILBACK, SV_ROLE_CLIENT, false, handle_sched},
    {SV_MSG_DR_DIVERGED, SV_ROLE_CLIENT, false, handle_dr_shard},
    {SV_MSG_DR_DIGEST, SV_ROLE_CLIENT, false, handle_dr_shard},
    {SV_MSG_DR_PULL, SV_ROLE_SITE, false, handle_dr_pull},
    {SV_MSG_DR_SEED, SV_ROLE_SITE, false, handle_dr_pull},
};

/* Who connection c speaks for: another node when its certificate names a
 * node of the map; a node of the peer site when it names one of that site;
 * otherwise a client of the built-in tenant 0 (tokens will plug in here). */
static void authenticate(const struct sv_node *n, struct sv_conn *c, struct sv__ctx *ctx)
{
    uint64_t node = sv__peer_id(n, c), site = node ? 0 : sv__dr_peer_id(n, c);
    ctx->tenant = 0;
    ctx->principal = node ? node : site;
    ctx->role = node ? SV_ROLE_NODE : site ? SV_ROLE_SITE : SV_ROLE_CLIENT;
}

/* A client request is open to every connection; node requests to nodes
 * only; peer requests to nodes of either site. */
static bool permitted(const struct sv__ctx *ctx, enum sv__role need)
{
    return need == SV_ROLE_CLIENT || ctx->role == need ||
           (need == SV_ROLE_PEER && (ctx->role == SV_ROLE_NODE || ctx->role == SV_ROLE_SITE));
}

static void on_request(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    uint64_t conn = sv_conn_id(c);
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && !rt; i++)
        if (routes[i].type == f->type)
            rt = &routes[i];
    uint8_t *body = NULL; /* the copy a kept body is decoded from */
    if (rt && rt->keep_body && !(body = malloc(f->body_len ? f->body_len : 1))) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    if (body)
        memcpy(body, f->body, f->body_len);
    struct sv_msg m;
    char em[128] = "";
    int rc = sv_msg_decode(body ? body : f->body, f->body_len, &m, em, sizeof em);
    if (rc) {
        char why[192];
        snprintf(why, sizeof why, "malformed request body: %s", em);
        sv_conn_close(c, why);
        goto out;
    }
    struct sv__ctx ctx;
    authenticate(n, c, &ctx);
    if (n->stopping) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE, "node is shutting down");
    } else if (!rt) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST, "unknown request type");
    } else if (ctx.role == SV_ROLE_CLIENT && in_flight(c) >= CONN_IN_FLIGHT_MAX) {
        n->in_flight_refused++;
        char t[128];
        snprintf(t, sizeof t, "%d requests in flight on this connection already; retry",
                 CONN_IN_FLIGHT_MAX);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_UNAVAILABLE, t);
    } else if (!permitted(&ctx, rt->role)) {
        sv_conn_close(c, rt->role == SV_ROLE_SITE   ? "a site request from a connection without a "
                                                      "node certificate of the peer site"
                         : rt->role == SV_ROLE_PEER ? "a node request from a connection without a "
                                                      "node certificate of either site"
                                                    : "a node request from a connection without a "
                                                      "node certificate of this cluster");
    } else {
        rt->handle(n, c, f, &ctx, &m, &body);
    }
out:
    sv_msg_free(&m);
    free(body);
}

void sv__dispatch_frame(void *arg, struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct sv_node *n = arg;
    sv__stats_frame_in(n, c, f);
    if (f->type == SV_MSG_RAFT)
        sv__peers_on_raft(n, c, f);
    else if (f->type == (SV_MSG_CHUNK_FETCH | SV_MSG_RESP) &&
             (sv__peer_id(n, c) || sv__dr_peer_id(n, c)))
        sv__repair_on_reply(n, c, f);
    else if (f->type == (SV_MSG_MAP_GET | SV_MSG_RESP) && sv__peer_id(n, c))
        sv__meta_on_map_reply(n, f);
    else if (f->type == (SV_MSG_CONF | SV_MSG_RESP) && sv__peer_id(n, c))
        sv__move_on_conf_reply(n, f);
    else if (f->type == (SV_MSG_HEARTBEAT | SV_MSG_RESP) && sv__peer_id(n, c))
        sv__health_on_reply(n, f);
    else if ((f->type == (SV_MSG_DR_PULL | SV_MSG_RESP) ||
              f->type == (SV_MSG_DR_SEED | SV_MSG_RESP)) &&
             sv__dr_peer_id(n, c))
        sv__dr_on_pull_reply(n, c, f);
    else if (f->type == (SV_MSG_DR_STATUS | SV_MSG_RESP) && sv__dr_peer_id(n, c))
        sv__dr_on_peer_status(n, f);
    else if (f->type == (SV_MSG_JOIN | SV_MSG_RESP) && n->joining)
        sv__join_on_reply(n, c, f);
    else if (f->type & SV_MSG_RESP)
        sv_conn_close(c, "unexpected response frame");
    else
        on_request(n, c, f);
}

/* ---- deadlines ---------------------------------------------------------- */

static void expire(struct sv_node *n, struct waiter **list, uint64_t now)
{
    struct waiter **pp = list;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->deadline_ms > now) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (w->type == SV_MSG_GET || w->type == SV_MSG_STAT || w->type == SV_MSG_LIST) {
            struct group *g = sv__group(n, w->group);
            sv__reply_not_leader(n, w->conn, w->type, w->req_id, g ? g->leader : 0);
            sv__waiter_free(w);
        } else {
            sv__waiter_fail(w, SV_ST_UNAVAILABLE, "timed out waiting for the shard; retry");
        }
    }
}

void sv__dispatch_tick(struct sv_node *n, uint64_t now_ms)
{
    for (uint32_t id = 0; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!g)
            continue;
        expire(n, &g->waiting, now_ms);
        g->waiting_tail = &g->waiting;
        for (struct waiter *w = g->waiting; w; w = w->next)
            g->waiting_tail = &w->next;
        expire(n, &g->reads, now_ms);
        expire(n, &g->ready_reads, now_ms);
    }
}
