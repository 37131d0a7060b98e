/* Raft messages in SV_MSG_RAFT frame bodies (raftwire.h), over mp.h. */
#include "raftwire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"
#include "sv_assert.h"

enum {
    CONF_BYTES_MAX = 512, /* an encoded sv_raft_conf of SV_RAFT_SERVERS_MAX servers fits */
    /* Smallest encoded message: fixarray, group, fixmap, TYPE id and value. */
    MSG_BYTES_MIN = 5,
    /* Smallest encoded entry: fixarray, term, index, type, bin 8 header. */
    ENTRY_BYTES_MIN = 6,
};

_Static_assert(SV_RAFT_SNAPSHOT_BYTES_MAX <= UINT32_MAX, "sv_raft_msg.len holds any chunk");
_Static_assert(SV_RAFT_ENTRY_BYTES_MAX <= UINT32_MAX, "sv_raft_entry.len holds any entry");
_Static_assert(SV_RAFTWIRE_F_COUNT_ <= 32, "field presence fits a uint32_t");

const char *sv_raftwire_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SV_RAFTWIRE_E_MALFORMED:
        return "malformed raft body";
    case SV_RAFTWIRE_E_TOO_BIG:
        return "raft message too big";
    case SV_RAFTWIRE_E_NOMEM:
        return "out of memory";
    default:
        /* errno values are small; domain codes start at -1000 (raft.h). */
        return err < 0 && err > -1000 ? strerror(-err) : "unknown error";
    }
}

/* ---- encoding ---------------------------------------------------------- */

static bool snap_present(const struct sv_raft_msg *m)
{
    return m->snap.index != 0 || m->snap.term != 0 || m->snap.conf.n != 0;
}

/* Bit (1u << SV_RAFTWIRE_F_*) for every field to write. */
static uint32_t present(const struct sv_raft_msg *m)
{
    uint32_t f = 0;
#define P(id, cond) f |= (cond) ? 1u << (id) : 0u
    P(SV_RAFTWIRE_F_TYPE, m->type != 0);
    P(SV_RAFTWIRE_F_FROM, m->from != 0);
    P(SV_RAFTWIRE_F_TO, m->to != 0);
    P(SV_RAFTWIRE_F_TERM, m->term != 0);
    P(SV_RAFTWIRE_F_INDEX, m->index != 0);
    P(SV_RAFTWIRE_F_LOG_TERM, m->log_term != 0);
    P(SV_RAFTWIRE_F_COMMIT, m->commit != 0);
    P(SV_RAFTWIRE_F_REJECT, m->reject);
    P(SV_RAFTWIRE_F_TRANSFER, m->transfer);
    P(SV_RAFTWIRE_F_DONE, m->done);
    P(SV_RAFTWIRE_F_HINT_INDEX, m->hint_index != 0);
    P(SV_RAFTWIRE_F_HINT_TERM, m->hint_term != 0);
    P(SV_RAFTWIRE_F_CTX, m->ctx != 0);
    P(SV_RAFTWIRE_F_LEASE_TICK, m->lease_tick != 0);
    P(SV_RAFTWIRE_F_ENTRIES, m->n_entries != 0);
    P(SV_RAFTWIRE_F_SNAP, snap_present(m));
    P(SV_RAFTWIRE_F_OFFSET, m->offset != 0);
    P(SV_RAFTWIRE_F_DATA, m->len != 0);
#undef P
    return f;
}

/* True when m is within the limits a decoder enforces. */
static bool encodable(const struct sv_raft_msg *m)
{
    ASSERT(m->type >= 1 && m->type < SV_RAFT_MSG_TYPE_MAX_);
    ASSERT(m->snap.conf.n <= SV_RAFT_SERVERS_MAX);
    ASSERT(m->n_entries == 0 || m->entries != NULL);
    ASSERT(m->len == 0 || m->data != NULL);
    if (m->n_entries > SV_RAFT_MSG_ENTRIES_MAX || m->len > SV_RAFT_SNAPSHOT_BYTES_MAX)
        return false;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct sv_raft_entry *e = &m->entries[i];
        if (e->len > SV_RAFT_ENTRY_BYTES_MAX)
            return false;
        ASSERT(e->len == 0 || e->data != NULL);
    }
    return true;
}

