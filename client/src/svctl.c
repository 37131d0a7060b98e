/* svctl: the ShardVault command-line tool (put, get, rm, ls, stat, status; node, cluster,
 * sched and dr in svctl_admin.c) over libshardvault. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shardvault/client.h"
#include "svctl.h"

enum {
    PROGRESS_MIN = 4 * 1000 * 1000, /* bytes: smaller transfers show no progress bar */
    IO_CHUNK = 256 * 1024,
    LS_PAGE = 1000,
};

static const char main_usage[] =
    "usage: svctl [global options] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  put BUCKET/KEY [FILE|-] [--if-version N]     store an object (prints its version)\n"
    "  get BUCKET/KEY [FILE|-] [--consistency linearizable|stale]\n"
    "                                               fetch an object\n"
    "  rm BUCKET/KEY [--if-version N]               delete an object\n"
    "  ls BUCKET[/PREFIX] [--limit N] [--start-after KEY]\n"
    "                                               list keys\n"
    "  stat BUCKET/KEY                              show an object's metadata\n"
    "  status                                       show nodes (metrics addresses too) and shards\n"
    "  node list                                    nodes as the scheduler sees them\n"
    "  node drain ID [--no-wait] [--cancel] [--timeout S]\n"
    "                                               move a node's replicas away, show progress\n"
    "  node remove ID [--force]                     remove a drained node from the map\n"
    "  cluster show                                 the scheduler's settings\n"
    "  cluster set NAME VALUE                       change one (down-after, evict-after,\n"
    "                                               auto-evict, repair-rate, moves-per-node,\n"
    "                                               rebalance)\n"
    "  sched log                                    the scheduler's recent decisions\n"
    "  dr status                                    disaster recovery: the site's role, its\n"
    "                                               frontier and lag, per shard\n"
    "  dr promote [--force] [--wait S]              make this standby site the primary; show\n"
    "                                               the cut and the RPO, wait for writes\n"
    "  dr demote                                    fence this site: read-only (it still\n"
    "                                               ships what it committed)\n"
    "  dr failback --peer EPS                       a fenced old primary: its writes past the\n"
    "                                               cut into the ledger, then the standby\n"
    "  dr switchover --peer EPS [--wait S]          the planned move to the standby (RPO 0)\n"
    "  dr verify --peer EPS [--wait S]              every shard's digest on both sites\n"
    "  dr diverged list | get LEDGER-KEY            the divergence ledger\n"
    "  dr drill --primary EPS --standby EPS --outage-cmd CMD --restore-cmd CMD --out DIR\n"
    "                                               a disaster-recovery drill under load:\n"
    "                                               RPO, RTO, lag; a text, JSON, HTML report\n"
    "\n"
    "Global options:\n"
    "  --endpoints HOST:PORT,...   nodes to contact (env SV_ENDPOINTS)\n"
    "  --ca FILE                   CA bundle that signs the node certificates (env SV_CA)\n"
    "  --token TOKEN               access token (env SV_TOKEN)\n"
    "  -o text|json                output format (default text)\n"
    "  --timeout SECONDS           deadline of each operation (default 30)\n"
    "  --help                      this text; COMMAND --help for a command\n"
    "\n"
    "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 denied, 5 unavailable or\n"
    "timeout, 6 version conflict, 7 read only (a write to a disaster-recovery\n"
    "standby or a fenced site; the message names the active site).\n";

void sv__usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("svctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see svctl --help)\n", stderr);
    va_end(ap);
}

static int exit_code(int err)
{
    switch (err) {
    case SV_OK:
        return EXIT_OK;
    case SV_E_NOT_FOUND:
        return EXIT_NOT_FOUND;
    case SV_E_DENIED:
        return EXIT_DENIED;
    case SV_E_UNAVAILABLE:
    case SV_E_TIMEOUT:
        return EXIT_UNAVAILABLE;
    case SV_E_VERSION_CONFLICT:
        return EXIT_CONFLICT;
    case SV_E_READ_ONLY:
        return EXIT_READ_ONLY;
    default:
        return EXIT_ERR;
    }
}

