"""The benchmark suite: `python -m benchmarks --quick` end to end, and its pieces against
independent truths (closed forms, a second framework, hand-made traces)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks/` is a folder of the repository, not installed

from benchmarks import analysis, problems  # noqa: E402
from benchmarks.measure import Record, RssSampler, Trace  # noqa: E402
from benchmarks.peers import METHODS, QUICK_METHODS  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_quick_writes_every_output(quick_run: Path) -> None:
    payload = json.loads((quick_run / "results.json").read_text())
    pairs = {(r["problem"], r["method"]) for r in payload["records"]}
    assert pairs == {(p, m) for p in problems.QUICK for m in QUICK_METHODS}
    text = (quick_run / "report.md").read_text()
    for problem in problems.QUICK:
        assert f"## {problem}" in text
    for method in QUICK_METHODS:
        assert f"| {method} |" in text
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("loss_vs_evals.png", "loss_vs_time.png"):
            assert (quick_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_records_are_consistent(quick_run: Path) -> None:
    records = json.loads((quick_run / "results.json").read_text())["records"]
    for r in records:
        where = f"{r['problem']} x {r['method']}"
        assert r["error"] is None, where
        method = METHODS[r["method"]]
        if method.family in ("flatvec", "scipy"):
            assert r["skipped"] is None, where  # flatvec and its bridge always run
        if r["skipped"]:
            continue
        assert 1 <= r["nit"] <= r["max_iter"], where
        assert r["nfev"] >= r["nit"], where
        assert math.isfinite(r["loss"]) and r["grad_inf"] >= 0, where
        assert r["overhead"] == pytest.approx(r["wall"] / (r["nfev"] * r["t_eval"])), where
        trace = r["trace"]
        assert len(trace["nfev"]) == len(trace["time"]) == len(trace["loss"]) >= 2, where
        assert np.all(np.diff(trace["time"]) >= 0), where
        assert r["loss"] < trace["loss"][0], where  # every method made progress
    # The target, recomputed from the recorded final losses and start losses.
    for problem in problems.QUICK:
        ran = [r for r in records if r["problem"] == problem and not r["skipped"]]
        # Same start point, data and dtype everywhere: every trace starts at the same loss.
        starts = [r["trace"]["loss"][0] for r in ran]
        assert max(starts) == pytest.approx(min(starts), rel=1e-5), problem
        best = min(r["loss"] for r in ran)
        start = max(r["trace"]["loss"][0] for r in ran)
        expected = best + max(0.05 * abs(best), 1e-8 * (start - best))
        for r in ran:
            assert r["target"] == pytest.approx(expected), r["method"]
            hits = np.minimum.accumulate(r["trace"]["loss"]) <= expected
            if hits.any():
                i = int(np.argmax(hits))
                assert r["time_to_target"] == pytest.approx(r["trace"]["time"][i])
                assert r["evals_to_target"] == r["trace"]["nfev"][i]
            else:
                assert r["time_to_target"] is None


def test_quick_lbfgs_matches_scipy_on_the_model(quick_run: Path) -> None:
    # Same algorithm, same start, same iterations: flatvec's L-BFGS and SciPy's L-BFGS-B on the
    # same objective end at nearly the same loss (an independent implementation as the truth).
    records = json.loads((quick_run / "results.json").read_text())["records"]
    by = {(r["problem"], r["method"]): r for r in records}
    mine, scipy_ = by["mlp-digits-f32", "flatvec:lbfgs"], by["mlp-digits-f32", "scipy:L-BFGS-B"]
    assert mine["nit"] == scipy_["nit"]
    assert mine["loss"] == pytest.approx(scipy_["loss"], rel=0.02)


def test_cli_rejects_unknown_names() -> None:
    from benchmarks.cli import main

    with pytest.raises(SystemExit, match="unknown 'nope'"):
        main(["--problems", "nope", "--out", "/nonexistent"])


# ---------------------------------------------------------------------- problems
def test_rosenbrock_closed_form() -> None:
    inst = problems.build("rosenbrock-1k")
    objective = inst.objective()
    f0, _ = objective.value_and_gradient(tf.constant(inst.x0))
    # Each (x_odd, x_even) = (-1.2, 1) pair contributes 100 * 0.44^2 + 2.2^2 = 24.2.
    assert float(f0) == pytest.approx(24.2 * 500)
    f1, g1 = objective.value_and_gradient(tf.ones(1000, tf.float64))
    assert float(f1) == 0.0 and np.all(g1.numpy() == 0.0)


def test_logreg_closed_form_at_zero() -> None:
    inst = problems.build("logreg-cancer")
    f, g = inst.objective().value_and_gradient(tf.zeros(inst.size, tf.float64))
    x, y = problems.breast_cancer()
    assert float(f) == pytest.approx(math.log(2.0))
    expected = np.append(x.T @ (0.5 - y) / len(y), np.mean(0.5 - y))  # sigmoid(0) = 1/2
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed")
@pytest.mark.parametrize("name", ["mlp-digits-f64-ds256", "cnn-digits-f32", "pinn-poisson-f64",
                                  "sinc-mlp-f64"])
def test_torch_mirror_computes_the_same_function(name: str) -> None:
    from benchmarks.torch_mirror import build_mirror

    inst = problems.build(name)
    f, g = inst.objective().value_and_gradient(tf.constant(inst.x0, inst.dtype))
    mirror = build_mirror(inst.mirror, inst.spec.dtype)
    f_torch = float(mirror.closure())
    g_torch = np.concatenate([p.grad.detach().numpy().ravel() for p in mirror.params])
    rtol = 1e-5 if inst.spec.dtype == "float32" else 1e-10
    assert f_torch == pytest.approx(float(f), rel=rtol)
    # Layouts differ (kernels transposed), so compare order-free summaries of the gradient.
    g_tf = g.numpy()
    assert g_torch.size == g_tf.size
    np.testing.assert_allclose(np.sort(np.abs(g_torch)), np.sort(np.abs(g_tf)),
                               rtol=100 * rtol, atol=1e-6 if rtol > 1e-6 else 1e-12)


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed")
@pytest.mark.parametrize("name", ["logreg-cancer", "mlp-digits-f64", "pinn-poisson-f64",
                                  "sinc-mlp-f64"])
def test_functional_torch_mirror_is_the_closures_function(name: str) -> None:
    import torch

    from benchmarks.torch_mirror import build_mirror

    inst = problems.build(name)
    mirror = build_mirror(inst.mirror, inst.spec.dtype)
    f_closure = float(mirror.closure())
    g_closure = torch.cat([p.grad.reshape(-1) for p in mirror.params])
    x = torch.cat([p.detach().reshape(-1) for p in mirror.params]).requires_grad_(True)
    loss = mirror.fun(x)
    (g,) = torch.autograd.grad(loss, x)
    assert float(loss) == pytest.approx(f_closure, rel=1e-12)
    np.testing.assert_allclose(g.numpy(), g_closure.numpy(), rtol=1e-10, atol=1e-13)
    f_tf = inst.objective().value_and_gradient(tf.constant(inst.x0, inst.dtype)).value
    assert float(loss) == pytest.approx(float(f_tf), rel=1e-10)


def test_second_order_methods_report_their_products() -> None:
    from benchmarks.runner import run_grid

    records = run_grid(["logreg-cancer"], ["flatvec:newton-cg", "scipy:Newton-CG"], repeats=0,
                       quick=True, max_iter=50, log=lambda _: None)
    ours, ref = records
    assert ours.error is None and ref.error is None, (ours.error, ref.error)
    assert ours.nhev > 0 and ref.nhev > 0
    # A strictly convex problem: both end at its minimum.
    assert ours.loss == pytest.approx(ref.loss, rel=1e-3)


# ---------------------------------------------------------------------- analysis, memory
def _record(method: str, loss: float, trace: Trace, *, nfev: int, wall: float) -> Record:
    return Record("p", method, "float64", 2, 10, nit=len(trace.loss) - 1, nfev=nfev,
                  loss=loss, wall=wall, t_eval=0.01, trace=trace)


def test_target_and_time_to_target_from_hand_made_traces() -> None:
    fast = _record("a", 1.0, Trace([1, 3, 5, 7], [0.0, 0.1, 0.2, 0.3], [8.0, 3.0, 1.04, 1.0]),
                   nfev=7, wall=0.5)
    slow = _record("b", 2.0, Trace([1, 2, 3], [0.0, 1.0, 2.0], [8.0, 4.0, 2.0]),
                   nfev=3, wall=2.0)
    analysis.derive([fast, slow])
    assert fast.target == pytest.approx(1.05)  # 1.05 x the best final loss
    assert (fast.time_to_target, fast.evals_to_target) == (0.2, 5)
    assert slow.time_to_target is None and slow.evals_to_target is None
    assert fast.overhead == pytest.approx(0.5 / (7 * 0.01))
    assert fast.overhead_steady == pytest.approx((0.3 - 0.1) / ((7 - 3) * 0.01))


def test_target_floor_for_a_zero_minimum() -> None:
    r = _record("a", 0.0, Trace([1, 2], [0.0, 1.0], [100.0, 0.0]), nfev=2, wall=1.0)
    analysis.derive([r])
    assert r.target == pytest.approx(1e-8 * 100.0)


def test_rss_sampler_sees_a_large_allocation() -> None:
    with RssSampler() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        # Held for 40 sampling intervals: an allocation freed within one interval may fall
        # between two samples (the sampler reports a lower bound), and on a loaded machine the
        # sampling thread can wait a few intervals for a core.
        time.sleep(40 * mem.interval)
        del block
    assert mem.peak_mib >= 48
