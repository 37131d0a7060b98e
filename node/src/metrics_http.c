/* The metrics HTTP endpoint: /metrics and /health over plain HTTP/1.1 on
 * libuv, requests parsed by http_parser (libhttp-parser). */
#define _POSIX_C_SOURCE 200809L
#include "metrics.h"
#include "sv_assert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum {
    BACKLOG = 128,
    HEAD_MAX = 512, /* a response's status line and headers */
};

struct conn {
    uv_tcp_t tcp; /* data: this conn */
    uv_timer_t timer;
    struct sv_metrics_http *h;
    struct conn *prev, *next; /* h->conns */
    int open_handles;         /* freed when it drops to 0 */
    bool closing;

    http_parser parser;
    size_t req_bytes;  /* of the request being read */
    bool headers_done; /* of the request being read */
    bool complete;     /* a whole request was read; parser paused */
    bool url_too_long;
    bool keep_alive; /* the complete request allows another */
    unsigned method; /* enum http_method of the complete request */
    size_t url_len;
    char url[SV_METRICS_HTTP_URL_MAX];

    /* Bytes read after a complete request (pipelining): parsed once its
     * response is written. */
    size_t pending_len;
    char pending[SV_METRICS_HTTP_REQUEST_MAX];
    char rbuf[SV_METRICS_HTTP_REQUEST_MAX];

    /* The response being written (one at a time: reading stops meanwhile). */
    uv_write_t wreq;
    bool writing;
    bool close_after; /* close once it is written */
    bool draining;    /* written, our side shut down, input discarded until EOF */
    uv_shutdown_t sreq;
    char *body; /* malloc'd, or NULL */
    char head[HEAD_MAX];
};

/* A connection past SV_METRICS_HTTP_CONNS_MAX, accepted only to be closed. */
struct reject {
    uv_tcp_t tcp;
    struct sv_metrics_http *h;
};

struct sv_metrics_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct sv_metrics *m;
    sv_metrics_health_fn health;
    void *arg;
    int port;
    unsigned idle_ms;
    struct conn *conns;
    uint32_t n_conns;
    uint32_t n_rejects; /* still closing */
    bool listener_closed;
    bool stopping;
    sv_metrics_closed_fn closed;
    void *closed_arg;
};

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
    if (!errmsg || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
}

/* "a.b.c.d:port" or "localhost:port"; no name lookups on the loop. */
static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    if (!addr || strlen(addr) >= SV_METRICS_ADDR_MAX)
        return -EINVAL;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    char host[SV_METRICS_ADDR_MAX];
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || port > 65535)
        return -EINVAL;
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    struct in_addr probe;
    if (inet_pton(AF_INET, host, &probe) != 1)
        return -EINVAL;
    return uv_ip4_addr(host, (int)port, sa);
}

/* ---- closing and freeing ----------------------------------------------------- */

