/* sv-bench: throughput and latency of a running ShardVault cluster through
 * libshardvault: small puts from many concurrent clients, then large puts
 * and gets. Prints figures and their ratio to the floors of issue 3. */
#define _GNU_SOURCE
#include <shardvault/client.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { LAT_MAX = 1 << 22 };

static const double FLOOR_SMALL_OPS = 3000.0; /* small puts/s */
static const double FLOOR_LARGE_MBS = 100.0;  /* MB/s for large puts */

struct opts {
    const char *endpoints, *ca;
    int clients;
    double seconds;
    size_t small_size;
    size_t large_mib;
    int large_count;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct opts o_;
static struct sv_client *client_;
static atomic_uint_fast64_t ops_, errs_;
static uint32_t *lat_us_; /* latencies of completed ops */
static atomic_uint_fast64_t n_lat_;
static uint64_t end_us_;

static void *small_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char key[64];
    uint8_t *val = malloc(o_.small_size);
    memset(val, id, o_.small_size);
    for (uint64_t i = 0; now_us() < end_us_; i++) {
        snprintf(key, sizeof key, "c%d-%" PRIu64, id, i);
        uint64_t t0 = now_us();
        int rc = sv_client_put(client_, "bench", key, val, o_.small_size, SV_IF_ANY, NULL);
        uint64_t dt = now_us() - t0;
        if (rc) {
            if (atomic_fetch_add(&errs_, 1) < 3)
                fprintf(stderr, "sv-bench: put: %s: %s\n", sv_client_strerror(rc),
                        sv_client_errmsg());
            continue;
        }
        atomic_fetch_add(&ops_, 1);
        uint64_t k = atomic_fetch_add(&n_lat_, 1);
        if (k < LAT_MAX)
            lat_us_[k] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
    }
    free(val);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

struct gen {
    uint64_t left;
    uint8_t seed;
};

static int64_t gen_read(void *arg, void *buf, size_t cap)
{
    struct gen *g = arg;
    size_t n = g->left < cap ? (size_t)g->left : cap;
    memset(buf, g->seed, n);
    g->left -= n;
    return (int64_t)n;
}

static int discard(void *arg, const void *buf, size_t len)
{
    (void)buf;
    *(uint64_t *)arg += len;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: sv-bench [--endpoints E] [--ca FILE] [--clients N] [--seconds S]\n"
          "                [--small-size BYTES] [--large-mib M] [--large-count K]\n"
          "Small puts (default 1 KiB, 32 clients, 10 s), then K large puts and gets of M MiB\n"
          "(default 3 x 64 MiB), against a running cluster (endpoints and CA default to\n"
          "SV_ENDPOINTS and SV_CA: eval \"$(./deploy/cluster env)\" first).\n",
          f);
}

