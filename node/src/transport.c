/* ShardVault node transport: wire frames over svtls (TLS 1.3, memory BIOs) on libuv TCP. */
#define _GNU_SOURCE
#include "transport.h"

#include "log.h"
#include "sv_assert.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    READ_BUF = SV_TLS_FEED_MAX,       /* one libuv read, fed to svtls whole */
    PLAIN_BUF = 64 * 1024,            /* plaintext per sv_tls_read */
    COALESCE_MAX = 16 * 1024,         /* small frames packed into one TLS write (one record) */
    INFLIGHT_MAX = 4 << 20,           /* ciphertext handed to libuv and not yet written */
    DRAIN_BATCH = 1 << 20,            /* ciphertext gathered before one uv_write */
    OUT_BUF = SV_TLS_OUT_MAX,         /* ciphertext moved out of svtls at a time */
    LINGER_MS = 2000,                 /* a closing connection gets this long to send what it has */
    REASON_MAX = 256,                 /* close reason, with the NUL */
    REMOTE_MAX = 64,                  /* "ip:port", with the NUL */
    TABLE_SIZE = 2 * SV_TP_CONNS_MAX, /* id -> connection, open addressing */
    TABLE_BITS = 13,
    LISTEN_BACKLOG = 128,
};

_Static_assert((long)READ_BUF <= (long)SV_TLS_FEED_MAX, "a read fits one feed");
_Static_assert((long)PLAIN_BUF <= (long)SV_WIRE_FEED_MAX, "a decrypted piece fits one wire feed");
_Static_assert((long)COALESCE_MAX <= (long)SV_TLS_WRITE_MAX,
               "a coalesced write fits one TLS write");
_Static_assert((long)SV_TLS_WRITE_MAX >= (long)SV_WIRE_PREFIX + (long)SV_WIRE_FRAME_MAX,
               "one TLS write holds any frame");
_Static_assert(TABLE_SIZE == 1 << TABLE_BITS, "table size is 2^TABLE_BITS");
_Static_assert((long)TABLE_SIZE >= 2L * SV_TP_CONNS_MAX, "the id table stays half empty");
_Static_assert(SV_TP_OUT_MAX >= 2 * ((long)SV_WIRE_PREFIX + (long)SV_WIRE_FRAME_MAX),
               "the output queue holds two largest frames");

/* Connection ids are unique in the process, across transports. */
static atomic_uint_fast64_t next_conn_id = 1;

/* An encoded frame waiting for TLS; buf comes from sv_wire_encode. */
struct out_frame {
    struct out_frame *next;
    uint8_t *buf;
    size_t len;
    size_t off; /* bytes already given to TLS */
};

/* Ciphertext handed to uv_write. */
struct wreq {
    uv_write_t req;
    struct sv_conn *c;
    size_t len;
    uint8_t data[];
};

struct sv_conn {
    struct sv_tp *tp;
    uint64_t id;
    uv_tcp_t tcp;
    uv_timer_t timer; /* handshake timeout, then linger while closing */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    struct sv_tls_conn *tls;
    struct sv_wire_decoder dec;
    struct out_frame *head, *tail;
    size_t plain_queued; /* encoded bytes not yet given to TLS */
    size_t inflight;     /* ciphertext in uv_write requests */
    int handles_open;    /* tcp and timer, until their close callbacks */
    int err;
    bool outbound;
    bool connected;   /* the TCP stream is up */
    bool ready;       /* TLS handshake done */
    bool closing;     /* conn_end ran: no more reads, sends, callbacks but on_close */
    bool hard_closed; /* uv_close called on both handles */
    bool dirty;       /* on tp->dirty: has frames to push through TLS */
    bool in_table;
    bool silent; /* never announced to the owner: no on_close */
    void *data;
    struct sv_conn *all_prev, *all_next;
    struct sv_conn *dirty_prev, *dirty_next;
    char remote[REMOTE_MAX];
    char expected[SV_TLS_NAME_MAX]; /* dialled: the name asked for */
    char peer[SV_TLS_NAME_MAX];     /* verified peer CN, kept for the close log */
    char reason[REASON_MAX];
};

