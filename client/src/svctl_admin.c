/* svctl's operator commands: node list|drain|remove, cluster show|set, sched log,
 * dr status|promote|demote. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "shardvault/client.h"
#include "svctl.h"

enum {
    DRAIN_POLL_MS = 1000,
    DR_POLL_MS = 100,       /* dr promote: between two looks at every node */
    DR_WAIT_S_DEFAULT = 30, /* dr promote --wait */
    DURATION_MAX_S = 86400, /* down-after and evict-after, as the node takes them */
    MOVES_MAX = 64,         /* moves-per-node, as the map takes it */
};

const char sv__node_usage[] =
    "usage: svctl node list\n"
    "       svctl node drain ID [--no-wait] [--cancel] [--timeout S]\n"
    "       svctl node remove ID [--force]\n"
    "Every node command asks the meta group's leader (any node redirects there).\n"
    "\n"
    "list     the nodes as the scheduler sees them: ID ZONE STATE (up, down,\n"
    "         draining, evicted, removed) REPLICAS LEADERS BYTES DISK-FREE\n"
    "         LAST-HEARTBEAT; a line says when health is unknown (the leader has not\n"
    "         heard every node since it took over). -o json prints\n"
    "         {\"epoch\":E,\"health_known\":B,\"nodes\":[{\"id\",\"zone\",\"address\",\"state\",\n"
    "         \"replicas\",\"leaders\",\"bytes\",\"disk_free\",\"last_heartbeat_ms\" (null:\n"
    "         never heard)}]}.\n"
    "drain    record that node ID drains (its replicas move to other nodes), then\n"
    "         show progress every second (replicas and bytes left, rate, ETA, and\n"
    "         why a shard is stuck when the scheduler says so) until it holds no\n"
    "         replica; then `svctl node remove ID` takes it out of the map.\n"
    "         --no-wait   return once the drain is recorded\n"
    "         --cancel    stop draining: the node is up again (keeps what it holds)\n"
    "         --timeout S stop waiting after S seconds (exit 5; the drain goes on)\n"
    "         Ctrl-C only stops the waiting: the drain goes on in the cluster.\n"
    "         (The global --timeout, the deadline of each request, goes before\n"
    "         the command here: svctl --timeout 5 node drain 3.)\n"
    "remove   remove node ID from the cluster map. The leader refuses (exit 1, its\n"
    "         reason printed) while the node holds replicas: drain it first.\n"
    "         --force  remove it anyway (its replicas are rebuilt elsewhere)\n";

const char sv__cluster_usage[] =
    "usage: svctl cluster show\n"
    "       svctl cluster set NAME VALUE\n"
    "The scheduler's settings, kept in the cluster map by the meta group's leader.\n"
    "  down-after S       a node not heard for S seconds is down (1..86400; suffix\n"
    "                     s, m or h allowed: 90s, 5m, 1h)\n"
    "  evict-after S      and evicted after S seconds (1..86400, at least down-after):\n"
    "                     its replicas are rebuilt elsewhere\n"
    "  auto-evict on|off  evict automatically\n"
    "  repair-rate BYTES  bytes per second of re-replication per node (> 0; suffix\n"
    "                     K, M, G (1000s) or KiB, MiB, GiB (1024s): 64MiB)\n"
    "  moves-per-node N   replica moves at a time per node (1..64)\n"
    "  rebalance on|off   move replicas for balance alone (repairs and drains go on\n"
    "                     either way)\n"
    "set prints the settings after the change. -o json prints {\"epoch\",\n"
    "\"down_after_s\",\"evict_after_s\",\"auto_evict\",\"repair_rate\",\"moves_per_node\",\n"
    "\"rebalance\"}.\n";

const char sv__sched_usage[] =
    "usage: svctl sched log\n"
    "The scheduler's recent decisions, oldest first, one per line: time (UTC),\n"
    "action (state, replace, transfer, report, done), reason, the group (meta, or\n"
    "shard S), the node concerned, and a sentence. -o json prints {\"events\":[{\n"
    "\"time_ms\",\"action\",\"reason\",\"group\" (0 the meta group, S+1 shard S; null:\n"
    "about a node only),\"shard\" (S; null for the meta group or none),\"node\" (null:\n"
    "none),\"text\"}]}.\n";

const char sv__dr_usage[] =
    "usage: svctl dr status\n"
    "       svctl dr promote [--force] [--wait S]\n"
    "       svctl dr demote\n"
    "       svctl dr failback --peer ENDPOINTS\n"
    "       svctl dr switchover --peer ENDPOINTS [--wait S]\n"
    "       svctl dr verify --peer ENDPOINTS [--wait S]\n"
    "       svctl dr diverged list\n"
    "       svctl dr diverged get LEDGER-KEY [--out FILE]\n"
    "       svctl dr drill --primary EPS --standby EPS --outage-cmd CMD --restore-cmd CMD\n"
    "                      --out DIR [...]   (svctl dr drill --help)\n"
    "Disaster recovery: this site's part in it, how far it is behind, and the\n"
    "change of roles.\n"
    "\n"
    "status   ask every node of the cluster map (5 s each at most) about its site\n"
    "         and the shards it leads, and show the site: its name, role (primary,\n"
    "         standby, or fenced when any node says so), epoch and peer site; its\n"
    "         frontier (UTC: every entry the primary committed before it is applied\n"
    "         here; the lowest of the shards') and lag (ms: the highest of the\n"
    "         shards', each measured against its leader's clock), \"unknown\" when\n"
    "         a shard's is; how many nodes answered. Then per shard: SHARD, STATE\n"
    "         (a standby's initial-sync, streaming, reseeding, stalled; a primary's\n"
    "         shipping, stalled, cutting (promoted, its cut not applied yet: no\n"
    "         writes); unknown: no node that answered leads it), LAG,\n"
    "         LAST-CONTACT (since the peer site was last heard), APPLIED (a\n"
    "         standby's last primary index that ran (entries held for the\n"
    "         consistent cut wait); a primary's: the standby's\n"
    "         cursor), COMMIT (the primary's commit index as last seen) and REASON\n"
    "         (why it is stalled). -o json prints {\"role\",\"site\",\"peer\",\n"
    "         \"epoch\",\"frontier_ms\",\"lag_ms\",\"shards\":[{\"id\",\"state\",\n"
    "         \"lag_ms\",\"frontier_ms\",\"applied\",\"commit\",\"last_contact_ms\"\n"
    "         and, when there is one, \"reason\"}]}; unknown numbers are -1.\n"
    "promote  make this standby site the primary, then wait until it accepts\n"
    "         writes. First it reads (as status does) the highest shard frontier\n"
    "         and the last contact with the primary (the most recent of the\n"
    "         shards', by the clock of the node that leads the shard). Then it\n"
    "         asks the meta group's leader to promote: a new site epoch in the\n"
    "         cluster map, and the cut, the site frontier as the leader knows it\n"
    "         (every write the primary committed before it is here). Every shard\n"
    "         is cut there: each write the primary stamped before it is kept,\n"
    "         each later one dropped (a failback of the old primary lists them\n"
    "         in its divergence ledger); a shard takes writes once cut. It asks\n"
    "         every node (as status) until each that answers is primary at that\n"
    "         epoch and every shard is led by one of them and cut. It prints the\n"
    "         new site epoch; the cut (UTC and ms since the epoch; none for a\n"
    "         forced promotion while the frontier was not known: every shard\n"
    "         keeps all it received); \"RPO at most N ms\": the last contact minus\n"
    "         the cut, \"unknown\" when either is (a bound only if the primary\n"
    "         took no write after that contact; the two sites' clocks add their\n"
    "         skew); and \"writes open after N ms\", from sending the promotion.\n"
    "         --force   promote although the primary site answered within the last\n"
    "                   3 s, a shard is initial-sync or reseeding (its image or\n"
    "                   chunks still coming), or the site's frontier is not known\n"
    "                   yet; without it: exit 1, the reason (exit 5 for the\n"
    "                   frontier: retry)\n"
    "         --wait S  wait at most S seconds for the nodes (default 30); then\n"
    "                   exit 5: the promotion is recorded, not every node follows\n"
    "         -o json prints {\"epoch\",\"cut_ms\",\"cut_max_ms\",\"last_contact_ms\"\n"
    "         (ms since the epoch),\"rpo_ms\",\"open_after_ms\"}; unknown numbers\n"
    "         are -1.\n"
    "demote   fence this site: it takes no writes, so that the peer site can be\n"
    "         the primary (it still ships what it committed to its standby).\n"
    "         Prints the site epoch (-o json: {\"epoch\"}).\n"
    "failback run on a fenced old primary, ENDPOINTS naming the active site (the\n"
    "         promoted one): every write this site accepted past the cut the\n"
    "         active site was promoted at (acknowledged, never shipped) is copied\n"
    "         into the divergence ledger on the active site (bucket sv-diverged:\n"
    "         per key its last write past the cut, with its content; deletes\n"
    "         too); then this site becomes the active site's standby and each of\n"
    "         its shards is re-seeded from it (status: initial-sync, then\n"
    "         streaming). Nothing is reverted without a trace. Run it again after\n"
    "         a failure: it redoes the copy and goes on. -o json prints\n"
    "         {\"epoch\",\"diverged\",\"deleted\",\"bytes\"}.\n"
    "switchover  the planned move, run on the primary, ENDPOINTS naming its\n"
    "         standby: fence this site (writes pause), wait until the standby has\n"
    "         applied everything this site committed (at most --wait S seconds,\n"
    "         default 60; else exit 5, this site stays fenced), promote the\n"
    "         standby, wait until it takes writes, and fail this site back as its\n"
    "         standby. Nothing is lost (RPO 0). Prints the pause. -o json prints\n"
    "         {\"epoch\",\"paused_ms\",\"drain_ms\",\"diverged\"}.\n"
    "verify   compare every shard of this site and the peer site (ENDPOINTS): each\n"
    "         site's shard leader digests the shard's objects and open uploads\n"
    "         (SHA-256) and says at which primary index; digests at one index\n"
    "         must be equal. A shard whose digests stand at different indexes (the\n"
    "         standby behind, writes going on) is asked again for at most --wait S\n"
    "         seconds (default 10). Per shard: SHARD, STATE (match, mismatch,\n"
    "         behind, unknown), the two indexes and digests. Exit 0 when every\n"
    "         shard matches, 1 on a mismatch, 5 when one is behind or unknown.\n"
    "         -o json prints {\"match\",\"mismatch\",\"behind\",\"unknown\",\n"
    "         \"shards\":[{\"id\",\"state\",\"index\",\"peer_index\",\"digest\",\n"
    "         \"peer_digest\"}]}.\n"
    "diverged list   the divergence ledger, on the active site: per entry the\n"
    "         failback's site epoch, shard, bucket, key, version, size, SHA-256,\n"
    "         commit time (the old primary's clock), live or deleted and the\n"
    "         ledger key of its content. -o json prints {\"entries\":[{\"epoch\",\n"
    "         \"shard\",\"bucket\",\"key\",\"version\",\"size\",\"sha256\",\n"
    "         \"commit_ms\",\"index\",\"deleted\",\"ledger_key\"}]}.\n"
    "diverged get LEDGER-KEY   the content of an entry, on standard output or\n"
    "         in FILE (--out).\n"
    "drill    a disaster-recovery exercise against live load: the primary site's\n"
    "         outage (your command), promotion, every acknowledged write checked,\n"
    "         the old primary restored and fenced; RPO, RTO, lag; a report in text,\n"
    "         JSON and HTML. svctl dr drill --help describes it.\n"
    "A standby or fenced site refuses writes: svctl put and rm exit 7 there.\n";

/* "meta", "shard S" or "-" for a wire group id (-1: none). */
static void group_name(int64_t group, char *out, size_t cap)
{
    if (group < 0)
        snprintf(out, cap, "-");
    else if (group == 0)
        snprintf(out, cap, "meta");
    else
        snprintf(out, cap, "shard %" PRId64, group - 1);
}

static void human_bytes(uint64_t b, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%" PRIu64 "B", b);
    else
        snprintf(out, cap, "%.1f%s", v, units[u]);
}

/* Bytes with an optional suffix: K M G T (powers of 1000, also KB...) or KiB
 * MiB GiB TiB (powers of 1024), B. */
static bool parse_bytes(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    static const struct {
        const char *suffix;
        uint64_t mul;
    } sfx[] = {
        {"", 1},
        {"B", 1},
        {"K", 1000},
        {"KB", 1000},
        {"M", 1000000},
        {"MB", 1000000},
        {"G", 1000000000},
        {"GB", 1000000000},
        {"T", 1000000000000},
        {"TB", 1000000000000},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
    };
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        if (strcasecmp(end, sfx[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / sfx[i].mul)
            return false;
        *out = v * sfx[i].mul;
        return true;
    }
    return false;
}

/* Seconds with an optional s, m or h suffix. */
static bool parse_duration_s(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = strcmp(end, "") == 0 || strcmp(end, "s") == 0 ? 1
                   : strcmp(end, "m") == 0                       ? 60
                   : strcmp(end, "h") == 0                       ? 3600
                                                                 : 0;
    if (errno != 0 || mul == 0 || v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}

/* Argument parsing shared by the subcommands: --help, flags, options with
 * values and positional arguments. */
struct sub_args {
    const char *pos[2];
    int n_pos;
};

/* A flag or option of a subcommand. */
struct sub_opt {
    const char *name;
    bool takes_value;
    bool set;
    const char *value;
};

/* Parse argv[2..) of "svctl CMD SUB ...": 0, -1 after --help, EXIT_USAGE. */
static int parse_sub(const char *what, const char *usage, int argc, char **argv, int n_pos,
                     struct sub_opt *opts, size_t n_opts, struct sub_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        bool taken = false;
        for (size_t k = 0; k < n_opts && !taken; k++) {
            struct sub_opt *o = &opts[k];
            if (o->takes_value) {
                const char *v;
                if (!sv__opt_value(argc, argv, &i, o->name, &v))
                    continue;
                if (v == NULL) {
                    sv__usage_error("%s: %s needs a value", what, o->name);
                    return EXIT_USAGE;
                }
                o->value = v;
            } else if (strcmp(argv[i], o->name) != 0) {
                continue;
            }
            o->set = true;
            taken = true;
        }
        if (taken)
            continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            sv__usage_error("%s: unknown option %s", what, argv[i]);
            return EXIT_USAGE;
        }
        if (a->n_pos >= n_pos) {
            sv__usage_error("%s: too many arguments", what);
            return EXIT_USAGE;
        }
        a->pos[a->n_pos++] = argv[i];
    }
    if (a->n_pos < n_pos) {
        sv__usage_error("%s: missing %s", what,
                        a->n_pos == 0 && n_pos == 2 ? "NAME VALUE"
                        : n_pos == 2                ? "VALUE"
                                                    : "ID");
        return EXIT_USAGE;
    }
    return 0;
}

