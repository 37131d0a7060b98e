/* tls-test: client/src/tls (svtls) — TLS 1.3 over memory BIOs between a client
 * and a server connection pumped in memory, with certificates made at test time:
 * mutual TLS, round trips, refused peers (no certificate, other CA, expired,
 * wrong name, ambiguous CN), plaintext and TLS 1.2 peers, tampered records,
 * buffer limits, key updates, clean shutdown, configuration errors.
 * Usage: tls-test [NAME...] (no name: every test). Exit 1 on any failure. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define CHECK_STRERROR(rc) sv_tls_strerror(rc)
#include "check.h"

/* Checks. */

/* CHECK_ERRMSG(conn, text): the connection's error message mentions text. */
#define CHECK_ERRMSG(conn, text)                                                                   \
    do {                                                                                           \
        const char *m_ = sv_tls_conn_errmsg(conn);                                                 \
        if (sv_test_verbose()) {                                                                   \
            printf("  %s: %s\n", #conn, m_);                                                       \
        }                                                                                          \
        CHECK_MSG(strstr(m_, (text)) != NULL, "%s errmsg \"%s\" lacks \"%s\"", #conn, m_, (text)); \
    } while (0)

/* Fixtures: a temporary directory of PEM files. */

static char tmpdir[PATH_MAX];
static void remove_tmpdir(void);

static void die(const char *what)
{
    fprintf(stderr, "tls-test: fixture: %s\n", what);
    ERR_print_errors_fp(stderr);
    remove_tmpdir();
    exit(1);
}

enum {
    F_CA,        /* cluster CA certificate */
    F_OTHER_CA,  /* an unrelated CA certificate */
    F_NODE1_CRT, /* CN node-1, cluster CA */
    F_NODE1_KEY,
    F_NODE2_CRT, /* CN node-2, cluster CA */
    F_NODE2_KEY,
    F_ROGUE_CRT, /* CN node-1, other CA */
    F_ROGUE_KEY,
    F_EXPIRED_CRT, /* CN node-3, cluster CA, expired yesterday */
    F_EXPIRED_KEY,
    F_TWOCN_CRT, /* CN node-4 and CN admin, cluster CA */
    F_TWOCN_KEY,
    F_COUNT
};
static const char *const file_names[F_COUNT] = {
    "ca.pem",    "other-ca.pem", "node1.crt",   "node1.key",   "node2.crt", "node2.key",
    "rogue.crt", "rogue.key",    "expired.crt", "expired.key", "twocn.crt", "twocn.key",
};
static char paths[F_COUNT][PATH_MAX];

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char p[PATH_MAX * 2];
        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    if (rmdir(tmpdir) != 0) {
        fprintf(stderr, "tls-test: could not remove %s: %s\n", tmpdir, strerror(errno));
    }
}

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL) {
        die("EC P-256 key");
    }
    return key;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    if (ext == NULL || X509_add_ext(cert, ext, -1) != 1) {
        die(value);
    }
    X509_EXTENSION_free(ext);
}

/* A certificate for key, signed by issuer (issuer_key), or self-signed when
 * issuer is NULL; valid from now + from_s to now + to_s. */
static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn,
                       const char *cn2, bool ca, long from_s, long to_s)
{
    static long serial = 1;
    X509 *c = X509_new();
    if (c == NULL || X509_set_version(c, 2) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(c), serial++) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(c), from_s) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(c), to_s) == NULL || X509_set_pubkey(c, key) != 1) {
        die("certificate fields");
    }
    X509_NAME *name = X509_get_subject_name(c);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   (const unsigned char *)"ShardVault test", -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        (cn2 != NULL && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                   (const unsigned char *)cn2, -1, -1, 0) != 1)) {
        die("subject");
    }
    if (X509_set_issuer_name(c, issuer != NULL ? X509_get_subject_name(issuer) : name) != 1) {
        die("issuer");
    }
    X509 *iss = issuer != NULL ? issuer : c;
    if (ca) {
        add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(c, iss, NID_subject_key_identifier, "hash");
    } else {
        char san[128];
        snprintf(san, sizeof(san), "DNS:%s", cn);
        add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(c, iss, NID_key_usage, "critical,digitalSignature");
        add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth");
        add_ext(c, iss, NID_subject_alt_name, san);
        add_ext(c, iss, NID_subject_key_identifier, "hash");
        add_ext(c, iss, NID_authority_key_identifier, "keyid");
    }
    if (X509_sign(c, issuer_key != NULL ? issuer_key : key, EVP_sha256()) == 0) {
        die("sign");
    }
    return c;
}

