/* Wire frames: encoding with msgpack-c, and an incremental, bounded decoder. */
#include "wire.h"

#include <errno.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
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

static bool get_uint(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
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
    const char *payload = (const char *)p + SV_WIRE_PREFIX;

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&up, payload, n, &off);
    int rc = 0;
    if (ur != MSGPACK_UNPACK_SUCCESS) {
        rc = poison(d, SV_WIRE_E_MALFORMED, "payload of %u bytes is not one msgpack object", n);
        goto out;
    }
    if (off != n) {
        rc = poison(d, SV_WIRE_E_MALFORMED, "%zu trailing bytes after the frame", (size_t)n - off);
        goto out;
    }
    const msgpack_object *o = &up.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4) {
        rc = poison(d, SV_WIRE_E_MALFORMED, "frame is not a 4-element array");
        goto out;
    }
    const msgpack_object *e = o->via.array.ptr;
    uint64_t version, type, req_id;
    if (!get_uint(&e[0], &version) || !get_uint(&e[1], &type) || !get_uint(&e[2], &req_id) ||
        e[3].type != MSGPACK_OBJECT_BIN) {
        rc = poison(d, SV_WIRE_E_MALFORMED, "frame fields are not [uint, uint, uint, bin]");
        goto out;
    }
    if (version != SV_WIRE_VERSION) {
        rc = poison(d, SV_WIRE_E_VERSION, "protocol version %llu, this build speaks %d",
                    (unsigned long long)version, SV_WIRE_VERSION);
        goto out;
    }
    if (type > SV_WIRE_TYPE_MAX) {
        rc = poison(d, SV_WIRE_E_MALFORMED, "frame type %llu out of range",
                    (unsigned long long)type);
        goto out;
    }
    if (e[3].via.bin.size > SV_WIRE_BODY_MAX) {
        rc = poison(d, SV_WIRE_E_TOO_BIG, "body of %u bytes", e[3].via.bin.size);
        goto out;
    }
    f->version = (uint32_t)version;
    f->type = (uint32_t)type;
    f->req_id = req_id;
    /* msgpack-c references bin bodies in the input buffer: our buffer. */
    f->body = (const uint8_t *)e[3].via.bin.ptr;
    f->body_len = e[3].via.bin.size;
    if (f->body_len > 0 && (f->body < (const uint8_t *)payload ||
                            f->body + f->body_len > (const uint8_t *)payload + n)) {
        rc = poison(d, SV_WIRE_E_MALFORMED, "body not inside the frame");
        goto out;
    }
    d->consumed += SV_WIRE_PREFIX + n;
    rc = 1;
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}
