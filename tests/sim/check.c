/* Raft's safety properties (Raft paper §5.2-§5.4, Figure 3), checked after every simulator step. */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Make arr (of elem bytes) hold at least `need` zeroed slots. */
static int grow_zeroed(struct sim *s, void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL) {
        sv__fail(s, "sim", "out of memory (checker)");
        return -1;
    }
    memset((char *)p + *cap * elem, 0, (ncap - *cap) * elem);
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Election safety: at most one leader per term (§5.2). Leader completeness:
 * a new leader holds every entry some server applied (§5.4). */
static void check_new_leader(struct sim *s, struct sim_node *n, const struct sv_raft_status *st)
{
    struct sim_check *c = &s->chk;
    if (grow_zeroed(s, (void **)&c->term_leader, &c->term_cap, st->term + 1,
                    sizeof(*c->term_leader)) != 0)
        return;
    sv_raft_id other = c->term_leader[st->term];
    if (other != 0 && other != n->id) {
        sv__fail(s, "election-safety",
                 "n%" PRIu64 " and n%" PRIu64 " are both leaders of term %" PRIu64, other, n->id,
                 st->term);
        return;
    }
    c->term_leader[st->term] = n->id;
    s->st.elections++;

    /* Only entries committed in a term below this one must be present: a
     * stale candidate may still win an older term after a later commit. */
    uint64_t k = 0;
    for (size_t i = c->n_ckpt; i-- > 0;)
        if (c->ckpt[i].bound < st->term) {
            k = c->ckpt[i].index;
            break;
        }
    if (k == 0 || st->snapshot_index >= k)
        return; /* everything applied is inside its snapshot, checked on install */
    const struct sim_appslot *a = &c->app[k];
    uint64_t t = sv_raft_term_at(n->r, k);
    if (st->last_index < k || t != a->term)
        sv__fail(s, "leader-completeness",
                 "n%" PRIu64 " became leader of term %" PRIu64 " with log ending at %" PRIu64
                 " (term %" PRIu64 " at index %" PRIu64 "), but n%" PRIu64 " applied index %" PRIu64
                 " of term %" PRIu64,
                 n->id, st->term, st->last_index, t, k, a->node, k, a->term);
}

struct sim_node *sv__check_roles(struct sim *s)
{
    struct sim_node *won = NULL;
    for (int i = 0; i < SIM_SLOTS_MAX && !s->failed; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->used || !n->up)
            continue;
        struct sv_raft_status st;
        sv_raft_status(n->r, &st);
        if (st.term < n->term)
            sv__fail(s, "term-monotonic",
                     "n%" PRIu64 " went from term %" PRIu64 " back to %" PRIu64, n->id, n->term,
                     st.term);
        if (st.role == SV_RAFT_LEADER && n->led_term != st.term) {
            sv__trace(s,
                      "n%" PRIu64 " is LEADER of term %" PRIu64 " (log %" PRIu64 "..%" PRIu64
                      ", commit %" PRIu64 ")",
                      n->id, st.term, st.first_index, st.last_index, st.commit);
            n->led_term = st.term;
            n->led_commit = st.commit;
            check_new_leader(s, n, &st);
            won = n;
        } else if (s->rule_checks && st.role == SV_RAFT_LEADER && st.commit > n->led_commit &&
                   st.commit > st.snapshot_index && sv_raft_term_at(n->r, st.commit) != st.term) {
            /* §5.4.2: a leader commits by counting replicas only entries of
             * its own term; older ones follow them. */
            sv__fail(s, "commit-rule",
                     "n%" PRIu64 ", leader of term %" PRIu64
                     ", advanced its commit index to %" PRIu64 ", an entry of term %" PRIu64
                     " (Figure 8: a later leader may overwrite it)",
                     n->id, st.term, st.commit, sv_raft_term_at(n->r, st.commit));
        }
        n->role = st.role;
        n->term = st.term;
    }
    return won;
}

/* Log matching (§5.3): two logs with an entry of the same index and term are
 * identical up to it. The chain hash of an entry covers the whole prefix, so
 * the property is: same (index, term) => same chain, across all servers and
 * all time (entries are only ever persisted, never rewritten in place). */
