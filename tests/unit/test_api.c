/* Unit tests of the API surface: message copies, the configuration codec, names, argument errors.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

static void msg_free_deferred(void *arg)
{
    sv_raft_msg_free(arg);
}

void test_msg_copy_free(void)
{
    uint8_t d0[3] = {1, 2, 3};
    uint8_t d2[5] = {9, 8, 7, 6, 5};
    struct sv_raft_entry ents[3] = {
        {.term = 4, .index = 10, .type = SV_RAFT_ENTRY_NORMAL, .len = 3, .data = d0},
        {.term = 4, .index = 11, .type = SV_RAFT_ENTRY_NOOP, .len = 0, .data = NULL},
        {.term = 5, .index = 12, .type = SV_RAFT_ENTRY_NORMAL, .len = 5, .data = d2},
    };
    struct sv_raft_msg src;
    memset(&src, 0, sizeof(src));
    src.type = SV_RAFT_MSG_APPEND;
    src.from = 1;
    src.to = 2;
    src.term = 5;
    src.index = 9;
    src.log_term = 4;
    src.commit = 8;
    src.n_entries = 3;
    src.entries = ents;

    static struct sv_raft_msg dst;
    CHECK_RC(sv_raft_msg_copy(&dst, &src), 0);
    sv_test_defer(msg_free_deferred, &dst);
    CHECK_EQ_INT(dst.type, SV_RAFT_MSG_APPEND);
    CHECK_EQ_U64(dst.from, 1);
    CHECK_EQ_U64(dst.to, 2);
    CHECK_EQ_U64(dst.term, 5);
    CHECK_EQ_U64(dst.index, 9);
    CHECK_EQ_U64(dst.log_term, 4);
    CHECK_EQ_U64(dst.commit, 8);
    CHECK_EQ_INT(dst.n_entries, 3);
    CHECK(dst.entries != NULL && dst.entries != ents);
    CHECK(dst.data == NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_U64(dst.entries[i].term, ents[i].term);
        CHECK_EQ_U64(dst.entries[i].index, ents[i].index);
        CHECK_EQ_INT(dst.entries[i].type, ents[i].type);
        CHECK_EQ_INT(dst.entries[i].len, ents[i].len);
    }
    CHECK(dst.entries[0].data != d0 && memcmp(dst.entries[0].data, d0, 3) == 0);
    CHECK(dst.entries[1].data == NULL);
    CHECK(dst.entries[2].data != d2 && memcmp(dst.entries[2].data, d2, 5) == 0);
    /* A deep copy: changing the source does not change it. */
    d0[0] = 77;
    ents[2].term = 99;
    CHECK_EQ_INT(dst.entries[0].data[0], 1);
    CHECK_EQ_U64(dst.entries[2].term, 5);

    sv_raft_msg_free(&dst);
    CHECK(dst.entries == NULL && dst.data == NULL);
    CHECK_EQ_INT(dst.n_entries, 0);
    CHECK_EQ_INT(dst.len, 0);
    sv_raft_msg_free(&dst); /* freeing twice is harmless */

    /* A snapshot chunk: its data is copied; meta by value. */
    uint8_t chunk[64];
    for (size_t i = 0; i < sizeof(chunk); i++) {
        chunk[i] = (uint8_t)(i * 3);
    }
    struct sv_raft_msg snap;
    memset(&snap, 0, sizeof(snap));
    snap.type = SV_RAFT_MSG_SNAPSHOT;
    snap.from = 3;
    snap.to = 1;
    snap.term = 7;
    snap.snap.index = 100;
    snap.snap.term = 6;
    snap.snap.conf.n = 1;
    snap.snap.conf.servers[0].id = 3;
    snap.snap.conf.servers[0].role = SV_RAFT_VOTER;
    snap.offset = 4096;
    snap.len = sizeof(chunk);
    snap.data = chunk;
    snap.done = true;
    CHECK_RC(sv_raft_msg_copy(&dst, &snap), 0);
    CHECK(dst.data != NULL && dst.data != chunk);
    CHECK(memcmp(dst.data, chunk, sizeof(chunk)) == 0);
    CHECK(dst.entries == NULL);
    CHECK_EQ_U64(dst.snap.index, 100);
    CHECK_EQ_U64(dst.snap.conf.servers[0].id, 3);
    CHECK_EQ_U64(dst.offset, 4096);
    CHECK(dst.done);
    chunk[0] = 0xff;
    CHECK_EQ_INT(dst.data[0], 0);
    sv_raft_msg_free(&dst);
    CHECK(dst.data == NULL);

    /* A message with nothing to copy; freeing a zeroed message is harmless. */
    struct sv_raft_msg hb;
    memset(&hb, 0, sizeof(hb));
    hb.type = SV_RAFT_MSG_HEARTBEAT;
    hb.ctx = 5;
    CHECK_RC(sv_raft_msg_copy(&dst, &hb), 0);
    CHECK(dst.entries == NULL && dst.data == NULL);
    CHECK_EQ_U64(dst.ctx, 5);
    sv_raft_msg_free(&dst);
    sv_test_undefer(msg_free_deferred, &dst);
    struct sv_raft_msg zero;
    memset(&zero, 0, sizeof(zero));
    sv_raft_msg_free(&zero);
}

