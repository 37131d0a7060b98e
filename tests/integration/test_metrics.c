/* Integration: every node of a real 3-node cluster serves /metrics and
 * /health on its metrics address (its port + 1000). Two scrapes around a
 * load of puts (small and chunked), gets, stats and STATUS requests: request
 * counters, latency histograms, persist syncs, applies, bytes and applied
 * indexes move; every group a node hosts has its series; promtool accepts a
 * real scrape; svctl status names each node's metrics address. A node
 * stopped with SIGTERM closes its endpoint, and one whose metrics port is
 * taken does not start and names the address. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    NODES = 3,
    BASE_PORT = 17450, /* nodes on 17451..17453, metrics on 18451..18453 */
    SMALL_PUTS = 60,
    GROUPS_MAX = 64,
};

static struct it_cluster cl_;

/* node id's exposition (NULL after a failed CHECK). */
static char *scrape(int id)
{
    char *body = NULL;
    int st = it_http_get(it_metrics_port(&cl_, id), "/metrics", &body);
    CHECK(st == 200 && body != NULL);
    if (st != 200) {
        fprintf(stderr, "scrape of node %d: status %d\n", id, st);
        free(body);
        return NULL;
    }
    return body;
}

/* The groups each node hosts, from STATUS (group s + 1 for shard s) and the
 * meta group 0 (every node of this 3-zone cluster). */
static int hosted(struct sv_client *c, int id, uint64_t *groups)
{
    struct sv_cluster_status *st = NULL;
    int n = 0;
    CHECK_RC(sv_client_status(c, &st), SV_OK);
    groups[n++] = 0;
    for (size_t i = 0; st && i < st->n_shards; i++)
        for (size_t k = 0; k < st->shards[i].n_replicas; k++)
            if (st->shards[i].replicas[k].node == (uint64_t)id && n < GROUPS_MAX)
                groups[n++] = st->shards[i].id + 1;
    sv_client_status_free(st);
    return n;
}

static double metric_of(const char *expo, const char *name, uint64_t group)
{
    char series[128];
    snprintf(series, sizeof series, "%s{group=\"%" PRIu64 "\"}", name, group);
    return it_metric(expo, series);
}

