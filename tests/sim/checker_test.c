/* sim-checker-test: hand-made valid and invalid histories for the linearizability checker. */
#include "lin.h"

#include "check.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HIST_MAX = 4096 };

#define INF 0 /* ret value meaning "indeterminate" in the builders below */

static struct lin_op put(uint32_t key, uint64_t v, uint64_t call, uint64_t ret)
{
    struct lin_op o = {.key = key, .kind = LIN_PUT, .done = ret != INF, .arg = v};
    o.call = call;
    o.ret = ret;
    return o;
}

/* An indeterminate write that, if it took effect, did so before `by`. */
static struct lin_op put_by(uint32_t key, uint64_t v, uint64_t call, uint64_t by)
{
    struct lin_op o = {.key = key, .kind = LIN_PUT, .done = false, .arg = v};
    o.call = call;
    o.ret = by;
    return o;
}

static struct lin_op get(uint32_t key, uint64_t v, uint64_t call, uint64_t ret)
{
    struct lin_op o = {.key = key, .kind = LIN_GET, .done = ret != INF, .out = v};
    o.call = call;
    o.ret = ret;
    return o;
}

static struct lin_op cas(uint32_t key, uint64_t expect, uint64_t v, uint64_t ok, uint64_t call,
                         uint64_t ret)
{
    struct lin_op o = {.key = key, .kind = LIN_CAS, .done = ret != INF, .arg = expect, .arg2 = v};
    o.out = ok;
    o.call = call;
    o.ret = ret;
    return o;
}

static void expect(const char *name, const struct lin_op *ops, size_t n, int want)
{
    struct lin_report rep;
    int got = sv__lin_check(ops, n, 0, &rep);
    CHECK_MSG(got == want, "%s: verdict %d, want %d (key %" PRIu32 ")", name, got, want, rep.key);
    if (sv_test_verbose())
        sv_test_log("%s: verdict %d", name, got);
}

#define EXPECT(name, want, ...)                                                                    \
    do {                                                                                           \
        const struct lin_op ops_[] = {__VA_ARGS__};                                                \
        expect(name, ops_, sizeof(ops_) / sizeof(ops_[0]), want);                                  \
    } while (0)

/* splitmix64, for the generated histories. */
static uint64_t rnd(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A history that is linearizable by construction: ops take effect
 * atomically at distinct points of a sequential run of 3 keys; each op's
 * call and return are spread randomly around its point so that many ops
 * overlap. Some writes are made indeterminate. If `corrupt`, one read
 * is changed to a value never written, which must be caught. */
static size_t gen_history(uint64_t seed, struct lin_op *ops, size_t n, bool corrupt)
{
    uint64_t x = seed;
    uint64_t regs[3] = {0, 0, 0};
    uint64_t next_val = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t point = 1000 + i * 10;
        uint32_t key = (uint32_t)(rnd(&x) % 3);
        struct lin_op *o = &ops[i];
        memset(o, 0, sizeof(*o));
        o->key = key;
        o->call = point - 1 - rnd(&x) % 40;
        o->ret = point + 1 + rnd(&x) % 40;
        o->done = true;
        uint64_t r = rnd(&x) % 10;
        if (r < 4) {
            o->kind = LIN_PUT;
            o->arg = next_val++;
            regs[key] = o->arg;
            if (rnd(&x) % 8 == 0)
                o->done = false;
        } else if (r < 8) {
            o->kind = LIN_GET;
            o->out = regs[key];
        } else {
            o->kind = LIN_CAS;
            o->arg = rnd(&x) % 2 ? regs[key] : next_val - 1;
            o->arg2 = next_val++;
            o->out = regs[key] == o->arg;
            if (o->out)
                regs[key] = o->arg2;
        }
    }
    if (corrupt) {
        for (size_t i = n / 2; i < n; i++) {
            if (ops[i].kind == LIN_GET) {
                ops[i].out = 999999;
                break;
            }
        }
    }
    return n;
}

