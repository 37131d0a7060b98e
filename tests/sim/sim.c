/* raft-sim: runs Raft clusters in one process from a seed under faults and checks safety,
 * linearizability and liveness (deterministic: a seed replays exactly). */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Failure and trace. ---- */

void sv__fail(struct sim *s, const char *what, const char *fmt, ...)
{
    if (s->failed)
        return; /* the first violation is the one worth reading */
    s->failed = true;
    snprintf(s->what, sizeof(s->what), "%s", what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    sv__trace(s, "VIOLATION %s: %s", s->what, s->why);
}

void sv__trace(struct sim *s, const char *fmt, ...)
{
    if (!s->trace)
        return;
    char line[SIM_LINE_MAX];
    int off = snprintf(line, sizeof(line), "[tick %5" PRIu64 " ev %6" PRIu64 "] ", s->now, s->step);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
    va_end(ap);
    if (s->ring == NULL) {
        puts(line);
        return;
    }
    memcpy(s->ring[s->ring_next], line, sizeof(line));
    s->ring_next = (s->ring_next + 1) % SIM_RING_LINES;
    if (s->ring_n < SIM_RING_LINES)
        s->ring_n++;
}

static void print_ring(const struct sim *s)
{
    size_t start = (s->ring_next + SIM_RING_LINES - s->ring_n) % SIM_RING_LINES;
    for (size_t i = 0; i < s->ring_n; i++)
        printf("  %s\n", s->ring[(start + i) % SIM_RING_LINES]);
}

struct sim_node *sv__node_by_id(struct sim *s, sv_raft_id id)
{
    int slot = sv__slot_of(s, id);
    return slot < 0 ? NULL : &s->nodes[slot];
}

int sv__slot_of(const struct sim *s, sv_raft_id id)
{
    for (int i = 0; i < SIM_SLOTS_MAX; i++)
        if (s->nodes[i].used && s->nodes[i].id == id)
            return i;
    return -1;
}

/* A leader that just proposed or just won sometimes goes mute at once (what
 * it sent is lost too): its newest entries stay on its own disk while the
 * others move on, the setting of Figure 8. */
void sv__maybe_silence(struct sim *s, struct sim_node *n)
{
    if (s->setup || s->calm || !rng_ppm(&s->rng, s->p.p_silence))
        return;
    int a = (int)(n - s->nodes);
    for (int b = 0; b < SIM_SLOTS_MAX; b++)
        if (b != a)
            s->net.cut[a][b] = true;
    s->st.partitions++;
    sv__trace(s, "nemesis: n%" PRIu64 " cannot send any more", n->id);
}

/* ---- Parameters drawn from the seed. ---- */

static void draw_params(struct sim *s)
{
    struct sim_params *p = &s->p;
    struct sim_rng *r = &s->rng;
    p->election_ticks = (uint32_t)rng_range(r, 5, 20);
    p->heartbeat_ticks = (uint32_t)rng_range(r, 1, p->election_ticks / 4);
    p->max_inflight = (uint32_t)rng_range(r, 1, 16);
    /* Small appends split a new leader's catch-up from its no-op (Figure 8). */
    p->max_msg_entries = (uint32_t)rng_range(r, 1, rng_ppm(r, 500000) ? 3 : 32);
    p->max_msg_bytes = rng_range(r, 1, 2048);
    p->snapshot_chunk_bytes = (uint32_t)rng_range(r, 16, 1024);
    p->max_apply_entries = (uint32_t)rng_range(r, 0, 8);
    p->pre_vote = rng_ppm(r, 800000);
    p->check_quorum = rng_ppm(r, 800000);
    p->lease_read = p->check_quorum && rng_ppm(r, 500000);

    p->n_clients = (uint32_t)rng_range(r, 1, SIM_CLIENTS_MAX);
    p->n_keys = (uint32_t)rng_range(r, 1, 3);
    p->client_timeout = (uint32_t)rng_range(r, 2, 6) * p->election_ticks;
    p->op_timeout = p->client_timeout * (uint32_t)rng_range(r, 3, 10);
    p->p_log_read = (uint32_t)rng_range(r, 0, 500000);
    p->p_abandon = (uint32_t)rng_range(r, 0, 200000);

    p->p_tick = (uint32_t)rng_range(r, 100000, 250000);
    p->p_client = (uint32_t)rng_range(r, 50000, 200000);
    /* A third of the seeds are chaotic: faults every few dozen events and
     * crashes inside ready handling, where leadership changes pile up. */
    bool chaos = rng_ppm(r, 333333);
    p->p_nemesis = (uint32_t)(chaos ? rng_range(r, 10000, 40000) : rng_range(r, 1000, 8000));
    p->p_crash_mid_ready = (uint32_t)rng_range(r, 0, chaos ? 3000 : 400);
    p->p_crash_after_persist = (uint32_t)rng_range(r, 0, chaos ? 3000 : 400);
    p->p_silence = chaos ? (uint32_t)rng_range(r, 10000, 100000) : 0;
    p->p_crash_on_commit = chaos ? (uint32_t)rng_range(r, 10000, 100000) : p->p_crash_after_persist;
    p->snap_every = (uint32_t)rng_range(r, 5, 60);
    p->snap_trailing_max = (uint32_t)rng_range(r, 0, 10);
    p->snap_pad = (uint32_t)rng_range(r, 0, SIM_PAD_MAX);
    p->down_max = p->election_ticks * (uint32_t)rng_range(r, 1, 10);
    p->min_voters = s->n_nodes > 2 ? s->n_nodes - 1 : 1;
    p->max_voters = s->n_nodes + 1;
}

static void trace_params(struct sim *s)
{
    const struct sim_params *p = &s->p;
    sv__trace(s,
              "seed %" PRIu64 ": %u nodes, election %u, heartbeat %u, inflight %u, %u entries / "
              "%" PRIu64 " bytes per append, snapshot chunk %u, apply batch %u, pre-vote %d, "
              "check-quorum %d, lease reads %d",
              s->seed, s->n_nodes, p->election_ticks, p->heartbeat_ticks, p->max_inflight,
              p->max_msg_entries, p->max_msg_bytes, p->snapshot_chunk_bytes, p->max_apply_entries,
              p->pre_vote, p->check_quorum, p->lease_read);
    sv__trace(s,
              "  %u clients on %u keys, snapshot every %u applied (pad %u), nemesis %u ppm, "
              "crash mid-ready %u ppm, after persist %u ppm",
              p->n_clients, p->n_keys, p->snap_every, p->snap_pad, p->p_nemesis,
              p->p_crash_mid_ready, p->p_crash_after_persist);
}

/* ---- Cluster helpers. ---- */

static void process_all(struct sim *s)
{
    for (int i = 0; i < SIM_SLOTS_MAX && !s->failed; i++)
        if (s->nodes[i].used && s->nodes[i].up)
            sv__node_process(s, &s->nodes[i]);
}

/* Up leader with the highest term, or NULL. */
static struct sim_node *find_leader(struct sim *s)
{
    struct sim_node *best = NULL;
    for (int i = 0; i < SIM_SLOTS_MAX; i++) {
        struct sim_node *n = &s->nodes[i];
        if (n->used && n->up && n->role == SV_RAFT_LEADER && (best == NULL || n->term > best->term))
            best = n;
    }
    return best;
}

/* Configuration applied by the most advanced state machine: committed. */
static const struct sv_raft_conf *committed_conf(struct sim *s)
{
    const struct sim_node *best = NULL;
    for (int i = 0; i < SIM_SLOTS_MAX; i++) {
        const struct sim_node *n = &s->nodes[i];
        if (n->used && (best == NULL || n->kv.applied > best->kv.applied))
            best = n;
    }
    return best != NULL && best->kv.conf.n > 0 ? &best->kv.conf : NULL;
}

/* Retire servers whose removal committed (ids are never reused). */
static void retire_removed(struct sim *s)
{
    const struct sv_raft_conf *conf = committed_conf(s);
    if (conf == NULL)
        return;
    struct sv_raft_conf c = *conf;
    for (int i = 0; i < SIM_SLOTS_MAX; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->used)
            continue;
        if (sv_raft_conf_role(&c, n->id) != 0)
            n->was_member = true;
        else if (n->was_member)
            sv__node_retire(s, n);
    }
}

