/* The one test runner: main() of every test program, over its sv_test_suite (check.h). */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct sv_test_suite *suite;
static pthread_t main_thread;
static bool verbose;

/* The running test; read by the alarm handler and by checks on other threads. */
static _Atomic(const char *) current;
static jmp_buf end_test;
static volatile bool in_test; /* end_test is set */
static bool skipped;

/* Checks may run on helper threads. */
static atomic_long checks;
static atomic_long failures;      /* in the whole program */
static atomic_long test_failures; /* in the running test */

static struct {
    void (*fn)(void *);
    void *arg;
} defers[SV_TEST_DEFER_MAX];
static int n_defers;

static bool on_main_thread(void)
{
    return pthread_equal(pthread_self(), main_thread);
}

static const char *name_or_dash(void)
{
    const char *name = atomic_load(&current);
    return name != NULL ? name : "-";
}

void sv_check_count(void)
{
    atomic_fetch_add(&checks, 1);
}

static void vfail(const char *file, int line, const char *fmt, va_list ap)
{
    long shown = atomic_fetch_add(&test_failures, 1);
    atomic_fetch_add(&failures, 1);
    if (shown < SV_CHECK_SHOWN_MAX) {
        /* One call, so that lines of different threads do not mix. */
        char what[1024];
        vsnprintf(what, sizeof(what), fmt, ap);
        fprintf(stderr, "%s:%d: %s: FAIL: %s\n", file, line, name_or_dash(), what);
    } else if (shown == SV_CHECK_SHOWN_MAX) {
        fprintf(stderr, "%s: further failures not shown\n", name_or_dash());
    }
}

void sv_check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(file, line, fmt, ap);
    va_end(ap);
    if (suite->stop_at_failure && in_test && on_main_thread())
        longjmp(end_test, 1);
}

long sv_check_failures(void)
{
    return atomic_load(&failures);
}

void sv_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(file, line, fmt, ap);
    va_end(ap);
    ASSERT(in_test && on_main_thread());
    longjmp(end_test, 1);
}

void sv_test_skip(const char *fmt, ...)
{
    va_list ap;
    printf("  [%s] skipped: ", name_or_dash());
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    skipped = true;
}

