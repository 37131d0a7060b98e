/* crypto-test: node/src/crypto (svcrypto) — sealing round trips and limits, tampering,
 * associated-data binding, nonce uniqueness, the master key file, DEK wrapping.
 * Usage: crypto-test [NAME...] (no name: every test). Exit 1 on any failure. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto.h"

#define CHECK_STRERROR(rc) sv_crypto_strerror(rc)
#include "check.h"

/* Checks. */

/* Fixtures. */

static char tmpdir[PATH_MAX];

/* A path inside the test's temporary directory (static buffer, one at a time per slot). */
static const char *tmp_path(int slot, const char *name)
{
    static char bufs[4][2 * PATH_MAX];
    int n = snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", tmpdir, name);
    if (n < 0 || (size_t)n >= PATH_MAX) {
        fprintf(stderr, "crypto-test: path too long under %s\n", tmpdir);
        exit(1);
    }
    return bufs[slot];
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char p[PATH_MAX * 2];
        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
        if (unlink(p) != 0) {
            rmdir(p); /* the test makes directories one level deep only */
        }
    }
    closedir(d);
    if (rmdir(tmpdir) != 0) {
        fprintf(stderr, "crypto-test: could not remove %s: %s\n", tmpdir, strerror(errno));
    }
}

/* Deterministic filler (xorshift64*), so a failure reproduces. */
static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        buf[i] = (uint8_t)((x * 0x2545F4914F6CDD1Du) >> 56);
    }
}

static bool all_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0) {
            return false;
        }
    }
    return true;
}

static bool contains(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t len)
{
    return memmem(hay, hay_len, needle, len) != NULL;
}

static void make_ad(struct sv_crypto_chunk_ad *ad)
{
    memset(ad, 0, sizeof(*ad));
    ad->tenant_id = 42;
    for (int i = 0; i < SV_CRYPTO_OBJECT_ID_LEN; i++) {
        ad->object_id[i] = (uint8_t)(0x10 + i);
    }
    ad->chunk_index = 3;
    ad->version = 7;
}

static struct sv_crypto_key *gen_key(uint32_t id)
{
    struct sv_crypto_key *k = NULL;
    int rc = sv_crypto_key_generate(id, &k);
    if (rc != 0 || k == NULL) {
        fprintf(stderr, "sv_crypto_key_generate: %s\n", sv_crypto_strerror(rc));
        exit(1);
    }
    return k;
}

static struct sv_crypto_key *key_of(uint32_t id, uint64_t seed)
{
    uint8_t bytes[SV_CRYPTO_KEY_LEN];
    struct sv_crypto_key *k = NULL;
    fill(bytes, sizeof(bytes), seed);
    int rc = sv_crypto_key_from_bytes(id, bytes, &k);
    if (rc != 0 || k == NULL) {
        fprintf(stderr, "sv_crypto_key_from_bytes: %s\n", sv_crypto_strerror(rc));
        exit(1);
    }
    return k;
}

