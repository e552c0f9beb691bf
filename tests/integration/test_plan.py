#!/usr/bin/env python3
"""Integration check of capacity planning: `marginctl plan` and the memory
check of `marginctl economics check --estimate`, offline.

- The capacity question ("50M output tokens a day of a 7B model, done within
  24 h: how many nodes of which profile, at what cost per 1M tokens, against
  gpt-4o-mini and qwen-long?") answered in one command, and each row's
  figures checked against their definitions (docs/economics.md, "Capacity
  planning"), in JSON, CSV and text.
- The model shapes: every preset shared with the worker has the worker's
  parameter count (`margin-worker synth --list`), and a GGUF file written by
  `margin-worker synth` reads back as `margin-worker inspect` sees it.
- --estimate: a 70B f16 model at batch 256 on one 80 GB H100 is refused,
  naming weights + KV against memory; without --batch the batch is the
  largest that fits, and the output says "upper bound".
- Measured speed: a real bench of llama2-7b taken on this machine, attached
  to a copy of its profile (bench = FILE) or given with --bench, makes the
  cpu-2vcpu row "measured" at the bench's largest batch that fits, and the
  nodes and costs follow from the bench's figures.
- Bad input: a clear error naming what and the known names.

Binaries from $MARGINCTL and $MARGIN_WORKER, deploy/ from $MARGIN_DEPLOY_DIR
(meson sets them).
"""
import csv
import io
import json
import math
import os
import re
import shutil
import sys

import costlib
from costlib import T, check, data_env, env


def run(argv, ok=(0,), extra_env=None):
    """costlib.run with the source tree's profiles and price tables, and
    no margind (nothing here talks to one)."""
    return costlib.run(argv, ok, {**data_env(), "MARGIN_URL": "http://127.0.0.1:9", **(extra_env or {})})


H100_1 = """[hardware]
name = h100-1
description = one H100 SXM 80GB at 2 USD an hour (test profile: 8xh100.conf's figures / 8)
currency = USD
pricing = rental
accelerators = 1
purchase_price = 0
purchase_price_source = rented
purchase_price_date = 2025-03-01
power_watts_load = 0
power_watts_load_source = included in the rent
power_watts_load_date = 2025-03-01
fixed_per_hour = 2
fixed_per_hour_source = economics.md 2b (DeepSeek's 2 USD per GPU-hour)
fixed_per_hour_date = 2025-03-01
peak_flops_fp32 = 66.9e12
peak_flops_fp32_source = 8xh100.conf / 8
peak_flops_fp32_date = 2022-03
peak_flops_fp16 = 989.4e12
peak_flops_fp16_source = 8xh100.conf / 8
peak_flops_fp16_date = 2022-03
mem_bandwidth = 3.35e12
mem_bandwidth_source = 8xh100.conf / 8
mem_bandwidth_date = 2022-03
memory_bytes = 80e9
memory_bytes_source = 8xh100.conf / 8
memory_bytes_date = 2022-03
"""


