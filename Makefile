# trustml-lab: the two commands are `make lab` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAB_ARGS ?=
# JupyterLab refuses to run as root (Docker, Colab) unless told it may.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Tests: one torch thread per process, two processes, no progress bars; notebooks keep
# matplotlib's inline backend, as in Jupyter (nbval does not compare images).
# PYTHONPATH: the package of this checkout, also inside notebook kernels (a git worktree
# sharing another checkout's .venv still tests its own code).
# ATEN_CPU_CAPABILITY, MKL_CBWR, OPENBLAS_CORETYPE: the same vectorized code paths on every x86
# machine with AVX2 (an AVX-512 machine otherwise rounds differently in the last bits, and the
# checked notebook outputs would depend on the machine that made them).
REPRO_ENV := ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 OPENBLAS_CORETYPE=Haswell
TEST_ENV := TRUSTML_THREADS=1 TRUSTML_PROGRESS=0 PYTHONHASHSEED=0 PYTHONPATH=$(CURDIR) $(REPRO_ENV)
WORKERS ?= 2
NBVAL := --nbval-lax --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: lab test test-package test-notebooks lint bench notebooks execute venv book-deps book book-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	# torchattacks (test/benchmark reference only) pins an old requests; its code needs none of it.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt torchattacks
	$(BIN)/python -m ipykernel install --sys-prefix --name trustml-lab --display-name "Python 3 (trustml-lab)"
	touch $@

venv: $(VENV)/.installed

# The book's own dependencies (Sphinx, Jupyter Book 1.x) stay out of `make lab`.
$(VENV)/.book-installed: pyproject.toml constraints.txt | $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,book]"
	touch $@

book-deps: $(VENV)/.book-installed

lab: venv
	$(REPRO_ENV) $(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS)

test: test-package test-notebooks

# tests/test_book.py builds the book: the package tests need the book's dependencies. Its tests
# share one xdist group (--dist loadgroup), so one worker builds and checks the book while the
# other runs the rest.
test-package: venv book-deps
	$(TEST_ENV) $(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup --doctest-modules trustml_lab tests scripts -p no:cacheprovider

test-notebooks: venv
	$(TEST_ENV) $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile $(NBVAL) notebooks solutions

lint: venv
	$(BIN)/ruff check trustml_lab tests scripts benchmarks solutions notebooks

bench: venv
	$(BIN)/python -m benchmarks $(CHAPTERS)

notebooks: venv
	$(BIN)/python scripts/make_student_notebooks.py

# Same environment as the tests; the inline backend draws the plots the committed notebooks keep.
execute: venv
	$(TEST_ENV) $(BIN)/python scripts/execute_notebooks.py $(NB)
	$(BIN)/python scripts/make_student_notebooks.py

# The course website in _build/html: README, every notebook of solutions/ with its committed
# outputs, the API reference; offline (scripts/build_book.py). book-check opens every page in
# headless Chromium and writes screenshots to _build/screenshots (scripts/check_book.py).
book: book-deps
	$(TEST_ENV) $(BIN)/python scripts/build_book.py

book-check: book
	$(BIN)/python scripts/check_book.py _build/html --screenshots _build/screenshots

clean:
	rm -rf $(VENV)
