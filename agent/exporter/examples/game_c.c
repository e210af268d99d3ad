/*
 * A toy C game server on edge-exporter's C ABI: two simulation threads record tick
 * durations into one histogram while a pusher sends them to the local edge-agent.
 *
 *   cc -std=c11 -O2 -I agent/exporter/include agent/exporter/examples/game_c.c \
 *      target/release/libedge_exporter.a -lpthread -ldl -lm -o game_c
 *   ./game_c http://127.0.0.1:9740/api/v1/push 1 50000
 *
 * Arguments: push URL, shard id, records per thread. Prints what it did; exits non-zero
 * when the library refuses something it should not, or accepts something it should not.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_exporter.h"

struct sim {
    edge_histogram *tick; /* shared by both threads: the library stripes it */
    long records;
    int first;
};

/* Tick durations 1..1000 ms, each equally often: the median is 0.5 s, p99 0.99 s. */
static void *simulate(void *arg) {
    const struct sim *s = (const struct sim *)arg;
    for (long i = 0; i < s->records; i++) {
        long ms = (i + s->first) % 1000 + 1;
        edge_histogram_record(s->tick, (double)ms / 1000.0);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PUSH_URL SHARD_ID RECORDS_PER_THREAD\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    long records = strtol(argv[3], NULL, 10);

    edge_registry *registry = edge_registry_new();
    if (registry == NULL) {
        fprintf(stderr, "edge_registry_new: %s\n", edge_last_error());
        return 1;
    }

    /* Series are created once, at start-up; recording never touches the registry. */
    edge_label shard = {"shard_id", argv[2]};
    edge_histogram *tick =
        edge_histogram_get(registry, "game_tick_duration_seconds", &shard, 1);
    edge_gauge *players = edge_gauge_get(registry, "game_players_connected", &shard, 1);
    edge_label desync = {"kind", "desync"};
    edge_counter *errors = edge_counter_get(registry, "game_errors_total", &desync, 1);
    if (tick == NULL || players == NULL || errors == NULL) {
        fprintf(stderr, "a catalog series was not created: %s\n", edge_last_error());
        return 1;
    }

    /* A forbidden label: the overflow series takes its values, and the reason says why. */
    edge_label player = {"player_id", "88213"};
    edge_counter *per_player = edge_counter_get(registry, "game_errors_total", &player, 1);
    const char *why = edge_last_error();
    if (per_player == NULL || why == NULL || strstr(why, "player_id") == NULL ||
        strstr(why, "forbidden_label") == NULL) {
        fprintf(stderr, "expected an overflow handle and a reason, got %p / %s\n",
                (void *)per_player, why ? why : "NULL");
        return 1;
    }
    printf("refused: %s\n", why);
    edge_counter_add(per_player, 1); /* counted in game_errors_total{edge_overflow="true"} */

    edge_pusher *pusher = edge_pusher_start(registry, url, 1000);
    if (pusher == NULL) {
        fprintf(stderr, "edge_pusher_start: %s\n", edge_last_error());
        return 1;
    }

    edge_gauge_set(players, 42.0);
    edge_counter_add(errors, 2);
    pthread_t threads[2];
    struct sim sims[2] = {{tick, records, 0}, {tick, records, 500}};
    for (int t = 0; t < 2; t++) {
        if (pthread_create(&threads[t], NULL, simulate, &sims[t]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (int t = 0; t < 2; t++) {
        pthread_join(threads[t], NULL);
    }

    edge_pusher_stop(pusher); /* one last push with everything, then the thread ends */
    edge_registry_free(registry);
    printf("recorded %ld ticks from 2 threads\n", 2 * records);
    return 0;
}
