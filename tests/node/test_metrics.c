/* metrics-test: node/src/metrics.c (svmetrics), the registry — counters,
 * gauges and scrape-time series rendered exactly, histogram buckets
 * cumulative with +Inf, _sum and _count, series added and removed at run
 * time, label value and help escaping, name and label checks, limits, and
 * updates from several threads while series come and go and scrapes run.
 * Usage: metrics-test [NAME...] (no name: every test). Exit 1 on any failure. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

#include "check.h"

/* The rendered exposition as a NUL-terminated string (caller frees). */
static char *render(struct sv_metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    int rc = sv_metrics_render(m, &out, &len);
    CHECK(rc == 0);
    if (rc)
        return calloc(1, 1);
    char *s = malloc(len + 1);
    memcpy(s, out, len);
    s[len] = 0;
    free(out);
    return s;
}

/* render(m) equals want; prints both when not. */
static void check_render(struct sv_metrics *m, const char *want, int line)
{
    char *got = render(m);
    sv_check_count();
    if (strcmp(got, want)) {
        char msg[64];
        snprintf(msg, sizeof msg, "exposition differs (line %d)", line);
        sv_check_fail(__FILE__, line, "%s", msg);
        fprintf(stderr, "--- want:\n%s--- got:\n%s---\n", want, got);
    }
    free(got);
}
#define CHECK_RENDER(m, want) check_render((m), (want), __LINE__)

static struct sv_metrics *new_registry(void)
{
    struct sv_metrics *m = NULL;
    CHECK(sv_metrics_new(&m) == 0);
    if (!m)
        abort();
    return m;
}

static struct sv_metrics_family *family(struct sv_metrics *m, enum sv_metric_type type,
                                        const char *name, const char *help,
                                        const char *const *labels, uint32_t n_labels)
{
    struct sv_metrics_desc d = {
        .type = type, .name = name, .help = help, .labels = labels, .n_labels = n_labels};
    struct sv_metrics_family *f = NULL;
    int rc = sv_metrics_family_new(m, &d, &f);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "family %s: %s\n", name, strerror(-rc));
        abort();
    }
    return f;
}

static const char *const type_result[] = {"type", "result"};

static void test_counters(void)
{
    struct sv_metrics *m = new_registry();
    CHECK_RENDER(m, "");
    struct sv_metrics_family *req =
        family(m, SV_METRIC_COUNTER, "sv_requests_total", "Requests answered.", type_result, 2);
    struct sv_metrics_family *plain =
        family(m, SV_METRIC_COUNTER, "sv_restarts_total", "Restarts.", NULL, 0);
    CHECK_RENDER(m, ""); /* families without series are not shown */
    struct sv_counter *put_ok, *put_err, *restarts;
    CHECK(sv_metrics_counter(req, (const char *[]){"put", "ok"}, &put_ok) == 0);
    CHECK(sv_metrics_counter(req, (const char *[]){"put", "error"}, &put_err) == 0);
    CHECK(sv_metrics_counter(plain, NULL, &restarts) == 0);
    sv_counter_inc(put_ok);
    sv_counter_inc(put_ok);
    sv_counter_add(put_ok, 40);
    sv_counter_add(put_err, 0);
    sv_counter_add(restarts, UINT64_MAX);
    CHECK(sv_counter_value(put_ok) == 42);
    CHECK(sv_metrics_series_count(req) == 2);
    CHECK_RENDER(m, "# HELP sv_requests_total Requests answered.\n"
                    "# TYPE sv_requests_total counter\n"
                    "sv_requests_total{type=\"put\",result=\"ok\"} 42\n"
                    "sv_requests_total{type=\"put\",result=\"error\"} 0\n"
                    "# HELP sv_restarts_total Restarts.\n"
                    "# TYPE sv_restarts_total counter\n"
                    "sv_restarts_total 18446744073709551615\n");
    sv_metrics_free(m);
}

