"""The README example, examples/custom_vector_optimizer.py, run as a test (its fast variant)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_vector_optimizer.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("custom_vector_optimizer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_reaches_its_accuracy_targets(capsys):
    accuracies = _load_example().main(fast=True)
    printed = capsys.readouterr().out
    # (a) model.fit with the user's rule for 5 epochs; (b) full-batch L-BFGS via flatvec.minimize.
    assert accuracies["fit"] >= 0.90, printed
    assert accuracies["lbfgs"] >= 0.95, printed
    assert "test accuracy" in printed
