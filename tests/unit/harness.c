/* Deterministic in-process Raft cluster for unit tests: disks, a message queue, links, crashes. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t h_bugs;

enum {
    DELIVER_STEPS_MAX = 2000000, /* a livelock guard for h_deliver_all */
    READY_ROUNDS_MAX = 10000,    /* ready batches in a row for one node */
    SNAP_MAGIC = 0x5356534e      /* "SVSN" */
};

uint64_t h_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t x = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        x ^= p[i];
        x *= 1099511628211ull;
    }
    return x;
}

static void *grow(void *arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap) {
        return arr;
    }
    size_t ncap = *cap ? *cap : 16;
    while (ncap < want) {
        ncap *= 2;
    }
    void *p = realloc(arr, ncap * elem);
    CHECK_MSG(p != NULL, "out of memory");
    memset((char *)p + *cap * elem, 0, (ncap - *cap) * elem);
    *cap = ncap;
    return p;
}

bool h_in(uint32_t mask, sv_raft_id id)
{
    return mask == 0 || (id < 32 && (mask & H_BIT(id)) != 0);
}

static struct h_node *node(struct h_cluster *h, sv_raft_id id)
{
    CHECK_MSG(id >= 1 && id < H_NODES_MAX && h->nodes[id].exists, "no node %" PRIu64, id);
    return &h->nodes[id];
}

struct sv_raft *h_r(struct h_cluster *h, sv_raft_id id)
{
    struct h_node *n = node(h, id);
    CHECK_MSG(n->up, "node %" PRIu64 " is down", id);
    return n->r;
}

struct sv_raft_status h_st(struct h_cluster *h, sv_raft_id id)
{
    struct sv_raft_status st;
    sv_raft_status(h_r(h, id), &st);
    return st;
}

/* ---- disk ---- */

static void entry_copy(struct sv_raft_entry *dst, const struct sv_raft_entry *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len > 0) {
        dst->data = malloc(src->len);
        CHECK_MSG(dst->data != NULL, "out of memory");
        memcpy(dst->data, src->data, src->len);
    }
}

static uint64_t disk_last(const struct h_disk *d)
{
    if (d->n_ents > 0) {
        return d->ents[d->n_ents - 1].index;
    }
    return d->has_snap ? d->snap.meta.index : 0;
}

static uint64_t disk_first(const struct h_disk *d)
{
    return (d->has_snap ? d->snap.meta.index : 0) + 1;
}

static const struct sv_raft_entry *disk_at(const struct h_disk *d, uint64_t index)
{
    if (index < disk_first(d) || index > disk_last(d)) {
        return NULL;
    }
    return &d->ents[index - disk_first(d)];
}

static void disk_truncate(struct h_disk *d, uint64_t from)
{
    while (d->n_ents > 0 && d->ents[d->n_ents - 1].index >= from) {
        d->n_ents--;
        free(d->ents[d->n_ents].data);
        d->ents[d->n_ents].data = NULL;
    }
}

static void disk_drop_upto(struct h_disk *d, uint64_t index)
{
    size_t drop = 0;
    while (drop < d->n_ents && d->ents[drop].index <= index) {
        free(d->ents[drop].data);
        drop++;
    }
    memmove(d->ents, d->ents + drop, (d->n_ents - drop) * sizeof(*d->ents));
    d->n_ents -= drop;
}

static void disk_set_snap(struct h_disk *d, const struct sv_raft_snapshot_meta *meta,
                          const void *data, uint64_t len)
{
    free(d->snap.data);
    d->snap.meta = *meta;
    d->snap.len = len;
    d->snap.data = NULL;
    if (len > 0) {
        d->snap.data = malloc(len);
        CHECK_MSG(d->snap.data != NULL, "out of memory");
        memcpy(d->snap.data, data, len);
    }
    d->has_snap = true;
}

static void disk_free(struct h_disk *d)
{
    disk_truncate(d, 0);
    free(d->ents);
    free(d->snap.data);
    memset(d, 0, sizeof(*d));
}

/* ---- state machine ---- */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

enum { SNAP_HEADER_LEN = 32 };

static void sm_from_image(struct h_sm *sm, const struct sv_raft_snapshot_meta *meta,
                          const uint8_t *data, uint64_t len)
{
    CHECK_MSG(len >= SNAP_HEADER_LEN && get64(data) == SNAP_MAGIC,
              "snapshot image is not ours (len %" PRIu64 ")", len);
    memset(sm, 0, sizeof(*sm));
    sm->applied = get64(data + 8);
    sm->n_normal = get64(data + 16);
    sm->hash = get64(data + 24);
    sm->conf = meta->conf;
    CHECK_EQ_U64(sm->applied, meta->index);
}

