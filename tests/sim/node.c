/* Simulated servers: raft group lifecycle, the simulated disk, and ready handling per the header.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Simulated disk. ---- */

static uint64_t disk_base(const struct sim_disk *d)
{
    return d->has_snap ? d->snap.meta.index : 0;
}

uint64_t sv__disk_last(const struct sim_disk *d)
{
    return disk_base(d) + d->n;
}

static void disk_truncate(struct sim_disk *d, size_t keep)
{
    for (size_t i = keep; i < d->n; i++)
        free(d->ents[i].data);
    d->n = keep;
}

/* Drop entries up to and including `index` (they are covered by a snapshot). */
static void disk_drop_prefix(struct sim_disk *d, uint64_t index)
{
    uint64_t base = disk_base(d);
    if (index <= base)
        return;
    size_t k = (size_t)(index - base);
    if (k > d->n)
        k = d->n;
    for (size_t i = 0; i < k; i++)
        free(d->ents[i].data);
    memmove(d->ents, d->ents + k, (d->n - k) * sizeof(*d->ents));
    memmove(d->chain, d->chain + k, (d->n - k) * sizeof(*d->chain));
    d->n -= k;
}

static void disk_free(struct sim_disk *d)
{
    disk_truncate(d, 0);
    free(d->ents);
    free(d->chain);
    free(d->snap.data);
    memset(d, 0, sizeof(*d));
}

/* Replace the disk snapshot by (meta, blob, chain); the log keeps entries
 * after meta->index only if `keep_tail`. */
static int disk_set_snapshot(struct sim *s, struct sim_disk *d,
                             const struct sv_raft_snapshot_meta *meta, const uint8_t *blob,
                             uint64_t len, uint64_t chain, bool keep_tail)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        sv__fail(s, "sim", "out of memory (snapshot)");
        return -1;
    }
    memcpy(copy, blob, len);
    if (keep_tail) {
        if (meta->index >= sv__disk_last(d))
            disk_truncate(d, 0);
        else
            disk_drop_prefix(d, meta->index);
    } else {
        disk_truncate(d, 0);
    }
    free(d->snap.data);
    d->has_snap = true;
    d->snap.meta = *meta;
    d->snap.data = copy;
    d->snap.len = len;
    d->snap_chain = chain;
    return 0;
}

static int disk_reserve(struct sim *s, struct sim_disk *d, size_t need)
{
    if (need <= d->cap)
        return 0;
    size_t cap = d->cap ? d->cap : 64;
    while (cap < need)
        cap *= 2;
    struct sv_raft_entry *ents = realloc(d->ents, cap * sizeof(*ents));
    if (ents == NULL)
        goto nomem;
    d->ents = ents;
    uint64_t *chain = realloc(d->chain, cap * sizeof(*chain));
    if (chain == NULL)
        goto nomem;
    d->chain = chain;
    d->cap = cap;
    return 0;
nomem:
    sv__fail(s, "sim", "out of memory (disk)");
    return -1;
}

/* Persist rd.entries: truncate from entries[0].index, then append. */
static void persist_entries(struct sim *s, struct sim_node *n, const struct sv_raft_entry *ents,
                            size_t cnt)
{
    struct sim_disk *d = &n->disk;
    uint64_t base = disk_base(d), first = ents[0].index;
    if (first <= base) {
        sv__fail(s, "log-matching",
                 "n%" PRIu64 " asked to persist entries from index %" PRIu64
                 ", at or below its snapshot index %" PRIu64 " (rewrites committed state)",
                 n->id, first, base);
        return;
    }
    if (first > sv__disk_last(d) + 1) {
        sv__fail(s, "contract",
                 "n%" PRIu64 " asked to persist entries from index %" PRIu64
                 " but its stored log ends at %" PRIu64 " (gap)",
                 n->id, first, sv__disk_last(d));
        return;
    }
    for (size_t i = 1; i < cnt; i++) {
        if (ents[i].index != first + i) {
            sv__fail(s, "contract", "n%" PRIu64 " ready entries not contiguous at %" PRIu64, n->id,
                     ents[i].index);
            return;
        }
    }
    size_t keep = (size_t)(first - base - 1);
    if (keep < d->n && s->trace)
        sv__trace(s, "  n%" PRIu64 " disk: truncate log from %" PRIu64 " (had up to %" PRIu64 ")",
                  n->id, first, sv__disk_last(d));
    disk_truncate(d, keep);
    if (disk_reserve(s, d, keep + cnt) != 0)
        return;
    uint64_t prev = keep > 0 ? d->chain[keep - 1] : (d->has_snap ? d->snap_chain : 0);
    for (size_t i = 0; i < cnt; i++) {
        const struct sv_raft_entry *e = &ents[i];
        struct sv_raft_entry *c = &d->ents[d->n];
        *c = *e;
        c->data = malloc(e->len ? e->len : 1);
        if (c->data == NULL) {
            sv__fail(s, "sim", "out of memory (entry)");
            return;
        }
        if (e->len)
            memcpy(c->data, e->data, e->len);
        prev = sv__chain(prev, e->term, e->type, e->data, e->len);
        d->chain[d->n] = prev;
        d->n++;
        sv__check_log_entry(s, n, e->index, e->term, prev);
        if (s->failed)
            return;
    }
}

