/* svctl dr drill: a disaster-recovery exercise against live load (preflight, the
 * primary site's outage, promotion, the check of every acknowledged write, the old
 * primary restored and fenced), each step timed, and its report (svctl_drill_report.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardvault/client.h"
#include "svctl.h"
#include "svctl_drill.h"

enum {
    LOAD_CLIENTS_MAX = 64,
    LOAD_CLIENTS_DEFAULT = 4,
    WARMUP_S_MAX = 600,
    WARMUP_S_DEFAULT = 5,
    OBJECT_BYTES_MAX = 1 << 20,
    OBJECT_BYTES_DEFAULT = 1024,
    MAX_LAG_MS_DEFAULT = 2000,
    MAX_LAG_MS_MAX = 3600 * 1000,
    STEP_TIMEOUT_S_DEFAULT = 60,
    STEP_TIMEOUT_S_MAX = 3600,
    LOAD_DEADLINE_MS = 2000,   /* per put of the load: a dead site costs a client this long */
    LOAD_RETRY_MS = 20,        /* pause after a failed put (a read-only standby answers at once) */
    LOAD_TAIL_MS = 1000,       /* load kept on the promoted site after its first write */
    LAG_SAMPLE_MS = 250,       /* between two looks at the standby's lag */
    POLL_MS = 200,             /* between two tries of preflight, promote, fence checks */
    CHECK_DEADLINE_MS = 10000, /* per read of verify */
    CHECK_THREADS_MAX = 16,
    PROBE_DEADLINE_MS = 3000,         /* per fence probe */
    STAT_DEADLINE_MS_DEFAULT = 10000, /* dr status and promote, without --timeout */
    FENCE_PROBES = 8,                 /* writes sent to the restored old primary */
    CMD_POLL_MS = 20,
    FDS_CLOSED_MAX = 4096, /* descriptors a command's child closes */
};
_Static_assert(LOAD_CLIENTS_MAX <= UINT32_MAX, "client ids are uint32_t");
_Static_assert(LAG_SAMPLE_MS *SV__DRILL_LAG_SAMPLES_MAX >= WARMUP_S_MAX * 1000,
               "room for every lag sample of the longest warm-up");

static const char drill_usage[] =
    "usage: svctl dr drill --primary HOST:PORT,... --standby HOST:PORT,...\n"
    "                      --outage-cmd CMD --restore-cmd CMD --out DIR\n"
    "                      [--load-clients N] [--warmup S] [--object-bytes N]\n"
    "                      [--max-lag-ms N] [--step-timeout S] [--bucket NAME]\n"
    "A disaster-recovery drill against live load: the primary site's loss, the\n"
    "standby's promotion, the check of every acknowledged write, and the old\n"
    "primary back, fenced. Each step is timed and reported ok, failed, skipped\n"
    "(an earlier step failed) or not built. --ca (or SV_CA) is needed; the global\n"
    "--endpoints is not: --primary and --standby name each site's nodes.\n"
    "  preflight    both sites answer (every node); the primary is primary, the\n"
    "               standby standby, peers of each other with the same shard count;\n"
    "               every standby shard streaming, every primary shard shipping; the\n"
    "               standby's lag at most --max-lag-ms (default 2000). Tried again\n"
    "               until --step-timeout.\n"
    "  load         --load-clients N threads (default 4, at most 64) put objects of\n"
    "               --object-bytes (default 1024) under unique keys RUN/cC-SEQ into\n"
    "               --bucket (default drill), RUN being drill-<ms since the epoch>:\n"
    "               to the primary, and from the outage on to the standby (refused\n"
    "               read-only until it is promoted). Every acknowledgment is recorded\n"
    "               with its wall time and site.\n"
    "  lag          the standby's lag (as svctl dr status), sampled every 250 ms\n"
    "               during --warmup S seconds (default 5, at most 600) of load: at\n"
    "               most\n"
    "               --max-lag-ms.\n"
    "  outage       T_out: the load leaves the primary, then --outage-cmd CMD runs\n"
    "               (/bin/sh -c; its output in DIR/outage-cmd.log); it must exit 0.\n"
    "  promote      the cut (the standby's site frontier, as svctl dr promote reads\n"
    "               it), then the promotion, without --force: tried again while the\n"
    "               standby refuses because it heard the primary within 3 s; then\n"
    "               until every node of the promoted site takes writes.\n"
    "  first-write  the first write the standby accepts: RTO = it minus T_out.\n"
    "  verify       every write either site acknowledged is read back from the\n"
    "               promoted site. One the primary acknowledged and the promoted\n"
    "               site does not have is missing: the RPO loss, each listed (key,\n"
    "               acknowledgment time). Fails on other bytes, a failed read, or a\n"
    "               missing write acknowledged before the cut.\n"
    "  restore      --restore-cmd CMD brings the old primary back\n"
    "               (DIR/restore-cmd.log); it must exit 0.\n"
    "  fenced       8 writes sent to the old primary alone are each refused\n"
    "               READ_ONLY, and its nodes report the site fenced.\n"
    "  failback     svctl dr failback: the old primary's writes past the cut go\n"
    "               into the divergence ledger, then it is the promoted site's\n"
    "               standby, re-seeded and streaming (every shard at the primary's\n"
    "               commit index).\n"
    "  ledger       every write verify found missing is in the ledger of the\n"
    "               promotion's site epoch, with its size.\n"
    "  switchback   svctl dr switchover back: the first site the primary again,\n"
    "               nothing diverged (RPO 0), the other streaming as its standby,\n"
    "               every shard's digest alike on both sites (svctl dr verify).\n"
    "A failed step ends the drill, except that the restore command runs whenever\n"
    "the outage command ran. Every wait is bounded by --step-timeout S (default\n"
    "60, at most 3600; verify's reads together too).\n"
    "Figures: the RPO window (T_out minus the cut), the missing writes, RTO, the\n"
    "lag before the outage (p50, p99, max, last), the load. The cut is read by the\n"
    "standby nodes' clocks, acknowledgments by this host's: their skew adds in.\n"
    "Report: text on stdout (-o json: drill.json instead), DIR/drill.txt,\n"
    "DIR/drill.json, DIR/drill.html (one self-contained page: timeline, figures,\n"
    "missing writes); progress on stderr. A drill that passed leaves the roles as\n"
    "it found them (the ledger keeps what diverged, bucket sv-diverged). Ctrl-C\n"
    "stops the drill where it is (run the restore command by hand).\n"
    "deploy/cluster drill runs it on the local deployment.\n"
    "Exit status: 0 when every built step passed, 1 when a step failed (the\n"
    "report says which), 2 for usage errors (--outage-cmd and --restore-cmd are\n"
    "required: the drill cannot take a site down by itself).\n";

