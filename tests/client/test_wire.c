/* wire-test: frame round trips, byte-at-a-time streams, and every kind of bad frame. */
#include "wire.h"

#include "check.h"

#include <errno.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *encode(uint32_t type, uint64_t id, const void *body, size_t len, size_t *out_len)
{
    uint8_t *out = NULL;
    int rc = sv_wire_encode(type, id, body, len, &out, out_len);
    if (rc != 0) {
        fprintf(stderr, "encode: %s\n", sv_wire_strerror(rc));
        exit(1);
    }
    return out;
}

/* Frame a raw msgpack payload with a length prefix (for hand-made bad frames). */
static size_t frame_raw(const msgpack_sbuffer *sb, uint8_t *out)
{
    uint32_t n = (uint32_t)sb->size;
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    if (sb->size > 0)
        memcpy(out + 4, sb->data, sb->size);
    return 4 + sb->size;
}

/* Feed buf whole and return what sv_wire_next says first. */
static int decode_one(const uint8_t *buf, size_t len, struct sv_wire_frame *f,
                      struct sv_wire_decoder *d)
{
    sv_wire_decoder_init(d);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < SV_WIRE_FEED_MAX ? len - off : SV_WIRE_FEED_MAX;
        int rc = sv_wire_feed(d, buf + off, n);
        if (rc != 0)
            return rc;
        off += n;
    }
    return sv_wire_next(d, f);
}

static void test_round_trips(void)
{
    static const size_t sizes[] = {0, 1, 100, 65536, SV_WIRE_BODY_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        uint8_t *body = malloc(n ? n : 1);
        for (size_t k = 0; k < n; k++)
            body[k] = (uint8_t)(k * 31 + 7);
        size_t len;
        uint8_t *buf = encode(42, 0xfedcba9876543210ull, body, n, &len);
        struct sv_wire_decoder d;
        struct sv_wire_frame f;
        int rc = decode_one(buf, len, &f, &d);
        CHECK_MSG(rc == 1 && f.version == SV_WIRE_VERSION && f.type == 42 &&
                      f.req_id == 0xfedcba9876543210ull && f.body_len == n &&
                      (n == 0 || memcmp(f.body, body, n) == 0),
                  "round trip of a %zu-byte body", n);
        CHECK_MSG(sv_wire_next(&d, &f) == 0, "nothing more after one %zu-byte frame", n);
        sv_wire_decoder_free(&d);
        free(buf);
        free(body);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    CHECK_MSG(sv_wire_encode(1, 1, "", SV_WIRE_BODY_MAX + 1, &out, &len) == SV_WIRE_E_TOO_BIG &&
                  out == NULL,
              "encoding an oversized body is refused");
    CHECK_MSG(sv_wire_encode(SV_WIRE_TYPE_MAX + 1, 1, "", 0, &out, &len) == SV_WIRE_E_MALFORMED,
              "encoding an out-of-range type is refused");
}

/* Many frames, fed one byte at a time and then in random slices. */
static void test_streams(void)
{
    enum { FRAMES = 200 };
    uint8_t *stream = NULL;
    size_t total = 0;
    for (uint32_t i = 0; i < FRAMES; i++) {
        char body[64];
        int bl = snprintf(body, sizeof(body), "body-%u", i);
        size_t len;
        uint8_t *buf = encode(i % 7, i, body, (size_t)bl, &len);
        stream = realloc(stream, total + len);
        memcpy(stream + total, buf, len);
        total += len;
        free(buf);
    }
    for (int mode = 0; mode < 2; mode++) {
        struct sv_wire_decoder d;
        sv_wire_decoder_init(&d);
        uint32_t got = 0;
        int bad = 0;
        uint64_t x = 12345;
        for (size_t off = 0; off < total;) {
            size_t step = 1;
            if (mode == 1) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                step = 1 + (size_t)(x >> 33) % 300;
            }
            if (step > total - off)
                step = total - off;
            if (sv_wire_feed(&d, stream + off, step) != 0)
                bad++;
            off += step;
            struct sv_wire_frame f;
            int rc;
            while ((rc = sv_wire_next(&d, &f)) == 1) {
                char want[64];
                int wl = snprintf(want, sizeof(want), "body-%u", got);
                if (f.req_id != got || f.type != got % 7 || f.body_len != (size_t)wl ||
                    memcmp(f.body, want, (size_t)wl) != 0)
                    bad++;
                got++;
            }
            if (rc < 0)
                bad++;
        }
        CHECK_MSG(got == FRAMES && bad == 0, "%s: %u of %d frames decoded in order, %d errors",
                  mode ? "random slices" : "one byte at a time", got, FRAMES, bad);
        sv_wire_decoder_free(&d);
    }
    free(stream);
}

