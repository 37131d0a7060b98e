/* proto-test: client/src/proto.c and mp.c (svproto) — the bounded msgpack
 * reader/writer, round trips of every request and response shape of
 * proto.h, every kind of bad body, seeded random mutations, the object hash
 * and shard mapping, and bucket/key validity.
 * Usage: proto-test [NAME...] (no name: every test). Exit 1 on any failure. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp.h"
#include "proto.h"

#define CHECK_STRERROR(rc) proto_or_mp_strerror(rc)
static const char *proto_or_mp_strerror(int rc);
#include "check.h"

static const char *proto_or_mp_strerror(int rc)
{
    if (rc <= SV_MP_E_TRUNCATED && rc > SV_MP_E_TRUNCATED - 50)
        return sv_mp_strerror(rc);
    return sv_proto_strerror(rc);
}

/* Fixtures. */

/* Deterministic PRNG (xorshift64*), so a failure reproduces. */
static uint64_t rng_state = 1;

static void rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15u + 1;
}

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static void *xmalloc(size_t len)
{
    void *p = malloc(len > 0 ? len : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
    rng_seed(seed);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(rng() >> 56);
}

static struct sv_bytes bytes_of(const char *s)
{
    return (struct sv_bytes){(const uint8_t *)s, strlen(s)};
}

static bool bytes_eq(struct sv_bytes a, struct sv_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool item_eq(const struct sv_item *a, const struct sv_item *b)
{
    if (a->fields != b->fields)
        return false;
    if (!bytes_eq(a->key, b->key) || !bytes_eq(a->addr, b->addr) || !bytes_eq(a->zone, b->zone) ||
        !bytes_eq(a->state, b->state) || !bytes_eq(a->role, b->role))
        return false;
    if (a->size != b->size || a->version != b->version || a->mtime_ms != b->mtime_ms ||
        a->id != b->id || a->leader != b->leader || a->term != b->term || a->commit != b->commit ||
        a->applied != b->applied || a->n_replicas != b->n_replicas)
        return false;
    for (uint32_t i = 0; i < a->n_replicas; i++)
        if (a->replicas[i] != b->replicas[i])
            return false;
    return true;
}

/* Equal as far as the present fields go (absent ones are 0 on both sides in
 * these tests: the messages are built from zeroed structs). */
static bool msg_eq(const struct sv_msg *a, const struct sv_msg *b)
{
    if (a->fields != b->fields || a->status != b->status)
        return false;
    const struct sv_bytes *ab[] = {&a->msg,  &a->bucket, &a->key,  &a->prefix, &a->start_after,
                                   &a->addr, &a->zone,   &a->data, &a->metrics};
    const struct sv_bytes *bb[] = {&b->msg,  &b->bucket, &b->key,  &b->prefix, &b->start_after,
                                   &b->addr, &b->zone,   &b->data, &b->metrics};
    for (size_t i = 0; i < sizeof(ab) / sizeof(ab[0]); i++)
        if (!bytes_eq(*ab[i], *bb[i]))
            return false;
    const uint64_t au[] = {a->tenant,   a->if_version,  a->session,  a->seq,     a->ack_below,
                           a->upload,   a->chunk,       a->n_chunks, a->version, a->size,
                           a->mtime_ms, a->consistency, a->limit,    a->shard,   a->leader,
                           a->node,     a->n_shards,    a->flags};
    const uint64_t bu[] = {b->tenant,   b->if_version,  b->session,  b->seq,     b->ack_below,
                           b->upload,   b->chunk,       b->n_chunks, b->version, b->size,
                           b->mtime_ms, b->consistency, b->limit,    b->shard,   b->leader,
                           b->node,     b->n_shards,    b->flags};
    if (memcmp(au, bu, sizeof(au)) != 0 || memcmp(a->sha256, b->sha256, 32) != 0)
        return false;
    uint32_t an = SV_MSG_HAS(a, SV_F_ITEMS) ? a->n_items : 0;
    uint32_t bn = SV_MSG_HAS(b, SV_F_ITEMS) ? b->n_items : 0;
    if (an != bn)
        return false;
    for (uint32_t i = 0; i < an; i++)
        if (!item_eq(&a->items[i], &b->items[i]))
            return false;
    return true;
}

/* Encode, decode, compare; re-encode the decoded message to the same bytes. */
static void roundtrip(const struct sv_msg *in, const char *what)
{
    uint8_t *body = NULL, *again = NULL;
    size_t len = 0, again_len = 0;
    struct sv_msg out;
    char err[128];
    int rc = sv_msg_encode(in, &body, &len);
    CHECK_RC(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  (%s)\n", what);
        return;
    }
    rc = sv_msg_decode(body, len, &out, err, sizeof(err));
    CHECK_RC(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  (%s: %s)\n", what, err);
    CHECK(rc == 0 && msg_eq(in, &out));
    if (rc == 0) {
        CHECK_RC(sv_msg_encode(&out, &again, &again_len), 0);
        CHECK(again_len == len && memcmp(again, body, len) == 0);
        /* Byte strings are borrowed from the body. */
        if (out.data.len > 0)
            CHECK(out.data.p >= body && out.data.p + out.data.len <= body + len);
    }
    sv_msg_free(&out);
    free(again);
    free(body);
}

static void set_str(struct sv_msg *m, enum sv_field f, struct sv_bytes *slot, const char *s)
{
    *slot = bytes_of(s);
    SV_MSG_SET(m, f);
}

static void set_u(struct sv_msg *m, enum sv_field f, uint64_t *slot, uint64_t v)
{
    *slot = v;
    SV_MSG_SET(m, f);
}

/* Decode what w holds; the body is freed unless keep is not NULL (decoded
 * byte strings point into it). Returns the decoder's result. */
static int decode_w_keep(struct sv_mp_writer *w, struct sv_msg *m, uint8_t **keep)
{
    uint8_t *b = NULL;
    size_t len = 0;
    if (sv_mp_writer_take(w, &b, &len) != 0) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    char err[128];
    int rc = sv_msg_decode(b, len, m, err, sizeof(err));
    if (rc != 0)
        CHECK(err[0] != '\0'); /* a failure says why */
    if (keep != NULL)
        *keep = b;
    else
        free(b);
    return rc;
}

static int decode_w(struct sv_mp_writer *w, struct sv_msg *m)
{
    return decode_w_keep(w, m, NULL);
}

/* Decode a one-field map {id: <what put() writes>} and free it. */
static int decode_one_field(uint64_t id, void (*put)(struct sv_mp_writer *, uint64_t), uint64_t arg)
{
    struct sv_mp_writer w;
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, id);
    put(&w, arg);
    struct sv_msg m;
    int rc = decode_w(&w, &m);
    sv_msg_free(&m);
    return rc;
}

/* Checks: the msgpack layer. */

static void test_mp_uint_encodings(void)
{
    static const struct {
        uint64_t v;
        size_t len;
        uint8_t first;
    } cases[] = {
        {0, 1, 0x00},          {127, 1, 0x7f},        {128, 2, 0xcc},
        {255, 2, 0xcc},        {256, 3, 0xcd},        {65535, 3, 0xcd},
        {65536, 5, 0xce},      {UINT32_MAX, 5, 0xce}, {(uint64_t)UINT32_MAX + 1, 9, 0xcf},
        {UINT64_MAX, 9, 0xcf},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sv_mp_writer w;
        sv_mp_writer_init(&w);
        CHECK_RC(sv_mp_put_uint(&w, cases[i].v), 0);
        CHECK(w.len == cases[i].len && w.buf[0] == cases[i].first);
        /* A counting writer agrees on the length. */
        struct sv_mp_writer cw;
        sv_mp_writer_init_counting(&cw);
        sv_mp_put_uint(&cw, cases[i].v);
        CHECK(cw.len == w.len && cw.buf == NULL);
        struct sv_mp_reader r;
        sv_mp_reader_init(&r, w.buf, w.len);
        uint64_t v = 0;
        CHECK_RC(sv_mp_read_uint(&r, &v), 0);
        CHECK(v == cases[i].v && sv_mp_remaining(&r) == 0);
        /* Every strict prefix is truncated and leaves the cursor alone. */
        for (size_t n = 0; n < w.len; n++) {
            sv_mp_reader_init(&r, w.buf, n);
            CHECK_RC(sv_mp_read_uint(&r, &v), SV_MP_E_TRUNCATED);
            CHECK(r.pos == 0);
        }
        /* As an int: fine up to INT64_MAX. */
        sv_mp_reader_init(&r, w.buf, w.len);
        int64_t s = 0;
        if (cases[i].v <= INT64_MAX) {
            CHECK_RC(sv_mp_read_int(&r, &s), 0);
            CHECK((uint64_t)s == cases[i].v);
        } else {
            CHECK_RC(sv_mp_read_int(&r, &s), SV_MP_E_TYPE);
        }
        sv_mp_writer_free(&w);
    }
}

static void test_mp_int_encodings(void)
{
    static const struct {
        int64_t v;
        size_t len;
        uint8_t first;
    } cases[] = {
        {0, 1, 0x00},
        {5, 1, 0x05},
        {-1, 1, 0xff},
        {-32, 1, 0xe0},
        {-33, 2, 0xd0},
        {-128, 2, 0xd0},
        {-129, 3, 0xd1},
        {-32768, 3, 0xd1},
        {-32769, 5, 0xd2},
        {INT32_MIN, 5, 0xd2},
        {(int64_t)INT32_MIN - 1, 9, 0xd3},
        {INT64_MIN, 9, 0xd3},
        {INT64_MAX, 9, 0xcf},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sv_mp_writer w;
        sv_mp_writer_init(&w);
        CHECK_RC(sv_mp_put_int(&w, cases[i].v), 0);
        CHECK(w.len == cases[i].len && w.buf[0] == cases[i].first);
        struct sv_mp_reader r;
        sv_mp_reader_init(&r, w.buf, w.len);
        int64_t v = 0;
        CHECK_RC(sv_mp_read_int(&r, &v), 0);
        CHECK(v == cases[i].v && sv_mp_remaining(&r) == 0);
        sv_mp_reader_init(&r, w.buf, w.len);
        uint64_t u = 0;
        CHECK_RC(sv_mp_read_uint(&r, &u), cases[i].v < 0 ? SV_MP_E_TYPE : 0);
        for (size_t n = 0; n < w.len; n++) {
            sv_mp_reader_init(&r, w.buf, n);
            CHECK_RC(sv_mp_read_int(&r, &v), SV_MP_E_TRUNCATED);
        }
        sv_mp_writer_free(&w);
    }
    /* A signed encoding of a non-negative value is still an unsigned integer. */
    static const uint8_t int8_five[] = {0xd0, 0x05};
    struct sv_mp_reader r;
    sv_mp_reader_init(&r, int8_five, sizeof(int8_five));
    uint64_t u = 0;
    CHECK_RC(sv_mp_read_uint(&r, &u), 0);
    CHECK(u == 5);
}

static void test_mp_bytes_and_headers(void)
{
    static const struct {
        size_t len, str_hdr, bin_hdr;
    } sizes[] = {
        {0, 1, 2}, {31, 1, 2}, {32, 2, 2}, {255, 2, 2}, {256, 3, 3}, {65535, 3, 3}, {65536, 5, 5},
    };
    uint8_t *src = xmalloc(65536);
    fill(src, 65536, 7);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i].len;
        struct sv_mp_writer w;
        sv_mp_writer_init(&w);
        CHECK_RC(sv_mp_put_str(&w, src, n), 0);
        CHECK(w.len == sizes[i].str_hdr + n);
        CHECK_RC(sv_mp_put_bin(&w, n ? src : NULL, n), 0);
        CHECK(w.len == sizes[i].str_hdr + sizes[i].bin_hdr + 2 * n);
        struct sv_mp_reader r;
        sv_mp_reader_init(&r, w.buf, w.len);
        const uint8_t *p = NULL;
        size_t len = 0;
        CHECK_RC(sv_mp_read_bin(&r, &p, &len), SV_MP_E_TYPE); /* a str is not a bin */
        CHECK_RC(sv_mp_read_str(&r, &p, &len), 0);
        CHECK(len == n && p != NULL && memcmp(p, src, n) == 0 && p == w.buf + sizes[i].str_hdr);
        CHECK_RC(sv_mp_read_str(&r, &p, &len), SV_MP_E_TYPE);
        CHECK_RC(sv_mp_read_bin(&r, &p, &len), 0);
        CHECK(len == n && p != NULL && memcmp(p, src, n) == 0);
        CHECK(sv_mp_remaining(&r) == 0);
        /* Truncated anywhere inside the str. */
        for (size_t cut = 0; cut < sizes[i].str_hdr + n; cut += 1 + cut / 8) {
            sv_mp_reader_init(&r, w.buf, cut);
            CHECK_RC(sv_mp_read_str(&r, &p, &len), SV_MP_E_TRUNCATED);
        }
        sv_mp_writer_free(&w);
    }
    free(src);

    /* Array and map headers at each width; counts are checked against the rest. */
    static const struct {
        uint32_t n;
        size_t hdr;
    } counts[] = {{0, 1}, {15, 1}, {16, 3}, {65535, 3}, {65536, 5}};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        uint32_t n = counts[i].n;
        for (int map = 0; map < 2; map++) {
            struct sv_mp_writer w;
            sv_mp_writer_init(&w);
            CHECK_RC(map ? sv_mp_put_map(&w, n) : sv_mp_put_array(&w, n), 0);
            CHECK(w.len == counts[i].hdr);
            size_t body = map ? 2 * (size_t)n : n;
            for (size_t k = 0; k < body; k++)
                sv_mp_put_nil(&w);
            struct sv_mp_reader r;
            uint32_t got = 0;
            sv_mp_reader_init(&r, w.buf, w.len);
            CHECK_RC(map ? sv_mp_read_map(&r, &got) : sv_mp_read_array(&r, &got), 0);
            CHECK(got == n && r.pos == counts[i].hdr);
            sv_mp_reader_init(&r, w.buf, w.len);
            CHECK_RC(map ? sv_mp_read_array(&r, &got) : sv_mp_read_map(&r, &got), SV_MP_E_TYPE);
            sv_mp_reader_init(&r, w.buf, w.len);
            CHECK_RC(sv_mp_skip(&r), 0);
            CHECK(sv_mp_remaining(&r) == 0);
            if (n > 0) {
                /* One element short: the count no longer fits. */
                sv_mp_reader_init(&r, w.buf, w.len - 1);
                CHECK_RC(map ? sv_mp_read_map(&r, &got) : sv_mp_read_array(&r, &got),
                         SV_MP_E_COUNT);
                CHECK(r.pos == 0);
            }
            for (size_t cut = 0; cut < counts[i].hdr; cut++) {
                sv_mp_reader_init(&r, w.buf, cut);
                CHECK_RC(map ? sv_mp_read_map(&r, &got) : sv_mp_read_array(&r, &got),
                         SV_MP_E_TRUNCATED);
            }
            sv_mp_writer_free(&w);
        }
    }

    /* nil and bool. */
    struct sv_mp_writer w;
    sv_mp_writer_init(&w);
    sv_mp_put_nil(&w);
    sv_mp_put_bool(&w, true);
    sv_mp_put_bool(&w, false);
    CHECK(w.len == 3 && w.buf[0] == 0xc0 && w.buf[1] == 0xc3 && w.buf[2] == 0xc2);
    struct sv_mp_reader r;
    sv_mp_reader_init(&r, w.buf, w.len);
    bool b = false;
    uint64_t u;
    CHECK_RC(sv_mp_read_bool(&r, &b), SV_MP_E_TYPE);
    CHECK_RC(sv_mp_read_nil(&r), 0);
    CHECK_RC(sv_mp_read_uint(&r, &u), SV_MP_E_TYPE);
    CHECK_RC(sv_mp_read_bool(&r, &b), 0);
    CHECK(b);
    CHECK_RC(sv_mp_read_bool(&r, &b), 0);
    CHECK(!b);
    CHECK_RC(sv_mp_read_nil(&r), SV_MP_E_TRUNCATED);
    /* take() moves the buffer out. */
    uint8_t *out = NULL;
    size_t out_len = 0;
    CHECK_RC(sv_mp_writer_take(&w, &out, &out_len), 0);
    CHECK(out != NULL && out_len == 3 && w.buf == NULL && w.len == 0);
    free(out);
    sv_mp_writer_init(&w);
    CHECK_RC(sv_mp_writer_take(&w, &out, &out_len), 0);
    CHECK(out != NULL && out_len == 0);
    free(out);
}

