/* Linearizability checker: per-key Wing & Gong search with Lowe's (bitset, state) memoization. */
#include "lin.h"

#include <stdlib.h>
#include <string.h>

/* A call or return event in the doubly linked history list. */
struct ent {
    uint32_t op; /* index into the key's op list */
    bool call;
    uint64_t time;
    struct ent *match; /* call <-> return */
    struct ent *prev;
    struct ent *next;
};

struct frame {
    struct ent *call;
    uint64_t state;
    int variant; /* which outcome of the op was taken (see model_step) */
};

/* Open-addressing set of (linearized bitset, state) pairs. */
struct memo {
    size_t words;   /* u64 words per bitset */
    uint64_t *pool; /* entries of words + 1 u64 (bitset, state) */
    size_t n, pool_cap;
    uint32_t *slots; /* 1-based pool index; 0 = empty */
    size_t n_slots;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t memo_hash(const struct memo *m, const uint64_t *bits, uint64_t state)
{
    uint64_t h = mix(state + 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < m->words; i++)
        h = mix(h ^ bits[i]) + i;
    return h;
}

static int memo_grow(struct memo *m)
{
    size_t n_slots = m->n_slots ? m->n_slots * 2 : 1024;
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < m->n_slots; i++) {
        uint32_t e = m->slots[i];
        if (e == 0)
            continue;
        const uint64_t *rec = &m->pool[(size_t)(e - 1) * (m->words + 1)];
        size_t j = memo_hash(m, rec, rec[m->words]) & (n_slots - 1);
        while (slots[j] != 0)
            j = (j + 1) & (n_slots - 1);
        slots[j] = e;
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n_slots;
    return 0;
}

/* Add (bits, state). Returns 1 if added, 0 if already present, -1 on no
 * memory, -2 when the memo is full (LIN_CACHE_MAX). */
static int memo_add(struct memo *m, const uint64_t *bits, uint64_t state)
{
    if ((m->n + 1) * 2 > m->n_slots && memo_grow(m) != 0)
        return -1;
    size_t rec_len = m->words + 1;
    size_t j = memo_hash(m, bits, state) & (m->n_slots - 1);
    for (;;) {
        uint32_t e = m->slots[j];
        if (e == 0)
            break;
        const uint64_t *rec = &m->pool[(size_t)(e - 1) * rec_len];
        if (rec[m->words] == state && memcmp(rec, bits, m->words * sizeof(uint64_t)) == 0)
            return 0;
        j = (j + 1) & (m->n_slots - 1);
    }
    if (m->n >= LIN_CACHE_MAX)
        return -2;
    if (m->n == m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap * 2 : 1024;
        uint64_t *pool = realloc(m->pool, cap * rec_len * sizeof(uint64_t));
        if (pool == NULL)
            return -1;
        m->pool = pool;
        m->pool_cap = cap;
    }
    uint64_t *rec = &m->pool[m->n * rec_len];
    memcpy(rec, bits, m->words * sizeof(uint64_t));
    rec[m->words] = state;
    m->n++;
    m->slots[j] = (uint32_t)m->n;
    return 1;
}

/* Outcomes to try for o: an indeterminate write with a deadline may also
 * never take effect (linearized as a no-op); without a deadline that case is
 * covered by linearizing it last. */
static int variants(const struct lin_op *o)
{
    return !o->done && o->ret != 0 && o->kind != LIN_GET ? 2 : 1;
}

/* The register model: may outcome `variant` of `o` be linearized in `state`,
 * and what follows. */
static bool model_step(const struct lin_op *o, int variant, uint64_t state, uint64_t *next)
{
    if (variant == 1) {
        *next = state;
        return true;
    }
    switch (o->kind) {
    case LIN_PUT:
        *next = o->arg;
        return true;
    case LIN_GET:
        *next = state;
        return !o->done || o->out == state;
    case LIN_CAS:
        if (!o->done) {
            *next = state == o->arg ? o->arg2 : state;
            return true;
        }
        if (o->out != 0) {
            *next = o->arg2;
            return state == o->arg;
        }
        *next = state;
        return state != o->arg;
    default:
        return false;
    }
}

static int ent_cmp(const void *pa, const void *pb)
{
    const struct ent *a = pa, *b = pb;
    if (a->time != b->time)
        return a->time < b->time ? -1 : 1;
    if (a->call != b->call)
        return a->call ? -1 : 1; /* equal times: treat as concurrent */
    return a->op < b->op ? -1 : a->op > b->op ? 1 : 0;
}

static void lift(struct ent *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    struct ent *m = e->match;
    m->prev->next = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
}

static void unlift(struct ent *e)
{
    struct ent *m = e->match;
    m->prev->next = m;
    if (m->next != NULL)
        m->next->prev = m;
    e->prev->next = e;
    e->next->prev = e;
}

/* Check one key's ops (pointers into the caller's array). */
static int check_key(const struct lin_op *const *ops, size_t n, uint64_t init, uint64_t *explored)
{
    int verdict = -1;
    uint64_t steps = 0;
    struct memo memo = {0};
    memo.words = (n + 63) / 64;
    struct ent *ents = calloc(2 * n + 1, sizeof(*ents));
    struct frame *stack = calloc(n + 1, sizeof(*stack));
    uint64_t *bits = calloc(memo.words + 1, sizeof(uint64_t));
    uint32_t *where = calloc(2 * n + 1, sizeof(*where));
    if (ents == NULL || stack == NULL || bits == NULL || where == NULL)
        goto out;

    /* ents[0] is the head sentinel; events follow sorted by time. */
    for (size_t i = 0; i < n; i++) {
        struct ent *c = &ents[1 + 2 * i], *r = &ents[2 + 2 * i];
        c->op = r->op = (uint32_t)i;
        c->call = true;
        c->time = ops[i]->call;
        r->time = ops[i]->done || ops[i]->ret != 0 ? ops[i]->ret : UINT64_MAX;
    }
    qsort(&ents[1], 2 * n, sizeof(*ents), ent_cmp);
    /* Re-link matches after sorting: where[2*op + call] = position. */
    for (size_t i = 1; i <= 2 * n; i++)
        where[2 * ents[i].op + (ents[i].call ? 1 : 0)] = (uint32_t)i;
    for (size_t i = 0; i < n; i++) {
        struct ent *c = &ents[where[2 * i + 1]], *r = &ents[where[2 * i]];
        c->match = r;
        r->match = c;
    }
    for (size_t i = 0; i <= 2 * n; i++) {
        ents[i].prev = i > 0 ? &ents[i - 1] : NULL;
        ents[i].next = i < 2 * n ? &ents[i + 1] : NULL;
    }

    struct ent *head = &ents[0];
    struct ent *cur = head->next;
    uint64_t state = init;
    size_t depth = 0;
    int variant = 0; /* first outcome to try at cur */
    while (head->next != NULL) {
        if (++steps > LIN_STEPS_MAX) {
            verdict = LIN_UNKNOWN;
            goto out;
        }
        if (cur->call) {
            const struct lin_op *o = ops[cur->op];
            bool pushed = false;
            for (; variant < variants(o) && !pushed; variant++) {
                uint64_t next;
                if (!model_step(o, variant, state, &next))
                    continue;
                bits[cur->op / 64] |= 1ull << (cur->op % 64);
                int rc = memo_add(&memo, bits, next);
                if (rc == 1) {
                    stack[depth].call = cur;
                    stack[depth].state = state;
                    stack[depth].variant = variant;
                    depth++;
                    state = next;
                    lift(cur);
                    pushed = true;
                    break;
                }
                bits[cur->op / 64] &= ~(1ull << (cur->op % 64));
                if (rc == -1)
                    goto out;
                if (rc == -2) {
                    verdict = LIN_UNKNOWN;
                    goto out;
                }
            }
            variant = 0;
            cur = pushed ? head->next : cur->next;
        } else {
            /* A return whose call cannot be linearized yet: backtrack. */
            if (depth == 0) {
                verdict = LIN_VIOLATION;
                goto out;
            }
            depth--;
            cur = stack[depth].call;
            state = stack[depth].state;
            bits[cur->op / 64] &= ~(1ull << (cur->op % 64));
            unlift(cur);
            variant = stack[depth].variant + 1; /* the next outcome of the same call */
        }
    }
    verdict = LIN_OK;
out:
    *explored += steps;
    free(ents);
    free(stack);
    free(bits);
    free(where);
    free(memo.pool);
    free(memo.slots);
    return verdict;
}

static int op_key_cmp(const void *pa, const void *pb)
{
    const struct lin_op *a = *(const struct lin_op *const *)pa;
    const struct lin_op *b = *(const struct lin_op *const *)pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if (a->call != b->call)
        return a->call < b->call ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
}

static int u64_cmp(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b ? 1 : 0;
}

/* Drop from one key's ops[0..n) the indeterminate writes (PUT, CAS) whose
 * value nobody observes: no completed GET returns it and no CAS expects it.
 * The verdict does not change, and without this every such op could sit
 * anywhere in the order, which makes disproving a long history exponential.
 * Why it is sound: given a linearization with such a write W, delete W; the
 * ops up to the next write see the previous value instead of W's, and none of
 * them depended on W's value (no read of it, no CAS expecting it); the
 * indeterminate ops among them move to the end (no return bound) or, with a
 * deadline, take their no-effect outcome. The converse: put W last, or use
 * its no-effect outcome. A completed CAS that did not swap observes "not
 * equal", which that deletion could break: such keys are left as they are.
 * `obs` has room for n values. Returns the new count. */
static size_t prune_unobserved(const struct lin_op **ops, size_t n, uint64_t *obs)
{
    size_t n_obs = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lin_op *o = ops[i];
        if (o->kind == LIN_GET && o->done)
            obs[n_obs++] = o->out;
        else if (o->kind == LIN_CAS && o->done && o->out == 0)
            return n;
        else if (o->kind == LIN_CAS)
            obs[n_obs++] = o->arg;
    }
    qsort(obs, n_obs, sizeof(*obs), u64_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lin_op *o = ops[i];
        if (!o->done && o->kind != LIN_GET) {
            uint64_t v = o->kind == LIN_PUT ? o->arg : o->arg2;
            if (bsearch(&v, obs, n_obs, sizeof(*obs), u64_cmp) == NULL)
                continue;
        }
        ops[m++] = o;
    }
    return m;
}

