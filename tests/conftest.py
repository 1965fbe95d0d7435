"""Shared fixtures: quiet TensorFlow, a Hypothesis profile for traced code, small helpers."""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Tracing makes the first call of a tf.function slow; Hypothesis' deadline would flag it.
settings.register_profile(
    "flatvec", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "flatvec"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator (fresh per test, so tests do not depend on each other)."""
    return np.random.default_rng(1234)


def _bits(variable) -> np.ndarray:
    value = np.asarray(variable.numpy())
    return value.view(f"u{value.dtype.itemsize}").copy()


@pytest.fixture
def unchanged():
    """``with unchanged(variables): ...`` asserts the variables are bit-identical afterwards."""

    @contextlib.contextmanager
    def check(variables):
        before = [_bits(v) for v in variables]
        yield
        for v, b in zip(variables, before):
            np.testing.assert_array_equal(_bits(v), b, err_msg=f"{v.name} was modified")

    return check


@pytest.fixture
def make_mlp():
    """``make_mlp(n_in, n_out, hidden=(3,), dtype="float64", seed=0, **dense_kwargs)``.

    A built ``keras.Sequential`` of Dense layers (tanh hidden layers, linear output), seeded so
    that two calls with the same arguments give the same weights. ``dense_kwargs`` (e.g.
    ``kernel_regularizer``) go to every Dense layer.
    """
    import keras

    def build(n_in, n_out, hidden=(3,), dtype="float64", seed=0, **dense_kwargs):
        keras.utils.set_random_seed(seed)
        layers = [keras.Input((n_in,), dtype=dtype)]
        layers += [
            keras.layers.Dense(h, activation="tanh", dtype=dtype, **dense_kwargs) for h in hidden
        ]
        layers.append(keras.layers.Dense(n_out, dtype=dtype, **dense_kwargs))
        return keras.Sequential(layers)

    return build


# ---------------------------------------------------------------------- private API switch
def pytest_configure(config):
    config.addinivalue_line(
        "markers", "private_tf: tests a private TensorFlow/Keras contact itself (flatvec/_tf); "
        "skipped where the contacts are off (FLATVEC_PRIVATE_TF=0, or an untested "
        "TensorFlow/Keras), where the public fallbacks run")


def pytest_collection_modifyitems(config, items):
    from flatvec import _tf

    if _tf.enabled():
        return
    skip = pytest.mark.skip(reason="tests a private TF/Keras contact, which is off here "
                                   "(FLATVEC_PRIVATE_TF=0 or an untested version)")
    for item in items:
        if "private_tf" in item.keywords:
            item.add_marker(skip)


# ---------------------------------------------------------------------- tiers
@pytest.fixture(autouse=True)
def compiled_tier(monkeypatch):
    """Every run compiled, as before tiers, outside tests/test_tiers.py (whose fixture turns
    the eager tier on): which tier a run takes depends on this machine's measured set-up cost
    and on earlier runs in the worker process, and the suite's trace counts, checkpoint and
    trajectory comparisons must not depend on either. Python processes the tests start
    inherit it (FLATVEC_EAGER_TIER=0)."""
    from flatvec._run import tiers

    tiers.forget()
    monkeypatch.setattr(tiers, "ENABLED", False)
    monkeypatch.setenv("FLATVEC_EAGER_TIER", "0")


@pytest.fixture
def tiers_on(monkeypatch):
    """The eager tier on (tests of the tiers), with no measured costs, run lengths or shared
    loops from earlier tests (a loop that can run shared compiled functions does)."""
    from flatvec._run import tiers
    from flatvec._tf import graph_reuse

    graph_reuse.clear()
    tiers.forget()
    monkeypatch.setattr(tiers, "ENABLED", True)
    monkeypatch.delenv("FLATVEC_EAGER_TIER", raising=False)