static bool parse_node_id(const char *what, const char *s, uint64_t *id)
{
    if (!sv__parse_u64(s, id) || *id == 0) {
        sv__usage_error("%s: ID must be a node number, not \"%s\"", what, s);
        return false;
    }
    return true;
}

/* node list */

static int node_list(struct sv_client *c, const struct global *g)
{
    struct sv_node_list *l = NULL;
    int err = sv_client_nodes(c, &l);
    if (err != 0)
        return sv__fail("node list", NULL, err);
    if (g->json) {
        printf("{\"epoch\":%" PRIu64 ",\"health_known\":%s,\"nodes\":[", l->epoch,
               l->health_known ? "true" : "false");
        for (size_t i = 0; i < l->n; i++) {
            const struct sv_node_info *n = &l->nodes[i];
            printf("%s{\"id\":%" PRIu64 ",\"zone\":", i ? "," : "", n->id);
            sv__json_str(stdout, n->zone);
            printf(",\"address\":");
            sv__json_str(stdout, n->address);
            printf(",\"state\":");
            sv__json_str(stdout, n->state);
            printf(",\"replicas\":%" PRIu64 ",\"leaders\":%" PRIu64 ",\"bytes\":%" PRIu64
                   ",\"disk_free\":%" PRIu64 ",\"last_heartbeat_ms\":",
                   n->replicas, n->leaders, n->bytes, n->disk_free);
            if (n->age_ms < 0)
                printf("null}");
            else
                printf("%" PRId64 "}", n->age_ms);
        }
        printf("]}\n");
    } else {
        printf("cluster map epoch %" PRIu64 "\n", l->epoch);
        if (!l->health_known)
            printf("health unknown: the meta group's leader has not heard every node since it "
                   "took over (down and evicted states may be missing)\n");
        printf("%-6s %-10s %-9s %8s %7s %10s %10s %s\n", "ID", "ZONE", "STATE", "REPLICAS",
               "LEADERS", "BYTES", "DISK-FREE", "LAST-HEARTBEAT");
        for (size_t i = 0; i < l->n; i++) {
            const struct sv_node_info *n = &l->nodes[i];
            char b[32], f[32], hb[32];
            human_bytes(n->bytes, b, sizeof(b));
            human_bytes(n->disk_free, f, sizeof(f));
            if (n->age_ms < 0)
                snprintf(hb, sizeof(hb), "never");
            else
                snprintf(hb, sizeof(hb), "%.1fs ago", (double)n->age_ms / 1000.0);
            printf("%-6" PRIu64 " %-10s %-9s %8" PRIu64 " %7" PRIu64 " %10s %10s %s\n", n->id,
                   n->zone, n->state, n->replicas, n->leaders, b, f, hb);
        }
    }
    sv_client_node_list_free(l);
    return EXIT_OK;
}

/* node drain */

static const struct sv_node_info *find_node(const struct sv_node_list *l, uint64_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->nodes[i].id == id)
            return &l->nodes[i];
    return NULL;
}

/* Print the reasons HEALTH gives for the groups with a replica on node id,
 * when they differ from what was printed last (*last, owned, replaced). */
static void show_stuck(struct sv_client *c, const struct global *g, uint64_t id, char **last)
{
    struct sv_health *h = NULL;
    if (sv_client_health(c, &h) != 0)
        return; /* the progress line matters more; the next poll tries again */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        sv_client_health_free(h);
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        const struct sv_health_group *gr = &h->groups[i];
        bool on = false;
        for (size_t j = 0; j < gr->n_replicas; j++)
            on |= gr->replicas[j] == id;
        if (!on || gr->reason[0] == '\0')
            continue;
        char name[32];
        group_name((int64_t)gr->group, name, sizeof(name));
        if (g->json) {
            fprintf(f, "{\"node\":%" PRIu64 ",\"stuck\":", id);
            sv__json_str(f, name);
            fprintf(f, ",\"group\":%" PRIu64 ",\"reason\":", gr->group);
            sv__json_str(f, gr->reason);
            fprintf(f, ",\"text\":");
            sv__json_str(f, gr->text);
            fprintf(f, "}\n");
        } else {
            fprintf(f, "  stuck: %s: %s%s%s\n", name, gr->reason, gr->text[0] ? ": " : "",
                    gr->text);
        }
    }
    fclose(f);
    sv_client_health_free(h);
    if (buf != NULL && (*last == NULL || strcmp(*last, buf) != 0)) {
        fputs(buf, stdout);
        free(*last);
        *last = buf;
    } else {
        free(buf);
    }
}

static int node_drain(struct sv_client *c, const struct global *g, uint64_t id, bool cancel,
                      bool no_wait, double timeout_s)
{
    char target[32];
    snprintf(target, sizeof(target), "%" PRIu64, id);
    int err = sv_client_node_drain(c, id, cancel);
    if (err != 0)
        return sv__fail(cancel ? "node drain --cancel" : "node drain", target, err);
    if (cancel || no_wait) {
        if (g->json)
            printf("{\"node\":%" PRIu64 ",\"%s\":true}\n", id, cancel ? "cancelled" : "draining");
        else if (cancel)
            printf("node %" PRIu64 ": drain cancelled; it is up again\n", id);
        else
            printf("node %" PRIu64 ": drain recorded; follow it with svctl node list\n", id);
        return EXIT_OK;
    }
    if (!g->json)
        printf("node %" PRIu64 ": draining (Ctrl-C stops watching; the drain goes on)\n", id);
    fflush(stdout);
    uint64_t t0 = sv__mono_ms(), b0 = 0;
    bool have_b0 = false;
    char *last_stuck = NULL;
    int rc = EXIT_OK;
    for (;;) {
        struct sv_node_list *l = NULL;
        err = sv_client_nodes(c, &l);
        if (err != 0) {
            /* A new meta leader being elected: say so and keep watching. */
            fprintf(stderr, "svctl: node drain %s: %s: %s (still watching)\n", target,
                    sv_client_strerror(err), sv_client_errmsg());
        } else {
            const struct sv_node_info *n = find_node(l, id);
            if (n == NULL) {
                fprintf(stderr, "svctl: node drain %s: the node is no longer in the map\n", target);
                sv_client_node_list_free(l);
                rc = EXIT_ERR;
                break;
            }
            if (n->replicas == 0) {
                if (g->json)
                    printf("{\"node\":%" PRIu64 ",\"done\":true}\n", id);
                else
                    printf("node %" PRIu64 ": drained: it holds no replica. Remove it with: "
                           "svctl node remove %" PRIu64 "\n",
                           id, id);
                sv_client_node_list_free(l);
                break;
            }
            if (strcmp(n->state, "draining") != 0) {
                fprintf(stderr, "svctl: node drain %s: the node is %s, not draining (cancelled?)\n",
                        target, n->state);
                sv_client_node_list_free(l);
                rc = EXIT_ERR;
                break;
            }
            uint64_t now = sv__mono_ms();
            if (!have_b0) {
                b0 = n->bytes;
                have_b0 = true;
            }
            double el = (double)(now - t0) / 1000.0;
            double rate = el > 0 && b0 > n->bytes ? (double)(b0 - n->bytes) / el : 0;
            if (g->json) {
                printf("{\"node\":%" PRIu64 ",\"replicas\":%" PRIu64 ",\"bytes\":%" PRIu64
                       ",\"rate_bytes_s\":%.0f,\"eta_s\":",
                       id, n->replicas, n->bytes, rate);
                if (rate > 0)
                    printf("%.0f}\n", (double)n->bytes / rate);
                else
                    printf("null}\n");
            } else {
                char left[32], eta[32];
                human_bytes(n->bytes, left, sizeof(left));
                if (rate > 0)
                    snprintf(eta, sizeof(eta), "%.0fs", (double)n->bytes / rate);
                else
                    snprintf(eta, sizeof(eta), "unknown");
                printf("node %" PRIu64 ": %" PRIu64 " replicas left, %s left, %.1f MB/s, ETA %s\n",
                       id, n->replicas, left, rate / 1e6, eta);
            }
            sv_client_node_list_free(l);
            show_stuck(c, g, id, &last_stuck);
        }
        fflush(stdout);
        if (timeout_s > 0 && (double)(sv__mono_ms() - t0) / 1000.0 >= timeout_s) {
            fprintf(stderr,
                    "svctl: node drain %s: not drained after %.0f s; the drain goes on "
                    "(svctl node list shows it)\n",
                    target, timeout_s);
            rc = EXIT_UNAVAILABLE;
            break;
        }
        sv__pause_ms(DRAIN_POLL_MS);
    }
    free(last_stuck);
    return rc;
}

