/* powercut-test: the write order of an apply job (node.c's job_apply: chunks
 * into the segment store, records into the state machine, sv_sm_commit),
 * cut by a simulated power failure at every boundary between its steps and
 * at every segment fsync inside its commit.
 *
 * The simulated disk keeps, after the cut, what each store promises to have
 * made durable and nothing more of the segments: segment files are cut back
 * to their sizes at the last fsync (a file created since is gone), and the
 * two LevelDB databases are kept as they are (the segment index is written
 * only with sync=true; for the state machine that is the worst case: any
 * write may have reached the disk). The node then restarts as svd does: it
 * opens the copies and applies again every entry of the Raft log above the
 * recorded applied index. The result must equal a replica that was never
 * cut: same objects and versions, every chunk they reference readable and
 * byte-equal, no deleted chunk back (same live record count). */
#define _GNU_SOURCE
#include "sm.h"

#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    GROUP = 1,
    ENTRIES_MAX = 64,
    SEGS_MAX = 16,
    CHUNK_BYTES = 3000,
};

static char root[256];
static size_t cuts; /* power cuts made by cut_once */

/* ---- the Raft log of the test: entries before the job, then the job ---- */

struct entry {
    struct sv_raft_entry e;
    uint8_t *buf;
};

static struct entry log_[ENTRIES_MAX];
static size_t n_log, job_first; /* the job is log_[job_first..n_log) */
static uint8_t chunk_data[ENTRIES_MAX][CHUNK_BYTES];

static void append(struct sv_cmd c)
{
    CHECK(n_log < ENTRIES_MAX);
    struct entry *en = &log_[n_log];
    if (c.data_len) {
        /* Bytes that differ per entry, so a chunk in the wrong place shows. */
        for (size_t i = 0; i < c.data_len; i++)
            chunk_data[n_log][i] = (uint8_t)(n_log * 31 + i * 7);
        c.data = chunk_data[n_log];
    }
    size_t len = sv_cmd_encoded_len(&c);
    en->buf = malloc(len);
    sv_cmd_encode(&c, en->buf);
    en->e = (struct sv_raft_entry){.term = 1,
                                   .index = n_log + 1,
                                   .type = SV_RAFT_ENTRY_NORMAL,
                                   .len = (uint32_t)len,
                                   .data = en->buf};
    n_log++;
}

static struct sv_cmd cmd(uint8_t type, const char *key, uint64_t upload)
{
    return (struct sv_cmd){.type = type,
                           .bucket = (const uint8_t *)"b",
                           .bucket_len = 1,
                           .key = (const uint8_t *)key,
                           .key_len = (uint16_t)strlen(key),
                           .upload = upload,
                           .session = 5,
                           .seq = n_log + 1};
}

static void put(const char *key, uint64_t upload)
{
    struct sv_cmd c = cmd(SV_CMD_PUT, key, upload);
    c.size = c.data_len = CHUNK_BYTES;
    append(c);
}

/* An upload of two chunks made key's new version. */
static void upload(const char *key, uint64_t id)
{
    append(cmd(SV_CMD_BEGIN, key, id));
    for (uint32_t i = 0; i < 2; i++) {
        struct sv_cmd c = cmd(SV_CMD_CHUNK, key, id);
        c.chunk = i;
        c.data_len = CHUNK_BYTES;
        append(c);
    }
    struct sv_cmd c = cmd(SV_CMD_COMMIT, key, id);
    c.n_chunks = 2;
    c.size = 2 * CHUNK_BYTES;
    append(c);
}

static void build_log(void)
{
    /* Committed and synced before the job. */
    put("a", 101);
    put("b", 102);
    upload("c", 103);
    job_first = n_log;
    /* One apply job: a new object, a delete, an overwrite (its old chunk
     * deleted), an upload replacing a chunked object (two chunks deleted,
     * two written). */
    put("d", 201);
    append(cmd(SV_CMD_DELETE, "a", 0));
    put("b", 202);
    upload("c", 203);
}

/* ---- the simulated disk ------------------------------------------------ */

struct disk {
    char dir[512];
    struct sv_sm *sm;
    struct sv_seg_store *seg;
    /* Segment files and their sizes at the last fsync: what survives. */
    char seg_names[SEGS_MAX][32];
    off_t seg_sizes[SEGS_MAX];
    int n_segs;
    int fsyncs;      /* segment fsyncs so far */
    int cut_at;      /* the fsync before which the power goes (0: none) */
    bool cut;        /* the power went: every later I/O fails */
    char image[512]; /* where the power cut leaves its disk image */
};