static void test_gauges(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const kind[] = {"kind"};
    struct sv_metrics_family *f = family(m, SV_METRIC_GAUGE, "sv_value", "Values.", kind, 1);
    const char *names[] = {"int", "neg", "frac", "tiny", "big", "nan", "inf", "ninf", "sum"};
    struct sv_gauge *g[9];
    for (int i = 0; i < 9; i++)
        CHECK(sv_metrics_gauge(f, &names[i], &g[i]) == 0);
    sv_gauge_set(g[0], 3);
    sv_gauge_set(g[1], -17);
    sv_gauge_set(g[2], 0.25);
    sv_gauge_set(g[3], 1e-7);
    sv_gauge_set(g[4], 1e300);
    sv_gauge_set(g[5], NAN);
    sv_gauge_set(g[6], INFINITY);
    sv_gauge_set(g[7], -INFINITY);
    sv_gauge_add(g[8], 1.5);
    sv_gauge_add(g[8], -4);
    CHECK(sv_gauge_value(g[8]) == -2.5);
    CHECK_RENDER(m, "# HELP sv_value Values.\n"
                    "# TYPE sv_value gauge\n"
                    "sv_value{kind=\"int\"} 3\n"
                    "sv_value{kind=\"neg\"} -17\n"
                    "sv_value{kind=\"frac\"} 0.25\n"
                    "sv_value{kind=\"tiny\"} 1e-07\n"
                    "sv_value{kind=\"big\"} 1e+300\n"
                    "sv_value{kind=\"nan\"} NaN\n"
                    "sv_value{kind=\"inf\"} +Inf\n"
                    "sv_value{kind=\"ninf\"} -Inf\n"
                    "sv_value{kind=\"sum\"} -2.5\n");
    /* Doubles are shown in the fewest digits that read back exactly. */
    sv_gauge_set(g[2], 0.1 + 0.2);
    char *s = render(m);
    CHECK(strstr(s, "sv_value{kind=\"frac\"} 0.30000000000000004\n") != NULL);
    free(s);
    sv_metrics_free(m);
}

/* Scrape-time series: called at each render, on the rendering thread. */
struct fn_state {
    int calls;
    double value;
};

static double read_fn(void *arg)
{
    struct fn_state *st = arg;
    st->calls++;
    return st->value;
}

static void test_scrape_time(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const group[] = {"group"};
    struct sv_metrics_family *term =
        family(m, SV_METRIC_GAUGE, "sv_raft_term", "Current term.", group, 1);
    struct sv_metrics_family *changes = family(m, SV_METRIC_COUNTER, "sv_raft_leader_changes_total",
                                               "Leader changes seen.", group, 1);
    struct fn_state t3 = {.value = 7}, t4 = {.value = 9}, c3 = {.value = 2};
    CHECK(sv_metrics_series_fn(term, (const char *[]){"3"}, read_fn, &t3) == 0);
    CHECK(sv_metrics_series_fn(term, (const char *[]){"4"}, read_fn, &t4) == 0);
    CHECK(sv_metrics_series_fn(changes, (const char *[]){"3"}, read_fn, &c3) == 0);
    CHECK(t3.calls == 0);
    CHECK_RENDER(m, "# HELP sv_raft_term Current term.\n"
                    "# TYPE sv_raft_term gauge\n"
                    "sv_raft_term{group=\"3\"} 7\n"
                    "sv_raft_term{group=\"4\"} 9\n"
                    "# HELP sv_raft_leader_changes_total Leader changes seen.\n"
                    "# TYPE sv_raft_leader_changes_total counter\n"
                    "sv_raft_leader_changes_total{group=\"3\"} 2\n");
    CHECK(t3.calls == 1 && t4.calls == 1 && c3.calls == 1);
    t3.value = 8;
    char *s = render(m);
    CHECK(strstr(s, "sv_raft_term{group=\"3\"} 8\n") != NULL);
    CHECK(t3.calls == 2);
    free(s);
    /* A function series and a stored one share the label values' space. */
    struct sv_gauge *g;
    CHECK(sv_metrics_gauge(term, (const char *[]){"3"}, &g) == -EEXIST);
    sv_metrics_free(m);
}

/* The value of the sample line that starts with prefix, or -1. */
static double sample(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, prefix, strlen(prefix)))
            return strtod(p + strlen(prefix), NULL);
    }
    return -1;
}

