#!/usr/bin/env python3
"""margin's embeddings against an independent float64 numpy forward
(np_forward.py) of the same GGUF file.

    test_embed_ref.py [MODEL.gguf]   (default: $MARGIN_SHARED_DIR/models/stories15M-q8_0.gguf)

`margin-worker embed --json` embeds a handful of texts of 1 to ~110 tokens,
all at once (they share the engine's steps, as in a worker), with mean and
with last pooling, whole and cut to 64 dimensions, and with two ways of
multiplying the file's Q8_0 matrices (WEIGHTS below). np_forward.py reads the
file with its own GGUF parser (Q8_0 blocks widened to float64), runs the
same token ids (the ones margin reports) and pools its final hidden states
(after the output norm) the same way: the mean or the last position's
state, the first N values, L2-normalized. Asserted, per input and pooling:

  - cosine(margin, numpy) >= the bound of the weights (0.99999 for the
    exact widening of the file's blocks); the worst one is printed;
  - margin's vector has L2 norm 1 within 1e-6;
  - the check can fail: the numpy vector of another pooling, or of the
    neighbouring input, is far below MIN_COS (so a margin that pooled the
    wrong positions, or mixed inputs up, fails).

$MARGIN_WORKER names the program (meson sets it). Exit 1 when numpy is
missing. Nothing is timed.
"""
import json
import os
import subprocess
import sys

MIN_COS = 0.99999

# --weights, and the cosine it must reach. q8_0-panels keeps the file's
# Q8_0 blocks and widens them exactly: the model the file describes, what
# numpy runs (measured worst 0.99999998, the f16 KV cache's rounding).
# auto multiplies them as llama.cpp does, each activation row quantized to
# Q8_0 too: llama.cpp's numbers, further from float64 (measured worst
# 0.9995 on these inputs), bounded looser.
WEIGHTS = [("q8_0-panels", MIN_COS), ("auto", 0.999)]

TEXTS = [
    "Once upon a time",
    "",
    "The cat sat on the mat. It was a sunny day and the cat was happy.",
    "Lily wanted to play with her ball in the park, but it started to rain. " * 6,
    "Tom and his dog ran to the big tree. They saw a bird.",
]


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
    hidden = {}
    failed = 0
    worst = {w: (2.0, "") for w, _ in WEIGHTS}
    for weights, bound, pooling, dims in [(w, b, p, d) for w, b in WEIGHTS for p in ("mean", "last")
                                          for d in (0, 64)]:
        cmd = [worker, "embed", "--model", path, "--pooling", pooling, "--json", "--weights", weights,
               "--slots", "3", "--prefill-chunk", "16"]
        if dims:
            cmd += ["--dimensions", str(dims)]
        r = subprocess.run(cmd + TEXTS, check=True, stdout=subprocess.PIPE)
        outs = [json.loads(line) for line in r.stdout.decode().splitlines()]
        if len(outs) != len(TEXTS):
            print("FAIL: %d outputs for %d inputs" % (len(outs), len(TEXTS)))
            return 1
        refs = []
        for o in outs:
            ids = o["tokens"]
            key = tuple(ids)
            if key not in hidden:
                hidden[key] = model.hidden(ids)
            h = hidden[key]
            v = {"mean": h.mean(axis=0), "last": h[-1], "other": h[-1] if pooling == "mean" else h.mean(axis=0)}
            for k in v:
                x = v[k][:dims] if dims else v[k]
                v[k] = x / np.linalg.norm(x)
            refs.append(v)
        for i, o in enumerate(outs):
            got = np.array(o["embedding"], dtype=np.float64)
            ref = refs[i][pooling]
            problems = []
            if got.shape != ref.shape:
                problems.append("%d values, numpy %d" % (got.size, ref.size))
                cos = 0.0
            else:
                norm = float(np.linalg.norm(got))
                cos = float(got @ ref / norm)
                if abs(norm - 1.0) > 1e-6:
                    problems.append("L2 norm %.9f, not 1" % norm)
                if not cos >= bound:
                    problems.append("cosine %.7f < %g" % (cos, bound))
                # the check discriminates: another pooling, another input
                other = float(got @ refs[i]["other"] / norm)
                nb = float(got @ refs[(i + 1) % len(refs)][pooling] / norm)
                if len(o["tokens"]) > 1 and not other < MIN_COS:
                    problems.append("the other pooling's numpy vector is as close (%.7f)" % other)
                if not nb < MIN_COS:
                    problems.append("input %d's numpy vector is as close (%.7f)" % ((i + 1) % len(refs), nb))
            what = "weights=%s %s dims=%s input %d (%d tokens)" % (weights, pooling, dims or "all", i,
                                                                  len(o["tokens"]))
            if cos < worst[weights][0]:
                worst[weights] = (cos, what)
            for p in problems:
                print("FAIL %s: %s" % (what, p))
            failed += bool(problems)
        print("weights=%-11s %-5s dims=%-3s %d inputs: worst cosine %.9f" % (
            weights, pooling, dims or "all", len(outs),
            min(float(np.array(o["embedding"]) @ refs[i][pooling] / np.linalg.norm(o["embedding"]))
                for i, o in enumerate(outs))))
    for weights, bound in WEIGHTS:
        print("weights=%s: worst cosine %.9f (%s), bound %g" % (weights, worst[weights][0], worst[weights][1], bound))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
