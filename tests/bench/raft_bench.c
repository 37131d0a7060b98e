/* raft-bench: throughput of the Raft library on a 3-node in-memory cluster, with full checks. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "shardvault/raft.h"

/* Limits of the benchmark itself. */
enum {
    NODES = 3,
    ENTRY_SIZE_MAX = 1u << 20,         /* --size */
    BATCH_MAX = 1u << 16,              /* --batch */
    UNCOMMITTED_MAX = 1u << 16,        /* proposals the leader may hold uncommitted */
    UNCOMMITTED_BYTES_MAX = 16u << 20, /* ... and their payload bytes (beyond one batch) */
    COMPACT_EVERY = 1u << 15,          /* applied entries between two snapshots */
    COMPACT_BYTES = 16u << 20,         /* ... or applied payload bytes, whichever comes first */
    TRAILING = 1u << 13,               /* entries a snapshot leaves for lagging followers */
    TRAILING_BYTES = 4u << 20,         /* ... at most this many payload bytes of them */
    TRAILING_MIN = 1u << 10,           /* ... but never fewer entries than this */
    TICK_ROUNDS = 1000,                /* rounds between two ticks while measuring */
    ELECTION_TICKS_MAX = 10000,        /* ticks allowed to elect a leader */
    STALL_ROUNDS_MAX = 1u << 20,       /* rounds without any apply before giving up */
    IMAGE_LEN = 16,                    /* snapshot image: applied count + content hash */
    TARGET_ENTRIES_PER_S = 1000000     /* the project's throughput target */
};
_Static_assert(BATCH_MAX <= UNCOMMITTED_MAX, "one batch must fit the uncommitted window");
_Static_assert(TRAILING < COMPACT_EVERY, "a snapshot must drop something");
_Static_assert(TRAILING_MIN <= TRAILING, "trailing bounds are ordered");
_Static_assert(TRAILING_BYTES < COMPACT_BYTES, "a snapshot must drop something");
_Static_assert((uint64_t)ENTRY_SIZE_MAX <= (uint64_t)SV_RAFT_ENTRY_BYTES_MAX,
               "entries must be proposable");

struct config {
    uint64_t entries;
    uint32_t size;
    uint32_t batch;
    uint32_t inflight;
    bool copy; /* deliver through sv_raft_msg_copy queues instead of stepping directly */
};

/* One persisted entry; its payload lives in disk.bytes at absolute offset off. */
struct disk_ent {
    uint64_t term;
    uint64_t index;
    uint64_t off;
    uint32_t len;
    uint8_t type;
};

/* A node's "disk": hard state, the last snapshot and the log after it, all in memory. */
struct disk {
    struct sv_raft_hard_state hs;
    uint64_t snap_index;
    uint8_t snap_image[IMAGE_LEN];
    struct disk_ent *ents; /* entries first_index .. first_index + n - 1 */
    size_t n;
    size_t cap;
    uint64_t first_index;
    uint8_t *bytes; /* payloads; bytes[0] is absolute offset bytes_base */
    size_t n_bytes;
    size_t cap_bytes;
    uint64_t bytes_base;
};

struct inbox {
    struct sv_raft_msg *msgs;
    size_t n;
    size_t cap;
};

struct node {
    sv_raft_id id;
    struct sv_raft *r;
    struct disk disk;
    struct inbox inbox;
    /* State machine: the benchmark's entries applied so far, in order. */
    uint64_t applied_index;
    uint64_t applied_seq; /* NORMAL entries applied */
    uint64_t hash;        /* over every applied entry: index, term, type, payload */
    uint64_t snaps;       /* snapshots taken */
};

struct bench {
    struct config cfg;
    struct node nodes[NODES];
    uint64_t first_prop_index; /* log index of proposal 0 */
    uint8_t *expect;           /* scratch: the payload an entry must carry */
    uint64_t msgs;             /* messages delivered */
    uint64_t rounds;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: raft-bench [--entries N] [--size BYTES] [--batch K] [--inflight M]\n"
               "                  [--copy] [--help]\n"
               "\n"
               "Runs a 3-node in-memory Raft cluster: elects a leader, proposes N entries of\n"
               "BYTES bytes, K proposals per round of ready processing, until every entry is\n"
               "committed and applied on all nodes; checks order and content; prints throughput.\n"
               "\n"
               "  --entries N    entries to propose (default 2000000)\n"
               "  --size BYTES   payload of each entry, 1..1048576 (default 16)\n"
               "  --batch K      proposals per round, 1..65536 (default 256)\n"
               "  --inflight M   append messages in flight per follower, 1..256 (default 64)\n"
               "  --copy         deliver messages through sv_raft_msg_copy queues\n"
               "                 (default: step the receiver directly with the sender's message)\n"
               "\n"
               "Exit status: 0 when every entry was verified on every node, 1 otherwise,\n"
               "2 on a usage error.\n");
}

