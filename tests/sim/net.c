/* Simulated network: in-flight queue with drop, delay, duplication, reordering and partitions. */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sv__msg_summary(const struct sv_raft_msg *m, char *buf, size_t len)
{
    const char *name = sv_raft_msg_type_name(m->type);
    switch (m->type) {
    case SV_RAFT_MSG_APPEND:
        if (m->n_entries > 0)
            snprintf(buf, len,
                     "%s t=%" PRIu64 " prev=%" PRIu64 "/%" PRIu64 " ents=%" PRIu64 "..%" PRIu64
                     " (t%" PRIu64 "..t%" PRIu64 ") commit=%" PRIu64,
                     name, m->term, m->index, m->log_term, m->entries[0].index,
                     m->entries[m->n_entries - 1].index, m->entries[0].term,
                     m->entries[m->n_entries - 1].term, m->commit);
        else
            snprintf(buf, len,
                     "%s t=%" PRIu64 " prev=%" PRIu64 "/%" PRIu64 " ents=none commit=%" PRIu64,
                     name, m->term, m->index, m->log_term, m->commit);
        break;
    case SV_RAFT_MSG_APPEND_RESP:
        snprintf(buf, len, "%s t=%" PRIu64 " index=%" PRIu64 " %s hint=%" PRIu64 "/%" PRIu64, name,
                 m->term, m->index, m->reject ? "REJECT" : "ok", m->hint_index, m->hint_term);
        break;
    case SV_RAFT_MSG_HEARTBEAT:
    case SV_RAFT_MSG_HEARTBEAT_RESP:
        snprintf(buf, len,
                 "%s t=%" PRIu64 " commit=%" PRIu64 " ctx=%" PRIu64 " lease_tick=%" PRIu64 "%s",
                 name, m->term, m->commit, m->ctx, m->lease_tick, m->reject ? " REJECT" : "");
        break;
    case SV_RAFT_MSG_PRE_VOTE:
    case SV_RAFT_MSG_VOTE:
        snprintf(buf, len, "%s t=%" PRIu64 " last=%" PRIu64 "/%" PRIu64 "%s", name, m->term,
                 m->index, m->log_term, m->transfer ? " (transfer)" : "");
        break;
    case SV_RAFT_MSG_PRE_VOTE_RESP:
    case SV_RAFT_MSG_VOTE_RESP:
        snprintf(buf, len, "%s t=%" PRIu64 " %s", name, m->term, m->reject ? "REJECT" : "GRANT");
        break;
    case SV_RAFT_MSG_SNAPSHOT:
        snprintf(buf, len,
                 "%s t=%" PRIu64 " snap=%" PRIu64 "/%" PRIu64 " off=%" PRIu64 " len=%" PRIu32 "%s",
                 name, m->term, m->snap.index, m->snap.term, m->offset, m->len,
                 m->done ? " done" : "");
        break;
    case SV_RAFT_MSG_SNAPSHOT_RESP:
        snprintf(buf, len, "%s t=%" PRIu64 " snap=%" PRIu64 " off=%" PRIu64 "%s", name, m->term,
                 m->snap.index, m->offset, m->reject ? " REJECT" : "");
        break;
    case SV_RAFT_MSG_READ_INDEX:
    case SV_RAFT_MSG_READ_INDEX_RESP:
        snprintf(buf, len, "%s t=%" PRIu64 " ctx=%" PRIu64 " index=%" PRIu64 "%s", name, m->term,
                 m->ctx, m->index, m->reject ? " REJECT" : "");
        break;
    default:
        snprintf(buf, len, "%s t=%" PRIu64, name, m->term);
        break;
    }
}