struct sv_tp {
    uv_loop_t *loop;
    struct sv_tp_config cfg; /* strings point at the copies below */
    char *listen_addr, *ca_file, *cert_file, *key_file;
    struct sv_tls_ctx *server_ctx, *client_ctx;
    uv_tcp_t listener;
    uv_prepare_t prepare; /* pushes queued frames once per loop iteration */
    bool listener_init, prepare_init, prepare_active, stopping;
    int handles_open; /* listener and prepare */
    int port;
    unsigned handshake_timeout_ms;
    size_t nconns;         /* in the table */
    struct sv_conn *all;   /* every connection not yet freed */
    struct sv_conn *dirty; /* connections with frames to push */
    struct sv_conn *table[TABLE_SIZE];
    uint8_t read_buf[READ_BUF];
    uint8_t plain_buf[PLAIN_BUF];
    uint8_t coalesce[COALESCE_MAX];
    uint8_t out_buf[OUT_BUF]; /* ciphertext on its way to a socket (drain) */
};

static void conn_end(struct sv_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void hard_close(struct sv_conn *c);
static void flush(struct sv_conn *c, size_t limit);

/* Id table: linear probing with backward-shift deletion. */

static size_t slot_of(uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15u) >> (64 - TABLE_BITS));
}

static void table_insert(struct sv_tp *tp, struct sv_conn *c)
{
    size_t i = slot_of(c->id);
    while (tp->table[i] != NULL) {
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    tp->table[i] = c;
    c->in_table = true;
    tp->nconns++;
}

static size_t table_find(const struct sv_tp *tp, uint64_t id)
{
    for (size_t i = slot_of(id);; i = (i + 1) & (TABLE_SIZE - 1)) {
        if (tp->table[i] == NULL) {
            return TABLE_SIZE;
        }
        if (tp->table[i]->id == id) {
            return i;
        }
    }
}

static void table_remove(struct sv_tp *tp, struct sv_conn *c)
{
    if (!c->in_table) {
        return;
    }
    size_t i = table_find(tp, c->id);
    ASSERT(i < TABLE_SIZE && tp->table[i] == c);
    tp->table[i] = NULL;
    for (size_t j = (i + 1) & (TABLE_SIZE - 1); tp->table[j] != NULL;
         j = (j + 1) & (TABLE_SIZE - 1)) {
        size_t k = slot_of(tp->table[j]->id);
        /* Move j back to the hole at i unless its home k lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            tp->table[i] = tp->table[j];
            tp->table[j] = NULL;
            i = j;
        }
    }
    c->in_table = false;
    tp->nconns--;
}

/* Lists. */

static void all_link(struct sv_tp *tp, struct sv_conn *c)
{
    c->all_prev = NULL;
    c->all_next = tp->all;
    if (tp->all != NULL) {
        tp->all->all_prev = c;
    }
    tp->all = c;
}

static void all_unlink(struct sv_tp *tp, struct sv_conn *c)
{
    if (c->all_prev != NULL) {
        c->all_prev->all_next = c->all_next;
    } else {
        tp->all = c->all_next;
    }
    if (c->all_next != NULL) {
        c->all_next->all_prev = c->all_prev;
    }
}

static void dirty_unlink(struct sv_tp *tp, struct sv_conn *c)
{
    if (!c->dirty) {
        return;
    }
    if (c->dirty_prev != NULL) {
        c->dirty_prev->dirty_next = c->dirty_next;
    } else {
        tp->dirty = c->dirty_next;
    }
    if (c->dirty_next != NULL) {
        c->dirty_next->dirty_prev = c->dirty_prev;
    }
    c->dirty = false;
}

static void on_prepare(uv_prepare_t *h)
{
    struct sv_tp *tp = h->data;
    while (tp->dirty != NULL) {
        struct sv_conn *c = tp->dirty;
        dirty_unlink(tp, c);
        flush(c, INFLIGHT_MAX);
    }
    uv_prepare_stop(&tp->prepare);
    tp->prepare_active = false;
}

/* Push c's frames before the loop next waits for I/O: every frame sent in one
 * iteration goes out through as few TLS records and uv_writes as possible. */
static void mark_dirty(struct sv_conn *c)
{
    struct sv_tp *tp = c->tp;
    if (c->dirty || c->closing || tp->stopping) {
        return;
    }
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = tp->dirty;
    if (tp->dirty != NULL) {
        tp->dirty->dirty_prev = c;
    }
    tp->dirty = c;
    if (!tp->prepare_active) {
        uv_prepare_start(&tp->prepare, on_prepare);
        tp->prepare_active = true;
    }
}

/* Freeing. */

static void tp_maybe_free(struct sv_tp *tp)
{
    if (!tp->stopping || tp->handles_open > 0 || tp->all != NULL) {
        return;
    }
    sv_tls_ctx_free(tp->server_ctx);
    sv_tls_ctx_free(tp->client_ctx);
    free(tp->listen_addr);
    free(tp->ca_file);
    free(tp->cert_file);
    free(tp->key_file);
    free(tp);
}

static void conn_free(struct sv_conn *c)
{
    struct sv_tp *tp = c->tp;
    if (!tp->stopping && !c->silent && tp->cfg.on_close != NULL) {
        tp->cfg.on_close(tp->cfg.arg, c, c->err, c->reason);
    }
    table_remove(tp, c);
    dirty_unlink(tp, c);
    all_unlink(tp, c);
    while (c->head != NULL) {
        struct out_frame *f = c->head;
        c->head = f->next;
        free(f->buf);
        free(f);
    }
    sv_wire_decoder_free(&c->dec);
    sv_tls_conn_free(c->tls);
    free(c);
    tp_maybe_free(tp);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct sv_conn *c = h->data;
    if (--c->handles_open == 0) {
        conn_free(c);
    }
}

static void hard_close(struct sv_conn *c)
{
    if (c->hard_closed) {
        return;
    }
    c->hard_closed = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* The one line each close leaves in the log: INFO when the owner or the peer
 * ended it in order, WARN for a failure (TLS, a bad frame, a socket error). */
static void log_close(const struct sv_conn *c)
{
    const char *who = c->peer[0] ? "peer" : c->expected[0] ? "dialled" : "peer";
    const char *name = c->peer[0] ? c->peer : c->expected[0] ? c->expected : "unknown";
    bool orderly = c->err == 0 || c->err == -ECONNRESET || c->err == SV_TLS_E_CLOSED;
    sv_log(orderly ? SV_LOG_INFO : SV_LOG_WARN,
           "transport: closed conn %" PRIu64 " (%s, %s %s): %s", c->id,
           c->remote[0] ? c->remote : "?", who, name, c->reason);
}

/* Output. */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct sv_conn *c = w->c;
    c->inflight -= w->len;
    free(w);
    if (c->closing) {
        return;
    }
    if (status < 0) {
        conn_end(c, status, "write: %s", uv_strerror(status));
    } else if (c->head != NULL) {
        mark_dirty(c);
    }
}

/* Hand every byte of ciphertext svtls holds to the socket, through the
 * transport's one output buffer: straight away when nothing is queued before
 * it (uv_try_write); only what the socket does not take is copied into a
 * uv_write request. (A completed uv_write costs libuv an epoll_ctl: that was
 * about a third of the cluster's system calls under small puts.) */
static void drain(struct sv_conn *c)
{
    uint8_t *buf = c->tp->out_buf;
    while (!c->hard_closed && c->connected) {
        size_t got = 0;
        sv_tls_pending_out(c->tls, buf, OUT_BUF, &got);
        if (got == 0) {
            return;
        }
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)got);
        int rc = c->inflight == 0 ? uv_try_write((uv_stream_t *)&c->tcp, &b, 1) : UV_EAGAIN;
        if (rc < 0 && rc != UV_EAGAIN) {
            conn_end(c, rc, "write: %s", uv_strerror(rc));
            hard_close(c);
            return;
        }
        size_t sent = rc > 0 ? (size_t)rc : 0;
        if (sent == got) {
            continue;
        }
        /* What the socket did not take waits in a request of its own. */
        size_t left = got - sent;
        struct wreq *w = malloc(sizeof(*w) + left);
        if (w == NULL) {
            conn_end(c, -ENOMEM, "out of memory for %zu bytes of output", left);
            hard_close(c);
            return;
        }
        memcpy(w->data, buf + sent, left);
        w->c = c;
        w->len = left;
        b = uv_buf_init((char *)w->data, (unsigned)left);
        rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rc != 0) {
            free(w);
            conn_end(c, rc, "write: %s", uv_strerror(rc));
            hard_close(c);
            return;
        }
        c->inflight += left;
    }
}