static void persist_hs(struct sim *s, struct sim_node *n, const struct sv_raft_hard_state *hs)
{
    struct sv_raft_hard_state *old = &n->disk.hs;
    if (hs->term < old->term) {
        sv__fail(s, "term-monotonic", "n%" PRIu64 " persisted term %" PRIu64 " after term %" PRIu64,
                 n->id, hs->term, old->term);
        return;
    }
    if (s->rule_checks && hs->term == old->term && old->vote != 0 && hs->vote != 0 &&
        hs->vote != old->vote) {
        sv__fail(s, "vote-stability",
                 "n%" PRIu64 " changed its persisted vote in term %" PRIu64 " from n%" PRIu64
                 " to n%" PRIu64 " (a server votes at most once per term)",
                 n->id, hs->term, old->vote, hs->vote);
        return;
    }
    *old = *hs;
}

/* Step 1 of the ready contract: make hs, entries and snapshot durable. */
static void persist(struct sim *s, struct sim_node *n, const struct sv_raft_ready *rd)
{
    if (rd->hs_changed) {
        persist_hs(s, n, &rd->hs);
        if (s->failed)
            return;
    }
    if (rd->snapshot != NULL) {
        const struct sv_raft_snapshot *snap = rd->snapshot;
        struct sim_kv tmp;
        if (sv__kv_unblob(snap->data, snap->len, &tmp) != 0 || tmp.applied != snap->meta.index ||
            tmp.applied_term != snap->meta.term) {
            sv__fail(s, "snapshot",
                     "n%" PRIu64 " received snapshot %" PRIu64 "/%" PRIu64
                     " whose data is corrupt or for another index (chunk reassembly?)",
                     n->id, snap->meta.index, snap->meta.term);
            return;
        }
        if (snap->meta.index < n->kv.applied) {
            sv__fail(s, "state-machine-safety",
                     "n%" PRIu64 " received snapshot at %" PRIu64
                     " below its applied index %" PRIu64 " (would move the state machine back)",
                     n->id, snap->meta.index, n->kv.applied);
            return;
        }
        sv__trace(s,
                  "  n%" PRIu64 " disk: snapshot %" PRIu64 "/%" PRIu64 " (%" PRIu64
                  " bytes) replaces log",
                  n->id, snap->meta.index, snap->meta.term, snap->len);
        if (disk_set_snapshot(s, &n->disk, &snap->meta, snap->data, snap->len, tmp.chain, false) !=
            0)
            return;
        sv__check_log_entry(s, n, snap->meta.index, snap->meta.term, tmp.chain);
        if (s->failed)
            return;
    }
    if (rd->n_entries > 0) {
        if (s->trace)
            sv__trace(s, "  n%" PRIu64 " disk: entries %" PRIu64 "..%" PRIu64, n->id,
                      rd->entries[0].index, rd->entries[rd->n_entries - 1].index);
        persist_entries(s, n, rd->entries, rd->n_entries);
    }
}

/* The node takes a snapshot of its state machine now and then (after advance). */
static void maybe_snapshot(struct sim *s, struct sim_node *n)
{
    struct sim_kv *kv = &n->kv;
    if (kv->applied == 0 || kv->applied - disk_base(&n->disk) < s->p.snap_every)
        return;
    if (kv->applied < disk_base(&n->disk))
        return;
    uint8_t *blob;
    uint64_t len;
    if (sv__kv_blob(s, kv, &blob, &len) != 0)
        return;
    uint64_t trailing = rng_range(&s->rng, 0, s->p.snap_trailing_max);
    int rc = sv_raft_snapshot(n->r, kv->applied, blob, len, trailing);
    if (rc == 0) {
        struct sv_raft_snapshot_meta meta;
        meta.index = kv->applied;
        meta.term = kv->applied_term;
        meta.conf = kv->conf;
        uint64_t t = sv_raft_term_at(n->r, kv->applied);
        if (t != kv->applied_term)
            sv__fail(s, "contract",
                     "n%" PRIu64 " term_at(%" PRIu64 ") = %" PRIu64
                     " but the applied entry there has term %" PRIu64,
                     n->id, kv->applied, t, kv->applied_term);
        else if (disk_set_snapshot(s, &n->disk, &meta, blob, len, kv->chain, true) == 0) {
            s->st.snapshots_taken++;
            sv__trace(s,
                      "  n%" PRIu64 " snapshot at %" PRIu64 "/%" PRIu64 " (%" PRIu64
                      " bytes, trailing %" PRIu64 ")",
                      n->id, meta.index, meta.term, len, trailing);
        }
    } else {
        sv__trace(s, "  n%" PRIu64 " snapshot at %" PRIu64 ": %s", n->id, kv->applied,
                  sv_raft_strerror(rc));
    }
    free(blob);
}