static void enqueue(struct sim *s, const struct sv_raft_msg *m, uint64_t at)
{
    struct sim_net *net = &s->net;
    if (net->n == net->cap) {
        size_t cap = net->cap ? net->cap * 2 : 256;
        if (cap > SIM_NET_MAX)
            cap = SIM_NET_MAX;
        if (net->n == cap) {
            s->st.msgs_dropped++;
            sv__trace(s, "drop %" PRIu64 "->%" PRIu64 " (network queue full)", m->from, m->to);
            return;
        }
        struct sim_msg *q = realloc(net->q, cap * sizeof(*q));
        if (q == NULL) {
            sv__fail(s, "sim", "out of memory (network queue)");
            return;
        }
        net->q = q;
        net->cap = cap;
    }
    struct sim_msg *sm = &net->q[net->n];
    if (sv_raft_msg_copy(&sm->m, m) != 0) {
        sv__fail(s, "sim", "sv_raft_msg_copy: out of memory");
        return;
    }
    sm->at = at;
    sm->seq = net->next_seq++;
    net->n++;
}

void sv__net_send(struct sim *s, struct sim_node *from, const struct sv_raft_msg *m)
{
    struct sim_net *net = &s->net;
    char sum[256];
    s->st.msgs_sent++;
    if (s->trace)
        sv__msg_summary(m, sum, sizeof(sum));
    if (m->from != from->id)
        sv__fail(s, "contract", "n%" PRIu64 " emitted a message with from=%" PRIu64, from->id,
                 m->from);
    if (!s->calm && rng_ppm(&s->rng, net->p_drop)) {
        s->st.msgs_dropped++;
        if (s->trace)
            sv__trace(s, "send %" PRIu64 "->%" PRIu64 " %s: DROPPED (lossy link)", m->from, m->to,
                      sum);
        return;
    }
    int copies = 1;
    if (!s->calm && rng_ppm(&s->rng, net->p_dup)) {
        copies = 2;
        s->st.msgs_duplicated++;
    }
    for (int c = 0; c < copies; c++) {
        uint64_t at = s->now;
        if (!s->calm && rng_ppm(&s->rng, net->p_delay))
            at += rng_range(&s->rng, 1, net->delay_max);
        if (s->trace)
            sv__trace(s, "send %" PRIu64 "->%" PRIu64 " %s%s%s", m->from, m->to, sum,
                      c > 0 ? " [duplicate]" : "", at > s->now ? " [delayed]" : "");
        if (s->trace && at > s->now)
            sv__trace(s, "  (deliverable at tick %" PRIu64 ")", at);
        enqueue(s, m, at);
    }
}

/* Messages deliverable now that were sent before sequence number `below`. */
size_t sv__net_due(const struct sim *s, uint64_t below)
{
    size_t due = 0;
    for (size_t i = 0; i < s->net.n; i++)
        if (s->net.q[i].at <= s->now && s->net.q[i].seq < below)
            due++;
    return due;
}

void sv__net_deliver_one(struct sim *s, uint64_t below)
{
    struct sim_net *net = &s->net;
    size_t due = sv__net_due(s, below);
    if (due == 0)
        return;
    size_t pick = SIZE_MAX;
    if (rng_ppm(&s->rng, net->p_fifo)) {
        /* Oldest deliverable message. */
        uint64_t best = UINT64_MAX;
        for (size_t i = 0; i < net->n; i++)
            if (net->q[i].at <= s->now && net->q[i].seq < best) {
                best = net->q[i].seq;
                pick = i;
            }
    } else {
        size_t k = rng_below(&s->rng, due);
        for (size_t i = 0; i < net->n; i++)
            if (net->q[i].at <= s->now && net->q[i].seq < below && k-- == 0) {
                pick = i;
                break;
            }
    }
    struct sim_msg sm = net->q[pick];
    net->q[pick] = net->q[net->n - 1];
    net->n--;

    char sum[256];
    if (s->trace)
        sv__msg_summary(&sm.m, sum, sizeof(sum));
    struct sim_node *to = sv__node_by_id(s, sm.m.to);
    int a = sv__slot_of(s, sm.m.from), b = sv__slot_of(s, sm.m.to);
    if (to == NULL || !to->up) {
        s->st.msgs_dropped++;
        sv__trace(s, "drop %" PRIu64 "->%" PRIu64 " %s (%s)", sm.m.from, sm.m.to,
                  s->trace ? sum : "", to == NULL ? "no such server" : "server down");
    } else if (a >= 0 && b >= 0 && net->cut[a][b]) {
        s->st.msgs_dropped++;
        sv__trace(s, "drop %" PRIu64 "->%" PRIu64 " %s (partition)", sm.m.from, sm.m.to,
                  s->trace ? sum : "");
    } else {
        s->st.msgs_delivered++;
        sv__trace(s, "deliver %" PRIu64 "->%" PRIu64 " %s", sm.m.from, sm.m.to,
                  s->trace ? sum : "");
        int rc = sv_raft_step(to->r, &sm.m);
        if (rc != 0)
            sv__trace(s, "  n%" PRIu64 " step: %s", to->id, sv_raft_strerror(rc));
    }
    sv_raft_msg_free(&sm.m);
}

