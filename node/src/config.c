/* svd cluster configuration file and shard placement. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "sv_assert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LINE_MAX_ = 4096 };

static int fail(char *errmsg, size_t errlen, int err, const char *path, unsigned line,
                const char *why)
{
    if (errmsg && errlen)
        snprintf(errmsg, errlen, "%s:%u: %s", path, line, why);
    return err;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi || s[0] == '-')
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap)
        return -EINVAL;
    memcpy(dst, src, n + 1);
    return 0;
}

/* Split "HOST:PORT" at its last ':' into host (cap bytes with NUL, not
 * empty) and a decimal port in 1..65535. */
static int split_hostport(const char *s, char *host, size_t cap, uint32_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= cap || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    if (parse_u32(colon + 1, 1, 65535, port))
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    if (!strcmp(host, "localhost"))
        snprintf(host, cap, "127.0.0.1");
    return 0;
}

/* a and b (both valid for split_hostport) name the same host and port. */
static bool same_endpoint(const char *a, const char *b)
{
    char ha[SV_CFG_ADDR_MAX], hb[SV_CFG_ADDR_MAX];
    uint32_t pa, pb;
    if (split_hostport(a, ha, sizeof ha, &pa) || split_hostport(b, hb, sizeof hb, &pb))
        return false;
    return pa == pb && !strcmp(ha, hb);
}

/* The metrics addresses: defaults filled in, then every rule of
 * sv_cfg_load's contract. lines[i] is the line of node i. */
static int check_metrics(struct sv_cfg *c, const unsigned *lines, const char *path, char *errmsg,
                         size_t errlen)
{
    char host[SV_CFG_ADDR_MAX], why[SV_CFG_ADDR_MAX + 128];
    uint32_t port, aport;
    for (uint32_t i = 0; i < c->n_nodes; i++) {
        struct sv_cfg_node *n = &c->nodes[i];
        if (n->metrics[0])
            continue;
        int rc = split_hostport(n->addr, host, sizeof host, &port);
        ASSERT(rc == 0); /* checked when the line was read */
        port += SV_CFG_METRICS_PORT_OFFSET;
        if (port > 65535) {
            snprintf(why, sizeof why,
                     "node %" PRIu64 ": its default metrics port %" PRIu32
                     " is above 65535: give metrics HOST:PORT",
                     n->id, port);
            return fail(errmsg, errlen, -EINVAL, path, lines[i], why);
        }
        int host_len = (int)(strrchr(n->addr, ':') - n->addr);
        char addr[SV_CFG_ADDR_MAX];
        int len = snprintf(addr, sizeof addr, "%.*s:%" PRIu32, host_len, n->addr, port);
        if (len < 0 || (size_t)len >= sizeof addr)
            return fail(errmsg, errlen, -EINVAL, path, lines[i], "node: address too long");
        memcpy(n->metrics, addr, (size_t)len + 1);
    }
    for (uint32_t i = 0; i < c->n_nodes; i++) {
        const struct sv_cfg_node *n = &c->nodes[i];
        for (uint32_t j = 0; j < c->n_nodes; j++) {
            const char *what = NULL;
            if (same_endpoint(n->metrics, c->nodes[j].addr))
                what = "address";
            else if (j != i && same_endpoint(n->metrics, c->nodes[j].metrics))
                what = "metrics address";
            if (what) {
                snprintf(why, sizeof why,
                         "node %" PRIu64 ": metrics address %s is also the %s of node %" PRIu64,
                         n->id, n->metrics, what, c->nodes[j].id);
                return fail(errmsg, errlen, -EINVAL, path, lines[i], why);
            }
        }
        /* 0.0.0.0 takes the port on every address of the host, the node's too. */
        int rc_addr = split_hostport(n->addr, host, sizeof host, &aport);
        int rc_metrics = split_hostport(n->metrics, host, sizeof host, &port);
        ASSERT(rc_addr == 0 && rc_metrics == 0);
        if (!strcmp(host, "0.0.0.0") && port == aport) {
            snprintf(why, sizeof why,
                     "node %" PRIu64 ": metrics address %s takes the node's own port", n->id,
                     n->metrics);
            return fail(errmsg, errlen, -EINVAL, path, lines[i], why);
        }
    }
    return 0;
}

