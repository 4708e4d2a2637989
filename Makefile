# walkback: two commands do all the set-up on a fresh machine (Python >= 3.10 and pip).
#   make demo   create .venv, install, train the mog preset on the CPU, sample, evaluate, figures
#   make test   install the dev extras and run the test suite but the slow end-to-end runs
#   make test-all   the whole suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
RUN    ?= runs/demo
# torch is pinned to the version whose CPU wheel this kind of machine carries locally;
# a looser range would pull the newest CUDA build (gigabytes).
TORCH  ?= torch==2.13.0

.PHONY: demo test test-all install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"

demo: install
	$(BIN)/walkback train --preset mog --run-dir $(RUN) --overwrite
	$(BIN)/walkback sample --run-dir $(RUN) --num-samples 5000 --seed 0 --out $(RUN)/samples.npz --overwrite
	$(BIN)/walkback evaluate --run-dir $(RUN)
	@echo "figures: $(RUN)/figures/  metrics: $(RUN)/eval.json"

# two workers (one torch thread each, tests/conftest.py); worksteal keeps both busy while the
# end-to-end runs take a minute or two each
test: install-dev
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

test-all: install-dev
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
