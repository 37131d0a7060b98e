/* sv-report: report.html of a Jepsen run: the verdict, the run's settings, and inline SVG charts
 * (timeline, latency, throughput) with the faults drawn as bands. One self-contained file. */
#define _POSIX_C_SOURCE 200809L

#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DOC_BYTES_MAX = 16 << 20,          /* results.json or run.json */
    DOC_FIELDS_MAX = 256,              /* top-level fields of one of them */
    NEMESIS_LINE_BYTES_MAX = 64 << 10, /* one nemesis.jsonl line */
    NEMESIS_EVENTS_MAX = 1 << 16,
    MARKS_MAX = 20000,     /* operations drawn on the timeline and latency charts */
    TITLES_MAX = 5000,     /* below this many marks, every one gets a tooltip */
    ROWS_MAX = 64,         /* timeline rows */
    BANDS_MAX = 1000,      /* fault intervals drawn */
    TABLE_ROWS_MAX = 500,  /* fault events listed */
    ERRORS_SHOWN_MAX = 20, /* client error texts listed */
    BUCKETS_MAX = 600,     /* throughput buckets */
    LABEL_CHARS_MAX = 60,  /* of a fault's detail on a band */
    MSG_MAX = HIST_MSG_MAX + 64,
};
_Static_assert(TITLES_MAX <= MARKS_MAX, "tooltips on a subset of the marks");

/* Chart geometry (SVG user units = CSS pixels). */
static const double CHART_W = 1200, PLOT_L = 80, PLOT_R = 20, PLOT_T = 40, PLOT_B = 45;

enum exit_code { EXIT_OK = 0, EXIT_BROKEN = 2 };

/* ---- Inputs ---- */

/* A top-level field of a JSON object file: a string (decoded) or the raw
 * JSON text of any other value. */
struct field {
    char *name;
    char *value;
    bool is_string;
};

struct doc {
    struct field *f;
    size_t n;
};

struct fault_event {
    int64_t time;
    char *nemesis;
    char *detail;
    bool start;
    uint32_t line;
};

struct band {
    int64_t t0, t1;
    const struct fault_event *ev;
    bool open_ended; /* no stop: lasts to the end of the run */
};

static char *dup_bytes(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static void doc_free(struct doc *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->f[i].name);
        free(d->f[i].value);
    }
    free(d->f);
    memset(d, 0, sizeof(*d));
}

static const struct field *doc_get(const struct doc *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->f[i].name, name) == 0)
            return &d->f[i];
    return NULL;
}

/* Reads a JSON object file into d. Returns 0, or -1 with msg ("line N: ..."). */
static int read_doc(const char *path, struct doc *d, char *msg, size_t msg_len)
{
    int rc = -1;
    char *text = NULL, *scratch = NULL;
    FILE *in = fopen(path, "r");
    if (in == NULL) {
        snprintf(msg, msg_len, "%s", strerror(errno));
        return -1;
    }
    text = malloc(DOC_BYTES_MAX + 1);
    scratch = malloc(2 * (size_t)DOC_BYTES_MAX);
    if (text == NULL || scratch == NULL) {
        snprintf(msg, msg_len, "out of memory");
        goto out;
    }
    size_t len = fread(text, 1, DOC_BYTES_MAX + 1, in);
    if (ferror(in)) {
        snprintf(msg, msg_len, "read error: %s", strerror(errno));
        goto out;
    }
    if (len > DOC_BYTES_MAX) {
        snprintf(msg, msg_len, "longer than %d bytes", DOC_BYTES_MAX);
        goto out;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(msg, msg_len, "NUL byte");
        goto out;
    }
    struct json j = {
        .start = text, .p = text, .end = text + len, .multiline = true, .scratch = scratch};
    if (!sv__json_eat(&j, '{')) {
        sv__json_fail(&j, "expected a JSON object");
        goto bad;
    }
    if (!sv__json_eat(&j, '}')) {
        do {
            const char *name;
            size_t name_len;
            j.scratch_len = 0;
            if (sv__json_string(&j, &name, &name_len) != 0)
                goto bad;
            if (!sv__json_eat(&j, ':')) {
                sv__json_fail(&j, "expected ':'");
                goto bad;
            }
            sv__json_skip_ws(&j);
            const char *at = j.p;
            const char *s = at;
            size_t s_len;
            bool is_string = j.p < j.end && *j.p == '"';
            if (is_string ? sv__json_string(&j, &s, &s_len) != 0 : sv__json_skip(&j) != 0)
                goto bad;
            if (!is_string)
                s_len = (size_t)(j.p - at);
            if (d->n == DOC_FIELDS_MAX) {
                sv__json_fail(&j, "too many fields");
                goto bad;
            }
            if (d->n == 0) {
                d->f = calloc(DOC_FIELDS_MAX, sizeof(*d->f));
                if (d->f == NULL) {
                    snprintf(msg, msg_len, "out of memory");
                    goto out;
                }
            }
            struct field *f = &d->f[d->n];
            f->name = dup_bytes(name, name_len);
            f->value = dup_bytes(s, s_len);
            f->is_string = is_string;
            d->n++;
            if (f->name == NULL || f->value == NULL) {
                snprintf(msg, msg_len, "out of memory");
                goto out;
            }
        } while (sv__json_eat(&j, ','));
        if (!sv__json_eat(&j, '}')) {
            sv__json_fail(&j, "expected ',' or '}'");
            goto bad;
        }
    }
    if (sv__json_end(&j) != 0)
        goto bad;
    rc = 0;
    goto out;
bad:
    snprintf(msg, msg_len, "%s", j.msg);
out:
    free(text);
    free(scratch);
    fclose(in);
    return rc;
}

