/* transport-test: node/src/transport (svtransport) — transports on 127.0.0.1
 * in one process and one libuv loop: mutual TLS dials, frames both ways (small
 * and SV_WIRE_BODY_MAX, content checked), refused peers (other CA, wrong
 * name, plain TCP, silent TCP), bad frames from a raw TLS client in a helper
 * thread, the output queue limit (also against a peer that stops reading), throughput of 1 MiB
 * frames, callbacks that close or stop, and a stop that leaves nothing behind. Usage:
 * transport-test [-v] [NAME...] (no name: every test; tests share the transports started in main).
 * Exit 1 on any failure. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "testcerts.h"
#include "errors.h"
#include "tls.h"
#include "transport.h"

/* errno, libuv (errno on Linux), svtls and svwire codes, told apart by their ranges. */
#define CHECK_STRERROR(rc) sv_strerror(rc)
#include "check.h"

/* Fixtures. */

enum {
    T_DATA = 1,     /* count and check */
    T_ECHO = 2,     /* check, answer with T_REPLY and the same body */
    T_REPLY = 3,    /* count as a reply */
    T_ANSWER = 4,   /* the first such frame makes the receiver send a batch back */
    T_CLOSE_AT = 5, /* the receiver closes the connection at req id close_at */
    T_STOP = 6,     /* the receiver stops its transport */
    T_BULK = 7,     /* throughput: count, keep the sender busy */
    CLOSES_MAX = 64,
    SMALL_FRAMES = 500,
    BIG_FRAMES = 3,
    MIB = 1 << 20,
    WAIT_MS = 20000,
};

static char dir[SV_TESTCERTS_PATH_MAX];
static uv_loop_t loop;
static uv_timer_t tick;

static uint8_t sendbuf[SV_WIRE_BODY_MAX];
static uint8_t scratch[SV_WIRE_BODY_MAX];

