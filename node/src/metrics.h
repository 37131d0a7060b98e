/* svd observability: a registry of counters, gauges and histograms rendered in
 * the Prometheus text exposition format 0.0.4, and the plain-HTTP endpoint
 * that serves it (/metrics) with a health check (/health).
 *
 * A registry holds families (one metric name, its type, help text and label
 * names, fixed at registration) and, in each family, series (one set of label
 * values). Registering a series returns a handle; the hot path updates the
 * handle only: sv_counter_add is one relaxed atomic add, sv_histogram_observe
 * a bucket search and two relaxed atomic adds; no lookup, lock or malloc.
 *
 * Threads. Registering and removing families and series, rendering and the
 * HTTP endpoint belong to one thread (the loop thread; or any one thread
 * before others start), so they take no lock. The update functions
 * (sv_counter_*, sv_gauge_*, sv_histogram_observe) may run on any thread at
 * any time, as long as the series is not removed: remove a series only once
 * no thread can still use its handle. A scrape reads each atomic on its own,
 * so a histogram's buckets, sum and count may be a few observations apart,
 * but its buckets are always cumulative and _count is always the +Inf bucket.
 *
 * Scrape-time values. A series of a gauge or counter family may be a function
 * (sv_metrics_series_fn) instead of a stored value: it is called on the
 * rendering thread at each scrape, for values that the loop thread owns
 * (a Raft group's term or commit index, the segment store's size).
 *
 * Names follow Prometheus conventions (those promtool's linter checks),
 * checked at registration: metric names [a-z_:][a-z0-9_:]*, counters end in
 * _total and nothing else does, none ends in _bucket, _sum or _count (a
 * histogram's samples do); label names [a-z_][a-z0-9_]*; neither starts with __; "le" is not
 * a histogram label; label values are valid UTF-8. node/README.md lists
 * ShardVault's own conventions (sv_ prefix, base units, label names).
 */
#ifndef SV_METRICS_H
#define SV_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct uv_loop_s; /* uv_loop_t: uv.h is not needed to use the registry */

enum {
    SV_METRICS_NAME_MAX = 128,          /* metric or label name, with NUL */
    SV_METRICS_HELP_MAX = 1024,         /* help text, with NUL */
    SV_METRICS_LABELS_MAX = 8,          /* label names per family */
    SV_METRICS_VALUE_MAX = 256,         /* one label value, with NUL */
    SV_METRICS_BUCKETS_MAX = 32,        /* histogram upper bounds, +Inf not counted */
    SV_METRICS_FAMILIES_MAX = 512,      /* families per registry */
    SV_METRICS_SERIES_MAX = 65536,      /* series per registry, all families */
    SV_METRICS_RENDER_MAX = 64 << 20,   /* bytes of one rendered exposition */
    SV_METRICS_HTTP_CONNS_MAX = 32,     /* open connections; more are closed at once */
    SV_METRICS_HTTP_REQUEST_MAX = 8192, /* bytes of one request: line, headers, body */
    SV_METRICS_HTTP_URL_MAX = 2048,     /* bytes of its request target */
    SV_METRICS_HTTP_IDLE_MS = 10000,    /* a request must arrive (whole), and a response be
                                           taken, within this; else the connection closes */
    SV_METRICS_HTTP_LINGER_MS = 2000,   /* after a last response, wait this long at most
                                           for the client to close (see below) */
    SV_METRICS_HTTP_REASON_MAX = 256,   /* /health's reason, with NUL */
    SV_METRICS_ADDR_MAX = 256,          /* "host:port", with NUL */
};

_Static_assert(SV_METRICS_HTTP_URL_MAX < SV_METRICS_HTTP_REQUEST_MAX,
               "a request target must fit in a request");
_Static_assert(SV_METRICS_SERIES_MAX >= 8 * 4097,
               "eight families per group of the largest cluster must fit");

enum sv_metric_type {
    SV_METRIC_COUNTER = 1,
    SV_METRIC_GAUGE,
    SV_METRIC_HISTOGRAM,
};

struct sv_metrics;        /* the registry */
struct sv_metrics_family; /* one metric name; belongs to its registry */

/* Update handles. Their fields are public only so that the update functions
 * below can be inlined; touch them only through those functions. A handle
 * belongs to its family: it is freed by sv_metrics_series_remove or
 * sv_metrics_free. */
struct sv_counter {
    _Atomic uint64_t value;
};

struct sv_gauge {
    _Atomic uint64_t bits; /* a double's bits */
};

struct sv_histogram {
    const uint64_t *bounds; /* the family's upper bounds, increasing */
    uint32_t n_bounds;
    _Atomic uint64_t sum;                                /* of observed values */
    _Atomic uint64_t counts[SV_METRICS_BUCKETS_MAX + 1]; /* per bucket, not cumulative;
                                                             [n_bounds] is +Inf */
};

