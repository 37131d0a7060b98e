/* Integration: two sites (deploy/cluster up --dr). Under writes on the
 * primary, a standby shard leader killed, a primary shard leader killed and
 * the whole standby site killed and restarted; once the standby caught up,
 * both sites list the same objects (key, size, version, time) and serve the
 * same bytes. The standby refuses writes (READ_ONLY). Then the primary site
 * dies under writes, the standby is promoted: every write acknowledged
 * before the cut (the standby's frontier) is there, the promoted site takes
 * writes (new objects and overwrites, never disturbing the shipped ones),
 * and the old primary, restarted, learns of the promotion and is fenced. */
#define _GNU_SOURCE
#include "harness.h"

#define CHECK_STRERROR(rc) sv_client_strerror(rc)
#include "check.h"

#include "proto.h"
#include "tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    BASE_PORT = 19200, /* primary 19201..19203, standby 19301..19303, metrics + 1000 */
    NODES = 3,
    KEYS = 96,
    WRITERS = 4,
    WRITES_MAX = 4096, /* per key: acknowledgements remembered */
    BIG = 3 << 19,     /* 1.5 MiB: two chunks, every 16th write */
    CATCH_UP_MS = 60000,
};

static struct it_cluster p_, s_; /* the primary site, the standby site (DIR/dr) */
static struct sv_client *cp_, *cs_;

/* Per key (written by one writer only): its writes' sequence numbers, and
 * the acknowledged ones with their wall-clock times. */
struct key_log {
    int attempted; /* highest seq tried */
    int n_acked;
    int acked_seq[WRITES_MAX];
    uint64_t acked_ms[WRITES_MAX];
    uint64_t invoked_ms[WRITES_MAX + 1]; /* by seq: when its put was called */
};
static struct key_log *log_; /* KEYS of them */
static atomic_bool stop_;
static atomic_int acked_total_, failed_total_;

/* Wall-clock ms (the sites' frontiers are wall-clock times). */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void key_name(int k, char *out, size_t cap)
{
    snprintf(out, cap, "k%03d", k);
}

static size_t value_len(int k, int seq)
{
    return seq % 16 == 15 ? BIG : 100 + (size_t)((k * 131 + seq * 17) % 3000);
}

static void value_fill(int k, int seq, uint8_t *buf)
{
    it_fill(buf, value_len(k, seq), (uint64_t)k * 100000 + (uint64_t)seq);
}

/* The seq whose value data is (from first on), or -1. */
static int value_seq(int k, const uint8_t *data, size_t len, int first)
{
    uint8_t *buf = malloc(BIG);
    int found = -1;
    for (int seq = first < 1 ? 1 : first; seq <= log_[k].attempted && found < 0; seq++) {
        if (value_len(k, seq) != len)
            continue;
        value_fill(k, seq, buf);
        if (!memcmp(buf, data, len))
            found = seq;
    }
    free(buf);
    return found;
}

static void site_sh(const char *what, const char *site)
{
    it_sh("'%s/deploy/cluster' %s %s --dir '%s' >&2", SV_SOURCE_DIR, what, site, p_.dir);
}

static void node_sh(const char *what, int id, const char *site)
{
    it_sh("'%s/deploy/cluster' %s %d --site %s --dir '%s' >&2", SV_SOURCE_DIR, what, id, site,
          p_.dir);
}

struct writer_arg {
    int w;
    struct sv_client *c;
};

static void *writer(void *arg)
{
    struct writer_arg *a = arg;
    uint8_t *buf = malloc(BIG);
    char key[16];
    for (int round = 0; !atomic_load(&stop_); round++) {
        for (int k = a->w; k < KEYS && !atomic_load(&stop_); k += WRITERS) {
            struct key_log *l = &log_[k];
            int seq = ++l->attempted;
            value_fill(k, seq, buf);
            key_name(k, key, sizeof key);
            if (seq <= WRITES_MAX)
                l->invoked_ms[seq] = wall_ms();
            int rc = sv_client_put(a->c, "dr", key, buf, value_len(k, seq), SV_IF_ANY, NULL);
            if (rc == 0 && l->n_acked < WRITES_MAX) {
                l->acked_seq[l->n_acked] = seq;
                l->acked_ms[l->n_acked++] = wall_ms();
                atomic_fetch_add(&acked_total_, 1);
            } else if (rc) {
                atomic_fetch_add(&failed_total_, 1);
                usleep(50000);
            }
        }
    }
    free(buf);
    return NULL;
}

