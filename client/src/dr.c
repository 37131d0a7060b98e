/* libshardvault: disaster recovery: DR_STATUS from every node, folded into
 * one site's report (the fold apart from the network, for its tests); and
 * DR_PROMOTE and DR_DEMOTE to the meta group's leader. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "proto.h"
#include "shardvault/client.h"

static void copy_bytes(char *dst, size_t cap, struct sv_bytes b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n > 0)
        memcpy(dst, b.p, n);
    dst[n] = '\0';
}

/* A wire time or age in ms, -1 when absent or beyond int64_t. */
static int64_t ms_or_unknown(bool present, uint64_t v)
{
    return present && v <= INT64_MAX ? (int64_t)v : -1;
}

static bool reported(const struct sv_dr_shard *sh)
{
    return strcmp(sh->state, "unknown") != 0;
}

struct sv_dr_status *sv__dr_status_new(size_t n_shards)
{
    struct sv_dr_status *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->shards = calloc(n_shards ? n_shards : 1, sizeof(*s->shards));
    if (s->shards == NULL) {
        free(s);
        return NULL;
    }
    s->n_shards = n_shards;
    s->frontier_ms = -1;
    s->lag_ms = -1;
    for (size_t i = 0; i < n_shards; i++) {
        struct sv_dr_shard *sh = &s->shards[i];
        sh->id = i;
        snprintf(sh->state, sizeof(sh->state), "unknown");
        sh->frontier_ms = -1;
        sh->lag_ms = -1;
        sh->last_contact_ms = -1;
    }
    return s;
}

int sv__dr_status_add(struct sv_dr_status *s, const struct sv_msg *m)
{
    if (!SV_MSG_HAS(m, SV_F_KEY) || m->key.len == 0) {
        sv__set_err("a DR_STATUS answer without the site's role");
        return SV_E_PROTOCOL;
    }
    char role[SV_CLIENT_STATE_MAX + 1];
    copy_bytes(role, sizeof(role), m->key);
    uint64_t epoch = SV_MSG_HAS(m, SV_F_VERSION) ? m->version : 0;
    if (s->n_answered == 0) {
        snprintf(s->role, sizeof(s->role), "%s", role);
        copy_bytes(s->site, sizeof(s->site), m->bucket);
        copy_bytes(s->peer, sizeof(s->peer), m->prefix);
        s->uniform = true;
    } else {
        /* While uniform, role and epoch are still the first answer's. */
        if (strcmp(role, s->role) != 0 || epoch != s->epoch)
            s->uniform = false;
        if (strcmp(role, "fenced") == 0) /* not hidden behind a node that has not heard yet */
            snprintf(s->role, sizeof(s->role), "fenced");
    }
    if (epoch > s->epoch)
        s->epoch = epoch;
    s->n_answered++;
    /* Lags are measured against the answering node's clock: the client's may
     * be anywhere, and the node's is the one the standby's frontier is read by. */
    int64_t clock = ms_or_unknown(SV_MSG_HAS(m, SV_F_MTIME_MS), m->mtime_ms);
    for (uint32_t i = 0; i < m->n_items; i++) {
        const struct sv_item *it = &m->items[i];
        if (!SV_ITEM_HAS(it, SV_I_ID) || it->id >= s->n_shards)
            continue;
        struct sv_dr_shard *sh = &s->shards[it->id];
        /* Two nodes claim the shard while a deposed leader has not learned it
         * yet: the one that applied more is the newer leader. */
        if (reported(sh) && it->applied <= sh->applied)
            continue;
        if (SV_ITEM_HAS(it, SV_I_STATE) && it->state.len > 0)
            copy_bytes(sh->state, sizeof(sh->state), it->state);
        else
            snprintf(sh->state, sizeof(sh->state), "unknown");
        sh->frontier_ms = ms_or_unknown(SV_ITEM_HAS(it, SV_I_MTIME_MS), it->mtime_ms);
        sh->lag_ms = -1;
        if (sh->frontier_ms >= 0 && clock >= 0)
            sh->lag_ms = clock > sh->frontier_ms ? clock - sh->frontier_ms : 0;
        sh->applied = it->applied;
        sh->commit = it->commit;
        sh->last_contact_ms = ms_or_unknown(SV_ITEM_HAS(it, SV_I_AGE_MS), it->age_ms);
        sh->cut = SV_ITEM_HAS(it, SV_I_CUT) ? it->cut : 0;
        sh->last_index = SV_ITEM_HAS(it, SV_I_INDEX) ? it->index : 0;
        copy_bytes(sh->reason, sizeof(sh->reason), it->reason);
        copy_bytes(sh->text, sizeof(sh->text), it->text);
    }
    return 0;
}

void sv__dr_status_finish(struct sv_dr_status *s)
{
    /* The site is as far as its slowest shard: one unknown makes it unknown. */
    bool known_frontier = s->n_shards > 0, known_lag = s->n_shards > 0;
    int64_t frontier = INT64_MAX, lag = 0;
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_dr_shard *sh = &s->shards[i];
        if (sh->frontier_ms < 0)
            known_frontier = false;
        else if (sh->frontier_ms < frontier)
            frontier = sh->frontier_ms;
        if (sh->lag_ms < 0)
            known_lag = false;
        else if (sh->lag_ms > lag)
            lag = sh->lag_ms;
    }
    s->frontier_ms = known_frontier ? frontier : -1;
    s->lag_ms = known_lag ? lag : -1;
}

