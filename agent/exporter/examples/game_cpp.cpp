// A toy C++ game server on edge-exporter's C ABI: the registry and pusher are owned by
// std::unique_ptr, two std::threads record tick durations into one histogram.
//
//   c++ -std=c++17 -O2 -I agent/exporter/include agent/exporter/examples/game_cpp.cpp
//       target/release/libedge_exporter.a -lpthread -ldl -lm -o game_cpp
//   ./game_cpp http://127.0.0.1:9740/api/v1/push 2 50000
//
// Arguments: push URL, shard id, records per thread.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "edge_exporter.h"

namespace {

struct RegistryFree {
    void operator()(edge_registry *r) const { edge_registry_free(r); }
};
struct PusherStop {
    void operator()(edge_pusher *p) const { edge_pusher_stop(p); }
};
using Registry = std::unique_ptr<edge_registry, RegistryFree>;
using Pusher = std::unique_ptr<edge_pusher, PusherStop>;

std::string last_error() {
    const char *e = edge_last_error();
    return e ? e : "(none)";
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s PUSH_URL SHARD_ID RECORDS_PER_THREAD\n", argv[0]);
        return 2;
    }
    const long records = std::strtol(argv[3], nullptr, 10);

    Registry registry(edge_registry_new());
    if (!registry) {
        std::fprintf(stderr, "edge_registry_new: %s\n", last_error().c_str());
        return 1;
    }
    const edge_label shard{"shard_id", argv[2]};
    edge_histogram *tick =
        edge_histogram_get(registry.get(), "game_tick_duration_seconds", &shard, 1);
    if (tick == nullptr) {
        std::fprintf(stderr, "game_tick_duration_seconds: %s\n", last_error().c_str());
        return 1;
    }

    // A forbidden label: the overflow handle, never nullptr, and the reason.
    const edge_label player{"player_id", "88213"};
    edge_counter *per_player =
        edge_counter_get(registry.get(), "game_errors_total", &player, 1);
    const std::string why = last_error();
    if (per_player == nullptr || why.find("player_id") == std::string::npos ||
        why.find("forbidden_label") == std::string::npos) {
        std::fprintf(stderr, "expected an overflow handle and a reason, got %s\n", why.c_str());
        return 1;
    }
    std::printf("refused: %s\n", why.c_str());
    edge_counter_add(per_player, 1);

    {
        Pusher pusher(edge_pusher_start(registry.get(), argv[1], 1000));
        if (!pusher) {
            std::fprintf(stderr, "edge_pusher_start: %s\n", last_error().c_str());
            return 1;
        }
        std::vector<std::thread> sims;
        for (long first : {0L, 500L}) {
            sims.emplace_back([tick, records, first] {
                for (long i = 0; i < records; i++) {
                    edge_histogram_record(tick, double((i + first) % 1000 + 1) / 1000.0);
                }
            });
        }
        for (auto &t : sims) t.join();
    }  // the pusher pushes once more and stops here, before the registry goes
    std::printf("recorded %ld ticks from 2 threads\n", 2 * records);
    return 0;
}
