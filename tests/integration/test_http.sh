#!/bin/sh
# Integration scenarios of the HTTP API: a real margind and fake workers
# (margin-worker serve --fake) on 127.0.0.1, driven with curl and
# marginctl as users drive them.
#
#   test_http.sh SCENARIO     roundtrip | auth | limits | cancel | restart | expire | not_jsonl
#                             | conns | dates | paths
#
# Binaries come from $MARGIND, $MARGIN_WORKER, $MARGINCTL (meson sets
# them). Every process started here is killed on exit, pass or fail; each
# wait is bounded. JSON is checked with python3 (a dependency of the build).
set -eu

SCENARIO=${1:?usage: test_http.sh SCENARIO}
: "${MARGIND:?run through meson test}" "${MARGIN_WORKER:?}" "${MARGINCTL:?}"

NAME=http
. "$(dirname "$0")/lib.sh"

api_key
# Every third request of make_input carries a seed.
SEED_EVERY=3

# check_output OUT N: every req-0000..N-1 exactly once, status 200, usage
# adds up, a finish_reason.
check_output() {
	python3 - "$1" "$2" <<'EOF' || fail "output file $1 is wrong"
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
seen = {}
for line in open(path):
    o = json.loads(line)
    cid = o["custom_id"]
    assert cid not in seen, f"{cid} twice"
    r = o["response"]
    assert r["status_code"] == 200, o
    b = r["body"]
    u = b["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
    assert u["completion_tokens"] > 0 and u["prompt_tokens"] > 0, u
    assert b["choices"][0]["finish_reason"] in ("stop", "length"), b
    assert o["error"] is None
    seen[cid] = 1
want = {f"req-{i:04d}" for i in range(n)}
missing = want - set(seen)
assert not missing, f"missing {sorted(missing)[:5]}"
EOF
}

sc_roundtrip() {
	daemon_start d
	worker_start w1
	worker_start w2
	wait_ready 2
	make_input "$T/in.jsonl" 30
	# Bad lines among good ones: they go to the error file, the rest runs.
	cat >> "$T/in.jsonl" <<'EOF'
{"custom_id":"bad-method","method":"GET","url":"/v1/completions","body":{"model":"llama-110m","prompt":"x"}}
{"custom_id":"bad-url","method":"POST","url":"/v1/chat/completions","body":{"model":"llama-110m","messages":[{"role":"user","content":"x"}]}}
this is not json
{"custom_id":"req-0001","method":"POST","url":"/v1/completions","body":{"model":"llama-110m","prompt":"dup"}}
{"custom_id":"bad-model","method":"POST","url":"/v1/completions","body":{"model":"gpt-4o","prompt":"x"}}
{"custom_id":"bad-ctx","method":"POST","url":"/v1/completions","body":{"model":"llama-110m","prompt":"x","max_tokens":100000}}
EOF
	BID=$(timeout 60 "$MARGINCTL" submit "$T/in.jsonl" --metadata team=itest --wait 2> "$T/submit.err") ||
		{ cat "$T/submit.err" >&2; fail "marginctl submit --wait failed"; }
	BID=$(echo "$BID" | head -n 1)
	case $BID in batch_*) ;; *) fail "submit printed '$BID', not a batch id" ;; esac
	grep -q "6 line(s) were refused" "$T/submit.err" || fail "submit did not report the refused lines"
	[ "$(api GET "/v1/batches/$BID")" = 200 ] || fail "GET batch"
	cp "$T/body.json" "$T/batch.json"
	[ "$(json "$T/batch.json" 'd["status"]')" = completed ] || fail "status $(json "$T/batch.json" 'd["status"]')"
	[ "$(json "$T/batch.json" 'd["request_counts"]')" = "{'total': 36, 'completed': 30, 'failed': 6}" ] ||
		fail "request_counts $(json "$T/batch.json" 'd["request_counts"]')"
	[ "$(json "$T/batch.json" 'd["metadata"]["team"]')" = itest ] || fail "metadata"
	for k in created_at in_progress_at finalizing_at completed_at; do
		[ "$(json "$T/batch.json" "d['$k'] is not None and d['$k'] >= d['created_at']")" = True ] || fail "$k"
	done
	[ "$(json "$T/batch.json" 'd["usage"]["output_tokens"] > 0')" = True ] || fail "batch usage"

	"$MARGINCTL" results "$BID" -o "$T/out.jsonl" --errors "$T/err.jsonl" 2> /dev/null || fail "marginctl results"
	check_output "$T/out.jsonl" 30
	# The same bytes through the Files API.
	OUT=$(json "$T/batch.json" 'd["output_file_id"]')
	api GET "/v1/files/$OUT/content" > /dev/null
	cmp -s "$T/body.json" "$T/out.jsonl" || fail "GET /v1/files/$OUT/content differs from marginctl results"
	python3 - "$T/err.jsonl" <<'EOF' || fail "error file is wrong"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 6, len(lines)
