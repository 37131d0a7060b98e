/* Integration test harness: clusters of real svd processes (see harness.h). */
#define _GNU_SOURCE
#include "harness.h"

#include "check.h"
#include "proto.h"
#include "tls.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef SV_SOURCE_DIR
#error "SV_SOURCE_DIR must be defined (the repository root)"
#endif

uint64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int it_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "+ %s\n", cmd);
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool it_log_has(const struct it_cluster *c, int id, const char *text)
{
    char node[16] = "*";
    if (id > 0)
        snprintf(node, sizeof node, "%d", id);
    return it_sh("cat '%s'/node%s/svd.log | grep -q -F -- '%s'", c->dir, node, text) == 0;
}

static const char *bin_dir;

int it_option(int argc, char **argv, int i)
{
    (void)argc;
    if (bin_dir != NULL || argv[i][0] == '-')
        return 0;
    bin_dir = argv[i];
    return 1;
}

const char *it_bin_dir(void)
{
    if (bin_dir == NULL) {
        fprintf(stderr, "usage: %s [OPTION]... BIN_DIR [TEST]...\n", sv_test_suite.name);
        exit(2);
    }
    return bin_dir;
}

void it_up(struct it_cluster *c, const char *bin, const char *name, int nodes, int zones,
           int base_port)
{
    it_up_opts(c, bin, name, nodes, zones, base_port, "");
}

void it_up_opts(struct it_cluster *c, const char *bin, const char *name, int nodes, int zones,
                int base_port, const char *up_opts)
{
    memset(c, 0, sizeof *c);
    snprintf(c->bin, sizeof c->bin, "%s", bin);
    snprintf(c->dir, sizeof c->dir, "/tmp/sv-it-%s-%d", name, (int)getpid());
    snprintf(c->ca, sizeof c->ca, "%s/ca/ca.pem", c->dir);
    c->nodes = nodes;
    c->zones = zones;
    c->base_port = base_port;
    size_t off = 0;
    for (int i = 1; i <= nodes; i++)
        off += (size_t)snprintf(c->endpoints + off, sizeof c->endpoints - off, "%s127.0.0.1:%d",
                                i > 1 ? "," : "", base_port + i);
    it_sh("rm -rf '%s'", c->dir);
    if (it_sh("'%s/deploy/cluster' up --bin '%s' --dir '%s' --nodes %d --zones %d --replicas %d "
              "--base-port %d --shards 8 %s >&2",
              SV_SOURCE_DIR, bin, c->dir, nodes, zones, zones < 3 ? zones : 3, base_port,
              up_opts)) {
        fprintf(stderr, "it_up: the cluster did not come up\n");
        it_down(c);
        exit(1);
    }
}

void it_down(struct it_cluster *c)
{
    if (!c->dir[0])
        return;
    if (getenv("SV_IT_KEEP")) {
        /* Debugging: stop the nodes, keep their logs and data. */
        it_sh("'%s/deploy/cluster' down --dir '%s' >&2", SV_SOURCE_DIR, c->dir);
        fprintf(stderr, "SV_IT_KEEP: kept %s\n", c->dir);
        c->dir[0] = 0;
        return;
    }
    it_sh("'%s/deploy/cluster' down --purge --dir '%s' >&2", SV_SOURCE_DIR, c->dir);
    it_sh("rm -rf '%s'", c->dir);
    c->dir[0] = 0;
}

pid_t it_pid(const struct it_cluster *c, int id)
{
    char path[700];
    snprintf(path, sizeof path, "%s/node%d/svd.pid", c->dir, id);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

void it_kill(struct it_cluster *c, int id)
{
    it_sh("'%s/deploy/cluster' kill %d --dir '%s' >&2", SV_SOURCE_DIR, id, c->dir);
}

void it_start(struct it_cluster *c, int id)
{
    if (it_sh("'%s/deploy/cluster' start %d --dir '%s' >&2", SV_SOURCE_DIR, id, c->dir))
        fprintf(stderr, "it_start: node %d did not start\n", id);
}

struct sv_client *it_client(const struct it_cluster *c, uint32_t deadline_ms)
{
    struct sv_client_options o = {
        .endpoints = c->endpoints, .ca_file = c->ca, .deadline_ms = deadline_ms};
    struct sv_client *cl = NULL;
    int rc = sv_client_open(&o, &cl);
    if (rc) {
        fprintf(stderr, "it_client: %s: %s\n", sv_client_strerror(rc), sv_client_errmsg());
        exit(1);
    }
    return cl;
}

uint64_t it_leader_of(const struct it_cluster *c, struct sv_client *cl, const char *bucket,
                      const char *key, uint64_t *replicas, size_t *n)
{
    (void)c;
    uint64_t deadline = it_now_ms() + 10000;
    *n = 0;
    do {
        struct sv_cluster_status *st = NULL;
        if (sv_client_status(cl, &st) == 0) {
            uint32_t shard =
                sv_shard_of(sv_object_hash(0, bucket, strlen(bucket), key, strlen(key)),
                            (uint32_t)st->n_shards);
            uint64_t leader = 0;
            for (size_t i = 0; i < st->n_shards; i++) {
                if (st->shards[i].id != shard)
                    continue;
                *n = st->shards[i].n_replicas;
                for (size_t k = 0; k < st->shards[i].n_replicas; k++) {
                    replicas[k] = st->shards[i].replicas[k].node;
                    if (!strcmp(st->shards[i].replicas[k].role, "leader"))
                        leader = st->shards[i].replicas[k].node;
                }
            }
            sv_client_status_free(st);
            if (leader)
                return leader;
        }
        usleep(200 * 1000);
    } while (it_now_ms() < deadline);
    return 0;
}

void it_fill(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t k = len - i < 8 ? len - i : 8;
        memcpy(p + i, &x, k);
    }
}

