/* libshardvault: the C client of ShardVault, a replicated encrypted object store.
 *
 * A client (struct sv_client) holds the cluster map (which node leads which
 * shard), a pool of TLS connections per node address and an exactly-once
 * write session. It is thread-safe: any number of threads may share one
 * client and call any function concurrently, except sv_client_close, which
 * must be the last call.
 *
 * Every operation is blocking and bounded by the client's deadline_ms: it is
 * routed to the leader of the object's shard, follows NOT_LEADER redirects at
 * once, and retries connection failures, timeouts and UNAVAILABLE answers
 * with exponential backoff (50 ms doubling to 1 s, jittered) until the
 * deadline, then fails with SV_E_UNAVAILABLE or SV_E_TIMEOUT. A READ_ONLY
 * answer (a write to a standby or fenced site) is not retried on the site: no
 * other node of it would take the write. When the endpoints name the nodes
 * of the other site too, the write goes there once (see
 * sv_client_options.endpoints); otherwise, or when that site is read-only
 * too, the call fails with SV_E_READ_ONLY. A streamed or
 * chunked put or get (objects over one chunk) gets a new deadline each time a
 * chunk is acknowledged or received: the deadline bounds a stall, not the
 * time a 5 GiB transfer takes.
 *
 * Errors: every function returns 0 (SV_OK) or a negative enum sv_client_err.
 * On failure, a one-line human explanation (what was tried, what the server
 * said) is kept per calling thread: sv_client_errmsg() returns it until the
 * next call of this library from the same thread.
 *
 * Names: a bucket is 1..63 bytes of [a-z0-9.-] starting and ending with a
 * letter or digit; a key is 1..SV_CLIENT_NAME_MAX bytes without NUL. Both are
 * NUL-terminated C strings here, borrowed for the call.
 */
#ifndef SHARDVAULT_CLIENT_H
#define SHARDVAULT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SV_CLIENT_API __attribute__((visibility("default")))

enum {
    SV_CLIENT_NAME_MAX = 1024,    /* bytes of a key, prefix or start_after */
    SV_CLIENT_ENDPOINTS_MAX = 64, /* endpoints in sv_client_options.endpoints */
    SV_CLIENT_DEADLINE_MS_DEFAULT = 30000,
    SV_CLIENT_LIST_LIMIT_MAX = 1000, /* entries in one sv_client_list answer */
    SV_CLIENT_ERRMSG_MAX = 512,      /* sv_client_errmsg, with the NUL */
    SV_CLIENT_CHUNK = 1 << 20,       /* bytes per chunk of a large object */
    SV_CLIENT_TEXT_MAX = 1024,       /* bytes of a node's sentence (HEALTH, SCHED_LOG) */
    SV_CLIENT_REASON_MAX = 63,       /* bytes of a reason code kept (longer ones are cut) */
    SV_CLIENT_STATE_MAX = 31,        /* bytes of a node state or log action kept */
    SV_CLIENT_SITE_MAX = 31,         /* bytes of a site name ([a-z0-9-], 1..31) */
};

/* Error codes (negative). Stable: svctl maps them to exit codes. */
enum sv_client_err {
    SV_OK = 0,
    SV_E_NOT_FOUND = -3000, /* no such object */
    SV_E_VERSION_CONFLICT,  /* if_version did not match, or the object changed during a read */
    SV_E_UNAVAILABLE,       /* no node could serve the request before the deadline */
    SV_E_DENIED,            /* not authenticated or not allowed */
    SV_E_BAD_ARGUMENT,      /* invalid bucket, key, option or argument */
    SV_E_TOO_BIG,           /* a size over a server limit */
    SV_E_NO_SPACE,          /* a server disk is full: nothing was written */
    SV_E_CORRUPT,           /* data failed the end-to-end SHA-256 check */
    SV_E_TIMEOUT,           /* the deadline passed while waiting for a node */
    SV_E_TLS,               /* TLS configuration or handshake failure (bad CA, wrong cert) */
    SV_E_PROTOCOL,          /* a node sent something this client does not understand */
    SV_E_IO,                /* a local I/O error, or a read/write callback failed */
    SV_E_INTERNAL,          /* the server reported an internal error */
    SV_E_NOMEM,             /* out of memory */
    SV_E_READ_ONLY,         /* the site takes no writes (a disaster-recovery standby, or fenced),
                               nor did the other site when the endpoints name one: never retried
                               further; sv_client_errmsg() has the (last) node's sentence, which
                               names the active site */
    SV_E_LAST_
};