def plan_question(cli):
    q = cli + ["plan", "--output-tokens", "50000000", "--mix", "2048/512", "--deadline", "24h",
               "--model", "llama2-7b", "--currency", "CNY", "--one-off", "500000"]
    j = json.loads(run(q + ["--format", "json"]).stdout)
    w = j["workload"]
    check(w["out_tokens_per_day"] == 50e6 and w["in_tokens_per_day"] == 200e6 and w["deadline_hours"] == 24,
          "workload %r" % w)
    rows = {r["profile"]: r for r in j["profiles"]}
    for name in ("8xh100", "8xa100", "8xh20", "8xascend910b", "cpu-2vcpu"):
        check(rows.get(name, {}).get("status") == "ok", "%s not planned: %r" % (name, rows.get(name)))
    # A profile without peaks is listed with the reason, not dropped.
    check(rows["8xh800-rental"]["status"] == "not planned" and "peak_flops" in rows["8xh800-rental"]["error"],
          "8xh800-rental: %r" % rows["8xh800-rental"])
    I, O = 200e6, 50e6
    for name, r in rows.items():
        if r["status"] != "ok":
            continue
        m, s = r["memory"], r["speed"]
        # The largest batch that fits: weights + batch x KV <= memory < weights + (batch + 1) x KV.
        check(m["context_tokens"] == 2560 and m["kv_bytes_per_seq"] == 2560 * 524288, "%s: %r" % (name, m))
        check(m["weight_bytes"] + m["max_batch"] * m["kv_bytes_per_seq"] <= m["memory_bytes"] <
              m["weight_bytes"] + (m["max_batch"] + 1) * m["kv_bytes_per_seq"], "%s: batch %r" % (name, m))
        check(s["basis"] == "estimate (roofline x efficiency measured here), upper bound", "%s basis" % name)
        check(s["peak"] == ("fp32" if name == "cpu-2vcpu" else "fp16"), "%s peak %s" % (name, s["peak"]))
        # Node-seconds, nodes = ceil, utilization.
        sec = O / 512 * (2048 / s["prefill_tok_s"] + 512 / s["decode_tok_s"])
        check(abs(r["node_seconds_per_day"] - sec) <= 1e-6 * sec, "%s: node-seconds" % name)
        check(r["nodes"] == math.ceil(sec / 86400), "%s: %d nodes for %.0f node-seconds" % (name, r["nodes"], sec))
        check(abs(r["utilization"] - sec / 86400 / r["nodes"]) < 1e-9, "%s: utilization" % name)
        # Costs per 1M: marginal = rate / tokens an hour; loaded x tokens = the day's cost.
        rb = r["rate_busy_micros_per_hour"]
        check(abs(r["marginal_out_per_1m_micros"] - rb / (3600 * s["decode_tok_s"]) * 1e6) <= 1, "%s marginal" % name)
        day = r["cost_per_day_micros"]
        both = r["loaded_in_per_1m_micros"] * I / 1e6 + r["loaded_out_per_1m_micros"] * O / 1e6
        check(abs(both - day) <= 1e-6 * day + 300, "%s: loaded in x I + out x O = %.0f, day %d" % (name, both, day))
        check(abs(r["cost_per_month_micros"] - day * 365 / 12) <= 1 + 1e-9 * day, "%s month" % name)
        refs = {x["ref"]: x for x in r["refs"]}
        check(set(refs) == {"gpt-4o-mini", "qwen-long"}, "%s refs %r" % (name, list(refs)))
        # qwen-long 0.5/2 CNY; gpt-4o-mini 0.15/0.60 USD at 7.2.
        check(refs["qwen-long"]["api_per_day_micros"] == 200000000, "qwen-long per day")
        check(abs(refs["gpt-4o-mini"]["api_per_day_micros"] - 432000000) <= 1, "gpt-4o-mini per day")
        for x in refs.values():
            check(abs(x["ratio"] - x["api_per_day_micros"] / day) < 1e-6, "%s ratio" % name)
            saving = x["api_per_day_micros"] - day
            check(x["days_to_recover"] is None if saving <= 0 else
                  abs(x["days_to_recover"] - 500000e6 / saving) < 1e-6, "%s days to recover" % name)
    # The 7B on 8 x 80 GB: (640e9 - 13,477,363,712) / 1,342,177,280 -> 466.
    check(rows["8xh100"]["memory"]["max_batch"] == 466, "8xh100 batch %d" % rows["8xh100"]["memory"]["max_batch"])
    check(rows["cpu-2vcpu"]["memory"]["max_batch"] == 9, "cpu-2vcpu batch")

    # CSV: the same figures.
    c = list(csv.DictReader(io.StringIO(run(q + ["--format", "csv"]).stdout)))
    check([r["profile"] for r in c] == [r["profile"] for r in j["profiles"]], "csv rows")
    for r in c:
        jr = rows[r["profile"]]
        check(r["currency"] == "CNY", "csv currency")
        if jr["status"] != "ok":
            check(r["status"] == "not planned" and r["error"] == jr["error"], "csv error %r" % r)
            continue
        check(int(r["nodes"]) == jr["nodes"] and int(r["max_batch"]) == jr["memory"]["max_batch"], "csv %r" % r)
        check(int(r["cost_per_day_micros"]) == jr["cost_per_day_micros"], "csv cost per day")
        check(int(r["api_per_day_micros_qwen-long"]) == 200000000, "csv qwen-long")
    # Text: the table, every input with its source, "upper bound".
    txt = run(q).stdout
    for needle in ("capacity plan: 50000000 output tokens a day of llama2-7b within 24 h, in CNY",
                   "[--mix 2048/512]", "[--deadline 24h]", "reference qwen-long", "exchange rate: CNY_per_USD",
                   "upper bound", "8xh800-rental: not planned", "days to recover", "memory 640.0 GB [8 x 80 GB"):
        check(needle in txt, "text lacks %r:\n%s" % (needle, txt))
    line = [ln for ln in txt.splitlines() if ln.startswith("8xh100 ")][0]
    check(line.split()[1] == str(rows["8xh100"]["nodes"]) and " 466 " in line, "text row %r" % line)
    return txt


