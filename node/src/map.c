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
static const char MAGIC_V2[6] = "svmap2";

void sv_map_from_cfg(const struct sv_cfg *c, struct sv_map *out)
{
    memset(out, 0, sizeof *out);
    out->epoch = 1;
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
    put(&b, MAGIC_V2, sizeof MAGIC_V2);
    put_u64(&b, m->epoch);
    put_u64(&b, m->n_shards);
    put_u64(&b, m->replicas);
    put_u64(&b, m->n_nodes);
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
    }
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
    if (!v1 && memcmp(p, MAGIC_V2, sizeof MAGIC_V2))
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
    for (uint32_t i = 0; i < out->n_nodes && !r.bad; i++) {
        struct sv_map_node *mn = &out->nodes[i];
        mn->id = get_u64(&r);
        get_str(&r, mn->zone, sizeof mn->zone);
        get_str(&r, mn->addr, sizeof mn->addr);
        uint64_t st = v1 ? SV_MAP_UP : get_u64(&r);
        if (st < SV_MAP_UP || st > SV_MAP_EVICTED || mn->id == 0)
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

int sv_map_move(struct sv_map *m, uint64_t group, uint64_t from, uint64_t to, char *errmsg,
                size_t errlen)
{
    struct sv_map_group *g = group <= m->n_shards ? &m->groups[group] : NULL;
    const struct sv_map_node *dst = sv_map_node(m, to);
    const char *why = NULL;
    uint32_t at = 0;
    if (!g)
        why = "no such group";
    else if (!sv_map_holds(m, group, from))
        why = "the source node holds no replica of the group";
    else if (!dst || dst->state != SV_MAP_UP)
        why = "the target is not an up node of the map";
    else if (sv_map_holds(m, group, to))
        why = "the target holds a replica of the group already";
    if (!why && zone_taken(m, g, from, dst->zone)) {
        for (uint32_t i = 0; i < m->n_nodes && !why; i++)
            if (m->nodes[i].state == SV_MAP_UP && !zone_taken(m, g, from, m->nodes[i].zone))
                why = "the target's zone holds a replica of the group while another zone "
                      "holds none";
    }
    if (why) {
        snprintf(errmsg, errlen, "move of group %llu from node %llu to node %llu: %s",
                 (unsigned long long)group, (unsigned long long)from, (unsigned long long)to, why);
        return SV_MAP_E_BAD_MOVE;
    }
    while (g->ids[at] != from)
        at++;
    g->ids[at] = to;
    m->epoch++;
    return 0;
}

__attribute__((format(printf, 3, 4))) static int refuse(char *errmsg, size_t errlen,
                                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
    return SV_MAP_E_BAD_MOVE;
}

int sv_map_add(struct sv_map *m, uint64_t group, uint64_t node, char *errmsg, size_t errlen)
{
    const struct sv_map_node *mn = sv_map_node(m, node);
    if (group > m->n_shards)
        return refuse(errmsg, errlen, "group %llu is not in the map", (unsigned long long)group);
    struct sv_map_group *g = &m->groups[group];
    if (!mn || mn->state != SV_MAP_UP)
        return refuse(errmsg, errlen, "node %llu is not an up node of the map",
                      (unsigned long long)node);
    if (sv_map_holds(m, group, node))
        return refuse(errmsg, errlen, "node %llu holds a replica of group %llu already",
                      (unsigned long long)node, (unsigned long long)group);
    if (g->n >= SV_CFG_REPLICAS_MAX)
        return refuse(errmsg, errlen, "group %llu has %u replicas, the most it may have",
                      (unsigned long long)group, g->n);
    g->ids[g->n++] = node;
    m->epoch++;
    return 0;
}

int sv_map_remove(struct sv_map *m, uint64_t group, uint64_t node, char *errmsg, size_t errlen)
{
    if (!sv_map_holds(m, group, node))
        return refuse(errmsg, errlen, "node %llu holds no replica of group %llu",
                      (unsigned long long)node, (unsigned long long)group);
    struct sv_map_group *g = &m->groups[group];
    if (g->n == 1)
        return refuse(errmsg, errlen, "node %llu holds the last replica of group %llu",
                      (unsigned long long)node, (unsigned long long)group);
    uint32_t at = 0;
    while (g->ids[at] != node)
        at++;
    memmove(&g->ids[at], &g->ids[at + 1], (g->n - at - 1) * sizeof g->ids[0]);
    g->ids[--g->n] = 0;
    m->epoch++;
    return 0;
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
    default:
        return "unknown cluster map error";
    }
}

const char *sv_map_state_name(uint32_t state)
{
    static const char *const names[] = {"?", "up", "down", "draining", "evicted"};
    return state <= SV_MAP_EVICTED ? names[state] : "?";
}
