/* Unit tests of snapshots: chunked InstallSnapshot to a follower behind the log, lost chunks. */
#include <string.h>

#include "harness.h"
#include "tests.h"

enum { CHUNK = 1000, PAD = 5000, IMAGE = PAD + 32, N_CHUNKS = (IMAGE + CHUNK - 1) / CHUNK };

/* Snapshot chunks sent to each node, by chunk number. */
struct chunk_watch {
    sv_raft_id leader;
    uint32_t sent[H_NODES_MAX][N_CHUNKS + 1];
    uint32_t done[H_NODES_MAX];
    uint32_t rejects[H_NODES_MAX]; /* SNAPSHOT_RESP rejections from each node */
    uint32_t max_len;
    bool bad_offset;
    /* Filter: drop the first transmission of this chunk to this node. */
    sv_raft_id drop_to[2];
    uint32_t drop_chunk[2];
    bool dropped[2];
};

static void watch_chunks(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    (void)h;
    struct chunk_watch *w = arg;
    if (m->type == SV_RAFT_MSG_SNAPSHOT_RESP && m->reject && m->from < H_NODES_MAX) {
        w->rejects[m->from]++;
    }
    if (m->type != SV_RAFT_MSG_SNAPSHOT || m->from != w->leader) {
        return;
    }
    if (m->offset % CHUNK != 0 || m->offset / CHUNK >= N_CHUNKS) {
        w->bad_offset = true;
        return;
    }
    w->sent[m->to][m->offset / CHUNK]++;
    w->done[m->to] += m->done;
    if (m->len > w->max_len) {
        w->max_len = m->len;
    }
}

static enum h_verdict drop_chunks(struct h_cluster *h, const struct sv_raft_msg *m, void *arg)
{
    (void)h;
    struct chunk_watch *w = arg;
    if (m->type != SV_RAFT_MSG_SNAPSHOT) {
        return H_DELIVER;
    }
    for (int i = 0; i < 2; i++) {
        if (!w->dropped[i] && m->to == w->drop_to[i] && m->offset == w->drop_chunk[i] * CHUNK) {
            w->dropped[i] = true;
            return H_DROP;
        }
    }
    return H_DELIVER;
}

static struct sv_raft_options snap_opts(void)
{
    struct sv_raft_options o;
    sv_raft_options_default(&o, 1);
    o.snapshot_chunk_bytes = CHUNK;
    return o;
}

/* Commit n entries on l, snapshot l at its applied index (log compacted). */
static uint64_t fill_and_snapshot(struct h_cluster *h, sv_raft_id l, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t v[2] = {(uint8_t)i, 0x5a};
        h_propose(h, l, v, sizeof(v));
    }
    h_deliver_all(h);
    h_ticks(h, 1);
    uint64_t s = h_snapshot(h, l, 0, PAD);
    struct sv_raft_status st = h_st(h, l);
    CHECK_EQ_U64(st.snapshot_index, s);
    CHECK_EQ_U64(st.first_index, s + 1);
    CHECK(sv_raft_entry_at(h_r(h, l), s) == NULL);
    CHECK_EQ_U64(h->nodes[l].disk.snap.len, IMAGE);
    return s;
}

