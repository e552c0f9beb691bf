#!/bin/sh
# The multi-host fault scenarios: margind and three stories15M workers on
# hosts of their own (network namespaces, tests/multihost/netns.sh), CURVE
# on, one fault per scenario during a batch.
#
#   tests/multihost/scenarios.sh BUILD_DIR [SCENARIO...]      (as root)
#     partition_worker  w1 cut off longer than the liveness timeout, healed
#     partition_daemon  the daemon's host cut off from every worker, healed
#     slow_link         w3 on a 1 Mbit/s link among fast ones
#     disk_full         the state directory's filesystem fills up, then frees
#     sigstop_daemon    margind stopped longer than the heartbeat timeout
#     rolling_restart   every worker restarted in turn (docs/operations.md)
#   (default: all six). First an undisturbed run of the same batch gives the
#   reference; every scenario then checks exactly-once, byte-identical
#   answers and the ledger's conservation (check.py). Exit 77 with one line
#   when this machine cannot make namespaces. MH_N sets the batch size (240).
set -eu
BUILD=${1:?usage: scenarios.sh BUILD_DIR [SCENARIO...]}
shift
BUILD=$(cd "$BUILD" && pwd)
NAME=scenarios
. "$(dirname "$0")/netns.sh"
ALL="partition_worker partition_daemon slow_link disk_full sigstop_daemon rolling_restart"
LIST=${*:-$ALL}
for s in $LIST; do
	case " $ALL " in *" $s "*) ;; *) fail "unknown scenario $s (known: $ALL)" ;; esac
done

if ! why=$(can_netns); then
	echo "multihost: SKIP: cannot make network namespaces here: $why"
	exit 77
fi
N=${MH_N:-240}
net_up
keys
make_input "$T/in.jsonl" "$N"

# run_start STATE [FLAGS]: margind and the three workers; the batch submitted.
run_start() {
	daemon_start "$@"
	for h in w1 w2 w3; do worker_start "$h"; done
	workers_joined 3
	T0=$(now_ms)
	BID=$(submit "$T/in.jsonl")
}

# run_end STATE: waits for the batch, checks it, stops every process.
run_end() {
	batch_end "$1"
	IGN=$(ignored)
	for h in w1 w2 w3; do worker_stop "$h"; done
	daemon_stop
	note "$(cat "$T/check.out")"
}

# batch_end STATE: waits for the batch $BID and checks it.
batch_end() {
	batch_wait "$BID" 240
	T1=$(now_ms)
	results "$BID" "$T/out-$SC-$BID.jsonl"
	cost_report "$BID"
	check "$BID" "$1" "$T/out-$SC-$BID.jsonl" "$T/ref.jsonl" "$N" > "$T/check.out"
}

# A line of the daemon's log since the scenario began.
dlog() { sed -n "$LOG0,\$p" "$T/margind.log"; }

# wait_dlog PATTERN MESSAGE: until margind logs PATTERN (5 s at most).
wait_dlog() {
	i=0
	until dlog | grep -q "$1"; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "$2"
		sleep 0.05
	done
}

# ignored: margind's count of Results acknowledged and dropped
# (duplicates, stale attempts).
ignored() { metric margin_results_ignored_total; }

sc_reference() { reference; }

sc_partition_worker() {
	run_start "$T/$SC"
	wait_progress "$BID" 4
	conn0=$(grep -c 'msg="connected"' "$T/w1.log" || true)
	link_cut w1
	tc0=$(now_ms)
	# Longer than heartbeat x liveness (1 s): margind gives w1 up.
	sleep 3
	dlog | grep -q 'msg="worker lost" worker=.* name=w1 .*heartbeat timeout' || fail "margind did not give w1 up"
	link_heal w1
	th=$(now_ms)
	i=0
	until [ "$(grep -c 'msg="connected"' "$T/w1.log" || true)" -gt "$conn0" ]; do
		i=$((i + 1)); [ $i -lt 300 ] || fail "w1 did not come back"
		sleep 0.05
	done
	REJOIN=$(( $(now_ms) - th ))
	# The Results w1 finished while cut off, re-sent now.
	late=$(grep 'msg="connected"' "$T/w1.log" | tail -n 1 | sed -n 's/.* unacked=\([0-9]*\).*/\1/p')
	run_end "$T/$SC"
	[ "${late:-0}" -eq 0 ] || [ "$IGN" -ge 1 ] || fail "w1 came back with $late late Results and margind ignored none"
	note "w1 cut $(( th - tc0 )) ms, back $REJOIN ms after the heal with ${late:-0} late Results; margind ignored $IGN Results (margin_results_ignored_total)"
}