/* One nemesis.jsonl line: {"time": NS, "nemesis": S, "event": "start"|"stop",
 * "detail": S (optional)}; other fields are ignored. */
static int parse_fault(struct json *j, struct fault_event *e)
{
    bool has_time = false, has_event = false;
    if (!sv__json_eat(j, '{'))
        return sv__json_fail(j, "expected '{'");
    if (!sv__json_eat(j, '}')) {
        do {
            const char *name, *s;
            size_t len, s_len;
            if (sv__json_string(j, &name, &len) != 0)
                return -EINVAL;
            if (!sv__json_eat(j, ':'))
                return sv__json_fail(j, "expected ':'");
            sv__json_skip_ws(j);
            const char *at = j->p;
            bool is_string = j->p < j->end && *j->p == '"';
            if (len == 4 && memcmp(name, "time", 4) == 0) {
                bool is_int;
                if (sv__json_number(j, &is_int, &e->time) != 0 || !is_int || e->time < 0) {
                    j->p = at;
                    return sv__json_fail(j, "\"time\" must be a non-negative integer (ns)");
                }
                has_time = true;
            } else if ((len == 7 && memcmp(name, "nemesis", 7) == 0) ||
                       (len == 6 && memcmp(name, "detail", 6) == 0)) {
                bool is_nemesis = len == 7;
                if (!is_string || sv__json_string(j, &s, &s_len) != 0) {
                    j->p = at;
                    return sv__json_fail(j, is_nemesis ? "\"nemesis\" must be a string"
                                                       : "\"detail\" must be a string");
                }
                char **dst = is_nemesis ? &e->nemesis : &e->detail;
                if (*dst != NULL) {
                    j->p = at;
                    return sv__json_fail(j, "duplicate field");
                }
                *dst = dup_bytes(s, s_len);
                if (*dst == NULL) {
                    snprintf(j->msg, sizeof(j->msg), "out of memory");
                    return -ENOMEM;
                }
            } else if (len == 5 && memcmp(name, "event", 5) == 0) {
                if (!is_string || sv__json_string(j, &s, &s_len) != 0 ||
                    !((s_len == 5 && memcmp(s, "start", 5) == 0) ||
                      (s_len == 4 && memcmp(s, "stop", 4) == 0))) {
                    j->p = at;
                    return sv__json_fail(j, "\"event\" must be \"start\" or \"stop\"");
                }
                e->start = s_len == 5;
                has_event = true;
            } else if (sv__json_skip(j) != 0) {
                return -EINVAL;
            }
        } while (sv__json_eat(j, ','));
        if (!sv__json_eat(j, '}'))
            return sv__json_fail(j, "expected ',' or '}'");
    }
    if (sv__json_end(j) != 0)
        return -EINVAL;
    const char *missing = !has_time            ? "time"
                          : e->nemesis == NULL ? "nemesis"
                          : !has_event         ? "event"
                                               : NULL;
    if (missing != NULL) {
        snprintf(j->msg, sizeof(j->msg), "missing \"%s\"", missing);
        return -EINVAL;
    }
    return 0;
}

static void faults_free(struct fault_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ev[i].nemesis);
        free(ev[i].detail);
    }
    free(ev);
}

/* Reads nemesis.jsonl into *out (n events). Returns 0, or -1 with msg. */
static int read_faults(const char *path, struct fault_event **out, size_t *n, char *msg,
                       size_t msg_len)
{
    FILE *in = fopen(path, "r");
    if (in == NULL) {
        snprintf(msg, msg_len, "%s", strerror(errno));
        return -1;
    }
    int rc = -1;
    char *line = NULL;
    size_t cap = 0;
    char *scratch = malloc(2 * (size_t)NEMESIS_LINE_BYTES_MAX);
    struct fault_event *ev = calloc(64, sizeof(*ev));
    size_t n_ev = 0, ev_cap = 64;
    if (scratch == NULL || ev == NULL) {
        snprintf(msg, msg_len, "out of memory");
        goto out;
    }
    for (uint32_t line_no = 1;; line_no++) {
        errno = 0;
        ssize_t len = getline(&line, &cap, in);
        if (len < 0) {
            if (errno != 0) {
                snprintf(msg, msg_len, "read error: %s", strerror(errno));
                goto out;
            }
            break;
        }
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (len > NEMESIS_LINE_BYTES_MAX) {
            snprintf(msg, msg_len, "line %" PRIu32 ": longer than %d bytes", line_no,
                     NEMESIS_LINE_BYTES_MAX);
            goto out;
        }
        if (memchr(line, '\0', (size_t)len) != NULL) {
            snprintf(msg, msg_len, "line %" PRIu32 ": NUL byte", line_no);
            goto out;
        }
        struct json j = {.start = line, .p = line, .end = line + len, .scratch = scratch};
        sv__json_skip_ws(&j);
        if (j.p == j.end)
            continue;
        if (n_ev == NEMESIS_EVENTS_MAX) {
            snprintf(msg, msg_len, "line %" PRIu32 ": more than %d events", line_no,
                     NEMESIS_EVENTS_MAX);
            goto out;
        }
        if (n_ev == ev_cap) {
            struct fault_event *more = realloc(ev, 2 * ev_cap * sizeof(*ev));
            if (more == NULL) {
                snprintf(msg, msg_len, "out of memory");
                goto out;
            }
            ev = more;
            ev_cap *= 2;
        }
        struct fault_event *e = &ev[n_ev++];
        memset(e, 0, sizeof(*e));
        e->line = line_no;
        if (parse_fault(&j, e) != 0) {
            snprintf(msg, msg_len, "line %" PRIu32 ": %s", line_no, j.msg);
            goto out;
        }
    }
    rc = 0;
out:
    free(line);
    free(scratch);
    fclose(in);
    if (rc != 0)
        faults_free(ev, n_ev);
    else {
        *out = ev;
        *n = n_ev;
    }
    return rc;
}

