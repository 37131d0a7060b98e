/* raftwire-test: node/src/raftwire.c (svraftwire) — round trips of every Raft
 * message type with entries, snapshots and configurations, batching under
 * body_max, messages too big to send, truncation at every length, forged
 * counts, malformed bodies, and seeded random mutations.
 * Usage: raftwire-test [NAME...] (no name: every test). Exit 1 on any failure. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mp.h"
#include "raftwire.h"

#define CHECK_STRERROR(rc) sv_raftwire_strerror(rc)
#include "check.h"

/* Fixtures. */

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

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n > 0 ? n : 1, size);
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

static bool data_eq(const uint8_t *a, const uint8_t *b, size_t len)
{
    return len == 0 || (a != NULL && b != NULL && memcmp(a, b, len) == 0);
}

static bool conf_eq(const struct sv_raft_conf *a, const struct sv_raft_conf *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->servers[i].id != b->servers[i].id || a->servers[i].role != b->servers[i].role)
            return false;
    return true;
}

static bool msg_eq(const struct sv_raftwire_msg *x, const struct sv_raftwire_msg *y)
{
    const struct sv_raft_msg *a = &x->msg, *b = &y->msg;
    if (x->group != y->group || a->type != b->type || a->from != b->from || a->to != b->to ||
        a->term != b->term || a->index != b->index || a->log_term != b->log_term ||
        a->commit != b->commit || a->reject != b->reject || a->transfer != b->transfer ||
        a->done != b->done || a->hint_index != b->hint_index || a->hint_term != b->hint_term ||
        a->ctx != b->ctx || a->lease_tick != b->lease_tick || a->n_entries != b->n_entries ||
        a->snap.index != b->snap.index || a->snap.term != b->snap.term ||
        !conf_eq(&a->snap.conf, &b->snap.conf) || a->offset != b->offset || a->len != b->len ||
        !data_eq(a->data, b->data, a->len))
        return false;
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const struct sv_raft_entry *e = &a->entries[i], *f = &b->entries[i];
        if (e->term != f->term || e->index != f->index || e->type != f->type || e->len != f->len ||
            !data_eq(e->data, f->data, e->len))
            return false;
    }
    return true;
}

static uint8_t payload[4096];
static uint8_t conf_buf[512];
static size_t conf_len;
static struct sv_raft_entry entries[3];

static void make_conf(struct sv_raft_conf *c, uint32_t n)
{
    memset(c, 0, sizeof(*c));
    for (uint32_t i = 0; i < n; i++) {
        c->servers[i].id = i == 1 ? UINT64_MAX : i + 1;
        c->servers[i].role = i % 3 == 2 ? SV_RAFT_LEARNER : SV_RAFT_VOTER;
    }
    c->n = n;
}

/* One message of each type, filled the way the raft library fills them. */
static size_t every_type(struct sv_raftwire_msg *out)
{
    fill(payload, sizeof(payload), 1);
    struct sv_raft_conf c;
    make_conf(&c, 3);
    conf_len = sv_raft_conf_encoded_len(&c);
    sv_raft_conf_encode(&c, conf_buf);
    entries[0] = (struct sv_raft_entry){7, 101, SV_RAFT_ENTRY_NORMAL, 300, payload};
    entries[1] = (struct sv_raft_entry){7, 102, SV_RAFT_ENTRY_CONF, (uint32_t)conf_len, conf_buf};
    entries[2] = (struct sv_raft_entry){8, 103, SV_RAFT_ENTRY_NOOP, 0, NULL};
    size_t n = 0;
    for (int t = SV_RAFT_MSG_APPEND; t < SV_RAFT_MSG_TYPE_MAX_; t++) {
        struct sv_raftwire_msg *w = &out[n++];
        memset(w, 0, sizeof(*w));
        w->group = (uint64_t)t * 1000;
        struct sv_raft_msg *m = &w->msg;
        m->type = (uint8_t)t;
        m->from = 1;
        m->to = 2;
        m->term = 8;
        switch (t) {
        case SV_RAFT_MSG_APPEND:
            m->index = 100;
            m->log_term = 7;
            m->commit = 99;
            m->entries = entries;
            m->n_entries = 3;
            break;
        case SV_RAFT_MSG_APPEND_RESP:
            m->reject = true;
            m->index = 100;
            m->hint_index = 90;
            m->hint_term = 6;
            break;
        case SV_RAFT_MSG_HEARTBEAT:
        case SV_RAFT_MSG_HEARTBEAT_RESP:
            m->commit = t == SV_RAFT_MSG_HEARTBEAT ? 103 : 0;
            m->ctx = 5;
            m->lease_tick = 123456;
            break;
        case SV_RAFT_MSG_PRE_VOTE:
        case SV_RAFT_MSG_VOTE:
            m->index = 103;
            m->log_term = 8;
            m->transfer = t == SV_RAFT_MSG_VOTE;
            m->term = t == SV_RAFT_MSG_PRE_VOTE ? 9 : 8;
            break;
        case SV_RAFT_MSG_PRE_VOTE_RESP:
        case SV_RAFT_MSG_VOTE_RESP:
            m->reject = t == SV_RAFT_MSG_VOTE_RESP;
            break;
        case SV_RAFT_MSG_SNAPSHOT:
            m->snap.index = 5000;
            m->snap.term = 7;
            m->snap.conf = c;
            m->offset = 262144;
            m->data = payload;
            m->len = sizeof(payload);
            m->done = true;
            break;
        case SV_RAFT_MSG_SNAPSHOT_RESP:
            m->snap.index = 5000;
            m->offset = 266240;
            break;
        case SV_RAFT_MSG_READ_INDEX:
            m->ctx = UINT64_MAX;
            break;
        case SV_RAFT_MSG_READ_INDEX_RESP:
            m->ctx = UINT64_MAX;
            m->index = 103;
            break;
        default: /* TIMEOUT_NOW: nothing more */
            break;
        }
    }
    return n;
}

