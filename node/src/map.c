/* The cluster map as data: bootstrap from cluster.conf, encoding, lookups
 * and the one change built so far, moving a replica (see map.h). */
#include "map.h"

#include "sv_codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MAGIC_V1[6] = "svmap1"; /* config.h's bootstrap record */
static const char MAGIC_V2[6] = "svmap2"; /* no settings, no replacement in progress */
static const char MAGIC_V3[6] = "svmap3"; /* no site role and epoch */
static const char MAGIC_V4[6] = "svmap4"; /* no promotion's cut */
static const char MAGIC_V5[6] = "svmap5";

void sv_map_from_cfg(const struct sv_cfg *c, struct sv_map *out)
{
    memset(out, 0, sizeof *out);
    out->epoch = 1;
    out->set = SV_MAP_SETTINGS_DEFAULT;
    out->site_role = c->site_role == SV_SITE_STANDBY ? SV_MAP_STANDBY : SV_MAP_PRIMARY;
    out->site_epoch = 1;
    if (c->down_after_s) /* sv_cfg_load's; a configuration built in code may leave them 0 */
        out->set.down_after_ms = (uint64_t)c->down_after_s * 1000;
    if (c->evict_after_s >= c->down_after_s && c->evict_after_s)
        out->set.evict_after_ms = (uint64_t)c->evict_after_s * 1000;
    out->n_shards = c->n_shards;
    out->replicas = c->replicas;
    out->n_nodes = c->n_nodes;
    for (uint32_t i = 0; i < c->n_nodes; i++) {
        struct sv_map_node *mn = &out->nodes[i];
        mn->id = c->nodes[i].id;
        snprintf(mn->zone, sizeof mn->zone, "%s", c->nodes[i].zone);
        snprintf(mn->addr, sizeof mn->addr, "%s", c->nodes[i].addr);
        mn->state = SV_MAP_UP;
    }
    for (uint64_t g = 0; g <= c->n_shards; g++)
        out->groups[g].n = sv_cfg_replicas(c, g, out->groups[g].ids);
}

/* ---- encoding: magic, then little-endian u64s and length-prefixed strings */

struct wbuf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};

