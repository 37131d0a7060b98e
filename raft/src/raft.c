/* The Raft state machine: elections, replication, commit, snapshots,
 * membership, transfer and reads. No I/O: see the contract in raft.h. */
#include <string.h>

#include "internal.h"

/* Lease reads stop this many ticks before followers may vote again, to
 * absorb tick phase differences between servers. */
enum { LEASE_MARGIN_TICKS = 2 };

/* ---------------------------------------------------------------------------
 * Small helpers
 */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t last_index(const struct sv_raft *r)
{
    return sv__log_last(&r->log);
}

static uint64_t term_at(const struct sv_raft *r, uint64_t index)
{
    return sv__log_term(&r->log, index);
}

static bool is_voter(const struct sv_raft *r, sv_raft_id id)
{
    return sv_raft_conf_role(&r->conf, id) == SV_RAFT_VOTER;
}

static uint32_t n_voters(const struct sv_raft_conf *conf)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < conf->n; i++) {
        n += conf->servers[i].role == SV_RAFT_VOTER;
    }
    return n;
}

static uint32_t quorum(const struct sv_raft *r)
{
    return n_voters(&r->conf) / 2 + 1;
}

static struct sv__progress *progress(struct sv_raft *r, sv_raft_id id)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

static void reset_randomized_timeout(struct sv_raft *r)
{
    r->randomized_timeout =
        r->opts.election_ticks + (uint32_t)(rng_next(&r->rng) % r->opts.election_ticks);
}

/* Queue an outgoing message. Running out of memory drops it, which the
 * protocol tolerates like any lost message. */
