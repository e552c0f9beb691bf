#!/usr/bin/env python3
"""bench/kernels-table.py: margin's kernels on one model shape in F32, Q8_0
and Q4_K_M, beside the machine's calibrated ceilings.

    bench/kernels-table.py [--arch llama-110m] [--types f32,q8_0,q4_k_m,q8_0:fast]
        [--reps 3] [--threads 2] [--prompt-len 128] [--gen-len 64]
        [--dir DIR] [--out DIR] [--recalibrate] [--llama-bench PATH]
        [--worker PATH] [--json]
    bench/kernels-table.py --from DIR/kernels-table.json

Makes one GGUF file per type with `margin-worker synth --arch ARCH --type T`
(into --dir, else a temporary directory removed at the end), then runs
`margin-worker bench --model FILE --batch 1,32 --reps 1 --json` on each,
the files ALTERNATING (f32, q8_0, q4_k_m, f32, ...) for --reps rounds so a
change in the machine's load falls on every file alike. Each figure is the
median over the rounds (each round: one untimed warm-up and one timed
repetition inside the bench). Prints a Markdown table

    file | prefill 128 tok/s | decode b1 tok/s | decode b32 tok/s

each figure with its % of the ceiling that bounds it, then the ceilings
and when they were measured. --json prints one JSON object instead.
--out DIR also writes kernels-table.txt, kernels-table.json and every
bench's raw JSON there. With --llama-bench PATH (default
/tmp/llama/build/bin/llama-batched-bench when it exists) llama.cpp runs
the same files in the same rotation
(llama-batched-bench -m FILE -npp PROMPT -ntg GEN -npl 1,32 -t THREADS,
-c 32 x (PROMPT + GEN) so that 32 sequences fit)
and its figures get a column of their own.

A type written TYPE:fast (e.g. q8_0:fast) runs the TYPE file again with
`margin-worker bench --arith fast` (qmm.h QMM_BLOCKS: Q5_0, Q8_0, IQ4_NL,
Q4_K, Q5_K and Q6_K blocks summed whole, not llama.cpp's bits), in the same rotation, as a row
of its own; llama.cpp does not run it twice.

Ceilings (tok/s). From the file's tensor table (GGUF header):
  P      = elements of the matrices one token goes through: every tensor of
           2 or more dimensions except token_embd (a row lookup), or
           token_embd itself where there is no output.weight (tied);
  P_out  = elements of the classifier (output.weight, else token_embd);
  Q      = bytes of those matrices as stored: f32 4 per weight, f16/bf16 2,
           quantized types bytes-per-block / values-per-block from
           worker/quant.h (Q8_0 34/32, Q4_K 144/256, Q6_K 210/256, ...);
  F_dec  = 2 P                          FLOPs per decoded token
  F_pre  = 2 (P - P_out) + 2 P_out / L  FLOPs per prompt token (L = prompt
           length: prefill computes logits for a prompt's last token only)
  C      = compute peak: fma_gflops for an F32 file, int8_gops for a
           quantized one (a multiply-add counts 2 operations); where the
           bench's "machine" object lacks them, sgemm_gflops, labelled
           "sgemm (OpenBLAS), not the FMA peak"
  W      = bandwidth_gbs (read bandwidth, 10^9 bytes/s)
  prefill      = C 1e9 / F_pre
  decode at B  = min(C 1e9 / F_dec, B W 1e9 / Q)   (B sequences share one
                                                  pass over the weights)
At batch 1 the bandwidth term binds, at 32 the compute term (on any
machine where C / W < 2 x 32 P / Q). Attention FLOPs and KV-cache reads
are not counted (a few % at these lengths): the ceilings are slightly high,
so the percentages err low. A percentage above 100 gets a note.

Benchmarks print figures; they never pass or fail on time. Python 3,
standard library only.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA_DEFAULT = "/tmp/llama/build/bin/llama-batched-bench"

# ggml type -> (values per block, bytes per block); worker/quant.h for the
# quantized ones.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2),
    2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 20: ("IQ4_NL", 32, 18),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 23: ("IQ4_XS", 256, 136),
}

FLOAT_TYPES = ("f32", "f16", "bf16")


class TableError(Exception):
    pass


# ---- GGUF tensor table ----

def _gguf_read(f, n, path):
    b = f.read(n)
    if len(b) != n:
        raise TableError(f"{path}: GGUF header ends early")
    return b


def _gguf_string(f, path):
    (n,) = struct.unpack("<Q", _gguf_read(f, 8, path))
    return _gguf_read(f, n, path).decode("utf-8", "replace")


_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
           7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_skip_value(f, vtype, path):
    if vtype in _SCALAR:
        _gguf_read(f, struct.calcsize(_SCALAR[vtype]), path)
    elif vtype == 8:
        _gguf_string(f, path)
    elif vtype == 9:
        etype, n = struct.unpack("<IQ", _gguf_read(f, 12, path))
        if etype in _SCALAR:
            _gguf_read(f, n * struct.calcsize(_SCALAR[etype]), path)
        else:
            for _ in range(n):
                _gguf_skip_value(f, etype, path)
    else:
        raise TableError(f"{path}: unknown GGUF value type {vtype}")


def gguf_tensors(path):
    """[(name, dims, ggml type)] of a GGUF file's tensor table."""
    with open(path, "rb") as f:
        if _gguf_read(f, 4, path) != b"GGUF":
            raise TableError(f"{path}: not a GGUF file (no GGUF magic)")
        version, n_tensors, n_kv = struct.unpack("<IQQ", _gguf_read(f, 20, path))
        if version < 2:
            raise TableError(f"{path}: GGUF version {version}, need 2 or 3")
        for _ in range(n_kv):
            _gguf_string(f, path)
            (vtype,) = struct.unpack("<I", _gguf_read(f, 4, path))
            _gguf_skip_value(f, vtype, path)
        tensors = []
        for _ in range(n_tensors):
            name = _gguf_string(f, path)
            (nd,) = struct.unpack("<I", _gguf_read(f, 4, path))
            dims = struct.unpack(f"<{nd}Q", _gguf_read(f, 8 * nd, path))
            ttype, _offset = struct.unpack("<IQ", _gguf_read(f, 12, path))
            tensors.append((name, dims, ttype))
        return tensors


