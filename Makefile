# deeplab-edu: every command sets itself up first (a local .venv with pinned versions),
# and re-running it when nothing changed installs nothing.
#
#   make lab    set up, then open the course in JupyterLab (.py notebooks open as notebooks)
#   make test   set up, then run the whole test suite (notebooks in the smoke profile, the book)
#   make book   set up, execute the notebooks (2 at a time) and write the HTML book to book/_build/html
#   make test-notebook NB=03    run one notebook's tests (any part of its file name)
#   make check  the fast static checks, before a push (lint, docstrings, doctests, exercises, book index)
#   make setup  only set up: the .venv with the pinned versions (the commands above do it first)
#   make test-compat  the tests on the GPU machine's older torch 2.11 / torchvision 0.26 (CPU; online)
#   make student-copy  the chapters without their exercises' solutions, in student-copy/ (OUT=DIR);
#                      a class opens it with make lab LAB_DIR=student-copy
#   make clean  remove the built book and pytest's cache
#   make course-runs  before class: train every run chapters 08-11 load into runs/ (cpu profile: less
#                     than chapters 08, 09 and 11's header minutes added up; on a GPU machine
#                     DEEPLAB_EDU_PROFILE=cpu trains the laptops' runs on its CPU)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deeplab-edu-installed
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
LAB_SERVER_CONFIG := $(VENV)/etc/jupyter/jupyter_server_config.json
export PATH := $(abspath $(BIN)):$(PATH)
PYTEST_ARGS ?=
# notebooks executed at the same time by `make book` (each in its own kernel)
JOBS ?= 2
# JupyterLab refuses to start as root (containers, some VMs) unless told it may.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
# The oldest versions the code must run on (the GPU machine's), for `make test-compat`: installed
# without their dependencies into a folder that goes first on PYTHONPATH, beside the pinned .venv.
# The folder `make lab` opens: the chapters, or a class's copy of them (`make lab LAB_DIR=student-copy`).
LAB_DIR ?= notebooks

COMPAT_TORCH ?= 2.11.0
COMPAT_TORCHVISION ?= 0.26.0
COMPAT_DIR := .venv-compat/torch-$(COMPAT_TORCH)

.PHONY: setup lab test check book test-notebook test-compat course-runs student-copy clean help
.DEFAULT_GOAL := help

help:
	@sed -n '1,/^$$/p' Makefile | sed -n 's/^# \{0,1\}//p'  # the comment block at the top, whatever its length

# The stamp holds the folder the .venv was made in: a virtual environment cannot move (its scripts name
# its python by its full path), so a checkout moved or renamed makes its .venv again (a portability trial:
# `make lab` failed with ".venv/bin/python: not found" and `make setup` had nothing to do).
# (A stamp of before this check is empty: then pip's first line, #!<folder>/bin/python3, names the folder.)
VENV_HOME := $(abspath $(VENV))
VENV_MADE_IN := $(shell if test -s "$(STAMP)"; then cat "$(STAMP)"; elif test -f "$(BIN)/pip"; then \
  sed -n '1s|^\#!\(.*\)/bin/python[0-9.]*$$|\1|p' "$(BIN)/pip"; fi)
VENV_MOVED_FROM := $(shell test -n "$(VENV_MADE_IN)" && test "$(VENV_MADE_IN)" != "$(VENV_HOME)" && echo "$(VENV_MADE_IN)")
.PHONY: venv-moved
venv-moved: ;
# editable_mode=compat: the package's folder on sys.path (a .pth line), which mypy and pyright follow, so a
# learner's own code that imports deeplab_edu is type-checked against its hints (setuptools' default import
# hook is invisible to them); the line is made relative (book.make_editable_path_relative: ASCII under LC_ALL=C)
# --no-cache-dir: the wheels downloaded (torch and its CUDA libraries, 2.7 GB) are not kept a second time in
# pip's cache, where PyPI's answers are cacheable; a clean CI machine ran out of disk space in this install
# ("[Errno 28] No space left on device"; at its peak the downloads and the .venv take about 10 GB together)
$(STAMP): pyproject.toml constraints.txt $(if $(VENV_MOVED_FROM),venv-moved)
	@if [ -n "$(VENV_MOVED_FROM)" ]; then echo "$(VENV) was made in $(VENV_MOVED_FROM), and a virtual" \
	  "environment cannot move: making it again here"; rm -rf "$(VENV)"; fi
	@echo "Setting up $(VENV): installing the pinned packages of constraints.txt (the first time: several" \
	  "minutes and a few GB to download; later only when the pins change)..."
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  "deeplab-edu needs Python 3.11 or newer (its pinned numpy, SciPy and Matplotlib have no wheels for " \
	  + sys.version.split()[0] + "): run make with PYTHON=python3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-cache-dir -c constraints.txt \
	  -e ".[dev]" --config-settings editable_mode=compat
	@$(BIN)/python -S -c 'import sys, sysconfig; site = sysconfig.get_paths(vars={"base": sys.argv[1], \
	  "platbase": sys.argv[1]})["purelib"]; sys.path.append(site); \
	  from deeplab_edu.book import make_editable_path_relative; make_editable_path_relative(site)' "$(VENV_HOME)"
	@printf '%s\n' "$(VENV_HOME)" > $(STAMP)
	@echo "$(VENV) is ready."