void sv_test_log(const char *fmt, ...)
{
    va_list ap;
    printf("  [%s] ", name_or_dash());
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

const char *sv_test_name(void)
{
    return atomic_load(&current);
}

bool sv_test_verbose(void)
{
    return verbose;
}

void sv_test_defer(void (*fn)(void *), void *arg)
{
    if (n_defers == SV_TEST_DEFER_MAX) {
        fn(arg);
        sv_test_fail(__FILE__, __LINE__, "more than %d deferred cleanups", SV_TEST_DEFER_MAX);
    }
    defers[n_defers].fn = fn;
    defers[n_defers].arg = arg;
    n_defers++;
}

void sv_test_undefer(void (*fn)(void *), void *arg)
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

static void on_alarm(int sig)
{
    (void)sig;
    /* Only async-signal-safe calls here. */
    static const char pre[] = "FAIL ", post[] = ": timed out (blocked?)\n";
    const char *name = name_or_dash();
    bool ok = write(STDERR_FILENO, pre, sizeof(pre) - 1) >= 0 &&
              write(STDERR_FILENO, name, strlen(name)) >= 0 &&
              write(STDERR_FILENO, post, sizeof(post) - 1) >= 0;
    _exit(ok ? 1 : 2);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What run() runs: a test, the set-up (its result in *rc) or the tear-down. */
struct step {
    const char *name;
    void (*fn)(void);
    int (*set_up)(void);
    int *rc;
    bool is_test; /* a test must check something; set-up and tear-down need not */
};

/* Runs one step; prints its line and returns whether it passed. */
static bool run(const struct step *s)
{
    current = s->name;
    skipped = false;
    n_defers = 0;
    atomic_store(&test_failures, 0);
    long before = atomic_load(&checks);
    uint64_t t0 = now_ms();
    alarm(suite->timeout_s);
    if (setjmp(end_test) == 0) {
        in_test = true;
        if (s->set_up != NULL)
            *s->rc = s->set_up();
        else
            s->fn();
    }
    in_test = false;
    run_defers();
    alarm(0);
    long n = atomic_load(&checks) - before;
    long failed = atomic_load(&test_failures);
    unsigned long long ms = (unsigned long long)(now_ms() - t0);
    bool passed = failed == 0 && (n > 0 || skipped || !s->is_test);
    if (failed > 0)
        printf("FAIL %-24s %ld of %ld checks failed (%llu ms)\n", s->name, failed, n, ms);
    else if (!passed)
        printf("FAIL %-24s no check ran (%llu ms)\n", s->name, ms);
    else if (skipped)
        printf("skip %-24s %ld checks (%llu ms)\n", s->name, n, ms);
    else if (s->is_test || n > 0 || verbose)
        printf("ok   %-24s %ld checks (%llu ms)\n", s->name, n, ms);
    fflush(stdout);
    current = NULL;
    return passed;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [OPTION]... [TEST]...\n"
            "  TEST         run this test (default: all); may be repeated\n"
            "  --run TEST   the same\n"
            "  --list       list the tests\n"
            "  -v           more output\n"
            "  -h, --help   show this help\n",
            suite->name);
    if (suite->usage != NULL)
        fputs(suite->usage, f);
    if (suite->ordered)
        fprintf(f, "Each test builds on the ones before it: a selected test runs them too.\n");
}

static const struct sv_test *find(const char *name)
{
    for (size_t i = 0; i < suite->n_tests; i++)
        if (strcmp(suite->tests[i].name, name) == 0)
            return &suite->tests[i];
    return NULL;
}

/* Marks in selected[] the tests argv asks for (all by default). Returns -1
 * to go on, or the exit status (--help, --list, a usage error). */
static int parse_args(int argc, char **argv, bool *selected)
{
    bool any = false;
    for (int i = 1; i < argc; i++) {
        int took = suite->option != NULL ? suite->option(argc, argv, i) : 0;
        if (took < 0) {
            usage(stderr);
            return 2;
        }
        if (took > 0) {
            i += took - 1;
            continue;
        }
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--list") == 0) {
            for (size_t k = 0; k < suite->n_tests; k++)
                printf("%s\n", suite->tests[k].name);
            return 0;
        } else if (strcmp(a, "-v") == 0) {
            verbose = true;
            continue;
        } else if (strcmp(a, "--run") == 0 && i + 1 < argc) {
            a = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "%s: unknown option '%s'\n", suite->name, a);
            usage(stderr);
            return 2;
        }
        const struct sv_test *t = find(a);
        if (t == NULL) {
            fprintf(stderr, "%s: no test named '%s' (--list lists them)\n", suite->name, a);
            return 2;
        }
        selected[t - suite->tests] = true;
        any = true;
    }
    if (!any) {
        for (size_t k = 0; k < suite->n_tests; k++)
            selected[k] = true;
    } else if (suite->ordered) {
        bool later = false;
        for (size_t k = suite->n_tests; k-- > 0;)
            selected[k] = later = later || selected[k];
    }
    return -1;
}

/* Set-up, the selected tests, tear-down; returns the exit status. */
static int run_suite(const bool *selected)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (suite->timeout_s > 0)
        signal(SIGALRM, on_alarm);
    int failed = 0, ran = 0;
    bool fixtures_ok = true;
    if (suite->set_up != NULL) {
        int rc = 0;
        fixtures_ok = run(&(struct step){.name = "set-up", .set_up = suite->set_up, .rc = &rc});
        if (rc == SV_TEST_SKIP) {
            printf("%s: skipped\n", suite->name);
            return SV_TEST_SKIP;
        }
        if (rc != 0) {
            printf("%s: set-up failed (%d), no test ran\n", suite->name, rc);
            return 1;
        }
    }
    for (size_t k = 0; k < suite->n_tests; k++) {
        if (!selected[k])
            continue;
        ran++;
        const struct sv_test *t = &suite->tests[k];
        failed += !run(&(struct step){.name = t->name, .fn = t->fn, .is_test = true});
    }
    if (suite->tear_down != NULL)
        fixtures_ok &= run(&(struct step){.name = "tear-down", .fn = suite->tear_down});
    printf("%s: %d tests, %d failed%s, %ld checks\n", suite->name, ran, failed,
           fixtures_ok ? "" : " (and set-up or tear-down)", (long)atomic_load(&checks));
    return failed == 0 && fixtures_ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    suite = &sv_test_suite;
    main_thread = pthread_self();
    ASSERT(suite->name != NULL && suite->tests != NULL && suite->n_tests > 0);
    for (size_t i = 0; i < suite->n_tests; i++) {
        ASSERT(suite->tests[i].name != NULL && suite->tests[i].fn != NULL);
        ASSERT(find(suite->tests[i].name) == &suite->tests[i]); /* names are unique */
    }
    bool *selected = calloc(suite->n_tests, sizeof(*selected));
    ASSERT(selected != NULL);
    int status = parse_args(argc, argv, selected);
    if (status < 0)
        status = run_suite(selected);
    free(selected);
    return status;
}
