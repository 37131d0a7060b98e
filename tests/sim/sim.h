/* Internal interfaces shared by the files of the deterministic Raft simulator. */
#ifndef SV_SIM_H
#define SV_SIM_H

#include <shardvault/raft.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lin.h"

enum {
    SIM_SLOTS_MAX = 12,    /* simulated servers existing at once */
    SIM_NODES_MAX = 7,     /* initial cluster size (--nodes) */
    SIM_CLIENTS_MAX = 5,   /* client ids 1..SIM_CLIENTS_MAX; 0 is the liveness probe */
    SIM_KEYS_MAX = 8,      /* keys of the key-value state machine */
    SIM_NET_MAX = 16384,   /* messages in flight; more are dropped */
    SIM_READS_MAX = 64,    /* read states waiting for apply, per node */
    SIM_WHY_MAX = 2048,    /* failure explanation */
    SIM_OPS_MAX = 1 << 16, /* client operations in one run's history */
    SIM_PAD_MAX = 2048,    /* filler bytes in a snapshot blob (makes chunking real) */
    SIM_STEPS_MAX = 100000000,
    SIM_LINE_MAX = 320,   /* one trace line */
    SIM_RING_LINES = 400, /* trace lines shown before a failure */
};
_Static_assert((int)SIM_SLOTS_MAX <= (int)SV_RAFT_SERVERS_MAX,
               "a configuration must hold every slot");
_Static_assert(SIM_NODES_MAX + 2 <= SIM_SLOTS_MAX, "room for added learners");
_Static_assert((long)SIM_OPS_MAX <= (long)LIN_OPS_MAX * SIM_KEYS_MAX, "history fits the checker");

#define SIM_PPM 1000000u /* probabilities are in parts per million */

/* ---- PRNG: xoshiro256** seeded by splitmix64; the only randomness. ---- */

struct sim_rng {
    uint64_t s[4];
};

