/* svd's scheduler, the pure part: the cluster map, what the nodes' heartbeats
 * said and the time go in; the next map (node states, replacements begun)
 * and the actions and reports that explain it come out. No I/O, no clock:
 * the meta leader (sched_run.c) feeds it every second and carries the
 * result out; tests/sim/sched_sim.c feeds it thousands of seeded schedules.
 *
 * A replacement is the one way a replica goes anywhere (a repair, a drain,
 * a rebalance): the map records it (sv_map_replace: the new replica is
 * added at the end of the group's set, `out` names the one it replaces), and
 * sv_sched_replace_step says what to do next with the group's Raft
 * configuration: add the new replica as a learner, promote it once it holds
 * every chunk and has caught up, remove `out`, drop `out` from the map. The
 * shard never has fewer up-to-date copies than before a step.
 *
 * Decisions, in order of priority:
 *  1. node states: an up node silent for down_after is down; a down node
 *     heard again is up; a down node silent for evict_after is evicted, if
 *     auto_evict is on and evicting it can lead to a repair (reported
 *     otherwise: auto-evict-off, no-zone-available, quorum-lost). Silence is
 *     counted from the later of the last heartbeat and the time this meta
 *     leader took over (since_ms): a new leader judges no node before it has
 *     had down_after to hear from it.
 *  2. repairs: a group with a replica on an evicted or removed node gets a
 *     replacement on a healthy node (up, heard within down_after, not
 *     holding the group, in a zone holding none of its other replicas, room
 *     on its disk, fewer than moves_per_node replacements in flight).
 *  3. drains: a group with a replica on a draining node, likewise; never
 *     onto a node that is itself leaving.
 *  4. balance (only when nothing above is pending or in flight): one
 *     replica from the most loaded up node to the least loaded, when the
 *     counts differ by more than one, zones kept distinct; leadership moved
 *     off down and draining nodes at once. Leadership is moved only for
 *     balance once the cluster has been calm for SV_SCHED_LEADER_CALM_MS
 *     (the map unchanged, nothing pending or in flight, this meta leader in
 *     office that long), one group a round, from a node leading more than
 *     one above the mean to a replica leading fewer; never the meta
 *     group's (moving it restarts the meta leader's health-unknown wait).
 * A group whose replicas are all healthy and that has no replacement in
 * flight produces nothing. */
#ifndef SV_SCHED_H
#define SV_SCHED_H

#include "map.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why: every action and every report carries one (stable names: the CLI,
 * the metrics and the operators read them). */
enum sv_sched_reason {
    SV_SCHED_R_NONE = 0,
    SV_SCHED_R_NODE_DOWN,        /* "node-down": silent past down_after */
    SV_SCHED_R_NODE_BACK,        /* "node-back": a down node was heard again */
    SV_SCHED_R_EVICTED,          /* "evicted": silent past evict_after */
    SV_SCHED_R_REPAIR,           /* "repair": replacing a replica on an evicted/removed node */
    SV_SCHED_R_DRAIN,            /* "drain": moving a replica off a draining node */
    SV_SCHED_R_REBALANCE,        /* "rebalance": evening replica counts */
    SV_SCHED_R_LEADER_OFF,       /* "leader-off": leadership off a down/draining node */
    SV_SCHED_R_LEADER_BALANCE,   /* "leader-balance": evening leader counts */
    SV_SCHED_R_NO_ZONE,          /* "no-zone-available": every healthy candidate's zone
                                    holds a replica of the group already */
    SV_SCHED_R_NO_SPACE,         /* "no-space": the candidates' disks are too full */
    SV_SCHED_R_QUORUM_LOST,      /* "quorum-lost": most of the group's replicas are on
                                    silent nodes: its configuration cannot change */
    SV_SCHED_R_THROTTLED,        /* "throttled": the candidates are at moves_per_node */
    SV_SCHED_R_AUTO_EVICT_OFF,   /* "auto-evict-off": evictions held by the operator */
    SV_SCHED_R_HEALTH_UNKNOWN,   /* "health-unknown": not every node heard since this
                                    meta leader took over */
    SV_SCHED_R_CATCHING_UP,      /* "catching-up": the new replica copies data */
    SV_SCHED_R_SNAPSHOT_FAILING, /* "snapshot-failing": the new replica made no
                                    progress for SV_SCHED_STALL_MS */
    SV_SCHED_R_DOWN_WAITING,     /* "down-waiting": a replica's node is down, not yet
                                    evicted (evict_after not reached, or the eviction
                                    held by another group's quorum-lost); a group whose
                                    node's eviction is held by auto-evict-off,
                                    no-zone-available or no-space says that instead */
    SV_SCHED_R_COUNT_
};

