"""The digits-MLP acceptance run of the algorithms issue: ``lbfgs`` against SciPy's L-BFGS-B.

Exactly the user's call, repeated: ``flatvec.minimize(model, dataset, algo=A, max_iter=200)``
with default tolerances, for A = ``"lbfgs"`` and ``"scipy:L-BFGS-B"``, on the float32
Dense(128, tanh)-Dense(128, tanh)-Dense(10) MLP with all 1797 digits as one batch. Every call
starts from the same seeded weights on a fresh model, so each wall time includes everything a
user waits for (tracing included). The calls alternate between the two methods (load from
other processes hits both alike); reported are the final losses and the median wall times.
Run: ``python -m benchmarks.digits_mlp_lbfgs [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import flatvec  # noqa: E402
from benchmarks.problems import plain_digits_mlp  # noqa: E402

METHODS = ("lbfgs", "scipy:L-BFGS-B")


def run_once(algo: str, dataset: tf.data.Dataset, weights: list[np.ndarray]) -> tuple[float, float]:
    """One user-level call on a fresh model with ``weights``: (final loss, wall seconds)."""
    model = plain_digits_mlp()
    model.set_weights(weights)
    start = time.perf_counter()
    res = flatvec.minimize(model, dataset, algo=algo, max_iter=200,
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wall = time.perf_counter() - start
    print(f"  {algo:16s} nit {res.nit:4d} nfev {res.nfev:4d} loss {res.fun:.3e} wall {wall:.2f} s "
          f"(first iteration done after {res.history['time'][1]:.2f} s)", flush=True)
    return float(res.fun), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    dataset = tf.data.Dataset.from_tensor_slices(
        ((x / 16.0).astype("float32"), y.astype("int32"))).batch(len(x))
    weights = plain_digits_mlp(seed=0).get_weights()
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for algo in METHODS:
            results[algo].append(run_once(algo, dataset, weights))
    for algo, runs in results.items():
        losses = ", ".join(f"{loss:.5f}" for loss, _ in runs)
        walls = ", ".join(f"{wall:.2f}" for _, wall in runs)
        print(f"{algo:16s} loss {losses}   wall s {walls}   median "
              f"{statistics.median(w for _, w in runs):.2f}")
    loss = {a: statistics.median(v for v, _ in r) for a, r in results.items()}
    wall = {a: statistics.median(w for _, w in r) for a, r in results.items()}
    print(f"loss ratio lbfgs / L-BFGS-B {loss['lbfgs'] / loss['scipy:L-BFGS-B']:.3f} "
          f"(limit 1.1); wall ratio {wall['lbfgs'] / wall['scipy:L-BFGS-B']:.3f} (limit < 1)")


if __name__ == "__main__":
    main()
