#!/usr/bin/env python3
"""Integration scenarios of names, price listings and the price-war table.

    test_prices.py SCENARIO      names | prices | table | worker

names:  a misspelt hardware profile, price table or entry is an error that
        lists the known names, in marginctl (cost, economics check) and in
        margind (--hardware, [meter] hardware in its config file); a bare
        entry resolves across the prices directory, or names its candidates.
prices: `marginctl prices` lists every entry of every table of the prices
        directory with its prices and sources, checked against the INI files
        read here independently.
table:  `marginctl economics check` alone prints the price-war table of
        /work/shared/reference/economics.md section 6; its cells are checked
        against an independent computation from the same files and against
        the reference's figures; --cache-hit reproduces DeepSeek's margin.
worker: a worker that announces an unknown profile is priced with the
        documented fallback (cpu-2vcpu), and margind says so loudly, naming
        the close profile.

Binaries come from $MARGIND, $MARGIN_WORKER, $MARGINCTL; deploy/ from
$MARGIN_DEPLOY_DIR; models from $MARGIN_SHARED_DIR (meson sets them). Every
process started is killed at the end; every wait is bounded.
"""
import configparser
import json
import os
import sys
from decimal import Decimal
from fractions import Fraction

import costlib
from costlib import T, check, data_env, env, spawn

PROFILES = ["8xa100", "8xascend910b", "8xh100", "8xh20", "8xh800-rental", "cpu-2vcpu"]


def run(argv, ok=(0,)):
    """costlib.run with the source tree's profiles and price tables."""
    return costlib.run(argv, ok, data_env())


def lists_profiles(text, close):
    """The message names the close profile first and every known one."""
    check(("did you mean %s" % close) in text, "no suggestion of %s in: %s" % (close, text))
    check("known: " + ", ".join(PROFILES) in text, "the known profiles are not listed in: %s" % text)


def tables():
    """Every table of deploy/prices as configparser objects, by name."""
    d = os.path.join(env("MARGIN_DEPLOY_DIR"), "prices")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".conf"):
            c = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
            c.read(os.path.join(d, f))
            out[f[:-5]] = c
    return out


def q(s):
    return Fraction(Decimal(s))


# --- names -----------------------------------------------------------------

def sc_names():
    ctl = [env("MARGINCTL"), "--url", "http://127.0.0.1:9"]   # nothing listens there
    p = run(ctl + ["cost", "--hardware", "8xH100", "--batch", "b", "--state-dir", T], ok=(2,))
    lists_profiles(p.stderr, "8xh100")
    p = run(ctl + ["economics", "check", "--hardware", "8xH100", "--throughput", "100", "--price-before", "1",
                   "--price-after", "1"], ok=(2,))
    lists_profiles(p.stderr, "8xh100")
    check(p.stdout == "", "a report was printed for an unknown profile: %s" % p.stdout[:200])
    p = run(ctl + ["cost", "--prices", "cn-2024-05-befor", "--batch", "b", "--state-dir", T], ok=(2,))
    check("did you mean cn-2024-05-before" in p.stderr and "closed-2024" in p.stderr and "fx" in p.stderr, p.stderr)

    # margind: --hardware and [meter] hardware refuse to start, listing names.
    state = os.path.join(T, "d")
    base = [env("MARGIND"), "--state-dir", state, "--http", "127.0.0.1:0", "--workers", "tcp://127.0.0.1:0",
            "--no-curve", "--set", "meter.hardware_dir=" + data_env()["MARGIN_HARDWARE_DIR"]]
    p = run(base + ["--hardware", "8xH100"], ok=(1, 2))
    lists_profiles(p.stderr, "8xh100")
    conf = os.path.join(T, "margind.conf")
    with open(conf, "w") as f:
        f.write("[meter]\nhardware = 8xh10\n")
    p = run(base + ["--config", conf], ok=(1, 2))
    check(conf in p.stderr and "[meter] hardware = 8xh10" in p.stderr, p.stderr)
    lists_profiles(p.stderr, "8xh100")

    # Price entries: a bare name that one table holds resolves, and says
    # which table; one in several tables names the candidates.
    eco = ctl + ["economics", "check", "--hardware", "8xh800-rental", "--throughput", "4376", "--currency", "USD"]
    p = run(eco + ["--price-before", "qwen-long", "--price-after", "1"], ok=(2,))
    check("cn-2024-05-after:qwen-long" in p.stderr and "cn-2024-05-before:qwen-long" in p.stderr
          and "give TABLE:ENTRY" in p.stderr, p.stderr)
    check("expected P or IN/OUT" not in p.stderr, "an entry name taken for a price: %s" % p.stderr)
    p = run(eco + ["--price-before", "qwen-max", "--price-after", "1"], ok=(2,))
    for t in ("cn-2024-05-before", "cn-2024-05-after", "cn-2024-late"):
        check("%s:qwen-max" % t in p.stderr, p.stderr)
    p = run(eco + ["--price-before", "doubao-pro-32k", "--price-after", "gpt-4o-mini"])
    check("--price-before doubao-pro-32k: the entry of table cn-2024-05-after" in p.stderr, p.stderr)
    check("--price-after gpt-4o-mini: the entry of table closed-2024" in p.stderr, p.stderr)
    check("price before: doubao-pro-32k (Doubao-pro-32k, bytedance) 0.8 in / 2 out CNY" in p.stdout, p.stdout)
    p = run(eco + ["--price-before", "qwen-lng", "--price-after", "1"], ok=(2,))
    check("did you mean cn-2024-05-after:qwen-long or cn-2024-05-before:qwen-long?" in p.stderr, p.stderr)
    check("marginctl prices" in p.stderr, p.stderr)
    p = run(eco + ["--price-before", "cn-2024-05-after:qwen-lng", "--price-after", "1"], ok=(2,))
    check("did you mean qwen-long?" in p.stderr and "known: qwen-long, qwen-max" in p.stderr, p.stderr)
    # Typed prices still work.
    run(eco + ["--price-before", "120", "--price-after", "0.8/2"])


