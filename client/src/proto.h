/* ShardVault message bodies: what travels inside a wire frame (wire.h), for
 * client <-> node requests and node <-> node calls other than Raft traffic.
 *
 * Every body is ONE msgpack map from a small unsigned field id (enum
 * sv_field) to a value of the type that id fixes. A field that is absent is
 * absent from the map (struct sv_msg.fields says which are present). A
 * decoder ignores ids it does not know (newer peers may add fields) but
 * rejects a known id with a value of the wrong type, a duplicate id, a string
 * or binary over its limit, more items than SV_MSG_ITEMS_MAX, and any byte
 * after the map: the connection is then closed (wire.h). Decoding never
 * trusts a count: every array or map header is checked against the bytes
 * that remain before anything is allocated.
 *
 * A response frame has the request's type with SV_MSG_RESP set and the
 * request's id; its body always has SV_F_STATUS.
 *
 * Requests and their fields (R = required, o = optional):
 *   MAP          -                                  -> N_SHARDS, ITEMS: first one per
 *                node (ID ADDR ZONE STATE), then one per shard (ID = shard,
 *                REPLICAS = node ids, LEADER when this node knows it); a
 *                shard item is the one with REPLICAS
 *   PUT          R BUCKET KEY SESSION SEQ SIZE SHA256, o IF_VERSION ACK_BELOW DATA
 *                (the whole object, at most SV_MSG_CHUNK_MAX bytes)
 *                                                   -> VERSION
 *   PUT_BEGIN    R BUCKET KEY                       -> UPLOAD
 *   PUT_CHUNK    R BUCKET KEY UPLOAD CHUNK DATA (idempotent per UPLOAD/CHUNK)
 *                                                   -> -
 *   PUT_COMMIT   R BUCKET KEY UPLOAD N_CHUNKS SIZE SHA256 SESSION SEQ,
 *                o IF_VERSION ACK_BELOW             -> VERSION
 *   GET          R BUCKET KEY, o CONSISTENCY (0 linearizable, 1 stale)
 *                -> VERSION SIZE SHA256 MTIME_MS N_CHUNKS UPLOAD, DATA = chunk 0
 *   GET_CHUNK    R BUCKET KEY VERSION CHUNK, o CONSISTENCY -> DATA
 *                (VERSION_CONFLICT when the key no longer has that version)
 *   STAT         R BUCKET KEY, o CONSISTENCY        -> as GET without DATA
 *   DELETE       R BUCKET KEY SESSION SEQ, o IF_VERSION ACK_BELOW -> VERSION (deleted one)
 *   LIST         R BUCKET SHARD, o PREFIX START_AFTER LIMIT CONSISTENCY
 *                -> ITEMS (KEY SIZE VERSION MTIME_MS), FLAGS bit 0 = more
 *                (one shard's keys, sorted; the client merges shards)
 *   STATUS       -                                  -> NODE ADDR ZONE EPOCH, METRICS (the
 *                node's /metrics and /health address), ITEMS: one per hosted
 *                group (ID=shard, ROLE, LEADER, TERM, COMMIT, APPLIED, REPLICAS)
 *   CHUNK_FETCH  (node <-> node) R SHARD UPLOAD CHUNK, o VERSION -> DATA (sealed chunk)
 * Writes (PUT, PUT_COMMIT, DELETE) carry the client's SESSION and a SEQ
 * unique within it; ACK_BELOW is the lowest SEQ the client still awaits, so
 * the node may forget the results of lower ones (exactly-once, thesis §6.3).
 * Every request routed to a shard may carry SHARD; every response may carry
 * LEADER and ADDR (the leader's address) with status NOT_LEADER.
 */
#ifndef SV_PROTO_H
#define SV_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SV_MSG_CHUNK_MAX = 1 << 20, /* plaintext bytes of one chunk */
    SV_MSG_NAME_MAX = 1024,     /* bucket, key, prefix, start_after, zone, addr (bytes) */
    SV_MSG_TEXT_MAX = 1024,     /* SV_F_MSG */
    SV_MSG_ITEMS_MAX = 4096,    /* items in one message */
    SV_MSG_REPLICAS_MAX = 16,   /* replicas in one item */
    SV_MSG_DATA_MAX = SV_MSG_CHUNK_MAX + 4096, /* DATA: a chunk, sealed or not */
    SV_MSG_LIST_LIMIT_MAX = 1000,              /* keys in one LIST answer */
};

