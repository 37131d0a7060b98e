/* Chunk sealing, master key file and DEK wrapping on OpenSSL 3 (contracts in crypto.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto.h"

#include "sv_assert.h"

struct sv_crypto_key {
    uint32_t id;
    _Atomic uint64_t seals; /* the only mutable part: seals and wraps done */
    uint8_t bytes[SV_CRYPTO_KEY_LEN];
};

/* Sealed chunk header (crypto.h). Bytes 0..SEAL_AUTH_LEN of it (version and
 * key id) are appended to the associated data; the nonce is authenticated by
 * GCM as the IV. */
enum {
    SEAL_OFF_VERSION = 0,
    SEAL_OFF_KEY_ID = 1,
    SEAL_OFF_NONCE = 5,
    SEAL_AUTH_LEN = 5,
};

/* Domain-separation prefixes: one per purpose, neither a prefix of the other,
 * so an encoding for one purpose never parses as one for the other. */
static const char chunk_ad_prefix[] = "shardvault/chunk";
static const char wrap_ad_prefix[] = "shardvault/dek-wrap";
enum { CHUNK_AD_PREFIX_LEN = 16, WRAP_AD_PREFIX_LEN = 19 };

/* Master key file (crypto.h). The checksum detects corruption, not
 * tampering: whoever can write the file can replace the key anyway. */
static const uint8_t master_magic[8] = {'S', 'V', 'M', 'A', 'S', 'T', 'E', 'R'};
enum {
    MASTER_OFF_VERSION = 8,
    MASTER_OFF_RESERVED = 9,
    MASTER_RESERVED_LEN = 3,
    MASTER_OFF_KEY_ID = 12,
    MASTER_OFF_KEY = 16,
    MASTER_OFF_SUM = 48,
    MASTER_SUM_LEN = 32, /* SHA-256 */
};

/* Wrapped DEK (crypto.h). Why AES-256-GCM rather than AES key wrap (RFC
 * 5649, EVP_aes_256_wrap_pad): key wrap takes no associated data, so a DEK
 * wrapped for tenant A could be copied into tenant B's record and would
 * unwrap there; GCM binds the purpose, the tenant and both key ids. GCM is
 * also the one primitive the chunk path already uses. The price, a random
 * nonce, is harmless here: a KEK wraps one DEK per tenant per rotation, far
 * below SV_CRYPTO_KEY_SEALS_MAX, and the wraps are counted on the KEK. */
enum {
    WRAP_OFF_VERSION = 0,
    WRAP_OFF_KEK_ID = 1,
    WRAP_OFF_DEK_ID = 5,
    WRAP_OFF_NONCE = 9,
    WRAP_HEADER_LEN = 9 + SV_CRYPTO_NONCE_LEN,
    WRAP_AUTH_LEN = 9, /* version, KEK id, DEK id: appended to the associated data */
    WRAP_OFF_CT = WRAP_HEADER_LEN,
    WRAP_OFF_TAG = WRAP_OFF_CT + SV_CRYPTO_KEY_LEN,
    WRAP_AD_VERSION = 1,
    WRAP_AD_LEN = WRAP_AD_PREFIX_LEN + 1 + 8 + WRAP_AUTH_LEN,
};

/* The sizes quoted in crypto.h's comments. */
_Static_assert(SV_CRYPTO_SEAL_OVERHEAD == 33 && SV_CRYPTO_MASTER_FILE_LEN == 80 &&
                   SV_CRYPTO_WRAPPED_LEN == 69,
               "crypto.h documents these sizes");
/* EVP takes int lengths. */
_Static_assert(SV_CRYPTO_SEALED_MAX <= INT_MAX, "a sealed chunk must fit an int");
_Static_assert(SV_CRYPTO_SEAL_HEADER_LEN == SEAL_OFF_NONCE + SV_CRYPTO_NONCE_LEN,
               "nonce ends the seal header");
