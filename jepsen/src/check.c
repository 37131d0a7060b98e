/* sv-check: checks a history.jsonl: a register history for linearizability (lin.c), a set
 * history with Jepsen's set checker (every acknowledged add is in the final read). */
#define _POSIX_C_SOURCE 200809L

#include "history.h"
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
    ANOMALY_ELEMS_MAX = 100, /* elements listed per set anomaly (all are counted) */
    MSG_MAX = HIST_MSG_MAX + 64,
};
_Static_assert(HIST_EVENTS_MAX / 2 <= LIN_OPS_MAX * (size_t)HIST_KEYS_MAX, "ops fit the checker");

enum exit_code { EXIT_VALID = 0, EXIT_INVALID = 1, EXIT_BROKEN = 2 };

/* Operations by outcome; an invocation that never completed counts as info. */
struct stats {
    size_t ops, ok, fail, info;
};

static void count_ops(const struct hist *h, struct stats *st)
{
    for (size_t i = 0; i < h->n_ops; i++) {
        const struct event *done = h->ops[i].done;
        st->ops++;
        if (done == NULL || done->type == EV_INFO)
            st->info++;
        else if (done->type == EV_OK)
            st->ok++;
        else
            st->fail++;
    }
}

/* ---- Register histories: linearizability, key by key ---- */

static void to_lin_op(struct lin_op *o, const struct event *inv, const struct event *done)
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

static int op_key_cmp(const void *pa, const void *pb)
{
    const struct lin_op *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if (a->call != b->call)
        return a->call < b->call ? -1 : 1;
    return a->ret < b->ret ? -1 : a->ret > b->ret ? 1 : 0;
}

/* Writes the anomalies (the JSON array's elements) to out. Returns the exit
 * code, or -1 with msg. */
static int check_register(const struct hist *h, FILE *out, uint64_t *explored, char *msg,
                          size_t msg_len)
{
    struct lin_op *ops = malloc((h->n_ops + 1) * sizeof(*ops));
    if (ops == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < h->n_ops; i++) {
        const struct event *done = h->ops[i].done;
        if (done != NULL && done->type == EV_FAIL)
            continue; /* did not happen */
        to_lin_op(&ops[n++], h->ops[i].inv, done != NULL && done->type == EV_OK ? done : NULL);
    }
    qsort(ops, n, sizeof(*ops), op_key_cmp);
    /* One call per key so that every failing key is reported; lin.c is
     * P-compositional, so this is the same check as one call on all ops. */
    bool invalid = false, unknown = false, first = true;
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && ops[k].key == ops[i].key)
            k++;
        struct lin_report rep;
        int verdict = sv__lin_check(&ops[i], k - i, 0, &rep);
        *explored += rep.explored;
        if (verdict < 0) {
            free(ops);
            snprintf(msg, msg_len, "out of memory while checking");
            return -1;
        }
        if (verdict != LIN_OK) {
            fprintf(out, "%s{\"key\": ", first ? "" : ", ");
            sv__intern_print(&h->keys, ops[i].key, out);
            fprintf(out, ", \"ops\": %zu, \"kind\": \"%s\"}", rep.n_ops,
                    verdict == LIN_VIOLATION ? "nonlinearizable" : "search-limit");
            first = false;
            invalid |= verdict == LIN_VIOLATION;
            unknown |= verdict == LIN_UNKNOWN;
        }
        i = k;
    }
    free(ops);
    return invalid ? EXIT_INVALID : unknown ? EXIT_BROKEN : EXIT_VALID;
}

/* ---- Set histories: Jepsen's set checker ---- */

enum add_outcome { ADD_OK, ADD_FAIL, ADD_INFO };

struct add {
    int64_t elem;
    int64_t done_time; /* ADD_OK: when it was acknowledged */
    uint32_t line;     /* of the invocation */
    uint8_t outcome;   /* enum add_outcome; never completed = info */
};

struct set_result {
    size_t attempted, acknowledged, final, recovered;
    bool has_final;
};

static int add_cmp(const void *pa, const void *pb)
{
    const struct add *a = pa, *b = pb;
    if (a->elem != b->elem)
        return a->elem < b->elem ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line ? 1 : 0;
}

