"""The digits-MLP acceptance run of the algorithms issue: ``lbfgs`` against SciPy's L-BFGS-B.

The user's call, repeated: ``flatvec.minimize(model, dataset, algo=A, max_iter=200)`` with
default tolerances, for A = ``"lbfgs"`` and ``"scipy:L-BFGS-B"``, on the float32
Dense(128, tanh)-Dense(128, tanh)-Dense(10) MLP with all 1797 digits as one batch.

- ``seeded``: every call on a fresh model built after ``keras.utils.set_random_seed(0)``. The
  seed call clears TensorFlow's kernel cache, so every compiled function is set up again
  (graph optimization, executors): each wall time includes everything a user waits for on a
  first call; flatvec traces the iteration only on the first model (later models of the same
  architecture share it, see ``flatvec._tf.graph_reuse``);
- ``fresh``: every call on a fresh model given the same weights with ``set_weights``, without
  reseeding: later calls trace only the objective and set up nothing again;
- ``repeated``: the same calls, all timed, on one model whose weights are reset before each
  call: the first call of each method traces, later ones reuse the objective ``minimize`` keeps
  on the model (as Keras reuses ``model.train_function`` across ``fit`` calls).

Calls alternate between the two methods (load from other processes hits both alike), each after
a ``gc.collect()`` (so that no call pays for collecting the previous call's graphs); reported
are the first call in the process of each method (``cold``; a separate process per method with
``--cold``), the final losses and the median wall times.
Run: ``python -m benchmarks.digits_mlp_lbfgs [--repeats 3] [--dtype float64]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import flatvec  # noqa: E402
from benchmarks.problems import digits, plain_digits_mlp  # noqa: E402

METHODS = ("lbfgs", "scipy:L-BFGS-B")
MODES = ("seeded", "fresh", "repeated")


def _loss(dtype: str) -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)


def _timed(algo: str, model: keras.Model, data: tf.data.Dataset, dtype: str
           ) -> tuple[float, float]:
    gc.collect()
    start = time.perf_counter()
    res = flatvec.minimize(model, data, algo=algo, max_iter=200, loss=_loss(dtype))
    wall = time.perf_counter() - start
    print(f"  {algo:16s} nit {res.nit:4d} nfev {res.nfev:4d} loss {res.fun:.4e} "
          f"wall {wall:.2f} s", flush=True)
    return float(res.fun), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--cold", action="store_true",
                        help="first measure each method's first call in a process of its own")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one cold call (a child process)
    args = parser.parse_args()
    x, y = digits(args.dtype)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    if args.only:
        _, wall = _timed(args.only, plain_digits_mlp(dtype=args.dtype), dataset, args.dtype)
        print(f"cold-wall {wall}")
        return
    cold: dict[str, list[float]] = {}
    if args.cold:
        print("cold (first call in a process)")
        for _ in range(args.repeats):
            for algo in METHODS:
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.digits_mlp_lbfgs", "--only", algo,
                     "--dtype", args.dtype], check=True, capture_output=True, text=True).stdout
                lines = out.splitlines()
                print(lines[-2], flush=True)
                cold.setdefault(algo, []).append(float(lines[-1].split()[1]))
    weights = plain_digits_mlp(seed=0, dtype=args.dtype).get_weights()
    shared_model = plain_digits_mlp(dtype=args.dtype)

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for mode in MODES:
        print(mode)
        for _ in range(args.repeats):
            for algo in METHODS:
                if mode == "seeded":
                    model = plain_digits_mlp(dtype=args.dtype)
                elif mode == "fresh":
                    model = keras.models.clone_model(shared_model)  # clone_model does not seed
                else:
                    model = shared_model
                model.set_weights(weights)
                results.setdefault((mode, algo), []).append(
                    _timed(algo, model, dataset, args.dtype))
    if cold:
        wall = {a: statistics.median(cold[a]) for a in METHODS}
        print(f"cold: median wall {wall['lbfgs']:.2f} s / {wall['scipy:L-BFGS-B']:.2f} s = "
              f"{wall['lbfgs'] / wall['scipy:L-BFGS-B']:.2f}")
    for mode in MODES:
        loss = {a: statistics.median(v for v, _ in results[mode, a]) for a in METHODS}
        wall = {a: statistics.median(w for _, w in results[mode, a]) for a in METHODS}
        print(f"{mode}: median loss lbfgs {loss['lbfgs']:.4e} / L-BFGS-B "
              f"{loss['scipy:L-BFGS-B']:.4e} = {loss['lbfgs'] / loss['scipy:L-BFGS-B']:.3f} "
              f"(limit 1.1); median wall {wall['lbfgs']:.2f} s / {wall['scipy:L-BFGS-B']:.2f} s "
              f"= {wall['lbfgs'] / wall['scipy:L-BFGS-B']:.2f} (limit < 1)")


if __name__ == "__main__":
    main()
