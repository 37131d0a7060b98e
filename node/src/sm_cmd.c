/* The shard state machine's commands: encoding, decoding, chunk and object ids (see sm.h). */
#include "sm_internal.h"

#include "sv_assert.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

enum {
    CMD_FIXED = 1 + 8 + 2 + 2 + 8 + 4 + 4 + 1 + 8 + 8 + 8 + 8 + 8 + 8 + 32 + 8 + 4,
};

size_t sv_cmd_encoded_len(const struct sv_cmd *c)
{
    return CMD_FIXED + c->bucket_len + c->key_len + c->data_len;
}

void sv_cmd_encode(const struct sv_cmd *c, uint8_t *p)
{
    *p++ = c->type;
    sv_put64(p, c->tenant), p += 8;
    put16(p, c->bucket_len), p += 2;
    put16(p, c->key_len), p += 2;
    if (c->bucket_len)
        memcpy(p, c->bucket, c->bucket_len);
    p += c->bucket_len;
    if (c->key_len)
        memcpy(p, c->key, c->key_len);
    p += c->key_len;
    sv_put64(p, c->upload), p += 8;
    sv_put32(p, c->chunk), p += 4;
    sv_put32(p, c->n_chunks), p += 4;
    *p++ = c->has_if_version;
    sv_put64(p, c->if_version), p += 8;
    sv_put64(p, c->session), p += 8;
    sv_put64(p, c->seq), p += 8;
    sv_put64(p, c->ack_below), p += 8;
    sv_put64(p, c->mtime_ms), p += 8;
    sv_put64(p, c->size), p += 8;
    memcpy(p, c->sha256, 32), p += 32;
    sv_put64(p, c->epoch), p += 8;
    sv_put32(p, c->data_len), p += 4;
    if (c->data_len && c->data)
        memcpy(p, c->data, c->data_len);
}

int sv_cmd_decode(const uint8_t *p, size_t len, struct sv_cmd *c)
{
    memset(c, 0, sizeof *c);
    if (len < CMD_FIXED)
        return -EINVAL;
    const uint8_t *end = p + len;
    c->type = *p++;
    c->tenant = sv_get64(p), p += 8;
    c->bucket_len = get16(p), p += 2;
    c->key_len = get16(p), p += 2;
    if (c->type < SV_CMD_PUT || c->type > SV_CMD_SEED || c->bucket_len > SV_SM_NAME_MAX ||
        c->key_len > SV_SM_NAME_MAX ||
        (size_t)(end - p) < CMD_FIXED - 13u + c->bucket_len + c->key_len)
        return -EINVAL;
    c->bucket = p, p += c->bucket_len;
    c->key = p, p += c->key_len;
    c->upload = sv_get64(p), p += 8;
    c->chunk = sv_get32(p), p += 4;
    c->n_chunks = sv_get32(p), p += 4;
    c->has_if_version = *p++ != 0;
    c->if_version = sv_get64(p), p += 8;
    c->session = sv_get64(p), p += 8;
    c->seq = sv_get64(p), p += 8;
    c->ack_below = sv_get64(p), p += 8;
    c->mtime_ms = sv_get64(p), p += 8;
    c->size = sv_get64(p), p += 8;
    memcpy(c->sha256, p, 32), p += 32;
    c->epoch = sv_get64(p), p += 8;
    c->data_len = sv_get32(p), p += 4;
    if (c->data_len >
            (c->type == SV_CMD_SHIP || c->type == SV_CMD_SEED ? SV_SM_SHIP_MAX : SV_SM_DATA_MAX) ||
        (size_t)(end - p) != c->data_len)
        return -EINVAL;
    c->data = p;
    return 0;
}

void sv_chunk_id(uint64_t group, uint64_t upload, uint32_t index, uint8_t id[SV_SEG_ID_BYTES])
{
    memset(id, 0, SV_SEG_ID_BYTES);
    sv_put64be(id, group);
    sv_put64be(id + 8, upload);
    id[16] = (uint8_t)(index >> 24);
    id[17] = (uint8_t)(index >> 16);
    id[18] = (uint8_t)(index >> 8);
    id[19] = (uint8_t)index;
}

void sv_object_id(uint64_t tenant, const uint8_t *bucket, size_t blen, const uint8_t *key,
                  size_t klen, uint8_t oid[16])
{
    uint8_t t[8], md[32], zero = 0;
    unsigned mdlen = 0;
    sv_put64(t, tenant);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ASSERT(ctx);
    ASSERT(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    EVP_DigestUpdate(ctx, t, 8);
    EVP_DigestUpdate(ctx, bucket, blen);
    EVP_DigestUpdate(ctx, &zero, 1);
    EVP_DigestUpdate(ctx, key, klen);
    ASSERT(EVP_DigestFinal_ex(ctx, md, &mdlen) == 1);
    EVP_MD_CTX_free(ctx);
    memcpy(oid, md, 16);
}

size_t sv_ship_put(uint8_t *out, const struct sv_raft_entry *e)
{
    sv_put64(out, e->index);
    sv_put64(out + 8, e->term);
    out[16] = e->type;
    sv_put32(out + 17, e->len);
    if (e->len)
        memcpy(out + SV_SHIP_ENTRY_HEAD, e->data, e->len);
    return SV_SHIP_ENTRY_HEAD + e->len;
}

int sv_ship_next(const uint8_t *data, size_t len, size_t *off, struct sv_raft_entry *e)
{
    if (*off == len)
        return 0;
    if (*off > len || len - *off < SV_SHIP_ENTRY_HEAD)
        return -EINVAL;
    const uint8_t *p = data + *off;
    e->index = sv_get64(p);
    e->term = sv_get64(p + 8);
    e->type = p[16];
    e->len = sv_get32(p + 17);
    if (e->len > len - *off - SV_SHIP_ENTRY_HEAD)
        return -EINVAL;
    e->data = (uint8_t *)p + SV_SHIP_ENTRY_HEAD;
    *off += SV_SHIP_ENTRY_HEAD + e->len;
    return 1;
}
