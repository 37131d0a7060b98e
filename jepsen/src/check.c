/* sv-check: checks a register history (history.jsonl) for linearizability with lin.c. */
#define _POSIX_C_SOURCE 200809L

#include "lin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    LINE_BYTES_MAX = 1 << 16, /* one JSON line */
    EVENTS_MAX = 1 << 21,     /* lines (invocations and completions) in one history */
    KEYS_MAX = 1 << 16,       /* distinct keys */
    VALUES_MAX = 1 << 21,     /* distinct values (and distinct keys) interned */
    NEST_MAX = 32,            /* nesting depth of ignored fields' values */
    MSG_MAX = 256,
};
_Static_assert(EVENTS_MAX / 2 <= LIN_OPS_MAX * (size_t)KEYS_MAX, "ops fit the checker");
_Static_assert(VALUES_MAX < UINT32_MAX, "interned ids fit 32 bits");

enum exit_code { EXIT_VALID = 0, EXIT_INVALID = 1, EXIT_BROKEN = 2 };

enum ev_type { EV_INVOKE, EV_OK, EV_FAIL, EV_INFO };
enum ev_f { F_READ = 1, F_WRITE, F_CAS };

static const char *const f_names[] = {[F_READ] = "read", [F_WRITE] = "write", [F_CAS] = "cas"};
static const char *const type_names[] = {
    [EV_INVOKE] = "invoke", [EV_OK] = "ok", [EV_FAIL] = "fail", [EV_INFO] = "info"};

/* One line of the history. Value ids: 0 = null (absent), else interned. */
struct event {
    int64_t process;
    int64_t time;
    uint32_t line;
    uint8_t type; /* enum ev_type */
    uint8_t f;    /* enum ev_f */
    uint32_t key; /* interned key id (1-based) */
    uint32_t v1;  /* write: value; read: value read; cas: expected */
    uint32_t v2;  /* cas: new value */
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

static uint64_t hash_bytes(char tag, const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ (unsigned char)tag;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool intern_eq(const struct intern *t, uint32_t id, char tag, const char *s, size_t len)
{
    const char *e = &t->arena[t->off[id - 1]];
    return t->len[id - 1] == len + 1 && e[0] == tag && memcmp(e + 1, s, len) == 0;
}

static int intern_grow(struct intern *t)
{
    size_t n_slots = t->n_slots ? t->n_slots * 2 : 1024;
    uint32_t *slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->n_slots; i++) {
        uint32_t id = t->slots[i];
        if (id == 0)
            continue;
        const char *e = &t->arena[t->off[id - 1]];
        size_t j = hash_bytes(e[0], e + 1, t->len[id - 1] - 1) & (n_slots - 1);
        while (slots[j] != 0)
            j = (j + 1) & (n_slots - 1);
        slots[j] = id;
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return 0;
}

/* Id (>= 1) of (tag, s), added if new; -ENOMEM, or -ENOSPC past t->max. */
static int64_t intern_get(struct intern *t, char tag, const char *s, size_t len)
{
    if ((t->n + 1) * 2 > t->n_slots && intern_grow(t) != 0)
        return -ENOMEM;
    size_t j = hash_bytes(tag, s, len) & (t->n_slots - 1);
    while (t->slots[j] != 0) {
        if (intern_eq(t, t->slots[j], tag, s, len))
            return t->slots[j];
        j = (j + 1) & (t->n_slots - 1);
    }
    if (t->n >= t->max)
        return -ENOSPC;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        size_t *off = realloc(t->off, cap * sizeof(*off));
        if (off == NULL)
            return -ENOMEM;
        t->off = off;
        uint32_t *lens = realloc(t->len, cap * sizeof(*lens));
        if (lens == NULL)
            return -ENOMEM;
        t->len = lens;
        t->cap = cap;
    }
    while (t->arena_len + len + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap * 2 : 4096;
        char *arena = realloc(t->arena, cap);
        if (arena == NULL)
            return -ENOMEM;
        t->arena = arena;
        t->arena_cap = cap;
    }
    t->off[t->n] = t->arena_len;
    t->len[t->n] = (uint32_t)(len + 1);
    t->arena[t->arena_len] = tag;
    memcpy(&t->arena[t->arena_len + 1], s, len);
    t->arena_len += len + 1;
    t->n++;
    t->slots[j] = (uint32_t)t->n;
    return (int64_t)t->n;
}

static void intern_free(struct intern *t)
{
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->slots);
}