static void *xmalloc(size_t len)
{
    void *p = malloc(len > 0 ? len : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* Seal plain under key/ad into a fresh buffer; *len gets its length. */
static uint8_t *seal_new(const struct sv_crypto_key *key, const struct sv_crypto_chunk_ad *ad,
                         const uint8_t *plain, size_t plain_len, size_t *len)
{
    size_t cap = sv_crypto_sealed_len(plain_len);
    uint8_t *out = xmalloc(cap);
    *len = 0;
    CHECK_RC(sv_crypto_seal(key, ad, plain, plain_len, out, cap, len), 0);
    CHECK(*len == cap);
    return out;
}

/* Open into a buffer pre-filled with 0xAA; checks that a failure leaves it
 * all zero and *out_len 0. Returns the error code. */
static int open_checked(const struct sv_crypto_key *key, const struct sv_crypto_chunk_ad *ad,
                        const uint8_t *sealed, size_t sealed_len, uint8_t *out, size_t cap)
{
    size_t out_len = 12345;
    memset(out, 0xAA, cap);
    int rc = sv_crypto_open(key, ad, sealed, sealed_len, out, cap, &out_len);
    if (rc != 0) {
        CHECK(out_len == 0);
        CHECK(all_zero(out, cap));
    }
    return rc;
}

/* Tests. */

static void test_ad_encoding(void)
{
    struct sv_crypto_chunk_ad ad;
    memset(&ad, 0, sizeof(ad));
    ad.tenant_id = 0x0102030405060708u;
    for (int i = 0; i < SV_CRYPTO_OBJECT_ID_LEN; i++) {
        ad.object_id[i] = (uint8_t)(0xA0 + i);
    }
    ad.chunk_index = 0x1122334455667788u;
    ad.version = 0x99AABBCCDDEEFF00u;
    static const uint8_t want[SV_CRYPTO_CHUNK_AD_LEN] = {
        's',  'h',  'a',  'r',  'd',  'v',  'a',  'u',  'l',  't',  '/',  'c',  'h',  'u',  'n',
        'k',  0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4,
        0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF, 0x88, 0x77, 0x66, 0x55,
        0x44, 0x33, 0x22, 0x11, 0x00, 0xFF, 0xEE, 0xDD, 0xCC, 0xBB, 0xAA, 0x99};
    uint8_t got[SV_CRYPTO_CHUNK_AD_LEN + 1];
    got[SV_CRYPTO_CHUNK_AD_LEN] = 0x5A; /* guard: nothing written past the end */
    sv_crypto_chunk_ad_encode(&ad, got);
    CHECK(memcmp(got, want, SV_CRYPTO_CHUNK_AD_LEN) == 0);
    CHECK(got[SV_CRYPTO_CHUNK_AD_LEN] == 0x5A);
}

static void test_roundtrip(void)
{
    static const size_t sizes[] = {0, 1, 17, 4096, SV_CRYPTO_CHUNK_MAX};
    struct sv_crypto_key *key = gen_key(0x01020304);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        uint8_t *plain = xmalloc(n);
        uint8_t *back = xmalloc(n);
        fill(plain, n, n);
        size_t sealed_len = 0;
        uint8_t *sealed = seal_new(key, &ad, plain, n, &sealed_len);
        CHECK(sealed_len == n + SV_CRYPTO_SEAL_OVERHEAD);
        CHECK(sealed[0] == SV_CRYPTO_SEAL_VERSION);
        CHECK(sealed[1] == 0x04 && sealed[2] == 0x03 && sealed[3] == 0x02 && sealed[4] == 0x01);
        uint32_t id = 0;
        CHECK_RC(sv_crypto_sealed_key_id(sealed, sealed_len, &id), 0);
        CHECK(id == 0x01020304);
        size_t out_len = 999;
        CHECK_RC(sv_crypto_open(key, &ad, sealed, sealed_len, n > 0 ? back : NULL, n, &out_len), 0);
        CHECK(out_len == n);
        CHECK(n == 0 || memcmp(plain, back, n) == 0);
        free(sealed);
        free(back);
        free(plain);
    }
    /* NULL plaintext with length 0 is allowed. */
    uint8_t sealed0[SV_CRYPTO_SEAL_OVERHEAD];
    size_t len0 = 0;
    CHECK_RC(sv_crypto_seal(key, &ad, NULL, 0, sealed0, sizeof(sealed0), &len0), 0);
    CHECK(len0 == SV_CRYPTO_SEAL_OVERHEAD);
    CHECK_RC(sv_crypto_open(key, &ad, sealed0, len0, NULL, 0, &len0), 0);
    CHECK(len0 == 0);
    sv_crypto_key_free(key);
}

static void test_limits(void)
{
    struct sv_crypto_key *key = gen_key(1);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    size_t big = SV_CRYPTO_CHUNK_MAX + 1;
    uint8_t *plain = xmalloc(big);
    size_t cap = sv_crypto_sealed_len(big);
    uint8_t *out = xmalloc(cap);
    fill(plain, big, 1);

    /* Over the chunk limit: refused, output zeroed. */
    size_t out_len = 77;
    memset(out, 0xAA, cap);
    CHECK_RC(sv_crypto_seal(key, &ad, plain, big, out, cap, &out_len), SV_CRYPTO_E_TOO_BIG);
    CHECK(out_len == 0);
    CHECK(all_zero(out, cap));
    CHECK(sv_crypto_key_seals(key) == 0); /* a refused seal spends no nonce */

    /* Exactly at the limit: accepted. */
    CHECK_RC(sv_crypto_seal(key, &ad, plain, SV_CRYPTO_CHUNK_MAX, out, cap, &out_len), 0);
    CHECK(out_len == SV_CRYPTO_SEALED_MAX);

    /* Output one byte short. */
    memset(out, 0xAA, cap);
    CHECK_RC(sv_crypto_seal(key, &ad, plain, 100, out, sv_crypto_sealed_len(100) - 1, &out_len),
             SV_CRYPTO_E_BUFFER);
    CHECK(out_len == 0);
    CHECK(all_zero(out, sv_crypto_sealed_len(100) - 1));

    /* Sealed input too long (a valid header followed by too many bytes). */
    size_t sealed_len = 0;
    uint8_t *sealed = seal_new(key, &ad, plain, 100, &sealed_len);
    memcpy(out, sealed, sealed_len);
    uint8_t *back = xmalloc(big);
    CHECK_RC(open_checked(key, &ad, out, SV_CRYPTO_SEALED_MAX + 1, back, big), SV_CRYPTO_E_FORMAT);
    /* Too short for a header and a tag. */
    for (size_t n = 0; n < SV_CRYPTO_SEAL_OVERHEAD; n++) {
        CHECK_RC(open_checked(key, &ad, sealed, n, back, 200), SV_CRYPTO_E_FORMAT);
    }
    /* Output buffer one byte short. */
    CHECK_RC(open_checked(key, &ad, sealed, sealed_len, back, 99), SV_CRYPTO_E_BUFFER);
    CHECK_RC(open_checked(key, &ad, sealed, sealed_len, back, 100), 0);
    CHECK(memcmp(back, plain, 100) == 0);

    free(back);
    free(sealed);
    free(out);
    free(plain);
    sv_crypto_key_free(key);
}

/* Every single-bit flip of a sealed chunk, and every truncation, fails. */
static void test_tamper(void)
{
    struct sv_crypto_key *key = key_of(7, 100);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    enum { N = 1000 };
    uint8_t plain[N];
    uint8_t back[N];
    fill(plain, N, 2);
    size_t sealed_len = 0;
    uint8_t *sealed = seal_new(key, &ad, plain, N, &sealed_len);
    uint8_t *copy = xmalloc(sealed_len + 1);

    CHECK_RC(open_checked(key, &ad, sealed, sealed_len, back, N), 0); /* the control */
    long flips = 0;
    for (size_t i = 0; i < sealed_len; i++) {
        for (int b = 0; b < 8; b++) {
            memcpy(copy, sealed, sealed_len);
            copy[i] ^= (uint8_t)(1u << b);
            int want = i == 0 ? SV_CRYPTO_E_VERSION : i < 5 ? SV_CRYPTO_E_KEY_ID : SV_CRYPTO_E_AUTH;
            CHECK_RC(open_checked(key, &ad, copy, sealed_len, back, N), want);
            flips++;
        }
    }
    CHECK(flips == (long)sealed_len * 8);
    for (size_t n = 0; n < sealed_len; n++) {
        CHECK(open_checked(key, &ad, sealed, n, back, N) != 0);
    }
    /* One byte appended: the tag is then read from the wrong place. */
    uint8_t back_long[N + 1];
    memcpy(copy, sealed, sealed_len);
    copy[sealed_len] = 0;
    CHECK_RC(open_checked(key, &ad, copy, sealed_len + 1, back_long, sizeof(back_long)),
             SV_CRYPTO_E_AUTH);

    /* The key id is authenticated: relabelling the chunk for a key with the
     * same bytes and the new id still fails. */
    struct sv_crypto_key *relabelled = key_of(6, 100);
    memcpy(copy, sealed, sealed_len);
    copy[1] = 6;
    CHECK_RC(open_checked(relabelled, &ad, copy, sealed_len, back, N), SV_CRYPTO_E_AUTH);
    CHECK_RC(open_checked(relabelled, &ad, sealed, sealed_len, back, N), SV_CRYPTO_E_KEY_ID);
    sv_crypto_key_free(relabelled);

    /* A 1 MiB chunk: flips in the first, middle and last ciphertext bytes and
     * in the tag; all of the 1 MiB output is zeroed on failure. */
    size_t n_big = SV_CRYPTO_CHUNK_MAX;
    uint8_t *big = xmalloc(n_big);
    uint8_t *big_back = xmalloc(n_big);
    fill(big, n_big, 3);
    size_t big_len = 0;
    uint8_t *big_sealed = seal_new(key, &ad, big, n_big, &big_len);
    const size_t at[] = {SV_CRYPTO_SEAL_HEADER_LEN, SV_CRYPTO_SEAL_HEADER_LEN + n_big / 2,
                         SV_CRYPTO_SEAL_HEADER_LEN + n_big - 1, big_len - 1};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        big_sealed[at[k]] ^= 0x80;
        CHECK_RC(open_checked(key, &ad, big_sealed, big_len, big_back, n_big), SV_CRYPTO_E_AUTH);
        big_sealed[at[k]] ^= 0x80;
    }
    CHECK_RC(open_checked(key, &ad, big_sealed, big_len, big_back, n_big), 0);
    CHECK(memcmp(big, big_back, n_big) == 0);

    free(big_sealed);
    free(big_back);
    free(big);
    free(copy);
    free(sealed);
    sv_crypto_key_free(key);
}