static struct sv_raft_msg *send(struct sv_raft *r, uint8_t type, sv_raft_id to, uint64_t term)
{
    if (sv__grow((void **)&r->out, &r->cap_out, r->n_out + 1, sizeof(*r->out)) != 0) {
        return NULL;
    }
    struct sv_raft_msg *m = &r->out[r->n_out++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = r->opts.id;
    m->to = to;
    m->term = term;
    return m;
}

static void push_read_ready(struct sv_raft *r, uint64_t ctx, uint64_t index)
{
    if (sv__grow((void **)&r->reads_ready, &r->cap_reads_ready, r->n_reads_ready + 1,
                 sizeof(*r->reads_ready)) != 0) {
        return; /* the caller's read times out and is retried */
    }
    r->reads_ready[r->n_reads_ready].ctx = ctx;
    r->reads_ready[r->n_reads_ready].index = index;
    r->n_reads_ready++;
}

/* Configuration in force at index: the last CONF entry at or before it, or
 * the snapshot's. */
static int conf_at(const struct sv_raft *r, uint64_t index, struct sv_raft_conf *out,
                   uint64_t *conf_index)
{
    for (uint64_t i = index; i > r->log.offset; i--) {
        const struct sv_raft_entry *e = sv__log_at(&r->log, i);
        if (e->type == SV_RAFT_ENTRY_CONF) {
            *conf_index = i;
            return sv_raft_conf_decode(e->data, e->len, out);
        }
    }
    *out = r->snap.meta.conf;
    *conf_index = r->snap.meta.index;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Progress (leader only)
 */

static void pr_reset(struct sv_raft *r, struct sv__progress *pr, sv_raft_id id)
{
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->next = last_index(r) + 1;
    pr->state = PR_PROBE;
    pr->recent_active = true;
}

static void pr_become(struct sv__progress *pr, enum pr_state state)
{
    pr->state = state;
    pr->probe_sent = false;
    pr->in_start = 0;
    pr->in_count = 0;
    pr->snap_stall = 0;
}

/* Make prs match r->conf, keeping the progress of members that stay. */
static int prs_sync(struct sv_raft *r)
{
    struct sv__progress *prs = calloc(r->conf.n ? r->conf.n : 1, sizeof(*prs));
    if (prs == NULL) {
        return SV_RAFT_E_NOMEM;
    }
    for (uint32_t i = 0; i < r->conf.n; i++) {
        sv_raft_id id = r->conf.servers[i].id;
        struct sv__progress *old = progress(r, id);
        if (old != NULL) {
            prs[i] = *old;
        } else {
            pr_reset(r, &prs[i], id);
        }
    }
    free(r->prs);
    r->prs = prs;
    r->n_prs = r->conf.n;
    return 0;
}

static void set_conf(struct sv_raft *r, const struct sv_raft_conf *conf, uint64_t index)
{
    r->conf = *conf;
    r->conf_index = index;
    if (r->role == SV_RAFT_LEADER && prs_sync(r) != 0) {
        /* Without progress for the new members the leader cannot lead the
         * configuration it just adopted; stepping down is the safe answer. */
        r->role = SV_RAFT_FOLLOWER;
        r->leader = 0;
    }
}

/* After the log lost entries, the configuration in force may be an older one. */
static void conf_recompute(struct sv_raft *r)
{
    if (r->conf_index <= last_index(r)) {
        return;
    }
    struct sv_raft_conf c;
    uint64_t ci;
    ASSERT(conf_at(r, last_index(r), &c, &ci) == 0);
    set_conf(r, &c, ci);
}

/* ---------------------------------------------------------------------------
 * Role changes
 */

static void clear_reads(struct sv_raft *r)
{
    r->n_reads_pending = 0;
    r->heartbeat_pending = false;
}

static void become_follower(struct sv_raft *r, uint64_t term, sv_raft_id leader)
{
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = SV_RAFT_FOLLOWER;
    r->leader = leader;
    r->election_elapsed = 0;
    r->transferee = 0;
    r->append_pending = false;
    free(r->prs);
    r->prs = NULL;
    r->n_prs = 0;
    clear_reads(r);
    reset_randomized_timeout(r);
}

static void send_append(struct sv_raft *r, struct sv__progress *pr, bool allow_empty);
static void become_leader(struct sv_raft *r);

static void send_vote_requests(struct sv_raft *r, uint8_t type, uint64_t term, bool transfer)
{
    for (uint32_t i = 0; i < r->conf.n; i++) {
        const struct sv_raft_server *s = &r->conf.servers[i];
        if (s->role != SV_RAFT_VOTER || s->id == r->opts.id) {
            continue;
        }
        struct sv_raft_msg *m = send(r, type, s->id, term);
        if (m != NULL) {
            m->index = last_index(r);
            m->log_term = term_at(r, last_index(r));
            m->transfer = transfer;
        }
    }
}

/* Record a vote; returns (granted, rejected) counts among voters. */
static void tally(struct sv_raft *r, sv_raft_id from, bool granted, uint32_t *yes, uint32_t *no)
{
    bool seen = false;
    for (uint32_t i = 0; i < r->n_voted; i++) {
        if (r->voted_ids[i] == from) {
            seen = true;
        }
    }
    if (!seen && r->n_voted < SV_RAFT_SERVERS_MAX) {
        r->voted_ids[r->n_voted] = from;
        r->voted_granted[r->n_voted] = granted;
        r->n_voted++;
    }
    *yes = 0;
    *no = 0;
    for (uint32_t i = 0; i < r->n_voted; i++) {
        if (!is_voter(r, r->voted_ids[i])) {
            continue;
        }
        if (r->voted_granted[i]) {
            (*yes)++;
        } else {
            (*no)++;
        }
    }
}

/* Start an election (§5.2), preceded by a pre-vote round (thesis §9.6)
 * unless this is a leadership transfer. */
static void campaign(struct sv_raft *r, bool pre_vote, bool transfer)
{
    if (!is_voter(r, r->opts.id)) {
        return;
    }
    r->n_voted = 0;
    r->leader = 0;
    r->election_elapsed = 0;
    reset_randomized_timeout(r);
    free(r->prs);
    r->prs = NULL;
    r->n_prs = 0;
    clear_reads(r);
    uint32_t yes, no;
    if (pre_vote) {
        r->role = SV_RAFT_PRE_CANDIDATE;
        tally(r, r->opts.id, true, &yes, &no);
        if (yes >= quorum(r)) {
            campaign(r, false, false);
            return;
        }
        send_vote_requests(r, SV_RAFT_MSG_PRE_VOTE, r->term + 1, false);
        return;
    }
    r->role = SV_RAFT_CANDIDATE;
    r->term++;
    r->vote = r->opts.id;
    tally(r, r->opts.id, true, &yes, &no);
    if (yes >= quorum(r)) {
        become_leader(r);
        return;
    }
    send_vote_requests(r, SV_RAFT_MSG_VOTE, r->term, transfer);
}

static void become_leader(struct sv_raft *r)
{
    r->role = SV_RAFT_LEADER;
    r->leader = r->opts.id;
    r->heartbeat_elapsed = 0;
    r->election_elapsed = 0;
    r->transferee = 0;
    r->lease_broken = false;
    clear_reads(r);
    if (prs_sync(r) != 0) {
        become_follower(r, r->term, 0);
        return;
    }
    /* A new leader commits an entry of its own term first (§5.4.2, §8). */
    struct sv_raft_entry noop = {
        .term = r->term, .index = last_index(r) + 1, .type = SV_RAFT_ENTRY_NOOP};
    if (sv__log_append(&r->log, &noop) != 0) {
        become_follower(r, r->term, 0);
        return;
    }
    r->append_pending = true;
}

/* ---------------------------------------------------------------------------
 * Replication (leader)
 */

static bool in_lease(const struct sv_raft *r);

static void inflight_add(struct sv__progress *pr, uint64_t last, uint32_t max)
{
    ASSERT(pr->in_count < max);
    pr->inflight[(pr->in_start + pr->in_count) % SV_RAFT_INFLIGHT_MAX] = last;
    pr->in_count++;
}

static void inflight_free_to(struct sv__progress *pr, uint64_t index)
{
    while (pr->in_count > 0 && pr->inflight[pr->in_start] <= index) {
        pr->in_start = (pr->in_start + 1) % SV_RAFT_INFLIGHT_MAX;
        pr->in_count--;
    }
}

static void send_snapshot_chunks(struct sv_raft *r, struct sv__progress *pr)
{
    uint64_t chunk = r->opts.snapshot_chunk_bytes;
    uint64_t window = chunk * r->opts.max_inflight;
    while (!pr->snap_done_sent && pr->snap_next - pr->snap_acked < window) {
        uint64_t len = r->snap.len - pr->snap_next;
        if (len > chunk) {
            len = chunk;
        }
        struct sv_raft_msg *m = send(r, SV_RAFT_MSG_SNAPSHOT, pr->id, r->term);
        if (m == NULL) {
            return;
        }
        m->snap = r->snap.meta;
        m->offset = pr->snap_next;
        m->len = (uint32_t)len; /* data is resolved in sv_raft_ready */
        pr->snap_next += len;
        m->done = pr->snap_next == r->snap.len;
        pr->snap_done_sent = m->done;
    }
}

static void start_snapshot(struct sv_raft *r, struct sv__progress *pr)
{
    ASSERT(r->snap.meta.index >= r->log.offset && r->snap.data != NULL);
    pr_become(pr, PR_SNAPSHOT);
    pr->snap_index = r->snap.meta.index;
    pr->snap_next = 0;
    pr->snap_acked = 0;
    pr->snap_done_sent = false;
    pr->snap_rewound = UINT64_MAX;
    send_snapshot_chunks(r, pr);
}

/* Send pr the entries from pr->next, as flow control allows; with
 * allow_empty an empty append goes out as a probe. */
static void send_append(struct sv_raft *r, struct sv__progress *pr, bool allow_empty)
{
    if (pr->id == r->opts.id) {
        return;
    }
    for (;;) {
        if (pr->state == PR_SNAPSHOT) {
            if (pr->snap_index != r->snap.meta.index) {
                start_snapshot(r, pr); /* a newer snapshot replaced the one in transfer */
            } else {
                send_snapshot_chunks(r, pr);
            }
            return;
        }
        if (pr->state == PR_PROBE && pr->probe_sent) {
            return;
        }
        if (pr->state == PR_REPLICATE && pr->in_count >= r->opts.max_inflight) {
            return;
        }
        uint64_t prev = pr->next - 1;
        if (prev < r->log.offset) {
            start_snapshot(r, pr);
            return;
        }
        uint64_t last = last_index(r);
        uint64_t n = 0, bytes = 0;
        while (pr->next + n <= last && n < r->opts.max_msg_entries) {
            const struct sv_raft_entry *e = sv__log_at(&r->log, pr->next + n);
            if (n > 0 && bytes + e->len > r->opts.max_msg_bytes) {
                break;
            }
            bytes += e->len;
            n++;
        }
        if (n == 0 && !allow_empty) {
            return;
        }
        struct sv_raft_msg *m = send(r, SV_RAFT_MSG_APPEND, pr->id, r->term);
        if (m == NULL) {
            return;
        }
        m->index = prev;
        m->log_term = term_at(r, prev);
        m->commit = r->commit;
        m->n_entries = (uint32_t)n; /* entries are resolved in sv_raft_ready */
        if (pr->state == PR_PROBE) {
            pr->probe_sent = true;
            return;
        }
        if (n == 0) {
            return;
        }
        pr->next += n;
        inflight_add(pr, pr->next - 1, r->opts.max_inflight);
        allow_empty = false;
    }
}

static void send_heartbeat(struct sv_raft *r, const struct sv__progress *pr)
{
    if (pr->id == r->opts.id) {
        return;
    }
    struct sv_raft_msg *m = send(r, SV_RAFT_MSG_HEARTBEAT, pr->id, r->term);
    if (m == NULL) {
        return;
    }
    /* Never tell a follower to commit beyond what it is known to hold. */
    m->commit = pr->match < r->commit ? pr->match : r->commit;
    m->ctx = r->read_seq;
    m->lease_tick = r->now;
}

static void bcast_heartbeat(struct sv_raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        send_heartbeat(r, &r->prs[i]);
    }
}

static bool term_committed(const struct sv_raft *r)
{
    return term_at(r, r->commit) == r->term;
}

/* Largest value v such that a quorum of voters has value >= v (self
 * counted as self_value when a voter). */
static uint64_t quorum_value(struct sv_raft *r, size_t field, uint64_t self_value)
{
    uint64_t vals[SV_RAFT_SERVERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct sv__progress *pr = &r->prs[i];
        if (!is_voter(r, pr->id)) {
            continue;
        }
        uint64_t v =
            pr->id == r->opts.id ? self_value : *(const uint64_t *)((const char *)pr + field);
        uint32_t j = n++;
        while (j > 0 && vals[j - 1] < v) { /* insertion sort, descending */
            vals[j] = vals[j - 1];
            j--;
        }
        vals[j] = v;
    }
    uint32_t q = quorum(r);
    return n >= q ? vals[q - 1] : 0;
}

/* Serve confirmed ReadIndex requests (thesis §6.4): all requests whose
 * heartbeat round a quorum answered, once an entry of this term committed. */
static void release_reads(struct sv_raft *r)
{
    if (r->n_reads_pending == 0 || !term_committed(r)) {
        return;
    }
    uint64_t acked = quorum_value(r, offsetof(struct sv__progress, read_acked), r->read_seq);
    size_t done = 0;
    while (done < r->n_reads_pending && r->reads_pending[done].seq <= acked) {
        const struct pending_read *p = &r->reads_pending[done];
        if (p->from == 0 || p->from == r->opts.id) {
            push_read_ready(r, p->ctx, r->commit);
        } else {
            struct sv_raft_msg *m = send(r, SV_RAFT_MSG_READ_INDEX_RESP, p->from, r->term);
            if (m != NULL) {
                m->ctx = p->ctx;
                m->index = r->commit;
            }
        }
        done++;
    }
    memmove(r->reads_pending, r->reads_pending + done,
            (r->n_reads_pending - done) * sizeof(*r->reads_pending));
    r->n_reads_pending -= done;
}

static void send_timeout_now(struct sv_raft *r, sv_raft_id to)
{
    if (send(r, SV_RAFT_MSG_TIMEOUT_NOW, to, r->term) != NULL) {
        r->lease_broken = true;
    }
}

/* A leader no longer a voter of its committed configuration steps down
 * (thesis §4.2.2), handing over to the most caught-up voter. */
static void maybe_step_down_removed(struct sv_raft *r)
{
    if (r->role != SV_RAFT_LEADER || r->conf_index > r->commit || is_voter(r, r->opts.id)) {
        return;
    }
    struct sv__progress *best = NULL;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct sv__progress *pr = &r->prs[i];
        if (is_voter(r, pr->id) && (best == NULL || pr->match > best->match)) {
            best = pr;
        }
    }
    if (best != NULL && best->match == last_index(r)) {
        send_timeout_now(r, best->id);
    }
    become_follower(r, r->term, 0);
}

