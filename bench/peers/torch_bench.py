#!/usr/bin/env python3
"""Peer benchmark: PyTorch + Hugging Face transformers (PyPI) on the Llama-Guard-3-1B shape.

Not a test and not part of the build: what a user who runs the guard model in
PyTorch gets, to put next to `saferoute bench` (issue 11). Needs torch,
transformers and safetensors from PyPI in a venv of your own.

Model: LlamaForCausalLM(config) with the config.json of MODEL_DIR (the random
checkpoint of bench/peers/make_lg3_1b_random_gguf.sh: hidden 2048, 16 layers,
32/8 heads, FFN 8192, vocab 128256, llama3 rope scaling) and, unless
--random-init, the weights of its model.safetensors (the same weights the GGUF
files and saferoute run; loaded with from_pretrained(dir, dtype=...)). Each dtype (bf16: `.to(torch.bfloat16)`, fp32:
`.float()`) is benchmarked with torch.set_num_threads(THREADS), under
torch.inference_mode(), with logits_to_keep=1 (only the last position through
the LM head, as a guard call needs).

Cases (token ids: seeded random, in [0, 128000)):
  prompt_300        one 300-token prompt
  batch_8x300       8 prompts of 300 tokens in one call
  guard_cached      a 64-token message after a 150-token prefix whose KV cache
                    (past_key_values, called `cache` from transformers 5.2x;
                    computed once, deep-copied before each run outside the
                    timer) is reused
  guard_uncached    the same 214 tokens without a cache (for the ratio)
Each case: one warm-up call, then REPEATS timed calls; every run is reported,
with the best. JSON to stdout (or --out).

  /path/to/venv/bin/python bench/peers/torch_bench.py --model-dir /work/ext/lg3-1b-random/hf
"""

import argparse
import copy
import inspect
import json
import os
import platform
import sys
import time


def cpu_info():
    info = {"model_name": platform.processor()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model_name"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                      if ln.startswith("flags")), [])
        info["flags"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
                                     "amx_bf16", "amx_int8") if f in flags]
    except OSError:
        pass
    return info


def timed(fn, repeats, setup=None):
    """Warm-up once, then `repeats` timed runs; setup() (untimed) gives fn's argument."""
    fn(setup() if setup else None)
    runs = []
    for _ in range(repeats):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg)
        runs.append(time.perf_counter() - t0)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True, help="folder with config.json (+ model.safetensors)")
    ap.add_argument("--random-init", action="store_true", help="ignore model.safetensors")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="prompt_300,batch_8x300,guard_cached,guard_uncached")
    ap.add_argument("--out")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig.from_pretrained(args.model_dir)
    state_dir = None if args.random_init else args.model_dir
    gen = torch.Generator().manual_seed(1234)
    ids = lambda b, t: torch.randint(0, 128000, (b, t), generator=gen)  # noqa: E731
    prompt, batch = ids(1, 300), ids(8, 300)
    prefix, message = ids(1, 150), ids(1, 64)
    cases = args.cases.split(",")
    result = dict(torch=torch.__version__, transformers=transformers.__version__,
                  threads=args.threads, repeats=args.repeats, cpu=cpu_info(),
                  weights="random init" if args.random_init else
                  os.path.join(args.model_dir, "model.safetensors"),
                  config=dict(hidden=config.hidden_size, layers=config.num_hidden_layers,
                              heads=config.num_attention_heads, kv_heads=config.num_key_value_heads,
                              ffn=config.intermediate_size, vocab=config.vocab_size,
                              rope=getattr(config, "rope_parameters", None)
                              or getattr(config, "rope_scaling", None),
                              tied=config.tie_word_embeddings),
                  cells=[])
    for dtype_name in args.dtypes.split(","):
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
        if state_dir is None:
            model = LlamaForCausalLM(config).to(dtype)
        else:
            # The ordinary way to load a local checkpoint (no hub access).
            model = LlamaForCausalLM.from_pretrained(state_dir, dtype=dtype)
        model.eval()

        # transformers 5.x renames past_key_values to cache (argument and output).
        cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters \
            else "past_key_values"

        def run(input_ids, past=None):
            with torch.inference_mode():
                return model(input_ids=input_ids, use_cache=past is not None, logits_to_keep=1,
                             **{cache_kw: past})

        with torch.inference_mode():
            out = model(input_ids=prefix, use_cache=True)
            prefix_cache = out.cache if hasattr(out, "cache") else out.past_key_values
            # The cached call must compute what the uncached one does.
            cached = run(message, copy.deepcopy(prefix_cache)).logits[0, -1].float()
            whole = run(torch.cat([prefix, message], dim=1)).logits[0, -1].float()
            result.setdefault("cache_check_max_abs_logit_diff", {})[dtype_name] = \
                float((cached - whole).abs().max())
        plans = {
            "prompt_300": (lambda _: run(prompt), None, 300),
            "batch_8x300": (lambda _: run(batch), None, 2400),
            "guard_cached": (lambda past: run(message, past), lambda: copy.deepcopy(prefix_cache), 64),
            "guard_uncached": (lambda _: run(torch.cat([prefix, message], dim=1)), None, 214),
        }
        for case in cases:
            fn, setup, tokens = plans[case]
            runs = timed(fn, args.repeats, setup)
            best = min(runs)
            result["cells"].append(dict(dtype=dtype_name, case=case, tokens=tokens,
                                        runs_s=[round(r, 4) for r in runs], best_s=round(best, 4),
                                        best_tok_per_s=round(tokens / best, 1)))
            print(json.dumps(result["cells"][-1]), flush=True, file=sys.stderr)
        del model
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
