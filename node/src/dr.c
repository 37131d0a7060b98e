/* Disaster recovery: a standby site pulls every shard's committed entries
 * from the primary site and commits them through its own Raft groups.
 *
 * The standby's leader of shard s asks the primary site for the entries
 * after its cursor (DR_PULL, over mutual TLS with a node certificate of the
 * peer site). The primary's leader of s confirms its leadership (a read
 * index, taken at wall time T), and answers the committed entries after the
 * cursor from its in-memory log, at most one message's worth; when they
 * reach the read index, every entry the primary committed before T is in
 * them, and T is the batch's closed time. The standby proposes the batch as
 * one SHIP command (sm.h): its apply runs each command as the primary ran
 * it, at the primary's index, and moves the cursor in the same write, so a
 * batch applied twice (a new leader proposing it again) changes nothing and
 * a batch that would leave a gap is refused. The cursor, the closed time and
 * the primary's commit index are state-machine records of the group: they
 * survive restarts and travel in snapshots. The next pull starts once the
 * batch is applied.
 *
 * The primary keeps its log for the standby: its leader records the
 * standby's cursor in the group (DR_MARK, at most once a second), and every
 * replica's snapshots keep the entries after it (at most DR_RETAIN_BYTES of
 * them, in memory: a restarted replica keeps only its snapshot's trailing
 * entries), so a new leader can answer too.
 *
 * Re-seeding. A cursor counts in one primary's log: the shipping state
 * records the site epoch it belongs to (the standby's map epoch, which a
 * failback sets to its new primary's). A standby leader whose shard has no
 * cursor of its site epoch (a new standby, a site failed back), or whose
 * cursor the primary's log no longer holds (NOT_FOUND: compacted past it),
 * re-seeds the shard: it asks the primary's leader for an image of the
 * shard's records (DR_SEED; taken at a read index, so its closed time
 * holds like a batch's; the primary keeps it in memory, and its log from
 * the image's index through DR_MARK) and commits it piece by piece (SEED
 * commands, at most one message each). The last piece sets the cursor to
 * the image's index and the copy marker: copy.c fetches the chunks the
 * records claim, from this site's replicas or else from the primary site's
 * nodes (CHUNK_FETCH is open to the peer site's certificates). Shipping
 * then goes on from the image's index.
 *
 * A standby takes no writes (READ_ONLY, naming the active site) and runs no
 * write of its own (upload expiry: the primary's aborts are shipped). */
#define _GNU_SOURCE
#include "node_int.h"

#include "sv_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DR_PULL_IDLE_MS = 100,        /* a standby leader with nothing new asks again after */
    DR_PULL_TIMEOUT_MS = 5000,    /* an unanswered pull is given up */
    DR_RETRY_MS = 500,            /* after a failed pull */
    DR_APPLY_WAIT_MS = 10000,     /* a proposed batch not applied by then is pulled again */
    DR_STALL_MS = 5000,           /* no answer from the primary this long: stalled */
    DR_SHIP_CONTACT_MS = 5000,    /* a primary not pulled from this long: stalled */
    DR_RETAIN_BYTES = 256u << 20, /* log a primary's replicas keep for its standby */
    DR_MARK_MS = 1000,            /* a primary leader records the standby's cursor this often */
    DR_PEER_ALIVE_MS = 3000,      /* a peer heard within this is up: no promotion unless forced */
    DR_IMAGE_IDLE_MS = 60000,     /* a primary drops an image nobody asked for this long */
    DR_ASK_TIMEOUT_MS = 1500,     /* a DR_STATUS to the peer unanswered this long: redial */
    DR_RELEASE_MS = 100,          /* a standby leader proposes a release at most this often */
    DR_CUT_RETRY_MS = 1000,       /* a promoted leader proposes its cut again after */
    DR_HELD_MAX = 64u << 20,      /* held bytes past which a standby shard may stop pulling */
    DR_HELD_AHEAD_MS = 2000,      /* ... when its closed time is this far past the release */
};

static void image_drop(struct sv__ship *s);
static bool propose_cmd(struct sv_node *n, struct group *g, const struct sv_cmd *cmd);

static void set_str(struct sv_bytes *b, const char *s)
{
    *b = (struct sv_bytes){(const uint8_t *)s, strlen(s)};
}

/* ---- the site ------------------------------------------------------------ */

bool sv__dr_standby(const struct sv_node *n)
{
    return n->map->site_role != SV_MAP_PRIMARY;
}

const char *sv__dr_role_name(const struct sv_node *n)
{
    return n->map->site_role == SV_MAP_STANDBY  ? "standby"
           : n->map->site_role == SV_MAP_FENCED ? "fenced"
                                                : "primary";
}

/* The peer site answered as a primary newer than this one: at a higher
 * site epoch, or at the same one (two sites promoted apart with --force)
 * with a name that sorts first. */
/* When this node began to run its loop (the first time asked). */
static uint64_t open_ms(struct sv_node *n)
{
    if (!n->dr_open_ms)
        n->dr_open_ms = uv_now(&n->loop);
    return n->dr_open_ms;
}

bool sv__dr_peer_newer(const struct sv_node *n)
{
    uint64_t mine = n->map->site_epoch, theirs = n->dr_peer_epoch;
    return n->dr_peer_heard_ms && n->dr_peer_role == SV_MAP_PRIMARY &&
           (theirs > mine || (theirs == mine && strcmp(n->cfg.peer_site, n->cfg.site) < 0));
}

int sv__dr_refuse_write(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id)
{
    char text[200];
    if (!sv__dr_standby(n) && n->dr_n_peers) {
        /* A primary that is back after an outage takes no write before it
         * knows the peer site has not been promoted meanwhile (its meta
         * leader then fences the site; this node refuses already). */
        if (sv__dr_peer_newer(n)) {
            snprintf(text, sizeof text,
                     "site %s is fenced: site %s is the primary (site epoch %" PRIu64 ")",
                     n->cfg.site, n->cfg.peer_site, n->dr_peer_epoch);
            sv__reply_status(n, conn, type, req_id, SV_ST_READ_ONLY, text);
            return 1;
        }
        if (!n->dr_peer_heard_ms && uv_now(&n->loop) < open_ms(n) + DR_PEER_ALIVE_MS) {
            sv__reply_status(n, conn, type, req_id, SV_ST_UNAVAILABLE,
                             "this node has not yet heard the peer site's epoch; retry");
            return 1;
        }
    }
    if (!sv__dr_standby(n))
        return 0;
    snprintf(text, sizeof text,
             "site %s is %s (read-only, site epoch %" PRIu64 "): writes go to the active site%s%s",
             n->cfg.site, n->map->site_role == SV_MAP_FENCED ? "fenced" : "a standby",
             n->map->site_epoch, n->cfg.peer_site[0] ? " " : "", n->cfg.peer_site);
    sv__reply_status(n, conn, type, req_id, SV_ST_READ_ONLY, text);
    return 1;
}