want = {31: "method", 32: "does not match the batch's endpoint", 33: "not valid JSON",
        34: "is used by line 2", 35: "differs from the batch's model", 36: "context"}
for o in lines:
    assert o["error"] is None and o["response"]["status_code"] == 400, o
    msg = o["response"]["body"]["error"]["message"]
    line = int(msg.split(":")[0].split()[1])
    assert want[line] in msg, (line, msg)
    del want[line]
assert not want, want
EOF

	# One synchronous request through the same scheduler.
	[ "$(api POST /v1/chat/completions -H 'content-type: application/json' \
		-d '{"model":"llama-110m","messages":[{"role":"user","content":"Hello"}],"max_tokens":4}')" = 200 ] ||
		fail "sync chat completion: $(cat "$T/body.json")"
	[ "$(json "$T/body.json" 'd["object"]')" = chat.completion ] || fail "sync object"
	[ "$(json "$T/body.json" 'd["usage"]["completion_tokens"] > 0')" = True ] || fail "sync usage"
	# The synchronous job is not a batch.
	api GET "/v1/batches?limit=100" > /dev/null
	[ "$(json "$T/body.json" 'len(d["data"])')" = 1 ] || fail "batch list: $(json "$T/body.json" '[b["id"] for b in d["data"]]')"

	[ "$(api GET /metrics)" = 200 ] || fail "metrics"
	grep -q '^margin_requests_total{model_name="llama-110m",status="completed"} 31$' "$T/body.json" ||
		fail "metrics: $(grep margin_requests_total "$T/body.json")"
	grep -q '^margin_requests_total{model_name="llama-110m",status="invalid"} 6$' "$T/body.json" ||
		fail "metrics: refused lines"
	grep -q '^margin_workers 2$' "$T/body.json" || fail "metrics: workers"
	grep -q '^margin_generation_tokens_total{model_name="llama-110m"} ' "$T/body.json" || fail "metrics: tokens"
	"$MARGINCTL" models | grep -q '^llama-110m ' || fail "marginctl models"
	"$MARGINCTL" list | grep -q "^$BID  *completed" || fail "marginctl list"
	note "ok: $BID"
}

sc_auth() {
	daemon_start d
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "healthz needs no key"
	[ "$(curl -s -o "$T/body.json" -w '%{http_code}' "$URL/v1/batches")" = 401 ] || fail "no key: not 401"
	[ "$(json "$T/body.json" 'd["error"]["code"]')" = invalid_api_key ] || fail "401 body"
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "$URL/v1/files")" = 401 ] ||
		fail "wrong key: not 401"
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "$URL/metrics")" = 401 ] ||
		fail "metrics with a wrong key: not 401"
	if MARGIN_API_KEY=wrong "$MARGINCTL" list 2> "$T/ctl.err"; then fail "marginctl with a wrong key succeeded"; fi
	grep -q "HTTP 401" "$T/ctl.err" || fail "marginctl did not report the 401: $(cat "$T/ctl.err")"
	"$MARGINCTL" list > /dev/null || fail "marginctl with the key failed"
	# A public address without keys: refused at start.
	if "$MARGIND" --state-dir "$T/open" --http 0.0.0.0:0 --workers tcp://127.0.0.1:0 --no-curve \
		> "$T/open.log" 2>&1; then fail "margind started on 0.0.0.0 without --api-keys"; fi
	grep -q -- "--api-keys" "$T/open.log" || fail "the refusal does not say why"
	note ok
}

