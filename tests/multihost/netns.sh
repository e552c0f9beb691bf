# The multi-host harness: sourced by scenarios.sh and soak.sh with BUILD
# (the build directory) and NAME set. It builds a private network of its
# own: a switch namespace holding a bridge, one namespace for margind
# (10.231.N.1) and three worker hosts (10.231.N.11-13), each joined to the
# bridge by a veth pair made inside those namespaces (the host's root
# namespace gets no device, route or address). Names carry a per-run
# suffix, so two runs (or a CI clone beside a developer's run) never meet.
# Everything it made (namespaces, links, the mount of a full-disk test,
# processes) goes on exit, pass or fail (trap on EXIT INT TERM).
#
# Faults: link_cut HOST / link_heal HOST (the switch's port of that host goes down:
# the host's TCP connections see silence, as on a pulled cable), slow HOST
# RATE / fast HOST (tbf both ways), lossy HOST PCT / lossless HOST
# (nftables drops PCT % of the packets the host receives).
#
# Programs run inside namespaces with `ip netns exec`, which execs them:
# the PIDs kept here are margind's and the workers' own (kill -STOP works).
set -eu

: "${BUILD:?BUILD: the build directory}" "${NAME:?}"
MARGIND=${MARGIND:-$BUILD/daemon/margind}
MARGIN_WORKER=${MARGIN_WORKER:-$BUILD/worker/margin-worker}
MARGINCTL=${MARGINCTL:-$BUILD/cli/marginctl}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
SHARED=${MARGIN_SHARED_DIR:-$SRC/../shared}
MODEL=${MH_MODEL:-$SHARED/models/stories15M-q8_0.gguf}
[ -f "$MODEL" ] || MODEL=$SRC/models/stories15M-q8_0.gguf
MODEL_NAME=stories15M-q8_0
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

T=$(mktemp -d "${TMPDIR:-/tmp}/margin-mh-$NAME-XXXXXX")
SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NET=10.231.$(( $(od -An -N1 -tu1 /dev/urandom) % 250 + 1 ))
NS_SW=mh$SFX-sw
NS_D=mh$SFX-d
HOSTS="d w1 w2 w3"
PIDS=""
MOUNTS=""

ns_of() { [ "$1" = d ] && echo "$NS_D" || echo "mh$SFX-$1"; }
addr_of() { case $1 in d) echo "$NET.1" ;; w*) echo "$NET.1${1#w}" ;; esac; }
port_of() { echo "mh$SFX$1"; }	# the switch's end of HOST's link

mh_cleanup() {
	rc=$?
	trap - EXIT INT TERM
	for p in $PIDS; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for m in $MOUNTS; do umount -l "$m" 2>/dev/null || true; done
	for h in $HOSTS; do ip netns del "$(ns_of "$h")" 2>/dev/null || true; done
	ip netns del "$NS_SW" 2>/dev/null || true
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "---- $f ----" >&2
			tail -n 25 "$f" >&2
		done
		if [ -n "${KEEP_TMP:-}" ]; then echo "(state and logs kept in $T)" >&2; else echo "(KEEP_TMP=1 keeps the state and logs)" >&2; fi
	fi
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
	left=$(ip netns list | grep -c "^mh$SFX-" || true)
	[ "$left" -eq 0 ] || echo "multihost: $left namespaces of this run left behind" >&2
	exit $rc
}
trap mh_cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL [$NAME${SC:+:$SC}]: $*" >&2; exit 1; }
note() { echo "multihost[$NAME${SC:+:$SC}]: $*" >&2; }
now_ms() { date +%s%3N; }

# can_netns: whether this machine lets us make namespaces (root, ip, the
# kernel); prints why not.
can_netns() {
	[ "$(id -u)" -eq 0 ] || { echo "not root"; return 1; }
	command -v ip > /dev/null || { echo "no ip(8)"; return 1; }
	ip netns add "mh$SFX-probe" 2>/dev/null || { echo "ip netns add failed (no CAP_SYS_ADMIN, or no namespaces)"; return 1; }
	if ! ip -n "mh$SFX-probe" link add mh"$SFX"x type veth peer name mh"$SFX"y 2>/dev/null; then
		ip netns del "mh$SFX-probe"
		echo "no veth devices in this kernel"
		return 1
	fi
	ip netns del "mh$SFX-probe"
	return 0
}

# net_up: the switch, the four hosts, their addresses, every link up.
net_up() {
	ip netns add "$NS_SW"
	ip -n "$NS_SW" link add br0 type bridge
	ip -n "$NS_SW" link set br0 up
	ip -n "$NS_SW" link set lo up
	for h in $HOSTS; do
		ns=$(ns_of "$h")
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip link add eth0 netns "$ns" type veth peer name "$(port_of "$h")" netns "$NS_SW"
		ip -n "$NS_SW" link set "$(port_of "$h")" master br0 up
		ip -n "$ns" addr add "$(addr_of "$h")/24" dev eth0
		ip -n "$ns" link set eth0 up
	done
	for h in $HOSTS; do
		i=0
		until ip -n "$(ns_of "$h")" link show eth0 | grep -q LOWER_UP; do
			i=$((i + 1)); [ $i -lt 50 ] || fail "the link of host $h does not come up"
			sleep 0.1
		done
	done
}

