"""The 2,000,000-line game log (213 MB) used for the log-path anchors: 10% WARN lines with an email,
a player id and an IPv4; 50% INFO tick lines; 40% DEBUG lines. Usage: python3 gen_gamelog.py OUT [LINES]

A copy of ../shared/bench/gen_gamelog.py for edge-agent's migrate tests; LINES (default
2,000,000) writes the first LINES lines of the same file."""
import random, sys
r = random.Random(1)
first = ["jane","omar","li","sofia","kwame","ines","arjun","mei"]
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000):
        k = r.random()
        if k < 0.1:
            f.write(f"2026-11-23T06:{i%60:02d}:{i%60:02d}.{i%1000:03d}Z WARN chat report by {r.choice(first)}{i%997}@example.com against plr-{r.randint(10**6,10**9)}; peer 198.51.100.{i%250} marker=m{i}\n")
        elif k < 0.6:
            f.write(f"2026-11-23T06:{i%60:02d}:{i%60:02d}.{i%1000:03d}Z INFO tick shard=17 queue=ranked dur_ms={r.random()*30:.2f} players={r.randint(1,200)} marker=m{i}\n")
        else:
            f.write(f"2026-11-23T06:{i%60:02d}:{i%60:02d}.{i%1000:03d}Z DEBUG matchmaking candidate pool size={r.randint(1,5000)} region=eu-west-1 latency_ms={r.randint(5,200)} marker=m{i}\n")
