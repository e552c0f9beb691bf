#!/bin/sh
# The deployment files against the real programs: what an operator copies
# out of deploy/ and systemd/ must work as docs/operations.md says.
#
#   test_deploy.sh SCENARIO
#     conf     deploy/conf/{margind,worker}.conf: every key in them is one the
#              program reads and the reverse (scanned from the C sources);
#              margind starts with the file (state dir and ports overridden
#              by flags), a worker started with its file connects over
#              CURVE; both again with every commented setting switched on
#              (and those settings visible in what they do); a bad value of
#              each typed key is refused (exit 2) with the key named.
#     units    systemd/*.in: `systemd-analyze verify` when the tool exists
#              (and a note when it does not); always: the units' ExecStart,
#              LoadCredential and ExecReload lines run as systemd would run
#              them (paths moved under a temp root): margind and
#              margin-worker@0 with the example configs, a worker with an
#              unknown key refused until its .pub is added and ExecReload
#              (SIGHUP) rereads the allow dir, SIGTERM drains to exit 0.
#     metrics  deploy/prometheus/*.yml: every metric and label name in the
#              rules exists in a live margind's /metrics after traffic
#              (a batch on a fake worker and one on a real stories260K
#              worker, with [meter] sale_price set, so every family margind
#              registers has samples); rule and scrape-config structure;
#              /metrics asks for the API key the scrape config sends.
#     k8s      deploy/k8s/*.yaml parse (python3-yaml) and fit together
#              (selectors, ports, probes, volumes, Secrets from secrets.sh);
#              then the containers' command lines run with the ConfigMaps
#              and Secrets materialized at their mount paths: margind
#              answers the probes, a worker connects with the Secret's key.
#     slurm    deploy/slurm/margin-workers.sbatch under a stand-in srun that
#              runs one task per "node" locally: every node's worker joins
#              with its name and key; SIGTERM ends the job with exit 0.
#     backup   the backup and restore of docs/operations.md: sqlite3 .backup
#              of a live journal plus the files, restored elsewhere, serves
#              the same batch and output.
#
# Binaries come from $MARGIND, $MARGIN_WORKER, $MARGINCTL, the tree from
# $MARGIN_SOURCE_ROOT (meson sets them). Every process started here is
# killed on exit; each wait is bounded. Helpers are python3 (a build
# dependency) and python3-yaml (deploy/install-deps.sh).
set -eu

SCENARIO=${1:?usage: test_deploy.sh SCENARIO}
: "${MARGIND:?run through meson test}" "${MARGIN_WORKER:?}" "${MARGINCTL:?}" "${MARGIN_SOURCE_ROOT:?}"
SRC=$MARGIN_SOURCE_ROOT
SHARED=${MARGIN_SHARED_DIR:-}
[ -n "$SHARED" ] || SHARED=$SRC/../shared

NAME=deploy
. "$(dirname "$0")/lib.sh"

# daemon_wait STATE PID: margind wrote STATE/http and STATE/endpoints;
# sets URL and WEP (the worker endpoint).
daemon_wait() {
	i=0
	until [ -s "$1/http" ] && [ -s "$1/endpoints" ]; do
		i=$((i + 1)); [ $i -lt 400 ] || fail "margind did not come up (state $1)"
		kill -0 "$2" 2>/dev/null || fail "margind exited (state $1)"
		sleep 0.05
	done
	URL=$(cat "$1/http")
	WEP=$(sed -n 's/^workers=//p' "$1/endpoints")
}

# workers_json STATE: margind's worker list (control socket) to $T/workers.json.
workers_json() {
	"$MARGINCTL" job --state-dir "$1" workers > "$T/workers.json" 2> "$T/ctl.err" ||
		fail "marginctl job workers: $(cat "$T/ctl.err")"
}

# wait_worker STATE NAME [PID]: a worker called NAME is connected; its
# entry is in $T/worker.json. PID: the process that runs it (fail at once
# when it is gone).
wait_worker() {
	i=0
	while :; do
		[ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null || fail "worker $2 exited (pid $3)"
		workers_json "$1"
		python3 - "$T/workers.json" "$2" "$T/worker.json" <<'EOF' && return 0
import json, sys
ws = [w for w in json.load(open(sys.argv[1]))["workers"] if w["name"] == sys.argv[2]]
if not ws:
    sys.exit(1)
json.dump(ws[0], open(sys.argv[3], "w"))
EOF
		i=$((i + 1)); [ $i -lt 600 ] || fail "worker $2 did not connect"
		sleep 0.05
	done
}

# wait_log FILE PATTERN: a line matching PATTERN (grep -E) appears.
wait_log() {
	i=0
	until grep -Eq "$2" "$1" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 600 ] || fail "no line /$2/ in $1"
		sleep 0.05
	done
}

# stop PID WHAT: SIGTERM (what systemd, kubelet and Slurm send) must end
# the process with exit 0.
stop() {
	kill -TERM "$1" 2>/dev/null || true
	st=0
	wait "$1" || st=$?
	[ $st = 0 ] || fail "$2: exit $st after SIGTERM, not 0"
}

# make_input FILE N MODEL: N completion requests for MODEL.
make_input() {
	python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
out, n, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(out, "w") as f:
    for i in range(n):
        body = {"model": model, "prompt": f"Once upon a time {i}", "max_tokens": 4}
        f.write(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/completions",
                            "body": body}) + "\n")
EOF
}

