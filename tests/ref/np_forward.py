#!/usr/bin/env python3
"""An independent float64 forward pass of llama / qwen2 / qwen3 GGUF models.

    np_forward.py MODEL.gguf --tokens 1,2,3 [--ablate FEATURE ...]

prints {"logits": [[...] per position]} as JSON. It shares nothing with
margin's C code: the GGUF file is parsed here (F32, F16 and Q8_0 tensors), and the
model is written from the published definitions (llama.cpp's graphs in
src/models/{llama,qwen2,qwen3}.cpp, ggml's rope, HF's Llama / Qwen code):

  x = token_embd[tok]
  per layer:  h = rmsnorm(x) * attn_norm
              q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
              qwen3: q, k = rmsnorm(q_head) * q_norm, rmsnorm(k_head) * k_norm
              q, k = rope(q), rope(k)        angle = p * freq_scale * base^(-2i/d) / ff[i]
              a = softmax(q k^T / sqrt(hd), causal; window W: key j seen by
                  query p iff p - j < W) v   (GQA: head h uses kv head h // group)
              x += a Wo^T
              h = rmsnorm(x) * ffn_norm;  x += (silu(h Wg^T) * (h Wu^T)) Wd^T
  logits = (rmsnorm(x) * output_norm) Wout^T   (Wout = token_embd when absent)

"normal" RoPE (llama) rotates pairs (2i, 2i+1), "neox" (qwen2, qwen3) pairs
(i, i + d/2). RoPE scaling as llama.cpp reads it: freq_scale = 1/factor for
linear scaling (a type key missing with a factor present means linear),
1 for "none"; rope_freqs.weight holds per-frequency divisors ff.

--ablate turns a feature off to show it matters: rope_freqs (ignore the
tensor), rope_scale (freq_scale = 1), window (full attention), qk_norm (skip
the q/k head norms).

By default every product is float64 on the exactly widened weights: the
model the file describes. Two options give instead the arithmetic that
llama.cpp (and margin's default `weights = auto`, `kv = f16`) runs,
written from its definition (ggml's quantize_row_q8_0 / vec_dot_q8_0_q8_0
and its f16-cache attention; docs/kernels.md sections 6 and 8):

  --acts q8_0   a Q8_0 matrix multiplies activations quantized per block of
                32: d = f16(amax / 127), q = round-half-even(x * 127 / amax);
                per block the exact integer sum of q_w * q_a times d_w * d_a
  --kv f16      q, k and v rounded to halves after RoPE, the softmax
                probabilities rounded to halves before they weight v

Needs only Python 3 and numpy (Debian python3-numpy).
"""
import json
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- GGUF --

_SCALARS = {  # value type -> struct format
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}