/* Each hand-made bad frame is refused with the right error, and the decoder stays failed. */
static void expect_bad(const char *name, const uint8_t *buf, size_t len, int want)
{
    struct sv_wire_decoder d;
    struct sv_wire_frame f;
    int rc = decode_one(buf, len, &f, &d);
    int again = sv_wire_next(&d, &f);
    CHECK_MSG(rc == want && again == want && d.errmsg[0] != '\0', "%s: %s (%s)", name,
              sv_wire_strerror(rc), d.errmsg);
    sv_wire_decoder_free(&d);
}

static void test_bad_frames(void)
{
    static uint8_t buf[1 << 12];
    msgpack_sbuffer sb;
    msgpack_packer pk;

    /* A declared length over the limit is refused from the prefix alone. */
    uint8_t big[4] = {0x7f, 0xff, 0xff, 0xff};
    expect_bad("oversized length prefix", big, sizeof(big), SV_WIRE_E_TOO_BIG);

    struct {
        const char *name;
        int want;
        int shape;
    } cases[] = {
        {"not msgpack at all", SV_WIRE_E_MALFORMED, 0},
        {"a map instead of an array", SV_WIRE_E_MALFORMED, 1},
        {"an array of three", SV_WIRE_E_MALFORMED, 2},
        {"a negative request id", SV_WIRE_E_MALFORMED, 3},
        {"a string body", SV_WIRE_E_MALFORMED, 4},
        {"version 2", SV_WIRE_E_VERSION, 5},
        {"type out of range", SV_WIRE_E_MALFORMED, 6},
        {"trailing bytes inside the frame", SV_WIRE_E_MALFORMED, 7},
        {"empty payload", SV_WIRE_E_MALFORMED, 8},
        {"a field claiming 4 billion elements", SV_WIRE_E_MALFORMED, 9},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        switch (cases[i].shape) {
        case 0:
            msgpack_sbuffer_write(&sb, "\xc1\xc1\xc1", 3); /* 0xc1 is never used */
            break;
        case 1:
            msgpack_pack_map(&pk, 1);
            msgpack_pack_uint32(&pk, 1);
            msgpack_pack_uint32(&pk, 1);
            break;
        case 2:
            msgpack_pack_array(&pk, 3);
            msgpack_pack_uint32(&pk, 1);
            msgpack_pack_uint32(&pk, 1);
            msgpack_pack_uint32(&pk, 1);
            break;
        case 3:
        case 4:
        case 5:
        case 6:
        case 7:
            msgpack_pack_array(&pk, 4);
            msgpack_pack_uint32(&pk, cases[i].shape == 5 ? 2 : SV_WIRE_VERSION);
            msgpack_pack_uint32(&pk, cases[i].shape == 6 ? SV_WIRE_TYPE_MAX + 1 : 1);
            if (cases[i].shape == 3)
                msgpack_pack_int64(&pk, -5);
            else
                msgpack_pack_uint64(&pk, 9);
            if (cases[i].shape == 4)
                msgpack_pack_str_with_body(&pk, "abc", 3);
            else
                msgpack_pack_bin_with_body(&pk, "abc", 3);
            if (cases[i].shape == 7)
                msgpack_pack_nil(&pk);
            break;
        case 9: /* must be refused without allocating for the claimed count */
            msgpack_sbuffer_write(&sb, "\x94\xdd\xff\xff\xff\xff", 6);
            break;
        default:
            break;
        }
        size_t len = frame_raw(&sb, buf);
        expect_bad(cases[i].name, buf, len, cases[i].want);
        msgpack_sbuffer_destroy(&sb);
    }

    /* A peer that never lets frames be taken cannot make the decoder grow without bound. */
    struct sv_wire_decoder d;
    sv_wire_decoder_init(&d);
    static uint8_t chunk[SV_WIRE_FEED_MAX];
    int rc = 0, feeds = 0;
    memset(chunk, 0, sizeof(chunk));
    chunk[0] = (uint8_t)(SV_WIRE_FRAME_MAX >> 24); /* one legal, maximal frame's prefix */
    chunk[1] = (uint8_t)(SV_WIRE_FRAME_MAX >> 16);
    chunk[2] = (uint8_t)(SV_WIRE_FRAME_MAX >> 8);
    chunk[3] = (uint8_t)SV_WIRE_FRAME_MAX;
    while (rc == 0 && feeds < 100) {
        rc = sv_wire_feed(&d, chunk, sizeof(chunk));
        feeds++;
        memset(chunk, 0, 4);
    }
    CHECK_MSG(rc == SV_WIRE_E_TOO_BIG && d.len <= SV_WIRE_HOLD_MAX,
              "undrained stream stops at %zu held bytes after %d feeds: %s", d.len, feeds,
              d.errmsg);
    sv_wire_decoder_free(&d);
    CHECK_MSG(sv_wire_feed(&d, chunk, SV_WIRE_FEED_MAX + 1) == SV_WIRE_E_TOO_BIG,
              "a feed over SV_WIRE_FEED_MAX is refused");
    sv_wire_decoder_free(&d);
    CHECK_MSG(strcmp(sv_wire_strerror(-ENOMEM), strerror(ENOMEM)) == 0 &&
                  strcmp(sv_wire_strerror(12345), "unknown error") == 0,
              "strerror covers errno values and unknown codes");
}