bool sv__dr_primary_answers(const struct sv_node *n)
{
    /* a meta leader that has not asked the peer since it took over does not
     * know: for the first DR_PEER_ALIVE_MS it counts as answering */
    uint64_t now = uv_now((uv_loop_t *)&n->loop);
    if (n->dr_n_peers && n->dr_peer_heard_ms < n->health->since_ms &&
        now < n->health->since_ms + DR_PEER_ALIVE_MS)
        return true;
    return n->dr_peer_heard_ms &&
           uv_now((uv_loop_t *)&n->loop) < n->dr_peer_heard_ms + DR_PEER_ALIVE_MS &&
           n->dr_peer_role == SV_MAP_PRIMARY;
}

/* The peer site's node id a connection's certificate names, or 0. */
uint64_t sv__dr_peer_id(const struct sv_node *n, struct sv_conn *c)
{
    if (!n->cfg.peer_site[0])
        return 0;
    return sv_cfg_cert_node(n->cfg.peer_site, sv_conn_peer_name(c));
}

/* ---- the standby: pulling ------------------------------------------------ */

static const char *peer_addr(const struct sv_node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->dr_n_peers; i++)
        if (n->dr_peers[i].link.id == id)
            return n->dr_peers[i].addr;
    return NULL;
}

/* Remember the address of the peer site's node id (a NOT_LEADER names it). */
static void peer_learn(struct sv_node *n, uint64_t id, const uint8_t *addr, size_t len)
{
    if (!id || !len || len >= SV_CFG_ADDR_MAX)
        return;
    struct sv__dr_peer *p = NULL;
    for (uint32_t i = 0; i < n->dr_n_peers && !p; i++)
        if (n->dr_peers[i].link.id == id)
            p = &n->dr_peers[i];
    if (!p && n->dr_n_peers < SV_CFG_NODES_MAX) {
        p = &n->dr_peers[n->dr_n_peers++];
        p->link.id = id;
    }
    if (!p || (strlen(p->addr) == len && !memcmp(p->addr, addr, len)))
        return;
    memcpy(p->addr, addr, len);
    p->addr[len] = 0;
    p->link.conn = 0;
}

struct sv_conn *sv__dr_peer_conn_at(struct sv_node *n, uint32_t i)
{
    if (i >= n->dr_n_peers)
        return NULL;
    return sv__peer_dial(n, &n->dr_peers[i].link, n->cfg.peer_site, n->dr_peers[i].addr);
}

/* Close the connection to the peer site's i-th node, if any: one a cut
 * black-holed keeps requests queued until TCP gives up, long after the
 * link is back; the next request dials afresh. */
static void peer_hang_up(struct sv_node *n, uint32_t i, const char *why)
{
    struct sv_conn *c = i < n->dr_n_peers && n->dr_peers[i].link.conn
                            ? sv_tp_conn(n->tp, n->dr_peers[i].link.conn)
                            : NULL;
    if (c)
        sv_conn_close(c, why);
    if (i < n->dr_n_peers)
        n->dr_peers[i].link.conn = 0;
}

/* A connection to the peer site's node id, dialled when there is none. */
static struct sv_conn *peer_conn(struct sv_node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->dr_n_peers; i++)
        if (n->dr_peers[i].link.id == id)
            return sv__dr_peer_conn_at(n, i);
    return NULL;
}

static void stall(struct group *g, const char *reason, const char *text)
{
    if (strcmp(g->ship.reason, reason))
        LOG_WARN("dr: shard %" PRIu64 ": %s: %s", g->id - 1, reason, text);
    snprintf(g->ship.reason, sizeof g->ship.reason, "%s", reason);
    snprintf(g->ship.text, sizeof g->ship.text, "%s", text);
}

/* The cursor as this node's state machine last applied it. */
static uint64_t max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* The shipping state as this node's state machine committed it, merged
 * with what applied entries reported since (never older). */
static void ship_load(struct sv_node *n, struct group *g)
{
    struct sv_sm_ship st;
    struct sv_sm_ship *m = &g->ship.st;
    if (g->ship.loaded || sv_sm_ship_state(n->sm, g->id, &st))
        return;
    g->ship.loaded = true;
    if (st.epoch != m->epoch || st.seed) {
        /* another primary's log, or a seed open: what the state machine
         * holds, whatever was seen (a cursor may go down across logs) */
        uint64_t mark = max64(m->mark, st.mark);
        *m = st;
        m->mark = mark;
        return;
    }
    m->cursor = max64(m->cursor, st.cursor);
    m->closed_ms = max64(m->closed_ms, st.closed_ms);
    m->commit = max64(m->commit, st.commit);
    m->mark = max64(m->mark, st.mark);
    /* what a release or a cut changed: only the state machine knows */
    m->applied = st.applied;
    m->release_ms = st.release_ms;
    m->held = st.held;
    m->held_bytes = st.held_bytes;
    m->cut_epoch = st.cut_epoch;
}

/* The shard must be re-seeded before it ships: no cursor in the log of
 * the primary this site follows, a seed open, or the primary's log no
 * longer holds the cursor. */
static bool seed_needed(const struct sv_node *n, const struct sv__ship *s)
{
    return s->seeding || s->st.seed || s->st.epoch != n->map->site_epoch;
}

static void seed_restart(struct sv__ship *s)
{
    s->seed_index = s->seed_off = 0;
    s->seed_piece = 0;
    s->seed_flight = false;
}

/* Where the next pull starts: after the last batch proposed, or the cursor. */
static uint64_t pull_from(const struct sv__ship *s)
{
    return s->n_flight ? s->flight[s->n_flight - 1] : s->st.cursor;
}

/* Send request m of type to the primary site's node that should lead the
 * shard (the next one when none is known): the pull (or seed request) in
 * flight. */
static void ask_primary(struct sv_node *n, struct group *g, uint64_t now, uint32_t type,
                        struct sv_msg *m)
{
    struct sv__ship *s = &g->ship;
    if (!s->target || !peer_addr(n, s->target))
        s->target = n->dr_peers[s->rr++ % n->dr_n_peers].link.id;
    uint8_t *body;
    size_t len;
    if (sv_msg_encode(m, &body, &len))
        return;
    struct sv_conn *c = peer_conn(n, s->target);
    uint64_t id = ++n->next_fetch;
    if (c && !sv_conn_send(c, type, id, body, len)) {
        s->pull_id = id;
        s->pull_ms = now;
    } else {
        char text[160];
        snprintf(text, sizeof text, "node %" PRIu64 " of site %s is unreachable", s->target,
                 n->cfg.peer_site);
        if (now >= s->contact_ms + DR_STALL_MS)
            stall(g, "primary-unreachable", text);
        s->target = 0; /* the next node of the peer site next time */
        s->next_ms = now + DR_RETRY_MS;
    }
    free(body);
}

static void pull_send(struct sv_node *n, struct group *g, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    struct sv_msg m = {0};
    m.shard = g->id - 1;
    m.version = pull_from(s);
    m.upload = s->st.cursor; /* applied here: what the primary keeps its log for */
    m.fields = 1u << SV_F_SHARD | 1u << SV_F_VERSION | 1u << SV_F_UPLOAD;
    s->asked = m.version;
    ask_primary(n, g, now, SV_MSG_DR_PULL, &m);
}

/* A standby leader re-seeding: ask for the next piece of the image (a new
 * image first), one at a time, each committed before the next is asked. */
static void seed_tick(struct sv_node *n, struct group *g, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    if (s->seed_flight) {
        if (now < s->seed_ms + DR_APPLY_WAIT_MS)
            return;
        seed_restart(s); /* lost with a leader, or refused */
    }
    if (now < s->next_ms)
        return;
    struct sv_msg m = {0};
    m.shard = g->id - 1;
    m.version = s->seed_index;
    m.upload = s->seed_off;
    m.fields = 1u << SV_F_SHARD | 1u << SV_F_VERSION | 1u << SV_F_UPLOAD;
    ask_primary(n, g, now, SV_MSG_DR_SEED, &m);
}

/* A shard holding DR_HELD_MAX bytes for a release far behind its closed
 * time waits for the other shards (the release is their lowest closed
 * time) before it pulls more; one near it pulls on: it may be the shard
 * the release waits for. */
static bool holds_too_much(const struct sv__ship *s)
{
    return s->st.held_bytes >= DR_HELD_MAX && s->st.closed_ms > s->st.release_ms + DR_HELD_AHEAD_MS;
}

/* Pull now if nothing stops it: no pull in flight, room for one more
 * batch in flight, not waiting for a retry; with none in flight, nothing
 * committed here unapplied (it may hold what the pull would fetch again). */
static void pull_maybe(struct sv_node *n, struct group *g, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    if (!n->dr_n_peers || s->pull_id || s->n_flight == SV_DR_FLIGHT || now < s->next_ms ||
        n->map->site_role != SV_MAP_STANDBY || (!s->n_flight && g->applied < g->commit) ||
        seed_needed(n, s) || holds_too_much(s))
        return;
    pull_send(n, g, now);
}

/* ---- the consistent cut ----------------------------------------------------
 *
 * Every write command carries its stamp: the primary leader's hybrid
 * logical clock when it proposed it (mtime_ms; objects.c), never below a
 * stamp that leader applied. A batch's closed time T says that every entry
 * the primary committed before T is in it; each standby node's heartbeat
 * tells the meta leader the closed time of each shard it leads, and the
 * lowest over all shards is the site's frontier F (health.c): every entry
 * committed anywhere before F is committed here. A write acknowledged
 * before another began has the lower stamp, so "every entry stamped below
 * F" is a consistent cut: a write in it has every write it could have seen
 * in it too. The heartbeat's answer brings F back as the release; a shard
 * runs a shipped entry once its stamp is below the release and nothing
 * before it is held, and holds it ('h' records, sm.h) until then. So a
 * standby's shards show the site as of one instant, the release, and
 * promote cuts every shard at the frontier: the held entries below it run,
 * the rest are dropped (a failback of the old primary lists them in its
 * divergence ledger), and the shard takes writes only then. The limit:
 * stamps are the primary nodes' clocks, so the cut is consistent as far as
 * those clocks agree (a write made within the clock skew after another was
 * acknowledged, on another node, may fall on the other side of the cut). */

/* Propose an empty SHIP carrying the release when it passes held entries. */
static void release_maybe(struct sv_node *n, struct group *g, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    if (s->release_flight && now < s->release_sent_ms + DR_APPLY_WAIT_MS)
        return;
    s->release_flight = false;
    if (!s->st.held || n->dr_release_epoch != n->map->site_epoch ||
        n->dr_release_ms <= s->st.release_ms || now < s->release_sent_ms + DR_RELEASE_MS)
        return;
    struct sv_cmd cmd = {.type = SV_CMD_SHIP,
                         .session = n->map->site_epoch,
                         .upload = s->st.cursor,
                         .seq = n->dr_release_ms};
    if (propose_cmd(n, g, &cmd)) {
        s->release_flight = true;
        s->release_sent_ms = now;
    }
}

uint64_t sv__dr_closed(struct sv_node *n, struct group *g)
{
    struct sv__ship *s = &g->ship;
    if (n->map->site_role != SV_MAP_STANDBY || !g->id)
        return 0;
    ship_load(n, g);
    /* A shard copying its chunks still counts: its records are whole, and
     * the entries the release lets run are what may stop claiming the
     * chunks it cannot find (the primary deleted them, overwritten). */
    if (seed_needed(n, s))
        return 0;
    return max64(s->st.closed_ms, s->idle_closed_ms);
}

/* A promoted site's shard that shipped from a primary before: not cut at
 * this site epoch yet. */
static bool cut_pending(struct sv_node *n, struct group *g)
{
    if (n->map->site_role != SV_MAP_PRIMARY || !g->id)
        return false;
    ship_load(n, g);
    const struct sv_sm_ship *st = &g->ship.st;
    return (st->epoch || st->cursor) && st->cut_epoch < n->map->site_epoch;
}

bool sv__dr_cutting(struct sv_node *n, struct group *g)
{
    return cut_pending(n, g);
}

/* A promoted site's leader: propose the cut (again, until applied). */
static void cut_tick(struct sv_node *n, struct group *g, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    if (!cut_pending(n, g) || (s->release_sent_ms && now < s->release_sent_ms + DR_CUT_RETRY_MS))
        return;
    uint64_t cut = n->map->site_cut_ms ? n->map->site_cut_ms : UINT64_MAX;
    struct sv_cmd cmd = {.type = SV_CMD_SHIP,
                         .session = n->map->site_epoch,
                         .upload = s->st.cursor,
                         .chunk = 1,
                         .seq = cut};
    if (propose_cmd(n, g, &cmd)) {
        s->release_sent_ms = now;
        LOG_INFO("dr: shard %" PRIu64 ": cutting at the promotion's frontier (%" PRIu64
                 " entries held past index %" PRIu64 ")",
                 g->id - 1, s->st.held, s->st.applied);
    }
}

static void pull_tick(struct sv_node *n, struct group *g, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    if (g->role != SV_RAFT_LEADER || g->closing || g->id == 0) {
        s->pull_id = 0;
        s->n_flight = 0;
        /* read again when it leads: a snapshot installed meanwhile moves the
         * state machine's cursor past the one seen in applied entries */
        s->loaded = false;
        s->seeding = false;
        seed_restart(s);
        return;
    }
    ship_load(n, g);
    if (s->pull_id) {
        if (now < s->pull_ms + DR_PULL_TIMEOUT_MS)
            return;
        s->pull_id = 0;
        for (uint32_t i = 0; i < n->dr_n_peers; i++)
            if (n->dr_peers[i].link.id == s->target)
                peer_hang_up(n, i, "a pull of the peer site went unanswered for 5 s");
        s->target = 0;
        if (now >= s->contact_ms + DR_STALL_MS)
            stall(g, "primary-unreachable", "the primary site does not answer");
    }
    if (seed_needed(n, s)) {
        s->n_flight = 0;
        seed_tick(n, g, now);
        return;
    }
    /* A batch proposed and never applied (lost with a leader, refused):
     * pull again from the cursor. */
    if (s->n_flight && now >= s->flight_ms + DR_APPLY_WAIT_MS)
        s->n_flight = 0;
    release_maybe(n, g, now);
    pull_maybe(n, g, now);
}

