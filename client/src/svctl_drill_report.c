/* svctl dr drill: the record's figures (RPO, RTO, lag) and its reports (text, JSON,
 * one self-contained HTML page), computed from the record alone: no clock, no network. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svctl.h"
#include "svctl_drill.h"

enum {
    HTML_BUCKETS = 200, /* columns of the acknowledgment chart */
};

/* SVG geometry (user units = CSS pixels). */
static const double SVG_W = 1100, SVG_L = 150, SVG_R = 20, ROW_H = 22;

const char *const sv__drill_step_names[SV__DRILL_STEPS] = {
    [SV__DRILL_PREFLIGHT] = "preflight",
    [SV__DRILL_LOAD] = "load",
    [SV__DRILL_LAG] = "lag",
    [SV__DRILL_OUTAGE] = "outage",
    [SV__DRILL_PROMOTE] = "promote",
    [SV__DRILL_RTO] = "first-write",
    [SV__DRILL_VERIFY] = "verify",
    [SV__DRILL_RESTORE] = "restore",
    [SV__DRILL_FENCED] = "fenced",
    [SV__DRILL_FAILBACK] = "failback",
    [SV__DRILL_LEDGER] = "ledger",
    [SV__DRILL_SWITCHBACK] = "switchback",
};

const char *sv__drill_status_name(enum sv__drill_status s)
{
    switch (s) {
    case SV__DRILL_OK:
        return "ok";
    case SV__DRILL_FAILED:
        return "failed";
    case SV__DRILL_SKIPPED:
        return "skipped";
    case SV__DRILL_NOT_BUILT:
        return "not built";
    default:
        return "not run";
    }
}

static const char *check_name(uint8_t c)
{
    switch (c) {
    case SV__DRILL_PRESENT:
        return "present";
    case SV__DRILL_MISSING:
        return "missing";
    case SV__DRILL_DIFFERS:
        return "differs";
    case SV__DRILL_UNREADABLE:
        return "unreadable";
    default:
        return "unchecked";
    }
}

void sv__drill_init(struct sv__drill *d)
{
    memset(d, 0, sizeof(*d));
    for (int i = 0; i < SV__DRILL_STEPS; i++)
        d->steps[i].start_ms = d->steps[i].end_ms = -1;
    d->start_ms = d->end_ms = d->t_out_ms = -1;
    d->cut_ms = d->cut_max_ms = d->promoted_ms = d->open_ms = -1;
    d->ledger_size = d->ledger_matched = d->switchback_paused_ms = -1;
}

void sv__drill_free(struct sv__drill *d)
{
    free(d->acks);
    d->acks = NULL;
    d->n_acks = d->cap_acks = 0;
}

bool sv__drill_add_ack(struct sv__drill *d, const struct sv__drill_ack *a)
{
    if (d->n_acks == d->cap_acks) {
        if (d->cap_acks >= SV__DRILL_ACKS_MAX) {
            d->acks_full = true;
            return false;
        }
        size_t cap = d->cap_acks ? d->cap_acks * 2 : 4096;
        if (cap > SV__DRILL_ACKS_MAX)
            cap = SV__DRILL_ACKS_MAX;
        struct sv__drill_ack *n = realloc(d->acks, cap * sizeof(*n));
        if (n == NULL)
            return false;
        d->acks = n;
        d->cap_acks = cap;
    }
    d->acks[d->n_acks++] = *a;
    return true;
}

void sv__drill_key(const char *run, uint32_t client, uint32_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "%s/c%" PRIu32 "-%" PRIu32, run, client, seq);
}

/* splitmix64: a small generator good enough to make each write's bytes its own. */
static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sv__drill_payload(const char *run, uint32_t client, uint32_t seq, uint8_t *out, size_t len)
{
    uint64_t s = 1469598103934665603ull; /* FNV-1a of the run name, then the numbers */
    for (const char *p = run; *p; p++)
        s = (s ^ (uint8_t)*p) * 1099511628211ull;
    s ^= ((uint64_t)client << 32) | seq;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = mix(&s);
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(out + i, &v, n);
    }
}

void sv__drill_step_end(struct sv__drill *d, enum sv__drill_step_id id, enum sv__drill_status st,
                        int64_t now_ms, const char *fmt, ...)
{
    struct sv__drill_step *s = &d->steps[id];
    s->status = st;
    s->end_ms = now_ms;
    if (s->start_ms < 0)
        s->start_ms = now_ms;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->text, sizeof(s->text), fmt, ap);
    va_end(ap);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p of sorted v[0..n). */
