# Two entry points for a fresh clone:
#   make demo   installs into .venv (with the browser demo's extra) and runs the main job on the bundled sample
#   make test   installs the test dependencies too and runs the tests
#   make serve  the browser demo: deepwarp-fast serve (http://127.0.0.1:8000/)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CUDA build of torch, so that the C++/CUDA extension can be built (NOTES: the CPU
# build cannot build a .cu extension). Override with TORCH_SPEC=torch==2.13.0 for a
# small CPU-only install.
TORCH_SPEC ?= torch==2.14.1
export CUDA_HOME ?= /usr/local/cuda

.PHONY: install install-test demo serve test bench env clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q "$(TORCH_SPEC)" ninja pybind11

$(VENV)/.installed: $(BIN)/python setup.py $(wildcard csrc/*)
	$(BIN)/pip install -q --no-build-isolation -e ".[face,serve]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q --no-build-isolation -e ".[face,serve,test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/deepwarp-fast demo -o demo_out

serve: install
	$(BIN)/deepwarp-fast serve

test: install-test
	$(BIN)/python -m pytest tests -q

bench: install-test
	$(BIN)/python -m pytest benchmarks -q

env: install
	$(BIN)/deepwarp-fast env

clean:
	rm -rf $(VENV) build *.egg-info demo_out