static size_t pick_server(struct sim *s, const struct sv_raft_conf *c, int role, sv_raft_id not,
                          sv_raft_id *out)
{
    sv_raft_id ids[SV_RAFT_SERVERS_MAX];
    size_t k = 0;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->servers[i].role == role && c->servers[i].id != not )
            ids[k++] = c->servers[i].id;
    *out = k ? ids[rng_below(&s->rng, k)] : 0;
    return k;
}

static size_t count_role(const struct sv_raft_conf *c, int role)
{
    size_t k = 0;
    for (uint32_t i = 0; i < c->n; i++)
        k += c->servers[i].role == role;
    return k;
}

static void conf_change(struct sim *s, struct sim_node *leader, enum sv_raft_conf_change change,
                        sv_raft_id id)
{
    static const char *const names[] = {"?", "add learner", "promote", "demote", "remove"};
    uint64_t index = 0;
    int rc = sv_raft_propose_conf(leader->r, change, id, &index);
    sv__trace(s, "nemesis: n%" PRIu64 " proposes %s n%" PRIu64 ": %s (index %" PRIu64 ")",
              leader->id, names[change], id, sv_raft_strerror(rc), index);
    if (rc == 0)
        s->st.conf_proposed++;
}

static void nemesis_membership(struct sim *s, uint64_t what)
{
    struct sim_node *leader = find_leader(s);
    if (leader == NULL)
        return;
    struct sv_raft_status st;
    sv_raft_status(leader->r, &st);
    size_t voters = count_role(&st.conf, SV_RAFT_VOTER);
    sv_raft_id id;
    switch (what) {
    case 0: { /* add a brand-new server as a learner */
        int slot = -1;
        for (int i = 0; i < SIM_SLOTS_MAX && slot < 0; i++)
            if (!s->nodes[i].used)
                slot = i;
        if (slot < 0 || st.conf.n >= SV_RAFT_SERVERS_MAX)
            return;
        id = s->next_id++;
        if (sv__node_create(s, &s->nodes[slot], id, NULL) != 0)
            return;
        conf_change(s, leader, SV_RAFT_ADD_LEARNER, id);
        break;
    }
    case 1: /* promote a learner that exists */
        if (voters < s->p.max_voters && pick_server(s, &st.conf, SV_RAFT_LEARNER, 0, &id) &&
            sv__node_by_id(s, id) != NULL)
            conf_change(s, leader, SV_RAFT_PROMOTE, id);
        break;
    case 2: /* remove a voter, sometimes the leader itself */
        if (voters <= s->p.min_voters)
            return;
        id = rng_ppm(&s->rng, 300000) ? leader->id : 0;
        if (id == 0)
            pick_server(s, &st.conf, SV_RAFT_VOTER, 0, &id);
        conf_change(s, leader, SV_RAFT_REMOVE, id);
        break;
    case 3: /* demote a voter */
        if (voters > s->p.min_voters && pick_server(s, &st.conf, SV_RAFT_VOTER, 0, &id))
            conf_change(s, leader, SV_RAFT_DEMOTE, id);
        break;
    default: /* remove a learner */
        if (pick_server(s, &st.conf, SV_RAFT_LEARNER, 0, &id))
            conf_change(s, leader, SV_RAFT_REMOVE, id);
        break;
    }
}