static void test_histogram_buckets(void)
{
    struct sv_metrics *m = new_registry();
    static const uint64_t bounds[] = {10, 20, 40};
    static const char *const op[] = {"op"};
    struct sv_metrics_desc d = {.type = SV_METRIC_HISTOGRAM,
                                .name = "sv_batch_entries",
                                .help = "Entries per batch.",
                                .labels = op,
                                .n_labels = 1,
                                .bounds = bounds,
                                .n_bounds = 3};
    struct sv_metrics_family *f;
    CHECK(sv_metrics_family_new(m, &d, &f) == 0);
    struct sv_histogram *h, *empty;
    CHECK(sv_metrics_histogram(f, (const char *[]){"append"}, &h) == 0);
    CHECK(sv_metrics_histogram(f, (const char *[]){"idle"}, &empty) == 0);
    /* Bounds are inclusive: 10 goes into le="10", 41 and 1000 into +Inf. */
    const uint64_t obs[] = {5, 10, 11, 40, 41, 1000, 0};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        sv_histogram_observe(h, obs[i]);
    CHECK_RENDER(m, "# HELP sv_batch_entries Entries per batch.\n"
                    "# TYPE sv_batch_entries histogram\n"
                    "sv_batch_entries_bucket{op=\"append\",le=\"10\"} 3\n"
                    "sv_batch_entries_bucket{op=\"append\",le=\"20\"} 4\n"
                    "sv_batch_entries_bucket{op=\"append\",le=\"40\"} 5\n"
                    "sv_batch_entries_bucket{op=\"append\",le=\"+Inf\"} 7\n"
                    "sv_batch_entries_sum{op=\"append\"} 1107\n"
                    "sv_batch_entries_count{op=\"append\"} 7\n"
                    "sv_batch_entries_bucket{op=\"idle\",le=\"10\"} 0\n"
                    "sv_batch_entries_bucket{op=\"idle\",le=\"20\"} 0\n"
                    "sv_batch_entries_bucket{op=\"idle\",le=\"40\"} 0\n"
                    "sv_batch_entries_bucket{op=\"idle\",le=\"+Inf\"} 0\n"
                    "sv_batch_entries_sum{op=\"idle\"} 0\n"
                    "sv_batch_entries_count{op=\"idle\"} 0\n");

    /* Latency: nanoseconds observed, seconds shown, 50 us doubling to 26.2 s. */
    uint64_t lat[SV_METRICS_LATENCY_BUCKETS];
    sv_metrics_exp_bounds(lat, SV_METRICS_LATENCY_BUCKETS, SV_METRICS_LATENCY_START_NS,
                          SV_METRICS_LATENCY_FACTOR);
    CHECK(lat[0] == 50000 && lat[1] == 100000 && lat[19] == 26214400000ull);
    struct sv_metrics_desc ld = {.type = SV_METRIC_HISTOGRAM,
                                 .name = "sv_request_duration_seconds",
                                 .help = "Request latency.",
                                 .bounds = lat,
                                 .n_bounds = SV_METRICS_LATENCY_BUCKETS,
                                 .unit_div = 1000000000};
    struct sv_metrics_family *lf;
    CHECK(sv_metrics_family_new(m, &ld, &lf) == 0);
    struct sv_histogram *lh;
    CHECK(sv_metrics_histogram(lf, NULL, &lh) == 0);
    sv_histogram_observe(lh, 50000);       /* exactly 50 us: the first bucket */
    sv_histogram_observe(lh, 50001);       /* the second */
    sv_histogram_observe(lh, 3000000000);  /* 3 s: le=3.2768 */
    sv_histogram_observe(lh, 60000000000); /* 60 s: +Inf */
    char *s = render(m);
    static const char *const les[SV_METRICS_LATENCY_BUCKETS] = {
        "5e-05",  "0.0001", "0.0002", "0.0004", "0.0008",  "0.0016", "0.0032",
        "0.0064", "0.0128", "0.0256", "0.0512", "0.1024",  "0.2048", "0.4096",
        "0.8192", "1.6384", "3.2768", "6.5536", "13.1072", "26.2144"};
    double prev = 0;
    for (int i = 0; i <= SV_METRICS_LATENCY_BUCKETS; i++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "sv_request_duration_seconds_bucket{le=\"%s\"} ",
                 i < SV_METRICS_LATENCY_BUCKETS ? les[i] : "+Inf");
        double v = sample(s, prefix);
        CHECK(v >= prev); /* present (not -1) and cumulative */
        prev = v;
    }
    CHECK(sample(s, "sv_request_duration_seconds_bucket{le=\"5e-05\"} ") == 1);
    CHECK(sample(s, "sv_request_duration_seconds_bucket{le=\"0.0001\"} ") == 2);
    CHECK(sample(s, "sv_request_duration_seconds_bucket{le=\"1.6384\"} ") == 2);
    CHECK(sample(s, "sv_request_duration_seconds_bucket{le=\"3.2768\"} ") == 3);
    CHECK(sample(s, "sv_request_duration_seconds_bucket{le=\"26.2144\"} ") == 3);
    CHECK(sample(s, "sv_request_duration_seconds_bucket{le=\"+Inf\"} ") == 4);
    CHECK(sample(s, "sv_request_duration_seconds_count ") == 4);
    CHECK(strstr(s, "sv_request_duration_seconds_sum 63.000100001\n") != NULL);
    free(s);
    sv_metrics_free(m);
}

