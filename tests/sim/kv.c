/* Key-value state machine with client sessions, the client workload, and the history it records. */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_BYTES = 34,            /* encoded client operation */
    BLOB_MAGIC = 0x564b5653u, /* "SVKV" */
    BLOB_HEAD = 4 + 3 * 8 + 4 + 4 + 4,
    HIST_PRINT_MAX = 60, /* history lines printed for a failing key */
};

/* ---- Little-endian helpers. ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint64_t sv__chain(uint64_t prev, uint64_t term, uint8_t type, const uint8_t *data, uint32_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the payload */
    for (uint32_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3ull;
    }
    uint64_t x = mix64(prev ^ 0x5851f42d4c957f2dull);
    x = mix64(x ^ term);
    x = mix64(x ^ ((uint64_t)type << 32 | len));
    return mix64(x ^ h);
}

/* ---- Operation encoding: kind, client, seq, key, a, b. ---- */

size_t sv__encode_op(uint8_t *buf, uint8_t kind, uint32_t client, uint64_t seq, uint32_t key,
                     uint64_t a, uint64_t b)
{
    buf[0] = 'S';
    buf[1] = kind;
    put32(buf + 2, client);
    put64(buf + 6, seq);
    put32(buf + 14, key);
    put64(buf + 18, a);
    put64(buf + 26, b);
    return OP_BYTES;
}

struct op {
    uint8_t kind;
    uint32_t client;
    uint64_t seq;
    uint32_t key;
    uint64_t a, b;
};

static int decode_op(const uint8_t *buf, uint32_t len, struct op *o)
{
    if (len != OP_BYTES || buf[0] != 'S')
        return -1;
    o->kind = buf[1];
    o->client = get32(buf + 2);
    o->seq = get64(buf + 6);
    o->key = get32(buf + 14);
    o->a = get64(buf + 18);
    o->b = get64(buf + 26);
    if (o->kind < SIM_OP_PUT || o->kind > SIM_OP_PROBE || o->client > SIM_CLIENTS_MAX ||
        o->key >= SIM_KEYS_MAX)
        return -1;
    return 0;
}

/* ---- State machine. ---- */

void sv__kv_reset(struct sim_kv *kv)
{
    memset(kv, 0, sizeof(*kv));
}

static uint64_t kv_digest(const struct sim_kv *kv)
{
    uint64_t h = 0x243f6a8885a308d3ull;
    for (int i = 0; i < SIM_KEYS_MAX; i++)
        h = mix64(h ^ kv->vals[i]) + (uint64_t)i;
    for (int i = 0; i <= SIM_CLIENTS_MAX; i++)
        h = mix64(h ^ kv->sess_seq[i] ^ (kv->sess_result[i] << 1));
    return h;
}

static uint8_t pad_byte(uint64_t chain, uint32_t i)
{
    return (uint8_t)mix64(chain + i);
}

/* Serialize: magic, index, term, chain, keys, sessions, filler (checked). */
int sv__kv_blob(struct sim *s, const struct sim_kv *kv, uint8_t **out, uint64_t *len)
{
    uint32_t pad = s->p.snap_pad;
    size_t n = BLOB_HEAD + 8 * SIM_KEYS_MAX + 16 * (SIM_CLIENTS_MAX + 1) + pad;
    uint8_t *b = malloc(n);
    if (b == NULL) {
        sv__fail(s, "sim", "out of memory (snapshot blob)");
        return -1;
    }
    uint8_t *p = b;
    put32(p, BLOB_MAGIC);
    put64(p + 4, kv->applied);
    put64(p + 12, kv->applied_term);
    put64(p + 20, kv->chain);
    put32(p + 28, SIM_KEYS_MAX);
    put32(p + 32, SIM_CLIENTS_MAX + 1);
    put32(p + 36, pad);
    p += BLOB_HEAD;
    for (int i = 0; i < SIM_KEYS_MAX; i++, p += 8)
        put64(p, kv->vals[i]);
    for (int i = 0; i <= SIM_CLIENTS_MAX; i++, p += 16) {
        put64(p, kv->sess_seq[i]);
        put64(p + 8, kv->sess_result[i]);
    }
    for (uint32_t i = 0; i < pad; i++)
        p[i] = pad_byte(kv->chain, i);
    *out = b;
    *len = n;
    return 0;
}

