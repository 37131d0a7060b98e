/* Bounded msgpack: smallest-encoding writer and an in-place reader that checks
 * every length and count against the bytes that remain. */
#include "mp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Programmer errors crash, in release builds too (STYLE.md rule 8). */
#define MP_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

const char *sv_mp_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SV_MP_E_TRUNCATED:
        return "truncated value";
    case SV_MP_E_TYPE:
        return "unexpected type";
    case SV_MP_E_COUNT:
        return "count larger than the remaining bytes";
    case SV_MP_E_DEPTH:
        return "nesting too deep";
    default:
        return "unknown";
    }
}

/* ---- writer ------------------------------------------------------------ */

void sv_mp_writer_init(struct sv_mp_writer *w)
{
    memset(w, 0, sizeof(*w));
}

void sv_mp_writer_init_counting(struct sv_mp_writer *w)
{
    memset(w, 0, sizeof(*w));
    w->counting = true;
}

int sv_mp_writer_reserve(struct sv_mp_writer *w, size_t n)
{
    if (w->err != 0)
        return w->err;
    if (w->counting || w->cap - w->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - w->len) {
        w->err = -ENOMEM;
        return w->err;
    }
    size_t cap = w->cap ? w->cap : 64;
    while (cap < w->len + n)
        cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (b == NULL) {
        w->err = -ENOMEM;
        return w->err;
    }
    w->buf = b;
    w->cap = cap;
    return 0;
}

int sv_mp_writer_take(struct sv_mp_writer *w, uint8_t **out, size_t *out_len)
{
    MP_ASSERT(!w->counting);
    if (w->err == 0 && w->buf == NULL)
        sv_mp_writer_reserve(w, 1);
    if (w->err != 0) {
        int err = w->err;
        sv_mp_writer_free(w);
        return err;
    }
    *out = w->buf;
    *out_len = w->len;
    memset(w, 0, sizeof(*w));
    return 0;
}