static inline uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void rng_seed(struct sim_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rng_next(struct sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, n); 0 when n == 0. */
static inline uint64_t rng_below(struct sim_rng *r, uint64_t n)
{
    return n == 0 ? 0 : rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(struct sim_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

static inline bool rng_ppm(struct sim_rng *r, uint32_t ppm)
{
    return rng_below(r, SIM_PPM) < ppm;
}

static inline uint64_t mix64(uint64_t x)
{
    return splitmix64(&x);
}

/* ---- Per-seed parameters. ---- */

struct sim_params {
    uint32_t election_ticks, heartbeat_ticks, max_inflight, max_msg_entries;
    uint64_t max_msg_bytes;
    uint32_t snapshot_chunk_bytes, max_apply_entries;
    bool pre_vote, check_quorum, lease_read;

    uint32_t n_clients, n_keys;
    uint32_t client_timeout; /* ticks an attempt waits for its answer */
    uint32_t op_timeout;     /* ticks before a client gives an op up */
    uint32_t p_log_read;     /* gets through the log instead of ReadIndex */
    uint32_t p_abandon;      /* a client gives up a write that may be in a log */

    uint32_t p_tick, p_client, p_nemesis; /* event mix */
    uint32_t p_crash_mid_ready;           /* per ready: crash after early sends, before persist */
    uint32_t p_crash_after_persist;
    uint32_t snap_every; /* applied entries between a node's snapshots */
    uint32_t snap_trailing_max;
    uint32_t snap_pad; /* filler bytes in each snapshot blob */
    uint32_t down_max; /* ticks a crashed node stays down */
    uint32_t min_voters, max_voters;
    uint32_t p_silence;         /* a leader goes mute right after it proposes or wins */
    uint32_t p_crash_on_commit; /* a leader crashes once its commit advance is durable */
};

/* ---- Simulated disk: only what was persisted. ---- */

struct sim_disk {
    struct sv_raft_hard_state hs;
    bool has_snap;
    struct sv_raft_snapshot snap; /* data owned */
    uint64_t snap_chain;          /* chain hash at snap.meta.index */
    struct sv_raft_entry *ents;   /* ents[i].index == base + 1 + i; data owned */
    uint64_t *chain;              /* chain hash of each entry */
    size_t n, cap;
};

/* ---- Key-value state machine of one node. ---- */

struct sim_kv {
    uint64_t applied, applied_term;
    uint64_t chain; /* chain hash of the applied prefix */
    uint64_t vals[SIM_KEYS_MAX];
    uint64_t sess_seq[SIM_CLIENTS_MAX + 1]; /* client id -> last applied seq */
    uint64_t sess_result[SIM_CLIENTS_MAX + 1];
    struct sv_raft_conf conf; /* configuration as of `applied` */
};

struct sim_read {
    uint64_t ctx, index;
};

struct sim_node {
    bool used; /* slot holds a server (up or crashed) */
    bool up;
    sv_raft_id id;
    struct sv_raft *r;
    struct sim_disk disk;
    struct sim_kv kv;
    struct sim_read reads[SIM_READS_MAX];
    size_t n_reads;
    uint64_t down_until; /* tick of the automatic restart */
    enum sv_raft_role role;
    uint64_t term;       /* as of the last check */
    uint64_t led_term;   /* last term checked as leader */
    uint64_t led_commit; /* commit index when it became leader of led_term */
    bool probe_applied;
    bool was_member; /* seen in a committed configuration */
    uint32_t incarnation;
};

/* ---- Network. ---- */

struct sim_msg {
    struct sv_raft_msg m; /* deep copy */
    uint64_t at;          /* deliverable from this tick on */
    uint64_t seq;
};

struct sim_net {
    struct sim_msg *q;
    size_t n, cap;
    bool cut[SIM_SLOTS_MAX][SIM_SLOTS_MAX]; /* cut[a][b]: a's messages to b are lost */
    uint32_t p_drop, p_dup, p_delay, delay_max, p_fifo;
    uint64_t next_seq;
};

/* ---- Clients and history. ---- */

enum sim_op_kind { SIM_OP_PUT = 1, SIM_OP_GET, SIM_OP_CAS, SIM_OP_PROBE };
enum sim_cl_state { CL_IDLE, CL_SEND, CL_WAIT };
enum sim_op_status { OP_PENDING, OP_OK, OP_INFO, OP_FAIL };

struct sim_client {
    uint32_t id;
    int state; /* enum sim_cl_state */
    uint64_t seq;
    size_t op; /* history index of the current op */
    uint8_t kind;
    bool via_log;
    uint32_t key;
    uint64_t a, b;
    sv_raft_id target;
    uint64_t deadline, op_deadline;
    uint64_t ctx;
    bool proposed; /* some attempt reached a leader's log: the op may take effect */
    uint32_t attempts;
    uint64_t counter;
    uint64_t seen[SIM_KEYS_MAX];
};

struct sim_hop {
    struct lin_op op;
    uint8_t status; /* enum sim_op_status */
    uint32_t client;
    uint64_t seq;
    uint64_t tick_call, tick_ret;
};

/* ---- Global invariant state. ---- */

struct sim_logv {
    uint64_t term, chain;
    sv_raft_id node;
};

struct sim_logslot {
    uint32_t n, cap;
    struct sim_logv *v;
};

struct sim_appslot {
    bool set;
    uint8_t type;
    uint64_t term, chain, digest;
    sv_raft_id node;
};

/* After `index` was first applied, no entry up to it was committed in a term
 * above `bound` (the applying server's term is at least the commit's). */
struct sim_ckpt {
    uint64_t bound, index;
};

struct sim_check {
    sv_raft_id *term_leader;
    size_t term_cap;
    struct sim_logslot *log;
    size_t log_cap;
    struct sim_appslot *app;
    size_t app_cap;
    uint64_t max_applied;
    struct sim_ckpt *ckpt;
    size_t n_ckpt, ckpt_cap;
};

struct sim_stats {
    uint64_t events, ticks, elections, crashes, crashes_mid_ready, restarts;
    uint64_t partitions, heals, snapshots_taken, snapshots_installed;
    uint64_t conf_proposed, conf_committed, transfers, campaigns;
    uint64_t ops_ok, ops_info, ops_fail;
    uint64_t msgs_sent, msgs_delivered, msgs_dropped, msgs_duplicated;
    uint64_t lin_unknown, lin_explored, liveness_ticks;
};

struct sim {
    /* Run configuration. */
    uint64_t seed;
    uint32_t n_nodes;
    uint64_t steps;
    uint32_t bugs;
    bool trace;
    bool rule_checks; /* vote once per term; Figure-8 commit rule */
    struct sim_params p;
    struct sim_rng rng;

    uint64_t now;   /* tick */
    uint64_t step;  /* event number */
    uint64_t clock; /* history clock: strictly increasing per call/return */
    bool setup;     /* no faults while bootstrapping */
    bool calm;      /* liveness phase: no new faults or ops */

    struct sim_node nodes[SIM_SLOTS_MAX];
    sv_raft_id next_id;
    struct sim_net net;
    struct sim_client clients[SIM_CLIENTS_MAX];
    struct sim_hop *hist;
    size_t n_hist, hist_cap;
    uint64_t next_ctx;
    uint64_t probe_id;

    struct sim_check chk;
    struct sim_stats st;

    bool failed;
    char what[64];
    char why[SIM_WHY_MAX];

    uint8_t *sendmask;
    size_t sendmask_cap;

    /* Trace lines: printed at once, or kept in a ring to print on failure. */
    char (*ring)[SIM_LINE_MAX];
    size_t ring_n, ring_next;
};

#if defined(__GNUC__)
#define SIM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SIM_PRINTF(a, b)
#endif

/* sim.c */
void sv__fail(struct sim *s, const char *what, const char *fmt, ...) SIM_PRINTF(3, 4);
void sv__trace(struct sim *s, const char *fmt, ...) SIM_PRINTF(2, 3);
struct sim_node *sv__node_by_id(struct sim *s, sv_raft_id id);
int sv__slot_of(const struct sim *s, sv_raft_id id);
void sv__maybe_silence(struct sim *s, struct sim_node *n);

/* net.c */
void sv__net_send(struct sim *s, struct sim_node *from, const struct sv_raft_msg *m);
size_t sv__net_due(const struct sim *s, uint64_t below);
void sv__net_deliver_one(struct sim *s, uint64_t below);
void sv__net_partition(struct sim *s);
void sv__net_heal(struct sim *s);
void sv__net_weather(struct sim *s);
void sv__net_clear_slot(struct sim *s, int slot);
void sv__net_free(struct sim *s);
void sv__msg_summary(const struct sv_raft_msg *m, char *buf, size_t len);

/* node.c */
int sv__node_create(struct sim *s, struct sim_node *n, sv_raft_id id,
                    const struct sv_raft_conf *bootstrap);
void sv__node_crash(struct sim *s, struct sim_node *n, const char *how);
void sv__node_restart(struct sim *s, struct sim_node *n);
void sv__node_retire(struct sim *s, struct sim_node *n);
void sv__node_process(struct sim *s, struct sim_node *n);
uint64_t sv__disk_last(const struct sim_disk *d);

/* kv.c */
uint64_t sv__chain(uint64_t prev, uint64_t term, uint8_t type, const uint8_t *data, uint32_t len);
int sv__kv_blob(struct sim *s, const struct sim_kv *kv, uint8_t **out, uint64_t *len);
int sv__kv_unblob(const uint8_t *blob, uint64_t len, struct sim_kv *kv);
void sv__kv_reset(struct sim_kv *kv);
void sv__kv_install(struct sim *s, struct sim_node *n, const struct sv_raft_snapshot *snap);
void sv__kv_apply(struct sim *s, struct sim_node *n, const struct sv_raft_entry *e);
void sv__kv_serve_reads(struct sim *s, struct sim_node *n);
size_t sv__encode_op(uint8_t *buf, uint8_t kind, uint32_t client, uint64_t seq, uint32_t key,
                     uint64_t a, uint64_t b);
void sv__clients_init(struct sim *s);
void sv__client_event(struct sim *s);
void sv__clients_tick(struct sim *s);
void sv__clients_finish(struct sim *s);
void sv__history_check(struct sim *s);

/* check.c */
/* Election safety and leader completeness for new leaders, the commit rule for
 * others; returns a server that became leader since the last call, or NULL. */
struct sim_node *sv__check_roles(struct sim *s);
void sv__check_log_entry(struct sim *s, struct sim_node *n, uint64_t index, uint64_t term,
                         uint64_t chain);
void sv__check_applied(struct sim *s, struct sim_node *n, uint64_t index, uint64_t term,
                       uint8_t type, uint64_t chain, uint64_t digest);
void sv__check_free(struct sim_check *c);

#endif