static int parse_u64(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (s == NULL) {
        fprintf(stderr, "raft-bench: %s needs a value\n", name);
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "raft-bench: %s: expected an integer in [%" PRIu64 ", %" PRIu64 "]\n", name,
                lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0 to run, 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct config *cfg)
{
    cfg->entries = 2000000;
    cfg->size = 16;
    cfg->batch = 256;
    cfg->inflight = 64;
    cfg->copy = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return 1;
        } else if (strcmp(a, "--copy") == 0) {
            cfg->copy = true;
        } else if (strcmp(a, "--entries") == 0) {
            if (parse_u64(a, v, 1, UINT64_MAX / 2, &x) != 0) {
                return -1;
            }
            cfg->entries = x;
            i++;
        } else if (strcmp(a, "--size") == 0) {
            if (parse_u64(a, v, 1, ENTRY_SIZE_MAX, &x) != 0) {
                return -1;
            }
            cfg->size = (uint32_t)x;
            i++;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_u64(a, v, 1, BATCH_MAX, &x) != 0) {
                return -1;
            }
            cfg->batch = (uint32_t)x;
            i++;
        } else if (strcmp(a, "--inflight") == 0) {
            if (parse_u64(a, v, 1, SV_RAFT_INFLIGHT_MAX, &x) != 0) {
                return -1;
            }
            cfg->inflight = (uint32_t)x;
            i++;
        } else {
            fprintf(stderr, "raft-bench: unknown argument '%s'\n", a);
            return -1;
        }
    }
    return 0;
}