static void record_applied(struct h_cluster *h, struct h_node *n, const struct sv_raft_entry *e)
{
    uint64_t hash = h_hash(e->data, e->len);
    n->applied_hash =
        grow(n->applied_hash, &n->cap_applied, (size_t)e->index + 1, sizeof(uint64_t));
    n->applied_hash[e->index] = e->type == SV_RAFT_ENTRY_NORMAL ? hash : 0;

    /* State-machine safety: every node applies the same entry at an index. */
    h->applied = grow(h->applied, &h->cap_applied, (size_t)e->index + 1, sizeof(*h->applied));
    struct h_global_entry *g = &h->applied[e->index];
    if (g->set) {
        CHECK_MSG(g->term == e->term && g->type == e->type && g->hash == hash,
                  "state machine safety: index %" PRIu64 " applied with term %" PRIu64
                  " elsewhere, term %" PRIu64 " here",
                  e->index, g->term, e->term);
    } else {
        g->set = true;
        g->term = e->term;
        g->type = e->type;
        g->hash = hash;
    }
}

static void sm_apply(struct h_cluster *h, struct h_node *n, const struct sv_raft_entry *e)
{
    CHECK_MSG(e->index == n->sm.applied + 1, "node %" PRIu64 " applies %" PRIu64 " after %" PRIu64,
              n->opts.id, e->index, n->sm.applied);
    struct sv_raft_status st;
    sv_raft_status(n->r, &st);
    CHECK_MSG(e->index <= st.commit, "node %" PRIu64 " applies %" PRIu64 " beyond commit %" PRIu64,
              n->opts.id, e->index, st.commit);
    CHECK_MSG(e->term == sv_raft_term_at(n->r, e->index) || sv_raft_term_at(n->r, e->index) == 0,
              "node %" PRIu64 " applies %" PRIu64 " of term %" PRIu64 ", its log has term %" PRIu64,
              n->opts.id, e->index, e->term, sv_raft_term_at(n->r, e->index));
    record_applied(h, n, e);
    n->sm.applied = e->index;
    if (e->type == SV_RAFT_ENTRY_NORMAL) {
        n->sm.n_normal++;
        uint64_t mix[2] = {n->sm.hash, h_hash(e->data, e->len)};
        n->sm.hash = h_hash(mix, sizeof(mix));
    } else if (e->type == SV_RAFT_ENTRY_CONF) {
        struct sv_raft_conf c;
        CHECK_RC(sv_raft_conf_decode(e->data, e->len, &c), 0);
        n->sm.conf = c;
    }
}

/* ---- safety records ---- */

static void note_leader(struct h_cluster *h, sv_raft_id id, uint64_t term)
{
    for (size_t i = 0; i < h->n_leaders; i++) {
        if (h->leaders[i].term == term) {
            CHECK_MSG(h->leaders[i].id == id,
                      "election safety: %" PRIu64 " and %" PRIu64 " both lead term %" PRIu64,
                      h->leaders[i].id, id, term);
            return;
        }
    }
    h->leaders = grow(h->leaders, &h->cap_leaders, h->n_leaders + 1, sizeof(*h->leaders));
    h->leaders[h->n_leaders].term = term;
    h->leaders[h->n_leaders].id = id;
    h->n_leaders++;
}

static void note_vote(struct h_cluster *h, sv_raft_id voter, uint64_t term, sv_raft_id cand)
{
    for (size_t i = 0; i < h->n_votes; i++) {
        if (h->votes[i].voter == voter && h->votes[i].term == term) {
            CHECK_MSG(h->votes[i].candidate == cand,
                      "node %" PRIu64 " granted votes to %" PRIu64 " and %" PRIu64
                      " in term %" PRIu64,
                      voter, h->votes[i].candidate, cand, term);
            return;
        }
    }
    h->votes = grow(h->votes, &h->cap_votes, h->n_votes + 1, sizeof(*h->votes));
    h->votes[h->n_votes].term = term;
    h->votes[h->n_votes].voter = voter;
    h->votes[h->n_votes].candidate = cand;
    h->n_votes++;
}

/* ---- ready processing ---- */

