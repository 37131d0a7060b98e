/* svd's node, inside: the structures its files share and what each file offers
 * the others (node/README.md draws who calls whom; calls go one way).
 *
 *   node.c      wiring: open, run, close, signals, the tick, the event table;
 *               the clock
 *   dispatch.c  frames in: a table from frame type to (required role, handler),
 *               the request context, waiters, replies, deadlines
 *   objects.c   writes become commands; reads and lists in the pool
 *   repair.c    fetches a healthy copy of a chunk, reports through a callback
 *   copy.c      a new replica copies every chunk its records claim, eagerly
 *   meta.c      the meta group: the recorded cluster map, how nodes learn,
 *               store and follow it; MAP and MAP_GET replies
 *   move.c      moving one replica of a shard (the meta leader runs it)
 *   dr.c        disaster recovery: a standby pulls every shard's entries from
 *               the primary site; the primary answers; the site's role
 *   upkeep.c    snapshots, upload expiry, segment compaction, disk space
 *   pipeline.c  the persist/apply group commit (jobs and their halves)
 *   host.c      the registry of Raft groups, their inputs and proposals
 *   peers.c     links to other nodes by node id, Raft messages batched
 *   stats.c     metrics: the node's families, the hooks the files above call,
 *               the /metrics and /health endpoint
 *
 * The request side (dispatch, objects, repair, meta) calls down into host,
 * pipeline and peers; those call up only through the event table
 * (struct sv__events) that node.c fills. Only the loop thread touches these
 * structures, except what the pool jobs are documented to read. */
#ifndef SV_NODE_INT_H
#define SV_NODE_INT_H

#include "config.h"
#include "crypto.h"
#include "errors.h"
#include "log.h"
#include "logstore.h"
#include "map.h"
#include "proto.h"
#include "raftwire.h"
#include "segstore.h"
#include "sm.h"
#include "transport.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum {
    TICK_MS = 100,
    ELECTION_TICKS = 10,        /* 1 to 2 s */
    REQUEST_TIMEOUT_MS = 10000, /* a request waiting on Raft longer gets UNAVAILABLE */
    JOBS_MAX = 4,               /* persist jobs in flight per node (see pipeline.c) */
    PEER_RETRY_MS = 300,        /* between dials of an unreachable peer */
    UPLOAD_SCAN_MS = 5000,      /* leaders look for expired uploads this often */
    MAP_CHECK_MS = 1000,        /* until the meta group's map is recorded and checked */
    HEARTBEAT_MS = 1000,        /* every node to the meta leader */
    DR_BEAT_MS = 250,           /* ... a standby site's node (its closed times: health.c) */
    SCHED_MS = 1000,            /* the meta leader plans this often */
    SEG_COMPACT_MS = 30000,     /* segments with mostly deleted chunks are compacted this often */
    EXPIRED_BATCH = 64,         /* uploads aborted per scan */
    DISK_RESERVE_BYTES = 64u << 20, /* writes are refused below this much free space */
    DISK_WRITE_FACTOR = 4,          /* reserved per byte of a write not applied yet */
    DISK_CHECK_MS = 100,            /* free space is looked up at most this often */
    APPLY_RETRY_MS = 1000,          /* an apply that found the disk full is tried again */
    REPAIR_ATTEMPTS = 2,            /* re-reads of a chunk after repairing it */
    FETCH_TIMEOUT_MS = 3000,        /* a replica asked for a chunk answers within */
    RAFT_MSG_BYTES = 256u << 10,    /* payload per append (one 1 MiB chunk still goes alone) */
    PROPOSALS_QUEUED_MAX = 4096,    /* per group while its batch is on disk */
    SNAPSHOT_ENTRIES = 2048,        /* take a snapshot after this many applied entries */
    SNAPSHOT_BYTES = 32u << 20,     /* ... or this many bytes of log */
    SNAPSHOT_TRAILING = 64,         /* entries kept behind a snapshot for slow followers */
    RAFTWIRE_BATCH = 64,            /* Raft messages to one peer encoded together */
    COPY_CONCURRENT = 8,            /* chunk copy fetches in flight per node */
    COPY_RATE_BYTES = 64u << 20,    /* default chunk copy rate, bytes per second */
    COPY_PAGE = 256,                /* chunks looked at per copy page */
    COPY_COUNT_PAGE = 1024,         /* chunks counted per hold of seg_mu */
    COPY_RETRY_MS = 5000,           /* a pass with failed fetches starts again after */
    /* Reads in libuv's pool at once (of its 4 threads): the others stay
     * free for the persist and apply jobs, whose syncs commit every write. */
    READS_IN_POOL = 2,
    READS_QUEUED_MAX = 1024, /* reads waiting for the pool; beyond, UNAVAILABLE */
    /* A client connection's requests waiting for their answer (reads and
     * writes); the next gets UNAVAILABLE until one is answered. */
    CONN_IN_FLIGHT_MAX = 512,
};

_Static_assert(COPY_CONCURRENT <= COPY_PAGE, "a page feeds every fetch slot");

/* ---- time and randomness: the one place the node's logic gets them ------- */

struct sv__clock {
    uint64_t (*wall_ms)(void *arg); /* milliseconds since the epoch (object times, expiry) */
    uint64_t (*seed)(void *arg);    /* a fresh seed (Raft's election timer) */
    void *arg;
};
extern const struct sv__clock sv__clock_system;

