#!/usr/bin/env python3
"""The end-of-batch checks of the multi-host suite.

    check.py --batch BID --state DIR --out OUT.jsonl --ref REF.jsonl --n N
             --period P --cost COST.json --batch-json BATCH.json

1. exactly once: OUT has one line per custom_id of the input, no more, no
   other ids, every one answered (status 200);
2. byte-identical: each answer's choices (text, finish reason) and usage are
   the same bytes as in REF, the output of an undisturbed run of the same
   bodies (the input's bodies repeat every PERIOD lines: req-N is compared
   with REF's req-(N mod PERIOD));
3. conservation: the journal's ledger has one row per answered call (no
   call booked twice, none missing), its tokens are the output file's, the
   batch object's usage (x_margin.usage, from the ledger) and the /v1/cost
   report's totals are the ledger's sums (tokens, busy_ns, costs), and the
   journal passes PRAGMA integrity_check.
Prints one line of figures; exits 1 with every failure named.
"""
import argparse
import json
import sqlite3
import sys


def answer(o):
    b = o["response"]["body"]
    return json.dumps({"choices": [{k: c.get(k) for k in ("index", "text", "finish_reason")} for c in b["choices"]],
                       "usage": b["usage"]}, sort_keys=True)


def num(cid):
    return int(cid.rsplit("-", 1)[1])


def main():
    ap = argparse.ArgumentParser()
    for a in ("--batch", "--state", "--out", "--ref", "--cost", "--batch-json"):
        ap.add_argument(a, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--period", type=int, required=True)
    a = ap.parse_args()
    errs = []

    def check(cond, msg):
        if not cond:
            errs.append(msg)

    ref = {}
    for line in open(a.ref):
        o = json.loads(line)
        ref[num(o["custom_id"])] = answer(o)
    out, seen = {}, {}
    for line in open(a.out):
        o = json.loads(line)
        cid = o["custom_id"]
        seen[cid] = seen.get(cid, 0) + 1
        if o.get("error") is not None or o["response"]["status_code"] != 200:
            errs.append("%s not answered: %s" % (cid, line.strip()[:300]))
            continue
        out[cid] = o
    twice = [c for c, k in seen.items() if k > 1]
    check(not twice, "answered more than once: %s" % twice[:10])
    check(len(seen) == a.n, "%d custom_ids in the output, %d in the input" % (len(seen), a.n))
    check(len(ref) == min(a.n, a.period), "the reference has %d answers" % len(ref))
    differ = [c for c, o in out.items() if ref.get(num(c) % a.period) != answer(o)]
    check(not differ, "%d answers differ from the undisturbed run, e.g. %s: %s vs %s" % (
        len(differ), differ[:3], answer(out[differ[0]]) if differ else "",
        ref.get(num(differ[0]) % a.period) if differ else ""))

    db = sqlite3.connect("file:%s/margin.db?mode=ro" % a.state, uri=True)
    (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
    check(integrity == "ok", "journal integrity_check: %s" % integrity)
    rows = db.execute("SELECT custom_id, prompt_tokens, completion_tokens, busy_ns, cost_marginal_micros,"
                      " cost_loaded_micros FROM ledger WHERE job = ?", (a.batch,)).fetchall()
    by = {}
    for r in rows:
        by.setdefault(r[0], []).append(r)
    check(len(rows) == len(out), "ledger has %d rows for %d answered calls" % (len(rows), len(out)))
    dup = [c for c, v in by.items() if len(v) > 1]
    check(not dup, "calls booked twice in the ledger: %s" % dup[:10])
    check(set(by) == set(out), "ledger custom_ids differ from the output's: %s" % sorted(set(by) ^ set(out))[:10])
    for cid, o in out.items():
        u = o["response"]["body"]["usage"]
        if cid in by:
            r = by[cid][0]
            check((r[1], r[2]) == (u["prompt_tokens"], u["completion_tokens"]),
                  "%s: ledger tokens %d/%d, output %d/%d" % (cid, r[1], r[2], u["prompt_tokens"], u["completion_tokens"]))
    sums = {"prompt_tokens": sum(r[1] for r in rows), "completion_tokens": sum(r[2] for r in rows),
            "busy_ns": sum(r[3] for r in rows), "cost_marginal_micros": sum(r[4] for r in rows),
            "cost_loaded_micros": sum(r[5] for r in rows)}
    check(all(r[3] > 0 for r in rows), "a ledger row with no busy time")

    b = json.load(open(a.batch_json))
    check(b["status"] == "completed", "batch status %s" % b["status"])
    check(b["request_counts"] == {"total": a.n, "completed": a.n, "failed": 0},
          "request_counts %s" % b["request_counts"])
    xu = b["x_margin"]["usage"]
    check(xu["calls"] == len(rows), "batch usage: %d calls, ledger %d rows" % (xu["calls"], len(rows)))
    for k in ("prompt_tokens", "completion_tokens", "busy_ns", "cost_marginal_micros"):
        check(xu[k] == sums[k], "batch usage %s %d, ledger sum %d" % (k, xu[k], sums[k]))
    check(b["usage"]["input_tokens"] == sums["prompt_tokens"] and b["usage"]["output_tokens"] == sums["completion_tokens"],
          "batch usage %s, ledger %d/%d" % (b["usage"], sums["prompt_tokens"], sums["completion_tokens"]))

    rep = json.load(open(a.cost))
    check(len(rep["rows"]) == len(rows), "/v1/cost has %d rows, ledger %d" % (len(rep["rows"]), len(rows)))
    tot = rep["total"]
    for k in ("prompt_tokens", "completion_tokens", "busy_ns", "cost_marginal_micros"):
        check(tot[k] == sums[k], "/v1/cost total %s %d, ledger sum %d" % (k, tot[k], sums[k]))
        check(tot[k] == sum(r[k] for r in rep["rows"]), "/v1/cost total %s is not the sum of its rows" % k)

    if errs:
        for e in errs:
            print("check %s: %s" % (a.batch, e), file=sys.stderr)
        return 1
    workers = db.execute("SELECT count(DISTINCT worker) FROM ledger WHERE job = ?", (a.batch,)).fetchone()[0]
    print("checked %s: %d answered once, identical to the undisturbed run; ledger %d rows on %d workers, "
          "busy %.1f s, %d+%d tokens; journal ok" % (a.batch, len(out), len(rows), workers, sums["busy_ns"] / 1e9,
                                                    sums["prompt_tokens"], sums["completion_tokens"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
