/* log-test: node/src/log.c (svlog) — the line format, level filtering, one
 * line per event (control characters, long messages, concurrent threads),
 * SV_LOG_LEVEL words, SipHash-2-4 against the reference vectors, and
 * sv_log_name: stable in a process, keyed per process, never the name.
 * Usage: log-test [NAME...] (no name: every test). Exit 1 on any failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#include "check.h"

/* Fixtures: run fn with stderr going to a fresh file (opened for appending,
 * as deploy/cluster opens svd.log) and return what it wrote, NUL-terminated
 * (malloc'd). Checks run after stderr is back. */

static char *capture(void (*fn)(void *), void *arg, size_t *len)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/sv-log-test-XXXXXX", dir && dir[0] ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0 || unlink(path) || fcntl(fd, F_SETFL, O_APPEND)) {
        perror("log-test: temporary file");
        exit(1);
    }
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    if (saved < 0 || dup2(fd, STDERR_FILENO) < 0) {
        perror("log-test: dup");
        exit(1);
    }
    fn(arg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t end = lseek(fd, 0, SEEK_END);
    char *buf = malloc((size_t)end + 1);
    if (!buf || pread(fd, buf, (size_t)end, 0) != end) {
        perror("log-test: read back");
        exit(1);
    }
    buf[end] = '\0';
    close(fd);
    *len = (size_t)end;
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Does line (up to its newline) match the extended regex re? */
static bool matches(const char *line, const char *re)
{
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB)) {
        fprintf(stderr, "log-test: bad regex %s\n", re);
        exit(1);
    }
    const char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) : strlen(line);
    char *copy = strndup(line, n);
    bool ok = copy && regexec(&r, copy, 0, NULL, 0) == 0;
    free(copy);
    regfree(&r);
    return ok;
}

#define STAMP "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

/* Tests. */

static void log_each_level(void *arg)
{
    (void)arg;
    LOG_DEBUG("debug line %d", 1);
    LOG_INFO("info line %d", 2);
    LOG_WARN("warn line %s", "three");
    LOG_ERROR("error line %u", 4u);
}

static void test_format(void)
{
    sv_log_setup(3, SV_LOG_DEBUG);
    time_t before = time(NULL);
    size_t len;
    char *out = capture(log_each_level, NULL, &len);
    time_t after = time(NULL);
    CHECK(count_lines(out) == 4);
    CHECK(len > 0 && out[len - 1] == '\n');
    const char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1,
               *l4 = strchr(l3, '\n') + 1;
    CHECK(matches(l1, STAMP "node=3 DEBUG debug line 1$"));
    CHECK(matches(l2, STAMP "node=3 INFO info line 2$"));
    CHECK(matches(l3, STAMP "node=3 WARN warn line three$"));
    CHECK(matches(l4, STAMP "node=3 ERROR error line 4$"));
    /* The time is UTC and now. */
    struct tm tm = {0};
    const char *rest = strptime(l1, "%Y-%m-%dT%H:%M:%S", &tm);
    CHECK(rest && rest[0] == '.' && rest[4] == 'Z');
    time_t t = timegm(&tm);
    CHECK(t >= before - 1 && t <= after + 1);
    free(out);
    sv_log_setup(0, SV_LOG_INFO);
}

static void test_levels(void)
{
    static const struct {
        enum sv_log_level min;
        size_t lines;
        const char *first;
    } lv[] = {
        {SV_LOG_DEBUG, 4, "DEBUG"},
        {SV_LOG_INFO, 3, "INFO"},
        {SV_LOG_WARN, 2, "WARN"},
        {SV_LOG_ERROR, 1, "ERROR"},
    };
    for (size_t i = 0; i < sizeof lv / sizeof lv[0]; i++) {
        sv_log_setup(12, lv[i].min);
        size_t len;
        char *out = capture(log_each_level, NULL, &len);
        CHECK(count_lines(out) == lv[i].lines);
        char want[128];
        snprintf(want, sizeof want, STAMP "node=12 %s ", lv[i].first);
        CHECK(matches(out, want));
        free(out);
    }
    sv_log_setup(0, SV_LOG_INFO);
}

