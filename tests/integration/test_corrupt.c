/* Integration: a flipped byte in a segment file of the replica that serves
 * reads is detected (GCM tag / record CRC), the read is answered from a
 * healthy replica, and the bad copy is repaired. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct it_cluster cl_;

/* Flip one byte in the middle of the payload of the first record in each
 * segment file of node id; returns how many files were changed. */
static int flip_segments(int id)
{
    char dir[700], path[1024];
    snprintf(dir, sizeof dir, "%s/node%d/data/chunks", cl_.dir, id);
    DIR *d = opendir(dir);
    int changed = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "seg-", 4))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDWR);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) || st.st_size < 64 + 1000) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        /* Every record of this test is about 1 MiB: hit the first one's payload. */
        off_t off = 64 + 500;
        uint8_t b;
        if (pread(fd, &b, 1, off) == 1) {
            b ^= 0x5a;
            if (pwrite(fd, &b, 1, off) == 1)
                changed++;
        }
        close(fd);
    }
    if (d)
        closedir(d);
    return changed;
}

/* ---- runner ---- */

static struct sv_client *client_;

static int set_up(void)
{
    it_up(&cl_, it_bin_dir(), "corrupt", 3, 3, 17300);
    client_ = it_client(&cl_, 30000);
    return 0;
}

static void tear_down(void)
{
    sv_client_close(client_);
    it_down(&cl_);
}

static void test_repaired(void)
{
    struct sv_client *c = client_;
    size_t size = 1 << 20;
    uint8_t *data = malloc(size);
    it_fill(data, size, 99);
    CHECK_RC(sv_client_put(c, "bits", "victim", data, size, SV_IF_ANY, NULL), SV_OK);
    uint64_t reps[16];
    size_t n;
    uint64_t leader = it_leader_of(&cl_, c, "bits", "victim", reps, &n);
    CHECK(leader != 0);
    /* The leader serves linearizable reads: corrupt its copy. */
    sleep(2); /* applied and synced everywhere */
    CHECK(flip_segments((int)leader) >= 1);
    void *back = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "bits", "victim", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == size && back && !memcmp(back, data, size));
    free(back);
    CHECK(it_log_has(&cl_, (int)leader, "repairing from a replica"));
    CHECK(it_log_has(&cl_, (int)leader, "chunk repaired from a replica"));
    /* Counted on the node that repaired its copy, and nowhere else. */
    for (int id = 1; id <= cl_.nodes; id++) {
        char *m = NULL;
        CHECK(it_http_get(it_metrics_port(&cl_, id), "/metrics", &m) == 200);
        double want = id == (int)leader ? 1 : 0;
        CHECK(m && it_metric(m, "sv_repairs_total{result=\"ok\"}") == want);
        CHECK(m && it_metric_sum(m, "sv_repairs_total{") == want);
        free(m);
    }
    /* Read again: served from the repaired copy, no new repair needed. */
    back = NULL;
    CHECK_RC(sv_client_get(c, "bits", "victim", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == size && back && !memcmp(back, data, size));
    free(back);
    int repairs =
        it_sh("test $(grep -c -F 'chunk repaired from a replica' '%s/node%d/svd.log') -eq 1",
              cl_.dir, (int)leader);
    CHECK(repairs == 0);
    free(data);
}

static const struct sv_test tests[] = {
    {"flipped byte repaired", test_repaired},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-corrupt",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
};
