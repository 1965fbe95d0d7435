"""The tested TensorFlow/Keras bounds: declared in pyproject.toml, checked at import; outside them
flatvec warns and runs on the public fallbacks of its private contacts (flatvec._tf)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from flatvec import _tf, versions
from flatvec._tf import call_options, graph_reuse


def _declared() -> dict[str, Requirement]:
    requirements = [Requirement(r) for r in importlib.metadata.requires("flatvec") or []]
    return {r.name: r for r in requirements if r.marker is None}


@pytest.mark.parametrize("package", sorted(versions.TESTED))
def test_pyproject_declares_the_oldest_tested_version_and_no_ceiling(package):
    (low_major, low_minor), (high_major, high_minor) = versions.TESTED[package]
    spec = _declared()[package].specifier
    assert Version(f"{low_major}.{low_minor}.0") in spec
    assert Version(f"{low_major}.{low_minor - 1}.0") not in spec
    assert Version(f"{high_major + 1}.0.0") in spec  # a newer release installs, with a warning


@pytest.mark.parametrize("found", [{"tensorflow": "2.99.0", "keras": "3.10.0"},
                                   {"tensorflow": "2.18.1", "keras": "4.0.0rc1"},
                                   {"tensorflow": "2.15.0", "keras": "3.10.0"}])
def test_an_untested_version_warns_and_names_what_is_tested(found):
    with pytest.warns(versions.UntestedVersionWarning, match=r"not tested with .*\(tested: "):
        versions.check_versions(found)
    assert not versions.is_tested(found)


def test_the_tested_range_holds_the_installed_versions_exactly_when_private_api_is_on(
        monkeypatch):
    # On a tested installation every private contact is on, and the one switch turns all off.
    monkeypatch.delenv(_tf.SWITCH, raising=False)
    assert _tf.enabled() == versions.is_tested()
    if versions.is_tested():
        assert graph_reuse.enabled() and call_options.enabled()
    monkeypatch.setenv(_tf.SWITCH, "0")
    assert not (_tf.enabled() or graph_reuse.enabled() or call_options.enabled())


def test_graph_sharing_has_a_switch_of_its_own(monkeypatch):
    monkeypatch.setenv("FLATVEC_GRAPH_REUSE", "0")
    assert not graph_reuse.enabled()


def test_flatvec_runs_on_an_untested_tensorflow_without_private_api():
    script = textwrap.dedent("""
        import os, warnings
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf
        tf.__version__ = "2.99.0"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import flatvec
            from flatvec import _tf
            import flatvec.keras
            import keras
            res = flatvec.minimize(lambda x: tf.reduce_sum((x - 2.0) ** 2),
                                   np.zeros(3), "lbfgs")
            opt = flatvec.keras.VectorOptimizer("gd", learning_rate=0.5)
            v = keras.Variable(np.ones(2, "float32"))
            opt.apply([tf.ones(2)], [v])
        print("warned", any("not tested with tensorflow 2.99.0" in str(w.message)
                            for w in caught))
        print("private", _tf.enabled(), opt.uses_private_hook)
        print("results", res.success, np.round(res.x, 6).tolist(), v.numpy().tolist())
    """)
    env = {k: v for k, v in os.environ.items() if k != _tf.SWITCH}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=180, env=env)
    assert "warned True" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "private False False" in out.stdout
    assert "results True [2.0, 2.0, 2.0] [0.5, 0.5]" in out.stdout
