#!/usr/bin/env python3
"""Region failover: RTO and RPO per failover mode and deployment pattern.

Each round starts three regions (east, north, west: a name server and a
broker each, relays between every pair), runs stock rocketmq-client-rust
producers and consumers (20 ms between sends) in the regions the pattern
gives applications to, then loses east (every process SIGKILLed) or
switches it over as planned, and measures for east's applications (their
namesrvAddr lists east's name server, then west's):

- producer RTO: from the loss to the first send acknowledged again;
- consumer RTO: to the first message sent after the loss received;
- RPO: messages east acknowledged before the loss that west lacks
  (they are still on east's disks and arrive when it returns);
- redelivered: messages the group received twice (consumed in east, not
  yet committed and carried, received again in west);
- the longest pause of east's producer (between two acknowledged sends)
  and consumer (between two messages received) across the event, which
  for a planned switchover is the whole interruption;
- the longest pause of the other regions' producers.

The measurement itself is the ignored test `measure_region_failover` in
crates/meridian/tests/regions_failover.rs; this script runs it per case
and writes the table between the markers in docs/benchmarks.md.

    python3 bench/region_failover.py [--rounds 1] [--poll-ms 30000]
        [--patterns active-standby,active-active,multi-active]
        [--modes auto,semi,manual,planned] [--no-write]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN = "<!-- region-failover:begin -->"
END = "<!-- region-failover:end -->"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_case(pattern, mode, poll_ms):
    env = dict(os.environ)
    env.update(
        MERIDIAN_FAILOVER_PATTERN=pattern,
        MERIDIAN_FAILOVER_MODE=mode,
        MERIDIAN_CLIENT_POLL_MS=str(poll_ms),
    )
    cmd = [
        "cargo", "nextest", "run", "-p", "meridian", "--test", "regions_failover",
        "measure_region_failover", "--run-ignored", "only", "--no-capture",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("FAILOVER-RESULT "):
            return json.loads(line[len("FAILOVER-RESULT "):])
    log(out.stdout[-3000:] + out.stderr[-3000:])
    raise SystemExit(f"{pattern}/{mode}: no result")


def median(rows, key):
    vals = [r[key] for r in rows if r[key] == r[key]]  # NaN out
    return statistics.median(vals) if vals else float("nan")


def table(results, rounds, poll_ms):
    lines = [
        BEGIN,
        "## Region failover: RTO and RPO",
        "",
        f"`python3 bench/region_failover.py --rounds {rounds} --poll-ms {poll_ms}`: "
        "three regions on one 2-core machine (loopback), relays between every pair, "
        "stock rocketmq-client-rust clients reading routes every "
        f"{poll_ms / 1000:.0f} s, one send every 20 ms per producer; east is lost "
        "(every process SIGKILLed) or switched over as planned. Medians of "
        f"{rounds} round(s) per row; RPO and redelivered are messages. What each "
        "column means: see the script's header and [regions.md](regions.md#region-health-and-failover).",
        "",
        "| pattern | mode | producer RTO | consumer RTO | producer / consumer longest pause | routes moved after | RPO (acknowledged before) | redelivered | others' longest pause |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (pattern, mode), rows in results.items():
        lines.append(
            "| {} | {} | {:.1f} s | {:.1f} s | {:.1f} / {:.1f} s | {:.1f} s | {} ({}) | {} | {:.2f} s |".format(
                pattern,
                mode,
                median(rows, "producerRtoS"),
                median(rows, "consumerRtoS"),
                median(rows, "eastMaxGapS"),
                median(rows, "eastConsumerMaxGapS"),
                median(rows, "switchoverS"),
                int(median(rows, "rpo")),
                int(median(rows, "ackedBefore")),
                int(median(rows, "redelivered")),
                median(rows, "othersMaxGapS"),
            )
        )
    lines += [
        "",
        "Reading it: a stock client moves when it next reads routes and its "
        "home name server does not answer, so the RTO of a lost region is "
        "bounded by the route refresh (target: refresh + 10 s) whatever the "
        "mode, and varies with where in its 30 s cycle the loss falls; the "
        "mode decides what the name servers do (route the region's clients "
        "elsewhere, also when it returns). RPO counts messages east "
        "acknowledged that the relays had not copied when it was lost; they "
        "are on east's disks and arrive when it returns. Redelivered "
        "messages are ones the group had consumed in east after the last "
        "offset that reached west: a consumer's offset reaches its broker "
        "with its next pull (or its 5 s commit), and the relays carry it "
        "every offsetSyncIntervalMs (300 ms here, 5 s by default). "
        "A planned switchover drains "
        "first: RPO 0, nothing redelivered; producers never pause, consumers "
        "pause while offsets travel and routes move, and the command takes "
        "the settle time (route refresh + 5 s) and more. In every row no "
        "message was stored twice and none sent after the event was missing.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--poll-ms", type=int, default=30000)
    ap.add_argument("--patterns", default="active-standby,active-active,multi-active")
    ap.add_argument("--modes", default="auto,semi,manual,planned")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "-p", "meridian", "--tests"], cwd=ROOT, check=True)
    results = {}
    for pattern in args.patterns.split(","):
        for mode in args.modes.split(","):
            rows = []
            for r in range(args.rounds):
                res = run_case(pattern, mode, args.poll_ms)
                if res["storedTwice"] or res["missingAfter"] or res["repeatedUnconsumed"]:
                    raise SystemExit(f"{pattern}/{mode}: correctness broken: {res}")
                log(f"{pattern} {mode} round {r + 1}: {json.dumps(res)}")
                rows.append(res)
            results[(pattern, mode)] = rows
    text = table(results, args.rounds, args.poll_ms)
    print(text)
    if args.no_write:
        return
    doc = open(DOC).read()
    if BEGIN in doc:
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        doc = head + text.rstrip("\n") + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    open(DOC, "w").write(doc)
    log(f"wrote {DOC}")


if __name__ == "__main__":
    main()