/* A chunk opens only under the tenant, object, index and version it was sealed for. */
static void test_ad_binding(void)
{
    struct sv_crypto_key *key = gen_key(9);
    struct sv_crypto_chunk_ad ad, other;
    make_ad(&ad);
    enum { N = 256 };
    uint8_t plain[N];
    uint8_t back[N];
    fill(plain, N, 4);
    size_t len = 0;
    uint8_t *sealed = seal_new(key, &ad, plain, N, &len);

    CHECK_RC(open_checked(key, &ad, sealed, len, back, N), 0);
    CHECK(memcmp(back, plain, N) == 0);

    other = ad;
    other.tenant_id = ad.tenant_id + 1;
    CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    other = ad;
    other.tenant_id = ad.tenant_id | (UINT64_C(1) << 63); /* the high byte is encoded too */
    CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    for (int i = 0; i < SV_CRYPTO_OBJECT_ID_LEN; i++) {
        other = ad;
        other.object_id[i] ^= 1;
        CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    }
    other = ad;
    other.chunk_index = ad.chunk_index + 1;
    CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    other = ad;
    other.chunk_index = ad.chunk_index | (UINT64_C(1) << 40);
    CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    other = ad;
    other.version = ad.version + 1; /* replayed as a newer version */
    CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    other = ad;
    other.version = ad.version - 1;
    CHECK_RC(open_checked(key, &other, sealed, len, back, N), SV_CRYPTO_E_AUTH);

    /* Two chunks of one object swapped: neither opens at the other's index. */
    struct sv_crypto_chunk_ad ad2 = ad;
    ad2.chunk_index = ad.chunk_index + 1;
    size_t len2 = 0;
    uint8_t *sealed2 = seal_new(key, &ad2, plain, N, &len2);
    CHECK_RC(open_checked(key, &ad2, sealed, len, back, N), SV_CRYPTO_E_AUTH);
    CHECK_RC(open_checked(key, &ad, sealed2, len2, back, N), SV_CRYPTO_E_AUTH);
    CHECK_RC(open_checked(key, &ad2, sealed2, len2, back, N), 0);

    free(sealed2);
    free(sealed);
    sv_crypto_key_free(key);
}