int sv__kv_unblob(const uint8_t *b, uint64_t len, struct sim_kv *kv)
{
    if (len < BLOB_HEAD || get32(b) != BLOB_MAGIC || get32(b + 28) != SIM_KEYS_MAX ||
        get32(b + 32) != SIM_CLIENTS_MAX + 1)
        return -1;
    uint32_t pad = get32(b + 36);
    if (pad > SIM_PAD_MAX || len != BLOB_HEAD + 8 * SIM_KEYS_MAX + 16 * (SIM_CLIENTS_MAX + 1) + pad)
        return -1;
    struct sim_kv k;
    sv__kv_reset(&k);
    k.applied = get64(b + 4);
    k.applied_term = get64(b + 12);
    k.chain = get64(b + 20);
    const uint8_t *p = b + BLOB_HEAD;
    for (int i = 0; i < SIM_KEYS_MAX; i++, p += 8)
        k.vals[i] = get64(p);
    for (int i = 0; i <= SIM_CLIENTS_MAX; i++, p += 16) {
        k.sess_seq[i] = get64(p);
        k.sess_result[i] = get64(p + 8);
    }
    for (uint32_t i = 0; i < pad; i++)
        if (p[i] != pad_byte(k.chain, i))
            return -1;
    *kv = k;
    return 0;
}

/* ---- History. ---- */

static size_t hist_add(struct sim *s, uint32_t client, uint8_t kind, uint32_t key, uint64_t a,
                       uint64_t b)
{
    if (s->n_hist == s->hist_cap) {
        size_t cap = s->hist_cap ? s->hist_cap * 2 : 256;
        struct sim_hop *h = realloc(s->hist, cap * sizeof(*h));
        if (h == NULL) {
            sv__fail(s, "sim", "out of memory (history)");
            return SIZE_MAX;
        }
        s->hist = h;
        s->hist_cap = cap;
    }
    struct sim_hop *h = &s->hist[s->n_hist];
    memset(h, 0, sizeof(*h));
    h->op.key = key;
    h->op.kind = kind == SIM_OP_PUT ? LIN_PUT : kind == SIM_OP_GET ? LIN_GET : LIN_CAS;
    h->op.arg = a;
    h->op.arg2 = b;
    h->op.call = ++s->clock;
    h->status = OP_PENDING;
    h->client = client;
    h->tick_call = s->now;
    return s->n_hist++;
}

static const char *kind_name(uint8_t kind)
{
    switch (kind) {
    case SIM_OP_PUT:
        return "put";
    case SIM_OP_GET:
        return "get";
    case SIM_OP_CAS:
        return "cas";
    case SIM_OP_PROBE:
        return "probe";
    default:
        return "?";
    }
}

static void describe_op(const struct sim_hop *h, char *buf, size_t len)
{
    const struct lin_op *o = &h->op;
    const char *st = h->status == OP_OK     ? "ok"
                     : h->status == OP_INFO ? "info"
                     : h->status == OP_FAIL ? "fail"
                                            : "pending";
    char ret[48];
    if (h->status == OP_OK)
        snprintf(ret, sizeof(ret), "%" PRIu64, h->tick_ret);
    else
        snprintf(ret, sizeof(ret), "?");
    switch (o->kind) {
    case LIN_PUT:
        snprintf(buf, len, "c%" PRIu32 " put(k%" PRIu32 ", %" PRIu64 ") %s  [tick %" PRIu64 "..%s]",
                 h->client, o->key, o->arg, st, h->tick_call, ret);
        break;
    case LIN_GET:
        snprintf(buf, len,
                 "c%" PRIu32 " get(k%" PRIu32 ") -> %" PRIu64 " %s  [tick %" PRIu64 "..%s]",
                 h->client, o->key, o->out, st, h->tick_call, ret);
        break;
    default:
        snprintf(buf, len,
                 "c%" PRIu32 " cas(k%" PRIu32 ", %" PRIu64 " -> %" PRIu64
                 ") -> %s %s  [tick %" PRIu64 "..%s]",
                 h->client, o->key, o->arg, o->arg2,
                 h->status == OP_OK ? (o->out ? "swapped" : "unchanged") : "?", st, h->tick_call,
                 ret);
        break;
    }
}

