/* libshardvault: routing by the cluster map, retries with backoff until a
 * deadline, exactly-once writes, pooled TLS connections and chunked streams. */
#define _GNU_SOURCE
#include "shardvault/client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "client_int.h"
#include "proto.h"
#include "tls.h"
#include "wire.h"

enum {
    ADDR_MAX = SV_MSG_NAME_MAX + 1,
    NODES_MAX = 256,
    POOL_IDLE_MAX = 64,
    WINDOW = 32, /* chunk requests in flight on one connection */
    IO_BUF = SV_TLS_FEED_MAX,
    BACKOFF_MIN_MS = 50,
    BACKOFF_MAX_MS = 1000,
    REDIRECTS_MAX = 8, /* NOT_LEADER hops followed at once before backing off */
    RESTARTS_MAX = 8,  /* GETs restarted because the object changed */
    TRIED_MAX = 384,   /* bytes of the "tried" list in error messages */
    STATUS_NODE_MS = 5000,
};
_Static_assert((int)SV_CLIENT_CHUNK == (int)SV_MSG_CHUNK_MAX,
               "client and protocol chunk sizes agree");
_Static_assert((int)SV_CLIENT_NAME_MAX == (int)SV_MSG_NAME_MAX, "name limits agree");
_Static_assert((int)SV_CLIENT_LIST_LIMIT_MAX == (int)SV_MSG_LIST_LIMIT_MAX, "list limits agree");
_Static_assert(SV_MSG_REPLICAS_MAX == 16, "sv_status_shard.replicas size");

/* Errors and messages. */

static _Thread_local char tl_err[SV_CLIENT_ERRMSG_MAX];

__attribute__((format(printf, 1, 2))) static void set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof(tl_err), fmt, ap);
    va_end(ap);
}

const char *sv_client_errmsg(void)
{
    return tl_err;
}

void sv__set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof(tl_err), fmt, ap);
    va_end(ap);
}

void sv__clear_err(void)
{
    tl_err[0] = '\0';
}

const char *sv_client_strerror(int err)
{
    switch (err) {
    case SV_OK:
        return "ok";
    case SV_E_NOT_FOUND:
        return "not found";
    case SV_E_VERSION_CONFLICT:
        return "version conflict";
    case SV_E_UNAVAILABLE:
        return "unavailable";
    case SV_E_DENIED:
        return "denied";
    case SV_E_BAD_ARGUMENT:
        return "bad argument";
    case SV_E_TOO_BIG:
        return "too big";
    case SV_E_NO_SPACE:
        return "no space";
    case SV_E_CORRUPT:
        return "corrupt";
    case SV_E_TIMEOUT:
        return "timeout";
    case SV_E_TLS:
        return "TLS error";
    case SV_E_PROTOCOL:
        return "protocol error";
    case SV_E_IO:
        return "I/O error";
    case SV_E_INTERNAL:
        return "internal error";
    case SV_E_NOMEM:
        return "out of memory";
    case SV_E_READ_ONLY:
        return "read only";
    default:
        return "unknown error";
    }
}

static int status_err(int64_t st)
{
    switch (st) {
    case SV_ST_OK:
        return SV_OK;
    case SV_ST_NOT_FOUND:
        return SV_E_NOT_FOUND;
    case SV_ST_VERSION_CONFLICT:
        return SV_E_VERSION_CONFLICT;
    case SV_ST_NOT_LEADER:
    case SV_ST_UNAVAILABLE:
        return SV_E_UNAVAILABLE;
    case SV_ST_BAD_REQUEST:
        return SV_E_BAD_ARGUMENT;
    case SV_ST_TOO_BIG:
        return SV_E_TOO_BIG;
    case SV_ST_DENIED:
        return SV_E_DENIED;
    case SV_ST_NO_SPACE:
        return SV_E_NO_SPACE;
    case SV_ST_INTERNAL:
        return SV_E_INTERNAL;
    case SV_ST_CORRUPT:
        return SV_E_CORRUPT;
    case SV_ST_READ_ONLY:
        return SV_E_READ_ONLY;
    default:
        return SV_E_PROTOCOL;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
        v = now_ms() * 0x9E3779B97F4A7C15u ^ (uint64_t)getpid();
    }
    return v;
}

/* The client. */

struct conn {
    struct conn *next;
    int fd;
    struct sv_tls_conn *tls;
    struct sv_wire_decoder dec;
    uint8_t *pt; /* plaintext read from TLS, not yet fed to dec */
    size_t pt_pos, pt_len;
    uint64_t next_id;
    char addr[ADDR_MAX];
};

struct node_info {
    uint64_t id;
    char addr[ADDR_MAX];
    char zone[ADDR_MAX];
};

struct shard_info {
    uint64_t id;
    uint32_t n_replicas;
    uint64_t replicas[SV_MSG_REPLICAS_MAX];
    bool has_leader;
    uint64_t leader;
};

/* A write waiting for its answer, for ACK_BELOW. */
struct inflight {
    uint64_t seq;
    struct inflight *prev, *next;
};

struct sv_client {
    struct sv_tls_ctx *tls;
    char *token;
    uint64_t tenant;
    uint32_t deadline_ms;
    size_t n_endpoints;
    char (*endpoints)[ADDR_MAX];
    uint64_t session;
    atomic_uint_fast64_t next_seq;
    atomic_uint rr;

    pthread_mutex_t lock; /* everything below */
    bool map_loaded;
    uint64_t epoch; /* of the loaded map (0: its node sent none) */
    uint32_t n_shards;
    struct shard_info *shards; /* n_shards, indexed by shard id */
    size_t n_nodes;
    struct node_info *nodes;
    struct conn *idle;
    size_t n_idle;
    struct inflight *inflight;
    char meta_leader[ADDR_MAX]; /* where the meta group's leader last answered, "" unknown */
};

/* Connections: a non-blocking socket driven with poll() and an svtls client. */

static void conn_free(struct conn *k)
{
    if (k == NULL)
        return;
    if (k->fd >= 0)
        close(k->fd);
    sv_tls_conn_free(k->tls);
    sv_wire_decoder_free(&k->dec);
    free(k->pt);
    free(k);
}

/* Wait for events on fd until deadline: 0, SV_E_TIMEOUT or SV_E_IO. With
 * POLLRDHUP in events, the peer closing its side is SV_E_IO. */
static int wait_fd(int fd, short events, uint64_t deadline, char *why, size_t wl)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            snprintf(why, wl, "timed out");
            return SV_E_TIMEOUT;
        }
        uint64_t left = deadline - now;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0 && (p.revents & POLLRDHUP)) {
            snprintf(why, wl, "connection closed by peer");
            return SV_E_IO;
        }
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR) {
            snprintf(why, wl, "poll: %s", strerror(errno));
            return SV_E_IO;
        }
    }
}

static int conn_flush(struct conn *k, uint64_t deadline, char *why, size_t wl)
{
    uint8_t buf[IO_BUF];
    while (sv_tls_pending_out_len(k->tls) > 0) {
        size_t n = 0;
        sv_tls_pending_out(k->tls, buf, sizeof(buf), &n);
        for (size_t off = 0; off < n;) {
            ssize_t w = send(k->fd, buf + off, n - off, MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                /* A peer that closed (FIN) without reading what we sent leaves
                 * the window shut: POLLOUT alone would wait out the deadline.
                 * A server never half-closes, so nothing we send gets answered. */
                int rc = wait_fd(k->fd, POLLOUT | POLLRDHUP, deadline, why, wl);
                if (rc != 0)
                    return rc;
                continue;
            }
            snprintf(why, wl, "send: %s", strerror(errno));
            return SV_E_IO;
        }
    }
    return 0;
}

/* Receive ciphertext into the TLS connection (waits until deadline). */
static int conn_fill(struct conn *k, uint64_t deadline, char *why, size_t wl)
{
    uint8_t buf[IO_BUF];
    for (;;) {
        ssize_t r = recv(k->fd, buf, sizeof(buf), 0);
        if (r > 0) {
            int rc = sv_tls_feed(k->tls, buf, (size_t)r);
            if (rc != 0) {
                snprintf(why, wl, "TLS: %s", sv_tls_strerror(rc));
                return SV_E_PROTOCOL;
            }
            return 0;
        }
        if (r == 0) {
            snprintf(why, wl, "connection closed by peer");
            return SV_E_IO;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(why, wl, "recv: %s", strerror(errno));
            return SV_E_IO;
        }
        int rc = wait_fd(k->fd, POLLIN, deadline, why, wl);
        if (rc != 0)
            return rc;
    }
}

static int tls_err(struct conn *k, int rc, char *why, size_t wl)
{
    const char *m = sv_tls_conn_errmsg(k->tls);
    if (rc == SV_TLS_E_CLOSED) {
        snprintf(why, wl, "connection closed by peer");
        return SV_E_IO;
    }
    snprintf(why, wl, "TLS: %s%s%s", sv_tls_strerror(rc), m[0] ? ": " : "", m);
    return rc == SV_TLS_E_PROTOCOL ? SV_E_PROTOCOL : SV_E_TLS;
}

/* Split "host:port" or "[v6]:port". */
static int split_addr(const char *addr, char *host, size_t hl, char *port, size_t pl)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0')
        return -1;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= hl || strlen(colon + 1) >= pl)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, pl, "%s", colon + 1);
    return 0;
}