static void load(struct sv_client *c)
{
    char key[32], val[512];
    for (int i = 0; i < SMALL_PUTS; i++) {
        snprintf(key, sizeof key, "small-%03d", i);
        it_fill(val, sizeof val, (uint64_t)i);
        CHECK_RC(sv_client_put(c, "m", key, val, sizeof val, SV_IF_ANY, NULL), SV_OK);
    }
    for (int i = 0; i < SMALL_PUTS; i += 6) {
        snprintf(key, sizeof key, "small-%03d", i);
        void *back = NULL;
        size_t len = 0;
        CHECK_RC(sv_client_get(c, "m", key, SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
        CHECK(len == sizeof val);
        free(back);
        struct sv_stat st;
        CHECK_RC(sv_client_stat(c, "m", key, SV_LINEARIZABLE, &st), SV_OK);
    }
    void *none = NULL;
    size_t nlen = 0;
    CHECK_RC(sv_client_get(c, "m", "no-such-key", SV_LINEARIZABLE, &none, &nlen, NULL),
             SV_E_NOT_FOUND);
    free(none);
    /* Three chunks: PUT_BEGIN, PUT_CHUNK x 3, PUT_COMMIT, then GET_CHUNK. */
    size_t big = (3u << 20) - 100;
    uint8_t *data = malloc(big);
    it_fill(data, big, 7);
    CHECK_RC(sv_client_put(c, "m", "big", data, big, SV_IF_ANY, NULL), SV_OK);
    void *back = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "m", "big", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == big && back && !memcmp(back, data, big));
    free(back);
    free(data);
}

/* Every check that compares a node's two scrapes. */
static void compare(int id, const char *a, const char *b, const uint64_t *groups, int n_groups)
{
    fprintf(stderr, "node %d: %.0f requests, %.0f persist syncs, %.0f applies\n", id,
            it_metric_sum(b, "sv_requests_total{"),
            it_metric(b, "sv_persist_sync_duration_seconds_count"),
            it_metric(b, "sv_apply_duration_seconds_count"));
    /* STATUS reached every node (sv_client_status in hosted()). */
    CHECK(it_metric_sum(b, "sv_requests_total{") > it_metric_sum(a, "sv_requests_total{"));
    CHECK(it_metric_sum(b, "sv_requests_total{type=\"status\",") >
          it_metric_sum(a, "sv_requests_total{type=\"status\","));
    CHECK(it_metric_sum(b, "sv_request_duration_seconds_count{") >
          it_metric_sum(a, "sv_request_duration_seconds_count{"));
    /* Every node holds a replica of every shard: it synced and applied the puts. */
    CHECK(it_metric(b, "sv_persist_sync_duration_seconds_count") >
          it_metric(a, "sv_persist_sync_duration_seconds_count"));
    CHECK(it_metric(b, "sv_persist_job_entries_count") >
          it_metric(a, "sv_persist_job_entries_count"));
    CHECK(it_metric(b, "sv_persist_job_entries_sum") > it_metric(a, "sv_persist_job_entries_sum"));
    CHECK(it_metric(b, "sv_apply_duration_seconds_count") >
          it_metric(a, "sv_apply_duration_seconds_count"));
    CHECK(it_metric(b, "sv_seg_bytes{state=\"live\"}") >
          it_metric(a, "sv_seg_bytes{state=\"live\"}"));
    static const char *const bytes[] = {
        "sv_transport_body_bytes_total{kind=\"request\",direction=\"in\"}",
        "sv_transport_body_bytes_total{kind=\"request\",direction=\"out\"}",
        "sv_transport_body_bytes_total{kind=\"raft\",direction=\"in\"}",
        "sv_transport_body_bytes_total{kind=\"raft\",direction=\"out\"}",
    };
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++)
        CHECK(it_metric(b, bytes[i]) > it_metric(a, bytes[i]));
    /* Per group: every series of every hosted group, applied indexes moved. */
    static const char *const per_group[] = {"sv_raft_term", "sv_raft_leader",
                                            "sv_raft_commit_index", "sv_raft_applied_index",
                                            "sv_raft_leader_changes_total"};
    double applied_a = 0, applied_b = 0;
    for (int g = 0; g < n_groups; g++) {
        for (size_t k = 0; k < sizeof per_group / sizeof per_group[0]; k++) {
            double v = metric_of(b, per_group[k], groups[g]);
            CHECK(!isnan(v));
            if (isnan(v))
                fprintf(stderr, "node %d: no %s{group=\"%" PRIu64 "\"}\n", id, per_group[k],
                        groups[g]);
        }
        CHECK(metric_of(b, "sv_raft_term", groups[g]) >= 1);
        CHECK(metric_of(b, "sv_raft_leader_changes_total", groups[g]) >= 1);
        CHECK(metric_of(b, "sv_raft_commit_index", groups[g]) >=
              metric_of(b, "sv_raft_applied_index", groups[g]));
        applied_a += metric_of(a, "sv_raft_applied_index", groups[g]);
        applied_b += metric_of(b, "sv_raft_applied_index", groups[g]);
    }
    CHECK(applied_b > applied_a);
    /* No series for a group the node does not host. */
    CHECK(it_metric_sum(b, "sv_raft_term{") > 0);
    int series = 0;
    for (const char *p = strstr(b, "\nsv_raft_term{"); p; p = strstr(p + 1, "\nsv_raft_term{"))
        series++;
    CHECK(series == n_groups);
    /* The node's own values. */
    CHECK(it_metric(b, "sv_map_epoch") == 1);
    CHECK(it_metric(b, "sv_apply_paused") == 0);
    CHECK(it_metric(b, "sv_disk_free_bytes") > 0);
    CHECK(it_metric(b, "sv_transport_connections") >= 2); /* the two other nodes at least */
    CHECK(strstr(b, "\nsv_build_info{version=\"") != NULL);
    CHECK(it_metric_sum(b, "sv_build_info{") == 1);
    CHECK(it_metric_sum(b, "sv_seg_compactions_total{") >= 1); /* one at start */
}

