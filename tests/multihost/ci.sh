#!/bin/sh
# The multi-host suite as CI runs it (.ci/run, as root): the six fault
# scenarios (scenarios.sh, 240 requests each) and the CI form of the soak
# (soak.sh, $MH_SOAK_N requests, 4000 by default, a fault every 2 s: about
# 1-3 minutes on 2 cores; the whole suite 3-4).
# Writes BUILD_DIR/multihost-testlog.json, one line per scenario and one for
# the soak in the shape of meson's test log ("name", "result": OK, FAIL or
# SKIP), for deploy/test-summary.py. Where namespaces cannot be made each
# entry is SKIP and the reason is printed once.
#   tests/multihost/ci.sh BUILD_DIR
set -u
BUILD=${1:?usage: ci.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
LOG=$BUILD/multihost-testlog.json
OUT=$BUILD/multihost-logs
mkdir -p "$OUT"
: > "$LOG"
SCEN="partition_worker partition_daemon slow_link disk_full sigstop_daemon rolling_restart"

entry() { printf '{"name": "multihost-%s", "result": "%s"}\n' "$1" "$2" >> "$LOG"; }

rc=0
timeout 480 "$HERE/scenarios.sh" "$BUILD" > "$OUT/scenarios.out" 2> "$OUT/scenarios.err"
src=$?
grep -v '^ts=' "$OUT/scenarios.err" | grep -E '^(multihost|FAIL)' || true
cat "$OUT/scenarios.out"
if [ $src -eq 77 ]; then
	for s in $SCEN soak; do entry "$s" SKIP; done
	echo "multihost: the 7 entries count as skipped"
	exit 0
fi
failed=$(sed -n 's/^FAIL \[scenarios:\([a-z_]*\)\].*/\1/p' "$OUT/scenarios.err" | head -n 1)
for s in $SCEN; do
	if [ $src -eq 0 ] || grep -q "^$s " "$OUT/scenarios.out"; then
		entry "$s" OK
	else
		entry "$s" FAIL
	fi
done
if [ $src -ne 0 ]; then
	rc=1
	echo "multihost: scenarios.sh exited $src${failed:+ in $failed}; its log: $OUT/scenarios.err"
	tail -n 60 "$OUT/scenarios.err"
fi

MH_FAULT_EVERY=${MH_FAULT_EVERY:-2} timeout 420 "$HERE/soak.sh" "$BUILD" "${MH_SOAK_N:-4000}" > "$OUT/soak.out" 2> "$OUT/soak.err"
krc=$?
head -n 1 "$OUT/soak.out"	# the seed first: a failure replays with it
grep -v '^ts=' "$OUT/soak.err" | grep -E '^(multihost|FAIL)' || true
tail -n +2 "$OUT/soak.out"
case $krc in
0) entry soak OK ;;
77) entry soak SKIP ;;
*) entry soak FAIL; rc=1; echo "multihost: soak.sh exited $krc; its log: $OUT/soak.err"; tail -n 60 "$OUT/soak.err" ;;
esac
exit $rc