/* Deterministic body for req id seed (xorshift64), so the receiver can check it. */
static void body_fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15u + 0x2545F4914F6CDD1Du;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    x ^= x << 13;
    for (; i < len; i++) {
        buf[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

static bool body_ok(const struct sv_wire_frame *f)
{
    body_fill(scratch, f->body_len, f->req_id);
    return memcmp(scratch, f->body, f->body_len) == 0;
}

struct close_ev {
    uint64_t id;
    int err;
    bool outbound;
    char reason[160];
};

/* One transport and what its callbacks saw. */
struct node {
    const char *name;
    struct sv_tp *tp;
    long frames, bad, replies, close_at_got, stop_got;
    uint64_t close_at;
    bool answered;
    struct sv_conn *last_conn; /* of the last frame */
    int ncloses;
    struct close_ev closes[CLOSES_MAX];
};

/* Throughput: the receiver keeps the sender's queue topped up. */
static struct {
    struct sv_conn *src;
    long sent, got, total;
    size_t len;
    uint64_t t1;
} bulk;

static int send_seeded(struct sv_conn *c, uint32_t type, uint64_t req, size_t len)
{
    body_fill(sendbuf, len, req);
    return sv_conn_send(c, type, req, sendbuf, len);
}

/* SMALL_FRAMES small frames (req 1..) and BIG_FRAMES of SV_WIRE_BODY_MAX (req 1001..). */
static void send_batch(struct sv_conn *c)
{
    for (uint64_t i = 1; i <= SMALL_FRAMES; i++) {
        CHECK_RC(send_seeded(c, T_DATA, i, (i * 37) % 300), 0);
    }
    for (uint64_t i = 1; i <= BIG_FRAMES; i++) {
        CHECK_RC(send_seeded(c, T_DATA, 1000 + i, SV_WIRE_BODY_MAX), 0);
    }
}

static void on_frame(void *arg, struct sv_conn *c, const struct sv_wire_frame *f)
{
    struct node *n = arg;
    n->frames++;
    n->last_conn = c;
    switch (f->type) {
    case T_DATA:
    case T_REPLY:
        if (!body_ok(f)) {
            n->bad++;
        }
        n->replies += f->type == T_REPLY;
        break;
    case T_ECHO:
        if (!body_ok(f)) {
            n->bad++;
        }
        CHECK_RC(sv_conn_send(c, T_REPLY, f->req_id, f->body, f->body_len), 0);
        break;
    case T_ANSWER:
        if (!n->answered) {
            n->answered = true;
            send_batch(c);
        }
        break;
    case T_CLOSE_AT:
        n->close_at_got++;
        if (f->req_id == n->close_at) {
            sv_conn_close(c, "enough");
        }
        break;
    case T_STOP:
        n->stop_got++;
        sv_tp_stop(n->tp);
        n->tp = NULL;
        break;
    case T_BULK:
        bulk.got++;
        if (f->body_len != bulk.len) {
            n->bad++;
        }
        if (bulk.sent < bulk.total) {
            CHECK_RC(sv_conn_send(bulk.src, T_BULK, (uint64_t)bulk.sent, sendbuf, bulk.len), 0);
            bulk.sent++;
        }
        if (bulk.got == bulk.total) {
            bulk.t1 = uv_hrtime();
        }
        break;
    default:
        n->bad++;
    }
}

static void on_close(void *arg, struct sv_conn *c, int err, const char *reason)
{
    struct node *n = arg;
    if (sv_test_verbose()) {
        printf("  %s: on_close conn %llu: %d %s\n", n->name, (unsigned long long)sv_conn_id(c), err,
               reason);
    }
    if (n->ncloses < CLOSES_MAX) {
        struct close_ev *e = &n->closes[n->ncloses];
        e->id = sv_conn_id(c);
        e->err = err;
        e->outbound = sv_conn_outbound(c);
        snprintf(e->reason, sizeof(e->reason), "%s", reason);
    }
    n->ncloses++;
}

static const struct close_ev *last_close(const struct node *n)
{
    static const struct close_ev none = {.err = 1, .reason = "(none)"};
    return n->ncloses > 0 && n->ncloses <= CLOSES_MAX ? &n->closes[n->ncloses - 1] : &none;
}

static const struct close_ev *close_of(const struct node *n, uint64_t id)
{
    for (int i = 0; i < n->ncloses && i < CLOSES_MAX; i++) {
        if (n->closes[i].id == id) {
            return &n->closes[i];
        }
    }
    return NULL;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* WAIT(cond, ms): run the loop until cond holds (checked) or ms pass. */
#define WAIT(cond, ms)                                                                             \
    do {                                                                                           \
        uint64_t dl_ = uv_hrtime() + (uint64_t)(ms)*1000000u;                                      \
        uv_timer_start(&tick, on_tick, 5, 5);                                                      \
        while (!(cond) && uv_hrtime() < dl_) {                                                     \
            uv_run(&loop, UV_RUN_ONCE);                                                            \
        }                                                                                          \
        uv_timer_stop(&tick);                                                                      \
        CHECK(cond);                                                                               \
    } while (0)

/* Run the loop for ms whatever happens. */
static void run_for(unsigned ms)
{
    uint64_t dl = uv_hrtime() + (uint64_t)ms * 1000000u;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (uv_hrtime() < dl) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
}

static char paths[16][SV_TESTCERTS_PATH_MAX];
static int npaths;

static const char *path(const char *name, const char *suffix)
{
    if (npaths == 16) {
        npaths = 0;
    }
    return sv_testcerts_path(dir, name, suffix, paths[npaths++], sizeof(paths[0]));
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "transport-test: fixture: %s: %s\n", what, why);
    sv_testcerts_rmdir(dir);
    exit(1);
}

static void make_pki(void)
{
    char err[512] = "";
    if (sv_testcerts_mkdtemp("transport-test", dir, sizeof(dir), err, sizeof(err)) != 0 ||
        sv_testcerts_ca(dir, "ca", "ShardVault test cluster CA", err, sizeof(err)) != 0 ||
        sv_testcerts_ca(dir, "other-ca", "Unrelated CA", err, sizeof(err)) != 0) {
        die("CA", err);
    }
    static const char *const names[] = {"node-1", "node-2", "node-3", "node-4"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (sv_testcerts_leaf(dir, "ca", names[i], NULL, -SV_TESTCERTS_DAY_S,
                              30L * SV_TESTCERTS_DAY_S, err, sizeof(err)) != 0) {
            die(names[i], err);
        }
    }
    /* Claims to be node-2, vouched for by another CA. */
    if (sv_testcerts_leaf(dir, "other-ca", "node-2", "rogue", -SV_TESTCERTS_DAY_S,
                          30L * SV_TESTCERTS_DAY_S, err, sizeof(err)) != 0) {
        die("rogue", err);
    }
}

static int node_start(struct node *n, const char *name, const char *cert, bool listen,
                      unsigned handshake_timeout_ms)
{
    memset(n, 0, sizeof(*n));
    n->name = name;
    struct sv_tp_config cfg = {
        .loop = &loop,
        .listen_addr = listen ? "127.0.0.1:0" : NULL,
        .ca_file = path("ca", ".pem"),
        .cert_file = path(cert, ".pem"),
        .key_file = path(cert, ".key"),
        .arg = n,
        .on_frame = on_frame,
        .on_close = on_close,
        .handshake_timeout_ms = handshake_timeout_ms,
    };
    char err[256] = "";
    int rc = sv_tp_start(&cfg, &n->tp, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "  start %s: %s\n", name, err);
    }
    return rc;
}

static char addr_buf[4][64];
static int addr_next;

static const char *addr_of(const struct node *n)
{
    char *b = addr_buf[addr_next++ % 4];
    snprintf(b, sizeof(addr_buf[0]), "127.0.0.1:%d", sv_tp_port(n->tp));
    return b;
}

/* Transports shared by the tests: A (node-1) serves, B (node-2) dials, C
 * (node-3) serves with a short handshake timeout; keeper is a B->A
 * connection that must survive every misbehaving peer. */
static struct node A, B, C;
static uint64_t keeper_id;
enum { C_HANDSHAKE_MS = 300 };

static struct sv_conn *keeper(void)
{
    return sv_tp_conn(B.tp, keeper_id);
}

/* The keeper still carries frames both ways. */
static void ping_keeper(void)
{
    struct sv_conn *k = keeper();
    CHECK(k != NULL);
    if (k == NULL) {
        return;
    }
    long before = B.replies, bad = A.bad + B.bad;
    for (uint64_t i = 0; i < 5; i++) {
        CHECK_RC(send_seeded(k, T_ECHO, 50000 + i, 1000 + i), 0);
    }
    WAIT(B.replies == before + 5, WAIT_MS);
    CHECK(A.bad + B.bad == bad);
}

/* A plain TCP client on the loop. */
struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    const char *send;
    bool connected, closed, handle_closed;
    int status;
    size_t got;
    char buf[256];
};

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct raw *r = h->data;
    *buf = uv_buf_init(r->buf, sizeof(r->buf));
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct raw *r = s->data;
    if (nread > 0) {
        r->got += (size_t)nread;
    } else if (nread < 0) {
        r->closed = true;
        r->status = (int)nread;
        uv_read_stop(s);
    }
}

static void raw_written(uv_write_t *req, int status)
{
    (void)req;
    CHECK_RC(status, 0);
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    if (status < 0) {
        r->closed = true;
        r->status = status;
        return;
    }
    r->connected = true;
    if (r->send != NULL) {
        uv_buf_t b = uv_buf_init((char *)r->send, (unsigned)strlen(r->send));
        CHECK_RC(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written), 0);
    }
    CHECK_RC(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
}

static void raw_handle_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->handle_closed = true;
}