static uint32_t popcount32(uint32_t v)
{
    uint32_t n = 0;
    for (; v != 0; v &= v - 1)
        n++;
    return n;
}

/* [group, {field: value}] for one encodable message; returns 0 or -ENOMEM. */
static int put_msg(struct sv_mp_writer *w, const struct sv_raftwire_msg *rm)
{
    const struct sv_raft_msg *m = &rm->msg;
    uint32_t f = present(m);
    sv_mp_put_array(w, 2);
    sv_mp_put_uint(w, rm->group);
    sv_mp_put_map(w, popcount32(f));
    const uint64_t uints[SV_RAFTWIRE_F_COUNT_] = {
        [SV_RAFTWIRE_F_TYPE] = m->type,
        [SV_RAFTWIRE_F_FROM] = m->from,
        [SV_RAFTWIRE_F_TO] = m->to,
        [SV_RAFTWIRE_F_TERM] = m->term,
        [SV_RAFTWIRE_F_INDEX] = m->index,
        [SV_RAFTWIRE_F_LOG_TERM] = m->log_term,
        [SV_RAFTWIRE_F_COMMIT] = m->commit,
        [SV_RAFTWIRE_F_HINT_INDEX] = m->hint_index,
        [SV_RAFTWIRE_F_HINT_TERM] = m->hint_term,
        [SV_RAFTWIRE_F_CTX] = m->ctx,
        [SV_RAFTWIRE_F_LEASE_TICK] = m->lease_tick,
        [SV_RAFTWIRE_F_OFFSET] = m->offset,
    };
    for (unsigned id = 0; id < SV_RAFTWIRE_F_COUNT_; id++) {
        if (((f >> id) & 1u) == 0)
            continue;
        sv_mp_put_uint(w, id);
        switch (id) {
        case SV_RAFTWIRE_F_REJECT:
        case SV_RAFTWIRE_F_TRANSFER:
        case SV_RAFTWIRE_F_DONE:
            sv_mp_put_bool(w, true);
            break;
        case SV_RAFTWIRE_F_ENTRIES:
            sv_mp_put_array(w, m->n_entries);
            for (uint32_t i = 0; i < m->n_entries; i++) {
                const struct sv_raft_entry *e = &m->entries[i];
                sv_mp_put_array(w, 4);
                sv_mp_put_uint(w, e->term);
                sv_mp_put_uint(w, e->index);
                sv_mp_put_uint(w, e->type);
                sv_mp_put_bin(w, e->data, e->len);
            }
            break;
        case SV_RAFTWIRE_F_SNAP: {
            uint8_t conf[CONF_BYTES_MAX];
            size_t conf_len = sv_raft_conf_encoded_len(&m->snap.conf);
            ASSERT(conf_len <= sizeof(conf));
            sv_raft_conf_encode(&m->snap.conf, conf);
            sv_mp_put_array(w, 3);
            sv_mp_put_uint(w, m->snap.index);
            sv_mp_put_uint(w, m->snap.term);
            sv_mp_put_bin(w, conf, conf_len);
            break;
        }
        case SV_RAFTWIRE_F_DATA:
            sv_mp_put_bin(w, m->data, m->len);
            break;
        default:
            sv_mp_put_uint(w, uints[id]);
            break;
        }
    }
    return w->err; /* sticky: the first failed put */
}

/* Bytes of a msgpack array header for n elements. */
static size_t array_header_len(size_t n)
{
    return n <= 15 ? 1 : n <= UINT16_MAX ? 3 : 5;
}

