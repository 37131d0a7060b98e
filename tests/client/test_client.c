/* client-test: libshardvault against an in-process fake server: two TLS
 * listeners ("nodes") speaking svwire + proto, with objects in memory and
 * knobs for redirects, UNAVAILABLE bursts, dropped answers, out-of-order
 * chunk answers, corrupted digests and stalls; and two more, a second
 * disaster-recovery site with its own map over the same objects.
 * With --svctl PATH, svctl is also run against the fake server.
 * Usage: client-test [--svctl PATH] [NAME...] (no name: every test). Exit 1 on any failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "client_int.h"
#include "proto.h"
#include "shardvault/client.h"
#include "testcerts.h"
#include "tls.h"
#include "wire.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

enum {
    N_NODES = 2, /* per site */
    SITES = 2,   /* site A (index 0): every test's; site B: test dr_follow's */
    N_SHARDS = 4,
    MiB = 1 << 20,
    UP_CHUNKS_MAX = 64,
    BUF = 64 * 1024,
};

/* Which writes the fake answers READ_ONLY (a standby site; fenced midway). */
enum read_only {
    RO_NONE,
    RO_WRITES, /* PUT, PUT_BEGIN, PUT_CHUNK, PUT_COMMIT, DELETE */
    RO_CHUNKS, /* PUT_CHUNK only: the site was fenced during an upload */
    RO_COMMIT, /* PUT_COMMIT only: fenced once the chunks were in */
};

static char dir[SV_TESTCERTS_PATH_MAX];
static char ca_path[SV_TESTCERTS_PATH_MAX];

/* Fake server state. */

struct obj {
    struct obj *next;
    char bucket[64];
    char key[SV_MSG_NAME_MAX + 1];
    uint64_t version, mtime_ms;
    uint8_t *data;
    size_t len;
    uint8_t sha[32];
};

struct upload {
    struct upload *next;
    uint64_t id;
    uint8_t *chunks[UP_CHUNKS_MAX];
    size_t lens[UP_CHUNKS_MAX];
};

struct dedup {
    struct dedup *next;
    uint64_t session, seq, version;
    int64_t status;
};

struct sconn;

struct fake {
    pthread_mutex_t lock;
    struct sv_tls_ctx *tls;
    int lfd[SITES * N_NODES]; /* site s's node i at s * N_NODES + i */
    uint16_t port[SITES * N_NODES];
    pthread_t accept_thr[SITES * N_NODES];
    atomic_bool stop;
    struct sconn *conns;
    int dead_port; /* a port nobody listens on (node 3 when map_dead_node) */

    int leader[N_SHARDS];     /* node index that leads each shard */
    int map_leader[N_SHARDS]; /* what MAP says (may be stale) */
    bool map_dead_node;
    struct obj *objs;
    uint64_t next_version, next_upload;
    struct upload *ups;
    struct dedup *dd;

    int unavailable_left;
    int unavailable_chunks_left; /* PUT_CHUNK answers UNAVAILABLE this many times */
    int drop_chunk_left;         /* PUT_CHUNK stored, the server stops reading until the
                                  * client's window is shut, then closes unanswered */
    int rcvbuf;                  /* SO_RCVBUF of connections accepted from now on, 0: default */
    int flip_after_chunks;       /* leadership of the shard moves after this many chunks */
    bool always_unavailable;
    bool blackhole;
    int drop_after_write;
    bool reorder_chunks;
    bool corrupt_sha;
    int conflict_chunk_left; /* GET_CHUNK answers VERSION_CONFLICT this many times */
    int conflict_on_chunk;   /* GET_CHUNK of this index (> 0) always conflicts */

    /* The meta group (operator calls, SV_MSG_NODES .. SV_MSG_CLUSTER_SET). */
    int meta_leader;            /* node index that leads it; -1: none (UNAVAILABLE everywhere) */
    bool meta_addr_in_redirect; /* NOT_LEADER carries ADDR (else only LEADER) */
    bool meta_unknown;          /* answer as a node without a scheduler: BAD_REQUEST */
    bool health_known;
    const char *node_state[3]; /* NULL: "up" (node 3: "down") */
    uint64_t node_replicas[3];
    uint64_t node_bytes[3];
    int health_shard; /* a shard HEALTH reports as stuck, -1 none */
    uint64_t set_down, set_evict, set_auto, set_rate, set_moves, set_rebalance;
    int meta_not_leader;

    enum read_only read_only; /* site A's */

    /* Site B: its nodes answer MAP with themselves (the nodes of site A
     * with site A's), and serve the same objects, sessions and uploads (as
     * if everything were shipped). Requests are counted per site too, with
     * the session and seq of the last write. */
    enum read_only read_only_b;
    bool map_down_b; /* site B answers MAP UNAVAILABLE */
    bool map_roles;  /* MAP answers carry the site's role (standby when its writes are read-only) */
    int site_req[SITES][32];
    uint64_t site_session[SITES], site_seq[SITES];

    /* Disaster recovery (DR_STATUS): per node its site role (NULL: a node
     * without DR_STATUS, which answers BAD_REQUEST) and wall clock; per shard
     * what its leader reports. */
    const char *dr_role[N_NODES];
    uint64_t dr_clock_ms[N_NODES];
    uint64_t dr_frontier_ms[N_SHARDS]; /* 0: not known yet (absent, and no contact either) */
    const char *dr_state[N_SHARDS];    /* NULL: streaming */
    bool dr_unled[N_SHARDS];           /* no node reports leading it */
    bool dr_drop;                      /* DR_STATUS closes the connection unanswered */
    uint64_t dr_epoch[N_NODES];        /* the site epoch each node reports */
    /* DR_PROMOTE and DR_DEMOTE, to the meta leader: what the site becomes, and
     * how many DR_STATUS answers each node gives before it follows (-1: never). */
    bool dr_primary_answers; /* the primary answered lately: promote only with force */
    bool dr_no_epoch;        /* answer them without VERSION */
    uint64_t dr_cut_ms;      /* a promotion's answer: its cut (MTIME_MS), 0: none */
    int64_t dr_flags_seen;   /* FLAGS of the last DR_PROMOTE, -1 none */
    const char *dr_next_role;
    uint64_t dr_next_epoch;
    int dr_follow_after[N_NODES];
    int dr_follow_left[N_NODES];

    int n_req[32];
    int applied_writes;
    int not_leader;
    int shard_mismatch;
    int chunks_max_pending; /* most PUT_CHUNK requests seen before one was answered */
};

static struct fake F;

struct sconn {
    struct sconn *next;
    int node; /* within its site */
    int site;
    int fd;
    pthread_t thr;
    struct sv_tls_conn *tls;
    struct sv_wire_decoder dec;
    uint8_t *held; /* a held PUT_CHUNK answer (reorder_chunks) */
    size_t held_len;
    int pending_chunks;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    EVP_Digest(n ? p : "", n, out, NULL, EVP_sha256(), NULL);
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sc_flush(struct sconn *s)
{
    static _Thread_local uint8_t buf[BUF];
    while (sv_tls_pending_out_len(s->tls) > 0) {
        size_t n = 0;
        sv_tls_pending_out(s->tls, buf, sizeof(buf), &n);
        if (send_all(s->fd, buf, n) != 0)
            return -1;
    }
    return 0;
}

static int sc_write_frame(struct sconn *s, const uint8_t *frame, size_t len)
{
    for (;;) {
        int rc = sv_tls_write(s->tls, frame, len);
        if (rc == SV_TLS_E_BUFFER_FULL) {
            if (sc_flush(s) != 0)
                return -1;
            continue;
        }
        if (rc != 0)
            return -1;
        return sc_flush(s);
    }
}

/* Encode a response frame into *out (malloc'd). */
static void encode_resp(uint32_t type, uint64_t id, const struct sv_msg *m, uint8_t **out,
                        size_t *len)
{
    uint8_t *body = NULL;
    size_t blen = 0;
    if (sv_msg_encode(m, &body, &blen) != 0 ||
        sv_wire_encode(type | SV_MSG_RESP, id, body, blen, out, len) != 0) {
        fprintf(stderr, "fake: encode failed\n");
        abort();
    }
    free(body);
}

static struct obj *find_obj(struct sv_bytes b, struct sv_bytes k)
{
    for (struct obj *o = F.objs; o != NULL; o = o->next)
        if (strlen(o->bucket) == b.len && memcmp(o->bucket, b.p, b.len) == 0 &&
            strlen(o->key) == k.len && memcmp(o->key, k.p, k.len) == 0)
            return o;
    return NULL;
}

static void remove_obj(struct obj *x)
{
    for (struct obj **pp = &F.objs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            free(x->data);
            free(x);
            return;
        }
}

static struct dedup *find_dedup(const struct sv_msg *m)
{
    for (struct dedup *d = F.dd; d != NULL; d = d->next)
        if (d->session == m->session && d->seq == m->seq)
            return d;
    return NULL;
}

static void add_dedup(const struct sv_msg *m, int64_t status, uint64_t version)
{
    struct dedup *d = calloc(1, sizeof(*d));
    d->session = m->session;
    d->seq = m->seq;
    d->status = status;
    d->version = version;
    d->next = F.dd;
    F.dd = d;
}

static bool if_version_ok(const struct sv_msg *m, const struct obj *o)
{
    if (!SV_MSG_HAS(m, SV_F_IF_VERSION))
        return true;
    if (m->if_version == 0)
        return o == NULL;
    return o != NULL && o->version == m->if_version;
}

/* Store a new object version (takes data). */
static uint64_t store(const struct sv_msg *m, uint8_t *data, size_t len)
{
    struct obj *o = find_obj(m->bucket, m->key);
    if (o == NULL) {
        o = calloc(1, sizeof(*o));
        memcpy(o->bucket, m->bucket.p, m->bucket.len);
        memcpy(o->key, m->key.p, m->key.len);
        o->next = F.objs;
        F.objs = o;
    }
    free(o->data);
    o->data = data;
    o->len = len;
    sha256(data, len, o->sha);
    o->version = ++F.next_version;
    o->mtime_ms = 1700000000000ull + o->version;
    F.applied_writes++;
    return o->version;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp((*(struct obj *const *)a)->key, (*(struct obj *const *)b)->key);
}

static void fill_meta(struct sv_msg *r, const struct obj *o)
{
    r->version = o->version;
    r->size = o->len;
    memcpy(r->sha256, o->sha, 32);
    if (F.corrupt_sha)
        r->sha256[5] ^= 0x40;
    r->mtime_ms = o->mtime_ms;
    r->n_chunks = o->len == 0 ? 1 : (o->len + MiB - 1) / MiB;
    r->upload = 0;
    r->fields |= 1u << SV_F_VERSION | 1u << SV_F_SIZE | 1u << SV_F_SHA256 | 1u << SV_F_MTIME_MS |
                 1u << SV_F_N_CHUNKS | 1u << SV_F_UPLOAD;
}

/* Handle one request under F.lock. Returns 1 to answer with *r, 0 to stay
 * silent, -1 to answer and then close the connection. items (for MAP,
 * STATUS, LIST) is a caller buffer; keep is freed by the caller after encoding. */
static struct sv_bytes lit(const char *s)
{
    return (struct sv_bytes){(const uint8_t *)s, strlen(s)};
}

/* The meta group's leader, as the scheduler will answer (proto.h). */
/* DR_PROMOTE and DR_DEMOTE at the meta leader (node): record what the site
 * becomes; each node follows it as dr_follow_after says. */
static int handle_dr_change(int node, uint32_t type, struct sv_msg *m, struct sv_msg *r)
{
    static _Thread_local char sentence[128];
    uint64_t epoch = 0;
    for (int i = 0; i < N_NODES; i++)
        epoch = F.dr_epoch[i] > epoch ? F.dr_epoch[i] : epoch;
    const char *role = F.dr_role[node] ? F.dr_role[node] : "none";
    if (type == SV_MSG_DR_PROMOTE) {
        F.dr_flags_seen = SV_MSG_HAS(m, SV_F_FLAGS) ? (int64_t)m->flags : -1;
        bool force = SV_MSG_HAS(m, SV_F_FLAGS) && (m->flags & 1u);
        if (strcmp(role, "standby") != 0) {
            snprintf(sentence, sizeof(sentence), "site dr-b is not a standby (it is %s)", role);
        } else if (F.dr_primary_answers && !force) {
            snprintf(sentence, sizeof(sentence),
                     "the primary site dr-a answered 1.2 s ago: promote with force to split "
                     "from it");
        } else {
            sentence[0] = '\0';
            F.dr_next_role = "primary";
            F.dr_next_epoch = ++epoch;
        }
    } else if (strcmp(role, "fenced") == 0) {
        snprintf(sentence, sizeof(sentence), "site dr-b is already fenced");
    } else {
        sentence[0] = '\0';
        F.dr_next_role = "fenced";
        F.dr_next_epoch = epoch;
        for (int i = 0; i < N_NODES; i++) /* a demotion is followed at once */
            F.dr_role[i] = "fenced";
    }
    if (sentence[0] != '\0') {
        r->status = SV_ST_BAD_REQUEST;
        r->msg = lit(sentence);
        r->fields |= 1u << SV_F_MSG;
        return 1;
    }
    for (int i = 0; i < N_NODES; i++)
        F.dr_follow_left[i] = F.dr_follow_after[i];
    if (!F.dr_no_epoch) {
        r->version = epoch;
        r->fields |= 1u << SV_F_VERSION;
    }
    if (type == SV_MSG_DR_PROMOTE && F.dr_cut_ms) {
        r->mtime_ms = F.dr_cut_ms;
        r->fields |= 1u << SV_F_MTIME_MS;
    }
    return 1;
}

static int handle_meta(int node, uint32_t type, struct sv_msg *m, struct sv_msg *r,
                       struct sv_item *items)
{
    static _Thread_local char addr[3][64], sentence[128];
    static const char *zones[] = {"zone-a", "zone-b", "zone-c"};
    int nn = F.map_dead_node ? 3 : 2;
    if (F.meta_unknown) {
        r->status = SV_ST_BAD_REQUEST;
        r->msg = lit("unknown request type");
        r->fields |= 1u << SV_F_MSG;
        return 1;
    }
    if (F.meta_leader < 0) {
        r->status = SV_ST_UNAVAILABLE;
        return 1;
    }
    if (node != F.meta_leader) {
        snprintf(addr[0], sizeof(addr[0]), "127.0.0.1:%u", F.port[F.meta_leader]);
        r->status = SV_ST_NOT_LEADER;
        r->leader = (uint64_t)F.meta_leader + 1;
        r->fields |= 1u << SV_F_LEADER;
        if (F.meta_addr_in_redirect) {
            r->addr = lit(addr[0]);
            r->fields |= 1u << SV_F_ADDR;
        }
        F.meta_not_leader++;
        return 1;
    }
    r->epoch = 7;
    r->fields |= 1u << SV_F_EPOCH;
    if (type == SV_MSG_DR_PROMOTE || type == SV_MSG_DR_DEMOTE)
        return handle_dr_change(node, type, m, r);
    r->flags = F.health_known ? 1u : 0u;
    r->fields |= 1u << SV_F_FLAGS;
    uint32_t n = 0;
    switch (type) {
    case SV_MSG_NODES:
        for (int i = 0; i < nn; i++) {
            snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%u",
                     i < N_NODES ? F.port[i] : (unsigned)F.dead_port);
            struct sv_item *it = &items[n++];
            const char *st = F.node_state[i] ? F.node_state[i] : i == 2 ? "down" : "up";
            it->id = (uint64_t)i + 1;
            it->zone = lit(zones[i]);
            it->addr = lit(addr[i]);
            it->state = lit(st);
            it->n_replicas_count = F.node_replicas[i];
            it->n_leaders = (uint64_t)i;
            it->bytes = F.node_bytes[i];
            it->free = 1000000000u * ((uint64_t)i + 1);
            it->age_ms = 250;
            it->fields = 1u << SV_I_ID | 1u << SV_I_ZONE | 1u << SV_I_ADDR | 1u << SV_I_STATE |
                         1u << SV_I_N_REPLICAS | 1u << SV_I_N_LEADERS | 1u << SV_I_BYTES |
                         1u << SV_I_FREE;
            if (i != 2) /* node 3 was never heard */
                it->fields |= 1u << SV_I_AGE_MS;
            /* A draining node loses a replica and half its bytes per look. */
            if (strcmp(st, "draining") == 0 && F.node_replicas[i] > 0) {
                F.node_replicas[i]--;
                F.node_bytes[i] /= 2;
            }
        }
        break;
    case SV_MSG_HEALTH:
        if (F.health_shard >= 0) {
            struct sv_item *it = &items[n++];
            it->id = (uint64_t)F.health_shard + 1;
            it->n_replicas = 1;
            it->replicas[0] = 2;
            it->reason = lit("no-zone-available");
            it->text = lit("no up node in a zone other than zone-b");
            it->fields = 1u << SV_I_ID | 1u << SV_I_REPLICAS | 1u << SV_I_REASON | 1u << SV_I_TEXT;
            struct sv_item *mt = &items[n++];
            mt->id = 0; /* the meta group, being repaired: LEFT known */
            mt->n_replicas = 2;
            mt->replicas[0] = 1;
            mt->replicas[1] = 2;
            mt->reason = lit("repairing");
            mt->left = 12;
            mt->fields = 1u << SV_I_ID | 1u << SV_I_REPLICAS | 1u << SV_I_REASON | 1u << SV_I_LEFT;
        }
        break;
    case SV_MSG_SCHED_LOG: {
        struct sv_item *a = &items[n++];
        a->mtime_ms = 1700000000123u;
        a->key = lit("state");
        a->reason = lit("heartbeat-timeout");
        a->text = lit("node 3 down: no heartbeat for 10 s");
        a->leader = 3;
        a->fields = 1u << SV_I_MTIME_MS | 1u << SV_I_KEY | 1u << SV_I_REASON | 1u << SV_I_TEXT |
                    1u << SV_I_LEADER;
        struct sv_item *b = &items[n++];
        b->mtime_ms = 1700000001000u;
        b->key = lit("replace");
        b->reason = lit("node-evicted");
        b->text = lit("shard 1: replica on node 3 replaced by node 2");
        b->id = 2;
        b->leader = 3;
        b->fields = 1u << SV_I_MTIME_MS | 1u << SV_I_KEY | 1u << SV_I_REASON | 1u << SV_I_TEXT |
                    1u << SV_I_ID | 1u << SV_I_LEADER;
        break;
    }
    case SV_MSG_DRAIN:
    case SV_MSG_NODE_REMOVE: {
        bool flag = SV_MSG_HAS(m, SV_F_FLAGS) && (m->flags & 1u);
        if (!SV_MSG_HAS(m, SV_F_NODE) || m->node < 1 || m->node > (uint64_t)nn) {
            snprintf(sentence, sizeof(sentence), "no node %llu in the cluster map",
                     (unsigned long long)m->node);
            r->status = SV_ST_BAD_REQUEST;
            r->msg = lit(sentence);
            r->fields |= 1u << SV_F_MSG;
            return 1;
        }
        int i = (int)m->node - 1;
        if (type == SV_MSG_DRAIN) {
            F.node_state[i] = flag ? "up" : "draining";
        } else if (F.node_replicas[i] > 0 && !flag) {
            snprintf(sentence, sizeof(sentence),
                     "node %d holds %llu replicas: drain it first (or force)", i + 1,
                     (unsigned long long)F.node_replicas[i]);
            r->status = SV_ST_BAD_REQUEST;
            r->msg = lit(sentence);
            r->fields |= 1u << SV_F_MSG;
            return 1;
        } else {
            F.node_state[i] = "removed";
        }
        break;
    }
    case SV_MSG_CLUSTER_SET:
        if (SV_MSG_HAS(m, SV_F_KEY)) {
            char k[32] = "";
            if (m->key.len < sizeof(k))
                memcpy(k, m->key.p, m->key.len);
            uint64_t v = m->size;
            if (!strcmp(k, "evict-after") && v < F.set_down) {
                r->status = SV_ST_BAD_REQUEST;
                r->msg = lit("evict-after is below down-after");
                r->fields |= 1u << SV_F_MSG;
                return 1;
            }
            if (!strcmp(k, "down-after"))
                F.set_down = v;
            else if (!strcmp(k, "evict-after"))
                F.set_evict = v;
            else if (!strcmp(k, "auto-evict"))
                F.set_auto = v;
            else if (!strcmp(k, "repair-rate"))
                F.set_rate = v;
            else if (!strcmp(k, "moves-per-node"))
                F.set_moves = v;
            else if (!strcmp(k, "rebalance"))
                F.set_rebalance = v;
            else {
                r->status = SV_ST_BAD_REQUEST;
                return 1;
            }
        }
        {
            static const char *const names[] = {"down-after",  "evict-after",    "auto-evict",
                                                "repair-rate", "moves-per-node", "rebalance"};
            const uint64_t vals[] = {F.set_down, F.set_evict, F.set_auto,
                                     F.set_rate, F.set_moves, F.set_rebalance};
            for (int i = 0; i < 6; i++) {
                struct sv_item *it = &items[n++];
                it->key = lit(names[i]);
                it->size = vals[i];
                it->fields = 1u << SV_I_KEY | 1u << SV_I_SIZE;
            }
        }
        break;
    }
    r->n_items = n;
    r->items = items;
    r->fields |= 1u << SV_F_ITEMS;
    return 1;
}