void it_sha256(const void *buf, size_t len, uint8_t md[32])
{
    unsigned n = 0;
    EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL);
}

int it_metrics_port(const struct it_cluster *c, int id)
{
    return c->base_port + id + 1000;
}

int it_http_get(int port, const char *path, char **body)
{
    if (body)
        *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        int err = -errno;
        close(fd);
        return err;
    }
    char req[512];
    int n =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int status = 0;
    if (!buf || write(fd, req, (size_t)n) != n)
        goto out;
    for (;;) {
        if (len + 1 == cap) {
            char *p = cap < (64u << 20) ? realloc(buf, cap *= 2) : NULL;
            if (!p)
                goto out;
            buf = p;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto out; /* timed out: a cut response */
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    const char *end = strstr(buf, "\r\n\r\n");
    int code = 0;
    if (!end || sscanf(buf, "HTTP/1.%*d %d ", &code) != 1)
        goto out;
    status = code;
    if (body) {
        size_t blen = len - (size_t)(end + 4 - buf);
        memmove(buf, end + 4, blen + 1);
        *body = buf;
        buf = NULL;
    }
out:
    free(buf);
    close(fd);
    return status;
}

/* The value at the end of the sample line that starts at line. */
static double sample_value(const char *line)
{
    const char *eol = strchr(line, '\n');
    const char *sp = eol ? eol : line + strlen(line);
    while (sp > line && sp[-1] != ' ')
        sp--;
    return strtod(sp, NULL);
}

double it_metric(const char *expo, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = expo; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return sample_value(p);
    return NAN;
}

double it_metric_sum(const char *expo, const char *prefix)
{
    size_t n = strlen(prefix);
    double sum = 0;
    for (const char *p = expo; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, prefix, n))
            sum += sample_value(p);
    return sum;
}

/* ---- raw connections (tests of what the nodes refuse, internal frames) --- */

int it_dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

void it_tls_flush(int fd, struct sv_tls_conn *t)
{
    uint8_t buf[65536];
    size_t n;
    while (sv_tls_pending_out(t, buf, sizeof buf, &n) == 0 && n > 0)
        if (send(fd, buf, n, MSG_NOSIGNAL) < 0)
            return;
}

struct sv_tls_conn *it_tls_dial(struct sv_tls_ctx *ctx, int port, int *fdp)
{
    int fd = it_dial(port);
    struct sv_tls_conn *t = NULL;
    char em[256];
    if (fd < 0 || sv_tls_conn_new(ctx, "127.0.0.1", &t, em, sizeof em)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    uint64_t end = it_now_ms() + 5000;
    uint8_t buf[65536], plain[1024];
    while (!sv_tls_handshake_done(t) && it_now_ms() < end) {
        it_tls_flush(fd, t);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0)
            break;
        size_t n;
        sv_tls_feed(t, buf, (size_t)r);
        sv_tls_read(t, plain, sizeof plain, &n);
    }
    it_tls_flush(fd, t);
    if (!sv_tls_handshake_done(t)) {
        sv_tls_conn_free(t);
        close(fd);
        return NULL;
    }
    *fdp = fd;
    return t;
}

/* ---- a replica move (MOVE over TLS) ----------------------------------------- */

int it_tls_pump(int fd, struct sv_tls_conn *t, struct sv_wire_decoder *d, int timeout_ms)
{
    static uint8_t buf[65536], plain[65536];
    it_tls_flush(fd, t);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got <= 0)
        return -1;
    sv_tls_feed(t, buf, (size_t)got);
    size_t n;
    while (sv_tls_read(t, plain, sizeof plain, &n) == 0 && n > 0)
        sv_wire_feed(d, plain, n);
    return 1;
}

