/* Message bodies (proto.h): field-id maps encoded and decoded from two
 * tables of field descriptions, with the bounded reader of mp.h. */
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"

_Static_assert(SV_F_COUNT_ <= 32, "sv_msg.fields has a bit per field");
_Static_assert(SV_I_COUNT_ <= 32, "sv_item.fields has a bit per field");
_Static_assert((long)SV_MSG_DATA_MAX <= (long)UINT32_MAX, "a bin holds any DATA");

/* Programmer errors crash, in release builds too (STYLE.md rule 8). */
#define PROTO_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

const char *sv_status_name(int status)
{
    static const char *const names[] = {
        [SV_ST_OK] = "ok",
        [SV_ST_NOT_FOUND] = "not found",
        [SV_ST_VERSION_CONFLICT] = "version conflict",
        [SV_ST_NOT_LEADER] = "not leader",
        [SV_ST_UNAVAILABLE] = "unavailable",
        [SV_ST_BAD_REQUEST] = "bad request",
        [SV_ST_TOO_BIG] = "too big",
        [SV_ST_DENIED] = "denied",
        [SV_ST_NO_SPACE] = "no space",
        [SV_ST_INTERNAL] = "internal error",
        [SV_ST_CORRUPT] = "corrupt",
        [SV_ST_READ_ONLY] = "read only",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == SV_ST_LAST_, "a name per status");
    if (status < 0 || status >= SV_ST_LAST_)
        return "unknown status";
    return names[status];
}

const char *sv_proto_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SV_PROTO_E_MALFORMED:
        return "malformed message";
    case SV_PROTO_E_TOO_BIG:
        return "message field over its limit";
    case SV_PROTO_E_NOMEM:
        return "out of memory";
    default:
        /* errno values are small; domain codes start at -1000 (raft.h). */
        return err < 0 && err > -1000 ? strerror(-err) : "unknown error";
    }
}

/* ---- field tables ------------------------------------------------------ */

enum kind {
    KIND_NONE = 0, /* an id this build does not know */
    KIND_UINT,     /* uint64_t */
    KIND_INT,      /* int64_t */
    KIND_STR,      /* struct sv_bytes, msgpack str, at most max bytes */
    KIND_BIN,      /* struct sv_bytes, msgpack bin, at most max bytes */
    KIND_SHA256,   /* uint8_t[32], msgpack bin of exactly 32 bytes */
    KIND_ITEMS,    /* sv_msg.items / n_items */
    KIND_REPLICAS, /* sv_item.replicas / n_replicas */
};

struct field {
    enum kind kind;
    uint32_t max;
    size_t off; /* of the value in struct sv_msg or struct sv_item */
    const char *name;
};

