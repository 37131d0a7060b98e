/* TLS 1.3 over OpenSSL memory BIOs (contracts and policy in tls.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "wire.h"

/* Programmer errors crash, in release builds too (STYLE.md rule 8). */
#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Ciphertext added to each record by TLS 1.3 with AEAD: header (5), inner
 * content type (1), tag (16); rounded up, plus room for a KeyUpdate record. */
enum {
    RECORD_OVERHEAD = 32,
    RECORD_PLAIN_MAX = 1 << 14,
    KEY_UPDATE_OVERHEAD = 64,
};

static size_t write_need(size_t len)
{
    size_t records = (len + RECORD_PLAIN_MAX - 1) / RECORD_PLAIN_MAX;
    return len + records * RECORD_OVERHEAD + KEY_UPDATE_OVERHEAD;
}

/* A whole wire frame goes out in one sv_tls_write. */
_Static_assert((long)SV_TLS_WRITE_MAX >= (long)SV_WIRE_PREFIX + (long)SV_WIRE_FRAME_MAX,
               "one write holds any wire frame");
/* A full write fits an empty output queue, and a feed an input queue that
 * still holds one partial record after the owner read everything it could. */
_Static_assert((long)SV_TLS_OUT_MAX >=
                   (long)SV_TLS_WRITE_MAX +
                       ((long)SV_TLS_WRITE_MAX / RECORD_PLAIN_MAX + 1) * RECORD_OVERHEAD +
                       KEY_UPDATE_OVERHEAD,
               "a full write fits the output queue");
_Static_assert(SV_TLS_IN_MAX >= SV_TLS_FEED_MAX + SV_TLS_RECORD_MAX,
               "a feed fits beside a partial record");
/* BIO_read and BIO_write take int lengths. */
_Static_assert(SV_TLS_IN_MAX <= INT_MAX && SV_TLS_OUT_MAX <= INT_MAX, "BIO lengths are int");
_Static_assert(SV_TLS_VERIFY_DEPTH_DEFAULT <= SV_TLS_VERIFY_DEPTH_MAX, "default depth allowed");
/* RFC 8446 §5.5: at most 2^24.5 full records per AES-GCM key. */
_Static_assert(SV_TLS_KEY_UPDATE_RECORDS <= (1 << 24), "update keys before the AES-GCM limit");

struct sv_tls_ctx {
    SSL_CTX *ssl_ctx;
    enum sv_tls_role role;
    uint64_t key_update_records;
};

struct sv_tls_conn {
    SSL *ssl;  /* owns in and out */
    BIO *in;   /* network -> SSL: ciphertext fed, not yet consumed */
    BIO *out;  /* SSL -> network: ciphertext not yet drained */
    int error; /* first fatal error, sticky */
    bool done; /* handshake finished, peer verified */
    bool shut; /* we queued close_notify (or closed before the handshake ended) */
    bool peer_closed;
    bool has_peer_name;
    uint64_t key_update_records;
    uint64_t records; /* sent since the last KeyUpdate */
    uint64_t key_updates;
    char peer_name[SV_TLS_NAME_MAX];
    char verify_why[128]; /* our verify callback's reason for refusing a peer */
    char errmsg[SV_TLS_ERRMSG_MAX];
};

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

/* The most telling queued OpenSSL error, and empty the queue (0 when it was
 * empty). prefer_ssl: the first from libssl (a TLS failure names its reason
 * there), else the first at all (a file error names the system cause first). */
static unsigned long pick_error(bool prefer_ssl)
{
    unsigned long first = 0, e;
    while ((e = ERR_get_error()) != 0) {
        if (first == 0) {
            first = e;
        }
        if (prefer_ssl && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_LIB(first) != ERR_LIB_SSL) {
            first = e;
        }
    }
    return first;
}

static void describe(unsigned long e, char *buf, size_t cap)
{
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (reason != NULL) {
        snprintf(buf, cap, "%s", reason);
    } else if (e != 0) {
        ERR_error_string_n(e, buf, cap);
    } else {
        snprintf(buf, cap, "no OpenSSL error queued");
    }
}

/* Report the queued OpenSSL error for what (and the file it concerns, or
 * NULL), drop the queue and return rc. */
static int openssl_err(int rc, char *errmsg, size_t errlen, const char *what, const char *path)
{
    char buf[200];
    describe(pick_error(false), buf, sizeof(buf));
    ERR_clear_error();
    set_err(errmsg, errlen, "%s%s%s: %s", what, path != NULL ? " " : "", path != NULL ? path : "",
            buf);
    return rc;
}

