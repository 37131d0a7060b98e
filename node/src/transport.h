/* ShardVault node transport: wire frames (wire.h) over TLS 1.3 (tls.h) on
 * libuv TCP streams, for client connections and node-to-node links.
 *
 * One struct sv_tp per node: it listens on one address and dials peers. Every
 * connection, accepted or dialled, speaks TLS 1.3 through svtls memory BIOs;
 * accepted connections ask for a client certificate but do not require one
 * (clients of the object API authenticate later with tokens; nodes present
 * their certificate, and sv_conn_peer_name() tells which node it is).
 * Dialled connections present the node's certificate and require the peer's
 * certificate to carry the expected name (mutual TLS).
 *
 * A connection is closed, with one log line naming the peer and the reason,
 * when: TLS fails (plain TCP, an untrusted certificate, a tampered record),
 * a frame is malformed or over SV_WIRE_FRAME_MAX, the peer closes, its
 * output queue passes SV_TP_OUT_MAX, or the owner calls sv_conn_close. Only
 * that connection is affected.
 *
 * Connections are named by a 64-bit id that is never reused within a
 * process: owners keep ids, not pointers, for anything that may outlive the
 * connection (a request waiting on Raft), and look the connection up again
 * with sv_tp_conn() when they answer.
 *
 * Everything here runs on the loop thread; no call blocks.
 */
#ifndef SV_TRANSPORT_H
#define SV_TRANSPORT_H

#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum {
    SV_TP_OUT_MAX = 64 << 20,           /* bytes queued for sending on one connection */
    SV_TP_CONNS_MAX = 4096,             /* open connections per node (default) */
    SV_TP_PEER_RESERVE = 256,           /* of them, only for peers (default) */
    SV_TP_PER_SOURCE_MAX = 1024,        /* client connections from one address (default) */
    SV_TP_IDLE_TIMEOUT_MS = 120000,     /* a client connection silent this long closes */
    SV_TP_HANDSHAKE_TIMEOUT_MS = 10000, /* TLS handshake must finish within */
    SV_TP_ADDR_MAX = 256,               /* "host:port" text, with NUL */
};

/* Connections refused or closed by a limit (sv_tp_stats), by limit:
 * - FULL: every connection slot taken (accepted or dialled);
 * - CLIENTS: the client share full (conns_max - peer_reserve), and the
 *   connection, let into the peers' reserve, showed no peer's certificate;
 * - SOURCE: per_source_max client connections from its address already;
 * - IDLE: a client connection that sent nothing for idle_timeout_ms. */
enum sv_tp_limit {
    SV_TP_LIMIT_FULL,
    SV_TP_LIMIT_CLIENTS,
    SV_TP_LIMIT_SOURCE,
    SV_TP_LIMIT_IDLE,
    SV_TP_LIMITS
};

struct sv_tp;
struct sv_conn;

struct sv_tp_config {
    uv_loop_t *loop;         /* borrowed; must outlive the transport */
    const char *listen_addr; /* "host:port" (IPv4 literal or name); NULL: do not listen */
    const char *ca_file;     /* cluster CA bundle (PEM) */
    const char *cert_file;   /* this node's certificate chain (PEM) */
    const char *key_file;    /* its private key (PEM) */
    void *arg;               /* passed to the callbacks */
    /* A complete frame arrived on c. f and its body are valid during the call
     * only. The callback may send on c, close c, or close other connections. */
    void (*on_frame)(void *arg, struct sv_conn *c, const struct sv_wire_frame *f);
    /* c is closing (err = 0 when closed by the owner, else a negative errno,
     * TLS or wire error); reason is a short text. c may not be used after the
     * call; its id no longer resolves. May be NULL. */
    void (*on_close)(void *arg, struct sv_conn *c, int err, const char *reason);
    /* (on_close, added:) it runs from the loop once the socket is closed, never
     * from inside a transport call; reason starts with "tls:" or "wire:" for
     * those modules' errors (their codes no longer overlap: sv_strerror of
     * errors.h names any err). */
    /* Close a connection whose TLS handshake has not finished this long after
     * it was accepted or dialled; 0: SV_TP_HANDSHAKE_TIMEOUT_MS (tests use less). */
    unsigned handshake_timeout_ms;
    /* Limits (0: the SV_TP_ default). An accepted connection is a client's
     * until its handshake shows a peer (is_peer): clients share conns_max -
     * peer_reserve slots, at most per_source_max from one address, and are
     * closed after idle_timeout_ms without a byte from them. When the
     * clients' share is full, a new connection is let into the reserve
     * (at most half of it, a few per address) only to become a peer: it is
     * closed at the end of its handshake otherwise. Dialled connections
     * are peers. So clients, however many, leave peers room to connect. */
    size_t conns_max, peer_reserve, per_source_max;
    unsigned idle_timeout_ms;
    /* Whether accepted connection c, its handshake just done, is a peer
     * (sv_conn_peer_name tells whose certificate it showed). NULL: none is. */
    bool (*is_peer)(void *arg, const struct sv_conn *c);
};