struct opts {
    const char *primary, *standby, *outage_cmd, *restore_cmd, *out, *bucket;
    uint64_t load_clients, warmup_s, object_bytes, max_lag_ms, step_timeout_s;
};

enum { PHASE_PRIMARY, PHASE_STANDBY, PHASE_STOP };

/* The drill's clients: each of one site, with the deadline its use wants. */
enum client_use { STAT_P, STAT_S, LOAD_P, LOAD_S, CHECK_S, PROBE_P, CLIENTS };
static const struct {
    bool standby;         /* of the standby's endpoints, else the primary's */
    uint32_t deadline_ms; /* 0: the global --timeout, else 10 s */
} client_uses[CLIENTS] = {
    [STAT_P] = {false, 0},
    [STAT_S] = {true, 0},
    [LOAD_P] = {false, LOAD_DEADLINE_MS},
    [LOAD_S] = {true, LOAD_DEADLINE_MS},
    [CHECK_S] = {true, CHECK_DEADLINE_MS},
    [PROBE_P] = {false, PROBE_DEADLINE_MS},
};

struct run;

struct loader {
    struct run *r;
    uint32_t id;
    pthread_t thread;
    bool started;
};

struct run {
    struct sv__drill d;
    const struct global *g;
    struct sv_client *clients[CLIENTS]; /* enum client_use */
    pthread_mutex_t mu;                 /* d.acks and the counters below */
    atomic_int phase;
    atomic_llong first_standby_ack_ms; /* -1 until the standby took a write */
    uint64_t primary_failed_early;     /* puts that failed before T_out */
    struct loader loaders[LOAD_CLIENTS_MAX];
    /* verify */
    atomic_size_t next_check;
    uint64_t check_deadline_ms; /* monotonic */
    size_t standby_bad;         /* writes of the promoted site not read back */
    char check_err[256];        /* the first failed read */
};

/* ---- arguments ---- */

static bool bucket_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && ((c != '-' && c != '.') || i == 0 || i == n - 1))
            return false;
    }
    return true;
}

/* A number option in lo..hi, or a usage error naming it. */
static bool number_opt(const char *name, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!sv__parse_u64(v, out) || *out < lo || *out > hi) {
        sv__usage_error("dr drill: %s needs a number in %" PRIu64 "..%" PRIu64 ", not \"%s\"", name,
                        lo, hi, v);
        return false;
    }
    return true;
}

/* argv[2..): 0, -1 after --help, EXIT_USAGE. */
static int parse(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->bucket = "drill";
    o->load_clients = LOAD_CLIENTS_DEFAULT;
    o->warmup_s = WARMUP_S_DEFAULT;
    o->object_bytes = OBJECT_BYTES_DEFAULT;
    o->max_lag_ms = MAX_LAG_MS_DEFAULT;
    o->step_timeout_s = STEP_TIMEOUT_S_DEFAULT;
    static const char *const strs[] = {"--primary",     "--standby", "--outage-cmd",
                                       "--restore-cmd", "--out",     "--bucket"};
    const char **str_dst[] = {&o->primary,     &o->standby, &o->outage_cmd,
                              &o->restore_cmd, &o->out,     &o->bucket};
    static const struct {
        const char *name;
        uint64_t lo, hi;
    } nums[] = {
        {"--load-clients", 1, LOAD_CLIENTS_MAX},   {"--warmup", 1, WARMUP_S_MAX},
        {"--object-bytes", 1, OBJECT_BYTES_MAX},   {"--max-lag-ms", 1, MAX_LAG_MS_MAX},
        {"--step-timeout", 1, STEP_TIMEOUT_S_MAX},
    };
    uint64_t *num_dst[] = {&o->load_clients, &o->warmup_s, &o->object_bytes, &o->max_lag_ms,
                           &o->step_timeout_s};
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(drill_usage, stdout);
            return -1;
        }
        const char *v = NULL;
        bool taken = false;
        for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]) && !taken; k++) {
            if (!sv__opt_value(argc, argv, &i, strs[k], &v))
                continue;
            if (v == NULL || v[0] == '\0') {
                sv__usage_error("dr drill: %s needs a value", strs[k]);
                return EXIT_USAGE;
            }
            *str_dst[k] = v;
            taken = true;
        }
        for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]) && !taken; k++) {
            if (!sv__opt_value(argc, argv, &i, nums[k].name, &v))
                continue;
            if (v == NULL) {
                sv__usage_error("dr drill: %s needs a value", nums[k].name);
                return EXIT_USAGE;
            }
            if (!number_opt(nums[k].name, v, nums[k].lo, nums[k].hi, num_dst[k]))
                return EXIT_USAGE;
            taken = true;
        }
        if (taken)
            continue;
        if (argv[i][0] == '-')
            sv__usage_error("dr drill: unknown option %s", argv[i]);
        else
            sv__usage_error("dr drill: unexpected argument \"%s\"", argv[i]);
        return EXIT_USAGE;
    }
    if (o->primary == NULL || o->standby == NULL) {
        sv__usage_error("dr drill: --primary and --standby are required (each site's nodes, "
                        "HOST:PORT,...)");
        return EXIT_USAGE;
    }
    if (o->outage_cmd == NULL || o->restore_cmd == NULL) {
        sv__usage_error("dr drill: --outage-cmd and --restore-cmd are required: the drill "
                        "cannot take a site down or bring it back by itself; give the shell "
                        "commands that do it (deploy/cluster drill gives its own)");
        return EXIT_USAGE;
    }
    if (o->out == NULL) {
        sv__usage_error("dr drill: --out DIR is required (where the report goes)");
        return EXIT_USAGE;
    }
    if (!bucket_ok(o->bucket)) {
        sv__usage_error("dr drill: --bucket \"%s\" is not a bucket name (1..63 of [a-z0-9.-], "
                        "starting and ending with a letter or digit)",
                        o->bucket);
        return EXIT_USAGE;
    }
    return 0;
}

/* ---- steps ---- */

static void begin(struct run *r, enum sv__drill_step_id id)
{
    r->d.steps[id].start_ms = sv__wall_ms();
    fprintf(stderr, "svctl: dr drill: %s ...\n", sv__drill_step_names[id]);
}