int sv_cfg_load(const char *path, struct sv_cfg *out, char *errmsg, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->n_shards = 16;
    out->replicas = 3;
    out->upload_ttl_s = 600;
    out->max_conns = 4096;
    out->max_conns_per_source = 1024;
    out->idle_timeout_s = 120;
    out->down_after_s = 10;
    out->evict_after_s = 60;
    strcpy(out->site, "primary");
    FILE *f = fopen(path, "r");
    if (!f) {
        int err = -errno;
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "%s: %s", path, strerror(-err));
        return err;
    }
    char line[LINE_MAX_];
    unsigned ln = 0;
    unsigned node_lines[SV_CFG_NODES_MAX];
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *tok[8];
        int nt = 0;
        for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t;
             t = strtok_r(NULL, " \t\r\n", &save)) {
            if (nt == 8) {
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "too many words");
                goto out;
            }
            tok[nt++] = t;
        }
        if (nt == 0)
            continue;
        const char *d = tok[0];
        if (!strcmp(d, "shards") && nt == 2) {
            if (parse_u32(tok[1], 1, SV_CFG_SHARDS_MAX, &out->n_shards))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "shards: expected 1..4096");
        } else if (!strcmp(d, "replicas") && nt == 2) {
            if (parse_u32(tok[1], 1, SV_CFG_REPLICAS_MAX, &out->replicas))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "replicas: expected 1..7");
        } else if (!strcmp(d, "upload_ttl_s") && nt == 2) {
            if (parse_u32(tok[1], 1, 7 * 86400, &out->upload_ttl_s))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "upload_ttl_s: expected 1..604800");
        } else if (!strcmp(d, "max_connections") && nt == 2) {
            if (parse_u32(tok[1], 512, 4096, &out->max_conns))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "max_connections: expected 512..4096");
        } else if (!strcmp(d, "max_connections_per_source") && nt == 2) {
            if (parse_u32(tok[1], 1, 4096, &out->max_conns_per_source))
                rc = fail(errmsg, errlen, -EINVAL, path, ln,
                          "max_connections_per_source: expected 1..4096");
        } else if (!strcmp(d, "idle_timeout_s") && nt == 2) {
            /* at least a request's timeout: the idle clock counts only the client's bytes */
            if (parse_u32(tok[1], 10, 86400, &out->idle_timeout_s))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "idle_timeout_s: expected 10..86400");
        } else if (!strcmp(d, "down_after_s") && nt == 2) {
            if (parse_u32(tok[1], 1, 86400, &out->down_after_s))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "down_after_s: expected 1..86400");
        } else if (!strcmp(d, "evict_after_s") && nt == 2) {
            if (parse_u32(tok[1], 1, 86400, &out->evict_after_s))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "evict_after_s: expected 1..86400");
        } else if (!strcmp(d, "ca") && nt == 2) {
            if (copy(out->ca, sizeof out->ca, tok[1]))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "ca: path too long");
        } else if (!strcmp(d, "master_key") && nt == 2) {
            if (copy(out->master_key, sizeof out->master_key, tok[1]))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "master_key: path too long");
        } else if (!strcmp(d, "data_key") && nt == 2) {
            if (copy(out->data_key, sizeof out->data_key, tok[1]))
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "data_key: path too long");
        } else if (!strcmp(d, "site") && nt == 3) {
            if (!sv_cfg_site_valid(tok[1]) ||
                (strcmp(tok[2], "primary") && strcmp(tok[2], "standby")))
                rc = fail(errmsg, errlen, -EINVAL, path, ln,
                          "site: expected NAME ([a-z0-9-], 1..31 bytes) primary|standby");
            else {
                strcpy(out->site, tok[1]);
                out->site_role = strcmp(tok[2], "standby") ? SV_SITE_PRIMARY : SV_SITE_STANDBY;
            }
        } else if (!strcmp(d, "peer_site") && nt == 2) {
            if (!sv_cfg_site_valid(tok[1]))
                rc = fail(errmsg, errlen, -EINVAL, path, ln,
                          "peer_site: expected NAME ([a-z0-9-], 1..31 bytes)");
            else
                strcpy(out->peer_site, tok[1]);
        } else if (!strcmp(d, "peer_node") && nt == 3) {
            uint32_t id, port;
            char host[SV_CFG_ADDR_MAX];
            struct sv_cfg_peer *pn = &out->peers[out->n_peers];
            if (out->n_peers == SV_CFG_NODES_MAX)
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "too many peer nodes (64 at most)");
            else if (parse_u32(tok[1], 1, UINT32_MAX, &id) ||
                     copy(pn->addr, sizeof pn->addr, tok[2]) ||
                     split_hostport(pn->addr, host, sizeof host, &port))
                rc = fail(errmsg, errlen, -EINVAL, path, ln,
                          "peer_node: expected ID HOST:PORT, port 1..65535");
            else {
                pn->id = id;
                for (uint32_t i = 0; i < out->n_peers && !rc; i++)
                    if (out->peers[i].id == id || same_endpoint(out->peers[i].addr, pn->addr))
                        rc = fail(errmsg, errlen, -EINVAL, path, ln,
                                  "peer_node: duplicate id or address");
                if (!rc)
                    out->n_peers++;
            }
        } else if (!strcmp(d, "node") && (nt == 5 || (nt == 7 && !strcmp(tok[5], "metrics")))) {
            if (out->n_nodes == SV_CFG_NODES_MAX) {
                rc = fail(errmsg, errlen, -EINVAL, path, ln, "too many nodes (64 at most)");
                goto out;
            }
            struct sv_cfg_node *n = &out->nodes[out->n_nodes];
            uint32_t id, port;
            char host[SV_CFG_ADDR_MAX];
            struct in_addr ip;
            if (parse_u32(tok[1], 1, UINT32_MAX, &id) || copy(n->zone, sizeof n->zone, tok[2]) ||
                copy(n->addr, sizeof n->addr, tok[3]) || copy(n->dir, sizeof n->dir, tok[4]) ||
                split_hostport(n->addr, host, sizeof host, &port)) {
                rc = fail(
                    errmsg, errlen, -EINVAL, path, ln,
                    "node: expected ID ZONE HOST:PORT DIR [metrics HOST:PORT], ports 1..65535");
                goto out;
            }
            if (nt == 7 && (copy(n->metrics, sizeof n->metrics, tok[6]) ||
                            split_hostport(n->metrics, host, sizeof host, &port) ||
                            inet_pton(AF_INET, host, &ip) != 1)) {
                rc = fail(errmsg, errlen, -EINVAL, path, ln,
                          "node: metrics: expected A.B.C.D:PORT or localhost:PORT, port 1..65535");
                goto out;
            }
            n->id = id;
            node_lines[out->n_nodes] = ln;
            for (uint32_t i = 0; i < out->n_nodes; i++) {
                if (out->nodes[i].id == n->id || same_endpoint(out->nodes[i].addr, n->addr)) {
                    rc = fail(errmsg, errlen, -EINVAL, path, ln, "node: duplicate id or address");
                    goto out;
                }
            }
            n->zone_index = out->n_zones;
            for (uint32_t i = 0; i < out->n_nodes; i++) {
                if (!strcmp(out->nodes[i].zone, n->zone)) {
                    n->zone_index = out->nodes[i].zone_index;
                    break;
                }
            }
            if (n->zone_index == out->n_zones)
                out->n_zones++;
            out->n_nodes++;
        } else {
            rc = fail(errmsg, errlen, -EINVAL, path, ln, "unknown directive or wrong arguments");
        }
        if (rc)
            goto out;
    }
    if (ferror(f)) {
        rc = fail(errmsg, errlen, -EIO, path, ln, "read error");
        goto out;
    }
    if (!out->ca[0] || !out->master_key[0] || !out->data_key[0])
        rc = fail(errmsg, errlen, -EINVAL, path, ln, "ca, master_key and data_key are required");
    else if (out->n_nodes == 0)
        rc = fail(errmsg, errlen, -EINVAL, path, ln, "no node");
    else if (out->replicas > out->n_zones)
        rc = fail(errmsg, errlen, -EINVAL, path, ln, "replicas exceed the number of zones");
    else if (out->evict_after_s < out->down_after_s)
        rc = fail(errmsg, errlen, -EINVAL, path, ln, "evict_after_s is below down_after_s");
    else if (out->n_peers && !out->peer_site[0])
        rc = fail(errmsg, errlen, -EINVAL, path, ln, "peer_node without peer_site");
    else if (out->peer_site[0] && !strcmp(out->peer_site, out->site))
        rc = fail(errmsg, errlen, -EINVAL, path, ln, "peer_site names this site");
    else if (out->site_role == SV_SITE_STANDBY && !out->n_peers)
        rc = fail(errmsg, errlen, -EINVAL, path, ln,
                  "a standby site needs peer_site and peer_node lines (where it pulls from)");
    else
        rc = check_metrics(out, node_lines, path, errmsg, errlen);
