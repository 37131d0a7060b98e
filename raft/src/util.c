/* Raft helpers with no group state: configuration codec, message copies, names. */
#include <string.h>

#include "internal.h"

/* Configuration layout: "SVC1", u32 n, then n x (u64 id, u8 role), little endian. */
enum { CONF_MAGIC_LEN = 4, CONF_HEADER_LEN = 8, CONF_SERVER_LEN = 9 };
static const uint8_t conf_magic[CONF_MAGIC_LEN] = {'S', 'V', 'C', '1'};

size_t sv_raft_conf_encoded_len(const struct sv_raft_conf *conf)
{
    return CONF_HEADER_LEN + (size_t)conf->n * CONF_SERVER_LEN;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

void sv_raft_conf_encode(const struct sv_raft_conf *conf, uint8_t *buf)
{
    ASSERT(conf->n <= SV_RAFT_SERVERS_MAX);
    memcpy(buf, conf_magic, CONF_MAGIC_LEN);
    put_le(buf + CONF_MAGIC_LEN, conf->n, 4);
    uint8_t *p = buf + CONF_HEADER_LEN;
    for (uint32_t i = 0; i < conf->n; i++, p += CONF_SERVER_LEN) {
        put_le(p, conf->servers[i].id, 8);
        p[8] = conf->servers[i].role;
    }
}

int sv_raft_conf_decode(const uint8_t *buf, size_t len, struct sv_raft_conf *out)
{
    if (len < CONF_HEADER_LEN || memcmp(buf, conf_magic, CONF_MAGIC_LEN) != 0) {
        return SV_RAFT_E_CORRUPT;
    }
    uint64_t n = get_le(buf + CONF_MAGIC_LEN, 4);
    if (n > SV_RAFT_SERVERS_MAX || len != CONF_HEADER_LEN + n * CONF_SERVER_LEN) {
        return SV_RAFT_E_CORRUPT;
    }
    struct sv_raft_conf c;
    memset(&c, 0, sizeof(c));
    const uint8_t *p = buf + CONF_HEADER_LEN;
    for (uint32_t i = 0; i < n; i++, p += CONF_SERVER_LEN) {
        sv_raft_id id = get_le(p, 8);
        uint8_t role = p[8];
        if (id == 0 || (role != SV_RAFT_VOTER && role != SV_RAFT_LEARNER) ||
            sv_raft_conf_role(&c, id) != 0) {
            return SV_RAFT_E_CORRUPT;
        }
        c.servers[c.n].id = id;
        c.servers[c.n].role = role;
        c.n++;
    }
    *out = c;
    return 0;
}

int sv_raft_conf_role(const struct sv_raft_conf *conf, sv_raft_id id)
{
    for (uint32_t i = 0; i < conf->n; i++) {
        if (conf->servers[i].id == id) {
            return conf->servers[i].role;
        }
    }
    return 0;
}

int sv_raft_msg_copy(struct sv_raft_msg *dst, const struct sv_raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    dst->data = NULL;
    if (src->n_entries > 0) {
        dst->entries = calloc(src->n_entries, sizeof(*dst->entries));
        if (dst->entries == NULL) {
            goto err;
        }
        for (uint32_t i = 0; i < src->n_entries; i++) {
            dst->entries[i] = src->entries[i];
            dst->entries[i].data = NULL;
            if (src->entries[i].len > 0) {
                dst->entries[i].data = malloc(src->entries[i].len);
                if (dst->entries[i].data == NULL) {
                    goto err;
                }
                memcpy(dst->entries[i].data, src->entries[i].data, src->entries[i].len);
            }
        }
    }
    if (src->len > 0) {
        dst->data = malloc(src->len);
        if (dst->data == NULL) {
            goto err;
        }
        memcpy(dst->data, src->data, src->len);
    }
    return 0;
err:
    sv_raft_msg_free(dst);
    return SV_RAFT_E_NOMEM;
}

void sv_raft_msg_free(struct sv_raft_msg *msg)
{
    if (msg->entries != NULL) {
        for (uint32_t i = 0; i < msg->n_entries; i++) {
            free(msg->entries[i].data);
        }
        free(msg->entries);
    }
    free(msg->data);
    msg->entries = NULL;
    msg->n_entries = 0;
    msg->data = NULL;
    msg->len = 0;
}

bool sv_raft_msg_may_send_early(const struct sv_raft_msg *msg)
{
    switch (msg->type) {
    case SV_RAFT_MSG_APPEND:
    case SV_RAFT_MSG_HEARTBEAT:
    case SV_RAFT_MSG_SNAPSHOT:
    case SV_RAFT_MSG_TIMEOUT_NOW:
        return true;
    default:
        return false;
    }
}

const char *sv_raft_msg_type_name(int type)
{
    static const char *const names[SV_RAFT_MSG_TYPE_MAX_] = {
        [SV_RAFT_MSG_APPEND] = "append",
        [SV_RAFT_MSG_APPEND_RESP] = "append-resp",
        [SV_RAFT_MSG_HEARTBEAT] = "heartbeat",
        [SV_RAFT_MSG_HEARTBEAT_RESP] = "heartbeat-resp",
        [SV_RAFT_MSG_PRE_VOTE] = "pre-vote",
        [SV_RAFT_MSG_PRE_VOTE_RESP] = "pre-vote-resp",
        [SV_RAFT_MSG_VOTE] = "vote",
        [SV_RAFT_MSG_VOTE_RESP] = "vote-resp",
        [SV_RAFT_MSG_SNAPSHOT] = "snapshot",
        [SV_RAFT_MSG_SNAPSHOT_RESP] = "snapshot-resp",
        [SV_RAFT_MSG_TIMEOUT_NOW] = "timeout-now",
        [SV_RAFT_MSG_READ_INDEX] = "read-index",
        [SV_RAFT_MSG_READ_INDEX_RESP] = "read-index-resp",
    };
    if (type <= 0 || type >= SV_RAFT_MSG_TYPE_MAX_) {
        return "unknown";
    }
    return names[type];
}

const char *sv_raft_strerror(int err)
{
    static const char *const msgs[] = {
        "not the leader",
        "leadership transfer in progress",
        "a configuration change is pending",
        "leader has not committed an entry of its term yet",
        "invalid configuration change",
        "too big",
        "invalid argument",
        "out of memory",
        "corrupt state",
    };
    _Static_assert(sizeof(msgs) / sizeof(msgs[0]) == SV_RAFT_E_LAST_ - SV_RAFT_E_NOT_LEADER,
                   "one message per error code");
    if (err == 0) {
        return "ok";
    }
    if (err < SV_RAFT_E_NOT_LEADER || err >= SV_RAFT_E_LAST_) {
        return "unknown";
    }
    return msgs[err - SV_RAFT_E_NOT_LEADER];
}

const char *sv_raft_role_name(enum sv_raft_role role)
{
    switch (role) {
    case SV_RAFT_FOLLOWER:
        return "follower";
    case SV_RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case SV_RAFT_CANDIDATE:
        return "candidate";
    case SV_RAFT_LEADER:
        return "leader";
    }
    return "unknown";
}

bool sv_raft_bugs_compiled(void)
{
#ifdef SV_RAFT_BUGS
    return true;
#else
    return false;
#endif
}

void sv_raft_options_default(struct sv_raft_options *opts, sv_raft_id id)
{
    memset(opts, 0, sizeof(*opts));
    opts->id = id;
    opts->election_ticks = 10;
    opts->heartbeat_ticks = 1;
    opts->max_inflight = 64;
    opts->max_msg_entries = 1024;
    opts->max_msg_bytes = 1u << 20;
    opts->snapshot_chunk_bytes = 256u << 10;
    opts->pre_vote = true;
    opts->check_quorum = true;
    opts->seed = id;
}