/* Write entry `id` as JSON. */
static void intern_print(const struct intern *t, uint32_t id, FILE *out)
{
    const char *e = &t->arena[t->off[id - 1]];
    size_t len = t->len[id - 1] - 1;
    if (e[0] == 'i') {
        fwrite(e + 1, 1, len, out);
        return;
    }
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)e[1 + i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* ---- A strict JSON reader for one line ---- */

enum scalar_kind { S_NULL, S_INT, S_STR };

struct scalar {
    enum scalar_kind kind;
    int64_t i;
    const char *s; /* S_STR: decoded bytes in the scratch buffer */
    size_t len;
};

struct jp {
    const char *p, *end;
    char *scratch; /* decoded strings; 2 * LINE_BYTES_MAX bytes */
    size_t scratch_len;
    char msg[MSG_MAX];
};

static const char *line_start; /* for column numbers in jp_fail */

static int jp_fail(struct jp *j, const char *what)
{
    snprintf(j->msg, sizeof(j->msg), "%s at column %td", what, j->p - line_start + 1);
    return -EINVAL;
}

static void skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
        j->p++;
}

static bool eat(struct jp *j, char c)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static int hex4(struct jp *j, uint32_t *out)
{
    if (j->end - j->p < 4)
        return jp_fail(j, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return jp_fail(j, "bad \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    j->p += 4;
    *out = v;
    return 0;
}

static void put_utf8(struct jp *j, uint32_t cp)
{
    char *o = &j->scratch[j->scratch_len];
    if (cp < 0x80) {
        o[0] = (char)cp;
        j->scratch_len += 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        j->scratch_len += 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        j->scratch_len += 3;
    } else {
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        j->scratch_len += 4;
    }
}

/* A string at j->p (after whitespace), decoded into the scratch buffer. A
 * decoded string is never longer than its JSON text, so the scratch buffer
 * (twice a line) cannot overflow even when a value is parsed twice. */
static int parse_string(struct jp *j, const char **s, size_t *len)
{
    if (!eat(j, '"'))
        return jp_fail(j, "expected a string");
    size_t start = j->scratch_len;
    for (;;) {
        if (j->p >= j->end)
            return jp_fail(j, "unterminated string");
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            break;
        if (c < 0x20)
            return jp_fail(j, "control character in string");
        if (c != '\\') {
            j->scratch[j->scratch_len++] = (char)c;
            continue;
        }
        if (j->p >= j->end)
            return jp_fail(j, "unterminated string");
        char e = *j->p++;
        uint32_t cp;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            j->scratch[j->scratch_len++] = e;
            break;
        case 'b':
            j->scratch[j->scratch_len++] = '\b';
            break;
        case 'f':
            j->scratch[j->scratch_len++] = '\f';
            break;
        case 'n':
            j->scratch[j->scratch_len++] = '\n';
            break;
        case 'r':
            j->scratch[j->scratch_len++] = '\r';
            break;
        case 't':
            j->scratch[j->scratch_len++] = '\t';
            break;
        case 'u':
            if (hex4(j, &cp) != 0)
                return -EINVAL;
            if (cp >= 0xdc00 && cp < 0xe000)
                return jp_fail(j, "unpaired low surrogate");
            if (cp >= 0xd800 && cp < 0xdc00) {
                uint32_t lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return jp_fail(j, "unpaired high surrogate");
                j->p += 2;
                if (hex4(j, &lo) != 0)
                    return -EINVAL;
                if (lo < 0xdc00 || lo >= 0xe000)
                    return jp_fail(j, "unpaired high surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(j, cp);
            break;
        default:
            return jp_fail(j, "bad escape in string");
        }
    }
    *s = &j->scratch[start];
    *len = j->scratch_len - start;
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A JSON number; *is_int when it has no fraction or exponent (then *out). */
static int parse_number(struct jp *j, bool *is_int, int64_t *out)
{
    skip_ws(j);
    const char *p = j->p;
    bool neg = false;
    if (p < j->end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= j->end || !is_digit(*p))
        return jp_fail(j, "expected a number");
    const char *digits = p;
    if (*p == '0')
        p++;
    else
        while (p < j->end && is_digit(*p))
            p++;
    const char *digits_end = p;
    *is_int = true;
    if (p < j->end && *p == '.') {
        p++;
        if (p >= j->end || !is_digit(*p))
            return jp_fail(j, "bad fraction");
        while (p < j->end && is_digit(*p))
            p++;
        *is_int = false;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || !is_digit(*p))
            return jp_fail(j, "bad exponent");
        while (p < j->end && is_digit(*p))
            p++;
        *is_int = false;
    }
    if (*is_int) {
        /* Accumulate negatively so that INT64_MIN fits. */
        int64_t v = 0;
        for (const char *d = digits; d < digits_end; d++) {
            int dig = *d - '0';
            if (v < (INT64_MIN + dig) / 10)
                return jp_fail(j, "integer out of range");
            v = v * 10 - dig;
        }
        if (!neg) {
            if (v == INT64_MIN)
                return jp_fail(j, "integer out of range");
            v = -v;
        }
        *out = v;
    }
    j->p = p;
    return 0;
}

static bool eat_word(struct jp *j, const char *w)
{
    skip_ws(j);
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, w, n) == 0) {
        j->p += n;
        return true;
    }
    return false;
}

/* null, an integer or a string. */
static int parse_scalar(struct jp *j, struct scalar *v)
{
    skip_ws(j);
    memset(v, 0, sizeof(*v));
    if (eat_word(j, "null")) {
        v->kind = S_NULL;
        return 0;
    }
    if (j->p < j->end && *j->p == '"') {
        v->kind = S_STR;
        return parse_string(j, &v->s, &v->len);
    }
    if (j->p < j->end && (*j->p == '-' || is_digit(*j->p))) {
        bool is_int;
        const char *at = j->p;
        int rc = parse_number(j, &is_int, &v->i);
        if (rc != 0)
            return rc;
        if (!is_int) {
            j->p = at;
            return jp_fail(j, "expected an integer, not a fraction");
        }
        v->kind = S_INT;
        return 0;
    }
    return jp_fail(j, "expected null, an integer or a string");
}

/* Any JSON value, checked and ignored (fields we do not use). */
static int skip_value(struct jp *j, int depth)
{
    if (depth > NEST_MAX)
        return jp_fail(j, "nesting too deep");
    skip_ws(j);
    if (j->p >= j->end)
        return jp_fail(j, "expected a value");
    const char *s;
    size_t len;
    bool is_int;
    int64_t i;
    switch (*j->p) {
    case '"':
        return parse_string(j, &s, &len);
    case '{':
        j->p++;
        if (eat(j, '}'))
            return 0;
        do {
            if (parse_string(j, &s, &len) != 0)
                return -EINVAL;
            if (!eat(j, ':'))
                return jp_fail(j, "expected ':'");
            if (skip_value(j, depth + 1) != 0)
                return -EINVAL;
        } while (eat(j, ','));
        return eat(j, '}') ? 0 : jp_fail(j, "expected ',' or '}'");
    case '[':
        j->p++;
        if (eat(j, ']'))
            return 0;
        do {
            if (skip_value(j, depth + 1) != 0)
                return -EINVAL;
        } while (eat(j, ','));
        return eat(j, ']') ? 0 : jp_fail(j, "expected ',' or ']'");
    default:
        if (eat_word(j, "null") || eat_word(j, "true") || eat_word(j, "false"))
            return 0;
        return parse_number(j, &is_int, &i);
    }
}

/* ---- The history ---- */

struct history {
    struct event *ev;
    size_t n, cap;
    struct intern keys;
    struct intern values;
};

static int intern_scalar(struct history *h, struct intern *t, const struct scalar *v, struct jp *j,
                         uint32_t *id)
{
    char num[32];
    int64_t rc;
    if (v->kind == S_NULL) {
        *id = 0;
        return 0;
    }
    if (v->kind == S_INT) {
        int n = snprintf(num, sizeof(num), "%" PRId64, v->i);
        rc = intern_get(t, 'i', num, (size_t)n);
    } else {
        rc = intern_get(t, 's', v->s, v->len);
    }
    if (rc == -ENOSPC)
        return jp_fail(j, t == &h->keys ? "too many distinct keys" : "too many distinct values");
    if (rc < 0) {
        snprintf(j->msg, sizeof(j->msg), "out of memory");
        return -ENOMEM;
    }
    *id = (uint32_t)rc;
    return 0;
}

enum field {
    FLD_PROCESS = 1 << 0,
    FLD_TYPE = 1 << 1,
    FLD_F = 1 << 2,
    FLD_KEY = 1 << 3,
    FLD_VALUE = 1 << 4,
    FLD_TIME = 1 << 5,
    FLD_ALL = (1 << 6) - 1,
};

static int parse_int_field(struct jp *j, const char *name, int64_t *out)
{
    bool is_int;
    char what[64];
    const char *at = (skip_ws(j), j->p);
    if (j->p >= j->end || !(*j->p == '-' || is_digit(*j->p)) ||
        parse_number(j, &is_int, out) != 0 || !is_int) {
        j->p = at;
        snprintf(what, sizeof(what), "\"%s\" must be an integer", name);
        return jp_fail(j, what);
    }
    return 0;
}

static int parse_enum_field(struct jp *j, const char *name, const char *const *names, int lo,
                            int hi, uint8_t *out)
{
    const char *s;
    size_t len;
    char what[96];
    const char *at = (skip_ws(j), j->p);
    if (parse_string(j, &s, &len) == 0)
        for (int i = lo; i <= hi; i++)
            if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
                *out = (uint8_t)i;
                return 0;
            }
    j->p = at;
    snprintf(what, sizeof(what), "\"%s\" must be one of the strings %s", name,
             lo == EV_INVOKE ? "invoke, ok, fail, info" : "read, write, cas");
    return jp_fail(j, what);
}