/* ---- the request context ------------------------------------------------- */

/* Who may send a frame type (dispatch.c's table). */
enum sv__role {
    SV_ROLE_CLIENT = 1, /* an application: object requests, MAP, STATUS */
    SV_ROLE_NODE,       /* another node (node certificate): Raft, chunk fetches */
    SV_ROLE_SITE,       /* a node of the peer site (its certificate): DR_PULL, DR_SEED */
    SV_ROLE_PEER,       /* a route's need only: a node of either site (CHUNK_FETCH) */
};

/* Who a request acts for, from dispatch to storage. Until tenants and tokens
 * exist, every client request is the built-in tenant 0. */
struct sv__ctx {
    uint64_t tenant;
    uint64_t principal;
    enum sv__role role;
};

/* ---- structures ---------------------------------------------------------- */

/* A request waiting on Raft (a proposal's apply, or a read point), or a
 * read running in the pool. Owns its frame's body and the message decoded
 * from it (decoded once, on the loop). */
struct waiter {
    struct waiter *next;
    struct sv_node *node;
    struct sv__ctx ctx;
    uint64_t conn, req_id;
    uint32_t type;
    uint64_t group;
    uint64_t index, term; /* proposal */
    uint64_t read_ctx;    /* read index request, 0 = not asked yet */
    uint64_t read_index;
    uint64_t deadline_ms;
    int repairs;
    uint8_t *body; /* reads: the body m points into (NULL for writes) */
    size_t body_len;
    struct sv_msg m;   /* reads: decoded body (freed with the waiter) */
    size_t unapplied;  /* a write's entry bytes, counted in node->unapplied until freed */
    uint64_t start_ns; /* uv_hrtime() when made (stats.c: request latency) */
    uint64_t wall_ms;  /* DR_PULL: the wall clock before its read index was asked */
    bool counted;      /* in its client connection's requests in flight (dispatch.c) */
};

struct inmsg {
    struct inmsg *next;
    struct sv_raft_msg m;
};

struct prop {
    struct prop *next;
    uint8_t *data;
    size_t len;
    void *tag; /* handed back through events.proposed; NULL for the node's own */
};

enum { SV_DR_FLIGHT = 4 }; /* SHIP batches a standby leader has proposed at once */

/* A group's disaster-recovery link (dr.c). On a standby, its leader's pull;
 * on a primary, what its standby last asked. */
struct sv__ship {
    struct sv_sm_ship st;          /* the cursor, closed time and primary commit applied here */
    bool loaded;                   /* st was read from the state machine */
    uint64_t idle_closed_ms;       /* a closed time answered with nothing new (memory only) */
    uint64_t pull_id;              /* the pull in flight (its request id), 0: none */
    uint64_t pull_ms;              /* when it went */
    uint64_t asked;                /* the index it asked from */
    uint64_t flight[SV_DR_FLIGHT]; /* the last index of each batch proposed, not applied */
    uint32_t n_flight;
    uint64_t flight_ms;         /* when the oldest of them was proposed (or one was applied) */
    uint64_t next_ms;           /* no pull before */
    uint64_t target;            /* the peer site's node asked (its leader when known) */
    uint32_t rr;                /* the peer node tried next */
    uint64_t contact_ms;        /* the last answer from (standby) or pull by (primary) the peer */
    uint64_t standby_cursor;    /* primary: the cursor the standby last asked from */
    uint64_t mark_ms;           /* primary leader: its last DR_MARK */
    char reason[32], text[256]; /* why it is stalled ("" when not) */
    bool release_flight;        /* a standby leader: a release proposed, not applied yet */
    uint64_t release_sent_ms;   /* ... when (and a promoted site's leader: its cut's) */
    /* A standby leader re-seeding the shard from an image of the primary's
     * (SEED): pull_id is then the DR_SEED in flight. */
    bool seeding;        /* the primary's log no longer holds the cursor */
    uint64_t seed_index; /* the image's primary index, 0 until the first answer */
    uint64_t seed_off;   /* the image's next byte to ask for */
    uint32_t seed_piece; /* the number of the next piece */
    bool seed_flight;    /* a piece proposed and not applied yet */
    uint64_t seed_ms;    /* when it was proposed */
    /* A primary leader: the image a standby is re-seeded from. */
    uint8_t *img;
    size_t img_len;
    uint64_t img_index, img_closed_ms, img_ms; /* img_ms: last asked */
};

/* A Raft group hosted here. host.c owns the Raft side, pipeline.c the batch
 * in a job, dispatch.c/objects.c the request lists. */
