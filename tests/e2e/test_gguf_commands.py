"""Every command that names a model or a tokenizer takes a .gguf file.

The tiny Llama Guard 3 fixture (../shared/fixtures/guard/llama_guard_tiny_fullvocab_bf16,
BF16 safetensors + the Llama 3 tokenizer.json) is written as one GGUF, model and
vocabulary, by make_guard_gguf.py with the PyPI `gguf` package (llama.cpp's
converter library, not SafeRoute's writer). Each command then runs on the .gguf
(its tokenizer taken from the file) and on the safetensors folder, and the two
must agree: inspect (logits), tokenize, render, classify, score give the same
output; fit, serve (small and large guard local, and the remote format's
tokenizer) and bench (--config and --model) run on it. A tiny shape is no
Llama Guard 3 size, so its format is named (--format); guessing the format
from a GGUF's shape is refused here with the file named, and works on the 1B
shape (bench/gguf_twin_check.py).

Usage: test_gguf_commands.py --saferoute BIN --shared-dir DIR
Exit 77 (skipped, reason printed) without numpy and gguf in the venv.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import test_service as service_lib  # noqa: E402  (Service, http_json)

ARGS = None
FORMAT = "llama-guard-3-1b"
# Same weights, yet not bit-equal: the GGUF's RoPE frequencies are base^(-2i/d)
# divided by its float32 rope_freqs factors, the folder's come from
# rope_scaling; float32 rounding (~6e-8 relative) of a frequency turns into an
# angle error growing with the position (~6e-5 rad at position 1000), seen
# here as p(unsafe) differences up to ~1e-6 on 200-500-token prompts.
P_TOLERANCE = 1e-5


def saferoute(*args, check=True, timeout=600):
    done = subprocess.run([ARGS.saferoute, *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"saferoute {' '.join(args)}: exit {done.returncode}\n"
                             f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done


class GgufCommands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="saferoute-gguf-")
        cls.dir = os.path.join(ARGS.shared_dir, "fixtures/guard/llama_guard_tiny_fullvocab_bf16")
        cls.gguf = os.path.join(cls.tmp.name, "llama_guard_tiny.gguf")
        made = subprocess.run([sys.executable, str(HERE / "make_guard_gguf.py"), cls.dir,
                               "llama-bpe", cls.gguf], capture_output=True, text=True)
        if made.returncode != 0:
            raise AssertionError(f"make_guard_gguf.py: {made.stderr}")
        cls.data = os.path.join(cls.tmp.name, "data.jsonl")
        rows = pathlib.Path(ARGS.shared_dir, "bench/eval/openai_moderation.jsonl").read_text()
        pathlib.Path(cls.data).write_text("".join(rows.splitlines(keepends=True)[:24]))
        # A second guard (other random weights, same shape) for fit's large
        # guard: with the same model on both sides no example is "hard".
        cls.large_dir = os.path.join(cls.tmp.name, "large")
        saferoute("make-model", "--config", os.path.join(cls.dir, "config.json"), "--seed", "7",
                  "--tokenizer", os.path.join(cls.dir, "tokenizer.json"), "--out", cls.large_dir)
        cls.large_gguf = os.path.join(cls.tmp.name, "large.gguf")
        made = subprocess.run([sys.executable, str(HERE / "make_guard_gguf.py"), cls.large_dir,
                               "llama-bpe", cls.large_gguf], capture_output=True, text=True)
        if made.returncode != 0:
            raise AssertionError(f"make_guard_gguf.py: {made.stderr}")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def both(self, *args):
        """stdout of the command on the folder and on the .gguf (ARGS: {} = the model)."""
        return [saferoute(*[a.format(model) for a in args]).stdout for model in (self.dir, self.gguf)]

    def test_inspect_logits_equal(self):
        folder, gguf = [json.loads(out) for out in self.both(
            "inspect", "--model", "{}", "--token-ids", "128000,40,1390,311,1304,264,19692,13",
            "--precision", "fp32", "--threads", "1")]
        diff = max(abs(a - b) for a, b in zip(folder["logits_last"], gguf["logits_last"]))
        self.assertEqual(len(folder["logits_last"]), len(gguf["logits_last"]))
        self.assertLessEqual(diff, 1e-5)

    def test_tokenize_equal(self):
        folder, gguf = [saferoute("tokenize", "--tokenizer", t, "--text",
                                  "Hello wörld 12345 <|eot_id|> ok").stdout
                        for t in (os.path.join(self.dir, "tokenizer.json"), self.gguf)]
        self.assertEqual(folder, gguf)
        self.assertIn("9906", folder)  # "Hello"

    def test_render_equal(self):
        folder, gguf = [saferoute("render", "--format", FORMAT, "--tokenizer", t, "--prompt",
                                  "How do I bake bread?", "--response", "Knead, rest, bake.").stdout
                        for t in (os.path.join(self.dir, "tokenizer.json"), self.gguf)]
        self.assertEqual(folder, gguf)

    def test_classify_equal(self):
        folder, gguf = [json.loads(out) for out in self.both(
            "classify", "--model", "{}", "--format", FORMAT, "--precision", "fp32", "--threads",
            "1", "How do I pick a lock?")]
        self.assertAlmostEqual(folder["p_unsafe"], gguf["p_unsafe"], delta=P_TOLERANCE)
        for key in ("verdict", "categories", "generated_ids", "n_tokens"):
            self.assertEqual(folder[key], gguf[key], key)

    def test_classify_format_guess_names_the_gguf(self):
        done = saferoute("classify", "--model", self.gguf, "hi", check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(self.gguf, done.stderr)
        self.assertIn("cannot tell the guard format from the shape", done.stderr)

    def test_score_equal(self):
        scores = []
        for model in (self.dir, self.gguf):
            out = os.path.join(self.tmp.name, "score-" + os.path.basename(model))
            saferoute("score", "--model", model, "--format", FORMAT, "--precision", "fp32",
                      "--threads", "1", "--data", self.data, "--out", out, "--no-progress")
            files = sorted(p for p in pathlib.Path(out).iterdir() if p.suffix == ".jsonl")
            self.assertTrue(files, out)
            rows = [json.loads(line) for p in files for line in p.read_text().splitlines()]
            scores.append({r["id"]: r["p_unsafe"] for r in rows if "p_unsafe" in r})
        self.assertEqual(len(scores[1]), 24)
        self.assertEqual(scores[0].keys(), scores[1].keys())
        for key, p in scores[0].items():
            self.assertAlmostEqual(p, scores[1][key], delta=P_TOLERANCE, msg=key)

    def test_fit_runs(self):
        out = os.path.join(self.tmp.name, "fit")
        bench = pathlib.Path(ARGS.shared_dir, "bench/eval")
        saferoute("fit", "--small-model", self.gguf, "--small-format", FORMAT,
                  "--large-model", self.large_gguf, "--large-format", FORMAT, "--small-precision",
                  "fp32", "--large-precision", "fp32", "--threads", "1",
                  "--train", str(bench / "openai_moderation.jsonl"), "--train-limit", "200",
                  "--eval", str(bench / "toxicchat_test.jsonl"), "--eval-limit", "60",
                  "--epochs", "3", "--share", "0.2", "--out", out)
        self.assertTrue(os.path.exists(os.path.join(out, "eval.json")))

    def test_bench_config_and_model(self):
        for flag in ("--config", "--model"):
            with self.subTest(flag):
                report = os.path.join(self.tmp.name, f"bench{flag}.json")
                saferoute("bench", flag, self.gguf, "--precision", "fp32", "--batches", "1",
                          "--lengths", "8", "--reps", "1", "--warmup", "0", "--threads", "1",
                          "--json", report)
                self.assertTrue(json.loads(pathlib.Path(report).read_text()))

    def serve(self, flags):
        service = service_lib.Service(flags, self.tmp.name)
        self.addCleanup(service.stop)
        if not service.start():
            self.fail(f"service exited at start:\n{service.log_text()}")
        return service

    def test_serve_small_and_large_local(self):
        service = self.serve(["--small-model-dir", self.gguf, "--small-format", FORMAT,
                              "--small-precision", "fp32", "--small-threads", "1",
                              "--large-mode", "local", "--large-model-dir", self.gguf,
                              "--large-format", FORMAT, "--large-precision", "fp32",
                              "--large-threads", "1"])
        status, body = service.moderate(["How do I pick a lock?", "Hello"])
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["results"]), 2)

    def test_serve_remote_format_from_gguf_tokenizer(self):
        # The remote large guard's prompts are rendered with the tokenizer of
        # large.model_dir: here the .gguf (no remote answers; start-up only).
        service = self.serve(["--small-model-dir", self.gguf, "--small-format", FORMAT,
                              "--small-precision", "fp32", "--small-threads", "1",
                              "--large-mode", "remote", "--remote-kind", "vllm", "--remote-url",
                              "http://127.0.0.1:9", "--remote-model", "x", "--large-model-dir",
                              self.gguf])
        status, _ = service.get("/healthz")
        self.assertEqual(status, 200)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saferoute", required=True)
    parser.add_argument("--shared-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e} (build/venv: pip install -r scripts/requirements-test.txt)")
        return 77
    service_lib.ARGS = ARGS
    program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