static void persist_hs(struct h_node *n, const struct sv_raft_hard_state *hs)
{
    const struct sv_raft_hard_state *old = &n->disk.hs;
    CHECK_MSG(hs->term >= old->term,
              "node %" PRIu64 ": durable term goes back %" PRIu64 " -> %" PRIu64, n->opts.id,
              old->term, hs->term);
    CHECK_MSG(hs->term > old->term || old->vote == 0 || hs->vote == old->vote,
              "node %" PRIu64 ": durable vote changes within term %" PRIu64 " (%" PRIu64
              " -> %" PRIu64 ")",
              n->opts.id, hs->term, old->vote, hs->vote);
    CHECK_MSG(hs->commit >= old->commit,
              "node %" PRIu64 ": durable commit goes back %" PRIu64 " -> %" PRIu64, n->opts.id,
              old->commit, hs->commit);
    n->disk.hs = *hs;
}

static void persist_snapshot(struct h_node *n, const struct sv_raft_snapshot *s)
{
    disk_truncate(&n->disk, 0);
    disk_set_snap(&n->disk, &s->meta, s->data, s->len);
    n->snap_installs++;
    n->snap_install_index = s->meta.index;
    n->snap_install_hash = h_hash(s->data, (size_t)s->len);
}

static void persist_entries(struct h_node *n, const struct sv_raft_entry *ents, size_t cnt)
{
    struct h_disk *d = &n->disk;
    CHECK_MSG(ents[0].index >= disk_first(d) && ents[0].index <= disk_last(d) + 1,
              "node %" PRIu64 ": entries from %" PRIu64 " do not fit the disk log [%" PRIu64
              ", %" PRIu64 "]",
              n->opts.id, ents[0].index, disk_first(d), disk_last(d));
    disk_truncate(d, ents[0].index);
    d->ents = grow(d->ents, &d->cap_ents, d->n_ents + cnt, sizeof(*d->ents));
    for (size_t i = 0; i < cnt; i++) {
        CHECK_EQ_U64(ents[i].index, disk_last(d) + 1);
        entry_copy(&d->ents[d->n_ents], &ents[i]);
        d->n_ents++;
    }
}

/* Persist-before-send, checked on the disk for each message that is not allowed early. */
static void check_sent_persisted(struct h_cluster *h, struct h_node *n, const struct sv_raft_msg *m)
{
    sv_raft_id id = n->opts.id;
    CHECK_MSG(m->from == id && m->to != id && m->to != 0,
              "node %" PRIu64 " sends %s from %" PRIu64 " to %" PRIu64, id,
              sv_raft_msg_type_name(m->type), m->from, m->to);
    CHECK_MSG(m->type > 0 && m->type < SV_RAFT_MSG_TYPE_MAX_, "bad message type %d", m->type);
    if (m->type != SV_RAFT_MSG_PRE_VOTE && m->type != SV_RAFT_MSG_PRE_VOTE_RESP) {
        CHECK_MSG(m->term <= n->disk.hs.term,
                  "node %" PRIu64 " sends %s of term %" PRIu64 " with durable term %" PRIu64, id,
                  sv_raft_msg_type_name(m->type), m->term, n->disk.hs.term);
    }
    if (m->type == SV_RAFT_MSG_VOTE_RESP && !m->reject) {
        CHECK_MSG(n->disk.hs.term == m->term && n->disk.hs.vote == m->to,
                  "node %" PRIu64 " grants its vote to %" PRIu64 " in term %" PRIu64
                  " but its disk says term %" PRIu64 " vote %" PRIu64,
                  id, m->to, m->term, n->disk.hs.term, n->disk.hs.vote);
        n->vote_resp_checked++;
        note_vote(h, id, m->term, m->to);
    }
    if (m->type == SV_RAFT_MSG_APPEND_RESP && !m->reject && m->index > 0) {
        const struct sv_raft_entry *e = disk_at(&n->disk, m->index);
        bool at_snap = n->disk.has_snap && n->disk.snap.meta.index >= m->index;
        CHECK_MSG(at_snap || (e != NULL && e->term == sv_raft_term_at(n->r, m->index)),
                  "node %" PRIu64 " acknowledges index %" PRIu64 " not on its disk (last %" PRIu64
                  ")",
                  id, m->index, disk_last(&n->disk));
    }
    if (m->type == SV_RAFT_MSG_APPEND_RESP && m->reject) {
        h->append_rejects[id][m->to]++;
    }
}

