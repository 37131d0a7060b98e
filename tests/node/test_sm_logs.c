/* sm-logs-test: the state machine's LevelDB across its log switches, cut by
 * a simulated power failure.
 *
 * LevelDB appends each batch to its log file and syncs the file when the
 * write asks for it (fdatasync); when the memtable fills, it moves to a new
 * log file and closes the old one without a sync, and a background thread
 * writes the old memtable to a table file. This program exports its own
 * fdatasync and fsync, so LevelDB's calls come here first: they record each
 * log file's size at its last sync. A power cut leaves a log file that much
 * (the worst case the page cache allows); table files, the MANIFEST and
 * CURRENT are synced by LevelDB before anything refers to them and are kept
 * whole.
 *
 * Entries are applied and committed as svd's apply jobs do: jobs of puts
 * only (chunked and empty objects), and jobs that delete the chunked objects
 * of the job before (their records release chunks). After each job, while
 * an old log still waits for its table file (two logs in the directory),
 * the disk as a cut leaves it is opened, and every entry up to its applied
 * index must be in it (a later entry is applied again from the Raft log;
 * one at or below it, never). With the records of put-only jobs not synced
 * (the order before sm.c synced every commit), it fails: a synced delete job
 * in the new log survives over the lost end of the old one. */
#define _GNU_SOURCE
#include "proto.h"
#include "segstore.h"
#include "sm.h"

#include "check.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    GROUP = 1,
    JOB = 8,             /* entries per apply job */
    KEY_BYTES = 1000,    /* long keys (the longest is 1024) fill the memtable (4 MiB) sooner */
    ENTRIES_MAX = 24000, /* room for more than five log switches (checked below) */
    SWITCHES = 5,        /* windows (an old log waiting) in which cuts are checked */
    CUTS_PER_WINDOW = 4,
    LOGS_MAX = 64,
};

static char root[256], db_dir[512];

/* ---- the synced size of each log file ----------------------------------- */

static pthread_mutex_t synced_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[32];
    off_t size;
} synced[LOGS_MAX];
static int n_synced;
static size_t syncs_seen; /* log syncs recorded: 0 means the wrap failed */

static bool is_log(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".log");
}

/* After a successful sync of fd: a log file of the database keeps its size. */
static void note_sync(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    struct stat st;
    if (n <= 0 || fstat(fd, &st) != 0)
        return;
    path[n] = 0;
    const char *base = strrchr(path, '/');
    size_t dlen = strlen(db_dir);
    if (!base || !db_dir[0] || (size_t)(base - path) != dlen || strncmp(path, db_dir, dlen) ||
        !is_log(base + 1) || strlen(base + 1) >= sizeof synced[0].name)
        return;
    int i = 0;
    while (i < n_synced && strcmp(synced[i].name, base + 1))
        i++;
    if (i < LOGS_MAX) {
        if (i == n_synced)
            snprintf(synced[n_synced++].name, sizeof synced[0].name, "%s", base + 1);
        synced[i].size = st.st_size;
        syncs_seen++;
    }
}

/* libc's, found once in set_up (before LevelDB runs a thread). */
static int (*real_fdatasync)(int), (*real_fsync)(int);

/* Exported (the build hides symbols by default), so that they come first. */
#define EXPORTED __attribute__((visibility("default")))
EXPORTED int fdatasync(int fd);
EXPORTED int fsync(int fd);

/* real(fd), not while an image is copied; a log file's size noted after. */
static int sync_noted(int (*real)(int), int fd)
{
    pthread_mutex_lock(&synced_mu);
    int rc = real(fd);
    if (rc == 0)
        note_sync(fd);
    pthread_mutex_unlock(&synced_mu);
    return rc;
}

EXPORTED int fdatasync(int fd)
{
    return sync_noted(real_fdatasync, fd);
}

EXPORTED int fsync(int fd)
{
    return sync_noted(real_fsync, fd);
}

/* ---- the entries ---------------------------------------------------------- */

static uint8_t *bufs[ENTRIES_MAX + 1];
static size_t n_entries;

static void key_of(size_t i, char *k)
{
    memset(k, 'k', KEY_BYTES);
    snprintf(k, KEY_BYTES, "%08zu", i);
    k[8] = '-';
}