/* Frame types (wire.h type field). */
enum sv_msg_type {
    SV_MSG_MAP = 1, /* Answer: N_SHARDS, EPOCH, NODE (the answering node), ITEMS (the nodes:
                       ID, ADDR, ZONE, STATE; the shards: ID, REPLICAS, LEADER when known),
                       KEY = the site's role (primary|standby|fenced) when it has a peer site */
    SV_MSG_PUT = 2,
    SV_MSG_PUT_BEGIN = 3,
    SV_MSG_PUT_CHUNK = 4,
    SV_MSG_PUT_COMMIT = 5,
    SV_MSG_GET = 6,
    SV_MSG_GET_CHUNK = 7,
    SV_MSG_STAT = 8,
    SV_MSG_DELETE = 9,
    SV_MSG_LIST = 10,
    SV_MSG_STATUS = 11,
    SV_MSG_MOVE = 12, /* move a shard's replica (SHARD, NODE from, LEADER to): to the
                         meta group's leader; answered when done (operator, later) */
    /* Operators, to the meta group's leader (others answer NOT_LEADER naming it): */
    SV_MSG_NODES = 13,       /* the nodes as the scheduler sees them. Answer: EPOCH, FLAGS bit 0
                                = health known (every node heard since this meta leader took
                                over, or silent past down_after since), ITEMS per node of the
                                map: ID, ZONE, ADDR, STATE (up|down|draining|evicted|removed),
                                N_REPLICAS, N_LEADERS, BYTES, FREE (disk free), AGE_MS (since
                                its last heartbeat; absent when none heard) */
    SV_MSG_HEALTH = 14,      /* the groups below their replica count or being repaired. Answer:
                                EPOCH, FLAGS as NODES, ITEMS per such group: ID (group: 0 the
                                meta group, s + 1 shard s), REPLICAS (the map's), REASON,
                                TEXT, LEFT (chunks the new replica still copies, when known) */
    SV_MSG_SCHED_LOG = 15,   /* recent scheduler decisions, oldest first. Answer: ITEMS: MTIME_MS
                                (wall clock), KEY (action: state, replace, transfer, report,
                                done), REASON, TEXT, ID (group, absent when about a node only),
                                LEADER (the node concerned, when one) */
    SV_MSG_DRAIN = 16,       /* NODE; FLAGS bit 0: cancel (back to up). Answer once recorded */
    SV_MSG_NODE_REMOVE = 17, /* NODE; FLAGS bit 0: force (refused with BAD_REQUEST while the
                                node holds replicas, unless forced). Answer once recorded */
    SV_MSG_CLUSTER_SET = 18, /* KEY = setting (down-after, evict-after [seconds], auto-evict
                                [0|1], repair-rate [bytes/s], moves-per-node, rebalance [0|1]),
                                SIZE = value; no
                                KEY: read only. Answer: EPOCH, ITEMS: KEY, SIZE per setting */
    SV_MSG_DR_STATUS = 19,   /* to any node: its site and the shards it leads. Answer: KEY =
                                this site's role (primary|standby|fenced), BUCKET = this site's
                                name, PREFIX = the peer site's name ("" when none), VERSION =
                                the site epoch, MTIME_MS = the node's wall clock (lag is
                                measured against it), ITEMS per shard this node leads: ID
                                (shard index), STATE (standby: initial-sync|streaming|
                                reseeding|stalled; primary: shipping|stalled), MTIME_MS (the
                                frontier: every entry the primary committed before it is
                                applied here; absent until known), APPLIED (the last primary
                                index applied here; on a primary the standby's cursor), COMMIT
                                (the primary's commit index as last seen), AGE_MS (since the
                                last contact with the peer site; absent when none), REASON and
                                TEXT (when stalled) */
    SV_MSG_DR_PROMOTE = 20,  /* to the meta group's leader of a standby site: make it the
                                primary (a new site epoch; writes open once the nodes follow
                                the map). FLAGS bit 0: force (promote although the primary site
                                answered within the last 3 s). Answer once recorded: VERSION =
                                the new site epoch, EPOCH; BAD_REQUEST when this site is not a
                                standby or the primary still answers */
    SV_MSG_DR_DEMOTE = 21,   /* to the meta group's leader: fence this site (read-only, ships
                                nothing) so that the peer site can be the primary. Answer once
                                recorded: VERSION = the site epoch, EPOCH */
    SV_MSG_DR_FAILBACK = 22, /* to the meta group's leader of a fenced site: VERSION = the
                                peer's site epoch as the primary (above this site's). Makes
                                this site the peer's standby (every shard is re-seeded from the
                                primary). Answer once recorded: VERSION = the site epoch (the
                                primary's), EPOCH; BAD_REQUEST when the site is not fenced or
                                VERSION is not above its epoch; UNAVAILABLE while the leader has
                                not heard the peer as the primary at VERSION (it asks every
                                second) */
    SV_MSG_DR_DIVERGED = 23, /* to a shard's leader: SHARD, VERSION = the cut (a primary index),
                                START_AFTER = the object key to go on after (as answered),
                                LIMIT. Answer: ITEMS per object record written above the cut
                                (live or deleted, every tenant): TENANT, BUCKET, KEY, VERSION,
                                SIZE, SHA256, MTIME_MS, INDEX, STATE (live|deleted);
                                START_AFTER = where to go on (absent when done) */
    SV_MSG_DR_DIGEST = 24,   /* to a shard's leader: SHARD. Answer: SHA256 = the digest of the
                                shard's objects and open uploads (sm.h, sv_sm_digest), VERSION
                                = the primary index it stands at (a standby's cursor, a
                                primary's or fenced site's applied index): two sites' digests
                                at one VERSION are equal when they hold the same */
    SV_MSG_CHUNK_FETCH = 64, /* node <-> node, and from the peer site's nodes (a
                                re-seeded standby copies the chunks from the primary) */
    SV_MSG_RAFT = 65,        /* node <-> node: body by raftwire.h, not by this file */
    SV_MSG_MAP_GET = 66,     /* node <-> node: the sender's map (DATA: map.h's encoding) */
    SV_MSG_CONF = 67,        /* node <-> node: to a shard's leader: SHARD, NODE, FLAGS = change
                                (0 query, 1 add learner, 2 promote, 3 remove); answer: FLAGS =
                                NODE's role in the latest configuration (0 absent, 1 voter,
                                2 learner) + 4 when that configuration is committed,
                                VERSION = NODE's match index, SIZE = the commit index */
    SV_MSG_JOIN = 68,        /* node -> meta leader: a new node (NODE, ZONE, ADDR; its
                                certificate names NODE) asks to be added to the map. Answer
                                once recorded: EPOCH; then it reads the map with MAP_GET */
    SV_MSG_HEARTBEAT = 69,   /* node -> meta leader, every second: NODE, SIZE (bytes stored),
                                FREE (disk free), ITEMS per group hosted: ID (group), ROLE
                                (leader|follower|learner|candidate), TERM, APPLIED, COMMIT,
                                COMPLETE (1: holds every chunk its records claim), LEFT
                                (chunks still to copy), LEADER (the group's leader as known) */
    SV_MSG_DR_PULL = 70,     /* standby site -> primary site's shard leader (a node
                                certificate of the peer site): SHARD, VERSION = the index to
                                ship after (the standby's cursor, or the last entry of the
                                batches it has in flight), UPLOAD = the cursor it has applied
                                (the primary keeps its log from there). Answer: DATA = the
                                committed entries after VERSION (dr.c's batch encoding, at most
                                SV_MSG_DATA_MAX bytes), VERSION = the primary's commit index,
                                MTIME_MS = the closed time (every entry of the shard the
                                primary committed before it is in the batch or before it;
                                absent when the batch stops short); NOT_FOUND when VERSION is
                                below the primary's log (a reseed is needed) */
    SV_MSG_DR_SEED = 71,     /* standby site -> primary site's shard leader: SHARD, VERSION = the
                                image's index (0: a new image), UPLOAD = the byte offset to
                                answer from. Answer: DATA = whole records of the shard's image
                                (sm.h's snapshot format, at most about SV_MSG_CHUNK_MAX bytes),
                                VERSION = the image's index, SIZE = the image's length, UPLOAD
                                = the offset after DATA, MTIME_MS = the closed time; NOT_FOUND
                                when the image asked for is gone (ask for a new one) */
    SV_MSG_RESP = 0x100,     /* OR-ed into a request type for its response */
};

