#!/bin/sh
# The long form of the multi-host fault soak (tests/multihost/soak.sh):
# 5,000 stories15M requests on three workers in network namespaces, one
# random fault every 3 s (partition/heal, kill -9 and restart of a worker
# or of margind, SIGSTOP/SIGCONT, a 1 Mbit/s link, a lossy link). Prints
# the seed first and, at the end, the checks (exactly once, byte-identical,
# the ledger's conservation) and the figures: faults injected, requests
# re-run, duplicate Results suppressed, time to recover after each heal.
# As root; a figure, not a pass/fail timing.
#   bench/fault-soak.sh [BUILD_DIR] [N] [SEED]     (build, 5000, random)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
[ -x "$BUILD/daemon/margind" ] || { echo "bench/fault-soak.sh: no $BUILD/daemon/margind: build first (ninja -C $BUILD)" >&2; exit 2; }
MH_FAULT_EVERY=${MH_FAULT_EVERY:-3} exec tests/multihost/soak.sh "$BUILD" "${2:-5000}" ${3:+"$3"}