out:
    fclose(f);
    return rc;
}

bool sv_cfg_site_valid(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > 31)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '-'))
            return false;
    return true;
}

void sv_cfg_cert_name(const char *site, uint64_t id, char *out, size_t len)
{
    if (!strcmp(site, "primary"))
        snprintf(out, len, "node-%" PRIu64, id);
    else
        snprintf(out, len, "node-%" PRIu64 "@%s", id, site);
}

uint64_t sv_cfg_cert_node(const char *site, const char *name)
{
    if (!name || strncmp(name, "node-", 5) || name[5] < '1' || name[5] > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long id = strtoull(name + 5, &end, 10);
    if (errno || id == 0)
        return 0;
    bool plain = !strcmp(site, "primary");
    if (plain ? *end != 0 : (*end != '@' || strcmp(end + 1, site)))
        return 0;
    return id;
}

const struct sv_cfg_node *sv_cfg_node(const struct sv_cfg *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].id == id)
            return &c->nodes[i];
    return NULL;
}

/* The k-th node (in file order) of zone z, and the zone's size. */
static const struct sv_cfg_node *zone_node(const struct sv_cfg *c, uint32_t z, uint32_t k,
                                           uint32_t *size)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_nodes; i++)
        n += c->nodes[i].zone_index == z;
    *size = n;
    k %= n;
    for (uint32_t i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].zone_index == z && k-- == 0)
            return &c->nodes[i];
    return NULL;
}