static void path_of(char *out, size_t cap, const char *dir, const char *part)
{
    CHECK((size_t)snprintf(out, cap, "%s/%s", dir, part) < cap);
}

/* dst becomes a copy of src (removed first). */
static void copy_dir(const char *src, const char *dst)
{
    char c[1400];
    CHECK((size_t)snprintf(c, sizeof c, "rm -rf '%s' && cp -a '%s' '%s'", dst, src, dst) <
          sizeof c);
    CHECK(system(c) == 0);
}

/* The segment files of d and their current sizes become the durable ones. */
static void record_synced(struct disk *d)
{
    char chunks[600];
    path_of(chunks, sizeof chunks, d->dir, "chunks");
    DIR *dh = opendir(chunks);
    CHECK(dh != NULL);
    if (!dh)
        return;
    d->n_segs = 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (strncmp(de->d_name, "seg-", 4) || d->n_segs == SEGS_MAX)
            continue;
        char p[1200];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", chunks, de->d_name);
        CHECK(stat(p, &st) == 0);
        snprintf(d->seg_names[d->n_segs], sizeof d->seg_names[0], "%.31s", de->d_name);
        d->seg_sizes[d->n_segs++] = st.st_size;
    }
    closedir(dh);
}

/* The disk as the power cut leaves it, copied to image: LevelDB as it is,
 * segments cut back to their synced sizes, newer segment files gone. */
static void make_image(struct disk *d)
{
    const char *image = d->image;
    copy_dir(d->dir, image);
    char chunks[600];
    path_of(chunks, sizeof chunks, image, "chunks");
    DIR *dh = opendir(chunks);
    CHECK(dh != NULL);
    struct dirent *de;
    while (dh && (de = readdir(dh))) {
        if (strncmp(de->d_name, "seg-", 4))
            continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", chunks, de->d_name);
        int k = 0;
        while (k < d->n_segs && strcmp(d->seg_names[k], de->d_name))
            k++;
        if (k == d->n_segs)
            CHECK(unlink(p) == 0);
        else
            CHECK(truncate(p, d->seg_sizes[k]) == 0);
    }
    if (dh)
        closedir(dh);
}

static int on_io(void *arg, enum sv_seg_io io)
{
    struct disk *d = arg;
    if (d->cut)
        return -EIO; /* the node is dead: nothing more reaches the disk */
    if (io != SV_SEG_IO_FSYNC)
        return 0;
    if (++d->fsyncs == d->cut_at) {
        make_image(d);
        d->cut = true;
        return -EIO;
    }
    record_synced(d);
    return 0;
}

static void disk_open(struct disk *d, const char *dir, bool hooked)
{
    char p[600], err[256] = "";
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
    path_of(d->image, sizeof d->image, root, "cut");
    path_of(p, sizeof p, dir, "meta");
    CHECK(sv_sm_open(p, &d->sm, err, sizeof err) == 0);
    struct sv_seg_opts o = {.fault = hooked ? on_io : NULL, .fault_arg = d};
    path_of(p, sizeof p, dir, "chunks");
    CHECK(sv_seg_open(p, &o, &d->seg, err, sizeof err) == 0);
    /* As svd opens them: deletions a cut left undone are done first. */
    if (d->sm && d->seg)
        CHECK(sv_sm_redo_releases(d->sm, d->seg, err, sizeof err) == 0);
    if (!err[0] && d->sm && d->seg)
        record_synced(d);
}

/* Close; after a cut, whatever close still writes is past the image. */
static void disk_close(struct disk *d)
{
    sv_sm_close(d->sm);
    sv_seg_close(d->seg);
    d->sm = NULL;
    d->seg = NULL;
}

/* ---- the apply job, as node.c's job_apply runs it ---------------------- */

/* The boundaries between the job's steps (the fsyncs inside the commit are
 * cut through the I/O hook instead). */
enum step { AFTER_APPLY, AFTER_BATCH_END, AFTER_SEG_SYNC, AFTER_RECORDS, AFTER_COMMIT };

/* Apply log_[from..to) as one job. With stop_step/stop_k, the power goes
 * at that boundary (the k-th entry for AFTER_APPLY). 0, or the first error. */
