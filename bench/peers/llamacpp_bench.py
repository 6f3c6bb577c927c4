#!/usr/bin/env python3
"""Peer benchmark: llama.cpp's own benchmark tools on the Llama-Guard-3-1B-shaped GGUFs.

Not a test and not part of the build. llama.cpp is NOT part of this project:
it is built outside the repository, and this script only runs two of its
tools, found through LLAMA_CPP_BIN (its build/bin folder):

  prompt_300   llama-bench -m MODEL -p 300 -n 0 -t THREADS -r REPS -o json
               (the issue's command; llama-bench runs one warm-up, then REPS
               runs, and reports each run's time: samples_ns)
  batch_8x300  llama-batched-bench -m MODEL -c 2400 -b 2400 -ub 512 -npp 300 -ntg 0
                   -npl 8,8,...  -t THREADS -tb THREADS --output-format jsonl
               8 independent sequences of 300 tokens in one llama_decode
               (ubatches of 512 tokens mixing sequences; unified KV cache of 2400,
               attention masked per sequence). llama-batched-bench warms up on 16
               tokens only, so the first of the 1+REPS runs is the warm-up and is
               reported but not counted. llama-bench cannot express this case
               (`-p 2400` is one 2400-token sequence, with 8x the attention work).

Models: every MODELS_DIR/lg3-1b-random-{BF16,Q8_0,Q4_0}.gguf that exists
(bench/peers/make_lg3_1b_random_gguf.sh makes them), or --models.
JSON to stdout (or --out): per model and case, every run's seconds and tok/s,
and the best.

  LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin python3 bench/peers/llamacpp_bench.py /work/ext/lg3-1b-random
Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout + "\n" + proc.stderr


def prompt_300(bin_dir, model, threads, reps):
    out = run([os.path.join(bin_dir, "llama-bench"), "-m", model, "-p", "300", "-n", "0",
               "-t", str(threads), "-r", str(reps), "-o", "json"])
    rows = json.loads(out[out.index("["):out.rindex("]") + 1])
    row = next(r for r in rows if r["n_prompt"] == 300)
    runs = [ns / 1e9 for ns in row["samples_ns"]]
    return dict(tokens=300, runs_s=[round(r, 4) for r in runs],
                runs_tok_per_s=[round(300 / r, 1) for r in runs],
                best_tok_per_s=round(300 / min(runs), 1),
                llama_bench_avg_ts=round(row["avg_ts"], 1), build_commit=row.get("build_commit"),
                cpu_info=row.get("cpu_info"), type_k=row.get("type_k"), n_batch=row.get("n_batch"),
                n_ubatch=row.get("n_ubatch"))


def batch_8x300(bin_dir, model, threads, reps):
    npl = ",".join(["8"] * (reps + 1))
    out = run([os.path.join(bin_dir, "llama-batched-bench"), "-m", model, "-c", "2400",
               "-b", "2400", "-ub", "512", "-npp", "300", "-ntg", "0", "-npl", npl,
               "-t", str(threads), "-tb", str(threads), "--output-format", "jsonl"])
    # With -ntg 0 the generation speed is 0/0, printed as C's "-nan" (not JSON).
    rows = [json.loads(re.sub(r"-?\b(nan|inf)\b", "null", line))
            for line in out.splitlines() if line.startswith('{"n_kv_max"')]
    runs = [r["t_pp"] for r in rows]
    timed = runs[1:]
    return dict(tokens=2400, warmup_s=round(runs[0], 4), runs_s=[round(r, 4) for r in timed],
                runs_tok_per_s=[round(2400 / r, 1) for r in timed],
                best_tok_per_s=round(2400 / min(timed), 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models_dir", nargs="?", default="/work/ext/lg3-1b-random")
    ap.add_argument("--models", help="comma-separated GGUF paths (instead of models_dir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", default="prompt_300,batch_8x300")
    ap.add_argument("--out")
    args = ap.parse_args()
    bin_dir = os.environ.get("LLAMA_CPP_BIN")
    if not bin_dir:
        sys.exit("set LLAMA_CPP_BIN to the llama.cpp build/bin folder")
    if args.models:
        models = args.models.split(",")
    else:
        models = [os.path.join(args.models_dir, f"lg3-1b-random-{q}.gguf")
                  for q in ("BF16", "Q8_0", "Q4_0")]
        models = [m for m in models if os.path.exists(m)]
    cases = {"prompt_300": prompt_300, "batch_8x300": batch_8x300}
    result = dict(threads=args.threads, reps=args.reps, cells=[])
    for model in models:
        for case in args.cases.split(","):
            cell = dict(model=os.path.basename(model), case=case,
                        **cases[case](bin_dir, model, args.threads, args.reps))
            result["cells"].append(cell)
            print(json.dumps(cell), file=sys.stderr, flush=True)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
