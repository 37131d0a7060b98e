/* The history.jsonl reader shared by sv-check and sv-report: a strict JSON reader and the
 * operation events of register and set histories, paired into operations. */
#ifndef SV_JEPSEN_HISTORY_H
#define SV_JEPSEN_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    HIST_LINE_BYTES_MAX = 16 << 20, /* one JSON line (a set read of many elements) */
    HIST_EVENTS_MAX = 1 << 21,      /* lines (invocations and completions) in one history */
    HIST_KEYS_MAX = 1 << 16,        /* distinct keys */
    HIST_VALUES_MAX = 1 << 21,      /* distinct register values interned */
    HIST_ERRORS_MAX = 1024,         /* distinct "error" texts kept (more are counted) */
    HIST_NEST_MAX = 32,             /* nesting depth of ignored fields' values */
    HIST_MSG_MAX = 256,
};
_Static_assert(HIST_VALUES_MAX < UINT32_MAX, "interned ids fit 32 bits");
_Static_assert(HIST_EVENTS_MAX < UINT32_MAX, "line numbers fit 32 bits");

/* ---- A strict JSON reader over one buffer ---- */

enum json_scalar_kind { JSON_NULL, JSON_INT, JSON_STR };

struct json_scalar {
    enum json_scalar_kind kind;
    int64_t i;
    const char *s; /* JSON_STR: decoded bytes in the scratch buffer */
    size_t len;
};

/* A cursor over [start, end). Decoded strings go to `scratch`, which must hold
 * at least twice (end - start) bytes: a decoded string is never longer than its
 * JSON text, even when a value is decoded twice. */
struct json {
    const char *start, *p, *end;
    bool multiline; /* errors say "line L column C" instead of "column C" */
    char *scratch;
    size_t scratch_len;
    char msg[HIST_MSG_MAX];
};

/* Sets j->msg to `what` at the cursor's position; returns -EINVAL. */
int sv__json_fail(struct json *j, const char *what);
/* Skips JSON whitespace. */
void sv__json_skip_ws(struct json *j);
/* Consumes `c` (after whitespace) if it is next. */
bool sv__json_eat(struct json *j, char c);
/* Consumes the literal `w` (after whitespace) if it is next. */
bool sv__json_eat_word(struct json *j, const char *w);
/* A string, decoded into the scratch buffer (*s points there). */
int sv__json_string(struct json *j, const char **s, size_t *len);
/* A number; *is_int when it has no fraction or exponent (then *out is its value). */
int sv__json_number(struct json *j, bool *is_int, int64_t *out);
/* null, an integer or a string. */
int sv__json_scalar(struct json *j, struct json_scalar *v);
/* Any JSON value, checked (at most HIST_NEST_MAX deep) and skipped. */
int sv__json_skip(struct json *j);
/* After a line's top-level value: only white space may follow. 0 or -EINVAL
 * (message in j). */
int sv__json_end(struct json *j);

/* ---- Histories ---- */

enum hist_type { EV_INVOKE, EV_OK, EV_FAIL, EV_INFO };
enum hist_f { F_READ = 1, F_WRITE, F_CAS, F_ADD };
enum hist_kind { HIST_REGISTER, HIST_SET };

extern const char *const sv__hist_type_names[]; /* by enum hist_type */
extern const char *const sv__hist_f_names[];    /* by enum hist_f */
extern const char *const sv__hist_kind_names[]; /* by enum hist_kind: register, set */

/* One line of the history. Register value ids: 0 = null, else interned. */
struct event {
    int64_t process;
    int64_t time;
    uint32_t line;
    uint8_t type;     /* enum hist_type */
    uint8_t f;        /* enum hist_f */
    bool is_array;    /* "value" was a JSON array (a set read) */
    bool corrupt;     /* its "error" starts with "corrupt" (kept even when the text is not) */
    uint32_t key;     /* interned key id (1-based) */
    uint32_t v1;      /* write: value; read: value read; cas: expected */
    uint32_t v2;      /* cas: new value */
    uint32_t err;     /* "error" text id in hist.errors; 0 = none or not kept */
    uint32_t n_elems; /* set read: elements in "value" */
    int64_t elem;     /* add: the element */
};

/* Interned JSON scalars: an int and a string with the same text differ. */
struct intern {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *off; /* entry i (id i + 1): [tag][bytes], length in len[i] */
    uint32_t *len;
    size_t n, cap, max;
    uint32_t *slots; /* id, 0 = empty */
    size_t n_slots;
};

/* A growable list of set elements (the owner frees v). */
struct elems {
    int64_t *v;
    size_t n, cap;
};

/* The ok set reads, summarised while reading (so that a set history's
 * memory grows with its distinct elements, not with reads times elements). */
struct hist_set {
    struct elems seen;       /* sorted, distinct: in any ok read */
    struct elems seen_last;  /* by seen's index: the latest completion time of an ok read
                                holding that element (sv-check --open) */
    struct elems duplicated; /* appeared twice in one ok read (may repeat) */
    struct elems final;      /* sorted, distinct: the last ok read's elements */
    size_t final_ev;         /* its completion: index in hist.ev */
    bool has_final;
    struct elems read, merged, merged_last; /* scratch */
};

/* One operation: an invocation and its completion (NULL: never completed). */
struct hist_op {
    const struct event *inv;
    const struct event *done;
};

struct hist {
    enum hist_kind kind; /* register for an empty history */
    struct event *ev;    /* in file order */
    size_t n, cap;
    struct intern keys;
    struct intern values;
    struct intern errors;
    size_t errors_dropped; /* events whose error text was not kept (past HIST_ERRORS_MAX) */
    struct hist_set set;   /* when kind is HIST_SET */
    struct hist_op *ops;   /* in invocation order (file order) */
    size_t n_ops;
    size_t count[4]; /* events by enum hist_type */
    int64_t time_max;
    int64_t process_min, process_max;
};

/* Reads the history from `in` into *h (zeroed by the caller), decides its
 * kind from the f values and pairs each invocation with the next completion
 * of its process. Returns 0, or -ENOMEM / -errno / -EINVAL with "line N: ..."
 * in msg. *h owns all its memory (free with sv__hist_free) either way. */
int sv__hist_read(FILE *in, struct hist *h, char *msg, size_t msg_len);
/* Frees everything *h owns and zeroes it. */
void sv__hist_free(struct hist *h);

/* Appends x to l. Returns 0 or -ENOMEM. */
int sv__elems_push(struct elems *l, int64_t x);
/* Sorts l and drops repeats. */
void sv__elems_unique(struct elems *l);
/* Whether sorted l holds x. */
bool sv__elems_has(const struct elems *l, int64_t x);

/* Entry `id` of t: its bytes and whether it is an integer. Borrowed from t. */
const char *sv__intern_bytes(const struct intern *t, uint32_t id, size_t *len, bool *is_int);
/* Writes entry `id` of t as JSON. */
void sv__intern_print(const struct intern *t, uint32_t id, FILE *out);

#endif