int it_call(const struct it_cluster *c, int port, uint32_t type, const struct sv_msg *m,
            struct sv_msg *r, uint8_t **body, uint64_t timeout_ms)
{
    return it_call_as(c, port, 0, type, m, r, body, timeout_ms);
}

int it_call_as(const struct it_cluster *c, int port, int as_node, uint32_t type,
               const struct sv_msg *m, struct sv_msg *r, uint8_t **body, uint64_t timeout_ms)
{
    char cert[600], key[600];
    snprintf(cert, sizeof cert, "%s/node%d/node.pem", c->dir, as_node);
    snprintf(key, sizeof key, "%s/node%d/node.key", c->dir, as_node);
    struct sv_tls_config tc = {.role = SV_TLS_CLIENT,
                               .ca_file = c->ca,
                               .cert_file = as_node ? cert : NULL,
                               .key_file = as_node ? key : NULL};
    struct sv_tls_ctx *ctx = NULL;
    char em[256];
    int fd = -1, rc = -1;
    struct sv_tls_conn *t =
        sv_tls_ctx_new(&tc, &ctx, em, sizeof em) ? NULL : it_tls_dial(ctx, port, &fd);
    uint8_t *req = NULL, *frame = NULL;
    size_t req_len = 0, flen = 0;
    if (!t || sv_msg_encode(m, &req, &req_len) ||
        sv_wire_encode(type, 7, req, req_len, &frame, &flen) || sv_tls_write(t, frame, flen))
        goto out;
    struct sv_wire_decoder d;
    sv_wire_decoder_init(&d);
    uint64_t end = it_now_ms() + timeout_ms;
    while (it_now_ms() < end && rc) {
        int got = it_tls_pump(fd, t, &d, 200);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        struct sv_wire_frame f;
        if (sv_wire_next(&d, &f) == 1 && f.type == (type | SV_MSG_RESP)) {
            *body = malloc(f.body_len ? f.body_len : 1);
            memcpy(*body, f.body, f.body_len);
            rc = sv_msg_decode(*body, f.body_len, r, NULL, 0) ? -1 : 0;
        }
    }
    sv_wire_decoder_free(&d);
out:
    free(req);
    free(frame);
    sv_tls_conn_free(t);
    sv_tls_ctx_free(ctx);
    if (fd >= 0)
        close(fd);
    return rc;
}

int it_move(const struct it_cluster *c, uint64_t shard, uint64_t from, uint64_t to,
            uint64_t timeout_ms, char *why, size_t wl)
{
    struct sv_msg m = {0};
    m.shard = shard;
    m.node = from;
    m.leader = to;
    SV_MSG_SET(&m, SV_F_SHARD);
    SV_MSG_SET(&m, SV_F_NODE);
    SV_MSG_SET(&m, SV_F_LEADER);
    uint64_t end = it_now_ms() + timeout_ms;
    int node = 1;
    snprintf(why, wl, "no answer");
    while (it_now_ms() < end) {
        struct sv_msg r;
        uint8_t *body = NULL;
        int st = -1;
        uint64_t leader = 0;
        if (!it_call(c, c->base_port + node, SV_MSG_MOVE, &m, &r, &body, end - it_now_ms())) {
            st = (int)r.status;
            snprintf(why, wl, "%s: %.*s", sv_status_name(st), (int)r.msg.len,
                     r.msg.p ? (const char *)r.msg.p : "");
            leader = SV_MSG_HAS(&r, SV_F_LEADER) ? r.leader : 0;
            sv_msg_free(&r);
        }
        free(body);
        if (st >= 0 && st != SV_ST_NOT_LEADER && st != SV_ST_UNAVAILABLE)
            return st;
        if (st == SV_ST_NOT_LEADER && leader >= 1 && leader <= (uint64_t)c->nodes)
            node = (int)leader;
        else
            node = node % c->nodes + 1;
        usleep(st < 0 ? 200000 : 300000);
    }
    return SV_ST_UNAVAILABLE;
}

bool it_closed_by_server(int fd, int timeout_ms)
{
    uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
    char buf[4096];
    while (it_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0)
            return true;
    }
    return false;
}

int it_frame_closes(struct sv_tls_ctx *ctx, int port, uint32_t type, uint64_t id,
                    const uint8_t *body, size_t len, int timeout_ms)
{
    int fd = -1;
    struct sv_tls_conn *t = ctx ? it_tls_dial(ctx, port, &fd) : NULL;
    uint8_t *frame = NULL;
    size_t flen = 0;
    int rc = -1;
    if (t && !sv_wire_encode(type, id, body, len, &frame, &flen) && !sv_tls_write(t, frame, flen)) {
        it_tls_flush(fd, t);
        rc = it_closed_by_server(fd, timeout_ms);
    }
    free(frame);
    sv_tls_conn_free(t);
    if (fd >= 0)
        close(fd);
    return rc;
}
