/* metrics-http-test: node/src/metrics_http.c, the /metrics and /health
 * endpoint. The endpoint runs on a libuv loop in the main thread, on
 * 127.0.0.1 with a port the kernel picks (no clash with other tests or
 * another run of this one); a client thread speaks raw HTTP over blocking
 * sockets: scrapes, health both ways, HEAD, keep-alive and pipelining,
 * unknown paths and methods, malformed and oversized requests, the
 * connection limit and idle timeouts; then the endpoint is stopped with
 * connections open. Exit 1 on any failure. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "metrics.h"

#include "check.h"

enum {
    TEST_TIMEOUT_S = 120,
    SHORT_IDLE_MS = 300, /* the second endpoint's idle timeout */
    RESP_MAX = 1 << 20,
};

static struct sv_metrics *reg, *big_reg;
static struct sv_counter *puts_ok;
static struct sv_metrics_http *ep, *ep_short, *ep_big;
static int port, port_short, port_big;
static uv_async_t done_async;
static atomic_int scrapes; /* calls of the scrape-time gauge (loop thread) */

static pthread_mutex_t health_mu = PTHREAD_MUTEX_INITIALIZER;
static bool healthy = true;
static char health_reason[512];
static atomic_int health_calls;

static bool health(void *arg, char *reason, size_t len)
{
    if (arg != &health_mu) /* the loop thread: no CHECK here */
        abort();
    atomic_fetch_add(&health_calls, 1);
    pthread_mutex_lock(&health_mu);
    bool ok = healthy;
    if (!ok)
        snprintf(reason, len, "%s", health_reason);
    pthread_mutex_unlock(&health_mu);
    return ok;
}

static void set_health(bool ok, const char *reason)
{
    pthread_mutex_lock(&health_mu);
    healthy = ok;
    snprintf(health_reason, sizeof health_reason, "%s", reason);
    pthread_mutex_unlock(&health_mu);
}

static double scrape_count(void *arg)
{
    (void)arg;
    return (double)atomic_fetch_add(&scrapes, 1) + 1;
}

/* ---- client side ------------------------------------------------------------------ */