_Static_assert(sizeof(chunk_ad_prefix) == CHUNK_AD_PREFIX_LEN + 1, "chunk prefix length");
_Static_assert(sizeof(wrap_ad_prefix) == WRAP_AD_PREFIX_LEN + 1, "wrap prefix length");
_Static_assert(SV_CRYPTO_CHUNK_AD_LEN == CHUNK_AD_PREFIX_LEN + 1 + 8 + 16 + 8 + 8,
               "chunk associated data layout");
_Static_assert(MASTER_OFF_SUM + MASTER_SUM_LEN == SV_CRYPTO_MASTER_FILE_LEN,
               "master key file layout");
_Static_assert(MASTER_OFF_KEY + SV_CRYPTO_KEY_LEN == MASTER_OFF_SUM, "master key file layout");
_Static_assert(WRAP_OFF_TAG + SV_CRYPTO_TAG_LEN == SV_CRYPTO_WRAPPED_LEN, "wrapped key layout");
_Static_assert(SV_CRYPTO_KEY_ROTATE_SEALS < SV_CRYPTO_KEY_SEALS_MAX,
               "rotation happens before the nonce bound");

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
    if (errmsg == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
}

/* Report the first queued OpenSSL error (and drop the queue). */
static int openssl_err(char *errmsg, size_t errlen, const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
    } else {
        snprintf(buf, sizeof(buf), "no OpenSSL error queued");
    }
    ERR_clear_error();
    set_err(errmsg, errlen, "%s: %s", what, buf);
    return SV_CRYPTO_E_OPENSSL;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

const char *sv_crypto_strerror(int err)
{
    switch (err) {
    case SV_CRYPTO_OK:
        return "ok";
    case SV_CRYPTO_E_TOO_BIG:
        return "plaintext larger than SV_CRYPTO_CHUNK_MAX";
    case SV_CRYPTO_E_BUFFER:
        return "output buffer too small";
    case SV_CRYPTO_E_FORMAT:
        return "malformed input";
    case SV_CRYPTO_E_VERSION:
        return "unsupported format version";
    case SV_CRYPTO_E_AUTH:
        return "authentication failed (wrong key or context, or corrupt)";
    case SV_CRYPTO_E_KEY_ID:
        return "encrypted under another key id";
    case SV_CRYPTO_E_CHECKSUM:
        return "key file checksum mismatch";
    case SV_CRYPTO_E_INSECURE:
        return "key file accessible by others or owned by another user";
    case SV_CRYPTO_E_KEY_EXHAUSTED:
        return "key reached its seal limit; rotate it";
    case SV_CRYPTO_E_RANDOM:
        return "random generator failed";
    case SV_CRYPTO_E_OPENSSL:
        return "OpenSSL failure";
    default:
        break;
    }
    /* errno values are small; -1000 and below are domain errors of our modules. */
    if (err < 0 && err > -1000) {
        return strerror(-err);
    }
    return "unknown";
}

/* Keys. */

static struct sv_crypto_key *key_alloc(uint32_t id)
{
    struct sv_crypto_key *key = OPENSSL_secure_zalloc(sizeof(*key));
    if (key == NULL) {
        return NULL;
    }
    key->id = id;
    atomic_init(&key->seals, 0);
    return key;
}

int sv_crypto_key_generate(uint32_t id, struct sv_crypto_key **out)
{
    ASSERT(out != NULL);
    struct sv_crypto_key *key = key_alloc(id);
    if (key == NULL) {
        return -ENOMEM;
    }
    /* The private DRBG: key material never shares a generator with public nonces. */
    if (RAND_priv_bytes(key->bytes, SV_CRYPTO_KEY_LEN) != 1) {
        ERR_clear_error();
        sv_crypto_key_free(key);
        return SV_CRYPTO_E_RANDOM;
    }
    *out = key;
    return 0;
}

int sv_crypto_key_from_bytes(uint32_t id, const uint8_t *bytes, struct sv_crypto_key **out)
{
    ASSERT(bytes != NULL && out != NULL);
    struct sv_crypto_key *key = key_alloc(id);
    if (key == NULL) {
        return -ENOMEM;
    }
    memcpy(key->bytes, bytes, SV_CRYPTO_KEY_LEN);
    *out = key;
    return 0;
}

void sv_crypto_key_free(struct sv_crypto_key *key)
{
    if (key == NULL) {
        return;
    }
    OPENSSL_cleanse(key, sizeof(*key));
    OPENSSL_secure_free(key);
}

uint32_t sv_crypto_key_id(const struct sv_crypto_key *key)
{
    ASSERT(key != NULL);
    return key->id;
}

uint64_t sv_crypto_key_seals(const struct sv_crypto_key *key)
{
    ASSERT(key != NULL);
    /* atomic_load takes a non-const pointer in C11. */
    struct sv_crypto_key *k = (struct sv_crypto_key *)key;
    return atomic_load_explicit(&k->seals, memory_order_relaxed);
}

void sv_crypto_key_seals_restore(struct sv_crypto_key *key, uint64_t seals)
{
    ASSERT(key != NULL);
    atomic_store_explicit(&key->seals, seals, memory_order_relaxed);
}

/* Take one seal from key's budget, or fail once SV_CRYPTO_KEY_SEALS_MAX are
 * spent. The counter is the key's only mutable state, hence the cast: keys
 * are always allocated non-const by key_alloc. */
static int key_take_seal(const struct sv_crypto_key *key)
{
    struct sv_crypto_key *k = (struct sv_crypto_key *)key;
    uint64_t n = atomic_load_explicit(&k->seals, memory_order_relaxed);
    do {
        if (n >= SV_CRYPTO_KEY_SEALS_MAX) {
            return SV_CRYPTO_E_KEY_EXHAUSTED;
        }
    } while (!atomic_compare_exchange_weak_explicit(&k->seals, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 0;
}

/* AES-256-GCM. */

/* Encrypt len bytes of plain into ct and write the tag; ad[0..ad_len) is the
 * associated data. ct has room for len bytes. Returns 0 or SV_CRYPTO_E_OPENSSL. */
static int gcm_encrypt(const uint8_t *key, const uint8_t *nonce, const uint8_t *ad, size_t ad_len,
                       const uint8_t *plain, size_t len, uint8_t *ct, uint8_t *tag)
{
    int rc = SV_CRYPTO_E_OPENSSL;
    uint8_t tail[SV_CRYPTO_TAG_LEN]; /* GCM's final step writes nothing; never NULL + 0 */
    int n = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        goto err;
    }
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SV_CRYPTO_NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, ad, (int)ad_len) != 1) {
        goto err_after_ctx;
    }
    if (len > 0 && (EVP_EncryptUpdate(ctx, ct, &n, plain, (int)len) != 1 || n != (int)len)) {
        goto err_after_ctx;
    }
    if (EVP_EncryptFinal_ex(ctx, tail, &n) != 1 || n != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SV_CRYPTO_TAG_LEN, tag) != 1) {
        goto err_after_ctx;
    }
    rc = 0;
err_after_ctx:
    EVP_CIPHER_CTX_free(ctx); /* wipes the expanded key */
err:
    return rc;
}

/* Decrypt len bytes of ct into plain and check the tag. Returns 0,
 * SV_CRYPTO_E_AUTH or SV_CRYPTO_E_OPENSSL; on failure plain may hold
 * unauthenticated bytes, which the caller wipes. */
static int gcm_decrypt(const uint8_t *key, const uint8_t *nonce, const uint8_t *ad, size_t ad_len,
                       const uint8_t *ct, size_t len, const uint8_t *tag, uint8_t *plain)
{
    int rc = SV_CRYPTO_E_OPENSSL;
    uint8_t tail[SV_CRYPTO_TAG_LEN];
    uint8_t tag_copy[SV_CRYPTO_TAG_LEN]; /* SET_TAG takes a non-const pointer */
    int n = 0;
    memcpy(tag_copy, tag, sizeof(tag_copy));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        goto err;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SV_CRYPTO_NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, ad, (int)ad_len) != 1) {
        goto err_after_ctx;
    }
    if (len > 0 && (EVP_DecryptUpdate(ctx, plain, &n, ct, (int)len) != 1 || n != (int)len)) {
        goto err_after_ctx;
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SV_CRYPTO_TAG_LEN, tag_copy) != 1) {
        goto err_after_ctx;
    }
    if (EVP_DecryptFinal_ex(ctx, tail, &n) != 1) {
        ERR_clear_error();
        rc = SV_CRYPTO_E_AUTH;
        goto err_after_ctx;
    }
    rc = 0;
err_after_ctx:
    EVP_CIPHER_CTX_free(ctx);
err:
    return rc;
}

/* Chunks. */

void sv_crypto_chunk_ad_encode(const struct sv_crypto_chunk_ad *ad, uint8_t *out)
{
    ASSERT(ad != NULL && out != NULL);
    uint8_t *p = out;
    memcpy(p, chunk_ad_prefix, CHUNK_AD_PREFIX_LEN);
    p += CHUNK_AD_PREFIX_LEN;
    *p++ = SV_CRYPTO_CHUNK_AD_VERSION;
    put_le(p, ad->tenant_id, 8);
    p += 8;
    memcpy(p, ad->object_id, SV_CRYPTO_OBJECT_ID_LEN);
    p += SV_CRYPTO_OBJECT_ID_LEN;
    put_le(p, ad->chunk_index, 8);
    p += 8;
    put_le(p, ad->version, 8);
    p += 8;
    ASSERT(p == out + SV_CRYPTO_CHUNK_AD_LEN);
}

/* The GCM associated data of a chunk: the encoded ad, then the authenticated
 * part of the sealed header. */
static void chunk_gcm_ad(const struct sv_crypto_chunk_ad *ad, const uint8_t *header, uint8_t *out)
{
    sv_crypto_chunk_ad_encode(ad, out);
    memcpy(out + SV_CRYPTO_CHUNK_AD_LEN, header, SEAL_AUTH_LEN);
}

size_t sv_crypto_sealed_len(size_t plain_len)
{
    return plain_len + SV_CRYPTO_SEAL_OVERHEAD;
}

int sv_crypto_seal(const struct sv_crypto_key *key, const struct sv_crypto_chunk_ad *ad,
                   const void *plain, size_t plain_len, uint8_t *out, size_t out_cap,
                   size_t *out_len)
{
    ASSERT(key != NULL && ad != NULL && out_len != NULL);
    ASSERT(plain != NULL || plain_len == 0);
    ASSERT(out != NULL || out_cap == 0);
    uint8_t gcm_ad[SV_CRYPTO_CHUNK_AD_LEN + SEAL_AUTH_LEN];
    int rc;

    *out_len = 0;
    if (plain_len > SV_CRYPTO_CHUNK_MAX) {
        rc = SV_CRYPTO_E_TOO_BIG;
        goto err;
    }
    size_t total = sv_crypto_sealed_len(plain_len);
    if (out_cap < total) {
        rc = SV_CRYPTO_E_BUFFER;
        goto err;
    }
    rc = key_take_seal(key);
    if (rc != 0) {
        goto err;
    }
    out[SEAL_OFF_VERSION] = SV_CRYPTO_SEAL_VERSION;
    put_le(out + SEAL_OFF_KEY_ID, key->id, 4);
    if (RAND_bytes(out + SEAL_OFF_NONCE, SV_CRYPTO_NONCE_LEN) != 1) {
        ERR_clear_error();
        rc = SV_CRYPTO_E_RANDOM;
        goto err;
    }
    chunk_gcm_ad(ad, out, gcm_ad);
    rc = gcm_encrypt(key->bytes, out + SEAL_OFF_NONCE, gcm_ad, sizeof(gcm_ad), plain, plain_len,
                     out + SV_CRYPTO_SEAL_HEADER_LEN, out + SV_CRYPTO_SEAL_HEADER_LEN + plain_len);
    if (rc != 0) {
        ERR_clear_error();
        goto err;
    }
    *out_len = total;
    return 0;

err:
    if (out_cap > 0) {
        OPENSSL_cleanse(out, out_cap);
    }
    return rc;
}

