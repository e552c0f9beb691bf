# The scaffolding the shell scenarios share. Source it with NAME (the
# script's short name, for paths and messages) and SCENARIO set: a
# temporary directory $T (kept when KEEP_TMP is set), PIDS killed on exit
# with the tail of every $T/*.log shown when the scenario failed, and
# fail, note and json.
T=$(mktemp -d "${TMPDIR:-/tmp}/margin-$NAME-XXXXXX")
PIDS=""
cleanup() {
	rc=$?
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "---- $f ----" >&2
			tail -n 30 "$f" >&2
		done
	fi
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL [$SCENARIO]: $*" >&2; exit 1; }
note() { echo "test_$NAME[$SCENARIO]: $*" >&2; }

# json FILE EXPR: prints python3's eval of EXPR with d = the parsed file.
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
