#!/usr/bin/env python3
"""margin's forward pass against an independent float64 numpy forward
(np_forward.py), one synthetic model per architecture feature.

    test_ref.py [PRESET ...]        (default: every case below)

For each case: `margin-worker synth --arch PRESET` writes the model as an
F32 GGUF into a temporary directory; dump_logits (margin's model_load and
model_forward) gives the logits of every position of a token sequence, all
in one step and token by token; np_forward.py reads the same file with its
own GGUF parser and computes them in float64. Asserted:

  - one step and token by token give the same bits (batch invariance);
  - max |margin - numpy| < TOL over every position and vocabulary entry
    (f32 kernels against float64: a few 1e-5 measured);
  - the feature matters: numpy with the feature turned off (ABLATE) differs
    from margin by more than MATTERS, far past TOL, so the old code, which
    lacked the feature, fails the first check.

Programs come from $MARGIN_WORKER and $DUMP_LOGITS (meson sets them). Exit
1 (failed) when numpy is missing: deploy/install-deps.sh installs python3-numpy
(deploy/install-deps.sh does). Nothing is timed.
"""
import json
import os
import subprocess
import sys
import tempfile

TOL = 1e-3
MATTERS = 0.05

# preset, sequence length, feature turned off to show it matters (None: a
# control without new features), what the case exercises
CASES = [
    ("tiny", 40, None, "llama control: normal rope, GQA 4/2, untied output"),
    ("tiny-qwen2", 40, None, "qwen2 control: neox rope, q/k/v biases, tied output"),
    # Llama 3's factors act on the slow frequencies: visible only after a
    # few hundred positions
    ("llama3-tiny", 320, "rope_freqs", "Llama 3.1 rope_freqs (factor 8, base 500000)"),
    ("llama-linear-tiny", 40, "rope_scale", "linear RoPE scaling, factor 4"),
    ("mistral-tiny", 40, "window", "sliding window of 8, crossed from position 8 on"),
    ("qwen3-tiny", 40, "qk_norm", "qwen3: q/k head norms, head_dim 32 != dim/heads, tied"),
]


def tokens(n, vocab, seed):
    """BOS, then a deterministic spread of ids over the vocabulary."""
    out, x = [1], seed
    for _ in range(n - 1):
        x = (x * 1103515245 + 12345) % (1 << 31)
        out.append(3 + x % (vocab - 3))
    return out


def main(argv):
    try:
        import numpy as np
    except ImportError:
        print("FAIL: numpy is not installed for %s (Debian: python3-numpy; deploy/install-deps.sh installs it)" % sys.executable)
        return 1
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import np_forward

    worker = os.environ.get("MARGIN_WORKER")
    dump = os.environ.get("DUMP_LOGITS")
    if not worker or not dump:
        print("FAIL: set MARGIN_WORKER and DUMP_LOGITS (meson test does)")
        return 1
    cases = [c for c in CASES if not argv or c[0] in argv]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="margin-ref-") as tmp:
        for preset, n, ablate, what in cases:
            path = os.path.join(tmp, preset + ".gguf")
            subprocess.run([worker, "synth", "--arch", preset, "-o", path], check=True)
            model = np_forward.Model(path)
            vocab = model.out.shape[0]
            ids = tokens(n, vocab, seed=len(preset))
            r = subprocess.run([dump, path, ",".join(map(str, ids))], check=True,
                               stdout=subprocess.PIPE)
            got = json.loads(r.stdout)
            batch = np.array(got["batch"], dtype=np.float32)
            step = np.array(got["stepwise"], dtype=np.float32)
            ref = model.forward(ids)
            problems = []
            if batch.shape != ref.shape:
                problems.append("shape %s, numpy %s" % (batch.shape, ref.shape))
            elif not np.array_equal(batch.view(np.uint32), step.view(np.uint32)):
                problems.append("one step and token by token differ (batch invariance)")
            diff = float(np.max(np.abs(batch.astype(np.float64) - ref))) if not problems else float("inf")
            worst = int(np.argmax(np.max(np.abs(batch - ref), axis=1))) if not problems else -1
            if not diff < TOL:
                problems.append("max |margin - numpy| = %.3g at position %d, over %g" % (diff, worst, TOL))
            line = "%-18s %3d positions  max|margin-numpy| %.2e" % (preset, n, diff)
            if ablate:
                off = float(np.max(np.abs(batch.astype(np.float64) - model.forward(ids, {ablate}))))
                line += "  without %s: %.3g" % (ablate, off)
                if not off > MATTERS:
                    problems.append("without %s numpy differs by only %.3g: the case does not "
                                    "show the feature" % (ablate, off))
            print(line + "  (" + what + ")")
            for p in problems:
                print("FAIL %s: %s" % (preset, p))
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
