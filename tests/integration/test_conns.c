/* Integration: connection limits under a flood of idle connections (node
 * transport.h, "limits"). 3 nodes in 3 zones on 19501..19503.
 *
 * 1. One address (127.0.0.2) opens 5,000 TCP connections to node 1 and
 *    keeps them idle, opening again what the node closes: the node keeps
 *    max_connections_per_source (1,024) of them and refuses the rest at
 *    once. Meanwhile clients (from 127.0.0.1) put and get on every shard,
 *    and node 2, killed and started again, links up with node 1 again:
 *    with node 3 stopped, every write needs both.
 * 2. Five addresses open 800 each: the clients' share of node 1
 *    (max_connections less the 256 kept for nodes) is full. A connection
 *    showing node 2's certificate still gets in and is answered; one
 *    without is closed after its handshake. Once the flood stops, clients
 *    are served again.
 * 3. 4 connections send 2,000 stale GETs each at once: node 1 lets a
 *    connection have 512 waiting, runs 2 reads at a time, queues 1,024 and
 *    answers the rest UNAVAILABLE; writes go on.
 * Node 1's metrics count each refusal by limit. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include "proto.h"
#include "tls.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    BASE_PORT = 19500, /* nodes on 19501..19503, metrics on 20501..20503 */
    KEYS = 16,
    PER_SOURCE = 1024,   /* max_connections_per_source's default */
    CLIENT_SHARE = 3840, /* max_connections' default (4096) less the 256 kept for nodes */
    FLOOD_MAX = 5000,
    REOPEN_PER_S = 2000, /* the flood opens at most this many a second */
    FLOOD_S = 120,       /* and stops by itself after this long */
};

static struct it_cluster cl_;

/* ---- the flood: idle TCP connections, no TLS ------------------------------ */

struct flood {
    int port;
    const char *from[5];
    int n_from, per_from;
    int fds[FLOOD_MAX];
    atomic_int stop;
    pthread_t th;
};

static int open_from(const char *from, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    inet_pton(AF_INET, from, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    dst.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Every 50 ms, open (within REOPEN_PER_S) the connections not open yet
 * and those the node closed, until stopped or FLOOD_S passed. */
static void *flood_main(void *arg)
{
    struct flood *f = arg;
    int n = f->n_from * f->per_from;
    for (int i = 0; i < n; i++)
        f->fds[i] = -1;
    static struct pollfd p[FLOOD_MAX];
    uint64_t end = it_now_ms() + FLOOD_S * 1000ull;
    while (!atomic_load(&f->stop) && it_now_ms() < end) {
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){.fd = f->fds[i], .events = POLLIN | POLLRDHUP};
        if (poll(p, (nfds_t)n, 0) < 0)
            continue;
        int budget = REOPEN_PER_S / 20;
        for (int i = 0; i < n && budget > 0; i++) {
            if (f->fds[i] >= 0 && !(p[i].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)))
                continue;
            if (f->fds[i] >= 0)
                close(f->fds[i]);
            f->fds[i] = open_from(f->from[i / f->per_from], f->port);
            budget--;
        }
        usleep(50 * 1000);
    }
    for (int i = 0; i < n; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    return NULL;
}

static void flood_start(struct flood *f, int n_from, int per_from)
{
    static const char *const addrs[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5",
                                        "127.0.0.6"};
    ASSERT(n_from <= 5 && n_from * per_from <= FLOOD_MAX);
    memset(f, 0, sizeof *f);
    f->port = BASE_PORT + 1;
    f->n_from = n_from;
    f->per_from = per_from;
    for (int i = 0; i < n_from; i++)
        f->from[i] = addrs[i];
    CHECK_RC(pthread_create(&f->th, NULL, flood_main, f), 0);
}

static void flood_stop(struct flood *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
}

/* ---- node 1's counters ----------------------------------------------------- */

static double metric1(const char *series)
{
    char *body = NULL;
    double v = NAN;
    if (it_http_get(it_metrics_port(&cl_, 1), "/metrics", &body) == 200 && body)
        v = it_metric(body, series);
    free(body);
    return v;
}

static double refused(const char *limit)
{
    char series[96];
    snprintf(series, sizeof series, "sv_connections_refused_total{limit=\"%s\"}", limit);
    return metric1(series);
}

static double clients1(void)
{
    return metric1("sv_transport_client_connections");
}

/* Wait up to timeout_ms for cond (re-evaluated each 200 ms). */
#define WAIT_FOR(cond, timeout_ms)                                                                 \
    do {                                                                                           \
        uint64_t end_ = it_now_ms() + (timeout_ms);                                                \
        while (!(cond) && it_now_ms() < end_)                                                      \
            usleep(200 * 1000);                                                                    \
        CHECK(cond);                                                                               \
    } while (0)

/* ---- what must keep working ------------------------------------------------ */

static void put_get_all(struct sv_client *c, int round)
{
    for (int i = 0; i < KEYS; i++) {
        char key[32], val[48];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "round %d key %d", round, i);
        CHECK_RC(sv_client_put(c, "conns", key, val, strlen(val), SV_IF_ANY, NULL), SV_OK);
        void *d = NULL;
        size_t len = 0;
        CHECK_RC(sv_client_get(c, "conns", key, SV_LINEARIZABLE, &d, &len, NULL), SV_OK);
        CHECK(d && len == strlen(val) && !memcmp(d, val, len));
        free(d);
    }
}