static struct sim_node *random_up(struct sim *s)
{
    struct sim_node *up[SIM_SLOTS_MAX];
    size_t k = 0;
    for (int i = 0; i < SIM_SLOTS_MAX; i++)
        if (s->nodes[i].used && s->nodes[i].up)
            up[k++] = &s->nodes[i];
    return k ? up[rng_below(&s->rng, k)] : NULL;
}

static void nemesis(struct sim *s)
{
    uint64_t r = rng_below(&s->rng, 100);
    struct sim_node *n;
    if (r < 18) {
        sv__net_partition(s);
    } else if (r < 36) {
        sv__net_heal(s);
    } else if (r < 44) {
        sv__net_weather(s);
    } else if (r < 54) {
        if ((n = random_up(s)) != NULL)
            sv__node_crash(s, n, "(kill)");
    } else if (r < 62) {
        if ((n = find_leader(s)) != NULL)
            sv__node_crash(s, n, "(kill the leader)");
    } else if (r < 80) {
        nemesis_membership(s, rng_below(&s->rng, 5));
    } else if (r < 90) {
        struct sim_node *leader = find_leader(s);
        if (leader == NULL)
            return;
        struct sv_raft_status st;
        sv_raft_status(leader->r, &st);
        sv_raft_id to;
        if (pick_server(s, &st.conf, SV_RAFT_VOTER, leader->id, &to)) {
            int rc = sv_raft_transfer_leader(leader->r, to);
            sv__trace(s, "nemesis: n%" PRIu64 " transfers leadership to n%" PRIu64 ": %s",
                      leader->id, to, sv_raft_strerror(rc));
            s->st.transfers += rc == 0;
        }
    } else if (r < 94) {
        if ((n = random_up(s)) != NULL) {
            sv__trace(s, "nemesis: n%" PRIu64 " campaigns", n->id);
            sv_raft_campaign(n->r);
            s->st.campaigns++;
        }
    } else {
        for (int i = 0; i < SIM_SLOTS_MAX; i++)
            if (s->nodes[i].used && !s->nodes[i].up) {
                sv__node_restart(s, &s->nodes[i]);
                break;
            }
    }
}