/* The cluster as a whole: each request is answered by one node. */
static void compare_cluster(char **a, char **b)
{
    double d_put = 0, d_put_lat = 0, d_nf = 0, d_chunk = 0, d_commit = 0, d_get_chunk = 0,
           d_stat = 0;
#define DELTA(i, name) (it_metric_sum(b[i], name) - it_metric_sum(a[i], name))
    for (int i = 0; i < NODES; i++) {
        if (!a[i] || !b[i])
            return;
        d_put += DELTA(i, "sv_requests_total{type=\"put\",result=\"ok\"}");
        d_put_lat += DELTA(i, "sv_request_duration_seconds_count{type=\"put\"}");
        d_nf += DELTA(i, "sv_requests_total{type=\"get\",result=\"not_found\"}");
        d_chunk += DELTA(i, "sv_requests_total{type=\"put_chunk\",result=\"ok\"}");
        d_commit += DELTA(i, "sv_requests_total{type=\"put_commit\",result=\"ok\"}");
        d_get_chunk += DELTA(i, "sv_requests_total{type=\"get_chunk\",result=\"ok\"}");
        d_stat += DELTA(i, "sv_requests_total{type=\"stat\",result=\"ok\"}");
    }
#undef DELTA
    fprintf(stderr, "cluster: %.0f puts ok, %.0f timed, %.0f chunks, %.0f not found\n", d_put,
            d_put_lat, d_chunk, d_nf);
    CHECK(d_put >= SMALL_PUTS);
    CHECK(d_put_lat >= SMALL_PUTS);
    CHECK(d_nf >= 1);
    CHECK(d_chunk >= 3);
    CHECK(d_commit >= 1);
    CHECK(d_get_chunk >= 2);
    CHECK(d_stat >= SMALL_PUTS / 6);
}

