/* Deterministic in-process Raft cluster for unit tests: disks, a message queue, links, crashes. */
#ifndef SV_TEST_HARNESS_H
#define SV_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardvault/raft.h"

#define CHECK_STRERROR(rc) sv_raft_strerror(rc)
#include "check.h"

/* Node ids are 1 .. H_NODES_MAX - 1. */
enum { H_NODES_MAX = 8 };

/* A mask of node ids (bit id set); 0 means "every node". */
#define H_BIT(id) (1u << (id))
#define H_ALL 0u

/* Deliberate raft defects to ask for in every created group (raft-unit --bugs);
 * honoured only when linked against svraft_bugs. */
extern uint32_t h_bugs;

/* What a delivery filter decides for one queued message. */
enum h_verdict { H_DELIVER, H_DROP, H_HOLD };

struct h_cluster;
/* Called for each message about to be delivered by h_deliver_next/h_deliver_all. */
typedef enum h_verdict (*h_filter_fn)(struct h_cluster *h, const struct sv_raft_msg *m, void *arg);
/* Called for each message a node sends, after its ready batch was persisted. */
typedef void (*h_send_fn)(struct h_cluster *h, const struct sv_raft_msg *m, void *arg);

/* The simulated disk of one node: what survives a crash. */
struct h_disk {
    struct sv_raft_hard_state hs;
    bool has_snap;
    struct sv_raft_snapshot snap; /* data owned by the disk */
    struct sv_raft_entry *ents;   /* following the snapshot, contiguous, data owned */
    size_t n_ents;
    size_t cap_ents;
};

/* The state machine of one node: a hash chain over applied normal entries. */
struct h_sm {
    uint64_t applied;
    uint64_t n_normal;
    uint64_t hash;
    struct sv_raft_conf conf; /* latest applied configuration */
};

/* One served or announced read. */
struct h_read {
    uint64_t ctx;
    uint64_t index;
    bool served; /* applied index reached index */
};

struct h_node {
    bool exists;
    bool up;
    struct sv_raft *r;
    struct sv_raft_options opts;
    struct h_disk disk;
    struct h_sm sm;
    /* hash of each applied normal entry's data, by index (0 = not normal or not applied) */
    uint64_t *applied_hash;
    size_t cap_applied;
    struct h_read *reads;
    size_t n_reads;
    size_t cap_reads;
    uint64_t snap_installs;      /* ready.snapshot handled */
    uint64_t snap_install_index; /* meta.index of the last one */
    uint64_t snap_install_hash;  /* hash of its data */
    uint64_t readies;            /* ready batches handled */
    uint64_t vote_resp_checked;  /* granted VOTE_RESP sent with the vote checked on disk */
};

struct h_qmsg {
    struct sv_raft_msg m; /* deep copy */
};

/* Record of committed (applied) entries over all nodes, for state-machine safety. */
struct h_global_entry {
    bool set;
    uint64_t term;
    uint8_t type;
    uint64_t hash;
};

struct h_cluster {
    struct h_node nodes[H_NODES_MAX];
    bool cut[H_NODES_MAX][H_NODES_MAX]; /* cut[from][to]: messages are dropped */

    struct h_qmsg *q; /* FIFO */
    size_t qn;
    size_t qcap;

    h_filter_fn filter;
    void *filter_arg;
    h_send_fn on_send;
    void *send_arg;

    uint64_t sent[H_NODES_MAX][H_NODES_MAX][SV_RAFT_MSG_TYPE_MAX_];
    uint64_t delivered[H_NODES_MAX][H_NODES_MAX][SV_RAFT_MSG_TYPE_MAX_];
    uint64_t append_rejects[H_NODES_MAX][H_NODES_MAX]; /* APPEND_RESP reject, from -> to */
    uint64_t dropped;

    /* Election safety: leader of each term seen so far. */
    struct {
        uint64_t term;
        sv_raft_id id;
    } * leaders;
    size_t n_leaders;
    size_t cap_leaders;
    /* One vote per node and term, over crashes. */
    struct {
        uint64_t term;
        sv_raft_id voter;
        sv_raft_id candidate;
    } * votes;
    size_t n_votes;
    size_t cap_votes;

    struct h_global_entry *applied; /* by index */
    size_t cap_applied;
};

/* FNV-1a 64. */
uint64_t h_hash(const void *data, size_t len);

/* n voters with ids 1..n, created and bootstrapped with the same configuration.
 * tmpl (NULL: sv_raft_options_default) gives the options; id and seed are set
 * per node. The cluster is freed when the test ends. */