static void test_mp_skip(void)
{
    /* Every type, including the ones the codecs never use. */
    static const uint8_t all[] = {
        0xc0,                                                                   /* nil */
        0xc2, 0xc3,                                                             /* bools */
        0x05, 0xe0, 0xcc, 1,    0xcd, 1,    2,    0xd3, 1, 2, 3, 4, 5, 6, 7, 8, /* ints */
        0xca, 1,    2,    3,    4,    0xcb, 1,    2,    3, 4, 5, 6, 7, 8,       /* floats */
        0xa2, 'h',  'i',  0xd9, 1,    'x',  0xc4, 2,    9, 9,                   /* str, bin */
        0xd4, 1,    2,    0xd8, 1,    0,    1,    2,    3, 4, 5, 6, 7, 8, 9, 10,
        11,   12,   13,   14,   15,   /* fixext */
        0xc7, 2,    1,    7,    7,    /* ext 8 */
        0x92, 0x81, 0x01, 0x90, 0xa0, /* [{1: []}, ""] */
    };
    struct sv_mp_reader r;
    sv_mp_reader_init(&r, all, sizeof(all));
    int values = 0;
    while (sv_mp_remaining(&r) > 0 && values < 100) {
        CHECK_RC(sv_mp_skip(&r), 0);
        values++;
    }
    CHECK(values == 17 && sv_mp_remaining(&r) == 0);

    /* 0xc1 is never used. */
    static const uint8_t never[] = {0xc1};
    sv_mp_reader_init(&r, never, 1);
    CHECK_RC(sv_mp_skip(&r), SV_MP_E_TYPE);

    /* Nesting: SV_MP_DEPTH_MAX containers pass, one more does not. */
    uint8_t deep[SV_MP_DEPTH_MAX + 1];
    memset(deep, 0x91, sizeof(deep));
    deep[SV_MP_DEPTH_MAX - 1] = 0x90;
    sv_mp_reader_init(&r, deep, SV_MP_DEPTH_MAX);
    CHECK_RC(sv_mp_skip(&r), 0);
    CHECK(sv_mp_remaining(&r) == 0);
    deep[SV_MP_DEPTH_MAX - 1] = 0x91;
    deep[SV_MP_DEPTH_MAX] = 0x90;
    sv_mp_reader_init(&r, deep, SV_MP_DEPTH_MAX + 1);
    CHECK_RC(sv_mp_skip(&r), SV_MP_E_DEPTH);

    /* A forged count fails at once. */
    static const uint8_t forged[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    sv_mp_reader_init(&r, forged, sizeof(forged));
    CHECK_RC(sv_mp_skip(&r), SV_MP_E_COUNT);
    static const uint8_t forged_bin[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    sv_mp_reader_init(&r, forged_bin, sizeof(forged_bin));
    CHECK_RC(sv_mp_skip(&r), SV_MP_E_TRUNCATED);
    static const uint8_t forged_ext[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00};
    sv_mp_reader_init(&r, forged_ext, sizeof(forged_ext));
    CHECK_RC(sv_mp_skip(&r), SV_MP_E_TRUNCATED);
    /* Every strict prefix of a nested value fails. */
    static const uint8_t nested[] = {0x92, 0x81, 0x01, 0xa2, 'h', 'i', 0xcd, 1, 2};
    for (size_t n = 0; n < sizeof(nested); n++) {
        sv_mp_reader_init(&r, nested, n);
        CHECK(sv_mp_skip(&r) != 0);
    }
}

/* Checks: message round trips. */

static uint8_t sha[32];

static void base_object(struct sv_msg *m, uint32_t type)
{
    (void)type;
    memset(m, 0, sizeof(*m));
    set_str(m, SV_F_BUCKET, &m->bucket, "photos");
    set_str(m, SV_F_KEY, &m->key, "2024/07/cat.jpg");
}

static void test_requests(void)
{
    fill(sha, sizeof(sha), 3);
    uint8_t *chunk = xmalloc(SV_MSG_CHUNK_MAX);
    fill(chunk, SV_MSG_CHUNK_MAX, 4);
    struct sv_msg m;

    memset(&m, 0, sizeof(m)); /* MAP, STATUS: no field */
    roundtrip(&m, "MAP");

    base_object(&m, SV_MSG_PUT);
    set_u(&m, SV_F_SESSION, &m.session, 0x1122334455667788ull);
    set_u(&m, SV_F_SEQ, &m.seq, 17);
    set_u(&m, SV_F_SIZE, &m.size, SV_MSG_CHUNK_MAX);
    memcpy(m.sha256, sha, 32);
    SV_MSG_SET(&m, SV_F_SHA256);
    set_u(&m, SV_F_IF_VERSION, &m.if_version, 0);
    set_u(&m, SV_F_ACK_BELOW, &m.ack_below, 12);
    m.data = (struct sv_bytes){chunk, SV_MSG_CHUNK_MAX};
    SV_MSG_SET(&m, SV_F_DATA);
    set_u(&m, SV_F_SHARD, &m.shard, 5);
    roundtrip(&m, "PUT");

    base_object(&m, SV_MSG_PUT_BEGIN);
    roundtrip(&m, "PUT_BEGIN");

    base_object(&m, SV_MSG_PUT_CHUNK);
    set_u(&m, SV_F_UPLOAD, &m.upload, 99);
    set_u(&m, SV_F_CHUNK, &m.chunk, 3);
    m.data = (struct sv_bytes){chunk, 1000};
    SV_MSG_SET(&m, SV_F_DATA);
    roundtrip(&m, "PUT_CHUNK");

    base_object(&m, SV_MSG_PUT_COMMIT);
    set_u(&m, SV_F_UPLOAD, &m.upload, 99);
    set_u(&m, SV_F_N_CHUNKS, &m.n_chunks, 1u << 20);
    set_u(&m, SV_F_SIZE, &m.size, (uint64_t)1 << 40);
    memcpy(m.sha256, sha, 32);
    SV_MSG_SET(&m, SV_F_SHA256);
    set_u(&m, SV_F_SESSION, &m.session, 1);
    set_u(&m, SV_F_SEQ, &m.seq, UINT64_MAX);
    set_u(&m, SV_F_IF_VERSION, &m.if_version, 41);
    set_u(&m, SV_F_ACK_BELOW, &m.ack_below, 0);
    roundtrip(&m, "PUT_COMMIT");

    for (int type = SV_MSG_GET; type <= SV_MSG_STAT; type++) {
        base_object(&m, (uint32_t)type);
        set_u(&m, SV_F_CONSISTENCY, &m.consistency, 1);
        if (type == SV_MSG_GET_CHUNK) {
            set_u(&m, SV_F_VERSION, &m.version, 8);
            set_u(&m, SV_F_CHUNK, &m.chunk, 2);
        }
        roundtrip(&m, "GET / GET_CHUNK / STAT");
    }

    base_object(&m, SV_MSG_DELETE);
    set_u(&m, SV_F_SESSION, &m.session, 7);
    set_u(&m, SV_F_SEQ, &m.seq, 8);
    set_u(&m, SV_F_IF_VERSION, &m.if_version, 3);
    set_u(&m, SV_F_ACK_BELOW, &m.ack_below, 5);
    roundtrip(&m, "DELETE");

    memset(&m, 0, sizeof(m));
    set_str(&m, SV_F_BUCKET, &m.bucket, "b");
    set_u(&m, SV_F_SHARD, &m.shard, 15);
    set_str(&m, SV_F_PREFIX, &m.prefix, "");
    set_str(&m, SV_F_START_AFTER, &m.start_after, "2024/");
    set_u(&m, SV_F_LIMIT, &m.limit, SV_MSG_LIST_LIMIT_MAX);
    set_u(&m, SV_F_CONSISTENCY, &m.consistency, 0);
    roundtrip(&m, "LIST");

    memset(&m, 0, sizeof(m));
    set_u(&m, SV_F_SHARD, &m.shard, 3);
    set_u(&m, SV_F_UPLOAD, &m.upload, 1);
    set_u(&m, SV_F_CHUNK, &m.chunk, 0);
    set_u(&m, SV_F_VERSION, &m.version, 2);
    set_u(&m, SV_F_TENANT, &m.tenant, 9);
    roundtrip(&m, "CHUNK_FETCH");
    free(chunk);
}

static void test_responses(void)
{
    fill(sha, sizeof(sha), 3);
    uint8_t *data = xmalloc(SV_MSG_DATA_MAX);
    fill(data, SV_MSG_DATA_MAX, 5);
    struct sv_msg m;

    /* MAP: nodes, then shards with replicas. */
    struct sv_item items[3 + 4];
    memset(items, 0, sizeof(items));
    static const char *const addrs[] = {"10.0.0.1:7000", "10.0.0.2:7000", "[::1]:7000"};
    static const char *const zones[] = {"a", "b", ""};
    for (int i = 0; i < 3; i++) {
        items[i].id = (uint64_t)i + 1;
        items[i].addr = bytes_of(addrs[i]);
        items[i].zone = bytes_of(zones[i]);
        items[i].state = bytes_of(i == 2 ? "down" : "up");
        SV_ITEM_SET(&items[i], SV_I_ID);
        SV_ITEM_SET(&items[i], SV_I_ADDR);
        SV_ITEM_SET(&items[i], SV_I_ZONE);
        SV_ITEM_SET(&items[i], SV_I_STATE);
    }
    for (int s = 0; s < 4; s++) {
        struct sv_item *it = &items[3 + s];
        it->id = (uint64_t)s;
        SV_ITEM_SET(it, SV_I_ID);
        it->n_replicas = s == 3 ? SV_MSG_REPLICAS_MAX : (uint32_t)s;
        for (uint32_t k = 0; k < it->n_replicas; k++)
            it->replicas[k] = k == 5 ? UINT64_MAX : k + 1;
        SV_ITEM_SET(it, SV_I_REPLICAS);
        if (s != 1) {
            it->leader = 2;
            SV_ITEM_SET(it, SV_I_LEADER);
        }
    }
    memset(&m, 0, sizeof(m));
    SV_MSG_SET(&m, SV_F_STATUS);
    set_u(&m, SV_F_N_SHARDS, &m.n_shards, 4);
    m.items = items;
    m.n_items = 7;
    SV_MSG_SET(&m, SV_F_ITEMS);
    roundtrip(&m, "MAP response");

    /* PUT / PUT_COMMIT / DELETE -> VERSION; PUT_BEGIN -> UPLOAD; PUT_CHUNK -> -. */
    memset(&m, 0, sizeof(m));
    SV_MSG_SET(&m, SV_F_STATUS);
    set_u(&m, SV_F_VERSION, &m.version, 12);
    roundtrip(&m, "PUT response");
    memset(&m, 0, sizeof(m));
    SV_MSG_SET(&m, SV_F_STATUS);
    set_u(&m, SV_F_UPLOAD, &m.upload, 0xdeadbeef);
    roundtrip(&m, "PUT_BEGIN response");

    /* GET with a full DATA; STAT without; GET_CHUNK and CHUNK_FETCH -> DATA. */
    memset(&m, 0, sizeof(m));
    SV_MSG_SET(&m, SV_F_STATUS);
    set_u(&m, SV_F_VERSION, &m.version, 3);
    set_u(&m, SV_F_SIZE, &m.size, 5ull << 30);
    memcpy(m.sha256, sha, 32);
    SV_MSG_SET(&m, SV_F_SHA256);
    set_u(&m, SV_F_MTIME_MS, &m.mtime_ms, 1719999999999ull);
    set_u(&m, SV_F_N_CHUNKS, &m.n_chunks, 5120);
    set_u(&m, SV_F_UPLOAD, &m.upload, 4);
    roundtrip(&m, "STAT response");
    m.data = (struct sv_bytes){data, SV_MSG_DATA_MAX};
    SV_MSG_SET(&m, SV_F_DATA);
    roundtrip(&m, "GET response, DATA of SV_MSG_DATA_MAX bytes");
    m.data = (struct sv_bytes){data, 0};
    roundtrip(&m, "GET response, empty DATA");

    /* LIST -> items (KEY SIZE VERSION MTIME_MS), FLAGS. */
    enum { LIST_N = 50 };
    struct sv_item keys[LIST_N];
    char names[LIST_N][16];
    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < LIST_N; i++) {
        snprintf(names[i], sizeof(names[i]), "k%04d", i);
        keys[i].key = bytes_of(names[i]);
        keys[i].size = (uint64_t)i * 1000;
        keys[i].version = (uint64_t)i + 1;
        keys[i].mtime_ms = 1700000000000ull + (uint64_t)i;
        SV_ITEM_SET(&keys[i], SV_I_KEY);
        SV_ITEM_SET(&keys[i], SV_I_SIZE);
        SV_ITEM_SET(&keys[i], SV_I_VERSION);
        SV_ITEM_SET(&keys[i], SV_I_MTIME_MS);
    }
    memset(&m, 0, sizeof(m));
    SV_MSG_SET(&m, SV_F_STATUS);
    m.items = keys;
    m.n_items = LIST_N;
    SV_MSG_SET(&m, SV_F_ITEMS);
    set_u(&m, SV_F_FLAGS, &m.flags, 1);
    roundtrip(&m, "LIST response");
    m.n_items = 0;
    roundtrip(&m, "LIST response, no key");

    /* STATUS -> NODE ADDR ZONE, one item per group. */
    struct sv_item groups[2];
    memset(groups, 0, sizeof(groups));
    for (int i = 0; i < 2; i++) {
        struct sv_item *g = &groups[i];
        g->id = (uint64_t)i;
        g->role = bytes_of(i ? "follower" : "leader");
        g->leader = 1;
        g->term = 4;
        g->commit = 100 + (uint64_t)i;
        g->applied = 99;
        g->n_replicas = 3;
        g->replicas[0] = 1;
        g->replicas[1] = 2;
        g->replicas[2] = 3;
        g->fields = 1u << SV_I_ID | 1u << SV_I_ROLE | 1u << SV_I_LEADER | 1u << SV_I_TERM |
                    1u << SV_I_COMMIT | 1u << SV_I_APPLIED | 1u << SV_I_REPLICAS;
    }
    memset(&m, 0, sizeof(m));
    SV_MSG_SET(&m, SV_F_STATUS);
    set_u(&m, SV_F_NODE, &m.node, 1);
    set_str(&m, SV_F_ADDR, &m.addr, "node1:7000");
    set_str(&m, SV_F_ZONE, &m.zone, "eu-1a");
    set_str(&m, SV_F_METRICS, &m.metrics, "node1:8000");
    m.items = groups;
    m.n_items = 2;
    SV_MSG_SET(&m, SV_F_ITEMS);
    roundtrip(&m, "STATUS response");

    /* Errors: NOT_LEADER with LEADER and ADDR; a negative status; MSG. */
    memset(&m, 0, sizeof(m));
    m.status = SV_ST_NOT_LEADER;
    SV_MSG_SET(&m, SV_F_STATUS);
    set_u(&m, SV_F_LEADER, &m.leader, 3);
    set_str(&m, SV_F_ADDR, &m.addr, "node3:7000");
    roundtrip(&m, "NOT_LEADER response");
    memset(&m, 0, sizeof(m));
    m.status = INT64_MIN;
    SV_MSG_SET(&m, SV_F_STATUS);
    set_str(&m, SV_F_MSG, &m.msg, "disk full on /var/lib/shardvault");
    roundtrip(&m, "negative status");
    m.status = INT64_MAX;
    roundtrip(&m, "largest status");
    free(data);
}

/* Every field at once, with extreme values and strings at their limits. */
static void test_all_fields_limits(void)
{
    static char name[SV_MSG_NAME_MAX], text[SV_MSG_TEXT_MAX];
    memset(name, 'n', sizeof(name));
    memset(text, 't', sizeof(text));
    struct sv_bytes name_max = {(const uint8_t *)name, sizeof(name)};
    struct sv_bytes text_max = {(const uint8_t *)text, sizeof(text)};
    struct sv_item it;
    memset(&it, 0, sizeof(it));
    it.fields = (uint32_t)((1ull << SV_I_COUNT_) - 1);
    it.key = it.addr = it.zone = it.state = it.role = name_max;
    it.size = it.version = it.mtime_ms = it.id = it.leader = it.term = it.commit = it.applied =
        UINT64_MAX;
    it.n_replicas = SV_MSG_REPLICAS_MAX;
    for (int i = 0; i < SV_MSG_REPLICAS_MAX; i++)
        it.replicas[i] = UINT64_MAX - (uint64_t)i;

    struct sv_msg m;
    memset(&m, 0, sizeof(m));
    m.fields = (uint32_t)((1ull << SV_F_COUNT_) - 1);
    m.status = -1;
    m.msg = text_max;
    m.bucket = m.key = m.prefix = m.start_after = m.addr = m.zone = m.metrics = name_max;
    m.data = (struct sv_bytes){(const uint8_t *)name, 10};
    uint64_t *u[] = {&m.tenant, &m.if_version, &m.session, &m.seq,  &m.ack_below, &m.upload,
                     &m.chunk,  &m.n_chunks,   &m.version, &m.size, &m.mtime_ms,  &m.consistency,
                     &m.limit,  &m.shard,      &m.leader,  &m.node, &m.n_shards,  &m.flags};
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        *u[i] = UINT64_MAX - i;
    memset(m.sha256, 0xab, 32);
    m.items = &it;
    m.n_items = 1;
    roundtrip(&m, "every field at its limit");

    /* Empty strings everywhere, zero integers. */
    struct sv_msg z;
    memset(&z, 0, sizeof(z));
    z.fields = (uint32_t)((1ull << SV_F_COUNT_) - 1);
    roundtrip(&z, "every field empty or zero");

    /* Encoding refuses what decoding would refuse. */
    uint8_t *body = NULL;
    size_t len = 0;
    struct sv_msg bad = m;
    bad.key.len = SV_MSG_NAME_MAX + 1;
    static char over[SV_MSG_NAME_MAX + 1];
    bad.key.p = (const uint8_t *)over;
    CHECK_RC(sv_msg_encode(&bad, &body, &len), SV_PROTO_E_TOO_BIG);
    bad = m;
    bad.msg = (struct sv_bytes){(const uint8_t *)over, SV_MSG_TEXT_MAX + 1};
    CHECK_RC(sv_msg_encode(&bad, &body, &len), SV_PROTO_E_TOO_BIG);
    bad = m;
    uint8_t *big = xmalloc(SV_MSG_DATA_MAX + 1);
    bad.data = (struct sv_bytes){big, SV_MSG_DATA_MAX + 1};
    CHECK_RC(sv_msg_encode(&bad, &body, &len), SV_PROTO_E_TOO_BIG);
    free(big);
    bad = m;
    struct sv_item bad_it = it;
    bad_it.n_replicas = SV_MSG_REPLICAS_MAX + 1;
    bad.items = &bad_it;
    CHECK_RC(sv_msg_encode(&bad, &body, &len), SV_PROTO_E_TOO_BIG);
    bad = m;
    bad.n_items = SV_MSG_ITEMS_MAX + 1;
    CHECK_RC(sv_msg_encode(&bad, &body, &len), SV_PROTO_E_TOO_BIG);
    CHECK(body == NULL);
    /* Fields whose bit is clear are not written, whatever their value. */
    bad = m;
    bad.fields = 1u << SV_F_SEQ;
    CHECK_RC(sv_msg_encode(&bad, &body, &len), 0);
    static const uint8_t want[] = {0x81, SV_F_SEQ, 0xcf, 0xff, 0xff, 0xff,
                                   0xff, 0xff,     0xff, 0xff, 0xfc};
    CHECK(len == sizeof(want) && memcmp(body, want, len) == 0);
    free(body);

    /* A full list of SV_MSG_ITEMS_MAX items. */
    struct sv_item *many = calloc(SV_MSG_ITEMS_MAX, sizeof(*many));
    CHECK(many != NULL);
    if (many != NULL) {
        for (int i = 0; i < SV_MSG_ITEMS_MAX; i++) {
            many[i].size = (uint64_t)i;
            SV_ITEM_SET(&many[i], SV_I_SIZE);
        }
        memset(&m, 0, sizeof(m));
        m.items = many;
        m.n_items = SV_MSG_ITEMS_MAX;
        SV_MSG_SET(&m, SV_F_ITEMS);
        roundtrip(&m, "SV_MSG_ITEMS_MAX items");
        free(many);
    }
}

/* Checks: rejections. */

static void put_str_n(struct sv_mp_writer *w, uint64_t n)
{
    static char s[SV_MSG_DATA_MAX + 2];
    sv_mp_put_str(w, s, (size_t)n);
}

static void put_bin_n(struct sv_mp_writer *w, uint64_t n)
{
    static uint8_t b[SV_MSG_DATA_MAX + 2];
    sv_mp_put_bin(w, b, (size_t)n);
}

static void put_u(struct sv_mp_writer *w, uint64_t v)
{
    sv_mp_put_uint(w, v);
}

static void put_neg(struct sv_mp_writer *w, uint64_t v)
{
    sv_mp_put_int(w, -(int64_t)v);
}

static void put_nil(struct sv_mp_writer *w, uint64_t v)
{
    (void)v;
    sv_mp_put_nil(w);
}

static void put_empty_map(struct sv_mp_writer *w, uint64_t v)
{
    (void)v;
    sv_mp_put_map(w, 0);
}

static void put_bool(struct sv_mp_writer *w, uint64_t v)
{
    sv_mp_put_bool(w, v != 0);
}

static void test_reject_truncated(void)
{
    /* A body with every field and two items: every strict prefix fails. */
    struct sv_item its[2];
    memset(its, 0, sizeof(its));
    its[0].fields = (uint32_t)((1ull << SV_I_COUNT_) - 1);
    its[0].key = its[0].addr = its[0].zone = its[0].state = its[0].role = bytes_of("abc");
    its[0].n_replicas = 3;
    its[0].replicas[2] = 70000;
    its[1].fields = 1u << SV_I_KEY;
    its[1].key = bytes_of("x");
    struct sv_msg m;
    memset(&m, 0, sizeof(m));
    m.fields = (uint32_t)((1ull << SV_F_COUNT_) - 1);
    m.status = -300;
    m.bucket = bytes_of("bucket");
    m.key = bytes_of("some/key/with/a/longer/name/over/thirty-one/bytes");
    m.data = bytes_of("data");
    m.seq = 1u << 20;
    m.items = its;
    m.n_items = 2;
    uint8_t *body = NULL;
    size_t len = 0;
    CHECK_RC(sv_msg_encode(&m, &body, &len), 0);
    struct sv_msg out;
    CHECK_RC(sv_msg_decode(body, len, &out, NULL, 0), 0);
    sv_msg_free(&out);
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past the end. */
        uint8_t *cut = xmalloc(n);
        memcpy(cut, body, n);
        CHECK_RC(sv_msg_decode(cut, n, &out, NULL, 0), SV_PROTO_E_MALFORMED);
        sv_msg_free(&out);
        CHECK(out.items == NULL && out.n_items == 0);
        free(cut);
    }
    free(body);
}