static int conn_open(struct sv_client *c, const char *addr, uint64_t deadline, struct conn **out,
                     char *why, size_t wl)
{
    char host[ADDR_MAX], port[32], ip[NI_MAXHOST];
    if (split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(why, wl, "bad address");
        return SV_E_BAD_ARGUMENT;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        snprintf(why, wl, "resolve: %s", gai_strerror(g));
        return SV_E_IO;
    }
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0) {
        freeaddrinfo(ai);
        snprintf(why, wl, "resolve: no numeric address");
        return SV_E_IO;
    }
    struct conn *k = calloc(1, sizeof(*k));
    if (k == NULL || (k->pt = malloc(IO_BUF)) == NULL) {
        free(k);
        freeaddrinfo(ai);
        snprintf(why, wl, "out of memory");
        return SV_E_NOMEM;
    }
    snprintf(k->addr, sizeof(k->addr), "%s", addr);
    sv_wire_decoder_init(&k->dec);
    k->next_id = 1;
    k->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc;
    if (k->fd < 0) {
        snprintf(why, wl, "socket: %s", strerror(errno));
        rc = SV_E_IO;
        goto err_after_conn;
    }
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(k->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            snprintf(why, wl, "connect: %s", strerror(errno));
            rc = SV_E_IO;
            goto err_after_conn;
        }
        rc = wait_fd(k->fd, POLLOUT, deadline, why, wl);
        if (rc != 0)
            goto err_after_conn;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            snprintf(why, wl, "connect: %s", strerror(soerr));
            rc = SV_E_IO;
            goto err_after_conn;
        }
    }
    char terr[SV_TLS_ERRMSG_MAX] = "";
    rc = sv_tls_conn_new(c->tls, ip, &k->tls, terr, sizeof(terr));
    if (rc != 0) {
        snprintf(why, wl, "TLS: %s", terr);
        rc = rc == -ENOMEM ? SV_E_NOMEM : SV_E_TLS;
        goto err_after_conn;
    }
    while (!sv_tls_handshake_done(k->tls)) {
        rc = conn_flush(k, deadline, why, wl);
        if (rc != 0)
            goto err_after_conn;
        size_t n = 0;
        int trc = sv_tls_read(k->tls, k->pt, IO_BUF, &n);
        if (trc != 0) {
            conn_flush(k, deadline, why, wl);
            rc = tls_err(k, trc, why, wl);
            goto err_after_conn;
        }
        if (n > 0) {
            /* Data already: the handshake is over; keep it for conn_recv. */
            k->pt_pos = 0;
            k->pt_len = n;
            break;
        }
        if (sv_tls_handshake_done(k->tls))
            break;
        rc = conn_flush(k, deadline, why, wl);
        if (rc == 0)
            rc = conn_fill(k, deadline, why, wl);
        if (rc != 0)
            goto err_after_conn;
    }
    rc = conn_flush(k, deadline, why, wl);
    if (rc != 0)
        goto err_after_conn;
    freeaddrinfo(ai);
    *out = k;
    return 0;

err_after_conn:
    conn_free(k);
    freeaddrinfo(ai);
    return rc;
}

static int conn_send(struct conn *k, uint32_t type, uint64_t id, const struct sv_msg *m,
                     uint64_t deadline, char *why, size_t wl)
{
    uint8_t *body = NULL, *frame = NULL;
    size_t body_len = 0, frame_len = 0;
    int rc = sv_msg_encode(m, &body, &body_len);
    if (rc != 0) {
        snprintf(why, wl, "encode: %s", sv_proto_strerror(rc));
        return rc == SV_PROTO_E_NOMEM ? SV_E_NOMEM : SV_E_BAD_ARGUMENT;
    }
    rc = sv_wire_encode(type, id, body, body_len, &frame, &frame_len);
    free(body);
    if (rc != 0) {
        snprintf(why, wl, "frame: %s", sv_wire_strerror(rc));
        return rc == -ENOMEM ? SV_E_NOMEM : SV_E_BAD_ARGUMENT;
    }
    for (;;) {
        int trc = sv_tls_write(k->tls, frame, frame_len);
        if (trc == SV_TLS_E_BUFFER_FULL) {
            rc = conn_flush(k, deadline, why, wl);
            if (rc != 0)
                break;
            continue;
        }
        if (trc != 0)
            rc = tls_err(k, trc, why, wl);
        else
            rc = conn_flush(k, deadline, why, wl);
        break;
    }
    free(frame);
    return rc;
}

