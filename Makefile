# trustml-lab: the two commands are `make lab` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAB_ARGS ?=
# JupyterLab refuses to run as root (Docker, Colab) unless told it may.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Tests: one torch thread per process, two processes, no progress bars; notebooks keep
# matplotlib's inline backend, as in Jupyter (nbval does not compare images).
TEST_ENV := TRUSTML_THREADS=1 TRUSTML_PROGRESS=0 PYTHONHASHSEED=0
WORKERS ?= 2
NBVAL := --nbval-lax --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: lab test test-package test-notebooks bench notebooks execute venv clean

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

lab: venv
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS)

test: test-package test-notebooks

test-package: venv
	$(TEST_ENV) $(BIN)/python -m pytest -n $(WORKERS) --doctest-modules trustml_lab tests -p no:cacheprovider

test-notebooks: venv
	$(TEST_ENV) $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile $(NBVAL) notebooks solutions

bench: venv
	$(BIN)/python -m benchmarks $(CHAPTERS)

notebooks: venv
	$(BIN)/python scripts/make_student_notebooks.py

# Same environment as the tests; the inline backend draws the plots the committed notebooks keep.
execute: venv
	$(TEST_ENV) $(BIN)/python scripts/execute_notebooks.py $(NB)
	$(BIN)/python scripts/make_student_notebooks.py

clean:
	rm -rf $(VENV)