static int64_t rank(const int64_t *v, size_t n, unsigned p)
{
    size_t r = (n * p + 99) / 100;
    return v[r > 0 ? r - 1 : 0];
}

void sv__drill_figures(const struct sv__drill *d, struct sv__drill_figures *f)
{
    memset(f, 0, sizeof(*f));
    f->rpo_window_ms = f->rto_ms = -1;
    f->first_standby_ack_ms = f->last_primary_ack_ms = f->first_missing_ack_ms = -1;
    f->lag_p50_ms = f->lag_p99_ms = f->lag_max_ms = f->lag_last_ms = -1;
    for (size_t i = 0; i < d->n_acks; i++) {
        const struct sv__drill_ack *a = &d->acks[i];
        if (a->site == SV__DRILL_AT_STANDBY) {
            f->standby_acks++;
            if (f->first_standby_ack_ms < 0 || a->ack_ms < f->first_standby_ack_ms)
                f->first_standby_ack_ms = a->ack_ms;
            continue;
        }
        f->primary_acks++;
        if (d->t_out_ms >= 0 && a->ack_ms >= d->t_out_ms)
            f->primary_late++;
        if (a->ack_ms > f->last_primary_ack_ms)
            f->last_primary_ack_ms = a->ack_ms;
        switch (a->check) {
        case SV__DRILL_PRESENT:
            f->present++;
            /* The promotion dropped every write stamped after its cut (the
             * leader stamps a write after it was sent). */
            if (d->cut_made && d->cut_ms >= 0 && a->sent_ms > d->cut_ms + SV__DRILL_SKEW_MS)
                f->present_after_cut++;
            break;
        case SV__DRILL_MISSING:
            f->missing++;
            /* Every write the primary committed before the cut is on the
             * standby: one acknowledged before it and missing broke that. */
            if (d->cut_ms >= 0 && a->ack_ms < d->cut_ms)
                f->missing_before_cut++;
            if (f->first_missing_ack_ms < 0 || a->ack_ms < f->first_missing_ack_ms)
                f->first_missing_ack_ms = a->ack_ms;
            break;
        case SV__DRILL_DIFFERS:
            f->differs++;
            break;
        case SV__DRILL_UNREADABLE:
            f->unreadable++;
            break;
        default:
            f->unchecked++;
        }
    }
    if (d->t_out_ms >= 0 && d->cut_ms >= 0)
        f->rpo_window_ms = d->t_out_ms > d->cut_ms ? d->t_out_ms - d->cut_ms : 0;
    if (d->t_out_ms >= 0 && f->first_standby_ack_ms >= 0)
        f->rto_ms = f->first_standby_ack_ms - d->t_out_ms;
    if (d->n_lag > 0) {
        int64_t v[SV__DRILL_LAG_SAMPLES_MAX];
        memcpy(v, d->lag_ms, d->n_lag * sizeof(v[0]));
        qsort(v, d->n_lag, sizeof(v[0]), cmp_i64);
        f->lag_p50_ms = rank(v, d->n_lag, 50);
        f->lag_p99_ms = rank(v, d->n_lag, 99);
        f->lag_max_ms = v[d->n_lag - 1];
        f->lag_last_ms = d->lag_ms[d->n_lag - 1];
    }
}

bool sv__drill_passed(const struct sv__drill *d)
{
    for (int i = 0; i < SV__DRILL_STEPS; i++)
        if (d->steps[i].status != SV__DRILL_OK && d->steps[i].status != SV__DRILL_NOT_BUILT)
            return false;
    return true;
}

/* ---- text ---- */

/* "N ms" or "unknown". */
static void ms_or_unknown(int64_t ms, char *out, size_t cap)
{
    if (ms < 0)
        snprintf(out, cap, "unknown");
    else
        snprintf(out, cap, "%" PRId64 " ms", ms);
}

/* An ISO time or "unknown". */
static void when(int64_t ms, char *out, size_t cap)
{
    if (ms < 0)
        snprintf(out, cap, "unknown");
    else
        sv__iso_time((uint64_t)ms, out, cap);
}

static bool listed(const struct sv__drill_ack *a)
{
    return a->site == SV__DRILL_AT_PRIMARY && a->check != SV__DRILL_PRESENT &&
           a->check != SV__DRILL_UNCHECKED;
}