/* End step id with st and a sentence, and say so on stderr. Returns st == ok. */
static bool done(struct run *r, enum sv__drill_step_id id, enum sv__drill_status st,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static bool done(struct run *r, enum sv__drill_step_id id, enum sv__drill_status st,
                 const char *fmt, ...)
{
    char text[SV__DRILL_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    int64_t now = sv__wall_ms();
    sv__drill_step_end(&r->d, id, st, now, "%s", text);
    const struct sv__drill_step *s = &r->d.steps[id];
    fprintf(stderr, "svctl: dr drill: %s: %s (%.2f s): %s\n", sv__drill_step_names[id],
            sv__drill_status_name(st), (double)(s->end_ms - s->start_ms) / 1000.0, text);
    return st == SV__DRILL_OK;
}

/* Mark the steps from..to (not the not-built ones) skipped because of why. */
static void skip(struct run *r, enum sv__drill_step_id from, enum sv__drill_step_id to,
                 const char *why)
{
    for (int i = from; i <= (int)to; i++)
        if (r->d.steps[i].status == SV__DRILL_NOT_RUN) {
            r->d.steps[i].status = SV__DRILL_SKIPPED;
            snprintf(r->d.steps[i].text, sizeof(r->d.steps[i].text), "skipped: %s", why);
        }
}

static int open_client(const struct global *g, const char *endpoints, uint32_t deadline_ms,
                       struct sv_client **out, char *why, size_t cap)
{
    struct sv_client_options o = {
        .endpoints = endpoints,
        .ca_file = g->ca,
        .token = g->token,
        .deadline_ms = deadline_ms,
    };
    int err = sv_client_open(&o, out);
    if (err != 0)
        snprintf(why, cap, "cannot open a client for %s: %s: %s", endpoints,
                 sv_client_strerror(err), sv_client_errmsg());
    return err;
}

/* One look at both sites for preflight: true when ready, else why. */
static bool sites_ready(struct run *r, char *why, size_t cap)
{
    struct sv_dr_status *p = NULL, *s = NULL;
    bool ok = false;
    int err = sv_client_dr_status(r->clients[STAT_P], &p);
    if (err != 0) {
        snprintf(why, cap, "the primary (%s) does not answer dr status: %s: %s",
                 r->d.primary_endpoints, sv_client_strerror(err), sv_client_errmsg());
        return false;
    }
    err = sv_client_dr_status(r->clients[STAT_S], &s);
    if (err != 0) {
        snprintf(why, cap, "the standby (%s) does not answer dr status: %s: %s",
                 r->d.standby_endpoints, sv_client_strerror(err), sv_client_errmsg());
        goto out;
    }
    snprintf(r->d.primary_site, sizeof(r->d.primary_site), "%s", p->site);
    snprintf(r->d.standby_site, sizeof(r->d.standby_site), "%s", s->site);
    if (p->n_answered < p->n_nodes || s->n_answered < s->n_nodes) {
        snprintf(why, cap,
                 "not every node answers: %zu of %zu of the primary, %zu of %zu of the "
                 "standby",
                 p->n_answered, p->n_nodes, s->n_answered, s->n_nodes);
    } else if (strcmp(p->role, "primary") != 0 || strcmp(s->role, "standby") != 0) {
        snprintf(why, cap,
                 "the roles are not primary and standby: --primary's site %s is %s, "
                 "--standby's site %s is %s",
                 p->site, p->role, s->site, s->role);
    } else if (strcmp(p->peer, s->site) != 0 || strcmp(s->peer, p->site) != 0) {
        snprintf(why, cap, "the sites are not each other's peers: %s's peer is \"%s\", %s's \"%s\"",
                 p->site, p->peer, s->site, s->peer);
    } else if (p->n_shards != s->n_shards) {
        snprintf(why, cap, "the shard counts differ: %zu on the primary, %zu on the standby",
                 p->n_shards, s->n_shards);
    } else {
        ok = true;
        for (size_t i = 0; i < s->n_shards && ok; i++) {
            const struct sv_dr_shard *sp = &p->shards[i], *ss = &s->shards[i];
            if (strcmp(ss->state, "streaming") != 0) {
                snprintf(why, cap, "standby shard %zu is %s%s%s", i, ss->state,
                         ss->reason[0] ? ": " : "", ss->reason);
                ok = false;
            } else if (strcmp(sp->state, "shipping") != 0) {
                snprintf(why, cap, "primary shard %zu is %s%s%s", i, sp->state,
                         sp->reason[0] ? ": " : "", sp->reason);
                ok = false;
            }
        }
        if (ok && (s->lag_ms < 0 || s->lag_ms > r->d.max_lag_ms)) {
            snprintf(why, cap, "the standby's lag is %" PRId64 " ms (-1: unknown), above %" PRId64,
                     s->lag_ms, r->d.max_lag_ms);
            ok = false;
        }
        if (ok)
            snprintf(why, cap,
                     "site %s primary (%zu nodes), site %s standby (%zu nodes), %zu shards "
                     "each, every one streaming; lag %" PRId64 " ms",
                     p->site, p->n_nodes, s->site, s->n_nodes, s->n_shards, s->lag_ms);
    }
out:
    sv_client_dr_status_free(p);
    sv_client_dr_status_free(s);
    return ok;
}

static bool step_preflight(struct run *r)
{
    begin(r, SV__DRILL_PREFLIGHT);
    char why[SV__DRILL_TEXT_MAX];
    uint64_t deadline = sv__mono_ms() + r->d.step_timeout_s * 1000ull;
    for (;;) {
        if (sites_ready(r, why, sizeof(why)))
            return done(r, SV__DRILL_PREFLIGHT, SV__DRILL_OK, "%s", why);
        if (sv__mono_ms() >= deadline)
            return done(r, SV__DRILL_PREFLIGHT, SV__DRILL_FAILED, "after %" PRIu32 " s: %s",
                        r->d.step_timeout_s, why);
        sv__pause_ms(POLL_MS);
    }
}

/* ---- the load ---- */

static void *load_main(void *arg)
{
    struct loader *l = arg;
    struct run *r = l->r;
    uint8_t *buf = malloc(r->d.object_bytes);
    if (buf == NULL)
        return NULL;
    char key[SV__DRILL_KEY_MAX];
    for (uint32_t seq = 1; seq < UINT32_MAX; seq++) {
        int phase = atomic_load(&r->phase);
        if (phase == PHASE_STOP)
            break;
        struct sv_client *c = phase == PHASE_PRIMARY ? r->clients[LOAD_P] : r->clients[LOAD_S];
        sv__drill_key(r->d.run, l->id, seq, key, sizeof(key));
        sv__drill_payload(r->d.run, l->id, seq, buf, r->d.object_bytes);
        struct sv__drill_ack a = {
            .client = l->id,
            .seq = seq,
            .site = phase == PHASE_PRIMARY ? SV__DRILL_AT_PRIMARY : SV__DRILL_AT_STANDBY,
            .sent_ms = sv__wall_ms(),
        };
        int err = sv_client_put(c, r->d.bucket, key, buf, r->d.object_bytes, SV_IF_ANY, NULL);
        a.ack_ms = sv__wall_ms();
        bool full = false;
        pthread_mutex_lock(&r->mu);
        if (err == 0) {
            full = !sv__drill_add_ack(&r->d, &a);
            if (a.site == SV__DRILL_AT_STANDBY && atomic_load(&r->first_standby_ack_ms) < 0)
                atomic_store(&r->first_standby_ack_ms, (long long)a.ack_ms);
        } else if (a.site == SV__DRILL_AT_PRIMARY) {
            r->d.primary_failed++;
            if (r->d.t_out_ms < 0)
                r->primary_failed_early++;
        } else if (err == SV_E_READ_ONLY) {
            r->d.standby_refused++;
        } else {
            r->d.standby_failed++;
        }
        pthread_mutex_unlock(&r->mu);
        if (full)
            break; /* the record is full (or out of memory): the report says so */
        if (err != 0)
            sv__pause_ms(LOAD_RETRY_MS);
    }
    free(buf);
    return NULL;
}

static bool start_load(struct run *r, char *why, size_t cap)
{
    for (uint32_t i = 0; i < r->d.load_clients; i++) {
        struct loader *l = &r->loaders[i];
        l->r = r;
        l->id = i + 1;
        int e = pthread_create(&l->thread, NULL, load_main, l);
        if (e != 0) {
            snprintf(why, cap, "cannot start load client %" PRIu32 ": %s", i + 1, strerror(e));
            return false;
        }
        l->started = true;
    }
    return true;
}

static void stop_load(struct run *r)
{
    atomic_store(&r->phase, PHASE_STOP);
    for (uint32_t i = 0; i < LOAD_CLIENTS_MAX; i++)
        if (r->loaders[i].started) {
            pthread_join(r->loaders[i].thread, NULL);
            r->loaders[i].started = false;
        }
}

/* The load step's outcome, once it stopped. */
static void end_load(struct run *r)
{
    size_t before = 0, after = 0;
    for (size_t i = 0; i < r->d.n_acks; i++) {
        if (r->d.acks[i].site == SV__DRILL_AT_STANDBY)
            after++;
        else
            before++;
    }
    bool ok = before > 0 && r->primary_failed_early == 0 && !r->d.acks_full;
    done(r, SV__DRILL_LOAD, ok ? SV__DRILL_OK : SV__DRILL_FAILED,
         "%" PRIu32 " clients put %" PRIu32 "-byte objects into %s: %zu acknowledged by the "
         "primary (%" PRIu64 " failed before the outage, %" PRIu64 " in all), then %zu by the "
         "promoted site (%" PRIu64 " refused read-only, %" PRIu64 " failed)%s",
         r->d.load_clients, r->d.object_bytes, r->d.bucket, before, r->primary_failed_early,
         r->d.primary_failed, after, r->d.standby_refused, r->d.standby_failed,
         r->d.acks_full ? "; the record filled up and the load stopped" : "");
}

/* Warm-up: the load runs while the standby's lag is sampled. */
static bool step_lag(struct run *r)
{
    begin(r, SV__DRILL_LAG);
    uint64_t end = sv__mono_ms() + r->d.warmup_s * 1000ull;
    char last_err[256] = "";
    while (sv__mono_ms() < end) {
        struct sv_dr_status *s = NULL;
        int err = sv_client_dr_status(r->clients[STAT_S], &s);
        if (err == 0 && s->lag_ms >= 0 && r->d.n_lag < SV__DRILL_LAG_SAMPLES_MAX) {
            r->d.lag_ms[r->d.n_lag++] = s->lag_ms;
        } else {
            r->d.lag_unknown++;
            if (err != 0)
                snprintf(last_err, sizeof(last_err), "%s: %s", sv_client_strerror(err),
                         sv_client_errmsg());
        }
        sv_client_dr_status_free(s);
        sv__pause_ms(LAG_SAMPLE_MS);
    }
    struct sv__drill_figures f;
    pthread_mutex_lock(&r->mu);
    sv__drill_figures(&r->d, &f);
    pthread_mutex_unlock(&r->mu);
    if (r->d.n_lag == 0)
        return done(r, SV__DRILL_LAG, SV__DRILL_FAILED,
                    "no known lag in %zu samples over %" PRIu32 " s%s%s", r->d.lag_unknown,
                    r->d.warmup_s, last_err[0] ? "; last error: " : "", last_err);
    bool ok = f.lag_max_ms <= r->d.max_lag_ms;
    return done(r, SV__DRILL_LAG, ok ? SV__DRILL_OK : SV__DRILL_FAILED,
                "the standby's lag under %zu writes in %" PRIu32 " s: p50 %" PRId64
                " ms, p99 %" PRId64 " ms, max %" PRId64 " ms (%s %" PRId64 " ms), last %" PRId64
                " ms; %zu samples, %zu unknown",
                f.primary_acks, r->d.warmup_s, f.lag_p50_ms, f.lag_p99_ms, f.lag_max_ms,
                ok ? "at most" : "above", r->d.max_lag_ms, f.lag_last_ms, r->d.n_lag,
                r->d.lag_unknown);
}

/* ---- commands ---- */

/* Run cmd through /bin/sh -c, its output appended to log, for at most
 * timeout_s seconds (then its process group is killed). 0 when it exited 0;
 * otherwise -1 with why. */
static int run_cmd(const char *cmd, const char *log, uint32_t timeout_s, char *why, size_t cap)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, cap, "cannot open %s: %s", log, strerror(errno));
        return -1;
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "cannot fork: %s", strerror(errno));
        close(fd);
        if (devnull >= 0)
            close(devnull);
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls here: the load's threads run in the parent. */
        setpgid(0, 0);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        for (int i = 3; i < FDS_CLOSED_MAX; i++)
            close(i); /* the clients' connections are not the command's */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(fd);
    if (devnull >= 0)
        close(devnull);
    uint64_t deadline = sv__mono_ms() + timeout_s * 1000ull;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            snprintf(why, cap, "waiting for it: %s", strerror(errno));
            return -1;
        }
        if (sv__mono_ms() >= deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(why, cap, "still running after %" PRIu32 " s: killed (its output: %s)",
                     timeout_s, log);
            return -1;
        }
        sv__pause_ms(CMD_POLL_MS);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        snprintf(why, cap, "exit status %d (its output: %s)", WEXITSTATUS(status), log);
    else
        snprintf(why, cap, "killed by signal %d (its output: %s)", WTERMSIG(status), log);
    return -1;
}

