/* ShardVault TLS 1.3 over memory BIOs: the encryption layer that the client and
 * the node put on their libuv streams.
 *
 * No sockets here. The owner of a connection moves bytes:
 *
 *     network --> sv_tls_feed --> sv_tls_read  --> plaintext (wire frames)
 *     plaintext --> sv_tls_write --> sv_tls_pending_out --> network
 *
 * After every sv_tls_feed the owner calls sv_tls_read until it returns 0
 * with n == 0, and after every call (read, write, shutdown, and right after
 * sv_tls_conn_new for a client, which queues its ClientHello) it sends what
 * sv_tls_pending_out gives, so handshake messages and alerts go out too.
 *
 * Policy. TLS 1.3 only (a TLS 1.2 peer is refused). Peers are verified
 * against the configured CA bundle only (never the system store), with a
 * chain depth limit. A client always verifies the server; a server with
 * require_peer_cert refuses a client without a certificate (mutual TLS for
 * node-to-node links), without it accepts clients with no certificate (the
 * public API authenticates those by other means) but still verifies any
 * certificate that is presented. A verified peer certificate must carry
 * exactly one subject CN of printable ASCII, which sv_tls_peer_name returns
 * for logs and role mapping. No session tickets or resumption: every
 * connection does a full handshake with certificates. Write keys are
 * updated (KeyUpdate, RFC 8446 §4.6.3) every SV_TLS_KEY_UPDATE_RECORDS
 * records, below the AES-GCM limit of RFC 8446 §5.5.
 *
 * Limits. A connection holds at most SV_TLS_IN_MAX bytes of received
 * ciphertext not yet consumed by sv_tls_read and at most SV_TLS_OUT_MAX bytes
 * of ciphertext not yet drained; past either, sv_tls_feed or sv_tls_write
 * refuse with SV_TLS_E_BUFFER_FULL and take nothing, so a peer cannot make a
 * connection's memory grow without bound.
 *
 * Errors: functions return 0, a negative errno, or a negative enum
 * sv_tls_err. On a connection, every error except SV_TLS_E_BUFFER_FULL,
 * SV_TLS_E_NOT_READY and SV_TLS_E_CLOSED is fatal and sticky: every later
 * call returns it again, sv_tls_conn_errmsg says why (with the OpenSSL or
 * X.509 reason), and the owner drains sv_tls_pending_out (an alert telling
 * the peer why) and then closes the stream. Functions taking `char *errmsg,
 * size_t errlen` write a NUL-terminated explanation there on failure (errmsg
 * may be NULL when errlen is 0). NULL pointers where a pointer is required
 * are programmer errors and abort. A connection is used by one thread at a
 * time; a context may be shared by threads once made.
 */
#ifndef SV_TLS_H
#define SV_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    /* Largest TLS 1.3 record on the wire: header, 2^14 + 256 bytes (RFC 8446 §5.2). */
    SV_TLS_RECORD_MAX = 5 + (1 << 14) + 256,
    SV_TLS_FEED_MAX = 64 * 1024,           /* largest feed the limits plan for (a libuv read) */
    SV_TLS_IN_MAX = 4 * SV_TLS_FEED_MAX,   /* received ciphertext held, unread */
    SV_TLS_WRITE_MAX = 2 << 20,            /* plaintext bytes per sv_tls_write */
    SV_TLS_OUT_MAX = 2 * SV_TLS_WRITE_MAX, /* ciphertext held, not yet drained */
    SV_TLS_VERIFY_DEPTH_DEFAULT = 2,       /* intermediate CAs allowed in a peer chain */
    SV_TLS_VERIFY_DEPTH_MAX = 8,           /* ... at most */
    SV_TLS_NAME_MAX = 256,                 /* peer CN and expected name, with the NUL */
    SV_TLS_ERRMSG_MAX = 256,               /* sv_tls_conn_errmsg, with the NUL */
    SV_TLS_KEY_UPDATE_RECORDS = 1 << 23,   /* records sent between KeyUpdates */
};