/* Static name of an error code ("ok", "not found", "version conflict", ...;
 * "unknown error" otherwise). */
SV_CLIENT_API const char *sv_client_strerror(int err);

/* The explanation of the last failed call of this library made by the
 * calling thread ("" when none). The string belongs to the thread and stays
 * valid until its next call into the library. */
SV_CLIENT_API const char *sv_client_errmsg(void);

/* Read consistency. */
enum sv_consistency {
    SV_LINEARIZABLE = 0, /* read the latest committed version (leader, read index) */
    SV_STALE = 1,        /* any replica may answer, possibly with an older version */
};

/* Condition of a write on the current version of the object. */
enum {
    SV_IF_ANY = -1,   /* unconditional */
    SV_IF_ABSENT = 0, /* the object must not exist */
    /* N > 0: the object's current version must be N */
};

struct sv_client_options {
    const char *endpoints; /* "host:port,host:port" (required): any node will do. With two
                              disaster-recovery sites, the nodes of both may be listed, in any
                              order: the client holds one site's map at a time (from the first
                              endpoint that answers MAP; a refresh asks that site's nodes first)
                              and follows the active site: a write answered READ_ONLY is sent,
                              once per call and with the same session and seq (so exactly once),
                              to the site of the endpoints that are not nodes of the map held,
                              whose map the client then keeps for later calls. Reads go to the
                              site held (either site serves them). Endpoints of one site only:
                              READ_ONLY is final */
    const char *ca_file;   /* PEM CA bundle that vouches for the nodes (required) */
    const char *token;     /* access token, may be NULL (copied; kept for when the protocol
                              carries tokens: this version does not send it) */
    uint64_t tenant;       /* tenant id: only 0 exists until access tokens (issue: security) */
    uint32_t deadline_ms;  /* per operation, 0 = SV_CLIENT_DEADLINE_MS_DEFAULT */
};

struct sv_client;

/* Open a client. opts and its strings are borrowed for the call (copied).
 * Nothing is sent yet: the cluster map is fetched on first use, so an
 * unreachable cluster shows up on the first operation. On success *out owns
 * the client (free it with sv_client_close). Returns 0, SV_E_BAD_ARGUMENT
 * (endpoints empty or malformed, more than SV_CLIENT_ENDPOINTS_MAX, a tenant
 * other than 0), SV_E_TLS
 * (CA file missing or invalid) or SV_E_NOMEM; *out untouched on failure. */
SV_CLIENT_API int sv_client_open(const struct sv_client_options *opts, struct sv_client **out);

/* Close every pooled connection and free the client. No other call on c may
 * be running or follow. NULL is a no-op. */
SV_CLIENT_API void sv_client_close(struct sv_client *c);

/* Metadata of an object. */
struct sv_stat {
    uint64_t size;    /* bytes */
    uint64_t version; /* increases with every write of the key */
    uint8_t sha256[32];
    uint64_t mtime_ms; /* ms since the epoch */
};

/* Store data[0..len) (borrowed) as bucket/key. if_version: SV_IF_ANY,
 * SV_IF_ABSENT or a version N > 0. *version (may be NULL) receives the new
 * version. A retried write is applied exactly once. Returns 0,
 * SV_E_VERSION_CONFLICT, SV_E_BAD_ARGUMENT, SV_E_TOO_BIG, SV_E_NO_SPACE,
 * SV_E_DENIED, SV_E_READ_ONLY, SV_E_UNAVAILABLE, SV_E_TIMEOUT, ... */
SV_CLIENT_API int sv_client_put(struct sv_client *c, const char *bucket, const char *key,
                                const void *data, size_t len, int64_t if_version,
                                uint64_t *version);

/* Read callback of a streamed put: fill buf[0..cap) and return the number of
 * bytes written (0 only at the end of the data), or a negative value to
 * abort the put (it then fails with SV_E_IO). */
typedef int64_t (*sv_client_read_cb)(void *arg, void *buf, size_t cap);

/* Store the bytes that read returns until it returns 0. size is the total
 * when known (checked: a different count fails with SV_E_BAD_ARGUMENT), or -1.
 * At most 32 chunks of SV_CLIENT_CHUNK bytes are held in memory at a time,
 * never the whole object. Otherwise as sv_client_put. */
