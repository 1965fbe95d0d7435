"""NumPy's BLAS threads in the eager tier's host blocks (flatvec._run.block_guards.BlasThreads):
one thread while a loop measures, then BLAS's own threads only where the objective took less
than half of the measured iterations. The truth is threadpoolctl's report of the threads
BLAS would use, read inside the blocks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import threadpoolctl

import flatvec
from flatvec._run import block_guards
from flatvec._run.block_guards import BlasThreads
from flatvec._run.loop import CompiledLoop

BIG = np.zeros(block_guards.ONE_BLAS_THREAD_FROM)  # a carry's array at the size floor


def _blas_threads() -> int:
    return max(info["num_threads"] for info in threadpoolctl.threadpool_info()
               if info["user_api"] == "blas")


@pytest.fixture
def several_blas_threads():
    if not any(info["user_api"] == "blas" for info in threadpoolctl.threadpool_info()) \
            or _blas_threads() < 2:
        pytest.skip("NumPy's BLAS runs on one thread here: nothing to limit")
    return _blas_threads()


def test_one_thread_while_measuring_then_the_measured_choice(several_blas_threads):
    cheap, costly = BlasThreads(), BlasThreads()
    for choice in (cheap, costly):
        with choice.limit({"s": BIG}):
            assert _blas_threads() == 1
    cheap.record(2, 1.0, 0.1)  # two iterations: still measuring
    with cheap.limit({"s": BIG}):
        assert _blas_threads() == 1
    cheap.record(1, 1.0, 0.1)  # 3 iterations, the objective 10 % of them: threads pay
    costly.record(3, 1.0, 0.8)  # the objective 80 %: one thread
    with cheap.limit({"s": BIG}):
        assert _blas_threads() == several_blas_threads
    with costly.limit({"s": BIG}):
        assert _blas_threads() == 1
    costly.record(100, 1.0, 0.0)  # decided: later blocks do not change it
    with costly.limit({"s": BIG}):
        assert _blas_threads() == 1
    with costly.limit({"s": BIG[:-1], "x": np.zeros(3)}):  # under the floor: untouched
        assert _blas_threads() == several_blas_threads


@pytest.mark.parametrize("threads_below_share, threads_later", [(1.01, True), (0.0, False)])
def test_a_host_run_measures_its_objective_and_chooses(
        monkeypatch, tiers_on, several_blas_threads, threads_below_share, threads_later):
    """A run on the host whose L-BFGS buffers reach the floor: its first iterations run on
    one BLAS thread, the later ones as the measured share decides (here forced by the
    threshold)."""
    monkeypatch.setattr(block_guards, "THREADS_BELOW_SHARE", threads_below_share)
    seen: list[int] = []
    original = CompiledLoop._one_step

    def recorded(self, carry, rule):
        if isinstance(carry.state.x, np.ndarray):
            seen.append(_blas_threads())
        return original(self, carry, rule)

    monkeypatch.setattr(CompiledLoop, "_one_step", recorded)
    n = block_guards.ONE_BLAS_THREAD_FROM // 10 + 1  # 10 pairs: buffers of 10 n entries
    x0 = np.linspace(-1.0, 1.0, n)

    def rosen(x):
        return tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    res = flatvec.minimize(rosen, x0, "lbfgs", memory=10, max_iter=12, gtol=0.0, ftol=0.0)
    assert res.nit == 12 and len(seen) == 12
    measured = block_guards.MEASURED_ITERATIONS
    assert seen[:measured] == [1] * measured
    assert seen[-1] == (several_blas_threads if threads_later else 1)