struct group {
    uint64_t id;
    struct sv_raft *r;
    uint64_t replicas[SV_CFG_REPLICAS_MAX];
    uint32_t n_replicas;
    /* The batch in the persist job. */
    bool busy;
    struct sv_raft_ready rd;
    struct sv_sm_result *res;
    size_t res_cap;
    /* Inputs that arrived while busy. */
    struct inmsg *inbox, **inbox_tail;
    uint32_t ticks;
    struct prop *props, **props_tail;
    uint32_t n_props;
    uint64_t *read_ctxs; /* read index requests waiting for the batch */
    uint32_t n_read_ctxs, read_ctxs_cap;
    /* Requests (dispatch.c, objects.c). */
    struct waiter *waiting, **waiting_tail; /* proposals, in index order */
    struct waiter *reads;                   /* waiting for their read index */
    struct waiter *ready_reads;             /* read index known, waiting for apply */
    /* State seen by the loop (refreshed when not busy). */
    uint64_t applied;
    uint64_t snap_index;
    uint64_t log_bytes; /* applied payload bytes since the last snapshot */
    enum sv_raft_role role;
    uint64_t term, leader, commit;
    uint64_t up_term;
    uint32_t up_ctr;
    bool want_snapshot;
    /* A snapshot taken here, to be written to the log store by the next job. */
    bool snap_pending, snap_staged, rd_taken;
    /* The batch has something the log store must make durable; a batch that
     * only moves the commit index does not (it is recomputed after a
     * restart, and never below the applied index: see sv__group_open). */
    bool rd_persist;
    uint64_t hs_term, hs_vote; /* as last persisted */
    bool closing;              /* no longer held by the map: freed once out of every job */
    bool keep_data;            /* ... and its data kept (this node left the cluster) */
    int pool_refs;             /* upkeep jobs in the pool that hold this group */
    struct sv_raft_snapshot snap;
    /* Chunk copy (copy.c): the marker is set here (sm.h), so the records may
     * claim chunks this node lacks; copy is its pass, one malloc'd block
     * (freed with the group), NULL until the first pass. */
    bool copy_pending;
    struct sv__copy_group *copy;
    struct sv__ship ship; /* dr.c */
};

/* One half of a job. A job that is not split runs both halves in turn on
 * persist's work request. */
struct half {
    uv_work_t w;
    bool need, started, done; /* loop thread */
    int rc;                   /* the worker's result, read once done */
    char errmsg[256];
};

struct job {
    struct job *next; /* the node's jobs, oldest first */
    struct sv_node *node;
    struct group **gs;
    size_t n;
    bool split;   /* the halves run on their own threads, each when its stage is free */
    bool replied; /* the applied entries were answered */
    struct half persist, apply;
    /* Set by the worker once the log store commit is durable: the batches'
     * messages (votes, append acknowledgements) may go out while the job
     * goes on applying committed entries. */
    atomic_bool persisted;
    bool msgs_sent;  /* loop thread only */
    uint64_t *drops; /* groups whose stored data the job deletes (persist: the log; apply:
                        the state machine and chunks) */
    uint32_t n_drops;
};

/* What host.c and pipeline.c report upwards (filled by node.c). */
struct sv__events {
    /* g's leader stepped down: its waiting proposals and reads are in doubt. */
    void (*leader_lost)(struct sv_node *n, struct group *g);
    /* A proposal tagged tag was appended at (index, term), or failed with rc
     * (a raft.h error, -EAGAIN when too many are queued, -ECANCELED when the
     * node stops). */
    void (*proposed)(struct sv_node *n, struct group *g, void *tag, int rc, uint64_t index,
                     uint64_t term);
    /* Entry e of g was applied with res; fresh is false when it had been
     * applied before (a restart), so res is not its result. */
    void (*applied)(struct sv_node *n, struct group *g, const struct sv_raft_entry *e,
                    const struct sv_sm_result *res, bool fresh);
    /* Read index request ctx of g is confirmed at index, or failed (0). */
    void (*read_index)(struct sv_node *n, struct group *g, uint64_t ctx, uint64_t index);
    /* g is out of any job and has applied more, or may take a snapshot. */
    void (*idle)(struct sv_node *n, struct group *g);
};

struct peer {
    uint64_t id;
    uint64_t conn;
    uint64_t next_dial_ms;
};

struct sv__dr_peer { /* a node of the peer site */
    struct peer link;
    char addr[SV_CFG_ADDR_MAX];
};

struct fetch;
struct sv__stats;
struct sv__sched;
struct sv__repl;

/* ---- heartbeats, as the meta leader holds them (health.c) ---------------- */

struct sv__hreplica {       /* what one node said of one group it hosts */
    uint64_t applied, left; /* its applied index; chunks it still copies */
    uint64_t seen_ms;       /* when (0: never) */
    uint64_t progress_ms;   /* when applied or left last changed */
    bool complete;          /* it holds every chunk its records claim */
};

struct sv__hnode {
    uint64_t id;
    uint64_t last_ms; /* its last heartbeat (loop time), 0: none this term */
    uint64_t bytes, free;
    uint32_t n_leaders;
    struct sv__hreplica *groups; /* by group id, SV_CFG_SHARDS_MAX + 1 */
};

struct sv__hgroup { /* what the group's leader said */
    uint64_t leader, term, commit, bytes;
    uint64_t closed_ms; /* a standby's shard: its closed time (the highest heard) */
};

struct sv__health {
    uint64_t leader_term;  /* the meta group's term this table belongs to, 0: not leading */
    uint64_t since_ms;     /* when this node took over as the meta leader */
    uint64_t sent_ms;      /* this node's last heartbeat */
    uint64_t hint;         /* the meta leader as answers named it (0: unknown) */
    uint64_t sent_to;      /* where this node's last heartbeat went */
    uint64_t closed_epoch; /* the site epoch of the groups' closed times */
    uint32_t unanswered;   /* heartbeats sent to a peer since the last answer */
    uint32_t rr;
    uint32_t n_nodes;
    struct sv__hnode nodes[SV_CFG_NODES_MAX];
    struct sv__hgroup groups[SV_CFG_SHARDS_MAX + 1];
};
struct sv__copy_group;