int sv_raftwire_encode(const struct sv_raftwire_msg *msgs, size_t n, size_t body_max, uint8_t **out,
                       size_t *out_len, size_t *n_done)
{
    /* Size each message with the code that writes it (a counting writer),
     * then write the prefix that fits into one exact buffer. */
    size_t k = 0, total = 0;
    while (k < n && k < SV_RAFTWIRE_MSGS_MAX) {
        if (!encodable(&msgs[k].msg))
            break;
        struct sv_mp_writer cw;
        sv_mp_writer_init_counting(&cw);
        put_msg(&cw, &msgs[k]);
        if (array_header_len(k + 1) + total + cw.len > body_max)
            break;
        total += cw.len;
        k++;
    }
    if (k == 0 && n > 0)
        return SV_RAFTWIRE_E_TOO_BIG;
    size_t size = array_header_len(k) + total;
    struct sv_mp_writer w;
    sv_mp_writer_init(&w);
    sv_mp_writer_reserve(&w, size);
    sv_mp_put_array(&w, (uint32_t)k);
    for (size_t i = 0; i < k; i++)
        put_msg(&w, &msgs[i]);
    if (w.err == 0)
        ASSERT(w.len == size && size <= body_max);
    if (sv_mp_writer_take(&w, out, out_len) != 0)
        return SV_RAFTWIRE_E_NOMEM;
    *n_done = k;
    return 0;
}

/* ---- decoding ---------------------------------------------------------- */

struct dec {
    struct sv_mp_reader r;
    size_t msg; /* index of the message being decoded, for errors */
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
        int off = snprintf(d->errmsg, d->errlen, "message %zu: ", d->msg);
        if (off >= 0 && (size_t)off < d->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(d->errmsg + off, d->errlen - (size_t)off, fmt, ap);
            va_end(ap);
        }
    }
    return err;
}

static int bad(struct dec *d, const char *what, int mp_err)
{
    return fail(d, SV_RAFTWIRE_E_MALFORMED, "%s at byte %zu: %s", what, d->r.pos,
                sv_mp_strerror(mp_err));
}

static int get_entries(struct dec *d, struct sv_raft_msg *m)
{
    uint32_t n;
    int rc = sv_mp_read_array(&d->r, &n);
    if (rc != 0)
        return bad(d, "entries", rc);
    if (n > SV_RAFT_MSG_ENTRIES_MAX)
        return fail(d, SV_RAFTWIRE_E_TOO_BIG, "%u entries, the limit is %u", (unsigned)n,
                    (unsigned)SV_RAFT_MSG_ENTRIES_MAX);
    if ((uint64_t)n * ENTRY_BYTES_MIN > sv_mp_remaining(&d->r))
        return fail(d, SV_RAFTWIRE_E_MALFORMED, "%u entries in %zu bytes", (unsigned)n,
                    sv_mp_remaining(&d->r));
    if (n == 0)
        return 0; /* not written by this encoder, but harmless */
    m->entries = calloc(n, sizeof(*m->entries));
    if (m->entries == NULL)
        return fail(d, SV_RAFTWIRE_E_NOMEM, "%u entries: out of memory", (unsigned)n);
    m->n_entries = n;
    for (uint32_t i = 0; i < n; i++) {
        struct sv_raft_entry *e = &m->entries[i];
        uint32_t k;
        uint64_t type;
        const uint8_t *data;
        size_t len;
        rc = sv_mp_read_array(&d->r, &k);
        if (rc == 0 && k != 4)
            return fail(d, SV_RAFTWIRE_E_MALFORMED, "entry %u has %u elements, not 4", (unsigned)i,
                        (unsigned)k);
        if (rc == 0)
            rc = sv_mp_read_uint(&d->r, &e->term);
        if (rc == 0)
            rc = sv_mp_read_uint(&d->r, &e->index);
        if (rc == 0)
            rc = sv_mp_read_uint(&d->r, &type);
        if (rc == 0)
            rc = sv_mp_read_bin(&d->r, &data, &len);
        if (rc != 0)
            return bad(d, "entry", rc);
        if (type > SV_RAFT_ENTRY_NOOP)
            return fail(d, SV_RAFTWIRE_E_MALFORMED, "entry %u of unknown type %llu", (unsigned)i,
                        (unsigned long long)type);
        if (len > SV_RAFT_ENTRY_BYTES_MAX)
            return fail(d, SV_RAFTWIRE_E_TOO_BIG, "entry %u of %zu bytes, the limit is %u",
                        (unsigned)i, len, (unsigned)SV_RAFT_ENTRY_BYTES_MAX);
        e->type = (uint8_t)type;
        e->len = (uint32_t)len;
        e->data = len > 0 ? (uint8_t *)data : NULL; /* borrowed from the body */
    }
    return 0;
}

