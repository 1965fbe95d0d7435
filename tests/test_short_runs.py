"""The short-run benchmark's own problem (the GPR closure) against SciPy's Gaussian density, and
one of its child calls end to end for flatvec and the SciPy bridge."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks/` is a folder of the repository, not installed

from benchmarks import short_runs  # noqa: E402


def test_the_gpr_closure_is_the_negative_log_marginal_likelihood():
    inst = short_runs.gpr_closure(seed=3)
    loss_fn, variables = inst.minimize_args
    log_length, log_variance, log_noise = (float(v.numpy()) for v in variables)
    rng = np.random.default_rng(1)  # the problem's data, drawn the same way
    x = rng.uniform(0.0, 10.0, (short_runs.GPR_POINTS, 1))
    y = np.sin(x[:, 0]) + 0.3 * np.cos(3.0 * x[:, 0]) + 0.1 * rng.normal(
        size=short_runs.GPR_POINTS)
    squared = (x - x.T) ** 2
    kernel = np.exp(log_variance) * np.exp(-0.5 * squared / np.exp(2 * log_length))
    kernel += (np.exp(log_noise) + 1e-6) * np.eye(len(x))
    expected = -multivariate_normal(np.zeros(len(x)), kernel).logpdf(y)
    np.testing.assert_allclose(float(loss_fn().numpy()), expected, rtol=1e-10)


@pytest.mark.parametrize("view", ["first@10", "fresh@40"])
def test_flatvec_and_the_bridge_reach_the_same_fit(view):
    ours = short_runs._child("gpr-closure-f64", "flatvec:lbfgs", view)
    bridge = short_runs._child("gpr-closure-f64", "scipy:L-BFGS-B", view)
    assert ours["wall"] > 0 and bridge["wall"] > 0
    assert ours["nit"] <= int(view.split("@")[1])
    if view == "fresh@40":  # both converge: the same maximum likelihood fit
        np.testing.assert_allclose(ours["loss"], bridge["loss"], rtol=1e-7)