int main(int argc, char **argv)
{
    o_.endpoints = getenv("SV_ENDPOINTS");
    o_.ca = getenv("SV_CA");
    o_.clients = 32;
    o_.seconds = 10;
    o_.small_size = 1024;
    o_.large_mib = 64;
    o_.large_count = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "sv-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--endpoints"))
            o_.endpoints = v;
        else if (!strcmp(a, "--ca"))
            o_.ca = v;
        else if (!strcmp(a, "--clients"))
            o_.clients = atoi(v);
        else if (!strcmp(a, "--seconds"))
            o_.seconds = atof(v);
        else if (!strcmp(a, "--small-size"))
            o_.small_size = (size_t)atol(v);
        else if (!strcmp(a, "--large-mib"))
            o_.large_mib = (size_t)atol(v);
        else if (!strcmp(a, "--large-count"))
            o_.large_count = atoi(v);
        else {
            fprintf(stderr, "sv-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o_.endpoints || !o_.ca || o_.clients < 1 || o_.clients > 1024 || o_.seconds <= 0 ||
        o_.small_size < 1 || o_.small_size > (1 << 20) || o_.large_count < 0) {
        fprintf(stderr, "sv-bench: need --endpoints and --ca (or SV_ENDPOINTS/SV_CA) and sane "
                        "values\n");
        usage(stderr);
        return 2;
    }
    struct sv_client_options co = {.endpoints = o_.endpoints, .ca_file = o_.ca};
    int rc = sv_client_open(&co, &client_);
    if (rc) {
        fprintf(stderr, "sv-bench: %s: %s\n", sv_client_strerror(rc), sv_client_errmsg());
        return 1;
    }
    /* Warm up: the map and connections. */
    if ((rc = sv_client_put(client_, "bench", "warmup", "x", 1, SV_IF_ANY, NULL))) {
        fprintf(stderr, "sv-bench: warm-up put: %s: %s\n", sv_client_strerror(rc),
                sv_client_errmsg());
        return 1;
    }
    lat_us_ = malloc(LAT_MAX * sizeof *lat_us_);
    pthread_t *t = calloc((size_t)o_.clients, sizeof *t);
    uint64_t t0 = now_us();
    end_us_ = t0 + (uint64_t)(o_.seconds * 1e6);
    for (int i = 0; i < o_.clients; i++)
        pthread_create(&t[i], NULL, small_worker, (void *)(intptr_t)i);
    for (int i = 0; i < o_.clients; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(now_us() - t0) / 1e6;
    uint64_t n = atomic_load(&n_lat_) < LAT_MAX ? atomic_load(&n_lat_) : LAT_MAX;
    qsort(lat_us_, n, sizeof *lat_us_, cmp_u32);
    double ops = (double)atomic_load(&ops_) / secs;
    printf("small puts: %zu B x %d clients, %.1f s: %" PRIu64 " ok, %" PRIu64
           " failed, %.0f ops/s, p50 %.2f ms, p99 %.2f ms (floor %.0f ops/s: ratio %.2f)\n",
           o_.small_size, o_.clients, secs, (uint64_t)atomic_load(&ops_),
           (uint64_t)atomic_load(&errs_), ops, n ? lat_us_[n / 2] / 1e3 : 0.0,
           n ? lat_us_[n * 99 / 100] / 1e3 : 0.0, FLOOR_SMALL_OPS, ops / FLOOR_SMALL_OPS);
    free(t);
    free(lat_us_);
    double put_mbs = 0, get_mbs = 0;
    int failed = atomic_load(&errs_) > 0;
    for (int i = 0; i < o_.large_count; i++) {
        char key[32];
        snprintf(key, sizeof key, "large-%d", i);
        uint64_t size = (uint64_t)o_.large_mib << 20;
        struct gen g = {size, (uint8_t)i};
        uint64_t a = now_us();
        rc = sv_client_put_stream(client_, "bench", key, (int64_t)size, SV_IF_ANY, NULL, gen_read,
                                  &g);
        uint64_t b = now_us();
        uint64_t got = 0;
        int rc2 =
            rc ? rc
               : sv_client_get_stream(client_, "bench", key, SV_LINEARIZABLE, NULL, discard, &got);
        uint64_t e = now_us();
        if (rc || rc2 || got != size) {
            fprintf(stderr, "sv-bench: large %s: %s: %s\n", rc ? "put" : "get",
                    sv_client_strerror(rc ? rc : rc2), sv_client_errmsg());
            failed = 1;
            break;
        }
        double p = (double)size / (double)(b - a), q = (double)size / (double)(e - b);
        printf("large object %d: %zu MiB put %.1f MB/s, get %.1f MB/s\n", i, o_.large_mib, p, q);
        put_mbs += p / o_.large_count;
        get_mbs += q / o_.large_count;
    }
    if (o_.large_count && !failed)
        printf("large puts: mean %.1f MB/s (floor %.0f MB/s: ratio %.2f); large gets: mean %.1f "
               "MB/s\n",
               put_mbs, FLOOR_LARGE_MBS, put_mbs / FLOOR_LARGE_MBS, get_mbs);
    sv_client_close(client_);
    return failed ? 1 : 0;
}
