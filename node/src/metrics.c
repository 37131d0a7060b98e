/* The metrics registry and its rendering in the Prometheus text format 0.0.4. */
#include "metrics.h"
#include "sv_assert.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One series. The handle is the first member: a series is found again from
 * its handle by a cast, and is allocated on its own cache line(s) so that
 * threads updating different series do not share a line. */
struct series {
    union {
        struct sv_counter counter;
        struct sv_gauge gauge;
        struct sv_histogram hist;
    } u;
    sv_metrics_gauge_fn fn; /* non-NULL: the value comes from fn(arg) */
    void *arg;
    uint64_t hash; /* of labels, for lookups */
    char *labels;  /* rendered pairs: a="x",b="y" (escaped); "" without labels */
    size_t labels_len;
};

enum { SERIES_ALIGN = 64, LE_MAX = 32 };

struct sv_metrics_family {
    struct sv_metrics *m;
    enum sv_metric_type type;
    char name[SV_METRICS_NAME_MAX];
    char *help; /* escaped */
    uint32_t n_labels;
    char label_names[SV_METRICS_LABELS_MAX][SV_METRICS_NAME_MAX];
    uint64_t bounds[SV_METRICS_BUCKETS_MAX];
    uint32_t n_bounds;
    uint64_t unit_div;
    char le[SV_METRICS_BUCKETS_MAX][LE_MAX]; /* the bounds as rendered */
    struct series **series;                  /* in the order added */
    uint32_t n_series, cap_series;
};

struct sv_metrics {
    struct sv_metrics_family *families[SV_METRICS_FAMILIES_MAX];
    uint32_t n_families;
    uint32_t n_series; /* all families */
};

/* ---- checks ---------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* Prometheus names, lower case only (snake_case, as promtool's linter wants):
 * metric names may also hold ':', label names may not. */
static bool valid_name(const char *s, bool metric)
{
    size_t n = strlen(s);
    if (n == 0 || n >= SV_METRICS_NAME_MAX || !strncmp(s, "__", 2))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || c == '_' || (metric && c == ':') ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool valid_utf8(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---- text building --------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap, max;
    int err; /* first failure: -ENOMEM or -E2BIG */
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->err || n == 0)
        return;
    if (n > b->max - b->len) {
        b->err = -E2BIG;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->err = -ENOMEM;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* s escaped for a label value (\\, \", \n) or, when help, for a HELP line
 * (\\, \n). */
static void put_escaped(struct buf *b, const char *s, bool help)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && !help)
            esc = "\\\"";
        if (esc) {
            put(b, run, (size_t)(s - run));
            puts_(b, esc);
            run = s + 1;
        }
    }
    put(b, run, (size_t)(s - run));
}

/* The shortest text that reads back as v (Go's ParseFloat, which Prometheus
 * uses, reads every form printed here). */
