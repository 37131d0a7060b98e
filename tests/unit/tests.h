/* Prototypes of the unit tests listed in tests.def. */
#ifndef SV_UNIT_TESTS_H
#define SV_UNIT_TESTS_H

#define TEST_CASE(name) void test_##name(void);
#include "tests.def"
#undef TEST_CASE

#endif
