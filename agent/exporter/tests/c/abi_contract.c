/*
 * The documented result of every entry point for NULL and invalid arguments, through the
 * real C ABI: compiled and run by tests/c_abi.rs against libedge_exporter.a. Exits 0 when
 * every check holds; otherwise prints the failed check and exits 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "edge_exporter.h"

static int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,  \
                    __LINE__, #cond, edge_last_error() ? edge_last_error() : "NULL"); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

/* The last error exists and contains every one of the given words. */
static int error_says(const char *a, const char *b, const char *c) {
    const char *e = edge_last_error();
    if (e == NULL) return 0;
    if (a && !strstr(e, a)) return 0;
    if (b && !strstr(e, b)) return 0;
    if (c && !strstr(e, c)) return 0;
    return 1;
}

/* Fails a call on another thread; returns whether that thread saw its own error. */
static void *fail_elsewhere(void *arg) {
    (void)arg;
    int saw = edge_counter_get(NULL, "game_errors_total", NULL, 0) == NULL &&
              edge_last_error() != NULL && strstr(edge_last_error(), "registry is NULL");
    return saw ? (void *)1 : NULL;
}

int main(void) {
    /* Recording, stopping and freeing NULL: no-ops. */
    edge_counter_add(NULL, 1);
    edge_float_counter_add(NULL, 1.5);
    edge_gauge_set(NULL, 2.0);
    edge_gauge_add(NULL, 2.0);
    edge_histogram_record(NULL, 0.01);
    edge_pusher_stop(NULL);
    edge_registry_free(NULL);
    CHECK(edge_pusher_cadence_ms(NULL) == 0);
    CHECK(edge_pusher_pushes(NULL) == 0);

    /* A NULL registry. */
    edge_label shard = {"shard_id", "1"};
    CHECK(edge_counter_get(NULL, "game_tick_overruns_total", &shard, 1) == NULL);
    CHECK(error_says("registry is NULL", NULL, NULL));
    CHECK(edge_float_counter_get(NULL, "game_tick_overruns_total", &shard, 1) == NULL);
    CHECK(edge_gauge_get(NULL, "game_players_connected", &shard, 1) == NULL);
    CHECK(edge_histogram_get(NULL, "game_tick_duration_seconds", &shard, 1) == NULL);
    CHECK(edge_histogram_get_with_scale(NULL, "game_tick_duration_seconds", &shard, 1, 3) == NULL);
    CHECK(edge_pusher_start(NULL, NULL, 1000) == NULL);
    CHECK(error_says("registry is NULL", NULL, NULL));
    CHECK(edge_pusher_start_with(NULL, NULL, 1000, 500) == NULL);

    edge_registry *r = edge_registry_new();
    CHECK(r != NULL);
    CHECK(edge_last_error() == NULL);

    /* A valid series: a handle, and no error. */
    edge_histogram *tick = edge_histogram_get(r, "game_tick_duration_seconds", &shard, 1);
    CHECK(tick != NULL);
    CHECK(edge_last_error() == NULL);
    CHECK(edge_histogram_get(r, "game_tick_duration_seconds", &shard, 1) == tick);
    edge_histogram_record(tick, 0.01);
    edge_histogram_record(tick, NAN);      /* refused and counted, not stored */
    edge_histogram_record(tick, INFINITY); /* likewise */
    CHECK(edge_gauge_get(r, "game_instances_active", NULL, 0) != NULL);

    /* The last error is per thread: another thread's failure leaves this one's alone. */
    pthread_t other;
    void *saw = NULL;
    CHECK(pthread_create(&other, NULL, fail_elsewhere, NULL) == 0);
    CHECK(pthread_join(other, &saw) == 0);
    CHECK(saw == (void *)1);
    CHECK(edge_last_error() == NULL);

    /* Invalid names and labels: NULL, and an error that says which argument. */
    CHECK(edge_counter_get(r, NULL, NULL, 0) == NULL);
    CHECK(error_says("metric name is NULL", NULL, NULL));
    CHECK(edge_counter_get(r, "game_tick_overruns_total", NULL, 1) == NULL);
    CHECK(error_says("game_tick_overruns_total", "labels is NULL but n is 1", NULL));
    edge_label null_name = {NULL, "1"};
    CHECK(edge_gauge_get(r, "game_players_connected", &null_name, 1) == NULL);
    CHECK(error_says("labels[0].name is NULL", NULL, NULL));
    edge_label two[2] = {{"shard_id", "1"}, {"queue", NULL}};
    CHECK(edge_histogram_get(r, "game_queue_wait_seconds", two, 2) == NULL);
    CHECK(error_says("labels[1].value", "`queue`", "is NULL"));
    CHECK(edge_counter_get(r, "game_\xff_total", NULL, 0) == NULL);
    CHECK(error_says("metric name is not UTF-8", NULL, NULL));
    edge_label bad_value = {"shard_id", "\xc3"};
    CHECK(edge_histogram_get(r, "game_tick_duration_seconds", &bad_value, 1) == NULL);
    CHECK(error_says("labels[0].value", "not UTF-8", NULL));

    /* Unknown metric, wrong type, type clash. */
    CHECK(edge_counter_get(r, "game_made_up_total", NULL, 0) == NULL);
    CHECK(error_says("game_made_up_total", "not in the metric catalog", NULL));
    CHECK(edge_gauge_get(r, "game_tick_duration_seconds", &shard, 1) == NULL);
    CHECK(error_says("game_tick_duration_seconds", "is a histogram", "not a gauge"));
    CHECK(edge_histogram_get(r, "game_actions_total", NULL, 0) == NULL);
    CHECK(error_says("is a counter", "not a histogram", NULL));
    CHECK(edge_counter_get(r, "game_tick_overruns_total", &shard, 1) != NULL);
    CHECK(edge_float_counter_get(r, "game_tick_overruns_total", &shard, 1) == NULL);
    CHECK(error_says("game_tick_overruns_total", "already registered as a counter", NULL));

    /* Refused series: the overflow handle (never NULL), the same for every refusal of the
     * metric, and an error naming metric, label and reason. */
    edge_label player = {"player_id", "88213"};
    edge_counter *o1 = edge_counter_get(r, "game_errors_total", &player, 1);
    CHECK(o1 != NULL);
    CHECK(error_says("game_errors_total", "player_id", "forbidden_label"));
    edge_label kind = {"kind", "exploded"};
    edge_counter *o2 = edge_counter_get(r, "game_errors_total", &kind, 1);
    CHECK(o2 == o1);
    CHECK(error_says("kind", "exploded", "label_value_not_declared"));
    edge_label stray = {"weapon", "axe"};
    CHECK(edge_counter_get(r, "game_errors_total", &stray, 1) == o1);
    CHECK(error_says("weapon", "label_not_allowed", NULL));
    edge_label invalid = {"bad-name", "x"};
    CHECK(edge_counter_get(r, "game_errors_total", &invalid, 1) == o1);
    CHECK(error_says("bad-name", "invalid_label_name", NULL));
    edge_label ip = {"shard_id", "10.1.2.3"};
    edge_histogram *pii = edge_histogram_get(r, "game_tick_duration_seconds", &ip, 1);
    CHECK(pii != NULL && pii != tick);
    CHECK(error_says("game_tick_duration_seconds", "shard_id", "pii_label_value"));
    CHECK(strstr(edge_last_error(), "10.1.2.3") == NULL); /* the value is never repeated */
    edge_counter_add(o1, 3);
    edge_label crash = {"kind", "crash"};
    edge_counter *ok = edge_counter_get(r, "game_errors_total", &crash, 1);
    CHECK(ok != NULL && ok != o1);
    CHECK(edge_last_error() == NULL);

    /* Float counters refuse negative and non-finite increments without crashing. */
    edge_float_counter *secs =
        edge_float_counter_get(r, "game_admissions_total", NULL, 0);
    CHECK(secs != NULL);
    edge_float_counter_add(secs, -1.0);
    edge_float_counter_add(secs, NAN);
    edge_float_counter_add(secs, 0.25);

    /* Pushers: invalid URLs are NULL; an unreachable agent costs a counted drop. */
    CHECK(edge_pusher_start(r, "https://127.0.0.1/api/v1/push", 1000) == NULL);
    CHECK(error_says("unsupported push URL", "https://", NULL));
    CHECK(edge_pusher_start(r, "http://\xff/", 1000) == NULL);
    CHECK(error_says("url is not UTF-8", NULL, NULL));
    edge_pusher *p = edge_pusher_start(r, "http://127.0.0.1:1/api/v1/push", 20);
    CHECK(p != NULL);
    CHECK(edge_last_error() == NULL);
    CHECK(edge_pusher_cadence_ms(p) == 20);
    edge_pusher_stop(p);
    p = edge_pusher_start_with(r, "http://127.0.0.1:1/api/v1/push", 0, 0);
    CHECK(p != NULL);
    CHECK(edge_pusher_cadence_ms(p) == 10000);
    CHECK(edge_pusher_pushes(p) == 0);
    edge_pusher_stop(p);

    /* Registries from policy text: NULL texts are the shipped ones; bad text is NULL. */
    edge_registry *shipped = edge_registry_with_policy(NULL, NULL, 0);
    CHECK(shipped != NULL);
    CHECK(edge_last_error() == NULL);
    edge_registry_free(shipped);
    CHECK(edge_registry_with_policy("forbid_labels: [", NULL, 0) == NULL);
    CHECK(error_says("invalid label policy", "labels_yaml", NULL));
    CHECK(edge_registry_with_policy(NULL, "metrics: 7", 0) == NULL);
    CHECK(error_says("invalid metric catalog", "catalog_yaml", NULL));
    CHECK(edge_registry_with_policy("\xff", NULL, 0) == NULL);
    CHECK(error_says("labels_yaml is not UTF-8", NULL, NULL));

    /* A budget of 3 series with one family: one slot is the overflow's, so the third
     * shard is refused for the budget. */
    edge_registry *small = edge_registry_with_policy(NULL, NULL, 3);
    CHECK(small != NULL);
    edge_label s1 = {"shard_id", "1"}, s2 = {"shard_id", "2"}, s3 = {"shard_id", "3"};
    edge_histogram *h1 = edge_histogram_get(small, "game_tick_duration_seconds", &s1, 1);
    edge_histogram *h2 = edge_histogram_get(small, "game_tick_duration_seconds", &s2, 1);
    edge_histogram *h3 = edge_histogram_get(small, "game_tick_duration_seconds", &s3, 1);
    CHECK(h1 != NULL && h2 != NULL && h1 != h2);
    CHECK(h3 != NULL && h3 != h1 && h3 != h2);
    CHECK(error_says("game_tick_duration_seconds", "budget", "shard_id"));
    edge_histogram_record(h3, 0.02);
    edge_registry_free(small);

    edge_registry_free(r);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("abi contract: all checks passed\n");
    return 0;
}