/* The meta leader, and every node of a primary, asks a node of the peer
 * site for its role and epoch every second; every node asks every 300 ms
 * after its start until it hears an answer (its primary writes wait for it,
 * DR_PEER_ALIVE_MS at most). An ask unanswered for DR_ASK_TIMEOUT_MS hangs
 * up that connection (a cut may have black-holed it). */
static void peer_ask(struct sv_node *n, uint64_t now)
{
    struct group *meta = sv__group(n, 0);
    /* every node of a primary too: each refuses writes the moment it hears
     * of a newer primary, before the fence reaches it through the map */
    bool asks = (meta && meta->role == SV_RAFT_LEADER) || n->map->site_role == SV_MAP_PRIMARY;
    bool starting = !n->dr_peer_heard_ms && now < open_ms(n) + DR_PEER_ALIVE_MS;
    if (!(asks && now >= n->dr_peer_ms + 1000) && !(starting && now >= n->dr_peer_ms + 300))
        return;
    n->dr_peer_ms = now;
    if (n->dr_ask_ms && now >= n->dr_ask_ms + DR_ASK_TIMEOUT_MS)
        peer_hang_up(n, n->dr_ask_i, "the peer site did not answer DR_STATUS within 1.5 s");
    uint32_t i = n->dr_rr++ % n->dr_n_peers;
    struct sv_conn *c = sv__dr_peer_conn_at(n, i);
    struct sv_msg m = {0};
    uint8_t *body;
    size_t len;
    if (c && !sv_msg_encode(&m, &body, &len)) {
        if (!sv_conn_send(c, SV_MSG_DR_STATUS, ++n->next_fetch, body, len) && !n->dr_ask_ms) {
            n->dr_ask_ms = now;
            n->dr_ask_i = i;
        }
        free(body);
    }
}

void sv__dr_on_peer_status(struct sv_node *n, const struct sv_wire_frame *f)
{
    struct sv_msg r;
    char em[128];
    if (sv_msg_decode(f->body, f->body_len, &r, em, sizeof em))
        return;
    if (r.status == SV_ST_OK && SV_MSG_HAS(&r, SV_F_KEY) && SV_MSG_HAS(&r, SV_F_VERSION)) {
        bool primary = r.key.len == 7 && !memcmp(r.key.p, "primary", 7);
        bool fenced = r.key.len == 6 && !memcmp(r.key.p, "fenced", 6);
        n->dr_peer_role = primary ? SV_MAP_PRIMARY : fenced ? SV_MAP_FENCED : SV_MAP_STANDBY;
        n->dr_peer_epoch = r.version;
        n->dr_peer_heard_ms = uv_now(&n->loop);
        n->dr_ask_ms = 0;
        struct group *meta = sv__group(n, 0);
        if (n->map->site_role == SV_MAP_PRIMARY && sv__dr_peer_newer(n) && meta &&
            meta->role == SV_RAFT_LEADER) {
            LOG_WARN("site %s was promoted (site epoch %" PRIu64 ", this site's %" PRIu64
                     "): fencing this site",
                     n->cfg.peer_site, r.version, n->map->site_epoch);
            sv__sched_fence(n);
        }
    }
    sv_msg_free(&r);
}

void sv__dr_tick(struct sv_node *n, uint64_t now_ms)
{
    if (!n->dr_n_peers)
        return;
    peer_ask(n, now_ms);
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (g && g->ship.img &&
            (g->role != SV_RAFT_LEADER || now_ms >= g->ship.img_ms + DR_IMAGE_IDLE_MS))
            image_drop(&g->ship);
    }
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (g && n->map->site_role == SV_MAP_STANDBY)
            pull_tick(n, g, now_ms);
        else if (g && n->map->site_role == SV_MAP_PRIMARY && sv__dr_leads(g))
            cut_tick(n, g, now_ms);
    }
}

/* Propose cmd in g (encoded here): false when out of memory. */
static bool propose_cmd(struct sv_node *n, struct group *g, const struct sv_cmd *cmd)
{
    size_t len = sv_cmd_encoded_len(cmd);
    uint8_t *buf = malloc(len);
    if (!buf)
        return false;
    sv_cmd_encode(cmd, buf);
    sv__host_propose(n, g, buf, len, NULL);
    return true;
}

/* Propose the batch of reply r for g: one SHIP command. */
static void ship_propose(struct sv_node *n, struct group *g, const struct sv_msg *r, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    struct sv_raft_entry e;
    size_t off = 0;
    uint32_t count = 0;
    uint64_t last = s->asked;
    int rc = 0;
    while ((rc = sv_ship_next(r->data.p, r->data.len, &off, &e)) == 1) {
        if (e.index != last + 1)
            break;
        last = e.index;
        count++;
    }
    if (rc != 0) {
        stall(g, "bad-batch", "the primary's batch does not follow the cursor; pulling again");
        s->next_ms = now + DR_RETRY_MS;
        return;
    }
    struct sv_cmd cmd = {.type = SV_CMD_SHIP,
                         .session = n->map->site_epoch,
                         .upload = s->asked,
                         .size = r->version,
                         .mtime_ms = SV_MSG_HAS(r, SV_F_MTIME_MS) ? r->mtime_ms : 0,
                         .n_chunks = count,
                         .seq = n->dr_release_epoch == n->map->site_epoch ? n->dr_release_ms : 0,
                         .data = r->data.p,
                         .data_len = (uint32_t)r->data.len};
    if (!count) {
        /* Nothing new: the closed time is kept in memory only (proposing
         * an empty batch for it would cost a sync per pull). */
        if (cmd.mtime_ms > s->idle_closed_ms && s->st.cursor >= r->version)
            s->idle_closed_ms = cmd.mtime_ms;
        if (r->version > s->st.commit)
            s->st.commit = r->version;
        s->next_ms = now + DR_PULL_IDLE_MS;
        return;
    }
    if (!propose_cmd(n, g, &cmd)) {
        s->next_ms = now + DR_RETRY_MS;
        return;
    }
    if (!s->n_flight)
        s->flight_ms = now;
    s->flight[s->n_flight++] = last;
    s->next_ms = now;
    pull_maybe(n, g, now); /* the next batch while this one commits */
}