# The keys margind and the worker read, scanned from their sources, and
# the keys of a conf file (active lines and `#key = value` lines).
scan_keys() {
	python3 - "$SRC" "$1" <<'EOF'
import re, sys, glob, os
src, prog = sys.argv[1], sys.argv[2]
keys = set()
if prog == "margind":
    for path in glob.glob(os.path.join(src, "daemon", "*.c")):
        s = open(path).read()
        keys |= set(re.findall(r'mg_config_get\w*\(\s*[\w>-]+,\s*"(\w+)",\s*"(\w+)"', s))
        # opts.c: typed getters of the [scheduler] section; http.c: of any
        keys |= {("scheduler", k) for k in re.findall(r'\bget_(?:u32|dur)\(cfg, "(\w+)"', s)}
        keys |= set(re.findall(r'\bget_u64\(cfg, "(\w+)", "(\w+)"', s))
        # the rows of the settings table (opts.c)
        keys |= set(re.findall(r'\.section = "(\w+)", \.key = "(\w+)"', s))
        m = re.search(r'meter_keys\[\] = \{([^}]*)\}', s)
        if m:
            keys |= {("meter", k) for k in re.findall(r'"(\w+)"', m.group(1))}
else:
    s = open(os.path.join(src, "worker", "cmd_serve.c")).read()
    sec = re.search(r'#define SECTION "(\w+)"', s).group(1)
    keys |= {(sec, k) for k in re.findall(r'\bget_(?:int|dur|str)\(c, "(\w+)"', s)}
    keys |= {(sec, k) for k in re.findall(r'mg_config_get\w*\(c, SECTION, "(\w+)"', s)}
    keys |= {(sec, k) for k in re.findall(r'\.section = SECTION, \.key = "(\w+)"', s)}
for sec, k in sorted(keys):
    print(f"{sec}.{k}")
EOF
}

# conf_keys FILE [active|all]: SECTION.KEY=VALUE of a conf file.
conf_keys() {
	python3 - "$1" "${2:-all}" <<'EOF'
import re, sys
sec = None
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    m = re.match(r'^\[(\w+)\]$', line)
    if m:
        sec = m.group(1)
        continue
    m = re.match(r'^(#?)([a-z_]+) = (.*)$', line)
    if m and (sys.argv[2] == "all" or not m.group(1)):
        assert sec, f"{sys.argv[1]}: key {m.group(2)} before any section"
        print(f"{sec}.{m.group(2)}={m.group(3)}")
EOF
}

# uncomment FILE OUT: the file with every `#key = value` line switched on.
uncomment() { sed -E 's/^#([a-z_]+ = )/\1/' "$1" > "$2"; }

keygen() { "$MARGINCTL" keygen "$1" -o "$2" > /dev/null || fail "marginctl keygen $1"; }

# --- conf ----------------------------------------------------------------

check_key_sets() {
	prog=$1 conf=$2
	scan_keys "$prog" | sort > "$T/$prog.code-keys"
	conf_keys "$conf" | sed 's/=.*//' | sort > "$T/$prog.conf-keys"
	n=$(wc -l < "$T/$prog.code-keys")
	[ "$n" -ge 10 ] || fail "the source scan found only $n keys of $prog: the scan is broken"
	grep -qx 'scheduler.state_dir\|worker.scheduler' "$T/$prog.code-keys" || fail "source scan of $prog missed a known key"
	sort -c -u "$T/$prog.conf-keys" 2>/dev/null || fail "$conf: a key appears twice"
	missing=$(comm -23 "$T/$prog.code-keys" "$T/$prog.conf-keys" | tr '\n' ' ')
	extra=$(comm -13 "$T/$prog.code-keys" "$T/$prog.conf-keys" | tr '\n' ' ')
	[ -z "$missing" ] || fail "$conf lacks keys $prog reads: $missing"
	[ -z "$extra" ] || fail "$conf has keys $prog does not read: $extra"
	note "$conf: the $n keys $prog reads"
}

# probe_typed FILE CMD...: for each active key whose example value is a
# number, duration, boolean or enum, the program refuses `bogus` with exit
# 2 and names the key. CMD gets SECTION.KEY as $PROBE_KEY through a
# function below.
typed_keys() {
	conf_keys "$1" active | python3 -c '
import re, sys
for line in sys.stdin:
    k, v = line.rstrip("\n").split("=", 1)
    if re.fullmatch(r"\d+(\.\d+)?(ms|s|min|h)?|yes|no|normal|full|info", v):
        print(k)'
}