/* Report err for "cmd target" on one stderr line and return the exit code. */
int sv__fail(const char *cmd, const char *target, int err)
{
    const char *m = sv_client_errmsg();
    fprintf(stderr, "svctl: %s%s%s: %s%s%s\n", cmd, target ? " " : "", target ? target : "",
            sv_client_strerror(err), m[0] ? ": " : "", m);
    return exit_code(err);
}

/* Option parsing: "--name value" or "--name=value". */
bool sv__opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return false;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0')
        return false;
    if (*i + 1 >= argc) {
        *val = NULL;
        return true;
    }
    *val = argv[++*i];
    return true;
}

bool sv__parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0' || *s == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* Split BUCKET/KEY (key required unless key_optional) into buffers. */
static bool split_target(const char *t, char *bucket, size_t bl, char *key, size_t kl,
                         bool key_optional)
{
    const char *slash = strchr(t, '/');
    size_t n = slash ? (size_t)(slash - t) : strlen(t);
    if (n == 0 || n >= bl)
        return false;
    memcpy(bucket, t, n);
    bucket[n] = '\0';
    const char *k = slash ? slash + 1 : "";
    if (strlen(k) >= kl || (!key_optional && k[0] == '\0'))
        return false;
    snprintf(key, kl, "%s", k);
    return true;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* Progress bar on stderr for big transfers to or from a terminal. */
struct progress {
    bool on;
    uint64_t total, done; /* total 0: unknown */
    time_t last;
};

static void progress_init(struct progress *p, uint64_t total, bool unknown)
{
    memset(p, 0, sizeof(*p));
    p->total = total;
    p->on = isatty(STDERR_FILENO) && (unknown || total > PROGRESS_MIN);
}

static void progress_show(struct progress *p, bool final)
{
    if (!p->on)
        return;
    time_t now = time(NULL);
    if (p->total == 0 && p->done < PROGRESS_MIN)
        return; /* unknown size: only once it is big */
    if (!final && now == p->last)
        return;
    p->last = now;
    if (p->total > 0) {
        int pct = (int)(p->done * 100 / p->total);
        int bars = pct * 40 / 100;
        fprintf(stderr, "\r[%.*s%*s] %3d%% %" PRIu64 " MB", bars,
                "========================================", 40 - bars, "", pct, p->done / 1000000);
    } else {
        fprintf(stderr, "\r%" PRIu64 " MB", p->done / 1000000);
    }
    if (final)
        fputc('\n', stderr);
}

static void progress_add(struct progress *p, size_t n)
{
    p->done += n;
    progress_show(p, false);
}

/* Commands. */

struct cmd {
    const char *name;
    const char *usage;
    int (*run)(struct sv_client *c, const struct global *g, int argc, char **argv);
    bool self_check; /* run(NULL, ...) checks the arguments (svctl.h) */
};

/* Common argument parsing of object commands. */
struct args {
    const char *target, *file;
    bool has_if_version;
    uint64_t if_version;
    enum sv_consistency cons;
    bool has_limit;
    uint64_t limit;
    const char *start_after;
};

static int parse_args(const char *cmd, const char *usage, int argc, char **argv, struct args *a,
                      int max_pos, bool if_version, bool consistency, bool listing)
{
    memset(a, 0, sizeof(*a));
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        } else if (if_version && sv__opt_value(argc, argv, &i, "--if-version", &v)) {
            if (!sv__parse_u64(v, &a->if_version)) {
                sv__usage_error("%s: --if-version needs a number", cmd);
                return EXIT_USAGE;
            }
            a->has_if_version = true;
        } else if (consistency && sv__opt_value(argc, argv, &i, "--consistency", &v)) {
            if (v != NULL && strcmp(v, "linearizable") == 0)
                a->cons = SV_LINEARIZABLE;
            else if (v != NULL && strcmp(v, "stale") == 0)
                a->cons = SV_STALE;
            else {
                sv__usage_error("%s: --consistency is linearizable or stale", cmd);
                return EXIT_USAGE;
            }
        } else if (listing && sv__opt_value(argc, argv, &i, "--limit", &v)) {
            if (!sv__parse_u64(v, &a->limit) || a->limit == 0) {
                sv__usage_error("%s: --limit needs a positive number", cmd);
                return EXIT_USAGE;
            }
            a->has_limit = true;
        } else if (listing && sv__opt_value(argc, argv, &i, "--start-after", &v)) {
            if (v == NULL) {
                sv__usage_error("%s: --start-after needs a key", cmd);
                return EXIT_USAGE;
            }
            a->start_after = v;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            sv__usage_error("%s: unknown option %s", cmd, argv[i]);
            return EXIT_USAGE;
        } else if (pos == 0) {
            a->target = argv[i];
            pos++;
        } else if (pos < max_pos) {
            a->file = argv[i];
            pos++;
        } else {
            sv__usage_error("%s: too many arguments", cmd);
            return EXIT_USAGE;
        }
    }
    if (max_pos > 0 && a->target == NULL) {
        sv__usage_error("%s: missing %s", cmd, listing ? "BUCKET" : "BUCKET/KEY");
        return EXIT_USAGE;
    }
    if (a->target != NULL) {
        char b[64], k[SV_CLIENT_NAME_MAX + 1];
        if (!split_target(a->target, b, sizeof(b), k, sizeof(k), listing)) {
            sv__usage_error("%s: \"%s\" is not %s", cmd, a->target,
                            listing ? "BUCKET[/PREFIX]" : "BUCKET/KEY");
            return EXIT_USAGE;
        }
    }
    return 0;
}