def shapes(cli, worker):
    # Every preset the worker has: the same parameter count (0.1M as --list prints it).
    listed = {}
    for ln in run([worker, "synth", "--list"]).stdout.splitlines():
        m = re.match(r"(\S+)\s+([\d.]+)M params", ln)
        if m:
            listed[m.group(1)] = float(m.group(2))
    shared = 0
    for name in ("llama-110m", "qwen2-0.5b", "qwen3-0.6b", "llama3.2-1b", "llama2-7b", "mistral-7b", "qwen2-7b",
                 "llama3-8b"):
        check(name in listed, "the worker has no preset %s" % name)
        j = json.loads(run(cli + ["plan", "--model", name, "--output-tokens", "1M", "--hardware", "8xh100",
                                  "--format", "json"]).stdout)
        mine = j["model"]["n_params"] / 1e6
        check(abs(mine - listed[name]) < 0.051, "%s: %.1fM params here, %.1fM in the worker" % (name, mine,
                                                                                             listed[name]))
        shared += 1
    # A GGUF the worker writes reads back as the worker inspects it.
    g = os.path.join(T, "q.gguf")
    run([worker, "synth", "--arch", "qwen2-0.5b", "--layers", "2", "--type", "q8_0", "-o", g])
    ins = json.loads(run([worker, "inspect", g, "--json"]).stdout)
    j = json.loads(run(cli + ["plan", "--model", g, "--output-tokens", "1M", "--hardware", "cpu-2vcpu",
                              "--format", "json"]).stdout)
    m = j["model"]
    check(m["n_params"] == ins["n_params"] and m["weight_bytes"] == ins["tensor_bytes"], "gguf %r vs %r" % (
        m, {k: ins[k] for k in ("n_params", "tensor_bytes")}))
    check((m["n_layers"], m["n_heads"], m["n_kv_heads"], m["head_dim"]) == (2, 14, 2, 64), "gguf shape %r" % m)
    check(m["dtype"] == "q8_0" and m["kv_bytes_per_token"] == 2 * 2 * 2 * 64 * 2, "gguf dtype/kv %r" % m)
    return shared


def estimate(cli):
    h = os.path.join(T, "h100-1.conf")
    with open(h, "w") as f:
        f.write(H100_1)
    eco = cli + ["economics", "check", "--estimate", "--price-before", "cn-2024-05-before:qwen-max",
                 "--price-after", "cn-2024-05-after:qwen-max"]
    # 70B f16 at batch 256 on one 80 GB H100: refused, weights + KV vs memory named.
    p = run(eco + ["--hardware", h, "--model", "llama2-70b", "--batch", "256"], ok=(1,))
    for needle in ("refused", "batch 256 does not fit on h100-1", "weights 138.0 GB", "KV cache 343.6 GB",
                   "> memory 80.0 GB"):
        check(needle in p.stderr, "refusal lacks %r: %s" % (needle, p.stderr))
    check(p.stdout == "", "a refused estimate printed a result: %s" % p.stdout)
    p = run(eco + ["--hardware", h, "--params", "70e9", "--batch", "256"], ok=(1,))
    check("weights 140.0 GB > memory 80.0 GB" in p.stderr, p.stderr)
    # On 8 x H100 it fits; without --batch the largest batch is taken, and it is an upper bound.
    txt = run(eco + ["--hardware", "8xh100", "--model", "llama2-70b"]).stdout
    for needle in ("upper bound", "batch 374 (the largest that fits)", "fp16 peak", "memory_bytes"):
        check(needle in txt, "estimate lacks %r:\n%s" % (needle, txt))
    txt = run(eco + ["--hardware", "8xh100", "--model", "llama2-70b", "--batch", "256"]).stdout
    check("batch 256 (--batch)" in txt and "upper bound" in txt, txt)
    # A bare --params without --batch cannot size the KV cache: asks for --model.
    p = run(eco + ["--hardware", "8xh100", "--params", "7e9"], ok=(2,))
    check("--model" in p.stderr, p.stderr)