sc_conf() {
	M=$SRC/deploy/conf/margind.conf W=$SRC/deploy/conf/worker.conf
	check_key_sets margind "$M"
	check_key_sets worker "$W"

	# CURVE as under systemd: the secrets by name in a credentials dir.
	mkdir -p "$T/keys" "$T/allow" "$T/creds"
	keygen margind "$T/keys"
	keygen worker-0 "$T/keys"
	cp "$T/keys/worker-0.pub" "$T/allow/"
	cp "$T/keys/margind.key" "$T/keys/worker-0.key" "$T/creds/"

	# 1. The file as shipped; state dir, ports and allow dir by flags.
	CREDENTIALS_DIRECTORY=$T/creds "$MARGIND" --config "$M" --state-dir "$T/state" \
		--http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --curve-allow "$T/allow" >> "$T/margind.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$T/state" $DPID
	grep -q 'msg="margind ready".* curve=on' "$T/margind.log" || fail "margind with $M: not ready with CURVE"
	CREDENTIALS_DIRECTORY=$T/creds "$MARGIN_WORKER" serve --config "$W" --scheduler "$WEP" \
		--curve-server "$T/keys/margind.pub" --fake >> "$T/worker.log" 2>&1 &
	WPID=$!; PIDS="$PIDS $WPID"
	wait_worker "$T/state" "$(hostname)" $WPID
	[ "$(json "$T/worker.json" '(d["key"], d["slots"], d["models"][0]["name"])')" = "('worker-0', 8, 'llama-110m')" ] ||
		fail "worker with $W: $(cat "$T/worker.json")"
	stop $WPID "worker"
	stop $DPID "margind"
	note "shipped files: margind up with CURVE, worker-0 joined"

	# 2. Every commented setting switched on. Paths that only exist on an
	# installed host are given by flags; the rest is as written.
	uncomment "$M" "$T/margind-all.conf"
	uncomment "$W" "$T/worker-all.conf"
	printf 'sk-deploy-%s\n' $$ > "$T/api-keys"
	CREDENTIALS_DIRECTORY=$T/creds "$MARGIND" --config "$T/margind-all.conf" --state-dir "$T/state2" \
		--http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --curve-allow "$T/allow" \
		--api-keys "$T/api-keys" --log-file "$T/margind-all.log" \
		--set "meter.hardware_dir=$SRC/deploy/hardware" --set "meter.prices_dir=$SRC/deploy/prices" \
		>> "$T/margind2.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$T/state2" $DPID
	wait_log "$T/margind-all.log" 'msg="margind ready"'
	grep -q 'msg="booking calls" hardware=cpu-2vcpu .*prices=fx+closed-2024+cn-2024-05-after+embeddings currency=CNY sale_price=0.5/2' \
		"$T/margind-all.log" || fail "[meter] settings not in effect: $(grep 'booking calls' "$T/margind-all.log")"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")" = 401 ] || fail "api_keys not in effect"
	CREDENTIALS_DIRECTORY=$T/creds "$MARGIN_WORKER" serve --config "$T/worker-all.conf" --scheduler "$WEP" \
		--curve-server "$T/keys/margind.pub" --model "$SHARED/models/stories260K.gguf" --fake \
		>> "$T/worker2.log" 2>&1 &
	WPID=$!; PIDS="$PIDS $WPID"
	name=$(sed -n 's/^#name = //p' "$W")
	wait_worker "$T/state2" "$name" $WPID
	want="('cpu-2vcpu', '$(sed -n 's/^#model_name = //p' "$W")', 'worker-0')"
	[ "$(json "$T/worker.json" '(d["hardware_profile"], d["models"][0]["name"], d["key"])')" = "$want" ] ||
		fail "commented worker settings not in effect: $(cat "$T/worker.json")"
	stop $WPID "worker"
	stop $DPID "margind"
	note "commented settings: accepted and in effect"

	# 3. A bad value of each typed key: exit 2, the key named.
	n=0
	for k in $(typed_keys "$M"); do
		st=0
		timeout 60 "$MARGIND" --config "$M" --state-dir "$T/state3" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 \
			--no-curve --set "$k=bogus" > "$T/probe.out" 2>&1 || st=$?
		[ $st = 2 ] || fail "margind --set $k=bogus: exit $st, not 2: $(tail -n 3 "$T/probe.out")"
		grep -q "${k#*.}" "$T/probe.out" || fail "margind --set $k=bogus: the error does not name the key: $(cat "$T/probe.out")"
		n=$((n + 1))
	done
	for k in $(typed_keys "$W"); do
		# In the file, not as flags: a CURVE flag would set curve = yes.
		{ cat "$W"; echo "curve_server = $T/keys/margind.pub"; echo "${k#*.} = bogus"; } > "$T/probe.conf"
		st=0
		CREDENTIALS_DIRECTORY=$T/creds timeout 60 "$MARGIN_WORKER" serve --config "$T/probe.conf" \
			--scheduler tcp://127.0.0.1:1 > "$T/probe.out" 2>&1 || st=$?
		[ $st = 2 ] || fail "worker with ${k#*.} = bogus: exit $st, not 2: $(tail -n 3 "$T/probe.out")"
		grep -q "${k#*.}" "$T/probe.out" || fail "worker with ${k#*.} = bogus: the error does not name the key: $(cat "$T/probe.out")"
		n=$((n + 1))
	done
	[ $n -ge 30 ] || fail "only $n typed keys probed"
	note "ok: $n typed keys refuse a bad value by name"
}

# --- units ---------------------------------------------------------------

# unit_files DIR: the unit templates configured as meson does, with the
# binaries under test and SYSCONFDIR = $T/etc.
unit_files() {
	mkdir -p "$1"
	for u in margind.service margin-worker@.service; do
		sed -e "s|@sbindir@/margind|$MARGIND|g" -e "s|@bindir@/margin-worker|$MARGIN_WORKER|g" \
			-e "s|@sysconfdir@|$T/etc|g" -e "s|@[a-z]*@|UNSUBSTITUTED|g" \
			"$SRC/systemd/$u.in" > "$1/$u"
	done
	cp "$SRC/systemd/margin-workers.target" "$1/"
}

# unit_cmd UNIT INSTANCE VERB OUT [EXTRA ARGS...]: a script that runs the
# unit's ExecStart (VERB=start) or ExecReload (reload, with $MAINPID from
# the environment) as systemd would: specifiers expanded, LoadCredential=
# files copied into a credentials directory, Environment= set, the state
# directory moved under $T. EXTRA ARGS are appended (ports of the test).
unit_cmd() {
	python3 - "$T" "$@" <<'EOF'
import os, re, shlex, shutil, sys
T, unit, inst, verb, out, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
kv = []
for line in open(unit):
    m = re.match(r'^(\w+)=(.*)$', line.rstrip("\n"))
    if m:
        kv.append((m.group(1), m.group(2)))
def spec(v):
    # %i (instance), %d (credentials directory), %% -- the specifiers the
    # units use; any other one is an error here.
    creds = f"{T}/creds/{os.path.basename(unit)}-{inst}"
    def one(m):
        c = m.group(1)
        if c == "i": return inst
        if c == "d": return creds
        if c == "%": return "%"
        sys.exit(f"{unit}: specifier %{c} not handled by the test")
    return re.sub(r'%(.)', one, v).replace("/var/lib/", f"{T}/var/lib/"), creds
key = {"start": "ExecStart", "reload": "ExecReload"}[verb]
lines = [v for k, v in kv if k == key]
assert len(lines) == 1, f"{unit}: {len(lines)} {key}= lines"
cmd, creds = spec(lines[0])
env = {"CREDENTIALS_DIRECTORY": creds}
os.makedirs(creds, exist_ok=True)
for k, v in kv:
    if k == "LoadCredential":
        v, _ = spec(v)
        name, path = v.split(":", 1)
        if not os.path.isfile(path):
            sys.exit(f"{unit}: LoadCredential={name}:{path}: no such file")
        shutil.copy(path, os.path.join(creds, name))
    elif k == "Environment":
        for a in shlex.split(v):
            n, val = a.split("=", 1)
            env[n] = val
    elif k == "StateDirectory":
        os.makedirs(f"{T}/var/lib/{spec(v)[0]}", exist_ok=True)
argv = shlex.split(cmd) + extra
if argv[0].startswith("-"):
    sys.exit(f"{unit}: {key} with a prefix is not handled by the test")
with open(out, "w") as f:
    f.write("#!/bin/sh\ncd /\n")
    f.write("exec env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " " +
            " ".join(shlex.quote(a) if not a.startswith("$") else a for a in argv) + "\n")
os.chmod(out, 0o755)
EOF
}