/* DR_STATUS, as a node of standby site dr-b answers it (proto.h): the
 * shards it leads, their frontier and progress. */
static int handle_dr(int node, struct sv_msg *r, struct sv_item *items)
{
    if (F.dr_drop)
        return -2;
    if (F.dr_role[node] == NULL) {
        r->status = SV_ST_BAD_REQUEST;
        r->msg = lit("unknown request type");
        r->fields |= 1u << SV_F_MSG;
        return 1;
    }
    if (F.dr_next_role != NULL && F.dr_follow_left[node] == 0) {
        F.dr_role[node] = F.dr_next_role;
        F.dr_epoch[node] = F.dr_next_epoch;
    }
    if (F.dr_next_role != NULL && F.dr_follow_left[node] >= 0)
        F.dr_follow_left[node]--;
    bool primary = strcmp(F.dr_role[node], "primary") == 0;
    r->key = lit(F.dr_role[node]);
    r->bucket = lit("dr-b");
    r->prefix = lit("dr-a");
    r->version = F.dr_epoch[node];
    r->mtime_ms = F.dr_clock_ms[node];
    r->fields |= 1u << SV_F_KEY | 1u << SV_F_BUCKET | 1u << SV_F_PREFIX | 1u << SV_F_VERSION |
                 1u << SV_F_MTIME_MS | 1u << SV_F_ITEMS;
    uint32_t n = 0;
    for (int sh = 0; sh < N_SHARDS; sh++) {
        if (F.leader[sh] != node || F.dr_unled[sh])
            continue;
        struct sv_item *it = &items[n++];
        const char *st = F.dr_state[sh] ? F.dr_state[sh] : primary ? "shipping" : "streaming";
        it->id = (uint64_t)sh;
        it->state = lit(st);
        it->applied = 1000 + (uint64_t)sh;
        it->commit = 1010 + (uint64_t)sh;
        it->fields = 1u << SV_I_ID | 1u << SV_I_STATE | 1u << SV_I_APPLIED | 1u << SV_I_COMMIT;
        if (F.dr_frontier_ms[sh] > 0 && !primary) {
            it->mtime_ms = F.dr_frontier_ms[sh];
            it->age_ms = 100 * ((uint64_t)sh + 1);
            it->fields |= 1u << SV_I_MTIME_MS | 1u << SV_I_AGE_MS;
        }
        if (strcmp(st, "stalled") == 0) {
            it->reason = lit("peer-unreachable");
            it->text = lit("no answer from site dr-a for 30 s");
            it->fields |= 1u << SV_I_REASON | 1u << SV_I_TEXT;
        }
    }
    r->n_items = n;
    r->items = items;
    return 1;
}

static int handle(struct sconn *s, uint32_t type, struct sv_msg *m, struct sv_msg *r,
                  struct sv_item *items)
{
    int node = s->node;
    const uint16_t *port = &F.port[s->site * N_NODES]; /* the site's */
    r->fields = 1u << SV_F_STATUS;
    r->status = SV_ST_OK;
    if (type < 32) {
        F.n_req[type]++;
        F.site_req[s->site][type]++;
    }
    if (SV_MSG_HAS(m, SV_F_SEQ)) {
        F.site_session[s->site] = m->session;
        F.site_seq[s->site] = m->seq;
    }
    if ((type >= SV_MSG_NODES && type <= SV_MSG_CLUSTER_SET) || type == SV_MSG_DR_PROMOTE ||
        type == SV_MSG_DR_DEMOTE)
        return handle_meta(node, type, m, r, items);
    if (type == SV_MSG_MAP && s->site == 1 && F.map_down_b) {
        r->status = SV_ST_UNAVAILABLE;
        return 1;
    }
    if (type == SV_MSG_MAP) {
        uint32_t n = 0;
        int nn = F.map_dead_node ? 3 : 2;
        for (int i = 0; i < nn; i++) {
            static _Thread_local char addr[3][64];
            static const char *zones[] = {"zone-a", "zone-b", "zone-c"};
            snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%u",
                     i < N_NODES ? port[i] : (unsigned)F.dead_port);
            struct sv_item *it = &items[n++];
            it->id = (uint64_t)i + 1;
            it->addr = (struct sv_bytes){(const uint8_t *)addr[i], strlen(addr[i])};
            it->zone = (struct sv_bytes){(const uint8_t *)zones[i], strlen(zones[i])};
            it->state = (struct sv_bytes){(const uint8_t *)"up", 2};
            it->fields = 1u << SV_I_ID | 1u << SV_I_ADDR | 1u << SV_I_ZONE | 1u << SV_I_STATE;
        }
        for (int sh = 0; sh < N_SHARDS; sh++) {
            struct sv_item *it = &items[n++];
            it->id = (uint64_t)sh;
            it->n_replicas = 2;
            it->replicas[0] = 1;
            it->replicas[1] = 2;
            if (F.map_dead_node && sh == 0)
                it->replicas[it->n_replicas++] = 3;
            it->leader = (uint64_t)F.map_leader[sh] + 1;
            it->fields = 1u << SV_I_ID | 1u << SV_I_REPLICAS | 1u << SV_I_LEADER;
        }
        r->n_items = n;
        r->items = items;
        r->n_shards = N_SHARDS;
        r->fields |= 1u << SV_F_ITEMS | 1u << SV_F_N_SHARDS;
        if (F.map_roles) {
            const char *role =
                (s->site == 0 ? F.read_only : F.read_only_b) == RO_WRITES ? "standby" : "primary";
            r->key = (struct sv_bytes){(const uint8_t *)role, strlen(role)};
            r->fields |= 1u << SV_F_KEY;
        }
        return 1;
    }
    if (type == SV_MSG_STATUS) {
        for (int sh = 0; sh < N_SHARDS; sh++) {
            struct sv_item *it = &items[sh];
            it->id = (uint64_t)sh;
            const char *role = F.leader[sh] == node ? "leader" : "follower";
            it->role = (struct sv_bytes){(const uint8_t *)role, strlen(role)};
            it->leader = (uint64_t)F.leader[sh] + 1;
            it->fields = 1u << SV_I_ID | 1u << SV_I_ROLE | 1u << SV_I_LEADER;
        }
        r->n_items = N_SHARDS;
        r->items = items;
        r->node = (uint64_t)node + 1;
        static const char *const metrics[] = {"127.0.0.1:9101", "127.0.0.1:9102"};
        r->metrics = (struct sv_bytes){(const uint8_t *)metrics[node % 2], strlen(metrics[0])};
        r->fields |= 1u << SV_F_ITEMS | 1u << SV_F_NODE | 1u << SV_F_METRICS;
        return 1;
    }
    if (type == SV_MSG_DR_STATUS)
        return handle_dr(node, r, items);
    if (F.blackhole)
        return 0;
    bool write = type == SV_MSG_PUT || type == SV_MSG_PUT_BEGIN || type == SV_MSG_PUT_CHUNK ||
                 type == SV_MSG_PUT_COMMIT || type == SV_MSG_DELETE;
    enum read_only ro = s->site == 0 ? F.read_only : F.read_only_b;
    if ((ro == RO_WRITES && write) || (ro == RO_CHUNKS && type == SV_MSG_PUT_CHUNK) ||
        (ro == RO_COMMIT && type == SV_MSG_PUT_COMMIT)) {
        /* With a LEADER and ADDR (the other node) that the client must not follow. */
        static _Thread_local char other[64];
        snprintf(other, sizeof(other), "127.0.0.1:%u", port[node ^ 1]);
        r->status = SV_ST_READ_ONLY;
        r->msg = lit(s->site == 0 ? "site dr-b is a standby: writes go to site dr-a"
                                  : "site dr-a is fenced: writes go to site dr-b");
        r->leader = (uint64_t)(node ^ 1) + 1;
        r->addr = lit(other);
        r->fields |= 1u << SV_F_MSG | 1u << SV_F_LEADER | 1u << SV_F_ADDR;
        return 1;
    }
    if (type == SV_MSG_PUT_CHUNK && F.unavailable_chunks_left > 0) {
        F.unavailable_chunks_left--;
        r->status = SV_ST_UNAVAILABLE;
        return 1;
    }
    if (F.always_unavailable || F.unavailable_left > 0) {
        if (F.unavailable_left > 0)
            F.unavailable_left--;
        r->status = SV_ST_UNAVAILABLE;
        return 1;
    }
    uint32_t shard;
    if (type == SV_MSG_LIST) {
        shard = (uint32_t)m->shard;
    } else {
        shard = sv_shard_of(
            sv_object_hash(m->tenant, m->bucket.p, m->bucket.len, m->key.p, m->key.len), N_SHARDS);
        if (!SV_MSG_HAS(m, SV_F_SHARD) || m->shard != shard)
            F.shard_mismatch++;
    }
    if (shard >= N_SHARDS) {
        r->status = SV_ST_BAD_REQUEST;
        return 1;
    }
    if (F.leader[shard] != node) {
        static _Thread_local char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", port[F.leader[shard]]);
        r->status = SV_ST_NOT_LEADER;
        r->leader = (uint64_t)F.leader[shard] + 1;
        r->addr = (struct sv_bytes){(const uint8_t *)addr, strlen(addr)};
        r->fields |= 1u << SV_F_LEADER | 1u << SV_F_ADDR;
        F.not_leader++;
        return 1;
    }
    struct obj *o = type == SV_MSG_LIST ? NULL : find_obj(m->bucket, m->key);
    switch (type) {
    case SV_MSG_PUT:
    case SV_MSG_DELETE:
    case SV_MSG_PUT_COMMIT: {
        struct dedup *d = find_dedup(m);
        if (d != NULL) {
            r->status = d->status;
            r->version = d->version;
            r->fields |= 1u << SV_F_VERSION;
            return 1;
        }
        if (!if_version_ok(m, o)) {
            r->status = SV_ST_VERSION_CONFLICT;
        } else if (type == SV_MSG_DELETE) {
            if (o == NULL) {
                r->status = SV_ST_NOT_FOUND;
            } else {
                r->version = o->version;
                r->fields |= 1u << SV_F_VERSION;
                remove_obj(o);
                F.applied_writes++;
            }
        } else if (type == SV_MSG_PUT) {
            uint8_t sum[32];
            sha256(m->data.p, m->data.len, sum);
            if (m->size != m->data.len || memcmp(sum, m->sha256, 32) != 0) {
                r->status = SV_ST_BAD_REQUEST;
            } else {
                uint8_t *copy = malloc(m->data.len ? m->data.len : 1);
                memcpy(copy, m->data.p, m->data.len);
                r->version = store(m, copy, m->data.len);
                r->fields |= 1u << SV_F_VERSION;
            }
        } else {
            struct upload *u = F.ups;
            while (u != NULL && u->id != m->upload)
                u = u->next;
            size_t total = 0;
            bool ok = u != NULL && m->n_chunks <= UP_CHUNKS_MAX;
            for (uint64_t i = 0; ok && i < m->n_chunks; i++) {
                ok = u->chunks[i] != NULL;
                total += ok ? u->lens[i] : 0;
            }
            uint8_t *all = ok && total == m->size ? malloc(total ? total : 1) : NULL;
            if (all != NULL) {
                size_t off = 0;
                for (uint64_t i = 0; i < m->n_chunks; i++) {
                    memcpy(all + off, u->chunks[i], u->lens[i]);
                    off += u->lens[i];
                }
                uint8_t sum[32];
                sha256(all, total, sum);
                if (memcmp(sum, m->sha256, 32) != 0) {
                    free(all);
                    all = NULL;
                }
            }
            if (all == NULL) {
                r->status = SV_ST_BAD_REQUEST;
                r->msg = (struct sv_bytes){(const uint8_t *)"bad upload", 10};
                r->fields |= 1u << SV_F_MSG;
            } else {
                r->version = store(m, all, total);
                r->fields |= 1u << SV_F_VERSION;
            }
        }
        add_dedup(m, r->status, r->version);
        if (r->status == SV_ST_OK && F.drop_after_write > 0) {
            F.drop_after_write--;
            return -2; /* applied, but the answer is lost */
        }
        return 1;
    }
    case SV_MSG_PUT_BEGIN: {
        struct upload *u = calloc(1, sizeof(*u));
        u->id = ++F.next_upload;
        u->next = F.ups;
        F.ups = u;
        r->upload = u->id;
        r->fields |= 1u << SV_F_UPLOAD;
        return 1;
    }
    case SV_MSG_PUT_CHUNK: {
        struct upload *u = F.ups;
        while (u != NULL && u->id != m->upload)
            u = u->next;
        if (u == NULL || m->chunk >= UP_CHUNKS_MAX || m->data.len > MiB) {
            r->status = SV_ST_BAD_REQUEST;
            return 1;
        }
        free(u->chunks[m->chunk]);
        u->chunks[m->chunk] = malloc(m->data.len ? m->data.len : 1);
        memcpy(u->chunks[m->chunk], m->data.p, m->data.len);
        u->lens[m->chunk] = m->data.len;
        if (F.drop_chunk_left > 0) {
            F.drop_chunk_left--;
            return -3; /* stored, the server stalls, then the answer is lost */
        }
        if (F.flip_after_chunks > 0 && --F.flip_after_chunks == 0)
            F.leader[shard] ^= 1;
        return 1;
    }
    case SV_MSG_GET:
    case SV_MSG_STAT:
        if (o == NULL) {
            r->status = SV_ST_NOT_FOUND;
            return 1;
        }
        fill_meta(r, o);
        if (type == SV_MSG_GET) {
            r->data = (struct sv_bytes){o->data, o->len < MiB ? o->len : MiB};
            r->fields |= 1u << SV_F_DATA;
        }
        return 1;
    case SV_MSG_GET_CHUNK:
        if (F.conflict_chunk_left > 0 ||
            (F.conflict_on_chunk > 0 && m->chunk == (uint64_t)F.conflict_on_chunk)) {
            if (F.conflict_chunk_left > 0)
                F.conflict_chunk_left--;
            r->status = SV_ST_VERSION_CONFLICT;
            return 1;
        }
        if (o == NULL || o->version != m->version || m->chunk * MiB >= o->len) {
            r->status = o == NULL ? SV_ST_NOT_FOUND : SV_ST_VERSION_CONFLICT;
            return 1;
        }
        {
            size_t off = (size_t)m->chunk * MiB;
            size_t n = o->len - off < MiB ? o->len - off : MiB;
            r->data = (struct sv_bytes){o->data + off, n};
            r->fields |= 1u << SV_F_DATA;
        }
        return 1;
    case SV_MSG_LIST: {
        size_t cnt = 0;
        for (struct obj *x = F.objs; x != NULL; x = x->next)
            cnt++;
        struct obj **v = calloc(cnt + 1, sizeof(*v));
        size_t k = 0;
        for (struct obj *x = F.objs; x != NULL; x = x->next) {
            if (strlen(x->bucket) != m->bucket.len ||
                memcmp(x->bucket, m->bucket.p, m->bucket.len) != 0)
                continue;
            if (sv_shard_of(
                    sv_object_hash(m->tenant, x->bucket, strlen(x->bucket), x->key, strlen(x->key)),
                    N_SHARDS) != shard)
                continue;
            if (SV_MSG_HAS(m, SV_F_PREFIX) &&
                (strlen(x->key) < m->prefix.len || memcmp(x->key, m->prefix.p, m->prefix.len)))
                continue;
            if (SV_MSG_HAS(m, SV_F_START_AFTER)) {
                char after[SV_MSG_NAME_MAX + 1];
                memcpy(after, m->start_after.p, m->start_after.len);
                after[m->start_after.len] = '\0';
                if (strcmp(x->key, after) <= 0)
                    continue;
            }
            v[k++] = x;
        }
        qsort(v, k, sizeof(*v), key_cmp);
        uint64_t limit = SV_MSG_HAS(m, SV_F_LIMIT) ? m->limit : 1000;
        uint32_t n = 0;
        for (size_t i = 0; i < k && n < limit; i++) {
            struct sv_item *it = &items[n++];
            it->key = (struct sv_bytes){(const uint8_t *)v[i]->key, strlen(v[i]->key)};
            it->size = v[i]->len;
            it->version = v[i]->version;
            it->mtime_ms = v[i]->mtime_ms;
            it->fields =
                1u << SV_I_KEY | 1u << SV_I_SIZE | 1u << SV_I_VERSION | 1u << SV_I_MTIME_MS;
        }
        r->flags = k > n ? 1 : 0;
        r->n_items = n;
        r->items = items;
        r->fields |= 1u << SV_F_ITEMS | 1u << SV_F_FLAGS;
        free(v);
        return 1;
    }
    default:
        r->status = SV_ST_BAD_REQUEST;
        return 1;
    }
}