def measured(cli):
    src = os.path.dirname(os.path.abspath(env("MARGIN_DEPLOY_DIR")))
    bench = os.path.join(src, "tests", "unit", "meter", "data", "bench_llama2_7b_cpu.json")
    b = json.load(open(bench))
    r8 = [r for r in b["runs"] if r["batch"] == 8][0]
    hwdir = os.path.join(T, "hardware")
    shutil.copytree(os.path.join(env("MARGIN_DEPLOY_DIR"), "hardware"), hwdir)
    shutil.copy(bench, os.path.join(hwdir, "llama2-7b-cpu.json"))
    with open(os.path.join(hwdir, "cpu-2vcpu.conf"), "a") as f:
        f.write("\nbench = llama2-7b-cpu.json\n")
    q = cli + ["plan", "--output-tokens", "50000000", "--mix", "2048/512", "--model", "llama2-7b", "--currency", "CNY"]
    O = 50e6

    def check_row(r, origin):
        s, m = r["speed"], r["memory"]
        # 9 sequences of 2560 tokens fit; the bench measured batches 1 and 8.
        check(m["max_batch"] == 9 and s["batch"] == 8, "measured batch: %r %r" % (m, s))
        check(s["basis"] == "measured (bench %s, batch 8)" % origin, "basis %r" % s["basis"])
        check(s["decode_tok_s"] == r8["decode_tok_s"] and s["prefill_tok_s"] == r8["prefill_tok_s"],
              "measured speed %r, the bench's batch 8: %r" % (s, r8))
        sec = O / 512 * (2048 / r8["prefill_tok_s"] + 512 / r8["decode_tok_s"])
        check(abs(r["node_seconds_per_day"] - sec) <= 1e-6 * sec and r["nodes"] == math.ceil(sec / 86400),
              "nodes %d for %.0f node-seconds" % (r["nodes"], sec))
        # A rental: busy and idle at the same rate, a day of each node.
        rb = r["rate_busy_micros_per_hour"]
        check(abs(r["cost_per_day_micros"] - r["nodes"] * 24 * rb) <= 1, "cost per day %r" % r["cost_per_day_micros"])
        check(abs(r["marginal_out_per_1m_micros"] - rb / (3600 * r8["decode_tok_s"]) * 1e6) <= 1, "marginal")

    # Attached to the profile.
    hw_env = {"MARGIN_HARDWARE_DIR": hwdir}
    j = json.loads(run(q + ["--format", "json"], extra_env=hw_env).stdout)
    rows = {r["profile"]: r for r in j["profiles"]}
    check_row(rows["cpu-2vcpu"], os.path.join(hwdir, "llama2-7b-cpu.json"))
    check(rows["8xh100"]["speed"]["basis"] == "estimate (roofline x efficiency measured here), upper bound",
          "8xh100 has no bench: %r" % rows["8xh100"]["speed"])
    txt = run(q, extra_env=hw_env).stdout
    line = [ln for ln in txt.splitlines() if ln.startswith("cpu-2vcpu ")][0]
    check(line.split()[1] == str(rows["cpu-2vcpu"]["nodes"]) and line.split()[3] == "8" and "measured" in line,
          "text row %r" % line)
    for needle in ("decode %.1f tok/s" % r8["decode_tok_s"], "prefill %.1f tok/s" % r8["prefill_tok_s"],
                   "basis: measured (bench %s, batch 8)" % os.path.join(hwdir, "llama2-7b-cpu.json")):
        check(needle in txt, "text lacks %r:\n%s" % (needle, txt))
    c = {r["profile"]: r for r in csv.DictReader(io.StringIO(run(q + ["--format", "csv"], extra_env=hw_env).stdout))}
    check(c["cpu-2vcpu"]["basis"] == rows["cpu-2vcpu"]["speed"]["basis"] and c["cpu-2vcpu"]["batch"] == "8",
          "csv %r" % c["cpu-2vcpu"])
    # Given with --bench: no "hardware" field, so the only --hardware.
    j = json.loads(run(q + ["--hardware", "cpu-2vcpu", "--bench", bench, "--format", "json"]).stdout)
    check_row(j["profiles"][0], bench)
    p = run(q + ["--bench", bench], ok=(2,))
    check("\"hardware\" field" in p.stderr and "--hardware" in p.stderr, p.stderr)
    # A bench that says its hardware applies to that profile among all.
    hb = dict(b, hardware="cpu-2vcpu")
    hb_path = os.path.join(T, "cpu-bench.json")
    json.dump(hb, open(hb_path, "w"))
    j = json.loads(run(q + ["--bench", hb_path, "--format", "json"]).stdout)
    rows = {r["profile"]: r for r in j["profiles"]}
    check_row(rows["cpu-2vcpu"], hb_path)
    check(rows["8xa100"]["speed"]["basis"].startswith("estimate"), "8xa100 %r" % rows["8xa100"]["speed"])
    p = run(q + ["--bench", hb_path, "--hardware", "8xh100"], ok=(2,))
    check("measured on cpu-2vcpu, which is not planned here (profiles: 8xh100)" in p.stderr, p.stderr)
    # A bench of another model is refused, naming both shapes.
    p = run(cli + ["plan", "--output-tokens", "1M", "--model", "llama2-70b", "--hardware", "cpu-2vcpu",
                   "--bench", bench], ok=(2,))
    check("a bench of llama2-7b" in p.stderr and "llama2-70b" in p.stderr, p.stderr)