static void test_reject_wrong_type(void)
{
    /* For each known field, values of another type. */
    for (uint64_t id = 0; id < SV_F_COUNT_; id++) {
        bool is_uint = id != SV_F_STATUS && id != SV_F_MSG && id != SV_F_BUCKET && id != SV_F_KEY &&
                       id != SV_F_SHA256 && id != SV_F_DATA && id != SV_F_PREFIX &&
                       id != SV_F_START_AFTER && id != SV_F_ADDR && id != SV_F_ZONE &&
                       id != SV_F_ITEMS && id != SV_F_METRICS;
        bool is_str = id == SV_F_MSG || id == SV_F_BUCKET || id == SV_F_KEY || id == SV_F_PREFIX ||
                      id == SV_F_START_AFTER || id == SV_F_ADDR || id == SV_F_ZONE ||
                      id == SV_F_METRICS;
        bool is_bin = id == SV_F_SHA256 || id == SV_F_DATA;
        CHECK_RC(decode_one_field(id, put_nil, 0), SV_PROTO_E_MALFORMED);
        CHECK_RC(decode_one_field(id, put_bool, 1), SV_PROTO_E_MALFORMED);
        if (!is_str)
            CHECK_RC(decode_one_field(id, put_str_n, 4), SV_PROTO_E_MALFORMED);
        if (!is_bin)
            CHECK_RC(decode_one_field(id, put_bin_n, 4), SV_PROTO_E_MALFORMED);
        if (is_str || is_bin || id == SV_F_ITEMS)
            CHECK_RC(decode_one_field(id, put_u, 1), SV_PROTO_E_MALFORMED);
        CHECK_RC(decode_one_field(id, put_empty_map, 0), SV_PROTO_E_MALFORMED);
        if (is_uint) {
            CHECK_RC(decode_one_field(id, put_neg, 1), SV_PROTO_E_MALFORMED);
            CHECK_RC(decode_one_field(id, put_u, UINT64_MAX), 0);
        }
    }
    /* STATUS is an int: negative is fine, above INT64_MAX is not. */
    CHECK_RC(decode_one_field(SV_F_STATUS, put_neg, 5), 0);
    CHECK_RC(decode_one_field(SV_F_STATUS, put_u, (uint64_t)INT64_MAX), 0);
    CHECK_RC(decode_one_field(SV_F_STATUS, put_u, (uint64_t)INT64_MAX + 1), SV_PROTO_E_MALFORMED);

    /* Not a map at all, or a key that is not an unsigned id. */
    struct sv_mp_writer w;
    struct sv_msg m;
    sv_mp_writer_init(&w);
    sv_mp_put_array(&w, 0);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_str(&w, "key", 3);
    sv_mp_put_str(&w, "k", 1);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_int(&w, -1);
    sv_mp_put_uint(&w, 0);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    CHECK_RC(sv_msg_decode((const uint8_t *)"", 0, &m, NULL, 0), SV_PROTO_E_MALFORMED);

    /* Inside items: an item that is not a map, a wrong-typed item field,
     * replicas that are not uints. */
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_F_ITEMS);
    sv_mp_put_array(&w, 1);
    sv_mp_put_array(&w, 0);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_F_ITEMS);
    sv_mp_put_array(&w, 2);
    sv_mp_put_map(&w, 0);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_I_KEY);
    sv_mp_put_uint(&w, 1);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    CHECK(m.n_items == 2 && m.items != NULL); /* freed below, after a failure */
    sv_msg_free(&m);
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_F_ITEMS);
    sv_mp_put_array(&w, 1);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_I_REPLICAS);
    sv_mp_put_array(&w, 2);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_str(&w, "2", 1);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
}