static const struct add *find_add(const struct add *adds, size_t n, int64_t elem)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (adds[mid].elem < elem)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && adds[lo].elem == elem ? &adds[lo] : NULL;
}

static void print_anomaly(FILE *out, bool *first, const char *kind, const struct elems *l)
{
    if (l->n == 0)
        return;
    fprintf(out, "%s{\"kind\": \"%s\", \"count\": %zu, \"elements\": [", *first ? "" : ", ", kind,
            l->n);
    for (size_t i = 0; i < l->n && i < ANOMALY_ELEMS_MAX; i++)
        fprintf(out, "%s%" PRId64, i ? ", " : "", l->v[i]);
    fprintf(out, "]%s}", l->n > ANOMALY_ELEMS_MAX ? ", \"truncated\": true" : "");
    *first = false;
}

enum { L_LOST, L_UNEXPECTED, L_DUPLICATED, L_FAILED_VISIBLE, L_N };
static const char *const list_kinds[L_N] = {"lost", "unexpected", "duplicated",
                                            "failed-add-visible"};

/* Writes the anomalies to out and the counts to *r. Returns the exit code,
 * or -1 with msg (a history error: exit 2). */
static int check_set(const struct hist *h, FILE *out, struct set_result *r, struct elems lists[L_N],
                     char *msg, size_t msg_len)
{
    const struct hist_set *s = &h->set;
    int rc = -1;
    struct add *adds = malloc((h->n_ops + 1) * sizeof(*adds));
    if (adds == NULL)
        goto err_oom;
    size_t n_adds = 0;
    const struct hist_op *final = NULL;
    for (size_t i = 0; i < h->n_ops; i++) {
        const struct hist_op *o = &h->ops[i];
        if (o->inv->f == F_READ) {
            if (s->has_final && o->done == &h->ev[s->final_ev])
                final = o;
            continue;
        }
        struct add *a = &adds[n_adds++];
        a->elem = o->inv->elem;
        a->line = o->inv->line;
        a->outcome = o->done == NULL || o->done->type == EV_INFO ? ADD_INFO
                     : o->done->type == EV_OK                    ? ADD_OK
                                                                 : ADD_FAIL;
        a->done_time = o->done != NULL ? o->done->time : INT64_MAX;
        r->attempted++;
        r->acknowledged += a->outcome == ADD_OK;
    }
    qsort(adds, n_adds, sizeof(*adds), add_cmp);
    for (size_t i = 1; i < n_adds; i++)
        if (adds[i].elem == adds[i - 1].elem) {
            snprintf(msg, msg_len,
                     "line %" PRIu32 ": element %" PRId64 " is added again (first on line %" PRIu32
                     "); set elements must be unique",
                     adds[i].line, adds[i].elem, adds[i - 1].line);
            goto out;
        }

    /* Elements in any ok read: each must have been added, by an add that did
     * not fail. */
    for (size_t i = 0; i < s->seen.n; i++) {
        int64_t x = s->seen.v[i];
        const struct add *a = find_add(adds, n_adds, x);
        if ((a == NULL && sv__elems_push(&lists[L_UNEXPECTED], x) != 0) ||
            (a != NULL && a->outcome == ADD_FAIL &&
             sv__elems_push(&lists[L_FAILED_VISIBLE], x) != 0))
            goto err_oom;
    }
    for (size_t i = 0; i < s->duplicated.n; i++)
        if (sv__elems_push(&lists[L_DUPLICATED], s->duplicated.v[i]) != 0)
            goto err_oom;
    if (final != NULL) {
        /* The final read: every add acknowledged before it began must be in
         * it; an add acknowledged while it ran may or may not be. */
        r->has_final = true;
        r->final = s->final.n;
        for (size_t k = 0; k < n_adds; k++) {
            bool in = sv__elems_has(&s->final, adds[k].elem);
            if (adds[k].outcome == ADD_OK && !in && adds[k].done_time < final->inv->time &&
                sv__elems_push(&lists[L_LOST], adds[k].elem) != 0)
                goto err_oom;
            r->recovered += adds[k].outcome == ADD_INFO && in;
        }
    }
    bool first = true;
    for (int k = 0; k < L_N; k++) {
        sv__elems_unique(&lists[k]);
        print_anomaly(out, &first, list_kinds[k], &lists[k]);
    }
    if (!r->has_final)
        fprintf(out, "%s{\"kind\": \"no-final-read\"}", first ? "" : ", ");
    bool bad = !r->has_final;
    for (int k = 0; k < L_N; k++)
        bad |= lists[k].n > 0;
    rc = bad ? EXIT_INVALID : EXIT_VALID;
    goto out;
err_oom:
    snprintf(msg, msg_len, "out of memory while checking");
out:
    free(adds);
    return rc;
}

