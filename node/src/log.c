/* The node's logger: one line per event in one write(), keyed hashes of names (see log.h). */
#define _GNU_SOURCE
#include "log.h"

#include "sv_assert.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static _Atomic uint64_t log_node;
static _Atomic int log_min = SV_LOG_INFO;

static pthread_once_t name_key_once = PTHREAD_ONCE_INIT;
static uint8_t name_key[16];

static void name_key_draw(void)
{
    for (size_t got = 0; got < sizeof name_key;) {
        ssize_t n = getrandom(name_key + got, sizeof name_key - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        ASSERT(n > 0); /* the kernel's generator does not fail once the system has booted */
        got += (size_t)n;
    }
}

void sv_log_setup(uint64_t node_id, enum sv_log_level min)
{
    ASSERT(min >= SV_LOG_DEBUG && min <= SV_LOG_ERROR);
    atomic_store_explicit(&log_node, node_id, memory_order_relaxed);
    atomic_store_explicit(&log_min, (int)min, memory_order_relaxed);
    int rc = pthread_once(&name_key_once, name_key_draw);
    ASSERT(rc == 0);
}

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_words[] = {"debug", "info", "warn", "error"};
_Static_assert(sizeof level_names / sizeof level_names[0] == SV_LOG_ERROR + 1, "a name per level");
_Static_assert(sizeof level_words / sizeof level_words[0] == SV_LOG_ERROR + 1, "a word per level");

int sv_log_level_parse(const char *s, enum sv_log_level *out)
{
    for (int i = SV_LOG_DEBUG; s && i <= SV_LOG_ERROR; i++) {
        if (!strcmp(s, level_words[i])) {
            *out = (enum sv_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void sv_log(enum sv_log_level lvl, const char *fmt, ...)
{
    ASSERT(lvl >= SV_LOG_DEBUG && lvl <= SV_LOG_ERROR);
    if ((int)lvl < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    int saved_errno = errno;
    char line[SV_LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    int k =
        snprintf(line + n, sizeof line - n, ".%03ldZ node=%" PRIu64 " %s ", ts.tv_nsec / 1000000,
                 atomic_load_explicit(&log_node, memory_order_relaxed), level_names[lvl]);
    ASSERT(k > 0 && (size_t)k < sizeof line - n - 1);
    n += (size_t)k;
    /* The message, cut to leave room for the newline (it takes the NUL's place). */
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    size_t room = sizeof line - n - 1;
    size_t msg = m < 0 ? 0 : (size_t)m < room ? (size_t)m : room;
    for (size_t i = n; i < n + msg; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            line[i] = '?';
    }
    n += msg;
    line[n++] = '\n';
    /* One write: a pipe takes up to PIPE_BUF bytes atomically, and a file
     * opened for appending (deploy/cluster's svd.log) one write at a time. */
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report it */
        off += (size_t)w;
    }
    errno = saved_errno;
}

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012) ------------------------ */

static uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = rotl(v[2], 32);
}

uint64_t sv__log_siphash(const uint8_t key[16], const void *p, size_t len)
{
    const uint8_t *in = p;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v[4] = {
        0x736f6d6570736575ull ^ k0,
        0x646f72616e646f6dull ^ k1,
        0x6c7967656e657261ull ^ k0,
        0x7465646279746573ull ^ k1,
    };
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = le64(in + i);
        v[3] ^= m;
        sipround(v);
        sipround(v);
        v[0] ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v[3] ^= b;
    sipround(v);
    sipround(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

void sv_log_name(const void *name, size_t len, char out[SV_LOG_NAME_HEX + 1])
{
    int rc = pthread_once(&name_key_once, name_key_draw);
    ASSERT(rc == 0);
    uint64_t h = sv__log_siphash(name_key, len ? name : "", len);
    snprintf(out, SV_LOG_NAME_HEX + 1, "%016" PRIx64, h);
}
