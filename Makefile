# The README's two commands: `make demo` and `make test`. Both build .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# glibc malloc tuning: large tensors are allocated and freed constantly (re_pipeline.training.tune_malloc does the same at run time).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000
export MALLOC_TOP_PAD_ := 1000000000

.PHONY: install demo test lint bench-load bench-ingest bench-dag clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, so nothing pulls another build: pip's configured wheels (a local CPU wheel on CI), or
	# TORCH_INDEX, e.g. https://download.pytorch.org/whl/cpu on a machine where PyPI would give the CUDA build
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/re-pipeline db init
	$(BIN)/re-pipeline demo

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest -q

bench-load: install
	$(BIN)/python bench/load_bench.py

bench-ingest: install
	$(BIN)/python bench/ingest_bench.py

bench-dag: install  # needs trained models at the paths below (models/README.md: how each kind is trained)
	$(BIN)/python bench/dag_bench.py --spert models/spert-docred --docred models/docred-twostep \
		--coref models/coref-redocred --runs 3

clean:
	rm -rf $(VENV) .re_pipeline .pytest_cache .ruff_cache
