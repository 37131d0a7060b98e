/* The one check header of the tests: CHECK macros, ASSERT, and the interface
 * of the one test runner (tests/common/runner.c, which holds main).
 *
 * A test program defines its tests and one `sv_test_suite`:
 *
 *     static void test_roundtrip(void) { CHECK(...); }
 *     static const struct sv_test tests[] = {
 *         {"roundtrip", test_roundtrip},
 *     };
 *     const struct sv_test_suite sv_test_suite = {
 *         .name = "foo-test",
 *         SV_TEST_TABLE(tests),
 *     };
 *
 * and links svtest. `foo-test --help` lists the runner's options: test names
 * select tests, --list lists them, -v asks for more output.
 *
 * A failed check prints "FILE:LINE: TEST: FAIL: what", counts, and the test
 * goes on (or, in a suite with .stop_at_failure, ends there). A test that
 * made no check and did not call sv_test_skip fails: it proved nothing.
 * Define CHECK_STRERROR(rc) before including this header to have CHECK_RC
 * name error codes. Checks may run on any thread; sv_test_fail and the
 * stop_at_failure mode end the test only on the main thread. */
#ifndef SV_TESTS_CHECK_H
#define SV_TESTS_CHECK_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ASSERT, for programmer errors in test code: the node's one definition. */
#include "../../node/src/sv_assert.h"

#ifndef CHECK_STRERROR
#define CHECK_STRERROR(rc) "?"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SV_TEST_PRINTF(fmt_arg, first_arg) __attribute__((format(printf, fmt_arg, first_arg)))
#else
#define SV_TEST_PRINTF(fmt_arg, first_arg)
#endif

enum {
    SV_TEST_SKIP = 77,      /* exit status of a skipped program (ctest SKIP_RETURN_CODE) */
    SV_TEST_DEFER_MAX = 16, /* deferred cleanups per test */
    SV_CHECK_SHOWN_MAX = 20 /* failures printed per test */
};

/* One test: a name for the command line and the output, and its function. */
struct sv_test {
    const char *name;
    void (*fn)(void);
};

/* What a test program gives the runner. Every member but name and the
 * tests is optional (zero: not used). */
struct sv_test_suite {
    const char *name; /* program name, for messages */
    const struct sv_test *tests;
    size_t n_tests;
    /* Before the first test / after the last one; both may CHECK. set_up
     * returns 0, SV_TEST_SKIP to skip the whole program (exit 77), or any
     * other value to give up (exit 1; set_up cleans up after itself then,
     * tear_down does not run). */
    int (*set_up)(void);
    void (*tear_down)(void);
    /* An option of the program's own at argv[i]: returns how many arguments
     * it took (0: not one of its options, -1: a usage error). Called before
     * the runner looks at the argument. */
    int (*option)(int argc, char **argv, int i);
    const char *usage;    /* lines for --help describing those options */
    unsigned timeout_s;   /* per test, set-up and tear-down: the program fails */
    bool stop_at_failure; /* a failed check ends the running test */
    /* Each test builds on the ones before it: selecting a test by name
     * also runs every test listed before it. */
    bool ordered;
};

#define SV_TEST_TABLE(t) .tests = (t), .n_tests = sizeof(t) / sizeof((t)[0])

/* Defined by each test program. */
extern const struct sv_test_suite sv_test_suite;

/* Count one check (the CHECK macros do). */
void sv_check_count(void);
/* Record a failed check of the running test at file:line. Returns, except
 * in a stop_at_failure suite on the main thread, where it ends the test. */
void sv_check_fail(const char *file, int line, const char *fmt, ...) SV_TEST_PRINTF(3, 4);
/* Failed checks in the whole program so far (a forked child may compare
 * before and after to compute its own exit status). */
long sv_check_failures(void);

/* Record a failure and end the running test now: the runner runs its
 * deferred cleanups and goes on with the next test. Main thread only. */
_Noreturn void sv_test_fail(const char *file, int line, const char *fmt, ...) SV_TEST_PRINTF(3, 4);
/* Mark the running test skipped (e.g. it needs root); say why. It still
 * fails if one of its checks failed. */
void sv_test_skip(const char *fmt, ...) SV_TEST_PRINTF(1, 2);
/* Print an informational line, prefixed with the running test's name. */
void sv_test_log(const char *fmt, ...) SV_TEST_PRINTF(1, 2);
/* Name of the running test ("set-up", "tear-down" around them), or NULL. */
const char *sv_test_name(void);
/* Whether -v was given. */
bool sv_test_verbose(void);
/* Run fn(arg) when the running test ends, passed or failed, in reverse order
 * of registration; at most SV_TEST_DEFER_MAX (an overflow fails the test). */
void sv_test_defer(void (*fn)(void *), void *arg);
/* Forget a deferred cleanup (the test released the resource itself). */
void sv_test_undefer(void (*fn)(void *), void *arg);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        sv_check_count();                                                                          \
        if (!(cond))                                                                               \
            sv_check_fail(__FILE__, __LINE__, "%s", #cond);                                        \
    } while (0)

/* CHECK_MSG(cond, fmt, ...): on failure, print the formatted message. */
#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        sv_check_count();                                                                          \
        if (!(cond))                                                                               \
            sv_check_fail(__FILE__, __LINE__, __VA_ARGS__);                                        \
    } while (0)

/* CHECK_RC(expr, want): expr returns an int error code equal to want. */
#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        int want_ = (want);                                                                        \
        sv_check_count();                                                                          \
        if (rc_ != want_)                                                                          \
            sv_check_fail(__FILE__, __LINE__, "%s = %d (%s), expected %d (%s)", #expr, rc_,        \
                          CHECK_STRERROR(rc_), want_, CHECK_STRERROR(want_));                      \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t check_a_ = (uint64_t)(a);                                                         \
        uint64_t check_b_ = (uint64_t)(b);                                                         \
        sv_check_count();                                                                          \
        if (check_a_ != check_b_)                                                                  \
            sv_check_fail(__FILE__, __LINE__, "CHECK_EQ_U64(%s, %s): %" PRIu64 " != %" PRIu64, #a, \
                          #b, check_a_, check_b_);                                                 \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a);                                                       \
        long long check_b_ = (long long)(b);                                                       \
        sv_check_count();                                                                          \
        if (check_a_ != check_b_)                                                                  \
            sv_check_fail(__FILE__, __LINE__, "CHECK_EQ_INT(%s, %s): %lld != %lld", #a, #b,        \
                          check_a_, check_b_);                                                     \
    } while (0)

/* a <= b, both as uint64_t. */
#define CHECK_LE_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t check_a_ = (uint64_t)(a);                                                         \
        uint64_t check_b_ = (uint64_t)(b);                                                         \
        sv_check_count();                                                                          \
        if (!(check_a_ <= check_b_))                                                               \
            sv_check_fail(__FILE__, __LINE__, "CHECK_LE_U64(%s, %s): %" PRIu64 " > %" PRIu64, #a,  \
                          #b, check_a_, check_b_);                                                 \
    } while (0)

#endif
