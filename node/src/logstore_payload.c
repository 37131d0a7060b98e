/* ShardVault Raft log storage: payload files, the LevelDB store's home for big entries' data. */
#define _GNU_SOURCE
#include "logstore_internal.h"

#include "sv_assert.h"
#include "sv_dio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "payload files");
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
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "payload file references");
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
        return sv__logstore_seterr(st, SV_LOG_E_TOO_BIG, "payload file numbers exhausted");
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
        return sv__logstore_seterr(st, rc, "create payload file %s", name);
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
int sv__logstore_payload_append(struct store *st, uint64_t group, const struct sv_raft_entry *e,
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
            return sv__logstore_seterr(st, SV_LOG_E_NOMEM, "direct write buffer of %zu bytes", n);
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
            return sv__logstore_seterr(st, rc, "write of entry %llu to %s at offset %llu",
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
int sv__logstore_payload_sync(struct store *st)
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
            sv__logstore_seterr(st, rc, "fdatasync of %s", name);
        }
        p->dirty = false;
        if (!pfile_is_active(st, p)) {
            close(p->fd);
            p->fd = -1;
        }
    }
    if (rc == 0 && st->dir_dirty) {
        if (fsync(st->dirfd) < 0)
            rc = sv__logstore_seterr(st, -errno, "fsync of the store directory");
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
        const struct group *g = sv__logstore_group_find(st, p->refs[i].group);
        if (g != NULL && g->c.exists && (g->c.corrupt || p->refs[i].max_index >= g->c.first))
            return true;
    }
    return false;
}

/* Right after a successful commit (nothing staged, the deletions that made
 * files dead are durable): delete every payload file but the active one that
 * no entry refers to. A failed unlink is retried after the next commit. */
void sv__logstore_payload_reclaim(struct store *st)
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

/* Read and verify entry d's payload (d->index, d->len and d->data set)
 * from the reference ref; *fd caches the file last opened (*fd_no). */
int sv__logstore_payload_read(struct store *st, uint64_t group, struct sv_raft_entry *d,
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
                return sv__logstore_corrupt(st, group, "payload file missing, entry", d->index);
            return sv__logstore_seterr(st, -e, "open %s", name);
        }
        *fd_no = no;
    }
    for (size_t done = 0; done < d->len;) {
        ssize_t r = pread(*fd, d->data + done, d->len - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sv__logstore_seterr(st, -errno, "read of entry %llu from %s at offset %llu",
                                       (unsigned long long)d->index, name,
                                       (unsigned long long)(off + done));
        if (r == 0)
            return sv__logstore_corrupt(st, group, "payload past the end of its file, entry",
                                        d->index);
        done += (size_t)r;
    }
    if (sv_get32(ref + 12) != value_crc(group, d->index, 0, 'p', d->data, d->len, NULL, 0))
        return sv__logstore_corrupt(st, group, "payload checksum mismatch in entry", d->index);
    return 0;
}

/* Rebuild the payload files' references from the entry records of every
 * group (open). A damaged record is skipped here; load() reports it. */
int sv__logstore_payload_scan(struct store *st)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ropts);
    int rc = 0;
    for (size_t gi = 0; gi < st->n_groups && rc == 0; gi++) {
        uint64_t group = st->groups[gi].id, index;
        uint8_t k[KEY_GROUP_LEN];
        leveldb_iter_seek(it, (const char *)k, key_group(k, group, 'e'));
        for (; rc == 0 && sv__logstore_at_entry(it, group, &index); leveldb_iter_next(it)) {
            size_t vlen;
            bool is_ref;
            const uint8_t *p = (const uint8_t *)leveldb_iter_value(it, &vlen);
            if (!sv__logstore_entry_value_ok(p, vlen, &is_ref) || !is_ref ||
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
        rc = sv__logstore_dberr(st, err, "scan payload references");
    else if (err != NULL)
        leveldb_free(err);
    leveldb_iter_destroy(it);
    return rc;
}

/* Delete the payload files no entry refers to (written by batches a crash
 * or a failure kept from committing, or whose deletion a crash interrupted),
 * and number new files after every existing or referenced one (open). */
int sv__logstore_payload_sweep(struct store *st, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return sv__logstore_seterr(st, -errno, "list %s", dir);
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
