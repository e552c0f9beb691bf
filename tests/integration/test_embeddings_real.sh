#!/bin/sh
# /v1/embeddings against a real worker: margin-worker serve --model
# stories15M-q8_0.gguf (its ModelInfo must say embed_dims > 0), driven as
# the openai Python SDK drives it (embed_sdk.py: base64 then float, bit-equal
# vectors of norm 1, an input's vector the same alone and in a list,
# usage, refusals), then a small batch of embeddings through marginctl
# submit whose vectors equal the synchronous ones.
#
#   test_embeddings_real.sh
#
# Binaries from $MARGIND, $MARGIN_WORKER, $MARGINCTL; the model from
# $MARGIN_SHARED_DIR/models (meson sets them); numpy from /usr/bin/python3.
set -eu

SCENARIO=real
: "${MARGIND:?run through meson test}" "${MARGIN_WORKER:?}" "${MARGINCTL:?}"
SHARED=${MARGIN_SHARED_DIR:-}
[ -n "$SHARED" ] || SHARED=$(cd "$(dirname "$0")/../../../shared" && pwd)
GGUF=$SHARED/models/stories15M-q8_0.gguf

NAME=embeddings-real
. "$(dirname "$0")/lib.sh"
PY=${MARGIN_NUMPY_PYTHON:-/usr/bin/python3}
[ -f "$GGUF" ] || fail "$GGUF is missing"

api_key
daemon_start d
OPENBLAS_NUM_THREADS=1 "$MARGIN_WORKER" serve --scheduler "$WEP" --name real --threads 1 --slots 4 \
	--model "$GGUF" --no-curve >> "$T/real.log" 2>&1 &
PIDS="$PIDS $!"
wait_ready 1
"$PY" "$(dirname "$0")/embed_sdk.py" "$URL" "$KEY" stories15M-q8_0 > "$T/sdk.out" 2>&1 ||
	{ cat "$T/sdk.out" >&2; fail "embed_sdk.py against the real worker"; }
note "$(cat "$T/sdk.out")"

# A batch: the same texts, the same vectors as the synchronous calls.
python3 - "$T/in.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i, t in enumerate(["Once upon a time", "there was a little girl", "who liked to play"]):
        f.write(json.dumps({"custom_id": f"t{i}", "method": "POST", "url": "/v1/embeddings",
                            "body": {"model": "stories15M-q8_0", "input": t}}) + "\n")
EOF
BID=$(timeout 120 "$MARGINCTL" submit "$T/in.jsonl" --wait 2> "$T/submit.err") ||
	{ cat "$T/submit.err" >&2; fail "marginctl submit --wait"; }
BID=$(echo "$BID" | head -n 1)
"$MARGINCTL" results "$BID" -o "$T/out.jsonl" 2> /dev/null || fail "marginctl results"
"$PY" - "$T/out.jsonl" "$URL" "$KEY" <<'EOF' || fail "batch vectors differ from the synchronous ones"
import json, sys, urllib.request
import numpy as np
out, url, key = sys.argv[1:4]
lines = {json.loads(l)["custom_id"]: json.loads(l) for l in open(out)}
assert sorted(lines) == ["t0", "t1", "t2"], sorted(lines)
texts = ["Once upon a time", "there was a little girl", "who liked to play"]
req = urllib.request.Request(url + "/v1/embeddings", method="POST",
                             data=json.dumps({"input": texts, "model": "stories15M-q8_0", "encoding_format": "float"}).encode(),
                             headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
sync = json.loads(urllib.request.urlopen(req, timeout=60).read())["data"]
for i in range(3):
    b = np.array(lines[f"t{i}"]["response"]["body"]["data"][0]["embedding"], dtype="float32")
    s = np.array(sync[i]["embedding"], dtype="float32")
    assert b.tobytes() == s.tobytes(), i
EOF
# Booked: prompt tokens, no completion tokens, priced on the embedding
# references only (never on a chat model), and counted in /metrics.
"$MARGINCTL" cost --batch "$BID" --group batch --format json > "$T/cost.json" 2> "$T/cost.err" ||
	{ cat "$T/cost.err" >&2; fail "marginctl cost"; }
curl -sf -H "Authorization: Bearer $KEY" "$URL/metrics" > "$T/metrics.txt" || fail "GET /metrics"
"$PY" - "$T/cost.json" "$T/out.jsonl" "$T/metrics.txt" <<'EOF' || fail "the embedding batch's booking"
import json, re, sys
cost = json.load(open(sys.argv[1]))
outs = [json.loads(l) for l in open(sys.argv[2])]
want_tokens = sum(o["response"]["body"]["usage"]["prompt_tokens"] for o in outs)
t = cost["total"]
assert t["calls"] == 3, t
assert t["prompt_tokens"] == want_tokens and t["completion_tokens"] == 0, (t, want_tokens)
text = json.dumps(cost)
assert "text-embedding-3-small" in text, "not compared with text-embedding-3-small"
assert "gpt-4o-mini" not in text, "an embedding batch compared with a chat model"
m = re.search(r'^margin_embeddings_total\{model_name="stories15M-q8_0"\} (\d+)', open(sys.argv[3]).read(), re.M)
assert m and int(m.group(1)) >= 6, m and m.group(0)  # 3 batch lines, 3 sync inputs and the SDK's
EOF
note "ok"