static void log_awkward(void *arg)
{
    const char *big = arg;
    LOG_WARN("two\nlines\rand a tab\there");
    errno = EXDEV;
    LOG_INFO("%s", big);
    if (errno != EXDEV)
        LOG_ERROR("errno changed");
}

static void test_one_line_per_event(void)
{
    char *big = malloc(3 * SV_LOG_LINE_MAX);
    memset(big, 'x', 3 * SV_LOG_LINE_MAX - 1);
    big[3 * SV_LOG_LINE_MAX - 1] = '\0';
    size_t len;
    char *out = capture(log_awkward, big, &len);
    CHECK(count_lines(out) == 2);
    CHECK(matches(out, STAMP "node=0 WARN two\\?lines\\?and a tab\\?here$"));
    const char *second = strchr(out, '\n') + 1;
    CHECK(strlen(second) == SV_LOG_LINE_MAX); /* cut to the maximum, newline included */
    CHECK(matches(second, STAMP "node=0 INFO x+$"));
    CHECK(strstr(out, "errno changed") == NULL);
    free(out);
    free(big);
}

enum { THREADS = 4, LINES_PER_THREAD = 400, PAD = 1500 };

static void *log_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    char pad[PAD + 1];
    memset(pad, 'a' + t, PAD);
    pad[PAD] = '\0';
    for (int i = 0; i < LINES_PER_THREAD; i++)
        LOG_INFO("thread %d line %d %s end", t, i, pad);
    return NULL;
}

static void log_threads(void *arg)
{
    (void)arg;
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, log_thread, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
}

/* Lines of threads writing at once come out whole: every line is one
 * thread's, with its padding intact, and each thread's lines are all there. */
static void test_threads(void)
{
    size_t len;
    char *out = capture(log_threads, NULL, &len);
    CHECK(count_lines(out) == THREADS * LINES_PER_THREAD);
    int seen[THREADS] = {0};
    bool whole = true;
    for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        int t, i, off = 0;
        const char *body = strstr(line, " INFO thread ");
        if (!body || sscanf(body, " INFO thread %d line %d %n", &t, &i, &off) != 2 || off == 0 ||
            t < 0 || t >= THREADS || i != seen[t]) {
            whole = false;
            continue;
        }
        const char *pad = body + off;
        size_t run = strspn(pad, (char[]){(char)('a' + t), '\0'});
        if (run != PAD || strcmp(pad + run, " end") != 0)
            whole = false;
        seen[t]++;
    }
    CHECK(whole);
    for (int t = 0; t < THREADS; t++)
        CHECK(seen[t] == LINES_PER_THREAD);
    free(out);
}

static void test_level_words(void)
{
    enum sv_log_level l = SV_LOG_ERROR;
    CHECK_RC(sv_log_level_parse("debug", &l), 0);
    CHECK(l == SV_LOG_DEBUG);
    CHECK_RC(sv_log_level_parse("info", &l), 0);
    CHECK(l == SV_LOG_INFO);
    CHECK_RC(sv_log_level_parse("warn", &l), 0);
    CHECK(l == SV_LOG_WARN);
    CHECK_RC(sv_log_level_parse("error", &l), 0);
    CHECK(l == SV_LOG_ERROR);
    CHECK_RC(sv_log_level_parse("INFO", &l), -EINVAL);
    CHECK_RC(sv_log_level_parse("warning", &l), -EINVAL);
    CHECK_RC(sv_log_level_parse("", &l), -EINVAL);
    CHECK_RC(sv_log_level_parse(NULL, &l), -EINVAL);
    CHECK(l == SV_LOG_ERROR); /* untouched on failure */
}

/* The reference implementation's vectors (vectors.h of SipHash): key
 * 00 01 .. 0f, message 00 01 .. (n-1), result as little-endian bytes. */