/* Entry i: a put of key i (chunked when odd), or the delete of key `of`. */
static struct sv_raft_entry entry(size_t i, bool del, size_t of)
{
    static uint8_t data[64];
    char key[KEY_BYTES];
    key_of(del ? of : i, key);
    struct sv_cmd c = {.type = del ? SV_CMD_DELETE : SV_CMD_PUT,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)key,
                       .key_len = KEY_BYTES,
                       .upload = del ? 0 : 1000 + i,
                       .session = 7,
                       .seq = i,
                       .ack_below = i};
    if (!del && i % 2) {
        memset(data, (int)i, sizeof data);
        c.data = data;
        c.size = c.data_len = sizeof data;
    }
    size_t len = sv_cmd_encoded_len(&c);
    bufs[i] = malloc(len);
    ASSERT(bufs[i] != NULL);
    sv_cmd_encode(&c, bufs[i]);
    return (struct sv_raft_entry){
        .term = 1, .index = i, .type = SV_RAFT_ENTRY_NORMAL, .len = (uint32_t)len, .data = bufs[i]};
}

/* What entry i did to key k (k <= i): the state of key k after entries up
 * to a, as the test applies them: -1 never written, 0 deleted, 1 live. */
static int deleted_by[ENTRIES_MAX + 1]; /* key -> the entry deleting it (0: none) */

static int expected(size_t k, uint64_t a)
{
    if (k > a || deleted_by[k] == -1)
        return -1; /* not yet written, or k is a delete entry: no key k */
    return deleted_by[k] && (uint64_t)deleted_by[k] <= a ? 0 : 1;
}

/* ---- the cut -------------------------------------------------------------- */

static int logs_in(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dh)))
        n += is_log(de->d_name);
    closedir(dh);
    return n;
}

/* Copy the first keep bytes of file src to dst (all: keep < 0). A file
 * gone meanwhile (LevelDB deleted it after a sync) is no error. */
static void copy_file(const char *src, const char *dst, off_t keep)
{
    FILE *in = fopen(src, "rb");
    if (!in) {
        CHECK_MSG(errno == ENOENT, "open %s: %s", src, strerror(errno));
        return;
    }
    FILE *out = fopen(dst, "wb");
    CHECK(out != NULL);
    char buf[65536];
    size_t n;
    off_t left = keep < 0 ? (off_t)INT64_MAX : keep;
    while (out && left > 0 &&
           (n = fread(buf, 1, left < (off_t)sizeof buf ? (size_t)left : sizeof buf, in)) > 0) {
        CHECK(fwrite(buf, 1, n, out) == n);
        left -= (off_t)n;
    }
    CHECK(!ferror(in));
    if (out)
        CHECK(fclose(out) == 0);
    fclose(in);
}

/* The database as a power cut now leaves it, at image: every file copied,
 * each log file cut to its size at its last sync (none: empty). No sync
 * runs meanwhile, so LevelDB deletes no file that the MANIFEST copied
 * still names (it deletes only after syncing the MANIFEST that drops it). */
static void make_image(const char *image)
{
    char c[700];
    CHECK((size_t)snprintf(c, sizeof c, "rm -rf '%s'", image) < sizeof c);
    CHECK(system(c) == 0);
    CHECK(mkdir(image, 0700) == 0);
    pthread_mutex_lock(&synced_mu);
    DIR *dh = opendir(db_dir);
    CHECK(dh != NULL);
    struct dirent *de;
    while (dh && (de = readdir(dh))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "LOCK"))
            continue;
        off_t keep = -1;
        if (is_log(de->d_name)) {
            keep = 0;
            for (int i = 0; i < n_synced; i++)
                if (!strcmp(synced[i].name, de->d_name))
                    keep = synced[i].size;
        }
        char from[1200], to[1200];
        snprintf(from, sizeof from, "%s/%s", db_dir, de->d_name);
        snprintf(to, sizeof to, "%s/%s", image, de->d_name);
        copy_file(from, to, keep);
    }
    if (dh)
        closedir(dh);
    pthread_mutex_unlock(&synced_mu);
}

/* Open the image and check it against the entries: all of them up to its
 * applied index, none after. Returns the applied index. */
