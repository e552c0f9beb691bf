#!/bin/sh
# Integration scenarios of /v1/embeddings: a real margind and fake workers
# (margin-worker serve --fake answers embedding requests with vectors that
# are a function of the input and dimensions alone).
#
#   test_embeddings.sh SCENARIO     sdk | batch
#
#   sdk    POST /v1/embeddings as the openai Python SDK sends it (its
#          default base64, then float), shapes, usage, bit-equal vectors,
#          and every refusal (embed_sdk.py)
#   batch  an input file with endpoint /v1/embeddings through marginctl
#          submit, then the same file through the HTTP API with a kill -9
#          of a worker and of margind in the middle: every custom_id
#          answered exactly once, bad lines in the error file with their
#          line numbers, and the output file the same bytes as the
#          undisturbed run's (ids aside: they derive from the batch id) and
#          as itself after another kill -9.
#
# Binaries come from $MARGIND, $MARGIN_WORKER, $MARGINCTL (meson sets
# them); numpy from /usr/bin/python3.
set -eu

SCENARIO=${1:?usage: test_embeddings.sh SCENARIO}
: "${MARGIND:?run through meson test}" "${MARGIN_WORKER:?}" "${MARGINCTL:?}"

NAME=embeddings
. "$(dirname "$0")/lib.sh"
PY=${MARGIN_NUMPY_PYTHON:-/usr/bin/python3}

api_key

sc_sdk() {
	daemon_start d
	worker_start w1
	wait_ready 1
	"$PY" "$(dirname "$0")/embed_sdk.py" "$URL" "$KEY" llama-110m 16 > "$T/sdk.out" 2>&1 ||
		{ cat "$T/sdk.out" >&2; fail "embed_sdk.py"; }
	note "$(cat "$T/sdk.out")"
}

# make_embed_input OUT N: N embedding lines of the four input shapes, both
# encodings, some cut to 8 dimensions (doc-0000...), then four bad lines:
# 41 a token list with a string, 42 more dimensions than the model has,
# 43 a text longer than the context (refused by the worker), 44 another url.
make_embed_input() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
with open(out, "w") as f:
    def line(cid, body, url="/v1/embeddings"):
        f.write(json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body}) + "\n")
    for i in range(n):
        body = {"model": "llama-110m"}
        k = i % 4
        if k == 0:
            body["input"] = f"document number {i}"
        elif k == 1:
            body["input"] = [f"first of {i}", f"second of {i}"]
            body["encoding_format"] = "base64"
        elif k == 2:
            body["input"] = [1, 100 + i, 200 + i]
        else:
            body["input"] = [[1, i], [2, i], [3, i]]
            body["dimensions"] = 8
        line(f"doc-{i:04d}", body)
    line("bad-input", {"model": "llama-110m", "input": [1, "a"]})
    line("bad-dims", {"model": "llama-110m", "input": "x", "dimensions": 40})
    line("too-long", {"model": "llama-110m", "input": "word " * 20000})
    line("bad-url", {"model": "llama-110m", "prompt": "x"}, "/v1/completions")
EOF
}

# check_embed OUT ERR N: every doc-0000..N-1 once in OUT with its vectors,
# the four bad lines once in ERR; prints the sum of prompt_tokens.
check_embed() {
	"$PY" - "$1" "$2" "$3" <<'EOF' || fail "output files $1 / $2 are wrong"
import base64, json, sys
import numpy as np
out, err, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen, tokens = set(), 0
for l in open(out):
    o = json.loads(l)
    cid = o["custom_id"]
    assert cid not in seen, f"{cid} twice"
    seen.add(cid)
    assert o["error"] is None and o["response"]["status_code"] == 200, o
    b = o["response"]["body"]
    i = int(cid.split("-")[1])
    k = i % 4
    assert b["object"] == "list" and b["model"] == "llama-110m", b
    assert len(b["data"]) == [1, 2, 1, 3][k], (cid, len(b["data"]))
    for j, e in enumerate(b["data"]):
        assert e["object"] == "embedding" and e["index"] == j, e
        v = e["embedding"]
        v = np.frombuffer(base64.b64decode(v), dtype="float32") if k == 1 else np.array(v, dtype="float32")
        assert v.size == (8 if k == 3 else 16), (cid, v.size)
        assert abs(np.linalg.norm(v.astype(np.float64)) - 1) < 1e-5, (cid, v)
    u = b["usage"]
    assert u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"], u
    tokens += u["prompt_tokens"]
missing = {f"doc-{i:04d}" for i in range(n)} - seen
assert not missing and len(seen) == n, sorted(missing)[:5]
want = {"bad-input": (n + 1, "body.input[1]: expected a token id"),
        "bad-dims": (n + 2, "body.dimensions: 40 is more than the 16 dimensions of model llama-110m's vectors"),
        "bad-url": (n + 4, 'url: "/v1/completions" does not match the batch\'s endpoint "/v1/embeddings"')}
errs = [json.loads(l) for l in open(err)]
assert len(errs) == 4, errs
for o in errs:
    cid = o["custom_id"]
    assert cid not in seen, f"{cid} twice"
    seen.add(cid)
    if cid == "too-long":
        assert o["response"] is None and o["error"]["code"] == "context_length_exceeded", o
        continue
    line, text = want.pop(cid)
    msg = o["response"]["body"]["error"]["message"]
    assert o["response"]["status_code"] == 400 and msg.startswith(f"line {line}: {text}"), (cid, msg)
assert not want, want
print(tokens)
EOF
}