/* ---- Errors that are anomalies whatever the workload ---- */

/* A completion whose error says "corrupt": the cluster found data failing its
 * checksums and no healthy copy (the client's SV_E_CORRUPT, the worker's
 * error text). That is lost data, never an acceptable outcome. Writes one
 * anomaly and returns how many such completions there are. */
static size_t check_corrupt(const struct hist *h, FILE *out, bool first)
{
    size_t n = 0;
    uint32_t lines[ANOMALY_ELEMS_MAX], err = 0;
    for (size_t i = 0; i < h->n; i++) {
        const struct event *e = &h->ev[i];
        if (!e->corrupt || e->type == EV_INVOKE)
            continue;
        if (n < ANOMALY_ELEMS_MAX)
            lines[n] = e->line;
        if (err == 0)
            err = e->err;
        n++;
    }
    if (n == 0)
        return 0;
    fprintf(out, "%s{\"kind\": \"corrupt\", \"count\": %zu, \"lines\": [", first ? "" : ", ", n);
    for (size_t i = 0; i < n && i < ANOMALY_ELEMS_MAX; i++)
        fprintf(out, "%s%" PRIu32, i ? ", " : "", lines[i]);
    fprintf(out, "]");
    if (err != 0) {
        fprintf(out, ", \"error\": ");
        sv__intern_print(&h->errors, err, out);
    }
    fprintf(out, "}");
    return n;
}

