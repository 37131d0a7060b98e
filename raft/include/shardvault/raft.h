/* ShardVault Raft: a pure Raft state machine (no I/O, no clock, no sockets).
 *
 * The caller drives one `struct sv_raft` per group with four inputs:
 *   sv_raft_step()    a message received from a peer,
 *   sv_raft_tick()    one unit of logical time,
 *   sv_raft_propose() / sv_raft_propose_conf()   new entries (leader only),
 *   sv_raft_read_index()   a linearizable read barrier,
 * and collects the output as a *ready* batch (sv_raft_ready), which it handles
 * in this order and then acknowledges with sv_raft_advance():
 *
 *   1. persist: if rd.hs_changed, the hard state (term, vote, commit);
 *      if rd.n_entries > 0, the entries, which first TRUNCATE the stored log
 *      from rd.entries[0].index on; if rd.snapshot, the received snapshot,
 *      which replaces the stored log and state machine entirely.
 *      All of it must be durable (synced) before step 2.
 *   2. send rd.msgs. Persist-before-send is the contract that makes votes and
 *      acknowledgements safe. One exception (Raft thesis §10.2.1): messages for
 *      which sv_raft_msg_may_send_early() is true (a leader's appends,
 *      heartbeats, snapshot chunks and TimeoutNow) may be sent before or while
 *      step 1 runs; the leader counts itself in the commit quorum only for
 *      entries acknowledged as persisted by sv_raft_advance().
 *   3. apply rd.committed[] in order to the state machine (after installing
 *      rd.snapshot, if any), and serve rd.reads once the applied index reaches
 *      each read's index.
 *   4. sv_raft_advance(r, &rd).
 *
 * Between sv_raft_ready() and sv_raft_advance() no other function may be
 * called on the same group; every pointer in the ready batch stays valid
 * until sv_raft_advance() returns and is owned by the raft group.
 *
 * Safety rules implemented here (Raft paper = Ongaro & Ousterhout 2014,
 * thesis = Ongaro 2014):
 *   - election with randomized timeouts (§5.2), pre-vote and check-quorum
 *     (thesis §9.6), leader stickiness so a removed or partitioned node cannot
 *     disrupt a healthy leader;
 *   - log replication with pipelining and batching, per-follower flow control
 *     (probe / replicate / snapshot, bounded in-flight), fast back-tracking on
 *     conflict by term hints;
 *   - commit by counting only entries of the current term (§5.4.2, Figure 8);
 *   - snapshots sent in chunks (§7);
 *   - membership change one server at a time (thesis §4.1): a configuration
 *     takes effect as soon as it is appended, at most one is uncommitted, and a
 *     leader proposes one only after committing an entry of its own term;
 *     learners catch up without voting and are then promoted; a leader that
 *     removes itself steps down once the removal is committed (thesis §4.2.2);
 *   - leadership transfer by TimeoutNow (thesis §3.10);
 *   - linearizable reads by ReadIndex, or lease reads as an option
 *     (thesis §6.4).
 */
#ifndef SHARDVAULT_RAFT_H
#define SHARDVAULT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits. */
enum {
    SV_RAFT_SERVERS_MAX = 16,             /* voters + learners in one configuration */
    SV_RAFT_INFLIGHT_MAX = 256,           /* append messages in flight per follower */
    SV_RAFT_MSG_ENTRIES_MAX = 4096,       /* entries in one append message */
    SV_RAFT_ENTRY_BYTES_MAX = 64u << 20,  /* payload of one entry */
    SV_RAFT_SNAPSHOT_BYTES_MAX = 1u << 30 /* one snapshot blob */
};

typedef uint64_t sv_raft_id; /* server id; 0 means "none" */

/* Domain errors returned by the API (negative): -1000 .. -951. node/src/errors.h
 * keeps every other module's codes out of this range. */