static int apply_job(struct disk *d, size_t from, size_t to, int stop_step, size_t stop_k)
{
    char err[256] = "";
    int rc = 0;
    struct sv_sm_result res;
    sv_seg_batch_begin(d->seg);
    for (size_t i = from; i < to && !rc; i++) {
        rc = sv_sm_apply(d->sm, d->seg, GROUP, &log_[i].e, &res, err, sizeof err);
        if (stop_step == AFTER_APPLY && i - from == stop_k)
            return -EINTR;
    }
    int wrc = sv_seg_batch_end(d->seg);
    if (stop_step == AFTER_BATCH_END)
        return -EINTR;
    if (!rc && wrc)
        rc = wrc;
    if (stop_step == AFTER_SEG_SYNC) {
        /* sv_sm_commit's first step (and any sync of the store in between,
         * e.g. a repair's): the power goes before the records are written. */
        CHECK(sv_seg_sync(d->seg) == 0);
        return -EINTR;
    }
    if (stop_step == AFTER_RECORDS) {
        /* The records are written, the chunks they stopped claiming not
         * yet deleted. */
        CHECK(sv_sm_commit_records(d->sm, d->seg, err, sizeof err) == 0);
        return -EINTR;
    }
    if (!rc)
        rc = sv_sm_commit(d->sm, d->seg, err, sizeof err);
    else
        sv_sm_discard(d->sm);
    return rc;
}

/* Apply the entries above the applied index, as svd does after a restart
 * (after sv_sm_redo_releases, at open). */
static void restart(struct disk *d)
{
    uint64_t applied = 0;
    CHECK(sv_sm_applied(d->sm, GROUP, &applied) == 0);
    CHECK(applied <= n_log);
    CHECK(apply_job(d, applied, n_log, -1, 0) == 0);
}

/* ---- comparing a recovered replica with one never cut ------------------ */

/* Right after the restart, before any entry is applied again, what the
 * records claim must be on disk: a stale read (or another replica's
 * CHUNK_FETCH) is served from exactly this state. */
static void claims_on_disk(struct disk *d, const char *what)
{
    static const char *keys[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        struct sv_obj o;
        const uint8_t *k = (const uint8_t *)keys[i];
        if (sv_sm_get(d->sm, GROUP, 0, (const uint8_t *)"b", 1, k, 1, &o) || o.deleted)
            continue;
        for (uint32_t c = 0; c < o.n_chunks; c++) {
            uint8_t id[SV_SEG_ID_BYTES], b[CHUNK_BYTES];
            size_t l = 0;
            sv_chunk_id(GROUP, o.upload, c, id);
            int r = sv_seg_get(d->seg, id, b, sizeof b, &l);
            if (r) {
                fprintf(stderr,
                        "%s: before the log is applied again: key %s (upload %llu) "
                        "chunk %u: %s\n",
                        what, keys[i], (unsigned long long)o.upload, c, sv_seg_strerror(r));
                CHECK(!"every chunk the surviving records claim is on disk at the restart");
            }
        }
    }
}