/* Propose the piece of the image in answer r: one SEED command. */
static void seed_propose(struct sv_node *n, struct group *g, const struct sv_msg *r, uint64_t now)
{
    struct sv__ship *s = &g->ship;
    if (!SV_MSG_HAS(r, SV_F_VERSION) || !SV_MSG_HAS(r, SV_F_SIZE) || !SV_MSG_HAS(r, SV_F_UPLOAD) ||
        !r->version || r->upload > r->size || (s->seed_index && r->version != s->seed_index) ||
        r->upload < s->seed_off + r->data.len || r->data.len > SV_SM_SHIP_MAX) {
        stall(g, "bad-batch", "the primary's image answer does not follow; asking again");
        seed_restart(s);
        s->next_ms = now + DR_RETRY_MS;
        return;
    }
    bool last = r->upload == r->size;
    struct sv_cmd cmd = {.type = SV_CMD_SEED,
                         .session = n->map->site_epoch,
                         .upload = r->version,
                         .size = r->version,
                         .mtime_ms = SV_MSG_HAS(r, SV_F_MTIME_MS) ? r->mtime_ms : 0,
                         .chunk = s->seed_piece,
                         .n_chunks = last,
                         .data = r->data.p,
                         .data_len = (uint32_t)r->data.len};
    if (!propose_cmd(n, g, &cmd)) {
        s->next_ms = now + DR_RETRY_MS;
        return;
    }
    if (!s->seed_index)
        LOG_INFO("dr: shard %" PRIu64 ": re-seeding from the primary's image at index %" PRIu64
                 " (%" PRIu64 " bytes of records)",
                 g->id - 1, r->version, r->size);
    s->seed_index = r->version;
    s->seed_off = r->upload;
    s->seed_flight = true;
    s->seed_ms = now;
}

/* The answer to a DR_PULL or a DR_SEED of a standby leader. */
void sv__dr_on_pull_reply(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    bool seed = f->type == (SV_MSG_DR_SEED | SV_MSG_RESP);
    struct group *g = NULL;
    for (uint32_t id = 1; id < n->n_group_ids && !g; id++)
        if (n->groups[id] && n->groups[id]->ship.pull_id == f->req_id)
            g = n->groups[id];
    if (!g)
        return; /* given up on, or the group left */
    struct sv__ship *s = &g->ship;
    uint64_t now = uv_now(&n->loop);
    s->pull_id = 0;
    struct sv_msg r;
    char em[128] = "";
    if (sv_msg_decode(f->body, f->body_len, &r, em, sizeof em)) {
        sv_conn_close(c, "malformed DR_PULL answer");
        s->next_ms = now + DR_RETRY_MS;
        return;
    }
    char text[160];
    snprintf(text, sizeof text, "%.*s", SV_MSG_HAS(&r, SV_F_MSG) ? (int)r.msg.len : 0,
             SV_MSG_HAS(&r, SV_F_MSG) ? (const char *)r.msg.p : "");
    s->contact_ms = now;
    switch (r.status) {
    case SV_ST_OK:
        if (s->reason[0])
            LOG_INFO("dr: shard %" PRIu64 ": the primary answers again", g->id - 1);
        s->reason[0] = s->text[0] = 0;
        if (g->role != SV_RAFT_LEADER || n->map->site_role != SV_MAP_STANDBY)
            break;
        if (seed && seed_needed(n, s) && !s->seed_flight)
            seed_propose(n, g, &r, now);
        else if (!seed && !seed_needed(n, s) && s->asked == pull_from(s) &&
                 s->n_flight < SV_DR_FLIGHT)
            ship_propose(n, g, &r, now);
        break;
    case SV_ST_NOT_LEADER:
        peer_learn(n, r.leader, r.addr.p, r.addr.len);
        s->target = SV_MSG_HAS(&r, SV_F_LEADER) && peer_addr(n, r.leader) ? r.leader : 0;
        s->next_ms = s->target ? now : now + DR_RETRY_MS;
        break;
    case SV_ST_NOT_FOUND:
        if (seed) { /* the image is gone (a new leader there): a new one */
            seed_restart(s);
            s->next_ms = now;
        } else if (!s->seeding) {
            LOG_WARN("dr: shard %" PRIu64 ": the primary no longer holds the entries after "
                     "index %" PRIu64 ": re-seeding",
                     g->id - 1, s->st.cursor);
            s->seeding = true;
            s->n_flight = 0;
            seed_restart(s);
            s->next_ms = now;
        }
        break;
    default: {
        char why[250];
        snprintf(why, sizeof why, "the primary answered %s: %s", sv_status_name((int)r.status),
                 text);
        if (r.status == SV_ST_UNAVAILABLE)
            s->target = 0;
        else
            stall(g, "refused", why);
        s->next_ms = now + DR_RETRY_MS;
        break;
    }
    }
    sv_msg_free(&r);
}

/* A SEED piece applied (every replica): the shipping state as the state
 * machine now holds it; the leader asks for the next piece. */
static void seed_applied(struct sv_node *n, struct group *g, const struct sv_cmd *c,
                         const struct sv_sm_result *res)
{
    struct sv__ship *s = &g->ship;
    uint64_t now = uv_now(&n->loop);
    bool mine = s->seed_flight && c->upload == s->seed_index && c->chunk == s->seed_piece;
    if (res->status != SV_ST_OK) {
        if (mine)
            seed_restart(s);
        return;
    }
    uint64_t mark = s->st.mark;
    if (c->n_chunks) {
        s->st = (struct sv_sm_ship){
            .cursor = c->upload, .closed_ms = c->mtime_ms, .commit = c->size, .epoch = c->session};
        s->seeding = false;
        s->idle_closed_ms = 0;
        seed_restart(s);
        sv__copy_installed(n, g); /* the records claim chunks to copy */
        LOG_INFO("dr: shard %" PRIu64 ": re-seeded at the primary's index %" PRIu64
                 "; copying its chunks",
                 g->id - 1, c->upload);
    } else {
        s->st =
            (struct sv_sm_ship){.epoch = c->session, .seed = c->upload, .seed_next = c->chunk + 1};
        s->idle_closed_ms = 0;
        if (mine) {
            s->seed_piece++;
            s->seed_flight = false;
        }
    }
    s->st.mark = mark;
    s->next_ms = now;
    if (g->role == SV_RAFT_LEADER && !g->closing && n->map->site_role == SV_MAP_STANDBY)
        pull_tick(n, g, now);
}