SV_CLIENT_API int sv_client_put_stream(struct sv_client *c, const char *bucket, const char *key,
                                       int64_t size, int64_t if_version, uint64_t *version,
                                       sv_client_read_cb read, void *arg);

/* Read bucket/key into a new malloc'd buffer: on success *data (the caller
 * frees it; never NULL, even for an empty object) and *len are set, and *st
 * (may be NULL) receives the metadata. The content is checked against its
 * SHA-256. Returns 0, SV_E_NOT_FOUND, SV_E_CORRUPT, SV_E_VERSION_CONFLICT
 * (the object changed during the read), SV_E_NOMEM, SV_E_UNAVAILABLE, ... */
SV_CLIENT_API int sv_client_get(struct sv_client *c, const char *bucket, const char *key,
                                enum sv_consistency consistency, void **data, size_t *len,
                                struct sv_stat *st);

/* Write callback of a streamed get: consume buf[0..len) (borrowed for the
 * call); return 0 to go on, anything else to abort (the get then fails with
 * SV_E_IO). */
typedef int (*sv_client_write_cb)(void *arg, const void *buf, size_t len);

/* Stream bucket/key to write, in order, holding at most 33 chunks in memory.
 * *st (may be NULL) receives the metadata. The SHA-256 of what was delivered
 * is checked at the end: SV_E_CORRUPT means the bytes already given to write
 * are not the object (discard them). When the object is replaced during the
 * read, the read restarts if nothing was delivered yet, otherwise it fails
 * with SV_E_VERSION_CONFLICT. Otherwise as sv_client_get. */
SV_CLIENT_API int sv_client_get_stream(struct sv_client *c, const char *bucket, const char *key,
                                       enum sv_consistency consistency, struct sv_stat *st,
                                       sv_client_write_cb write, void *arg);

/* Delete bucket/key if its version matches if_version (SV_IF_ANY, or N > 0).
 * *version (may be NULL) receives the deleted version. Returns 0,
 * SV_E_NOT_FOUND, SV_E_VERSION_CONFLICT, SV_E_READ_ONLY, ... */
SV_CLIENT_API int sv_client_delete(struct sv_client *c, const char *bucket, const char *key,
                                   int64_t if_version, uint64_t *version);

/* Metadata of bucket/key into *st (caller-owned). Returns 0, SV_E_NOT_FOUND, ... */
SV_CLIENT_API int sv_client_stat(struct sv_client *c, const char *bucket, const char *key,
                                 enum sv_consistency consistency, struct sv_stat *st);

struct sv_list_entry {
    char *key; /* NUL-terminated, owned by the list */
    uint64_t size, version, mtime_ms;
};

struct sv_list {
    size_t n;                      /* entries, sorted by key (bytewise) */
    struct sv_list_entry *entries; /* owned by the list */
    bool more;                     /* keys after the last entry exist: pass it as start_after */
};

/* List the keys of bucket that start with prefix (NULL or "" = all) and
 * sort after start_after (NULL or "" = from the first), at most limit
 * (1..SV_CLIENT_LIST_LIMIT_MAX) of them, from every shard merged. On success
 * *out owns a new list (free it with sv_client_list_free). Returns 0,
 * SV_E_BAD_ARGUMENT, SV_E_NOMEM, SV_E_UNAVAILABLE, ... */
SV_CLIENT_API int sv_client_list(struct sv_client *c, const char *bucket, const char *prefix,
                                 const char *start_after, uint32_t limit,
                                 enum sv_consistency consistency, struct sv_list **out);

/* Free a list. NULL is a no-op. */
SV_CLIENT_API void sv_client_list_free(struct sv_list *l);

struct sv_status_node {
    uint64_t id;
    char address[SV_CLIENT_NAME_MAX + 1]; /* host:port */
    char zone[SV_CLIENT_NAME_MAX + 1];
    char state[32]; /* the map's state as the meta leader reports it (up, down, draining,
                       evicted, removed) when it answered (sv_cluster_status.sched_known);
                       otherwise "up" when the node answered STATUS, "down" when not */
    bool reachable; /* the node answered STATUS within the deadline */
    char metrics[SV_CLIENT_NAME_MAX + 1]; /* host:port of its plain-HTTP /metrics and /health,
                                             from its STATUS answer ("" when down or not sent) */
    uint64_t replicas; /* shard replicas the node holds: the meta leader's count, else the
                          map's shards that list it */
    uint64_t leaders;  /* groups it leads: the meta leader's count, else shards whose
                          replica on it answered STATUS as leader */
};