static const char put_usage[] =
    "usage: svctl put BUCKET/KEY [FILE|-] [--if-version N]\n"
    "Store FILE (or standard input when FILE is - or absent) as BUCKET/KEY and\n"
    "print the new version. --if-version 0: only if the key does not exist;\n"
    "--if-version N: only if its current version is N (else exit 6). A standby\n"
    "or fenced site refuses writes: exit 7, with the node's message naming the\n"
    "active site.\n";
static const char get_usage[] =
    "usage: svctl get BUCKET/KEY [FILE|-] [--consistency linearizable|stale]\n"
    "Write BUCKET/KEY to FILE (replaced only once the whole object arrived and\n"
    "passed its SHA-256 check) or to standard output. stale reads may be served\n"
    "by any replica.\n";
static const char rm_usage[] = "usage: svctl rm BUCKET/KEY [--if-version N]\n"
                               "Delete BUCKET/KEY, only if its version is N when given.\n"
                               "A standby or fenced site refuses it: exit 7.\n";
static const char ls_usage[] =
    "usage: svctl ls BUCKET[/PREFIX] [--limit N] [--start-after KEY]\n"
    "List the keys of BUCKET starting with PREFIX, in order. Without --limit every\n"
    "key is listed (page by page); with it, at most N, and a last line says how to\n"
    "continue when more exist.\n";
static const char stat_usage[] = "usage: svctl stat BUCKET/KEY\n"
                                 "Show size, version, SHA-256 and modification time.\n";
static const char status_usage[] =
    "usage: svctl status\n"
    "Show the cluster map's epoch, every node (id, address, zone, STATE, REPLICAS,\n"
    "LEADERS, and the HOST:PORT of its plain-HTTP /metrics and /health as it reports\n"
    "it; - when it did not answer), every shard's replicas and their roles, and the\n"
    "shards below their replica count with the scheduler's reason.\n"
    "STATE, REPLICAS and LEADERS are the meta group leader's (STATE: up, down,\n"
    "draining, evicted, removed). When that leader cannot be reached, a line says\n"
    "health is unknown, STATE is up or down by whether the node answered, and the\n"
    "counts come from the map and the roles the nodes report.\n"
    "-o json prints {\"epoch\":N,\"nodes\":[{\"id\",\"address\",\"zone\",\"state\",\n"
    "\"metrics\" (\"\" for a node that did not answer),\"reachable\",\"replicas\",\n"
    "\"leaders\"}],\"shards\":[{\"id\",\"replicas\":[{\"node\",\"zone\",\"role\",\"term\",\n"
    "\"applied\"}] and, below its replica count, \"reason\",\"text\",\"chunks_left\"}],\n"
    "\"health_known\":BOOL} (and \"meta_reason\",\"meta_text\" when the meta group is\n"
    "below its count).\n";