/* A STATUS request to node 1 showing node as_node's certificate (0: none):
 * whether it was answered. */
static bool status_answered(int as_node)
{
    struct sv_msg m = {0}, r;
    uint8_t *body = NULL;
    int rc = it_call_as(&cl_, BASE_PORT + 1, as_node, SV_MSG_STATUS, &m, &r, &body, 5000);
    if (rc == 0)
        sv_msg_free(&r);
    free(body);
    return rc == 0;
}

static void test_one_source(void)
{
    struct sv_client *c = it_client(&cl_, 30000);
    put_get_all(c, 0);
    static struct flood f;
    flood_start(&f, 1, FLOOD_MAX);
    WAIT_FOR(refused("source") >= FLOOD_MAX - PER_SOURCE - 100 && clients1() >= PER_SOURCE - 10,
             30000);
    sv_test_log("one address: %.0f refused (source), %.0f client connections", refused("source"),
                clients1());
    put_get_all(c, 1);
    /* Node 2 comes back while the flood goes on; without node 3, every
     * write needs node 1 and node 2. */
    it_kill(&cl_, 3);
    it_kill(&cl_, 2);
    it_start(&cl_, 2);
    put_get_all(c, 2);
    flood_stop(&f);
    it_start(&cl_, 3);
    CHECK(refused("full") == 0);
    sv_client_close(c);
}

static void test_many_sources(void)
{
    double clients_before = refused("clients");
    static struct flood f;
    flood_start(&f, 5, 800);
    WAIT_FOR(refused("clients") >= clients_before + 100, 30000);
    sv_test_log("five addresses: %.0f client connections, %.0f refused (clients)", clients1(),
                refused("clients"));
    CHECK(clients1() <= CLIENT_SHARE + 128);
    /* Room for a node; none for another client. */
    CHECK(status_answered(2));
    /* (A flood connection may end at its handshake timeout and leave a slot
     * for a moment: one refusal in a few tries is what must happen.) */
    double before = refused("clients");
    bool refused_once = false;
    for (int i = 0; i < 5 && !refused_once; i++)
        refused_once = !status_answered(0);
    CHECK(refused_once);
    CHECK(refused("clients") > before);
    flood_stop(&f);
    /* The flood closed its connections: the node sees them go. */
    WAIT_FOR(clients1() < 10, 30000);
    CHECK(status_answered(0));
    struct sv_client *c = it_client(&cl_, 30000);
    put_get_all(c, 3);
    sv_client_close(c);
}

/* The answers to one flooding connection's GETs, by kind. */
struct tally {
    size_t ok, busy, in_flight, other;
};

static void tally_frames(struct sv_wire_decoder *d, struct tally *n)
{
    struct sv_wire_frame f;
    while (sv_wire_next(d, &f) == 1) {
        struct sv_msg r;
        if (f.type != (SV_MSG_GET | SV_MSG_RESP) ||
            sv_msg_decode(f.body, f.body_len, &r, NULL, 0)) {
            n->other++;
            continue;
        }
        bool unavailable = r.status == SV_ST_UNAVAILABLE && r.msg.len;
        if (r.status == SV_ST_OK)
            n->ok++;
        else if (unavailable && memmem(r.msg.p, r.msg.len, "node busy", 9))
            n->busy++;
        else if (unavailable && memmem(r.msg.p, r.msg.len, "in flight", 9))
            n->in_flight++;
        else
            n->other++;
        sv_msg_free(&r);
    }
}