int sv__run_node(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    if (argc < 2) {
        sv__usage_error("node: missing list, drain or remove");
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        if (c == NULL)
            fputs(sv__node_usage, stdout);
        return -1;
    }
    struct sub_args a;
    uint64_t id = 0;
    if (strcmp(sub, "list") == 0) {
        int rc = parse_sub("node list", sv__node_usage, argc, argv, 0, NULL, 0, &a);
        if (rc != 0 || c == NULL)
            return rc;
        return node_list(c, g);
    }
    if (strcmp(sub, "drain") == 0) {
        struct sub_opt o[] = {
            {"--no-wait", false, false, NULL},
            {"--cancel", false, false, NULL},
            {"--timeout", true, false, NULL},
        };
        int rc = parse_sub("node drain", sv__node_usage, argc, argv, 1, o, 3, &a);
        if (rc != 0)
            return rc;
        if (!parse_node_id("node drain", a.pos[0], &id))
            return EXIT_USAGE;
        double t = 0;
        if (o[2].set) {
            char *end = NULL;
            t = strtod(o[2].value, &end);
            if (*end != '\0' || !(t > 0) || t > 1e7) {
                sv__usage_error("node drain: --timeout needs a number of seconds > 0");
                return EXIT_USAGE;
            }
        }
        if (o[0].set && o[2].set) {
            sv__usage_error("node drain: --timeout bounds the waiting that --no-wait skips");
            return EXIT_USAGE;
        }
        if (c == NULL)
            return 0;
        return node_drain(c, g, id, o[1].set, o[0].set, t);
    }
    if (strcmp(sub, "remove") == 0) {
        struct sub_opt o[] = {{"--force", false, false, NULL}};
        int rc = parse_sub("node remove", sv__node_usage, argc, argv, 1, o, 1, &a);
        if (rc != 0)
            return rc;
        if (!parse_node_id("node remove", a.pos[0], &id))
            return EXIT_USAGE;
        if (c == NULL)
            return 0;
        int err = sv_client_node_remove(c, id, o[0].set);
        if (err != 0)
            return sv__fail("node remove", a.pos[0], err);
        if (g->json)
            printf("{\"node\":%" PRIu64 ",\"removed\":true}\n", id);
        else
            printf("node %" PRIu64 ": removed from the cluster map\n", id);
        return EXIT_OK;
    }
    sv__usage_error("node: unknown subcommand \"%s\" (list, drain, remove)", sub);
    return EXIT_USAGE;
}

/* cluster show|set */

static void print_settings(const struct global *g, const struct sv_cluster_settings *s)
{
    if (g->json) {
        printf("{\"epoch\":%" PRIu64 ",\"down_after_s\":%" PRIu64 ",\"evict_after_s\":%" PRIu64
               ",\"auto_evict\":%s,\"repair_rate\":%" PRIu64 ",\"moves_per_node\":%" PRIu64
               ",\"rebalance\":%s}\n",
               s->epoch, s->down_after_s, s->evict_after_s, s->auto_evict ? "true" : "false",
               s->repair_rate, s->moves_per_node, s->rebalance ? "true" : "false");
        return;
    }
    char r[32];
    human_bytes(s->repair_rate, r, sizeof(r));
    printf("cluster map epoch %" PRIu64 "\n", s->epoch);
    printf("down-after      %" PRIu64 " s\n", s->down_after_s);
    printf("evict-after     %" PRIu64 " s\n", s->evict_after_s);
    printf("auto-evict      %s\n", s->auto_evict ? "on" : "off");
    printf("repair-rate     %s/s (%" PRIu64 " bytes/s)\n", r, s->repair_rate);
    printf("moves-per-node  %" PRIu64 "\n", s->moves_per_node);
    printf("rebalance       %s\n", s->rebalance ? "on" : "off");
}

/* NAME VALUE to the wire's name and value: true when valid (else a usage error printed). */
static bool setting_value(const char *name, const char *v, uint64_t *out)
{
    if (strcmp(name, "down-after") == 0 || strcmp(name, "evict-after") == 0) {
        if (!parse_duration_s(v, out) || *out < 1 || *out > DURATION_MAX_S) {
            sv__usage_error("cluster set: %s is seconds in 1..%d (90, 90s, 5m, 1h), not \"%s\"",
                            name, DURATION_MAX_S, v);
            return false;
        }
        return true;
    }
    if (strcmp(name, "auto-evict") == 0 || strcmp(name, "rebalance") == 0) {
        if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
            *out = 1;
            return true;
        }
        if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0) {
            *out = 0;
            return true;
        }
        sv__usage_error("cluster set: %s is on or off, not \"%s\"", name, v);
        return false;
    }
    if (strcmp(name, "repair-rate") == 0) {
        if (!parse_bytes(v, out) || *out == 0) {
            sv__usage_error("cluster set: repair-rate is bytes per second > 0 (64MiB, 100M, "
                            "1048576), not \"%s\"",
                            v);
            return false;
        }
        return true;
    }
    if (strcmp(name, "moves-per-node") == 0) {
        if (!sv__parse_u64(v, out) || *out < 1 || *out > MOVES_MAX) {
            sv__usage_error("cluster set: moves-per-node is 1..%d, not \"%s\"", MOVES_MAX, v);
            return false;
        }
        return true;
    }
    sv__usage_error("cluster set: unknown setting \"%s\" (down-after, evict-after, auto-evict, "
                    "repair-rate, moves-per-node, rebalance)",
                    name);
    return false;
}

