/* Test PKI: CAs and leaf certificates written as PEM files with the OpenSSL
 * API, for tests that need TLS peers (transport, TLS). Keys are EC P-256.
 *
 * Files go into one directory: a CA named "ca" is ca.pem (certificate) and
 * ca.key; a leaf written as "node-1" is node-1.pem and node-1.key. Leaves
 * carry the given CN, subjectAltName DNS:<cn> and IP:127.0.0.1, and are
 * usable for both TLS server and client authentication.
 *
 * Every function returns 0, or -1 with a reason in errmsg (OpenSSL's error
 * queue is cleared). Not thread-safe (call from one thread at set-up). */
#ifndef SV_TESTS_TESTCERTS_H
#define SV_TESTS_TESTCERTS_H

#include <stddef.h>

enum {
    SV_TESTCERTS_PATH_MAX = 4096,
    SV_TESTCERTS_DAY_S = 24 * 3600,
};

/* Make a fresh directory "<$TMPDIR or /tmp>/<prefix>.<6 random characters>"
 * (mkdtemp) and write its path into dir[0..cap). */
int sv_testcerts_mkdtemp(const char *prefix, char *dir, size_t cap, char *errmsg, size_t errlen);

/* Remove dir and the files in it (not recursive). Returns 0 or -1. */
int sv_testcerts_rmdir(const char *dir);

/* Write a self-signed CA <dir>/<name>.pem and <name>.key with subject CN cn,
 * valid from a day ago for a year. */
int sv_testcerts_ca(const char *dir, const char *name, const char *cn, char *errmsg, size_t errlen);

/* Write a leaf <dir>/<file>.pem and <file>.key (file NULL: cn) with subject
 * CN cn, signed by the CA <dir>/<ca>.pem/.key made by sv_testcerts_ca, valid
 * from now + from_s to now + to_s seconds (e.g. -DAY, 30 * DAY). */
int sv_testcerts_leaf(const char *dir, const char *ca, const char *cn, const char *file,
                      long from_s, long to_s, char *errmsg, size_t errlen);

/* Path of <dir>/<name><suffix> into out[0..cap); suffix e.g. ".pem". Returns
 * out, or aborts when it does not fit (a test set-up error). */
const char *sv_testcerts_path(const char *dir, const char *name, const char *suffix, char *out,
                              size_t cap);

#endif