/* 4 connections to node 1 send 2,000 stale GETs each, at once: a
 * connection has at most 512 waiting, the node runs 2 reads at a time and
 * queues 1,024; the rest are answered UNAVAILABLE ("in flight", "node
 * busy"). Every GET gets an answer, and writes go on. */
static void test_read_flood(void)
{
    enum { CONNS = 4, GETS = 2000 };
    struct sv_client *c = it_client(&cl_, 30000);
    CHECK_RC(sv_client_put(c, "conns", "flood", "x", 1, SV_IF_ANY, NULL), SV_OK);
    struct sv_tls_config tc = {.role = SV_TLS_CLIENT, .ca_file = cl_.ca};
    struct sv_tls_ctx *ctx = NULL;
    char em[256] = "";
    CHECK_RC(sv_tls_ctx_new(&tc, &ctx, em, sizeof em), 0);
    int fd[CONNS];
    struct sv_tls_conn *t[CONNS];
    struct sv_wire_decoder d[CONNS];
    size_t sent[CONNS] = {0};
    for (int k = 0; k < CONNS; k++) {
        t[k] = ctx ? it_tls_dial(ctx, BASE_PORT + 1, &fd[k]) : NULL;
        CHECK(t[k] != NULL);
        sv_wire_decoder_init(&d[k]);
    }
    struct sv_msg m = {0};
    m.bucket = (struct sv_bytes){(const uint8_t *)"conns", 5};
    m.key = (struct sv_bytes){(const uint8_t *)"flood", 5};
    m.consistency = 1;
    SV_MSG_SET(&m, SV_F_BUCKET);
    SV_MSG_SET(&m, SV_F_KEY);
    SV_MSG_SET(&m, SV_F_CONSISTENCY);
    uint8_t *req = NULL, *frame = NULL;
    size_t req_len = 0, flen = 0;
    CHECK_RC(sv_msg_encode(&m, &req, &req_len), 0);
    struct tally n[CONNS] = {0}, all = {0};
    uint64_t end = it_now_ms() + 60000;
    for (bool done = false; !done && it_now_ms() < end;) {
        done = true;
        for (int k = 0; k < CONNS; k++) {
            if (!t[k] || n[k].ok + n[k].busy + n[k].in_flight + n[k].other >= GETS)
                continue;
            done = false;
            /* In bursts of 500 frames, reading what came back between. */
            for (int i = 0; i < 500 && sent[k] < GETS; i++, sent[k]++) {
                free(frame);
                frame = NULL;
                if (sv_wire_encode(SV_MSG_GET, sent[k] + 1, req, req_len, &frame, &flen) ||
                    sv_tls_write(t[k], frame, flen))
                    break;
            }
            if (it_tls_pump(fd[k], t[k], &d[k], sent[k] < GETS ? 0 : 50) < 0)
                break;
            tally_frames(&d[k], &n[k]);
        }
    }
    for (int k = 0; k < CONNS; k++) {
        all.ok += n[k].ok, all.busy += n[k].busy, all.in_flight += n[k].in_flight,
            all.other += n[k].other;
        sv_wire_decoder_free(&d[k]);
        if (t[k]) {
            sv_tls_conn_free(t[k]);
            close(fd[k]);
        }
    }
    free(frame);
    free(req);
    sv_tls_ctx_free(ctx);
    sv_test_log("%d x %d GETs at once: %zu answered, %zu node busy, %zu in flight, %zu other",
                CONNS, GETS, all.ok, all.busy, all.in_flight, all.other);
    CHECK(all.ok + all.busy + all.in_flight == CONNS * GETS && all.other == 0);
    CHECK(all.busy > 0 && all.in_flight > 0);
    CHECK(metric1("sv_reads_refused_total") == (double)all.busy);
    CHECK(metric1("sv_requests_in_flight_refused_total") == (double)all.in_flight);
    CHECK(metric1("sv_reads_queued") == 0);
    put_get_all(c, 4);
    sv_client_close(c);
}

static int set_up(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < FLOOD_MAX + 512) {
        fprintf(stderr, "it-conns: needs %d open files (ulimit -n)\n", FLOOD_MAX + 512);
        return IT_SKIP;
    }
    it_up(&cl_, it_bin_dir(), "conns", 3, 3, BASE_PORT);
    return 0;
}

static void tear_down(void)
{
    it_down(&cl_);
}

static const struct sv_test tests[] = {
    {"one source", test_one_source},
    {"many sources", test_many_sources},
    {"read flood", test_read_flood},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-conns",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