int sv__run_cluster(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    if (argc < 2) {
        sv__usage_error("cluster: missing show or set");
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        if (c == NULL)
            fputs(sv__cluster_usage, stdout);
        return -1;
    }
    struct sub_args a;
    struct sv_cluster_settings s;
    if (strcmp(sub, "show") == 0) {
        int rc = parse_sub("cluster show", sv__cluster_usage, argc, argv, 0, NULL, 0, &a);
        if (rc != 0 || c == NULL)
            return rc;
        int err = sv_client_cluster_set(c, NULL, 0, &s);
        if (err != 0)
            return sv__fail("cluster show", NULL, err);
        print_settings(g, &s);
        return EXIT_OK;
    }
    if (strcmp(sub, "set") == 0) {
        int rc = parse_sub("cluster set", sv__cluster_usage, argc, argv, 2, NULL, 0, &a);
        if (rc != 0)
            return rc;
        uint64_t v = 0;
        if (!setting_value(a.pos[0], a.pos[1], &v))
            return EXIT_USAGE;
        if (c == NULL)
            return 0;
        int err = sv_client_cluster_set(c, a.pos[0], v, &s);
        if (err != 0)
            return sv__fail("cluster set", a.pos[0], err);
        print_settings(g, &s);
        return EXIT_OK;
    }
    sv__usage_error("cluster: unknown subcommand \"%s\" (show, set)", sub);
    return EXIT_USAGE;
}

/* sched log */

int sv__run_sched(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    if (argc < 2) {
        sv__usage_error("sched: missing log");
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        if (c == NULL)
            fputs(sv__sched_usage, stdout);
        return -1;
    }
    if (strcmp(sub, "log") != 0) {
        sv__usage_error("sched: unknown subcommand \"%s\" (log)", sub);
        return EXIT_USAGE;
    }
    struct sub_args a;
    int rc = parse_sub("sched log", sv__sched_usage, argc, argv, 0, NULL, 0, &a);
    if (rc != 0 || c == NULL)
        return rc;
    struct sv_sched_log *l = NULL;
    int err = sv_client_sched_log(c, &l);
    if (err != 0)
        return sv__fail("sched log", NULL, err);
    if (g->json)
        printf("{\"events\":[");
    for (size_t i = 0; i < l->n; i++) {
        const struct sv_sched_event *e = &l->events[i];
        char t[40], grp[32], node[32];
        sv__iso_time(e->time_ms, t, sizeof(t));
        if (g->json) {
            printf("%s{\"time_ms\":%" PRIu64 ",\"action\":", i ? "," : "", e->time_ms);
            sv__json_str(stdout, e->action);
            printf(",\"reason\":");
            sv__json_str(stdout, e->reason);
            if (e->group < 0)
                printf(",\"group\":null,\"shard\":null");
            else if (e->group == 0)
                printf(",\"group\":0,\"shard\":null");
            else
                printf(",\"group\":%" PRId64 ",\"shard\":%" PRId64, e->group, e->group - 1);
            if (e->node < 0)
                printf(",\"node\":null,\"text\":");
            else
                printf(",\"node\":%" PRId64 ",\"text\":", e->node);
            sv__json_str(stdout, e->text);
            printf("}");
        } else {
            group_name(e->group, grp, sizeof(grp));
            if (e->node < 0)
                snprintf(node, sizeof(node), "-");
            else
                snprintf(node, sizeof(node), "node %" PRId64, e->node);
            printf("%s  %-9s %-22s %-9s %-8s %s\n", t, e->action, e->reason[0] ? e->reason : "-",
                   grp, node, e->text);
        }
    }
    if (g->json)
        printf("]}\n");
    else if (l->n == 0)
        printf("(no decisions yet)\n");
    sv_client_sched_log_free(l);
    return EXIT_OK;
}

/* dr status */

static void dr_status_json(const struct sv_dr_status *s)
{
    printf("{\"role\":");
    sv__json_str(stdout, s->role);
    printf(",\"site\":");
    sv__json_str(stdout, s->site);
    printf(",\"peer\":");
    sv__json_str(stdout, s->peer);
    printf(",\"epoch\":%" PRIu64 ",\"frontier_ms\":%" PRId64 ",\"lag_ms\":%" PRId64 ",\"shards\":[",
           s->epoch, s->frontier_ms, s->lag_ms);
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_dr_shard *sh = &s->shards[i];
        printf("%s{\"id\":%" PRIu64 ",\"state\":", i ? "," : "", sh->id);
        sv__json_str(stdout, sh->state);
        printf(",\"lag_ms\":%" PRId64 ",\"frontier_ms\":%" PRId64 ",\"applied\":%" PRIu64
               ",\"commit\":%" PRIu64 ",\"last_contact_ms\":%" PRId64,
               sh->lag_ms, sh->frontier_ms, sh->applied, sh->commit, sh->last_contact_ms);
        if (sh->reason[0] != '\0') {
            printf(",\"reason\":");
            sv__json_str(stdout, sh->reason);
        }
        printf("}");
    }
    printf("]}\n");
}

static void dr_status_text(const struct sv_dr_status *s)
{
    char t[40];
    printf("site:          %s\n", s->site);
    printf("role:          %s\n", s->role);
    printf("epoch:         %" PRIu64 "\n", s->epoch);
    printf("peer:          %s\n", s->peer[0] ? s->peer : "none");
    if (s->frontier_ms >= 0)
        sv__iso_time((uint64_t)s->frontier_ms, t, sizeof(t));
    printf("frontier:      %s\n", s->frontier_ms >= 0 ? t : "unknown");
    if (s->lag_ms >= 0)
        printf("lag:           %" PRId64 " ms\n", s->lag_ms);
    else
        printf("lag:           unknown\n");
    printf("nodes:         %zu of %zu answered\n", s->n_answered, s->n_nodes);
    printf("\n%-6s %-13s %10s %13s %12s %12s %s\n", "SHARD", "STATE", "LAG", "LAST-CONTACT",
           "APPLIED", "COMMIT", "REASON");
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_dr_shard *sh = &s->shards[i];
        bool known = strcmp(sh->state, "unknown") != 0;
        char lag[32], contact[32], applied[24], commit[24];
        if (sh->lag_ms >= 0)
            snprintf(lag, sizeof(lag), "%" PRId64 "ms", sh->lag_ms);
        else
            snprintf(lag, sizeof(lag), "unknown");
        if (sh->last_contact_ms >= 0)
            snprintf(contact, sizeof(contact), "%.1fs ago", (double)sh->last_contact_ms / 1000.0);
        else
            snprintf(contact, sizeof(contact), "%s", known ? "never" : "-");
        snprintf(applied, sizeof(applied), "-");
        snprintf(commit, sizeof(commit), "-");
        if (known) {
            snprintf(applied, sizeof(applied), "%" PRIu64, sh->applied);
            snprintf(commit, sizeof(commit), "%" PRIu64, sh->commit);
        }
        printf("%-6" PRIu64 " %-13s %10s %13s %12s %12s %s%s%s\n", sh->id, sh->state, lag, contact,
               applied, commit, sh->reason[0] ? sh->reason : "-", sh->text[0] ? ": " : "",
               sh->text);
    }
}

/* dr promote */

/* The cut of s, read at the client's wall clock now_ms. A shard's last contact
 * is an age on the clock of the node that leads it: that clock was the frontier
 * plus the lag when it answered (the lag is measured against it). The client's
 * clock stands in when the node's is not known. */
