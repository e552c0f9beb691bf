#!/bin/sh
# Integration scenarios of the batch lifecycle: a real margind and fake
# workers (margin-worker serve --fake) on 127.0.0.1, driven with curl and
# marginctl as users drive them.
#
#   test_batches.sh SCENARIO
#     no_worker         a batch created with no worker waits, then completes
#     no_worker_expire  a batch that no worker ever serves expires
#     restart_wait      a restart with a batch in progress and no worker yet
#     fds               many more queued batches than margind's fd limit
#     retention         failed/cancelled copies go at once; old batches age out
#     orphans           files no journal row names are swept at start
#     vacuum            the journal file shrinks after a big batch is retired
#
# Binaries come from $MARGIND, $MARGIN_WORKER, $MARGINCTL (meson sets
# them). Every process started here is killed on exit, pass or fail; each
# wait is bounded.
set -eu

SCENARIO=${1:?usage: test_batches.sh SCENARIO}
: "${MARGIND:?run through meson test}" "${MARGIN_WORKER:?}" "${MARGINCTL:?}"

NAME=batches
. "$(dirname "$0")/lib.sh"

api_key

status() {
	api GET "/v1/batches/$1" > /dev/null
	json "$T/body.json" 'd["status"]'
}

# check_done BID N: completed, N answers with status 200, no error file.
check_done() {
	timeout 90 "$MARGINCTL" wait "$1" > "$T/wait.out" 2> "$T/wait.err" ||
		fail "wait $1: $(cat "$T/wait.out" "$T/wait.err")"
	[ "$(status "$1")" = completed ] || fail "status of $1: $(cat "$T/body.json")"
	[ "$(json "$T/body.json" 'd["request_counts"]')" = "{'total': $2, 'completed': $2, 'failed': 0}" ] ||
		fail "request_counts $(json "$T/body.json" 'd["request_counts"]')"
	"$MARGINCTL" results "$1" -o "$T/out.jsonl" 2> /dev/null || fail "results"
	python3 - "$T/out.jsonl" "$2" <<'EOF' || fail "output of $1"
import json, sys
seen = set()
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert o["response"]["status_code"] == 200 and o["error"] is None, o
    seen.add(o["custom_id"])
assert seen == {f"req-{i:04d}" for i in range(int(sys.argv[2]))}, len(seen)
EOF
}

# waiting BID SECONDS: the batch stays in a normal waiting status (not
# failed) for that long.
waiting() {
	end=$(( $(date +%s) + $2 ))
	while [ "$(date +%s)" -lt "$end" ]; do
		s=$(status "$1")
		case $s in validating | in_progress) ;; *) fail "batch $1 is $s while waiting for a worker: $(cat "$T/body.json")" ;; esac
		sleep 0.5
	done
}

sc_no_worker() {
	daemon_start d
	make_input "$T/in.jsonl" 12
	FID=$(upload "$T/in.jsonl")
	BID=$(create "$FID")
	waiting "$BID" 6
	[ "$(json "$T/body.json" 'd["errors"]')" = None ] || fail "errors while waiting: $(cat "$T/body.json")"
	# /readyz says why nothing moves.
	[ "$(curl -s -o "$T/ready.json" -w '%{http_code}' "$URL/readyz")" = 503 ] || fail "readyz with no worker"
	worker_start w1
	check_done "$BID" 12
	note "ok: $BID waited 6 s for a worker, then completed"
}

sc_no_worker_expire() {
	daemon_start d --set http.batch_expiry=3s --set scheduler.cancel_grace=1s
	make_input "$T/in.jsonl" 5 qwen-nowhere
	BID=$("$MARGINCTL" submit "$T/in.jsonl" 2> "$T/submit.err") || fail "submit: $(cat "$T/submit.err")"
	# A worker for another model does not run it.
	worker_start w1
	if timeout 60 "$MARGINCTL" wait "$BID" > "$T/wait.out" 2> "$T/wait.err"; then fail "wait exited 0 for an expired batch"; fi
	[ "$(status "$BID")" = expired ] || fail "status: $(cat "$T/body.json")"
	cp "$T/body.json" "$T/batch.json"
	[ "$(json "$T/batch.json" 'd["request_counts"]["total"], d["request_counts"]["completed"]')" = "5 0" ] ||
		fail "request_counts $(json "$T/batch.json" 'd["request_counts"]')"
	"$MARGINCTL" results "$BID" -o "$T/out.jsonl" --errors "$T/err.jsonl" 2> /dev/null || fail "results"
	python3 - "$T/err.jsonl" <<'EOF' || fail "expired batch error file"
import json, sys
err = [json.loads(l) for l in open(sys.argv[1])]
assert len(err) == 5, len(err)
for o in err:
    assert o["response"] is None and o["error"]["code"] == "batch_expired", o
EOF
	note "ok: $BID expired with its 5 lines in the error file"
}