int sv__lin_check(const struct lin_op *ops, size_t n, uint64_t init, struct lin_report *report)
{
    memset(report, 0, sizeof(*report));
    const struct lin_op **by_key = calloc(n + 1, sizeof(*by_key));
    uint64_t *obs = calloc(n + 1, sizeof(*obs));
    if (by_key == NULL || obs == NULL) {
        free(by_key);
        free(obs);
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].kind == LIN_GET && !ops[i].done)
            continue; /* an unanswered read constrains nothing */
        by_key[m++] = &ops[i];
    }
    qsort(by_key, m, sizeof(*by_key), op_key_cmp);
    int verdict = LIN_OK;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && by_key[j]->key == by_key[i]->key)
            j++;
        int rc;
        size_t k = prune_unobserved(&by_key[i], j - i, obs);
        if (k > LIN_OPS_MAX)
            rc = LIN_UNKNOWN;
        else
            rc = check_key(&by_key[i], k, init, &report->explored);
        if (rc != LIN_OK) {
            report->key = by_key[i]->key;
            report->n_ops = k;
            verdict = rc;
            if (rc != LIN_UNKNOWN)
                break; /* a violation outranks an unknown elsewhere */
        }
        i = j;
    }
    free(by_key);
    free(obs);
    return verdict;
}
