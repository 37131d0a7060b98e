/* The cluster map as data: the nodes (id, zone, address, state) and the
 * replica set of every group, with an epoch that grows with every change.
 * The meta group records it; cluster.conf only bootstraps it (epoch 1).
 * Pure: no I/O, no clock; every function here is deterministic, so every
 * node that applies the same changes holds the same map. */
#ifndef SV_MAP_H
#define SV_MAP_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sv_map_state {
    SV_MAP_UP = 1,   /* serving */
    SV_MAP_DOWN,     /* silent past down_after (the scheduler's) */
    SV_MAP_DRAINING, /* replicas being moved off */
    SV_MAP_EVICTED,  /* silent past evict_after: its replicas are being replaced */
    SV_MAP_REMOVED,  /* taken out by an operator (after a drain, or forced) */
};

/* The cluster's scheduler settings (svctl cluster set), recorded with the
 * map so that every meta leader runs with the same ones. */
struct sv_map_settings {
    uint64_t down_after_ms;  /* silent this long: down (default 10 s) */
    uint64_t evict_after_ms; /* silent this long: evicted (default 60 s) */
    uint64_t repair_rate;    /* bytes per second one node copies for repairs (64 MiB/s) */
    uint32_t moves_per_node; /* replica moves one node takes part in at once (default 2) */
    uint32_t auto_evict;     /* 0: evictions held (maintenance) */
    uint32_t rebalance;      /* 0: no replica moves only for balance (repairs and drains go on) */
};

#define SV_MAP_SETTINGS_DEFAULT                                                                    \
    ((struct sv_map_settings){.down_after_ms = 10000,                                              \
                              .evict_after_ms = 60000,                                             \
                              .repair_rate = 64u << 20,                                            \
                              .moves_per_node = 2,                                                 \
                              .auto_evict = 1,                                                     \
                              .rebalance = 1})

enum {
    SV_MAP_E_MALFORMED = -2700, /* not a map encoding (-2700 .. -2651: errors.h) */
    SV_MAP_E_BAD_MOVE,          /* the move does not fit the map (errmsg says why) */
    SV_MAP_E_BAD_NODE,          /* the node change does not fit the map (errmsg says why) */
    SV_MAP_E_LAST_,
};

struct sv_map_node {
    uint64_t id;
    char zone[SV_CFG_NAME_MAX];
    char addr[SV_CFG_ADDR_MAX];
    uint32_t state; /* enum sv_map_state */
};

struct sv_map_group {
    uint32_t n;
    uint64_t ids[SV_CFG_REPLICAS_MAX];
    /* A replacement in progress: the replica on node `out` is replaced by
     * the last one of ids (a learner until promoted); 0 when none. The map
     * records it so that any meta leader can finish the replacement. */
    uint64_t out;
};

/* The site's role in a two-site deployment (dr.c). */
enum sv_map_site_role {
    SV_MAP_PRIMARY = 0, /* takes writes */
    SV_MAP_STANDBY = 1, /* a disaster-recovery copy of the peer site: read-only, pulls */
    SV_MAP_FENCED = 2,  /* a primary that learned of a newer one: read-only, pulls nothing */
};

struct sv_map {
    uint64_t epoch;
    uint32_t n_shards, replicas, n_nodes;
    struct sv_map_settings set;
    uint32_t site_role;  /* enum sv_map_site_role */
    uint64_t site_epoch; /* grows with every promotion (1: the first primary's) */
    /* The last promotion's consistent cut (dr.c): the site's frontier when
     * it was promoted, in ms since the epoch; UINT64_MAX: forced with none
     * known (every entry received runs); 0: none recorded. */
    uint64_t site_cut_ms;
    struct sv_map_node nodes[SV_CFG_NODES_MAX];
    struct sv_map_group groups[SV_CFG_SHARDS_MAX + 1]; /* 0 = meta, s + 1 = shard s */
};

/* The map cluster.conf bootstraps (epoch 1, every node up, sv_cfg_replicas'
 * placement) into *out (caller-owned; large: allocate it). */
