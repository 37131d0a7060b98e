/* The history.jsonl reader shared by sv-check and sv-report (see history.h). */
#define _POSIX_C_SOURCE 200809L

#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sv__hist_type_names[] = {
    [EV_INVOKE] = "invoke", [EV_OK] = "ok", [EV_FAIL] = "fail", [EV_INFO] = "info"};
const char *const sv__hist_f_names[] = {
    [F_READ] = "read", [F_WRITE] = "write", [F_CAS] = "cas", [F_ADD] = "add"};
const char *const sv__hist_kind_names[] = {[HIST_REGISTER] = "register", [HIST_SET] = "set"};

/* ---- Interned scalars ---- */

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

static void json_print_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

const char *sv__intern_bytes(const struct intern *t, uint32_t id, size_t *len, bool *is_int)
{
    const char *e = &t->arena[t->off[id - 1]];
    *len = t->len[id - 1] - 1;
    *is_int = e[0] == 'i';
    return e + 1;
}

void sv__intern_print(const struct intern *t, uint32_t id, FILE *out)
{
    size_t len;
    bool is_int;
    const char *s = sv__intern_bytes(t, id, &len, &is_int);
    if (is_int)
        fwrite(s, 1, len, out);
    else
        json_print_string(out, s, len);
}

/* ---- The JSON reader ---- */

int sv__json_fail(struct json *j, const char *what)
{
    if (!j->multiline) {
        snprintf(j->msg, sizeof(j->msg), "%s at column %td", what, j->p - j->start + 1);
        return -EINVAL;
    }
    size_t line = 1;
    const char *bol = j->start;
    for (const char *c = j->start; c < j->p; c++)
        if (*c == '\n') {
            line++;
            bol = c + 1;
        }
    snprintf(j->msg, sizeof(j->msg), "line %zu: %s at column %td", line, what, j->p - bol + 1);
    return -EINVAL;
}

void sv__json_skip_ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
        j->p++;
}

