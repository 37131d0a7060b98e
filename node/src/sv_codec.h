/* Fixed-width integer encoding and CRC32C for node/ records: one definition
 * for every store. */
#ifndef SV_CODEC_H
#define SV_CODEC_H

#include <stddef.h>
#include <stdint.h>

static inline void sv_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sv_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t sv_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t sv_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Big endian, for keys that must sort in numeric order. */
static inline void sv_put64be(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t sv_get64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* CRC32C (Castagnoli) of data, continuing from crc (0 to start). Thread-safe. */
uint32_t sv_crc32c(uint32_t crc, const void *data, size_t len);

#endif