void sv__drill_text(FILE *out, const struct sv__drill *d)
{
    struct sv__drill_figures f;
    sv__drill_figures(d, &f);
    bool passed = sv__drill_passed(d);
    fprintf(out, "ShardVault disaster-recovery drill %s: %s\n", d->run,
            passed ? "PASSED (every built step passed)" : "FAILED (see the steps)");
    fprintf(out, "primary site %s (%s), standby site %s (%s)\n",
            d->primary_site[0] ? d->primary_site : "?", d->primary_endpoints,
            d->standby_site[0] ? d->standby_site : "?", d->standby_endpoints);
    fprintf(out, "\n%-12s %-10s %9s %9s  %s\n", "STEP", "STATUS", "AT", "TOOK", "WHAT");
    for (int i = 0; i < SV__DRILL_STEPS; i++) {
        const struct sv__drill_step *s = &d->steps[i];
        char at[24] = "-", took[24] = "-";
        if (s->start_ms >= 0 && d->start_ms >= 0)
            snprintf(at, sizeof(at), "%.2fs", (double)(s->start_ms - d->start_ms) / 1000.0);
        if (s->start_ms >= 0 && s->end_ms >= s->start_ms)
            snprintf(took, sizeof(took), "%.2fs", (double)(s->end_ms - s->start_ms) / 1000.0);
        fprintf(out, "%-12s %-10s %9s %9s  %s\n", sv__drill_step_names[i],
                sv__drill_status_name(s->status), at, took, s->text);
    }
    char a[48], b[48], c[48];
    ms_or_unknown(f.rpo_window_ms, a, sizeof(a));
    when(d->t_out_ms, b, sizeof(b));
    when(d->cut_ms, c, sizeof(c));
    fprintf(out, "\nRPO window:          %s (the outage %s minus the cut %s)\n", a, b, c);
    fprintf(out,
            "missing writes:      %zu of the %zu the primary acknowledged (%zu acknowledged "
            "before the cut; %zu in flight at the outage)\n",
            f.missing, f.primary_acks, f.missing_before_cut, f.primary_late);
    if (d->cut_made)
        fprintf(out,
                "after the cut:       %zu written more than %d ms after the cut read back (the "
                "promotion drops them: 0 expected)\n",
                f.present_after_cut, SV__DRILL_SKEW_MS);
    if (f.differs + f.unreadable + f.unchecked > 0)
        fprintf(out, "not read back:       %zu with other bytes, %zu unreadable, %zu unchecked\n",
                f.differs, f.unreadable, f.unchecked);
    ms_or_unknown(f.rto_ms, a, sizeof(a));
    fprintf(out, "RTO:                 %s (the outage to the first write the standby accepted)\n",
            a);
    if (d->n_lag > 0)
        fprintf(out,
                "lag before outage:   p50 %" PRId64 " ms, p99 %" PRId64 " ms, max %" PRId64
                " ms, last %" PRId64 " ms (%zu samples, %zu unknown)\n",
                f.lag_p50_ms, f.lag_p99_ms, f.lag_max_ms, f.lag_last_ms, d->n_lag, d->lag_unknown);
    else
        fprintf(out, "lag before outage:   unknown (%zu samples, none known)\n", d->lag_unknown);
    if (d->ledger_size >= 0)
        fprintf(out,
                "ledger:              %" PRId64 " writes moved into it by failback; %" PRId64
                " of the drill's %zu missing writes in it\n",
                d->ledger_size, d->ledger_matched, f.missing + f.differs + f.unreadable);
    else
        fprintf(out,
                "ledger:              unknown (failback %s); the drill's own list: %zu writes\n",
                sv__drill_status_name(d->steps[SV__DRILL_FAILBACK].status),
                f.missing + f.differs + f.unreadable);
    if (d->switchback_paused_ms >= 0)
        fprintf(out, "switch back:         writes paused %" PRId64 " ms\n",
                d->switchback_paused_ms);
    fprintf(out,
            "load:                %zu writes on the primary (%" PRIu64 " failed), %zu on the "
            "promoted site (%" PRIu64 " refused read-only before it opened, %" PRIu64
            " failed)%s\n",
            f.primary_acks, d->primary_failed, f.standby_acks, d->standby_refused,
            d->standby_failed, d->acks_full ? "; the record was full: the load stopped" : "");
    size_t shown = 0;
    for (size_t i = 0; i < d->n_acks && shown < SV__DRILL_MISSING_LISTED_MAX; i++) {
        const struct sv__drill_ack *w = &d->acks[i];
        if (!listed(w))
            continue;
        if (shown++ == 0)
            fprintf(out, "\nwrites not read back (KEY, ACKNOWLEDGED, FOUND):\n");
        char key[SV__DRILL_KEY_MAX], t[40];
        sv__drill_key(d->run, w->client, w->seq, key, sizeof(key));
        sv__iso_time((uint64_t)w->ack_ms, t, sizeof(t));
        fprintf(out, "  %s/%s  %s  %s\n", d->bucket, key, t, check_name(w->check));
    }
    if (d->out_dir != NULL)
        fprintf(out, "\nreport: %s/drill.txt, %s/drill.json, %s/drill.html\n", d->out_dir,
                d->out_dir, d->out_dir);
}