int sv_crypto_sealed_key_id(const uint8_t *sealed, size_t sealed_len, uint32_t *key_id)
{
    ASSERT(sealed != NULL && key_id != NULL);
    if (sealed_len < SV_CRYPTO_SEAL_OVERHEAD || sealed_len > SV_CRYPTO_SEALED_MAX) {
        return SV_CRYPTO_E_FORMAT;
    }
    if (sealed[SEAL_OFF_VERSION] != SV_CRYPTO_SEAL_VERSION) {
        return SV_CRYPTO_E_VERSION;
    }
    *key_id = (uint32_t)get_le(sealed + SEAL_OFF_KEY_ID, 4);
    return 0;
}

int sv_crypto_open(const struct sv_crypto_key *key, const struct sv_crypto_chunk_ad *ad,
                   const uint8_t *sealed, size_t sealed_len, void *out, size_t out_cap,
                   size_t *out_len)
{
    ASSERT(key != NULL && ad != NULL && sealed != NULL && out_len != NULL);
    ASSERT(out != NULL || out_cap == 0);
    uint8_t gcm_ad[SV_CRYPTO_CHUNK_AD_LEN + SEAL_AUTH_LEN];
    uint32_t key_id = 0;
    int rc;

    *out_len = 0;
    rc = sv_crypto_sealed_key_id(sealed, sealed_len, &key_id);
    if (rc != 0) {
        goto err;
    }
    if (key_id != key->id) {
        rc = SV_CRYPTO_E_KEY_ID;
        goto err;
    }
    size_t plain_len = sealed_len - SV_CRYPTO_SEAL_OVERHEAD;
    if (out_cap < plain_len) {
        rc = SV_CRYPTO_E_BUFFER;
        goto err;
    }
    chunk_gcm_ad(ad, sealed, gcm_ad);
    rc = gcm_decrypt(key->bytes, sealed + SEAL_OFF_NONCE, gcm_ad, sizeof(gcm_ad),
                     sealed + SV_CRYPTO_SEAL_HEADER_LEN, plain_len,
                     sealed + SV_CRYPTO_SEAL_HEADER_LEN + plain_len, out);
    if (rc != 0) {
        ERR_clear_error();
        goto err;
    }
    *out_len = plain_len;
    return 0;

err:
    if (out_cap > 0) {
        OPENSSL_cleanse(out, out_cap);
    }
    return rc;
}

/* Master key file. */

static int sha256(const uint8_t *data, size_t len, uint8_t *md, char *errmsg, size_t errlen)
{
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != MASTER_SUM_LEN) {
        return openssl_err(errmsg, errlen, "SHA-256");
    }
    return 0;
}

/* Directory part of path into dir[0..cap): "." for a bare name. */
static int dir_of(const char *path, char *dir, size_t cap)
{
    size_t len = strlen(path);
    if (len == 0 || len >= cap) {
        return len == 0 ? -EINVAL : -ENAMETOOLONG;
    }
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
    } else if (slash == path) {
        memcpy(dir, "/", 2);
    } else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read exactly len bytes; SV_CRYPTO_E_FORMAT when the file ends first. */
