/* sm-test: the shard state machine through its API: command encoding,
 * exactly-once sessions, conditional writes, chunked uploads, and snapshot
 * images installed into another node's state machine. */
#define _GNU_SOURCE
#include "proto.h"
#include "sm.h"

#include "check.h"

#include <errno.h>
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

/* While set, every segment write fails with ENOSPC (nodes opened with faults). */
static bool fail_writes;

static int inject(void *arg, enum sv_seg_io io)
{
    (void)arg;
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

/* Apply cmd as the next entry of group 1 without committing it; returns the
 * domain result. */
/* Apply cmd as the next entry of group 1 without committing it; returns
 * sv_sm_apply's code, *res the domain result. */
static int stage_rc(struct node *n, const struct sv_cmd *cmd, struct sv_sm_result *res)
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
    int rc = sv_sm_apply(n->sm, n->seg, 1, &e, res, err, sizeof err);
    free(buf);
    return rc;
}

static struct sv_sm_result stage_only(struct node *n, const struct sv_cmd *cmd)
{
    struct sv_sm_result res;
    CHECK(stage_rc(n, cmd, &res) == 0);
    return res;
}

/* Apply cmd as the next entry of group 1 and commit; returns the domain result. */
static struct sv_sm_result apply(struct node *n, const struct sv_cmd *cmd)
{
    struct sv_sm_result res = stage_only(n, cmd);
    char err[256] = "";
    CHECK(sv_sm_commit(n->sm, n->seg, err, sizeof err) == 0);
    return res;
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

static const struct sv_test tests[] = {
    {"codec", test_codec},          {"sessions", t_sessions},
    {"staged", t_staged},           {"staged failure", test_staged_failure},
    {"upload", t_upload},           {"abort", t_abort},
    {"many chunks", t_many_chunks}, {"snapshot", t_snapshot},
};

const struct sv_test_suite sv_test_suite = {
    .name = "sm-test",
    SV_TEST_TABLE(tests),
    .set_up = set_up,
    .tear_down = tear_down,
    .ordered = true,
};