link_cut() { ip -n "$NS_SW" link set "$(port_of "$1")" down; }
link_heal() { ip -n "$NS_SW" link set "$(port_of "$1")" up; }
# slow HOST RATE: both directions of HOST's link limited to RATE (tbf).
slow() {
	ip -n "$NS_SW" link set dev "$(port_of "$1")" up
	tc -n "$NS_SW" qdisc replace dev "$(port_of "$1")" root tbf rate "$2" burst 16kb latency 2s
	tc -n "$(ns_of "$1")" qdisc replace dev eth0 root tbf rate "$2" burst 16kb latency 2s
}
fast() {
	tc -n "$NS_SW" qdisc del dev "$(port_of "$1")" root 2>/dev/null || true
	tc -n "$(ns_of "$1")" qdisc del dev eth0 root 2>/dev/null || true
}
# lossy HOST PCT: HOST drops PCT % of what it receives (nftables; the
# kernel has no netem). Returns 1 where nft is missing.
lossy() {
	command -v nft > /dev/null || return 1
	ip netns exec "$(ns_of "$1")" nft -f - <<EOF
table inet mhloss {
	chain in { type filter hook input priority 0; policy accept; numgen random mod 100 < $2 drop; }
}
EOF
}
lossless() { ip netns exec "$(ns_of "$1")" nft delete table inet mhloss 2>/dev/null || true; }

# keys: CURVE pairs for margind and the three workers; the allow dir.
keys() {
	mkdir -p "$T/keys" "$T/allow"
	for k in margind w1 w2 w3; do
		"$MARGINCTL" keygen "$k" -o "$T/keys" > /dev/null || fail "marginctl keygen $k"
	done
	cp "$T/keys"/w?.pub "$T/allow/"
	KEY=sk-mh-$SFX
	printf '%s\n' "$KEY" > "$T/api-keys"
	chmod 600 "$T/api-keys"
	# The workers reconnect fast: a test heals in seconds, not 32.
	printf '[worker]\nreconnect_min = 200ms\nreconnect_max = 1s\n' > "$T/worker.conf"
	export MARGIN_API_KEY="$KEY" MARGIN_URL="http://127.0.0.1:8080"
}

# Heartbeat 250 ms x liveness 4: a host silent 1 s is dead, both ways.
HB=250ms LIVENESS=4
# daemon_start STATE [FLAGS...]: margind in the daemon's host, CURVE on
# the link address, HTTP on that host's loopback; sets DPID.
daemon_start() {
	st=$1; shift
	mkdir -p "$st"
	rm -f "$st/http" "$st/endpoints"
	ip netns exec "$NS_D" "$MARGIND" --state-dir "$st" --http 127.0.0.1:8080 \
		--workers "tcp://$(addr_of d):5555" --curve-secret "$T/keys/margind.key" --curve-allow "$T/allow" \
		--api-keys "$T/api-keys" --set scheduler.heartbeat=$HB --set scheduler.liveness=$LIVENESS \
		--set scheduler.shard_requests=4 --set "meter.hardware_dir=$SRC/deploy/hardware" \
		--set "meter.prices_dir=$SRC/deploy/prices" "$@" >> "$T/margind.log" 2>&1 &
	DPID=$!
	PIDS="$PIDS $DPID"
	i=0
	until [ -s "$st/http" ]; do
		i=$((i + 1)); [ $i -lt 400 ] || fail "margind did not come up"
		kill -0 $DPID 2>/dev/null || fail "margind exited"
		sleep 0.05
	done
}

daemon_kill() {
	kill -CONT "$DPID" 2>/dev/null || true
	kill -9 "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
}

daemon_stop() {
	kill -CONT "$DPID" 2>/dev/null || true
	kill -TERM "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
}

# worker_start HOST: a stories15M worker on HOST (w1..w3), one engine
# thread, 4 slots; sets WPID_<HOST>.
worker_start() {
	h=$1
	OPENBLAS_NUM_THREADS=1 ip netns exec "$(ns_of "$h")" "$MARGIN_WORKER" serve --config "$T/worker.conf" \
		--scheduler "tcp://$(addr_of d):5555" --model "$MODEL" --name "$h" --threads 1 --slots 4 \
		--curve-secret "$T/keys/$h.key" --curve-server "$T/keys/margind.pub" --resend 1s \
		--hardware cpu-2vcpu >> "$T/$h.log" 2>&1 &
	eval "WPID_$h=$!"
	PIDS="$PIDS $!"
}

worker_pid() { eval "echo \$WPID_$1"; }

