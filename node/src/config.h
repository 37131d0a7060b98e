/* svd cluster configuration: the file deploy/cluster writes, and the fixed
 * placement of shards on nodes computed from it at bootstrap.
 *
 * File format: one directive per line, '#' starts a comment.
 *   shards N          number of shards (default 16)
 *   replicas R        replicas per shard (default 3), in R distinct zones
 *   ca PATH           cluster CA bundle (PEM)
 *   master_key PATH   master key file (KEK), mode 0600
 *   data_key PATH     the cluster data key wrapped by the master key
 *   upload_ttl_s S    seconds after which an unfinished upload is removed (default 600)
 *   max_connections N open connections per node (default 4096; 512..4096), of which
 *                     256 are kept for nodes
 *   max_connections_per_source N
 *                     client connections from one address (default 1024; 1..4096)
 *   idle_timeout_s S  a client connection that sends nothing this long is closed
 *                     (default 120; 10..86400)
 *   down_after_s S    a node silent this long is down (default 10; 1..86400)
 *   evict_after_s S   ... and this long, evicted: its replicas are rebuilt elsewhere
 *                     (default 60; down_after_s..86400). Both bootstrap the cluster's
 *                     settings (epoch 1); `svctl cluster set` changes them later
 *   site NAME ROLE    this site's name ([a-z0-9-], 1..31 bytes; default "primary") and the
 *                     role it starts in: primary (takes writes; default) or standby (a
 *                     disaster-recovery copy of the peer site, read-only)
 *   peer_site NAME    the other site of a two-site deployment (none by default)
 *   peer_node ID HOST:PORT
 *                     a node of the peer site, where a standby pulls the shards' entries
 *                     from (repeat for each; the peer's answers name its leaders)
 *   node ID ZONE HOST:PORT DIR [metrics MHOST:MPORT]
 *                     a node; its certificate is DIR/node.pem and DIR/node.key,
 *                     its data DIR/data; it serves /metrics and /health over
 *                     plain HTTP on MHOST:MPORT (default HOST:PORT+1000)
 * A node's certificate names it "node-ID" in the site named primary and
 * "node-ID@SITE" in any other site: a certificate of the peer site is taken
 * for the disaster-recovery link only, never for this site's Raft.
 * Group ids: 0 is the meta group, group s + 1 is shard s.
 */
#ifndef SV_CONFIG_H
#define SV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SV_CFG_NODES_MAX = 64,
    SV_CFG_SHARDS_MAX = 4096,
    SV_CFG_REPLICAS_MAX = 7,
    SV_CFG_META_REPLICAS = 3, /* the meta group lives on (up to) this many nodes */
    SV_CFG_NAME_MAX = 64,     /* zone name, with NUL */
    SV_CFG_ADDR_MAX = 256,    /* host:port, with NUL */
    SV_CFG_PATH_MAX = 1024,   /* paths, with NUL */
    /* The default metrics port is the node's port plus this. */
    SV_CFG_METRICS_PORT_OFFSET = 1000,
};

struct sv_cfg_node {
    uint64_t id;
    char zone[SV_CFG_NAME_MAX];
    char addr[SV_CFG_ADDR_MAX];
    char dir[SV_CFG_PATH_MAX];
    /* HOST:PORT of the node's metrics endpoint (metrics.h): from the node
     * line, else addr's host with addr's port + SV_CFG_METRICS_PORT_OFFSET. */
    char metrics[SV_CFG_ADDR_MAX];
    uint32_t zone_index; /* zones numbered in order of first appearance */
};

enum sv_cfg_role { SV_SITE_PRIMARY = 0, SV_SITE_STANDBY = 1 };

struct sv_cfg_peer {
    uint64_t id;
    char addr[SV_CFG_ADDR_MAX];
};

struct sv_cfg {
    char site[32];      /* this site's name ("primary" by default) */
    uint32_t site_role; /* enum sv_cfg_role: the role this site starts in */
    char peer_site[32]; /* the peer site's name, "" when none */
    uint32_t n_peers;
    struct sv_cfg_peer peers[SV_CFG_NODES_MAX]; /* the peer site's nodes */
    uint32_t n_shards;
    uint32_t replicas;
    uint32_t upload_ttl_s;
    uint32_t max_conns, max_conns_per_source, idle_timeout_s;
    uint32_t down_after_s, evict_after_s;
    char ca[SV_CFG_PATH_MAX];
    char master_key[SV_CFG_PATH_MAX];
    char data_key[SV_CFG_PATH_MAX];
    uint32_t n_nodes;
    struct sv_cfg_node nodes[SV_CFG_NODES_MAX];
    uint32_t n_zones;
};

/* Parse the file at path into *out (caller-owned). Checks: every directive
 * known and well formed, unique node ids (> 0) and addresses, ports in
 * 1..65535, 1 <= replicas <= zones, replicas <= SV_CFG_REPLICAS_MAX, shards
 * in 1..SV_CFG_SHARDS_MAX, ca/master_key/data_key present. Metrics
 * addresses: an IPv4 literal or localhost, a port in 1..65535 (a default
 * past 65535 is an error: give the address), none equal to another node's
 * metrics address or to any node's address (localhost counts as
 * 127.0.0.1), and a wildcard 0.0.0.0 not on the node's own port. Returns 0,
 * or -EINVAL / a negative errno with errmsg naming the line. */
int sv_cfg_load(const char *path, struct sv_cfg *out, char *errmsg, size_t errlen);

/* A site name: [a-z0-9-], 1..31 bytes. */
bool sv_cfg_site_valid(const char *name);

/* The certificate name of node id of site: "node-ID" in the site named
 * primary, "node-ID@SITE" elsewhere. */
void sv_cfg_cert_name(const char *site, uint64_t id, char *out, size_t len);
/* The node id a certificate name gives for site (the inverse), 0 when the
 * name is not one of that site's. */
uint64_t sv_cfg_cert_node(const char *site, const char *name);

/* Node with id, or NULL. */
const struct sv_cfg_node *sv_cfg_node(const struct sv_cfg *c, uint64_t id);

/* Replica node ids of group (0 = meta, s + 1 = shard s) into ids
 * (SV_CFG_REPLICAS_MAX entries); returns how many. Deterministic: every
 * node computes the same placement. Shard s takes zones s, s+1, ... (mod
 * zones) and, in each, the node at (s / zones + j) modulo the zone's size,
 * so replicas and leaders spread evenly. The meta group takes the first
 * node of each of the first min(SV_CFG_META_REPLICAS, zones) zones. */
uint32_t sv_cfg_replicas(const struct sv_cfg *c, uint64_t group, uint64_t *ids);

/* The cluster map derived from c (nodes with zone and address, shards with
 * their replicas) in a canonical encoding, as the meta group records it:
 * a new malloc'd buffer. 0 or -ENOMEM. */
int sv_cfg_map_encode(const struct sv_cfg *c, uint8_t **out, size_t *len);

#endif
