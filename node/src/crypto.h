/* ShardVault chunk encryption at rest: AES-256-GCM chunk sealing, the master
 * key file (KEK) and data key (DEK) wrapping.
 *
 * Keys. A `struct sv_crypto_key` is opaque: 32 key bytes, a key id (uint32,
 * written into every sealed chunk and wrapped key so a key can be rotated
 * while old data stays readable) and a count of seals done with it. Key
 * memory comes from OpenSSL's secure heap (mlocked when the node calls
 * CRYPTO_secure_malloc_init, plain heap otherwise) and is wiped with
 * OPENSSL_cleanse when the key is freed. A key is immutable apart from its
 * atomic seal counter, so one key may be used by several threads at once.
 *
 * Sealed chunk layout (SV_CRYPTO_SEAL_OVERHEAD = 33 bytes of overhead):
 *
 *   offset  size  field
 *        0     1  format version (SV_CRYPTO_SEAL_VERSION)
 *        1     4  key id, little endian
 *        5    12  nonce (96 bits from RAND_bytes)
 *       17     n  ciphertext (n = plaintext length, 0 .. SV_CRYPTO_CHUNK_MAX)
 *     17+n    16  GCM tag
 *
 * The GCM associated data is sv_crypto_chunk_ad_encode(ad) (tenant, object,
 * chunk index, version: see below) followed by bytes 0..4 of the header
 * (format version and key id), so a chunk cannot be moved to another
 * object or index, replayed as another version, or relabelled with another
 * key id; the nonce is authenticated by GCM itself.
 *
 * Nonce bound. Nonces are random, so the limit of NIST SP 800-38D §8.3
 * applies: at most 2^32 encryptions per key (the chance that two of 2^32
 * random 96-bit nonces collide is about 2^-33; a collision under GCM leaks
 * the XOR of two plaintexts and the authentication key). With 1 MiB chunks
 * that is 4 PiB per key. Every key counts its seals and refuses the seal
 * after SV_CRYPTO_KEY_SEALS_MAX with SV_CRYPTO_E_KEY_EXHAUSTED. The counter
 * lives in memory only: the node persists how many seals each DEK may have
 * done (reserving them in blocks before use, so a crash can only overcount),
 * restores it with sv_crypto_key_seals_restore() and rotates a tenant's DEK
 * once it passes SV_CRYPTO_KEY_ROTATE_SEALS: new chunks are sealed under the
 * new key id, old ones still open with the old DEK until rewritten.
 *
 * Errors: functions return 0, a negative errno for system errors, or a
 * negative enum sv_crypto_err. For a stored chunk, every error of
 * sv_crypto_open() except SV_CRYPTO_E_BUFFER means the stored bytes are bad
 * (SV_CRYPTO_E_AUTH in particular: a failed tag is corruption or tampering).
 * Functions taking `char *errmsg, size_t errlen` write a NUL-terminated
 * explanation there on failure (errmsg may be NULL when errlen is 0).
 * NULL pointers where a pointer is required are programmer errors and abort.
 */
#ifndef SHARDVAULT_NODE_CRYPTO_H
#define SHARDVAULT_NODE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes and limits. */
enum {
    SV_CRYPTO_KEY_LEN = 32,       /* AES-256 */
    SV_CRYPTO_NONCE_LEN = 12,     /* GCM 96-bit nonce */
    SV_CRYPTO_TAG_LEN = 16,       /* GCM full-length tag */
    SV_CRYPTO_OBJECT_ID_LEN = 16, /* object ids are 128-bit */

    SV_CRYPTO_CHUNK_MAX = 1 << 20, /* plaintext bytes in one chunk */
    SV_CRYPTO_SEAL_VERSION = 1,    /* byte 0 of a sealed chunk */
    SV_CRYPTO_SEAL_HEADER_LEN = 1 + 4 + SV_CRYPTO_NONCE_LEN,
    SV_CRYPTO_SEAL_OVERHEAD = SV_CRYPTO_SEAL_HEADER_LEN + SV_CRYPTO_TAG_LEN,
    SV_CRYPTO_SEALED_MAX = SV_CRYPTO_CHUNK_MAX + SV_CRYPTO_SEAL_OVERHEAD,

    /* Encoded associated data: prefix "shardvault/chunk" (16 bytes), format
     * version (1), tenant id (8), object id (16), chunk index (8), version (8). */
    SV_CRYPTO_CHUNK_AD_VERSION = 1,
    SV_CRYPTO_CHUNK_AD_LEN = 16 + 1 + 8 + SV_CRYPTO_OBJECT_ID_LEN + 8 + 8,

    /* Master key file, 80 bytes: magic "SVMASTER" (8), format version (1), three zero
     * bytes, key id (4, LE), key (32), SHA-256 of the 48 bytes before it (32). */
    SV_CRYPTO_MASTER_VERSION = 1,
    SV_CRYPTO_MASTER_FILE_LEN = 8 + 1 + 3 + 4 + SV_CRYPTO_KEY_LEN + 32,

