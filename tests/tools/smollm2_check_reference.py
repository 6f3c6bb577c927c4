#!/usr/bin/env python3
"""Checks the float64 reference forward against the recorded llama.cpp data.

Two independent implementations of SmolLM2-135M-Instruct must agree:
tests/tools/llama_reference_forward.py (float64, numpy + PyPI gguf) and
llama.cpp c392e509 on the F32 copy with an F32 KV cache
(tests/data/smollm2/llamacpp_f32_logits.safetensors, greedy.jsonl). This
script runs the reference on MODEL (the Q4_1 file or its F32 copy: they hold
the same values) and reports, per sequence, the max absolute logit difference
and whether the top-1 agrees, and for each greedy prompt whether the reference's
argmax at each of the 16 decode positions is llama.cpp's greedy token.
Exit status 1 if a logit differs by more than --tolerance (default 1e-4) or a
top-1 / greedy token differs.

Needs only numpy and gguf (the test venv):
  build/venv/bin/python tests/tools/smollm2_check_reference.py SmolLM2-135M-Instruct.Q4_1.gguf
"""

import argparse
import json
import os
import pathlib
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_reference_forward as reference  # noqa: E402
import numpy as np  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "smollm2"
_DTYPES = {"F32": "<f4", "I32": "<i4"}


def read_safetensors(path):
    """{name: array}: a safetensors file is an 8-byte header length, a JSON
    header (dtype, shape, data_offsets per tensor) and the raw data."""
    blob = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + begin:8 + n + end],
                                  dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    sequences = json.loads((DATA / "llamacpp_f32_sequences.json").read_text())["sequences"]
    expected = read_safetensors(DATA / "llamacpp_f32_logits.safetensors")
    greedy = [json.loads(line) for line in (DATA / "greedy.jsonl").read_text().splitlines()]
    t0 = time.perf_counter()
    model = reference.ReferenceModel(args.model)
    # The logit sequences, then each greedy prompt followed by its first 15
    # greedy tokens (position n-1+k predicts greedy token k).
    inputs = [s["ids"] for s in sequences] + [g["prompt_ids"] + g["greedy"][:-1] for g in greedy]
    last, hidden = model.forward(inputs, keep_hidden=True)
    out_w = model._dequant(model.output_name)  # [vocab, H]
    ok = True
    report = dict(model=args.model, logits=[], greedy=[])
    for i, seq in enumerate(sequences):
        diff = np.abs(last[i] - expected[f"logits_{i}"].astype(np.float64))
        same_top1 = int(last[i].argmax()) == int(expected[f"logits_{i}"].argmax())
        ok &= bool(diff.max() <= args.tolerance) and same_top1
        report["logits"].append(dict(name=seq["name"], tokens=len(seq["ids"]),
                                     max_abs_diff=float(diff.max()),
                                     mean_abs_diff=float(diff.mean()), same_top1=same_top1))
    for g, h in zip(greedy, hidden[len(sequences):]):
        n = len(g["prompt_ids"])
        tokens = (h["final"][n - 1:] @ out_w.T).argmax(axis=-1).tolist()
        ok &= tokens == g["greedy"]
        report["greedy"].append(dict(user=g["user"], same_16_tokens=tokens == g["greedy"]))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["ok"] = ok
    print(json.dumps(report, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