static void test_siphash_vectors(void)
{
    static const struct {
        size_t n;
        uint64_t want;
    } v[] = {
        {0, 0x726fdb47dd0e0e31ull},
        {1, 0x74f839c593dc67fdull},
        {8, 0x93f5f5799a932462ull},
        {15, 0xa129ca6149be45e5ull},
    };
    uint8_t key[16], msg[16];
    for (int i = 0; i < 16; i++)
        key[i] = msg[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK(sv__log_siphash(key, msg, v[i].n) == v[i].want);
}

static bool all_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static void test_name_hash(void)
{
    static const char *const names[] = {"photos", "cat.jpg", "deadbeef", "a", "", "photos/"};
    enum { N = sizeof names / sizeof names[0] };
    char h[N][SV_LOG_NAME_HEX + 1], again[SV_LOG_NAME_HEX + 1];
    for (int i = 0; i < N; i++) {
        memset(h[i], '#', sizeof h[i]);
        sv_log_name(names[i], strlen(names[i]), h[i]);
        CHECK(strlen(h[i]) == SV_LOG_NAME_HEX && all_hex(h[i]));
        /* Not the name (a short one is bound to turn up among hex digits). */
        CHECK(strlen(names[i]) < 6 || strstr(h[i], names[i]) == NULL);
        sv_log_name(names[i], strlen(names[i]), again); /* stable within the process */
        CHECK(strcmp(again, h[i]) == 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(h[i], h[j]) != 0);
    }
    /* The bytes count, not a C string: an embedded NUL makes another name. */
    sv_log_name("a\0", 2, again);
    CHECK(strcmp(again, h[3]) != 0);
    /* Setting the node up again keeps the key. */
    sv_log_setup(7, SV_LOG_INFO);
    sv_log_name(names[0], strlen(names[0]), again);
    CHECK(strcmp(again, h[0]) == 0);
    sv_log_setup(0, SV_LOG_INFO);
    /* Not the name's hash under a fixed key: zero, or the reference key. */
    uint8_t key[16] = {0};
    char fixed[SV_LOG_NAME_HEX + 1];
    snprintf(fixed, sizeof fixed, "%016llx",
             (unsigned long long)sv__log_siphash(key, names[0], strlen(names[0])));
    CHECK(strcmp(fixed, h[0]) != 0);
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    snprintf(fixed, sizeof fixed, "%016llx",
             (unsigned long long)sv__log_siphash(key, names[0], strlen(names[0])));
    CHECK(strcmp(fixed, h[0]) != 0);
    /* Another process draws another key (a fresh exec, as svd starts). */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], STDOUT_FILENO);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
            execl(self, self, "--print-name", names[0], (char *)NULL);
        }
        _exit(127);
    }
    close(p[1]);
    char other[64] = "";
    ssize_t n = read(p[0], other, sizeof other - 1);
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(n == SV_LOG_NAME_HEX && all_hex(other));
    other[n > 0 ? n : 0] = '\0';
    CHECK(strcmp(other, h[0]) != 0);
}

/* Runner. */

static const struct sv_test tests[] = {
    {"format", test_format},
    {"levels", test_levels},
    {"one_line_per_event", test_one_line_per_event},
    {"threads", test_threads},
    {"level_words", test_level_words},
    {"siphash_vectors", test_siphash_vectors},
    {"name_hash", test_name_hash},
};
/* --print-name NAME: the child of name_hash prints this process's hash of NAME. */
static int print_name_option(int argc, char **argv, int i)
{
    if (strcmp(argv[i], "--print-name") != 0)
        return 0;
    if (i + 1 >= argc)
        return -1;
    char h[SV_LOG_NAME_HEX + 1];
    sv_log_name(argv[i + 1], strlen(argv[i + 1]), h);
    fputs(h, stdout);
    exit(0);
}

const struct sv_test_suite sv_test_suite = {
    .name = "log-test",
    SV_TEST_TABLE(tests),
    .option = print_name_option,
    .usage = "  --print-name NAME  print this process's keyed hash of NAME and exit\n",
    .timeout_s = 120,
};