const char *sv_tls_strerror(int err)
{
    switch (err) {
    case SV_TLS_OK:
        return "ok";
    case SV_TLS_E_CONFIG:
        return "TLS configuration: CA, certificate or key unusable";
    case SV_TLS_E_HANDSHAKE:
        return "TLS handshake failed";
    case SV_TLS_E_PEER_UNVERIFIED:
        return "TLS peer certificate missing or not verified";
    case SV_TLS_E_PEER_ALERT:
        return "TLS peer aborted with an alert";
    case SV_TLS_E_PROTOCOL:
        return "TLS record error (tampered or corrupt)";
    case SV_TLS_E_CLOSED:
        return "TLS connection closed";
    case SV_TLS_E_BUFFER_FULL:
        return "TLS buffer limit reached";
    case SV_TLS_E_NOT_READY:
        return "TLS handshake not finished";
    case SV_TLS_E_OPENSSL:
        return "OpenSSL failure";
    default:
        break;
    }
    /* errno values are small; -1000 and below are domain errors of our modules. */
    if (err < 0 && err > -1000) {
        return strerror(-err);
    }
    return "unknown";
}

/* Subject CN of cert into out[0..cap): exactly one CN, printable ASCII, not
 * empty. Names map to roles, so an ambiguous or odd one is refused rather
 * than interpreted. Returns 0, or -1 with *why set. */
static int cert_cn(X509 *cert, char *out, size_t cap, const char **why)
{
    X509_NAME *name = X509_get_subject_name(cert);
    int i = name != NULL ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (i < 0) {
        *why = "certificate has no subject CN";
        return -1;
    }
    if (X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0) {
        *why = "certificate has more than one subject CN";
        return -1;
    }
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len < 0) {
        ERR_clear_error();
        *why = "certificate subject CN is not a string";
        return -1;
    }
    int rc = 0;
    if (len == 0 || (size_t)len >= cap) {
        *why = "certificate subject CN is empty or too long";
        rc = -1;
    }
    for (int k = 0; rc == 0 && k < len; k++) {
        if (utf8[k] < 0x20 || utf8[k] > 0x7e) {
            *why = "certificate subject CN is not printable ASCII";
            rc = -1;
        }
    }
    if (rc == 0) {
        memcpy(out, utf8, (size_t)len);
        out[len] = '\0';
    }
    OPENSSL_free(utf8);
    return rc;
}

/* Chain verification has passed up to the peer's own certificate: also
 * require a usable CN there. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok || X509_STORE_CTX_get_error_depth(x) != 0) {
        return ok;
    }
    char cn[SV_TLS_NAME_MAX];
    const char *why = NULL;
    if (cert_cn(X509_STORE_CTX_get_current_cert(x), cn, sizeof(cn), &why) == 0) {
        return 1;
    }
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sv_tls_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    if (c != NULL) {
        snprintf(c->verify_why, sizeof(c->verify_why), "%s", why);
    }
    X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* Never prompt on a terminal for an encrypted key: refuse it instead. */
