/* sv-check: checks a history.jsonl: a register history for linearizability (lin.c), a set
 * history with Jepsen's set checker (every acknowledged add is in the final read); with
 * --cut/--promote/--open, a history that a site failover (jepsen/run --nemesis site) split. */
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

/* ---- Site failover (--nemesis site) ----
 *
 * The history ran against a primary site until it was cut off or killed, then
 * against the standby site promoted in its place. Three times split it (ns,
 * the history's clock: the promotion's cut is the standby's frontier on the
 * same machine clock):
 *   cut      every write the primary committed before it is on the standby;
 *            an ack seen before it was committed before it: must be present
 *   promote  the first `dr promote` was sent: the primary was unreachable
 *            since the fault (at least 3 s before), so an ack seen after it
 *            came from the promoted site: must be present
 *   open     the promotion returned: every node of the promoted site takes
 *            writes; reads before it may have been served by the standby
 *            (its own, older state) or by the old primary
 * A write acknowledged between cut and promote was acknowledged by the old
 * primary after the cut: it may be missing (the standby may not have received
 * it) and is taken as indeterminate; the ones that are missing are listed
 * (lost_after_cut: the divergence ledger that will account for them is not
 * built). A read that completed between cut and open is left out: it may have
 * seen writes of the old primary that the promoted site never got, or the
 * standby's older state.
 * A write invoked between cut and promote went to the old primary (the
 * harness moves the workload to the promoted site only after open), whose
 * leader stamped it after the cut (a stamp is never before the invocation):
 * the promotion drops it on every shard, whether the client heard ok, fail or
 * nothing. A read completed after open that returns it (register: a value no
 * other write may have written; cas: the value it would set; set: its
 * element) makes the history not valid (seen_after_cut). */
struct site {
    bool on;
    int64_t cut, promote, open;
};

enum site_class {
    SITE_KEEP,      /* checked as it completed */
    SITE_AFTER_CUT, /* a write acked by the old primary after the cut: indeterminate */
    SITE_DROPPED,   /* a read of the old primary after the cut or of the standby */
};

/* A write sent to the old primary after the cut that the promoted site showed. */
struct seen_write {
    const struct hist_op *o;
    int64_t seen_at; /* completion of a read after open that returned it */
};

/* What the site split made of the acknowledged writes and reads. */
struct site_result {
    size_t before_cut, after_cut, promoted, dropped_reads, undetermined;
    const struct hist_op **lost; /* acked after the cut and missing, in file order */
    size_t n_lost;
    struct seen_write *seen; /* sent after the cut and seen after open, in file order */
    size_t n_seen;
    size_t sent_after_cut; /* writes invoked between cut and promote, any outcome */
};

static enum site_class site_class_of(const struct site *site, const struct hist_op *o)
{
    const struct event *done = o->done;
    if (!site->on || done == NULL || done->type != EV_OK)
        return SITE_KEEP;
    if (o->inv->f == F_READ)
        return done->time > site->cut && done->time <= site->open ? SITE_DROPPED : SITE_KEEP;
    return done->time > site->cut && done->time < site->promote ? SITE_AFTER_CUT : SITE_KEEP;
}

/* Whether o is a write (add, write, cas) invoked after the cut and before the
 * first promote: the old primary's, stamped after the cut, so dropped by the
 * promotion whatever its outcome. */
static bool site_sent_after_cut(const struct site *site, const struct hist_op *o)
{
    return site->on && o->inv->f != F_READ && o->inv->time > site->cut &&
           o->inv->time < site->promote;
}

/* Counts an acknowledged write (add, write, cas) by when it was acknowledged. */
static void site_count_write(const struct site *site, struct site_result *sr, int64_t acked)
{
    if (!site->on)
        return;
    if (acked <= site->cut)
        sr->before_cut++;
    else if (acked < site->promote)
        sr->after_cut++;
    else
        sr->promoted++;
}

static int lost_line_cmp(const void *pa, const void *pb)
{
    const struct hist_op *a = *(const struct hist_op *const *)pa;
    const struct hist_op *b = *(const struct hist_op *const *)pb;
    return a->inv->line < b->inv->line ? -1 : a->inv->line > b->inv->line;
}

static int seen_line_cmp(const void *pa, const void *pb)
{
    const struct seen_write *a = pa, *b = pb;
    return a->o->inv->line < b->o->inv->line ? -1 : a->o->inv->line > b->o->inv->line;
}

