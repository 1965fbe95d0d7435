# `make test` and `make bench` each create .venv on first use and install what they need.
# Tests run in one worker process per core (pytest-xdist), each test file in one worker so that
# a file's tests keep their order (several reuse what an earlier one traced).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# The tests that show flatvec runs without private TensorFlow/Keras API (flatvec/_tf): part of
# `make test`; `make test-public` runs the whole suite that way.
PUBLIC_CHECK := tests/test_keras_optimizer.py tests/test_buffers.py tests/test_tiers.py \
	tests/test_driver.py tests/test_versions.py

.PHONY: test test-public bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

test: $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pytest -q -n auto --dist loadfile
	FLATVEC_PRIVATE_TF=0 $(PY) -m pytest -q -n auto --dist loadfile $(PUBLIC_CHECK)

test-public: $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	FLATVEC_PRIVATE_TF=0 $(PY) -m pytest -q -n auto --dist loadfile

bench: $(PY)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(PY)
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
