#!/usr/bin/env bash
# The cost of TLS and of access control, side by side in one run: produce
# throughput (unthrottled) and latency with neither, with TLS (enforcing,
# the bench tool's connections over TLS) and with ACL (aclEnable=true, every
# request signed and verified), alternately, each on a fresh `meridian dev`.
#
#   bench/security_bench.sh [-n ROUNDS] [-d SECONDS] [-w PRODUCERS] [BIN]
#
# Defaults: 3 rounds, 10 s after 2 s of warm-up, 64 producers, 1 KiB, 8
# queues, target/release/meridian. Every process started here is stopped
# here; certificates and stores live in a temporary directory removed at
# the end.
set -euo pipefail

rounds=3 duration=10 producers=64
while getopts "n:d:w:" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    d) duration=$OPTARG ;;
    w) producers=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
bin=${1:-target/release/meridian}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d -t meridian-sec-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# TLS: a self-signed certificate made at start-up (what the tool accepts
# without verification, as RocketMQ's clients do by default).
printf 'tls.server.mode=enforcing\ntls.test.mode.enable=true\n' > "$work/tls.conf"
cat > "$work/plain_acl.yml" <<ACL
accounts:
  - accessKey: benchAccount
    secretKey: benchSecret1
    admin: true                  # the tool creates its topic
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [ "BenchSecurity=PUB|SUB" ]   # so every send is checked
ACL
printf 'aclEnable=true\naclFile=%s\n' "$work/plain_acl.yml" > "$work/acl.conf"
: > "$work/none.conf"

for round in $(seq "$rounds"); do
  for variant in none tls acl; do
    ns=$(free_port); bp=$(free_port)
    rm -rf "$work/store"
    "$bin" dev --data-dir "$work/store" --namesrv-port "$ns" --broker-port "$bp" -c "$work/$variant.conf" \
      > "$work/dev.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do grep -q "ready" "$work/dev.log" && break; sleep 0.1; done
    client=()
    case $variant in
      tls) client=(--tls) ;;
      acl) client=(--accessKey benchAccount --secretKey benchSecret1) ;;
    esac
    "$bin" bench produce -n "127.0.0.1:$ns" -t BenchSecurity --queues 8 -w "$producers" -s 1024 \
      --duration "$duration" --warmup 2 --json "${client[@]}" 2>/dev/null |
      python3 -c "
import json, sys
r = json.load(sys.stdin); l = r['latency_ms']
print(f\"round $round  {sys.argv[1]:<5} {r['msgs_per_sec']:>9,.0f} msg/s  p50 {l['p50']:.3f}  p99 {l['p99']:.3f}  p99.9 {l['p999']:.3f} ms  errors {r.get('errors', 0)}\")
" "$variant"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
