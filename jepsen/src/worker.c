/* sv-jepsen-worker: the workloads of the Jepsen harness (register, set, big).
 * Threads run seeded random operations against a cluster through
 * libshardvault and append every invocation and completion to a
 * history.jsonl, one whole line per write(2), for sv-check. */
#define _GNU_SOURCE
#include <shardvault/client.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    THREADS_MAX = 1024,
    KEYS_MAX = 10000,
    RING_MAX = 4,             /* recent values per register key, for cas */
    SET_READ_ONE_IN = 20,     /* ops-phase set reads: one op in this many */
    FINAL_TIMEOUT_MS = 60000, /* a final read is retried this long */
    FINAL_RETRY_MS = 250,     /* pause between final read attempts */
    SCRUB_READS = 6,          /* final phase: stale reads per key (every replica, twice) */
    ERROR_TEXT_MAX = 240,     /* bytes of the "error" field */
    CONTENT_SHOWN_MAX = 64,   /* bytes of an unparsable register value recorded */
    GEN_BUF = 64 * 1024,      /* hashing buffer of big contents */
    LIST_PAGE = SV_CLIENT_LIST_LIMIT_MAX,
    BUCKET_MAX = 63,
};
_Static_assert(RING_MAX > 0 && SET_READ_ONE_IN > 1, "sane workload constants");
_Static_assert(FINAL_RETRY_MS < FINAL_TIMEOUT_MS, "a final read gets several attempts");

static const uint64_t BIG_BYTES_MAX = 1ull << 30;
/* Values are process base * VALUE_STRIDE + a count: both bounds keep them
 * below 2^53, exact in every JSON reader. */
static const uint64_t VALUE_STRIDE = 1000000000ull;
static const uint64_t PROCESS_MAX = 1ull << 23;

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "sv-jepsen-worker: %s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum workload { W_REGISTER, W_SET, W_BIG };
enum phase { PH_OPS, PH_FINAL };
enum ev { EV_INVOKE, EV_OK, EV_FAIL, EV_INFO };
enum fn { FN_READ, FN_WRITE, FN_CAS, FN_ADD, FN_N };

static const char *const ev_names[] = {"invoke", "ok", "fail", "info"};
static const char *const fn_names[] = {"read", "write", "cas", "add"};
static const char *const workload_names[] = {"register", "set", "big"};

struct opts {
    enum workload workload;
    enum phase phase;
    const char *endpoints, *ca, *out, *bucket;
    double seconds, rate;
    uint32_t concurrency, keys, op_timeout_ms;
    uint64_t seed, big_bytes, process_base;
    int64_t t0_ns;
    bool keys_set, seed_set, t0_set;
    enum sv_consistency consistency;
};

/* A growable byte string; allocation failure is fatal (a worker cannot
 * record a history without memory). */
struct sbuf {
    char *p;
    size_t len, cap;
};

struct worker {
    uint32_t index;
    uint64_t process; /* current Jepsen process: + n_workers_ after every info */
    uint64_t rng;
    uint64_t counter; /* values written by this worker */
    struct sv_client *client;
    struct sbuf line, value;
    uint32_t final_failed; /* final phase: keys never read */
    uint32_t scrub_reads, scrub_errors, scrub_corrupt;
    uint64_t counts[FN_N][4]; /* completions by function and type */
    pthread_t thread;
};

struct ring {
    int64_t v[RING_MAX];
    uint32_t n, next;
};

static struct opts o_;
static int out_fd_ = -1;
static pthread_mutex_t out_mu_ = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_time_; /* under out_mu_ */
static pthread_mutex_t ring_mu_ = PTHREAD_MUTEX_INITIALIZER;
static struct ring *rings_; /* per register key, under ring_mu_ */
static pthread_mutex_t stop_mu_ = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv_;
static atomic_bool stop_;
static atomic_uint running_;
static uint64_t end_mono_ns_; /* ops phase: no op starts after this */
static uint32_t n_workers_;

/* Randomness: splitmix64, one stream per thread derived from seed and index. */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return mix64(*s);
}

static uint64_t rnd_below(uint64_t *s, uint64_t n)
{
    ASSERT(n > 0);
    return rnd(s) % n;
}

static double rnd_unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) * 0x1p-53;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Byte strings and JSON. */

static void sb_reserve(struct sbuf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        fputs("sv-jepsen-worker: out of memory\n", stderr);
        abort();
    }
    b->p = p;
    b->cap = cap;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ASSERT(n >= 0);
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* s[0..len) as a JSON string; bytes outside printable ASCII as \u00XX. */
static void sb_json_string(struct sbuf *b, const char *s, size_t len)
{
    sb_reserve(b, 6 * len + 2);
    b->p[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            b->len += (size_t)snprintf(b->p + b->len, 7, "\\u%04x", c);
        } else {
            b->p[b->len++] = (char)c;
        }
    }
    b->p[b->len++] = '"';
    b->p[b->len] = '\0';
}

