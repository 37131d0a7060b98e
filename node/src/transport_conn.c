/* The transport's connections: the id table, lists, accepting and dialling, closing, freeing. */
#define _GNU_SOURCE
#include "transport_internal.h"

#include "log.h"
#include "sv_assert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Connection ids are unique in the process, across transports. */
static atomic_uint_fast64_t next_conn_id = 1;

/* Id table: linear probing with backward-shift deletion. */

static size_t slot_of(uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15u) >> (64 - TABLE_BITS));
}

void sv__tp_table_insert(struct sv_tp *tp, struct sv_conn *c)
{
    size_t i = slot_of(c->id);
    while (tp->table[i] != NULL) {
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    tp->table[i] = c;
    c->in_table = true;
    tp->nconns++;
}

size_t sv__tp_table_find(const struct sv_tp *tp, uint64_t id)
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
    size_t i = sv__tp_table_find(tp, c->id);
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
    sv__tp_client_drop(tp, c);
}

/* Client connections per source address: linear probing on the address,
 * backward-shift deletion (as the id table). */

static size_t src_home(uint32_t addr)
{
    return (size_t)((addr * 0x9E3779B1u) >> (32 - TABLE_BITS));
}

/* addr's slot, or the free slot where it would go (there is one: SOURCES
 * is twice the most connections a transport holds). */
static size_t src_find(const struct sv_tp *tp, uint32_t addr)
{
    size_t i = src_home(addr);
    while (tp->src[i].addr != 0 && tp->src[i].addr != addr) {
        i = (i + 1) & (SOURCES - 1);
    }
    return i;
}

static void src_free(struct sv_tp *tp, size_t i)
{
    tp->src[i].addr = tp->src[i].n = tp->src[i].provisional = 0;
    for (size_t j = (i + 1) & (SOURCES - 1); tp->src[j].addr != 0; j = (j + 1) & (SOURCES - 1)) {
        size_t k = src_home(tp->src[j].addr);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            tp->src[i] = tp->src[j];
            tp->src[j].addr = tp->src[j].n = tp->src[j].provisional = 0;
            i = j;
        }
    }
}

/* May accepted connection c (its address known) be let in? 0 and counted as
 * a client (provisional when the clients' share is full), or the limit it
 * hit. */
static int client_admit(struct sv_tp *tp, struct sv_conn *c, enum sv_tp_limit *hit)
{
    if (tp->nconns >= tp->conns_max) {
        *hit = SV_TP_LIMIT_FULL;
        return -EMFILE;
    }
    size_t i = src_find(tp, c->src);
    uint32_t n = tp->src[i].addr ? tp->src[i].n : 0;
    uint32_t prov = tp->src[i].addr ? tp->src[i].provisional : 0;
    bool full = tp->n_clients - tp->n_provisional >= tp->conns_max - tp->peer_reserve;
    if (n >= tp->per_source_max) {
        *hit = SV_TP_LIMIT_SOURCE;
        return -EMFILE;
    }
    if (full && (tp->n_provisional >= tp->peer_reserve / 2 || prov >= PROVISIONAL_PER_SOURCE)) {
        *hit = SV_TP_LIMIT_CLIENTS;
        return -EMFILE;
    }
    tp->src[i].addr = c->src;
    tp->src[i].n = n + 1;
    tp->src[i].provisional = prov + full;
    tp->n_clients++;
    tp->n_provisional += full;
    c->client = true;
    c->provisional = full;
    return 0;
}

bool sv__tp_client_settle(struct sv_tp *tp, struct sv_conn *c)
{
    if (tp->n_clients - tp->n_provisional >= tp->conns_max - tp->peer_reserve) {
        return false;
    }
    size_t i = src_find(tp, c->src);
    ASSERT(tp->src[i].addr == c->src && tp->src[i].provisional > 0);
    tp->src[i].provisional--;
    tp->n_provisional--;
    c->provisional = false;
    return true;
}

void sv__tp_client_drop(struct sv_tp *tp, struct sv_conn *c)
{
    if (!c->client) {
        return;
    }
    size_t i = src_find(tp, c->src);
    ASSERT(tp->src[i].addr == c->src && tp->src[i].n > 0);
    tp->src[i].n--;
    tp->src[i].provisional -= c->provisional;
    if (tp->src[i].n == 0) {
        src_free(tp, i);
    }
    tp->n_clients--;
    tp->n_provisional -= c->provisional;
    c->client = c->provisional = false;
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
        sv__tp_flush(c, INFLIGHT_MAX);
    }
    uv_prepare_stop(&tp->prepare);
    tp->prepare_active = false;
}

/* Push c's frames before the loop next waits for I/O: every frame sent in one
 * iteration goes out through as few TLS records and uv_writes as possible. */
void sv__tp_mark_dirty(struct sv_conn *c)
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

void sv__tp_maybe_free(struct sv_tp *tp)
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
    sv__tp_maybe_free(tp);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct sv_conn *c = h->data;
    if (--c->handles_open == 0) {
        conn_free(c);
    }
}

