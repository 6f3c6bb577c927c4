#!/usr/bin/env bash
# ctest "e2e" check: dumps /metrics from the HTTP test and parses it with the
# Python prometheus_client parser. Exit 77 (skipped) without the venv.
#   check_metrics.sh <server_http_test binary> <python> <work dir>
set -euo pipefail
test_binary="$1" python="$2" work="$3"
if [[ ! -x "$python" ]] || ! "$python" -c "import prometheus_client" 2>/dev/null; then
  echo "skipped: $python with prometheus_client not found (run scripts/install-deps.sh)"
  exit 77
fi
dump="$work/metrics_dump.txt"
rm -f "$dump"
SAFEROUTE_METRICS_DUMP="$dump" "$test_binary" --gtest_filter='ServerHttp.MetricsExposition'
"$python" "$(dirname "$0")/check_metrics.py" "$dump"