enum {
    SV_SCHED_STALL_MS = 60000,        /* a catching-up replica silent on progress this long */
    SV_SCHED_LEADER_CALM_MS = 120000, /* calm this long before leadership moves for balance */
    SV_SCHED_DISK_MIN = 256u << 20,   /* free bytes a target keeps beyond the group's size */
    /* per group: a replacement or a report, a report on a down or stalled replica, a
     * transfer; per node: a state change or a report; one health-unknown report */
    SV_SCHED_ACTIONS_MAX = 4 * (SV_CFG_SHARDS_MAX + 1) + SV_CFG_NODES_MAX + 1,
};

/* What the meta leader knows of one node (parallel to map->nodes). */
struct sv_sched_node {
    uint64_t last_ms;   /* when its last heartbeat arrived; 0: none since since_ms */
    uint64_t disk_free; /* bytes free on its data disk, as it last said */
    uint64_t bytes;     /* bytes it stores */
};

/* What heartbeats said of one group (index = group id). */
struct sv_sched_group {
    uint64_t leader;      /* node id that said it leads the group (latest term), 0 unknown */
    uint64_t bytes;       /* the group's stored bytes as its leader said, 0 unknown */
    uint32_t complete;    /* bit k: replica ids[k] said it holds every chunk and is a voter or
                             a learner within the promotion lag */
    uint64_t progress_ms; /* when the new replica of a replacement last made progress */
    bool out_voter;       /* a replacement's `out` is a voter of the group's latest
                             configuration and no request to remove it is unanswered (the
                             replacement's driver says so; false when it does not know) */
    bool new_voter;       /* a replacement's new replica is a voter of the group's latest
                             configuration (the driver's last answer; false when unknown) */
};

struct sv_sched_in {
    const struct sv_map *map;
    const struct sv_sched_node *nodes;   /* map->n_nodes */
    const struct sv_sched_group *groups; /* map->n_shards + 1 */
    uint64_t now_ms;
    uint64_t since_ms;   /* when this meta leader took over */
    uint64_t changed_ms; /* when the map last changed as the caller saw it (its epoch rose),
                            0 unknown: counts from since_ms */
    uint32_t bugs;       /* deliberate defects (SV_SCHED_BUG_*): test builds only */
};

enum sv_sched_action_type {
    SV_SCHED_A_STATE = 1, /* node's state set to state (in next) */
    SV_SCHED_A_REPLACE,   /* group: replacement of node by to begun (in next); or, reason
                             repair on a group in flight, turned into the replacement of
                             node (on an evicted/removed node) by to */
    SV_SCHED_A_TRANSFER,  /* group: leadership to be transferred to node `to` */
    SV_SCHED_A_REPORT,    /* group (or node when group is ~0): cannot act, reason says why */
};

struct sv_sched_action {
    uint32_t type;   /* enum sv_sched_action_type */
    uint32_t reason; /* enum sv_sched_reason */
    uint64_t group;  /* ~0 when about a node only */
    uint64_t node;   /* STATE: the node; REPLACE: the replica replaced; REPORT: the node
                        concerned, 0 none */
    uint64_t to;     /* REPLACE, TRANSFER: the target node */
    uint32_t state;  /* STATE */
};