static bool step_outage(struct run *r)
{
    begin(r, SV__DRILL_OUTAGE);
    /* T_out: from here no write goes to the primary (one in flight may still
     * be acknowledged: it counts, and is checked, as the primary's). */
    pthread_mutex_lock(&r->mu);
    r->d.t_out_ms = sv__wall_ms();
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->phase, PHASE_STANDBY);
    r->d.steps[SV__DRILL_OUTAGE].start_ms = r->d.t_out_ms;
    char log[4096], why[512];
    snprintf(log, sizeof(log), "%s/outage-cmd.log", r->d.out_dir);
    if (run_cmd(r->d.outage_cmd, log, r->d.step_timeout_s, why, sizeof(why)) != 0)
        return done(r, SV__DRILL_OUTAGE, SV__DRILL_FAILED, "the outage command failed: %s", why);
    return done(r, SV__DRILL_OUTAGE, SV__DRILL_OK,
                "the outage command exited 0; T_out is when it started (its output: %s)", log);
}

static bool step_promote(struct run *r)
{
    begin(r, SV__DRILL_PROMOTE);
    uint64_t deadline = sv__mono_ms() + r->d.step_timeout_s * 1000ull;
    struct sv__dr_cut cut = {-1, -1, -1, -1};
    struct sv_dr_promote p = {0};
    unsigned attempts = 0, refused = 0;
    char last[SV__DRILL_TEXT_MAX / 2] = "";
    bool already = false;
    for (;;) {
        struct sv_dr_status *s = NULL;
        if (sv_client_dr_status(r->clients[STAT_S], &s) == 0) {
            if (strcmp(s->role, "standby") == 0) {
                cut = sv__dr_cut_of(s, sv__wall_ms());
            } else if (attempts > 0 && strcmp(s->role, "primary") == 0) {
                /* A retry after a lost answer: the promotion was recorded. */
                already = true;
                p.site_epoch = s->epoch;
            }
        }
        sv_client_dr_status_free(s);
        if (already)
            break;
        attempts++;
        int err = sv_client_dr_promote(r->clients[STAT_S], false, &p);
        if (err == 0)
            break;
        if (err == SV_E_BAD_ARGUMENT)
            refused++;
        snprintf(last, sizeof(last), "%s: %s", sv_client_strerror(err), sv_client_errmsg());
        if (sv__mono_ms() >= deadline)
            return done(r, SV__DRILL_PROMOTE, SV__DRILL_FAILED,
                        "not promoted after %" PRIu32 " s (%u attempts, %u refused); last: %s",
                        r->d.step_timeout_s, attempts, refused, last);
        sv__pause_ms(POLL_MS);
    }
    r->d.promoted_ms = sv__wall_ms();
    r->d.site_epoch = p.site_epoch;
    if (!already) {
        sv__dr_cut_at(&cut, p.cut_ms); /* the cut the promotion made */
        r->d.cut_made = p.cut_ms >= 0;
    }
    r->d.cut_ms = cut.frontier_ms;
    r->d.cut_max_ms = cut.max_ms;
    char why[256];
    size_t answered = 0, nodes = 0;
    uint64_t open_at = 0;
    if (!sv__dr_wait_open(r->clients[STAT_S], p.site_epoch, deadline, &open_at, &answered, &nodes,
                          why, sizeof(why)))
        return done(r, SV__DRILL_PROMOTE, SV__DRILL_FAILED,
                    "promoted at site epoch %" PRIu64 " but not every node takes writes "
                    "within %" PRIu32 " s: %s",
                    p.site_epoch, r->d.step_timeout_s, why);
    r->d.open_ms = sv__wall_ms();
    char c[40] = "unknown";
    if (cut.frontier_ms >= 0)
        sv__iso_time((uint64_t)cut.frontier_ms, c, sizeof(c));
    return done(r, SV__DRILL_PROMOTE, cut.frontier_ms >= 0 ? SV__DRILL_OK : SV__DRILL_FAILED,
                "promoted at site epoch %" PRIu64 " after %u attempt(s) (%u refused%s%s); cut "
                "%s%s; the %zu of %zu nodes that answered take writes %" PRId64
                " ms after the promotion",
                p.site_epoch, attempts, refused, refused ? ", the last: " : "", refused ? last : "",
                c, cut.frontier_ms >= 0 ? "" : " (a shard's frontier was not known: no RPO)",
                answered, nodes, r->d.open_ms - r->d.promoted_ms);
}

