#!/usr/bin/env bash
# Ten minutes of load at the saturation rate on a stand-in guard of the
# Llama-Guard-3-1B shape, with the service's RSS sampled every few seconds:
# steady memory under sustained overload-edge traffic. A benchmark, not a
# test (outside CI); run it when nothing else heavy is running.
#
#   bench/soak.sh SAFEROUTE_BIN SAT_RATE [OUT_JSON]
#
# Environment: MODEL [/tmp/saferoute-lg3-1b-random, made there if nothing is],
# DURATION [600], RSS_INTERVAL [5], WARMUP [10].
# Prints the RSS summary: first, min, max, last (MiB) and the least-squares
# slope (MiB per minute) over the whole run and over its second half.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1" rate="$2" out="${3:-soak-$(date +%Y%m%d-%H%M%S).json}"
default_model=/tmp/saferoute-lg3-1b-random
model="${MODEL:-$default_model}"
python="${PYTHON:-python3}"
# The stand-in is made only at the default path and only if nothing is
# there: never write into a directory that exists (a fixture, a checkpoint).
if [[ ! -e "$model" ]]; then
  if [[ "$model" != "$default_model" ]]; then
    echo "MODEL=$model does not exist" >&2
    exit 1
  fi
  "$bin" make-model --shape llama-guard-3-1b --seed 1 --out "$model" \
    --tokenizer "$here/../../shared/tokenizers/llama3/tokenizer.json"
fi
uptime
"$python" "$here/load_bench.py" --client open --launch "$bin" --model "$model" --rate "$rate" \
  --duration "${DURATION:-600}" --warmup "${WARMUP:-10}" --rss-interval "${RSS_INTERVAL:-5}" \
  --timeout 60 --out "$out" > /dev/null
uptime
"$python" - "$out" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
run = report["runs"][0]
rss = run["rss_mib"]
print(f"RSS MiB at launch {report['rss_mib_before_load']}, during load: first {rss['first']}, "
      f"min {rss['min']}, max {rss['max']}, last {rss['last']}; slope "
      f"{rss['slope_mib_per_min']} MiB/min (second half {rss['slope_second_half_mib_per_min']}); "
      f"{len(rss['samples'])} samples")
print(f"offered {run['offered_per_s']}/s: goodput {run['goodput_per_s']}/s, "
      f"429 {run['status_429_per_s']}/s, 504 {run['status_504_per_s']}/s, statuses {run['statuses']}")
PY