/* Payload of proposal seq: its number (little endian), then bytes derived from it. */
static void fill_payload(uint8_t *buf, uint32_t size, uint64_t seq)
{
    uint32_t j = 0;
    for (; j < size && j < 8; j++) {
        buf[j] = (uint8_t)(seq >> (8 * j));
    }
    for (; j < size; j++) {
        buf[j] = (uint8_t)(seq * 31 + j);
    }
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_entry(uint64_t h, const struct sv_raft_entry *e)
{
    h = mix(h, e->index);
    h = mix(h, e->term);
    h = mix(h, ((uint64_t)e->type << 32) | e->len);
    uint32_t i = 0;
    for (; i + 8 <= e->len; i += 8) {
        uint64_t w;
        memcpy(&w, e->data + i, 8);
        h = mix(h, w);
    }
    for (; i < e->len; i++) {
        h = mix(h, e->data[i]);
    }
    return h;
}

static int grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap : 64;
    while (ncap < want) {
        ncap *= 2;
    }
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL) {
        return -1;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Persist ents: they first truncate the stored log from ents[0].index on. */
static int disk_append(struct disk *d, const struct sv_raft_entry *ents, size_t n)
{
    uint64_t first = ents[0].index;
    if (d->n == 0) {
        d->first_index = first;
        d->n_bytes = 0;
    } else if (first < d->first_index + d->n) {
        if (first < d->first_index) {
            fprintf(stderr,
                    "raft-bench: truncation at %" PRIu64 " below the disk log (%" PRIu64 ")\n",
                    first, d->first_index);
            return -1;
        }
        size_t keep = (size_t)(first - d->first_index);
        d->n_bytes = (size_t)(d->ents[keep].off - d->bytes_base);
        d->n = keep;
    }
    if (first != d->first_index + d->n) {
        fprintf(stderr, "raft-bench: entries at %" PRIu64 " leave a hole after %" PRIu64 "\n",
                first, d->first_index + d->n - 1);
        return -1;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += ents[i].len;
    }
    if (grow((void **)&d->ents, &d->cap, d->n + n, sizeof(*d->ents)) != 0 ||
        grow((void **)&d->bytes, &d->cap_bytes, d->n_bytes + bytes, 1) != 0) {
        fprintf(stderr, "raft-bench: out of memory persisting entries\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sv_raft_entry *e = &ents[i];
        struct disk_ent *de = &d->ents[d->n++];
        de->term = e->term;
        de->index = e->index;
        de->type = e->type;
        de->len = e->len;
        de->off = d->bytes_base + d->n_bytes;
        if (e->len > 0) {
            memcpy(d->bytes + d->n_bytes, e->data, e->len);
        }
        d->n_bytes += e->len;
    }
    return 0;
}

/* Drop persisted entries up to and including index: a snapshot covers them. */
static void disk_compact(struct disk *d, uint64_t index)
{
    if (d->n == 0 || index < d->first_index) {
        return;
    }
    size_t drop = (size_t)(index - d->first_index + 1);
    if (drop >= d->n) {
        d->bytes_base += d->n_bytes;
        d->n = 0;
        d->n_bytes = 0;
        d->first_index = index + 1;
        return;
    }
    size_t drop_bytes = (size_t)(d->ents[drop].off - d->bytes_base);
    memmove(d->ents, d->ents + drop, (d->n - drop) * sizeof(*d->ents));
    memmove(d->bytes, d->bytes + drop_bytes, d->n_bytes - drop_bytes);
    d->n -= drop;
    d->n_bytes -= drop_bytes;
    d->bytes_base += drop_bytes;
    d->first_index = index + 1;
}

static void disk_free(struct disk *d)
{
    free(d->ents);
    free(d->bytes);
    memset(d, 0, sizeof(*d));
}

static struct node *node_by_id(struct bench *b, sv_raft_id id)
{
    for (int i = 0; i < NODES; i++) {
        if (b->nodes[i].id == id) {
            return &b->nodes[i];
        }
    }
    return NULL;
}

static int deliver(struct bench *b, const struct sv_raft_msg *m)
{
    struct node *to = node_by_id(b, m->to);
    if (to == NULL) {
        fprintf(stderr, "raft-bench: message to unknown server %" PRIu64 "\n", m->to);
        return -1;
    }
    b->msgs++;
    if (!b->cfg.copy) {
        /* The receiver is not between ready and advance, so it may step now;
         * sv_raft_step copies what it keeps. */
        int rv = sv_raft_step(to->r, m);
        if (rv != 0) {
            fprintf(stderr, "raft-bench: step %s to %" PRIu64 ": %s\n",
                    sv_raft_msg_type_name(m->type), m->to, sv_raft_strerror(rv));
            return -1;
        }
        return 0;
    }
    struct inbox *in = &to->inbox;
    if (grow((void **)&in->msgs, &in->cap, in->n + 1, sizeof(*in->msgs)) != 0 ||
        sv_raft_msg_copy(&in->msgs[in->n], m) != 0) {
        fprintf(stderr, "raft-bench: out of memory copying a message\n");
        return -1;
    }
    in->n++;
    return 0;
}

static int drain_inbox(struct node *n)
{
    int rv = 0;
    for (size_t i = 0; i < n->inbox.n; i++) {
        struct sv_raft_msg *m = &n->inbox.msgs[i];
        int err = rv == 0 ? sv_raft_step(n->r, m) : 0;
        if (err != 0) {
            fprintf(stderr, "raft-bench: step %s to %" PRIu64 ": %s\n",
                    sv_raft_msg_type_name(m->type), m->to, sv_raft_strerror(err));
            rv = -1;
        }
        sv_raft_msg_free(m);
    }
    n->inbox.n = 0;
    return rv;
}

/* Apply committed entries to the node's state machine, checking that they
 * arrive in index order and that proposal k carries payload k at index
 * first_prop_index + k. */
static int apply(struct bench *b, struct node *n, const struct sv_raft_entry *ents, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct sv_raft_entry *e = &ents[i];
        if (e->index != n->applied_index + 1) {
            fprintf(stderr, "raft-bench: node %" PRIu64 " applied %" PRIu64 " after %" PRIu64 "\n",
                    n->id, e->index, n->applied_index);
            return -1;
        }
        if (e->type == SV_RAFT_ENTRY_NORMAL) {
            uint64_t seq = n->applied_seq;
            bool ok = b->first_prop_index != 0 && seq < b->cfg.entries &&
                      e->index == b->first_prop_index + seq && e->len == b->cfg.size;
            if (ok) {
                fill_payload(b->expect, b->cfg.size, seq);
                ok = memcmp(e->data, b->expect, b->cfg.size) == 0;
            }
            if (!ok) {
                fprintf(stderr,
                        "raft-bench: node %" PRIu64 " entry %" PRIu64 " is not proposal %" PRIu64
                        " as proposed\n",
                        n->id, e->index, seq);
                return -1;
            }
            n->applied_seq++;
        }
        n->hash = hash_entry(n->hash, e);
        n->applied_index = e->index;
    }
    return 0;
}

/* Snapshot the state machine and compact the raft log and the disk log, so
 * that memory stays bounded by COMPACT_* and TRAILING_* however long the run. */
static int maybe_compact(const struct config *cfg, struct node *n)
{
    struct disk *d = &n->disk;
    uint64_t since = n->applied_index - d->snap_index;
    if (since < COMPACT_EVERY && since * cfg->size < COMPACT_BYTES) {
        return 0;
    }
    uint64_t trailing = TRAILING_BYTES / cfg->size;
    trailing = trailing > TRAILING ? TRAILING : trailing < TRAILING_MIN ? TRAILING_MIN : trailing;
    uint8_t image[IMAGE_LEN];
    memcpy(image, &n->applied_seq, 8);
    memcpy(image + 8, &n->hash, 8);
    int rv = sv_raft_snapshot(n->r, n->applied_index, image, sizeof(image), trailing);
    if (rv != 0) {
        fprintf(stderr, "raft-bench: node %" PRIu64 " snapshot at %" PRIu64 ": %s\n", n->id,
                n->applied_index, sv_raft_strerror(rv));
        return -1;
    }
    d->snap_index = n->applied_index;
    memcpy(d->snap_image, image, sizeof(image));
    disk_compact(d, n->applied_index);
    n->snaps++;
    return 0;
}

/* One round of ready processing for a node, in the order of the contract in
 * raft.h: early messages, persist, other messages, apply, advance. */
static int node_process(struct bench *b, struct node *n)
{
    if (b->cfg.copy && drain_inbox(n) != 0) {
        return -1;
    }
    if (!sv_raft_has_ready(n->r)) {
        return 0;
    }
    struct sv_raft_ready rd;
    sv_raft_ready(n->r, &rd);
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (sv_raft_msg_may_send_early(&rd.msgs[i]) && deliver(b, &rd.msgs[i]) != 0) {
            return -1;
        }
    }
    if (rd.snapshot != NULL) {
        /* A fault-free cluster with TRAILING entries kept never needs one:
         * it would mean entries were not applied one by one on this node. */
        fprintf(stderr, "raft-bench: node %" PRIu64 " was sent a snapshot at %" PRIu64 "\n", n->id,
                rd.snapshot->meta.index);
        return -1;
    }
    if (rd.n_entries > 0 && disk_append(&n->disk, rd.entries, rd.n_entries) != 0) {
        return -1;
    }
    if (rd.hs_changed) {
        n->disk.hs = rd.hs;
    }
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (!sv_raft_msg_may_send_early(&rd.msgs[i]) && deliver(b, &rd.msgs[i]) != 0) {
            return -1;
        }
    }
    if (apply(b, n, rd.committed, rd.n_committed) != 0) {
        return -1;
    }
    sv_raft_advance(n->r, &rd);
    return maybe_compact(&b->cfg, n);
}