static void tls_failed(struct sv_conn *c, int rc)
{
    if (rc == SV_TLS_E_CLOSED) {
        conn_end(c, rc, "tls: peer closed (close_notify)");
    } else {
        const char *m = sv_tls_conn_errmsg(c->tls);
        conn_end(c, rc, "tls: %s", m[0] ? m : sv_tls_strerror(rc));
    }
}

/* Drop n bytes from the head of the frame queue (they went into TLS). */
static void consume(struct sv_conn *c, size_t n)
{
    c->plain_queued -= n;
    while (n > 0) {
        struct out_frame *f = c->head;
        size_t k = f->len - f->off < n ? f->len - f->off : n;
        f->off += k;
        n -= k;
        if (f->off == f->len) {
            c->head = f->next;
            if (c->head == NULL) {
                c->tail = NULL;
            }
            free(f->buf);
            free(f);
        }
    }
}

/* Push queued frames through TLS while less than limit bytes of ciphertext
 * wait for the socket; small frames share a record, large ones go in pieces
 * of at most SV_TLS_WRITE_MAX straight from their buffer. */
static void flush(struct sv_conn *c, size_t limit)
{
    struct sv_tp *tp = c->tp;
    while (c->ready && !c->hard_closed && c->head != NULL &&
           c->inflight + sv_tls_pending_out_len(c->tls) < limit) {
        struct out_frame *f = c->head;
        size_t rem = f->len - f->off;
        const uint8_t *p;
        size_t n;
        if (rem >= COALESCE_MAX) {
            p = f->buf + f->off;
            n = rem < SV_TLS_WRITE_MAX ? rem : SV_TLS_WRITE_MAX;
        } else {
            n = 0;
            for (struct out_frame *g = f; g != NULL && n + (g->len - g->off) <= COALESCE_MAX;
                 g = g->next) {
                memcpy(tp->coalesce + n, g->buf + g->off, g->len - g->off);
                n += g->len - g->off;
            }
            p = tp->coalesce;
        }
        int rc = sv_tls_write(c->tls, p, n);
        if (rc == SV_TLS_E_BUFFER_FULL) {
            drain(c);
            if (c->hard_closed) {
                return;
            }
            rc = sv_tls_write(c->tls, p, n);
        }
        if (rc != 0) {
            tls_failed(c, rc);
            return;
        }
        consume(c, n);
        if (sv_tls_pending_out_len(c->tls) >= DRAIN_BATCH) {
            drain(c);
        }
    }
    drain(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    hard_close(req->data);
}

static void on_linger(uv_timer_t *t)
{
    hard_close(t->data);
}

/* Close c: log, forget its id, then send what is due (queued frames and
 * close_notify for a clean close, the alert after a TLS error) for at most
 * LINGER_MS before the handles close; on_close comes when they have. */
static void conn_end(struct sv_conn *c, int err, const char *fmt, ...)
{
    if (c->closing) {
        return;
    }
    struct sv_tp *tp = c->tp;
    c->closing = true;
    c->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
    if (!c->silent) {
        log_close(c);
    }
    table_remove(tp, c);
    dirty_unlink(tp, c);
    if (c->hard_closed) {
        return;
    }
    uv_timer_stop(&c->timer);
    if (!c->connected || tp->stopping) {
        hard_close(c);
        return;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->ready && (err == 0 || err == SV_TLS_E_CLOSED)) {
        flush(c, SIZE_MAX);
        if (!c->hard_closed && sv_tls_shutdown(c->tls) == 0) {
            drain(c);
        }
    } else {
        drain(c); /* the alert, if TLS failed */
    }
    if (c->hard_closed) {
        return;
    }
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0 ||
        uv_timer_start(&c->timer, on_linger, LINGER_MS, 0) != 0) {
        hard_close(c);
    }
}