/* Every field non-zero, at extreme values. */
static void everything(struct sv_raftwire_msg *w)
{
    memset(w, 0, sizeof(*w));
    w->group = UINT64_MAX;
    struct sv_raft_msg *m = &w->msg;
    m->type = SV_RAFT_MSG_TYPE_MAX_ - 1;
    uint64_t *u[] = {&m->from,       &m->to,         &m->term,      &m->index, &m->log_term,
                     &m->commit,     &m->hint_index, &m->hint_term, &m->ctx,   &m->lease_tick,
                     &m->snap.index, &m->snap.term,  &m->offset};
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        *u[i] = UINT64_MAX - i;
    m->reject = m->transfer = m->done = true;
    m->entries = entries;
    m->n_entries = 3;
    make_conf(&m->snap.conf, SV_RAFT_SERVERS_MAX);
    m->data = payload;
    m->len = 17;
}

static int encode_all(const struct sv_raftwire_msg *msgs, size_t n, size_t body_max, uint8_t **out,
                      size_t *len)
{
    size_t done = 0;
    int rc = sv_raftwire_encode(msgs, n, body_max, out, len, &done);
    if (rc == 0 && done != n) {
        free(*out);
        return -EMSGSIZE;
    }
    return rc;
}

/* Encode msgs as one body, decode it, compare. */
static void roundtrip(const struct sv_raftwire_msg *msgs, size_t n, const char *what)
{
    uint8_t *body = NULL;
    size_t len = 0;
    int rc = encode_all(msgs, n, SIZE_MAX, &body, &len);
    CHECK_RC(rc, 0);
    if (rc != 0)
        return;
    struct sv_raftwire_msg *out = NULL;
    size_t got = 0;
    char err[160] = "";
    rc = sv_raftwire_decode(body, len, &out, &got, err, sizeof(err));
    CHECK_RC(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  %s: %s\n", what, err);
    CHECK(got == n);
    for (size_t i = 0; rc == 0 && i < n && i < got; i++) {
        CHECK(msg_eq(&msgs[i], &out[i]));
        /* Data is borrowed from the body. */
        const struct sv_raft_msg *m = &out[i].msg;
        if (m->len > 0)
            CHECK(m->data >= body && m->data + m->len <= body + len);
        for (uint32_t k = 0; k < m->n_entries; k++)
            if (m->entries[k].len > 0)
                CHECK(m->entries[k].data >= body &&
                      m->entries[k].data + m->entries[k].len <= body + len);
            else
                CHECK(m->entries[k].data == NULL);
    }
    sv_raftwire_free(out, got);
    free(body);
}

/* Decode what w holds (then free it); returns the decoder's result. */
static int decode_w(struct sv_mp_writer *w)
{
    uint8_t *b = NULL;
    size_t len = 0;
    if (sv_mp_writer_take(w, &b, &len) != 0) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    struct sv_raftwire_msg *out = (struct sv_raftwire_msg *)&out; /* poison */
    size_t n = 12345;
    char err[160] = "";
    int rc = sv_raftwire_decode(b, len, &out, &n, err, sizeof(err));
    if (rc != 0)
        CHECK(out == NULL && n == 0 && err[0] != '\0');
    sv_raftwire_free(out, n);
    free(b);
    return rc;
}

/* [ [group, {TYPE: t, extra field id: value put by the caller}] ]: starts the
 * body; the caller then writes the value of `id`. */
static void start_one(struct sv_mp_writer *w, uint32_t n_fields, uint64_t type)
{
    sv_mp_writer_init(w);
    sv_mp_put_array(w, 1);
    sv_mp_put_array(w, 2);
    sv_mp_put_uint(w, 1);
    sv_mp_put_map(w, n_fields);
    sv_mp_put_uint(w, SV_RAFTWIRE_F_TYPE);
    sv_mp_put_uint(w, type);
}

/* Checks. */

static void test_roundtrip_types(void)
{
    struct sv_raftwire_msg msgs[SV_RAFT_MSG_TYPE_MAX_];
    size_t n = every_type(msgs);
    CHECK(n == SV_RAFT_MSG_TYPE_MAX_ - 1);
    for (size_t i = 0; i < n; i++)
        roundtrip(&msgs[i], 1, sv_raft_msg_type_name(msgs[i].msg.type));
    roundtrip(msgs, n, "every type in one body");
    struct sv_raftwire_msg all;
    everything(&all);
    roundtrip(&all, 1, "every field");
    roundtrip(msgs, 0, "no message");

    /* Zero fields are not written: a type-only message is 6 bytes. */
    struct sv_raftwire_msg bare;
    memset(&bare, 0, sizeof(bare));
    bare.group = 3;
    bare.msg.type = SV_RAFT_MSG_TIMEOUT_NOW;
    uint8_t *body = NULL;
    size_t len = 0;
    CHECK_RC(encode_all(&bare, 1, 64, &body, &len), 0);
    static const uint8_t want[] = {
        0x91, 0x92, 0x03, 0x81, SV_RAFTWIRE_F_TYPE, SV_RAFT_MSG_TIMEOUT_NOW};
    CHECK(len == sizeof(want) && memcmp(body, want, len) == 0);
    free(body);
    /* SNAPSHOT_RESP with only snap.index still carries a (decodable) empty conf. */
    roundtrip(&msgs[SV_RAFT_MSG_SNAPSHOT_RESP - 1], 1, "snapshot resp");
    struct sv_raftwire_msg empty_conf = msgs[SV_RAFT_MSG_SNAPSHOT - 1];
    empty_conf.msg.snap.conf.n = 0;
    roundtrip(&empty_conf, 1, "snapshot with an empty conf");
}

static void test_big_entry(void)
{
    enum { MIB = 1 << 20 };
    uint8_t *big = xmalloc(MIB);
    fill(big, MIB, 9);
    struct sv_raft_entry e = {3, 10, SV_RAFT_ENTRY_NORMAL, MIB, big};
    struct sv_raftwire_msg w;
    memset(&w, 0, sizeof(w));
    w.msg.type = SV_RAFT_MSG_APPEND;
    w.msg.from = 1;
    w.msg.to = 2;
    w.msg.term = 3;
    w.msg.index = 9;
    w.msg.log_term = 3;
    w.msg.entries = &e;
    w.msg.n_entries = 1;
    uint8_t *body = NULL;
    size_t len = 0, done = 0;
    CHECK_RC(sv_raftwire_encode(&w, 1, (1 << 20) + 64 * 1024, &body, &len, &done), 0);
    CHECK(done == 1 && len > MIB && len < MIB + 64);
    struct sv_raftwire_msg *out = NULL;
    size_t n = 0;
    CHECK_RC(sv_raftwire_decode(body, len, &out, &n, NULL, 0), 0);
    CHECK(n == 1 && msg_eq(&w, &out[0]));
    sv_raftwire_free(out, n);
    free(body);
    /* Just over the body limit. */
    CHECK_RC(sv_raftwire_encode(&w, 1, MIB, &body, &len, &done), SV_RAFTWIRE_E_TOO_BIG);
    free(big);
}

static void test_batching(void)
{
    enum { N = 300, BODY_MAX = 5000 };
    struct sv_raftwire_msg *msgs = xcalloc(N, sizeof(*msgs));
    struct sv_raft_entry *es = xcalloc(N, sizeof(*es));
    uint8_t *blob = xmalloc(2000);
    fill(blob, 2000, 3);
    rng_seed(42);
    for (size_t i = 0; i < N; i++) {
        struct sv_raft_msg *m = &msgs[i].msg;
        msgs[i].group = i % 7;
        m->type = SV_RAFT_MSG_APPEND;
        m->from = 1;
        m->to = 2;
        m->term = 5;
        m->index = i;
        es[i] =
            (struct sv_raft_entry){5, i + 1, SV_RAFT_ENTRY_NORMAL, (uint32_t)(rng() % 1500), blob};
        if (es[i].len == 0)
            es[i].data = NULL;
        m->entries = &es[i];
        m->n_entries = 1;
    }
    size_t off = 0, bodies = 0;
    bool all_equal = true, all_within = true, all_maximal = true;
    while (off < N && bodies < N) {
        uint8_t *body = NULL;
        size_t len = 0, done = 0;
        int rc = sv_raftwire_encode(msgs + off, N - off, BODY_MAX, &body, &len, &done);
        CHECK_RC(rc, 0);
        if (rc != 0)
            break;
        CHECK(done >= 1 && done <= N - off);
        all_within &= len <= BODY_MAX;
        /* Maximal: one more message would not have fitted. */
        if (off + done < N) {
            uint8_t *more = NULL;
            size_t more_len = 0;
            CHECK_RC(encode_all(msgs + off, done + 1, SIZE_MAX, &more, &more_len), 0);
            all_maximal &= more_len > BODY_MAX;
            free(more);
        }
        struct sv_raftwire_msg *out = NULL;
        size_t n = 0;
        CHECK_RC(sv_raftwire_decode(body, len, &out, &n, NULL, 0), 0);
        CHECK(n == done);
        for (size_t i = 0; i < n && i < done; i++)
            all_equal &= msg_eq(&msgs[off + i], &out[i]);
        sv_raftwire_free(out, n);
        free(body);
        off += done;
        bodies++;
    }
    CHECK(off == N && bodies > 10);
    CHECK(all_equal && all_within && all_maximal);

    /* The array header grows from fixarray to array 16 at 16 messages. */
    uint8_t *body = NULL;
    size_t len = 0, done = 0;
    for (size_t i = 0; i < 20; i++) {
        es[i].len = 0;
        es[i].data = NULL;
    }
    CHECK_RC(sv_raftwire_encode(msgs, 20, SIZE_MAX, &body, &len, &done), 0);
    CHECK(done == 20 && body[0] == 0xdc);
    free(body);
    CHECK_RC(sv_raftwire_encode(msgs, 15, SIZE_MAX, &body, &len, &done), 0);
    CHECK(done == 15 && body[0] == 0x9f);
    /* A body_max that fits 15 messages exactly, not 16 (whose header is 2 bytes longer). */
    size_t len15 = len;
    free(body);
    CHECK_RC(sv_raftwire_encode(msgs, 20, len15, &body, &len, &done), 0);
    CHECK(done == 15 && len == len15);
    free(body);
    CHECK_RC(sv_raftwire_encode(msgs, 20, len15 - 1, &body, &len, &done), 0);
    CHECK(done == 14 && len <= len15 - 1);
    free(body);
    /* No message: an empty array. */
    CHECK_RC(sv_raftwire_encode(msgs, 0, 1, &body, &len, &done), 0);
    CHECK(done == 0 && len == 1 && body[0] == 0x90);
    free(body);
    free(blob);
    free(es);
    free(msgs);

    /* At most SV_RAFTWIRE_MSGS_MAX per body, whatever body_max allows. */
    size_t many = (size_t)SV_RAFTWIRE_MSGS_MAX + 1;
    msgs = xcalloc(many, sizeof(*msgs));
    for (size_t i = 0; i < many; i++)
        msgs[i].msg.type = SV_RAFT_MSG_HEARTBEAT;
    CHECK_RC(sv_raftwire_encode(msgs, many, SIZE_MAX, &body, &len, &done), 0);
    CHECK(done == SV_RAFTWIRE_MSGS_MAX && body[0] == 0xdd);
    struct sv_raftwire_msg *out = NULL;
    size_t n = 0;
    CHECK_RC(sv_raftwire_decode(body, len, &out, &n, NULL, 0), 0);
    CHECK(n == SV_RAFTWIRE_MSGS_MAX);
    sv_raftwire_free(out, n);
    free(body);
    /* The decoder refuses one more, even when every byte is there. */
    struct sv_mp_writer w;
    sv_mp_writer_init(&w);
    sv_mp_put_array(&w, (uint32_t)many);
    for (size_t i = 0; i < many; i++) {
        sv_mp_put_array(&w, 2);
        sv_mp_put_uint(&w, 0);
        sv_mp_put_map(&w, 1);
        sv_mp_put_uint(&w, SV_RAFTWIRE_F_TYPE);
        sv_mp_put_uint(&w, SV_RAFT_MSG_HEARTBEAT);
    }
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_TOO_BIG);
    free(msgs);
}