/* Advance commit to what a quorum holds, counting only entries of the
 * current term (§5.4.2, Figure 8). */
static void maybe_commit(struct sv_raft *r)
{
    if (r->role != SV_RAFT_LEADER) {
        return;
    }
    uint64_t q = quorum_value(r, offsetof(struct sv__progress, match), r->persisted);
    if (q <= r->commit) {
        return;
    }
    if (term_at(r, q) != r->term && !BUG(r, COMMIT_OLD_TERM_BY_COUNT)) {
        return;
    }
    r->commit = q;
    release_reads(r);
    r->commit_pending = true; /* tell followers the new commit index */
    maybe_step_down_removed(r);
}

/* ---------------------------------------------------------------------------
 * Message handlers
 */

static void respond(struct sv_raft *r, const struct sv_raft_msg *in, uint8_t type, bool reject,
                    uint64_t index)
{
    struct sv_raft_msg *m = send(r, type, in->from, r->term);
    if (m != NULL) {
        m->reject = reject;
        m->index = index;
    }
}

static bool log_up_to_date(const struct sv_raft *r, uint64_t index, uint64_t term)
{
    uint64_t my_term = term_at(r, last_index(r));
    return term > my_term || (term == my_term && index >= last_index(r));
}

static void handle_vote(struct sv_raft *r, const struct sv_raft_msg *m)
{
    bool pre = m->type == SV_RAFT_MSG_PRE_VOTE;
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);
    bool up_to_date = log_up_to_date(r, m->index, m->log_term) || BUG(r, VOTE_WITHOUT_LOG_CHECK);
    uint8_t type = pre ? SV_RAFT_MSG_PRE_VOTE_RESP : SV_RAFT_MSG_VOTE_RESP;
    if (can_vote && up_to_date) {
        /* A granted pre-vote answers in the term it was asked for. */
        struct sv_raft_msg *resp = send(r, type, m->from, m->term);
        if (resp != NULL && !pre) {
            r->vote = m->from;
            r->election_elapsed = 0;
        }
        return;
    }
    struct sv_raft_msg *resp = send(r, type, m->from, r->term);
    if (resp != NULL) {
        resp->reject = true;
    }
}

static void handle_vote_resp(struct sv_raft *r, const struct sv_raft_msg *m)
{
    bool pre = m->type == SV_RAFT_MSG_PRE_VOTE_RESP;
    if ((pre && r->role != SV_RAFT_PRE_CANDIDATE) || (!pre && r->role != SV_RAFT_CANDIDATE)) {
        return;
    }
    uint32_t yes, no;
    tally(r, m->from, !m->reject, &yes, &no);
    if (yes >= quorum(r)) {
        if (pre) {
            campaign(r, false, false);
        } else {
            become_leader(r);
        }
    } else if (no >= quorum(r)) {
        become_follower(r, r->term, 0);
    }
}

/* Validate the CONF entries of an append before touching the log. */
static bool entries_valid(const struct sv_raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct sv_raft_entry *e = &m->entries[i];
        struct sv_raft_conf c;
        if (e->index != m->index + 1 + i || e->term > m->term || e->term < m->log_term ||
            (i > 0 && e->term < m->entries[i - 1].term) || e->len > SV_RAFT_ENTRY_BYTES_MAX ||
            (e->len > 0 && e->data == NULL) ||
            (e->type == SV_RAFT_ENTRY_CONF && sv_raft_conf_decode(e->data, e->len, &c) != 0)) {
            return false;
        }
    }
    return true;
}

/* Append entries after a matching prev entry: skip what we hold, truncate at
 * the first conflict, append the rest (§5.3). Returns 0 or NOMEM. */
static int append_entries(struct sv_raft *r, const struct sv_raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct sv_raft_entry *e = &m->entries[i];
        if (e->index <= r->commit || e->index <= r->log.offset) {
            continue; /* committed entries match the leader's (leader completeness) */
        }
        if (e->index <= last_index(r)) {
            if (term_at(r, e->index) == e->term) {
                continue;
            }
            ASSERT(e->index > r->commit || BUG(r, APPLY_BEFORE_COMMIT) ||
                   BUG(r, COMMIT_OLD_TERM_BY_COUNT) || BUG(r, VOTE_WITHOUT_LOG_CHECK) ||
                   BUG(r, FORGET_VOTE_ON_RESTART));
            sv__log_truncate(&r->log, e->index);
            if (r->persisted >= e->index) {
                r->persisted = e->index - 1;
            }
            if (r->applied >= e->index) {
                r->applied = e->index - 1; /* only reachable with a deliberate bug */
            }
            conf_recompute(r);
        }
        int rv = sv__log_append(&r->log, e);
        if (rv != 0) {
            return rv;
        }
        if (e->type == SV_RAFT_ENTRY_CONF) {
            struct sv_raft_conf c;
            ASSERT(sv_raft_conf_decode(e->data, e->len, &c) == 0);
            set_conf(r, &c, e->index);
        }
    }
    return 0;
}

static void commit_to(struct sv_raft *r, uint64_t index)
{
    if (index > last_index(r)) {
        index = last_index(r);
    }
    if (index > r->commit) {
        r->commit = index;
    }
}