void sv_map_from_cfg(const struct sv_cfg *c, struct sv_map *out);

/* Encode m into a new malloc'd buffer (*out, *len; the caller frees it).
 * 0 or -ENOMEM. */
int sv_map_encode(const struct sv_map *m, uint8_t **out, size_t *len);

/* Decode p[0..len) into *out: the current encoding, or the bootstrap
 * record of earlier versions (config.h's sv_cfg_map_encode: epoch 1, every
 * node up). 0 or SV_MAP_E_MALFORMED. */
int sv_map_decode(const uint8_t *p, size_t len, struct sv_map *out);

/* Node id of m, or NULL. */
const struct sv_map_node *sv_map_node(const struct sv_map *m, uint64_t id);

/* The replica set of group (NULL when group is not in m). */
const struct sv_map_group *sv_map_group(const struct sv_map *m, uint64_t group);

/* Node holds a replica of group. */
bool sv_map_holds(const struct sv_map *m, uint64_t group, uint64_t node);

/* Move group's replica from node `from` to node `to` (the replica set
 * keeps its order; `to` takes from's place) and raise the epoch. Refused
 * (SV_MAP_E_BAD_MOVE, m unchanged, errmsg says why) when: the group is not
 * in m, `from` holds no replica of it, `to` is not an up node of m or holds
 * one already, or `to`'s zone already holds another replica of the group
 * while some up node's zone holds none (zones stay distinct when they can),
 * or a replacement of the group is in progress (sv_map_replace). */
int sv_map_move(struct sv_map *m, uint64_t group, uint64_t from, uint64_t to, char *errmsg,
                size_t errlen);

/* Add node as a replica of group (at the end of its set: a replica being
 * built, a learner in the group's Raft configuration until promoted) and
 * raise the epoch. Refused (SV_MAP_E_BAD_MOVE, m unchanged) when the group
 * is not in m, node is not an up node of m or holds a replica already, a
 * replacement of the group is in progress (its new replica is the last),
 * or the set is full. */
int sv_map_add(struct sv_map *m, uint64_t group, uint64_t node, char *errmsg, size_t errlen);

/* Begin replacing node from's replica of group by one on node `to`: `to`
 * is added at the end of the set and recorded as replacing `from` (out),
 * epoch + 1. Refused (SV_MAP_E_BAD_MOVE) as sv_map_move refuses, and when a
 * replacement of the group is in progress already. sv_map_remove(from)
 * ends it; sv_map_remove(to) abandons it. */
int sv_map_replace(struct sv_map *m, uint64_t group, uint64_t from, uint64_t to, char *errmsg,
                   size_t errlen);

/* Remove node's replica of group and raise the epoch (a replacement the
 * node took part in, as `out` or as the new replica, ends). Refused when
 * node holds none, or it is the group's last. */
int sv_map_remove(struct sv_map *m, uint64_t group, uint64_t node, char *errmsg, size_t errlen);

/* Add a node (state up) to m, epoch + 1. Refused (SV_MAP_E_BAD_NODE) when
 * the id is 0 or taken, the address is another node's, the zone or the
 * address is empty, or m holds SV_CFG_NODES_MAX nodes. */
int sv_map_node_add(struct sv_map *m, uint64_t id, const char *zone, const char *addr, char *errmsg,
                    size_t errlen);

/* Set node id's state, epoch + 1 (unchanged when it is that already).
 * Refused (SV_MAP_E_BAD_NODE) when id is not in m. */
int sv_map_node_state(struct sv_map *m, uint64_t id, uint32_t state, char *errmsg, size_t errlen);

/* Replicas node id holds in m. */
uint32_t sv_map_node_replicas(const struct sv_map *m, uint64_t id);

/* Maps a and b name the same nodes (id, zone, address), shard count and
 * replica count: what cluster.conf decides. */
bool sv_map_same_nodes(const struct sv_map *a, const struct sv_map *b);

const char *sv_map_strerror(int rc);
const char *sv_map_state_name(uint32_t state);

#endif