void sv__check_log_entry(struct sim *s, struct sim_node *n, uint64_t index, uint64_t term,
                         uint64_t chain)
{
    struct sim_check *c = &s->chk;
    if (grow_zeroed(s, (void **)&c->log, &c->log_cap, index + 1, sizeof(*c->log)) != 0)
        return;
    struct sim_logslot *slot = &c->log[index];
    for (uint32_t i = 0; i < slot->n; i++) {
        const struct sim_logv *v = &slot->v[i];
        if (v->term != term)
            continue;
        if (v->chain != chain)
            sv__fail(s, "log-matching",
                     "n%" PRIu64 " and n%" PRIu64 " both hold index %" PRIu64 " of term %" PRIu64
                     " with different prefixes (chain %016" PRIx64 " vs %016" PRIx64 ")",
                     v->node, n->id, index, term, v->chain, chain);
        return;
    }
    if (slot->n == slot->cap) {
        uint32_t cap = slot->cap ? slot->cap * 2 : 2;
        struct sim_logv *v = realloc(slot->v, cap * sizeof(*v));
        if (v == NULL) {
            sv__fail(s, "sim", "out of memory (log check)");
            return;
        }
        slot->v = v;
        slot->cap = cap;
    }
    slot->v[slot->n++] = (struct sim_logv){.term = term, .chain = chain, .node = n->id};
}

static void note_max_applied(struct sim *s, struct sim_node *n, uint64_t index)
{
    struct sim_check *c = &s->chk;
    struct sv_raft_status st;
    sv_raft_status(n->r, &st);
    uint64_t bound = st.term;
    c->max_applied = index;
    /* Keep bounds non-decreasing: a larger bound is still an upper bound. */
    if (c->n_ckpt > 0 && c->ckpt[c->n_ckpt - 1].bound >= bound) {
        c->ckpt[c->n_ckpt - 1].index = index;
        return;
    }
    if (c->n_ckpt == c->ckpt_cap) {
        size_t cap = c->ckpt_cap ? c->ckpt_cap * 2 : 64;
        struct sim_ckpt *p = realloc(c->ckpt, cap * sizeof(*p));
        if (p == NULL) {
            sv__fail(s, "sim", "out of memory (checker)");
            return;
        }
        c->ckpt = p;
        c->ckpt_cap = cap;
    }
    c->ckpt[c->n_ckpt++] = (struct sim_ckpt){.bound = bound, .index = index};
}

/* State-machine safety (§5.4.3): every server applies the same entry at an
 * index, and reaches the same state there. type 0xff marks a snapshot
 * install, which carries no entry type. */
void sv__check_applied(struct sim *s, struct sim_node *n, uint64_t index, uint64_t term,
                       uint8_t type, uint64_t chain, uint64_t digest)
{
    struct sim_check *c = &s->chk;
    if (grow_zeroed(s, (void **)&c->app, &c->app_cap, index + 1, sizeof(*c->app)) != 0)
        return;
    struct sim_appslot *a = &c->app[index];
    if (!a->set) {
        *a = (struct sim_appslot){.set = true,
                                  .type = type,
                                  .term = term,
                                  .chain = chain,
                                  .digest = digest,
                                  .node = n->id};
        if (index > c->max_applied)
            note_max_applied(s, n, index);
        return;
    }
    bool type_differs = a->type != 0xff && type != 0xff && a->type != type;
    if (a->term != term || a->chain != chain || a->digest != digest || type_differs)
        sv__fail(s, "state-machine-safety",
                 "at index %" PRIu64 " n%" PRIu64 " applied term %" PRIu64 " (chain %016" PRIx64
                 ", state %016" PRIx64 ") but n%" PRIu64 " applied term %" PRIu64
                 " (chain %016" PRIx64 ", state %016" PRIx64 ")",
                 index, a->node, a->term, a->chain, a->digest, n->id, term, chain, digest);
}

void sv__check_free(struct sim_check *c)
{
    for (size_t i = 0; i < c->log_cap; i++)
        free(c->log[i].v);
    free(c->log);
    free(c->app);
    free(c->term_leader);
    free(c->ckpt);
    memset(c, 0, sizeof(*c));
}
