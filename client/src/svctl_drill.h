/* svctl dr drill: the drill's record (its steps, every acknowledged write, the lag
 * samples) and what is computed and written from it (figures; text, JSON and
 * self-contained HTML reports), apart from the network for its tests
 * (svctl_drill_report.c). The run itself is svctl_drill.c. */
#ifndef SVCTL_DRILL_H
#define SVCTL_DRILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    SV__DRILL_ACKS_MAX = 1 << 20,         /* acknowledged writes recorded; the load stops there */
    SV__DRILL_LAG_SAMPLES_MAX = 4096,     /* lag samples kept */
    SV__DRILL_TEXT_MAX = 512,             /* bytes of a step's sentence */
    SV__DRILL_RUN_MAX = 48,               /* bytes of the run's name (the key prefix) */
    SV__DRILL_KEY_MAX = 96,               /* bytes of a drill key */
    SV__DRILL_MISSING_LISTED_MAX = 10000, /* missing writes listed in text and JSON */
    SV__DRILL_MISSING_HTML_MAX = 1000,    /* and in the HTML page */
};

/* The steps, in the order they run and are reported. */
enum sv__drill_step_id {
    SV__DRILL_PREFLIGHT,
    SV__DRILL_LOAD,
    SV__DRILL_LAG,
    SV__DRILL_OUTAGE,
    SV__DRILL_PROMOTE,
    SV__DRILL_RTO,
    SV__DRILL_VERIFY,
    SV__DRILL_RESTORE,
    SV__DRILL_FENCED,
    SV__DRILL_FAILBACK,
    SV__DRILL_LEDGER,
    SV__DRILL_SWITCHBACK,
    SV__DRILL_STEPS
};

enum sv__drill_status {
    SV__DRILL_NOT_RUN = 0, /* not reached (the drill stopped before it) */
    SV__DRILL_OK,
    SV__DRILL_FAILED,
    SV__DRILL_SKIPPED,   /* not run because an earlier step failed; the sentence says which */
    SV__DRILL_NOT_BUILT, /* the system cannot do it yet: reported, never pretended */
};

struct sv__drill_step {
    enum sv__drill_status status;
    int64_t start_ms, end_ms; /* wall clock, -1 when not run */
    char text[SV__DRILL_TEXT_MAX];
};

enum sv__drill_site { SV__DRILL_AT_PRIMARY = 0, SV__DRILL_AT_STANDBY = 1 };

/* What reading an acknowledged write back from the promoted site found. */
/* The clock skew allowed between this client and the primary's nodes: a
 * write sent this long after the cut was stamped after it. */
enum { SV__DRILL_SKEW_MS = 250 };

enum sv__drill_check {
    SV__DRILL_UNCHECKED = 0,
    SV__DRILL_PRESENT,    /* byte-equal */
    SV__DRILL_MISSING,    /* not found: lost with the primary (the RPO loss) */
    SV__DRILL_DIFFERS,    /* found with other bytes */
    SV__DRILL_UNREADABLE, /* the read failed (unknown) */
};

/* One acknowledged write: key RUN/cCLIENT-SEQ in the drill's bucket. */
struct sv__drill_ack {
    uint32_t client, seq;
    uint8_t site;  /* enum sv__drill_site: the site the write was sent to */
    uint8_t check; /* enum sv__drill_check */
    int64_t sent_ms, ack_ms;
};

/* The record of one drill. The caller owns it; sv__drill_free frees acks. */
struct sv__drill {
    /* Settings (strings borrowed). */
    char run[SV__DRILL_RUN_MAX]; /* "drill-<start ms>": every key starts with it */
    const char *bucket, *primary_endpoints, *standby_endpoints, *outage_cmd, *restore_cmd;
    const char *out_dir;
    uint32_t load_clients, warmup_s, object_bytes, step_timeout_s;
    int64_t max_lag_ms;

    char primary_site[32], standby_site[32]; /* as the sites name themselves ("" unknown) */
    int64_t start_ms, end_ms;
    struct sv__drill_step steps[SV__DRILL_STEPS];

    struct sv__drill_ack *acks; /* malloc'd, n_acks of cap_acks */
    size_t n_acks, cap_acks;
    bool acks_full;           /* SV__DRILL_ACKS_MAX reached: the load stopped */
    uint64_t primary_failed;  /* puts to the primary that failed */
    uint64_t standby_refused; /* puts to the standby refused READ_ONLY */
    uint64_t standby_failed;  /* other failures of puts to the standby */

