# Two commands do all the set-up: `make test` and `make demo` build .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# setuptools' notice on every editable install (InformationOnly, "Editable installation."): not a problem
EDITABLE_NOTICE := ignore:Editable installation:UserWarning

.PHONY: test lint docs demo venv labelstudio benchmark clean-stores

venv: $(STAMP)

# One line per step; pip itself stays quiet (its own warnings still show).
$(STAMP): pyproject.toml
	@if test -x $(PY); then echo "venv 1/4: $(VENV) is there"; \
	else echo "venv 1/4: $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); fi
	@echo "venv 2/4: pip"
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "venv 3/4: torch 2.14.1 and torchvision 0.29.1 (large: a few minutes the first time)"
	@$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	@echo "venv 4/4: wsss and its dependencies (pip install -e '.[dev]', SAM2 without its CUDA extension)"
	@SAM2_BUILD_CUDA=0 PYTHONWARNINGS="$(EDITABLE_NOTICE)" $(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "venv: ready ($(VENV))"

# Label Studio (for the review round-trip test) in its own venv: its SDK pins numpy and OpenCV
# versions .venv does not have. Installed beside .venv (both at once); a no-op once there. Where
# it cannot be installed the round-trip test skips, saying why.
labelstudio:
	$(PYTHON) tests/labelstudio_server.py || echo "Label Studio is not installed: tests/test_labelstudio.py will skip"

lint: $(STAMP)
	$(VENV)/bin/ruff check wsss tests jobs docs/hooks

# The documentation site, strict: a broken link or anchor fails the build (site/, git-ignored).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

test:
	$(MAKE) --no-print-directory -j2 venv labelstudio
	$(VENV)/bin/ruff check wsss tests jobs docs/hooks
	$(MAKE) --no-print-directory docs
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) jobs/sweep.py --config jobs/configs/demo.yaml

# The CPU figures in docs/performance.md, in one command (about 45 minutes on 2
# cores): every stage against its plain reference, then the scaling run.
benchmark: $(STAMP)
	$(PY) jobs/benchmark.py --out results/benchmark-cpu.json
	$(PY) jobs/benchmark.py --scaling 1000,4000,16000 --scaling-size 64 --scaling-sweep 1000,4000 \
	    --out results/scaling --scratch results/scaling-data

clean-stores:
	rm -rf data/synthetic-pets stores results mlflow/mlflow.db mlflow/artifacts