/* Pairs each start with the next stop of the same nemesis; a start without
 * one lasts to t_end, a stop without a start is only listed. */
static size_t make_bands(const struct fault_event *ev, size_t n, int64_t t_end, struct band *bands)
{
    size_t n_bands = 0;
    for (size_t i = 0; i < n && n_bands < BANDS_MAX; i++) {
        if (!ev[i].start)
            continue;
        struct band *b = &bands[n_bands++];
        *b = (struct band){.t0 = ev[i].time, .t1 = t_end, .ev = &ev[i], .open_ended = true};
        for (size_t k = i + 1; k < n; k++) {
            if (strcmp(ev[k].nemesis, ev[i].nemesis) != 0)
                continue;
            if (ev[k].start)
                break; /* started again before a stop: this one never stopped */
            b->t1 = ev[k].time;
            b->open_ended = false;
            break;
        }
    }
    return n_bands;
}

/* ---- HTML ---- */

static void esc_n(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(s[i], out);
        }
    }
}

static void esc(FILE *out, const char *s)
{
    esc_n(out, s, strlen(s));
}

/* At most `max` characters of s (not splitting a UTF-8 sequence), escaped. */
static void esc_cut(FILE *out, const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max) {
        esc_n(out, s, len);
        return;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    esc_n(out, s, max);
    fputs("…", out);
}

static const char *const nemesis_fills[] = {"#d62728", "#1f77b4", "#9467bd",
                                            "#8c564b", "#e377c2", "#17becf"};

static const char *nemesis_fill(const char *name)
{
    unsigned h = 0;
    for (const char *c = name; *c; c++)
        h = h * 31 + (unsigned char)*c;
    return nemesis_fills[h % (sizeof(nemesis_fills) / sizeof(nemesis_fills[0]))];
}

static const char *const f_fills[] = {
    [F_READ] = "#1f77b4", [F_WRITE] = "#9467bd", [F_CAS] = "#17becf", [F_ADD] = "#8c564b"};
static const char OK_FILL[] = "#2ca02c", FAIL_FILL[] = "#ff7f0e", INFO_FILL[] = "#b5ad8a";

struct axis {
    int64_t t_end; /* ns; > 0 */
    double plot_w;
};

static double x_of(const struct axis *a, int64_t t)
{
    return PLOT_L + (double)t / (double)a->t_end * a->plot_w;
}

/* A step of 1, 2 or 5 times a power of ten giving at most `max` ticks over span. */
static double nice_step(double span, int max)
{
    static const double mult[] = {1, 2, 5};
    if (span <= 0)
        span = 1;
    double base = pow(10, floor(log10(span / max)));
    for (int i = 0; i < 3; i++)
        if (span / (base * mult[i]) <= max)
            return base * mult[i];
    return base * 10;
}

/* The time axis (seconds) under a plot of height plot_h. */
static void time_axis(FILE *out, const struct axis *a, double plot_h)
{
    double span_s = (double)a->t_end / 1e9;
    double step = nice_step(span_s, 12);
    double y = PLOT_T + plot_h;
    fprintf(out, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", PLOT_L, y,
            PLOT_L + a->plot_w, y);
    for (double s = 0; s <= span_s + step * 1e-6; s += step) {
        double x = PLOT_L + s / span_s * a->plot_w;
        fprintf(out,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>"
                "<text x='%.1f' y='%.1f' text-anchor='middle' class='tick'>%g</text>\n",
                x, y, x, y + 5, x, y + 18, s);
    }
    fprintf(out,
            "<text x='%.1f' y='%.1f' text-anchor='middle' class='label'>time since the "
            "start of the run (s)</text>\n",
            PLOT_L + a->plot_w / 2, y + 36);
}

/* Fault bands over a plot of height plot_h; labelled with the detail when `detail`. */
static void draw_bands(FILE *out, const struct axis *a, const struct band *b, size_t n,
                       double plot_h, bool detail)
{
    for (size_t i = 0; i < n; i++) {
        double x0 = x_of(a, b[i].t0), x1 = x_of(a, b[i].t1);
        if (x1 - x0 < 1)
            x1 = x0 + 1;
        const char *fill = nemesis_fill(b[i].ev->nemesis);
        fprintf(out, "<g><title>");
        esc(out, b[i].ev->nemesis);
        fprintf(out, " %.3f s .. %.3f s%s", (double)b[i].t0 / 1e9, (double)b[i].t1 / 1e9,
                b[i].open_ended ? " (no stop: to the end of the run)" : "");
        if (b[i].ev->detail != NULL) {
            fputs(": ", out);
            esc(out, b[i].ev->detail);
        }
        fprintf(out,
                "</title><rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s' "
                "fill-opacity='0.13' stroke='%s' stroke-opacity='0.5'%s/>",
                x0, PLOT_T, x1 - x0, plot_h, fill, fill,
                b[i].open_ended ? " stroke-dasharray='4 3'" : "");
        fprintf(out, "<text x='%.1f' y='%.1f' class='band' fill='%s'>", x0 + 2,
                PLOT_T - 4 - (double)(i % 3) * 11, fill);
        esc(out, b[i].ev->nemesis);
        if (detail && b[i].ev->detail != NULL) {
            fputs(": ", out);
            esc_cut(out, b[i].ev->detail, LABEL_CHARS_MAX);
        }
        fputs("</text></g>\n", out);
    }
}

static const char *outcome(const struct hist_op *o)
{
    return o->done == NULL || o->done->type == EV_INFO ? "info"
           : o->done->type == EV_OK                    ? "ok"
                                                       : "fail";
}

static void op_title(FILE *out, const struct hist *h, const struct hist_op *o)
{
    fprintf(out, "<title>process %" PRId64 " %s %s", o->inv->process, sv__hist_f_names[o->inv->f],
            outcome(o));
    if (o->done != NULL)
        fprintf(out, " %.3f ms", (double)(o->done->time - o->inv->time) / 1e6);
    else
        fputs(" (never completed)", out);
    if (o->done != NULL && o->done->err != 0) {
        size_t len;
        bool is_int;
        const char *s = sv__intern_bytes(&h->errors, o->done->err, &len, &is_int);
        fputs(": ", out);
        esc_n(out, s, len);
    }
    fputs("</title>", out);
}

struct view {
    const struct hist *h;
    struct axis a;
    const struct band *bands;
    size_t n_bands;
    size_t stride; /* draw every stride-th operation */
    int64_t rows, row_mod;
};

static int64_t row_of(const struct view *v, int64_t process)
{
    if (v->row_mod == 0)
        return process - v->h->process_min;
    return ((process % v->row_mod) + v->row_mod) % v->row_mod;
}

