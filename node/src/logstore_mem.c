/* ShardVault Raft log storage in memory, for tests and the simulator (sv_logstore_mem_ops). */
#define _GNU_SOURCE
#include "logstore_internal.h"

#include "sv_assert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory records ---- */

int sv__logstore_mop_push(struct store *st, const struct memop *op)
{
    if (st->n_mops == st->cap_mops) {
        size_t cap = st->cap_mops ? st->cap_mops * 2 : 64;
        struct memop *p = realloc(st->mops, cap * sizeof *p);
        if (p == NULL)
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "staged operations");
        st->mops = p;
        st->cap_mops = cap;
    }
    st->mops[st->n_mops++] = *op;
    return 0;
}

void sv__logstore_mop_free(struct memop *op)
{
    free(op->snap.data);
    for (size_t i = 0; i < op->n; i++)
        free(op->ents[i].data);
    free(op->ents);
    memset(op, 0, sizeof *op);
}

/* Pop operations staged after `mark` (a failed stage is all or nothing). */
void sv__logstore_mop_rollback(struct store *st, size_t mark)
{
    while (st->n_mops > mark)
        sv__logstore_mop_free(&st->mops[--st->n_mops]);
}

int sv__logstore_copy_snapshot(struct store *st, struct sv_raft_snapshot *dst,
                               const struct sv_raft_snapshot *src)
{
    *dst = *src;
    dst->data = malloc(src->len ? src->len : 1);
    if (dst->data == NULL)
        return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "snapshot copy");
    if (src->len > 0)
        memcpy(dst->data, src->data, src->len);
    return 0;
}

int sv__logstore_copy_entries(struct store *st, struct memop *op, const struct sv_raft_entry *e,
                              size_t n)
{
    op->ents = calloc(n, sizeof *op->ents);
    if (op->ents == NULL)
        return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "entries copy");
    for (size_t i = 0; i < n; i++) {
        op->ents[i] = e[i];
        op->ents[i].data = malloc(e[i].len ? e[i].len : 1);
        if (op->ents[i].data == NULL) {
            op->n = i;
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "entry copy");
        }
        if (e[i].len > 0)
            memcpy(op->ents[i].data, e[i].data, e[i].len);
        op->n = i + 1;
    }
    return 0;
}

/* So that commit never allocates, the committed entry array gets, at stage
 * time, room for every index staged appends may place (lo..hi). */
int sv__logstore_mem_reserve(struct store *st, struct group *g, uint64_t first, uint64_t hi)
{
    struct memg *m = &g->m;
    uint64_t lo = m->res_lo;
    if (first < lo)
        lo = first;
    if (m->n > 0 && m->base < lo)
        lo = m->base;
    uint64_t need = hi - lo + 1;
    if (need > SV_LOG_LOAD_ENTRIES_MAX)
        return sv__logstore_seterr(st, SV_LOG_E_TOO_BIG, "group %llu would hold %llu entries",
                                   (unsigned long long)g->id, (unsigned long long)need);
    if (need > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < need)
            cap *= 2;
        struct sv_raft_entry *p = realloc(m->ents, cap * sizeof *p);
        if (p == NULL)
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "entry array");
        m->ents = p;
        m->cap = cap;
    }
    m->res_lo = lo;
    return 0;
}

static void mem_drop_from(struct memg *m, uint64_t index)
{
    while (m->n > 0 && m->base + m->n - 1 >= index)
        free(m->ents[--m->n].data);
}

