#!/usr/bin/env python3
"""Checks of bench/kernels-table.py's arithmetic and parsing (no timing, no
model run): /usr/bin/python3 bench/test_kernels_table.py"""

import importlib.util
import json
import os
import struct
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("kernels_table", os.path.join(HERE, "kernels-table.py"))
kt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kt)

# A bench --json of today's main (machine: sgemm and bandwidth only), as
# margin-worker bench printed it for llama-110m F32, figures rounded.
OLD_BENCH = json.loads(
    '{"hardware": "unknown", "machine": {"sgemm_gflops": 95.9881, "bandwidth_gbs": 31.4369, '
    '"threads": 2, "calibrated_now": false}, "model": {"name": "llama-110m", "arch": "llama", '
    '"n_params": 134105856, "params_per_token": 109529856, "layers_run": 12, "n_layers": 12, '
    '"scaled": false}, "settings": {"prompt_len": 128, "gen_len": 64, "reps": 1, "slots": 32}, '
    '"runs": [{"batch": 1, "prefill_tok_s": 1318.2, "decode_tok_s": 64.5, "gflops": 14.1}, '
    '{"batch": 32, "prefill_tok_s": 1250.0, "decode_tok_s": 692.0, "gflops": 152.0}]}')

NEW_MACHINE = {"fma_gflops": 350.0, "int8_gops": 1400.0, "bandwidth_gbs": 27.0,
               "sgemm_gflops": 316.0, "blas_core": "SkylakeX",
               "measured_at": "2026-12-07T19:00:00Z", "spread_pct": 3.0, "threads": 2}