struct file_src {
    int fd;
    struct progress *p;
};

static int64_t file_read(void *arg, void *buf, size_t cap)
{
    struct file_src *s = arg;
    for (;;) {
        ssize_t n = read(s->fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            progress_add(s->p, (size_t)n);
        return n;
    }
}

static int run_put(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    struct args a;
    int rc = parse_args("put", put_usage, argc, argv, &a, 2, true, false, false);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    char bucket[64], key[SV_CLIENT_NAME_MAX + 1];
    split_target(a.target, bucket, sizeof(bucket), key, sizeof(key), false);
    int fd = STDIN_FILENO;
    if (a.file != NULL && strcmp(a.file, "-") != 0) {
        fd = open(a.file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "svctl: put %s: %s: %s\n", a.target, a.file, strerror(errno));
            return EXIT_ERR;
        }
    }
    struct stat sb;
    int64_t size = -1;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        size = (int64_t)sb.st_size;
    struct progress p;
    progress_init(&p, size > 0 ? (uint64_t)size : 0, size < 0);
    struct file_src src = {fd, &p};
    uint64_t version = 0;
    int err = sv_client_put_stream(c, bucket, key, size,
                                   a.has_if_version ? (int64_t)a.if_version : SV_IF_ANY, &version,
                                   file_read, &src);
    if (p.on)
        progress_show(&p, true);
    if (fd != STDIN_FILENO)
        close(fd);
    if (err != 0)
        return sv__fail("put", a.target, err);
    if (g->json)
        printf("{\"version\":%" PRIu64 "}\n", version);
    else
        printf("%" PRIu64 "\n", version);
    return EXIT_OK;
}

struct file_sink {
    int fd;
    struct progress *p;
};

static int file_write(void *arg, const void *buf, size_t len)
{
    struct file_sink *s = arg;
    const uint8_t *b = buf;
    while (len > 0) {
        ssize_t n = write(s->fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
        progress_add(s->p, (size_t)n);
    }
    return 0;
}

static int run_get(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    (void)g;
    struct args a;
    int rc = parse_args("get", get_usage, argc, argv, &a, 2, false, true, false);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    char bucket[64], key[SV_CLIENT_NAME_MAX + 1];
    split_target(a.target, bucket, sizeof(bucket), key, sizeof(key), false);
    struct progress p;
    progress_init(&p, 0, false);
    if (isatty(STDERR_FILENO)) {
        /* Only a terminal needs the size in advance, for the progress bar. */
        struct sv_stat st;
        if (sv_client_stat(c, bucket, key, a.cons, &st) == 0)
            progress_init(&p, st.size, false);
    }
    bool to_file = a.file != NULL && strcmp(a.file, "-") != 0;
    char tmp[PATH_MAX];
    int fd = STDOUT_FILENO;
    if (to_file) {
        /* A temporary file next to FILE, renamed over it only after the check passed. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", a.file);
        int n = snprintf(tmp, sizeof(tmp),
                         "%s/.svctl-get."
                         "XX"
                         "XXXX" /* mkstemp template */,
                         dirname(dir));
        if (n < 0 || (size_t)n >= sizeof(tmp) || (fd = mkstemp(tmp)) < 0) {
            fprintf(stderr, "svctl: get %s: %s: %s\n", a.target, a.file,
                    n < 0 || (size_t)n >= sizeof(tmp) ? "path too long" : strerror(errno));
            return EXIT_ERR;
        }
    }
    struct file_sink sink = {fd, &p};
    int err = sv_client_get_stream(c, bucket, key, a.cons, NULL, file_write, &sink);
    if (p.on)
        progress_show(&p, true);
    if (to_file) {
        if (err == 0 && (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, a.file) != 0)) {
            fprintf(stderr, "svctl: get %s: %s: %s\n", a.target, a.file, strerror(errno));
            unlink(tmp);
            return EXIT_ERR;
        }
        if (err != 0) {
            close(fd);
            unlink(tmp);
        }
    }
    if (err != 0)
        return sv__fail("get", a.target, err);
    if (!to_file && fflush(stdout) != 0)
        return EXIT_ERR;
    return EXIT_OK;
}

