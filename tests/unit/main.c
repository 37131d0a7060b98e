/* raft-unit: runs the Raft unit tests (all, one by --run NAME, or lists them with --list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

struct test_case {
    const char *name;
    void (*fn)(void);
};

static const struct test_case cases[] = {
#define TEST_CASE(name) {#name, test_##name},
#include "tests.def"
#undef TEST_CASE
};
enum { N_CASES = sizeof(cases) / sizeof(cases[0]) };

static jmp_buf fail_jump;
static const char *current;
static struct {
    void (*fn)(void *);
    void *arg;
} defers[TEST_DEFER_MAX];
static int n_defers;

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: %s: FAIL: ", file, line, current != NULL ? current : "?");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    longjmp(fail_jump, 1);
}

void test_log(const char *fmt, ...)
{
    va_list ap;
    printf("  [%s] ", current != NULL ? current : "?");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

void test_defer(void (*fn)(void *), void *arg)
{
    if (n_defers == TEST_DEFER_MAX) {
        fn(arg);
        test_fail(__FILE__, __LINE__, "more than %d deferred cleanups", TEST_DEFER_MAX);
    }
    defers[n_defers].fn = fn;
    defers[n_defers].arg = arg;
    n_defers++;
}

void test_undefer(void (*fn)(void *), void *arg)
{
    for (int i = n_defers - 1; i >= 0; i--) {
        if (defers[i].fn == fn && defers[i].arg == arg) {
            memmove(&defers[i], &defers[i + 1], (size_t)(n_defers - i - 1) * sizeof(defers[0]));
            n_defers--;
            return;
        }
    }
}

static void run_defers(void)
{
    while (n_defers > 0) {
        n_defers--;
        defers[n_defers].fn(defers[n_defers].arg);
    }
}

/* Returns 1 when the test passed. */
static int run_one(const struct test_case *tc)
{
    volatile int passed = 0;
    current = tc->name;
    n_defers = 0;
    if (setjmp(fail_jump) == 0) {
        tc->fn();
        passed = 1;
    }
    run_defers();
    printf("%s %s\n", passed ? "PASS" : "FAIL", tc->name);
    fflush(stdout);
    current = NULL;
    return passed;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: raft-unit [--list] [--run NAME] [--bugs MASK]\n"
               "  --list       list the tests\n"
               "  --run NAME   run one test (default: all)\n"
               "  --bugs MASK  deliberate defects (SV_RAFT_BUG_* bits; raft-unit-bugs only)\n"
               "  -h, --help   show this help\n");
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--list") == 0) {
            for (int k = 0; k < N_CASES; k++) {
                printf("%s\n", cases[k].name);
            }
            return 0;
        } else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--bugs") == 0 && i + 1 < argc) {
            h_bugs = (uint32_t)strtoul(argv[++i], NULL, 0);
        } else {
            usage(stderr);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int ran = 0;
    int failed = 0;
    for (int k = 0; k < N_CASES; k++) {
        if (only != NULL && strcmp(only, cases[k].name) != 0) {
            continue;
        }
        ran++;
        failed += !run_one(&cases[k]);
    }
    if (ran == 0) {
        fprintf(stderr, "raft-unit: no test named %s\n", only != NULL ? only : "");
        return 2;
    }
    printf("%d/%d passed\n", ran - failed, ran);
    return failed == 0 ? 0 : 1;
}
