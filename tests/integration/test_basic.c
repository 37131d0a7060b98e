/* Integration: object round trips (0 B .. 200 MiB, SHA-256 compared),
 * versions and conditional puts, delete, list, stat, stale reads, reads
 * racing overwrites of the same key, and no plaintext of a stored object
 * anywhere under the data directories. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

static struct it_cluster cl_;

/* A generated object of `size` bytes streamed without holding it. */
struct gen {
    uint64_t size, done, seed;
    EVP_MD_CTX *md;
};

static int64_t gen_read(void *arg, void *buf, size_t cap)
{
    struct gen *g = arg;
    size_t n = g->size - g->done < cap ? (size_t)(g->size - g->done) : cap;
    /* Content depends on the offset only, so reads of any size agree. */
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = g->done + i;
        p[i] = (uint8_t)((off * 2654435761u) >> 13 ^ g->seed ^ off >> 20);
    }
    EVP_DigestUpdate(g->md, buf, n);
    g->done += n;
    return (int64_t)n;
}

struct sink {
    uint64_t got;
    EVP_MD_CTX *md;
};

static int sink_write(void *arg, const void *buf, size_t len)
{
    struct sink *s = arg;
    EVP_DigestUpdate(s->md, buf, len);
    s->got += len;
    return 0;
}

static void round_trip(struct sv_client *c, const char *key, size_t size)
{
    uint8_t *data = malloc(size ? size : 1), md[32];
    it_fill(data, size, size + 7);
    it_sha256(data, size, md);
    uint64_t v = 0;
    CHECK_RC(sv_client_put(c, "rt", key, data, size, SV_IF_ANY, &v), SV_OK);
    CHECK(v >= 1);
    void *back = NULL;
    size_t len = 0;
    struct sv_stat st;
    CHECK_RC(sv_client_get(c, "rt", key, SV_LINEARIZABLE, &back, &len, &st), SV_OK);
    CHECK(len == size);
    CHECK(back && !memcmp(back, data, size));
    CHECK(st.size == size && st.version == v && !memcmp(st.sha256, md, 32));
    free(back);
    free(data);
    fprintf(stderr, "round trip %zu bytes: ok\n", size);
}

static void big_round_trip(struct sv_client *c, uint64_t size)
{
    struct gen g = {.size = size, .seed = 42, .md = EVP_MD_CTX_new()};
    EVP_DigestInit_ex(g.md, EVP_sha256(), NULL);
    uint64_t t0 = it_now_ms(), v = 0;
    CHECK_RC(sv_client_put_stream(c, "rt", "big", (int64_t)size, SV_IF_ANY, &v, gen_read, &g),
             SV_OK);
    uint64_t t1 = it_now_ms();
    uint8_t want[32], got[32];
    unsigned n;
    EVP_DigestFinal_ex(g.md, want, &n);
    struct sink s = {.md = EVP_MD_CTX_new()};
    EVP_DigestInit_ex(s.md, EVP_sha256(), NULL);
    struct sv_stat st;
    CHECK_RC(sv_client_get_stream(c, "rt", "big", SV_LINEARIZABLE, &st, sink_write, &s), SV_OK);
    uint64_t t2 = it_now_ms();
    EVP_DigestFinal_ex(s.md, got, &n);
    CHECK(s.got == size && st.size == size);
    CHECK(!memcmp(want, got, 32) && !memcmp(st.sha256, want, 32));
    fprintf(stderr, "round trip %" PRIu64 " MiB streamed: put %.1f MB/s, get %.1f MB/s\n",
            size >> 20, size / 1e3 / (double)(t1 - t0 + 1), size / 1e3 / (double)(t2 - t1 + 1));
    EVP_MD_CTX_free(g.md);
    EVP_MD_CTX_free(s.md);
}

