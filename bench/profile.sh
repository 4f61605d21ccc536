#!/usr/bin/env bash
# Count the instructions a Meridian broker spends per send and per pull,
# with valgrind's callgrind (instruction counts do not depend on how busy
# the machine is). Runs a name server and a broker under callgrind, sends
# with `meridian bench produce` (8 producers, 30 s), reads everything back
# with `meridian bench consume`, stops the broker and summarises.
#
#   bench/profile.sh [OUT_DIR]        (default: a new temporary directory)
#
# Needs valgrind and a release build (`cargo build --release -p meridian`).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/target/release/meridian"
OUT="${1:-$(mktemp -d -t meridian-profile-XXXXXX)}"
mkdir -p "$OUT"
NS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BR_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf "listenPort=%s\n" "$NS_PORT" > "$OUT/namesrv.conf"
cat > "$OUT/broker.conf" <<CONF
brokerClusterName=DefaultCluster
brokerName=profile
listenPort=$BR_PORT
haListenPort=0
storePathRootDir=$OUT/store
brokerIP1=127.0.0.1
namesrvAddr=127.0.0.1:$NS_PORT
flushDiskType=ASYNC_FLUSH
diskMaxUsedSpaceRatio=95
CONF
"$BIN" namesrv -c "$OUT/namesrv.conf" > "$OUT/namesrv.log" 2>&1 &
NS_PID=$!
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$BIN" broker -c "$OUT/broker.conf" > "$OUT/broker.log" 2>&1 &
BR_PID=$!
trap 'kill $NS_PID $BR_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    grep -q "meridian broker ready" "$OUT/broker.log" && break
    sleep 1
done
"$BIN" bench produce -n "127.0.0.1:$NS_PORT" -t Profile -w 8 --duration 30 --warmup 5 --json > "$OUT/produce.json"
"$BIN" bench consume -n "127.0.0.1:$NS_PORT" -t Profile --from-start --group profile --duration 30 --warmup 0 --json > "$OUT/consume.json"
kill -TERM "$BR_PID"
wait "$BR_PID" || true
python3 bench/callgrind_summary.py "$OUT/callgrind.out"
echo "profile: $OUT/callgrind.out (callgrind_annotate it for the full picture)"
