/* sm-test: the shard state machine through its API: command encoding,
 * exactly-once sessions, conditional writes, chunked uploads, snapshot
 * images installed into another node's state machine, groups dropped, and
 * a standby site's SHIP batches of the primary's entries. */
#define _GNU_SOURCE
#include "proto.h"
#include "sm.h"
#include "sv_codec.h"

#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char root[256];
static uint64_t next_index = 1;

struct node {
    struct sv_sm *sm;
    struct sv_seg_store *seg;
};

/* While set, every segment write fails with ENOSPC, every segment fsync
 * with EIO (nodes opened with faults). */
static bool fail_writes, fail_fsyncs;

static int inject(void *arg, enum sv_seg_io io)
{
    (void)arg;
    if (fail_fsyncs && io == SV_SEG_IO_FSYNC)
        return -EIO;
    return fail_writes && io == SV_SEG_IO_WRITE ? -ENOSPC : 0;
}

static void node_open_opts(struct node *n, const char *name, const struct sv_seg_opts *opts)
{
    char dir[512], err[256] = "";
    snprintf(dir, sizeof dir, "%s/%s-meta", root, name);
    CHECK(sv_sm_open(dir, &n->sm, err, sizeof err) == 0);
    snprintf(dir, sizeof dir, "%s/%s-chunks", root, name);
    CHECK(sv_seg_open(dir, opts, &n->seg, err, sizeof err) == 0);
}

static void node_open(struct node *n, const char *name)
{
    node_open_opts(n, name, NULL);
}

static void node_close(struct node *n)
{
    sv_sm_close(n->sm);
    sv_seg_close(n->seg);
}

/* Apply cmd as the next entry of group without committing it; returns
 * sv_sm_apply's code, *res the domain result. */
static int stage_in(struct node *n, uint64_t group, const struct sv_cmd *cmd,
                    struct sv_sm_result *res)
{
    size_t len = sv_cmd_encoded_len(cmd);
    uint8_t *buf = malloc(len);
    sv_cmd_encode(cmd, buf);
    struct sv_raft_entry e = {.term = 1,
                              .index = next_index++,
                              .type = SV_RAFT_ENTRY_NORMAL,
                              .len = (uint32_t)len,
                              .data = buf};
    char err[256] = "";
    int rc = sv_sm_apply(n->sm, n->seg, group, &e, res, err, sizeof err);
    free(buf);
    return rc;
}

/* The same in group 1. */
static int stage_rc(struct node *n, const struct sv_cmd *cmd, struct sv_sm_result *res)
{
    return stage_in(n, 1, cmd, res);
}

static struct sv_sm_result stage_only(struct node *n, const struct sv_cmd *cmd)
{
    struct sv_sm_result res;
    CHECK(stage_rc(n, cmd, &res) == 0);
    return res;
}

/* Apply cmd as the next entry of group and commit; returns the domain result. */
static struct sv_sm_result apply_in(struct node *n, uint64_t group, const struct sv_cmd *cmd)
{
    struct sv_sm_result res;
    CHECK(stage_in(n, group, cmd, &res) == 0);
    char err[256] = "";
    CHECK(sv_sm_commit(n->sm, n->seg, err, sizeof err) == 0);
    return res;
}

/* The same in group 1. */
static struct sv_sm_result apply(struct node *n, const struct sv_cmd *cmd)
{
    return apply_in(n, 1, cmd);
}

static struct sv_cmd put_cmd(const char *key, uint64_t session, uint64_t seq, const char *data)
{
    struct sv_cmd c = {.type = SV_CMD_PUT,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)key,
                       .key_len = (uint16_t)strlen(key),
                       .upload = 1000 + next_index,
                       .session = session,
                       .seq = seq,
                       .size = strlen(data),
                       .data = (const uint8_t *)data,
                       .data_len = (uint32_t)strlen(data)};
    return c;
}

static bool version_of(struct node *n, const char *key, uint64_t *v)
{
    struct sv_obj o;
    int rc = sv_sm_get(n->sm, 1, 0, (const uint8_t *)"b", 1, (const uint8_t *)key, strlen(key), &o);
    *v = o.version;
    return rc == 0 && !o.deleted;
}

static void test_codec(void)
{
    struct sv_cmd c = put_cmd("key", 7, 9, "payload"), d;
    c.has_if_version = true;
    c.if_version = 4;
    size_t len = sv_cmd_encoded_len(&c);
    uint8_t *buf = malloc(len);
    sv_cmd_encode(&c, buf);
    CHECK(sv_cmd_decode(buf, len, &d) == 0);
    CHECK(d.type == SV_CMD_PUT && d.key_len == 3 && !memcmp(d.key, "key", 3));
    CHECK(d.session == 7 && d.seq == 9 && d.has_if_version && d.if_version == 4);
    CHECK(d.data_len == 7 && !memcmp(d.data, "payload", 7));
    for (size_t n = 0; n < len; n++)
        CHECK(sv_cmd_decode(buf, n, &d) == -EINVAL);
    buf[0] = 99; /* no such command */
    CHECK(sv_cmd_decode(buf, len, &d) == -EINVAL);
    free(buf);
}

static void test_sessions(struct node *n)
{
    struct sv_cmd c = put_cmd("s", 7, 1, "one");
    struct sv_sm_result r = apply(n, &c);
    CHECK(r.status == SV_ST_OK && r.version == 1);
    /* The same (session, seq) again, e.g. a client retry: the stored result,
     * nothing applied a second time. */
    c = put_cmd("s", 7, 1, "again");
    r = apply(n, &c);
    uint64_t v = 0;
    CHECK(r.status == SV_ST_OK && r.version == 1);
    CHECK(version_of(n, "s", &v) && v == 1);
    /* A new seq applies; a condition that does not hold is a conflict. */
    c = put_cmd("s", 7, 2, "two");
    CHECK(apply(n, &c).version == 2);
    c = put_cmd("s", 7, 3, "three");
    c.has_if_version = true;
    c.if_version = 0;
    struct sv_seg_stats before, after;
    sv_seg_stats(n->seg, &before);
    r = apply(n, &c);
    CHECK(r.status == SV_ST_VERSION_CONFLICT && r.version == 2);
    CHECK(version_of(n, "s", &v) && v == 2);
    /* The conflict is found before the chunk is stored: nothing written. */
    sv_seg_stats(n->seg, &after);
    CHECK(after.live_bytes == before.live_bytes && after.dead_bytes == before.dead_bytes);
    /* Delete, then versions keep growing. */
    struct sv_cmd del = {.type = SV_CMD_DELETE,
                         .bucket = (const uint8_t *)"b",
                         .bucket_len = 1,
                         .key = (const uint8_t *)"s",
                         .key_len = 1,
                         .session = 7,
                         .seq = 4};
    r = apply(n, &del);
    CHECK(r.status == SV_ST_OK && r.version == 2);
    CHECK(!version_of(n, "s", &v));
    c = put_cmd("s", 7, 5, "five");
    CHECK(apply(n, &c).version == 3);
    /* Seq 1 is still remembered; once a write says the client awaits
     * nothing below 6, results below are forgotten and seq 1 applies anew. */
    c = put_cmd("s", 7, 1, "retry");
    CHECK(apply(n, &c).version == 1);
    c = put_cmd("s", 7, 6, "six");
    c.ack_below = 6;
    CHECK(apply(n, &c).version == 4);
    c = put_cmd("s", 7, 1, "late");
    c.ack_below = 6;
    CHECK(apply(n, &c).version == 5);
}

/* Entries applied before one commit see each other's changes (objects,
 * sessions); readers see them only once committed, all at once. */
static void test_staged(struct node *n)
{
    uint64_t v = 0, applied = 0, before = 0;
    char err[256] = "";
    CHECK(sv_sm_applied(n->sm, 1, &before) == 0);
    struct sv_cmd c = put_cmd("st", 18, 1, "one");
    CHECK(stage_only(n, &c).version == 1);
    c = put_cmd("st", 18, 2, "two");
    CHECK(stage_only(n, &c).version == 2);
    c = put_cmd("st", 18, 1, "retry");
    struct sv_sm_result r = stage_only(n, &c);
    CHECK(r.status == SV_ST_OK && r.version == 1);
    struct sv_cmd del = {.type = SV_CMD_DELETE,
                         .bucket = (const uint8_t *)"b",
                         .bucket_len = 1,
                         .key = (const uint8_t *)"st",
                         .key_len = 2,
                         .session = 18,
                         .seq = 3};
    r = stage_only(n, &del);
    CHECK(r.status == SV_ST_OK && r.version == 2);
    r = stage_only(n, &del);
    CHECK(r.status == SV_ST_OK && r.version == 2); /* the retry, answered from the session */
    c = put_cmd("st", 18, 4, "four");
    c.has_if_version = true;
    c.if_version = 0; /* deleted in this batch: "must not exist" holds */
    CHECK(stage_only(n, &c).version == 3);
    CHECK(!version_of(n, "st", &v));
    CHECK(sv_sm_applied(n->sm, 1, &applied) == 0 && applied == before);
    CHECK(sv_sm_commit(n->sm, n->seg, err, sizeof err) == 0);
    CHECK(version_of(n, "st", &v) && v == 3);
    CHECK(sv_sm_applied(n->sm, 1, &applied) == 0 && applied == next_index - 1);
    CHECK(sv_sm_commit(n->sm, n->seg, err, sizeof err) == 0); /* nothing staged: nothing to do */
}

/* An entry that fails to apply (its chunk cannot be written) drops every
 * change staged since the last commit, its own and earlier entries': the
 * node applies them all again before it commits anything. */
static void test_staged_failure(void)
{
    struct node f;
    struct sv_seg_opts opts = {.fault = inject};
    node_open_opts(&f, "f", &opts);
    uint64_t v = 0, applied = 0, before = 0;
    char err[256] = "";
    CHECK(sv_sm_applied(f.sm, 1, &before) == 0);
    struct sv_cmd ok = put_cmd("ok", 0, 0, "fine");
    CHECK(stage_only(&f, &ok).status == SV_ST_OK);
    fail_writes = true;
    struct sv_cmd bad = put_cmd("bad", 0, 0, "no room");
    struct sv_sm_result r;
    CHECK(stage_rc(&f, &bad, &r) == -ENOSPC);
    fail_writes = false;
    CHECK(sv_sm_commit(f.sm, f.seg, err, sizeof err) == 0);
    CHECK(!version_of(&f, "ok", &v) && !version_of(&f, "bad", &v));
    CHECK(sv_sm_applied(f.sm, 1, &applied) == 0 && applied == before);
    node_close(&f);
}

static void test_upload(struct node *n)
{
    struct sv_cmd b = {.type = SV_CMD_BEGIN,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)"up",
                       .key_len = 2,
                       .upload = 77};
    CHECK(apply(n, &b).upload == 77);
    struct sv_cmd ch = b;
    ch.type = SV_CMD_CHUNK;
    ch.data = (const uint8_t *)"c0";
    ch.data_len = 2;
    CHECK(apply(n, &ch).status == SV_ST_OK);
    struct sv_cmd cm = b;
    cm.type = SV_CMD_COMMIT;
    cm.n_chunks = 2;
    cm.size = 4;
    cm.session = 8;
    cm.seq = 1;
    CHECK(apply(n, &cm).status == SV_ST_BAD_REQUEST); /* chunk 1 missing */
    ch.chunk = 1;
    CHECK(apply(n, &ch).status == SV_ST_OK);
    cm.seq = 2;
    struct sv_sm_result r = apply(n, &cm);
    CHECK(r.status == SV_ST_OK && r.version == 1);
    /* The upload is gone: a late chunk is refused and not stored. */
    ch.chunk = 2;
    CHECK(apply(n, &ch).status == SV_ST_NOT_FOUND);
}