/* Domain errors (negative, disjoint from -errno): -2000 .. -1951, svtls's
 * range of the node's error space (node/src/errors.h). */
enum sv_tls_err {
    SV_TLS_OK = 0,
    SV_TLS_E_CONFIG = -2000,  /* CA, certificate or key file unreadable, invalid or mismatched */
    SV_TLS_E_HANDSHAKE,       /* handshake failed: not TLS, not TLS 1.3, no common parameters */
    SV_TLS_E_PEER_UNVERIFIED, /* peer certificate missing, untrusted, expired, wrong name */
    SV_TLS_E_PEER_ALERT,      /* the peer aborted with a fatal alert (e.g. refused our cert) */
    SV_TLS_E_PROTOCOL,        /* bad record after the handshake: tampered, corrupt, unexpected */
    SV_TLS_E_CLOSED,          /* closed cleanly: peer sent close_notify, or we shut down */
    SV_TLS_E_BUFFER_FULL,     /* SV_TLS_IN_MAX or SV_TLS_OUT_MAX reached; nothing taken */
    SV_TLS_E_NOT_READY,       /* the handshake has not finished yet */
    SV_TLS_E_OPENSSL,         /* any other OpenSSL failure */
    SV_TLS_E_LAST_
};

/* Static string for an error code: the domain errors above, strerror() text
 * for a negative errno, "unknown" for anything else. */
const char *sv_tls_strerror(int err);

enum sv_tls_role {
    SV_TLS_CLIENT,
    SV_TLS_SERVER,
};

/* What a context is made from. Every path is borrowed for the call only. */
struct sv_tls_config {
    enum sv_tls_role role;
    const char *ca_file;    /* PEM bundle of the CAs that vouch for peers; required */
    const char *cert_file;  /* PEM chain, own certificate first; NULL only for a client */
    const char *key_file;   /* PEM private key of cert_file; NULL iff cert_file is NULL */
    bool require_peer_cert; /* server: refuse clients without a certificate; client: unused */
    int verify_depth;       /* intermediate CAs allowed, 0: SV_TLS_VERIFY_DEPTH_DEFAULT */
    /* Records sent between KeyUpdates, 0: SV_TLS_KEY_UPDATE_RECORDS (tests use less). */
    uint64_t key_update_records;
};

struct sv_tls_ctx;
struct sv_tls_conn;

/* Make a context: loads the CA bundle, the certificate chain and its key
 * (checking that they match), TLS 1.3 only. On success *out owns the
 * context; free it with sv_tls_ctx_free. Returns 0, SV_TLS_E_CONFIG (a file
 * missing, unreadable or invalid, key and certificate mismatched, a depth
 * over SV_TLS_VERIFY_DEPTH_MAX), -ENOMEM or SV_TLS_E_OPENSSL; *out is
 * untouched on failure. cfg is borrowed. */
int sv_tls_ctx_new(const struct sv_tls_config *cfg, struct sv_tls_ctx **out, char *errmsg,
                   size_t errlen);

/* Free a context. Connections made from it stay valid: each holds its own
 * reference to the OpenSSL context. NULL is a no-op. */
void sv_tls_ctx_free(struct sv_tls_ctx *ctx);

/* Make a connection in ctx's role. peer_name (borrowed for the call; client
 * only, NULL for a server) is the name the server's certificate must carry
 * (DNS subjectAltName, or an IP address literal matched against IP
 * subjectAltNames); it is also sent as SNI when it is not an IP address.
 * A client given NULL accepts any server certificate the CA vouches for.
 * A client queues its ClientHello at once (drain sv_tls_pending_out). On
 * success *out owns the connection (free with sv_tls_conn_free); ctx is
 * borrowed for the call only. Returns 0, -EINVAL (peer_name longer than
 * SV_TLS_NAME_MAX - 1), -ENOMEM or SV_TLS_E_OPENSSL; *out untouched on failure. */