static void test_too_big(void)
{
    struct sv_raftwire_msg msgs[SV_RAFT_MSG_TYPE_MAX_];
    every_type(msgs);
    struct sv_raftwire_msg *snap = &msgs[SV_RAFT_MSG_SNAPSHOT - 1];
    uint8_t *body = (uint8_t *)"sentinel";
    size_t len = 77, done = 77;
    CHECK_RC(sv_raftwire_encode(snap, 1, 100, &body, &len, &done), SV_RAFTWIRE_E_TOO_BIG);
    CHECK(strcmp((const char *)body, "sentinel") == 0 && len == 77 && done == 77);
    /* Exactly its size fits; one byte less does not. */
    CHECK_RC(encode_all(snap, 1, SIZE_MAX, &body, &len), 0);
    size_t exact = len;
    free(body);
    CHECK_RC(sv_raftwire_encode(snap, 1, exact, &body, &len, &done), 0);
    CHECK(len == exact && done == 1);
    free(body);
    CHECK_RC(sv_raftwire_encode(snap, 1, exact - 1, &body, &len, &done), SV_RAFTWIRE_E_TOO_BIG);
    /* A small message, then one that does not fit: the prefix is the small one. */
    struct sv_raftwire_msg two[2] = {msgs[SV_RAFT_MSG_TIMEOUT_NOW - 1], *snap};
    CHECK_RC(sv_raftwire_encode(two, 2, 100, &body, &len, &done), 0);
    CHECK(done == 1 && len <= 100);
    free(body);

    /* Over the limits a decoder enforces: never encoded. */
    struct sv_raftwire_msg bad = msgs[SV_RAFT_MSG_APPEND - 1];
    struct sv_raft_entry *lots = xcalloc(SV_RAFT_MSG_ENTRIES_MAX + 1, sizeof(*lots));
    bad.msg.entries = lots;
    bad.msg.n_entries = SV_RAFT_MSG_ENTRIES_MAX + 1;
    CHECK_RC(sv_raftwire_encode(&bad, 1, SIZE_MAX, &body, &len, &done), SV_RAFTWIRE_E_TOO_BIG);
    bad.msg.n_entries = SV_RAFT_MSG_ENTRIES_MAX;
    CHECK_RC(sv_raftwire_encode(&bad, 1, SIZE_MAX, &body, &len, &done), 0);
    CHECK(done == 1);
    struct sv_raftwire_msg *out = NULL;
    size_t n = 0;
    CHECK_RC(sv_raftwire_decode(body, len, &out, &n, NULL, 0), 0);
    CHECK(n == 1 && out[0].msg.n_entries == SV_RAFT_MSG_ENTRIES_MAX);
    sv_raftwire_free(out, n);
    free(body);
    free(lots);
    struct sv_raft_entry huge = {1, 1, SV_RAFT_ENTRY_NORMAL, SV_RAFT_ENTRY_BYTES_MAX + 1, payload};
    bad.msg.entries = &huge; /* its length is refused before any byte is read */
    bad.msg.n_entries = 1;
    CHECK_RC(sv_raftwire_encode(&bad, 1, SIZE_MAX, &body, &len, &done), SV_RAFTWIRE_E_TOO_BIG);
}