static void test_series_add_remove(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const group[] = {"group"};
    struct sv_metrics_family *f =
        family(m, SV_METRIC_COUNTER, "sv_group_applies_total", "Applies.", group, 1);
    struct sv_counter *c[100];
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "%d", i);
        const char *v = name;
        CHECK(sv_metrics_counter(f, &v, &c[i]) == 0);
        sv_counter_add(c[i], (uint64_t)i);
    }
    CHECK(sv_metrics_series_count(f) == 100);
    const char *v50 = "50", *v99 = "99", *v0 = "0", *nope = "100";
    CHECK(sv_metrics_counter(f, &v50, &c[50]) == -EEXIST);
    CHECK(sv_metrics_series_remove(f, &v50) == 0);
    CHECK(sv_metrics_series_remove(f, &v50) == -ENOENT);
    CHECK(sv_metrics_series_remove(f, &nope) == -ENOENT);
    CHECK(sv_metrics_series_remove(f, NULL) == -ENOENT);
    CHECK(sv_metrics_series_count(f) == 99);
    char *s = render(m);
    CHECK(strstr(s, "{group=\"50\"}") == NULL);
    CHECK(sample(s, "sv_group_applies_total{group=\"49\"} ") == 49);
    CHECK(sample(s, "sv_group_applies_total{group=\"51\"} ") == 51);
    /* Order: as added; a series added again comes last and starts at 0. */
    CHECK(sv_metrics_counter(f, &v50, &c[50]) == 0);
    CHECK(sv_counter_value(c[50]) == 0);
    free(s);
    s = render(m);
    const char *p49 = strstr(s, "{group=\"49\"}"), *p51 = strstr(s, "{group=\"51\"}"),
               *p50 = strstr(s, "{group=\"50\"}"), *p99 = strstr(s, "{group=\"99\"}");
    CHECK(p49 && p51 && p50 && p99 && p49 < p51 && p99 < p50);
    CHECK(sample(s, "sv_group_applies_total{group=\"50\"} ") == 0);
    free(s);
    /* Removing every series hides the family; it can be filled again. */
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "%d", i);
        const char *v = name;
        CHECK(sv_metrics_series_remove(f, &v) == 0);
    }
    CHECK(sv_metrics_series_count(f) == 0);
    CHECK_RENDER(m, "");
    CHECK(sv_metrics_counter(f, &v99, &c[99]) == 0);
    CHECK(sv_metrics_counter(f, &v0, &c[0]) == 0);
    sv_counter_inc(c[0]);
    CHECK_RENDER(m, "# HELP sv_group_applies_total Applies.\n"
                    "# TYPE sv_group_applies_total counter\n"
                    "sv_group_applies_total{group=\"99\"} 0\n"
                    "sv_group_applies_total{group=\"0\"} 1\n");
    /* Histograms and function series are removed the same way. */
    static const uint64_t b[] = {1};
    struct sv_metrics_desc hd = {.type = SV_METRIC_HISTOGRAM,
                                 .name = "sv_group_batch_bytes",
                                 .help = "Batch sizes.",
                                 .labels = group,
                                 .n_labels = 1,
                                 .bounds = b,
                                 .n_bounds = 1};
    struct sv_metrics_family *hf;
    CHECK(sv_metrics_family_new(m, &hd, &hf) == 0);
    struct sv_histogram *h;
    CHECK(sv_metrics_histogram(hf, &v0, &h) == 0);
    CHECK(sv_metrics_series_remove(hf, &v0) == 0);
    struct sv_metrics_family *gf = family(m, SV_METRIC_GAUGE, "sv_group_term", "Term.", group, 1);
    struct fn_state st = {.value = 1};
    CHECK(sv_metrics_series_fn(gf, &v0, read_fn, &st) == 0);
    CHECK(sv_metrics_series_remove(gf, &v0) == 0);
    s = render(m);
    CHECK(strstr(s, "sv_group_batch_bytes") == NULL && strstr(s, "sv_group_term") == NULL);
    CHECK(st.calls == 0);
    free(s);
    sv_metrics_free(m);
}