static pthread_t threads_[WRITERS];
static struct writer_arg args_[WRITERS];

static void writers_start(const struct it_cluster *c, uint32_t deadline_ms)
{
    atomic_store(&stop_, false);
    for (int w = 0; w < WRITERS; w++) {
        args_[w] = (struct writer_arg){w, it_client(c, deadline_ms)};
        pthread_create(&threads_[w], NULL, writer, &args_[w]);
    }
}

static void writers_stop(void)
{
    atomic_store(&stop_, true);
    for (int w = 0; w < WRITERS; w++) {
        pthread_join(threads_[w], NULL);
        sv_client_close(args_[w].c);
    }
}

/* The node of the standby (or primary) leading the shard of key k. */
static int leader_of(const struct it_cluster *c, struct sv_client *cl, int k)
{
    char key[16];
    key_name(k, key, sizeof key);
    uint64_t reps[16];
    size_t n;
    return (int)it_leader_of(c, cl, "dr", key, reps, &n);
}

/* Every shard's standby cursor at the primary's commit index (both sites'
 * DR_STATUS agree: primary's client pc, standby's sc), within CATCH_UP_MS:
 * the time it took, or -1. */
static int64_t caught_up_from(struct sv_client *pc, struct sv_client *sc)
{
    uint64_t t0 = it_now_ms();
    while (it_now_ms() < t0 + CATCH_UP_MS) {
        struct sv_dr_status *ps = NULL, *ss = NULL;
        bool done = !sv_client_dr_status(pc, &ps) && !sv_client_dr_status(sc, &ss) &&
                    ps->n_shards == ss->n_shards;
        for (size_t i = 0; done && i < ps->n_shards; i++)
            done = !strcmp(ss->shards[i].state, "streaming") &&
                   ss->shards[i].applied == ps->shards[i].commit &&
                   ps->shards[i].applied == ps->shards[i].commit;
        sv_client_dr_status_free(ps);
        sv_client_dr_status_free(ss);
        if (done)
            return (int64_t)(it_now_ms() - t0);
        usleep(200000);
    }
    return -1;
}

static int64_t caught_up(void)
{
    return caught_up_from(cp_, cs_);
}

/* Both sites list the same entries of bucket dr, and serve the same bytes;
 * with check_log, each value is the last acknowledged write of its key or
 * a later one (false once a failback moved writes into the ledger). */
static void sites_equal_as(bool check_log)
{
    struct sv_list *pl = NULL, *sl = NULL;
    CHECK_RC(sv_client_list(cp_, "dr", NULL, NULL, 1000, SV_LINEARIZABLE, &pl), 0);
    CHECK_RC(sv_client_list(cs_, "dr", NULL, NULL, 1000, SV_LINEARIZABLE, &sl), 0);
    if (!pl || !sl)
        goto out;
    CHECK_EQ_U64(sl->n, pl->n);
    for (size_t i = 0; i < pl->n && i < sl->n; i++) {
        const struct sv_list_entry *a = &pl->entries[i], *b = &sl->entries[i];
        CHECK_MSG(!strcmp(a->key, b->key) && a->size == b->size && a->version == b->version &&
                      a->mtime_ms == b->mtime_ms,
                  "%s v%llu %llu B / %s v%llu %llu B", a->key, (unsigned long long)a->version,
                  (unsigned long long)a->size, b->key, (unsigned long long)b->version,
                  (unsigned long long)b->size);
    }
    int differ = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        key_name(k, key, sizeof key);
        void *pd = NULL, *sd = NULL;
        size_t plen = 0, slen = 0;
        int prc = sv_client_get(cp_, "dr", key, SV_LINEARIZABLE, &pd, &plen, NULL);
        int src = sv_client_get(cs_, "dr", key, SV_LINEARIZABLE, &sd, &slen, NULL);
        if (prc != src || (prc == 0 && (plen != slen || memcmp(pd, sd, plen))))
            differ++;
        /* the value is one the test wrote, not older than its last acknowledged one */
        int last = log_[k].n_acked ? log_[k].acked_seq[log_[k].n_acked - 1] : 0;
        if (prc == 0)
            CHECK_MSG(value_seq(k, pd, plen, check_log ? last : 1) >= 0,
                      "%s: not a write at or after %d", key, check_log ? last : 1);
        else
            CHECK_MSG(last == 0, "%s: %s on the primary", key, sv_client_strerror(prc));
        free(pd);
        free(sd);
    }
    CHECK_EQ_INT(differ, 0);
