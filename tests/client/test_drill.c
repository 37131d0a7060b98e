/* drill-test: svctl dr drill's pure part (svctl_drill_report.c): the figures (RPO
 * window, missing writes, RTO, lag) from a record made by hand, keys and bytes,
 * the record's bound, and the JSON, text and HTML reports. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "svctl_drill.h"

/* A drill as the run would leave it: T_out 10.000 s, the cut 9.800 s. */
static void make(struct sv__drill *d)
{
    sv__drill_init(d);
    snprintf(d->run, sizeof(d->run), "drill-1000");
    d->bucket = "drill";
    d->primary_endpoints = "127.0.0.1:1";
    d->standby_endpoints = "127.0.0.1:2";
    d->outage_cmd = "kill-site primary";
    d->restore_cmd = "start-site primary";
    d->load_clients = 2;
    d->warmup_s = 5;
    d->object_bytes = 16;
    d->step_timeout_s = 60;
    d->max_lag_ms = 2000;
    snprintf(d->primary_site, sizeof(d->primary_site), "primary");
    snprintf(d->standby_site, sizeof(d->standby_site), "dr");
    d->start_ms = 1000;
    d->end_ms = 20000;
    d->t_out_ms = 10000;
    d->cut_ms = 9800;
    d->cut_made = true;
    d->cut_max_ms = 9900;
    d->promoted_ms = 13000;
    d->open_ms = 13300;
    d->site_epoch = 2;
    static const struct sv__drill_ack acks[] = {
        {1, 1, SV__DRILL_AT_PRIMARY, SV__DRILL_PRESENT, 8990, 9000},
        {1, 2, SV__DRILL_AT_PRIMARY, SV__DRILL_MISSING, 9840, 9850},  /* after the cut */
        {2, 1, SV__DRILL_AT_PRIMARY, SV__DRILL_MISSING, 9690, 9700},  /* before it */
        {2, 2, SV__DRILL_AT_PRIMARY, SV__DRILL_PRESENT, 9990, 10050}, /* in flight at T_out */
        {1, 7, SV__DRILL_AT_STANDBY, SV__DRILL_PRESENT, 13490, 13500},
        {2, 9, SV__DRILL_AT_STANDBY, SV__DRILL_PRESENT, 13390, 13400},
    };
    for (size_t i = 0; i < sizeof(acks) / sizeof(acks[0]); i++)
        ASSERT(sv__drill_add_ack(d, &acks[i]));
    static const int64_t lag[] = {100, 300, 200, 250};
    memcpy(d->lag_ms, lag, sizeof(lag));
    d->n_lag = 4;
    d->lag_unknown = 1;
    d->ledger_size = 3;
    d->ledger_matched = 2;
    d->switchback_paused_ms = 1500;
    for (int i = 0; i < SV__DRILL_STEPS; i++) {
        sv__drill_step_end(d, i, SV__DRILL_OK, 2000 + 1000 * i, "step %d <ok> & \"fine\"", i);
        d->steps[i].start_ms = 1500 + 1000 * i;
    }
}

