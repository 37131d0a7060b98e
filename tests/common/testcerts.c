/* Test PKI: CAs and leaf certificates as PEM files, made with the OpenSSL API. */
#define _GNU_SOURCE
#include "testcerts.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int fail(char *errmsg, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *errmsg, size_t errlen, const char *fmt, ...)
{
    if (errmsg != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(errmsg, errlen, fmt, ap);
        va_end(ap);
        unsigned long e = ERR_peek_last_error();
        if (e != 0 && n >= 0 && (size_t)n < errlen) {
            char why[200];
            ERR_error_string_n(e, why, sizeof(why));
            snprintf(errmsg + n, errlen - (size_t)n, ": %s", why);
        }
    }
    ERR_clear_error();
    return -1;
}

const char *sv_testcerts_path(const char *dir, const char *name, const char *suffix, char *out,
                              size_t cap)
{
    int n = snprintf(out, cap, "%s/%s%s", dir, name, suffix);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "testcerts: path %s/%s%s too long\n", dir, name, suffix);
        abort();
    }
    return out;
}

int sv_testcerts_mkdtemp(const char *prefix, char *dir, size_t cap, char *errmsg, size_t errlen)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    enum { RANDOM_CHARS = 6 }; /* mkdtemp replaces this many trailing 'X' */
    int n = snprintf(dir, cap, "%s/%s.", base, prefix);
    if (n < 0 || (size_t)n + RANDOM_CHARS >= cap) {
        return fail(errmsg, errlen, "temporary directory name too long");
    }
    memset(dir + n, 'X', RANDOM_CHARS);
    dir[n + RANDOM_CHARS] = '\0';
    if (mkdtemp(dir) == NULL) {
        return fail(errmsg, errlen, "mkdtemp %s: %s", dir, strerror(errno));
    }
    return 0;
}

int sv_testcerts_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char p[SV_TESTCERTS_PATH_MAX];
        int n = snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof(p) || unlink(p) != 0) {
            rc = -1;
        }
    }
    closedir(d);
    return rmdir(dir) == 0 ? rc : -1;
}

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    bool ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for key with subject CN cn, signed by issuer/issuer_key, or
 * self-signed when issuer is NULL. NULL on failure. */
static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn, bool ca,
                       long from_s, long to_s)
{
    static long serial = 1;
    X509 *c = X509_new();
    if (c == NULL) {
        return NULL;
    }
    X509_NAME *name = X509_get_subject_name(c);
    bool ok =
        X509_set_version(c, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(c), serial++) == 1 &&
        X509_gmtime_adj(X509_getm_notBefore(c), from_s) != NULL &&
        X509_gmtime_adj(X509_getm_notAfter(c), to_s) != NULL && X509_set_pubkey(c, key) == 1 &&
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   (const unsigned char *)"ShardVault test", -1, -1, 0) == 1 &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) == 1 &&
        X509_set_issuer_name(c, issuer != NULL ? X509_get_subject_name(issuer) : name) == 1;
    X509 *iss = issuer != NULL ? issuer : c;
    if (ok && ca) {
        ok = add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(c, iss, NID_subject_key_identifier, "hash");
    } else if (ok) {
        char san[512];
        snprintf(san, sizeof(san), "DNS:%s,IP:127.0.0.1", cn);
        ok = add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(c, iss, NID_key_usage, "critical,digitalSignature") &&
             add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth") &&
             add_ext(c, iss, NID_subject_alt_name, san) &&
             add_ext(c, iss, NID_subject_key_identifier, "hash") &&
             add_ext(c, iss, NID_authority_key_identifier, "keyid");
    }
    ok = ok && X509_sign(c, issuer_key != NULL ? issuer_key : key, EVP_sha256()) != 0;
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static bool write_pair(const char *dir, const char *name, X509 *cert, EVP_PKEY *key)
{
    char p[SV_TESTCERTS_PATH_MAX];
    FILE *fp = fopen(sv_testcerts_path(dir, name, ".pem", p, sizeof(p)), "w");
    if (fp == NULL) {
        return false;
    }
    bool ok = PEM_write_X509(fp, cert) == 1;
    ok = fclose(fp) == 0 && ok;
    fp = fopen(sv_testcerts_path(dir, name, ".key", p, sizeof(p)), "w");
    if (fp == NULL) {
        return false;
    }
    ok = PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1 && ok;
    ok = fclose(fp) == 0 && ok;
    return ok;
}

int sv_testcerts_ca(const char *dir, const char *name, const char *cn, char *errmsg, size_t errlen)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL) {
        return fail(errmsg, errlen, "CA %s: key", name);
    }
    X509 *c = make_cert(key, NULL, NULL, cn, true, -SV_TESTCERTS_DAY_S, 365L * SV_TESTCERTS_DAY_S);
    int rc = 0;
    if (c == NULL) {
        rc = fail(errmsg, errlen, "CA %s: certificate", name);
    } else if (!write_pair(dir, name, c, key)) {
        rc = fail(errmsg, errlen, "CA %s: writing files in %s", name, dir);
    }
    X509_free(c);
    EVP_PKEY_free(key);
    return rc;
}

int sv_testcerts_leaf(const char *dir, const char *ca, const char *cn, const char *file,
                      long from_s, long to_s, char *errmsg, size_t errlen)
{
    char p[SV_TESTCERTS_PATH_MAX];
    X509 *ca_cert = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    X509 *c = NULL;
    int rc = 0;
    FILE *fp = fopen(sv_testcerts_path(dir, ca, ".pem", p, sizeof(p)), "r");
    if (fp != NULL) {
        ca_cert = PEM_read_X509(fp, NULL, NULL, NULL);
        fclose(fp);
    }
    fp = fopen(sv_testcerts_path(dir, ca, ".key", p, sizeof(p)), "r");
    if (fp != NULL) {
        ca_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
        fclose(fp);
    }
    if (ca_cert == NULL || ca_key == NULL) {
        rc = fail(errmsg, errlen, "leaf %s: reading CA %s in %s", cn, ca, dir);
        goto out;
    }
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL) {
        rc = fail(errmsg, errlen, "leaf %s: key", cn);
        goto out;
    }
    c = make_cert(key, ca_cert, ca_key, cn, false, from_s, to_s);
    if (c == NULL) {
        rc = fail(errmsg, errlen, "leaf %s: certificate", cn);
        goto out;
    }
    if (!write_pair(dir, file != NULL ? file : cn, c, key)) {
        rc = fail(errmsg, errlen, "leaf %s: writing files in %s", cn, dir);
    }
out:
    X509_free(c);
    EVP_PKEY_free(key);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    return rc;
}