/* ---- Clients. ---- */

static void client_complete(struct sim *s, struct sim_client *c, uint64_t out)
{
    struct sim_hop *h = &s->hist[c->op];
    h->op.out = out;
    h->op.done = true;
    h->op.ret = ++s->clock;
    h->tick_ret = s->now;
    h->status = OP_OK;
    s->st.ops_ok++;
    if (c->kind == SIM_OP_GET)
        c->seen[c->key] = out;
    else if (c->kind == SIM_OP_PUT || (c->kind == SIM_OP_CAS && out))
        c->seen[c->key] = c->kind == SIM_OP_PUT ? c->a : c->b;
    c->state = CL_IDLE;
    if (s->trace) {
        char d[160];
        describe_op(h, d, sizeof(d));
        sv__trace(s, "client %s", d);
    }
}

/* Give up on the current op: writes that may have reached a log become
 * indeterminate, everything else failed (it had no effect). */
static void client_give_up(struct sim *s, struct sim_client *c, const char *why)
{
    struct sim_hop *h = &s->hist[c->op];
    bool may_write = c->proposed && (c->kind == SIM_OP_PUT || c->kind == SIM_OP_CAS);
    h->status = may_write ? OP_INFO : OP_FAIL;
    h->op.done = false;
    h->tick_ret = s->now;
    if (may_write)
        s->st.ops_info++;
    else
        s->st.ops_fail++;
    c->state = CL_IDLE;
    if (s->trace) {
        char d[160];
        describe_op(h, d, sizeof(d));
        sv__trace(s, "client %s (gave up: %s)", d, why);
    }
}

static sv_raft_id random_server(struct sim *s)
{
    sv_raft_id ids[SIM_SLOTS_MAX];
    int n = 0;
    for (int i = 0; i < SIM_SLOTS_MAX; i++)
        if (s->nodes[i].used)
            ids[n++] = s->nodes[i].id;
    return n ? ids[rng_below(&s->rng, (uint64_t)n)] : 0;
}

/* After a refusal: follow the node's leader hint, else try another server. */
static void client_redirect(struct sim *s, struct sim_client *c, struct sim_node *n)
{
    if (n != NULL && n->up) {
        struct sv_raft_status st;
        sv_raft_status(n->r, &st);
        if (st.leader != 0 && st.leader != n->id && rng_ppm(&s->rng, 900000)) {
            c->target = st.leader;
            return;
        }
    }
    c->target = random_server(s);
}

static void client_send(struct sim *s, struct sim_client *c)
{
    struct sim_node *n = sv__node_by_id(s, c->target);
    if (n == NULL || !n->up) {
        sv__trace(s, "client c%" PRIu32 " -> n%" PRIu64 ": no answer (server down)", c->id,
                  c->target);
        client_redirect(s, c, NULL);
        return;
    }
    c->attempts++;
    int rc;
    if (c->kind == SIM_OP_GET && !c->via_log) {
        uint64_t ctx = ++s->next_ctx;
        rc = sv_raft_read_index(n->r, ctx);
        sv__trace(s,
                  "client c%" PRIu32 " get(k%" PRIu32 ") read_index ctx=%" PRIu64 " on n%" PRIu64
                  ": %s",
                  c->id, c->key, ctx, n->id, sv_raft_strerror(rc));
        if (rc == 0)
            c->ctx = ctx;
    } else {
        uint8_t buf[OP_BYTES];
        size_t len = sv__encode_op(buf, c->kind, c->id, c->seq, c->key, c->a, c->b);
        uint64_t index = 0;
        rc = sv_raft_propose(n->r, buf, len, &index);
        sv__trace(s,
                  "client c%" PRIu32 " %s(k%" PRIu32 ") seq=%" PRIu64 " proposed on n%" PRIu64
                  ": %s index=%" PRIu64,
                  c->id, kind_name(c->kind), c->key, c->seq, n->id, sv_raft_strerror(rc), index);
        if (rc == 0) {
            c->proposed = true;
            sv__maybe_silence(s, n);
        }
    }
    if (rc == 0) {
        c->state = CL_WAIT;
        c->deadline = s->now + s->p.client_timeout;
    } else if (rc != SV_RAFT_E_TRANSFERRING) {
        client_redirect(s, c, n);
    }
}

