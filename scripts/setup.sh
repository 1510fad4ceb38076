#!/usr/bin/env bash
# Installs what faculty needs on a Debian machine, idempotently (a second run does nothing):
#   - libopenblas-dev (linear algebra for the ranking metrics)
#   - ONNX Runtime 1.31.1, the CPU library from the PyPI `onnxruntime` wheel, into .ort/
#   - the `onnx` Python package into .ort/py (the tests run onnx.checker on exported students)
#   - Debian's chromium and chromium-driver (the dashboard's browser tests drive a headless Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_VERSION=1.31.1
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo=sudo
missing=""
for pkg in libopenblas-dev chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -f ".ort/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "setup: installing ONNX Runtime $ORT_VERSION into .ort/" >&2
  python3 -m pip install -q --disable-pip-version-check --no-deps --target .ort "onnxruntime==$ORT_VERSION"
fi
ONNX_VERSION=1.23.2
if [ ! -f ".ort/py/onnx-$ONNX_VERSION.dist-info/METADATA" ]; then
  echo "setup: installing the onnx $ONNX_VERSION Python package into .ort/py" >&2
  python3 -m pip install -q --disable-pip-version-check --target .ort/py "onnx==$ONNX_VERSION"
fi