void test_snapshot_install_chunks(void)
{
    struct sv_raft_options o = snap_opts();
    struct h_cluster *h = h_new(3, &o);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f = l == 1 ? 2 : 1;
    h_crash(h, f);

    uint64_t s = fill_and_snapshot(h, l, 30);
    h_propose_and_commit(h, l, "tail", 4);

    struct chunk_watch w;
    memset(&w, 0, sizeof(w));
    w.leader = l;
    h->on_send = watch_chunks;
    h->send_arg = &w;
    h_restart(h, f);
    CHECK(h_st(h, f).last_index < s);
    for (int t = 0; t < 30 && h->nodes[f].snap_installs == 0; t++) {
        h_tick_all(h);
    }
    CHECK_EQ_U64(h->nodes[f].snap_installs, 1);
    CHECK_EQ_U64(h->nodes[f].snap_install_index, s);
    CHECK_EQ_U64(h->nodes[f].snap_install_hash,
                 h_hash(h->nodes[l].disk.snap.data, (size_t)h->nodes[l].disk.snap.len));
    /* Sent in chunks of at most snapshot_chunk_bytes, each once, one marked done. */
    CHECK(!w.bad_offset);
    CHECK_LE_U64(w.max_len, CHUNK);
    for (int c = 0; c < N_CHUNKS; c++) {
        CHECK_EQ_INT(w.sent[f][c], 1);
    }
    CHECK_EQ_INT(w.done[f], 1);
    CHECK_EQ_INT(w.rejects[f], 0);

    h_ticks(h, 3);
    struct sv_raft_status st = h_st(h, f);
    CHECK_EQ_U64(st.snapshot_index, s);
    CHECK_EQ_U64(st.first_index, s + 1);
    CHECK(h->nodes[f].sm.applied >= s);
    h_check_logs_equal(h, H_ALL);
    CHECK(h_applied_data(h, f, "tail", 4));
    /* A later entry replicates normally, with no new snapshot. */
    h_propose_and_commit(h, l, "later", 5);
    h_ticks(h, 2);
    CHECK(h_applied_data(h, f, "later", 5));
    CHECK_EQ_U64(h->nodes[f].snap_installs, 1);
}

void test_snapshot_lost_chunk_resent(void)
{
    struct sv_raft_options o = snap_opts();
    struct h_cluster *h = h_new(5, &o);
    sv_raft_id l = h_tick_until_leader(h);
    sv_raft_id f[2];
    int nf = 0;
    for (sv_raft_id id = 1; id <= 5 && nf < 2; id++) {
        if (id != l) {
            f[nf++] = id;
        }
    }
    h_crash(h, f[0]);
    h_crash(h, f[1]);
    uint64_t s = fill_and_snapshot(h, l, 40);

    struct chunk_watch w;
    memset(&w, 0, sizeof(w));
    w.leader = l;
    /* f[0] loses a middle chunk (the next one shows a gap); f[1] loses the
     * last one (nothing follows: only the leader's stall timer helps). */
    w.drop_to[0] = f[0];
    w.drop_chunk[0] = 1;
    w.drop_to[1] = f[1];
    w.drop_chunk[1] = N_CHUNKS - 1;
    h->on_send = watch_chunks;
    h->send_arg = &w;
    h->filter = drop_chunks;
    h->filter_arg = &w;
    h_restart(h, f[0]);
    h_restart(h, f[1]);
    for (int t = 0;
         t < 60 && (h->nodes[f[0]].snap_installs == 0 || h->nodes[f[1]].snap_installs == 0); t++) {
        h_tick_all(h);
    }
    CHECK(w.dropped[0] && w.dropped[1]);
    uint64_t want = h_hash(h->nodes[l].disk.snap.data, (size_t)h->nodes[l].disk.snap.len);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_U64(h->nodes[f[i]].snap_installs, 1);
        CHECK_EQ_U64(h->nodes[f[i]].snap_install_index, s);
        CHECK_EQ_U64(h->nodes[f[i]].snap_install_hash, want);
    }
    /* The gap was reported and the missing chunk sent again. */
    CHECK(w.rejects[f[0]] >= 1);
    CHECK(w.sent[f[0]][1] >= 2);
    /* The lost last chunk was sent again after a stall, without a rejection:
     * the leader starts over from chunk 0 (the follower may have restarted)
     * and the follower's ack of what it holds makes it skip ahead. */
    CHECK_EQ_INT(w.rejects[f[1]], 0);
    CHECK_EQ_INT(w.sent[f[1]][N_CHUNKS - 1], 2);
    CHECK_EQ_INT(w.sent[f[1]][0], 2);
    CHECK_LE_U64(w.max_len, CHUNK);

    h->filter = NULL;
    h_propose_and_commit(h, l, "after", 5);
    h_ticks(h, 3);
    h_check_logs_equal(h, H_ALL);
    CHECK(h_applied_data(h, f[0], "after", 5));
    CHECK(h_applied_data(h, f[1], "after", 5));
}