static void client_start(struct sim *s, struct sim_client *c)
{
    uint64_t r = rng_below(&s->rng, 100);
    c->kind = r < 40 ? SIM_OP_PUT : r < 75 ? SIM_OP_GET : SIM_OP_CAS;
    c->key = (uint32_t)rng_below(&s->rng, s->p.n_keys);
    c->via_log = c->kind == SIM_OP_GET && rng_ppm(&s->rng, s->p.p_log_read);
    c->a = c->b = 0;
    if (c->kind == SIM_OP_PUT) {
        c->a = ((uint64_t)c->id << 40) | ++c->counter;
    } else if (c->kind == SIM_OP_CAS) {
        c->a = rng_ppm(&s->rng, 800000) ? c->seen[c->key] : 0;
        c->b = ((uint64_t)c->id << 40) | ++c->counter;
    }
    if (c->kind != SIM_OP_GET || c->via_log)
        c->seq++;
    c->op = hist_add(s, c->id, c->kind, c->key, c->a, c->b);
    if (c->op == SIZE_MAX)
        return;
    s->hist[c->op].seq = c->seq;
    c->proposed = false;
    c->attempts = 0;
    c->state = CL_SEND;
    c->op_deadline = s->now + s->p.op_timeout;
    sv__trace(s, "client c%" PRIu32 " invoke %s(k%" PRIu32 ", %" PRIu64 ", %" PRIu64 ")%s", c->id,
              kind_name(c->kind), c->key, c->a, c->b, c->via_log ? " via the log" : "");
    client_send(s, c);
}

void sv__clients_init(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.n_clients; i++) {
        struct sim_client *c = &s->clients[i];
        memset(c, 0, sizeof(*c));
        c->id = i + 1;
        c->state = CL_IDLE;
        c->target = random_server(s);
    }
}

void sv__client_event(struct sim *s)
{
    struct sim_client *c = &s->clients[rng_below(&s->rng, s->p.n_clients)];
    if (c->state == CL_IDLE && !s->calm && s->n_hist < SIM_OPS_MAX)
        client_start(s, c);
    else if (c->state == CL_SEND)
        client_send(s, c);
}

/* A write that may be in some log is retried with the same sequence number
 * (the session makes that exactly-once) rather than abandoned, except now and
 * then: abandoned writes are indeterminate and make the history expensive to
 * check, retried ones get a definite answer. */
static bool keep_retrying(struct sim *s, const struct sim_client *c)
{
    bool may_write = c->proposed && (c->kind == SIM_OP_PUT || c->kind == SIM_OP_CAS);
    return may_write && !rng_ppm(&s->rng, s->p.p_abandon);
}

void sv__clients_tick(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.n_clients; i++) {
        struct sim_client *c = &s->clients[i];
        if (c->state == CL_IDLE)
            continue;
        bool op_expired = s->now >= c->op_deadline;
        bool attempt_expired = c->state == CL_WAIT && s->now >= c->deadline;
        if (!op_expired && !attempt_expired)
            continue;
        if (keep_retrying(s, c)) {
            sv__trace(s, "client c%" PRIu32 " seq=%" PRIu64 " retries its write elsewhere", c->id,
                      c->seq);
            c->state = CL_SEND;
            c->op_deadline = s->now + s->p.op_timeout;
            client_redirect(s, c, NULL);
        } else if (op_expired) {
            client_give_up(s, c, "operation timeout");
        } else if (!s->calm && rng_ppm(&s->rng, 600000)) {
            sv__trace(s,
                      "client c%" PRIu32 " attempt on n%" PRIu64 " timed out; retrying elsewhere",
                      c->id, c->target);
            c->state = CL_SEND;
            client_redirect(s, c, NULL);
        } else {
            client_give_up(s, c, "attempt timeout");
        }
    }
}