/* Input. */

static void became_ready(struct sv_conn *c)
{
    c->ready = true;
    uv_timer_stop(&c->timer);
    const char *name = sv_tls_peer_name(c->tls);
    if (name != NULL) {
        snprintf(c->peer, sizeof(c->peer), "%s", name);
    }
    if (c->head != NULL) {
        mark_dirty(c);
    }
}

/* Decrypt everything svtls can, hand every frame to the owner. Returns false
 * once c is closing (also when the owner closed it or stopped the transport). */
static bool conn_decrypt(struct sv_conn *c)
{
    struct sv_tp *tp = c->tp;
    for (;;) {
        size_t n = 0;
        int rc = sv_tls_read(c->tls, tp->plain_buf, sizeof(tp->plain_buf), &n);
        if (!c->ready && sv_tls_handshake_done(c->tls)) {
            became_ready(c);
        }
        if (rc != 0) {
            tls_failed(c, rc);
            return false;
        }
        if (n == 0) {
            break;
        }
        rc = sv_wire_feed(&c->dec, tp->plain_buf, n);
        struct sv_wire_frame f;
        while (rc == 0 && (rc = sv_wire_next(&c->dec, &f)) == 1) {
            tp->cfg.on_frame(tp->cfg.arg, c, &f);
            if (c->closing) {
                return false;
            }
            rc = 0;
        }
        if (rc < 0) {
            conn_end(c, rc, "wire: %s", c->dec.errmsg[0] ? c->dec.errmsg : sv_wire_strerror(rc));
            return false;
        }
    }
    drain(c); /* handshake messages, KeyUpdate answers */
    return !c->closing;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sv_conn *c = h->data;
    *buf = uv_buf_init((char *)c->tp->read_buf, sizeof(c->tp->read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sv_conn *c = s->data;
    if (c->closing || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            conn_end(c, -ECONNRESET, "peer closed the connection");
        } else {
            conn_end(c, (int)nread, "read: %s", uv_strerror((int)nread));
        }
        return;
    }
    int rc = sv_tls_feed(c->tls, buf->base, (size_t)nread);
    if (rc == SV_TLS_E_BUFFER_FULL) {
        if (!conn_decrypt(c)) {
            return;
        }
        rc = sv_tls_feed(c->tls, buf->base, (size_t)nread);
    }
    if (rc != 0) {
        if (rc == SV_TLS_E_BUFFER_FULL) {
            conn_end(c, rc, "tls: input buffer full");
        } else {
            tls_failed(c, rc);
        }
        return;
    }
    conn_decrypt(c);
}

static void on_timer(uv_timer_t *t)
{
    struct sv_conn *c = t->data;
    conn_end(c, -ETIMEDOUT, "TLS handshake not finished within %u ms", c->tp->handshake_timeout_ms);
}

/* Connections. */

static struct sv_conn *conn_new(struct sv_tp *tp, bool outbound)
{
    struct sv_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->tp = tp;
    c->id = atomic_fetch_add(&next_conn_id, 1);
    c->outbound = outbound;
    sv_wire_decoder_init(&c->dec);
    ASSERT(uv_tcp_init(tp->loop, &c->tcp) == 0);
    ASSERT(uv_timer_init(tp->loop, &c->timer) == 0);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect_req.data = c;
    c->shutdown_req.data = c;
    c->handles_open = 2;
    all_link(tp, c);
    return c;
}

static void format_addr(const struct sockaddr_in *sa, char *out, size_t cap)
{
    char ip[INET_ADDRSTRLEN] = "?";
    uv_ip4_name(sa, ip, sizeof(ip));
    snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
}

/* "a.b.c.d:port" or "localhost:port"; no name lookups on the loop. */
static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
    if (addr == NULL || strlen(addr) >= SV_TP_ADDR_MAX) {
        return -EINVAL;
    }
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0') {
        return -EINVAL;
    }
    char host[SV_TP_ADDR_MAX];
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port > 65535 || colon[1] < '0' || colon[1] > '9') {
        return -EINVAL;
    }
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    struct in_addr probe;
    if (inet_pton(AF_INET, host, &probe) != 1) {
        return -EINVAL;
    }
    return uv_ip4_addr(host, (int)port, sa);
}

