#!/usr/bin/env bash
# Installs llama-cpp-python built from source *portably*, into the venv whose python is $1.
#
# Why this exists: pip's wheel cache keys a built wheel by its source, not by CMAKE_ARGS, so a
# wheel once built with native CPU tuning (-march=native, which can emit AMX or AVX-512 code
# that traps on another CPU or VM) would be silently reused. Instead, the wheel is built once
# into a directory whose name records the version, the build flags, the Python tag and the
# architecture, and installed from there; pip's own cache is bypassed for this one package.
#
#   DEMI_LLAMA_NATIVE=1   build with GGML_NATIVE=ON (tuned to *this* CPU: faster, but the
#                         wheel may crash with "Illegal instruction" on any other machine).
#   DEMI_WHEEL_DIR        where built wheels are kept (default ~/.cache/demi/wheels).
set -euo pipefail

PY=${1:?usage: llama-wheel.sh VENV_PYTHON}
VERSION=${LLAMA_CPP_VERSION:?set LLAMA_CPP_VERSION (the Makefile does)}
ROOT=${DEMI_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/demi/wheels}

if [ "${DEMI_LLAMA_NATIVE:-0}" = "1" ]; then
  FLAGS="-DGGML_NATIVE=ON"
  TAG="native-$(hostname)"
else
  FLAGS="-DGGML_NATIVE=OFF"
  TAG="portable"
fi
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
DIR="$ROOT/llama-cpp-python-$VERSION-$TAG-$PYTAG-$(uname -m)"

wheel=$(ls "$DIR"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo ">> Building llama-cpp-python $VERSION with CMAKE_ARGS=$FLAGS into $DIR"
  echo ">> (compiles llama.cpp: about 5-10 minutes on two cores; done once per machine)"
  mkdir -p "$DIR.tmp"
  CMAKE_ARGS="$FLAGS" FORCE_CMAKE=1 "$PY" -m pip --disable-pip-version-check wheel \
    --no-deps --no-cache-dir --no-binary llama-cpp-python --progress-bar on -v \
    -w "$DIR.tmp" "llama-cpp-python==$VERSION" 2>&1 \
    | sed -nuE 's#^ *(\[[0-9]+/[0-9]+\]) .* -c .*/([^/ ]+)$#   \1 \2#p; /error|Successfully built/p' || true
  built=$(ls "$DIR.tmp"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$built" ]; then
    echo "!! building llama-cpp-python failed (see the output above)" >&2
    exit 1
  fi
  rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
  wheel=$(ls "$DIR"/llama_cpp_python-"$VERSION"-*.whl | head -n 1)
fi
echo ">> Installing $(basename "$wheel") ($TAG build, from $DIR)"
"$PY" -m pip --disable-pip-version-check install --quiet --force-reinstall --no-deps "$wheel"