/* A raw connection to port from address from (NULL: any). */
static void raw_start_from(struct raw *r, int port, const char *send, const char *from)
{
    memset(r, 0, sizeof(*r));
    r->send = send;
    r->tcp.data = r;
    r->creq.data = r;
    struct sockaddr_in sa;
    CHECK_RC(uv_ip4_addr("127.0.0.1", port, &sa), 0);
    CHECK_RC(uv_tcp_init(&loop, &r->tcp), 0);
    if (from != NULL) {
        struct sockaddr_in src;
        CHECK_RC(uv_ip4_addr(from, 0, &src), 0);
        CHECK_RC(uv_tcp_bind(&r->tcp, (const struct sockaddr *)&src, 0), 0);
    }
    CHECK_RC(uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&sa, raw_connected), 0);
}

static void raw_start(struct raw *r, int port, const char *send)
{
    raw_start_from(r, port, send, NULL);
}

static void raw_finish(struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_handle_closed);
    WAIT(r->handle_closed, WAIT_MS);
}

/* A raw svtls client on a blocking socket in a helper thread: handshake,
 * send payload as plaintext (not necessarily a valid frame), then read until
 * the server closes. */
struct tls_client {
    int port;
    struct sv_tls_ctx *ctx;
    const uint8_t *payload;
    size_t len;
    unsigned delay_ms; /* between the TCP connect and the handshake */
    bool handshake_ok, eof;
    int tls_rc;
    char err[256];
    atomic_int done;
};

static bool send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) {
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool send_pending(int fd, struct sv_tls_conn *t)
{
    uint8_t buf[16384];
    size_t n;
    do {
        sv_tls_pending_out(t, buf, sizeof(buf), &n);
        if (n > 0 && !send_all(fd, buf, n)) {
            return false;
        }
    } while (n > 0);
    return true;
}

/* Feed k bytes and read what decrypts; returns the svtls code. */
static int feed_read(struct sv_tls_conn *t, uint8_t *buf, size_t cap, size_t k)
{
    int rc = sv_tls_feed(t, buf, k);
    size_t n = 1;
    while (rc == 0 && n > 0) {
        rc = sv_tls_read(t, buf, cap, &n);
    }
    return rc;
}

static void tls_client_main(void *arg)
{
    struct tls_client *tc = arg;
    struct sv_tls_conn *t = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tc->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(tc->err, sizeof(tc->err), "connect: %s", strerror(errno));
        goto out;
    }
    if (tc->delay_ms > 0) {
        usleep(tc->delay_ms * 1000u);
    }
    if (sv_tls_conn_new(tc->ctx, "node-1", &t, tc->err, sizeof(tc->err)) != 0) {
        goto out;
    }
    uint8_t buf[16384];
    for (int round = 0; round < 50 && !sv_tls_handshake_done(t); round++) {
        if (!send_pending(fd, t)) {
            break;
        }
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k <= 0 || feed_read(t, buf, sizeof(buf), (size_t)k) != 0) {
            break;
        }
    }
    tc->handshake_ok = sv_tls_handshake_done(t);
    if (!tc->handshake_ok) {
        snprintf(tc->err, sizeof(tc->err), "handshake: %s", sv_tls_conn_errmsg(t));
        goto out;
    }
    if (sv_tls_write(t, tc->payload, tc->len) != 0 || !send_pending(fd, t)) {
        snprintf(tc->err, sizeof(tc->err), "write: %s", sv_tls_conn_errmsg(t));
        goto out;
    }
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k == 0) {
            tc->eof = true;
            break;
        }
        if (k < 0) {
            snprintf(tc->err, sizeof(tc->err), "recv: %s", strerror(errno));
            break;
        }
        int rc = feed_read(t, buf, sizeof(buf), (size_t)k);
        if (rc != 0 && tc->tls_rc == 0) {
            tc->tls_rc = rc;
        }
    }
out:
    sv_tls_conn_free(t);
    if (fd >= 0) {
        close(fd);
    }
    atomic_store(&tc->done, 1);
}

/* Tests. */

static void test_exchange(void)
{
    struct sv_conn *c = NULL;
    long a0 = A.frames, b0 = B.frames;
    size_t na = sv_tp_conn_count(A.tp), nb = sv_tp_conn_count(B.tp);
    A.answered = false;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&A), "node-1", &c), 0);
    if (c == NULL) {
        return;
    }
    CHECK(sv_tp_conn_count(B.tp) == nb + 1); /* counted while its handshake runs */
    uint64_t id = sv_conn_id(c);
    CHECK(sv_conn_outbound(c));
    CHECK(!sv_conn_ready(c));
    CHECK(sv_conn_peer_name(c) == NULL);
    CHECK(sv_tp_conn(B.tp, id) == c);
    CHECK(sv_tp_conn(A.tp, id) == NULL);
    CHECK(strncmp(sv_conn_remote(c), "127.0.0.1:", 10) == 0);
    /* Queued before the handshake, sent after it. */
    CHECK_RC(send_seeded(c, T_ANSWER, 0, 10), 0);
    send_batch(c);
    CHECK(sv_conn_queued(c) > BIG_FRAMES * (size_t)SV_WIRE_BODY_MAX);
    WAIT(A.frames == a0 + 1 + SMALL_FRAMES + BIG_FRAMES &&
             B.frames == b0 + SMALL_FRAMES + BIG_FRAMES,
         WAIT_MS);
    CHECK(A.bad == 0 && B.bad == 0);
    CHECK(sv_conn_ready(c));
    const char *name = sv_conn_peer_name(c);
    CHECK(name != NULL && strcmp(name, "node-1") == 0);
    struct sv_conn *s = A.last_conn;
    CHECK(s != NULL && s != c);
    if (s == NULL) {
        return;
    }
    uint64_t sid = sv_conn_id(s);
    CHECK(sid != id);
    CHECK(sv_tp_conn(A.tp, sid) == s);
    CHECK(sv_tp_conn_count(A.tp) == na + 1);
    CHECK(!sv_conn_outbound(s));
    CHECK(sv_conn_ready(s));
    name = sv_conn_peer_name(s);
    CHECK(name != NULL && strcmp(name, "node-2") == 0);
    CHECK(strncmp(sv_conn_remote(s), "127.0.0.1:", 10) == 0);
    sv_conn_set_data(s, &A);
    CHECK(sv_conn_data(s) == &A && sv_conn_data(c) == NULL);
    WAIT(sv_conn_queued(c) == 0 && sv_conn_queued(s) == 0, WAIT_MS);
    if (sv_test_verbose()) {
        printf("  conn %llu -> %s, accepted as %llu from %s\n", (unsigned long long)id,
               sv_conn_remote(c), (unsigned long long)sid, sv_conn_remote(s));
    }

    /* The owner closes: err 0 on its side, a clean TLS close on the other. */
    int ba = B.ncloses, aa = A.ncloses;
    sv_conn_close(c, "test done");
    sv_conn_close(c, "again");
    CHECK(sv_tp_conn(B.tp, id) == NULL);
    CHECK(sv_tp_conn_count(B.tp) == nb);
    CHECK_RC(sv_conn_send(c, T_DATA, 1, "x", 1), -ENOTCONN);
    WAIT(B.ncloses == ba + 1 && A.ncloses == aa + 1, WAIT_MS);
    const struct close_ev *e = close_of(&B, id);
    CHECK(e != NULL && e->err == 0 && strcmp(e->reason, "test done") == 0 && e->outbound);
    e = close_of(&A, sid);
    CHECK(e != NULL && e->err == SV_TLS_E_CLOSED && !e->outbound);
    CHECK(sv_tp_conn(A.tp, sid) == NULL);
    CHECK(sv_tp_conn_count(A.tp) == na);
}