void sv__dr_cut_at(struct sv__dr_cut *k, int64_t cut_ms)
{
    k->frontier_ms = cut_ms;
    k->rpo_ms = cut_ms >= 0 && k->last_contact_ms >= 0
                    ? (k->last_contact_ms > cut_ms ? k->last_contact_ms - cut_ms : 0)
                    : -1;
}

struct sv__dr_cut sv__dr_cut_of(const struct sv_dr_status *s, int64_t now_ms)
{
    struct sv__dr_cut k = {s->frontier_ms, -1, -1, -1};
    const struct sv_dr_shard *nearest = NULL;
    for (size_t i = 0; i < s->n_shards; i++) {
        const struct sv_dr_shard *sh = &s->shards[i];
        if (sh->frontier_ms > k.max_ms)
            k.max_ms = sh->frontier_ms;
        if (sh->last_contact_ms >= 0 &&
            (nearest == NULL || sh->last_contact_ms < nearest->last_contact_ms))
            nearest = sh;
    }
    if (nearest != NULL) {
        int64_t clock = nearest->frontier_ms >= 0 && nearest->lag_ms >= 0
                            ? nearest->frontier_ms + nearest->lag_ms
                            : now_ms;
        k.last_contact_ms = clock - nearest->last_contact_ms;
    }
    if (k.frontier_ms >= 0 && k.last_contact_ms >= 0)
        k.rpo_ms = k.last_contact_ms > k.frontier_ms ? k.last_contact_ms - k.frontier_ms : 0;
    return k;
}

/* "ISO (N ms since the epoch)", or "unknown". */
static void time_or_unknown(int64_t ms, char *out, size_t cap)
{
    char t[40];
    if (ms < 0) {
        snprintf(out, cap, "unknown");
        return;
    }
    sv__iso_time((uint64_t)ms, t, sizeof(t));
    snprintf(out, cap, "%s (%" PRId64 " ms since the epoch)", t, ms);
}

/* Whether s shows the site taking writes at site epoch: every node that
 * answered is primary at it, and each shard is led by one of them. Otherwise
 * why says what is still missing. */
static bool dr_open(const struct sv_dr_status *s, uint64_t epoch, char *why, size_t cap)
{
    if (strcmp(s->role, "primary") != 0 || s->epoch != epoch || !s->uniform) {
        snprintf(why, cap,
                 "not every node that answered (%zu of %zu) is primary at site epoch %" PRIu64
                 ": the site reports %s at epoch %" PRIu64 "%s",
                 s->n_answered, s->n_nodes, epoch, s->role, s->epoch,
                 s->uniform ? "" : ", the nodes differing");
        return false;
    }
    for (size_t i = 0; i < s->n_shards; i++) {
        if (strcmp(s->shards[i].state, "unknown") == 0) {
            snprintf(why, cap, "shard %" PRIu64 ": no node that answered leads it",
                     s->shards[i].id);
            return false;
        }
        if (strcmp(s->shards[i].state, "cutting") == 0) {
            snprintf(why, cap, "shard %" PRIu64 ": its cut is not applied yet", s->shards[i].id);
            return false;
        }
    }
    return true;
}

bool sv__dr_wait_open(struct sv_client *c, uint64_t epoch, uint64_t deadline_ms, uint64_t *open_ms,
                      size_t *answered, size_t *nodes, char *why, size_t cap)
{
    snprintf(why, cap, "no answer yet");
    for (;;) {
        struct sv_dr_status *s = NULL;
        int err = sv_client_dr_status(c, &s);
        uint64_t now = sv__mono_ms();
        if (err == 0) {
            bool open = dr_open(s, epoch, why, cap);
            *answered = s->n_answered;
            *nodes = s->n_nodes;
            sv_client_dr_status_free(s);
            if (open) {
                *open_ms = now;
                return true;
            }
        } else {
            /* Nodes restarting their groups as they follow: keep looking. */
            snprintf(why, cap, "dr status: %s: %s", sv_client_strerror(err), sv_client_errmsg());
        }
        if (now >= deadline_ms)
            return false;
        sv__pause_ms(deadline_ms - now < DR_POLL_MS ? deadline_ms - now : DR_POLL_MS);
    }
}

static void dr_promote_json(uint64_t epoch, const struct sv__dr_cut *k, int64_t open_after_ms)
{
    printf("{\"epoch\":%" PRIu64 ",\"cut_ms\":%" PRId64 ",\"cut_max_ms\":%" PRId64
           ",\"last_contact_ms\":%" PRId64 ",\"rpo_ms\":%" PRId64 ",\"open_after_ms\":%" PRId64
           "}\n",
           epoch, k->frontier_ms, k->max_ms, k->last_contact_ms, k->rpo_ms, open_after_ms);
}

static int dr_promote(struct sv_client *c, const struct global *g, bool force, double wait_s)
{
    /* The cut, read before the promotion: shipping stops with it. */
    struct sv_dr_status *s = NULL;
    int err = sv_client_dr_status(c, &s);
    if (err != 0)
        return sv__fail("dr promote", NULL, err);
    struct sv__dr_cut k = sv__dr_cut_of(s, sv__wall_ms());
    sv_client_dr_status_free(s);

    uint64_t t0 = sv__mono_ms();
    struct sv_dr_promote p;
    err = sv_client_dr_promote(c, force, &p);
    if (err != 0)
        return sv__fail(force ? "dr promote --force" : "dr promote", NULL, err);
    sv__dr_cut_at(&k, p.cut_ms);
    if (!g->json) {
        char cut[96], max[96], contact[96];
        time_or_unknown(k.frontier_ms, cut, sizeof(cut));
        time_or_unknown(k.max_ms, max, sizeof(max));
        time_or_unknown(k.last_contact_ms, contact, sizeof(contact));
        printf("promoted: site epoch %" PRIu64 " (cluster map epoch %" PRIu64 ")\n", p.site_epoch,
               p.map_epoch);
        if (k.frontier_ms >= 0)
            printf("cut:           %s\n"
                   "               on every shard: each write the primary stamped before it\n"
                   "               is kept, each later one dropped (svctl dr failback on the\n"
                   "               old primary lists them in its divergence ledger)\n",
                   cut);
        else
            printf("cut:           none: the site's frontier was not known (--force); every\n"
                   "               shard keeps all it received\n");
        printf("shards up to:  %s\n", max);
        printf("last contact:  %s\n", contact);
        if (k.rpo_ms >= 0)
            printf("RPO at most %" PRId64 " ms (if the primary took no write after the last "
                   "contact)\n",
                   k.rpo_ms);
        else
            printf("RPO unknown: %s\n", k.frontier_ms < 0 ? "a shard's frontier is not known"
                                                          : "no contact with the primary known");
        printf("waiting for every node to take writes (at most %g s)\n", wait_s);
        fflush(stdout);
    }

    char why[256];
    size_t answered = 0, nodes = 0;
    uint64_t open_at = 0;
    if (sv__dr_wait_open(c, p.site_epoch, t0 + (uint64_t)(wait_s * 1000), &open_at, &answered,
                         &nodes, why, sizeof(why))) {
        int64_t after = (int64_t)(open_at - t0);
        if (g->json)
            dr_promote_json(p.site_epoch, &k, after);
        else
            printf("writes open after %" PRId64 " ms: the %zu of %zu nodes that answered "
                   "are primary at site epoch %" PRIu64 "\n",
                   after, answered, nodes, p.site_epoch);
        return EXIT_OK;
    }
    if (g->json)
        dr_promote_json(p.site_epoch, &k, -1);
    fprintf(stderr,
            "svctl: dr promote: the promotion is recorded (site epoch %" PRIu64
            ") but not every node follows it yet after %g s: %s (svctl dr status shows them)\n",
            p.site_epoch, wait_s, why);
    return EXIT_UNAVAILABLE;
}

