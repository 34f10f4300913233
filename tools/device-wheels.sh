#!/usr/bin/env bash
# Download, into .whl/ at the repository root, the Python wheels that the GPU machine lacks, for its
# Python 3.12 on x86-64, so `make gpu-check` (and the service, the benches, the gpu tests) runs there
# from the source tree with nothing else installed. Its image (as last listed, 2026-11) already has
# torch 2.11, torchvision, numpy, safetensors, onnx, onnxscript, onnxruntime (CPU), prometheus-client,
# pillow, httpx, pytest, pytest-timeout, hypothesis, regex, tqdm, timm, huggingface-hub, psutil,
# uvloop, matplotlib, click, h11 and anyio; this adds what the project imports beyond them:
# open_clip (+ ftfy, wcwidth), FastAPI and its stack, fastapi-offline (the /docs assets), httptools,
# orjson, opentelemetry-api. Extra package names may be passed as arguments (check a name against the image first).
# A copy of the workplace's script, which lacked fastapi-offline (service/api/routes/docs.py imports it).
#
# Then, on the GPU machine, from the repository root (docs/PERFORMANCE.md, "How to run the GPU check"):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"  # .whl/ is in .gitignore: the wheels travel to the GPU machine only when `carry` names them
mkdir -p .whl
# The versions the development machines test with (pip list of `make install`), so the GPU machine
# runs the same service code paths; opentelemetry-api is a hard requirement of FastAPI >= 0.160.
pkgs=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0
      python-multipart==0.0.34 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3
      python-dotenv==1.2.4 annotated-types==0.8.0 annotated-doc==0.0.7 typing-inspection==0.4.5
      typing-extensions==4.16.0 opentelemetry-api==1.45.2 fastapi-offline==1.7.7 httptools==0.9.0
      orjson==3.13.0 "$@")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${pkgs[@]}" 2>&1 | grep -v 'is ignored' || true
# one version of each package, or the install there stops: keep the newest wheel of each name
ls .whl | sed -E 's/-[0-9].*//' | sort | uniq -d | while read -r name; do
  ls -v .whl/"$name"-[0-9]*.whl | head -n -1 | xargs rm -f
done
ls .whl
