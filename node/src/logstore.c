/* ShardVault Raft log storage: LevelDB and in-memory implementations of
 * struct sv_logstore_ops (multi-raft, group commit); see logstore.h. */
#define _GNU_SOURCE
#include "logstore.h"

#include "sv_assert.h"
#include "sv_codec.h"
#include "sv_dio.h"

#include <leveldb/c.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    FORMAT_VERSION = 2, /* 1: every entry inline; still read, upgraded at open */
    KEY_GROUP_LEN = 10, /* "g" group type */
    KEY_ENTRY_LEN = 18, /* + index */
    KEY_CHUNK_LEN = 14, /* + chunk */
    ENTRY_HDR = 4 + 8 + 1 + 4,
    HS_LEN = 4 + 24,
    SNAP_HDR = 4 + 8 + 8 + 8 + 4 + 4,
    CHUNK_HDR = 4,
    PAYLOAD_REF = 4 + 8 + 4, /* file, offset, payload CRC */
    OP_BYTES = 64            /* accounting overhead of one staged record */
};

_Static_assert((size_t)SV_LOG_PAYLOAD_MIN_BYTES > (size_t)PAYLOAD_REF,
               "an entry's value length tells inline data from a payload reference");

/* Per-group range as seen by the store. The log holds entries first..last
 * (none when first == last + 1). */
struct gmeta {
    bool exists;
    bool corrupt; /* stored metadata failed its checks at open */
    uint64_t first, last;
    uint64_t snap_index;
    uint32_t snap_chunks;
};

/* The memory implementation's committed records of a group. */
struct memg {
    bool has_hs;
    struct sv_raft_hard_state hs;
    bool has_snap;
    struct sv_raft_snapshot snap; /* data malloc'd */
    struct sv_raft_entry *ents;   /* indexes base..base+n-1 */
    uint64_t base;
    size_t n, cap;
    uint64_t res_lo; /* lowest index staged appends may place (UINT64_MAX: none) */
};

struct group {
    uint64_t id;
    struct gmeta c; /* as of the last commit */
    struct gmeta s; /* as staged */
    bool dirty;
    struct memg m;
};

/* A payload file's reference from one group: the highest index of that
 * group whose data the file holds (entries of a group only get higher
 * indexes in later files, except after truncation, where this errs on the
 * side of keeping the file). */
struct pref {
    uint64_t group;
    uint64_t max_index;
};

/* A payload file of the LevelDB store, payload-<no>.log. */
struct pfile {
    uint32_t no;
    int fd;      /* write fd while active or holding unsynced bytes, else -1 */
    bool dirty;  /* written since the last sync */
    bool direct; /* fd is O_DIRECT: appends are SV_LOG_PAYLOAD_ALIGN-aligned and padded */
    struct pref *refs;
    size_t n_refs, cap_refs;
};

/* Where stage() put one entry's payload. */
struct ploc {
    uint32_t no;
    uint64_t off;
    uint32_t crc;
};

enum memop_kind { OP_HS = 1, OP_SNAP_REPLACE, OP_SNAP_SAVE, OP_ENTRIES, OP_COMPACT, OP_DESTROY };

struct memop {
    enum memop_kind kind;
    uint64_t group;
    struct sv_raft_hard_state hs;
    struct sv_raft_snapshot snap; /* data owned until applied */
    struct sv_raft_entry *ents;   /* owned until applied */
    size_t n;
    uint64_t index;
};

struct store {
    struct sv_logstore pub;
    struct group *groups; /* sorted by id */
    size_t n_groups, cap_groups;
    uint64_t *dirty; /* ids of groups staged since the last commit */
    size_t n_dirty, cap_dirty;
    uint64_t pend_bytes, pend_ops;
    /* LevelDB */
    leveldb_t *db;
    leveldb_options_t *dbopts;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts_sync;
    leveldb_writebatch_t *batch;
    uint8_t *scratch;
    size_t scratch_cap;
    /* payload files, ascending by number; the last is the active one (the
     * one appended to) when p_active */
    int dirfd;
    struct pfile *pfiles;
    size_t n_pfiles, cap_pfiles;
    bool p_active;
    bool p_roll;      /* a sync failed: start a new file before the next append */
    bool dir_dirty;   /* a payload file was created since the last directory sync */
    bool reclaim_due; /* compaction, a replacing snapshot or a destruction staged */
    uint32_t p_next;  /* number of the next payload file */
    uint64_t p_off;   /* append offset in the active file */
    struct ploc *locs;
    size_t cap_locs;
    uint8_t *dio; /* SV_LOG_PAYLOAD_ALIGN-aligned staging of one direct append */
    size_t dio_cap;
    /* memory */
    struct memop *mops;
    size_t n_mops, cap_mops;
};

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

__attribute__((format(printf, 3, 4))) static int seterr(struct store *st, int rc, const char *fmt,
                                                        ...)
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
static int dberr(struct store *st, char *err, const char *what)
{
    int rc = strstr(err, "No space left") ? -ENOSPC : SV_LOG_E_DB;
    seterr(st, rc, "%s: %s", what, err);
    leveldb_free(err);
    return rc;
}

/* ---- encoding: sv_codec.h ---- */

/* Checksum of a value: binds it to its group, its position a (index, chunk
 * number), b (snapshot index for chunks) and its kind, then the bytes after
 * the CRC field (two pieces, so payloads need not be copied to check). */
static uint32_t value_crc(uint64_t group, uint64_t a, uint64_t b, uint8_t kind, const void *p1,
                          size_t n1, const void *p2, size_t n2)
{
    uint8_t h[25];
    sv_put64(h, group);
    sv_put64(h + 8, a);
    sv_put64(h + 16, b);
    h[24] = kind;
    uint32_t crc = sv_crc32c(0, h, sizeof h);
    crc = sv_crc32c(crc, p1, n1);
    if (n2 > 0)
        crc = sv_crc32c(crc, p2, n2);
    return crc;
}

static size_t key_group(uint8_t *k, uint64_t group, char type)
{
    k[0] = 'g';
    sv_put64be(k + 1, group);
    k[9] = (uint8_t)type;
    return KEY_GROUP_LEN;
}

static size_t key_entry(uint8_t *k, uint64_t group, uint64_t index)
{
    key_group(k, group, 'e');
    sv_put64be(k + KEY_GROUP_LEN, index);
    return KEY_ENTRY_LEN;
}

static size_t key_chunk(uint8_t *k, uint64_t group, uint32_t chunk)
{
    key_group(k, group, 'd');
    k[10] = (uint8_t)(chunk >> 24);
    k[11] = (uint8_t)(chunk >> 16);
    k[12] = (uint8_t)(chunk >> 8);
    k[13] = (uint8_t)chunk;
    return KEY_CHUNK_LEN;
}