uint32_t sv_cfg_replicas(const struct sv_cfg *c, uint64_t group, uint64_t *ids)
{
    uint32_t size;
    if (group == 0) {
        uint32_t n = c->n_zones < SV_CFG_META_REPLICAS ? c->n_zones : SV_CFG_META_REPLICAS;
        for (uint32_t j = 0; j < n; j++)
            ids[j] = zone_node(c, j, 0, &size)->id;
        return n;
    }
    uint64_t s = group - 1;
    for (uint32_t j = 0; j < c->replicas; j++) {
        uint32_t z = (uint32_t)((s + j) % c->n_zones);
        ids[j] = zone_node(c, z, (uint32_t)(s / c->n_zones) + j, &size)->id;
    }
    return c->replicas;
}

/* Append n bytes to a growing buffer. */
struct buf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};

static void put_bytes(struct buf *b, const void *d, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_u64(struct buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    put_bytes(b, x, 8);
}

static void put_str(struct buf *b, const char *s)
{
    size_t n = strlen(s);
    put_u64(b, n);
    put_bytes(b, s, n);
}

int sv_cfg_map_encode(const struct sv_cfg *c, uint8_t **out, size_t *len)
{
    struct buf b = {0};
    put_bytes(&b, "svmap1", 6);
    put_u64(&b, c->n_shards);
    put_u64(&b, c->replicas);
    put_u64(&b, c->n_nodes);
    for (uint32_t i = 0; i < c->n_nodes; i++) {
        put_u64(&b, c->nodes[i].id);
        put_str(&b, c->nodes[i].zone);
        put_str(&b, c->nodes[i].addr);
    }
    for (uint64_t g = 0; g <= c->n_shards; g++) {
        uint64_t ids[SV_CFG_REPLICAS_MAX];
        uint32_t n = sv_cfg_replicas(c, g, ids);
        put_u64(&b, n);
        for (uint32_t k = 0; k < n; k++)
            put_u64(&b, ids[k]);
    }
    if (b.failed) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
