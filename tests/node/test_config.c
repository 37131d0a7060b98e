/* config-test: node/src/config.c, cluster.conf parsing — the directives,
 * node lines with and without their metrics address (default: the node's
 * port + 1000 on its host), the checks on addresses and ports, errors that
 * name the line, a cluster map that metrics addresses do not change, and
 * the two-site directives (site, peer_site, peer_node) with the certificate
 * names they give.
 * Usage: config-test [NAME...] (no name: every test). Exit 1 on any failure. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#include "check.h"

static const char HEAD[] = "ca /x/ca.pem\nmaster_key /x/master.key\ndata_key /x/data.key\n"
                           "replicas 1\n";

static char path[64];
static char err[1024];
static struct sv_cfg cfg;

/* Load HEAD followed by body; returns sv_cfg_load's result. */
static int load(const char *body)
{
    snprintf(path, sizeof path, "/tmp/sv-config-test.XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(HEAD, f);
    fputs(body, f);
    fclose(f);
    err[0] = 0;
    int rc = sv_cfg_load(path, &cfg, err, sizeof err);
    unlink(path);
    return rc;
}

/* body fails to load with -EINVAL and an error naming line and holding why. */
static void check_refused(const char *body, unsigned line, const char *why, int at)
{
    int rc = load(body);
    char want[96];
    snprintf(want, sizeof want, "%s:%u: ", path, line);
    sv_check_count();
    if (rc != -EINVAL || strncmp(err, want, strlen(want)) || !strstr(err, why)) {
        char msg[1400];
        snprintf(msg, sizeof msg, "line %d: rc %d, error \"%s\"; wanted line %u and \"%s\"", at, rc,
                 err, line, why);
        sv_check_fail(__FILE__, at, "%s", msg);
    }
}
#define CHECK_REFUSED(body, line, why) check_refused((body), (line), (why), __LINE__)

/* Lines of HEAD: node lines start at line 5. */
enum { L1 = 5 };

static void test_defaults(void)
{
    CHECK(load("node 1 zone-a 127.0.0.1:7101 /d/1\n"
               "node 2 zone-b 127.0.0.1:7102 /d/2   # a comment\n"
               "node 3 zone-c localhost:7103 /d/3\n") == 0);
    CHECK(cfg.n_nodes == 3 && cfg.n_zones == 3);
    CHECK(!strcmp(cfg.nodes[0].metrics, "127.0.0.1:8101"));
    CHECK(!strcmp(cfg.nodes[1].metrics, "127.0.0.1:8102"));
    CHECK(!strcmp(cfg.nodes[2].metrics, "localhost:8103"));
    CHECK(!strcmp(cfg.nodes[2].addr, "localhost:7103"));
    CHECK(!strcmp(cfg.nodes[2].dir, "/d/3"));
    CHECK(cfg.n_shards == 16 && cfg.replicas == 1 && cfg.upload_ttl_s == 600);
    CHECK(cfg.max_conns == 4096 && cfg.max_conns_per_source == 1024 && cfg.idle_timeout_s == 120);
    /* The largest port with a default: 64535 + 1000 = 65535. */
    CHECK(load("node 1 zone-a 10.0.0.1:64535 /d/1\n") == 0);
    CHECK(!strcmp(cfg.nodes[0].metrics, "10.0.0.1:65535"));
}

static void test_explicit(void)
{
    CHECK(load("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:9100\n"
               "node 2 zone-b 127.0.0.1:7102 /d/2\n"
               "node 3 zone-c 127.0.0.1:7103 /d/3 metrics 0.0.0.0:9300\n"
               "node 4 zone-a 127.0.0.1:64600 /d/4 metrics localhost:9400\n") == 0);
    CHECK(!strcmp(cfg.nodes[0].metrics, "127.0.0.1:9100"));
    CHECK(!strcmp(cfg.nodes[1].metrics, "127.0.0.1:8102"));
    CHECK(!strcmp(cfg.nodes[2].metrics, "0.0.0.0:9300"));
    CHECK(!strcmp(cfg.nodes[3].metrics, "localhost:9400"));
    /* Nodes on different hosts may use the same ports. */
    CHECK(load("node 1 zone-a 10.0.0.1:7101 /d/1 metrics 10.0.0.1:9000\n"
               "node 2 zone-b 10.0.0.2:7101 /d/2 metrics 10.0.0.2:9000\n"
               "node 3 zone-c 10.0.0.3:7101 /d/3\n"
               "node 4 zone-c 10.0.0.4:7101 /d/4\n") == 0);
    CHECK(!strcmp(cfg.nodes[3].metrics, "10.0.0.4:8101"));
}

static void test_bad_metrics(void)
{
    const char *why = "metrics: expected A.B.C.D:PORT or localhost:PORT";
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:0\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:65536\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics :9000\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:+90\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:90x\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics example.com:9000\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 1.2.3:9000\n", L1, why);
    /* The attribute's shape. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics\n", L1, "wrong arguments");
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metric 127.0.0.1:9000\n", L1,
                  "wrong arguments");
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:9000 extra\n", L1,
                  "wrong arguments");
}

static void test_limits(void)
{
    CHECK(load("max_connections 512\nmax_connections_per_source 1\nidle_timeout_s 86400\n"
               "node 1 zone-a 127.0.0.1:7101 /d/1\n") == 0);
    CHECK(cfg.max_conns == 512 && cfg.max_conns_per_source == 1 && cfg.idle_timeout_s == 86400);
    CHECK_REFUSED("max_connections 511\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1,
                  "max_connections: expected 512..4096");
    CHECK_REFUSED("max_connections 4097\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1,
                  "max_connections: expected 512..4096");
    CHECK_REFUSED("max_connections_per_source 0\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1,
                  "max_connections_per_source: expected 1..4096");
    CHECK_REFUSED("idle_timeout_s 9\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1,
                  "idle_timeout_s: expected 10..86400");
}

static void test_clashes(void)
{
    /* Two nodes, one metrics address. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:9000\n"
                  "node 2 zone-b 127.0.0.1:7102 /d/2 metrics 127.0.0.1:9000\n",
                  L1, "metrics address 127.0.0.1:9000 is also the metrics address of node 2");
    /* localhost is 127.0.0.1. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics localhost:9000\n"
                  "node 2 zone-b 127.0.0.1:7102 /d/2 metrics 127.0.0.1:9000\n",
                  L1, "is also the metrics address of node 2");
    /* A default that lands on another node's address: node 1's 8101. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\n"
                  "node 2 zone-b 127.0.0.1:8101 /d/2 metrics 127.0.0.1:9000\n",
                  L1, "node 1: metrics address 127.0.0.1:8101 is also the address of node 2");
    /* A default that lands on another node's explicit metrics address. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:8102\n"
                  "node 2 zone-b 127.0.0.1:7102 /d/2\n",
                  L1, "is also the metrics address of node 2");
    /* The node's own address, directly or through the wildcard. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:7101\n", L1,
                  "is also the address of node 1");
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\n"
                  "node 2 zone-b 127.0.0.1:7102 /d/2 metrics 0.0.0.0:7102\n",
                  L1 + 1, "node 2: metrics address 0.0.0.0:7102 takes the node's own port");
    /* The error names the line of the node at fault. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\n"
                  "\n# comment\n"
                  "node 2 zone-b 127.0.0.1:7102 /d/2 metrics 127.0.0.1:7101\n",
                  L1 + 3, "node 2: metrics address 127.0.0.1:7101 is also the address of node 1");
    /* A default past 65535 needs an explicit address. */
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\n"
                  "node 2 zone-b 127.0.0.1:64536 /d/2\n",
                  L1 + 1, "node 2: its default metrics port 65536 is above 65535");
}