/* Abandoned uploads: the leader finds an upload idle (sv_sm_expired_uploads
 * looks at the time of its last chunk) and proposes ABORT with that cutoff;
 * a chunk applied in between keeps the upload. */
static void test_abort(struct node *n)
{
    struct sv_cmd b = {.type = SV_CMD_BEGIN,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)"idle",
                       .key_len = 4,
                       .upload = 88,
                       .mtime_ms = 1000};
    CHECK(apply(n, &b).upload == 88);
    uint64_t ids[4];
    size_t k = 0;
    CHECK(sv_sm_expired_uploads(n->sm, 1, 1500, ids, 4, &k) == 0 && k == 1 && ids[0] == 88);
    struct sv_cmd ch = b;
    ch.type = SV_CMD_CHUNK;
    ch.data = (const uint8_t *)"c0";
    ch.data_len = 2;
    ch.mtime_ms = 2000; /* a chunk after the leader's scan */
    CHECK(apply(n, &ch).status == SV_ST_OK);
    CHECK(sv_sm_expired_uploads(n->sm, 1, 1500, ids, 4, &k) == 0 && k == 0);
    struct sv_cmd ab = {.type = SV_CMD_ABORT, .upload = 88, .mtime_ms = 1500};
    CHECK(apply(n, &ab).status == SV_ST_VERSION_CONFLICT); /* kept */
    ch.chunk = 1;
    CHECK(apply(n, &ch).status == SV_ST_OK);
    ab.mtime_ms = 2500; /* idle since 2000: removed with its chunks */
    CHECK(apply(n, &ab).status == SV_ST_OK);
    ch.chunk = 2;
    CHECK(apply(n, &ch).status == SV_ST_NOT_FOUND);
    CHECK(apply(n, &ab).status == SV_ST_NOT_FOUND);
}

/* An upload of more chunks than the segment store keeps unsynced
 * (SV_SEG_PENDING_MAX), stored and then aborted without a sync in between:
 * every put and delete goes through (the state machine syncs and retries),
 * instead of the entry failing on every replay. */
static void test_many_chunks(struct node *n)
{
    enum { CHUNKS = SV_SEG_PENDING_MAX + 100 };
    struct sv_cmd b = {.type = SV_CMD_BEGIN,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)"many",
                       .key_len = 4,
                       .upload = 99};
    CHECK(apply(n, &b).upload == 99);
    struct sv_cmd ch = b;
    ch.type = SV_CMD_CHUNK;
    ch.data = (const uint8_t *)"x";
    ch.data_len = 1;
    int bad = 0;
    for (uint32_t i = 0; i < CHUNKS; i++) {
        ch.chunk = i;
        bad += apply(n, &ch).status != SV_ST_OK;
    }
    CHECK(bad == 0);
    struct sv_cmd ab = {.type = SV_CMD_ABORT, .upload = 99};
    CHECK(apply(n, &ab).status == SV_ST_OK);
    uint8_t id[SV_SEG_ID_BYTES], buf[16];
    size_t len = 0;
    sv_chunk_id(1, 99, CHUNKS - 1, id);
    CHECK(sv_seg_get(n->seg, id, buf, sizeof buf, &len) == SV_SEG_E_NOT_FOUND);
}

struct names {
    char seen[8][16];
    int n;
};

static void list_cb(void *arg, const uint8_t *key, size_t klen, const struct sv_obj *o)
{
    struct names *nm = arg;
    (void)o;
    if (nm->n < 8 && klen < 16) {
        memcpy(nm->seen[nm->n], key, klen);
        nm->seen[nm->n++][klen] = 0;
    }
}

static void test_snapshot(struct node *a)
{
    struct node b;
    node_open(&b, "b");
    struct sv_cmd c = put_cmd("on-b-only", 0, 0, "x");
    apply(&b, &c);
    uint8_t *img = NULL;
    size_t len = 0;
    /* An image from a view holds the state when the view was made. */
    struct sv_sm_view *view = sv_sm_view(a->sm);
    CHECK(view != NULL);
    struct sv_cmd late = put_cmd("zz-after-the-view", 0, 0, "late");
    CHECK(apply(a, &late).status == SV_ST_OK);
    CHECK(sv_sm_snapshot(a->sm, view, 1, 1 << 20, &img, &len) == 0 && len > 0);
    sv_sm_view_release(a->sm, view);
    uint8_t *now = NULL;
    size_t now_len = 0;
    CHECK(sv_sm_snapshot(a->sm, NULL, 1, 1 << 20, &now, &now_len) == 0 && now_len > len);
    free(now);
    uint8_t *small = NULL;
    size_t small_len = 0;
    CHECK(sv_sm_snapshot(a->sm, NULL, 1, 16, &small, &small_len) == -EFBIG && small == NULL);
    /* A damaged image is refused whole and changes nothing. */
    CHECK(sv_sm_install(b.sm, b.seg, 1, 99, img, len - 1) == -EINVAL);
    uint64_t v = 0;
    CHECK(version_of(&b, "on-b-only", &v));
    CHECK(sv_sm_install(b.sm, b.seg, 1, 99, img, len) == 0);
    uint64_t applied = 0;
    CHECK(sv_sm_applied(b.sm, 1, &applied) == 0 && applied == 99);
    CHECK(!version_of(&b, "on-b-only", &v)); /* replaced, not merged */
    CHECK(version_of(&b, "s", &v) && v == 5);
    CHECK(version_of(&b, "up", &v) && v == 1);
    struct names nm = {0};
    bool more = true;
    CHECK(sv_sm_list(b.sm, 1, 0, (const uint8_t *)"b", 1, NULL, 0, NULL, 0, 10, &more, list_cb,
                     &nm) == 0);
    CHECK(!more && nm.n == 3 && !strcmp(nm.seen[0], "s") && !strcmp(nm.seen[1], "st") &&
          !strcmp(nm.seen[2], "up"));
    free(img);
    node_close(&b);
}

/* ---- dropping a group ---------------------------------------------------- */

enum {
    DROP_SMALL = 5, /* small objects small-0..4; small-0 then deleted */
    DROP_PARTS = 3, /* chunks of the committed upload "multi" */
    DROP_PART_BYTES = 3000,
    DROP_OPEN_PARTS = 2, /* chunks of the upload "open", never committed */
    DROP_SMALL_UPLOAD = 2000,
    DROP_MULTI = 77,
    DROP_OPEN = 78,
    DROP_STRAY = 79, /* a chunk in the segment store that no record names */
};

/* Bytes of chunk idx of upload up in group g: different in every group. */
static void drop_bytes(uint64_t g, uint64_t up, uint32_t idx, uint8_t *out, size_t len)
{
    uint64_t x = (g * 0x9E3779B97F4A7C15ull) ^ (up << 20) ^ idx ^ 0x5bd1e995;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (uint8_t)x;
    }
}

static size_t small_len(int i)
{
    return 100 + 37 * (size_t)i;
}

static struct sv_cmd drop_cmd(uint8_t type, const char *key, uint64_t upload)
{
    struct sv_cmd c = {.type = type,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)key,
                       .key_len = (uint16_t)strlen(key),
                       .upload = upload,
                       .mtime_ms = 1000};
    return c;
}

/* Give group g small objects (one deleted: a tombstone), an object of
 * DROP_PARTS chunks, an upload in progress, sessions, a map record and a
 * chunk no record names (as a drop cut short leaves). Upload ids are the
 * same in every group: only the group tells their chunks apart. */
static void fill_group(struct node *n, uint64_t g)
{
    uint8_t buf[DROP_PART_BYTES];
    char keys[DROP_SMALL][16];
    for (int i = 0; i < DROP_SMALL; i++) {
        snprintf(keys[i], sizeof keys[i], "small-%d", i);
        struct sv_cmd c = drop_cmd(SV_CMD_PUT, keys[i], DROP_SMALL_UPLOAD + (uint64_t)i);
        drop_bytes(g, c.upload, 0, buf, small_len(i));
        c.session = 300;
        c.seq = (uint64_t)i + 1;
        c.size = small_len(i);
        c.data = buf;
        c.data_len = (uint32_t)small_len(i);
        CHECK(apply_in(n, g, &c).status == SV_ST_OK);
    }
    struct sv_cmd del = drop_cmd(SV_CMD_DELETE, keys[0], 0);
    del.session = 300;
    del.seq = DROP_SMALL + 1;
    CHECK(apply_in(n, g, &del).status == SV_ST_OK);

    struct sv_cmd b = drop_cmd(SV_CMD_BEGIN, "multi", DROP_MULTI);
    CHECK(apply_in(n, g, &b).upload == DROP_MULTI);
    struct sv_cmd ch = drop_cmd(SV_CMD_CHUNK, "multi", DROP_MULTI);
    for (uint32_t i = 0; i < DROP_PARTS; i++) {
        drop_bytes(g, DROP_MULTI, i, buf, DROP_PART_BYTES);
        ch.chunk = i;
        ch.data = buf;
        ch.data_len = DROP_PART_BYTES;
        CHECK(apply_in(n, g, &ch).status == SV_ST_OK);
    }
    struct sv_cmd cm = drop_cmd(SV_CMD_COMMIT, "multi", DROP_MULTI);
    cm.n_chunks = DROP_PARTS;
    cm.size = DROP_PARTS * DROP_PART_BYTES;
    cm.session = 301;
    cm.seq = 1;
    CHECK(apply_in(n, g, &cm).status == SV_ST_OK);

    b = drop_cmd(SV_CMD_BEGIN, "open", DROP_OPEN);
    CHECK(apply_in(n, g, &b).upload == DROP_OPEN);
    ch = drop_cmd(SV_CMD_CHUNK, "open", DROP_OPEN);
    for (uint32_t i = 0; i < DROP_OPEN_PARTS; i++) {
        drop_bytes(g, DROP_OPEN, i, buf, 500);
        ch.chunk = i;
        ch.data = buf;
        ch.data_len = 500;
        CHECK(apply_in(n, g, &ch).status == SV_ST_OK);
    }

    struct sv_cmd map = {.type = SV_CMD_MAP, .data = (const uint8_t *)"a map", .data_len = 5};
    CHECK(apply_in(n, g, &map).status == SV_ST_OK);

    uint8_t id[SV_SEG_ID_BYTES];
    sv_chunk_id(g, DROP_STRAY, 0, id);
    drop_bytes(g, DROP_STRAY, 0, buf, 64);
    CHECK(sv_seg_put(n->seg, id, buf, 64) == 0);
    CHECK(sv_seg_sync(n->seg) == 0);
}

/* Chunks fill_group leaves in group g: 1 when id (up, idx) is one, its
 * length in *len. */
static bool drop_live_chunk(uint64_t up, uint32_t idx, size_t *len)
{
    if (up > DROP_SMALL_UPLOAD && up < DROP_SMALL_UPLOAD + DROP_SMALL && idx == 0)
        *len = small_len((int)(up - DROP_SMALL_UPLOAD));
    else if (up == DROP_MULTI && idx < DROP_PARTS)
        *len = DROP_PART_BYTES;
    else if (up == DROP_OPEN && idx < DROP_OPEN_PARTS)
        *len = 500;
    else if (up == DROP_STRAY && idx == 0)
        *len = 64;
    else
        return false;
    return true;
}