/* A server that stalls before it dies: stop reading until the client can
 * send no more (the bytes waiting in fd stop growing: its window is shut) or
 * 2 s pass. Closing then sends a FIN but no RST, since no new data arrives
 * after the shutdown: a client blocked in send must notice the FIN. */
static void wait_window_shut(int fd)
{
    int last = -1, same = 0;
    for (int i = 0; i < 200 && same < 10; i++) {
        int q = 0;
        if (ioctl(fd, FIONREAD, &q) != 0)
            return;
        same = q == last ? same + 1 : 0;
        last = q;
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
    }
}

static void *conn_main(void *arg)
{
    struct sconn *s = arg;
    uint8_t *buf = malloc(BUF);
    struct sv_item *items = calloc(SV_MSG_ITEMS_MAX, sizeof(*items));
    for (;;) {
        struct sv_wire_frame f;
        int rc;
        bool close_now = false;
        while (!close_now && (rc = sv_wire_next(&s->dec, &f)) == 1) {
            struct sv_msg m, r;
            memset(&r, 0, sizeof(r));
            if (sv_msg_decode(f.body, f.body_len, &m, NULL, 0) != 0) {
                sv_msg_free(&m);
                close_now = true;
                break;
            }
            pthread_mutex_lock(&F.lock);
            int what = handle(s, f.type, &m, &r, items);
            bool chunk = f.type == SV_MSG_PUT_CHUNK;
            if (chunk) {
                s->pending_chunks++;
                if (s->pending_chunks > F.chunks_max_pending)
                    F.chunks_max_pending = s->pending_chunks;
            }
            uint8_t *out = NULL;
            size_t out_len = 0;
            if (what == 1)
                encode_resp(f.type, f.req_id, &r, &out, &out_len);
            bool reorder = F.reorder_chunks && chunk;
            pthread_mutex_unlock(&F.lock);
            sv_msg_free(&m);
            if (what == -3)
                wait_window_shut(s->fd);
            if (what < 0) {
                close_now = true;
                break;
            }
            if (out == NULL)
                continue;
            if (reorder && s->held == NULL) {
                s->held = out;
                s->held_len = out_len;
                continue;
            }
            int w = sc_write_frame(s, out, out_len);
            free(out);
            if (w == 0 && s->held != NULL) {
                w = sc_write_frame(s, s->held, s->held_len);
                free(s->held);
                s->held = NULL;
                s->pending_chunks--;
            }
            if (chunk)
                s->pending_chunks--;
            if (w != 0)
                close_now = true;
        }
        if (close_now || rc < 0)
            break;
        size_t n = 0;
        rc = sv_tls_read(s->tls, buf, BUF, &n);
        if (rc != 0) {
            sc_flush(s);
            break;
        }
        if (n > 0) {
            if (sv_wire_feed(&s->dec, buf, n) != 0)
                break;
            continue;
        }
        if (sc_flush(s) != 0)
            break;
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        int pr = poll(&p, 1, 20);
        if (pr == 0) {
            if (s->held != NULL) {
                int w = sc_write_frame(s, s->held, s->held_len);
                free(s->held);
                s->held = NULL;
                s->pending_chunks--;
                if (w != 0)
                    break;
            }
            if (atomic_load(&F.stop))
                break;
            continue;
        }
        ssize_t got = recv(s->fd, buf, BUF, 0);
        if (got <= 0)
            break;
        if (sv_tls_feed(s->tls, buf, (size_t)got) != 0)
            break;
    }
    free(s->held);
    s->held = NULL;
    free(items);
    free(buf);
    shutdown(s->fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *arg)
{
    int l = (int)(intptr_t)arg;
    while (!atomic_load(&F.stop)) {
        struct pollfd p = {.fd = F.lfd[l], .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(F.lfd[l], NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&F.lock);
        int rcvbuf = F.rcvbuf;
        pthread_mutex_unlock(&F.lock);
        if (rcvbuf > 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        struct sconn *s = calloc(1, sizeof(*s));
        s->node = l % N_NODES;
        s->site = l / N_NODES;
        s->fd = fd;
        sv_wire_decoder_init(&s->dec);
        if (sv_tls_conn_new(F.tls, NULL, &s->tls, NULL, 0) != 0) {
            close(fd);
            free(s);
            continue;
        }
        pthread_mutex_lock(&F.lock);
        s->next = F.conns;
        F.conns = s;
        pthread_mutex_unlock(&F.lock);
        pthread_create(&s->thr, NULL, conn_main, s);
    }
    return NULL;
}

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("fake: listen");
        exit(1);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void fake_reset_state(void)
{
    while (F.objs != NULL)
        remove_obj(F.objs);
    while (F.ups != NULL) {
        struct upload *u = F.ups;
        F.ups = u->next;
        for (int i = 0; i < UP_CHUNKS_MAX; i++)
            free(u->chunks[i]);
        free(u);
    }
    while (F.dd != NULL) {
        struct dedup *d = F.dd;
        F.dd = d->next;
        free(d);
    }
}

/* The meta group's defaults: led by node 2 (node 1 redirects with ADDR),
 * health known, nothing stuck, the settings svd bootstraps. */
static void meta_reset(void)
{
    F.meta_leader = 1;
    F.meta_addr_in_redirect = true;
    F.meta_unknown = false;
    F.health_known = true;
    F.health_shard = -1;
    for (int i = 0; i < 3; i++) {
        F.node_state[i] = NULL;
        F.node_replicas[i] = (uint64_t)4 - (uint64_t)i;
        F.node_bytes[i] = 8000000;
    }
    F.set_down = 10;
    F.set_evict = 60;
    F.set_auto = 1;
    F.set_rate = 64u << 20;
    F.set_moves = 2;
    F.set_rebalance = 1;
}

/* Disaster recovery defaults: both nodes of standby site dr-b, with clocks
 * 100 s apart (node 1 at 1700000100000, node 2 at 1700000200000) and site
 * epochs apart (3 and 4: the highest is the site's); shard s is streaming,
 * (s + 1) s behind its leader's clock. The primary is silent: a promotion
 * needs no force, and the nodes follow it at their next DR_STATUS. */
static void dr_reset(void)
{
    for (int i = 0; i < N_NODES; i++) {
        F.dr_role[i] = "standby";
        F.dr_clock_ms[i] = 1700000000000u + 100000u * ((uint64_t)i + 1);
        F.dr_epoch[i] = 3 + (uint64_t)i;
        F.dr_follow_after[i] = 0;
        F.dr_follow_left[i] = -1;
    }
    F.dr_primary_answers = false;
    F.dr_no_epoch = false;
    F.dr_cut_ms = 1700000097500u; /* the meta leader's frontier, newer than a status read */
    F.dr_flags_seen = -1;
    F.dr_next_role = NULL;
    F.dr_next_epoch = 0;
    for (int sh = 0; sh < N_SHARDS; sh++) {
        F.dr_frontier_ms[sh] = F.dr_clock_ms[F.leader[sh]] - 1000u * ((uint64_t)sh + 1);
        F.dr_state[sh] = NULL;
        F.dr_unled[sh] = false;
    }
    F.dr_drop = false;
}

static void fake_start(void)
{
    memset(&F, 0, sizeof(F));
    pthread_mutex_init(&F.lock, NULL);
    char node_crt[SV_TESTCERTS_PATH_MAX], node_key[SV_TESTCERTS_PATH_MAX];
    sv_testcerts_path(dir, "node-1", ".pem", node_crt, sizeof(node_crt));
    sv_testcerts_path(dir, "node-1", ".key", node_key, sizeof(node_key));
    struct sv_tls_config cfg = {
        .role = SV_TLS_SERVER, .ca_file = ca_path, .cert_file = node_crt, .key_file = node_key};
    char err[256];
    if (sv_tls_ctx_new(&cfg, &F.tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "fake: tls: %s\n", err);
        exit(1);
    }
    for (int i = 0; i < SITES * N_NODES; i++)
        F.lfd[i] = listen_any(&F.port[i]);
    uint16_t dp;
    int dfd = listen_any(&dp);
    close(dfd); /* nobody listens there now */
    F.dead_port = dp;
    for (int sh = 0; sh < N_SHARDS; sh++)
        F.leader[sh] = F.map_leader[sh] = sh % 2;
    meta_reset();
    dr_reset();
    for (int i = 0; i < SITES * N_NODES; i++)
        pthread_create(&F.accept_thr[i], NULL, accept_main, (void *)(intptr_t)i);
}

static void fake_stop(void)
{
    atomic_store(&F.stop, true);
    for (int i = 0; i < SITES * N_NODES; i++) {
        pthread_join(F.accept_thr[i], NULL);
        close(F.lfd[i]);
    }
    while (F.conns != NULL) {
        struct sconn *s = F.conns;
        F.conns = s->next;
        pthread_join(s->thr, NULL);
        close(s->fd);
        sv_tls_conn_free(s->tls);
        sv_wire_decoder_free(&s->dec);
        free(s);
    }
    fake_reset_state();
    sv_tls_ctx_free(F.tls);
    pthread_mutex_destroy(&F.lock);
}

/* Set knobs under the lock. */
#define KNOB(stmt)                                                                                 \
    do {                                                                                           \
        pthread_mutex_lock(&F.lock);                                                               \
        stmt;                                                                                      \
        pthread_mutex_unlock(&F.lock);                                                             \
    } while (0)

static int knob_get(const int *p)
{
    pthread_mutex_lock(&F.lock);
    int v = *p;
    pthread_mutex_unlock(&F.lock);
    return v;
}

/* Client helpers. */

static struct sv_client *client_at(const char *ep, uint32_t deadline_ms)
{
    struct sv_client_options o = {.endpoints = ep, .ca_file = ca_path, .deadline_ms = deadline_ms};
    struct sv_client *c = NULL;
    int rc = sv_client_open(&o, &c);
    CHECK_RC(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", sv_client_errmsg());
        exit(1);
    }
    return c;
}

/* A client of site A's nodes, as every test but dr_follow uses. */
static struct sv_client *client_new(uint32_t deadline_ms)
{
    char ep[128];
    snprintf(ep, sizeof(ep), "127.0.0.1:%u,127.0.0.1:%u", F.port[0], F.port[1]);
    return client_at(ep, deadline_ms);
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf[i] = (uint8_t)((x * 0x2545F4914F6CDD1Du) >> 56);
    }
}

/* A reader that hands out the buffer in uneven pieces. */
struct src {
    const uint8_t *p;
    size_t len, off;
    unsigned step;
};

static int64_t src_read(void *arg, void *buf, size_t cap)
{
    struct src *s = arg;
    size_t n = 1 + (s->step++ * 7919u) % 300000u;
    if (n > cap)
        n = cap;
    if (n > s->len - s->off)
        n = s->len - s->off;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (int64_t)n;
}

struct sink {
    const uint8_t *want;
    size_t want_len, off;
    bool mismatch;
};

static int sink_write(void *arg, const void *buf, size_t len)
{
    struct sink *s = arg;
    if (s->off + len > s->want_len || memcmp(s->want + s->off, buf, len) != 0)
        s->mismatch = true;
    s->off += len;
    return 0;
}

/* Tests. */

static void test_round_trips(void)
{
    struct sv_client *c = client_new(10000);
    static const size_t sizes[] = {0, 1, MiB, MiB + 1, 5 * MiB};
    uint8_t *buf = malloc(5 * MiB);
    fill(buf, 5 * MiB, 7);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        char key[64];
        snprintf(key, sizeof(key), "obj-%zu", n);
        int chunks_before = knob_get(&F.n_req[SV_MSG_PUT_CHUNK]);
        uint64_t v1 = 0, v2 = 0;
        CHECK_RC(sv_client_put(c, "rt", key, buf, n, SV_IF_ANY, &v1), 0);
        int want_chunks = n > MiB ? (int)((n + MiB - 1) / MiB) : 0;
        CHECK(knob_get(&F.n_req[SV_MSG_PUT_CHUNK]) - chunks_before == want_chunks);
        void *got = NULL;
        size_t got_len = 0;
        struct sv_stat st;
        CHECK_RC(sv_client_get(c, "rt", key, SV_LINEARIZABLE, &got, &got_len, &st), 0);
        CHECK(got != NULL && got_len == n && memcmp(got, buf, n) == 0);
        CHECK(st.size == n && st.version == v1);
        uint8_t sum[32];
        sha256(buf, n, sum);
        CHECK(memcmp(st.sha256, sum, 32) == 0);
        free(got);

        /* Streamed, unknown size, chunk answers out of order. */
        KNOB(F.reorder_chunks = true);
        struct src s = {buf, n, 0, (unsigned)i};
        CHECK_RC(sv_client_put_stream(c, "rt", key, -1, SV_IF_ANY, &v2, src_read, &s), 0);
        KNOB(F.reorder_chunks = false);
        CHECK(v2 > v1);
        struct sink k = {buf, n, 0, false};
        struct sv_stat st2;
        CHECK_RC(sv_client_get_stream(c, "rt", key, SV_STALE, &st2, sink_write, &k), 0);
        CHECK(!k.mismatch && k.off == n && st2.version == v2);
        CHECK_RC(sv_client_stat(c, "rt", key, SV_LINEARIZABLE, &st2), 0);
        CHECK(st2.size == n && st2.version == v2 && st2.mtime_ms > 0);

        /* A wrong announced size is refused. */
        struct src s2 = {buf, n, 0, 3};
        CHECK_RC(sv_client_put_stream(c, "rt", key, (int64_t)n + 1, SV_IF_ANY, NULL, src_read, &s2),
                 SV_E_BAD_ARGUMENT);
    }
    CHECK(knob_get(&F.chunks_max_pending) >= 2); /* chunk requests were pipelined */
    CHECK(knob_get(&F.shard_mismatch) == 0);
    free(buf);
    sv_client_close(c);
}

static void test_redirect(void)
{
    /* MAP names node 1 as leader of every shard; shards 1 and 3 are led by node 2. */
    KNOB(for (int s = 0; s < N_SHARDS; s++) F.map_leader[s] = 0);
    struct sv_client *c = client_new(5000);
    uint8_t data[100];
    fill(data, sizeof(data), 3);
    int before = knob_get(&F.not_leader);
    for (int i = 0; i < 16; i++) {
        char key[32];
        snprintf(key, sizeof(key), "r-%d", i);
        CHECK_RC(sv_client_put(c, "redir", key, data, sizeof(data), SV_IF_ANY, NULL), 0);
    }
    int after = knob_get(&F.not_leader);
    CHECK(after > before);
    CHECK(after - before <= 2); /* the cache learned the leaders */
    for (int i = 0; i < 16; i++) {
        char key[32];
        snprintf(key, sizeof(key), "r-%d", i);
        struct sv_stat st;
        CHECK_RC(sv_client_stat(c, "redir", key, SV_LINEARIZABLE, &st), 0);
    }
    CHECK(knob_get(&F.not_leader) == after);
    /* Leadership moves: the client follows the next redirect. */
    KNOB(F.leader[0] = 1);
    for (int i = 0; i < 16; i++) {
        char key[32];
        snprintf(key, sizeof(key), "r-%d", i);
        struct sv_stat st;
        CHECK_RC(sv_client_stat(c, "redir", key, SV_LINEARIZABLE, &st), 0);
    }
    KNOB(for (int s = 0; s < N_SHARDS; s++) F.leader[s] = F.map_leader[s] = s % 2);
    sv_client_close(c);
}

static void test_unavailable_retry(void)
{
    struct sv_client *c = client_new(10000);
    KNOB(F.unavailable_left = 3);
    uint64_t t0 = now_ms();
    CHECK_RC(sv_client_put(c, "retry", "k", "abc", 3, SV_IF_ANY, NULL), 0);
    uint64_t el = now_ms() - t0;
    CHECK(el >= 150); /* three jittered backoffs: at least 25 + 50 + 100 ms */
    CHECK(knob_get(&F.unavailable_left) == 0);
    /* Chunk uploads survive an UNAVAILABLE burst in the middle. */
    uint8_t *buf = malloc(3 * MiB + 5);
    fill(buf, 3 * MiB + 5, 11);
    int chunk_reqs = knob_get(&F.n_req[SV_MSG_PUT_CHUNK]);
    int begins = knob_get(&F.n_req[SV_MSG_PUT_BEGIN]);
    KNOB(F.unavailable_chunks_left = 2);
    CHECK_RC(sv_client_put(c, "retry", "big", buf, 3 * MiB + 5, SV_IF_ANY, NULL), 0);
    CHECK(knob_get(&F.unavailable_chunks_left) == 0);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_CHUNK]) - chunk_reqs >= 4 + 2);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_BEGIN]) - begins == 1); /* the same upload went on */
    void *got = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "retry", "big", SV_LINEARIZABLE, &got, &len, NULL), 0);
    CHECK(len == 3 * MiB + 5 && got != NULL && memcmp(got, buf, len) == 0);
    free(got);
    free(buf);
    sv_client_close(c);
}