#define MF(id, k, mx, member) [id] = {k, mx, offsetof(struct sv_msg, member), #member}
static const struct field msg_fields[SV_F_COUNT_] = {
    MF(SV_F_STATUS, KIND_INT, 0, status),
    MF(SV_F_MSG, KIND_STR, SV_MSG_TEXT_MAX, msg),
    MF(SV_F_TENANT, KIND_UINT, 0, tenant),
    MF(SV_F_BUCKET, KIND_STR, SV_MSG_NAME_MAX, bucket),
    MF(SV_F_KEY, KIND_STR, SV_MSG_NAME_MAX, key),
    MF(SV_F_IF_VERSION, KIND_UINT, 0, if_version),
    MF(SV_F_SESSION, KIND_UINT, 0, session),
    MF(SV_F_SEQ, KIND_UINT, 0, seq),
    MF(SV_F_ACK_BELOW, KIND_UINT, 0, ack_below),
    MF(SV_F_UPLOAD, KIND_UINT, 0, upload),
    MF(SV_F_CHUNK, KIND_UINT, 0, chunk),
    MF(SV_F_N_CHUNKS, KIND_UINT, 0, n_chunks),
    MF(SV_F_VERSION, KIND_UINT, 0, version),
    MF(SV_F_SIZE, KIND_UINT, 0, size),
    MF(SV_F_SHA256, KIND_SHA256, 32, sha256),
    MF(SV_F_MTIME_MS, KIND_UINT, 0, mtime_ms),
    MF(SV_F_DATA, KIND_BIN, SV_MSG_DATA_MAX, data),
    MF(SV_F_CONSISTENCY, KIND_UINT, 0, consistency),
    MF(SV_F_PREFIX, KIND_STR, SV_MSG_NAME_MAX, prefix),
    MF(SV_F_START_AFTER, KIND_STR, SV_MSG_NAME_MAX, start_after),
    MF(SV_F_LIMIT, KIND_UINT, 0, limit),
    MF(SV_F_SHARD, KIND_UINT, 0, shard),
    MF(SV_F_LEADER, KIND_UINT, 0, leader),
    MF(SV_F_ADDR, KIND_STR, SV_MSG_NAME_MAX, addr),
    MF(SV_F_NODE, KIND_UINT, 0, node),
    MF(SV_F_ZONE, KIND_STR, SV_MSG_NAME_MAX, zone),
    MF(SV_F_N_SHARDS, KIND_UINT, 0, n_shards),
    MF(SV_F_EPOCH, KIND_UINT, 0, epoch),
    MF(SV_F_METRICS, KIND_STR, SV_MSG_NAME_MAX, metrics),
    MF(SV_F_FREE, KIND_UINT, 0, free),
    MF(SV_F_FLAGS, KIND_UINT, 0, flags),
    MF(SV_F_ITEMS, KIND_ITEMS, SV_MSG_ITEMS_MAX, items),
};
#undef MF

#define IF(id, k, mx, member) [id] = {k, mx, offsetof(struct sv_item, member), #member}
static const struct field item_fields[SV_I_COUNT_] = {
    IF(SV_I_KEY, KIND_STR, SV_MSG_NAME_MAX, key),
    IF(SV_I_SIZE, KIND_UINT, 0, size),
    IF(SV_I_VERSION, KIND_UINT, 0, version),
    IF(SV_I_MTIME_MS, KIND_UINT, 0, mtime_ms),
    IF(SV_I_ID, KIND_UINT, 0, id),
    IF(SV_I_ADDR, KIND_STR, SV_MSG_NAME_MAX, addr),
    IF(SV_I_ZONE, KIND_STR, SV_MSG_NAME_MAX, zone),
    IF(SV_I_STATE, KIND_STR, SV_MSG_NAME_MAX, state),
    IF(SV_I_ROLE, KIND_STR, SV_MSG_NAME_MAX, role),
    IF(SV_I_LEADER, KIND_UINT, 0, leader),
    IF(SV_I_TERM, KIND_UINT, 0, term),
    IF(SV_I_COMMIT, KIND_UINT, 0, commit),
    IF(SV_I_APPLIED, KIND_UINT, 0, applied),
    IF(SV_I_REPLICAS, KIND_REPLICAS, SV_MSG_REPLICAS_MAX, replicas),
    IF(SV_I_BYTES, KIND_UINT, 0, bytes),
    IF(SV_I_FREE, KIND_UINT, 0, free),
    IF(SV_I_REASON, KIND_STR, SV_MSG_NAME_MAX, reason),
    IF(SV_I_TEXT, KIND_STR, SV_MSG_TEXT_MAX, text),
    IF(SV_I_COMPLETE, KIND_UINT, 0, complete),
    IF(SV_I_LEFT, KIND_UINT, 0, left),
    IF(SV_I_N_REPLICAS, KIND_UINT, 0, n_replicas_count),
    IF(SV_I_N_LEADERS, KIND_UINT, 0, n_leaders),
    IF(SV_I_AGE_MS, KIND_UINT, 0, age_ms),
    IF(SV_I_BUCKET, KIND_STR, SV_MSG_NAME_MAX, bucket),
    IF(SV_I_SHA256, KIND_SHA256, 32, sha256),
    IF(SV_I_INDEX, KIND_UINT, 0, index),
    IF(SV_I_CUT, KIND_UINT, 0, cut),
    IF(SV_I_TENANT, KIND_UINT, 0, tenant),
};
#undef IF