    int64_t lag_ms[SV__DRILL_LAG_SAMPLES_MAX]; /* the standby's lag, sampled under load */
    size_t n_lag;
    size_t lag_unknown; /* samples where the lag was unknown or status failed */

    int64_t t_out_ms;    /* the outage command started: the load stops going to the primary */
    int64_t cut_ms;      /* the promotion's cut (else the standby's site frontier read
                            before the promotion), -1 */
    bool cut_made;       /* cut_ms is the cut the promotion made (not a frontier read) */
    int64_t cut_max_ms;  /* its highest shard frontier, -1 */
    int64_t promoted_ms; /* the promotion was recorded, -1 */
    int64_t open_ms;     /* every node of the promoted site took writes, -1 */
    uint64_t site_epoch; /* of the promotion, 0 none */

    /* Failback, the ledger, switch back (-1: not known, the step did not run). */
    int64_t ledger_size;          /* writes failback moved into the ledger */
    int64_t ledger_matched;       /* of the drill's missing writes, found in the ledger */
    int64_t switchback_paused_ms; /* writes paused by the switch back */
};

/* The figures of a drill, computed from its record. -1: unknown or none. */
struct sv__drill_figures {
    size_t primary_acks; /* writes the primary acknowledged */
    size_t primary_late; /* of them, acknowledged at or after T_out (in flight then) */
    size_t standby_acks; /* writes the promoted site acknowledged */
    size_t present, missing, differs, unreadable, unchecked; /* of the primary's */
    size_t missing_before_cut; /* missing writes acknowledged before the cut: a broken promise */
    size_t present_after_cut;  /* present writes sent SV__DRILL_SKEW_MS past the cut the
                                  promotion made: it drops every later write (a broken promise) */
    int64_t rpo_window_ms;     /* T_out minus the cut */
    int64_t rto_ms;            /* first write the standby acknowledged minus T_out */
    int64_t first_standby_ack_ms, last_primary_ack_ms, first_missing_ack_ms;
    int64_t lag_p50_ms, lag_p99_ms, lag_max_ms, lag_last_ms;
};

/* Names: "preflight", ...; "ok", "failed", "skipped", "not built", "not run". */
extern const char *const sv__drill_step_names[SV__DRILL_STEPS];
const char *sv__drill_status_name(enum sv__drill_status s);

/* A fresh record: every step not run, times unknown. */
void sv__drill_init(struct sv__drill *d);
void sv__drill_free(struct sv__drill *d);

/* Record an acknowledged write (grows acks). Returns false when full
 * (SV__DRILL_ACKS_MAX, then acks_full is set) or out of memory. Not
 * thread-safe: the caller serializes. */
bool sv__drill_add_ack(struct sv__drill *d, const struct sv__drill_ack *a);

/* The key of write (client, seq) of run: "RUN/cCLIENT-SEQ", into out (cap >=
 * SV__DRILL_KEY_MAX). */
void sv__drill_key(const char *run, uint32_t client, uint32_t seq, char *out, size_t cap);

/* The bytes of write (client, seq) of run: len bytes drawn from a generator
 * seeded by the three, so the check needs no copy of them. */
void sv__drill_payload(const char *run, uint32_t client, uint32_t seq, uint8_t *out, size_t len);

/* Record a step's outcome: status, its end (now_ms) and a sentence. */
void sv__drill_step_end(struct sv__drill *d, enum sv__drill_step_id id, enum sv__drill_status st,
                        int64_t now_ms, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Compute the figures of d into *f (pure: d's times are inputs). */
void sv__drill_figures(const struct sv__drill *d, struct sv__drill_figures *f);

/* Whether every built step passed: every step ok or not built. */
bool sv__drill_passed(const struct sv__drill *d);

/* The reports of d: text (what stdout shows), JSON (drill.json) and one
 * self-contained HTML page (drill.html: no external asset). */
void sv__drill_text(FILE *out, const struct sv__drill *d);
void sv__drill_json(FILE *out, const struct sv__drill *d);
void sv__drill_html(FILE *out, const struct sv__drill *d);

#endif