static void format_double(char *out, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    } else if (fabs(v) < 9007199254740992.0 && v == (double)(int64_t)v) { /* below 2^53 */
        snprintf(out, cap, "%" PRId64, (int64_t)v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void put_double(struct buf *b, double v)
{
    char s[40];
    format_double(s, sizeof s, v);
    puts_(b, s);
}

static void put_u64(struct buf *b, uint64_t v)
{
    char s[24];
    int n = snprintf(s, sizeof s, "%" PRIu64, v);
    put(b, s, (size_t)n);
}

/* ---- registry -------------------------------------------------------------- */

int sv_metrics_new(struct sv_metrics **out)
{
    struct sv_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    *out = m;
    return 0;
}

static void series_free(struct series *s)
{
    free(s->labels);
    free(s);
}

void sv_metrics_free(struct sv_metrics *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->n_families; i++) {
        struct sv_metrics_family *f = m->families[i];
        for (uint32_t j = 0; j < f->n_series; j++)
            series_free(f->series[j]);
        free(f->series);
        free(f->help);
        free(f);
    }
    free(m);
}

void sv_metrics_exp_bounds(uint64_t *out, uint32_t n, uint64_t start, uint64_t factor)
{
    uint64_t v = start;
    for (uint32_t i = 0; i < n; i++) {
        out[i] = v;
        if (i + 1 < n) {
            ASSERT(factor == 0 || v <= UINT64_MAX / factor);
            v *= factor;
        }
    }
}

/* The names a family's samples use: its name, and for a histogram the
 * _bucket, _sum and _count names. Returns how many (into names). */
static int sample_names(enum sv_metric_type type, const char *name,
                        char names[4][SV_METRICS_NAME_MAX + 8])
{
    snprintf(names[0], sizeof names[0], "%s", name);
    if (type != SV_METRIC_HISTOGRAM)
        return 1;
    snprintf(names[1], sizeof names[1], "%s_bucket", name);
    snprintf(names[2], sizeof names[2], "%s_sum", name);
    snprintf(names[3], sizeof names[3], "%s_count", name);
    return 4;
}

static int check_desc(const struct sv_metrics_desc *d)
{
    if (d->type != SV_METRIC_COUNTER && d->type != SV_METRIC_GAUGE &&
        d->type != SV_METRIC_HISTOGRAM)
        return -EINVAL;
    if (!d->name || !valid_name(d->name, true))
        return -EINVAL;
    /* promtool's linter: counters end in _total, nothing else does, and only
     * histograms (and summaries) have _count, _sum and _bucket samples. */
    if ((d->type == SV_METRIC_COUNTER) != ends_with(d->name, "_total"))
        return -EINVAL;
    if (ends_with(d->name, "_count") || ends_with(d->name, "_sum") || ends_with(d->name, "_bucket"))
        return -EINVAL;
    if (!d->help || !d->help[0] || strlen(d->help) >= SV_METRICS_HELP_MAX ||
        !valid_utf8(d->help, strlen(d->help)))
        return -EINVAL;
    if (d->n_labels > SV_METRICS_LABELS_MAX || (d->n_labels && !d->labels))
        return -EINVAL;
    for (uint32_t i = 0; i < d->n_labels; i++) {
        if (!d->labels[i] || !valid_name(d->labels[i], false))
            return -EINVAL;
        if (d->type == SV_METRIC_HISTOGRAM && !strcmp(d->labels[i], "le"))
            return -EINVAL;
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(d->labels[i], d->labels[j]))
                return -EINVAL;
    }
    if (d->type == SV_METRIC_HISTOGRAM) {
        if (d->n_bounds == 0 || d->n_bounds > SV_METRICS_BUCKETS_MAX || !d->bounds)
            return -EINVAL;
        for (uint32_t i = 1; i < d->n_bounds; i++)
            if (d->bounds[i] <= d->bounds[i - 1])
                return -EINVAL;
    }
    return 0;
}

int sv_metrics_family_new(struct sv_metrics *m, const struct sv_metrics_desc *d,
                          struct sv_metrics_family **out)
{
    int rc = check_desc(d);
    if (rc)
        return rc;
    char mine[4][SV_METRICS_NAME_MAX + 8], theirs[4][SV_METRICS_NAME_MAX + 8];
    int n_mine = sample_names(d->type, d->name, mine);
    for (uint32_t i = 0; i < m->n_families; i++) {
        const struct sv_metrics_family *o = m->families[i];
        int n_theirs = sample_names(o->type, o->name, theirs);
        for (int a = 0; a < n_mine; a++)
            for (int b = 0; b < n_theirs; b++)
                if (!strcmp(mine[a], theirs[b]))
                    return -EEXIST;
    }
    if (m->n_families == SV_METRICS_FAMILIES_MAX)
        return -ENOSPC;

    struct sv_metrics_family *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    struct buf help = {.max = SIZE_MAX};
    put_escaped(&help, d->help, true);
    put(&help, "", 1);
    if (help.err) {
        free(help.p);
        free(f);
        return -ENOMEM;
    }
    f->help = help.p;
    f->m = m;
    f->type = d->type;
    snprintf(f->name, sizeof f->name, "%s", d->name);
    f->n_labels = d->n_labels;
    for (uint32_t i = 0; i < d->n_labels; i++)
        snprintf(f->label_names[i], sizeof f->label_names[i], "%s", d->labels[i]);
    if (d->type == SV_METRIC_HISTOGRAM) {
        f->n_bounds = d->n_bounds;
        f->unit_div = d->unit_div ? d->unit_div : 1;
        for (uint32_t i = 0; i < d->n_bounds; i++) {
            f->bounds[i] = d->bounds[i];
            /* Exact division by the unit, rounded once: 50000 / 1e9 prints
             * as 5e-05, where 50000 * 1e-9 would not. */
            format_double(f->le[i], sizeof f->le[i], (double)d->bounds[i] / (double)f->unit_div);
        }
    }
    m->families[m->n_families++] = f;
    *out = f;
    return 0;
}