def model_cost(tensors, path="model"):
    """P, P_out, Q and the per-type bytes of the matrices a token reads."""
    names = {t[0] for t in tensors}
    classifier = "output.weight" if "output.weight" in names else "token_embd.weight"
    p = p_out = 0
    q = 0.0
    by_type = {}
    for name, dims, ttype in tensors:
        if len(dims) < 2:
            continue
        if name == "token_embd.weight" and classifier != name:
            continue
        if ttype not in GGML_TYPES:
            raise TableError(f"{path}: tensor {name} has ggml type {ttype}, "
                             f"known: {sorted(GGML_TYPES)}")
        tname, qk, bb = GGML_TYPES[ttype]
        n = 1
        for d in dims:
            n *= d
        nbytes = n / qk * bb
        p += n
        q += nbytes
        by_type[tname] = by_type.get(tname, 0) + nbytes
        if name == classifier:
            p_out = n
    if p == 0:
        raise TableError(f"{path}: no matrices in the tensor table")
    return {"params_per_token": p, "classifier_params": p_out,
            "bytes_per_token": q, "bytes_by_type": by_type}


# ---- the machine's ceilings ----

def ceilings(machine):
    """The compute peaks and bandwidth from the bench's "machine" object,
    with the labels the table prints. Works on builds that have only
    sgemm_gflops and bandwidth_gbs."""
    if "bandwidth_gbs" not in machine:
        raise TableError('bench JSON: "machine" has no "bandwidth_gbs" '
                         f'(keys: {", ".join(sorted(machine))})')
    sgemm = machine.get("sgemm_gflops")
    core = machine.get("blas_core")
    sgemm_label = "sgemm (OpenBLAS" + (f", core {core}" if core else "") + ")"
    if machine.get("fma_gflops"):
        f32 = (float(machine["fma_gflops"]), "FMA peak", "GFLOP/s")
    elif sgemm:
        f32 = (float(sgemm), sgemm_label + ", not the FMA peak", "GFLOP/s")
    else:
        raise TableError('bench JSON: "machine" has neither "fma_gflops" nor "sgemm_gflops"')
    if machine.get("int8_gops"):
        int8 = (float(machine["int8_gops"]), "int8 peak", "GOP/s")
    else:
        int8 = (f32[0], f32[1] + " (no int8 peak in this build)", f32[2])
    return {"f32": f32, "int8": int8, "bandwidth_gbs": float(machine["bandwidth_gbs"]),
            "sgemm_gflops": float(sgemm) if sgemm else None, "sgemm_label": sgemm_label,
            "measured_at": machine.get("measured_at"), "spread_pct": machine.get("spread_pct"),
            "calibrated_now": machine.get("calibrated_now"), "threads": machine.get("threads"),
            "reliable": machine.get("reliable", True), "tries": machine.get("tries")}