static void maybe_finish(struct sv_metrics_http *h)
{
    if (!h->stopping || !h->listener_closed || h->n_conns || h->n_rejects)
        return;
    sv_metrics_closed_fn closed = h->closed;
    void *arg = h->closed_arg;
    free(h);
    if (closed)
        closed(arg);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_conn_handle_closed(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    struct sv_metrics_http *h = c->h;
    /* libuv ran the write callback (UV_ECANCELED) before this one. */
    ASSERT(!c->writing);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n_conns--;
    free(c);
    maybe_finish(h);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void arm_timer(struct conn *c)
{
    ASSERT(uv_timer_start(&c->timer, on_timeout, c->h->idle_ms, 0) == 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0)
        conn_close(c);
}

/* Close after a last response without losing it: a close with unread input
 * makes the kernel send a reset, which can destroy the response before the
 * client reads it. So shut our side down and read (and drop) what the client
 * still sends until it closes, for SV_METRICS_HTTP_LINGER_MS at most. */
static void drain(struct conn *c)
{
    c->draining = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    ASSERT(uv_timer_start(&c->timer, on_timeout, SV_METRICS_HTTP_LINGER_MS, 0) == 0);
}

/* ---- responses ------------------------------------------------------------------- */

static void feed(struct conn *c, char *data, size_t len);

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = false;
    free(c->body);
    c->body = NULL;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after) {
        drain(c);
        return;
    }
    /* Ready for the next request. */
    arm_timer(c);
    c->complete = false;
    c->req_bytes = 0;
    http_parser_pause(&c->parser, 0);
    size_t n = c->pending_len;
    c->pending_len = 0;
    if (n)
        feed(c, c->pending, n);
    if (!c->closing && !c->writing && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* Queue the response: status, reason phrase, content type, body (malloc'd,
 * taken; NULL when empty), extra header lines (each ending in \r\n, or "").
 * close: close the connection once it is written. head_only: a HEAD request,
 * the headers without the body. */
static void respond(struct conn *c, int status, const char *phrase, const char *ctype, char *body,
                    size_t body_len, const char *extra, bool close, bool head_only)
{
    ASSERT(!c->writing);
    c->close_after = close || !c->keep_alive;
    const char *conn_hdr = "";
    if (c->close_after)
        conn_hdr = "Connection: close\r\n";
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        conn_hdr = "Connection: keep-alive\r\n";
    int n = snprintf(c->head, sizeof c->head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, phrase, ctype, body_len, extra, conn_hdr);
    ASSERT(n > 0 && (size_t)n < sizeof c->head);
    if (head_only) {
        free(body);
        body = NULL;
        body_len = 0;
    }
    c->body = body;
    uv_buf_t bufs[2] = {uv_buf_init(c->head, (unsigned)n), uv_buf_init(body, (unsigned)body_len)};
    c->wreq.data = c;
    c->writing = true;
    arm_timer(c); /* the client must take the response in time */
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1, on_written);
    if (rc < 0) {
        c->writing = false;
        free(c->body);
        c->body = NULL;
        conn_close(c);
    }
}

static const char TEXT[] = "text/plain; charset=utf-8";

/* A short text response ("text\n"); close as for respond. */
static void respond_text(struct conn *c, int status, const char *phrase, const char *text,
                         const char *extra, bool close, bool head_only)
{
    size_t n = strlen(text);
    char *body = malloc(n + 1);
    if (!body) {
        conn_close(c);
        return;
    }
    memcpy(body, text, n);
    body[n] = '\n';
    respond(c, status, phrase, TEXT, body, n + 1, extra, close, head_only);
}

/* An error that ends the connection: the response, then close. */
static void fail_request(struct conn *c, int status, const char *phrase, const char *text)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->pending_len = 0;
    respond_text(c, status, phrase, text, "", true, false);
}

static void serve_metrics(struct conn *c, bool head_only)
{
    char *body;
    size_t len;
    int rc = sv_metrics_render(c->h->m, &body, &len);
    if (rc) {
        fail_request(c, 500, "Internal Server Error",
                     rc == -E2BIG ? "metrics: exposition too large" : "metrics: out of memory");
        return;
    }
    respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len, "", false,
            head_only);
}

static void serve_health(struct conn *c, bool head_only)
{
    char reason[SV_METRICS_HTTP_REASON_MAX] = "";
    struct sv_metrics_http *h = c->h;
    if (!h->health || h->health(h->arg, reason, sizeof reason)) {
        respond_text(c, 200, "OK", "ok", "", false, head_only);
        return;
    }
    reason[sizeof reason - 1] = 0;
    for (char *p = reason; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    respond_text(c, 503, "Service Unavailable", reason[0] ? reason : "unavailable", "", false,
                 head_only);
}

/* A whole request was read (c->complete): answer it. */
static void serve(struct conn *c)
{
    if (c->parser.http_major != 1) {
        fail_request(c, 505, "HTTP Version Not Supported", "HTTP/1.x only");
        return;
    }
    if (c->url_too_long) {
        fail_request(c, 414, "URI Too Long", "request target too long");
        return;
    }
    if (c->method != HTTP_GET && c->method != HTTP_HEAD) {
        respond_text(c, 405, "Method Not Allowed", "method not allowed", "Allow: GET, HEAD\r\n",
                     false, false);
        return;
    }
    bool head_only = c->method == HTTP_HEAD;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) || !(u.field_set & (1 << UF_PATH))) {
        fail_request(c, 400, "Bad Request", "bad request target");
        return;
    }
    const char *path = c->url + u.field_data[UF_PATH].off;
    size_t path_len = u.field_data[UF_PATH].len;
    if (path_len == strlen("/metrics") && !memcmp(path, "/metrics", path_len))
        serve_metrics(c, head_only);
    else if (path_len == strlen("/health") && !memcmp(path, "/health", path_len))
        serve_health(c, head_only);
    else
        respond_text(c, 404, "Not Found", "not found", "", false, head_only);
}

/* ---- requests ---------------------------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->headers_done = false;
    c->url_too_long = false;
    c->url_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (len > sizeof c->url - c->url_len) {
        c->url_too_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->headers_done = true;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->complete = true;
    c->method = p->method;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    http_parser_pause(p, 1); /* the rest waits for the response */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* Parse len bytes at data (c->rbuf or c->pending); answer a complete
 * request, keeping what follows it in c->pending. */
