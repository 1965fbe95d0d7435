"""The Markdown report and the raw ``results.json``."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

from benchmarks.acceptance import Check
from benchmarks.measure import Record
from benchmarks.problems import PROBLEMS

__all__ = ["machine_info", "markdown", "write_json"]

COLUMNS = (
    "method", "nit", "nfev", "njev", "nhev", "f", "‖g‖∞", "wall s", "first s", "t_eval ms",
    "overhead", "steady", "t→target s", "evals→target", "ΔRSS MiB", "stop",
)

LEGEND = """\
Columns: `nit`, `nfev` iterations and loss+gradient evaluations as each method counts them
(least-squares methods: trial steps, rejected ones included, and residual evaluations);
`njev` dense Jacobians (least-squares methods; flatvec's matrix-free paths count their
gradients here), `nhev` Hessian-vector or Gauss-Newton products (Newton-type and
least-squares methods; each costs about one evaluation);
`f`, `‖g‖∞` at the returned point; `wall` median seconds of the whole call over the timed
repeats (after one cold call); `first` the cold call (tracing/compilation included); `t_eval`
median seconds of one bare loss+gradient evaluation of that implementation; `overhead` =
wall / (nfev × t_eval); `steady` the same from the run's trace without its first point (the
per-iteration cost once compiled); `t→target`, `evals→target` seconds (since the run started)
and evaluations until the best loss so far is at or below the problem's target (a fixed loss
where the problem sets one, else 1.05 × the best final loss of any method, with a floor for
zero minima); `ΔRSS` the peak growth of the process'
resident memory during a call (TF/torch buffers included, memory the allocator already held is
not counted again)."""


def machine_info() -> dict[str, Any]:
    """Hardware, software versions and load (the machine may be shared)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    versions = {}
    for package in ("flatvec", "tensorflow", "keras", "numpy", "scipy", "scikit-learn",
                    "tensorflow-probability", "tf-keras", "torch", "matplotlib"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
        "cpu_count": os.cpu_count(), "loadavg": load, "versions": versions,
    }


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _row(r: Record) -> list[str]:
    if r.skipped or r.error:
        note = f"skipped: {r.skipped}" if r.skipped else f"error: {r.error}"
        return [r.method, *["–"] * (len(COLUMNS) - 2), note.replace("|", "/")[:120]]
    stop = r.message.split(".")[0].split(":")[0].replace("|", "/")[:40]
    return [
        r.method, _fmt(r.nit), _fmt(r.nfev), _fmt(r.njev), _fmt(r.nhev), _fmt(r.loss, ".6g"),
        _fmt(r.grad_inf, ".2e"),
        _fmt(r.wall, ".3f"), _fmt(r.t_first, ".2f"),
        _fmt(None if r.t_eval is None else r.t_eval * 1e3, ".3g"),
        _fmt(r.overhead, ".2f"), _fmt(r.overhead_steady, ".2f"),
        _fmt(r.time_to_target, ".3f"), _fmt(r.evals_to_target), _fmt(r.mem_mib, ".0f"), stop,
    ]


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(records: list[Record], checks: list[Check], info: dict[str, Any],
             settings: dict[str, Any], plots: list[str]) -> str:
    """The whole report as Markdown."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    load, end = info.get("loadavg"), info.get("loadavg_end")
    lines = [
        "# flatvec benchmark report", "",
        f"Machine: {info['cpu']}, {info['cpu_count']} CPUs, {info['platform']}, Python "
        f"{info['python']}" + (f"; 1-min load average at start {load[0]:.2f}" if load else "")
        + (f", at end {end[0]:.2f}" if end else "") + ".",
        f"Versions: {versions}.",
        "Settings: " + ", ".join(
            f"{k}={v}" for k, v in settings.items() if not isinstance(v, dict)) + ".", "",
        LEGEND, "",
    ]
    if checks:
        lines += ["## Acceptance targets", "", "| check | value | limit | pass |",
                  "|---|---|---|---|"]
        for c in checks:
            verdict = {True: "yes", False: "**no**", None: "–"}[c.passed]
            lines.append(f"| {c.name} | {_fmt(c.value, '.3f')} | {_fmt(c.limit)} | {verdict} |")
        lines.append("")
    for name in dict.fromkeys(r.problem for r in records):
        group = [r for r in records if r.problem == name]
        spec = PROBLEMS[name]
        target = next((r.target for r in group if r.target is not None), None)
        lines += [
            f"## {name}", "",
            f"{spec.description}; n={group[0].n}, {spec.dtype}, max_iter="
            f"{settings.get('max_iter', {}).get(name, spec.max_iter)}, gtol={spec.gtol:g}, "
            f"ftol={spec.ftol:.3g}; target loss {_fmt(target, '.6g')}.", "",
            *_table([_row(r) for r in group]), "",
        ]
    if plots:
        lines += ["## Plots", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots], ""]
    return "\n".join(lines)


def write_json(path: Path, records: list[Record], checks: list[Check], info: dict[str, Any],
               settings: dict[str, Any]) -> None:
    payload = {
        "machine": info, "settings": settings,
        "checks": [c.to_json() for c in checks],
        "records": [r.to_json() for r in records],
    }
    path.write_text(json.dumps(payload, indent=1, default=float))
