# Two commands on a fresh machine: `make run` (whole pipeline on synthetic data) and `make test`.
SHELL := /bin/bash
VENV := .venv
# The interpreter that bootstraps uv: found before .venv/bin goes on PATH.
PY := $(or $(shell command -v python3.11 2>/dev/null),$(shell command -v python3 2>/dev/null))
export UV_PYTHON_DOWNLOADS := never
# Python keeps each module it compiles (.pyc, in .venv and src): with PYTHONDONTWRITEBYTECODE set, every process
# (each test worker, CLI run, DVC stage, Spark worker) compiled every module it imports again (~13 s a process).
unexport PYTHONDONTWRITEBYTECODE
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test bench clean example figures notebook

$(VENV)/.installed: pyproject.toml uv.lock
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==0.13.9"
	$(PY) -m uv sync --frozen --extra dev --extra spark --python $(PY)
	@touch $@

setup: $(VENV)/.installed

run: setup
	dvc repro

# README's result figures, generated from reports/metrics.json (after `make run`).
figures: setup
	leadscore figures --write

# Run the exploration notebook top to bottom against data/features (after `make run`).
notebook: setup
	cd notebooks && python -c "import nbformat; from nbclient import NotebookClient; nb = nbformat.read('explore.ipynb', 4); NotebookClient(nb, timeout=300, kernel_name='python3').execute(); nbformat.write(nb, 'explore.out.ipynb'); print('ran notebooks/explore.ipynb -> notebooks/explore.out.ipynb')"

test: setup
	pytest

bench: setup
	python benchmarks/features.py

clean:
	rm -rf data reports outputs .pytest_cache

# The real X Education export (leads only, no timestamps) through validate → features → train.
XE := data/x_education
example: setup
	leadscore validate --params examples/x_education/params.yaml --out $(XE)/validated
	leadscore features --params examples/x_education/params.yaml --in $(XE)/validated --out $(XE)/features
	leadscore train --params examples/x_education/params.yaml --features $(XE)/features --models $(XE)/models \
		--reports $(XE)/reports --outputs $(XE)/outputs