enum sv_raft_err {
    SV_RAFT_OK = 0,
    SV_RAFT_E_NOT_LEADER = -1000, /* only the leader may do this; see status.leader */
    SV_RAFT_E_TRANSFERRING,       /* a leadership transfer is in progress */
    SV_RAFT_E_CONF_PENDING,       /* a configuration change is not committed yet */
    SV_RAFT_E_NOT_READY,          /* leader has not committed an entry of its term yet */
    SV_RAFT_E_BAD_CONF,           /* change is invalid for the current configuration */
    SV_RAFT_E_TOO_BIG,            /* payload over its *_MAX */
    SV_RAFT_E_BAD_ARG,            /* invalid argument (index out of range, ...) */
    SV_RAFT_E_NOMEM,              /* allocation failed; the group is unchanged */
    SV_RAFT_E_CORRUPT,            /* restored state is inconsistent */
    SV_RAFT_E_LAST_
};

/* Static string for an error code (any int; unknown codes give "unknown"). */
const char *sv_raft_strerror(int err);

enum sv_raft_role {
    SV_RAFT_FOLLOWER,
    SV_RAFT_PRE_CANDIDATE,
    SV_RAFT_CANDIDATE,
    SV_RAFT_LEADER,
};
const char *sv_raft_role_name(enum sv_raft_role role);

enum sv_raft_entry_type {
    SV_RAFT_ENTRY_NORMAL = 0, /* application data */
    SV_RAFT_ENTRY_CONF = 1,   /* a full configuration, encoded by sv_raft_conf_encode */
    SV_RAFT_ENTRY_NOOP = 2,   /* appended by a new leader; nothing to apply */
};

struct sv_raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum sv_raft_entry_type */
    uint32_t len;
    uint8_t *data; /* len bytes; owned by whoever owns the entry */
};

enum sv_raft_server_role { SV_RAFT_VOTER = 1, SV_RAFT_LEARNER = 2 };

struct sv_raft_server {
    sv_raft_id id;
    uint8_t role; /* enum sv_raft_server_role */
};

struct sv_raft_conf {
    uint32_t n;
    struct sv_raft_server servers[SV_RAFT_SERVERS_MAX];
};

/* Encoded size of a configuration (fixed layout, little endian). */
size_t sv_raft_conf_encoded_len(const struct sv_raft_conf *conf);
/* Encode conf into buf (at least sv_raft_conf_encoded_len bytes). */
void sv_raft_conf_encode(const struct sv_raft_conf *conf, uint8_t *buf);
/* Decode; returns 0 or SV_RAFT_E_CORRUPT for a malformed buffer. */
int sv_raft_conf_decode(const uint8_t *buf, size_t len, struct sv_raft_conf *out);
/* Role of id in conf, or 0 when absent. */
int sv_raft_conf_role(const struct sv_raft_conf *conf, sv_raft_id id);

struct sv_raft_hard_state {
    uint64_t term;
    sv_raft_id vote;
    uint64_t commit;
};

struct sv_raft_snapshot_meta {
    uint64_t index;           /* last entry covered */
    uint64_t term;            /* its term */
    struct sv_raft_conf conf; /* configuration as of index */
};

struct sv_raft_snapshot {
    struct sv_raft_snapshot_meta meta;
    uint64_t len;
    uint8_t *data; /* application state machine image, owned by the raft group */
};

enum sv_raft_msg_type {
    SV_RAFT_MSG_APPEND = 1, /* AppendEntries (§5.3) */
    SV_RAFT_MSG_APPEND_RESP,
    SV_RAFT_MSG_HEARTBEAT, /* empty AppendEntries carrying commit and read/lease context */
    SV_RAFT_MSG_HEARTBEAT_RESP,
    SV_RAFT_MSG_PRE_VOTE, /* thesis §9.6 */
    SV_RAFT_MSG_PRE_VOTE_RESP,
    SV_RAFT_MSG_VOTE, /* RequestVote (§5.2) */
    SV_RAFT_MSG_VOTE_RESP,
    SV_RAFT_MSG_SNAPSHOT, /* one chunk of InstallSnapshot (§7) */
    SV_RAFT_MSG_SNAPSHOT_RESP,
    SV_RAFT_MSG_TIMEOUT_NOW, /* leadership transfer (thesis §3.10) */
    SV_RAFT_MSG_READ_INDEX,  /* follower asks the leader for a read index */
    SV_RAFT_MSG_READ_INDEX_RESP,
    SV_RAFT_MSG_TYPE_MAX_
};
const char *sv_raft_msg_type_name(int type);

