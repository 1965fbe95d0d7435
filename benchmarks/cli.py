"""Command line: ``python -m benchmarks [--quick] [--problems ...] [--methods ...] [--out DIR]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="flatvec vs SciPy, tfp and PyTorch on embedded problems (same data, start "
        "point, dtype and tolerances). Writes report.md, results.json and plots.",
    )
    p.add_argument("--problems", default="all",
                   help="comma-separated problem names, or 'all' (see --list)")
    p.add_argument("--methods", default="default",
                   help="comma-separated methods ('lbfgs' = 'flatvec:lbfgs'), a family "
                   "('flatvec', 'scipy', 'tfp', 'torch', 'jtj', 'optax', 'jaxopt', 'optimistix'), "
                   "'all', or 'default' (all, except gd on the networks and all but the L-BFGS "
                   "variants on the tf.data problems)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per problem x method after one cold call (default 3; "
                   "with --quick 0: the cold call is the only run)")
    p.add_argument("--max-iter", type=int, default=None, help="override every problem's max_iter")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="output folder (default benchmarks/results/latest)")
    p.add_argument("--quick", action="store_true",
                   help="a small fast subset for CI: the float32 digits MLP, five methods, 10 "
                   "iterations, no repeat (unless --problems/--methods/--repeats say otherwise)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for TensorFlow and PyTorch (default: TensorFlow's "
                   "own choice; PyTorch 1 or all cores, whichever evaluates faster)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    p.add_argument("--list", action="store_true", help="list problems and methods and exit")
    return p


def _select(text: str, known: Sequence[str], what: str, families: bool = False) -> list[str]:
    if text == "all":
        return list(known)
    chosen: list[str] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if item in known:
            matches = [item]
        elif families and f"flatvec:{item}" in known:
            matches = [f"flatvec:{item}"]
        elif families:
            matches = [k for k in known if k.split(":")[0] == item]
        else:
            matches = []
        if not matches:
            raise SystemExit(f"--{what}: unknown {item!r}; known: {', '.join(known)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def _set_threads(threads: int) -> None:
    """Both frameworks' intra-op pools (TensorFlow's only before its runtime starts)."""
    if threads < 1:
        raise SystemExit(f"--threads: expected an int >= 1, got {threads}")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    from benchmarks import torch_mirror

    torch_mirror.FIXED_THREADS = threads


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.threads is not None:
        _set_threads(args.threads)
    # Imported here so that --help answers without starting TensorFlow.
    from benchmarks import acceptance, analysis, plots, report
    from benchmarks.peers import METHODS, QUICK_METHODS
    from benchmarks.problems import PROBLEMS, QUICK
    from benchmarks.runner import run_grid

    if args.list:
        for name, spec in PROBLEMS.items():
            print(f"problem  {name:22s} {spec.description} ({spec.dtype})")
        for name, method in METHODS.items():
            print(f"method   {name:22s} {method.unavailable() or 'available'}")
        return 0
    problem_names = list(QUICK) if args.quick and args.problems == "all" else _select(
        args.problems, list(PROBLEMS), "problems")
    if args.methods == "default":
        method_names = list(QUICK_METHODS) if args.quick else None
    else:
        method_names = _select(args.methods, list(METHODS), "methods", families=True)
    repeats = args.repeats if args.repeats is not None else (0 if args.quick else 3)
    if repeats < 0:
        raise SystemExit(f"--repeats: expected an int >= 0, got {repeats}")

    started = time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    records = run_grid(problem_names, method_names, repeats=repeats, seed=args.seed,
                       quick=args.quick, max_iter=args.max_iter)
    analysis.derive(records, {n: s.target for n, s in PROBLEMS.items() if s.target is not None})
    checks = acceptance.check_all(records)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    paths = [] if args.no_plots else plots.plot_convergence(records, out)
    info = report.machine_info()
    info["loadavg_end"], info["loadavg"] = info["loadavg"], load_start
    settings = {
        "repeats": repeats, "seed": args.seed, "quick": args.quick, "threads": args.threads,
        "seconds": round(time.perf_counter() - started, 1),
        "max_iter": {r.problem: r.max_iter for r in records},
    }
    text = report.markdown(records, checks, info, settings, paths)
    (out / "report.md").write_text(text + "\n")
    report.write_json(out / "results.json", records, checks, info, settings)
    print(text)
    if not paths and not args.no_plots:
        print("(no plots: matplotlib is not installed)")
    print(f"\nwrote {out / 'report.md'}, {out / 'results.json'}"
          + "".join(f", {p}" for p in paths), file=sys.stderr)
    return 0
