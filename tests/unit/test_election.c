/* Unit tests of leader election: one leader, durable votes, pre-vote, check-quorum, stale leaders.
 */
#include <string.h>

#include "harness.h"
#include "tests.h"

enum { ALL3 = H_BIT(1) | H_BIT(2) | H_BIT(3) };

static void check_stale_candidate_loses(void);

/* The two ids of a three-node cluster other than `not`. */
static uint32_t count_role(struct h_cluster *h, uint32_t n, enum sv_raft_role role)
{
    uint32_t cnt = 0;
    for (sv_raft_id id = 1; id <= n; id++) {
        cnt += h_st(h, id).role == role;
    }
    return cnt;
}

void test_election_one_leader(void)
{
    for (uint32_t n = 3; n <= 5; n += 2) {
        struct h_cluster *h = h_new(n, NULL);
        /* Nobody leads before an election timeout. */
        CHECK_EQ_INT(count_role(h, n, SV_RAFT_LEADER), 0);
        sv_raft_id l = h_tick_until_leader(h);
        struct sv_raft_status ls = h_st(h, l);
        CHECK_EQ_INT(count_role(h, n, SV_RAFT_LEADER), 1);
        CHECK_EQ_INT(count_role(h, n, SV_RAFT_FOLLOWER), n - 1);
        CHECK(ls.term >= 2);
        for (sv_raft_id id = 1; id <= n; id++) {
            struct sv_raft_status st = h_st(h, id);
            CHECK_EQ_U64(st.term, ls.term);
            CHECK_EQ_U64(st.leader, l);
        }
        /* A healthy leader keeps its term: heartbeats suppress new elections. */
        h_ticks(h, 100);
        CHECK_EQ_U64(h_leader(h, H_ALL), l);
        CHECK_EQ_U64(h_st(h, l).term, ls.term);
        CHECK_EQ_INT(count_role(h, n, SV_RAFT_LEADER), 1);
        /* Its first entry (the no-op of its term) is committed everywhere. */
        uint64_t idx = h_propose_and_commit(h, l, "x", 1);
        h_ticks(h, 2);
        h_check_logs_equal(h, H_ALL);
        for (sv_raft_id id = 1; id <= n; id++) {
            CHECK(h_applied_data(h, id, "x", 1));
            CHECK_LE_U64(idx, h_st(h, id).commit);
        }
    }
    check_stale_candidate_loses();
}

/* A candidate whose log lacks a committed entry must lose (§5.4.1). */
static void check_stale_candidate_loses(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.pre_vote = false;
    o.check_quorum = false;
    o.election_ticks = 1000;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_campaign(h_r(h, 1));
    h_deliver_all(h);
    CHECK_EQ_U64(h_leader(h, H_ALL), 1);
    h_isolate(h, 3);
    uint64_t idx = h_propose_and_commit(h, 1, "committed", 9);
    CHECK(h_st(h, 3).last_index < idx);
    h_heal_all(h);
    h_crash(h, 1);

    uint64_t granted = h->sent[2][3][SV_RAFT_MSG_VOTE_RESP];
    sv_raft_campaign(h_r(h, 3));
    h_process_all(h);
    CHECK(h_deliver_match(h, 3, 2, SV_RAFT_MSG_VOTE));
    CHECK_EQ_U64(h->sent[2][3][SV_RAFT_MSG_VOTE_RESP], granted + 1);
    CHECK(h_deliver_match(h, 2, 3, SV_RAFT_MSG_VOTE_RESP));
    CHECK(h_st(h, 3).role != SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h, 2).vote, 0);
    /* The up-to-date one wins the next term, and the entry survives. */
    sv_raft_campaign(h_r(h, 2));
    h_deliver_all(h);
    CHECK_EQ_U64(h_leader(h, H_BIT(2) | H_BIT(3)), 2);
    h_ticks(h, 2);
    CHECK(h_applied_data(h, 3, "committed", 9));
}

struct vote_watch {
    uint64_t granted;
    uint64_t bad;
};

/* Runs as each message is sent, i.e. after its ready batch was persisted. */
static void watch_votes(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    struct vote_watch *w = arg;
    if (m->type != SV_RAFT_MSG_VOTE_RESP || m->reject) {
        return;
    }
    w->granted++;
    const struct sv_raft_hard_state *hs = &h->nodes[m->from].disk.hs;
    if (hs->term != m->term || hs->vote != m->to) {
        w->bad++;
    }
}

