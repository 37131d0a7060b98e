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

static const struct sv_test tests[] = {
    {"bootstrap", test_bootstrap},
    {"codec", test_codec},
    {"move", test_move},
    {"add and remove", test_add_remove},
};

const struct sv_test_suite sv_test_suite = {
    .name = "map-test",
    SV_TEST_TABLE(tests),
};
