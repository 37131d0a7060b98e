/* errors-test: node/src/errors.c (sverrors) — no two modules' ranges overlap
 * (nor errno's), every code of every module falls in its own range and
 * sv_strerror names it with the module's own, non-generic string; errno,
 * 0 and codes of no module; the client library's public codes unchanged.
 * Usage: errors-test [NAME...] (no name: every test). Exit 1 on any failure. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "errors.h"
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

#define CHECK_STRERROR(rc) sv_strerror(rc)
#include "check.h"

/* What a string for an unknown code looks like, in any of the modules. */
static bool generic(const char *s)
{
    return s == NULL || s[0] == '\0' || strcmp(s, "unknown") == 0 ||
           strcmp(s, "unknown error") == 0 || strncmp(s, "Unknown error", 13) == 0;
}

static void test_ranges_disjoint(void)
{
    size_t n;
    const struct sv_err_range *r = sv_err_ranges(&n);
    CHECK(n == 11);
    CHECK(SV_ERR_ERRNO_MIN < -133); /* EHWPOISON, Linux's largest errno */
    for (size_t i = 0; i < n; i++) {
        /* A range holds its module's codes, and it has some. */
        CHECK(r[i].end > r[i].base && r[i].end <= r[i].base + SV_ERR_SPAN);
        /* Below errno's, and ascending without overlap. */
        CHECK(r[i].base + SV_ERR_SPAN <= SV_ERR_ERRNO_MIN);
        if (i > 0)
            CHECK(r[i - 1].base + SV_ERR_SPAN <= r[i].base);
        /* Pairwise too, not only neighbours (the table's order is not trusted). */
        for (size_t j = 0; j < i; j++) {
            bool apart =
                r[i].base + SV_ERR_SPAN <= r[j].base || r[j].base + SV_ERR_SPAN <= r[i].base;
            CHECK(apart);
            CHECK(strcmp(r[i].module, r[j].module) != 0);
        }
    }
}