static void after_event(struct sim *s)
{
    process_all(s);
    if (s->failed)
        return;
    struct sim_node *won = sv__check_roles(s);
    if (won != NULL && !s->failed)
        sv__maybe_silence(s, won); /* the checks only watch; faults are injected here */
    if (!s->failed)
        retire_removed(s);
}

/* Time passes: what the network owes for this tick arrives first (latency is
 * bounded: only deliberately delayed messages wait past the tick they were
 * sent in), then every up server ticks and crashed ones come back when due. */
static void tick(struct sim *s)
{
    uint64_t below = s->net.next_seq; /* not what these deliveries provoke */
    while (!s->failed && sv__net_due(s, below) > 0) {
        sv__net_deliver_one(s, below);
        after_event(s);
    }
    s->now++;
    s->st.ticks++;
    for (int i = 0; i < SIM_SLOTS_MAX && !s->failed; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->used)
            continue;
        if (!n->up && (s->calm || s->now >= n->down_until))
            sv__node_restart(s, n);
        if (n->up)
            sv_raft_tick(n->r);
    }
    sv__clients_tick(s);
}

/* One event of the schedule. */
static void event(struct sim *s)
{
    s->step++;
    s->st.events++;
    uint64_t r = rng_below(&s->rng, SIM_PPM);
    const struct sim_params *p = &s->p;
    if (!s->setup && !s->calm && r < p->p_nemesis)
        nemesis(s);
    else if (r < (uint64_t)p->p_nemesis + p->p_client)
        sv__client_event(s);
    else if (r < (uint64_t)p->p_nemesis + p->p_client + p->p_tick ||
             sv__net_due(s, UINT64_MAX) == 0)
        tick(s);
    else
        sv__net_deliver_one(s, UINT64_MAX);
    after_event(s);
}

