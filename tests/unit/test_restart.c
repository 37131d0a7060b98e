/* Unit tests of crash and restart: durable term and vote, catching up from the log and a snapshot.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

struct resp_watch {
    sv_raft_id from, to;
    uint32_t granted;
    uint32_t rejected;
};

static void watch_resp(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    (void)h;
    struct resp_watch *w = arg;
    if (m->type == SV_RAFT_MSG_VOTE_RESP && m->from == w->from && m->to == w->to) {
        if (m->reject) {
            w->rejected++;
        } else {
            w->granted++;
        }
    }
}

void test_restart_keeps_vote(void)
{
    /* A candidate's vote for itself survives a crash. */
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.pre_vote = false;
    o.check_quorum = false;
    o.election_ticks = 1000;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_campaign(h_r(h, 1));
    h_process_all(h);
    h_drop_queued(h, 1, 0, 0);
    CHECK_EQ_U64(h->nodes[1].disk.hs.vote, 1);
    h_crash(h, 1);
    h_restart(h, 1);
    CHECK_EQ_U64(h_st(h, 1).term, 2);
    CHECK_EQ_U64(h_st(h, 1).vote, 1);
    CHECK(h_st(h, 1).role == SV_RAFT_FOLLOWER);

    /* Node 2 asks for term 2: node 1 refuses, node 3 grants. */
    struct resp_watch w1 = {1, 2, 0, 0};
    h->on_send = watch_resp;
    h->send_arg = &w1;
    sv_raft_campaign(h_r(h, 2));
    h_deliver_all(h);
    CHECK_EQ_INT(w1.rejected, 1);
    CHECK_EQ_INT(w1.granted, 0);
    CHECK_EQ_U64(h_leader(h, H_ALL), 2);
    CHECK_EQ_U64(h_st(h, 2).term, 2);
    CHECK_EQ_U64(h_st(h, 1).vote, 1);

    /* A voter's grant survives a crash: node 3 grants node 1 term 3, crashes
     * and restarts, then is asked by node 2 for the same term. */
    sv_raft_campaign(h_r(h, 1));
    CHECK_EQ_U64(h_st(h, 1).term, 3);
    h_process_all(h);
    CHECK(h_deliver_match(h, 1, 3, SV_RAFT_MSG_VOTE));
    h_drop_queued(h, 0, 0, 0);
    CHECK_EQ_U64(h->nodes[3].disk.hs.term, 3);
    CHECK_EQ_U64(h->nodes[3].disk.hs.vote, 1);
    h_crash(h, 3);
    h_restart(h, 3);
    CHECK_EQ_U64(h_st(h, 3).vote, 1);
    struct resp_watch w3 = {3, 2, 0, 0};
    h->send_arg = &w3;
    struct sv_raft_msg req;
    memset(&req, 0, sizeof(req));
    req.type = SV_RAFT_MSG_VOTE;
    req.from = 2;
    req.to = 3;
    req.term = 3;
    req.index = h_st(h, 2).last_index; /* as up to date as node 3 */
    req.log_term = sv_raft_term_at(h_r(h, 2), req.index);
    CHECK_RC(sv_raft_step(h_r(h, 3), &req), 0);
    h_process(h, 3);
    CHECK_EQ_INT(w3.rejected, 1);
    CHECK_EQ_INT(w3.granted, 0);
    CHECK_EQ_U64(h_st(h, 3).vote, 1);
    h->on_send = NULL;
    h_drop_queued(h, 0, 0, 0);

    /* The whole cluster restarts: terms, votes and the log come back. */
    struct h_cluster *c = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(c);
    char buf[16];
    for (int i = 0; i < 5; i++) {
        int n = snprintf(buf, sizeof(buf), "k%d", i);
        h_propose_and_commit(c, l, buf, (size_t)n);
    }
    h_ticks(c, 2);
    uint64_t term = h_st(c, l).term;
    uint64_t last = h_st(c, l).last_index;
    struct sv_raft_hard_state hs[4];
    for (sv_raft_id id = 1; id <= 3; id++) {
        hs[id] = c->nodes[id].disk.hs;
        h_crash(c, id);
    }
    for (sv_raft_id id = 1; id <= 3; id++) {
        h_restart(c, id); /* checks term, vote and last index against the disk */
        CHECK_EQ_U64(h_st(c, id).term, hs[id].term);
        CHECK_EQ_U64(h_st(c, id).vote, hs[id].vote);
        CHECK_EQ_U64(h_st(c, id).commit, hs[id].commit);
        CHECK_EQ_U64(h_st(c, id).last_index, last);
    }
    sv_raft_id l2 = h_tick_until_leader(c);
    CHECK(h_st(c, l2).term > term);
    h_ticks(c, 2);
    for (sv_raft_id id = 1; id <= 3; id++) {
        for (int i = 0; i < 5; i++) {
            int n = snprintf(buf, sizeof(buf), "k%d", i);
            CHECK(h_applied_data(c, id, buf, (size_t)n));
        }
    }
    h_check_logs_equal(c, H_ALL);
}

void test_restart_catches_up(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    char buf[16];

    /* A follower down while 50 entries commit catches up from the log. */
    h_crash(h, f);
    for (int i = 0; i < 50; i++) {
        int n = snprintf(buf, sizeof(buf), "a%d", i);
        h_propose(h, l, buf, (size_t)n);
    }
    h_deliver_all(h);
    uint64_t last = h_st(h, l).last_index;
    CHECK_EQ_U64(h_st(h, l).commit, last);
    h_restart(h, f);
    CHECK(h_st(h, f).last_index < last);
    h_ticks(h, 5);
    h_check_logs_equal(h, H_ALL);
    CHECK_EQ_U64(h_st(h, f).last_index, last);
    CHECK(h_applied_data(h, f, "a49", 3));

    /* Again after it snapshotted itself: it restores the image, then the log. */
    h_snapshot(h, f, 0, 64);
    CHECK(h->nodes[f].disk.has_snap);
    h_crash(h, f);
    for (int i = 0; i < 20; i++) {
        int n = snprintf(buf, sizeof(buf), "b%d", i);
        h_propose(h, l, buf, (size_t)n);
    }
    h_deliver_all(h);
    h_restart(h, f);
    CHECK_EQ_U64(h_st(h, f).snapshot_index, h->nodes[f].disk.snap.meta.index);
    CHECK_EQ_U64(h->nodes[f].sm.applied, h->nodes[f].disk.snap.meta.index);
    h_ticks(h, 5);
    h_check_logs_equal(h, H_ALL);
    CHECK(h_applied_data(h, f, "b19", 3));
    CHECK_EQ_U64(h->nodes[f].snap_installs, 0); /* its own snapshot; none was sent */

    /* The leader itself crashes; back, it follows the new leader and catches up. */
    uint64_t term = h_st(h, l).term;
    h_crash(h, l);
    sv_raft_id l2 = h_wait_leader(h, H_BIT(f) | H_BIT(g), 300);
    for (int i = 0; i < 10; i++) {
        int n = snprintf(buf, sizeof(buf), "c%d", i);
        h_propose_and_commit(h, l2, buf, (size_t)n);
    }
    h_restart(h, l);
    CHECK_EQ_U64(h_st(h, l).term, term);
    h_ticks(h, 5);
    CHECK_EQ_U64(h_st(h, l).leader, l2);
    CHECK(h_st(h, l).term > term);
    h_check_logs_equal(h, H_ALL);
    CHECK(h_applied_data(h, l, "c9", 2));
}
