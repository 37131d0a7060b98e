/* Check macros shared by the module tests (tests/client, tests/node): a failed
 * check prints where and why, counts, and the test goes on; main() exits 1
 * when `failures` is not 0. Define CHECK_STRERROR(rc) before including this
 * header to have CHECK_RC name error codes. One test program = one file, so
 * the state below is per program. */
#ifndef SV_TESTS_CHECK_H
#define SV_TESTS_CHECK_H

#include <stdio.h>

#ifndef CHECK_STRERROR
#define CHECK_STRERROR(rc) "?"
#endif

enum { CHECK_SHOWN_MAX = 20 }; /* failures printed per test */

static const char *current; /* name of the running test, or NULL */
static int test_failures;   /* in the current test (reset by the runner) */
static int failures;        /* in the whole program */
static long checks;

static void check_fail(const char *file, int line, const char *what)
{
    if (test_failures < CHECK_SHOWN_MAX)
        fprintf(stderr, "%s:%d: %s: FAIL: %s\n", file, line, current ? current : "-", what);
    else if (test_failures == CHECK_SHOWN_MAX)
        fprintf(stderr, "%s: further failures not shown\n", current ? current : "-");
    test_failures++;
    failures++;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond))                                                                               \
            check_fail(__FILE__, __LINE__, #cond);                                                 \
    } while (0)

/* CHECK_RC(expr, want): expr returns an int error code equal to want. */
#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        int want_ = (want);                                                                        \
        checks++;                                                                                  \
        if (rc_ != want_) {                                                                        \
            char msg_[512];                                                                        \
            snprintf(msg_, sizeof(msg_), "%s = %d (%s), expected %d (%s)", #expr, rc_,             \
                     CHECK_STRERROR(rc_), want_, CHECK_STRERROR(want_));                           \
            check_fail(__FILE__, __LINE__, msg_);                                                  \
        }                                                                                          \
    } while (0)

#endif