static int grow_sendmask(struct sim *s, size_t n)
{
    if (n <= s->sendmask_cap)
        return 0;
    size_t cap = s->sendmask_cap ? s->sendmask_cap : 64;
    while (cap < n)
        cap *= 2;
    uint8_t *m = realloc(s->sendmask, cap);
    if (m == NULL) {
        sv__fail(s, "sim", "out of memory (send mask)");
        return -1;
    }
    s->sendmask = m;
    s->sendmask_cap = cap;
    return 0;
}

void sv__node_process(struct sim *s, struct sim_node *n)
{
    unsigned rounds = 0;
    while (n->up && !s->failed && sv_raft_has_ready(n->r)) {
        if (++rounds > 10000) {
            sv__fail(s, "contract", "n%" PRIu64 " never runs out of ready batches", n->id);
            return;
        }
        struct sv_raft_ready rd;
        sv_raft_ready(n->r, &rd);
        if (grow_sendmask(s, rd.n_msgs) != 0)
            return;

        /* Early sends (thesis §10.2.1), a random subset. */
        for (size_t i = 0; i < rd.n_msgs; i++) {
            s->sendmask[i] = 0;
            if (sv_raft_msg_may_send_early(&rd.msgs[i]) && rng_ppm(&s->rng, 500000)) {
                s->sendmask[i] = 1;
                sv__net_send(s, n, &rd.msgs[i]);
            }
        }
        if (!s->setup && !s->calm && rng_ppm(&s->rng, s->p.p_crash_mid_ready)) {
            s->st.crashes_mid_ready++;
            sv__node_crash(s, n,
                           "in the middle of a ready: early messages sent, nothing persisted");
            return;
        }
        uint64_t old_commit = n->disk.hs.commit;
        persist(s, n, &rd);
        if (s->failed)
            return;
        uint32_t p_crash = s->p.p_crash_after_persist;
        if (rd.hs_changed && rd.hs.commit > old_commit && n->role == SV_RAFT_LEADER)
            p_crash = s->p.p_crash_on_commit; /* followers have not heard of it yet */
        if (!s->setup && !s->calm && rng_ppm(&s->rng, p_crash)) {
            s->st.crashes_mid_ready++;
            sv__node_crash(s, n, "after persisting a ready, before sending its messages");
            return;
        }
        for (size_t i = 0; i < rd.n_msgs; i++)
            if (!s->sendmask[i])
                sv__net_send(s, n, &rd.msgs[i]);
        if (s->failed)
            return;

        if (rd.snapshot != NULL) {
            sv__kv_install(s, n, rd.snapshot);
            if (s->failed)
                return;
        }
        if (rd.n_committed > 0 && s->trace)
            sv__trace(s, "  n%" PRIu64 " apply %" PRIu64 "..%" PRIu64, n->id, rd.committed[0].index,
                      rd.committed[rd.n_committed - 1].index);
        for (size_t i = 0; i < rd.n_committed && !s->failed; i++)
            sv__kv_apply(s, n, &rd.committed[i]);
        if (s->failed)
            return;
        for (size_t i = 0; i < rd.n_reads; i++) {
            sv__trace(s, "  n%" PRIu64 " read state ctx=%" PRIu64 " index=%" PRIu64, n->id,
                      rd.reads[i].ctx, rd.reads[i].index);
            if (n->n_reads < SIM_READS_MAX) {
                n->reads[n->n_reads].ctx = rd.reads[i].ctx;
                n->reads[n->n_reads].index = rd.reads[i].index;
                n->n_reads++;
            }
        }
        sv__kv_serve_reads(s, n);
        sv_raft_advance(n->r, &rd);
        maybe_snapshot(s, n);
    }
}

static void fill_options(struct sim *s, struct sim_node *n, struct sv_raft_options *o)
{
    sv_raft_options_default(o, n->id);
    o->election_ticks = s->p.election_ticks;
    o->heartbeat_ticks = s->p.heartbeat_ticks;
    o->max_inflight = s->p.max_inflight;
    o->max_msg_entries = s->p.max_msg_entries;
    o->max_msg_bytes = s->p.max_msg_bytes;
    o->snapshot_chunk_bytes = s->p.snapshot_chunk_bytes;
    o->max_apply_entries = s->p.max_apply_entries;
    o->pre_vote = s->p.pre_vote;
    o->check_quorum = s->p.check_quorum;
    o->lease_read = s->p.lease_read;
    o->seed = rng_next(&s->rng);
    o->bugs = s->bugs;
}