static void test_truncated(void)
{
    struct sv_raftwire_msg msgs[SV_RAFT_MSG_TYPE_MAX_ + 1];
    size_t n = every_type(msgs);
    everything(&msgs[n++]);
    uint8_t *body = NULL;
    size_t len = 0;
    CHECK_RC(encode_all(msgs, n, SIZE_MAX, &body, &len), 0);
    if (body == NULL)
        return;
    bool all_failed = true, all_clean = true;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *b = xmalloc(cut); /* exact size: ASan sees any over-read */
        memcpy(b, body, cut);
        struct sv_raftwire_msg *out = (struct sv_raftwire_msg *)&out;
        size_t got = 99;
        int rc = sv_raftwire_decode(b, cut, &out, &got, NULL, 0);
        all_failed &= rc == SV_RAFTWIRE_E_MALFORMED;
        all_clean &= out == NULL && got == 0;
        free(b);
    }
    CHECK(all_failed && all_clean);
    free(body);
}

static void test_malformed(void)
{
    struct sv_mp_writer w;
    /* Not an array; a message that is not [group, map]. */
    sv_mp_writer_init(&w);
    sv_mp_put_map(&w, 0);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    sv_mp_writer_init(&w);
    sv_mp_put_array(&w, 1);
    sv_mp_put_array(&w, 3);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_map(&w, 0);
    sv_mp_put_uint(&w, 1);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    sv_mp_writer_init(&w);
    sv_mp_put_array(&w, 1);
    sv_mp_put_array(&w, 2);
    sv_mp_put_int(&w, -1);
    sv_mp_put_map(&w, 0);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    /* No type; type 0; type past the last; type of the wrong msgpack type. */
    sv_mp_writer_init(&w);
    sv_mp_put_array(&w, 1);
    sv_mp_put_array(&w, 2);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_TERM);
    sv_mp_put_uint(&w, 1);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    start_one(&w, 1, 0);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    start_one(&w, 1, SV_RAFT_MSG_TYPE_MAX_);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    start_one(&w, 1, 256 + SV_RAFT_MSG_APPEND); /* would truncate to a valid uint8_t */
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    start_one(&w, 1, SV_RAFT_MSG_TYPE_MAX_ - 1);
    CHECK_RC(decode_w(&w), 0);
    sv_mp_writer_init(&w);
    sv_mp_put_array(&w, 1);
    sv_mp_put_array(&w, 2);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_map(&w, 1);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_TYPE);
    sv_mp_put_str(&w, "a", 1);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);

    /* Each field with a value of another type. */
    for (uint64_t id = 1; id < SV_RAFTWIRE_F_COUNT_; id++) {
        bool flag =
            id == SV_RAFTWIRE_F_REJECT || id == SV_RAFTWIRE_F_TRANSFER || id == SV_RAFTWIRE_F_DONE;
        bool uint = !flag && id != SV_RAFTWIRE_F_ENTRIES && id != SV_RAFTWIRE_F_SNAP &&
                    id != SV_RAFTWIRE_F_DATA;
        start_one(&w, 2, SV_RAFT_MSG_APPEND);
        sv_mp_put_uint(&w, id);
        sv_mp_put_nil(&w);
        CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
        start_one(&w, 2, SV_RAFT_MSG_APPEND);
        sv_mp_put_uint(&w, id);
        sv_mp_put_str(&w, "x", 1);
        CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
        start_one(&w, 2, SV_RAFT_MSG_APPEND);
        sv_mp_put_uint(&w, id);
        if (uint)
            sv_mp_put_int(&w, -1);
        else
            sv_mp_put_uint(&w, 1);
        CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
        if (flag) {
            start_one(&w, 2, SV_RAFT_MSG_APPEND);
            sv_mp_put_uint(&w, id);
            sv_mp_put_bool(&w, false); /* false is accepted though never written */
            CHECK_RC(decode_w(&w), 0);
        }
    }
    /* Duplicate field. */
    start_one(&w, 3, SV_RAFT_MSG_APPEND);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_TERM);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_TERM);
    sv_mp_put_uint(&w, 2);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    start_one(&w, 2, SV_RAFT_MSG_APPEND);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_TYPE);
    sv_mp_put_uint(&w, SV_RAFT_MSG_APPEND);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);

    /* Entries: wrong shape, unknown entry type, and a bad second entry (the
     * first one's array is freed on the way out: ASan checks). */
    start_one(&w, 2, SV_RAFT_MSG_APPEND);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_ENTRIES);
    sv_mp_put_array(&w, 1);
    sv_mp_put_array(&w, 3);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, 0);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    for (uint64_t type = 0; type <= 3; type++) {
        start_one(&w, 2, SV_RAFT_MSG_APPEND);
        sv_mp_put_uint(&w, SV_RAFTWIRE_F_ENTRIES);
        sv_mp_put_array(&w, 2);
        sv_mp_put_array(&w, 4);
        sv_mp_put_uint(&w, 1);
        sv_mp_put_uint(&w, 1);
        sv_mp_put_uint(&w, SV_RAFT_ENTRY_NORMAL);
        sv_mp_put_bin(&w, "abc", 3);
        sv_mp_put_array(&w, 4);
        sv_mp_put_uint(&w, 1);
        sv_mp_put_uint(&w, 2);
        sv_mp_put_uint(&w, type);
        sv_mp_put_bin(&w, NULL, 0);
        CHECK_RC(decode_w(&w), type <= SV_RAFT_ENTRY_NOOP ? 0 : SV_RAFTWIRE_E_MALFORMED);
    }
    start_one(&w, 2, SV_RAFT_MSG_APPEND);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_ENTRIES);
    sv_mp_put_array(&w, 2);
    sv_mp_put_array(&w, 4);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, 0);
    sv_mp_put_str(&w, "abc", 3); /* str, not bin */
    sv_mp_put_array(&w, 0);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    /* More entries than SV_RAFT_MSG_ENTRIES_MAX, every byte present. */
    start_one(&w, 2, SV_RAFT_MSG_APPEND);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_ENTRIES);
    sv_mp_put_array(&w, SV_RAFT_MSG_ENTRIES_MAX + 1);
    for (int i = 0; i <= SV_RAFT_MSG_ENTRIES_MAX; i++) {
        sv_mp_put_array(&w, 4);
        sv_mp_put_uint(&w, 1);
        sv_mp_put_uint(&w, (uint64_t)i + 1);
        sv_mp_put_uint(&w, 0);
        sv_mp_put_bin(&w, NULL, 0);
    }
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_TOO_BIG);

    /* Snapshot meta: wrong shape; a conf that does not decode. */
    start_one(&w, 2, SV_RAFT_MSG_SNAPSHOT);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_SNAP);
    sv_mp_put_array(&w, 2);
    sv_mp_put_uint(&w, 1);
    sv_mp_put_uint(&w, 1);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    struct sv_raft_conf c;
    make_conf(&c, 2);
    uint8_t cb[512];
    size_t cl = sv_raft_conf_encoded_len(&c);
    sv_raft_conf_encode(&c, cb);
    for (int variant = 0; variant < 4; variant++) {
        uint8_t bad[512];
        memcpy(bad, cb, cl);
        size_t bl = cl;
        if (variant == 1)
            bl--; /* short */
        else if (variant == 2)
            bad[0] ^= 0xff; /* magic */
        else if (variant == 3)
            memcpy(bad + cl - 9, bad + cl - 18, 9); /* the same server twice */
        start_one(&w, 2, SV_RAFT_MSG_SNAPSHOT);
        sv_mp_put_uint(&w, SV_RAFTWIRE_F_SNAP);
        sv_mp_put_array(&w, 3);
        sv_mp_put_uint(&w, 1);
        sv_mp_put_uint(&w, 1);
        sv_mp_put_bin(&w, bad, bl);
        CHECK_RC(decode_w(&w), variant == 0 ? 0 : SV_RAFTWIRE_E_MALFORMED);
    }

    /* Trailing bytes after the array. */
    start_one(&w, 1, SV_RAFT_MSG_APPEND);
    sv_mp_put_nil(&w);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
    CHECK_RC(sv_raftwire_decode((const uint8_t *)"", 0, &(struct sv_raftwire_msg *){NULL},
                                &(size_t){0}, NULL, 0),
             SV_RAFTWIRE_E_MALFORMED);
}