/* Current leader's slot (highest term), or -1. */
static int leader_slot(struct sim *s)
{
    int best = -1;
    uint64_t term = 0;
    for (int i = 0; i < SIM_SLOTS_MAX; i++) {
        struct sim_node *n = &s->nodes[i];
        if (n->used && n->up && n->role == SV_RAFT_LEADER && n->term >= term) {
            best = i;
            term = n->term;
        }
    }
    return best;
}

static void cut_both(struct sim_net *net, int a, int b)
{
    net->cut[a][b] = true;
    net->cut[b][a] = true;
}

static void describe_sides(struct sim *s, const char *shape, const int *side)
{
    if (!s->trace)
        return;
    char buf[256];
    size_t off = 0;
    for (int k = 0; k < 3; k++) {
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s{", k ? " " : "");
        bool first = true;
        for (int i = 0; i < SIM_SLOTS_MAX && off < sizeof(buf) - 16; i++) {
            if (!s->nodes[i].used || side[i] != k)
                continue;
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%" PRIu64, first ? "" : ",",
                                    s->nodes[i].id);
            first = false;
        }
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "}");
        if (off >= sizeof(buf) - 16)
            break;
    }
    sv__trace(s, "partition %s: %s", shape, buf);
}

void sv__net_partition(struct sim *s)
{
    struct sim_net *net = &s->net;
    int used[SIM_SLOTS_MAX], n_used = 0;
    for (int i = 0; i < SIM_SLOTS_MAX; i++)
        if (s->nodes[i].used)
            used[n_used++] = i;
    if (n_used < 2)
        return;
    memset(net->cut, 0, sizeof(net->cut));
    int side[SIM_SLOTS_MAX];
    for (int i = 0; i < SIM_SLOTS_MAX; i++)
        side[i] = 0;
    int leader = leader_slot(s);
    int victim = (leader >= 0 && rng_ppm(&s->rng, 600000))
                     ? leader
                     : used[rng_below(&s->rng, (uint64_t)n_used)];
    s->st.partitions++;

    switch (rng_below(&s->rng, 7)) {
    case 0: /* random halves */
        for (int k = 0; k < n_used; k++)
            side[used[k]] = (int)rng_below(&s->rng, 2);
        for (int x = 0; x < n_used; x++)
            for (int y = 0; y < n_used; y++)
                if (side[used[x]] != side[used[y]])
                    net->cut[used[x]][used[y]] = true;
        describe_sides(s, "halves", side);
        break;
    case 1: /* isolate one node, often the leader */
        side[victim] = 1;
        for (int k = 0; k < n_used; k++)
            if (used[k] != victim)
                cut_both(net, victim, used[k]);
        describe_sides(s, "isolate", side);
        break;
    case 2: { /* minority (with the victim) versus majority */
        int minority = (n_used - 1) / 2;
        if (minority < 1)
            minority = 1;
        side[victim] = 1;
        int placed = 1;
        while (placed < minority) {
            int c = used[rng_below(&s->rng, (uint64_t)n_used)];
            if (side[c] == 0) {
                side[c] = 1;
                placed++;
            }
        }
        for (int x = 0; x < n_used; x++)
            for (int y = 0; y < n_used; y++)
                if (side[used[x]] != side[used[y]])
                    net->cut[used[x]][used[y]] = true;
        describe_sides(s, "minority/majority", side);
        break;
    }
    case 3: { /* bridge: the victim sees both sides, the sides do not see each other */
        side[victim] = 2;
        for (int k = 0; k < n_used; k++)
            if (used[k] != victim)
                side[used[k]] = (int)rng_below(&s->rng, 2);
        for (int x = 0; x < n_used; x++)
            for (int y = 0; y < n_used; y++) {
                int sx = side[used[x]], sy = side[used[y]];
                if (sx != 2 && sy != 2 && sx != sy)
                    net->cut[used[x]][used[y]] = true;
            }
        describe_sides(s, "bridge (side 2 sees both)", side);
        break;
    }
    case 4: /* the victim can hear but not speak */
        for (int k = 0; k < n_used; k++)
            if (used[k] != victim)
                net->cut[victim][used[k]] = true;
        sv__trace(s, "partition one-way: n%" PRIu64 " cannot send", s->nodes[victim].id);
        break;
    case 5: /* the victim can speak but not hear */
        for (int k = 0; k < n_used; k++)
            if (used[k] != victim)
                net->cut[used[k]][victim] = true;
        sv__trace(s, "partition one-way: n%" PRIu64 " cannot receive", s->nodes[victim].id);
        break;
    default: /* random one-way cuts */
        for (int x = 0; x < n_used; x++)
            for (int y = 0; y < n_used; y++)
                if (x != y && rng_ppm(&s->rng, 300000)) {
                    net->cut[used[x]][used[y]] = true;
                    sv__trace(s, "partition one-way: %" PRIu64 " -/-> %" PRIu64,
                              s->nodes[used[x]].id, s->nodes[used[y]].id);
                }
        break;
    }
}