static void test_reject_duplicate(void)
{
    struct sv_mp_writer w;
    struct sv_msg m;
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 3);
    sv_mp_put_uint(&w, SV_F_KEY);
    sv_mp_put_str(&w, "a", 1);
    sv_mp_put_uint(&w, SV_F_SEQ);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, SV_F_KEY);
    sv_mp_put_str(&w, "b", 1);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    /* Same id, same value: still a duplicate. */
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 2);
    sv_mp_put_uint(&w, SV_F_STATUS);
    sv_mp_put_uint(&w, 0);
    sv_mp_put_uint(&w, SV_F_STATUS);
    sv_mp_put_uint(&w, 0);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    /* Inside an item. */
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_F_ITEMS);
    sv_mp_put_array(&w, 1);
    sv_mp_put_map(&w, 2);
    sv_mp_put_uint(&w, SV_I_ID);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, SV_I_ID);
    sv_mp_put_uint(&w, 2);
    CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    /* An unknown id twice is skipped twice, not an error (it is not ours to judge). */
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 2);
    sv_mp_put_uint(&w, 40);
    sv_mp_put_uint(&w, 0);
    sv_mp_put_uint(&w, 40);
    sv_mp_put_uint(&w, 0);
    CHECK_RC(decode_w(&w, &m), 0);
    sv_msg_free(&m);
}

