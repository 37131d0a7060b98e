/* svd: the ShardVault node daemon (command line; the node itself is node.c). */
#include "errors.h"
#include "log.h"
#include "node.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: svd --config FILE --id N [--join]\n"
          "       svd keygen --master FILE --data-key FILE\n"
          "       svd --help\n"
          "\n"
          "Run node N of the cluster described by FILE (see deploy/cluster, which\n"
          "writes it) in the foreground until SIGTERM or SIGINT; logs go to stderr.\n"
          "The node keeps its data in DIR/data (DIR from its 'node' line), reads its\n"
          "TLS certificate and key from DIR/node.pem and DIR/node.key, and unwraps\n"
          "the cluster data key with the master key file named in FILE. It serves\n"
          "/metrics (Prometheus text format) and /health over plain HTTP on the\n"
          "node's metrics address (its 'node' line's 'metrics HOST:PORT', by default\n"
          "its port + 1000).\n"
          "\n"
          "--join: node N is new to a running cluster (deploy/cluster add writes\n"
          "its line into FILE): it asks the meta group's leader, found through the\n"
          "other nodes of FILE, to add it to the cluster map, then receives its\n"
          "share of replicas from the scheduler. Once it has joined (DATA/map\n"
          "exists), --join changes nothing.\n"
          "\n"
          "keygen creates the master key file (mode 0600; an existing file is never\n"
          "overwritten) and a data key wrapped by it.\n"
          "\n"
          "Exit status: 0 after a clean stop, 1 after a fatal error (the log says\n"
          "which), 2 for a usage error.\n",
          f);
}

static int keygen(int argc, char **argv)
{
    const char *master = NULL, *data = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--master") && i + 1 < argc) {
            master = argv[++i];
        } else if (!strcmp(argv[i], "--data-key") && i + 1 < argc) {
            data = argv[++i];
        } else {
            fprintf(stderr, "svd keygen: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!master || !data) {
        fputs("svd keygen: --master and --data-key are required\n", stderr);
        usage(stderr);
        return 2;
    }
    char err[256] = "";
    int rc = sv_node_keygen(master, data, err, sizeof err);
    if (rc) {
        fprintf(stderr, "svd keygen: %s\n", err[0] ? err : sv_strerror(rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "keygen"))
        return keygen(argc, argv);
    const char *config = NULL;
    uint64_t id = 0;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--join")) {
            flags |= SV_NODE_JOIN;
        } else if (!strcmp(argv[i], "--id") && i + 1 < argc) {
            char *end;
            errno = 0;
            id = strtoull(argv[++i], &end, 10);
            if (errno || *end || id == 0 || argv[i][0] == '-') {
                fprintf(stderr, "svd: --id needs a positive integer, not '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "svd: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config || !id) {
        fputs("svd: --config and --id are required\n", stderr);
        usage(stderr);
        return 2;
    }
    enum sv_log_level min = SV_LOG_INFO;
    const char *level = getenv("SV_LOG_LEVEL");
    if (level && level[0] && sv_log_level_parse(level, &min)) {
        fprintf(stderr, "svd: SV_LOG_LEVEL must be debug, info, warn or error, not '%s'\n", level);
        return 2;
    }
    sv_log_setup(id, min);
    signal(SIGPIPE, SIG_IGN);
    struct sv_node *n;
    char err[512] = "";
    int rc = sv_node_open(config, id, flags, &n, err, sizeof err);
    if (rc) {
        LOG_ERROR("svd: cannot start: %s", err[0] ? err : sv_strerror(rc));
        return 1;
    }
    return sv_node_run(n);
}
