/* The node's error space: the table of module ranges, its compile-time checks, sv_strerror. */
#define _GNU_SOURCE /* strerrordesc_np */
#include "errors.h"

#include "crypto.h"
#include "logstore.h"
#include "map.h"
#include "mp.h"
#include "proto.h"
#include "raftwire.h"
#include "segstore.h"
#include "tls.h"
#include "wire.h"

#include <shardvault/client.h>
#include <shardvault/raft.h>
#include <string.h>

/* Every module's codes fit its range... */
#define FITS(first, last) ((last) - (first) <= SV_ERR_SPAN)
_Static_assert(FITS(SV_E_NOT_FOUND, SV_E_LAST_), "client codes fit their range");
_Static_assert(FITS(SV_LOG_E_NOT_FOUND, SV_LOG_E_LAST_), "logstore codes fit their range");
_Static_assert(FITS(SV_MAP_E_MALFORMED, SV_MAP_E_LAST_), "map codes fit their range");
_Static_assert(FITS(SV_CRYPTO_E_TOO_BIG, SV_CRYPTO_E_LAST_), "crypto codes fit their range");
_Static_assert(FITS(SV_SEG_E_NOT_FOUND, SV_SEG_E_LAST_), "segstore codes fit their range");
_Static_assert(FITS(SV_WIRE_E_TOO_BIG, SV_WIRE_E_LAST_), "wire codes fit their range");
_Static_assert(FITS(SV_RAFTWIRE_E_MALFORMED, SV_RAFTWIRE_E_LAST_), "raftwire codes fit");
_Static_assert(FITS(SV_MP_E_TRUNCATED, SV_MP_E_LAST_), "mp codes fit their range");
_Static_assert(FITS(SV_PROTO_E_MALFORMED, SV_PROTO_E_LAST_), "proto codes fit their range");
_Static_assert(FITS(SV_TLS_E_CONFIG, SV_TLS_E_LAST_), "tls codes fit their range");
_Static_assert(FITS(SV_RAFT_E_NOT_LEADER, SV_RAFT_E_LAST_), "raft codes fit their range");

/* ... and the ranges, in ascending order, end before the next begins. */
#define BEFORE(a, b) ((a) + SV_ERR_SPAN <= (b))
_Static_assert(BEFORE(SV_E_NOT_FOUND, SV_MAP_E_MALFORMED), "client, then map");
_Static_assert(BEFORE(SV_MAP_E_MALFORMED, SV_LOG_E_NOT_FOUND), "map, then logstore");
_Static_assert(BEFORE(SV_LOG_E_NOT_FOUND, SV_CRYPTO_E_TOO_BIG), "logstore, then crypto");
_Static_assert(BEFORE(SV_CRYPTO_E_TOO_BIG, SV_SEG_E_NOT_FOUND), "crypto, then segstore");
_Static_assert(BEFORE(SV_SEG_E_NOT_FOUND, SV_WIRE_E_TOO_BIG), "segstore, then wire");
_Static_assert(BEFORE(SV_WIRE_E_TOO_BIG, SV_RAFTWIRE_E_MALFORMED), "wire, then raftwire");
_Static_assert(BEFORE(SV_RAFTWIRE_E_MALFORMED, SV_MP_E_TRUNCATED), "raftwire, then mp");
_Static_assert(BEFORE(SV_MP_E_TRUNCATED, SV_PROTO_E_MALFORMED), "mp, then proto");
_Static_assert(BEFORE(SV_PROTO_E_MALFORMED, SV_TLS_E_CONFIG), "proto, then tls");
_Static_assert(BEFORE(SV_TLS_E_CONFIG, SV_RAFT_E_NOT_LEADER), "tls, then raft");
_Static_assert(SV_RAFT_E_NOT_LEADER + SV_ERR_SPAN <= SV_ERR_ERRNO_MIN, "raft, then errno");

/* The client library's codes are its ABI: these values never change (new ones are appended). */
_Static_assert(SV_E_NOT_FOUND == -3000 && SV_E_READ_ONLY == -2986 && SV_E_LAST_ == -2985,
               "client codes are stable");

static const char *client_range(int err)
{
    (void)err;
    return "a client library code (sv_client_strerror names it; node/ never returns one)";
}

/* In the order of the checks above: ascending by base. */
static const struct sv_err_range ranges[] = {
    {"client", SV_E_NOT_FOUND, SV_E_LAST_, NULL},
    {"map", SV_MAP_E_MALFORMED, SV_MAP_E_LAST_, sv_map_strerror},
    {"logstore", SV_LOG_E_NOT_FOUND, SV_LOG_E_LAST_, sv_logstore_strerror},
    {"crypto", SV_CRYPTO_E_TOO_BIG, SV_CRYPTO_E_LAST_, sv_crypto_strerror},
    {"segstore", SV_SEG_E_NOT_FOUND, SV_SEG_E_LAST_, sv_seg_strerror},
    {"wire", SV_WIRE_E_TOO_BIG, SV_WIRE_E_LAST_, sv_wire_strerror},
    {"raftwire", SV_RAFTWIRE_E_MALFORMED, SV_RAFTWIRE_E_LAST_, sv_raftwire_strerror},
    {"mp", SV_MP_E_TRUNCATED, SV_MP_E_LAST_, sv_mp_strerror},
    {"proto", SV_PROTO_E_MALFORMED, SV_PROTO_E_LAST_, sv_proto_strerror},
    {"tls", SV_TLS_E_CONFIG, SV_TLS_E_LAST_, sv_tls_strerror},
    {"raft", SV_RAFT_E_NOT_LEADER, SV_RAFT_E_LAST_, sv_raft_strerror},
};
enum { N_RANGES = sizeof ranges / sizeof ranges[0] };

const struct sv_err_range *sv_err_ranges(size_t *n)
{
    *n = N_RANGES;
    return ranges;
}

const struct sv_err_range *sv_err_range_of(int rc)
{
    for (size_t i = 0; i < N_RANGES; i++)
        if (rc >= ranges[i].base && rc < ranges[i].base + SV_ERR_SPAN)
            return &ranges[i];
    return NULL;
}

const char *sv_strerror(int rc)
{
    if (rc == 0)
        return "ok";
    if (rc < 0 && rc >= SV_ERR_ERRNO_MIN) {
        /* Not strerror(): for a number that is no errno it formats into a
         * buffer that its next call frees. */
        const char *s = strerrordesc_np(-rc);
        return s ? s : "unknown error";
    }
    const struct sv_err_range *r = sv_err_range_of(rc);
    if (!r || rc >= r->end)
        return "unknown error";
    return r->strerror ? r->strerror(rc) : client_range(rc);
}