    /* Wrapped DEK, 69 bytes: format version (1), KEK id (4, LE), DEK id (4, LE), nonce
     * (12), encrypted DEK (32), tag (16). */
    SV_CRYPTO_WRAP_VERSION = 1,
    SV_CRYPTO_WRAPPED_LEN = 1 + 4 + 4 + SV_CRYPTO_NONCE_LEN + SV_CRYPTO_KEY_LEN + SV_CRYPTO_TAG_LEN,

    SV_CRYPTO_PATH_MAX = 4096, /* key file path, including the NUL */
};

/* Seals (and wraps) allowed per key with random nonces (see the file comment). */
#define SV_CRYPTO_KEY_SEALS_MAX (UINT64_C(1) << 32)
/* Seal count at which the node rotates a DEK: half the limit leaves room for
 * seals in flight and for counts reserved but lost in a crash. */
#define SV_CRYPTO_KEY_ROTATE_SEALS (UINT64_C(1) << 31)

/* Domain errors: -2500 .. -2451, svcrypto's range of the node's error space
 * (errors.h; disjoint from -errno and every other module's). */
enum sv_crypto_err {
    SV_CRYPTO_OK = 0,
    SV_CRYPTO_E_TOO_BIG = -2500, /* plaintext over SV_CRYPTO_CHUNK_MAX */
    SV_CRYPTO_E_BUFFER,          /* output buffer too small */
    SV_CRYPTO_E_FORMAT,          /* malformed input: length, magic, reserved bytes */
    SV_CRYPTO_E_VERSION,         /* unsupported format version */
    SV_CRYPTO_E_AUTH,            /* authentication failed: wrong key, wrong context, tampered */
    SV_CRYPTO_E_KEY_ID,          /* sealed or wrapped under another key id */
    SV_CRYPTO_E_CHECKSUM,        /* key file checksum mismatch */
    SV_CRYPTO_E_INSECURE,        /* key file readable by others or owned by another user */
    SV_CRYPTO_E_KEY_EXHAUSTED,   /* key reached SV_CRYPTO_KEY_SEALS_MAX: rotate it */
    SV_CRYPTO_E_RANDOM,          /* the random generator failed */
    SV_CRYPTO_E_OPENSSL,         /* any other OpenSSL failure */
    SV_CRYPTO_E_LAST_
};

/* Static string for an error code: the domain errors above, strerror() text
 * for a negative errno, "unknown" for anything else. */
const char *sv_crypto_strerror(int err);

struct sv_crypto_key;

/* Allocate a key with id and SV_CRYPTO_KEY_LEN fresh random bytes
 * (RAND_priv_bytes). On success *out owns the key; the caller frees it with
 * sv_crypto_key_free. Returns 0, -ENOMEM or SV_CRYPTO_E_RANDOM. */
int sv_crypto_key_generate(uint32_t id, struct sv_crypto_key **out);

/* Allocate a key with id and a copy of bytes[0..SV_CRYPTO_KEY_LEN) (the
 * caller still owns and should wipe bytes). On success *out owns the key;
 * free it with sv_crypto_key_free. Returns 0 or -ENOMEM. */
int sv_crypto_key_from_bytes(uint32_t id, const uint8_t *bytes, struct sv_crypto_key **out);

/* Wipe (OPENSSL_cleanse) and free key. NULL is a no-op. */
void sv_crypto_key_free(struct sv_crypto_key *key);

/* The key's id. key is borrowed. */
uint32_t sv_crypto_key_id(const struct sv_crypto_key *key);

/* Seals and wraps done with key, as counted in memory plus any restored
 * count. key is borrowed. */
uint64_t sv_crypto_key_seals(const struct sv_crypto_key *key);

/* Set the seal count of key to a persisted value (at least the number of
 * seals ever done with these key bytes), before the key is shared between
 * threads. key is borrowed. */
void sv_crypto_key_seals_restore(struct sv_crypto_key *key, uint64_t seals);

/* What a chunk's ciphertext is bound to. */
struct sv_crypto_chunk_ad {
    uint64_t tenant_id;
    uint8_t object_id[SV_CRYPTO_OBJECT_ID_LEN];
    uint64_t chunk_index;
    uint64_t version; /* object version the chunk belongs to */
};

/* Canonical encoding of ad into out[0..SV_CRYPTO_CHUNK_AD_LEN): the prefix
 * "shardvault/chunk", SV_CRYPTO_CHUNK_AD_VERSION, then every field fixed
 * width, little endian, in struct order. Both pointers are borrowed. */
void sv_crypto_chunk_ad_encode(const struct sv_crypto_chunk_ad *ad, uint8_t *out);

/* Bytes sv_crypto_seal writes for plain_len bytes of plaintext
 * (plain_len + SV_CRYPTO_SEAL_OVERHEAD). */
size_t sv_crypto_sealed_len(size_t plain_len);

/* Encrypt plain[0..plain_len) under key, bound to ad, with a fresh random
 * nonce, into out[0..out_cap) in the layout of the file comment; *out_len is
 * set to sv_crypto_sealed_len(plain_len). Every pointer is borrowed; plain
 * may be NULL when plain_len is 0; plain and out must not overlap. Counts
 * one seal on key.
 * Returns 0, SV_CRYPTO_E_TOO_BIG, SV_CRYPTO_E_BUFFER, SV_CRYPTO_E_KEY_EXHAUSTED,
 * SV_CRYPTO_E_RANDOM or SV_CRYPTO_E_OPENSSL; on failure *out_len is 0 and
 * out[0..out_cap) is zeroed. */