void sv__tp_hard_close(struct sv_conn *c)
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

/* Closing. */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    sv__tp_hard_close(req->data);
}

static void on_linger(uv_timer_t *t)
{
    sv__tp_hard_close(t->data);
}

/* Close c: log, forget its id, then send what is due (queued frames and
 * close_notify for a clean close, the alert after a TLS error) for at most
 * LINGER_MS before the handles close; on_close comes when they have. */
void sv__tp_conn_end(struct sv_conn *c, int err, const char *fmt, ...)
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
    if (!c->connected || c->tls == NULL || tp->stopping) {
        sv__tp_hard_close(c); /* nothing to send: no TLS yet (refused at accept) */
        return;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->ready && (err == 0 || err == SV_TLS_E_CLOSED)) {
        sv__tp_flush(c, SIZE_MAX);
        if (!c->hard_closed && sv_tls_shutdown(c->tls) == 0) {
            sv__tp_drain(c);
        }
    } else {
        sv__tp_drain(c); /* the alert, if TLS failed */
    }
    if (c->hard_closed) {
        return;
    }
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0 ||
        uv_timer_start(&c->timer, on_linger, LINGER_MS, 0) != 0) {
        sv__tp_hard_close(c);
    }
}

/* Connections. */

static void on_timer(uv_timer_t *t)
{
    struct sv_conn *c = t->data;
    sv__tp_conn_end(c, -ETIMEDOUT, "TLS handshake not finished within %u ms",
                    c->tp->handshake_timeout_ms);
}

struct sv_conn *sv__tp_conn_new(struct sv_tp *tp, bool outbound)
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

void sv__tp_start_timer(struct sv_conn *c)
{
    ASSERT(uv_timer_start(&c->timer, on_timer, c->tp->handshake_timeout_ms, 0) == 0);
}

void sv__tp_on_connection(uv_stream_t *server, int status)
{
    struct sv_tp *tp = server->data;
    if (tp->stopping) {
        return;
    }
    if (status < 0) {
        LOG_WARN("transport: accept: %s", uv_strerror(status));
        return;
    }
    struct sv_conn *c = sv__tp_conn_new(tp, false);
    if (c == NULL) {
        LOG_WARN("transport: accept: out of memory");
        return;
    }
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        c->silent = true;
        sv__tp_conn_end(c, rc, "accept: %s", uv_strerror(rc));
        return;
    }
    c->connected = true;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        sv__tp_format_addr(sin, c->remote, sizeof(c->remote));
        c->src = sin->sin_addr.s_addr;
    }
    if (c->src == 0) {
        /* Reset before it was accepted (no peer address): nothing to serve,
         * and 0 would be the free mark of the per-address counts. */
        c->silent = true;
        sv__tp_conn_end(c, -ENOTCONN, "accept: no peer address");
        return;
    }
    enum sv_tp_limit hit = SV_TP_LIMIT_FULL;
    if (client_admit(tp, c, &hit) != 0) {
        tp->refused[hit]++;
        /* Silent, and one line per REFUSAL_LOG_MS: under a flood, one log
         * line per refusal would be a second flood. */
        uint64_t now = uv_now(tp->loop);
        if (!tp->refusal_logged_ms || now - tp->refusal_logged_ms >= REFUSAL_LOG_MS) {
            tp->refusal_logged_ms = now;
            LOG_WARN("transport: refusing connections (limit %s, from %s): %zu open, %zu of "
                     "clients; refused so far: %" PRIu64 " full, %" PRIu64 " clients, %" PRIu64
                     " source",
                     sv_tp_limit_name(hit), c->remote[0] ? c->remote : "?", tp->nconns,
                     tp->n_clients, tp->refused[SV_TP_LIMIT_FULL], tp->refused[SV_TP_LIMIT_CLIENTS],
                     tp->refused[SV_TP_LIMIT_SOURCE]);
        }
        c->silent = true;
        sv__tp_conn_end(c, -EMFILE, "connection limit: %s", sv_tp_limit_name(hit));
        return;
    }
    sv__tp_table_insert(tp, c);
    char err[SV_TLS_ERRMSG_MAX] = "";
    rc = sv_tls_conn_new(tp->server_ctx, NULL, &c->tls, err, sizeof(err));
    if (rc != 0) {
        sv__tp_conn_end(c, rc, "tls: %s", err);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    sv__tp_start_timer(c);
    rc = uv_read_start((uv_stream_t *)&c->tcp, sv__tp_on_alloc, sv__tp_on_read);
    if (rc != 0) {
        sv__tp_conn_end(c, rc, "read: %s", uv_strerror(rc));
    }
}

void sv__tp_on_connect(uv_connect_t *req, int status)
{
    struct sv_conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        sv__tp_conn_end(c, status, "connect: %s", uv_strerror(status));
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, sv__tp_on_alloc, sv__tp_on_read);
    if (rc != 0) {
        sv__tp_conn_end(c, rc, "read: %s", uv_strerror(rc));
        return;
    }
    sv__tp_drain(c); /* the ClientHello */
}
