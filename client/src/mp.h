/* A tiny msgpack writer (smallest encodings, growing malloc'd buffer) and a
 * bounded reader that never trusts a declared length or count.
 *
 * Why not msgpack-c's unpacker: it allocates from the element counts an input
 * declares before it can see that they are false, which a peer must not be
 * able to trigger. The reader here works in place over (p, len): strings and
 * binaries are returned as pointers into the input, and array and map headers
 * are refused when their count cannot fit in the bytes that remain (every
 * element takes at least one byte), so a caller may allocate `count` elements
 * after a successful header read without trusting the peer.
 */
#ifndef SV_MP_H
#define SV_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SV_MP_DEPTH_MAX = 32, /* nesting of arrays and maps that sv_mp_skip accepts */
};

/* Reader errors (negative): -2150 .. -2101, mp's range of the node's error
 * space (node/src/errors.h). They stay inside the codecs built on this file,
 * which map them onto their own error codes. */
enum sv_mp_err {
    SV_MP_E_TRUNCATED = -2150, /* the value runs past the end of the input */
    SV_MP_E_TYPE,              /* a value of another type (or a reserved byte) */
    SV_MP_E_COUNT,             /* an array/map count larger than the bytes that remain */
    SV_MP_E_DEPTH,             /* nesting deeper than SV_MP_DEPTH_MAX */
    SV_MP_E_LAST_
};
/* Static string for a reader error ("unknown" otherwise). */
const char *sv_mp_strerror(int err);

/* ---- writer ------------------------------------------------------------ */

/* A growing buffer. Errors are sticky: after a failed allocation every put
 * is a no-op returning the error, so a sequence of puts needs one check.
 * A counting writer stores nothing and only adds up the length, so an
 * encoder can size its output with the very code that writes it. */
struct sv_mp_writer {
    uint8_t *buf;
    size_t len;
    size_t cap;
    bool counting;
    int err; /* 0 or -ENOMEM */
};

/* An empty writer (no allocation yet). */
void sv_mp_writer_init(struct sv_mp_writer *w);
/* A writer that only counts bytes (w->len). */
void sv_mp_writer_init_counting(struct sv_mp_writer *w);
/* Make room for n more bytes at once (avoids regrowth when the size is
 * known). Returns 0 or -ENOMEM (sticky). */
int sv_mp_writer_reserve(struct sv_mp_writer *w, size_t n);
/* Move the buffer to the caller (*out, *out_len; free() it) and reset w.
 * On a sticky error frees the buffer and returns the error. A writer with no
 * bytes still gives a non-NULL buffer. Not for counting writers. */
int sv_mp_writer_take(struct sv_mp_writer *w, uint8_t **out, size_t *out_len);
/* Free the buffer (if any) and reset w. */
void sv_mp_writer_free(struct sv_mp_writer *w);

/* Each put appends one value in its smallest msgpack encoding and returns 0
 * or -ENOMEM (sticky). put_str/put_bin copy len bytes of p (p may be NULL
 * when len is 0) with a single memcpy; a length over UINT32_MAX is a
 * programmer error (abort). */
int sv_mp_put_uint(struct sv_mp_writer *w, uint64_t v);
int sv_mp_put_int(struct sv_mp_writer *w, int64_t v);
int sv_mp_put_bool(struct sv_mp_writer *w, bool v);
int sv_mp_put_nil(struct sv_mp_writer *w);
int sv_mp_put_str(struct sv_mp_writer *w, const void *p, size_t len);
int sv_mp_put_bin(struct sv_mp_writer *w, const void *p, size_t len);
int sv_mp_put_array(struct sv_mp_writer *w, uint32_t n);
int sv_mp_put_map(struct sv_mp_writer *w, uint32_t n);

/* ---- reader ------------------------------------------------------------ */

/* A cursor over p[0..len): pos is the next byte to read. */
struct sv_mp_reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

void sv_mp_reader_init(struct sv_mp_reader *r, const void *p, size_t len);
/* Bytes not read yet. */
size_t sv_mp_remaining(const struct sv_mp_reader *r);

/* Each read takes one value of the named type and returns 0, or
 * SV_MP_E_TRUNCATED / SV_MP_E_TYPE / SV_MP_E_COUNT and leaves the cursor
 * where it was. Outputs are written only on success.
 * read_uint: any integer encoding with a value >= 0.
 * read_int: any integer encoding with a value in the int64_t range.
 * read_str / read_bin: *data points into the input (borrowed), *len bytes;
 *   *data is never NULL, even for an empty value.
 * read_array / read_map: the header only; *n elements (pairs for a map)
 *   follow, and *n (2 * *n for a map) is at most the bytes that remain. */
int sv_mp_read_uint(struct sv_mp_reader *r, uint64_t *v);
int sv_mp_read_int(struct sv_mp_reader *r, int64_t *v);
int sv_mp_read_bool(struct sv_mp_reader *r, bool *v);
int sv_mp_read_nil(struct sv_mp_reader *r);
int sv_mp_read_str(struct sv_mp_reader *r, const uint8_t **data, size_t *len);
int sv_mp_read_bin(struct sv_mp_reader *r, const uint8_t **data, size_t *len);
int sv_mp_read_array(struct sv_mp_reader *r, uint32_t *n);
int sv_mp_read_map(struct sv_mp_reader *r, uint32_t *n);

/* Skip one value of any type, containers included, nested at most
 * SV_MP_DEPTH_MAX deep. Returns 0 or an SV_MP_E_* error (the cursor is then
 * unspecified: the caller gives up on the input). Work is linear in the bytes
 * skipped. */
int sv_mp_skip(struct sv_mp_reader *r);

#endif
