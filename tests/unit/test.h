/* A tiny unit-test framework: CHECK macros that fail the running test and deferred cleanups. */
#ifndef SV_TEST_H
#define SV_TEST_H

#include <inttypes.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define TEST_PRINTF(fmt_arg, first_arg) __attribute__((format(printf, fmt_arg, first_arg)))
#else
#define TEST_PRINTF(fmt_arg, first_arg)
#endif

/* Report a failed check at file:line and abandon the running test (longjmp to
 * the runner, which then runs the deferred cleanups). Never returns. */
_Noreturn void test_fail(const char *file, int line, const char *fmt, ...) TEST_PRINTF(3, 4);

/* Print an informational line, prefixed with the running test's name. */
void test_log(const char *fmt, ...) TEST_PRINTF(1, 2);

/* Run fn(arg) when the running test ends, passed or failed, in reverse order
 * of registration. At most TEST_DEFER_MAX per test (an overflow fails the test). */
enum { TEST_DEFER_MAX = 16 };
void test_defer(void (*fn)(void *), void *arg);
/* Forget a deferred cleanup (the test released the resource itself). */
void test_undefer(void (*fn)(void *), void *arg);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                     \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                                            \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t check_a_ = (uint64_t)(a);                                                         \
        uint64_t check_b_ = (uint64_t)(b);                                                         \
        if (check_a_ != check_b_) {                                                                \
            test_fail(__FILE__, __LINE__, "CHECK_EQ_U64(%s, %s): %" PRIu64 " != %" PRIu64, #a, #b, \
                      check_a_, check_b_);                                                         \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a);                                                       \
        long long check_b_ = (long long)(b);                                                       \
        if (check_a_ != check_b_) {                                                                \
            test_fail(__FILE__, __LINE__, "CHECK_EQ_INT(%s, %s): %lld != %lld", #a, #b, check_a_,  \
                      check_b_);                                                                   \
        }                                                                                          \
    } while (0)

/* a <= b, both as uint64_t. */
#define CHECK_LE_U64(a, b)                                                                         \
    do {                                                                                           \
        uint64_t check_a_ = (uint64_t)(a);                                                         \
        uint64_t check_b_ = (uint64_t)(b);                                                         \
        if (!(check_a_ <= check_b_)) {                                                             \
            test_fail(__FILE__, __LINE__, "CHECK_LE_U64(%s, %s): %" PRIu64 " > %" PRIu64, #a, #b,  \
                      check_a_, check_b_);                                                         \
        }                                                                                          \
    } while (0)

#endif
