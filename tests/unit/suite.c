/* raft-unit: the Raft unit tests of tests.def for the test runner; --bugs MASK
 * asks for deliberate defects (raft-unit-bugs only). */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

static const struct sv_test tests[] = {
#define TEST_CASE(name) {#name, test_##name},
#include "tests.def"
#undef TEST_CASE
};

static int option(int argc, char **argv, int i)
{
    if (strcmp(argv[i], "--bugs") != 0)
        return 0;
    if (i + 1 >= argc)
        return -1;
    h_bugs = (uint32_t)strtoul(argv[i + 1], NULL, 0);
    return 2;
}

/* A failed check ends its test: the scenarios' later steps assume the earlier ones held. */
const struct sv_test_suite sv_test_suite = {
    .name = "raft-unit",
    SV_TEST_TABLE(tests),
    .option = option,
    .usage = "  --bugs MASK  deliberate defects (SV_RAFT_BUG_* bits; raft-unit-bugs only)\n",
    .stop_at_failure = true,
};
