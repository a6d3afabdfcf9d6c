# Targets behind the README's two commands: `make reproduce` and `make test`. Every job goes through the `m2s`
# command; the install comes from the lock file (requirements-lock.txt, compiled from pyproject.toml) unless LOCKED=0.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
M2S := $(VENV)/bin/m2s
STAMP := $(VENV)/.m2s-installed
LOCK ?= requirements-lock.txt
LOCKED ?= 1
EXTRAS := dev,notebooks,site,course
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

.PHONY: help venv install reproduce test lint site course-release course-grade ablations upgrade-lock clean

help:
	@echo "make reproduce   set up .venv and run the offline reproduction (PROFILE=$(PROFILE) DATA=$(DATA))"
	@echo "make test        set up .venv and run the test suite"
	@echo "make lint        ruff + m2s nbcheck (clean, papermill-ready notebooks with short cells)"
	@echo "make ablations   seeded ablation study, Tables 9-11 with CIs (PRESET=cpu on 2 cores, wall time in docs/ablations.md; PRESET=paper DATA=... DEVICE=cuda)"
	@echo "make course-release  nbgrader course in COURSE=$(COURSE) (ASSIGNMENTS=\"01 05\", OVERWRITE=1)"
	@echo "make course-grade    grade SUBMISSIONS=<dir>/<student>/<assignment>/ into COURSE/grades.csv"
	@echo "make site        the course website from runs/latest (RUN=runs/<run>; CHECK=1: headless-Chromium check)"
	@echo "make upgrade-lock  recompile $(LOCK) from pyproject.toml with the newest allowed releases"
	@echo "install: from $(LOCK) (LOCKED=0: from pyproject.toml's ranges instead)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	-$(PY) -m pip install -q --upgrade pip

venv: $(PY)

$(STAMP): pyproject.toml $(LOCK) | $(PY)
ifeq ($(LOCKED),1)
	$(PY) -m pip install -r $(LOCK) -e ".[$(EXTRAS)]"
else
	$(PY) -m pip install -e ".[$(EXTRAS)]"
endif
	touch $(STAMP)

install: $(STAMP)

reproduce: install
	$(M2S) reproduce --profile $(PROFILE) $(if $(DATA),--data-root $(DATA)) $(if $(DEVICE),--device $(DEVICE))

test: install
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing (exit 5)"; exit 1; fi; \
	exit $$rc

lint: install
	$(VENV)/bin/ruff check m2s_lib tests benchmarks data_scripts
	$(M2S) nbcheck notebooks --overrides tests/notebook_overrides.yaml

# The course website from a run's executed notebooks (no re-execution): <run>/site/index.html.
RUN ?=
CHECK ?=
site: install
	$(M2S) site $(if $(RUN),--run $(RUN)) $(if $(CHECK),--check)

# The classroom (docs/teaching.md): student versions of notebooks 01-09 with nbgrader, then autograding.
COURSE ?= runs/course
SUBMISSIONS ?= $(COURSE)/submitted
ASSIGNMENTS ?=
OVERWRITE ?=
course-release: install
	$(M2S) course release --out $(COURSE) $(if $(ASSIGNMENTS),--assignments $(ASSIGNMENTS)) $(if $(OVERWRITE),--overwrite)

course-grade: install
	$(M2S) course grade --course $(COURSE) --submissions $(SUBMISSIONS)

# The ablation study (docs/ablations.md): resumable; run it again to continue or to add SEEDS="0 1 2 3 4".
PRESET ?= cpu
JOBS ?= $(if $(filter cpu,$(PRESET)),2,1)
SEEDS ?=
ablations: install
	$(M2S) ablations run --preset $(PRESET) --jobs $(JOBS) $(if $(DATA),--data-root $(DATA)) $(if $(DEVICE),--device $(DEVICE)) $(if $(SEEDS),--seeds $(SEEDS))

# The lock: every package of pyproject.toml and its extras, pinned, for Python 3.11 on Linux (torch and torchvision
# capped by constraints.txt). pyproject.toml keeps its ranges for library users.
upgrade-lock: install
	$(PY) -m piptools compile --quiet --upgrade --all-extras --strip-extras --no-emit-index-url --no-emit-find-links \
		--no-emit-trusted-host -c constraints.txt -o $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache
