/* svd --join: a new node asks the meta group's leader to add it to the
 * cluster map (JOIN, its certificate naming it), then reads the map that
 * names it (MAP_GET) and follows it like any node. Until then it hosts
 * nothing, sends no heartbeat and asks for no map: the other nodes do not
 * know it, and its cluster.conf's placement is not the cluster's. */
#define _GNU_SOURCE
#include "node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JOIN_RETRY_MS = 1000 };

/* The next node to ask: a redirect's target, else the others in turn. */
static uint64_t next_target(struct sv_node *n)
{
    if (n->join_to && n->join_to != n->me->id && sv_map_node(n->map, n->join_to))
        return n->join_to;
    for (uint32_t i = 0; i < n->map->n_nodes; i++) {
        uint64_t id = n->map->nodes[n->join_rr++ % n->map->n_nodes].id;
        if (id != n->me->id)
            return id;
    }
    return 0;
}

void sv__join_tick(struct sv_node *n, uint64_t now_ms)
{
    if (!n->joining || n->stopping)
        return;
    if (n->map->epoch > 1 && sv_map_node(n->map, n->me->id)) {
        n->joining = false;
        LOG_INFO("joined the cluster (map epoch %" PRIu64 ")", n->map->epoch);
        return;
    }
    if (now_ms - n->join_ms < JOIN_RETRY_MS)
        return;
    n->join_ms = now_ms;
    uint64_t to = next_target(n);
    struct sv_conn *c = to ? sv__peer(n, to) : NULL;
    if (!c) {
        n->join_to = 0;
        return;
    }
    struct sv_msg m = {0};
    m.node = n->me->id;
    m.zone = (struct sv_bytes){(const uint8_t *)n->me->zone, strlen(n->me->zone)};
    m.addr = (struct sv_bytes){(const uint8_t *)n->me->addr, strlen(n->me->addr)};
    m.fields = 1u << SV_F_NODE | 1u << SV_F_ZONE | 1u << SV_F_ADDR;
    uint8_t *body;
    size_t len;
    if (sv_msg_encode(&m, &body, &len))
        return;
    sv_conn_send(c, SV_MSG_JOIN, ++n->next_fetch, body, len);
    free(body);
    LOG_INFO("asking node %" PRIu64 " to add this node (zone %s, %s) to the cluster", to,
             n->me->zone, n->me->addr);
}

void sv__join_on_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct sv_msg m;
    if (sv_msg_decode(f->body, f->body_len, &m, NULL, 0))
        return;
    if (m.status == SV_ST_NOT_LEADER && SV_MSG_HAS(&m, SV_F_LEADER)) {
        n->join_to = m.leader;
        n->join_ms = 0; /* ask it at the next tick */
    } else if (m.status == SV_ST_OK) {
        /* Recorded: read the map that names this node. */
        struct sv_msg q = {0};
        q.epoch = n->map->epoch;
        SV_MSG_SET(&q, SV_F_EPOCH);
        uint8_t *body;
        size_t len;
        if (!sv_msg_encode(&q, &body, &len)) {
            sv_conn_send(c, SV_MSG_MAP_GET, 0, body, len);
            free(body);
        }
    } else {
        n->join_to = 0;
        LOG_WARN("joining: %s: %.*s", sv_status_name((int)m.status), (int)m.msg.len,
                 (const char *)m.msg.p);
    }
    sv_msg_free(&m);
}
