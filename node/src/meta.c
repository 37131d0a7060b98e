/* svd's meta group (group 0): the cluster map it records, checked against
 * this node's cluster.conf, and MAP replies. */
#define _GNU_SOURCE
#include "node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The meta group records the cluster map once, at bootstrap (epoch 1, from
 * the cluster.conf of its first leader); every member then checks its own
 * cluster.conf against the recorded map, so a node started with a different
 * configuration says so loudly, and routes from the recorded map. */
struct map_job {
    uv_work_t w;
    struct sv_node *node;
    struct sv_map *mine, *rec; /* from cluster.conf; as recorded */
    uint8_t *enc;              /* mine, encoded */
    size_t enc_len;
    int rc;
};

static void map_work(uv_work_t *req)
{
    struct map_job *m = req->data;
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    sv_map_from_cfg(&m->node->cfg, m->mine);
    m->rc = sv_map_encode(m->mine, &m->enc, &m->enc_len);
    if (!m->rc)
        m->rc = sv_sm_map(m->node->sm, 0, &rec, &rec_len);
    if (!m->rc)
        m->rc = sv_map_decode(rec, rec_len, m->rec);
    free(rec);
}

static void map_after(uv_work_t *req, int status)
{
    (void)status;
    struct map_job *m = req->data;
    struct sv_node *n = m->node;
    struct group *g = n->groups[0];
    n->jobs_in_pool--;
    g->map_busy = false;
    if (m->rc == -ENOENT && g->role == SV_RAFT_LEADER && !n->stopping) {
        struct sv_cmd cmd = {.type = SV_CMD_MAP, .data = m->enc, .data_len = (uint32_t)m->enc_len};
        size_t len = sv_cmd_encoded_len(&cmd);
        uint8_t *buf = malloc(len);
        if (buf) {
            sv_cmd_encode(&cmd, buf);
            LOG_INFO("meta group: recording the cluster map (epoch %" PRIu64
                     ", %u nodes, %u shards)",
                     m->mine->epoch, m->mine->n_nodes, m->mine->n_shards);
            sv__host_propose(n, g, buf, len, NULL);
        }
    } else if (m->rc == 0) {
        bool same = sv_map_same_nodes(m->rec, m->mine);
        if (!same) {
            LOG_ERROR("meta group: this node's cluster.conf DIFFERS from the cluster map "
                      "recorded at bootstrap: every node must be started with the same file");
        } else {
            LOG_INFO("meta group: this node's cluster.conf matches the recorded cluster map "
                     "(epoch %" PRIu64 ")",
                     m->rec->epoch);
            if (m->rec->epoch > n->map->epoch)
                *n->map = *m->rec;
        }
        g->map_state = same ? 1 : 2;
    } else if (m->rc != -ENOENT) {
        LOG_ERROR("meta group: reading the recorded cluster map: %s", sv_strerror(m->rc));
    }
    free(m->mine);
    free(m->rec);
    free(m->enc);
    free(m);
}

void sv__meta_tick(struct sv_node *n, uint64_t now_ms)
{
    if (now_ms - n->last_map_check_ms < MAP_CHECK_MS)
        return;
    n->last_map_check_ms = now_ms;
    struct group *g = sv__group(n, 0);
    if (!g || g->map_state || g->map_busy || g->applied == 0)
        return;
    struct map_job *m = calloc(1, sizeof *m);
    if (!m || !(m->mine = malloc(sizeof *m->mine)) || !(m->rec = malloc(sizeof *m->rec))) {
        if (m)
            free(m->mine);
        free(m);
        return;
    }
    m->node = n;
    m->w.data = m;
    g->map_busy = true;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &m->w, map_work, map_after);
}

void sv__meta_reply_map(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    const struct sv_map *map = n->map;
    uint32_t count = map->n_nodes + map->n_shards;
    struct sv_item *items = calloc(count, sizeof *items);
    if (!items) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < map->n_nodes; i++) {
        struct sv_item *it = &items[i];
        const struct sv_map_node *cn = &map->nodes[i];
        it->id = cn->id;
        it->addr.p = (const uint8_t *)cn->addr;
        it->addr.len = strlen(cn->addr);
        it->zone.p = (const uint8_t *)cn->zone;
        it->zone.len = strlen(cn->zone);
        const char *state = sv_map_state_name(cn->state);
        it->state.p = (const uint8_t *)state;
        it->state.len = strlen(state);
        SV_ITEM_SET(it, SV_I_STATE);
        SV_ITEM_SET(it, SV_I_ID);
        SV_ITEM_SET(it, SV_I_ADDR);
        SV_ITEM_SET(it, SV_I_ZONE);
    }
    for (uint32_t s = 0; s < map->n_shards; s++) {
        struct sv_item *it = &items[map->n_nodes + s];
        it->id = s;
        const struct sv_map_group *mg = sv_map_group(map, s + 1);
        it->n_replicas = mg->n;
        memcpy(it->replicas, mg->ids, mg->n * sizeof mg->ids[0]);
        SV_ITEM_SET(it, SV_I_ID);
        SV_ITEM_SET(it, SV_I_REPLICAS);
        struct group *g = sv__group(n, s + 1);
        if (g && g->leader) {
            it->leader = g->leader;
            SV_ITEM_SET(it, SV_I_LEADER);
        }
    }
    struct sv_msg m = {0};
    m.n_shards = map->n_shards;
    m.epoch = map->epoch;
    SV_MSG_SET(&m, SV_F_EPOCH);
    m.items = items;
    m.n_items = count;
    m.node = n->me->id;
    SV_MSG_SET(&m, SV_F_N_SHARDS);
    SV_MSG_SET(&m, SV_F_ITEMS);
    SV_MSG_SET(&m, SV_F_NODE);
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}
