# The scaffolding the shell scenarios share. Source it with NAME (the
# script's short name, for paths and messages) and SCENARIO set: a
# temporary directory $T (kept when KEEP_TMP is set), PIDS killed on exit
# with the tail of every $T/*.log shown when the scenario failed, and
# fail, note and json; then the helpers of the HTTP scenarios (below).
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

# For the scenarios that drive margind's HTTP API with a key
# (test_http.sh, test_batches.sh).

# api_key: a key in $KEY, written to $T/keys (margind's --api-keys file).
api_key() {
	KEY=sk-itest-$$
	printf '# test keys\n%s\n' "$KEY" > "$T/keys"
	chmod 600 "$T/keys"
}

# daemon_start NAME [EXTRA FLAGS...]: margind on $T/NAME with the keys;
# sets URL, WEP (worker endpoint) and DPID. $WORKERS_EP reuses an
# endpoint; $NOFILE sets margind's file-descriptor limit.
daemon_start() {
	name=$1; shift
	rm -f "$T/$name/http" "$T/$name/endpoints"
	(
		[ -z "${NOFILE:-}" ] || ulimit -n "$NOFILE"
		exec "$MARGIND" --state-dir "$T/$name" --http 127.0.0.1:0 --workers "${WORKERS_EP:-tcp://127.0.0.1:0}" \
			--no-curve --api-keys "$T/keys" --set scheduler.heartbeat=500ms "$@"
	) >> "$T/$name.log" 2>&1 &
	DPID=$!
	PIDS="$PIDS $DPID"
	i=0
	until [ -s "$T/$name/http" ] && [ -s "$T/$name/endpoints" ]; do
		i=$((i + 1)); [ $i -lt 300 ] || fail "margind did not come up"
		kill -0 $DPID 2>/dev/null || fail "margind exited"
		sleep 0.05
	done
	URL=$(cat "$T/$name/http")
	WEP=$(sed -n 's/^workers=//p' "$T/$name/endpoints")
	export MARGIN_URL="$URL" MARGIN_API_KEY="$KEY"
}

# daemon_kill: SIGKILL to the margind of the last daemon_start.
daemon_kill() {
	kill -9 $DPID
	wait $DPID 2>/dev/null || true
}

# worker_start NAME [EXTRA FLAGS...]: a fake worker of llama-110m; sets WPID.
worker_start() {
	name=$1; shift
	OPENBLAS_NUM_THREADS=1 "$MARGIN_WORKER" serve --scheduler "$WEP" --name "$name" --threads 1 \
		--arch llama-110m --fake --no-curve "$@" >> "$T/$name.log" 2>&1 &
	WPID=$!
	PIDS="$PIDS $WPID"
}

# api METHOD PATH [curl args...]: prints the HTTP status, body in $T/body.json.
api() {
	m=$1; p=$2; shift 2
	curl -s -o "$T/body.json" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $KEY" "$@" "$URL$p"
}

# make_input OUT N [MODEL]: N completions on MODEL (llama-110m), custom
# ids req-0000...; with SEED_EVERY=K, every K-th one (the first included)
# carries a seed. (test_deploy.sh has a make_input of its own.)
make_input() {
	python3 - "$1" "$2" "${3:-llama-110m}" "${SEED_EVERY:-0}" <<'EOF'
import json, sys
out, n, model, every = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
with open(out, "w") as f:
    for i in range(n):
        body = {"model": model, "prompt": f"Once upon a time {i}", "max_tokens": 6}
        if every and i % every == 0:
            body["seed"] = 100 + i
        f.write(json.dumps({"custom_id": f"req-{i:04d}", "method": "POST", "url": "/v1/completions", "body": body}) + "\n")
EOF
}

# upload FILE: POST /v1/files; prints the file id.
upload() {
	[ "$(api POST /v1/files -F purpose=batch -F "file=@$1")" = 200 ] || fail "upload: $(cat "$T/body.json")"
	json "$T/body.json" 'd["id"]'
}

# wait_ready N: /readyz says ready and N workers are connected.
wait_ready() {
	i=0
	until curl -sf "$URL/readyz" -o "$T/ready.json" && [ "$(json "$T/ready.json" 'd["workers"]')" -ge "$1" ]; do
		i=$((i + 1)); [ $i -lt 400 ] || fail "workers did not connect"
		sleep 0.05
	done
}

# create FILE_ID [ENDPOINT]: POST /v1/batches (default /v1/completions);
# prints the batch id.
create() {
	[ "$(api POST /v1/batches -H 'content-type: application/json' \
		-d "{\"input_file_id\":\"$1\",\"endpoint\":\"${2:-/v1/completions}\",\"completion_window\":\"24h\"}")" = 200 ] ||
		fail "create: $(cat "$T/body.json")"
	json "$T/body.json" 'd["id"]'
}
