/* Integration: when the nodes' disks fill up, writes fail with a clear
 * "no space" error and nothing acknowledged before is lost. Each node's data
 * directory is a small tmpfs, so this test needs root (skipped otherwise). */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#ifndef SV_SOURCE_DIR
#error "SV_SOURCE_DIR must be defined"
#endif

static struct it_cluster cl_;

static void unmount_all(void)
{
    for (int i = 1; i <= cl_.nodes; i++)
        it_sh("umount '%s/node%d/data' 2>/dev/null", cl_.dir, i);
}

/* ---- runner ---- */

static struct sv_client *client_;

/* The cluster, moved onto one tmpfs per node. */
static int set_up(void)
{
    const char *bin = it_bin_dir();
    if (geteuid() != 0 || it_sh("command -v mount >/dev/null") != 0) {
        printf("skipped: needs root to give each node a small tmpfs as its disk\n");
        return IT_SKIP;
    }
    it_up(&cl_, bin, "diskfull", 3, 3, 17500);
    /* Move every node onto a 192 MiB tmpfs. */
    CHECK(it_sh("'%s/deploy/cluster' down --dir '%s' >&2", SV_SOURCE_DIR, cl_.dir) == 0);
    for (int i = 1; i <= cl_.nodes; i++) {
        CHECK(it_sh("cd '%s/node%d' && mv data data.orig && mkdir data && "
                    "mount -t tmpfs -o size=192m,mode=0700 tmpfs data && cp -a data.orig/. data/ "
                    "&& rm -rf data.orig",
                    cl_.dir, i) == 0);
    }
    if (it_sh("'%s/deploy/cluster' up --bin '%s' --dir '%s' >&2", SV_SOURCE_DIR, cl_.bin,
              cl_.dir)) {
        CHECK(!"cluster restarted on tmpfs");
        unmount_all();
        it_down(&cl_);
        return 1;
    }
    client_ = it_client(&cl_, 30000);
    return 0;
}

static void tear_down(void)
{
    sv_client_close(client_);
    it_sh("'%s/deploy/cluster' down --dir '%s' >&2", SV_SOURCE_DIR, cl_.dir);
    if (getenv("SV_IT_KEEP"))
        it_sh("mkdir -p '%s/logs' && cp '%s'/node*/svd.log '%s/logs/'", cl_.dir, cl_.dir, cl_.dir);
    unmount_all();
    it_down(&cl_);
}

static void test_disk_full(void)
{
    struct sv_client *c = client_;
    size_t size = 1 << 20;
    uint8_t *data = malloc(size);
    int acked = 0, rc = SV_OK;
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "fill-%03d", i);
        it_fill(data, size, (uint64_t)i);
        rc = sv_client_put(c, "full", key, data, size, SV_IF_ANY, NULL);
        if (rc != SV_OK)
            break;
        acked++;
    }
    fprintf(stderr, "%d MiB acknowledged, then: %s (%s)\n", acked, sv_client_strerror(rc),
            sv_client_errmsg());
    CHECK_RC(rc, SV_E_NO_SPACE);
    CHECK(strstr(sv_client_errmsg(), "disk full") != NULL);
    CHECK(acked >= 1);
    /* Everything acknowledged is still there and intact. */
    int bad = 0;
    for (int i = 0; i < acked; i++) {
        snprintf(key, sizeof key, "fill-%03d", i);
        it_fill(data, size, (uint64_t)i);
        void *d = NULL;
        size_t len = 0;
        if (sv_client_get(c, "full", key, SV_LINEARIZABLE, &d, &len, NULL) != SV_OK ||
            len != size || memcmp(d, data, size))
            bad++;
        free(d);
    }
    CHECK(bad == 0);
    /* Every node is still up (none died on ENOSPC). */
    for (int i = 1; i <= cl_.nodes; i++)
        CHECK(kill(it_pid(&cl_, i), 0) == 0);
    free(data);
}

static const struct sv_test tests[] = {
    {"disk full", test_disk_full},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-diskfull",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
};