uint32_t sv_metrics_series_count(const struct sv_metrics_family *f)
{
    return f->n_series;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The rendered label pairs of values into *b (a new buffer, NUL-terminated,
 * length without it in b->len). */
static int render_labels(const struct sv_metrics_family *f, const char *const *values,
                         struct buf *b)
{
    *b = (struct buf){.max = SIZE_MAX};
    if (f->n_labels && !values)
        return -EINVAL;
    for (uint32_t i = 0; i < f->n_labels; i++) {
        const char *v = values[i];
        size_t n = v ? strlen(v) : 0;
        if (!v || n >= SV_METRICS_VALUE_MAX || !valid_utf8(v, n)) {
            free(b->p);
            return -EINVAL;
        }
        if (i)
            puts_(b, ",");
        puts_(b, f->label_names[i]);
        puts_(b, "=\"");
        put_escaped(b, v, false);
        puts_(b, "\"");
    }
    put(b, "", 1);
    if (b->err) {
        free(b->p);
        return -ENOMEM;
    }
    b->len--;
    return 0;
}

/* The index of the series with these rendered labels, or -1. */
static int64_t find(const struct sv_metrics_family *f, const struct buf *labels, uint64_t hash)
{
    for (uint32_t i = 0; i < f->n_series; i++) {
        const struct series *s = f->series[i];
        if (s->hash == hash && s->labels_len == labels->len &&
            !memcmp(s->labels, labels->p, labels->len))
            return i;
    }
    return -1;
}

static int series_add(struct sv_metrics_family *f, enum sv_metric_type type,
                      const char *const *values, sv_metrics_gauge_fn fn, void *arg,
                      struct series **out)
{
    if (f->type != type)
        return -EINVAL;
    struct buf labels;
    int rc = render_labels(f, values, &labels);
    if (rc)
        return rc;
    uint64_t hash = fnv1a(labels.p, labels.len);
    if (find(f, &labels, hash) >= 0) {
        rc = -EEXIST;
        goto err_after_labels;
    }
    if (f->m->n_series == SV_METRICS_SERIES_MAX) {
        rc = -ENOSPC;
        goto err_after_labels;
    }
    if (f->n_series == f->cap_series) {
        uint32_t cap = f->cap_series ? f->cap_series * 2 : 8;
        struct series **ns = realloc(f->series, cap * sizeof *ns);
        if (!ns) {
            rc = -ENOMEM;
            goto err_after_labels;
        }
        f->series = ns;
        f->cap_series = cap;
    }
    size_t size = (sizeof(struct series) + SERIES_ALIGN - 1) / SERIES_ALIGN * SERIES_ALIGN;
    struct series *s = aligned_alloc(SERIES_ALIGN, size);
    if (!s) {
        rc = -ENOMEM;
        goto err_after_labels;
    }
    memset(s, 0, size);
    if (type == SV_METRIC_HISTOGRAM) {
        s->u.hist.bounds = f->bounds;
        s->u.hist.n_bounds = f->n_bounds;
    }
    s->fn = fn;
    s->arg = arg;
    s->hash = hash;
    s->labels = labels.p;
    s->labels_len = labels.len;
    f->series[f->n_series++] = s;
    f->m->n_series++;
    *out = s;
    return 0;

err_after_labels:
    free(labels.p);
    return rc;
}

int sv_metrics_counter(struct sv_metrics_family *f, const char *const *values,
                       struct sv_counter **out)
{
    struct series *s;
    int rc = series_add(f, SV_METRIC_COUNTER, values, NULL, NULL, &s);
    if (rc == 0)
        *out = &s->u.counter;
    return rc;
}

int sv_metrics_gauge(struct sv_metrics_family *f, const char *const *values, struct sv_gauge **out)
{
    struct series *s;
    int rc = series_add(f, SV_METRIC_GAUGE, values, NULL, NULL, &s);
    if (rc == 0)
        *out = &s->u.gauge;
    return rc;
}

int sv_metrics_histogram(struct sv_metrics_family *f, const char *const *values,
                         struct sv_histogram **out)
{
    struct series *s;
    int rc = series_add(f, SV_METRIC_HISTOGRAM, values, NULL, NULL, &s);
    if (rc == 0)
        *out = &s->u.hist;
    return rc;
}

int sv_metrics_series_fn(struct sv_metrics_family *f, const char *const *values,
                         sv_metrics_gauge_fn fn, void *arg)
{
    ASSERT(fn);
    if (f->type == SV_METRIC_HISTOGRAM)
        return -EINVAL;
    struct series *s;
    return series_add(f, f->type, values, fn, arg, &s);
}

int sv_metrics_series_remove(struct sv_metrics_family *f, const char *const *values)
{
    struct buf labels;
    int rc = render_labels(f, values, &labels);
    if (rc)
        return rc == -EINVAL ? -ENOENT : rc;
    int64_t i = find(f, &labels, fnv1a(labels.p, labels.len));
    free(labels.p);
    if (i < 0)
        return -ENOENT;
    series_free(f->series[i]);
    memmove(&f->series[i], &f->series[i + 1], (f->n_series - (size_t)i - 1) * sizeof f->series[0]);
    f->n_series--;
    f->m->n_series--;
    return 0;
}

int sv_metrics_build_info(struct sv_metrics *m, const char *version)
{
    static const char *const labels[] = {"version"};
    struct sv_metrics_desc d = {
        .type = SV_METRIC_GAUGE,
        .name = "sv_build_info",
        .help = "ShardVault build; the value is always 1.",
        .labels = labels,
        .n_labels = 1,
    };
    struct sv_metrics_family *f;
    int rc = sv_metrics_family_new(m, &d, &f);
    if (rc)
        return rc;
    struct sv_gauge *g;
    rc = sv_metrics_gauge(f, &version, &g);
    if (rc)
        return rc;
    sv_gauge_set(g, 1);
    return 0;
}

/* ---- rendering ------------------------------------------------------------- */

/* name{labels[,extra]} or name{extra} or name. */
static void put_sample_name(struct buf *b, const char *name, const char *suffix,
                            const struct series *s, const char *extra)
{
    puts_(b, name);
    puts_(b, suffix);
    if (s->labels_len == 0 && !extra)
        return;
    puts_(b, "{");
    put(b, s->labels, s->labels_len);
    if (extra) {
        if (s->labels_len)
            puts_(b, ",");
        puts_(b, extra);
    }
    puts_(b, "}");
}

static void render_histogram(struct buf *b, const struct sv_metrics_family *f,
                             const struct series *s)
{
    const struct sv_histogram *h = &s->u.hist;
    char le[LE_MAX + 8];
    uint64_t cum = 0;
    for (uint32_t i = 0; i <= f->n_bounds; i++) {
        cum += atomic_load_explicit(&((struct sv_histogram *)h)->counts[i], memory_order_relaxed);
        snprintf(le, sizeof le, "le=\"%s\"", i < f->n_bounds ? f->le[i] : "+Inf");
        put_sample_name(b, f->name, "_bucket", s, le);
        puts_(b, " ");
        put_u64(b, cum);
        puts_(b, "\n");
    }
    uint64_t sum = atomic_load_explicit(&((struct sv_histogram *)h)->sum, memory_order_relaxed);
    put_sample_name(b, f->name, "_sum", s, NULL);
    puts_(b, " ");
    if (f->unit_div == 1)
        put_u64(b, sum);
    else
        put_double(b, (double)sum / (double)f->unit_div);
    puts_(b, "\n");
    put_sample_name(b, f->name, "_count", s, NULL);
    puts_(b, " ");
    put_u64(b, cum);
    puts_(b, "\n");
}

int sv_metrics_render(struct sv_metrics *m, char **out, size_t *len)
{
    static const char *const type_names[] = {
        [SV_METRIC_COUNTER] = "counter",
        [SV_METRIC_GAUGE] = "gauge",
        [SV_METRIC_HISTOGRAM] = "histogram",
    };
    struct buf b = {.max = SV_METRICS_RENDER_MAX};
    for (uint32_t i = 0; i < m->n_families && !b.err; i++) {
        const struct sv_metrics_family *f = m->families[i];
        if (f->n_series == 0)
            continue;
        puts_(&b, "# HELP ");
        puts_(&b, f->name);
        puts_(&b, " ");
        puts_(&b, f->help);
        puts_(&b, "\n# TYPE ");
        puts_(&b, f->name);
        puts_(&b, " ");
        puts_(&b, type_names[f->type]);
        puts_(&b, "\n");
        for (uint32_t j = 0; j < f->n_series && !b.err; j++) {
            const struct series *s = f->series[j];
            if (f->type == SV_METRIC_HISTOGRAM) {
                render_histogram(&b, f, s);
                continue;
            }
            put_sample_name(&b, f->name, "", s, NULL);
            puts_(&b, " ");
            if (s->fn)
                put_double(&b, s->fn(s->arg));
            else if (f->type == SV_METRIC_COUNTER)
                put_u64(&b, sv_counter_value(&s->u.counter));
            else
                put_double(&b, sv_gauge_value(&s->u.gauge));
            puts_(&b, "\n");
        }
    }
    if (b.err) {
        free(b.p);
        return b.err;
    }
    if (!b.p) { /* nothing registered: an empty exposition */
        b.p = malloc(1);
        if (!b.p)
            return -ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