void test_election_vote_persisted_before_resp(void)
{
    /* Drive the election by hand: no spontaneous timeouts, no stickiness. */
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.pre_vote = false;
    o.check_quorum = false;
    o.election_ticks = 1000;
    struct h_cluster *h = h_new(3, &o);
    struct vote_watch w = {0, 0};
    h->on_send = watch_votes;
    h->send_arg = &w;

    /* Votes and their responses must wait for the disk; appends need not. */
    struct sv_raft_msg probe;
    memset(&probe, 0, sizeof(probe));
    probe.type = SV_RAFT_MSG_VOTE_RESP;
    CHECK(!sv_raft_msg_may_send_early(&probe));
    probe.type = SV_RAFT_MSG_VOTE;
    CHECK(!sv_raft_msg_may_send_early(&probe));
    probe.type = SV_RAFT_MSG_APPEND_RESP;
    CHECK(!sv_raft_msg_may_send_early(&probe));
    probe.type = SV_RAFT_MSG_APPEND;
    CHECK(sv_raft_msg_may_send_early(&probe));

    sv_raft_campaign(h_r(h, 1));
    h_process_all(h);
    CHECK_EQ_U64(h->nodes[1].disk.hs.term, 2);
    CHECK_EQ_U64(h->nodes[1].disk.hs.vote, 1);
    CHECK_EQ_INT(h_queued(h, 1, 2, SV_RAFT_MSG_VOTE), 1);

    /* Node 2 grants: its disk must already say "term 2, voted for 1". */
    CHECK(h_deliver_match(h, 1, 2, SV_RAFT_MSG_VOTE));
    CHECK_EQ_INT(h_queued(h, 2, 1, SV_RAFT_MSG_VOTE_RESP), 1);
    CHECK_EQ_U64(w.granted, 1);
    CHECK_EQ_U64(w.bad, 0);
    CHECK_EQ_U64(h->nodes[2].disk.hs.term, 2);
    CHECK_EQ_U64(h->nodes[2].disk.hs.vote, 1);

    /* Crash before the response is delivered: the vote survives, so the
     * same term cannot give node 3 a second vote from node 2. */
    h_crash(h, 2);
    h_restart(h, 2);
    CHECK_EQ_U64(h_st(h, 2).vote, 1);
    CHECK_EQ_U64(h_st(h, 2).term, 2);
    sv_raft_campaign(h_r(h, 3));
    h_process_all(h);
    CHECK_EQ_U64(h_st(h, 3).term, 2);
    CHECK(h_deliver_match(h, 3, 2, SV_RAFT_MSG_VOTE));
    CHECK_EQ_U64(w.granted, 1); /* node 2 answered 3 with a rejection */
    CHECK_EQ_U64(h_st(h, 2).vote, 1);

    h_deliver_all(h);
    sv_raft_id l = h_wait_leader(h, H_ALL, 10);
    CHECK_EQ_U64(l, 1);
    CHECK_EQ_U64(h_st(h, 1).term, 2);
    CHECK(h_st(h, 3).role != SV_RAFT_LEADER);
    CHECK_EQ_U64(w.bad, 0);
    /* The harness also checked every vote against the disk at send time. */
    CHECK(h->nodes[2].vote_resp_checked >= 1);
}

void test_prevote_isolated_keeps_term(void)
{
    struct h_cluster *h = h_new(3, NULL); /* defaults: pre-vote and check-quorum on */
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    sv_raft_id f, g;
    h_others(l, &f, &g);

    h_isolate(h, f);
    uint64_t prevotes_before = h_sent(h, f, 0, SV_RAFT_MSG_PRE_VOTE);
    h_ticks(h, 100);
    /* f timed out and asked for pre-votes many times, never raising its term. */
    CHECK(h_sent(h, f, 0, SV_RAFT_MSG_PRE_VOTE) > prevotes_before);
    CHECK_EQ_U64(h_sent(h, f, 0, SV_RAFT_MSG_VOTE), 0);
    CHECK_EQ_U64(h_st(h, f).term, term);
    CHECK(h_st(h, f).role != SV_RAFT_LEADER && h_st(h, f).role != SV_RAFT_CANDIDATE);
    CHECK_EQ_U64(h_leader(h, H_BIT(l) | H_BIT(g)), l);

    /* Rejoining does not disturb the leader. */
    h_heal_all(h);
    h_ticks(h, 30);
    CHECK_EQ_U64(h_leader(h, H_ALL), l);
    for (sv_raft_id id = 1; id <= 3; id++) {
        CHECK_EQ_U64(h_st(h, id).term, term);
        CHECK_EQ_U64(h_st(h, id).leader, l);
    }
    h_propose_and_commit(h, l, "after", 5);
    h_ticks(h, 2); /* followers learn the commit index with the next heartbeat */
    h_check_logs_equal(h, H_ALL);
}