out:
    sv_client_list_free(pl);
    sv_client_list_free(sl);
}

static void sites_equal(void)
{
    sites_equal_as(true);
}

/* Every shard's digest alike on both sites (sites_equal's objects, and the
 * open uploads, record by record). */
static void digests_equal(void)
{
    struct sv_dr_verify *v = NULL;
    CHECK_RC(sv_client_dr_verify(cp_, cs_, 10, &v), 0);
    if (v)
        CHECK_MSG(v->n_shards > 0 && v->match == v->n_shards,
                  "%zu of %zu shards alike (%zu mismatch, %zu behind, %zu unknown)", v->match,
                  v->n_shards, v->mismatch, v->behind, v->unknown);
    sv_client_dr_verify_free(v);
}

static int set_up(void)
{
    log_ = calloc(KEYS, sizeof *log_);
    it_up_opts(&p_, it_bin_dir(), "dr", NODES, 3, BASE_PORT, "--dr");
    s_ = p_;
    if (strlen(p_.dir) + 3 >= sizeof s_.dir)
        return 1;
    memcpy(s_.dir + strlen(p_.dir), "/dr", 4); /* s_ = p_: its dir is p_'s */
    s_.base_port = BASE_PORT + 100;
    size_t off = 0;
    for (int i = 1; i <= NODES; i++)
        off += (size_t)snprintf(s_.endpoints + off, sizeof s_.endpoints - off, "%s127.0.0.1:%d",
                                i > 1 ? "," : "", s_.base_port + i);
    cp_ = it_client(&p_, 30000);
    cs_ = it_client(&s_, 30000);
    return log_ ? 0 : 1;
}

static void tear_down(void)
{
    sv_client_close(cp_);
    sv_client_close(cs_);
    it_down(&p_);
    free(log_);
}

static void test_shipping_under_faults(void)
{
    writers_start(&p_, 30000);
    sleep(2);
    int sl = leader_of(&s_, cs_, 0);
    CHECK(sl >= 1 && sl <= NODES);
    node_sh("kill", sl, "dr");
    sleep(1);
    node_sh("start", sl, "dr");
    sleep(1);
    int pl = leader_of(&p_, cp_, 1);
    CHECK(pl >= 1 && pl <= NODES);
    node_sh("kill", pl, "primary");
    sleep(1);
    node_sh("start", pl, "primary");
    sleep(1);
    site_sh("site-outage", "dr");
    sleep(1);
    site_sh("site-start", "dr");
    sleep(2);
    writers_stop();
    int64_t took = caught_up();
    printf("it-dr: %d writes acknowledged, %d failed; the standby caught up %lld ms after the "
           "writes stopped\n",
           atomic_load(&acked_total_), atomic_load(&failed_total_), (long long)took);
    CHECK(atomic_load(&acked_total_) > 200);
    CHECK_MSG(took >= 0, "the standby did not catch up within %d ms", CATCH_UP_MS);
    sites_equal();
    digests_equal();
}

static void test_standby_read_only(void)
{
    CHECK_RC(sv_client_put(cs_, "dr", "refused", "x", 1, SV_IF_ANY, NULL), SV_E_READ_ONLY);
    CHECK(strstr(sv_client_errmsg(), "standby") != NULL);
    CHECK_RC(sv_client_delete(cs_, "dr", "k000", SV_IF_ANY, NULL), SV_E_READ_ONLY);
    struct sv_dr_status *st = NULL;
    CHECK_RC(sv_client_dr_status(cs_, &st), 0);
    if (st) {
        CHECK(!strcmp(st->role, "standby") && st->epoch == 1 && !strcmp(st->peer, "primary"));
        CHECK(st->lag_ms >= 0 && st->lag_ms < 5000);
    }
    sv_client_dr_status_free(st);
}

/* A TLS client context with the certificate of node id of site ("" for
 * none: a plain client). */
static struct sv_tls_ctx *tls_as(const char *site, int id)
{
    char cert[700], key[700], em[256];
    const char *sub = !strcmp(site, "dr") ? "/dr" : "";
    snprintf(cert, sizeof cert, "%s%s/node%d/node.pem", p_.dir, sub, id);
    snprintf(key, sizeof key, "%s%s/node%d/node.key", p_.dir, sub, id);
    struct sv_tls_config tc = {.role = SV_TLS_CLIENT,
                               .ca_file = p_.ca,
                               .cert_file = site[0] ? cert : NULL,
                               .key_file = site[0] ? key : NULL};
    struct sv_tls_ctx *ctx = NULL;
    CHECK_RC(sv_tls_ctx_new(&tc, &ctx, em, sizeof em), 0);
    return ctx;
}

/* The peer site's certificates reach DR_PULL, DR_SEED and CHUNK_FETCH
 * only (a re-seeded standby copies its chunks from the primary, sealed);
 * those need a node certificate. */
static void test_link_certificates(void)
{
    struct sv_msg pm = {0}, fm = {0};
    pm.shard = 0;
    pm.version = 0;
    pm.fields = 1u << SV_F_SHARD | 1u << SV_F_VERSION;
    fm.fields = 1u << SV_F_SHARD | 1u << SV_F_UPLOAD | 1u << SV_F_CHUNK;
    uint8_t *pull = NULL, *fetch = NULL;
    size_t pull_len = 0, fetch_len = 0;
    CHECK_RC(sv_msg_encode(&pm, &pull, &pull_len), 0);
    CHECK_RC(sv_msg_encode(&fm, &fetch, &fetch_len), 0);
    const uint8_t empty_batch[] = {0x90};
    int primary = BASE_PORT + 1, standby = BASE_PORT + 101;
    struct sv_tls_ctx *dr = tls_as("dr", 1), *own = tls_as("primary", 2), *plain = tls_as("", 0);
    /* a standby node's certificate at the primary: no Raft, no map */
    CHECK_EQ_INT(it_frame_closes(dr, primary, SV_MSG_RAFT, 0, empty_batch, 1, 5000), 1);
    CHECK_EQ_INT(it_frame_closes(dr, primary, SV_MSG_MAP_GET, 8, NULL, 0, 5000), 1);
    /* chunks and images: a node certificate of either site, never a client */
    CHECK_EQ_INT(it_frame_closes(plain, primary, SV_MSG_CHUNK_FETCH, 7, fetch, fetch_len, 5000), 1);
    CHECK_EQ_INT(it_frame_closes(plain, primary, SV_MSG_DR_SEED, 13, pull, pull_len, 5000), 1);
    CHECK_EQ_INT(it_frame_closes(dr, primary, SV_MSG_CHUNK_FETCH, 14, fetch, fetch_len, 1500), 0);
    /* DR_PULL from a plain client, from the primary's own node, and from a
     * standby node to its own site */
    CHECK_EQ_INT(it_frame_closes(plain, primary, SV_MSG_DR_PULL, 9, pull, pull_len, 5000), 1);
    CHECK_EQ_INT(it_frame_closes(own, primary, SV_MSG_DR_PULL, 10, pull, pull_len, 5000), 1);
    CHECK_EQ_INT(it_frame_closes(dr, standby, SV_MSG_DR_PULL, 11, pull, pull_len, 5000), 1);
    /* control: the standby's certificate pulls from the primary */
    CHECK_EQ_INT(it_frame_closes(dr, primary, SV_MSG_DR_PULL, 12, pull, pull_len, 1500), 0);
    sv_tls_ctx_free(dr);
    sv_tls_ctx_free(own);
    sv_tls_ctx_free(plain);
    free(pull);
    free(fetch);
    CHECK_RC(sv_client_put(cp_, "dr", "after-certs", "ok", 2, SV_IF_ANY, NULL), 0);
}

static uint64_t outage_ms_, cut_ms_;
static int promoted_seq_[KEYS];  /* each key's value on the standby right after the promotion */
static int primary_acked_[KEYS]; /* each key's writes the old primary acknowledged */