/* One message. Which fields are meaningful depends on type; unused ones are 0.
 * A message in a ready batch points into the group's memory (entries,
 * snapshot data): copy it (sv_raft_msg_copy) to keep it past advance. */
struct sv_raft_msg {
    uint8_t type; /* enum sv_raft_msg_type */
    sv_raft_id from;
    sv_raft_id to;
    uint64_t term;

    /* APPEND: prev_index/prev_term, entries, commit.
     * APPEND_RESP: index = last index matched (success) or the rejected
     *   prev_index (reject), hint_index/hint_term = follower's conflict hint.
     * VOTE / PRE_VOTE: index/log_term = candidate's last entry.
     * SNAPSHOT: snap meta, offset, data/len, done.
     * SNAPSHOT_RESP: snap.index identifies the snapshot, offset = bytes held.
     * HEARTBEAT(_RESP): commit, ctx = read sequence, lease_tick = leader tick.
     * READ_INDEX: ctx = caller's context. READ_INDEX_RESP: ctx, index. */
    uint64_t index;
    uint64_t log_term;
    uint64_t commit;
    bool reject;
    bool transfer; /* VOTE from a leadership transfer: voters skip stickiness */
    bool done;     /* SNAPSHOT: last chunk */
    uint64_t hint_index;
    uint64_t hint_term;
    uint64_t ctx;
    uint64_t lease_tick;

    uint32_t n_entries;
    struct sv_raft_entry *entries;

    struct sv_raft_snapshot_meta snap;
    uint64_t offset;
    uint32_t len;
    uint8_t *data;
};

/* Deep-copy src into *dst (entries and their data, snapshot chunk data).
 * Returns 0 or SV_RAFT_E_NOMEM. Free with sv_raft_msg_free. */
int sv_raft_msg_copy(struct sv_raft_msg *dst, const struct sv_raft_msg *src);
/* Free what sv_raft_msg_copy allocated inside msg (not msg itself). */
void sv_raft_msg_free(struct sv_raft_msg *msg);
/* True when msg may be sent before the ready batch that produced it is
 * persisted (thesis §10.2.1; see the file comment). */
bool sv_raft_msg_may_send_early(const struct sv_raft_msg *msg);

/* A confirmed linearizable read: serve it once applied index >= index. */
struct sv_raft_read_state {
    uint64_t ctx;   /* as given to sv_raft_read_index */
    uint64_t index; /* read point */
};

struct sv_raft_ready {
    bool hs_changed;
    struct sv_raft_hard_state hs;

    const struct sv_raft_entry *entries; /* to persist; entries[0] truncates */
    size_t n_entries;

    const struct sv_raft_snapshot *snapshot; /* received snapshot, or NULL */

    const struct sv_raft_entry *committed; /* to apply, in order */
    size_t n_committed;

    struct sv_raft_msg *msgs; /* to send */
    size_t n_msgs;

    const struct sv_raft_read_state *reads;
    size_t n_reads;
};