static void versions_and_conditions(struct sv_client *c)
{
    uint64_t v1 = 0, v2 = 0, v = 0;
    CHECK_RC(sv_client_put(c, "cas", "k", "a", 1, SV_IF_ABSENT, &v1), SV_OK);
    CHECK_RC(sv_client_put(c, "cas", "k", "b", 1, SV_IF_ABSENT, &v), SV_E_VERSION_CONFLICT);
    CHECK_RC(sv_client_put(c, "cas", "k", "c", 1, (int64_t)v1 + 5, &v), SV_E_VERSION_CONFLICT);
    CHECK_RC(sv_client_put(c, "cas", "k", "d", 1, (int64_t)v1, &v2), SV_OK);
    CHECK(v2 == v1 + 1);
    void *d = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "cas", "k", SV_LINEARIZABLE, &d, &len, NULL), SV_OK);
    CHECK(len == 1 && d && ((char *)d)[0] == 'd');
    free(d);
    CHECK_RC(sv_client_delete(c, "cas", "k", (int64_t)v1, &v), SV_E_VERSION_CONFLICT);
    CHECK_RC(sv_client_delete(c, "cas", "k", (int64_t)v2, &v), SV_OK);
    CHECK(v == v2);
    struct sv_stat st;
    CHECK_RC(sv_client_stat(c, "cas", "k", SV_LINEARIZABLE, &st), SV_E_NOT_FOUND);
    CHECK_RC(sv_client_delete(c, "cas", "k", SV_IF_ANY, &v), SV_E_NOT_FOUND);
    d = NULL;
    CHECK_RC(sv_client_get(c, "cas", "k", SV_LINEARIZABLE, &d, &len, NULL), SV_E_NOT_FOUND);
    free(d);
    /* Versions keep growing across a delete. */
    CHECK_RC(sv_client_put(c, "cas", "k", "e", 1, SV_IF_ABSENT, &v), SV_OK);
    CHECK(v == v2 + 1);
    /* Stale reads eventually see it too. */
    int seen = 0;
    for (int i = 0; i < 50 && !seen; i++) {
        if (sv_client_stat(c, "cas", "k", SV_STALE, &st) == SV_OK && st.version == v)
            seen = 1;
        else
            usleep(100 * 1000);
    }
    CHECK(seen);
}

static void listing(struct sv_client *c)
{
    char key[64];
    for (int i = 0; i < 120; i++) {
        snprintf(key, sizeof key, "%s/%03d", i % 2 ? "odd" : "even", i);
        CHECK_RC(sv_client_put(c, "lst", key, key, strlen(key), SV_IF_ANY, NULL), SV_OK);
    }
    struct sv_list *l = NULL;
    CHECK_RC(sv_client_list(c, "lst", "odd/", NULL, 1000, SV_LINEARIZABLE, &l), SV_OK);
    CHECK(l && l->n == 60 && !l->more);
    for (size_t i = 1; l && i < l->n; i++)
        CHECK(strcmp(l->entries[i - 1].key, l->entries[i].key) < 0);
    sv_client_list_free(l);
    /* Pages of 25 cover everything exactly once, in order. */
    char after[64] = "";
    size_t total = 0;
    for (int page = 0; page < 10; page++) {
        l = NULL;
        CHECK_RC(sv_client_list(c, "lst", "", after, 25, SV_LINEARIZABLE, &l), SV_OK);
        if (!l)
            break;
        for (size_t i = 0; i < l->n; i++)
            CHECK(strcmp(l->entries[i].key, after) > 0);
        total += l->n;
        if (l->n)
            snprintf(after, sizeof after, "%s", l->entries[l->n - 1].key);
        bool more = l->more;
        sv_client_list_free(l);
        if (!more)
            break;
    }
    CHECK(total == 120);
}

/* No plaintext under the data directories: a distinctive text stored in an
 * object must not appear in any file. */
static void no_plaintext(struct sv_client *c)
{
    static const char canary[] = "SHARDVAULT-PLAINTEXT-CANARY-7c1e5a";
    size_t size = 3 << 20;
    char *data = malloc(size);
    for (size_t i = 0; i < size; i++)
        data[i] = canary[i % (sizeof canary - 1)];
    CHECK_RC(sv_client_put(c, "secret", "small", canary, sizeof canary - 1, SV_IF_ANY, NULL),
             SV_OK);
    CHECK_RC(sv_client_put(c, "secret", "large", data, size, SV_IF_ANY, NULL), SV_OK);
    free(data);
    sleep(2); /* chunk segments are synced at least once a second */
    int rc = it_sh("grep -r -l -a -F '%s' '%s'/node*/data >&2", canary, cl_.dir);
    CHECK(rc == 1); /* grep: 1 = no match anywhere */
    /* The canary is really in the object (the check above can fail). */
    void *back = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(c, "secret", "small", SV_LINEARIZABLE, &back, &len, NULL), SV_OK);
    CHECK(len == sizeof canary - 1 && back && !memcmp(back, canary, len));
    free(back);
}

/* Reads racing overwrites of one key. Every object written is 64 KiB of
 * it_fill(seed) with the seed in its first 8 bytes; a read must return a
 * whole object that was written, never an error (the Jepsen register run
 * once saw a read answered "corrupt": the node read the object's record,
 * then an overwrite deleted the old chunk before the node read it). */