static bool step_first_write(struct run *r)
{
    begin(r, SV__DRILL_RTO);
    r->d.steps[SV__DRILL_RTO].start_ms = r->d.t_out_ms;
    uint64_t deadline = sv__mono_ms() + r->d.step_timeout_s * 1000ull;
    while (atomic_load(&r->first_standby_ack_ms) < 0 && sv__mono_ms() < deadline)
        sv__pause_ms(CMD_POLL_MS);
    int64_t first = atomic_load(&r->first_standby_ack_ms);
    if (first < 0)
        return done(r, SV__DRILL_RTO, SV__DRILL_FAILED,
                    "the promoted site accepted no write of the load within %" PRIu32 " s (%" PRIu64
                    " refused read-only, %" PRIu64 " failed)",
                    r->d.step_timeout_s, r->d.standby_refused, r->d.standby_failed);
    bool ok = done(r, SV__DRILL_RTO, SV__DRILL_OK,
                   "the first write the promoted site accepted, %" PRId64 " ms after T_out "
                   "(RTO)",
                   first - r->d.t_out_ms);
    r->d.steps[SV__DRILL_RTO].end_ms = first;
    sv__pause_ms(LOAD_TAIL_MS); /* some writes on the promoted site, for the report */
    return ok;
}

/* ---- verify ---- */