static void enqueue(struct h_cluster *h, const struct sv_raft_msg *m)
{
    h->q = grow(h->q, &h->qcap, h->qn + 1, sizeof(*h->q));
    CHECK_RC(sv_raft_msg_copy(&h->q[h->qn].m, m), 0);
    h->qn++;
    if (m->to < H_NODES_MAX) {
        h->sent[m->from][m->to][m->type]++;
    }
    if (h->on_send != NULL) {
        h->on_send(h, &h->q[h->qn - 1].m, h->send_arg);
    }
}

static void note_read(struct h_node *n, const struct sv_raft_read_state *rs)
{
    n->reads = grow(n->reads, &n->cap_reads, n->n_reads + 1, sizeof(*n->reads));
    n->reads[n->n_reads].ctx = rs->ctx;
    n->reads[n->n_reads].index = rs->index;
    n->reads[n->n_reads].served = false;
    n->n_reads++;
}

static void serve_reads(struct h_node *n)
{
    for (size_t i = 0; i < n->n_reads; i++) {
        if (!n->reads[i].served && n->reads[i].index <= n->sm.applied) {
            n->reads[i].served = true;
        }
    }
}

static void check_status(struct h_cluster *h, struct h_node *n)
{
    struct sv_raft_status st;
    sv_raft_status(n->r, &st);
    CHECK_EQ_U64(st.id, n->opts.id);
    CHECK_MSG(st.commit <= st.last_index,
              "node %" PRIu64 ": commit %" PRIu64 " beyond last index %" PRIu64, st.id, st.commit,
              st.last_index);
    CHECK_MSG(st.applied <= st.commit,
              "node %" PRIu64 ": applied %" PRIu64 " beyond commit %" PRIu64, st.id, st.applied,
              st.commit);
    if (st.role == SV_RAFT_LEADER) {
        CHECK_EQ_U64(st.leader, st.id);
        note_leader(h, st.id, st.term);
    }
}

static void process_one(struct h_cluster *h, struct h_node *n)
{
    struct sv_raft_ready rd;
    sv_raft_ready(n->r, &rd);
    n->readies++;

    /* 1. persist */
    if (rd.hs_changed) {
        persist_hs(n, &rd.hs);
    }
    if (rd.snapshot != NULL) {
        persist_snapshot(n, rd.snapshot);
    }
    if (rd.n_entries > 0) {
        persist_entries(n, rd.entries, rd.n_entries);
    }
    /* 2. send */
    for (size_t i = 0; i < rd.n_msgs; i++) {
        check_sent_persisted(h, n, &rd.msgs[i]);
        enqueue(h, &rd.msgs[i]);
    }
    /* 3. apply */
    if (rd.snapshot != NULL) {
        sm_from_image(&n->sm, &rd.snapshot->meta, rd.snapshot->data, rd.snapshot->len);
    }
    for (size_t i = 0; i < rd.n_committed; i++) {
        sm_apply(h, n, &rd.committed[i]);
    }
    for (size_t i = 0; i < rd.n_reads; i++) {
        note_read(n, &rd.reads[i]);
    }
    serve_reads(n);
    /* 4. advance */
    sv_raft_advance(n->r, &rd);
    check_status(h, n);
}

void h_process(struct h_cluster *h, sv_raft_id id)
{
    struct h_node *n = node(h, id);
    if (!n->up) {
        return;
    }
    for (int i = 0; sv_raft_has_ready(n->r); i++) {
        CHECK_MSG(i < READY_ROUNDS_MAX, "node %" PRIu64 " never runs out of ready batches", id);
        process_one(h, n);
    }
    check_status(h, n);
}

void h_process_all(struct h_cluster *h)
{
    for (sv_raft_id id = 1; id < H_NODES_MAX; id++) {
        if (h->nodes[id].exists && h->nodes[id].up) {
            h_process(h, id);
        }
    }
}

/* ---- lifecycle ---- */

static void node_free(struct h_node *n)
{
    if (n->up) {
        sv_raft_destroy(n->r);
    }
    disk_free(&n->disk);
    free(n->applied_hash);
    free(n->reads);
    memset(n, 0, sizeof(*n));
}

static void cluster_free(void *arg)
{
    struct h_cluster *h = arg;
    for (size_t i = 0; i < h->qn; i++) {
        sv_raft_msg_free(&h->q[i].m);
    }
    free(h->q);
    for (int id = 0; id < H_NODES_MAX; id++) {
        node_free(&h->nodes[id]);
    }
    free(h->leaders);
    free(h->votes);
    free(h->applied);
    free(h);
}