static void test_figures(void)
{
    struct sv__drill d;
    make(&d);
    struct sv__drill_figures f;
    sv__drill_figures(&d, &f);
    CHECK_EQ_U64(f.primary_acks, 4);
    CHECK_EQ_U64(f.primary_late, 1);
    CHECK_EQ_U64(f.standby_acks, 2);
    CHECK_EQ_U64(f.present, 2);
    CHECK_EQ_U64(f.missing, 2);
    CHECK_EQ_U64(f.missing_before_cut, 1);
    CHECK_EQ_U64(f.present_after_cut, 0); /* c2-2 sent 190 ms after the cut: within the skew */
    CHECK_EQ_U64(f.differs + f.unreadable + f.unchecked, 0);
    CHECK(f.rpo_window_ms == 200);
    CHECK(f.first_standby_ack_ms == 13400);
    CHECK(f.rto_ms == 3400);
    CHECK(f.last_primary_ack_ms == 10050);
    CHECK(f.first_missing_ack_ms == 9700);
    CHECK(f.lag_p50_ms == 200);
    CHECK(f.lag_p99_ms == 300);
    CHECK(f.lag_max_ms == 300);
    CHECK(f.lag_last_ms == 250);

    /* A write sent past the cut plus the skew, read back: the promotion
     * should have dropped it. Not when the cut is a frontier read (a
     * promotion whose answer was lost), which the real cut may pass. */
    struct sv__drill_ack late = {3, 1, SV__DRILL_AT_PRIMARY, SV__DRILL_PRESENT, 10051, 10060};
    ASSERT(sv__drill_add_ack(&d, &late));
    sv__drill_figures(&d, &f);
    CHECK_EQ_U64(f.present_after_cut, 1);
    d.cut_made = false;
    sv__drill_figures(&d, &f);
    CHECK_EQ_U64(f.present_after_cut, 0);
    d.cut_made = true;
    d.acks[--d.n_acks] = (struct sv__drill_ack){0};

    /* Unknown cut: no RPO window, no write can be said to precede it; no
     * write on the standby: no RTO; no samples: no lag. */
    d.cut_ms = -1;
    d.n_lag = 0;
    for (size_t i = 0; i < d.n_acks; i++)
        if (d.acks[i].site == SV__DRILL_AT_STANDBY)
            d.acks[i].site = SV__DRILL_AT_PRIMARY;
    sv__drill_figures(&d, &f);
    CHECK(f.rpo_window_ms == -1);
    CHECK_EQ_U64(f.missing_before_cut, 0);
    CHECK(f.rto_ms == -1 && f.first_standby_ack_ms == -1);
    CHECK(f.lag_p50_ms == -1 && f.lag_max_ms == -1);
    CHECK_EQ_U64(f.primary_acks, 6);
    CHECK_EQ_U64(f.primary_late, 3);
    /* A cut after T_out (clock skew): the window is 0, not negative. */
    d.cut_ms = 10400;
    sv__drill_figures(&d, &f);
    CHECK(f.rpo_window_ms == 0);
    CHECK_EQ_U64(f.missing_before_cut, 2);
    sv__drill_free(&d);
}

static void test_passed(void)
{
    struct sv__drill d;
    make(&d);
    CHECK(sv__drill_passed(&d)); /* ok and not built */
    d.steps[SV__DRILL_VERIFY].status = SV__DRILL_FAILED;
    CHECK(!sv__drill_passed(&d));
    d.steps[SV__DRILL_VERIFY].status = SV__DRILL_SKIPPED;
    CHECK(!sv__drill_passed(&d));
    d.steps[SV__DRILL_VERIFY].status = SV__DRILL_NOT_RUN;
    CHECK(!sv__drill_passed(&d));
    CHECK(strcmp(sv__drill_status_name(SV__DRILL_NOT_BUILT), "not built") == 0);
    CHECK(strcmp(sv__drill_step_names[SV__DRILL_RTO], "first-write") == 0);
    sv__drill_free(&d);
}

static void test_keys_and_bytes(void)
{
    char key[SV__DRILL_KEY_MAX];
    sv__drill_key("drill-1000", 3, 17, key, sizeof(key));
    CHECK(strcmp(key, "drill-1000/c3-17") == 0);
    uint8_t a[13], b[13], c[13], e[13];
    sv__drill_payload("drill-1000", 3, 17, a, sizeof(a));
    sv__drill_payload("drill-1000", 3, 17, b, sizeof(b));
    sv__drill_payload("drill-1000", 3, 18, c, sizeof(c));
    sv__drill_payload("drill-1001", 3, 17, e, sizeof(e));
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    CHECK(memcmp(a, c, sizeof(a)) != 0);
    CHECK(memcmp(a, e, sizeof(a)) != 0);
}

static void test_record_bound(void)
{
    struct sv__drill d;
    sv__drill_init(&d);
    struct sv__drill_ack a = {1, 0, SV__DRILL_AT_PRIMARY, 0, 1, 2};
    bool all = true;
    for (uint32_t i = 0; i < SV__DRILL_ACKS_MAX && all; i++) {
        a.seq = i;
        all = sv__drill_add_ack(&d, &a);
    }
    CHECK(all);
    CHECK_EQ_U64(d.n_acks, SV__DRILL_ACKS_MAX);
    CHECK(!d.acks_full);
    CHECK(!sv__drill_add_ack(&d, &a));
    CHECK(d.acks_full);
    CHECK_EQ_U64(d.n_acks, SV__DRILL_ACKS_MAX);
    CHECK(d.acks[12345].seq == 12345);
    sv__drill_free(&d);
}

