/* map-test: the cluster map as data (map.h): bootstrap from a
 * configuration, encode/decode round trip and refusal of damaged records,
 * the earlier bootstrap record read as epoch 1, and replica moves. */
#define _GNU_SOURCE
#include "map.h"

#define CHECK_STRERROR(rc) sv_map_strerror(rc)
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Six nodes in three zones, 8 shards of 3 replicas. */
static void make_cfg(struct sv_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->n_shards = 8;
    c->replicas = 3;
    c->n_nodes = 6;
    c->n_zones = 3;
    for (uint32_t i = 0; i < 6; i++) {
        struct sv_cfg_node *cn = &c->nodes[i];
        cn->id = i + 1;
        snprintf(cn->zone, sizeof cn->zone, "z%u", i % 3);
        snprintf(cn->addr, sizeof cn->addr, "127.0.0.1:%u", 7101 + i);
        cn->zone_index = i % 3;
    }
}

static struct sv_map *map_new(void)
{
    struct sv_map *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    return m;
}

static void test_bootstrap(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new();
    sv_map_from_cfg(&c, m);
    CHECK(m->epoch == 1);
    CHECK(m->n_nodes == 6 && m->n_shards == 8);
    for (uint64_t g = 0; g <= 8; g++) {
        uint64_t ids[SV_CFG_REPLICAS_MAX];
        uint32_t n = sv_cfg_replicas(&c, g, ids);
        CHECK(m->groups[g].n == n);
        CHECK(!memcmp(m->groups[g].ids, ids, n * sizeof ids[0]));
        for (uint32_t k = 0; k < n; k++)
            CHECK(sv_map_holds(m, g, ids[k]));
    }
    CHECK(sv_map_node(m, 4) && !strcmp(sv_map_node(m, 4)->zone, "z0"));
    CHECK(sv_map_node(m, 4)->state == SV_MAP_UP);
    CHECK(!sv_map_node(m, 7));
    CHECK(!sv_map_group(m, 9));
    free(m);
}

static void test_codec(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *d = map_new();
    sv_map_from_cfg(&c, m);
    m->epoch = 42;
    m->nodes[2].state = SV_MAP_DRAINING;
    uint8_t *buf;
    size_t len;
    CHECK_RC(sv_map_encode(m, &buf, &len), 0);
    CHECK_RC(sv_map_decode(buf, len, d), 0);
    CHECK(d->epoch == 42 && d->nodes[2].state == SV_MAP_DRAINING);
    CHECK(!memcmp(d, m, sizeof *m)); /* both were zeroed before filling */
    /* Every truncation and a trailing byte are refused. */
    int refused = 0;
    for (size_t cut = 0; cut < len; cut++)
        refused += sv_map_decode(buf, cut, d) == SV_MAP_E_MALFORMED;
    CHECK(refused == (int)len);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    CHECK_RC(sv_map_decode(longer, len + 1, d), SV_MAP_E_MALFORMED);
    /* A wrong magic, and an unknown node state. */
    buf[0] ^= 1;
    CHECK_RC(sv_map_decode(buf, len, d), SV_MAP_E_MALFORMED);
    buf[0] ^= 1;
    m->nodes[0].state = 9;
    free(buf);
    CHECK_RC(sv_map_encode(m, &buf, &len), 0);
    CHECK_RC(sv_map_decode(buf, len, d), SV_MAP_E_MALFORMED);
    free(buf);
    free(longer);
    /* The bootstrap record of earlier versions reads as epoch 1. */
    CHECK_RC(sv_cfg_map_encode(&c, &buf, &len), 0);
    CHECK_RC(sv_map_decode(buf, len, d), 0);
    sv_map_from_cfg(&c, m);
    CHECK(!memcmp(d, m, sizeof *m));
    CHECK(sv_map_same_nodes(d, m));
    free(buf);
    free(m);
    free(d);
}