LLAMA_OUT = """
main: n_kv_max = 6144, n_batch = 2048, n_ubatch = 512, flash_attn = 0, is_pp_shared = 0, n_gpu_layers = -1, n_threads = 2, n_threads_batch = 2

|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|
|   128 |     64 |    1 |    192 |    0.170 |   752.10 |    1.280 |    50.00 |    1.450 |   132.41 |
|   128 |     64 |   32 |   6144 |    5.400 |   758.52 |   13.385 |   153.00 |   18.785 |   327.06 |
"""


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, tensors, vocab=("a", "b")):
    """A GGUF header with a string-array KV (as a tokenizer has) and the
    tensor table [(name, dims, ggml type)]; no tensor data."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2)
    out += gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
    out += gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(vocab))
    out += b"".join(gguf_string(v) for v in vocab)
    for name, dims, t in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", t, 0)
    with open(path, "wb") as f:
        f.write(out)


class Gguf(unittest.TestCase):
    def test_q4_k_m_bytes_come_from_each_tensors_type(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.gguf")
            write_gguf(p, [("token_embd.weight", (256, 1000), 12),   # Q4_K, a lookup
                           ("blk.0.attn_norm.weight", (256,), 0),
                           ("blk.0.attn_q.weight", (256, 256), 12),  # Q4_K
                           ("blk.0.ffn_down.weight", (512, 256), 14),  # Q6_K
                           ("output.weight", (256, 1000), 14)])     # Q6_K
            c = kt.model_cost(kt.gguf_tensors(p), p)
        self.assertEqual(c["params_per_token"], 256 * 256 + 512 * 256 + 256 * 1000)
        self.assertEqual(c["classifier_params"], 256 * 1000)
        self.assertEqual(c["bytes_by_type"]["Q4_K"], 256 * 256 / 256 * 144)
        self.assertEqual(c["bytes_by_type"]["Q6_K"], (512 * 256 + 256 * 1000) / 256 * 210)
        self.assertNotIn("F32", c["bytes_by_type"])  # norms are not matrices

    def test_tied_classifier_is_the_embedding(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "m.gguf")
            write_gguf(p, [("token_embd.weight", (64, 512), 8), ("blk.0.attn_q.weight", (64, 64), 8)])
            c = kt.model_cost(kt.gguf_tensors(p), p)
        self.assertEqual(c["params_per_token"], 64 * 512 + 64 * 64)
        self.assertEqual(c["classifier_params"], 64 * 512)
        self.assertEqual(c["bytes_per_token"], (64 * 512 + 64 * 64) / 32 * 34)

    def test_not_gguf_names_the_file(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.bin")
            with open(p, "wb") as f:
                f.write(b"GGML" + bytes(20))
            with self.assertRaisesRegex(kt.TableError, "x.bin: not a GGUF file"):
                kt.gguf_tensors(p)


class Ceilings(unittest.TestCase):
    def test_old_machine_falls_back_to_sgemm_with_its_label(self):
        c = kt.ceilings(OLD_BENCH["machine"])
        self.assertEqual(c["f32"][0], 95.9881)
        self.assertIn("sgemm (OpenBLAS), not the FMA peak", c["f32"][1])
        self.assertEqual(c["int8"][0], 95.9881)
        self.assertIn("no int8 peak", c["int8"][1])
        self.assertEqual(c["bandwidth_gbs"], 31.4369)

    def test_new_machine_uses_fma_int8_and_names_the_blas_core(self):
        c = kt.ceilings(NEW_MACHINE)
        self.assertEqual(c["f32"], (350.0, "FMA peak", "GFLOP/s"))
        self.assertEqual(c["int8"], (1400.0, "int8 peak", "GOP/s"))
        self.assertEqual(c["sgemm_label"], "sgemm (OpenBLAS, core SkylakeX)")
        self.assertEqual(c["measured_at"], "2026-12-07T19:00:00Z")

    def test_llama_110m_f32_ceilings(self):
        # 219 MFLOP and 438 MB per token: at 350 GFLOP/s and 27 GB/s about
        # 1,600 tok/s of compute and 62 tok/s at batch 1.
        cost = {"params_per_token": 109510656, "classifier_params": 24576000,
                "bytes_per_token": 4 * 109510656}
        f = kt.file_ceilings(cost, kt.ceilings(NEW_MACHINE), False, 128)
        self.assertAlmostEqual(f["b1"][0], 27e9 / (4 * 109510656), places=6)
        self.assertEqual(f["b1"][1], "read bandwidth")
        self.assertAlmostEqual(f["b32"][0], 350e9 / (2 * 109510656), places=6)
        self.assertEqual(f["b32"][1], "FMA peak")
        pre = 350e9 / (2 * (109510656 - 24576000) + 2 * 24576000 / 128)
        self.assertAlmostEqual(f["prefill"][0], pre, places=6)
        self.assertGreater(f["prefill"][0], f["b32"][0])  # prefill skips most of the classifier

    def test_quantized_file_takes_the_int8_peak(self):
        cost = {"params_per_token": 1000, "classifier_params": 0, "bytes_per_token": 1000 * 34 / 32}
        f = kt.file_ceilings(cost, kt.ceilings(NEW_MACHINE), True, 128)
        self.assertAlmostEqual(f["b32"][0], min(1400e9 / 2000, 32 * 27e9 / (1000 * 34 / 32)))

    def test_missing_bandwidth_is_named(self):
        with self.assertRaisesRegex(kt.TableError, '"machine" has no "bandwidth_gbs"'):
            kt.ceilings({"sgemm_gflops": 1.0})


class Parsing(unittest.TestCase):
    def test_bench_json(self):
        self.assertEqual(kt.bench_figures(OLD_BENCH),
                         {"prefill": 1318.2, "b1": 64.5, "b32": 692.0, "prefill_b32": 1250.0})

    def test_bench_json_without_batch_32_names_the_batches(self):
        doc = {"runs": [r for r in OLD_BENCH["runs"] if r["batch"] == 1]}
        with self.assertRaisesRegex(kt.TableError, r"no run of batch 32 \(batches: \[1\]\)"):
            kt.bench_figures(doc)

    def test_llama_batched_bench_table(self):
        self.assertEqual(kt.llama_figures(LLAMA_OUT), {"prefill": 752.10, "b1": 50.00, "b32": 153.00})


class Table(unittest.TestCase):
    def test_medians_percentages_and_one_note_per_reason(self):
        import argparse
        args = argparse.Namespace(arch="llama-110m", threads=2, prompt_len=128, gen_len=64, reps=3)
        cost = {"params_per_token": 109510656, "classifier_params": 24576000,
                "bytes_per_token": 4 * 109510656, "bytes_by_type": {"F32": 4 * 109510656}}
        qcost = dict(cost, bytes_per_token=109510656 * 34 / 32, bytes_by_type={"Q8_0": 1.0})
        runs = [{"prefill": 700.0, "b1": 50.0, "b32": 600.0, "prefill_b32": 1.0},
                {"prefill": 800.0, "b1": 52.0, "b32": 650.0, "prefill_b32": 1.0},
                {"prefill": 750.0, "b1": 120.0, "b32": 300.0, "prefill_b32": 1.0}]
        files = {"f32": {"path": "f32.gguf", "cost": cost, "runs": runs},
                 "q8_0": {"path": "q8.gguf", "cost": qcost, "runs": runs}}
        res = kt.build_result(args, OLD_BENCH["machine"], files, None, (1.0, 2.0))
        f = res["files"][0]["figures"]
        self.assertEqual(f["b1"]["tok_s"], 52.0)
        self.assertAlmostEqual(f["b1"]["spread_pct"], 100.0 * 70 / 52)
        roof = 95.9881e9 / (2 * 109510656)
        self.assertAlmostEqual(f["b32"]["pct"], 100.0 * 600 / roof)
        text = kt.render(res)
        self.assertIn("| F32 (438.0 MB/token) | 750 (", text)
        # b32 is over the sgemm ceiling for both files: one note, not two
        self.assertEqual(text.count("the ceiling is OpenBLAS's sgemm"), 1)
        self.assertIn("over 100% (prefill, b32): the ceiling is OpenBLAS's sgemm", text)

    def test_fast_variant_is_a_row_of_its_own_on_the_same_file(self):
        self.assertEqual(kt.split_type("q8_0"), ("q8_0", []))
        self.assertEqual(kt.split_type("q8_0:fast"), ("q8_0", ["--arith", "fast"]))
        with self.assertRaises(kt.TableError):
            kt.split_type("q8_0:quick")
        import argparse
        args = argparse.Namespace(arch="llama-110m", threads=2, prompt_len=128, gen_len=64, reps=1)
        qcost = {"params_per_token": 1000, "classifier_params": 100, "bytes_per_token": 1062.5,
                 "bytes_by_type": {"Q8_0": 1062.5}}
        runs = [{"prefill": 2.0, "b1": 1.0, "b32": 2.0, "prefill_b32": 2.0}]
        files = {"q8_0": {"path": "q8.gguf", "cost": qcost, "runs": runs},
                 "q8_0:fast": {"path": "q8.gguf", "cost": qcost, "runs": runs}}
        res = kt.build_result(args, NEW_MACHINE, files, None, (1.0, 1.0))
        # both on the int8 peak (a quantized file), the variant labelled
        self.assertEqual([r["figures"]["b32"]["bound"] for r in res["files"]],
                         [res["files"][0]["figures"]["b32"]["bound"]] * 2)
        self.assertIn("| Q8_0:FAST (", kt.render(res))

    def test_new_keys_name_the_peaks_their_units_and_the_blas_core(self):
        import argparse
        args = argparse.Namespace(arch="llama-110m", threads=2, prompt_len=128, gen_len=64, reps=1)
        cost = {"params_per_token": 1000, "classifier_params": 100, "bytes_per_token": 1062.5,
                "bytes_by_type": {"Q8_0": 1062.5}}
        files = {"q8_0": {"path": "q.gguf", "cost": cost,
                          "runs": [{"prefill": 1.0, "b1": 1.0, "b32": 1.0, "prefill_b32": 1.0}]}}
        text = kt.render(kt.build_result(args, NEW_MACHINE, files, None, (1.0, 1.0)))
        self.assertIn("f32 compute 350.0 GFLOP/s (FMA peak); quantized compute 1400.0 GOP/s "
                      "(int8 peak); read bandwidth 27.0 GB/s; sgemm (OpenBLAS, core SkylakeX) "
                      "316.0 GFLOP/s", text)
        self.assertIn("measured: 2026-12-07T19:00:00Z, spread 3%", text)


if __name__ == "__main__":
    unittest.main()
