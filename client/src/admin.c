/* libshardvault: operator calls to the meta group's leader (NODES, HEALTH,
 * SCHED_LOG, DRAIN, NODE_REMOVE, CLUSTER_SET; dr.c sends DR_PROMOTE and
 * DR_DEMOTE through sv__meta_req) and their part of sv_client_status. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "proto.h"
#include "shardvault/client.h"

enum {
    CANDIDATES_MAX = 128, /* addresses tried per round: endpoints, then the map's nodes */
    REDIRECTS_MAX = 8,    /* NOT_LEADER hops followed in a row */
    BACKOFF_MIN_MS = 50,
    BACKOFF_MAX_MS = 1000,
    TRIED_MAX = 384,
    ADDR_CAP = SV_CLIENT_NAME_MAX + 1,
};

static void copy_bytes(char *dst, size_t cap, struct sv_bytes b)
{
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n > 0)
        memcpy(dst, b.p, n);
    dst[n] = '\0';
}

struct tries {
    int attempts, last_err;
    char list[TRIED_MAX];
};

static void note(struct tries *t, const char *addr, int err, const char *why)
{
    t->attempts++;
    t->last_err = err;
    char item[160];
    snprintf(item, sizeof(item), "%.60s (%.90s)", addr, why);
    if (strstr(t->list, item) != NULL)
        return;
    size_t len = strlen(t->list);
    if (len + strlen(item) + 3 < sizeof(t->list))
        snprintf(t->list + len, sizeof(t->list) - len, "%s%s", len ? ", " : "", item);
}

/* Send m (type) to the meta group's leader until an answer other than
 * NOT_LEADER or UNAVAILABLE arrives (0: *r holds it, whatever its status) or
 * deadline passes (error, errmsg set). */
static int meta_call(struct sv_client *c, uint32_t type, const struct sv_msg *m, uint64_t deadline,
                     struct sv__resp *r)
{
    char(*addrs)[ADDR_CAP] = malloc(CANDIDATES_MAX * sizeof(*addrs));
    char *next = malloc(ADDR_CAP), *addr = malloc(ADDR_CAP);
    int rc = SV_E_NOMEM;
    if (addrs == NULL || next == NULL || addr == NULL) {
        sv__set_err("out of memory");
        goto out;
    }
    struct tries t = {0};
    uint64_t start = sv__now_ms();
    uint32_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        size_t n = sv__candidates(c, addrs, CANDIDATES_MAX);
        for (size_t i = 0; i < n; i++) {
            snprintf(addr, ADDR_CAP, "%s", addrs[i]);
            for (int hops = 0;;) {
                char why[256] = "";
                if (sv__now_ms() >= deadline)
                    goto give_up;
                rc = sv__call_addr(c, addr, type, m, deadline, r, why, sizeof(why));
                if (rc == SV_E_NOMEM || rc == SV_E_BAD_ARGUMENT) {
                    sv__set_err("%s", why);
                    goto out;
                }
                if (rc != 0) {
                    note(&t, addr, rc, why);
                    break;
                }
                if (r->m.status == SV_ST_UNAVAILABLE) {
                    snprintf(why, sizeof(why), "unavailable%s%.*s", r->m.msg.len ? ": " : "",
                             (int)(r->m.msg.len > 100 ? 100 : r->m.msg.len),
                             (const char *)r->m.msg.p);
                    note(&t, addr, SV_E_UNAVAILABLE, why);
                    sv__resp_free(r);
                    break;
                }
                if (r->m.status != SV_ST_NOT_LEADER) {
                    sv__set_meta_leader(c, addr);
                    sv__clear_err();
                    rc = 0;
                    goto out;
                }
                note(&t, addr, SV_E_UNAVAILABLE, "not the meta leader");
                next[0] = '\0';
                if (SV_MSG_HAS(&r->m, SV_F_ADDR) && r->m.addr.len > 0 && r->m.addr.len < ADDR_CAP)
                    copy_bytes(next, ADDR_CAP, r->m.addr);
                else if (SV_MSG_HAS(&r->m, SV_F_LEADER))
                    sv__node_addr(c, r->m.leader, deadline, next, ADDR_CAP);
                sv__resp_free(r);
                if (next[0] == '\0' || strcmp(next, addr) == 0 || ++hops > REDIRECTS_MAX)
                    break;
                snprintf(addr, ADDR_CAP, "%s", next);
            }
        }
        /* Nobody answered as the leader this round (an election, a leader not yet
         * named): forget the remembered one, wait, try everyone again. */
        sv__set_meta_leader(c, "");
        uint64_t now = sv__now_ms();
        if (now >= deadline)
            break;
        uint64_t jit = sv__jitter_ms(backoff), left = deadline - now;
        sv__sleep_ms(jit < left ? jit : left);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
give_up:
    rc = t.last_err == SV_E_TIMEOUT || t.last_err == SV_E_TLS ? t.last_err : SV_E_UNAVAILABLE;
    sv__set_err("no meta group leader answered: gave up after %d attempts in %llu ms; tried %s",
                t.attempts, (unsigned long long)(sv__now_ms() - start),
                t.list[0] ? t.list : "nothing");
out:
    free(addrs);
    free(next);
    free(addr);
    return rc;
}

