/* segstore-test: the chunk segment store through its public API (round trips,
 * segments, recovery from torn and garbage tails, corruption, deletion by
 * id prefix, compaction, ENOSPC by fault injection and, as root, on a tiny
 * tmpfs). */
#define _GNU_SOURCE
#include "segstore.h"

#define CHECK_STRERROR(rc) sv_seg_strerror(rc)
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[256];

/* ---- helpers ---- */

static void make_id(uint8_t *id, uint32_t i)
{
    for (int k = 0; k < SV_SEG_ID_BYTES; k++)
        id[k] = (uint8_t)((i * 2654435761u) >> (k % 4 * 8)) ^ (uint8_t)k;
    memcpy(id, &i, sizeof i);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
}

static uint8_t *big_buf(void)
{
    uint8_t *b = malloc(SV_SEG_PAYLOAD_MAX);
    if (b == NULL) {
        perror("malloc");
        exit(1);
    }
    return b;
}

static void subdir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", root, name);
}

static void seg_path(char *out, size_t cap, const char *dir, unsigned no)
{
    snprintf(out, cap, "%s/seg-%08u", dir, no);
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static struct sv_seg_store *open_store(const char *dir, const struct sv_seg_opts *opts)
{
    char err[256] = "";
    struct sv_seg_store *s = NULL;
    int rc = sv_seg_open(dir, opts, &s, err, sizeof err);
    if (rc != 0) {
        sv_check_fail(__FILE__, __LINE__, "open %s: %d %s", dir, rc, err);
        return NULL;
    }
    return s;
}

/* put id i with len bytes of pattern i */
static int put_i(struct sv_seg_store *s, uint32_t i, size_t len, uint8_t *buf)
{
    uint8_t id[SV_SEG_ID_BYTES];
    make_id(id, i);
    fill(buf, len, i);
    return sv_seg_put(s, id, buf, len);
}

/* get id i and compare with the pattern; returns the get's code, or -1 on a
 * content mismatch */
static int check_i(struct sv_seg_store *s, uint32_t i, size_t want_len, uint8_t *buf,
                   uint8_t *expect)
{
    uint8_t id[SV_SEG_ID_BYTES];
    size_t len = 0;
    make_id(id, i);
    int rc = sv_seg_get(s, id, buf, SV_SEG_PAYLOAD_MAX, &len);
    if (rc != 0)
        return rc;
    fill(expect, want_len, i);
    if (len != want_len || memcmp(buf, expect, len) != 0)
        return -1;
    return 0;
}

/* delete ids first, first + step, ... below end (each must exist) */
static void delete_ids(struct sv_seg_store *s, uint32_t first, uint32_t end, uint32_t step)
{
    uint8_t id[SV_SEG_ID_BYTES];
    for (uint32_t i = first; i < end; i += step) {
        make_id(id, i);
        CHECK_RC(sv_seg_delete(s, id), 0);
    }
}

static size_t size_of(uint32_t i)
{
    return 1 + (i * 7919u) % 6000;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- tests ---- */

static void test_round_trip(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    const size_t sizes[] = {0, 1, 1u << 20, SV_SEG_PAYLOAD_MAX};
    subdir(dir, sizeof dir, "roundtrip");
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 4; i++)
        CHECK_RC(put_i(s, i, sizes[i], a), 0);
    for (uint32_t i = 0; i < 4; i++)
        CHECK_RC(check_i(s, i, sizes[i], a, b), 0); /* visible before sync */
    CHECK_RC(sv_seg_sync(s), 0);
    for (uint32_t i = 0; i < 4; i++)
        CHECK_RC(check_i(s, i, sizes[i], a, b), 0);

    /* a 0-byte get into a NULL buffer, and a buffer one byte short */
    uint8_t id[SV_SEG_ID_BYTES];
    size_t len = 99;
    make_id(id, 0);
    CHECK_RC(sv_seg_get(s, id, NULL, 0, &len), 0);
    CHECK(len == 0);
    make_id(id, 2);
    CHECK_RC(sv_seg_get(s, id, a, (1u << 20) - 1, &len), SV_SEG_E_BUF_TOO_SMALL);
    CHECK(len == 1u << 20);

    /* replacing a chunk: the new content wins, the old bytes are dead */
    struct sv_seg_stats st0, st1;
    sv_seg_stats(s, &st0);
    CHECK(st0.live_records == 4);
    CHECK(st0.live_bytes == 4 * SV_SEG_HEADER_BYTES + 1 + (1u << 20) + SV_SEG_PAYLOAD_MAX);
    CHECK(st0.dead_bytes == 0);
    make_id(id, 1);
    CHECK_RC(sv_seg_put(s, id, "Z", 1), 0);
    CHECK_RC(sv_seg_get(s, id, a, 10, &len), 0);
    CHECK(len == 1 && a[0] == 'Z');
    sv_seg_stats(s, &st1);
    CHECK(st1.live_records == 4);
    CHECK(st1.dead_bytes == SV_SEG_HEADER_BYTES + 1);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* Pages of path's bytes [from, to) in the page cache; -1 on error. */
static long cached_pages(const char *path, long long from, long long to)
{
    int fd = open(path, O_RDONLY);
    long long size = file_size(path);
    long n = -1, page = sysconf(_SC_PAGESIZE);
    if (fd < 0 || size <= 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    unsigned char *v = malloc((size_t)(size + page - 1) / (size_t)page);
    if (m != MAP_FAILED && v != NULL && mincore(m, (size_t)size, v) == 0) {
        n = 0;
        for (long long p = from / page; p < (to + page - 1) / page; p++)
            n += v[p] & 1;
    }
    free(v);
    if (m != MAP_FAILED)
        munmap(m, (size_t)size);
    close(fd);
    return n;
}

/* Big records, alone and in a batch between small ones, at offsets that are
 * not block-aligned: their whole blocks are written around the page cache
 * (where the file system has direct I/O), their edges through it; every
 * record reads back, before and after a sync, and after a crash without
 * sync (recovery redoes them from the segment). */
static void test_big_direct(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    subdir(dir, sizeof dir, "direct");
    const size_t sizes[] = {100, 1u << 20, 3, (1u << 20) + 1234, 777, 300000, 1};
    const uint32_t n = sizeof sizes / sizeof sizes[0];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        struct sv_seg_store *s;
        if (sv_seg_open(dir, NULL, &s, err, sizeof err) != 0)
            _exit(2);
        for (uint32_t i = 0; i < 2; i++) /* one by one */
            if (put_i(s, i, sizes[i], a) != 0)
                _exit(3);
        uint8_t *bufs[sizeof sizes / sizeof sizes[0]]; /* a batch keeps pointers */
        sv_seg_batch_begin(s);
        for (uint32_t i = 2; i < n; i++)
            if ((bufs[i] = malloc(sizes[i])) == NULL || put_i(s, i, sizes[i], bufs[i]) != 0)
                _exit(4);
        if (sv_seg_batch_end(s) != 0)
            _exit(5);
        _exit(0); /* no sync, no close, nothing read (a read fills the page cache) */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    seg_path(path, sizeof path, dir, 1);
    long long end = 0, big_from = 0, big_to = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i == 1) {
            big_from = end + SV_SEG_HEADER_BYTES;
            big_to = big_from + (long long)sizes[i];
        }
        end += SV_SEG_HEADER_BYTES + (long long)sizes[i];
    }
    CHECK(file_size(path) == end);
    int dfd = open(path, O_RDONLY | O_DIRECT);
    if (dfd >= 0) { /* direct I/O here: the first big record's inner blocks skipped the cache */
        close(dfd);
        CHECK(cached_pages(path, big_from + 4096, big_to - 4096) == 0);
    }
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        CHECK_RC(check_i(s, i, sizes[i], a, b), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    CHECK_RC(put_i(s, 100, 1u << 20, a), 0); /* appends after the redone records */
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        CHECK_RC(check_i(s, i, sizes[i], a, b), 0);
    CHECK_RC(check_i(s, 100, 1u << 20, a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_limits(void)
{
    char dir[300];
    uint8_t *a = big_buf();
    uint8_t id[SV_SEG_ID_BYTES];
    size_t len;
    subdir(dir, sizeof dir, "limits");
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    make_id(id, 12345);
    CHECK_RC(sv_seg_get(s, id, a, SV_SEG_PAYLOAD_MAX, &len), SV_SEG_E_NOT_FOUND);
    CHECK_RC(sv_seg_delete(s, id), SV_SEG_E_NOT_FOUND);
    CHECK_RC(sv_seg_put(s, id, a, SV_SEG_PAYLOAD_MAX + 1), SV_SEG_E_TOO_BIG);
    CHECK(strstr(sv_seg_errmsg(s), "too big") != NULL);
    CHECK_RC(sv_seg_get(s, id, a, SV_SEG_PAYLOAD_MAX, &len), SV_SEG_E_NOT_FOUND);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 0 && st.live_bytes == 0 && st.dead_bytes == 0);
    CHECK_RC(sv_seg_compact(s, 1.5, NULL), SV_SEG_E_BAD_ARG);
    CHECK_RC(sv_seg_close(s), 0);

    struct sv_seg_opts bad = {.segment_bytes = 100};
    char err[256] = "";
    struct sv_seg_store *s2 = (struct sv_seg_store *)1;
    CHECK_RC(sv_seg_open(dir, &bad, &s2, err, sizeof err), SV_SEG_E_BAD_ARG);
    CHECK(s2 == NULL);
    CHECK(strstr(err, "segment_bytes") != NULL);
    CHECK(strcmp(sv_seg_strerror(SV_SEG_E_CORRUPT), "corrupt record") == 0);
    CHECK(strcmp(sv_seg_strerror(-ENOSPC), strerror(ENOSPC)) == 0);
out:
    free(a);
}

static void test_many_segments(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    const uint32_t n = 600;
    struct sv_seg_opts opts = {.segment_bytes = 64 * 1024};
    subdir(dir, sizeof dir, "many");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    /* group commit: a sync every 50 puts */
    for (uint32_t i = 0; i < n; i++) {
        CHECK_RC(put_i(s, i, size_of(i), a), 0);
        if (i % 50 == 49)
            CHECK_RC(sv_seg_sync(s), 0);
    }
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    uint64_t want = 0;
    for (uint32_t i = 0; i < n; i++)
        want += SV_SEG_HEADER_BYTES + size_of(i);
    CHECK(st.live_records == n);
    CHECK(st.live_bytes == want);
    CHECK(st.dead_bytes == 0);
    CHECK(st.segments > 10);
    /* no segment exceeds its size: a record never straddles two */
    for (unsigned no = 1; no <= st.segments; no++) {
        seg_path(path, sizeof path, dir, no);
        long long sz = file_size(path);
        CHECK(sz > 0 && sz <= 64 * 1024);
    }
    int bad = 0;
    for (uint32_t i = 0; i < n; i++)
        bad += check_i(s, i, size_of(i), a, b) != 0;
    CHECK(bad == 0);
    CHECK_RC(sv_seg_close(s), 0);

    /* reopen: everything synced is there, the counts are rebuilt */
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    struct sv_seg_stats st2;
    sv_seg_stats(s, &st2);
    CHECK(st2.live_records == n && st2.live_bytes == want && st2.segments == st.segments);
    bad = 0;
    for (uint32_t i = 0; i < n; i++)
        bad += check_i(s, i, size_of(i), a, b) != 0;
    CHECK(bad == 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_reopen_close_syncs(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    subdir(dir, sizeof dir, "reopen");
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 20; i++)
        CHECK_RC(put_i(s, i, size_of(i), a), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    uint8_t id[SV_SEG_ID_BYTES];
    make_id(id, 3);
    CHECK_RC(sv_seg_delete(s, id), 0);
    CHECK_RC(put_i(s, 100, 77, a), 0);
    CHECK_RC(sv_seg_close(s), 0); /* close syncs the delete and the put */
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 20; i++)
        CHECK_RC(check_i(s, i, size_of(i), a, b), i == 3 ? SV_SEG_E_NOT_FOUND : 0);
    CHECK_RC(check_i(s, 100, 77, a, b), 0);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 20);
    CHECK(st.dead_bytes == SV_SEG_HEADER_BYTES + size_of(3));
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* Five 1000-byte records in one segment, synced and closed. */
static bool five_records(const char *dir, uint8_t *a)
{
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        return false;
    for (uint32_t i = 0; i < 5; i++)
        CHECK_RC(put_i(s, i, 1000, a), 0);
    CHECK_RC(sv_seg_close(s), 0);
    return true;
}

static void test_torn_tail(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    const long long rec = SV_SEG_HEADER_BYTES + 1000;
    subdir(dir, sizeof dir, "torn");
    if (!five_records(dir, a))
        goto out;
    seg_path(path, sizeof path, dir, 1);
    CHECK(file_size(path) == 5 * rec);
    CHECK(truncate(path, 4 * rec + 500) == 0); /* crash in the middle of record 4 */
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK(file_size(path) == 4 * rec); /* torn record cut away */
    for (uint32_t i = 0; i < 4; i++)
        CHECK_RC(check_i(s, i, 1000, a, b), 0);
    CHECK_RC(check_i(s, 4, 1000, a, b), SV_SEG_E_NOT_FOUND); /* its index entry dropped */
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 4 && st.dead_bytes == 0);
    /* the store appends after the last whole record */
    CHECK_RC(put_i(s, 9, 300, a), 0);
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK_RC(check_i(s, 9, 300, a, b), 0);
    CHECK_RC(check_i(s, 3, 1000, a, b), 0);
    CHECK(file_size(path) == 4 * rec + SV_SEG_HEADER_BYTES + 300);
    CHECK_RC(sv_seg_close(s), 0);

    /* bit rot in synced record 1 AND the file shorter than the synced tail:
     * recovery skips the rotten record (get finds it) and cuts the torn one */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t c = 0;
        CHECK(pread(fd, &c, 1, rec + SV_SEG_HEADER_BYTES + 5) == 1);
        c ^= 0x01;
        CHECK(pwrite(fd, &c, 1, rec + SV_SEG_HEADER_BYTES + 5) == 1);
        close(fd);
    }
    CHECK(truncate(path, 4 * rec + 100) == 0);
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK(file_size(path) == 4 * rec);
    CHECK_RC(check_i(s, 0, 1000, a, b), 0);
    CHECK_RC(check_i(s, 1, 1000, a, b), SV_SEG_E_CORRUPT);
    CHECK_RC(check_i(s, 2, 1000, a, b), 0);
    CHECK_RC(check_i(s, 3, 1000, a, b), 0);
    CHECK_RC(check_i(s, 9, 300, a, b), SV_SEG_E_NOT_FOUND);
    CHECK_RC(put_i(s, 1, 1000, a), 0); /* repaired */
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK_RC(check_i(s, 1, 1000, a, b), 0);
    CHECK_RC(put_i(s, 9, 300, a), 0);
    CHECK_RC(sv_seg_close(s), 0);

    /* a torn header (only 10 bytes of the last record) */
    CHECK(truncate(path, 4 * rec + 10) == 0);
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK(file_size(path) == 4 * rec);
    CHECK_RC(check_i(s, 9, 300, a, b), SV_SEG_E_NOT_FOUND);
    CHECK_RC(check_i(s, 0, 1000, a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_garbage_tail(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    const long long rec = SV_SEG_HEADER_BYTES + 1000;
    subdir(dir, sizeof dir, "garbage");
    if (!five_records(dir, a))
        goto out;
    seg_path(path, sizeof path, dir, 1);
    /* garbage, then a forged header with the right magic but a wrong CRC */
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t g[300];
        fill(g, sizeof g, 777);
        memcpy(g, "SVSG\x01\0\0\0\x10\0\0\0", 12);
        CHECK(write(fd, g, sizeof g) == (ssize_t)sizeof g);
        close(fd);
    }
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK(file_size(path) == 5 * rec);
    for (uint32_t i = 0; i < 5; i++)
        CHECK_RC(check_i(s, i, 1000, a, b), 0);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 5 && st.dead_bytes == 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* A process that dies without closing: synced puts survive; puts written but
 * not synced are complete in the page cache and are redone into the index. */
static void test_process_crash(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    struct sv_seg_opts opts = {.segment_bytes = 16 * 1024};
    subdir(dir, sizeof dir, "crash");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        struct sv_seg_store *s;
        if (sv_seg_open(dir, &opts, &s, err, sizeof err) != 0)
            _exit(2);
        for (uint32_t i = 0; i < 40; i++)
            if (put_i(s, i, size_of(i), a) != 0)
                _exit(3);
        if (sv_seg_sync(s) != 0)
            _exit(4);
        for (uint32_t i = 40; i < 60; i++) /* several segments past the synced tail */
            if (put_i(s, i, size_of(i), a) != 0)
                _exit(5);
        _exit(0); /* no sync, no close */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    int bad = 0;
    for (uint32_t i = 0; i < 60; i++)
        bad += check_i(s, i, size_of(i), a, b) != 0;
    CHECK(bad == 0);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 60);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_corrupt_payload(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    const long long rec = SV_SEG_HEADER_BYTES + 1000;
    uint8_t id[SV_SEG_ID_BYTES], ids[4 * SV_SEG_ID_BYTES];
    size_t n = 99;
    subdir(dir, sizeof dir, "corrupt");
    if (!five_records(dir, a))
        goto out;
    seg_path(path, sizeof path, dir, 1);
    /* flip one payload byte of record 2 (synced data: bit rot, not a torn tail) */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t c;
        off_t off = (off_t)(2 * rec + SV_SEG_HEADER_BYTES + 123);
        CHECK(pread(fd, &c, 1, off) == 1);
        c ^= 0x40;
        CHECK(pwrite(fd, &c, 1, off) == 1);
        close(fd);
    }
    struct sv_seg_store *s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK(file_size(path) == 5 * rec); /* recovery did not cut synced records */
    for (uint32_t i = 0; i < 5; i++)
        CHECK_RC(check_i(s, i, 1000, a, b), i == 2 ? SV_SEG_E_CORRUPT : 0);
    CHECK(strstr(sv_seg_errmsg(s), "checksum") == NULL); /* errmsg is per call */
    CHECK_RC(check_i(s, 2, 1000, a, b), SV_SEG_E_CORRUPT);
    CHECK(strstr(sv_seg_errmsg(s), "checksum") != NULL);
    CHECK_RC(sv_seg_bad_list(s, ids, 4, &n), 0);
    make_id(id, 2);
    CHECK(n == 1 && memcmp(ids, id, SV_SEG_ID_BYTES) == 0);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.bad_chunks == 1);
    /* mark_bad by the caller (e.g. an AES-GCM tag failure above the store) */
    make_id(id, 4);
    CHECK_RC(sv_seg_mark_bad(s, id), 0);
    CHECK_RC(sv_seg_mark_bad(s, id), 0);
    CHECK_RC(sv_seg_bad_list(s, ids, 4, &n), 0);
    CHECK(n == 2);
    CHECK_RC(sv_seg_close(s), 0);

    /* the bad list survives a reopen; a repair (put) takes the id off it */
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK_RC(sv_seg_bad_list(s, ids, 4, &n), 0);
    CHECK(n == 2);
    /* sv_seg_has: a bad chunk is not held, a healthy one is, a missing one not */
    make_id(id, 2);
    CHECK_RC(sv_seg_has(s, id), 0);
    make_id(id, 3);
    CHECK_RC(sv_seg_has(s, id), 1);
    make_id(id, 99);
    CHECK_RC(sv_seg_has(s, id), 0);
    CHECK_RC(put_i(s, 2, 1000, a), 0);
    make_id(id, 2);
    CHECK_RC(sv_seg_has(s, id), 1); /* repaired, not synced yet */
    CHECK_RC(check_i(s, 2, 1000, a, b), 0);
    CHECK_RC(sv_seg_bad_list(s, ids, 4, &n), 0);
    make_id(id, 4);
    CHECK(n == 1 && memcmp(ids, id, SV_SEG_ID_BYTES) == 0);
    CHECK_RC(sv_seg_close(s), 0);

    /* records 0 and 1 swapped on disk: each is intact (its CRC holds) but is
     * not the record the index names */
    fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t r0[SV_SEG_HEADER_BYTES + 1000], r1[SV_SEG_HEADER_BYTES + 1000];
        CHECK(pread(fd, r0, sizeof r0, 0) == (ssize_t)sizeof r0);
        CHECK(pread(fd, r1, sizeof r1, rec) == (ssize_t)sizeof r1);
        CHECK(pwrite(fd, r1, sizeof r1, 0) == (ssize_t)sizeof r1);
        CHECK(pwrite(fd, r0, sizeof r0, rec) == (ssize_t)sizeof r0);
        close(fd);
    }
    s = open_store(dir, NULL);
    if (s == NULL)
        goto out;
    CHECK_RC(check_i(s, 0, 1000, a, b), SV_SEG_E_CORRUPT);
    CHECK(strstr(sv_seg_errmsg(s), "another id") != NULL);
    CHECK_RC(check_i(s, 1, 1000, a, b), SV_SEG_E_CORRUPT);
    CHECK_RC(check_i(s, 2, 1000, a, b), 0);
    CHECK_RC(check_i(s, 3, 1000, a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* id of chunk i under a 4-byte prefix p (big endian, as sv_chunk_id puts
 * the group first), then i, then bytes of both */
static void prefix_id(uint8_t *id, uint32_t p, uint32_t i)
{
    for (int k = 0; k < SV_SEG_ID_BYTES; k++)
        id[k] = (uint8_t)(p * 31 + i * 7 + (uint32_t)k);
    for (int k = 0; k < 4; k++) {
        id[k] = (uint8_t)(p >> (24 - 8 * k));
        id[4 + k] = (uint8_t)(i >> (24 - 8 * k));
    }
}

enum {
    PFX_GONE = 0x01020304, /* removed */
    PFX_ABOVE = 0x01020305,
    PFX_BELOW = 0x01020303,
    PFX_SHORT = 0x01020300,              /* shares three bytes with PFX_GONE */
    PFX_MANY = SV_SEG_PENDING_MAX + 100, /* more than one sync's worth */
    PFX_OTHERS = 40,                     /* chunks under each other prefix */
};

static const uint32_t pfx_others[] = {PFX_ABOVE, PFX_BELOW, PFX_SHORT};

/* every chunk under the other prefixes is there, byte-equal, but those under
 * gone (one of them, or 0), which are not */
static void prefix_others_intact(struct sv_seg_store *s, uint32_t gone, uint8_t *a, uint8_t *b)
{
    uint8_t id[SV_SEG_ID_BYTES];
    int bad = 0;
    for (size_t p = 0; p < sizeof pfx_others / sizeof pfx_others[0]; p++)
        for (uint32_t i = 0; i < PFX_OTHERS; i++) {
            size_t len = 0, want = size_of(i);
            prefix_id(id, pfx_others[p], i);
            int rc = sv_seg_get(s, id, a, SV_SEG_PAYLOAD_MAX, &len);
            if (pfx_others[p] == gone) {
                bad += rc != SV_SEG_E_NOT_FOUND;
                continue;
            }
            fill(b, want, pfx_others[p] + i);
            bad += rc != 0 || len != want || memcmp(a, b, want) != 0;
        }
    CHECK(bad == 0);
}

/* no chunk under PFX_GONE, and the bad list holds only the PFX_ABOVE id */
static void prefix_gone(struct sv_seg_store *s, uint8_t *a)
{
    uint8_t id[SV_SEG_ID_BYTES], ids[4 * SV_SEG_ID_BYTES];
    int found = 0;
    for (uint32_t i = 0; i < PFX_MANY + 3; i++) {
        size_t len = 0;
        prefix_id(id, PFX_GONE, i);
        found += sv_seg_get(s, id, a, SV_SEG_PAYLOAD_MAX, &len) != SV_SEG_E_NOT_FOUND;
    }
    CHECK(found == 0);
    size_t n = 0;
    CHECK_RC(sv_seg_bad_list(s, ids, 4, &n), 0);
    prefix_id(id, PFX_ABOVE, 1);
    CHECK(n == 1 && memcmp(ids, id, SV_SEG_ID_BYTES) == 0);
}

static void test_delete_prefix(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    uint8_t id[SV_SEG_ID_BYTES];
    subdir(dir, sizeof dir, "prefix");
    struct sv_seg_opts opts = {.segment_bytes = 1u << 20};
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    /* PFX_MANY one-byte chunks under PFX_GONE (puts sync when the pending
     * set is full), interleaved with the other prefixes' */
    static const uint8_t one = 0x42;
    int bad = 0;
    for (uint32_t i = 0; i < PFX_MANY; i++) {
        prefix_id(id, PFX_GONE, i);
        int rc = sv_seg_put(s, id, &one, 1);
        if (rc == SV_SEG_E_PENDING_FULL && sv_seg_sync(s) == 0)
            rc = sv_seg_put(s, id, &one, 1);
        bad += rc != 0;
        if (i < PFX_OTHERS)
            for (size_t p = 0; p < sizeof pfx_others / sizeof pfx_others[0]; p++) {
                prefix_id(id, pfx_others[p], i);
                fill(a, size_of(i), pfx_others[p] + i);
                bad += sv_seg_put(s, id, a, size_of(i)) != 0;
            }
    }
    CHECK(bad == 0);
    CHECK_RC(sv_seg_sync(s), 0);
    /* not synced: two more puts (one big), a delete, a replacement */
    prefix_id(id, PFX_GONE, PFX_MANY);
    fill(a, 300000, 7);
    CHECK_RC(sv_seg_put(s, id, a, 300000), 0);
    prefix_id(id, PFX_GONE, PFX_MANY + 1);
    CHECK_RC(sv_seg_put(s, id, a, 10), 0);
    prefix_id(id, PFX_GONE, 5);
    CHECK_RC(sv_seg_delete(s, id), 0);
    prefix_id(id, PFX_GONE, 6);
    CHECK_RC(sv_seg_put(s, id, a, 20), 0);
    /* the bad list: an indexed id, one never stored, and one of another prefix */
    prefix_id(id, PFX_GONE, 7);
    CHECK_RC(sv_seg_mark_bad(s, id), 0);
    prefix_id(id, PFX_GONE, PFX_MANY + 2);
    CHECK_RC(sv_seg_mark_bad(s, id), 0);
    prefix_id(id, PFX_ABOVE, 1);
    CHECK_RC(sv_seg_mark_bad(s, id), 0);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == PFX_MANY + 1 + 3 * PFX_OTHERS && st.bad_chunks == 3);

    uint8_t pfx[4] = {0x01, 0x02, 0x03, 0x04};
    uint64_t deleted = 0;
    CHECK_RC(sv_seg_delete_prefix(s, pfx, sizeof pfx, &deleted), 0);
    CHECK(deleted == PFX_MANY + 1); /* PFX_MANY + 2 put, one deleted before */
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 3 * PFX_OTHERS && st.bad_chunks == 1);
    prefix_gone(s, a);
    prefix_others_intact(s, 0, a, b);

    /* again: nothing to remove, nothing else touched */
    deleted = 99;
    CHECK_RC(sv_seg_delete_prefix(s, pfx, sizeof pfx, &deleted), 0);
    CHECK(deleted == 0);
    CHECK_RC(sv_seg_delete_prefix(s, pfx, 0, &deleted), SV_SEG_E_BAD_ARG);
    CHECK_RC(sv_seg_delete_prefix(s, pfx, SV_SEG_ID_BYTES + 1, &deleted), SV_SEG_E_BAD_ARG);
    /* a whole id is a prefix too */
    prefix_id(id, PFX_SHORT, 0);
    CHECK_RC(sv_seg_delete_prefix(s, id, SV_SEG_ID_BYTES, &deleted), 0);
    CHECK(deleted == 1);
    fill(a, size_of(0), PFX_SHORT);
    CHECK_RC(sv_seg_put(s, id, a, size_of(0)), 0);
    CHECK_RC(sv_seg_close(s), 0);

    /* the disk says the same */
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 3 * PFX_OTHERS && st.bad_chunks == 1);
    prefix_gone(s, a);
    prefix_others_intact(s, 0, a, b);
    CHECK_RC(sv_seg_close(s), 0);

    /* a process that dies right after the call, without closing the store:
     * the removals were written by the call itself, not left pending */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        uint8_t below[4] = {0x01, 0x02, 0x03, 0x03};
        uint64_t n = 0;
        if (sv_seg_open(dir, &opts, &s, err, sizeof err) != 0)
            _exit(2);
        if (sv_seg_delete_prefix(s, below, sizeof below, &n) != 0 || n != PFX_OTHERS)
            _exit(3);
        _exit(0); /* no close */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 2 * PFX_OTHERS);
    prefix_others_intact(s, PFX_BELOW, a, b);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_compact(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    uint8_t id[SV_SEG_ID_BYTES];
    struct sv_seg_opts opts = {.segment_bytes = 32 * 1024};
    const uint32_t n = 64; /* 4 KiB each: 7 per segment */
    subdir(dir, sizeof dir, "compact");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        CHECK_RC(put_i(s, i, 4096, a), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    struct sv_seg_stats st0;
    sv_seg_stats(s, &st0);
    CHECK(st0.segments >= 9);
    /* delete 6 of 7 in segments 1 and 2 and everything in segment 3 */
    for (uint32_t i = 0; i < 21; i++) {
        if (i == 3 || i == 10)
            continue;
        make_id(id, i);
        CHECK_RC(sv_seg_delete(s, id), 0);
    }
    make_id(id, 0);
    CHECK_RC(sv_seg_delete(s, id), SV_SEG_E_NOT_FOUND); /* already deleted */
    struct sv_seg_stats st1;
    sv_seg_stats(s, &st1);
    CHECK(st1.live_records == n - 19);
    CHECK(st1.dead_bytes == 19 * (SV_SEG_HEADER_BYTES + 4096));

    uint64_t reclaimed = 0;
    CHECK_RC(sv_seg_compact(s, 0.5, &reclaimed), 0);
    CHECK(reclaimed == 3 * 7 * (SV_SEG_HEADER_BYTES + 4096));
    for (unsigned no = 1; no <= 3; no++) {
        seg_path(path, sizeof path, dir, no);
        CHECK(access(path, F_OK) != 0); /* files removed */
    }
    seg_path(path, sizeof path, dir, 4);
    CHECK(access(path, F_OK) == 0); /* a full segment stays */
    struct sv_seg_stats st2;
    sv_seg_stats(s, &st2);
    CHECK(st2.live_records == n - 19);
    CHECK(st2.live_bytes == st1.live_bytes);
    CHECK(st2.dead_bytes == 0);
    int bad = 0;
    for (uint32_t i = 0; i < n; i++)
        bad +=
            check_i(s, i, 4096, a, b) != ((i < 21 && i != 3 && i != 10) ? SV_SEG_E_NOT_FOUND : 0);
    CHECK(bad == 0);
    /* nothing left to do: a second pass reclaims nothing */
    CHECK_RC(sv_seg_compact(s, 0.5, &reclaimed), 0);
    CHECK(reclaimed == 0);
    CHECK_RC(sv_seg_close(s), 0);

    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    struct sv_seg_stats st3;
    sv_seg_stats(s, &st3);
    CHECK(st3.live_records == n - 19 && st3.live_bytes == st2.live_bytes && st3.dead_bytes == 0);
    CHECK(st3.segments == st2.segments);
    bad = 0;
    for (uint32_t i = 0; i < n; i++)
        bad +=
            check_i(s, i, 4096, a, b) != ((i < 21 && i != 3 && i != 10) ? SV_SEG_E_NOT_FOUND : 0);
    CHECK(bad == 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* A copy budget: compaction takes only the segments whose live bytes fit
 * in it (a nearly full disk is not filled by the copies); an emptied
 * segment costs nothing and is always taken. */
static void test_compact_budget(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    struct sv_seg_opts opts = {.segment_bytes = 32 * 1024};
    const uint64_t rec = SV_SEG_HEADER_BYTES + 4096;
    subdir(dir, sizeof dir, "budget");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 28; i++) /* 7 per segment: segments 1-4 */
        CHECK_RC(put_i(s, i, 4096, a), 0);
    delete_ids(s, 0, 7, 1);   /* segment 1 emptied */
    delete_ids(s, 7, 12, 1);  /* segment 2: 2 live records */
    delete_ids(s, 14, 19, 1); /* segment 3: 2 live records */
    struct sv_seg_emptied e;
    uint64_t reclaimed = 0;
    CHECK_RC(sv_seg_compact_keep(s, 0.5, 3 * rec, &reclaimed, &e), 0);
    CHECK(e.n == 2 && e.nos[0] == 1 && e.nos[1] == 2); /* segment 3 would pass the budget */
    char err[128] = "";
    CHECK_RC(sv_seg_unlink_emptied(&e, err, sizeof err), 0);
    CHECK_RC(sv_seg_compact_keep(s, 0.5, 0, &reclaimed, &e), 0);
    CHECK(e.n == 0 && reclaimed == 0);
    CHECK_RC(sv_seg_compact_keep(s, 0.5, UINT64_MAX, &reclaimed, &e), 0);
    CHECK(e.n == 1 && e.nos[0] == 3);
    CHECK_RC(sv_seg_unlink_emptied(&e, err, sizeof err), 0);
    for (uint32_t i = 19; i < 28; i++)
        CHECK_RC(check_i(s, i, 4096, a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* The index is lost: open rebuilds it from the segments. */
/* sv_seg_compact_keep leaves the emptied files; the store goes on (puts,
 * gets) before sv_seg_unlink_emptied removes them. A failed unlink is
 * reported with the file's name. Files a crash left between the two steps
 * are taken by the next compaction. */
static void test_compact_two_steps(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    struct sv_seg_opts opts = {.segment_bytes = 32 * 1024};
    const uint64_t rec = SV_SEG_HEADER_BYTES + 4096;
    subdir(dir, sizeof dir, "compact2");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 64; i++) /* 7 per segment */
        CHECK_RC(put_i(s, i, 4096, a), 0);
    delete_ids(s, 0, 14, 1); /* segments 1 and 2 wholly dead */
    struct sv_seg_emptied e;
    uint64_t reclaimed = 0;
    CHECK_RC(sv_seg_compact_keep(s, 0.5, UINT64_MAX, &reclaimed, &e), 0);
    CHECK(reclaimed == 14 * rec && e.n == 2 && e.dirfd >= 0);
    for (unsigned no = 1; no <= 2; no++) {
        seg_path(path, sizeof path, dir, no);
        CHECK(access(path, F_OK) == 0); /* still there */
    }
    CHECK_RC(put_i(s, 100, 4096, a), 0); /* the store is usable meanwhile */
    CHECK_RC(check_i(s, 20, 4096, a, b), 0);
    char err[128] = "";
    CHECK_RC(sv_seg_unlink_emptied(&e, err, sizeof err), 0);
    CHECK(e.n == 0 && e.dirfd == -1 && e.nos == NULL);
    for (unsigned no = 1; no <= 2; no++) {
        seg_path(path, sizeof path, dir, no);
        CHECK(access(path, F_OK) != 0); /* removed */
    }

    /* an unlink that fails (a directory stands where segment 3 was): the
     * error names it, nothing of the store changes */
    delete_ids(s, 14, 21, 1);
    CHECK_RC(sv_seg_compact_keep(s, 0.5, UINT64_MAX, &reclaimed, &e), 0);
    CHECK(e.n == 1 && e.nos[0] == 3);
    seg_path(path, sizeof path, dir, 3);
    CHECK(unlink(path) == 0 && mkdir(path, 0755) == 0);
    char sub[450];
    snprintf(sub, sizeof sub, "%s/x", path);
    CHECK(mkdir(sub, 0755) == 0); /* not empty, so no rmdir either */
    CHECK_RC(sv_seg_unlink_emptied(&e, err, sizeof err), -EISDIR);
    CHECK(strstr(err, "unlink seg-00000003") != NULL);
    CHECK(e.nos == NULL && e.dirfd == -1);
    CHECK(rmdir(sub) == 0 && rmdir(path) == 0);
    CHECK_RC(check_i(s, 21, 4096, a, b), 0);

    /* a crash between the steps: segment 4 emptied, its file left */
    delete_ids(s, 21, 28, 1);
    CHECK_RC(sv_seg_compact_keep(s, 0.5, UINT64_MAX, &reclaimed, &e), 0);
    CHECK(reclaimed == 7 * rec && e.n == 1);
    sv_seg_emptied_free(&e);
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 64 - 28 + 1 && st.dead_bytes == 7 * rec);
    CHECK_RC(sv_seg_compact(s, 0.5, &reclaimed), 0);
    CHECK(reclaimed == 7 * rec);
    for (unsigned no = 3; no <= 4; no++) {
        seg_path(path, sizeof path, dir, no);
        CHECK(access(path, F_OK) != 0);
    }
    int bad = 0;
    for (uint32_t i = 0; i < 64; i++)
        bad += check_i(s, i, 4096, a, b) != (i < 28 ? SV_SEG_E_NOT_FOUND : 0);
    CHECK(bad == 0);
    CHECK_RC(check_i(s, 100, 4096, a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_index_rebuild(void)
{
    char dir[300], idx[400];
    uint8_t *a = big_buf(), *b = big_buf();
    struct sv_seg_opts opts = {.segment_bytes = 16 * 1024};
    subdir(dir, sizeof dir, "rebuild");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 100; i++)
        CHECK_RC(put_i(s, i, size_of(i), a), 0);
    CHECK_RC(sv_seg_close(s), 0);
    snprintf(idx, sizeof idx, "%s/index", dir);
    CHECK(nftw(idx, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    CHECK(access(idx, F_OK) != 0);
    /* and the first segment has junk at its end: the rebuild must not cut the
     * log there, later segments hold synced records */
    char path[400];
    seg_path(path, sizeof path, dir, 1);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t junk[100];
        fill(junk, sizeof junk, 5);
        CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
        close(fd);
    }
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    int bad = 0;
    for (uint32_t i = 0; i < 100; i++)
        bad += check_i(s, i, size_of(i), a, b) != 0;
    CHECK(bad == 0);
    struct sv_seg_stats st;
    sv_seg_stats(s, &st);
    CHECK(st.live_records == 100 && st.dead_bytes == 100 && st.segments > 5);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* Fault injection: fail the next I/O of a kind with a given errno. */
struct faults {
    enum sv_seg_io io;
    int err;
    int after; /* let this many such I/Os through first */
    int seen;  /* such I/Os asked for so far */
};

static int inject(void *arg, enum sv_seg_io io)
{
    struct faults *f = arg;
    if (f->err == 0 || io != f->io)
        return 0;
    f->seen++;
    if (f->after > 0) {
        f->after--;
        return 0;
    }
    return -f->err;
}

static void test_enospc_injected(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    struct faults f = {0};
    struct sv_seg_opts opts = {.segment_bytes = 16 * 1024, .fault = inject, .fault_arg = &f};
    subdir(dir, sizeof dir, "enospc-injected");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 10; i++)
        CHECK_RC(put_i(s, i, size_of(i), a), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    struct sv_seg_stats st0, st1;
    sv_seg_stats(s, &st0);

    /* a write fails with ENOSPC: reported, nothing indexed, store usable */
    f = (struct faults){.io = SV_SEG_IO_WRITE, .err = ENOSPC};
    CHECK_RC(put_i(s, 10, 500, a), -ENOSPC);
    CHECK(strstr(sv_seg_errmsg(s), "No space left") != NULL);
    CHECK(strstr(sv_seg_errmsg(s), "seg-") != NULL);
    CHECK_RC(check_i(s, 10, 500, a, b), SV_SEG_E_NOT_FOUND);
    sv_seg_stats(s, &st1);
    CHECK(st1.live_bytes == st0.live_bytes && st1.dead_bytes == st0.dead_bytes);
    for (uint32_t i = 0; i < 10; i++)
        CHECK_RC(check_i(s, i, size_of(i), a, b), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    f.err = 0;
    CHECK_RC(put_i(s, 10, 500, a), 0);
    CHECK_RC(check_i(s, 10, 500, a, b), 0);
    CHECK_RC(sv_seg_sync(s), 0);

    /* an fsync fails: sync reports it and discards the unsynced puts */
    CHECK_RC(put_i(s, 11, 600, a), 0);
    f = (struct faults){.io = SV_SEG_IO_FSYNC, .err = ENOSPC};
    CHECK_RC(sv_seg_sync(s), -ENOSPC);
    CHECK(strstr(sv_seg_errmsg(s), "discarded") != NULL);
    CHECK_RC(check_i(s, 11, 600, a, b), SV_SEG_E_NOT_FOUND);
    f.err = 0;
    struct sv_seg_stats st3;
    sv_seg_stats(s, &st3);
    CHECK_RC(put_i(s, 12, 700, a), 0); /* goes to a new segment */
    struct sv_seg_stats st4;
    sv_seg_stats(s, &st4);
    CHECK(st4.segments == st3.segments + 1);
    CHECK_RC(sv_seg_sync(s), 0);
    for (uint32_t i = 0; i <= 12; i++)
        CHECK_RC(check_i(s, i,
                         i == 10   ? 500
                         : i == 12 ? 700
                                   : size_of(i),
                         a, b),
                 i == 11 ? SV_SEG_E_NOT_FOUND : 0);

    /* a read error is reported as such, not as corruption */
    f = (struct faults){.io = SV_SEG_IO_READ, .err = EIO};
    CHECK_RC(check_i(s, 3, size_of(3), a, b), -EIO);
    f.err = 0;
    struct sv_seg_stats st2;
    sv_seg_stats(s, &st2);
    CHECK(st2.bad_chunks == 0);
    CHECK_RC(sv_seg_close(s), 0);

    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i <= 12; i++)
        CHECK_RC(check_i(s, i,
                         i == 10   ? 500
                         : i == 12 ? 700
                                   : size_of(i),
                         a, b),
                 i == 11 ? SV_SEG_E_NOT_FOUND : 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* Batches: queued puts are placed at once, written by batch_end (or by a
 * get or sync inside the batch) across segment boundaries; a failed write
 * discards everything since the last sync and the store goes on. */
/* Ids 0..n-1 of 6000 bytes that do not read back as test_compact_fails
 * left them (every third below 2000 deleted). */
static int wrong_thirds(struct sv_seg_store *s, uint32_t n, uint8_t *a, uint8_t *b)
{
    int bad = 0;
    for (uint32_t i = 0; i < n; i++)
        bad += check_i(s, i, 6000, a, b) != (i < 2000 && i % 3 == 0 ? SV_SEG_E_NOT_FOUND : 0);
    return bad;
}

/* A file system that refuses the alignment of direct writes (EINVAL from the
 * direct part, by fault injection): the big record goes through the page
 * cache instead, and direct I/O is not tried again. */
static void test_direct_refused(void)
{
    char dir[300], path[400];
    uint8_t *a = big_buf(), *b = big_buf();
    struct faults f = {.io = SV_SEG_IO_DIRECT, .err = EINVAL};
    struct sv_seg_opts opts = {.fault = inject, .fault_arg = &f};
    const size_t sizes[] = {100, 1u << 20, 1u << 20};
    subdir(dir, sizeof dir, "direct-refused");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 3; i++)
        CHECK_RC(put_i(s, i, sizes[i], a), 0);
    int fd = -1;
    seg_path(path, sizeof path, dir, 1);
    if ((fd = open(path, O_RDONLY | O_DIRECT)) >= 0) { /* else: never asked */
        close(fd);
        CHECK(f.seen == 1);
        long long from = 2 * SV_SEG_HEADER_BYTES + 100, to = from + (1 << 20);
        CHECK(cached_pages(path, from + 4096, to - 4096) > 0); /* written buffered */
    }
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < 3; i++)
        CHECK_RC(check_i(s, i, sizes[i], a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

/* A compaction whose copies fail to write (ENOSPC on the second of its
 * batched writes; the 101st read failing in a second try) changes nothing
 * readable; the store goes on, and a later compaction completes. */
static void test_compact_fails(void)
{
    char dir[300];
    uint8_t *a = big_buf(), *b = big_buf();
    struct faults f = {0};
    struct sv_seg_opts opts = {.fault = inject, .fault_arg = &f}; /* 64 MiB segments */
    const uint32_t n = 3000;
    subdir(dir, sizeof dir, "compact-fails");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    /* segment 1: 2,000 records of 6 KiB (a third of them dead below) and a
     * 60 MiB filler that dies, so the copies take two batched writes */
    for (uint32_t i = 0; i < 2000; i++)
        CHECK_RC(put_i(s, i, 6000, a), 0);
    for (uint32_t i = 0; i < 60; i++)
        CHECK_RC(put_i(s, 5000 + i, 1u << 20, a), 0);
    for (uint32_t i = 2000; i < n; i++) /* segment 2: the active one */
        CHECK_RC(put_i(s, i, 6000, a), 0);
    delete_ids(s, 5000, 5060, 1);
    delete_ids(s, 0, 2000, 3);
    CHECK_RC(sv_seg_sync(s), 0);
    struct sv_seg_stats st0, st1;
    sv_seg_stats(s, &st0);
    CHECK(st0.segments == 2);

    uint64_t reclaimed = 99;
    f = (struct faults){.io = SV_SEG_IO_WRITE, .err = ENOSPC, .after = 1};
    CHECK_RC(sv_seg_compact(s, 0.5, &reclaimed), -ENOSPC);
    CHECK(reclaimed == 0 && f.after == 0);
    f = (struct faults){.io = SV_SEG_IO_READ, .err = EIO, .after = 100}; /* 100 copies queued */
    CHECK_RC(sv_seg_compact(s, 0.5, &reclaimed), -EIO);
    f = (struct faults){0};
    sv_seg_stats(s, &st1);
    CHECK(st1.live_records == st0.live_records && st1.live_bytes == st0.live_bytes);
    CHECK(wrong_thirds(s, n, a, b) == 0);
    CHECK_RC(put_i(s, n, 6000, a), 0); /* usable */
    CHECK_RC(sv_seg_compact(s, 0.5, &reclaimed), 0);
    CHECK(reclaimed > 60u << 20);
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    CHECK(wrong_thirds(s, n + 1, a, b) == 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    free(a);
    free(b);
}

static void test_batch(void)
{
    enum { N = 40, M = 12 };
    char dir[300];
    uint8_t *bufs[N + M], *a = big_buf(), *b = big_buf();
    struct faults f = {0};
    struct sv_seg_opts opts = {.segment_bytes = 16 * 1024, .fault = inject, .fault_arg = &f};
    for (uint32_t i = 0; i < N + M; i++) {
        bufs[i] = malloc(size_of(i));
        CHECK(bufs[i] != NULL);
        if (!bufs[i])
            return;
    }
    subdir(dir, sizeof dir, "batch");
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    uint8_t id[SV_SEG_ID_BYTES];
    struct sv_seg_stats st0, st1;
    sv_seg_stats(s, &st0);
    sv_seg_batch_begin(s);
    for (uint32_t i = 0; i < N / 2; i++)
        CHECK_RC(put_i(s, i, size_of(i), bufs[i]), 0);
    make_id(id, 5);
    CHECK_RC(sv_seg_delete(s, id), 0);            /* a queued put deleted in its batch */
    CHECK_RC(check_i(s, 3, size_of(3), a, b), 0); /* a get writes what is queued */
    for (uint32_t i = N / 2; i < N; i++)
        CHECK_RC(put_i(s, i, size_of(i), bufs[i]), 0);
    CHECK_RC(put_i(s, 7, size_of(N), bufs[N]), 0); /* replaced in its batch: pattern 7 again */
    CHECK_RC(sv_seg_batch_end(s), 0);
    sv_seg_stats(s, &st1);
    CHECK(st1.segments > st0.segments + 2);
    CHECK(st1.live_records == N - 1);
    for (uint32_t i = 0; i < N; i++)
        CHECK_RC(check_i(s, i, i == 7 ? size_of(N) : size_of(i), a, b),
                 i == 5 ? SV_SEG_E_NOT_FOUND : 0);
    CHECK_RC(sv_seg_sync(s), 0);

    /* The second vectored write of a batch fails. */
    sv_seg_batch_begin(s);
    for (uint32_t i = N; i < N + M; i++)
        CHECK_RC(put_i(s, 100 + i, size_of(i), bufs[i]), 0);
    f = (struct faults){.io = SV_SEG_IO_WRITE, .err = ENOSPC, .after = 1};
    CHECK_RC(sv_seg_batch_end(s), -ENOSPC);
    f.err = 0;
    CHECK(strstr(sv_seg_errmsg(s), "discarded") != NULL);
    for (uint32_t i = N; i < N + M; i++)
        CHECK_RC(check_i(s, 100 + i, size_of(i), a, b), SV_SEG_E_NOT_FOUND);
    struct sv_seg_stats st2;
    sv_seg_stats(s, &st2);
    CHECK(st2.live_records == N - 1);
    sv_seg_batch_begin(s);
    CHECK_RC(put_i(s, 1000, size_of(0), bufs[0]), 0);
    CHECK_RC(sv_seg_batch_end(s), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    CHECK_RC(check_i(s, 1000, size_of(0), a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);

    /* Reopened: the batch's puts are all there (records of the failed batch
     * that reached the file before the failure may be redone; they are whole). */
    s = open_store(dir, &opts);
    if (s == NULL)
        goto out;
    for (uint32_t i = 0; i < N; i++)
        CHECK_RC(check_i(s, i, i == 7 ? size_of(N) : size_of(i), a, b),
                 i == 5 ? SV_SEG_E_NOT_FOUND : 0);
    for (uint32_t i = N; i < N + M; i++) {
        int rc = check_i(s, 100 + i, size_of(i), a, b);
        CHECK(rc == 0 || rc == SV_SEG_E_NOT_FOUND);
    }
    CHECK_RC(check_i(s, 1000, size_of(0), a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
out:
    for (uint32_t i = 0; i < N + M; i++)
        free(bufs[i]);
    free(a);
    free(b);
}

/* Real ENOSPC on a 1 MiB tmpfs (segments only; the index is a symlink to a
 * directory on the normal filesystem). Runs in a child with its own mount
 * namespace; needs root. Exit 0 pass, 1 fail, 77 skipped. */
static int enospc_tmpfs_child(void)
{
    char mnt[300], dir[400], idx[300], link[500];
    long failures_before = sv_check_failures();
    uint8_t *a = big_buf(), *b = big_buf();
    const size_t len = 60 * 1024;
    subdir(mnt, sizeof mnt, "tmpfs");
    subdir(idx, sizeof idx, "tmpfs-index");
    if (mkdir(mnt, 0700) < 0 || mkdir(idx, 0700) < 0)
        return 1;
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("svtest", mnt, "tmpfs", 0, "size=1m") < 0) {
        printf("    (cannot mount a tmpfs: %s)\n", strerror(errno));
        return 77;
    }
    snprintf(dir, sizeof dir, "%s/store", mnt);
    snprintf(link, sizeof link, "%s/index", dir);
    if (mkdir(dir, 0700) < 0 || symlink(idx, link) < 0)
        return 1;
    struct sv_seg_opts opts = {.segment_bytes = 256 * 1024};
    struct sv_seg_store *s = open_store(dir, &opts);
    if (s == NULL)
        return 1;
    uint32_t stored = 0;
    int rc = 0;
    for (uint32_t i = 0; i < 100; i++) {
        rc = put_i(s, i, len, a);
        if (rc != 0)
            break;
        CHECK_RC(sv_seg_sync(s), 0);
        stored++;
    }
    printf("    %u records of %zu bytes fit, then: %s\n", stored, len, sv_seg_errmsg(s));
    CHECK_RC(rc, -ENOSPC);
    CHECK(stored >= 8 && stored < 20);
    CHECK_RC(check_i(s, stored, len, a, b), SV_SEG_E_NOT_FOUND);
    for (uint32_t i = 0; i < stored; i++)
        CHECK_RC(check_i(s, i, len, a, b), 0);
    /* still usable: sync works, deleting and compacting frees room */
    CHECK_RC(sv_seg_sync(s), 0);
    for (uint32_t i = 0; i < 8; i++) {
        uint8_t id[SV_SEG_ID_BYTES];
        make_id(id, i);
        CHECK_RC(sv_seg_delete(s, id), 0);
    }
    uint64_t reclaimed = 0;
    CHECK_RC(sv_seg_compact(s, 0.9, &reclaimed), 0);
    CHECK(reclaimed > 0);
    CHECK_RC(put_i(s, 1000, len, a), 0);
    CHECK_RC(sv_seg_sync(s), 0);
    CHECK_RC(sv_seg_close(s), 0);
    s = open_store(dir, &opts);
    if (s == NULL)
        return 1;
    for (uint32_t i = 8; i < stored; i++)
        CHECK_RC(check_i(s, i, len, a, b), 0);
    CHECK_RC(check_i(s, 1000, len, a, b), 0);
    CHECK_RC(sv_seg_close(s), 0);
    free(a);
    free(b);
    return sv_check_failures() > failures_before ? 1 : 0;
}

static void test_enospc_tmpfs(void)
{
    if (geteuid() != 0) {
        sv_test_skip("real ENOSPC on a tmpfs needs root (the injected ENOSPC test ran)");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int code = enospc_tmpfs_child();
        fflush(NULL);
        _exit(code);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        sv_test_skip("could not mount a tmpfs (the injected ENOSPC test ran)");
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- runner ---- */

static int set_up(void)
{
    snprintf(root, sizeof root, "%s/segstore-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    return 0;
}

static void tear_down(void)
{
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const struct sv_test tests[] = {
    {"round-trip 0 B, 1 B, 1 MiB, max", test_round_trip},
    {"big records around the page cache, crash, reopen", test_big_direct},
    {"direct writes refused: buffered from then on", test_direct_refused},
    {"not found, too big, bad options", test_limits},
    {"600 records across many segments, reopen", test_many_segments},
    {"close syncs, reopen keeps puts and deletes", test_reopen_close_syncs},
    {"torn last record is cut on open", test_torn_tail},
    {"garbage after the last record is cut on open", test_garbage_tail},
    {"process crash: synced kept, unsynced redone", test_process_crash},
    {"flipped byte -> CORRUPT, bad list, repair", test_corrupt_payload},
    {"delete by id prefix: unsynced, many, bad list, reopen", test_delete_prefix},
    {"delete + compact reclaims segments", test_compact},
    {"compaction in two steps, a failed unlink, files a crash left", test_compact_two_steps},
    {"compaction within a copy budget", test_compact_budget},
    {"lost index is rebuilt from the segments", test_index_rebuild},
    {"ENOSPC by fault injection (write, fsync)", test_enospc_injected},
    {"batches: queued puts, spanning segments, a failed write", test_batch},
    {"a compaction whose writes or reads fail changes nothing", test_compact_fails},
    {"ENOSPC on a 1 MiB tmpfs", test_enospc_tmpfs},
};

const struct sv_test_suite sv_test_suite = {
    .name = "segstore-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
};