/* Listen on 127.0.0.1:port (what a process in the way would do). */
static int occupy(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4)) {
        perror("occupy");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void stop_and_restart(void)
{
    int port = it_metrics_port(&cl_, 3);
    pid_t pid = it_pid(&cl_, 3);
    CHECK(pid > 0);
    CHECK(it_http_get(port, "/health", NULL) == 200);
    if (pid > 0)
        kill(pid, SIGTERM);
    uint64_t deadline = it_now_ms() + 20000;
    while (!it_log_has(&cl_, 3, " INFO stopped") && it_now_ms() < deadline)
        usleep(100 * 1000);
    CHECK(it_log_has(&cl_, 3, " INFO stopped")); /* the endpoint's stop did not hang */
    deadline = it_now_ms() + 5000;
    int st;
    while ((st = it_http_get(port, "/health", NULL)) != -ECONNREFUSED && it_now_ms() < deadline)
        usleep(100 * 1000);
    CHECK(st == -ECONNREFUSED);

    int fd = occupy(port);
    CHECK(fd >= 0);
    int rc = it_sh("'%s/svd' --config '%s/cluster.conf' --id 3 2>'%s/node3/taken.log'", cl_.bin,
                   cl_.dir, cl_.dir);
    CHECK(rc == 1);
    CHECK(it_sh("grep -q -F 'cannot start: metrics endpoint: listen on 127.0.0.1:%d: address "
                "already in use' '%s/node3/taken.log'",
                port, cl_.dir) == 0);
    if (fd >= 0)
        close(fd);
    /* It starts once the port is free (its node port was let go too). */
    it_start(&cl_, 3);
    char *body = NULL;
    CHECK(it_http_get(port, "/health", &body) == 200);
    CHECK(body && !strcmp(body, "ok\n"));
    free(body);
    char *m = scrape(3);
    CHECK(m && !isnan(metric_of(m, "sv_raft_term", 0)));
    free(m);
}

static struct sv_client *client_;
static char *a_[NODES], *b_[NODES];

static int set_up(void)
{
    it_up(&cl_, it_bin_dir(), "metrics", NODES, 3, BASE_PORT);
    client_ = it_client(&cl_, 30000);
    return 0;
}

static void tear_down(void)
{
    for (int i = 0; i < NODES; i++) {
        free(a_[i]);
        free(b_[i]);
    }
    sv_client_close(client_);
    it_down(&cl_);
}

static void test_health(void)
{
    for (int id = 1; id <= NODES; id++) {
        char *body = NULL;
        CHECK(it_http_get(it_metrics_port(&cl_, id), "/health", &body) == 200);
        CHECK(body && !strcmp(body, "ok\n"));
        free(body);
    }
}

static void test_status_addresses(void)
{
    for (int id = 1; id <= NODES; id++) {
        CHECK(it_sh("'%s/svctl' --endpoints '%s' --ca '%s' -o json status | grep -q -F "
                    "'\"id\":%d,\"address\":\"127.0.0.1:%d\",\"zone\":\"zone-%c\",\"state\":"
                    "\"up\",\"metrics\":\"127.0.0.1:%d\",'",
                    cl_.bin, cl_.endpoints, cl_.ca, id, BASE_PORT + id, 'a' + id - 1,
                    it_metrics_port(&cl_, id)) == 0);
        CHECK(it_sh("'%s/svctl' --endpoints '%s' --ca '%s' status | grep -q -E "
                    "'^%d +127\\.0\\.0\\.1:%d +zone-%c +up +[0-9]+ +[0-9]+ +127\\.0\\.0\\.1:%d$'",
                    cl_.bin, cl_.endpoints, cl_.ca, id, BASE_PORT + id, 'a' + id - 1,
                    it_metrics_port(&cl_, id)) == 0);
    }
    CHECK(it_sh("'%s/svctl' --endpoints '%s' --ca '%s' status | grep -q -E "
                "'^NODE +ADDRESS +ZONE +STATE +REPLICAS +LEADERS +METRICS$'",
                cl_.bin, cl_.endpoints, cl_.ca) == 0);
}

/* Every group in groups[0..n) has seen a leader in scrape m (a group that
 * was still electing when the cluster came up learns its leader a little
 * later). */
static bool leaders_known(const char *m, const uint64_t *groups, int n)
{
    for (int g = 0; g < n; g++)
        if (!(metric_of(m, "sv_raft_leader_changes_total", groups[g]) >= 1))
            return false;
    return true;
}

static void test_scrapes(void)
{
    uint64_t groups[NODES][GROUPS_MAX];
    int n_groups[NODES];
    for (int i = 0; i < NODES; i++)
        a_[i] = scrape(i + 1);
    load(client_);
    for (int i = 0; i < NODES; i++)
        n_groups[i] = hosted(client_, i + 1, groups[i]);
    /* Followers apply what the leaders acknowledged within a heartbeat or
     * two; wait for every node's segment store to show the chunks, and for
     * every group to have a known leader there. */
    uint64_t deadline = it_now_ms() + 10000;
    for (int i = 0; i < NODES; i++) {
        for (;;) {
            free(b_[i]);
            b_[i] = scrape(i + 1);
            if (!b_[i] || !a_[i] || it_now_ms() > deadline ||
                (it_metric(b_[i], "sv_seg_bytes{state=\"live\"}") >= 3 << 20 &&
                 leaders_known(b_[i], groups[i], n_groups[i])))
                break;
            usleep(100 * 1000);
        }
    }
    for (int i = 0; i < NODES; i++)
        if (a_[i] && b_[i])
            compare(i + 1, a_[i], b_[i], groups[i], n_groups[i]);
    compare_cluster(a_, b_);
}

static void test_promtool(void)
{
    CHECK(it_sh("command -v promtool >/dev/null") == 0); /* deploy/lib/deps.sh: prometheus */
    for (int i = 0; i < NODES; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/scrape-%d.txt", cl_.dir, i + 1);
        FILE *f = fopen(path, "w");
        CHECK(f && b_[i] && fputs(b_[i], f) >= 0);
        if (f)
            fclose(f);
        CHECK(it_sh("promtool check metrics < '%s'", path) == 0);
    }
}

static void test_other_paths(void)
{
    CHECK(it_http_get(it_metrics_port(&cl_, 1), "/nope", NULL) == 404);
}

static const struct sv_test tests[] = {
    {"health", test_health},
    {"svctl status shows the metrics addresses", test_status_addresses},
    {"scrapes before and after a load", test_scrapes},
    {"promtool check metrics on a real scrape", test_promtool},
    {"other paths", test_other_paths},
    {"SIGTERM closes the endpoint; a taken metrics port fails the start", stop_and_restart},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-metrics",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