sc_partition_daemon() {
	run_start "$T/$SC"
	wait_progress "$BID" 8
	before=$(progress "$BID")
	link_cut d
	tc0=$(now_ms)
	# PART_S (5 s by default): five liveness timeouts, past every
	# worker's reconnect back-off (1 s at most here).
	sleep "${PART_S:-5}"
	[ "$(dlog | grep -c 'msg="worker lost".*heartbeat timeout')" -ge 3 ] || fail "margind did not give every worker up"
	mid=$(progress "$BID")
	link_heal d
	th=$(now_ms)
	workers_joined 3
	REJOIN=$(( $(now_ms) - th ))
	wait_progress "$BID" $((mid < N ? mid + 1 : N))
	RESUME=$(( $(now_ms) - th ))
	run_end "$T/$SC"
	note "daemon cut $(( th - tc0 )) ms (answers $before -> $mid while cut); 3 workers back $REJOIN ms after the heal, first answer after $RESUME ms"
}

sc_slow_link() {
	slow w3 1mbit
	run_start "$T/$SC"
	# Record when each answer count was reached.
	: > "$T/prog"
	while :; do
		p=$(progress "$BID")
		echo "$(( $(now_ms) - T0 )) $p" >> "$T/prog"
		[ "$p" -lt "$N" ] || break
		sleep 0.2
	done
	share=$("$PY" -c "import sqlite3,sys; db=sqlite3.connect('file:$T/$SC/margin.db?mode=ro', uri=True); print(' '.join('%s=%d' % r for r in db.execute('SELECT worker, count(*) FROM ledger WHERE job=? GROUP BY worker ORDER BY worker', ('$BID',))))" 2>/dev/null || true)
	fast w3
	run_end "$T/$SC"
	t50=$(awk -v n=$((N / 2)) '$2 >= n { print $1; exit }' "$T/prog")
	t100=$(awk -v n=$N '$2 >= n { print $1; exit }' "$T/prog")
	note "w3 at 1 Mbit/s: median answer at $t50 ms, last at $t100 ms (tail/median $(awk -v a="$t100" -v b="$t50" 'BEGIN { printf "%.2f", a / b }')); calls by worker: $share"
}

sc_disk_full() {
	# The state directory on a 48 MiB tmpfs; margind keeps 16 MiB free.
	mkdir -p "$T/$SC"
	mount -t tmpfs -o size=48m "mh$SFX-state" "$T/$SC"
	MOUNTS="$MOUNTS $T/$SC"
	run_start "$T/$SC" --set journal.min_free=16777216
	wait_progress "$BID" 4
	# Another writer fills the filesystem to 8 MiB short of full.
	avail=$(df -k --output=avail "$T/$SC" | tail -n 1)
	dd if=/dev/zero of="$T/$SC/fill" bs=1k count=$((avail - 8192)) status=none 2>/dev/null || true
	tf=$(now_ms)
	wait_dlog 'msg="storage low: refusing new work' "no log line of the full disk"
	# New work: 507 with a clear error; reads keep working.
	code=$(api POST /v1/files -F purpose=batch -F "file=@$T/in.jsonl")
	[ "$code" = 507 ] || fail "an upload on a full disk answered $code: $(cat "$T/body.json")"
	grep -q 'insufficient_storage' "$T/body.json" || fail "507 without its code: $(cat "$T/body.json")"
	code=$(api POST /v1/batches -H 'content-type: application/json' -d '{"input_file_id":"file-x","endpoint":"/v1/completions","completion_window":"24h"}')
	[ "$code" = 507 ] || fail "a batch create on a full disk answered $code"
	[ "$(api GET "/v1/batches/$BID")" = 200 ] || fail "GET of the batch on a full disk"
	[ "$(metric margin_storage_full)" = 1 ] || fail "margin_storage_full is not 1"
	sleep 2
	kill -0 "$DPID" || fail "margind died on the full disk"
	held=$(progress "$BID")
	sleep 1
	[ "$(progress "$BID")" -lt "$N" ] || fail "the batch finished while the disk was full: dispatch went on"
	rm -f "$T/$SC/fill"
	tr=$(now_ms)
	wait_dlog 'msg="storage back: accepting new work' "margind did not see the space come back"
	RESUME=$(( $(now_ms) - tr ))
	code=$(api POST /v1/files -F purpose=batch -F "file=@$T/in.jsonl")
	[ "$code" = 200 ] || fail "an upload after space returned answered $code"
	batch_end "$T/$SC"
	note "$(cat "$T/check.out")"
	note "disk full $(( tr - tf )) ms: uploads and creates 507, reads 200, $held of $N answered then; resumed $RESUME ms after space returned"

	# 2. The last byte at once, under a running batch: faster than the
	# watch looks, so a commit may fail and margind stop. Then margind
	# starts again on the still full disk (a crash or a reboot there, or
	# systemd's Restart=on-failure): 507 for new work, reads, and it
	# resumes by itself.
	LOG0=$(( $(wc -l < "$T/margind.log") + 1 ))
	BID=$(submit "$T/in.jsonl")
	wait_progress "$BID" 4
	dd if=/dev/zero of="$T/$SC/fill" bs=1M status=none 2>/dev/null || true
	sleep 1.5
	if kill -0 "$DPID" 2>/dev/null; then
		how="kept running (the reserve took the commits), then was killed"
		daemon_kill
	else
		dlog | grep -q 'msg="stopping: the journal refused a commit"' || fail "margind stopped without saying why"
		wait "$DPID" 2>/dev/null || true
		how="stopped on a failed commit"
	fi
	# Whatever margind freed (its first reserve) the writer takes too: the
	# restart finds the disk full to the last byte, but for its own
	# start reserve.
	dd if=/dev/zero of="$T/$SC/fill2" bs=4k status=none 2>/dev/null || true
	[ "$(df -k --output=avail "$T/$SC" | tail -n 1)" -le 4 ] || fail "the disk is not full to the last byte"
	daemon_start "$T/$SC" --set journal.min_free=16777216
	wait_dlog 'msg="storage low: refusing new work' "no log line of the full disk (2)"
	code=$(api POST /v1/files -F purpose=batch -F "file=@$T/in.jsonl")
	[ "$code" = 507 ] || fail "an upload on a disk full to the last byte answered $code"
	[ "$(api GET "/v1/batches/$BID")" = 200 ] || fail "GET of the batch on a disk full to the last byte"
	rm -f "$T/$SC/fill" "$T/$SC/fill2"
	tr=$(now_ms)
	wait_dlog 'msg="storage back: accepting new work' "margind did not see the space come back (2)"
	RESUME=$(( $(now_ms) - tr ))
	run_end "$T/$SC"
	note "filled to the last byte: margind $how; resumed $RESUME ms after space returned"
}