static void test_promote_after_site_outage(void)
{
    writers_start(&p_, 2000);
    sleep(3);
    outage_ms_ = wall_ms();
    site_sh("site-outage", "primary");
    usleep(500000);
    writers_stop();
    struct sv_dr_status *st = NULL;
    CHECK_RC(sv_client_dr_status(cs_, &st), 0);
    cut_ms_ = st && st->frontier_ms > 0 ? (uint64_t)st->frontier_ms : 0;
    sv_client_dr_status_free(st);
    CHECK(cut_ms_ > 0);
    /* Refused while the standby heard the primary within 3 s; then done. */
    int rc = -1;
    struct sv_dr_promote pr = {0};
    for (uint64_t end = it_now_ms() + 20000; rc && it_now_ms() < end;) {
        if (!(rc = sv_client_dr_promote(cs_, false, &pr)))
            break;
        if (strstr(sv_client_errmsg(), "primary already")) { /* an answer lost, recorded */
            pr.site_epoch = 2;
            rc = 0;
            break;
        }
        usleep(500000);
    }
    CHECK_RC(rc, 0);
    CHECK_EQ_U64(pr.site_epoch, 2);
    /* The promotion cut every shard at one instant, the site's frontier as
     * its meta leader knew it: at or past the one read above. */
    CHECK_MSG(pr.cut_ms >= (int64_t)cut_ms_, "the promotion's cut %lld, the frontier read %llu",
              (long long)pr.cut_ms, (unsigned long long)cut_ms_);
    if (pr.cut_ms > 0)
        cut_ms_ = (uint64_t)pr.cut_ms;
    /* Open once every node follows the map that makes it the primary. */
    uint64_t open_ms = 0;
    for (uint64_t end = it_now_ms() + 20000; !open_ms && it_now_ms() < end;) {
        struct sv_dr_status *ds = NULL;
        bool open = !sv_client_dr_status(cs_, &ds) && ds->uniform && !strcmp(ds->role, "primary") &&
                    ds->epoch == 2 && ds->n_answered == ds->n_nodes;
        for (size_t i = 0; open && i < ds->n_shards; i++)
            open = strcmp(ds->shards[i].state, "cutting") != 0;
        if (open)
            open_ms = wall_ms();
        else
            usleep(50000);
        sv_client_dr_status_free(ds);
    }
    CHECK(open_ms != 0);
    CHECK_RC(sv_client_put(cs_, "dr", "first-after", "ok", 2, SV_IF_ANY, NULL), 0);
    /* Every write acknowledged before the cut is on the promoted site, and
     * none made after it (a put called after the cut is stamped after it:
     * one clock here), on any shard. */
    int lost_before = 0, lost_after = 0, acked_after = 0, past_cut = 0;
    for (int k = 0; k < KEYS; k++) {
        const struct key_log *l = &log_[k];
        int before = 0; /* the last seq acknowledged before the cut */
        for (int i = 0; i < l->n_acked; i++)
            if (l->acked_ms[i] < cut_ms_)
                before = l->acked_seq[i];
            else
                acked_after++;
        char key[16];
        key_name(k, key, sizeof key);
        void *d = NULL;
        size_t len = 0;
        int grc = sv_client_get(cs_, "dr", key, SV_LINEARIZABLE, &d, &len, NULL);
        int seq = grc == 0 ? value_seq(k, d, len, 1) : 0;
        promoted_seq_[k] = seq;
        primary_acked_[k] = l->n_acked;
        if (before && seq < before)
            lost_before++;
        if (seq > 0 && seq <= WRITES_MAX && l->invoked_ms[seq] > cut_ms_) {
            past_cut++;
            printf("it-dr: %s holds write %d, made %llu ms after the cut\n", key, seq,
                   (unsigned long long)(l->invoked_ms[seq] - cut_ms_));
        }
        if (l->n_acked && seq < l->acked_seq[l->n_acked - 1])
            lost_after++;
        free(d);
    }
    printf(
        "it-dr: outage at %llu, cut at %llu (RPO window %lld ms), every standby node takes "
        "writes %llu ms after the outage; acknowledged after the cut: %d, keys missing their last "
        "acknowledged write: %d\n",
        (unsigned long long)outage_ms_, (unsigned long long)cut_ms_,
        (long long)outage_ms_ - (long long)cut_ms_, (unsigned long long)(open_ms - outage_ms_),
        acked_after, lost_after);
    CHECK_EQ_INT(lost_before, 0);
    CHECK_EQ_INT(past_cut, 0);
}