static void test_node_lines(void)
{
    const char *why = "node: expected ID ZONE HOST:PORT DIR [metrics HOST:PORT]";
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:0 /d/1\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:65536 /d/1\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1 /d/1\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:x /d/1\n", L1, why);
    CHECK_REFUSED("node 0 zone-a 127.0.0.1:7101 /d/1\n", L1, why);
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101\n", L1, "wrong arguments");
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\nnode 1 zone-b 127.0.0.1:7102 /d/2\n", L1 + 1,
                  "duplicate id or address");
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\nnode 2 zone-b localhost:7101 /d/2\n", L1 + 1,
                  "duplicate id or address");
    CHECK_REFUSED("node 1 zone-a 127.0.0.1:7101 /d/1\nbogus 1\n", L1 + 1, "unknown directive");
    CHECK_REFUSED("shards 0\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1, "shards: expected 1..4096");
    CHECK_REFUSED("replicas 2\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1 + 1,
                  "replicas exceed the number of zones");
}

static void test_map_ignores_metrics(void)
{
    /* The recorded cluster map compares nodes' files: a metrics address is
     * the node's own business and not part of it. */
    uint8_t *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    CHECK(load("node 1 zone-a 127.0.0.1:7101 /d/1\nnode 2 zone-b 127.0.0.1:7102 /d/2\n") == 0);
    CHECK(sv_cfg_map_encode(&cfg, &a, &alen) == 0);
    CHECK(load("node 1 zone-a 127.0.0.1:7101 /d/1 metrics 127.0.0.1:9001\n"
               "node 2 zone-b 127.0.0.1:7102 /d/2 metrics 127.0.0.1:9002\n") == 0);
    CHECK(sv_cfg_map_encode(&cfg, &b, &blen) == 0);
    CHECK(a && b && alen == blen && !memcmp(a, b, alen));
    free(a);
    free(b);
}

