#!/usr/bin/env bash
# Side by side: two (or more) meridian binaries, alternately (A B A B ...),
# each on a fresh `meridian dev` store, driven by the same fixed-rate
# `meridian bench produce` run. Prints one line per run; compare the p99s.
#
#   bench/ab_rate.sh [-r RATE] [-n ROUNDS] [-d SECONDS] [-c broker.conf] BIN...
#
# Defaults: 32,000 msg/s, 3 rounds, 10 s (after 2 s of warm-up), 64
# producers, 1 KiB, 8 queues. The first binary also drives the benchmark.
# Every process started here is stopped here; the store lives in a
# temporary directory that is removed at the end.
set -euo pipefail

rate=32000 rounds=3 duration=10 conf=""
while getopts "r:n:d:c:" opt; do
  case $opt in
    r) rate=$OPTARG ;;
    n) rounds=$OPTARG ;;
    d) duration=$OPTARG ;;
    c) conf=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,13p' "$0"; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d -t meridian-ab-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for round in $(seq "$rounds"); do
  for bin in "$@"; do
    ns=$(free_port); bp=$(free_port)
    rm -rf "$work/store"
    extra=()
    [ -n "$conf" ] && extra=(-c "$conf")
    "$bin" dev --data-dir "$work/store" --namesrv-port "$ns" --broker-port "$bp" "${extra[@]}" \
      > "$work/dev.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "ready" "$work/dev.log" && break; sleep 0.1; done
    "$1" bench produce -n "127.0.0.1:$ns" -t BenchAB --queues 8 -w 64 -s 1024 \
      --duration "$duration" --warmup 2 --rate "$rate" --json 2>/dev/null |
      python3 -c "
import json, sys
r = json.load(sys.stdin); l = r['latency_ms']
print(f\"round $round  {sys.argv[1]:<40} {r['msgs_per_sec']:>9,.0f} msg/s  p50 {l['p50']:.3f}  p90 {l['p90']:.3f}  p99 {l['p99']:.3f}  p99.9 {l['p999']:.3f}  max {l['max']:.3f} ms\")
" "$bin"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