static void write_cert(int f, X509 *cert)
{
    FILE *fp = fopen(paths[f], "w");
    if (fp == NULL || PEM_write_X509(fp, cert) != 1 || fclose(fp) != 0) {
        die(paths[f]);
    }
}

static void write_key(int f, EVP_PKEY *key)
{
    FILE *fp = fopen(paths[f], "w");
    if (fp == NULL || PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        fclose(fp) != 0) {
        die(paths[f]);
    }
}

enum { DAY_S = 24 * 3600 };

static void make_pki(void)
{
    for (int f = 0; f < F_COUNT; f++) {
        int n = snprintf(paths[f], sizeof(paths[f]), "%s/%s", tmpdir, file_names[f]);
        if (n < 0 || (size_t)n >= sizeof(paths[f])) {
            die("path too long");
        }
    }
    EVP_PKEY *ca_key = make_key(), *other_key = make_key();
    X509 *ca = make_cert(ca_key, NULL, NULL, "ShardVault test cluster CA", NULL, true, -DAY_S,
                         365L * DAY_S);
    X509 *other =
        make_cert(other_key, NULL, NULL, "Unrelated CA", NULL, true, -DAY_S, 365L * DAY_S);
    write_cert(F_CA, ca);
    write_cert(F_OTHER_CA, other);

    struct {
        int crt, key;
        const char *cn, *cn2;
        bool other_ca;
        long from_s, to_s;
    } leaves[] = {
        {F_NODE1_CRT, F_NODE1_KEY, "node-1", NULL, false, -DAY_S, 30L * DAY_S},
        {F_NODE2_CRT, F_NODE2_KEY, "node-2", NULL, false, -DAY_S, 30L * DAY_S},
        {F_ROGUE_CRT, F_ROGUE_KEY, "node-1", NULL, true, -DAY_S, 30L * DAY_S},
        {F_EXPIRED_CRT, F_EXPIRED_KEY, "node-3", NULL, false, -30L * DAY_S, -DAY_S},
        {F_TWOCN_CRT, F_TWOCN_KEY, "node-4", "admin", false, -DAY_S, 30L * DAY_S},
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        EVP_PKEY *k = make_key();
        X509 *c =
            make_cert(k, leaves[i].other_ca ? other : ca, leaves[i].other_ca ? other_key : ca_key,
                      leaves[i].cn, leaves[i].cn2, false, leaves[i].from_s, leaves[i].to_s);
        write_cert(leaves[i].crt, c);
        write_key(leaves[i].key, k);
        X509_free(c);
        EVP_PKEY_free(k);
    }
    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_key);
}

/* Deterministic filler (xorshift64*), so a failure reproduces. */
static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf[i] = (uint8_t)((x * 0x2545F4914F6CDD1Du) >> 56);
    }
}

/* Contexts and connections. */

static struct sv_tls_ctx *ctx_make(enum sv_tls_role role, int ca, int crt, int key, bool require,
                                   uint64_t key_update_records)
{
    struct sv_tls_config cfg = {
        .role = role,
        .ca_file = paths[ca],
        .cert_file = crt >= 0 ? paths[crt] : NULL,
        .key_file = key >= 0 ? paths[key] : NULL,
        .require_peer_cert = require,
        .key_update_records = key_update_records,
    };
    struct sv_tls_ctx *ctx = NULL;
    char err[256] = "";
    int rc = sv_tls_ctx_new(&cfg, &ctx, err, sizeof(err));
    CHECK_RC(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  ctx: %s\n", err);
        die("context");
    }
    return ctx;
}

/* One side of a connection pumped in memory: what it decrypted and its
 * first error. */
struct end {
    struct sv_tls_conn *conn;
    uint8_t *got;
    size_t got_len, got_cap;
    int rc;
};

static void end_init(struct end *e, struct sv_tls_ctx *ctx, const char *peer_name)
{
    memset(e, 0, sizeof(*e));
    char err[256] = "";
    int rc = sv_tls_conn_new(ctx, peer_name, &e->conn, err, sizeof(err));
    CHECK_RC(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  conn: %s\n", err);
        die("connection");
    }
}

static void end_free(struct end *e)
{
    sv_tls_conn_free(e->conn);
    free(e->got);
    memset(e, 0, sizeof(*e));
}

static void append(struct end *e, const uint8_t *p, size_t n)
{
    if (e->got_len + n > e->got_cap) {
        size_t cap = e->got_cap ? e->got_cap : 4096;
        while (cap < e->got_len + n) {
            cap *= 2;
        }
        e->got = realloc(e->got, cap);
        if (e->got == NULL) {
            die("realloc");
        }
        e->got_cap = cap;
    }
    memcpy(e->got + e->got_len, p, n);
    e->got_len += n;
}