/* ---- Liveness: once faults stop, a leader is elected and commits. ---- */

static void liveness(struct sim *s)
{
    s->calm = true;
    sv__net_heal(s);
    sv__trace(s, "calm: faults stop; a leader must commit within %u ticks",
              100 * s->p.election_ticks);
    uint64_t start = s->now, limit = s->now + 100ull * s->p.election_ticks;
    struct sim_node *proposer = NULL;
    uint64_t proposed_at = 0, proposer_term = 0;
    while (!s->failed && s->now < limit) {
        event(s);
        struct sim_node *leader = find_leader(s);
        if (leader == NULL || leader->term != proposer_term || proposer != leader ||
            s->now > proposed_at + 4ull * s->p.election_ticks) {
            proposer = NULL;
            if (leader != NULL) {
                uint8_t buf[64];
                s->probe_id++;
                for (int i = 0; i < SIM_SLOTS_MAX; i++)
                    s->nodes[i].probe_applied = false;
                size_t len = sv__encode_op(buf, SIM_OP_PROBE, 0, s->probe_id, 0, 0, 0);
                int rc = sv_raft_propose(leader->r, buf, len, NULL);
                sv__trace(s, "probe %" PRIu64 " proposed on n%" PRIu64 ": %s", s->probe_id,
                          leader->id, sv_raft_strerror(rc));
                if (rc == 0) {
                    proposer = leader;
                    proposer_term = leader->term;
                    proposed_at = s->now;
                }
            }
            continue;
        }
        if (proposer->up && proposer->probe_applied) {
            s->st.liveness_ticks = s->now - start;
            sv__trace(s, "probe %" PRIu64 " committed by n%" PRIu64 " after %" PRIu64 " calm ticks",
                      s->probe_id, proposer->id, s->st.liveness_ticks);
            return;
        }
    }
    if (!s->failed)
        sv__fail(s, "liveness",
                 "no leader committed an entry within %" PRIu64 " ticks after the faults healed",
                 limit - start);
}

/* ---- One seed. ---- */

struct run_opts {
    uint32_t nodes;
    uint64_t steps;
    uint32_t bugs;
    bool rule_checks;
};

static void sim_free(struct sim *s)
{
    for (int i = 0; i < SIM_SLOTS_MAX; i++)
        if (s->nodes[i].used)
            sv__node_retire(s, &s->nodes[i]);
    sv__net_free(s);
    sv__check_free(&s->chk);
    free(s->hist);
    free(s->sendmask);
    free(s->ring);
}

static void print_stats(const struct sim *s)
{
    const struct sim_stats *t = &s->st;
    printf("seed %" PRIu64 ": %" PRIu64 " events, %" PRIu64 " ticks, %" PRIu64 " leaders, %" PRIu64
           " crashes (%" PRIu64 " mid-ready), %" PRIu64 " partitions, %" PRIu64
           " snapshots taken / %" PRIu64 " installed, %" PRIu64 " conf changes, %" PRIu64
           " transfers; ops %" PRIu64 " ok / %" PRIu64 " info / %" PRIu64 " fail; msgs %" PRIu64
           " sent / %" PRIu64 " dropped; liveness in %" PRIu64 " ticks\n",
           s->seed, t->events, t->ticks, t->elections, t->crashes, t->crashes_mid_ready,
           t->partitions, t->snapshots_taken, t->snapshots_installed, t->conf_proposed,
           t->transfers, t->ops_ok, t->ops_info, t->ops_fail, t->msgs_sent, t->msgs_dropped,
           t->liveness_ticks);
}

/* Run one seed; trace: 0 none, 1 print as it runs, 2 keep the tail in a ring.
 * Returns true when every check passed; fills what/why otherwise. */