def file_ceilings(cost, ceil, quantized, prompt_len):
    """tok/s ceiling and its bound per figure: prefill, b1, b32."""
    peak, peak_label, _unit = ceil["int8"] if quantized else ceil["f32"]
    p, p_out, q = cost["params_per_token"], cost["classifier_params"], cost["bytes_per_token"]
    f_dec = 2.0 * p
    f_pre = 2.0 * (p - p_out) + 2.0 * p_out / prompt_len
    out = {"prefill": (peak * 1e9 / f_pre, peak_label)}
    for key, b in (("b1", 1), ("b32", 32)):
        comp = peak * 1e9 / f_dec
        bw = b * ceil["bandwidth_gbs"] * 1e9 / q
        out[key] = (comp, peak_label) if comp <= bw else (bw, "read bandwidth")
    return out


# ---- runs ----

def bench_figures(doc, path="bench JSON"):
    """prefill (batch 1), decode b1 and b32 tok/s from one bench --json."""
    runs = {r.get("batch"): r for r in doc.get("runs", [])}
    for b in (1, 32):
        if b not in runs:
            raise TableError(f"{path}: no run of batch {b} (batches: {sorted(runs)})")
    return {"prefill": float(runs[1]["prefill_tok_s"]),
            "b1": float(runs[1]["decode_tok_s"]),
            "b32": float(runs[32]["decode_tok_s"]),
            "prefill_b32": float(runs[32]["prefill_tok_s"])}


_LLAMA_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|(.*)$")


def llama_figures(text, path="llama-batched-bench output"):
    """prefill (B 1), decode b1 and b32 tok/s from llama-batched-bench's
    table: | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | ..."""
    rows = {}
    for line in text.splitlines():
        m = _LLAMA_ROW.match(line.strip())
        if not m:
            continue
        cells = [c.strip() for c in m.group(4).split("|")]
        # N_KV, T_PP, S_PP, T_TG, S_TG, ...
        rows[int(m.group(3))] = (float(cells[2]), float(cells[4]))
    for b in (1, 32):
        if b not in rows:
            raise TableError(f"{path}: no row for B = {b} in its table")
    return {"prefill": rows[1][0], "b1": rows[1][1], "b32": rows[32][1]}


def run(cmd, what):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise TableError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}")
    return p.stdout


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def spread(xs):
    m = statistics.median(xs)
    return 100.0 * (max(xs) - min(xs)) / m if m > 0 else 0.0


def calib_when(ceil, threads):
    if ceil["measured_at"]:
        return str(ceil["measured_at"])
    if ceil["calibrated_now"]:
        return "measured by the first bench of this run"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    f = os.path.join(cache, "margin", f"calib-{threads}.json")
    try:
        with open(f) as fh:
            at = json.load(fh).get("measured_at")
        if at:
            return f"{at} (from {f})"
    except (OSError, ValueError):
        pass
    return "not recorded (a cached calibration)"


def l3_size():
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            return f.read().strip()
    except OSError:
        return None


# ---- the table ----