struct sv_node {
    struct sv_cfg cfg;            /* this node's cluster.conf: identity, paths, keys */
    const struct sv_cfg_node *me; /* this node's line of it */
    struct sv_map *map;           /* the cluster map every route and dial is read from (epoch 1 from
                                     cluster.conf until the meta group's record is read) */
    struct sv__clock clock;
    struct sv__events ev;
    uv_loop_t loop;
    struct sv_tp *tp;
    struct sv_logstore *log;
    struct sv_seg_store *seg;
    pthread_mutex_t seg_mu;
    struct sv_sm *sm;
    struct sv_crypto_key *kek, *dek;
    char data_dir[SV_CFG_PATH_MAX + 16];

    struct group **groups; /* indexed by group id, NULL when not hosted */
    uint32_t n_group_ids;
    struct peer *peers; /* by node id, in no order */
    uint32_t n_peers;

    uv_timer_t tick;
    uv_prepare_t prepare;
    uv_check_t check;
    uv_signal_t sigterm, sigint;
    uv_async_t persisted; /* a job's batches are durable */
    struct job *jobs;     /* persist jobs in flight, oldest first */
    bool persist_busy;    /* a persist half (or a whole job) is running */
    bool apply_busy;      /* an apply half (or a whole job) is running */
    bool failed;          /* a job failed: start nothing more */

    uint64_t next_ctx;
    uint64_t next_fetch;
    uint64_t last_upload_scan_ms;
    uint64_t last_compact_ms;
    uint64_t last_map_check_ms;
    bool map_reading;          /* a read of the meta group's record is in the pool */
    bool map_adopting;         /* a newer map is being stored before it is followed */
    bool map_checked;          /* cluster.conf was checked against the record */
    uint64_t map_read_applied; /* group 0's applied index the record was last read at */
    uint32_t map_rr;           /* the meta member asked next (MAP_GET) */
    uint32_t n_closing;        /* groups with closing set */
    bool follow_again;         /* a group placed here waits for its old data to go */
    uint64_t *drops;           /* groups whose data the next job deletes */
    uint32_t n_drops;
    struct sv__health *health; /* heartbeats (health.c) */
    struct sv__sched *sched;   /* the scheduler's state on the meta leader (sched_run.c) */
    struct sv__repl **repls;   /* replacements being driven, by group id (move.c) */
    uint32_t n_repls;
    bool joining;     /* started with --join: not in the cluster map yet */
    bool said_left;   /* an evicted/removed node logged why it serves nothing */
    uint64_t join_ms; /* the last JOIN sent */
    uint64_t join_to; /* the node it went to (a redirect's target next) */
    uint32_t join_rr;
    uint64_t disk_checked_ms;
    uint64_t disk_free;
    uint64_t unapplied;      /* entry bytes of this node's proposed writes not yet answered */
    uint64_t apply_retry_ms; /* the disk was full: no apply half starts before this */
    struct fetch *fetches;
    /* Chunk copy (copy.c). */
    uint64_t copy_rate;      /* bytes per second; 0 pauses copying */
    int64_t copy_tokens;     /* the token bucket, in bytes (below 0: owed) */
    uint64_t copy_refill_ms; /* when tokens were last added */
    uint32_t copy_inflight;  /* fetches */
    uint64_t copy_passes;    /* passes started (each pass's number) */
    uint32_t copy_jobs;      /* count and page jobs in the pool */
    bool copy_pumping;       /* copy.c's pump is on the stack */
    int jobs_in_pool;        /* read, repair, copy and upkeep jobs */
    /* Reads (objects.c): in the pool, and waiting for it in order. */
    uint32_t reads_in_pool, reads_queued;
    struct waiter *read_q, **read_q_tail;
    uint64_t reads_refused;     /* UNAVAILABLE: READS_QUEUED_MAX were waiting */
    uint64_t in_flight_refused; /* UNAVAILABLE: CONN_IN_FLIGHT_MAX on the connection */
    bool stopping;
    int exit_code;
    struct sv__stats *stats; /* metrics (stats.c) */
    /* Disaster recovery (dr.c); the site's role and epoch are the map's. */
    uint32_t dr_n_peers;
    uint32_t dr_rr;            /* the peer node the meta leader asks next */
    uint64_t dr_peer_ms;       /* the meta leader's last DR_STATUS to the peer site */
    uint64_t dr_peer_heard_ms; /* ... and its last answer (0: none) */
    uint64_t dr_ask_ms;        /* a DR_STATUS to the peer unanswered since (0: none) */
    uint32_t dr_ask_i;         /* ... to dr_peers[dr_ask_i] */
    uint32_t dr_peer_role;     /* enum sv_map_site_role, as the peer answered */
    uint64_t dr_peer_epoch;
    uint64_t dr_open_ms; /* when this node started (its primary writes wait for the peer) */
    /* A standby: the site's frontier as the meta leader last answered a
     * heartbeat (dr.c: the release), and the site epoch it belongs to. */
    uint64_t dr_release_ms, dr_release_epoch;
    uint64_t hlc_ms; /* the stamp of the last command this node made or applied (objects.c) */
    struct sv__dr_peer dr_peers[SV_CFG_NODES_MAX];
};