static void check_one(struct run *r, struct sv__drill_ack *a, uint8_t *want)
{
    char key[SV__DRILL_KEY_MAX];
    sv__drill_key(r->d.run, a->client, a->seq, key, sizeof(key));
    sv__drill_payload(r->d.run, a->client, a->seq, want, r->d.object_bytes);
    void *data = NULL;
    size_t len = 0;
    int err =
        sv_client_get(r->clients[CHECK_S], r->d.bucket, key, SV_LINEARIZABLE, &data, &len, NULL);
    if (err == 0)
        a->check = len == r->d.object_bytes && memcmp(data, want, len) == 0 ? SV__DRILL_PRESENT
                                                                            : SV__DRILL_DIFFERS;
    else if (err == SV_E_NOT_FOUND)
        a->check = SV__DRILL_MISSING;
    else
        a->check = SV__DRILL_UNREADABLE;
    free(data);
    if (a->check == SV__DRILL_UNREADABLE) {
        pthread_mutex_lock(&r->mu);
        if (r->check_err[0] == '\0')
            snprintf(r->check_err, sizeof(r->check_err), "%s/%s: %s: %s", r->d.bucket, key,
                     sv_client_strerror(err), sv_client_errmsg());
        pthread_mutex_unlock(&r->mu);
    }
}

static void *check_main(void *arg)
{
    struct run *r = arg;
    uint8_t *want = malloc(r->d.object_bytes);
    if (want == NULL)
        return NULL;
    for (;;) {
        size_t i = atomic_fetch_add(&r->next_check, 1);
        if (i >= r->d.n_acks || sv__mono_ms() >= r->check_deadline_ms)
            break;
        check_one(r, &r->d.acks[i], want);
    }
    free(want);
    return NULL;
}

static bool step_verify(struct run *r)
{
    begin(r, SV__DRILL_VERIFY);
    r->check_deadline_ms = sv__mono_ms() + r->d.step_timeout_s * 1000ull;
    atomic_store(&r->next_check, 0);
    size_t n = r->d.load_clients < CHECK_THREADS_MAX ? r->d.load_clients : CHECK_THREADS_MAX;
    pthread_t t[CHECK_THREADS_MAX];
    size_t started = 0;
    for (; started < n; started++)
        if (pthread_create(&t[started], NULL, check_main, r) != 0)
            break;
    if (started == 0)
        check_main(r);
    for (size_t i = 0; i < started; i++)
        pthread_join(t[i], NULL);

    struct sv__drill_figures f;
    sv__drill_figures(&r->d, &f);
    size_t standby_ok = 0;
    for (size_t i = 0; i < r->d.n_acks; i++)
        if (r->d.acks[i].site == SV__DRILL_AT_STANDBY) {
            if (r->d.acks[i].check == SV__DRILL_PRESENT)
                standby_ok++;
            else
                r->standby_bad++;
        }
    bool ok = f.differs == 0 && f.unreadable == 0 && f.unchecked == 0 &&
              f.missing_before_cut == 0 && f.present_after_cut == 0 && r->standby_bad == 0 &&
              r->d.cut_ms >= 0;
    char extra[SV__DRILL_TEXT_MAX] = "", after[160] = "";
    if (f.present_after_cut > 0)
        snprintf(after, sizeof(after),
                 "; %zu written more than %d ms after the cut read back (the promotion drops "
                 "them)",
                 f.present_after_cut, SV__DRILL_SKEW_MS);
    if (f.differs + f.unreadable + f.unchecked > 0)
        snprintf(extra, sizeof(extra),
                 "; NOT READ BACK: %zu with other bytes, %zu unreadable%s%s, %zu unchecked "
                 "(time ran out)",
                 f.differs, f.unreadable, r->check_err[0] ? ", the first: " : "", r->check_err,
                 f.unchecked);
    return done(r, SV__DRILL_VERIFY, ok ? SV__DRILL_OK : SV__DRILL_FAILED,
                "%zu of the %zu writes the primary acknowledged read back byte-equal from the "
                "promoted site; %zu missing (the RPO loss), %zu of them acknowledged before the "
                "cut%s%s; %zu of the %zu writes the promoted site acknowledged read back%s",
                f.present, f.primary_acks, f.missing, f.missing_before_cut,
                f.missing_before_cut ? " (the cut promised them)" : "", after, standby_ok,
                f.standby_acks, extra);
}

/* ---- restore, fenced ---- */

static bool step_restore(struct run *r)
{
    begin(r, SV__DRILL_RESTORE);
    char log[4096], why[512];
    snprintf(log, sizeof(log), "%s/restore-cmd.log", r->d.out_dir);
    if (run_cmd(r->d.restore_cmd, log, r->d.step_timeout_s, why, sizeof(why)) != 0)
        return done(r, SV__DRILL_RESTORE, SV__DRILL_FAILED, "the restore command failed: %s", why);
    return done(r, SV__DRILL_RESTORE, SV__DRILL_OK, "the restore command exited 0 (its output: %s)",
                log);
}

static bool step_fenced(struct run *r)
{
    begin(r, SV__DRILL_FENCED);
    uint64_t deadline = sv__mono_ms() + r->d.step_timeout_s * 1000ull;
    unsigned refused = 0, accepted = 0, unanswered = 0;
    char sentence[256] = "", key[SV__DRILL_KEY_MAX], accepted_key[SV__DRILL_KEY_MAX] = "";
    const char body[] = "fence probe";
    for (unsigned i = 0; i < FENCE_PROBES; i++) {
        snprintf(key, sizeof(key), "%s/fence-%u", r->d.run, i);
        for (;;) {
            int err = sv_client_put(r->clients[PROBE_P], r->d.bucket, key, body, sizeof(body) - 1,
                                    SV_IF_ANY, NULL);
            if (err == SV_E_READ_ONLY) {
                refused++;
                snprintf(sentence, sizeof(sentence), "%s", sv_client_errmsg());
                break;
            }
            if (err == 0) {
                accepted++; /* the old primary took a write: two primaries */
                snprintf(accepted_key, sizeof(accepted_key), "%s", key);
                break;
            }
            if (sv__mono_ms() >= deadline) {
                unanswered++;
                snprintf(sentence, sizeof(sentence), "%s: %s", sv_client_strerror(err),
                         sv_client_errmsg());
                break;
            }
            sv__pause_ms(POLL_MS); /* still starting: its groups elect leaders */
        }
    }
    char role[SV_CLIENT_STATE_MAX + 1] = "unknown";
    uint64_t epoch = 0;
    for (;;) {
        struct sv_dr_status *s = NULL;
        if (sv_client_dr_status(r->clients[STAT_P], &s) == 0) {
            snprintf(role, sizeof(role), "%s", s->role);
            epoch = s->epoch;
        }
        sv_client_dr_status_free(s);
        if (strcmp(role, "fenced") == 0 || sv__mono_ms() >= deadline)
            break;
        sv__pause_ms(POLL_MS);
    }
    bool ok = refused == FENCE_PROBES && strcmp(role, "fenced") == 0;
    return done(r, SV__DRILL_FENCED, ok ? SV__DRILL_OK : SV__DRILL_FAILED,
                "%u of %u writes sent to the old primary alone refused READ_ONLY (%s%s%s), %u "
                "accepted%s%s, %u unanswered; it reports itself %s at site epoch %" PRIu64,
                refused, FENCE_PROBES, refused ? "\"" : "", refused ? sentence : "none",
                refused ? "\"" : "", accepted, accepted ? ": TWO PRIMARIES, e.g. " : "",
                accepted_key, unanswered, role, epoch);
}