static void test_wrong_key(void)
{
    struct sv_crypto_key *key = gen_key(11);
    struct sv_crypto_key *same_id = gen_key(11);
    struct sv_crypto_key *other_id = gen_key(12);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    uint8_t plain[64], back[64];
    fill(plain, sizeof(plain), 5);
    size_t len = 0;
    uint8_t *sealed = seal_new(key, &ad, plain, sizeof(plain), &len);
    CHECK_RC(open_checked(same_id, &ad, sealed, len, back, sizeof(back)), SV_CRYPTO_E_AUTH);
    CHECK_RC(open_checked(other_id, &ad, sealed, len, back, sizeof(back)), SV_CRYPTO_E_KEY_ID);
    CHECK_RC(open_checked(key, &ad, sealed, len, back, sizeof(back)), 0);
    CHECK(memcmp(plain, back, sizeof(plain)) == 0);
    free(sealed);
    sv_crypto_key_free(other_id);
    sv_crypto_key_free(same_id);
    sv_crypto_key_free(key);
}

static int cmp_nonce(const void *a, const void *b)
{
    return memcmp(a, b, SV_CRYPTO_NONCE_LEN);
}

/* Number of equal adjacent nonces after sorting nonces[0..n). */
static size_t count_duplicate_nonces(uint8_t *nonces, size_t n)
{
    qsort(nonces, n, SV_CRYPTO_NONCE_LEN, cmp_nonce);
    size_t dups = 0;
    for (size_t i = 1; i < n; i++) {
        if (memcmp(nonces + (i - 1) * SV_CRYPTO_NONCE_LEN, nonces + i * SV_CRYPTO_NONCE_LEN,
                   SV_CRYPTO_NONCE_LEN) == 0) {
            dups++;
        }
    }
    return dups;
}

static void test_nonces_distinct(void)
{
    enum { SEALS = 10000, N = 64 };
    struct sv_crypto_key *key = gen_key(13);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    uint8_t plain[N];
    fill(plain, N, 6);
    uint8_t sealed[N + SV_CRYPTO_SEAL_OVERHEAD];
    uint8_t first_ct[N];
    uint8_t *nonces = xmalloc((size_t)SEALS * SV_CRYPTO_NONCE_LEN);
    size_t same_ct = 0;
    for (int i = 0; i < SEALS; i++) {
        size_t len = 0;
        CHECK_RC(sv_crypto_seal(key, &ad, plain, N, sealed, sizeof(sealed), &len), 0);
        memcpy(nonces + (size_t)i * SV_CRYPTO_NONCE_LEN, sealed + 5, SV_CRYPTO_NONCE_LEN);
        if (i == 0) {
            memcpy(first_ct, sealed + SV_CRYPTO_SEAL_HEADER_LEN, N);
        } else if (memcmp(first_ct, sealed + SV_CRYPTO_SEAL_HEADER_LEN, N) == 0) {
            same_ct++;
        }
    }
    CHECK(sv_crypto_key_seals(key) == SEALS);
    CHECK(same_ct == 0); /* the same plaintext never gives the same ciphertext */

    /* The duplicate counter itself finds a planted duplicate. */
    uint8_t *planted = xmalloc((size_t)SEALS * SV_CRYPTO_NONCE_LEN);
    memcpy(planted, nonces, (size_t)SEALS * SV_CRYPTO_NONCE_LEN);
    memcpy(planted + SV_CRYPTO_NONCE_LEN * 500, planted, SV_CRYPTO_NONCE_LEN);
    CHECK(count_duplicate_nonces(planted, SEALS) == 1);
    free(planted);

    CHECK(count_duplicate_nonces(nonces, SEALS) == 0);
    free(nonces);
    sv_crypto_key_free(key);
}

/* A recognisable 64-byte pattern filling a 1 MiB chunk appears nowhere in the
 * sealed output, nor does any 16-byte window of it. */
static void test_no_plaintext_in_output(void)
{
    static const char pattern[] =
        "ShardVault-plaintext-marker:0123456789-abcdefghijklmnopqrstuvwxy";
    _Static_assert(sizeof(pattern) == 65, "the pattern is 64 bytes");
    const uint8_t *pat = (const uint8_t *)pattern;
    struct sv_crypto_key *key = gen_key(14);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    size_t n = SV_CRYPTO_CHUNK_MAX;
    uint8_t *plain = xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        plain[i] = pat[i % 64];
    }
    size_t len = 0;
    uint8_t *sealed = seal_new(key, &ad, plain, n, &len);

    CHECK(contains(plain, n, pat, 64)); /* the search works */
    CHECK(!contains(sealed, len, pat, 64));
    size_t windows_found = 0;
    for (int off = 0; off < 64; off++) {
        uint8_t win[16];
        for (int j = 0; j < 16; j++) {
            win[j] = pat[(off + j) % 64];
        }
        windows_found += contains(sealed, len, win, sizeof(win));
    }
    CHECK(windows_found == 0);
    free(sealed);
    free(plain);
    sv_crypto_key_free(key);
}

/* The documented layout, checked with raw EVP calls: nonce at 5, ciphertext
 * at 17, tag last, associated data = encoded ad + header bytes 0..4. */
