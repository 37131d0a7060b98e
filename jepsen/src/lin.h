/* Linearizability checker for register histories: Wing & Gong search with Lowe's memoization. */
#ifndef SV_JEPSEN_LIN_H
#define SV_JEPSEN_LIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LIN_OPS_MAX = 1 << 15,    /* operations on one key in one history */
    LIN_CACHE_MAX = 1 << 20,  /* memoized (linearized set, state) pairs per key */
    LIN_STEPS_MAX = 50000000, /* search steps per key before giving up */
};

enum lin_kind {
    LIN_PUT = 1, /* arg: value written */
    LIN_GET,     /* out: value read */
    LIN_CAS,     /* arg: expected, arg2: new value, out: 1 swapped / 0 not */
};

/* One operation on one key. Times are logical and strictly ordered: op A
 * precedes op B in real time iff A.ret < B.call. */
struct lin_op {
    uint32_t key;
    uint8_t kind; /* enum lin_kind */
    bool done;    /* true: completed with `out`; false: indeterminate (info):
                     may or may not have taken effect, after call */
    uint64_t arg;
    uint64_t arg2;
    uint64_t out;
    uint64_t call;
    uint64_t ret; /* when !done: 0 = no bound, else a deadline: if the op
                     took effect at all, it did before ret */
};

enum lin_verdict {
    LIN_OK = 0,
    LIN_VIOLATION = 1, /* no linearization exists for report->key */
    LIN_UNKNOWN = 2,   /* search limits reached on report->key */
};

struct lin_report {
    uint32_t key;      /* first key that failed (VIOLATION or UNKNOWN) */
    size_t n_ops;      /* operations on that key that were searched */
    uint64_t explored; /* search steps over all keys */
};

/* Check the history ops[0..n) (any order, any number of keys; every key starts
 * at value `init`). Each key is checked on its own (P-compositionality).
 * Indeterminate GETs carry no information and are ignored, and so are
 * indeterminate PUTs and CASes whose value no op observes (the verdict is the
 * same; see prune_unobserved in lin.c). Returns an
 * enum lin_verdict, or -1 if memory ran out. ops is borrowed. */
int sv__lin_check(const struct lin_op *ops, size_t n, uint64_t init, struct lin_report *report);

#endif