/* ---- sites: site, peer_site, peer_node; certificate names -------------- */

static const char NODE1[] = "node 1 zone-a 127.0.0.1:7101 /d/1\n";

static void test_site_defaults(void)
{
    memset(&cfg, 0x5a, sizeof cfg);
    CHECK(load(NODE1) == 0);
    CHECK(!strcmp(cfg.site, "primary"));
    CHECK(cfg.site_role == SV_SITE_PRIMARY);
    CHECK(cfg.peer_site[0] == 0 && cfg.n_peers == 0);
}

static void test_site_parsed(void)
{
    CHECK(load("site dr standby\n"
               "peer_site primary\n"
               "peer_node 1 10.0.0.1:7101\n"
               "peer_node 7 localhost:7102   # a comment\n"
               "peer_node 4294967295 db-1.example.com:65535\n"
               "node 1 zone-a 127.0.0.1:7101 /d/1\n") == 0);
    CHECK(!strcmp(cfg.site, "dr") && cfg.site_role == SV_SITE_STANDBY);
    CHECK(!strcmp(cfg.peer_site, "primary"));
    CHECK_EQ_U64(cfg.n_peers, 3);
    CHECK(cfg.peers[0].id == 1 && !strcmp(cfg.peers[0].addr, "10.0.0.1:7101"));
    CHECK(cfg.peers[1].id == 7 && !strcmp(cfg.peers[1].addr, "localhost:7102"));
    CHECK(cfg.peers[2].id == UINT32_MAX && !strcmp(cfg.peers[2].addr, "db-1.example.com:65535"));
    /* A primary site of another name, with its peer; the directives in any
     * order, before or after the nodes. */
    CHECK(load("node 1 zone-a 127.0.0.1:7101 /d/1\n"
               "peer_node 2 10.1.0.2:7101\n"
               "site west-2 primary\n"
               "peer_site east-1\n") == 0);
    CHECK(!strcmp(cfg.site, "west-2") && cfg.site_role == SV_SITE_PRIMARY);
    CHECK(!strcmp(cfg.peer_site, "east-1") && cfg.n_peers == 1 && cfg.peers[0].id == 2);
    /* A primary needs no peer; a peer site may be named without nodes. */
    CHECK(load("site east-1 primary\npeer_site west-2\nnode 1 zone-a 127.0.0.1:7101 /d/1\n") == 0);
    CHECK(!strcmp(cfg.site, "east-1") && !strcmp(cfg.peer_site, "west-2") && cfg.n_peers == 0);
    /* Names: 1..31 bytes of [a-z0-9-]. */
    CHECK(load("site a primary\nnode 1 zone-a 127.0.0.1:7101 /d/1\n") == 0);
    CHECK(!strcmp(cfg.site, "a"));
    CHECK(load("site abcdefghijklmnopqrstuvwxyz-0123 primary\n"
               "node 1 zone-a 127.0.0.1:7101 /d/1\n") == 0); /* 31 bytes */
    CHECK(!strcmp(cfg.site, "abcdefghijklmnopqrstuvwxyz-0123"));
    /* 64 peer nodes at most. */
    static char body[64 * 40 + 256];
    size_t n = (size_t)snprintf(body, sizeof body, "peer_site dr\n");
    for (int i = 1; i <= 64; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "peer_node %d 10.2.0.%d:7101\n", i, i);
    snprintf(body + n, sizeof body - n, "%s", NODE1);
    CHECK(load(body) == 0 && cfg.n_peers == 64 && cfg.peers[63].id == 64);
    snprintf(body + n, sizeof body - n, "peer_node 65 10.2.1.1:7101\n%s", NODE1);
    CHECK_REFUSED(body, L1 + 65, "too many peer nodes (64 at most)");
}