static void handle_append(struct sv_raft *r, const struct sv_raft_msg *m)
{
    uint64_t prev = m->index;
    if (prev < r->commit) {
        respond(r, m, SV_RAFT_MSG_APPEND_RESP, false, r->commit);
        return;
    }
    if (prev > last_index(r) || term_at(r, prev) != m->log_term) {
        struct sv_raft_msg *resp = send(r, SV_RAFT_MSG_APPEND_RESP, m->from, r->term);
        if (resp == NULL) {
            return;
        }
        resp->reject = true;
        resp->index = prev;
        uint64_t hint = sv__log_find_conflict_by_term(&r->log, prev, m->log_term);
        resp->hint_index = hint;
        resp->hint_term = term_at(r, hint);
        return;
    }
    if (append_entries(r, m) != 0) {
        return; /* out of memory: no answer, the leader retries */
    }
    uint64_t last_new = prev + m->n_entries;
    commit_to(r, m->commit < last_new ? m->commit : last_new);
    respond(r, m, SV_RAFT_MSG_APPEND_RESP, false, last_new);
}

static void handle_append_resp(struct sv_raft *r, struct sv__progress *pr,
                               const struct sv_raft_msg *m)
{
    if (m->reject) {
        if (pr->state == PR_REPLICATE) {
            if (m->index <= pr->match) {
                return; /* stale */
            }
            pr_become(pr, PR_PROBE);
            pr->next = pr->match + 1;
        } else if (pr->state == PR_PROBE) {
            if (m->index != pr->next - 1) {
                return; /* stale */
            }
            uint64_t probe = m->hint_index;
            if (m->hint_term > 0) {
                probe = sv__log_find_conflict_by_term(&r->log, m->hint_index, m->hint_term);
            }
            uint64_t next = probe + 1 < m->index ? probe + 1 : m->index;
            pr->next = next > pr->match + 1 ? next : pr->match + 1;
            pr->probe_sent = false;
        } else {
            return;
        }
        send_append(r, pr, true);
        return;
    }
    bool progressed = m->index > pr->match;
    if (progressed) {
        pr->match = m->index;
    }
    if (pr->next <= m->index) {
        pr->next = m->index + 1;
    }
    if (pr->state == PR_SNAPSHOT && pr->match >= pr->snap_index) {
        pr_become(pr, PR_REPLICATE);
        pr->next = pr->match + 1;
    } else if (pr->state == PR_PROBE) {
        pr_become(pr, PR_REPLICATE);
        pr->next = pr->match + 1;
    } else if (pr->state == PR_REPLICATE) {
        inflight_free_to(pr, m->index);
    }
    if (progressed) {
        maybe_commit(r);
        if (r->role != SV_RAFT_LEADER) {
            return;
        }
    }
    if (pr->id == r->transferee && pr->match == last_index(r)) {
        send_timeout_now(r, pr->id);
    }
    send_append(r, pr, false);
}

static void handle_heartbeat(struct sv_raft *r, const struct sv_raft_msg *m)
{
    commit_to(r, m->commit);
    struct sv_raft_msg *resp = send(r, SV_RAFT_MSG_HEARTBEAT_RESP, m->from, r->term);
    if (resp != NULL) {
        resp->ctx = m->ctx;
        resp->lease_tick = m->lease_tick;
    }
}

static void handle_heartbeat_resp(struct sv_raft *r, struct sv__progress *pr,
                                  const struct sv_raft_msg *m)
{
    pr->probe_sent = false;
    if (m->ctx > pr->read_acked) {
        pr->read_acked = m->ctx;
    }
    if (m->lease_tick > pr->lease_acked) {
        pr->lease_acked = m->lease_tick;
    }
    if (pr->match < last_index(r)) {
        if (pr->state == PR_REPLICATE) {
            /* An append may have been lost: probe at next-1 outside the
             * window; a reject sends pr back to probing from match. */
            struct sv_raft_msg *p = send(r, SV_RAFT_MSG_APPEND, pr->id, r->term);
            if (p != NULL) {
                p->index = pr->next - 1;
                p->log_term = term_at(r, pr->next - 1);
                p->commit = r->commit;
            }
        } else {
            send_append(r, pr, true);
        }
    }
    release_reads(r);
}

/* A snapshot chunk (§7). Chunks must arrive in order; a gap makes the
 * follower report what it holds so the leader resends from there. */
static void handle_snapshot(struct sv_raft *r, const struct sv_raft_msg *m)
{
    const struct sv_raft_snapshot_meta *meta = &m->snap;
    if (meta->index <= r->commit) {
        r->rx_len = 0;
        respond(r, m, SV_RAFT_MSG_APPEND_RESP, false, r->commit);
        return;
    }
    /* Two leaders may serialize the same index differently: a transfer is
     * identified by its sender and term as well. */
    bool same = r->rx_meta.index == meta->index && r->rx_meta.term == meta->term &&
                r->rx_from == m->from && r->rx_term == m->term;
    if (!same && m->offset == 0) {
        r->rx_meta = *meta;
        r->rx_from = m->from;
        r->rx_term = m->term;
        r->rx_len = 0;
    } else if (!same || m->offset != r->rx_len) {
        /* A gap (reject: resend from rx_len, or from 0 for an unknown
         * transfer) or a duplicate of a chunk we hold (ack what we have;
         * the same sender, term and index mean the same bytes). */
        struct sv_raft_msg *resp = send(r, SV_RAFT_MSG_SNAPSHOT_RESP, m->from, r->term);
        if (resp != NULL) {
            resp->reject = !same || m->offset > r->rx_len;
            resp->snap.index = meta->index;
            resp->offset = same ? r->rx_len : 0;
        }
        return;
    }
    if (r->rx_len + m->len > SV_RAFT_SNAPSHOT_BYTES_MAX ||
        sv__grow((void **)&r->rx_data, &r->rx_cap, (size_t)(r->rx_len + m->len), 1) != 0) {
        r->rx_len = 0;
        r->rx_meta.index = 0;
        return;
    }
    if (m->len > 0) {
        memcpy(r->rx_data + r->rx_len, m->data, m->len);
    }
    r->rx_len += m->len;
    if (!m->done) {
        struct sv_raft_msg *resp = send(r, SV_RAFT_MSG_SNAPSHOT_RESP, m->from, r->term);
        if (resp != NULL) {
            resp->snap.index = meta->index;
            resp->offset = r->rx_len;
        }
        return;
    }
    /* Complete. If our log already holds the snapshot's last entry, just
     * commit up to it; otherwise replace log and state with the snapshot. */
    if (term_at(r, meta->index) == meta->term) {
        commit_to(r, meta->index);
    } else {
        uint8_t *data = malloc(r->rx_len ? r->rx_len : 1);
        if (data == NULL) {
            return;
        }
        memcpy(data, r->rx_data, r->rx_len);
        free(r->snap.data);
        r->snap.meta = *meta;
        r->snap.data = data;
        r->snap.len = r->rx_len;
        r->snap_install = true;
        sv__log_reset(&r->log, meta->index, meta->term);
        r->persisted = meta->index;
        r->commit = meta->index;
        r->applied = r->applied < meta->index ? r->applied : meta->index;
        set_conf(r, &meta->conf, meta->index);
    }
    r->rx_len = 0;
    r->rx_meta.index = 0;
    respond(r, m, SV_RAFT_MSG_APPEND_RESP, false, meta->index);
}