class Gguf:
    """The metadata (dict) and tensors (name -> float64 array, numpy shape
    (ne[n-1], ..., ne[0])) of a GGUF v2/v3 file."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.off = 0
        if self._take(4) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        version = self._u32()
        if version not in (2, 3):
            raise ValueError("%s: GGUF version %d" % (path, version))
        n_tensors = self._u64()
        n_kv = self._u64()
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u32())
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            n_dims = self._u32()
            ne = [self._u64() for _ in range(n_dims)]
            ttype = self._u32()
            offset = self._u64()
            infos.append((name, ne, ttype, offset))
        align = self.kv.get("general.alignment", 32)
        data = (self.off + align - 1) // align * align
        self.tensors = {}
        self.q8_0 = {}
        for name, ne, ttype, offset in infos:
            count = int(np.prod(ne))
            if ttype == 8:
                # Q8_0 (ggml): blocks of 32 values along ne[0], each an f16
                # scale d then 32 int8 q; the value is d * q
                blk = np.dtype([("d", "<f2"), ("q", "i1", (32,))])
                b = np.frombuffer(self.buf, dtype=blk, count=count // 32, offset=data + offset)
                a = b["d"].astype(np.float64)[:, None] * b["q"].astype(np.float64)
                self.tensors[name] = a.reshape(list(reversed(ne)))
                if len(ne) == 2:
                    # the blocks themselves too, for the integer products:
                    # d [rows, blocks], q [rows, blocks, 32]
                    nb = ne[0] // 32
                    self.q8_0[name] = (b["d"].astype(np.float64).reshape(ne[1], nb),
                                       b["q"].astype(np.float64).reshape(ne[1], nb, 32))
                continue
            if ttype == 0:
                dt = np.dtype("<f4")
            elif ttype == 1:
                dt = np.dtype("<f2")
            else:
                raise ValueError("tensor %s: type %d (this reference reads F32, F16 and Q8_0)" % (name, ttype))
            a = np.frombuffer(self.buf, dtype=dt, count=count, offset=data + offset)
            self.tensors[name] = a.astype(np.float64).reshape(list(reversed(ne)))

    def _take(self, n):
        b = self.buf[self.off:self.off + n]
        if len(b) != n:
            raise ValueError("truncated GGUF")
        self.off += n
        return b

    def _u32(self):
        return struct.unpack("<I", self._take(4))[0]

    def _u64(self):
        return struct.unpack("<Q", self._take(8))[0]

    def _str(self):
        return self._take(self._u64()).decode("utf-8")

    def _value(self, vtype):
        if vtype == 8:
            return self._str()
        if vtype == 9:
            etype = self._u32()
            return [self._value(etype) for _ in range(self._u64())]
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]


# --------------------------------------------------------------- model --

def _half(a):
    """a rounded to the nearest half-precision value (ties to even)."""
    return a.astype(np.float16).astype(np.float64)


ARCHS = {  # arch -> (neox rope, default rms eps, q/k head norms)
    "llama": (False, 1e-5, False),
    "qwen2": (True, 1e-6, False),
    "qwen3": (True, 1e-6, True),
}


class Model:
    def __init__(self, path):
        g = Gguf(path)
        kv, t = g.kv, g.tensors
        self.t = t
        self.q8_0 = g.q8_0
        arch = kv["general.architecture"]
        if arch not in ARCHS:
            raise ValueError("architecture %s" % arch)
        self.arch = arch
        self.neox, eps, self.qk_norm = ARCHS[arch]

        def key(suffix, default=None):
            return kv.get("%s.%s" % (arch, suffix), default)

        self.dim = key("embedding_length")
        self.n_layers = key("block_count")
        self.n_heads = key("attention.head_count")
        self.n_kv = key("attention.head_count_kv", self.n_heads)
        self.hd = key("attention.key_length", self.dim // self.n_heads)
        self.rope_dim = key("rope.dimension_count", self.hd)
        self.base = key("rope.freq_base", 10000.0)
        self.eps = key("attention.layer_norm_rms_epsilon", eps)
        # llama.cpp: factor from rope.scaling.factor (or rope.scale_linear),
        # the type defaults to linear, "none" never scales
        factor = key("rope.scaling.factor", 0.0) or key("rope.scale_linear", 0.0)
        stype = key("rope.scaling.type", "linear")
        if stype not in ("none", "linear", "llama3"):
            raise ValueError("rope scaling %s" % stype)
        self.freq_scale = 1.0 / factor if (factor and stype == "linear") else 1.0
        self.ff = t.get("rope_freqs.weight")
        self.window = key("attention.sliding_window", 0) if arch == "llama" else 0
        self.out = t["output.weight"] if "output.weight" in t else t["token_embd.weight"]

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def matmul(self, h, name, acts):
        """h [T, K] times the matrix `name` transposed. acts "f64": the
        weights widened, float64 products. acts "q8_0": the integer
        arithmetic llama.cpp (and margin's default weights) use for a Q8_0
        matrix, written from its definition (ggml's quantize_row_q8_0 and
        vec_dot_q8_0_q8_0): each row of h is quantized per block of 32
        values to d = f16(amax / 127), q = round-half-even(x * 127 / amax)
        (q = 0 where amax = 0); a weight block and an activation block give
        the exact integer sum of q_w * q_a, scaled by d_w * d_a and summed
        over the blocks (here in float64: the f32 rounding of the scaling
        is 2^-24 relative, far below what the tests resolve). Matrices not
        stored as Q8_0 blocks are multiplied in float64 either way.
        acts "q8_0-wrong-scale" is the same with 120 in place of 127 (a
        coarser grid), for tests that show the definition matters."""
        if acts == "f64" or name not in self.q8_0:
            return h @ self.t[name].T
        dw, qw = self.q8_0[name]                        # [N, nb], [N, nb, 32]
        T, K = h.shape
        nb = K // 32
        x = h.reshape(T, nb, 32)
        amax = np.abs(x).max(axis=2)                    # [T, nb]
        top = 120.0 if acts == "q8_0-wrong-scale" else 127.0
        da = _half(amax / top)
        inv = np.divide(top, amax, out=np.zeros_like(amax), where=amax > 0)
        qa = np.rint(x * inv[:, :, None])               # half to even
        # integer sums per block, [nb, T, N]: below 2^20, exact in float64
        isum = np.matmul(qa.transpose(1, 0, 2), qw.transpose(1, 2, 0))
        return np.einsum("btn,bt,bn->tn", isum, da.T, dw.T)

    def rope(self, x, pos, ablate):
        """x [T, heads, hd], rotated in place of its first rope_dim dims."""
        d = self.rope_dim
        i = np.arange(d // 2, dtype=np.float64)
        fs = 1.0 if "rope_scale" in ablate else self.freq_scale
        theta = fs * self.base ** (-2.0 * i / d)
        if self.ff is not None and "rope_freqs" not in ablate:
            theta = theta / self.ff
        ang = pos[:, None].astype(np.float64) * theta[None, :]  # [T, d/2]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        if self.neox:
            a, b = x[:, :, :d // 2], x[:, :, d // 2:d]
            y[:, :, :d // 2] = a * c - b * s
            y[:, :, d // 2:d] = a * s + b * c
        else:
            a, b = x[:, :, 0:d:2], x[:, :, 1:d:2]
            y[:, :, 0:d:2] = a * c - b * s
            y[:, :, 1:d:2] = a * s + b * c
        return y

    def forward(self, tokens, ablate=(), acts="f64", kv="f64"):
        """The logits of every position [T, vocab] (the head in float64)."""
        return self.hidden(tokens, ablate, acts, kv) @ self.out.T

    def hidden(self, tokens, ablate=(), acts="f64", kv="f64"):
        """The final hidden states [T, dim]: after the output norm, what
        feeds the output head (llama.cpp's embeddings, before pooling).
        acts: how the projections multiply (matmul). kv "f16": ggml's
        arithmetic over an f16 cache, which converts both operands of its
        products to half: q, k and v rounded to halves after RoPE, the
        softmax probabilities rounded to halves before they weight v."""
        t = self.t
        T = len(tokens)
        pos = np.arange(T)
        x = t["token_embd.weight"][np.asarray(tokens)]
        group = self.n_heads // self.n_kv
        # mask[p, j]: query p sees key j
        seen = pos[None, :] <= pos[:, None]
        if self.window > 0 and "window" not in ablate:
            seen &= (pos[:, None] - pos[None, :]) < self.window
        for l in range(self.n_layers):
            b = "blk.%d." % l
            h = self.rmsnorm(x, t[b + "attn_norm.weight"])
            q = self.matmul(h, b + "attn_q.weight", acts)
            k = self.matmul(h, b + "attn_k.weight", acts)
            v = self.matmul(h, b + "attn_v.weight", acts)
            if b + "attn_q.bias" in t:
                q = q + t[b + "attn_q.bias"]
                k = k + t[b + "attn_k.bias"]
                v = v + t[b + "attn_v.bias"]
            q = q.reshape(T, self.n_heads, self.hd)
            k = k.reshape(T, self.n_kv, self.hd)
            v = v.reshape(T, self.n_kv, self.hd)
            if self.qk_norm and "qk_norm" not in ablate:
                q = self.rmsnorm(q, t[b + "attn_q_norm.weight"])
                k = self.rmsnorm(k, t[b + "attn_k_norm.weight"])
            q = self.rope(q, pos, ablate)
            k = self.rope(k, pos, ablate)
            if kv == "f16":
                q, k, v = _half(q), _half(k), _half(v)
            att = np.empty((T, self.n_heads, self.hd))
            for hh in range(self.n_heads):
                g = hh // group
                s = (q[:, hh, :] @ k[:, g, :].T) / np.sqrt(self.hd)
                s = np.where(seen, s, -np.inf)
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s = s / s.sum(axis=1, keepdims=True)
                if kv == "f16":
                    s = _half(s)
                att[:, hh, :] = s @ v[:, g, :]
            x = x + self.matmul(att.reshape(T, self.n_heads * self.hd), b + "attn_output.weight", acts)
            h = self.rmsnorm(x, t[b + "ffn_norm.weight"])
            gate = self.matmul(h, b + "ffn_gate.weight", acts)
            up = self.matmul(h, b + "ffn_up.weight", acts)
            x = x + self.matmul(gate / (1.0 + np.exp(-gate)) * up, b + "ffn_down.weight", acts)
        return self.rmsnorm(x, t["output_norm.weight"])


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--ablate", action="append", default=[],
                    choices=["rope_freqs", "rope_scale", "window", "qk_norm"])
    ap.add_argument("--acts", default="f64", choices=["f64", "q8_0"])
    ap.add_argument("--kv", default="f64", choices=["f64", "f16"])
    a = ap.parse_args(argv)
    m = Model(a.model)
    logits = m.forward([int(x) for x in a.tokens.split(",")], set(a.ablate), a.acts, a.kv)
    json.dump({"logits": logits.tolist()}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