void sv__resp_free(struct sv__resp *r)
{
    sv_msg_free(&r->m);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static void resp_free(struct sv__resp *r)
{
    sv__resp_free(r);
}

static int conn_recv(struct conn *k, uint64_t deadline, struct sv__resp *r, char *why, size_t wl)
{
    memset(r, 0, sizeof(*r));
    for (;;) {
        struct sv_wire_frame f;
        int rc = sv_wire_next(&k->dec, &f);
        if (rc < 0) {
            snprintf(why, wl, "bad frame: %s", k->dec.errmsg);
            return SV_E_PROTOCOL;
        }
        if (rc == 1) {
            r->type = f.type;
            r->id = f.req_id;
            r->body = malloc(f.body_len ? f.body_len : 1);
            if (r->body == NULL) {
                snprintf(why, wl, "out of memory");
                return SV_E_NOMEM;
            }
            memcpy(r->body, f.body, f.body_len);
            char derr[128] = "";
            rc = sv_msg_decode(r->body, f.body_len, &r->m, derr, sizeof(derr));
            if (rc == 0 && !SV_MSG_HAS(&r->m, SV_F_STATUS)) {
                rc = SV_PROTO_E_MALFORMED;
                snprintf(derr, sizeof(derr), "no status");
            }
            if (rc != 0) {
                snprintf(why, wl, "bad response: %s", derr);
                resp_free(r);
                return SV_E_PROTOCOL;
            }
            return 0;
        }
        if (k->pt_pos < k->pt_len) {
            rc = sv_wire_feed(&k->dec, k->pt + k->pt_pos, k->pt_len - k->pt_pos);
            if (rc != 0) {
                snprintf(why, wl, "bad frame: %s", k->dec.errmsg);
                return rc == -ENOMEM ? SV_E_NOMEM : SV_E_PROTOCOL;
            }
            k->pt_pos = k->pt_len = 0;
            continue;
        }
        size_t n = 0;
        rc = sv_tls_read(k->tls, k->pt, IO_BUF, &n);
        if (rc != 0)
            return tls_err(k, rc, why, wl);
        if (n > 0) {
            k->pt_pos = 0;
            k->pt_len = n;
            continue;
        }
        rc = conn_flush(k, deadline, why, wl);
        if (rc == 0)
            rc = conn_fill(k, deadline, why, wl);
        if (rc != 0)
            return rc;
    }
}

/* One request, one response on k. */
static int conn_call(struct conn *k, uint32_t type, const struct sv_msg *m, uint64_t deadline,
                     struct sv__resp *r, char *why, size_t wl)
{
    uint64_t id = k->next_id++;
    int rc = conn_send(k, type, id, m, deadline, why, wl);
    if (rc != 0)
        return rc;
    rc = conn_recv(k, deadline, r, why, wl);
    if (rc != 0)
        return rc;
    if (r->type != (type | SV_MSG_RESP) || r->id != id) {
        snprintf(why, wl, "response type %u id %llu does not match request", (unsigned)r->type,
                 (unsigned long long)r->id);
        resp_free(r);
        return SV_E_PROTOCOL;
    }
    return 0;
}

/* Pool. */

static int pool_get(struct sv_client *c, const char *addr, uint64_t deadline, struct conn **out,
                    char *why, size_t wl)
{
    for (;;) {
        pthread_mutex_lock(&c->lock);
        struct conn **pp = &c->idle, *k = NULL;
        for (; *pp != NULL; pp = &(*pp)->next) {
            if (strcmp((*pp)->addr, addr) == 0) {
                k = *pp;
                *pp = k->next;
                c->n_idle--;
                break;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (k == NULL)
            break;
        /* An idle connection must have nothing to read: otherwise the peer closed it. */
        struct pollfd p = {.fd = k->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 0) {
            k->next = NULL;
            *out = k;
            return 0;
        }
        conn_free(k);
    }
    return conn_open(c, addr, deadline, out, why, wl);
}

static void pool_put(struct sv_client *c, struct conn *k)
{
    pthread_mutex_lock(&c->lock);
    if (c->n_idle < POOL_IDLE_MAX) {
        k->next = c->idle;
        c->idle = k;
        c->n_idle++;
        k = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    conn_free(k);
}

/* Open and close. */

int sv_client_open(const struct sv_client_options *opts, struct sv_client **out)
{
    tl_err[0] = '\0';
    if (opts == NULL || opts->endpoints == NULL || opts->ca_file == NULL) {
        set_err("endpoints and CA file are required");
        return SV_E_BAD_ARGUMENT;
    }
    struct sv_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        set_err("out of memory");
        return SV_E_NOMEM;
    }
    int rc = SV_E_NOMEM;
    c->endpoints = calloc(SV_CLIENT_ENDPOINTS_MAX, sizeof(*c->endpoints));
    if (c->endpoints == NULL)
        goto err_after_client;
    for (const char *p = opts->endpoints; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            char host[ADDR_MAX], port[32];
            if (c->n_endpoints == SV_CLIENT_ENDPOINTS_MAX || n >= ADDR_MAX) {
                set_err("too many or too long endpoints");
                rc = SV_E_BAD_ARGUMENT;
                goto err_after_client;
            }
            memcpy(c->endpoints[c->n_endpoints], p, n);
            c->endpoints[c->n_endpoints][n] = '\0';
            if (split_addr(c->endpoints[c->n_endpoints], host, sizeof(host), port, sizeof(port)) !=
                0) {
                set_err("endpoint \"%s\" is not host:port", c->endpoints[c->n_endpoints]);
                rc = SV_E_BAD_ARGUMENT;
                goto err_after_client;
            }
            c->n_endpoints++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (c->n_endpoints == 0) {
        set_err("no endpoints");
        rc = SV_E_BAD_ARGUMENT;
        goto err_after_client;
    }
    if (opts->tenant != 0) {
        /* Nodes store everything under tenant 0 until tokens name tenants. */
        set_err("tenant %llu: only tenant 0 exists until access tokens arrive",
                (unsigned long long)opts->tenant);
        rc = SV_E_BAD_ARGUMENT;
        goto err_after_client;
    }
    if (opts->token != NULL && (c->token = strdup(opts->token)) == NULL)
        goto err_after_client;
    struct sv_tls_config cfg = {.role = SV_TLS_CLIENT, .ca_file = opts->ca_file};
    char terr[256] = "";
    int trc = sv_tls_ctx_new(&cfg, &c->tls, terr, sizeof(terr));
    if (trc != 0) {
        set_err("%s", terr);
        rc = trc == -ENOMEM ? SV_E_NOMEM : SV_E_TLS;
        goto err_after_client;
    }
    c->tenant = opts->tenant;
    c->deadline_ms = opts->deadline_ms ? opts->deadline_ms : SV_CLIENT_DEADLINE_MS_DEFAULT;
    c->session = random64();
    atomic_init(&c->next_seq, 1);
    atomic_init(&c->rr, (unsigned)(c->session & 0xffff));
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;

err_after_client:
    if (rc == SV_E_NOMEM)
        set_err("out of memory");
    free(c->token);
    free(c->endpoints);
    free(c);
    return rc;
}

void sv_client_close(struct sv_client *c)
{
    if (c == NULL)
        return;
    while (c->idle != NULL) {
        struct conn *k = c->idle;
        c->idle = k->next;
        conn_free(k);
    }
    pthread_mutex_destroy(&c->lock);
    sv_tls_ctx_free(c->tls);
    free(c->shards);
    free(c->nodes);
    free(c->token);
    free(c->endpoints);
    free(c);
}

/* Retrying operations. */

struct op {
    struct sv_client *c;
    uint64_t start, deadline;
    uint32_t backoff_ms;
    int attempts;
    int last_err;
    bool map_stale;
    bool any_replica; /* a stale read: any replica may answer, the leader is not preferred */
    bool followed;    /* a READ_ONLY was followed to the other site (once per call) */
    char tried[TRIED_MAX];
    char redirect[ADDR_MAX]; /* where a NOT_LEADER said to go, "" when none */
};

static void op_init(struct op *op, struct sv_client *c)
{
    memset(op, 0, sizeof(*op));
    op->c = c;
    op->start = now_ms();
    op->deadline = op->start + c->deadline_ms;
    op->backoff_ms = BACKOFF_MIN_MS;
    tl_err[0] = '\0';
}

/* Remember a failed attempt for the final message. */
static void op_note(struct op *op, const char *addr, int err, const char *why)
{
    op->attempts++;
    op->last_err = err;
    char item[160];
    snprintf(item, sizeof(item), "%.60s (%.90s)", addr, why);
    if (strstr(op->tried, item) != NULL)
        return;
    size_t len = strlen(op->tried);
    if (len + strlen(item) + 3 < sizeof(op->tried))
        snprintf(op->tried + len, sizeof(op->tried) - len, "%s%s", len ? ", " : "", item);
}

/* After a failed attempt: sleep the jittered backoff and return 0 to retry,
 * or the final error once the deadline passed. */
static int op_backoff(struct op *op)
{
    op->map_stale = true;
    op->redirect[0] = '\0';
    uint64_t now = now_ms();
    if (now < op->deadline) {
        uint32_t b = op->backoff_ms;
        uint64_t jit = b / 2 + random64() % (b / 2 + 1);
        uint64_t left = op->deadline - now;
        sleep_ms(jit < left ? jit : left);
        op->backoff_ms = b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
        if (now_ms() < op->deadline)
            return 0;
    }
    int err =
        op->last_err == SV_E_TIMEOUT || op->last_err == SV_E_TLS ? op->last_err : SV_E_UNAVAILABLE;
    set_err("gave up after %d attempts in %llu ms; tried %s", op->attempts,
            (unsigned long long)(now_ms() - op->start), op->tried[0] ? op->tried : "nothing");
    return err;
}

static void copy_bytes(char *dst, size_t cap, struct sv_bytes b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    memcpy(dst, b.p, n);
    dst[n] = '\0';
}

/* Install the map from a MAP response. */
static int map_install(struct sv_client *c, const struct sv_msg *m, char *why, size_t wl)
{
    if (!SV_MSG_HAS(m, SV_F_N_SHARDS) || m->n_shards == 0 || m->n_shards > SV_MSG_ITEMS_MAX) {
        snprintf(why, wl, "MAP without a valid N_SHARDS");
        return SV_E_PROTOCOL;
    }
    uint32_t ns = (uint32_t)m->n_shards;
    size_t max_nodes = 0;
    for (uint32_t i = 0; i < m->n_items; i++)
        max_nodes += !SV_ITEM_HAS(&m->items[i], SV_I_REPLICAS);
    if (max_nodes > NODES_MAX)
        max_nodes = NODES_MAX;
    struct shard_info *shards = calloc(ns, sizeof(*shards));
    struct node_info *nodes = calloc(max_nodes ? max_nodes : 1, sizeof(*nodes));
    if (shards == NULL || nodes == NULL) {
        free(shards);
        free(nodes);
        snprintf(why, wl, "out of memory");
        return SV_E_NOMEM;
    }
    for (uint32_t i = 0; i < ns; i++)
        shards[i].id = i;
    size_t nn = 0;
    for (uint32_t i = 0; i < m->n_items; i++) {
        const struct sv_item *it = &m->items[i];
        if (!SV_ITEM_HAS(it, SV_I_ID))
            continue;
        if (SV_ITEM_HAS(it, SV_I_REPLICAS)) {
            if (it->id >= ns)
                continue;
            struct shard_info *s = &shards[it->id];
            s->n_replicas = it->n_replicas;
            memcpy(s->replicas, it->replicas, sizeof(s->replicas));
            s->has_leader = SV_ITEM_HAS(it, SV_I_LEADER);
            s->leader = it->leader;
        } else if (nn < max_nodes && SV_ITEM_HAS(it, SV_I_ADDR)) {
            nodes[nn].id = it->id;
            copy_bytes(nodes[nn].addr, sizeof(nodes[nn].addr), it->addr);
            if (SV_ITEM_HAS(it, SV_I_ZONE))
                copy_bytes(nodes[nn].zone, sizeof(nodes[nn].zone), it->zone);
            nn++;
        }
    }
    pthread_mutex_lock(&c->lock);
    free(c->shards);
    free(c->nodes);
    c->shards = shards;
    c->n_shards = ns;
    c->nodes = nodes;
    c->n_nodes = nn;
    c->epoch = SV_MSG_HAS(m, SV_F_EPOCH) ? m->epoch : 0;
    c->map_loaded = true;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static bool addr_in_map_locked(const struct sv_client *c, const char *addr)
{
    for (size_t i = 0; i < c->n_nodes; i++)
        if (strcmp(c->nodes[i].addr, addr) == 0)
            return true;
    return false;
}

/* MAP from the node at addr into *r (0: an OK answer, the caller frees it);
 * otherwise the failure, noted in op. */
static int map_fetch(struct op *op, const char *addr, struct sv__resp *r)
{
    char why[256] = "";
    struct conn *k = NULL;
    int rc = pool_get(op->c, addr, op->deadline, &k, why, sizeof(why));
    if (rc != 0) {
        op_note(op, addr, rc, why);
        return rc;
    }
    struct sv_msg m = {0};
    rc = conn_call(k, SV_MSG_MAP, &m, op->deadline, r, why, sizeof(why));
    if (rc != 0) {
        conn_free(k);
        op_note(op, addr, rc, why);
        return rc;
    }
    pool_put(op->c, k);
    if (r->m.status != SV_ST_OK) {
        rc = status_err(r->m.status);
        snprintf(why, sizeof(why), "MAP: %s", sv_status_name((int)r->m.status));
        op_note(op, addr, rc, why);
        resp_free(r);
        return rc;
    }
    return 0;
}

/* Install the OK MAP answer r (freed here) from addr: 0, or the failure noted. */
static int map_take(struct op *op, const char *addr, struct sv__resp *r)
{
    char why[256] = "";
    int rc = map_install(op->c, &r->m, why, sizeof(why));
    resp_free(r);
    if (rc != 0) {
        op_note(op, addr, rc, why);
        return rc;
    }
    op->map_stale = false;
    return 0;
}

static bool map_inactive(const struct sv_msg *m);
static bool op_other_site(struct op *op, bool want_primary);

/* Fetch MAP, once each, from the endpoints that are nodes of the loaded map
 * (every endpoint while none is loaded), then from the map's nodes, then
 * from the other endpoints. The endpoints may name the nodes of two sites,
 * and a node answers its own site's map: asking the loaded map's site first
 * keeps the client on the site it holds (the one a READ_ONLY was followed
 * to, op_follow_site); the other site's map is taken only when no node of
 * this one answers, or when the map taken is a standby's and the other
 * site's says it is the primary. */
static int op_refresh_map(struct op *op)
{
    struct sv_client *c = op->c;
    unsigned start = atomic_fetch_add(&c->rr, 1);
    uint64_t ours = 0; /* bit i: endpoint i is asked in the first pass */
    _Static_assert(SV_CLIENT_ENDPOINTS_MAX <= 64, "one bit per endpoint");
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (!c->map_loaded || addr_in_map_locked(c, c->endpoints[i]))
            ours |= (uint64_t)1 << i;
    pthread_mutex_unlock(&c->lock);
    for (int pass = 0; pass < 3; pass++) {
        size_t n = pass == 1 ? NODES_MAX : c->n_endpoints;
        for (size_t i = 0; i < n; i++) {
            char addr[ADDR_MAX];
            if (pass == 1) {
                pthread_mutex_lock(&c->lock);
                bool have = i < c->n_nodes;
                if (have)
                    snprintf(addr, sizeof(addr), "%s", c->nodes[i].addr);
                pthread_mutex_unlock(&c->lock);
                if (!have)
                    break;
            } else {
                size_t j = (start + i) % c->n_endpoints;
                if (((ours >> j) & 1u) != (pass == 0 ? 1u : 0u))
                    continue;
                snprintf(addr, sizeof(addr), "%s", c->endpoints[j]);
            }
            if (now_ms() >= op->deadline)
                return SV_E_UNAVAILABLE;
            struct sv__resp r;
            if (map_fetch(op, addr, &r) != 0)
                continue;
            /* A standby's (or fenced site's) map: the other site's, when
             * the endpoints name one and it is the primary, serves reads of
             * the active site and takes the writes. */
            bool inactive = map_inactive(&r.m);
            if (map_take(op, addr, &r) == 0) {
                if (inactive)
                    op_other_site(op, true);
                return 0;
            }
        }
    }
    return SV_E_UNAVAILABLE;
}

/* Whether a MAP answer names a node of the loaded map (same site). */
static bool map_shares_node_locked(const struct sv_client *c, const struct sv_msg *m)
{
    for (uint32_t i = 0; i < m->n_items; i++) {
        const struct sv_item *it = &m->items[i];
        char a[ADDR_MAX];
        if (SV_ITEM_HAS(it, SV_I_REPLICAS) || !SV_ITEM_HAS(it, SV_I_ADDR))
            continue;
        copy_bytes(a, sizeof(a), it->addr);
        if (addr_in_map_locked(c, a))
            return true;
    }
    return false;
}

/* A MAP answer from a site that takes no writes (KEY: its role, when the
 * node has a peer site). */
static bool map_inactive(const struct sv_msg *m)
{
    return SV_MSG_HAS(m, SV_F_KEY) && !(m->key.len == 7 && !memcmp(m->key.p, "primary", 7));
}

/* The map of the other site than the loaded map's: the endpoints that are
 * not nodes of the loaded map are asked for MAP in their configured order,
 * and the first map that names none of the loaded map's nodes (an endpoint
 * spelled otherwise than the map spells it may be of this very site), and
 * with want_primary says its site is the primary, is installed: later calls
 * go there too. True when one was. */
static bool op_other_site(struct op *op, bool want_primary)
{
    struct sv_client *c = op->c;
    for (size_t i = 0; i < c->n_endpoints && now_ms() < op->deadline; i++) {
        const char *e = c->endpoints[i];
        pthread_mutex_lock(&c->lock);
        bool ours = addr_in_map_locked(c, e);
        pthread_mutex_unlock(&c->lock);
        struct sv__resp r;
        if (ours || map_fetch(op, e, &r) != 0)
            continue;
        pthread_mutex_lock(&c->lock);
        bool same = map_shares_node_locked(c, &r.m);
        pthread_mutex_unlock(&c->lock);
        if (same || (want_primary && map_inactive(&r.m))) {
            resp_free(&r);
            continue;
        }
        if (map_take(op, e, &r) == 0)
            return true;
    }
    return false;
}

/* A write was answered READ_ONLY by the node at addr: its site is not the
 * active one. When addr is a node of the loaded map, the other site's map
 * is installed (op_other_site). When addr is not a node of the loaded map,
 * another call already moved the client: nothing to fetch. Returns true
 * when the write is to go again on the loaded map; false when no other
 * site's map was found (the READ_ONLY is final). */
static bool op_follow_site(struct op *op, const char *addr)
{
    struct sv_client *c = op->c;
    pthread_mutex_lock(&c->lock);
    bool moved = !addr_in_map_locked(c, addr);
    pthread_mutex_unlock(&c->lock);
    return moved || op_other_site(op, false);
}

static int op_ensure_map(struct op *op)
{
    for (;;) {
        pthread_mutex_lock(&op->c->lock);
        bool loaded = op->c->map_loaded;
        pthread_mutex_unlock(&op->c->lock);
        if (loaded && !op->map_stale)
            return 0;
        if (op_refresh_map(op) == 0)
            return 0;
        int rc = op_backoff(op);
        if (rc != 0)
            return rc;
    }
}

static uint32_t shard_count(struct sv_client *c)
{
    pthread_mutex_lock(&c->lock);
    uint32_t n = c->n_shards;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static const char *node_addr_locked(struct sv_client *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].id == id)
            return c->nodes[i].addr;
    return NULL;
}

/* Where to send a request for shard: a redirect, the leader (unless any
 * replica will do), a replica in turn, any node. */
static void op_pick(struct op *op, uint32_t shard, char *addr, size_t cap)
{
    struct sv_client *c = op->c;
    if (op->redirect[0] != '\0') {
        snprintf(addr, cap, "%s", op->redirect);
        return;
    }
    unsigned rr = atomic_fetch_add(&c->rr, 1);
    const char *a = NULL;
    pthread_mutex_lock(&c->lock);
    if (shard < c->n_shards) {
        struct shard_info *s = &c->shards[shard];
        if (s->has_leader && !op->any_replica)
            a = node_addr_locked(c, s->leader);
        for (uint32_t i = 0; a == NULL && i < s->n_replicas; i++)
            a = node_addr_locked(c, s->replicas[(rr + i) % s->n_replicas]);
    }
    if (a == NULL && c->n_nodes > 0)
        a = c->nodes[rr % c->n_nodes].addr;
    if (a == NULL)
        a = c->endpoints[rr % c->n_endpoints];
    snprintf(addr, cap, "%s", a);
    pthread_mutex_unlock(&c->lock);
}

/* Apply a NOT_LEADER hint; returns true when it names somewhere to go. */
static bool op_redirect(struct op *op, uint32_t shard, const struct sv_msg *m)
{
    struct sv_client *c = op->c;
    bool go = false;
    pthread_mutex_lock(&c->lock);
    /* A node with a newer map: the shard may have moved; fetch the map
     * before the next attempt. */
    if (SV_MSG_HAS(m, SV_F_EPOCH) && m->epoch > c->epoch)
        op->map_stale = true;
    if (SV_MSG_HAS(m, SV_F_LEADER) && shard < c->n_shards) {
        c->shards[shard].has_leader = true;
        c->shards[shard].leader = m->leader;
        const char *a = node_addr_locked(c, m->leader);
        if (a != NULL) {
            snprintf(op->redirect, sizeof(op->redirect), "%s", a);
            go = true;
        }
    }
    if (SV_MSG_HAS(m, SV_F_ADDR) && m->addr.len > 0 && m->addr.len < ADDR_MAX) {
        copy_bytes(op->redirect, sizeof(op->redirect), m->addr);
        go = true;
        if (SV_MSG_HAS(m, SV_F_LEADER)) {
            for (size_t i = 0; i < c->n_nodes; i++)
                if (c->nodes[i].id == m->leader)
                    snprintf(c->nodes[i].addr, sizeof(c->nodes[i].addr), "%s", op->redirect);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return go;
}

/* Exactly-once bookkeeping. */

static void inflight_add(struct sv_client *c, struct inflight *f)
{
    f->seq = atomic_fetch_add(&c->next_seq, 1);
    pthread_mutex_lock(&c->lock);
    f->prev = NULL;
    f->next = c->inflight;
    if (c->inflight != NULL)
        c->inflight->prev = f;
    c->inflight = f;
    pthread_mutex_unlock(&c->lock);
}

static void inflight_del(struct sv_client *c, struct inflight *f)
{
    pthread_mutex_lock(&c->lock);
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        c->inflight = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    pthread_mutex_unlock(&c->lock);
}

static uint64_t inflight_min(struct sv_client *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t lo = UINT64_MAX;
    for (struct inflight *f = c->inflight; f != NULL; f = f->next)
        if (f->seq < lo)
            lo = f->seq;
    pthread_mutex_unlock(&c->lock);
    return lo;
}

/* Send m (type) to shard's leader until an answer other than NOT_LEADER or
 * UNAVAILABLE arrives (0, *r holds it) or the deadline passes (error set).
 * READ_ONLY is such an answer: every node of a standby or fenced site gives
 * it, so no other node of the site is tried, even one it names in a LEADER
 * or ADDR. Once per call, the write goes instead to the other site, when the
 * endpoints name one (op_follow_site): the same m, so the same session and
 * seq, and a site that applied it already answers its result; a second
 * READ_ONLY (both sites read-only) is final. */
static int op_call(struct op *op, uint32_t shard, uint32_t type, struct sv_msg *m,
                   struct sv__resp *r)
{
    struct sv_client *c = op->c;
    int redirects = 0;
    for (;;) {
        int rc = op_ensure_map(op);
        if (rc != 0)
            return rc;
        char addr[ADDR_MAX], why[256] = "";
        op_pick(op, shard, addr, sizeof(addr));
        op->redirect[0] = '\0';
        m->shard = shard;
        SV_MSG_SET(m, SV_F_SHARD);
        if (SV_MSG_HAS(m, SV_F_SEQ)) {
            m->ack_below = inflight_min(c);
            SV_MSG_SET(m, SV_F_ACK_BELOW);
        }
        struct conn *k = NULL;
        rc = pool_get(c, addr, op->deadline, &k, why, sizeof(why));
        if (rc == 0) {
            rc = conn_call(k, type, m, op->deadline, r, why, sizeof(why));
            if (rc != 0)
                conn_free(k);
            else
                pool_put(c, k);
        }
        if (rc == SV_E_NOMEM || rc == SV_E_BAD_ARGUMENT) {
            set_err("%s", why);
            return rc;
        }
        if (rc != 0) {
            op_note(op, addr, rc, why);
        } else if (r->m.status == SV_ST_NOT_LEADER) {
            bool go = op_redirect(op, shard, &r->m);
            snprintf(why, sizeof(why), "not leader");
            op_note(op, addr, SV_E_UNAVAILABLE, why);
            resp_free(r);
            if (go && ++redirects <= REDIRECTS_MAX)
                continue;
        } else if (r->m.status == SV_ST_UNAVAILABLE) {
            snprintf(why, sizeof(why), "unavailable%s%.*s", r->m.msg.len ? ": " : "",
                     (int)(r->m.msg.len > 100 ? 100 : r->m.msg.len), (const char *)r->m.msg.p);
            op_note(op, addr, SV_E_UNAVAILABLE, why);
            resp_free(r);
        } else if (r->m.status == SV_ST_READ_ONLY && !op->followed) {
            op->followed = true;
            if (!op_follow_site(op, addr))
                return 0; /* no other site: *r, the READ_ONLY, is final */
            resp_free(r);
            redirects = 0;
            continue;
        } else {
            return 0;
        }
        redirects = 0;
        rc = op_backoff(op);
        if (rc != 0)
            return rc;
    }
}

static int status_fail(const struct sv__resp *r);

int sv__shard_req(struct sv_client *c, uint32_t shard, uint32_t type, struct sv_msg *m,
                  struct sv__resp *r)
{
    struct op op;
    op_init(&op, c);
    int rc = op_call(&op, shard, type, m, r);
    if (rc == 0 && r->m.status != SV_ST_OK) {
        rc = status_fail(r);
        resp_free(r);
    }
    return rc;
}

/* Turn a non-OK status into an error with the server's message. */
static int status_fail(const struct sv__resp *r)
{
    int err = status_err(r->m.status);
    if (r->m.msg.len > 0)
        set_err("%.*s", (int)(r->m.msg.len > 400 ? 400 : r->m.msg.len), (const char *)r->m.msg.p);
    else
        set_err("%s", sv_status_name((int)r->m.status));
    return err;
}

/* Internals for admin.c (client_int.h). */

int sv__status_err(int64_t st)
{
    return status_err(st);
}

int sv__status_fail(const struct sv__resp *r)
{
    return status_fail(r);
}

uint64_t sv__now_ms(void)
{
    return now_ms();
}

void sv__sleep_ms(uint64_t ms)
{
    sleep_ms(ms);
}

uint64_t sv__jitter_ms(uint32_t backoff_ms)
{
    return backoff_ms / 2 + random64() % (backoff_ms / 2 + 1);
}

uint32_t sv__deadline_ms(struct sv_client *c)
{
    return c->deadline_ms;
}

int sv__call_addr(struct sv_client *c, const char *addr, uint32_t type, const struct sv_msg *m,
                  uint64_t deadline, struct sv__resp *r, char *why, size_t wl)
{
    struct conn *k = NULL;
    int rc = pool_get(c, addr, deadline, &k, why, wl);
    if (rc != 0)
        return rc;
    rc = conn_call(k, type, m, deadline, r, why, wl);
    if (rc != 0)
        conn_free(k);
    else
        pool_put(c, k);
    return rc;
}

static bool add_candidate(char (*addrs)[SV_CLIENT_NAME_MAX + 1], size_t *n, size_t cap,
                          const char *a)
{
    if (a[0] == '\0' || *n == cap)
        return *n < cap;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(addrs[i], a) == 0)
            return true;
    snprintf(addrs[(*n)++], SV_CLIENT_NAME_MAX + 1, "%s", a);
    return true;
}

size_t sv__candidates(struct sv_client *c, char (*addrs)[SV_CLIENT_NAME_MAX + 1], size_t cap)
{
    size_t n = 0;
    unsigned start = atomic_fetch_add(&c->rr, 1);
    pthread_mutex_lock(&c->lock);
    add_candidate(addrs, &n, cap, c->meta_leader);
    for (size_t i = 0; i < c->n_endpoints; i++)
        add_candidate(addrs, &n, cap, c->endpoints[(start + i) % c->n_endpoints]);
    for (size_t i = 0; i < c->n_nodes; i++)
        add_candidate(addrs, &n, cap, c->nodes[i].addr);
    pthread_mutex_unlock(&c->lock);
    return n;
}

bool sv__node_addr(struct sv_client *c, uint64_t id, uint64_t deadline, char *addr, size_t cap)
{
    for (int pass = 0; pass < 2; pass++) {
        pthread_mutex_lock(&c->lock);
        const char *a = node_addr_locked(c, id);
        if (a != NULL)
            snprintf(addr, cap, "%s", a);
        pthread_mutex_unlock(&c->lock);
        if (a != NULL)
            return true;
        if (pass == 1 || now_ms() >= deadline)
            break;
        /* A map that does not name the node may be missing or old: read it once more. */
        struct op op;
        op_init(&op, c);
        op.deadline = deadline;
        char keep[SV_CLIENT_ERRMSG_MAX];
        snprintf(keep, sizeof(keep), "%s", tl_err);
        if (op_refresh_map(&op) != 0) {
            snprintf(tl_err, sizeof(tl_err), "%s", keep);
            break;
        }
        snprintf(tl_err, sizeof(tl_err), "%s", keep);
    }
    return false;
}

void sv__set_meta_leader(struct sv_client *c, const char *addr)
{
    pthread_mutex_lock(&c->lock);
    snprintf(c->meta_leader, sizeof(c->meta_leader), "%s", addr);
    pthread_mutex_unlock(&c->lock);
}

static int check_names(const char *bucket, const char *key)
{
    if (bucket == NULL || !sv_bucket_valid(bucket, strlen(bucket))) {
        set_err("invalid bucket name");
        return SV_E_BAD_ARGUMENT;
    }
    if (key != NULL && !sv_key_valid(key, strlen(key))) {
        set_err("invalid key");
        return SV_E_BAD_ARGUMENT;
    }
    return 0;
}

static void msg_target(struct sv_client *c, struct sv_msg *m, const char *bucket, const char *key)
{
    m->tenant = c->tenant;
    SV_MSG_SET(m, SV_F_TENANT);
    m->bucket = (struct sv_bytes){(const uint8_t *)bucket, strlen(bucket)};
    SV_MSG_SET(m, SV_F_BUCKET);
    if (key != NULL) {
        m->key = (struct sv_bytes){(const uint8_t *)key, strlen(key)};
        SV_MSG_SET(m, SV_F_KEY);
    }
}

static uint32_t object_shard(struct sv_client *c, const char *bucket, const char *key)
{
    uint64_t h = sv_object_hash(c->tenant, bucket, strlen(bucket), key, strlen(key));
    return sv_shard_of(h, shard_count(c));
}

/* A single-request object operation: map, route, call. */
static int object_call(struct op *op, const char *bucket, const char *key, uint32_t type,
                       struct sv_msg *m, struct sv__resp *r)
{
    int rc = op_ensure_map(op);
    if (rc != 0)
        return rc;
    return op_call(op, object_shard(op->c, bucket, key), type, m, r);
}

static void set_if_version(struct sv_msg *m, int64_t if_version)
{
    if (if_version >= 0) {
        m->if_version = (uint64_t)if_version;
        SV_MSG_SET(m, SV_F_IF_VERSION);
    }
}

/* A write (PUT, PUT_COMMIT, DELETE) with its session and a fresh sequence
 * number: every retry re-sends the same pair, so it applies once. */
static int write_call(struct op *op, const char *bucket, const char *key, uint32_t type,
                      struct sv_msg *m, uint64_t *version)
{
    struct inflight f;
    inflight_add(op->c, &f);
    m->session = op->c->session;
    m->seq = f.seq;
    SV_MSG_SET(m, SV_F_SESSION);
    SV_MSG_SET(m, SV_F_SEQ);
    struct sv__resp r;
    int rc = object_call(op, bucket, key, type, m, &r);
    inflight_del(op->c, &f);
    if (rc != 0)
        return rc;
    if (r.m.status != SV_ST_OK) {
        rc = status_fail(&r);
    } else if (version != NULL) {
        *version = r.m.version;
    }
    resp_free(&r);
    return rc;
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
    EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}

static int put_single(struct op *op, const char *bucket, const char *key, const void *data,
                      size_t len, int64_t if_version, uint64_t *version)
{
    struct sv_msg m = {0};
    msg_target(op->c, &m, bucket, key);
    m.size = len;
    SV_MSG_SET(&m, SV_F_SIZE);
    sha256(len ? data : "", len, m.sha256);
    SV_MSG_SET(&m, SV_F_SHA256);
    m.data = (struct sv_bytes){len ? data : (const uint8_t *)"", len};
    SV_MSG_SET(&m, SV_F_DATA);
    set_if_version(&m, if_version);
    return write_call(op, bucket, key, SV_MSG_PUT, &m, version);
}

/* Streamed puts: chunks of SV_MSG_CHUNK_MAX bytes, up to WINDOW in flight. */

struct mem_src {
    const uint8_t *p;
    size_t len, off;
};

static int64_t mem_read(void *arg, void *buf, size_t cap)
{
    struct mem_src *m = arg;
    size_t n = m->len - m->off < cap ? m->len - m->off : cap;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (int64_t)n;
}

/* Read until cap bytes or the end of the stream. */
static int fill(sv_client_read_cb read, void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    size_t n = 0;
    while (n < cap) {
        int64_t r = read(arg, buf + n, cap - n);
        if (r < 0) {
            set_err("the read callback failed");
            return SV_E_IO;
        }
        if (r == 0)
            break;
        if ((uint64_t)r > cap - n) {
            set_err("the read callback returned more than asked");
            return SV_E_BAD_ARGUMENT;
        }
        n += (size_t)r;
    }
    *got = n;
    return 0;
}

struct up_slot {
    uint8_t *buf; /* SV_MSG_CHUNK_MAX bytes, reused */
    size_t len;
    uint64_t idx, req_id;
    bool used, sent;
};

static void slots_unsend(struct up_slot *s)
{
    for (int i = 0; i < WINDOW; i++)
        s[i].sent = false;
}

/* A windowed transfer lost connection *k: a failure, or a NOT_LEADER answer
 * (follow: its redirect is followed at once). Free it and, unless following,
 * back off. The caller marks the window's requests unsent. Returns 0 to go
 * on, or the operation's final error. */
static int window_lost(struct op *op, struct conn **k, bool follow)
{
    conn_free(*k);
    *k = NULL;
    return follow ? 0 : op_backoff(op);
}

/* A windowed transfer without a connection: refresh a stale map (its error,
 * returned, ends the transfer), pick where shard's requests go and connect;
 * *fail gets pool_get's result (a failure there is retried like a lost one). */
static int op_connect(struct op *op, uint32_t shard, char *addr, size_t cap, struct conn **k,
                      int *fail, char *why, size_t why_len)
{
    if (op->map_stale) {
        int rc = op_ensure_map(op);
        if (rc != 0)
            return rc;
    }
    op_pick(op, shard, addr, cap);
    op->redirect[0] = '\0';
    *fail = pool_get(op->c, addr, op->deadline, k, why, why_len);
    return 0;
}

/* Send one chunk of an upload on k; marks it sent. 0 or the conn_send error. */
static int chunk_send(struct sv_client *c, struct conn *k, const char *bucket, const char *key,
                      uint64_t upload, uint32_t shard, struct up_slot *slot, uint64_t deadline,
                      char *why, size_t why_len)
{
    struct sv_msg cm = {0};
    msg_target(c, &cm, bucket, key);
    cm.upload = upload;
    cm.chunk = slot->idx;
    cm.shard = shard;
    cm.data = (struct sv_bytes){slot->buf, slot->len};
    cm.fields |= 1u << SV_F_UPLOAD | 1u << SV_F_CHUNK | 1u << SV_F_SHARD | 1u << SV_F_DATA;
    slot->req_id = k->next_id++;
    int fail = conn_send(k, SV_MSG_PUT_CHUNK, slot->req_id, &cm, deadline, why, why_len);
    slot->sent = fail == 0;
    return fail;
}

static int put_chunked(struct op *op, const char *bucket, const char *key, int64_t size,
                       int64_t if_version, uint64_t *version, sv_client_read_cb read, void *arg)
{
    struct sv_client *c = op->c;
    struct up_slot slots[WINDOW];
    memset(slots, 0, sizeof(slots));
    EVP_MD_CTX *md = NULL;
    struct conn *k = NULL;
    int rc = SV_E_NOMEM;
    for (int i = 0; i < 2; i++) {
        if ((slots[i].buf = malloc(SV_MSG_CHUNK_MAX)) == NULL) {
            set_err("out of memory");
            goto done;
        }
    }
    size_t n0 = 0, n1 = 0;
    rc = fill(read, arg, slots[0].buf, SV_MSG_CHUNK_MAX, &n0);
    if (rc == 0 && n0 == SV_MSG_CHUNK_MAX)
        rc = fill(read, arg, slots[1].buf, SV_MSG_CHUNK_MAX, &n1);
    if (rc != 0)
        goto done;
    if (n1 == 0) {
        /* It fits one message after all. */
        if (size >= 0 && (uint64_t)size != n0) {
            set_err("the stream gave %zu bytes, not the %lld announced", n0, (long long)size);
            rc = SV_E_BAD_ARGUMENT;
            goto done;
        }
        rc = put_single(op, bucket, key, slots[0].buf, n0, if_version, version);
        goto done;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        set_err("SHA-256 context");
        rc = SV_E_NOMEM;
        goto done;
    }
    EVP_DigestUpdate(md, slots[0].buf, n0);
    EVP_DigestUpdate(md, slots[1].buf, n1);
    slots[0] = (struct up_slot){.buf = slots[0].buf, .len = n0, .idx = 0, .used = true};
    slots[1] = (struct up_slot){.buf = slots[1].buf, .len = n1, .idx = 1, .used = true};
    uint64_t next_idx = 2, total = n0 + n1;
    bool eof = n1 < SV_MSG_CHUNK_MAX;

    struct sv_msg m = {0};
    msg_target(c, &m, bucket, key);
    struct sv__resp r;
    rc = object_call(op, bucket, key, SV_MSG_PUT_BEGIN, &m, &r);
    if (rc != 0)
        goto done;
    if (r.m.status != SV_ST_OK || !SV_MSG_HAS(&r.m, SV_F_UPLOAD)) {
        rc = r.m.status != SV_ST_OK ? status_fail(&r) : SV_E_PROTOCOL;
        if (rc == SV_E_PROTOCOL)
            set_err("PUT_BEGIN answer without UPLOAD");
        resp_free(&r);
        goto done;
    }
    uint64_t upload = r.m.upload;
    resp_free(&r);
    uint32_t shard = object_shard(c, bucket, key);
    char addr[ADDR_MAX] = "", why[256] = "";
    int redirects = 0;
    for (;;) {
        int fail = 0;
        if (k == NULL) {
            rc = op_connect(op, shard, addr, sizeof(addr), &k, &fail, why, sizeof(why));
            if (rc != 0)
                goto done;
        }
        /* Read more of the stream into the free slots. Each chunk leaves as
         * soon as it is read: a slow producer must not keep the chunks it
         * gave back (the upload would look abandoned to the shard). */
        for (int i = 0; i < WINDOW && !eof; i++) {
            if (slots[i].used)
                continue;
            if (slots[i].buf == NULL && (slots[i].buf = malloc(SV_MSG_CHUNK_MAX)) == NULL) {
                set_err("out of memory");
                rc = SV_E_NOMEM;
                goto done;
            }
            size_t n = 0;
            uint64_t t = now_ms();
            rc = fill(read, arg, slots[i].buf, SV_MSG_CHUNK_MAX, &n);
            op->deadline += now_ms() - t; /* the deadline is for the nodes, not the producer */
            if (rc != 0)
                goto done;
            if (n == 0) {
                eof = true;
                break;
            }
            EVP_DigestUpdate(md, slots[i].buf, n);
            slots[i] =
                (struct up_slot){.buf = slots[i].buf, .len = n, .idx = next_idx++, .used = true};
            total += n;
            eof = n < SV_MSG_CHUNK_MAX;
            if (size >= 0 && total > (uint64_t)size) {
                set_err("the stream gave more than the %lld bytes announced", (long long)size);
                rc = SV_E_BAD_ARGUMENT;
                goto done;
            }
            if (fail == 0)
                fail = chunk_send(c, k, bucket, key, upload, shard, &slots[i], op->deadline, why,
                                  sizeof(why));
        }
        bool any = false;
        for (int i = 0; i < WINDOW; i++)
            any |= slots[i].used;
        if (!any)
            break;
        /* Chunks read before a lost connection go again on the new one. */
        for (int i = 0; fail == 0 && i < WINDOW; i++) {
            if (slots[i].used && !slots[i].sent)
                fail = chunk_send(c, k, bucket, key, upload, shard, &slots[i], op->deadline, why,
                                  sizeof(why));
        }
        if (fail == 0)
            fail = conn_recv(k, op->deadline, &r, why, sizeof(why));
        if (fail == 0) {
            int s = -1;
            for (int i = 0; i < WINDOW; i++)
                if (slots[i].used && slots[i].sent && slots[i].req_id == r.id)
                    s = i;
            if (s < 0 || r.type != (SV_MSG_PUT_CHUNK | SV_MSG_RESP)) {
                snprintf(why, sizeof(why), "unexpected response id %llu", (unsigned long long)r.id);
                fail = SV_E_PROTOCOL;
            } else if (r.m.status == SV_ST_OK) {
                slots[s].used = false;
                redirects = 0;
                op->backoff_ms = BACKOFF_MIN_MS;
                op->deadline = now_ms() + c->deadline_ms; /* progress: a new deadline */
            } else if (r.m.status == SV_ST_NOT_LEADER) {
                bool go = op_redirect(op, shard, &r.m);
                op_note(op, addr, SV_E_UNAVAILABLE, "not leader");
                resp_free(&r);
                slots_unsend(slots);
                rc = window_lost(op, &k, go && ++redirects <= REDIRECTS_MAX);
                if (rc != 0)
                    goto done;
                continue;
            } else if (r.m.status == SV_ST_UNAVAILABLE) {
                snprintf(why, sizeof(why), "unavailable");
                fail = SV_E_UNAVAILABLE;
            } else {
                rc = status_fail(&r);
                resp_free(&r);
                goto done;
            }
            resp_free(&r);
        }
        if (fail == SV_E_NOMEM || fail == SV_E_BAD_ARGUMENT) {
            set_err("%s", why);
            rc = fail;
            goto done;
        }
        if (fail != 0) {
            op_note(op, addr, fail, why);
            slots_unsend(slots);
            rc = window_lost(op, &k, false);
            if (rc != 0)
                goto done;
        }
    }
    if (k != NULL)
        pool_put(c, k);
    k = NULL;
    if (size >= 0 && total != (uint64_t)size) {
        set_err("the stream gave %llu bytes, not the %lld announced", (unsigned long long)total,
                (long long)size);
        rc = SV_E_BAD_ARGUMENT;
        goto done;
    }
    struct sv_msg cm = {0};
    msg_target(c, &cm, bucket, key);
    cm.upload = upload;
    cm.n_chunks = next_idx;
    cm.size = total;
    EVP_DigestFinal_ex(md, cm.sha256, NULL);
    cm.fields |= 1u << SV_F_UPLOAD | 1u << SV_F_N_CHUNKS | 1u << SV_F_SIZE | 1u << SV_F_SHA256;
    set_if_version(&cm, if_version);
    rc = write_call(op, bucket, key, SV_MSG_PUT_COMMIT, &cm, version);

done:
    conn_free(k);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < WINDOW; i++)
        free(slots[i].buf);
    return rc;
}

int sv_client_put_stream(struct sv_client *c, const char *bucket, const char *key, int64_t size,
                         int64_t if_version, uint64_t *version, sv_client_read_cb read, void *arg)
{
    struct op op;
    op_init(&op, c);
    int rc = check_names(bucket, key);
    if (rc != 0)
        return rc;
    if (read == NULL || size < -1) {
        set_err("a read callback is required and size must be -1 or more");
        return SV_E_BAD_ARGUMENT;
    }
    return put_chunked(&op, bucket, key, size, if_version, version, read, arg);
}
int sv_client_put(struct sv_client *c, const char *bucket, const char *key, const void *data,
                  size_t len, int64_t if_version, uint64_t *version)
{
    struct op op;
    op_init(&op, c);
    int rc = check_names(bucket, key);
    if (rc != 0)
        return rc;
    if (data == NULL && len > 0) {
        set_err("data is NULL");
        return SV_E_BAD_ARGUMENT;
    }
    if (len > SV_MSG_CHUNK_MAX) {
        /* Large buffers go through the chunked path. */
        struct mem_src src = {data, len, 0};
        return put_chunked(&op, bucket, key, (int64_t)len, if_version, version, mem_read, &src);
    }
    return put_single(&op, bucket, key, data, len, if_version, version);
}

/* Reads. */

struct dl_slot {
    uint64_t idx, req_id;
    bool used, sent, got;
    struct sv__resp r;
};

/* Requests whose answer did not arrive are to be sent again. */
static void dl_unsend(struct dl_slot *s)
{
    for (int i = 0; i < WINDOW; i++)
        s[i].sent = s[i].got;
}

static uint64_t chunk_len(uint64_t size, uint64_t n, uint64_t idx)
{
    return idx + 1 < n ? SV_MSG_CHUNK_MAX : size - (n - 1) * (uint64_t)SV_MSG_CHUNK_MAX;
}

static void set_consistency(struct sv_msg *m, enum sv_consistency cons)
{
    if (cons != SV_LINEARIZABLE) {
        m->consistency = (uint64_t)cons;
        SV_MSG_SET(m, SV_F_CONSISTENCY);
    }
}

static int stat_from(const struct sv__resp *r, struct sv_stat *s)
{
    const struct sv_msg *m = &r->m;
    if (!SV_MSG_HAS(m, SV_F_VERSION) || !SV_MSG_HAS(m, SV_F_SIZE) || !SV_MSG_HAS(m, SV_F_SHA256)) {
        set_err("answer without VERSION, SIZE or SHA256");
        return SV_E_PROTOCOL;
    }
    s->size = m->size;
    s->version = m->version;
    memcpy(s->sha256, m->sha256, 32);
    s->mtime_ms = m->mtime_ms;
    return 0;
}

/* Deliver one chunk, feeding the running SHA-256. */
static int deliver(EVP_MD_CTX *md, const struct sv_bytes *d, sv_client_write_cb write, void *arg)
{
    EVP_DigestUpdate(md, d->p, d->len);
    if (d->len > 0 && write(arg, d->p, d->len) != 0) {
        set_err("the write callback failed");
        return SV_E_IO;
    }
    return 0;
}

/* One attempt at streaming an object: *again is set when the object changed
 * before anything was delivered, so the caller starts over. */
static int get_once(struct op *op, const char *bucket, const char *key, enum sv_consistency cons,
                    struct sv_stat *st, sv_client_write_cb write, void *arg, bool *again)
{
    struct sv_client *c = op->c;
    *again = false;
    struct sv_msg m = {0};
    msg_target(c, &m, bucket, key);
    set_consistency(&m, cons);
    struct sv__resp g;
    op->any_replica = cons == SV_STALE;
    int rc = object_call(op, bucket, key, SV_MSG_GET, &m, &g);
    op->any_replica = false; /* a lost connection's chunks: the leader first again */
    if (rc != 0)
        return rc;
    struct dl_slot slots[WINDOW];
    memset(slots, 0, sizeof(slots));
    EVP_MD_CTX *md = NULL;
    struct conn *k = NULL;
    struct sv_stat s;
    if (g.m.status != SV_ST_OK) {
        rc = status_fail(&g);
        goto done;
    }
    rc = stat_from(&g, &s);
    if (rc != 0)
        goto done;
    uint64_t n = s.size == 0 ? 1 : (s.size + SV_MSG_CHUNK_MAX - 1) / SV_MSG_CHUNK_MAX;
    if (g.m.data.len != chunk_len(s.size, n, 0)) {
        set_err("chunk 0 has %zu bytes, expected %llu", g.m.data.len,
                (unsigned long long)chunk_len(s.size, n, 0));
        rc = SV_E_PROTOCOL;
        goto done;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        set_err("SHA-256 context");
        rc = SV_E_NOMEM;
        goto done;
    }
    bool delivered = false;
    if (n == 1) {
        rc = deliver(md, &g.m.data, write, arg);
        if (rc != 0)
            goto done;
    }
    uint32_t shard = object_shard(c, bucket, key);
    uint64_t next_req = 1, next_deliver = 1;
    char addr[ADDR_MAX] = "", why[256] = "";
    int redirects = 0;
    while (next_deliver < n) {
        /* Deliver what is in order; chunk 0 waits for chunk 1, so a change
         * noticed there restarts the read instead of failing it. */
        bool progressed = false;
        for (int i = 0; i < WINDOW; i++) {
            if (slots[i].used && slots[i].got && slots[i].idx == next_deliver) {
                if (!delivered) {
                    rc = deliver(md, &g.m.data, write, arg);
                    if (rc != 0)
                        goto done;
                    delivered = true;
                }
                rc = deliver(md, &slots[i].r.m.data, write, arg);
                if (rc != 0)
                    goto done;
                resp_free(&slots[i].r);
                slots[i].used = false;
                next_deliver++;
                progressed = true;
            }
        }
        if (progressed)
            continue;
        for (int i = 0; i < WINDOW && next_req < n; i++) {
            if (!slots[i].used)
                slots[i] = (struct dl_slot){.idx = next_req++, .used = true};
        }
        int fail = 0;
        if (k == NULL) {
            rc = op_connect(op, shard, addr, sizeof(addr), &k, &fail, why, sizeof(why));
            if (rc != 0)
                goto done;
        }
        for (int i = 0; fail == 0 && i < WINDOW; i++) {
            if (!slots[i].used || slots[i].sent || slots[i].got)
                continue;
            struct sv_msg cm = {0};
            msg_target(c, &cm, bucket, key);
            set_consistency(&cm, cons);
            cm.version = s.version;
            cm.chunk = slots[i].idx;
            cm.shard = shard;
            cm.fields |= 1u << SV_F_VERSION | 1u << SV_F_CHUNK | 1u << SV_F_SHARD;
            slots[i].req_id = k->next_id++;
            fail = conn_send(k, SV_MSG_GET_CHUNK, slots[i].req_id, &cm, op->deadline, why,
                             sizeof(why));
            slots[i].sent = fail == 0;
        }
        struct sv__resp r;
        if (fail == 0)
            fail = conn_recv(k, op->deadline, &r, why, sizeof(why));
        if (fail == 0) {
            int si = -1;
            for (int i = 0; i < WINDOW; i++)
                if (slots[i].used && slots[i].sent && !slots[i].got && slots[i].req_id == r.id)
                    si = i;
            if (si < 0 || r.type != (SV_MSG_GET_CHUNK | SV_MSG_RESP)) {
                snprintf(why, sizeof(why), "unexpected response id %llu", (unsigned long long)r.id);
                fail = SV_E_PROTOCOL;
            } else if (r.m.status == SV_ST_OK) {
                uint64_t want = chunk_len(s.size, n, slots[si].idx);
                if (r.m.data.len != want) {
                    set_err("chunk %llu has %zu bytes, expected %llu",
                            (unsigned long long)slots[si].idx, r.m.data.len,
                            (unsigned long long)want);
                    resp_free(&r);
                    rc = SV_E_PROTOCOL;
                    goto done;
                }
                slots[si].r = r;
                slots[si].got = true;
                redirects = 0;
                op->backoff_ms = BACKOFF_MIN_MS;
                op->deadline = now_ms() + c->deadline_ms; /* progress: a new deadline */
                continue;
            } else if (r.m.status == SV_ST_VERSION_CONFLICT || r.m.status == SV_ST_NOT_FOUND) {
                resp_free(&r);
                if (!delivered) {
                    *again = true;
                    rc = SV_E_VERSION_CONFLICT;
                    set_err("the object changed during the read");
                    goto done;
                }
                set_err("the object changed during the read (version %llu is gone)",
                        (unsigned long long)s.version);
                rc = SV_E_VERSION_CONFLICT;
                goto done;
            } else if (r.m.status == SV_ST_NOT_LEADER) {
                bool go = op_redirect(op, shard, &r.m);
                op_note(op, addr, SV_E_UNAVAILABLE, "not leader");
                resp_free(&r);
                dl_unsend(slots);
                rc = window_lost(op, &k, go && ++redirects <= REDIRECTS_MAX);
                if (rc != 0)
                    goto done;
                continue;
            } else if (r.m.status == SV_ST_UNAVAILABLE) {
                snprintf(why, sizeof(why), "unavailable");
                fail = SV_E_UNAVAILABLE;
            } else {
                rc = status_fail(&r);
                resp_free(&r);
                goto done;
            }
            resp_free(&r);
        }
        if (fail == SV_E_NOMEM || fail == SV_E_BAD_ARGUMENT) {
            set_err("%s", why);
            rc = fail;
            goto done;
        }
        if (fail != 0) {
            op_note(op, addr, fail, why);
            dl_unsend(slots);
            rc = window_lost(op, &k, false);
            if (rc != 0)
                goto done;
        }
    }
    if (k != NULL)
        pool_put(c, k);
    k = NULL;
    uint8_t digest[32];
    EVP_DigestFinal_ex(md, digest, NULL);
    if (st != NULL)
        *st = s;
    if (memcmp(digest, s.sha256, 32) != 0) {
        set_err("SHA-256 of the data read does not match the object's (version %llu)",
                (unsigned long long)s.version);
        rc = SV_E_CORRUPT;
        goto done;
    }
    rc = 0;

done:
    conn_free(k);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < WINDOW; i++)
        if (slots[i].got)
            resp_free(&slots[i].r);
    resp_free(&g);
    return rc;
}

int sv_client_get_stream(struct sv_client *c, const char *bucket, const char *key,
                         enum sv_consistency consistency, struct sv_stat *st,
                         sv_client_write_cb write, void *arg)
{
    struct op op;
    op_init(&op, c);
    int rc = check_names(bucket, key);
    if (rc != 0)
        return rc;
    if (write == NULL || (consistency != SV_LINEARIZABLE && consistency != SV_STALE)) {
        set_err("a write callback and a valid consistency are required");
        return SV_E_BAD_ARGUMENT;
    }
    for (int restarts = 0;; restarts++) {
        bool again = false;
        rc = get_once(&op, bucket, key, consistency, st, write, arg, &again);
        if (!again)
            return rc;
        if (restarts == RESTARTS_MAX || now_ms() >= op.deadline) {
            set_err("the object kept changing during the read (%d restarts)", restarts);
            return SV_E_VERSION_CONFLICT;
        }
    }
}

struct grow {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static int grow_write(void *arg, const void *buf, size_t len)
{
    struct grow *g = arg;
    if (g->len + len > g->cap) {
        size_t cap = g->cap ? g->cap : 64 * 1024;
        while (cap < g->len + len)
            cap *= 2;
        uint8_t *p = realloc(g->p, cap);
        if (p == NULL) {
            g->oom = true;
            return -1;
        }
        g->p = p;
        g->cap = cap;
    }
    memcpy(g->p + g->len, buf, len);
    g->len += len;
    return 0;
}

int sv_client_get(struct sv_client *c, const char *bucket, const char *key,
                  enum sv_consistency consistency, void **data, size_t *len, struct sv_stat *st)
{
    struct grow g = {0};
    int rc = sv_client_get_stream(c, bucket, key, consistency, st, grow_write, &g);
    if (rc == SV_E_IO && g.oom) {
        set_err("out of memory");
        rc = SV_E_NOMEM;
    }
    if (rc == 0 && g.p == NULL && (g.p = malloc(1)) == NULL) {
        set_err("out of memory");
        rc = SV_E_NOMEM;
    }
    if (rc != 0) {
        free(g.p);
        return rc;
    }
    *data = g.p;
    *len = g.len;
    return 0;
}

int sv_client_stat(struct sv_client *c, const char *bucket, const char *key,
                   enum sv_consistency consistency, struct sv_stat *st)
{
    struct op op;
    op_init(&op, c);
    int rc = check_names(bucket, key);
    if (rc != 0)
        return rc;
    struct sv_msg m = {0};
    msg_target(c, &m, bucket, key);
    set_consistency(&m, consistency);
    op.any_replica = consistency == SV_STALE;
    struct sv__resp r;
    rc = object_call(&op, bucket, key, SV_MSG_STAT, &m, &r);
    if (rc != 0)
        return rc;
    rc = r.m.status != SV_ST_OK ? status_fail(&r) : stat_from(&r, st);
    resp_free(&r);
    return rc;
}

int sv_client_delete(struct sv_client *c, const char *bucket, const char *key, int64_t if_version,
                     uint64_t *version)
{
    struct op op;
    op_init(&op, c);
    int rc = check_names(bucket, key);
    if (rc != 0)
        return rc;
    struct sv_msg m = {0};
    msg_target(c, &m, bucket, key);
    set_if_version(&m, if_version);
    return write_call(&op, bucket, key, SV_MSG_DELETE, &m, version);
}

/* Listing. */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sv_list_entry *)a)->key, ((const struct sv_list_entry *)b)->key);
}

