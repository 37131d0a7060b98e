/* ShardVault wire frames: length-prefixed msgpack, shared by the client and the node.
 *
 * On the wire a frame is a 4-byte big-endian length N followed by N bytes of
 * msgpack: an array of exactly four elements
 *     [version (uint), type (uint), request id (uint), body (bin)]
 * The body is opaque here: each message type encodes its own msgpack inside
 * it. A frame longer than SV_WIRE_FRAME_MAX, a payload that is not exactly
 * that array, or another version is an error that poisons the decoder: the
 * connection it belongs to must be closed (and only that one).
 */
#ifndef SV_WIRE_H
#define SV_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SV_WIRE_VERSION = 1,
    SV_WIRE_PREFIX = 4,                       /* length prefix bytes */
    SV_WIRE_OVERHEAD_MAX = 32,                /* array, version, type, id and bin headers */
    SV_WIRE_BODY_MAX = (1 << 20) + 64 * 1024, /* one encrypted 1 MiB chunk and its metadata */
    SV_WIRE_FRAME_MAX = SV_WIRE_BODY_MAX + SV_WIRE_OVERHEAD_MAX, /* payload after the prefix */
    SV_WIRE_TYPE_MAX = 0xffff,
    SV_WIRE_FEED_MAX = 1 << 20, /* bytes per sv_wire_feed call */
    /* Bytes a decoder may hold: one incomplete frame plus one feed. */
    SV_WIRE_HOLD_MAX = SV_WIRE_PREFIX + SV_WIRE_FRAME_MAX + SV_WIRE_FEED_MAX,
};

/* Domain errors (negative): -2300 .. -2251, svwire's range of the node's
 * error space (node/src/errors.h); system errors are negative errno values. */
enum sv_wire_err {
    SV_WIRE_E_TOO_BIG = -2300, /* frame or body over its *_MAX */
    SV_WIRE_E_MALFORMED,       /* payload is not [version, type, id, body] msgpack */
    SV_WIRE_E_VERSION,         /* a version this build does not speak */
    SV_WIRE_E_LAST_
};

/* Static string for an error code (wire errors and negative errno). */
const char *sv_wire_strerror(int err);

/* A decoded frame. body points into the decoder's buffer and stays valid
 * until the next sv_wire_feed or sv_wire_next call on that decoder. */
struct sv_wire_frame {
    uint32_t version;
    uint32_t type;
    uint64_t req_id;
    const uint8_t *body;
    size_t body_len;
};

/* Encode one frame into a new malloc'ed buffer (*out, *out_len; the caller
 * frees it with free()). Returns 0, SV_WIRE_E_TOO_BIG, SV_WIRE_E_MALFORMED
 * for a type over SV_WIRE_TYPE_MAX, or -ENOMEM. */
int sv_wire_encode(uint32_t type, uint64_t req_id, const void *body, size_t body_len, uint8_t **out,
                   size_t *out_len);

/* Incremental decoder for one byte stream (one connection). */
struct sv_wire_decoder {
    uint8_t *buf;
    size_t len; /* bytes held */
    size_t cap;
    size_t consumed; /* bytes of buf already returned as frames */
    int error;       /* first error, sticky */
    char errmsg[128];
};

void sv_wire_decoder_init(struct sv_wire_decoder *d);
/* Free the decoder's buffer; d may be reused after sv_wire_decoder_init. */
void sv_wire_decoder_free(struct sv_wire_decoder *d);

/* Append received bytes (copied; at most SV_WIRE_FEED_MAX per call). Take
 * every complete frame with sv_wire_next before feeding again: the decoder
 * holds at most one incomplete frame plus one feed, and refuses a declared
 * length over SV_WIRE_FRAME_MAX as soon as its prefix arrives. Returns 0,
 * -ENOMEM, or the sticky error (d->errmsg says why). */
int sv_wire_feed(struct sv_wire_decoder *d, const void *data, size_t len);

/* Take the next complete frame: returns 1 and fills *f, 0 when more bytes
 * are needed, or a negative error (sticky; d->errmsg says why). */
int sv_wire_next(struct sv_wire_decoder *d, struct sv_wire_frame *f);

#endif