static void test_exactly_once(void)
{
    struct sv_client *c = client_new(10000);
    int applied = knob_get(&F.applied_writes);
    int puts = knob_get(&F.n_req[SV_MSG_PUT]);
    KNOB(F.drop_after_write = 1);
    uint64_t v = 0;
    CHECK_RC(sv_client_put(c, "once", "k", "hello", 5, SV_IF_ANY, &v), 0);
    CHECK(knob_get(&F.applied_writes) - applied == 1);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT]) - puts == 2);
    struct sv_stat st;
    CHECK_RC(sv_client_stat(c, "once", "k", SV_LINEARIZABLE, &st), 0);
    CHECK(st.version == v);
    /* A conditional put retried after a lost answer must not see its own write as a conflict. */
    KNOB(F.drop_after_write = 1);
    uint64_t v2 = 0;
    CHECK_RC(sv_client_put(c, "once", "k", "again", 5, (int64_t)v, &v2), 0);
    CHECK(v2 > v);
    /* Same for a chunked commit and a delete. */
    uint8_t *buf = malloc(2 * MiB);
    fill(buf, 2 * MiB, 5);
    applied = knob_get(&F.applied_writes);
    KNOB(F.drop_after_write = 1);
    CHECK_RC(sv_client_put(c, "once", "big", buf, 2 * MiB, SV_IF_ABSENT, NULL), 0);
    CHECK(knob_get(&F.applied_writes) - applied == 1);
    KNOB(F.drop_after_write = 1);
    CHECK_RC(sv_client_delete(c, "once", "big", SV_IF_ANY, NULL), 0);
    CHECK(knob_get(&F.applied_writes) - applied == 2);
    free(buf);
    sv_client_close(c);
}

static void test_deadline(void)
{
    struct sv_client *c = client_new(600);
    KNOB(F.always_unavailable = true);
    uint64_t t0 = now_ms();
    /* Unavailable; or a timeout when, on a loaded machine, the deadline
     * passes while the last attempt's answer is on its way. */
    int rc = sv_client_put(c, "dl", "k", "x", 1, SV_IF_ANY, NULL);
    CHECK(rc == SV_E_UNAVAILABLE || rc == SV_E_TIMEOUT);
    uint64_t el = now_ms() - t0;
    CHECK(el >= 550 && el <= 600 + 400);
    CHECK(strstr(sv_client_errmsg(), "127.0.0.1:") != NULL);
    CHECK(strstr(sv_client_errmsg(), "unavailable") != NULL);
    KNOB(F.always_unavailable = false);
    KNOB(F.blackhole = true);
    t0 = now_ms();
    struct sv_stat st;
    CHECK_RC(sv_client_stat(c, "dl", "k", SV_LINEARIZABLE, &st), SV_E_TIMEOUT);
    el = now_ms() - t0;
    CHECK(el >= 550 && el <= 600 + 400);
    KNOB(F.blackhole = false);
    sv_client_close(c);

    /* Nobody listens: unavailable, naming the endpoint. */
    struct sv_client_options o = {
        .endpoints = "127.0.0.1:1", .ca_file = ca_path, .deadline_ms = 300};
    struct sv_client *d = NULL;
    CHECK_RC(sv_client_open(&o, &d), 0);
    t0 = now_ms();
    CHECK_RC(sv_client_stat(d, "dl", "k", SV_LINEARIZABLE, &st), SV_E_UNAVAILABLE);
    CHECK(now_ms() - t0 <= 300 + 400);
    CHECK(strstr(sv_client_errmsg(), "127.0.0.1:1") != NULL);
    sv_client_close(d);
}

static void test_corrupt_and_changes(void)
{
    struct sv_client *c = client_new(10000);
    uint8_t *buf = malloc(3 * MiB);
    fill(buf, 3 * MiB, 9);
    CHECK_RC(sv_client_put(c, "chg", "small", buf, 1000, SV_IF_ANY, NULL), 0);
    CHECK_RC(sv_client_put(c, "chg", "big", buf, 3 * MiB, SV_IF_ANY, NULL), 0);
    KNOB(F.corrupt_sha = true);
    void *got = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "chg", "small", SV_LINEARIZABLE, &got, &len, NULL), SV_E_CORRUPT);
    CHECK_RC(sv_client_get(c, "chg", "big", SV_LINEARIZABLE, &got, &len, NULL), SV_E_CORRUPT);
    KNOB(F.corrupt_sha = false);

    /* Changed before anything was delivered: the read restarts. */
    int gets = knob_get(&F.n_req[SV_MSG_GET]);
    KNOB(F.conflict_chunk_left = 1);
    CHECK_RC(sv_client_get(c, "chg", "big", SV_LINEARIZABLE, &got, &len, NULL), 0);
    CHECK(knob_get(&F.n_req[SV_MSG_GET]) - gets == 2);
    CHECK(len == 3 * MiB && memcmp(got, buf, len) == 0);
    free(got);

    /* Changed after delivery started: an error. */
    KNOB(F.conflict_on_chunk = 2);
    struct sink k = {buf, 3 * MiB, 0, false};
    CHECK_RC(sv_client_get_stream(c, "chg", "big", SV_LINEARIZABLE, NULL, sink_write, &k),
             SV_E_VERSION_CONFLICT);
    CHECK(strstr(sv_client_errmsg(), "changed") != NULL);
    KNOB(F.conflict_on_chunk = 0);
    free(buf);
    sv_client_close(c);
}

static void test_conditional(void)
{
    struct sv_client *c = client_new(5000);
    uint64_t v1 = 0, v2 = 0, dv = 0;
    CHECK_RC(sv_client_put(c, "cond", "k", "one", 3, SV_IF_ABSENT, &v1), 0);
    CHECK_RC(sv_client_put(c, "cond", "k", "two", 3, SV_IF_ABSENT, NULL), SV_E_VERSION_CONFLICT);
    CHECK_RC(sv_client_put(c, "cond", "k", "two", 3, (int64_t)v1 + 100, NULL),
             SV_E_VERSION_CONFLICT);
    CHECK_RC(sv_client_put(c, "cond", "k", "two", 3, (int64_t)v1, &v2), 0);
    CHECK(v2 > v1);
    CHECK_RC(sv_client_delete(c, "cond", "k", (int64_t)v1, NULL), SV_E_VERSION_CONFLICT);
    CHECK_RC(sv_client_delete(c, "cond", "k", (int64_t)v2, &dv), 0);
    CHECK(dv == v2);
    struct sv_stat st;
    CHECK_RC(sv_client_stat(c, "cond", "k", SV_LINEARIZABLE, &st), SV_E_NOT_FOUND);
    void *got = NULL;
    size_t len;
    CHECK_RC(sv_client_get(c, "cond", "k", SV_LINEARIZABLE, &got, &len, NULL), SV_E_NOT_FOUND);
    CHECK_RC(sv_client_delete(c, "cond", "k", SV_IF_ANY, NULL), SV_E_NOT_FOUND);
    CHECK_RC(sv_client_put(c, "Bad_Bucket", "k", "x", 1, SV_IF_ANY, NULL), SV_E_BAD_ARGUMENT);
    CHECK_RC(sv_client_put(c, "b", "", "x", 1, SV_IF_ANY, NULL), SV_E_BAD_ARGUMENT);
    sv_client_close(c);
}

struct worker {
    struct sv_client *c;
    int id;
    int errors;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    size_t big = MiB + MiB / 2;
    uint8_t *buf = malloc(big);
    for (int i = 0; i < 12; i++) {
        size_t n = i == 5 ? big : (size_t)(i * 1000 + w->id);
        fill(buf, n, (uint64_t)(w->id * 100 + i));
        char key[32];
        snprintf(key, sizeof(key), "t%d-%d", w->id, i);
        if (sv_client_put(w->c, "conc", key, buf, n, SV_IF_ANY, NULL) != 0) {
            w->errors++;
            continue;
        }
        void *got = NULL;
        size_t len = 0;
        if (sv_client_get(w->c, "conc", key, SV_LINEARIZABLE, &got, &len, NULL) != 0 || len != n ||
            memcmp(got, buf, n) != 0)
            w->errors++;
        free(got);
    }
    free(buf);
    return NULL;
}

static void test_concurrent(void)
{
    struct sv_client *c = client_new(20000);
    KNOB(F.unavailable_left = 4);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){c, i, 0};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].errors == 0);
    }
    struct sv_list *l = NULL;
    CHECK_RC(sv_client_list(c, "conc", NULL, NULL, 1000, SV_LINEARIZABLE, &l), 0);
    CHECK(l != NULL && l->n == 48 && !l->more);
    sv_client_list_free(l);
    sv_client_close(c);
}

static void test_list(void)
{
    struct sv_client *c = client_new(5000);
    enum { N = 30 };
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "%s%02d", i % 3 == 0 ? "img/" : "doc/", i);
        CHECK_RC(sv_client_put(c, "lst", key, key, strlen(key), SV_IF_ANY, NULL), 0);
    }
    CHECK_RC(sv_client_put(c, "other", "img/00", "x", 1, SV_IF_ANY, NULL), 0);
    /* Page through everything 7 at a time. */
    char after[64] = "", prev[64] = "";
    int seen = 0, pages = 0;
    bool more = true;
    while (more && pages < 20) {
        struct sv_list *l = NULL;
        CHECK_RC(sv_client_list(c, "lst", NULL, after, 7, SV_LINEARIZABLE, &l), 0);
        if (l == NULL)
            break;
        CHECK(l->n <= 7);
        for (size_t i = 0; i < l->n; i++) {
            CHECK(strcmp(prev, l->entries[i].key) < 0);
            snprintf(prev, sizeof(prev), "%s", l->entries[i].key);
            CHECK(l->entries[i].size == strlen(l->entries[i].key));
            seen++;
        }
        more = l->more;
        if (l->n > 0)
            snprintf(after, sizeof(after), "%s", l->entries[l->n - 1].key);
        else
            more = false;
        pages++;
        sv_client_list_free(l);
    }
    CHECK(seen == N);
    CHECK(pages == 5); /* 7+7+7+7+2 */
    struct sv_list *l = NULL;
    CHECK_RC(sv_client_list(c, "lst", "img/", NULL, 1000, SV_LINEARIZABLE, &l), 0);
    CHECK(l != NULL && l->n == 10 && !l->more);
    for (size_t i = 0; l != NULL && i < l->n; i++)
        CHECK(strncmp(l->entries[i].key, "img/", 4) == 0);
    sv_client_list_free(l);
    CHECK_RC(sv_client_list(c, "lst", NULL, NULL, 0, SV_LINEARIZABLE, &l), SV_E_BAD_ARGUMENT);
    sv_client_close(c);
}

static void test_status(void)
{
    KNOB(F.map_dead_node = true);
    struct sv_client *c = client_new(3000);
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(c, &s), 0);
    CHECK(s != NULL && s->n_nodes == 3 && s->n_shards == N_SHARDS);
    for (size_t i = 0; s != NULL && i < s->n_nodes; i++) {
        bool dead = s->nodes[i].id == 3;
        CHECK(strcmp(s->nodes[i].state, dead ? "down" : "up") == 0);
        /* Each node's metrics address as its STATUS answer gave it. */
        char want[32] = "";
        if (!dead)
            snprintf(want, sizeof(want), "127.0.0.1:910%d", (int)s->nodes[i].id);
        CHECK(strcmp(s->nodes[i].metrics, want) == 0);
        CHECK(strncmp(s->nodes[i].address, "127.0.0.1:", 10) == 0);
        CHECK(strncmp(s->nodes[i].zone, "zone-", 5) == 0);
    }
    for (size_t i = 0; s != NULL && i < s->n_shards; i++) {
        const struct sv_status_shard *sh = &s->shards[i];
        CHECK(sh->n_replicas == (sh->id == 0 ? 3u : 2u));
        for (size_t j = 0; j < sh->n_replicas; j++) {
            const struct sv_status_replica *r = &sh->replicas[j];
            const char *want = r->node == 3                            ? "down"
                               : (uint64_t)(sh->id % 2) + 1 == r->node ? "leader"
                                                                       : "follower";
            CHECK(strcmp(r->role, want) == 0);
            CHECK(strncmp(r->zone, "zone-", 5) == 0);
        }
    }
    /* What the meta leader says (fake: node 1 holds 4 replicas, leads 0 groups). */
    CHECK(s != NULL && s->sched_known && s->health_known);
    for (size_t i = 0; s != NULL && i < s->n_nodes; i++) {
        CHECK(s->nodes[i].reachable == (s->nodes[i].id != 3));
        CHECK(s->nodes[i].replicas == 5 - s->nodes[i].id);
        CHECK(s->nodes[i].leaders == s->nodes[i].id - 1);
    }
    for (size_t i = 0; s != NULL && i < s->n_shards; i++)
        CHECK(s->shards[i].reason[0] == '\0' && s->shards[i].chunks_left == -1);
    sv_client_status_free(s);

    /* A draining node and a stuck shard. */
    KNOB(F.node_state[1] = "draining"; F.health_shard = 2);
    CHECK_RC(sv_client_status(c, &s), 0);
    CHECK(s != NULL && s->health_known);
    for (size_t i = 0; s != NULL && i < s->n_nodes; i++)
        CHECK(strcmp(s->nodes[i].state, s->nodes[i].id == 2   ? "draining"
                                        : s->nodes[i].id == 3 ? "down"
                                                              : "up") == 0);
    for (size_t i = 0; s != NULL && i < s->n_shards; i++) {
        CHECK(strcmp(s->shards[i].reason, s->shards[i].id == 2 ? "no-zone-available" : "") == 0);
        CHECK((s->shards[i].text[0] != '\0') == (s->shards[i].id == 2));
    }
    CHECK(s != NULL && strcmp(s->meta_reason, "repairing") == 0);
    sv_client_status_free(s);

    /* A node without the scheduler (BAD_REQUEST): today's answer; health unknown. */
    KNOB(meta_reset(); F.meta_unknown = true);
    CHECK_RC(sv_client_status(c, &s), 0);
    CHECK(s != NULL && !s->health_known && !s->sched_known);
    for (size_t i = 0; s != NULL && i < s->n_nodes; i++) {
        CHECK(strcmp(s->nodes[i].state, s->nodes[i].id == 3 ? "down" : "up") == 0);
        /* counts from the map (node 3 is in shard 0 only) and the roles reported */
        CHECK(s->nodes[i].replicas == (s->nodes[i].id == 3 ? 1u : 4u));
        CHECK(s->nodes[i].leaders == (s->nodes[i].id == 3 ? 0u : 2u));
    }
    sv_client_status_free(s);
    KNOB(meta_reset());
    /* Object operations still work with a dead replica in the map. */
    CHECK_RC(sv_client_put(c, "st", "k", "x", 1, SV_IF_ANY, NULL), 0);
    KNOB(F.map_dead_node = false);
    sv_client_close(c);
}