static uint32_t chunks_for(uint64_t len)
{
    return (uint32_t)((len + SV_LOG_SNAP_CHUNK_BYTES - 1) / SV_LOG_SNAP_CHUNK_BYTES);
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

static struct group *group_find(struct store *st, uint64_t id)
{
    size_t i = group_pos(st, id);
    return i < st->n_groups && st->groups[i].id == id ? &st->groups[i] : NULL;
}

static void meta_empty(struct gmeta *m)
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
static int group_insert(struct store *st, uint64_t id, struct group **out)
{
    if (st->n_groups >= SV_LOG_GROUPS_MAX)
        return seterr(st, SV_LOG_E_GROUPS_FULL, "group %llu", (unsigned long long)id);
    if (st->n_groups == st->cap_groups) {
        size_t cap = st->cap_groups ? st->cap_groups * 2 : 16;
        struct group *g = realloc(st->groups, cap * sizeof *g);
        if (g == NULL)
            return seterr(st, SV_LOG_E_NOMEM, "groups");
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
    meta_empty(&g->c);
    meta_empty(&g->s);
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
            return seterr(st, SV_LOG_E_NOMEM, "dirty list");
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
static void settle(struct store *st, bool ok)
{
    for (size_t i = 0; i < st->n_dirty; i++) {
        struct group *g = group_find(st, st->dirty[i]);
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
        return seterr(st, SV_LOG_E_PENDING_FULL, "%llu bytes, %llu operations staged",
                      (unsigned long long)st->pend_bytes, (unsigned long long)st->pend_ops);
    return 0;
}

static int check_snapshot(struct store *st, const struct sv_raft_snapshot *snap)
{
    if (snap->len > SV_LOG_SNAPSHOT_BYTES_MAX)
        return seterr(st, SV_LOG_E_TOO_BIG, "snapshot of %llu bytes",
                      (unsigned long long)snap->len);
    if (snap->meta.index == 0 || (snap->len > 0 && snap->data == NULL) ||
        snap->meta.conf.n > SV_RAFT_SERVERS_MAX)
        return seterr(st, SV_LOG_E_BAD_ARG, "snapshot at index %llu",
                      (unsigned long long)snap->meta.index);
    return 0;
}

/* ---- LevelDB records ---- */

static int scratch_reserve(struct store *st, size_t n)
{
    if (n <= st->scratch_cap)
        return 0;
    uint8_t *p = realloc(st->scratch, n);
    if (p == NULL)
        return seterr(st, SV_LOG_E_NOMEM, "scratch of %zu bytes", n);
    st->scratch = p;
    st->scratch_cap = n;
    return 0;
}

/* ---- payload files (LevelDB store) ---- */

static void pfile_name(char *buf, size_t len, uint32_t no)
{
    snprintf(buf, len, "payload-%08u.log", no);
}

/* Number of a payload file name; false for any other name. */
static bool pfile_parse(const char *name, uint32_t *no)
{
    static const char pfx[] = "payload-";
    if (strncmp(name, pfx, sizeof pfx - 1) != 0)
        return false;
    const char *d = name + sizeof pfx - 1;
    uint64_t v = 0;
    size_t digits = 0;
    for (; d[digits] >= '0' && d[digits] <= '9'; digits++) {
        v = v * 10 + (uint64_t)(d[digits] - '0');
        if (v > UINT32_MAX)
            return false;
    }
    if (digits < 8 || strcmp(d + digits, ".log") != 0)
        return false;
    *no = (uint32_t)v;
    return true;
}

static size_t pfile_pos(const struct store *st, uint32_t no)
{
    size_t lo = 0, hi = st->n_pfiles;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->pfiles[mid].no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The payload file no, added (no fd, no references) if not known yet. */
static int pfile_get(struct store *st, uint32_t no, struct pfile **out)
{
    size_t i = pfile_pos(st, no);
    if (i < st->n_pfiles && st->pfiles[i].no == no) {
        *out = &st->pfiles[i];
        return 0;
    }
    if (st->n_pfiles == st->cap_pfiles) {
        size_t cap = st->cap_pfiles ? st->cap_pfiles * 2 : 8;
        struct pfile *p = realloc(st->pfiles, cap * sizeof *p);
        if (p == NULL)
            return seterr(st, SV_LOG_E_NOMEM, "payload files");
        st->pfiles = p;
        st->cap_pfiles = cap;
    }
    memmove(st->pfiles + i + 1, st->pfiles + i, (st->n_pfiles - i) * sizeof *st->pfiles);
    st->n_pfiles++;
    struct pfile *p = &st->pfiles[i];
    memset(p, 0, sizeof *p);
    p->no = no;
    p->fd = -1;
    *out = p;
    return 0;
}

/* The reference of group in p, added with max_index 0 if absent. */
static int pfile_ref(struct store *st, struct pfile *p, uint64_t group, struct pref **out)
{
    for (size_t i = p->n_refs; i-- > 0;)
        if (p->refs[i].group == group) {
            *out = &p->refs[i];
            return 0;
        }
    if (p->n_refs == p->cap_refs) {
        size_t cap = p->cap_refs ? p->cap_refs * 2 : 4;
        struct pref *r = realloc(p->refs, cap * sizeof *r);
        if (r == NULL)
            return seterr(st, SV_LOG_E_NOMEM, "payload file references");
        p->refs = r;
        p->cap_refs = cap;
    }
    *out = &p->refs[p->n_refs++];
    **out = (struct pref){.group = group, .max_index = 0};
    return 0;
}

static bool pfile_is_active(const struct store *st, const struct pfile *p)
{
    return st->p_active && p == &st->pfiles[st->n_pfiles - 1];
}

/* Start a new active payload file. The previous one stays open until the
 * next commit has synced it, if it holds unsynced bytes. */
static int payload_roll(struct store *st)
{
    if (st->p_active) {
        struct pfile *a = &st->pfiles[st->n_pfiles - 1];
        if (!a->dirty && a->fd >= 0) {
            close(a->fd);
            a->fd = -1;
        }
        st->p_active = false;
    }
    if (st->p_next == UINT32_MAX)
        return seterr(st, SV_LOG_E_TOO_BIG, "payload file numbers exhausted");
    char name[32];
    pfile_name(name, sizeof name, st->p_next);
    struct pfile *p;
    int rc = pfile_get(st, st->p_next, &p);
    if (rc != 0)
        return rc;
    ASSERT(p == &st->pfiles[st->n_pfiles - 1] && p->n_refs == 0);
    st->p_next++;
    /* Direct I/O where the file system has it: a payload is read back only
     * on restart or for a follower far behind, so copying it into the page
     * cache (most of a node's CPU under large puts) buys nothing. */
    p->direct = true;
    p->fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0644);
    if (p->fd < 0 && errno == EINVAL) {
        p->direct = false;
        p->fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (p->fd < 0) {
        rc = -errno;
        st->n_pfiles--;
        return seterr(st, rc, "create payload file %s", name);
    }
    st->p_active = true;
    st->p_roll = false;
    st->p_off = 0;
    st->dir_dirty = true;
    return 0;
}

/* Turn direct file a into a buffered one; false if the flag cannot be
 * cleared. */
static bool pfile_go_buffered(struct pfile *a)
{
    if (fcntl(a->fd, F_SETFL, 0) != 0)
        return false;
    a->direct = false;
    return true;
}

/* Write e's data at the end of the active payload file (commit syncs it);
 * *loc gets where and its checksum, which binds it to group and index. On
 * failure nothing refers to the bytes written, and the next append
 * overwrites them. A direct file keeps every append aligned; if the device
 * refuses the alignment (EINVAL), the file goes on buffered. */
static int payload_append(struct store *st, uint64_t group, const struct sv_raft_entry *e,
                          struct ploc *loc)
{
    int rc;
    if (!st->p_active || st->p_roll ||
        (st->p_off > 0 && st->p_off + e->len > SV_LOG_PAYLOAD_FILE_BYTES))
        if ((rc = payload_roll(st)) != 0)
            return rc;
    struct pfile *a = &st->pfiles[st->n_pfiles - 1];
    struct pref *r;
    if ((rc = pfile_ref(st, a, group, &r)) != 0)
        return rc;
    loc->crc = value_crc(group, e->index, 0, 'p', e->data, e->len, NULL, 0);
    size_t len = e->len;
    const uint8_t *src = e->data;
    if (a->direct) { /* staged aligned, zero-padded to the next multiple */
        size_t n = sv_align_up(e->len, SV_LOG_PAYLOAD_ALIGN);
        if (sv_dio_reserve(&st->dio, &st->dio_cap, n, SV_LOG_PAYLOAD_ALIGN)) {
            memcpy(st->dio, e->data, e->len);
            memset(st->dio + e->len, 0, n - e->len);
            src = st->dio;
            len = n;
        } else if (!pfile_go_buffered(a)) {
            return seterr(st, SV_LOG_E_NOMEM, "direct write buffer of %zu bytes", n);
        }
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = pwrite(a->fd, src + done, len - done, (off_t)(st->p_off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL && a->direct && pfile_go_buffered(a)) {
            src = e->data;
            len = e->len;
            continue;
        }
        if (w <= 0) {
            rc = w < 0 ? -errno : -EIO;
            char name[32];
            pfile_name(name, sizeof name, a->no);
            return seterr(st, rc, "write of entry %llu to %s at offset %llu",
                          (unsigned long long)e->index, name,
                          (unsigned long long)(st->p_off + done));
        }
        done += (size_t)w;
    }
    a->dirty = true;
    if (r->max_index < e->index)
        r->max_index = e->index;
    loc->no = a->no;
    loc->off = st->p_off;
    st->p_off += len;
    return 0;
}

/* Commit, before the index write: make every payload byte written since the
 * last commit durable (fdatasync), and the names of new files (directory
 * fsync). After a failure the active file is never appended to again. */
static int payload_sync(struct store *st)
{
    int rc = 0;
    for (size_t i = 0; i < st->n_pfiles; i++) {
        struct pfile *p = &st->pfiles[i];
        if (!p->dirty)
            continue;
        if (rc == 0 && fdatasync(p->fd) < 0) {
            rc = -errno;
            char name[32];
            pfile_name(name, sizeof name, p->no);
            seterr(st, rc, "fdatasync of %s", name);
        }
        p->dirty = false;
        if (!pfile_is_active(st, p)) {
            close(p->fd);
            p->fd = -1;
        }
    }
    if (rc == 0 && st->dir_dirty) {
        if (fsync(st->dirfd) < 0)
            rc = seterr(st, -errno, "fsync of the store directory");
        else
            st->dir_dirty = false;
    }
    if (rc != 0)
        st->p_roll = true;
    return rc;
}

/* Does an entry that still exists have its data in p? (max_index below the
 * group's first index: every entry of it in p was compacted away.) */
static bool pfile_live(struct store *st, const struct pfile *p)
{
    for (size_t i = 0; i < p->n_refs; i++) {
        const struct group *g = group_find(st, p->refs[i].group);
        if (g != NULL && g->c.exists && (g->c.corrupt || p->refs[i].max_index >= g->c.first))
            return true;
    }
    return false;
}

/* Right after a successful commit (nothing staged, the deletions that made
 * files dead are durable): delete every payload file but the active one that
 * no entry refers to. A failed unlink is retried after the next commit. */
static void payload_reclaim(struct store *st)
{
    size_t keep = 0;
    bool again = false;
    for (size_t i = 0; i < st->n_pfiles; i++) {
        struct pfile *p = &st->pfiles[i];
        if (!pfile_is_active(st, p) && !pfile_live(st, p)) {
            char name[32];
            pfile_name(name, sizeof name, p->no);
            ASSERT(!p->dirty);
            if (unlinkat(st->dirfd, name, 0) == 0 || errno == ENOENT) {
                if (p->fd >= 0)
                    close(p->fd);
                free(p->refs);
                continue;
            }
            again = true;
        }
        st->pfiles[keep++] = *p;
    }
    st->n_pfiles = keep;
    st->reclaim_due = again;
}

/* An entry value holds its data inline (ENTRY_HDR + len bytes) or, for an
 * entry of at least SV_LOG_PAYLOAD_MIN_BYTES, a payload reference; *is_ref
 * says which. False for any other length. */
static bool entry_value_ok(const uint8_t *p, size_t vlen, bool *is_ref)
{
    if (vlen < ENTRY_HDR)
        return false;
    uint32_t len = sv_get32(p + 13);
    *is_ref = len >= SV_LOG_PAYLOAD_MIN_BYTES && vlen == ENTRY_HDR + PAYLOAD_REF;
    return *is_ref || vlen == ENTRY_HDR + (size_t)len;
}

static void db_put(struct store *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    leveldb_writebatch_put(st->batch, (const char *)k, klen, (const char *)v, vlen);
}

static void db_del(struct store *st, const uint8_t *k, size_t klen)
{
    leveldb_writebatch_delete(st->batch, (const char *)k, klen);
}

static void db_del_entries(struct store *st, uint64_t group, uint64_t from, uint64_t to)
{
    uint8_t k[KEY_ENTRY_LEN];
    for (uint64_t i = from; i <= to; i++) {
        db_del(st, k, key_entry(k, group, i));
        if (i == UINT64_MAX)
            break;
    }
}

static void db_put_hs(struct store *st, uint64_t group, const struct sv_raft_hard_state *hs)
{
    uint8_t k[KEY_GROUP_LEN], v[HS_LEN];
    sv_put64(v + 4, hs->term);
    sv_put64(v + 12, hs->vote);
    sv_put64(v + 20, hs->commit);
    sv_put32(v, value_crc(group, 0, 0, 'h', v + 4, HS_LEN - 4, NULL, 0));
    db_put(st, k, key_group(k, group, 'h'), v, sizeof v);
}

/* Entry e with its data inline, or (loc) a reference to its payload. */
static int db_put_entry(struct store *st, uint64_t group, const struct sv_raft_entry *e,
                        const struct ploc *loc)
{
    size_t body = loc != NULL ? PAYLOAD_REF : (size_t)e->len;
    int rc = scratch_reserve(st, ENTRY_HDR + body);
    if (rc != 0)
        return rc;
    uint8_t *v = st->scratch, k[KEY_ENTRY_LEN];
    sv_put64(v + 4, e->term);
    v[12] = e->type;
    sv_put32(v + 13, e->len);
    if (loc != NULL) {
        sv_put32(v + ENTRY_HDR, loc->no);
        sv_put64(v + ENTRY_HDR + 4, loc->off);
        sv_put32(v + ENTRY_HDR + 12, loc->crc);
    } else if (e->len > 0) {
        memcpy(v + ENTRY_HDR, e->data, e->len);
    }
    sv_put32(v, value_crc(group, e->index, 0, 'e', v + 4, ENTRY_HDR - 4 + body, NULL, 0));
    db_put(st, k, key_entry(k, group, e->index), v, ENTRY_HDR + body);
    return 0;
}

/* Scratch bytes db_put_snapshot needs. */
static size_t snap_scratch(const struct sv_raft_snapshot *snap)
{
    size_t meta = SNAP_HDR + sv_raft_conf_encoded_len(&snap->meta.conf);
    return meta > CHUNK_HDR + SV_LOG_SNAP_CHUNK_BYTES ? meta : CHUNK_HDR + SV_LOG_SNAP_CHUNK_BYTES;
}

/* Snapshot meta and data chunks; chunks of a previous, longer snapshot are
 * deleted (their CRCs name the old index, so a leftover would be caught). */
static int db_put_snapshot(struct store *st, uint64_t group, const struct sv_raft_snapshot *snap,
                           uint32_t old_chunks)
{
    size_t clen = sv_raft_conf_encoded_len(&snap->meta.conf);
    uint32_t chunks = chunks_for(snap->len);
    int rc = scratch_reserve(st, snap_scratch(snap));
    if (rc != 0)
        return rc;
    uint8_t *v = st->scratch, k[KEY_CHUNK_LEN];
    sv_put64(v + 4, snap->meta.index);
    sv_put64(v + 12, snap->meta.term);
    sv_put64(v + 20, snap->len);
    sv_put32(v + 28, chunks);
    sv_put32(v + 32, (uint32_t)clen);
    sv_raft_conf_encode(&snap->meta.conf, v + SNAP_HDR);
    sv_put32(v, value_crc(group, 0, 0, 's', v + 4, SNAP_HDR - 4 + clen, NULL, 0));
    db_put(st, k, key_group(k, group, 's'), v, SNAP_HDR + clen);
    for (uint32_t c = 0; c < chunks; c++) {
        uint64_t off = (uint64_t)c * SV_LOG_SNAP_CHUNK_BYTES;
        size_t n = (size_t)(snap->len - off < SV_LOG_SNAP_CHUNK_BYTES ? snap->len - off
                                                                      : SV_LOG_SNAP_CHUNK_BYTES);
        memcpy(v + CHUNK_HDR, snap->data + off, n);
        sv_put32(v, value_crc(group, c, snap->meta.index, 'd', v + CHUNK_HDR, n, NULL, 0));
        db_put(st, k, key_chunk(k, group, c), v, CHUNK_HDR + n);
    }
    for (uint32_t c = chunks; c < old_chunks; c++)
        db_del(st, k, key_chunk(k, group, c));
    return 0;
}

/* ---- memory records ---- */

static int mop_push(struct store *st, const struct memop *op)
{
    if (st->n_mops == st->cap_mops) {
        size_t cap = st->cap_mops ? st->cap_mops * 2 : 64;
        struct memop *p = realloc(st->mops, cap * sizeof *p);
        if (p == NULL)
            return seterr(st, SV_LOG_E_NOMEM, "staged operations");
        st->mops = p;
        st->cap_mops = cap;
    }
    st->mops[st->n_mops++] = *op;
    return 0;
}

static void mop_free(struct memop *op)
{
    free(op->snap.data);
    for (size_t i = 0; i < op->n; i++)
        free(op->ents[i].data);
    free(op->ents);
    memset(op, 0, sizeof *op);
}

/* Pop operations staged after `mark` (a failed stage is all or nothing). */
static void mop_rollback(struct store *st, size_t mark)
{
    while (st->n_mops > mark)
        mop_free(&st->mops[--st->n_mops]);
}

static int copy_snapshot(struct store *st, struct sv_raft_snapshot *dst,
                         const struct sv_raft_snapshot *src)
{
    *dst = *src;
    dst->data = malloc(src->len ? src->len : 1);
    if (dst->data == NULL)
        return seterr(st, SV_LOG_E_NOMEM, "snapshot copy");
    if (src->len > 0)
        memcpy(dst->data, src->data, src->len);
    return 0;
}

static int copy_entries(struct store *st, struct memop *op, const struct sv_raft_entry *e, size_t n)
{
    op->ents = calloc(n, sizeof *op->ents);
    if (op->ents == NULL)
        return seterr(st, SV_LOG_E_NOMEM, "entries copy");
    for (size_t i = 0; i < n; i++) {
        op->ents[i] = e[i];
        op->ents[i].data = malloc(e[i].len ? e[i].len : 1);
        if (op->ents[i].data == NULL) {
            op->n = i;
            return seterr(st, SV_LOG_E_NOMEM, "entry copy");
        }
        if (e[i].len > 0)
            memcpy(op->ents[i].data, e[i].data, e[i].len);
        op->n = i + 1;
    }
    return 0;
}

/* So that commit never allocates, the committed entry array gets, at stage
 * time, room for every index staged appends may place (lo..hi). */
static int mem_reserve(struct store *st, struct group *g, uint64_t first, uint64_t hi)
{
    struct memg *m = &g->m;
    uint64_t lo = m->res_lo;
    if (first < lo)
        lo = first;
    if (m->n > 0 && m->base < lo)
        lo = m->base;
    uint64_t need = hi - lo + 1;
    if (need > SV_LOG_LOAD_ENTRIES_MAX)
        return seterr(st, SV_LOG_E_TOO_BIG, "group %llu would hold %llu entries",
                      (unsigned long long)g->id, (unsigned long long)need);
    if (need > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < need)
            cap *= 2;
        struct sv_raft_entry *p = realloc(m->ents, cap * sizeof *p);
        if (p == NULL)
            return seterr(st, SV_LOG_E_NOMEM, "entry array");
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
    struct group *g = group_find(st, op->group);
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
    mop_free(op);
}

/* ---- staging (both implementations) ---- */

static bool is_mem(const struct store *st)
{
    return st->db == NULL;
}

static int stage(struct sv_logstore *s, uint64_t group, const struct sv_raft_ready *rd)
{
    struct store *st = (struct store *)s;
    const struct sv_raft_snapshot *snap = rd->snapshot;
    const struct sv_raft_entry *e = rd->entries;
    size_t n = rd->n_entries;
    if (!rd->hs_changed && snap == NULL && n == 0)
        return 0;

    struct group *g = group_find(st, group);
    if (g != NULL && g->s.corrupt)
        return seterr(st, SV_LOG_E_CORRUPT, "group %llu has damaged metadata",
                      (unsigned long long)group);
    struct gmeta m;
    if (g != NULL && g->s.exists)
        m = g->s;
    else
        meta_empty(&m);
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
            return seterr(st, SV_LOG_E_BAD_ARG,
                          "group %llu: entries from %llu, log %llu..%llu, snapshot %llu",
                          (unsigned long long)group, (unsigned long long)i0,
                          (unsigned long long)m.first, (unsigned long long)m.last,
                          (unsigned long long)m.snap_index);
        for (size_t i = 0; i < n; i++) {
            if (e[i].index != i0 + i)
                return seterr(st, SV_LOG_E_BAD_ARG, "group %llu: entry %zu has index %llu",
                              (unsigned long long)group, i, (unsigned long long)e[i].index);
            if (e[i].len > SV_LOG_ENTRY_BYTES_MAX)
                return seterr(st, SV_LOG_E_TOO_BIG, "entry %llu of %u bytes",
                              (unsigned long long)e[i].index, e[i].len);
            if (e[i].len > 0 && e[i].data == NULL)
                return seterr(st, SV_LOG_E_BAD_ARG, "entry %llu without data",
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
        rc = group_insert(st, group, &g);
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
            rc = mem_reserve(st, g, e[0].index, m.last);
            if (rc != 0)
                goto err_after_group;
        }
        struct memop op;
        if (rd->hs_changed) {
            memset(&op, 0, sizeof op);
            op.kind = OP_HS;
            op.group = group;
            op.hs = rd->hs;
            if ((rc = mop_push(st, &op)) != 0)
                goto err_after_mops;
        }
        if (snap != NULL) {
            memset(&op, 0, sizeof op);
            op.kind = OP_SNAP_REPLACE;
            op.group = group;
            if ((rc = copy_snapshot(st, &op.snap, snap)) != 0)
                goto err_after_mops;
            if ((rc = mop_push(st, &op)) != 0) {
                mop_free(&op);
                goto err_after_mops;
            }
        }
        if (n > 0) {
            memset(&op, 0, sizeof op);
            op.kind = OP_ENTRIES;
            op.group = group;
            rc = copy_entries(st, &op, e, n);
            if (rc == 0)
                rc = mop_push(st, &op);
            if (rc != 0) {
                mop_free(&op);
                goto err_after_mops;
            }
        }
        goto staged;
    err_after_mops:
        mop_rollback(st, mark);
        goto err_after_group;
    }

    /* LevelDB: allocate and write the payloads (which nothing refers to
     * until the batch is committed) first, so that the batch is never left
     * half-written. */
    size_t need = snap != NULL ? snap_scratch(snap) : 0;
    bool any_ref = false;
    for (size_t i = 0; i < n; i++) {
        bool ref = e[i].len >= SV_LOG_PAYLOAD_MIN_BYTES;
        size_t body = ref ? PAYLOAD_REF : (size_t)e[i].len;
        if (ENTRY_HDR + body > need)
            need = ENTRY_HDR + body;
        any_ref |= ref;
    }
    if ((rc = scratch_reserve(st, need)) != 0)
        goto err_after_group;
    if (any_ref && n > st->cap_locs) {
        struct ploc *l = realloc(st->locs, n * sizeof *l);
        if (l == NULL) {
            rc = seterr(st, SV_LOG_E_NOMEM, "payload locations");
            goto err_after_group;
        }
        st->locs = l;
        st->cap_locs = n;
    }
    for (size_t i = 0; i < n; i++)
        if (e[i].len >= SV_LOG_PAYLOAD_MIN_BYTES &&
            (rc = payload_append(st, group, &e[i], &st->locs[i])) != 0)
            goto err_after_group;
    if (rd->hs_changed)
        db_put_hs(st, group, &rd->hs);
    if (snap != NULL) {
        db_del_entries(st, group, old.first, old.last);
        rc = db_put_snapshot(st, group, snap, old.snap_chunks);
        ASSERT(rc == 0);
        st->reclaim_due = true;
    }
    if (n > 0) {
        uint64_t before_last = snap != NULL ? snap->meta.index : old.last;
        if (before_last > m.last)
            db_del_entries(st, group, m.last + 1, before_last);
        for (size_t i = 0; i < n; i++) {
            bool ref = e[i].len >= SV_LOG_PAYLOAD_MIN_BYTES;
            rc = db_put_entry(st, group, &e[i], ref ? &st->locs[i] : NULL);
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
    struct group *g = group_find(st, group);
    if (g == NULL || !g->s.exists)
        return seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    if (g->s.corrupt)
        return seterr(st, SV_LOG_E_CORRUPT, "group %llu has damaged metadata",
                      (unsigned long long)group);
    *out = g;
    return 0;
}

static int save_snapshot(struct sv_logstore *s, uint64_t group, const struct sv_raft_snapshot *snap)
{
    struct store *st = (struct store *)s;
    struct group *g;
    int rc = staged_group(st, group, &g);
    if (rc != 0)
        return rc;
    if ((rc = check_snapshot(st, snap)) != 0)
        return rc;
    if (snap->meta.index < g->s.snap_index || snap->meta.index > g->s.last)
        return seterr(st, SV_LOG_E_BAD_ARG, "group %llu: snapshot %llu, log %llu..%llu, old %llu",
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
        if ((rc = copy_snapshot(st, &op.snap, snap)) != 0)
            return rc;
        if ((rc = mop_push(st, &op)) != 0) {
            mop_free(&op);
            return rc;
        }
    } else {
        if ((rc = db_put_snapshot(st, group, snap, g->s.snap_chunks)) != 0)
            return rc;
    }
    g->s.snap_index = snap->meta.index;
    g->s.snap_chunks = chunks;
    st->pend_bytes += bytes;
    st->pend_ops += ops;
    return 0;
}

static int compact(struct sv_logstore *s, uint64_t group, uint64_t index)
{
    struct store *st = (struct store *)s;
    struct group *g;
    int rc = staged_group(st, group, &g);
    if (rc != 0)
        return rc;
    if (index > g->s.snap_index)
        return seterr(st, SV_LOG_E_BAD_ARG, "group %llu: compact to %llu past snapshot %llu",
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
        if ((rc = mop_push(st, &op)) != 0)
            return rc;
    } else {
        db_del_entries(st, group, g->s.first, to);
        st->reclaim_due = true;
    }
    g->s.first = index + 1;
    st->pend_bytes += OP_BYTES * ops;
    st->pend_ops += ops;
    return 0;
}

static int destroy_group(struct sv_logstore *s, uint64_t group)
{
    struct store *st = (struct store *)s;
    struct group *g = group_find(st, group);
    if (g == NULL || !g->s.exists)
        return seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
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
        if ((rc = mop_push(st, &op)) != 0)
            return rc;
    } else {
        uint8_t k[KEY_CHUNK_LEN];
        db_del_entries(st, group, g->s.first, g->s.last);
        for (uint32_t c = 0; c < g->s.snap_chunks; c++)
            db_del(st, k, key_chunk(k, group, c));
        db_del(st, k, key_group(k, group, 'h'));
        db_del(st, k, key_group(k, group, 's'));
        st->reclaim_due = true;
    }
    meta_empty(&g->s);
    st->pend_bytes += OP_BYTES * ops;
    st->pend_ops += ops;
    return 0;
}

static int list_groups(struct sv_logstore *s, uint64_t *ids, size_t cap, size_t *n)
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

static int loaded_alloc_entries(struct store *st, struct sv_logstore_loaded *out, uint64_t count)
{
    if (count > SV_LOG_LOAD_ENTRIES_MAX)
        return seterr(st, SV_LOG_E_TOO_BIG, "%llu entries to load", (unsigned long long)count);
    out->entries = calloc(count ? (size_t)count : 1, sizeof *out->entries);
    if (out->entries == NULL)
        return seterr(st, SV_LOG_E_NOMEM, "%llu entries", (unsigned long long)count);
    return 0;
}

static void loaded_finish(struct sv_logstore_loaded *out, bool has_snap)
{
    out->restore.snapshot = has_snap ? &out->snap : NULL;
    out->restore.entries = out->entries;
    out->restore.n_entries = out->n_entries;
    out->restore.applied = 0;
}

/* ---- memory implementation ---- */

static int mem_commit(struct sv_logstore *s)
{
    struct store *st = (struct store *)s;
    for (size_t i = 0; i < st->n_mops; i++)
        mem_apply(st, &st->mops[i]);
    st->n_mops = 0;
    settle(st, true);
    return 0;
}

void sv_logstore_mem_crash(struct sv_logstore *s)
{
    struct store *st = (struct store *)s;
    ASSERT(is_mem(st));
    mop_rollback(st, 0);
    settle(st, false);
}

static int mem_load(struct sv_logstore *s, uint64_t group, struct sv_logstore_loaded *out)
{
    struct store *st = (struct store *)s;
    memset(out, 0, sizeof *out);
    struct group *g = group_find(st, group);
    if (g == NULL || !g->c.exists)
        return seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    const struct memg *m = &g->m;
    if (m->has_hs)
        out->restore.hs = m->hs;
    if (m->has_snap) {
        int rc = copy_snapshot(st, &out->snap, &m->snap);
        if (rc != 0)
            return rc;
    }
    size_t skip = 0;
    while (skip < m->n && m->base + skip <= g->c.snap_index)
        skip++;
    int rc = loaded_alloc_entries(st, out, m->n - skip);
    if (rc != 0)
        return rc;
    for (size_t i = skip; i < m->n; i++) {
        struct sv_raft_entry *d = &out->entries[out->n_entries];
        *d = m->ents[i];
        d->data = malloc(d->len ? d->len : 1);
        if (d->data == NULL)
            return seterr(st, SV_LOG_E_NOMEM, "entry copy");
        if (d->len > 0)
            memcpy(d->data, m->ents[i].data, d->len);
        out->n_entries++;
    }
    loaded_finish(out, m->has_snap);
    return 0;
}

static void store_free(struct store *st)
{
    mop_rollback(st, 0);
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
        store_free((struct store *)s);
}

const struct sv_logstore_ops sv_logstore_mem_ops = {
    .name = "memory",
    .open = mem_open,
    .close = mem_close,
    .stage = stage,
    .save_snapshot = save_snapshot,
    .compact = compact,
    .destroy_group = destroy_group,
    .commit = mem_commit,
    .load = mem_load,
    .list_groups = list_groups,
};

/* ---- LevelDB implementation ---- */

static int db_commit(struct sv_logstore *s)
{
    struct store *st = (struct store *)s;
    if (st->n_dirty == 0)
        return 0;
    /* Payloads durable first: a committed reference never points at bytes
     * a crash can lose. */
    int rc = payload_sync(st);
    if (rc != 0) {
        leveldb_writebatch_clear(st->batch);
        settle(st, false);
        return rc;
    }
    char *err = NULL;
    leveldb_write(st->db, st->wopts_sync, st->batch, &err);
    leveldb_writebatch_clear(st->batch);
    if (err != NULL) {
        settle(st, false);
        return dberr(st, err, "commit");
    }
    settle(st, true);
    if (st->reclaim_due)
        payload_reclaim(st);
    return 0;
}

/* Read key into a malloc'd value (*v, *vlen); *v is NULL when absent. */
static int db_get(struct store *st, const uint8_t *k, size_t klen, char **v, size_t *vlen)
{
    char *err = NULL;
    *v = leveldb_get(st->db, st->ropts, (const char *)k, klen, vlen, &err);
    if (err != NULL)
        return dberr(st, err, "get");
    return 0;
}

static int corrupt(struct store *st, uint64_t group, const char *what, uint64_t at)
{
    return seterr(st, SV_LOG_E_CORRUPT, "group %llu: %s %llu", (unsigned long long)group, what,
                  (unsigned long long)at);
}

/* Decode and verify the snapshot meta value of group (data not read). */
static int snap_meta_decode(struct store *st, uint64_t group, const uint8_t *v, size_t vlen,
                            struct sv_raft_snapshot *snap, uint32_t *chunks)
{
    if (vlen < SNAP_HDR || sv_get32(v) != value_crc(group, 0, 0, 's', v + 4, vlen - 4, NULL, 0))
        return corrupt(st, group, "snapshot metadata, length", vlen);
    memset(snap, 0, sizeof *snap);
    snap->meta.index = sv_get64(v + 4);
    snap->meta.term = sv_get64(v + 12);
    snap->len = sv_get64(v + 20);
    *chunks = sv_get32(v + 28);
    uint32_t clen = sv_get32(v + 32);
    if (clen != vlen - SNAP_HDR || snap->len > SV_LOG_SNAPSHOT_BYTES_MAX ||
        *chunks != chunks_for(snap->len) || snap->meta.index == 0 ||
        sv_raft_conf_decode(v + SNAP_HDR, clen, &snap->meta.conf) != 0)
        return corrupt(st, group, "snapshot metadata at", snap->meta.index);
    return 0;
}

static int db_load_snapshot(struct store *st, uint64_t group, struct sv_raft_snapshot *snap)
{
    uint8_t k[KEY_CHUNK_LEN];
    char *v;
    size_t vlen;
    uint32_t chunks;
    int rc = db_get(st, k, key_group(k, group, 's'), &v, &vlen);
    if (rc != 0)
        return rc;
    if (v == NULL)
        return corrupt(st, group, "snapshot metadata missing, chunks", 0);
    rc = snap_meta_decode(st, group, (const uint8_t *)v, vlen, snap, &chunks);
    leveldb_free(v);
    if (rc != 0)
        return rc;
    snap->data = malloc(snap->len ? snap->len : 1);
    if (snap->data == NULL)
        return seterr(st, SV_LOG_E_NOMEM, "snapshot of %llu bytes", (unsigned long long)snap->len);
    for (uint32_t c = 0; c < chunks; c++) {
        uint64_t off = (uint64_t)c * SV_LOG_SNAP_CHUNK_BYTES;
        size_t want = (size_t)(snap->len - off < SV_LOG_SNAP_CHUNK_BYTES ? snap->len - off
                                                                         : SV_LOG_SNAP_CHUNK_BYTES);
        if ((rc = db_get(st, k, key_chunk(k, group, c), &v, &vlen)) != 0)
            return rc;
        const uint8_t *p = (const uint8_t *)v;
        bool ok =
            v != NULL && vlen == CHUNK_HDR + want &&
            sv_get32(p) == value_crc(group, c, snap->meta.index, 'd', p + CHUNK_HDR, want, NULL, 0);
        if (ok)
            memcpy(snap->data + off, p + CHUNK_HDR, want);
        leveldb_free(v);
        if (!ok)
            return corrupt(st, group, "snapshot data chunk", c);
    }
    return 0;
}

/* Read and verify entry d's payload (d->index, d->len and d->data set)
 * from the reference ref; *fd caches the file last opened (*fd_no). */
static int payload_read(struct store *st, uint64_t group, struct sv_raft_entry *d,
                        const uint8_t *ref, int *fd, uint32_t *fd_no)
{
    uint32_t no = sv_get32(ref);
    uint64_t off = sv_get64(ref + 4);
    char name[32];
    pfile_name(name, sizeof name, no);
    if (*fd < 0 || *fd_no != no) {
        if (*fd >= 0)
            close(*fd);
        *fd = openat(st->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (*fd < 0) {
            int e = errno;
            if (e == ENOENT)
                return corrupt(st, group, "payload file missing, entry", d->index);
            return seterr(st, -e, "open %s", name);
        }
        *fd_no = no;
    }
    for (size_t done = 0; done < d->len;) {
        ssize_t r = pread(*fd, d->data + done, d->len - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return seterr(st, -errno, "read of entry %llu from %s at offset %llu",
                          (unsigned long long)d->index, name, (unsigned long long)(off + done));
        if (r == 0)
            return corrupt(st, group, "payload past the end of its file, entry", d->index);
        done += (size_t)r;
    }
    if (sv_get32(ref + 12) != value_crc(group, d->index, 0, 'p', d->data, d->len, NULL, 0))
        return corrupt(st, group, "payload checksum mismatch in entry", d->index);
    return 0;
}

static int db_load(struct sv_logstore *s, uint64_t group, struct sv_logstore_loaded *out)
{
    struct store *st = (struct store *)s;
    memset(out, 0, sizeof *out);
    struct group *g = group_find(st, group);
    if (g == NULL || !g->c.exists)
        return seterr(st, SV_LOG_E_NOT_FOUND, "group %llu", (unsigned long long)group);
    if (g->c.corrupt)
        return corrupt(st, group, "damaged metadata found at open, snapshot", g->c.snap_index);
    const struct gmeta *m = &g->c;

    uint8_t k[KEY_ENTRY_LEN];
    char *v;
    size_t vlen;
    int rc = db_get(st, k, key_group(k, group, 'h'), &v, &vlen);
    if (rc != 0)
        return rc;
    if (v != NULL) {
        const uint8_t *p = (const uint8_t *)v;
        bool ok = vlen == HS_LEN && sv_get32(p) == value_crc(group, 0, 0, 'h', p + 4, 24, NULL, 0);
        if (ok) {
            out->restore.hs.term = sv_get64(p + 4);
            out->restore.hs.vote = sv_get64(p + 12);
            out->restore.hs.commit = sv_get64(p + 20);
        }
        leveldb_free(v);
        if (!ok)
            return corrupt(st, group, "hard state, length", vlen);
    }
    if (m->snap_index > 0) {
        if ((rc = db_load_snapshot(st, group, &out->snap)) != 0)
            return rc;
        if (out->snap.meta.index != m->snap_index)
            return corrupt(st, group, "snapshot index changed to", out->snap.meta.index);
    }

    uint64_t from = m->first > m->snap_index ? m->first : m->snap_index + 1;
    if (m->last < from) {
        loaded_finish(out, m->snap_index > 0);
        return 0;
    }
    if ((rc = loaded_alloc_entries(st, out, m->last - from + 1)) != 0)
        return rc;
    int pfd = -1;
    uint32_t pfd_no = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ropts);
    key_entry(k, group, from);
    leveldb_iter_seek(it, (const char *)k, sizeof k);
    for (uint64_t i = from; i <= m->last; i++, leveldb_iter_next(it)) {
        size_t klen;
        const uint8_t *kk =
            leveldb_iter_valid(it) ? (const uint8_t *)leveldb_iter_key(it, &klen) : NULL;
        key_entry(k, group, i);
        if (kk == NULL || klen != sizeof k || memcmp(kk, k, sizeof k) != 0) {
            rc = corrupt(st, group, "missing entry", i);
            goto err_after_iter;
        }
        const uint8_t *p = (const uint8_t *)leveldb_iter_value(it, &vlen);
        bool is_ref;
        if (!entry_value_ok(p, vlen, &is_ref) ||
            sv_get32(p) != value_crc(group, i, 0, 'e', p + 4, vlen - 4, NULL, 0)) {
            rc = corrupt(st, group, "checksum or length mismatch in entry", i);
            goto err_after_iter;
        }
        struct sv_raft_entry *d = &out->entries[out->n_entries];
        d->index = i;
        d->term = sv_get64(p + 4);
        d->type = p[12];
        d->len = sv_get32(p + 13);
        d->data = malloc(d->len ? d->len : 1);
        if (d->data == NULL) {
            rc = seterr(st, SV_LOG_E_NOMEM, "entry %llu", (unsigned long long)i);
            goto err_after_iter;
        }
        out->n_entries++;
        if (is_ref) {
            if ((rc = payload_read(st, group, d, p + ENTRY_HDR, &pfd, &pfd_no)) != 0)
                goto err_after_iter;
        } else if (d->len > 0) {
            memcpy(d->data, p + ENTRY_HDR, d->len);
        }
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err != NULL) {
        rc = dberr(st, err, "iterate entries");
        goto err_after_iter;
    }
    leveldb_iter_destroy(it);
    if (pfd >= 0)
        close(pfd);
    loaded_finish(out, m->snap_index > 0);
    return 0;

err_after_iter:
    leveldb_iter_destroy(it);
    if (pfd >= 0)
        close(pfd);
    return rc;
}

/* Is the iterator at an entry key of group? Sets *index. */
static bool at_entry(leveldb_iterator_t *it, uint64_t group, uint64_t *index)
{
    if (!leveldb_iter_valid(it))
        return false;
    size_t klen;
    const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
    uint8_t want[KEY_GROUP_LEN];
    key_group(want, group, 'e');
    if (klen != KEY_ENTRY_LEN || memcmp(k, want, sizeof want) != 0)
        return false;
    *index = sv_get64be(k + KEY_GROUP_LEN);
    return true;
}

/* Build the metadata of group from the database (open). */
static int scan_group(struct store *st, leveldb_iterator_t *it, uint64_t group, struct gmeta *m)
{
    meta_empty(m);
    m->exists = true;
    uint8_t k[KEY_ENTRY_LEN];
    char *v;
    size_t vlen;
    int rc = db_get(st, k, key_group(k, group, 's'), &v, &vlen);
    if (rc != 0)
        return rc;
    if (v != NULL) {
        struct sv_raft_snapshot snap;
        uint32_t chunks;
        if (snap_meta_decode(st, group, (const uint8_t *)v, vlen, &snap, &chunks) == 0) {
            m->snap_index = snap.meta.index;
            m->snap_chunks = chunks;
        } else {
            m->corrupt = true;
        }
        leveldb_free(v);
    }
    uint64_t first, last;
    leveldb_iter_seek(it, (const char *)k, key_group(k, group, 'e'));
    bool has = at_entry(it, group, &first);
    if (has) {
        leveldb_iter_seek(it, (const char *)k, key_group(k, group, 'f'));
        if (leveldb_iter_valid(it))
            leveldb_iter_prev(it);
        else
            leveldb_iter_seek_to_last(it);
        if (!at_entry(it, group, &last) || last < first || last < m->snap_index)
            m->corrupt = true;
    }
    if (has && !m->corrupt) {
        m->first = first;
        m->last = last;
    } else {
        m->first = m->snap_index + 1;
        m->last = m->snap_index;
    }
    return 0;
}

static int db_scan(struct store *st)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ropts);
    int rc = 0;
    leveldb_iter_seek(it, "g", 1);
    while (leveldb_iter_valid(it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen < KEY_GROUP_LEN || k[0] != 'g')
            break;
        uint64_t id = sv_get64be(k + 1);
        struct group *g;
        if ((rc = group_insert(st, id, &g)) != 0)
            goto err_after_iter;
        if ((rc = scan_group(st, it, id, &g->c)) != 0)
            goto err_after_iter;
        g->s = g->c;
        if (id == UINT64_MAX)
            break;
        uint8_t next[9];
        next[0] = 'g';
        sv_put64be(next + 1, id + 1);
        leveldb_iter_seek(it, (const char *)next, sizeof next);
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err != NULL)
        rc = dberr(st, err, "scan");
err_after_iter:
    leveldb_iter_destroy(it);
    return rc;
}

/* Rebuild the payload files' references from the entry records of every
 * group (open). A damaged record is skipped here; load() reports it. */
static int payload_scan(struct store *st)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ropts);
    int rc = 0;
    for (size_t gi = 0; gi < st->n_groups && rc == 0; gi++) {
        uint64_t group = st->groups[gi].id, index;
        uint8_t k[KEY_GROUP_LEN];
        leveldb_iter_seek(it, (const char *)k, key_group(k, group, 'e'));
        for (; rc == 0 && at_entry(it, group, &index); leveldb_iter_next(it)) {
            size_t vlen;
            bool is_ref;
            const uint8_t *p = (const uint8_t *)leveldb_iter_value(it, &vlen);
            if (!entry_value_ok(p, vlen, &is_ref) || !is_ref ||
                sv_get32(p) != value_crc(group, index, 0, 'e', p + 4, vlen - 4, NULL, 0))
                continue;
            struct pfile *f;
            struct pref *r;
            if ((rc = pfile_get(st, sv_get32(p + ENTRY_HDR), &f)) == 0 &&
                (rc = pfile_ref(st, f, group, &r)) == 0 && r->max_index < index)
                r->max_index = index;
        }
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err != NULL && rc == 0)
        rc = dberr(st, err, "scan payload references");
    else if (err != NULL)
        leveldb_free(err);
    leveldb_iter_destroy(it);
    return rc;
}

/* Delete the payload files no entry refers to (written by batches a crash
 * or a failure kept from committing, or whose deletion a crash interrupted),
 * and number new files after every existing or referenced one (open). */
static int payload_sweep(struct store *st, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return seterr(st, -errno, "list %s", dir);
    uint64_t next = 1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t no;
        if (!pfile_parse(de->d_name, &no))
            continue;
        if (no >= next)
            next = (uint64_t)no + 1;
        size_t i = pfile_pos(st, no);
        if (i == st->n_pfiles || st->pfiles[i].no != no) {
            /* Garbage; a failed unlink is retried at the next open. */
            (void)unlinkat(st->dirfd, de->d_name, 0);
        }
    }
    closedir(d);
    if (st->n_pfiles > 0 && st->pfiles[st->n_pfiles - 1].no >= next)
        next = (uint64_t)st->pfiles[st->n_pfiles - 1].no + 1;
    st->p_next = next > UINT32_MAX ? UINT32_MAX : (uint32_t)next;
    return 0;
}

static void db_close(struct sv_logstore *s)
{
    if (s == NULL)
        return;
    struct store *st = (struct store *)s;
    if (st->batch != NULL)
        leveldb_writebatch_destroy(st->batch);
    if (st->db != NULL)
        leveldb_close(st->db);
    if (st->wopts_sync != NULL)
        leveldb_writeoptions_destroy(st->wopts_sync);
    if (st->ropts != NULL)
        leveldb_readoptions_destroy(st->ropts);
    if (st->dbopts != NULL)
        leveldb_options_destroy(st->dbopts);
    if (st->dirfd >= 0)
        close(st->dirfd);
    store_free(st);
}

static int db_open(const char *dir, struct sv_logstore **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    struct store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        if (errmsg != NULL && errlen > 0)
            snprintf(errmsg, errlen, "out of memory");
        return SV_LOG_E_NOMEM;
    }
    st->pub.ops = &sv_logstore_leveldb_ops;
    st->dirfd = -1;
    st->dbopts = leveldb_options_create();
    leveldb_options_set_create_if_missing(st->dbopts, 1);
    /* Entries are mostly sealed chunks: incompressible, up to 1 MiB each, and
     * deleted soon after (log compaction). No compression; a larger memtable
     * and files mean fewer level-0 flushes and compactions per byte. */
    leveldb_options_set_compression(st->dbopts, leveldb_no_compression);
    leveldb_options_set_write_buffer_size(st->dbopts, 32u << 20);
    leveldb_options_set_max_file_size(st->dbopts, 32u << 20);
    st->ropts = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(st->ropts, 1);
    st->wopts_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(st->wopts_sync, 1);
    st->batch = leveldb_writebatch_create();

    char *err = NULL;
    int rc;
    st->db = leveldb_open(st->dbopts, dir, &err);
    if (err != NULL) {
        rc = dberr(st, err, dir);
        goto err_after_store;
    }
    char *v;
    size_t vlen;
    if ((rc = db_get(st, (const uint8_t *)"v", 1, &v, &vlen)) != 0)
        goto err_after_store;
    uint32_t version = 0;
    if (v != NULL) {
        version = vlen == 4 ? sv_get32((const uint8_t *)v) : 0;
        leveldb_free(v);
        if (version != 1 && version != FORMAT_VERSION) {
            rc = seterr(st, SV_LOG_E_CORRUPT, "%s: unknown format version", dir);
            goto err_after_store;
        }
    }
    if (version != FORMAT_VERSION) {
        /* New store, or version 1 (every entry inline, which version 2 still
         * reads): from now on an older build must refuse the store. */
        uint8_t ver[4];
        sv_put32(ver, FORMAT_VERSION);
        leveldb_put(st->db, st->wopts_sync, "v", 1, (const char *)ver, sizeof ver, &err);
        if (err != NULL) {
            rc = dberr(st, err, "write format version");
            goto err_after_store;
        }
    }
    if ((rc = db_scan(st)) != 0)
        goto err_after_store;
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = seterr(st, -errno, "open directory %s", dir);
        goto err_after_store;
    }
    if ((rc = payload_scan(st)) != 0 || (rc = payload_sweep(st, dir)) != 0)
        goto err_after_store;
    st->pub.errmsg[0] = '\0';
    *out = &st->pub;
    return 0;

err_after_store:
    if (errmsg != NULL && errlen > 0)
        snprintf(errmsg, errlen, "%s", st->pub.errmsg);
    db_close(&st->pub);
    return rc;
}

const struct sv_logstore_ops sv_logstore_leveldb_ops = {
    .name = "leveldb",
    .open = db_open,
    .close = db_close,
    .stage = stage,
    .save_snapshot = save_snapshot,
    .compact = compact,
    .destroy_group = destroy_group,
    .commit = db_commit,
    .load = db_load,
    .list_groups = list_groups,
};