static void test_escaping(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const path[] = {"path"};
    struct sv_metrics_family *f =
        family(m, SV_METRIC_GAUGE, "sv_escaped", "A \"quoted\" help\\text\nsecond line.", path, 1);
    struct sv_gauge *g1, *g2, *g3;
    CHECK(sv_metrics_gauge(f, (const char *[]){"a\\b\"c\nd"}, &g1) == 0);
    CHECK(sv_metrics_gauge(f, (const char *[]){"h\xc3\xa9llo {x=\"1\"}"}, &g2) == 0);
    CHECK(sv_metrics_gauge(f, (const char *[]){""}, &g3) == 0);
    CHECK_RENDER(m, "# HELP sv_escaped A \"quoted\" help\\\\text\\nsecond line.\n"
                    "# TYPE sv_escaped gauge\n"
                    "sv_escaped{path=\"a\\\\b\\\"c\\nd\"} 0\n"
                    "sv_escaped{path=\"h\xc3\xa9llo {x=\\\"1\\\"}\"} 0\n"
                    "sv_escaped{path=\"\"} 0\n");
    /* The escaped form is what identifies a series: removal finds it. */
    CHECK(sv_metrics_series_remove(f, (const char *[]){"a\\b\"c\nd"}) == 0);
    /* Label values must be UTF-8 and short enough. */
    struct sv_gauge *g;
    CHECK(sv_metrics_gauge(f, (const char *[]){"\xff"}, &g) == -EINVAL);
    CHECK(sv_metrics_gauge(f, (const char *[]){"\xc3"}, &g) == -EINVAL);         /* cut */
    CHECK(sv_metrics_gauge(f, (const char *[]){"\xc0\xaf"}, &g) == -EINVAL);     /* overlong */
    CHECK(sv_metrics_gauge(f, (const char *[]){"\xed\xa0\x80"}, &g) == -EINVAL); /* surrogate */
    CHECK(sv_metrics_gauge(f, (const char *[]){"\xf0\x9f\x98\x80"}, &g) == 0);   /* emoji */
    CHECK(sv_metrics_gauge(f, (const char *[]){NULL}, &g) == -EINVAL);
    CHECK(sv_metrics_gauge(f, NULL, &g) == -EINVAL);
    char long_value[SV_METRICS_VALUE_MAX + 1];
    memset(long_value, 'x', sizeof long_value - 1);
    long_value[SV_METRICS_VALUE_MAX] = 0;
    CHECK(sv_metrics_gauge(f, (const char *[]){long_value}, &g) == -EINVAL);
    long_value[SV_METRICS_VALUE_MAX - 1] = 0; /* the longest allowed */
    CHECK(sv_metrics_gauge(f, (const char *[]){long_value}, &g) == 0);
    sv_metrics_free(m);
}