int sv_tls_conn_new(struct sv_tls_ctx *ctx, const char *peer_name, struct sv_tls_conn **out,
                    char *errmsg, size_t errlen);

/* Free a connection and everything it buffers, without sending anything
 * (call sv_tls_shutdown and drain first for a clean close). NULL is a no-op. */
void sv_tls_conn_free(struct sv_tls_conn *c);

/* Hand over data[0..len) received from the network (copied; data stays the
 * caller's). Nothing is decrypted here: call sv_tls_read next. Returns 0,
 * SV_TLS_E_BUFFER_FULL when the ciphertext held would pass SV_TLS_IN_MAX
 * (nothing taken: read, then feed again), -ENOMEM, or the sticky error. */
int sv_tls_feed(struct sv_tls_conn *c, const void *data, size_t len);

/* Advance the handshake and decrypt into buf[0..cap) (cap > 0; buf borrowed);
 * *n is set to the plaintext bytes written, which are only ever authenticated
 * ones. Returns 0 with *n > 0 for data, 0 with *n == 0 when more input is
 * needed, SV_TLS_E_CLOSED once the peer closed cleanly (after every byte it
 * sent before), or a fatal error: SV_TLS_E_HANDSHAKE, SV_TLS_E_PEER_UNVERIFIED,
 * SV_TLS_E_PEER_ALERT, SV_TLS_E_PROTOCOL, SV_TLS_E_OPENSSL (*n is then 0). */
int sv_tls_read(struct sv_tls_conn *c, void *buf, size_t cap, size_t *n);

/* Encrypt data[0..len) (borrowed; all or nothing; len over SV_TLS_WRITE_MAX
 * is a programmer error) into the output queue, renewing the write key first
 * when SV_TLS_KEY_UPDATE_RECORDS records went out under it. Returns 0, SV_TLS_E_NOT_READY before
 * the handshake is done, SV_TLS_E_BUFFER_FULL when the queue would pass SV_TLS_OUT_MAX (nothing
 * taken: drain, then write again), SV_TLS_E_CLOSED after sv_tls_shutdown, or the sticky error. */
int sv_tls_write(struct sv_tls_conn *c, const void *data, size_t len);

/* Ciphertext bytes waiting to be sent. */
size_t sv_tls_pending_out_len(const struct sv_tls_conn *c);

/* Move up to cap bytes of ciphertext to send into buf (borrowed); *n is set
 * to the count (0: nothing to send). Works after errors too, so the alert
 * explaining a failure reaches the peer. Returns 0. */
int sv_tls_pending_out(struct sv_tls_conn *c, void *buf, size_t cap, size_t *n);

/* True once the handshake finished and the peer was verified. A client is
 * done when it sent its Finished: a server requiring a certificate may still
 * refuse the client's, which the client sees as SV_TLS_E_PEER_ALERT on a
 * later sv_tls_read. False after a fatal error. */
bool sv_tls_handshake_done(const struct sv_tls_conn *c);

/* Queue close_notify (drain it with sv_tls_pending_out); later writes return
 * SV_TLS_E_CLOSED, reads go on until the peer closes too. Before the
 * handshake is done nothing is queued (just close the stream). Returns 0, or
 * the sticky error. Calling it again is a no-op. */
int sv_tls_shutdown(struct sv_tls_conn *c);

/* Subject CN of the verified peer certificate, or NULL when the peer
 * presented none or the handshake is not done. The string belongs to c and
 * lives as long as it. */
const char *sv_tls_peer_name(const struct sv_tls_conn *c);

/* Why the connection failed (empty before any error). Belongs to c. */
const char *sv_tls_conn_errmsg(const struct sv_tls_conn *c);

/* KeyUpdates this connection has sent (for tests and metrics). */
uint64_t sv_tls_key_updates(const struct sv_tls_conn *c);

#ifdef __cplusplus
}
#endif
#endif