struct h_cluster *h_new(uint32_t n, const struct sv_raft_options *tmpl);
/* Like h_new with one options struct per node (opts[i] for id i + 1). */
struct h_cluster *h_new_each(uint32_t n, const struct sv_raft_options *opts);
/* A brand-new empty server (restore NULL, no bootstrap), e.g. a future learner. */
void h_add_node(struct h_cluster *h, sv_raft_id id, const struct sv_raft_options *tmpl);

struct sv_raft *h_r(struct h_cluster *h, sv_raft_id id);
struct sv_raft_status h_st(struct h_cluster *h, sv_raft_id id);
bool h_in(uint32_t mask, sv_raft_id id);

/* Handle every pending ready batch of node id (persist, send, apply, advance). */
void h_process(struct h_cluster *h, sv_raft_id id);
void h_process_all(struct h_cluster *h);

/* Deliver (or drop, for cut links, down nodes and the filter) the first
 * deliverable queued message, then process readies. Returns false when
 * nothing deliverable is queued. */
bool h_deliver_next(struct h_cluster *h);
/* h_deliver_next until nothing deliverable is left. */
void h_deliver_all(struct h_cluster *h);
/* Deliver the first queued message matching (0 = any field), ignoring links
 * and the filter. Returns false when none matches. */
bool h_deliver_match(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type);
size_t h_queued(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type);
void h_drop_queued(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type);
/* Total sent (0 = any field). */
uint64_t h_sent(struct h_cluster *h, sv_raft_id from, sv_raft_id to, int type);

void h_cut(struct h_cluster *h, sv_raft_id a, sv_raft_id b);
void h_heal(struct h_cluster *h, sv_raft_id a, sv_raft_id b);
void h_isolate(struct h_cluster *h, sv_raft_id id);
/* Cut every link between a node in mask and a node outside it. */
void h_partition(struct h_cluster *h, uint32_t mask);
void h_heal_all(struct h_cluster *h);

void h_tick(struct h_cluster *h, sv_raft_id id);
/* Tick every up node once, then deliver everything. */
void h_tick_all(struct h_cluster *h);
void h_ticks(struct h_cluster *h, uint32_t n);

/* The established leader among mask: up, LEADER, term >= every up node of
 * mask, with an entry of its term committed. 0 when none. */
sv_raft_id h_leader(struct h_cluster *h, uint32_t mask);
/* h_tick_all until h_leader(mask) != 0; fails the test after max_ticks. */
sv_raft_id h_wait_leader(struct h_cluster *h, uint32_t mask, uint32_t max_ticks);
sv_raft_id h_tick_until_leader(struct h_cluster *h);

/* Propose on id (must succeed), returning the index. */
uint64_t h_propose(struct h_cluster *h, sv_raft_id id, const void *data, size_t len);
/* Propose on id and deliver everything; the entry must be committed on id. */
uint64_t h_propose_and_commit(struct h_cluster *h, sv_raft_id id, const void *data, size_t len);
/* Propose a conf change on id (must succeed) and deliver everything; it must commit. */
uint64_t h_conf_and_commit(struct h_cluster *h, sv_raft_id id, enum sv_raft_conf_change change,
                           sv_raft_id target);

/* Destroy the group; only its disk survives. Queued messages to it will drop. */
void h_crash(struct h_cluster *h, sv_raft_id id);
/* Recreate the group from its disk (sv_raft_restore with applied = 0). */
void h_restart(struct h_cluster *h, sv_raft_id id);

/* The application snapshots node id at its applied index: image of pad_bytes
 * or more, saved to disk, then sv_raft_snapshot(.., trailing). Returns the index. */
uint64_t h_snapshot(struct h_cluster *h, sv_raft_id id, uint64_t trailing, size_t pad_bytes);

/* Every up node of mask has the same last index, commit and terms (where
 * its log holds them) and the same state machine once fully applied. */
void h_check_logs_equal(struct h_cluster *h, uint32_t mask);
/* Whether node id applied a normal entry with this data. */
bool h_applied_data(struct h_cluster *h, sv_raft_id id, const void *data, size_t len);
/* Read announced on id for ctx (served or not); false when none. */
bool h_read_seen(struct h_cluster *h, sv_raft_id id, uint64_t ctx, uint64_t *index_out);

/* The two ids of {1, 2, 3} other than `not`, in increasing order. */
void h_others(sv_raft_id not, sv_raft_id *a, sv_raft_id *b);

#endif