static int no_password(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

int sv_tls_ctx_new(const struct sv_tls_config *cfg, struct sv_tls_ctx **out, char *errmsg,
                   size_t errlen)
{
    ASSERT(cfg != NULL && out != NULL && cfg->ca_file != NULL);
    ASSERT(cfg->role == SV_TLS_CLIENT || cfg->role == SV_TLS_SERVER);
    ASSERT((cfg->cert_file == NULL) == (cfg->key_file == NULL));
    ASSERT(cfg->role == SV_TLS_CLIENT || cfg->cert_file != NULL);
    int rc;
    int depth = cfg->verify_depth == 0 ? SV_TLS_VERIFY_DEPTH_DEFAULT : cfg->verify_depth;
    if (depth < 0 || depth > SV_TLS_VERIFY_DEPTH_MAX) {
        set_err(errmsg, errlen, "verify depth %d outside 0..%d", cfg->verify_depth,
                SV_TLS_VERIFY_DEPTH_MAX);
        return SV_TLS_E_CONFIG;
    }

    struct sv_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        set_err(errmsg, errlen, "out of memory");
        return -ENOMEM;
    }
    ctx->role = cfg->role;
    ctx->key_update_records =
        cfg->key_update_records == 0 ? SV_TLS_KEY_UPDATE_RECORDS : cfg->key_update_records;

    ERR_clear_error();
    ctx->ssl_ctx =
        SSL_CTX_new(cfg->role == SV_TLS_CLIENT ? TLS_client_method() : TLS_server_method());
    if (ctx->ssl_ctx == NULL) {
        rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "SSL_CTX_new", NULL);
        goto err_after_alloc;
    }
    SSL_CTX *s = ctx->ssl_ctx;
    if (SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) != 1) {
        rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "TLS 1.3 only", NULL);
        goto err_after_ssl_ctx;
    }
    /* Full handshakes only: no tickets to protect, rotate or replay. */
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(s, 0);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_default_passwd_cb(s, no_password);

    if (SSL_CTX_load_verify_file(s, cfg->ca_file) != 1) {
        rc = openssl_err(SV_TLS_E_CONFIG, errmsg, errlen, "CA bundle", cfg->ca_file);
        goto err_after_ssl_ctx;
    }
    if (cfg->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(s, cfg->cert_file) != 1) {
            rc = openssl_err(SV_TLS_E_CONFIG, errmsg, errlen, "certificate chain", cfg->cert_file);
            goto err_after_ssl_ctx;
        }
        if (SSL_CTX_use_PrivateKey_file(s, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            rc = openssl_err(SV_TLS_E_CONFIG, errmsg, errlen, "private key", cfg->key_file);
            goto err_after_ssl_ctx;
        }
        if (SSL_CTX_check_private_key(s) != 1) {
            rc = openssl_err(SV_TLS_E_CONFIG, errmsg, errlen, "private key and certificate",
                             cfg->key_file);
            goto err_after_ssl_ctx;
        }
    }
    int mode = SSL_VERIFY_PEER;
    if (cfg->role == SV_TLS_SERVER) {
        if (cfg->require_peer_cert) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        }
        /* Tell clients which CA we accept, so one with several certificates picks right. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names == NULL) {
            rc = openssl_err(SV_TLS_E_CONFIG, errmsg, errlen, "CA bundle names", cfg->ca_file);
            goto err_after_ssl_ctx;
        }
        SSL_CTX_set_client_CA_list(s, names); /* s owns names */
    }
    SSL_CTX_set_verify(s, mode, verify_cb);
    SSL_CTX_set_verify_depth(s, depth);
    ERR_clear_error();
    *out = ctx;
    return 0;

err_after_ssl_ctx:
    SSL_CTX_free(ctx->ssl_ctx);
err_after_alloc:
    free(ctx);
    return rc;
}

void sv_tls_ctx_free(struct sv_tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* Make the connection fail for good with rc and a reason. */
static int conn_fatal(struct sv_tls_conn *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int conn_fatal(struct sv_tls_conn *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
    c->error = rc;
    c->done = false;
    ERR_clear_error();
    return rc;
}

/* Classify a failed SSL_* call (ret) on c: 0 when it only needs more input,
 * SV_TLS_E_CLOSED for close_notify, else a sticky fatal error. */
static int conn_error(struct sv_tls_conn *c, int ret)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        c->peer_closed = true;
        return SV_TLS_E_CLOSED;
    }
    unsigned long code = pick_error(true);
    char why[200];
    describe(code, why, sizeof(why));
    int reason = code != 0 && ERR_GET_LIB(code) == ERR_LIB_SSL ? ERR_GET_REASON(code) : 0;
    const char *stage = c->done ? "record" : "handshake";
    if (e != SSL_ERROR_SSL && e != SSL_ERROR_SYSCALL) {
        return conn_fatal(c, SV_TLS_E_OPENSSL, "%s: unexpected SSL_get_error %d", stage, e);
    }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(c->ssl);
        return conn_fatal(c, SV_TLS_E_PEER_UNVERIFIED, "peer certificate refused: %s%s%s",
                          X509_verify_cert_error_string(v), c->verify_why[0] ? ": " : "",
                          c->verify_why);
    }
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        return conn_fatal(c, SV_TLS_E_PEER_UNVERIFIED, "peer presented no certificate");
    }
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
        return conn_fatal(c, SV_TLS_E_PEER_ALERT, "peer sent a fatal alert: %s", why);
    }
    if (e == SSL_ERROR_SYSCALL && code == 0) {
        snprintf(why, sizeof(why), "unexpected end of stream");
    }
    return conn_fatal(c, c->done ? SV_TLS_E_PROTOCOL : SV_TLS_E_HANDSHAKE, "%s: %s", stage, why);
}