static void test_promoted_site_takes_writes(void)
{
    /* New objects and overwrites on the promoted site; the shipped objects
     * keep their bytes (new upload ids never reuse a shipped chunk's). */
    uint8_t *buf = malloc(BIG);
    char key[16];
    for (int k = 0; k < KEYS; k += 3) {
        int seq = ++log_[k].attempted;
        value_fill(k, seq, buf);
        key_name(k, key, sizeof key);
        CHECK_RC(sv_client_put(cs_, "dr", key, buf, value_len(k, seq), SV_IF_ANY, NULL), 0);
        log_[k].acked_seq[log_[k].n_acked] = seq;
        log_[k].acked_ms[log_[k].n_acked++] = wall_ms();
    }
    for (int i = 0; i < 8; i++) {
        char nk[16];
        snprintf(nk, sizeof nk, "new%d", i);
        it_fill(buf, BIG, 900 + (uint64_t)i);
        CHECK_RC(sv_client_put(cs_, "dr", nk, buf, i % 2 ? BIG : 1000, SV_IF_ANY, NULL), 0);
    }
    int wrong = 0;
    for (int k = 0; k < KEYS; k++) {
        key_name(k, key, sizeof key);
        void *d = NULL;
        size_t len = 0;
        if (sv_client_get(cs_, "dr", key, SV_LINEARIZABLE, &d, &len, NULL) == 0 &&
            value_seq(k, d, len, 1) < 0)
            wrong++;
        if (k % 3 == 0 && (!d || value_seq(k, d, len, 1) != log_[k].acked_seq[log_[k].n_acked - 1]))
            wrong++;
        free(d);
    }
    for (int i = 0; i < 8; i++) {
        char nk[16];
        snprintf(nk, sizeof nk, "new%d", i);
        it_fill(buf, BIG, 900 + (uint64_t)i);
        void *d = NULL;
        size_t len = 0;
        CHECK_RC(sv_client_get(cs_, "dr", nk, SV_LINEARIZABLE, &d, &len, NULL), 0);
        if (!d || len != (i % 2 ? (size_t)BIG : 1000) || memcmp(d, buf, len))
            wrong++;
        free(d);
    }
    CHECK_EQ_INT(wrong, 0);
    free(buf);
}

static void test_old_primary_fenced(void)
{
    site_sh("site-start", "primary");
    /* Back, it takes no write: it waits for the peer's epoch, then refuses. */
    int rc = -1, accepted = 0;
    uint64_t t0 = it_now_ms();
    for (uint64_t end = t0 + 30000; rc != SV_E_READ_ONLY && it_now_ms() < end;) {
        if ((rc = sv_client_put(cp_, "dr", "after-fence", "x", 1, SV_IF_ANY, NULL)) == 0)
            accepted++;
        if (rc != SV_E_READ_ONLY)
            usleep(200000);
    }
    CHECK_EQ_INT(accepted, 0);
    printf("it-dr: the old primary, started again, refused writes within %llu ms\n",
           (unsigned long long)(it_now_ms() - t0));
    CHECK_RC(rc, SV_E_READ_ONLY);
    CHECK(strstr(sv_client_errmsg(), "fenced") != NULL);
    /* ... and its meta leader records the fence */
    bool fenced = false;
    for (uint64_t end = it_now_ms() + 10000; !fenced && it_now_ms() < end;) {
        struct sv_dr_status *st = NULL;
        fenced = !sv_client_dr_status(cp_, &st) && !strcmp(st->role, "fenced") && st->uniform;
        sv_client_dr_status_free(st);
        if (!fenced)
            usleep(200000);
    }
    CHECK(fenced);
    struct sv_dr_status *st = NULL;
    CHECK_RC(sv_client_dr_status(cs_, &st), 0);
    CHECK(st && !strcmp(st->role, "primary") && st->epoch == 2);
    sv_client_dr_status_free(st);
}