static void test_site_valid(void)
{
    CHECK(sv_cfg_site_valid("primary") && sv_cfg_site_valid("dr") && sv_cfg_site_valid("a-1"));
    CHECK(sv_cfg_site_valid("0") && sv_cfg_site_valid("-"));
    CHECK(sv_cfg_site_valid("abcdefghijklmnopqrstuvwxyz-0123"));   /* 31 */
    CHECK(!sv_cfg_site_valid("abcdefghijklmnopqrstuvwxyz-01234")); /* 32 */
    const char *bad[] = {"", "DR", "Dr", "d_r", "d.r", "d r", "dr@", "d/r", "dr\t", "dr\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(!sv_cfg_site_valid(bad[i]), "\"%s\" taken", bad[i]);
}

static void test_site_errors(void)
{
    const char *why = "site: expected NAME ([a-z0-9-], 1..31 bytes) primary|standby";
    CHECK_REFUSED("site DR primary\n", L1, why);
    CHECK_REFUSED("site d_r primary\n", L1, why);
    CHECK_REFUSED("site d.r primary\n", L1, why);
    CHECK_REFUSED("site abcdefghijklmnopqrstuvwxyz-01234 primary\n", L1, why); /* 32 bytes */
    CHECK_REFUSED("site dr backup\n", L1, why);
    CHECK_REFUSED("site dr Standby\n", L1, why);
    CHECK_REFUSED("site dr\n", L1, "wrong arguments");
    CHECK_REFUSED("site dr standby now\n", L1, "wrong arguments");
    const char *pwhy = "peer_site: expected NAME ([a-z0-9-], 1..31 bytes)";
    CHECK_REFUSED("peer_site Primary\n", L1, pwhy);
    CHECK_REFUSED("peer_site abcdefghijklmnopqrstuvwxyz-01234\n", L1, pwhy);
    CHECK_REFUSED("peer_site\n", L1, "wrong arguments");
    CHECK_REFUSED("peer_site a b\n", L1, "wrong arguments");
    /* peer_node: ID 1..2^32-1, HOST:PORT with a port 1..65535. */
    const char *nwhy = "peer_node: expected ID HOST:PORT, port 1..65535";
    const char *addrs[] = {"peer_node 1 10.0.0.1\n",
                           "peer_node 1 10.0.0.1:0\n",
                           "peer_node 1 10.0.0.1:65536\n",
                           "peer_node 1 10.0.0.1:\n",
                           "peer_node 1 :7101\n",
                           "peer_node 1 10.0.0.1:71x\n",
                           "peer_node 1 10.0.0.1:+71\n",
                           "peer_node 0 10.0.0.1:7101\n",
                           "peer_node x 10.0.0.1:7101\n",
                           "peer_node -1 10.0.0.1:7101\n",
                           "peer_node 4294967296 10.0.0.1:7101\n"};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
        CHECK_REFUSED(addrs[i], L1, nwhy);
    CHECK_REFUSED("peer_node 1 10.0.0.1:7101\npeer_node 1 10.0.0.2:7101\n", L1 + 1,
                  "peer_node: duplicate id or address");
    CHECK_REFUSED("peer_node 1 10.0.0.1:7101\npeer_node 2 10.0.0.1:7101\n", L1 + 1,
                  "peer_node: duplicate id or address");
    CHECK_REFUSED("peer_node 1\n", L1, "wrong arguments");
    CHECK_REFUSED("peer_node 1 10.0.0.1:7101 extra\n", L1, "wrong arguments");
    /* The file as a whole (the error names its last line). */
    CHECK_REFUSED("peer_node 1 10.0.0.1:7101\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1 + 1,
                  "peer_node without peer_site");
    CHECK_REFUSED("site dr standby\npeer_node 1 10.0.0.1:7101\n"
                  "node 1 zone-a 127.0.0.1:7101 /d/1\n",
                  L1 + 2, "peer_node without peer_site");
    CHECK_REFUSED("peer_site primary\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1 + 1,
                  "peer_site names this site");
    CHECK_REFUSED("site dr standby\npeer_site dr\npeer_node 1 10.0.0.1:7101\n"
                  "node 1 zone-a 127.0.0.1:7101 /d/1\n",
                  L1 + 3, "peer_site names this site");
    CHECK_REFUSED("site dr standby\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1 + 1,
                  "a standby site needs peer_site and peer_node lines");
    CHECK_REFUSED("site dr standby\npeer_site primary\nnode 1 zone-a 127.0.0.1:7101 /d/1\n", L1 + 2,
                  "a standby site needs peer_site and peer_node lines");
}