void sv__dr_on_applied(struct sv_node *n, struct group *g, const struct sv_raft_entry *e,
                       const struct sv_sm_result *res)
{
    struct sv_cmd c;
    if (e->type != SV_RAFT_ENTRY_NORMAL || e->len < 1 ||
        (e->data[0] != SV_CMD_SHIP && e->data[0] != SV_CMD_DR_MARK && e->data[0] != SV_CMD_SEED) ||
        sv_cmd_decode(e->data, e->len, &c))
        return;
    struct sv__ship *s = &g->ship;
    if (c.type == SV_CMD_SEED) {
        seed_applied(n, g, &c, res);
        return;
    }
    if (c.type == SV_CMD_DR_MARK) {
        if (res->status == SV_ST_OK)
            s->st.mark = max64(s->st.mark, c.upload);
        return;
    }
    if (res->status == SV_ST_OK && res->upload) /* a held chunk this replica lacks (sm.h) */
        sv__copy_installed(n, g);
    if (res->status == SV_ST_OK) {
        s->loaded = false; /* a release or a cut moved what ran: read it again */
        s->release_flight = false;
        s->st.cursor = max64(s->st.cursor, res->version);
        if (c.mtime_ms > s->st.closed_ms && s->st.cursor >= c.size)
            s->st.closed_ms = c.mtime_ms;
        s->st.commit = max64(s->st.commit, c.size);
    } else if (res->status == SV_ST_VERSION_CONFLICT) {
        s->n_flight = 0; /* a batch before it was lost: pull again from the cursor */
    }
    if (c.chunk == 1 && res->status == SV_ST_OK)
        LOG_INFO("dr: shard %" PRIu64 ": cut at site epoch %" PRIu64 ": entries up to the "
                 "primary's index %" PRIu64 " ran, the rest were dropped",
                 g->id - 1, c.session, res->version);
    /* the batches in flight that are applied now */
    uint32_t k = 0;
    while (k < s->n_flight && s->flight[k] <= s->st.cursor)
        k++;
    if (k) {
        memmove(s->flight, s->flight + k, (s->n_flight - k) * sizeof s->flight[0]);
        s->n_flight -= k;
        s->flight_ms = uv_now(&n->loop);
    }
    if (g->role == SV_RAFT_LEADER && !g->closing)
        pull_maybe(n, g, uv_now(&n->loop));
}

/* ---- the primary: answering pulls ----------------------------------------- */

/* The group a DR_PULL or DR_SEED asks of, when this node is the primary's
 * leader of it; otherwise the answer is sent and NULL returned. */
static struct group *primary_leader(struct sv_node *n, struct sv_conn *c,
                                    const struct sv_wire_frame *f, const struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    /* A fenced site still ships what it committed (a switchover waits for
     * its standby to have all of it); a standby ships nothing. */
    if (n->map->site_role == SV_MAP_STANDBY) {
        char text[160];
        snprintf(text, sizeof text, "site %s is a standby: it ships nothing", n->cfg.site);
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_READ_ONLY, text);
        return NULL;
    }
    if (!SV_MSG_HAS(m, SV_F_SHARD) || !SV_MSG_HAS(m, SV_F_VERSION) ||
        m->shard >= n->map->n_shards) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "SHARD and VERSION are needed");
        return NULL;
    }
    struct group *g = sv__group(n, m->shard + 1);
    if (!g || g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, conn, f->type, f->req_id,
                             g ? g->leader : sv_map_group(n->map, m->shard + 1)->ids[0]);
        return NULL;
    }
    return g;
}

/* Every replica of g keeps its log from the standby's cursor on (DR_MARK):
 * a new leader can still answer it. */
static void mark_propose(struct sv_node *n, struct group *g, uint64_t cursor, uint64_t now)
{
    struct sv_cmd cmd = {.type = SV_CMD_DR_MARK, .upload = cursor};
    if (propose_cmd(n, g, &cmd))
        g->ship.mark_ms = now;
}

/* Ask g's read index for waiter-to-be of request f; the read-index event
 * answers it. */
static void read_then(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                      const struct sv__ctx *ctx, struct group *g, uint64_t version)
{
    struct waiter *w = sv__waiter_new(n, c, f, ctx, g->id);
    if (!w) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    w->m.version = version;
    w->wall_ms = n->clock.wall_ms(n->clock.arg); /* before the read index is asked */
    w->read_ctx = ++n->next_ctx;
    w->next = g->reads;
    g->reads = w;
    sv__host_read_index(n, g, w->read_ctx);
}

void sv__dr_pull(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                 const struct sv__ctx *ctx, struct sv_msg *m)
{
    uint64_t conn = sv_conn_id(c);
    struct group *g = primary_leader(n, c, f, m);
    if (!g)
        return;
    if (m->version > g->commit) {
        sv__reply_status(n, conn, f->type, f->req_id, SV_ST_BAD_REQUEST,
                         "the cursor is past this shard's commit index");
        return;
    }
    struct sv__ship *s = &g->ship;
    uint64_t now = uv_now(&n->loop);
    /* The standby's applied cursor (UPLOAD; VERSION may be past it, after the
     * batches it has in flight): a batch in flight may be lost, so the log
     * is kept from what it applied. */
    uint64_t applied = SV_MSG_HAS(m, SV_F_UPLOAD) && m->upload <= m->version ? m->upload : 0;
    s->standby_cursor = applied;
    s->contact_ms = now;
    ship_load(n, g);
    /* (not for the standby having applied the last mark alone: that would
     * propose a mark a second for ever) */
    if (applied > s->st.mark + 1 && now >= s->mark_ms + DR_MARK_MS)
        mark_propose(n, g, applied, now);
    read_then(n, c, f, ctx, g, m->version);
}

void sv__dr_serve(struct sv_node *n, struct group *g, struct waiter *w)
{
    uint64_t after = w->m.version, upto = w->read_index;
    if (g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, w->conn, w->type, w->req_id, g->leader);
        sv__waiter_free(w);
        return;
    }
    if (after < upto && !sv_raft_entry_at(g->r, after + 1)) {
        sv__waiter_fail(w, SV_ST_NOT_FOUND, "the log no longer holds the entry after the cursor");
        return;
    }
    size_t bytes = 0;
    uint64_t last = after;
    while (last < upto) {
        const struct sv_raft_entry *e = sv_raft_entry_at(g->r, last + 1);
        if (!e || bytes + SV_SHIP_ENTRY_HEAD + e->len > SV_MSG_DATA_MAX)
            break;
        bytes += SV_SHIP_ENTRY_HEAD + e->len;
        last++;
    }
    if (last == after && after < upto) {
        sv__waiter_fail(w, SV_ST_INTERNAL, "an entry is larger than a DR_PULL answer");
        return;
    }
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        sv__waiter_fail(w, SV_ST_INTERNAL, "out of memory");
        return;
    }
    size_t off = 0;
    for (uint64_t i = after + 1; i <= last; i++)
        off += sv_ship_put(buf + off, sv_raft_entry_at(g->r, i));
    struct sv_msg r = {0};
    r.data = (struct sv_bytes){buf, off};
    r.version = upto;
    r.fields = 1u << SV_F_DATA | 1u << SV_F_VERSION;
    if (last == upto) {
        r.mtime_ms = w->wall_ms;
        SV_MSG_SET(&r, SV_F_MTIME_MS);
    }
    sv__send_msg(n, w->conn, w->type, w->req_id, &r);
    free(buf);
    sv__waiter_free(w);
}

/* Answer the image's records from byte off on, whole, at most about one
 * chunk's worth. */
