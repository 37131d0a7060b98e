/* svd's meta group (group 0): the cluster map it records, how every node
 * learns and follows it (members read it, the others ask a member), MAP and
 * MAP_GET replies. */
#define _GNU_SOURCE
#include "node_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the recorded map --------------------------------------------------
 *
 * The meta group records the cluster map at bootstrap (epoch 1, from the
 * cluster.conf of its first leader) and every change after it (map.h). Its
 * members read the record every MAP_CHECK_MS; the other nodes ask a member
 * (MAP_GET). A node adopts a map whose epoch is newer than its own: it
 * writes it to DATA/map first (so that a restart routes and places groups
 * from it, not from cluster.conf), then follows it (host.c). A member also
 * checks, once, that its own cluster.conf names the nodes the record names,
 * so a node started with a different configuration says so loudly. */
struct map_job {
    uv_work_t w;
    struct sv_node *node;
    struct sv_map *mine, *rec; /* from cluster.conf; as recorded */
    uint8_t *enc;              /* mine, encoded */
    size_t enc_len;
    bool check;       /* cluster.conf not checked yet: make mine and enc */
    uint64_t applied; /* group 0's applied index when the job started */
    int rc;
};

/* A map being written to DATA/map before the node follows it. */
struct adopt_job {
    uv_work_t w;
    struct sv_node *node;
    struct sv_map *map;
    int rc;
};

static void map_path(const struct sv_node *n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/map", n->data_dir);
}

int sv__meta_load(struct sv_node *n, char *errmsg, size_t errlen)
{
    char path[SV_CFG_PATH_MAX + 32];
    map_path(n, path, sizeof path);
    if (errlen)
        errmsg[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0; /* no map adopted yet: cluster.conf's */
    if (fd < 0) {
        int err = -errno;
        snprintf(errmsg, errlen, "%s: %s", path, sv_strerror(err));
        return err;
    }
    struct stat st;
    uint8_t *buf = NULL;
    int rc = fstat(fd, &st) ? -errno : 0;
    if (!rc && (st.st_size <= 0 || st.st_size > (64 << 20)))
        rc = SV_MAP_E_MALFORMED;
    if (!rc && !(buf = malloc((size_t)st.st_size)))
        rc = -ENOMEM;
    if (!rc && read(fd, buf, (size_t)st.st_size) != st.st_size)
        rc = -EIO;
    close(fd);
    struct sv_map *m = rc ? NULL : malloc(sizeof *m);
    if (!rc && !m)
        rc = -ENOMEM;
    if (!rc)
        rc = sv_map_decode(buf, (size_t)st.st_size, m);
    if (!rc && !sv_map_same_nodes(m, n->map))
        LOG_WARN("%s names other nodes than cluster.conf: the map recorded by the cluster wins",
                 path);
    if (!rc && !sv_map_node(m, n->me->id)) {
        snprintf(errmsg, errlen, "%s: this node (%" PRIu64 ") is not in the cluster map", path,
                 n->me->id);
        rc = -EINVAL;
    }
    if (!rc && m->epoch > n->map->epoch)
        *n->map = *m;
    if (rc && !errmsg[0])
        snprintf(errmsg, errlen, "%s: %s", path, sv_strerror(rc));
    free(m);
    free(buf);
    return rc;
}

/* Write map to DATA/map: a new file, synced, renamed over the old one, the
 * directory synced. */
static int map_store(const struct sv_node *n, const struct sv_map *map)
{
    char path[SV_CFG_PATH_MAX + 32], tmp[SV_CFG_PATH_MAX + 40];
    map_path(n, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    uint8_t *enc;
    size_t len;
    int rc = sv_map_encode(map, &enc, &len);
    if (rc)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(enc);
        return -errno;
    }
    if (write(fd, enc, len) != (ssize_t)len || fdatasync(fd))
        rc = -EIO;
    close(fd);
    free(enc);
    if (!rc && rename(tmp, path))
        rc = -errno;
    int dfd = rc ? -1 : open(n->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd))
            rc = -EIO;
        close(dfd);
    }
    return rc;
}

static void adopt_work(uv_work_t *req)
{
    struct adopt_job *a = req->data;
    a->rc = map_store(a->node, a->map);
}

static void adopt_after(uv_work_t *req, int status)
{
    (void)status;
    struct adopt_job *a = req->data;
    struct sv_node *n = a->node;
    n->jobs_in_pool--;
    n->map_adopting = false;
    if (a->rc) {
        LOG_ERROR("storing the cluster map of epoch %" PRIu64 ": %s; tried again", a->map->epoch,
                  sv_strerror(a->rc));
        n->map_read_applied = 0; /* a member reads the record again on its next tick */
    } else if (a->map->epoch > n->map->epoch && !n->stopping) {
        LOG_INFO("cluster map: epoch %" PRIu64 " (was %" PRIu64 ")", a->map->epoch, n->map->epoch);
        *n->map = *a->map;
        sv__host_follow(n);
    }
    free(a->map);
    free(a);
}

/* Adopt map (copied) when it is newer than this node's. */
static void adopt(struct sv_node *n, const struct sv_map *map)
{
    if (map->epoch <= n->map->epoch || n->map_adopting || n->stopping)
        return;
    if (!sv_map_node(map, n->me->id)) {
        LOG_ERROR("cluster map of epoch %" PRIu64 " does not hold this node: ignored", map->epoch);
        return;
    }
    struct adopt_job *a = calloc(1, sizeof *a);
    if (!a || !(a->map = malloc(sizeof *a->map))) {
        free(a);
        return;
    }
    *a->map = *map;
    a->node = n;
    a->w.data = a;
    n->map_adopting = true;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &a->w, adopt_work, adopt_after);
}

static void map_work(uv_work_t *req)
{
    struct map_job *m = req->data;
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    if (m->check) {
        sv_map_from_cfg(&m->node->cfg, m->mine);
        m->rc = sv_map_encode(m->mine, &m->enc, &m->enc_len);
    }
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
    struct group *g = sv__group(n, 0);
    n->jobs_in_pool--;
    n->map_reading = false;
    if (m->rc == 0) {
        n->map_read_applied = m->applied;
        if (m->check && !sv_map_same_nodes(m->rec, m->mine))
            LOG_ERROR("meta group: this node's cluster.conf DIFFERS from the cluster map "
                      "recorded at bootstrap: every node must be started with the same file");
        else if (m->check)
            LOG_INFO("meta group: this node's cluster.conf matches the recorded cluster map "
                     "(epoch %" PRIu64 ")",
                     m->rec->epoch);
        n->map_checked = true;
        adopt(n, m->rec);
    } else if (m->rc == -ENOENT && m->check && g && g->role == SV_RAFT_LEADER && !n->stopping) {
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
    } else if (m->rc != -ENOENT) {
        LOG_ERROR("meta group: reading the recorded cluster map: %s", sv_strerror(m->rc));
    }
    free(m->mine);
    free(m->rec);
    free(m->enc);
    free(m);
}

/* Ask a member of the meta group for its map (not this node: it is none),
 * or, with any, any other node (this node may be a member the group left
 * behind, and its idea of the members old). */
static void poll_member(struct sv_node *n, bool any)
{
    const struct sv_map_group *mg = sv_map_group(n->map, 0);
    uint32_t count = any ? n->map->n_nodes : mg->n;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t k = (n->map_rr + i) % count;
        uint64_t id = any ? n->map->nodes[k].id : mg->ids[k];
        struct sv_conn *c = id == n->me->id ? NULL : sv__peer(n, id);
        if (!c)
            continue;
        struct sv_msg m = {0};
        m.epoch = n->map->epoch;
        SV_MSG_SET(&m, SV_F_EPOCH);
        uint8_t *body;
        size_t len;
        if (sv_msg_encode(&m, &body, &len))
            return;
        sv_conn_send(c, SV_MSG_MAP_GET, 0, body, len);
        free(body);
        n->map_rr += i + 1;
        return;
    }
    n->map_rr++;
}

