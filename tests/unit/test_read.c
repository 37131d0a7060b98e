/* Unit tests of linearizable reads (thesis §6.4): ReadIndex on leader and follower, partitions,
 * leases. */
#include <string.h>

#include "harness.h"
#include "tests.h"

void test_read_index_leader(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    uint64_t w = h_propose_and_commit(h, l, "w", 1);
    uint64_t commit = h_st(h, l).commit;
    CHECK_LE_U64(w, commit);

    /* The read waits for a quorum to confirm leadership. */
    uint64_t hb = h_sent(h, l, 0, SV_RAFT_MSG_HEARTBEAT);
    CHECK_RC(sv_raft_read_index(h_r(h, l), 42), 0);
    h_process(h, l);
    CHECK(!h_read_seen(h, l, 42, NULL));
    CHECK_EQ_U64(h_sent(h, l, 0, SV_RAFT_MSG_HEARTBEAT), hb + 2);

    /* That round is lost: still no answer. */
    h_drop_queued(h, l, 0, SV_RAFT_MSG_HEARTBEAT);
    h_deliver_all(h);
    CHECK(!h_read_seen(h, l, 42, NULL));

    /* The next heartbeat round confirms it, at the commit index of the request. */
    h_tick_all(h);
    uint64_t idx = 0;
    CHECK(h_read_seen(h, l, 42, &idx));
    CHECK_EQ_U64(idx, commit);
    CHECK(h->nodes[l].reads[h->nodes[l].n_reads - 1].served);

    /* Later reads see later writes. */
    uint64_t w2 = h_propose_and_commit(h, l, "w2", 2);
    CHECK_RC(sv_raft_read_index(h_r(h, l), 43), 0);
    h_deliver_all(h);
    CHECK(h_read_seen(h, l, 43, &idx));
    CHECK_LE_U64(w2, idx);
}

void test_read_index_follower(void)
{
    struct h_cluster *h = h_new(3, NULL);
    /* Before any election nobody knows a leader. */
    CHECK_RC(sv_raft_read_index(h_r(h, 1), 1), SV_RAFT_E_NOT_LEADER);

    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    /* The write commits on the leader; f has not learned the commit yet. */
    uint64_t w = h_propose_and_commit(h, l, "w", 1);

    CHECK_RC(sv_raft_read_index(h_r(h, f), 7), 0);
    h_process(h, f);
    CHECK_EQ_INT(h_queued(h, f, l, SV_RAFT_MSG_READ_INDEX), 1);
    h_deliver_all(h);
    uint64_t idx = 0;
    CHECK(h_read_seen(h, f, 7, &idx));
    CHECK(!h_read_seen(h, l, 7, NULL)); /* answered to f, not announced on l */
    CHECK_LE_U64(w, idx);
    CHECK_EQ_U64(h_sent(h, l, f, SV_RAFT_MSG_READ_INDEX_RESP), 1);
    /* f serves it once its state machine reaches the read index. */
    h_ticks(h, 2);
    CHECK_LE_U64(idx, h->nodes[f].sm.applied);
    CHECK(h->nodes[f].reads[h->nodes[f].n_reads - 1].served);
    CHECK(h_applied_data(h, f, "w", 1));

    /* A request lost on the way is never answered (the caller retries). */
    h_cut(h, f, l);
    CHECK_RC(sv_raft_read_index(h_r(h, f), 8), 0);
    h_deliver_all(h);
    CHECK(!h_read_seen(h, f, 8, NULL));
}