static int raw_open(const uint8_t *key_bytes, const uint8_t *sealed, size_t len, const uint8_t *aad,
                    size_t aad_len, uint8_t *out)
{
    int n = 0, ok = 0;
    size_t ct_len = len - SV_CRYPTO_SEAL_OVERHEAD;
    uint8_t tag[SV_CRYPTO_TAG_LEN];
    memcpy(tag, sealed + len - SV_CRYPTO_TAG_LEN, sizeof(tag));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key_bytes, sealed + 5) &&
        EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) &&
        EVP_DecryptUpdate(ctx, out, &n, sealed + 17, (int)ct_len) &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SV_CRYPTO_TAG_LEN, tag) &&
        EVP_DecryptFinal_ex(ctx, out + ct_len, &n) == 1) {
        ok = 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static void test_layout(void)
{
    uint8_t key_bytes[SV_CRYPTO_KEY_LEN];
    fill(key_bytes, sizeof(key_bytes), 200);
    struct sv_crypto_key *key = NULL;
    CHECK_RC(sv_crypto_key_from_bytes(0xCAFE, key_bytes, &key), 0);
    if (key == NULL) {
        return;
    }
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    enum { N = 100 };
    uint8_t plain[N], back[N + SV_CRYPTO_TAG_LEN];
    fill(plain, N, 7);
    size_t len = 0;
    uint8_t *sealed = seal_new(key, &ad, plain, N, &len);
    uint8_t aad[SV_CRYPTO_CHUNK_AD_LEN + 5];
    sv_crypto_chunk_ad_encode(&ad, aad);
    memcpy(aad + SV_CRYPTO_CHUNK_AD_LEN, sealed, 5);
    CHECK(raw_open(key_bytes, sealed, len, aad, sizeof(aad), back) == 1);
    CHECK(memcmp(back, plain, N) == 0);
    /* Without the header bytes the tag does not verify: they are authenticated. */
    CHECK(raw_open(key_bytes, sealed, len, aad, SV_CRYPTO_CHUNK_AD_LEN, back) == 0);
    free(sealed);
    sv_crypto_key_free(key);
}

static void test_seal_limit(void)
{
    struct sv_crypto_key *key = gen_key(15);
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    uint8_t plain[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t out[8 + SV_CRYPTO_SEAL_OVERHEAD];
    size_t len = 0;
    sv_crypto_key_seals_restore(key, SV_CRYPTO_KEY_SEALS_MAX - 1);
    CHECK_RC(sv_crypto_seal(key, &ad, plain, sizeof(plain), out, sizeof(out), &len), 0);
    CHECK(sv_crypto_key_seals(key) == SV_CRYPTO_KEY_SEALS_MAX);
    memset(out, 0xAA, sizeof(out));
    CHECK_RC(sv_crypto_seal(key, &ad, plain, sizeof(plain), out, sizeof(out), &len),
             SV_CRYPTO_E_KEY_EXHAUSTED);
    CHECK(len == 0);
    CHECK(all_zero(out, sizeof(out)));
    CHECK(sv_crypto_key_seals(key) == SV_CRYPTO_KEY_SEALS_MAX);

    /* Wrapping counts against the KEK's budget too. */
    struct sv_crypto_key *dek = gen_key(16);
    uint8_t wrapped[SV_CRYPTO_WRAPPED_LEN];
    char err[256] = "";
    CHECK_RC(sv_crypto_dek_wrap(key, 1, dek, wrapped, err, sizeof(err)), SV_CRYPTO_E_KEY_EXHAUSTED);
    CHECK(strstr(err, "rotate") != NULL);
    CHECK(all_zero(wrapped, sizeof(wrapped)));
    sv_crypto_key_free(dek);
    sv_crypto_key_free(key);
}

/* Master key file. */

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n > 0 ? (size_t)n : 0;
}

static void write_file(const char *path, const uint8_t *buf, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0 || fchmod(fd, mode) != 0 || (len > 0 && write(fd, buf, len) != (ssize_t)len)) {
        fprintf(stderr, "write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    close(fd);
}

static void test_master_create(void)
{
    const char *path = tmp_path(0, "master.key");
    char err[512] = "";
    mode_t old = umask(0); /* a permissive umask must not widen the mode */
    CHECK_RC(sv_crypto_master_create(path, 5, err, sizeof(err)), 0);
    umask(old);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_size == SV_CRYPTO_MASTER_FILE_LEN);

    /* A restrictive umask must not leave the owner without read access. */
    const char *path2 = tmp_path(1, "master2.key");
    old = umask(0277);
    CHECK_RC(sv_crypto_master_create(path2, 6, err, sizeof(err)), 0);
    umask(old);
    CHECK(stat(path2, &st) == 0 && (st.st_mode & 07777) == 0600);

    struct sv_crypto_key *a = NULL, *b = NULL, *c = NULL;
    CHECK_RC(sv_crypto_master_load(path, &a, err, sizeof(err)), 0);
    CHECK_RC(sv_crypto_master_load(path, &b, err, sizeof(err)), 0);
    CHECK_RC(sv_crypto_master_load(path2, &c, err, sizeof(err)), 0);
    if (a == NULL || b == NULL || c == NULL) {
        sv_check_fail(__FILE__, __LINE__, "%s", err);
        goto out;
    }
    CHECK(sv_crypto_key_id(a) == 5);
    CHECK(sv_crypto_key_id(c) == 6);
    /* Two loads give the same key; another file gives another key. */
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    uint8_t plain[32], back[32];
    fill(plain, sizeof(plain), 8);
    size_t len = 0;
    uint8_t *sealed = seal_new(a, &ad, plain, sizeof(plain), &len);
    CHECK_RC(open_checked(b, &ad, sealed, len, back, sizeof(back)), 0);
    CHECK(memcmp(plain, back, sizeof(plain)) == 0);
    free(sealed);
    uint8_t img_a[SV_CRYPTO_MASTER_FILE_LEN], img_c[SV_CRYPTO_MASTER_FILE_LEN];
    CHECK(read_file(path, img_a, sizeof(img_a)) == sizeof(img_a));
    CHECK(read_file(path2, img_c, sizeof(img_c)) == sizeof(img_c));
    CHECK(memcmp(img_a + 16, img_c + 16, SV_CRYPTO_KEY_LEN) != 0);
    CHECK(memcmp(img_a, "SVMASTER\x01\0\0\0\x05\0\0\0", 16) == 0);
out:
    sv_crypto_key_free(c);
    sv_crypto_key_free(b);
    sv_crypto_key_free(a);
}

static void test_master_no_overwrite(void)
{
    const char *path = tmp_path(0, "keep.key");
    char err[512] = "";
    CHECK_RC(sv_crypto_master_create(path, 1, err, sizeof(err)), 0);
    uint8_t before[SV_CRYPTO_MASTER_FILE_LEN], after[SV_CRYPTO_MASTER_FILE_LEN];
    CHECK(read_file(path, before, sizeof(before)) == sizeof(before));
    err[0] = '\0';
    CHECK_RC(sv_crypto_master_create(path, 2, err, sizeof(err)), -EEXIST);
    CHECK(strstr(err, "refusing to overwrite") != NULL && strstr(err, path) != NULL);
    CHECK(read_file(path, after, sizeof(after)) == sizeof(after));
    CHECK(memcmp(before, after, sizeof(before)) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);

    /* A symlink, even dangling, is not followed. */
    const char *link = tmp_path(1, "link.key");
    const char *target = tmp_path(2, "target.key");
    CHECK(symlink(target, link) == 0);
    CHECK_RC(sv_crypto_master_create(link, 3, err, sizeof(err)), -EEXIST);
    CHECK(access(target, F_OK) != 0);
}

static void test_master_insecure(void)
{
    const char *path = tmp_path(0, "perm.key");
    char err[512] = "";
    CHECK_RC(sv_crypto_master_create(path, 1, err, sizeof(err)), 0);
    static const mode_t bad[] = {0644, 0640, 0604, 0660, 0601, 0610, 0700 | 0040};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(chmod(path, bad[i]) == 0);
        struct sv_crypto_key *key = NULL;
        err[0] = '\0';
        CHECK_RC(sv_crypto_master_load(path, &key, err, sizeof(err)), SV_CRYPTO_E_INSECURE);
        CHECK(key == NULL);
        char mode[16];
        snprintf(mode, sizeof(mode), "%04o", (unsigned)bad[i]);
        CHECK(strstr(err, mode) != NULL && strstr(err, "group or others") != NULL);
    }
    /* Owned by another user: only root can set that up. */
    if (geteuid() == 0) {
        CHECK(chmod(path, 0600) == 0);
        CHECK(chown(path, 4242, (gid_t)-1) == 0);
        struct sv_crypto_key *key = NULL;
        err[0] = '\0';
        CHECK_RC(sv_crypto_master_load(path, &key, err, sizeof(err)), SV_CRYPTO_E_INSECURE);
        CHECK(key == NULL && strstr(err, "owned by uid 4242") != NULL);
        CHECK(chown(path, 0, (gid_t)-1) == 0);
    } else {
        printf("  (not root: the owner check is not exercised)\n");
    }
    static const mode_t good[] = {0600, 0400};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(chmod(path, good[i]) == 0);
        struct sv_crypto_key *key = NULL;
        CHECK_RC(sv_crypto_master_load(path, &key, err, sizeof(err)), 0);
        CHECK(key != NULL);
        sv_crypto_key_free(key);
    }
}