/* ---- encoding ---------------------------------------------------------- */

static uint32_t n_present(uint32_t fields, unsigned count)
{
    uint32_t n = 0;
    for (unsigned id = 0; id < count; id++)
        n += (fields >> id) & 1u;
    return n;
}

static int put_item(struct sv_mp_writer *w, const struct sv_item *it);

/* One field's value; base is the struct sv_msg or struct sv_item. */
static int put_value(struct sv_mp_writer *w, const struct field *f, const void *base)
{
    const uint8_t *p = (const uint8_t *)base + f->off;
    switch (f->kind) {
    case KIND_UINT:
        return sv_mp_put_uint(w, *(const uint64_t *)(const void *)p);
    case KIND_INT:
        return sv_mp_put_int(w, *(const int64_t *)(const void *)p);
    case KIND_STR:
    case KIND_BIN: {
        const struct sv_bytes *b = (const struct sv_bytes *)(const void *)p;
        if (b->len > f->max)
            return SV_PROTO_E_TOO_BIG;
        return f->kind == KIND_STR ? sv_mp_put_str(w, b->p, b->len)
                                   : sv_mp_put_bin(w, b->p, b->len);
    }
    case KIND_SHA256:
        return sv_mp_put_bin(w, p, 32);
    case KIND_ITEMS: {
        const struct sv_msg *m = base;
        if (m->n_items > SV_MSG_ITEMS_MAX)
            return SV_PROTO_E_TOO_BIG;
        PROTO_ASSERT(m->items != NULL || m->n_items == 0);
        int rc = sv_mp_put_array(w, m->n_items);
        for (uint32_t i = 0; rc == 0 && i < m->n_items; i++)
            rc = put_item(w, &m->items[i]);
        return rc;
    }
    case KIND_REPLICAS: {
        const struct sv_item *it = base;
        if (it->n_replicas > SV_MSG_REPLICAS_MAX)
            return SV_PROTO_E_TOO_BIG;
        int rc = sv_mp_put_array(w, it->n_replicas);
        for (uint32_t i = 0; rc == 0 && i < it->n_replicas; i++)
            rc = sv_mp_put_uint(w, it->replicas[i]);
        return rc;
    }
    case KIND_NONE:
        break;
    }
    PROTO_ASSERT(0 && "field table hole");
    return SV_PROTO_E_MALFORMED;
}

/* The present known fields of base as a map, in id order. */
static int put_map(struct sv_mp_writer *w, const struct field *table, unsigned count,
                   uint32_t fields, const void *base)
{
    int rc = sv_mp_put_map(w, n_present(fields, count));
    for (unsigned id = 0; rc == 0 && id < count; id++) {
        if (((fields >> id) & 1u) == 0)
            continue;
        rc = sv_mp_put_uint(w, id);
        if (rc == 0)
            rc = put_value(w, &table[id], base);
    }
    return rc;
}

static int put_item(struct sv_mp_writer *w, const struct sv_item *it)
{
    return put_map(w, item_fields, SV_I_COUNT_, it->fields, it);
}

int sv_msg_encode(const struct sv_msg *m, uint8_t **out, size_t *out_len)
{
    /* Size first (checking every limit), then write into one exact buffer:
     * DATA of a megabyte is copied once. */
    struct sv_mp_writer w;
    sv_mp_writer_init_counting(&w);
    int rc = put_map(&w, msg_fields, SV_F_COUNT_, m->fields, m);
    if (rc != 0)
        return rc == -ENOMEM ? SV_PROTO_E_NOMEM : rc;
    size_t size = w.len;
    sv_mp_writer_init(&w);
    rc = sv_mp_writer_reserve(&w, size);
    if (rc == 0)
        rc = put_map(&w, msg_fields, SV_F_COUNT_, m->fields, m);
    if (rc != 0) {
        sv_mp_writer_free(&w);
        return rc == -ENOMEM ? SV_PROTO_E_NOMEM : rc;
    }
    PROTO_ASSERT(w.len == size);
    rc = sv_mp_writer_take(&w, out, out_len);
    return rc == 0 ? 0 : SV_PROTO_E_NOMEM;
}