static void put(struct wbuf *b, const void *d, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_u64(struct wbuf *b, uint64_t v)
{
    uint8_t x[8];
    sv_put64(x, v);
    put(b, x, 8);
}

static void put_str(struct wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u64(b, n);
    put(b, s, n);
}

int sv_map_encode(const struct sv_map *m, uint8_t **out, size_t *len)
{
    struct wbuf b = {0};
    put(&b, MAGIC_V5, sizeof MAGIC_V5);
    put_u64(&b, m->epoch);
    put_u64(&b, m->n_shards);
    put_u64(&b, m->replicas);
    put_u64(&b, m->n_nodes);
    put_u64(&b, m->set.down_after_ms);
    put_u64(&b, m->set.evict_after_ms);
    put_u64(&b, m->set.repair_rate);
    put_u64(&b, m->set.moves_per_node);
    put_u64(&b, m->set.auto_evict);
    put_u64(&b, m->set.rebalance);
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        put_u64(&b, m->nodes[i].id);
        put_str(&b, m->nodes[i].zone);
        put_str(&b, m->nodes[i].addr);
        put_u64(&b, m->nodes[i].state);
    }
    for (uint64_t g = 0; g <= m->n_shards; g++) {
        put_u64(&b, m->groups[g].n);
        for (uint32_t k = 0; k < m->groups[g].n; k++)
            put_u64(&b, m->groups[g].ids[k]);
        put_u64(&b, m->groups[g].out);
    }
    put_u64(&b, m->site_role);
    put_u64(&b, m->site_epoch);
    put_u64(&b, m->site_cut_ms);
    if (b.failed) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

struct rbuf {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t get_u64(struct rbuf *r)
{
    if (r->bad || r->end - r->p < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t v = sv_get64(r->p);
    r->p += 8;
    return v;
}

static void get_str(struct rbuf *r, char *dst, size_t cap)
{
    uint64_t n = get_u64(r);
    if (r->bad || n >= cap || (uint64_t)(r->end - r->p) < n) {
        r->bad = true;
        return;
    }
    memcpy(dst, r->p, n);
    dst[n] = 0;
    r->p += n;
}

int sv_map_decode(const uint8_t *p, size_t len, struct sv_map *out)
{
    memset(out, 0, sizeof *out);
    if (len < sizeof MAGIC_V2)
        return SV_MAP_E_MALFORMED;
    bool v1 = !memcmp(p, MAGIC_V1, sizeof MAGIC_V1);
    bool v5 = !memcmp(p, MAGIC_V5, sizeof MAGIC_V5);
    bool v4 = v5 || !memcmp(p, MAGIC_V4, sizeof MAGIC_V4);
    bool v3 = v4 || !memcmp(p, MAGIC_V3, sizeof MAGIC_V3);
    if (!v1 && !v3 && memcmp(p, MAGIC_V2, sizeof MAGIC_V2))
        return SV_MAP_E_MALFORMED;
    struct rbuf r = {p + sizeof MAGIC_V2, p + len, false};
    out->epoch = v1 ? 1 : get_u64(&r);
    uint64_t shards = get_u64(&r), replicas = get_u64(&r), nodes = get_u64(&r);
    if (r.bad || shards < 1 || shards > SV_CFG_SHARDS_MAX || replicas < 1 ||
        replicas > SV_CFG_REPLICAS_MAX || nodes < 1 || nodes > SV_CFG_NODES_MAX || out->epoch == 0)
        return SV_MAP_E_MALFORMED;
    out->n_shards = (uint32_t)shards;
    out->replicas = (uint32_t)replicas;
    out->n_nodes = (uint32_t)nodes;
    out->set = SV_MAP_SETTINGS_DEFAULT;
    if (v3) {
        out->set.down_after_ms = get_u64(&r);
        out->set.evict_after_ms = get_u64(&r);
        out->set.repair_rate = get_u64(&r);
        uint64_t moves = get_u64(&r), auto_evict = get_u64(&r), rebalance = get_u64(&r);
        if (moves < 1 || moves > 64 || auto_evict > 1 || rebalance > 1 || !out->set.down_after_ms ||
            out->set.evict_after_ms < out->set.down_after_ms || !out->set.repair_rate)
            r.bad = true;
        out->set.moves_per_node = (uint32_t)moves;
        out->set.auto_evict = (uint32_t)auto_evict;
        out->set.rebalance = (uint32_t)rebalance;
    }
    for (uint32_t i = 0; i < out->n_nodes && !r.bad; i++) {
        struct sv_map_node *mn = &out->nodes[i];
        mn->id = get_u64(&r);
        get_str(&r, mn->zone, sizeof mn->zone);
        get_str(&r, mn->addr, sizeof mn->addr);
        uint64_t st = v1 ? SV_MAP_UP : get_u64(&r);
        if (st < SV_MAP_UP || st > SV_MAP_REMOVED || mn->id == 0)
            r.bad = true;
        mn->state = (uint32_t)st;
    }
    for (uint64_t g = 0; g <= out->n_shards && !r.bad; g++) {
        uint64_t n = get_u64(&r);
        if (n > SV_CFG_REPLICAS_MAX) {
            r.bad = true;
            break;
        }
        out->groups[g].n = (uint32_t)n;
        for (uint32_t k = 0; k < n; k++)
            out->groups[g].ids[k] = get_u64(&r);
        out->groups[g].out = v3 ? get_u64(&r) : 0;
        /* out is a member, not the new replica (the set's last) */
        if (out->groups[g].out && (!sv_map_holds(out, g, out->groups[g].out) ||
                                   out->groups[g].out == out->groups[g].ids[n - 1]))
            r.bad = true;
    }
    out->site_epoch = 1;
    if (v4 && !r.bad) {
        uint64_t role = get_u64(&r);
        out->site_epoch = get_u64(&r);
        if (role > SV_MAP_FENCED || out->site_epoch == 0)
            r.bad = true;
        out->site_role = (uint32_t)role;
        out->site_cut_ms = v5 ? get_u64(&r) : 0;
    }
    if (r.bad || r.p != r.end)
        return SV_MAP_E_MALFORMED;
    return 0;
}

/* ---- lookups ------------------------------------------------------------- */

const struct sv_map_node *sv_map_node(const struct sv_map *m, uint64_t id)
{
    for (uint32_t i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].id == id)
            return &m->nodes[i];
    return NULL;
}

const struct sv_map_group *sv_map_group(const struct sv_map *m, uint64_t group)
{
    return group <= m->n_shards ? &m->groups[group] : NULL;
}

bool sv_map_holds(const struct sv_map *m, uint64_t group, uint64_t node)
{
    const struct sv_map_group *g = sv_map_group(m, group);
    for (uint32_t k = 0; g && k < g->n; k++)
        if (g->ids[k] == node)
            return true;
    return false;
}

/* A replica of g other than skip lives in zone. */
static bool zone_taken(const struct sv_map *m, const struct sv_map_group *g, uint64_t skip,
                       const char *zone)
{
    for (uint32_t k = 0; k < g->n; k++) {
        const struct sv_map_node *mn = sv_map_node(m, g->ids[k]);
        if (g->ids[k] != skip && mn && !strcmp(mn->zone, zone))
            return true;
    }
    return false;
}

/* Why moving group's replica from node `from` to node `to` does not fit m,
 * or NULL when it does. */
static const char *move_misfit(const struct sv_map *m, uint64_t group, uint64_t from, uint64_t to)
{
    const struct sv_map_group *g = sv_map_group(m, group);
    const struct sv_map_node *dst = sv_map_node(m, to);
    if (!g)
        return "no such group";
    if (!sv_map_holds(m, group, from))
        return "the source node holds no replica of the group";
    if (!dst || dst->state != SV_MAP_UP)
        return "the target is not an up node of the map";
    if (sv_map_holds(m, group, to))
        return "the target holds a replica of the group already";
    if (zone_taken(m, g, from, dst->zone))
        for (uint32_t i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].state == SV_MAP_UP && !zone_taken(m, g, from, m->nodes[i].zone))
                return "the target's zone holds a replica of the group while another zone "
                       "holds none";
    return NULL;
}

static int refuse_move(char *errmsg, size_t errlen, uint64_t group, uint64_t from, uint64_t to,
                       const char *why)
{
    snprintf(errmsg, errlen, "move of group %llu from node %llu to node %llu: %s",
             (unsigned long long)group, (unsigned long long)from, (unsigned long long)to, why);
    return SV_MAP_E_BAD_MOVE;
}

int sv_map_move(struct sv_map *m, uint64_t group, uint64_t from, uint64_t to, char *errmsg,
                size_t errlen)
{
    const char *why = move_misfit(m, group, from, to);
    if (!why && m->groups[group].out) /* out would name no member, or the new replica change */
        why = "a replacement of the group is in progress";
    if (why)
        return refuse_move(errmsg, errlen, group, from, to, why);
    struct sv_map_group *g = &m->groups[group];
    uint32_t at = 0;
    while (g->ids[at] != from)
        at++;
    g->ids[at] = to;
    m->epoch++;
    return 0;
}

int sv_map_replace(struct sv_map *m, uint64_t group, uint64_t from, uint64_t to, char *errmsg,
                   size_t errlen)
{
    const char *why = move_misfit(m, group, from, to);
    if (!why && m->groups[group].out)
        why = "a replacement of the group is in progress";
    if (!why && m->groups[group].n >= SV_CFG_REPLICAS_MAX)
        why = "the group has the most replicas it may have";
    if (why)
        return refuse_move(errmsg, errlen, group, from, to, why);
    struct sv_map_group *g = &m->groups[group];
    g->ids[g->n++] = to;
    g->out = from;
    m->epoch++;
    return 0;
}

__attribute__((format(printf, 4, 5))) static int refuse(int code, char *errmsg, size_t errlen,
                                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
    return code;
}

int sv_map_add(struct sv_map *m, uint64_t group, uint64_t node, char *errmsg, size_t errlen)
{
    const struct sv_map_node *mn = sv_map_node(m, node);
    if (group > m->n_shards)
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen, "group %llu is not in the map",
                      (unsigned long long)group);
    struct sv_map_group *g = &m->groups[group];
    if (!mn || mn->state != SV_MAP_UP)
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen, "node %llu is not an up node of the map",
                      (unsigned long long)node);
    if (sv_map_holds(m, group, node))
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen,
                      "node %llu holds a replica of group %llu already", (unsigned long long)node,
                      (unsigned long long)group);
    if (g->out) /* the replacement's new replica is the set's last */
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen,
                      "a replacement of group %llu is in progress", (unsigned long long)group);
    if (g->n >= SV_CFG_REPLICAS_MAX)
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen,
                      "group %llu has %u replicas, the most it may have", (unsigned long long)group,
                      g->n);
    g->ids[g->n++] = node;
    m->epoch++;
    return 0;
}