static void hex32(const uint8_t d[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[64] = '\0';
}

/* Strict decimal int64 (what this worker writes): "-"? digits, no leading zero. */
static bool parse_value(const char *s, size_t len, int64_t *out)
{
    bool neg = len > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == len || len - i > 18 || (s[i] == '0' && len - i > 1))
        return false;
    int64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

/* The history. */

static void write_all_locked(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(out_fd_, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* A history with lost events would be checked wrongly: stop at once. */
            fprintf(stderr, "sv-jepsen-worker: cannot write %s: %s\n", o_.out,
                    w < 0 ? strerror(errno) : "short write");
            _exit(2);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Record one event of w's current process. value is JSON text; error (may be
 * NULL) is plain text for completions. The time is taken under the lock so
 * the file's times never go back. */
static void emit(struct worker *w, enum ev type, enum fn f, const char *key, const char *value,
                 const char *error)
{
    struct sbuf *b = &w->line;
    b->len = 0;
    sb_printf(b,
              "{\"process\": %" PRIu64 ", \"type\": \"%s\", \"f\": \"%s\", \"key\": ", w->process,
              ev_names[type], fn_names[f]);
    sb_json_string(b, key, strlen(key));
    sb_printf(b, ", \"value\": %s, \"time\": ", value);
    pthread_mutex_lock(&out_mu_);
    int64_t t = real_ns() - o_.t0_ns;
    if (t < last_time_)
        t = last_time_;
    last_time_ = t;
    sb_printf(b, "%" PRId64, t);
    if (error != NULL && type != EV_INVOKE && type != EV_OK) {
        sb_printf(b, ", \"error\": ");
        sb_json_string(b, error, strnlen(error, ERROR_TEXT_MAX));
    }
    sb_printf(b, "}\n");
    write_all_locked(b->p, b->len);
    pthread_mutex_unlock(&out_mu_);
    if (type != EV_INVOKE)
        w->counts[f][type]++;
}

/* Finish an op: an indeterminate one keeps its process busy forever, so the
 * thread goes on as a new process (Jepsen's convention). */
static void complete(struct worker *w, enum ev type, enum fn f, const char *key, const char *value,
                     const char *error)
{
    emit(w, type, f, key, value, error);
    if (type == EV_INFO)
        w->process += n_workers_;
}

/* "<name>: <explanation>" of a failed client call; call right after it. */
static void err_text(int rc, char *buf, size_t cap)
{
    const char *name = sv_client_strerror(rc), *why = sv_client_errmsg();
    if (strcmp(why, name) == 0)
        why = ""; /* the server gave no explanation */
    snprintf(buf, cap, "%s%s%s", name, *why ? ": " : "", why);
}

/* Outcome of a failed write. Only answers that guarantee nothing was
 * written are definite: VERSION_CONFLICT is decided by the state machine
 * after its exactly-once session lookup, the others by the request itself.
 * NO_SPACE is not: the node checks its disk before the session lookup, so a
 * retry of a write that was applied (answer lost) can get it. */
static enum ev write_outcome(int rc)
{
    switch (rc) {
    case SV_OK:
        return EV_OK;
    case SV_E_VERSION_CONFLICT:
    case SV_E_BAD_ARGUMENT:
    case SV_E_TOO_BIG:
    case SV_E_DENIED:
        return EV_FAIL;
    default:
        return EV_INFO;
    }
}

static void corrupt_alarm(const char *key, const char *error)
{
    fprintf(stderr,
            "sv-jepsen-worker: !!!!!!!! CORRUPT READ of %s/%s: %s -- a node or the client "
            "found data that fails its checksum; this must never happen !!!!!!!!\n",
            o_.bucket, key, error);
}

/* A register or big read that got no object: not found is an ok read of
 * null; any other error is a failed read (reads have no effect). */
static bool read_failed(struct worker *w, const char *key, int rc)
{
    if (rc == SV_E_NOT_FOUND) {
        complete(w, EV_OK, FN_READ, key, "null", NULL);
        return true;
    }
    char err[ERROR_TEXT_MAX];
    err_text(rc, err, sizeof(err));
    if (rc == SV_E_CORRUPT)
        corrupt_alarm(key, err);
    complete(w, EV_FAIL, FN_READ, key, "null", err);
    return false;
}

/* Unique values: distinct per (process base, worker, counter), small enough
 * that a set read of a whole run stays a short line. */
static int64_t next_value(struct worker *w)
{
    uint64_t v = o_.process_base * VALUE_STRIDE + w->counter++ * n_workers_ + w->index + 1;
    return (int64_t)v;
}

/* Stopping: a signal or the end of the ops phase. */

static void request_stop(void)
{
    pthread_mutex_lock(&stop_mu_);
    atomic_store(&stop_, true);
    pthread_cond_broadcast(&stop_cv_);
    pthread_mutex_unlock(&stop_mu_);
}

/* Sleep until the monotonic time deadline_ns; false when stopped. */
static bool sleep_until(uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    pthread_mutex_lock(&stop_mu_);
    while (!atomic_load(&stop_) && mono_ns() < deadline_ns)
        pthread_cond_timedwait(&stop_cv_, &stop_mu_, &ts);
    pthread_mutex_unlock(&stop_mu_);
    return !atomic_load(&stop_);
}

/* Recent values of register keys: cas picks its expected value among them. */

static void ring_note(uint32_t k, int64_t v)
{
    pthread_mutex_lock(&ring_mu_);
    struct ring *r = &rings_[k];
    bool known = false;
    for (uint32_t i = 0; i < r->n; i++)
        known |= r->v[i] == v;
    if (!known) {
        r->v[r->next] = v;
        r->next = (r->next + 1) % RING_MAX;
        if (r->n < RING_MAX)
            r->n++;
    }
    pthread_mutex_unlock(&ring_mu_);
}

/* A recent value of key k, or 0 (never written: the cas will fail). */
static int64_t ring_pick(struct worker *w, uint32_t k)
{
    pthread_mutex_lock(&ring_mu_);
    struct ring *r = &rings_[k];
    int64_t v = r->n ? r->v[rnd_below(&w->rng, r->n)] : 0;
    pthread_mutex_unlock(&ring_mu_);
    return v;
}

/* register: read, write, cas of decimal integers. */

/* JSON of a register object's content: its integer, else the bytes as a
 * string (a value no write wrote, so the checker flags the read). */
static void content_json(struct sbuf *b, uint32_t k, const char *key, const char *data, size_t len,
                         int64_t *v, bool *is_int)
{
    b->len = 0;
    *is_int = parse_value(data, len, v);
    if (*is_int) {
        sb_printf(b, "%" PRId64, *v);
        ring_note(k, *v);
        return;
    }
    fprintf(stderr, "sv-jepsen-worker: %s/%s holds %zu bytes that are not a value written\n",
            o_.bucket, key, len);
    sb_json_string(b, data, len < CONTENT_SHOWN_MAX ? len : CONTENT_SHOWN_MAX);
}

static bool register_read(struct worker *w, uint32_t k)
{
    char key[32];
    snprintf(key, sizeof(key), "r%" PRIu32, k);
    emit(w, EV_INVOKE, FN_READ, key, "null", NULL);
    void *data = NULL;
    size_t len = 0;
    int rc = sv_client_get(w->client, o_.bucket, key, o_.consistency, &data, &len, NULL);
    if (rc != 0)
        return read_failed(w, key, rc);
    int64_t v;
    bool is_int;
    content_json(&w->value, k, key, data, len, &v, &is_int);
    free(data);
    complete(w, EV_OK, FN_READ, key, w->value.p, NULL);
    return true;
}

static void register_write(struct worker *w, uint32_t k)
{
    char key[32], val[32], err[ERROR_TEXT_MAX];
    snprintf(key, sizeof(key), "r%" PRIu32, k);
    int64_t v = next_value(w);
    int n = snprintf(val, sizeof(val), "%" PRId64, v);
    emit(w, EV_INVOKE, FN_WRITE, key, val, NULL);
    int rc = sv_client_put(w->client, o_.bucket, key, val, (size_t)n, SV_IF_ANY, NULL);
    if (rc != 0)
        err_text(rc, err, sizeof(err));
    enum ev out = write_outcome(rc);
    if (out != EV_FAIL)
        ring_note(k, v);
    complete(w, out, FN_WRITE, key, val, rc ? err : NULL);
}

/* cas [old, new]: read the version holding old, then write new if the
 * object is still at that version. */
static void register_cas(struct worker *w, uint32_t k)
{
    char key[32], pair[64], val[32], err[ERROR_TEXT_MAX];
    snprintf(key, sizeof(key), "r%" PRIu32, k);
    int64_t old = ring_pick(w, k), v = next_value(w);
    int n = snprintf(val, sizeof(val), "%" PRId64, v);
    snprintf(pair, sizeof(pair), "[%" PRId64 ", %" PRId64 "]", old, v);
    emit(w, EV_INVOKE, FN_CAS, key, pair, NULL);
    void *data = NULL;
    size_t len = 0;
    struct sv_stat st;
    int rc = sv_client_get(w->client, o_.bucket, key, o_.consistency, &data, &len, &st);
    if (rc == SV_E_NOT_FOUND) {
        complete(w, EV_FAIL, FN_CAS, key, pair, "value mismatch");
        return;
    }
    if (rc != 0) { /* nothing was written yet */
        err_text(rc, err, sizeof(err));
        if (rc == SV_E_CORRUPT)
            corrupt_alarm(key, err);
        complete(w, EV_FAIL, FN_CAS, key, pair, err);
        return;
    }
    int64_t cur;
    bool is_int;
    content_json(&w->value, k, key, data, len, &cur, &is_int);
    free(data);
    if (!is_int || cur != old) {
        complete(w, EV_FAIL, FN_CAS, key, pair, "value mismatch");
        return;
    }
    rc = sv_client_put(w->client, o_.bucket, key, val, (size_t)n, (int64_t)st.version, NULL);
    if (rc != 0)
        err_text(rc, err, sizeof(err));
    enum ev out = write_outcome(rc);
    if (out != EV_FAIL)
        ring_note(k, v);
    complete(w, out, FN_CAS, key, pair, rc ? err : NULL);
}

/* set: add of unique elements as objects s/<E>, read by listing s/. */

static void set_add(struct worker *w)
{
    char key[48], val[32], err[ERROR_TEXT_MAX];
    int64_t e = next_value(w);
    int n = snprintf(val, sizeof(val), "%" PRId64, e);
    snprintf(key, sizeof(key), "s/%" PRId64, e);
    emit(w, EV_INVOKE, FN_ADD, "set", val, NULL);
    int rc = sv_client_put(w->client, o_.bucket, key, val, (size_t)n, SV_IF_ABSENT, NULL);
    if (rc != 0)
        err_text(rc, err, sizeof(err));
    complete(w, write_outcome(rc), FN_ADD, "set", val, rc ? err : NULL);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool set_read(struct worker *w)
{
    char err[ERROR_TEXT_MAX], after[SV_CLIENT_NAME_MAX + 1] = "";
    emit(w, EV_INVOKE, FN_READ, "set", "null", NULL);
    int64_t *el = NULL;
    size_t n = 0, cap = 0;
    bool odd = false; /* a listed key that is no element (logged, recorded as -1) */
    int rc;
    for (;;) {
        struct sv_list *l = NULL;
        rc = sv_client_list(w->client, o_.bucket, "s/", after, LIST_PAGE, o_.consistency, &l);
        if (rc != 0)
            break;
        for (size_t i = 0; i < l->n; i++) {
            const char *k = l->entries[i].key;
            int64_t e;
            if (!parse_value(k + 2, strlen(k + 2), &e) || e <= 0) {
                fprintf(stderr, "sv-jepsen-worker: set read: unexpected key %s\n", k);
                odd = true;
                continue;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                el = realloc(el, cap * sizeof(*el));
                ASSERT(el != NULL);
            }
            el[n++] = e;
        }
        bool more = l->more && l->n > 0;
        if (more)
            snprintf(after, sizeof(after), "%s", l->entries[l->n - 1].key);
        sv_client_list_free(l);
        if (!more)
            break;
    }
    if (rc != 0) {
        err_text(rc, err, sizeof(err));
        complete(w, EV_FAIL, FN_READ, "set", "null", err);
    } else {
        qsort(el, n, sizeof(*el), cmp_i64);
        struct sbuf *b = &w->value;
        b->len = 0;
        sb_printf(b, "[");
        /* -1 is never added: the checker reports it as unexpected. */
        if (odd)
            sb_printf(b, "-1%s", n ? ", " : "");
        for (size_t i = 0; i < n; i++)
            sb_printf(b, "%s%" PRId64, i ? ", " : "", el[i]);
        sb_printf(b, "]");
        complete(w, EV_OK, FN_READ, "set", b->p, NULL);
    }
    free(el);
    return rc == 0;
}

/* big: objects of --big-bytes seeded random bytes, recorded by SHA-256. */

struct gen {
    uint64_t s, word, left;
    unsigned avail; /* bytes of word not yet given */
};

static int64_t gen_read(void *arg, void *buf, size_t cap)
{
    struct gen *g = arg;
    size_t n = g->left < cap ? (size_t)g->left : cap;
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        if (g->avail == 0) {
            g->word = rnd(&g->s);
            g->avail = 8;
        }
        p[i] = (uint8_t)g->word;
        g->word >>= 8;
        g->avail--;
    }
    g->left -= n;
    return (int64_t)n;
}

struct hasher {
    EVP_MD_CTX *md;
};

static int hash_write(void *arg, const void *buf, size_t len)
{
    struct hasher *h = arg;
    return EVP_DigestUpdate(h->md, buf, len) == 1 ? 0 : -1;
}

static void hash_final(struct hasher *h, char hex[65])
{
    uint8_t d[32];
    unsigned dl = 0;
    ASSERT(EVP_DigestFinal_ex(h->md, d, &dl) == 1 && dl == 32);
    hex32(d, hex);
}

static void hash_init(struct hasher *h)
{
    ASSERT(EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1);
}

static bool big_read(struct worker *w, struct hasher *h, uint32_t k)
{
    char key[32], hex[65], val[72];
    snprintf(key, sizeof(key), "b%" PRIu32, k);
    emit(w, EV_INVOKE, FN_READ, key, "null", NULL);
    hash_init(h);
    int rc = sv_client_get_stream(w->client, o_.bucket, key, o_.consistency, NULL, hash_write, h);
    hash_final(h, hex);
    if (rc != 0)
        return read_failed(w, key, rc);
    snprintf(val, sizeof(val), "\"%s\"", hex);
    complete(w, EV_OK, FN_READ, key, val, NULL);
    return true;
}

static void big_write(struct worker *w, struct hasher *h, uint8_t *buf, uint32_t k)
{
    char key[32], err[ERROR_TEXT_MAX], hex[65], val[72];
    snprintf(key, sizeof(key), "b%" PRIu32, k);
    /* The content is hashed first (the invocation carries the hash), then
     * generated again from the same seed while it streams out. */
    struct gen g = {.s = rnd(&w->rng), .left = o_.big_bytes};
    struct gen again = g;
    hash_init(h);
    for (int64_t n; (n = gen_read(&g, buf, GEN_BUF)) > 0;)
        ASSERT(hash_write(h, buf, (size_t)n) == 0);
    hash_final(h, hex);
    snprintf(val, sizeof(val), "\"%s\"", hex);
    emit(w, EV_INVOKE, FN_WRITE, key, val, NULL);
    int rc = sv_client_put_stream(w->client, o_.bucket, key, (int64_t)o_.big_bytes, SV_IF_ANY, NULL,
                                  gen_read, &again);
    if (rc != 0)
        err_text(rc, err, sizeof(err));
    complete(w, write_outcome(rc), FN_WRITE, key, val, rc ? err : NULL);
}

/* The phases. */

static void *ops_thread(void *arg)
{
    struct worker *w = arg;
    struct hasher h = {.md = EVP_MD_CTX_new()};
    uint8_t *buf = malloc(GEN_BUF);
    ASSERT(h.md != NULL && buf != NULL);
    /* Each thread's mean gap between op starts is concurrency / rate. */
    double gap_ns = o_.rate > 0 ? 1e9 * o_.concurrency / o_.rate : 0;
    uint64_t next = mono_ns();
    for (;;) {
        uint64_t now = mono_ns();
        if (next < now)
            next = now; /* no burst to catch up after a slow op */
        next += (uint64_t)(2 * gap_ns * rnd_unit(&w->rng));
        if (!sleep_until(next < end_mono_ns_ ? next : end_mono_ns_) || mono_ns() >= end_mono_ns_)
            break;
        uint32_t k = (uint32_t)rnd_below(&w->rng, o_.keys);
        switch (o_.workload) {
        case W_REGISTER:
            switch (rnd_below(&w->rng, 3)) {
            case 0:
                register_read(w, k);
                break;
            case 1:
                register_write(w, k);
                break;
            default:
                register_cas(w, k);
                break;
            }
            break;
        case W_SET:
            if (rnd_below(&w->rng, SET_READ_ONE_IN) == 0)
                set_read(w);
            else
                set_add(w);
            break;
        case W_BIG:
            if (rnd_below(&w->rng, 2) == 0)
                big_read(w, &h, k);
            else
                big_write(w, &h, buf, k);
            break;
        }
    }
    EVP_MD_CTX_free(h.md);
    free(buf);
    atomic_fetch_sub(&running_, 1);
    return NULL;
}

/* One read of key k (or of the set), retried until ok or the time is up. */
static bool final_read(struct worker *w, struct hasher *h, uint32_t k)
{
    uint64_t give_up = mono_ns() + (uint64_t)FINAL_TIMEOUT_MS * 1000000u;
    while (!atomic_load(&stop_)) {
        bool ok = o_.workload == W_REGISTER ? register_read(w, k)
                  : o_.workload == W_SET    ? set_read(w)
                                            : big_read(w, h, k);
        if (ok)
            return true;
        uint64_t retry = mono_ns() + (uint64_t)FINAL_RETRY_MS * 1000000u;
        if (retry >= give_up || !sleep_until(retry))
            break;
    }
    return false;
}

/* After the final read of register or big key k: stale reads, which the
 * client sends to the shard's replicas in turn, so that every replica's copy
 * is read (and checked: GCM on the node, SHA-256 in the client) at least
 * once, including copies the corrupt nemesis damaged on a node that never
 * led again. They are not linearizable, so only a read that fails as corrupt
 * goes into the history (a failed read: an anomaly for the checker). */
static void scrub(struct worker *w, struct hasher *h, uint32_t k)
{
    char key[32], err[ERROR_TEXT_MAX];
    snprintf(key, sizeof(key), "%c%" PRIu32, o_.workload == W_BIG ? 'b' : 'r', k);
    for (int i = 0; i < SCRUB_READS && !atomic_load(&stop_); i++) {
        hash_init(h);
        int rc = sv_client_get_stream(w->client, o_.bucket, key, SV_STALE, NULL, hash_write, h);
        char hex[65];
        hash_final(h, hex);
        w->scrub_reads++;
        if (rc == SV_E_CORRUPT) {
            w->scrub_corrupt++;
            err_text(rc, err, sizeof(err));
            corrupt_alarm(key, err);
            emit(w, EV_INVOKE, FN_READ, key, "null", NULL);
            complete(w, EV_FAIL, FN_READ, key, "null", err);
        } else if (rc != 0 && rc != SV_E_NOT_FOUND) {
            w->scrub_errors++;
        }
    }
}

/* Worker i reads keys i, i + n, i + 2n, ... (the set: worker 0 alone). */
static void *final_thread(void *arg)
{
    struct worker *w = arg;
    struct hasher h = {.md = EVP_MD_CTX_new()};
    ASSERT(h.md != NULL);
    uint32_t keys = o_.workload == W_SET ? 1 : o_.keys;
    for (uint32_t k = w->index; k < keys; k += n_workers_) {
        w->final_failed += !final_read(w, &h, k);
        if (o_.workload != W_SET)
            scrub(w, &h, k);
    }
    EVP_MD_CTX_free(h.md);
    atomic_fetch_sub(&running_, 1);
    return NULL;
}

/* Command line. */

static void usage(FILE *f)
{
    fputs("usage: sv-jepsen-worker --workload register|set|big --endpoints H:P,H:P --ca FILE\n"
          "                        --out FILE [--phase ops|final] [--time SECONDS]\n"
          "                        [--concurrency N] [--seed S] [--keys K]\n"
          "                        [--read-consistency linearizable|stale] [--rate OPS_PER_S]\n"
          "                        [--op-timeout-ms MS] [--big-bytes BYTES] [--t0 NS]\n"
          "                        [--process-base P] [--bucket NAME] [--help]\n"
          "Runs a Jepsen workload against a ShardVault cluster and appends its history to\n"
          "FILE (JSON lines: process, type invoke|ok|fail|info, f, key, value, time[, error]).\n"
          "  --workload W          register: read/write/cas of integers on keys r0..r{K-1};\n"
          "                        set: add of unique elements (objects s/<E>), reads by list;\n"
          "                        big: read/write of BYTES-byte objects b0..b{K-1}, values\n"
          "                        are the SHA-256 (hex) of the content\n"
          "  --phase ops           (default) --concurrency threads (default 10) run random ops\n"
          "                        for --time seconds (default 60) at --rate ops/s in total\n"
          "                        (default 100; 0 = no limit); prints `next-process N`\n"
          "  --phase final         one read per key (the whole set for set) by up to\n"
          "                        --concurrency threads, each retried for up to 60 s;\n"
          "                        then (register, big) 6 stale reads per key, which reach\n"
          "                        every replica: only a corrupt one is recorded (scrub);\n"
          "                        exit 1 unless every final read succeeded\n"
          "  --keys K              keys (default 5, big: 3)\n"
          "  --seed S              seeds every random choice (default: from the clock; printed)\n"
          "  --read-consistency C  linearizable (default) or stale, for reads and cas reads\n"
          "  --op-timeout-ms MS    the client's deadline per operation (default 5000)\n"
          "  --big-bytes BYTES     size of big objects (default 4194304)\n"
          "  --t0 NS               event times are CLOCK_REALTIME ns minus NS (default: start)\n"
          "  --process-base P      first process id (default 0); an info op moves its thread\n"
          "                        to process id + N; written values and set elements are\n"
          "                        unique per run and per process base\n"
          "  --bucket NAME         bucket (default jepsen)\n"
          "Exit: 0 run completed (cluster errors are history), 1 a final read never\n"
          "succeeded, 2 bad arguments or a setup error. SIGTERM/SIGINT: no new op starts,\n"
          "running ops finish; a second signal exits at once (never mid-line).\n",
          f);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

static bool bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 1 || n > BUCKET_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || i == n - 1 || (c != '.' && c != '-')))
            return false;
    }
    return true;
}