static void test_move(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *before = map_new();
    sv_map_from_cfg(&c, m);
    char err[256] = "";
    /* Shard 0 (group 1) is on one node of each zone. */
    const struct sv_map_group *g = sv_map_group(m, 1);
    uint64_t from = g->ids[0];
    const char *zone = sv_map_node(m, from)->zone;
    uint64_t same_zone = 0, other = 0;
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        const struct sv_map_node *mn = &m->nodes[i];
        if (sv_map_holds(m, 1, mn->id))
            continue;
        if (!strcmp(mn->zone, zone))
            same_zone = mn->id;
        else
            other = mn->id;
    }
    CHECK(same_zone && other);
    *before = *m;
    /* Into the zone it leaves: allowed, epoch + 1, same position. */
    CHECK_RC(sv_map_move(m, 1, from, same_zone, err, sizeof err), 0);
    CHECK(m->epoch == 2);
    CHECK(m->groups[1].ids[0] == same_zone && !sv_map_holds(m, 1, from));
    /* Refusals leave the map unchanged and say why. */
    *before = *m;
    CHECK_RC(sv_map_move(m, 1, from, same_zone, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "holds no replica") != NULL);
    CHECK_RC(sv_map_move(m, 1, same_zone, m->groups[1].ids[1], err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "already") != NULL);
    CHECK_RC(sv_map_move(m, 1, same_zone, 99, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "not an up node") != NULL);
    CHECK_RC(sv_map_move(m, 99, same_zone, from, err, sizeof err), SV_MAP_E_BAD_MOVE);
    /* Into a zone that holds another replica while the leaving zone would
     * hold none: refused. */
    CHECK_RC(sv_map_move(m, 1, same_zone, other, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "zone") != NULL);
    /* A target that is not up is refused. */
    for (uint32_t i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].id == from)
            m->nodes[i].state = SV_MAP_DOWN;
    before->nodes[0] = m->nodes[0];
    for (uint32_t i = 0; i < m->n_nodes; i++)
        before->nodes[i] = m->nodes[i];
    CHECK_RC(sv_map_move(m, 1, same_zone, from, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(!memcmp(m, before, sizeof *m));
    free(m);
    free(before);
}

static void test_add_remove(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *before = map_new();
    sv_map_from_cfg(&c, m);
    char err[256] = "";
    const struct sv_map_group *g = sv_map_group(m, 2);
    uint64_t out = 0;
    for (uint32_t i = 0; i < m->n_nodes && !out; i++)
        if (!sv_map_holds(m, 2, m->nodes[i].id))
            out = m->nodes[i].id;
    uint64_t first = g->ids[0];
    /* Added at the end, epoch + 1; removed keeping the others' order. */
    CHECK_RC(sv_map_add(m, 2, out, err, sizeof err), 0);
    CHECK(m->epoch == 2 && g->n == 4 && g->ids[3] == out);
    CHECK_RC(sv_map_remove(m, 2, first, err, sizeof err), 0);
    CHECK(m->epoch == 3 && g->n == 3 && g->ids[2] == out && !sv_map_holds(m, 2, first));
    /* Refusals change nothing. */
    *before = *m;
    CHECK_RC(sv_map_add(m, 2, out, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "already") != NULL);
    CHECK_RC(sv_map_add(m, 2, 99, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_RC(sv_map_add(m, 9, first, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_RC(sv_map_remove(m, 2, first, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "holds no replica") != NULL);
    CHECK(!memcmp(m, before, sizeof *m));
    /* The last replica stays. */
    while (m->groups[2].n > 1)
        CHECK_RC(sv_map_remove(m, 2, m->groups[2].ids[0], err, sizeof err), 0);
    CHECK_RC(sv_map_remove(m, 2, m->groups[2].ids[0], err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "last replica") != NULL);
    /* A full set refuses another. */
    sv_map_from_cfg(&c, m);
    for (uint32_t i = 0; i < m->n_nodes; i++)
        if (!sv_map_holds(m, 3, m->nodes[i].id))
            CHECK_RC(sv_map_add(m, 3, m->nodes[i].id, err, sizeof err), 0);
    CHECK(m->groups[3].n == 6);
    free(m);
    free(before);
}

/* ---- the scheduler's encoding (svmap3) and the earlier one (svmap2) ---- */

/* A node of m in node from's zone that holds no replica of group, 0 when none. */
static uint64_t zone_mate(const struct sv_map *m, uint64_t group, uint64_t from)
{
    const char *zone = sv_map_node(m, from)->zone;
    for (uint32_t i = 0; i < m->n_nodes; i++)
        if (!strcmp(m->nodes[i].zone, zone) && !sv_map_holds(m, group, m->nodes[i].id))
            return m->nodes[i].id;
    return 0;
}

static bool settings_eq(const struct sv_map_settings *a, const struct sv_map_settings *b)
{
    return a->down_after_ms == b->down_after_ms && a->evict_after_ms == b->evict_after_ms &&
           a->repair_rate == b->repair_rate && a->moves_per_node == b->moves_per_node &&
           a->auto_evict == b->auto_evict && a->rebalance == b->rebalance;
}

/* a and b hold the same map (compared member by member: the settings'
 * padding is whatever their assignments left). */
static bool maps_eq(const struct sv_map *a, const struct sv_map *b)
{
    return a->epoch == b->epoch && a->n_shards == b->n_shards && a->replicas == b->replicas &&
           a->n_nodes == b->n_nodes && settings_eq(&a->set, &b->set) &&
           a->site_role == b->site_role && a->site_epoch == b->site_epoch &&
           a->site_cut_ms == b->site_cut_ms && !memcmp(a->nodes, b->nodes, sizeof a->nodes) &&
           !memcmp(a->groups, b->groups, sizeof a->groups);
}

static void test_codec_v3(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *d = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    m->set = (struct sv_map_settings){.down_after_ms = 5000,
                                      .evict_after_ms = 7000,
                                      .repair_rate = 12345,
                                      .moves_per_node = 5,
                                      .auto_evict = 0,
                                      .rebalance = 0};
    uint64_t from = m->groups[1].ids[0], to = zone_mate(m, 1, from);
    CHECK(to != 0);
    CHECK_RC(sv_map_replace(m, 1, from, to, err, sizeof err), 0);
    CHECK_RC(sv_map_node_state(m, from, SV_MAP_DRAINING, err, sizeof err), 0);
    m->site_role = SV_MAP_FENCED;
    m->site_epoch = 7;
    m->site_cut_ms = 1765000000123;
    uint8_t *buf;
    size_t len;
    CHECK_RC(sv_map_encode(m, &buf, &len), 0);
    CHECK(len > 6 && !memcmp(buf, "svmap5", 6));
    CHECK_RC(sv_map_decode(buf, len, d), 0);
    CHECK(d->site_role == SV_MAP_FENCED && d->site_epoch == 7);
    CHECK(d->site_cut_ms == 1765000000123);
    /* svmap4 is svmap5 without the cut */
    memcpy(buf, "svmap4", 6);
    CHECK_RC(sv_map_decode(buf, len - 8, d), 0);
    CHECK(d->site_role == SV_MAP_FENCED && d->site_epoch == 7 && d->site_cut_ms == 0);
    CHECK(sv_map_decode(buf, len, d) == SV_MAP_E_MALFORMED);
    /* svmap3 is svmap4 without the site: a primary at site epoch 1 */
    memcpy(buf, "svmap3", 6);
    CHECK_RC(sv_map_decode(buf, len - 24, d), 0);
    CHECK(d->site_role == SV_MAP_PRIMARY && d->site_epoch == 1);
    memcpy(buf, "svmap5", 6);
    CHECK_RC(sv_map_decode(buf, len, d), 0);
    CHECK(settings_eq(&d->set, &m->set));
    CHECK(d->set.down_after_ms == 5000 && d->set.evict_after_ms == 7000);
    CHECK(d->set.repair_rate == 12345 && d->set.moves_per_node == 5);
    CHECK(d->set.auto_evict == 0 && d->set.rebalance == 0);
    CHECK(d->groups[1].out == from && d->groups[1].n == 4 && d->groups[1].ids[3] == to);
    for (uint64_t g = 2; g <= d->n_shards; g++)
        CHECK(d->groups[g].out == 0);
    CHECK(d->epoch == m->epoch && sv_map_node(d, from)->state == SV_MAP_DRAINING);
    CHECK(maps_eq(d, m));
    /* The defaults round-trip too, and every truncation is refused. */
    free(buf);
    sv_map_from_cfg(&c, m);
    CHECK_RC(sv_map_encode(m, &buf, &len), 0);
    CHECK_RC(sv_map_decode(buf, len, d), 0);
    CHECK(maps_eq(d, m));
    int refused = 0;
    for (size_t cut = 0; cut < len; cut++)
        refused += sv_map_decode(buf, cut, d) == SV_MAP_E_MALFORMED;
    CHECK(refused == (int)len);
    free(buf);
    free(m);
    free(d);
}

/* svmap2 by hand: svmap3 without the settings and without out. */
struct enc {
    uint8_t p[8192];
    size_t len;
};

static void enc_u64(struct enc *e, uint64_t v)
{
    ASSERT(e->len + 8 <= sizeof e->p);
    for (int i = 0; i < 8; i++)
        e->p[e->len++] = (uint8_t)(v >> (8 * i));
}

static void enc_str(struct enc *e, const char *s)
{
    size_t n = strlen(s);
    enc_u64(e, n);
    ASSERT(e->len + n <= sizeof e->p);
    memcpy(e->p + e->len, s, n);
    e->len += n;
}

static void enc_v2(struct enc *e, const struct sv_map *m)
{
    e->len = 0;
    memcpy(e->p, "svmap2", 6);
    e->len = 6;
    enc_u64(e, m->epoch);
    enc_u64(e, m->n_shards);
    enc_u64(e, m->replicas);
    enc_u64(e, m->n_nodes);
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        enc_u64(e, m->nodes[i].id);
        enc_str(e, m->nodes[i].zone);
        enc_str(e, m->nodes[i].addr);
        enc_u64(e, m->nodes[i].state);
    }
    for (uint64_t g = 0; g <= m->n_shards; g++) {
        enc_u64(e, m->groups[g].n);
        for (uint32_t k = 0; k < m->groups[g].n; k++)
            enc_u64(e, m->groups[g].ids[k]);
    }
}

static void test_codec_v2(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *d = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    uint64_t from = m->groups[2].ids[1], to = zone_mate(m, 2, from);
    CHECK_RC(sv_map_move(m, 2, from, to, err, sizeof err), 0);
    CHECK_RC(sv_map_node_state(m, 5, SV_MAP_EVICTED, err, sizeof err), 0);
    m->epoch = 77;
    struct enc *e = calloc(1, sizeof *e);
    ASSERT(e);
    enc_v2(e, m);
    /* d holds settings and an out before: decoding replaces both */
    d->set.moves_per_node = 9;
    d->groups[1].out = 3;
    CHECK_RC(sv_map_decode(e->p, e->len, d), 0);
    struct sv_map_settings def = SV_MAP_SETTINGS_DEFAULT;
    CHECK(settings_eq(&d->set, &def));
    for (uint64_t g = 0; g <= d->n_shards; g++)
        CHECK(d->groups[g].out == 0);
    CHECK(d->epoch == 77 && sv_map_node(d, 5)->state == SV_MAP_EVICTED);
    CHECK(d->groups[2].ids[1] == to);
    m->set = def; /* the bootstrap's: the rest as encoded */
    CHECK(maps_eq(d, m));
    /* A trailing out (svmap3's layout under svmap2's magic) is refused. */
    enc_u64(e, 0);
    CHECK_RC(sv_map_decode(e->p, e->len, d), SV_MAP_E_MALFORMED);
    free(e);
    free(m);
    free(d);
}

/* Encode m (settings and outs as they are, valid or not) and decode it. */
static int reencode(const struct sv_map *m, struct sv_map *d)
{
    uint8_t *buf;
    size_t len;
    CHECK_RC(sv_map_encode(m, &buf, &len), 0);
    int rc = sv_map_decode(buf, len, d);
    free(buf);
    return rc;
}

static void test_codec_v3_refused(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *d = map_new();
    sv_map_from_cfg(&c, m);
    CHECK_RC(reencode(m, d), 0);
    static const struct {
        const char *what;
        struct sv_map_settings set;
    } bad[] = {
        {"down_after 0", {0, 60000, 1, 2, 1, 1}},
        {"evict_after < down_after", {10000, 9999, 1, 2, 1, 1}},
        {"repair_rate 0", {10000, 60000, 0, 2, 1, 1}},
        {"moves_per_node 0", {10000, 60000, 1, 0, 1, 1}},
        {"moves_per_node 65", {10000, 60000, 1, 65, 1, 1}},
        {"auto_evict 2", {10000, 60000, 1, 2, 2, 1}},
        {"rebalance 2", {10000, 60000, 1, 2, 1, 2}},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        m->set = bad[k].set;
        CHECK_MSG(reencode(m, d) == SV_MAP_E_MALFORMED, "%s accepted", bad[k].what);
    }
    /* The limits themselves are accepted. */
    m->set = (struct sv_map_settings){1, 1, 1, 64, 0, 0};
    CHECK_RC(reencode(m, d), 0);
    m->set = SV_MAP_SETTINGS_DEFAULT;
    /* out must name a member of the group: another node of the map, or
     * no node at all, is refused. */
    uint64_t other = 0;
    for (uint32_t i = 0; i < m->n_nodes && !other; i++)
        if (!sv_map_holds(m, 1, m->nodes[i].id))
            other = m->nodes[i].id;
    m->groups[1].out = other;
    CHECK_RC(reencode(m, d), SV_MAP_E_MALFORMED);
    m->groups[1].out = 99;
    CHECK_RC(reencode(m, d), SV_MAP_E_MALFORMED);
    m->groups[1].out = m->groups[1].ids[0];
    CHECK_RC(reencode(m, d), 0);
    free(m);
    free(d);
}

/* ---- replacements -------------------------------------------------------- */

static void test_replace(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *before = map_new();
    sv_map_from_cfg(&c, m);
    char err[256] = "";
    const struct sv_map_group *g = &m->groups[1];
    uint64_t from = g->ids[1], to = zone_mate(m, 1, from), keep[3];
    memcpy(keep, g->ids, sizeof keep);
    /* Added at the end, out set, epoch + 1; the others keep their places. */
    CHECK_RC(sv_map_replace(m, 1, from, to, err, sizeof err), 0);
    CHECK(m->epoch == 2 && g->n == 4 && g->ids[3] == to && g->out == from);
    CHECK(!memcmp(g->ids, keep, sizeof keep));
    CHECK(sv_map_holds(m, 1, from) && sv_map_holds(m, 1, to));
    /* One at a time per group: refused while one is in flight. */
    *before = *m;
    uint64_t other = g->ids[0], other_to = zone_mate(m, 1, other);
    CHECK(other_to != 0);
    CHECK_RC(sv_map_replace(m, 1, other, other_to, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_MSG(strstr(err, "in progress") != NULL, "%s", err);
    CHECK(!memcmp(m, before, sizeof *m));
    /* Another group may begin one. */
    CHECK_RC(sv_map_replace(m, 2, m->groups[2].ids[0], zone_mate(m, 2, m->groups[2].ids[0]), err,
                            sizeof err),
             0);
    CHECK(m->epoch == 3 && m->groups[2].out != 0);
    /* As sv_map_move refuses: the zone rule, a source holding none, a
     * target holding one or not up; the map unchanged. */
    sv_map_from_cfg(&c, m);
    *before = *m;
    uint64_t z_other = 0; /* a node of another zone than from's, not holding group 1 */
    for (uint32_t i = 0; i < m->n_nodes && !z_other; i++)
        if (!sv_map_holds(m, 1, m->nodes[i].id) &&
            strcmp(m->nodes[i].zone, sv_map_node(m, from)->zone))
            z_other = m->nodes[i].id;
    CHECK(z_other != 0);
    CHECK_RC(sv_map_replace(m, 1, from, z_other, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_MSG(strstr(err, "zone") != NULL, "%s", err);
    CHECK_RC(sv_map_replace(m, 1, to, from, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "holds no replica") != NULL);
    CHECK_RC(sv_map_replace(m, 1, from, keep[0], err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "already") != NULL);
    CHECK_RC(sv_map_node_state(m, to, SV_MAP_DRAINING, err, sizeof err), 0);
    before->nodes[to - 1].state = SV_MAP_DRAINING;
    before->epoch++;
    CHECK_RC(sv_map_replace(m, 1, from, to, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(strstr(err, "not an up node") != NULL);
    CHECK_RC(sv_map_replace(m, 99, from, to, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK(!memcmp(m, before, sizeof *m));
    /* A full set (SV_CFG_REPLICAS_MAX) refuses a replacement. */
    sv_map_from_cfg(&c, m);
    CHECK_RC(sv_map_node_add(m, 7, "z0", "127.0.0.1:7107", err, sizeof err), 0);
    CHECK_RC(sv_map_node_add(m, 8, "z1", "127.0.0.1:7108", err, sizeof err), 0);
    for (uint32_t i = 0; i < 7; i++)
        if (!sv_map_holds(m, 3, m->nodes[i].id))
            CHECK_RC(sv_map_add(m, 3, m->nodes[i].id, err, sizeof err), 0);
    CHECK(m->groups[3].n == SV_CFG_REPLICAS_MAX);
    *before = *m;
    CHECK_RC(sv_map_replace(m, 3, m->groups[3].ids[0], 8, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_MSG(strstr(err, "most replicas") != NULL, "%s", err);
    CHECK(!memcmp(m, before, sizeof *m));
    free(m);
    free(before);
}

/* sv_map_remove ends a replacement: removing out finishes it, removing the
 * new replica abandons it; removing a third replica leaves it going. */
static void test_replace_end(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *start = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    const struct sv_map_group *g = &m->groups[1];
    uint64_t a = g->ids[0], b = g->ids[1], z = g->ids[2], to = zone_mate(m, 1, b);
    /* finished: to takes the end, out cleared */
    CHECK_RC(sv_map_replace(m, 1, b, to, err, sizeof err), 0);
    CHECK_RC(sv_map_remove(m, 1, b, err, sizeof err), 0);
    CHECK(g->out == 0 && g->n == 3 && g->ids[0] == a && g->ids[1] == z && g->ids[2] == to);
    CHECK(m->epoch == 3 && !sv_map_holds(m, 1, b));
    /* abandoned: the set as it was, out cleared */
    *start = *m;
    CHECK_RC(sv_map_replace(m, 1, a, zone_mate(m, 1, a), err, sizeof err), 0);
    CHECK_RC(sv_map_remove(m, 1, g->ids[3], err, sizeof err), 0);
    CHECK(g->out == 0 && g->n == 3);
    CHECK(!memcmp(g, &start->groups[1], sizeof *g));
    CHECK(m->epoch == start->epoch + 2);
    /* a third replica removed: out and the new replica (last) stay */
    uint64_t fresh = zone_mate(m, 1, a);
    CHECK_RC(sv_map_replace(m, 1, a, fresh, err, sizeof err), 0);
    CHECK_RC(sv_map_remove(m, 1, z, err, sizeof err), 0);
    CHECK(g->out == a && g->n == 3 && g->ids[g->n - 1] == fresh);
    /* still decodable: out is a member */
    CHECK_RC(reencode(m, start), 0);
    free(m);
    free(start);
}

/* While a replacement is in flight its shape (out a member, the new replica
 * last) is what every meta leader resumes from: sv_map_move and sv_map_add
 * must not bend it (moving out left it naming no member, a map the decoder
 * refuses; adding made another node the new replica), and a decoded out
 * cannot be the new replica itself. */
static void test_replace_shape(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *before = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    CHECK_RC(sv_map_node_add(m, 7, "z0", "127.0.0.1:7107", err, sizeof err), 0);
    CHECK_RC(sv_map_node_add(m, 8, "z1", "127.0.0.1:7108", err, sizeof err), 0);
    CHECK_RC(sv_map_node_add(m, 9, "z2", "127.0.0.1:7109", err, sizeof err), 0);
    const struct sv_map_group *g = &m->groups[1];
    uint64_t out = g->ids[0], fresh = zone_mate(m, 1, out);
    CHECK_RC(sv_map_replace(m, 1, out, fresh, err, sizeof err), 0);
    *before = *m;
    uint64_t spare = zone_mate(m, 1, out); /* out's zone still has one free */
    CHECK(spare != 0);
    CHECK_RC(sv_map_move(m, 1, out, spare, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_MSG(strstr(err, "in progress") != NULL, "%s", err);
    CHECK_RC(sv_map_move(m, 1, fresh, spare, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_RC(sv_map_add(m, 1, spare, err, sizeof err), SV_MAP_E_BAD_MOVE);
    CHECK_MSG(strstr(err, "in progress") != NULL, "%s", err);
    CHECK(maps_eq(m, before));
    CHECK_RC(reencode(m, before), 0);
    /* out naming the new replica (the set's last) is not a replacement */
    m->groups[1].out = fresh;
    CHECK_RC(reencode(m, before), SV_MAP_E_MALFORMED);
    free(m);
    free(before);
}

/* ---- nodes --------------------------------------------------------------- */

static void test_node_add(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new(), *before = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    *before = *m;
    CHECK_RC(sv_map_node_add(m, 0, "z0", "127.0.0.1:7200", err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(strstr(err, "not a node id") != NULL);
    CHECK_RC(sv_map_node_add(m, 3, "z0", "127.0.0.1:7200", err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(strstr(err, "taken") != NULL);
    CHECK_RC(sv_map_node_add(m, 7, "z0", "127.0.0.1:7102", err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK_MSG(strstr(err, "node 2's") != NULL, "%s", err);
    CHECK_RC(sv_map_node_add(m, 7, "", "127.0.0.1:7200", err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(strstr(err, "zone") != NULL);
    CHECK_RC(sv_map_node_add(m, 7, "z0", "", err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(!memcmp(m, before, sizeof *m));
    /* Added: up, at the end, epoch + 1, in no group. */
    CHECK_RC(sv_map_node_add(m, 7, "z3", "127.0.0.1:7200", err, sizeof err), 0);
    CHECK(m->n_nodes == 7 && m->epoch == 2 && m->nodes[6].id == 7);
    CHECK(sv_map_node(m, 7)->state == SV_MAP_UP && !strcmp(sv_map_node(m, 7)->zone, "z3"));
    CHECK(sv_map_node_replicas(m, 7) == 0);
    /* Full map: refused, unchanged. */
    for (uint64_t id = 8; m->n_nodes < SV_CFG_NODES_MAX; id++) {
        char addr[32];
        snprintf(addr, sizeof addr, "10.1.0.%u:7100", (unsigned)id);
        CHECK_RC(sv_map_node_add(m, id, "z1", addr, err, sizeof err), 0);
    }
    *before = *m;
    CHECK_RC(sv_map_node_add(m, 1000, "z1", "10.2.0.1:7100", err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(strstr(err, "the most it may") != NULL);
    CHECK(!memcmp(m, before, sizeof *m));
    free(m);
    free(before);
}

static void test_node_state(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    CHECK_RC(sv_map_node_state(m, 99, SV_MAP_DOWN, err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(strstr(err, "not in the map") != NULL && m->epoch == 1);
    CHECK_RC(sv_map_node_state(m, 2, 0, err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK_RC(sv_map_node_state(m, 2, SV_MAP_REMOVED + 1, err, sizeof err), SV_MAP_E_BAD_NODE);
    CHECK(sv_map_node(m, 2)->state == SV_MAP_UP && m->epoch == 1);
    /* Unchanged: the epoch stays (no map change to record). */
    CHECK_RC(sv_map_node_state(m, 2, SV_MAP_UP, err, sizeof err), 0);
    CHECK(m->epoch == 1);
    CHECK_RC(sv_map_node_state(m, 2, SV_MAP_DOWN, err, sizeof err), 0);
    CHECK(m->epoch == 2 && sv_map_node(m, 2)->state == SV_MAP_DOWN);
    CHECK_RC(sv_map_node_state(m, 2, SV_MAP_DOWN, err, sizeof err), 0);
    CHECK(m->epoch == 2);
    CHECK_RC(sv_map_node_state(m, 2, SV_MAP_EVICTED, err, sizeof err), 0);
    CHECK(m->epoch == 3 && sv_map_node(m, 2)->state == SV_MAP_EVICTED);
    CHECK(sv_map_node(m, 1)->state == SV_MAP_UP && sv_map_node(m, 3)->state == SV_MAP_UP);
    free(m);
}

static void test_node_replicas(void)
{
    struct sv_cfg c;
    make_cfg(&c);
    struct sv_map *m = map_new();
    sv_map_from_cfg(&c, m);
    char err[256];
    uint32_t total = 0;
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        uint32_t n = 0;
        for (uint64_t g = 0; g <= m->n_shards; g++)
            n += sv_map_holds(m, g, m->nodes[i].id);
        CHECK(sv_map_node_replicas(m, m->nodes[i].id) == n);
        total += n;
    }
    CHECK(total == (m->n_shards + 1) * 3);
    CHECK(sv_map_node_replicas(m, 99) == 0);
    /* A replacement counts for both nodes until it ends. */
    uint64_t from = m->groups[1].ids[0], to = zone_mate(m, 1, from);
    uint32_t f = sv_map_node_replicas(m, from), t = sv_map_node_replicas(m, to);
    CHECK_RC(sv_map_replace(m, 1, from, to, err, sizeof err), 0);
    CHECK(sv_map_node_replicas(m, from) == f && sv_map_node_replicas(m, to) == t + 1);
    CHECK_RC(sv_map_remove(m, 1, from, err, sizeof err), 0);
    CHECK(sv_map_node_replicas(m, from) == f - 1 && sv_map_node_replicas(m, to) == t + 1);
    free(m);
}

static const struct sv_test tests[] = {
    {"bootstrap", test_bootstrap},
    {"codec", test_codec},
    {"move", test_move},
    {"add and remove", test_add_remove},
    {"codec svmap3", test_codec_v3},
    {"codec svmap2", test_codec_v2},
    {"codec svmap3 refused", test_codec_v3_refused},
    {"replace", test_replace},
    {"replace ends", test_replace_end},
    {"replace shape", test_replace_shape},
    {"node add", test_node_add},
    {"node state", test_node_state},
    {"node replicas", test_node_replicas},
};

const struct sv_test_suite sv_test_suite = {
    .name = "map-test",
    SV_TEST_TABLE(tests),
};