/* Every chunk id fill_group ever wrote in a group, live or not. */
static const struct {
    uint64_t up;
    uint32_t idx;
} drop_ids[] = {
    {DROP_SMALL_UPLOAD, 0},
    {DROP_SMALL_UPLOAD + 1, 0},
    {DROP_SMALL_UPLOAD + 2, 0},
    {DROP_SMALL_UPLOAD + 3, 0},
    {DROP_SMALL_UPLOAD + 4, 0},
    {DROP_MULTI, 0},
    {DROP_MULTI, 1},
    {DROP_MULTI, 2},
    {DROP_OPEN, 0},
    {DROP_OPEN, 1},
    {DROP_STRAY, 0},
};

/* Group g as fill_group left it: every object, record and chunk (byte-equal),
 * applied index `applied`. */
static void check_kept(struct node *n, uint64_t g, uint64_t applied)
{
    uint64_t a = 0;
    CHECK(sv_sm_applied(n->sm, g, &a) == 0 && a == applied);
    struct sv_obj o;
    for (int i = 0; i < DROP_SMALL; i++) {
        char key[16];
        snprintf(key, sizeof key, "small-%d", i);
        CHECK(sv_sm_get(n->sm, g, 0, (const uint8_t *)"b", 1, (const uint8_t *)key, strlen(key),
                        &o) == 0);
        CHECK(o.version == 1 && o.deleted == (i == 0));
        CHECK(i == 0 || (o.upload == DROP_SMALL_UPLOAD + (uint64_t)i && o.n_chunks == 1 &&
                         o.size == small_len(i)));
    }
    CHECK(sv_sm_get(n->sm, g, 0, (const uint8_t *)"b", 1, (const uint8_t *)"multi", 5, &o) == 0);
    CHECK(!o.deleted && o.upload == DROP_MULTI && o.n_chunks == DROP_PARTS);
    uint64_t ids[4];
    size_t k = 0;
    CHECK(sv_sm_expired_uploads(n->sm, g, UINT64_MAX, ids, 4, &k) == 0 && k == 1 &&
          ids[0] == DROP_OPEN);
    uint8_t *map = NULL;
    size_t mlen = 0;
    CHECK(sv_sm_map(n->sm, g, &map, &mlen) == 0 && mlen == 5 && !memcmp(map, "a map", 5));
    free(map);
    uint8_t id[SV_SEG_ID_BYTES], want[DROP_PART_BYTES], got[DROP_PART_BYTES];
    for (size_t i = 0; i < sizeof drop_ids / sizeof drop_ids[0]; i++) {
        size_t len = 0, wlen = 0;
        sv_chunk_id(g, drop_ids[i].up, drop_ids[i].idx, id);
        int rc = sv_seg_get(n->seg, id, got, sizeof got, &len);
        if (!drop_live_chunk(drop_ids[i].up, drop_ids[i].idx, &wlen)) {
            CHECK(rc == SV_SEG_E_NOT_FOUND); /* small-0's, deleted with it */
            continue;
        }
        drop_bytes(g, drop_ids[i].up, drop_ids[i].idx, want, wlen);
        CHECK(rc == 0 && len == wlen && !memcmp(got, want, wlen));
    }
}

/* Nothing of group g left: no record of any kind, no chunk. */
static void check_dropped(struct node *n, uint64_t g)
{
    uint64_t a = 1;
    CHECK(sv_sm_applied(n->sm, g, &a) == 0 && a == 0);
    struct sv_obj o;
    for (int i = 0; i < DROP_SMALL; i++) {
        char key[16];
        snprintf(key, sizeof key, "small-%d", i);
        CHECK(sv_sm_get(n->sm, g, 0, (const uint8_t *)"b", 1, (const uint8_t *)key, strlen(key),
                        &o) == -ENOENT); /* small-0's tombstone too */
    }
    CHECK(sv_sm_get(n->sm, g, 0, (const uint8_t *)"b", 1, (const uint8_t *)"multi", 5, &o) ==
          -ENOENT);
    uint64_t ids[4];
    size_t k = 9;
    CHECK(sv_sm_expired_uploads(n->sm, g, UINT64_MAX, ids, 4, &k) == 0 && k == 0);
    uint8_t *map = NULL;
    size_t mlen = 0;
    CHECK(sv_sm_map(n->sm, g, &map, &mlen) == -ENOENT);
    /* An image holds every record but the applied index: sessions included. */
    uint8_t *img = NULL;
    size_t len = 1;
    CHECK(sv_sm_snapshot(n->sm, NULL, g, 1 << 20, &img, &len) == 0 && len == 0);
    free(img);
    uint8_t id[SV_SEG_ID_BYTES], buf[DROP_PART_BYTES];
    for (size_t i = 0; i < sizeof drop_ids / sizeof drop_ids[0]; i++) {
        sv_chunk_id(g, drop_ids[i].up, drop_ids[i].idx, id);
        CHECK(sv_seg_get(n->seg, id, buf, sizeof buf, &len) == SV_SEG_E_NOT_FOUND);
    }
}

/* Groups 1, 2 and 3 filled alike; group 2 dropped, with a put of it and
 * one of group 3 staged but not committed. Live chunks fill_group leaves
 * per group: small-1..4, multi's, open's and the stray one. */
static void test_drop(void)
{
    enum { LIVE = DROP_SMALL - 1 + DROP_PARTS + DROP_OPEN_PARTS + 1 };
    struct node d;
    node_open(&d, "drop");
    uint64_t applied[4] = {0};
    for (uint64_t g = 1; g <= 3; g++) {
        fill_group(&d, g);
        CHECK(sv_sm_applied(d.sm, g, &applied[g]) == 0 && applied[g] > 0);
        check_kept(&d, g, applied[g]);
    }
    struct sv_seg_stats before, after;
    sv_seg_stats(d.seg, &before);
    CHECK(before.live_records == 3 * LIVE);

    /* Staged, not committed: group 2's goes with the drop, group 3's is
     * committed by it. */
    struct sv_cmd c = drop_cmd(SV_CMD_PUT, "staged", 0);
    c.data = (const uint8_t *)"late";
    c.data_len = 4;
    c.size = 4;
    struct sv_sm_result r;
    CHECK(stage_in(&d, 2, &c, &r) == 0 && r.status == SV_ST_OK);
    CHECK(stage_in(&d, 3, &c, &r) == 0 && r.status == SV_ST_OK);
    applied[3] = next_index - 1;

    char err[256] = "";
    CHECK(sv_sm_drop(d.sm, d.seg, 2, err, sizeof err) == 0);
    CHECK(err[0] == 0);
    check_dropped(&d, 2);
    struct sv_obj o;
    CHECK(sv_sm_get(d.sm, 2, 0, (const uint8_t *)"b", 1, (const uint8_t *)"staged", 6, &o) ==
          -ENOENT);
    CHECK(sv_sm_get(d.sm, 3, 0, (const uint8_t *)"b", 1, (const uint8_t *)"staged", 6, &o) == 0);
    uint8_t id[SV_SEG_ID_BYTES], buf[16];
    size_t len = 0;
    sv_chunk_id(3, o.upload, 0, id);
    CHECK(sv_seg_get(d.seg, id, buf, sizeof buf, &len) == 0 && len == 4 && !memcmp(buf, "late", 4));
    check_kept(&d, 1, applied[1]);
    check_kept(&d, 3, applied[3]);
    sv_seg_stats(d.seg, &after);
    CHECK(after.live_records == 2 * LIVE + 1); /* group 3's staged put */

    /* Again: nothing to do, nothing changed. */
    CHECK(sv_sm_drop(d.sm, d.seg, 2, err, sizeof err) == 0);
    check_dropped(&d, 2);
    check_kept(&d, 1, applied[1]);
    check_kept(&d, 3, applied[3]);
    struct sv_seg_stats again;
    sv_seg_stats(d.seg, &again);
    CHECK(again.live_records == after.live_records && again.live_bytes == after.live_bytes);

    /* A group this node never had. */
    CHECK(sv_sm_drop(d.sm, d.seg, 42, err, sizeof err) == 0);
    sv_seg_stats(d.seg, &again);
    CHECK(again.live_records == after.live_records && again.live_bytes == after.live_bytes);

    /* What the disk holds says the same. */
    node_close(&d);
    node_open(&d, "drop");
    check_dropped(&d, 2);
    check_kept(&d, 1, applied[1]);
    check_kept(&d, 3, applied[3]);
    sv_seg_stats(d.seg, &again);
    CHECK(again.live_records == after.live_records);
    CHECK(sv_sm_drop(d.sm, d.seg, 2, err, sizeof err) == 0);
    check_dropped(&d, 2);
    node_close(&d);
}

/* A drop stopped between its two steps (the segment store's fsync fails,
 * as when the power goes then): the records are gone, every chunk is still
 * there (orphans nobody claims, never records over missing chunks), and so
 * it stays across a restart; a second drop removes the chunks. */
static void test_drop_cut(void)
{
    struct node e;
    struct sv_seg_opts opts = {.fault = inject};
    node_open_opts(&e, "drop-cut", &opts);
    uint64_t applied[4] = {0};
    for (uint64_t g = 2; g <= 3; g++) {
        fill_group(&e, g);
        CHECK(sv_sm_applied(e.sm, g, &applied[g]) == 0);
    }
    /* A repaired chunk of another group, not synced yet: the drop's first
     * segment sync has a segment to fsync. */
    uint8_t id[SV_SEG_ID_BYTES], buf[DROP_PART_BYTES];
    sv_chunk_id(9, 1, 0, id);
    CHECK(sv_seg_put(e.seg, id, "repaired", 8) == 0);
    char err[256] = "";
    fail_fsyncs = true;
    CHECK(sv_sm_drop(e.sm, e.seg, 2, err, sizeof err) == -EIO);
    fail_fsyncs = false;
    CHECK(strstr(err, "group 2") != NULL);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t a = 1;
        struct sv_obj o;
        CHECK(sv_sm_applied(e.sm, 2, &a) == 0 && a == 0);
        CHECK(sv_sm_get(e.sm, 2, 0, (const uint8_t *)"b", 1, (const uint8_t *)"multi", 5, &o) ==
              -ENOENT);
        for (size_t i = 0; i < sizeof drop_ids / sizeof drop_ids[0]; i++) {
            size_t len = 0, wlen = 0;
            if (!drop_live_chunk(drop_ids[i].up, drop_ids[i].idx, &wlen))
                continue;
            sv_chunk_id(2, drop_ids[i].up, drop_ids[i].idx, id);
            CHECK(sv_seg_get(e.seg, id, buf, sizeof buf, &len) == 0 && len == wlen);
        }
        check_kept(&e, 3, applied[3]);
        node_close(&e);
        node_open_opts(&e, "drop-cut", &opts);
    }
    CHECK(sv_sm_drop(e.sm, e.seg, 2, err, sizeof err) == 0);
    check_dropped(&e, 2);
    check_kept(&e, 3, applied[3]);
    node_close(&e);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

/* ---- runner: the tests from sessions on share node_a, in this order ---- */

static struct node node_a;

static void t_sessions(void)
{
    test_sessions(&node_a);
}

static void t_staged(void)
{
    test_staged(&node_a);
}

static void t_upload(void)
{
    test_upload(&node_a);
}

static void t_abort(void)
{
    test_abort(&node_a);
}

static void t_many_chunks(void)
{
    test_many_chunks(&node_a);
}

static void t_snapshot(void)
{
    test_snapshot(&node_a);
}

