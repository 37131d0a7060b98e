/* svctl's small shared helpers: JSON strings, times and pauses. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "svctl.h"

/* JSON string output (bytes >= 0x80 pass through). */
void sv__json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* The length of the valid UTF-8 sequence at p for a printable character
 * (U+00A0 and up: no C1 control, no overlong form, no surrogate, at most
 * U+10FFFF, none that is invisible or reorders the text), or 0. */
static size_t utf8_printable(const unsigned char *p)
{
    uint32_t cp;
    size_t n;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2, cp = p[0] & 0x1fu;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        n = 3, cp = p[0] & 0x0fu;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        n = 4, cp = p[0] & 0x07u;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* also the terminating NUL */
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    static const uint32_t min[5] = {0, 0, 0xa0, 0x800, 0x10000};
    if (cp < min[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    /* Invisible or reordering: zero-width marks, line and paragraph
     * separators, bidi embeddings, overrides and isolates, the BOM. */
    if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff)
        return 0;
    return n;
}

size_t sv__text_esc(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        char esc[5];
        const char *piece = (const char *)p;
        size_t n = *p >= 0x20 && *p < 0x7f ? 1 : utf8_printable(p);
        if (*p == '\\') {
            piece = "\\\\";
        } else if (n == 0) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            piece = esc;
            n = 1;
        }
        size_t plen = piece == (const char *)p ? n : strlen(piece);
        if (o + plen >= cap)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        p += n;
    }
    out[o] = 0;
    return o;
}

void sv__iso_time(uint64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03uZ", (unsigned)(ms % 1000));
}

int64_t sv__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t sv__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sv__pause_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