sc_limits() {
	daemon_start d --set http.max_upload_bytes=4096 --set http.max_line_bytes=512
	head -c 10000 /dev/zero | tr '\0' 'x' > "$T/big.jsonl"
	[ "$(api POST /v1/files -F purpose=batch -F "file=@$T/big.jsonl")" = 413 ] || fail "oversized upload: not 413"
	[ "$(json "$T/body.json" 'd["error"]["type"]')" = invalid_request_error ] || fail "413 body"
	if "$MARGINCTL" submit "$T/big.jsonl" 2> "$T/ctl.err"; then fail "marginctl uploaded an oversized file"; fi
	grep -q "413" "$T/ctl.err" || fail "marginctl did not report the 413"
	{ echo '{"a":1}'; head -c 1000 /dev/zero | tr '\0' 'y'; echo; } > "$T/long.jsonl"
	[ "$(api POST /v1/files -F purpose=batch -F "file=@$T/long.jsonl")" = 400 ] || fail "long line: not 400"
	grep -q "line 2 of the file is longer than 512 bytes" "$T/body.json" || fail "long line message: $(cat "$T/body.json")"
	python3 -c 'import json,sys; json.dump({"input_file_id": "x", "pad": "z" * 2000000}, open(sys.argv[1], "w"))' "$T/bigbody.json"
	[ "$(api POST /v1/batches -H 'content-type: application/json' --data-binary "@$T/bigbody.json")" = 413 ] ||
		fail "oversized JSON body: not 413"
	[ "$(ls -A "$T/d/files")" = "" ] || fail "refused uploads left files: $(ls "$T/d/files")"
	note ok
}

sc_cancel() {
	daemon_start d --set scheduler.shard_requests=2
	worker_start w1 --fake-delay 250ms --slots 2
	wait_ready 1
	# 200 requests at 250 ms a shard of 2: 25 s of work, so a loaded machine
	# cannot finish the batch between the progress check and the cancel.
	make_input "$T/in.jsonl" 200
	BID=$("$MARGINCTL" submit "$T/in.jsonl" 2> /dev/null) || fail "submit"
	i=0
	until [ "$(api GET "/v1/batches/$BID")" = 200 ] && [ "$(json "$T/body.json" 'd["request_counts"]["completed"]')" -ge 4 ]; do
		i=$((i + 1)); [ $i -lt 400 ] || fail "no progress before the cancel"
		sleep 0.05
	done
	"$MARGINCTL" cancel "$BID" > "$T/cancel.out" || fail "marginctl cancel"
	grep -Eq "^$BID (cancelling|cancelled)$" "$T/cancel.out" || fail "cancel said $(cat "$T/cancel.out")"
	if timeout 60 "$MARGINCTL" wait "$BID" > "$T/wait.out" 2> "$T/wait.err"; then fail "wait exited 0 for a cancelled batch"; fi
	grep -q "cancelled" "$T/wait.out" || fail "wait: $(cat "$T/wait.out")"
	api GET "/v1/batches/$BID" > /dev/null
	cp "$T/body.json" "$T/batch.json"
	[ "$(json "$T/batch.json" 'd["status"]')" = cancelled ] || fail "status"
	[ "$(json "$T/batch.json" 'd["cancelled_at"] is not None and d["cancelling_at"] is not None')" = True ] || fail "timestamps"
	DONE=$(json "$T/batch.json" 'd["request_counts"]["completed"]')
	[ "$DONE" -lt 200 ] || fail "the cancel came too late to test anything ($DONE done)"
	"$MARGINCTL" results "$BID" -o "$T/out.jsonl" --errors "$T/err.jsonl" 2> /dev/null || fail "results"
	[ "$(wc -l < "$T/out.jsonl")" -eq "$DONE" ] || fail "output has $(wc -l < "$T/out.jsonl") lines, $DONE completed"
	python3 - "$T/out.jsonl" "$T/err.jsonl" <<'EOF' || fail "cancelled batch files"
import json, sys
ok = [json.loads(l) for l in open(sys.argv[1])]
err = [json.loads(l) for l in open(sys.argv[2])]
ids = [o["custom_id"] for o in ok + err]
assert len(ids) == 200 and len(set(ids)) == 200, len(ids)
for o in err:
    assert o["response"] is None and o["error"]["code"] == "batch_cancelled", o
EOF
	note "ok: $DONE of 200 done before the cancel"
}