static int run_rm(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    struct args a;
    int rc = parse_args("rm", rm_usage, argc, argv, &a, 1, true, false, false);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    char bucket[64], key[SV_CLIENT_NAME_MAX + 1];
    split_target(a.target, bucket, sizeof(bucket), key, sizeof(key), false);
    uint64_t version = 0;
    int err = sv_client_delete(c, bucket, key, a.has_if_version ? (int64_t)a.if_version : SV_IF_ANY,
                               &version);
    if (err != 0)
        return sv__fail("rm", a.target, err);
    if (g->json)
        printf("{\"deleted_version\":%" PRIu64 "}\n", version);
    return EXIT_OK;
}

static int run_ls(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    struct args a;
    int rc = parse_args("ls", ls_usage, argc, argv, &a, 1, false, false, true);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    char bucket[64], prefix[SV_CLIENT_NAME_MAX + 1], after[SV_CLIENT_NAME_MAX + 1] = "";
    split_target(a.target, bucket, sizeof(bucket), prefix, sizeof(prefix), true);
    if (a.start_after != NULL)
        snprintf(after, sizeof(after), "%s", a.start_after);
    uint64_t left = a.has_limit ? a.limit : UINT64_MAX;
    bool first = true, more = false;
    if (g->json)
        printf("{\"entries\":[");
    while (left > 0) {
        uint32_t page = left < LS_PAGE ? (uint32_t)left : LS_PAGE;
        struct sv_list *l = NULL;
        int err = sv_client_list(c, bucket, prefix, after, page, SV_LINEARIZABLE, &l);
        if (err != 0) {
            if (g->json)
                printf("]}\n");
            fflush(stdout);
            return sv__fail("ls", a.target, err);
        }
        for (size_t i = 0; i < l->n; i++) {
            const struct sv_list_entry *e = &l->entries[i];
            char t[40];
            sv__iso_time(e->mtime_ms, t, sizeof(t));
            if (g->json) {
                printf("%s{\"key\":", first ? "" : ",");
                sv__json_str(stdout, e->key);
                printf(",\"size\":%" PRIu64 ",\"version\":%" PRIu64 ",\"mtime_ms\":%" PRIu64 "}",
                       e->size, e->version, e->mtime_ms);
            } else {
                static char key[SV_TEXT_ESC_MAX];
                sv__text_esc(e->key, key, sizeof key);
                printf("%12" PRIu64 "  %8" PRIu64 "  %s  %s\n", e->size, e->version, t, key);
            }
            first = false;
        }
        left -= l->n;
        more = l->more;
        if (l->n > 0)
            snprintf(after, sizeof(after), "%s", l->entries[l->n - 1].key);
        bool stop = !l->more || l->n == 0;
        sv_client_list_free(l);
        if (stop)
            break;
    }
    if (g->json) {
        printf("],\"more\":%s,\"next_start_after\":", more ? "true" : "false");
        sv__json_str(stdout, more ? after : "");
        printf("}\n");
    } else if (more) {
        static char shown[SV_TEXT_ESC_MAX];
        sv__text_esc(after, shown, sizeof shown);
        printf("(more: --start-after '%s')\n", shown);
    }
    return EXIT_OK;
}

