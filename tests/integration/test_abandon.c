/* Integration: abandoned uploads. A chunked upload whose client dies is never
 * visible and is removed by the shard leader once upload_ttl_s has passed
 * since its last chunk (deploy/cluster up --upload-ttl); a slow upload that
 * keeps sending chunks outlives the TTL and completes. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TTL_S = 3, MIB = 1 << 20 };

static struct it_cluster cl_;

/* Read callback: `size` bytes of it_fill(seed); after `pause_after` bytes it
 * tells the parent through `pipe_fd` and blocks for good (the parent kills
 * the process), or sleeps `slow_ms` before every MiB when slow_ms > 0. */
struct feed {
    uint64_t seed;
    size_t size, off, pause_after;
    int pipe_fd;
    unsigned slow_ms;
    uint8_t *all;
};

static int64_t feed_read(void *arg, void *buf, size_t cap)
{
    struct feed *f = arg;
    if (f->pause_after && f->off >= f->pause_after) {
        if (write(f->pipe_fd, "x", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    if (f->off == f->size)
        return 0;
    if (f->slow_ms && f->off % MIB == 0)
        usleep(f->slow_ms * 1000u);
    size_t n = f->size - f->off;
    if (n > cap)
        n = cap;
    if (f->off % MIB + n > MIB)
        n = MIB - f->off % MIB;
    memcpy(buf, f->all + f->off, n);
    f->off += n;
    return (int64_t)n;
}

/* ---- runner: one cluster, one client and one buffer for every test, in this order ---- */

static struct sv_client *client_;
static uint8_t *data_; /* DATA_BYTES of it_fill(7) */
enum { DATA_BYTES = 10 * MIB };

static int set_up(void)
{
    char opts[64];
    snprintf(opts, sizeof opts, "--upload-ttl %d", TTL_S);
    it_up_opts(&cl_, it_bin_dir(), "abandon", 3, 3, 17700, opts);
    client_ = it_client(&cl_, 30000);
    data_ = malloc(DATA_BYTES);
    it_fill(data_, DATA_BYTES, 7);
    return 0;
}

static void tear_down(void)
{
    free(data_);
    sv_client_close(client_);
    it_down(&cl_);
}

static void test_stored_before(void)
{
    CHECK_RC(sv_client_put(client_, "ab", "kept", data_, MIB, SV_IF_ANY, NULL), SV_OK);
}

static void test_slow_upload(void)
{
    struct feed f = {.size = 9 * MIB, .slow_ms = 1000, .all = data_};
    /* A 3 s deadline: the 9 s the producer takes must not count (the
     * nodes answer each chunk at once). */
    struct sv_client *quick = it_client(&cl_, 3000);
    CHECK_RC(
        sv_client_put_stream(quick, "ab", "slow", (int64_t)f.size, SV_IF_ANY, NULL, feed_read, &f),
        SV_OK);
    sv_client_close(quick);
    /* The upload took longer than the TTL plus one scan period (5 s) of
     * the leader (9 chunks, a second apart): counted from its BEGIN, it
     * would have been removed. */
    void *back = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(client_, "ab", "slow", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == f.size && back && !memcmp(back, data_, len));
    free(back);
}

static void test_client_dies(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        struct sv_client *cc = it_client(&cl_, 60000);
        struct feed f = {.size = DATA_BYTES, .pause_after = 4 * MIB, .pipe_fd = p[1], .all = data_};
        sv_client_put_stream(cc, "ab", "orphan", (int64_t)DATA_BYTES, SV_IF_ANY, NULL, feed_read,
                             &f);
        _exit(4); /* never reached: the read callback blocks until the kill */
    }
    close(p[1]);
    char x;
    CHECK(read(p[0], &x, 1) == 1);
    sleep(1); /* the chunks sent so far are committed */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(p[0]);

    struct sv_stat st;
    CHECK_RC(sv_client_stat(client_, "ab", "orphan", SV_LINEARIZABLE, &st), SV_E_NOT_FOUND);
    uint64_t deadline = it_now_ms() + 60000;
    while (!it_log_has(&cl_, 0, "removing abandoned upload") && it_now_ms() < deadline)
        sleep(1);
    CHECK(it_log_has(&cl_, 0, "removing abandoned upload"));
}

static void test_after_cleanup(void)
{
    struct sv_stat st;
    CHECK_RC(sv_client_stat(client_, "ab", "orphan", SV_LINEARIZABLE, &st), SV_E_NOT_FOUND);
    CHECK_RC(sv_client_put(client_, "ab", "orphan", data_ + MIB, 2 * MIB, SV_IF_ABSENT, NULL),
             SV_OK);
    void *back = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(client_, "ab", "orphan", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == 2 * MIB && back && !memcmp(back, data_ + MIB, len));
    free(back);
    back = NULL;
    CHECK_RC(sv_client_get(client_, "ab", "kept", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == MIB && back && !memcmp(back, data_, len));
    free(back);
}

static const struct sv_test tests[] = {
    {"an object stored before", test_stored_before},
    {"a slow upload outlives the TTL", test_slow_upload},
    {"the client dies mid-upload", test_client_dies},
    {"after the cleanup", test_after_cleanup},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-abandon",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