static bool parse_wait(const char *what, const char *v, double *wait_s)
{
    char *end = NULL;
    *wait_s = strtod(v, &end);
    if (*end != '\0' || !(*wait_s > 0) || *wait_s > DURATION_MAX_S) {
        sv__usage_error("%s: --wait needs a number of seconds in (0, %d]", what, DURATION_MAX_S);
        return false;
    }
    return true;
}

/* failback (c: the fenced site, peer: the active one) or switchover (c: the
 * primary, peer: its standby). */
static int dr_two_sites(struct sv_client *c, const struct global *g, bool switchover,
                        const char *peer, double wait_s)
{
    const char *what = switchover ? "dr switchover" : "dr failback";
    struct sv_client_options po = {
        .endpoints = peer, .ca_file = g->ca, .token = g->token, .deadline_ms = g->deadline_ms};
    struct sv_client *p = NULL;
    int err = sv_client_open(&po, &p);
    if (err != 0)
        return sv__fail(what, peer, err);
    if (switchover) {
        struct sv_dr_switchover so;
        err = sv_client_dr_switchover(c, p, wait_s, &so);
        if (err == 0 && g->json)
            printf("{\"epoch\":%" PRIu64 ",\"paused_ms\":%" PRIu64 ",\"drain_ms\":%" PRIu64
                   ",\"diverged\":%zu}\n",
                   so.site_epoch, so.paused_ms, so.drain_ms, so.diverged);
        else if (err == 0)
            printf("switched over: the peer site is the primary at site epoch %" PRIu64
                   "; writes paused %" PRIu64 " ms (%" PRIu64 " ms draining the standby); "
                   "this site is its standby (%zu writes diverged)\n",
                   so.site_epoch, so.paused_ms, so.drain_ms, so.diverged);
    } else {
        struct sv_dr_failback fb;
        err = sv_client_dr_failback(c, p, &fb);
        if (err == 0 && g->json)
            printf("{\"epoch\":%" PRIu64 ",\"diverged\":%zu,\"deleted\":%zu,\"bytes\":%" PRIu64
                   "}\n",
                   fb.site_epoch, fb.diverged, fb.deleted, fb.bytes);
        else if (err == 0)
            printf("failed back: %zu writes past the cut (%zu of them deletes, %" PRIu64
                   " bytes) are in the divergence ledger on the active site (svctl dr "
                   "diverged list there); this site is its standby at site epoch %" PRIu64
                   ", re-seeding every shard from it\n",
                   fb.diverged, fb.deleted, fb.bytes, fb.site_epoch);
    }
    sv_client_close(p);
    return err == 0 ? EXIT_OK : sv__fail(what, NULL, err);
}

static void hex32(const uint8_t *d, char out[65])
{
    for (int k = 0; k < 32; k++)
        sprintf(out + 2 * k, "%02x", d[k]);
}

static int dr_verify(struct sv_client *c, const struct global *g, const char *peer, double wait_s)
{
    struct sv_client_options po = {
        .endpoints = peer, .ca_file = g->ca, .token = g->token, .deadline_ms = g->deadline_ms};
    struct sv_client *p = NULL;
    int err = sv_client_open(&po, &p);
    if (err != 0)
        return sv__fail("dr verify", peer, err);
    struct sv_dr_verify *v = NULL;
    err = sv_client_dr_verify(c, p, wait_s, &v);
    sv_client_close(p);
    if (err != 0)
        return sv__fail("dr verify", NULL, err);
    if (g->json)
        printf("{\"match\":%zu,\"mismatch\":%zu,\"behind\":%zu,\"unknown\":%zu,\"shards\":[",
               v->match, v->mismatch, v->behind, v->unknown);
    else
        printf("%-5s %-8s %12s %12s %-16s %-16s\n", "SHARD", "STATE", "INDEX", "PEER-INDEX",
               "DIGEST", "PEER-DIGEST");
    for (size_t i = 0; i < v->n_shards; i++) {
        const struct sv_dr_verify_shard *s = &v->shards[i];
        char da[65], db[65];
        hex32(s->digest_a, da);
        hex32(s->digest_b, db);
        if (g->json)
            printf("%s{\"id\":%" PRIu64 ",\"state\":\"%s\",\"index\":%" PRIu64
                   ",\"peer_index\":%" PRIu64 ",\"digest\":\"%s\",\"peer_digest\":\"%s\"}",
                   i ? "," : "", s->id, s->state, s->index_a, s->index_b, da, db);
        else
            printf("%-5" PRIu64 " %-8s %12" PRIu64 " %12" PRIu64 " %-16.16s %-16.16s\n", s->id,
                   s->state, s->index_a, s->index_b, da, db);
    }
    if (g->json)
        printf("]}\n");
    else
        printf("%zu of %zu shards match; %zu mismatch, %zu behind, %zu unknown\n", v->match,
               v->n_shards, v->mismatch, v->behind, v->unknown);
    int rc = v->mismatch ? EXIT_ERR : v->behind || v->unknown ? EXIT_UNAVAILABLE : EXIT_OK;
    sv_client_dr_verify_free(v);
    return rc;
}

static int dr_diverged_list(struct sv_client *c, const struct global *g)
{
    struct sv_dr_ledger *l = NULL;
    int err = sv_client_dr_ledger(c, &l);
    if (err != 0)
        return sv__fail("dr diverged list", NULL, err);
    if (g->json)
        printf("{\"entries\":[");
    else
        printf("%-6s %-5s %-20s %-24s %7s %10s %-16s %-24s %-7s %s\n", "EPOCH", "SHARD", "BUCKET",
               "KEY", "VERSION", "SIZE", "SHA256", "COMMITTED", "STATE", "LEDGER-KEY");
    for (size_t i = 0; i < l->n; i++) {
        const struct sv_dr_diverged *d = &l->entries[i];
        char sha[65], when[40];
        for (int k = 0; k < 32; k++)
            sprintf(sha + 2 * k, "%02x", d->sha256[k]);
        sv__iso_time(d->commit_ms, when, sizeof(when));
        if (g->json) {
            printf("%s{\"epoch\":%" PRIu64 ",\"shard\":%" PRIu64 ",\"bucket\":", i ? "," : "",
                   d->site_epoch, d->shard);
            sv__json_str(stdout, d->bucket);
            printf(",\"key\":");
            sv__json_str(stdout, d->key);
            printf(",\"version\":%" PRIu64 ",\"size\":%" PRIu64 ",\"sha256\":\"%s\","
                   "\"commit_ms\":%" PRIu64 ",\"index\":%" PRIu64 ",\"deleted\":%s,"
                   "\"ledger_key\":",
                   d->version, d->size, d->deleted ? "" : sha, d->commit_ms, d->index,
                   d->deleted ? "true" : "false");
            sv__json_str(stdout, d->ledger_key);
            printf("}");
        } else {
            static char bucket[SV_TEXT_ESC_MAX], key[SV_TEXT_ESC_MAX], lkey[SV_TEXT_ESC_MAX];
            sv__text_esc(d->bucket, bucket, sizeof bucket);
            sv__text_esc(d->key, key, sizeof key);
            sv__text_esc(d->deleted ? "-" : d->ledger_key, lkey, sizeof lkey);
            printf("%-6" PRIu64 " %-5" PRIu64 " %-20s %-24s %7" PRIu64 " %10" PRIu64
                   " %-16.16s %-24s %-7s %s\n",
                   d->site_epoch, d->shard, bucket, key, d->version, d->size,
                   d->deleted ? "-" : sha, when, d->deleted ? "deleted" : "live", lkey);
        }
    }
    if (g->json)
        printf("]}\n");
    else if (l->n == 0)
        printf("(the ledger is empty: no failback moved a write into it)\n");
    sv_client_dr_ledger_free(l);
    return EXIT_OK;
}