struct sv_status_replica {
    uint64_t node;
    char zone[SV_CLIENT_NAME_MAX + 1];
    char role[32];    /* as the node reports it ("leader", "follower", ...), or "down" */
    uint64_t term;    /* the replica's Raft term (0 when down) */
    uint64_t applied; /* index of the last entry it applied (0 when down) */
};

struct sv_status_shard {
    uint64_t id;
    size_t n_replicas;
    struct sv_status_replica replicas[16];
    char reason[SV_CLIENT_REASON_MAX + 1]; /* HEALTH's reason code when the shard is below its
                                              replica count or being repaired, "" otherwise
                                              (and when health is unknown) */
    char text[SV_CLIENT_TEXT_MAX + 1];     /* HEALTH's sentence about it, "" when none */
    int64_t chunks_left;                   /* chunks its new replica still copies, -1 unknown */
};

struct sv_cluster_status {
    uint64_t epoch; /* of the cluster map (grows with every change; 0: not reported) */
    size_t n_nodes;
    struct sv_status_node *nodes; /* owned */
    size_t n_shards;
    struct sv_status_shard *shards; /* owned */
    bool sched_known;  /* the meta group's leader answered NODES: states and counts are its */
    bool health_known; /* it answered HEALTH too and has heard every node (or waited
                          down_after for them) since it took over: the shard reasons are
                          complete; false: no shard reason can be trusted to be absent */
    char meta_reason[SV_CLIENT_REASON_MAX + 1]; /* HEALTH's reason for the meta group, "" */
    char meta_text[SV_CLIENT_TEXT_MAX + 1];
};

/* Gather the cluster map (MAP from any node) and ask every node for STATUS;
 * a node that does not answer within the deadline is not reachable. Then ask
 * the meta group's leader for NODES and HEALTH (as sv_client_nodes and
 * sv_client_health; 5 s at most): its node states and counts and the reasons
 * of the shards below their replica count. When it cannot be reached, states
 * are "up"/"down" by reachability and sched_known and health_known are false.
 * On success *out owns a new status (free it with sv_client_status_free).
 * Returns 0, SV_E_NOMEM, or the error of fetching the map. */
SV_CLIENT_API int sv_client_status(struct sv_client *c, struct sv_cluster_status **out);

/* Free a status. NULL is a no-op. */
SV_CLIENT_API void sv_client_status_free(struct sv_cluster_status *s);

/* Disaster recovery: the primary site ships every shard's committed entries
 * to a standby site (a copy of it, read-only), where each shard's leader
 * applies them. DR_STATUS asks one node about its site and the shards it
 * leads; sv_client_dr_status puts the nodes' answers together.
 * sv_client_dr_promote and sv_client_dr_demote change the site's role. */

struct sv_dr_shard {
    uint64_t id;                         /* shard index */
    char state[SV_CLIENT_STATE_MAX + 1]; /* on a standby: initial-sync, streaming, reseeding,
                                            stalled; on a primary: shipping, stalled, cutting
                                            (promoted, its cut not applied: no writes);
                                            "unknown": no node that answered leads it */
    int64_t frontier_ms;                 /* every entry the primary committed before this wall
                                            clock time (ms since the epoch) is committed on the
                                            standby (run once the site's release passes it);
                                            -1 unknown (not yet, or on a primary) */
    int64_t lag_ms;          /* the leader's own clock when it answered minus frontier_ms (0 when
                                its clock is behind the frontier); -1 unknown */
    uint64_t applied;        /* on a standby, the last primary index that ran (entries held for
                                the consistent cut wait); on a primary, the standby's cursor
                                (0 unknown) */
    uint64_t commit;         /* the primary's commit index as last seen (0 unknown) */
    int64_t last_contact_ms; /* ms since the last contact with the peer site; -1 none */
    uint64_t cut;            /* a promoted site: the primary index this shard was shipped to when it
                                was promoted (0 unknown, or never a standby) */
    uint64_t last_index;     /* a fenced site: its leader's last log index, all it may still
                                commit (0 unknown) */
    char reason[SV_CLIENT_REASON_MAX + 1]; /* why it is stalled (a code), "" otherwise */
    char text[SV_CLIENT_TEXT_MAX + 1];     /* a sentence about it, "" when none */
};

