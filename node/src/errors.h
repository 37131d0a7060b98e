/* The node's one error space: a range of codes per module, and one strerror for any code.
 *
 * Functions in node/ return 0, a negative errno, or a negative code of the
 * module that failed (STYLE.md rule 6). Every module's codes lie in a range
 * of its own, so one function can name any of them, and a code passed up
 * through other modules (a segment store error out of sv_sm_commit, a TLS
 * error in a transport close) still says where it came from:
 *
 *   codes               module                    header
 *   -1 .. -899          negative errno            <errno.h> (Linux's are above -150)
 *   -1000 .. -951       raft                      raft/include/shardvault/raft.h
 *   -2000 .. -1951      svtls                     client/src/tls.h
 *   -2100 .. -2051      proto (message bodies)    client/src/proto.h
 *   -2150 .. -2101      mp (msgpack reader)       client/src/mp.h
 *   -2200 .. -2151      svraftwire                node/src/raftwire.h
 *   -2300 .. -2251      svwire (frames)           client/src/wire.h
 *   -2400 .. -2351      svsegstore                node/src/segstore.h
 *   -2500 .. -2451      svcrypto                  node/src/crypto.h
 *   -2600 .. -2551      svlogstore                node/src/logstore.h
 *   -2700 .. -2651      svmap (cluster map)       node/src/map.h
 *   -3000 .. -2951      client library (public)   client/include/shardvault/client.h
 *
 * A module's codes count up from its base (its first code, the most
 * negative) and may take SV_ERR_SPAN codes; errors.c checks at compile time
 * that every module's codes fit its range and that no two ranges overlap.
 * raft/ depends on nothing and keeps its own numbers (this table works
 * around them). The client library's codes are public API and ABI (svctl
 * maps them to exit codes): they never change, and never reach node/ (the
 * node speaks statuses, enum sv_status in proto.h, to clients), so
 * sv_strerror only names their range.
 *
 * No range of their own: sm.c and config.c return negative errno (sm passes
 * the segment store's codes through); the transport returns negative errno,
 * libuv codes (negative errno on Linux; it turns UV_EOF into -ECONNRESET and
 * looks up no names, so UV_EOF and UV_EAI_* never come out of it), svtls and
 * svwire codes. log.c returns only -EINVAL.
 *
 * Each module's own *_strerror still works for its codes and errno; use
 * sv_strerror when a code may come from more than one module.
 */
#ifndef SV_ERRORS_H
#define SV_ERRORS_H

#include <stddef.h>

enum {
    SV_ERR_ERRNO_MIN = -899, /* negative errno values are SV_ERR_ERRNO_MIN .. -1 */
    SV_ERR_SPAN = 50,        /* codes a module may have: [base, base + SV_ERR_SPAN) */
};

/* One module's range. */
struct sv_err_range {
    const char *module; /* "segstore", "raft", ... */
    int base;           /* its first code; its range is [base, base + SV_ERR_SPAN) */
    int end;            /* one past its last code (its *_E_LAST_) */
    /* Its own strerror (static strings); NULL for the client library, whose
     * sv_client_strerror node/ does not link. */
    const char *(*strerror)(int err);
};

/* Every module's range, ascending by base; *n is set to their number. The
 * table is static. */
const struct sv_err_range *sv_err_ranges(size_t *n);

/* The module range holding rc, or NULL (0, a negative errno, or no module's). */
const struct sv_err_range *sv_err_range_of(int rc);

/* Static text for any code: "ok" for 0, the C locale's text of a negative
 * errno (strerrordesc_np), the owning module's string for a module's code,
 * "unknown error" for anything else (a number no errno has, an unused code
 * inside a module's range). Any thread. */
const char *sv_strerror(int rc);

#endif