static int process_all(struct bench *b)
{
    for (int i = 0; i < NODES; i++) {
        if (node_process(b, &b->nodes[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

static void tick_all(struct bench *b)
{
    for (int i = 0; i < NODES; i++) {
        sv_raft_tick(b->nodes[i].r);
    }
}

static struct node *find_leader(struct bench *b)
{
    for (int i = 0; i < NODES; i++) {
        struct sv_raft_status st;
        sv_raft_status(b->nodes[i].r, &st);
        if (st.role == SV_RAFT_LEADER) {
            return &b->nodes[i];
        }
    }
    return NULL;
}

static int cluster_start(struct bench *b)
{
    struct sv_raft_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.n = NODES;
    for (int i = 0; i < NODES; i++) {
        conf.servers[i].id = (sv_raft_id)(i + 1);
        conf.servers[i].role = SV_RAFT_VOTER;
    }
    for (int i = 0; i < NODES; i++) {
        struct node *n = &b->nodes[i];
        n->id = (sv_raft_id)(i + 1);
        struct sv_raft_options opts;
        sv_raft_options_default(&opts, n->id);
        opts.max_inflight = b->cfg.inflight;
        int rv = sv_raft_create(&opts, NULL, &n->r);
        if (rv == 0) {
            rv = sv_raft_bootstrap(n->r, &conf);
        }
        if (rv != 0) {
            fprintf(stderr, "raft-bench: node %" PRIu64 ": %s\n", n->id, sv_raft_strerror(rv));
            return -1;
        }
    }
    return 0;
}

/* Tick until a leader is elected, then until its first entry is applied everywhere. */
static struct node *elect(struct bench *b)
{
    for (int t = 0; t < ELECTION_TICKS_MAX; t++) {
        if (process_all(b) != 0) {
            return NULL;
        }
        struct node *l = find_leader(b);
        if (l != NULL) {
            struct sv_raft_status st;
            sv_raft_status(l->r, &st);
            bool caught_up = true;
            for (int i = 0; i < NODES; i++) {
                caught_up = caught_up && b->nodes[i].applied_index == st.last_index;
            }
            if (caught_up && st.commit == st.last_index) {
                return l;
            }
        }
        tick_all(b);
    }
    fprintf(stderr, "raft-bench: no leader after %d ticks\n", (int)ELECTION_TICKS_MAX);
    return NULL;
}

static bool all_applied(const struct bench *b)
{
    for (int i = 0; i < NODES; i++) {
        if (b->nodes[i].applied_seq < b->cfg.entries) {
            return false;
        }
    }
    return true;
}

/* Propose every entry in batches and drive the cluster until all are applied. */
static int run(struct bench *b, struct node *leader, uint8_t *payload)
{
    uint64_t next_seq = 0;
    uint64_t last_progress = 0, progress_mark = 0;
    while (!all_applied(b)) {
        uint64_t uncommitted =
            next_seq == 0 ? 0 : b->first_prop_index + next_seq - 1 - leader->applied_index;
        if (next_seq < b->cfg.entries && uncommitted < UNCOMMITTED_MAX &&
            (uncommitted == 0 || uncommitted * b->cfg.size < UNCOMMITTED_BYTES_MAX)) {
            uint64_t k = b->cfg.entries - next_seq;
            if (k > b->cfg.batch) {
                k = b->cfg.batch;
            }
            for (uint64_t i = 0; i < k; i++, next_seq++) {
                uint64_t index;
                fill_payload(payload, b->cfg.size, next_seq);
                int rv = sv_raft_propose(leader->r, payload, b->cfg.size, &index);
                if (rv != 0) {
                    fprintf(stderr, "raft-bench: propose %" PRIu64 ": %s\n", next_seq,
                            sv_raft_strerror(rv));
                    return -1;
                }
                if (next_seq == 0) {
                    b->first_prop_index = index;
                } else if (index != b->first_prop_index + next_seq) {
                    fprintf(stderr, "raft-bench: proposal %" PRIu64 " got index %" PRIu64 "\n",
                            next_seq, index);
                    return -1;
                }
            }
        }
        if (process_all(b) != 0) {
            return -1;
        }
        b->rounds++;
        if (b->rounds % TICK_ROUNDS == 0) {
            tick_all(b);
        }
        uint64_t mark = 0;
        for (int i = 0; i < NODES; i++) {
            mark += b->nodes[i].applied_index;
        }
        if (mark != progress_mark) {
            progress_mark = mark;
            last_progress = b->rounds;
        } else if (b->rounds - last_progress > STALL_ROUNDS_MAX) {
            fprintf(stderr, "raft-bench: no progress in %d rounds\n", (int)STALL_ROUNDS_MAX);
            return -1;
        }
    }
    return 0;
}

/* Every node applied the same entries with the same content, and the disk logs agree. */
static int verify(struct bench *b, const struct node *leader, uint64_t leader_term)
{
    struct sv_raft_status st;
    sv_raft_status(leader->r, &st);
    if (st.role != SV_RAFT_LEADER || st.term != leader_term) {
        fprintf(stderr,
                "raft-bench: leadership changed during the run (term %" PRIu64 " -> %" PRIu64 ")\n",
                leader_term, st.term);
        return -1;
    }
    const struct node *n0 = &b->nodes[0];
    for (int i = 0; i < NODES; i++) {
        const struct node *n = &b->nodes[i];
        if (n->applied_seq != b->cfg.entries ||
            n->applied_index != b->first_prop_index + b->cfg.entries - 1) {
            fprintf(stderr,
                    "raft-bench: node %" PRIu64 " applied %" PRIu64 " entries up to %" PRIu64 "\n",
                    n->id, n->applied_seq, n->applied_index);
            return -1;
        }
        if (n->hash != n0->hash) {
            fprintf(stderr, "raft-bench: node %" PRIu64 " state differs from node %" PRIu64 "\n",
                    n->id, n0->id);
            return -1;
        }
        const struct disk *d = &n->disk;
        uint64_t disk_last = d->n > 0 ? d->first_index + d->n - 1 : d->snap_index;
        if (disk_last != n->applied_index || d->hs.commit < n->applied_index ||
            d->hs.term != leader_term) {
            fprintf(stderr,
                    "raft-bench: node %" PRIu64 " disk holds up to %" PRIu64 " (commit %" PRIu64
                    ", term %" PRIu64 ")\n",
                    n->id, disk_last, d->hs.commit, d->hs.term);
            return -1;
        }
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cluster_free(struct bench *b)
{
    for (int i = 0; i < NODES; i++) {
        struct node *n = &b->nodes[i];
        for (size_t j = 0; j < n->inbox.n; j++) {
            sv_raft_msg_free(&n->inbox.msgs[j]);
        }
        free(n->inbox.msgs);
        disk_free(&n->disk);
        sv_raft_destroy(n->r);
    }
}

int main(int argc, char **argv)
{
    struct bench b;
    memset(&b, 0, sizeof(b));
    int pa = parse_args(argc, argv, &b.cfg);
    if (pa != 0) {
        usage(pa > 0 ? stdout : stderr);
        return pa > 0 ? 0 : 2;
    }
    int status = 1;
    uint8_t *payload = malloc(b.cfg.size);
    b.expect = malloc(b.cfg.size);
    if (payload == NULL || b.expect == NULL) {
        fprintf(stderr, "raft-bench: out of memory\n");
        goto err_after_buffers;
    }
    if (cluster_start(&b) != 0) {
        goto err_after_cluster;
    }
    struct node *leader = elect(&b);
    if (leader == NULL) {
        goto err_after_cluster;
    }
    struct sv_raft_status st;
    sv_raft_status(leader->r, &st);
    uint64_t term = st.term;

    double t0 = now_s();
    if (run(&b, leader, payload) != 0) {
        goto err_after_cluster;
    }
    double secs = now_s() - t0;
    if (verify(&b, leader, term) != 0) {
        goto err_after_cluster;
    }

    struct rusage ru;
    long rss_kib = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
    double eps = secs > 0 ? (double)b.cfg.entries / secs : 0;
    printf("raft-bench: %d nodes, leader %" PRIu64 " (term %" PRIu64 "), size %" PRIu32
           " B, batch %" PRIu32 ", inflight %" PRIu32 ", delivery %s\n",
           NODES, leader->id, term, b.cfg.size, b.cfg.batch, b.cfg.inflight,
           b.cfg.copy ? "copy" : "direct");
    printf("entries: %" PRIu64 "\n", b.cfg.entries);
    printf("seconds: %.3f\n", secs);
    printf("entries/s: %.0f\n", eps);
    printf("ns per entry: %.1f\n", secs * 1e9 / (double)b.cfg.entries);
    printf("ratio to 1M/s target: %.2fx\n", eps / TARGET_ENTRIES_PER_S);
    printf("rounds: %" PRIu64 ", messages: %" PRIu64 ", snapshots per node: %" PRIu64
           ", max RSS: %ld KiB\n",
           b.rounds, b.msgs, b.nodes[0].snaps, rss_kib);
    printf("verified: %" PRIu64 " entries committed and applied in order on all %d nodes, "
           "identical content\n",
           b.cfg.entries, NODES);
    status = 0;

err_after_cluster:
    cluster_free(&b);
err_after_buffers:
    free(b.expect);
    free(payload);
    return status;
}
