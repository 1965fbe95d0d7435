"""Objective.from_model under MirroredStrategy over two logical CPUs equals one device.

Logical devices must be configured before TensorFlow initializes, so the comparison runs in a
fresh interpreter; it prints JSON that this test checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import flatvec

    rng = np.random.default_rng(0)
    N = 67
    X, Y, W = rng.normal(size=(N, 4)), rng.normal(size=(N, 2)), rng.uniform(0.5, 1.5, N)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def build():
        keras.utils.set_random_seed(1)
        return keras.Sequential([
            keras.Input((4,), dtype="float64"),
            keras.layers.Dense(3, "tanh", dtype="float64",
                               kernel_regularizer=keras.regularizers.L2(0.01)),
            keras.layers.Dense(2, dtype="float64"),
        ])

    replicas_seen = []

    def scalar_mse(y_true, y_pred):  # a batch mean: NaN on an empty replica share
        ctx = tf.distribute.get_replica_context()
        replicas_seen.append(tf.get_static_value(ctx.replica_id_in_sync_group))
        return tf.reduce_mean(tf.square(y_true - y_pred))

    CASES = {
        # 67 = 2 * 30 + 7: ragged last batch, split 4 + 3 over the replicas
        "dataset-b30-weighted-hvp": (
            lambda: tf.data.Dataset.from_tensor_slices((X, Y, W)).batch(30), None, "mse", True),
        # 67 = 3 * 22 + 1: one replica gets an empty share of the last batch
        "dataset-b22-scalar-loss": (
            lambda: tf.data.Dataset.from_tensor_slices((X, Y)).batch(22), None, scalar_mse, False),
        "arrays-b16": (lambda: (X, Y, W), 16, "mse", False),
    }

    out = {"replicas": strategy.num_replicas_in_sync}
    v = rng.normal(size=3 * 4 + 3 + 3 * 2 + 2)
    out["v"] = v.tolist()
    for name, (make_data, batch_size, loss, with_hvp) in CASES.items():
        single = flatvec.Objective.from_model(build(), make_data(), loss, batch_size=batch_size)
        x = single.space.get()
        with strategy.scope():
            model = build()
        # created outside the scope: the strategy is found from the model's variables
        dist = flatvec.Objective.from_model(model, make_data(), loss, batch_size=batch_size)
        res = {"has_strategy": dist.strategy is strategy}
        for key, obj in (("single", single), ("dist", dist)):
            replicas_seen.clear()
            f, g = obj.value_and_gradient(x)
            res[key] = {"f": float(f), "g": g.numpy().tolist()}
            if with_hvp:
                res[key]["hv"] = obj.hessian_vector_product(x, tf.constant(v)).numpy().tolist()
                res[key]["gv"] = obj.gauss_newton_product(x, tf.constant(v)).numpy().tolist()
                res[key]["gm"] = obj.gauss_newton_matrix(x).matrix.numpy().tolist()
            res[key]["nfev"] = int(obj.nfev)
        res["replicas_seen"] = sorted(set(int(r) for r in replicas_seen))  # while tracing
        out[name] = res

    with strategy.scope():  # created inside the scope
        model = build()
        dist = flatvec.Objective.from_model(model, (X, Y), "mse", batch_size=10)
    single = flatvec.Objective.from_model(build(), (X, Y), "mse", batch_size=10)
    out["inside-scope"] = {
        "has_strategy": dist.strategy is strategy,
        "dist": {"f": float(dist.value_and_gradient(single.space.get())[0])},
        "single": {"f": float(single.value_and_gradient(single.space.get())[0])},
    }
    # Second-order methods: whole runs on full-batch products, mirrored against one device.
    for algo in ("newton-cg", "trust-ncg"):
        runs = {}
        for key in ("single", "dist"):
            if key == "dist":
                with strategy.scope():
                    model = build()
            else:
                model = build()
            data = tf.data.Dataset.from_tensor_slices((X, Y, W)).batch(30)
            r = flatvec.minimize(model, data, algo, loss="mse", max_iter=8, gtol=1e-10)
            runs[key] = {"x": r.x.tolist(), "nit": r.nit, "nfev": r.nfev, "nhev": r.nhev,
                         "fun": r.fun, "losses": r.history["loss"]}
        out["run-" + algo] = runs
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    script = tmp_path_factory.mktemp("mirrored") / "mirrored.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT") :])


def test_two_replicas(results):
    assert results["replicas"] == 2


@pytest.mark.parametrize(
    "case", ["dataset-b30-weighted-hvp", "dataset-b22-scalar-loss", "arrays-b16"]
)
def test_mirrored_equals_single_device(results, case):
    res = results[case]
    assert res["has_strategy"]
    single, dist = res["single"], res["dist"]
    assert np.isfinite(dist["f"])
    assert abs(dist["f"] - single["f"]) <= 1e-12 * abs(single["f"])
    np.testing.assert_allclose(dist["g"], single["g"], rtol=1e-11, atol=1e-14)
    if "hv" in single:
        np.testing.assert_allclose(dist["hv"], single["hv"], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(dist["gv"], single["gv"], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(dist["gm"], single["gm"], rtol=1e-10, atol=1e-13)
    assert dist["nfev"] == single["nfev"] == 1
    if "hv" in single:  # the dense matrix is a Jacobian evaluation, not a function one
        np.testing.assert_allclose(np.asarray(single["gm"]) @ results["v"], single["gv"],
                                   rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("algo", ["newton-cg", "trust-ncg"])
def test_second_order_runs_mirrored_equal_single_device(results, algo):
    single, dist = results["run-" + algo]["single"], results["run-" + algo]["dist"]
    assert single["nhev"] > 0 and single["nit"] == 8
    assert (dist["nit"], dist["nfev"], dist["nhev"]) == (single["nit"], single["nfev"],
                                                         single["nhev"])
    # The per-iteration losses agree to 1e-6, the weights to 1e-4: the sums' rounding
    # (1e-12 relative in g) changes where the inner CG stops, and Newton steps along directions
    # the loss barely sees amplify it.
    np.testing.assert_allclose(dist["losses"], single["losses"], rtol=1e-6)
    np.testing.assert_allclose(dist["x"], single["x"], rtol=1e-4, atol=1e-8)


def test_loss_runs_on_both_replicas(results):
    assert results["dataset-b22-scalar-loss"]["replicas_seen"] == [0, 1]


def test_objective_created_inside_the_scope(results):
    res = results["inside-scope"]
    assert res["has_strategy"]
    assert abs(res["dist"]["f"] - res["single"]["f"]) <= 1e-12 * abs(res["single"]["f"])
