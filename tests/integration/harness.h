/* Multi-process integration tests: a real cluster of svd processes started
 * with deploy/cluster (--bin: the build's binaries) in a fresh directory, and
 * libshardvault clients against it. */
#ifndef SV_IT_HARNESS_H
#define SV_IT_HARNESS_H

#include <shardvault/client.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { IT_NODES_MAX = 16, IT_SKIP = 77 /* ctest SKIP_RETURN_CODE */ };

struct it_cluster {
    char dir[512]; /* cluster directory (deploy/cluster --dir) */
    char bin[512]; /* directory of svd and svctl */
    char ca[600];  /* CA file */
    char endpoints[IT_NODES_MAX * 24];
    int nodes, zones, base_port;
};

/* The test's one argument, the directory of svd and svctl, taken by
 * it_option (every integration test's sv_test_suite.option, with IT_USAGE
 * as its usage). it_bin_dir returns it; a usage line and exit 2 when it was
 * not given. */
int it_option(int argc, char **argv, int i);
#define IT_USAGE "  BIN_DIR      the directory of svd and svctl (required)\n"
const char *it_bin_dir(void);

/* Start a cluster of `nodes` nodes in `zones` zones on ports base_port+1..,
 * in a fresh temporary directory named after name. bin is the directory of
 * svd and svctl. Exits the test (status 1) when the cluster does not come up. */
void it_up(struct it_cluster *c, const char *bin, const char *name, int nodes, int zones,
           int base_port);
/* it_up with more `deploy/cluster up` options (e.g. "--upload-ttl 2"). */
void it_up_opts(struct it_cluster *c, const char *bin, const char *name, int nodes, int zones,
                int base_port, const char *up_opts);
/* Stop every node and remove the directory (kept when SV_IT_KEEP is set). */
void it_down(struct it_cluster *c);
/* kill -9 node id / start it again (waits until it listens). */
void it_kill(struct it_cluster *c, int id);
void it_start(struct it_cluster *c, int id);
pid_t it_pid(const struct it_cluster *c, int id);
/* Whether node id's log (id 0: any node's) holds text (a fixed string). */
bool it_log_has(const struct it_cluster *c, int id, const char *text);
/* Run a shell command line (printed first); returns its exit status. */
int it_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A client for the cluster with the given per-operation deadline. */
struct sv_client *it_client(const struct it_cluster *c, uint32_t deadline_ms);

/* Node id of the leader of the shard holding bucket/key (0 when unknown),
 * and the ids of its replicas (up to 16) into replicas/n. Retries for up to
 * 10 s while no leader is known. */
uint64_t it_leader_of(const struct it_cluster *c, struct sv_client *cl, const char *bucket,
                      const char *key, uint64_t *replicas, size_t *n);

/* The metrics port of node id: its port + 1000 (deploy/cluster writes that
 * into cluster.conf). */
int it_metrics_port(const struct it_cluster *c, int id);
/* GET path from 127.0.0.1:port over plain HTTP/1.1 (Connection: close;
 * 10 s at most). Returns the status code, 0 for a malformed or cut
 * response, or a negative errno when the connection failed (-ECONNREFUSED:
 * nothing listens). *body (may be NULL) gets the body, malloc'd and
 * NUL-terminated (the caller frees it), or NULL. */
int it_http_get(int port, const char *path, char **body);
/* In exposition text expo: the value of the sample named exactly series
 * (name and labels, e.g. "sv_requests_total{type=\"put\",result=\"ok\"}"),
 * or NAN when there is none; the sum of every sample whose line starts with
 * prefix (e.g. "sv_requests_total{type=\"put\","), 0 when there is none. */
double it_metric(const char *expo, const char *series);
double it_metric_sum(const char *expo, const char *prefix);

/* Send request (type, m) to the node on port over TLS (the cluster's CA);
 * its answer into *r (decoded, pointing into *body, which the caller frees).
 * 0, or -1 without one within timeout_ms. */
struct sv_msg;
int it_call(const struct it_cluster *c, int port, uint32_t type, const struct sv_msg *m,
            struct sv_msg *r, uint8_t **body, uint64_t timeout_ms);
/* it_call over a connection that shows node as_node's certificate (its
 * node.pem and node.key in the cluster directory; 0: none). */
int it_call_as(const struct it_cluster *c, int port, int as_node, uint32_t type,
               const struct sv_msg *m, struct sv_msg *r, uint8_t **body, uint64_t timeout_ms);

/* Move shard's replica from node from to node to: a MOVE request sent to
 * the meta group's leader (followed from the NOT_LEADER answers) until it
 * answers, within timeout_ms. Its status (SV_ST_OK: moved), with the
 * answer's text in why. */
int it_move(const struct it_cluster *c, uint64_t shard, uint64_t from, uint64_t to,
            uint64_t timeout_ms, char *why, size_t wl);

/* Deterministic pseudo-random bytes. */
void it_fill(void *buf, size_t len, uint64_t seed);
/* SHA-256 of buf into md. */
void it_sha256(const void *buf, size_t len, uint8_t md[32]);
uint64_t it_now_ms(void);

struct sv_tls_ctx;
struct sv_tls_conn;
/* A TCP connection to 127.0.0.1:port, or -1. */
int it_dial(int port);
/* Send what TLS connection t has for the network on fd. */
void it_tls_flush(int fd, struct sv_tls_conn *t);
/* A TLS client connection of ctx to 127.0.0.1:port whose handshake
 * completed within 5 s (its socket in *fdp), or NULL. */
struct sv_tls_conn *it_tls_dial(struct sv_tls_ctx *ctx, int port, int *fdp);

struct sv_wire_decoder;
/* Send what t has, then wait up to timeout_ms for bytes on fd and feed what
 * they decrypt to d: 1 when bytes came, 0 when none, -1 when the
 * connection ended. Not thread-safe (one static buffer). */
int it_tls_pump(int fd, struct sv_tls_conn *t, struct sv_wire_decoder *d, int timeout_ms);
/* True when the server closes fd within timeout_ms (EOF or reset). */
bool it_closed_by_server(int fd, int timeout_ms);
/* Over a new TLS connection of ctx to port, send one frame (type, id, body):
 * 1 when the node closes the connection within timeout_ms, 0 when it keeps
 * it, -1 when there was no connection to send it on. */
int it_frame_closes(struct sv_tls_ctx *ctx, int port, uint32_t type, uint64_t id,
                    const uint8_t *body, size_t len, int timeout_ms);

#endif
