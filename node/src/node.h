/* svd's node: one libuv loop hosting the Raft groups placed on this node
 * (multi-raft), the transport, and the stores.
 *
 * Threads. The loop thread owns every Raft group, connection and request.
 * Disk work runs on libuv's thread pool as persist jobs. A job takes the
 * ready batches of the groups not already in a job; its persist half stages
 * them in the log store and commits them with one sync (group commit), its
 * apply half applies the committed entries to the state machine (sm.h) and
 * the segment store. Halves of consecutive jobs form a pipeline (one persist
 * and one apply at a time, each in job order); the two halves of a job run
 * at once unless a batch commits an entry it also persists. Reads (object
 * metadata, chunks) run as separate pool jobs. The segment store is shared
 * by those jobs under a mutex.
 *
 * A turn of the loop (uv_check, after I/O): if no persist half runs, the
 * groups with a ready batch hand it over (sv_raft_ready); messages that Raft
 * lets a leader send early go out at once, the rest once the persist half is
 * done; when the apply half is done the node answers the requests whose
 * entries were applied and serves reads; when both are done it calls
 * sv_raft_advance. While a group's batch is in a job, its inputs (peer
 * messages, ticks, proposals, read requests) wait in a queue, as raft.h
 * requires.
 */
#ifndef SV_NODE_H
#define SV_NODE_H

#include <stddef.h>
#include <stdint.h>

struct sv_node;

enum {
    SV_NODE_JOIN = 1, /* a new node: ask the cluster to add it to the map (svd --join) */
};

/* Load the configuration at config_path, open node id's stores, create or
 * restore its Raft groups and start listening. flags: SV_NODE_*. 0 or a
 * negative error with errmsg set. */
int sv_node_open(const char *config_path, uint64_t id, unsigned flags, struct sv_node **out,
                 char *errmsg, size_t errlen);

/* Run the loop until SIGTERM or SIGINT (graceful: the persist jobs in
 * flight finish, stores are synced and closed), or a fatal storage error.
 * Returns 0 after a graceful stop, 1 after a fatal error. Frees the node. */
int sv_node_run(struct sv_node *n);

/* Create the master key file and a cluster data key wrapped by it. */
int sv_node_keygen(const char *master_path, const char *data_key_path, char *errmsg, size_t errlen);

#endif