static int run_stat(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    struct args a;
    int rc = parse_args("stat", stat_usage, argc, argv, &a, 1, false, true, false);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    char bucket[64], key[SV_CLIENT_NAME_MAX + 1];
    split_target(a.target, bucket, sizeof(bucket), key, sizeof(key), false);
    struct sv_stat st;
    int err = sv_client_stat(c, bucket, key, a.cons, &st);
    if (err != 0)
        return sv__fail("stat", a.target, err);
    char h[65], t[40];
    hex(st.sha256, 32, h);
    sv__iso_time(st.mtime_ms, t, sizeof(t));
    if (g->json)
        printf("{\"size\":%" PRIu64 ",\"version\":%" PRIu64
               ",\"sha256\":\"%s\",\"mtime_ms\":%" PRIu64 "}\n",
               st.size, st.version, h, st.mtime_ms);
    else
        printf("size:    %" PRIu64 "\nversion: %" PRIu64 "\nsha256:  %s\nmtime:   %s\n", st.size,
               st.version, h, t);
    return EXIT_OK;
}

static int run_status(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    struct args a;
    int rc = parse_args("status", status_usage, argc, argv, &a, 0, false, false, false);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    struct sv_cluster_status *s = NULL;
    int err = sv_client_status(c, &s);
    if (err != 0)
        return sv__fail("status", NULL, err);
    if (g->json) {
        printf("{\"epoch\":%" PRIu64 ",\"nodes\":[", s->epoch);
        for (size_t i = 0; i < s->n_nodes; i++) {
            const struct sv_status_node *nd = &s->nodes[i];
            printf("%s{\"id\":%" PRIu64 ",\"address\":", i ? "," : "", nd->id);
            sv__json_str(stdout, nd->address);
            printf(",\"zone\":");
            sv__json_str(stdout, nd->zone);
            printf(",\"state\":");
            sv__json_str(stdout, nd->state);
            printf(",\"metrics\":");
            sv__json_str(stdout, nd->metrics);
            printf(",\"reachable\":%s,\"replicas\":%" PRIu64 ",\"leaders\":%" PRIu64 "}",
                   nd->reachable ? "true" : "false", nd->replicas, nd->leaders);
        }
        printf("],\"shards\":[");
        for (size_t i = 0; i < s->n_shards; i++) {
            const struct sv_status_shard *sh = &s->shards[i];
            printf("%s{\"id\":%" PRIu64 ",\"replicas\":[", i ? "," : "", sh->id);
            for (size_t j = 0; j < sh->n_replicas; j++) {
                const struct sv_status_replica *r = &sh->replicas[j];
                printf("%s{\"node\":%" PRIu64 ",\"zone\":", j ? "," : "", r->node);
                sv__json_str(stdout, r->zone);
                printf(",\"role\":");
                sv__json_str(stdout, r->role);
                printf(",\"term\":%" PRIu64 ",\"applied\":%" PRIu64 "}", r->term, r->applied);
            }
            printf("]");
            if (sh->reason[0] != '\0') {
                printf(",\"reason\":");
                sv__json_str(stdout, sh->reason);
                printf(",\"text\":");
                sv__json_str(stdout, sh->text);
                printf(",\"chunks_left\":%" PRId64, sh->chunks_left);
            }
            printf("}");
        }
        printf("],\"health_known\":%s", s->health_known ? "true" : "false");
        if (s->meta_reason[0] != '\0') {
            printf(",\"meta_reason\":");
            sv__json_str(stdout, s->meta_reason);
            printf(",\"meta_text\":");
            sv__json_str(stdout, s->meta_text);
        }
        printf("}\n");
    } else {
        printf("cluster map epoch %" PRIu64 "\n", s->epoch);
        if (!s->sched_known)
            printf("health unknown: the meta group's leader did not answer; STATE is whether "
                   "the node answered\n");
        else if (!s->health_known)
            printf("health unknown: the meta group's leader has not heard every node yet\n");
        printf("\n%-6s %-28s %-12s %-9s %8s %7s %s\n", "NODE", "ADDRESS", "ZONE", "STATE",
               "REPLICAS", "LEADERS", "METRICS");
        for (size_t i = 0; i < s->n_nodes; i++) {
            const struct sv_status_node *nd = &s->nodes[i];
            printf("%-6" PRIu64 " %-28s %-12s %-9s %8" PRIu64 " %7" PRIu64 " %s\n", nd->id,
                   nd->address, nd->zone, nd->state, nd->replicas, nd->leaders,
                   nd->metrics[0] ? nd->metrics : "-");
        }
        printf("\n%-6s %s\n", "SHARD", "REPLICAS (node/zone/role)");
        size_t below = 0;
        for (size_t i = 0; i < s->n_shards; i++) {
            printf("%-6" PRIu64, s->shards[i].id);
            for (size_t j = 0; j < s->shards[i].n_replicas; j++) {
                const struct sv_status_replica *r = &s->shards[i].replicas[j];
                printf(" %" PRIu64 "/%s/%s", r->node, r->zone, r->role);
            }
            printf("\n");
            below += s->shards[i].reason[0] != '\0';
        }
        if (below > 0 || s->meta_reason[0] != '\0') {
            printf("\nshards below their replica count:\n");
            if (s->meta_reason[0] != '\0')
                printf("  meta: %s%s%s\n", s->meta_reason, s->meta_text[0] ? ": " : "",
                       s->meta_text);
            for (size_t i = 0; i < s->n_shards; i++) {
                const struct sv_status_shard *sh = &s->shards[i];
                if (sh->reason[0] == '\0')
                    continue;
                printf("  shard %" PRIu64 ": %s%s%s", sh->id, sh->reason, sh->text[0] ? ": " : "",
                       sh->text);
                if (sh->chunks_left >= 0)
                    printf(" (%" PRId64 " chunks left)", sh->chunks_left);
                printf("\n");
            }
        } else if (s->health_known) {
            printf("\nevery shard has its replica count\n");
        }
    }
    sv_client_status_free(s);
    return EXIT_OK;
}