static void timeline(FILE *out, const struct view *v)
{
    const struct hist *h = v->h;
    double rh = v->rows <= 32 ? 14 : 9;
    double plot_h = (double)v->rows * rh;
    fprintf(out,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' role='img'>\n"
            "<title>Timeline: one bar per operation from invocation to completion</title>\n"
            "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
            "patternTransform='rotate(45)'><rect width='6' height='6' fill='%s' "
            "fill-opacity='0.35'/><line x1='0' y1='0' x2='0' y2='6' stroke='%s' "
            "stroke-width='3'/></pattern></defs>\n",
            CHART_W, PLOT_T + plot_h + PLOT_B, INFO_FILL, INFO_FILL);
    draw_bands(out, &v->a, v->bands, v->n_bands, plot_h, true);
    for (int64_t r = 0; r < v->rows; r++) {
        double y = PLOT_T + (double)r * rh;
        if (r % 2 == 1)
            fprintf(out,
                    "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#000' "
                    "fill-opacity='0.03'/>",
                    PLOT_L, y, v->a.plot_w, rh);
        if (v->rows <= 32 || r % 4 == 0)
            fprintf(out,
                    "<text x='%.1f' y='%.1f' text-anchor='end' class='tick'>%" PRId64 "</text>\n",
                    PLOT_L - 6, y + rh - 3, v->row_mod ? r : r + h->process_min);
    }
    bool titles = h->n_ops / v->stride <= TITLES_MAX;
    /* Indeterminate operations first, so that the operations a process ran
     * after giving up on one are drawn over its bar. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < h->n_ops; i += v->stride) {
            const struct hist_op *o = &h->ops[i];
            bool info = o->done == NULL || o->done->type == EV_INFO;
            if (info != (pass == 0))
                continue;
            double x0 = x_of(&v->a, o->inv->time);
            double x1 = info ? x_of(&v->a, v->a.t_end) : x_of(&v->a, o->done->time);
            double y = PLOT_T + (double)row_of(v, o->inv->process) * rh + 1;
            const char *fill = info ? "url(#hatch)" : o->done->type == EV_OK ? OK_FILL : FAIL_FILL;
            fprintf(out, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'%s>", x0, y,
                    x1 - x0 < 1 ? 1 : x1 - x0, rh - 2, fill, info ? " fill-opacity='0.6'" : "");
            if (titles || info || o->done->type != EV_OK)
                op_title(out, h, o);
            fputs("</rect>\n", out);
        }
    time_axis(out, &v->a, plot_h);
    fprintf(out,
            "<text transform='translate(16,%.1f) rotate(-90)' text-anchor='middle' "
            "class='label'>process",
            PLOT_T + plot_h / 2);
    if (v->row_mod != 0)
        fprintf(out, " mod %" PRId64, v->row_mod);
    fputs("</text>\n", out);
    fputs("</svg>\n", out);
}

static void latency(FILE *out, const struct view *v)
{
    const struct hist *h = v->h;
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < h->n_ops; i += v->stride) {
        const struct hist_op *o = &h->ops[i];
        if (o->done == NULL)
            continue;
        double ms = (double)(o->done->time - o->inv->time) / 1e6;
        if (ms > 0 && ms < lo)
            lo = ms;
        if (ms > hi)
            hi = ms;
    }
    if (hi <= 0) {
        fputs("<p>No completed operations.</p>\n", out);
        return;
    }
    double dlo = floor(log10(lo < 1e-3 ? 1e-3 : lo)), dhi = ceil(log10(hi));
    if (dhi <= dlo)
        dhi = dlo + 1;
    double plot_h = 360;
    fprintf(out,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' role='img'>\n"
            "<title>Latency of each completed operation against its invocation time</title>\n",
            CHART_W, PLOT_T + plot_h + PLOT_B);
    draw_bands(out, &v->a, v->bands, v->n_bands, plot_h, false);
    for (double d = dlo; d <= dhi; d++) {
        double y = PLOT_T + plot_h - (d - dlo) / (dhi - dlo) * plot_h;
        fprintf(out,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
                "<text x='%.1f' y='%.1f' text-anchor='end' class='tick'>%g</text>\n",
                PLOT_L, y, PLOT_L + v->a.plot_w, y, PLOT_L - 6, y + 4, pow(10, d));
    }
    fprintf(out, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", PLOT_L, PLOT_T,
            PLOT_L, PLOT_T + plot_h);
    bool titles = h->n_ops / v->stride <= TITLES_MAX;
    for (size_t i = 0; i < h->n_ops; i += v->stride) {
        const struct hist_op *o = &h->ops[i];
        if (o->done == NULL)
            continue;
        double ms = (double)(o->done->time - o->inv->time) / 1e6;
        double l = log10(ms < pow(10, dlo) ? pow(10, dlo) : ms);
        double x = x_of(&v->a, o->inv->time);
        double y = PLOT_T + plot_h - (l - dlo) / (dhi - dlo) * plot_h;
        const char *fill = f_fills[o->inv->f];
        if (o->done->type == EV_OK)
            fprintf(out, "<circle cx='%.1f' cy='%.1f' r='2' fill='%s'>", x, y, fill);
        else if (o->done->type == EV_FAIL)
            fprintf(out,
                    "<path d='M%.1f %.1fl5 5m0 -5l-5 5' stroke='%s' stroke-width='1.5' "
                    "fill='none'>",
                    x - 2.5, y - 2.5, fill);
        else
            fprintf(out, "<circle cx='%.1f' cy='%.1f' r='3' fill='none' stroke='%s'>", x, y, fill);
        if (titles || o->done->type != EV_OK)
            op_title(out, h, o);
        fputs(o->done->type == EV_FAIL ? "</path>\n" : "</circle>\n", out);
    }
    time_axis(out, &v->a, plot_h);
    fprintf(out,
            "<text transform='translate(18,%.1f) rotate(-90)' text-anchor='middle' "
            "class='label'>latency (ms, log scale)</text>\n",
            PLOT_T + plot_h / 2);
    fputs("</svg>\n", out);
}

static void throughput(FILE *out, const struct view *v)
{
    const struct hist *h = v->h;
    /* One-second buckets; shorter ones (at least 10) for a run under 20 s. */
    int64_t bucket_ns = 1000000000;
    if (v->a.t_end < 20 * bucket_ns)
        bucket_ns = (int64_t)nice_step((double)v->a.t_end, 20);
    if (bucket_ns < 1)
        bucket_ns = 1;
    while (v->a.t_end / bucket_ns >= BUCKETS_MAX)
        bucket_ns *= 2;
    size_t n = (size_t)(v->a.t_end / bucket_ns) + 1;
    size_t(*count)[3] = calloc(n, sizeof(*count));
    if (count == NULL) {
        fputs("<p>Out of memory drawing the throughput.</p>\n", out);
        return;
    }
    for (size_t i = 0; i < h->n_ops; i++) {
        const struct event *d = h->ops[i].done;
        if (d == NULL)
            continue;
        count[d->time / bucket_ns][d->type == EV_OK ? 0 : d->type == EV_FAIL ? 1 : 2]++;
    }
    double bucket_s = (double)bucket_ns / 1e9, max = 0;
    for (size_t b = 0; b < n; b++)
        for (int k = 0; k < 3; k++)
            if ((double)count[b][k] / bucket_s > max)
                max = (double)count[b][k] / bucket_s;
    if (max == 0)
        max = 1;
    double step = nice_step(max, 6);
    double top = ceil(max / step) * step, plot_h = 240;
    fprintf(out,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' role='img'>\n"
            "<title>Completions per second by outcome</title>\n",
            CHART_W, PLOT_T + plot_h + PLOT_B);
    draw_bands(out, &v->a, v->bands, v->n_bands, plot_h, false);
    for (double y_v = 0; y_v <= top + step * 1e-6; y_v += step) {
        double y = PLOT_T + plot_h - y_v / top * plot_h;
        fprintf(out,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>"
                "<text x='%.1f' y='%.1f' text-anchor='end' class='tick'>%g</text>\n",
                PLOT_L, y, PLOT_L + v->a.plot_w, y, PLOT_L - 6, y + 4, y_v);
    }
    static const char *const fills[3] = {OK_FILL, FAIL_FILL, "#8a8266"};
    for (int k = 0; k < 3; k++) {
        fprintf(out, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", fills[k]);
        for (size_t b = 0; b < n; b++) {
            int64_t start = (int64_t)b * bucket_ns; /* <= t_end */
            int64_t mid = v->a.t_end - start < bucket_ns / 2 ? v->a.t_end : start + bucket_ns / 2;
            double x = x_of(&v->a, mid);
            double y = PLOT_T + plot_h - (double)count[b][k] / bucket_s / top * plot_h;
            fprintf(out, "%.1f,%.1f ", x, y);
        }
        fputs("'/>\n", out);
    }
    free(count);
    time_axis(out, &v->a, plot_h);
    fprintf(out,
            "<text transform='translate(18,%.1f) rotate(-90)' text-anchor='middle' "
            "class='label'>completions per second (%g s buckets)</text>\n",
            PLOT_T + plot_h / 2, bucket_s);
    fputs("</svg>\n", out);
}

static void legend_item(FILE *out, const char *swatch, const char *label)
{
    fprintf(out, "<span class='item'><svg width='22' height='12'>%s</svg>%s</span>\n", swatch,
            label);
}

static void field_rows(FILE *out, const struct doc *d, const char *skip)
{
    for (size_t i = 0; i < d->n; i++) {
        if (skip != NULL && strcmp(d->f[i].name, skip) == 0)
            continue;
        fputs("<tr><th>", out);
        esc(out, d->f[i].name);
        fputs(d->f[i].is_string || strlen(d->f[i].value) < 80 ? "</th><td>" : "</th><td><pre>",
              out);
        esc(out, d->f[i].value);
        fputs(d->f[i].is_string || strlen(d->f[i].value) < 80 ? "</td></tr>\n"
                                                              : "</pre></td></tr>\n",
              out);
    }
}

struct error_count {
    uint32_t id;
    size_t n;
};

static int error_count_cmp(const void *pa, const void *pb)
{
    const struct error_count *a = pa, *b = pb;
    if (a->n != b->n)
        return a->n > b->n ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void errors_table(FILE *out, const struct hist *h)
{
    if (h->errors.n == 0)
        return;
    struct error_count *c = calloc(h->errors.n, sizeof(*c));
    if (c == NULL)
        return;
    for (size_t i = 0; i < h->errors.n; i++)
        c[i].id = (uint32_t)i + 1;
    for (size_t i = 0; i < h->n; i++)
        if (h->ev[i].err != 0)
            c[h->ev[i].err - 1].n++;
    qsort(c, h->errors.n, sizeof(*c), error_count_cmp);
    fprintf(out, "<h2>Client errors</h2>\n<table><tr><th>count</th><th>error (on fail and info "
                 "completions)</th></tr>\n");
    for (size_t i = 0; i < h->errors.n && i < ERRORS_SHOWN_MAX; i++) {
        size_t len;
        bool is_int;
        const char *s = sv__intern_bytes(&h->errors, c[i].id, &len, &is_int);
        fprintf(out, "<tr><td>%zu</td><td>", c[i].n);
        esc_n(out, s, len);
        fputs("</td></tr>\n", out);
    }
    fputs("</table>\n", out);
    if (h->errors.n > ERRORS_SHOWN_MAX || h->errors_dropped > 0)
        fprintf(out,
                "<p class='note'>%zu distinct error texts (the %d most frequent shown); "
                "%zu more events carried texts past the first %d distinct ones.</p>\n",
                h->errors.n, ERRORS_SHOWN_MAX, h->errors_dropped, HIST_ERRORS_MAX);
    free(c);
}

struct inputs {
    const char *history, *results, *nemesis, *run, *out;
};

static void write_report(FILE *out, const struct inputs *in, const struct hist *h,
                         const struct doc *results, const struct doc *run,
                         const struct fault_event *faults, size_t n_faults)
{
    const struct field *valid = doc_get(results, "valid");
    const char *verdict = strcmp(valid->value, "true") == 0    ? "valid"
                          : strcmp(valid->value, "false") == 0 ? "invalid"
                                                               : "unknown";
    const char *banner = strcmp(verdict, "valid") == 0     ? "VALID"
                         : strcmp(verdict, "invalid") == 0 ? "INVALID"
                                                           : "NO VERDICT (unknown)";
    const char *workload = sv__hist_kind_names[h->kind];

    struct view v = {.h = h, .bands = NULL};
    int64_t t_end = h->time_max;
    for (size_t i = 0; i < n_faults; i++)
        if (faults[i].time > t_end)
            t_end = faults[i].time;
    v.a.t_end = t_end > 0 ? t_end : 1;
    v.a.plot_w = CHART_W - PLOT_L - PLOT_R;
    struct band *bands = calloc(BANDS_MAX, sizeof(*bands));
    if (bands != NULL)
        v.n_bands = make_bands(faults, n_faults, v.a.t_end, bands);
    v.bands = bands;
    v.stride = h->n_ops > MARKS_MAX ? (h->n_ops + MARKS_MAX - 1) / MARKS_MAX : 1;
    if (h->n_ops == 0) {
        v.rows = 1;
    } else if ((uint64_t)h->process_max - (uint64_t)h->process_min < ROWS_MAX) {
        v.rows = (int64_t)((uint64_t)h->process_max - (uint64_t)h->process_min) + 1;
    } else {
        const struct field *c = doc_get(run, "concurrency");
        long long conc = c != NULL && !c->is_string ? strtoll(c->value, NULL, 10) : 0;
        v.row_mod = conc > 0 && conc <= ROWS_MAX ? conc : ROWS_MAX;
        v.rows = v.row_mod;
    }

    fprintf(out,
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n"
            "<title>ShardVault Jepsen: %s run, %s</title>\n",
            workload, verdict);
    fputs(
        "<style>\n"
        "body{font-family:sans-serif;margin:24px;color:#222;max-width:1240px}\n"
        ".banner{font-size:28px;font-weight:bold;color:#fff;padding:14px 20px;border-radius:6px}\n"
        ".valid{background:#2ca02c}.invalid{background:#d62728}.unknown{background:#c7a500}\n"
        "table{border-collapse:collapse;margin:8px 0}\n"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;"
        "font-size:13px}\n"
        "th{background:#f3f3f3}pre{margin:0;white-space:pre-wrap;word-break:break-all;"
        "max-height:300px;overflow:auto}\n"
        ".tick{font-size:11px;fill:#333}.label{font-size:12px;fill:#222}"
        ".band{font-size:10px}\n"
        ".legend .item{margin-right:16px;font-size:13px;white-space:nowrap}"
        ".legend svg{vertical-align:middle;margin-right:4px}\n"
        ".note{color:#555;font-size:13px}\n"
        "</style></head><body>\n",
        out);
    fprintf(out, "<h1>ShardVault Jepsen run: %s workload</h1>\n", workload);
    fprintf(out, "<div class='banner %s'>%s</div>\n", verdict, banner);

    fputs("<h2>Run</h2>\n", out);
    if (run->n == 0)
        fputs("<p class='note'>No run.json given.</p>\n", out);
    else {
        fputs("<table>\n", out);
        field_rows(out, run, NULL);
        fputs("</table>\n", out);
    }

    fputs("<h2>Results</h2>\n<table>\n", out);
    fprintf(out,
            "<tr><th>events</th><td>%zu invoke, %zu ok, %zu fail, %zu info (%zu operations, "
            "%zu never completed)</td></tr>\n",
            h->count[EV_INVOKE], h->count[EV_OK], h->count[EV_FAIL], h->count[EV_INFO], h->n_ops,
            h->count[EV_INVOKE] - (h->count[EV_OK] + h->count[EV_FAIL] + h->count[EV_INFO]));
    field_rows(out, results, "anomalies");
    const struct field *anomalies = doc_get(results, "anomalies");
    if (anomalies != NULL) {
        fputs("<tr><th>anomalies</th><td><pre>", out);
        esc(out, anomalies->value);
        fputs("</pre></td></tr>\n", out);
    }
    fputs("</table>\n", out);

    fprintf(out, "<h2>Faults</h2>\n");
    if (in->nemesis == NULL)
        fputs("<p class='note'>No nemesis.jsonl given.</p>\n", out);
    else if (n_faults == 0)
        fputs("<p class='note'>No fault events.</p>\n", out);
    else {
        fputs("<table><tr><th>time (s)</th><th>nemesis</th><th>event</th><th>detail</th></tr>\n",
              out);
        for (size_t i = 0; i < n_faults && i < TABLE_ROWS_MAX; i++) {
            fprintf(out, "<tr><td>%.3f</td><td style='color:%s'>", (double)faults[i].time / 1e9,
                    nemesis_fill(faults[i].nemesis));
            esc(out, faults[i].nemesis);
            fprintf(out, "</td><td>%s</td><td>", faults[i].start ? "start" : "stop");
            if (faults[i].detail != NULL)
                esc(out, faults[i].detail);
            fputs("</td></tr>\n", out);
        }
        fputs("</table>\n", out);
        if (n_faults > TABLE_ROWS_MAX)
            fprintf(out, "<p class='note'>First %d of %zu fault events listed.</p>\n",
                    TABLE_ROWS_MAX, n_faults);
        if (v.n_bands == BANDS_MAX)
            fprintf(out, "<p class='note'>Only the first %d fault intervals are drawn.</p>\n",
                    BANDS_MAX);
    }
    errors_table(out, h);

    fputs("<h2>Timeline</h2>\n<p class='legend'>\n", out);
    legend_item(out, "<rect x='1' y='2' width='20' height='8' fill='#2ca02c'/>", "ok");
    legend_item(out, "<rect x='1' y='2' width='20' height='8' fill='#ff7f0e'/>", "fail");
    legend_item(out, "<rect x='1' y='2' width='20' height='8' fill='#b5ad8a' fill-opacity='0.6'/>",
                "info or never completed (drawn to the end of the run: it may take effect "
                "any time after its invocation)");
    legend_item(out,
                "<rect x='1' y='1' width='20' height='10' fill='#d62728' fill-opacity='0.13' "
                "stroke='#d62728' stroke-opacity='0.5'/>",
                "fault interval (dashed: never stopped)");
    fputs("</p>\n", out);
    if (v.stride > 1)
        fprintf(out,
                "<p class='note'>%zu operations: the timeline and latency charts show 1 in "
                "%zu operations (%zu of them); the throughput chart counts all.</p>\n",
                h->n_ops, v.stride, (h->n_ops + v.stride - 1) / v.stride);
    if (v.row_mod != 0)
        fprintf(out,
                "<p class='note'>Processes %" PRId64 "..%" PRId64 " drawn on %" PRId64
                " rows (process mod %" PRId64 ").</p>\n",
                h->process_min, h->process_max, v.rows, v.row_mod);
    timeline(out, &v);

    fputs("<h2>Latency</h2>\n<p class='legend'>\n", out);
    for (int f = F_READ; f <= F_ADD; f++) {
        char swatch[128];
        snprintf(swatch, sizeof(swatch), "<rect x='1' y='2' width='20' height='8' fill='%s'/>",
                 f_fills[f]);
        legend_item(out, swatch, sv__hist_f_names[f]);
    }
    legend_item(out, "<circle cx='11' cy='6' r='3' fill='#555'/>", "ok");
    legend_item(out, "<path d='M8.5 3.5l5 5m0 -5l-5 5' stroke='#555' stroke-width='1.5'/>", "fail");
    legend_item(out, "<circle cx='11' cy='6' r='3.5' fill='none' stroke='#555'/>",
                "info (time until the client gave up)");
    fputs("</p>\n", out);
    latency(out, &v);

    fputs("<h2>Throughput</h2>\n<p class='legend'>\n", out);
    legend_item(out, "<line x1='1' y1='6' x2='21' y2='6' stroke='#2ca02c' stroke-width='2'/>",
                "ok");
    legend_item(out, "<line x1='1' y1='6' x2='21' y2='6' stroke='#ff7f0e' stroke-width='2'/>",
                "fail");
    legend_item(out, "<line x1='1' y1='6' x2='21' y2='6' stroke='#8a8266' stroke-width='2'/>",
                "info");
    fputs("</p>\n", out);
    throughput(out, &v);

    fputs("<h2>Inputs</h2>\n<table>\n", out);
    const char *names[] = {"history", "results", "nemesis", "run"};
    const char *paths[] = {in->history, in->results, in->nemesis, in->run};
    for (int i = 0; i < 4; i++) {
        fprintf(out, "<tr><th>%s</th><td>", names[i]);
        esc(out, paths[i] != NULL ? paths[i] : "(none)");
        fputs("</td></tr>\n", out);
    }
    fputs("</table>\n</body></html>\n", out);
    free(bands);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sv-report --history HISTORY --results RESULTS [--nemesis NEMESIS]\n"
            "                 [--run RUN] --out REPORT\n"
            "Write REPORT, one self-contained HTML file (inline SVG, no scripts) of a\n"
            "Jepsen run: the verdict, the run's settings, the faults, and charts of the\n"
            "operations (timeline, latency, throughput) with fault intervals as bands.\n"
            "  --history  history.jsonl (as sv-check reads it; times in ns since the start)\n"
            "  --results  results.json (sv-check's output; needs \"valid\")\n"
            "  --nemesis  nemesis.jsonl: {\"time\": NS, \"nemesis\": NAME,\n"
            "             \"event\": \"start\"|\"stop\", \"detail\": TEXT} per line\n"
            "  --run      run.json: a JSON object of the run's settings, shown as a table\n"
            "Exit status: 0 written, 2 unreadable or malformed input (file and line named).\n");
}

int main(int argc, char **argv)
{
    struct inputs in = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        const char **dst = strcmp(a, "--history") == 0   ? &in.history
                           : strcmp(a, "--results") == 0 ? &in.results
                           : strcmp(a, "--nemesis") == 0 ? &in.nemesis
                           : strcmp(a, "--run") == 0     ? &in.run
                           : strcmp(a, "--out") == 0     ? &in.out
                                                         : NULL;
        if (dst == NULL || *dst != NULL || i + 1 >= argc) {
            usage(stderr);
            return EXIT_BROKEN;
        }
        *dst = argv[++i];
    }
    if (in.history == NULL || in.results == NULL || in.out == NULL) {
        usage(stderr);
        return EXIT_BROKEN;
    }
    int status = EXIT_BROKEN;
    char msg[MSG_MAX] = "";
    const char *bad = in.history;
    struct hist h = {0};
    struct doc results = {0}, run = {0};
    struct fault_event *faults = NULL;
    size_t n_faults = 0;

    FILE *f = fopen(in.history, "r");
    if (f == NULL) {
        snprintf(msg, sizeof(msg), "%s", strerror(errno));
        goto err;
    }
    int rc = sv__hist_read(f, &h, msg, sizeof(msg));
    fclose(f);
    if (rc != 0)
        goto err;
    bad = in.results;
    if (read_doc(in.results, &results, msg, sizeof(msg)) != 0)
        goto err;
    if (doc_get(&results, "valid") == NULL) {
        snprintf(msg, sizeof(msg), "no \"valid\" field (not sv-check's output?)");
        goto err;
    }
    bad = in.run;
    if (in.run != NULL && read_doc(in.run, &run, msg, sizeof(msg)) != 0)
        goto err;
    bad = in.nemesis;
    if (in.nemesis != NULL && read_faults(in.nemesis, &faults, &n_faults, msg, sizeof(msg)) != 0)
        goto err;

    bad = in.out;
    f = fopen(in.out, "w");
    if (f == NULL) {
        snprintf(msg, sizeof(msg), "%s", strerror(errno));
        goto err;
    }
    write_report(f, &in, &h, &results, &run, faults, n_faults);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        snprintf(msg, sizeof(msg), "write error: %s", strerror(errno));
        goto err;
    }
    status = EXIT_OK;
    goto out;

err:
    fprintf(stderr, "sv-report: %s: %s\n", bad, msg);
out:
    faults_free(faults, n_faults);
    doc_free(&run);
    doc_free(&results);
    sv__hist_free(&h);
    return status;
}