static void compare(struct disk *got, struct disk *want, const char *what)
{
    static const char *keys[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        struct sv_obj g, w;
        const uint8_t *k = (const uint8_t *)keys[i];
        int rw = sv_sm_get(want->sm, GROUP, 0, (const uint8_t *)"b", 1, k, 1, &w);
        int rg = sv_sm_get(got->sm, GROUP, 0, (const uint8_t *)"b", 1, k, 1, &g);
        CHECK(rw == 0 && rg == 0);
        if (rw || rg)
            continue;
        if (g.version != w.version || g.deleted != w.deleted || g.upload != w.upload) {
            fprintf(stderr, "%s: key %s: version %llu deleted %d, want %llu deleted %d\n", what,
                    keys[i], (unsigned long long)g.version, g.deleted,
                    (unsigned long long)w.version, w.deleted);
            CHECK(!"the object record is the uncut replica's");
        }
        for (uint32_t c = 0; !w.deleted && c < w.n_chunks; c++) {
            uint8_t id[SV_SEG_ID_BYTES], bw[CHUNK_BYTES], bg[CHUNK_BYTES];
            size_t lw = 0, lg = 0;
            sv_chunk_id(GROUP, w.upload, c, id);
            CHECK(sv_seg_get(want->seg, id, bw, sizeof bw, &lw) == 0);
            int r = sv_seg_get(got->seg, id, bg, sizeof bg, &lg);
            if (r || lg != lw || memcmp(bg, bw, lw)) {
                fprintf(stderr, "%s: key %s chunk %u: %s\n", what, keys[i], c,
                        r ? sv_seg_strerror(r) : "other bytes");
                CHECK(!"every chunk of an applied object is on disk");
            }
        }
    }
    struct sv_seg_stats sg, sw;
    sv_seg_stats(got->seg, &sg);
    sv_seg_stats(want->seg, &sw);
    if (sg.live_records != sw.live_records) {
        fprintf(stderr, "%s: %llu chunks stored, want %llu (a deleted one is back, or one lost)\n",
                what, (unsigned long long)sg.live_records, (unsigned long long)sw.live_records);
        CHECK(!"the same chunks as the uncut replica");
    }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

/* A disk holding the entries before the job, committed (and so synced). */
static void base_disk(const char *dir)
{
    struct disk d = {0};
    disk_open(&d, dir, false);
    CHECK(apply_job(&d, 0, job_first, -1, 0) == 0);
    disk_close(&d);
}

/* Open a fresh copy of the base disk, with the I/O hook. */
static void run_disk(struct disk *d)
{
    char base[600], dir[600];
    path_of(base, sizeof base, root, "base");
    path_of(dir, sizeof dir, root, "run");
    copy_dir(base, dir);
    disk_open(d, dir, true);
}

/* One cut: a copy of the base disk, the job run until the power goes, the
 * image restarted and compared with the uncut replica. */
static void cut_once(struct disk *want, int step, size_t k, int fsync_no, const char *what)
{
    struct disk d = {0};
    cuts++;
    run_disk(&d);
    d.cut_at = fsync_no ? d.fsyncs + fsync_no : 0;
    int rc = apply_job(&d, job_first, n_log, step, k);
    if (!d.cut)
        make_image(&d); /* the power goes at the step boundary */
    else
        CHECK(rc != 0); /* the fsync failed: the job must not have committed */
    disk_close(&d);

    struct disk r = {0};
    disk_open(&r, d.image, false);
    claims_on_disk(&r, what);
    restart(&r);
    compare(&r, want, what);
    disk_close(&r);
}

static void test_cuts(void)
{
    char p[600];
    path_of(p, sizeof p, root, "base");
    base_disk(p);

    /* The replica that was never cut. */
    struct disk want = {0};
    path_of(p, sizeof p, root, "want");
    disk_open(&want, p, false);
    CHECK(apply_job(&want, 0, job_first, -1, 0) == 0);
    CHECK(apply_job(&want, job_first, n_log, -1, 0) == 0);

    /* How many fsyncs one uncut job makes. */
    struct disk dry = {0};
    run_disk(&dry);
    int before = dry.fsyncs;
    CHECK(apply_job(&dry, job_first, n_log, -1, 0) == 0);
    int fsyncs = dry.fsyncs - before;
    disk_close(&dry);
    CHECK(fsyncs >= 1); /* the job's chunks are synced before its commit */

    char what[64];
    for (size_t k = 0; k < n_log - job_first; k++) {
        snprintf(what, sizeof what, "cut after entry %zu of the job", k + 1);
        cut_once(&want, AFTER_APPLY, k, 0, what);
    }
    cut_once(&want, AFTER_BATCH_END, 0, 0, "cut after the chunk writes");
    cut_once(&want, AFTER_SEG_SYNC, 0, 0, "cut after the segment sync, before the records");
    cut_once(&want, AFTER_RECORDS, 0, 0, "cut after the records, before the deletions");
    for (int f = 1; f <= fsyncs; f++) {
        snprintf(what, sizeof what, "cut at segment fsync %d of the commit", f);
        cut_once(&want, -1, 0, f, what);
    }
    cut_once(&want, AFTER_COMMIT, 0, 0, "cut after the commit");
    printf("powercut-test: %zu cuts of one apply job (%d fsyncs in it)\n", cuts, fsyncs);
    disk_close(&want);
}

/* A commit whose segment sync fails claims nothing: the applied index and
 * the records stay as before, and the staged entries are dropped (applied
 * again from the log). */
static void test_failed_sync(void)
{
    struct disk d = {0};
    run_disk(&d);
    uint64_t before = 0, after = 0;
    CHECK(sv_sm_applied(d.sm, GROUP, &before) == 0 && before == job_first);
    d.cut_at = d.fsyncs + 1;
    CHECK(apply_job(&d, job_first, n_log, -1, 0) == -EIO);
    CHECK(sv_sm_applied(d.sm, GROUP, &after) == 0 && after == before);
    struct sv_obj o;
    CHECK(sv_sm_get(d.sm, GROUP, 0, (const uint8_t *)"b", 1, (const uint8_t *)"d", 1, &o) ==
          -ENOENT);
    disk_close(&d);
}

/* ---- runner ---- */

static int set_up(void)
{
    snprintf(root, sizeof root, "%s/powercut-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    build_log();
    return 0;
}

static void tear_down(void)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < n_log; i++)
        free(log_[i].buf);
}

/* "failed sync" starts from the base disk that "cuts" makes. */
static const struct sv_test tests[] = {
    {"cuts", test_cuts},
    {"failed sync", test_failed_sync},
};

const struct sv_test_suite sv_test_suite = {
    .name = "powercut-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .ordered = true,
};