static int set_up(void)
{
    snprintf(root, sizeof root, "%s/sm-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    node_open(&node_a, "a");
    return 0;
}

static void tear_down(void)
{
    node_close(&node_a);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A map record blob as map.h encodes it, as far as the state machine
 * reads it: the magic, then the epoch (the rest is the map's business). */
static size_t map_blob(uint8_t *b, const char *magic, uint64_t epoch)
{
    memcpy(b, magic, 6);
    sv_put64(b + 6, epoch);
    memset(b + 14, 0xab, 10);
    return 24;
}

static struct sv_sm_result map_cmd(struct node *n, bool commit, const char *magic, uint64_t epoch,
                                   bool cas, uint64_t expect)
{
    uint8_t blob[24];
    struct sv_cmd c = {.type = SV_CMD_MAP,
                       .data = blob,
                       .data_len = (uint32_t)map_blob(blob, magic, epoch),
                       .has_if_version = cas,
                       .if_version = expect};
    if (commit)
        return apply_in(n, 0, &c);
    struct sv_sm_result res;
    CHECK(stage_in(n, 0, &c, &res) == 0);
    return res;
}

/* The recorded epoch (0 without a record). */
static uint64_t map_epoch(struct node *n)
{
    uint8_t *rec = NULL;
    size_t len = 0;
    if (sv_sm_map(n->sm, 0, &rec, &len))
        return 0;
    uint64_t e = len >= 14 ? sv_get64(rec + 6) : 0;
    free(rec);
    return e;
}

/* MAP with if_version is a compare-and-set on the recorded epoch: a change
 * made from an older map is refused (VERSION_CONFLICT, the record's epoch
 * in version) and changes nothing; changes staged in one job see each other;
 * the first record of earlier versions (svmap1) counts as epoch 1. */
static void t_map_record(void)
{
    struct node *n = &node_a;
    CHECK(map_cmd(n, true, "svmap1", 0, false, 0).status == SV_ST_OK);
    CHECK(map_cmd(n, true, "svmap2", 2, true, 1).status == SV_ST_OK);
    CHECK_EQ_U64(map_epoch(n), 2);
    struct sv_sm_result r = map_cmd(n, true, "svmap2", 9, true, 1);
    CHECK(r.status == SV_ST_VERSION_CONFLICT);
    CHECK_EQ_U64(r.version, 2);
    CHECK_EQ_U64(map_epoch(n), 2);
    /* Two changes made from epoch 2 in one job: the first lands, the second
     * sees it staged and is refused. */
    CHECK(map_cmd(n, false, "svmap2", 3, true, 2).status == SV_ST_OK);
    r = map_cmd(n, false, "svmap2", 3, true, 2);
    CHECK(r.status == SV_ST_VERSION_CONFLICT);
    CHECK_EQ_U64(r.version, 3);
    char err[256] = "";
    CHECK(sv_sm_commit(n->sm, n->seg, err, sizeof err) == 0);
    CHECK_EQ_U64(map_epoch(n), 3);
    /* The scheduler's encoding (svmap3) carries its epoch the same way: a
     * change made from it lands (it was read as epoch 1 once, and every
     * change after the first scheduler map was refused). */
    CHECK(map_cmd(n, true, "svmap3", 4, true, 3).status == SV_ST_OK);
    CHECK_EQ_U64(map_epoch(n), 4);
    CHECK(map_cmd(n, true, "svmap3", 5, true, 4).status == SV_ST_OK);
    CHECK_EQ_U64(map_epoch(n), 5);
    /* Without if_version (the bootstrap record) it is stored as it is. */
    CHECK(map_cmd(n, true, "svmap2", 1, false, 0).status == SV_ST_OK);
    CHECK_EQ_U64(map_epoch(n), 1);
}

/* ---- the chunks records claim, the copy marker ----------------------------- */

enum { CLAIM_GROUP = 9, CLAIMS_MAX = 16 };

struct claims {
    struct sv_sm_chunk c[CLAIMS_MAX];
    uint32_t n;
};

static void claim_cb(void *arg, const struct sv_sm_chunk *c)
{
    struct claims *cl = arg;
    CHECK(cl->n < CLAIMS_MAX);
    cl->c[cl->n++] = *c;
}

/* Every chunk group claims, in pages of limit. */
static void claims_of(struct node *n, const struct sv_sm_view *view, uint64_t group, uint32_t limit,
                      struct claims *cl)
{
    struct sv_sm_cursor cur = {0};
    bool more = true;
    memset(cl, 0, sizeof *cl);
    for (int pages = 0; more; pages++) {
        uint32_t before = cl->n;
        CHECK(pages < 32);
        CHECK(sv_sm_chunks(n->sm, view, group, &cur, limit, &more, claim_cb, cl) == 0);
        CHECK(cl->n - before <= limit);
    }
    /* Past the end it stays there. */
    uint32_t end = cl->n;
    CHECK(sv_sm_chunks(n->sm, view, group, &cur, limit, &more, claim_cb, cl) == 0 && !more);
    CHECK_EQ_U64(cl->n, end);
}

/* Whether cl holds chunk index of (key, upload), with the binding a copy
 * of it was sealed under. */
static bool claimed(const struct claims *cl, const char *key, uint64_t upload, uint32_t index,
                    uint64_t bytes)
{
    uint8_t id[SV_SEG_ID_BYTES], oid[16];
    sv_chunk_id(CLAIM_GROUP, upload, index, id);
    sv_object_id(0, (const uint8_t *)"b", 1, (const uint8_t *)key, strlen(key), oid);
    for (uint32_t i = 0; i < cl->n; i++) {
        const struct sv_sm_chunk *c = &cl->c[i];
        if (!memcmp(c->id, id, sizeof id))
            return c->ad.tenant_id == 0 && !memcmp(c->ad.object_id, oid, 16) &&
                   c->ad.chunk_index == index && c->ad.version == upload && c->bytes == bytes;
    }
    return false;
}

/* An upload of key in CLAIM_GROUP with chunks chunks[0..n) received. */
static struct sv_cmd claim_upload(struct node *n, const char *key, uint64_t upload,
                                  const uint32_t *chunks, uint32_t count)
{
    struct sv_cmd b = {.type = SV_CMD_BEGIN,
                       .bucket = (const uint8_t *)"b",
                       .bucket_len = 1,
                       .key = (const uint8_t *)key,
                       .key_len = (uint16_t)strlen(key),
                       .upload = upload};
    CHECK(apply_in(n, CLAIM_GROUP, &b).upload == upload);
    struct sv_cmd ch = b;
    ch.type = SV_CMD_CHUNK;
    ch.data = (const uint8_t *)"part";
    ch.data_len = 4;
    for (uint32_t i = 0; i < count; i++) {
        ch.chunk = chunks[i];
        CHECK(apply_in(n, CLAIM_GROUP, &ch).status == SV_ST_OK);
    }
    return b;
}

/* sv_sm_chunks: a live small object's chunk, a committed upload's chunks
 * 0..n-1, an open upload's received chunks (bitmap, not 0..n), and nothing
 * of a deleted object, an empty one or another group; any page size gives
 * the same set; a view keeps what was claimed when it was made. */
static void test_claims(void)
{
    struct node *n = &node_a;
    struct sv_cmd p = put_cmd("small", 0, 0, "0123456789");
    uint64_t small_up = p.upload;
    CHECK(apply_in(n, CLAIM_GROUP, &p).status == SV_ST_OK);
    struct sv_cmd e = put_cmd("empty", 0, 0, "");
    CHECK(apply_in(n, CLAIM_GROUP, &e).status == SV_ST_OK);
    struct sv_cmd gone = put_cmd("gone", 31, 1, "bye");
    CHECK(apply_in(n, CLAIM_GROUP, &gone).status == SV_ST_OK);
    struct sv_cmd other = put_cmd("other-group", 0, 0, "x");
    CHECK(apply_in(n, CLAIM_GROUP + 1, &other).status == SV_ST_OK);
    const uint32_t all[] = {0, 1, 2}, some[] = {0, 2};
    struct sv_cmd cm = claim_upload(n, "multi", 500, all, 3);
    cm.type = SV_CMD_COMMIT;
    cm.n_chunks = 3;
    cm.size = 9000;
    cm.session = 32;
    cm.seq = 1;
    CHECK(apply_in(n, CLAIM_GROUP, &cm).status == SV_ST_OK);
    claim_upload(n, "open", 600, some, 2);
    struct sv_sm_view *view = sv_sm_view(n->sm);
    CHECK(view != NULL);
    struct sv_cmd del = {.type = SV_CMD_DELETE,
                         .bucket = (const uint8_t *)"b",
                         .bucket_len = 1,
                         .key = (const uint8_t *)"gone",
                         .key_len = 4,
                         .session = 31,
                         .seq = 2};
    CHECK(apply_in(n, CLAIM_GROUP, &del).status == SV_ST_OK);
    for (uint32_t limit = 1; limit <= 7; limit += 3) {
        struct claims cl;
        claims_of(n, NULL, CLAIM_GROUP, limit, &cl);
        CHECK_EQ_U64(cl.n, 6);
        CHECK(claimed(&cl, "small", small_up, 0, 10));
        for (uint32_t i = 0; i < 3; i++)
            CHECK(claimed(&cl, "multi", 500, i, 3000));
        CHECK(claimed(&cl, "open", 600, 0, 0) && claimed(&cl, "open", 600, 2, 0));
        CHECK(!claimed(&cl, "open", 600, 1, 0));
    }
    struct claims then;
    claims_of(n, view, CLAIM_GROUP, 2, &then);
    sv_sm_view_release(n->sm, view);
    CHECK_EQ_U64(then.n, 7);
    CHECK(claimed(&then, "gone", gone.upload, 0, 3));
    struct sv_sm_cursor cur = {0};
    bool more = true;
    CHECK(sv_sm_chunks(n->sm, NULL, CLAIM_GROUP, &cur, 0, &more, claim_cb, &then) == -EINVAL);
}

static bool pending_at(struct node *n, uint64_t group, uint64_t *since)
{
    bool pending = false;
    CHECK(sv_sm_copy_pending(n->sm, NULL, group, &pending, since) == 0);
    return pending;
}

/* The copy marker: set, survives a reopen, cleared only if still the one
 * set at that index; sv_sm_install sets it (at the image's index) in its
 * write and no image carries it; sv_sm_drop removes it. */
static void test_copy_marker(void)
{
    struct node b;
    node_open(&b, "marker");
    uint64_t since = 1;
    CHECK(!pending_at(&b, 3, &since) && since == 0);
    CHECK(sv_sm_copy_mark(b.sm, 3, 0) == 0);
    node_close(&b);
    node_open(&b, "marker");
    CHECK(pending_at(&b, 3, &since) && since == 0);
    CHECK(!pending_at(&b, 4, NULL));
    /* A snapshot installed meanwhile: its marker stays. */
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(sv_sm_snapshot(node_a.sm, NULL, CLAIM_GROUP, 1 << 20, &img, &len) == 0);
    CHECK(sv_sm_install(b.sm, b.seg, CLAIM_GROUP, 40, img, len) == 0);
    free(img);
    CHECK(pending_at(&b, CLAIM_GROUP, &since) && since == 40);
    CHECK(sv_sm_copy_done(b.sm, CLAIM_GROUP, 0) == -ESTALE);
    CHECK(pending_at(&b, CLAIM_GROUP, NULL));
    /* What the install brought is claimed there too (no chunk of it is). */
    struct claims cl;
    claims_of(&b, NULL, CLAIM_GROUP, 4, &cl);
    CHECK_EQ_U64(cl.n, 6);
    uint8_t buf[64];
    size_t blen;
    CHECK(sv_seg_get(b.seg, cl.c[0].id, buf, sizeof buf, &blen) == SV_SEG_E_NOT_FOUND);
    /* No image carries a marker: one made here has none to install. */
    CHECK(sv_sm_snapshot(b.sm, NULL, CLAIM_GROUP, 1 << 20, &img, &len) == 0);
    uint32_t keys = 0;
    for (size_t off = 0; off < len; keys++) {
        uint32_t kl = sv_get32(img + off);
        CHECK(kl > 10 || img[off + 4 + 9] != 'c');
        off += 4 + kl;
        off += 4 + sv_get32(img + off);
    }
    CHECK(keys >= 5); /* the objects, the upload, the sessions */
    free(img);
    CHECK(sv_sm_copy_done(b.sm, CLAIM_GROUP, 40) == 0);
    CHECK(!pending_at(&b, CLAIM_GROUP, NULL));
    CHECK(sv_sm_copy_done(b.sm, CLAIM_GROUP, 40) == 0); /* already clear */
    /* Dropped with the group. */
    char err[256] = "";
    CHECK(sv_sm_drop(b.sm, b.seg, 3, err, sizeof err) == 0);
    CHECK(!pending_at(&b, 3, NULL));
    node_close(&b);
    node_open(&b, "marker");
    CHECK(!pending_at(&b, 3, NULL) && !pending_at(&b, CLAIM_GROUP, NULL));
    node_close(&b);
}

/* ---- SHIP: a standby site's shard applies the primary's entries ----------- */

enum {
    SHIP_GROUP = 12,
    SHIP_LOG_MAX = 16,
    SHIP_TERM = 3,
    SHIP_MULTI = 900, /* the upload of the multi-chunk object */
    SHIP_PART_BYTES = 3000,
    SHIP_LAST_BYTES = 1000, /* its last chunk, shorter */
    SHIP_READ_MAX = 4096,
};

/* The primary's log of SHIP_GROUP: e[i] is the entry at index i (data
 * malloc'd), as the primary applied it. */
struct ship_log {
    struct sv_raft_entry e[SHIP_LOG_MAX + 1];
    uint64_t last;
};

/* Apply e in group of n and commit; returns the domain result. */
static struct sv_sm_result apply_entry(struct node *n, uint64_t group,
                                       const struct sv_raft_entry *e)
{
    struct sv_sm_result res;
    char err[256] = "";
    CHECK(sv_sm_apply(n->sm, n->seg, group, e, &res, err, sizeof err) == 0);
    CHECK(sv_sm_commit(n->sm, n->seg, err, sizeof err) == 0);
    return res;
}

/* Append entry (type, c encoded when c is not NULL) to log at its next
 * index; unless only_log, the primary p applies it there first. */
static struct sv_sm_result log_append(struct node *p, struct ship_log *log, uint8_t type,
                                      const struct sv_cmd *c, bool only_log)
{
    ASSERT(log->last < SHIP_LOG_MAX);
    struct sv_raft_entry *e = &log->e[++log->last];
    *e = (struct sv_raft_entry){.term = SHIP_TERM, .index = log->last, .type = type};
    if (c) {
        e->len = (uint32_t)sv_cmd_encoded_len(c);
        e->data = malloc(e->len);
        ASSERT(e->data);
        sv_cmd_encode(c, e->data);
    }
    struct sv_sm_result res = {0};
    if (!only_log)
        res = apply_entry(p, SHIP_GROUP, e);
    return res;
}

static void log_free(struct ship_log *log)
{
    for (uint64_t i = 1; i <= log->last; i++)
        free(log->e[i].data);
}

/* Entries from..to of log as a SHIP command's data, malloc'd (*len bytes). */
static uint8_t *ship_data(const struct ship_log *log, uint64_t from, uint64_t to, size_t *len)
{
    size_t n = 1;
    for (uint64_t i = from; i <= to; i++)
        n += SV_SHIP_ENTRY_HEAD + log->e[i].len;
    uint8_t *d = malloc(n);
    ASSERT(d);
    *len = 0;
    for (uint64_t i = from; i <= to; i++)
        *len += sv_ship_put(d + *len, &log->e[i]);
    return d;
}

static struct sv_cmd ship_cmd(uint64_t after, uint64_t commit, uint64_t closed_ms, uint32_t n,
                              const uint8_t *data, size_t len)
{
    struct sv_cmd c = {.type = SV_CMD_SHIP,
                       .upload = after,
                       .size = commit,
                       .mtime_ms = closed_ms,
                       .seq = UINT64_MAX, /* a release past every stamp: all runs at once */
                       .n_chunks = n,
                       .data = data,
                       .data_len = (uint32_t)len};
    return c;
}

/* The standby's own log index. */
static uint64_t standby_index;

/* Command c as the standby's next entry (its data malloc'd). */
static struct sv_raft_entry standby_entry(const struct sv_cmd *c)
{
    size_t len = sv_cmd_encoded_len(c);
    uint8_t *buf = malloc(len);
    ASSERT(buf);
    sv_cmd_encode(c, buf);
    return (struct sv_raft_entry){.term = 1,
                                  .index = ++standby_index,
                                  .type = SV_RAFT_ENTRY_NORMAL,
                                  .len = (uint32_t)len,
                                  .data = buf};
}

/* Apply SHIP command c as the standby's next entry and commit. */
static struct sv_sm_result standby_apply(struct node *s, const struct sv_cmd *c)
{
    struct sv_raft_entry e = standby_entry(c);
    struct sv_sm_result res = apply_entry(s, SHIP_GROUP, &e);
    free(e.data);
    return res;
}

/* Ship entries from..to of log (n_chunks: their count) after `after`. */
static struct sv_sm_result ship(struct node *s, const struct ship_log *log, uint64_t after,
                                uint64_t from, uint64_t to, uint64_t commit, uint64_t closed_ms)
{
    size_t len = 0;
    uint8_t *d = ship_data(log, from, to, &len);
    struct sv_cmd c = ship_cmd(after, commit, closed_ms, (uint32_t)(to + 1 - from), d, len);
    struct sv_sm_result r = standby_apply(s, &c);
    free(d);
    return r;
}

/* The shipping state is (cursor, closed_ms, commit). */
static void check_ship_state(struct node *s, uint64_t cursor, uint64_t closed_ms, uint64_t commit,
                             int at)
{
    struct sv_sm_ship st;
    memset(&st, 0xee, sizeof st);
    CHECK_MSG(sv_sm_ship_state(s->sm, SHIP_GROUP, &st) == 0, "line %d: ship state", at);
    CHECK_MSG(st.cursor == cursor && st.closed_ms == closed_ms && st.commit == commit,
              "line %d: ship state (%" PRIu64 ", %" PRIu64 ", %" PRIu64 "), expected (%" PRIu64
              ", %" PRIu64 ", %" PRIu64 ")",
              at, st.cursor, st.closed_ms, st.commit, cursor, closed_ms, commit);
}
#define CHECK_SHIP_STATE(s, cursor, closed, commit)                                                \
    check_ship_state((s), (cursor), (closed), (commit), __LINE__)

static int ship_get(struct node *n, const char *key, struct sv_obj *o)
{
    memset(o, 0, sizeof *o);
    return sv_sm_get(n->sm, SHIP_GROUP, 0, (const uint8_t *)"b", 1, (const uint8_t *)key,
                     strlen(key), o);
}

/* Chunk idx of upload in SHIP_GROUP of n into buf: its length, or -1 when absent. */
static long ship_chunk(struct node *n, uint64_t upload, uint32_t idx, uint8_t *buf)
{
    uint8_t id[SV_SEG_ID_BYTES];
    size_t len = 0;
    sv_chunk_id(SHIP_GROUP, upload, idx, id);
    return sv_seg_get(n->seg, id, buf, SHIP_READ_MAX, &len) == 0 ? (long)len : -1;
}

/* key's record is the same on p and s (tombstone or not), and so are the
 * bytes of every chunk of a live one. */
static void check_same_object(struct node *p, struct node *s, const char *key)
{
    struct sv_obj a, b;
    int rca = ship_get(p, key, &a), rcb = ship_get(s, key, &b);
    CHECK_MSG(rca == 0 && rcb == 0, "%s: get %d on the primary, %d on the standby", key, rca, rcb);
    CHECK_MSG(a.version == b.version && a.size == b.size && a.mtime_ms == b.mtime_ms &&
                  a.upload == b.upload && a.n_chunks == b.n_chunks && a.deleted == b.deleted &&
                  !memcmp(a.sha256, b.sha256, 32),
              "%s: the standby's record differs: version %" PRIu64 "/%" PRIu64 ", size %" PRIu64
              "/%" PRIu64 ", mtime %" PRIu64 "/%" PRIu64 ", deleted %d/%d",
              key, a.version, b.version, a.size, b.size, a.mtime_ms, b.mtime_ms, a.deleted,
              b.deleted);
    if (rca || a.deleted)
        return;
    static uint8_t x[SHIP_READ_MAX], y[SHIP_READ_MAX];
    for (uint32_t i = 0; i < a.n_chunks; i++) {
        long lx = ship_chunk(p, a.upload, i, x), ly = ship_chunk(s, b.upload, i, y);
        CHECK_MSG(lx >= 0 && lx == ly && !memcmp(x, y, (size_t)lx),
                  "%s: chunk %" PRIu32 ": %ld bytes on the primary, %ld on the standby", key, i, lx,
                  ly);
    }
}

/* Everything the standby holds of SHIP_GROUP but its applied index (the
 * state machine's image: objects, uploads, sessions, the shipping state),
 * and its segment store's counts. */
struct standby_image {
    uint8_t *img;
    size_t len;
    struct sv_seg_stats seg;
};

static void image_take(struct node *s, struct standby_image *im)
{
    CHECK(sv_sm_snapshot(s->sm, NULL, SHIP_GROUP, 1 << 20, &im->img, &im->len) == 0);
    sv_seg_stats(s->seg, &im->seg);
}

/* s holds exactly what im recorded; im freed. */
static void check_unchanged(struct node *s, struct standby_image *im, int at)
{
    struct standby_image now;
    image_take(s, &now);
    CHECK_MSG(now.len == im->len && !memcmp(now.img, im->img, im->len),
              "line %d: the standby's records changed", at);
    CHECK_MSG(now.seg.live_records == im->seg.live_records &&
                  now.seg.live_bytes == im->seg.live_bytes,
              "line %d: the standby's chunks changed", at);
    free(now.img);
    free(im->img);
}
#define CHECK_UNCHANGED(s, im) check_unchanged((s), (im), __LINE__)

static void ship_part(uint32_t idx, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(idx * 61 + i * 7 + (i >> 8));
}

static struct sv_cmd put_at_index(const char *key, const char *data, uint64_t mtime_ms, uint8_t sha)
{
    struct sv_cmd c = drop_cmd(SV_CMD_PUT, key, 0); /* upload 0: the entry's index */
    c.data = (const uint8_t *)data;
    c.data_len = (uint32_t)strlen(data);
    c.size = c.data_len;
    c.mtime_ms = mtime_ms;
    memset(c.sha256, sha, 32);
    return c;
}

/* The primary's log: 1 put keep, 2 put gone, 3 put over, 4 delete gone,
 * 5 put over again, 6 NOOP, 7..11 the 3-chunk upload multi, 12 put late.
 * Puts of keep, over and late carry no session: applied twice, they would
 * make a new version. */
static void build_primary(struct node *p, struct ship_log *log)
{
    struct sv_cmd c = put_at_index("keep", "kept bytes", 1001, 0x11);
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).version == 1);
    c = put_at_index("gone", "doomed", 1002, 0x22);
    c.session = 40;
    c.seq = 1;
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).version == 1);
    c = put_at_index("over", "first", 1003, 0x33);
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).version == 1);
    c = drop_cmd(SV_CMD_DELETE, "gone", 0);
    c.mtime_ms = 1004;
    c.session = 40;
    c.seq = 2;
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).status == SV_ST_OK);
    c = put_at_index("over", "second version", 1005, 0x55);
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).version == 2);
    log_append(p, log, SV_RAFT_ENTRY_NOOP, NULL, false);
    c = drop_cmd(SV_CMD_BEGIN, "multi", SHIP_MULTI);
    c.mtime_ms = 1007;
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).upload == SHIP_MULTI);
    static uint8_t part[SHIP_PART_BYTES];
    for (uint32_t i = 0; i < 3; i++) {
        c = drop_cmd(SV_CMD_CHUNK, "multi", SHIP_MULTI);
        c.chunk = i;
        c.data_len = i < 2 ? SHIP_PART_BYTES : SHIP_LAST_BYTES;
        ship_part(i, part, c.data_len);
        c.data = part;
        c.mtime_ms = 1008 + i;
        CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).status == SV_ST_OK);
    }
    c = drop_cmd(SV_CMD_COMMIT, "multi", SHIP_MULTI);
    c.n_chunks = 3;
    c.size = 2 * SHIP_PART_BYTES + SHIP_LAST_BYTES;
    c.mtime_ms = 1011;
    c.session = 41;
    c.seq = 1;
    memset(c.sha256, 0xbb, 32);
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).version == 1);
    c = put_at_index("late", "after", 1012, 0xcc);
    CHECK(log_append(p, log, SV_RAFT_ENTRY_NORMAL, &c, false).version == 1);
    CHECK_EQ_U64(log->last, 12);
}

