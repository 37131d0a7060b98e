/* Unit tests of leadership transfer (thesis §3.10): catching a lagging target up, timing out. */
#include <string.h>

#include "harness.h"
#include "tests.h"

struct timeout_watch {
    uint32_t sent;
    uint64_t target_last; /* the target's last index when TimeoutNow went out */
    uint64_t leader_last;
};

static void watch_timeout_now(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    struct timeout_watch *w = arg;
    if (m->type != SV_RAFT_MSG_TIMEOUT_NOW) {
        return;
    }
    w->sent++;
    struct sv_raft_status ts, ls;
    sv_raft_status(h->nodes[m->to].r, &ts);
    sv_raft_status(h->nodes[m->from].r, &ls);
    w->target_last = ts.last_index;
    w->leader_last = ls.last_index;
}

void test_transfer_to_lagging(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    uint32_t et = h->nodes[l].opts.election_ticks;
    sv_raft_id f, g;
    h_others(l, &f, &g);

    /* f misses 20 entries. */
    h_cut(h, l, f);
    for (int i = 0; i < 20; i++) {
        uint8_t v = (uint8_t)i;
        h_propose(h, l, &v, 1);
    }
    h_deliver_all(h);
    uint64_t last = h_st(h, l).last_index;
    CHECK_LE_U64(last, h_st(h, l).commit);
    CHECK(h_st(h, f).last_index + 20 <= last);
    h_heal(h, l, f);

    struct timeout_watch w;
    memset(&w, 0, sizeof(w));
    h->on_send = watch_timeout_now;
    h->send_arg = &w;
    CHECK_RC(sv_raft_transfer_leader(h_r(h, l), f), 0);
    CHECK_EQ_U64(h_st(h, l).transferee, f);
    CHECK_RC(sv_raft_transfer_leader(h_r(h, l), f), 0); /* asking again is harmless */
    CHECK_RC(sv_raft_propose(h_r(h, l), "no", 2, NULL), SV_RAFT_E_TRANSFERRING);
    CHECK_EQ_INT(w.sent, 0); /* not before f caught up */

    uint32_t t = 0;
    h_deliver_all(h);
    while (h_st(h, f).role != SV_RAFT_LEADER && t < et) {
        h_tick_all(h);
        t++;
    }
    CHECK_MSG(h_st(h, f).role == SV_RAFT_LEADER, "transfer did not complete in %u ticks", t);
    CHECK_EQ_INT(w.sent, 1);
    CHECK_EQ_U64(w.target_last, w.leader_last); /* TimeoutNow only once f's log matched */
    CHECK_EQ_U64(w.leader_last, last);
    CHECK_EQ_U64(h_st(h, f).term, term + 1);
    CHECK(h_st(h, l).role == SV_RAFT_FOLLOWER);
    CHECK_EQ_U64(h_st(h, l).transferee, 0);

    sv_raft_id nl = h_wait_leader(h, H_ALL, 5);
    CHECK_EQ_U64(nl, f);
    h_propose_and_commit(h, f, "new", 3);
    h_ticks(h, 2);
    h_check_logs_equal(h, H_ALL);
}

void test_transfer_times_out(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t term = h_st(h, l).term;
    uint32_t et = h->nodes[l].opts.election_ticks;
    sv_raft_id f, g;
    h_others(l, &f, &g);
    h_ticks(h, 2);

    /* The target is unreachable: the transfer cannot complete. */
    h_isolate(h, f);
    h_propose_and_commit(h, l, "x", 1); /* f lags, so no TimeoutNow at once */
    CHECK_RC(sv_raft_transfer_leader(h_r(h, l), f), 0);
    h_process_all(h);
    CHECK_EQ_U64(h_st(h, l).transferee, f);
    for (uint32_t i = 0; i + 1 < et; i++) {
        h_tick_all(h);
        CHECK_EQ_U64(h_st(h, l).transferee, f);
        CHECK_RC(sv_raft_propose(h_r(h, l), "y", 1, NULL), SV_RAFT_E_TRANSFERRING);
    }
    /* After one election timeout the leader gives up and serves again. */
    h_tick_all(h);
    CHECK_EQ_U64(h_st(h, l).transferee, 0);
    CHECK(h_st(h, l).role == SV_RAFT_LEADER);
    CHECK_EQ_U64(h_st(h, l).term, term);
    CHECK_EQ_U64(h_sent(h, l, f, SV_RAFT_MSG_TIMEOUT_NOW), 0);
    h_propose_and_commit(h, l, "z", 1);

    h_heal_all(h);
    h_ticks(h, 5);
    CHECK_EQ_U64(h_leader(h, H_ALL), l);
    h_check_logs_equal(h, H_ALL);

    /* Transfer to oneself or to a non-voter is refused. */
    CHECK_RC(sv_raft_transfer_leader(h_r(h, l), l), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_transfer_leader(h_r(h, l), 7), SV_RAFT_E_BAD_CONF);
    CHECK_RC(sv_raft_transfer_leader(h_r(h, f), g), SV_RAFT_E_NOT_LEADER);
}