/* The old primary's value of key k (its seq; 0: none). */
static int old_primary_seq(int k)
{
    char key[16];
    key_name(k, key, sizeof key);
    void *d = NULL;
    size_t len = 0;
    int seq = sv_client_get(cp_, "dr", key, SV_LINEARIZABLE, &d, &len, NULL) == 0
                  ? value_seq(k, d, len, 1)
                  : 0;
    free(d);
    return seq;
}

/* Failback: every write the old primary holds past the cut (its value
 * differs from what the promoted site had at the promotion) is in the
 * ledger with its bytes, nothing else is; every key whose last acknowledged
 * write the promotion lost is among them. Then the old primary is the
 * standby, re-seeded, and both sites hold the same objects. */
static void test_failback(void)
{
    int old_seq[KEYS], expected = 0, lost = 0;
    for (int k = 0; k < KEYS; k++) {
        old_seq[k] = old_primary_seq(k);
        expected += old_seq[k] != promoted_seq_[k];
        int n = primary_acked_[k];
        lost += n && promoted_seq_[k] < log_[k].acked_seq[n - 1];
    }
    struct sv_dr_failback fb = {0};
    uint64_t t0 = it_now_ms();
    CHECK_RC(sv_client_dr_failback(cp_, cs_, &fb), 0);
    printf("it-dr: failback in %llu ms: %zu writes past the cut into the ledger (%llu bytes); "
           "%d keys had lost their last acknowledged write\n",
           (unsigned long long)(it_now_ms() - t0), fb.diverged, (unsigned long long)fb.bytes, lost);
    CHECK_EQ_U64(fb.site_epoch, 2);
    CHECK_EQ_U64(fb.diverged, (uint64_t)expected);
    CHECK_EQ_U64(fb.deleted, 0);
    struct sv_dr_ledger *l = NULL;
    CHECK_RC(sv_client_dr_ledger(cs_, &l), 0);
    int in_ledger[KEYS] = {0}, wrong = 0;
    for (size_t i = 0; l && i < l->n; i++) {
        const struct sv_dr_diverged *d = &l->entries[i];
        int k = -1;
        if (strcmp(d->bucket, "dr") || sscanf(d->key, "k%d", &k) != 1 || k < 0 || k >= KEYS ||
            d->site_epoch != 2 || d->deleted) {
            wrong++;
            continue;
        }
        in_ledger[k]++;
        void *c = NULL;
        size_t len = 0;
        CHECK_RC(
            sv_client_get(cs_, SV_DR_LEDGER_BUCKET, d->ledger_key, SV_LINEARIZABLE, &c, &len, NULL),
            0);
        if (!c || len != d->size || value_seq(k, c, len, 1) != old_seq[k])
            wrong++;
        free(c);
    }
    for (int k = 0; k < KEYS; k++) {
        bool diverged = old_seq[k] != promoted_seq_[k];
        CHECK_MSG(in_ledger[k] == (diverged ? 1 : 0), "k%03d: %d ledger entries, diverged %d", k,
                  in_ledger[k], diverged);
        /* the old primary's last acknowledged write, when the promotion lost it:
         * in the ledger, or a later write of its key (committed, its
         * acknowledgement lost in the outage) */
        int n = primary_acked_[k], last = n ? log_[k].acked_seq[n - 1] : 0;
        if (n && promoted_seq_[k] < last)
            CHECK_MSG(in_ledger[k] == 1 && old_seq[k] >= last,
                      "k%03d: its last acknowledged write %d is lost and not in the ledger", k,
                      last);
    }
    CHECK_EQ_INT(wrong, 0);
    sv_client_dr_ledger_free(l);
    /* The old primary follows the new one: re-seeded, then streaming. */
    int64_t took = caught_up_from(cs_, cp_);
    printf("it-dr: the old primary, re-seeded as the standby, caught up in %lld ms\n",
           (long long)took);
    CHECK(took >= 0);
    sites_equal_as(false);
    digests_equal();
    CHECK_RC(sv_client_put(cp_, "dr", "refused-standby", "x", 1, SV_IF_ANY, NULL), SV_E_READ_ONLY);
}

/* Switchover back: writes pause, nothing diverges, roles swap, both sites
 * equal; the first site takes writes again. */
