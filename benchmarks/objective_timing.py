"""Cost of one full-batch ``value_and_gradient`` on the digits MLP, by data layout.

Compares, in one process and on the same weights:

- ``one batch``: ``Objective.from_model`` with all 1797 samples as a single batch;
- ``batch 64``: the same objective over a ``tf.data`` dataset batched by 64 (29 batches, held in
  memory and unrolled) and by 32 (57 batches, the stacked ``tf.while_loop`` path);
- ``streamed 64``: ``in_memory=False`` (the dataset is iterated every evaluation);
- ``bare tape``: a plain ``tf.function`` with a ``GradientTape`` over the whole array.

Each is called a few times to warm up, then timed as the median of ``--repeats`` calls
(interleaved, so that load from other processes affects all of them alike).
Model: Dense(128, tanh)-Dense(128, tanh)-Dense(10), float32.
Run: ``python -m benchmarks.objective_timing``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import flatvec  # noqa: E402
from benchmarks.problems import digits, plain_digits_mlp  # noqa: E402


def _median_times(fns: dict, x, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median wall time of each ``fn(x)``; calls are interleaved so load spikes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(x)[1].numpy()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(x)[1].numpy()  # .numpy() waits for the result
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)

    X, y = digits("float32")
    model = plain_digits_mlp()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def dataset(batch: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((X, y)).batch(batch)

    objectives = {
        "one batch (1797)": flatvec.Objective.from_model(model, (X, y), loss),
        "batch 64, in memory (29 batches)": flatvec.Objective.from_model(model, dataset(64), loss),
        "batch 32, in memory (57 batches)": flatvec.Objective.from_model(model, dataset(32), loss),
        "batch 64, streamed": flatvec.Objective.from_model(
            model, dataset(64), loss, in_memory=False
        ),
    }
    variables = model.trainable_variables
    space = flatvec.FlatParamSpace(model)
    Xt, yt = tf.constant(X), tf.constant(y)

    @tf.function
    def bare(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        space.assign(x)
        with tf.GradientTape() as tape:
            f = tf.reduce_mean(loss.call(yt, model(Xt)))
        return f, space.pack(tape.gradient(f, variables))

    x0 = space.get()
    fns = {name: obj.value_and_gradient for name, obj in objectives.items()}
    fns["bare tf.function tape (1797)"] = bare
    results = _median_times(fns, x0, args.repeats)
    f_ref = float(bare(x0)[0])
    for name, obj in objectives.items():
        f = float(obj.value_and_gradient(x0).value)
        assert abs(f - f_ref) <= 1e-5 * abs(f_ref), (name, f, f_ref)
    width = max(map(len, results))
    base = results["one batch (1797)"]
    print(f"median of {args.repeats} calls, float32, {os.cpu_count()} CPU cores")
    for name, t in results.items():
        print(f"{name:<{width}}  {t * 1e3:8.2f} ms  ({t / base:4.2f}x one batch)")
    return results


if __name__ == "__main__":
    main()