void test_prevote_off_raises_term(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.pre_vote = false;
    o.check_quorum = false;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    sv_raft_id f, g;
    h_others(l, &f, &g);

    h_isolate(h, f);
    h_ticks(h, 100);
    /* Without pre-vote every timeout of the isolated node starts a real election. */
    uint64_t fterm = h_st(h, f).term;
    CHECK(fterm > term + 2);
    CHECK(h_sent(h, f, 0, SV_RAFT_MSG_VOTE) > 0);
    CHECK_EQ_U64(h_sent(h, f, 0, SV_RAFT_MSG_PRE_VOTE), 0);
    CHECK_EQ_U64(h_st(h, l).term, term);

    /* Its higher term deposes the healthy leader when it rejoins. */
    h_heal_all(h);
    sv_raft_id l2 = h_wait_leader(h, H_ALL, 200);
    CHECK(h_st(h, l2).term >= fterm);
    CHECK(h_st(h, l2).term > term);
    h_propose_and_commit(h, l2, "after", 5);
    h_ticks(h, 2);
    h_check_logs_equal(h, H_ALL);
}

void test_check_quorum_step_down(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    uint32_t et = h->nodes[l].opts.election_ticks;
    sv_raft_id f, g;
    h_others(l, &f, &g);

    h_isolate(h, l);
    uint32_t t = 0;
    while (h_st(h, l).role == SV_RAFT_LEADER && t < 3 * et) {
        h_tick_all(h);
        t++;
    }
    /* Two check-quorum rounds at most: the first may still see old activity. */
    CHECK_MSG(h_st(h, l).role != SV_RAFT_LEADER, "isolated leader still leads after %u ticks", t);
    CHECK_LE_U64(t, 2 * et);
    CHECK_EQ_U64(h_st(h, l).leader, 0);
    CHECK_EQ_U64(h_st(h, l).term, term); /* pre-vote: stepping down does not bump the term */
    CHECK_RC(sv_raft_propose(h_r(h, l), "x", 1, NULL), SV_RAFT_E_NOT_LEADER);

    sv_raft_id l2 = h_wait_leader(h, H_BIT(f) | H_BIT(g), 200);
    CHECK(h_st(h, l2).term > term);
    h_heal_all(h);
    h_ticks(h, 5);
    CHECK_EQ_U64(h_st(h, l).leader, l2);
    CHECK_EQ_U64(h_st(h, l).term, h_st(h, l2).term);

    /* Control: without check-quorum an isolated leader never notices. */
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.check_quorum = false;
    struct h_cluster *h2 = h_new(3, &o);
    sv_raft_id m = h_tick_until_leader(h2);
    h_isolate(h2, m);
    h_ticks(h2, 10 * et);
    CHECK(h_st(h2, m).role == SV_RAFT_LEADER);
}

void test_stale_leader_rejected(void)
{
    /* Without check-quorum the cut-off leader keeps believing it leads. */
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.check_quorum = false;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    sv_raft_id f, g;
    h_others(l, &f, &g);

    h_isolate(h, l);
    uint64_t stale = h_propose(h, l, "stale", 5);
    h_deliver_all(h);
    sv_raft_id l2 = h_wait_leader(h, ALL3 & ~H_BIT(l), 300);
    uint64_t term2 = h_st(h, l2).term;
    CHECK(term2 > term);
    CHECK(h_st(h, l).role == SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h, l).term, term);
    CHECK(h_st(h, l).commit < stale);
    uint64_t fresh = h_propose_and_commit(h, l2, "fresh", 5);

    /* The stale leader's next heartbeat is answered with the new term: it steps down. */
    h_heal_all(h);
    uint64_t rej_f = h->append_rejects[f][l];
    uint64_t rej_g = h->append_rejects[g][l];
    h_tick(h, l);
    CHECK(h_queued(h, l, 0, SV_RAFT_MSG_HEARTBEAT) + h_queued(h, l, 0, SV_RAFT_MSG_APPEND) > 0);
    h_deliver_all(h);
    CHECK(h->append_rejects[f][l] + h->append_rejects[g][l] > rej_f + rej_g);
    CHECK(h_st(h, l).role == SV_RAFT_FOLLOWER);
    CHECK_EQ_U64(h_st(h, l).term, term2);
    CHECK_RC(sv_raft_propose(h_r(h, l), "y", 1, NULL), SV_RAFT_E_NOT_LEADER);

    /* Its uncommitted entry is replaced by the new leader's log. */
    h_ticks(h, 5);
    CHECK_EQ_U64(h_leader(h, H_ALL), l2);
    h_check_logs_equal(h, H_ALL);
    CHECK(sv_raft_term_at(h_r(h, l), stale) != term);
    for (sv_raft_id id = 1; id <= 3; id++) {
        CHECK(!h_applied_data(h, id, "stale", 5));
        CHECK(h_applied_data(h, id, "fresh", 5));
        CHECK_LE_U64(fresh, h_st(h, id).commit);
    }
}