void sv__clients_finish(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.n_clients; i++)
        if (s->clients[i].state != CL_IDLE)
            client_give_up(s, &s->clients[i], "end of run");
}

/* Answer the client waiting for (client, seq) on node n, if any. */
static void answer_write(struct sim *s, struct sim_node *n, uint32_t client, uint64_t seq,
                         uint64_t result)
{
    if (client == 0 || client > s->p.n_clients)
        return;
    struct sim_client *c = &s->clients[client - 1];
    if (c->state == CL_WAIT && c->target == n->id && c->seq == seq &&
        (c->kind != SIM_OP_GET || c->via_log))
        client_complete(s, c, result);
}

void sv__kv_serve_reads(struct sim *s, struct sim_node *n)
{
    size_t k = 0;
    for (size_t i = 0; i < n->n_reads; i++) {
        struct sim_read *rd = &n->reads[i];
        if (rd->index > n->kv.applied) {
            n->reads[k++] = *rd;
            continue;
        }
        for (uint32_t j = 0; j < s->p.n_clients; j++) {
            struct sim_client *c = &s->clients[j];
            if (c->state == CL_WAIT && c->kind == SIM_OP_GET && !c->via_log && c->ctx == rd->ctx &&
                c->target == n->id) {
                sv__trace(s,
                          "  n%" PRIu64 " serves read ctx=%" PRIu64 " at applied %" PRIu64
                          " (read index %" PRIu64 ")",
                          n->id, rd->ctx, n->kv.applied, rd->index);
                client_complete(s, c, n->kv.vals[c->key]);
            }
        }
    }
    n->n_reads = k;
}

void sv__kv_install(struct sim *s, struct sim_node *n, const struct sv_raft_snapshot *snap)
{
    struct sim_kv kv;
    if (sv__kv_unblob(snap->data, snap->len, &kv) != 0) {
        sv__fail(s, "snapshot", "n%" PRIu64 " cannot decode snapshot %" PRIu64, n->id,
                 snap->meta.index);
        return;
    }
    kv.conf = snap->meta.conf;
    uint64_t from = n->kv.applied;
    n->kv = kv;
    s->st.snapshots_installed++;
    sv__trace(s,
              "  n%" PRIu64 " installs snapshot %" PRIu64 "/%" PRIu64 " (applied %" PRIu64
              " -> %" PRIu64 ")",
              n->id, snap->meta.index, snap->meta.term, from, kv.applied);
    sv__check_applied(s, n, kv.applied, kv.applied_term, 0xff, kv.chain, kv_digest(&kv));
    sv__kv_serve_reads(s, n);
}

void sv__kv_apply(struct sim *s, struct sim_node *n, const struct sv_raft_entry *e)
{
    struct sim_kv *kv = &n->kv;
    if (e->index != kv->applied + 1) {
        sv__fail(s, "state-machine-safety",
                 "n%" PRIu64 " applies index %" PRIu64 " after %" PRIu64 " (%s)", n->id, e->index,
                 kv->applied, e->index <= kv->applied ? "out of order / twice" : "gap");
        return;
    }
    kv->chain = sv__chain(kv->chain, e->term, e->type, e->data, e->len);
    kv->applied = e->index;
    kv->applied_term = e->term;
    uint32_t client = 0;
    uint64_t seq = 0, result = 0;
    bool answer = false;
    if (e->type == SV_RAFT_ENTRY_CONF) {
        struct sv_raft_conf conf;
        if (sv_raft_conf_decode(e->data, e->len, &conf) != 0) {
            sv__fail(s, "contract", "n%" PRIu64 " applies undecodable conf entry %" PRIu64, n->id,
                     e->index);
            return;
        }
        kv->conf = conf;
    } else if (e->type == SV_RAFT_ENTRY_NORMAL) {
        struct op o;
        if (decode_op(e->data, e->len, &o) != 0) {
            sv__fail(s, "contract",
                     "n%" PRIu64 " applies a normal entry %" PRIu64
                     " that no client proposed (%" PRIu32 " bytes)",
                     n->id, e->index, e->len);
            return;
        }
        if (o.kind == SIM_OP_PROBE) {
            if (o.seq == s->probe_id && s->probe_id != 0)
                n->probe_applied = true;
        } else if (o.seq > kv->sess_seq[o.client]) {
            /* New request: execute once and remember the result (thesis §6.3). */
            switch (o.kind) {
            case SIM_OP_PUT:
                kv->vals[o.key] = o.a;
                break;
            case SIM_OP_CAS:
                result = kv->vals[o.key] == o.a;
                if (result)
                    kv->vals[o.key] = o.b;
                break;
            default:
                result = kv->vals[o.key];
                break;
            }
            kv->sess_seq[o.client] = o.seq;
            kv->sess_result[o.client] = result;
            client = o.client;
            seq = o.seq;
            answer = true;
        } else if (o.seq == kv->sess_seq[o.client]) {
            /* A retry already applied: answer from the session, change nothing. */
            client = o.client;
            seq = o.seq;
            result = kv->sess_result[o.client];
            answer = true;
        }
    }
    sv__check_applied(s, n, e->index, e->term, e->type, kv->chain, kv_digest(kv));
    if (s->failed)
        return;
    if (answer)
        answer_write(s, n, client, seq, result);
    sv__kv_serve_reads(s, n);
}

