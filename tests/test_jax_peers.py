"""The JAX peers: their mirror computes the TensorFlow problem's function, and each peer runs
through the benchmark runner to the problem's target."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import analysis, jax_mirror, problems  # noqa: E402
from benchmarks.peers import METHODS  # noqa: E402
from benchmarks.runner import run_grid  # noqa: E402

JAX_PEERS = [name for name in METHODS if name.split(":")[0] in ("optax", "jaxopt", "optimistix")]


@pytest.mark.parametrize("name", ["rosenbrock-1k", "logreg-cancer", "mlp-digits-f64",
                                  "pinn-poisson-f64"])
def test_mirror_has_the_tf_loss_and_gradient_at_the_start(name: str) -> None:
    inst = problems.build(name)
    tf_result = inst.objective().value_and_gradient(tf.constant(inst.x0, inst.dtype))
    fun = jax_mirror.build_mirror(inst.mirror, inst.spec.dtype)
    f, g = jax.value_and_grad(fun)(jnp.asarray(inst.x0, inst.spec.dtype))
    assert f.dtype == jnp.float64
    assert float(f) == pytest.approx(float(tf_result.value), rel=1e-10)
    g_tf = tf_result.gradient.numpy()
    np.testing.assert_allclose(np.asarray(g), g_tf, rtol=1e-10, atol=1e-10 * np.abs(g_tf).max())


def test_unmirrored_problems_are_skipped_not_run() -> None:
    inst = problems.build("mlp-digits-f64-ds256")
    assert METHODS["optax:lbfgs"].applies(inst) is not None
    with pytest.raises(NotImplementedError):
        jax_mirror.build_mirror(inst.mirror, inst.spec.dtype)


def test_optax_nfev_counts_every_evaluation() -> None:
    # A host callback sees each evaluation the compiled loop makes; nfev must agree with it.
    from benchmarks.jax_peers import _optax_solve

    calls = []
    spec = problems.PROBLEMS["rosenbrock-1k"]

    def counted(x: jax.Array) -> jax.Array:
        jax.debug.callback(lambda: calls.append(1))
        return jax_mirror.build_mirror({"kind": "rosenbrock"}, "float64")(x)

    out = jax.jit(_optax_solve(counted, spec))(jnp.tile(jnp.array([-1.2, 1.0]), 50))
    jax.block_until_ready(out)
    assert int(out["nfev"]) == len(calls) > int(out["nit"]) > 10


def test_each_jax_peer_reaches_the_target_through_the_runner() -> None:
    records = run_grid(["logreg-cancer"], JAX_PEERS, repeats=1, max_iter=100, log=lambda _: None)
    analysis.derive(records)
    for r in records:
        assert r.error is None and r.skipped is None, (r.method, r.error, r.skipped)
        assert r.time_to_target is not None, r.method
        assert r.t_first > r.wall  # the cold call compiles, the timed one does not
        assert r.nfev >= r.nit > 0