/* Result codes carried in SV_F_STATUS (0 = OK). Stable: the CLI maps them
 * to exit codes and the client library to its errors. */
enum sv_status {
    SV_ST_OK = 0,
    SV_ST_NOT_FOUND = 1,        /* no such object (or version gone) */
    SV_ST_VERSION_CONFLICT = 2, /* if-version did not match */
    SV_ST_NOT_LEADER = 3,       /* ask LEADER / ADDR (may be absent when unknown) */
    SV_ST_UNAVAILABLE = 4,      /* no leader, no quorum, shutting down: retry later */
    SV_ST_BAD_REQUEST = 5,      /* missing or invalid field */
    SV_ST_TOO_BIG = 6,          /* a size over its limit */
    SV_ST_DENIED = 7,           /* not authenticated or not allowed */
    SV_ST_NO_SPACE = 8,         /* a disk is full: nothing was written */
    SV_ST_INTERNAL = 9,         /* a bug or an I/O error; see SV_F_MSG */
    SV_ST_CORRUPT = 10,         /* data failed verification and no healthy copy was found */
    SV_ST_READ_ONLY = 11,       /* this site takes no writes (a standby, or fenced): MSG names
                                   the active site */
    SV_ST_LAST_
};
/* Static name of a status ("ok", "not found", ...; "unknown status" otherwise). */
const char *sv_status_name(int status);

