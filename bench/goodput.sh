#!/usr/bin/env bash
# Goodput against offered load, before and after a change, on a stand-in guard
# of the Llama-Guard-3-1B shape (random weights; `saferoute make-model`).
# A benchmark (not a test): run it in a quiet window, and keep every run.
#
#   bench/goodput.sh BEFORE_BIN AFTER_BIN [OUT_DIR]
#
# Environment (defaults in brackets):
#   MODEL      the stand-in directory [/tmp/saferoute-lg3-1b-random, made there if
#              nothing is there yet]
#   SAT_RATE   the saturation rate in requests/s [measured: closed loop, 4 clients,
#              60 s deadline, on BEFORE_BIN: the most it completes per second]
#   LOADS      multiples of SAT_RATE to offer [1,2,4]
#   DURATION   seconds of measured load per run [60]  WARMUP  discarded seconds [10]
#   ROUNDS     before/after alternations [2]
#   WRK        1: also the closed-loop case (wrk, 8 connections, WRK_SECONDS [40] s)
#              per binary [1]
# Each run starts a fresh `saferoute serve` with default settings (categories
# on, 5 s deadline) and sends /v1/moderations with Poisson arrivals
# (load_bench.py --client open). Before each run the load average and the
# busiest other processes are recorded: the machine is shared.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
before="$1" after="$2" out="${3:-goodput-$(date +%Y%m%d-%H%M%S)}"
default_model=/tmp/saferoute-lg3-1b-random
model="${MODEL:-$default_model}"
loads="${LOADS:-1,2,4}" duration="${DURATION:-60}" warmup="${WARMUP:-10}"
rounds="${ROUNDS:-2}" wrk="${WRK:-1}"
python="${PYTHON:-python3}"
mkdir -p "$out"

# The stand-in is made only at the default path and only if nothing is
# there: never write into a directory that exists (a fixture, a checkpoint).
if [[ ! -e "$model" ]]; then
  if [[ "$model" != "$default_model" ]]; then
    echo "MODEL=$model does not exist" >&2
    exit 1
  fi
  "$after" make-model --shape llama-guard-3-1b --seed 1 --out "$model" \
    --tokenizer "$here/../../shared/tokenizers/llama3/tokenizer.json"
fi

snapshot() {  # what else the machine is doing
  { echo "# $(date -Is) $1"; uptime; ps -eo pcpu,etime,args --sort=-pcpu | head -8 | cut -c1-160; } \
    >> "$out/machine.log"
}

if [[ -z "${SAT_RATE:-}" ]]; then
  snapshot "saturation (before)"
  "$python" "$here/load_bench.py" --client python --launch "$before" --model "$model" \
    --concurrency 4 --duration 60 --warmup "$warmup" --timeout 120 \
    --serve-arg=--limits-default-deadline-ms=60000 --out "$out/saturation.json" > /dev/null
  SAT_RATE=$("$python" -c "import json,sys; print(json.load(open(sys.argv[1]))['runs'][0]['requests_per_s'])" \
    "$out/saturation.json")
fi
echo "saturation rate: $SAT_RATE requests/s" | tee "$out/saturation.txt"

for round in $(seq 1 "$rounds"); do
  for which in before after; do
    bin="$before"; [[ $which == after ]] && bin="$after"
    for k in ${loads//,/ }; do
      rate=$("$python" -c "print(round($SAT_RATE * $k, 4))")
      snapshot "round $round $which ${k}x = $rate/s"
      "$python" "$here/load_bench.py" --client open --launch "$bin" --model "$model" \
        --rate "$rate" --duration "$duration" --warmup "$warmup" --timeout 60 --seed "$round" \
        --out "$out/r${round}-${which}-${k}x.json" > /dev/null
    done
    if [[ $wrk == 1 ]]; then
      snapshot "round $round $which wrk 8 connections"
      "$python" "$here/load_bench.py" --client wrk --launch "$bin" --model "$model" \
        --concurrency 8 --duration "${WRK_SECONDS:-40}" --warmup 0 --timeout 60 \
        --out "$out/r${round}-${which}-wrk8.json" > /dev/null
    fi
  done
done

"$python" - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
print(f"{'run':<22} {'offered/s':>9} {'good/s':>7} {'429/s':>6} {'504/s':>6} {'p50 ms':>8} {'p99 ms':>8}")
for path in sorted(glob.glob(os.path.join(out, "r*-*x.json"))):
    r = json.load(open(path))["runs"][0]
    print(f"{os.path.basename(path)[:-5]:<22} {r['offered_per_s']:>9} {r['goodput_per_s']:>7} "
          f"{r['status_429_per_s']:>6} {r['status_504_per_s']:>6} "
          f"{r['latency_ms_200']['p50'] or '-':>8} {r['latency_ms_200']['p99'] or '-':>8}")
for path in sorted(glob.glob(os.path.join(out, "r*-wrk8.json"))):
    r = json.load(open(path))["runs"][0]
    print(os.path.basename(path)[:-5], "requests", r["requests"], "errors", r["errors"],
          "client latency", r["client_latency_ms"])
PY