int sv__meta_req(struct sv_client *c, uint32_t type, const struct sv_msg *m, struct sv__resp *r)
{
    sv__clear_err();
    int rc = meta_call(c, type, m, sv__now_ms() + sv__deadline_ms(c), r);
    if (rc != 0)
        return rc;
    if (r->m.status != SV_ST_OK) {
        rc = sv__status_fail(r);
        sv__resp_free(r);
    }
    return rc;
}

/* Nodes. */

static int nodes_from(const struct sv_msg *m, struct sv_node_list **out)
{
    struct sv_node_list *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->nodes = calloc(m->n_items ? m->n_items : 1, sizeof(*l->nodes))) == NULL) {
        free(l);
        sv__set_err("out of memory");
        return SV_E_NOMEM;
    }
    l->epoch = m->epoch;
    l->health_known = SV_MSG_HAS(m, SV_F_FLAGS) && (m->flags & 1u);
    for (uint32_t i = 0; i < m->n_items; i++) {
        const struct sv_item *it = &m->items[i];
        if (!SV_ITEM_HAS(it, SV_I_ID))
            continue;
        struct sv_node_info *n = &l->nodes[l->n++];
        n->id = it->id;
        copy_bytes(n->zone, sizeof(n->zone), it->zone);
        copy_bytes(n->address, sizeof(n->address), it->addr);
        copy_bytes(n->state, sizeof(n->state), it->state);
        n->replicas = it->n_replicas_count;
        n->leaders = it->n_leaders;
        n->bytes = it->bytes;
        n->disk_free = it->free;
        n->age_ms =
            SV_ITEM_HAS(it, SV_I_AGE_MS) && it->age_ms <= INT64_MAX ? (int64_t)it->age_ms : -1;
    }
    *out = l;
    return 0;
}

int sv_client_nodes(struct sv_client *c, struct sv_node_list **out)
{
    struct sv_msg m = {0};
    struct sv__resp r;
    int rc = sv__meta_req(c, SV_MSG_NODES, &m, &r);
    if (rc != 0)
        return rc;
    rc = nodes_from(&r.m, out);
    sv__resp_free(&r);
    return rc;
}

void sv_client_node_list_free(struct sv_node_list *l)
{
    if (l == NULL)
        return;
    free(l->nodes);
    free(l);
}

/* Health. */

static int health_from(const struct sv_msg *m, struct sv_health **out)
{
    struct sv_health *h = calloc(1, sizeof(*h));
    if (h == NULL ||
        (h->groups = calloc(m->n_items ? m->n_items : 1, sizeof(*h->groups))) == NULL) {
        free(h);
        sv__set_err("out of memory");
        return SV_E_NOMEM;
    }
    h->epoch = m->epoch;
    h->known = SV_MSG_HAS(m, SV_F_FLAGS) && (m->flags & 1u);
    for (uint32_t i = 0; i < m->n_items; i++) {
        const struct sv_item *it = &m->items[i];
        if (!SV_ITEM_HAS(it, SV_I_ID))
            continue;
        struct sv_health_group *g = &h->groups[h->n++];
        g->group = it->id;
        g->n_replicas = it->n_replicas;
        memcpy(g->replicas, it->replicas, sizeof(g->replicas));
        copy_bytes(g->reason, sizeof(g->reason), it->reason);
        copy_bytes(g->text, sizeof(g->text), it->text);
        g->chunks_left =
            SV_ITEM_HAS(it, SV_I_LEFT) && it->left <= INT64_MAX ? (int64_t)it->left : -1;
    }
    *out = h;
    return 0;
}

int sv_client_health(struct sv_client *c, struct sv_health **out)
{
    struct sv_msg m = {0};
    struct sv__resp r;
    int rc = sv__meta_req(c, SV_MSG_HEALTH, &m, &r);
    if (rc != 0)
        return rc;
    rc = health_from(&r.m, out);
    sv__resp_free(&r);
    return rc;
}

