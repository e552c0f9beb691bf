#!/bin/sh
# The main job on the built-in default model, end to end on this machine:
# install dependencies, build, start margind and three workers - two serving
# the shipped stories15M model (models/stories15M-q8_0.gguf: a real, trained
# 15M-parameter LLaMA that writes children's stories, MIT; nothing to
# download) and one serving the synthetic llama-110m preset (random weights:
# a model shape for sizing, its text is gibberish) - submit the example
# story batch (deploy/example/batch.jsonl) through the OpenAI-style HTTP
# API, follow it with marginctl's progress bar, print a few stories and what
# the batch cost, then a small batch on llama-110m to show that margind
# routes each batch by its model name, then stop everything this script
# started.
#   deploy/quickstart.sh [BUILD_DIR]
# KEEP=1 keeps the run directory (state, logs, outputs) for a look afterwards.
# NO_BUILD=1 skips deploy/install-deps.sh and the build: BUILD_DIR must hold
# the built programs (the integration test runs the script this way).
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}

if [ -z "${NO_BUILD:-}" ]; then
	deploy/install-deps.sh
	if [ ! -d "$BUILD" ]; then
		meson setup "$BUILD" -Dbuildtype=release
	fi
	ninja -C "$BUILD"
fi

MARGIND="$BUILD/daemon/margind"
WORKER="$BUILD/worker/margin-worker"
CTL="$BUILD/cli/marginctl"
# The shipped model (models/README.md: origin, license, sha256); a clone
# without it (e.g. an archive that dropped binaries) cannot run the stories.
MODEL=models/stories15M-q8_0.gguf
[ -s "$MODEL" ] || { echo "quickstart: $MODEL is missing (see models/README.md)" >&2; exit 1; }
STORIES=stories15M-q8_0
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
# Shards of 4 requests: both story workers get a share of the 16 stories,
# and the progress bar moves as each shard comes back.
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

echo "== three workers, one thread each: margin-worker serve"
echo "   worker-1, worker-2: --model $MODEL (serves model $STORIES)"
echo "   worker-3:           --arch llama-110m (synthetic weights, for sizing)"
# A worker serves one model and advertises its name (a file's name without
# .gguf, or the preset); margind sends each batch only to workers serving
# the batch's "model". --slots: sequences each worker decodes together.
# The workers keep the file's Q8_0 blocks as they are (16 MB) and multiply
# them as llama.cpp does, so the greedy story is llama.cpp's, token for token.
for n in 1 2; do
	OPENBLAS_NUM_THREADS=1 "$WORKER" serve --scheduler "$WORKERS_EP" --model "$MODEL" \
		--name "worker-$n" --threads 1 --slots 8 --hardware cpu-2vcpu --no-curve \
		> "$RUN/worker-$n.log" 2>&1 &
	PIDS="$! $PIDS"
done
OPENBLAS_NUM_THREADS=1 "$WORKER" serve --scheduler "$WORKERS_EP" --arch llama-110m \
	--name worker-3 --threads 1 --slots 4 --hardware cpu-2vcpu --no-curve \
	> "$RUN/worker-3.log" 2>&1 &
PIDS="$! $PIDS"
i=0
until curl -sf "$MARGIN_URL/readyz" 2>/dev/null | grep -q '"workers":3'; do
	i=$((i + 1))
	[ $i -lt 600 ] || { echo "the workers did not connect within 60 s" >&2; exit 1; }
	sleep 0.1
done
"$CTL" models

echo "== submit deploy/example/batch.jsonl (16 story continuations on $STORIES, max_tokens 64-96)"
BID=$("$CTL" submit deploy/example/batch.jsonl --metadata source=quickstart)
echo "== marginctl wait $BID"
"$CTL" wait "$BID"

echo "== a few stories (marginctl results $BID -o output.jsonl)"
"$CTL" results "$BID" -o "$RUN/output.jsonl"
python3 - "$RUN/output.jsonl" deploy/example/batch.jsonl <<'EOF'
import json, sys, textwrap
bodies = {}
for line in open(sys.argv[2]):
    o = json.loads(line)
    bodies[o["custom_id"]] = o["body"]
outputs = sorted((json.loads(line) for line in open(sys.argv[1])), key=lambda o: o["custom_id"])
for o in outputs[:3]:
    req = bodies[o["custom_id"]]
    b = o["response"]["body"]
    u = b["usage"]
    c = b["choices"][0]
    how = ("greedy" if req.get("temperature", 1) == 0 else
           f'temperature {req["temperature"]}, seed {req.get("seed", "from the batch")}')
    print(f'{o["custom_id"]} ({b["model"]}, {how}, max_tokens {req["max_tokens"]}):')
    print(f'  prompt: {req["prompt"]}')
    first = True
    for para in c["text"].lstrip(" ").split("\n"):
        for l in textwrap.wrap(para, 70) or ([""] if first else []):
            print(("  text:   " if first else "          ") + l)
            first = False
    print(f'  finish_reason={c["finish_reason"]} prompt_tokens={u["prompt_tokens"]} '
          f'completion_tokens={u["completion_tokens"]}')
EOF

echo "== what it cost (hardware profile cpu-2vcpu, deploy/hardware)"
"$CTL" status "$BID" | grep -E '^(requests|tokens|busy):' || true
"$CTL" cost --batch "$BID" --group worker

echo "== routing by model name: deploy/example/sizing.jsonl (4 requests on llama-110m)"
SID=$("$CTL" submit deploy/example/sizing.jsonl --metadata source=quickstart)
"$CTL" wait "$SID" 2>&1 | tail -n 2
"$CTL" results "$SID" -o "$RUN/sizing.jsonl" > /dev/null
"$CTL" cost --batch "$SID" --group worker
echo "(only worker-3 serves llama-110m; its random weights give random text: it measures the"
echo " speed and cost of a 110M-parameter shape, see margin-worker bench and docs/bench.md)"

echo "== one synchronous request: POST /v1/completions"
curl -s "$MARGIN_URL/v1/completions" -H 'content-type: application/json' \
	-d '{"model":"'"$STORIES"'","prompt":"The little dog was happy because","max_tokens":40,"temperature":0}' |
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(repr(d["choices"][0]["text"])); print(d["usage"])'

echo "== Prometheus: $MARGIN_URL/metrics"
curl -s "$MARGIN_URL/metrics" | grep -E '^margin_(requests_total|generation_tokens_total|workers)[{ ]' || true
echo "== done; stopping margind and the workers"