/* The "value" field, once type and f are known. */
static int parse_value_field(struct history *h, struct jp *j, struct event *e)
{
    struct scalar a, b;
    bool invoke = e->type == EV_INVOKE;
    skip_ws(j);
    if (e->f == F_CAS && !(j->p < j->end && *j->p == '[')) {
        if (!invoke && eat_word(j, "null"))
            return 0; /* a completion need not repeat the arguments */
        return jp_fail(j, "cas \"value\" must be [expected, new]");
    }
    if (e->f == F_CAS) {
        j->p++;
        if (parse_scalar(j, &a) != 0)
            return -EINVAL;
        if (!eat(j, ','))
            return jp_fail(j, "cas \"value\" must be [expected, new]");
        if (parse_scalar(j, &b) != 0)
            return -EINVAL;
        if (!eat(j, ']'))
            return jp_fail(j, "cas \"value\" must be [expected, new]");
        if (b.kind == S_NULL)
            return jp_fail(j, "cas new value must not be null");
        if (intern_scalar(h, &h->values, &a, j, &e->v1) != 0 ||
            intern_scalar(h, &h->values, &b, j, &e->v2) != 0)
            return -EINVAL;
        return 0;
    }
    const char *at = j->p;
    if (parse_scalar(j, &a) != 0)
        return -EINVAL;
    if (e->f == F_READ && invoke && a.kind != S_NULL) {
        j->p = at;
        return jp_fail(j, "read invocation \"value\" must be null");
    }
    if (e->f == F_WRITE && invoke && a.kind == S_NULL) {
        j->p = at;
        return jp_fail(j, "write \"value\" must not be null");
    }
    return intern_scalar(h, &h->values, &a, j, &e->v1);
}