# --- prices ----------------------------------------------------------------

def sc_prices():
    ctl = [env("MARGINCTL")]
    want = tables()
    j = json.loads(run(ctl + ["prices", "--json"]).stdout)
    got = {t["spec"]: t for t in j["tables"]}
    check(sorted(got) == sorted(want), "tables listed %s, in the directory %s" % (sorted(got), sorted(want)))
    n = 0
    for name, c in want.items():
        entries = {e["entry"]: e for e in got[name]["entries"]}
        secs = [s[len("price."):] for s in c.sections() if s.startswith("price.")]
        check(sorted(entries) == sorted(secs), "%s: entries %s, file %s" % (name, sorted(entries), sorted(secs)))
        for s in secs:
            sec, e = c["price." + s], entries[s]
            n += 1
            check(e["currency"] == sec["currency"], "%s:%s currency" % (name, s))
            check(e["mode"] == sec.get("mode", "chat"), "%s:%s mode %s" % (name, s, e["mode"]))
            for key, field in (("input_per_1m", "input_per_1m"), ("output_per_1m", "output_per_1m"),
                               ("cached_input_per_1m", "cached_input_per_1m")):
                if key in sec:
                    check(e[field] is not None and q(e[field]) == q(sec[key]),
                          "%s:%s %s: %s, file %s" % (name, s, key, e[field], sec[key]))
                else:
                    check(key != "cached_input_per_1m" or e[field] is None, "%s:%s: a cached price from nowhere" % (name, s))
            src = sec.get("input_per_1m_source", sec.get("source"))
            check(e["sources"]["input"]["source"] == src, "%s:%s input source" % (name, s))
            if "cached_input_per_1m" in sec:
                csrc = sec.get("cached_input_per_1m_source", sec.get("source"))
                check(e["sources"]["cached"]["source"] == csrc, "%s:%s cached source" % (name, s))
            disc = q(sec.get("batch_discount", "0"))
            if "batch_input_per_1m" in sec:
                check(q(e["batch"]["input_per_1m"]) == q(sec["batch_input_per_1m"]), "%s:%s batch" % (name, s))
            elif disc > 0:
                check(q(e["batch"]["output_per_1m"]) == q(sec["output_per_1m"]) * (1 - disc), "%s:%s batch" % (name, s))
            else:
                check(e["batch"] is None, "%s:%s: a batch price from nowhere" % (name, s))
    check(n > 50, "only %d entries" % n)
    fx = [t for t in j["tables"] if t["spec"] == "fx"][0]["fx"]
    check(fx and fx[0]["currency"] == "CNY" and fx[0]["per_usd"] == "7.2", "fx: %s" % fx)

    # Text: one table, the cached price and its source on DeepSeek.
    txt = run(ctl + ["prices", "cn-2024-late"]).stdout
    check(txt.startswith("cn-2024-late: 15 entries from "), txt[:200])
    line = [l for l in txt.splitlines() if l.strip().startswith("deepseek-chat ")]
    check(line and line[0].split()[1:6] == ["CNY", "chat", "1", "2", "0.1"], "deepseek-chat line: %s" % line)
    check("cached: economics.md 1c: cache hit 0.1 (Aug 2024)" in txt and "date: 2024-08" in txt, txt)
    # The embedding prices: mode embedding, no output price, their batch price and sources.
    txt = run(ctl + ["prices", "embeddings"]).stdout
    check(txt.startswith("embeddings: 4 entries from "), txt[:200])
    line = [l for l in txt.splitlines() if l.strip().startswith("text-embedding-3-small ")]
    check(line and line[0].split()[1:8] == ["USD", "embedding", "0.02", "0", "-", "0.01", "/"],
          "text-embedding-3-small line: %s" % line)
    check("openai.com/index/new-embedding-models-and-api-updates" in txt and "date: 2024-01-25" in txt, txt)
    line = [l for l in txt.splitlines() if l.strip().startswith("text-embedding-v3 ")]
    check(line and line[0].split()[1:8] == ["CNY", "embedding", "0.5", "0", "-", "0.25", "/"],
          "text-embedding-v3 line: %s" % line)
    txt = run(ctl + ["prices"]).stdout
    for name in want:
        check(("\n%s: " % name) in "\n" + txt, "table %s missing from `marginctl prices`" % name)
    p = run(ctl + ["prices", "cn-2024-lat"], ok=(2,))
    check("did you mean cn-2024-late?" in p.stderr, p.stderr)