/* Operator calls: the meta group's leader is node 2; node 1 redirects. */

static void test_admin_nodes(void)
{
    KNOB(meta_reset(); F.map_dead_node = true);
    struct sv_client *c = client_new(3000);
    struct sv_node_list *l = NULL;
    CHECK_RC(sv_client_nodes(c, &l), 0);
    CHECK(l != NULL && l->n == 3 && l->epoch == 7 && l->health_known);
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        const struct sv_node_info *n = &l->nodes[i];
        CHECK(n->id == i + 1);
        CHECK(strcmp(n->state, i == 2 ? "down" : "up") == 0);
        CHECK(n->replicas == 4 - i && n->leaders == i);
        CHECK(n->bytes == 8000000 && n->disk_free == 1000000000u * (i + 1));
        CHECK(n->age_ms == (i == 2 ? -1 : 250)); /* node 3: never heard */
        CHECK(strncmp(n->zone, "zone-", 5) == 0 && strncmp(n->address, "127.0.0.1:", 10) == 0);
    }
    sv_client_node_list_free(l);
    /* The second call goes straight to the leader that answered. */
    int nl2 = knob_get(&F.meta_not_leader);
    CHECK_RC(sv_client_nodes(c, &l), 0);
    sv_client_node_list_free(l);
    CHECK(knob_get(&F.meta_not_leader) == nl2);
    sv_client_close(c);

    /* NOT_LEADER without ADDR: the leader's id is looked up in the map. */
    KNOB(F.meta_addr_in_redirect = false);
    int before = knob_get(&F.meta_not_leader);
    for (int k = 0; k < 4; k++) { /* the first endpoint tried rotates: both orders */
        c = client_new(3000);
        l = NULL;
        CHECK_RC(sv_client_nodes(c, &l), 0);
        CHECK(l != NULL && l->n == 3);
        sv_client_node_list_free(l);
        sv_client_close(c);
    }
    CHECK(knob_get(&F.meta_not_leader) > before); /* node 1 was asked and redirected */
    KNOB(meta_reset(); F.map_dead_node = false);
}

static void test_admin_health_log(void)
{
    KNOB(meta_reset(); F.health_shard = 1; F.health_known = false);
    struct sv_client *c = client_new(3000);
    struct sv_health *h = NULL;
    CHECK_RC(sv_client_health(c, &h), 0);
    CHECK(h != NULL && h->n == 2 && !h->known && h->epoch == 7);
    if (h != NULL && h->n == 2) {
        CHECK(h->groups[0].group == 2); /* shard 1 */
        CHECK(strcmp(h->groups[0].reason, "no-zone-available") == 0);
        CHECK(strstr(h->groups[0].text, "zone other than zone-b") != NULL);
        CHECK(h->groups[0].chunks_left == -1);
        CHECK(h->groups[0].n_replicas == 1 && h->groups[0].replicas[0] == 2);
        CHECK(h->groups[1].group == 0 && h->groups[1].chunks_left == 12);
        CHECK(h->groups[1].text[0] == '\0');
    }
    sv_client_health_free(h);
    struct sv_sched_log *l = NULL;
    CHECK_RC(sv_client_sched_log(c, &l), 0);
    CHECK(l != NULL && l->n == 2);
    if (l != NULL && l->n == 2) {
        CHECK(l->events[0].time_ms == 1700000000123u);
        CHECK(strcmp(l->events[0].action, "state") == 0);
        CHECK(strcmp(l->events[0].reason, "heartbeat-timeout") == 0);
        CHECK(l->events[0].group == -1 && l->events[0].node == 3);
        CHECK(strcmp(l->events[1].action, "replace") == 0 && l->events[1].group == 2);
    }
    sv_client_sched_log_free(l);
    sv_client_close(c);
    KNOB(meta_reset());
}

static void test_admin_changes(void)
{
    KNOB(meta_reset());
    struct sv_client *c = client_new(3000);
    /* A refusal comes back with the leader's sentence. */
    CHECK_RC(sv_client_node_remove(c, 1, false), SV_E_BAD_ARGUMENT);
    CHECK(strstr(sv_client_errmsg(), "node 1 holds 4 replicas: drain it first") != NULL);
    CHECK_RC(sv_client_node_drain(c, 9, false), SV_E_BAD_ARGUMENT);
    CHECK(strcmp(sv_client_errmsg(), "no node 9 in the cluster map") == 0);
    CHECK_RC(sv_client_node_drain(c, 1, false), 0);
    CHECK(sv_client_errmsg()[0] == '\0');
    pthread_mutex_lock(&F.lock);
    CHECK(F.node_state[0] != NULL && strcmp(F.node_state[0], "draining") == 0);
    pthread_mutex_unlock(&F.lock);
    CHECK_RC(sv_client_node_drain(c, 1, true), 0);
    pthread_mutex_lock(&F.lock);
    CHECK(F.node_state[0] != NULL && strcmp(F.node_state[0], "up") == 0);
    pthread_mutex_unlock(&F.lock);
    CHECK_RC(sv_client_node_remove(c, 1, true), 0);

    struct sv_cluster_settings st;
    memset(&st, 0xff, sizeof(st));
    CHECK_RC(sv_client_cluster_set(c, NULL, 0, &st), 0);
    CHECK(st.epoch == 7 && st.down_after_s == 10 && st.evict_after_s == 60 && st.auto_evict &&
          st.repair_rate == 64u << 20 && st.moves_per_node == 2);
    CHECK_RC(sv_client_cluster_set(c, "down-after", 30, &st), 0);
    CHECK(st.down_after_s == 30 && st.evict_after_s == 60);
    CHECK_RC(sv_client_cluster_set(c, "auto-evict", 0, NULL), 0);
    CHECK_RC(sv_client_cluster_set(c, "evict-after", 5, &st), SV_E_BAD_ARGUMENT);
    CHECK(strcmp(sv_client_errmsg(), "evict-after is below down-after") == 0);
    int sets = knob_get(&F.n_req[SV_MSG_CLUSTER_SET]);
    CHECK_RC(sv_client_cluster_set(c, "frob", 1, NULL), SV_E_BAD_ARGUMENT);
    CHECK(strstr(sv_client_errmsg(), "unknown setting") != NULL);
    CHECK_RC(sv_client_cluster_set(c, "auto-evict", 2, NULL), SV_E_BAD_ARGUMENT);
    CHECK(knob_get(&F.n_req[SV_MSG_CLUSTER_SET]) == sets); /* refused before sending */
    CHECK_RC(sv_client_cluster_set(c, NULL, 0, &st), 0);
    CHECK(st.down_after_s == 30 && !st.auto_evict);
    sv_client_close(c);
    KNOB(meta_reset());
}

static void test_admin_unavailable(void)
{
    KNOB(meta_reset(); F.meta_leader = -1);
    struct sv_client *c = client_new(400);
    uint64_t t0 = now_ms();
    struct sv_node_list *l = NULL;
    CHECK_RC(sv_client_nodes(c, &l), SV_E_UNAVAILABLE);
    CHECK(l == NULL);
    CHECK(now_ms() - t0 < 3000);
    CHECK(strstr(sv_client_errmsg(), "no meta group leader answered") != NULL);
    CHECK(strstr(sv_client_errmsg(), "unavailable") != NULL);
    /* Status still works, with health unknown and states from reachability. */
    struct sv_cluster_status *s = NULL;
    CHECK_RC(sv_client_status(c, &s), 0);
    CHECK(s != NULL && !s->health_known && !s->sched_known);
    for (size_t i = 0; s != NULL && i < s->n_nodes; i++)
        CHECK(strcmp(s->nodes[i].state, "up") == 0 && s->nodes[i].reachable);
    sv_client_status_free(s);
    sv_client_close(c);
    KNOB(meta_reset());
}

/* A standby (or fenced) site answers every write READ_ONLY: final at once,
 * whatever the answer names, at every step of a chunked put. */
static void test_read_only(void)
{
    CHECK_RC(sv__status_err(SV_ST_READ_ONLY), SV_E_READ_ONLY);
    for (int st = SV_ST_OK + 1; st < SV_ST_LAST_; st++)
        CHECK(sv__status_err(st) < 0 && sv__status_err(st) != SV_E_PROTOCOL);
    CHECK(strcmp(sv_client_strerror(SV_E_READ_ONLY), "read only") == 0);

    struct sv_client *c = client_new(3000);
    uint8_t *buf = malloc(3 * MiB);
    fill(buf, 3 * MiB, 13);
    CHECK_RC(sv_client_put(c, "ro", "k", "before", 6, SV_IF_ANY, NULL), 0);
    KNOB(F.read_only = RO_WRITES);
    const char *said = "site dr-b is a standby: writes go to site dr-a";
    int puts = knob_get(&F.n_req[SV_MSG_PUT]), nl = knob_get(&F.not_leader);
    uint64_t t0 = now_ms();
    CHECK_RC(sv_client_put(c, "ro", "k", "after", 5, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strcmp(sv_client_errmsg(), said) == 0);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT]) - puts == 1); /* not retried, nor sent to ADDR */
    int begins = knob_get(&F.n_req[SV_MSG_PUT_BEGIN]);
    int chunks = knob_get(&F.n_req[SV_MSG_PUT_CHUNK]);
    int commits = knob_get(&F.n_req[SV_MSG_PUT_COMMIT]);
    struct src s = {buf, 3 * MiB, 0, 1};
    CHECK_RC(sv_client_put_stream(c, "ro", "big", -1, SV_IF_ANY, NULL, src_read, &s),
             SV_E_READ_ONLY);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_BEGIN]) - begins == 1);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_CHUNK]) == chunks);
    int deletes = knob_get(&F.n_req[SV_MSG_DELETE]);
    CHECK_RC(sv_client_delete(c, "ro", "k", SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strcmp(sv_client_errmsg(), said) == 0);
    CHECK(knob_get(&F.n_req[SV_MSG_DELETE]) - deletes == 1);
    CHECK(now_ms() - t0 < 1000); /* no backoff: a retry would wait 25 ms or more per attempt */
    /* Reads go on: the standby serves them. */
    void *got = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "ro", "k", SV_LINEARIZABLE, &got, &len, NULL), 0);
    CHECK(got != NULL && len == 6 && memcmp(got, "before", 6) == 0);
    free(got);

    /* Fenced during an upload: a chunk's answer ends it, nothing is committed. */
    KNOB(F.read_only = RO_CHUNKS);
    begins = knob_get(&F.n_req[SV_MSG_PUT_BEGIN]);
    CHECK_RC(sv_client_put(c, "ro", "big", buf, 3 * MiB, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_BEGIN]) - begins == 1);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_COMMIT]) == commits);
    /* Fenced before the commit: one PUT_COMMIT, answered READ_ONLY. */
    KNOB(F.read_only = RO_COMMIT);
    CHECK_RC(sv_client_put(c, "ro", "big", buf, 3 * MiB, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_COMMIT]) - commits == 1);
    CHECK(strcmp(sv_client_errmsg(), said) == 0);
    CHECK(knob_get(&F.not_leader) == nl);
    KNOB(F.read_only = RO_NONE);
    CHECK_RC(sv_client_stat(c, "ro", "big", SV_LINEARIZABLE, &(struct sv_stat){0}), SV_E_NOT_FOUND);
    free(buf);
    sv_client_close(c);
}

/* Requests of type that site (0: A, 1: B) received so far. */
static int site_req(int site, uint32_t type)
{
    return knob_get(&F.site_req[site][type]);
}

/* The writes (per type) and MAPs a site received so far. */
struct writes {
    int put, begin, chunk, commit, del, map;
};

static struct writes site_writes(int site)
{
    return (struct writes){site_req(site, SV_MSG_PUT),       site_req(site, SV_MSG_PUT_BEGIN),
                           site_req(site, SV_MSG_PUT_CHUNK), site_req(site, SV_MSG_PUT_COMMIT),
                           site_req(site, SV_MSG_DELETE),    site_req(site, SV_MSG_MAP)};
}

static bool same_write_both_sites(void)
{
    pthread_mutex_lock(&F.lock);
    bool same = F.site_session[0] == F.site_session[1] && F.site_seq[0] == F.site_seq[1] &&
                F.site_seq[0] != 0;
    pthread_mutex_unlock(&F.lock);
    return same;
}

/* A client given the nodes of both sites follows the active one: a write
 * site A refuses READ_ONLY goes to site B once, with the same session and
 * seq; the client stays on B (later writes, refreshes after an UNAVAILABLE);
 * a READ_ONLY there switches back; both sites read-only is final after one
 * write to each; with site A's endpoints only, READ_ONLY is final as before. */
/* Both sites' endpoints, A a standby and B the primary, their MAP answers
 * saying so: whichever site's map a new client asks first, its first read
 * goes to B (a standby's linearizable read is of its own, older, state). */
static void test_dr_prefer_primary(void)
{
    char ep[256];
    snprintf(ep, sizeof(ep), "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", F.port[0],
             F.port[1], F.port[2], F.port[3]);
    KNOB(F.read_only = RO_WRITES; F.read_only_b = RO_NONE; F.map_roles = true);
    for (int i = 0; i < 8; i++) { /* each asks a random endpoint first: A half the time */
        struct sv_client *c = client_at(ep, 3000);
        int stats_a = site_req(0, SV_MSG_STAT), stats_b = site_req(1, SV_MSG_STAT);
        CHECK_RC(sv_client_stat(c, "fo", "pp", SV_LINEARIZABLE, &(struct sv_stat){0}),
                 SV_E_NOT_FOUND);
        CHECK_MSG(site_req(0, SV_MSG_STAT) == stats_a && site_req(1, SV_MSG_STAT) - stats_b == 1,
                  "A %d->%d B %d->%d", stats_a, site_req(0, SV_MSG_STAT), stats_b,
                  site_req(1, SV_MSG_STAT));
        sv_client_close(c);
    }
    /* Both standby (no primary named): the first map taken is kept. */
    KNOB(F.read_only_b = RO_WRITES);
    struct sv_client *c = client_at(ep, 3000);
    CHECK_RC(sv_client_stat(c, "fo", "pp", SV_LINEARIZABLE, &(struct sv_stat){0}), SV_E_NOT_FOUND);
    sv_client_close(c);
    KNOB(F.read_only = RO_NONE; F.read_only_b = RO_NONE; F.map_roles = false);
}