struct sv_tp_stats {
    size_t conns;                   /* open (sv_tp_conn_count) */
    size_t clients;                 /* of them, accepted and not peers */
    uint64_t refused[SV_TP_LIMITS]; /* refused or closed by each limit, ever */
};
void sv_tp_stats(const struct sv_tp *tp, struct sv_tp_stats *out);
/* "full", "clients", "source", "idle". */
const char *sv_tp_limit_name(enum sv_tp_limit l);

/* Start: load the TLS contexts (server and client role, both from the node
 * certificate) and listen. cfg is copied (strings too). Returns 0, a negative
 * errno (address in use, ...) or an svtls error; errmsg says which. */
int sv_tp_start(const struct sv_tp_config *cfg, struct sv_tp **out, char *errmsg, size_t errlen);

/* Close the listener and every connection (no callbacks into the owner after
 * this call returns), then free the transport once libuv has released every
 * handle. The loop must run until then (uv_run returns). */
void sv_tp_stop(struct sv_tp *tp);

/* Bound port (useful with port 0 in tests); 0 when not listening. */
int sv_tp_port(const struct sv_tp *tp);

/* Open connections, accepted and dialled (handshakes in progress included;
 * at most SV_TP_CONNS_MAX). */
size_t sv_tp_conn_count(const struct sv_tp *tp);

/* Dial addr ("host:port") and require the peer certificate to carry
 * peer_name (its CN or a subjectAltName). Returns 0 and sets *out at once; the
 * connection becomes usable when the handshake completes, and frames sent
 * before then are queued. A failure to connect later shows as on_close. */
/* (Added:) addresses are "a.b.c.d:port" or "localhost:port"; other names are
 * refused with -EINVAL (no blocking lookups on the loop), here and in
 * listen_addr. */
int sv_tp_connect(struct sv_tp *tp, const char *addr, const char *peer_name, struct sv_conn **out);

/* Look a connection up by id; NULL when it is closed or never existed. */
struct sv_conn *sv_tp_conn(struct sv_tp *tp, uint64_t id);

uint64_t sv_conn_id(const struct sv_conn *c);
/* True for a connection this node dialled. */
bool sv_conn_outbound(const struct sv_conn *c);
/* CN of the verified peer certificate, or NULL (no certificate, or the
 * handshake is not finished). Belongs to c. */
const char *sv_conn_peer_name(const struct sv_conn *c);
/* Remote address as "ip:port". Belongs to c. */
const char *sv_conn_remote(const struct sv_conn *c);
/* True once the TLS handshake finished. */
bool sv_conn_ready(const struct sv_conn *c);

/* Queue one frame (body[0..len) is copied). Returns 0, SV_WIRE_E_TOO_BIG,
 * -ENOBUFS when the output queue would pass SV_TP_OUT_MAX (nothing queued;
 * the connection stays open), or -ENOTCONN after it closed. */
int sv_conn_send(struct sv_conn *c, uint32_t type, uint64_t req_id, const void *body, size_t len);

/* Bytes queued and not yet written to the socket. */
size_t sv_conn_queued(const struct sv_conn *c);

/* Close c (on_close follows with err 0 and reason). Idempotent.
 * (Added:) frames queued before the call and close_notify are still sent, for
 * at most a short linger, before the socket closes and on_close runs. */
void sv_conn_close(struct sv_conn *c, const char *reason);

/* Owner's pointer on a connection (NULL at first). */
void sv_conn_set_data(struct sv_conn *c, void *data);
void *sv_conn_data(const struct sv_conn *c);

#endif