static void mem_apply(struct store *st, struct memop *op)
{
    struct group *g = sv__logstore_group_find(st, op->group);
    ASSERT(g != NULL);
    struct memg *m = &g->m;
    switch (op->kind) {
    case OP_HS:
        m->hs = op->hs;
        m->has_hs = true;
        break;
    case OP_SNAP_REPLACE:
        mem_drop_from(m, 0);
        /* fall through */
    case OP_SNAP_SAVE:
        free(m->snap.data);
        m->snap = op->snap;
        m->has_snap = true;
        op->snap.data = NULL;
        break;
    case OP_ENTRIES:
        mem_drop_from(m, op->ents[0].index);
        if (m->n == 0)
            m->base = op->ents[0].index;
        ASSERT(m->base + m->n == op->ents[0].index);
        ASSERT(m->n + op->n <= m->cap);
        memcpy(m->ents + m->n, op->ents, op->n * sizeof *op->ents);
        m->n += op->n;
        free(op->ents);
        op->ents = NULL;
        op->n = 0;
        break;
    case OP_COMPACT: {
        size_t drop = 0;
        while (drop < m->n && m->base + drop <= op->index)
            free(m->ents[drop++].data);
        memmove(m->ents, m->ents + drop, (m->n - drop) * sizeof *m->ents);
        m->n -= drop;
        m->base += drop;
        break;
    }
    case OP_DESTROY: {
        uint64_t res_lo = m->res_lo;
        struct sv_raft_entry *ents = m->ents;
        size_t cap = m->cap;
        mem_drop_from(m, 0);
        free(m->snap.data);
        memset(m, 0, sizeof *m);
        m->ents = ents; /* keep the reservation for later staged appends */
        m->cap = cap;
        m->res_lo = res_lo;
        break;
    }
    }
    sv__logstore_mop_free(op);
}

/* ---- memory implementation ---- */

static int mem_commit(struct sv_logstore *s)
{
    struct store *st = (struct store *)s;
    for (size_t i = 0; i < st->n_mops; i++)
        mem_apply(st, &st->mops[i]);
    st->n_mops = 0;
    sv__logstore_settle(st, true);
    return 0;
}

void sv_logstore_mem_crash(struct sv_logstore *s)
{
    struct store *st = (struct store *)s;
    ASSERT(is_mem(st));
    sv__logstore_mop_rollback(st, 0);
    sv__logstore_settle(st, false);
}

static int mem_load(struct sv_logstore *s, uint64_t group, struct sv_logstore_loaded *out)
{
    struct store *st = (struct store *)s;
    memset(out, 0, sizeof *out);
    struct group *g = sv__logstore_group_find(st, group);
    if (g == NULL || !g->c.exists)
        return sv__logstore_seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    const struct memg *m = &g->m;
    if (m->has_hs)
        out->restore.hs = m->hs;
    if (m->has_snap) {
        int rc = sv__logstore_copy_snapshot(st, &out->snap, &m->snap);
        if (rc != 0)
            return rc;
    }
    size_t skip = 0;
    while (skip < m->n && m->base + skip <= g->c.snap_index)
        skip++;
    int rc = sv__logstore_loaded_alloc_entries(st, out, m->n - skip);
    if (rc != 0)
        return rc;
    for (size_t i = skip; i < m->n; i++) {
        struct sv_raft_entry *d = &out->entries[out->n_entries];
        *d = m->ents[i];
        d->data = malloc(d->len ? d->len : 1);
        if (d->data == NULL)
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "entry copy");
        if (d->len > 0)
            memcpy(d->data, m->ents[i].data, d->len);
        out->n_entries++;
    }
    sv__logstore_loaded_finish(out, m->has_snap);
    return 0;
}

static int mem_open(const char *dir, struct sv_logstore **out, char *errmsg, size_t errlen)
{
    (void)dir;
    *out = NULL;
    struct store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        if (errmsg != NULL && errlen > 0)
            snprintf(errmsg, errlen, "out of memory");
        return SV_LOG_E_NOMEM;
    }
    st->pub.ops = &sv_logstore_mem_ops;
    *out = &st->pub;
    return 0;
}

static void mem_close(struct sv_logstore *s)
{
    if (s != NULL)
        sv__logstore_store_free((struct store *)s);
}

const struct sv_logstore_ops sv_logstore_mem_ops = {
    .name = "memory",
    .open = mem_open,
    .close = mem_close,
    .stage = sv__logstore_stage,
    .save_snapshot = sv__logstore_save_snapshot,
    .compact = sv__logstore_compact,
    .destroy_group = sv__logstore_destroy_group,
    .commit = mem_commit,
    .load = mem_load,
    .list_groups = sv__logstore_list_groups,
};