static int parse_line(struct history *h, struct jp *j, struct event *e)
{
    unsigned seen = 0;
    const char *value_at = NULL;
    if (!eat(j, '{'))
        return jp_fail(j, "expected '{'");
    if (eat(j, '}'))
        return jp_fail(j, "missing \"process\"");
    do {
        const char *name;
        size_t len;
        skip_ws(j);
        const char *name_at = j->p;
        if (parse_string(j, &name, &len) != 0)
            return -EINVAL;
        if (!eat(j, ':'))
            return jp_fail(j, "expected ':'");
        static const char *const names[] = {"process", "type", "f", "key", "value", "time"};
        unsigned bit = 0;
        for (unsigned i = 0; i < 6; i++)
            if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
                bit = 1u << i;
        if (bit & seen) {
            j->p = name_at;
            return jp_fail(j, "duplicate field");
        }
        seen |= bit;
        struct scalar k;
        int rc = 0;
        switch (bit) {
        case FLD_PROCESS:
            rc = parse_int_field(j, "process", &e->process);
            break;
        case FLD_TYPE:
            rc = parse_enum_field(j, "type", type_names, EV_INVOKE, EV_INFO, &e->type);
            break;
        case FLD_F:
            rc = parse_enum_field(j, "f", f_names, F_READ, F_CAS, &e->f);
            break;
        case FLD_KEY:
            skip_ws(j);
            name_at = j->p;
            rc = parse_scalar(j, &k);
            if (rc == 0 && k.kind == S_NULL) {
                j->p = name_at;
                rc = jp_fail(j, "\"key\" must be a string or an integer");
            }
            if (rc == 0)
                rc = intern_scalar(h, &h->keys, &k, j, &e->key);
            break;
        case FLD_VALUE:
            skip_ws(j);
            value_at = j->p; /* parsed below, when type and f are known */
            rc = skip_value(j, 0);
            break;
        case FLD_TIME:
            rc = parse_int_field(j, "time", &e->time);
            if (rc == 0 && e->time < 0)
                rc = jp_fail(j, "\"time\" must not be negative");
            break;
        default:
            rc = skip_value(j, 0);
            break;
        }
        if (rc != 0)
            return rc;
    } while (eat(j, ','));
    if (!eat(j, '}'))
        return jp_fail(j, "expected ',' or '}'");
    skip_ws(j);
    if (j->p != j->end)
        return jp_fail(j, "trailing characters after the object");
    if (seen != FLD_ALL) {
        static const char *const names[] = {"process", "type", "f", "key", "value", "time"};
        for (unsigned i = 0; i < 6; i++)
            if (!(seen & (1u << i))) {
                snprintf(j->msg, sizeof(j->msg), "missing \"%s\"", names[i]);
                return -EINVAL;
            }
    }
    j->p = value_at;
    return parse_value_field(h, j, e);
}