/* Scrape-time value of a series: called on the rendering thread with the arg
 * given at registration. May return NaN or an infinity. Must not register or
 * remove series of the registry being rendered. */
typedef double (*sv_metrics_gauge_fn)(void *arg);

/* What a family is. labels: n_labels label names (copied). For histograms:
 * bounds (copied), n_bounds strictly increasing upper bounds in the unit
 * observed, and unit_div: observed values are divided by it when rendered
 * (1e9 to observe nanoseconds and show seconds; 0 or 1 shows them as they
 * are). Bucket bounds and sums are shown as value / unit_div. */
struct sv_metrics_desc {
    enum sv_metric_type type;
    const char *name;
    const char *help; /* may contain any text; escaped when rendered */
    const char *const *labels;
    uint32_t n_labels;
    const uint64_t *bounds;
    uint32_t n_bounds;
    uint64_t unit_div;
};

/* Latency buckets in nanoseconds for seconds shown (unit_div 1e9): 50 us
 * doubling to 26.2 s, 20 bounds. */
enum {
    SV_METRICS_LATENCY_START_NS = 50000,
    SV_METRICS_LATENCY_FACTOR = 2,
    SV_METRICS_LATENCY_BUCKETS = 20,
};
_Static_assert((int)SV_METRICS_LATENCY_BUCKETS <= (int)SV_METRICS_BUCKETS_MAX,
               "latency buckets fit");

/* A new empty registry into *out (freed by sv_metrics_free). 0 or -ENOMEM. */
int sv_metrics_new(struct sv_metrics **out);

/* Free the registry, its families, series and handles. NULL is a no-op. No
 * other thread may still use a handle; no endpoint may still serve it. */
void sv_metrics_free(struct sv_metrics *m);

/* Register a family described by d (d and its strings are copied) into *out,
 * which belongs to m. Returns 0; -EINVAL for a bad name, label name, help
 * text or bounds (see the file comment; histograms need 1..BUCKETS_MAX
 * bounds); -EEXIST when the name, or a histogram's _bucket, _sum or _count
 * name, clashes with a family already registered; -ENOSPC past
 * SV_METRICS_FAMILIES_MAX; -ENOMEM. */
int sv_metrics_family_new(struct sv_metrics *m, const struct sv_metrics_desc *d,
                          struct sv_metrics_family **out);

/* n bounds start, start * factor, start * factor^2, ... into out (n entries).
 * For a histogram's desc. Values past UINT64_MAX are an ASSERT failure. */
void sv_metrics_exp_bounds(uint64_t *out, uint32_t n, uint64_t start, uint64_t factor);

/* Series. values: the family's n_labels label values, in the order of its
 * label names (copied; NULL when the family has no labels). Each returns 0
 * with the new handle in *out; -EINVAL when the family has another type or a
 * value is too long or not UTF-8; -EEXIST when the family has a series with
 * these values; -ENOSPC past SV_METRICS_SERIES_MAX; -ENOMEM. A new counter,
 * gauge or histogram starts at 0. */
int sv_metrics_counter(struct sv_metrics_family *f, const char *const *values,
                       struct sv_counter **out);
int sv_metrics_gauge(struct sv_metrics_family *f, const char *const *values, struct sv_gauge **out);
int sv_metrics_histogram(struct sv_metrics_family *f, const char *const *values,
                         struct sv_histogram **out);

/* A series of a counter or gauge family whose value is fn(arg) at each
 * scrape (on the rendering thread). A counter's function must never go
 * down (except when what it counts restarts). Same returns as above. */
int sv_metrics_series_fn(struct sv_metrics_family *f, const char *const *values,
                         sv_metrics_gauge_fn fn, void *arg);

/* Remove the series with these label values, of any kind, and free its
 * handle (no thread may use it any more). 0, or -ENOENT. */
int sv_metrics_series_remove(struct sv_metrics_family *f, const char *const *values);

/* Series in f. */
uint32_t sv_metrics_series_count(const struct sv_metrics_family *f);

/* Register sv_build_info{version="VERSION"} 1, a gauge. Same returns as
 * sv_metrics_family_new and sv_metrics_gauge. */
int sv_metrics_build_info(struct sv_metrics *m, const char *version);

/* The exposition (text format 0.0.4) of every family that has series, in
 * registration order, series in the order added: a new malloc'd buffer (the
 * caller frees it) of *len bytes, not NUL-terminated. Calls the scrape-time
 * functions. 0, -ENOMEM, or -E2BIG past SV_METRICS_RENDER_MAX. */
int sv_metrics_render(struct sv_metrics *m, char **out, size_t *len);