static void start_timer(struct sv_conn *c)
{
    ASSERT(uv_timer_start(&c->timer, on_timer, c->tp->handshake_timeout_ms, 0) == 0);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sv_tp *tp = server->data;
    if (tp->stopping) {
        return;
    }
    if (status < 0) {
        LOG_WARN("transport: accept: %s", uv_strerror(status));
        return;
    }
    struct sv_conn *c = conn_new(tp, false);
    if (c == NULL) {
        LOG_WARN("transport: accept: out of memory");
        return;
    }
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        c->silent = true;
        conn_end(c, rc, "accept: %s", uv_strerror(rc));
        return;
    }
    c->connected = true;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        format_addr((const struct sockaddr_in *)&ss, c->remote, sizeof(c->remote));
    }
    if (tp->nconns >= SV_TP_CONNS_MAX) {
        conn_end(c, -EMFILE, "over %d connections", SV_TP_CONNS_MAX);
        return;
    }
    table_insert(tp, c);
    char err[SV_TLS_ERRMSG_MAX] = "";
    rc = sv_tls_conn_new(tp->server_ctx, NULL, &c->tls, err, sizeof(err));
    if (rc != 0) {
        conn_end(c, rc, "tls: %s", err);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    start_timer(c);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_end(c, rc, "read: %s", uv_strerror(rc));
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct sv_conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        conn_end(c, status, "connect: %s", uv_strerror(status));
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_end(c, rc, "read: %s", uv_strerror(rc));
        return;
    }
    drain(c); /* the ClientHello */
}