sc_restart_wait() {
	daemon_start d --set scheduler.shard_requests=2
	worker_start w1 --fake-delay 100ms --slots 2
	# 400 requests at 100 ms a shard of 2 on 2 slots: ~10 s of work, so a
	# loaded machine cannot finish before the kill.
	make_input "$T/in.jsonl" 400
	BID=$("$MARGINCTL" submit "$T/in.jsonl" 2> /dev/null) || fail "submit"
	i=0
	until [ "$(api GET "/v1/batches/$BID")" = 200 ] && [ "$(json "$T/body.json" 'd["request_counts"]["completed"]')" -ge 4 ]; do
		i=$((i + 1)); [ $i -lt 400 ] || fail "no progress"
		sleep 0.05
	done
	# The daemon and its worker go; the daemon comes back alone.
	kill -9 $WPID
	daemon_kill
	[ "$(json "$T/body.json" 'd["request_counts"]["completed"]')" -lt 400 ] || fail "the batch finished before the kill"
	WORKERS_EP=$WEP
	daemon_start d --set scheduler.shard_requests=2
	# A second batch created while no worker is connected.
	make_input "$T/in2.jsonl" 8
	FID=$(upload "$T/in2.jsonl")
	B2=$(create "$FID")
	waiting "$BID" 5
	waiting "$B2" 1
	worker_start w2 --slots 2
	check_done "$BID" 400
	check_done "$B2" 8
	note "ok: $BID and $B2 completed once a worker came after the restart"
}

sc_fds() {
	# margind with 256 file descriptors; 16 clients create 600 batches of
	# 300 lines while no worker runs them. Validation goes 4 lines a turn of
	# the loop, so batches queue for it.
	NOFILE=256 daemon_start d --set scheduler.ingest_chunk=4
	make_input "$T/in.jsonl" 300
	FID=$(upload "$T/in.jsonl")
	seq 1 600 | xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' -X POST \
		-H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
		-d "{\"input_file_id\":\"$FID\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}" \
		"$URL/v1/batches" > "$T/codes" || true
	[ "$(grep -c '^200$' "$T/codes")" -eq 600 ] || fail "creates: $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
	kill -0 $DPID 2>/dev/null || fail "margind died"
	worker_start w1 --slots 8
	python3 - "$URL" "$KEY" <<'EOF' || fail "not every batch completed"
import json, sys, time, urllib.request
url, key = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(req, timeout=30))
deadline = time.time() + 150
while True:
    st, after = {}, ""
    while True:
        page = get("/v1/batches?limit=100" + after)
        for b in page["data"]:
            st[b["status"]] = st.get(b["status"], 0) + 1
            assert b["status"] != "failed", b
            if b["status"] == "completed":
                assert b["request_counts"] == {"total": 300, "completed": 300, "failed": 0}, b
        if not page["has_more"]:
            break
        after = "&after=" + page["last_id"]
    if st.get("completed", 0) == 600:
        break
    assert time.time() < deadline, st
    time.sleep(1)
EOF
	note "ok: 600 batches under 256 file descriptors, all completed"
}

# wait_status BID STATUS: bounded.
wait_status() {
	i=0
	until [ "$(status "$1")" = "$2" ]; do
		i=$((i + 1)); [ $i -lt 600 ] || fail "batch $1 never became $2: $(cat "$T/body.json")"
		sleep 0.1
	done
}

# journal_bytes DIR: margin.db and its WAL together.
journal_bytes() {
	cat "$1/margin.db" "$1/margin.db-wal" 2>/dev/null | wc -c
}