/* ---- The verdict ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Writes the verdict JSON (one line) to out; returns the exit code, or -1 with msg. */
static int verdict(const struct hist *h, FILE *out, char *msg, size_t msg_len)
{
    struct stats st = {0};
    count_ops(h, &st);
    double t0 = now_ms();
    uint64_t explored = 0;
    struct set_result sr = {0};
    struct elems lists[L_N] = {{0}};
    char *anomalies = NULL;
    size_t anomalies_len = 0;
    FILE *a = open_memstream(&anomalies, &anomalies_len);
    if (a == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return -1;
    }
    int rc = h->kind == HIST_SET ? check_set(h, a, &sr, lists, msg, msg_len)
                                 : check_register(h, a, &explored, msg, msg_len);
    if (rc >= 0) {
        fflush(a);
        if (check_corrupt(h, a, anomalies_len == 0) > 0 && rc == EXIT_VALID)
            rc = EXIT_INVALID;
    }
    if (fclose(a) != 0 && rc >= 0) {
        snprintf(msg, msg_len, "out of memory");
        rc = -1;
    }
    double checked_ms = now_ms() - t0;
    if (rc >= 0) {
        fprintf(out,
                "{\"valid\": %s, \"workload\": \"%s\", \"ops\": %zu, \"ok\": %zu, \"fail\": %zu, "
                "\"info\": %zu, \"keys\": %zu, \"counts\": {\"invoke\": %zu, \"ok\": %zu, "
                "\"fail\": %zu, \"info\": %zu}, ",
                rc == EXIT_INVALID  ? "false"
                : rc == EXIT_BROKEN ? "\"unknown\""
                                    : "true",
                sv__hist_kind_names[h->kind], st.ops, st.ok, st.fail, st.info, h->keys.n,
                h->count[EV_INVOKE], h->count[EV_OK], h->count[EV_FAIL], h->count[EV_INFO]);
        if (h->kind == HIST_SET)
            fprintf(out,
                    "\"set\": {\"attempted\": %zu, \"acknowledged\": %zu, \"final\": %zu, "
                    "\"lost\": %zu, \"unexpected\": %zu, \"duplicated\": %zu, \"recovered\": %zu, "
                    "\"failed_visible\": %zu}, ",
                    sr.attempted, sr.acknowledged, sr.final, lists[L_LOST].n, lists[L_UNEXPECTED].n,
                    lists[L_DUPLICATED].n, sr.recovered, lists[L_FAILED_VISIBLE].n);
        fprintf(out, "\"anomalies\": [%s], \"explored\": %" PRIu64 ", \"checked_ms\": %.0f}\n",
                anomalies, explored, checked_ms);
    }
    for (int k = 0; k < L_N; k++)
        free(lists[k].v);
    free(anomalies);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sv-check [--out RESULTS] FILE\n"
                 "Check a history (history.jsonl; FILE - reads stdin). One JSON object per\n"
                 "line: process (int), type (invoke|ok|fail|info), f, key, value, time (int),\n"
                 "and optionally error (string). The f values decide the workload:\n"
                 "  register: f read|write|cas, key string|int, value int|string (cas:\n"
                 "            [expected, new]); checked for linearizability, key by key.\n"
                 "  set:      f add (value: a unique int element) and read (value: an array\n"
                 "            of ints), key \"set\"; every add acknowledged before the final\n"
                 "            (last ok) read began must be in it; no ok read may hold an\n"
                 "            element never added, one twice, or one whose add failed.\n"
                 "Any workload: a completion whose error starts with \"corrupt\" (data that\n"
                 "failed its checksums with no healthy copy left) makes the history invalid.\n"
                 "Prints {\"valid\": true|false|\"unknown\", \"workload\": W, \"ops\": N, \"ok\",\n"
                 "\"fail\", \"info\", \"keys\": K, \"counts\": {...}, [\"set\": {...},]\n"
                 "\"anomalies\": [...], \"explored\", \"checked_ms\": T} on stdout.\n"
                 "  --out RESULTS  also write that JSON to the file RESULTS\n"
                 "Exit status: 0 valid, 1 not valid, 2 unreadable or malformed file, or the\n"
                 "search gave up (unknown).\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_VALID;
        }
        if (strcmp(a, "--out") == 0 && i + 1 < argc && out_path == NULL) {
            out_path = argv[++i];
        } else if ((a[0] != '-' || a[1] == '\0') && path == NULL) {
            path = a;
        } else {
            usage(stderr);
            return EXIT_BROKEN;
        }
    }
    if (path == NULL) {
        usage(stderr);
        return EXIT_BROKEN;
    }
    int status = EXIT_BROKEN;
    char msg[MSG_MAX] = "";
    struct hist h = {0};
    char *result = NULL;
    size_t result_len = 0;

    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "sv-check: %s: %s\n", path, strerror(errno));
        return EXIT_BROKEN;
    }
    int rc = sv__hist_read(in, &h, msg, sizeof(msg));
    if (in != stdin)
        fclose(in);
    if (rc != 0)
        goto err_after_history;

    FILE *mem = open_memstream(&result, &result_len);
    if (mem == NULL) {
        snprintf(msg, sizeof(msg), "out of memory");
        goto err_after_history;
    }
    status = verdict(&h, mem, msg, sizeof(msg));
    if (fclose(mem) != 0 && status >= 0) {
        snprintf(msg, sizeof(msg), "out of memory");
        status = -1;
    }
    if (status < 0) {
        status = EXIT_BROKEN;
        goto err_after_result;
    }
    fwrite(result, 1, result_len, stdout);
    if (out_path != NULL) {
        FILE *f = fopen(out_path, "w");
        bool written = f != NULL && fwrite(result, 1, result_len, f) == result_len;
        int err = errno;
        if (f != NULL && fclose(f) != 0 && written) {
            written = false;
            err = errno;
        }
        if (!written) {
            fprintf(stderr, "sv-check: %s: %s\n", out_path, strerror(err));
            status = EXIT_BROKEN;
        }
    }
    free(result);
    sv__hist_free(&h);
    return status;

err_after_result:
    free(result);
err_after_history:
    fprintf(stderr, "sv-check: %s: %s\n", path, msg);
    sv__hist_free(&h);
    return EXIT_BROKEN;
}
