/* metrics-expo: prints the exposition of a registry that holds every kind of
 * series ShardVault uses (counters, gauges, scrape-time series, histograms
 * in seconds and in bytes, sv_build_info), with label values and help texts
 * that need escaping, per-group series added and removed, and NaN and
 * infinite values; tests/node/metrics_promtool.sh checks it with promtool.
 * Exit 1 if any registration or the rendering fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static int failed;

static void ok(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "metrics-expo: %s: %s\n", what, strerror(-rc));
        failed = 1;
    }
}

static struct sv_metrics_family *family(struct sv_metrics *m, const struct sv_metrics_desc *d)
{
    struct sv_metrics_family *f = NULL;
    ok(sv_metrics_family_new(m, d, &f), d->name);
    if (!f)
        exit(1);
    return f;
}

static double term_of(void *arg)
{
    return (double)(*(const int *)arg);
}

static double not_a_number(void *arg)
{
    (void)arg;
    return NAN;
}

int main(void)
{
    struct sv_metrics *m;
    if (sv_metrics_new(&m))
        return 1;
    ok(sv_metrics_build_info(m, "0.1.0-test \"quoted\" \\ back\nslash"), "build_info");

    static const char *const type_result[] = {"type", "result"};
    struct sv_metrics_family *req = family(
        m, &(struct sv_metrics_desc){.type = SV_METRIC_COUNTER,
                                     .name = "sv_requests_total",
                                     .help = "Requests answered, by type and result (\"ok\" or an "
                                             "error name).\nA second line, and a \\ backslash.",
                                     .labels = type_result,
                                     .n_labels = 2});
    struct sv_counter *c;
    ok(sv_metrics_counter(req, (const char *[]){"put", "ok"}, &c), "put ok");
    sv_counter_add(c, 12345);
    ok(sv_metrics_counter(req, (const char *[]){"get", "not \"found\"\n\\"}, &c), "escapes");
    sv_counter_inc(c);
    ok(sv_metrics_counter(req, (const char *[]){"d\xc3\xa9j\xc3\xa0 vu", ""}, &c), "utf-8, empty");

    struct sv_metrics_family *restarts =
        family(m, &(struct sv_metrics_desc){.type = SV_METRIC_COUNTER,
                                            .name = "sv_process_restarts_total",
                                            .help = "A counter without labels."});
    ok(sv_metrics_counter(restarts, NULL, &c), "restarts");

    static const char *const group[] = {"group"};
    struct sv_metrics_family *term =
        family(m, &(struct sv_metrics_desc){.type = SV_METRIC_GAUGE,
                                            .name = "sv_raft_term",
                                            .help = "Current Raft term of the group (scrape time).",
                                            .labels = group,
                                            .n_labels = 1});
    struct sv_metrics_family *changes =
        family(m, &(struct sv_metrics_desc){.type = SV_METRIC_COUNTER,
                                            .name = "sv_raft_leader_changes_total",
                                            .help = "Leader changes the group saw (scrape time).",
                                            .labels = group,
                                            .n_labels = 1});
    static int terms[5] = {3, 4, 5, 6, 7};
    char name[16];
    for (int g = 0; g < 5; g++) {
        snprintf(name, sizeof name, "%d", g);
        const char *v = name;
        ok(sv_metrics_series_fn(term, &v, term_of, &terms[g]), "term");
        ok(sv_metrics_series_fn(changes, &v, term_of, &terms[g]), "changes");
    }
    ok(sv_metrics_series_remove(term, (const char *[]){"2"}), "remove group 2");
    ok(sv_metrics_series_remove(changes, (const char *[]){"2"}), "remove group 2");

    static const char *const what[] = {"what"};
    struct sv_metrics_family *gauge =
        family(m, &(struct sv_metrics_desc){.type = SV_METRIC_GAUGE,
                                            .name = "sv_segment_bytes",
                                            .help = "Stored gauges of every value shape.",
                                            .labels = what,
                                            .n_labels = 1});
    struct sv_gauge *g;
    const double values[] = {0, -1.5, 1e-9, 123456789012.0, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        snprintf(name, sizeof name, "v%zu", i);
        const char *v = name;
        ok(sv_metrics_gauge(gauge, &v, &g), "gauge");
        sv_gauge_set(g, values[i]);
    }
    ok(sv_metrics_series_fn(gauge, (const char *[]){"nan"}, not_a_number, NULL), "nan");

    uint64_t lat[SV_METRICS_LATENCY_BUCKETS];
    sv_metrics_exp_bounds(lat, SV_METRICS_LATENCY_BUCKETS, SV_METRICS_LATENCY_START_NS,
                          SV_METRICS_LATENCY_FACTOR);
    struct sv_metrics_family *dur =
        family(m, &(struct sv_metrics_desc){.type = SV_METRIC_HISTOGRAM,
                                            .name = "sv_request_duration_seconds",
                                            .help = "Request latency in seconds.",
                                            .labels = type_result,
                                            .n_labels = 2,
                                            .bounds = lat,
                                            .n_bounds = SV_METRICS_LATENCY_BUCKETS,
                                            .unit_div = 1000000000});
    struct sv_histogram *h;
    ok(sv_metrics_histogram(dur, (const char *[]){"put", "ok"}, &h), "duration put");
    for (uint64_t ns = 1000; ns < 100000000000ull; ns = ns * 3 + 7)
        sv_histogram_observe(h, ns);
    ok(sv_metrics_histogram(dur, (const char *[]){"get", "a \"b\"\n"}, &h), "duration get");

    static const uint64_t sizes[] = {1024, 65536, 1048576};
    struct sv_metrics_family *size =
        family(m, &(struct sv_metrics_desc){.type = SV_METRIC_HISTOGRAM,
                                            .name = "sv_chunk_size_bytes",
                                            .help = "A histogram without labels, in bytes.",
                                            .bounds = sizes,
                                            .n_bounds = 3});
    ok(sv_metrics_histogram(size, NULL, &h), "size");
    sv_histogram_observe(h, 1);
    sv_histogram_observe(h, 1 << 20);
    sv_histogram_observe(h, 5u << 20);

    char *out;
    size_t len;
    int rc = sv_metrics_render(m, &out, &len);
    ok(rc, "render");
    if (rc == 0) {
        if (!failed && fwrite(out, 1, len, stdout) != len)
            failed = 1;
        free(out);
    }
    sv_metrics_free(m);
    return failed;
}