static void test_unknown_fields(void)
{
    struct sv_mp_writer w;
    start_one(&w, 4, SV_RAFT_MSG_HEARTBEAT);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_COUNT_);
    sv_mp_put_map(&w, 1);
    sv_mp_put_str(&w, "k", 1);
    sv_mp_put_array(&w, 2);
    sv_mp_put_nil(&w);
    sv_mp_put_int(&w, -5);
    sv_mp_put_uint(&w, SV_RAFTWIRE_F_COMMIT);
    sv_mp_put_uint(&w, 77);
    sv_mp_put_uint(&w, UINT64_MAX);
    sv_mp_put_bin(&w, "zz", 2);
    uint8_t *b = NULL;
    size_t len = 0;
    CHECK_RC(sv_mp_writer_take(&w, &b, &len), 0);
    struct sv_raftwire_msg *out = NULL;
    size_t n = 0;
    CHECK_RC(sv_raftwire_decode(b, len, &out, &n, NULL, 0), 0);
    CHECK(n == 1 && out[0].group == 1 && out[0].msg.type == SV_RAFT_MSG_HEARTBEAT &&
          out[0].msg.commit == 77 && out[0].msg.term == 0);
    sv_raftwire_free(out, n);
    free(b);

    /* A nesting bomb in an unknown field is refused without recursion blowing up. */
    start_one(&w, 2, SV_RAFT_MSG_HEARTBEAT);
    sv_mp_put_uint(&w, 99);
    for (int i = 0; i < 100000; i++)
        sv_mp_put_array(&w, 1);
    sv_mp_put_nil(&w);
    CHECK_RC(decode_w(&w), SV_RAFTWIRE_E_MALFORMED);
}

