/* Unit tests of log replication: conflict repair, hint back-tracking, Figure 8, flow control. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

enum { ALL3 = H_BIT(1) | H_BIT(2) | H_BIT(3) };

/* Payload "<tag><i>" into buf; returns its length. */
static size_t payload(char *buf, size_t cap, const char *tag, int i)
{
    int n = snprintf(buf, cap, "%s%d", tag, i);
    CHECK(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

void test_log_repair_conflicts(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    h_propose_and_commit(h, l, "base", 4);
    h_ticks(h, 2);
    uint64_t base = h_st(h, l).last_index;

    /* The leader is cut off and appends entries nobody else gets. */
    h_isolate(h, l);
    char buf[32];
    for (int i = 0; i < 5; i++) {
        h_propose(h, l, buf, payload(buf, sizeof(buf), "old", i));
    }
    h_deliver_all(h);
    CHECK_EQ_U64(h_st(h, l).last_index, base + 5);

    /* The others elect a leader and commit a shorter, different suffix. */
    sv_raft_id l2 = h_wait_leader(h, ALL3 & ~H_BIT(l), 300);
    uint64_t term2 = h_st(h, l2).term;
    CHECK(term2 > term);
    for (int i = 0; i < 2; i++) {
        h_propose_and_commit(h, l2, buf, payload(buf, sizeof(buf), "new", i));
    }
    CHECK_EQ_U64(h_st(h, l2).last_index, base + 3); /* no-op + 2 */
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, l), base + 1), term);
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, l2), base + 1), term2);

    /* Healed, the old leader's divergent tail is truncated and replaced. */
    h_heal_all(h);
    h_ticks(h, 10);
    CHECK_EQ_U64(h_leader(h, H_ALL), l2);
    h_check_logs_equal(h, H_ALL);
    CHECK_EQ_U64(h_st(h, l).last_index, base + 3);
    for (uint64_t i = base + 1; i <= base + 3; i++) {
        CHECK_EQ_U64(sv_raft_term_at(h_r(h, l), i), term2);
    }
    for (int i = 0; i < 5; i++) {
        size_t n = payload(buf, sizeof(buf), "old", i);
        for (sv_raft_id id = 1; id <= 3; id++) {
            CHECK(!h_applied_data(h, id, buf, n));
        }
    }
    for (int i = 0; i < 2; i++) {
        size_t n = payload(buf, sizeof(buf), "new", i);
        CHECK(h_applied_data(h, l, buf, n));
    }
}

void test_log_repair_few_rejections(void)
{
    enum { OLD = 200, NEW = 100 };
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id a = h_tick_until_leader(h);
    sv_raft_id b, c;
    h_others(a, &b, &c);
    uint64_t base = h_st(h, a).last_index;

    /* a, cut off, appends OLD entries of its term. */
    h_isolate(h, a);
    char buf[32];
    for (int i = 0; i < OLD; i++) {
        h_propose(h, a, buf, payload(buf, sizeof(buf), "old", i));
    }
    h_deliver_all(h);

    /* b and c commit NEW entries of a later term... */
    sv_raft_id l2 = h_wait_leader(h, H_BIT(b) | H_BIT(c), 300);
    for (int i = 0; i < NEW; i++) {
        h_propose(h, l2, buf, payload(buf, sizeof(buf), "new", i));
    }
    h_deliver_all(h);
    CHECK_LE_U64(base + NEW, h_st(h, l2).commit);

    /* ...and leadership moves to the other one, whose view of a starts at
     * its own last index: far ahead of where a's log agrees with it. */
    sv_raft_id l3 = l2 == b ? c : b;
    CHECK_RC(sv_raft_transfer_leader(h_r(h, l2), l3), 0);
    h_deliver_all(h);
    CHECK(h_st(h, l3).role == SV_RAFT_LEADER);
    h_wait_leader(h, H_BIT(b) | H_BIT(c), 20);
    uint64_t last = h_st(h, l3).last_index;
    CHECK(last >= base + NEW + 2);
    CHECK(h_st(h, a).last_index >= last); /* a's log is longer and disagrees from base+1 */

    /* One term hint jumps over the whole divergent range. */
    h_heal_all(h);
    uint64_t before = h->append_rejects[a][l3];
    h_ticks(h, 10);
    uint64_t rejects = h->append_rejects[a][l3] - before;
    sv_test_log("divergent entries: %d, rejections: %" PRIu64, OLD, rejects);
    CHECK(rejects >= 1);
    CHECK_LE_U64(rejects, 3);
    h_check_logs_equal(h, H_ALL);
    CHECK_EQ_U64(h_st(h, a).last_index, h_st(h, l3).last_index);
    CHECK(!h_applied_data(h, a, "old0", 4));
    CHECK(h_applied_data(h, a, "new99", 5));

    /* A follower that is merely behind needs one rejection too: it answers
     * with its last index. */
    sv_raft_id f = a;
    h_crash(h, f);
    for (int i = 0; i < 300; i++) {
        h_propose(h, l3, buf, payload(buf, sizeof(buf), "more", i));
    }
    h_deliver_all(h);
    h_restart(h, f);
    before = h->append_rejects[f][l3];
    h_ticks(h, 10);
    h_check_logs_equal(h, H_ALL);
    CHECK_LE_U64(h->append_rejects[f][l3] - before, 3);
}