struct sv_dr_status {
    char role[SV_CLIENT_STATE_MAX + 1]; /* primary, standby or fenced: the first answering
                                           node's, except that any node fenced makes it fenced */
    char site[SV_CLIENT_SITE_MAX + 1];  /* this site's name, as the first answering node says */
    char peer[SV_CLIENT_SITE_MAX + 1];  /* the peer site's name, "" when none */
    uint64_t epoch;                     /* the site epoch: the highest one reported */
    int64_t frontier_ms;                /* the lowest shard frontier_ms; -1 when any is unknown */
    int64_t lag_ms;                     /* the highest shard lag_ms; -1 when any is unknown */
    size_t n_nodes;                     /* nodes in the cluster map */
    size_t n_answered;                  /* nodes that answered DR_STATUS */
    bool uniform; /* every answering node reported this very role and epoch (false while
                     some still follow a promotion or a demotion) */
    size_t n_shards;
    struct sv_dr_shard *shards; /* owned, n_shards of them, indexed by shard id */
};

/* Gather the cluster map (MAP from any node) and ask every node for
 * DR_STATUS as sv_client_status asks for STATUS (each node bounded by 5 s
 * and all by the deadline). Each shard is reported by the node that leads it
 * (when two claim it, the one that applied more); a shard no answering node
 * leads is "unknown" with -1 for what is unknown. Lags are measured against
 * each node's clock, not this client's. On success *out owns a new report
 * (free it with sv_client_dr_status_free). Returns 0, SV_E_NOMEM, the error
 * of fetching the map, SV_E_UNAVAILABLE when no node answered, or when no
 * answer was OK the error of the first (SV_E_BAD_ARGUMENT from nodes
 * without disaster recovery, with their sentence). */
SV_CLIENT_API int sv_client_dr_status(struct sv_client *c, struct sv_dr_status **out);

/* Free a report. NULL is a no-op. */
SV_CLIENT_API void sv_client_dr_status_free(struct sv_dr_status *s);

/* A promotion, as the meta group's leader recorded it. */
struct sv_dr_promote {
    uint64_t site_epoch; /* the site's new epoch */
    uint64_t map_epoch;  /* of the cluster map that records it */
    /* The consistent cut, in ms since the epoch: every write the primary
     * stamped before it is kept, every later one dropped on every shard
     * (the failback's ledger lists them); -1 when none was made (a forced
     * promotion while the site's frontier was not known: every shard keeps
     * all it received). */
    int64_t cut_ms;
};

/* Make this standby site the primary (DR_PROMOTE to the meta group's
 * leader, tried and redirected as the operator calls below). The leader
 * records a new site epoch in the cluster map; each node takes writes once
 * it follows that map, which sv_client_dr_status shows (role "primary" at
 * the new epoch, uniform). The leader refuses (SV_E_BAD_ARGUMENT, its
 * sentence in sv_client_errmsg) when this site is not a standby, or when the
 * primary site answered within the last 3 s and force is false. Without
 * force, this library first reads the site's status (sv_client_dr_status)
 * and refuses (SV_E_BAD_ARGUMENT) while a shard is initial-sync or
 * reseeding: its image or chunks are still coming. *out (may
 * be NULL) receives the epochs. Failures are retried as for every operator
 * call: a retry after a lost answer may find the promotion recorded and be
 * refused (not a standby); sv_client_dr_status then shows the new epoch.
 * The leader cuts at the site's frontier as the standby's heartbeats last
 * told it; it answers SV_E_UNAVAILABLE (retry) while a shard's is not known
 * and force is false. Each shard takes writes once its cut is applied
 * (sv_client_dr_status shows it "cutting" until then; writes meanwhile get
 * SV_E_UNAVAILABLE).
 * Returns once recorded: 0, SV_E_BAD_ARGUMENT, SV_E_UNAVAILABLE,
 * SV_E_TIMEOUT, SV_E_PROTOCOL (an answer without the site epoch), ... */
SV_CLIENT_API int sv_client_dr_promote(struct sv_client *c, bool force, struct sv_dr_promote *out);