struct sv_raft_options {
    sv_raft_id id;
    uint32_t election_ticks;  /* timeout is random in [election_ticks, 2*election_ticks) */
    uint32_t heartbeat_ticks; /* < election_ticks */
    uint32_t max_inflight;    /* append messages in flight per follower (<= SV_RAFT_INFLIGHT_MAX) */
    uint32_t max_msg_entries; /* entries per append (<= SV_RAFT_MSG_ENTRIES_MAX) */
    uint64_t max_msg_bytes;   /* payload bytes per append (at least one entry is sent) */
    uint32_t snapshot_chunk_bytes; /* InstallSnapshot chunk size */
    uint32_t max_apply_entries;    /* committed entries per ready (0 = no limit) */
    bool pre_vote;
    bool check_quorum;
    bool lease_read; /* ReadIndex answered from the leader lease (needs check_quorum) */
    uint64_t seed;   /* randomness of election timeouts: an input, never a clock */
    uint32_t bugs;   /* deliberate defects (SV_RAFT_BUG_*); honoured only in test builds */
};

/* Deliberate defects, compiled in only when SV_RAFT_BUGS is defined (the
 * svraft_bugs test library); the production library ignores opts.bugs. */
enum {
    SV_RAFT_BUG_VOTE_WITHOUT_LOG_CHECK = 1u << 0,
    SV_RAFT_BUG_COMMIT_OLD_TERM_BY_COUNT = 1u << 1,
    SV_RAFT_BUG_FORGET_VOTE_ON_RESTART = 1u << 2,
    SV_RAFT_BUG_APPLY_BEFORE_COMMIT = 1u << 3,
};
/* True when this build honours opts.bugs. */
bool sv_raft_bugs_compiled(void);

/* Fill opts with defaults for id: election 10, heartbeat 1, inflight 64,
 * 1024 entries / 1 MiB per append, 256 KiB snapshot chunks, pre-vote and
 * check-quorum on, lease reads off. */
void sv_raft_options_default(struct sv_raft_options *opts, sv_raft_id id);

/* What the caller restores from its storage on (re)start. Everything is
 * borrowed for the duration of sv_raft_create (the group copies it). */
struct sv_raft_restore {
    struct sv_raft_hard_state hs;
    const struct sv_raft_snapshot *snapshot; /* NULL when none */
    const struct sv_raft_entry *entries;     /* following the snapshot, contiguous */
    size_t n_entries;
    uint64_t applied; /* index the state machine already reflects; 0 = the snapshot's */
};

struct sv_raft;

/* Create a raft group. `restore` may be NULL for a brand-new server with no
 * state; such a server waits to be contacted by a leader (it is added to a
 * running group as a learner). Returns 0 and sets *out, or a negative error.
 * The caller frees the group with sv_raft_destroy. */
int sv_raft_create(const struct sv_raft_options *opts, const struct sv_raft_restore *restore,
                   struct sv_raft **out);

/* Bootstrap a brand-new group (created with restore == NULL) with an initial
 * configuration: appends the configuration as entry 1 of term 1. Every
 * initial member must bootstrap with the same configuration. The first ready
 * batch persists it. Returns 0, SV_RAFT_E_BAD_ARG if the group has state,
 * SV_RAFT_E_BAD_CONF if conf has no voter or a duplicate id. */
int sv_raft_bootstrap(struct sv_raft *r, const struct sv_raft_conf *conf);

void sv_raft_destroy(struct sv_raft *r);

/* Advance logical time by one tick. */
void sv_raft_tick(struct sv_raft *r);

/* Handle a message from a peer. Messages from an older term, for another
 * server, or malformed are ignored (returns SV_RAFT_E_BAD_ARG for the latter).
 * msg is borrowed; data is copied as needed. */
int sv_raft_step(struct sv_raft *r, const struct sv_raft_msg *msg);

/* Leader only: append an entry with a copy of data. On success *index_out
 * (if not NULL) is its index. SV_RAFT_E_NOT_LEADER, _TRANSFERRING, _TOO_BIG. */
int sv_raft_propose(struct sv_raft *r, const void *data, size_t len, uint64_t *index_out);

enum sv_raft_conf_change {
    SV_RAFT_ADD_LEARNER = 1, /* add id as a non-voting learner */
    SV_RAFT_PROMOTE,         /* make learner id a voter */
    SV_RAFT_DEMOTE,          /* make voter id a learner */
    SV_RAFT_REMOVE,          /* remove id (voter or learner; may be the leader) */
};

