#!/bin/sh
# The README's main job: deploy/quickstart.sh on the built tree (NO_BUILD=1:
# no package install, no build; the programs of this build directory), and
# what a new user reads in its output.
#
#   test_quickstart.sh SCENARIO
#     model  models/stories15M-q8_0.gguf is the file models/README.md
#            describes (size and sha256 as written there), git does not
#            ignore it, and its LICENSE is llama2.c's MIT one.
#     run    the script exits 0; `marginctl models` lists stories15M-q8_0 on
#            two workers and llama-110m on one; the 16 stories completed on
#            stories15M-q8_0 and read as English (the greedy "Once upon a
#            time" begins as llama.cpp's greedy reference for this file
#            does); the three printed stories and the synchronous request
#            are the stories model's; the progress shows tokens/s and the
#            cost report rows for both story workers; the llama-110m batch
#            went to worker-3 alone (routing by model name); the metrics
#            count both models.
#
# Binaries come from $MARGIN_BUILD_ROOT, the tree from $MARGIN_SOURCE_ROOT
# (meson sets them). The script stops what it started; its run directory
# (KEEP=1) is kept under $T for the checks and removed with it.
set -eu

SCENARIO=${1:?usage: test_quickstart.sh SCENARIO}
: "${MARGIN_BUILD_ROOT:?run through meson test}" "${MARGIN_SOURCE_ROOT:?}"
SRC=$MARGIN_SOURCE_ROOT
SHARED=${MARGIN_SHARED_DIR:-}
[ -n "$SHARED" ] || SHARED=$SRC/../shared

NAME=quickstart
. "$(dirname "$0")/lib.sh"

MODEL=$SRC/models/stories15M-q8_0.gguf

