#!/usr/bin/env bash
# Soak run of the failure tests with real processes: every kill case of
# master/slave and Raft groups repeated MERIDIAN_TRIALS times (default 50;
# the test suite runs 10), one case at a time, with what each trial printed
# (writes refused, time to the first SEND_OK from a new leader).
#
#   bench/soak.sh [TRIALS]
#
# Takes about 5 minutes per 10 trials of all cases on a 2-CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export MERIDIAN_TRIALS="${1:-${MERIDIAN_TRIALS:-50}}"
cargo build --bin meridian
export MERIDIAN_BIN="$PWD/target/debug/meridian"
cargo test -p meridian --test master_slave --test raft_group -- --test-threads 1 --nocapture
