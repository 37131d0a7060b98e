/* libshardvault: disaster recovery across both sites: failback of a fenced
 * old primary (its writes past the cut moved into the divergence ledger,
 * then DR_FAILBACK), reading the ledger, and the planned switchover. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_int.h"
#include "proto.h"
#include "shardvault/client.h"

enum {
    DIVERGED_PAGE = 256,     /* records asked per DR_DIVERGED */
    POLL_MS = 200,           /* between two looks at a site's status */
    UNIFORM_WAIT_MS = 30000, /* for every node of a site to follow a role change */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The manifest of a failback: growing text, one line per entry. */
struct text {
    char *p;
    size_t len, cap;
};

static int text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int text_add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return SV_E_NOMEM;
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return 0;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *np = realloc(t->p, cap);
        if (np == NULL)
            return SV_E_NOMEM;
        t->p = np;
        t->cap = cap;
    }
}

/* The thread's error message, with what was being done in front. */
static void prefix_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void prefix_err(const char *fmt, ...)
{
    char what[256], was[SV_CLIENT_ERRMSG_MAX];
    snprintf(was, sizeof(was), "%s", sv_client_errmsg());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    sv__set_err("%s: %s", what, was);
}

static void hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = '\0';
}

static int unhex(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *n)
{
    if (slen % 2 || slen / 2 > cap)
        return -1;
    for (size_t i = 0; i < slen / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    *n = slen / 2;
    return 0;
}

/* A manifest line: shard tenant version size commit_ms index deleted
 * sha256 ledger_key bucket key, space-separated, names in hex ("-" for an
 * empty ledger key). */
static int manifest_line(struct text *t, const struct sv_dr_diverged *d)
{
    char sha[65], b[2 * SV_CLIENT_NAME_MAX + 1], k[2 * SV_CLIENT_NAME_MAX + 1];
    hex(sha, d->sha256, 32);
    hex(b, (const uint8_t *)d->bucket, strlen(d->bucket));
    hex(k, (const uint8_t *)d->key, strlen(d->key));
    return text_add(t,
                    "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                    " %d %s %s %s %s\n",
                    d->shard, d->tenant, d->version, d->size, d->commit_ms, d->index,
                    d->deleted ? 1 : 0, sha, d->ledger_key[0] ? d->ledger_key : "-", b, k);
}

static int manifest_parse_line(const char *line, uint64_t epoch, struct sv_dr_diverged *d)
{
    char sha[80], lk[64], b[2 * SV_CLIENT_NAME_MAX + 2], k[2 * SV_CLIENT_NAME_MAX + 2];
    int deleted = 0;
    memset(d, 0, sizeof(*d));
    if (strlen(line) > sizeof(b) + sizeof(k) + 300 ||
        sscanf(line,
               "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
               " %d %79s %63s %2049s %2049s",
               &d->shard, &d->tenant, &d->version, &d->size, &d->commit_ms, &d->index, &deleted,
               sha, lk, b, k) != 11)
        return -1;
    size_t n = 0;
    if (unhex(sha, strlen(sha), d->sha256, 32, &n) || n != 32 ||
        unhex(b, strlen(b), (uint8_t *)d->bucket, SV_CLIENT_NAME_MAX, &n))
        return -1;
    d->bucket[n] = '\0';
    if (unhex(k, strlen(k), (uint8_t *)d->key, SV_CLIENT_NAME_MAX, &n))
        return -1;
    d->key[n] = '\0';
    d->deleted = deleted != 0;
    d->site_epoch = epoch;
    memcpy(d->ledger_key, strcmp(lk, "-") ? lk : "", strcmp(lk, "-") ? strlen(lk) + 1 : 1);
    return 0;
}

/* One record of a DR_DIVERGED answer as an entry. */
static int diverged_from(const struct sv_item *it, uint64_t epoch, uint64_t shard,
                         struct sv_dr_diverged *d)
{
    memset(d, 0, sizeof(*d));
    if (!SV_ITEM_HAS(it, SV_I_KEY) || !SV_ITEM_HAS(it, SV_I_BUCKET) ||
        !SV_ITEM_HAS(it, SV_I_INDEX) || it->key.len > SV_CLIENT_NAME_MAX ||
        it->bucket.len > SV_CLIENT_NAME_MAX || memchr(it->key.p, 0, it->key.len) ||
        memchr(it->bucket.p, 0, it->bucket.len)) {
        sv__set_err("a DR_DIVERGED record without its name or index");
        return SV_E_PROTOCOL;
    }
    d->site_epoch = epoch;
    d->shard = shard;
    d->tenant = it->tenant;
    memcpy(d->bucket, it->bucket.p, it->bucket.len);
    memcpy(d->key, it->key.p, it->key.len);
    d->version = it->version;
    d->size = it->size;
    d->commit_ms = it->mtime_ms;
    d->index = it->index;
    d->deleted = it->state.len == 7 && !memcmp(it->state.p, "deleted", 7);
    if (SV_ITEM_HAS(it, SV_I_SHA256))
        memcpy(d->sha256, it->sha256, 32);
    if (!d->deleted)
        snprintf(d->ledger_key, sizeof(d->ledger_key), "e%" PRIu64 "/s%" PRIu64 "/i%" PRIu64, epoch,
                 shard, d->index);
    return 0;
}

/* Copy d's content from the old primary into the ledger. */
static int ledger_copy(struct sv_client *fenced, struct sv_client *active,
                       const struct sv_dr_diverged *d, uint64_t *bytes)
{
    if (d->deleted)
        return 0;
    void *data = NULL;
    size_t len = 0;
    struct sv_stat st;
    int rc = sv_client_get(fenced, d->bucket, d->key, SV_LINEARIZABLE, &data, &len, &st);
    if (rc == 0 && st.version != d->version) {
        sv__set_err("%s/%s changed on the fenced site during the failback (version %" PRIu64
                    ", the record said %" PRIu64 ")",
                    d->bucket, d->key, st.version, d->version);
        rc = SV_E_VERSION_CONFLICT;
    }
    if (rc == 0)
        rc = sv_client_put(active, SV_DR_LEDGER_BUCKET, d->ledger_key, data, len, SV_IF_ANY, NULL);
    if (rc == 0)
        *bytes += len;
    free(data);
    return rc;
}

/* The records shard wrote above cut on the fenced site, each copied and
 * added to the manifest. */
static int shard_diverged(struct sv_client *fenced, struct sv_client *active, uint64_t epoch,
                          uint64_t shard, uint64_t cut, struct text *manifest,
                          struct sv_dr_failback *fb)
{
    uint8_t after[2 * SV_CLIENT_NAME_MAX + 16];
    size_t after_len = 0;
    for (;;) {
        struct sv_msg m = {0};
        m.version = cut;
        m.limit = DIVERGED_PAGE;
        m.fields = 1u << SV_F_VERSION | 1u << SV_F_LIMIT;
        if (after_len) {
            m.data = (struct sv_bytes){after, after_len};
            SV_MSG_SET(&m, SV_F_DATA);
        }
        struct sv__resp r;
        int rc = sv__shard_req(fenced, (uint32_t)shard, SV_MSG_DR_DIVERGED, &m, &r);
        if (rc != 0)
            return rc;
        for (uint32_t i = 0; i < r.m.n_items && rc == 0; i++) {
            struct sv_dr_diverged d;
            rc = diverged_from(&r.m.items[i], epoch, shard, &d);
            if (rc == 0 && d.tenant != 0) {
                sv__set_err("shard %" PRIu64 " holds a record of tenant %" PRIu64
                            ": this library reads tenant 0 only",
                            shard, d.tenant);
                rc = SV_E_BAD_ARGUMENT;
            }
            if (rc == 0)
                rc = ledger_copy(fenced, active, &d, &fb->bytes);
            if (rc == 0)
                rc = manifest_line(manifest, &d);
            if (rc == 0) {
                fb->diverged++;
                fb->deleted += d.deleted;
            }
        }
        bool more = rc == 0 && SV_MSG_HAS(&r.m, SV_F_DATA) && r.m.data.len > 0 &&
                    r.m.data.len <= sizeof(after);
        if (more) {
            memcpy(after, r.m.data.p, r.m.data.len);
            after_len = r.m.data.len;
        }
        sv__resp_free(&r);
        if (rc != 0 || !more)
            return rc;
    }
}

/* The DR status of a site, checked to be in role. */
static int site_in_role(struct sv_client *c, const char *which, const char *role,
                        struct sv_dr_status **out)
{
    int rc = sv_client_dr_status(c, out);
    if (rc != 0) {
        prefix_err("the %s site's status", which);
        return rc;
    }
    if (strcmp((*out)->role, role) != 0) {
        sv__set_err("the %s site (%s) is %s, not %s", which, (*out)->site, (*out)->role, role);
        sv_client_dr_status_free(*out);
        *out = NULL;
        return SV_E_BAD_ARGUMENT;
    }
    return 0;
}

/* Wait until every node of c's site that answers is role at epoch. */
static int wait_uniform(struct sv_client *c, const char *role, uint64_t epoch, uint64_t until)
{
    for (;;) {
        struct sv_dr_status *s = NULL;
        bool done = sv_client_dr_status(c, &s) == 0 && s->uniform && !strcmp(s->role, role) &&
                    s->epoch >= epoch;
        sv_client_dr_status_free(s);
        if (done)
            return 0;
        if (mono_ms() >= until) {
            sv__set_err("the site's nodes did not all become %s at site epoch %" PRIu64 " in time",
                        role, epoch);
            return SV_E_TIMEOUT;
        }
        sleep_ms(POLL_MS);
    }
}

int sv_client_dr_failback(struct sv_client *fenced, struct sv_client *active,
                          struct sv_dr_failback *out)
{
    struct sv_dr_failback fb = {0};
    struct sv_dr_status *fs = NULL, *as = NULL;
    int rc = site_in_role(fenced, "fenced", "fenced", &fs);
    /* every node of it: a shard leader still primary would not list its
     * divergence (its meta leader records the fence, the nodes follow) */
    if (rc == 0 && !fs->uniform) {
        rc = wait_uniform(fenced, "fenced", fs->epoch, mono_ms() + UNIFORM_WAIT_MS);
        if (rc != 0)
            prefix_err("the fenced site");
    }
    if (rc == 0)
        rc = site_in_role(active, "active", "primary", &as);
    if (rc == 0 && as->epoch <= fs->epoch) {
        sv__set_err("the active site's epoch %" PRIu64 " is not above the fenced site's %" PRIu64,
                    as->epoch, fs->epoch);
        rc = SV_E_BAD_ARGUMENT;
    }
    if (rc == 0 && as->n_shards != fs->n_shards) {
        sv__set_err("the sites have %zu and %zu shards", as->n_shards, fs->n_shards);
        rc = SV_E_BAD_ARGUMENT;
    }
    for (size_t s = 0; rc == 0 && s < as->n_shards; s++)
        if (as->shards[s].cut == 0) {
            sv__set_err("shard %zu's cut is unknown on the active site (its leader did not "
                        "answer, or it was never a standby); retry",
                        s);
            rc = SV_E_UNAVAILABLE;
        }
    struct text manifest = {0};
    uint64_t epoch = rc == 0 ? as->epoch : 0;
    for (size_t s = 0; rc == 0 && s < as->n_shards; s++)
        rc = shard_diverged(fenced, active, epoch, s, as->shards[s].cut, &manifest, &fb);
    if (rc == 0) {
        char key[64];
        snprintf(key, sizeof(key), "e%" PRIu64 "/manifest", epoch);
        rc = sv_client_put(active, SV_DR_LEDGER_BUCKET, key, manifest.p ? manifest.p : "",
                           manifest.len, SV_IF_ANY, NULL);
    }
    free(manifest.p);
    if (rc == 0) {
        struct sv_msg m = {0};
        m.version = epoch;
        SV_MSG_SET(&m, SV_F_VERSION);
        struct sv__resp r;
        rc = sv__meta_req(fenced, SV_MSG_DR_FAILBACK, &m, &r);
        if (rc == 0) {
            fb.site_epoch = SV_MSG_HAS(&r.m, SV_F_VERSION) ? r.m.version : epoch;
            sv__resp_free(&r);
        }
    }
    sv_client_dr_status_free(fs);
    sv_client_dr_status_free(as);
    if (rc == 0 && out != NULL)
        *out = fb;
    return rc;
}

void sv_client_dr_ledger_free(struct sv_dr_ledger *l)
{
    if (l == NULL)
        return;
    free(l->entries);
    free(l);
}

/* Parse manifest text (NUL-terminated) of a failback at epoch into l. */
static int ledger_add(struct sv_dr_ledger *l, size_t *cap, char *text, uint64_t epoch)
{
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (l->n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            struct sv_dr_diverged *ne = realloc(l->entries, nc * sizeof(*ne));
            if (ne == NULL)
                return SV_E_NOMEM;
            l->entries = ne;
            *cap = nc;
        }
        if (manifest_parse_line(line, epoch, &l->entries[l->n]) != 0) {
            sv__set_err("the ledger's manifest of site epoch %" PRIu64 " has a malformed line",
                        epoch);
            return SV_E_PROTOCOL;
        }
        l->n++;
    }
    return 0;
}

