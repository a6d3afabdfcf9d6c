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

.PHONY: help venv install reproduce test lint site course-release course-grade ablations clean

help:
	@echo "make reproduce   set up .venv and run the offline reproduction (PROFILE=$(PROFILE) DATA=$(DATA))"
	@echo "make test        set up .venv and run the test suite"
	@echo "make lint        ruff + notebook-output check"
	@echo "make ablations   seeded ablation study, Tables 9-11 with CIs (PRESET=cpu: ~20 min on 2 idle cores; PRESET=paper DATA=... DEVICE=cuda)"
	@echo "make course-release  nbgrader course in COURSE=$(COURSE) (ASSIGNMENTS=\"01 05\", OVERWRITE=1)"
	@echo "make course-grade    grade SUBMISSIONS=<dir>/<student>/<assignment>/ into COURSE/grades.csv"
	@echo "make site        the course website from runs/latest (RUN=runs/<run>; CHECK=1: headless-Chromium check)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	-$(PY) -m pip install -q --upgrade pip

venv: $(PY)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[dev,notebooks,site,course]"
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

# The classroom (docs/teaching.md): student versions of notebooks 01-09 with nbgrader, then autograding.
COURSE ?= runs/course
SUBMISSIONS ?= $(COURSE)/submitted
ASSIGNMENTS ?=
OVERWRITE ?=
course-release: install
	$(PY) -m m2s_lib.cli course release --out $(COURSE) $(if $(ASSIGNMENTS),--assignments $(ASSIGNMENTS)) $(if $(OVERWRITE),--overwrite)

course-grade: install
	$(PY) -m m2s_lib.cli course grade --course $(COURSE) --submissions $(SUBMISSIONS)

# The ablation study (docs/ablations.md): resumable; run it again to continue or to add SEEDS="0 1 2 3 4".
PRESET ?= cpu
JOBS ?= $(if $(filter cpu,$(PRESET)),2,1)
SEEDS ?=
ablations: install
	$(PY) -m m2s_lib.cli ablations run --preset $(PRESET) --jobs $(JOBS) $(if $(DATA),--data-root $(DATA)) $(if $(DEVICE),--device $(DEVICE)) $(if $(SEEDS),--seeds $(SEEDS))

clean:
	rm -rf $(VENV) .pytest_cache