int sv_map_remove(struct sv_map *m, uint64_t group, uint64_t node, char *errmsg, size_t errlen)
{
    if (!sv_map_holds(m, group, node))
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen, "node %llu holds no replica of group %llu",
                      (unsigned long long)node, (unsigned long long)group);
    struct sv_map_group *g = &m->groups[group];
    if (g->n == 1)
        return refuse(SV_MAP_E_BAD_MOVE, errmsg, errlen,
                      "node %llu holds the last replica of group %llu", (unsigned long long)node,
                      (unsigned long long)group);
    uint32_t at = 0;
    while (g->ids[at] != node)
        at++;
    /* Removing `out` ends a replacement, removing the new replica (the
     * last) abandons it. */
    if (g->out == node || (g->out && at == g->n - 1))
        g->out = 0;
    memmove(&g->ids[at], &g->ids[at + 1], (g->n - at - 1) * sizeof g->ids[0]);
    g->ids[--g->n] = 0;
    m->epoch++;
    return 0;
}

int sv_map_node_add(struct sv_map *m, uint64_t id, const char *zone, const char *addr, char *errmsg,
                    size_t errlen)
{
    if (!id || sv_map_node(m, id))
        return refuse(SV_MAP_E_BAD_NODE, errmsg, errlen, "node id %llu is %s",
                      (unsigned long long)id, id ? "taken" : "not a node id");
    if (!zone[0] || !addr[0] || strlen(zone) >= SV_CFG_NAME_MAX || strlen(addr) >= SV_CFG_ADDR_MAX)
        return refuse(SV_MAP_E_BAD_NODE, errmsg, errlen, "node %llu needs a zone and an address",
                      (unsigned long long)id);
    for (uint32_t i = 0; i < m->n_nodes; i++)
        if (!strcmp(m->nodes[i].addr, addr))
            return refuse(SV_MAP_E_BAD_NODE, errmsg, errlen, "address %s is node %llu's", addr,
                          (unsigned long long)m->nodes[i].id);
    if (m->n_nodes >= SV_CFG_NODES_MAX)
        return refuse(SV_MAP_E_BAD_NODE, errmsg, errlen, "the map holds %u nodes, the most it may",
                      m->n_nodes);
    struct sv_map_node *mn = &m->nodes[m->n_nodes++];
    memset(mn, 0, sizeof *mn);
    mn->id = id;
    snprintf(mn->zone, sizeof mn->zone, "%s", zone);
    snprintf(mn->addr, sizeof mn->addr, "%s", addr);
    mn->state = SV_MAP_UP;
    m->epoch++;
    return 0;
}