static int write_out(void *arg, const void *buf, size_t len)
{
    return fwrite(buf, 1, len, arg) == len ? 0 : -1;
}

static int dr_diverged_get(struct sv_client *c, const char *key, const char *out)
{
    FILE *f = out ? fopen(out, "wb") : stdout;
    if (f == NULL) {
        fprintf(stderr, "svctl: dr diverged get: %s: %s\n", out, strerror(errno));
        return EXIT_ERR;
    }
    int err =
        sv_client_get_stream(c, SV_DR_LEDGER_BUCKET, key, SV_LINEARIZABLE, NULL, write_out, f);
    if (out != NULL && fclose(f) != 0 && err == 0) {
        fprintf(stderr, "svctl: dr diverged get: %s: %s\n", out, strerror(errno));
        return EXIT_ERR;
    }
    return err == 0 ? EXIT_OK : sv__fail("dr diverged get", key, err);
}

int sv__run_dr(struct sv_client *c, const struct global *g, int argc, char **argv)
{
    if (argc < 2) {
        sv__usage_error("dr: missing status, promote, demote, failback, switchover, diverged "
                        "or drill");
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        if (c == NULL)
            fputs(sv__dr_usage, stdout);
        return -1;
    }
    struct sub_args a;
    if (strcmp(sub, "status") == 0) {
        int rc = parse_sub("dr status", sv__dr_usage, argc, argv, 0, NULL, 0, &a);
        if (rc != 0 || c == NULL)
            return rc;
        struct sv_dr_status *s = NULL;
        int err = sv_client_dr_status(c, &s);
        if (err != 0)
            return sv__fail("dr status", NULL, err);
        if (g->json)
            dr_status_json(s);
        else
            dr_status_text(s);
        sv_client_dr_status_free(s);
        return EXIT_OK;
    }
    if (strcmp(sub, "promote") == 0) {
        struct sub_opt o[] = {
            {"--force", false, false, NULL},
            {"--wait", true, false, NULL},
        };
        int rc = parse_sub("dr promote", sv__dr_usage, argc, argv, 0, o, 2, &a);
        if (rc != 0)
            return rc;
        double wait_s = DR_WAIT_S_DEFAULT;
        if (o[1].set) {
            char *end = NULL;
            wait_s = strtod(o[1].value, &end);
            if (*end != '\0' || !(wait_s > 0) || wait_s > DURATION_MAX_S) {
                sv__usage_error("dr promote: --wait needs a number of seconds in (0, %d]",
                                DURATION_MAX_S);
                return EXIT_USAGE;
            }
        }
        if (c == NULL)
            return 0;
        return dr_promote(c, g, o[0].set, wait_s);
    }
    if (strcmp(sub, "demote") == 0) {
        int rc = parse_sub("dr demote", sv__dr_usage, argc, argv, 0, NULL, 0, &a);
        if (rc != 0 || c == NULL)
            return rc;
        uint64_t epoch = 0;
        int err = sv_client_dr_demote(c, &epoch);
        if (err != 0)
            return sv__fail("dr demote", NULL, err);
        if (g->json)
            printf("{\"epoch\":%" PRIu64 "}\n", epoch);
        else
            printf("site fenced at site epoch %" PRIu64 ": it takes no writes and ships nothing; "
                   "the peer site can be promoted\n",
                   epoch);
        return EXIT_OK;
    }
    if (strcmp(sub, "verify") == 0) {
        struct sub_opt o[] = {
            {"--peer", true, false, NULL},
            {"--wait", true, false, NULL},
        };
        int rc = parse_sub("dr verify", sv__dr_usage, argc, argv, 0, o, 2, &a);
        if (rc != 0)
            return rc;
        double wait_s = 10;
        if (!o[0].set || !o[0].value[0]) {
            sv__usage_error("dr verify: --peer ENDPOINTS (the other site) is required");
            return EXIT_USAGE;
        }
        if (o[1].set && !parse_wait("dr verify", o[1].value, &wait_s))
            return EXIT_USAGE;
        return c == NULL ? 0 : dr_verify(c, g, o[0].value, wait_s);
    }
    if (strcmp(sub, "failback") == 0 || strcmp(sub, "switchover") == 0) {
        bool so = sub[0] == 's';
        struct sub_opt o[] = {
            {"--peer", true, false, NULL},
            {"--wait", true, false, NULL},
        };
        int rc = parse_sub(so ? "dr switchover" : "dr failback", sv__dr_usage, argc, argv, 0, o,
                           so ? 2 : 1, &a);
        if (rc != 0)
            return rc;
        double wait_s = 60;
        if (!o[0].set || !o[0].value[0]) {
            sv__usage_error("dr %s: --peer ENDPOINTS (the %s site) is required", sub,
                            so ? "standby" : "active");
            return EXIT_USAGE;
        }
        if (o[1].set && !parse_wait("dr switchover", o[1].value, &wait_s))
            return EXIT_USAGE;
        return c == NULL ? 0 : dr_two_sites(c, g, so, o[0].value, wait_s);
    }
    if (strcmp(sub, "diverged") == 0) {
        bool get = argc > 2 && strcmp(argv[2], "get") == 0;
        if (argc < 3 || (!get && strcmp(argv[2], "list") != 0 && argv[2][0] != '-')) {
            sv__usage_error("dr diverged: list or get LEDGER-KEY");
            return EXIT_USAGE;
        }
        struct sub_opt o[] = {{"--out", true, false, NULL}};
        int rc = parse_sub(get ? "dr diverged get" : "dr diverged list", sv__dr_usage, argc - 1,
                           argv + 1, get ? 1 : 0, o, get ? 1 : 0, &a);
        if (rc != 0 || c == NULL)
            return rc;
        return get ? dr_diverged_get(c, a.pos[0], o[0].value) : dr_diverged_list(c, g);
    }
    if (strcmp(sub, "drill") == 0) /* main runs it: it opens clients of its own */
        return c == NULL ? sv__dr_drill(NULL, argc, argv) : EXIT_USAGE;
    sv__usage_error("dr: unknown subcommand \"%s\" (status, promote, demote, failback, "
                    "switchover, verify, diverged, drill)",
                    sub);
    return EXIT_USAGE;
}