void test_conf_codec(void)
{
    struct sv_raft_conf c;
    memset(&c, 0, sizeof(c));
    for (uint32_t i = 0; i < SV_RAFT_SERVERS_MAX; i++) {
        c.servers[i].id = 0x0102030405060700ull + i + 1;
        c.servers[i].role = i % 3 == 0 ? SV_RAFT_LEARNER : SV_RAFT_VOTER;
    }
    c.n = SV_RAFT_SERVERS_MAX;
    size_t len = sv_raft_conf_encoded_len(&c);
    CHECK_EQ_U64(len, 8 + 9 * SV_RAFT_SERVERS_MAX);
    uint8_t buf[8 + 9 * SV_RAFT_SERVERS_MAX + 1];
    sv_raft_conf_encode(&c, buf);
    CHECK(memcmp(buf, "SVC1", 4) == 0);
    CHECK_EQ_INT(buf[4], SV_RAFT_SERVERS_MAX); /* little endian */
    CHECK_EQ_INT(buf[8], 0x01);                /* low byte of the first id */
    CHECK_EQ_INT(buf[15], 0x01);

    struct sv_raft_conf out;
    memset(&out, 0xab, sizeof(out));
    CHECK_RC(sv_raft_conf_decode(buf, len, &out), 0);
    CHECK_EQ_INT(out.n, c.n);
    for (uint32_t i = 0; i < c.n; i++) {
        CHECK_EQ_U64(out.servers[i].id, c.servers[i].id);
        CHECK_EQ_INT(out.servers[i].role, c.servers[i].role);
        CHECK_EQ_INT(sv_raft_conf_role(&out, c.servers[i].id), c.servers[i].role);
    }
    CHECK_EQ_INT(sv_raft_conf_role(&out, 0), 0);
    CHECK_EQ_INT(sv_raft_conf_role(&out, 12345), 0);

    /* The empty configuration round-trips too. */
    struct sv_raft_conf empty;
    memset(&empty, 0, sizeof(empty));
    CHECK_EQ_U64(sv_raft_conf_encoded_len(&empty), 8);
    sv_raft_conf_encode(&empty, buf);
    CHECK_RC(sv_raft_conf_decode(buf, 8, &out), 0);
    CHECK_EQ_INT(out.n, 0);

    /* Corrupt inputs are refused and leave *out untouched. */
    struct sv_raft_conf three;
    memset(&three, 0, sizeof(three));
    three.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        three.servers[i].id = i + 1;
        three.servers[i].role = SV_RAFT_VOTER;
    }
    size_t l3 = sv_raft_conf_encoded_len(&three);
    uint8_t good[8 + 9 * 3];
    sv_raft_conf_encode(&three, good);
    uint8_t bad[sizeof(buf)];
    struct sv_raft_conf keep;
    memset(&keep, 0x5c, sizeof(keep));
    out = keep;

    CHECK_RC(sv_raft_conf_decode(good, 0, &out), SV_RAFT_E_CORRUPT);
    CHECK_RC(sv_raft_conf_decode(good, 7, &out), SV_RAFT_E_CORRUPT);
    CHECK_RC(sv_raft_conf_decode(good, l3 - 1, &out), SV_RAFT_E_CORRUPT); /* truncated */
    memcpy(bad, good, l3);
    bad[l3] = 0;
    CHECK_RC(sv_raft_conf_decode(bad, l3 + 1, &out), SV_RAFT_E_CORRUPT); /* trailing byte */
    memcpy(bad, good, l3);
    bad[0] = 'X';
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT); /* magic */
    memcpy(bad, good, l3);
    bad[4] = 4;
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT); /* count vs length */
    memcpy(bad, good, l3);
    bad[4] = 0xff;
    bad[7] = 0xff;
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT); /* huge count */
    memcpy(bad, good, l3);
    bad[8 + 9] = 1; /* second id = 1, a duplicate */
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT);
    memcpy(bad, good, l3);
    bad[8] = 0; /* first id = 0 */
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT);
    memcpy(bad, good, l3);
    bad[8 + 8] = 3; /* unknown role */
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT);
    memcpy(bad, good, l3);
    bad[8 + 8] = 0;
    CHECK_RC(sv_raft_conf_decode(bad, l3, &out), SV_RAFT_E_CORRUPT);
    CHECK(memcmp(&out, &keep, sizeof(out)) == 0);
    /* The untouched buffer still decodes. */
    CHECK_RC(sv_raft_conf_decode(good, l3, &out), 0);
    CHECK_EQ_INT(out.n, 3);
}

