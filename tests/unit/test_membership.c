/* Unit tests of membership changes: learners, promotion, a leader removing itself, the rules. */
#include <string.h>

#include "harness.h"
#include "tests.h"

enum { ALL3 = H_BIT(1) | H_BIT(2) | H_BIT(3) };

/* Role of id in the latest configuration known to node at. */
static int role_of(struct h_cluster *h, sv_raft_id at, sv_raft_id id)
{
    struct sv_raft_status st = h_st(h, at);
    return sv_raft_conf_role(&st.conf, id);
}

void test_learner_not_in_quorum(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    h_propose_and_commit(h, l, "before", 6);

    /* A brand-new server joins as a learner and catches up. */
    h_add_node(h, 4, NULL);
    CHECK_EQ_U64(h_st(h, 4).last_index, 0);
    h_conf_and_commit(h, l, SV_RAFT_ADD_LEARNER, 4);
    /* Catch-up under writes (the idle case is learner_catches_up_idle). */
    h_propose_and_commit(h, l, "before2", 7);
    h_ticks(h, 3);
    CHECK_EQ_INT(role_of(h, l, 4), SV_RAFT_LEARNER);
    CHECK_EQ_INT(role_of(h, 4, 4), SV_RAFT_LEARNER);
    h_check_logs_equal(h, H_ALL);
    CHECK(h_applied_data(h, 4, "before", 6));

    /* Cut the leader and the learner off from both voting followers: the
     * learner stores a new entry, but leader + learner is no quorum. */
    h_partition(h, H_BIT(l) | H_BIT(4));
    uint64_t idx = h_propose(h, l, "solo", 4);
    h_deliver_all(h);
    CHECK_LE_U64(idx, h_st(h, 4).last_index);
    CHECK(h_st(h, l).commit < idx);
    CHECK(!h_applied_data(h, 4, "solo", 4));

    /* A learner never campaigns. */
    uint64_t term4 = h_st(h, 4).term;
    for (int i = 0; i < 100; i++) {
        h_tick(h, 4);
    }
    CHECK(h_st(h, 4).role == SV_RAFT_FOLLOWER);
    CHECK_EQ_U64(h_st(h, 4).term, term4);
    CHECK_EQ_U64(h_sent(h, 4, 0, SV_RAFT_MSG_PRE_VOTE) + h_sent(h, 4, 0, SV_RAFT_MSG_VOTE), 0);

    /* With the voters back, the entry commits. */
    h_heal_all(h);
    h_ticks(h, 3);
    CHECK_EQ_U64(h_leader(h, H_ALL), l);
    CHECK_LE_U64(idx, h_st(h, l).commit);
    CHECK(h_applied_data(h, 4, "solo", 4));

    /* Promoted, the learner counts: with one voter down, 3 of 4 commit... */
    h_conf_and_commit(h, l, SV_RAFT_PROMOTE, 4);
    h_ticks(h, 2);
    for (sv_raft_id id = 1; id <= 4; id++) {
        CHECK_EQ_INT(role_of(h, id, 4), SV_RAFT_VOTER);
    }
    h_crash(h, f);
    uint64_t i2 = h_propose_and_commit(h, l, "three", 5);
    CHECK(h_applied_data(h, 4, "three", 5) || h_st(h, 4).last_index >= i2);
    /* ...and with two down, 2 of 4 is no longer a quorum. */
    h_crash(h, g);
    uint64_t i3 = h_propose(h, l, "two", 3);
    h_deliver_all(h);
    CHECK_LE_U64(i3, h_st(h, 4).last_index);
    CHECK(h_st(h, l).commit < i3);
}