static uint64_t check_image(const char *image)
{
    struct sv_sm *sm = NULL;
    char err[256] = "";
    int rc = sv_sm_open(image, &sm, err, sizeof err);
    CHECK_MSG(rc == 0, "open the cut image: %s", err);
    if (rc)
        return 0;
    uint64_t a = 0;
    CHECK(sv_sm_applied(sm, GROUP, &a) == 0);
    CHECK(a <= n_entries);
    size_t wrong = 0, first_wrong = 0;
    int first_got = 0;
    for (size_t k = 1; k <= n_entries; k++) {
        char key[KEY_BYTES];
        key_of(k, key);
        struct sv_obj o;
        rc = sv_sm_get(sm, GROUP, 0, (const uint8_t *)"b", 1, (const uint8_t *)key, KEY_BYTES, &o);
        int got = rc == -ENOENT ? -1 : rc == 0 ? !o.deleted : -2;
        if (got != expected(k, a) && !wrong++) {
            first_wrong = k;
            first_got = got;
        }
    }
    CHECK_MSG(wrong == 0,
              "applied index %" PRIu64 " of %zu: %zu keys not as applied, the first of "
              "entry %zu (state %d, want %d)",
              a, n_entries, wrong, first_wrong, first_got, expected(first_wrong, a));
    sv_sm_close(sm);
    return a;
}

static void test_switches(void)
{
    char seg_dir[600], image[600], err[256] = "";
    snprintf(db_dir, sizeof db_dir, "%s/meta", root);
    snprintf(seg_dir, sizeof seg_dir, "%s/chunks", root);
    snprintf(image, sizeof image, "%s/image", root);
    struct sv_sm *sm = NULL;
    struct sv_seg_store *seg = NULL;
    CHECK_RC(sv_sm_open(db_dir, &sm, err, sizeof err), 0);
    CHECK_RC(sv_seg_open(seg_dir, NULL, &seg, err, sizeof err), 0);
    if (!sm || !seg)
        return;
    int windows = 0, cuts = 0, cuts_here = 0;
    bool in_window = false;
    for (size_t job = 0; n_entries + JOB <= ENTRIES_MAX && (windows < SWITCHES || in_window);
         job++) {
        /* Even jobs put (odd entries chunked); odd jobs delete the chunked
         * objects of the job before, then put. */
        size_t first = n_entries + 1;
        for (size_t j = 0; j < JOB; j++) {
            size_t i = first + j;
            bool del = job % 2 && j < JOB / 2;
            size_t of = first - JOB + 2 * j; /* the odd (chunked) entries of the job before */
            struct sv_raft_entry e = entry(i, del, of);
            if (del) {
                deleted_by[of] = (int)i;
                deleted_by[i] = -1;
            }
            struct sv_sm_result res;
            int rc = sv_sm_apply(sm, seg, GROUP, &e, &res, err, sizeof err);
            CHECK_MSG(rc == 0 && res.status == SV_ST_OK, "apply %zu: %d %s (status %d)", i, rc, err,
                      res.status);
            n_entries = i;
        }
        CHECK_RC(sv_sm_commit(sm, seg, err, sizeof err), 0);
        int logs = logs_in(db_dir);
        if (logs >= 2 && !in_window) {
            in_window = true;
            windows++;
            cuts_here = 0;
        } else if (logs < 2) {
            in_window = false;
        }
        if (in_window && cuts_here < CUTS_PER_WINDOW) {
            /* Every commit was synced: a cut keeps them all, not only a
             * consistent prefix. */
            make_image(image);
            uint64_t a = check_image(image);
            CHECK_MSG(a == n_entries, "a cut after the commit of entry %zu kept %" PRIu64,
                      n_entries, a);
            cuts++;
            cuts_here++;
        }
    }
    pthread_mutex_lock(&synced_mu);
    size_t seen = syncs_seen;
    pthread_mutex_unlock(&synced_mu);
    sv_test_log("%zu entries, %d log switches, %d cuts checked, %zu log syncs", n_entries, windows,
                cuts, seen);
    CHECK_MSG(seen > 0, "no sync of a log file was seen: fdatasync/fsync not wrapped");
    CHECK_MSG(windows >= 2 && cuts >= 2, "only %d log switches, %d cuts: the test proved nothing",
              windows, cuts);
    /* A cut with nothing lost, after the last job. */
    make_image(image);
    CHECK(check_image(image) == n_entries);
    sv_sm_close(sm);
    sv_seg_close(seg);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int set_up(void)
{
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (!real_fdatasync || !real_fsync) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 1;
    }
    snprintf(root, sizeof root, "%s/sm-logs-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    return 0;
}

static void tear_down(void)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i <= n_entries; i++)
        free(bufs[i]);
}

static const struct sv_test tests[] = {
    {"log switches", test_switches},
};

const struct sv_test_suite sv_test_suite = {
    .name = "sm-logs-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
};
