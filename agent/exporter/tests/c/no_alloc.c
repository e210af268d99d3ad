/*
 * The record functions allocate nothing: linked with -Wl,--wrap=malloc (and calloc,
 * realloc, posix_memalign), every allocation the static library makes goes through the
 * counters below. After the series are created, 200,000 records of every kind, over values
 * that make the histogram widen its window and downscale, must not allocate once. Run by
 * tests/c_abi.rs.
 */
#include <stddef.h>
#include <stdio.h>

#include "edge_exporter.h"

static volatile long allocations = 0;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);

void *__wrap_malloc(size_t n) {
    allocations++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size) {
    allocations++;
    return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n) {
    allocations++;
    return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n) {
    allocations++;
    return __real_posix_memalign(p, align, n);
}

int main(void) {
    edge_registry *r = edge_registry_new();
    edge_label shard = {"shard_id", "1"};
    edge_histogram *h = edge_histogram_get(r, "game_tick_duration_seconds", &shard, 1);
    edge_counter *c = edge_counter_get(r, "game_tick_overruns_total", &shard, 1);
    edge_gauge *g = edge_gauge_get(r, "game_players_connected", &shard, 1);
    edge_float_counter *f = edge_float_counter_get(r, "game_admissions_total", NULL, 0);
    if (!h || !c || !g || !f) {
        fprintf(stderr, "series not created: %s\n", edge_last_error());
        return 1;
    }
    edge_histogram_record(h, 0.01); /* this thread's first record picks its stripe */
    long before = allocations;
    if (before == 0) {
        fprintf(stderr, "the wrappers saw no allocation at all: --wrap is not in effect\n");
        return 1;
    }
    double v = 1e-9;
    for (long i = 0; i < 200000; i++) {
        edge_histogram_record(h, v);
        edge_histogram_record(h, -v);
        edge_counter_add(c, 1);
        edge_gauge_set(g, v);
        edge_gauge_add(g, 1.0);
        edge_float_counter_add(f, 0.5);
        v *= 1.0007; /* 1e-9 up to ~1e52: many decades, so the histogram downscales */
    }
    edge_histogram_record(h, 0.0);
    edge_histogram_record(NULL, 1.0);
    long during = allocations - before;
    edge_registry_free(r);
    printf("allocations while recording: %ld (before: %ld)\n", during, before);
    return during == 0 ? 0 : 1;
}