/* The codes that once shared -2000 (and -3000) now differ and say so. */
static void test_old_collisions(void)
{
    CHECK((int)SV_SEG_E_NOT_FOUND != (int)SV_CRYPTO_E_TOO_BIG);
    CHECK((int)SV_SEG_E_NOT_FOUND != (int)SV_TLS_E_CONFIG);
    CHECK((int)SV_CRYPTO_E_TOO_BIG != (int)SV_TLS_E_CONFIG);
    CHECK((int)SV_LOG_E_NOT_FOUND != (int)SV_E_NOT_FOUND);
    CHECK(strcmp(sv_strerror(SV_SEG_E_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(sv_strerror(SV_CRYPTO_E_TOO_BIG), sv_crypto_strerror(SV_CRYPTO_E_TOO_BIG)) == 0);
    CHECK(strcmp(sv_strerror(SV_TLS_E_CONFIG), sv_tls_strerror(SV_TLS_E_CONFIG)) == 0);
    CHECK(strcmp(sv_strerror(SV_LOG_E_NOT_FOUND), "group not found") == 0);
    CHECK(strcmp(sv_strerror(SV_RAFT_E_NOT_LEADER), "not the leader") == 0);
    CHECK(strcmp(sv_err_range_of(SV_SEG_E_NOT_FOUND)->module, "segstore") == 0);
    CHECK(strcmp(sv_err_range_of(SV_CRYPTO_E_TOO_BIG)->module, "crypto") == 0);
    CHECK(strcmp(sv_err_range_of(SV_TLS_E_CONFIG)->module, "tls") == 0);
    CHECK(strcmp(sv_err_range_of(SV_LOG_E_NOT_FOUND)->module, "logstore") == 0);
}

/* Every module, every code: in its range, named by its module, not generic,
 * and no two codes of a module with one string. */
static void test_every_code_named(void)
{
    static const struct {
        const char *module;
        int first, last;
        const char *(*own)(int);
    } mods[] = {
        {"raft", SV_RAFT_E_NOT_LEADER, SV_RAFT_E_LAST_, sv_raft_strerror},
        {"tls", SV_TLS_E_CONFIG, SV_TLS_E_LAST_, sv_tls_strerror},
        {"proto", SV_PROTO_E_MALFORMED, SV_PROTO_E_LAST_, sv_proto_strerror},
        {"mp", SV_MP_E_TRUNCATED, SV_MP_E_LAST_, sv_mp_strerror},
        {"raftwire", SV_RAFTWIRE_E_MALFORMED, SV_RAFTWIRE_E_LAST_, sv_raftwire_strerror},
        {"wire", SV_WIRE_E_TOO_BIG, SV_WIRE_E_LAST_, sv_wire_strerror},
        {"segstore", SV_SEG_E_NOT_FOUND, SV_SEG_E_LAST_, sv_seg_strerror},
        {"crypto", SV_CRYPTO_E_TOO_BIG, SV_CRYPTO_E_LAST_, sv_crypto_strerror},
        {"logstore", SV_LOG_E_NOT_FOUND, SV_LOG_E_LAST_, sv_logstore_strerror},
        {"map", SV_MAP_E_MALFORMED, SV_MAP_E_LAST_, sv_map_strerror},
    };
    size_t n;
    sv_err_ranges(&n);
    CHECK(n == sizeof mods / sizeof mods[0] + 1); /* + the client library, below */
    for (size_t m = 0; m < sizeof mods / sizeof mods[0]; m++) {
        int codes = 0;
        for (int code = mods[m].first; code < mods[m].last; code++, codes++) {
            const struct sv_err_range *r = sv_err_range_of(code);
            CHECK(r != NULL && strcmp(r->module, mods[m].module) == 0);
            CHECK(r != NULL && r->base == mods[m].first && r->end == mods[m].last);
            const char *s = sv_strerror(code);
            CHECK(!generic(s));
            CHECK(strcmp(s, mods[m].own(code)) == 0);
            CHECK(strcmp(s, strerror(-code)) != 0);
            for (int other = mods[m].first; other < code; other++)
                CHECK(strcmp(s, sv_strerror(other)) != 0);
        }
        CHECK(codes > 0);
    }
}

/* Public API and ABI: the values client.h has always had. */
static void test_client_codes(void)
{
    CHECK(SV_OK == 0);
    CHECK(SV_E_NOT_FOUND == -3000);
    CHECK(SV_E_VERSION_CONFLICT == -2999);
    CHECK(SV_E_UNAVAILABLE == -2998);
    CHECK(SV_E_DENIED == -2997);
    CHECK(SV_E_BAD_ARGUMENT == -2996);
    CHECK(SV_E_TOO_BIG == -2995);
    CHECK(SV_E_NO_SPACE == -2994);
    CHECK(SV_E_CORRUPT == -2993);
    CHECK(SV_E_TIMEOUT == -2992);
    CHECK(SV_E_TLS == -2991);
    CHECK(SV_E_PROTOCOL == -2990);
    CHECK(SV_E_IO == -2989);
    CHECK(SV_E_INTERNAL == -2988);
    CHECK(SV_E_NOMEM == -2987);
    CHECK(SV_E_READ_ONLY == -2986);
    CHECK(SV_E_LAST_ == -2985);
    for (int code = SV_E_NOT_FOUND; code < SV_E_LAST_; code++) {
        const struct sv_err_range *r = sv_err_range_of(code);
        CHECK(r != NULL && strcmp(r->module, "client") == 0 && r->strerror == NULL);
        CHECK(!generic(sv_client_strerror(code)));
        CHECK(!generic(sv_strerror(code)) && strstr(sv_strerror(code), "client") != NULL);
    }
}

static void test_errno(void)
{
    CHECK(strcmp(sv_strerror(0), "ok") == 0);
    CHECK(sv_err_range_of(0) == NULL);
    int named = 0;
    for (int e = 1; e <= 133; e++) {
        CHECK(sv_err_range_of(-e) == NULL);
        /* strerror's text of a number no errno has lives until its next call. */
        char want[128];
        snprintf(want, sizeof want, "%s", strerror(e));
        bool known = strncmp(want, "Unknown error", 13) != 0;
        const char *s = sv_strerror(-e);
        CHECK(strcmp(s, known ? want : "unknown error") == 0);
        named += known;
    }
    CHECK(named > 120); /* Linux leaves two numbers unused below 134 */
    CHECK(strcmp(sv_strerror(-ENOSPC), "No space left on device") == 0);
}

static void test_unknown(void)
{
    CHECK(strcmp(sv_strerror(1), "unknown error") == 0);
    CHECK(strcmp(sv_strerror(INT_MAX), "unknown error") == 0);
    CHECK(strcmp(sv_strerror(INT_MIN), "unknown error") == 0);
    CHECK(strcmp(sv_strerror(SV_ERR_ERRNO_MIN - 1), "unknown error") == 0);
    CHECK(strcmp(sv_strerror(-4095), "unknown error") == 0); /* UV_EOF: not a node code */
    size_t n;
    const struct sv_err_range *r = sv_err_ranges(&n);
    for (size_t i = 0; i < n; i++) {
        /* Unused codes inside a range, and the codes just below it. */
        for (int code = r[i].end; code < r[i].base + SV_ERR_SPAN; code++)
            CHECK(strcmp(sv_strerror(code), "unknown error") == 0);
        if (sv_err_range_of(r[i].base - 1) == NULL)
            CHECK(strcmp(sv_strerror(r[i].base - 1), "unknown error") == 0);
    }
}

/* Runner. */

static const struct sv_test tests[] = {
    {"ranges_disjoint", test_ranges_disjoint},
    {"old_collisions", test_old_collisions},
    {"every_code_named", test_every_code_named},
    {"client_codes", test_client_codes},
    {"errno", test_errno},
    {"unknown", test_unknown},
};
const struct sv_test_suite sv_test_suite = {
    .name = "errors-test",
    SV_TEST_TABLE(tests),
    .timeout_s = 120,
};
