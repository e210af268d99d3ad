"""A game that speaks DogStatsD, through Datadog's stock client (`datadog` from PyPI).

Usage: statsd_client.py HOST PORT. Sends, over UDP:
- game.kills: +3 and +4 with shard_id:3 (a counter: game_kills_total 7);
- game.players: 40, then +2 (a gauge: 42);
- game.tick: 1..1000 ms with shard_id:1 (a timer: game_tick_seconds, 1000 observations);
- game.errors: +1 with a forbidden player_id tag (folded into overflow at the agent);
then a datagram of garbage followed by a good line, from a plain socket.
"""

import socket
import sys
import time

from datadog.dogstatsd import DogStatsd

host, port = sys.argv[1], int(sys.argv[2])
client = DogStatsd(host=host, port=port, disable_telemetry=True)
client.increment("game.kills", 3, tags=["shard_id:3"])
client.increment("game.kills", 4, tags=["shard_id:3"])
client.gauge("game.players", 40)
client.flush()
client.gauge("game.players", 42)
for ms in range(1, 1001):
    client.timing("game.tick", ms, tags=["shard_id:1"])
    if ms % 100 == 0:
        # A game's pace, not one burst: a tick's worth of timings, then the next tick.
        client.flush()
        time.sleep(0.02)
client.increment("game.errors", 1, tags=["player_id:p-4242"])
client.flush()
client.close_socket()

raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
raw.sendto(b"\x00\x01\xffgarbage|||\nafter.garbage:1|c", (host, port))
raw.close()
print("sent")