/* Field ids (map keys) and the bit of each in sv_msg.fields. */
enum sv_field {
    SV_F_STATUS = 0,       /* int */
    SV_F_MSG = 1,          /* str: human-readable detail */
    SV_F_TENANT = 2,       /* uint */
    SV_F_BUCKET = 3,       /* str */
    SV_F_KEY = 4,          /* str */
    SV_F_IF_VERSION = 5,   /* uint: 0 = must not exist, N = current version must be N */
    SV_F_SESSION = 6,      /* uint */
    SV_F_SEQ = 7,          /* uint */
    SV_F_ACK_BELOW = 8,    /* uint */
    SV_F_UPLOAD = 9,       /* uint */
    SV_F_CHUNK = 10,       /* uint: chunk index */
    SV_F_N_CHUNKS = 11,    /* uint */
    SV_F_VERSION = 12,     /* uint */
    SV_F_SIZE = 13,        /* uint */
    SV_F_SHA256 = 14,      /* bin, exactly 32 bytes */
    SV_F_MTIME_MS = 15,    /* uint: ms since the epoch */
    SV_F_DATA = 16,        /* bin, at most SV_MSG_DATA_MAX */
    SV_F_CONSISTENCY = 17, /* uint: 0 linearizable, 1 stale */
    SV_F_PREFIX = 18,      /* str */
    SV_F_START_AFTER = 19, /* str */
    SV_F_LIMIT = 20,       /* uint */
    SV_F_SHARD = 21,       /* uint */
    SV_F_LEADER = 22,      /* uint: node id */
    SV_F_ADDR = 23,        /* str: host:port */
    SV_F_NODE = 24,        /* uint: node id */
    SV_F_ZONE = 25,        /* str */
    SV_F_N_SHARDS = 26,    /* uint */
    SV_F_FLAGS = 27,       /* uint */
    SV_F_ITEMS = 28,       /* array of item maps (enum sv_item_field) */
    SV_F_EPOCH = 29,       /* uint: the cluster map's epoch (MAP, STATUS, NOT_LEADER) */
    SV_F_METRICS = 30,     /* str: host:port of the node's plain-HTTP /metrics (STATUS) */
    SV_F_FREE = 31,        /* uint: free bytes of a disk (HEARTBEAT); the last bit of fields */
    SV_F_COUNT_
};

/* Field ids inside one item map. */
enum sv_item_field {
    SV_I_KEY = 0,         /* str */
    SV_I_SIZE = 1,        /* uint */
    SV_I_VERSION = 2,     /* uint */
    SV_I_MTIME_MS = 3,    /* uint */
    SV_I_ID = 4,          /* uint: node id or shard id */
    SV_I_ADDR = 5,        /* str */
    SV_I_ZONE = 6,        /* str */
    SV_I_STATE = 7,       /* str: "up", "down", ... */
    SV_I_ROLE = 8,        /* str: "leader", "follower", ... */
    SV_I_LEADER = 9,      /* uint */
    SV_I_TERM = 10,       /* uint */
    SV_I_COMMIT = 11,     /* uint */
    SV_I_APPLIED = 12,    /* uint */
    SV_I_REPLICAS = 13,   /* array of uint node ids, at most SV_MSG_REPLICAS_MAX */
    SV_I_BYTES = 14,      /* uint */
    SV_I_FREE = 15,       /* uint: disk free bytes */
    SV_I_REASON = 16,     /* str: a scheduler reason code (no-zone-available, ...) */
    SV_I_TEXT = 17,       /* str: a sentence */
    SV_I_COMPLETE = 18,   /* uint: 1 when a replica holds every chunk */
    SV_I_LEFT = 19,       /* uint: chunks still to copy */
    SV_I_N_REPLICAS = 20, /* uint */
    SV_I_N_LEADERS = 21,  /* uint */
    SV_I_AGE_MS = 22,     /* uint: ms since a node's last heartbeat */
    SV_I_BUCKET = 23,     /* str */
    SV_I_SHA256 = 24,     /* 32 bytes */
    SV_I_INDEX = 25,      /* uint: the Raft index that wrote an object */
    SV_I_CUT = 26,        /* uint: a promoted site's shard: the primary index it was cut at */
    SV_I_TENANT = 27,     /* uint */
    SV_I_COUNT_
};