/* A write's members "line", "f", "key" and "value" (cas: [expected, new]). */
static void print_write_members(const struct hist *h, const struct event *inv, FILE *out)
{
    fprintf(out, "\"line\": %" PRIu32 ", \"f\": \"%s\", \"key\": ", inv->line,
            sv__hist_f_names[inv->f]);
    sv__intern_print(&h->keys, inv->key, out);
    fprintf(out, ", \"value\": ");
    if (inv->f == F_ADD) {
        fprintf(out, "%" PRId64, inv->elem);
    } else if (inv->f == F_CAS) {
        fprintf(out, "[");
        sv__intern_print(&h->values, inv->v1, out);
        fprintf(out, ", ");
        sv__intern_print(&h->values, inv->v2, out);
        fprintf(out, "]");
    } else {
        sv__intern_print(&h->values, inv->v1, out);
    }
}

/* lost_after_cut (a top-level field): count and the first ANOMALY_ELEMS_MAX writes. */
static void print_lost_after_cut(const struct hist *h, const struct site_result *sr, FILE *out)
{
    fprintf(out, "\"lost_after_cut\": {\"count\": %zu, \"writes\": [", sr->n_lost);
    for (size_t i = 0; i < sr->n_lost && i < ANOMALY_ELEMS_MAX; i++) {
        fprintf(out, "%s{", i ? ", " : "");
        print_write_members(h, sr->lost[i]->inv, out);
        fprintf(out, ", \"acked\": %" PRId64 "}", sr->lost[i]->done->time);
    }
    fprintf(out, "]%s}, ", sr->n_lost > ANOMALY_ELEMS_MAX ? ", \"truncated\": true" : "");
}

/* seen_after_cut (a top-level field): count and the first ANOMALY_ELEMS_MAX
 * writes, each with its invocation time, outcome (never completed: info) and
 * when a read after open that returned it completed. */
static void print_seen_after_cut(const struct hist *h, const struct site_result *sr, FILE *out)
{
    fprintf(out, "\"seen_after_cut\": {\"count\": %zu, \"writes\": [", sr->n_seen);
    for (size_t i = 0; i < sr->n_seen && i < ANOMALY_ELEMS_MAX; i++) {
        const struct hist_op *o = sr->seen[i].o;
        fprintf(out, "%s{", i ? ", " : "");
        print_write_members(h, o->inv, out);
        fprintf(out, ", \"invoked\": %" PRId64 ", \"outcome\": \"%s\", \"seen_at\": %" PRId64 "}",
                o->inv->time, o->done != NULL ? sv__hist_type_names[o->done->type] : "info",
                sr->seen[i].seen_at);
    }
    fprintf(out, "]%s}, ", sr->n_seen > ANOMALY_ELEMS_MAX ? ", \"truncated\": true" : "");
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

/* Whether the after-cut write o of key range ops[0..n) (where it is
 * indeterminate) is missing: the history is not linearizable once o is taken
 * as acknowledged when it was (the other after-cut writes still
 * indeterminate). Adds it to sr->lost, or counts it undetermined when the
 * search gave up. -1 when memory ran out. */
static int site_probe(struct lin_op *ops, size_t n, const struct hist_op *o, struct site_result *sr,
                      uint64_t *explored)
{
    struct lin_op want;
    to_lin_op(&want, o->inv, NULL);
    size_t j = 0;
    while (j < n && !(ops[j].call == want.call && !ops[j].done && ops[j].kind == want.kind &&
                      ops[j].arg == want.arg && ops[j].arg2 == want.arg2))
        j++;
    if (j == n) { /* check_register put every after-cut write among its key's ops */
        fprintf(stderr, "sv-check: line %" PRIu32 ": after-cut write not found\n", o->inv->line);
        abort();
    }
    ops[j].done = true;
    ops[j].ret = (uint64_t)o->done->time;
    struct lin_report rep;
    int verdict = sv__lin_check(ops, n, 0, &rep);
    *explored += rep.explored;
    ops[j].done = false;
    ops[j].ret = 0;
    if (verdict < 0)
        return -1;
    if (verdict == LIN_VIOLATION)
        sr->lost[sr->n_lost++] = o;
    sr->undetermined += verdict == LIN_UNKNOWN;
    return 0;
}

/* site_seen_register's view of one operation: a (key, value) written or read. */
enum kv_kind {
    KV_SOURCE, /* written by a write that did not fail and was not sent after the cut */
    KV_READ,   /* returned by an ok read completed after open */
    KV_SENT,   /* written by a write sent to the old primary after the cut */
};

struct kv_use {
    uint32_t key, value;
    uint8_t kind; /* enum kv_kind */
    int64_t time; /* KV_READ: its completion; else the invocation */
    const struct hist_op *o;
};

/* By key, value, kind, time, line: a (key, value)'s sources first, then its
 * reads, the earliest first. */
static int kv_use_cmp(const void *pa, const void *pb)
{
    const struct kv_use *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->time != b->time)
        return a->time < b->time ? -1 : 1;
    return a->o->inv->line < b->o->inv->line ? -1 : a->o->inv->line > b->o->inv->line;
}