# --- table -----------------------------------------------------------------

BASES = {   # economics.md 6: out tok/s per GPU, mix, utilization
    "A": (547, 2048, 2048, Fraction(1, 2)),
    "B": (306, 2048, 128, Fraction(1, 2)),
    "7B": (2740, 2048, 2048, Fraction(1, 2)),
}
SMALL = ("ernie-lite", "ernie-speed", "qwen-turbo")


def oracle(sec, basis, fx):
    """Gross margin (fraction, None for no revenue) of a price entry on a
    basis, from the INI text: $2.00 per GPU-hour."""
    pin, pout = q(sec["input_per_1m"]), q(sec["output_per_1m"])
    if basis == "C":
        # DeepSeek's day: 608B in (342B cache hits), 168B out, 87,072 USD.
        if "cached_input_per_1m" in sec:
            pin = Fraction(342, 608) * q(sec["cached_input_per_1m"]) + Fraction(266, 608) * pin
        rev = (608000 * pin + 168000 * pout) / fx
        cost = Fraction(87072)
    else:
        tok_s, i, o, u = BASES[basis]
        out_h = tok_s * 3600 * u / Fraction(10**6)    # M output tokens per GPU-hour
        rev = (out_h * i / o * pin + out_h * pout) / fx
        cost = Fraction(2)
    if rev <= 0:
        return None
    return (rev - cost) / rev


