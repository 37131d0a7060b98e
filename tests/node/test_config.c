/* config-test: node/src/config.c, cluster.conf parsing — the directives,
 * node lines with and without their metrics address (default: the node's
 * port + 1000 on its host), the checks on addresses and ports, errors that
 * name the line, and a cluster map that metrics addresses do not change.
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

static const struct sv_test tests[] = {
    {"defaults", test_defaults},       {"explicit", test_explicit},
    {"bad_metrics", test_bad_metrics}, {"clashes", test_clashes},
    {"node_lines", test_node_lines},   {"map_ignores_metrics", test_map_ignores_metrics},
};
const struct sv_test_suite sv_test_suite = {
    .name = "config-test",
    SV_TEST_TABLE(tests),
    .timeout_s = 60,
};
