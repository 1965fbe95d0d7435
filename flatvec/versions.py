"""The TensorFlow and Keras versions flatvec is tested with, checked at import.

flatvec relies on two private hooks besides public API: Keras' TensorFlow-backend optimizer
method ``TFOptimizer._backend_update_step`` (``flatvec/keras/hook.py``, for
``VectorOptimizer``) and ``ConcreteFunction._call_flat`` (``flatvec/graph_reuse.py``, to share
compiled loops between models). Both are checked for shape where used; the bounds here are
the versions the tests have been run on, and are the ones ``pyproject.toml`` declares (a test
keeps the two in step). Run on 2026-12-03: TensorFlow 2.21.0 + Keras 3.15.1 (the whole
suite); TensorFlow 2.20.0 and 2.16.2 with Keras 3.14.0 (the core, Keras, algorithm, fault and
checkpoint tests: all pass on 2.20; on 2.16 all but one evaluation count, CG on a 50-D
quadratic taking 563 evaluations to SciPy's 501). Keras 3.13 and older count regularization
losses differently (8 regularization tests fail) and Keras 3.9 and older lack a method the
optimizer adapter uses, hence Keras 3.14.

Outside the bounds, importing flatvec raises an :class:`UntestedVersionError` that says which
versions were found and which are tested. Setting the environment variable
``FLATVEC_ALLOW_UNTESTED_VERSIONS=1`` turns that into a warning; graph sharing is then off.
"""

from __future__ import annotations

import os
import warnings

import keras
import tensorflow as tf
from packaging.version import Version  # a TensorFlow dependency

__all__ = ["TESTED", "UntestedVersionError", "check_versions", "is_tested"]

# Inclusive (oldest, newest) major.minor release tested; see the module docstring.
TESTED = {"tensorflow": ((2, 16), (2, 21)), "keras": ((3, 14), (3, 15))}
ALLOW_ENV = "FLATVEC_ALLOW_UNTESTED_VERSIONS"


class UntestedVersionError(ImportError):
    """TensorFlow or Keras is outside the versions flatvec is tested with."""


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = (Version(version).release + (0,))[:2]  # "4.0.0rc1" -> (4, 0)
    return major, minor


def _untested(found: dict[str, str]) -> list[str]:
    out = []
    for package, version in found.items():
        low, high = TESTED[package]
        if not low <= _major_minor(version) <= high:
            out.append(f"{package} {version} (tested: {low[0]}.{low[1]} to {high[0]}.{high[1]})")
    return out


def _installed() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def is_tested(found: dict[str, str] | None = None) -> bool:
    """Whether the installed (or the given) versions lie within :data:`TESTED`."""
    return not _untested(_installed() if found is None else found)


def check_versions(found: dict[str, str] | None = None) -> None:
    """Raise :class:`UntestedVersionError` (or warn, with ``FLATVEC_ALLOW_UNTESTED_VERSIONS=1``)
    when TensorFlow or Keras lies outside :data:`TESTED`."""
    untested = _untested(_installed() if found is None else found)
    if not untested:
        return
    message = (f"flatvec is not tested with {', '.join(untested)}. Install a tested version "
               f"(pip install 'flatvec' resolves one), or set {ALLOW_ENV}=1 to run anyway")
    if os.environ.get(ALLOW_ENV, "") not in ("", "0"):
        warnings.warn(message + "; graph sharing between models is off.", stacklevel=3)
        return
    raise UntestedVersionError(message + ".")