/* The report fn writes for d, as a malloc'd string. */
static char *report(void (*fn)(FILE *, const struct sv__drill *), const struct sv__drill *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f != NULL);
    fn(f, d);
    ASSERT(fclose(f) == 0);
    return buf;
}

static const char want_json[] =
    "{\"run\":\"drill-1000\",\"passed\":false,\"bucket\":\"drill\",\"start_ms\":1000,"
    "\"end_ms\":20000,\n"
    "\"primary\":{\"site\":\"primary\",\"endpoints\":\"127.0.0.1:1\"},"
    "\"standby\":{\"site\":\"dr\",\"endpoints\":\"127.0.0.1:2\"},\n"
    "\"settings\":{\"load_clients\":2,\"warmup_s\":5,\"object_bytes\":16,\"step_timeout_s\":60,"
    "\"max_lag_ms\":2000,\"outage_cmd\":\"kill-site primary\",\"restore_cmd\":\"start-site "
    "primary\"},\n"
    "\"steps\":[\n"
    "{\"name\":\"preflight\",\"status\":\"ok\",\"start_ms\":1500,\"end_ms\":2000,"
    "\"text\":\"step 0 <ok> & \\\"fine\\\"\"}";

static void test_json(void)
{
    struct sv__drill d;
    make(&d);
    d.steps[SV__DRILL_FENCED].status = SV__DRILL_FAILED;
    char *j = report(sv__drill_json, &d);
    CHECK_MSG(strncmp(j, want_json, strlen(want_json)) == 0, "drill.json starts:\n%.*s",
              (int)strlen(want_json), j);
    CHECK(strstr(j, "{\"name\":\"fenced\",\"status\":\"failed\",\"start_ms\":9500,"
                    "\"end_ms\":10000,\"text\":") != NULL);
    CHECK(strstr(j, "{\"name\":\"failback\",\"status\":\"ok\",\"start_ms\":10500,"
                    "\"end_ms\":11000,\"text\":") != NULL);
    CHECK(strstr(j, "\"figures\":{\"t_out_ms\":10000,\"cut_ms\":9800,\"cut_max_ms\":9900,"
                    "\"rpo_window_ms\":200,\"missing_writes\":2,\"missing_before_cut\":1,"
                    "\"present_after_cut\":0,\"cut_made\":true,\"rto_ms\":3400,\"first_standby_ack_"
                    "ms\":13400,\"promoted_ms\":13000,"
                    "\"open_ms\":13300,\"site_epoch\":2,\n") != NULL);
    CHECK(strstr(j, "\"lag_before_outage\":{\"samples\":4,\"unknown\":1,\"p50_ms\":200,"
                    "\"p99_ms\":300,\"max_ms\":300,\"last_ms\":250}") != NULL);
    CHECK(strstr(j, "\"primary_acks\":4,\"primary_acks_in_flight_at_outage\":1,\"present\":2,"
                    "\"differs\":0,\"unreadable\":0,\"unchecked\":0,\"standby_acks\":2,") != NULL);
    CHECK(strstr(j, "\"ledger\":{\"status\":\"ok\",\"size\":3,\"matched\":2,\"drill_list\":2,"
                    "\"switchback_paused_ms\":1500}") != NULL);
    const char *missing = "\"missing\":[\n"
                          "{\"key\":\"drill-1000/c1-2\",\"sent_ms\":9840,\"ack_ms\":9850,"
                          "\"found\":\"missing\"},\n"
                          "{\"key\":\"drill-1000/c2-1\",\"sent_ms\":9690,\"ack_ms\":9700,"
                          "\"found\":\"missing\"}],\"missing_listed\":2}\n";
    size_t jl = strlen(j), ml = strlen(missing);
    CHECK_MSG(jl >= ml && strcmp(j + jl - ml, missing) == 0, "drill.json ends:\n%s",
              jl >= ml ? j + jl - ml : j);
    /* Balanced braces and brackets outside strings: a JSON shape. */
    int depth = 0, min = 0;
    bool in_str = false;
    for (const char *p = j; *p; p++) {
        if (in_str) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '"')
            in_str = true;
        depth += (*p == '{' || *p == '[') - (*p == '}' || *p == ']');
        if (depth < min)
            min = depth;
    }
    CHECK(depth == 0 && min == 0 && !in_str);
    free(j);
    sv__drill_free(&d);
}

