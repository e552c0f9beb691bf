#!/bin/sh
# The main job on the built-in default model, end to end on this machine:
# install dependencies, build, start margind and two workers serving the
# synthetic llama-110m preset (nothing to download), submit the example
# batch (deploy/example/batch.jsonl) through the OpenAI-style HTTP API,
# follow it with marginctl's progress bar, print a few results and what the
# batch cost, then stop everything this script started.
#   deploy/quickstart.sh [BUILD_DIR]
# KEEP=1 keeps the run directory (state, logs, outputs) for a look afterwards.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}

deploy/install-deps.sh
if [ ! -d "$BUILD" ]; then
	meson setup "$BUILD" -Dbuildtype=release
fi
ninja -C "$BUILD"

MARGIND="$BUILD/daemon/margind"
WORKER="$BUILD/worker/margin-worker"
CTL="$BUILD/cli/marginctl"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/margin-quickstart-XXXXXX")
PIDS=""

stop_all() {
	rc=$?
	trap - EXIT INT TERM
	# Workers first (they finish what they hold), then the daemon; SIGKILL
	# whatever has not stopped after 15 s.
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	i=0
	for p in $PIDS; do
		while kill -0 "$p" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		echo "quickstart failed; the last log lines:" >&2
		for f in "$RUN"/*.log; do [ -f "$f" ] && { echo "---- $f" >&2; tail -n 15 "$f" >&2; }; done
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "run directory kept: $RUN"
	else
		rm -rf "$RUN"
	fi
	exit $rc
}
trap stop_all EXIT INT TERM

echo "== margind: journal in $RUN/state, HTTP API on 127.0.0.1"
# Everything listens on loopback only: plain TCP to the workers is fine
# here (--no-curve); see docs/operations for CURVE keys across machines.
# Shards of 4 requests: both workers get a share of the 20 requests, and
# the progress bar moves as each shard comes back.
"$MARGIND" --state-dir "$RUN/state" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --no-curve \
	--set scheduler.shard_requests=4 > "$RUN/margind.log" 2>&1 &
PIDS="$!"
i=0
until [ -s "$RUN/state/http" ] && [ -s "$RUN/state/endpoints" ]; do
	i=$((i + 1))
	[ $i -lt 200 ] || { echo "margind did not start" >&2; exit 1; }
	sleep 0.05
done
MARGIN_URL=$(cat "$RUN/state/http")
export MARGIN_URL
WORKERS_EP=$(sed -n 's/^workers=//p' "$RUN/state/endpoints")
echo "   $MARGIN_URL (OpenAI base URL: $MARGIN_URL/v1)"

echo "== two workers: margin-worker serve --arch llama-110m (one thread each)"
for n in 1 2; do
	OPENBLAS_NUM_THREADS=1 "$WORKER" serve --scheduler "$WORKERS_EP" --arch llama-110m \
		--name "worker-$n" --threads 1 --slots 8 --hardware cpu-2vcpu --no-curve \
		> "$RUN/worker-$n.log" 2>&1 &
	PIDS="$! $PIDS"
done
i=0
until curl -sf "$MARGIN_URL/readyz" 2>/dev/null | grep -q '"workers":2'; do
	i=$((i + 1))
	[ $i -lt 600 ] || { echo "the workers did not connect within 60 s" >&2; exit 1; }
	sleep 0.1
done
"$CTL" models

echo "== submit deploy/example/batch.jsonl (20 completions, max_tokens 16)"
BID=$("$CTL" submit deploy/example/batch.jsonl --metadata source=quickstart)
echo "== marginctl wait $BID"
"$CTL" wait "$BID"

echo "== a few results (marginctl results $BID -o output.jsonl)"
"$CTL" results "$BID" -o "$RUN/output.jsonl"
python3 - "$RUN/output.jsonl" deploy/example/batch.jsonl <<'EOF'
import json, sys
prompts = {}
for line in open(sys.argv[2]):
    o = json.loads(line)
    prompts[o["custom_id"]] = o["body"]["prompt"]
for line in list(open(sys.argv[1]))[:3]:
    o = json.loads(line)
    b = o["response"]["body"]
    u = b["usage"]
    print(f'{o["custom_id"]}: {prompts.get(o["custom_id"], "")!r}')
    print(f'  -> {b["choices"][0]["text"]!r}')
    print(f'     finish_reason={b["choices"][0]["finish_reason"]} prompt_tokens={u["prompt_tokens"]} '
          f'completion_tokens={u["completion_tokens"]}')
EOF

echo "== what it cost (hardware profile cpu-2vcpu, deploy/hardware)"
"$CTL" status "$BID" | grep -E '^(requests|tokens|busy):' || true
if "$CTL" cost --help > /dev/null 2>&1; then
	"$CTL" cost --batch "$BID"
else
	curl -sf "$MARGIN_URL/v1/cost?batch=$BID&group=batch&format=text" || echo "(no cost report in this build)"
fi

echo "== one synchronous request: POST /v1/completions"
curl -s "$MARGIN_URL/v1/completions" -H 'content-type: application/json' \
	-d '{"model":"llama-110m","prompt":"The end of the story was","max_tokens":12,"temperature":0}' |
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(repr(d["choices"][0]["text"]), d["usage"])'

echo "== Prometheus: $MARGIN_URL/metrics"
curl -s "$MARGIN_URL/metrics" | grep -E '^margin_(requests_total|generation_tokens_total|workers)[{ ]' || true
echo "== done; stopping margind and the workers"