/* ---- node.c -------------------------------------------------------------- */

/* Stop this node after a storage failure it cannot go on from (what names
 * it); the loop stops once the jobs in flight are done. */
void sv__node_fatal(struct sv_node *n, const char *what);

/* ---- host.c -------------------------------------------------------------- */

/* Create group id here, restoring it from the log store, or bootstrapping
 * it with its replicas when the store has none. 0 or an error + errmsg. */
int sv__group_open(struct sv_node *n, uint64_t id, char *errmsg, size_t errlen);
/* Free g and every input queued for it (proposal tags are handed back as
 * -ECANCELED). The request lists must be empty. */
void sv__group_free(struct sv_node *n, struct group *g);
/* g, or NULL when group id is not hosted here. */
struct group *sv__group(const struct sv_node *n, uint64_t id);
/* Raft message m for g: stepped now, or queued while g's batch is on disk. */
void sv__host_step(struct sv_node *n, struct group *g, const struct sv_raft_msg *m);
/* Propose data (ownership moves here); the outcome reaches events.proposed
 * when tag is not NULL. */
void sv__host_propose(struct sv_node *n, struct group *g, uint8_t *data, size_t len, void *tag);
/* Ask g's leader to confirm a read point for ctx (events.read_index). */
void sv__host_read_index(struct sv_node *n, struct group *g, uint64_t ctx);
/* Feed g what arrived while its batch was on disk. */
void sv__host_drain(struct sv_node *n, struct group *g);
/* Follow n->map: create the groups it places here that are not (an empty
 * one joins its group as a learner), close those it no longer places here
 * (their data is deleted once they are out of every job). */
void sv__host_follow(struct sv_node *n);
/* This node is a member of the cluster: not evicted or removed in the map. */
bool sv__host_serves(const struct sv_node *n);
/* Free the closing groups that are out of every job, and queue their data
 * for deletion. */
void sv__host_reap(struct sv_node *n);
/* One tick for every group; closing groups reaped; a follow that had to
 * wait for a deletion done again. */
void sv__host_tick(struct sv_node *n);
/* Re-read g's Raft status (role, term, leader, commit); a lost leadership
 * is reported. */
void sv__host_refresh(struct sv_node *n, struct group *g);

/* ---- peers.c ------------------------------------------------------------- */

/* The connection to node id, dialled when there is none (at most every
 * PEER_RETRY_MS); NULL when id is not a peer or is unreachable. */
struct sv_conn *sv__peer(struct sv_node *n, uint64_t id);
/* p's connection, or a new dial of addr expecting the certificate of node
 * p->id of site (at most every PEER_RETRY_MS); NULL meanwhile. */
struct sv_conn *sv__peer_dial(struct sv_node *n, struct peer *p, const char *site,
                              const char *addr);
/* Send those of msgs[0..count) of g that Raft lets go early (or the rest),
 * batched per destination. */
void sv__peers_send(struct sv_node *n, struct group *g, struct sv_raft_msg *msgs, size_t count,
                    bool early);