static int read_all(int fd, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return SV_CRYPTO_E_FORMAT;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

int sv_crypto_master_create(const char *path, uint32_t key_id, char *errmsg, size_t errlen)
{
    ASSERT(path != NULL);
    uint8_t img[SV_CRYPTO_MASTER_FILE_LEN];
    char dir[SV_CRYPTO_PATH_MAX];
    int fd = -1;
    int rc;

    rc = dir_of(path, dir, sizeof(dir));
    if (rc != 0) {
        set_err(errmsg, errlen, "master key path '%.64s...': %s", path, sv_crypto_strerror(rc));
        return rc;
    }

    memset(img, 0, sizeof(img));
    memcpy(img, master_magic, sizeof(master_magic));
    img[MASTER_OFF_VERSION] = SV_CRYPTO_MASTER_VERSION;
    put_le(img + MASTER_OFF_KEY_ID, key_id, 4);
    if (RAND_priv_bytes(img + MASTER_OFF_KEY, SV_CRYPTO_KEY_LEN) != 1) {
        ERR_clear_error();
        set_err(errmsg, errlen, "%s: random generator failed", path);
        rc = SV_CRYPTO_E_RANDOM;
        goto err_after_image;
    }
    rc = sha256(img, MASTER_OFF_SUM, img + MASTER_OFF_SUM, errmsg, errlen);
    if (rc != 0) {
        goto err_after_image;
    }

    /* O_EXCL also refuses an existing symlink, dangling or not. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        rc = -errno;
        set_err(errmsg, errlen, "create %s: %s%s", path, strerror(-rc),
                rc == -EEXIST ? " (refusing to overwrite an existing master key file)" : "");
        goto err_after_image;
    }
    /* The umask may have cleared owner bits: the mode is exactly 0600. */
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
        rc = -errno;
        set_err(errmsg, errlen, "chmod 600 %s: %s", path, strerror(-rc));
        goto err_after_create;
    }
    rc = write_all(fd, img, sizeof(img));
    if (rc != 0) {
        set_err(errmsg, errlen, "write %s: %s", path, strerror(-rc));
        goto err_after_create;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        set_err(errmsg, errlen, "fsync %s: %s", path, strerror(-rc));
        goto err_after_create;
    }
    rc = close(fd) != 0 ? -errno : 0;
    fd = -1;
    if (rc != 0) {
        set_err(errmsg, errlen, "close %s: %s", path, strerror(-rc));
        goto err_after_create;
    }
    rc = fsync_dir(dir);
    if (rc != 0) {
        set_err(errmsg, errlen, "fsync directory %s: %s", dir, strerror(-rc));
        goto err_after_create;
    }
    OPENSSL_cleanse(img, sizeof(img));
    return 0;

err_after_create:
    if (fd >= 0) {
        close(fd);
    }
    unlink(path); /* ours: O_EXCL created it */
err_after_image:
    OPENSSL_cleanse(img, sizeof(img));
    return rc;
}