/* Read everything e can decrypt now. */
static void read_all(struct end *e)
{
    static uint8_t buf[16 * 1024];
    while (e->rc == 0) {
        size_t n = 0;
        int rc = sv_tls_read(e->conn, buf, sizeof(buf), &n);
        if (rc != 0) {
            e->rc = rc;
            CHECK(n == 0);
            return;
        }
        if (n == 0) {
            return;
        }
        append(e, buf, n);
    }
}

/* Move from's pending ciphertext to `to`, reading after each piece; bytes
 * for a side that failed are dropped, as if its stream were closed. Returns
 * the bytes moved. */
static size_t transfer(struct end *from, struct end *to)
{
    static uint8_t buf[16 * 1024];
    size_t moved = 0, n;
    do {
        sv_tls_pending_out(from->conn, buf, sizeof(buf), &n);
        moved += n;
        if (n > 0 && to->rc == 0) {
            int rc = sv_tls_feed(to->conn, buf, n);
            if (rc != 0) {
                to->rc = rc;
            }
            read_all(to);
        }
    } while (n > 0);
    return moved;
}

static void pump(struct end *a, struct end *b)
{
    for (int round = 0; round < 1000; round++) {
        size_t moved = transfer(a, b);
        moved += transfer(b, a);
        if (moved == 0) {
            return;
        }
    }
    CHECK(!"pump did not settle");
}

/* Write data in pieces of chunk bytes from `from`, pumping as we go. */
static void send_chunks(struct end *from, struct end *to, const uint8_t *data, size_t len,
                        size_t chunk)
{
    for (size_t off = 0; off < len; off += chunk) {
        size_t k = len - off < chunk ? len - off : chunk;
        int rc = sv_tls_write(from->conn, data + off, k);
        CHECK_RC(rc, 0);
        if (rc != 0) {
            return;
        }
        if (sv_tls_pending_out_len(from->conn) > SV_TLS_OUT_MAX / 2) {
            pump(from, to);
        }
    }
    pump(from, to);
}

/* A client ctx/server ctx pair, connected. */
static void connect_pair(struct end *cli, struct end *srv, struct sv_tls_ctx *cctx,
                         struct sv_tls_ctx *sctx, const char *peer_name)
{
    end_init(cli, cctx, peer_name);
    end_init(srv, sctx, NULL);
    CHECK(sv_tls_pending_out_len(cli->conn) > 0); /* the ClientHello */
    CHECK(!sv_tls_handshake_done(cli->conn) && !sv_tls_handshake_done(srv->conn));
    pump(cli, srv);
}

/* Tests. */

static void test_mutual(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    struct end cli, srv;
    end_init(&cli, cctx, "node-1");
    end_init(&srv, sctx, NULL);
    /* A context may go while its connections live. */
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
    CHECK(sv_tls_peer_name(cli.conn) == NULL && sv_tls_peer_name(srv.conn) == NULL);
    CHECK_RC(sv_tls_write(cli.conn, "x", 1), SV_TLS_E_NOT_READY);
    CHECK_RC(sv_tls_write(srv.conn, "x", 1), SV_TLS_E_NOT_READY);
    pump(&cli, &srv);
    CHECK_RC(cli.rc, 0);
    CHECK_RC(srv.rc, 0);
    CHECK(sv_tls_handshake_done(cli.conn));
    CHECK(sv_tls_handshake_done(srv.conn));
    const char *cn = sv_tls_peer_name(cli.conn);
    CHECK(cn != NULL && strcmp(cn, "node-1") == 0);
    cn = sv_tls_peer_name(srv.conn);
    CHECK(cn != NULL && strcmp(cn, "node-2") == 0);
    CHECK(cli.got_len == 0 && srv.got_len == 0);
    CHECK(strcmp(sv_tls_conn_errmsg(cli.conn), "") == 0);
    end_free(&cli);
    end_free(&srv);
}

static void round_trip(struct end *from, struct end *to, size_t len, size_t chunk, uint64_t seed)
{
    uint8_t *data = malloc(len);
    if (data == NULL) {
        die("malloc");
    }
    fill(data, len, seed);
    to->got_len = 0;
    send_chunks(from, to, data, len, chunk);
    CHECK_RC(from->rc, 0);
    CHECK_RC(to->rc, 0);
    CHECK(to->got_len == len);
    CHECK(to->got_len == len && memcmp(to->got, data, len) == 0);
    free(data);
}

