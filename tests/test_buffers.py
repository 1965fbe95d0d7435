"""In-place row writes of L-BFGS's pair buffers (flatvec.buffers): they change no number of a
run (same iterates as the copying writes, and as under XLA), never touch a buffer someone else
holds (host snapshots of the carry, the start state), and are what the compiled loop runs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from problems import PROBLEMS

import flatvec
from flatvec import buffers
from flatvec._run.loop import CompiledLoop
from flatvec._run.stopping import StopRule

F64 = tf.float64
ROSENBROCK = PROBLEMS["extended_rosenbrock_100"]
X0 = ROSENBROCK.x0


def _loop(memory: int = 4, jit_compile: bool = False) -> CompiledLoop:
    objective = flatvec.Objective.from_function(ROSENBROCK.fun, dtype=F64, size=X0.size)
    return CompiledLoop(flatvec.get_algorithm("lbfgs", memory=memory), objective,
                        jit_compile=jit_compile)


def _trajectory(loop: CompiledLoop, blocks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every iteration's report row (f, |g|, step, counts) and the last point. Nothing of the
    carry is read between blocks, so after the first block the buffers stay the loop's own
    and every write of a later block is in place."""
    loop.start(tf.constant(X0), StopRule(0.0, 0.0, 1000, 0))
    rows = []
    for block in blocks:
        loop.set_block(block)
        rows.append(np.array(loop.advance().records()))
    return np.concatenate(rows), loop.carry().state.x.numpy()