/* Load a file holding buf[0..len) (mode 0600) and expect want; a failure
 * must name the file and contain words in its errmsg. */
static void expect_load(const char *name, const uint8_t *buf, size_t len, int want,
                        const char *words)
{
    const char *path = tmp_path(3, name);
    write_file(path, buf, len, 0600);
    struct sv_crypto_key *key = NULL;
    char err[512] = "";
    CHECK_RC(sv_crypto_master_load(path, &key, err, sizeof(err)), want);
    if (want == 0) {
        CHECK(key != NULL);
        sv_crypto_key_free(key);
        unlink(path);
        return;
    }
    CHECK(key == NULL);
    if (words != NULL && strstr(err, words) == NULL) {
        sv_check_fail(__FILE__, __LINE__, "%s: errmsg \"%s\" lacks \"%s\"", name, err, words);
    }
    CHECK(strstr(err, path) != NULL);
    sv_crypto_key_free(key);
    unlink(path);
}

static void test_master_corrupt(void)
{
    const char *path = tmp_path(0, "good.key");
    char err[512] = "";
    CHECK_RC(sv_crypto_master_create(path, 1, err, sizeof(err)), 0);
    uint8_t img[SV_CRYPTO_MASTER_FILE_LEN + 1];
    CHECK(read_file(path, img, sizeof(img)) == SV_CRYPTO_MASTER_FILE_LEN);
    uint8_t bad[SV_CRYPTO_MASTER_FILE_LEN + 1];

    /* Control: the same bytes rewritten load fine. */
    expect_load("copy.key", img, SV_CRYPTO_MASTER_FILE_LEN, 0, NULL);

    static const size_t short_lens[] = {0, 1, 8, 47, SV_CRYPTO_MASTER_FILE_LEN - 1};
    for (size_t i = 0; i < sizeof(short_lens) / sizeof(short_lens[0]); i++) {
        expect_load("short.key", img, short_lens[i], SV_CRYPTO_E_FORMAT, "truncated");
    }
    img[SV_CRYPTO_MASTER_FILE_LEN] = 0;
    expect_load("long.key", img, SV_CRYPTO_MASTER_FILE_LEN + 1, SV_CRYPTO_E_FORMAT, "expected");

    memcpy(bad, img, SV_CRYPTO_MASTER_FILE_LEN);
    bad[0] ^= 1;
    expect_load("magic.key", bad, SV_CRYPTO_MASTER_FILE_LEN, SV_CRYPTO_E_FORMAT, "bad magic");
    memcpy(bad, img, SV_CRYPTO_MASTER_FILE_LEN);
    bad[8] = 2;
    expect_load("version.key", bad, SV_CRYPTO_MASTER_FILE_LEN, SV_CRYPTO_E_VERSION, "version 2");
    memcpy(bad, img, SV_CRYPTO_MASTER_FILE_LEN);
    bad[10] = 1;
    expect_load("reserved.key", bad, SV_CRYPTO_MASTER_FILE_LEN, SV_CRYPTO_E_FORMAT, "reserved");
    static const size_t sum_at[] = {12, 16, 30, 47, 48, SV_CRYPTO_MASTER_FILE_LEN - 1};
    for (size_t i = 0; i < sizeof(sum_at) / sizeof(sum_at[0]); i++) {
        memcpy(bad, img, SV_CRYPTO_MASTER_FILE_LEN);
        bad[sum_at[i]] ^= 0x10;
        expect_load("sum.key", bad, SV_CRYPTO_MASTER_FILE_LEN, SV_CRYPTO_E_CHECKSUM, "checksum");
    }
    /* Every single-bit flip is refused. */
    for (size_t i = 0; i < SV_CRYPTO_MASTER_FILE_LEN; i++) {
        for (int b = 0; b < 8; b++) {
            memcpy(bad, img, SV_CRYPTO_MASTER_FILE_LEN);
            bad[i] ^= (uint8_t)(1u << b);
            const char *p = tmp_path(3, "flip.key");
            write_file(p, bad, SV_CRYPTO_MASTER_FILE_LEN, 0600);
            struct sv_crypto_key *key = NULL;
            CHECK(sv_crypto_master_load(p, &key, err, sizeof(err)) != 0);
            CHECK(key == NULL);
            sv_crypto_key_free(key);
            unlink(p);
        }
    }

    /* Missing file, a directory, a FIFO (must not block). */
    struct sv_crypto_key *key = NULL;
    const char *missing = tmp_path(1, "missing.key");
    err[0] = '\0';
    CHECK_RC(sv_crypto_master_load(missing, &key, err, sizeof(err)), -ENOENT);
    CHECK(strstr(err, missing) != NULL);
    const char *dir = tmp_path(1, "dir.key");
    CHECK(mkdir(dir, 0700) == 0);
    CHECK_RC(sv_crypto_master_load(dir, &key, err, sizeof(err)), SV_CRYPTO_E_FORMAT);
    CHECK(strstr(err, "not a regular file") != NULL);
    const char *fifo = tmp_path(2, "fifo.key");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_RC(sv_crypto_master_load(fifo, &key, err, sizeof(err)), SV_CRYPTO_E_FORMAT);
    CHECK(key == NULL);
}