static const struct cmd cmds[] = {
    {"put", put_usage, run_put, false},
    {"get", get_usage, run_get, false},
    {"rm", rm_usage, run_rm, false},
    {"ls", ls_usage, run_ls, false},
    {"stat", stat_usage, run_stat, false},
    {"status", status_usage, run_status, false},
    {"node", sv__node_usage, sv__run_node, true},
    {"cluster", sv__cluster_usage, sv__run_cluster, true},
    {"sched", sv__sched_usage, sv__run_sched, true},
    {"dr", sv__dr_usage, sv__run_dr, true},
};

/* Validate a command's arguments before connecting, so usage errors exit 2
 * without needing a cluster. */
static int precheck(const struct cmd *cmd, int argc, char **argv)
{
    if (cmd->self_check)
        return cmd->run(NULL, NULL, argc, argv);
    struct args a;
    bool put = strcmp(cmd->name, "put") == 0, get = strcmp(cmd->name, "get") == 0;
    bool rm = strcmp(cmd->name, "rm") == 0, ls = strcmp(cmd->name, "ls") == 0;
    bool st = strcmp(cmd->name, "stat") == 0;
    int max_pos = put || get ? 2 : (strcmp(cmd->name, "status") == 0 ? 0 : 1);
    return parse_args(cmd->name, cmd->usage, argc, argv, &a, max_pos, put || rm, get || st, ls);
}

/* A global option at argv[*i] (its value too): 1 when taken (into *g), 0
 * when argv[*i] is not a global option, or an exit status for a bad one. */