static void node_init(struct h_node *n, sv_raft_id id, const struct sv_raft_options *tmpl)
{
    memset(n, 0, sizeof(*n));
    if (tmpl != NULL) {
        n->opts = *tmpl;
    } else {
        sv_raft_options_default(&n->opts, id);
    }
    n->opts.id = id;
    n->opts.seed = (tmpl != NULL ? tmpl->seed : 0) * 7919u + id;
    n->opts.bugs |= h_bugs;
    n->exists = true;
}

struct h_cluster *h_new_each(uint32_t cnt, const struct sv_raft_options *opts)
{
    CHECK(cnt >= 1 && cnt < H_NODES_MAX);
    struct h_cluster *h = calloc(1, sizeof(*h));
    CHECK(h != NULL);
    sv_test_defer(cluster_free, h);

    struct sv_raft_conf conf;
    memset(&conf, 0, sizeof(conf));
    for (uint32_t i = 0; i < cnt; i++) {
        conf.servers[i].id = i + 1;
        conf.servers[i].role = SV_RAFT_VOTER;
    }
    conf.n = cnt;
    for (sv_raft_id id = 1; id <= cnt; id++) {
        struct h_node *n = &h->nodes[id];
        node_init(n, id, opts != NULL ? &opts[id - 1] : NULL);
        CHECK_RC(sv_raft_create(&n->opts, NULL, &n->r), 0);
        n->up = true;
        CHECK_RC(sv_raft_bootstrap(n->r, &conf), 0);
    }
    h_process_all(h);
    for (sv_raft_id id = 1; id <= cnt; id++) {
        struct h_node *n = &h->nodes[id];
        CHECK_MSG(disk_last(&n->disk) >= 1, "bootstrap did not persist entry 1 on %" PRIu64, id);
        const struct sv_raft_entry *e = disk_at(&n->disk, 1);
        CHECK(e != NULL && e->type == SV_RAFT_ENTRY_CONF && e->term == 1);
    }
    return h;
}

struct h_cluster *h_new(uint32_t cnt, const struct sv_raft_options *tmpl)
{
    CHECK(cnt >= 1 && cnt < H_NODES_MAX);
    struct sv_raft_options opts[H_NODES_MAX];
    for (uint32_t i = 0; i < cnt; i++) {
        if (tmpl != NULL) {
            opts[i] = *tmpl;
        } else {
            sv_raft_options_default(&opts[i], i + 1);
            opts[i].seed = 0;
        }
    }
    return h_new_each(cnt, opts);
}

void h_add_node(struct h_cluster *h, sv_raft_id id, const struct sv_raft_options *tmpl)
{
    CHECK(id >= 1 && id < H_NODES_MAX && !h->nodes[id].exists);
    struct h_node *n = &h->nodes[id];
    struct sv_raft_options o;
    if (tmpl == NULL) {
        sv_raft_options_default(&o, id);
        o.seed = 0;
        tmpl = &o;
    }
    node_init(n, id, tmpl);
    CHECK_RC(sv_raft_create(&n->opts, NULL, &n->r), 0);
    n->up = true;
    h_process(h, id);
}

void h_crash(struct h_cluster *h, sv_raft_id id)
{
    struct h_node *n = node(h, id);
    CHECK(n->up);
    sv_raft_destroy(n->r);
    n->r = NULL;
    n->up = false;
}

void h_restart(struct h_cluster *h, sv_raft_id id)
{
    struct h_node *n = node(h, id);
    CHECK(!n->up);
    struct sv_raft_restore rs;
    memset(&rs, 0, sizeof(rs));
    rs.hs = n->disk.hs;
    rs.snapshot = n->disk.has_snap ? &n->disk.snap : NULL;
    rs.entries = n->disk.ents;
    rs.n_entries = n->disk.n_ents;
    rs.applied = 0;
    /* The state machine is volatile: it restarts from the snapshot image. */
    memset(&n->sm, 0, sizeof(n->sm));
    if (n->disk.has_snap) {
        sm_from_image(&n->sm, &n->disk.snap.meta, n->disk.snap.data, n->disk.snap.len);
    }
    for (size_t i = 0; i < n->n_reads; i++) {
        n->reads[i].served = true; /* requests of the old incarnation are gone */
    }
    CHECK_RC(sv_raft_create(&n->opts, &rs, &n->r), 0);
    n->up = true;
    struct sv_raft_status st;
    sv_raft_status(n->r, &st);
    CHECK_EQ_U64(st.term, n->disk.hs.term);
    CHECK_EQ_U64(st.vote, n->disk.hs.vote);
    CHECK_EQ_U64(st.last_index, disk_last(&n->disk));
    CHECK(st.role == SV_RAFT_FOLLOWER);
    h_process(h, id);
}