static void test_other_ca(void)
{
    struct node R;
    CHECK_RC(node_start(&R, "rogue", "rogue", false, 0), 0);
    if (R.tp == NULL) {
        return;
    }
    struct sv_conn *c = NULL;
    int aa = A.ncloses;
    long a0 = A.frames;
    CHECK_RC(sv_tp_connect(R.tp, addr_of(&A), "node-1", &c), 0);
    CHECK_RC(send_seeded(c, T_DATA, 1, 100), 0);
    WAIT(R.ncloses == 1 && A.ncloses == aa + 1, WAIT_MS);
    CHECK(A.frames == a0);
    CHECK(R.frames == 0);
    /* The server refused the certificate; the client hears it as an alert. */
    CHECK_RC(last_close(&A)->err, SV_TLS_E_PEER_UNVERIFIED);
    CHECK(strstr(last_close(&A)->reason, "tls:") != NULL);
    CHECK_RC(last_close(&R)->err, SV_TLS_E_PEER_ALERT);
    ping_keeper();
    sv_tp_stop(R.tp);
}

static void test_wrong_name(void)
{
    struct sv_conn *c = NULL;
    int ba = B.ncloses, aa = A.ncloses;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&A), "node-9", &c), 0);
    uint64_t id = c != NULL ? sv_conn_id(c) : 0;
    WAIT(B.ncloses == ba + 1 && A.ncloses == aa + 1, WAIT_MS);
    const struct close_ev *e = close_of(&B, id);
    CHECK(e != NULL);
    if (e != NULL) {
        CHECK_RC(e->err, SV_TLS_E_PEER_UNVERIFIED);
        CHECK(strstr(e->reason, "tls:") != NULL);
    }
    CHECK(last_close(&A)->err != 0);

    /* Nobody listening: the failure comes as on_close. */
    c = NULL;
    ba = B.ncloses;
    CHECK_RC(sv_tp_connect(B.tp, "127.0.0.1:1", "node-1", &c), 0);
    id = c != NULL ? sv_conn_id(c) : 0;
    WAIT(B.ncloses == ba + 1, WAIT_MS);
    e = close_of(&B, id);
    CHECK(e != NULL && e->err == -ECONNREFUSED);
    ping_keeper();
}

static void test_plaintext(void)
{
    struct raw r;
    int aa = A.ncloses;
    raw_start(&r, sv_tp_port(A.tp), "GET / HTTP/1.0\r\n\r\n");
    WAIT(r.closed && A.ncloses == aa + 1, WAIT_MS);
    CHECK(r.connected);
    CHECK(r.status == UV_EOF || r.status == UV_ECONNRESET);
    CHECK_RC(last_close(&A)->err, SV_TLS_E_HANDSHAKE);
    CHECK(strstr(last_close(&A)->reason, "tls:") != NULL);
    raw_finish(&r);
    ping_keeper();
}

static void test_silent(void)
{
    struct raw r;
    int ca = C.ncloses;
    uint64_t t0 = uv_hrtime();
    raw_start(&r, sv_tp_port(C.tp), NULL);
    WAIT(r.closed && C.ncloses == ca + 1, WAIT_MS);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    CHECK(r.connected);
    CHECK(ms >= C_HANDSHAKE_MS - 50);
    CHECK_RC(last_close(&C)->err, -ETIMEDOUT);
    raw_finish(&r);
    if (sv_test_verbose()) {
        printf("  silent peer closed after %llu ms\n", (unsigned long long)ms);
    }

    /* A finished handshake is not timed out. */
    struct sv_conn *c = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&C), "node-3", &c), 0);
    uint64_t id = c != NULL ? sv_conn_id(c) : 0;
    long c0 = C.frames;
    CHECK_RC(send_seeded(c, T_DATA, 1, 10), 0);
    WAIT(C.frames == c0 + 1, WAIT_MS);
    run_for(2 * C_HANDSHAKE_MS);
    c = sv_tp_conn(B.tp, id);
    CHECK(c != NULL && sv_conn_ready(c));
    CHECK(C.ncloses == ca + 1);
    if (c != NULL) {
        CHECK_RC(send_seeded(c, T_DATA, 2, 10), 0);
        WAIT(C.frames == c0 + 2, WAIT_MS);
        sv_conn_close(c, "done");
        WAIT(C.ncloses == ca + 2, WAIT_MS);
    }
    ping_keeper();
}

