#!/usr/bin/env python3
"""margin's embeddings against an independent numpy forward (np_forward.py)
of the same GGUF file.

    test_embed_ref.py [MODEL.gguf]   (default: $MARGIN_SHARED_DIR/models/stories15M-q8_0.gguf)

`margin-worker embed --json` embeds a handful of texts of 1 to ~110 tokens,
all at once (they share the engine's steps, as in a worker), with mean and
with last pooling, whole and cut to 64 dimensions. np_forward.py reads the
file with its own GGUF parser, runs the same token ids (the ones margin
reports) and pools its final hidden states (after the output norm) the same
way: the mean or the last position's state, the first N values,
L2-normalized. Each run (RUNS below) pairs margin's --weights with the
numpy arithmetic that describes it:

  - q8_0-panels (the file's Q8_0 blocks widened exactly) against the
    float64 forward: cosine >= 0.99999 on every text;
  - auto (the default: activations quantized to Q8_0 per block of 32 and
    multiplied in integers, over the f16 cache's half arithmetic) against
    numpy's emulation of that arithmetic (np_forward --acts q8_0 --kv f16):
    on the prefixes of one sentence, cosine >= 0.99999, and the float64
    forward and an emulation with a wrong activation scale both fall below
    0.99999 on each of them (so the integer arithmetic is what is checked);
  - auto against the same emulation on the texts: >= 0.999 only. The
    default path rounds every activation to int8 and every query and
    attention weight to a half; float64 and margin's f32 round a value
    lying within ~1e-7 of a rounding boundary differently, and this model
    amplifies one such flipped rounding into 2e-5 to 1e-4 of cosine
    (docs/models.md "Fidelity"). The sentence's prefixes pass no boundary
    that close; the longer texts do.

Asserted per input and pooling: the run's bound; margin's vector has L2
norm 1 within 1e-6; the check can fail: the numpy vector of another
pooling, or of the neighbouring input, is below MIN_COS (so a margin that
pooled the wrong positions, or mixed inputs up, fails). The worst cosine of
each run, and of auto against the float64 forward, is printed.

$MARGIN_WORKER names the program (meson sets it). Exit 1 when numpy is
missing. Nothing is timed.
"""
import json
import os
import subprocess
import sys

MIN_COS = 0.99999

TEXTS = [
    "Once upon a time",
    "",
    "The cat sat on the mat. It was a sunny day and the cat was happy.",
    "Lily wanted to play with her ball in the park, but it started to rain. " * 6,
    "Tom and his dog ran to the big tree. They saw a bird.",
]

# its prefixes (1 to 11 tokens) are the inputs of the "prefixes" run
SENTENCE = "Once upon a time, there was a little girl"

F64 = ("f64", "f64")                    # np_forward's arithmetic: (acts, kv)
INT = ("q8_0", "f16")                   # the default path's
WRONG = ("q8_0-wrong-scale", "f16")     # with 120 for 127: must fail

# name, --weights, inputs, numpy arithmetic, bound, arithmetics that must
# fall below MIN_COS on every input (the check discriminates)
RUNS = [
    ("panels", "q8_0-panels", "texts", F64, MIN_COS, []),
    ("prefixes", "auto", "prefixes", INT, MIN_COS, [F64, WRONG]),
    ("texts", "auto", "texts", INT, 0.999, []),
]


def cosine(np, got, ref):
    return float(got @ ref / np.linalg.norm(got))