sc_model() {
	[ -s "$MODEL" ] || fail "$MODEL is missing"
	python3 - "$MODEL" "$SRC/models/README.md" "$SRC/models/LICENSE" <<'EOF' || fail "models/: see above"
import hashlib, os, re, sys
model, readme, lic = sys.argv[1:]
text = open(readme, encoding="utf-8").read()
row = re.search(r"^\| `stories15M-q8_0\.gguf` \| (\d+) \| `([0-9a-f]{64})` \|$", text, re.M)
if not row:
    sys.exit("models/README.md has no row: | `stories15M-q8_0.gguf` | BYTES | `SHA256` |")
size, digest = int(row.group(1)), row.group(2)
h = hashlib.sha256()
with open(model, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if os.path.getsize(model) != size or h.hexdigest() != digest:
    sys.exit(f"{model}: {os.path.getsize(model)} bytes, sha256 {h.hexdigest()}; "
             f"models/README.md says {size}, {digest}")
for word in ("MIT", "llama.cpp", "c392e5094deaf2d1a7c18683214f007fad3fe42b", "TinyStories"):
    if word not in text:
        sys.exit(f"models/README.md does not mention {word}")
l = open(lic, encoding="utf-8").read()
if not l.startswith("MIT License") or "Copyright (c) 2023 Andrej" not in l:
    sys.exit("models/LICENSE is not llama2.c's MIT license (Copyright (c) 2023 Andrej)")
EOF
	if git -C "$SRC" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
		if git -C "$SRC" check-ignore -q models/stories15M-q8_0.gguf; then
			fail ".gitignore excludes models/stories15M-q8_0.gguf: a clone would not have it"
		fi
	else
		note "not a git work tree: .gitignore not checked"
	fi
	note "ok: the model file, its README row (size, sha256) and LICENSE agree"
}

sc_run() {
	st=0
	(cd "$SRC" && NO_BUILD=1 KEEP=1 TMPDIR=$T deploy/quickstart.sh "$MARGIN_BUILD_ROOT") \
		> "$T/stdout.log" 2>&1 || st=$?
	[ $st = 0 ] || fail "deploy/quickstart.sh exited $st"
	RUN=$(sed -n 's/^run directory kept: //p' "$T/stdout.log")
	[ -n "$RUN" ] && [ -f "$RUN/output.jsonl" ] || fail "no run directory with output.jsonl in the output"
	for f in "$RUN"/*.log; do cp "$f" "$T/run-$(basename "$f")"; done

	ref=$SHARED/testdata/stories15M_q8_0_greedy.json
	[ -f "$ref" ] || { note "no $ref: the literal first sentence instead"; ref=; }
	python3 - "$T/stdout.log" "$RUN/output.jsonl" "$RUN/sizing.jsonl" "$SRC/deploy/example/batch.jsonl" "$ref" <<'EOF' ||
import json, re, sys
stdout, output, sizing, batch, ref = sys.argv[1:]
out = open(stdout, encoding="utf-8").read()
errors = []
def check(ok, what):
    if not ok:
        errors.append(what)

# The models the workers advertise, as `marginctl models` prints them.
check(re.search(r"^stories15M-q8_0\s+2\s+256$", out, re.M), "marginctl models: stories15M-q8_0 on 2 workers, context 256")
check(re.search(r"^llama-110m\s+1\s+\d+$", out, re.M), "marginctl models: llama-110m on 1 worker")

# Every story completed on the stories model, in English. The random
# weights of a synthetic model give strings like 'efb nowrbo mlhgf', which
# have none of these words.
COMMON = set("""a an the and but so then was were is are he she it they his her their him them
    to of in on at with for from up out into by said saw had have has not no very big little
    one day time there happy sad play played wanted went""".split())
requests = {json.loads(l)["custom_id"]: json.loads(l)["body"] for l in open(batch, encoding="utf-8")}
results = [json.loads(l) for l in open(output, encoding="utf-8")]
check(len(results) == len(requests) == 16, f"{len(results)} results for {len(requests)} requests, not 16")
texts = {}
for o in results:
    cid = o["custom_id"]
    body = (o.get("response") or {}).get("body") or {}
    check(o.get("error") is None and (o.get("response") or {}).get("status_code") == 200, f"{cid}: not answered: {o}")
    check(body.get("model") == "stories15M-q8_0", f"{cid}: model {body.get('model')!r}")
    text = body["choices"][0]["text"]
    texts[cid] = text
    words = re.findall(r"[a-z]+", text.lower())
    common = sum(w in COMMON for w in words)
    check(len(words) >= 8 and common * 4 >= len(words),
          f"{cid}: not English ({common} of {len(words)} words common): {text!r}")
    check("\ufffd" not in text, f"{cid}: a replacement character: {text!r}")
    check(body["usage"]["completion_tokens"] <= requests[cid]["max_tokens"], f"{cid}: over max_tokens")

# The greedy "Once upon a time" begins with llama.cpp's whole greedy
# reference for this file (48 tokens): the workers multiply the Q8_0 blocks
# with llama.cpp's arithmetic.
check(requests["story-01"]["prompt"] == "Once upon a time" and requests["story-01"]["temperature"] == 0,
      "story-01 is no longer the greedy 'Once upon a time'")
first = ", there was a little girl named Lily."
if ref:
    case = [c for c in json.load(open(ref, encoding="utf-8"))["cases"] if c["prompt"] == "Once upon a time"][0]
    first = case["output_text"]
check(texts.get("story-01", "").startswith(first), f"story-01 {texts.get('story-01')!r} does not begin {first!r}")

# What the script prints: the stories with their model, a tokens/s figure,
# the cost rows of both story workers.
check(re.search(r"^story-01 \(stories15M-q8_0, greedy, max_tokens 96\):$", out, re.M), "story-01's heading")
check(re.search(r"^  text:   , there was a little girl named Lily\.", out, re.M), "story-01's text as printed")
check(len(re.findall(r"^story-\d\d \(stories15M-q8_0, ", out, re.M)) == 3, "three stories printed")
rates = [float(x) for x in re.findall(r": \d+/16 done, 0 failed, (\d+(?:\.\d+)?) tok/s", out)]
check(rates and rates[-1] > 0, "no tokens/s figure for the story batch")
story_cost = out[out.index("== what it cost"):out.index("== routing")] if "== routing" in out else ""
for w in ("worker-1", "worker-2"):
    check(re.search(rf"^{w}\s+8\s+\d+\s+\d+\.\d+\s+\d+\.\d+", story_cost, re.M), f"cost row of {w} (8 calls)")
check(re.search(r"^total\s+16\s", story_cost, re.M), "cost total of 16 calls")
check("worker-3" not in story_cost, "the story batch ran on worker-3 (llama-110m)")

# Routing by model name: the llama-110m batch went to worker-3 only.
sized = [json.loads(l) for l in open(sizing, encoding="utf-8")]
check(len(sized) == 4 and all(o["response"]["body"]["model"] == "llama-110m" for o in sized), "sizing results")
route = out[out.index("== routing"):out.index("== one synchronous")] if "== one synchronous" in out else ""
check(re.search(r"^worker-3\s+4\s", route, re.M), "cost row of worker-3 (4 calls) for the sizing batch")
check("worker-1" not in route and "worker-2" not in route, "the llama-110m batch ran on a stories worker")

# The synchronous request and the metrics.
sync = out[out.index("== one synchronous"):].splitlines()[1] if "== one synchronous" in out else ""
words = re.findall(r"[a-z]+", sync.lower())
check(len(words) >= 8 and sum(w in COMMON for w in words) * 4 >= len(words), f"synchronous reply: {sync!r}")
check('margin_requests_total{model_name="stories15M-q8_0",status="completed"} 17' in out, "metrics: 17 stories")
check('margin_requests_total{model_name="llama-110m",status="completed"} 4' in out, "metrics: 4 on llama-110m")
check("margin_workers 3" in out, "metrics: 3 workers")

for e in errors:
    print("quickstart output:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
		fail "the quickstart's output (stdout and stderr) was:$(echo; cat "$T/stdout.log")"
	note "ok: stories in English on stories15M-q8_0, costs, routing of llama-110m to worker-3"
}

case $SCENARIO in
model) sc_model ;;
run) sc_run ;;
*) fail "unknown scenario $SCENARIO" ;;
esac