static void bad_client(const uint8_t *payload, size_t len, int want, const char *text)
{
    struct sv_tls_config cfg = {
        .role = SV_TLS_CLIENT,
        .ca_file = path("ca", ".pem"),
        .cert_file = path("node-2", ".pem"),
        .key_file = path("node-2", ".key"),
    };
    struct tls_client tc = {.port = sv_tp_port(A.tp), .payload = payload, .len = len};
    char err[256] = "";
    CHECK_RC(sv_tls_ctx_new(&cfg, &tc.ctx, err, sizeof(err)), 0);
    if (tc.ctx == NULL) {
        return;
    }
    int aa = A.ncloses;
    long a0 = A.frames;
    uv_thread_t th;
    CHECK_RC(uv_thread_create(&th, tls_client_main, &tc), 0);
    /* The keeper goes on meanwhile. */
    struct sv_conn *k = keeper();
    long r0 = B.replies;
    for (uint64_t i = 0; i < 50 && k != NULL; i++) {
        CHECK_RC(send_seeded(k, T_ECHO, 60000 + i, 5000), 0);
    }
    WAIT(atomic_load(&tc.done) == 1 && A.ncloses == aa + 1 && B.replies == r0 + 50, WAIT_MS);
    uv_thread_join(&th);
    if (tc.err[0] != '\0') {
        fprintf(stderr, "  tls client: %s\n", tc.err);
    }
    CHECK(tc.handshake_ok);
    CHECK(tc.eof);
    CHECK(A.frames == a0 + 50);
    CHECK_RC(last_close(&A)->err, want);
    CHECK(strstr(last_close(&A)->reason, text) != NULL);
    if (sv_test_verbose()) {
        printf("  server closed the bad client: %s\n", last_close(&A)->reason);
    }
    sv_tls_ctx_free(tc.ctx);
    ping_keeper();
}

static void test_bad_frames(void)
{
    /* Declares 9,000,000 bytes. */
    static const uint8_t too_big[] = {0x00, 0x89, 0x54, 0x40, 0x94, 0x01, 0x01, 0x01};
    bad_client(too_big, sizeof(too_big), SV_WIRE_E_TOO_BIG, "wire:");
    /* Length 3, then not a msgpack array. */
    static const uint8_t malformed[] = {0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c'};
    bad_client(malformed, sizeof(malformed), SV_WIRE_E_MALFORMED, "wire:");
    /* An array of the right shape but a string body. */
    static const uint8_t wrong_body[] = {0x00, 0x00, 0x00, 0x06, 0x94, 0x01, 0x01, 0x01, 0xa1, 'x'};
    bad_client(wrong_body, sizeof(wrong_body), SV_WIRE_E_MALFORMED, "wire:");
}

static void test_enobufs_throughput(void)
{
    struct sv_conn *c = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&A), "node-1", &c), 0);
    if (c == NULL) {
        return;
    }
    uint64_t id = sv_conn_id(c);
    WAIT(sv_conn_ready(c), WAIT_MS);
    /* The loop does not run while we send: the queue fills. */
    long a0 = A.frames, accepted = 0;
    int rc = 0;
    for (int i = 0; i < 100; i++) {
        rc = send_seeded(c, T_DATA, 70000 + (uint64_t)i, MIB);
        if (rc != 0) {
            break;
        }
        accepted++;
    }
    CHECK_RC(rc, -ENOBUFS);
    CHECK(accepted >= SV_TP_OUT_MAX / (MIB + 64) - 1 && accepted <= SV_TP_OUT_MAX / MIB);
    CHECK(sv_conn_queued(c) <= SV_TP_OUT_MAX);
    CHECK(sv_conn_queued(c) + MIB + 64 > SV_TP_OUT_MAX);
    CHECK_RC(sv_conn_send(c, T_DATA, 1, sendbuf, SV_WIRE_BODY_MAX + 1), SV_WIRE_E_TOO_BIG);
    CHECK(sv_tp_conn(B.tp, id) == c);
    WAIT(A.frames == a0 + accepted && sv_conn_queued(c) == 0, 60000);
    CHECK(A.bad == 0);
    CHECK_RC(send_seeded(c, T_DATA, 1, 100), 0); /* room again, still open */
    WAIT(A.frames == a0 + accepted + 1, WAIT_MS);

    /* Throughput: 1 MiB frames, the receiver keeps 8 in the pipe. */
    memset(&bulk, 0, sizeof(bulk));
    bulk.src = c;
    bulk.len = MIB;
    bulk.total = 512;
    body_fill(sendbuf, MIB, 1);
    uint64_t t0 = uv_hrtime();
    for (; bulk.sent < 8; bulk.sent++) {
        CHECK_RC(sv_conn_send(c, T_BULK, (uint64_t)bulk.sent, sendbuf, MIB), 0);
    }
    WAIT(bulk.got == bulk.total, 120000);
    CHECK(A.bad == 0);
    if (bulk.got == bulk.total) {
        double s = (double)(bulk.t1 - t0) / 1e9;
        printf("  throughput: %ld frames of 1 MiB over one link in %.2f s: %.0f MB/s\n", bulk.total,
               s, (double)bulk.total * MIB / 1e6 / s);
    }
    int ba = B.ncloses;
    sv_conn_close(c, "done");
    WAIT(B.ncloses == ba + 1, WAIT_MS);
}

/* A TLS server in a helper thread that finishes the handshake, then stops
 * reading until released. */
struct stall_server {
    int lfd;
    struct sv_tls_ctx *ctx;
    bool handshake_ok;
    char err[256];
    atomic_int ready, release, done;
};

static void stall_main(void *arg)
{
    struct stall_server *ss = arg;
    struct sv_tls_conn *t = NULL;
    int fd = accept(ss->lfd, NULL, NULL);
    if (fd < 0) {
        snprintf(ss->err, sizeof(ss->err), "accept: %s", strerror(errno));
        goto out;
    }
    if (sv_tls_conn_new(ss->ctx, NULL, &t, ss->err, sizeof(ss->err)) != 0) {
        goto out;
    }
    uint8_t buf[16384];
    for (int round = 0; round < 50 && !sv_tls_handshake_done(t); round++) {
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k <= 0 || feed_read(t, buf, sizeof(buf), (size_t)k) != 0 || !send_pending(fd, t)) {
            break;
        }
    }
    ss->handshake_ok = sv_tls_handshake_done(t);
    if (!ss->handshake_ok) {
        snprintf(ss->err, sizeof(ss->err), "handshake: %s", sv_tls_conn_errmsg(t));
    }
    atomic_store(&ss->ready, 1);
    while (atomic_load(&ss->release) == 0) {
        usleep(1000);
    }
