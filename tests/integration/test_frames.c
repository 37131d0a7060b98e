/* Integration: a plain-TCP client, an oversized frame, a malformed frame, a
 * malformed request body, and node traffic from a client or from a node
 * certificate that the cluster map does not hold each get their connection
 * closed, while the cluster keeps serving other clients. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include "proto.h"
#include "tls.h"
#include "wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct it_cluster cl_;

static void still_serving(struct sv_client *c, int i)
{
    char key[32];
    snprintf(key, sizeof key, "alive-%d", i);
    CHECK_RC(sv_client_put(c, "frames", key, key, strlen(key), SV_IF_ANY, NULL), SV_OK);
    void *d = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "frames", key, SV_LINEARIZABLE, &d, &len, NULL), SV_OK);
    CHECK(len == strlen(key) && d && !memcmp(d, key, len));
    free(d);
}

/* Over a new TLS connection to port, send bytes: the node must close the
 * connection. */
static void refused_over_tls(struct sv_tls_ctx *ctx, int port, const uint8_t *bytes, size_t len)
{
    int fd = -1;
    struct sv_tls_conn *t = ctx ? it_tls_dial(ctx, port, &fd) : NULL;
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_RC(sv_tls_write(t, bytes, len), 0);
    it_tls_flush(fd, t);
    CHECK(it_closed_by_server(fd, 5000));
    sv_tls_conn_free(t);
    close(fd);
}

/* A well-formed frame of type with body that the node must refuse. */
static void refused_frame(struct sv_tls_ctx *ctx, int port, uint32_t type, uint64_t id,
                          const uint8_t *body, size_t len)
{
    uint8_t *frame = NULL;
    size_t flen = 0;
    CHECK_RC(sv_wire_encode(type, id, body, len, &frame, &flen), 0);
    if (frame)
        refused_over_tls(ctx, port, frame, flen);
    free(frame);
}

/* ---- runner: one cluster, one client and one TLS context, in this order ---- */

static struct sv_client *client_;
static struct sv_tls_ctx *ctx_;
static int port_; /* node 1's */

static int set_up(void)
{
    it_up(&cl_, it_bin_dir(), "frames", 3, 3, 17400);
    client_ = it_client(&cl_, 30000);
    port_ = cl_.base_port + 1;
    still_serving(client_, 0);
    struct sv_tls_config tc = {.role = SV_TLS_CLIENT, .ca_file = cl_.ca};
    char em[256];
    CHECK_RC(sv_tls_ctx_new(&tc, &ctx_, em, sizeof em), 0);
    return 0;
}

static void tear_down(void)
{
    sv_tls_ctx_free(ctx_);
    sv_client_close(client_);
    it_down(&cl_);
}

static void test_plain_tcp(void)
{
    int fd = it_dial(port_);
    CHECK(fd >= 0);
    const char http[] = "GET / HTTP/1.0\r\n\r\n";
    CHECK(send(fd, http, sizeof http - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof http - 1));
    CHECK(it_closed_by_server(fd, 5000));
    close(fd);
    still_serving(client_, 1);
}

static void test_oversized(void)
{
    uint8_t hdr[4] = {0x10, 0, 0, 0}; /* 256 MiB declared */
    refused_over_tls(ctx_, port_, hdr, sizeof hdr);
    still_serving(client_, 2);
}

static void test_malformed_frame(void)
{
    uint8_t junk[12] = {0, 0, 0, 8, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1};
    refused_over_tls(ctx_, port_, junk, sizeof junk);
    still_serving(client_, 3);
}

static void test_malformed_body(void)
{
    const uint8_t not_map[] = {0x93, 0x01, 0x02}; /* an array, not a map */
    refused_frame(ctx_, port_, SV_MSG_PUT, 1, not_map, sizeof not_map);
    still_serving(client_, 4);
}

static void test_raft_unauthenticated(void)
{
    const uint8_t empty_batch[] = {0x90};
    refused_frame(ctx_, port_, SV_MSG_RAFT, 0, empty_batch, sizeof empty_batch);
    still_serving(client_, 5);
    CHECK(it_log_has(&cl_, 1, "malformed"));
}

/* A certificate from the cluster's CA for node 99, which the map does not
 * hold: its Raft and chunk fetch frames are refused. The same frames from
 * node 2's certificate keep their connection (control). */
static void test_stranger_cert(void)
{
    const uint8_t empty_batch[] = {0x90};
    CHECK(it_sh("mkdir -p '%s/stranger' && bash -c \". '%s/deploy/lib/pki.sh' && "
                "sv_pki_make_node_cert '%s/ca' '%s/stranger' 99\" >&2",
                cl_.dir, SV_SOURCE_DIR, cl_.dir, cl_.dir) == 0);
    char cert[700], key[700], em[256];
    snprintf(cert, sizeof cert, "%s/stranger/node.pem", cl_.dir);
    snprintf(key, sizeof key, "%s/stranger/node.key", cl_.dir);
    struct sv_tls_config sc = {
        .role = SV_TLS_CLIENT, .ca_file = cl_.ca, .cert_file = cert, .key_file = key};
    struct sv_tls_ctx *ctx = NULL;
    CHECK_RC(sv_tls_ctx_new(&sc, &ctx, em, sizeof em), 0);
    refused_frame(ctx, port_, SV_MSG_RAFT, 0, empty_batch, sizeof empty_batch);
    struct sv_msg fm = {0};
    SV_MSG_SET(&fm, SV_F_SHARD);
    SV_MSG_SET(&fm, SV_F_UPLOAD);
    SV_MSG_SET(&fm, SV_F_CHUNK);
    uint8_t *fbody = NULL;
    size_t flen = 0;
    CHECK_RC(sv_msg_encode(&fm, &fbody, &flen), 0);
    refused_frame(ctx, port_, SV_MSG_CHUNK_FETCH, 7, fbody, flen);
    sv_tls_ctx_free(ctx);
    free(fbody);
    still_serving(client_, 6);
    snprintf(cert, sizeof cert, "%s/node2/node.pem", cl_.dir);
    snprintf(key, sizeof key, "%s/node2/node.key", cl_.dir);
    ctx = NULL;
    CHECK_RC(sv_tls_ctx_new(&sc, &ctx, em, sizeof em), 0);
    int nfd = -1;
    struct sv_tls_conn *nt = ctx ? it_tls_dial(ctx, port_, &nfd) : NULL;
    CHECK(nt != NULL);
    if (nt) {
        uint8_t *frame = NULL;
        size_t len = 0;
        CHECK_RC(sv_wire_encode(SV_MSG_RAFT, 0, empty_batch, sizeof empty_batch, &frame, &len), 0);
        CHECK_RC(sv_tls_write(nt, frame, len), 0);
        it_tls_flush(nfd, nt);
        free(frame);
        CHECK(!it_closed_by_server(nfd, 1500));
        sv_tls_conn_free(nt);
        close(nfd);
    }
    sv_tls_ctx_free(ctx);
    still_serving(client_, 7);
}

static const struct sv_test tests[] = {
    {"plain TCP refused", test_plain_tcp},
    {"oversized frame", test_oversized},
    {"malformed frame", test_malformed_frame},
    {"malformed request body", test_malformed_body},
    {"unauthenticated raft traffic", test_raft_unauthenticated},
    {"node certificate not in the map", test_stranger_cert},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-frames",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