int sv_crypto_master_load(const char *path, struct sv_crypto_key **out, char *errmsg, size_t errlen)
{
    ASSERT(path != NULL && out != NULL);
    uint8_t img[SV_CRYPTO_MASTER_FILE_LEN];
    uint8_t sum[MASTER_SUM_LEN];
    struct stat st;
    int rc;

    memset(img, 0, sizeof(img));
    /* O_NONBLOCK: a FIFO planted at path must not hang the node; it is
     * rejected as not regular below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        set_err(errmsg, errlen, "open master key %s: %s", path, strerror(-rc));
        goto err;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        set_err(errmsg, errlen, "stat %s: %s", path, strerror(-rc));
        goto err_after_open;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = SV_CRYPTO_E_FORMAT;
        set_err(errmsg, errlen, "master key %s is not a regular file", path);
        goto err_after_open;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        rc = SV_CRYPTO_E_INSECURE;
        set_err(errmsg, errlen,
                "master key %s has mode %04o: it must not be accessible by group or others "
                "(chmod 600 it, and consider the key exposed)",
                path, (unsigned)(st.st_mode & 07777));
        goto err_after_open;
    }
    if (st.st_uid != geteuid()) {
        rc = SV_CRYPTO_E_INSECURE;
        set_err(errmsg, errlen, "master key %s is owned by uid %u, not by the running uid %u", path,
                (unsigned)st.st_uid, (unsigned)geteuid());
        goto err_after_open;
    }
    if (st.st_size != SV_CRYPTO_MASTER_FILE_LEN) {
        rc = SV_CRYPTO_E_FORMAT;
        set_err(errmsg, errlen,
                "master key %s is %lld bytes, expected %d (truncated, or not a master key file)",
                path, (long long)st.st_size, SV_CRYPTO_MASTER_FILE_LEN);
        goto err_after_open;
    }
    rc = read_all(fd, img, sizeof(img));
    if (rc != 0) {
        set_err(errmsg, errlen, "read master key %s: %s", path,
                rc == SV_CRYPTO_E_FORMAT ? "file shrank while reading" : strerror(-rc));
        goto err_after_open;
    }
    if (memcmp(img, master_magic, sizeof(master_magic)) != 0) {
        rc = SV_CRYPTO_E_FORMAT;
        set_err(errmsg, errlen, "master key %s: bad magic (not a ShardVault master key file)",
                path);
        goto err_after_open;
    }
    /* Version before checksum: another version may checksum differently. */
    if (img[MASTER_OFF_VERSION] != SV_CRYPTO_MASTER_VERSION) {
        rc = SV_CRYPTO_E_VERSION;
        set_err(errmsg, errlen, "master key %s: format version %u, this build reads version %d",
                path, (unsigned)img[MASTER_OFF_VERSION], SV_CRYPTO_MASTER_VERSION);
        goto err_after_open;
    }
    for (int i = 0; i < MASTER_RESERVED_LEN; i++) {
        if (img[MASTER_OFF_RESERVED + i] != 0) {
            rc = SV_CRYPTO_E_FORMAT;
            set_err(errmsg, errlen, "master key %s: reserved header bytes are not zero", path);
            goto err_after_open;
        }
    }
    rc = sha256(img, MASTER_OFF_SUM, sum, errmsg, errlen);
    if (rc != 0) {
        goto err_after_open;
    }
    if (CRYPTO_memcmp(sum, img + MASTER_OFF_SUM, MASTER_SUM_LEN) != 0) {
        rc = SV_CRYPTO_E_CHECKSUM;
        set_err(errmsg, errlen, "master key %s: checksum mismatch (the file is corrupt)", path);
        goto err_after_open;
    }
    struct sv_crypto_key *key = key_alloc((uint32_t)get_le(img + MASTER_OFF_KEY_ID, 4));
    if (key == NULL) {
        rc = -ENOMEM;
        set_err(errmsg, errlen, "master key %s: out of memory", path);
        goto err_after_open;
    }
    memcpy(key->bytes, img + MASTER_OFF_KEY, SV_CRYPTO_KEY_LEN);
    *out = key;
    rc = 0;

err_after_open:
    close(fd);
err:
    OPENSSL_cleanse(img, sizeof(img));
    return rc;
}

/* DEK wrapping. */

/* Associated data of a wrapped DEK: prefix, version, tenant, then the
 * authenticated header bytes (version, KEK id, DEK id). */
static void wrap_ad(uint64_t tenant_id, const uint8_t *header, uint8_t *out)
{
    uint8_t *p = out;
    memcpy(p, wrap_ad_prefix, WRAP_AD_PREFIX_LEN);
    p += WRAP_AD_PREFIX_LEN;
    *p++ = WRAP_AD_VERSION;
    put_le(p, tenant_id, 8);
    p += 8;
    memcpy(p, header, WRAP_AUTH_LEN);
    p += WRAP_AUTH_LEN;
    ASSERT(p == out + WRAP_AD_LEN);
}