static int dial(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    CHECK(rc == 0);
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the server may have closed: the reply tells */
        data += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

struct resp {
    int status; /* 0: no response (closed or timed out) */
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated */
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Per connection: bytes received past the last response (pipelining). */
struct client {
    int fd;
    char buf[RESP_MAX];
    size_t len;
};

static bool fill(struct client *c)
{
    if (c->len == sizeof c->buf)
        return false;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    return true;
}

/* Read one response; head_only: a response to HEAD (no body). */
static struct resp read_resp(struct client *c, bool head_only)
{
    struct resp r = {0};
    char *end;
    for (;;) {
        end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end)
            break;
        if (!fill(c))
            return r;
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    r.head = strndup(c->buf, head_len);
    size_t body_len = 0;
    const char *cl = strstr(r.head, "\r\nContent-Length: ");
    if (cl)
        body_len = strtoul(cl + 18, NULL, 10);
    if (head_only)
        body_len = 0;
    while (c->len < head_len + body_len)
        if (!fill(c)) {
            free(r.head);
            r.head = NULL;
            return r;
        }
    r.body = strndup(c->buf + head_len, body_len);
    r.body_len = body_len;
    sscanf(r.head, "HTTP/1.1 %d ", &r.status);
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return r;
}

/* The server closes the connection: EOF (or a reset) with nothing more. */
static bool closed_by_server(struct client *c)
{
    if (c->len)
        return false;
    char b[64];
    ssize_t n = recv(c->fd, b, sizeof b, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static struct client *open_client(int p)
{
    struct client *c = calloc(1, sizeof *c);
    c->fd = dial(p);
    return c;
}

static void close_client(struct client *c)
{
    close(c->fd);
    free(c);
}

/* One request on a new connection. */
static struct resp request(const char *req, bool head_only)
{
    struct client *c = open_client(port);
    send_str(c->fd, req);
    struct resp r = read_resp(c, head_only);
    close_client(c);
    return r;
}

static bool has_header(const struct resp *r, const char *line)
{
    return r->head && strstr(r->head, line) != NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the cases ---------------------------------------------------------------------- */

static void case_metrics(void)
{
    struct resp r = request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false);
    CHECK(r.status == 200);
    CHECK(has_header(&r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK(r.body && strstr(r.body, "# TYPE sv_requests_total counter\n"));
    CHECK(r.body && strstr(r.body, "sv_requests_total{type=\"put\",result=\"ok\"} 5\n"));
    CHECK(r.body && strstr(r.body, "sv_build_info{version=\"9.9.9\"} 1\n"));
    CHECK(r.body && strstr(r.body, "sv_scrapes 1\n"));
    CHECK(r.body && strlen(r.body) == r.body_len); /* Content-Length is the body's */
    resp_free(&r);
    /* Counters bumped from another thread show in the next scrape, and
     * scrape-time values are read again. */
    sv_counter_add(puts_ok, 10);
    r = request("GET /metrics?x=1&y HTTP/1.1\r\nHost: x\r\n\r\n", false);
    CHECK(r.status == 200);
    CHECK(r.body && strstr(r.body, "sv_requests_total{type=\"put\",result=\"ok\"} 15\n"));
    CHECK(r.body && strstr(r.body, "sv_scrapes 2\n"));
    resp_free(&r);
    /* HEAD: the same headers, no body (the next response on the connection
     * parses, so no body bytes came). */
    struct client *c = open_client(port);
    send_str(c->fd, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    r = read_resp(c, true);
    CHECK(r.status == 200);
    CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    CHECK(has_header(&r, "\r\nContent-Length: ") && !has_header(&r, "Content-Length: 0\r\n"));
    resp_free(&r);
    r = read_resp(c, false);
    CHECK(r.status == 200 && r.body && !strcmp(r.body, "ok\n"));
    resp_free(&r);
    close_client(c);
    /* An absolute-form target. */
    r = request("GET http://127.0.0.1/metrics HTTP/1.1\r\n\r\n", false);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void case_health(void)
{
    int before = atomic_load(&health_calls);
    struct resp r = request("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", false);
    CHECK(r.status == 200);
    CHECK(r.body && !strcmp(r.body, "ok\n"));
    CHECK(has_header(&r, "Content-Type: text/plain; charset=utf-8\r\n"));
    CHECK(atomic_load(&health_calls) == before + 1);
    resp_free(&r);
    set_health(false, "no leader for group 3\r\nsecond line");
    r = request("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", false);
    CHECK(r.status == 503);
    CHECK(r.head && !strncmp(r.head, "HTTP/1.1 503 Service Unavailable\r\n", 34));
    CHECK(r.body && !strcmp(r.body, "no leader for group 3  second line\n")); /* one line */
    resp_free(&r);
    set_health(false, "");
    r = request("GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(r.status == 503 && r.body && !strcmp(r.body, "unavailable\n"));
    resp_free(&r);
    set_health(true, "");
    r = request("GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void case_paths_methods(void)
{
    const char *not_found[] = {"/", "/metricsx", "/metrics/", "/health/x", "/METRICS", "/nope"};
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", not_found[i]);
        struct resp r = request(req, false);
        CHECK(r.status == 404);
        CHECK(r.body && !strcmp(r.body, "not found\n"));
        resp_free(&r);
    }
    /* Other methods: 405 with Allow; the connection stays usable. */
    struct client *c = open_client(port);
    send_str(c->fd, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    struct resp r = read_resp(c, false);
    CHECK(r.status == 405);
    CHECK(has_header(&r, "\r\nAllow: GET, HEAD\r\n"));
    resp_free(&r);
    send_str(c->fd, "DELETE /health HTTP/1.1\r\n\r\nPUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    r = read_resp(c, false);
    CHECK(r.status == 405);
    resp_free(&r);
    r = read_resp(c, false);
    CHECK(r.status == 405);
    resp_free(&r);
    send_str(c->fd, "GET /health HTTP/1.1\r\n\r\n");
    r = read_resp(c, false);
    CHECK(r.status == 200);
    resp_free(&r);
    close_client(c);
}

static void case_keep_alive(void)
{
    /* Several requests, one at a time, then pipelined in one write. */
    struct client *c = open_client(port);
    for (int i = 0; i < 3; i++) {
        send_str(c->fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        struct resp r = read_resp(c, false);
        CHECK(r.status == 200);
        CHECK(!has_header(&r, "Connection: close"));
        resp_free(&r);
    }
    send_str(c->fd, "GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                    "GET /metrics HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    int want[] = {200, 404, 200, 200};
    for (int i = 0; i < 4; i++) {
        struct resp r = read_resp(c, false);
        CHECK(r.status == want[i]);
        resp_free(&r);
    }
    /* A request split into many small writes. */
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (const char *p = req; *p; p++) {
        send_all(c->fd, p, 1);
        if ((p - req) % 7 == 0)
            sleep_ms(2);
    }
    struct resp r = read_resp(c, false);
    CHECK(r.status == 200);
    resp_free(&r);
    /* Connection: close is honoured: the response says so, then EOF. */
    send_str(c->fd, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    r = read_resp(c, false);
    CHECK(r.status == 200);
    CHECK(has_header(&r, "\r\nConnection: close\r\n"));
    resp_free(&r);
    CHECK(closed_by_server(c));
    close_client(c);
    /* HTTP/1.0: closed after the response unless keep-alive is asked for. */
    c = open_client(port);
    send_str(c->fd, "GET /health HTTP/1.0\r\n\r\n");
    r = read_resp(c, false);
    CHECK(r.status == 200);
    resp_free(&r);
    CHECK(closed_by_server(c));
    close_client(c);
    c = open_client(port);
    send_str(c->fd, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    r = read_resp(c, false);
    CHECK(r.status == 200 && has_header(&r, "\r\nConnection: keep-alive\r\n"));
    resp_free(&r);
    send_str(c->fd, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    r = read_resp(c, false);
    CHECK(r.status == 200);
    resp_free(&r);
    close_client(c);
}

/* req gets status and then the connection closes. */
static void expect_closing(const char *req, size_t len, int status, const char *body)
{
    struct client *c = open_client(port);
    send_all(c->fd, req, len);
    struct resp r = read_resp(c, false);
    CHECK(r.status == status);
    if (r.status != status)
        fprintf(stderr, "  (got %d, wanted %d for %.40s...)\n", r.status, status, req);
    CHECK(has_header(&r, "\r\nConnection: close\r\n"));
    if (body)
        CHECK(r.body && strstr(r.body, body));
    resp_free(&r);
    CHECK(closed_by_server(c));
    close_client(c);
}

static void case_malformed(void)
{
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET /met rics HTTP/1.1\r\n\r\n",
        "\x01\x02\x03\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_closing(bad[i], strlen(bad[i]), 400, "bad request");
    const char *v2 = "GET /metrics HTTP/2.0\r\n\r\n";
    expect_closing(v2, strlen(v2), 505, "HTTP/1.x only");
    /* A malformed request after a good one on the same connection: the good
     * one is answered, then 400. */
    struct client *c = open_client(port);
    send_str(c->fd, "GET /health HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
    struct resp r = read_resp(c, false);
    CHECK(r.status == 200);
    resp_free(&r);
    r = read_resp(c, false);
    CHECK(r.status == 400);
    resp_free(&r);
    CHECK(closed_by_server(c));
    close_client(c);
    /* Still serving. */
    r = request("GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void case_oversized(void)
{
    /* Headers past SV_METRICS_HTTP_REQUEST_MAX: 431. */
    size_t n = SV_METRICS_HTTP_REQUEST_MAX + 1000;
    char *req = malloc(n + 64);
    int k = snprintf(req, n + 64, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(req + k, 'a', n - (size_t)k);
    memcpy(req + n, "\r\n\r\n", 4);
    expect_closing(req, n + 4, 431, "too large");
    /* Exactly at the limit is fine. */
    size_t at = SV_METRICS_HTTP_REQUEST_MAX;
    k = snprintf(req, at, "GET /health HTTP/1.1\r\nX-Big: ");
    memset(req + k, 'b', at - (size_t)k - 4);
    memcpy(req + at - 4, "\r\n\r\n", 4);
    struct client *c = open_client(port);
    send_all(c->fd, req, at);
    struct resp r = read_resp(c, false);
    CHECK(r.status == 200);
    resp_free(&r);
    close_client(c);
    /* One byte more is not. */
    k = snprintf(req, at + 1, "GET /health HTTP/1.1\r\nX-Big: ");
    memset(req + k, 'b', at + 1 - (size_t)k - 4);
    memcpy(req + at + 1 - 4, "\r\n\r\n", 4);
    expect_closing(req, at + 1, 431, NULL);
    /* A body past the limit: 413. */
    const char *head = "GET /metrics HTTP/1.1\r\nContent-Length: 20000\r\n\r\n";
    size_t hl = strlen(head);
    char *big = malloc(hl + 20000);
    memcpy(big, head, hl);
    memset(big + hl, 'z', 20000);
    expect_closing(big, hl + 20000, 413, "too large");
    free(big);
    /* A request target past SV_METRICS_HTTP_URL_MAX (the request itself is
     * not too large): 414. */
    size_t ul = SV_METRICS_HTTP_URL_MAX + 100;
    k = snprintf(req, n, "GET /");
    memset(req + k, 'u', ul);
    k += (int)ul;
    k += snprintf(req + k, n - (size_t)k, " HTTP/1.1\r\n\r\n");
    expect_closing(req, (size_t)k, 414, NULL);
    free(req);
    r = request("GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(r.status == 200);
    resp_free(&r);
}

static void case_conn_limit(void)
{
    struct client *cs[SV_METRICS_HTTP_CONNS_MAX];
    int ok = 0;
    for (int i = 0; i < SV_METRICS_HTTP_CONNS_MAX; i++) {
        /* The server may not have seen yet that connections of the cases
         * before closed: a connection it rejects is tried again. */
        for (int tries = 0; tries < 100; tries++) {
            cs[i] = open_client(port);
            send_str(cs[i]->fd, "GET /health HTTP/1.1\r\n\r\n");
            struct resp r = read_resp(cs[i], false);
            int status = r.status;
            resp_free(&r);
            if (status == 200) {
                ok++;
                break;
            }
            close_client(cs[i]);
            cs[i] = NULL;
            sleep_ms(20);
        }
        if (!cs[i])
            cs[i] = open_client(port);
    }
    CHECK(ok == SV_METRICS_HTTP_CONNS_MAX);
    /* One more: accepted and closed at once, no response. */
    struct client *extra = open_client(port);
    send_str(extra->fd, "GET /health HTTP/1.1\r\n\r\n");
    struct resp r = read_resp(extra, false);
    CHECK(r.status == 0);
    resp_free(&r);
    close_client(extra);
    /* The open ones still work. */
    send_str(cs[0]->fd, "GET /health HTTP/1.1\r\n\r\n");
    r = read_resp(cs[0], false);
    CHECK(r.status == 200);
    resp_free(&r);
    /* Closing one frees a slot (once the server has seen the close). */
    close_client(cs[0]);
    int status = 0;
    for (int tries = 0; tries < 100 && status != 200; tries++) {
        sleep_ms(20);
        r = request("GET /health HTTP/1.1\r\n\r\n", false);
        status = r.status;
        resp_free(&r);
    }
    CHECK(status == 200);
    for (int i = 1; i < SV_METRICS_HTTP_CONNS_MAX; i++)
        close_client(cs[i]);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void case_idle(void)
{
    /* The second endpoint closes a connection idle for SHORT_IDLE_MS: one
     * that sends nothing, one that stops after a response, and one that
     * sends its request too slowly (bytes do not restart the clock). */
    long t0 = now_ms();
    struct client *quiet = open_client(port_short);
    CHECK(closed_by_server(quiet));
    long took = now_ms() - t0;
    CHECK(took >= SHORT_IDLE_MS - 50);
    CHECK(took < 5000); /* well before the client's recv timeout of 10 s */
    close_client(quiet);

    struct client *after = open_client(port_short);
    send_str(after->fd, "GET /health HTTP/1.1\r\n\r\n");
    struct resp r = read_resp(after, false);
    CHECK(r.status == 200);
    resp_free(&r);
    t0 = now_ms();
    CHECK(closed_by_server(after));
    took = now_ms() - t0;
    CHECK(took >= SHORT_IDLE_MS - 100 && took < 5000);
    close_client(after);

    struct client *slow = open_client(port_short);
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (const char *p = req; *p; p++) {
        send_all(slow->fd, p, 1);
        sleep_ms(40); /* 36 bytes: 1.4 s in all, far past the timeout */
    }
    r = read_resp(slow, false);
    CHECK(r.status == 0);
    resp_free(&r);
    close_client(slow);

    /* The main endpoint (SV_METRICS_HTTP_IDLE_MS) keeps such a request. */
    slow = open_client(port);
    for (const char *p = req; *p; p++) {
        send_all(slow->fd, p, 1);
        sleep_ms(10);
    }
    r = read_resp(slow, false);
    CHECK(r.status == 200);
    resp_free(&r);
    close_client(slow);
}

/* A response larger than the socket buffers, to a request that closes the
 * connection, with more input behind it that the server never reads: the
 * response must arrive whole. (Closing a socket with unread input resets
 * the connection and drops what the kernel still had to send.) */
static void case_linger(void)
{
    int fd = dial(port_big);
    send_str(fd, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    sleep_ms(300); /* the server fills the socket buffers, then waits */
    send_str(fd, "more input that the server does not read\r\n");
    sleep_ms(100);
    size_t cap = 64 << 20, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (len < cap && (n = recv(fd, buf + len, cap - len, 0)) > 0)
        len += (size_t)n;
    CHECK(n == 0); /* EOF, not a reset */
    char *end = memmem(buf, len, "\r\n\r\n", 4);
    CHECK(end != NULL);
    if (end) {
        size_t head_len = (size_t)(end - buf) + 4;
        const char *cl = memmem(buf, head_len, "Content-Length: ", 16);
        size_t body_len = cl ? strtoul(cl + 16, NULL, 10) : 0;
        CHECK(body_len > 16u << 20);
        CHECK(len == head_len + body_len);
        static const char last[] = "k2999\"} 0\n"; /* the last line's end */
        CHECK(len > sizeof last && !memcmp(buf + len - (sizeof last - 1), last, sizeof last - 1));
    }
    free(buf);
    close(fd);
}

static struct client *left_open;

static void *client_main(void *arg)
{
    (void)arg;
    case_metrics();
    case_health();
    case_paths_methods();
    case_keep_alive();
    case_malformed();
    case_oversized();
    case_conn_limit();
    case_idle();
    case_linger();
    /* Leave a connection open, mid-request, for the stop. */
    left_open = open_client(port);
    send_str(left_open->fd, "GET /metr");
    uv_async_send(&done_async);
    return NULL;
}

/* ---- the loop side ------------------------------------------------------------------- */

static int closed_calls;

static void on_closed(void *arg)
{
    if (arg == &closed_calls)
        closed_calls++;
}

static void on_done(uv_async_t *a)
{
    sv_metrics_http_stop(ep, on_closed, &closed_calls);
    sv_metrics_http_stop(ep_short, on_closed, &closed_calls);
    sv_metrics_http_stop(ep_big, on_closed, &closed_calls);
    uv_close((uv_handle_t *)a, NULL);
}

static void start_errors(uv_loop_t *loop)
{
    char err[256] = "";
    struct sv_metrics_http *h = NULL;
    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         ":80",
                         "example.com:80",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:80x",
                         "::1:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK(sv_metrics_http_start(loop, bad[i], reg, NULL, NULL, &h, err, sizeof err) == -EINVAL);
        CHECK(strstr(err, "metrics address") != NULL);
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    err[0] = 0;
    CHECK(sv_metrics_http_start(loop, addr, reg, NULL, NULL, &h, err, sizeof err) == -EADDRINUSE);
    CHECK(strstr(err, addr) != NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* frees the failed endpoint */
}

/* Every case runs on a client thread against endpoints on this loop. */
static void test_endpoint(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);

    CHECK(sv_metrics_new(&reg) == 0);
    CHECK(sv_metrics_build_info(reg, "9.9.9") == 0);
    static const char *const type_result[] = {"type", "result"};
    struct sv_metrics_desc d = {.type = SV_METRIC_COUNTER,
                                .name = "sv_requests_total",
                                .help = "Requests.",
                                .labels = type_result,
                                .n_labels = 2};
    struct sv_metrics_family *f;
    CHECK(sv_metrics_family_new(reg, &d, &f) == 0);
    CHECK(sv_metrics_counter(f, (const char *[]){"put", "ok"}, &puts_ok) == 0);
    sv_counter_add(puts_ok, 5);
    struct sv_metrics_desc sd = {.type = SV_METRIC_GAUGE, .name = "sv_scrapes", .help = "Scrapes."};
    CHECK(sv_metrics_family_new(reg, &sd, &f) == 0);
    CHECK(sv_metrics_series_fn(f, NULL, scrape_count, NULL) == 0);

    char err[256] = "";
    int rc =
        sv_metrics_http_start(&loop, "127.0.0.1:0", reg, health, &health_mu, &ep, err, sizeof err);
    if (rc) {
        CHECK_MSG(0, "start: %s", err);
        return;
    }
    port = sv_metrics_http_port(ep);
    CHECK(port > 0);
    rc = sv_metrics_http_start(&loop, "localhost:0", reg, NULL, NULL, &ep_short, err, sizeof err);
    if (rc) {
        CHECK_MSG(0, "start: %s", err);
        return;
    }
    sv_metrics_http_set_idle_ms(ep_short, SHORT_IDLE_MS);
    port_short = sv_metrics_http_port(ep_short);
    start_errors(&loop);

    /* A registry whose exposition is over 16 MiB: 3000 histograms with
     * 200-byte label values. */
    CHECK(sv_metrics_new(&big_reg) == 0);
    uint64_t lat[SV_METRICS_LATENCY_BUCKETS];
    sv_metrics_exp_bounds(lat, SV_METRICS_LATENCY_BUCKETS, SV_METRICS_LATENCY_START_NS,
                          SV_METRICS_LATENCY_FACTOR);
    static const char *const key[] = {"key"};
    struct sv_metrics_desc bd = {.type = SV_METRIC_HISTOGRAM,
                                 .name = "sv_big_seconds",
                                 .help = "Big.",
                                 .labels = key,
                                 .n_labels = 1,
                                 .bounds = lat,
                                 .n_bounds = SV_METRICS_LATENCY_BUCKETS,
                                 .unit_div = 1000000000};
    CHECK(sv_metrics_family_new(big_reg, &bd, &f) == 0);
    char value[256];
    memset(value, 'k', 200);
    for (int i = 0; i < 3000; i++) {
        snprintf(value + 200, sizeof value - 200, "%d", i);
        const char *v = value;
        struct sv_histogram *h;
        CHECK(sv_metrics_histogram(f, &v, &h) == 0);
    }
    rc = sv_metrics_http_start(&loop, "127.0.0.1:0", big_reg, NULL, NULL, &ep_big, err, sizeof err);
    if (rc) {
        CHECK_MSG(0, "start: %s", err);
        return;
    }
    port_big = sv_metrics_http_port(ep_big);

    CHECK(uv_async_init(&loop, &done_async, on_done) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, client_main, NULL) == 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once both endpoints are freed */
    pthread_join(t, NULL);
    CHECK(closed_calls == 3);
    /* The connection left open mid-request was closed by the stop. */
    CHECK(left_open && closed_by_server(left_open));
    if (left_open)
        close_client(left_open);
    CHECK(uv_loop_close(&loop) == 0);
    sv_metrics_free(reg);
    sv_metrics_free(big_reg);
}

static const struct sv_test tests[] = {
    {"endpoint", test_endpoint},
};

const struct sv_test_suite sv_test_suite = {
    .name = "metrics-http-test",
    SV_TEST_TABLE(tests),
    .timeout_s = TEST_TIMEOUT_S,
};