static void feed(struct conn *c, char *data, size_t len)
{
    while (len > 0 && !c->closing) {
        size_t room = SV_METRICS_HTTP_REQUEST_MAX - c->req_bytes;
        if (room == 0) {
            if (c->headers_done)
                fail_request(c, 413, "Payload Too Large", "request too large");
            else
                fail_request(c, 431, "Request Header Fields Too Large", "request too large");
            return;
        }
        size_t n = len < room ? len : room;
        size_t done = http_parser_execute(&c->parser, &settings, data, n);
        c->req_bytes += done;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (c->complete) {
            ASSERT(err == HPE_PAUSED);
            c->pending_len = len - done;
            memmove(c->pending, data + done, c->pending_len);
            uv_read_stop((uv_stream_t *)&c->tcp);
            serve(c);
            return;
        }
        if (err != HPE_OK || done != n) {
            char text[128];
            snprintf(text, sizeof text, "bad request: %s", http_errno_description(err));
            fail_request(c, 400, "Bad Request", text);
            return;
        }
        data += done;
        len -= done;
    }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = handle->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;
    (void)buf;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) { /* EOF or an error: nothing to answer */
        conn_close(c);
        return;
    }
    if (!c->draining)
        feed(c, c->rbuf, (size_t)nread);
}

static void on_reject_closed(uv_handle_t *handle)
{
    struct reject *r = handle->data;
    struct sv_metrics_http *h = r->h;
    h->n_rejects--;
    free(r);
    maybe_finish(h);
}

/* Accept and close at once (the backlog must drain): too many connections,
 * or out of memory. */
static void reject(struct sv_metrics_http *h)
{
    struct reject *r = malloc(sizeof *r);
    if (!r)
        return; /* it stays in the backlog until memory comes back */
    r->h = h;
    r->tcp.data = r;
    ASSERT(uv_tcp_init(h->loop, &r->tcp) == 0);
    h->n_rejects++;
    (void)uv_accept((uv_stream_t *)&h->listener, (uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, on_reject_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sv_metrics_http *h = server->data;
    if (h->stopping || status < 0)
        return;
    struct conn *c = NULL;
    if (h->n_conns < SV_METRICS_HTTP_CONNS_MAX)
        c = calloc(1, sizeof *c);
    if (!c) {
        reject(h);
        return;
    }
    c->h = h;
    c->tcp.data = c;
    c->timer.data = c;
    ASSERT(uv_tcp_init(h->loop, &c->tcp) == 0);
    ASSERT(uv_timer_init(h->loop, &c->timer) == 0);
    c->open_handles = 2;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    arm_timer(c);
}

/* ---- start and stop ---------------------------------------------------------------- */

static void on_listener_closed(uv_handle_t *handle)
{
    struct sv_metrics_http *h = handle->data;
    h->listener_closed = true;
    maybe_finish(h);
}

int sv_metrics_http_start(struct uv_loop_s *loop, const char *host_port, struct sv_metrics *m,
                          sv_metrics_health_fn health, void *arg, struct sv_metrics_http **out,
                          char *errmsg, size_t errlen)
{
    struct sockaddr_in sa;
    if (parse_addr(host_port, &sa)) {
        set_err(errmsg, errlen, "metrics address \"%s\": want a.b.c.d:port or localhost:port",
                host_port ? host_port : "(null)");
        return -EINVAL;
    }
    struct sv_metrics_http *h = calloc(1, sizeof *h);
    if (!h) {
        set_err(errmsg, errlen, "metrics endpoint: out of memory");
        return -ENOMEM;
    }
    h->loop = loop;
    h->m = m;
    h->health = health;
    h->arg = arg;
    h->idle_ms = SV_METRICS_HTTP_IDLE_MS;
    h->listener.data = h;
    ASSERT(uv_tcp_init(loop, &h->listener) == 0);
    int rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, BACKLOG, on_connection);
    struct sockaddr_in bound;
    int bound_len = sizeof bound;
    if (rc == 0)
        rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &bound_len);
    if (rc < 0) {
        set_err(errmsg, errlen, "metrics endpoint: listen on %s: %s", host_port, uv_strerror(rc));
        /* Freed by on_listener_closed when the loop next runs. */
        h->stopping = true;
        uv_close((uv_handle_t *)&h->listener, on_listener_closed);
        return rc;
    }
    h->port = ntohs(bound.sin_port);
    *out = h;
    return 0;
}

int sv_metrics_http_port(const struct sv_metrics_http *h)
{
    return h->port;
}

void sv_metrics_http_set_idle_ms(struct sv_metrics_http *h, unsigned idle_ms)
{
    ASSERT(idle_ms > 0);
    h->idle_ms = idle_ms;
}

void sv_metrics_http_stop(struct sv_metrics_http *h, sv_metrics_closed_fn closed, void *arg)
{
    ASSERT(!h->stopping);
    h->stopping = true;
    h->closed = closed;
    h->closed_arg = arg;
    for (struct conn *c = h->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
}