# silent: how many times the workers gave margind up, all their logs together.
silent() { cat "$T"/w?.log | grep -c 'reason="scheduler silent"' || true; }

sc_sigstop_daemon() {
	sil0=$(silent)
	run_start "$T/$SC"
	wait_progress "$BID" 8
	kill -STOP "$DPID"
	ts=$(now_ms)
	# Longer than the workers' heartbeat x liveness (1 s).
	sleep 3
	kill -CONT "$DPID"
	tc1=$(now_ms)
	p=$(progress "$BID")
	wait_progress "$BID" $((p < N ? p + 1 : N))
	RESUME=$(( $(now_ms) - tc1 ))
	run_end "$T/$SC"
	note "margind stopped $(( tc1 - ts )) ms; workers that gave it up: $(( $(silent) - sil0 )); next answer $RESUME ms after SIGCONT"
}

sc_rolling_restart() {
	# Three times the batch: three restarts of about a second each fall
	# inside it even on an idle machine.
	NR=$N
	N=$((3 * NR))
	make_input "$T/in.jsonl" "$N"
	run_start "$T/$SC"
	wait_progress "$BID" 8
	for h in w1 w2 w3; do
		[ "$(progress "$BID")" -lt "$N" ] || fail "the batch ended before $h's restart: make MH_N larger"
		tr=$(now_ms)
		worker_stop "$h"	# SIGTERM: finishes its shards, says Bye
		worker_start "$h"
		workers_joined 3
		note "$h restarted, back in $(( $(now_ms) - tr )) ms, $(progress "$BID") of $N answered"
	done
	run_end "$T/$SC"
	[ "$(dlog | grep -c 'msg="worker lost".*reason="worker said bye')" -ge 3 ] || fail "not every worker said Bye"
	N=$NR
	make_input "$T/in.jsonl" "$N"
}

echo "multihost scenarios: $N requests each (seconds, the reference run first):"
for SC in reference $LIST; do
	LOG0=$(( $(cat "$T/margind.log" 2>/dev/null | wc -l) + 1 ))
	s0=$(now_ms)
	"sc_$SC"
	printf '%-18s %6.1f s\n' "$SC" "$(awk -v a="$(now_ms)" -v b="$s0" 'BEGIN { print (a - b) / 1000 }')"
done
echo "multihost scenarios: all passed"