static int get_snap(struct dec *d, struct sv_raft_msg *m)
{
    uint32_t k;
    const uint8_t *conf;
    size_t conf_len;
    int rc = sv_mp_read_array(&d->r, &k);
    if (rc == 0 && k != 3)
        return fail(d, SV_RAFTWIRE_E_MALFORMED, "snapshot meta has %u elements, not 3",
                    (unsigned)k);
    if (rc == 0)
        rc = sv_mp_read_uint(&d->r, &m->snap.index);
    if (rc == 0)
        rc = sv_mp_read_uint(&d->r, &m->snap.term);
    if (rc == 0)
        rc = sv_mp_read_bin(&d->r, &conf, &conf_len);
    if (rc != 0)
        return bad(d, "snapshot meta", rc);
    if (sv_raft_conf_decode(conf, conf_len, &m->snap.conf) != 0)
        return fail(d, SV_RAFTWIRE_E_MALFORMED, "snapshot configuration does not decode");
    return 0;
}

static int get_bool(struct dec *d, bool *v)
{
    int rc = sv_mp_read_bool(&d->r, v);
    return rc == 0 ? 0 : bad(d, "flag", rc);
}

static int get_field(struct dec *d, unsigned id, struct sv_raft_msg *m)
{
    uint64_t *u;
    switch (id) {
    case SV_RAFTWIRE_F_TYPE: {
        uint64_t t;
        int rc = sv_mp_read_uint(&d->r, &t);
        if (rc != 0)
            return bad(d, "type", rc);
        if (t < 1 || t >= SV_RAFT_MSG_TYPE_MAX_)
            return fail(d, SV_RAFTWIRE_E_MALFORMED, "unknown type %llu", (unsigned long long)t);
        m->type = (uint8_t)t;
        return 0;
    }
    case SV_RAFTWIRE_F_REJECT:
        return get_bool(d, &m->reject);
    case SV_RAFTWIRE_F_TRANSFER:
        return get_bool(d, &m->transfer);
    case SV_RAFTWIRE_F_DONE:
        return get_bool(d, &m->done);
    case SV_RAFTWIRE_F_ENTRIES:
        return get_entries(d, m);
    case SV_RAFTWIRE_F_SNAP:
        return get_snap(d, m);
    case SV_RAFTWIRE_F_DATA: {
        const uint8_t *p;
        size_t len;
        int rc = sv_mp_read_bin(&d->r, &p, &len);
        if (rc != 0)
            return bad(d, "data", rc);
        if (len > SV_RAFT_SNAPSHOT_BYTES_MAX)
            return fail(d, SV_RAFTWIRE_E_TOO_BIG, "chunk of %zu bytes", len);
        m->len = (uint32_t)len;
        m->data = len > 0 ? (uint8_t *)p : NULL; /* borrowed from the body */
        return 0;
    }
    case SV_RAFTWIRE_F_FROM:
        u = &m->from;
        break;
    case SV_RAFTWIRE_F_TO:
        u = &m->to;
        break;
    case SV_RAFTWIRE_F_TERM:
        u = &m->term;
        break;
    case SV_RAFTWIRE_F_INDEX:
        u = &m->index;
        break;
    case SV_RAFTWIRE_F_LOG_TERM:
        u = &m->log_term;
        break;
    case SV_RAFTWIRE_F_COMMIT:
        u = &m->commit;
        break;
    case SV_RAFTWIRE_F_HINT_INDEX:
        u = &m->hint_index;
        break;
    case SV_RAFTWIRE_F_HINT_TERM:
        u = &m->hint_term;
        break;
    case SV_RAFTWIRE_F_CTX:
        u = &m->ctx;
        break;
    case SV_RAFTWIRE_F_LEASE_TICK:
        u = &m->lease_tick;
        break;
    case SV_RAFTWIRE_F_OFFSET:
        u = &m->offset;
        break;
    default:
        ASSERT(0 && "field id out of range");
        return SV_RAFTWIRE_E_MALFORMED;
    }
    int rc = sv_mp_read_uint(&d->r, u);
    return rc == 0 ? 0 : bad(d, "integer field", rc);
}