/* A RAFT frame from connection c (a node certificate's connection). */
void sv__peers_on_raft(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
/* The node id a connection's certificate names, or 0. */
uint64_t sv__peer_id(const struct sv_node *n, struct sv_conn *c);

/* ---- pipeline.c ---------------------------------------------------------- */

/* Take the ready batches into a new job when a stage is free for it. */
void sv__pipeline_cycle(struct sv_node *n);
/* Finish the jobs that are done and start what may start (also after a
 * full disk's retry time). */
void sv__pipeline_advance(struct sv_node *n);
/* The persist half of a job signalled that its batches are durable. */
void sv__pipeline_on_persisted(uv_async_t *a);

/* ---- upkeep.c ------------------------------------------------------------ */

/* Take a snapshot of g in the pool when its log has grown enough. */
void sv__upkeep_snapshot(struct sv_node *n, struct group *g);
/* Periodic work: expired uploads, segment compaction. */
void sv__upkeep_tick(struct sv_node *n, uint64_t now_ms);
/* The disk has no room for a write of need more bytes (DISK_RESERVE_BYTES
 * kept free, DISK_WRITE_FACTOR per byte not applied yet). */
bool sv__disk_full(struct sv_node *n, size_t need);

/* ---- meta.c -------------------------------------------------------------- */

/* Read DATA/map (the last map this node adopted) into n->map when newer
 * than cluster.conf's. 0 or an error + errmsg. */
int sv__meta_load(struct sv_node *n, char *errmsg, size_t errlen);
/* Answer another node's MAP_GET; take a MAP_GET answer. */
void sv__meta_reply_map_get(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
void sv__meta_on_map_reply(struct sv_node *n, const struct sv_wire_frame *f);
/* Meta leader: propose map as the next record, taken only if the record is
 * then still at epoch expect. 0 or NOT_LEADER / -ENOMEM. */
int sv__meta_propose(struct sv_node *n, const struct sv_map *map, uint64_t expect);

/* Until the meta group's map is recorded and checked against cluster.conf. */
void sv__meta_tick(struct sv_node *n, uint64_t now_ms);
/* Answer a MAP request. */
void sv__meta_reply_map(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);

/* ---- dr.c ------------------------------------------------------------------ */

int sv__dr_open(struct sv_node *n);
/* This site takes no writes (a standby). */
bool sv__dr_standby(const struct sv_node *n);
const char *sv__dr_role_name(const struct sv_node *n);
/* A standby answers a write READ_ONLY (naming the active site): 1; 0 when
 * the write may go on. */
int sv__dr_refuse_write(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id);
/* The peer site's node id a connection's certificate names, or 0. */
uint64_t sv__dr_peer_id(const struct sv_node *n, struct sv_conn *c);
/* Standby leaders pull; the meta leader asks the peer site its role and
 * epoch every second (and fences this site when the peer is a newer
 * primary). */
void sv__dr_tick(struct sv_node *n, uint64_t now_ms);
/* A standby: group g's closed time, for the heartbeat (0: none, or the
 * shard is not whole). */
uint64_t sv__dr_closed(struct sv_node *n, struct group *g);
/* g is a shard group this node leads. */
bool sv__dr_leads(const struct group *g);
/* A promoted site: group g's cut is not applied yet (it takes no write). */
bool sv__dr_cutting(struct sv_node *n, struct group *g);
void sv__dr_on_peer_status(struct sv_node *n, const struct sv_wire_frame *f);
/* The peer site answered as the primary within the last 3 s (meta leader). */
bool sv__dr_primary_answers(const struct sv_node *n);
/* The peer site answered as a primary newer than this site. */
bool sv__dr_peer_newer(const struct sv_node *n);
void sv__dr_on_pull_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
/* Entry e of g applied (every replica): a SHIP moves the cursor. */
void sv__dr_on_applied(struct sv_node *n, struct group *g, const struct sv_raft_entry *e,
                       const struct sv_sm_result *res);
/* Primary: a DR_PULL from the peer site; it waits for a read index, then
 * sv__dr_serve answers it (dispatch's read-index event). */
void sv__dr_pull(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                 const struct sv__ctx *ctx, struct sv_msg *m);
void sv__dr_serve(struct sv_node *n, struct group *g, struct waiter *w);
/* DR_SEED (a standby re-seeding a shard) and its answer at the read index. */
void sv__dr_seed(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                 const struct sv__ctx *ctx, struct sv_msg *m);
void sv__dr_seed_serve(struct sv_node *n, struct group *g, struct waiter *w);
void sv__dr_on_seed_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
/* DR_DIVERGED: the objects a shard wrote past a cut. */
void sv__dr_diverged(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                     struct sv_msg *m);
/* DR_DIGEST: a shard's digest (sv_sm_digest), computed in the pool. */
void sv__dr_digest(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                   struct sv_msg *m);
/* A connection to the peer site's i-th known node (dialled when none), or NULL. */
struct sv_conn *sv__dr_peer_conn_at(struct sv_node *n, uint32_t i);
/* What a group holds for the peer site (an image), freed with the group. */
void sv__dr_group_free(struct group *g);
/* Entries a snapshot of g at index keeps behind it (for the standby). */
uint64_t sv__dr_trailing(struct sv_node *n, struct group *g, uint64_t index);
void sv__dr_reply_status(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
/* Over the shards this node leads (metrics). */
struct sv__dr_summary {
    uint32_t led, stalled;
    uint32_t seeding;    /* standby shards in initial-sync or reseeding */
    uint64_t behind;     /* entries: the primary's commit index minus the last one that ran */
    uint64_t held_bytes; /* standby: shipped entries held until the release passes them */
    int64_t lag_ms;      /* standby: the largest lag (wall clock minus frontier); -1 unknown */
};
void sv__dr_summary(struct sv_node *n, struct sv__dr_summary *out);

/* ---- dispatch.c ---------------------------------------------------------- */

/* Every frame from the transport. */
void sv__dispatch_frame(void *arg, struct sv_conn *c, const struct sv_wire_frame *f);
/* Requests past their deadline get their answer. */
void sv__dispatch_tick(struct sv_node *n, uint64_t now_ms);
/* Fill the events the request side handles. */
void sv__dispatch_events(struct sv__events *ev);
/* Free every request of g (the node stops). */
void sv__dispatch_forget(struct sv_node *n, struct group *g);
void sv__send_msg(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                  struct sv_msg *m);
void sv__reply_status(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id, int status,
                      const char *text);
void sv__reply_not_leader(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                          uint64_t leader);
/* A waiter for request f of c, acting for ctx, on group; NULL without
 * memory. A client's counts in c's requests in flight until freed. */
struct waiter *sv__waiter_new(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                              const struct sv__ctx *ctx, uint64_t group);
void sv__waiter_free(struct waiter *w);
void sv__waiter_fail(struct waiter *w, int status, const char *text);

/* ---- objects.c ----------------------------------------------------------- */

/* A write (PUT, PUT_BEGIN/CHUNK/COMMIT, DELETE) to g, whose leader is here:
 * sealed into a command and proposed. */
void sv__objects_write(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                       const struct sv__ctx *ctx, const struct sv_msg *m, struct group *g);
/* A read (GET, GET_CHUNK, STAT, LIST, CHUNK_FETCH) of g: m, decoded from
 * body (a malloc'd copy of the frame's body), and body move to the request
 * (the caller's m is zeroed). */
void sv__objects_read(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                      const struct sv__ctx *ctx, struct sv_msg *m, uint8_t *body, struct group *g);
/* Run w's read in the pool: at once when fewer than READS_IN_POOL run,
 * else after those queued before it; UNAVAILABLE when READS_QUEUED_MAX
 * wait already (a flood of reads must not delay the Raft syncs that run in
 * the same pool, nor grow without bound). Another node's read runs at once;
 * a queued client read whose connection closed is dropped. */
void sv__objects_start_read(struct sv_node *n, struct waiter *w);
/* Start the reads of g whose read index is applied. */
void sv__objects_serve_ready(struct sv_node *n, struct group *g);

/* ---- move.c -------------------------------------------------------------- */

/* Meta leader: drive every replacement the recorded map holds. */
void sv__move_tick(struct sv_node *n, uint64_t now_ms);
/* group's replacement is done with the configuration: the map may drop
 * `out` (or, *abandoned, the new replica). */
bool sv__move_finished(const struct sv_node *n, uint64_t group, bool *abandoned);
/* When this meta leader began driving group's replacement (0: it does not). */
uint64_t sv__move_started(const struct sv_node *n, uint64_t group);
/* group's replacement of node out by node to, as the group's leader last
 * answered (false when this meta leader does not know): *out_voter, out is
 * a voter and no request to remove it is unanswered (the planner may still
 * make the replacement another's); *new_voter, to is a voter. */
void sv__move_roles(const struct sv_node *n, uint64_t group, uint64_t out, uint64_t to,
                    bool *out_voter, bool *new_voter);
/* What group's replacement waits for, a sentence. */
void sv__move_describe(const struct sv_node *n, uint64_t group, char *buf, size_t cap);
/* Ask group's leader (as last heard) to hand leadership to node to. */
void sv__move_transfer(struct sv_node *n, uint64_t group, uint64_t leader, uint64_t to);
/* A CONF request from the meta leader (this node leads the group). */
void sv__move_conf(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                   const struct sv_msg *m);
/* A CONF answer. */
void sv__move_on_conf_reply(struct sv_node *n, const struct sv_wire_frame *f);
/* Free the replacements' state (the node stops). */
void sv__move_close(struct sv_node *n);

/* ---- health.c ------------------------------------------------------------ */

int sv__health_open(struct sv_node *n);
void sv__health_close(struct sv_node *n);
/* Send this node's heartbeat every HEARTBEAT_MS; a new meta leadership
 * starts an empty table. */
void sv__health_tick(struct sv_node *n, uint64_t now_ms);
/* This node leads the meta group and its table is of the current term. */
bool sv__health_leading(const struct sv_node *n);
/* Node id is alive as of now_ms (a JOIN: its silence counts from then). */
void sv__health_heard(struct sv_node *n, uint64_t id, uint64_t now_ms);
/* What node id said last, or NULL. */
const struct sv__hnode *sv__health_node(const struct sv_node *n, uint64_t id);
/* A HEARTBEAT from another node; the answer to ours. */
void sv__health_on_beat(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                        const struct sv_msg *m);
void sv__health_on_reply(struct sv_node *n, const struct sv_wire_frame *f);
/* A standby's meta leader: the site's frontier, the lowest closed time its
 * shards' leaders reported (0: a shard's is not known). */
uint64_t sv__health_frontier(struct sv_node *n);

/* ---- sched_run.c --------------------------------------------------------- */

int sv__sched_open(struct sv_node *n);
/* Answer the waiting requests (the node stops) and free. */
void sv__sched_close(struct sv_node *n);
/* The meta leader plans a round every SCHED_MS (or when a request waits). */
void sv__sched_tick(struct sv_node *n, uint64_t now_ms);
/* DRAIN, NODE_REMOVE, CLUSTER_SET, JOIN, MOVE: answered once recorded. */
/* Meta leader: fence this site (a newer primary was heard of): recorded as
 * an operator's DR_DEMOTE would be, nobody waiting for the answer. */
void sv__sched_fence(struct sv_node *n);
void sv__sched_request(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                       const struct sv_msg *m);
void sv__sched_reply_settings(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
void sv__sched_reply_nodes(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
void sv__sched_reply_health(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
void sv__sched_reply_log(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);

/* ---- join.c -------------------------------------------------------------- */

/* A node started with --join asks to be added until the map names it. */
void sv__join_tick(struct sv_node *n, uint64_t now_ms);
void sv__join_on_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);

/* ---- repair.c ------------------------------------------------------------ */

/* Called once a repair ends: status 0 when a healthy copy of bytes (sealed)
 * is stored here (read again), else an SV_ST_* status and a sentence (bytes
 * 0). It may be called before sv__repair_start returns. */
typedef void (*sv__repair_cb)(struct sv_node *n, void *arg, int status, const char *text,
                              size_t bytes);
/* Fetch chunk_id of group (whose ciphertext must open under ad) from
 * another replica and store it here. */
void sv__repair_start(struct sv_node *n, uint64_t group, const uint8_t *chunk_id,
                      const struct sv_crypto_chunk_ad *ad, void *arg, sv__repair_cb cb);
/* As sv__repair_start, without syncing the segment store after the put:
 * for copy.c, whose marker stays set until a pass found every chunk and
 * synced the store. Many chunks then cost one sync, not one each. */
void sv__repair_copy(struct sv_node *n, uint64_t group, const uint8_t *chunk_id,
                     const struct sv_crypto_chunk_ad *ad, void *arg, sv__repair_cb cb);
/* A CHUNK_FETCH reply from a peer on c; taken only from the connection the
 * fetch went out on. */
void sv__repair_on_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f);
/* Ask the next replica where one did not answer in time. */
void sv__repair_tick(struct sv_node *n, uint64_t now_ms);
/* Give up every fetch (the node stops): their callbacks get UNAVAILABLE. */
void sv__repair_close(struct sv_node *n);

/* ---- copy.c -------------------------------------------------------------- */

/* A replica whose records may claim chunks it lacks (the copy marker: a
 * snapshot installed, or created empty to join) copies them from the other
 * replicas in the background, in passes: count what is missing (one view,
 * in the pool), fetch it page by page (repair.c), count again; a count that
 * finds nothing missing clears the marker. */

/* Start what may start: passes due, pages, fetches within COPY_CONCURRENT
 * and the rate. Every tick, and after a page or a fetch ends. */
void sv__copy_tick(struct sv_node *n, uint64_t now_ms);
/* g installed a snapshot (its marker is set): a pass starts (again). */
void sv__copy_installed(struct sv_node *n, struct group *g);
/* Bytes per second copied at most (0 pauses; the scheduler sets it from a
 * cluster setting; COPY_RATE_BYTES until then). */
void sv__copy_set_rate(struct sv_node *n, uint64_t bytes_per_s);
/* g holds every chunk its records claim (its marker is clear). */
bool sv__copy_complete(const struct sv_node *n, const struct group *g);
/* What g still lacks: chunks as of its pass's last count less those copied
 * since, and bytes estimated (each chunk at its object's size over its
 * chunk count, an open upload's at the average of those); both 0 while
 * complete, and until the first count of a pass ends. */
void sv__copy_progress(const struct sv_node *n, const struct group *g, uint64_t *chunks_left,
                       uint64_t *bytes_left);

/* ---- stats.c ------------------------------------------------------------- */

/* The node's metrics (node/README.md, "Metrics"). Every other file reaches
 * them through the one-line hooks below; registration, the scrape-time
 * values and the endpoint live in stats.c. Hooks run on the loop thread
 * unless they say otherwise. */

/* Register the node's families into a new n->stats, before any group is
 * opened (the stores are open). 0 or an error + errmsg. */
int sv__stats_open(struct sv_node *n, char *errmsg, size_t errlen);
/* Serve /metrics and /health on n->me->metrics (on n->loop). 0 or an error +
 * errmsg naming the address. */
int sv__stats_start(struct sv_node *n, char *errmsg, size_t errlen);
/* Stop the endpoint and run the loop until it has closed (no-op when it
 * never started). */
void sv__stats_stop(struct sv_node *n);
/* Free n->stats (NULL: no-op) once the endpoint is stopped, every group's
 * series are removed and no pool job runs. */
void sv__stats_free(struct sv_node *n);

/* Group g was created / is being freed: its series (g is borrowed by them
 * until removed). */
void sv__stats_group_add(struct sv_node *n, struct group *g);
void sv__stats_group_remove(struct sv_node *n, struct group *g);
/* g's Raft status was re-read: counts a new leader. */
void sv__stats_group_refresh(struct sv_node *n, struct group *g);

/* Frame f arrived on c (before it is handled): body bytes in, and a
 * request's arrival time. */
void sv__stats_frame_in(struct sv_node *n, const struct sv_conn *c, const struct sv_wire_frame *f);
/* A reply to request (conn, req_id) of type was queued with status and a
 * body of bytes: counted, timed (or timed by sv__stats_waiter_done when a
 * waiter, freed right after, answered it). */
void sv__stats_reply(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                     int64_t status, size_t bytes);
/* w is being freed. */
void sv__stats_waiter_done(struct waiter *w);
/* Tell a STATUS reply m where this node serves /metrics (SV_F_METRICS; m
 * borrows the address). */
void sv__stats_status(const struct sv_node *n, struct sv_msg *m);
/* A Raft frame of bytes body bytes was queued. */
void sv__stats_raft_sent(struct sv_node *n, size_t bytes);

/* Pool thread: j's persist half made its batches durable in one log store
 * commit of ns. */
void sv__stats_persisted(struct job *j, uint64_t ns);
/* Pool thread, n->seg_mu held: an apply half took ns (the segment store's
 * sizes are copied for scrapes). */
void sv__stats_applied(struct sv_node *n, uint64_t ns);
/* Pool thread, n->seg_mu held (or no pool job running): copy the segment
 * store's sizes for scrapes. */
void sv__stats_seg_sizes(struct sv_node *n);
/* A compaction ended with rc, holding the segment store held_ns and
 * removing reclaimed bytes of files. */
void sv__stats_compacted(struct sv_node *n, int rc, uint64_t held_ns, uint64_t reclaimed);
/* The scheduler decided or reported a (counted by reason). */
struct sv_sched_action;
void sv__stats_sched(struct sv_node *n, const struct sv_sched_action *a);
/* Bytes this node stores (the segment store's live bytes, as last copied). */
uint64_t sv__stats_stored_bytes(const struct sv_node *n);
/* A repair ended with status (SV_ST_OK: a healthy copy is stored). */
void sv__stats_repair(struct sv_node *n, int status);
/* A chunk copy stored bytes (sealed) of a chunk. */
void sv__stats_copied(struct sv_node *n, size_t bytes);

#endif
