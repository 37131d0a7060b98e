/* svd's node: one libuv loop hosting the Raft groups placed on this node
 * (multi-raft), the transport, and the stores.
 *
 * Threads. The loop thread owns every Raft group, connection and request.
 * Disk work runs on libuv's thread pool: ONE persist job at a time takes the
 * ready batches of all groups, stages them in the log store and commits
 * them with one sync (group commit), then applies the committed entries to
 * the state machine (sm.h); reads (object metadata, chunks) run as separate
 * pool jobs. The segment store is shared by those jobs under a mutex.
 *
 * A turn of the loop (uv_check, after I/O): if no persist job runs, every
 * group with a ready batch hands it over (sv_raft_ready); messages that Raft
 * lets a leader send early go out at once, the rest after the sync; then the
 * job persists and applies; back on the loop the node answers the requests
 * whose entries were applied, serves reads, and calls sv_raft_advance. While
 * a group's batch is in the job, its inputs (peer messages, ticks,
 * proposals, read requests) wait in a queue, as raft.h requires.
 */
#ifndef SV_NODE_H
#define SV_NODE_H

#include <stddef.h>
#include <stdint.h>

struct sv_node;

/* Load the configuration at config_path, open node id's stores, create or
 * restore its Raft groups and start listening. 0 or a negative error with
 * errmsg set. */
int sv_node_open(const char *config_path, uint64_t id, struct sv_node **out, char *errmsg,
                 size_t errlen);

/* Run the loop until SIGTERM or SIGINT (graceful: the running persist job
 * finishes, stores are synced and closed), or a fatal storage error.
 * Returns 0 after a graceful stop, 1 after a fatal error. Frees the node. */
int sv_node_run(struct sv_node *n);

/* Create the master key file and a cluster data key wrapped by it. */
int sv_node_keygen(const char *master_path, const char *data_key_path, char *errmsg, size_t errlen);

#endif