/* site: fills sr->seen with the writes (write, cas) sent to the old primary
 * after the cut whose value (a cas: the one it would set) a read completed
 * after open returned, when no other write may have written that value to that
 * key (one that did not fail, invoked before the cut or after the promote).
 * Values are never null, so a null read is no write's. 0 or -ENOMEM. */
static int site_seen_register(const struct hist *h, const struct site *site, struct site_result *sr)
{
    struct kv_use *u = malloc((h->n_ops + 1) * sizeof(*u));
    sr->seen = malloc((h->n_ops + 1) * sizeof(*sr->seen));
    if (u == NULL || sr->seen == NULL) {
        free(u);
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < h->n_ops; i++) {
        const struct hist_op *o = &h->ops[i];
        const struct event *inv = o->inv, *done = o->done;
        struct kv_use *x = &u[n];
        x->key = inv->key;
        x->time = inv->time;
        x->o = o;
        if (inv->f == F_READ) {
            if (done == NULL || done->type != EV_OK || done->time <= site->open)
                continue;
            x->kind = KV_READ;
            x->value = done->v1;
            x->time = done->time;
        } else {
            x->value = inv->f == F_CAS ? inv->v2 : inv->v1;
            if (site_sent_after_cut(site, o)) {
                x->kind = KV_SENT;
                sr->sent_after_cut++;
            } else if (done != NULL && done->type == EV_FAIL) {
                continue; /* did not happen */
            } else {
                x->kind = KV_SOURCE;
            }
        }
        n++;
    }
    qsort(u, n, sizeof(*u), kv_use_cmp);
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && u[k].key == u[i].key && u[k].value == u[i].value)
            k++;
        /* u[i] is a source when the (key, value) has one, else its earliest read. */
        for (size_t j = i; u[i].kind == KV_READ && j < k; j++)
            if (u[j].kind == KV_SENT)
                sr->seen[sr->n_seen++] = (struct seen_write){.o = u[j].o, .seen_at = u[i].time};
        i = k;
    }
    free(u);
    qsort(sr->seen, sr->n_seen, sizeof(*sr->seen), seen_line_cmp);
    return 0;
}

/* Writes the anomalies (the JSON array's elements) to out. Returns the exit
 * code, or -1 with msg. */