# chapters (.py) open as notebooks; no news pop-up and no update check (the course runs offline)
$(LAB_SETTINGS): $(STAMP) Makefile
	@mkdir -p $(dir $@)
	@printf '%s\n' '{' \
	  '  "@jupyterlab/docmanager-extension:plugin": {' \
	  '    "defaultViewers": {"python": "Jupytext Notebook"}' \
	  '  },' \
	  '  "@jupyterlab/apputils-extension:notification": {' \
	  '    "fetchNews": "false", "checkForUpdates": false' \
	  '  }' '}' > $@

# the kernels' channels encrypted (CurveZMQ keys from jupyter_client; ipykernel warns of plain text otherwise),
# and the contents manager that opens a chapter unchanged (deeplab_edu/lab.py); written again when they change
$(LAB_SERVER_CONFIG): $(STAMP) deeplab_edu/book.py
	@$(BIN)/python -c 'from deeplab_edu.book import write_lab_server_config; write_lab_server_config()'

setup: $(STAMP) $(LAB_SETTINGS) $(LAB_SERVER_CONFIG)

# the addresses Lab prints (and the page a browser opens) go to the first chapter, not to the Launcher
lab: setup
	@echo "The course starts at chapter 00, Start here: Lab prints its address below (.../lab/tree/00_start_here.py?token=...)"
	$(BIN)/jupyter lab --ServerApp.root_dir="$(LAB_DIR)" --LabApp.default_url=/lab/tree/00_start_here.py $(LAB_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# what a unit test and a notebook run do not check; `make test` runs these too (CONTRIBUTING.md)
# (test_notebooks.py without the notebooks' runs: the chapters' static checks; test_cli.py's presets)
CHECK_TESTS := tests/test_lint.py tests/test_exercises.py tests/test_exercise_answers.py tests/test_book.py tests/test_lab.py \
	tests/test_readme.py tests/test_environment.py tests/test_benchmark_records.py tests/test_notebooks.py
check: setup
	$(BIN)/python -m pytest -q -m "not slow and not book and not browser and not notebook" $(CHECK_TESTS)
	$(BIN)/python -m pytest -q -m "not slow" tests/test_cli.py -k presets

test-notebook: setup
	$(BIN)/python -m pytest tests/test_notebooks.py -k "$(NB)" $(PYTEST_ARGS)

# Everything but the set-up, browser and JupyterLab tests (they do not depend on torch's version) and
# mypy (it checks the hints against the pinned torch's stubs; 2.11's lack Module.to(memory_format=)).
test-compat: setup
	@test -f $(COMPAT_DIR)/.installed || { PIP_CONSTRAINT= $(BIN)/python -m pip install --quiet \
	  --disable-pip-version-check --no-cache-dir --no-deps --target $(COMPAT_DIR) torch==$(COMPAT_TORCH) \
	  torchvision==$(COMPAT_TORCHVISION) && touch $(COMPAT_DIR)/.installed \
	  || { echo "make test-compat: could not install torch==$(COMPAT_TORCH) torchvision==$(COMPAT_TORCHVISION)" \
	       "into $(COMPAT_DIR) (this needs the package registry: are you online?)" >&2; exit 1; }; }
	PYTHONPATH="$(abspath $(COMPAT_DIR))" $(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'from', torch.__file__)"
	PYTHONPATH="$(abspath $(COMPAT_DIR))" $(BIN)/python -m pytest -p no:cacheprovider --ignore=tests/test_environment.py \
	  --ignore=tests/test_browser.py --ignore=tests/test_lab.py --deselect tests/test_lint.py::test_mypy_finds_nothing \
	  $(PYTEST_ARGS)

book: setup
	$(BIN)/python -m deeplab_edu.book --jobs $(JOBS)

course-runs: setup
	$(BIN)/deeplab-edu course-runs

OUT ?= student-copy
student-copy: setup
	$(BIN)/python -m deeplab_edu.book student-copy "$(OUT)"

clean:
	rm -rf book/_build .pytest_cache
