/* Private declarations shared by the transport's files (transport*.c; the API is transport.h). */
#ifndef SV_TRANSPORT_INTERNAL_H
#define SV_TRANSPORT_INTERNAL_H

#include "tls.h"
#include "transport.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

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
    REFUSAL_LOG_MS = 10000,     /* at most one log line per this long for refused connections */
    SOURCES = TABLE_SIZE,       /* client addresses counted (open addressing) */
    PROVISIONAL_PER_SOURCE = 4, /* connections in the peers' reserve from one address */
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
    bool silent;        /* never announced to the owner: no on_close */
    bool client;        /* counted as a client (accepted, not a peer) */
    bool provisional;   /* let into the peers' reserve: must show a peer */
    uint32_t src;       /* remote IPv4 address (network order; 0: unknown) */
    uint64_t active_ms; /* the loop's time of the last bytes from a client */
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
    size_t nconns; /* in the table */
    size_t conns_max, peer_reserve, per_source_max;
    unsigned idle_timeout_ms;
    size_t n_clients;     /* connections counted as clients (c->client) */
    size_t n_provisional; /* of them, in the peers' reserve */
    struct {
        uint32_t addr; /* 0: free */
        uint32_t n, provisional;
    } src[SOURCES];
    uint64_t refused[SV_TP_LIMITS];
    uint64_t refusal_logged_ms; /* the loop's time of the last refusal logged */
    struct sv_conn *all;        /* every connection not yet freed */
    struct sv_conn *dirty;      /* connections with frames to push */
    struct sv_conn *table[TABLE_SIZE];
    uint8_t read_buf[READ_BUF];
    uint8_t plain_buf[PLAIN_BUF];
    uint8_t coalesce[COALESCE_MAX];
    uint8_t out_buf[OUT_BUF]; /* ciphertext on its way to a socket (drain) */
};

/* ---- one connection's life (transport_conn.c) --------------------------- */

/* Enter c in tp's id table. */
void sv__tp_table_insert(struct sv_tp *tp, struct sv_conn *c);
/* The slot of id in tp's table, TABLE_SIZE when absent. */
size_t sv__tp_table_find(const struct sv_tp *tp, uint64_t id);
/* Have c's queued frames pushed before the loop next waits for I/O. */
void sv__tp_mark_dirty(struct sv_conn *c);
/* Free tp once it is stopping and its handles and connections are gone. */
void sv__tp_maybe_free(struct sv_tp *tp);
/* Close c's handles now (no linger); c is freed when they have closed. */
void sv__tp_hard_close(struct sv_conn *c);
/* Close c with err and a reason (printf format): log it, forget its id, send
 * what is due for at most LINGER_MS, then close; on_close follows. Idempotent. */
void sv__tp_conn_end(struct sv_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A new connection with its handles initialised, on tp's list (not in the
 * table); NULL when out of memory. */
struct sv_conn *sv__tp_conn_new(struct sv_tp *tp, bool outbound);
/* Start c's handshake timeout. */
void sv__tp_start_timer(struct sv_conn *c);
/* c stops counting as a client (it closes, or showed a peer). */
void sv__tp_client_drop(struct sv_tp *tp, struct sv_conn *c);
/* Provisional client c becomes an ordinary one if the clients' share has
 * room now; whether it did. */
bool sv__tp_client_settle(struct sv_tp *tp, struct sv_conn *c);
/* libuv callbacks: a connection to accept on the listener, a dial's outcome. */
void sv__tp_on_connection(uv_stream_t *server, int status);
void sv__tp_on_connect(uv_connect_t *req, int status);

/* ---- one connection's bytes (transport_io.c) ---------------------------- */

/* Hand the ciphertext svtls holds to the socket. */
void sv__tp_drain(struct sv_conn *c);
/* Push queued frames through TLS while less than limit bytes wait for the socket. */
void sv__tp_flush(struct sv_conn *c, size_t limit);
/* libuv read callbacks of every connection. */
void sv__tp_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void sv__tp_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- addresses (transport.c) -------------------------------------------- */

/* sa as "ip:port" into out[0..cap). */
void sv__tp_format_addr(const struct sockaddr_in *sa, char *out, size_t cap);

#endif