__attribute__((format(printf, 1, 2))) static int bad_args(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sv-jepsen-worker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    usage(stderr);
    return 2;
}

/* Fill o_ from argv. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv)
{
    bool workload_set = false;
    o_ = (struct opts){
        .phase = PH_OPS,
        .bucket = "jepsen",
        .seconds = 60,
        .rate = 100,
        .concurrency = 10,
        .op_timeout_ms = 5000,
        .big_bytes = 4u << 20,
        .consistency = SV_LINEARIZABLE,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        static const char *const known[] = {"--workload",
                                            "--endpoints",
                                            "--ca",
                                            "--out",
                                            "--bucket",
                                            "--phase",
                                            "--read-consistency",
                                            "--time",
                                            "--rate",
                                            "--concurrency",
                                            "--keys",
                                            "--seed",
                                            "--t0",
                                            "--op-timeout-ms",
                                            "--big-bytes",
                                            "--process-base"};
        bool is_known = false;
        for (size_t j = 0; j < sizeof(known) / sizeof(known[0]); j++)
            is_known |= strcmp(a, known[j]) == 0;
        if (!is_known)
            return bad_args(strncmp(a, "--", 2) ? "unexpected argument '%s'" : "unknown option %s",
                            a);
        if (v == NULL)
            return bad_args("%s needs a value", a);
        i++;
        if (!strcmp(a, "--workload")) {
            workload_set = true;
            if (!strcmp(v, "register"))
                o_.workload = W_REGISTER;
            else if (!strcmp(v, "set"))
                o_.workload = W_SET;
            else if (!strcmp(v, "big"))
                o_.workload = W_BIG;
            else
                return bad_args("--workload must be register, set or big, not '%s'", v);
        } else if (!strcmp(a, "--endpoints")) {
            o_.endpoints = v;
        } else if (!strcmp(a, "--ca")) {
            o_.ca = v;
        } else if (!strcmp(a, "--out")) {
            o_.out = v;
        } else if (!strcmp(a, "--bucket")) {
            if (!bucket_valid(v))
                return bad_args("--bucket '%s': 1..63 of [a-z0-9.-], starting and ending with "
                                "a letter or digit",
                                v);
            o_.bucket = v;
        } else if (!strcmp(a, "--phase")) {
            if (!strcmp(v, "ops"))
                o_.phase = PH_OPS;
            else if (!strcmp(v, "final"))
                o_.phase = PH_FINAL;
            else
                return bad_args("--phase must be ops or final, not '%s'", v);
        } else if (!strcmp(a, "--read-consistency")) {
            if (!strcmp(v, "linearizable"))
                o_.consistency = SV_LINEARIZABLE;
            else if (!strcmp(v, "stale"))
                o_.consistency = SV_STALE;
            else
                return bad_args("--read-consistency must be linearizable or stale, not '%s'", v);
        } else if (!strcmp(a, "--time")) {
            if (!parse_double(v, 0.001, 1e7, &o_.seconds))
                return bad_args("--time: seconds in 0.001..1e7, not '%s'", v);
        } else if (!strcmp(a, "--rate")) {
            if (!parse_double(v, 0, 1e6, &o_.rate))
                return bad_args("--rate: ops/s in 0..1e6 (0 = no limit), not '%s'", v);
        } else if (!strcmp(a, "--concurrency")) {
            if (!parse_u64(v, 1, THREADS_MAX, &u))
                return bad_args("--concurrency: 1..1024, not '%s'", v);
            o_.concurrency = (uint32_t)u;
        } else if (!strcmp(a, "--keys")) {
            if (!parse_u64(v, 1, KEYS_MAX, &u))
                return bad_args("--keys: 1..10000, not '%s'", v);
            o_.keys = (uint32_t)u;
            o_.keys_set = true;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_u64(v, 0, UINT64_MAX, &o_.seed))
                return bad_args("--seed: an unsigned 64-bit integer, not '%s'", v);
            o_.seed_set = true;
        } else if (!strcmp(a, "--op-timeout-ms")) {
            if (!parse_u64(v, 1, 3600000, &u))
                return bad_args("--op-timeout-ms: 1..3600000, not '%s'", v);
            o_.op_timeout_ms = (uint32_t)u;
        } else if (!strcmp(a, "--big-bytes")) {
            if (!parse_u64(v, 1, BIG_BYTES_MAX, &o_.big_bytes))
                return bad_args("--big-bytes: 1..1073741824, not '%s'", v);
        } else if (!strcmp(a, "--t0")) {
            if (!parse_u64(v, 0, INT64_MAX, &u))
                return bad_args("--t0: nanoseconds since the epoch, not '%s'", v);
            o_.t0_ns = (int64_t)u;
            o_.t0_set = true;
        } else {
            ASSERT(!strcmp(a, "--process-base"));
            if (!parse_u64(v, 0, PROCESS_MAX, &o_.process_base))
                return bad_args("--process-base: 0..8388608, not '%s'", v);
        }
    }
    if (!workload_set)
        return bad_args("%s is required", "--workload");
    if (o_.endpoints == NULL || o_.ca == NULL || o_.out == NULL)
        return bad_args("%s are required", "--endpoints, --ca and --out");
    if (!o_.keys_set)
        o_.keys = o_.workload == W_BIG ? 3 : 5;
    return -1;
}

/* Wait for the workers while taking SIGINT/SIGTERM: the first stops new
 * ops, a second exits at once, between two lines of the history. */