/* Fence this site (DR_DEMOTE to the meta group's leader, as
 * sv_client_dr_promote): it takes no writes and ships nothing, so that the
 * peer site can be the primary. *site_epoch (may be NULL) receives the site
 * epoch the leader answers. Returns once recorded: 0, SV_E_BAD_ARGUMENT with
 * the leader's sentence, SV_E_UNAVAILABLE, SV_E_TIMEOUT, SV_E_PROTOCOL, ... */
SV_CLIENT_API int sv_client_dr_demote(struct sv_client *c, uint64_t *site_epoch);

/* Failback, the divergence ledger, switchover. These take a client of each
 * site (each opened with that site's endpoints only).
 *
 * The divergence ledger: every write a fenced old primary accepted past the
 * cut its standby was promoted at (acknowledged, but never shipped), kept on
 * the active site in bucket SV_DR_LEDGER_BUCKET: per failback at site epoch E,
 * the object "eE/manifest" lists the entries (sv_client_dr_ledger reads
 * them all), and each live one's content is the object "eE/sS/iI" (shard S,
 * the old primary's index I that wrote it). Per key, the ledger holds the
 * last write past the cut (an earlier one overwritten on the old primary
 * past the cut is not kept: its state machine keeps live versions only). */
#define SV_DR_LEDGER_BUCKET "sv-diverged"

struct sv_dr_diverged {
    uint64_t site_epoch; /* of the failback that recorded it (the new primary's epoch) */
    uint64_t shard, tenant;
    char bucket[SV_CLIENT_NAME_MAX + 1], key[SV_CLIENT_NAME_MAX + 1];
    uint64_t version, size;
    uint64_t commit_ms;  /* the old primary's leader clock when it was written */
    uint64_t index;      /* the old primary's Raft index that wrote it */
    bool deleted;        /* a delete: no content */
    uint8_t sha256[32];  /* of the content (zeros for a delete) */
    char ledger_key[64]; /* its content: SV_DR_LEDGER_BUCKET/ledger_key ("" for a delete) */
};

struct sv_dr_ledger {
    size_t n;
    struct sv_dr_diverged *entries; /* owned, by site epoch, shard, key */
};

struct sv_dr_failback {
    uint64_t site_epoch; /* the epoch the old primary follows now (the new primary's) */
    size_t diverged;     /* writes moved into the ledger, deletes included */
    size_t deleted;      /* of those, deletes */
    uint64_t bytes;      /* content bytes copied into the ledger */
};

/* Turn the fenced old primary (client fenced) into the standby of the
 * active site (client active), losing nothing silently. Both sites' DR
 * status is read first: fenced must be fenced, active the primary at a
 * higher site epoch, and every shard's cut (the primary index the active
 * site's shard was shipped to when it was promoted) known. Then, shard by
 * shard, the object records the old primary wrote above the cut
 * (DR_DIVERGED to its shard leader) are copied into the ledger on the
 * active site, content read from the old primary (each object held in
 * memory once); the manifest is written last. Only then DR_FAILBACK to the
 * old primary's meta leader: it becomes a standby at the active site's
 * epoch, and each of its shards is re-seeded from the active site (its own
 * records and chunks replaced: the ledger is what is left of them). Run
 * again after a failure, it redoes the copy (same keys) and goes on.
 * Returns 0, SV_E_BAD_ARGUMENT (a site in the wrong role, with a
 * sentence), SV_E_UNAVAILABLE (a cut unknown, a site unreachable), or the
 * first error of a read or write, with sv_client_errmsg(). *out (may be
 * NULL) receives what was done. */
SV_CLIENT_API int sv_client_dr_failback(struct sv_client *fenced, struct sv_client *active,
                                        struct sv_dr_failback *out);

/* Every entry of the ledger on the active site. *out owns a new ledger (free
 * it with sv_client_dr_ledger_free); an empty one when no failback recorded
 * any. Returns 0, SV_E_NOMEM, SV_E_PROTOCOL (a manifest that does not parse),
 * or a read's error. */
SV_CLIENT_API int sv_client_dr_ledger(struct sv_client *active, struct sv_dr_ledger **out);
SV_CLIENT_API void sv_client_dr_ledger_free(struct sv_dr_ledger *l);

struct sv_dr_switchover {
    uint64_t site_epoch; /* the new primary's */
    uint64_t paused_ms;  /* from fencing the old primary until the new one took writes */
    uint64_t drain_ms;   /* of that, waiting for the standby to apply what was committed */
    size_t diverged;     /* writes the failback of the old primary moved into the ledger:
                            0, since the standby had everything (RPO 0) */
};

/* A shard compared across the two sites. */
struct sv_dr_verify_shard {
    uint64_t id;
    char state[SV_CLIENT_STATE_MAX + 1]; /* match, mismatch, behind (the sites' digests never
                                            stood at one primary index within the wait),
                                            unknown (a site's leader did not answer) */
    uint64_t index_a, index_b;           /* the primary index of each site's last digest */
    uint8_t digest_a[32], digest_b[32];
};

struct sv_dr_verify {
    size_t n_shards;
    size_t match, mismatch, behind, unknown;
    struct sv_dr_verify_shard *shards; /* owned */
};

/* Compare every shard of the two sites (a and b; one the primary, the other
 * its standby): each site's shard leader digests the shard's objects and
 * open uploads (DR_DIGEST) and says at which primary index; digests taken at
 * one index must be equal. A shard whose digests stand at different indexes
 * (the standby behind, or writes going on) is asked again until wait_s has
 * passed. *out owns a new report (free it with sv_client_dr_verify_free).
 * Returns 0 (whatever the shards' states), SV_E_NOMEM, or the error of
 * reading either site's map. */
SV_CLIENT_API int sv_client_dr_verify(struct sv_client *a, struct sv_client *b, double wait_s,
                                      struct sv_dr_verify **out);
SV_CLIENT_API void sv_client_dr_verify_free(struct sv_dr_verify *v);

/* The planned move: both sites up, primary (client) the primary and
 * standby its standby. Fences primary (writes pause), waits until standby
 * has applied every entry primary committed (lag zero) for at most wait_s
 * seconds, promotes standby and waits until it takes writes, then fails
 * primary back to be the new standby (as sv_client_dr_failback, which
 * finds nothing diverged). Not drained in time: SV_E_TIMEOUT, the old
 * primary stays fenced and the message says how to go on (promote either
 * site; the old primary with force, to undo the pause). Returns 0,
 * SV_E_BAD_ARGUMENT (a site in the wrong role), SV_E_TIMEOUT, or the error
 * of a step, with sv_client_errmsg() naming the step. */
SV_CLIENT_API int sv_client_dr_switchover(struct sv_client *primary, struct sv_client *standby,
                                          double wait_s, struct sv_dr_switchover *out);

/* Operator calls: to the meta group's leader.
 *
 * The scheduler runs on the leader of the meta group (group 0; shard s is
 * group s + 1). These calls try the node that last answered as that leader,
 * then every endpoint and every node of the map in turn; a NOT_LEADER answer
 * is followed at once to the LEADER/ADDR it names (at most 8 hops in a row;
 * a LEADER without ADDR is looked up in the map, fetched when needed). Other
 * failures and UNAVAILABLE are retried with the usual backoff until the
 * deadline (then SV_E_UNAVAILABLE or SV_E_TIMEOUT, errmsg listing what was
 * tried). A refusal (SV_E_BAD_ARGUMENT from BAD_REQUEST, ...) carries the
 * node's sentence in sv_client_errmsg(). */

struct sv_node_info {
    uint64_t id;
    char zone[SV_CLIENT_NAME_MAX + 1];
    char address[SV_CLIENT_NAME_MAX + 1];
    char state[SV_CLIENT_STATE_MAX + 1]; /* up, down, draining, evicted, removed */
    uint64_t replicas;                   /* replicas it holds */
    uint64_t leaders;                    /* groups it leads */
    uint64_t bytes;                      /* bytes stored, as its last heartbeat said */
    uint64_t disk_free;                  /* free bytes of its disk, as its last heartbeat said */
    int64_t age_ms;                      /* since its last heartbeat; -1: none heard */
};

struct sv_node_list {
    uint64_t epoch;    /* of the map the meta leader holds */
    bool health_known; /* every node heard since this leader took over (or silent past
                          down_after since): states down/evicted can be trusted */
    size_t n;
    struct sv_node_info *nodes; /* owned, in the map's order */
};

/* The nodes as the scheduler sees them (NODES). On success *out owns a new
 * list (free it with sv_client_node_list_free). Returns 0, SV_E_NOMEM,
 * SV_E_UNAVAILABLE, SV_E_TIMEOUT, SV_E_PROTOCOL, ... */
SV_CLIENT_API int sv_client_nodes(struct sv_client *c, struct sv_node_list **out);

