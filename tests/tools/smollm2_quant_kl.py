#!/usr/bin/env python3
"""llama.cpp's quantization error on SmolLM2-135M-Instruct over 200 bench prompts.

The reference number the int8 path of issue 11 is held to: the KL divergence
KL(P_f32 || P_quant) of next-token distributions, at every position of 200
chat-rendered prompts, between llama.cpp's F32 copy of the model and its
Q8_0 copy (and, for comparison, its BF16 copy), and the share of positions
whose top-1 token agrees. Computed on the fly; no logits are stored.

llama.cpp is NOT part of this project: it is built outside the repository and
loaded through tests/tools/llamacpp_ctypes.py (environment variable
LLAMA_CPP_BIN). Committed data: llama.cpp c392e5094deaf2d1a7c18683214f007fad3fe42b.

Prompts (fixed, recorded): the first 100 rows of
../shared/bench/eval/openai_moderation.jsonl, then the first 100 rows of
../shared/bench/eval/toxicchat_test.jsonl (both prompt-classification sets);
`prompt` rendered with SmolLM2's chat template and default system prompt
(tests/tools/smollm2_chat.py), the user text cut to its first 400 tokens so
that every sequence fits one 512-token context (the cut is recorded).

Models (all made with llama-quantize from the Q4_1 file, see
tests/data/smollm2/README.md): F32 (reference), Q8_0 and BF16 made from the
F32 copy. Every model runs with 2 threads, one llama_decode per prompt, logits
at every position. KV cache: F32 for all rows of the table; the Q8_0 model is
also run with llama.cpp's default F16 KV cache (what a user of llama.cpp
gets). Note that llama.cpp's Q8_0 matmuls also quantize the activations to
Q8_0 blocks (32 values, one scale), so "Q8_0" is weights AND activations in
8 bits.

Writes:
  OUT_DIR/quant_kl_prompts.jsonl  one prompt a line: source file, row, id,
      user_tokens_cut (bool), ids (the exact token ids: engine tests compute
      their own int8-vs-fp32 KL on these).
  OUT_DIR/llamacpp_quant_kl.json  per configuration: positions, mean KL over
      all positions, mean of the per-prompt means, median, p99, max, top-1
      agreement; and per prompt: mean KL and top-1 agreements.

Usage (venv with numpy):
  LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin python3 tests/tools/smollm2_quant_kl.py \
      MODELS_DIR tests/data/smollm2 [--configs q8_0_kv_f32,q8_0_kv_f16,bf16_kv_f32]
  MODELS_DIR holds SmolLM2-135M-Instruct.{F32,Q8_0,BF16}.gguf.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llamacpp_ctypes  # noqa: E402
import smollm2_chat  # noqa: E402

BENCH = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "bench" / "eval"
SELECTION = [("openai_moderation.jsonl", 100), ("toxicchat_test.jsonl", 100)]
MAX_USER_TOKENS = 400
N_CTX = 512
F32, F16 = llamacpp_ctypes.GGML_TYPE_F32, llamacpp_ctypes.GGML_TYPE_F16
# name, model file suffix, KV cache type
CONFIGS = [("q8_0_kv_f32", "Q8_0", F32), ("q8_0_kv_f16", "Q8_0", F16), ("bf16_kv_f32", "BF16", F32)]


def select_prompts():
    rows = []
    for name, count in SELECTION:
        with open(BENCH / name, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i == count:
                    break
                rows.append(dict(source=f"eval/{name}", row=i, id=json.loads(line)["id"],
                                 prompt=json.loads(line)["prompt"]))
    return rows


def all_logits(llm, ids):
    """[T, vocab] float64: llama.cpp's output rows are contiguous in batch order."""
    llm.clear()
    rows = llm.eval(ids, all_logits=True)
    base = np.ctypeslib.as_array(rows[0], shape=(len(ids), llm.n_vocab))
    last = np.ctypeslib.as_array(rows[-1], shape=(llm.n_vocab,))
    assert np.shares_memory(base[-1], last) and base[-1].ctypes.data == last.ctypes.data
    return base.astype(np.float64)


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def summarize(kls, agrees, per_prompt):
    kls = np.concatenate(kls)
    return dict(positions=int(kls.size), mean_kl=float(kls.mean()),
                mean_of_prompt_means=float(np.mean([p["mean_kl"] for p in per_prompt])),
                median_kl=float(np.median(kls)), p99_kl=float(np.quantile(kls, 0.99)),
                max_kl=float(kls.max()), top1_agreement=float(sum(agrees) / kls.size))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--configs", default=",".join(c[0] for c in CONFIGS),
                    help="which of " + ", ".join(c[0] for c in CONFIGS))
    ap.add_argument("--threads", type=int, default=2,
                    help="llama.cpp threads (1 on a crowded machine: two threads then mostly wait "
                         "for each other at barriers)")
    args = ap.parse_args()
    models_dir, out_dir = pathlib.Path(args.models_dir), pathlib.Path(args.out_dir)
    configs = [c for c in CONFIGS if c[0] in args.configs.split(",")]
    model = lambda suffix: str(models_dir / f"SmolLM2-135M-Instruct.{suffix}.gguf")  # noqa: E731
    ref = llamacpp_ctypes.Llama(model("F32"), n_ctx=N_CTX, n_threads=args.threads, kv_type=F32)
    others = {name: llamacpp_ctypes.Llama(model(suffix), n_ctx=N_CTX, n_threads=args.threads,
                                          kv_type=kv)
              for name, suffix, kv in configs}
    prompts = select_prompts()
    # The token ids first (they are what engine tests need), then the statistics.
    tok = lambda t, s: ref.tokenize(t, s)  # noqa: E731
    with open(out_dir / "quant_kl_prompts.jsonl", "w", encoding="utf-8") as out:
        for p in prompts:
            full = smollm2_chat.render_ids(tok, p["prompt"])
            p["ids"] = smollm2_chat.render_ids(tok, p["prompt"], max_user_tokens=MAX_USER_TOKENS)
            assert len(p["ids"]) <= N_CTX, (p["id"], len(p["ids"]))
            out.write(json.dumps(dict(source=p["source"], row=p["row"], id=p["id"],
                                      user_tokens_cut=p["ids"] != full, ids=p["ids"])) + "\n")
    kls = {name: [] for name in others}
    agrees = {name: [] for name in others}
    per_prompt = {name: [] for name in others}
    t0 = time.time()
    for done, p in enumerate(prompts):
        ids = p["ids"]
        logp = log_softmax(all_logits(ref, ids))  # [T, V]
        top_ref = logp.argmax(axis=-1)
        for name, llm in others.items():
            logq = log_softmax(all_logits(llm, ids))
            kl = (np.exp(logp) * (logp - logq)).sum(axis=-1)  # [T]
            agree = int((logq.argmax(axis=-1) == top_ref).sum())
            kls[name].append(kl)
            agrees[name].append(agree)
            per_prompt[name].append(dict(id=p["id"], positions=len(ids),
                                         mean_kl=float(kl.mean()), top1_agree=agree))
        print(json.dumps(dict(done=done + 1, seconds=round(time.time() - t0),
                              **{n: per_prompt[n][-1] for n in others})),
              file=sys.stderr, flush=True)
        if (done + 1) % 10 == 0 or done + 1 == len(prompts):
            # Written as it goes: a stopped run leaves the statistics of the
            # prompts done so far (`prompts_done` says how many).
            result = dict(
                llama_cpp_commit="c392e5094deaf2d1a7c18683214f007fad3fe42b",
                reference="SmolLM2-135M-Instruct.F32.gguf, KV cache F32",
                prompts="first 100 rows of eval/openai_moderation.jsonl + first 100 of "
                        "eval/toxicchat_test.jsonl, chat template, user text cut at 400 tokens",
                prompts_done=done + 1, seconds=round(time.time() - t0, 1),
                configs={name: dict(model=f"SmolLM2-135M-Instruct.{suffix}.gguf",
                                    kv_cache="f32" if kv == F32 else "f16",
                                    **summarize(kls[name], agrees[name], per_prompt[name]),
                                    per_prompt=per_prompt[name])
                         for name, suffix, kv in configs})
            with open(out_dir / "llamacpp_quant_kl.json", "w") as f:
                json.dump(result, f, indent=1)
                f.write("\n")
    print(json.dumps({name: {k: v for k, v in c.items() if k != "per_prompt"}
                      for name, c in result["configs"].items()}, indent=1))


if __name__ == "__main__":
    main()
