"""The project's acceptance targets, checked on the records of one run.

- flatvec ``lbfgs`` overhead ``wall / (nfev t_eval)`` <= 1.2 on every network problem and <= 1.5 on
  Rosenbrock n=100000, with ``nfev <= 1.3 nit``;
- time to target on the in-memory digits MLP (float32, float64): flatvec ``lbfgs`` <= 0.6 x the
  SciPy bridge (L-BFGS-B) and <= 0.4 x tfp; the ratio to torch is reported;
- one full-batch evaluation over the batch-256 dataset costs <= 1.5 x the single in-memory batch.

The L-BFGS checks are made for the default configuration (``flatvec:lbfgs``) and, where it ran,
for the XLA-compiled one (``flatvec:lbfgs-xla``), each against its own ``t_eval``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from benchmarks.measure import Record
from benchmarks.problems import PROBLEMS

__all__ = ["Check", "check_all"]

FLATVEC = "flatvec:lbfgs"
FLATVEC_XLA = "flatvec:lbfgs-xla"


class Check(NamedTuple):
    name: str
    value: float | None
    limit: float | None  # None: reported, no limit
    passed: bool | None  # None: could not be computed (or no limit)

    def to_json(self) -> dict[str, Any]:
        return self._asdict()


def _find(records: list[Record], problem: str, method: str) -> Record | None:
    for r in records:
        if r.problem == problem and r.method == method and r.wall is not None:
            return r
    return None


def _check(name: str, value: float | None, limit: float | None) -> Check:
    passed = None if value is None or limit is None else value <= limit
    return Check(name, value, limit, passed)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def check_all(records: list[Record]) -> list[Check]:
    """Every acceptance check that the problems and methods of this run allow."""
    checks: list[Check] = []
    problems = {r.problem for r in records}
    for method in (FLATVEC, FLATVEC_XLA):
        label = method.split(":", 1)[1]
        for name in PROBLEMS:
            if name not in problems:
                continue
            spec = PROBLEMS[name]
            limit = 1.2 if spec.network else 1.5 if name == "rosenbrock-100k" else None
            r = _find(records, name, method)
            if limit is None or r is None:
                continue
            checks.append(_check(f"{name}: {label} overhead", r.overhead, limit))
            checks.append(_check(f"{name}: {label} nfev/nit", _ratio(r.nfev, r.nit), 1.3))
        for name in ("mlp-digits-f32", "mlp-digits-f64"):
            mine = _find(records, name, method)
            if mine is None:
                continue
            for peer, limit in (("scipy:L-BFGS-B", 0.6), ("tfp:lbfgs", 0.4), ("torch:lbfgs", None)):
                other = _find(records, name, peer)
                if other is not None:
                    value = _ratio(mine.time_to_target, other.time_to_target)
                    checks.append(_check(f"{name}: time to target {label} / {peer}", value, limit))
    for dtype in ("f32", "f64"):
        single = _find(records, f"mlp-digits-{dtype}", FLATVEC)
        streamed = _find(records, f"mlp-digits-{dtype}-ds256", FLATVEC)
        if single is not None and streamed is not None:
            value = _ratio(streamed.t_eval, single.t_eval)
            checks.append(_check(f"mlp-digits-{dtype}: t_eval ds256 / one batch", value, 1.5))
    return checks
