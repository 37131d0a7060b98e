/* Private state of a raft group, shared by the files of raft/src. */
#ifndef SV_RAFT_INTERNAL_H
#define SV_RAFT_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

#include "shardvault/raft.h"

/* Programmer errors crash, in release builds too. */
#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#ifdef SV_RAFT_BUGS
#define BUG(r, name) (((r)->opts.bugs & SV_RAFT_BUG_##name) != 0)
#else
#define BUG(r, name) 0
#endif

/* The in-memory log: entries offset+1 .. offset+n; `offset` is the last
 * compacted index and `offset_term` its term. Entry data is owned here. */
struct sv__log {
    struct sv_raft_entry *ents;
    size_t n;
    size_t cap;
    uint64_t offset;
    uint64_t offset_term;
};

void sv__log_init(struct sv__log *l, uint64_t offset, uint64_t offset_term);
void sv__log_close(struct sv__log *l);
uint64_t sv__log_last(const struct sv__log *l);
/* Term at index, 0 when outside [offset, last]. */
uint64_t sv__log_term(const struct sv__log *l, uint64_t index);
/* Entry at index, NULL when outside (offset, last]. */
struct sv_raft_entry *sv__log_at(const struct sv__log *l, uint64_t index);
/* Append a copy of e (e->index must be last+1). 0 or SV_RAFT_E_NOMEM. */
int sv__log_append(struct sv__log *l, const struct sv_raft_entry *e);
/* Drop entries from index on (index > offset). */
void sv__log_truncate(struct sv__log *l, uint64_t index);
/* Drop entries up to and including index (offset < index <= last). */
void sv__log_compact(struct sv__log *l, uint64_t index);
/* Drop everything and restart the log after (index, term). */
void sv__log_reset(struct sv__log *l, uint64_t index, uint64_t term);
/* Largest i <= index with term_at(i) <= term (at least offset): the
 * fast back-tracking probe point. */
uint64_t sv__log_find_conflict_by_term(const struct sv__log *l, uint64_t index, uint64_t term);

enum pr_state { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

/* Leader's view of one member (thesis §3.5 nextIndex/matchIndex plus flow control). */
struct sv__progress {
    sv_raft_id id;
    uint64_t match;
    uint64_t next;
    enum pr_state state;
    bool probe_sent;    /* PROBE: one append in flight until answered or heartbeat */
    bool recent_active; /* heard from since the last check-quorum round */
    /* REPLICATE: last index of each un-acked append, oldest first (ring). */
    uint64_t inflight[SV_RAFT_INFLIGHT_MAX];
    uint32_t in_start;
    uint32_t in_count;
    /* SNAPSHOT: transfer of snapshot snap_index, chunked. */
    uint64_t snap_index;
    uint64_t snap_next;  /* next offset to send */
    uint64_t snap_acked; /* bytes the follower confirmed */
    bool snap_done_sent;
    /* Offset the last gap report rewound to: a burst of reordered chunks
     * yields many reports of the same gap, and only the first resends. */
    uint64_t snap_rewound;
    uint32_t snap_stall;  /* heartbeat rounds without progress */
    uint64_t read_acked;  /* highest read sequence echoed */
    uint64_t lease_acked; /* highest leader tick echoed */
};

struct pending_read {
    uint64_t ctx;
    sv_raft_id from; /* 0: local request */
    uint64_t seq;
};

struct sv_raft {
    struct sv_raft_options opts;
    enum sv_raft_role role;
    uint64_t term;
    sv_raft_id vote;
    sv_raft_id leader;
    uint64_t commit;
    uint64_t applied;
    uint64_t persisted; /* last index the caller made durable */
    struct sv_raft_hard_state prev_hs;

    struct sv__log log;
    struct sv_raft_snapshot snap; /* latest snapshot (own or received); data may be NULL */
    bool snap_install;            /* snap must be handed to the caller to install */
    /* Snapshot being received in chunks. */
    struct sv_raft_snapshot_meta rx_meta;
    sv_raft_id rx_from;
    uint64_t rx_term;
    uint8_t *rx_data;
    uint64_t rx_len;
    size_t rx_cap;

    struct sv_raft_conf conf; /* latest in the log (thesis §4.1: used once appended) */
    uint64_t conf_index;

    struct sv__progress *prs; /* one per member of conf while leader */
    uint32_t n_prs;

    uint64_t now; /* ticks since creation */
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    bool sticky_restart; /* freshly started: refuse votes for one election timeout */
    uint64_t rng;

    /* Election: ids that answered, and how. */
    sv_raft_id voted_ids[SV_RAFT_SERVERS_MAX];
    bool voted_granted[SV_RAFT_SERVERS_MAX];
    uint32_t n_voted;

    sv_raft_id transferee;
    uint32_t transfer_elapsed;
    bool lease_broken; /* a TimeoutNow went out this term: no lease reads */

    bool append_pending;    /* new entries to broadcast at the next ready */
    bool heartbeat_pending; /* a read round to broadcast at the next ready */
    bool commit_pending;    /* commit advanced: tell followers at the next ready */
    uint64_t read_seq;
    struct pending_read *reads_pending;
    size_t n_reads_pending;
    size_t cap_reads_pending;

    struct sv_raft_msg *out;
    size_t n_out;
    size_t cap_out;
    struct sv_raft_read_state *reads_ready;
    size_t n_reads_ready;
    size_t cap_reads_ready;
};

/* Grow *arr (element size elem) to hold at least want items. */
int sv__grow(void **arr, size_t *cap, size_t want, size_t elem);

#endif