static void test_forged_counts(void)
{
    /* Message arrays claiming far more than the body holds. */
    static const uint8_t msgs32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x92, 0x01, 0x81, 0x00, 0x01};
    static const uint8_t msgs16[] = {0xdc, 0xff, 0xff, 0x92, 0x01, 0x81, 0x00, 0x01, 0xc0, 0xc0};
    /* 1000 messages in 1000 bytes: enough for the reader, not for a message each. */
    static uint8_t msgs_min[3 + 1000];
    msgs_min[0] = 0xdc;
    msgs_min[1] = 1000 >> 8;
    msgs_min[2] = 1000 & 0xff;
    struct sv_raftwire_msg *out = NULL;
    size_t n = 0;
    CHECK(sv_raftwire_decode(msgs32, sizeof(msgs32), &out, &n, NULL, 0) != 0);
    CHECK(out == NULL && n == 0);
    CHECK_RC(sv_raftwire_decode(msgs16, sizeof(msgs16), &out, &n, NULL, 0),
             SV_RAFTWIRE_E_MALFORMED);
    CHECK_RC(sv_raftwire_decode(msgs_min, sizeof(msgs_min), &out, &n, NULL, 0),
             SV_RAFTWIRE_E_MALFORMED);
    /* Entry arrays: 2^32-1, and the maximum with a few bytes. */
    static const uint8_t ents32[] = {0x91, 0x92, 0x01, 0x82, 0x00, 0x01, SV_RAFTWIRE_F_ENTRIES,
                                     0xdd, 0xff, 0xff, 0xff, 0xff, 0x94, 0x01,
                                     0x01, 0x00, 0xc4, 0x00};
    static const uint8_t ents16[] = {0x91, 0x92, 0x01, 0x82, 0x00, 0x01, SV_RAFTWIRE_F_ENTRIES,
                                     0xdc, 0x10, 0x00, 0x94, 0x01, 0x01, 0x00,
                                     0xc4, 0x00, 0x94, 0x01, 0x02, 0x00, 0xc4,
                                     0x00};
    CHECK(sv_raftwire_decode(ents32, sizeof(ents32), &out, &n, NULL, 0) != 0);
    CHECK_RC(sv_raftwire_decode(ents16, sizeof(ents16), &out, &n, NULL, 0),
             SV_RAFTWIRE_E_MALFORMED);
    /* A map32 of 2^32-1 fields and a bin32 of 4 GiB. */
    static const uint8_t map32[] = {0x91, 0x92, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01};
    static const uint8_t bin32[] = {0x91, 0x92, 0x01, 0x82, 0x00, 0x01, SV_RAFTWIRE_F_DATA,
                                    0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    CHECK_RC(sv_raftwire_decode(map32, sizeof(map32), &out, &n, NULL, 0), SV_RAFTWIRE_E_MALFORMED);
    CHECK_RC(sv_raftwire_decode(bin32, sizeof(bin32), &out, &n, NULL, 0), SV_RAFTWIRE_E_MALFORMED);
    CHECK(out == NULL && n == 0);
}

