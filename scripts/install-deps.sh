#!/usr/bin/env bash
# Installs the build and test dependencies from Debian's packages (and, for
# the Python-based service tests, PyPI into build/venv). Idempotent: does
# nothing when everything is already there. Why each package: README.md.
set -euo pipefail

DEBIAN_PACKAGES=(
  build-essential cmake pkg-config git
  libabsl-dev            # Status/StatusOr, strings
  nlohmann-json3-dev     # JSON
  libdnnl-dev            # oneDNN GEMM (bf16 + fp32)
  libpcre2-dev           # Unicode regex for the tokenizer pre-split
  libcli11-dev           # command line
  libtoml11-dev          # TOML config files (serve --config)
  libcpp-httplib-dev     # HTTP server/client
  libssl-dev             # TLS listener and remote client, API-key digests, random ids
  libgtest-dev libgmock-dev  # tests
  clang-14 libclang-rt-14-dev libomp-14-dev  # fuzz build: clang's libFuzzer + sanitizer runtimes, OpenMP
  python3 python3-venv   # service tests drive the server with the official OpenAI client
  openssl                # service tests make a self-signed certificate
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages for the service tests (PyPI), in a venv inside build/.
if [[ "${SAFEROUTE_SKIP_PYTHON:-0}" != "1" ]]; then
  root="$(cd "$(dirname "$0")/.." && pwd)"
  venv="$root/build/venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$root/build"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import openai, prometheus_client, numpy, gguf" 2>/dev/null; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
  fi
fi
