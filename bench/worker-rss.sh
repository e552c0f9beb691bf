#!/bin/sh
# Peak memory of a real worker: margind and one `margin-worker serve` of
# the llama-110m preset with SLOTS slots of CTX positions, a KV cache of
# type KV and matrices as WEIGHTS (auto = f32 for a preset, f32, q8_0-panels, or a mix: q8_0, q4_k_m, ...),
# fed a batch of N completions whose prompt + completion fill nearly all of
# a slot's context, so every slot's cache fills at once. It prints the
# worker's peak RSS (VmHWM of /proc/PID/status) and what the requests
# held, then stops what it started.
#   bench/worker-rss.sh [BUILD_DIR]      (or ninja -C BUILD_DIR bench-worker-rss)
#   SLOTS=32 CTX=1024 KV=q8_0 WEIGHTS=auto N=32 THREADS=2 bench/worker-rss.sh build
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-${MESON_BUILD_ROOT:-build}}
SLOTS=${SLOTS:-32}
CTX=${CTX:-1024}
KV=${KV:-q8_0}
WEIGHTS=${WEIGHTS:-auto}
N=${N:-$SLOTS}
THREADS=${THREADS:-2}
# prompt tokens: CTX - GEN - a margin for the tokenizer's rounding
GEN=${GEN:-112}
PROMPT=${PROMPT:-$((CTX - GEN - 16))}

MARGIND="$BUILD/daemon/margind"
WORKER="$BUILD/worker/margin-worker"
CTL="$BUILD/cli/marginctl"
for b in "$MARGIND" "$WORKER" "$CTL"; do
	[ -x "$b" ] || { echo "worker-rss: $b is missing: build first (ninja -C $BUILD)" >&2; exit 2; }
done
RUN=$(mktemp -d "${TMPDIR:-/tmp}/margin-rss-XXXXXX")
PIDS=""
stop_all() {
	rc=$?
	trap - EXIT INT TERM
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ $rc -eq 0 ] || for f in "$RUN"/*.log; do echo "---- $f" >&2; tail -n 10 "$f" >&2; done
	rm -rf "$RUN"
	exit $rc
}
trap stop_all EXIT INT TERM

"$MARGIND" --state-dir "$RUN/state" --http 127.0.0.1:0 --workers tcp://127.0.0.1:0 --no-curve \
	--set scheduler.shard_requests=1 > "$RUN/margind.log" 2>&1 &
PIDS="$!"
i=0
until [ -s "$RUN/state/http" ] && [ -s "$RUN/state/endpoints" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "margind did not start" >&2; exit 1; }
	sleep 0.05
done
MARGIN_URL=$(cat "$RUN/state/http")
export MARGIN_URL
WORKERS_EP=$(sed -n 's/^workers=//p' "$RUN/state/endpoints")

"$WORKER" serve --scheduler "$WORKERS_EP" --arch llama-110m --name rss --threads "$THREADS" \
	--slots "$SLOTS" --ctx "$CTX" --kv "$KV" --weights "$WEIGHTS" --no-curve > "$RUN/worker.log" 2>&1 &
WPID=$!
PIDS="$WPID $PIDS"
i=0
until curl -sf "$MARGIN_URL/readyz" 2>/dev/null | grep -q '"workers":1'; do
	i=$((i + 1)); [ $i -lt 600 ] || { echo "the worker did not connect" >&2; exit 1; }
	sleep 0.1
done
idle=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$WPID/status")

# Prompts of PROMPT tokens (the results' usage gives the counts).
python3 - "$N" "$PROMPT" "$GEN" > "$RUN/batch.jsonl" <<'EOF'
import json, random, sys
n, plen, gen = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# one token each in the synthetic vocabulary (margin-worker tokenize on a
# `synth --arch llama-110m` file), so a prompt of k words is k tokens + BOS
words = "the a cat dog ran sat on mat sun sky big red and of to in was".split()
for i in range(n):
    rnd = random.Random(i)
    text = " ".join(rnd.choice(words) for _ in range(plen))
    body = {"model": "llama-110m", "prompt": text, "max_tokens": gen, "temperature": 0}
    print(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions", "body": body}))
EOF
start=$(date +%s.%N)
BID=$("$CTL" submit "$RUN/batch.jsonl")
peak_seen=0
while :; do
	st=$("$CTL" status "$BID" 2>/dev/null | sed -n 's/^status:[[:space:]]*//p' | cut -d' ' -f1)
	rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$WPID/status")
	[ "$rss" -gt "$peak_seen" ] && peak_seen=$rss
	case "$st" in completed|failed|cancelled|expired) break ;; esac
	sleep 0.5
done
end=$(date +%s.%N)
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$WPID/status")
"$CTL" results "$BID" -o "$RUN/out.jsonl" > /dev/null 2>&1
python3 - "$RUN/out.jsonl" "$idle" "$hwm" "$start" "$end" "$SLOTS" "$CTX" "$KV" "$RUN/worker.log" "$WEIGHTS" <<'EOF'
import json, re, sys
out, idle, hwm, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
slots, ctx, kv, log, weights = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], sys.argv[9], sys.argv[10]
held, ok, comp = [], 0, 0
for line in open(out):
    o = json.loads(line)
    if o.get("error") or o["response"]["status_code"] != 200:
        continue
    u = o["response"]["body"]["usage"]
    ok += 1
    comp += u["completion_tokens"]
    held.append(u["prompt_tokens"] + u["completion_tokens"])
ready = ""
for line in open(log):
    if 'msg="engine ready"' in line:
        m = re.search(r"kv_bytes=(\d+) .*weight_bytes=(\d+)", line)
        ready = f"KV reserved {int(m.group(1)) / 2**20:.0f} MiB, weights {int(m.group(2)) / 2**20:.0f} MiB"
print(f"worker: llama-110m, {slots} slots x {ctx} positions, kv_type {kv}, weights {weights}; {ready}")
print(f"requests: {ok} ok; positions held per request {min(held)}-{max(held)} "
      f"(of {ctx}); {comp} tokens generated in {t1 - t0:.1f} s")
print(f"worker RSS: {idle / 1024:.0f} MiB connected and idle, peak {hwm / 1024:.0f} MiB "
      f"({hwm / 2**20:.3f} GiB, VmHWM)")
EOF
