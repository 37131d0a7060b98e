/* Direct I/O staging for node/ stores: one aligned buffer, grown on demand. */
#ifndef SV_DIO_H
#define SV_DIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* n rounded up to a multiple of align (a power of two). */
static inline uint64_t sv_align_up(uint64_t n, uint64_t align)
{
    return (n + align - 1) & ~(align - 1);
}

/* Make *buf (align-aligned, *cap bytes) hold at least need bytes. False when
 * the memory cannot be had; *buf and *cap are then unchanged. */
static inline bool sv_dio_reserve(uint8_t **buf, size_t *cap, size_t need, size_t align)
{
    if (need <= *cap)
        return true;
    void *p = NULL;
    if (posix_memalign(&p, align, need) != 0)
        return false;
    free(*buf);
    *buf = p;
    *cap = need;
    return true;
}

#endif
