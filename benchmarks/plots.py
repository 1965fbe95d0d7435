"""Convergence plots: loss vs evaluations and loss vs wall time, one panel per problem.

matplotlib is optional: without it no plot is written and the report says so.
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.measure import Record

__all__ = ["plot_convergence"]

# One colour per method and one line style per family, the same in every panel.
_COLORS = {
    "flatvec:lbfgs": "C0", "flatvec:lbfgs-xla": "C9", "flatvec:cg": "C1", "flatvec:bfgs": "C2",
    "flatvec:gd": "C7",
    "scipy:L-BFGS-B": "C0", "scipy:CG": "C1", "scipy:BFGS": "C2", "tfp:lbfgs": "C3",
    "torch:lbfgs": "C4",
    "flatvec:newton-cg": "C5", "flatvec:trust-ncg": "C6", "scipy:Newton-CG": "C5",
    "scipy:trust-ncg": "C6", "scipy:trust-krylov": "C8", "torchmin:newton-cg": "C5",
    "torchmin:trust-ncg": "C6",
    "optax:lbfgs": "C1", "jaxopt:lbfgs": "C2", "optimistix:lbfgs": "C8", "optimistix:bfgs": "C9",
}
_JAX = (0, (6, 1, 1, 1))  # dash-dot-dot: the JAX family
_STYLES = {"flatvec": "-", "scipy": "--", "tfp": ":", "torch": "-.", "torchmin": "-.",
           "optax": _JAX, "jaxopt": _JAX, "optimistix": _JAX}


def plot_convergence(records: list[Record], out: Path) -> list[str]:
    """Write ``loss_vs_evals.png`` and ``loss_vs_time.png`` under ``out``; return their paths
    (empty when matplotlib is missing or nothing ran)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ran = [r for r in records if r.trace is not None and r.trace.loss]
    problems = list(dict.fromkeys(r.problem for r in ran))
    if not problems:
        return []
    cols = min(3, len(problems))
    rows = math.ceil(len(problems) / cols)
    paths = []
    for axis, label, filename in (
        ("nfev", "loss + gradient evaluations", "loss_vs_evals.png"),
        ("time", "seconds since the run started", "loss_vs_time.png"),
    ):
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, name in zip(axes.flat, problems):
            for r in (r for r in ran if r.problem == name):
                xs = getattr(r.trace, axis)
                # Best loss so far: line-search trial points of eval-level traces stay visible
                # as plateaus instead of spikes.
                best, ys = math.inf, []
                for v in r.trace.loss:
                    best = min(best, v)
                    ys.append(best)
                family = r.method.split(":")[0]
                ax.plot(xs, ys, label=r.method, lw=1.4, color=_COLORS.get(r.method),
                        ls=_STYLES.get(family, "-"))
            target = next((r.target for r in ran if r.problem == name and r.target), None)
            if target is not None and target > 0:
                ax.axhline(target, color="grey", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel("best loss so far", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(problems):]:
            ax.set_visible(False)
        fig.tight_layout()
        path = out / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths
