"""The classic-problem suite through flatvec and through SciPy's matching methods.

Run as ``python tests/compare_suite.py`` (not collected by pytest). For each algorithm
(``lbfgs``, ``cg``, ``bfgs``) and each problem of ``tests/problems.py`` it runs
``flatvec.minimize(fun, x0, algo=A, gtol=1e-6, max_iter=10000)`` and SciPy's matching method
(L-BFGS-B, CG, BFGS with ``jac=True``, the same ``gtol``, ``norm=inf`` for CG/BFGS, default
``ftol``) on the same TensorFlow objective, and prints per problem the evaluations each needed
and whether it solved the problem (final value at a known minimum, see ``problems.solved``),
then per algorithm the solved counts and the median / geometric mean of the nfev ratio
flatvec / SciPy over the problems both solved.

Options: ``--algos lbfgs cg`` (also ``newton-cg``, ``trust-ncg``), ``--problems rosenbrock
beale``, ``--ftol 0`` (flatvec's ftol; SciPy CG/BFGS have no such test), ``--options JSON``
(flatvec algorithm options), ``--cache FILE`` (keep SciPy's runs), ``--markdown``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from typing import NamedTuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from problems import PROBLEMS, Problem, solved  # noqa: E402

import flatvec  # noqa: E402

SCIPY_METHOD = {"lbfgs": "L-BFGS-B", "cg": "CG", "bfgs": "BFGS", "newton-cg": "Newton-CG",
                "trust-ncg": "trust-ncg"}
DEFAULT_ALGOS = ("lbfgs", "cg", "bfgs")
GTOL = 1e-6
MAX_ITER = 10000


class Run(NamedTuple):
    fun: float
    gnorm: float
    nfev: int
    nit: int
    status: str
    solved: bool
    nhev: int = 0
    success: bool = False


def _run(problem: Problem, algo: str, **options: object) -> Run:
    # ftol_floor=1 and (lbfgs) memory=10: L-BFGS-B's exact test and memory, as SciPy's runs.
    defaults = {"ftol_floor": 1.0, **({"memory": 10} if algo == "lbfgs" else {})}
    res = flatvec.minimize(problem.fun, tf.constant(problem.x0), algo, gtol=GTOL,
                           max_iter=MAX_ITER, **{**defaults, **options})
    fun = float(res.fun)
    return Run(fun, float(np.max(np.abs(res.jac))), int(res.nfev), int(res.nit),
               getattr(res.reason, "name", str(res.reason)), solved(problem, fun),
               int(res.nhev), bool(res.success))


def run_flatvec(problem: Problem, algo: str, **options: object) -> Run:
    """``flatvec.minimize(problem.fun, problem.x0, algo, gtol=1e-6, max_iter=10000)``."""
    options.setdefault("steps_per_call", 20)
    return _run(problem, algo, **options)


def run_scipy(problem: Problem, algo: str, cache: dict | None = None) -> Run:
    """SciPy's method matching ``algo`` on the same objective (through flatvec's bridge)."""
    key = f"{problem.name}:{algo}"
    if cache is not None and key in cache:
        return Run(*cache[key])
    run = _run(problem, "scipy:" + SCIPY_METHOD[algo])
    if cache is not None:
        cache[key] = list(run)
    return run


def summarize(rows: dict[str, dict[str, tuple[Run, Run]]], algo: str) -> dict[str, float]:
    """Solved counts and nfev ratios (flatvec / SciPy) over the problems both solved."""
    pairs = [rows[name][algo] for name in rows if algo in rows[name]]
    ratios = [a.nfev / b.nfev for a, b in pairs if a.solved and b.solved]
    return {
        "problems": len(pairs),
        "solved": sum(a.solved for a, _ in pairs),
        "solved_scipy": sum(b.solved for _, b in pairs),
        "median_ratio": statistics.median(ratios) if ratios else math.nan,
        "geomean_ratio": math.exp(statistics.fmean(map(math.log, ratios))) if ratios else math.nan,
        "nfev": sum(a.nfev for a, b in pairs if a.solved and b.solved),
        "nfev_scipy": sum(b.nfev for a, b in pairs if a.solved and b.solved),
        "nhev": sum(a.nhev for a, _ in pairs),
        "nhev_scipy": sum(b.nhev for _, b in pairs),
        "false_success": sum(a.success and a.gnorm > GTOL for a, _ in pairs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS),
                        choices=list(SCIPY_METHOD))
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--ftol", type=float, default=None)
    parser.add_argument("--options", type=json.loads, default={},
                        help='flatvec algorithm options as JSON, e.g. \'{"forcing": "quadratic"}\'')
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--cache", help="JSON file to keep SciPy's runs in between invocations")
    args = parser.parse_args(argv)
    options = dict(args.options)
    if args.ftol is not None:
        options["ftol"] = args.ftol
    cache = None
    if args.cache:
        cache = json.load(open(args.cache)) if os.path.exists(args.cache) else {}

    rows: dict[str, dict[str, tuple[Run, Run]]] = {}
    for name in args.problems:
        problem = PROBLEMS[name]
        rows[name] = {}
        for algo in args.algos:
            ours, ref = run_flatvec(problem, algo, **options), run_scipy(problem, algo, cache)
            if cache is not None:
                with open(args.cache, "w") as fh:
                    json.dump(cache, fh)
            rows[name][algo] = (ours, ref)
            mark = {True: "ok", False: "--"}
            print(f"{name:30s} n={problem.n:<5d} {algo:9s} "
                  f"flatvec {ours.nfev:5d} h{ours.nhev:<5d} {mark[ours.solved]} "
                  f"f={ours.fun:<12.6g} "
                  f"|g|={ours.gnorm:<9.2e} {ours.status:22s} | "
                  f"scipy {ref.nfev:5d} h{ref.nhev:<5d} {mark[ref.solved]} f={ref.fun:<12.6g} "
                  f"|g|={ref.gnorm:<9.2e} {ref.status}", flush=True)

    sep = " | " if args.markdown else "  "
    header = ["problem", "n"] + [f"{a} / {SCIPY_METHOD[a]}" for a in args.algos]
    print()
    print(sep.join(header).strip())
    if args.markdown:
        print("|".join(["---"] * len(header)))
    for name, by_algo in rows.items():
        cells = [name, str(PROBLEMS[name].n)]
        for algo in args.algos:
            a, b = by_algo[algo]
            cells.append(f"{a.nfev}{'' if a.solved else '*'} / {b.nfev}{'' if b.solved else '*'}")
        print(sep.join(cells))
    print("(* = not solved)\n")
    for algo in args.algos:
        s = summarize(rows, algo)
        print(f"{algo:9s} vs {SCIPY_METHOD[algo]:9s}: solved {s['solved']}/{s['problems']} "
              f"(SciPy {s['solved_scipy']}), nfev ratio median {s['median_ratio']:.3f} "
              f"geomean {s['geomean_ratio']:.3f}, total nfev {s['nfev']} vs {s['nfev_scipy']}, "
              f"total nhev {s['nhev']} vs {s['nhev_scipy']}, "
              f"success with |g| > gtol: {s['false_success']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
