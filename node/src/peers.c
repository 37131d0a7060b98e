/* svd's links to other nodes, addressed by node id: dialled on demand, Raft
 * messages batched per destination, inbound Raft frames checked against the
 * sender's certificate. */
#define _GNU_SOURCE
#include "node_int.h"

#include "raftwire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The link state of node id, created on first use; NULL when id is not in
 * the map, is this node, or memory ran out. */
static struct peer *peer_slot(struct sv_node *n, uint64_t id)
{
    if (id == n->me->id || !sv_map_node(n->map, id))
        return NULL;
    for (uint32_t i = 0; i < n->n_peers; i++)
        if (n->peers[i].id == id)
            return &n->peers[i];
    struct peer *p = realloc(n->peers, (n->n_peers + 1) * sizeof *p);
    if (!p)
        return NULL;
    n->peers = p;
    p = &n->peers[n->n_peers++];
    memset(p, 0, sizeof *p);
    p->id = id;
    return p;
}

struct sv_conn *sv__peer_dial(struct sv_node *n, struct peer *p, const char *site, const char *addr)
{
    struct sv_conn *c = p->conn ? sv_tp_conn(n->tp, p->conn) : NULL;
    if (c)
        return c;
    uint64_t now = uv_now(&n->loop);
    if (now < p->next_dial_ms)
        return NULL;
    p->next_dial_ms = now + PEER_RETRY_MS;
    char name[64];
    sv_cfg_cert_name(site, p->id, name, sizeof name);
    if (sv_tp_connect(n->tp, addr, name, &c))
        return NULL;
    p->conn = sv_conn_id(c);
    return c;
}

struct sv_conn *sv__peer(struct sv_node *n, uint64_t id)
{
    struct peer *p = peer_slot(n, id);
    return p ? sv__peer_dial(n, p, n->cfg.site, sv_map_node(n->map, id)->addr) : NULL;
}

uint64_t sv__peer_id(const struct sv_node *n, struct sv_conn *c)
{
    uint64_t from = sv_cfg_cert_node(n->cfg.site, sv_conn_peer_name(c));
    return from && sv_map_node(n->map, from) ? from : 0;
}

static bool selected(const struct sv_raft_msg *m, bool early)
{
    return sv_raft_msg_may_send_early(m) == early;
}

/* Encode and send batch[0..nb) to node to (a drop is a lost message). */
static void send_batch(struct sv_node *n, uint64_t to, const struct sv_raftwire_msg *batch,
                       size_t nb)
{
    struct sv_conn *c = sv__peer(n, to);
    size_t off = 0;
    while (c && off < nb) {
        uint8_t *body;
        size_t len, done;
        int rc = sv_raftwire_encode(batch + off, nb - off, SV_WIRE_BODY_MAX, &body, &len, &done);
        if (rc) {
            LOG_ERROR("raft message to node %" PRIu64 ": %s", to, sv_strerror(rc));
            return;
        }
        if (sv_conn_send(c, SV_MSG_RAFT, 0, body, len) == 0) /* a drop is a lost message */
            sv__stats_raft_sent(n, len);
        free(body);
        off += done;
    }
}

void sv__peers_send(struct sv_node *n, struct group *g, struct sv_raft_msg *msgs, size_t count,
                    bool early)
{
    struct sv_raftwire_msg batch[RAFTWIRE_BATCH];
    for (size_t first = 0; first < count; first++) {
        uint64_t to = msgs[first].to;
        if (!selected(&msgs[first], early))
            continue;
        bool seen = false; /* an earlier message went to the same node with its batch */
        for (size_t j = 0; j < first && !seen; j++)
            seen = msgs[j].to == to && selected(&msgs[j], early);
        if (seen)
            continue;
        size_t nb = 0;
        for (size_t i = first; i < count; i++) {
            if (msgs[i].to != to || !selected(&msgs[i], early))
                continue;
            batch[nb].group = g->id;
            batch[nb].msg = msgs[i];
            if (++nb == RAFTWIRE_BATCH) {
                send_batch(n, to, batch, nb);
                nb = 0;
            }
        }
        if (nb)
            send_batch(n, to, batch, nb);
    }
}

void sv__peers_on_raft(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    uint64_t from = sv__peer_id(n, c);
    if (!from) {
        sv_conn_close(c, "raft traffic from a connection without a node certificate");
        return;
    }
    struct sv_raftwire_msg *msgs;
    size_t count;
    char em[128];
    int rc = sv_raftwire_decode(f->body, f->body_len, &msgs, &count, em, sizeof em);
    if (rc) {
        LOG_WARN("malformed raft frame from node %" PRIu64 ": %s", from, em);
        sv_conn_close(c, "malformed raft frame");
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const struct sv_raftwire_msg *rm = &msgs[i];
        struct group *g = sv__group(n, rm->group);
        if (rm->msg.from != from || rm->msg.to != n->me->id || !g)
            continue; /* not for us, or forged: ignore */
        sv__host_step(n, g, &rm->msg);
    }
    sv_raftwire_free(msgs, count);
}