/* Read the whole file into h. Returns 0, or -errno / -EINVAL with `msg`. */
static int read_history(FILE *in, struct history *h, char *msg, size_t msg_len)
{
    char *line = malloc(LINE_BYTES_MAX + 1);
    char *scratch = malloc(2 * (size_t)LINE_BYTES_MAX);
    int rc = 0;
    if (line == NULL || scratch == NULL) {
        snprintf(msg, msg_len, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t line_no = 1;; line_no++) {
        size_t len = 0;
        int c;
        while ((c = getc(in)) != EOF && c != '\n') {
            if (len == LINE_BYTES_MAX) {
                snprintf(msg, msg_len, "line %" PRIu32 ": longer than %d bytes", line_no,
                         LINE_BYTES_MAX);
                rc = -EINVAL;
                goto out;
            }
            if (c == 0) {
                snprintf(msg, msg_len, "line %" PRIu32 ": NUL byte", line_no);
                rc = -EINVAL;
                goto out;
            }
            line[len++] = (char)c;
        }
        if (ferror(in)) {
            rc = -errno;
            snprintf(msg, msg_len, "read error: %s", strerror(errno));
            goto out;
        }
        if (c == EOF && len == 0)
            break;
        struct jp j = {.p = line, .end = line + len, .scratch = scratch};
        line_start = line;
        skip_ws(&j);
        if (j.p == j.end) {
            if (c == EOF)
                break;
            continue; /* blank line */
        }
        if (h->n == EVENTS_MAX) {
            snprintf(msg, msg_len, "line %" PRIu32 ": more than %d events", line_no, EVENTS_MAX);
            rc = -EINVAL;
            goto out;
        }
        if (h->n == h->cap) {
            size_t cap = h->cap ? h->cap * 2 : 1024;
            struct event *ev = realloc(h->ev, cap * sizeof(*ev));
            if (ev == NULL) {
                snprintf(msg, msg_len, "out of memory");
                rc = -ENOMEM;
                goto out;
            }
            h->ev = ev;
            h->cap = cap;
        }
        struct event *e = &h->ev[h->n];
        memset(e, 0, sizeof(*e));
        e->line = line_no;
        rc = parse_line(h, &j, e);
        if (rc != 0) {
            snprintf(msg, msg_len, "line %" PRIu32 ": %s", line_no, j.msg);
            goto out;
        }
        h->n++;
        if (c == EOF)
            break;
    }
out:
    free(line);
    free(scratch);
    return rc;
}

static int ev_process_cmp(const void *pa, const void *pb)
{
    const struct event *a = *(const struct event *const *)pa;
    const struct event *b = *(const struct event *const *)pb;
    if (a->process != b->process)
        return a->process < b->process ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line ? 1 : 0;
}

struct stats {
    size_t invokes, ok, fail, info;
};

/* Record an error at `line` if it is the earliest seen so far. */
static void pair_error(uint32_t *err_line, char *msg, size_t msg_len, uint32_t line,
                       const char *what)
{
    if (*err_line != 0 && *err_line <= line)
        return;
    *err_line = line;
    snprintf(msg, msg_len, "line %" PRIu32 ": %s", line, what);
}

static void add_op(struct lin_op *o, const struct event *inv, const struct event *done)
{
    memset(o, 0, sizeof(*o));
    o->key = inv->key;
    o->call = (uint64_t)inv->time;
    o->done = done != NULL;
    o->ret = done != NULL ? (uint64_t)done->time : 0; /* info: no bound on its effect */
    switch (inv->f) {
    case F_READ:
        o->kind = LIN_GET;
        o->out = done != NULL ? done->v1 : 0;
        break;
    case F_WRITE:
        o->kind = LIN_PUT;
        o->arg = inv->v1;
        break;
    default:
        o->kind = LIN_CAS;
        o->arg = inv->v1;
        o->arg2 = inv->v2;
        o->out = 1; /* a cas that did not swap completes with "fail" */
        break;
    }
}

/* Pair each invocation with the next completion of its process into ops
 * (h->n entries). Returns 0, or -EINVAL with the earliest bad line in msg. */
static int pair_history(const struct history *h, struct lin_op *ops, size_t *n_ops,
                        struct stats *st, char *msg, size_t msg_len)
{
    const struct event **by = malloc((h->n + 1) * sizeof(*by));
    if (by == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < h->n; i++)
        by[i] = &h->ev[i];
    qsort(by, h->n, sizeof(*by), ev_process_cmp);
    uint32_t err_line = 0;
    size_t n = 0;
    const struct event *pending = NULL;
    for (size_t i = 0; i <= h->n; i++) {
        const struct event *e = i < h->n ? by[i] : NULL;
        if (pending != NULL && (e == NULL || e->process != pending->process)) {
            add_op(&ops[n++], pending, NULL); /* never completed: indeterminate */
            st->info++;
            pending = NULL;
        }
        if (e == NULL)
            break;
        if (e->type == EV_INVOKE) {
            st->invokes++;
            if (pending != NULL)
                pair_error(&err_line, msg, msg_len, e->line,
                           "invocation while the process has one pending");
            pending = e;
            continue;
        }
        if (pending == NULL) {
            pair_error(&err_line, msg, msg_len, e->line, "completion without an invocation");
            continue;
        }
        if (e->f != pending->f || e->key != pending->key)
            pair_error(&err_line, msg, msg_len, e->line,
                       "completion's \"f\" or \"key\" differs from its invocation");
        if (e->time < pending->time)
            pair_error(&err_line, msg, msg_len, e->line,
                       "completion's \"time\" is before its invocation's");
        if (e->type == EV_OK) {
            add_op(&ops[n++], pending, e);
            st->ok++;
        } else if (e->type == EV_INFO) {
            add_op(&ops[n++], pending, NULL);
            st->info++;
        } else {
            st->fail++; /* did not happen */
        }
        pending = NULL;
    }
    free(by);
    *n_ops = n;
    return err_line != 0 ? -EINVAL : 0;
}

static int op_key_cmp(const void *pa, const void *pb)
{
    const struct lin_op *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if (a->call != b->call)
        return a->call < b->call ? -1 : 1;
    return a->ret < b->ret ? -1 : a->ret > b->ret ? 1 : 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sv-check FILE\n"
                 "Check a register history (history.jsonl; FILE - reads stdin) for\n"
                 "linearizability. One JSON object per line: process (int), type\n"
                 "(invoke|ok|fail|info), f (read|write|cas), key (string|int), value,\n"
                 "time (int). Prints {\"valid\": true|false|\"unknown\", \"ops\": N,\n"
                 "\"keys\": K, \"anomalies\": [...], \"checked_ms\": T} on stdout.\n"
                 "Exit status: 0 valid, 1 not linearizable, 2 unreadable or malformed\n"
                 "file, or the search gave up (unknown).\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return EXIT_VALID;
    }
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
        usage(stderr);
        return EXIT_BROKEN;
    }
    const char *path = argv[1];
    int status = EXIT_BROKEN;
    char msg[MSG_MAX + 64] = "";
    struct history h = {0};
    struct lin_op *ops = NULL;
    h.keys.max = KEYS_MAX;
    h.values.max = VALUES_MAX;

    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "sv-check: %s: %s\n", path, strerror(errno));
        return EXIT_BROKEN;
    }
    int rc = read_history(in, &h, msg, sizeof(msg));
    if (in != stdin)
        fclose(in);
    if (rc != 0)
        goto err_after_history;

    ops = malloc((h.n + 1) * sizeof(*ops));
    if (ops == NULL) {
        snprintf(msg, sizeof(msg), "out of memory");
        goto err_after_history;
    }
    size_t n_ops = 0;
    struct stats st = {0};
    if (pair_history(&h, ops, &n_ops, &st, msg, sizeof(msg)) != 0)
        goto err_after_ops;

    double t0 = now_ms();
    qsort(ops, n_ops, sizeof(*ops), op_key_cmp);
    /* One call per key so that every failing key is reported; lin.c is
     * P-compositional, so this is the same check as one call on all ops. */
    struct anomaly {
        uint32_t key;
        size_t n_ops;
        int verdict;
    } *anomalies = NULL;
    size_t n_anomalies = 0;
    uint64_t explored = 0;
    bool invalid = false, unknown = false;
    for (size_t i = 0; i < n_ops;) {
        size_t k = i;
        while (k < n_ops && ops[k].key == ops[i].key)
            k++;
        struct lin_report rep;
        int verdict = sv__lin_check(&ops[i], k - i, 0, &rep);
        explored += rep.explored;
        if (verdict < 0) {
            free(anomalies);
            snprintf(msg, sizeof(msg), "out of memory while checking");
            goto err_after_ops;
        }
        if (verdict != LIN_OK) {
            struct anomaly *a = realloc(anomalies, (n_anomalies + 1) * sizeof(*a));
            if (a == NULL) {
                free(anomalies);
                snprintf(msg, sizeof(msg), "out of memory");
                goto err_after_ops;
            }
            anomalies = a;
            anomalies[n_anomalies++] = (struct anomaly){ops[i].key, rep.n_ops, verdict};
            invalid |= verdict == LIN_VIOLATION;
            unknown |= verdict == LIN_UNKNOWN;
        }
        i = k;
    }
    double checked_ms = now_ms() - t0;

    printf("{\"valid\": %s, \"ops\": %zu, \"ok\": %zu, \"fail\": %zu, \"info\": %zu, "
           "\"keys\": %zu, \"anomalies\": [",
           invalid   ? "false"
           : unknown ? "\"unknown\""
                     : "true",
           st.invokes, st.ok, st.fail, st.info, h.keys.n);
    for (size_t i = 0; i < n_anomalies; i++) {
        printf("%s{\"key\": ", i ? ", " : "");
        intern_print(&h.keys, anomalies[i].key, stdout);
        printf(", \"ops\": %zu, \"kind\": \"%s\"}", anomalies[i].n_ops,
               anomalies[i].verdict == LIN_VIOLATION ? "nonlinearizable" : "search-limit");
    }
    printf("], \"explored\": %" PRIu64 ", \"checked_ms\": %.0f}\n", explored, checked_ms);
    free(anomalies);
    status = invalid ? EXIT_INVALID : unknown ? EXIT_BROKEN : EXIT_VALID;
    free(ops);
    intern_free(&h.keys);
    intern_free(&h.values);
    free(h.ev);
    return status;

err_after_ops:
    free(ops);
err_after_history:
    fprintf(stderr, "sv-check: %s: %s\n", path, msg);
    intern_free(&h.keys);
    intern_free(&h.values);
    free(h.ev);
    return status;
}