/* Figure 8: the entry of term 2 at index 3 must not be committed by term 4's leader by counting. */
static enum h_verdict fig8_filter(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    (void)arg;
    /* Node 1's entry of index 4 (its term-4 no-op) never reaches node 3 once
     * node 3 holds the old entry at index 3. */
    if (m->type == SV_RAFT_MSG_APPEND && m->from == 1 && m->to == 3 && m->n_entries > 0 &&
        m->index + m->n_entries >= 4 && sv_raft_term_at(h->nodes[3].r, 3) == 2) {
        return H_DROP;
    }
    return H_DELIVER;
}

void test_figure8_old_term_not_committed(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.pre_vote = false;
    o.check_quorum = false;
    o.election_ticks = 1000; /* elections only when the test says so */
    o.max_msg_entries = 1;
    struct h_cluster *h = h_new(3, &o);

    /* (a) node 1 leads term 2 and appends e at index 3, alone. */
    sv_raft_campaign(h_r(h, 1));
    h_deliver_all(h);
    CHECK_EQ_U64(h_leader(h, H_ALL), 1);
    CHECK_EQ_U64(h_st(h, 1).term, 2);
    h_isolate(h, 1);
    CHECK_EQ_U64(h_propose(h, 1, "e", 1), 3);
    h_deliver_all(h);
    h_crash(h, 1);
    h_heal_all(h);

    /* (b) node 2 leads term 3 with node 3's vote; its no-op at index 3 stays on its disk. */
    sv_raft_campaign(h_r(h, 2));
    h_process_all(h);
    CHECK(h_deliver_match(h, 2, 3, SV_RAFT_MSG_VOTE));
    CHECK(h_deliver_match(h, 3, 2, SV_RAFT_MSG_VOTE_RESP));
    CHECK(h_st(h, 2).role == SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h, 2).term, 3);
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, 2), 3), 3);
    h_drop_queued(h, 2, 0, 0);
    h_crash(h, 2);

    /* (c) node 1 comes back and leads term 4; it copies e to node 3, so a
     * majority holds e, but e is of term 2 and must stay uncommitted. */
    h_restart(h, 1);
    h->filter = fig8_filter;
    sv_raft_campaign(h_r(h, 1)); /* term 3: node 3 already voted for 2 */
    h_deliver_all(h);
    CHECK(h_st(h, 1).role == SV_RAFT_CANDIDATE);
    sv_raft_campaign(h_r(h, 1)); /* term 4 */
    h_deliver_all(h);
    CHECK(h_st(h, 1).role == SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h, 1).term, 4);
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, 1), 3), 2);
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, 3), 3), 2); /* majority {1, 3} holds e */
    CHECK_EQ_U64(h_st(h, 1).last_index, 4);
    CHECK_EQ_U64(h_st(h, 3).last_index, 3);
    CHECK_EQ_U64(h_st(h, 1).commit, 2);
    CHECK_EQ_U64(h_st(h, 3).commit, 2);
    CHECK(!h_applied_data(h, 1, "e", 1));

    /* (d) why: node 2 can still win term 5 with node 3's vote and overwrite e. */
    h->filter = NULL;
    h_crash(h, 1);
    h_restart(h, 2);
    sv_raft_campaign(h_r(h, 2)); /* term 4: node 3 voted for 1 */
    h_deliver_all(h);
    sv_raft_campaign(h_r(h, 2)); /* term 5 */
    h_deliver_all(h);
    CHECK(h_st(h, 2).role == SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h, 2).term, 5);
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, 3), 3), 3);
    CHECK_LE_U64(4, h_st(h, 2).commit);
    CHECK(!h_applied_data(h, 2, "e", 1));
    CHECK(!h_applied_data(h, 3, "e", 1));

    /* (e) node 1 converges to the committed log. */
    h_restart(h, 1);
    h_propose_and_commit(h, 2, "after", 5);
    h_ticks(h, 3);
    h_check_logs_equal(h, H_ALL);
    CHECK_EQ_U64(sv_raft_term_at(h_r(h, 1), 3), 3);
    CHECK(!h_applied_data(h, 1, "e", 1));
    CHECK(h_applied_data(h, 1, "after", 5));
}