/* Public API. */

static char *dup_or_null(const char *s, bool *failed)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = strdup(s);
    if (d == NULL) {
        *failed = true;
    }
    return d;
}

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
    if (errmsg == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
}

static void on_tp_handle_closed(uv_handle_t *h)
{
    struct sv_tp *tp = h->data;
    tp->handles_open--;
    tp_maybe_free(tp);
}

/* A bound, listening socket for addr: done with plain calls so that a
 * failure leaves no libuv handle to close. */
static int listen_socket(const struct sockaddr_in *sa, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    int on = 1;
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int sv_tp_start(const struct sv_tp_config *cfg, struct sv_tp **out, char *errmsg, size_t errlen)
{
    ASSERT(cfg != NULL && out != NULL && cfg->loop != NULL && cfg->on_frame != NULL);
    int rc;
    struct sv_tp *tp = calloc(1, sizeof(*tp));
    if (tp == NULL) {
        set_err(errmsg, errlen, "out of memory");
        return -ENOMEM;
    }
    tp->loop = cfg->loop;
    tp->cfg = *cfg;
    tp->handshake_timeout_ms =
        cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : SV_TP_HANDSHAKE_TIMEOUT_MS;
    bool failed = false;
    tp->listen_addr = dup_or_null(cfg->listen_addr, &failed);
    tp->ca_file = dup_or_null(cfg->ca_file, &failed);
    tp->cert_file = dup_or_null(cfg->cert_file, &failed);
    tp->key_file = dup_or_null(cfg->key_file, &failed);
    if (failed) {
        set_err(errmsg, errlen, "out of memory");
        rc = -ENOMEM;
        goto err_after_alloc;
    }
    tp->cfg.listen_addr = tp->listen_addr;
    tp->cfg.ca_file = tp->ca_file;
    tp->cfg.cert_file = tp->cert_file;
    tp->cfg.key_file = tp->key_file;

    struct sv_tls_config tc = {
        .role = SV_TLS_SERVER,
        .ca_file = tp->ca_file,
        .cert_file = tp->cert_file,
        .key_file = tp->key_file,
        .require_peer_cert = false,
    };
    char err[SV_TLS_ERRMSG_MAX] = "";
    rc = sv_tls_ctx_new(&tc, &tp->server_ctx, err, sizeof(err));
    if (rc != 0) {
        set_err(errmsg, errlen, "server TLS context: %s", err);
        goto err_after_alloc;
    }
    tc.role = SV_TLS_CLIENT;
    rc = sv_tls_ctx_new(&tc, &tp->client_ctx, err, sizeof(err));
    if (rc != 0) {
        set_err(errmsg, errlen, "client TLS context: %s", err);
        goto err_after_server_ctx;
    }

    int fd = -1;
    if (tp->listen_addr != NULL) {
        struct sockaddr_in sa;
        rc = parse_addr(tp->listen_addr, &sa);
        if (rc != 0) {
            set_err(errmsg, errlen, "listen address \"%s\": want a.b.c.d:port or localhost:port",
                    tp->listen_addr);
            goto err_after_client_ctx;
        }
        rc = listen_socket(&sa, &fd);
        if (rc != 0) {
            set_err(errmsg, errlen, "listen on %s: %s", tp->listen_addr, strerror(-rc));
            goto err_after_client_ctx;
        }
        struct sockaddr_in bound;
        socklen_t blen = sizeof(bound);
        if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0) {
            tp->port = ntohs(bound.sin_port);
        }
    }

    /* No failure past here leaves the caller without a transport. */
    ASSERT(uv_prepare_init(tp->loop, &tp->prepare) == 0);
    tp->prepare.data = tp;
    tp->prepare_init = true;
    tp->handles_open++;
    if (fd >= 0) {
        ASSERT(uv_tcp_init(tp->loop, &tp->listener) == 0);
        tp->listener.data = tp;
        tp->listener_init = true;
        tp->handles_open++;
        rc = uv_tcp_open(&tp->listener, fd);
        if (rc == 0) {
            rc = uv_listen((uv_stream_t *)&tp->listener, LISTEN_BACKLOG, on_connection);
        }
        if (rc != 0) {
            /* The handles close on the loop; the transport goes with them. */
            set_err(errmsg, errlen, "listen on %s: %s", tp->listen_addr, uv_strerror(rc));
            close(fd);
            sv_tp_stop(tp);
            return rc;
        }
    }
    *out = tp;
    return 0;

err_after_client_ctx:
    sv_tls_ctx_free(tp->client_ctx);
err_after_server_ctx:
    sv_tls_ctx_free(tp->server_ctx);
err_after_alloc:
    free(tp->listen_addr);
    free(tp->ca_file);
    free(tp->cert_file);
    free(tp->key_file);
    free(tp);
    return rc;
}

