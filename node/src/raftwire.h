/* Raft messages on the wire: the body of an SV_MSG_RAFT frame (proto.h, wire.h).
 *
 * A body is one msgpack array of messages, each a 2-element array
 *     [group (uint), msg (map)]
 * where msg maps a small unsigned field id (enum sv_raftwire_field) to the
 * value of that field of struct sv_raft_msg. Only non-zero fields are
 * written; an absent field decodes as 0 (false, NULL). The value types:
 *     uint     TYPE FROM TO TERM INDEX LOG_TERM COMMIT HINT_INDEX HINT_TERM
 *              CTX LEASE_TICK OFFSET
 *     bool     REJECT TRANSFER DONE
 *     ENTRIES  array of [term (uint), index (uint), type (uint), data (bin)]
 *     SNAP     [index (uint), term (uint), conf (bin, sv_raft_conf_encode)]:
 *              written when any of snap.index, snap.term, snap.conf.n is set
 *     DATA     bin: the snapshot chunk (msg.data, msg.len)
 * TYPE is required. A decoder skips field ids it does not know (a newer peer
 * may add some) and rejects a known id twice or with a value of another type.
 * A peer's body is never trusted: every array or map count is checked
 * against the bytes that remain before anything is allocated, and the limits
 * below and in raft.h are enforced. Any error means the frame (and the
 * connection it came on) is bad.
 */
#ifndef SV_RAFTWIRE_H
#define SV_RAFTWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "shardvault/raft.h"

enum {
    SV_RAFTWIRE_MSGS_MAX = 65536, /* messages in one body */
};

/* Field ids of the message map. Stable: they are the wire format. */
enum sv_raftwire_field {
    SV_RAFTWIRE_F_TYPE = 0,
    SV_RAFTWIRE_F_FROM = 1,
    SV_RAFTWIRE_F_TO = 2,
    SV_RAFTWIRE_F_TERM = 3,
    SV_RAFTWIRE_F_INDEX = 4,
    SV_RAFTWIRE_F_LOG_TERM = 5,
    SV_RAFTWIRE_F_COMMIT = 6,
    SV_RAFTWIRE_F_REJECT = 7,
    SV_RAFTWIRE_F_TRANSFER = 8,
    SV_RAFTWIRE_F_DONE = 9,
    SV_RAFTWIRE_F_HINT_INDEX = 10,
    SV_RAFTWIRE_F_HINT_TERM = 11,
    SV_RAFTWIRE_F_CTX = 12,
    SV_RAFTWIRE_F_LEASE_TICK = 13,
    SV_RAFTWIRE_F_ENTRIES = 14,
    SV_RAFTWIRE_F_SNAP = 15,
    SV_RAFTWIRE_F_OFFSET = 16,
    SV_RAFTWIRE_F_DATA = 17,
    SV_RAFTWIRE_F_COUNT_
};

/* One message of one Raft group (shard). */
struct sv_raftwire_msg {
    uint64_t group;
    struct sv_raft_msg msg;
};

/* Domain errors (negative): -2200 .. -2151, svraftwire's range of the node's
 * error space (errors.h); system errors are negative errno values. */
enum sv_raftwire_err {
    SV_RAFTWIRE_E_MALFORMED = -2200, /* not the body described above */
    SV_RAFTWIRE_E_TOO_BIG,           /* over body_max, or a count or length over its limit */
    SV_RAFTWIRE_E_NOMEM,
    SV_RAFTWIRE_E_LAST_
};

/* Static string for an error code (these errors, negative errno, 0). */
const char *sv_raftwire_strerror(int err);

/* Encode a prefix msgs[0..*n_done) of msgs[0..n) (borrowed) into one new
 * malloc'd body (*out, *out_len; the caller frees it) no longer than
 * body_max: as many messages as fit, at most SV_RAFTWIRE_MSGS_MAX, and at
 * least one when n > 0 (n == 0 gives an empty array). Callers send the body
 * and call again with msgs + *n_done until all are sent. Entry and chunk data
 * are copied with one memcpy each.
 * A message that cannot be encoded (more than SV_RAFT_MSG_ENTRIES_MAX
 * entries, an entry over SV_RAFT_ENTRY_BYTES_MAX, a chunk over
 * SV_RAFT_SNAPSHOT_BYTES_MAX) or does not fit in body_max ends the prefix.
 * Returns 0, SV_RAFTWIRE_E_TOO_BIG when msgs[0] alone cannot be encoded or
 * does not fit (nothing is allocated), or SV_RAFTWIRE_E_NOMEM. A message type
 * outside 1..SV_RAFT_MSG_TYPE_MAX_-1 or a conf of more than
 * SV_RAFT_SERVERS_MAX servers is a programmer error (abort). */
int sv_raftwire_encode(const struct sv_raftwire_msg *msgs, size_t n, size_t body_max, uint8_t **out,
                       size_t *out_len, size_t *n_done);

/* Decode body[0..len): *msgs is a new malloc'd array of *n messages (NULL
 * when *n is 0). Entry arrays are malloc'd; entry data and snapshot chunk
 * data point INTO body (borrowed: valid while body is, and not to be
 * written), and are NULL when their length is 0. Free with
 * sv_raftwire_free(*msgs, *n). Validates: type in 1..SV_RAFT_MSG_TYPE_MAX_-1,
 * entry type a known enum sv_raft_entry_type, n_entries <=
 * SV_RAFT_MSG_ENTRIES_MAX, entry length <= SV_RAFT_ENTRY_BYTES_MAX, chunk
 * length <= SV_RAFT_SNAPSHOT_BYTES_MAX, at most SV_RAFTWIRE_MSGS_MAX
 * messages, the snapshot conf decodes (sv_raft_conf_decode), no byte after
 * the array. Returns 0, SV_RAFTWIRE_E_MALFORMED, SV_RAFTWIRE_E_TOO_BIG or
 * SV_RAFTWIRE_E_NOMEM; on failure *msgs is NULL, *n is 0, nothing is left
 * allocated, and errmsg (may be NULL) says what was wrong. */
int sv_raftwire_decode(const uint8_t *body, size_t len, struct sv_raftwire_msg **msgs, size_t *n,
                       char *errmsg, size_t errlen);

/* Free what sv_raftwire_decode allocated (msgs may be NULL). */
void sv_raftwire_free(struct sv_raftwire_msg *msgs, size_t n);

#endif
