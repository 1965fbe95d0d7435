"""The tested TensorFlow/Keras bounds: declared in pyproject.toml, enforced at import."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from flatvec import graph_reuse, versions


def _declared() -> dict[str, Requirement]:
    requirements = [Requirement(r) for r in importlib.metadata.requires("flatvec") or []]
    return {r.name: r for r in requirements if r.marker is None}


@pytest.mark.parametrize("package", sorted(versions.TESTED))
def test_pyproject_declares_exactly_the_tested_range(package):
    (low_major, low_minor), (high_major, high_minor) = versions.TESTED[package]
    spec = _declared()[package].specifier
    assert Version(f"{low_major}.{low_minor}.0") in spec
    assert Version(f"{high_major}.{high_minor}.99") in spec
    assert Version(f"{low_major}.{low_minor - 1}.0") not in spec
    assert Version(f"{high_major}.{high_minor + 1}.0") not in spec


def test_the_installed_versions_are_tested_ones():
    assert versions.is_tested()
    versions.check_versions()  # does not raise


@pytest.mark.parametrize("found", [{"tensorflow": "2.99.0", "keras": "3.10.0"},
                                   {"tensorflow": "2.18.1", "keras": "4.0.0rc1"},
                                   {"tensorflow": "2.15.0", "keras": "3.10.0"}])
def test_an_untested_version_is_a_clear_error_unless_allowed(found, monkeypatch):
    monkeypatch.delenv(versions.ALLOW_ENV, raising=False)
    with pytest.raises(versions.UntestedVersionError, match=r"not tested with .*\(tested: "):
        versions.check_versions(found)
    monkeypatch.setenv(versions.ALLOW_ENV, "1")
    with pytest.warns(UserWarning, match="graph sharing between models is off"):
        versions.check_versions(found)
    assert not versions.is_tested(found)


def test_graph_sharing_has_a_switch(monkeypatch):
    assert graph_reuse.enabled()
    monkeypatch.setenv("FLATVEC_GRAPH_REUSE", "0")
    assert not graph_reuse.enabled()


def test_importing_flatvec_on_an_untested_tensorflow_fails_clearly():
    script = textwrap.dedent("""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ.pop("FLATVEC_ALLOW_UNTESTED_VERSIONS", None)
        import tensorflow as tf
        tf.__version__ = "2.99.0"
        try:
            import flatvec
        except ImportError as err:
            print(type(err).__name__, err)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert "UntestedVersionError" in out.stdout and "tensorflow 2.99.0" in out.stdout