void sv_tp_stop(struct sv_tp *tp)
{
    if (tp == NULL || tp->stopping) {
        return;
    }
    tp->stopping = true;
    if (tp->listener_init) {
        uv_close((uv_handle_t *)&tp->listener, on_tp_handle_closed);
    }
    if (tp->prepare_init) {
        uv_close((uv_handle_t *)&tp->prepare, on_tp_handle_closed);
    }
    for (struct sv_conn *c = tp->all; c != NULL; c = c->all_next) {
        conn_end(c, 0, "transport stopped");
        hard_close(c);
    }
    tp_maybe_free(tp);
}

int sv_tp_port(const struct sv_tp *tp)
{
    return tp->port;
}

int sv_tp_connect(struct sv_tp *tp, const char *addr, const char *peer_name, struct sv_conn **out)
{
    ASSERT(tp != NULL && out != NULL);
    if (tp->stopping) {
        return -ESHUTDOWN;
    }
    struct sockaddr_in sa;
    int rc = parse_addr(addr, &sa);
    if (rc != 0) {
        return rc;
    }
    if (tp->nconns >= SV_TP_CONNS_MAX) {
        return -EMFILE;
    }
    struct sv_tls_conn *tls = NULL;
    rc = sv_tls_conn_new(tp->client_ctx, peer_name, &tls, NULL, 0);
    if (rc != 0) {
        return rc;
    }
    struct sv_conn *c = conn_new(tp, true);
    if (c == NULL) {
        sv_tls_conn_free(tls);
        return -ENOMEM;
    }
    c->tls = tls;
    if (peer_name != NULL) {
        snprintf(c->expected, sizeof(c->expected), "%s", peer_name);
    }
    format_addr(&sa, c->remote, sizeof(c->remote));
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&sa, on_connect);
    if (rc != 0) {
        c->silent = true;
        conn_end(c, rc, "connect: %s", uv_strerror(rc));
        return rc;
    }
    table_insert(tp, c);
    start_timer(c);
    *out = c;
    return 0;
}

