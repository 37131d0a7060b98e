/* ASSERT for node/ and the tests (tests/common/check.h includes this file):
 * programmer errors crash, in release builds too (STYLE.md rule 8).
 * raft/ keeps its own copy: it depends on nothing of ours. */
#ifndef SV_ASSERT_H
#define SV_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