void sv_client_list_free(struct sv_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->entries[i].key);
    free(l->entries);
    free(l);
}

int sv_client_list(struct sv_client *c, const char *bucket, const char *prefix,
                   const char *start_after, uint32_t limit, enum sv_consistency consistency,
                   struct sv_list **out)
{
    struct op op;
    op_init(&op, c);
    int rc = check_names(bucket, NULL);
    if (rc != 0)
        return rc;
    if (limit == 0 || limit > SV_CLIENT_LIST_LIMIT_MAX ||
        (prefix != NULL && strlen(prefix) > SV_MSG_NAME_MAX) ||
        (start_after != NULL && strlen(start_after) > SV_MSG_NAME_MAX)) {
        set_err("limit must be 1..%d, prefix and start_after at most %d bytes",
                SV_CLIENT_LIST_LIMIT_MAX, SV_MSG_NAME_MAX);
        return SV_E_BAD_ARGUMENT;
    }
    rc = op_ensure_map(&op);
    if (rc != 0)
        return rc;
    uint32_t ns = shard_count(c);
    struct sv_list *l = calloc(1, sizeof(*l));
    size_t cap = 0;
    if (l == NULL) {
        set_err("out of memory");
        return SV_E_NOMEM;
    }
    for (uint32_t s = 0; s < ns; s++) {
        struct sv_msg m = {0};
        msg_target(c, &m, bucket, NULL);
        if (prefix != NULL && prefix[0] != '\0') {
            m.prefix = (struct sv_bytes){(const uint8_t *)prefix, strlen(prefix)};
            SV_MSG_SET(&m, SV_F_PREFIX);
        }
        if (start_after != NULL && start_after[0] != '\0') {
            m.start_after = (struct sv_bytes){(const uint8_t *)start_after, strlen(start_after)};
            SV_MSG_SET(&m, SV_F_START_AFTER);
        }
        m.limit = limit;
        SV_MSG_SET(&m, SV_F_LIMIT);
        set_consistency(&m, consistency);
        op.any_replica = consistency == SV_STALE;
        struct sv__resp r;
        rc = op_call(&op, s, SV_MSG_LIST, &m, &r);
        if (rc != 0)
            goto err_after_list;
        if (r.m.status != SV_ST_OK) {
            rc = status_fail(&r);
            resp_free(&r);
            goto err_after_list;
        }
        if (r.m.flags & 1u)
            l->more = true;
        for (uint32_t i = 0; i < r.m.n_items; i++) {
            const struct sv_item *it = &r.m.items[i];
            if (!SV_ITEM_HAS(it, SV_I_KEY))
                continue;
            if (l->n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct sv_list_entry *e = realloc(l->entries, nc * sizeof(*e));
                if (e == NULL)
                    goto err_nomem;
                l->entries = e;
                cap = nc;
            }
            struct sv_list_entry *e = &l->entries[l->n];
            if ((e->key = malloc(it->key.len + 1)) == NULL)
                goto err_nomem;
            copy_bytes(e->key, it->key.len + 1, it->key);
            e->size = it->size;
            e->version = it->version;
            e->mtime_ms = it->mtime_ms;
            l->n++;
            continue;
        err_nomem:
            resp_free(&r);
            set_err("out of memory");
            rc = SV_E_NOMEM;
            goto err_after_list;
        }
        resp_free(&r);
    }
    if (l->n > 0)
        qsort(l->entries, l->n, sizeof(*l->entries), entry_cmp);
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (w > 0 && strcmp(l->entries[w - 1].key, l->entries[i].key) == 0) {
            free(l->entries[i].key);
            continue;
        }
        l->entries[w++] = l->entries[i];
    }
    l->n = w;
    if (l->n > limit) {
        for (size_t i = limit; i < l->n; i++)
            free(l->entries[i].key);
        l->n = limit;
        l->more = true;
    }
    *out = l;
    return 0;

