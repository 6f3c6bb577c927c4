#!/usr/bin/env bash
# The main job: build SafeRoute and run the whole recipe (`saferoute fit`):
# score a small and a large guard on training data, label the hard examples,
# train the router, calibrate the escalation budget, evaluate against every
# baseline. Arguments are passed to `saferoute fit` (see `--help`); with none,
# it runs on random-weight stand-in guards and ../shared/bench.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
SAFEROUTE_SKIP_PYTHON=1 bash scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build/release -j"$(nproc)" --target saferoute
exec build/release/src/cli/saferoute fit "$@"