static void test_text(void)
{
    struct sv__drill d;
    make(&d);
    d.out_dir = "/tmp/out";
    char *t = report(sv__drill_text, &d);
    CHECK(strstr(t, "drill drill-1000: PASSED (every built step passed)\n") != NULL);
    CHECK(strstr(t, "\nRPO window:          200 ms (the outage 1970-01-01T00:00:10.000Z minus "
                    "the cut 1970-01-01T00:00:09.800Z)\n") != NULL);
    CHECK(strstr(t, "\nmissing writes:      2 of the 4 the primary acknowledged (1 acknowledged "
                    "before the cut; 1 in flight at the outage)\n") != NULL);
    CHECK(strstr(t, "\nafter the cut:       0 written more than 250 ms after the cut read back "
                    "(the promotion drops them: 0 expected)\n") != NULL);
    CHECK(strstr(t, "\nRTO:                 3400 ms ") != NULL);
    CHECK(strstr(t, "\nlag before outage:   p50 200 ms, p99 300 ms, max 300 ms, last 250 ms (4 "
                    "samples, 1 unknown)\n") != NULL);
    CHECK(strstr(t, "\nledger:              3 writes moved into it by failback; 2 of the "
                    "drill's 2 missing writes in it\n") != NULL);
    CHECK(strstr(t, "\nswitch back:         writes paused 1500 ms\n") != NULL);
    CHECK(strstr(t, "\npreflight    ok             0.50s     0.50s  step 0") != NULL);
    CHECK(strstr(t, "\n  drill/drill-1000/c2-1  1970-01-01T00:00:09.700Z  missing\n") != NULL);
    CHECK(strstr(t, "report: /tmp/out/drill.txt, /tmp/out/drill.json, /tmp/out/drill.html") !=
          NULL);
    free(t);
    sv__drill_free(&d);
}

static void test_html(void)
{
    struct sv__drill d;
    make(&d);
    d.primary_endpoints = "<b>host</b>:1";
    char *h = report(sv__drill_html, &d);
    CHECK(strncmp(h, "<!DOCTYPE html>", 15) == 0);
    CHECK(strstr(h, "</body></html>\n") != NULL);
    CHECK(strstr(h, "PASSED: every built step passed") != NULL);
    /* Self-contained: no script, style sheet, image or link fetched. */
    CHECK(strstr(h, "<script") == NULL && strstr(h, "<link") == NULL);
    CHECK(strstr(h, "src=") == NULL && strstr(h, "href=") == NULL && strstr(h, "url(") == NULL);
    /* Escaped: the endpoints and the steps' sentences. */
    CHECK(strstr(h, "<b>host") == NULL && strstr(h, "&lt;b&gt;host&lt;/b&gt;:1") != NULL);
    CHECK(strstr(h, "step 0 &lt;ok&gt; &amp; &quot;fine&quot;") != NULL);
    CHECK(strstr(h, "<svg") != NULL);
    CHECK(strstr(h, ">outage</text>") != NULL && strstr(h, ">cut</text>") != NULL);
    CHECK(strstr(h, "<td>drill/drill-1000/c1-2</td><td>1970-01-01T00:00:09.850Z</td>"
                    "<td>missing</td>") != NULL);
    CHECK(strstr(h, "<tr><th>RTO</th><td>3400 ms</td>") != NULL);
    CHECK(strstr(h, "<tr><th>ledger</th><td>3</td>") != NULL);
    free(h);
    sv__drill_free(&d);
}

static const struct sv_test tests[] = {
    {"figures", test_figures},
    {"passed", test_passed},
    {"keys-and-bytes", test_keys_and_bytes},
    {"record-bound", test_record_bound},
    {"json", test_json},
    {"text", test_text},
    {"html", test_html},
};

const struct sv_test_suite sv_test_suite = {
    .name = "drill-test",
    SV_TEST_TABLE(tests),
};