static int global_opt(int argc, char **argv, int *i, struct global *g)
{
    const char *v;
    if (sv__opt_value(argc, argv, i, "--endpoints", &v)) {
        g->endpoints = v;
    } else if (sv__opt_value(argc, argv, i, "--ca", &v)) {
        g->ca = v;
    } else if (sv__opt_value(argc, argv, i, "--token", &v)) {
        g->token = v;
    } else if (sv__opt_value(argc, argv, i, "-o", &v)) {
        if (v != NULL && strcmp(v, "json") == 0) {
            g->json = true;
        } else if (v == NULL || strcmp(v, "text") != 0) {
            sv__usage_error("-o is text or json");
            return EXIT_USAGE;
        }
    } else if (sv__opt_value(argc, argv, i, "--timeout", &v)) {
        char *end = NULL;
        double s = v ? strtod(v, &end) : 0;
        if (v == NULL || *end != '\0' || !(s > 0) || s > 86400) {
            sv__usage_error("--timeout needs a number of seconds (0 < s <= 86400)");
            return EXIT_USAGE;
        }
        g->deadline_ms = (uint32_t)(s * 1000 + 0.5);
        if (g->deadline_ms == 0)
            g->deadline_ms = 1;
    } else {
        return 0;
    }
    if (v == NULL) {
        sv__usage_error("%s needs a value", argv[*i]);
        return EXIT_USAGE;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct global g = {
        .endpoints = getenv("SV_ENDPOINTS"),
        .ca = getenv("SV_CA"),
        .token = getenv("SV_TOKEN"),
    };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(main_usage, stdout);
            return EXIT_OK;
        }
        int r = global_opt(argc, argv, &i, &g);
        if (r == 0) {
            sv__usage_error("unknown option %s", argv[i]);
            return EXIT_USAGE;
        }
        if (r != 1)
            return r;
    }
    if (i >= argc) {
        sv__usage_error("missing command");
        return EXIT_USAGE;
    }
    const struct cmd *cmd = NULL;
    for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
        if (strcmp(argv[i], cmds[k].name) == 0)
            cmd = &cmds[k];
    if (cmd == NULL) {
        sv__usage_error("unknown command \"%s\"", argv[i]);
        return EXIT_USAGE;
    }
    /* Global options may also follow the command (svctl status -o json):
     * take them out of the command's arguments. */
    int cargc = 0;
    /* node drain has its own --timeout (how long to wait for the drain):
     * there it stays with the command's arguments. */
    bool own_timeout =
        strcmp(argv[i], "node") == 0 && i + 1 < argc && strcmp(argv[i + 1], "drain") == 0;
    for (int j = i; j < argc; j++) {
        if (own_timeout && strcmp(argv[j], "--timeout") == 0) {
            argv[i + cargc++] = argv[j];
            if (j + 1 < argc)
                argv[i + cargc++] = argv[++j];
            continue;
        }
        int r = j > i && !(own_timeout && strncmp(argv[j], "--timeout=", 10) == 0)
                    ? global_opt(argc, argv, &j, &g)
                    : 0;
        if (r == 0)
            argv[i + cargc++] = argv[j];
        else if (r != 1)
            return r;
    }
    argc = i + cargc;
    int rc = precheck(cmd, argc - i, argv + i);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    /* dr drill names both sites itself and opens clients of its own. */
    if (strcmp(cmd->name, "dr") == 0 && argc - i > 1 && strcmp(argv[i + 1], "drill") == 0)
        return sv__dr_drill(&g, argc - i, argv + i);
    if (g.endpoints == NULL || g.endpoints[0] == '\0' || g.ca == NULL || g.ca[0] == '\0') {
        sv__usage_error("%s: --endpoints (or SV_ENDPOINTS) and --ca (or SV_CA) are required",
                        cmd->name);
        return EXIT_USAGE;
    }
    struct sv_client_options o = {
        .endpoints = g.endpoints,
        .ca_file = g.ca,
        .token = g.token,
        .deadline_ms = g.deadline_ms,
    };
    struct sv_client *c = NULL;
    int err = sv_client_open(&o, &c);
    if (err != 0)
        return sv__fail(cmd->name, argc - i > 1 && argv[i + 1][0] != '-' ? argv[i + 1] : NULL, err);
    rc = cmd->run(c, &g, argc - i, argv + i);
    sv_client_close(c);
    return rc;
}