out:
    sv_tls_conn_free(t);
    if (fd >= 0) {
        close(fd);
    }
    atomic_store(&ss->done, 1);
}

static void test_stalled_peer(void)
{
    struct sv_tls_config cfg = {
        .role = SV_TLS_SERVER,
        .ca_file = path("ca", ".pem"),
        .cert_file = path("node-1", ".pem"),
        .key_file = path("node-1", ".key"),
    };
    struct stall_server ss = {.lfd = -1};
    char err[256] = "";
    CHECK_RC(sv_tls_ctx_new(&cfg, &ss.ctx, err, sizeof(err)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof(sa);
    ss.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(ss.lfd >= 0 && bind(ss.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
          listen(ss.lfd, 1) == 0 && getsockname(ss.lfd, (struct sockaddr *)&sa, &salen) == 0);
    uv_thread_t th;
    CHECK_RC(uv_thread_create(&th, stall_main, &ss), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    struct sv_conn *c = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr, "node-1", &c), 0);
    uint64_t id = c != NULL ? sv_conn_id(c) : 0;
    WAIT(atomic_load(&ss.ready) == 1 && c != NULL && sv_conn_ready(c), WAIT_MS);
    CHECK(ss.handshake_ok);

    /* The loop runs and writes what the socket takes; the rest queues up to
     * SV_TP_OUT_MAX, then sends are refused and the connection stays. */
    int rc = 0;
    long sent = 0;
    size_t max_queued = 0;
    uint64_t dl = uv_hrtime() + 30ull * 1000000000u;
    while (c != NULL && uv_hrtime() < dl) {
        rc = send_seeded(c, T_DATA, 90000 + (uint64_t)sent, MIB);
        if (rc != 0) {
            break;
        }
        sent++;
        run_for(2);
        size_t q = sv_conn_queued(c);
        max_queued = q > max_queued ? q : max_queued;
    }
    CHECK_RC(rc, -ENOBUFS);
    CHECK(max_queued <= SV_TP_OUT_MAX);
    CHECK(sent > SV_TP_OUT_MAX / (MIB + 64)); /* some went into the socket buffers */
    run_for(50);
    CHECK(sv_tp_conn(B.tp, id) == c);
    CHECK(c != NULL && sv_conn_queued(c) + MIB > SV_TP_OUT_MAX);
    if (sv_test_verbose()) {
        printf("  stalled peer: %ld frames of 1 MiB accepted, %zu bytes queued\n", sent,
               c != NULL ? sv_conn_queued(c) : 0);
    }
    int ba = B.ncloses;
    atomic_store(&ss.release, 1);
    WAIT(atomic_load(&ss.done) == 1 && B.ncloses == ba + 1, WAIT_MS);
    uv_thread_join(&th);
    const struct close_ev *e = close_of(&B, id);
    CHECK(e != NULL && e->err != 0);
    if (ss.err[0] != '\0') {
        fprintf(stderr, "  stall server: %s\n", ss.err);
    }
    if (ss.lfd >= 0) {
        close(ss.lfd);
    }
    sv_tls_ctx_free(ss.ctx);
    ping_keeper();
}

static void test_callback_close(void)
{
    struct sv_conn *c = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&A), "node-1", &c), 0);
    if (c == NULL) {
        return;
    }
    uint64_t id = sv_conn_id(c);
    A.close_at = 5;
    A.close_at_got = 0;
    int aa = A.ncloses, ba = B.ncloses;
    for (uint64_t i = 1; i <= 100; i++) {
        CHECK_RC(send_seeded(c, T_CLOSE_AT, i, 20), 0);
    }
    WAIT(A.ncloses == aa + 1 && B.ncloses == ba + 1, WAIT_MS);
    CHECK(A.close_at_got == 5);
    CHECK_RC(last_close(&A)->err, 0);
    CHECK(strcmp(last_close(&A)->reason, "enough") == 0);
    const struct close_ev *e = close_of(&B, id);
    CHECK(e != NULL && e->err == SV_TLS_E_CLOSED);
    ping_keeper();
}

static void test_stop_in_callback(void)
{
    struct node D;
    CHECK_RC(node_start(&D, "D", "node-4", true, 0), 0);
    if (D.tp == NULL) {
        return;
    }
    struct sv_conn *c = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&D), "node-4", &c), 0);
    uint64_t id = c != NULL ? sv_conn_id(c) : 0;
    int ba = B.ncloses;
    for (uint64_t i = 1; i <= 50 && c != NULL; i++) {
        CHECK_RC(send_seeded(c, T_STOP, i, 20), 0);
    }
    WAIT(B.ncloses == ba + 1, WAIT_MS);
    CHECK(close_of(&B, id) != NULL);
    CHECK(D.stop_got == 1);
    CHECK(D.ncloses == 0); /* no callback after sv_tp_stop */
    CHECK(D.tp == NULL);
    ping_keeper();
}

