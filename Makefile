# Targets behind the README's two commands: `make reproduce` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.m2s-installed
PROFILE ?= tiny
DATA ?=
DEVICE ?=
PYTEST_ARGS ?=

# Headless and polite on small machines; override on the command line (e.g. make test THREADS=8).
THREADS ?= 2
export MPLBACKEND := Agg
export OMP_NUM_THREADS := $(THREADS)
export MKL_NUM_THREADS := $(THREADS)
export PYTHONUNBUFFERED := 1

.PHONY: help venv install reproduce test lint site clean

help:
	@echo "make reproduce   set up .venv and run the offline reproduction (PROFILE=$(PROFILE) DATA=$(DATA))"
	@echo "make test        set up .venv and run the test suite"
	@echo "make lint        ruff + notebook-output check"
	@echo "make site        the course website from runs/latest (RUN=runs/<run>; CHECK=1: headless-Chromium check)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	-$(PY) -m pip install -q --upgrade pip

venv: $(PY)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[dev,notebooks,site]"
	touch $(STAMP)

install: $(STAMP)

reproduce: install
	$(PY) -m m2s_lib.reproduce --profile $(PROFILE) $(if $(DATA),--data-root $(DATA)) $(if $(DEVICE),--device $(DEVICE))

test: install
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing (exit 5)"; exit 1; fi; \
	exit $$rc

lint: install
	$(VENV)/bin/ruff check m2s_lib tests benchmarks data_scripts
	$(PY) -m m2s_lib.teaching.nbcheck notebooks --overrides tests/notebook_overrides.yaml

# The course website from a run's executed notebooks (no re-execution): <run>/site/index.html.
RUN ?=
CHECK ?=
site: install
	$(PY) -m m2s_lib.teaching.site $(if $(RUN),--run $(RUN)) $(if $(CHECK),--check)

clean:
	rm -rf $(VENV) .pytest_cache
