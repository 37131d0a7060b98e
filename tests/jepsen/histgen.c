/* sv-histgen: writes a seeded register history that is linearizable by construction. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPS_MAX = 1 << 20,
    KEYS_MAX = 64,
    PROCS_MAX = 256,
};

enum f { F_READ, F_WRITE, F_CAS };
enum fate { FATE_OK, FATE_FAIL, FATE_INFO_APPLIED, FATE_INFO_LOST };
enum state { IDLE, INVOKED, APPLIED };

/* One operation: its invocation and completion lines. */
struct op {
    int64_t process;
    uint8_t f, fate;
    uint32_t key;
    uint64_t v1, v2; /* write: v1; cas: v1 expected, v2 new (0 = null) */
    uint64_t out;    /* read: value read (0 = null) */
    bool swapped;    /* write applied, or cas swapped */
    uint64_t call, ret;
    bool completed;
};

struct slot {
    int64_t process;
    enum state state;
    size_t op;
};

/* splitmix64 */
static uint64_t rnd(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *const f_names[] = {"read", "write", "cas"};

static void print_value(FILE *out, uint64_t v)
{
    if (v == 0)
        fputs("null", out);
    else
        fprintf(out, "%" PRIu64, v);
}

static void print_event(FILE *out, const struct op *o, bool invoke)
{
    const char *type = invoke                 ? "invoke"
                       : o->fate == FATE_OK   ? "ok"
                       : o->fate == FATE_FAIL ? "fail"
                                              : "info";
    fprintf(out,
            "{\"process\": %" PRId64 ", \"type\": \"%s\", \"f\": \"%s\", \"key\": \"k%" PRIu32
            "\", \"value\": ",
            o->process, type, f_names[o->f], o->key);
    if (o->f == F_CAS) {
        fputc('[', out);
        print_value(out, o->v1);
        fputs(", ", out);
        print_value(out, o->v2);
        fputc(']', out);
    } else if (o->f == F_WRITE) {
        print_value(out, o->v1);
    } else {
        print_value(out, invoke || o->fate != FATE_OK ? 0 : o->out);
    }
    fprintf(out, ", \"time\": %" PRIu64 "}\n", invoke ? o->call : o->ret);
}

/* An ok write or swapped cas: its value was definitely in the register. */
static bool wrote(const struct op *o)
{
    return o->fate == FATE_OK && o->swapped && o->f != F_READ;
}

/* Change one ok read (past the middle) to a value that two completed writes
 * had already overwritten before it began. Returns the op index or -1. */
static long make_stale(struct op *ops, size_t n)
{
    for (size_t r = n / 2; r < n; r++) {
        struct op *rd = &ops[r];
        if (rd->f != F_READ || rd->fate != FATE_OK)
            continue;
        for (size_t w2 = 0; w2 < n; w2++) {
            if (ops[w2].key != rd->key || !wrote(&ops[w2]) || ops[w2].ret >= rd->call)
                continue;
            for (size_t w1 = 0; w1 < n; w1++) {
                const struct op *a = &ops[w1];
                if (a->key != rd->key || !wrote(a) || a->ret >= ops[w2].call)
                    continue;
                rd->out = a->f == F_WRITE ? a->v1 : a->v2;
                return (long)r;
            }
        }
    }
    return -1;
}

static int usage(FILE *out, int rc)
{
    fprintf(out, "usage: sv-histgen --seed S --ops N [--keys K] [--processes P] [--stale] OUT\n"
                 "Write a linearizable register history of N operations to OUT (jsonl).\n"
                 "--stale: then change one read to a stale value (not linearizable).\n");
    return rc;
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    size_t n = 10000, n_keys = 5, n_procs = 10;
    bool stale = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "--help") == 0)
            return usage(stdout, 0);
        if (strcmp(a, "--stale") == 0)
            stale = true;
        else if (strcmp(a, "--seed") == 0 && has)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--ops") == 0 && has)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--keys") == 0 && has)
            n_keys = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--processes") == 0 && has)
            n_procs = strtoull(argv[++i], NULL, 10);
        else if (a[0] != '-' && path == NULL)
            path = a;
        else
            return usage(stderr, 2);
    }
    if (path == NULL || n == 0 || n > OPS_MAX || n_keys == 0 || n_keys > KEYS_MAX || n_procs == 0 ||
        n_procs > PROCS_MAX)
        return usage(stderr, 2);

    struct op *ops = calloc(n, sizeof(*ops));
    /* Events in time order: op index * 2 + (1 for completion). */
    size_t *order = calloc(2 * n, sizeof(*order));
    if (ops == NULL || order == NULL) {
        fprintf(stderr, "sv-histgen: out of memory\n");
        return 2;
    }
    uint64_t x = seed;
    uint64_t reg[KEYS_MAX] = {0};
    uint64_t next_val = 1, now = 1000;
    struct slot slots[PROCS_MAX];
    for (size_t p = 0; p < n_procs; p++)
        slots[p] = (struct slot){.process = (int64_t)p, .state = IDLE};
    size_t invoked = 0, completed = 0, n_order = 0;
    while (completed < n) {
        now += 1 + rnd(&x) % 1000;
        struct slot *s = &slots[rnd(&x) % n_procs];
        if (s->state == IDLE) {
            if (invoked == n)
                continue;
            struct op *o = &ops[invoked];
            s->op = invoked++;
            o->process = s->process;
            o->key = (uint32_t)(rnd(&x) % n_keys);
            o->call = now;
            uint64_t r = rnd(&x) % 10;
            o->f = r < 5 ? F_READ : r < 8 ? F_WRITE : F_CAS;
            if (o->f == F_WRITE) {
                o->v1 = next_val++;
            } else if (o->f == F_CAS) {
                o->v1 = rnd(&x) % 2 ? reg[o->key] : rnd(&x) % next_val;
                o->v2 = next_val++;
            }
            r = rnd(&x) % 100;
            o->fate = r < 1 ? FATE_INFO_APPLIED : r < 2 ? FATE_INFO_LOST : FATE_OK;
            if (o->f == F_WRITE && r >= 2 && r < 4)
                o->fate = FATE_FAIL; /* rejected: never takes effect */
            order[n_order++] = s->op * 2;
            s->state = INVOKED;
        } else if (s->state == INVOKED) {
            /* The linearization point, strictly between call and return. */
            struct op *o = &ops[s->op];
            if (o->fate != FATE_FAIL && o->fate != FATE_INFO_LOST) {
                if (o->f == F_READ) {
                    o->out = reg[o->key];
                } else if (o->f == F_WRITE) {
                    reg[o->key] = o->v1;
                    o->swapped = true;
                } else if (reg[o->key] == o->v1) {
                    reg[o->key] = o->v2;
                    o->swapped = true;
                } else if (o->fate == FATE_OK) {
                    o->fate = FATE_FAIL; /* cas did not match */
                }
            }
            s->state = APPLIED;
        } else {
            struct op *o = &ops[s->op];
            o->ret = now;
            o->completed = true;
            order[n_order++] = s->op * 2 + 1;
            completed++;
            if (o->fate == FATE_INFO_APPLIED || o->fate == FATE_INFO_LOST)
                s->process += (int64_t)n_procs; /* a crashed client comes back as a new one */
            s->state = IDLE;
        }
    }
    long mutated = stale ? make_stale(ops, n) : -1;
    if (stale && mutated < 0) {
        fprintf(stderr, "sv-histgen: no read could be made stale\n");
        return 2;
    }
    FILE *out = fopen(path, "w");
    if (out == NULL) {
        perror(path);
        return 2;
    }
    for (size_t i = 0; i < n_order; i++)
        print_event(out, &ops[order[i] / 2], order[i] % 2 == 0);
    if (fclose(out) != 0) {
        perror(path);
        return 2;
    }
    if (stale)
        fprintf(stderr, "sv-histgen: op %ld (a read of k%" PRIu32 ") made stale\n", mutated,
                ops[mutated].key);
    free(ops);
    free(order);
    return 0;
}