sc_restart() {
	daemon_start d --set scheduler.shard_requests=2
	worker_start w1 --fake-delay 100ms --slots 2
	wait_ready 1
	make_input "$T/in.jsonl" 30
	FID=$(upload "$T/in.jsonl")
	# Restart between the upload and the batch: the file survives.
	WORKERS_EP=$WEP
	daemon_kill
	daemon_start d --set scheduler.shard_requests=2
	wait_ready 1
	[ "$(api GET "/v1/files/$FID")" = 200 ] || fail "the upload is gone after a restart"
	BID=$(create "$FID")
	i=0
	until [ "$(api GET "/v1/batches/$BID")" = 200 ] && [ "$(json "$T/body.json" 'd["request_counts"]["completed"]')" -ge 6 ]; do
		i=$((i + 1)); [ $i -lt 400 ] || fail "no progress"
		sleep 0.05
	done
	# And again in the middle of the batch.
	daemon_kill
	note "killed margind with $(json "$T/body.json" 'd["request_counts"]["completed"]') of 30 done"
	daemon_start d --set scheduler.shard_requests=2
	timeout 90 "$MARGINCTL" wait "$BID" > "$T/wait.out" 2> "$T/wait.err" || fail "wait after the restart: $(cat "$T/wait.out" "$T/wait.err")"
	"$MARGINCTL" results "$BID" -o "$T/out.jsonl" 2> /dev/null || fail "results"
	check_output "$T/out.jsonl" 30
	[ "$(wc -l < "$T/out.jsonl")" -eq 30 ] || fail "$(wc -l < "$T/out.jsonl") output lines"
	note ok
}

sc_expire() {
	# A 2 s completion window and a worker that needs ~10 s for the batch.
	daemon_start d --set http.batch_expiry=2s --set scheduler.shard_requests=1 --set scheduler.cancel_grace=2s
	worker_start w1 --fake-delay 400ms --slots 1
	wait_ready 1
	make_input "$T/in.jsonl" 25
	BID=$("$MARGINCTL" submit "$T/in.jsonl" 2> /dev/null) || fail "submit"
	if timeout 60 "$MARGINCTL" wait "$BID" > "$T/wait.out" 2> "$T/wait.err"; then fail "wait exited 0 for an expired batch"; fi
	api GET "/v1/batches/$BID" > /dev/null
	cp "$T/body.json" "$T/batch.json"
	[ "$(json "$T/batch.json" 'd["status"]')" = expired ] || fail "status $(json "$T/batch.json" 'd["status"]')"
	[ "$(json "$T/batch.json" 'd["expired_at"] is not None and d["expired_at"] >= d["expires_at"]')" = True ] ||
		fail "expired_at/expires_at: $(json "$T/batch.json" '(d["expired_at"], d["expires_at"])')"
	DONE=$(json "$T/batch.json" 'd["request_counts"]["completed"]')
	[ "$DONE" -lt 25 ] || fail "everything finished before the expiry"
	"$MARGINCTL" results "$BID" -o "$T/out.jsonl" --errors "$T/err.jsonl" 2> /dev/null || fail "results"
	[ "$(wc -l < "$T/out.jsonl")" -eq "$DONE" ] || fail "output lines"
	python3 - "$T/err.jsonl" "$DONE" <<'EOF' || fail "expired batch error file"
import json, sys
err = [json.loads(l) for l in open(sys.argv[1])]
assert len(err) == 25 - int(sys.argv[2]), len(err)
for o in err:
    assert o["response"] is None and o["error"]["code"] == "batch_expired", o
EOF
	note "ok: $DONE of 25 done before the expiry"
}