static void wait_workers(const sigset_t *sigs)
{
    bool signalled = false;
    while (atomic_load(&running_) > 0) {
        struct timespec ts = {.tv_nsec = 100 * 1000000};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig <= 0)
            continue;
        if (signalled) {
            fprintf(stderr, "sv-jepsen-worker: second %s: exiting now\n", strsignal(sig));
            pthread_mutex_lock(&out_mu_);
            _exit(o_.phase == PH_FINAL ? 1 : 0);
        }
        signalled = true;
        fprintf(stderr, "sv-jepsen-worker: %s: no new ops; waiting for the running ones\n",
                strsignal(sig));
        request_stop();
    }
}

static void print_counts(struct worker *ws, uint32_t n)
{
    uint64_t c[FN_N][4] = {{0}};
    for (uint32_t i = 0; i < n; i++)
        for (int f = 0; f < FN_N; f++)
            for (int t = EV_OK; t <= EV_INFO; t++)
                c[f][t] += ws[i].counts[f][t];
    fprintf(stderr, "sv-jepsen-worker: %s %s:", workload_names[o_.workload],
            o_.phase == PH_OPS ? "ops" : "final");
    for (int f = 0; f < FN_N; f++)
        if (c[f][EV_OK] + c[f][EV_FAIL] + c[f][EV_INFO] > 0)
            fprintf(stderr, " %s %" PRIu64 " ok/%" PRIu64 " fail/%" PRIu64 " info;", fn_names[f],
                    c[f][EV_OK], c[f][EV_FAIL], c[f][EV_INFO]);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    int64_t start_ns = real_ns();
    int rc = parse_args(argc, argv);
    if (rc >= 0)
        return rc;
    if (!o_.t0_set)
        o_.t0_ns = start_ns;
    if (!o_.seed_set)
        o_.seed = mix64((uint64_t)start_ns ^ ((uint64_t)getpid() << 32));
    fprintf(stderr, "sv-jepsen-worker: %s %s, seed %" PRIu64 "\n", workload_names[o_.workload],
            o_.phase == PH_OPS ? "ops" : "final", o_.seed);

    /* Signals go to wait_workers only; the threads inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&stop_cv_, &ca);
    pthread_condattr_destroy(&ca);

    out_fd_ = open(o_.out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out_fd_ < 0) {
        fprintf(stderr, "sv-jepsen-worker: cannot open %s: %s\n", o_.out, strerror(errno));
        return 2;
    }
    n_workers_ = o_.phase == PH_OPS         ? o_.concurrency
                 : o_.workload == W_SET     ? 1
                 : o_.keys < o_.concurrency ? o_.keys
                                            : o_.concurrency;
    struct worker *ws = calloc(n_workers_, sizeof(*ws));
    rings_ = calloc(o_.keys, sizeof(*rings_));
    if (ws == NULL || rings_ == NULL) {
        fputs("sv-jepsen-worker: out of memory\n", stderr);
        return 2;
    }
    int status = 2;
    uint32_t opened = 0;
    struct sv_client_options co = {
        .endpoints = o_.endpoints, .ca_file = o_.ca, .deadline_ms = o_.op_timeout_ms};
    for (; opened < n_workers_; opened++) {
        struct worker *w = &ws[opened];
        w->index = opened;
        w->process = o_.process_base + opened;
        w->rng = mix64(o_.seed ^ mix64(opened + 1));
        rc = sv_client_open(&co, &w->client);
        if (rc != 0) {
            fprintf(stderr, "sv-jepsen-worker: cannot open a client: %s: %s\n",
                    sv_client_strerror(rc), sv_client_errmsg());
            goto err_after_clients;
        }
    }
    end_mono_ns_ = mono_ns() + (uint64_t)(o_.seconds * 1e9);
    atomic_store(&running_, n_workers_);
    for (uint32_t i = 0; i < n_workers_; i++) {
        int e = pthread_create(&ws[i].thread, NULL, o_.phase == PH_OPS ? ops_thread : final_thread,
                               &ws[i]);
        ASSERT(e == 0);
    }
    wait_workers(&sigs);
    for (uint32_t i = 0; i < n_workers_; i++)
        pthread_join(ws[i].thread, NULL);
    print_counts(ws, n_workers_);

    if (o_.phase == PH_OPS) {
        uint64_t next = 0;
        for (uint32_t i = 0; i < n_workers_; i++)
            if (ws[i].process + 1 > next)
                next = ws[i].process + 1;
        printf("next-process %" PRIu64 "\n", next);
        fflush(stdout);
        status = 0;
    } else {
        uint32_t failed = 0, sr = 0, se = 0, sc = 0;
        for (uint32_t i = 0; i < n_workers_; i++) {
            failed += ws[i].final_failed;
            sr += ws[i].scrub_reads, se += ws[i].scrub_errors, sc += ws[i].scrub_corrupt;
        }
        if (o_.workload != W_SET)
            fprintf(stderr,
                    "sv-jepsen-worker: scrub: %" PRIu32 " stale reads over every replica, %" PRIu32
                    " failed, %" PRIu32 " corrupt\n",
                    sr, se, sc);
        if (failed > 0)
            fprintf(stderr,
                    "sv-jepsen-worker: %" PRIu32 " of %" PRIu32
                    " final reads never succeeded (%s)\n",
                    failed, o_.workload == W_SET ? 1 : o_.keys,
                    atomic_load(&stop_) ? "stopped by a signal" : "retried for 60 s");
        status = failed ? 1 : 0;
    }
err_after_clients:
    for (uint32_t i = 0; i < opened; i++) {
        sv_client_close(ws[i].client);
        free(ws[i].line.p);
        free(ws[i].value.p);
    }
    free(ws);
    free(rings_);
    close(out_fd_);
    return status;
}