def sc_table():
    ctl = [env("MARGINCTL"), "--url", "http://127.0.0.1:9"]
    p = run(ctl + ["economics", "check"])
    txt = p.stdout
    check(not txt.startswith("usage"), "usage printed instead of the table")
    for needle in ("before the May 2024 cuts (cn-2024-05-before)", "after the May 2024 cuts (cn-2024-05-after)",
                   "a 60% margin dies at a 60% cut", "sources of the prices:", "226.75 nodes x 8 H800",
                   "NVIDIA/TensorRT-LLM docs/source/performance.md @138f96d4", "CNY at 7.2 per USD [source:",
                   "c: 56.25% of the input tokens"):
        check(needle in txt, "the table lacks %r" % needle)
    j = json.loads(run(ctl + ["economics", "check", "--json"]).stdout)
    check(j["report"] == txt, "--json's report differs from the text")
    want = tables()
    fx = q(want["fx"]["fx"]["CNY_per_USD"])
    rows = j["rows"]
    expect = [(t, s[len("price."):]) for t in ("cn-2024-05-before", "cn-2024-05-after", "cn-2024-late")
              for s in want[t].sections() if s.startswith("price.")]
    check([(r["table"], r["entry"]) for r in rows] == expect, "rows are not every entry of the three tables")
    for r in rows:
        sec = want[r["table"]]["price." + r["entry"]]
        for b in ("A", "B", "C", "7B"):
            cell = r["cells"][b]
            if b == "7B" and not r["entry"].startswith(SMALL):
                check(cell is None, "%s:%s has a 7B cell" % (r["table"], r["entry"]))
                continue
            gm = oracle(sec, b, fx)
            if gm is None:
                check(cell["gross_margin_ppm"] is None, "%s:%s %s: a margin without revenue" % (r["table"], r["entry"], b))
                continue
            got = cell["gross_margin_ppm"] / 1e6
            check(abs(got - float(gm)) < 1e-5, "%s:%s on %s: %.6f, oracle %.6f" % (r["table"], r["entry"], b, got, gm))
            check(cell["cache_hit_applied"] == (b == "C" and "cached_input_per_1m" in sec),
                  "%s:%s on %s: cache-hit flag" % (r["table"], r["entry"], b))
        check(r["before"] == (r["table"] == "cn-2024-05-before"), "group of %s" % r["table"])

    def cell(t, e, b):
        r = [x for x in rows if x["table"] == t and x["entry"] == e][0]
        return r["cells"][b]["gross_margin_ppm"] / 1e4
    # economics.md 6's table, within half a point.
    for t, e, a, b, c in (("cn-2024-05-before", "ernie-4.0-8k", 94, 99, 99.3),
                          ("cn-2024-05-before", "ernie-3.5-8k", 39, 87, 93),
                          ("cn-2024-05-after", "qwen-max", 91, 97, 98.6),
                          ("cn-2024-late", "qwen-max", 82, 93, 97),
                          ("cn-2024-05-after", "doubao-pro-32k", -422, -77, 24),
                          ("cn-2024-05-after", "qwen-long", -485, -161, 2)):
        for k, v in (("A", a), ("B", b), ("C", c)):
            check(abs(cell(t, e, k) - v) <= 0.5, "%s:%s on %s: %.2f%%, economics.md: %g%%" % (t, e, k, cell(t, e, k), v))
    for t, e, v in (("cn-2024-05-before", "ernie-lite-8k", 51), ("cn-2024-05-before", "ernie-speed-8k", 64),
                    ("cn-2024-05-after", "qwen-turbo", 64), ("cn-2024-late", "qwen-turbo", -224)):
        check(abs(cell(t, e, "7B") - v) <= 0.5, "%s:%s on 7B: %.2f%%, economics.md: %g%%" % (t, e, cell(t, e, "7B"), v))

    # Only --json and --currency go with the table.
    p = run(ctl + ["economics", "check", "--mix", "1/1"], ok=(2,))
    check("--throughput" in p.stderr, p.stderr)

    # DeepSeek's published margin with the cache-hit rate: R1 prices, 342B of
    # 608B input tokens cached, 168B output over 226.75 nodes a day.
    day = ctl + ["economics", "check", "--hardware", "8xh800-rental", "--currency", "USD", "--json",
                 "--throughput", "%.6f" % (168e9 / (226.75 * 86400)), "--mix", "608/168", "--utilization", "1",
                 "--price-before", "deepseek-2025:deepseek-r1", "--price-after", "deepseek-2025:deepseek-r1"]
    r = json.loads(run(day + ["--cache-hit", "0.5625"]).stdout)
    check(abs(r["before"]["gross_margin_ppm"] / 1e4 - 84.5) <= 0.05, "GM %s" % r["before"])
    check(abs(r["before"]["markup_ppm"] / 1e4 - 545) <= 1, "cost profit margin %s" % r["before"])
    check("cache-hit rate: 56.2" in r["report"] and "(applied at the cache-hit rate)" in r["report"], r["report"])
    r0 = json.loads(run(day).stdout)
    check(r0["before"]["gross_margin_ppm"] > r["before"]["gross_margin_ppm"], "the cache-hit rate changed nothing")
    p = run(day + ["--cache-hit", "1.5"], ok=(2,))
    check("--cache-hit 1.5" in p.stderr, p.stderr)


# --- worker ----------------------------------------------------------------

def sc_worker():
    gguf = os.path.join(costlib.shared_dir(), "models", "stories260K.gguf")
    check(os.access(gguf, os.R_OK), "%s is not readable" % gguf)
    url, wep = costlib.margind(os.path.join(T, "d"), [])
    spawn("worker", [env("MARGIN_WORKER"), "serve", "--scheduler", wep, "--model", gguf, "--slots", "2",
                     "--threads", "1", "--name", "w", "--hardware", "8xH100", "--no-curve"],
          {"OPENBLAS_NUM_THREADS": "1"})
    inp = os.path.join(T, "in.jsonl")
    with open(inp, "w") as f:
        for i in range(2):
            f.write(json.dumps({"custom_id": "r%d" % i, "method": "POST", "url": "/v1/completions",
                                "body": {"model": "stories260K", "prompt": "Once", "max_tokens": 4}}) + "\n")
    cli = [env("MARGINCTL"), "--url", url]
    costlib.wait_workers(url, 1)
    batch = run(cli + ["submit", inp]).stdout.split()[0]
    run(cli + ["wait", batch, "--timeout", "120"])
    rep = json.loads(run(cli + ["cost", "--batch", batch, "--format", "json"]).stdout)
    # The documented fallback prices it...
    check(rep["hardware"] == "cpu-2vcpu", "priced as %s" % rep["hardware"])
    # ...and margind says so at warn level, naming the close profile.
    text = open(os.path.join(T, "margind.log"), errors="replace").read()
    warn = [l for l in text.splitlines() if "level=warn" in l and "unknown hardware profile" in l]
    check(warn, "no warning about the unknown profile in margind's log")
    check('announced="8xH100"' in warn[0] and "priced_as=cpu-2vcpu" in warn[0] and "did you mean 8xh100" in warn[0],
          warn[0])


def main():
    return costlib.main({"names": sc_names, "prices": sc_prices, "table": sc_table, "worker": sc_worker})


if __name__ == "__main__":
    sys.exit(main())