uint64_t h_snapshot(struct h_cluster *h, sv_raft_id id, uint64_t trailing, size_t pad_bytes)
{
    struct h_node *n = node(h, id);
    struct sv_raft_status st = h_st(h, id);
    CHECK_EQ_U64(st.applied, n->sm.applied);
    size_t len = SNAP_HEADER_LEN + pad_bytes;
    uint8_t *img = malloc(len);
    CHECK(img != NULL);
    put64(img, SNAP_MAGIC);
    put64(img + 8, n->sm.applied);
    put64(img + 16, n->sm.n_normal);
    put64(img + 24, n->sm.hash);
    for (size_t i = SNAP_HEADER_LEN; i < len; i++) {
        img[i] = (uint8_t)(i * 31 + id);
    }
    struct sv_raft_snapshot_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.index = n->sm.applied;
    meta.term = sv_raft_term_at(n->r, meta.index);
    meta.conf = n->sm.conf;
    disk_set_snap(&n->disk, &meta, img, len);
    disk_drop_upto(&n->disk, meta.index);
    int rc = sv_raft_snapshot(n->r, meta.index, img, len, trailing);
    free(img);
    CHECK_RC(rc, 0);
    CHECK_MSG(meta.term != 0, "no term for snapshot index %" PRIu64, meta.index);
    h_process(h, id);
    return meta.index;
}

/* ---- messages ---- */

static void q_remove(struct h_cluster *h, size_t i)
{
    sv_raft_msg_free(&h->q[i].m);
    memmove(h->q + i, h->q + i + 1, (h->qn - i - 1) * sizeof(*h->q));
    h->qn--;
}

static bool matches(const struct sv_raft_msg *m, sv_raft_id from, sv_raft_id to, int type)
{
    return (from == 0 || m->from == from) && (to == 0 || m->to == to) &&
           (type == 0 || m->type == type);
}

static void step_into(struct h_cluster *h, size_t i)
{
    struct sv_raft_msg m = h->q[i].m;
    memmove(h->q + i, h->q + i + 1, (h->qn - i - 1) * sizeof(*h->q));
    h->qn--;
    bool up = m.to < H_NODES_MAX && h->nodes[m.to].exists && h->nodes[m.to].up;
    if (up) {
        h->delivered[m.from][m.to][m.type]++;
        int rc = sv_raft_step(h->nodes[m.to].r, &m);
        sv_raft_msg_free(&m);
        CHECK_MSG(rc == 0, "step of a well-formed %s %" PRIu64 "->%" PRIu64 " returned %d (%s)",
                  sv_raft_msg_type_name(m.type), m.from, m.to, rc, sv_raft_strerror(rc));
    } else {
        sv_raft_msg_free(&m);
        h->dropped++;
    }
    h_process_all(h);
}

bool h_deliver_next(struct h_cluster *h)
{
    h_process_all(h);
    for (size_t i = 0; i < h->qn;) {
        const struct sv_raft_msg *m = &h->q[i].m;
        enum h_verdict v = H_DELIVER;
        if (m->to >= H_NODES_MAX || h->cut[m->from][m->to]) {
            v = H_DROP;
        } else if (h->filter != NULL) {
            v = h->filter(h, m, h->filter_arg);
        }
        if (v == H_HOLD) {
            i++;
            continue;
        }
        if (v == H_DROP) {
            q_remove(h, i);
            h->dropped++;
            return true;
        }
        step_into(h, i);
        return true;
    }
    return false;
}

void h_deliver_all(struct h_cluster *h)
{
    for (long steps = 0; h_deliver_next(h); steps++) {
        CHECK_MSG(steps < DELIVER_STEPS_MAX, "messages never stop (%zu queued)", h->qn);
    }
}

bool h_deliver_match(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type)
{
    h_process_all(h);
    for (size_t i = 0; i < h->qn; i++) {
        if (matches(&h->q[i].m, from, to, type)) {
            step_into(h, i);
            return true;
        }
    }
    return false;
}