err_after_list:
    sv_client_list_free(l);
    return rc;
}

/* Cluster status. */

/* One request m (type) to the node at addr, bounded by STATUS_NODE_MS and
 * op's deadline: 0 with *r (whatever its status; caller frees it), or the
 * failure with why filled. A node that does not answer in time costs the
 * others at most that bound. */
static int node_call(struct op *op, const char *addr, uint32_t type, const struct sv_msg *m,
                     struct sv__resp *r, char *why, size_t wl)
{
    uint64_t now = now_ms();
    uint64_t dl = now + STATUS_NODE_MS < op->deadline ? now + STATUS_NODE_MS : op->deadline;
    struct conn *k = NULL;
    int rc = pool_get(op->c, addr, dl, &k, why, wl);
    if (rc != 0)
        return rc;
    rc = conn_call(k, type, m, dl, r, why, wl);
    if (rc != 0) {
        conn_free(k);
        return rc;
    }
    pool_put(op->c, k);
    return 0;
}

int sv__ask_every_node(struct sv_client *c, uint32_t type, const struct sv_msg *m, size_t *n_nodes,
                       uint32_t *n_shards,
                       int (*answered)(void *arg, uint64_t node, const struct sv__resp *r),
                       void *arg)
{
    struct op op;
    op_init(&op, c);
    op.map_stale = true;
    int rc = op_ensure_map(&op);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&c->lock);
    size_t n = c->n_nodes;
    *n_shards = c->n_shards;
    struct node_info *nodes = malloc((n ? n : 1) * sizeof(*nodes));
    if (nodes != NULL)
        memcpy(nodes, c->nodes, n * sizeof(*nodes));
    pthread_mutex_unlock(&c->lock);
    if (nodes == NULL) {
        set_err("out of memory");
        return SV_E_NOMEM;
    }
    *n_nodes = n;
    size_t n_answers = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char why[256] = "";
        struct sv__resp r;
        int fail = node_call(&op, nodes[i].addr, type, m, &r, why, sizeof(why));
        if (fail != 0) {
            op_note(&op, nodes[i].addr, fail, why);
            continue;
        }
        n_answers++;
        rc = answered(arg, nodes[i].id, &r);
        resp_free(&r);
    }
    free(nodes);
    if (rc == 0 && n_answers == 0) {
        set_err("no node answered: tried %s", op.tried[0] ? op.tried : "none (an empty map)");
        rc = SV_E_UNAVAILABLE;
    }
    return rc;
}