sc_retention() {
	daemon_start d --set journal.retention=0
	worker_start w1
	# A failed batch: nothing to download, so no private copy stays; the
	# refused lines still show in errors.
	printf '{"custom_id":"a","method":"GET","url":"/v1/completions","body":{"model":"llama-110m","prompt":"x"}}\n' > "$T/bad.jsonl"
	FBAD=$(upload "$T/bad.jsonl")
	BBAD=$(create "$FBAD")
	wait_status "$BBAD" failed
	[ "$(json "$T/body.json" '[e["line"] for e in d["errors"]["data"]]')" = "[None, 1]" ] ||
		fail "errors of the failed batch: $(cat "$T/body.json")"
	i=0
	until [ "$(ls "$T/d/batches" | grep -c "^$BBAD")" -eq 1 ]; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "the failed batch keeps $(ls "$T/d/batches" | grep "^$BBAD" | tr '\n' ' ')"
		sleep 0.1
	done
	[ -f "$T/d/batches/$BBAD.json" ] || fail "the failed batch lost its object"
	[ "$(api DELETE "/v1/files/$FBAD")" = 200 ] || fail "delete the upload"
	[ "$(ls "$T/d/files" | wc -l)" -eq 0 ] || fail "deleting the upload left $(ls "$T/d/files" | tr '\n' ' ')"
	[ "$(api GET "/v1/batches/$BBAD")" = 200 ] || fail "GET of the failed batch"
	[ "$(json "$T/body.json" 'd["errors"]["data"][1]["message"]')" = 'method: expected "POST"' ] ||
		fail "errors after the copies went: $(cat "$T/body.json")"

	# A completed batch: retention 0 keeps it; a restart with a retention
	# of 1 s retires it at start.
	make_input "$T/in.jsonl" 6
	FID=$(upload "$T/in.jsonl")
	BID=$(create "$FID")
	check_done "$BID" 6
	OUT=$(json "$T/body.json" 'd["output_file_id"]')
	sleep 2
	[ "$(api GET "/v1/files/$OUT")" = 200 ] || fail "retention 0 did not keep the output file"
	daemon_kill
	WORKERS_EP=$WEP
	daemon_start d --set journal.retention=1s
	[ "$(api GET "/v1/files/$OUT")" = 404 ] || fail "the output file outlived the retention"
	[ "$(api GET "/v1/batches/$BID")" = 200 ] || fail "GET of a retired batch: $(cat "$T/body.json")"
	[ "$(json "$T/body.json" 'd["status"], d["request_counts"]["completed"], d["output_file_id"]')" = "completed 6 $OUT" ] ||
		fail "the retired batch object: $(cat "$T/body.json")"
	[ "$(ls "$T/d/batches" | sort | tr '\n' ' ')" = "$(printf '%s.json\n%s.json\n' "$BBAD" "$BID" | sort | tr '\n' ' ')" ] ||
		fail "batches/ keeps $(ls "$T/d/batches" | tr '\n' ' ')"
	# The user's upload is the user's.
	[ "$(api GET "/v1/files/$FID")" = 200 ] || fail "retention deleted the upload"
	python3 - "$T/d/margin.db" "$BID" <<'EOF' || fail "journal rows of the retired batch"
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
(jid,) = db.execute("SELECT id FROM jobs WHERE name = ?", (sys.argv[2],)).fetchone()
assert db.execute("SELECT count(*) FROM requests WHERE job = ?", (jid,)).fetchone()[0] == 0
assert db.execute("SELECT count(*) FROM shards WHERE job = ?", (jid,)).fetchone()[0] == 0
EOF
	grep -q 'msg="retention sweep" batches=' "$T/d.log" || fail "no log line of the sweep"
	# While margind runs, the periodic sweep retires the next one.
	make_input "$T/in3.jsonl" 3
	B3=$(create "$(upload "$T/in3.jsonl")")
	wait_status "$B3" completed
	OUT3=$(json "$T/body.json" 'd["output_file_id"]')
	i=0
	until [ "$(api GET "/v1/files/$OUT3")" = 404 ]; do
		i=$((i + 1)); [ $i -lt 300 ] || fail "the periodic sweep did not retire $B3"
		sleep 0.1
	done
	note "ok: failed batch without copies, $BID kept with retention 0, retired with 1 s, $B3 by the periodic sweep"
}

