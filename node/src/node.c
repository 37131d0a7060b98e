/* svd's node: wiring only. Opens the stores and the groups placed here,
 * connects the files of node_int.h through the event table, runs the loop
 * and closes everything (see node.h for the threads and a turn of the loop). */
#define _GNU_SOURCE
#include "node.h"

#include "node_int.h"
#include "sv_assert.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- time and randomness ------------------------------------------------ */

static uint64_t system_wall_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t system_seed(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)time(NULL) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
}

const struct sv__clock sv__clock_system = {.wall_ms = system_wall_ms, .seed = system_seed};

/* ---- the loop ----------------------------------------------------------- */

void sv__node_fatal(struct sv_node *n, const char *what)
{
    LOG_ERROR("fatal: %s; stopping this node (the cluster keeps serving from the other "
              "replicas; restart the node once the cause is fixed)",
              what);
    n->exit_code = 1;
    n->stopping = true;
    if (!n->jobs)
        uv_stop(&n->loop); /* else once the jobs in flight are done (pipeline.c) */
}

/* A group left its job (or applied more): serve its reads, maybe snapshot. */
static void on_idle(struct sv_node *n, struct group *g)
{
    sv__objects_serve_ready(n, g);
    sv__upkeep_snapshot(n, g);
}

static void on_prepare(uv_prepare_t *h)
{
    sv__pipeline_cycle(h->data);
}

static void on_check(uv_check_t *h)
{
    sv__pipeline_cycle(h->data);
}

static void on_tick(uv_timer_t *t)
{
    struct sv_node *n = t->data;
    uint64_t now = uv_now(&n->loop);
    sv__host_tick(n);
    sv__dispatch_tick(n, now);
    sv__repair_tick(n, now);
    sv__meta_tick(n, now);
    sv__join_tick(n, now);
    sv__health_tick(n, now);
    sv__sched_tick(n, now);
    sv__move_tick(n, now);
    sv__copy_tick(n, now);
    sv__dr_tick(n, now);
    if (n->apply_retry_ms && now >= n->apply_retry_ms)
        sv__pipeline_advance(n);
    sv__upkeep_tick(n, now);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct sv_node *n = s->data;
    LOG_INFO("signal %d: stopping", signum);
    n->stopping = true;
    if (n->apply_retry_ms) {
        /* Applying waits for room that may never come: the entries stay in
         * the Raft log, and are applied after the next start. */
        n->failed = true;
        sv__pipeline_advance(n);
    }
    if (!n->jobs)
        uv_stop(&n->loop);
}

static void on_close(void *arg, struct sv_conn *c, int err, const char *reason)
{
    (void)arg, (void)c, (void)err, (void)reason;
}

/* The transport's peers: a node certificate of this site (in the map or
 * joining it) or of the peer site. Their connections never count as
 * clients' (transport.h: the limits). */
static bool is_peer(void *arg, const struct sv_conn *c)
{
    const struct sv_node *n = arg;
    const char *name = sv_conn_peer_name(c);
    return name && (sv_cfg_cert_node(n->cfg.site, name) ||
                    (n->cfg.peer_site[0] && sv_cfg_cert_node(n->cfg.peer_site, name)));
}

/* File descriptors the node needs besides its connections: LevelDB keeps up
 * to 1,000 table files open in each of its three databases; segments,
 * payload files, the metrics listener. */
enum { FDS_BESIDE_CONNS = 3584 };

/* Raise the open files limit to its hard limit, and fit the connection
 * limit under it: a node out of descriptors can neither accept nor dial,
 * and its peers' links are the first to go. */
static size_t fit_conns(size_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return want;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want + FDS_BESIDE_CONNS)
        return want;
    size_t fit = rl.rlim_cur > FDS_BESIDE_CONNS + 512 ? rl.rlim_cur - FDS_BESIDE_CONNS : 512;
    LOG_WARN("open files limit %llu: connections limited to %zu (max_connections %zu needs %zu "
             "open files; raise the limit: ulimit -n)",
             (unsigned long long)rl.rlim_cur, fit, want, want + FDS_BESIDE_CONNS);
    return fit;
}

/* ---- open / run --------------------------------------------------------- */

static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t r = read(fd, buf, cap);
    int err = r < 0 ? -errno : 0;
    close(fd);
    if (r >= 0)
        *len = (size_t)r;
    return err;
}

int sv_node_keygen(const char *master_path, const char *data_key_path, char *errmsg, size_t errlen)
{
    int rc = sv_crypto_master_create(master_path, 1, errmsg, errlen);
    if (rc)
        return rc;
    struct sv_crypto_key *kek = NULL, *dek = NULL;
    uint8_t wrapped[SV_CRYPTO_WRAPPED_LEN];
    rc = sv_crypto_master_load(master_path, &kek, errmsg, errlen);
    if (!rc)
        rc = sv_crypto_key_generate(1, &dek);
    if (!rc)
        rc = sv_crypto_dek_wrap(kek, 0, dek, wrapped, errmsg, errlen);
    if (!rc) {
        int fd = open(data_key_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = -errno;
            snprintf(errmsg, errlen, "%s: %s", data_key_path, strerror(errno));
        } else {
            if (write(fd, wrapped, sizeof wrapped) != (ssize_t)sizeof wrapped || fsync(fd)) {
                rc = -EIO;
                snprintf(errmsg, errlen, "%s: write failed", data_key_path);
            }
            close(fd);
        }
    }
    sv_crypto_key_free(dek);
    sv_crypto_key_free(kek);
    return rc;
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0700) && errno != EEXIST)
        return -errno;
    return 0;
}