int sv_client_dr_ledger(struct sv_client *active, struct sv_dr_ledger **out)
{
    struct sv_dr_ledger *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return SV_E_NOMEM;
    size_t cap = 0;
    int rc = 0;
    char after[SV_CLIENT_NAME_MAX + 1] = "";
    for (bool more = true; more && rc == 0;) {
        struct sv_list *ls = NULL;
        rc = sv_client_list(active, SV_DR_LEDGER_BUCKET, "e", after, SV_CLIENT_LIST_LIMIT_MAX,
                            SV_LINEARIZABLE, &ls);
        for (size_t i = 0; rc == 0 && ls && i < ls->n; i++) {
            uint64_t epoch = 0;
            char tail[16];
            if (sscanf(ls->entries[i].key, "e%" SCNu64 "/%15s", &epoch, tail) != 2 ||
                strcmp(tail, "manifest") != 0)
                continue;
            void *data = NULL;
            size_t len = 0;
            rc = sv_client_get(active, SV_DR_LEDGER_BUCKET, ls->entries[i].key, SV_LINEARIZABLE,
                               &data, &len, NULL);
            char *text = rc == 0 ? malloc(len + 1) : NULL;
            if (rc == 0 && text == NULL)
                rc = SV_E_NOMEM;
            if (rc == 0) {
                memcpy(text, data, len);
                text[len] = '\0';
                rc = ledger_add(l, &cap, text, epoch);
            }
            free(text);
            free(data);
        }
        more = rc == 0 && ls && ls->more && ls->n > 0;
        if (more)
            snprintf(after, sizeof(after), "%s", ls->entries[ls->n - 1].key);
        sv_client_list_free(ls);
    }
    if (rc == SV_E_NOT_FOUND)
        rc = 0; /* no ledger yet */
    if (rc != 0) {
        sv_client_dr_ledger_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void sv_client_dr_verify_free(struct sv_dr_verify *v)
{
    if (v == NULL)
        return;
    free(v->shards);
    free(v);
}

/* Shard's digest on c's site: 0 and *at, or an error. */
static int shard_digest(struct sv_client *c, uint64_t shard, uint8_t out[32], uint64_t *at)
{
    struct sv_msg m = {0};
    struct sv__resp r;
    int rc = sv__shard_req(c, (uint32_t)shard, SV_MSG_DR_DIGEST, &m, &r);
    if (rc != 0)
        return rc;
    if (!SV_MSG_HAS(&r.m, SV_F_SHA256) || !SV_MSG_HAS(&r.m, SV_F_VERSION)) {
        sv__resp_free(&r);
        sv__set_err("a DR_DIGEST answer without its digest or index");
        return SV_E_PROTOCOL;
    }
    memcpy(out, r.m.sha256, 32);
    *at = r.m.version;
    sv__resp_free(&r);
    return 0;
}

int sv_client_dr_verify(struct sv_client *a, struct sv_client *b, double wait_s,
                        struct sv_dr_verify **out)
{
    struct sv_dr_status *sa = NULL;
    int rc = sv_client_dr_status(a, &sa);
    if (rc != 0)
        return rc;
    struct sv_dr_verify *v = calloc(1, sizeof(*v));
    if (v != NULL)
        v->shards = calloc(sa->n_shards ? sa->n_shards : 1, sizeof(*v->shards));
    if (v == NULL || v->shards == NULL) {
        sv_client_dr_status_free(sa);
        sv_client_dr_verify_free(v);
        return SV_E_NOMEM;
    }
    v->n_shards = sa->n_shards;
    sv_client_dr_status_free(sa);
    uint64_t until = mono_ms() + (uint64_t)(wait_s * 1000);
    for (size_t i = 0; i < v->n_shards; i++) {
        struct sv_dr_verify_shard *s = &v->shards[i];
        s->id = i;
        for (;;) {
            bool known = shard_digest(a, i, s->digest_a, &s->index_a) == 0 &&
                         shard_digest(b, i, s->digest_b, &s->index_b) == 0;
            const char *st = !known                                 ? "unknown"
                             : s->index_a != s->index_b             ? "behind"
                             : memcmp(s->digest_a, s->digest_b, 32) ? "mismatch"
                                                                    : "match";
            snprintf(s->state, sizeof(s->state), "%s", st);
            if ((known && s->index_a == s->index_b) || mono_ms() >= until)
                break;
            sleep_ms(POLL_MS / 2);
        }
        v->match += !strcmp(s->state, "match");
        v->mismatch += !strcmp(s->state, "mismatch");
        v->behind += !strcmp(s->state, "behind");
        v->unknown += !strcmp(s->state, "unknown");
    }
    sv__clear_err();
    *out = v;
    return 0;
}

/* Every shard of the standby streaming and applied all the fenced primary
 * committed, or may still commit: an entry its leaders appended before they
 * learned of the fence (the last log index). */
static bool drained(const struct sv_dr_status *p, const struct sv_dr_status *s)
{
    if (p->n_shards != s->n_shards)
        return false;
    for (size_t i = 0; i < p->n_shards; i++) {
        const struct sv_dr_shard *ps = &p->shards[i];
        uint64_t end = ps->last_index > ps->commit ? ps->last_index : ps->commit;
        /* streaming: not still copying a seed's chunks (promoted, it would
         * serve the shard without them) */
        if (!strcmp(ps->state, "unknown") || strcmp(s->shards[i].state, "streaming") ||
            ps->last_index == 0 || s->shards[i].applied < end)
            return false;
    }
    return true;
}

int sv_client_dr_switchover(struct sv_client *primary, struct sv_client *standby, double wait_s,
                            struct sv_dr_switchover *out)
{
    struct sv_dr_switchover so = {0};
    struct sv_dr_status *ps = NULL, *ss = NULL;
    int rc = site_in_role(primary, "primary", "primary", &ps);
    if (rc == 0)
        rc = site_in_role(standby, "standby", "standby", &ss);
    sv_client_dr_status_free(ps);
    sv_client_dr_status_free(ss);
    ps = ss = NULL;
    if (rc != 0)
        return rc;
    uint64_t t0 = mono_ms();
    uint64_t fenced_epoch = 0;
    rc = sv_client_dr_demote(primary, &fenced_epoch);
    if (rc != 0) {
        prefix_err("fencing the primary");
        return rc;
    }
    /* Fenced, the old primary commits nothing more: once every node says
     * so, its commit indexes are final, and the standby has everything when
     * it applied them. */
    rc = wait_uniform(primary, "fenced", fenced_epoch, t0 + UNIFORM_WAIT_MS);
    uint64_t until = mono_ms() + (uint64_t)(wait_s * 1000);
    while (rc == 0) {
        rc = sv_client_dr_status(primary, &ps);
        if (rc == 0)
            rc = sv_client_dr_status(standby, &ss);
        bool done = rc == 0 && drained(ps, ss);
        sv_client_dr_status_free(ps);
        sv_client_dr_status_free(ss);
        ps = ss = NULL;
        if (done)
            break;
        if (rc == 0 && mono_ms() >= until) {
            sv__set_err("the standby did not apply everything the fenced primary committed "
                        "within %.0f s; the primary stays fenced: promote the standby (what "
                        "it lacks goes to the ledger at failback) or the old primary with "
                        "--force (undoes the pause)",
                        wait_s);
            return SV_E_TIMEOUT;
        }
        if (rc == 0)
            sleep_ms(POLL_MS);
    }
    if (rc != 0)
        return rc;
    so.drain_ms = mono_ms() - t0;
    struct sv_dr_promote pr;
    rc = sv_client_dr_promote(standby, true, &pr);
    if (rc == 0)
        rc = wait_uniform(standby, "primary", pr.site_epoch, mono_ms() + UNIFORM_WAIT_MS);
    if (rc != 0) {
        prefix_err("promoting the standby");
        return rc;
    }
    so.paused_ms = mono_ms() - t0;
    so.site_epoch = pr.site_epoch;
    struct sv_dr_failback fb;
    rc = sv_client_dr_failback(primary, standby, &fb);
    if (rc != 0) {
        prefix_err("the new primary takes writes; failing the old one back as its standby "
                   "(run svctl dr failback again)");
        return rc;
    }
    so.diverged = fb.diverged;
    if (out != NULL)
        *out = so;
    return 0;
}