/* ---- decoding ---------------------------------------------------------- */

struct dec {
    struct sv_mp_reader r;
    char *errmsg;
    size_t errlen;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(struct dec *d, int err, const char *fmt, ...)
{
    if (d->errmsg != NULL && d->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->errmsg, d->errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int get_map(struct dec *d, const struct field *table, unsigned count, uint32_t *fields,
                   void *base, const char *what);

/* One known field's value into base (sv_msg or sv_item). */
static int get_value(struct dec *d, const struct field *f, void *base, const char *what)
{
    uint8_t *p = (uint8_t *)base + f->off;
    int rc;
    switch (f->kind) {
    case KIND_UINT:
        rc = sv_mp_read_uint(&d->r, (uint64_t *)(void *)p);
        break;
    case KIND_INT:
        rc = sv_mp_read_int(&d->r, (int64_t *)(void *)p);
        break;
    case KIND_STR:
    case KIND_BIN: {
        struct sv_bytes *b = (struct sv_bytes *)(void *)p;
        rc = f->kind == KIND_STR ? sv_mp_read_str(&d->r, &b->p, &b->len)
                                 : sv_mp_read_bin(&d->r, &b->p, &b->len);
        if (rc == 0 && b->len > f->max)
            return fail(d, SV_PROTO_E_TOO_BIG, "%s %s: %zu bytes, the limit is %u", what, f->name,
                        b->len, (unsigned)f->max);
        break;
    }
    case KIND_SHA256: {
        const uint8_t *s;
        size_t n;
        rc = sv_mp_read_bin(&d->r, &s, &n);
        if (rc == 0 && n != 32)
            return fail(d, SV_PROTO_E_MALFORMED, "%s %s: %zu bytes, not 32", what, f->name, n);
        if (rc == 0)
            memcpy(p, s, 32);
        break;
    }
    case KIND_ITEMS: {
        struct sv_msg *m = base;
        uint32_t n;
        rc = sv_mp_read_array(&d->r, &n);
        if (rc != 0)
            break;
        if (n > SV_MSG_ITEMS_MAX)
            return fail(d, SV_PROTO_E_TOO_BIG, "%u items, the limit is %u", (unsigned)n,
                        (unsigned)SV_MSG_ITEMS_MAX);
        if (n > 0) {
            /* n <= the bytes that remain (sv_mp_read_array): bounded by the body. */
            m->items = calloc(n, sizeof(*m->items));
            if (m->items == NULL)
                return fail(d, SV_PROTO_E_NOMEM, "%u items: out of memory", (unsigned)n);
        }
        m->n_items = n;
        for (uint32_t i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof(name), "item %u", (unsigned)i);
            rc = get_map(d, item_fields, SV_I_COUNT_, &m->items[i].fields, &m->items[i], name);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case KIND_REPLICAS: {
        struct sv_item *it = base;
        uint32_t n;
        rc = sv_mp_read_array(&d->r, &n);
        if (rc != 0)
            break;
        if (n > SV_MSG_REPLICAS_MAX)
            return fail(d, SV_PROTO_E_TOO_BIG, "%s: %u replicas, the limit is %u", what,
                        (unsigned)n, (unsigned)SV_MSG_REPLICAS_MAX);
        for (uint32_t i = 0; rc == 0 && i < n; i++)
            rc = sv_mp_read_uint(&d->r, &it->replicas[i]);
        if (rc == 0)
            it->n_replicas = n;
        break;
    }
    default:
        PROTO_ASSERT(0 && "field table hole");
        return SV_PROTO_E_MALFORMED;
    }
    if (rc != 0)
        return fail(d, SV_PROTO_E_MALFORMED, "%s %s at byte %zu: %s", what, f->name, d->r.pos,
                    sv_mp_strerror(rc));
    return 0;
}

/* A map of field id -> value: known ids once each, unknown ids skipped. */
static int get_map(struct dec *d, const struct field *table, unsigned count, uint32_t *fields,
                   void *base, const char *what)
{
    uint32_t n;
    int rc = sv_mp_read_map(&d->r, &n);
    if (rc != 0)
        return fail(d, SV_PROTO_E_MALFORMED, "%s is not a map: %s", what, sv_mp_strerror(rc));
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id;
        rc = sv_mp_read_uint(&d->r, &id);
        if (rc != 0)
            return fail(d, SV_PROTO_E_MALFORMED, "%s: key %u is not a field id: %s", what,
                        (unsigned)i, sv_mp_strerror(rc));
        if (id >= count || table[id].kind == KIND_NONE) {
            rc = sv_mp_skip(&d->r);
            if (rc != 0)
                return fail(d, SV_PROTO_E_MALFORMED, "%s: unknown field %llu: %s", what,
                            (unsigned long long)id, sv_mp_strerror(rc));
            continue;
        }
        if ((*fields >> id) & 1u)
            return fail(d, SV_PROTO_E_MALFORMED, "%s: duplicate field %s", what, table[id].name);
        rc = get_value(d, &table[id], base, what);
        if (rc != 0)
            return rc;
        *fields |= 1u << id;
    }
    return 0;
}

int sv_msg_decode(const uint8_t *body, size_t len, struct sv_msg *m, char *errmsg, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (errmsg != NULL && errlen > 0)
        errmsg[0] = '\0';
    struct dec d = {.errmsg = errmsg, .errlen = errlen};
    sv_mp_reader_init(&d.r, body, len);
    int rc = get_map(&d, msg_fields, SV_F_COUNT_, &m->fields, m, "message");
    if (rc != 0)
        return rc;
    if (sv_mp_remaining(&d.r) != 0)
        return fail(&d, SV_PROTO_E_MALFORMED, "%zu bytes after the message map",
                    sv_mp_remaining(&d.r));
    return 0;
}

void sv_msg_free(struct sv_msg *m)
{
    free(m->items);
    m->items = NULL;
    m->n_items = 0;
}

/* ---- names and shards -------------------------------------------------- */

/* FNV-1a 64 (Fowler, Noll, Vo): offset basis and prime. */
static const uint64_t fnv64_offset = 0xcbf29ce484222325ull;
static const uint64_t fnv64_prime = 0x100000001b3ull;

static uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= fnv64_prime;
    }
    return h;
}

uint64_t sv_object_hash(uint64_t tenant, const void *bucket, size_t bucket_len, const void *key,
                        size_t key_len)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(tenant >> (8 * i));
    static const uint8_t zero = 0;
    uint64_t h = fnv1a(fnv64_offset, t, sizeof(t));
    h = fnv1a(h, bucket, bucket_len);
    h = fnv1a(h, &zero, 1);
    return fnv1a(h, key, key_len);
}

uint32_t sv_shard_of(uint64_t hash, uint32_t n_shards)
{
    PROTO_ASSERT(n_shards > 0);
    /* MurmurHash3's fmix64: every input bit reaches every output bit. */
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ull;
    hash ^= hash >> 33;
    /* (hash * n_shards) >> 64 without a 128-bit type: split hash in halves.
     * hi * n + ((lo * n) >> 32) < 2^64 since both factors are < 2^32. */
    uint64_t hi = hash >> 32, lo = hash & 0xffffffffu;
    uint64_t mid = hi * n_shards + ((lo * n_shards) >> 32);
    return (uint32_t)(mid >> 32);
}

static bool bucket_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static bool alnum_lower(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool sv_bucket_valid(const void *bucket, size_t len)
{
    const uint8_t *b = bucket;
    if (len < 1 || len > 63 || !alnum_lower(b[0]) || !alnum_lower(b[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!bucket_char(b[i]))
            return false;
    return true;
}

bool sv_key_valid(const void *key, size_t len)
{
    return len >= 1 && len <= SV_MSG_NAME_MAX && memchr(key, 0, len) == NULL;
}