static void test_config(void)
{
    struct node X;
    char err[256] = "";
    struct sv_tp_config cfg = {
        .loop = &loop,
        .listen_addr = addr_of(&A),
        .ca_file = path("ca", ".pem"),
        .cert_file = path("node-1", ".pem"),
        .key_file = path("node-1", ".key"),
        .arg = &X,
        .on_frame = on_frame,
    };
    struct sv_tp *tp = NULL;
    CHECK_RC(sv_tp_start(&cfg, &tp, err, sizeof(err)), -EADDRINUSE);
    CHECK(tp == NULL && strstr(err, "listen") != NULL);
    static const char *const bad_addrs[] = {"example.com:80", "127.0.0.1", "127.0.0.1:99999", ":80",
                                            "127.0.0.1:x"};
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        cfg.listen_addr = bad_addrs[i];
        CHECK_RC(sv_tp_start(&cfg, &tp, err, sizeof(err)), -EINVAL);
        CHECK_RC(sv_tp_connect(B.tp, bad_addrs[i], "node-1", &(struct sv_conn *){NULL}), -EINVAL);
    }
    cfg.listen_addr = NULL;
    cfg.cert_file = path("missing", ".pem");
    CHECK_RC(sv_tp_start(&cfg, &tp, err, sizeof(err)), SV_TLS_E_CONFIG);
    CHECK(tp == NULL && strstr(err, "TLS context") != NULL);
    CHECK(sv_tp_conn(A.tp, 0) == NULL && sv_tp_conn(A.tp, UINT64_MAX) == NULL);

    /* "localhost:port" resolves without a lookup; no listener: port 0. */
    cfg.cert_file = path("node-1", ".pem");
    memset(&X, 0, sizeof(X));
    X.name = "X";
    CHECK_RC(sv_tp_start(&cfg, &X.tp, err, sizeof(err)), 0);
    if (X.tp == NULL) {
        return;
    }
    CHECK(sv_tp_port(X.tp) == 0);
    struct sv_conn *c = NULL;
    char local[64];
    snprintf(local, sizeof(local), "localhost:%d", sv_tp_port(A.tp));
    long a0 = A.frames;
    CHECK_RC(sv_tp_connect(X.tp, local, "node-1", &c), 0);
    CHECK_RC(send_seeded(c, T_DATA, 3, 3), 0);
    WAIT(A.frames == a0 + 1, WAIT_MS);
    sv_tp_stop(X.tp);
}

/* test_limits: only node-2's certificate is a peer's. */
static bool limits_is_peer(void *arg, const struct sv_conn *c)
{
    (void)arg;
    const char *name = sv_conn_peer_name(c);
    return name != NULL && strcmp(name, "node-2") == 0;
}

static struct sv_tp_stats limits_stats(const struct node *n)
{
    struct sv_tp_stats st;
    sv_tp_stats(n->tp, &st);
    return st;
}

/* A TLS client with node-4's certificate (not a peer here) on a thread:
 * handshake, send nothing, read until the server closes. */
static void limits_client(struct tls_client *tc, uv_thread_t *th, int port, unsigned delay_ms)
{
    struct sv_tls_config cfg = {
        .role = SV_TLS_CLIENT,
        .ca_file = path("ca", ".pem"),
        .cert_file = path("node-4", ".pem"),
        .key_file = path("node-4", ".key"),
    };
    memset(tc, 0, sizeof(*tc));
    tc->port = port;
    tc->delay_ms = delay_ms;
    char err[256] = "";
    CHECK_RC(sv_tls_ctx_new(&cfg, &tc->ctx, err, sizeof(err)), 0);
    CHECK_RC(uv_thread_create(th, tls_client_main, tc), 0);
}

static void limits_client_end(struct tls_client *tc, uv_thread_t *th)
{
    WAIT(atomic_load(&tc->done) == 1, WAIT_MS);
    uv_thread_join(th);
    CHECK(tc->handshake_ok && tc->eof);
    sv_tls_ctx_free(tc->ctx);
}

/* Connection limits (transport.h): at most per_source_max clients from one
 * address; when the clients' share is full, a peer still gets in through
 * the reserve and a client that gets there is closed after its handshake;
 * a client silent for idle_timeout_ms is closed, a peer never. */