enum { RACE_BYTES = 64 << 10, RACE_WRITERS = 2, RACE_READERS = 4, RACE_MS = 4000 };

struct racer {
    struct sv_client *c;
    int id;
    uint64_t ops, errors, torn;
    int last_err;
};

static void *race_writer(void *arg)
{
    struct racer *r = arg;
    uint8_t *buf = malloc(RACE_BYTES);
    uint64_t end = it_now_ms() + RACE_MS;
    for (uint64_t i = 1; buf && it_now_ms() < end; i++) {
        uint64_t seed = (uint64_t)r->id << 32 | i;
        it_fill(buf, RACE_BYTES, seed);
        memcpy(buf, &seed, sizeof seed);
        int rc = sv_client_put(r->c, "race", "k", buf, RACE_BYTES, SV_IF_ANY, NULL);
        r->ops++;
        if (rc)
            r->errors++, r->last_err = rc;
    }
    free(buf);
    return NULL;
}

static void *race_reader(void *arg)
{
    struct racer *r = arg;
    uint8_t *want = malloc(RACE_BYTES);
    uint64_t end = it_now_ms() + RACE_MS;
    while (want && it_now_ms() < end) {
        void *got = NULL;
        size_t len = 0;
        int rc = sv_client_get(r->c, "race", "k", r->ops % 2 ? SV_STALE : SV_LINEARIZABLE, &got,
                               &len, NULL);
        r->ops++;
        if (rc) {
            r->errors++, r->last_err = rc;
            continue;
        }
        uint64_t seed = 0;
        if (len == RACE_BYTES)
            memcpy(&seed, got, sizeof seed);
        it_fill(want, RACE_BYTES, seed);
        memcpy(want, &seed, sizeof seed);
        if (len != RACE_BYTES || memcmp(got, want, RACE_BYTES))
            r->torn++;
        free(got);
    }
    free(want);
    return NULL;
}

static void overwrite_while_reading(struct sv_client *c)
{
    uint8_t first[RACE_BYTES];
    uint64_t seed = 0;
    it_fill(first, sizeof first, seed);
    memcpy(first, &seed, sizeof seed);
    CHECK_RC(sv_client_put(c, "race", "k", first, sizeof first, SV_IF_ANY, NULL), SV_OK);
    struct racer rs[RACE_WRITERS + RACE_READERS];
    pthread_t th[RACE_WRITERS + RACE_READERS];
    for (int i = 0; i < RACE_WRITERS + RACE_READERS; i++) {
        rs[i] = (struct racer){.c = c, .id = i + 1};
        CHECK(pthread_create(&th[i], NULL, i < RACE_WRITERS ? race_writer : race_reader, &rs[i]) ==
              0);
    }
    uint64_t writes = 0, reads = 0;
    for (int i = 0; i < RACE_WRITERS + RACE_READERS; i++) {
        pthread_join(th[i], NULL);
        CHECK_RC(rs[i].last_err, SV_OK);
        CHECK(rs[i].errors == 0 && rs[i].torn == 0);
        *(i < RACE_WRITERS ? &writes : &reads) += rs[i].ops;
    }
    printf("race: %" PRIu64 " overwrites, %" PRIu64 " reads\n", writes, reads);
    CHECK(writes > 20 && reads > 20);
}

/* ---- runner: one cluster and one client for every test, in this order ---- */

static struct sv_client *client_;

static int set_up(void)
{
    it_up(&cl_, it_bin_dir(), "basic", 3, 3, 17100);
    client_ = it_client(&cl_, 30000);
    return 0;
}

static void tear_down(void)
{
    sv_client_close(client_);
    it_down(&cl_);
}

static void test_round_trips(void)
{
    round_trip(client_, "empty", 0);
    round_trip(client_, "one", 1);
    round_trip(client_, "mib", 1 << 20);
    round_trip(client_, "mib1", (1 << 20) + 1);
    round_trip(client_, "five", 5 << 20);
    big_round_trip(client_, 200ull << 20);
}

static void test_versions(void)
{
    versions_and_conditions(client_);
}

static void test_list(void)
{
    listing(client_);
}

static void test_overwrites(void)
{
    overwrite_while_reading(client_);
}

static void test_no_plaintext(void)
{
    no_plaintext(client_);
}

static const struct sv_test tests[] = {
    {"round trips", test_round_trips},
    {"versions", test_versions},
    {"list", test_list},
    {"reads racing overwrites", test_overwrites},
    {"no plaintext", test_no_plaintext},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-basic",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