int sv_node_open(const char *config_path, uint64_t id, unsigned flags, struct sv_node **out,
                 char *errmsg, size_t errlen)
{
    *out = NULL;
    struct sv_node *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->clock = sv__clock_system;
    n->copy_rate = COPY_RATE_BYTES;
    sv__dispatch_events(&n->ev);
    n->ev.idle = on_idle;
    int rc = sv_cfg_load(config_path, &n->cfg, errmsg, errlen);
    if (rc)
        goto err;
    n->me = sv_cfg_node(&n->cfg, id);
    if (n->me && !(n->map = malloc(sizeof *n->map))) {
        rc = -ENOMEM;
        goto err;
    }
    if (n->me)
        sv_map_from_cfg(&n->cfg, n->map);
    if (!n->me) {
        snprintf(errmsg, errlen, "node %" PRIu64 " is not in %s", id, config_path);
        rc = -EINVAL;
        goto err;
    }
    char path[SV_CFG_PATH_MAX + 32], cert[SV_CFG_PATH_MAX + 16], key[SV_CFG_PATH_MAX + 16];
    snprintf(n->data_dir, sizeof n->data_dir, "%s/data", n->me->dir);
    snprintf(cert, sizeof cert, "%s/node.pem", n->me->dir);
    snprintf(key, sizeof key, "%s/node.key", n->me->dir);
    if ((rc = mkdir_p(n->me->dir)) || (rc = mkdir_p(n->data_dir))) {
        snprintf(errmsg, errlen, "%s: %s", n->data_dir, sv_strerror(rc));
        goto err;
    }
    /* The map this node adopted last, if any: it places groups, not
     * cluster.conf (which only bootstraps it). */
    if ((rc = sv__meta_load(n, errmsg, errlen)))
        goto err;
    /* A new node holds nothing until the cluster's map names it: cluster.conf's
     * placement (with it in) is not the cluster's. */
    n->joining = (flags & SV_NODE_JOIN) && n->map->epoch == 1;
    /* Keys: the data key is unwrapped with the master key, kept in memory only. */
    rc = sv_crypto_master_load(n->cfg.master_key, &n->kek, errmsg, errlen);
    if (rc)
        goto err;
    uint8_t wrapped[SV_CRYPTO_WRAPPED_LEN + 1];
    size_t wlen = 0;
    rc = read_file(n->cfg.data_key, wrapped, sizeof wrapped, &wlen);
    if (!rc)
        rc = sv_crypto_dek_unwrap(n->kek, 0, wrapped, wlen, &n->dek, errmsg, errlen);
    else
        snprintf(errmsg, errlen, "%s: %s", n->cfg.data_key, sv_strerror(rc));
    if (rc)
        goto err;
#ifdef __GLIBC__
    /* Chunks pass through malloc'd buffers of 1-2 MiB (frames, sealing, Raft
     * entries). With glibc's defaults such buffers go back to the kernel on
     * free (munmap, heap trimming) and are page-faulted in and zeroed again on
     * the next use: about a quarter of the nodes' CPU on 64 MiB puts
     * (measured). Keep them in the heap. Process-wide; svd runs one node. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    /* Stores. */
    snprintf(path, sizeof path, "%s/raftlog", n->data_dir);
    rc = sv_logstore_leveldb_ops.open(path, &n->log, errmsg, errlen);
    if (rc)
        goto err;
    snprintf(path, sizeof path, "%s/chunks", n->data_dir);
    rc = sv_seg_open(path, NULL, &n->seg, errmsg, errlen);
    if (rc)
        goto err;
    pthread_mutex_init(&n->seg_mu, NULL);
    snprintf(path, sizeof path, "%s/meta", n->data_dir);
    rc = sv_sm_open(path, &n->sm, errmsg, errlen);
    if (rc)
        goto err;
    /* Chunks a crash left released but not deleted (sm.h, the invariant):
     * before any group opens, reads or applies. */
    if ((rc = sv_sm_redo_releases(n->sm, n->seg, errmsg, errlen)))
        goto err;
    if ((rc = sv__stats_open(n, errmsg, errlen)) || (rc = sv__health_open(n)) ||
        (rc = sv__sched_open(n)) || (rc = sv__dr_open(n)))
        goto err;
    /* Groups placed here. */
    n->n_group_ids = n->map->n_shards + 1;
    n->groups = calloc(n->n_group_ids, sizeof *n->groups);
    if (!n->groups) {
        rc = -ENOMEM;
        goto err;
    }
    for (uint32_t gid = 0; gid < n->n_group_ids && !n->joining; gid++) {
        bool placed = sv_map_holds(n->map, gid, id);
        if (placed && sv__host_serves(n)) {
            if ((rc = sv__group_open(n, gid, errmsg, errlen)))
                goto err;
        } else if (!placed && n->map->epoch > 1) {
            /* It may have left this node with its data not yet deleted
             * (a stop or crash in between): delete it again, which costs
             * nothing when there is nothing (sv_sm_drop). */
            uint64_t *d = realloc(n->drops, (n->n_drops + 1) * sizeof *d);
            if (!d) {
                rc = -ENOMEM;
                goto err;
            }
            n->drops = d;
            n->drops[n->n_drops++] = gid;
        }
    }
    /* Loop and transport. */
    rc = uv_loop_init(&n->loop);
    if (rc) {
        snprintf(errmsg, errlen, "uv_loop_init: %s", uv_strerror(rc));
        goto err;
    }
    struct sv_tp_config tc = {.loop = &n->loop,
                              .listen_addr = n->me->addr,
                              .ca_file = n->cfg.ca,
                              .cert_file = cert,
                              .key_file = key,
                              .arg = n,
                              .on_frame = sv__dispatch_frame,
                              .on_close = on_close,
                              .conns_max = fit_conns(n->cfg.max_conns),
                              .per_source_max = n->cfg.max_conns_per_source,
                              .idle_timeout_ms = n->cfg.idle_timeout_s * 1000u,
                              .is_peer = is_peer};
    rc = sv_tp_start(&tc, &n->tp, errmsg, errlen);
    if (rc)
        goto err_loop;
    if ((rc = sv__stats_start(n, errmsg, errlen)))
        goto err_after_tp;
    uv_timer_init(&n->loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    uv_prepare_init(&n->loop, &n->prepare);
    n->prepare.data = n;
    uv_prepare_start(&n->prepare, on_prepare);
    uv_async_init(&n->loop, &n->persisted, sv__pipeline_on_persisted);
    n->persisted.data = n;
    uv_check_init(&n->loop, &n->check);
    n->check.data = n;
    uv_check_start(&n->check, on_check);
    uv_signal_init(&n->loop, &n->sigterm);
    n->sigterm.data = n;
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_init(&n->loop, &n->sigint);
    n->sigint.data = n;
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uint32_t hosted = 0;
    for (uint32_t gid = 0; gid < n->n_group_ids; gid++)
        hosted += n->groups[gid] != NULL;
    LOG_INFO("listening on %s (zone %s), %u groups hosted of %u shards + meta", n->me->addr,
             n->me->zone, hosted, n->map->n_shards);
    *out = n;
    return 0;
err_after_tp:
    sv_tp_stop(n->tp);
    uv_run(&n->loop, UV_RUN_DEFAULT);
err_loop:
    uv_loop_close(&n->loop);
err:
    if (n->groups) {
        for (uint32_t gid = 0; gid < n->n_group_ids; gid++)
            if (n->groups[gid])
                sv__group_free(n, n->groups[gid]);
        free(n->groups);
    }
    sv__sched_close(n);
    sv__health_close(n);
    sv__stats_free(n);
    sv_sm_close(n->sm);
    sv_seg_close(n->seg);
    if (n->log)
        n->log->ops->close(n->log);
    sv_crypto_key_free(n->dek);
    sv_crypto_key_free(n->kek);
    free(n->drops);
    free(n->map);
    free(n);
    return rc ? rc : -EINVAL;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int sv_node_run(struct sv_node *n)
{
    uv_run(&n->loop, UV_RUN_DEFAULT);
    /* Stopping: let the running persist job and pool jobs finish. */
    n->stopping = true;
    while (n->jobs || n->jobs_in_pool > 0)
        uv_run(&n->loop, UV_RUN_ONCE);
    sv__repair_close(n); /* their requests are answered while the transport runs */
    sv__sched_close(n);
    sv__move_close(n);
    sv__stats_stop(n);
    sv_tp_stop(n->tp);
    n->tp = NULL; /* freed by the loop run below; waiters freed later look nothing up */
    uv_walk(&n->loop, close_walk, NULL);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&n->loop);
    if (rc)
        LOG_WARN("loop close: %s", uv_strerror(rc));
    int code = n->exit_code;
    for (uint32_t gid = 0; gid < n->n_group_ids; gid++) {
        struct group *g = n->groups[gid];
        if (!g)
            continue;
        sv__dispatch_forget(n, g);
        sv__group_free(n, g);
    }
    free(n->groups);
    sv__health_close(n);
    sv__stats_free(n);
    free(n->peers);
    free(n->drops);
    free(n->map);
    sv_sm_close(n->sm);
    rc = sv_seg_close(n->seg);
    if (rc) {
        LOG_ERROR("closing the segment store: %s", sv_strerror(rc));
        code = 1;
    }
    pthread_mutex_destroy(&n->seg_mu);
    n->log->ops->close(n->log);
    sv_crypto_key_free(n->dek);
    sv_crypto_key_free(n->kek);
    LOG_INFO("stopped");
    free(n);
    return code;
}