# strip_ids FILE: the lines without the ids derived from the batch id.
strip_ids() {
	sed -e 's/"id":"batch_req_[0-9a-f]*",//' -e 's/"request_id":"req_[0-9a-f]*",//' "$1"
}

# progress BID N: waits until N requests of BID are answered.
progress() {
	i=0
	until [ "$(api GET "/v1/batches/$1")" = 200 ] && [ "$(json "$T/body.json" 'd["request_counts"]["completed"] + d["request_counts"]["failed"]')" -ge "$2" ]; do
		i=$((i + 1)); [ $i -lt 600 ] || fail "batch $1: no progress to $2"
		sleep 0.05
	done
}

sc_batch() {
	N=40
	make_embed_input "$T/in.jsonl" $N

	# The undisturbed run, through marginctl submit (endpoint from the file).
	daemon_start a
	worker_start wa
	wait_ready 1
	BA=$(timeout 60 "$MARGINCTL" submit "$T/in.jsonl" --wait 2> "$T/submit.err") ||
		{ cat "$T/submit.err" >&2; fail "marginctl submit --wait failed"; }
	BA=$(echo "$BA" | head -n 1)
	grep -q "3 line(s) were refused" "$T/submit.err" || fail "submit did not report the refused lines: $(cat "$T/submit.err")"
	[ "$(api GET "/v1/batches/$BA")" = 200 ] || fail "GET batch"
	[ "$(json "$T/body.json" 'd["endpoint"]')" = /v1/embeddings ] || fail "endpoint $(json "$T/body.json" 'd["endpoint"]')"
	[ "$(json "$T/body.json" 'd["request_counts"]')" = "{'total': 44, 'completed': 40, 'failed': 4}" ] ||
		fail "request_counts $(json "$T/body.json" 'd["request_counts"]')"
	IN_A=$(json "$T/body.json" 'd["usage"]["input_tokens"]')
	"$MARGINCTL" results "$BA" -o "$T/a.out" --errors "$T/a.err" 2> /dev/null || fail "marginctl results"
	TOK_A=$(check_embed "$T/a.out" "$T/a.err" $N)
	[ "$TOK_A" = "$IN_A" ] || fail "batch usage $IN_A input tokens, the output lines $TOK_A"
	kill -9 $WPID; daemon_kill

	# The same file through the HTTP API, with a worker and margind killed
	# in the middle: small shards and a slow worker.
	daemon_start b --set scheduler.shard_requests=2
	worker_start w1 --fake-delay 150ms --slots 1
	wait_ready 1
	FID=$(upload "$T/in.jsonl")
	BB=$(create "$FID" /v1/embeddings)
	progress "$BB" 8
	kill -9 $WPID
	note "killed the worker with $(json "$T/body.json" 'd["request_counts"]') answered"
	worker_start w2 --fake-delay 150ms --slots 1
	progress "$BB" 20
	WORKERS_EP=$WEP
	daemon_kill
	note "killed margind with $(json "$T/body.json" 'd["request_counts"]') answered"
	daemon_start b --set scheduler.shard_requests=2
	timeout 90 "$MARGINCTL" wait "$BB" > "$T/wait.out" 2> "$T/wait.err" ||
		fail "wait after the restart: $(cat "$T/wait.out" "$T/wait.err")"
	[ "$(api GET "/v1/batches/$BB")" = 200 ] || fail "GET batch"
	[ "$(json "$T/body.json" 'd["request_counts"]')" = "{'total': 44, 'completed': 40, 'failed': 4}" ] ||
		fail "request_counts after the kills $(json "$T/body.json" 'd["request_counts"]')"
	IN_B=$(json "$T/body.json" 'd["usage"]["input_tokens"]')
	[ "$IN_B" = "$IN_A" ] || fail "input tokens booked: $IN_B after the kills, $IN_A undisturbed"
	OUT=$(json "$T/body.json" 'd["output_file_id"]')
	ERR=$(json "$T/body.json" 'd["error_file_id"]')
	[ "$(api GET "/v1/files/$OUT/content")" = 200 ] || fail "output content"
	cp "$T/body.json" "$T/b.out"
	[ "$(api GET "/v1/files/$ERR/content")" = 200 ] || fail "error content"
	cp "$T/body.json" "$T/b.err"
	check_embed "$T/b.out" "$T/b.err" $N > /dev/null
	strip_ids "$T/a.out" > "$T/a.out.s"; strip_ids "$T/b.out" > "$T/b.out.s"
	cmp "$T/a.out.s" "$T/b.out.s" || fail "the output differs from the undisturbed run's"
	strip_ids "$T/a.err" > "$T/a.err.s"; strip_ids "$T/b.err" > "$T/b.err.s"
	cmp "$T/a.err.s" "$T/b.err.s" || fail "the error file differs from the undisturbed run's"

	# Once more: the files stay the same bytes across another kill -9.
	daemon_kill
	daemon_start b --set scheduler.shard_requests=2
	"$MARGINCTL" results "$BB" -o "$T/b2.out" --errors "$T/b2.err" 2> /dev/null || fail "results after a restart"
	cmp "$T/b.out" "$T/b2.out" || fail "the output file changed across a restart"
	cmp "$T/b.err" "$T/b2.err" || fail "the error file changed across a restart"
	note "ok: $N answered once each, $IN_A input tokens, the same bytes"
}

case $SCENARIO in
sdk | batch) "sc_$SCENARIO" ;;
*) fail "unknown scenario $SCENARIO" ;;
esac