def main(argv):
    try:
        import numpy as np
    except ImportError:
        print("FAIL: numpy is not installed for %s (Debian: python3-numpy; deploy/install-deps.sh installs it)"
              % sys.executable)
        return 1
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import np_forward

    worker = os.environ.get("MARGIN_WORKER")
    if not worker:
        print("FAIL: set MARGIN_WORKER (meson test does)")
        return 1
    shared = os.environ.get("MARGIN_SHARED_DIR") or os.path.join(here, "..", "..", "..", "shared")
    path = argv[0] if argv else os.path.join(shared, "models", "stories15M-q8_0.gguf")
    model = np_forward.Model(path)
    r = subprocess.run([worker, "embed", "--model", path, "--json", SENTENCE], check=True, stdout=subprocess.PIPE)
    ids = json.loads(r.stdout)["tokens"]
    inputs = {"texts": ([], TEXTS),
              "prefixes": (["--ids"], [",".join(str(t) for t in ids[:n]) for n in range(1, len(ids) + 1)])}
    hidden = {}

    def pooled(toks, arith, pooling, dims):
        key = (tuple(toks), arith)
        if key not in hidden:
            hidden[key] = model.hidden(toks, acts=arith[0], kv=arith[1])
        h = hidden[key]
        x = h.mean(axis=0) if pooling == "mean" else h[-1]
        x = x[:dims] if dims else x
        return x / np.linalg.norm(x)

    failed = 0
    worst = {}
    for name, weights, which, arith, bound, must_fail in RUNS:
        for pooling, dims in [(p, d) for p in ("mean", "last") for d in (0, 64)]:
            flags, ins = inputs[which]
            cmd = [worker, "embed", "--model", path, "--pooling", pooling, "--json", "--weights", weights,
                   "--slots", "3", "--prefill-chunk", "16"] + flags
            if dims:
                cmd += ["--dimensions", str(dims)]
            r = subprocess.run(cmd + ins, check=True, stdout=subprocess.PIPE)
            outs = [json.loads(line) for line in r.stdout.decode().splitlines()]
            if len(outs) != len(ins):
                print("FAIL: %d outputs for %d inputs" % (len(outs), len(ins)))
                return 1
            other = "last" if pooling == "mean" else "mean"
            run_worst = 2.0
            for i, o in enumerate(outs):
                got = np.array(o["embedding"], dtype=np.float64)
                ref = pooled(o["tokens"], arith, pooling, dims)
                what = "%s (weights=%s) %s dims=%s input %d (%d tokens)" % (name, weights, pooling, dims or "all",
                                                                           i, len(o["tokens"]))
                problems = []
                if got.shape != ref.shape:
                    print("FAIL %s: %d values, numpy %d" % (what, got.size, ref.size))
                    failed += 1
                    continue
                norm = float(np.linalg.norm(got))
                cos = cosine(np, got, ref)
                if abs(norm - 1.0) > 1e-6:
                    problems.append("L2 norm %.9f, not 1" % norm)
                if not cos >= bound:
                    problems.append("cosine %.9f < %g" % (cos, bound))
                # the check discriminates: another pooling, another input,
                # another arithmetic
                nxt = outs[(i + 1) % len(outs)]["tokens"]
                if len(o["tokens"]) > 1:
                    c = cosine(np, got, pooled(o["tokens"], arith, other, dims))
                    if not c < MIN_COS:
                        problems.append("the %s pooling's numpy vector is as close (%.9f)" % (other, c))
                c = cosine(np, got, pooled(nxt, arith, pooling, dims))
                if not c < MIN_COS:
                    problems.append("input %d's numpy vector is as close (%.9f)" % ((i + 1) % len(outs), c))
                for a in must_fail:
                    c = cosine(np, got, pooled(o["tokens"], a, pooling, dims))
                    if not c < MIN_COS:
                        problems.append("numpy with acts=%s kv=%s is as close (%.9f)" % (a[0], a[1], c))
                for k, a in (("ref", arith), ("f64", F64)):
                    c = cos if a == arith else cosine(np, got, pooled(o["tokens"], a, pooling, dims))
                    if (name, k) not in worst or c < worst[(name, k)][0]:
                        worst[(name, k)] = (c, what)
                run_worst = min(run_worst, cos)
                for pr in problems:
                    print("FAIL %s: %s" % (what, pr))
                failed += bool(problems)
            print("%-8s weights=%-11s %-4s dims=%-3s %2d inputs: worst cosine %.9f against numpy acts=%s kv=%s" % (
                name, weights, pooling, dims or "all", len(outs), run_worst, arith[0], arith[1]))
    for name, weights, which, arith, bound, _ in RUNS:
        c, what = worst[(name, "ref")]
        print("%s: worst cosine %.9f (1 - cos = %.1e) against numpy acts=%s kv=%s, %s; bound %g" % (
            name, c, 1.0 - c, arith[0], arith[1], what, bound))
        if arith != F64:
            c, what = worst[(name, "f64")]
            print("%s: worst cosine %.9f (1 - cos = %.1e) against the float64 forward, %s" % (name, c, 1.0 - c,
                                                                                             what))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