static bool run_seed(uint64_t seed, const struct run_opts *o, int trace, bool stats, char *what,
                     size_t what_len, char *why, size_t why_len)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(what, what_len, "sim");
        snprintf(why, why_len, "out of memory");
        return false;
    }
    s->seed = seed;
    s->n_nodes = o->nodes;
    s->steps = o->steps;
    s->bugs = o->bugs;
    s->rule_checks = o->rule_checks;
    s->trace = trace != 0;
    if (trace == 2 && (s->ring = calloc(SIM_RING_LINES, sizeof(*s->ring))) == NULL)
        s->trace = false;
    rng_seed(&s->rng, seed);
    draw_params(s);
    trace_params(s);

    struct sv_raft_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.n = o->nodes;
    for (uint32_t i = 0; i < o->nodes; i++) {
        conf.servers[i].id = i + 1;
        conf.servers[i].role = SV_RAFT_VOTER;
    }
    s->next_id = o->nodes + 1;
    for (uint32_t i = 0; i < o->nodes && !s->failed; i++)
        sv__node_create(s, &s->nodes[i], i + 1, &conf);
    sv__clients_init(s);

    /* Bootstrap without faults until a first leader exists. */
    s->setup = true;
    uint64_t setup_limit = 200ull * s->p.election_ticks;
    while (!s->failed && s->st.elections == 0 && s->now < setup_limit)
        event(s);
    if (!s->failed && s->st.elections == 0)
        sv__fail(s, "liveness", "no leader elected in %" PRIu64 " fault-free ticks", setup_limit);
    s->setup = false;
    sv__net_weather(s);

    while (!s->failed && s->step < s->steps)
        event(s);
    if (!s->failed)
        liveness(s);
    sv__clients_finish(s);
    if (!s->failed)
        sv__history_check(s);

    bool ok = !s->failed;
    if (!ok) {
        snprintf(what, what_len, "%s", s->what);
        snprintf(why, why_len, "%s", s->why);
        if (s->ring != NULL) {
            printf("  last %zu trace lines of seed %" PRIu64 ":\n", s->ring_n, seed);
            print_ring(s);
        }
    }
    if (stats)
        print_stats(s);
    sim_free(s);
    free(s);
    return ok;
}

/* ---- Command line. ---- */

static const struct {
    const char *name;
    uint32_t bit;
} bug_names[] = {
    {"vote-without-log-check", SV_RAFT_BUG_VOTE_WITHOUT_LOG_CHECK},
    {"commit-old-term-by-count", SV_RAFT_BUG_COMMIT_OLD_TERM_BY_COUNT},
    {"forget-vote-on-restart", SV_RAFT_BUG_FORGET_VOTE_ON_RESTART},
    {"apply-before-commit", SV_RAFT_BUG_APPLY_BEFORE_COMMIT},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: raft-sim [options]\n"
            "Runs a Raft cluster in one process per seed under message loss, delay,\n"
            "duplication and reordering, partitions, crashes that lose unsynced writes,\n"
            "membership changes, leadership transfers and snapshots; checks election\n"
            "safety, log matching, leader completeness and state-machine safety after\n"
            "every event, linearizability of a key-value history and liveness at the end.\n"
            "options:\n"
            "  --seed S            first seed (default 1)\n"
            "  --count N           run seeds S..S+N-1 (default 1)\n"
            "  --nodes 3|5         initial cluster size (default 3; 1..%d accepted)\n"
            "  --steps K           events per seed before the calm phase (default 20000)\n"
            "  --bug NAME          switch on a deliberate defect: vote-without-log-check,\n"
            "                      commit-old-term-by-count, forget-vote-on-restart,\n"
            "                      apply-before-commit\n"
            "  --expect-violation  stop at the first failing seed; exit 0 if one failed,\n"
            "                      1 if none did (proves the checks can fail)\n"
            "  --no-rule-checks    check only the safety properties, not the rules that\n"
            "                      guard them (a server votes once per term; a leader\n"
            "                      commits by counting only entries of its term)\n"
            "  --trace             print every event of the run\n"
            "  --stats             print a summary line per seed\n"
            "  --quiet             on failure print only the verdict and the replay command\n"
            "  -h, --help          show this help\n"
            "The last line is 'N passed, M failed'; exit status 1 if any seed failed.\n",
            SIM_NODES_MAX);
}