void sv__meta_tick(struct sv_node *n, uint64_t now_ms)
{
    if (now_ms - n->last_map_check_ms < MAP_CHECK_MS || n->stopping || n->joining)
        return; /* a joining node reads the map once it is in it (join.c) */
    n->last_map_check_ms = now_ms;
    struct group *g = sv__group(n, 0);
    /* A member removed from the meta group hears none of its entries, the
     * one saying it left included: a member with no leader asks the others
     * too. */
    if (!g || !g->leader) {
        poll_member(n, g != NULL);
        if (!g)
            return;
    }
    /* The record changes only through group 0's entries: read it again
     * once more of them are applied. */
    if (n->map_reading || g->applied == 0 || g->applied == n->map_read_applied)
        return;
    struct map_job *m = calloc(1, sizeof *m);
    bool check = !n->map_checked;
    if (!m || (check && !(m->mine = malloc(sizeof *m->mine))) ||
        !(m->rec = malloc(sizeof *m->rec))) {
        if (m)
            free(m->mine);
        free(m);
        return;
    }
    m->check = check;
    m->applied = g->applied;
    m->node = n;
    m->w.data = m;
    n->map_reading = true;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &m->w, map_work, map_after);
}

void sv__meta_reply_map_get(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct sv_msg m = {0};
    uint8_t *enc = NULL;
    size_t len = 0;
    if (sv_map_encode(n->map, &enc, &len)) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    m.status = SV_ST_OK;
    m.data.p = enc;
    m.data.len = len;
    m.epoch = n->map->epoch;
    SV_MSG_SET(&m, SV_F_DATA);
    SV_MSG_SET(&m, SV_F_EPOCH);
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(enc);
}

void sv__meta_on_map_reply(struct sv_node *n, const struct sv_wire_frame *f)
{
    struct sv_msg m;
    struct sv_map *map = malloc(sizeof *map);
    if (map && !sv_msg_decode(f->body, f->body_len, &m, NULL, 0) && m.status == SV_ST_OK &&
        SV_MSG_HAS(&m, SV_F_DATA) && !sv_map_decode(m.data.p, m.data.len, map))
        adopt(n, map);
    if (map)
        sv_msg_free(&m);
    free(map);
}

/* A node's proposal of a new map (move.c): recorded when the record is
 * still at expect. */
int sv__meta_propose(struct sv_node *n, const struct sv_map *map, uint64_t expect)
{
    struct group *g = sv__group(n, 0);
    if (!g || g->role != SV_RAFT_LEADER)
        return SV_RAFT_E_NOT_LEADER;
    uint8_t *enc;
    size_t enc_len;
    int rc = sv_map_encode(map, &enc, &enc_len);
    if (rc)
        return rc;
    struct sv_cmd cmd = {.type = SV_CMD_MAP,
                         .data = enc,
                         .data_len = (uint32_t)enc_len,
                         .has_if_version = true,
                         .if_version = expect};
    size_t len = sv_cmd_encoded_len(&cmd);
    uint8_t *buf = malloc(len);
    if (buf)
        sv_cmd_encode(&cmd, buf);
    free(enc);
    if (!buf)
        return -ENOMEM;
    sv__host_propose(n, g, buf, len, NULL);
    return 0;
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
    if (n->cfg.peer_site[0]) { /* a client given both sites' endpoints picks the primary */
        const char *role = sv__dr_role_name(n);
        m.key = (struct sv_bytes){(const uint8_t *)role, strlen(role)};
        SV_MSG_SET(&m, SV_F_KEY);
    }
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}
