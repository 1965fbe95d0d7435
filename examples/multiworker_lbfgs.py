"""Full-batch L-BFGS of a Keras model under ``MultiWorkerMirroredStrategy``.

One process per worker, every worker running the same ``flatvec.minimize`` call. On a cluster,
set ``TF_CONFIG`` on each machine (its own ``task.index``) and start the same command there::

    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]},
                "task": {"type": "worker", "index": 0}}' python multiworker_lbfgs.py --worker

On one machine, ``python examples/multiworker_lbfgs.py`` starts two workers on loopback ports,
waits for them (killing both if one fails or they overrun a timeout), and compares what they
found with the same run in a single process. ``tests/test_multiworker.py`` runs exactly this.

Two ways of sharding the data are shown (``--modes``):

- ``auto``: every worker builds the whole dataset; tf.data's default auto-sharding gives each
  worker its part (by data elements, since the source is in memory, not files);
- ``shards``: every worker reads only its own rows (as it would read its own files), with
  auto-sharding turned off so that tf.data does not shard them a second time.

Either way the objective is the exact mean loss over every sample of every worker: each replica
sums its share and the sums are all-reduced. Shards may be ragged (67 samples on 2 workers here).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import flatvec

NUM_SAMPLES = 67  # not divisible by the number of workers or the batch sizes: ragged shards
GLOBAL_BATCH = 20  # "auto": batches of the whole dataset, split over the replicas
WORKER_BATCH = 11  # "shards": worker 0 has 34 rows (4 batches), worker 1 33 (3 batches)
MAX_ITER = 30
MODES = ("auto", "shards")
# A fixed number of iterations (no tolerance stops), so that runs are compared step for step.
OPTIONS = {"loss": "mse", "max_iter": MAX_ITER, "gtol": 0.0, "ftol": 0.0}


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """The whole dataset: a smooth 2-output regression with noise, float64."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(NUM_SAMPLES, 4))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.tanh(x[:, 3] - x[:, 0])], axis=1)
    return x, y + 0.1 * rng.normal(size=y.shape)


def build_model() -> keras.Model:
    """The same float64 MLP (same seed, same weights) in every process."""
    keras.utils.set_random_seed(1)
    l2 = keras.regularizers.L2(1e-3)  # regularization must be counted once, not once a worker
    return keras.Sequential([
        keras.Input((4,), dtype="float64"),
        keras.layers.Dense(8, activation="tanh", dtype="float64", kernel_regularizer=l2),
        keras.layers.Dense(2, dtype="float64", kernel_regularizer=l2),
    ])


def worker_dataset(mode: str, index: int, num_workers: int) -> tf.data.Dataset:
    """What worker ``index`` hands to ``minimize`` (see the module docstring)."""
    x, y = make_data()
    if mode == "auto":
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    rows = np.array_split(np.arange(NUM_SAMPLES), num_workers)[index]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = tf.data.Dataset.from_tensor_slices((x[rows], y[rows])).batch(WORKER_BATCH)
    return dataset.with_options(options)


def summary(result: flatvec.OptimizeResult) -> dict[str, Any]:
    return {"x": result.x.tolist(), "loss": result.history["loss"], "nit": result.nit,
            "nfev": result.nfev, "status": int(result.status), "fun": result.fun}


def run_worker(modes: tuple[str, ...] = MODES) -> None:
    """One worker: reads TF_CONFIG, runs ``minimize`` for each mode, prints JSON lines."""
    _emit({"event": "started"})  # imports done
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    index = resolver.task_id
    num_workers = resolver.cluster_spec().num_tasks("worker")
    # One all-reduce before any optimization: a cluster that cannot communicate fails here.
    ones = strategy.run(lambda: tf.ones([], tf.float64))
    replicas = int(strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None))
    _emit({"event": "ready", "worker": index, "replicas": replicas})
    for mode in modes:
        dataset = worker_dataset(mode, index, num_workers)
        start = time.perf_counter()
        with strategy.scope():  # the model's variables become mirrored across all workers
            model = build_model()
            result = flatvec.minimize(model, dataset, "lbfgs", **OPTIONS)
        _emit({"event": "result", "worker": index, "mode": mode, **summary(result),
               "seconds": time.perf_counter() - start})


def run_single() -> dict[str, Any]:
    """The reference: the same model and the whole data in one process, no strategy."""
    return summary(flatvec.minimize(build_model(), make_data(), "lbfgs", **OPTIONS))


def _emit(record: dict[str, Any]) -> None:
    print("FLATVEC " + json.dumps(record), flush=True)


def free_ports(count: int) -> list[int]:
    """Ports the OS hands out now on 127.0.0.1 (free unless someone takes them meanwhile)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """TF_CONFIG of worker ``index`` in a cluster of loopback workers."""
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def launch(
    num_workers: int = 2, modes: tuple[str, ...] = MODES, timeout: float = 120.0
) -> dict[str, Any]:
    """Run ``num_workers`` workers of this script on loopback and wait for them.

    If one worker fails the others would wait in a collective forever, so all are killed as
    soon as one exits with an error or the timeout passes. Returns ``records`` (every JSON
    line the workers printed), ``returncodes``, ``timed_out``, ``logs`` (each worker's output
    tail) and ``seconds``.
    """
    ports = free_ports(num_workers)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--modes",
               ",".join(modes)]
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        logs = [Path(tmp, f"worker{i}.log") for i in range(num_workers)]
        procs = []
        for i, log in enumerate(logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT,
                    env={**env, "TF_CONFIG": tf_config(ports, i)}))
        timed_out = False
        try:
            while any(p.poll() is None for p in procs):
                if any(p.poll() not in (None, 0) for p in procs):
                    break
                if time.monotonic() - start > timeout:
                    timed_out = True
                    break
                time.sleep(0.1)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        texts = [log.read_text() for log in logs]
    records = [json.loads(line[len("FLATVEC "):]) for text in texts
               for line in text.splitlines() if line.startswith("FLATVEC ")]
    return {"records": records, "returncodes": [p.returncode for p in procs],
            "timed_out": timed_out, "logs": [text[-3000:] for text in texts],
            "seconds": time.monotonic() - start}


def max_relative_difference(a: Any, b: Any) -> float:
    """The largest component-wise ``|a - b| / |b|``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)))


def norm_relative_difference(a: Any, b: Any) -> float:
    """``||a - b|| / ||b||``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="run as one worker (TF_CONFIG)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: auto,shards")
    parser.add_argument("--workers", type=int, default=2, help="loopback workers to start")
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    if args.worker:
        run_worker(modes)
        return
    run = launch(args.workers, modes)
    if run["timed_out"] or any(run["returncodes"]):
        sys.exit(f"workers failed: {run['returncodes']}\n" + "\n".join(run["logs"]))
    reference = run_single()
    print(f"{args.workers} workers, {run['seconds']:.1f} s; single process: f = "
          f"{reference['fun']:.12g} after {reference['nit']} iterations")
    for record in (r for r in run["records"] if r["event"] == "result"):
        x, x_ref = record["x"], reference["x"]
        print(f"worker {record['worker']} {record['mode']:>6}: f = {record['fun']:.12g}; "
              f"relative difference to one process: x {norm_relative_difference(x, x_ref):.1e} "
              f"(norm), {max_relative_difference(x, x_ref):.1e} (worst component); loss history "
              f"{max_relative_difference(record['loss'], reference['loss']):.1e}")


if __name__ == "__main__":
    main()