static int try_family(struct sv_metrics *m, enum sv_metric_type type, const char *name,
                      const char *const *labels, uint32_t n_labels)
{
    static const uint64_t bounds[] = {1, 2};
    struct sv_metrics_desc d = {.type = type,
                                .name = name,
                                .help = "Help.",
                                .labels = labels,
                                .n_labels = n_labels,
                                .bounds = bounds,
                                .n_bounds = 2};
    struct sv_metrics_family *f;
    return sv_metrics_family_new(m, &d, &f);
}

static void test_names(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const ok1[] = {"group"};
    static const char *const bad_labels[][2] = {
        {"Group", "x"}, {"1x", "x"}, {"a-b", "x"}, {"__x", "x"},
        {"a:b", "x"},   {"x", "x"},  {"", "x"},
    };
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_ok", ok1, 1) == 0);
    CHECK(try_family(m, SV_METRIC_COUNTER, "sv_ok:sub_total", NULL, 0) == 0);
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_hist_seconds", ok1, 1) == 0);
    /* Metric names. */
    const char *bad_names[] = {"", "1sv", "sv-x", "sv x", "Sv_x", "svX", "__sv", "sv_\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        CHECK(try_family(m, SV_METRIC_GAUGE, bad_names[i], NULL, 0) == -EINVAL);
    char long_name[SV_METRICS_NAME_MAX + 1];
    memset(long_name, 'a', SV_METRICS_NAME_MAX);
    long_name[SV_METRICS_NAME_MAX] = 0;
    CHECK(try_family(m, SV_METRIC_GAUGE, long_name, NULL, 0) == -EINVAL);
    long_name[SV_METRICS_NAME_MAX - 1] = 0;
    CHECK(try_family(m, SV_METRIC_GAUGE, long_name, NULL, 0) == 0);
    /* Suffixes: counters end in _total, nothing else does; _count, _sum and
     * _bucket are the histograms' own. */
    CHECK(try_family(m, SV_METRIC_COUNTER, "sv_requests", NULL, 0) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_requests_total", NULL, 0) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_requests_total", NULL, 0) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_groups_count", NULL, 0) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_bytes_sum", NULL, 0) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_x_bucket", NULL, 0) == -EINVAL);
    /* Label names. */
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++)
        CHECK(try_family(m, SV_METRIC_GAUGE, "sv_labels", bad_labels[i], 2) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_le_seconds", (const char *[]){"le"}, 1) ==
          -EINVAL);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_le", (const char *[]){"le"}, 1) == 0);
    const char *nine[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_nine", nine, 9) == -EINVAL);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_eight", nine, 8) == 0);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_nolabels", NULL, 1) == -EINVAL);
    /* Help text: required, UTF-8. */
    struct sv_metrics_family *f;
    struct sv_metrics_desc d = {.type = SV_METRIC_GAUGE, .name = "sv_nohelp", .help = ""};
    CHECK(sv_metrics_family_new(m, &d, &f) == -EINVAL);
    d.help = NULL;
    CHECK(sv_metrics_family_new(m, &d, &f) == -EINVAL);
    d.help = "bad \xff";
    CHECK(sv_metrics_family_new(m, &d, &f) == -EINVAL);
    d.type = 0;
    d.help = "ok";
    CHECK(sv_metrics_family_new(m, &d, &f) == -EINVAL);
    /* Histogram bounds: 1..SV_METRICS_BUCKETS_MAX, increasing. */
    uint64_t bounds[SV_METRICS_BUCKETS_MAX + 1];
    for (int i = 0; i <= SV_METRICS_BUCKETS_MAX; i++)
        bounds[i] = (uint64_t)i + 1;
    struct sv_metrics_desc hd = {.type = SV_METRIC_HISTOGRAM,
                                 .name = "sv_b",
                                 .help = "B.",
                                 .bounds = bounds,
                                 .n_bounds = SV_METRICS_BUCKETS_MAX + 1};
    CHECK(sv_metrics_family_new(m, &hd, &f) == -EINVAL);
    hd.n_bounds = 0;
    CHECK(sv_metrics_family_new(m, &hd, &f) == -EINVAL);
    hd.n_bounds = 3;
    bounds[2] = 2; /* 1, 2, 2 */
    CHECK(sv_metrics_family_new(m, &hd, &f) == -EINVAL);
    bounds[2] = 3;
    hd.n_bounds = SV_METRICS_BUCKETS_MAX;
    CHECK(sv_metrics_family_new(m, &hd, &f) == 0);
    /* Clashes, histogram sample names included. */
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_ok", NULL, 0) == -EEXIST);
    CHECK(try_family(m, SV_METRIC_COUNTER, "sv_ok:sub_total", NULL, 0) == -EEXIST);
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_ok", NULL, 0) == -EEXIST);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_hist_seconds", NULL, 0) == -EEXIST);
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_a", NULL, 0) == 0);
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_a", NULL, 0) == -EEXIST);
    /* A histogram owns its _bucket, _sum and _count names only. */
    CHECK(try_family(m, SV_METRIC_HISTOGRAM, "sv_hist", NULL, 0) == 0);
    /* Series of the wrong kind. */
    struct sv_metrics_family *g = NULL, *h = NULL;
    struct sv_metrics_desc gd = {.type = SV_METRIC_GAUGE, .name = "sv_g", .help = "G."};
    CHECK(sv_metrics_family_new(m, &gd, &g) == 0);
    hd.name = "sv_h";
    CHECK(sv_metrics_family_new(m, &hd, &h) == 0);
    struct sv_counter *c;
    struct sv_histogram *hh;
    struct fn_state st = {0};
    CHECK(sv_metrics_counter(g, NULL, &c) == -EINVAL);
    CHECK(sv_metrics_histogram(g, NULL, &hh) == -EINVAL);
    CHECK(sv_metrics_series_fn(h, NULL, read_fn, &st) == -EINVAL);
    CHECK(sv_metrics_histogram(h, NULL, &hh) == 0);
    sv_metrics_free(m);
}

