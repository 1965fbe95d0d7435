"""The Keras Levenberg–Marquardt package's sinc fit: flatvec ``lm`` against the explicit-JᵀJ
approach that package takes, in one run.

``python -m benchmarks.sinc_lm [--width 20] [--samples 1000]``: a 1 -> width -> 1 tanh MLP
fit to y = sinc(x) on [-1, 1] under MSE (float64; 61 parameters at width 20), through
``minimize(model, (x, y), "lm", loss="mse")``: at this size ``lm`` takes its dense path (the
Gauss-Newton matrix from forward-mode Jacobian columns, O(n² + n m) memory); at
``--large`` widths its matrix-free one (O(n)). Per method it prints the wall time to loss
1e-8 (and the iterations, evaluations and products spent, and the path), and the peak growth
of resident memory.

The explicit peer is :class:`benchmarks.explicit_lm.ExplicitJtJ` (also ``jtj:lm`` in
``python -m benchmarks``): per accepted point the full Jacobian of the residuals (sub-batched,
``tape.jacobian`` over batches of 100 samples), JᵀJ (n x n), Cholesky solves of
``(JᵀJ + λ I) p = -Jᵀr`` with the damping raised by 10 until the loss drops and lowered by 10
after a success (that package's rule). Its memory is O(n²) at any size; flatvec's O(n) on
the matrix-free path. Its ``nit``
counts trials (damped solves), as flatvec's ``lm`` counts rejected steps as iterations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import flatvec  # noqa: E402
from benchmarks import residual_forms  # noqa: E402
from benchmarks.explicit_lm import ExplicitJtJ  # noqa: E402
from benchmarks.measure import RssSampler  # noqa: E402

TARGET = 1e-8
BLOCK = 8


def _model(width: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((1,), dtype="float64"),
                             keras.layers.Dense(width, "tanh", dtype="float64"),
                             keras.layers.Dense(1, dtype="float64")])


def run_flatvec(x: np.ndarray, y: np.ndarray, width: int, max_iter: int,
                model: keras.Model | None = None) -> dict:
    """flatvec ``lm`` on a fresh seeded model, or on ``model`` (then restarted from the seeded
    start: the model's cached objective and compiled iteration are reused)."""
    if model is None:
        model = _model(width)
    else:
        model.set_weights(_model(width).get_weights())
    start = time.perf_counter()
    hit: list[float] = []

    def stop_at_target(r: flatvec.OptimizeResult) -> bool:
        if r.fun <= TARGET and not hit:
            hit.append(time.perf_counter() - start)
        return bool(hit)

    # The callback sees every BLOCK-th iteration (compiled blocks, as flatvec runs without
    # callbacks): the time is taken at the end of the block that reaches the target, up to
    # BLOCK - 1 iterations late.
    res = flatvec.minimize(model, (x, y), "lm", loss="mse", max_iter=max_iter, gtol=0.0,
                           callbacks=[stop_at_target], steps_per_call=BLOCK)
    return {"loss": res.fun, "to_target_s": hit[0] if hit else None, "nit": res.nit,
            "nfev": res.nfev, "njev": res.njev, "nhev": res.nhev,
            "path": "dense" if bool(res.state.dense) else "cg",
            "n": flatvec.FlatParamSpace(model).size, "model": model}


_EXPLICIT: dict[tuple[int, int, int], ExplicitJtJ] = {}


def run_explicit(x: np.ndarray, y: np.ndarray, width: int, max_iter: int,
                 sub_batch: int = 100) -> dict:
    """The explicit-JᵀJ peer (:mod:`benchmarks.explicit_lm`) on the same model and data,
    Jacobians in blocks of ``sub_batch`` rows. Built once per size, so that a second call
    reuses its compiled graphs (as flatvec's second call reuses its traced iteration)."""
    key = (width, len(x), sub_batch)
    if key not in _EXPLICIT:
        _EXPLICIT[key] = ExplicitJtJ(residual_forms.keras_mse(_model(width), x, y, sub_batch))
    peer = _EXPLICIT[key]
    x0 = flatvec.FlatParamSpace(_model(width)).get().numpy()  # the same seeded start
    out = peer.run(x0, max_iter=max_iter, target=TARGET)
    hit = next((t for t, f in zip(out.trace.time, out.trace.loss) if f <= TARGET), None)
    return {"loss": out.loss, "to_target_s": hit, "nit": out.trials, "nfev": out.nfev,
            "njev": out.njev, "n": peer.form.n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of each method")
    parser.add_argument("--large", type=int, default=0, metavar="WIDTH",
                        help="also run a few flatvec lm iterations on a 1-WIDTH-1 network "
                             "(WIDTH 33334: n = 100003, where JtJ alone needs 80 GB)")
    args = parser.parse_args(argv)
    x = np.linspace(-1.0, 1.0, args.samples)[:, None]
    y = np.sinc(x)
    if args.large:
        with RssSampler() as rss:
            out = run_flatvec(x, y, args.large, 3)
        n = out["n"]
        print(f"flatvec:lm n={n}: 3 iterations, loss={out['loss']:.4g}, nhev={out['nhev']}, "
              f"dRSS={rss.peak_mib:.0f} MiB (explicit JtJ would need {8 * n * n / 2**30:.0f} "
              "GiB for JtJ alone: not run)", flush=True)
    # cold: the first call in the process; warm: a fresh seeded model (flatvec shares the
    # compiled iteration of the same architecture, the peer reuses its graphs); restart: the
    # last warm run's model again from the seeded start (its cached objective and iteration).
    # Warm runs alternate between the two methods, so that the machine's drift hits both.
    last: dict = {}
    times: dict[tuple[str, str], list[float]] = {}

    def run(name: str, attempt: str, fn: Any) -> None:
        with RssSampler() as rss:
            out = fn(x, y, args.width, args.max_iter)
        if name == "flatvec:lm":
            last["model"] = out["model"]
        # inf where the run missed the target: a median then says so instead of hiding it
        hit = out["to_target_s"]
        times.setdefault((name, attempt), []).append(float("inf") if hit is None else hit)
        print(f"{name:14s} {attempt:7s}: n={out['n']} " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in out.items() if k not in ("n", "model")) + f", dRSS={rss.peak_mib:.0f} MiB",
            flush=True)

    run("flatvec:lm", "cold", run_flatvec)
    run("explicit JtJ", "cold", run_explicit)
    for _ in range(args.repeats):
        run("flatvec:lm", "warm", run_flatvec)
        run("explicit JtJ", "warm", run_explicit)
        run("flatvec:lm", "restart", lambda *a: run_flatvec(*a, model=last["model"]))
    medians = {key: statistics.median(v) for key, v in times.items()}
    for attempt in ("cold", "warm"):
        ours, peer = medians[("flatvec:lm", attempt)], medians[("explicit JtJ", attempt)]
        print(f"{attempt}: flatvec:lm {ours:.3f} s, explicit JtJ {peer:.3f} s to 1e-8 "
              f"(median): ratio {ours / peer:.2f}")
    print(f"restart: flatvec:lm {medians[('flatvec:lm', 'restart')]:.3f} s (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