int sv_crypto_seal(const struct sv_crypto_key *key, const struct sv_crypto_chunk_ad *ad,
                   const void *plain, size_t plain_len, uint8_t *out, size_t out_cap,
                   size_t *out_len);

/* Key id of a sealed chunk, to pick the key for sv_crypto_open (the id is
 * authenticated only when the chunk is opened). Returns 0,
 * SV_CRYPTO_E_FORMAT (too short or too long) or SV_CRYPTO_E_VERSION. */
int sv_crypto_sealed_key_id(const uint8_t *sealed, size_t sealed_len, uint32_t *key_id);

/* Verify and decrypt sealed[0..sealed_len) under key and ad into
 * out[0..out_cap); *out_len is set to the plaintext length
 * (sealed_len - SV_CRYPTO_SEAL_OVERHEAD). Every pointer is borrowed; out may
 * be NULL when out_cap is 0; sealed and out must not overlap.
 * Returns 0, SV_CRYPTO_E_FORMAT (length), SV_CRYPTO_E_VERSION,
 * SV_CRYPTO_E_KEY_ID (header names another key id), SV_CRYPTO_E_BUFFER,
 * SV_CRYPTO_E_AUTH (wrong key, wrong ad, or any byte changed) or
 * SV_CRYPTO_E_OPENSSL. On failure *out_len is 0 and out[0..out_cap) is
 * zeroed: no unauthenticated plaintext is ever left in out. */
int sv_crypto_open(const struct sv_crypto_key *key, const struct sv_crypto_chunk_ad *ad,
                   const uint8_t *sealed, size_t sealed_len, void *out, size_t out_cap,
                   size_t *out_len);

/* Create the master key file (KEK) at path: SV_CRYPTO_MASTER_FILE_LEN bytes
 * (layout above) with a fresh random key and key_id, mode 0600, created with
 * O_CREAT|O_EXCL (an existing file, or a symlink, is never overwritten:
 * -EEXIST), then the file and its directory are fsynced. On failure after
 * the file was created it is removed. path is borrowed. Returns 0, a
 * negative errno, SV_CRYPTO_E_RANDOM or SV_CRYPTO_E_OPENSSL. A crash during
 * creation can leave a short file, which sv_crypto_master_load rejects. */
int sv_crypto_master_create(const char *path, uint32_t key_id, char *errmsg, size_t errlen);

/* Load the master key file at path. Refuses (SV_CRYPTO_E_INSECURE) a file
 * with any group or other permission bit or owned by another user than the
 * effective one; SV_CRYPTO_E_FORMAT for a file that is not regular, has the
 * wrong size, a bad magic or non-zero reserved bytes; SV_CRYPTO_E_VERSION;
 * SV_CRYPTO_E_CHECKSUM; a negative errno (-ENOENT, -EACCES, ...). On success
 * *out owns the KEK (free with sv_crypto_key_free). path is borrowed; the
 * file image read into memory is wiped before returning. */
int sv_crypto_master_load(const char *path, struct sv_crypto_key **out, char *errmsg,
                          size_t errlen);

/* Wrap dek (a tenant's data key) with kek into out[0..SV_CRYPTO_WRAPPED_LEN)
 * for storage in the meta group. AES-256-GCM with a random nonce; the
 * associated data names the purpose ("shardvault/dek-wrap"), the tenant and
 * the header (version, KEK id, DEK id), so a wrapped key cannot be moved to
 * another tenant or relabelled. All pointers are borrowed. Counts one seal
 * on kek. Returns 0, SV_CRYPTO_E_KEY_EXHAUSTED, SV_CRYPTO_E_RANDOM or
 * SV_CRYPTO_E_OPENSSL (out zeroed on failure). */
int sv_crypto_dek_wrap(const struct sv_crypto_key *kek, uint64_t tenant_id,
                       const struct sv_crypto_key *dek, uint8_t *out, char *errmsg, size_t errlen);

/* Unwrap wrapped[0..wrapped_len) (from sv_crypto_dek_wrap) with kek for
 * tenant_id. On success *out owns the DEK, whose id is the DEK id in the
 * wrapped header (callers compare it with the id they expect); free it with
 * sv_crypto_key_free. Returns 0, SV_CRYPTO_E_FORMAT (length),
 * SV_CRYPTO_E_VERSION, SV_CRYPTO_E_KEY_ID (wrapped under another KEK id),
 * SV_CRYPTO_E_AUTH (wrong KEK, wrong tenant, or corrupt), -ENOMEM or
 * SV_CRYPTO_E_OPENSSL; *out is untouched on failure. */
int sv_crypto_dek_unwrap(const struct sv_crypto_key *kek, uint64_t tenant_id,
                         const uint8_t *wrapped, size_t wrapped_len, struct sv_crypto_key **out,
                         char *errmsg, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
