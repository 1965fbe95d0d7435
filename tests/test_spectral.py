"""The spectral (Barzilai–Borwein) method and the non-monotone reference of line searches:
a closed-form minimizer, rises of f that the search accepts, the classic problems, and a
search that takes no reference refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from flatvec.algorithms.line_search_method import LineSearchMethod, Proposal
from flatvec.algorithms.spectral import BarzilaiBorwein, SpectralDirection
from flatvec.algorithms.strong_wolfe import StrongWolfe
from problems import PROBLEMS, solved

import flatvec

F64 = tf.float64
RNG = np.random.default_rng(3)
Q = RNG.normal(size=(20, 20))
A = Q @ Q.T + np.diag(np.logspace(0, 3, 20))  # condition ~1e3
B = RNG.normal(size=20)


def quadratic(x):
    return 0.5 * tf.tensordot(x, tf.linalg.matvec(A, x), 1) - tf.tensordot(B, x, 1)


@pytest.mark.parametrize("variant", ["bb1", "bb2"])
def test_bb_reaches_the_closed_form_minimizer(variant):
    res = flatvec.minimize(quadratic, np.zeros(20), "bb", variant=variant, gtol=1e-9,
                           max_iter=5000)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, np.linalg.solve(A, B), atol=1e-8)


def test_the_non_monotone_search_accepts_rises_that_a_monotone_one_refuses():
    res = flatvec.minimize(quadratic, np.zeros(20), "bb", gtol=1e-9, max_iter=5000)
    rises = np.sum(np.diff(res.history["loss"]) > 0)
    assert rises > 0  # f rose on some iterations and the run still converged
    monotone = flatvec.minimize(quadratic, np.zeros(20), "bb", window=1, gtol=1e-9,
                                max_iter=5000)
    assert np.all(np.diff(monotone.history["loss"]) <= 0)
    # Cut short, the BB steps lose their speed: the monotone search ends on a failed search
    # near the minimum (measured: f decreases by less than its rounding), the GLL one converges.
    assert res.success
    assert not monotone.success or monotone.nit > res.nit


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "extended_rosenbrock_100"])
def test_bb_solves_classic_problems(name):
    problem = PROBLEMS[name]
    res = flatvec.minimize(problem.fun, problem.x0, "bb", gtol=1e-6, max_iter=20000)
    assert res.success and solved(problem, res.fun), (res.message, res.fun)
    assert np.max(np.abs(res.jac)) <= 1e-6  # the claim holds at result.x


def test_a_reference_for_a_search_that_takes_none_is_refused_by_name():
    direction = SpectralDirection(window=5, variant="bb1", step_min=1e-10, step_max=1e10)
    method = LineSearchMethod(direction, StrongWolfe())
    with pytest.raises(TypeError, match="StrongWolfe takes no reference value"):
        flatvec.minimize(quadratic, np.zeros(20), method, max_iter=3)


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="window"):
        BarzilaiBorwein(window=0)
    with pytest.raises(ValueError, match="variant"):
        BarzilaiBorwein(variant="bb3")
    assert isinstance(Proposal(tf.zeros(2), tf.ones([])).reference, type(None))
