# `make test` and `make bench` each create .venv on first use and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

test: $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pytest -q

bench: $(PY)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(PY)
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