size_t h_queued(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type)
{
    size_t cnt = 0;
    for (size_t i = 0; i < h->qn; i++) {
        cnt += matches(&h->q[i].m, from, to, type);
    }
    return cnt;
}

void h_drop_queued(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type)
{
    for (size_t i = 0; i < h->qn;) {
        if (matches(&h->q[i].m, from, to, type)) {
            q_remove(h, i);
            h->dropped++;
        } else {
            i++;
        }
    }
}

uint64_t h_sent(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type)
{
    uint64_t sum = 0;
    for (sv_raft_id f = 1; f < H_NODES_MAX; f++) {
        for (sv_raft_id t = 1; t < H_NODES_MAX; t++) {
            for (int ty = 1; ty < SV_RAFT_MSG_TYPE_MAX_; ty++) {
                if ((from == 0 || f == from) && (to == 0 || t == to) && (type == 0 || ty == type)) {
                    sum += h->sent[f][t][ty];
                }
            }
        }
    }
    return sum;
}

/* ---- links ---- */

void h_cut(struct h_cluster *h, sv_raft_id a, sv_raft_id b)
{
    h->cut[a][b] = true;
    h->cut[b][a] = true;
}

void h_heal(struct h_cluster *h, sv_raft_id a, sv_raft_id b)
{
    h->cut[a][b] = false;
    h->cut[b][a] = false;
}

void h_isolate(struct h_cluster *h, sv_raft_id id)
{
    for (sv_raft_id o = 1; o < H_NODES_MAX; o++) {
        if (o != id) {
            h_cut(h, id, o);
        }
    }
}

void h_partition(struct h_cluster *h, uint32_t mask)
{
    for (sv_raft_id a = 1; a < H_NODES_MAX; a++) {
        for (sv_raft_id b = 1; b < H_NODES_MAX; b++) {
            if (h_in(mask, a) != h_in(mask, b)) {
                h->cut[a][b] = true;
            }
        }
    }
}

void h_heal_all(struct h_cluster *h)
{
    memset(h->cut, 0, sizeof(h->cut));
}

/* ---- time ---- */

void h_tick(struct h_cluster *h, sv_raft_id id)
{
    sv_raft_tick(h_r(h, id));
    h_process(h, id);
}

void h_tick_all(struct h_cluster *h)
{
    for (sv_raft_id id = 1; id < H_NODES_MAX; id++) {
        if (h->nodes[id].exists && h->nodes[id].up) {
            sv_raft_tick(h->nodes[id].r);
        }
    }
    h_deliver_all(h);
}

void h_ticks(struct h_cluster *h, uint32_t cnt)
{
    for (uint32_t i = 0; i < cnt; i++) {
        h_tick_all(h);
    }
}

sv_raft_id h_leader(struct h_cluster *h, uint32_t mask)
{
    uint64_t max_term = 0;
    for (sv_raft_id id = 1; id < H_NODES_MAX; id++) {
        if (h->nodes[id].exists && h->nodes[id].up && h_in(mask, id)) {
            struct sv_raft_status st = h_st(h, id);
            if (st.term > max_term) {
                max_term = st.term;
            }
        }
    }
    for (sv_raft_id id = 1; id < H_NODES_MAX; id++) {
        if (h->nodes[id].exists && h->nodes[id].up && h_in(mask, id)) {
            struct sv_raft_status st = h_st(h, id);
            if (st.role == SV_RAFT_LEADER && st.term == max_term &&
                sv_raft_term_at(h->nodes[id].r, st.commit) == st.term) {
                return id;
            }
        }
    }
    return 0;
}

sv_raft_id h_wait_leader(struct h_cluster *h, uint32_t mask, uint32_t max_ticks)
{
    h_deliver_all(h);
    for (uint32_t t = 0; t <= max_ticks; t++) {
        sv_raft_id l = h_leader(h, mask);
        if (l != 0) {
            return l;
        }
        h_tick_all(h);
    }
    sv_test_fail(__FILE__, __LINE__, "no leader among mask 0x%x after %u ticks", mask, max_ticks);
}

sv_raft_id h_tick_until_leader(struct h_cluster *h)
{
    return h_wait_leader(h, H_ALL, 1000);
}

/* ---- proposals ---- */