/* Hot path: any thread, never blocks. */

static inline void sv_counter_add(struct sv_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

static inline void sv_counter_inc(struct sv_counter *c)
{
    sv_counter_add(c, 1);
}

static inline uint64_t sv_counter_value(const struct sv_counter *c)
{
    return atomic_load_explicit(&((struct sv_counter *)c)->value, memory_order_relaxed);
}

static inline void sv_gauge_set(struct sv_gauge *g, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    atomic_store_explicit(&g->bits, bits, memory_order_relaxed);
}

static inline double sv_gauge_value(const struct sv_gauge *g)
{
    uint64_t bits = atomic_load_explicit(&((struct sv_gauge *)g)->bits, memory_order_relaxed);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Add d (may be negative): a compare-and-swap loop, for gauges updated from
 * several threads. */
static inline void sv_gauge_add(struct sv_gauge *g, double d)
{
    uint64_t old = atomic_load_explicit(&g->bits, memory_order_relaxed), next;
    do {
        double v;
        memcpy(&v, &old, sizeof v);
        v += d;
        memcpy(&next, &v, sizeof next);
    } while (!atomic_compare_exchange_weak_explicit(&g->bits, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

/* Count v (in the family's observed unit) in the first bucket whose bound is
 * >= v, or in +Inf, and add it to the sum. */
static inline void sv_histogram_observe(struct sv_histogram *h, uint64_t v)
{
    uint32_t lo = 0, hi = h->n_bounds;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (h->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&h->counts[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

/* The HTTP endpoint: plain HTTP/1.1 (keep-alive and pipelining) on its own
 * port, for Prometheus. GET (or HEAD) /metrics: the registry's exposition,
 * "text/plain; version=0.0.4; charset=utf-8"; GET /health: 200 "ok" when
 * the health function says the node serves, else 503 with its one-line
 * reason; other paths 404; other methods 405 (Allow: GET, HEAD); a query
 * string is ignored. A malformed request gets 400 and the connection closes;
 * so does a request of another HTTP version than 1.x (505);
 * a request over SV_METRICS_HTTP_REQUEST_MAX 431 (headers) or 413 (body), a
 * target over SV_METRICS_HTTP_URL_MAX 414, a failed rendering 500, and each
 * of these closes too. A connection closes after a response to a request
 * that asks for it (Connection: close, HTTP/1.0 without keep-alive): our
 * side is shut down, then what the client still sends is read and dropped
 * until it closes, for SV_METRICS_HTTP_LINGER_MS at most, so that the
 * response is not lost to a reset. Connections past
 * SV_METRICS_HTTP_CONNS_MAX are closed when accepted; a connection is closed
 * when a whole request has not arrived SV_METRICS_HTTP_IDLE_MS after it
 * opened or after the last response was written, or when a response is not
 * taken within that time. */
struct sv_metrics_http;

/* True when the node serves requests; otherwise false with a reason in
 * reason (len bytes with NUL; line breaks are replaced when sent). Called on
 * the loop thread for each /health request. */
typedef bool (*sv_metrics_health_fn)(void *arg, char *reason, size_t len);

/* Called on the loop thread once a stopped endpoint has closed every handle
 * and freed itself. */
typedef void (*sv_metrics_closed_fn)(void *arg);

/* Listen on host_port ("a.b.c.d:port" or "localhost:port"; port 0 takes a
 * free port, see sv_metrics_http_port) on loop, serving m through health
 * (NULL: always healthy) with arg. loop and m are borrowed and must outlive
 * the endpoint (until the closed callback of sv_metrics_http_stop). Returns
 * 0 with the endpoint in *out; -EINVAL for a bad address; a negative errno
 * from libuv (-EADDRINUSE, ...); errmsg (may be NULL) says which. */
int sv_metrics_http_start(struct uv_loop_s *loop, const char *host_port, struct sv_metrics *m,
                          sv_metrics_health_fn health, void *arg, struct sv_metrics_http **out,
                          char *errmsg, size_t errlen);

/* The bound port. */
int sv_metrics_http_port(const struct sv_metrics_http *h);

/* Use idle_ms (> 0) instead of SV_METRICS_HTTP_IDLE_MS for the timeouts
 * started from now on (tests use less). */
void sv_metrics_http_set_idle_ms(struct sv_metrics_http *h, unsigned idle_ms);

/* Stop listening and close every connection (responses being written are
 * dropped); the health function is not called after this returns. Once
 * libuv has closed every handle the endpoint is freed and closed(arg) runs
 * (closed may be NULL): the loop must run until then. */
void sv_metrics_http_stop(struct sv_metrics_http *h, sv_metrics_closed_fn closed, void *arg);

#endif
