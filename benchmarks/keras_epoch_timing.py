"""Per-epoch time of ``model.fit`` with ``VectorOptimizer("gd")`` vs ``keras.optimizers.SGD``.

Both optimizers train the digits MLP (Dense(128, tanh)-Dense(128, tanh)-Dense(10), float32,
all 1797 samples, batch 32, 57 steps per epoch) from the same initial weights in one process.
Epochs are interleaved (one epoch of each, the order alternating between rounds) so that load
from other processes hits both alike; each epoch is timed by a callback from ``on_epoch_begin``
to ``on_epoch_end`` (the training loop only, no ``fit`` set-up), in wall-clock time and in CPU
time of this process (less sensitive to other processes on a shared machine). The first
``--warmup`` epochs (tracing) are dropped and the medians of the rest are reported with the
ratio ``median(VectorOptimizer) / median(SGD)``; the target is <= 1.10 (wall clock).

Run: ``python -m benchmarks.keras_epoch_timing [--epochs 15] [--momentum 0.9] [--jit]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.problems import digits, plain_digits_mlp  # noqa: E402
from flatvec.keras import VectorOptimizer  # noqa: E402

TARGET_RATIO = 1.10


class _EpochTimer(keras.callbacks.Callback):
    """Wall-clock and process CPU time of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.wall.append(time.perf_counter() - self._t0[0])
        self.cpu.append(time.process_time() - self._t0[1])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="timed epochs per optimizer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first epochs")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    args = parser.parse_args(argv)

    x, y = digits("float32")
    optimizers = {
        "SGD": keras.optimizers.SGD(0.05, momentum=args.momentum),
        "VectorOptimizer": VectorOptimizer("gd", learning_rate=0.05, momentum=args.momentum),
    }
    runs = {}
    for name, optimizer in optimizers.items():
        model = plain_digits_mlp()
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=args.jit,
        )
        runs[name] = (model, _EpochTimer())
    order = list(runs.values())
    for _ in range(args.warmup + args.epochs):
        for model, timer in order:
            fit = {"batch_size": args.batch_size, "shuffle": False, "verbose": 0}
            model.fit(x, y, epochs=1, callbacks=[timer], **fit)
        order.reverse()
    keep = slice(args.warmup, None)
    wall = {name: statistics.median(t.wall[keep]) for name, (_, t) in runs.items()}
    cpu = {name: statistics.median(t.cpu[keep]) for name, (_, t) in runs.items()}
    ratio = wall["VectorOptimizer"] / wall["SGD"]
    cpu_ratio = cpu["VectorOptimizer"] / cpu["SGD"]
    weights = [m.get_weights() for m, _ in runs.values()]
    drift = max(float(np.abs(a - b).max()) for a, b in zip(*weights))
    steps = -(-len(x) // args.batch_size)
    print(
        f"digits MLP, {len(x)} samples, batch {args.batch_size} ({steps} steps/epoch), "
        f"momentum {args.momentum}, jit_compile={args.jit}, {args.epochs} timed epochs"
    )
    for name in runs:
        print(
            f"  {name:16s} median epoch {wall[name] * 1e3:8.2f} ms wall, "
            f"{cpu[name] * 1e3:8.2f} ms CPU"
        )
    verdict = "ok" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"  ratio VectorOptimizer/SGD = {ratio:.3f} wall (target <= {TARGET_RATIO}: {verdict})")
    print(f"  ratio VectorOptimizer/SGD = {cpu_ratio:.3f} CPU time")
    print(f"  max |w_vector - w_sgd| after training: {drift:.2e}")
    return {
        **{f"wall_{k}": v for k, v in wall.items()},
        **{f"cpu_{k}": v for k, v in cpu.items()},
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "max_diff": drift,
    }


if __name__ == "__main__":
    main()