void test_learner_catches_up_idle(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    h_propose_and_commit(h, l, "data", 4);
    h_ticks(h, 2);

    /* A learner added to a group with no further writes must still receive
     * the log, through the heartbeat rounds' probes (thesis §4.2.1: new
     * servers catch up before they are promoted). */
    h_add_node(h, 4, NULL);
    uint64_t idx = h_conf_and_commit(h, l, SV_RAFT_ADD_LEARNER, 4);
    uint32_t t = 0;
    while (h_st(h, 4).last_index < idx && t < 50) {
        h_tick_all(h);
        t++;
    }
    CHECK_MSG(h_st(h, 4).last_index >= idx,
              "learner still has %" PRIu64 " entries of %" PRIu64 " after %u heartbeat rounds "
              "(%" PRIu64 " appends, %" PRIu64 " heartbeats answered)",
              h_st(h, 4).last_index, idx, t, h_sent(h, l, 4, SV_RAFT_MSG_APPEND),
              h_sent(h, 4, l, SV_RAFT_MSG_HEARTBEAT_RESP));
    h_ticks(h, 2);
    h_check_logs_equal(h, H_ALL);
    CHECK_EQ_INT(role_of(h, 4, 4), SV_RAFT_LEARNER);
    CHECK(h_applied_data(h, 4, "data", 4));
}

void test_leader_removes_itself(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    sv_raft_id f, g;
    h_others(l, &f, &g);
    h_propose_and_commit(h, l, "x", 1);
    h_ticks(h, 2);

    uint64_t idx = h_conf_and_commit(h, l, SV_RAFT_REMOVE, l);
    /* Once the removal committed the old leader stepped down and handed over. */
    struct sv_raft_status st = h_st(h, l);
    CHECK(st.role == SV_RAFT_FOLLOWER);
    CHECK_EQ_INT(sv_raft_conf_role(&st.conf, l), 0);
    CHECK_LE_U64(idx, st.commit);
    CHECK_EQ_U64(h_sent(h, l, 0, SV_RAFT_MSG_TIMEOUT_NOW), 1);
    CHECK_RC(sv_raft_propose(h_r(h, l), "y", 1, NULL), SV_RAFT_E_NOT_LEADER);

    sv_raft_id l2 = h_wait_leader(h, H_BIT(f) | H_BIT(g), 5);
    CHECK(l2 != l);
    uint64_t term2 = h_st(h, l2).term;
    CHECK(term2 > term);
    CHECK_EQ_INT(h_st(h, l2).conf.n, 2);
    CHECK_EQ_INT(role_of(h, l2, l), 0);
    h_propose_and_commit(h, l2, "z", 1);

    /* The removed server stays quiet and does not disturb the new group. */
    uint64_t votes = h_sent(h, l, 0, SV_RAFT_MSG_PRE_VOTE) + h_sent(h, l, 0, SV_RAFT_MSG_VOTE);
    h_ticks(h, 100);
    CHECK_EQ_U64(h_sent(h, l, 0, SV_RAFT_MSG_PRE_VOTE) + h_sent(h, l, 0, SV_RAFT_MSG_VOTE), votes);
    CHECK_EQ_U64(h_leader(h, H_BIT(f) | H_BIT(g)), l2);
    CHECK_EQ_U64(h_st(h, l2).term, term2);
    CHECK(h_st(h, l).role == SV_RAFT_FOLLOWER);
    h_check_logs_equal(h, H_BIT(f) | H_BIT(g));
    CHECK(h_applied_data(h, f, "z", 1) && h_applied_data(h, g, "z", 1));
}

