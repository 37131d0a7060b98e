/* libshardvault internals shared by client.c (routing, connections, status),
 * admin.c (operator calls to the meta group's leader) and dr.c (disaster
 * recovery: status, promote, demote). Not installed. */
#ifndef SV_CLIENT_INT_H
#define SV_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "shardvault/client.h"

/* A received response: its body (owned) and the message decoded from it
 * (byte strings borrowed from body). Release with sv__resp_free. */
struct sv__resp {
    uint32_t type;
    uint64_t id;
    uint8_t *body;
    struct sv_msg m;
};

void sv__resp_free(struct sv__resp *r);

/* Set the calling thread's sv_client_errmsg (printf format). */
__attribute__((format(printf, 1, 2))) void sv__set_err(const char *fmt, ...);

/* Clear the calling thread's error message (at the start of a public call). */
void sv__clear_err(void);

/* The client error for a response status (NOT_LEADER counts as UNAVAILABLE). */
int sv__status_err(int64_t status);

/* Turn r's non-OK status into an error: errmsg = the node's MSG (or the
 * status' name). Returns the error. */
int sv__status_fail(const struct sv__resp *r);

uint64_t sv__now_ms(void);
void sv__sleep_ms(uint64_t ms);
/* A jittered wait of about backoff_ms (half to all of it). */
uint64_t sv__jitter_ms(uint32_t backoff_ms);

/* The client's deadline per operation, ms. */
uint32_t sv__deadline_ms(struct sv_client *c);

/* One request m (type) to addr on a pooled connection, answered in *r
 * (caller frees with sv__resp_free) before deadline. 0, or an error with why
 * filled (connection, TLS, protocol, SV_E_NOMEM, SV_E_BAD_ARGUMENT). */
int sv__call_addr(struct sv_client *c, const char *addr, uint32_t type, const struct sv_msg *m,
                  uint64_t deadline, struct sv__resp *r, char *why, size_t wl);

/* Addresses to try for a request with no shard: the remembered meta leader
 * first (when one), then the endpoints, then the map's nodes, without
 * repeats. Fills addrs[0..cap) (each SV_CLIENT_NAME_MAX + 1 bytes) and
 * returns how many. */
size_t sv__candidates(struct sv_client *c, char (*addrs)[SV_CLIENT_NAME_MAX + 1], size_t cap);

/* The address of node id in the client's map into addr (cap bytes): true
 * when known. Loads the map (bounded by deadline) if none is loaded yet. */
bool sv__node_addr(struct sv_client *c, uint64_t id, uint64_t deadline, char *addr, size_t cap);

/* Remember (or, with "", forget) where the meta group's leader answered. */
void sv__set_meta_leader(struct sv_client *c, const char *addr);

/* Send m (type, borrowed) to the meta group's leader as the operator calls
 * do (the remembered leader, then the endpoints and the map's nodes;
 * NOT_LEADER followed, UNAVAILABLE and failures retried until c's deadline).
 * 0: *r holds the OK answer (free it with sv__resp_free). Otherwise the
 * error, *r already freed: a non-OK status is its error with the node's
 * sentence in errmsg (BAD_REQUEST: SV_E_BAD_ARGUMENT). */
int sv__meta_req(struct sv_client *c, uint32_t type, const struct sv_msg *m, struct sv__resp *r);

/* Send m (type, borrowed) to shard's leader as object requests go
 * (NOT_LEADER followed, UNAVAILABLE retried until c's deadline). 0: *r
 * holds the OK answer (free it with sv__resp_free); otherwise the error,
 * *r already freed. */
int sv__shard_req(struct sv_client *c, uint32_t shard, uint32_t type, struct sv_msg *m,
                  struct sv__resp *r);

/* Called by sv_client_status once the map and every node's STATUS are in:
 * merges the meta leader's NODES and HEALTH into s (states, counts, shard
 * reasons, health_known), bounded by deadline. Returns 0 or SV_E_NOMEM;
 * an unreachable meta leader is not an error (s->health_known stays false). */
int sv__status_merge_sched(struct sv_client *c, struct sv_cluster_status *s, uint64_t deadline);

/* Fetch the cluster map afresh, then send m (type, borrowed) to every node of
 * it in turn, as sv_client_status does, each bounded by 5 s and all by c's
 * deadline. *n_nodes and *n_shards receive the map's counts; answered(arg,
 * node id, r) sees each answer in the map's order, whatever its status (r is
 * freed once it returns; a non-zero return stops the round and is returned).
 * Returns 0, the error of fetching the map, SV_E_NOMEM, SV_E_UNAVAILABLE
 * when no node answered (errmsg lists why), or the callback's error. */
int sv__ask_every_node(struct sv_client *c, uint32_t type, const struct sv_msg *m, size_t *n_nodes,
                       uint32_t *n_shards,
                       int (*answered)(void *arg, uint64_t node, const struct sv__resp *r),
                       void *arg);

/* The aggregation of DR_STATUS answers into a report (dr.c), apart from the
 * network so that it can be tested alone. sv__dr_status_new: a new report
 * (free it with sv_client_dr_status_free; NULL when out of memory) for a map
 * of n_shards shards, each "unknown" with -1 for its unknowns. Then
 * sv__dr_status_add for each OK answer m (borrowed), in the order the nodes
 * answered: 0, or SV_E_PROTOCOL (errmsg set) for an answer without a role,
 * which is not counted (uniform: every answer counted had the first one's
 * role and epoch). Then sv__dr_status_finish sets the site's frontier
 * and lag from the shards'. */
struct sv_dr_status *sv__dr_status_new(size_t n_shards);
int sv__dr_status_add(struct sv_dr_status *s, const struct sv_msg *m);
void sv__dr_status_finish(struct sv_dr_status *s);

#endif