worker_kill() {
	p=$(worker_pid "$1")
	kill -9 "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

worker_stop() {
	p=$(worker_pid "$1")
	kill -TERM "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

# in_d CMD...: CMD in the daemon's host (curl, marginctl: the HTTP API
# listens on that host's loopback).
in_d() { ip netns exec "$NS_D" "$@"; }

# api METHOD PATH [curl args]: prints the HTTP status; body in $T/body.json.
api() {
	m=$1; p=$2; shift 2
	in_d curl -s -m 20 -o "$T/body.json" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $KEY" "$@" \
		"http://127.0.0.1:8080$p" || echo 000
}

json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# metric NAME: the sum of NAME's samples on /metrics (0 when absent).
metric() {
	in_d curl -s -m 10 -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/metrics |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}

# workers_joined N: margind says N workers are connected (/readyz).
workers_joined() {
	i=0
	while :; do
		w=$(in_d curl -s -m 5 http://127.0.0.1:8080/readyz | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("workers", 0))' 2>/dev/null || echo 0)
		[ "$w" -ge "$1" ] && return 0
		i=$((i + 1)); [ $i -lt "${2:-600}" ] || fail "only $w of $1 workers joined"
		sleep 0.1
	done
}

# make_input OUT N: N completions of stories15M, ids req-00000...; the
# bodies repeat every $PERIOD lines (240): an undisturbed run of the first
# PERIOD is the reference of any N. Greedy, every third one sampled with a
# seed (still deterministic).
PERIOD=240
make_input() {
	"$PY" - "$1" "$2" "$PERIOD" "$MODEL_NAME" "${MAX_TOKENS:-24}" <<'EOF'
import json, sys
out, n, period, model, mt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
with open(out, "w") as f:
    for i in range(n):
        k = i % period
        body = {"model": model, "prompt": f"Once upon a time, {k % 97} little", "max_tokens": mt + k % 5, "temperature": 0}
        if k % 3 == 0:
            body.update(temperature=0.8, seed=1000 + k)
        f.write(json.dumps({"custom_id": f"req-{i:05d}", "method": "POST", "url": "/v1/completions",
                            "body": body}) + "\n")
EOF
}

# submit FILE: prints the batch id.
submit() {
	in_d "$MARGINCTL" submit "$1" 2> "$T/submit.err" || fail "submit: $(cat "$T/submit.err")"
}

# batch_wait BID SECONDS: until the batch ended (any final status).
batch_wait() {
	end=$(( $(date +%s) + $2 ))
	while :; do
		c=$(api GET "/v1/batches/$1")
		if [ "$c" = 200 ]; then
			s=$(json "$T/body.json" 'd["status"]')
			case $s in completed | failed | expired | cancelled) return 0 ;; esac
		fi
		[ "$(date +%s)" -lt "$end" ] || fail "batch $1 not done after $2 s (status $c: $(head -c 300 "$T/body.json"))"
		sleep 0.25
	done
}

# progress BID: answered requests so far (completed + failed).
progress() {
	if [ "$(api GET "/v1/batches/$1")" = 200 ]; then
		json "$T/body.json" 'd["request_counts"]["completed"] + d["request_counts"]["failed"]'
	else
		echo -1
	fi
}

# wait_progress BID N: until at least N requests are answered.
wait_progress() {
	i=0
	until [ "$(progress "$1")" -ge "$2" ]; do
		i=$((i + 1)); [ $i -lt 1200 ] || fail "batch $1 did not reach $2 answers"
		sleep 0.1
	done
}

# results BID OUT: the output file of a completed batch.
results() {
	in_d "$MARGINCTL" results "$1" -o "$2" 2> "$T/results.err" || fail "results $1: $(cat "$T/results.err")"
}

# check BID STATE OUT REF N: exactly once, byte-identical to REF (line i
# against REF's line i % PERIOD),
# conservation (tests/multihost/check.py).
check() {
	"$PY" "$HERE/check.py" --batch "$1" --state "$2" --out "$3" --ref "$4" --n "$5" --period "$PERIOD" \
		--cost "$T/cost.json" --batch-json "$T/batch.json" || fail "check of $1"
}

# cost_report BID: /v1/cost and the batch object into $T for check.py.
cost_report() {
	[ "$(api GET "/v1/cost?batch=$1&format=json")" = 200 ] || fail "/v1/cost: $(head -c 300 "$T/body.json")"
	cp "$T/body.json" "$T/cost.json"
	[ "$(api GET "/v1/batches/$1")" = 200 ] || fail "GET batch"
	cp "$T/body.json" "$T/batch.json"
}

# reference: an undisturbed run of the first PERIOD bodies (or N, when
# fewer) on the three workers: $T/ref.jsonl, checked like any run.
reference() {
	RN=$PERIOD
	[ "$N" -ge "$PERIOD" ] || RN=$N
	make_input "$T/ref-in.jsonl" "$RN"
	daemon_start "$T/ref"
	for h in w1 w2 w3; do worker_start "$h"; done
	workers_joined 3
	BID=$(submit "$T/ref-in.jsonl")
	batch_wait "$BID" 300
	results "$BID" "$T/ref.jsonl"
	cost_report "$BID"
	check "$BID" "$T/ref" "$T/ref.jsonl" "$T/ref.jsonl" "$RN" > "$T/check.out"
	for h in w1 w2 w3; do worker_stop "$h"; done
	daemon_stop
	note "reference: $(cat "$T/check.out")"
}