int sv_map_node_state(struct sv_map *m, uint64_t id, uint32_t state, char *errmsg, size_t errlen)
{
    struct sv_map_node *mn = (struct sv_map_node *)sv_map_node(m, id);
    if (!mn)
        return refuse(SV_MAP_E_BAD_NODE, errmsg, errlen, "node %llu is not in the map",
                      (unsigned long long)id);
    if (state < SV_MAP_UP || state > SV_MAP_REMOVED)
        return refuse(SV_MAP_E_BAD_NODE, errmsg, errlen, "no node state %u", state);
    if (mn->state != state) {
        mn->state = state;
        m->epoch++;
    }
    return 0;
}

uint32_t sv_map_node_replicas(const struct sv_map *m, uint64_t id)
{
    uint32_t count = 0;
    for (uint64_t g = 0; g <= m->n_shards; g++)
        count += sv_map_holds(m, g, id);
    return count;
}

bool sv_map_same_nodes(const struct sv_map *a, const struct sv_map *b)
{
    if (a->n_nodes != b->n_nodes || a->n_shards != b->n_shards || a->replicas != b->replicas)
        return false;
    for (uint32_t i = 0; i < a->n_nodes; i++) {
        const struct sv_map_node *x = &a->nodes[i], *y = sv_map_node(b, x->id);
        if (!y || strcmp(x->zone, y->zone) || strcmp(x->addr, y->addr))
            return false;
    }
    return true;
}

const char *sv_map_strerror(int rc)
{
    switch (rc) {
    case SV_MAP_E_MALFORMED:
        return "malformed cluster map";
    case SV_MAP_E_BAD_MOVE:
        return "the replica move does not fit the cluster map";
    case SV_MAP_E_BAD_NODE:
        return "the node change does not fit the cluster map";
    default:
        return "unknown cluster map error";
    }
}

const char *sv_map_state_name(uint32_t state)
{
    static const char *const names[] = {"?", "up", "down", "draining", "evicted", "removed"};
    return state <= SV_MAP_REMOVED ? names[state] : "?";
}