sc_not_jsonl() {
	daemon_start d
	worker_start w1
	wait_ready 1
	printf 'custom_id,prompt\nreq-1,Once upon a time\n' > "$T/in.csv"
	BID=$("$MARGINCTL" submit "$T/in.csv" --endpoint /v1/completions 2> /dev/null) || fail "submit"
	if timeout 30 "$MARGINCTL" wait "$BID" > "$T/wait.out" 2> "$T/wait.err"; then fail "wait exited 0 for a failed batch"; fi
	grep -q "not JSONL" "$T/wait.err" || fail "no clear error: $(cat "$T/wait.err")"
	api GET "/v1/batches/$BID" > /dev/null
	[ "$(json "$T/body.json" 'd["status"]')" = failed ] || fail "status"
	[ "$(json "$T/body.json" 'd["errors"]["data"][0]["code"]')" = invalid_file ] || fail "errors"
	note ok
}

# Connections held open without a key: a per-address limit, an idle
# timeout, and more descriptors than select() can watch.
sc_conns() {
	daemon_start d --set http.max_connections_per_ip=4 --set http.idle_timeout=1s
	python3 - "$URL" "$KEY" <<'EOF' || fail "connection limits"
import socket, sys
host, port = sys.argv[1].split("//")[1].split(":")
port, key = int(port), sys.argv[2]

def conn(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(15)
    s.connect((host, port))
    return s

def ask(s, path, close=False):
    """One request: the status, or None when the server closed or reset instead."""
    extra = "Connection: close\r\n" if close else ""
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{extra}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            b = s.recv(4096)
            if not b:
                return None
            data += b
    except (ConnectionResetError, BrokenPipeError):
        return None
    head, body = data.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < n:
        body += s.recv(4096)
    return int(head.split()[1])

held = [conn("127.0.0.1") for _ in range(4)]
for s in held:
    assert ask(s, "/healthz") == 200
fifth = conn("127.0.0.1")
st = ask(fifth, "/healthz")
assert st is None, f"the 5th connection from 127.0.0.1 got {st}: max_connections_per_ip = 4 not enforced"
other = conn("127.0.0.2")
assert ask(other, "/healthz") == 200, "another address is refused"
assert ask(other, "/v1/models", close=True) == 200, "an authorized request from another address failed"
# Idle for more than idle_timeout = 1s: the server closes them.
for s in held:
    try:
        assert s.recv(1) == b"", "data on an idle connection"
    except socket.timeout:
        raise AssertionError("an idle connection was still open after 15 s (idle_timeout = 1s)")
    except ConnectionResetError:
        pass
assert ask(conn("127.0.0.1"), "/healthz", close=True) == 200, "127.0.0.1 refused after its connections closed"
EOF
	kill $DPID
	wait $DPID 2>/dev/null || true
	# Default limits: 1100 idle connections from 11 addresses (past the 1024
	# descriptors select() can watch) and the server still answers.
	daemon_start d2
	python3 - "$URL" "$KEY" <<'EOF' || fail "1100 idle connections"
import resource, socket, sys
host, port = sys.argv[1].split("//")[1].split(":")
port, key = int(port), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 1200:
    assert hard == resource.RLIM_INFINITY or hard >= 1200, f"this test needs 1200 descriptors, the hard limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
held = []
for i in range(1100):
    s = socket.socket()
    s.bind((f"127.0.0.{2 + i // 100}", 0))
    s.connect((host, port))
    held.append(s)
for path in ("/healthz", "/v1/files"):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (ConnectionResetError, socket.timeout) as e:
        raise AssertionError(f"{path} with 1100 idle connections: {e!r}")
    assert data.startswith(b"HTTP/1.1 200"), f"{path} with 1100 idle connections: {data[:80]!r}"
EOF
	note ok
}

# /v1/cost day bounds: outside what the ledger's nanosecond times hold, a
# 400 naming the range, not a silent overflow.
sc_dates() {
	daemon_start d
	worker_start w1
	wait_ready 1
	make_input "$T/in.jsonl" 5
	BID=$(timeout 60 "$MARGINCTL" submit "$T/in.jsonl" --wait 2> /dev/null | head -n 1) || fail "submit"
	TODAY=$(date -u +%Y-%m-%d)
	calls() { json "$T/body.json" 'd["total"]["calls"]'; }
	i=0
	until [ "$(api GET "/v1/cost?from=$TODAY&to=$TODAY")" = 200 ] && [ "$(calls)" = 5 ]; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "the ledger has $(calls) calls of 5: $(cat "$T/body.json")"
		sleep 0.1
	done
	[ "$(api GET '/v1/cost?from=1970-01-01&to=2262-04-10')" = 200 ] && [ "$(calls)" = 5 ] ||
		fail "the widest range: $(cat "$T/body.json")"
	for q in to=9999-12-31 from=2262-04-12 to=2262-04-11 from=1969-12-31; do
		[ "$(api GET "/v1/cost?$q")" = 400 ] || fail "$q: not 400: $(head -c 300 "$T/body.json")"
		grep -q "out of range: expected a day from 1970-01-01 to 2262-04-10" "$T/body.json" ||
			fail "$q: $(cat "$T/body.json")"
	done
	note "ok: $BID"
}

# API errors name ids, never paths on the server: a file whose content is
# gone, a files directory that cannot be read or written, a batches
# directory that cannot be written (the log keeps the paths).
sc_paths() {
	daemon_start d
	worker_start w1
	wait_ready 1
	make_input "$T/in.jsonl" 3
	FID=$(upload "$T/in.jsonl")
	no_path() {	# STEP: the reply is an error that does not show $T
		json "$T/body.json" 'd["error"]["message"]' > "$T/msg.txt" || fail "$1: not an error: $(cat "$T/body.json")"
		if grep -qF "$T" "$T/body.json"; then fail "$1: the reply shows a server path: $(cat "$T/body.json")"; fi
		note "$1: $(cat "$T/msg.txt")"
	}
	mv "$T/d/files/$FID.jsonl" "$T/gone.jsonl"
	api POST /v1/batches -H 'Content-Type: application/json' \
		-d "{\"input_file_id\":\"$FID\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}" > "$T/code"
	no_path "a batch of a file whose content is gone ($(cat "$T/code"))"
	mv "$T/gone.jsonl" "$T/d/files/$FID.jsonl"
	mv "$T/d/batches" "$T/batches.away"
	api POST /v1/batches -H 'Content-Type: application/json' \
		-d "{\"input_file_id\":\"$FID\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}" > "$T/code"
	no_path "a batch with no batches directory ($(cat "$T/code"))"
	grep -q "$FID" "$T/msg.txt" || grep -q "batch_" "$T/msg.txt" || fail "the error names no id: $(cat "$T/msg.txt")"
	mv "$T/batches.away" "$T/d/batches"
	mv "$T/d/files" "$T/files.away"
	[ "$(api GET /v1/files)" = 500 ] || fail "listing a missing files directory: not 500"
	no_path "listing the files with no files directory"
	[ "$(api POST /v1/files -F purpose=batch -F "file=@$T/in.jsonl")" = 500 ] || fail "an upload with no files directory: not 500"
	no_path "an upload with no files directory"
	mv "$T/files.away" "$T/d/files"
	note ok
}

case $SCENARIO in
roundtrip | auth | limits | cancel | restart | expire | not_jsonl | conns | dates | paths) "sc_$SCENARIO" ;;
*) fail "unknown scenario" ;;
esac