uint64_t h_propose(struct h_cluster *h, sv_raft_id id, const void *data, size_t len)
{
    uint64_t index = 0;
    CHECK_RC(sv_raft_propose(h_r(h, id), data, len, &index), 0);
    CHECK(index > 0);
    const struct sv_raft_entry *e = sv_raft_entry_at(h_r(h, id), index);
    CHECK(e != NULL && e->type == SV_RAFT_ENTRY_NORMAL && e->len == len);
    CHECK_EQ_U64(e->term, h_st(h, id).term);
    return index;
}

uint64_t h_propose_and_commit(struct h_cluster *h, sv_raft_id id, const void *data, size_t len)
{
    uint64_t index = h_propose(h, id, data, len);
    h_deliver_all(h);
    CHECK_LE_U64(index, h_st(h, id).commit);
    CHECK_LE_U64(index, h->nodes[id].sm.applied);
    return index;
}

uint64_t h_conf_and_commit(struct h_cluster *h, sv_raft_id id, enum sv_raft_conf_change change,
                           sv_raft_id target)
{
    uint64_t index = 0;
    CHECK_RC(sv_raft_propose_conf(h_r(h, id), change, target, &index), 0);
    CHECK(index > 0);
    h_deliver_all(h);
    CHECK_LE_U64(index, h->nodes[id].sm.applied);
    return index;
}

/* ---- checks ---- */

void h_check_logs_equal(struct h_cluster *h, uint32_t mask)
{
    sv_raft_id ref = 0;
    struct sv_raft_status rst;
    memset(&rst, 0, sizeof(rst));
    for (sv_raft_id id = 1; id < H_NODES_MAX; id++) {
        if (!h->nodes[id].exists || !h->nodes[id].up || !h_in(mask, id)) {
            continue;
        }
        struct sv_raft_status st = h_st(h, id);
        if (ref == 0) {
            ref = id;
            rst = st;
            continue;
        }
        CHECK_MSG(st.last_index == rst.last_index,
                  "last index %" PRIu64 " on %" PRIu64 ", %" PRIu64 " on %" PRIu64, st.last_index,
                  id, rst.last_index, ref);
        CHECK_MSG(st.commit == rst.commit,
                  "commit %" PRIu64 " on %" PRIu64 ", %" PRIu64 " on %" PRIu64, st.commit, id,
                  rst.commit, ref);
        uint64_t from = st.first_index > rst.first_index ? st.first_index : rst.first_index;
        for (uint64_t i = from; i <= st.last_index; i++) {
            const struct sv_raft_entry *a = sv_raft_entry_at(h->nodes[id].r, i);
            const struct sv_raft_entry *b = sv_raft_entry_at(h->nodes[ref].r, i);
            CHECK_MSG(a != NULL && b != NULL,
                      "entry %" PRIu64 " missing on %" PRIu64 " or %" PRIu64, i, id, ref);
            CHECK_MSG(a->term == b->term && a->type == b->type && a->len == b->len &&
                          (a->len == 0 || memcmp(a->data, b->data, a->len) == 0),
                      "entry %" PRIu64 " differs: term %" PRIu64 " on %" PRIu64 ", %" PRIu64
                      " on %" PRIu64,
                      i, a->term, id, b->term, ref);
        }
        struct h_sm *sa = &h->nodes[id].sm;
        struct h_sm *sb = &h->nodes[ref].sm;
        CHECK_EQ_U64(sa->applied, sb->applied);
        CHECK_EQ_U64(sa->n_normal, sb->n_normal);
        CHECK_EQ_U64(sa->hash, sb->hash);
    }
}

bool h_applied_data(struct h_cluster *h, sv_raft_id id, const void *data, size_t len)
{
    struct h_node *n = node(h, id);
    uint64_t want = h_hash(data, len);
    for (size_t i = 0; i < n->cap_applied && i <= n->sm.applied; i++) {
        if (n->applied_hash[i] == want) {
            return true;
        }
    }
    return false;
}

bool h_read_seen(struct h_cluster *h, sv_raft_id id, uint64_t ctx, uint64_t *index_out)
{
    struct h_node *n = node(h, id);
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].ctx == ctx) {
            if (index_out != NULL) {
                *index_out = n->reads[i].index;
            }
            return true;
        }
    }
    return false;
}

void h_others(sv_raft_id not, sv_raft_id *a, sv_raft_id *b)
{
    sv_raft_id ids[2];
    int n = 0;
    for (sv_raft_id id = 1; id <= 3; id++) {
        if (id != not ) {
            ids[n++] = id;
        }
    }
    *a = ids[0];
    *b = ids[1];
}