def fmt_tok(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def split_type(t):
    """'q8_0:fast' -> ('q8_0', ['--arith', 'fast']); 'q8_0' -> ('q8_0', [])."""
    base, sep, arith = t.partition(":")
    if not sep:
        return t, []
    if arith not in ("fast", "llama") or not base:
        raise TableError(f"--types {t}: TYPE or TYPE:fast")
    return base, ["--arith", arith]


def build_result(args, machine, files, llama_used, load):
    ceil = ceilings(machine)
    rows = []
    for t, info in files.items():
        quantized = split_type(t)[0] not in FLOAT_TYPES
        fc = file_ceilings(info["cost"], ceil, quantized, args.prompt_len)
        row = {"type": t, "file": info["path"], "cost": info["cost"], "figures": {}}
        for key in ("prefill", "b1", "b32"):
            xs = [r[key] for r in info["runs"]]
            med = statistics.median(xs)
            roof, bound = fc[key]
            row["figures"][key] = {"tok_s": med, "runs": xs, "spread_pct": spread(xs),
                                   "ceiling_tok_s": roof, "bound": bound,
                                   "pct": 100.0 * med / roof}
        xs = [r["prefill_b32"] for r in info["runs"]]
        row["figures"]["prefill_b32"] = {"tok_s": statistics.median(xs), "runs": xs}
        if info.get("llama"):
            row["llama_cpp"] = {k: statistics.median([r[k] for r in info["llama"]])
                                for k in ("prefill", "b1", "b32")}
        rows.append(row)
    return {"arch": args.arch, "threads": args.threads, "prompt_len": args.prompt_len,
            "gen_len": args.gen_len, "reps": args.reps, "host": socket.gethostname(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "load_before": load[0], "load_after": load[1],
            "llama_cpp": llama_used, "machine": machine,
            "ceilings": {"f32": {"value": ceil["f32"][0], "label": ceil["f32"][1],
                                 "unit": ceil["f32"][2]},
                         "quantized": {"value": ceil["int8"][0], "label": ceil["int8"][1],
                                       "unit": ceil["int8"][2]},
                         "sgemm_label": ceil["sgemm_label"],
                         "bandwidth_gbs": ceil["bandwidth_gbs"],
                         "sgemm_gflops": ceil["sgemm_gflops"],
                         "measured_at": calib_when(ceil, args.threads),
                         "spread_pct": ceil["spread_pct"],
                         "reliable": ceil["reliable"], "tries": ceil["tries"]},
            "files": rows}


def render(res):
    c = res["ceilings"]
    lines = [f"{res['arch']}, {res['threads']} threads, prompt {res['prompt_len']}, "
             f"gen {res['gen_len']}: medians of {res['reps']} alternating repetitions "
             f"(host {res['host']}, {res['date']}, load {res['load_before']:.2f} before, "
             f"{res['load_after']:.2f} after)", ""]
    head = f"| file | prefill {res['prompt_len']} tok/s | decode b1 tok/s | decode b32 tok/s |"
    sep = "|---|---|---|---|"
    if res["llama_cpp"]:
        head += " llama.cpp: prefill / b1 / b32 |"
        sep += "---|"
    lines += [head, sep]
    over = set()
    for row in res["files"]:
        cost = row["cost"]
        cells = [f"{row['type'].upper()} ({cost['bytes_per_token'] / 1e6:.1f} MB/token)"]
        for key in ("prefill", "b1", "b32"):
            f = row["figures"][key]
            cells.append(f"{fmt_tok(f['tok_s'])} ({f['pct']:.0f}% of {fmt_tok(f['ceiling_tok_s'])}, "
                         f"{'bandwidth' if f['bound'] == 'read bandwidth' else 'compute'}; "
                         f"spread {f['spread_pct']:.0f}%)")
            if f["pct"] > 100:
                over.add((key, f["bound"]))
        if res["llama_cpp"]:
            lc = row.get("llama_cpp")
            cells.append(" / ".join(fmt_tok(lc[k]) for k in ("prefill", "b1", "b32")) if lc else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"ceilings ({res['threads']} threads): f32 compute {c['f32']['value']:.1f} "
                 f"{c['f32'].get('unit', 'GFLOP/s')} ({c['f32']['label']}); quantized compute "
                 f"{c['quantized']['value']:.1f} {c['quantized'].get('unit', 'GFLOP/s')} "
                 f"({c['quantized']['label']}); read bandwidth {c['bandwidth_gbs']:.1f} GB/s"
                 + (f"; {c.get('sgemm_label', 'sgemm (OpenBLAS)')} {c['sgemm_gflops']:.1f} GFLOP/s"
                    if c["sgemm_gflops"] else ""))
    lines.append(f"measured: {c['measured_at']}"
                 + (f", spread {c['spread_pct']:.0f}%" if c["spread_pct"] is not None else "")
                 + ("" if c.get("reliable", True) else
                    f" (above 10% in each of {c.get('tries') or '?'} tries: the machine was busy while it was "
                    "calibrated; these ceilings are unreliable and were not saved)"))
    for row in res["files"]:
        cost = row["cost"]
        mix = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(cost["bytes_by_type"].items()))
        lines.append(f"{row['type'].upper()}: {cost['params_per_token'] / 1e6:.1f}M weights a token "
                     f"(classifier {cost['classifier_params'] / 1e6:.1f}M), MB by type: {mix}")
    lines.append("ceiling: prefill = compute / FLOPs per prompt token (classifier on the last "
                 "token only); decode at B = min(compute / (2 x weights), B x bandwidth / bytes); "
                 "spread = (max - min) / median over the repetitions")
    notes = {}
    for key, bound in over:
        if bound == "read bandwidth":
            l3 = l3_size()
            why = (f"part of the weights stays in the caches between steps"
                   f"{' (L3 ' + l3 + ')' if l3 else ''}, so less than a whole pass comes from "
                   f"memory, or the read bandwidth was calibrated on a busy machine")
        elif "not the FMA peak" in bound:
            why = "the ceiling is OpenBLAS's sgemm, not the machine's FMA peak"
        else:
            why = "the compute ceiling was measured too low (a busy machine when calibrating?)"
        notes.setdefault(why, set()).add(key)
    order = ("prefill", "b1", "b32")
    for why, keys in sorted(notes.items()):
        lines.append(f"over 100% ({', '.join(k for k in order if k in keys)}): {why}")
    if res["llama_cpp"]:
        lines.append(f"llama.cpp: {res['llama_cpp']} -npp {res['prompt_len']} -ntg {res['gen_len']} "
                     f"-npl 1,32 -t {res['threads']} on the same files, in the same rotation")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="margin-worker bench on one shape in F32, Q8_0 and Q4_K_M beside the "
                    "calibrated ceilings (see the header of this script for the formulas)")
    ap.add_argument("--arch", default="llama-110m", help="synthetic preset (margin-worker synth --list)")
    ap.add_argument("--types", default="f32,q8_0,q4_k_m", help="synth --type mixes, comma-separated")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--dir", help="where the model files go (kept; existing files are reused)")
    ap.add_argument("--out", help="write kernels-table.txt, kernels-table.json and the raw runs here")
    ap.add_argument("--worker", default=os.environ.get("MARGIN_WORKER",
                                                       os.path.join(ROOT, "build/worker/margin-worker")))
    ap.add_argument("--llama-bench", default=None,
                    help=f"llama-batched-bench to run alongside (default {LLAMA_DEFAULT} if it exists; "
                         "'none' to skip)")
    ap.add_argument("--recalibrate", action="store_true", help="measure the machine again first")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--from", dest="from_json", metavar="FILE",
                    help="print the table of a kernels-table.json written by --out; runs nothing")
    args = ap.parse_args(argv)

    if args.from_json:
        try:
            with open(args.from_json) as fh:
                res = json.load(fh)
            sys.stdout.write(json.dumps(res) + "\n" if args.json else render(res))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TableError(f"--from {args.from_json}: not a kernels-table.json ({e!r})")
        return 0

    if args.reps < 1 or args.threads < 1 or args.prompt_len < 1 or args.gen_len < 1:
        ap.error("--reps, --threads, --prompt-len and --gen-len must be at least 1")
    if not os.access(args.worker, os.X_OK):
        ap.error(f"--worker {args.worker}: not an executable; build first (ninja -C build worker/margin-worker)")
    llama = args.llama_bench
    if llama is None:
        llama = LLAMA_DEFAULT if os.access(LLAMA_DEFAULT, os.X_OK) else None
        if llama is None:
            print(f"kernels-table: {LLAMA_DEFAULT} not found, no llama.cpp column", file=sys.stderr)
    elif llama == "none":
        llama = None
    elif not os.access(llama, os.X_OK):
        ap.error(f"--llama-bench {llama}: not an executable")
    types = [t.strip().lower() for t in args.types.split(",") if t.strip()]
    if not types:
        ap.error("--types: no type given")
    for t in types:
        try:
            split_type(t)
        except TableError as e:
            ap.error(str(e))

    tmp = None
    try:
        d = args.dir
        if d is None:
            tmp = d = tempfile.mkdtemp(prefix="kernels-table-")
        os.makedirs(d, exist_ok=True)
        if args.out:
            os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
        files = {}
        for t in types:
            base, extra = split_type(t)
            path = os.path.join(d, f"{args.arch}-{base}.gguf")
            if not os.path.exists(path):
                print(f"kernels-table: synth --arch {args.arch} --type {base}", file=sys.stderr)
                run([args.worker, "synth", "--arch", args.arch, "--type", base, "-o", path],
                    f"margin-worker synth --type {base}")
            files[t] = {"path": path, "cost": model_cost(gguf_tensors(path), path),
                        "runs": [], "llama": [], "extra": extra}
        load0 = loadavg()
        machine = None
        recal = ["--recalibrate"] if args.recalibrate else []
        for rep in range(args.reps):
            for t in types:
                f = files[t]
                print(f"kernels-table: round {rep + 1}/{args.reps}: {t} (load {loadavg():.2f})",
                      file=sys.stderr)
                cmd = [args.worker, "bench", "--model", f["path"], "--batch", "1,32",
                       "--prompt-len", str(args.prompt_len), "--gen-len", str(args.gen_len),
                       "--threads", str(args.threads), "--reps", "1", "--json"] + f["extra"] + recal
                recal = []
                out = run(cmd, f"margin-worker bench ({t})")
                try:
                    doc = json.loads(out)
                except ValueError as e:
                    raise TableError(f"margin-worker bench ({t}): output is not JSON: {e}")
                if args.out:
                    with open(os.path.join(args.out, "runs", f"{t.replace(':', '-')}-{rep + 1}.json"), "w") as fh:
                        fh.write(out)
                if machine is None:
                    machine = doc.get("machine") or {}
                f["runs"].append(bench_figures(doc, f"margin-worker bench ({t})"))
                if llama and not f["extra"]:
                    lout = run([llama, "-m", f["path"], "-npp", str(args.prompt_len),
                                "-ntg", str(args.gen_len), "-npl", "1,32", "-t", str(args.threads),
                                "-c", str(32 * (args.prompt_len + args.gen_len))],
                               f"llama-batched-bench ({t})")
                    if args.out:
                        with open(os.path.join(args.out, "runs", f"{t.replace(':', '-')}-{rep + 1}.llama.txt"),
                                  "w") as fh:
                            fh.write(lout)
                    f["llama"].append(llama_figures(lout, f"llama-batched-bench ({t})"))
        res = build_result(args, machine, files, llama, (load0, loadavg()))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    text = render(res)
    if args.out:
        with open(os.path.join(args.out, "kernels-table.txt"), "w") as fh:
            fh.write(text)
        with open(os.path.join(args.out, "kernels-table.json"), "w") as fh:
            json.dump(res, fh, indent=1)
            fh.write("\n")
    if args.json:
        json.dump(res, sys.stdout)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TableError as e:
        print(f"kernels-table: {e}", file=sys.stderr)
        sys.exit(1)
