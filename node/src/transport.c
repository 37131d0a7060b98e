/* ShardVault node transport: its API (start, stop, dial, look up, send) and addresses. */
#define _GNU_SOURCE
#include "transport_internal.h"

#include "sv_assert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void sv__tp_format_addr(const struct sockaddr_in *sa, char *out, size_t cap)
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
    sv__tp_maybe_free(tp);
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
    tp->conns_max = cfg->conns_max ? cfg->conns_max : SV_TP_CONNS_MAX;
    tp->peer_reserve = cfg->peer_reserve ? cfg->peer_reserve : SV_TP_PEER_RESERVE;
    tp->per_source_max = cfg->per_source_max ? cfg->per_source_max : SV_TP_PER_SOURCE_MAX;
    tp->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : SV_TP_IDLE_TIMEOUT_MS;
    if (tp->conns_max > SV_TP_CONNS_MAX || tp->peer_reserve >= tp->conns_max) {
        set_err(errmsg, errlen, "connection limits: at most %d connections, a reserve below that",
                SV_TP_CONNS_MAX);
        free(tp);
        return -EINVAL;
    }
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
            rc = uv_listen((uv_stream_t *)&tp->listener, LISTEN_BACKLOG, sv__tp_on_connection);
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
        sv__tp_conn_end(c, 0, "transport stopped");
        sv__tp_hard_close(c);
    }
    sv__tp_maybe_free(tp);
}

int sv_tp_port(const struct sv_tp *tp)
{
    return tp->port;
}

size_t sv_tp_conn_count(const struct sv_tp *tp)
{
    return tp->nconns;
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
    if (tp->nconns >= tp->conns_max) {
        tp->refused[SV_TP_LIMIT_FULL]++;
        return -EMFILE;
    }
    struct sv_tls_conn *tls = NULL;
    rc = sv_tls_conn_new(tp->client_ctx, peer_name, &tls, NULL, 0);
    if (rc != 0) {
        return rc;
    }
    struct sv_conn *c = sv__tp_conn_new(tp, true);
    if (c == NULL) {
        sv_tls_conn_free(tls);
        return -ENOMEM;
    }
    c->tls = tls;
    if (peer_name != NULL) {
        snprintf(c->expected, sizeof(c->expected), "%s", peer_name);
    }
    sv__tp_format_addr(&sa, c->remote, sizeof(c->remote));
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&sa, sv__tp_on_connect);
    if (rc != 0) {
        c->silent = true;
        sv__tp_conn_end(c, rc, "connect: %s", uv_strerror(rc));
        return rc;
    }
    sv__tp_table_insert(tp, c);
    sv__tp_start_timer(c);
    *out = c;
    return 0;
}

void sv_tp_stats(const struct sv_tp *tp, struct sv_tp_stats *out)
{
    out->conns = tp->nconns;
    out->clients = tp->n_clients;
    memcpy(out->refused, tp->refused, sizeof out->refused);
}

const char *sv_tp_limit_name(enum sv_tp_limit l)
{
    static const char *const names[SV_TP_LIMITS] = {"full", "clients", "source", "idle"};
    return (unsigned)l < SV_TP_LIMITS ? names[l] : "?";
}

struct sv_conn *sv_tp_conn(struct sv_tp *tp, uint64_t id)
{
    size_t i = sv__tp_table_find(tp, id);
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
    sv__tp_mark_dirty(c);
    return 0;
}

void sv_conn_close(struct sv_conn *c, const char *reason)
{
    sv__tp_conn_end(c, 0, "%s", reason != NULL ? reason : "closed by owner");
}

void sv_conn_set_data(struct sv_conn *c, void *data)
{
    c->data = data;
}

void *sv_conn_data(const struct sv_conn *c)
{
    return c->data;
}