struct sv_sched_out {
    struct sv_map next; /* in->map with the state changes and replacements applied (its
                           epoch is higher when anything changed); groups past n_shards
                           are left as they were (not copied: a map is 300 KiB) */
    size_t n;
    struct sv_sched_action a[SV_SCHED_ACTIONS_MAX];
    bool health_known; /* every node that is not evicted/removed heard since since_ms, or
                          silent for down_after since then */
};

/* Plan one round (out is large: allocate it). Deterministic in its input. */
void sv_sched_plan(const struct sv_sched_in *in, struct sv_sched_out *out);

/* The next step of group's replacement (map group with out != 0). */
enum sv_sched_step {
    SV_SCHED_S_WAIT = 0,    /* nothing to do until something changes (see why) */
    SV_SCHED_S_ADD_LEARNER, /* propose adding the new replica as a learner */
    SV_SCHED_S_PROMOTE,     /* propose promoting it to voter */
    SV_SCHED_S_REMOVE,      /* propose removing `out` from the configuration */
    SV_SCHED_S_MAP_FINISH,  /* drop `out` from the map (sv_map_remove) */
    SV_SCHED_S_REMOVE_NEW,  /* the new replica's node is gone: propose removing it */
    SV_SCHED_S_MAP_ABANDON, /* it is out of the configuration: drop it from the map
                               (sv_map_remove of the new replica: `out` stays) */
};

/* The group's latest Raft configuration as its leader reported it. */
struct sv_sched_conf {
    uint32_t new_role;        /* of the new replica: 0 absent, 1 voter, 2 learner */
    uint32_t out_role;        /* of `out`: likewise */
    bool committed;           /* that configuration is committed */
    bool new_complete;        /* the new replica holds every chunk (its heartbeat) and its log is
                                 within the promotion lag (the leader's check) */
    bool new_gone;            /* the new replica's node is leaving in the map (draining,
                                 evicted or removed): a replica built there would only move
                                 again, and a draining node is never judged down or evicted,
                                 so one that went silent would hold the replacement forever */
    bool out_complete;        /* `out` is a voter on a live node holding everything */
    uint32_t complete_voters; /* voters on live nodes holding everything, out and new
                                 included */
    uint32_t replicas;        /* the group's replica count (the map's set less one) */
};

/* The step, and a reason when it is WAIT (SV_SCHED_R_CATCHING_UP, ...).
 * Each step waits for the previous configuration to commit. `out` is removed
 * only while the new replica is a voter and complete (a new replica that
 * went silent after its promotion holds the removal back). A replacement
 * whose new replica's node is gone (leaving) is abandoned (REMOVE_NEW,
 * MAP_ABANDON) unless `out` has left the configuration already, or the new
 * replica is a complete voter the group needs (then it finishes and the new
 * replica is repaired or drained in turn). A complete `out` is not removed while
 * that would leave fewer than `replicas` complete voters (another replica
 * went silent: WAIT, down-waiting; if its node is evicted, sv_sched_plan
 * turns the replacement into that replica's while `out` is still a voter
 * with no removal asked (sv_sched_group.out_voter): `out` then names it).
 * bugs: SV_SCHED_BUG_* (test builds only). */
enum sv_sched_step sv_sched_replace_step(const struct sv_sched_conf *c, uint32_t bugs,
                                         uint32_t *why);

/* Deliberate defects, honoured only by the svsched_bugs test library (as
 * raft.h's SV_RAFT_BUG_*): the simulator must catch each. */
enum {
    SV_SCHED_BUG_REMOVE_EARLY = 1u << 0, /* remove `out` before the new replica is promoted */
    SV_SCHED_BUG_IGNORE_ZONES = 1u << 1, /* place without regard to zones */
    SV_SCHED_BUG_ONTO_LEAVING = 1u << 2, /* place onto draining nodes too */
    SV_SCHED_BUG_EVICT_EARLY = 1u << 3,  /* evict at down_after */
};
bool sv_sched_bugs_compiled(void);

const char *sv_sched_reason_name(uint32_t reason);
/* A sentence for reports and the log, e.g. "no healthy node in a zone
 * without a replica of shard 4". */
void sv_sched_action_text(const struct sv_sched_action *a, char *buf, size_t cap);

#endif