/* Note the end of the handshake: record the peer's name. */
static int check_handshake(struct sv_tls_conn *c)
{
    if (c->done || c->error != 0 || !SSL_is_init_finished(c->ssl)) {
        return 0;
    }
    if (SSL_version(c->ssl) != TLS1_3_VERSION) {
        return conn_fatal(c, SV_TLS_E_HANDSHAKE, "handshake: negotiated %s, not TLS 1.3",
                          SSL_get_version(c->ssl));
    }
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    if (peer != NULL) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            return conn_fatal(c, SV_TLS_E_PEER_UNVERIFIED, "peer certificate refused: %s",
                              X509_verify_cert_error_string(v));
        }
        const char *why = NULL;
        if (cert_cn(peer, c->peer_name, sizeof(c->peer_name), &why) != 0) {
            return conn_fatal(c, SV_TLS_E_PEER_UNVERIFIED, "peer certificate refused: %s", why);
        }
        c->has_peer_name = true;
    }
    c->done = true;
    return 0;
}

int sv_tls_conn_new(struct sv_tls_ctx *ctx, const char *peer_name, struct sv_tls_conn **out,
                    char *errmsg, size_t errlen)
{
    ASSERT(ctx != NULL && out != NULL);
    ASSERT(ctx->role == SV_TLS_CLIENT || peer_name == NULL);
    int rc;
    if (peer_name != NULL && (peer_name[0] == '\0' || strlen(peer_name) >= SV_TLS_NAME_MAX)) {
        set_err(errmsg, errlen, "expected peer name empty or longer than %d bytes",
                SV_TLS_NAME_MAX - 1);
        return -EINVAL;
    }
    struct sv_tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        set_err(errmsg, errlen, "out of memory");
        return -ENOMEM;
    }
    c->key_update_records = ctx->key_update_records;

    ERR_clear_error();
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (c->ssl == NULL) {
        rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "SSL_new", NULL);
        goto err_after_alloc;
    }
    c->in = BIO_new(BIO_s_mem());
    if (c->in == NULL) {
        rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "BIO_new", NULL);
        goto err_after_ssl;
    }
    c->out = BIO_new(BIO_s_mem());
    if (c->out == NULL) {
        rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "BIO_new", NULL);
        goto err_after_in;
    }
    /* An empty BIO means "wait for more", never end of stream. */
    BIO_set_mem_eof_return(c->in, -1);
    BIO_set_mem_eof_return(c->out, -1);
    SSL_set_bio(c->ssl, c->in, c->out); /* the SSL owns both BIOs from here */
    SSL_set_app_data(c->ssl, c);

    if (ctx->role == SV_TLS_SERVER) {
        SSL_set_accept_state(c->ssl);
        *out = c;
        return 0;
    }
    if (peer_name != NULL) {
        unsigned char addr[16];
        bool ip =
            inet_pton(AF_INET, peer_name, addr) == 1 || inet_pton(AF_INET6, peer_name, addr) == 1;
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), peer_name)
                    : SSL_set1_host(c->ssl, peer_name) == 1 &&
                          SSL_set_tlsext_host_name(c->ssl, peer_name) == 1;
        if (ok != 1) {
            rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "expected peer name", NULL);
            goto err_after_ssl;
        }
    }
    SSL_set_connect_state(c->ssl);
    int ret = SSL_do_handshake(c->ssl); /* queues the ClientHello */
    if (ret != 1 && SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ) {
        rc = openssl_err(SV_TLS_E_OPENSSL, errmsg, errlen, "ClientHello", NULL);
        goto err_after_ssl;
    }
    ERR_clear_error();
    *out = c;
    return 0;

err_after_in:
    BIO_free(c->in);
err_after_ssl:
    SSL_free(c->ssl);
err_after_alloc:
    free(c);
    return rc;
}

void sv_tls_conn_free(struct sv_tls_conn *c)
{
    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl); /* frees both BIOs */
    OPENSSL_cleanse(c->peer_name, sizeof(c->peer_name));
    free(c);
}