/* Random and mutated input never crashes (run under ASan) and never yields a
 * frame that was not encoded. */
static void test_fuzz(void)
{
    uint64_t x = 99;
    size_t len;
    uint8_t *good = encode(3, 77, "hello, frame", 12, &len);
    int frames = 0, errors = 0, wrong = 0;
    for (int i = 0; i < 20000; i++) {
        uint8_t buf[64];
        size_t n = len < sizeof(buf) ? len : sizeof(buf);
        memcpy(buf, good, n);
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int flips = 1 + (int)((x >> 60) & 3);
        for (int k = 0; k < flips; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            buf[(x >> 33) % n] ^= (uint8_t)(1u << ((x >> 20) & 7));
        }
        if (i % 2 == 0) /* keep the prefix sane half the time to reach the msgpack parser */
            memcpy(buf, good, 4);
        struct sv_wire_decoder d;
        struct sv_wire_frame f;
        int rc = decode_one(buf, n, &f, &d);
        if (rc == 1) {
            frames++;
            if (f.version != SV_WIRE_VERSION || f.body_len > n)
                wrong++;
        } else if (rc < 0) {
            errors++;
        }
        sv_wire_decoder_free(&d);
    }
    free(good);
    CHECK_MSG(wrong == 0 && errors > 0,
              "20000 mutated frames: %d decoded (all well-formed), %d refused, none wrong", frames,
              errors);
}

static const struct sv_test tests[] = {
    {"round_trips", test_round_trips},
    {"streams", test_streams},
    {"bad_frames", test_bad_frames},
    {"fuzz", test_fuzz},
};

const struct sv_test_suite sv_test_suite = {
    .name = "wire-test",
    SV_TEST_TABLE(tests),
};