bool sv__json_eat(struct json *j, char c)
{
    sv__json_skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static int hex4(struct json *j, uint32_t *out)
{
    if (j->end - j->p < 4)
        return sv__json_fail(j, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return sv__json_fail(j, "bad \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    j->p += 4;
    *out = v;
    return 0;
}

static void put_utf8(struct json *j, uint32_t cp)
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
int sv__json_string(struct json *j, const char **s, size_t *len)
{
    if (!sv__json_eat(j, '"'))
        return sv__json_fail(j, "expected a string");
    size_t start = j->scratch_len;
    for (;;) {
        if (j->p >= j->end)
            return sv__json_fail(j, "unterminated string");
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            break;
        if (c < 0x20)
            return sv__json_fail(j, "control character in string");
        if (c != '\\') {
            j->scratch[j->scratch_len++] = (char)c;
            continue;
        }
        if (j->p >= j->end)
            return sv__json_fail(j, "unterminated string");
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
                return sv__json_fail(j, "unpaired low surrogate");
            if (cp >= 0xd800 && cp < 0xdc00) {
                uint32_t lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return sv__json_fail(j, "unpaired high surrogate");
                j->p += 2;
                if (hex4(j, &lo) != 0)
                    return -EINVAL;
                if (lo < 0xdc00 || lo >= 0xe000)
                    return sv__json_fail(j, "unpaired high surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(j, cp);
            break;
        default:
            return sv__json_fail(j, "bad escape in string");
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
int sv__json_number(struct json *j, bool *is_int, int64_t *out)
{
    sv__json_skip_ws(j);
    const char *p = j->p;
    bool neg = false;
    if (p < j->end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= j->end || !is_digit(*p))
        return sv__json_fail(j, "expected a number");
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
            return sv__json_fail(j, "bad fraction");
        while (p < j->end && is_digit(*p))
            p++;
        *is_int = false;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= j->end || !is_digit(*p))
            return sv__json_fail(j, "bad exponent");
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
                return sv__json_fail(j, "integer out of range");
            v = v * 10 - dig;
        }
        if (!neg) {
            if (v == INT64_MIN)
                return sv__json_fail(j, "integer out of range");
            v = -v;
        }
        *out = v;
    }
    j->p = p;
    return 0;
}

bool sv__json_eat_word(struct json *j, const char *w)
{
    sv__json_skip_ws(j);
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, w, n) == 0) {
        j->p += n;
        return true;
    }
    return false;
}

/* null, an integer or a string. */
int sv__json_scalar(struct json *j, struct json_scalar *v)
{
    sv__json_skip_ws(j);
    memset(v, 0, sizeof(*v));
    if (sv__json_eat_word(j, "null")) {
        v->kind = JSON_NULL;
        return 0;
    }
    if (j->p < j->end && *j->p == '"') {
        v->kind = JSON_STR;
        return sv__json_string(j, &v->s, &v->len);
    }
    if (j->p < j->end && (*j->p == '-' || is_digit(*j->p))) {
        bool is_int;
        const char *at = j->p;
        int rc = sv__json_number(j, &is_int, &v->i);
        if (rc != 0)
            return rc;
        if (!is_int) {
            j->p = at;
            return sv__json_fail(j, "expected an integer, not a fraction");
        }
        v->kind = JSON_INT;
        return 0;
    }
    return sv__json_fail(j, "expected null, an integer or a string");
}

static int skip_value(struct json *j, int depth)
{
    if (depth > HIST_NEST_MAX)
        return sv__json_fail(j, "nesting too deep");
    sv__json_skip_ws(j);
    if (j->p >= j->end)
        return sv__json_fail(j, "expected a value");
    const char *s;
    size_t len;
    bool is_int;
    int64_t i;
    switch (*j->p) {
    case '"':
        return sv__json_string(j, &s, &len);
    case '{':
        j->p++;
        if (sv__json_eat(j, '}'))
            return 0;
        do {
            if (sv__json_string(j, &s, &len) != 0)
                return -EINVAL;
            if (!sv__json_eat(j, ':'))
                return sv__json_fail(j, "expected ':'");
            if (skip_value(j, depth + 1) != 0)
                return -EINVAL;
        } while (sv__json_eat(j, ','));
        return sv__json_eat(j, '}') ? 0 : sv__json_fail(j, "expected ',' or '}'");
    case '[':
        j->p++;
        if (sv__json_eat(j, ']'))
            return 0;
        do {
            if (skip_value(j, depth + 1) != 0)
                return -EINVAL;
        } while (sv__json_eat(j, ','));
        return sv__json_eat(j, ']') ? 0 : sv__json_fail(j, "expected ',' or ']'");
    default:
        if (sv__json_eat_word(j, "null") || sv__json_eat_word(j, "true") ||
            sv__json_eat_word(j, "false"))
            return 0;
        return sv__json_number(j, &is_int, &i);
    }
}

int sv__json_skip(struct json *j)
{
    return skip_value(j, 0);
}

int sv__json_end(struct json *j)
{
    sv__json_skip_ws(j);
    return j->p == j->end ? 0 : sv__json_fail(j, "trailing characters after the object");
}

/* ---- Events ---- */

static int intern_scalar(struct intern *t, const struct json_scalar *v, struct json *j,
                         const char *what, uint32_t *id)
{
    char num[32];
    int64_t rc;
    if (v->kind == JSON_NULL) {
        *id = 0;
        return 0;
    }
    if (v->kind == JSON_INT) {
        int n = snprintf(num, sizeof(num), "%" PRId64, v->i);
        rc = intern_get(t, 'i', num, (size_t)n);
    } else {
        rc = intern_get(t, 's', v->s, v->len);
    }
    if (rc == -ENOSPC)
        return sv__json_fail(j, what);
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
    FLD_REQUIRED = (1 << 6) - 1,
    FLD_ERROR = 1 << 6, /* optional: the client's error text on fail/info */
};
static const char *const field_names[] = {"process", "type", "f", "key", "value", "time", "error"};

static int parse_int_field(struct json *j, const char *name, int64_t *out)
{
    bool is_int;
    char what[64];
    const char *at = (sv__json_skip_ws(j), j->p);
    if (j->p >= j->end || !(*j->p == '-' || is_digit(*j->p)) ||
        sv__json_number(j, &is_int, out) != 0 || !is_int) {
        j->p = at;
        snprintf(what, sizeof(what), "\"%s\" must be an integer", name);
        return sv__json_fail(j, what);
    }
    return 0;
}

static int parse_enum_field(struct json *j, const char *name, const char *const *names, int lo,
                            int hi, uint8_t *out)
{
    const char *s;
    size_t len;
    char what[96];
    const char *at = (sv__json_skip_ws(j), j->p);
    if (sv__json_string(j, &s, &len) == 0)
        for (int i = lo; i <= hi; i++)
            if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
                *out = (uint8_t)i;
                return 0;
            }
    j->p = at;
    snprintf(what, sizeof(what), "\"%s\" must be one of the strings %s", name,
             lo == EV_INVOKE ? "invoke, ok, fail, info" : "read, write, cas, add");
    return sv__json_fail(j, what);
}

/* ---- Set reads ---- */

int sv__elems_push(struct elems *l, int64_t x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        int64_t *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

static int i64_cmp(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return a < b ? -1 : a > b ? 1 : 0;
}

void sv__elems_unique(struct elems *l)
{
    if (l->n == 0)
        return;
    qsort(l->v, l->n, sizeof(*l->v), i64_cmp);
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (n == 0 || l->v[n - 1] != l->v[i])
            l->v[n++] = l->v[i];
    l->n = n;
}

bool sv__elems_has(const struct elems *l, int64_t x)
{
    return l->n > 0 && bsearch(&x, l->v, l->n, sizeof(*l->v), i64_cmp) != NULL;
}

static void elems_free(struct elems *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int elems_reserve(struct elems *l, size_t n)
{
    if (n <= l->cap)
        return 0;
    int64_t *v = realloc(l->v, n * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    l->v = v;
    l->cap = n;
    return 0;
}

/* Folds the ok read e (its elements in s->read) into the summary. */
static int summarise_read(struct hist *h, const struct event *e)
{
    struct hist_set *s = &h->set;
    struct elems *r = &s->read;
    if (r->n > 0)
        qsort(r->v, r->n, sizeof(*r->v), i64_cmp);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (n > 0 && r->v[n - 1] == r->v[i]) {
            if (sv__elems_push(&s->duplicated, r->v[i]) != 0)
                return -ENOMEM;
            continue;
        }
        r->v[n++] = r->v[i];
    }
    r->n = n;
    /* seen := seen | read, by merging two sorted lists; an element of this
     * read was last seen when it completed (completions come in any order). */
    if (elems_reserve(&s->merged, s->seen.n + r->n) != 0 ||
        elems_reserve(&s->merged_last, s->seen.n + r->n) != 0)
        return -ENOMEM;
    size_t i = 0, k = 0, m = 0;
    while (i < s->seen.n || k < r->n) {
        int64_t x, last;
        if (k == r->n || (i < s->seen.n && s->seen.v[i] < r->v[k])) {
            last = s->seen_last.v[i];
            x = s->seen.v[i++];
        } else if (i == s->seen.n || r->v[k] < s->seen.v[i]) {
            last = e->time;
            x = r->v[k++];
        } else {
            last = s->seen_last.v[i] > e->time ? s->seen_last.v[i] : e->time;
            x = (k++, s->seen.v[i++]);
        }
        s->merged_last.v[m] = last;
        s->merged.v[m++] = x;
    }
    s->merged.n = s->merged_last.n = m;
    struct elems t = s->seen;
    s->seen = s->merged;
    s->merged = t;
    t = s->seen_last;
    s->seen_last = s->merged_last;
    s->merged_last = t;
    /* The final read is the last ok read to complete (then the last line). */
    const struct event *f = s->has_final ? &h->ev[s->final_ev] : NULL;
    if (f == NULL || e->time >= f->time) {
        struct elems t2 = s->final;
        s->final = *r;
        *r = t2;
        s->final_ev = (size_t)(e - h->ev);
        s->has_final = true;
    }
    return 0;
}

/* A set read's value: an array of integers; an ok read's are summarised. */
static int parse_elements(struct hist *h, struct json *j, struct event *e)
{
    j->p++; /* '[' */
    e->is_array = true;
    h->set.read.n = 0;
    if (!sv__json_eat(j, ']')) {
        do {
            bool is_int;
            int64_t v;
            sv__json_skip_ws(j);
            const char *at = j->p;
            if (j->p >= j->end || !(*j->p == '-' || is_digit(*j->p)) ||
                sv__json_number(j, &is_int, &v) != 0 || !is_int) {
                j->p = at;
                return sv__json_fail(j, "set read elements must be integers");
            }
            if (sv__elems_push(&h->set.read, v) != 0) {
                snprintf(j->msg, sizeof(j->msg), "out of memory");
                return -ENOMEM;
            }
            e->n_elems++;
        } while (sv__json_eat(j, ','));
        if (!sv__json_eat(j, ']'))
            return sv__json_fail(j, "expected ',' or ']'");
    }
    if (e->type == EV_OK && summarise_read(h, e) != 0) {
        snprintf(j->msg, sizeof(j->msg), "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* The "value" field, once type and f are known. */
static int parse_value_field(struct hist *h, struct json *j, struct event *e)
{
    struct json_scalar a, b;
    bool invoke = e->type == EV_INVOKE;
    sv__json_skip_ws(j);
    const char *at = j->p;
    if (e->f == F_CAS && !(j->p < j->end && *j->p == '[')) {
        if (!invoke && sv__json_eat_word(j, "null"))
            return 0; /* a completion need not repeat the arguments */
        return sv__json_fail(j, "cas \"value\" must be [expected, new]");
    }
    if (e->f == F_CAS) {
        j->p++;
        if (sv__json_scalar(j, &a) != 0)
            return -EINVAL;
        if (!sv__json_eat(j, ','))
            return sv__json_fail(j, "cas \"value\" must be [expected, new]");
        if (sv__json_scalar(j, &b) != 0)
            return -EINVAL;
        if (!sv__json_eat(j, ']'))
            return sv__json_fail(j, "cas \"value\" must be [expected, new]");
        if (b.kind == JSON_NULL)
            return sv__json_fail(j, "cas new value must not be null");
        if (intern_scalar(&h->values, &a, j, "too many distinct values", &e->v1) != 0 ||
            intern_scalar(&h->values, &b, j, "too many distinct values", &e->v2) != 0)
            return -EINVAL;
        return 0;
    }
    if (e->f == F_READ && !invoke && j->p < j->end && *j->p == '[')
        return parse_elements(h, j, e);
    if (sv__json_scalar(j, &a) != 0)
        return -EINVAL;
    if (e->f == F_READ && invoke && a.kind != JSON_NULL) {
        j->p = at;
        return sv__json_fail(j, "read invocation \"value\" must be null");
    }
    if (e->f == F_WRITE && invoke && a.kind == JSON_NULL) {
        j->p = at;
        return sv__json_fail(j, "write \"value\" must not be null");
    }
    if (e->f == F_ADD) {
        if (a.kind != JSON_INT && (invoke || a.kind != JSON_NULL)) {
            j->p = at;
            return sv__json_fail(j, "add \"value\" must be an integer element");
        }
        e->elem = a.i;
        return 0;
    }
    return intern_scalar(&h->values, &a, j, "too many distinct values", &e->v1);
}

static bool key_is_set(const struct hist *h, uint32_t key)
{
    size_t len;
    bool is_int;
    const char *s = sv__intern_bytes(&h->keys, key, &len, &is_int);
    return !is_int && len == 3 && memcmp(s, "set", 3) == 0;
}

static int parse_line(struct hist *h, struct json *j, struct event *e)
{
    unsigned seen = 0;
    const char *value_at = NULL, *key_at = NULL;
    if (!sv__json_eat(j, '{'))
        return sv__json_fail(j, "expected '{'");
    if (sv__json_eat(j, '}'))
        return sv__json_fail(j, "missing \"process\"");
    do {
        const char *name;
        size_t len;
        sv__json_skip_ws(j);
        const char *name_at = j->p;
        if (sv__json_string(j, &name, &len) != 0)
            return -EINVAL;
        if (!sv__json_eat(j, ':'))
            return sv__json_fail(j, "expected ':'");
        unsigned bit = 0;
        for (unsigned i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++)
            if (strlen(field_names[i]) == len && memcmp(field_names[i], name, len) == 0)
                bit = 1u << i;
        if (bit & seen) {
            j->p = name_at;
            return sv__json_fail(j, "duplicate field");
        }
        seen |= bit;
        struct json_scalar k;
        int rc = 0;
        sv__json_skip_ws(j);
        const char *at = j->p;
        switch (bit) {
        case FLD_PROCESS:
            rc = parse_int_field(j, "process", &e->process);
            break;
        case FLD_TYPE:
            rc = parse_enum_field(j, "type", sv__hist_type_names, EV_INVOKE, EV_INFO, &e->type);
            break;
        case FLD_F:
            rc = parse_enum_field(j, "f", sv__hist_f_names, F_READ, F_ADD, &e->f);
            break;
        case FLD_KEY:
            key_at = at;
            rc = sv__json_scalar(j, &k);
            if (rc == 0 && k.kind == JSON_NULL) {
                j->p = at;
                rc = sv__json_fail(j, "\"key\" must be a string or an integer");
            }
            if (rc == 0)
                rc = intern_scalar(&h->keys, &k, j, "too many distinct keys", &e->key);
            break;
        case FLD_VALUE:
            value_at = at; /* parsed below, when type and f are known */
            rc = sv__json_skip(j);
            break;
        case FLD_TIME:
            rc = parse_int_field(j, "time", &e->time);
            if (rc == 0 && e->time < 0) {
                j->p = at;
                rc = sv__json_fail(j, "\"time\" must not be negative");
            }
            break;
        case FLD_ERROR:
            if (sv__json_eat_word(j, "null"))
                break; /* no error text */
            if (j->p >= j->end || *j->p != '"') {
                rc = sv__json_fail(j, "\"error\" must be a string or null");
                break;
            }
            rc = sv__json_scalar(j, &k);
            if (rc == 0) {
                int64_t id = intern_get(&h->errors, 's', k.s, k.len);
                if (id == -ENOMEM) {
                    snprintf(j->msg, sizeof(j->msg), "out of memory");
                    return -ENOMEM;
                }
                if (id < 0)
                    h->errors_dropped++;
                e->err = id < 0 ? 0 : (uint32_t)id;
                e->corrupt = k.len >= 7 && memcmp(k.s, "corrupt", 7) == 0;
            }
            break;
        default:
            rc = sv__json_skip(j);
            break;
        }
        if (rc != 0)
            return rc;
    } while (sv__json_eat(j, ','));
    if (!sv__json_eat(j, '}'))
        return sv__json_fail(j, "expected ',' or '}'");
    if (sv__json_end(j) != 0)
        return -EINVAL;
    for (unsigned i = 0; i < 6; i++)
        if (!(seen & (1u << i))) {
            snprintf(j->msg, sizeof(j->msg), "missing \"%s\"", field_names[i]);
            return -EINVAL;
        }
    if (e->f == F_ADD && !key_is_set(h, e->key)) {
        j->p = key_at;
        return sv__json_fail(j, "add \"key\" must be \"set\"");
    }
    j->p = value_at;
    return parse_value_field(h, j, e);
}

/* Reads one line (without its '\n') into *line, growing it up to
 * HIST_LINE_BYTES_MAX. Returns the byte count (*eof: the file ended there), or
 * -EINVAL / -ENOMEM / -errno with msg. */
static int64_t read_line(FILE *in, char **line, size_t *cap, bool *eof, uint32_t line_no, char *msg,
                         size_t msg_len)
{
    size_t len = 0;
    int c;
    while ((c = getc(in)) != EOF && c != '\n') {
        if (len == HIST_LINE_BYTES_MAX) {
            snprintf(msg, msg_len, "line %" PRIu32 ": longer than %d bytes", line_no,
                     HIST_LINE_BYTES_MAX);
            return -EINVAL;
        }
        if (c == 0) {
            snprintf(msg, msg_len, "line %" PRIu32 ": NUL byte", line_no);
            return -EINVAL;
        }
        if (len == *cap) {
            size_t n = *cap * 2;
            char *l = realloc(*line, n);
            if (l == NULL) {
                snprintf(msg, msg_len, "out of memory");
                return -ENOMEM;
            }
            *line = l;
            *cap = n;
        }
        (*line)[len++] = (char)c;
    }
    if (ferror(in)) {
        int err = errno;
        snprintf(msg, msg_len, "read error: %s", strerror(err));
        return -err;
    }
    *eof = c == EOF;
    return (int64_t)len;
}

/* Read the whole file into h->ev. Returns 0, or -errno / -EINVAL with `msg`. */
static int read_events(FILE *in, struct hist *h, char *msg, size_t msg_len)
{
    size_t cap = 1 << 16, scratch_cap = 0;
    char *line = malloc(cap);
    char *scratch = NULL;
    int rc = 0;
    if (line == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t line_no = 1;; line_no++) {
        bool eof = false;
        int64_t len = read_line(in, &line, &cap, &eof, line_no, msg, msg_len);
        if (len < 0) {
            rc = (int)len;
            goto out;
        }
        if (eof && len == 0)
            break;
        if (scratch_cap < 2 * (size_t)len) {
            free(scratch);
            scratch_cap = 2 * cap;
            scratch = malloc(scratch_cap);
            if (scratch == NULL) {
                snprintf(msg, msg_len, "out of memory");
                rc = -ENOMEM;
                goto out;
            }
        }
        struct json j = {.start = line, .p = line, .end = line + len, .scratch = scratch};
        sv__json_skip_ws(&j);
        if (j.p == j.end) {
            if (eof)
                break;
            continue; /* blank line */
        }
        if (h->n == HIST_EVENTS_MAX) {
            snprintf(msg, msg_len, "line %" PRIu32 ": more than %d events", line_no,
                     HIST_EVENTS_MAX);
            rc = -EINVAL;
            goto out;
        }
        if (h->n == h->cap) {
            size_t n = h->cap ? h->cap * 2 : 1024;
            struct event *ev = realloc(h->ev, n * sizeof(*ev));
            if (ev == NULL) {
                snprintf(msg, msg_len, "out of memory");
                rc = -ENOMEM;
                goto out;
            }
            h->ev = ev;
            h->cap = n;
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
        if (eof)
            break;
    }
out:
    free(line);
    free(scratch);
    return rc;
}

/* One kind per history, decided by the f values: add makes a set history,
 * write or cas a register history; reads follow that kind's shape. */
static int decide_kind(struct hist *h, char *msg, size_t msg_len)
{
    const struct event *first_add = NULL, *first_reg = NULL, *first_array = NULL;
    for (size_t i = 0; i < h->n; i++) {
        const struct event *e = &h->ev[i];
        if (e->f == F_ADD && first_add == NULL)
            first_add = e;
        if ((e->f == F_WRITE || e->f == F_CAS) && first_reg == NULL)
            first_reg = e;
        if (e->is_array && first_array == NULL)
            first_array = e;
    }
    if (first_add != NULL && first_reg != NULL) {
        const struct event *a = first_add, *r = first_reg;
        snprintf(msg, msg_len,
                 "line %" PRIu32 ": f %s mixes a set history (add on line %" PRIu32
                 ") with a register history (%s on line %" PRIu32 ")",
                 a->line > r->line ? a->line : r->line,
                 sv__hist_f_names[(a->line > r->line ? a : r)->f], a->line, sv__hist_f_names[r->f],
                 r->line);
        return -EINVAL;
    }
    h->kind = first_add != NULL     ? HIST_SET
              : first_reg != NULL   ? HIST_REGISTER
              : first_array != NULL ? HIST_SET
                                    : HIST_REGISTER;
    for (size_t i = 0; i < h->n; i++) {
        const struct event *e = &h->ev[i];
        if (e->f != F_READ)
            continue;
        const char *what = NULL;
        if (h->kind == HIST_REGISTER && e->is_array)
            what = "a register read's \"value\" must be null, an integer or a string";
        else if (h->kind == HIST_SET && !key_is_set(h, e->key))
            what = "a set read's \"key\" must be \"set\"";
        else if (h->kind == HIST_SET && e->type == EV_OK && !e->is_array)
            what = "a set read's \"value\" must be an array of integers";
        else if (h->kind == HIST_SET && !e->is_array && e->v1 != 0)
            what = "a set read's \"value\" must be null or an array of integers";
        if (what != NULL) {
            snprintf(msg, msg_len, "line %" PRIu32 ": %s", e->line, what);
            return -EINVAL;
        }
    }
    return 0;
}

static int ev_process_cmp(const void *pa, const void *pb)
{
    const struct event *a = *(const struct event *const *)pa;
    const struct event *b = *(const struct event *const *)pb;
    if (a->process != b->process)
        return a->process < b->process ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line ? 1 : 0;
}

static int op_line_cmp(const void *pa, const void *pb)
{
    const struct hist_op *a = pa, *b = pb;
    return a->inv->line < b->inv->line ? -1 : a->inv->line > b->inv->line ? 1 : 0;
}

/* Record an error at `line` if it is the earliest seen so far. */
static void pair_error(uint32_t *err_line, char *msg, size_t msg_len, uint32_t line,
                       const char *what)
{
    if (*err_line != 0 && *err_line <= line)
        return;
    *err_line = line;
    snprintf(msg, msg_len, "line %" PRIu32 ": %s", line, what);
}

/* Pair each invocation with the next completion of its process into h->ops.
 * Returns 0, or -EINVAL with the earliest bad line in msg. */
static int pair_events(struct hist *h, char *msg, size_t msg_len)
{
    const struct event **by = malloc((h->n + 1) * sizeof(*by));
    h->ops = malloc((h->n + 1) * sizeof(*h->ops));
    if (by == NULL || h->ops == NULL) {
        free(by);
        snprintf(msg, msg_len, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < h->n; i++)
        by[i] = &h->ev[i];
    qsort(by, h->n, sizeof(*by), ev_process_cmp);
    uint32_t err_line = 0;
    const struct event *pending = NULL;
    for (size_t i = 0; i <= h->n; i++) {
        const struct event *e = i < h->n ? by[i] : NULL;
        if (pending != NULL && (e == NULL || e->process != pending->process)) {
            h->ops[h->n_ops++] = (struct hist_op){pending, NULL};
            pending = NULL;
        }
        if (e == NULL)
            break;
        if (e->type == EV_INVOKE) {
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
        h->ops[h->n_ops++] = (struct hist_op){pending, e};
        pending = NULL;
    }
    free(by);
    qsort(h->ops, h->n_ops, sizeof(*h->ops), op_line_cmp);
    return err_line != 0 ? -EINVAL : 0;
}

int sv__hist_read(FILE *in, struct hist *h, char *msg, size_t msg_len)
{
    h->keys.max = HIST_KEYS_MAX;
    h->values.max = HIST_VALUES_MAX;
    h->errors.max = HIST_ERRORS_MAX;
    int rc = read_events(in, h, msg, msg_len);
    if (rc != 0)
        return rc;
    rc = decide_kind(h, msg, msg_len);
    if (rc != 0)
        return rc;
    h->process_min = INT64_MAX;
    h->process_max = INT64_MIN;
    for (size_t i = 0; i < h->n; i++) {
        const struct event *e = &h->ev[i];
        h->count[e->type]++;
        if (e->time > h->time_max)
            h->time_max = e->time;
        if (e->process < h->process_min)
            h->process_min = e->process;
        if (e->process > h->process_max)
            h->process_max = e->process;
    }
    return pair_events(h, msg, msg_len);
}

void sv__hist_free(struct hist *h)
{
    intern_free(&h->keys);
    intern_free(&h->values);
    intern_free(&h->errors);
    free(h->ev);
    elems_free(&h->set.seen);
    elems_free(&h->set.seen_last);
    elems_free(&h->set.duplicated);
    elems_free(&h->set.final);
    elems_free(&h->set.read);
    elems_free(&h->set.merged);
    elems_free(&h->set.merged_last);
    free(h->ops);
    memset(h, 0, sizeof(*h));
}
