"""Checking ``minimize``'s catch-all keywords before they reach an algorithm.

``minimize(..., **algo_options)`` hands every keyword it does not know to the algorithm's
constructor. A keyword from another library's vocabulary (SciPy's ``maxiter``, GPflow's
``compile``) or one letter off a driver option (``max_evals`` for ``max_eval``, which L-BFGS
would silently take as its line-search limit) must be refused with the name meant, not
routed to the algorithm or reported as an unknown algorithm option.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["FOREIGN_KEYWORDS", "check_algorithm_keywords", "did_you_mean"]

# Keywords of SciPy, GPflow, Keras and tfp that mean one of minimize's own options.
FOREIGN_KEYWORDS = {
    "maxiter": "max_iter",
    "max_iterations": "max_iter",
    "maxfun": "max_eval",
    "maxfev": "max_eval",
    "max_evals": (
        "max_eval (the run's limit on evaluations); the line search's own limit per iteration "
        "is an algorithm instance's option, e.g. algo=LBFGS(max_evals=5)"),
    "method": "algo",
    "compile": "jit_compile",
    "tol": "gtol",
    "tolerance": "gtol",
    "disp": "verbose",
    "callback": "callbacks",
    "maxcor": "memory (algo='lbfgs'), or options={'maxcor': ...} (algo='scipy:L-BFGS-B')",
    "num_correction_pairs": "memory (for algo='lbfgs')",
    "x_tolerance": "gtol or ftol",
    "f_relative_tolerance": "ftol",
}


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_algorithm_keywords(
    options: dict[str, Any], driver_options: Iterable[str], algorithm_options: Iterable[str],
    algo: Any, takes_text: str | None = None,
) -> None:
    """Refuse the keywords of ``options`` (minimize's catch-all) that are another library's
    names or misspelt driver options; the algorithm's own names pass.

    ``algorithm_options``: what the algorithm's constructor takes (for the message and for
    near misses of those); ``takes_text``: what the message says the algorithm takes, in
    place of that list."""
    algorithm_options = sorted(algorithm_options)
    for name in options:
        if name in FOREIGN_KEYWORDS:
            raise TypeError(
                f"{name}: not an option of flatvec.minimize; use {FOREIGN_KEYWORDS[name]}")
        if name in algorithm_options:
            continue
        hint = did_you_mean(name, [*driver_options, *algorithm_options])
        takes = takes_text or f"the algorithm takes {algorithm_options}"
        raise TypeError(
            f"{name}: not an option of flatvec.minimize nor of algo {algo!r}{hint}; {takes}")