/* A byte string. In a decoded message it points into the frame body
 * (borrowed: valid as long as the body is); when encoding, the caller's. */
struct sv_bytes {
    const uint8_t *p;
    size_t len;
};

struct sv_item {
    uint32_t fields; /* bit (1u << SV_I_*) set for each present field */
    struct sv_bytes key, addr, zone, state, role, reason, text, bucket;
    uint64_t size, version, mtime_ms, id, leader, term, commit, applied, bytes, free, complete,
        left, n_replicas_count, n_leaders, age_ms, index, cut, tenant;
    uint8_t sha256[32];
    uint32_t n_replicas;
    uint64_t replicas[SV_MSG_REPLICAS_MAX];
};

struct sv_msg {
    uint32_t fields; /* bit (1u << SV_F_*) set for each present field */
    int64_t status;
    struct sv_bytes msg, bucket, key, prefix, start_after, addr, zone, data, metrics;
    uint64_t tenant, if_version, session, seq, ack_below, upload, chunk, n_chunks, version, size,
        mtime_ms, consistency, limit, shard, leader, node, n_shards, flags, epoch, free;
    uint8_t sha256[32];
    uint32_t n_items;
    struct sv_item *items; /* decode: malloc'd, freed by sv_msg_free; encode: borrowed */
};

/* Field presence helpers. */
#define SV_MSG_HAS(m, f) (((m)->fields >> (f)) & 1u)
#define SV_MSG_SET(m, f) ((m)->fields |= 1u << (f))
#define SV_ITEM_HAS(it, f) (((it)->fields >> (f)) & 1u)
#define SV_ITEM_SET(it, f) ((it)->fields |= 1u << (f))

/* Domain errors of the codec (negative): -2100 .. -2051, proto's range of the
 * node's error space (node/src/errors.h). */
enum sv_proto_err {
    SV_PROTO_E_MALFORMED = -2100, /* not the map described above */
    SV_PROTO_E_TOO_BIG,           /* a string, binary or item count over its limit */
    SV_PROTO_E_NOMEM,
    SV_PROTO_E_LAST_
};
const char *sv_proto_strerror(int err);

/* Encode the present fields of m (borrowed) into a new malloc'd body
 * (*out, *out_len; the caller frees it). Fields whose bit is clear are not
 * written. Returns 0, SV_PROTO_E_TOO_BIG (a limit above), SV_PROTO_E_NOMEM. */
int sv_msg_encode(const struct sv_msg *m, uint8_t **out, size_t *out_len);

/* Decode body[0..len) into *m (caller-owned; zeroed first). Byte strings in
 * *m point into body (borrowed); m->items is malloc'd: release it with
 * sv_msg_free, also after a failure. Returns 0, SV_PROTO_E_MALFORMED,
 * SV_PROTO_E_TOO_BIG or SV_PROTO_E_NOMEM; errmsg (may be NULL) says which
 * field was wrong. */
int sv_msg_decode(const uint8_t *body, size_t len, struct sv_msg *m, char *errmsg, size_t errlen);

/* Free what sv_msg_decode allocated in *m (not m itself). */
void sv_msg_free(struct sv_msg *m);

/* Shard of an object: the 64-bit FNV-1a hash of tenant (8 bytes little
 * endian), bucket, a 0 byte and key, mixed by the MurmurHash3 64-bit
 * finalizer, mapped onto n_shards equal ranges: (mix(hash) * n_shards) >> 64.
 * n_shards > 0. (Without the mix, FNV-1a's last bytes barely reach the high
 * bits: keys that differ only at the end, "obj-1", "obj-2"..., all fell in
 * one shard.) */
uint64_t sv_object_hash(uint64_t tenant, const void *bucket, size_t bucket_len, const void *key,
                        size_t key_len);
uint32_t sv_shard_of(uint64_t hash, uint32_t n_shards);

/* A bucket name is 1..63 bytes of [a-z0-9.-], starting and ending with a
 * letter or digit; a key is 1..SV_MSG_NAME_MAX bytes with no NUL byte.
 * Return true when valid. */
bool sv_bucket_valid(const void *bucket, size_t len);
bool sv_key_valid(const void *key, size_t len);

#endif
