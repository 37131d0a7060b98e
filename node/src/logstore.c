/* ShardVault Raft log storage, shared by both implementations: errors, groups, staging. */
#define _GNU_SOURCE
#include "logstore_internal.h"

#include "sv_assert.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- errors ---- */

const char *sv_logstore_strerror(int err)
{
    static const char *const names[] = {
        "group not found",
        "corrupt log record",
        "entry or snapshot too big",
        "bad argument",
        "too much staged (commit first)",
        "too many groups",
        "LevelDB error",
        "out of memory",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == SV_LOG_E_LAST_ - SV_LOG_E_NOT_FOUND,
                   "one name per error");
    if (err == 0)
        return "ok";
    if (err >= SV_LOG_E_NOT_FOUND && err < SV_LOG_E_LAST_)
        return names[err - SV_LOG_E_NOT_FOUND];
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

__attribute__((format(printf, 3, 4))) int sv__logstore_seterr(struct store *st, int rc,
                                                              const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(st->pub.errmsg, sizeof st->pub.errmsg, "%s: ", sv_logstore_strerror(rc));
    if (n < 0 || (size_t)n >= sizeof st->pub.errmsg)
        return rc;
    va_start(ap, fmt);
    vsnprintf(st->pub.errmsg + n, sizeof st->pub.errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

/* LevelDB reports errors as strings; a full disk is still -ENOSPC for callers. */
int sv__logstore_dberr(struct store *st, char *err, const char *what)
{
    int rc = strstr(err, "No space left") ? -ENOSPC : SV_LOG_E_DB;
    sv__logstore_seterr(st, rc, "%s: %s", what, err);
    leveldb_free(err);
    return rc;
}

/* ---- groups ---- */

static size_t group_pos(const struct store *st, uint64_t id)
{
    size_t lo = 0, hi = st->n_groups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->groups[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct group *sv__logstore_group_find(struct store *st, uint64_t id)
{
    size_t i = group_pos(st, id);
    return i < st->n_groups && st->groups[i].id == id ? &st->groups[i] : NULL;
}

void sv__logstore_meta_empty(struct gmeta *m)
{
    memset(m, 0, sizeof *m);
    m->first = 1;
}

static void memg_free(struct memg *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->ents[i].data);
    free(m->ents);
    free(m->snap.data);
    memset(m, 0, sizeof *m);
    m->res_lo = UINT64_MAX;
}

/* Insert a group that exists neither committed nor staged. */
int sv__logstore_group_insert(struct store *st, uint64_t id, struct group **out)
{
    if (st->n_groups >= SV_LOG_GROUPS_MAX)
        return sv__logstore_seterr(st, SV_LOG_E_GROUPS_FULL, "group %llu", (unsigned long long)id);
    if (st->n_groups == st->cap_groups) {
        size_t cap = st->cap_groups ? st->cap_groups * 2 : 16;
        struct group *g = realloc(st->groups, cap * sizeof *g);
        if (g == NULL)
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "groups");
        st->groups = g;
        st->cap_groups = cap;
    }
    size_t i = group_pos(st, id);
    ASSERT(i == st->n_groups || st->groups[i].id != id);
    memmove(st->groups + i + 1, st->groups + i, (st->n_groups - i) * sizeof *st->groups);
    st->n_groups++;
    struct group *g = &st->groups[i];
    memset(g, 0, sizeof *g);
    g->id = id;
    sv__logstore_meta_empty(&g->c);
    sv__logstore_meta_empty(&g->s);
    g->m.res_lo = UINT64_MAX;
    *out = g;
    return 0;
}

static void group_remove(struct store *st, struct group *g)
{
    size_t i = (size_t)(g - st->groups);
    memg_free(&g->m);
    memmove(st->groups + i, st->groups + i + 1, (st->n_groups - i - 1) * sizeof *st->groups);
    st->n_groups--;
}

/* Record that g is staged; reserve the dirty slot before anything is staged. */
static int mark_dirty(struct store *st, struct group *g)
{
    if (g->dirty)
        return 0;
    if (st->n_dirty == st->cap_dirty) {
        size_t cap = st->cap_dirty ? st->cap_dirty * 2 : 16;
        uint64_t *d = realloc(st->dirty, cap * sizeof *d);
        if (d == NULL)
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "dirty list");
        st->dirty = d;
        st->cap_dirty = cap;
    }
    st->dirty[st->n_dirty++] = g->id;
    g->dirty = true;
    return 0;
}

/* A group that no longer exists holds no data in any payload file (a later
 * group with the same id starts with no references). */
static void pfiles_forget(struct store *st, uint64_t group)
{
    for (size_t i = 0; i < st->n_pfiles; i++) {
        struct pfile *p = &st->pfiles[i];
        for (size_t r = 0; r < p->n_refs; r++)
            if (p->refs[r].group == group) {
                p->refs[r] = p->refs[--p->n_refs];
                break;
            }
    }
}

/* End of a commit (ok) or a discard (!ok): staged metadata becomes the
 * committed one, or is reset to it; groups that no longer exist go. */
void sv__logstore_settle(struct store *st, bool ok)
{
    for (size_t i = 0; i < st->n_dirty; i++) {
        struct group *g = sv__logstore_group_find(st, st->dirty[i]);
        ASSERT(g != NULL && g->dirty);
        g->dirty = false;
        g->m.res_lo = UINT64_MAX;
        if (ok)
            g->c = g->s;
        else
            g->s = g->c;
        if (!g->c.exists) {
            pfiles_forget(st, g->id);
            group_remove(st, g);
        }
    }
    st->n_dirty = 0;
    st->pend_bytes = 0;
    st->pend_ops = 0;
}

static int check_pending(struct store *st, uint64_t bytes, uint64_t ops)
{
    if (st->pend_bytes + bytes > SV_LOG_PENDING_BYTES_MAX ||
        st->pend_ops + ops > SV_LOG_PENDING_OPS_MAX)
        return sv__logstore_seterr(st, SV_LOG_E_PENDING_FULL, "%llu bytes, %llu operations staged",
                                   (unsigned long long)st->pend_bytes,
                                   (unsigned long long)st->pend_ops);
    return 0;
}

static int check_snapshot(struct store *st, const struct sv_raft_snapshot *snap)
{
    if (snap->len > SV_LOG_SNAPSHOT_BYTES_MAX)
        return sv__logstore_seterr(st, SV_LOG_E_TOO_BIG, "snapshot of %llu bytes",
                                   (unsigned long long)snap->len);
    if (snap->meta.index == 0 || (snap->len > 0 && snap->data == NULL) ||
        snap->meta.conf.n > SV_RAFT_SERVERS_MAX)
        return sv__logstore_seterr(st, SV_LOG_E_BAD_ARG, "snapshot at index %llu",
                                   (unsigned long long)snap->meta.index);
    return 0;
}

/* ---- staging (both implementations) ---- */

int sv__logstore_stage(struct sv_logstore *s, uint64_t group, const struct sv_raft_ready *rd)
{
    struct store *st = (struct store *)s;
    const struct sv_raft_snapshot *snap = rd->snapshot;
    const struct sv_raft_entry *e = rd->entries;
    size_t n = rd->n_entries;
    if (!rd->hs_changed && snap == NULL && n == 0)
        return 0;

    struct group *g = sv__logstore_group_find(st, group);
    if (g != NULL && g->s.corrupt)
        return sv__logstore_seterr(st, SV_LOG_E_CORRUPT, "group %llu has damaged metadata",
                                   (unsigned long long)group);
    struct gmeta m;
    if (g != NULL && g->s.exists)
        m = g->s;
    else
        sv__logstore_meta_empty(&m);
    const struct gmeta old = m;

    /* Validate and cost everything before staging anything. */
    uint64_t bytes = 0, ops = 0;
    if (rd->hs_changed) {
        bytes += OP_BYTES;
        ops++;
    }
    if (snap != NULL) {
        int rc = check_snapshot(st, snap);
        if (rc != 0)
            return rc;
        uint32_t chunks = chunks_for(snap->len);
        bytes += snap->len + OP_BYTES * (1ull + chunks);
        ops +=
            1ull + chunks + (m.last + 1 - m.first) + (m.snap_chunks > chunks ? m.snap_chunks : 0);
        m.snap_index = snap->meta.index;
        m.snap_chunks = chunks;
        m.first = m.snap_index + 1;
        m.last = m.snap_index;
    }
    if (n > 0) {
        uint64_t i0 = e[0].index;
        if (i0 <= m.snap_index || i0 > m.last + 1 || i0 == 0 || n > SV_LOG_PENDING_OPS_MAX)
            return sv__logstore_seterr(
                st, SV_LOG_E_BAD_ARG,
                "group %llu: entries from %llu, log %llu..%llu, snapshot %llu",
                (unsigned long long)group, (unsigned long long)i0, (unsigned long long)m.first,
                (unsigned long long)m.last, (unsigned long long)m.snap_index);
        for (size_t i = 0; i < n; i++) {
            if (e[i].index != i0 + i)
                return sv__logstore_seterr(
                    st, SV_LOG_E_BAD_ARG, "group %llu: entry %zu has index %llu",
                    (unsigned long long)group, i, (unsigned long long)e[i].index);
            if (e[i].len > SV_LOG_ENTRY_BYTES_MAX)
                return sv__logstore_seterr(st, SV_LOG_E_TOO_BIG, "entry %llu of %u bytes",
                                           (unsigned long long)e[i].index, e[i].len);
            if (e[i].len > 0 && e[i].data == NULL)
                return sv__logstore_seterr(st, SV_LOG_E_BAD_ARG, "entry %llu without data",
                                           (unsigned long long)e[i].index);
            bytes += e[i].len + OP_BYTES;
        }
        uint64_t new_last = i0 + n - 1;
        ops += n + (m.last > new_last ? m.last - new_last : 0);
        m.last = new_last;
    }
    m.exists = true;
    int rc = check_pending(st, bytes, ops);
    if (rc != 0)
        return rc;

    bool created = false;
    if (g == NULL) {
        rc = sv__logstore_group_insert(st, group, &g);
        if (rc != 0)
            return rc;
        created = true;
    }
    rc = mark_dirty(st, g);
    if (rc != 0)
        goto err_after_group;

    if (is_mem(st)) {
        size_t mark = st->n_mops;
        if (n > 0) {
            rc = sv__logstore_mem_reserve(st, g, e[0].index, m.last);
            if (rc != 0)
                goto err_after_group;
        }
        struct memop op;
        if (rd->hs_changed) {
            memset(&op, 0, sizeof op);
            op.kind = OP_HS;
            op.group = group;
            op.hs = rd->hs;
            if ((rc = sv__logstore_mop_push(st, &op)) != 0)
                goto err_after_mops;
        }
        if (snap != NULL) {
            memset(&op, 0, sizeof op);
            op.kind = OP_SNAP_REPLACE;
            op.group = group;
            if ((rc = sv__logstore_copy_snapshot(st, &op.snap, snap)) != 0)
                goto err_after_mops;
            if ((rc = sv__logstore_mop_push(st, &op)) != 0) {
                sv__logstore_mop_free(&op);
                goto err_after_mops;
            }
        }
        if (n > 0) {
            memset(&op, 0, sizeof op);
            op.kind = OP_ENTRIES;
            op.group = group;
            rc = sv__logstore_copy_entries(st, &op, e, n);
            if (rc == 0)
                rc = sv__logstore_mop_push(st, &op);
            if (rc != 0) {
                sv__logstore_mop_free(&op);
                goto err_after_mops;
            }
        }
        goto staged;
    err_after_mops:
        sv__logstore_mop_rollback(st, mark);
        goto err_after_group;
    }

    /* LevelDB: allocate and write the payloads (which nothing refers to
     * until the batch is committed) first, so that the batch is never left
     * half-written. */
    size_t need = snap != NULL ? sv__logstore_snap_scratch(snap) : 0;
    bool any_ref = false;
    for (size_t i = 0; i < n; i++) {
        bool ref = e[i].len >= SV_LOG_PAYLOAD_MIN_BYTES;
        size_t body = ref ? PAYLOAD_REF : (size_t)e[i].len;
        if (ENTRY_HDR + body > need)
            need = ENTRY_HDR + body;
        any_ref |= ref;
    }
    if ((rc = sv__logstore_scratch_reserve(st, need)) != 0)
        goto err_after_group;
    if (any_ref && n > st->cap_locs) {
        struct ploc *l = realloc(st->locs, n * sizeof *l);
        if (l == NULL) {
            rc = sv__logstore_seterr(st, SV_LOG_E_NOMEM, "payload locations");
            goto err_after_group;
        }
        st->locs = l;
        st->cap_locs = n;
    }
    for (size_t i = 0; i < n; i++)
        if (e[i].len >= SV_LOG_PAYLOAD_MIN_BYTES &&
            (rc = sv__logstore_payload_append(st, group, &e[i], &st->locs[i])) != 0)
            goto err_after_group;
    if (rd->hs_changed)
        sv__logstore_db_put_hs(st, group, &rd->hs);
    if (snap != NULL) {
        sv__logstore_db_del_entries(st, group, old.first, old.last);
        rc = sv__logstore_db_put_snapshot(st, group, snap, old.snap_chunks);
        ASSERT(rc == 0);
        st->reclaim_due = true;
    }
    if (n > 0) {
        uint64_t before_last = snap != NULL ? snap->meta.index : old.last;
        if (before_last > m.last)
            sv__logstore_db_del_entries(st, group, m.last + 1, before_last);
        for (size_t i = 0; i < n; i++) {
            bool ref = e[i].len >= SV_LOG_PAYLOAD_MIN_BYTES;
            rc = sv__logstore_db_put_entry(st, group, &e[i], ref ? &st->locs[i] : NULL);
            ASSERT(rc == 0);
        }
    }

staged:
    g->s = m;
    st->pend_bytes += bytes;
    st->pend_ops += ops;
    return 0;

err_after_group:
    if (created) {
        if (g->dirty) {
            ASSERT(st->n_dirty > 0 && st->dirty[st->n_dirty - 1] == group);
            st->n_dirty--;
        }
        group_remove(st, g);
    }
    return rc;
}

/* Look up a group that exists in the staged view. */
static int staged_group(struct store *st, uint64_t group, struct group **out)
{
    struct group *g = sv__logstore_group_find(st, group);
    if (g == NULL || !g->s.exists)
        return sv__logstore_seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    if (g->s.corrupt)
        return sv__logstore_seterr(st, SV_LOG_E_CORRUPT, "group %llu has damaged metadata",
                                   (unsigned long long)group);
    *out = g;
    return 0;
}

int sv__logstore_save_snapshot(struct sv_logstore *s, uint64_t group,
                               const struct sv_raft_snapshot *snap)
{
    struct store *st = (struct store *)s;
    struct group *g;
    int rc = staged_group(st, group, &g);
    if (rc != 0)
        return rc;
    if ((rc = check_snapshot(st, snap)) != 0)
        return rc;
    if (snap->meta.index < g->s.snap_index || snap->meta.index > g->s.last)
        return sv__logstore_seterr(st, SV_LOG_E_BAD_ARG,
                                   "group %llu: snapshot %llu, log %llu..%llu, old %llu",
                                   (unsigned long long)group, (unsigned long long)snap->meta.index,
                                   (unsigned long long)g->s.first, (unsigned long long)g->s.last,
                                   (unsigned long long)g->s.snap_index);
    uint32_t chunks = chunks_for(snap->len);
    uint64_t bytes = snap->len + OP_BYTES * (1ull + chunks);
    uint64_t ops = 1ull + chunks + g->s.snap_chunks;
    if ((rc = check_pending(st, bytes, ops)) != 0)
        return rc;
    if ((rc = mark_dirty(st, g)) != 0)
        return rc;
    if (is_mem(st)) {
        struct memop op;
        memset(&op, 0, sizeof op);
        op.kind = OP_SNAP_SAVE;
        op.group = group;
        if ((rc = sv__logstore_copy_snapshot(st, &op.snap, snap)) != 0)
            return rc;
        if ((rc = sv__logstore_mop_push(st, &op)) != 0) {
            sv__logstore_mop_free(&op);
            return rc;
        }
    } else {
        if ((rc = sv__logstore_db_put_snapshot(st, group, snap, g->s.snap_chunks)) != 0)
            return rc;
    }
    g->s.snap_index = snap->meta.index;
    g->s.snap_chunks = chunks;
    st->pend_bytes += bytes;
    st->pend_ops += ops;
    return 0;
}

int sv__logstore_compact(struct sv_logstore *s, uint64_t group, uint64_t index)
{
    struct store *st = (struct store *)s;
    struct group *g;
    int rc = staged_group(st, group, &g);
    if (rc != 0)
        return rc;
    if (index > g->s.snap_index)
        return sv__logstore_seterr(st, SV_LOG_E_BAD_ARG,
                                   "group %llu: compact to %llu past snapshot %llu",
                                   (unsigned long long)group, (unsigned long long)index,
                                   (unsigned long long)g->s.snap_index);
    if (index < g->s.first)
        return 0;
    uint64_t to = index < g->s.last ? index : g->s.last;
    uint64_t ops = to - g->s.first + 1;
    if ((rc = check_pending(st, OP_BYTES * ops, ops)) != 0)
        return rc;
    if ((rc = mark_dirty(st, g)) != 0)
        return rc;
    if (is_mem(st)) {
        struct memop op;
        memset(&op, 0, sizeof op);
        op.kind = OP_COMPACT;
        op.group = group;
        op.index = index;
        if ((rc = sv__logstore_mop_push(st, &op)) != 0)
            return rc;
    } else {
        sv__logstore_db_del_entries(st, group, g->s.first, to);
        st->reclaim_due = true;
    }
    g->s.first = index + 1;
    st->pend_bytes += OP_BYTES * ops;
    st->pend_ops += ops;
    return 0;
}

int sv__logstore_destroy_group(struct sv_logstore *s, uint64_t group)
{
    struct store *st = (struct store *)s;
    struct group *g = sv__logstore_group_find(st, group);
    if (g == NULL || !g->s.exists)
        return sv__logstore_seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    uint64_t ops = 2ull + g->s.snap_chunks + (g->s.last + 1 - g->s.first);
    int rc = check_pending(st, OP_BYTES * ops, ops);
    if (rc != 0)
        return rc;
    if ((rc = mark_dirty(st, g)) != 0)
        return rc;
    if (is_mem(st)) {
        struct memop op;
        memset(&op, 0, sizeof op);
        op.kind = OP_DESTROY;
        op.group = group;
        if ((rc = sv__logstore_mop_push(st, &op)) != 0)
            return rc;
    } else {
        uint8_t k[KEY_CHUNK_LEN];
        sv__logstore_db_del_entries(st, group, g->s.first, g->s.last);
        for (uint32_t c = 0; c < g->s.snap_chunks; c++)
            sv__logstore_db_del(st, k, key_chunk(k, group, c));
        sv__logstore_db_del(st, k, key_group(k, group, 'h'));
        sv__logstore_db_del(st, k, key_group(k, group, 's'));
        st->reclaim_due = true;
    }
    sv__logstore_meta_empty(&g->s);
    st->pend_bytes += OP_BYTES * ops;
    st->pend_ops += ops;
    return 0;
}

int sv__logstore_list_groups(struct sv_logstore *s, uint64_t *ids, size_t cap, size_t *n)
{
    struct store *st = (struct store *)s;
    size_t k = 0;
    for (size_t i = 0; i < st->n_groups; i++) {
        if (!st->groups[i].c.exists)
            continue;
        if (k < cap)
            ids[k] = st->groups[i].id;
        k++;
    }
    *n = k;
    return 0;
}

void sv_logstore_loaded_free(struct sv_logstore_loaded *l)
{
    for (size_t i = 0; i < l->n_entries; i++)
        free(l->entries[i].data);
    free(l->entries);
    free(l->snap.data);
    memset(l, 0, sizeof *l);
}

int sv__logstore_loaded_alloc_entries(struct store *st, struct sv_logstore_loaded *out,
                                      uint64_t count)
{
    if (count > SV_LOG_LOAD_ENTRIES_MAX)
        return sv__logstore_seterr(st, SV_LOG_E_TOO_BIG, "%llu entries to load",
                                   (unsigned long long)count);
    out->entries = calloc(count ? (size_t)count : 1, sizeof *out->entries);
    if (out->entries == NULL)
        return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "%llu entries", (unsigned long long)count);
    return 0;
}

void sv__logstore_loaded_finish(struct sv_logstore_loaded *out, bool has_snap)
{
    out->restore.snapshot = has_snap ? &out->snap : NULL;
    out->restore.entries = out->entries;
    out->restore.n_entries = out->n_entries;
    out->restore.applied = 0;
}

void sv__logstore_store_free(struct store *st)
{
    sv__logstore_mop_rollback(st, 0);
    free(st->mops);
    for (size_t i = 0; i < st->n_groups; i++)
        memg_free(&st->groups[i].m);
    free(st->groups);
    free(st->dirty);
    free(st->scratch);
    for (size_t i = 0; i < st->n_pfiles; i++) {
        if (st->pfiles[i].fd >= 0)
            close(st->pfiles[i].fd);
        free(st->pfiles[i].refs);
    }
    free(st->pfiles);
    free(st->locs);
    free(st->dio);
    free(st);
}