/* ---- End of run: linearizability of the history, per key. ---- */

void sv__history_check(struct sim *s)
{
    struct lin_op *ops = malloc((s->n_hist + 1) * sizeof(*ops));
    if (ops == NULL) {
        sv__fail(s, "sim", "out of memory (history check)");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->n_hist; i++) {
        const struct sim_hop *h = &s->hist[i];
        if (h->status != OP_OK && h->status != OP_INFO)
            continue;
        ops[n] = h->op;
        if (h->status == OP_INFO) {
            /* Sessions apply a client's requests in sequence order and never
             * one older than the last applied (thesis §6.3): an abandoned
             * write took effect before the client's next logged request
             * that completed, or never. That bounds the search. */
            ops[n].ret = 0;
            for (size_t j = i + 1; j < s->n_hist; j++) {
                const struct sim_hop *k = &s->hist[j];
                if (k->client == h->client && k->seq > h->seq && k->status == OP_OK) {
                    ops[n].ret = k->op.ret;
                    break;
                }
            }
        }
        n++;
    }
    struct lin_report rep;
    int v = sv__lin_check(ops, n, 0, &rep);
    s->st.lin_explored += rep.explored;
    if (v == LIN_UNKNOWN) {
        /* A verdict we could not reach is not a pass. */
        s->st.lin_unknown++;
        sv__fail(s, "linearizability",
                 "the checker reached its search limit on key k%" PRIu32
                 " (%zu ops): no verdict; shorten the run or raise LIN_STEPS_MAX",
                 rep.key, rep.n_ops);
    } else if (v == LIN_VIOLATION) {
        char buf[SIM_WHY_MAX];
        size_t off = 0;
        off += (size_t)snprintf(
            buf, sizeof(buf),
            "history of key k%" PRIu32 " (%zu ops) has no linearization:", rep.key, rep.n_ops);
        size_t shown = 0, total = 0;
        for (size_t i = 0; i < s->n_hist; i++) {
            const struct sim_hop *h = &s->hist[i];
            if (h->op.key != rep.key || (h->status != OP_OK && h->status != OP_INFO))
                continue;
            total++;
        }
        for (size_t i = 0; i < s->n_hist && off < sizeof(buf) - 200; i++) {
            const struct sim_hop *h = &s->hist[i];
            if (h->op.key != rep.key || (h->status != OP_OK && h->status != OP_INFO))
                continue;
            if (total > HIST_PRINT_MAX && shown < total - HIST_PRINT_MAX) {
                shown++;
                continue;
            }
            char d[160];
            describe_op(h, d, sizeof(d));
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "\n    %s", d);
            shown++;
        }
        sv__fail(s, "linearizability", "%s", buf);
    } else if (v < 0) {
        sv__fail(s, "sim", "out of memory (linearizability check)");
    }
    free(ops);
}