struct sv_conn *sv_tp_conn(struct sv_tp *tp, uint64_t id)
{
    size_t i = table_find(tp, id);
    return i < TABLE_SIZE ? tp->table[i] : NULL;
}

uint64_t sv_conn_id(const struct sv_conn *c)
{
    return c->id;
}

bool sv_conn_outbound(const struct sv_conn *c)
{
    return c->outbound;
}

const char *sv_conn_peer_name(const struct sv_conn *c)
{
    return c->tls != NULL ? sv_tls_peer_name(c->tls) : NULL;
}

const char *sv_conn_remote(const struct sv_conn *c)
{
    return c->remote;
}

bool sv_conn_ready(const struct sv_conn *c)
{
    return c->ready && !c->closing;
}

size_t sv_conn_queued(const struct sv_conn *c)
{
    return c->plain_queued + c->inflight + (c->tls ? sv_tls_pending_out_len(c->tls) : 0);
}

int sv_conn_send(struct sv_conn *c, uint32_t type, uint64_t req_id, const void *body, size_t len)
{
    ASSERT(c != NULL && (body != NULL || len == 0));
    if (c->closing) {
        return -ENOTCONN;
    }
    if (len > SV_WIRE_BODY_MAX) {
        return SV_WIRE_E_TOO_BIG;
    }
    size_t queued = sv_conn_queued(c);
    if (queued + SV_WIRE_PREFIX + len > SV_TP_OUT_MAX) {
        return -ENOBUFS;
    }
    struct out_frame *f = malloc(sizeof(*f));
    if (f == NULL) {
        return -ENOMEM;
    }
    int rc = sv_wire_encode(type, req_id, body, len, &f->buf, &f->len);
    if (rc != 0) {
        free(f);
        return rc;
    }
    if (queued + f->len > SV_TP_OUT_MAX) {
        free(f->buf);
        free(f);
        return -ENOBUFS;
    }
    f->off = 0;
    f->next = NULL;
    if (c->tail != NULL) {
        c->tail->next = f;
    } else {
        c->head = f;
    }
    c->tail = f;
    c->plain_queued += f->len;
    mark_dirty(c);
    return 0;
}

void sv_conn_close(struct sv_conn *c, const char *reason)
{
    conn_end(c, 0, "%s", reason != NULL ? reason : "closed by owner");
}

void sv_conn_set_data(struct sv_conn *c, void *data)
{
    c->data = data;
}

void *sv_conn_data(const struct sv_conn *c)
{
    return c->data;
}
