/* Wire frames: encoded with msgpack-c, decoded by a bounded incremental parser. */
#include "wire.h"

#include <errno.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frame header after the prefix, at most: fixarray, two uint32, a uint64 and
 * a bin32 length (1 + 5 + 5 + 9 + 5 bytes). */
enum { FRAME_HEADER_MAX = 32 };

_Static_assert((long)SV_WIRE_FRAME_MAX < (long)UINT32_MAX, "the prefix holds any frame length");
_Static_assert((long)SV_WIRE_BODY_MAX < (long)SV_WIRE_FRAME_MAX, "a frame holds any body");

const char *sv_wire_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SV_WIRE_E_TOO_BIG:
        return "frame too big";
    case SV_WIRE_E_MALFORMED:
        return "malformed frame";
    case SV_WIRE_E_VERSION:
        return "unsupported protocol version";
    default:
        return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
    }
}

int sv_wire_encode(uint32_t type, uint64_t req_id, const void *body, size_t body_len, uint8_t **out,
                   size_t *out_len)
{
    if (body_len > SV_WIRE_BODY_MAX)
        return SV_WIRE_E_TOO_BIG;
    if (type > SV_WIRE_TYPE_MAX)
        return SV_WIRE_E_MALFORMED;
    /* The whole frame in one exact allocation: growing sbuffer by doubling
     * reallocated a large body several times and left up to twice its size
     * allocated (fresh pages to fault in for every multi-MiB Raft append). */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sb.alloc = SV_WIRE_PREFIX + FRAME_HEADER_MAX + body_len;
    if (!(sb.data = malloc(sb.alloc)))
        return -ENOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static const char prefix[SV_WIRE_PREFIX];
    /* Every msgpack_* call below returns 0 or -1 when sbuffer's realloc fails. */
    if (msgpack_sbuffer_write(&sb, prefix, sizeof(prefix)) != 0 ||
        msgpack_pack_array(&pk, 4) != 0 || msgpack_pack_uint32(&pk, SV_WIRE_VERSION) != 0 ||
        msgpack_pack_uint32(&pk, type) != 0 || msgpack_pack_uint64(&pk, req_id) != 0 ||
        msgpack_pack_bin_with_body(&pk, body_len ? body : "", body_len) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return -ENOMEM;
    }
    uint32_t n = (uint32_t)(sb.size - SV_WIRE_PREFIX);
    uint8_t *p = (uint8_t *)sb.data;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    *out_len = sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&sb);
    return 0;
}

void sv_wire_decoder_init(struct sv_wire_decoder *d)
{
    memset(d, 0, sizeof(*d));
}

void sv_wire_decoder_free(struct sv_wire_decoder *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

static int poison(struct sv_wire_decoder *d, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->errmsg, sizeof(d->errmsg), fmt, ap);
    va_end(ap);
    d->error = err;
    return err;
}

static uint32_t prefix_len(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Refuse a declared length over the limit as soon as the prefix is here. */
static int check_prefix(struct sv_wire_decoder *d)
{
    if (d->len - d->consumed < SV_WIRE_PREFIX)
        return 0;
    uint32_t n = prefix_len(d->buf + d->consumed);
    if (n > SV_WIRE_FRAME_MAX)
        return poison(d, SV_WIRE_E_TOO_BIG, "frame of %u bytes, the limit is %u", n,
                      (unsigned)SV_WIRE_FRAME_MAX);
    return 0;
}

int sv_wire_feed(struct sv_wire_decoder *d, const void *data, size_t len)
{
    if (d->error != 0)
        return d->error;
    if (len > SV_WIRE_FEED_MAX)
        return poison(d, SV_WIRE_E_TOO_BIG, "%zu bytes fed at once, the limit is %u", len,
                      (unsigned)SV_WIRE_FEED_MAX);
    if (d->consumed > 0) { /* drop the frames already returned */
        memmove(d->buf, d->buf + d->consumed, d->len - d->consumed);
        d->len -= d->consumed;
        d->consumed = 0;
    }
    if (d->len + len > (size_t)SV_WIRE_HOLD_MAX)
        return poison(d, SV_WIRE_E_TOO_BIG, "%zu bytes waiting: frames are not being taken",
                      d->len + len);
    if (d->len + len > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap < d->len + len)
            cap *= 2;
        uint8_t *b = realloc(d->buf, cap);
        if (b == NULL)
            return -ENOMEM;
        d->buf = b;
        d->cap = cap;
    }
    if (len > 0)
        memcpy(d->buf + d->len, data, len);
    d->len += len;
    return check_prefix(d);
}

