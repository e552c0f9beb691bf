#!/usr/bin/env python3
"""Integration scenarios of the metering service (issue 7).

    test_cost.py SCENARIO      batch | offline | whatif

batch:   a real margind and two real margin-worker processes serving the tiny
         stories260K model, a batch through the HTTP API with marginctl, then
         every figure the meter gives checked against what the batch itself
         shows: the output file's usage, the ledger's busy/idle times priced
         by an independent integer oracle (Python ints: exact), the server's
         report against marginctl's, CSV totals against their rows, what-if,
         charts, gauges, break-even.
offline: marginctl economics with no daemon (a dead --url): the price-war
         check reproduces /work/shared/reference/economics.md section 6.
whatif:  a journal holding a 7B model's batch as this 2-vCPU node serves it
         (the speeds of its llama2-7b bench), priced on 8xh100: every
         what-if runs at the target's speed (estimated, measured by a bench
         given or attached to the profile, or given), says so, and lands in
         the estimate's range, not at thousands of CNY per 1M tokens.

Binaries come from $MARGIND, $MARGIN_WORKER, $MARGINCTL; the source tree's
deploy/ from $MARGIN_DEPLOY_DIR; models from $MARGIN_SHARED_DIR (meson sets
them). Every process started is killed at the end, pass or fail; every wait
is bounded; nothing is timed.
"""
import configparser
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from fractions import Fraction

import costlib
from costlib import T, check, env, note, run, shared_dir, spawn, wait_until


def http(url, want=200):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body, status, ctype = r.read(), r.status, r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        body, status, ctype = e.read(), e.code, e.headers.get("content-type", "")
    check(status == want, "GET %s: %d, wanted %d: %s" % (url, status, want, body[:300]))
    return body, ctype


def half_up(num, den):
    """round(num / den), halves away from zero, for num >= 0: the meter's rule."""
    return (2 * num + den) // (2 * den)


def cost(rate_micros_per_hour, ns):
    return half_up(rate_micros_per_hour * ns, 3600 * 10**9)


def price_tables(paths):
    """Exchange rates and price entries of INI price tables, later files
    replacing earlier entries (the meter's rule); numbers as exact fractions
    of their decimal text."""
    fx, entries = {"USD": Fraction(1)}, {}
    for path in paths:
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        check(cp.read(path) == [path], "cannot read %s" % path)
        for sec in cp.sections():
            if sec == "fx":
                for k, v in cp[sec].items():
                    if k.endswith("_per_USD"):
                        fx[k[:3]] = Fraction(v)
            elif sec.startswith("price."):
                entries[sec[len("price."):]] = dict(cp[sec], _file=os.path.basename(path))
    return fx, entries


def api_prices(e, via_batch):
    """The per-token prices (micros) a call pays: the batch tier through the
    Batch API when the entry has one (batch prices, or a discount > 0)."""
    pin, pout = Fraction(e["input_per_1m"]), Fraction(e["output_per_1m"])
    if via_batch and "batch_input_per_1m" in e:
        return Fraction(e["batch_input_per_1m"]), Fraction(e["batch_output_per_1m"]), True
    if via_batch and Fraction(e.get("batch_discount", "0")) > 0:
        keep = 1 - Fraction(e["batch_discount"])
        return pin * keep, pout * keep, True
    return pin, pout, False


def api_equivalent(tables, ref, prompt, completion, via_batch, currency):
    """(prompt x in + completion x out) x fx, exact, rounded once half away
    from zero: the oracle of the booked equivalents."""
    fx, entries = tables
    e = entries[ref]
    pin, pout, _ = api_prices(e, via_batch)
    x = (prompt * pin + completion * pout) * fx[currency] / fx[e["currency"]]
    return math.floor(x + Fraction(1, 2))


def profile_values(path):
    """The key = value lines of a hardware profile, the values as written."""
    vals = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*(\w+)\s*=\s*(.*?)\s*$", line)
            if m:
                vals[m.group(1)] = m.group(2)
    return vals


def profile_rate(path):
    """The rate of a rental profile (purchase 0, power 0): fixed_per_hour in
    micros, exactly, from the file's decimal text."""
    vals = profile_values(path)
    check(vals.get("purchase_price") == "0" and vals.get("power_watts_load") == "0",
          "%s is not a plain rental profile" % path)
    whole, _, frac = vals["fixed_per_hour"].partition(".")
    return int(whole) * 10**6 + int((frac + "000000")[:6])


# --- batch -----------------------------------------------------------------