static void handle_snapshot_resp(struct sv_raft *r, struct sv__progress *pr,
                                 const struct sv_raft_msg *m)
{
    if (pr->state != PR_SNAPSHOT || m->snap.index != pr->snap_index) {
        return;
    }
    if (m->reject) {
        /* A gap report. Offset 0 means the follower holds nothing of this
         * transfer (it restarted, or saw another first); any other offset
         * below what it confirmed is an old report overtaken by acks. */
        if ((m->offset != 0 && m->offset < pr->snap_acked) || m->offset > r->snap.len ||
            (m->offset == pr->snap_rewound && m->offset < pr->snap_next)) {
            return; /* stale, or already resending from there (a lost resend stalls) */
        }
        pr->snap_acked = m->offset;
        pr->snap_next = m->offset;
        pr->snap_rewound = m->offset;
        pr->snap_done_sent = false;
    } else if (m->offset > pr->snap_acked && m->offset < r->snap.len) {
        /* The follower holds a prefix of this very snapshot: go on from it,
         * past what we sent if a rewind left us behind. */
        pr->snap_acked = m->offset;
        if (pr->snap_next < m->offset) {
            pr->snap_next = m->offset;
        }
    } else {
        return; /* no news: only progress holds off the stall timer */
    }
    pr->snap_stall = 0;
    send_append(r, pr, false);
}

static void handle_read_index(struct sv_raft *r, const struct sv_raft_msg *m)
{
    if (r->role != SV_RAFT_LEADER) {
        return; /* the requester times out and retries */
    }
    if (in_lease(r) && term_committed(r)) {
        struct sv_raft_msg *resp = send(r, SV_RAFT_MSG_READ_INDEX_RESP, m->from, r->term);
        if (resp != NULL) {
            resp->ctx = m->ctx;
            resp->index = r->commit;
        }
        return;
    }
    if (sv__grow((void **)&r->reads_pending, &r->cap_reads_pending, r->n_reads_pending + 1,
                 sizeof(*r->reads_pending)) != 0) {
        return;
    }
    struct pending_read *p = &r->reads_pending[r->n_reads_pending++];
    p->ctx = m->ctx;
    p->from = m->from;
    p->seq = ++r->read_seq;
    r->heartbeat_pending = true;
    release_reads(r); /* a single voter confirms itself */
}

/* Messages a leader sends: receiving one at our term means it is the leader. */
static bool from_leader(uint8_t type)
{
    return type == SV_RAFT_MSG_APPEND || type == SV_RAFT_MSG_HEARTBEAT ||
           type == SV_RAFT_MSG_SNAPSHOT || type == SV_RAFT_MSG_TIMEOUT_NOW;
}

static bool msg_valid(const struct sv_raft *r, const struct sv_raft_msg *m)
{
    if (m->type == 0 || m->type >= SV_RAFT_MSG_TYPE_MAX_ || m->from == 0 || m->from == r->opts.id ||
        m->to != r->opts.id) {
        return false;
    }
    if (m->n_entries > SV_RAFT_MSG_ENTRIES_MAX || (m->n_entries > 0 && m->entries == NULL) ||
        (m->n_entries > 0 && m->type != SV_RAFT_MSG_APPEND)) {
        return false;
    }
    if (m->type == SV_RAFT_MSG_SNAPSHOT &&
        ((m->len > 0 && m->data == NULL) || m->offset > SV_RAFT_SNAPSHOT_BYTES_MAX ||
         m->snap.conf.n > SV_RAFT_SERVERS_MAX || m->snap.index == 0)) {
        return false;
    }
    return true;
}