def test_write_rows_outside_the_loop_returns_new_tensors_and_keeps_the_buffers():
    a = tf.constant(np.arange(12.0).reshape(3, 4))
    b = -a
    out_a, out_b = buffers.write_rows((a, b), tf.constant(1), (tf.fill([4], tf.constant(
        -1.0, F64)), tf.fill([4], tf.constant(7.0, F64))))
    assert not buffers.writes_in_place()
    np.testing.assert_array_equal(a.numpy(), np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(b.numpy(), -np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(out_a.numpy()[1], -1.0)
    np.testing.assert_array_equal(out_b.numpy()[1], 7.0)
    np.testing.assert_array_equal(np.delete(out_a.numpy(), 1, 0), np.delete(a.numpy(), 1, 0))
    np.testing.assert_array_equal(np.delete(out_b.numpy(), 1, 0), np.delete(b.numpy(), 1, 0))


@pytest.mark.parametrize("read", [2.5, np.nan])
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("mode", ["graph", "in_place", "xla"])
def test_write_rows_writes_the_row_only_where_kept(mode, keep, read):
    # `after` may hold anything (a NaN read too): it orders the write, it never moves it.
    @tf.function(autograph=False, jit_compile=mode == "xla")
    def write(keep: tf.Tensor, read: tf.Tensor) -> tf.Tensor:
        buffer = tf.reshape(tf.range(12.0, dtype=F64), [3, 4]) + 0.0  # held by nobody else
        after = tf.linalg.matvec(buffer, tf.fill([4], read))
        with buffers.in_place(mode == "in_place", owned=tf.constant(True)):
            (out,) = buffers.write_rows((buffer,), tf.constant(1), (tf.fill([4], tf.constant(
                -1.0, F64)),), after=(after,), keep=keep)
        return out

    expected = np.arange(12.0).reshape(3, 4)
    if keep:
        expected[1] = -1.0
    got = write(tf.constant(keep), tf.constant(read, F64)).numpy()
    np.testing.assert_array_equal(got, expected)


def _library_ops(loop) -> set[str]:
    """The ops of the functions the loop's iteration graph calls (its loop body among them)."""
    graph_def = loop.advance_function.get_concrete_function().graph.as_graph_def()
    return {node.op for f in graph_def.library.function for node in f.node_def}


def test_the_xla_iteration_copies_no_buffer():
    # XLA writes a loop's buffer in place only where the dataflow puts the write after every
    # read of the old rows (flatvec.buffers._after_reads); else it copied each [m, n] buffer
    # twice an iteration.
    loop = _loop(memory=4, jit_compile=True)
    loop.start(tf.constant(X0), StopRule(0.0, 0.0, 1000, 0))
    loop.advance()
    hlo = loop.advance_function.experimental_get_compiler_ir()(stage="optimized_hlo")
    shape = f"f64[4,{X0.size}]"
    assert shape in hlo
    copies = [line for line in hlo.splitlines() if f"= {shape}" in line and " copy(" in line]
    assert copies == []


@pytest.mark.private_tf
def test_the_compiled_iteration_writes_rows_in_place():
    loop = _loop()
    loop.start(tf.constant(X0), StopRule(0.0, 0.0, 1000, 0))
    assert loop.buffers_shared  # the start's tensors may be held elsewhere
    loop.advance()
    assert not loop.buffers_shared  # nothing read since: the next block owns them
    ops = _library_ops(loop)
    assert "InplaceUpdate" in ops
    loop.carry()
    assert loop.buffers_shared


@pytest.mark.private_tf
def test_in_place_writes_give_the_iterates_of_copying_writes(monkeypatch):
    # Blocks of several sizes: each block's first write copies, the others are in place.
    # TensorFlow's default graph options in both runs (the switch below turns the lean ones
    # off too, which round differently): the writes are all that differ.
    monkeypatch.setenv("FLATVEC_LEAN_GRAPHS", "0")
    blocks = [1, 3, 5, 8, 13]
    in_place = _trajectory(_loop(), blocks)
    monkeypatch.setenv("FLATVEC_PRIVATE_TF", "0")  # the public fallback: a copy per write
    copying_loop = _loop()
    copying = _trajectory(copying_loop, blocks)
    ops = _library_ops(copying_loop)
    assert "InplaceUpdate" not in ops
    assert in_place[0].shape[0] == sum(blocks)
    for a, b in zip(in_place, copying):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    assert np.abs(in_place[1] - X0).max() > 0.5  # the run went somewhere


@pytest.mark.parametrize("block", [1, 4])
def test_a_snapshot_of_the_carry_is_not_written_by_later_blocks(block):
    loop = _loop(memory=3)
    loop.start(tf.constant(X0), StopRule(0.0, 0.0, 1000, 0))
    loop.set_block(block)
    for _ in range(2):
        loop.advance()
    snapshot = loop.carry().state.memory
    saved = {k: v.numpy().copy() for k, v in snapshot._asdict().items()}
    for _ in range(3):
        loop.advance()
    after = loop.carry().state.memory
    # With 3 slots and >= 3 more pairs every row was rewritten since the snapshot.
    assert not np.array_equal(after.s.numpy(), saved["s"])
    for name, value in saved.items():
        np.testing.assert_array_equal(getattr(snapshot, name).numpy(), value, err_msg=name)


def test_xla_iteration_matches_the_in_place_graph():
    graph = _trajectory(_loop(), [4, 4])
    xla = _trajectory(_loop(jit_compile=True), [4, 4])
    for a, b in zip(graph, xla):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_state_handed_to_a_later_run_is_not_written():
    first = flatvec.minimize(ROSENBROCK.fun, X0, "lbfgs", memory=3, max_iter=6, gtol=0.0)
    saved = {k: v.numpy().copy() for k, v in first.state.memory._asdict().items()}
    second = flatvec.minimize(ROSENBROCK.fun, first.x, "lbfgs", memory=3, max_iter=12, gtol=0.0,
                              initial_state=first.state)
    assert second.nit == 12
    assert not np.array_equal(second.state.memory.s.numpy(), saved["s"])
    for name, value in saved.items():
        np.testing.assert_array_equal(getattr(first.state.memory, name).numpy(), value,
                                      err_msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_host_read_ever_sees_its_buffers_overwritten(seed):
    # A random interleaving of the ways the host gets at the carry (snapshots, the checkpoint
    # variables, eager blocks) and compiled blocks of random sizes: every tensor the host was
    # handed keeps the values it had when handed over, whatever ran after.
    rng = np.random.default_rng(seed)
    loop = _loop(memory=3)
    loop.start(tf.constant(X0), StopRule(0.0, 0.0, 10_000, 0))
    held = []
    for _ in range(12):
        action = rng.choice(["compiled", "compiled", "eager", "snapshot", "variables"])
        if action == "compiled":
            loop.set_block(int(rng.integers(1, 6)))
            loop.advance()
        elif action == "eager":
            loop.advance_eagerly(int(rng.integers(1, 3)))
        elif action == "snapshot":
            memory = loop.carry().state.memory
            held.append((memory, {k: v.numpy().copy() for k, v in memory._asdict().items()}))
        else:
            memory = loop.variables.state.memory  # what a checkpoint tracks
            values = {k: v.numpy().copy() for k, v in memory._asdict().items()}
            held.append((loop.carry().state.memory, values))
    loop.set_block(8)
    loop.advance()
    assert held, "the sequence held nothing"
    for memory, values in held:
        for name, value in values.items():
            np.testing.assert_array_equal(getattr(memory, name).numpy(), value, err_msg=name)