static int parse_u64(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = arg != NULL ? strtoull(arg, &end, 10) : 0;
    if (arg == NULL || errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || v < min ||
        v > max) {
        fprintf(stderr, "raft-sim: %s needs a number in [%" PRIu64 ", %" PRIu64 "], got '%s'\n",
                opt, min, max, arg != NULL ? arg : "");
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, count = 1, nodes = 3, steps = 20000;
    const char *bug = NULL;
    bool expect = false, trace = false, quiet = false, stats = false, rule_checks = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--seed")) {
            rc = parse_u64(a, v, 0, UINT64_MAX / 2, &seed), i++;
        } else if (!strcmp(a, "--count")) {
            rc = parse_u64(a, v, 1, 100000000, &count), i++;
        } else if (!strcmp(a, "--nodes")) {
            rc = parse_u64(a, v, 1, SIM_NODES_MAX, &nodes), i++;
        } else if (!strcmp(a, "--steps")) {
            rc = parse_u64(a, v, 0, SIM_STEPS_MAX, &steps), i++;
        } else if (!strcmp(a, "--bug")) {
            if (v == NULL) {
                fprintf(stderr, "raft-sim: --bug needs a NAME\n");
                return 2;
            }
            bug = v, i++;
        } else if (!strcmp(a, "--expect-violation")) {
            expect = true;
        } else if (!strcmp(a, "--no-rule-checks")) {
            rule_checks = false;
        } else if (!strcmp(a, "--trace")) {
            trace = true;
        } else if (!strcmp(a, "--stats")) {
            stats = true;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else {
            fprintf(stderr, "raft-sim: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (rc != 0)
            return 2;
    }
    struct run_opts o = {.nodes = (uint32_t)nodes, .steps = steps, .rule_checks = rule_checks};
    if (bug != NULL) {
        for (size_t k = 0; k < sizeof(bug_names) / sizeof(bug_names[0]); k++)
            if (!strcmp(bug, bug_names[k].name))
                o.bugs = bug_names[k].bit;
        if (o.bugs == 0) {
            fprintf(stderr, "raft-sim: unknown --bug '%s' (see --help)\n", bug);
            return 2;
        }
        if (!sv_raft_bugs_compiled()) {
            fprintf(stderr, "raft-sim: this build has no deliberate defects\n");
            return 2;
        }
    }

    uint64_t passed = 0, failed = 0;
    for (uint64_t k = 0; k < count; k++) {
        uint64_t sd = seed + k;
        char what[64], why[SIM_WHY_MAX];
        int mode = trace ? 1 : 0;
        if (run_seed(sd, &o, mode, stats, what, sizeof(what), why, sizeof(why))) {
            passed++;
            continue;
        }
        failed++;
        printf("seed %" PRIu64 " FAILED: %s: %s\n", sd, what, why);
        if (!trace && !quiet) /* replay with the trace kept, to show how it came about */
            run_seed(sd, &o, 2, false, what, sizeof(what), why, sizeof(why));
        printf("replay: %s --seed %" PRIu64 " --nodes %" PRIu64 " --steps %" PRIu64
               "%s%s%s --trace\n",
               argv[0], sd, nodes, steps, bug ? " --bug " : "", bug ? bug : "",
               rule_checks ? "" : " --no-rule-checks");
        if (expect) {
            printf("violation found after %" PRIu64 " seed(s), as expected\n", k + 1);
            break;
        }
    }
    printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    if (expect)
        return failed > 0 ? 0 : 1;
    return failed > 0 ? 1 : 0;
}