/* The frame's shape is fixed, so it is parsed by hand: msgpack-c's unpacker
 * allocates from the element counts an input declares before it can see they
 * are false (an array header claiming 2^32 elements), which a peer must not
 * be able to trigger. Bodies are decoded later, under their own limits. */
struct cursor {
    const uint8_t *p, *end;
};

static bool take(struct cursor *c, size_t n, const uint8_t **out)
{
    if ((size_t)(c->end - c->p) < n)
        return false;
    *out = c->p;
    c->p += n;
    return true;
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A msgpack unsigned integer (positive fixint, uint 8/16/32/64). */
static bool get_uint(struct cursor *c, uint64_t *v)
{
    const uint8_t *b, *x;
    if (!take(c, 1, &b))
        return false;
    size_t n;
    if (*b <= 0x7f) {
        *v = *b;
        return true;
    } else if (*b == 0xcc) {
        n = 1;
    } else if (*b == 0xcd) {
        n = 2;
    } else if (*b == 0xce) {
        n = 4;
    } else if (*b == 0xcf) {
        n = 8;
    } else {
        return false;
    }
    if (!take(c, n, &x))
        return false;
    *v = be(x, n);
    return true;
}

/* A msgpack bin 8/16/32, referenced in place. */
static bool get_bin(struct cursor *c, const uint8_t **data, size_t *len)
{
    const uint8_t *b, *x;
    if (!take(c, 1, &b))
        return false;
    size_t n = *b == 0xc4 ? 1 : *b == 0xc5 ? 2 : *b == 0xc6 ? 4 : 0;
    if (n == 0 || !take(c, n, &x))
        return false;
    *len = (size_t)be(x, n);
    return take(c, *len, data);
}

int sv_wire_next(struct sv_wire_decoder *d, struct sv_wire_frame *f)
{
    if (d->error != 0)
        return d->error;
    size_t avail = d->len - d->consumed;
    if (avail < SV_WIRE_PREFIX)
        return 0;
    const uint8_t *p = d->buf + d->consumed;
    uint32_t n = prefix_len(p);
    if (n > SV_WIRE_FRAME_MAX)
        return poison(d, SV_WIRE_E_TOO_BIG, "frame of %u bytes, the limit is %u", n,
                      (unsigned)SV_WIRE_FRAME_MAX);
    if (avail - SV_WIRE_PREFIX < n)
        return 0;
    struct cursor c = {p + SV_WIRE_PREFIX, p + SV_WIRE_PREFIX + n};
    const uint8_t *head;
    if (!take(&c, 1, &head))
        return poison(d, SV_WIRE_E_MALFORMED, "empty frame");
    if (*head != 0x94) /* fixarray of 4 */
        return poison(d, SV_WIRE_E_MALFORMED, "frame is not a 4-element array");
    uint64_t version, type, req_id;
    const uint8_t *body;
    size_t body_len;
    if (!get_uint(&c, &version) || !get_uint(&c, &type) || !get_uint(&c, &req_id) ||
        !get_bin(&c, &body, &body_len))
        return poison(d, SV_WIRE_E_MALFORMED,
                      "frame fields are not [uint, uint, uint, bin] within %u bytes", n);
    if (c.p != c.end)
        return poison(d, SV_WIRE_E_MALFORMED, "%zu trailing bytes after the frame",
                      (size_t)(c.end - c.p));
    if (version != SV_WIRE_VERSION)
        return poison(d, SV_WIRE_E_VERSION, "protocol version %llu, this build speaks %d",
                      (unsigned long long)version, SV_WIRE_VERSION);
    if (type > SV_WIRE_TYPE_MAX)
        return poison(d, SV_WIRE_E_MALFORMED, "frame type %llu out of range",
                      (unsigned long long)type);
    if (body_len > SV_WIRE_BODY_MAX)
        return poison(d, SV_WIRE_E_TOO_BIG, "body of %zu bytes", body_len);
    f->version = (uint32_t)version;
    f->type = (uint32_t)type;
    f->req_id = req_id;
    f->body = body;
    f->body_len = body_len;
    d->consumed += SV_WIRE_PREFIX + n;
    return 1;
}