static void test_build_info(void)
{
    struct sv_metrics *m = new_registry();
    CHECK(sv_metrics_build_info(m, "1.2.3-rc \"x\"") == 0);
    CHECK_RENDER(m, "# HELP sv_build_info ShardVault build; the value is always 1.\n"
                    "# TYPE sv_build_info gauge\n"
                    "sv_build_info{version=\"1.2.3-rc \\\"x\\\"\"} 1\n");
    CHECK(sv_metrics_build_info(m, "again") == -EEXIST);
    sv_metrics_free(m);
    m = new_registry();
    CHECK(sv_metrics_build_info(m, "\xff") == -EINVAL);
    sv_metrics_free(m);
}

static void test_limits(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const n[] = {"n"};
    struct sv_metrics_family *fams[SV_METRICS_FAMILIES_MAX];
    char name[32], value[16];
    for (int i = 0; i < SV_METRICS_FAMILIES_MAX; i++) {
        snprintf(name, sizeof name, "sv_f%d", i);
        fams[i] = family(m, SV_METRIC_GAUGE, name, "F.", n, 1);
    }
    CHECK(try_family(m, SV_METRIC_GAUGE, "sv_one_more", NULL, 0) == -ENOSPC);
    enum { PER = SV_METRICS_SERIES_MAX / SV_METRICS_FAMILIES_MAX };
    _Static_assert(PER * SV_METRICS_FAMILIES_MAX == SV_METRICS_SERIES_MAX, "even split");
    int failed = 0;
    struct sv_gauge *g;
    for (int i = 0; i < SV_METRICS_FAMILIES_MAX; i++) {
        for (int j = 0; j < PER; j++) {
            snprintf(value, sizeof value, "%d", j);
            const char *v = value;
            failed += sv_metrics_gauge(fams[i], &v, &g) != 0;
        }
    }
    CHECK(failed == 0);
    const char *v = "extra";
    CHECK(sv_metrics_gauge(fams[0], &v, &g) == -ENOSPC);
    v = "0";
    CHECK(sv_metrics_series_remove(fams[7], &v) == 0);
    v = "extra";
    CHECK(sv_metrics_gauge(fams[0], &v, &g) == 0); /* a slot freed by the removal */
    CHECK(sv_metrics_gauge(fams[1], &v, &g) == -ENOSPC);
    sv_metrics_free(m);
}