void test_strerror_and_names(void)
{
    CHECK(strcmp(sv_raft_strerror(SV_RAFT_OK), "ok") == 0);
    const char *seen[SV_RAFT_E_LAST_ - SV_RAFT_E_NOT_LEADER];
    int n = 0;
    for (int e = SV_RAFT_E_NOT_LEADER; e < SV_RAFT_E_LAST_; e++) {
        const char *s = sv_raft_strerror(e);
        CHECK(s != NULL && s[0] != '\0');
        CHECK_MSG(strcmp(s, "unknown") != 0 && strcmp(s, "ok") != 0, "code %d: %s", e, s);
        for (int k = 0; k < n; k++) {
            CHECK_MSG(strcmp(seen[k], s) != 0, "code %d repeats \"%s\"", e, s);
        }
        seen[n++] = s;
    }
    CHECK_EQ_INT(n, 9);
    CHECK(strcmp(sv_raft_strerror(SV_RAFT_E_NOT_LEADER), "not the leader") == 0);
    const int unknown[] = {1,       -1,     -998 - 1000, SV_RAFT_E_LAST_, SV_RAFT_E_LAST_ + 5,
                           INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        CHECK(strcmp(sv_raft_strerror(unknown[i]), "unknown") == 0);
    }

    CHECK(strcmp(sv_raft_role_name(SV_RAFT_FOLLOWER), "follower") == 0);
    CHECK(strcmp(sv_raft_role_name(SV_RAFT_PRE_CANDIDATE), "pre-candidate") == 0);
    CHECK(strcmp(sv_raft_role_name(SV_RAFT_CANDIDATE), "candidate") == 0);
    CHECK(strcmp(sv_raft_role_name(SV_RAFT_LEADER), "leader") == 0);
    CHECK(strcmp(sv_raft_role_name((enum sv_raft_role)42), "unknown") == 0);

    const char *names[SV_RAFT_MSG_TYPE_MAX_];
    for (int t = 1; t < SV_RAFT_MSG_TYPE_MAX_; t++) {
        names[t] = sv_raft_msg_type_name(t);
        CHECK_MSG(names[t] != NULL && strcmp(names[t], "unknown") != 0, "type %d has no name", t);
        for (int k = 1; k < t; k++) {
            CHECK_MSG(strcmp(names[k], names[t]) != 0, "types %d and %d share a name", k, t);
        }
    }
    CHECK(strcmp(sv_raft_msg_type_name(SV_RAFT_MSG_APPEND), "append") == 0);
    CHECK(strcmp(sv_raft_msg_type_name(SV_RAFT_MSG_READ_INDEX_RESP), "read-index-resp") == 0);
    CHECK(strcmp(sv_raft_msg_type_name(0), "unknown") == 0);
    CHECK(strcmp(sv_raft_msg_type_name(SV_RAFT_MSG_TYPE_MAX_), "unknown") == 0);
    CHECK(strcmp(sv_raft_msg_type_name(-3), "unknown") == 0);
}

static void raft_destroy_deferred(void *arg)
{
    sv_raft_destroy(arg);
}

/* sv_raft_create must refuse opts; on success the group is destroyed. */
static void check_bad_opts(const struct sv_raft_options *o)
{
    struct sv_raft *r = NULL;
    int rc = sv_raft_create(o, NULL, &r);
    if (rc == 0) {
        sv_raft_destroy(r);
    }
    CHECK_RC(rc, SV_RAFT_E_BAD_ARG);
}