static void test_dr_follow(void)
{
    const char *said_a = "site dr-b is a standby: writes go to site dr-a";
    const char *said_b = "site dr-a is fenced: writes go to site dr-b";
    char ep[256];
    /* Any order: B's node 1, A's node 1, B's node 2, A's node 2. */
    snprintf(ep, sizeof(ep), "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", F.port[2],
             F.port[0], F.port[3], F.port[1]);
    /* Site B answers no MAP yet: the client's first map is site A's. */
    KNOB(F.read_only = RO_WRITES; F.read_only_b = RO_NONE; F.map_down_b = true);
    struct sv_client *c = client_at(ep, 3000);
    int stats_a = site_req(0, SV_MSG_STAT);
    CHECK_RC(sv_client_stat(c, "fo", "k", SV_LINEARIZABLE, &(struct sv_stat){0}), SV_E_NOT_FOUND);
    CHECK(site_req(0, SV_MSG_STAT) - stats_a == 1);
    KNOB(F.map_down_b = false);

    /* Refused by A, sent to B once: one PUT each, one write applied. */
    struct writes a = site_writes(0), b = site_writes(1);
    int applied = knob_get(&F.applied_writes);
    uint64_t v1 = 0;
    CHECK_RC(sv_client_put(c, "fo", "k", "one", 3, SV_IF_ANY, &v1), 0);
    CHECK(site_writes(0).put - a.put == 1);
    CHECK(site_writes(1).put - b.put == 1);
    CHECK(site_writes(1).map - b.map >= 1);
    CHECK(same_write_both_sites()); /* the same session and seq: exactly once */
    CHECK(knob_get(&F.applied_writes) - applied == 1);
    CHECK(v1 > 0);

    /* Later calls go straight to B: no request to A, no MAP anywhere. */
    uint8_t *buf = malloc(3 * MiB);
    fill(buf, 3 * MiB, 17);
    a = site_writes(0);
    b = site_writes(1);
    CHECK_RC(sv_client_put(c, "fo", "k", "two", 3, SV_IF_ANY, NULL), 0);
    CHECK_RC(sv_client_delete(c, "fo", "k", SV_IF_ANY, NULL), 0);
    CHECK_RC(sv_client_put(c, "fo", "big", buf, 3 * MiB, SV_IF_ANY, NULL), 0);
    CHECK_RC(sv_client_put(c, "fo", "k", "three", 5, SV_IF_ANY, NULL), 0);
    struct writes a2 = site_writes(0), b2 = site_writes(1);
    CHECK(a2.put == a.put && a2.del == a.del && a2.begin == a.begin && a2.chunk == a.chunk &&
          a2.commit == a.commit);
    CHECK(b2.put - b.put == 2 && b2.del - b.del == 1 && b2.begin - b.begin == 1 &&
          b2.chunk - b.chunk == 3 && b2.commit - b.commit == 1);
    CHECK(a2.map == a.map && b2.map == b.map);
    /* A linearizable read goes to the site held. */
    int gets_a = site_req(0, SV_MSG_GET), gets_b = site_req(1, SV_MSG_GET);
    void *got = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "fo", "k", SV_LINEARIZABLE, &got, &len, NULL), 0);
    CHECK(got != NULL && len == 5 && memcmp(got, "three", 5) == 0);
    free(got);
    CHECK(site_req(0, SV_MSG_GET) == gets_a && site_req(1, SV_MSG_GET) - gets_b == 1);

    /* A refresh (after an UNAVAILABLE) asks B's nodes first: the client stays
     * there. (Asking the endpoints in turn would land on A half the time.) */
    a = site_writes(0);
    b = site_writes(1);
    for (int i = 0; i < 6; i++) {
        KNOB(F.unavailable_left = 1);
        CHECK_RC(sv_client_put(c, "fo", "k", "four", 4, SV_IF_ANY, NULL), 0);
    }
    CHECK(site_writes(0).put == a.put && site_writes(0).map == a.map);
    CHECK(site_writes(1).put - b.put == 12 && site_writes(1).map - b.map >= 6);

    /* B fenced, A promoted: back to A the same way, and A's from then on. */
    KNOB(F.read_only = RO_NONE; F.read_only_b = RO_WRITES);
    a = site_writes(0);
    b = site_writes(1);
    CHECK_RC(sv_client_put(c, "fo", "k", "five", 4, SV_IF_ANY, NULL), 0);
    CHECK(site_writes(0).put - a.put == 1 && site_writes(1).put - b.put == 1);
    CHECK(same_write_both_sites());
    CHECK_RC(sv_client_put(c, "fo", "k", "six", 3, SV_IF_ANY, NULL), 0);
    CHECK(site_writes(0).put - a.put == 2 && site_writes(1).put - b.put == 1);

    /* Both read-only (A fenced, B not promoted yet): each site once, then
     * READ_ONLY with the last sentence, at once. The client holds A. */
    KNOB(F.read_only = RO_WRITES);
    a = site_writes(0);
    b = site_writes(1);
    uint64_t t0 = now_ms();
    CHECK_RC(sv_client_put(c, "fo", "k", "seven", 5, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strcmp(sv_client_errmsg(), said_b) == 0);
    CHECK(site_writes(0).put - a.put == 1 && site_writes(1).put - b.put == 1);
    /* Now it holds B: B, then A. */
    CHECK_RC(sv_client_delete(c, "fo", "k", SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strcmp(sv_client_errmsg(), said_a) == 0);
    CHECK(site_writes(0).del - a.del == 1 && site_writes(1).del - b.del == 1);
    CHECK_RC(sv_client_put(c, "fo", "big", buf, 3 * MiB, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strcmp(sv_client_errmsg(), said_b) == 0);
    CHECK(site_writes(0).begin - a.begin == 1 && site_writes(1).begin - b.begin == 1);
    CHECK(site_writes(0).chunk == a.chunk && site_writes(1).chunk == b.chunk);
    CHECK(now_ms() - t0 < 1000); /* no backoff */
    CHECK_RC(sv_client_get(c, "fo", "k", SV_STALE, &got, &len, NULL), 0);
    CHECK(got != NULL && len == 3 && memcmp(got, "six", 3) == 0);
    free(got);
    sv_client_close(c);

    /* Site A's endpoints only: READ_ONLY is final, no MAP asked after it. */
    KNOB(F.read_only = RO_WRITES; F.read_only_b = RO_NONE);
    c = client_new(3000);
    CHECK_RC(sv_client_stat(c, "fo", "k", SV_LINEARIZABLE, &(struct sv_stat){0}), 0);
    a = site_writes(0);
    b = site_writes(1);
    CHECK_RC(sv_client_put(c, "fo", "k", "eight", 5, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strcmp(sv_client_errmsg(), said_a) == 0);
    CHECK(site_writes(0).put - a.put == 1 && site_writes(0).map == a.map);
    CHECK(site_writes(1).put == b.put && site_writes(1).map == b.map);
    sv_client_close(c);

    /* An endpoint spelled otherwise than the map spells its node (127.1 for
     * 127.0.0.1) is asked, but its map, site A's own, is not taken for the
     * other site: the write goes to B. */
    snprintf(ep, sizeof(ep), "127.1:%u,127.0.0.1:%u", F.port[0], F.port[2]);
    KNOB(F.map_down_b = true);
    c = client_at(ep, 3000);
    CHECK_RC(sv_client_stat(c, "fo", "k", SV_LINEARIZABLE, &(struct sv_stat){0}), 0);
    KNOB(F.map_down_b = false);
    a = site_writes(0);
    b = site_writes(1);
    CHECK_RC(sv_client_put(c, "fo", "k", "nine", 4, SV_IF_ANY, NULL), 0);
    CHECK(site_writes(0).put - a.put == 1 && site_writes(0).map - a.map == 1);
    CHECK(site_writes(1).put - b.put == 1 && site_writes(1).map - b.map == 1);
    sv_client_close(c);
    KNOB(F.read_only = RO_NONE);
    free(buf);
}

/* The fold of DR_STATUS answers, fed by hand: what each node's answer
 * contributes and how the site's figures follow from the shards'. */
static struct sv_item dr_item(uint64_t shard, const char *state, uint64_t frontier_ms,
                              uint64_t applied)
{
    struct sv_item it = {.id = shard, .state = lit(state), .applied = applied, .commit = 500};
    it.fields = 1u << SV_I_ID | 1u << SV_I_STATE | 1u << SV_I_APPLIED | 1u << SV_I_COMMIT;
    if (frontier_ms > 0) {
        it.mtime_ms = frontier_ms;
        it.age_ms = 40;
        it.fields |= 1u << SV_I_MTIME_MS | 1u << SV_I_AGE_MS;
    }
    return it;
}

static struct sv_msg dr_answer(const char *role, uint64_t epoch, uint64_t clock_ms,
                               struct sv_item *items, uint32_t n)
{
    struct sv_msg m = {.key = lit(role), .bucket = lit("east"), .prefix = lit("west")};
    m.version = epoch;
    m.mtime_ms = clock_ms;
    m.items = items;
    m.n_items = n;
    m.fields = 1u << SV_F_STATUS | 1u << SV_F_KEY | 1u << SV_F_BUCKET | 1u << SV_F_PREFIX |
               1u << SV_F_VERSION | 1u << SV_F_ITEMS;
    if (clock_ms > 0)
        m.fields |= 1u << SV_F_MTIME_MS;
    return m;
}

static void test_dr_fold(void)
{
    /* Nothing answered yet: every shard unknown, and so the site. */
    struct sv_dr_status *s = sv__dr_status_new(3);
    CHECK(s != NULL);
    if (s == NULL)
        return;
    sv__dr_status_finish(s);
    CHECK(s->frontier_ms == -1 && s->lag_ms == -1 && s->n_answered == 0 && !s->uniform);
    for (size_t i = 0; i < 3; i++)
        CHECK(s->shards[i].id == i && strcmp(s->shards[i].state, "unknown") == 0 &&
              s->shards[i].frontier_ms == -1 && s->shards[i].lag_ms == -1 &&
              s->shards[i].last_contact_ms == -1);

    /* Node A (clock 10 000) leads shards 0 and 1; shard 2 has no leader yet. */
    struct sv_item a[2] = {dr_item(0, "streaming", 9000, 70), dr_item(1, "streaming", 9500, 80)};
    struct sv_msg ma = dr_answer("standby", 2, 10000, a, 2);
    CHECK_RC(sv__dr_status_add(s, &ma), 0);
    sv__dr_status_finish(s);
    CHECK(strcmp(s->role, "standby") == 0 && strcmp(s->site, "east") == 0 &&
          strcmp(s->peer, "west") == 0 && s->epoch == 2 && s->n_answered == 1 && s->uniform);
    CHECK(s->shards[0].lag_ms == 1000 && s->shards[1].lag_ms == 500);
    CHECK(s->shards[0].applied == 70 && s->shards[0].commit == 500);
    CHECK(s->shards[0].last_contact_ms == 40 && s->shards[0].frontier_ms == 9000);
    CHECK(strcmp(s->shards[2].state, "unknown") == 0);
    CHECK(s->frontier_ms == -1 && s->lag_ms == -1); /* shard 2 unknown: the site too */

    /* Node B, its clock 40 s ahead, leads shard 2 (and names shards out of the
     * map, or none, which are ignored). Another role: the first node's stays. */
    struct sv_item b[3] = {dr_item(2, "stalled", 45000, 90),
                           dr_item(7, "streaming", 1, 1),
                           {.state = lit("streaming")}};
    b[0].reason = lit("peer-unreachable");
    b[0].text = lit("no answer for 30 s");
    b[0].fields |= 1u << SV_I_REASON | 1u << SV_I_TEXT;
    struct sv_msg mb = dr_answer("primary", 5, 50000, b, 3);
    CHECK_RC(sv__dr_status_add(s, &mb), 0);
    sv__dr_status_finish(s);
    CHECK(strcmp(s->role, "standby") == 0 && s->epoch == 5 && s->n_answered == 2 && !s->uniform);
    CHECK(s->shards[2].lag_ms == 5000); /* B's clock: with A's it would be behind the frontier */
    CHECK(strcmp(s->shards[2].state, "stalled") == 0);
    CHECK(strcmp(s->shards[2].reason, "peer-unreachable") == 0 &&
          strcmp(s->shards[2].text, "no answer for 30 s") == 0);
    CHECK(s->frontier_ms == 9000); /* the lowest frontier */
    CHECK(s->lag_ms == 5000);      /* the highest lag */

    /* Two nodes claim shard 0: the one that applied more wins; a frontier
     * ahead of the node's clock is no lag; an answer without a clock leaves the
     * lag unknown. */
    struct sv_item c0[1] = {dr_item(0, "reseeding", 9999, 60)};
    struct sv_msg mc = dr_answer("standby", 1, 10000, c0, 1);
    CHECK_RC(sv__dr_status_add(s, &mc), 0);
    CHECK(strcmp(s->shards[0].state, "streaming") == 0 && s->shards[0].frontier_ms == 9000);
    c0[0] = dr_item(0, "streaming", 12000, 71);
    CHECK_RC(sv__dr_status_add(s, &mc), 0);
    CHECK(s->shards[0].frontier_ms == 12000 && s->shards[0].lag_ms == 0);
    c0[0] = dr_item(0, "streaming", 9200, 72);
    mc = dr_answer("standby", 1, 0, c0, 1);
    CHECK_RC(sv__dr_status_add(s, &mc), 0);
    sv__dr_status_finish(s);
    CHECK(s->shards[0].frontier_ms == 9200 && s->shards[0].lag_ms == -1);
    CHECK(s->frontier_ms == 9200 && s->lag_ms == -1);

    /* Any node fenced: the site is reported fenced. Without a role: refused. */
    struct sv_msg mf = dr_answer("fenced", 5, 50000, NULL, 0);
    CHECK_RC(sv__dr_status_add(s, &mf), 0);
    CHECK(strcmp(s->role, "fenced") == 0);
    struct sv_msg ms = dr_answer("standby", 5, 50000, NULL, 0);
    CHECK_RC(sv__dr_status_add(s, &ms), 0);
    CHECK(strcmp(s->role, "fenced") == 0);
    size_t answered = s->n_answered;
    struct sv_msg mn = dr_answer("standby", 5, 50000, NULL, 0);
    mn.fields &= ~(1u << SV_F_KEY);
    CHECK_RC(sv__dr_status_add(s, &mn), SV_E_PROTOCOL);
    CHECK(s->n_answered == answered);
    sv_client_dr_status_free(s);

    /* A first answer fenced stays fenced; a primary's shards (no frontier). */
    s = sv__dr_status_new(1);
    CHECK(s != NULL);
    if (s == NULL)
        return;
    struct sv_item p[1] = {dr_item(0, "shipping", 0, 33)};
    struct sv_msg mp1 = dr_answer("fenced", 9, 50000, p, 1);
    struct sv_msg mp2 = dr_answer("primary", 9, 50000, NULL, 0);
    CHECK_RC(sv__dr_status_add(s, &mp1), 0);
    CHECK_RC(sv__dr_status_add(s, &mp2), 0);
    sv__dr_status_finish(s);
    CHECK(strcmp(s->role, "fenced") == 0);
    CHECK(strcmp(s->shards[0].state, "shipping") == 0 && s->shards[0].applied == 33);
    CHECK(s->shards[0].frontier_ms == -1 && s->shards[0].lag_ms == -1 &&
          s->shards[0].last_contact_ms == -1);
    CHECK(s->frontier_ms == -1 && s->lag_ms == -1);
    sv_client_dr_status_free(s);

    /* uniform: every answer with the first one's role and epoch. Another
     * epoch, or another role, ends it for good. */
    for (int k = 0; k < 3; k++) {
        s = sv__dr_status_new(1);
        CHECK(s != NULL);
        if (s == NULL)
            return;
        struct sv_msg u1 = dr_answer("primary", 6, 50000, NULL, 0);
        struct sv_msg u2 =
            dr_answer(k == 2 ? "standby" : "primary", k == 1 ? 5 : 6, 50000, NULL, 0);
        CHECK_RC(sv__dr_status_add(s, &u1), 0);
        CHECK_RC(sv__dr_status_add(s, &u1), 0);
        CHECK(s->uniform);
        CHECK_RC(sv__dr_status_add(s, &u2), 0);
        CHECK_RC(sv__dr_status_add(s, &u1), 0);
        CHECK(s->uniform == (k == 0) && s->epoch == 6 && strcmp(s->role, "primary") == 0);
        sv_client_dr_status_free(s);
    }
    sv_client_dr_status_free(NULL);
}

/* sv_client_dr_status against the fake nodes (dr_reset's defaults). */
static void test_dr_status(void)
{
    KNOB(dr_reset());
    struct sv_client *c = client_new(3000);
    struct sv_dr_status *s = NULL;
    CHECK_RC(sv_client_dr_status(c, &s), 0);
    CHECK(s != NULL && s->n_shards == N_SHARDS && s->n_nodes == 2 && s->n_answered == 2);
    if (s == NULL)
        return;
    CHECK(strcmp(s->role, "standby") == 0 && strcmp(s->site, "dr-b") == 0 &&
          strcmp(s->peer, "dr-a") == 0 && s->epoch == 4 && !s->uniform); /* epochs 3 and 4 */
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_dr_shard *sh = &s->shards[i];
        CHECK(sh->id == i && strcmp(sh->state, "streaming") == 0);
        CHECK(sh->lag_ms == 1000 * ((int64_t)i + 1)); /* each by its own leader's clock */
        CHECK(sh->applied == 1000 + i && sh->commit == 1010 + i);
        CHECK(sh->last_contact_ms == 100 * ((int64_t)i + 1));
        CHECK(sh->reason[0] == '\0' && sh->text[0] == '\0');
    }
    CHECK(s->frontier_ms == 1700000097000); /* shard 2: node 1's clock - 3 s */
    CHECK(s->lag_ms == 4000);               /* shard 3 */
    sv_client_dr_status_free(s);

    /* Shard 1 led by nobody who answers, shard 2 stalled, node 2 fenced. */
    KNOB(F.dr_unled[1] = true; F.dr_state[2] = "stalled"; F.dr_role[1] = "fenced");
    CHECK_RC(sv_client_dr_status(c, &s), 0);
    CHECK(s != NULL && strcmp(s->role, "fenced") == 0);
    if (s != NULL) {
        CHECK(strcmp(s->shards[1].state, "unknown") == 0 && s->shards[1].lag_ms == -1 &&
              s->shards[1].frontier_ms == -1 && s->shards[1].applied == 0);
        CHECK(strcmp(s->shards[2].state, "stalled") == 0 &&
              strcmp(s->shards[2].reason, "peer-unreachable") == 0);
        CHECK(s->frontier_ms == -1 && s->lag_ms == -1);
    }
    sv_client_dr_status_free(s);

    /* A node without DR_STATUS, and one down: the others' shards are known. */
    KNOB(dr_reset(); F.dr_role[1] = NULL; F.map_dead_node = true);
    CHECK_RC(sv_client_dr_status(c, &s), 0);
    CHECK(s != NULL && s->n_nodes == 3 && s->n_answered == 1);
    for (size_t i = 0; s != NULL && i < s->n_shards; i++)
        CHECK(strcmp(s->shards[i].state, i % 2 ? "unknown" : "streaming") == 0);
    sv_client_dr_status_free(s);
    KNOB(F.map_dead_node = false);

    /* No node knows DR_STATUS: their refusal. */
    KNOB(F.dr_role[0] = NULL);
    s = NULL;
    CHECK_RC(sv_client_dr_status(c, &s), SV_E_BAD_ARGUMENT);
    CHECK(s == NULL && strstr(sv_client_errmsg(), "unknown request type") != NULL);
    /* No node answers at all (the map comes all the same). */
    KNOB(dr_reset(); F.dr_drop = true);
    CHECK_RC(sv_client_dr_status(c, &s), SV_E_UNAVAILABLE);
    CHECK(s == NULL && strstr(sv_client_errmsg(), "no node answered: tried 127.0.0.1:") != NULL);
    KNOB(dr_reset());
    sv_client_close(c);
}

/* DR_PROMOTE and DR_DEMOTE go to the meta leader (node 2; node 1 redirects). */
static void test_dr_promote(void)
{
    KNOB(meta_reset(); dr_reset());
    struct sv_client *c = client_new(3000);
    struct sv_dr_promote p;
    memset(&p, 0xff, sizeof(p));
    int proms = knob_get(&F.n_req[SV_MSG_DR_PROMOTE]);
    CHECK_RC(sv_client_dr_promote(c, false, &p), 0);
    CHECK(p.site_epoch == 5 && p.map_epoch == 7); /* the highest epoch (4) + 1 */
    CHECK(sv_client_errmsg()[0] == '\0');
    pthread_mutex_lock(&F.lock);
    CHECK(F.dr_flags_seen == 0); /* FLAGS sent, force clear */
    CHECK(F.n_req[SV_MSG_DR_PROMOTE] - proms >= 1);
    pthread_mutex_unlock(&F.lock);
    /* The nodes follow: every one primary at the new epoch, the site uniform. */
    struct sv_dr_status *s = NULL;
    CHECK_RC(sv_client_dr_status(c, &s), 0);
    CHECK(s != NULL && strcmp(s->role, "primary") == 0 && s->epoch == 5 && s->uniform);
    sv_client_dr_status_free(s);
    /* No longer a standby: refused with the leader's sentence. */
    CHECK_RC(sv_client_dr_promote(c, true, NULL), SV_E_BAD_ARGUMENT);
    CHECK(strcmp(sv_client_errmsg(), "site dr-b is not a standby (it is primary)") == 0);

    /* The primary still answers: refused without force, promoted with it. */
    KNOB(dr_reset(); F.dr_primary_answers = true);
    CHECK_RC(sv_client_dr_promote(c, false, &p), SV_E_BAD_ARGUMENT);
    CHECK(strstr(sv_client_errmsg(), "the primary site dr-a answered 1.2 s ago") != NULL);
    pthread_mutex_lock(&F.lock);
    CHECK(F.dr_flags_seen == 0 && F.dr_next_role == NULL);
    pthread_mutex_unlock(&F.lock);
    CHECK_RC(sv_client_dr_promote(c, true, NULL), 0);
    pthread_mutex_lock(&F.lock);
    CHECK(F.dr_flags_seen == 1 && F.dr_next_epoch == 5);
    pthread_mutex_unlock(&F.lock);

    /* An answer without the site epoch: recorded, but nothing to wait for. */
    KNOB(dr_reset(); F.dr_no_epoch = true);
    CHECK_RC(sv_client_dr_promote(c, false, &p), SV_E_PROTOCOL);
    CHECK(strstr(sv_client_errmsg(), "no site epoch") != NULL);

    /* Demote: every node fenced, the site epoch unchanged; again: refused. */
    KNOB(dr_reset());
    uint64_t epoch = 0;
    int dems = knob_get(&F.n_req[SV_MSG_DR_DEMOTE]);
    CHECK_RC(sv_client_dr_demote(c, &epoch), 0);
    CHECK(epoch == 4 && knob_get(&F.n_req[SV_MSG_DR_DEMOTE]) - dems >= 1);
    CHECK_RC(sv_client_dr_status(c, &s), 0);
    CHECK(s != NULL && strcmp(s->role, "fenced") == 0 && s->epoch == 4);
    sv_client_dr_status_free(s);
    CHECK_RC(sv_client_dr_demote(c, NULL), SV_E_BAD_ARGUMENT);
    CHECK(strcmp(sv_client_errmsg(), "site dr-b is already fenced") == 0);
    KNOB(dr_reset(); F.dr_no_epoch = true);
    CHECK_RC(sv_client_dr_demote(c, &epoch), SV_E_PROTOCOL);
    sv_client_close(c);

    /* No meta leader: retried until the deadline, then unavailable. */
    KNOB(dr_reset(); F.meta_leader = -1);
    c = client_new(400);
    uint64_t t0 = now_ms();
    CHECK_RC(sv_client_dr_promote(c, false, &p), SV_E_UNAVAILABLE);
    CHECK_RC(sv_client_dr_demote(c, &epoch), SV_E_UNAVAILABLE);
    CHECK(now_ms() - t0 < 3000);
    CHECK(strstr(sv_client_errmsg(), "no meta group leader answered") != NULL);
    pthread_mutex_lock(&F.lock);
    CHECK(strcmp(F.dr_role[0], "standby") == 0 && F.dr_next_role == NULL);
    pthread_mutex_unlock(&F.lock);
    sv_client_close(c);
    KNOB(meta_reset(); dr_reset());
}

static void test_open_errors(void)
{
    struct sv_client *c = NULL;
    struct sv_client_options o = {.endpoints = "127.0.0.1:1", .ca_file = "/nonexistent/ca.pem"};
    CHECK_RC(sv_client_open(&o, &c), SV_E_TLS);
    CHECK(sv_client_errmsg()[0] != '\0');
    o = (struct sv_client_options){.endpoints = "nocolon", .ca_file = ca_path};
    CHECK_RC(sv_client_open(&o, &c), SV_E_BAD_ARGUMENT);
    o = (struct sv_client_options){.endpoints = ",", .ca_file = ca_path};
    CHECK_RC(sv_client_open(&o, &c), SV_E_BAD_ARGUMENT);
    CHECK(strcmp(sv_client_strerror(SV_E_VERSION_CONFLICT), "version conflict") == 0);
    CHECK(strcmp(sv_client_strerror(12345), "unknown error") == 0);
}

static void test_upload_failover(void)
{
    struct sv_client *c = client_new(10000);
    size_t n = 6 * MiB + 7;
    uint8_t *buf = malloc(n);
    fill(buf, n, 21);
    /* A chunk's answer is lost with its connection: the chunk is sent again.
     * The server stalls after the first chunk and closes once the client's
     * window is shut; a small receive buffer makes sure that the client then
     * still has chunks to send and is blocked in send (not only waiting for
     * answers), so it must notice the close there rather than at the deadline. */
    int chunks = knob_get(&F.n_req[SV_MSG_PUT_CHUNK]);
    KNOB(F.drop_chunk_left = 1; F.rcvbuf = 64 * 1024);
    uint64_t t0 = now_ms();
    CHECK_RC(sv_client_put(c, "fo", "a", buf, n, SV_IF_ANY, NULL), 0);
    CHECK(now_ms() - t0 < 5000); /* well within the 10 s deadline */
    KNOB(F.rcvbuf = 0);
    CHECK(knob_get(&F.drop_chunk_left) == 0);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_CHUNK]) - chunks > 7);
    void *got = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "fo", "a", SV_LINEARIZABLE, &got, &len, NULL), 0);
    CHECK(len == n && got != NULL && memcmp(got, buf, n) == 0);
    free(got);
    /* Leadership moves in the middle of an upload: the new leader takes the
     * rest of the same upload. */
    int nl = knob_get(&F.not_leader), begins = knob_get(&F.n_req[SV_MSG_PUT_BEGIN]);
    KNOB(F.flip_after_chunks = 3);
    CHECK_RC(sv_client_put(c, "fo", "b", buf, n, SV_IF_ANY, NULL), 0);
    CHECK(knob_get(&F.not_leader) > nl);
    CHECK(knob_get(&F.n_req[SV_MSG_PUT_BEGIN]) - begins == 1);
    CHECK_RC(sv_client_get(c, "fo", "b", SV_LINEARIZABLE, &got, &len, NULL), 0);
    CHECK(len == n && got != NULL && memcmp(got, buf, n) == 0);
    free(got);
    KNOB(for (int s = 0; s < N_SHARDS; s++) F.leader[s] = F.map_leader[s] = s % 2);
    free(buf);
    sv_client_close(c);
}