static void seed_answer(struct sv_node *n, uint64_t conn, uint32_t type, uint64_t req_id,
                        struct sv__ship *s, uint64_t off)
{
    if (off > s->img_len) {
        sv__reply_status(n, conn, type, req_id, SV_ST_BAD_REQUEST,
                         "the offset is past the image's end");
        return;
    }
    size_t end = off;
    while (end < s->img_len) {
        size_t kl = sv_get32(s->img + end);
        size_t vl = sv_get32(s->img + end + 4 + kl);
        size_t rec = 8 + kl + vl;
        if (end > off && end - off + rec > SV_MSG_CHUNK_MAX)
            break;
        end += rec;
    }
    struct sv_msg r = {0};
    r.data = (struct sv_bytes){s->img ? s->img + off : (const uint8_t *)"", end - off};
    r.version = s->img_index;
    r.size = s->img_len;
    r.upload = end;
    r.mtime_ms = s->img_closed_ms;
    r.fields = 1u << SV_F_DATA | 1u << SV_F_VERSION | 1u << SV_F_SIZE | 1u << SV_F_UPLOAD |
               1u << SV_F_MTIME_MS;
    sv__send_msg(n, conn, type, req_id, &r);
}

static void image_drop(struct sv__ship *s)
{
    free(s->img);
    s->img = NULL;
    s->img_len = 0;
    s->img_index = 0;
}

void sv__dr_seed(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f,
                 const struct sv__ctx *ctx, struct sv_msg *m)
{
    struct group *g = primary_leader(n, c, f, m);
    if (!g)
        return;
    struct sv__ship *s = &g->ship;
    uint64_t off = SV_MSG_HAS(m, SV_F_UPLOAD) ? m->upload : 0, now = uv_now(&n->loop);
    s->contact_ms = now;
    if (m->version && s->img_index == m->version) {
        s->img_ms = now;
        seed_answer(n, sv_conn_id(c), f->type, f->req_id, s, off);
    } else if (m->version || off) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_NOT_FOUND,
                         "this node no longer holds that image (a new leader, or idle for "
                         "60 s): ask for a new one");
    } else {
        read_then(n, c, f, ctx, g, 0);
    }
}

/* An image being made in the pool for waiter w of group id. */
struct image_job {
    uv_work_t w;
    struct sv_node *n;
    struct waiter *wt;
    struct sv_sm_view *view;
    uint64_t group, at;
    uint8_t *img;
    size_t len;
    int rc;
};

static void image_work(uv_work_t *req)
{
    struct image_job *j = req->data;
    j->rc =
        sv_sm_snapshot(j->n->sm, j->view, j->group, SV_LOG_SNAPSHOT_BYTES_MAX, &j->img, &j->len);
}

static void image_after(uv_work_t *req, int status)
{
    (void)status;
    struct image_job *j = req->data;
    struct sv_node *n = j->n;
    struct waiter *w = j->wt;
    n->jobs_in_pool--;
    sv_sm_view_release(n->sm, j->view);
    struct group *g = sv__group(n, j->group);
    if (j->rc) {
        sv__waiter_fail(w, SV_ST_INTERNAL,
                        j->rc == -EFBIG ? "the shard's image is larger than 256 MiB"
                                        : "the shard's image could not be made");
    } else if (!g || g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, w->conn, w->type, w->req_id, g ? g->leader : 0);
        sv__waiter_free(w);
    } else {
        struct sv__ship *s = &g->ship;
        uint64_t now = uv_now(&n->loop);
        image_drop(s);
        s->img = j->img;
        j->img = NULL;
        s->img_len = j->len;
        s->img_index = j->at;
        s->img_closed_ms = w->wall_ms;
        s->img_ms = now;
        if (j->at > s->st.mark)
            mark_propose(n, g, j->at, now);
        LOG_INFO("dr: shard %" PRIu64 ": an image at index %" PRIu64 " (%zu bytes) for the "
                 "standby",
                 g->id - 1, j->at, s->img_len);
        seed_answer(n, w->conn, w->type, w->req_id, s, 0);
        sv__waiter_free(w);
    }
    free(j->img);
    free(j);
}

/* A new image for a standby, at the read index of w: every entry committed
 * before w's wall time is in it, which makes that time its closed time. The
 * view is frozen here, the image made from it in the pool. */
void sv__dr_seed_serve(struct sv_node *n, struct group *g, struct waiter *w)
{
    if (g->role != SV_RAFT_LEADER) {
        sv__reply_not_leader(n, w->conn, w->type, w->req_id, g->leader);
        sv__waiter_free(w);
        return;
    }
    struct image_job *j = calloc(1, sizeof *j);
    int rc = j && (j->view = sv_sm_view(n->sm)) ? 0 : -ENOMEM;
    if (!rc)
        rc = sv_sm_view_applied(n->sm, j->view, g->id, &j->at);
    if (!rc && j->at < w->read_index)
        rc = -EAGAIN;
    if (rc) {
        if (j)
            sv_sm_view_release(n->sm, j->view);
        free(j);
        sv__waiter_fail(w, rc == -EAGAIN ? SV_ST_UNAVAILABLE : SV_ST_INTERNAL,
                        rc == -EAGAIN ? "the shard has not applied its read index yet; retry"
                                      : "the shard's image could not be made");
        return;
    }
    /* the standby goes on from the image's index: its log is kept from
     * there on from now (the mark follows once the image is made) */
    g->ship.standby_cursor = j->at;
    j->n = n;
    j->wt = w;
    j->group = g->id;
    j->w.data = j;
    n->jobs_in_pool++;
    uv_queue_work(&n->loop, &j->w, image_work, image_after);
}

void sv__dr_group_free(struct group *g)
{
    image_drop(&g->ship);
}

/* Entries a snapshot of g at index must keep behind it for the standby. */
uint64_t sv__dr_trailing(struct sv_node *n, struct group *g, uint64_t index)
{
    uint64_t keep = SNAPSHOT_TRAILING;
    if (n->map->site_role == SV_MAP_STANDBY)
        return keep;
    ship_load(n, g);
    /* the lower of what DR_MARK recorded (every replica) and what the
     * standby last asked this leader */
    uint64_t cur = g->ship.st.mark;
    if (g->ship.contact_ms && (!cur || g->ship.standby_cursor < cur))
        cur = g->ship.standby_cursor;
    if (!cur || cur >= index || index - cur <= keep)
        return keep;
    size_t bytes = 0;
    uint64_t i = index;
    while (i > cur && bytes < DR_RETAIN_BYTES) {
        const struct sv_raft_entry *e = sv_raft_entry_at(g->r, i);
        if (!e)
            break;
        bytes += e->len;
        i--;
    }
    return index - i > keep ? index - i : keep;
}

/* ---- status ---------------------------------------------------------------- */

/* What DR_STATUS and the metrics say of a group this node leads. */
struct view {
    const char *state, *reason, *text;
    uint64_t frontier_ms; /* standby: 0 until known */
    uint64_t applied, commit;
    uint64_t cut;  /* a site that was a standby: the primary index its shipping ended at */
    uint64_t last; /* fenced: the leader's last log index (all that may still commit) */
};