/* ---- JSON ---- */

static void json_kv_str(FILE *out, const char *sep, const char *k, const char *v)
{
    fprintf(out, "%s\"%s\":", sep, k);
    sv__json_str(out, v != NULL ? v : "");
}

void sv__drill_json(FILE *out, const struct sv__drill *d)
{
    struct sv__drill_figures f;
    sv__drill_figures(d, &f);
    json_kv_str(out, "{", "run", d->run);
    fprintf(out, ",\"passed\":%s", sv__drill_passed(d) ? "true" : "false");
    json_kv_str(out, ",", "bucket", d->bucket);
    fprintf(out, ",\"start_ms\":%" PRId64 ",\"end_ms\":%" PRId64, d->start_ms, d->end_ms);
    json_kv_str(out, ",\n\"primary\":{", "site", d->primary_site);
    json_kv_str(out, ",", "endpoints", d->primary_endpoints);
    json_kv_str(out, "},\"standby\":{", "site", d->standby_site);
    json_kv_str(out, ",", "endpoints", d->standby_endpoints);
    fprintf(out,
            "},\n\"settings\":{\"load_clients\":%" PRIu32 ",\"warmup_s\":%" PRIu32
            ",\"object_bytes\":%" PRIu32 ",\"step_timeout_s\":%" PRIu32 ",\"max_lag_ms\":%" PRId64,
            d->load_clients, d->warmup_s, d->object_bytes, d->step_timeout_s, d->max_lag_ms);
    json_kv_str(out, ",", "outage_cmd", d->outage_cmd);
    json_kv_str(out, ",", "restore_cmd", d->restore_cmd);
    fputs("},\n\"steps\":[", out);
    for (int i = 0; i < SV__DRILL_STEPS; i++) {
        const struct sv__drill_step *s = &d->steps[i];
        json_kv_str(out, i ? ",\n{" : "\n{", "name", sv__drill_step_names[i]);
        json_kv_str(out, ",", "status", sv__drill_status_name(s->status));
        fprintf(out, ",\"start_ms\":%" PRId64 ",\"end_ms\":%" PRId64, s->start_ms, s->end_ms);
        json_kv_str(out, ",", "text", s->text);
        fputs("}", out);
    }
    fprintf(out,
            "],\n\"figures\":{\"t_out_ms\":%" PRId64 ",\"cut_ms\":%" PRId64
            ",\"cut_max_ms\":%" PRId64 ",\"rpo_window_ms\":%" PRId64 ",\"missing_writes\":%zu"
            ",\"missing_before_cut\":%zu,\"present_after_cut\":%zu,\"cut_made\":%s"
            ",\"rto_ms\":%" PRId64 ",\"first_standby_ack_ms\":%" PRId64 ",\"promoted_ms\":%" PRId64
            ",\"open_ms\":%" PRId64 ",\"site_epoch\":%" PRIu64,
            d->t_out_ms, d->cut_ms, d->cut_max_ms, f.rpo_window_ms, f.missing, f.missing_before_cut,
            f.present_after_cut, d->cut_made ? "true" : "false", f.rto_ms, f.first_standby_ack_ms,
            d->promoted_ms, d->open_ms, d->site_epoch);
    fprintf(out,
            ",\n\"lag_before_outage\":{\"samples\":%zu,\"unknown\":%zu,\"p50_ms\":%" PRId64
            ",\"p99_ms\":%" PRId64 ",\"max_ms\":%" PRId64 ",\"last_ms\":%" PRId64 "}",
            d->n_lag, d->lag_unknown, f.lag_p50_ms, f.lag_p99_ms, f.lag_max_ms, f.lag_last_ms);
    fprintf(out,
            ",\n\"primary_acks\":%zu,\"primary_acks_in_flight_at_outage\":%zu,\"present\":%zu"
            ",\"differs\":%zu,\"unreadable\":%zu,\"unchecked\":%zu,\"standby_acks\":%zu"
            ",\"primary_failed\":%" PRIu64 ",\"standby_refused\":%" PRIu64
            ",\"standby_failed\":%" PRIu64 ",\"acks_full\":%s},\n",
            f.primary_acks, f.primary_late, f.present, f.differs, f.unreadable, f.unchecked,
            f.standby_acks, d->primary_failed, d->standby_refused, d->standby_failed,
            d->acks_full ? "true" : "false");
    fprintf(out, "\"ledger\":{\"status\":\"%s\",\"size\":",
            sv__drill_status_name(d->steps[SV__DRILL_LEDGER].status));
    if (d->ledger_size >= 0)
        fprintf(out, "%" PRId64 ",\"matched\":%" PRId64, d->ledger_size, d->ledger_matched);
    else
        fputs("null,\"matched\":null", out);
    fprintf(out, ",\"drill_list\":%zu,\"switchback_paused_ms\":%" PRId64 "},\n",
            f.missing + f.differs + f.unreadable, d->switchback_paused_ms);
    fputs("\"missing\":[", out);
    size_t shown = 0;
    for (size_t i = 0; i < d->n_acks && shown < SV__DRILL_MISSING_LISTED_MAX; i++) {
        const struct sv__drill_ack *w = &d->acks[i];
        if (!listed(w))
            continue;
        char key[SV__DRILL_KEY_MAX];
        sv__drill_key(d->run, w->client, w->seq, key, sizeof(key));
        json_kv_str(out, shown++ ? ",\n{" : "\n{", "key", key);
        fprintf(out, ",\"sent_ms\":%" PRId64 ",\"ack_ms\":%" PRId64, w->sent_ms, w->ack_ms);
        json_kv_str(out, ",", "found", check_name(w->check));
        fputs("}", out);
    }
    fprintf(out, "],\"missing_listed\":%zu}\n", shown);
}

/* ---- HTML ---- */

static void html_str(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        const char *e = *s == '&'    ? "&amp;"
                        : *s == '<'  ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        if (e != NULL)
            fputs(e, out);
        else
            fputc(*s, out);
    }
}

static const char *status_fill(enum sv__drill_status s)
{
    switch (s) {
    case SV__DRILL_OK:
        return "#2ca02c";
    case SV__DRILL_FAILED:
        return "#d62728";
    case SV__DRILL_NOT_BUILT:
        return "#9e9e9e";
    default:
        return "#c7a500";
    }
}

struct span {
    int64_t t0, t1; /* wall ms; t1 > t0 */
    double plot_w;
};

static double x_at(const struct span *s, int64_t t)
{
    if (t < s->t0)
        t = s->t0;
    if (t > s->t1)
        t = s->t1;
    return SVG_L + (double)(t - s->t0) / (double)(s->t1 - s->t0) * s->plot_w;
}

/* A vertical marker from y0 to y1 with its label on top. */
static void marker(FILE *out, const struct span *s, int64_t t, double y0, double y1,
                   const char *color, const char *label)
{
    if (t < 0)
        return;
    double x = x_at(s, t);
    fprintf(out,
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='4 3'/>"
            "<text x='%.1f' y='%.1f' class='tick' fill='%s'>%s</text>\n",
            x, y0, x, y1, color, x + 3, y0 + 10, color, label);
}

static void axis(FILE *out, const struct span *s, double y)
{
    double span_s = (double)(s->t1 - s->t0) / 1000.0;
    double step = span_s <= 10 ? 1 : span_s <= 30 ? 2 : span_s <= 120 ? 10 : 60;
    fprintf(out, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>\n", SVG_L, y,
            SVG_L + s->plot_w, y);
    for (double t = 0; t <= span_s + 1e-9; t += step) {
        double x = SVG_L + t / span_s * s->plot_w;
        fprintf(out,
                "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#333'/>"
                "<text x='%.1f' y='%.1f' text-anchor='middle' class='tick'>%g</text>\n",
                x, y, x, y + 4, x, y + 16, t);
    }
    fprintf(out,
            "<text x='%.1f' y='%.1f' text-anchor='middle' class='tick'>seconds since the "
            "drill's start</text>\n",
            SVG_L + s->plot_w / 2, y + 30);
}