static void test_mutations(void)
{
    struct sv_raftwire_msg msgs[SV_RAFT_MSG_TYPE_MAX_ + 1];
    size_t count = every_type(msgs);
    everything(&msgs[count++]);
    /* Shorter data, so mutations land in the structure more often. */
    msgs[SV_RAFT_MSG_SNAPSHOT - 1].msg.len = 40;
    uint8_t *base = NULL;
    size_t base_len = 0;
    CHECK_RC(encode_all(msgs, count, SIZE_MAX, &base, &base_len), 0);
    if (base == NULL)
        return;
    rng_seed(1234567);
    int accepted = 0, rejected = 0;
    bool codes_ok = true, reencode_ok = true;
    enum { ITERATIONS = 5000 };
    for (int iter = 0; iter < ITERATIONS; iter++) {
        uint8_t *b = xmalloc(base_len);
        size_t len = base_len;
        memcpy(b, base, base_len);
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = (size_t)(rng() % len);
            switch (rng() % 5) {
            case 0:
                b[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1:
                b[at] = (uint8_t)rng();
                break;
            case 2: {
                static const uint8_t hot[] = {0xc1, 0xdd, 0xdf, 0xdc, 0xc6, 0xc4, 0xff,
                                              0x00, 0x0d, 0x90, 0x80, 0xc3, 0xcf};
                b[at] = hot[rng() % sizeof(hot)];
                break;
            }
            case 3:
                len = at;
                break;
            default:
                memmove(b + at, b + at + 1, len - at - 1);
                len--;
                break;
            }
        }
        uint8_t *exact = xmalloc(len);
        memcpy(exact, b, len);
        free(b);
        struct sv_raftwire_msg *out = NULL;
        size_t n = 0;
        char err[160];
        int rc = sv_raftwire_decode(exact, len, &out, &n, err, sizeof(err));
        codes_ok &= rc == 0 || rc == SV_RAFTWIRE_E_MALFORMED || rc == SV_RAFTWIRE_E_TOO_BIG;
        if (rc == 0) {
            accepted++;
            /* What is accepted is valid input for the encoder, and survives it. */
            uint8_t *again = NULL;
            size_t again_len = 0;
            int rc2 = encode_all(out, n, SIZE_MAX, &again, &again_len);
            reencode_ok &= rc2 == 0;
            if (rc2 == 0) {
                struct sv_raftwire_msg *back = NULL;
                size_t n2 = 0;
                reencode_ok &= sv_raftwire_decode(again, again_len, &back, &n2, NULL, 0) == 0;
                reencode_ok &= n2 == n;
                for (size_t i = 0; i < n && i < n2; i++)
                    reencode_ok &= msg_eq(&out[i], &back[i]);
                sv_raftwire_free(back, n2);
                free(again);
            }
        } else {
            rejected++;
        }
        sv_raftwire_free(out, n);
        free(exact);
    }
    CHECK(codes_ok && reencode_ok);
    CHECK(accepted > 0 && rejected > ITERATIONS / 2);
    free(base);
}