void sv_client_dr_status_free(struct sv_dr_status *s)
{
    if (s == NULL)
        return;
    free(s->shards);
    free(s);
}

/* One round of DR_STATUS: the report (made at the first answer, once the
 * map's shard count is known) and the first refusal, for when no node
 * answered OK. */
struct dr_round {
    uint32_t n_shards;
    struct sv_dr_status *s;
    int first_err;
    char first_msg[SV_CLIENT_ERRMSG_MAX];
};

static int dr_answered(void *arg, uint64_t node, const struct sv__resp *r)
{
    struct dr_round *d = arg;
    if (d->s == NULL && (d->s = sv__dr_status_new(d->n_shards)) == NULL) {
        sv__set_err("out of memory");
        return SV_E_NOMEM;
    }
    int err = r->m.status == SV_ST_OK ? sv__dr_status_add(d->s, &r->m) : sv__status_fail(r);
    if (err != 0 && d->first_err == 0) {
        d->first_err = err;
        snprintf(d->first_msg, sizeof(d->first_msg), "node %llu: %s", (unsigned long long)node,
                 sv_client_errmsg());
    }
    return 0;
}

int sv_client_dr_status(struct sv_client *c, struct sv_dr_status **out)
{
    struct dr_round d = {0};
    struct sv_msg m = {0};
    size_t n_nodes = 0;
    int rc = sv__ask_every_node(c, SV_MSG_DR_STATUS, &m, &n_nodes, &d.n_shards, dr_answered, &d);
    if (rc == 0 && (d.s == NULL || d.s->n_answered == 0)) {
        rc = d.first_err != 0 ? d.first_err : SV_E_PROTOCOL;
        sv__set_err("no node answered DR_STATUS with a report; %s", d.first_msg);
    }
    if (rc != 0) {
        sv_client_dr_status_free(d.s);
        return rc;
    }
    d.s->n_nodes = n_nodes;
    sv__dr_status_finish(d.s);
    sv__clear_err(); /* a refusal from some node is in n_answered, not an error */
    *out = d.s;
    return 0;
}

/* Promote, demote. */

/* The site epoch of an OK answer to DR_PROMOTE or DR_DEMOTE (r freed here). */
static int site_epoch_of(struct sv__resp *r, const char *what, uint64_t *site_epoch,
                         uint64_t *map_epoch)
{
    bool ok = SV_MSG_HAS(&r->m, SV_F_VERSION) && r->m.version > 0;
    if (ok) {
        *site_epoch = r->m.version;
        *map_epoch = r->m.epoch;
    }
    sv__resp_free(r);
    if (!ok) {
        /* Recorded all the same: say where to look rather than guess. */
        sv__set_err("the meta leader's answer to %s has no site epoch (the change may be "
                    "recorded: see sv_client_dr_status)",
                    what);
        return SV_E_PROTOCOL;
    }
    return 0;
}

/* A shard of the standby that is not whole yet (its image or its chunks
 * still coming): promoting would serve it incomplete. */
static int refuse_incomplete(struct sv_client *c)
{
    struct sv_dr_status *s = NULL;
    int rc = sv_client_dr_status(c, &s);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < s->n_shards && rc == 0; i++)
        if (!strcmp(s->shards[i].state, "reseeding") ||
            !strcmp(s->shards[i].state, "initial-sync")) {
            sv__set_err("shard %zu is %s (its image or its chunks are still coming from the "
                        "primary): promoting now would serve it incomplete; wait, or force",
                        i, s->shards[i].state);
            rc = SV_E_BAD_ARGUMENT;
        }
    sv_client_dr_status_free(s);
    return rc;
}

int sv_client_dr_promote(struct sv_client *c, bool force, struct sv_dr_promote *out)
{
    if (!force) {
        int rc = refuse_incomplete(c);
        if (rc != 0)
            return rc;
    }
    struct sv_msg m = {0};
    m.flags = force ? 1u : 0u;
    SV_MSG_SET(&m, SV_F_FLAGS);
    struct sv__resp r;
    int rc = sv__meta_req(c, SV_MSG_DR_PROMOTE, &m, &r);
    if (rc != 0)
        return rc;
    struct sv_dr_promote p = {.cut_ms = -1};
    if (SV_MSG_HAS(&r.m, SV_F_MTIME_MS) && r.m.mtime_ms <= INT64_MAX)
        p.cut_ms = (int64_t)r.m.mtime_ms;
    rc = site_epoch_of(&r, "DR_PROMOTE", &p.site_epoch, &p.map_epoch);
    if (rc == 0 && out != NULL)
        *out = p;
    return rc;
}

int sv_client_dr_demote(struct sv_client *c, uint64_t *site_epoch)
{
    struct sv_msg m = {0};
    struct sv__resp r;
    int rc = sv__meta_req(c, SV_MSG_DR_DEMOTE, &m, &r);
    if (rc != 0)
        return rc;
    uint64_t se = 0, me = 0;
    rc = site_epoch_of(&r, "DR_DEMOTE", &se, &me);
    if (rc == 0 && site_epoch != NULL)
        *site_epoch = se;
    return rc;
}