static void test_switchover(void)
{
    struct sv_dr_switchover so = {0};
    int before[KEYS];
    for (int k = 0; k < KEYS; k++)
        before[k] = log_[k].n_acked;
    writers_start(&s_, 30000);
    sleep(1);
    int rc = sv_client_dr_switchover(cs_, cp_, 60, &so);
    CHECK_MSG(rc == 0, "switchover: %s: %s", sv_client_strerror(rc), sv_client_errmsg());
    writers_stop();
    printf("it-dr: switchover: writes paused %llu ms (%llu ms draining), %zu diverged\n",
           (unsigned long long)so.paused_ms, (unsigned long long)so.drain_ms, so.diverged);
    CHECK_EQ_U64(so.site_epoch, 3);
    CHECK_EQ_U64(so.diverged, 0);
    CHECK_RC(sv_client_put(cp_, "dr", "after-switchover", "ok", 2, SV_IF_ANY, NULL), 0);
    CHECK(caught_up() >= 0);
    sites_equal_as(false);
    /* every write acknowledged during the switchover is on both sites */
    int lost = 0, acked = 0;
    for (int k = 0; k < KEYS; k++) {
        const struct key_log *kl = &log_[k];
        if (kl->n_acked == before[k])
            continue;
        acked += kl->n_acked - before[k];
        lost += old_primary_seq(k) < kl->acked_seq[kl->n_acked - 1];
    }
    printf("it-dr: %d writes acknowledged during the switchover, %d keys lost theirs\n", acked,
           lost);
    CHECK(acked > 0);
    CHECK_EQ_INT(lost, 0);
}

/* Lines of the standby site's node logs that match pattern. */
static int standby_log_count(const char *pattern)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cat '%s'/dr/node*/svd.log | grep -c '%s'", p_.dir, pattern);
    FILE *f = popen(cmd, "r");
    int n = 0;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = 0;
        pclose(f);
    }
    return n;
}

/* The standby down for longer than the primary keeps its log: large puts
 * make the primary snapshot past the standby's cursor, and a restart of the
 * primary site drops the entries it kept in memory. The standby, back,
 * re-seeds the shard from an image and copies its chunks from the primary
 * site; then both sites hold the same objects. */
static void test_reseed_after_compaction(void)
{
    int before = standby_log_count("re-seeding");
    site_sh("site-outage", "dr");
    uint8_t *buf = malloc(BIG);
    enum { BULK = 24 }; /* 36 MiB in one shard: past its snapshot threshold (32 MiB of log) */
    for (int i = 0; i < BULK; i++) {
        it_fill(buf, BIG, 7000 + (uint64_t)i);
        CHECK_RC(sv_client_put(cp_, "dr", "bulk", buf, BIG, SV_IF_ANY, NULL), 0);
    }
    site_sh("site-outage", "primary");
    site_sh("site-start", "primary");
    site_sh("site-start", "dr");
    int64_t took = caught_up();
    printf("it-dr: the standby, down while %d MiB were put in one shard and the primary "
           "restarted, caught up in %lld ms\n",
           BULK * 3 / 2, (long long)took);
    CHECK(took >= 0);
    CHECK(standby_log_count("re-seeding") > before);
    sites_equal_as(false);
    digests_equal();
    void *d = NULL;
    size_t len = 0;
    CHECK_RC(sv_client_get(cs_, "dr", "bulk", SV_LINEARIZABLE, &d, &len, NULL), 0);
    it_fill(buf, BIG, 7000 + BULK - 1);
    CHECK(d && len == BIG && !memcmp(d, buf, BIG));
    free(d);
    free(buf);
}

static const struct sv_test tests[] = {
    {"shipping under faults", test_shipping_under_faults},
    {"the standby is read-only", test_standby_read_only},
    {"the link's certificates", test_link_certificates},
    {"promote after a site outage", test_promote_after_site_outage},
    {"the promoted site takes writes", test_promoted_site_takes_writes},
    {"the old primary is fenced", test_old_primary_fenced},
    {"failback: the ledger holds what diverged", test_failback},
    {"switchover back loses nothing", test_switchover},
    {"a shard compacted past the standby is re-seeded", test_reseed_after_compaction},
};

const struct sv_test_suite sv_test_suite = {
    .name = "it-dr",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .option = it_option,
    .usage = IT_USAGE,
    .ordered = true,
};
