# Two commands do all set-up on a fresh Debian/Ubuntu machine:
#   make demo   runs an agent task on the embedded local model
#   make test   runs the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# llama-cpp-python builds from source; the multimodal part is not needed.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: setup bwrap demo test bench bench-local lint

setup: bwrap $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,local]'
	touch $@

bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else \
	    echo "bubblewrap is missing: run 'sudo apt-get install bubblewrap', then 'make' again"; exit 1; \
	  fi; }

demo: setup
	$(VENV)/bin/codeact run --demo --trace traces/demo.ipynb

test: setup
	$(PY) -m pytest -q -ra

bench: setup
	$(PY) benchmarks/run_all.py

bench-local: setup
	$(PY) benchmarks/bench_local_model.py

lint: setup
	$(VENV)/bin/ruff check codeact_kernel tests benchmarks
	$(VENV)/bin/mypy codeact_kernel