sc_units() {
	U=$T/units
	unit_files "$U"
	! grep -q UNSUBSTITUTED "$U"/* || fail "a unit template uses a variable meson does not set: $(grep -h UNSUBSTITUTED "$U"/*)"

	# 1. systemd's own check, where systemd is installed (Debian 12 with
	# systemd). It exits 0 on unknown keys and bad values, so any line about
	# our units fails too.
	if command -v systemd-analyze > /dev/null 2>&1; then
		cp "$U/margin-worker@.service" "$U/margin-worker@0.service"
		st=0
		(cd "$U" && systemd-analyze verify --man=no ./margind.service ./margin-worker@0.service \
			./margin-workers.target) > "$T/verify.out" 2>&1 || st=$?
		rm -f "$U/margin-worker@0.service"
		if [ $st -ne 0 ] || grep -E 'margind\.service|margin-worker@|margin-workers\.target' "$T/verify.out" > /dev/null; then
			cat "$T/verify.out" >&2
			fail "systemd-analyze verify: exit $st"
		fi
		note "systemd-analyze verify: the units are clean ($(systemd-analyze --version | head -n 1))"
	else
		note "systemd-analyze is not installed (package systemd): the units are checked by running their command lines only"
	fi

	# 2. The units' command lines, as systemd would run them, with the
	# example configs installed under SYSCONFDIR.
	E=$T/etc/margin
	mkdir -p "$E/curve" "$E/workers.d"
	cp "$SRC/deploy/conf/margind.conf" "$E/margind.conf"
	cp "$SRC/deploy/conf/worker.conf" "$E/worker-0.conf"
	keygen margind "$E/curve"
	keygen worker-0 "$E/curve"
	cp "$E/curve/worker-0.pub" "$E/workers.d/"
	unit_cmd "$U/margind.service" "" start "$T/margind.sh" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0
	"$T/margind.sh" >> "$T/margind.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	STATE=$T/var/lib/margin
	daemon_wait "$STATE" $DPID
	grep -q "msg=\"margind ready\".* state_dir=$STATE .*curve=on" "$T/margind.log" || fail "margind.service: not ready as expected"

	unit_cmd "$U/margin-worker@.service" 0 start "$T/worker0.sh" --scheduler "$WEP" \
		--curve-server "$E/curve/margind.pub" --fake --name unit-0
	"$T/worker0.sh" >> "$T/worker0.log" 2>&1 &
	W0=$!; PIDS="$PIDS $W0"
	wait_worker "$STATE" unit-0 $W0
	[ "$(json "$T/worker.json" 'd["key"]')" = worker-0 ] || fail "margin-worker@0: $(cat "$T/worker.json")"
	note "margind.service and margin-worker@0.service run; worker-0 joined with its credential"

	# 3. A new node: its key is refused until the .pub is in workers.d and
	# margind rereads the directory (ExecReload, i.e. systemctl reload).
	keygen worker-1 "$E/curve"
	sed -e 's/^curve_secret = worker-0.key$/curve_secret = worker-1.key/' "$E/worker-0.conf" > "$E/worker-1.conf"
	grep -q '^curve_secret = worker-1.key$' "$E/worker-1.conf" || fail "worker.conf: no curve_secret = worker-0.key line to adapt"
	unit_cmd "$U/margin-worker@.service" 1 start "$T/worker1.sh" --scheduler "$WEP" \
		--curve-server "$E/curve/margind.pub" --fake --name unit-1
	"$T/worker1.sh" >> "$T/worker1.log" 2>&1 &
	W1=$!; PIDS="$PIDS $W1"
	pub1=$(cat "$E/curve/worker-1.pub")
	wait_log "$T/margind.log" 'refused a worker connection: unknown CURVE key'
	# (quoted when the Z85 key holds a '=')
	grep -qF -e "key=$pub1 " -e "key=\"$pub1\" " "$T/margind.log" || fail "the refusal does not name worker-1's key"
	workers_json "$STATE"
	[ "$(json "$T/workers.json" 'len(d["workers"])')" = 1 ] || fail "an unknown key got in"
	cp "$E/curve/worker-1.pub" "$E/workers.d/"
	unit_cmd "$U/margind.service" "" reload "$T/reload.sh"
	MAINPID=$DPID "$T/reload.sh" || fail "ExecReload failed"
	wait_log "$T/margind.log" 'msg="reloaded" allowed_keys=2'
	wait_worker "$STATE" unit-1 $W1
	[ "$(json "$T/worker.json" 'd["key"]')" = worker-1 ] || fail "margin-worker@1: $(cat "$T/worker.json")"
	note "unknown key refused; after ExecReload worker-1 joined"

	# 4. systemctl stop: SIGTERM, drain, exit 0 (a clean stop, no restart).
	stop $W0 "margin-worker@0"
	stop $W1 "margin-worker@1"
	stop $DPID "margind.service"
	grep -q 'msg="drained: no shards in flight"' "$T/margind.log" || fail "margind did not drain"
	note "ok"
}

# --- metrics -------------------------------------------------------------

sc_metrics() {
	python3 -c 'import yaml' 2> /dev/null || fail "python3-yaml is missing (deploy/install-deps.sh installs it)"
	KEY=sk-deploy-$$
	printf '%s\n' "$KEY" > "$T/api-keys"
	# sale_price: margin_gross_margin_ratio exists only with it.
	"$MARGIND" --state-dir "$T/state" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --no-curve \
		--api-keys "$T/api-keys" --set meter.sale_price=0.5/2 >> "$T/margind.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$T/state" $DPID
	# A fake worker (no engine steps) and a real one (stories260K), so that
	# the per-step histograms get samples too.
	OPENBLAS_NUM_THREADS=1 "$MARGIN_WORKER" serve --scheduler "$WEP" --name fake --arch llama-110m \
		--fake --no-curve >> "$T/fake.log" 2>&1 &
	FPID=$!; PIDS="$PIDS $FPID"
	OPENBLAS_NUM_THREADS=1 "$MARGIN_WORKER" serve --scheduler "$WEP" --name real --threads 1 --slots 2 \
		--model "$SHARED/models/stories260K.gguf" --no-curve >> "$T/real.log" 2>&1 &
	RPID=$!; PIDS="$PIDS $RPID"
	wait_worker "$T/state" fake $FPID
	wait_worker "$T/state" real $RPID
	export MARGIN_URL="$URL" MARGIN_API_KEY="$KEY"
	make_input "$T/a.jsonl" 6 llama-110m
	make_input "$T/b.jsonl" 3 stories260K
	# and embeddings, for the embedding counters
	for i in 1 2; do
		printf '{"custom_id":"e%s","method":"POST","url":"/v1/embeddings","body":{"model":"stories260K","input":["Once upon a time","a cat %s"]}}\n' $i $i
	done > "$T/c.jsonl"
	for f in a b c; do
		timeout 120 "$MARGINCTL" submit "$T/$f.jsonl" --wait > "$T/$f.id" 2> "$T/$f.err" ||
			fail "batch $f: $(cat "$T/$f.err")"
	done

	# The scrape config's authorization is what /metrics wants.
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")" = 401 ] || fail "/metrics without a key is not 401"
	curl -sf -H "Authorization: Bearer $KEY" "$URL/metrics" -o "$T/metrics.txt" || fail "GET /metrics with the key"
	python3 - "$T/metrics.txt" "$SRC/deploy/prometheus" <<'EOF'
import glob, os, re, sys
import yaml

text, pdir = open(sys.argv[1]).read(), sys.argv[2]

# The live exposition: families (# TYPE) and the label names of each
# sample name.
families, samples = {}, {}
for line in text.splitlines():
    m = re.match(r'^# TYPE (\S+) (\S+)$', line)
    if m:
        families[m.group(1)] = m.group(2)
        continue
    if not line or line.startswith("#"):
        continue
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ', line)
    assert m, f"unparsed metrics line: {line}"
    labels = set(re.findall(r'([a-zA-Z_]\w*)="', m.group(3) or ""))
    samples.setdefault(m.group(1), set()).update(labels)
assert len(families) >= 15, f"only {len(families)} families in /metrics"
empty = [f for f in families
         if not any(s == f or s in (f + "_bucket", f + "_sum", f + "_count") for s in samples)]
if empty:
    print(f"test_deploy[metrics]: families without samples after the batches: {empty}", file=sys.stderr)

errors = []
def err(where, msg):
    errors.append(f"{where}: {msg}")

# PromQL, as much as the rules need: functions and aggregations by name,
# metric names and label names where they are used.
FUNCS = set("""abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min
count_over_time day_of_month day_of_week days_in_month delta deriv exp floor histogram_quantile
holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2
max_over_time min_over_time minute month predict_linear present_over_time quantile_over_time rate
resets round scalar sgn sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time time
timestamp vector year sum min max avg group stddev stdvar count count_values bottomk topk
quantile""".split())
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset"}
TARGET_LABELS = {"job", "instance"}

def parse_expr(expr):
    """(metric names, label names) of a PromQL expression."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    if e.count("(") != e.count(")") or e.count("{") != e.count("}") or e.count("[") != e.count("]"):
        raise ValueError("unbalanced brackets")
    labels = set()
    for body in re.findall(r'\{([^}]*)\}', e):
        labels |= set(re.findall(r'([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)', body))
    e = re.sub(r'\{[^}]*\}', ' ', e)
    e = re.sub(r'\[[^\]]*\]', ' ', e)
    for _, body in re.findall(r'\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)', e):
        labels |= {l.strip() for l in body.split(",") if l.strip()}
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', e)
    e = re.sub(r'(?<![\w.])\d+(\.\d+)?([eE][+-]?\d+)?(?![\w.])', ' ', e)
    names = set()
    for m in re.finditer(r'[a-zA-Z_:][a-zA-Z0-9_:]*', e):
        w, rest = m.group(0), e[m.end():].lstrip()
        if w in KEYWORDS:
            continue
        if rest.startswith("("):
            if w not in FUNCS:
                raise ValueError(f"unknown function {w}")
        else:
            names.add(w)
    return names, labels

DUR = re.compile(r'^\d+(ms|s|m|h|d|w|y)$')
used, n_rules, alerts = set(), 0, set()
rule_files = sorted(glob.glob(os.path.join(pdir, "*.yml")))
configs = []
for path in rule_files:
    doc = yaml.safe_load(open(path))
    where = os.path.basename(path)
    if "scrape_configs" in doc:
        configs.append((path, doc))
        continue
    assert "groups" in doc, f"{where}: neither a scrape config nor a rule file"
    for g in doc["groups"]:
        assert g.get("name") and g.get("rules"), f"{where}: a group without name or rules"
        for r in g["rules"]:
            n_rules += 1
            name = r.get("alert") or r.get("record")
            w = f"{where}: {name}"
            if not name:
                err(where, f"a rule without alert or record: {r}")
                continue
            if "alert" in r:
                if name in alerts:
                    err(w, "alert name used twice")
                alerts.add(name)
                if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    err(w, "labels.severity must be critical, warning or info")
                if not r.get("annotations", {}).get("summary"):
                    err(w, "no annotations.summary")
            if "for" in r and not DUR.match(str(r["for"])):
                err(w, f"bad for: {r['for']}")
            try:
                names, labels = parse_expr(str(r["expr"]))
            except ValueError as e:
                err(w, str(e))
                continue
            if not names:
                err(w, "no metric in the expression")
            have = set(TARGET_LABELS)
            for n in names:
                used.add(n)
                if n == "up":
                    continue    # Prometheus' own series per target
                if n not in samples:
                    known = "declared (# TYPE) but without samples" if n in families else "not exposed"
                    err(w, f"metric {n}: {known} by margind")
                    continue
                have |= samples[n]
                if n.endswith("_bucket"):
                    have.add("le")
            for l in labels - have:
                err(w, f"label {l} is on none of {sorted(names)}")
assert n_rules >= 8, f"only {n_rules} rules"
for want in ("margin_workers", "margin_requests_waiting", "margin_requests_total", "margin_cost_per_token"):
    if want not in used:
        err("rules", f"no rule uses {want} (no workers, queue depth, failures, cost per 1M tokens)")

# The scrape config: margind's job with the key, and rule files that exist.
assert configs, "no scrape config (prometheus.yml)"
for path, doc in configs:
    where = os.path.basename(path)
    jobs = [j for j in doc["scrape_configs"] if j.get("job_name") == "margind"]
    if len(jobs) != 1:
        err(where, "no scrape job margind")
        continue
    j = jobs[0]
    if j.get("metrics_path", "/metrics") != "/metrics":
        err(where, f"metrics_path {j['metrics_path']}")
    auth = j.get("authorization") or {}
    if auth.get("type", "Bearer") != "Bearer" or not (auth.get("credentials_file") or auth.get("credentials")):
        err(where, "margind asks for an API key on /metrics: give authorization credentials")
    for rf in doc.get("rule_files", []):
        if not os.path.isfile(os.path.join(pdir, rf)):
            err(where, f"rule file {rf} is not in deploy/prometheus")
    if not doc.get("rule_files"):
        err(where, "no rule_files")
if errors:
    sys.exit("\n".join(errors))
print(f"test_deploy[metrics]: {n_rules} rules; metrics used: {' '.join(sorted(used))}", file=sys.stderr)
EOF
	note "ok"
}

# --- k8s -----------------------------------------------------------------

sc_k8s() {
	python3 -c 'import yaml' 2> /dev/null || fail "python3-yaml is missing (deploy/install-deps.sh installs it)"
	K=$SRC/deploy/k8s
	MARGINCTL=$MARGINCTL sh "$K/secrets.sh" "$T/keys" > "$T/secrets.yaml" 2> "$T/secrets.err" ||
		fail "secrets.sh: $(cat "$T/secrets.err")"
	# Run again: the keys are kept, the Secrets are the same.
	MARGINCTL=$MARGINCTL sh "$K/secrets.sh" "$T/keys" > "$T/secrets2.yaml" || fail "secrets.sh, second run"
	cmp -s "$T/secrets.yaml" "$T/secrets2.yaml" || fail "secrets.sh made new keys on a second run"

	# Check the manifests and write the two containers' command lines with
	# every mount materialized under $T/k8s/CONTAINER.
	python3 - "$T" "$MARGIND" "$MARGIN_WORKER" "$K/margind.yaml" "$K/workers.yaml" "$T/secrets.yaml" <<'EOF'
import base64, math, os, re, shlex, sys
import yaml

T, margind_bin, worker_bin, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
docs = []
for f in files:
    for d in yaml.safe_load_all(open(f)):
        if d is None:
            continue
        for k in ("apiVersion", "kind", "metadata"):
            assert k in d, f"{f}: a document without {k}"
        assert d["metadata"].get("name"), f"{f}: a {d['kind']} without a name"
        docs.append(d)
objs = {}
for d in docs:
    key = (d["kind"], d["metadata"]["name"])
    assert key not in objs, f"{key} defined twice"
    objs[key] = d
def get(kind, name):
    assert (kind, name) in objs, f"no {kind} {name} in the manifests or secrets.sh"
    return objs[(kind, name)]

def cpu(q):
    q = str(q)
    return math.ceil(int(q[:-1]) / 1000) if q.endswith("m") else math.ceil(float(q))

def dur_s(v):
    m = re.fullmatch(r'(\d+)(ms|s|min|h)', v)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600}[m.group(2)]

def ini(text, key):
    m = re.search(r'^' + key + r' = (.*)$', text, re.M)
    return m.group(1) if m else None

def deployment(name):
    d = get("Deployment", name)
    spec, pod = d["spec"], d["spec"]["template"]["spec"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    for k, v in spec["selector"]["matchLabels"].items():
        assert labels.get(k) == v, f"Deployment {name}: selector {k}={v} does not match the pod labels"
    assert len(pod["containers"]) == 1, f"Deployment {name}: one container expected"
    return d, spec, pod, pod["containers"][0]

def materialize(cname, pod, c):
    """Mount paths -> directories under $T/k8s/CNAME holding what the pod would see."""
    root = os.path.join(T, "k8s", cname)
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {}
    for m in c["volumeMounts"]:
        v = vols.get(m["name"])
        assert v, f"{cname}: volumeMount {m['name']} has no volume"
        assert "subPath" not in m, f"{cname}: subPath mounts miss ConfigMap and Secret updates"
        path = root + m["mountPath"]
        os.makedirs(path, exist_ok=True)
        mounts[m["mountPath"]] = path
        if "configMap" in v:
            for k, text in get("ConfigMap", v["configMap"]["name"])["data"].items():
                open(os.path.join(path, k), "w").write(text)
        elif "secret" in v:
            s = get("Secret", v["secret"]["secretName"])
            for k, b in (s.get("data") or {}).items():
                fn = os.path.join(path, k)
                open(fn, "wb").write(base64.b64decode(b))
                os.chmod(fn, v["secret"].get("defaultMode", 0o644))
        elif "persistentVolumeClaim" in v:
            get("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
        else:
            assert "emptyDir" in v, f"{cname}: volume {m['name']}: unexpected kind"
    return mounts

def rewrite(s, mounts):
    # One pass: a rewritten path must not be rewritten again (/tmp is a
    # mount too).
    alt = "|".join(re.escape(mp) for mp in sorted(mounts, key=len, reverse=True))
    return re.sub(r'(?<![\w/.])(' + alt + r')(?=/|\b|$)', lambda m: mounts[m.group(1)], s)

def command(c, mounts, binary):
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["resourceFieldRef"]
            assert ref["resource"] == "limits.cpu", ref
            env[e["name"]] = str(cpu(c["resources"]["limits"]["cpu"]))
    argv = c["command"] + c.get("args", [])
    argv = [re.sub(r'\$\((\w+)\)', lambda m: env[m.group(1)], a) for a in argv]
    assert os.path.basename(argv[0]) == os.path.basename(binary), f"{argv[0]} is not {binary}"
    argv = [binary] + [rewrite(a, mounts) for a in argv[1:]]
    for root in set(mounts.values()):
        for dirpath, _, fns in os.walk(root):
            for fn in fns:
                p = os.path.join(dirpath, fn)
                if fn.endswith(".conf"):
                    text = rewrite(open(p).read(), mounts)
                    open(p, "w").write(text)
    return argv

# margind: one writer, the state on a claim, probes and resources.
d, spec, pod, c = deployment("margind")
assert spec["replicas"] == 1, "margind: replicas must be 1"
assert spec["strategy"]["type"] == "Recreate", "margind: strategy must be Recreate"
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
assert {"http", "workers"} <= set(ports), f"margind: container ports {ports}"
probes = {}
for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
    p = c.get(kind)
    assert p, f"margind: no {kind}"
    assert p["httpGet"]["port"] in ports or p["httpGet"]["port"] in ports.values(), f"{kind}: port"
    probes[kind] = p["httpGet"]["path"]
assert probes["livenessProbe"] == "/healthz" and probes["readinessProbe"] == "/readyz", probes
for r in ("cpu", "memory"):
    assert r in c["resources"]["requests"], f"margind: no {r} request"
claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
assert claims, "margind: no PersistentVolumeClaim volume"
state_mount = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == claims[0]["name"]][0]
mounts = materialize("margind", pod, c)
argv = command(c, mounts, margind_bin)
i = c["args"].index("--state-dir")
assert c["args"][i + 1] == state_mount, f"margind: --state-dir {c['args'][i + 1]} is not the claim's mount {state_mount}"
conf = open(os.path.join(mounts[os.path.dirname(c["args"][c["args"].index("--config") + 1])],
                         os.path.basename(c["args"][c["args"].index("--config") + 1]))).read()
drain = dur_s(ini(conf, "drain_timeout") or "30s")
assert pod["terminationGracePeriodSeconds"] > drain, "margind: terminationGracePeriodSeconds <= drain_timeout"
open(os.path.join(T, "margind.sh"), "w").write("exec " + " ".join(map(shlex.quote, argv)) + ' "$@"\n')
open(os.path.join(T, "probes"), "w").write(f"{probes['livenessProbe']} {probes['readinessProbe']} {probes['startupProbe']}\n")
open(os.path.join(T, "state_dir"), "w").write(mounts[state_mount] + "\n")

# The Service: both ports, to the margind pod, also before it is ready.
svc = get("Service", "margind")
for k, v in svc["spec"]["selector"].items():
    assert d["spec"]["template"]["metadata"]["labels"].get(k) == v, "Service margind: selector"
sports = {p["name"]: p for p in svc["spec"]["ports"]}
for name in ("http", "workers"):
    assert name in sports, f"Service margind: no {name} port"
    t = sports[name]["targetPort"]
    assert t in ports or t in ports.values(), f"Service margind: targetPort {t}"
assert svc["spec"].get("publishNotReadyAddresses") is True, \
    "Service margind: /readyz needs a worker, and workers connect through the Service"

# Workers: connect to that Service, Guaranteed QoS, a grace period above
# shutdown_grace.
d, spec, pod, c = deployment("margin-worker")
for r in ("cpu", "memory"):
    assert str(c["resources"]["requests"][r]) == str(c["resources"]["limits"][r]), \
        f"margin-worker: requests.{r} != limits.{r}"
mounts = materialize("worker", pod, c)
wconf_path = c["args"][c["args"].index("--config") + 1]
wconf = get("ConfigMap", [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v][0])["data"][os.path.basename(wconf_path)]
sched = ini(wconf, "scheduler")
m = re.fullmatch(r'tcp://([\w.-]+):(\d+)', sched or "")
assert m, f"worker.conf: scheduler {sched}"
host = m.group(1).split(".")[0]
assert host == "margind" and int(m.group(2)) == sports["workers"]["port"], \
    f"worker.conf: scheduler {sched} is not the margind Service's workers port"
grace = dur_s(ini(wconf, "shutdown_grace") or "30s")
assert pod["terminationGracePeriodSeconds"] > grace, "margin-worker: terminationGracePeriodSeconds <= shutdown_grace"
argv = command(c, mounts, worker_bin)
open(os.path.join(T, "worker.sh"), "w").write("exec " + " ".join(map(shlex.quote, argv)) + ' "$@"\n')
key = base64.b64decode(get("Secret", "margin-api-key")["data"]["api-key"]).decode()
open(os.path.join(T, "api-key"), "w").write(key)
print(f"test_deploy[k8s]: {len(docs)} objects fit together", file=sys.stderr)
EOF

	# The containers' command lines, ports moved to free ones (the Service
	# maps them in the cluster).
	read -r LIVE READY STARTUP < "$T/probes"
	STATE=$(cat "$T/state_dir")
	sh "$T/margind.sh" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 >> "$T/margind.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$STATE" $DPID
	grep -q 'msg="margind ready".*curve=on' "$T/margind.log" || fail "margind pod: not ready with CURVE"
	for p in "$STARTUP" "$LIVE"; do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL$p")" = 200 ] || fail "probe $p is not 200"
	done
	# Not ready without a worker: why the Service publishes not-ready pods.
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL$READY")" = 503 ] || fail "$READY without workers is not 503"
	sh "$T/worker.sh" --scheduler "$WEP" --fake >> "$T/worker.log" 2>&1 &
	WPID=$!; PIDS="$PIDS $WPID"
	wait_worker "$STATE" "$(hostname)" $WPID
	[ "$(json "$T/worker.json" 'd["key"]')" = worker ] || fail "worker pod: $(cat "$T/worker.json")"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL$READY")" = 200 ] || fail "$READY with a worker is not 200"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")" = 401 ] || fail "/metrics without a key"
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/api-key")" "$URL/metrics")" = 200 ] ||
		fail "/metrics with the key of Secret margin-api-key"
	stop $WPID "worker pod"
	stop $DPID "margind pod"
	note "ok: probes, CURVE key from the Secrets, API key from margin-api-key"
}

# --- slurm ---------------------------------------------------------------

sc_slurm() {
	S=$SRC/deploy/slurm/margin-workers.sbatch
	bash -n "$S" || fail "bash -n $S"
	grep -q '^#SBATCH --ntasks-per-node=1$' "$S" || fail "$S: not one task per node"

	mkdir -p "$T/keys" "$T/allow" "$T/bin"
	keygen margind "$T/keys"
	keygen slurm "$T/keys"
	cp "$T/keys/slurm.pub" "$T/allow/"
	"$MARGIND" --state-dir "$T/state" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 \
		--curve-secret "$T/keys/margind.key" --curve-allow "$T/allow" >> "$T/margind.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$T/state" $DPID

	# A stand-in srun: checks the options it is given, then runs the task
	# once per node of the allocation, here, with the variables Slurm sets
	# in a task's environment. It waits for all, as srun does.
	cat > "$T/bin/srun" <<'EOF'
#!/bin/sh
echo "$*" > "$SRUN_LOG"
while [ $# -gt 0 ]; do
	case $1 in
	--nodes=*|--ntasks=*|--ntasks-per-node=*|--kill-on-bad-exit=*) shift ;;
	-*) echo "srun stand-in: option $1 not known to the test" >&2; exit 2 ;;
	*) break ;;
	esac
done
pids=
k=0
while [ $k -lt "$SLURM_JOB_NUM_NODES" ]; do
	SLURMD_NODENAME=node$k SLURM_PROCID=$k SLURM_NODEID=$k SLURM_CPUS_ON_NODE=1 "$@" &
	pids="$pids $!"
	k=$((k + 1))
done
echo "$pids" > "$SRUN_PIDS"
st=0
for p in $pids; do wait "$p" || st=$?; done
exit $st
EOF
	chmod +x "$T/bin/srun"
	PATH=$T/bin:$PATH SRUN_LOG=$T/srun.args SRUN_PIDS=$T/srun.pids \
	SLURM_JOB_ID=4242 SLURM_JOB_NUM_NODES=2 \
	MARGIN_SCHEDULER=$WEP MARGIN_WORKER=$MARGIN_WORKER \
	MARGIN_CURVE_SECRET=$T/keys/slurm.key MARGIN_CURVE_SERVER=$T/keys/margind.pub \
	MARGIN_MODEL=$SHARED/models/stories260K.gguf \
		bash "$S" >> "$T/job.log" 2>&1 &
	JOB=$!; PIDS="$PIDS $JOB"
	for k in 0 1; do
		wait_worker "$T/state" "slurm-4242-node$k" $JOB
		[ "$(json "$T/worker.json" '(d["key"], d["threads"], d["models"][0]["name"])')" = "('slurm', 1, 'stories260K')" ] ||
			fail "node$k: $(cat "$T/worker.json")"
	done
	grep -q -- '--ntasks-per-node=1' "$T/srun.args" || fail "srun is not asked for one task per node: $(cat "$T/srun.args")"
	grep -q -- '--kill-on-bad-exit=0' "$T/srun.args" || fail "one dead worker would end the job step"
	note "both nodes' workers joined"

	# What Slurm does at scancel or the time limit: SIGTERM to the tasks.
	for p in $(cat "$T/srun.pids"); do kill -TERM "$p"; done
	st=0
	wait $JOB || st=$?
	[ $st = 0 ] || fail "the job script exited $st after SIGTERM to its workers"
	[ "$(grep -c 'worker said bye' "$T/margind.log")" = 2 ] || fail "the workers did not say Bye"
	stop $DPID margind
	note "ok"
}

# --- backup --------------------------------------------------------------

sc_backup() {
	command -v sqlite3 > /dev/null 2>&1 || fail "sqlite3 is missing (deploy/install-deps.sh installs it)"
	"$MARGIND" --state-dir "$T/state" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --no-curve \
		>> "$T/margind.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$T/state" $DPID
	OPENBLAS_NUM_THREADS=1 "$MARGIN_WORKER" serve --scheduler "$WEP" --name w --arch llama-110m \
		--fake --no-curve >> "$T/worker.log" 2>&1 &
	WPID=$!; PIDS="$PIDS $WPID"
	wait_worker "$T/state" w $WPID
	export MARGIN_URL="$URL"
	make_input "$T/in.jsonl" 8 llama-110m
	BID=$(timeout 120 "$MARGINCTL" submit "$T/in.jsonl" --wait 2> "$T/submit.err" | head -n 1) ||
		fail "submit: $(cat "$T/submit.err")"
	"$MARGINCTL" results "$BID" -o "$T/out1.jsonl" 2> /dev/null || fail "results before the backup"

	# The procedure of docs/operations.md, with margind running: the
	# journal through SQLite's backup API, then the files.
	B=$T/backup
	mkdir -p "$B"
	sqlite3 "$T/state/margin.db" ".backup '$B/margin.db'" || fail "sqlite3 .backup"
	cp -a "$T/state/files" "$T/state/batches" "$B/"
	[ "$(sqlite3 "$B/margin.db" 'PRAGMA integrity_check')" = ok ] || fail "the backup fails integrity_check"
	stop $WPID worker
	stop $DPID margind

	# Restore into another directory and serve from it.
	R=$T/restored
	mkdir -p "$R"
	cp -a "$B/." "$R/"
	"$MARGIND" --state-dir "$R" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --no-curve \
		>> "$T/margind2.log" 2>&1 &
	DPID=$!; PIDS="$PIDS $DPID"
	daemon_wait "$R" $DPID
	export MARGIN_URL="$URL"
	"$MARGINCTL" status "$BID" --json > "$T/status.json" 2> "$T/status.err" || fail "status after restore: $(cat "$T/status.err")"
	[ "$(json "$T/status.json" '(d["status"], d["request_counts"]["completed"])')" = "('completed', 8)" ] ||
		fail "restored batch: $(cat "$T/status.json")"
	"$MARGINCTL" results "$BID" -o "$T/out2.jsonl" 2> "$T/results.err" || fail "results after restore: $(cat "$T/results.err")"
	cmp -s "$T/out1.jsonl" "$T/out2.jsonl" || fail "the restored output differs"
	stop $DPID "restored margind"
	note "ok: $BID restored with its output"
}

case $SCENARIO in
conf) sc_conf ;;
backup) sc_backup ;;
slurm) sc_slurm ;;
k8s) sc_k8s ;;
units) sc_units ;;
metrics) sc_metrics ;;
*) fail "unknown scenario $SCENARIO" ;;
esac