static void test_reject_limits(void)
{
    static const uint64_t names[] = {SV_F_BUCKET, SV_F_KEY,  SV_F_PREFIX, SV_F_START_AFTER,
                                     SV_F_ADDR,   SV_F_ZONE, SV_F_METRICS};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        CHECK_RC(decode_one_field(names[i], put_str_n, SV_MSG_NAME_MAX), 0);
        CHECK_RC(decode_one_field(names[i], put_str_n, SV_MSG_NAME_MAX + 1), SV_PROTO_E_TOO_BIG);
    }
    CHECK_RC(decode_one_field(SV_F_MSG, put_str_n, SV_MSG_TEXT_MAX), 0);
    CHECK_RC(decode_one_field(SV_F_MSG, put_str_n, SV_MSG_TEXT_MAX + 1), SV_PROTO_E_TOO_BIG);
    CHECK_RC(decode_one_field(SV_F_DATA, put_bin_n, SV_MSG_DATA_MAX), 0);
    CHECK_RC(decode_one_field(SV_F_DATA, put_bin_n, SV_MSG_DATA_MAX + 1), SV_PROTO_E_TOO_BIG);
    CHECK_RC(decode_one_field(SV_F_SHA256, put_bin_n, 32), 0);
    CHECK_RC(decode_one_field(SV_F_SHA256, put_bin_n, 31), SV_PROTO_E_MALFORMED);
    CHECK_RC(decode_one_field(SV_F_SHA256, put_bin_n, 33), SV_PROTO_E_MALFORMED);
    CHECK_RC(decode_one_field(SV_F_SHA256, put_bin_n, 0), SV_PROTO_E_MALFORMED);

    /* Item strings and replicas. */
    for (uint64_t id = SV_I_KEY; id <= SV_I_REPLICAS; id++) {
        bool str = id == SV_I_KEY || id == SV_I_ADDR || id == SV_I_ZONE || id == SV_I_STATE ||
                   id == SV_I_ROLE;
        if (!str)
            continue;
        for (int over = 0; over < 2; over++) {
            struct sv_mp_writer w;
            struct sv_msg m;
            sv_mp_writer_init(&w);
            sv_mp_put_map(&w, 1);
            sv_mp_put_uint(&w, SV_F_ITEMS);
            sv_mp_put_array(&w, 1);
            sv_mp_put_map(&w, 1);
            sv_mp_put_uint(&w, id);
            put_str_n(&w, SV_MSG_NAME_MAX + (uint64_t)over);
            CHECK_RC(decode_w(&w, &m), over ? SV_PROTO_E_TOO_BIG : 0);
            sv_msg_free(&m);
        }
    }
    for (uint32_t n = SV_MSG_REPLICAS_MAX; n <= SV_MSG_REPLICAS_MAX + 1; n++) {
        struct sv_mp_writer w;
        struct sv_msg m;
        sv_mp_writer_init(&w);
        sv_mp_put_map(&w, 1);
        sv_mp_put_uint(&w, SV_F_ITEMS);
        sv_mp_put_array(&w, 1);
        sv_mp_put_map(&w, 1);
        sv_mp_put_uint(&w, SV_I_REPLICAS);
        sv_mp_put_array(&w, n);
        for (uint32_t i = 0; i < n; i++)
            sv_mp_put_uint(&w, i);
        int rc = decode_w(&w, &m);
        CHECK_RC(rc, n > SV_MSG_REPLICAS_MAX ? SV_PROTO_E_TOO_BIG : 0);
        if (rc == 0)
            CHECK(m.n_items == 1 && m.items[0].n_replicas == n && m.items[0].replicas[7] == 7);
        sv_msg_free(&m);
    }

    /* More items than SV_MSG_ITEMS_MAX, each a real (empty) map. */
    for (uint32_t n = SV_MSG_ITEMS_MAX; n <= SV_MSG_ITEMS_MAX + 1; n++) {
        struct sv_mp_writer w;
        struct sv_msg m;
        sv_mp_writer_init(&w);
        sv_mp_put_map(&w, 1);
        sv_mp_put_uint(&w, SV_F_ITEMS);
        sv_mp_put_array(&w, n);
        for (uint32_t i = 0; i < n; i++)
            sv_mp_put_map(&w, 0);
        CHECK_RC(decode_w(&w, &m), n > SV_MSG_ITEMS_MAX ? SV_PROTO_E_TOO_BIG : 0);
        sv_msg_free(&m);
    }
}

