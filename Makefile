# One entry point for developers and CI. `make install` is idempotent: it re-runs pip only when
# pyproject.toml or constraints.txt changed since the last successful install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-gpu lint serve bench-text bench-train-step bench-train clean

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
	$(BIN)/ruff check models training service tests bench clipserve_cli.py
	$(BIN)/ruff format --check models training service tests bench clipserve_cli.py
	$(BIN)/mypy models training service clipserve_cli.py

serve: install
	$(BIN)/clipserve serve --host 127.0.0.1 --port 8000

bench-text: install
	$(BIN)/python bench/text_truncation.py --out docs/PERFORMANCE-text.md

bench-train-step: install
	$(BIN)/python bench/train_step.py --out docs/PERFORMANCE-train-step.md

# On the GPU machine: CoOp 1,000 classes x 16 shots one epoch, MaPLe 5 epochs (issue 5 targets).
bench-train: install
	$(BIN)/python bench/train_epoch.py --json docs/PERFORMANCE-train.json --out docs/PERFORMANCE-train.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