/* The steps as bars on the drill's time line, the outage, cut and first
 * write on the standby as markers. */
static void timeline(FILE *out, const struct sv__drill *d, const struct span *s,
                     const struct sv__drill_figures *f)
{
    double h = 20 + ROW_H * SV__DRILL_STEPS + 40;
    fprintf(out, "<svg width='%.0f' height='%.0f' xmlns='http://www.w3.org/2000/svg'>\n", SVG_W, h);
    for (int i = 0; i < SV__DRILL_STEPS; i++) {
        const struct sv__drill_step *st = &d->steps[i];
        double y = 20 + ROW_H * i;
        fprintf(out, "<text x='%.1f' y='%.1f' text-anchor='end' class='label'>%s</text>\n",
                SVG_L - 8, y + 15, sv__drill_step_names[i]);
        if (st->start_ms < 0) {
            fprintf(out, "<text x='%.1f' y='%.1f' class='tick'>%s</text>\n", SVG_L + 4, y + 15,
                    sv__drill_status_name(st->status));
            continue;
        }
        double x0 = x_at(s, st->start_ms), x1 = x_at(s, st->end_ms);
        if (x1 - x0 < 2)
            x1 = x0 + 2;
        fprintf(out, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'><title>%s: ", x0,
                y + 3, x1 - x0, ROW_H - 6, status_fill(st->status), sv__drill_step_names[i]);
        html_str(out, sv__drill_status_name(st->status));
        fputs(": ", out);
        html_str(out, st->text);
        fputs("</title></rect>\n", out);
    }
    double bottom = 20 + ROW_H * SV__DRILL_STEPS;
    marker(out, s, d->t_out_ms, 0, bottom, "#d62728", "outage");
    marker(out, s, d->cut_ms, 0, bottom, "#ff7f0e", "cut");
    marker(out, s, f->first_standby_ack_ms, 0, bottom, "#2ca02c", "first write");
    axis(out, s, bottom);
    fputs("</svg>\n", out);
}

/* Acknowledged writes per time bucket, by site, and the missing ones. */
static void ack_chart(FILE *out, const struct sv__drill *d, const struct span *s)
{
    unsigned prim[HTML_BUCKETS] = {0}, stby[HTML_BUCKETS] = {0};
    unsigned top = 1;
    for (size_t i = 0; i < d->n_acks; i++) {
        const struct sv__drill_ack *a = &d->acks[i];
        int64_t t = a->ack_ms < s->t0 ? s->t0 : a->ack_ms > s->t1 ? s->t1 : a->ack_ms;
        size_t b = (size_t)((t - s->t0) * (HTML_BUCKETS - 1) / (s->t1 - s->t0));
        unsigned *c = a->site == SV__DRILL_AT_PRIMARY ? &prim[b] : &stby[b];
        if (++*c > top)
            top = *c;
    }
    double plot_h = 120, y0 = 10, bw = s->plot_w / HTML_BUCKETS;
    fprintf(out, "<svg width='%.0f' height='%.0f' xmlns='http://www.w3.org/2000/svg'>\n", SVG_W,
            y0 + plot_h + 60);
    fprintf(out, "<text x='%.1f' y='%.1f' text-anchor='end' class='label'>%u</text>\n", SVG_L - 8,
            y0 + 10, top);
    fprintf(out, "<text x='%.1f' y='%.1f' text-anchor='end' class='label'>writes</text>\n",
            SVG_L - 8, y0 + plot_h / 2);
    for (size_t b = 0; b < HTML_BUCKETS; b++) {
        double x = SVG_L + bw * (double)b;
        double hp = plot_h * prim[b] / top, hs = plot_h * stby[b] / top;
        if (prim[b] > 0)
            fprintf(out, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#1f77b4'/>\n", x,
                    y0 + plot_h - hp, bw, hp);
        if (stby[b] > 0)
            fprintf(out, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#2ca02c'/>\n", x,
                    y0 + plot_h - hp - hs, bw, hs);
    }
    size_t drawn = 0;
    for (size_t i = 0; i < d->n_acks && drawn < SV__DRILL_MISSING_HTML_MAX; i++) {
        if (!listed(&d->acks[i]))
            continue;
        double x = x_at(s, d->acks[i].ack_ms);
        fprintf(out, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#d62728'/>\n", x,
                y0 + plot_h - 12, x, y0 + plot_h);
        drawn++;
    }
    marker(out, s, d->t_out_ms, y0, y0 + plot_h, "#d62728", "outage");
    marker(out, s, d->cut_ms, y0 + 14, y0 + plot_h, "#ff7f0e", "cut");
    axis(out, s, y0 + plot_h);
    fputs("</svg>\n", out);
}