int sv_raft_step(struct sv_raft *r, const struct sv_raft_msg *m)
{
    if (!msg_valid(r, m)) {
        return SV_RAFT_E_BAD_ARG;
    }
    if (m->type == SV_RAFT_MSG_APPEND && !entries_valid(m)) {
        return SV_RAFT_E_BAD_ARG;
    }
    if (m->term > r->term) {
        bool vote_req = m->type == SV_RAFT_MSG_VOTE || m->type == SV_RAFT_MSG_PRE_VOTE;
        if (vote_req && !m->transfer && r->opts.check_quorum &&
            (r->leader != 0 || r->sticky_restart) && r->election_elapsed < r->opts.election_ticks) {
            /* Leader stickiness: we heard from a live leader within the
             * minimum election timeout (thesis §4.2.3), or just started. */
            return 0;
        }
        if (m->type == SV_RAFT_MSG_PRE_VOTE ||
            (m->type == SV_RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
            /* pre-votes never change our term */
        } else {
            become_follower(r, m->term, from_leader(m->type) ? m->from : 0);
        }
    } else if (m->term < r->term) {
        if (m->type == SV_RAFT_MSG_APPEND || m->type == SV_RAFT_MSG_HEARTBEAT) {
            /* Tell a stale leader about our term so it steps down; without
             * this, pre-vote and check-quorum can leave it stuck. */
            respond(r, m, SV_RAFT_MSG_APPEND_RESP, true, 0);
        } else if (m->type == SV_RAFT_MSG_PRE_VOTE || m->type == SV_RAFT_MSG_VOTE) {
            /* Reject with our term (§5.1) so the candidate catches up: a
             * server whose configuration does not list us as a voter never
             * asks us, and two such servers would otherwise race their
             * terms upward forever. */
            struct sv_raft_msg *resp = send(
                r, m->type == SV_RAFT_MSG_VOTE ? SV_RAFT_MSG_VOTE_RESP : SV_RAFT_MSG_PRE_VOTE_RESP,
                m->from, r->term);
            if (resp != NULL) {
                resp->reject = true;
            }
        }
        return 0;
    }

    switch (m->type) {
    case SV_RAFT_MSG_PRE_VOTE:
    case SV_RAFT_MSG_VOTE:
        handle_vote(r, m);
        return 0;
    case SV_RAFT_MSG_PRE_VOTE_RESP:
    case SV_RAFT_MSG_VOTE_RESP:
        handle_vote_resp(r, m);
        return 0;
    default:
        break;
    }

    if (from_leader(m->type)) {
        if (r->role == SV_RAFT_LEADER) {
            return 0; /* impossible for a correct peer: one leader per term */
        }
        if (r->role != SV_RAFT_FOLLOWER) {
            become_follower(r, r->term, m->from);
        }
        r->leader = m->from;
        r->election_elapsed = 0;
        r->sticky_restart = false;
        switch (m->type) {
        case SV_RAFT_MSG_APPEND:
            handle_append(r, m);
            break;
        case SV_RAFT_MSG_HEARTBEAT:
            handle_heartbeat(r, m);
            break;
        case SV_RAFT_MSG_SNAPSHOT:
            handle_snapshot(r, m);
            break;
        default: /* TIMEOUT_NOW */
            campaign(r, false, true);
            break;
        }
        return 0;
    }

    if (m->type == SV_RAFT_MSG_READ_INDEX) {
        handle_read_index(r, m);
        return 0;
    }
    if (m->type == SV_RAFT_MSG_READ_INDEX_RESP) {
        if (r->role == SV_RAFT_FOLLOWER) {
            push_read_ready(r, m->ctx, m->index);
        }
        return 0;
    }

    /* Responses to a leader. */
    if (r->role != SV_RAFT_LEADER) {
        return 0;
    }
    struct sv__progress *pr = progress(r, m->from);
    if (pr == NULL) {
        return 0;
    }
    pr->recent_active = true;
    switch (m->type) {
    case SV_RAFT_MSG_APPEND_RESP:
        handle_append_resp(r, pr, m);
        break;
    case SV_RAFT_MSG_HEARTBEAT_RESP:
        handle_heartbeat_resp(r, pr, m);
        break;
    case SV_RAFT_MSG_SNAPSHOT_RESP:
        handle_snapshot_resp(r, pr, m);
        break;
    default:
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Time
 */

static bool quorum_active(struct sv_raft *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct sv__progress *pr = &r->prs[i];
        if (is_voter(r, pr->id) && (pr->recent_active || pr->id == r->opts.id)) {
            n++;
        }
        pr->recent_active = false;
    }
    return n >= quorum(r);
}

static void tick_leader(struct sv_raft *r)
{
    r->election_elapsed++;
    if (r->election_elapsed >= r->opts.election_ticks) {
        r->election_elapsed = 0;
        if (r->opts.check_quorum && !quorum_active(r)) {
            become_follower(r, r->term, 0); /* thesis §6.2: lost touch with a quorum */
            return;
        }
        if (r->transferee != 0) {
            r->transferee = 0; /* give up the transfer (thesis §3.10) */
        }
    }
    if (++r->heartbeat_elapsed >= r->opts.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r);
        for (uint32_t i = 0; i < r->n_prs; i++) {
            struct sv__progress *pr = &r->prs[i];
            if (pr->state == PR_SNAPSHOT && ++pr->snap_stall > r->opts.election_ticks / 2 + 1) {
                /* No progress: lost chunks, or a follower that restarted
                 * below what it once confirmed. Start over from 0; the
                 * follower acks what it already holds of this transfer, so
                 * the leader skips ahead at once. */
                pr->snap_stall = 0;
                pr->snap_acked = 0;
                pr->snap_next = 0;
                pr->snap_rewound = UINT64_MAX;
                pr->snap_done_sent = false;
                send_append(r, pr, false);
            }
        }
    }
}

void sv_raft_tick(struct sv_raft *r)
{
    r->now++;
    if (r->role == SV_RAFT_LEADER) {
        tick_leader(r);
        return;
    }
    r->election_elapsed++;
    if (r->election_elapsed >= r->opts.election_ticks) {
        r->sticky_restart = false;
    }
    if (r->election_elapsed >= r->randomized_timeout && is_voter(r, r->opts.id)) {
        campaign(r, r->opts.pre_vote, false);
    }
}

/* ---------------------------------------------------------------------------
 * Requests from the application
 */

int sv_raft_propose(struct sv_raft *r, const void *data, size_t len, uint64_t *index_out)
{
    if (r->role != SV_RAFT_LEADER) {
        return SV_RAFT_E_NOT_LEADER;
    }
    if (r->transferee != 0) {
        return SV_RAFT_E_TRANSFERRING;
    }
    if (len > SV_RAFT_ENTRY_BYTES_MAX) {
        return SV_RAFT_E_TOO_BIG;
    }
    struct sv_raft_entry e = {.term = r->term,
                              .index = last_index(r) + 1,
                              .type = SV_RAFT_ENTRY_NORMAL,
                              .len = (uint32_t)len,
                              .data = (uint8_t *)data};
    int rv = sv__log_append(&r->log, &e);
    if (rv != 0) {
        return rv;
    }
    r->append_pending = true;
    if (index_out != NULL) {
        *index_out = e.index;
    }
    return 0;
}

int sv_raft_propose_conf(struct sv_raft *r, enum sv_raft_conf_change change, sv_raft_id id,
                         uint64_t *index_out)
{
    if (r->role != SV_RAFT_LEADER) {
        return SV_RAFT_E_NOT_LEADER;
    }
    if (r->transferee != 0) {
        return SV_RAFT_E_TRANSFERRING;
    }
    if (r->conf_index > r->commit) {
        return SV_RAFT_E_CONF_PENDING;
    }
    if (!term_committed(r)) {
        /* The fix to single-server changes (Ongaro, raft-dev 2015). */
        return SV_RAFT_E_NOT_READY;
    }
    struct sv_raft_conf c = r->conf;
    int role = sv_raft_conf_role(&c, id);
    uint32_t pos = 0;
    while (pos < c.n && c.servers[pos].id != id) {
        pos++;
    }
    switch (change) {
    case SV_RAFT_ADD_LEARNER:
        if (id == 0 || role != 0 || c.n >= SV_RAFT_SERVERS_MAX) {
            return SV_RAFT_E_BAD_CONF;
        }
        c.servers[c.n].id = id;
        c.servers[c.n].role = SV_RAFT_LEARNER;
        c.n++;
        break;
    case SV_RAFT_PROMOTE:
        if (role != SV_RAFT_LEARNER) {
            return SV_RAFT_E_BAD_CONF;
        }
        c.servers[pos].role = SV_RAFT_VOTER;
        break;
    case SV_RAFT_DEMOTE:
        if (role != SV_RAFT_VOTER || n_voters(&c) < 2) {
            return SV_RAFT_E_BAD_CONF;
        }
        c.servers[pos].role = SV_RAFT_LEARNER;
        break;
    case SV_RAFT_REMOVE:
        if (role == 0 || (role == SV_RAFT_VOTER && n_voters(&c) < 2)) {
            return SV_RAFT_E_BAD_CONF;
        }
        c.servers[pos] = c.servers[c.n - 1];
        c.n--;
        break;
    default:
        return SV_RAFT_E_BAD_ARG;
    }
    uint8_t buf[8 + 9 * SV_RAFT_SERVERS_MAX];
    ASSERT(sv_raft_conf_encoded_len(&c) <= sizeof(buf));
    sv_raft_conf_encode(&c, buf);
    struct sv_raft_entry e = {.term = r->term,
                              .index = last_index(r) + 1,
                              .type = SV_RAFT_ENTRY_CONF,
                              .len = (uint32_t)sv_raft_conf_encoded_len(&c),
                              .data = buf};
    int rv = sv__log_append(&r->log, &e);
    if (rv != 0) {
        return rv;
    }
    set_conf(r, &c, e.index);
    r->append_pending = true;
    if (index_out != NULL) {
        *index_out = e.index;
    }
    /* A single-voter group may commit at once, or lose its only voter. */
    maybe_commit(r);
    return 0;
}

static bool in_lease(const struct sv_raft *r)
{
    if (!r->opts.lease_read || !r->opts.check_quorum || r->role != SV_RAFT_LEADER ||
        r->lease_broken || r->transferee != 0) {
        return false;
    }
    uint64_t start =
        quorum_value((struct sv_raft *)r, offsetof(struct sv__progress, lease_acked), r->now);
    return r->now < start + r->opts.election_ticks - LEASE_MARGIN_TICKS;
}

int sv_raft_read_index(struct sv_raft *r, uint64_t ctx)
{
    if (r->role == SV_RAFT_LEADER) {
        if (in_lease(r) && term_committed(r)) {
            push_read_ready(r, ctx, r->commit);
            return 0;
        }
        if (sv__grow((void **)&r->reads_pending, &r->cap_reads_pending, r->n_reads_pending + 1,
                     sizeof(*r->reads_pending)) != 0) {
            return SV_RAFT_E_NOMEM;
        }
        struct pending_read *p = &r->reads_pending[r->n_reads_pending++];
        p->ctx = ctx;
        p->from = 0;
        p->seq = ++r->read_seq;
        r->heartbeat_pending = true;
        release_reads(r);
        return 0;
    }
    if (r->leader == 0) {
        return SV_RAFT_E_NOT_LEADER;
    }
    struct sv_raft_msg *m = send(r, SV_RAFT_MSG_READ_INDEX, r->leader, r->term);
    if (m == NULL) {
        return SV_RAFT_E_NOMEM;
    }
    m->ctx = ctx;
    return 0;
}

int sv_raft_transfer_leader(struct sv_raft *r, sv_raft_id to)
{
    if (r->role != SV_RAFT_LEADER) {
        return SV_RAFT_E_NOT_LEADER;
    }
    if (to == r->opts.id || !is_voter(r, to)) {
        return SV_RAFT_E_BAD_CONF;
    }
    if (r->transferee == to) {
        return 0;
    }
    struct sv__progress *pr = progress(r, to);
    ASSERT(pr != NULL);
    r->transferee = to;
    r->election_elapsed = 0; /* the transfer is abandoned after one election timeout */
    if (pr->match == last_index(r)) {
        send_timeout_now(r, to);
    } else {
        send_append(r, pr, true);
    }
    return 0;
}

void sv_raft_campaign(struct sv_raft *r)
{
    if (r->role != SV_RAFT_LEADER) {
        campaign(r, r->opts.pre_vote, false);
    }
}

int sv_raft_snapshot(struct sv_raft *r, uint64_t index, const void *data, uint64_t len,
                     uint64_t trailing)
{
    if (index > r->applied || index < r->snap.meta.index || index < r->log.offset || index == 0) {
        return SV_RAFT_E_BAD_ARG;
    }
    if (len > SV_RAFT_SNAPSHOT_BYTES_MAX) {
        return SV_RAFT_E_TOO_BIG;
    }
    struct sv_raft_snapshot_meta meta = {.index = index, .term = term_at(r, index)};
    uint64_t ci;
    if (conf_at(r, index, &meta.conf, &ci) != 0) {
        return SV_RAFT_E_CORRUPT;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return SV_RAFT_E_NOMEM;
    }
    if (len > 0) {
        memcpy(copy, data, len);
    }
    free(r->snap.data);
    r->snap.meta = meta;
    r->snap.data = copy;
    r->snap.len = len;
    uint64_t upto = index > trailing ? index - trailing : 0;
    if (upto > r->log.offset) {
        sv__log_compact(&r->log, upto);
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Creation and restore
 */

static bool options_valid(const struct sv_raft_options *o)
{
    return o->id != 0 && o->election_ticks >= 2 && o->heartbeat_ticks >= 1 &&
           o->heartbeat_ticks < o->election_ticks && o->max_inflight >= 1 &&
           o->max_inflight <= SV_RAFT_INFLIGHT_MAX && o->max_msg_entries >= 1 &&
           o->max_msg_entries <= SV_RAFT_MSG_ENTRIES_MAX && o->snapshot_chunk_bytes >= 1 &&
           (!o->lease_read || (o->check_quorum && o->election_ticks > LEASE_MARGIN_TICKS));
}

static int restore(struct sv_raft *r, const struct sv_raft_restore *rs)
{
    uint64_t snap_index = 0, snap_term = 0;
    if (rs->snapshot != NULL) {
        const struct sv_raft_snapshot *s = rs->snapshot;
        if (s->len > SV_RAFT_SNAPSHOT_BYTES_MAX || (s->len > 0 && s->data == NULL) ||
            s->meta.conf.n > SV_RAFT_SERVERS_MAX) {
            return SV_RAFT_E_CORRUPT;
        }
        r->snap.meta = s->meta;
        r->snap.len = s->len;
        r->snap.data = malloc(s->len ? s->len : 1);
        if (r->snap.data == NULL) {
            return SV_RAFT_E_NOMEM;
        }
        if (s->len > 0) {
            memcpy(r->snap.data, s->data, s->len);
        }
        snap_index = s->meta.index;
        snap_term = s->meta.term;
    }
    sv__log_init(&r->log, snap_index, snap_term);
    for (size_t i = 0; i < rs->n_entries; i++) {
        const struct sv_raft_entry *e = &rs->entries[i];
        if (e->index <= snap_index) {
            continue; /* storage may keep entries the snapshot covers */
        }
        if (e->index != last_index(r) + 1 || e->term < term_at(r, last_index(r)) ||
            e->term > rs->hs.term || (e->len > 0 && e->data == NULL)) {
            return SV_RAFT_E_CORRUPT;
        }
        int rv = sv__log_append(&r->log, e);
        if (rv != 0) {
            return rv;
        }
    }
    r->term = rs->hs.term;
    r->vote = BUG(r, FORGET_VOTE_ON_RESTART) ? 0 : rs->hs.vote;
    r->commit = rs->hs.commit > snap_index ? rs->hs.commit : snap_index;
    if (r->commit > last_index(r)) {
        return SV_RAFT_E_CORRUPT;
    }
    r->applied = rs->applied > snap_index ? rs->applied : snap_index;
    if (r->applied > r->commit) {
        return SV_RAFT_E_CORRUPT;
    }
    r->persisted = last_index(r);
    struct sv_raft_conf c;
    uint64_t ci;
    if (conf_at(r, last_index(r), &c, &ci) != 0) {
        return SV_RAFT_E_CORRUPT;
    }
    r->conf = c;
    r->conf_index = ci;
    return 0;
}

int sv_raft_create(const struct sv_raft_options *opts, const struct sv_raft_restore *rs,
                   struct sv_raft **out)
{
    if (!options_valid(opts)) {
        return SV_RAFT_E_BAD_ARG;
    }
    struct sv_raft *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return SV_RAFT_E_NOMEM;
    }
    r->opts = *opts;
    r->role = SV_RAFT_FOLLOWER;
    r->rng = opts->seed ^ (opts->id * 0x9e3779b97f4a7c15ULL);
    sv__log_init(&r->log, 0, 0);
    if (rs != NULL) {
        int rv = restore(r, rs);
        if (rv != 0) {
            sv_raft_destroy(r);
            return rv;
        }
    }
    r->prev_hs.term = r->term;
    r->prev_hs.vote = r->vote;
    r->prev_hs.commit = r->commit;
    r->sticky_restart = true;
    reset_randomized_timeout(r);
    *out = r;
    return 0;
}

int sv_raft_bootstrap(struct sv_raft *r, const struct sv_raft_conf *conf)
{
    if (last_index(r) != 0 || r->term != 0) {
        return SV_RAFT_E_BAD_ARG;
    }
    uint8_t buf[8 + 9 * SV_RAFT_SERVERS_MAX];
    if (conf->n > SV_RAFT_SERVERS_MAX || n_voters(conf) == 0) {
        return SV_RAFT_E_BAD_CONF;
    }
    sv_raft_conf_encode(conf, buf);
    struct sv_raft_conf check;
    if (sv_raft_conf_decode(buf, sv_raft_conf_encoded_len(conf), &check) != 0) {
        return SV_RAFT_E_BAD_CONF; /* duplicate or zero id, bad role */
    }
    struct sv_raft_entry e = {.term = 1,
                              .index = 1,
                              .type = SV_RAFT_ENTRY_CONF,
                              .len = (uint32_t)sv_raft_conf_encoded_len(conf),
                              .data = buf};
    int rv = sv__log_append(&r->log, &e);
    if (rv != 0) {
        return rv;
    }
    r->term = 1;
    set_conf(r, conf, 1);
    return 0;
}

void sv_raft_destroy(struct sv_raft *r)
{
    if (r == NULL) {
        return;
    }
    sv__log_close(&r->log);
    free(r->snap.data);
    free(r->rx_data);
    free(r->prs);
    free(r->reads_pending);
    free(r->out);
    free(r->reads_ready);
    free(r);
}

/* ---------------------------------------------------------------------------
 * Ready / advance
 */

static uint64_t apply_limit(const struct sv_raft *r)
{
    uint64_t hi = BUG(r, APPLY_BEFORE_COMMIT) ? last_index(r) : r->commit;
    if (r->opts.max_apply_entries > 0 && hi > r->applied + r->opts.max_apply_entries) {
        hi = r->applied + r->opts.max_apply_entries;
    }
    return hi;
}

/* Broadcasts deferred so that everything proposed or asked since the last
 * ready goes out in as few messages as possible. */
static void flush_pending(struct sv_raft *r)
{
    if (r->role != SV_RAFT_LEADER) {
        r->append_pending = false;
        r->heartbeat_pending = false;
        r->commit_pending = false;
        return;
    }
    if (r->heartbeat_pending) {
        bcast_heartbeat(r); /* a read round; carries the commit index too */
    }
    if (r->append_pending || r->commit_pending) {
        for (uint32_t i = 0; i < r->n_prs; i++) {
            size_t before = r->n_out;
            send_append(r, &r->prs[i], false);
            if (r->n_out == before && r->commit_pending && !r->heartbeat_pending) {
                send_heartbeat(r, &r->prs[i]);
            }
        }
    }
    r->append_pending = false;
    r->heartbeat_pending = false;
    r->commit_pending = false;
}

bool sv_raft_has_ready(const struct sv_raft *r)
{
    return r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
           r->commit != r->prev_hs.commit || r->persisted < last_index(r) || r->snap_install ||
           apply_limit(r) > r->applied || r->n_out > 0 || r->n_reads_ready > 0 ||
           (r->role == SV_RAFT_LEADER &&
            (r->append_pending || r->heartbeat_pending || r->commit_pending));
}

/* Resolve the log and snapshot pointers of queued messages; drop those whose
 * data is gone (an old term's appends, a replaced snapshot): lost messages
 * are harmless. */
static void resolve_msgs(struct sv_raft *r)
{
    size_t keep = 0;
    for (size_t i = 0; i < r->n_out; i++) {
        struct sv_raft_msg *m = &r->out[i];
        bool ok = true;
        if (m->type == SV_RAFT_MSG_APPEND) {
            ok = m->term == r->term && r->role == SV_RAFT_LEADER;
            if (ok && m->n_entries > 0) {
                struct sv_raft_entry *first = sv__log_at(&r->log, m->index + 1);
                ok = first != NULL && m->index + m->n_entries <= last_index(r);
                m->entries = first;
            }
        } else if (m->type == SV_RAFT_MSG_SNAPSHOT) {
            ok = m->snap.index == r->snap.meta.index && m->snap.term == r->snap.meta.term &&
                 m->offset + m->len <= r->snap.len;
            m->data = ok ? r->snap.data + m->offset : NULL;
        }
        if (ok) {
            r->out[keep++] = *m;
        }
    }
    r->n_out = keep;
}

void sv_raft_ready(struct sv_raft *r, struct sv_raft_ready *rd)
{
    flush_pending(r);
    resolve_msgs(r);
    memset(rd, 0, sizeof(*rd));
    rd->hs.term = r->term;
    rd->hs.vote = r->vote;
    rd->hs.commit = r->commit;
    rd->hs_changed =
        r->term != r->prev_hs.term || r->vote != r->prev_hs.vote || r->commit != r->prev_hs.commit;
    ASSERT(r->persisted >= r->log.offset);
    if (r->persisted < last_index(r)) {
        rd->entries = sv__log_at(&r->log, r->persisted + 1);
        rd->n_entries = (size_t)(last_index(r) - r->persisted);
    }
    if (r->snap_install) {
        rd->snapshot = &r->snap;
    }
    uint64_t first = r->applied + 1;
    if (r->snap_install && first <= r->snap.meta.index) {
        first = r->snap.meta.index + 1;
    }
    uint64_t hi = apply_limit(r);
    if (hi >= first) {
        rd->committed = sv__log_at(&r->log, first);
        rd->n_committed = (size_t)(hi - first + 1);
        ASSERT(rd->committed != NULL);
    }
    rd->msgs = r->out;
    rd->n_msgs = r->n_out;
    rd->reads = r->reads_ready;
    rd->n_reads = r->n_reads_ready;
}

void sv_raft_advance(struct sv_raft *r, const struct sv_raft_ready *rd)
{
    r->prev_hs = rd->hs;
    if (rd->n_entries > 0) {
        r->persisted = rd->entries[rd->n_entries - 1].index;
    }
    if (rd->snapshot != NULL) {
        r->snap_install = false;
        if (r->applied < rd->snapshot->meta.index) {
            r->applied = rd->snapshot->meta.index;
        }
    }
    if (rd->n_committed > 0) {
        r->applied = rd->committed[rd->n_committed - 1].index;
    }
    r->n_out = 0;
    r->n_reads_ready = 0;
    if (r->role == SV_RAFT_LEADER) {
        maybe_commit(r); /* the leader's own persisted entries count now */
    }
}

/* ---------------------------------------------------------------------------
 * Introspection
 */

void sv_raft_status(const struct sv_raft *r, struct sv_raft_status *st)
{
    memset(st, 0, sizeof(*st));
    st->id = r->opts.id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->leader = r->leader;
    st->commit = r->commit;
    st->applied = r->applied;
    st->first_index = r->log.offset + 1;
    st->last_index = last_index(r);
    st->snapshot_index = r->snap.meta.index;
    st->conf = r->conf;
    st->conf_index = r->conf_index;
    st->transferee = r->transferee;
}

uint64_t sv_raft_term_at(const struct sv_raft *r, uint64_t index)
{
    return term_at(r, index);
}

int sv_raft_match(const struct sv_raft *r, sv_raft_id id, uint64_t *match)
{
    if (r->role != SV_RAFT_LEADER) {
        return SV_RAFT_E_NOT_LEADER;
    }
    const struct sv__progress *pr = progress((struct sv_raft *)r, id);
    if (pr == NULL) {
        return SV_RAFT_E_BAD_ARG;
    }
    *match = pr->match;
    return 0;
}

int sv_raft_conf_at(const struct sv_raft *r, uint64_t index, struct sv_raft_conf *out)
{
    uint64_t ci;
    return conf_at(r, index, out, &ci) ? SV_RAFT_E_CORRUPT : 0;
}

const struct sv_raft_entry *sv_raft_entry_at(const struct sv_raft *r, uint64_t index)
{
    return sv__log_at(&r->log, index);
}