/* Leader only: propose one configuration change. Errors: NOT_LEADER,
 * TRANSFERRING, CONF_PENDING (the previous change is not committed),
 * NOT_READY (no entry of this term committed yet), BAD_CONF (id already
 * present / absent / not a learner / would remove the last voter). */
int sv_raft_propose_conf(struct sv_raft *r, enum sv_raft_conf_change change, sv_raft_id id,
                         uint64_t *index_out);

/* Ask for a linearizable read point for ctx. On the leader the answer comes
 * in a later ready once a quorum confirmed leadership (or at once from the
 * lease); on a follower the request is forwarded to the known leader.
 * Returns 0, or SV_RAFT_E_NOT_LEADER when no leader is known. A request can
 * be lost with its messages: callers retry with a timeout. */
int sv_raft_read_index(struct sv_raft *r, uint64_t ctx);

/* Leader only: transfer leadership to voter `to`; it is caught up, then sent
 * TimeoutNow. Proposals are refused until it completes or an election
 * timeout passes. */
int sv_raft_transfer_leader(struct sv_raft *r, sv_raft_id to);

/* Start an election now (as after an election timeout). Test and operator aid. */
void sv_raft_campaign(struct sv_raft *r);

/* The application has persisted a snapshot of its state machine covering
 * entries up to `index` (<= applied index): the group keeps a copy of data
 * (to send to slow followers) and drops log entries before
 * index - trailing (keeping `trailing` entries for followers that lag a
 * little). Returns 0, SV_RAFT_E_BAD_ARG, SV_RAFT_E_TOO_BIG or NOMEM. */
int sv_raft_snapshot(struct sv_raft *r, uint64_t index, const void *data, uint64_t len,
                     uint64_t trailing);

bool sv_raft_has_ready(const struct sv_raft *r);
/* Fill *rd with everything pending. Pointers stay valid until sv_raft_advance. */
void sv_raft_ready(struct sv_raft *r, struct sv_raft_ready *rd);
/* Acknowledge rd: persisted, sent, applied. */
void sv_raft_advance(struct sv_raft *r, const struct sv_raft_ready *rd);

struct sv_raft_status {
    sv_raft_id id;
    enum sv_raft_role role;
    uint64_t term;
    sv_raft_id vote;
    sv_raft_id leader; /* 0 when unknown */
    uint64_t commit;
    uint64_t applied;
    uint64_t first_index; /* first entry in the in-memory log */
    uint64_t last_index;
    uint64_t snapshot_index;
    struct sv_raft_conf conf; /* latest configuration in the log */
    uint64_t conf_index;      /* its index (0 for bootstrap-less groups) */
    sv_raft_id transferee;    /* leadership transfer target, 0 when none */
};
void sv_raft_status(const struct sv_raft *r, struct sv_raft_status *st);

/* Term of entry `index`, 0 if it is neither in the log nor the snapshot point. */
uint64_t sv_raft_term_at(const struct sv_raft *r, uint64_t index);
/* Configuration in force at `index` (the last configuration entry at or
 * before it, or the snapshot's) into *out; index must not be below the
 * snapshot point. 0, or SV_RAFT_E_CORRUPT when a stored entry does not
 * decode. */
int sv_raft_conf_at(const struct sv_raft *r, uint64_t index, struct sv_raft_conf *out);
/* Leader only: the highest index known to be replicated on member id (its
 * match index) into *match. 0, SV_RAFT_E_NOT_LEADER, or SV_RAFT_E_BAD_ARG
 * when id is not in the configuration. */
int sv_raft_match(const struct sv_raft *r, sv_raft_id id, uint64_t *match);
/* Entry `index` of the in-memory log, or NULL when compacted or absent. */
const struct sv_raft_entry *sv_raft_entry_at(const struct sv_raft *r, uint64_t index);

#ifdef __cplusplus
}
#endif
#endif
