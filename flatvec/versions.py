"""The TensorFlow and Keras versions flatvec is tested with, checked at import.

flatvec's contacts with private TensorFlow/Keras API all live in :mod:`flatvec._tf`, behind one
switch. They are used only on the versions the tests have been run on (the bounds here; the
lower ones are also ``pyproject.toml``'s, and a test keeps the two in step). Run on 2026-12-03:
TensorFlow 2.21.0 + Keras 3.15.1 (the whole suite); TensorFlow 2.20.0 and 2.16.2 with Keras
3.14.0 (the core, Keras, algorithm, fault and checkpoint tests: all pass on 2.20; on 2.16 all
but one evaluation count, CG on a 50-D quadratic taking 563 evaluations to SciPy's 501). Keras
3.13 and older count regularization losses differently (8 regularization tests fail), hence
Keras 3.14 at least.

On a newer (or older) TensorFlow or Keras, importing flatvec warns (:class:`UntestedVersionWarning`)
and turns the private contacts off: everything runs on their public fallbacks, as the suite
does with ``FLATVEC_PRIVATE_TF=0``.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf
from packaging.version import Version  # a TensorFlow dependency

__all__ = ["TESTED", "UntestedVersionWarning", "check_versions", "is_tested"]

# Inclusive (oldest, newest) major.minor release tested; see the module docstring.
TESTED = {"tensorflow": ((2, 16), (2, 21)), "keras": ((3, 14), (3, 15))}


class UntestedVersionWarning(UserWarning):
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
    """Warn (:class:`UntestedVersionWarning`) when TensorFlow or Keras lies outside
    :data:`TESTED`: flatvec then runs without private TensorFlow/Keras API."""
    untested = _untested(_installed() if found is None else found)
    if untested:
        warnings.warn(
            f"flatvec is not tested with {', '.join(untested)}; it runs without private "
            "TensorFlow/Keras API there (graph sharing, lean graph options, in-place buffer "
            "writes off; VectorOptimizer through Keras' public update_step). Install a tested "
            "version for those.", UntestedVersionWarning, stacklevel=3)
