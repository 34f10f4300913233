# One entry point for developers and CI. `make install` is idempotent: it re-runs pip only when
# pyproject.toml or constraints.txt changed since the last successful install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-gpu lint serve deploy-check deploy-generate bench-text bench-ceiling bench-train-step bench-train bench-methods demo-checkpoints reliability clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,train]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-gpu: install
	$(BIN)/python -m pytest -q -m gpu

lint: install
	$(BIN)/ruff check models training service tests bench deploy clipserve_cli.py
	$(BIN)/ruff format --check models training service tests bench deploy clipserve_cli.py
	$(BIN)/mypy models training service deploy clipserve_cli.py

# `make serve` runs the bundled demo (models/demo): a small ViT CLIP pretrained on the procedural
# shapes world, with the built-in `zeroshot` model and three prompt checkpoints, one per lane:
# `world-coop` (the default; shared encoder pass), `world-cocoop` (image-conditioned text) and
# `world-maple` (prompted image tower). The demo checkpoints are copied into $(CHECKPOINT_DIR),
# which is watched: drop more *.safetensors trained on the demo backbone there and they are
# served by file stem.
# Other weights: make serve SERVE_ARGS="--arch ViT-B-16-quickgelu --pretrained FILE" (see README).
CHECKPOINT_DIR ?= runs/checkpoints
SERVE_ARGS     ?= --arch clipserve-demo-vit --pretrained models/demo/backbone.safetensors --default-model world-coop
serve: install
	mkdir -p $(CHECKPOINT_DIR)
	cp -u models/demo/checkpoints/*.safetensors $(CHECKPOINT_DIR)/
	$(BIN)/clipserve serve --host 127.0.0.1 --port 8000 --checkpoint-dir $(CHECKPOINT_DIR) $(SERVE_ARGS)

# Deployment checks with the real tools: promtool (config, rules, rule unit tests), the compose-spec
# schema, kustomize + Kubernetes schemas, and tests/deploy (a real Prometheus scraping clipserve).
# Installs the tools on first use into .tools/ (and Debian's prometheus with apt: needs root).
deploy-check: install
	bash deploy/check.sh

# Rewrite the generated deploy files (Grafana dashboard JSON, Kubernetes PrometheusRule).
deploy-generate: install
	$(BIN)/python deploy/generate.py

# Text encoder, full 77-token context vs truncated: rewrites its section of docs/PERFORMANCE.md.
# On the H200: make bench-text DEVICE=cuda BENCH_ARGS="--precision bf16"
DEVICE     ?= cpu
BENCH_ARGS ?=
bench-text: install
	$(BIN)/python bench/text_truncation.py --device $(DEVICE) $(BENCH_ARGS)

# Image path ceiling (encoder eager / CUDA graphs per batch size, batched JPEG decode + resize, both
# back to back): rewrites its section of docs/PERFORMANCE.md and docs/ceiling-$(DEVICE).png.
# On the H200: make bench-ceiling DEVICE=cuda   (ViT-B-32, bf16, random weights, batch 1..256)
# Here:        make bench-ceiling BENCH_ARGS="--batch-sizes 1,4,16,32 --images 32 --repeats 3"
bench-ceiling: install
	$(BIN)/python bench/ceiling.py --device $(DEVICE) $(BENCH_ARGS)

# Image encoder on the CPU, torch eager vs ONNX Runtime: img/s, profile, levers, docs/onnx-cpu.png.
# First request with 1,000 new labels vs cached, through a real server; on the H200:
# make bench-text-first DEVICE=cuda BENCH_ARGS="--arch ViT-B-32 --pretrained random"
.PHONY: bench-onnx-cpu bench-text-first bench-e2e
bench-onnx-cpu: install
	$(BIN)/python bench/onnx_cpu.py $(BENCH_ARGS)

bench-text-first: install
	$(BIN)/python bench/text_first_request.py --device $(DEVICE) $(BENCH_ARGS)

# End to end through HTTP: clipserve vs the hand-written baseline at 1/16/64/256 clients, single and
# 32-image requests, 10 and 1,000 labels; rewrites its section of docs/PERFORMANCE.md + a plot.
# On the H200: make bench-e2e DEVICE=cuda BENCH_ARGS="--arch ViT-B-32 --seconds 8"
bench-e2e: install
	$(BIN)/python bench/e2e.py --device $(DEVICE) $(BENCH_ARGS)

# Methods on the procedural world: every method with the papers' protocols (few-shot, base-to-new,
# domain shift, cross-dataset, SHIP's setting, ProtoCLIP vs InfoNCE), 3 seeds, on the demo ViT,
# on the CPU (24-45 minutes on 2 cores, by load): writes docs/METHODS.md, METHODS.json, docs/methods/.
# Smoke run: make bench-methods BENCH_ARGS="--quick --out /tmp/methods/METHODS.md"
bench-methods: install
	$(BIN)/python bench/methods.py $(BENCH_ARGS)

# Retrain the demo prompt checkpoints (models/demo/checkpoints) on the demo backbone.
demo-checkpoints: install
	CLIPSERVE=$(BIN)/clipserve bash models/demo/build_checkpoints.sh

bench-train-step: install
	$(BIN)/python bench/train_step.py --out docs/PERFORMANCE-train-step.md

# On the GPU machine: CoOp 1,000 classes x 16 shots one epoch, MaPLe 5 epochs (issue 5 targets).
bench-train: install
	$(BIN)/python bench/train_epoch.py --json docs/PERFORMANCE-train.json --out docs/PERFORMANCE-train.md

# Load, overload, hot swap under load, SIGTERM drain, restart: rewrites the results of
# docs/RELIABILITY.md. RELIABILITY_ARGS=--short for the ~1 minute CI size (default: 10 minutes sustained).
RELIABILITY_ARGS ?=
reliability: install
	$(BIN)/python bench/reliability.py --device $(DEVICE) --out docs/RELIABILITY.md $(RELIABILITY_ARGS)

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

# Worker processes: single-image requests/s with --workers 1 and 2 (same load, one run) and how fast
# a swap reaches every worker; rewrites its section of docs/PERFORMANCE.md. On the H200 (issue 17):
# make bench-workers DEVICE=cuda BENCH_ARGS="--arch ViT-B-32 --workers 1 2 4 8 --clients 64 256"
.PHONY: bench-workers
bench-workers: install
	$(BIN)/python bench/workers.py --device $(DEVICE) $(BENCH_ARGS)

# GPU check (issue 16): one prepared command that validates the GPU path in at most 8 minutes and
# writes one JSON plus the GPU sections of docs/PERFORMANCE.md: the gpu tests (the concurrent nvJPEG
# decode test among them), the image ceiling, end to end on ViT-B-32, the first request with 1,000 new
# labels, a short reliability run (GPU memory, hot swap on CUDA), one training step per method on
# ViT-B-16 (bench/gpu_check.py). `make gpu-check DEVICE=cpu`: the same stages at a smoke size (tiny
# model; 2 to 3.5 minutes on a shared 2-core machine, by load; CI runs it). No install, no console script: with no
# .venv (the GPU machine) python3 runs it from the source tree. On the GPU machine (see
# docs/PERFORMANCE.md, "How to run the GPU check"): here `bash tools/device-wheels.sh`, then the
# device tool's `run` with carry [".whl"] and timeout_s 540 and this command (make is not listed on
# that image, so it calls the script):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; python3 bench/gpu_check.py --json $OUT/gpu-check.json --log $OUT/gpu-check.log; cp docs/PERFORMANCE.md docs/PERFORMANCE-train-step.md docs/ceiling-cuda.png docs/e2e-cuda.png $OUT/
GPU_CHECK_DEVICE := $(if $(filter command line environment,$(origin DEVICE)),$(DEVICE),cuda)
GPU_CHECK_PYTHON ?= $(shell test -x $(BIN)/python && echo $(BIN)/python || echo python3)
GPU_CHECK_ARGS   ?=
.PHONY: gpu-check
gpu-check:
	$(GPU_CHECK_PYTHON) bench/gpu_check.py --device $(GPU_CHECK_DEVICE) $(GPU_CHECK_ARGS)

# Service overhead (issue 16): clipserve (tiny model; identity encoder) against a bare FastAPI
# endpoint, single- and 32-image requests of 64x48 JPEGs, requests/s and server CPU us/request in one
# run, plus a py-spy per-stage profile; rewrites its section of docs/PERFORMANCE.md (~4 minutes).
.PHONY: bench-overhead
bench-overhead: install
	$(BIN)/python bench/overhead.py $(BENCH_ARGS)