/* ---- failback, the ledger, switch back ---- */

/* Every shard of the standby site (client sc) streaming, at the primary's
 * (pc) commit index, before deadline (monotonic): the time it took, or -1. */
static int64_t wait_streaming(struct sv_client *pc, struct sv_client *sc, uint64_t deadline)
{
    uint64_t t0 = sv__mono_ms();
    for (;;) {
        struct sv_dr_status *ps = NULL, *ss = NULL;
        bool ok = sv_client_dr_status(pc, &ps) == 0 && sv_client_dr_status(sc, &ss) == 0 &&
                  !strcmp(ss->role, "standby") && ps->n_shards == ss->n_shards;
        for (size_t i = 0; ok && i < ss->n_shards; i++)
            ok = !strcmp(ss->shards[i].state, "streaming") &&
                 ss->shards[i].applied >= ps->shards[i].commit;
        sv_client_dr_status_free(ps);
        sv_client_dr_status_free(ss);
        if (ok)
            return (int64_t)(sv__mono_ms() - t0);
        if (sv__mono_ms() >= deadline)
            return -1;
        sv__pause_ms(POLL_MS);
    }
}

/* Failback: the old primary's writes past the cut into the ledger, then it
 * is the standby of the promoted site, re-seeded and streaming. */
static bool step_failback(struct run *r)
{
    begin(r, SV__DRILL_FAILBACK);
    struct sv_dr_failback fb;
    int err = sv_client_dr_failback(r->clients[STAT_P], r->clients[STAT_S], &fb);
    if (err != 0)
        return done(r, SV__DRILL_FAILBACK, SV__DRILL_FAILED, "svctl dr failback: %s: %s",
                    sv_client_strerror(err), sv_client_errmsg());
    r->d.ledger_size = (int64_t)fb.diverged;
    uint64_t deadline = sv__mono_ms() + (uint64_t)r->d.step_timeout_s * 1000;
    int64_t took = wait_streaming(r->clients[STAT_S], r->clients[STAT_P], deadline);
    return done(r, SV__DRILL_FAILBACK, took >= 0 ? SV__DRILL_OK : SV__DRILL_FAILED,
                "%zu writes past the cut moved into the ledger (%zu deletes, %" PRIu64
                " bytes); the old primary is the standby at site epoch %" PRIu64 "%s%" PRId64 "%s",
                fb.diverged, fb.deleted, fb.bytes, fb.site_epoch,
                took >= 0 ? ", re-seeded and streaming after " : ", not streaming within ",
                took >= 0 ? took : (int64_t)r->d.step_timeout_s * 1000, " ms");
}

/* The ledger cross-check: every write the drill found missing is in the
 * ledger of the promotion's site epoch, with its size. */
static bool step_ledger(struct run *r)
{
    begin(r, SV__DRILL_LEDGER);
    struct sv_dr_ledger *l = NULL;
    int err = sv_client_dr_ledger(r->clients[STAT_S], &l);
    if (err != 0)
        return done(r, SV__DRILL_LEDGER, SV__DRILL_FAILED, "reading the ledger: %s: %s",
                    sv_client_strerror(err), sv_client_errmsg());
    size_t missing = 0, found = 0, sized = 0;
    char key[SV__DRILL_KEY_MAX], first[SV__DRILL_KEY_MAX] = "";
    for (size_t i = 0; i < r->d.n_acks; i++) {
        const struct sv__drill_ack *a = &r->d.acks[i];
        if (a->site != SV__DRILL_AT_PRIMARY || a->check == SV__DRILL_PRESENT ||
            a->check == SV__DRILL_UNCHECKED)
            continue;
        missing++;
        sv__drill_key(r->d.run, a->client, a->seq, key, sizeof(key));
        const struct sv_dr_diverged *e = NULL;
        for (size_t k = 0; k < l->n && !e; k++)
            if (l->entries[k].site_epoch == r->d.site_epoch && !l->entries[k].deleted &&
                !strcmp(l->entries[k].bucket, r->d.bucket) && !strcmp(l->entries[k].key, key))
                e = &l->entries[k];
        found += e != NULL;
        sized += e && e->size == r->d.object_bytes;
        if (!e && !first[0])
            snprintf(first, sizeof(first), "%s", key);
    }
    size_t entries = 0;
    for (size_t k = 0; k < l->n; k++)
        entries += l->entries[k].site_epoch == r->d.site_epoch;
    sv_client_dr_ledger_free(l);
    r->d.ledger_matched = (int64_t)found;
    bool ok = found == missing && sized == found;
    return done(
        r, SV__DRILL_LEDGER, ok ? SV__DRILL_OK : SV__DRILL_FAILED,
        "%zu of the %zu missing writes are in the ledger (%zu of their size); it holds "
        "%zu entries of site epoch %" PRIu64 " (writes past the cut, acknowledged or not)%s%s",
        found, missing, sized, entries, r->d.site_epoch, first[0] ? "; not in it: " : "", first);
}

/* Switch back: the planned move, the promoted site back to standby and the
 * first one primary, nothing lost (nothing diverges). */
static bool step_switchback(struct run *r)
{
    begin(r, SV__DRILL_SWITCHBACK);
    struct sv_dr_switchover so;
    int err = sv_client_dr_switchover(r->clients[STAT_S], r->clients[STAT_P],
                                      (double)r->d.step_timeout_s, &so);
    if (err != 0)
        return done(r, SV__DRILL_SWITCHBACK, SV__DRILL_FAILED, "svctl dr switchover: %s: %s",
                    sv_client_strerror(err), sv_client_errmsg());
    r->d.switchback_paused_ms = (int64_t)so.paused_ms;
    uint64_t deadline = sv__mono_ms() + (uint64_t)r->d.step_timeout_s * 1000;
    int64_t took = wait_streaming(r->clients[STAT_P], r->clients[STAT_S], deadline);
    /* then every shard's digest alike on both sites */
    struct sv_dr_verify *v = NULL;
    size_t shards = 0, match = 0;
    if (took >= 0 && sv_client_dr_verify(r->clients[STAT_P], r->clients[STAT_S],
                                         (double)r->d.step_timeout_s, &v) == 0) {
        shards = v->n_shards;
        match = v->match;
    }
    sv_client_dr_verify_free(v);
    bool ok = so.diverged == 0 && took >= 0 && shards > 0 && match == shards;
    return done(r, SV__DRILL_SWITCHBACK, ok ? SV__DRILL_OK : SV__DRILL_FAILED,
                "the first site is the primary again at site epoch %" PRIu64
                "; writes paused %" PRIu64 " ms (%" PRIu64
                " ms draining); %zu writes diverged (0 expected); the other "
                "site %s; %zu of %zu shards alike on both sites (svctl dr verify)",
                so.site_epoch, so.paused_ms, so.drain_ms, so.diverged,
                took >= 0 ? "streams as its standby" : "is not streaming as its standby yet", match,
                shards);
}