void sv_mp_writer_free(struct sv_mp_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

static int put_raw(struct sv_mp_writer *w, const void *p, size_t n)
{
    if (w->err != 0)
        return w->err;
    if (w->counting) {
        w->len += n;
        return 0;
    }
    if (sv_mp_writer_reserve(w, n) != 0)
        return w->err;
    if (n > 0)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

/* A type byte followed by v as an n-byte big-endian number. */
static int put_head(struct sv_mp_writer *w, uint8_t type, uint64_t v, int n)
{
    uint8_t b[9];
    b[0] = type;
    for (int i = 0; i < n; i++)
        b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return put_raw(w, b, (size_t)n + 1);
}

int sv_mp_put_uint(struct sv_mp_writer *w, uint64_t v)
{
    if (v <= 0x7f)
        return put_head(w, (uint8_t)v, 0, 0);
    if (v <= UINT8_MAX)
        return put_head(w, 0xcc, v, 1);
    if (v <= UINT16_MAX)
        return put_head(w, 0xcd, v, 2);
    if (v <= UINT32_MAX)
        return put_head(w, 0xce, v, 4);
    return put_head(w, 0xcf, v, 8);
}

int sv_mp_put_int(struct sv_mp_writer *w, int64_t v)
{
    if (v >= 0)
        return sv_mp_put_uint(w, (uint64_t)v);
    if (v >= -32)
        return put_head(w, (uint8_t)(0xe0 | (uint8_t)(v + 32)), 0, 0);
    if (v >= INT8_MIN)
        return put_head(w, 0xd0, (uint64_t)v, 1);
    if (v >= INT16_MIN)
        return put_head(w, 0xd1, (uint64_t)v, 2);
    if (v >= INT32_MIN)
        return put_head(w, 0xd2, (uint64_t)v, 4);
    return put_head(w, 0xd3, (uint64_t)v, 8);
}

int sv_mp_put_bool(struct sv_mp_writer *w, bool v)
{
    return put_head(w, v ? 0xc3 : 0xc2, 0, 0);
}

int sv_mp_put_nil(struct sv_mp_writer *w)
{
    return put_head(w, 0xc0, 0, 0);
}

int sv_mp_put_str(struct sv_mp_writer *w, const void *p, size_t len)
{
    MP_ASSERT(len <= UINT32_MAX && (p != NULL || len == 0));
    int rc;
    if (len <= 31)
        rc = put_head(w, (uint8_t)(0xa0 | len), 0, 0);
    else if (len <= UINT8_MAX)
        rc = put_head(w, 0xd9, len, 1);
    else if (len <= UINT16_MAX)
        rc = put_head(w, 0xda, len, 2);
    else
        rc = put_head(w, 0xdb, len, 4);
    return rc != 0 ? rc : put_raw(w, p, len);
}

int sv_mp_put_bin(struct sv_mp_writer *w, const void *p, size_t len)
{
    MP_ASSERT(len <= UINT32_MAX && (p != NULL || len == 0));
    int rc;
    if (len <= UINT8_MAX)
        rc = put_head(w, 0xc4, len, 1);
    else if (len <= UINT16_MAX)
        rc = put_head(w, 0xc5, len, 2);
    else
        rc = put_head(w, 0xc6, len, 4);
    return rc != 0 ? rc : put_raw(w, p, len);
}

int sv_mp_put_array(struct sv_mp_writer *w, uint32_t n)
{
    if (n <= 15)
        return put_head(w, (uint8_t)(0x90 | n), 0, 0);
    if (n <= UINT16_MAX)
        return put_head(w, 0xdc, n, 2);
    return put_head(w, 0xdd, n, 4);
}

int sv_mp_put_map(struct sv_mp_writer *w, uint32_t n)
{
    if (n <= 15)
        return put_head(w, (uint8_t)(0x80 | n), 0, 0);
    if (n <= UINT16_MAX)
        return put_head(w, 0xde, n, 2);
    return put_head(w, 0xdf, n, 4);
}

/* ---- reader ------------------------------------------------------------ */

void sv_mp_reader_init(struct sv_mp_reader *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
}

size_t sv_mp_remaining(const struct sv_mp_reader *r)
{
    return r->len - r->pos;
}

enum kind { K_UINT, K_NINT, K_NIL, K_BOOL, K_FLOAT, K_STR, K_BIN, K_EXT, K_ARRAY, K_MAP };

/* The header of the next value, not consumed. For K_FLOAT, K_STR, K_BIN and
 * K_EXT, n payload bytes follow the hdr header bytes (not checked here); for
 * K_ARRAY and K_MAP, n is the element or pair count. */
struct head {
    enum kind kind;
    size_t hdr;
    uint64_t u; /* K_UINT value, K_NINT value as two's complement, K_BOOL */
    uint64_t n;
};

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Sign-extend an n-byte two's complement value. */
static int64_t sext(uint64_t v, size_t n)
{
    if (n == 8)
        return (int64_t)v;
    uint64_t sign = (uint64_t)1 << (8 * n - 1);
    return (int64_t)((v ^ sign) - sign);
}

static int parse_head(const struct sv_mp_reader *r, struct head *h)
{
    size_t left = r->len - r->pos;
    if (left < 1)
        return SV_MP_E_TRUNCATED;
    const uint8_t *p = r->p + r->pos;
    uint8_t b = p[0];
    memset(h, 0, sizeof(*h));
    h->hdr = 1;
    if (b <= 0x7f) {
        h->kind = K_UINT;
        h->u = b;
        return 0;
    }
    if (b >= 0xe0) {
        h->kind = K_NINT;
        h->u = (uint64_t)(int64_t)(int8_t)b;
        return 0;
    }
    if (b <= 0x8f) {
        h->kind = K_MAP;
        h->n = b & 0x0f;
        return 0;
    }
    if (b <= 0x9f) {
        h->kind = K_ARRAY;
        h->n = b & 0x0f;
        return 0;
    }
    if (b <= 0xbf) {
        h->kind = K_STR;
        h->n = b & 0x1f;
        return 0;
    }
    /* 0xc0..0xdf: the length or value width follows the type byte. */
    size_t w;
    switch (b) {
    case 0xc0:
        h->kind = K_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        h->kind = K_BOOL;
        h->u = b == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        h->kind = K_BIN;
        w = (size_t)1 << (b - 0xc4);
        break;
    case 0xc7:
    case 0xc8:
    case 0xc9: /* ext 8/16/32: length, then a type byte */
        h->kind = K_EXT;
        w = (size_t)1 << (b - 0xc7);
        break;
    case 0xca:
    case 0xcb:
        h->kind = K_FLOAT;
        h->n = b == 0xca ? 4 : 8;
        return 0;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        h->kind = K_UINT;
        w = (size_t)1 << (b - 0xcc);
        break;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        h->kind = K_NINT; /* corrected below for values >= 0 */
        w = (size_t)1 << (b - 0xd0);
        break;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: /* fixext 1..16: a type byte and the data */
        h->kind = K_EXT;
        h->n = 1 + ((uint64_t)1 << (b - 0xd4));
        return 0;
    case 0xd9:
    case 0xda:
    case 0xdb:
        h->kind = K_STR;
        w = (size_t)1 << (b - 0xd9);
        break;
    case 0xdc:
    case 0xdd:
        h->kind = K_ARRAY;
        w = b == 0xdc ? 2 : 4;
        break;
    case 0xde:
    case 0xdf:
        h->kind = K_MAP;
        w = b == 0xde ? 2 : 4;
        break;
    default: /* 0xc1: never used */
        return SV_MP_E_TYPE;
    }
    if (left - 1 < w)
        return SV_MP_E_TRUNCATED;
    uint64_t v = be(p + 1, w);
    h->hdr = 1 + w;
    if (h->kind == K_UINT) {
        h->u = v;
    } else if (h->kind == K_NINT) {
        int64_t s = sext(v, w);
        h->u = (uint64_t)s;
        if (s >= 0)
            h->kind = K_UINT;
    } else if (h->kind == K_EXT) {
        h->n = v + 1;
    } else {
        h->n = v;
    }
    return 0;
}

/* Header of the expected kind, with payload or count checked. */
static int expect(const struct sv_mp_reader *r, enum kind kind, struct head *h)
{
    int rc = parse_head(r, h);
    if (rc != 0)
        return rc;
    if (h->kind != kind)
        return SV_MP_E_TYPE;
    uint64_t left = r->len - r->pos - h->hdr;
    if ((kind == K_STR || kind == K_BIN) && h->n > left)
        return SV_MP_E_TRUNCATED;
    if ((kind == K_ARRAY && h->n > left) || (kind == K_MAP && h->n > left / 2))
        return SV_MP_E_COUNT;
    return 0;
}

int sv_mp_read_uint(struct sv_mp_reader *r, uint64_t *v)
{
    struct head h;
    int rc = expect(r, K_UINT, &h);
    if (rc != 0)
        return rc;
    r->pos += h.hdr;
    *v = h.u;
    return 0;
}

int sv_mp_read_int(struct sv_mp_reader *r, int64_t *v)
{
    struct head h;
    int rc = parse_head(r, &h);
    if (rc != 0)
        return rc;
    if (h.kind != K_NINT && (h.kind != K_UINT || h.u > (uint64_t)INT64_MAX))
        return SV_MP_E_TYPE;
    r->pos += h.hdr;
    *v = (int64_t)h.u;
    return 0;
}

int sv_mp_read_bool(struct sv_mp_reader *r, bool *v)
{
    struct head h;
    int rc = expect(r, K_BOOL, &h);
    if (rc != 0)
        return rc;
    r->pos += h.hdr;
    *v = h.u != 0;
    return 0;
}

int sv_mp_read_nil(struct sv_mp_reader *r)
{
    struct head h;
    int rc = expect(r, K_NIL, &h);
    if (rc != 0)
        return rc;
    r->pos += h.hdr;
    return 0;
}

static int read_bytes(struct sv_mp_reader *r, enum kind kind, const uint8_t **data, size_t *len)
{
    struct head h;
    int rc = expect(r, kind, &h);
    if (rc != 0)
        return rc;
    r->pos += h.hdr;
    *data = r->p + r->pos;
    *len = (size_t)h.n;
    r->pos += (size_t)h.n;
    return 0;
}

int sv_mp_read_str(struct sv_mp_reader *r, const uint8_t **data, size_t *len)
{
    return read_bytes(r, K_STR, data, len);
}

int sv_mp_read_bin(struct sv_mp_reader *r, const uint8_t **data, size_t *len)
{
    return read_bytes(r, K_BIN, data, len);
}

static int read_count(struct sv_mp_reader *r, enum kind kind, uint32_t *n)
{
    struct head h;
    int rc = expect(r, kind, &h);
    if (rc != 0)
        return rc;
    r->pos += h.hdr;
    *n = (uint32_t)h.n;
    return 0;
}

int sv_mp_read_array(struct sv_mp_reader *r, uint32_t *n)
{
    return read_count(r, K_ARRAY, n);
}

int sv_mp_read_map(struct sv_mp_reader *r, uint32_t *n)
{
    return read_count(r, K_MAP, n);
}

static int skip_value(struct sv_mp_reader *r, int depth)
{
    struct head h;
    int rc = parse_head(r, &h);
    if (rc != 0)
        return rc;
    switch (h.kind) {
    case K_ARRAY:
    case K_MAP: {
        if (depth >= SV_MP_DEPTH_MAX)
            return SV_MP_E_DEPTH;
        rc = expect(r, h.kind, &h);
        if (rc != 0)
            return rc;
        r->pos += h.hdr;
        uint64_t n = h.kind == K_MAP ? 2 * h.n : h.n;
        for (uint64_t i = 0; i < n; i++) {
            rc = skip_value(r, depth + 1);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case K_FLOAT:
    case K_STR:
    case K_BIN:
    case K_EXT:
        if (h.n > r->len - r->pos - h.hdr)
            return SV_MP_E_TRUNCATED;
        r->pos += h.hdr + (size_t)h.n;
        return 0;
    default:
        r->pos += h.hdr;
        return 0;
    }
}

int sv_mp_skip(struct sv_mp_reader *r)
{
    return skip_value(r, 0);
}