static void test_reject_forged_counts(void)
{
    /* {ITEMS: array32 of 2^32-1} with a few bytes of body: refused before any
     * allocation (calloc of 2^32 items would abort under ASan). */
    static const uint8_t items_forged[] = {0x81, SV_F_ITEMS, 0xdd, 0xff, 0xff,
                                           0xff, 0xff,       0x80, 0x80, 0x80};
    struct sv_msg m;
    char err[128] = "";
    CHECK(sv_msg_decode(items_forged, sizeof(items_forged), &m, err, sizeof(err)) != 0);
    CHECK(m.items == NULL && err[0] != '\0');
    sv_msg_free(&m);
    /* Within SV_MSG_ITEMS_MAX but more than the bytes that remain. */
    static const uint8_t items_short[] = {0x81, SV_F_ITEMS, 0xdc, 0x10, 0x00, 0x80, 0x80};
    CHECK_RC(sv_msg_decode(items_short, sizeof(items_short), &m, NULL, 0), SV_PROTO_E_MALFORMED);
    CHECK(m.items == NULL);
    sv_msg_free(&m);
    /* A top-level map32 of 2^32-1 pairs, a str32 and a bin32 of 4 GiB. */
    static const uint8_t map_forged[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00};
    CHECK_RC(sv_msg_decode(map_forged, sizeof(map_forged), &m, NULL, 0), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    static const uint8_t str_forged[] = {0x81, SV_F_KEY, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    CHECK_RC(sv_msg_decode(str_forged, sizeof(str_forged), &m, NULL, 0), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    static const uint8_t bin_forged[] = {0x81, SV_F_DATA, 0xc6, 0xff, 0xff, 0xff, 0xff, 'a'};
    CHECK_RC(sv_msg_decode(bin_forged, sizeof(bin_forged), &m, NULL, 0), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    /* Forged replicas count and a forged array in an unknown field. */
    static const uint8_t rep_forged[] = {0x81, SV_F_ITEMS, 0x91, 0x81, SV_I_REPLICAS, 0xdd,
                                         0xff, 0xff,       0xff, 0xff, 0x01};
    CHECK(sv_msg_decode(rep_forged, sizeof(rep_forged), &m, NULL, 0) != 0);
    sv_msg_free(&m);
    static const uint8_t unk_forged[] = {0x81, 0x63, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK_RC(sv_msg_decode(unk_forged, sizeof(unk_forged), &m, NULL, 0), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
}

static void test_reject_trailing(void)
{
    struct sv_mp_writer w;
    struct sv_msg m;
    static const uint8_t extra[][2] = {{0xc0, 0}, {0x80, 0}, {0x00, 0x00}};
    for (size_t i = 0; i < 3; i++) {
        sv_mp_writer_init(&w);
        sv_mp_put_map(&w, 1);
        sv_mp_put_uint(&w, SV_F_SEQ);
        sv_mp_put_uint(&w, 1);
        sv_mp_writer_reserve(&w, 2);
        memcpy(w.buf + w.len, extra[i], i == 2 ? 2 : 1);
        w.len += i == 2 ? 2 : 1;
        CHECK_RC(decode_w(&w, &m), SV_PROTO_E_MALFORMED);
        sv_msg_free(&m);
    }
}

static void test_unknown_fields(void)
{
    struct sv_mp_writer w;
    struct sv_msg m;
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 7);
    sv_mp_put_uint(&w, 99);
    sv_mp_put_str(&w, "future", 6);
    sv_mp_put_uint(&w, SV_F_KEY);
    sv_mp_put_str(&w, "k", 1);
    sv_mp_put_uint(&w, 40); /* unknown: every bit of fields is a known field now */
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_array(&w, 2);
    sv_mp_put_nil(&w);
    sv_mp_put_bin(&w, "xy", 2);
    sv_mp_put_uint(&w, 32); /* beyond the bits */
    sv_mp_put_int(&w, -7);
    sv_mp_put_uint(&w, UINT64_MAX);
    sv_mp_put_bool(&w, true);
    sv_mp_put_uint(&w, SV_F_ITEMS);
    sv_mp_put_array(&w, 1);
    sv_mp_put_map(&w, 2);
    sv_mp_put_uint(&w, 200); /* unknown item field */
    sv_mp_put_array(&w, 0);
    sv_mp_put_uint(&w, SV_I_ID);
    sv_mp_put_uint(&w, 5);
    /* Ten levels deep is skipped fine. */
    sv_mp_put_uint(&w, 1000);
    for (int i = 0; i < 10; i++)
        sv_mp_put_array(&w, 1);
    sv_mp_put_nil(&w);
    uint8_t *body = NULL;
    int rc = decode_w_keep(&w, &m, &body);
    CHECK_RC(rc, 0);
    CHECK(m.fields == (1u << SV_F_KEY | 1u << SV_F_ITEMS));
    CHECK(m.key.len == 1 && m.key.p[0] == 'k');
    CHECK(m.n_items == 1 && m.items[0].fields == 1u << SV_I_ID && m.items[0].id == 5);
    sv_msg_free(&m);
    free(body);

    /* A nesting bomb in an unknown field: refused, no stack overflow. */
    enum { BOMB = 100000 };
    uint8_t *bomb = xmalloc(BOMB);
    bomb[0] = 0x81;
    bomb[1] = 99;
    memset(bomb + 2, 0x91, BOMB - 3);
    bomb[BOMB - 1] = 0xc0;
    CHECK_RC(sv_msg_decode(bomb, BOMB, &m, NULL, 0), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    /* The same bomb of maps, inside an item. */
    bomb[0] = 0x81;
    bomb[1] = SV_F_ITEMS;
    bomb[2] = 0x91;
    bomb[3] = 0x81;
    bomb[4] = 0x63;
    for (size_t i = 5; i + 1 < BOMB; i += 2) {
        bomb[i] = 0x81;
        bomb[i + 1] = 0x01;
    }
    bomb[BOMB - 1] = 0xc0;
    CHECK_RC(sv_msg_decode(bomb, BOMB, &m, NULL, 0), SV_PROTO_E_MALFORMED);
    sv_msg_free(&m);
    free(bomb);
}

/* Random mutations of valid bodies: decoding never crashes, and what it
 * accepts encodes again and decodes to the same message. */
static void test_mutations(void)
{
    struct sv_item its[3];
    memset(its, 0, sizeof(its));
    its[0].fields = (uint32_t)((1ull << SV_I_COUNT_) - 1);
    its[0].key = its[0].addr = its[0].zone = its[0].state = its[0].role = bytes_of("node-1");
    its[0].n_replicas = 4;
    its[0].replicas[3] = 300;
    its[1].fields = 1u << SV_I_KEY | 1u << SV_I_SIZE;
    its[1].key = bytes_of("k");
    its[1].size = 1u << 30;
    uint8_t data[300];
    fill(data, sizeof(data), 11);
    struct sv_msg m;
    memset(&m, 0, sizeof(m));
    m.fields = (uint32_t)((1ull << SV_F_COUNT_) - 1);
    m.status = -2;
    m.bucket = bytes_of("bucket");
    m.key = bytes_of("a/key");
    m.msg = bytes_of("some message text");
    m.data = (struct sv_bytes){data, sizeof(data)};
    m.seq = 70000;
    m.version = 1ull << 33;
    m.items = its;
    m.n_items = 3;
    uint8_t *base = NULL;
    size_t base_len = 0;
    CHECK_RC(sv_msg_encode(&m, &base, &base_len), 0);
    if (base == NULL)
        return;
    rng_seed(20240601);
    int accepted = 0, rejected = 0;
    enum { ITERATIONS = 5000 };
    for (int iter = 0; iter < ITERATIONS; iter++) {
        size_t len = base_len;
        uint8_t *b = xmalloc(base_len + 16);
        memcpy(b, base, base_len);
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = len ? (size_t)(rng() % len) : 0;
            switch (rng() % 5) {
            case 0: /* flip a bit */
                if (len)
                    b[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1: /* a random byte */
                if (len)
                    b[at] = (uint8_t)rng();
                break;
            case 2: /* an interesting byte (a type byte or a large length) */
                if (len) {
                    static const uint8_t hot[] = {0xc1, 0xdd, 0xdf, 0xdb, 0xc6, 0xff,
                                                  0x00, 0x7f, 0x80, 0x9f, 0xcf, 0xd3};
                    b[at] = hot[rng() % sizeof(hot)];
                }
                break;
            case 3: /* truncate */
                len = at;
                break;
            default: /* delete one byte */
                if (len) {
                    memmove(b + at, b + at + 1, len - at - 1);
                    len--;
                }
                break;
            }
        }
        /* Decode from an exact-size copy so ASan catches over-reads. */
        uint8_t *exact = xmalloc(len);
        memcpy(exact, b, len);
        free(b);
        struct sv_msg out;
        char err[128];
        int rc = sv_msg_decode(exact, len, &out, err, sizeof(err));
        CHECK(rc == 0 || rc == SV_PROTO_E_MALFORMED || rc == SV_PROTO_E_TOO_BIG);
        if (rc == 0) {
            accepted++;
            uint8_t *again = NULL;
            size_t again_len = 0;
            CHECK_RC(sv_msg_encode(&out, &again, &again_len), 0);
            struct sv_msg back;
            CHECK_RC(sv_msg_decode(again, again_len, &back, NULL, 0), 0);
            CHECK(msg_eq(&out, &back));
            sv_msg_free(&back);
            free(again);
        } else {
            rejected++;
        }
        sv_msg_free(&out);
        free(exact);
    }
    /* The mutations exercise both sides. */
    CHECK(accepted > 0 && rejected > ITERATIONS / 2);
    free(base);
}

/* Checks: hashing and names. */

/* FNV-1a 64 by the book, over one buffer. */
static uint64_t ref_fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t ref_object_hash(uint64_t tenant, const char *bucket, size_t blen, const char *key,
                                size_t klen)
{
    uint8_t buf[8 + 64 + 1 + SV_MSG_NAME_MAX];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        buf[n++] = (uint8_t)(tenant >> (8 * i));
    memcpy(buf + n, bucket, blen);
    n += blen;
    buf[n++] = 0;
    memcpy(buf + n, key, klen);
    n += klen;
    return ref_fnv1a(buf, n);
}

static void test_hash(void)
{
    /* The reference loop itself against published FNV-1a 64 vectors. */
    CHECK(ref_fnv1a((const uint8_t *)"", 0) == 0xcbf29ce484222325ull);
    CHECK(ref_fnv1a((const uint8_t *)"a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(ref_fnv1a((const uint8_t *)"foobar", 6) == 0x85944171f73967e8ull);

    CHECK(sv_object_hash(0, "", 0, "", 0) == ref_object_hash(0, "", 0, "", 0));
    CHECK(sv_object_hash(0x0102030405060708ull, "photos", 6, "cat.jpg", 7) ==
          ref_object_hash(0x0102030405060708ull, "photos", 6, "cat.jpg", 7));
    /* The 0 byte separates bucket and key: "ab"+"c" differs from "a"+"bc". */
    CHECK(sv_object_hash(1, "ab", 2, "c", 1) != sv_object_hash(1, "a", 1, "bc", 2));
    CHECK(sv_object_hash(1, "b", 1, "k", 1) != sv_object_hash(2, "b", 1, "k", 1));
    rng_seed(77);
    for (int i = 0; i < 1000; i++) {
        char bucket[63], key[SV_MSG_NAME_MAX];
        size_t blen = 1 + rng() % sizeof(bucket), klen = 1 + rng() % sizeof(key);
        for (size_t k = 0; k < blen; k++)
            bucket[k] = (char)('a' + rng() % 26);
        for (size_t k = 0; k < klen; k++)
            key[k] = (char)(1 + rng() % 255);
        uint64_t tenant = rng();
        CHECK(sv_object_hash(tenant, bucket, blen, key, klen) ==
              ref_object_hash(tenant, bucket, blen, key, klen));
    }
}

/* MurmurHash3's 64-bit finalizer, written out from its definition. */
static uint64_t ref_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static void test_shard_of(void)
{
    /* Against a 128-bit reference on random hashes and shard counts. */
    rng_seed(5);
    for (int i = 0; i < 100000; i++) {
        uint64_t h = rng();
        uint32_t n = (uint32_t)(i % 3 == 0 ? 1 + rng() % 64 : 1 + rng() % UINT32_MAX);
        uint32_t want = (uint32_t)(((unsigned __int128)ref_fmix64(h) * n) >> 64);
        CHECK(sv_shard_of(h, n) == want);
    }
    CHECK(sv_shard_of(0, 16) == 0);
    CHECK(sv_shard_of(UINT64_MAX, 1) == 0);

    /* 100k keys spread over 16 shards within 10% of even: random ones, and
     * ones that differ only in their last characters (without the mix all of
     * "large-0".."large-9" fell in one shard). */
    enum { KEYS = 100000, SHARDS = 16 };
    uint32_t count[SHARDS] = {0};
    for (int i = 0; i < KEYS; i++) {
        char key[32];
        int klen = i % 2 ? snprintf(key, sizeof(key), "obj-%016llx", (unsigned long long)rng())
                         : snprintf(key, sizeof(key), "large-%d", i / 2);
        uint64_t h = sv_object_hash(7, "bucket", 6, key, (size_t)klen);
        uint32_t s = sv_shard_of(h, SHARDS);
        CHECK(s < SHARDS);
        if (s < SHARDS)
            count[s]++;
    }
    for (int s = 0; s < SHARDS; s++) {
        CHECK(count[s] >= KEYS / SHARDS * 9 / 10 && count[s] <= KEYS / SHARDS * 11 / 10);
        if (count[s] < KEYS / SHARDS * 9 / 10 || count[s] > KEYS / SHARDS * 11 / 10)
            fprintf(stderr, "  shard %d: %u keys\n", s, count[s]);
    }
}

static void test_names(void)
{
    static const char *const good[] = {
        "a",
        "0",
        "photos",
        "my-bucket.v2",
        "a.b",
        "9-9",
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0"};
    static const char *const bad[] = {
        "",    "-a",  "a-", ".a",
        "a.",  "A",   "aB", "a_b",
        "a b", "a/b", "é",  "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(sv_bucket_valid(good[i], strlen(good[i])));
        if (!sv_bucket_valid(good[i], strlen(good[i])))
            fprintf(stderr, "  good bucket \"%s\" refused\n", good[i]);
    }
    CHECK(strlen(good[6]) == 63 && strlen(bad[11]) == 64);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!sv_bucket_valid(bad[i], strlen(bad[i])));
        if (sv_bucket_valid(bad[i], strlen(bad[i])))
            fprintf(stderr, "  bad bucket \"%s\" accepted\n", bad[i]);
    }
    CHECK(!sv_bucket_valid("ab\0c", 4));
    CHECK(sv_bucket_valid("abc", 2)); /* only len bytes count */

    static char key[SV_MSG_NAME_MAX + 1];
    memset(key, 'k', sizeof(key));
    CHECK(sv_key_valid(key, 1));
    CHECK(sv_key_valid(key, SV_MSG_NAME_MAX));
    CHECK(!sv_key_valid(key, SV_MSG_NAME_MAX + 1));
    CHECK(!sv_key_valid(key, 0));
    CHECK(sv_key_valid("a/b c\xff\x01", 7));
    CHECK(!sv_key_valid("a\0b", 3));
    CHECK(!sv_key_valid("\0", 1));
}

static void test_strings(void)
{
    for (int e = SV_PROTO_E_MALFORMED; e < SV_PROTO_E_LAST_; e++) {
        const char *s = sv_proto_strerror(e);
        CHECK(strcmp(s, "unknown error") != 0 && s[0] != '\0');
        for (int f = SV_PROTO_E_MALFORMED; f < e; f++)
            CHECK(strcmp(s, sv_proto_strerror(f)) != 0);
    }
    CHECK(strcmp(sv_proto_strerror(0), "ok") == 0);
    CHECK(strcmp(sv_proto_strerror(-ENOMEM), strerror(ENOMEM)) == 0);
    CHECK(strcmp(sv_proto_strerror(12345), "unknown error") == 0);
    CHECK(strcmp(sv_proto_strerror(SV_PROTO_E_LAST_), "unknown error") == 0);
    for (int st = 0; st < SV_ST_LAST_; st++) {
        const char *s = sv_status_name(st);
        CHECK(s != NULL && strcmp(s, "unknown status") != 0);
        for (int o = 0; o < st; o++)
            CHECK(strcmp(s, sv_status_name(o)) != 0);
    }
    CHECK(strcmp(sv_status_name(SV_ST_OK), "ok") == 0);
    CHECK(strcmp(sv_status_name(SV_ST_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(sv_status_name(SV_ST_LAST_), "unknown status") == 0);
    CHECK(strcmp(sv_status_name(-1), "unknown status") == 0);
    for (int e = SV_MP_E_TRUNCATED; e < SV_MP_E_LAST_; e++)
        CHECK(strcmp(sv_mp_strerror(e), "unknown") != 0);
}

/* Runner. */

static const struct sv_test tests[] = {
    {"mp_uint_encodings", test_mp_uint_encodings},
    {"mp_int_encodings", test_mp_int_encodings},
    {"mp_bytes_and_headers", test_mp_bytes_and_headers},
    {"mp_skip", test_mp_skip},
    {"requests", test_requests},
    {"responses", test_responses},
    {"all_fields_limits", test_all_fields_limits},
    {"reject_truncated", test_reject_truncated},
    {"reject_wrong_type", test_reject_wrong_type},
    {"reject_duplicate", test_reject_duplicate},
    {"reject_limits", test_reject_limits},
    {"reject_forged_counts", test_reject_forged_counts},
    {"reject_trailing", test_reject_trailing},
    {"unknown_fields", test_unknown_fields},
    {"mutations", test_mutations},
    {"hash", test_hash},
    {"shard_of", test_shard_of},
    {"names", test_names},
    {"strings", test_strings},
};

const struct sv_test_suite sv_test_suite = {
    .name = "proto-test",
    SV_TEST_TABLE(tests),
    .timeout_s = 120,
};
