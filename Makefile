# Two commands do all the set-up: `make test` and `make demo` build .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test lint demo venv labelstudio benchmark clean-stores

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Label Studio (for the review round-trip test) in its own venv: its SDK pins numpy and OpenCV
# versions .venv does not have. Installed beside .venv (both at once); a no-op once there. Where
# it cannot be installed the round-trip test skips, saying why.
labelstudio:
	$(PYTHON) tests/labelstudio_server.py || echo "Label Studio is not installed: tests/test_labelstudio.py will skip"

lint: $(STAMP)
	$(VENV)/bin/ruff check wsss tests jobs

test:
	$(MAKE) --no-print-directory -j2 venv labelstudio
	$(VENV)/bin/ruff check wsss tests jobs
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) jobs/sweep.py --config jobs/configs/demo.yaml

# The CPU figures in the README's Performance section, in one command (about 45 minutes on 2
# cores): every stage against its plain reference, then the scaling run.
benchmark: $(STAMP)
	$(PY) jobs/benchmark.py --out results/benchmark-cpu.json
	$(PY) jobs/benchmark.py --scaling 1000,4000,16000 --scaling-size 64 --scaling-sweep 1000,4000 \
	    --out results/scaling --scratch results/scaling-data

clean-stores:
	rm -rf data/synthetic-pets stores results mlflow/mlflow.db mlflow/artifacts