static void test_limits(void)
{
    enum { MAX = 12, RESERVE = 4, PER_SOURCE = 5, IDLE_MS = 500, HANDSHAKE_MS = 4000 };
    struct node L;
    memset(&L, 0, sizeof(L));
    L.name = "L";
    struct sv_tp_config cfg = {
        .loop = &loop,
        .listen_addr = "127.0.0.1:0",
        .ca_file = path("ca", ".pem"),
        .cert_file = path("node-1", ".pem"),
        .key_file = path("node-1", ".key"),
        .arg = &L,
        .on_frame = on_frame,
        .on_close = on_close,
        .handshake_timeout_ms = HANDSHAKE_MS,
        .conns_max = MAX,
        .peer_reserve = RESERVE,
        .per_source_max = PER_SOURCE,
        .idle_timeout_ms = IDLE_MS,
        .is_peer = limits_is_peer,
    };
    char err[256] = "";
    CHECK_RC(sv_tp_start(&cfg, &L.tp, err, sizeof(err)), 0);
    if (L.tp == NULL) {
        return;
    }
    int port = sv_tp_port(L.tp);
    struct raw r[16];
    size_t nr = 0;

    /* One address: PER_SOURCE clients, the next two refused at once. */
    for (int i = 0; i < PER_SOURCE + 2; i++) {
        raw_start_from(&r[nr++], port, NULL, "127.0.0.2");
    }
    WAIT(limits_stats(&L).refused[SV_TP_LIMIT_SOURCE] == 2 &&
             limits_stats(&L).clients == PER_SOURCE,
         WAIT_MS);
    WAIT(r[PER_SOURCE].closed && r[PER_SOURCE + 1].closed, WAIT_MS);
    CHECK(!r[0].closed);

    /* Another address fills the clients' share (MAX - RESERVE). */
    for (int i = 0; i < MAX - RESERVE - PER_SOURCE; i++) {
        raw_start_from(&r[nr++], port, NULL, "127.0.0.3");
    }
    WAIT(limits_stats(&L).clients == MAX - RESERVE, WAIT_MS);

    /* A peer still connects, through the reserve, and stops counting as a client. */
    struct sv_conn *peer = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&L), "node-1", &peer), 0);
    uint64_t peer_id = peer ? sv_conn_id(peer) : 0;
    long l0 = L.frames;
    if (peer != NULL) {
        CHECK_RC(send_seeded(peer, T_DATA, 1, 100), 0);
    }
    WAIT(L.frames == l0 + 1, WAIT_MS);
    CHECK(limits_stats(&L).clients == MAX - RESERVE);

    /* A client let into the reserve is closed once its handshake shows no peer. */
    struct tls_client tc;
    uv_thread_t th;
    limits_client(&tc, &th, port, 0);
    limits_client_end(&tc, &th);
    CHECK(limits_stats(&L).refused[SV_TP_LIMIT_CLIENTS] == 1);
    CHECK(strstr(last_close(&L)->reason, "connection limit: clients") != NULL);

    /* One let into the reserve that finds room in the share by the end of
     * its handshake stays, a client like any other: watched for idleness. */
    limits_client(&tc, &th, port, 300);
    WAIT(limits_stats(&L).clients == MAX - RESERVE + 1, WAIT_MS);
    struct raw *freed = &r[PER_SOURCE + 2]; /* one of 127.0.0.3's */
    raw_finish(freed);
    limits_client_end(&tc, &th);
    CHECK(limits_stats(&L).refused[SV_TP_LIMIT_CLIENTS] == 1);
    CHECK(limits_stats(&L).refused[SV_TP_LIMIT_IDLE] == 1);
    CHECK(strstr(last_close(&L)->reason, "idle") != NULL);
    raw_start_from(&r[nr++], port, NULL, "127.0.0.3"); /* the share full again */
    WAIT(limits_stats(&L).clients == MAX - RESERVE, WAIT_MS);

    /* Unidentified connections take at most half the reserve. */
    for (int i = 0; i < RESERVE / 2 + 1; i++) {
        raw_start_from(&r[nr++], port, NULL, "127.0.0.4");
    }
    WAIT(limits_stats(&L).refused[SV_TP_LIMIT_CLIENTS] == 2 && r[nr - 1].closed, WAIT_MS);
    CHECK(limits_stats(&L).clients == MAX - RESERVE + RESERVE / 2);

    /* The raw connections end at their handshake timeout: no client left,
     * and the peer, silent all along, still open. */
    WAIT(limits_stats(&L).clients == 0, WAIT_MS);
    CHECK(sv_tp_conn(B.tp, peer_id) != NULL);
    for (size_t i = 0; i < nr; i++) {
        if (&r[i] != freed) {
            WAIT(r[i].closed, WAIT_MS);
            raw_finish(&r[i]);
        }
    }

    /* A client that sends nothing after its handshake is closed when idle. */
    limits_client(&tc, &th, port, 0);
    limits_client_end(&tc, &th);
    CHECK(limits_stats(&L).refused[SV_TP_LIMIT_IDLE] == 2);
    CHECK(strstr(last_close(&L)->reason, "idle") != NULL);
    l0 = L.frames;
    peer = sv_tp_conn(B.tp, peer_id);
    CHECK(peer != NULL);
    if (peer != NULL) {
        CHECK_RC(send_seeded(peer, T_DATA, 2, 100), 0);
    }
    WAIT(L.frames == l0 + 1, WAIT_MS);
    CHECK(limits_stats(&L).refused[SV_TP_LIMIT_FULL] == 0);

    /* Connections reset before the node accepts them have no peer address:
     * dropped, and counted nowhere (several: a count under a shared unknown
     * address would go wrong on the second). */
    for (int i = 0; i < 3; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
        close(fd);
    }
    run_for(300);
    CHECK(limits_stats(&L).clients == 0);
    if (peer != NULL) {
        sv_conn_close(peer, "done");
    }
    sv_tp_stop(L.tp);
}

/* Stop with open connections and queued frames; then the loop must empty. */
static void test_stop(void)
{
    struct sv_conn *k = keeper();
    CHECK(k != NULL);
    for (uint64_t i = 0; i < 20 && k != NULL; i++) {
        CHECK_RC(send_seeded(k, T_DATA, 80000 + i, 100000), 0);
    }
    struct sv_conn *c = NULL;
    CHECK_RC(sv_tp_connect(B.tp, addr_of(&C), "node-3", &c), 0); /* mid-handshake */
    int na = A.ncloses, nb = B.ncloses, nc = C.ncloses;
    sv_tp_stop(A.tp);
    sv_tp_stop(B.tp);
    sv_tp_stop(C.tp);
    CHECK(A.ncloses == na && B.ncloses == nb && C.ncloses == nc);
}

/* Runner. */

static void start_nodes(void)
{
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0) {
        die("loop", "init");
    }
    if (node_start(&A, "A", "node-1", true, 0) != 0 ||
        node_start(&B, "B", "node-2", true, 0) != 0 ||
        node_start(&C, "C", "node-3", true, C_HANDSHAKE_MS) != 0) {
        die("transports", "start");
    }
    CHECK(sv_tp_port(A.tp) > 0 && sv_tp_port(B.tp) > 0 && sv_tp_port(C.tp) > 0);
    struct sv_conn *k = NULL;
    if (sv_tp_connect(B.tp, addr_of(&A), "node-1", &k) != 0) {
        die("keeper", "connect");
    }
    keeper_id = sv_conn_id(k);
    WAIT(sv_conn_ready(k), WAIT_MS);
}

static int set_up(void)
{
    make_pki();
    signal(SIGPIPE, SIG_IGN);
    start_nodes();
    return 0;
}

/* test_stop, then the loop must close: it tears the fixtures down. */
static void tear_down(void)
{
    test_stop();
    uv_close((uv_handle_t *)&tick, NULL);
    CHECK_RC(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_RC(uv_loop_close(&loop), 0);
    sv_testcerts_rmdir(dir);
}

static const struct sv_test tests[] = {
    {"exchange", test_exchange},
    {"other-ca", test_other_ca},
    {"wrong-name", test_wrong_name},
    {"plaintext", test_plaintext},
    {"silent", test_silent},
    {"bad-frames", test_bad_frames},
    {"enobufs-throughput", test_enobufs_throughput},
    {"stalled-peer", test_stalled_peer},
    {"callback-close", test_callback_close},
    {"stop-in-callback", test_stop_in_callback},
    {"config", test_config},
    {"limits", test_limits},
};

const struct sv_test_suite sv_test_suite = {
    .name = "transport-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .timeout_s = 240,
};