static void row_ms(FILE *out, const char *name, int64_t ms, const char *note)
{
    fprintf(out, "<tr><th>%s</th><td>", name);
    if (ms < 0)
        fputs("unknown", out);
    else
        fprintf(out, "%" PRId64 " ms", ms);
    fprintf(out, "</td><td>%s</td></tr>\n", note);
}

void sv__drill_html(FILE *out, const struct sv__drill *d)
{
    struct sv__drill_figures f;
    sv__drill_figures(d, &f);
    bool passed = sv__drill_passed(d);
    struct span s = {d->start_ms, d->end_ms, SVG_W - SVG_L - SVG_R};
    if (s.t0 < 0)
        s.t0 = 0;
    if (s.t1 <= s.t0)
        s.t1 = s.t0 + 1;

    fputs("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n<title>", out);
    fputs("ShardVault disaster-recovery drill ", out);
    html_str(out, d->run);
    fputs("</title>\n<style>\n"
          "body{font-family:sans-serif;margin:24px;color:#222;max-width:1140px}\n"
          ".banner{font-size:26px;font-weight:bold;color:#fff;padding:12px 18px;"
          "border-radius:6px}\n.pass{background:#2ca02c}.fail{background:#d62728}\n"
          "table{border-collapse:collapse;margin:8px 0}\n"
          "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;"
          "font-size:13px}\nth{background:#f3f3f3}\n"
          ".tick{font-size:11px;fill:#333}.label{font-size:12px;fill:#222}\n"
          ".note{color:#555;font-size:13px}\n"
          "</style></head><body>\n<h1>ShardVault disaster-recovery drill</h1>\n",
          out);
    fprintf(out, "<div class='banner %s'>%s</div>\n", passed ? "pass" : "fail",
            passed ? "PASSED: every built step passed" : "FAILED: see the steps");
    fputs("<p class='note'>", out);
    html_str(out, d->run);
    fputs(": primary site ", out);
    html_str(out, d->primary_site[0] ? d->primary_site : "?");
    fputs(" (", out);
    html_str(out, d->primary_endpoints ? d->primary_endpoints : "");
    fputs("), standby site ", out);
    html_str(out, d->standby_site[0] ? d->standby_site : "?");
    fputs(" (", out);
    html_str(out, d->standby_endpoints ? d->standby_endpoints : "");
    fputs(").</p>\n", out);

    fputs("<h2>Figures</h2>\n<table>\n", out);
    row_ms(out, "RPO window", f.rpo_window_ms,
           "the outage minus the cut (the promotion's; else the standby's site frontier read "
           "before it)");
    fprintf(out,
            "<tr><th>missing writes</th><td>%zu of %zu</td><td>acknowledged by the primary, "
            "not on the promoted site; %zu acknowledged before the cut (each one a broken "
            "promise); %zu in flight at the outage</td></tr>\n",
            f.missing, f.primary_acks, f.missing_before_cut, f.primary_late);
    if (d->cut_made)
        fprintf(out,
                "<tr><th>after the cut</th><td>%zu</td><td>written more than %d ms after the "
                "cut and read back (the promotion drops them: each one a broken promise)"
                "</td></tr>\n",
                f.present_after_cut, SV__DRILL_SKEW_MS);
    row_ms(out, "RTO", f.rto_ms, "the outage to the first write the standby accepted");
    row_ms(out, "lag before the outage, p50", f.lag_p50_ms, "the standby's, sampled under load");
    row_ms(out, "lag before the outage, max", f.lag_max_ms, "");
    if (d->ledger_size >= 0)
        fprintf(out,
                "<tr><th>ledger</th><td>%" PRId64 "</td><td>writes failback moved into the "
                "divergence ledger; %" PRId64
                " of the drill's %zu missing writes in it</td></tr>\n",
                d->ledger_size, d->ledger_matched, f.missing + f.differs + f.unreadable);
    else
        fprintf(out,
                "<tr><th>ledger</th><td>unknown</td><td>failback %s; the drill's own list: %zu "
                "writes</td></tr>\n",
                sv__drill_status_name(d->steps[SV__DRILL_FAILBACK].status),
                f.missing + f.differs + f.unreadable);
    row_ms(out, "switch back: writes paused", d->switchback_paused_ms,
           "the planned move back (RPO 0)");
    fprintf(out,
            "<tr><th>load</th><td>%zu + %zu</td><td>writes acknowledged by the primary, then by "
            "the promoted site (%" PRIu64 " refused read-only before it opened)</td></tr>\n",
            f.primary_acks, f.standby_acks, d->standby_refused);
    fputs("</table>\n", out);

    fputs("<h2>Timeline</h2>\n", out);
    timeline(out, d, &s, &f);
    fputs("<h2>Acknowledged writes</h2>\n<p class='note'>Per time bucket: blue the primary's, "
          "green the promoted site's; red ticks the writes not read back.</p>\n",
          out);
    ack_chart(out, d, &s);

    fputs("<h2>Steps</h2>\n<table><tr><th>step</th><th>status</th><th>at (s)</th>"
          "<th>took (s)</th><th>what</th></tr>\n",
          out);
    for (int i = 0; i < SV__DRILL_STEPS; i++) {
        const struct sv__drill_step *st = &d->steps[i];
        fprintf(out, "<tr><td>%s</td><td style='color:%s'>%s</td>", sv__drill_step_names[i],
                status_fill(st->status), sv__drill_status_name(st->status));
        if (st->start_ms >= 0)
            fprintf(out, "<td>%.2f</td><td>%.2f</td>", (double)(st->start_ms - s.t0) / 1000.0,
                    (double)(st->end_ms - st->start_ms) / 1000.0);
        else
            fputs("<td>-</td><td>-</td>", out);
        fputs("<td>", out);
        html_str(out, st->text);
        fputs("</td></tr>\n", out);
    }
    fputs("</table>\n", out);

    fputs("<h2>Writes not read back</h2>\n", out);
    size_t shown = 0, total = f.missing + f.differs + f.unreadable;
    for (size_t i = 0; i < d->n_acks && shown < SV__DRILL_MISSING_HTML_MAX; i++) {
        const struct sv__drill_ack *w = &d->acks[i];
        if (!listed(w))
            continue;
        if (shown++ == 0)
            fputs("<table><tr><th>key</th><th>acknowledged</th><th>found</th></tr>\n", out);
        char key[SV__DRILL_KEY_MAX], t[40];
        sv__drill_key(d->run, w->client, w->seq, key, sizeof(key));
        sv__iso_time((uint64_t)w->ack_ms, t, sizeof(t));
        fputs("<tr><td>", out);
        html_str(out, d->bucket ? d->bucket : "");
        fputc('/', out);
        html_str(out, key);
        fprintf(out, "</td><td>%s</td><td>%s</td></tr>\n", t, check_name(w->check));
    }
    if (shown > 0)
        fputs("</table>\n", out);
    else
        fputs("<p class='note'>None: every write the primary acknowledged was read back "
              "byte-equal, or none was checked (see verify).</p>\n",
              out);
    if (shown < total)
        fprintf(out, "<p class='note'>First %zu of %zu listed (drill.json lists up to %d).</p>\n",
                shown, total, SV__DRILL_MISSING_LISTED_MAX);

    fputs("<h2>Settings</h2>\n<table>\n", out);
    fprintf(out,
            "<tr><th>load</th><td>%" PRIu32 " clients, %" PRIu32 "-byte objects, %" PRIu32
            " s of warm-up</td></tr>\n<tr><th>bounds</th><td>%" PRIu32
            " s per step, lag below %" PRId64 " ms</td></tr>\n",
            d->load_clients, d->object_bytes, d->warmup_s, d->step_timeout_s, d->max_lag_ms);
    fputs("<tr><th>outage command</th><td>", out);
    html_str(out, d->outage_cmd ? d->outage_cmd : "");
    fputs("</td></tr>\n<tr><th>restore command</th><td>", out);
    html_str(out, d->restore_cmd ? d->restore_cmd : "");
    fputs("</td></tr>\n</table>\n</body></html>\n", out);
}
