/* The one logger of node/: one line per event on stderr, and keyed hashes for object names.
 *
 * A line reads
 *     2026-12-07T11:16:03.123Z node=3 INFO text
 * (UTC time to the millisecond, the node id given to sv_log_setup, the level,
 * the message). tests/ and jepsen/ grep these lines: keep the format. Each
 * line goes out in ONE write() of at most SV_LOG_LINE_MAX bytes (PIPE_BUF), so
 * lines of concurrent threads never interleave; a longer message is cut.
 * Control characters in the message (a newline in a LevelDB error, say) are
 * written as '?', so that one event stays one line.
 *
 * What is never logged: object names (bucket, key, prefix) in clear (print
 * sv_log_name of them instead) and tokens. See node/README.md, "Logging".
 *
 * Thread safety: every function may be called from any thread; sv_log_setup
 * belongs before the threads start (it is still safe later).
 *
 * Include this header from .c files only: node.c keeps private LOG_* macros
 * until it switches to these, and a header that pulled this one in would
 * redefine them there.
 */
#ifndef SV_LOG_H
#define SV_LOG_H

#include <stddef.h>
#include <stdint.h>

enum sv_log_level { SV_LOG_DEBUG, SV_LOG_INFO, SV_LOG_WARN, SV_LOG_ERROR };

enum {
    SV_LOG_LINE_MAX = 4096, /* bytes of a line, newline included: PIPE_BUF, one atomic write */
    SV_LOG_NAME_HEX = 16,   /* hex digits of sv_log_name: 64 bits of a keyed hash */
};

/* Name the node in every line (node_id; 0 before setup) and drop the lines
 * below min (SV_LOG_INFO before setup). Also draws the per-process key of
 * sv_log_name if it is not drawn yet. */
void sv_log_setup(uint64_t node_id, enum sv_log_level min);

/* Parse "debug", "info", "warn" or "error" (the SV_LOG_LEVEL variable of svd)
 * into *out: 0, or -EINVAL (*out untouched). */
int sv_log_level_parse(const char *s, enum sv_log_level *out);

/* Write one line at lvl, unless lvl is below the minimum. fmt is printf's.
 * errno is preserved. */
void sv_log(enum sv_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) sv_log(SV_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) sv_log(SV_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) sv_log(SV_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) sv_log(SV_LOG_ERROR, __VA_ARGS__)

/* A name (bucket, key, ...: name[0..len), borrowed) as it may appear in a
 * log: SipHash-2-4 under a key drawn from getrandom() once per process,
 * as SV_LOG_NAME_HEX lowercase hex digits and a NUL in out (caller-owned).
 * The same name gives the same text for the life of the process, so one
 * node's lines about it can be told apart and correlated; the name cannot
 * be recovered from it, nor the text predicted without the key, which is
 * never written anywhere. */
void sv_log_name(const void *name, size_t len, char out[SV_LOG_NAME_HEX + 1]);

/* SipHash-2-4 of p[0..len) under key, for the test's reference vectors. */
uint64_t sv__log_siphash(const uint8_t key[16], const void *p, size_t len);

#endif