/* DEK wrapping. */

static void test_wrap_roundtrip(void)
{
    struct sv_crypto_key *kek = gen_key(1);
    uint8_t dek_bytes[SV_CRYPTO_KEY_LEN];
    fill(dek_bytes, sizeof(dek_bytes), 300);
    struct sv_crypto_key *dek = NULL;
    CHECK_RC(sv_crypto_key_from_bytes(77, dek_bytes, &dek), 0);
    uint8_t w1[SV_CRYPTO_WRAPPED_LEN], w2[SV_CRYPTO_WRAPPED_LEN];
    char err[256] = "";
    CHECK_RC(sv_crypto_dek_wrap(kek, 9, dek, w1, err, sizeof(err)), 0);
    CHECK_RC(sv_crypto_dek_wrap(kek, 9, dek, w2, err, sizeof(err)), 0);
    CHECK(memcmp(w1, w2, sizeof(w1)) != 0); /* fresh nonce each time */
    CHECK(w1[0] == SV_CRYPTO_WRAP_VERSION);
    CHECK(w1[1] == 1 && w1[2] == 0 && w1[3] == 0 && w1[4] == 0);
    CHECK(w1[5] == 77 && w1[6] == 0 && w1[7] == 0 && w1[8] == 0);
    /* The DEK never appears in the wrapped form, not even 8 bytes of it. */
    size_t found = 0;
    for (size_t off = 0; off + 8 <= sizeof(dek_bytes); off++) {
        found += contains(w1, sizeof(w1), dek_bytes + off, 8);
    }
    CHECK(found == 0);

    struct sv_crypto_key *back = NULL;
    CHECK_RC(sv_crypto_dek_unwrap(kek, 9, w1, sizeof(w1), &back, err, sizeof(err)), 0);
    if (back == NULL) {
        goto out;
    }
    CHECK(sv_crypto_key_id(back) == 77);
    /* The unwrapped key is the DEK: what one seals the other opens. */
    struct sv_crypto_chunk_ad ad;
    make_ad(&ad);
    uint8_t plain[40], out[40];
    fill(plain, sizeof(plain), 9);
    size_t len = 0;
    uint8_t *sealed = seal_new(dek, &ad, plain, sizeof(plain), &len);
    CHECK_RC(open_checked(back, &ad, sealed, len, out, sizeof(out)), 0);
    CHECK(memcmp(plain, out, sizeof(plain)) == 0);
    free(sealed);
out:
    sv_crypto_key_free(back);
    sv_crypto_key_free(dek);
    sv_crypto_key_free(kek);
}