/* The standby's objects once everything up to 12 is shipped: as the
 * primary's, and as the log says. */
static void check_standby_complete(struct node *p, struct node *s)
{
    static const char *keys[] = {"keep", "gone", "over", "multi", "late"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        check_same_object(p, s, keys[i]);
    struct sv_obj o;
    CHECK(ship_get(s, "keep", &o) == 0 && !o.deleted && o.version == 1 && o.upload == 1 &&
          o.mtime_ms == 1001 && o.size == 10 && o.sha256[0] == 0x11);
    CHECK(ship_get(s, "gone", &o) == 0 && o.deleted && o.version == 1 && o.mtime_ms == 1004);
    CHECK(ship_get(s, "over", &o) == 0 && !o.deleted && o.version == 2 && o.upload == 5 &&
          o.size == 14 && o.sha256[31] == 0x55);
    CHECK(ship_get(s, "multi", &o) == 0 && !o.deleted && o.version == 1 && o.upload == SHIP_MULTI &&
          o.n_chunks == 3 && o.size == 2 * SHIP_PART_BYTES + 1000 && o.mtime_ms == 1011 &&
          o.sha256[0] == 0xbb);
    static uint8_t got[SHIP_READ_MAX], want[SHIP_READ_MAX];
    CHECK(ship_chunk(s, 5, 0, got) == 14 && !memcmp(got, "second version", 14));
    CHECK(ship_chunk(s, 3, 0, got) == -1); /* over's first version: released, as on the primary */
    CHECK(ship_chunk(p, 3, 0, got) == -1);
    CHECK(ship_chunk(s, 2, 0, got) == -1); /* gone's */
    for (uint32_t i = 0; i < 3; i++) {
        size_t len = i < 2 ? SHIP_PART_BYTES : SHIP_LAST_BYTES;
        ship_part(i, want, len);
        CHECK(ship_chunk(s, SHIP_MULTI, i, got) == (long)len && !memcmp(got, want, len));
    }
    /* The upload is gone with its commit; listing sees the four live keys. */
    uint64_t ids[4];
    size_t k = 9;
    CHECK(sv_sm_expired_uploads(s->sm, SHIP_GROUP, UINT64_MAX, ids, 4, &k) == 0 && k == 0);
    struct names nm = {0};
    bool more = true;
    CHECK(sv_sm_list(s->sm, SHIP_GROUP, 0, (const uint8_t *)"b", 1, NULL, 0, NULL, 0, 10, &more,
                     list_cb, &nm) == 0);
    CHECK(!more && nm.n == 4 && !strcmp(nm.seen[0], "keep") && !strcmp(nm.seen[1], "late") &&
          !strcmp(nm.seen[2], "multi") && !strcmp(nm.seen[3], "over"));
}

/* sv_ship_put / sv_ship_next: round trip, the end, and every truncation. */
static void test_ship_codec(void)
{
    uint8_t buf[256], d0[] = "entry zero";
    struct sv_raft_entry in[2] = {
        {.term = 7, .index = 41, .type = SV_RAFT_ENTRY_NORMAL, .len = 10, .data = d0},
        {.term = 8, .index = 42, .type = SV_RAFT_ENTRY_NOOP, .len = 0, .data = NULL},
    };
    size_t n0 = sv_ship_put(buf, &in[0]);
    CHECK_EQ_U64(n0, SV_SHIP_ENTRY_HEAD + 10);
    size_t len = n0 + sv_ship_put(buf + n0, &in[1]);
    CHECK_EQ_U64(len, 2 * SV_SHIP_ENTRY_HEAD + 10);
    struct sv_raft_entry e;
    size_t off = 0;
    CHECK_RC(sv_ship_next(buf, len, &off, &e), 1);
    CHECK(e.index == 41 && e.term == 7 && e.type == SV_RAFT_ENTRY_NORMAL && e.len == 10 &&
          e.data == buf + SV_SHIP_ENTRY_HEAD && !memcmp(e.data, d0, 10) && off == n0);
    CHECK_RC(sv_ship_next(buf, len, &off, &e), 1);
    CHECK(e.index == 42 && e.term == 8 && e.type == SV_RAFT_ENTRY_NOOP && e.len == 0 && off == len);
    CHECK_RC(sv_ship_next(buf, len, &off, &e), 0);
    CHECK_RC(sv_ship_next(buf, len, &off, &e), 0); /* the end stays the end */
    off = 0;
    CHECK_RC(sv_ship_next(buf, 0, &off, &e), 0); /* empty data: no entry */
    CHECK_RC(sv_ship_next(NULL, 0, &off, &e), 0);
    off = len + 1;
    CHECK_RC(sv_ship_next(buf, len, &off, &e), -EINVAL); /* past the end */
    /* Every prefix: whole entries then the end, or -EINVAL for a cut one. */
    for (size_t cut = 0; cut <= len; cut++) {
        int rc, entries = 0;
        off = 0;
        while ((rc = sv_ship_next(buf, cut, &off, &e)) == 1)
            entries++;
        bool whole = cut == 0 || cut == n0 || cut == len;
        CHECK_MSG(whole ? rc == 0 : rc == -EINVAL, "cut at %zu: %d", cut, rc);
        CHECK_MSG(entries == (cut >= len  ? 2
                              : cut >= n0 ? 1
                                          : 0),
                  "cut at %zu: %d entries", cut, entries);
        CHECK_MSG(off <= cut, "cut at %zu: off %zu", cut, off);
    }
    /* A length that runs past the data, up to UINT32_MAX (no overflow). */
    uint32_t lens[] = {11, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        sv_put32(buf + 17, lens[i]);
        off = 0;
        CHECK_RC(sv_ship_next(buf, n0, &off, &e), -EINVAL);
    }
}

/* A standby applies the primary's entries in SHIP batches at its own
 * indices: the same objects, exactly once, the cursor and closed time as
 * sm.h says, gaps and malformed batches refused whole, all of it durable. */
static void test_ship(void)
{
    struct node p, s;
    struct ship_log log = {0};
    struct sv_sm_result r;
    struct standby_image im;
    struct sv_obj o;
    uint8_t chunk[SHIP_READ_MAX];
    node_open(&p, "ship-primary");
    node_open(&s, "ship-standby");
    build_primary(&p, &log);

    /* Nothing shipped yet: zeros. */
    CHECK_SHIP_STATE(&s, 0, 0, 0);

    /* 1..4: short of the primary's commit index 12, so no closed time. The
     * state is the staged one until committed. */
    size_t len = 0;
    uint8_t *d = ship_data(&log, 1, 4, &len);
    struct sv_cmd c = ship_cmd(0, 12, 5000, 4, d, len);
    struct sv_raft_entry e = standby_entry(&c);
    char err[256] = "";
    CHECK(sv_sm_apply(s.sm, s.seg, SHIP_GROUP, &e, &r, err, sizeof err) == 0);
    CHECK(r.status == SV_ST_OK && r.version == 4);
    CHECK_SHIP_STATE(&s, 0, 0, 0);
    CHECK(ship_get(&s, "keep", &o) == -ENOENT);
    CHECK(sv_sm_commit(s.sm, s.seg, err, sizeof err) == 0);
    free(e.data);
    free(d);
    CHECK_SHIP_STATE(&s, 4, 0, 12);
    CHECK(ship_get(&s, "keep", &o) == 0 && o.version == 1 && o.upload == 1);
    CHECK(ship_get(&s, "gone", &o) == 0 && o.deleted && o.version == 1);
    CHECK(ship_get(&s, "over", &o) == 0 && o.version == 1 && o.upload == 3);
    CHECK(ship_chunk(&s, 3, 0, chunk) == 5 && !memcmp(chunk, "first", 5));
    uint64_t applied = 0;
    CHECK(sv_sm_applied(s.sm, SHIP_GROUP, &applied) == 0 && applied == standby_index);

    /* A gap: 6..8 after 5, the cursor at 4. Refused whole, nothing applied
     * (6 is a NOOP, 7 would open the upload, 8 store a chunk). */
    image_take(&s, &im);
    r = ship(&s, &log, 5, 6, 8, 12, 5500);
    CHECK(r.status == SV_ST_VERSION_CONFLICT && r.version == 4);
    CHECK_UNCHANGED(&s, &im);
    CHECK_SHIP_STATE(&s, 4, 0, 12);
    CHECK(ship_chunk(&s, SHIP_MULTI, 0, chunk) == -1);

    /* An overlap: 3..7 after 2. Only 5..7 apply: over's second put once
     * (a third apply of a put of it would make version 3), keep and gone as
     * they were. */
    r = ship(&s, &log, 2, 3, 7, 12, 6000);
    CHECK(r.status == SV_ST_OK && r.version == 7);
    CHECK_SHIP_STATE(&s, 7, 0, 12);
    CHECK(ship_get(&s, "over", &o) == 0 && o.version == 2 && o.upload == 5 && o.mtime_ms == 1005);
    CHECK(ship_get(&s, "keep", &o) == 0 && o.version == 1);
    CHECK(ship_get(&s, "gone", &o) == 0 && o.deleted && o.version == 1);
    uint64_t ids[4];
    size_t k = 0;
    CHECK(sv_sm_expired_uploads(s.sm, SHIP_GROUP, UINT64_MAX, ids, 4, &k) == 0 && k == 1 &&
          ids[0] == SHIP_MULTI);

    /* The same batch again (a proposal repeated by a new leader): OK at the
     * cursor, nothing changed. */
    image_take(&s, &im);
    r = ship(&s, &log, 2, 3, 7, 12, 6000);
    CHECK(r.status == SV_ST_OK && r.version == 7);
    CHECK_UNCHANGED(&s, &im);
    CHECK(sv_sm_applied(s.sm, SHIP_GROUP, &applied) == 0 && applied == standby_index);

    /* Malformed batches: BAD_REQUEST, nothing changed. */
    image_take(&s, &im);
    d = ship_data(&log, 8, 9, &len);
    c = ship_cmd(7, 12, 6500, 2, d, len - 1); /* the last entry cut short */
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    c = ship_cmd(7, 12, 6500, 3, d, len); /* more entries said than given */
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    c = ship_cmd(7, 12, 6500, 1, d, len); /* fewer */
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    c = ship_cmd(6, 12, 6500, 2, d, len); /* 8..9 said to follow 6 */
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    uint8_t *d2 = malloc(len + 10);
    ASSERT(d2);
    memcpy(d2, d, len);
    memset(d2 + len, 0, 10);
    c = ship_cmd(7, 12, 6500, 2, d2, len + 10); /* a cut header after them */
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    free(d2);
    free(d);
    struct ship_log holes = {0}; /* 8 then 10 */
    holes.e[1] = log.e[8];
    holes.e[2] = log.e[10];
    d = ship_data(&holes, 1, 2, &len);
    c = ship_cmd(7, 12, 6500, 2, d, len);
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    c.n_chunks = 1; /* the count of the entries that do follow: still not a batch */
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    free(d);
    CHECK_UNCHANGED(&s, &im);
    CHECK_SHIP_STATE(&s, 7, 0, 12);
    CHECK(ship_chunk(&s, SHIP_MULTI, 0, chunk) == -1);

    /* The rest: the cursor reaches the commit index, the closed time is the
     * batch's. */
    r = ship(&s, &log, 7, 8, 12, 12, 7000);
    CHECK(r.status == SV_ST_OK && r.version == 12);
    CHECK_SHIP_STATE(&s, 12, 7000, 12);
    check_standby_complete(&p, &s);

    /* Empty batches (nothing new; dr.c proposes none, the command allows
     * them): a commit index past the cursor does not close, an older closed
     * time does not go back, the commit index is the largest seen. */
    r = standby_apply(
        &s, &(struct sv_cmd){.type = SV_CMD_SHIP, .upload = 12, .size = 14, .mtime_ms = 8000});
    CHECK(r.status == SV_ST_OK && r.version == 12);
    CHECK_SHIP_STATE(&s, 12, 7000, 14);
    standby_apply(
        &s, &(struct sv_cmd){.type = SV_CMD_SHIP, .upload = 12, .size = 12, .mtime_ms = 6500});
    CHECK_SHIP_STATE(&s, 12, 7000, 14);
    standby_apply(
        &s, &(struct sv_cmd){.type = SV_CMD_SHIP, .upload = 12, .size = 12, .mtime_ms = 9000});
    CHECK_SHIP_STATE(&s, 12, 9000, 14);

    /* Durable: the same after a reopen, and what was shipped is not applied
     * again. */
    node_close(&s);
    node_open(&s, "ship-standby");
    CHECK_SHIP_STATE(&s, 12, 9000, 14);
    CHECK(sv_sm_applied(s.sm, SHIP_GROUP, &applied) == 0 && applied == standby_index);
    check_standby_complete(&p, &s);
    image_take(&s, &im);
    r = ship(&s, &log, 7, 8, 12, 12, 9000);
    CHECK(r.status == SV_ST_OK && r.version == 12);
    CHECK_UNCHANGED(&s, &im);

    /* A shipped MAP or SHIP (a shard's log never holds one) moves the
     * cursor and changes nothing else. */
    struct sv_cmd map = {.type = SV_CMD_MAP, .data = (const uint8_t *)"a map", .data_len = 5};
    CHECK(log_append(&p, &log, SV_RAFT_ENTRY_NORMAL, &map, false).status == SV_ST_OK);
    struct ship_log inner = {0};
    struct sv_cmd put = put_at_index("nested", "inner", 1015, 0xdd);
    log_append(NULL, &inner, SV_RAFT_ENTRY_NORMAL, &put, true);
    inner.e[1].index = 13; /* it follows the cursor: applied, it would put "nested" */
    d = ship_data(&inner, 1, 1, &len);
    c = ship_cmd(12, 14, 0, 1, d, len);
    log_append(NULL, &log, SV_RAFT_ENTRY_NORMAL, &c, true);
    free(d);
    log_free(&inner);
    r = ship(&s, &log, 12, 13, 14, 14, 10000);
    CHECK(r.status == SV_ST_OK && r.version == 14);
    CHECK_SHIP_STATE(&s, 14, 10000, 14);
    uint8_t *m = NULL;
    size_t mlen = 0;
    CHECK(sv_sm_map(s.sm, SHIP_GROUP, &m, &mlen) == -ENOENT);
    CHECK(ship_get(&s, "nested", &o) == -ENOENT);
    check_standby_complete(&p, &s);

    log_free(&log);
    node_close(&p);
    node_close(&s);
}

/* The held entries ('h' records) in s's image of SHIP_GROUP. */
static size_t held_records(struct node *s)
{
    uint8_t *img;
    size_t len, n = 0;
    CHECK(sv_sm_snapshot(s->sm, NULL, SHIP_GROUP, 1 << 20, &img, &len) == 0);
    for (size_t off = 0; off + 4 <= len;) {
        uint32_t kl = sv_get32(img + off);
        n += kl == 10 + 8 && img[off + 4 + 9] == 'h';
        off += 4 + kl;
        off += 4 + sv_get32(img + off);
    }
    free(img);
    return n;
}

static void check_held(struct node *s, uint64_t applied, uint64_t release, uint64_t held,
                       uint64_t cut_epoch, int at)
{
    struct sv_sm_ship st;
    CHECK_MSG(sv_sm_ship_state(s->sm, SHIP_GROUP, &st) == 0, "line %d", at);
    CHECK_MSG(st.applied == applied && st.release_ms == release && st.held == held &&
                  st.cut_epoch == cut_epoch && held_records(s) == held &&
                  (held == 0) == (st.held_bytes == 0),
              "line %d: (applied %" PRIu64 ", release %" PRIu64 ", held %" PRIu64
              "/%zu, cut %" PRIu64 ")",
              at, st.applied, st.release_ms, st.held, held_records(s), st.cut_epoch);
}
#define CHECK_HELD(s, applied, release, held, cut)                                                 \
    check_held((s), (applied), (release), (held), (cut), __LINE__)

/* The consistent cut (dr.c): an entry runs once the release passed its
 * stamp and nothing before it is held; a release runs what it passes of
 * the held ones, in order; a cut runs those below it and drops the rest,
 * once. The primary's log stamps its entries 1001..1012 (6: a NOOP). */
static void test_ship_cut(void)
{
    struct node p, s;
    struct ship_log log = {0};
    struct sv_obj o;
    uint8_t chunk[SHIP_READ_MAX];
    node_open(&p, "cut-primary");
    node_open(&s, "cut-standby");
    build_primary(&p, &log);
    size_t len = 0;
    uint8_t *d = ship_data(&log, 1, 12, &len);
    struct sv_cmd c = ship_cmd(0, 12, 9000, 12, d, len);
    c.session = 4;

    /* Release 1004: 1..3 run; 4 (stamped 1004) is held and all after it. */
    c.seq = 1004;
    CHECK(standby_apply(&s, &c).status == SV_ST_OK);
    free(d);
    CHECK_SHIP_STATE(&s, 12, 9000, 12);
    CHECK_HELD(&s, 3, 1004, 9, 0);
    CHECK(ship_get(&s, "keep", &o) == 0 && o.version == 1);
    CHECK(ship_get(&s, "gone", &o) == 0 && !o.deleted);
    CHECK(ship_get(&s, "over", &o) == 0 && o.version == 1);
    CHECK(ship_get(&s, "late", &o) == -ENOENT);
    /* The held chunks' bytes went to the segment store at once (no upload
     * claims them yet); their records keep the commands without them. */
    static uint8_t want[SHIP_READ_MAX];
    for (uint32_t i = 0; i < 3; i++) {
        size_t len_i = i < 2 ? SHIP_PART_BYTES : SHIP_LAST_BYTES;
        ship_part(i, want, len_i);
        CHECK(ship_chunk(&s, SHIP_MULTI, i, chunk) == (long)len_i && !memcmp(chunk, want, len_i));
    }
    struct sv_sm_ship hs;
    CHECK(sv_sm_ship_state(s.sm, SHIP_GROUP, &hs) == 0 && hs.held_bytes < 2000);

    /* An older release changes nothing; 1008 runs 4..7 (the NOOP has no
     * stamp: it goes with its neighbours), 8 (1008) stays held. */
    struct standby_image im;
    image_take(&s, &im);
    struct sv_cmd rel = {.type = SV_CMD_SHIP, .upload = 12, .session = 4, .seq = 1003};
    CHECK(standby_apply(&s, &rel).status == SV_ST_OK);
    CHECK_UNCHANGED(&s, &im);
    /* Applied as svd applies (pipeline.c): inside a segment batch, which
     * writes a put's bytes at its end. The held entries' bytes are the
     * database iterator's: each chunk is written before the next step. */
    rel.seq = 1008;
    struct sv_raft_entry re = standby_entry(&rel);
    struct sv_sm_result rr;
    char err[256] = "";
    sv_seg_batch_begin(s.seg);
    CHECK(sv_sm_apply(s.sm, s.seg, SHIP_GROUP, &re, &rr, err, sizeof err) == 0);
    CHECK(sv_seg_batch_end(s.seg) == 0);
    CHECK(sv_sm_commit(s.sm, s.seg, err, sizeof err) == 0);
    free(re.data);
    CHECK(rr.status == SV_ST_OK);
    CHECK_HELD(&s, 7, 1008, 5, 0);
    CHECK(ship_get(&s, "gone", &o) == 0 && o.deleted);
    CHECK(ship_get(&s, "over", &o) == 0 && o.version == 2);
    CHECK(ship_chunk(&s, 5, 0, chunk) == 14 && !memcmp(chunk, "second version", 14));
    uint64_t ids[4];
    size_t k = 0;
    CHECK(sv_sm_expired_uploads(s.sm, SHIP_GROUP, UINT64_MAX, ids, 4, &k) == 0 && k == 1 &&
          ids[0] == SHIP_MULTI);

    /* Durable. */
    node_close(&s);
    node_open(&s, "cut-standby");
    CHECK_HELD(&s, 7, 1008, 5, 0);

    /* A batch while entries are held: held too, whatever its stamps. */
    struct sv_cmd map = {.type = SV_CMD_MAP, .data = (const uint8_t *)"a map", .data_len = 5};
    log_append(&p, &log, SV_RAFT_ENTRY_NORMAL, &map, false);
    d = ship_data(&log, 13, 13, &len);
    c = ship_cmd(12, 13, 9500, 1, d, len);
    c.session = 4;
    c.seq = 1008;
    CHECK(standby_apply(&s, &c).status == SV_ST_OK);
    free(d);
    CHECK_SHIP_STATE(&s, 13, 9500, 13);
    CHECK_HELD(&s, 7, 1008, 6, 0);

    /* A replica that gets the shard by snapshot now has the held records
     * but not the held chunks' bytes: when they run, it sets the copy
     * marker (the result says so), to fetch them from a replica. */
    struct node s2;
    node_open(&s2, "cut-standby-2");
    uint8_t *img;
    size_t ilen;
    CHECK(sv_sm_snapshot(s.sm, NULL, SHIP_GROUP, 1 << 20, &img, &ilen) == 0);
    CHECK(sv_sm_install(s2.sm, s2.seg, SHIP_GROUP, standby_index, img, ilen) == 0);
    free(img);
    bool pending = true;
    uint64_t since = 0; /* the install's marker, cleared as a copy pass would */
    CHECK(sv_sm_copy_pending(s2.sm, NULL, SHIP_GROUP, &pending, &since) == 0);
    CHECK(sv_sm_copy_done(s2.sm, SHIP_GROUP, since) == 0);
    CHECK(sv_sm_copy_pending(s2.sm, NULL, SHIP_GROUP, &pending, NULL) == 0 && !pending);

    /* The cut at 1010 (site epoch 5): 8 and 9 run, 10..13 are dropped; the
     * upload keeps the two chunks it had, late never comes. */
    struct sv_cmd cut = {.type = SV_CMD_SHIP, .upload = 13, .session = 5, .chunk = 1, .seq = 1010};
    struct sv_sm_result r = standby_apply(&s2, &cut);
    CHECK(r.status == SV_ST_OK && r.version == 9 && r.upload == 1);
    CHECK(sv_sm_copy_pending(s2.sm, NULL, SHIP_GROUP, &pending, NULL) == 0 && pending);
    CHECK(ship_chunk(&s2, SHIP_MULTI, 0, chunk) == -1);
    node_close(&s2);
    standby_index--; /* the same entry on s */
    r = standby_apply(&s, &cut);
    CHECK(r.status == SV_ST_OK && r.version == 9 && r.upload == 0);
    CHECK_HELD(&s, 9, 1010, 0, 5);
    CHECK_SHIP_STATE(&s, 13, 9500, 13);
    CHECK(ship_chunk(&s, SHIP_MULTI, 1, chunk) == SHIP_PART_BYTES);
    CHECK(ship_chunk(&s, SHIP_MULTI, 2, chunk) == -1);
    CHECK(ship_get(&s, "multi", &o) == -ENOENT);
    CHECK(ship_get(&s, "late", &o) == -ENOENT);
    CHECK(ship_get(&s, "over", &o) == 0 && o.version == 2);

    /* Once per epoch: again, or an older one, changes nothing. */
    image_take(&s, &im);
    CHECK(standby_apply(&s, &cut).status == SV_ST_OK);
    cut.session = 4;
    cut.seq = UINT64_MAX;
    CHECK(standby_apply(&s, &cut).status == SV_ST_OK);
    CHECK_UNCHANGED(&s, &im);
    /* A cut with entries is malformed. */
    d = ship_data(&log, 13, 13, &len);
    c = ship_cmd(12, 13, 9500, 1, d, len);
    c.chunk = 1;
    CHECK(standby_apply(&s, &c).status == SV_ST_BAD_REQUEST);
    free(d);

    log_free(&log);
    node_close(&p);
    node_close(&s);
}

/* ---- SEED: a standby re-seeded from an image of the primary's ------------- */

static struct sv_sm_result seed_apply(struct node *s, uint64_t at, uint64_t epoch, uint32_t piece,
                                      bool last, const uint8_t *d, size_t len)
{
    struct sv_cmd c = {.type = SV_CMD_SEED,
                       .session = epoch,
                       .upload = at,
                       .size = at,
                       .mtime_ms = 7000,
                       .chunk = piece,
                       .n_chunks = last,
                       .data = d,
                       .data_len = (uint32_t)len};
    return apply_in(s, SHIP_GROUP, &c);
}

static void check_seed_state(struct node *s, uint64_t cursor, uint64_t epoch, uint64_t seed,
                             uint64_t next, int at)
{
    struct sv_sm_ship st;
    CHECK_MSG(sv_sm_ship_state(s->sm, SHIP_GROUP, &st) == 0, "line %d", at);
    CHECK_MSG(st.cursor == cursor && st.epoch == epoch && st.seed == seed && st.seed_next == next,
              "line %d: (cursor %" PRIu64 ", epoch %" PRIu64 ", seed %" PRIu64 ", next %" PRIu64
              ")",
              at, st.cursor, st.epoch, st.seed, st.seed_next);
}
#define CHECK_SEED_STATE(s, cursor, epoch, seed, next)                                             \
    check_seed_state((s), (cursor), (epoch), (seed), (next), __LINE__)

static void count_diverged(void *arg, const uint8_t *okey, size_t klen, const struct sv_obj *o)
{
    (void)okey, (void)klen, (void)o;
    ++*(int *)arg;
}

static void test_seed(void)
{
    struct node p, s;
    struct sv_obj o;
    struct sv_sm_result r;
    uint8_t chunk[SHIP_READ_MAX];
    char err[256] = "";
    node_open(&p, "seed-primary");
    node_open(&s, "seed-standby");
    /* The primary: three objects written at site epoch 3. */
    const char *keys[] = {"a", "b", "c"};
    uint64_t index_a = next_index;
    for (int i = 0; i < 3; i++) {
        struct sv_cmd c = put_cmd(keys[i], 0, 0, keys[i]);
        c.epoch = 3;
        CHECK(apply_in(&p, SHIP_GROUP, &c).status == SV_ST_OK);
    }
    CHECK(ship_get(&p, "a", &o) == 0 && o.index == index_a && o.epoch == 3);
    /* The standby holds an object of another log, wiped with its chunk. */
    struct sv_cmd old = put_cmd("old", 0, 0, "stale");
    CHECK(apply_in(&s, SHIP_GROUP, &old).status == SV_ST_OK);
    CHECK(ship_chunk(&s, old.upload, 0, chunk) == 5);
    /* ... and an open upload with one chunk received, wiped the same way. */
    struct sv_cmd ub = {.type = SV_CMD_BEGIN,
                        .bucket = (const uint8_t *)"b",
                        .bucket_len = 1,
                        .key = (const uint8_t *)"up",
                        .key_len = 2,
                        .upload = 9077};
    CHECK(apply_in(&s, SHIP_GROUP, &ub).status == SV_ST_OK);
    struct sv_cmd uc = ub;
    uc.type = SV_CMD_CHUNK;
    uc.data = (const uint8_t *)"u0";
    uc.data_len = 2;
    CHECK(apply_in(&s, SHIP_GROUP, &uc).status == SV_ST_OK);
    CHECK(ship_chunk(&s, 9077, 0, chunk) == 2);

    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(sv_sm_snapshot(p.sm, NULL, SHIP_GROUP, 1 << 20, &img, &len) == 0);
    ASSERT(img && len > 0);
    size_t first = 8 + sv_get32(img) + sv_get32(img + 4 + sv_get32(img)); /* one record */
    CHECK(first < len);

    /* Piece 0 wipes and opens the seed: no cursor yet. */
    r = seed_apply(&s, 40, 3, 0, false, img, first);
    CHECK(r.status == SV_ST_OK && r.version == 0);
    CHECK(sv_sm_release(s.sm, s.seg, err, sizeof err) == 0);
    CHECK(ship_get(&s, "old", &o) == -ENOENT);
    CHECK(ship_chunk(&s, old.upload, 0, chunk) == -1);
    CHECK(ship_chunk(&s, 9077, 0, chunk) == -1);
    uc.chunk = 1; /* the upload is gone: its next chunk is refused */
    CHECK(apply_in(&s, SHIP_GROUP, &uc).status == SV_ST_NOT_FOUND);
    CHECK_SEED_STATE(&s, 0, 3, 40, 1);
    /* No SHIP during a seed; a piece out of order is refused. */
    struct sv_cmd ship = ship_cmd(0, 50, 0, 0, NULL, 0);
    ship.session = 3;
    CHECK(apply_in(&s, SHIP_GROUP, &ship).status == SV_ST_VERSION_CONFLICT);
    CHECK(seed_apply(&s, 40, 3, 2, true, img + first, len - first).status ==
          SV_ST_VERSION_CONFLICT);
    CHECK(seed_apply(&s, 41, 3, 1, true, img + first, len - first).status ==
          SV_ST_VERSION_CONFLICT);
    CHECK_SEED_STATE(&s, 0, 3, 40, 1);
    /* A piece that is not this group's records: refused, nothing changed. */
    uint8_t bad[64] = {0};
    sv_put32(bad, 10);
    memcpy(bad + 4, "S\0\0\0\0\0\0\0\x01o", 10);
    CHECK(seed_apply(&s, 40, 3, 1, true, bad, 18).status == SV_ST_BAD_REQUEST);
    CHECK_SEED_STATE(&s, 0, 3, 40, 1);
    /* The last piece: the cursor at the image's index, the copy marker set. */
    r = seed_apply(&s, 40, 3, 1, true, img + first, len - first);
    CHECK(r.status == SV_ST_OK && r.version == 40);
    CHECK_SEED_STATE(&s, 40, 3, 0, 0);
    for (int i = 0; i < 3; i++) {
        struct sv_obj po;
        CHECK(ship_get(&p, keys[i], &po) == 0 && ship_get(&s, keys[i], &o) == 0);
        CHECK(o.version == po.version && o.index == po.index && o.epoch == 3 &&
              o.upload == po.upload && !memcmp(o.sha256, po.sha256, 32));
    }
    bool pending = false;
    CHECK(sv_sm_copy_pending(s.sm, NULL, SHIP_GROUP, &pending, NULL) == 0 && pending);
    /* Both hold the same objects: the same digest, at the primary's index. */
    uint8_t dp[32], ds[32];
    uint64_t pa = 0, sc = 0;
    CHECK(sv_sm_digest(p.sm, NULL, SHIP_GROUP, dp, &pa, NULL) == 0);
    CHECK(sv_sm_digest(s.sm, NULL, SHIP_GROUP, ds, NULL, &sc) == 0);
    CHECK(!memcmp(dp, ds, 32) && sc == 40 && pa == index_a + 2);
    struct sv_cmd extra = put_cmd("d", 0, 0, "d");
    CHECK(apply_in(&p, SHIP_GROUP, &extra).status == SV_ST_OK);
    CHECK(sv_sm_digest(p.sm, NULL, SHIP_GROUP, dp, NULL, NULL) == 0 && memcmp(dp, ds, 32));
    /* Another log's batch (another site epoch) is refused after the seed. */
    ship.session = 4;
    ship.upload = 40;
    CHECK(apply_in(&s, SHIP_GROUP, &ship).status == SV_ST_VERSION_CONFLICT);

    /* Divergence: the primary's records of epoch 3 above a's index. */
    int n = 0;
    bool more = true;
    CHECK(sv_sm_diverged(p.sm, SHIP_GROUP, 3, index_a, NULL, 0, 10, &more, count_diverged, &n) ==
          0);
    CHECK(n == 2 && !more);
    n = 0;
    CHECK(sv_sm_diverged(p.sm, SHIP_GROUP, 3, index_a, NULL, 0, 1, &more, count_diverged, &n) == 0);
    CHECK(n == 1 && more);
    n = 0;
    CHECK(sv_sm_diverged(p.sm, SHIP_GROUP, 2, 0, NULL, 0, 10, &more, count_diverged, &n) == 0);
    CHECK(n == 0);
    free(img);
    node_close(&p);
    node_close(&s);
}

static const struct sv_test tests[] = {
    {"codec", test_codec},
    {"sessions", t_sessions},
    {"staged", t_staged},
    {"staged failure", test_staged_failure},
    {"upload", t_upload},
    {"abort", t_abort},
    {"many chunks", t_many_chunks},
    {"snapshot", t_snapshot},
    {"drop", test_drop},
    {"drop cut", test_drop_cut},
    {"map record", t_map_record},
    {"claimed chunks", test_claims},
    {"copy marker", test_copy_marker},
    {"ship codec", test_ship_codec},
    {"ship", test_ship},
    {"ship-cut", test_ship_cut},
    {"seed", test_seed},
};

const struct sv_test_suite sv_test_suite = {
    .name = "sm-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .ordered = true,
};