def sc_batch():
    deploy = env("MARGIN_DEPLOY_DIR")
    gguf = os.path.join(shared_dir(), "models", "stories260K.gguf")
    check(os.access(gguf, os.R_OK), "%s is not readable" % gguf)
    state = os.path.join(T, "d")
    refs = ["gpt-4o-mini", "qwen-long", "doubao-pro-32k"]
    sale = "0.8/2"
    t_start = time.time_ns()
    url, wep = costlib.margind(state, ["--set", "scheduler.shard_requests=6",
                                       "--prices", "fx.conf", "--prices", "closed-2024.conf",
                                       "--prices", "cn-2024-05-after.conf",
                                       "--set", "meter.refs=" + ",".join(refs), "--set", "meter.sale_price=" + sale])
    workers = []
    for w in ("wA", "wB"):
        workers.append(spawn(w, [env("MARGIN_WORKER"), "serve", "--scheduler", wep, "--model", gguf, "--slots", "4", "--threads", "1",
                  "--name", w, "--hardware", "cpu-2vcpu", "--no-curve"], {"OPENBLAS_NUM_THREADS": "1"}))

    costlib.wait_workers(url, 2)

    n = 40
    inp = os.path.join(T, "in.jsonl")
    with open(inp, "w") as f:
        for i in range(n):
            f.write(json.dumps({"custom_id": "req-%03d" % i, "method": "POST", "url": "/v1/completions",
                                "body": {"model": "stories260K", "prompt": "Once upon a time %d" % i,
                                         "max_tokens": 4 + i % 17, "temperature": 0}}) + "\n")
    cli = [env("MARGINCTL"), "--url", url]
    batch = run(cli + ["submit", inp]).stdout.split()[0]
    waited = run(cli + ["wait", batch, "--timeout", "120"]).stdout
    out = os.path.join(T, "out.jsonl")
    run(cli + ["results", batch, "-o", out])
    note("batch %s done" % batch)
    # The workers go (Bye): margind's timer closes their accounting windows
    # (the hour they were in), which fixes the calls' loaded costs.
    for p in workers:
        p.send_signal(signal.SIGTERM)
    for p in workers:
        p.wait(timeout=30)
    t_end = time.time_ns()
    ldb = os.path.join(state, "margin.db")

    def closed():
        c = sqlite3.connect("file:%s?mode=ro" % ldb, uri=True)
        try:
            return c.execute("SELECT count(*) FROM ledger_period WHERE closed = 0").fetchone()[0] == 0
        finally:
            c.close()
    wait_until("accounting windows closed", closed, 30)

    # The output file: what the user was told each call used.
    usage = {}
    for line in open(out):
        o = json.loads(line)
        check(o["response"]["status_code"] == 200, "%s failed: %s" % (o["custom_id"], line))
        u = o["response"]["body"]["usage"]
        usage[o["custom_id"]] = (u["prompt_tokens"], u["completion_tokens"])
    check(len(usage) == n, "%d outputs for %d requests" % (len(usage), n))
    p_sum = sum(u[0] for u in usage.values())
    c_sum = sum(u[1] for u in usage.values())

    # The server's report, by call.
    body, ctype = http(url + "/v1/cost?batch=%s&format=json" % batch)
    check(ctype.startswith("application/json"), "report content-type %s" % ctype)
    rep = json.loads(body)
    check(rep["currency"] == "CNY" and rep["hardware"] == "cpu-2vcpu", "report header %s %s" % (rep["currency"], rep["hardware"]))
    check(len(rep["rows"]) == n, "%d report rows for %d calls" % (len(rep["rows"]), n))
    keys = ["custom_id", "model", "worker", "prompt_tokens", "completion_tokens", "busy_ns", "flops",
            "cost_marginal_micros", "cost_loaded_micros", "api_equivalent_micros"]
    for row in rep["rows"]:
        check(list(row.keys())[:len(keys)] == keys, "row keys %s" % list(row.keys()))
        check(sorted(row["api_equivalent_micros"]) == sorted(refs), "refs of a row: %s" % row["api_equivalent_micros"])
        check(usage.get(row["custom_id"]) == (row["prompt_tokens"], row["completion_tokens"]),
              "%s: ledger tokens %d/%d, output file %s" % (row["custom_id"], row["prompt_tokens"],
                                                          row["completion_tokens"], usage.get(row["custom_id"])))
    tot = rep["total"]
    check(tot["prompt_tokens"] == p_sum and tot["completion_tokens"] == c_sum,
          "report tokens %d/%d, output file %d/%d" % (tot["prompt_tokens"], tot["completion_tokens"], p_sum, c_sum))
    for k in ("prompt_tokens", "completion_tokens", "busy_ns", "flops", "cost_marginal_micros", "cost_loaded_micros",
              "sale_micros"):
        check(tot[k] == sum(r[k] for r in rep["rows"]), "total %s is not the sum of the rows" % k)
    for ref in refs:
        check(tot["api_equivalent_micros"][ref] == sum(r["api_equivalent_micros"][ref] for r in rep["rows"]),
              "total %s is not the sum of the rows" % ref)

    # The ledger itself, read-only: conservation per accounting window to
    # the micro. Per (worker, window): the calls' marginal costs sum to the
    # node cost of their busy time, their loaded costs to the node cost of
    # the window (busy + idle time, one rounding: this profile's busy and
    # idle rates are the same), idle = attended - engine time, and the
    # attended time fits in the test.
    db = sqlite3.connect("file:%s?mode=ro" % ldb, uri=True)
    rate = profile_rate(os.path.join(deploy, "hardware", "cpu-2vcpu.conf"))
    per_window = db.execute("SELECT worker, period_start_ns, count(*), sum(busy_ns), sum(idle_ns),"
                            " sum(cost_marginal_micros), sum(cost_loaded_micros), min(rate_busy_micros_per_hour),"
                            " max(rate_busy_micros_per_hour), min(rate_idle_micros_per_hour), min(currency), max(currency),"
                            " min(hardware_profile), min(via_batch), min(cost_loaded_micros >= cost_marginal_micros),"
                            " max(period_open), min(period_ns)"
                            " FROM ledger WHERE job = ? GROUP BY worker, period_start_ns", (batch,)).fetchall()
    check(len({r[0] for r in per_window}) == 2, "the batch ran on %d workers, wanted both" % len({r[0] for r in per_window}))
    node_busy_cost = node_total_cost = 0
    for (w, start, cnt, busy, idle, marg, load, rb_lo, rb_hi, ri, cur_lo, cur_hi, hw, via, ge, is_open,
         plen) in per_window:
        check(rb_lo == rb_hi == rate and ri == rate, "worker %s rates %d..%d/%d, profile %d" % (w, rb_lo, rb_hi, ri, rate))
        check(cur_lo == cur_hi == "CNY" and hw == "cpu-2vcpu" and via == 1 and ge == 1,
              "worker %s: %s %s %s via_batch %d loaded>=marginal %d" % (w, cur_lo, cur_hi, hw, via, ge))
        check(is_open == 0 and plen == 3600 * 10**9 and start % plen == 0,
              "worker %s window %d+%d open %d" % (w, start, plen, is_open))
        engine, attended, widle, node = db.execute(
            "SELECT engine_ns, attended_ns, idle_ns, node_cost_micros FROM ledger_period WHERE worker = ? AND"
            " period_start_ns = ? AND closed = 1", (w, start)).fetchone()
        check(busy > 0 and idle > 0, "worker %s busy %d idle %d" % (w, busy, idle))
        check(engine == busy and idle == widle == max(0, attended - engine),
              "worker %s: engine %d busy %d, idle %d/%d, attended %d" % (w, engine, busy, idle, widle, attended))
        check(marg == cost(rate, busy), "worker %s: marginal %d, node cost of %d ns busy is %d" % (w, marg, busy, cost(rate, busy)))
        check(load == node == cost(rate, busy + idle),
              "worker %s: loaded %d, window %d, node cost of %d ns is %d" % (w, load, node, busy + idle, cost(rate, busy + idle)))
        check(attended <= t_end - t_start, "worker %s attended %d ns, the test lasted %d" % (w, attended, t_end - t_start))
        node_busy_cost += cost(rate, busy)
        node_total_cost += cost(rate, busy + idle)
    check(tot["cost_marginal_micros"] == node_busy_cost, "batch marginal %d, nodes' busy cost %d" % (tot["cost_marginal_micros"], node_busy_cost))
    check(tot["cost_loaded_micros"] == node_total_cost, "batch loaded %d, the windows' cost %d" % (tot["cost_loaded_micros"], node_total_cost))
    busy_all, idle_all = db.execute("SELECT sum(busy_ns), sum(idle_ns) FROM ledger WHERE job = ?", (batch,)).fetchone()

    # Closed-API equivalents as booked: one per (call, reference) in the
    # ledger, written with the call, each exactly the shipped tables' price
    # of its token counts (batch tier, exchange rate 7.2, one rounding),
    # with what priced it; the default report shows exactly those.
    table_files = ["fx.conf", "closed-2024.conf", "cn-2024-05-after.conf"]
    tables = price_tables([os.path.join(deploy, "prices", f) for f in table_files])
    fx, entries = tables
    booked = db.execute("SELECT l.custom_id, l.prompt_tokens, l.completion_tokens, l.via_batch, l.currency,"
                        " v.ref_model, v.micros, v.currency, v.price_currency, v.input_per_1m, v.output_per_1m,"
                        " v.fx_rate, v.price_table, v.price_date, v.price_source"
                        " FROM ledger l JOIN ledger_api_view v ON v.ledger_id = l.id WHERE l.job = ?",
                        (batch,)).fetchall()
    check(len(booked) == n * len(refs), "%d booked equivalents for %d calls x %d refs" % (len(booked), n, len(refs)))
    check(len({(b[0], b[5]) for b in booked}) == n * len(refs), "not one equivalent per (call, reference)")
    stored = {}
    for (cid, pt, ct, via, cur, ref, micros, acur, pcur, pin, pout, fxr, ptab, pdate, psrc) in booked:
        e = entries[ref]
        want = api_equivalent(tables, ref, pt, ct, via == 1, cur)
        check(micros == want, "%s %s: booked %d, the shipped table's price of %d+%d tokens is %d"
              % (cid, ref, micros, pt, ct, want))
        wpin, wpout, tier = api_prices(e, via == 1)
        check(acur == cur == "CNY" and pcur == e["currency"], "%s %s: currencies %s %s %s" % (cid, ref, acur, cur, pcur))
        check(Fraction(pin) == wpin and Fraction(pout) == wpout, "%s %s: prices %s/%s" % (cid, ref, pin, pout))
        check(Fraction(fxr) == fx[cur] / fx[e["currency"]], "%s %s: fx_rate %s" % (cid, ref, fxr))
        check(ptab == "fx+closed-2024+cn-2024-05-after", "%s %s: price_table %s" % (cid, ref, ptab))
        # The date and source of the prices that applied: NAME_date /
        # NAME_source, else the entry's; the batch tier's when it applied.
        def dated(key, what):
            return e.get(key + "_" + what, e.get(what))
        if tier:
            tkey = "batch_input_per_1m" if "batch_input_per_1m" in e else "batch_discount"
            want_date, want_src = dated(tkey, "date"), [dated(tkey, "source")]
        else:
            din, dout = dated("input_per_1m", "date"), dated("output_per_1m", "date")
            want_date = din if din == dout else "input %s, output %s" % (din, dout)
            want_src = [dated("input_per_1m", "source"), dated("output_per_1m", "source")]
        check(pdate == want_date, "%s %s: price_date %r, the table says %r" % (cid, ref, pdate, want_date))
        check(all(x in psrc for x in want_src) and e["_file"] in psrc,
              "%s %s: price_source %r, wanted %r" % (cid, ref, psrc, want_src))
        stored[(cid, ref)] = micros
    check(rep["api_basis"] == "booked", "default report basis %s" % rep["api_basis"])
    for row in rep["rows"]:
        for ref in refs:
            check(row["api_equivalent_micros"][ref] == stored[(row["custom_id"], ref)],
                  "report %s %s is not the booked equivalent" % (row["custom_id"], ref))
    lrows = json.loads(http(url + "/v1/cost/ledger?batch=" + batch)[0])
    pids = {p["id"]: p for p in lrows["api_prices"]}
    for row in lrows["data"]:
        check(sorted(a["ref_model"] for a in row["api_equivalents"]) == sorted(refs), "ledger reply refs")
        for a in row["api_equivalents"]:
            check(a["micros"] == stored[(row["custom_id"], a["ref_model"])], "ledger reply micros")
            check(pids[a["price_id"]]["ref_model"] == a["ref_model"], "ledger reply pricing")
    db.close()

    # marginctl computes the same report from the raw rows, over HTTP and
    # from the state directory.
    cost_cli = cli + ["cost", "--batch", batch, "--sale-price", sale] + sum([["--ref", r] for r in refs], [])
    mine = json.loads(run(cost_cli + ["--format", "json"]).stdout)
    check(mine.pop("sale")["gross_margin_ppm"] is not None, "no gross margin at the sale price")
    check(mine == rep, "marginctl's report differs from the server's")
    offline = json.loads(run(cost_cli + ["--format", "json", "--state-dir", state]).stdout)
    offline.pop("sale")
    check(offline == rep, "marginctl --state-dir differs from the server's report")

    # A later change of the price tables (gpt-4o-mini at twice the price in
    # the tables marginctl loads by default) leaves the booked report as it
    # was, over HTTP and from the state directory; asked for (--prices), the
    # what-if recomputes from the tokens with the new tables and says so.
    alt = os.path.join(T, "prices-alt")
    os.mkdir(alt)
    for f in table_files:
        text = open(os.path.join(deploy, "prices", f)).read()
        if f == "closed-2024.conf":
            head, sec, rest = text.partition("[price.gpt-4o-mini]\n")
            body, nxt, tail = rest.partition("\n[")
            body = re.sub(r"^(\w*_per_1m)\s*=\s*(\S+)$",
                          lambda m: "%s = %s" % (m.group(1), Decimal(m.group(2)) * 2), body, flags=re.M)
            text = head + sec + body + nxt + tail
        with open(os.path.join(alt, f), "w") as out_f:
            out_f.write(text)
    alt_tables = price_tables([os.path.join(alt, f) for f in table_files])
    check(Fraction(alt_tables[1]["gpt-4o-mini"]["input_per_1m"]) == 2 * Fraction(entries["gpt-4o-mini"]["input_per_1m"]),
          "the altered table")
    envalt = {"MARGIN_PRICES_DIR": alt}
    for where in ([], ["--state-dir", state]):
        again = json.loads(run(cost_cli + ["--format", "json"] + where, extra_env=envalt).stdout)
        again.pop("sale")
        check(again == rep, "after a price-table change the default report %s changed" % (where or "over HTTP"))
    wi_prices = json.loads(run(cost_cli + ["--format", "json", "--state-dir", state] +
                               sum([["--prices", f] for f in table_files], []), extra_env=envalt).stdout)
    check(wi_prices["api_basis"] == "what-if" and "what-if" in wi_prices["api_note"], "what-if not said: %s" % wi_prices["api_note"])
    for row in wi_prices["rows"]:
        for ref in refs:
            want = api_equivalent(alt_tables, ref, row["prompt_tokens"], row["completion_tokens"], True, "CNY")
            check(row["api_equivalent_micros"][ref] == want, "what-if %s %s: %d, want %d"
                  % (row["custom_id"], ref, row["api_equivalent_micros"][ref], want))
    check(wi_prices["total"]["api_equivalent_micros"]["gpt-4o-mini"] > tot["api_equivalent_micros"]["gpt-4o-mini"],
          "the what-if at doubled prices is not dearer")
    check(wi_prices["total"]["api_equivalent_micros"]["qwen-long"] == tot["api_equivalent_micros"]["qwen-long"],
          "an unchanged price changed in the what-if")
    txt = run(cli + ["cost", "--batch", batch, "--prices", "closed-2024", "--prices", "fx"], extra_env=envalt).stdout
    check("what-if" in txt and "gpt-4o-mini" in txt, "the text what-if does not say so: %s" % txt[:300])
    p = run(cost_cli + ["--prices", "closed-2024", "--prices", "fx"], ok=(1,), extra_env=envalt)
    check("qwen-long" in p.stderr, "a what-if reference missing from the tables: %s" % p.stderr)
    # The server's what-if with its own (unchanged) tables gives the booked figures.
    cur_rep = json.loads(http(url + "/v1/cost?batch=%s&format=json&prices=current" % batch)[0])
    check(cur_rep["api_basis"] == "what-if" and cur_rep["rows"] == rep["rows"], "server what-if with the booking tables")
    http(url + "/v1/cost?batch=%s&prices=yesterday" % batch, want=400)

    # CSV: the total row is the sum of the rows, column by column; every
    # row says its currency.
    table = list(csv.reader(io.StringIO(run(cost_cli + ["--format", "csv"]).stdout)))
    head, rows, total = table[0], table[1:-1], table[-1]
    check(len(rows) == n and total[0] == "total", "csv: %d rows, last %s" % (len(rows), total[0]))
    text_cols = ("custom_id", "model", "worker", "currency", "loaded_window", "what_if")
    for i, col in enumerate(head):
        if col not in text_cols:
            check(int(total[i]) == sum(int(r[i]) for r in rows), "csv total %s is not the sum" % col)
    cur_col = head.index("currency")
    check(all(r[cur_col] == "CNY" for r in table[1:]), "csv currency column")
    text = run(cost_cli).stdout
    check(all(cid in text for cid in usage) and "\ntotal" in text and "gross margin" in text, "text report incomplete")

    # What-if: the same calls on a node at 3.6 CNY/h = 1 micro per ms.
    flat = os.path.join(T, "flat.conf")
    with open(flat, "w") as f:
        f.write("[hardware]\nname = flat\ncurrency = CNY\npricing = rental\n"
                "purchase_price = 0\npurchase_price_source = test\npurchase_price_date = 2026\n"
                "power_watts_load = 0\npower_watts_load_source = test\npower_watts_load_date = 2026\n"
                "fixed_per_hour = 3.6\nfixed_per_hour_source = test\nfixed_per_hour_date = 2026\n")
    # (flat states no peaks: its speed is given, the same as the batch's)
    p = run(cli + ["cost", "--batch", batch, "--hardware", flat], ok=(1,))
    check("peak_flops" in p.stderr and "--speed" in p.stderr, "a target of unknown speed: %s" % p.stderr)
    wi = json.loads(run(cli + ["cost", "--batch", batch, "--hardware", flat, "--speed", "1", "--format", "json"]).stdout)
    check(wi["hardware"] == "flat", "what-if hardware %s" % wi["hardware"])
    check(wi["what_if"] is not None and wi["what_if"]["hardware"] == "flat", "what-if marked: %s" % wi["what_if"])
    check(wi["total"]["cost_marginal_micros"] == half_up(busy_all, 10**6),
          "what-if marginal %d, busy %d ns at 1 micro/ms" % (wi["total"]["cost_marginal_micros"], busy_all))
    check(wi["total"]["cost_loaded_micros"] == half_up(busy_all + idle_all, 10**6), "what-if loaded")
    wi2 = json.loads(run(cli + ["cost", "--batch", batch, "--hardware", flat, "--speed", "2", "--format", "json"]).stdout)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(state, "margin.db"), uri=True)
    halves = sum(half_up(b, 2) for (b,) in db.execute("SELECT busy_ns FROM ledger WHERE job = ?", (batch,)))
    db.close()
    check(wi2["total"]["cost_marginal_micros"] == half_up(halves, 10**6), "what-if at twice the speed")
    check(wi2["what_if"]["speed"] == 2 and wi2["what_if"]["speed_basis"] == "given", "what-if speed %s" % wi2["what_if"])
    wcsv = list(csv.reader(io.StringIO(run(cli + ["cost", "--batch", batch, "--hardware", flat, "--speed", "2",
                                                  "--group", "model", "--format", "csv"]).stdout)))
    check(all(r[wcsv[0].index("what_if")] == "hardware=flat speed=2x (given)" for r in wcsv[1:]), "csv what_if")
    wtxt = run(cli + ["cost", "--batch", batch, "--hardware", flat, "--speed", "1", "--group", "model"]).stdout
    check(wtxt.startswith("WHAT-IF: cost by model") and "repriced on flat at 1x" in wtxt, "text what-if: %s" % wtxt[:200])

    # Gross margin at a sale price and break-even with a one-off cost.
    be = json.loads(run(cli + ["cost", "--batch", batch, "--one-off", "500000", "--format", "json"]).stdout)["breakeven"]
    check(be["reference"] == "gpt-4o-mini", "break-even reference %s" % be["reference"])
    check(be["fixed_per_day_micros"] == cost(rate, 86400 * 10**9), "fixed per day %d" % be["fixed_per_day_micros"])
    check(be["one_off_micros"] == 500000 * 10**6, "one-off %d" % be["one_off_micros"])
    if be["days_to_recover"] is not None and be["saving_per_day_micros"] > 0:
        check(math.isclose(be["days_to_recover"] * be["saving_per_day_micros"], 5e11, rel_tol=1e-9), "days x saving")
    else:
        check(be["saving_per_day_micros"] is None or be["saving_per_day_micros"] <= 0, "no recovery but a saving")

    # Charts: from marginctl and from the server.
    svg = os.path.join(T, "c.svg")
    run(cli + ["cost", "--batch", batch, "--chart", svg])
    s = open(svg).read()
    check(s.startswith("<svg") and "gpt-4o-mini" in s and "utilization" in s, "marginctl's chart")
    body, ctype = http(url + "/v1/cost/chart?batch=" + batch)
    check(ctype.startswith("image/svg+xml") and body.startswith(b"<svg"), "server chart: %s" % ctype)
    check(b"cpu-2vcpu (measured)" in body, "server chart legend: %s" % re.findall(rb"cpu-2vcpu[^<]*", body))
    # On other hardware: that hardware's throughput (an estimate here), said so.
    body, _ = http(url + "/v1/cost/chart?batch=%s&hardware=8xh100" % batch)
    check(b"8xh100 (estimate)" in body and b"(bench)" not in body and b"roofline on 8xh100" in body,
          "server chart on 8xh100: %s" % re.findall(rb"8xh100[^<]*", body))
    http(url + "/v1/cost/chart?batch=%s&hardware=8xh100&decode_batch=0" % batch, want=400)
    # Its own hardware named: measured, as without.
    body, _ = http(url + "/v1/cost/chart?batch=%s&hardware=cpu-2vcpu" % batch)
    check(b"cpu-2vcpu (measured)" in body, "server chart on its own hardware")

    # Gauges: per model, since margind started (only this batch).
    body, _ = http(url + "/metrics")
    m = body.decode()

    def gauge(name, labels):
        g = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(labels)), m, re.M)
        check(g is not None, "no %s{%s} in /metrics" % (name, labels))
        return float(g.group(1))
    tok = p_sum + c_sum
    loaded = gauge("margin_cost_per_token", 'model_name="stories260K",basis="loaded",currency="CNY"')
    marginal = gauge("margin_cost_per_token", 'model_name="stories260K",basis="marginal",currency="CNY"')
    check(math.isclose(loaded, tot["cost_loaded_micros"] / 1e6 / tok, rel_tol=1e-9), "loaded gauge %g" % loaded)
    check(math.isclose(marginal, tot["cost_marginal_micros"] / 1e6 / tok, rel_tol=1e-9), "marginal gauge %g" % marginal)
    gm = gauge("margin_gross_margin_ratio", 'model_name="stories260K"')
    check(math.isclose(gm, (tot["sale_micros"] - tot["cost_loaded_micros"]) / tot["sale_micros"], rel_tol=1e-9),
          "gross margin gauge %g" % gm)

    # The counters: every call booked since margind started, once.
    check(gauge("margin_cost_micros_total", 'kind="loaded",currency="CNY"') == tot["cost_loaded_micros"],
          "loaded cost counter")
    check(gauge("margin_cost_micros_total", 'kind="marginal",currency="CNY"') == tot["cost_marginal_micros"],
          "marginal cost counter")
    for ref in refs:
        check(gauge("margin_api_equivalent_micros_total", 'reference="%s",currency="CNY"' % ref) ==
              tot["api_equivalent_micros"][ref], "%s equivalent counter" % ref)
    check("# TYPE margin_cost_micros_total counter" in m, "the cost counter's type")

    # status and wait name the cost's currency.
    check(re.search(r", cost \d+\.\d{6} CNY \(loaded\)", waited), "wait's cost: %s" % waited)
    st = run(cli + ["status", batch]).stdout
    want = "cost:      %d.%06d CNY loaded" % divmod(tot["cost_loaded_micros"], 10**6)
    check(want in st, "status's cost (%s): %s" % (want, st))
    ju = json.loads(run([env("MARGINCTL"), "job", "--state-dir", state, "status", batch]).stdout)["usage"]
    check(ju.get("currency") == "CNY" and ju["cost_loaded_micros"] == tot["cost_loaded_micros"],
          "job status usage: %s" % ju)
    ju = json.loads(run([env("MARGINCTL"), "job", "--state-dir", state, "wait", batch]).stdout)["usage"]
    check(ju.get("currency") == "CNY", "job wait usage: %s" % ju)

    # Every derived figure of every grouped report over HTTP, in JSON, CSV
    # and text, against its definition from the report's integer sums.
    def derived(r, name, ref=None):
        tok = r["prompt_tokens"] + r["completion_tokens"]
        if name in ("marginal_per_call_micros", "loaded_per_call_micros"):
            m_ = r["cost_marginal_micros"] if name[0] == "m" else r["cost_loaded_micros"]
            return half_up(m_, r["calls"]) if r["calls"] else None
        if name.endswith("per_1m_tokens_micros"):
            m_ = {"m": r["cost_marginal_micros"], "l": r["cost_loaded_micros"]}.get(name[0])
            m_ = r["api_equivalent_micros"][ref] if m_ is None else m_
            return half_up(m_ * 10**6, tok) if tok else None
        if name == "utilization_ppm":
            w = r["busy_ns"] + r["idle_ns"]
            return half_up(r["busy_ns"] * 10**6, w) if w else None
        price = r["sale_micros"] if name == "gross_margin_ppm" else r["api_equivalent_micros"][ref]
        if price <= 0:
            return None
        d = (price - r["cost_loaded_micros"]) * 10**6
        return half_up(d, price) if d >= 0 else -half_up(-d, price)
    plain = ["marginal_per_call_micros", "loaded_per_call_micros", "marginal_per_1m_tokens_micros",
             "loaded_per_1m_tokens_micros", "utilization_ppm", "gross_margin_ppm"]
    per_ref = {"api_per_1m_tokens_micros": "api_per_1m_tokens_micros",
               "gross_margin_ppm_at_api_price": "gross_margin_ppm_at_api_price"}

    def money(x):
        return "%s%d.%06d" % ("-" if x < 0 else "", abs(x) // 10**6, abs(x) % 10**6)

    def pct(ppm):
        c = half_up(abs(ppm), 100) * (1 if ppm >= 0 else -1)
        return "%s%d.%02d%%" % ("-" if c < 0 else "", abs(c) // 100, abs(c) % 100)
    for g in ("batch", "model", "worker", "day"):
        q = url + "/v1/cost?batch=%s&group=%s&format=" % (batch, g)
        rj = json.loads(http(q + "json")[0])
        jrows = rj["rows"] + [dict(rj["total"], key="total")]
        check(rj["what_if"] is None and "loaded_window" in rj, "by %s: what_if/loaded_window %s" % (g, rj.keys()))
        for r in jrows:
            for name in plain:
                check(r[name] == derived(r, name), "json by %s %s %s: %s, want %s" % (g, r["key"], name, r[name],
                                                                                     derived(r, name)))
            for name in per_ref:
                for ref in refs:
                    check(r[name][ref] == derived(r, name, ref), "json by %s %s %s:%s" % (g, r["key"], name, ref))
        body, ctype = http(q + "csv")
        check(ctype.startswith("text/csv"), "csv content-type %s" % ctype)
        table = list(csv.reader(io.StringIO(body.decode())))
        head = table[0]
        check(head[0] == g and len(table) == len(jrows) + 1, "csv by %s: %s, %d lines" % (g, head[:2], len(table)))
        for line, r in zip(table[1:], jrows):
            c = dict(zip(head, line))
            check(c[g] == r["key"] and c["currency"] == "CNY" and c["what_if"] == "", "csv by %s row %s" % (g, line[:2]))
            for name in plain:
                want = derived(r, name)
                check(c[name] == ("" if want is None else str(want)),
                      "csv by %s %s %s: %s, want %s" % (g, r["key"], name, c[name], want))
            for name in per_ref:
                for ref in refs:
                    want = derived(r, name, ref)
                    check(c["%s:%s" % (name, ref)] == ("" if want is None else str(want)),
                          "csv by %s %s %s:%s" % (g, r["key"], name, ref))
        text = http(q + "text")[0].decode()
        lines = [l.split() for l in text.splitlines() if l and not l.startswith(("(", "cost by", "WHAT-IF"))]
        check(lines[0][0] == g and len(lines) == len(jrows) + 1, "text by %s: %s" % (g, lines[:1]))
        for t, r in zip(lines[1:], jrows):
            tok = r["prompt_tokens"] + r["completion_tokens"]
            want = [r["key"], str(r["calls"]), str(tok), None, money(r["cost_loaded_micros"]),
                    money(derived(r, "loaded_per_1m_tokens_micros"))]
            for ref in refs:
                want += [money(derived(r, "api_per_1m_tokens_micros", ref)),
                         pct(derived(r, "gross_margin_ppm_at_api_price", ref))]
            check(len(t) == len(want) and all(w is None or w == x for w, x in zip(want, t)),
                  "text by %s: %s, want %s" % (g, t, want))
    wi = json.loads(http(url + "/v1/cost?batch=%s&group=model&prices=current" % batch)[0])["what_if"]
    check(wi is not None and wi["prices"] and wi["hardware"] is None, "what_if of prices=current: %s" % wi)

    # Grouped reports and errors.
    by_worker = json.loads(http(url + "/v1/cost?batch=%s&group=worker" % batch)[0])
    check(sorted(r["key"] for r in by_worker["rows"]) == ["wA", "wB"], "by worker keys")
    check(sum(r["calls"] for r in by_worker["rows"]) == n, "by worker calls")
    http(url + "/v1/cost?batch=no-such-batch", want=404)
    http(url + "/v1/cost?group=call", want=400)
    p = run(cli + ["cost", "--batch", "no-such-batch"], ok=(1,))
    check("no-such-batch" in p.stderr, "the error names the batch: %s" % p.stderr)


# --- offline ---------------------------------------------------------------

def sc_offline():
    cli = [env("MARGINCTL"), "--url", "http://127.0.0.1:9"]   # nothing listens there
    eco = cli + ["economics", "check", "--hardware", "8xh800-rental", "--currency", "USD", "--utilization", "0.5",
                 "--json"]
    # economics.md 6, cost basis A: 8 x 547 output tok/s per GPU at 2048/2048.
    a = eco + ["--throughput", "4376", "--throughput-source", "economics.md 6 basis A", "--mix", "2048/2048"]
    r = json.loads(run(a + ["--price-before", "cn-2024-05-before:qwen-max",
                            "--price-after", "cn-2024-05-after:doubao-pro-32k"]).stdout)
    pct = lambda p: p["gross_margin_ppm"] / 1e4
    check(abs(pct(r["before"]) - 94) <= 0.5, "before: %.2f%%, economics.md: 94%%" % pct(r["before"]))
    check(abs(pct(r["after"]) - (-422)) <= 0.5, "after: %.2f%%, economics.md: -422%%" % pct(r["after"]))
    check(abs(pct(r["at_90"]) - 39) <= 0.5, "a 90%% cut (12/12): %.2f%%, economics.md: 39%%" % pct(r["at_90"]))
    check(r["after_negative"] and not r["negative_at_90"], "signs after the cuts")
    check(math.isclose(r["zero_margin_cut"], r["before"]["gross_margin_ppm"] / 1e6), "zero-margin cut = GM before")
    for needle in ("throughput (given)", "[source:", "utilization: 50.0% [--utilization 0.5]", "exchange rate"):
        check(needle in r["report"], "the report lacks %r" % needle)
    # Cost basis B: 8 x 306 at 2048/128; Doubao at -77%, Qwen-Long at -161%.
    b = eco + ["--throughput", "2448", "--mix", "2048/128", "--price-before", "cn-2024-05-before:qwen-max"]
    for after, want in (("cn-2024-05-after:doubao-pro-32k", -77), ("cn-2024-05-after:qwen-long", -161)):
        r = json.loads(run(b + ["--price-after", after]).stdout)
        check(abs(pct(r["after"]) - want) <= 0.5, "basis B %s: %.2f%%, economics.md: %d%%" % (after, pct(r["after"]), want))
    # Prices typed in, with a provider.
    r = json.loads(run(a + ["--price-before", "120", "--price-after", "0.8/2", "--currency", "CNY",
                            "--provider", "bytedance"]).stdout)
    check(abs(pct(r["before"]) - 94) <= 0.5 and abs(pct(r["after"]) + 422) <= 0.5, "typed prices")
    check("bytedance" in r["report"], "the provider is printed")

    bench = os.path.join(os.path.dirname(env("MARGIN_DEPLOY_DIR")), "tests", "unit", "meter", "data",
                         "bench_margin_worker.json")
    txt = run(cli + ["economics", "check", "--bench", bench, "--price-before", "20", "--price-after", "0.5/2"]).stdout
    check("throughput (bench)" in txt and bench in txt, "bench source printed")
    txt = run(cli + ["economics", "check", "--estimate", "--hardware", "8xh100", "--params", "7e9", "--batch", "32",
                     "--price-before", "cn-2024-05-before:qwen-max", "--price-after", "cn-2024-05-after:qwen-max"]).stdout
    check("throughput (estimated)" in txt and "peak_flops" in txt, "estimate and the peaks it used printed")
    svg = os.path.join(T, "b.svg")
    run(cli + ["economics", "chart", "--bench", bench, "-o", svg])
    check(open(svg).read().startswith("<svg"), "economics chart")
    # Bad usage: exit 2 with the reason.
    p = run(cli + ["economics", "check", "--throughput", "10", "--price-before", "1"], ok=(2,))
    check("--price-after" in p.stderr, p.stderr)
    p = run(cli + ["economics", "check", "--throughput", "10", "--bench", bench, "--price-before", "1",
                   "--price-after", "1"], ok=(2,))
    check("one of" in p.stderr, p.stderr)
    p = run(cli + ["economics", "chart", "--bench", bench] + ["--ref", "gpt-4o-mini"] * 17, ok=(2,))
    check("at most 16 --ref" in p.stderr, p.stderr)
    p = run(cli + ["economics", "check", "--mix"], ok=(2,))
    check("--mix needs a value" in p.stderr, p.stderr)
    run(cli + ["cost", "--format", "xml", "--batch", "x"], ok=(2,))
    p = run(cli + ["cost", "--batch", "x"] + ["--prices", "p.ini"] * 17, ok=(2,))
    check("at most 16 --prices" in p.stderr, p.stderr)
    p = run(cli + ["cost", "--batch"], ok=(2,))
    check("--batch needs a value" in p.stderr, p.stderr)
    # A repeated flag keeps each value whole: a comma belongs to the name.
    p = run(cli + ["cost", "--batch", "x", "--prices", os.path.join(T, "no,such.ini")], ok=(2,))
    check("--prices %s: " % os.path.join(T, "no,such.ini") in p.stderr, p.stderr)


# --- whatif ----------------------------------------------------------------

def owned_rate(path):
    """rate_busy of a profile in micros per hour, exactly (docs/economics.md 2)."""
    v = profile_values(path)
    F = lambda k, d="0": Fraction(v.get(k, d))
    dep = F("purchase_price") - F("salvage_value")
    per_h = dep / (F("depreciation_years", "1") * F("hours_per_year", "8760")) if dep else Fraction(0)
    per_h += F("power_watts_load") / 1000 * F("pue", "1") * F("electricity_per_kwh") + F("fixed_per_hour")
    return half_up((per_h * 10**6).numerator, (per_h * 10**6).denominator)


def sc_whatif():
    deploy = env("MARGIN_DEPLOY_DIR")
    src = os.path.dirname(deploy)
    state = os.path.join(T, "d")
    # margind makes its journal, then stops: the batch is written into it.
    p = spawn("margind", [env("MARGIND"), "--state-dir", state, "--http", "127.0.0.1:0", "--workers",
                          "tcp://127.0.0.1:0", "--no-curve", "--set", "meter.hardware_dir=" + os.path.join(deploy, "hardware"),
                          "--set", "meter.prices_dir=" + os.path.join(deploy, "prices")])
    wait_until("margind up", lambda: os.path.exists(os.path.join(state, "http")), 20)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)

    # llama2-7b served here at its bench's batch-1 speeds: 256 in / 256 out
    # per call, 2 FLOPs per weight read per token, priced at cpu-2vcpu.
    cpu_bench = os.path.join(src, "tests", "unit", "meter", "data", "bench_llama2_7b_cpu.json")
    b = json.load(open(cpu_bench))
    ppt, r0 = b["model"]["params_per_token"], b["runs"][0]
    n, tin, tout = 8, 256, 256
    busy = round((tin / r0["prefill_tok_s"] + tout / r0["decode_tok_s"]) * 1e9)
    idle = 20 * 10**9
    cpu_rate = profile_rate(os.path.join(deploy, "hardware", "cpu-2vcpu.conf"))
    db = sqlite3.connect(os.path.join(state, "margin.db"))
    cols = {r[1]: r for r in db.execute("PRAGMA table_info(ledger)")}
    row = {"job": "batch_7b", "model": "llama2-7b", "worker": "w1", "worker_name": "w1",
           "hardware_profile": "cpu-2vcpu", "shard": 1, "prompt_tokens": tin, "completion_tokens": tout,
           "busy_ns": busy, "flops": 2 * ppt * (tin + tout), "queue_ns": 0, "first_token_ns": 0,
           "idle_ns": idle, "currency": "CNY", "rate_busy_micros_per_hour": cpu_rate,
           "rate_idle_micros_per_hour": cpu_rate, "via_batch": 1,
           "cost_marginal_micros": cost(cpu_rate, busy), "cost_loaded_micros": cost(cpu_rate, busy) + cost(cpu_rate, idle)}
    for name, c in cols.items():
        check(not c[3] or c[4] is not None or c[5] or name in row or name in ("custom_id", "line_no", "answered_at_ns"),
              "the journal's ledger has a column this test does not fill: %s" % name)
    for i in range(n):
        r = dict(row, custom_id="c%d" % i, line_no=i + 1, answered_at_ns=1765000000 * 10**9 + i)
        db.execute("INSERT INTO ledger (%s) VALUES (%s)" % (",".join(r), ",".join("?" * len(r))), list(r.values()))
    db.commit()
    db.close()

    cli = [env("MARGINCTL"), "--url", "http://127.0.0.1:9"]
    cost_cli = cli + ["cost", "--state-dir", state, "--batch", "batch_7b"]
    booked_s = busy / 1e9
    # The estimate's oracle (docs/economics.md 6): 8xh100's fp16 peak and
    # bandwidth x machine.md's efficiencies, 2 bytes per weight.
    h100 = profile_values(os.path.join(deploy, "hardware", "8xh100.conf"))
    f, bw = float(h100["peak_flops_fp16"]) * 208.9 / 234.8, float(h100["mem_bandwidth"]) * 0.68

    def call_s(batch):
        prefill = f / (2 * ppt)
        decode = batch / max(2 * ppt * batch / f, ppt * 2 / bw)
        return tin / prefill + tout / decode
    h100_rate = owned_rate(os.path.join(deploy, "hardware", "8xh100.conf"))

    def whatif(extra, basis, extra_env=None):
        """The by-call text and the JSON of one what-if; the ratio it printed."""
        txt = run(cost_cli + ["--hardware", "8xh100"] + extra, extra_env=extra_env).stdout
        m = re.search(r"speed ratio (\S+) \((\w+)\): (.*)\)", txt)
        check(m is not None, "the what-if does not print its speed: %s" % txt[:600])
        check(m.group(2) == basis, "basis %s, wanted %s: %s" % (m.group(2), basis, m.group(3)))
        js = json.loads(run(cost_cli + ["--hardware", "8xh100", "--format", "json"] + extra, extra_env=extra_env).stdout)
        ratio = Fraction(Decimal(m.group(1)))
        check(len(js["rows"]) == n, "what-if rows")
        for r in js["rows"]:
            check(r["busy_ns"] == half_up(busy * ratio.denominator, ratio.numerator),
                  "%s: busy %d, wanted %d ns / %s" % (r["custom_id"], r["busy_ns"], busy, m.group(1)))
        return txt, js, float(ratio), m.group(3)

    # Estimated: at decode batch 32, 2 bytes per weight.
    txt, js, ratio, why = whatif([], "estimate")
    check(abs(ratio / (booked_s / call_s(32)) - 1) < 1e-5, "ratio %g, the estimate's %g" % (ratio, booked_s / call_s(32)))
    for needle in ("llama2-7b", "cpu-2vcpu (ledger)", "8xh100 (estimate", "batch 32", "machine.md"):
        check(needle in why, "the basis lacks %r: %s" % (needle, why))
    marg = js["total"]["cost_marginal_micros"]
    got = marg / (n * tout)                     # micros per output token = CNY per 1M
    per_1m = lambda s: h100_rate * s / 3600 / tout
    lo, hi = per_1m(call_s(1 << 20)), per_1m(call_s(1))
    check(lo * 0.98 <= got <= hi * 1.02 and abs(got / per_1m(call_s(32)) - 1) < 0.02,
          "8xh100 at the estimate: %.4f CNY per 1M output tokens, the estimate's range %.4f .. %.4f" % (got, lo, hi))
    check(got < 20, "a 7B model on 8xh100 at %.2f CNY per 1M output tokens" % got)
    idle_out = sum(r.get("idle_ns", 0) for r in json.loads(run(cost_cli + ["--hardware", "8xh100", "--group", "batch",
                                                                          "--format", "json"]).stdout)["rows"])
    check(abs(idle_out - n * idle / ratio) <= n, "idle %d ns, wanted %d / %g" % (idle_out, n * idle, ratio))
    # --decode-batch: batch 1 is the slow end of the range.
    _, js1, ratio1, why1 = whatif(["--decode-batch", "1"], "estimate")
    check(abs(ratio1 / (booked_s / call_s(1)) - 1) < 1e-5 and "batch 1;" in why1, "--decode-batch 1: %s" % why1)

    # The efficiency measured by this machine's bench instead of machine.md's.
    _, _, _, why = whatif(["--eff-bench", cpu_bench], "estimate")
    check("measured here (%s on cpu-2vcpu)" % cpu_bench in why, "--eff-bench: %s" % why)
    # Measured: a bench of 8xh100 given (test figures), its best run.
    hb = {"hardware": "8xh100", "model": {"name": "llama2-7b", "n_params": b["model"]["n_params"],
                                          "params_per_token": ppt},
          "runs": [{"batch": 16, "prefill_tok_s": 30000, "decode_tok_s": 9000},
                   {"batch": 64, "prefill_tok_s": 40000, "decode_tok_s": 25000}]}
    hb_path = os.path.join(T, "h100-llama2-7b.json")
    json.dump(hb, open(hb_path, "w"))
    _, js, ratio, why = whatif(["--bench", hb_path], "measured")
    check(abs(ratio / (booked_s / (tin / 40000 + tout / 25000)) - 1) < 1e-5 and hb_path in why, "--bench: %s" % why)
    # ... or attached to the profile (bench = FILE): preferred over the estimate.
    hwdir = os.path.join(T, "hardware")
    shutil.copytree(os.path.join(deploy, "hardware"), hwdir)
    shutil.copy(hb_path, os.path.join(hwdir, "h100-llama2-7b.json"))
    with open(os.path.join(hwdir, "8xh100.conf"), "a") as fh:
        fh.write("bench = h100-llama2-7b.json\n")
    _, _, ratio_a, why = whatif([], "measured", {"MARGIN_HARDWARE_DIR": hwdir})
    check(abs(ratio_a - ratio) < 1e-9 * ratio and "h100-llama2-7b.json" in why, "attached bench: %s" % why)
    # Given.
    _, js, ratio, why = whatif(["--speed", "2"], "given")
    check(ratio == 2 and js["rows"][0]["busy_ns"] == half_up(busy, 2), "--speed 2")
    p = run(cost_cli + ["--hardware", "8xh100", "--speed", "2", "--bench", hb_path], ok=(2,))
    check("--speed" in p.stderr, p.stderr)

    # The price-war check from the ledger: this machine's throughput
    # (labelled ledger), or 8xh100's at the batch's mix.
    eco = cli + ["economics", "check", "--from-ledger", "batch_7b", "--state-dir", state, "--price-before", "20",
                 "--price-after", "0.5/2", "--json"]
    here = json.loads(run(eco).stdout)
    check(here["hardware"] == "cpu-2vcpu" and here["inputs"]["throughput_source"] == "ledger" and
          "throughput (ledger)" in here["report"], "from the ledger: %s" % here["inputs"])
    there = json.loads(run(eco + ["--hardware", "8xh100"]).stdout)
    check(there["hardware"] == "8xh100" and there["inputs"]["throughput_source"] == "estimated" and
          "8xh100" in there["inputs"]["throughput"], "from the ledger on 8xh100: %s" % there["inputs"])
    # blended over in + out at the measured utilization
    u = here["inputs"]["utilization"]
    want = h100_rate * call_s(32) / 3600 / (tin + tout) / u * 1e6
    check(abs(there["cost_per_1m_tokens_micros"] / want - 1) < 0.01,
          "check on 8xh100: %d micros per 1M tokens, the estimate %d" % (there["cost_per_1m_tokens_micros"], want))

    # Charts of this machine's bench on 8xh100: the target's estimate.
    svg = os.path.join(T, "c.svg")
    run(cli + ["economics", "chart", "--bench", cpu_bench, "--hardware", "8xh100", "-o", svg])
    s = open(svg).read()
    check("8xh100 (estimate)" in s and "(bench)" not in s, "chart legend: %s" % re.findall(r"8xh100[^<]*", s))
    ticks = [float(t) for t in re.findall(r">([0-9.e+]+)</text>", s)]
    check(ticks and max(ticks) < 100, "chart of 7B on 8xh100 up to %s CNY per 1M" % max(ticks or [0]))
    run(cli + ["economics", "chart", "--bench", cpu_bench, "--hardware", "cpu-2vcpu", "-o", svg])
    check("cpu-2vcpu (measured)" in open(svg).read(), "chart of this machine's bench")
    txt = run(cli + ["economics", "check", "--bench", cpu_bench, "--hardware", "8xh100", "--price-before", "20",
                     "--price-after", "0.5/2"]).stdout
    check("throughput (estimated)" in txt and "not the bench given" in txt, "check --bench on 8xh100: %s" % txt)


def main():
    return costlib.main({"batch": sc_batch, "offline": sc_offline, "whatif": sc_whatif})


if __name__ == "__main__":
    sys.exit(main())
