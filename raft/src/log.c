/* The in-memory Raft log of one group: a contiguous array after a compaction point. */
#include <string.h>

#include "internal.h"

int sv__grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap : 8;
    while (ncap < want) {
        ncap *= 2;
    }
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL) {
        return SV_RAFT_E_NOMEM;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

void sv__log_init(struct sv__log *l, uint64_t offset, uint64_t offset_term)
{
    memset(l, 0, sizeof(*l));
    l->offset = offset;
    l->offset_term = offset_term;
}

static void free_range(struct sv__log *l, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        free(l->ents[i].data);
    }
}

void sv__log_close(struct sv__log *l)
{
    free_range(l, 0, l->n);
    free(l->ents);
    memset(l, 0, sizeof(*l));
}

uint64_t sv__log_last(const struct sv__log *l)
{
    return l->offset + l->n;
}

uint64_t sv__log_term(const struct sv__log *l, uint64_t index)
{
    if (index == l->offset) {
        return l->offset_term;
    }
    if (index < l->offset || index > sv__log_last(l)) {
        return 0;
    }
    return l->ents[index - l->offset - 1].term;
}

struct sv_raft_entry *sv__log_at(const struct sv__log *l, uint64_t index)
{
    if (index <= l->offset || index > sv__log_last(l)) {
        return NULL;
    }
    return &l->ents[index - l->offset - 1];
}

int sv__log_append(struct sv__log *l, const struct sv_raft_entry *e)
{
    ASSERT(e->index == sv__log_last(l) + 1);
    ASSERT(e->term >= sv__log_term(l, sv__log_last(l)));
    if (sv__grow((void **)&l->ents, &l->cap, l->n + 1, sizeof(*l->ents)) != 0) {
        return SV_RAFT_E_NOMEM;
    }
    uint8_t *data = NULL;
    if (e->len > 0) {
        data = malloc(e->len);
        if (data == NULL) {
            return SV_RAFT_E_NOMEM;
        }
        memcpy(data, e->data, e->len);
    }
    l->ents[l->n] = *e;
    l->ents[l->n].data = data;
    l->n++;
    return 0;
}

void sv__log_truncate(struct sv__log *l, uint64_t index)
{
    ASSERT(index > l->offset);
    if (index > sv__log_last(l)) {
        return;
    }
    size_t keep = (size_t)(index - l->offset - 1);
    free_range(l, keep, l->n);
    l->n = keep;
}

void sv__log_compact(struct sv__log *l, uint64_t index)
{
    ASSERT(index > l->offset && index <= sv__log_last(l));
    size_t drop = (size_t)(index - l->offset);
    uint64_t term = sv__log_term(l, index);
    free_range(l, 0, drop);
    memmove(l->ents, l->ents + drop, (l->n - drop) * sizeof(*l->ents));
    l->n -= drop;
    l->offset = index;
    l->offset_term = term;
}

void sv__log_reset(struct sv__log *l, uint64_t index, uint64_t term)
{
    free_range(l, 0, l->n);
    l->n = 0;
    l->offset = index;
    l->offset_term = term;
}

uint64_t sv__log_find_conflict_by_term(const struct sv__log *l, uint64_t index, uint64_t term)
{
    uint64_t last = sv__log_last(l);
    if (index > last) {
        index = last;
    }
    while (index > l->offset && sv__log_term(l, index) > term) {
        index--;
    }
    return index < l->offset ? l->offset : index;
}
