/* svctl internals shared by svctl.c (object commands, status, main) and
 * svctl_admin.c (node, cluster and sched commands). */
#ifndef SVCTL_H
#define SVCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "shardvault/client.h"

enum {
    EXIT_OK = 0,
    EXIT_ERR = 1,
    EXIT_USAGE = 2,
    EXIT_NOT_FOUND = 3,
    EXIT_DENIED = 4,
    EXIT_UNAVAILABLE = 5,
    EXIT_CONFLICT = 6,
    EXIT_READ_ONLY = 7, /* a write to a standby or fenced site (the message names the active one) */
};

struct global {
    const char *endpoints, *ca, *token;
    bool json;
    uint32_t deadline_ms;
};

/* "svctl: MESSAGE (see svctl --help)" on stderr. */
void sv__usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Report err for "cmd target" (target may be NULL) on one stderr line with
 * sv_client_errmsg(); returns the exit code. */
int sv__fail(const char *cmd, const char *target, int err);

/* "--name value" or "--name=value" at argv[*i]: true when it is name (*val
 * NULL when the value is missing; *i moves past a separate value). */
bool sv__opt_value(int argc, char **argv, int *i, const char *name, const char **val);

/* A decimal unsigned number (no sign, no suffix). */
bool sv__parse_u64(const char *s, uint64_t *out);

/* s as a JSON string (quotes and escapes) on f. */
void sv__json_str(FILE *f, const char *s);

/* s for a terminal, into out (cap bytes, NUL-terminated; cut at a whole
 * character): printable ASCII and valid UTF-8 of printable characters as
 * they are, a backslash as \\, every other byte (controls, escape
 * sequences, bytes of no valid character) as \xHH. Returns the length. */
enum { SV_TEXT_ESC_MAX = 4 * 1024 + 1 }; /* a key of 1,024 bytes, each escaped */
size_t sv__text_esc(const char *s, char *out, size_t cap);

/* ms since the epoch as 2006-01-02T15:04:05.000Z into out. */
void sv__iso_time(uint64_t ms, char *out, size_t cap);

/* The wall clock (ms since the epoch), a monotonic clock (ms), a pause that
 * survives signals (svctl_util.c). */
int64_t sv__wall_ms(void);
uint64_t sv__mono_ms(void);
void sv__pause_ms(uint64_t ms);

/* The point in time a promotion keeps: what the standby holds of the primary. */
struct sv__dr_cut {
    int64_t frontier_ms;     /* the site frontier, -1 unknown */
    int64_t max_ms;          /* the highest shard frontier, -1 unknown */
    int64_t last_contact_ms; /* wall clock of the most recent contact with the primary, -1 */
    int64_t rpo_ms;          /* last contact minus frontier, -1 unknown */
};

/* The cut of a standby's report s, read at the client's wall clock now_ms. */
struct sv__dr_cut sv__dr_cut_of(const struct sv_dr_status *s, int64_t now_ms);
/* k with the cut the promotion made (-1: none), its RPO bound with it. */
void sv__dr_cut_at(struct sv__dr_cut *k, int64_t cut_ms);

/* Ask every node of c's site (sv_client_dr_status, every 100 ms) until each
 * that answers is primary at site epoch and every shard is led by one of
 * them, or until the monotonic clock passes deadline_ms. True when open:
 * *open_ms is the monotonic time it was seen, *answered and *nodes the
 * counts of that report; false with why saying what is still missing. */
bool sv__dr_wait_open(struct sv_client *c, uint64_t epoch, uint64_t deadline_ms, uint64_t *open_ms,
                      size_t *answered, size_t *nodes, char *why, size_t cap);

/* The node, cluster, sched and dr commands (svctl_admin.c). With c NULL they
 * only check their arguments: 0 when fine, -1 after printing --help, or
 * EXIT_USAGE after a usage error; with a client they run and return the
 * exit code. */
int sv__run_node(struct sv_client *c, const struct global *g, int argc, char **argv);
int sv__run_cluster(struct sv_client *c, const struct global *g, int argc, char **argv);
int sv__run_sched(struct sv_client *c, const struct global *g, int argc, char **argv);
int sv__run_dr(struct sv_client *c, const struct global *g, int argc, char **argv);
/* svctl dr drill (svctl_drill.c): with g NULL it only checks its arguments
 * (0, -1 after --help, EXIT_USAGE); otherwise it runs the drill with clients
 * of its own (--primary, --standby) and returns the exit code. */
int sv__dr_drill(const struct global *g, int argc, char **argv);
extern const char sv__node_usage[], sv__cluster_usage[], sv__sched_usage[], sv__dr_usage[];

#endif
