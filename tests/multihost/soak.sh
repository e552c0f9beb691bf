#!/bin/sh
# A seeded random fault soak on the multi-host harness (netns.sh): one
# batch of N stories15M requests on three workers while, every few
# seconds, one fault is drawn and later healed:
#   cut_worker     a worker's link down 1-4 s, then up
#   cut_daemon     the daemon's host cut from every worker 1-4 s
#   kill_worker    kill -9 of a worker, restarted at once
#   kill_daemon    kill -9 of margind, restarted on the same state directory
#   stop_daemon    SIGSTOP of margind 1-4 s, then SIGCONT
#   slow_link      a worker's link at 1 Mbit/s for 1-4 s
#   lossy_link     a worker drops 20 % of what it receives for 1-4 s (nftables)
# At the end: exactly once, byte-identical to an undisturbed run, the
# ledger's conservation (check.py); then the counts: faults by kind,
# requests re-run (dispatches past a shard's first), duplicate Results
# margind suppressed (margin_results_ignored_total, summed over its
# restarts), and the time to recover after each heal (until all three
# workers are connected again and the batch answers again).
#
#   tests/multihost/soak.sh BUILD_DIR [N] [SEED]      (as root)
# N defaults to $MH_SOAK_N or 1200; SEED to $MH_SEED or a random one, printed
# first: the same seed draws the same faults at the same points (the times
# of a run on a loaded machine still vary). Exit 77 with one line when this
# machine cannot make namespaces. bench/fault-soak.sh is the long form.
set -eu
BUILD=${1:?usage: soak.sh BUILD_DIR [N] [SEED]}
BUILD=$(cd "$BUILD" && pwd)
NAME=soak
. "$(dirname "$0")/netns.sh"
N=${2:-${MH_SOAK_N:-1200}}
SEED=${3:-${MH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}}
EVERY=${MH_FAULT_EVERY:-3}
echo "multihost soak: seed $SEED, $N requests, a fault every ${EVERY} s (replay: MH_SEED=$SEED $0 $BUILD $N)"

if ! why=$(can_netns); then
	echo "multihost: SKIP: cannot make network namespaces here: $why"
	exit 77
fi
net_up
keys
reference

# The draws: a linear congruential generator on the seed.
R=$SEED
draw() {	# draw K: DRAW = 0..K-1 (no subshell: R must advance)
	R=$(( (R * 1103515245 + 12345) % 2147483648 ))
	DRAW=$(( (R / 65536) % $1 ))
}

ST=$T/soak
IGN_SUM=0	# margin_results_ignored_total of margind's earlier lives
# A margind killed loses its counter: take it first.
daemon_restart() {
	IGN_SUM=$((IGN_SUM + $(metric margin_results_ignored_total)))
	daemon_kill
	daemon_start "$ST"
}

make_input "$T/in.jsonl" "$N"
daemon_start "$ST"
for h in w1 w2 w3; do worker_start "$h"; done
workers_joined 3
T0=$(now_ms)
BID=$(submit "$T/in.jsonl")
: > "$T/recover"
: > "$T/faults"

# recovered KIND T_HEAL: waits until three workers are connected and the
# batch answers again (or is done); records the milliseconds.
recovered() {
	workers_joined 3 1200
	p=$(progress "$BID")
	i=0
	while [ "$p" -lt "$N" ] && [ "$(progress "$BID")" -le "$p" ]; do
		i=$((i + 1)); [ $i -lt 1200 ] || fail "no answer within 120 s of healing $1"
		sleep 0.1
	done
	echo "$1 $(( $(now_ms) - $2 ))" >> "$T/recover"
}

KINDS="cut_worker cut_daemon kill_worker kill_daemon stop_daemon slow_link lossy_link"
while [ "$(progress "$BID")" -lt "$N" ]; do
	sleep "$EVERY"
	[ "$(progress "$BID")" -lt "$N" ] || break
	draw 7
	k=$(echo $KINDS | cut -d' ' -f$((DRAW + 1)))
	draw 3
	h=w$((DRAW + 1))
	draw 4
	d=$((DRAW + 1))
	echo "$k $h $d" >> "$T/faults"
	note "$(( ($(now_ms) - T0) / 1000 )) s, $(progress "$BID")/$N answered: $k $h ${d}s"
	case $k in
	cut_worker) link_cut "$h"; sleep "$d"; link_heal "$h" ;;
	cut_daemon) link_cut d; sleep "$d"; link_heal d ;;
	kill_worker) worker_kill "$h"; worker_start "$h" ;;
	kill_daemon) daemon_restart ;;
	stop_daemon) kill -STOP "$DPID"; sleep "$d"; kill -CONT "$DPID" ;;
	slow_link) slow "$h" 1mbit; sleep "$d"; fast "$h" ;;
	lossy_link) if lossy "$h" 20; then sleep "$d"; lossless "$h"; else echo "$k: no nft here, skipped" >&2; fi ;;
	esac
	recovered "$k" "$(now_ms)"
done
batch_wait "$BID" 600
T1=$(now_ms)
results "$BID" "$T/out.jsonl"
cost_report "$BID"
check "$BID" "$ST" "$T/out.jsonl" "$T/ref.jsonl" "$N" > "$T/check.out"
IGN_SUM=$((IGN_SUM + $(metric margin_results_ignored_total)))
rerun=$("$PY" -c "
import sqlite3, sys
db = sqlite3.connect('file:$ST/margin.db?mode=ro', uri=True)
print(db.execute('SELECT coalesce(sum(s.n_requests * (s.attempt - 1)), 0) FROM shards s JOIN jobs j ON j.id = s.job'
                 ' WHERE j.name = ? AND s.attempt > 1', ('$BID',)).fetchone()[0])")
computed=$(cat "$T"/w?.log | grep 'msg="shard done" batch='"$BID" | sed -n 's/.* requests=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
for h in w1 w2 w3; do worker_stop "$h"; done
daemon_stop

echo "multihost soak: seed $SEED: $N requests in $(( (T1 - T0) / 1000 )) s, $(cat "$T/check.out")"
echo "faults injected: $(wc -l < "$T/faults") ($(awk '{ print $1 }' "$T/faults" | sort | uniq -c | awk '{ printf "%s%s %d", s, $2, $1; s = ", " }'))"
echo "requests re-run: $rerun dispatched again; $((computed - N)) computed by a worker more than once (of $computed computed)"
echo "duplicate Results suppressed by margind: $IGN_SUM"
echo "time to recover after each heal (ms: three workers connected and the batch answering again):"
sort "$T/recover" | awk '
	{ v[$1] = v[$1] " " $2; n[$1]++; s[$1] += $2; if ($2 > m[$1]) m[$1] = $2 }
	END { for (k in n) printf "  %-12s n=%-3d mean %6d  max %6d  all:%s\n", k, n[k], s[k] / n[k], m[k], v[k] }' | sort