void sv_client_health_free(struct sv_health *h)
{
    if (h == NULL)
        return;
    free(h->groups);
    free(h);
}

/* Scheduler log. */

int sv_client_sched_log(struct sv_client *c, struct sv_sched_log **out)
{
    struct sv_msg m = {0};
    struct sv__resp r;
    int rc = sv__meta_req(c, SV_MSG_SCHED_LOG, &m, &r);
    if (rc != 0)
        return rc;
    struct sv_sched_log *l = calloc(1, sizeof(*l));
    if (l == NULL ||
        (l->events = calloc(r.m.n_items ? r.m.n_items : 1, sizeof(*l->events))) == NULL) {
        free(l);
        sv__resp_free(&r);
        sv__set_err("out of memory");
        return SV_E_NOMEM;
    }
    for (uint32_t i = 0; i < r.m.n_items; i++) {
        const struct sv_item *it = &r.m.items[i];
        struct sv_sched_event *e = &l->events[l->n++];
        e->time_ms = it->mtime_ms;
        copy_bytes(e->action, sizeof(e->action), it->key);
        copy_bytes(e->reason, sizeof(e->reason), it->reason);
        copy_bytes(e->text, sizeof(e->text), it->text);
        e->group = SV_ITEM_HAS(it, SV_I_ID) && it->id <= INT64_MAX ? (int64_t)it->id : -1;
        e->node =
            SV_ITEM_HAS(it, SV_I_LEADER) && it->leader <= INT64_MAX ? (int64_t)it->leader : -1;
    }
    sv__resp_free(&r);
    *out = l;
    return 0;
}

void sv_client_sched_log_free(struct sv_sched_log *l)
{
    if (l == NULL)
        return;
    free(l->events);
    free(l);
}

/* Drain, remove. */

static int node_flag_call(struct sv_client *c, uint32_t type, uint64_t id, bool flag)
{
    struct sv_msg m = {0};
    m.node = id;
    m.flags = flag ? 1u : 0u;
    SV_MSG_SET(&m, SV_F_NODE);
    SV_MSG_SET(&m, SV_F_FLAGS);
    struct sv__resp r;
    int rc = sv__meta_req(c, type, &m, &r);
    if (rc == 0)
        sv__resp_free(&r);
    return rc;
}

int sv_client_node_drain(struct sv_client *c, uint64_t id, bool cancel)
{
    return node_flag_call(c, SV_MSG_DRAIN, id, cancel);
}

int sv_client_node_remove(struct sv_client *c, uint64_t id, bool force)
{
    return node_flag_call(c, SV_MSG_NODE_REMOVE, id, force);
}

/* Cluster settings. */

static const char *const setting_names[] = {"down-after",  "evict-after",    "auto-evict",
                                            "repair-rate", "moves-per-node", "rebalance"};

int sv_client_cluster_set(struct sv_client *c, const char *name, uint64_t value,
                          struct sv_cluster_settings *out)
{
    sv__clear_err();
    struct sv_msg m = {0};
    if (name != NULL) {
        bool known = false;
        for (size_t i = 0; i < sizeof(setting_names) / sizeof(setting_names[0]); i++)
            known |= strcmp(name, setting_names[i]) == 0;
        if (!known) {
            sv__set_err("unknown setting \"%s\" (down-after, evict-after, auto-evict, "
                        "repair-rate, moves-per-node, rebalance)",
                        name);
            return SV_E_BAD_ARGUMENT;
        }
        if ((strcmp(name, "auto-evict") == 0 || strcmp(name, "rebalance") == 0) && value > 1) {
            sv__set_err("%s is 0 or 1", name);
            return SV_E_BAD_ARGUMENT;
        }
        m.key = (struct sv_bytes){(const uint8_t *)name, strlen(name)};
        m.size = value;
        SV_MSG_SET(&m, SV_F_KEY);
        SV_MSG_SET(&m, SV_F_SIZE);
    }
    struct sv__resp r;
    int rc = sv__meta_req(c, SV_MSG_CLUSTER_SET, &m, &r);
    if (rc != 0)
        return rc;
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
        out->epoch = r.m.epoch;
        for (uint32_t i = 0; i < r.m.n_items; i++) {
            const struct sv_item *it = &r.m.items[i];
            char k[32];
            copy_bytes(k, sizeof(k), it->key);
            if (strcmp(k, "down-after") == 0)
                out->down_after_s = it->size;
            else if (strcmp(k, "evict-after") == 0)
                out->evict_after_s = it->size;
            else if (strcmp(k, "auto-evict") == 0)
                out->auto_evict = it->size != 0;
            else if (strcmp(k, "repair-rate") == 0)
                out->repair_rate = it->size;
            else if (strcmp(k, "moves-per-node") == 0)
                out->moves_per_node = it->size;
            else if (strcmp(k, "rebalance") == 0)
                out->rebalance = it->size != 0;
        }
    }
    sv__resp_free(&r);
    return 0;
}

