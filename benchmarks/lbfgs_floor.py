"""How low L-BFGS's overhead can go on extended Rosenbrock, n = 100 000 (float64, m = 10).

Every L-BFGS iteration that forms its direction explicitly reads the ``[m, n]`` pair buffers at
least four times (``S g`` and ``Y g`` against the new gradient, then ``p'S`` and ``t'Y`` for the
direction) and writes one new row into each. This script times exactly that work, alone, in a
``tf.while_loop``, with the rows written in place after the reads as flatvec's compiled loop
does (``tf.raw_ops.InplaceUpdate``, :mod:`flatvec.buffers`); ``--scatter`` writes them with
``tf.tensor_scatter_nd_update`` instead (in TensorFlow's graph executor each such write copies
the whole buffer), ``--no-writes`` leaves them out. It compares that with what the overhead
limit leaves:

    overhead = wall / (nfev * t_eval) <= L   leaves   (L - 1) * (nfev / nit) * t_eval

per iteration for everything that is not an evaluation. It prints t_eval, flatvec's L-BFGS
iteration, the floor and the lower bound on the overhead that the floor implies, all measured
in this process (medians of interleaved repeats).
Run: ``python -m benchmarks.lbfgs_floor [--limit 1.5] [--scatter | --no-writes]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import flatvec  # noqa: E402
from benchmarks import problems  # noqa: E402

MEMORY, LOOP = 10, 100


def _buffer_work(writes: str):
    """``LOOP`` iterations of the buffer passes (and row writes: ``"in-place"``,
    ``"scatter"`` or ``"none"``) of one L-BFGS step."""

    @tf.function(autograph=False)
    def run(s: tf.Tensor, y: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        def body(i, s, y, g):
            slot = tf.cast(i % MEMORY, tf.int32)
            sg, yg = tf.linalg.matvec(s, g), tf.linalg.matvec(y, g)
            d = tf.tensordot(sg, s, 1) - tf.tensordot(yg, y, 1)
            if writes == "scatter":
                s = tf.tensor_scatter_nd_update(s, [[slot]], [d])
                y = tf.tensor_scatter_nd_update(y, [[slot]], [g])
            elif writes == "in-place":
                with tf.control_dependencies([sg, yg, d]):  # the old rows are read first
                    s = tf.raw_ops.InplaceUpdate(x=s, i=[slot], v=[d])
                    y = tf.raw_ops.InplaceUpdate(x=y, i=[slot], v=[g])
            return i + 1, s, y, g + 1e-12 * d  # the next "gradient" depends on this one

        if writes == "in-place":  # the loop's own buffers: the caller's stay as they are
            s, y = tf.raw_ops.DeepCopy(x=s), tf.raw_ops.DeepCopy(x=y)
        _, _, _, g = tf.while_loop(lambda i, *_: i < LOOP, body,
                                   (tf.constant(0, tf.int64), s, y, g))
        return g

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=1.5)
    writes = parser.add_mutually_exclusive_group()
    writes.add_argument("--scatter", action="store_true")
    writes.add_argument("--no-writes", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    inst = problems.build("rosenbrock-100k")
    objective = inst.objective()
    x0 = np.asarray(inst.x0)
    n = x0.size
    rng = np.random.default_rng(0)
    s, y = (tf.constant(rng.standard_normal((MEMORY, n))) for _ in range(2))
    g = tf.constant(rng.standard_normal(n))
    mode = "none" if args.no_writes else "scatter" if args.scatter else "in-place"
    work = _buffer_work(mode)
    work(s, y, g).numpy()
    x = tf.constant(x0)
    objective.value_and_gradient(x)[1].numpy()
    flatvec.minimize(objective, x0, "lbfgs", max_iter=200, gtol=inst.spec.gtol)  # warm-up

    t_eval, t_floor, t_iter = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(20):
            objective.value_and_gradient(x)[1].numpy()
        t_eval.append((time.perf_counter() - start) / 20)
        start = time.perf_counter()
        work(s, y, g).numpy()
        t_floor.append((time.perf_counter() - start) / LOOP)
        start = time.perf_counter()
        res = flatvec.minimize(objective, x0, "lbfgs", max_iter=200, gtol=inst.spec.gtol)
        t_iter.append((time.perf_counter() - start) / res.nit)
    te, tf_, ti = (statistics.median(v) for v in (t_eval, t_floor, t_iter))
    per_it = res.nfev / res.nit
    budget = (args.limit - 1.0) * per_it * te
    print(f"t_eval {te * 1e3:.2f} ms; nfev/nit {res.nfev}/{res.nit} = {per_it:.2f}")
    print(f"flatvec lbfgs: {ti * 1e3:.2f} ms per iteration, overhead {ti / (per_it * te):.2f}")
    what = "buffer passes" if mode == "none" else f"buffer passes and row writes ({mode})"
    print(f"{what}: {tf_ * 1e3:.2f} ms per iteration; the limit {args.limit} leaves "
          f"{budget * 1e3:.2f} ms for all work besides evaluations")
    print(f"lower bound on the overhead: {(per_it * te + tf_) / (per_it * te):.2f}")


if __name__ == "__main__":
    main()