static void group_view(struct sv_node *n, struct group *g, uint64_t now, struct view *v)
{
    struct sv__ship *s = &g->ship;
    memset(v, 0, sizeof *v);
    ship_load(n, g);
    if (n->map->site_role != SV_MAP_STANDBY && s->st.epoch)
        v->cut = s->st.applied;
    if (n->map->site_role == SV_MAP_FENCED) {
        /* an old primary: what its standby had asked for, its commit */
        struct sv_raft_status rs;
        sv_raft_status(g->r, &rs);
        v->state = "fenced";
        v->applied = s->standby_cursor;
        v->commit = g->commit;
        v->last = rs.last_index;
        return;
    }
    if (sv__dr_standby(n)) {
        uint64_t closed = s->st.closed_ms > s->idle_closed_ms ? s->st.closed_ms : s->idle_closed_ms;
        bool stalled = s->reason[0] && now >= s->contact_ms + DR_STALL_MS;
        /* re-seeding until the image is whole and its chunks are here */
        bool seeding = seed_needed(n, s) || g->copy_pending;
        v->state = stalled   ? "stalled"
                   : seeding ? (s->st.epoch || s->st.seed ? "reseeding" : "initial-sync")
                   : closed  ? "streaming"
                             : "initial-sync";
        if (seeding)
            closed = 0; /* no frontier: the shard is not whole */
        v->frontier_ms = closed;
        v->applied = s->st.applied;
        v->commit = s->st.commit;
        if (stalled) {
            v->reason = s->reason;
            v->text = s->text;
        }
        return;
    }
    if (cut_pending(n, g)) {
        v->state = "cutting"; /* a promoted site's shard: no write until cut */
        v->applied = s->st.applied;
        v->commit = g->commit;
        return;
    }
    bool pulled = s->contact_ms && now < s->contact_ms + DR_SHIP_CONTACT_MS;
    v->state = pulled ? "shipping" : "stalled";
    v->applied = s->standby_cursor;
    v->commit = g->commit;
    if (pulled)
        return;
    v->reason = !n->cfg.peer_site[0] ? "no-peer-site"
                : s->contact_ms      ? "standby-silent"
                                     : "no-standby";
    v->text = !n->cfg.peer_site[0] ? "no peer site is configured"
              : s->contact_ms      ? "the standby has not pulled for 5 s"
                                   : "no standby has pulled since this node took the lead";
}

bool sv__dr_leads(const struct group *g)
{
    return g && g->id && !g->closing && g->role == SV_RAFT_LEADER;
}

void sv__dr_reply_status(struct sv_node *n, struct sv_conn *c, const struct sv_wire_frame *f)
{
    uint64_t now = uv_now(&n->loop), wall = n->clock.wall_ms(n->clock.arg);
    struct sv_item *items = calloc(n->n_group_ids ? n->n_group_ids : 1, sizeof *items);
    if (!items) {
        sv__reply_status(n, sv_conn_id(c), f->type, f->req_id, SV_ST_INTERNAL, "out of memory");
        return;
    }
    uint32_t k = 0;
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!sv__dr_leads(g))
            continue;
        struct view v;
        group_view(n, g, now, &v);
        struct sv_item *it = &items[k++];
        it->id = id - 1;
        set_str(&it->state, v.state);
        it->applied = v.applied;
        it->commit = v.commit;
        it->fields = 1u << SV_I_ID | 1u << SV_I_STATE | 1u << SV_I_APPLIED | 1u << SV_I_COMMIT;
        if (v.frontier_ms) {
            it->mtime_ms = v.frontier_ms;
            SV_ITEM_SET(it, SV_I_MTIME_MS);
        }
        if (v.reason) {
            set_str(&it->reason, v.reason);
            set_str(&it->text, v.text);
            SV_ITEM_SET(it, SV_I_REASON);
            SV_ITEM_SET(it, SV_I_TEXT);
        }
        if (g->ship.contact_ms) {
            it->age_ms = now - g->ship.contact_ms;
            SV_ITEM_SET(it, SV_I_AGE_MS);
        }
        if (v.cut) {
            it->cut = v.cut;
            SV_ITEM_SET(it, SV_I_CUT);
        }
        if (v.last) {
            it->index = v.last;
            SV_ITEM_SET(it, SV_I_INDEX);
        }
    }
    struct sv_msg m = {0};
    set_str(&m.key, sv__dr_role_name(n));
    set_str(&m.bucket, n->cfg.site);
    set_str(&m.prefix, n->cfg.peer_site);
    m.version = n->map->site_epoch;
    m.mtime_ms = wall;
    m.items = items;
    m.n_items = k;
    m.fields = 1u << SV_F_KEY | 1u << SV_F_BUCKET | 1u << SV_F_PREFIX | 1u << SV_F_VERSION |
               1u << SV_F_MTIME_MS | 1u << SV_F_ITEMS;
    sv__send_msg(n, sv_conn_id(c), f->type, f->req_id, &m);
    free(items);
}

void sv__dr_summary(struct sv_node *n, struct sv__dr_summary *out)
{
    uint64_t now = uv_now(&n->loop), wall = n->clock.wall_ms(n->clock.arg);
    memset(out, 0, sizeof *out);
    for (uint32_t id = 1; id < n->n_group_ids; id++) {
        struct group *g = n->groups[id];
        if (!sv__dr_leads(g))
            continue;
        struct view v;
        group_view(n, g, now, &v);
        out->led++;
        out->stalled += v.reason != NULL;
        out->seeding += !strcmp(v.state, "reseeding") || !strcmp(v.state, "initial-sync");
        out->behind += v.commit > v.applied ? v.commit - v.applied : 0;
        if (n->map->site_role != SV_MAP_STANDBY)
            continue;
        out->held_bytes += g->ship.st.held_bytes;
        int64_t lag = v.frontier_ms ? (int64_t)(wall - v.frontier_ms) : -1;
        if (out->led == 1 || out->lag_ms >= 0)
            out->lag_ms = lag < 0 ? -1 : lag > out->lag_ms ? lag : out->lag_ms;
    }
    if (!out->led || n->map->site_role != SV_MAP_STANDBY)
        out->lag_ms = -1;
}

int sv__dr_open(struct sv_node *n)
{
    n->dr_n_peers = 0;
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        n->dr_peers[i].link.id = n->cfg.peers[i].id;
        _Static_assert(sizeof n->dr_peers[i].addr == sizeof n->cfg.peers[i].addr, "addresses");
        memcpy(n->dr_peers[i].addr, n->cfg.peers[i].addr, sizeof n->dr_peers[i].addr);
        n->dr_n_peers++;
    }
    if (n->cfg.peer_site[0])
        LOG_INFO("site %s (%s); peer site %s, %u node(s) known", n->cfg.site, sv__dr_role_name(n),
                 n->cfg.peer_site, n->dr_n_peers);
    return 0;
}