void test_api_errors(void)
{
    struct sv_raft_options def;
    sv_raft_options_default(&def, 1);
    CHECK_EQ_U64(def.id, 1);
    CHECK_EQ_INT(def.election_ticks, 10);
    CHECK_EQ_INT(def.heartbeat_ticks, 1);
    CHECK(def.pre_vote && def.check_quorum && !def.lease_read);

    /* Invalid options. */
    struct sv_raft_options o = def;
    o.id = 0;
    check_bad_opts(&o);
    o = def;
    o.election_ticks = 1;
    check_bad_opts(&o);
    o = def;
    o.heartbeat_ticks = o.election_ticks;
    check_bad_opts(&o);
    o = def;
    o.heartbeat_ticks = 0;
    check_bad_opts(&o);
    o = def;
    o.max_inflight = 0;
    check_bad_opts(&o);
    o = def;
    o.max_inflight = SV_RAFT_INFLIGHT_MAX + 1;
    check_bad_opts(&o);
    o = def;
    o.max_msg_entries = 0;
    check_bad_opts(&o);
    o = def;
    o.max_msg_entries = SV_RAFT_MSG_ENTRIES_MAX + 1;
    check_bad_opts(&o);
    o = def;
    o.snapshot_chunk_bytes = 0;
    check_bad_opts(&o);
    o = def;
    o.lease_read = true;
    o.check_quorum = false;
    check_bad_opts(&o);

    /* Bootstrap. */
    struct sv_raft *r = NULL;
    CHECK_RC(sv_raft_create(&def, NULL, &r), 0);
    sv_test_defer(raft_destroy_deferred, r);
    struct sv_raft_status st;
    sv_raft_status(r, &st);
    CHECK_EQ_U64(st.term, 0);
    CHECK_EQ_U64(st.last_index, 0);
    CHECK(st.role == SV_RAFT_FOLLOWER);
    CHECK_RC(sv_raft_read_index(r, 1), SV_RAFT_E_NOT_LEADER);
    struct sv_raft_conf c;
    memset(&c, 0, sizeof(c));
    CHECK_RC(sv_raft_bootstrap(r, &c), SV_RAFT_E_BAD_CONF); /* no voter */
    c.n = 1;
    c.servers[0].id = 1;
    c.servers[0].role = SV_RAFT_LEARNER;
    CHECK_RC(sv_raft_bootstrap(r, &c), SV_RAFT_E_BAD_CONF); /* no voter */
    c.n = 2;
    c.servers[0].role = SV_RAFT_VOTER;
    c.servers[1].id = 1;
    c.servers[1].role = SV_RAFT_VOTER;
    CHECK_RC(sv_raft_bootstrap(r, &c), SV_RAFT_E_BAD_CONF); /* duplicate id */
    sv_raft_status(r, &st);
    CHECK_EQ_U64(st.last_index, 0);
    c.servers[1].id = 2;
    CHECK_RC(sv_raft_bootstrap(r, &c), 0);
    CHECK_RC(sv_raft_bootstrap(r, &c), SV_RAFT_E_BAD_ARG); /* has state */
    sv_raft_status(r, &st);
    CHECK_EQ_U64(st.last_index, 1);
    CHECK_EQ_U64(st.term, 1);
    CHECK_EQ_U64(st.conf_index, 1);
    CHECK_EQ_INT(st.conf.n, 2);
    CHECK(sv_raft_has_ready(r));

    /* Leader-only calls on a follower. */
    CHECK_RC(sv_raft_propose(r, "x", 1, NULL), SV_RAFT_E_NOT_LEADER);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, 3, NULL), SV_RAFT_E_NOT_LEADER);
    CHECK_RC(sv_raft_transfer_leader(r, 2), SV_RAFT_E_NOT_LEADER);
    /* Snapshots beyond the applied index, of index 0, or too big. */
    CHECK_RC(sv_raft_snapshot(r, 1, "s", 1, 0), SV_RAFT_E_BAD_ARG);
    CHECK_RC(sv_raft_snapshot(r, 0, "s", 1, 0), SV_RAFT_E_BAD_ARG);
    /* Introspection outside the log. */
    CHECK_EQ_U64(sv_raft_term_at(r, 1), 1);
    CHECK_EQ_U64(sv_raft_term_at(r, 2), 0);
    CHECK(sv_raft_entry_at(r, 1) != NULL);
    CHECK(sv_raft_entry_at(r, 2) == NULL);
    CHECK(sv_raft_entry_at(r, 0) == NULL);

    /* Malformed messages are refused; stale ones ignored. */
    struct sv_raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SV_RAFT_MSG_HEARTBEAT;
    m.from = 2;
    m.to = 1;
    m.term = 1;
    struct sv_raft_msg x = m;
    x.type = 0;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x = m;
    x.type = SV_RAFT_MSG_TYPE_MAX_;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x = m;
    x.from = 0;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x = m;
    x.from = 1; /* from itself */
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x = m;
    x.to = 3; /* for someone else */
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x = m;
    x.type = SV_RAFT_MSG_APPEND;
    x.n_entries = 1; /* entries missing */
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x.n_entries = SV_RAFT_MSG_ENTRIES_MAX + 1;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    struct sv_raft_entry e = {.term = 1, .index = 7, .type = SV_RAFT_ENTRY_NORMAL};
    x.n_entries = 1;
    x.entries = &e;
    x.index = 1;
    x.log_term = 1;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG); /* entry index not prev + 1 */
    e.index = 2;
    e.term = 5;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG); /* entry term above the message's */
    e.term = 1;
    e.type = SV_RAFT_ENTRY_CONF;
    e.len = 3;
    e.data = (uint8_t *)"bad";
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG); /* undecodable configuration */
    x = m;
    x.type = SV_RAFT_MSG_SNAPSHOT;
    x.snap.index = 0;
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    x.snap.index = 5;
    x.len = 10; /* data missing */
    CHECK_RC(sv_raft_step(r, &x), SV_RAFT_E_BAD_ARG);
    sv_raft_status(r, &st);
    CHECK_EQ_U64(st.term, 1);
    CHECK_EQ_U64(st.last_index, 1);
    CHECK_EQ_U64(st.leader, 0);
    x = m;
    x.term = 0; /* stale: ignored */
    CHECK_RC(sv_raft_step(r, &x), 0);
    sv_raft_status(r, &st);
    CHECK_EQ_U64(st.leader, 0);
    CHECK_EQ_U64(st.term, 1);

    /* Restore: inconsistent stored state is refused as corrupt. */
    uint8_t cbuf[8 + 9 * 2];
    sv_raft_conf_encode(&c, cbuf);
    struct sv_raft_entry ents[2] = {
        {.term = 1, .index = 1, .type = SV_RAFT_ENTRY_CONF, .len = sizeof(cbuf), .data = cbuf},
        {.term = 2, .index = 2, .type = SV_RAFT_ENTRY_NOOP},
    };
    struct sv_raft_restore rs;
    memset(&rs, 0, sizeof(rs));
    rs.hs.term = 2;
    rs.hs.vote = 1;
    rs.hs.commit = 2;
    rs.entries = ents;
    rs.n_entries = 2;
    struct sv_raft *r2 = NULL;
    CHECK_RC(sv_raft_create(&def, &rs, &r2), 0);
    sv_raft_status(r2, &st);
    CHECK_EQ_U64(st.term, 2);
    CHECK_EQ_U64(st.vote, 1);
    CHECK_EQ_U64(st.commit, 2);
    CHECK_EQ_U64(st.last_index, 2);
    CHECK_EQ_INT(st.conf.n, 2);
    sv_raft_destroy(r2);
    rs.hs.commit = 3; /* beyond the log */
    CHECK_RC(sv_raft_create(&def, &rs, &r2), SV_RAFT_E_CORRUPT);
    rs.hs.commit = 2;
    rs.hs.term = 1; /* an entry of a term above the stored term */
    CHECK_RC(sv_raft_create(&def, &rs, &r2), SV_RAFT_E_CORRUPT);
    rs.hs.term = 2;
    ents[1].index = 3; /* a gap */
    CHECK_RC(sv_raft_create(&def, &rs, &r2), SV_RAFT_E_CORRUPT);
    ents[1].index = 2;
    rs.applied = 2;
    rs.hs.commit = 1; /* applied beyond commit */
    CHECK_RC(sv_raft_create(&def, &rs, &r2), SV_RAFT_E_CORRUPT);
    sv_raft_destroy(NULL); /* harmless */

    /* A leader refuses oversized payloads without copying them. */
    struct h_cluster *h = h_new(1, NULL);
    sv_raft_campaign(h_r(h, 1));
    h_process_all(h);
    CHECK(h_st(h, 1).role == SV_RAFT_LEADER);
    static const uint8_t tiny[1];
    CHECK_RC(sv_raft_propose(h_r(h, 1), tiny, (size_t)SV_RAFT_ENTRY_BYTES_MAX + 1, NULL),
             SV_RAFT_E_TOO_BIG);
    uint64_t idx = h_propose_and_commit(h, 1, "ok", 2);
    CHECK_RC(sv_raft_snapshot(h_r(h, 1), idx, tiny, (uint64_t)SV_RAFT_SNAPSHOT_BYTES_MAX + 1, 0),
             SV_RAFT_E_TOO_BIG);
    CHECK_RC(sv_raft_snapshot(h_r(h, 1), idx + 1, tiny, 1, 0), SV_RAFT_E_BAD_ARG);
    CHECK_EQ_U64(h_st(h, 1).last_index, idx);
    CHECK_EQ_U64(h_st(h, 1).snapshot_index, 0);
}