static void test_strerror(void)
{
    for (int e = SV_RAFTWIRE_E_MALFORMED; e < SV_RAFTWIRE_E_LAST_; e++) {
        const char *s = sv_raftwire_strerror(e);
        CHECK(strcmp(s, "unknown error") != 0 && s[0] != '\0');
        for (int f = SV_RAFTWIRE_E_MALFORMED; f < e; f++)
            CHECK(strcmp(s, sv_raftwire_strerror(f)) != 0);
    }
    CHECK(strcmp(sv_raftwire_strerror(0), "ok") == 0);
    CHECK(strcmp(sv_raftwire_strerror(-ENOMEM), strerror(ENOMEM)) == 0);
    CHECK(strcmp(sv_raftwire_strerror(SV_RAFTWIRE_E_LAST_), "unknown error") == 0);
}

/* Runner. */

static const struct sv_test tests[] = {
    {"roundtrip_types", test_roundtrip_types},
    {"big_entry", test_big_entry},
    {"batching", test_batching},
    {"too_big", test_too_big},
    {"truncated", test_truncated},
    {"malformed", test_malformed},
    {"unknown_fields", test_unknown_fields},
    {"forged_counts", test_forged_counts},
    {"mutations", test_mutations},
    {"strerror", test_strerror},
};

const struct sv_test_suite sv_test_suite = {
    .name = "raftwire-test",
    SV_TEST_TABLE(tests),
    .timeout_s = 120,
};