sc_orphans() {
	daemon_start d
	worker_start w1
	make_input "$T/in.jsonl" 4
	FID=$(upload "$T/in.jsonl")
	BID=$(create "$FID")
	check_done "$BID" 4
	OUT=$(json "$T/body.json" 'd["output_file_id"]')
	daemon_kill
	# What a crash between writing a file and journaling its batch leaves.
	head -c 1000000 /dev/zero > "$T/d/batches/batch_ghost.input.jsonl"
	echo '{"id":"batch_ghost"}' > "$T/d/batches/batch_ghost.json"
	echo '{}' > "$T/d/batches/$BID.json.tmp"
	head -c 500000 /dev/zero > "$T/d/files/file-ghost.jsonl"
	printf '{"id":"file-ghost","object":"file","bytes":500000,"created_at":1,"filename":"batch_ghost_output.jsonl","purpose":"batch_output"}' \
		> "$T/d/files/file-ghost.json"
	WORKERS_EP=$WEP
	daemon_start d
	[ "$(ls "$T/d/batches" | tr '\n' ' ')" = "$BID.json " ] || fail "batches/ after the sweep: $(ls "$T/d/batches" | tr '\n' ' ')"
	[ ! -e "$T/d/files/file-ghost.jsonl" ] && [ ! -e "$T/d/files/file-ghost.json" ] || fail "the ghost output file stays"
	grep -q "removed a file no batch names.*batch_ghost.input.jsonl.* bytes=1000000" "$T/d.log" || fail "the sweep did not log the input it removed"
	grep -q "file=file-ghost batch=batch_ghost bytes=500" "$T/d.log" || fail "the sweep did not log the output file"
	[ "$(api GET "/v1/files/$OUT")" = 200 ] || fail "the sweep took a real output file"
	[ "$(api GET "/v1/files/$FID")" = 200 ] || fail "the sweep took the upload"
	[ "$(status "$BID")" = completed ] || fail "the batch after the sweep"
	note "ok: orphans of a crash removed at start"
}

sc_vacuum() {
	daemon_start d --set journal.retention=0
	worker_start w1 --fake-delay 1s --slots 1
	# About 25 MB of requests in the journal.
	python3 - "$T/big.jsonl" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(5000):
        body = {"model": "llama-110m", "prompt": f"{i} " + "once upon a time " * 280, "max_tokens": 4}
        f.write(json.dumps({"custom_id": f"req-{i:04d}", "method": "POST", "url": "/v1/completions", "body": body}) + "\n")
EOF
	FID=$(upload "$T/big.jsonl")
	BID=$(create "$FID")
	wait_status "$BID" in_progress
	[ "$(api POST "/v1/batches/$BID/cancel")" = 200 ] || fail "cancel"
	wait_status "$BID" cancelled
	OUT=$(json "$T/body.json" 'd["output_file_id"]') ERR=$(json "$T/body.json" 'd["error_file_id"]')
	for f in "$FID" "$OUT" "$ERR"; do
		[ "$f" = None ] || [ "$(api DELETE "/v1/files/$f")" = 200 ] || fail "delete $f"
	done
	sleep 1.5
	daemon_kill
	FULL=$(journal_bytes "$T/d")
	[ "$FULL" -gt 20000000 ] || fail "the journal holds only $FULL bytes: the test is too small"
	# The batch ended more than 1 s ago: the sweep at start retires it.
	WORKERS_EP=$WEP
	daemon_start d --set journal.retention=1s
	[ "$(journal_bytes "$T/d")" -lt $((FULL - 15000000)) ] ||
		fail "the journal still holds $(journal_bytes "$T/d") of $FULL bytes"
	[ "$(du -sk "$T/d/files" "$T/d/batches" | awk '{s += $1} END {print s}')" -lt 100 ] ||
		fail "files left: $(du -a "$T/d/files" "$T/d/batches")"
	note "ok: journal $FULL -> $(journal_bytes "$T/d") bytes once the cancelled batch was retired"
}

case $SCENARIO in
no_worker | no_worker_expire | restart_wait | fds | retention | orphans | vacuum) "sc_$SCENARIO" ;;
*) fail "unknown scenario" ;;
esac