static void test_cert_names(void)
{
    char name[64];
    sv_cfg_cert_name("primary", 3, name, sizeof name);
    CHECK(!strcmp(name, "node-3"));
    sv_cfg_cert_name("dr", 3, name, sizeof name);
    CHECK(!strcmp(name, "node-3@dr"));
    sv_cfg_cert_name("east-1", UINT64_MAX, name, sizeof name);
    CHECK(!strcmp(name, "node-18446744073709551615@east-1"));
    /* Round trips, and a site's name is no other site's. */
    const char *sites[] = {"primary", "dr", "east-1", "abcdefghijklmnopqrstuvwxyz-0123"};
    const uint64_t ids[] = {1, 3, 9, 10, 4294967295u, UINT64_MAX};
    for (size_t s = 0; s < sizeof sites / sizeof sites[0]; s++) {
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
            sv_cfg_cert_name(sites[s], ids[i], name, sizeof name);
            CHECK_MSG(sv_cfg_cert_node(sites[s], name) == ids[i], "%s in %s", name, sites[s]);
            for (size_t o = 0; o < sizeof sites / sizeof sites[0]; o++)
                CHECK_MSG(o == s || sv_cfg_cert_node(sites[o], name) == 0, "%s taken in %s", name,
                          sites[o]);
        }
    }
    /* Strict: nothing but the exact form. */
    static const struct {
        const char *site, *name;
    } bad[] = {
        {"primary", "node-3@dr"}, {"primary", "node-3@primary"},
        {"primary", "node-03"},   {"primary", "node-3x"},
        {"primary", "node-"},     {"primary", "node-0"},
        {"primary", "node-3 "},   {"primary", " node-3"},
        {"primary", "Node-3"},    {"primary", "node3"},
        {"primary", "node-+3"},   {"primary", "node- 3"},
        {"primary", "node--3"},   {"primary", "node-18446744073709551616"}, /* 2^64 */
        {"primary", ""},          {"dr", "node-3"},
        {"dr", "node-3@other"},   {"dr", "node-3@dr "},
        {"dr", "node-3@d"},       {"dr", "node-3@drx"},
        {"dr", "node-3@"},        {"dr", "node-3@@dr"},
        {"dr", "node-03@dr"},     {"dr", "node-0@dr"},
        {"dr", "node-@dr"},       {"dr", "node-3x@dr"},
        {"dr", "node-3@DR"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(sv_cfg_cert_node(bad[i].site, bad[i].name) == 0, "\"%s\" taken in %s",
                  bad[i].name, bad[i].site);
    CHECK(sv_cfg_cert_node("primary", NULL) == 0);
}

static const struct sv_test tests[] = {
    {"defaults", test_defaults},           {"explicit", test_explicit},
    {"bad_metrics", test_bad_metrics},     {"clashes", test_clashes},
    {"node_lines", test_node_lines},       {"map_ignores_metrics", test_map_ignores_metrics},
    {"site_defaults", test_site_defaults}, {"site_parsed", test_site_parsed},
    {"site_valid", test_site_valid},       {"site_errors", test_site_errors},
    {"cert_names", test_cert_names},       {"limits", test_limits},
};
const struct sv_test_suite sv_test_suite = {
    .name = "config-test",
    SV_TEST_TABLE(tests),
    .timeout_s = 60,
};