static void test_valid(void)
{
    EXPECT("empty", LIN_OK, get(0, 0, 1, 2));
    EXPECT("sequential put/get/cas", LIN_OK, put(0, 1, 1, 2), get(0, 1, 3, 4),
           cas(0, 1, 2, 1, 5, 6), get(0, 2, 7, 8), cas(0, 1, 3, 0, 9, 10), get(0, 2, 11, 12));
    EXPECT("concurrent read sees old or new", LIN_OK, put(0, 1, 1, 10), get(0, 0, 2, 3),
           get(0, 1, 4, 5), put(0, 2, 11, 20));
    EXPECT("concurrent writes any order", LIN_OK, put(0, 1, 1, 10), put(0, 2, 2, 9),
           get(0, 1, 11, 12), get(0, 1, 13, 14));
    EXPECT("read of initial value before write", LIN_OK, get(0, 0, 1, 2), put(0, 5, 3, 4),
           get(0, 5, 5, 6));
    EXPECT("indeterminate write takes effect later", LIN_OK, put(0, 1, 1, INF), get(0, 0, 5, 6),
           get(0, 1, 7, 8));
    EXPECT("indeterminate write never takes effect", LIN_OK, put(0, 1, 1, 2), put(0, 2, 3, INF),
           get(0, 1, 5, 6), get(0, 1, 7, 8));
    EXPECT("indeterminate cas may succeed", LIN_OK, put(0, 1, 1, 2), cas(0, 1, 7, 1, 3, INF),
           get(0, 7, 10, 11));
    EXPECT("bounded indeterminate write takes effect in time", LIN_OK, put_by(0, 1, 1, 6),
           get(0, 0, 2, 3), get(0, 1, 7, 8));
    EXPECT("bounded indeterminate write never takes effect", LIN_OK, put_by(0, 1, 1, 4),
           get(0, 0, 5, 6), get(0, 0, 7, 8));
    EXPECT("indeterminate read is ignored", LIN_OK, put(0, 1, 1, 2), get(0, 42, 3, INF));
    EXPECT("keys are independent", LIN_OK, put(0, 1, 1, 2), put(1, 2, 3, 4), get(0, 1, 5, 6),
           get(1, 2, 7, 8), get(2, 0, 9, 10));
}

static void test_invalid(void)
{
    EXPECT("stale read", LIN_VIOLATION, put(0, 1, 1, 2), put(0, 2, 3, 4), get(0, 1, 5, 6));
    EXPECT("lost write", LIN_VIOLATION, put(0, 1, 1, 2), get(0, 0, 3, 4));
    EXPECT("value never written", LIN_VIOLATION, put(0, 1, 1, 2), get(0, 7, 3, 4));
    EXPECT("bad cas success", LIN_VIOLATION, put(0, 1, 1, 2), cas(0, 2, 3, 1, 3, 4));
    EXPECT("bad cas failure", LIN_VIOLATION, put(0, 1, 1, 2), cas(0, 1, 3, 0, 3, 4));
    EXPECT("cas effect missing", LIN_VIOLATION, put(0, 1, 1, 2), cas(0, 1, 3, 1, 3, 4),
           get(0, 1, 5, 6));
    EXPECT("reads go back in time", LIN_VIOLATION, put(0, 1, 1, 20), get(0, 1, 2, 3),
           get(0, 0, 4, 5));
    EXPECT("indeterminate write undone", LIN_VIOLATION, put(0, 1, 1, INF), get(0, 1, 5, 6),
           get(0, 0, 7, 8));
    EXPECT("bounded indeterminate write takes effect too late", LIN_VIOLATION, put_by(0, 1, 1, 4),
           get(0, 0, 5, 6), get(0, 1, 7, 8));
    EXPECT("write applied twice", LIN_VIOLATION, put(0, 1, 1, 2), put(0, 2, 3, 4), get(0, 1, 5, 6),
           get(0, 2, 7, 8), get(0, 1, 9, 10));
    EXPECT("violation on one key among several", LIN_VIOLATION, put(0, 1, 1, 2), put(1, 2, 3, 4),
           get(0, 1, 5, 6), get(1, 3, 7, 8));
}

/* Large, concurrent, valid by construction; and each with one read corrupted. */
static void test_generated(void)
{
    static struct lin_op gen[HIST_MAX];
    for (uint64_t seed = 1; seed <= 20; seed++) {
        char name[64];
        size_t n = gen_history(seed, gen, 600, false);
        snprintf(name, sizeof(name), "generated valid history %" PRIu64, seed);
        expect(name, gen, n, LIN_OK);
        n = gen_history(seed, gen, 600, true);
        snprintf(name, sizeof(name), "generated corrupted history %" PRIu64, seed);
        expect(name, gen, n, LIN_VIOLATION);
    }
}

static const struct sv_test tests[] = {
    {"valid", test_valid},
    {"invalid", test_invalid},
    {"generated", test_generated},
};

const struct sv_test_suite sv_test_suite = {
    .name = "sim-checker-test",
    SV_TEST_TABLE(tests),
};