void test_conf_change_rules(void)
{
    /* A fresh group's bootstrap configuration counts as pending until the
     * first leader commits an entry. */
    struct h_cluster *h1 = h_new(1, NULL);
    sv_raft_campaign(h_r(h1, 1));
    CHECK(h_st(h1, 1).role == SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h1, 1).commit, 0);
    CHECK_RC(sv_raft_propose_conf(h_r(h1, 1), SV_RAFT_ADD_LEARNER, 2, NULL),
             SV_RAFT_E_CONF_PENDING);
    h_process_all(h1);
    CHECK_EQ_U64(h_st(h1, 1).commit, 2);
    /* The last voter can be neither removed nor demoted. */
    CHECK_RC(sv_raft_propose_conf(h_r(h1, 1), SV_RAFT_REMOVE, 1, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(h_r(h1, 1), SV_RAFT_DEMOTE, 1, NULL), SV_RAFT_E_BAD_CONF);
    /* A single voter commits its own change at once. */
    uint64_t ci = 0;
    CHECK_RC(sv_raft_propose_conf(h_r(h1, 1), SV_RAFT_ADD_LEARNER, 2, &ci), 0);
    h_process_all(h1);
    CHECK_LE_U64(ci, h_st(h1, 1).commit);

    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    struct sv_raft *r = h_r(h, l);
    CHECK_RC(sv_raft_propose_conf(h_r(h, f), SV_RAFT_ADD_LEARNER, 4, NULL), SV_RAFT_E_NOT_LEADER);

    /* One change at a time; it takes effect as soon as it is appended. */
    uint64_t idx = 0;
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, 4, &idx), 0);
    struct sv_raft_status st = h_st(h, l);
    CHECK_EQ_U64(st.conf_index, idx);
    CHECK(st.commit < idx);
    CHECK_EQ_INT(sv_raft_conf_role(&st.conf, 4), SV_RAFT_LEARNER);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, 5, NULL), SV_RAFT_E_CONF_PENDING);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_REMOVE, 4, NULL), SV_RAFT_E_CONF_PENDING);
    h_deliver_all(h);
    CHECK_LE_U64(idx, h_st(h, l).commit);

    /* Invalid changes for the current configuration. */
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, 4, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, f, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, 0, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_PROMOTE, f, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_PROMOTE, 6, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_DEMOTE, 4, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_REMOVE, 7, NULL), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_propose_conf(r, (enum sv_raft_conf_change)99, 4, NULL), SV_RAFT_E_BAD_ARG);
    /* None of the refused calls appended anything. */
    CHECK_EQ_U64(h_st(h, l).last_index, idx);
    CHECK_EQ_U64(h_st(h, l).conf_index, idx);

    /* Valid ones, one after another. */
    h_conf_and_commit(h, l, SV_RAFT_DEMOTE, g);
    CHECK_EQ_INT(role_of(h, l, g), SV_RAFT_LEARNER);
    h_conf_and_commit(h, l, SV_RAFT_PROMOTE, g);
    CHECK_EQ_INT(role_of(h, l, g), SV_RAFT_VOTER);
    h_conf_and_commit(h, l, SV_RAFT_REMOVE, 4);
    CHECK_EQ_INT(h_st(h, l).conf.n, 3);
    CHECK_EQ_INT(role_of(h, l, 4), 0);

    /* NOT_READY: a new leader must first commit an entry of its own term
     * (the configuration itself is committed). */
    h_ticks(h, 2);
    CHECK_RC(sv_raft_transfer_leader(r, g), 0);
    h_process_all(h);
    CHECK(h_deliver_match(h, l, g, SV_RAFT_MSG_TIMEOUT_NOW));
    CHECK(h_deliver_match(h, g, f, SV_RAFT_MSG_VOTE));
    CHECK(h_deliver_match(h, f, g, SV_RAFT_MSG_VOTE_RESP));
    CHECK(h_st(h, g).role == SV_RAFT_LEADER);
    CHECK(h_st(h, g).conf_index <= h_st(h, g).commit);
    CHECK(sv_raft_term_at(h_r(h, g), h_st(h, g).commit) < h_st(h, g).term);
    CHECK_RC(sv_raft_propose_conf(h_r(h, g), SV_RAFT_ADD_LEARNER, 5, NULL), SV_RAFT_E_NOT_READY);
    h_deliver_all(h);
    CHECK_EQ_U64(h_leader(h, H_ALL), g);
    h_conf_and_commit(h, g, SV_RAFT_ADD_LEARNER, 5);
    h_conf_and_commit(h, g, SV_RAFT_REMOVE, 5);
    CHECK_RC(sv_raft_transfer_leader(h_r(h, g), l), 0);
    h_deliver_all(h);
    h_ticks(h, 2);
    CHECK_EQ_U64(h_leader(h, H_ALL), l);

    /* No change while leadership is being transferred. */
    h_ticks(h, 2);
    CHECK_RC(sv_raft_transfer_leader(r, f), 0);
    CHECK_RC(sv_raft_propose_conf(r, SV_RAFT_ADD_LEARNER, 5, NULL), SV_RAFT_E_TRANSFERRING);
    h_deliver_all(h);
    CHECK(h_st(h, f).role == SV_RAFT_LEADER);
    CHECK_RC(sv_raft_propose_conf(h_r(h, l), SV_RAFT_ADD_LEARNER, 5, NULL), SV_RAFT_E_NOT_LEADER);
    h_ticks(h, 2);
    h_check_logs_equal(h, ALL3);
}