/* sv_client_status's part. */

static struct sv_status_node *status_node(struct sv_cluster_status *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].id == id)
            return &s->nodes[i];
    return NULL;
}

int sv__status_merge_sched(struct sv_client *c, struct sv_cluster_status *s, uint64_t deadline)
{
    char keep[SV_CLIENT_ERRMSG_MAX];
    snprintf(keep, sizeof(keep), "%s", sv_client_errmsg());
    struct sv_msg q = {0};
    struct sv__resp r;
    int rc = meta_call(c, SV_MSG_NODES, &q, deadline, &r);
    if (rc == SV_E_NOMEM)
        return rc;
    if (rc != 0 || r.m.status != SV_ST_OK) {
        if (rc == 0)
            sv__resp_free(&r);
        sv__set_err("%s", keep); /* an unknown health is reported, not an error */
        return 0;
    }
    s->sched_known = true;
    bool known = SV_MSG_HAS(&r.m, SV_F_FLAGS) && (r.m.flags & 1u);
    for (uint32_t i = 0; i < r.m.n_items; i++) {
        const struct sv_item *it = &r.m.items[i];
        if (!SV_ITEM_HAS(it, SV_I_ID))
            continue;
        struct sv_status_node *nd = status_node(s, it->id);
        if (nd == NULL) {
            /* In the leader's map, not yet in the one status read (a node that just joined). */
            struct sv_status_node *grown = realloc(s->nodes, (s->n_nodes + 1) * sizeof(*grown));
            if (grown == NULL) {
                sv__resp_free(&r);
                sv__set_err("out of memory");
                return SV_E_NOMEM;
            }
            s->nodes = grown;
            nd = &s->nodes[s->n_nodes++];
            memset(nd, 0, sizeof(*nd));
            nd->id = it->id;
            copy_bytes(nd->address, sizeof(nd->address), it->addr);
            copy_bytes(nd->zone, sizeof(nd->zone), it->zone);
        }
        if (SV_ITEM_HAS(it, SV_I_STATE))
            copy_bytes(nd->state, sizeof(nd->state), it->state);
        if (SV_ITEM_HAS(it, SV_I_N_REPLICAS))
            nd->replicas = it->n_replicas_count;
        if (SV_ITEM_HAS(it, SV_I_N_LEADERS))
            nd->leaders = it->n_leaders;
    }
    sv__resp_free(&r);

    rc = meta_call(c, SV_MSG_HEALTH, &q, deadline, &r);
    if (rc == SV_E_NOMEM)
        return rc;
    if (rc != 0 || r.m.status != SV_ST_OK) {
        if (rc == 0)
            sv__resp_free(&r);
        sv__set_err("%s", keep);
        return 0;
    }
    s->health_known = known && SV_MSG_HAS(&r.m, SV_F_FLAGS) && (r.m.flags & 1u);
    for (uint32_t i = 0; i < r.m.n_items; i++) {
        const struct sv_item *it = &r.m.items[i];
        if (!SV_ITEM_HAS(it, SV_I_ID))
            continue;
        int64_t left = SV_ITEM_HAS(it, SV_I_LEFT) && it->left <= INT64_MAX ? (int64_t)it->left : -1;
        if (it->id == 0) {
            copy_bytes(s->meta_reason, sizeof(s->meta_reason), it->reason);
            copy_bytes(s->meta_text, sizeof(s->meta_text), it->text);
            continue;
        }
        for (size_t j = 0; j < s->n_shards; j++) {
            struct sv_status_shard *sh = &s->shards[j];
            if (sh->id + 1 != it->id)
                continue;
            copy_bytes(sh->reason, sizeof(sh->reason), it->reason);
            if (sh->reason[0] == '\0') /* below its count without a code: still say so */
                snprintf(sh->reason, sizeof(sh->reason), "unknown");
            copy_bytes(sh->text, sizeof(sh->text), it->text);
            sh->chunks_left = left;
        }
    }
    sv__resp_free(&r);
    sv__set_err("%s", keep);
    return 0;
}