int sv_tls_feed(struct sv_tls_conn *c, const void *data, size_t len)
{
    ASSERT(c != NULL && (data != NULL || len == 0));
    if (c->error != 0) {
        return c->error;
    }
    if (c->peer_closed) {
        return SV_TLS_E_CLOSED;
    }
    if (len == 0) {
        return 0;
    }
    size_t held = BIO_ctrl_pending(c->in);
    if (len > SV_TLS_IN_MAX || held + len > SV_TLS_IN_MAX) {
        return SV_TLS_E_BUFFER_FULL;
    }
    if (BIO_write(c->in, data, (int)len) != (int)len) {
        ERR_clear_error();
        return -ENOMEM;
    }
    return 0;
}

int sv_tls_read(struct sv_tls_conn *c, void *buf, size_t cap, size_t *n)
{
    ASSERT(c != NULL && buf != NULL && cap > 0 && n != NULL);
    *n = 0;
    if (c->error != 0) {
        return c->error;
    }
    if (c->peer_closed) {
        return SV_TLS_E_CLOSED;
    }
    ERR_clear_error();
    size_t got = 0;
    int ret = SSL_read_ex(c->ssl, buf, cap, &got);
    int rc = check_handshake(c);
    if (rc != 0) {
        return rc;
    }
    if (ret == 1) {
        *n = got;
        return 0;
    }
    return conn_error(c, ret);
}

int sv_tls_write(struct sv_tls_conn *c, const void *data, size_t len)
{
    ASSERT(c != NULL && (data != NULL || len == 0));
    ASSERT(len <= SV_TLS_WRITE_MAX);
    if (c->error != 0) {
        return c->error;
    }
    if (c->shut) {
        return SV_TLS_E_CLOSED;
    }
    if (!c->done) {
        return SV_TLS_E_NOT_READY;
    }
    if (len == 0) {
        return 0;
    }
    if (BIO_ctrl_pending(c->out) + write_need(len) > SV_TLS_OUT_MAX) {
        return SV_TLS_E_BUFFER_FULL;
    }
    ERR_clear_error();
    if (c->records >= c->key_update_records) {
        /* Sent with the next record; REQUESTED makes the peer renew its keys too. */
        if (SSL_key_update(c->ssl, SSL_KEY_UPDATE_REQUESTED) != 1) {
            return conn_fatal(c, SV_TLS_E_OPENSSL, "KeyUpdate refused");
        }
        c->records = 0;
        c->key_updates++;
    }
    size_t wrote = 0;
    int ret = SSL_write_ex(c->ssl, data, len, &wrote);
    if (ret != 1) {
        int rc = conn_error(c, ret);
        return rc != 0 ? rc : conn_fatal(c, SV_TLS_E_OPENSSL, "write wants input");
    }
    ASSERT(wrote == len); /* memory BIOs take everything, partial writes are off */
    c->records += (len + RECORD_PLAIN_MAX - 1) / RECORD_PLAIN_MAX;
    return 0;
}

size_t sv_tls_pending_out_len(const struct sv_tls_conn *c)
{
    ASSERT(c != NULL);
    return BIO_ctrl_pending(c->out);
}

int sv_tls_pending_out(struct sv_tls_conn *c, void *buf, size_t cap, size_t *n)
{
    ASSERT(c != NULL && (buf != NULL || cap == 0) && n != NULL);
    *n = 0;
    if (cap == 0) {
        return 0;
    }
    int ret = BIO_read(c->out, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (ret > 0) {
        *n = (size_t)ret;
    }
    return 0;
}

bool sv_tls_handshake_done(const struct sv_tls_conn *c)
{
    ASSERT(c != NULL);
    return c->done && c->error == 0;
}

int sv_tls_shutdown(struct sv_tls_conn *c)
{
    ASSERT(c != NULL);
    if (c->error != 0) {
        return c->error;
    }
    if (c->shut) {
        return 0;
    }
    c->shut = true;
    if (!c->done) {
        return 0;
    }
    ERR_clear_error();
    int ret = SSL_shutdown(c->ssl);
    if (ret < 0) {
        int rc = conn_error(c, ret);
        return rc == SV_TLS_E_CLOSED ? 0 : rc;
    }
    return 0;
}

const char *sv_tls_peer_name(const struct sv_tls_conn *c)
{
    ASSERT(c != NULL);
    return c->done && c->error == 0 && c->has_peer_name ? c->peer_name : NULL;
}

const char *sv_tls_conn_errmsg(const struct sv_tls_conn *c)
{
    ASSERT(c != NULL);
    return c->errmsg;
}

uint64_t sv_tls_key_updates(const struct sv_tls_conn *c)
{
    ASSERT(c != NULL);
    return c->key_updates;
}
