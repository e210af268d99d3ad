/*
 * The C pusher follows the agent's cadence: started at 2000 ms (incident bound 1000 ms)
 * against an agent in incident mode (500 ms), its cadence must become 1000 ms within two
 * pushes (a push in flight may carry the previous answer). Run by
 * agent/tests/push_cadence.rs with the push URL as argument; prints the cadences seen.
 */
#define _POSIX_C_SOURCE 199309L /* nanosleep under -std=c11 */
#include <stdio.h>
#include <time.h>

#include "edge_exporter.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PUSH_URL\n", argv[0]);
        return 2;
    }
    edge_registry *r = edge_registry_new();
    edge_pusher *p = edge_pusher_start(r, argv[1], 2000);
    if (p == NULL) {
        fprintf(stderr, "edge_pusher_start: %s\n", edge_last_error());
        return 1;
    }
    printf("start: %u ms\n", edge_pusher_cadence_ms(p));
    /* Up to 120 s for two pushes (only a stuck pusher takes that), polling every 10 ms. */
    struct timespec pause = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 12000 && edge_pusher_pushes(p) < 2; i++) {
        nanosleep(&pause, NULL);
    }
    unsigned long long pushes = (unsigned long long)edge_pusher_pushes(p);
    unsigned cadence = edge_pusher_cadence_ms(p);
    printf("after %llu pushes: %u ms\n", pushes, cadence);
    edge_pusher_stop(p);
    edge_registry_free(r);
    return (pushes >= 2 && cadence == 1000) ? 0 : 1;
}
