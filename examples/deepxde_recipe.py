"""DeepXDE's own Poisson example finished with flatvec instead of DeepXDE's L-BFGS.

DeepXDE (TensorFlow 2 backend) trains a PINN with Adam and then L-BFGS through
``tfp.optimizer.lbfgs_minimize``. Its loss is a compiled closure over the network's
variables; flatvec takes it as it stands::

    def loss():
        losses = model.outputs_losses_train(state.X_train, state.y_train,
                                            state.train_aux_vars)[1]
        return tf.reduce_sum(losses)

    flatvec.minimize(loss, model.net.trainable_variables, "lbfgs", memory=100)

This script runs DeepXDE's ``Poisson_Dirichlet_1d`` example: Adam for 2000 steps, then from
the same point DeepXDE's L-BFGS (``model.compile("L-BFGS")``) and flatvec's ``lbfgs`` (with
DeepXDE's settings, and with its own defaults), and prints loss, iterations, wall time and
when flatvec reached DeepXDE's final loss. ``step`` in DeepXDE's log counts its calls of
tfp's L-BFGS, not L-BFGS iterations.

Needs DeepXDE with its TensorFlow backend (``DDE_BACKEND=tensorflow``, tensorflow-probability
and tf-keras beside Keras 3). Run: ``DDE_BACKEND=tensorflow python examples/deepxde_recipe.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("DDE_BACKEND", "tensorflow")


def build(seed: int = 0):
    """DeepXDE's 1-D Poisson problem with Dirichlet conditions, compiled for Adam."""
    import deepxde as dde
    import tensorflow as tf

    dde.config.set_random_seed(seed)
    dde.config.set_default_float("float64")

    def pde(x, y):
        dy_xx = dde.grad.hessian(y, x)
        return -dy_xx - np.pi**2 * tf.sin(np.pi * x)

    geom = dde.geometry.Interval(-1, 1)
    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on_boundary: on_boundary)
    data = dde.data.PDE(geom, pde, bc, 16, 2, solution=lambda x: np.sin(np.pi * x),
                        num_test=100)
    net = dde.nn.FNN([1] + [50] * 3 + [1], "tanh", "Glorot uniform")
    model = dde.Model(data, net)
    model.compile("adam", lr=0.001)
    return dde, model


def main(adam_steps: int = 2000, lbfgs_iterations: int = 1000,
         flatvec_iterations: int = 2000) -> dict[str, tuple]:
    """Adam, then DeepXDE's L-BFGS (``lbfgs_iterations``) and flatvec's
    (``flatvec_iterations``) from the same point; each row ``(loss, iterations, wall)``, and
    for flatvec's the seconds until it reached DeepXDE's final loss (nan: never)."""
    import tensorflow as tf

    import flatvec

    dde, model = build()
    model.train(iterations=adam_steps, display_every=adam_steps)
    start = [v.numpy() for v in model.net.trainable_variables]
    state = model.train_state

    def loss():
        losses = model.outputs_losses_train(state.X_train, state.y_train,
                                            state.train_aux_vars)[1]
        return tf.reduce_sum(losses)

    print(f"after Adam: loss {float(loss()):.3e}")
    rows = {}
    dde.optimizers.config.set_LBFGS_options(maxiter=lbfgs_iterations)
    model.compile("L-BFGS")
    t0 = time.perf_counter()
    model.train(display_every=lbfgs_iterations)
    rows["DeepXDE L-BFGS (tfp)"] = (float(loss()), int(model.train_state.step) - adam_steps,
                                    time.perf_counter() - t0)
    target = rows["DeepXDE L-BFGS (tfp)"][0]
    # DeepXDE's memory (100), run until no step decreases f (tfp went that far here), and
    # flatvec's defaults.
    for name, options in [("flatvec lbfgs, DeepXDE's settings",
                           {"memory": 100, "gtol": 0.0, "ftol": 0.0}),
                          ("flatvec lbfgs, defaults", {})]:
        for variable, value in zip(model.net.trainable_variables, start):
            variable.assign(value)
        t0 = time.perf_counter()
        res = flatvec.minimize(loss, model.net.trainable_variables, "lbfgs",
                               max_iter=flatvec_iterations, **options)
        rows[name] = (res.fun, res.nit, time.perf_counter() - t0)
        reached = [t for f, t in zip(res.history["loss"], res.history["time"]) if f <= target]
        rows[name] += (reached[0] if reached else float("nan"),)
    for name, (value, nit, wall, *to_target) in rows.items():
        extra = f"  DeepXDE's loss reached after {to_target[0]:.2f} s" if to_target else ""
        print(f"{name:36s} loss {value:.3e}  iterations {nit:5d}  {wall:6.2f} s{extra}")
    return rows


if __name__ == "__main__":
    main()