/* ---- report ---- */

/* Write one report file through a temporary renamed over it. */
static int write_file(const char *dir, const char *name, const struct sv__drill *d,
                      void (*fn)(FILE *, const struct sv__drill *))
{
    char path[4096], tmp[4100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "svctl: dr drill: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fn(f, d);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        fprintf(stderr, "svctl: dr drill: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int mkdir_p(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* ---- the drill ---- */

static void drill(struct run *r)
{
    char why[SV__DRILL_TEXT_MAX];
    if (!step_preflight(r)) {
        skip(r, SV__DRILL_LOAD, SV__DRILL_SWITCHBACK, "preflight failed: nothing was done");
        return;
    }
    begin(r, SV__DRILL_LOAD);
    if (!start_load(r, why, sizeof(why))) {
        stop_load(r);
        done(r, SV__DRILL_LOAD, SV__DRILL_FAILED, "%s", why);
        skip(r, SV__DRILL_LAG, SV__DRILL_SWITCHBACK, "the load did not start: nothing was done");
        return;
    }
    if (!step_lag(r)) {
        stop_load(r);
        end_load(r);
        skip(r, SV__DRILL_OUTAGE, SV__DRILL_SWITCHBACK,
             "the standby's lag was not known or above the bound: no outage was caused");
        return;
    }
    bool outage = step_outage(r);
    if (outage)
        step_promote(r);
    bool promoted = r->d.site_epoch != 0; /* recorded, even if its step failed later */
    if (promoted)
        step_first_write(r);
    stop_load(r);
    end_load(r);
    if (promoted)
        step_verify(r);
    else
        skip(r, SV__DRILL_PROMOTE, SV__DRILL_VERIFY,
             outage ? "the standby was not promoted" : "the outage command failed");
    /* The old site comes back whenever the outage command ran. */
    if (!(step_restore(r) && promoted)) {
        skip(r, SV__DRILL_FENCED, SV__DRILL_SWITCHBACK,
             promoted ? "the old primary was not restored"
                      : "no promotion: the old primary is the primary still");
        return;
    }
    if (!step_fenced(r) || !step_failback(r)) {
        skip(r, SV__DRILL_LEDGER, SV__DRILL_SWITCHBACK,
             "the old primary was not failed back as the standby");
        return;
    }
    if (!step_ledger(r)) {
        skip(r, SV__DRILL_SWITCHBACK, SV__DRILL_SWITCHBACK, "the ledger check failed");
        return;
    }
    step_switchback(r);
}

/* Check the arguments (g NULL: only that; 0, -1 after --help, EXIT_USAGE), or
 * run the drill and return its exit status. */
int sv__dr_drill(const struct global *g, int argc, char **argv)
{
    struct opts o;
    int rc = parse(argc, argv, &o);
    if (rc != 0 || g == NULL)
        return rc;
    if (g->ca == NULL || g->ca[0] == '\0') {
        sv__usage_error("dr drill: --ca (or SV_CA) is required");
        return EXIT_USAGE;
    }
    if (mkdir_p(o.out) != 0 || access(o.out, W_OK) != 0) {
        fprintf(stderr, "svctl: dr drill: cannot make or write to %s: %s\n", o.out,
                strerror(errno));
        return EXIT_ERR;
    }
    struct run *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fprintf(stderr, "svctl: dr drill: out of memory\n");
        return EXIT_ERR;
    }
    sv__drill_init(&r->d);
    r->g = g;
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->phase, PHASE_PRIMARY);
    atomic_init(&r->first_standby_ack_ms, -1);
    struct sv__drill *d = &r->d;
    d->start_ms = sv__wall_ms();
    snprintf(d->run, sizeof(d->run), "drill-%" PRId64, d->start_ms);
    d->bucket = o.bucket;
    d->primary_endpoints = o.primary;
    d->standby_endpoints = o.standby;
    d->outage_cmd = o.outage_cmd;
    d->restore_cmd = o.restore_cmd;
    d->out_dir = o.out;
    d->load_clients = (uint32_t)o.load_clients;
    d->warmup_s = (uint32_t)o.warmup_s;
    d->object_bytes = (uint32_t)o.object_bytes;
    d->step_timeout_s = (uint32_t)o.step_timeout_s;
    d->max_lag_ms = (int64_t)o.max_lag_ms;
    char why[512] = "";
    int err = 0;
    for (int i = 0; i < CLIENTS && err == 0; i++) {
        uint32_t ms = client_uses[i].deadline_ms ? client_uses[i].deadline_ms
                      : g->deadline_ms           ? g->deadline_ms
                                                 : STAT_DEADLINE_MS_DEFAULT;
        err = open_client(g, client_uses[i].standby ? o.standby : o.primary, ms, &r->clients[i],
                          why, sizeof(why));
    }
    if (err != 0) {
        begin(r, SV__DRILL_PREFLIGHT);
        done(r, SV__DRILL_PREFLIGHT, SV__DRILL_FAILED, "%s", why);
        skip(r, SV__DRILL_LOAD, SV__DRILL_SWITCHBACK, "preflight failed: nothing was done");
    } else {
        drill(r);
    }
    d->end_ms = sv__wall_ms();

    int status = sv__drill_passed(d) ? EXIT_OK : EXIT_ERR;
    if (write_file(o.out, "drill.txt", d, sv__drill_text) != 0 ||
        write_file(o.out, "drill.json", d, sv__drill_json) != 0 ||
        write_file(o.out, "drill.html", d, sv__drill_html) != 0)
        status = EXIT_ERR;
    if (g->json)
        sv__drill_json(stdout, d);
    else
        sv__drill_text(stdout, d);
    fflush(stdout);

    for (int i = 0; i < CLIENTS; i++)
        sv_client_close(r->clients[i]);
    sv__drill_free(d);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return status;
}