def bad_input(cli):
    base = cli + ["plan", "--output-tokens", "50M", "--model", "llama2-7b"]
    for extra, needle in ((["--deadline", "48h"], "--deadline 48h"), (["--mix", "2048"], "--mix 2048"),
                          (["--model", "llama-7b"], "llama2-7b"), (["--hardware", "8xH100"], "8xH100"),
                          (["--ref", "gpt-5"], "gpt-4o-mini"), (["--format", "xml"], "text, json or csv"),
                          (["--dtype", "fp8"], "q8_0")):
        p = run(base + extra, ok=(2,))
        check(needle in p.stderr, "%s: stderr lacks %r: %s" % (extra, needle, p.stderr))
    p = run(cli + ["plan", "--model", "llama2-7b"], ok=(2,))
    check("--output-tokens" in p.stderr, p.stderr)
    p = run(base + ["--ref", "gpt-4o-mini"] * 17, ok=(2,))
    check("at most 16 --ref" in p.stderr, p.stderr)
    p = run(base + ["--mix"], ok=(2,))
    check("--mix needs a value" in p.stderr, p.stderr)
    # --requests: the same plan as the output tokens they make.
    a = json.loads(run(base + ["--mix", "2048/512", "--hardware", "8xh100", "--format", "json"]).stdout)
    b = json.loads(run(cli + ["plan", "--requests", "97656.25", "--mix", "2048/512", "--model", "llama2-7b",
                              "--hardware", "8xh100", "--format", "json"]).stdout)
    check(a["profiles"][0]["cost_per_day_micros"] == b["profiles"][0]["cost_per_day_micros"], "--requests")
    # No profile fits: exit 1, each reason on stderr.
    p = run(cli + ["plan", "--output-tokens", "1M", "--model", "llama2-70b", "--hardware", "cpu-2vcpu"], ok=(1,))
    check("weights alone do not fit" in p.stderr, p.stderr)


def main():
    cli = [env("MARGINCTL")]
    try:
        txt = plan_question(cli)
        n = shapes(cli, env("MARGIN_WORKER"))
        estimate(cli)
        measured(cli)
        bad_input(cli)
    finally:
        shutil.rmtree(T, ignore_errors=True)
    sys.stderr.write("test_plan: the 7B question in one command, %d preset shapes as the worker's, estimates "
                     "refused where they do not fit\n%s" % (n, txt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
