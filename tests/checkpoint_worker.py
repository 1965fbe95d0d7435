"""A run with ``checkpoint=DIR`` in a process of its own (used by tests/test_checkpointing.py).

``python tests/checkpoint_worker.py PROBLEM DIR OUT [--slow]`` minimizes PROBLEM (``rosen``: the
50-D Rosenbrock function; ``mlp``: a small Keras model) with L-BFGS in float64, checkpointing to
DIR every :data:`EVERY` iterations, and saves the result to OUT (``.npz``). With ``--slow``, a
callback prints ``nit <k>`` after every iteration and sleeps, so that a test can kill the
process mid-run, after a given checkpoint was written (the driver saves before callbacks run).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import flatvec  # noqa: E402

EVERY = 10
MAX_ITER = 100
# No convergence test stops these runs: every run makes MAX_ITER iterations (or the same
# line-search failure), so the runs compared have the same length.
OPTIONS = dict(gtol=0.0, ftol=0.0, max_iter=MAX_ITER)


def rosen(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosen_problem() -> tuple:
    return rosen, np.tile([-1.2, 1.0], 25), {}


def mlp_problem(seed: int = 0) -> tuple:
    """A 4-16-1 tanh network on 64 fixed samples (weights from ``seed``)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 4))
    y = np.sin(x.sum(axis=1, keepdims=True))
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((4,), dtype="float64"),
        keras.layers.Dense(16, activation="tanh", dtype="float64"),
        keras.layers.Dense(1, dtype="float64"),
    ])
    return model, (x, y), {"loss": "mse"}



def run(problem: str, directory: str | None, seed: int = 0, **options) -> flatvec.OptimizeResult:
    """Minimize PROBLEM (its start from ``seed`` for ``mlp``), checkpointing to ``directory``."""
    fun, x0, extra = rosen_problem() if problem == "rosen" else mlp_problem(seed)
    if directory is not None:
        extra = dict(extra, checkpoint=directory, checkpoint_every=EVERY)
    return flatvec.minimize(fun, x0, "lbfgs", **OPTIONS, **extra, **options)


def _print_and_wait(intermediate_result) -> None:
    print(f"nit {intermediate_result.nit}", flush=True)
    time.sleep(0.02)


def main(argv: list[str]) -> None:
    problem, directory, out = argv[:3]
    callbacks = [_print_and_wait] if "--slow" in argv else None
    res = run(problem, directory, callbacks=callbacks)
    np.savez(out, x=res.x, loss=np.array(res.history["loss"]), nit=np.array(res.history["nit"]),
             total_nit=res.nit, nfev=res.nfev, status=int(res.reason))


if __name__ == "__main__":
    main(sys.argv[1:])