int sv_crypto_dek_wrap(const struct sv_crypto_key *kek, uint64_t tenant_id,
                       const struct sv_crypto_key *dek, uint8_t *out, char *errmsg, size_t errlen)
{
    ASSERT(kek != NULL && dek != NULL && out != NULL);
    uint8_t ad[WRAP_AD_LEN];
    int rc = key_take_seal(kek);
    if (rc != 0) {
        set_err(errmsg, errlen, "KEK %u has reached its wrap limit: rotate the master key",
                (unsigned)kek->id);
        goto err;
    }
    out[WRAP_OFF_VERSION] = SV_CRYPTO_WRAP_VERSION;
    put_le(out + WRAP_OFF_KEK_ID, kek->id, 4);
    put_le(out + WRAP_OFF_DEK_ID, dek->id, 4);
    if (RAND_bytes(out + WRAP_OFF_NONCE, SV_CRYPTO_NONCE_LEN) != 1) {
        ERR_clear_error();
        rc = SV_CRYPTO_E_RANDOM;
        set_err(errmsg, errlen, "wrap DEK %u: random generator failed", (unsigned)dek->id);
        goto err;
    }
    wrap_ad(tenant_id, out, ad);
    rc = gcm_encrypt(kek->bytes, out + WRAP_OFF_NONCE, ad, sizeof(ad), dek->bytes,
                     SV_CRYPTO_KEY_LEN, out + WRAP_OFF_CT, out + WRAP_OFF_TAG);
    if (rc != 0) {
        openssl_err(errmsg, errlen, "wrap DEK: AES-256-GCM");
        goto err;
    }
    return 0;

err:
    OPENSSL_cleanse(out, SV_CRYPTO_WRAPPED_LEN);
    return rc;
}

int sv_crypto_dek_unwrap(const struct sv_crypto_key *kek, uint64_t tenant_id,
                         const uint8_t *wrapped, size_t wrapped_len, struct sv_crypto_key **out,
                         char *errmsg, size_t errlen)
{
    ASSERT(kek != NULL && wrapped != NULL && out != NULL);
    uint8_t ad[WRAP_AD_LEN];
    int rc;

    if (wrapped_len != SV_CRYPTO_WRAPPED_LEN) {
        set_err(errmsg, errlen, "wrapped DEK is %zu bytes, expected %d", wrapped_len,
                SV_CRYPTO_WRAPPED_LEN);
        return SV_CRYPTO_E_FORMAT;
    }
    if (wrapped[WRAP_OFF_VERSION] != SV_CRYPTO_WRAP_VERSION) {
        set_err(errmsg, errlen, "wrapped DEK format version %u, this build reads version %d",
                (unsigned)wrapped[WRAP_OFF_VERSION], SV_CRYPTO_WRAP_VERSION);
        return SV_CRYPTO_E_VERSION;
    }
    uint32_t kek_id = (uint32_t)get_le(wrapped + WRAP_OFF_KEK_ID, 4);
    uint32_t dek_id = (uint32_t)get_le(wrapped + WRAP_OFF_DEK_ID, 4);
    if (kek_id != kek->id) {
        set_err(errmsg, errlen, "DEK %u was wrapped under KEK %u, the loaded KEK is %u",
                (unsigned)dek_id, (unsigned)kek_id, (unsigned)kek->id);
        return SV_CRYPTO_E_KEY_ID;
    }
    struct sv_crypto_key *key = key_alloc(dek_id);
    if (key == NULL) {
        set_err(errmsg, errlen, "unwrap DEK %u: out of memory", (unsigned)dek_id);
        return -ENOMEM;
    }
    wrap_ad(tenant_id, wrapped, ad);
    /* Straight into the key's (secure-heap) memory: no cleartext copy elsewhere. */
    rc = gcm_decrypt(kek->bytes, wrapped + WRAP_OFF_NONCE, ad, sizeof(ad), wrapped + WRAP_OFF_CT,
                     SV_CRYPTO_KEY_LEN, wrapped + WRAP_OFF_TAG, key->bytes);
    if (rc == SV_CRYPTO_E_AUTH) {
        set_err(errmsg, errlen,
                "DEK %u of tenant %llu does not authenticate under KEK %u "
                "(another master key with the same id, another tenant, or corrupt)",
                (unsigned)dek_id, (unsigned long long)tenant_id, (unsigned)kek_id);
        goto err_after_key;
    }
    if (rc != 0) {
        openssl_err(errmsg, errlen, "unwrap DEK: AES-256-GCM");
        goto err_after_key;
    }
    *out = key;
    return 0;

err_after_key:
    sv_crypto_key_free(key);
    return rc;
}