static void expect_unwrap(const struct sv_crypto_key *kek, uint64_t tenant, const uint8_t *w,
                          size_t len, int want)
{
    struct sv_crypto_key *out = NULL;
    char err[256] = "";
    CHECK_RC(sv_crypto_dek_unwrap(kek, tenant, w, len, &out, err, sizeof(err)), want);
    CHECK(out == NULL);
    CHECK(err[0] != '\0');
    sv_crypto_key_free(out);
}

static void test_unwrap_failures(void)
{
    struct sv_crypto_key *kek = gen_key(1);
    struct sv_crypto_key *kek_same_id = gen_key(1);
    struct sv_crypto_key *kek_other_id = gen_key(2);
    struct sv_crypto_key *dek = gen_key(77);
    uint8_t w[SV_CRYPTO_WRAPPED_LEN + 1], bad[SV_CRYPTO_WRAPPED_LEN + 1];
    char err[256] = "";
    CHECK_RC(sv_crypto_dek_wrap(kek, 9, dek, w, err, sizeof(err)), 0);

    expect_unwrap(kek_same_id, 9, w, SV_CRYPTO_WRAPPED_LEN, SV_CRYPTO_E_AUTH);
    expect_unwrap(kek_other_id, 9, w, SV_CRYPTO_WRAPPED_LEN, SV_CRYPTO_E_KEY_ID);
    expect_unwrap(kek, 10, w, SV_CRYPTO_WRAPPED_LEN, SV_CRYPTO_E_AUTH); /* another tenant */
    expect_unwrap(kek, 9, w, SV_CRYPTO_WRAPPED_LEN - 1, SV_CRYPTO_E_FORMAT);
    w[SV_CRYPTO_WRAPPED_LEN] = 0;
    expect_unwrap(kek, 9, w, SV_CRYPTO_WRAPPED_LEN + 1, SV_CRYPTO_E_FORMAT);
    expect_unwrap(kek, 9, w, 0, SV_CRYPTO_E_FORMAT);
    for (size_t i = 0; i < SV_CRYPTO_WRAPPED_LEN; i++) {
        for (int b = 0; b < 8; b++) {
            memcpy(bad, w, SV_CRYPTO_WRAPPED_LEN);
            bad[i] ^= (uint8_t)(1u << b);
            int want = i == 0 ? SV_CRYPTO_E_VERSION : i < 5 ? SV_CRYPTO_E_KEY_ID : SV_CRYPTO_E_AUTH;
            expect_unwrap(kek, 9, bad, SV_CRYPTO_WRAPPED_LEN, want);
        }
    }
    /* Control: the untouched wrapped key still unwraps. */
    struct sv_crypto_key *back = NULL;
    CHECK_RC(sv_crypto_dek_unwrap(kek, 9, w, SV_CRYPTO_WRAPPED_LEN, &back, err, sizeof(err)), 0);
    CHECK(back != NULL);
    sv_crypto_key_free(back);
    sv_crypto_key_free(dek);
    sv_crypto_key_free(kek_other_id);
    sv_crypto_key_free(kek_same_id);
    sv_crypto_key_free(kek);
}

static void test_strerror(void)
{
    for (int e = SV_CRYPTO_E_TOO_BIG; e < SV_CRYPTO_E_LAST_; e++) {
        const char *s = sv_crypto_strerror(e);
        CHECK(strcmp(s, "unknown") != 0 && s[0] != '\0');
        for (int f = SV_CRYPTO_E_TOO_BIG; f < e; f++) {
            CHECK(strcmp(s, sv_crypto_strerror(f)) != 0);
        }
    }
    CHECK(strcmp(sv_crypto_strerror(0), "ok") == 0);
    CHECK(strcmp(sv_crypto_strerror(-ENOENT), strerror(ENOENT)) == 0);
    CHECK(strcmp(sv_crypto_strerror(12345), "unknown") == 0);
    CHECK(strcmp(sv_crypto_strerror(SV_CRYPTO_E_LAST_), "unknown") == 0);
}

/* Runner. */

static int set_up(void)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    snprintf(tmpdir, sizeof(tmpdir), "%s/crypto-test.XXXXXX", base);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "crypto-test: mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    return 0;
}

static const struct sv_test tests[] = {
    {"ad_encoding", test_ad_encoding},
    {"roundtrip", test_roundtrip},
    {"limits", test_limits},
    {"tamper", test_tamper},
    {"ad_binding", test_ad_binding},
    {"wrong_key", test_wrong_key},
    {"nonces_distinct", test_nonces_distinct},
    {"no_plaintext_in_output", test_no_plaintext_in_output},
    {"layout", test_layout},
    {"seal_limit", test_seal_limit},
    {"master_create", test_master_create},
    {"master_no_overwrite", test_master_no_overwrite},
    {"master_insecure", test_master_insecure},
    {"master_corrupt", test_master_corrupt},
    {"wrap_roundtrip", test_wrap_roundtrip},
    {"unwrap_failures", test_unwrap_failures},
    {"strerror", test_strerror},
};

const struct sv_test_suite sv_test_suite = {
    .name = "crypto-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = remove_tmpdir,
    .timeout_s = 60, /* a hang (e.g. a key file load that blocks) is a failure */
};