/* svctl against the fake server (when client-test is given --svctl PATH). */

static const char *svctl_path;
static char sv_out[8192], sv_err[2048];

static void slurp(const char *name, char *buf, size_t cap)
{
    char path[SV_TESTCERTS_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
}

/* Run svctl with the cluster's global options and args (shell syntax);
 * its stdout and stderr land in sv_out and sv_err. Returns its exit code. */
static int svctl(const char *global, const char *args)
{
    char cmd[8 * SV_TESTCERTS_PATH_MAX];
    int len =
        snprintf(cmd, sizeof(cmd),
                 "'%s' --endpoints 127.0.0.1:%u,127.0.0.1:%u --ca '%s' %s %s >'%s/out' 2>'%s/err'",
                 svctl_path, F.port[0], F.port[1], ca_path, global, args, dir, dir);
    if (len < 0 || (size_t)len >= sizeof(cmd))
        return -1;
    int st = system(cmd);
    slurp("out", sv_out, sizeof(sv_out));
    slurp("err", sv_err, sizeof(sv_err));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool eq = fa != NULL && fb != NULL;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        eq = ca == cb;
        if (ca == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return eq;
}

static void test_svctl(void)
{
    if (svctl_path == NULL) {
        sv_test_skip("no --svctl PATH");
        return;
    }
    char in[SV_TESTCERTS_PATH_MAX + 16], out[SV_TESTCERTS_PATH_MAX + 16];
    char small[SV_TESTCERTS_PATH_MAX + 16], args[3 * SV_TESTCERTS_PATH_MAX];
    snprintf(in, sizeof(in), "%s/in.bin", dir);
    snprintf(out, sizeof(out), "%s/got.bin", dir);
    snprintf(small, sizeof(small), "%s/small.txt", dir);
    size_t n = 5 * MiB + 3;
    uint8_t *buf = malloc(n);
    fill(buf, n, 77);
    FILE *f = fopen(in, "wb");
    CHECK(f != NULL && fwrite(buf, 1, n, f) == n && fclose(f) == 0);
    f = fopen(small, "w");
    CHECK(f != NULL && fputs("hello svctl\n", f) >= 0 && fclose(f) == 0);
    free(buf);

    snprintf(args, sizeof(args), "put e2e/big.bin '%s'", in);
    CHECK(svctl("", args) == 0);
    CHECK(strtoull(sv_out, NULL, 10) > 0);
    snprintf(args, sizeof(args), "get e2e/big.bin '%s'", out);
    CHECK(svctl("", args) == 0);
    CHECK(files_equal(in, out));
    CHECK(svctl("-o json", "stat e2e/big.bin") == 0);
    CHECK(strstr(sv_out, "\"size\":5242883") != NULL);

    snprintf(args, sizeof(args), "put e2e/small - < '%s'", small);
    CHECK(svctl("-o json", args) == 0);
    CHECK(strstr(sv_out, "{\"version\":") != NULL);
    uint64_t v = strtoull(sv_out + strlen("{\"version\":"), NULL, 10);
    CHECK(svctl("", "get e2e/small") == 0);
    CHECK(strcmp(sv_out, "hello svctl\n") == 0);
    CHECK(svctl("", "get e2e/small --consistency stale") == 0);
    CHECK(svctl("", "ls e2e") == 0);
    CHECK(strstr(sv_out, "big.bin") != NULL && strstr(sv_out, "small") != NULL);
    CHECK(svctl("-o json", "ls e2e --limit 1") == 0);
    CHECK(strstr(sv_out, "\"key\":\"big.bin\"") != NULL && strstr(sv_out, "\"more\":true"));
    CHECK(svctl("", "ls e2e/sm") == 0);
    CHECK(strstr(sv_out, "small") != NULL && strstr(sv_out, "big.bin") == NULL);

    CHECK(svctl("", "rm e2e/small --if-version 999999") == 6);
    CHECK(strncmp(sv_err, "svctl: rm e2e/small: version conflict", 37) == 0);
    snprintf(args, sizeof(args), "put e2e/small '%s' --if-version 0", small);
    CHECK(svctl("", args) == 6);
    snprintf(args, sizeof(args), "rm e2e/small --if-version %llu", (unsigned long long)v);
    CHECK(svctl("", args) == 0);
    CHECK(svctl("", "stat e2e/small") == 3);
    CHECK(strncmp(sv_err, "svctl: stat e2e/small: not found", 32) == 0);
    CHECK(svctl("", "get e2e/nope") == 3);

    CHECK(svctl("-o json", "status") == 0);
    /* The fake nodes send no map epoch: 0. */
    CHECK(strncmp(sv_out, "{\"epoch\":0,\"nodes\":[{\"id\":1,\"address\":\"127.0.0.1:", 48) == 0);
    CHECK(strstr(sv_out, "\"state\":\"up\",\"metrics\":\"127.0.0.1:9101\",") != NULL);
    CHECK(strstr(sv_out, "\"state\":\"up\",\"metrics\":\"127.0.0.1:9102\",") != NULL);
    CHECK(strstr(sv_out, "\"shards\":[{\"id\":0,\"replicas\":[{\"node\":1,\"zone\":\"zone-a\","
                         "\"role\":\"leader\",\"term\":") != NULL);
    CHECK(svctl("", "status") == 0);
    CHECK(strstr(sv_out, "zone-b") != NULL);
    CHECK(strstr(sv_out, "STATE     REPLICAS LEADERS METRICS\n") != NULL);
    /* node 2: the fake meta leader's counts (3 replicas, leads 1 group) */
    CHECK(strstr(sv_out, " up               3       1 127.0.0.1:9102\n") != NULL);

    KNOB(F.always_unavailable = true);
    CHECK(svctl("--timeout 0.3", "stat e2e/big.bin") == 5);
    CHECK(strstr(sv_err, "unavailable") != NULL);
    KNOB(F.always_unavailable = false);

    /* A standby site: exit 7 and the node's sentence, which names the active site. */
    KNOB(F.read_only = RO_WRITES);
    snprintf(args, sizeof(args), "put e2e/ro '%s'", small);
    CHECK(svctl("", args) == 7);
    CHECK(strcmp(sv_err, "svctl: put e2e/ro: read only: site dr-b is a standby: writes go to "
                         "site dr-a\n") == 0);
    CHECK(svctl("", "rm e2e/big.bin") == 7);
    CHECK(svctl("", "stat e2e/big.bin") == 0);
    KNOB(F.read_only = RO_NONE);
    unlink(in);
    unlink(out);
    unlink(small);
}

/* svctl's operator commands against the fake meta leader. */
static void test_svctl_admin(void)
{
    if (svctl_path == NULL) {
        sv_test_skip("no --svctl PATH");
        return;
    }
    KNOB(meta_reset());
    CHECK(svctl("-o json", "node list") == 0);
    const char *head = "{\"epoch\":7,\"health_known\":true,\"nodes\":[{\"id\":1,\"zone\":"
                       "\"zone-a\",\"address\":\"127.0.0.1:";
    CHECK(strncmp(sv_out, head, strlen(head)) == 0);
    CHECK(strstr(sv_out, "\"state\":\"up\",\"replicas\":4,\"leaders\":0,\"bytes\":8000000,"
                         "\"disk_free\":1000000000,\"last_heartbeat_ms\":250}") != NULL);
    CHECK(svctl("", "node list") == 0);
    CHECK(strstr(sv_out, "ID     ZONE       STATE     REPLICAS LEADERS      BYTES  DISK-FREE "
                         "LAST-HEARTBEAT\n") != NULL);
    CHECK(strstr(sv_out, "\n1      zone-a     up               4       0     7.6MiB   953.7MiB "
                         "0.2s ago\n") != NULL);
    CHECK(strstr(sv_out, "health unknown") == NULL);
    KNOB(F.health_known = false);
    CHECK(svctl("", "node list") == 0);
    CHECK(strstr(sv_out, "health unknown") != NULL);

    /* remove: refused with the leader's sentence, exit 1. */
    CHECK(svctl("", "node remove 1") == 1);
    CHECK(strcmp(sv_err, "svctl: node remove 1: bad argument: node 1 holds 4 replicas: drain it "
                         "first (or force)\n") == 0);
    CHECK(svctl("", "node remove 9 --force") == 1);
    CHECK(strstr(sv_err, "no node 9 in the cluster map") != NULL);

    /* drain with progress until done; a stuck shard on the node is shown once. */
    KNOB(F.health_shard = 1);
    CHECK(svctl("", "node drain 2") == 0);
    CHECK(strstr(sv_out, "node 2: 3 replicas left, 7.6MiB left, 0.0 MB/s, ETA unknown\n") != NULL);
    CHECK(strstr(sv_out, "node 2: 2 replicas left, 3.8MiB left, ") != NULL);
    const char *stuck =
        "  stuck: shard 1: no-zone-available: no up node in a zone other than zone-b\n";
    const char *st1 = strstr(sv_out, stuck);
    CHECK(st1 != NULL && strstr(st1 + 1, stuck) == NULL);
    CHECK(strstr(sv_out, "node 2: drained: it holds no replica. Remove it with: svctl node "
                         "remove 2\n") != NULL);
    CHECK(svctl("", "node remove 2") == 0);
    CHECK(strcmp(sv_out, "node 2: removed from the cluster map\n") == 0);
    /* --no-wait, --cancel, --timeout (the drain's own, after the command). */
    CHECK(svctl("", "node drain 1 --no-wait") == 0);
    CHECK(strstr(sv_out, "node 1: drain recorded") != NULL);
    CHECK(svctl("-o json", "node drain 1 --cancel") == 0);
    CHECK(strcmp(sv_out, "{\"node\":1,\"cancelled\":true}\n") == 0);
    uint64_t t0 = now_ms();
    CHECK(svctl("", "node drain 1 --timeout 1.5") == 5);
    CHECK(now_ms() - t0 < 4000);
    CHECK(strstr(sv_err, "not drained after 2 s; the drain goes on") != NULL);

    /* cluster show and set. */
    KNOB(meta_reset());
    CHECK(svctl("-o json", "cluster show") == 0);
    CHECK(strcmp(sv_out, "{\"epoch\":7,\"down_after_s\":10,\"evict_after_s\":60,"
                         "\"auto_evict\":true,\"repair_rate\":67108864,\"moves_per_node\":2,"
                         "\"rebalance\":true}\n") == 0);
    CHECK(svctl("", "cluster set repair-rate 128MiB") == 0);
    CHECK(strstr(sv_out, "repair-rate     128.0MiB/s (134217728 bytes/s)\n") != NULL);
    CHECK(svctl("", "cluster set down-after 2m") == 0);
    CHECK(strstr(sv_out, "down-after      120 s\n") != NULL);
    CHECK(svctl("", "cluster set auto-evict off") == 0);
    CHECK(strstr(sv_out, "auto-evict      off\n") != NULL);
    CHECK(svctl("", "cluster set evict-after 60") == 1);
    CHECK(strstr(sv_err, "svctl: cluster set evict-after: bad argument: evict-after is below "
                         "down-after") != NULL);

    /* sched log: text and JSON. */
    CHECK(svctl("", "sched log") == 0);
    CHECK(strstr(sv_out, "2023-11-14T22:13:20.123Z  state     heartbeat-timeout      -         "
                         "node 3   node 3 down: no heartbeat for 10 s\n") != NULL);
    CHECK(strstr(sv_out, "  replace   node-evicted           shard 1   node 3   shard 1:") != NULL);
    CHECK(svctl("-o json", "sched log") == 0);
    CHECK(strstr(sv_out,
                 "{\"events\":[{\"time_ms\":1700000000123,\"action\":\"state\",\"reason\":"
                 "\"heartbeat-timeout\",\"group\":null,\"shard\":null,\"node\":3,") != NULL);
    CHECK(strstr(sv_out, "\"group\":2,\"shard\":1,\"node\":3,") != NULL);

    /* status: the map's states, counts and the shards below their count. */
    KNOB(meta_reset(); F.node_state[0] = "draining"; F.health_shard = 3);
    CHECK(svctl("-o json", "status") == 0);
    CHECK(strstr(sv_out, "\"state\":\"draining\",\"metrics\":\"127.0.0.1:9101\","
                         "\"reachable\":true,\"replicas\":4,\"leaders\":0}") != NULL);
    CHECK(strstr(sv_out, "\"reason\":\"no-zone-available\",\"text\":\"no up node in a zone "
                         "other than zone-b\",\"chunks_left\":-1}") != NULL);
    CHECK(strstr(sv_out, "{\"id\":3,\"replicas\":[") != NULL);
    CHECK(strstr(sv_out, "],\"health_known\":true,\"meta_reason\":\"repairing\"") != NULL);
    CHECK(svctl("", "status") == 0); /* the fake drains a replica per look: 3 left */
    CHECK(strstr(sv_out, " draining         3       0 127.0.0.1:9101\n") != NULL);
    CHECK(strstr(sv_out, "shards below their replica count:\n  meta: repairing\n  shard 3: "
                         "no-zone-available: no up node in a zone other than zone-b\n") != NULL);
    CHECK(strstr(sv_out, "health unknown") == NULL);
    KNOB(meta_reset(); F.meta_unknown = true);
    CHECK(svctl("", "status") == 0);
    CHECK(strstr(sv_out, "health unknown: the meta group's leader did not answer") != NULL);
    CHECK(svctl("-o json", "status") == 0);
    CHECK(strstr(sv_out, "\"health_known\":false}") != NULL && strstr(sv_out, "reason") == NULL);
    CHECK(svctl("--timeout 0.3", "node list") == 1);
    CHECK(strstr(sv_err, "svctl: node list: bad argument: unknown request type") != NULL);
    KNOB(meta_reset());
}

/* svctl dr status against the fake nodes of standby site dr-b. */
static void test_svctl_dr(void)
{
    if (svctl_path == NULL) {
        sv_test_skip("no --svctl PATH");
        return;
    }
    KNOB(dr_reset(); F.dr_state[1] = "stalled");
    CHECK(svctl("", "dr status -o json") == 0);
    CHECK(strcmp(sv_out,
                 "{\"role\":\"standby\",\"site\":\"dr-b\",\"peer\":\"dr-a\",\"epoch\":4,"
                 "\"frontier_ms\":1700000097000,\"lag_ms\":4000,\"shards\":["
                 "{\"id\":0,\"state\":\"streaming\",\"lag_ms\":1000,\"frontier_ms\":1700000099000,"
                 "\"applied\":1000,\"commit\":1010,\"last_contact_ms\":100},"
                 "{\"id\":1,\"state\":\"stalled\",\"lag_ms\":2000,\"frontier_ms\":1700000198000,"
                 "\"applied\":1001,\"commit\":1011,\"last_contact_ms\":200,"
                 "\"reason\":\"peer-unreachable\"},"
                 "{\"id\":2,\"state\":\"streaming\",\"lag_ms\":3000,\"frontier_ms\":1700000097000,"
                 "\"applied\":1002,\"commit\":1012,\"last_contact_ms\":300},"
                 "{\"id\":3,\"state\":\"streaming\",\"lag_ms\":4000,\"frontier_ms\":1700000196000,"
                 "\"applied\":1003,\"commit\":1013,\"last_contact_ms\":400}]}\n") == 0);
    CHECK(svctl("", "dr status") == 0);
    CHECK(starts_with(sv_out, "site:          dr-b\nrole:          standby\nepoch:         4\n"
                              "peer:          dr-a\nfrontier:      2023-11-14T22:14:57.000Z\n"
                              "lag:           4000 ms\nnodes:         2 of 2 answered\n\n"
                              "SHARD  STATE                LAG  LAST-CONTACT      APPLIED       "
                              "COMMIT REASON\n"));
    CHECK(strstr(sv_out, "\n0      streaming         1000ms      0.1s ago         1000         "
                         "1010 -\n") != NULL);
    CHECK(strstr(sv_out, "\n1      stalled           2000ms      0.2s ago         1001         "
                         "1011 peer-unreachable: no answer from site dr-a for 30 s\n") != NULL);

    /* Unknowns: a shard nobody leads, one whose frontier is not known yet; fenced. */
    KNOB(dr_reset(); F.dr_unled[2] = true; F.dr_frontier_ms[3] = 0; F.dr_role[0] = "fenced");
    CHECK(svctl("-o json", "dr status") == 0);
    CHECK(starts_with(sv_out, "{\"role\":\"fenced\",\"site\":\"dr-b\","));
    CHECK(strstr(sv_out, "\"frontier_ms\":-1,\"lag_ms\":-1,\"shards\":[") != NULL);
    CHECK(strstr(sv_out, "{\"id\":2,\"state\":\"unknown\",\"lag_ms\":-1,\"frontier_ms\":-1,"
                         "\"applied\":0,\"commit\":0,\"last_contact_ms\":-1}") != NULL);
    CHECK(strstr(sv_out, "{\"id\":3,\"state\":\"streaming\",\"lag_ms\":-1,\"frontier_ms\":-1,"
                         "\"applied\":1003,\"commit\":1013,\"last_contact_ms\":-1}") != NULL);
    CHECK(strstr(sv_out, "reason") == NULL);
    CHECK(svctl("", "dr status") == 0);
    CHECK(strstr(sv_out, "role:          fenced\n") != NULL);
    CHECK(strstr(sv_out, "frontier:      unknown\nlag:           unknown\n") != NULL);
    CHECK(strstr(sv_out, "\n2      unknown          unknown             -            -            "
                         "- -\n") != NULL);
    CHECK(strstr(sv_out, "\n3      streaming        unknown         never         1003         "
                         "1013 -\n") != NULL);

    /* Nodes without disaster recovery: their refusal, exit 1. */
    KNOB(F.dr_role[0] = NULL; F.dr_role[1] = NULL);
    CHECK(svctl("", "dr status") == 1);
    CHECK(strstr(sv_err, "svctl: dr status: bad argument: no node answered DR_STATUS with a "
                         "report; node ") != NULL &&
          strstr(sv_err, "unknown request type") != NULL);
    KNOB(dr_reset());
}

/* svctl dr promote and demote against the fake site dr-b (dr_reset's
 * defaults: site frontier 1700000097000 (shard 2), the promotion's cut
 * 1700000097500, highest shard frontier 1700000198000 (shard 1), the most
 * recent contact shard 0's: 100 ms before node 1's clock, 1700000100000). */
static void test_svctl_dr_promote(void)
{
    if (svctl_path == NULL) {
        sv_test_skip("no --svctl PATH");
        return;
    }
    KNOB(meta_reset(); dr_reset());
    CHECK(svctl("-o json", "dr promote") == 0);
    const char *want = "{\"epoch\":5,\"cut_ms\":1700000097500,\"cut_max_ms\":1700000198000,"
                       "\"last_contact_ms\":1700000099900,\"rpo_ms\":2400,\"open_after_ms\":";
    CHECK(starts_with(sv_out, want));
    long long after = starts_with(sv_out, want) ? atoll(sv_out + strlen(want)) : -1;
    CHECK(after >= 0 && after < 3000);
    pthread_mutex_lock(&F.lock);
    CHECK(F.dr_flags_seen == 0 && strcmp(F.dr_role[0], "primary") == 0 &&
          strcmp(F.dr_role[1], "primary") == 0);
    pthread_mutex_unlock(&F.lock);

    /* Text; the nodes follow late and one at a time: it waits for both. */
    KNOB(dr_reset(); F.dr_follow_after[0] = 4; F.dr_follow_after[1] = 1);
    int looks = knob_get(&F.n_req[SV_MSG_DR_STATUS]);
    CHECK(svctl("", "dr promote") == 0);
    CHECK(knob_get(&F.n_req[SV_MSG_DR_STATUS]) - looks >= 2 * 5 + 2); /* cut, then 5 rounds */
    CHECK(starts_with(sv_out, "promoted: site epoch 5 (cluster map epoch 7)\n"
                              "cut:           2023-11-14T22:14:57.500Z (1700000097500 ms since "
                              "the epoch)\n"
                              "               on every shard: each write the primary stamped "
                              "before it\n"
                              "               is kept, each later one dropped (svctl dr "
                              "failback on the\n"
                              "               old primary lists them in its divergence "
                              "ledger)\n"
                              "shards up to:  2023-11-14T22:16:38.000Z (1700000198000 ms since "
                              "the epoch)\n"
                              "last contact:  2023-11-14T22:14:59.900Z (1700000099900 ms since "
                              "the epoch)\n"
                              "RPO at most 2400 ms (if the primary took no write after the last "
                              "contact)\n"
                              "waiting for every node to take writes (at most 30 s)\n"));
    CHECK(strstr(sv_out, "\nwrites open after ") != NULL &&
          strstr(sv_out, " ms: the 2 of 2 nodes that answered are primary at site epoch 5\n"));

    /* The primary still answers: refused (exit 1, the leader's sentence); --force. */
    KNOB(dr_reset(); F.dr_primary_answers = true);
    CHECK(svctl("", "dr promote") == 1);
    CHECK(strcmp(sv_err, "svctl: dr promote: bad argument: the primary site dr-a answered 1.2 s "
                         "ago: promote with force to split from it\n") == 0);
    CHECK(sv_out[0] == '\0');
    CHECK(svctl("-o json", "dr promote --force --wait 5") == 0);
    pthread_mutex_lock(&F.lock);
    CHECK(F.dr_flags_seen == 1);
    pthread_mutex_unlock(&F.lock);
    /* Already primary. */
    CHECK(svctl("", "dr promote --force") == 1);
    CHECK(strstr(sv_err, "site dr-b is not a standby (it is primary)") != NULL);

    /* A node that never follows: exit 5 once --wait passes, the promotion recorded. */
    KNOB(dr_reset(); F.dr_follow_after[0] = -1);
    uint64_t t0 = now_ms();
    CHECK(svctl("-o json", "dr promote --wait 0.5") == 5);
    CHECK(now_ms() - t0 < 4000);
    CHECK(strstr(sv_out, "\"rpo_ms\":2400,\"open_after_ms\":-1}\n") != NULL);
    CHECK(starts_with(sv_err, "svctl: dr promote: the promotion is recorded (site epoch 5) but "
                              "not every node follows it yet after 0.5 s: not every node that "
                              "answered (2 of 2) is primary at site epoch 5"));
    /* A shard no answering node leads: not open either. A promotion with no
     * cut (forced while the frontier was not known): none reported. */
    KNOB(dr_reset(); F.dr_unled[3] = true; F.dr_cut_ms = 0);
    CHECK(svctl("-o json", "dr promote --wait 0.3") == 5);
    CHECK(strcmp(sv_out, "{\"epoch\":5,\"cut_ms\":-1,\"cut_max_ms\":1700000198000,"
                         "\"last_contact_ms\":1700000099900,\"rpo_ms\":-1,\"open_after_ms\":-1}"
                         "\n") == 0);
    CHECK(strstr(sv_err, "shard 3: no node that answered leads it") != NULL);
    KNOB(dr_reset(); F.dr_unled[3] = true; F.dr_cut_ms = 0);
    CHECK(svctl("", "dr promote --wait 0.3") == 5);
    CHECK(strstr(sv_out, "cut:           none: the site's frontier was not known (--force); "
                         "every\n               shard keeps all it received\nshards") != NULL);
    CHECK(strstr(sv_out, "RPO unknown: a shard's frontier is not known\n") != NULL);

    /* No meta leader: unavailable, exit 5, nothing recorded. */
    KNOB(dr_reset(); F.meta_leader = -1);
    CHECK(svctl("--timeout 0.3", "dr promote") == 5);
    CHECK(strstr(sv_err, "svctl: dr promote: unavailable: no meta group leader answered") != NULL);
    KNOB(meta_reset());

    /* demote: the site epoch; again: the leader's refusal. */
    KNOB(dr_reset());
    CHECK(svctl("", "dr demote") == 0);
    CHECK(strcmp(sv_out, "site fenced at site epoch 4: it takes no writes and ships nothing; "
                         "the peer site can be promoted\n") == 0);
    CHECK(svctl("-o json", "dr demote") == 1);
    CHECK(strcmp(sv_err, "svctl: dr demote: bad argument: site dr-b is already fenced\n") == 0);
    KNOB(dr_reset());
    CHECK(svctl("-o json", "dr demote") == 0);
    CHECK(strcmp(sv_out, "{\"epoch\":4}\n") == 0);
    KNOB(dr_reset());
}

/* ---- runner ---- */

static int set_up(void)
{
    char err[256];
    if (sv_testcerts_mkdtemp("client-test", dir, sizeof(dir), err, sizeof(err)) != 0 ||
        sv_testcerts_ca(dir, "ca", "ShardVault test CA", err, sizeof(err)) != 0 ||
        sv_testcerts_leaf(dir, "ca", "node-1", NULL, -SV_TESTCERTS_DAY_S, 30L * SV_TESTCERTS_DAY_S,
                          err, sizeof(err)) != 0) {
        fprintf(stderr, "client-test: certificates: %s\n", err);
        return 1;
    }
    sv_testcerts_path(dir, "ca", ".pem", ca_path, sizeof(ca_path));
    fake_start();
    return 0;
}

static void tear_down(void)
{
    fake_stop();
    sv_testcerts_rmdir(dir);
}

/* --svctl PATH: the svctl to test (test "svctl" is skipped without it). */
static int option(int argc, char **argv, int i)
{
    if (strcmp(argv[i], "--svctl") != 0)
        return 0;
    if (i + 1 >= argc)
        return -1;
    svctl_path = argv[i + 1];
    return 2;
}

static const struct sv_test tests[] = {
    {"round_trips", test_round_trips},
    {"redirect", test_redirect},
    {"unavailable_retry", test_unavailable_retry},
    {"exactly_once", test_exactly_once},
    {"upload_failover", test_upload_failover},
    {"deadline", test_deadline},
    {"corrupt_and_changes", test_corrupt_and_changes},
    {"conditional", test_conditional},
    {"concurrent", test_concurrent},
    {"list", test_list},
    {"status", test_status},
    {"admin_nodes", test_admin_nodes},
    {"admin_health_log", test_admin_health_log},
    {"admin_changes", test_admin_changes},
    {"admin_unavailable", test_admin_unavailable},
    {"read_only", test_read_only},
    {"dr_follow", test_dr_follow},
    {"dr_prefer_primary", test_dr_prefer_primary},
    {"dr_fold", test_dr_fold},
    {"dr_status", test_dr_status},
    {"dr_promote", test_dr_promote},
    {"open_errors", test_open_errors},
    {"svctl", test_svctl},
    {"svctl_admin", test_svctl_admin},
    {"svctl_dr", test_svctl_dr},
    {"svctl_dr_promote", test_svctl_dr_promote},
};

const struct sv_test_suite sv_test_suite = {
    .name = "client-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = option,
    .usage = "  --svctl PATH the svctl to test (test svctl is skipped without it)\n",
};