static int check_register(const struct hist *h, const struct site *site, struct site_result *sr,
                          FILE *out, uint64_t *explored, char *msg, size_t msg_len)
{
    struct lin_op *ops = malloc((h->n_ops + 1) * sizeof(*ops));
    const struct hist_op **after = malloc((h->n_ops + 1) * sizeof(*after));
    sr->lost = malloc((h->n_ops + 1) * sizeof(*sr->lost));
    if (ops == NULL || after == NULL || sr->lost == NULL ||
        (site->on && site_seen_register(h, site, sr) != 0)) {
        free(ops);
        free(after);
        snprintf(msg, msg_len, "out of memory");
        return -1;
    }
    size_t n = 0, n_after = 0;
    for (size_t i = 0; i < h->n_ops; i++) {
        const struct hist_op *o = &h->ops[i];
        const struct event *done = o->done;
        if (done != NULL && done->type == EV_FAIL)
            continue; /* did not happen */
        enum site_class sc = site_class_of(site, o);
        if (sc == SITE_DROPPED) {
            sr->dropped_reads++;
            continue;
        }
        if (done != NULL && done->type == EV_OK && o->inv->f != F_READ)
            site_count_write(site, sr, done->time);
        if (sc == SITE_AFTER_CUT)
            after[n_after++] = o;
        to_lin_op(&ops[n++], o->inv,
                  sc == SITE_KEEP && done != NULL && done->type == EV_OK ? done : NULL);
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
        /* A key that holds together with its after-cut writes indeterminate:
         * which of them are missing. */
        for (size_t a = 0; verdict == LIN_OK && a < n_after; a++)
            if (after[a]->inv->key == ops[i].key &&
                site_probe(&ops[i], k - i, after[a], sr, explored) != 0)
                verdict = -1;
        if (verdict < 0) {
            free(ops);
            free(after);
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
    free(after);
    qsort(sr->lost, sr->n_lost, sizeof(*sr->lost), lost_line_cmp);
    return invalid ? EXIT_INVALID : unknown ? EXIT_BROKEN : EXIT_VALID;
}

/* ---- Set histories: Jepsen's set checker ---- */

enum add_outcome { ADD_OK, ADD_FAIL, ADD_INFO };

struct add {
    int64_t elem;
    int64_t done_time;       /* ADD_OK: when it was acknowledged */
    const struct hist_op *o; /* the add */
    uint32_t line;           /* of the invocation */
    uint8_t outcome;         /* enum add_outcome; never completed = info */
    bool after_cut;          /* site: acknowledged by the old primary after the cut */
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

/* When the last ok read holding elem completed; INT64_MIN when none held it. */
static int64_t set_last_seen(const struct hist_set *s, int64_t elem)
{
    size_t lo = 0, hi = s->seen.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->seen.v[mid] < elem)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->seen.n && s->seen.v[lo] == elem ? s->seen_last.v[lo] : INT64_MIN;
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
static int check_set(const struct hist *h, const struct site *site, struct site_result *sr,
                     FILE *out, struct set_result *r, struct elems lists[L_N], char *msg,
                     size_t msg_len)
{
    const struct hist_set *s = &h->set;
    int rc = -1;
    struct add *adds = malloc((h->n_ops + 1) * sizeof(*adds));
    sr->lost = malloc((h->n_ops + 1) * sizeof(*sr->lost));
    sr->seen = malloc((h->n_ops + 1) * sizeof(*sr->seen));
    if (adds == NULL || sr->lost == NULL || sr->seen == NULL)
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
        a->o = o;
        a->after_cut = site_class_of(site, o) == SITE_AFTER_CUT;
        if (a->outcome == ADD_OK)
            site_count_write(site, sr, a->done_time);
        /* site: an add sent to the old primary after the cut (its element is
         * its own: elements are unique) that a read after open held. */
        if (site_sent_after_cut(site, o)) {
            int64_t last = set_last_seen(s, a->elem);
            sr->sent_after_cut++;
            if (last > site->open)
                sr->seen[sr->n_seen++] = (struct seen_write){.o = o, .seen_at = last};
        }
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
    /* site: the final read must be the promoted site's. */
    if (final != NULL && site->on && final->inv->time <= site->open)
        final = NULL;
    if (final != NULL) {
        /* The final read: every add acknowledged before it began must be in
         * it; an add acknowledged while it ran may or may not be (site: one
         * acknowledged by the old primary after the cut may be missing, and
         * is listed). */
        r->has_final = true;
        r->final = s->final.n;
        for (size_t k = 0; k < n_adds; k++) {
            bool in = sv__elems_has(&s->final, adds[k].elem);
            if (adds[k].outcome == ADD_OK && !in && adds[k].done_time < final->inv->time) {
                if (adds[k].after_cut)
                    sr->lost[sr->n_lost++] = adds[k].o;
                else if (sv__elems_push(&lists[L_LOST], adds[k].elem) != 0)
                    goto err_oom;
            }
            r->recovered += adds[k].outcome == ADD_INFO && in;
        }
        qsort(sr->lost, sr->n_lost, sizeof(*sr->lost), lost_line_cmp);
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
static int verdict(const struct hist *h, const struct site *site, FILE *out, char *msg,
                   size_t msg_len)
{
    struct site_result sr = {0};
    struct stats st = {0};
    count_ops(h, &st);
    double t0 = now_ms();
    uint64_t explored = 0;
    struct set_result set = {0};
    struct elems lists[L_N] = {{0}};
    char *anomalies = NULL;
    size_t anomalies_len = 0;
    FILE *a = open_memstream(&anomalies, &anomalies_len);
    if (a == NULL) {
        snprintf(msg, msg_len, "out of memory");
        return -1;
    }
    int rc = h->kind == HIST_SET ? check_set(h, site, &sr, a, &set, lists, msg, msg_len)
                                 : check_register(h, site, &sr, a, &explored, msg, msg_len);
    /* site: a write the promotion must have dropped is there, whatever else
     * the check found (seen_after_cut lists them). */
    if (rc >= 0 && sr.n_seen > 0) {
        fflush(a);
        fprintf(a, "%s{\"kind\": \"seen-after-cut\", \"count\": %zu}",
                anomalies_len == 0 ? "" : ", ", sr.n_seen);
        rc = EXIT_INVALID;
    }
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
                    set.attempted, set.acknowledged, set.final, lists[L_LOST].n,
                    lists[L_UNEXPECTED].n, lists[L_DUPLICATED].n, set.recovered,
                    lists[L_FAILED_VISIBLE].n);
        if (site->on) {
            fprintf(out,
                    "\"site\": {\"cut\": %" PRId64 ", \"promote\": %" PRId64 ", \"open\": %" PRId64
                    ", \"acked_before_cut\": %zu, \"acked_after_cut\": %zu, \"acked_promoted\": "
                    "%zu, \"reads_left_out\": %zu, \"undetermined\": %zu}, ",
                    site->cut, site->promote, site->open, sr.before_cut, sr.after_cut, sr.promoted,
                    sr.dropped_reads, sr.undetermined);
            print_lost_after_cut(h, &sr, out);
            print_seen_after_cut(h, &sr, out);
        }
        fprintf(out, "\"anomalies\": [%s], \"explored\": %" PRIu64 ", \"checked_ms\": %.0f}\n",
                anomalies, explored, checked_ms);
    }
    if (rc >= 0 && site->on && sr.n_lost > 0)
        fprintf(stderr,
                "sv-check: %zu of %zu writes acknowledged after the cut (by the old primary) are "
                "missing from the promoted site (lost_after_cut; the divergence ledger is not "
                "built)\n",
                sr.n_lost, sr.after_cut);
    if (rc >= 0 && sr.n_seen > 0)
        fprintf(stderr,
                "sv-check: %zu of %zu writes invoked after the cut (sent to the old primary: the "
                "promotion drops them) are visible on the promoted site (seen_after_cut)\n",
                sr.n_seen, sr.sent_after_cut);
    for (int k = 0; k < L_N; k++)
        free(lists[k].v);
    free(sr.lost);
    free(sr.seen);
    free(anomalies);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sv-check [--out RESULTS] FILE\n"
                 "       sv-check [--out RESULTS] --cut T --promote T --open T FILE\n"
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
                 "  --cut T --promote T --open T  (together; ns in the history's clock) a\n"
                 "            history split by a site failover (jepsen/run --nemesis site): T\n"
                 "            of the promotion's cut, of the first promote sent, of its return.\n"
                 "            Acknowledged before the cut or after the promote: must be\n"
                 "            present. A write acknowledged in between (by the old primary\n"
                 "            after the cut) may be missing: indeterminate; the missing ones\n"
                 "            are listed in lost_after_cut (register: those the history cannot\n"
                 "            hold as acknowledged). Reads completed between cut and open are\n"
                 "            left out (old primary or not yet promoted standby). The set's\n"
                 "            final read must begin after open. A write invoked between cut\n"
                 "            and promote (sent to the old primary, stamped after the cut:\n"
                 "            the promotion drops it), acknowledged or not, must not be seen\n"
                 "            by a read completed after open (register: a value no other\n"
                 "            write may have written; cas: the one it would set; set: its\n"
                 "            element): listed in seen_after_cut, not valid. Adds \"site\",\n"
                 "            \"lost_after_cut\" and \"seen_after_cut\" to the JSON.\n"
                 "Exit status: 0 valid, 1 not valid, 2 unreadable or malformed file, or the\n"
                 "search gave up (unknown).\n");
}

/* A signed decimal int64 (a time): true when s is one. */
static bool parse_time(const char *s, int64_t *out)
{
    char *end;
    if (*s == '\0')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *out_path = NULL;
    struct site site = {0};
    int site_opts = 0; /* bit per --cut, --promote, --open */
    static const char *const site_names[] = {"--cut", "--promote", "--open"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_VALID;
        }
        int t = 0;
        while (t < 3 && strcmp(a, site_names[t]) != 0)
            t++;
        if (t < 3) {
            int64_t *dst = t == 0 ? &site.cut : t == 1 ? &site.promote : &site.open;
            if (i + 1 >= argc || (site_opts >> t & 1) || !parse_time(argv[i + 1], dst)) {
                fprintf(stderr, "sv-check: %s needs one integer time (ns)\n", a);
                usage(stderr);
                return EXIT_BROKEN;
            }
            site_opts |= 1 << t;
            i++;
        } else if (strcmp(a, "--out") == 0 && i + 1 < argc && out_path == NULL) {
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
    if (site_opts != 0 && (site_opts != 7 || site.cut > site.promote || site.promote > site.open)) {
        fprintf(stderr, "sv-check: --cut, --promote and --open go together, in that order of time "
                        "(cut <= promote <= open)\n");
        return EXIT_BROKEN;
    }
    site.on = site_opts == 7;
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
    status = verdict(&h, &site, mem, msg, sizeof(msg));
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