/* Updates from several threads while the owning thread adds and removes
 * other series and renders: no update is lost. */
enum { THREADS = 4, UPDATES = 200000 };

struct shared {
    struct sv_counter *c;
    struct sv_gauge *g;
    struct sv_histogram *h;
};

static void *updater(void *arg)
{
    struct shared *sh = arg;
    for (uint64_t i = 0; i < UPDATES; i++) {
        sv_counter_inc(sh->c);
        sv_gauge_add(sh->g, 1);
        sv_histogram_observe(sh->h, i % 64);
    }
    return NULL;
}

static void test_threads(void)
{
    struct sv_metrics *m = new_registry();
    static const char *const group[] = {"group"};
    static const uint64_t bounds[] = {1, 4, 16};
    struct sv_metrics_family *cf = family(m, SV_METRIC_COUNTER, "sv_ops_total", "Ops.", group, 1);
    struct sv_metrics_family *gf = family(m, SV_METRIC_GAUGE, "sv_level", "Level.", group, 1);
    struct sv_metrics_desc hd = {.type = SV_METRIC_HISTOGRAM,
                                 .name = "sv_size",
                                 .help = "Sizes.",
                                 .labels = group,
                                 .n_labels = 1,
                                 .bounds = bounds,
                                 .n_bounds = 3};
    struct sv_metrics_family *hf;
    CHECK(sv_metrics_family_new(m, &hd, &hf) == 0);
    struct shared sh;
    const char *shared_group = "shared";
    CHECK(sv_metrics_counter(cf, &shared_group, &sh.c) == 0);
    CHECK(sv_metrics_gauge(gf, &shared_group, &sh.g) == 0);
    CHECK(sv_metrics_histogram(hf, &shared_group, &sh.h) == 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, updater, &sh) == 0);
    char value[16];
    for (int round = 0; round < 200; round++) {
        snprintf(value, sizeof value, "%d", round);
        const char *v = value;
        struct sv_counter *c;
        CHECK(sv_metrics_counter(cf, &v, &c) == 0);
        sv_counter_inc(c);
        char *s = render(m);
        CHECK(strstr(s, "sv_ops_total{group=\"shared\"}") != NULL);
        free(s);
        CHECK(sv_metrics_series_remove(cf, &v) == 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *s = render(m);
    CHECK(sample(s, "sv_ops_total{group=\"shared\"} ") == THREADS * UPDATES);
    CHECK(sample(s, "sv_level{group=\"shared\"} ") == THREADS * UPDATES);
    CHECK(sample(s, "sv_size_count{group=\"shared\"} ") == THREADS * UPDATES);
    CHECK(sample(s, "sv_size_bucket{group=\"shared\",le=\"1\"} ") ==
          THREADS * (double)UPDATES / 64 * 2); /* 0 and 1 of every 64 */
    /* 0..63 each UPDATES / 64 times per thread: sum 2016 per 64. */
    CHECK(sample(s, "sv_size_sum{group=\"shared\"} ") == THREADS * (double)UPDATES / 64 * 2016);
    CHECK(sv_metrics_series_count(cf) == 1);
    free(s);
    sv_metrics_free(m);
}

static const struct sv_test tests[] = {
    {"counters", test_counters},
    {"gauges", test_gauges},
    {"scrape_time", test_scrape_time},
    {"histogram_buckets", test_histogram_buckets},
    {"series_add_remove", test_series_add_remove},
    {"escaping", test_escaping},
    {"names", test_names},
    {"build_info", test_build_info},
    {"limits", test_limits},
    {"threads", test_threads},
};
const struct sv_test_suite sv_test_suite = {
    .name = "metrics-test",
    SV_TEST_TABLE(tests),
    .timeout_s = 120,
};