void sv_client_status_free(struct sv_cluster_status *s)
{
    if (s == NULL)
        return;
    free(s->nodes);
    free(s->shards);
    free(s);
}

int sv_client_status(struct sv_client *c, struct sv_cluster_status **out)
{
    struct op op;
    op_init(&op, c);
    op.map_stale = true;
    int rc = op_ensure_map(&op);
    if (rc != 0)
        return rc;
    struct sv_cluster_status *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto err_nomem;
    pthread_mutex_lock(&c->lock);
    s->n_nodes = c->n_nodes;
    s->n_shards = c->n_shards;
    s->epoch = c->epoch;
    s->nodes = calloc(c->n_nodes ? c->n_nodes : 1, sizeof(*s->nodes));
    s->shards = calloc(c->n_shards ? c->n_shards : 1, sizeof(*s->shards));
    if (s->nodes != NULL && s->shards != NULL) {
        for (size_t i = 0; i < c->n_nodes; i++) {
            s->nodes[i].id = c->nodes[i].id;
            snprintf(s->nodes[i].address, sizeof(s->nodes[i].address), "%s", c->nodes[i].addr);
            snprintf(s->nodes[i].zone, sizeof(s->nodes[i].zone), "%s", c->nodes[i].zone);
            snprintf(s->nodes[i].state, sizeof(s->nodes[i].state), "down");
        }
        for (size_t i = 0; i < c->n_shards; i++) {
            struct sv_status_shard *sh = &s->shards[i];
            sh->id = c->shards[i].id;
            sh->n_replicas = c->shards[i].n_replicas;
            for (size_t j = 0; j < sh->n_replicas; j++) {
                sh->replicas[j].node = c->shards[i].replicas[j];
                const char *z = "";
                for (size_t q = 0; q < c->n_nodes; q++)
                    if (c->nodes[q].id == sh->replicas[j].node)
                        z = c->nodes[q].zone;
                snprintf(sh->replicas[j].zone, sizeof(sh->replicas[j].zone), "%s", z);
                snprintf(sh->replicas[j].role, sizeof(sh->replicas[j].role), "down");
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (s->nodes == NULL || s->shards == NULL)
        goto err_nomem;
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct sv_status_node *nd = &s->nodes[i];
        char why[256];
        struct sv_msg m = {0};
        struct sv__resp r;
        if (node_call(&op, nd->address, SV_MSG_STATUS, &m, &r, why, sizeof(why)) != 0)
            continue;
        if (r.m.status == SV_ST_OK) {
            snprintf(nd->state, sizeof(nd->state), "up");
            nd->reachable = true;
            if (SV_MSG_HAS(&r.m, SV_F_METRICS))
                copy_bytes(nd->metrics, sizeof(nd->metrics), r.m.metrics);
            for (size_t q = 0; q < s->n_shards; q++) {
                struct sv_status_shard *sh = &s->shards[q];
                for (size_t j = 0; j < sh->n_replicas; j++) {
                    if (sh->replicas[j].node != nd->id)
                        continue;
                    snprintf(sh->replicas[j].role, sizeof(sh->replicas[j].role), "unknown");
                    for (uint32_t t = 0; t < r.m.n_items; t++) {
                        const struct sv_item *it = &r.m.items[t];
                        if (!SV_ITEM_HAS(it, SV_I_ID) || it->id != sh->id)
                            continue;
                        if (SV_ITEM_HAS(it, SV_I_ROLE))
                            copy_bytes(sh->replicas[j].role, sizeof(sh->replicas[j].role),
                                       it->role);
                        sh->replicas[j].term = it->term;
                        sh->replicas[j].applied = it->applied;
                    }
                }
            }
        }
        resp_free(&r);
    }
    /* Counts from the map and the roles reported, until the meta leader's replace them. */
    for (size_t q = 0; q < s->n_shards; q++) {
        struct sv_status_shard *sh = &s->shards[q];
        sh->chunks_left = -1;
        for (size_t j = 0; j < sh->n_replicas; j++) {
            for (size_t i = 0; i < s->n_nodes; i++) {
                if (s->nodes[i].id != sh->replicas[j].node)
                    continue;
                s->nodes[i].replicas++;
                s->nodes[i].leaders += strcmp(sh->replicas[j].role, "leader") == 0;
            }
        }
    }
    /* Its own bound: the nodes' STATUS may have used the whole deadline. */
    uint64_t sched_ms = c->deadline_ms < STATUS_NODE_MS ? c->deadline_ms : STATUS_NODE_MS;
    if (sv__status_merge_sched(c, s, now_ms() + sched_ms) != 0)
        goto err_nomem;
    *out = s;
    return 0;

err_nomem:
    sv_client_status_free(s);
    set_err("out of memory");
    return SV_E_NOMEM;
}