void sv__net_heal(struct sim *s)
{
    memset(s->net.cut, 0, sizeof(s->net.cut));
    s->st.heals++;
    sv__trace(s, "heal: all partitions removed");
}

/* Change the link quality: calm, lossy, or stormy. */
void sv__net_weather(struct sim *s)
{
    struct sim_net *net = &s->net;
    switch (rng_below(&s->rng, 4)) {
    case 0:
        net->p_drop = 0;
        net->p_dup = 0;
        net->p_delay = 0;
        break;
    case 1:
        net->p_drop = (uint32_t)rng_range(&s->rng, 0, 50000);
        net->p_dup = (uint32_t)rng_range(&s->rng, 0, 30000);
        net->p_delay = (uint32_t)rng_range(&s->rng, 0, 200000);
        break;
    case 2:
        net->p_drop = (uint32_t)rng_range(&s->rng, 100000, 400000);
        net->p_dup = (uint32_t)rng_range(&s->rng, 0, 100000);
        net->p_delay = (uint32_t)rng_range(&s->rng, 100000, 500000);
        break;
    default:
        net->p_drop = (uint32_t)rng_range(&s->rng, 0, 20000);
        net->p_dup = (uint32_t)rng_range(&s->rng, 0, 20000);
        net->p_delay = (uint32_t)rng_range(&s->rng, 0, 100000);
        break;
    }
    net->delay_max = (uint32_t)rng_range(&s->rng, 1, 3 * s->p.election_ticks);
    net->p_fifo = (uint32_t)rng_range(&s->rng, 0, SIM_PPM);
    sv__trace(s, "network: drop %u ppm, duplicate %u ppm, delay %u ppm up to %u ticks", net->p_drop,
              net->p_dup, net->p_delay, net->delay_max);
}

void sv__net_clear_slot(struct sim *s, int slot)
{
    for (int i = 0; i < SIM_SLOTS_MAX; i++) {
        s->net.cut[slot][i] = false;
        s->net.cut[i][slot] = false;
    }
}

void sv__net_free(struct sim *s)
{
    for (size_t i = 0; i < s->net.n; i++)
        sv_raft_msg_free(&s->net.q[i].m);
    free(s->net.q);
    s->net.q = NULL;
    s->net.n = s->net.cap = 0;
}