static void test_round_trip(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK(sv_tls_handshake_done(cli.conn) && sv_tls_handshake_done(srv.conn));
    const size_t sizes[] = {1, 16 * 1024, 1 << 20};
    const size_t chunks[] = {1, 4000, 65536};
    for (int i = 0; i < 3; i++) {
        round_trip(&cli, &srv, sizes[i], chunks[i], 10 + (uint64_t)i);
        round_trip(&srv, &cli, sizes[i], chunks[i], 20 + (uint64_t)i);
    }
    /* A whole wire frame in one write, and odd chunks that straddle records. */
    round_trip(&cli, &srv, 1 << 20, 1 << 20, 30);
    round_trip(&srv, &cli, (1 << 20) + 7, 16385, 31);
    /* An empty write is nothing. */
    CHECK_RC(sv_tls_write(cli.conn, "", 0), 0);
    CHECK(sv_tls_pending_out_len(cli.conn) == 0);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_no_client_cert(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, -1, -1, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_ERRMSG(srv.conn, "no certificate");
    CHECK_RC(cli.rc, SV_TLS_E_PEER_ALERT);
    CHECK_ERRMSG(cli.conn, "certificate required");
    CHECK(!sv_tls_handshake_done(cli.conn) && !sv_tls_handshake_done(srv.conn));
    CHECK(sv_tls_peer_name(srv.conn) == NULL && sv_tls_peer_name(cli.conn) == NULL);
    /* Sticky: every later call says the same. */
    uint8_t buf[16];
    size_t n = 1;
    CHECK_RC(sv_tls_read(srv.conn, buf, sizeof(buf), &n), SV_TLS_E_PEER_UNVERIFIED);
    CHECK(n == 0);
    CHECK_RC(sv_tls_feed(srv.conn, "x", 1), SV_TLS_E_PEER_UNVERIFIED);
    CHECK_RC(sv_tls_write(cli.conn, "x", 1), SV_TLS_E_PEER_ALERT);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);

    /* A server of the public API lets such a client in, without a peer name. */
    sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, false, 0);
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(cli.rc, 0);
    CHECK_RC(srv.rc, 0);
    CHECK(sv_tls_handshake_done(cli.conn) && sv_tls_handshake_done(srv.conn));
    CHECK(sv_tls_peer_name(srv.conn) == NULL);
    CHECK(sv_tls_peer_name(cli.conn) != NULL);
    round_trip(&cli, &srv, 100, 100, 1);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(cctx);

    /* ... but still verifies a certificate that is presented. */
    cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_ROGUE_CRT, F_ROGUE_KEY, false, 0);
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_RC(cli.rc, SV_TLS_E_PEER_ALERT);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_other_ca(void)
{
    /* A server with a certificate from another CA, under the expected name. */
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_ROGUE_CRT, F_ROGUE_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(cli.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_ERRMSG(cli.conn, "unable to get local issuer certificate");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_ALERT);
    CHECK(!sv_tls_handshake_done(cli.conn) && !sv_tls_handshake_done(srv.conn));
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);

    /* A client with one. */
    sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_ROGUE_CRT, F_ROGUE_KEY, false, 0);
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_ERRMSG(srv.conn, "unable to get local issuer certificate");
    CHECK_RC(cli.rc, SV_TLS_E_PEER_ALERT);
    CHECK(sv_tls_peer_name(srv.conn) == NULL);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_expired(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_EXPIRED_CRT, F_EXPIRED_KEY, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_ERRMSG(srv.conn, "expired");
    CHECK_RC(cli.rc, SV_TLS_E_PEER_ALERT);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);

    sctx = ctx_make(SV_TLS_SERVER, F_CA, F_EXPIRED_CRT, F_EXPIRED_KEY, true, 0);
    cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    connect_pair(&cli, &srv, cctx, sctx, "node-3");
    CHECK_RC(cli.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_ERRMSG(cli.conn, "expired");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_ALERT);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_wrong_name(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    const char *wrong[] = {"node-9", "node-10", "127.0.0.1", "::1"};
    for (int i = 0; i < 4; i++) {
        struct end cli, srv;
        connect_pair(&cli, &srv, cctx, sctx, wrong[i]);
        CHECK_RC(cli.rc, SV_TLS_E_PEER_UNVERIFIED);
        CHECK_ERRMSG(cli.conn, "mismatch");
        CHECK_RC(srv.rc, SV_TLS_E_PEER_ALERT);
        CHECK(!sv_tls_handshake_done(cli.conn));
        CHECK(sv_tls_peer_name(cli.conn) == NULL);
        end_free(&cli);
        end_free(&srv);
    }
    /* Names the API refuses before any traffic. */
    char longname[SV_TLS_NAME_MAX + 1];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct sv_tls_conn *c = NULL;
    char err[128] = "";
    CHECK_RC(sv_tls_conn_new(cctx, longname, &c, err, sizeof(err)), -EINVAL);
    CHECK(c == NULL && err[0] != '\0');
    CHECK_RC(sv_tls_conn_new(cctx, "", &c, err, sizeof(err)), -EINVAL);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_ambiguous_cn(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_TWOCN_CRT, F_TWOCN_KEY, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(srv.rc, SV_TLS_E_PEER_UNVERIFIED);
    CHECK_ERRMSG(srv.conn, "more than one subject CN");
    CHECK_RC(cli.rc, SV_TLS_E_PEER_ALERT);
    CHECK(sv_tls_peer_name(srv.conn) == NULL);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

/* Bytes that are not TLS, fed to a fresh server: a handshake error, sticky. */
static void check_not_tls(struct sv_tls_ctx *sctx, const void *data, size_t len)
{
    struct end srv;
    end_init(&srv, sctx, NULL);
    CHECK_RC(sv_tls_feed(srv.conn, data, len), 0);
    uint8_t buf[256];
    memset(buf, 0xAA, sizeof(buf));
    size_t n = 1;
    CHECK_RC(sv_tls_read(srv.conn, buf, sizeof(buf), &n), SV_TLS_E_HANDSHAKE);
    CHECK(n == 0 && buf[0] == 0xAA);
    CHECK(sv_tls_conn_errmsg(srv.conn)[0] != '\0');
    if (sv_test_verbose()) {
        printf("  server: %s\n", sv_tls_conn_errmsg(srv.conn));
    }
    CHECK_RC(sv_tls_read(srv.conn, buf, sizeof(buf), &n), SV_TLS_E_HANDSHAKE);
    CHECK_RC(sv_tls_feed(srv.conn, data, len), SV_TLS_E_HANDSHAKE);
    CHECK_RC(sv_tls_write(srv.conn, "x", 1), SV_TLS_E_HANDSHAKE);
    CHECK(!sv_tls_handshake_done(srv.conn));
    end_free(&srv);
}

static void test_plaintext(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    static const char http[] = "GET / HTTP/1.1\r\nHost: node-1\r\n\r\n";
    check_not_tls(sctx, http, sizeof(http) - 1);
    /* A wire frame: length 8, then msgpack [1, 1, 7, bin "hi"]. */
    static const uint8_t frame[] = {0, 0, 0, 8, 0x94, 1, 1, 7, 0xc4, 2, 'h', 'i'};
    check_not_tls(sctx, frame, sizeof(frame));
    static uint8_t junk[SV_TLS_FEED_MAX];
    for (uint64_t seed = 1; seed <= 20; seed++) {
        fill(junk, sizeof(junk), seed);
        junk[0] = 0x16; /* looks like a handshake record, then garbage */
        junk[1] = 3;
        junk[2] = 1;
        check_not_tls(sctx, junk, sizeof(junk));
    }
    sv_tls_ctx_free(sctx);

    /* A client answered with plaintext. */
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    struct end cli;
    end_init(&cli, cctx, "node-1");
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    CHECK_RC(sv_tls_feed(cli.conn, resp, sizeof(resp) - 1), 0);
    read_all(&cli);
    CHECK_RC(cli.rc, SV_TLS_E_HANDSHAKE);
    CHECK(cli.got_len == 0);
    end_free(&cli);
    sv_tls_ctx_free(cctx);
}

static void test_tamper(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    static const size_t offsets[] = {5, 6, 100, 500, 1000 + 5 + 16}; /* body, tag */
    for (int i = 0; i < 5; i++) {
        struct end cli, srv;
        connect_pair(&cli, &srv, cctx, sctx, "node-1");
        CHECK(sv_tls_handshake_done(cli.conn) && sv_tls_handshake_done(srv.conn));
        uint8_t msg[1000];
        fill(msg, sizeof(msg), 7);
        CHECK_RC(sv_tls_write(cli.conn, msg, sizeof(msg)), 0);
        uint8_t wire[2048];
        size_t n = 0;
        sv_tls_pending_out(cli.conn, wire, sizeof(wire), &n);
        CHECK(n > sizeof(msg) && n < sizeof(wire));
        size_t at = offsets[i] < n ? offsets[i] : n - 1;
        wire[at] ^= 0x01;
        CHECK_RC(sv_tls_feed(srv.conn, wire, n), 0);
        uint8_t out[2048];
        memset(out, 0xAA, sizeof(out));
        size_t got = 1;
        CHECK_RC(sv_tls_read(srv.conn, out, sizeof(out), &got), SV_TLS_E_PROTOCOL);
        CHECK(got == 0);
        bool untouched = true;
        for (size_t k = 0; k < sizeof(out); k++) {
            untouched = untouched && out[k] == 0xAA;
        }
        CHECK(untouched);
        CHECK(sv_tls_conn_errmsg(srv.conn)[0] != '\0');
        if (sv_test_verbose()) {
            printf("  server: %s\n", sv_tls_conn_errmsg(srv.conn));
        }
        CHECK(!sv_tls_handshake_done(srv.conn));
        /* The alert tells the client. */
        pump(&srv, &cli);
        CHECK_RC(cli.rc, SV_TLS_E_PEER_ALERT);
        end_free(&cli);
        end_free(&srv);
    }
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

/* A raw OpenSSL client limited to TLS 1.2, with a good certificate. */
static void test_tls12_client(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    SSL_CTX *raw_ctx = SSL_CTX_new(TLS_client_method());
    if (raw_ctx == NULL || SSL_CTX_set_max_proto_version(raw_ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_file(raw_ctx, paths[F_CA]) != 1 ||
        SSL_CTX_use_certificate_chain_file(raw_ctx, paths[F_NODE2_CRT]) != 1 ||
        SSL_CTX_use_PrivateKey_file(raw_ctx, paths[F_NODE2_KEY], SSL_FILETYPE_PEM) != 1) {
        die("raw TLS 1.2 context");
    }
    SSL *raw = SSL_new(raw_ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (raw == NULL || rb == NULL || wb == NULL) {
        die("raw TLS 1.2 connection");
    }
    BIO_set_mem_eof_return(rb, -1);
    BIO_set_mem_eof_return(wb, -1);
    SSL_set_bio(raw, rb, wb);
    SSL_set_connect_state(raw);
    struct end srv;
    end_init(&srv, sctx, NULL);
    int raw_ret = 0;
    for (int round = 0; round < 20; round++) {
        raw_ret = SSL_do_handshake(raw);
        if (raw_ret == 1 || SSL_get_error(raw, raw_ret) != SSL_ERROR_WANT_READ) {
            break;
        }
        uint8_t buf[16 * 1024];
        int k;
        size_t moved = 0;
        while ((k = BIO_read(wb, buf, sizeof(buf))) > 0) {
            moved += (size_t)k;
            if (srv.rc == 0) {
                srv.rc = sv_tls_feed(srv.conn, buf, (size_t)k);
                read_all(&srv);
            }
        }
        size_t n;
        do {
            sv_tls_pending_out(srv.conn, buf, sizeof(buf), &n);
            moved += n;
            if (n > 0) {
                BIO_write(rb, buf, (int)n);
            }
        } while (n > 0);
        if (moved == 0) {
            break;
        }
    }
    ERR_clear_error();
    CHECK(raw_ret != 1);
    CHECK_RC(srv.rc, SV_TLS_E_HANDSHAKE);
    CHECK_ERRMSG(srv.conn, "protocol");
    CHECK(!sv_tls_handshake_done(srv.conn));
    end_free(&srv);
    SSL_free(raw);
    SSL_CTX_free(raw_ctx);
    sv_tls_ctx_free(sctx);
}

static void test_buffer_limit(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK(sv_tls_handshake_done(cli.conn) && sv_tls_handshake_done(srv.conn));

    /* Input: a server that is fed but never reads refuses past SV_TLS_IN_MAX. */
    size_t len = 1 << 20;
    uint8_t *data = malloc(len);
    uint8_t *wire = malloc(2 * len);
    if (data == NULL || wire == NULL) {
        die("malloc");
    }
    fill(data, len, 99);
    CHECK_RC(sv_tls_write(cli.conn, data, len), 0);
    size_t wire_len = 0, n;
    do {
        sv_tls_pending_out(cli.conn, wire + wire_len, 2 * len - wire_len, &n);
        wire_len += n;
    } while (n > 0);
    CHECK(wire_len > len);
    CHECK_RC(sv_tls_feed(srv.conn, wire, SV_TLS_IN_MAX + 1), SV_TLS_E_BUFFER_FULL);
    size_t off = 0;
    int rc = 0;
    while (off < wire_len) {
        size_t k = wire_len - off < 10000 ? wire_len - off : 10000;
        rc = sv_tls_feed(srv.conn, wire + off, k);
        if (rc != 0) {
            break;
        }
        off += k;
    }
    CHECK_RC(rc, SV_TLS_E_BUFFER_FULL);
    CHECK(off <= SV_TLS_IN_MAX && off + 10000 > SV_TLS_IN_MAX);
    /* Not fatal: read, then the rest goes in and everything arrives intact. */
    read_all(&srv);
    CHECK_RC(srv.rc, 0);
    while (off < wire_len && srv.rc == 0) {
        size_t k = wire_len - off < 10000 ? wire_len - off : 10000;
        CHECK_RC(sv_tls_feed(srv.conn, wire + off, k), 0);
        off += k;
        read_all(&srv);
    }
    CHECK_RC(srv.rc, 0);
    CHECK(srv.got_len == len && memcmp(srv.got, data, len) == 0);

    /* Output: a writer that never drains refuses past SV_TLS_OUT_MAX. */
    size_t accepted = 0;
    for (int i = 0; i < 100; i++) {
        rc = sv_tls_write(cli.conn, data, len);
        if (rc != 0) {
            break;
        }
        accepted += len;
    }
    CHECK_RC(rc, SV_TLS_E_BUFFER_FULL);
    CHECK(sv_tls_pending_out_len(cli.conn) <= SV_TLS_OUT_MAX);
    CHECK(accepted >= SV_TLS_OUT_MAX / 2 && accepted < SV_TLS_OUT_MAX);
    srv.got_len = 0;
    pump(&cli, &srv);
    CHECK_RC(srv.rc, 0);
    CHECK(srv.got_len == accepted);
    CHECK(srv.got_len >= len && memcmp(srv.got, data, len) == 0);
    CHECK_RC(sv_tls_write(cli.conn, data, len), 0); /* drained: room again */
    free(data);
    free(wire);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_key_update(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 4);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    round_trip(&cli, &srv, 1 << 20, 4096, 5); /* 256 records */
    CHECK(sv_tls_key_updates(cli.conn) >= 60);
    CHECK(sv_tls_key_updates(srv.conn) == 0);
    /* The server renewed its keys on request too and still talks. */
    round_trip(&srv, &cli, 100000, 1000, 6);
    CHECK(sv_tls_key_updates(cli.conn) >= 60);
    end_free(&cli);
    end_free(&srv);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_shutdown(void)
{
    struct sv_tls_ctx *sctx = ctx_make(SV_TLS_SERVER, F_CA, F_NODE1_CRT, F_NODE1_KEY, true, 0);
    struct sv_tls_ctx *cctx = ctx_make(SV_TLS_CLIENT, F_CA, F_NODE2_CRT, F_NODE2_KEY, false, 0);
    struct end cli, srv;
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(sv_tls_write(cli.conn, "bye", 3), 0);
    CHECK_RC(sv_tls_shutdown(cli.conn), 0);
    CHECK_RC(sv_tls_shutdown(cli.conn), 0);
    CHECK_RC(sv_tls_write(cli.conn, "more", 4), SV_TLS_E_CLOSED);
    pump(&cli, &srv);
    CHECK_RC(srv.rc, SV_TLS_E_CLOSED);
    CHECK(srv.got_len == 3 && memcmp(srv.got, "bye", 3) == 0);
    uint8_t buf[16];
    size_t n = 1;
    CHECK_RC(sv_tls_read(srv.conn, buf, sizeof(buf), &n), SV_TLS_E_CLOSED);
    CHECK(n == 0);
    CHECK_RC(sv_tls_feed(srv.conn, "x", 1), SV_TLS_E_CLOSED);
    /* Half close: the server still answers, then closes too. */
    CHECK_RC(sv_tls_write(srv.conn, "ok", 2), 0);
    CHECK_RC(sv_tls_shutdown(srv.conn), 0);
    pump(&cli, &srv);
    CHECK_RC(cli.rc, SV_TLS_E_CLOSED);
    CHECK(cli.got_len == 2 && memcmp(cli.got, "ok", 2) == 0);
    CHECK(strcmp(sv_tls_conn_errmsg(cli.conn), "") == 0);
    end_free(&cli);
    end_free(&srv);

    /* A connection that drops without close_notify is not seen as closed. */
    connect_pair(&cli, &srv, cctx, sctx, "node-1");
    CHECK_RC(sv_tls_write(cli.conn, "bye", 3), 0);
    sv_tls_conn_free(cli.conn);
    cli.conn = NULL;
    CHECK(sv_tls_pending_out_len(srv.conn) == 0);
    read_all(&srv);
    CHECK_RC(srv.rc, 0);
    end_free(&srv);
    free(cli.got);

    /* Shutdown before the handshake: nothing to send, no more writes. */
    end_init(&cli, cctx, "node-1");
    size_t hello = sv_tls_pending_out_len(cli.conn);
    CHECK_RC(sv_tls_shutdown(cli.conn), 0);
    CHECK(sv_tls_pending_out_len(cli.conn) == hello);
    CHECK_RC(sv_tls_write(cli.conn, "x", 1), SV_TLS_E_CLOSED);
    end_free(&cli);
    sv_tls_ctx_free(sctx);
    sv_tls_ctx_free(cctx);
}

static void test_config(void)
{
    struct sv_tls_config cfg = {
        .role = SV_TLS_SERVER,
        .ca_file = paths[F_CA],
        .cert_file = paths[F_NODE1_CRT],
        .key_file = paths[F_NODE1_KEY],
        .require_peer_cert = true,
    };
    struct sv_tls_ctx *ctx = NULL;
    char err[256] = "";
    CHECK_RC(sv_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), 0);
    sv_tls_ctx_free(ctx);
    ctx = NULL;

    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof(missing), "%s/missing.pem", tmpdir);
    struct {
        const char *ca, *crt, *key;
        int depth;
        const char *text;
    } bad[] = {
        {missing, paths[F_NODE1_CRT], paths[F_NODE1_KEY], 0, "CA bundle"},
        {paths[F_NODE1_KEY], paths[F_NODE1_CRT], paths[F_NODE1_KEY], 0, "CA bundle"},
        {paths[F_CA], missing, paths[F_NODE1_KEY], 0, "certificate chain"},
        {paths[F_CA], paths[F_NODE1_KEY], paths[F_NODE1_KEY], 0, "certificate chain"},
        {paths[F_CA], paths[F_NODE1_CRT], missing, 0, "private key"},
        {paths[F_CA], paths[F_NODE1_CRT], paths[F_NODE2_KEY], 0, "private key"},
        {paths[F_CA], paths[F_NODE1_CRT], paths[F_NODE1_KEY], SV_TLS_VERIFY_DEPTH_MAX + 1, "depth"},
        {paths[F_CA], paths[F_NODE1_CRT], paths[F_NODE1_KEY], -1, "depth"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.ca_file = bad[i].ca;
        cfg.cert_file = bad[i].crt;
        cfg.key_file = bad[i].key;
        cfg.verify_depth = bad[i].depth;
        err[0] = '\0';
        CHECK_RC(sv_tls_ctx_new(&cfg, &ctx, err, sizeof(err)), SV_TLS_E_CONFIG);
        CHECK(ctx == NULL);
        if (sv_test_verbose()) {
            printf("  config %zu: %s\n", i, err);
        }
        if (strstr(err, bad[i].text) == NULL) {
            sv_check_fail(__FILE__, __LINE__, "config case %zu: \"%s\" lacks \"%s\"", i, err,
                          bad[i].text);
        }
    }
    /* Every error has a message; errno passes through. */
    for (int e = SV_TLS_E_CONFIG; e < SV_TLS_E_LAST_; e++) {
        CHECK(strcmp(sv_tls_strerror(e), "unknown") != 0);
    }
    CHECK(strcmp(sv_tls_strerror(-ENOMEM), strerror(ENOMEM)) == 0);
    CHECK(strcmp(sv_tls_strerror(SV_TLS_E_LAST_), "unknown") == 0);
}

/* Runner. */

static int set_up(void)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    snprintf(tmpdir, sizeof(tmpdir), "%s/tls-test.XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "tls-test: mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    make_pki();
    return 0;
}

static const struct sv_test tests[] = {
    {"mutual", test_mutual},
    {"round-trip", test_round_trip},
    {"no-client-cert", test_no_client_cert},
    {"other-ca", test_other_ca},
    {"expired", test_expired},
    {"wrong-name", test_wrong_name},
    {"ambiguous-cn", test_ambiguous_cn},
    {"plaintext", test_plaintext},
    {"tamper", test_tamper},
    {"tls12-client", test_tls12_client},
    {"buffer-limit", test_buffer_limit},
    {"key-update", test_key_update},
    {"shutdown", test_shutdown},
    {"config", test_config},
};

const struct sv_test_suite sv_test_suite = {
    .name = "tls-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = remove_tmpdir,
    .timeout_s = 120,
};