static int get_msg(struct dec *d, struct sv_raftwire_msg *rm)
{
    uint32_t k, n;
    int rc = sv_mp_read_array(&d->r, &k);
    if (rc != 0)
        return bad(d, "message", rc);
    if (k != 2)
        return fail(d, SV_RAFTWIRE_E_MALFORMED, "%u elements, not [group, msg]", (unsigned)k);
    rc = sv_mp_read_uint(&d->r, &rm->group);
    if (rc != 0)
        return bad(d, "group", rc);
    rc = sv_mp_read_map(&d->r, &n);
    if (rc != 0)
        return bad(d, "field map", rc);
    uint32_t seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id;
        rc = sv_mp_read_uint(&d->r, &id);
        if (rc != 0)
            return bad(d, "field id", rc);
        if (id >= SV_RAFTWIRE_F_COUNT_) {
            rc = sv_mp_skip(&d->r);
            if (rc != 0)
                return bad(d, "unknown field", rc);
            continue;
        }
        if ((seen >> id) & 1u)
            return fail(d, SV_RAFTWIRE_E_MALFORMED, "field %u twice", (unsigned)id);
        seen |= 1u << id;
        rc = get_field(d, (unsigned)id, &rm->msg);
        if (rc != 0)
            return rc;
    }
    if (((seen >> SV_RAFTWIRE_F_TYPE) & 1u) == 0)
        return fail(d, SV_RAFTWIRE_E_MALFORMED, "no type");
    return 0;
}

int sv_raftwire_decode(const uint8_t *body, size_t len, struct sv_raftwire_msg **msgs, size_t *n,
                       char *errmsg, size_t errlen)
{
    *msgs = NULL;
    *n = 0;
    if (errmsg != NULL && errlen > 0)
        errmsg[0] = '\0';
    struct dec d = {.errmsg = errmsg, .errlen = errlen};
    sv_mp_reader_init(&d.r, body, len);
    uint32_t count;
    int rc = sv_mp_read_array(&d.r, &count);
    if (rc != 0)
        return fail(&d, SV_RAFTWIRE_E_MALFORMED, "body is not an array: %s", sv_mp_strerror(rc));
    if (count > SV_RAFTWIRE_MSGS_MAX)
        return fail(&d, SV_RAFTWIRE_E_TOO_BIG, "%u messages, the limit is %u", (unsigned)count,
                    (unsigned)SV_RAFTWIRE_MSGS_MAX);
    if ((uint64_t)count * MSG_BYTES_MIN > sv_mp_remaining(&d.r))
        return fail(&d, SV_RAFTWIRE_E_MALFORMED, "%u messages in %zu bytes", (unsigned)count,
                    sv_mp_remaining(&d.r));
    struct sv_raftwire_msg *out = NULL;
    if (count > 0) {
        out = calloc(count, sizeof(*out));
        if (out == NULL)
            return fail(&d, SV_RAFTWIRE_E_NOMEM, "%u messages: out of memory", (unsigned)count);
    }
    for (d.msg = 0; d.msg < count; d.msg++) {
        rc = get_msg(&d, &out[d.msg]);
        if (rc != 0)
            goto err_after_out;
    }
    if (sv_mp_remaining(&d.r) != 0) {
        rc = fail(&d, SV_RAFTWIRE_E_MALFORMED, "%zu bytes after the messages",
                  sv_mp_remaining(&d.r));
        goto err_after_out;
    }
    *msgs = out;
    *n = count;
    return 0;

err_after_out:
    /* The failed message may hold an entry array too: free up to it. */
    sv_raftwire_free(out, d.msg < count ? d.msg + 1 : count);
    return rc;
}

void sv_raftwire_free(struct sv_raftwire_msg *msgs, size_t n)
{
    if (msgs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(msgs[i].msg.entries); /* entry data is borrowed from the body */
    free(msgs);
}