struct batch_count {
    sv_raft_id from, to;
    uint32_t msgs;
    uint64_t entries;
    uint32_t max_n;
    uint64_t max_bytes;
};

static void count_appends(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    (void)h;
    struct batch_count *c = arg;
    if (m->type != SV_RAFT_MSG_APPEND || m->from != c->from || m->to != c->to ||
        m->n_entries == 0) {
        return;
    }
    c->msgs++;
    c->entries += m->n_entries;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        bytes += m->entries[i].len;
    }
    if (m->n_entries > c->max_n) {
        c->max_n = m->n_entries;
    }
    if (bytes > c->max_bytes) {
        c->max_bytes = bytes;
    }
}

void test_flow_inflight_limit(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.max_inflight = 4;
    o.max_msg_entries = 1;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    h_ticks(h, 2);

    /* f's answers are lost (f -> l cut): its window never drains. */
    h->cut[f][l] = true;
    uint64_t before = h_st(h, l).last_index;
    struct batch_count c;
    memset(&c, 0, sizeof(c));
    c.from = l;
    c.to = f;
    h->on_send = count_appends;
    h->send_arg = &c;
    char buf[32];
    for (int i = 0; i < 20; i++) {
        h_propose(h, l, buf, payload(buf, sizeof(buf), "p", i));
    }
    h_process(h, l);
    CHECK_EQ_INT(c.msgs, 4);
    CHECK_EQ_U64(c.entries, 4);
    CHECK_EQ_INT(c.max_n, 1);

    /* Everything reaches g (whose acks free its window) and commits. */
    h_deliver_all(h);
    CHECK_EQ_U64(h_st(h, l).commit, before + 20);
    CHECK_EQ_U64(h_st(h, g).last_index, before + 20);
    /* f got exactly the first window: no more entries without acks. */
    CHECK_EQ_INT(c.msgs, 4);
    CHECK_EQ_U64(h_st(h, f).last_index, before + 4);

    /* Heartbeat rounds do not open the window either. */
    h_ticks(h, 3);
    CHECK_EQ_INT(c.msgs, 4);
    CHECK_EQ_U64(h_st(h, f).last_index, before + 4);

    /* Once f's answers flow again it catches up. */
    h_heal_all(h);
    h_ticks(h, 5);
    h_check_logs_equal(h, H_ALL);
    CHECK_EQ_U64(h_st(h, f).last_index, before + 20);
    CHECK(c.msgs > 4);
}

void test_flow_batching(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.max_msg_entries = 8;
    o.max_msg_bytes = 100;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    h_ticks(h, 2);

    struct batch_count c;
    memset(&c, 0, sizeof(c));
    c.from = l;
    c.to = f;
    h->on_send = count_appends;
    h->send_arg = &c;

    /* 50 small entries proposed together: batches of max_msg_entries. */
    for (int i = 0; i < 50; i++) {
        h_propose(h, l, "abcd", 4);
    }
    h_deliver_all(h);
    CHECK_EQ_U64(c.entries, 50);
    CHECK_EQ_INT(c.msgs, 7); /* ceil(50 / 8) */
    CHECK_EQ_INT(c.max_n, 8);
    h_ticks(h, 2); /* followers learn the last commit index with a heartbeat */
    CHECK_EQ_U64(c.entries, 50);
    h_check_logs_equal(h, H_ALL);

    /* 10 entries of 40 bytes: max_msg_bytes = 100 allows two per message. */
    memset(&c, 0, sizeof(c));
    c.from = l;
    c.to = f;
    char big[40];
    memset(big, 'z', sizeof(big));
    for (int i = 0; i < 10; i++) {
        h_propose(h, l, big, sizeof(big));
    }
    h_deliver_all(h);
    CHECK_EQ_U64(c.entries, 10);
    CHECK_EQ_INT(c.msgs, 5);
    CHECK_EQ_INT(c.max_n, 2);
    CHECK_LE_U64(c.max_bytes, 100);

    /* One entry over max_msg_bytes still goes out, alone. */
    memset(&c, 0, sizeof(c));
    c.from = l;
    c.to = f;
    char huge[300];
    memset(huge, 'q', sizeof(huge));
    h_propose(h, l, huge, sizeof(huge));
    h_propose(h, l, huge, sizeof(huge));
    h_deliver_all(h);
    CHECK_EQ_U64(c.entries, 2);
    CHECK_EQ_INT(c.msgs, 2);
    h_ticks(h, 2);
    h_check_logs_equal(h, H_ALL);
}