void test_read_index_partition(void)
{
    struct h_cluster *h = h_new(3, NULL);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    h_propose_and_commit(h, l, "v1", 2);

    /* The leader is cut off: a read on it must never be answered, since the
     * majority may commit newer writes meanwhile. */
    h_isolate(h, l);
    CHECK_RC(sv_raft_read_index(h_r(h, l), 99), 0);
    h_deliver_all(h);
    sv_raft_id l2 = 0;
    for (int t = 0; t < 300 && l2 == 0; t++) {
        h_tick_all(h);
        CHECK(!h_read_seen(h, l, 99, NULL));
        l2 = h_leader(h, H_BIT(f) | H_BIT(g));
    }
    CHECK(l2 != 0);
    uint64_t w2 = h_propose_and_commit(h, l2, "v2", 2);
    h_ticks(h, 20);
    CHECK(!h_read_seen(h, l, 99, NULL));
    /* The old leader lost its role (check-quorum); reads on it are refused
     * or forwarded nowhere. */
    CHECK(h_st(h, l).role != SV_RAFT_LEADER);
    int rc = sv_raft_read_index(h_r(h, l), 100);
    CHECK(rc == 0 || rc == SV_RAFT_E_NOT_LEADER);
    h_deliver_all(h);
    CHECK(!h_read_seen(h, l, 100, NULL));

    /* The majority's leader answers, with the newer write included. */
    CHECK_RC(sv_raft_read_index(h_r(h, l2), 101), 0);
    h_deliver_all(h);
    uint64_t idx = 0;
    CHECK(h_read_seen(h, l2, 101, &idx));
    CHECK_LE_U64(w2, idx);

    /* Healed, the old request stays unanswered; new ones follow the new leader. */
    h_heal_all(h);
    h_ticks(h, 5);
    CHECK(!h_read_seen(h, l, 99, NULL));
    CHECK_RC(sv_raft_read_index(h_r(h, l), 102), 0);
    h_deliver_all(h);
    CHECK(h_read_seen(h, l, 102, &idx));
    CHECK_LE_U64(w2, idx);
}

void test_read_lease(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.lease_read = true;
    struct h_cluster *h = h_new(3, &o);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f, g;
    h_others(l, &f, &g);
    uint64_t w = h_propose_and_commit(h, l, "w", 1);
    h_ticks(h, 2);

    /* Within the lease the leader answers at once, without a heartbeat round. */
    uint64_t hb = h_sent(h, l, 0, SV_RAFT_MSG_HEARTBEAT);
    CHECK_RC(sv_raft_read_index(h_r(h, l), 5), 0);
    h_process(h, l);
    uint64_t idx = 0;
    CHECK(h_read_seen(h, l, 5, &idx));
    CHECK_LE_U64(w, idx);
    CHECK_EQ_U64(h_sent(h, l, 0, SV_RAFT_MSG_HEARTBEAT), hb);
    /* A follower's forwarded read is answered from the lease too. */
    CHECK_RC(sv_raft_read_index(h_r(h, f), 6), 0);
    h_deliver_all(h);
    CHECK(h_read_seen(h, f, 6, NULL));
    CHECK_EQ_U64(h_sent(h, l, 0, SV_RAFT_MSG_HEARTBEAT), hb);

    /* Cut off, the lease runs out before the others may elect anyone. */
    h_isolate(h, l);
    uint32_t et = o.election_ticks;
    uint32_t lease_end = 0;
    uint32_t new_leader_at = 0;
    for (uint32_t t = 1; t <= 5 * et && new_leader_at == 0; t++) {
        h_tick_all(h);
        uint64_t ctx = 1000 + t;
        int rc = sv_raft_read_index(h_r(h, l), ctx);
        CHECK(rc == 0 || rc == SV_RAFT_E_NOT_LEADER);
        h_process(h, l);
        if (lease_end == 0 && !h_read_seen(h, l, ctx, NULL)) {
            lease_end = t;
        }
        if (h_leader(h, H_BIT(f) | H_BIT(g)) != 0) {
            new_leader_at = t;
        }
    }
    CHECK(lease_end > 0);
    CHECK(new_leader_at > 0);
    sv_test_log("lease ended at tick %u, new leader at tick %u", lease_end, new_leader_at);
    CHECK(lease_end <= et);
    CHECK(lease_end < new_leader_at);
    /* No read served by the old leader after the lease ended. */
    for (size_t i = 0; i < h->nodes[l].n_reads; i++) {
        CHECK(h->nodes[l].reads[i].ctx < 1000 + lease_end);
    }
}
