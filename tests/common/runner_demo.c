/* sv-runner-demo: tests that pass, fail, check nothing, skip or hang, for
 * runner_test.sh to prove that the runner (runner.c) reports each one right. */
#include "check.h"

#include <pthread.h>
#include <unistd.h>

static void test_pass(void)
{
    CHECK(1 + 1 == 2);
    CHECK_RC(0, 0);
    CHECK_EQ_U64(3, 3);
}

static void test_fail(void)
{
    CHECK(1 + 1 == 3);
    CHECK(1 + 1 == 2);
}

static void test_fail_rc(void)
{
    CHECK_RC(-2, 0);
}

static void test_empty(void)
{
}

static void test_skip(void)
{
    sv_test_skip("the demo skips");
}

static void *fail_on_thread(void *arg)
{
    (void)arg;
    CHECK_MSG(0, "a check failed on a helper thread");
    return NULL;
}

static void test_thread_fail(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_on_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static void test_hang(void)
{
    CHECK(1);
    pause();
}

static const struct sv_test tests[] = {
    {"pass", test_pass},   {"fail", test_fail}, {"fail-rc", test_fail_rc},
    {"empty", test_empty}, {"skip", test_skip}, {"thread-fail", test_thread_fail},
    {"hang", test_hang},
};

const struct sv_test_suite sv_test_suite = {
    .name = "sv-runner-demo",
    SV_TEST_TABLE(tests),
    .timeout_s = 1,
};