/* Free a node list. NULL is a no-op. */
SV_CLIENT_API void sv_client_node_list_free(struct sv_node_list *l);

struct sv_health_group {
    uint64_t group; /* 0: the meta group; s + 1: shard s */
    size_t n_replicas;
    uint64_t replicas[16];                 /* node ids, as the map has them */
    char reason[SV_CLIENT_REASON_MAX + 1]; /* a code: no-zone-available, ... */
    char text[SV_CLIENT_TEXT_MAX + 1];     /* a sentence */
    int64_t chunks_left;                   /* chunks the new replica still copies, -1 unknown */
};

struct sv_health {
    uint64_t epoch;
    bool known; /* as sv_node_list.health_known: false means groups may be missing */
    size_t n;
    struct sv_health_group *groups; /* owned */
};

/* The groups below their replica count or being repaired (HEALTH). On
 * success *out owns a new report (free it with sv_client_health_free).
 * Returns as sv_client_nodes. */
SV_CLIENT_API int sv_client_health(struct sv_client *c, struct sv_health **out);

/* Free a health report. NULL is a no-op. */
SV_CLIENT_API void sv_client_health_free(struct sv_health *h);

struct sv_sched_event {
    uint64_t time_ms;                      /* wall clock, ms since the epoch */
    char action[SV_CLIENT_STATE_MAX + 1];  /* state, replace, transfer, report, done */
    char reason[SV_CLIENT_REASON_MAX + 1]; /* a code, "" when none */
    char text[SV_CLIENT_TEXT_MAX + 1];     /* a sentence */
    int64_t group;                         /* 0 meta, s + 1 shard s; -1: about a node only */
    int64_t node;                          /* the node concerned, -1 when none */
};

struct sv_sched_log {
    size_t n;
    struct sv_sched_event *events; /* owned, oldest first */
};

/* The scheduler's recent decisions (SCHED_LOG). On success *out owns a new
 * log (free it with sv_client_sched_log_free). Returns as sv_client_nodes. */
SV_CLIENT_API int sv_client_sched_log(struct sv_client *c, struct sv_sched_log **out);

/* Free a log. NULL is a no-op. */
SV_CLIENT_API void sv_client_sched_log_free(struct sv_sched_log *l);

/* Record that node id drains (its replicas move away, it stays in the map),
 * or with cancel that it is up again (DRAIN). Returns once recorded: 0,
 * SV_E_BAD_ARGUMENT with the node's sentence (no such node, removed, ...),
 * SV_E_UNAVAILABLE, ... Progress: sv_client_nodes (replicas reaching 0). */
SV_CLIENT_API int sv_client_node_drain(struct sv_client *c, uint64_t id, bool cancel);

/* Remove node id from the cluster map (NODE_REMOVE). The leader refuses
 * (SV_E_BAD_ARGUMENT, its sentence in sv_client_errmsg) while the node holds
 * replicas, unless force. Returns once recorded: 0, SV_E_BAD_ARGUMENT, ... */
SV_CLIENT_API int sv_client_node_remove(struct sv_client *c, uint64_t id, bool force);

/* The scheduler's settings, as the map records them. */
struct sv_cluster_settings {
    uint64_t epoch;          /* of the map the leader answered from */
    uint64_t down_after_s;   /* a node silent this long is down */
    uint64_t evict_after_s;  /* and this long evicted (its replicas rebuilt elsewhere) */
    bool auto_evict;         /* evict automatically */
    uint64_t repair_rate;    /* bytes/s of re-replication per node */
    uint64_t moves_per_node; /* replica moves at a time per node */
    bool rebalance;          /* replicas moved for balance alone (repairs and drains always) */
};

/* Set one setting, then read them all (CLUSTER_SET); name NULL only reads.
 * name: "down-after" or "evict-after" (value in seconds), "auto-evict" (0 or
 * 1), "repair-rate" (bytes/s), "moves-per-node", "rebalance" (0 or 1). The
 * leader validates the
 * value (a refusal is SV_E_BAD_ARGUMENT with its sentence); the library only
 * refuses an unknown name or auto-evict above 1. *out (may be NULL)
 * receives the settings after the change. Returns 0, SV_E_BAD_ARGUMENT, ... */
SV_CLIENT_API int sv_client_cluster_set(struct sv_client *c, const char *name, uint64_t value,
                                        struct sv_cluster_settings *out);

#ifdef __cplusplus
}
#endif
#endif