static void node_reset_runtime(struct sim_node *n)
{
    n->n_reads = 0;
    n->role = SV_RAFT_FOLLOWER;
    n->term = 0;
    n->led_term = 0;
}

int sv__node_create(struct sim *s, struct sim_node *n, sv_raft_id id,
                    const struct sv_raft_conf *bootstrap)
{
    memset(n, 0, sizeof(*n));
    n->used = true;
    n->id = id;
    sv__kv_reset(&n->kv);
    node_reset_runtime(n);
    struct sv_raft_options o;
    fill_options(s, n, &o);
    int rc = sv_raft_create(&o, NULL, &n->r);
    if (rc != 0) {
        sv__fail(s, "sim", "sv_raft_create(n%" PRIu64 "): %s", id, sv_raft_strerror(rc));
        n->used = false;
        return rc;
    }
    n->up = true;
    if (bootstrap != NULL) {
        rc = sv_raft_bootstrap(n->r, bootstrap);
        if (rc != 0) {
            sv__fail(s, "sim", "sv_raft_bootstrap(n%" PRIu64 "): %s", id, sv_raft_strerror(rc));
            return rc;
        }
    }
    sv__trace(s, "n%" PRIu64 " created%s", id,
              bootstrap ? " and bootstrapped" : " (empty, waits for a leader)");
    return 0;
}

void sv__node_crash(struct sim *s, struct sim_node *n, const char *how)
{
    if (!n->up)
        return;
    sv_raft_destroy(n->r);
    n->r = NULL;
    n->up = false;
    n->incarnation++;
    node_reset_runtime(n);
    n->down_until = s->now + rng_range(&s->rng, 1, s->p.down_max);
    s->st.crashes++;
    sv__trace(s,
              "n%" PRIu64 " CRASH %s; disk keeps term=%" PRIu64 " vote=%" PRIu64 " commit=%" PRIu64
              " log %" PRIu64 "..%" PRIu64 "%s; restart at tick %" PRIu64,
              n->id, how, n->disk.hs.term, n->disk.hs.vote, n->disk.hs.commit,
              disk_base(&n->disk) + 1, sv__disk_last(&n->disk),
              n->disk.has_snap ? " after a snapshot" : "", n->down_until);
}

void sv__node_restart(struct sim *s, struct sim_node *n)
{
    if (n->up || !n->used)
        return;
    struct sim_disk *d = &n->disk;
    struct sv_raft_restore rs;
    memset(&rs, 0, sizeof(rs));
    rs.hs = d->hs;
    rs.snapshot = d->has_snap ? &d->snap : NULL;
    rs.entries = d->ents;
    rs.n_entries = d->n;
    bool empty =
        !d->has_snap && d->n == 0 && d->hs.term == 0 && d->hs.vote == 0 && d->hs.commit == 0;
    struct sv_raft_options o;
    fill_options(s, n, &o);
    int rc = sv_raft_create(&o, empty ? NULL : &rs, &n->r);
    if (rc != 0) {
        sv__fail(s, "restore",
                 "n%" PRIu64 " could not restart from its disk: %s (term=%" PRIu64
                 " commit=%" PRIu64 " log %" PRIu64 "..%" PRIu64 ")",
                 n->id, sv_raft_strerror(rc), d->hs.term, d->hs.commit, disk_base(d) + 1,
                 sv__disk_last(d));
        return;
    }
    n->up = true;
    node_reset_runtime(n);
    /* The state machine comes back from the disk snapshot; raft then gives
     * the committed entries after it again. */
    sv__kv_reset(&n->kv);
    if (d->has_snap && sv__kv_unblob(d->snap.data, d->snap.len, &n->kv) != 0) {
        sv__fail(s, "sim", "n%" PRIu64 " disk snapshot does not decode", n->id);
        return;
    }
    if (d->has_snap)
        n->kv.conf = d->snap.meta.conf;
    s->st.restarts++;
    sv__trace(s,
              "n%" PRIu64 " RESTART from disk: term=%" PRIu64 " vote=%" PRIu64 " commit=%" PRIu64
              " snapshot=%" PRIu64 " log %" PRIu64 "..%" PRIu64,
              n->id, d->hs.term, d->hs.vote, d->hs.commit, disk_base(d), disk_base(d) + 1,
              sv__disk_last(d));
}

void sv__node_retire(struct sim *s, struct sim_node *n)
{
    sv__trace(s, "n%" PRIu64 " retired (removed from the configuration)", n->id);
    if (n->up)
        sv_raft_destroy(n->r);
    n->r = NULL;
    disk_free(&n->disk);
    sv__net_clear_slot(s, (int)(n - s->nodes));
    memset(n, 0, sizeof(*n));
}
