"""A physics-informed network as DeepXDE users train one: Adam first, then full-batch L-BFGS
with flatvec, and Levenberg-Marquardt on the residual groups.

The problem: the 1-D Poisson equation ``-u'' = pi^2 sin(pi x)`` on ``[-1, 1]`` with
``u(-1) = u(1) = 0`` (DeepXDE's ``Poisson_Dirichlet_1d`` example; exact ``u = sin(pi x)``),
a 1-20-20-1 tanh network in float64.

- ``residual_groups()`` returns the PDE residual at the collocation points and the boundary
  residual, as a list: ``lm`` takes it as it stands (``residual_weights="mean"`` makes its loss
  ``mean(r_pde^2) + mean(r_bc^2)``, DeepXDE's), and ``loss()`` is the same sum for L-BFGS.
- After Adam the loss is small (1e-3 or less): flatvec's ``ftol`` is relative to the loss
  itself, so L-BFGS is not stopped by a decrease that is small next to 1 (L-BFGS-B's and
  DeepXDE's test stop such runs at once; ``ftol_floor=1`` asks for it).

Run: ``python examples/pinn_recipe.py`` (about a minute on 2 cores; ``--fast`` for a test).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import flatvec

F64 = "float64"


def build_problem(seed: int = 0, collocation: int = 64):
    """The network, its residual groups, the loss and the L2 error against the exact u."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((1,), dtype=F64),
        keras.layers.Dense(20, activation="tanh", dtype=F64),
        keras.layers.Dense(20, activation="tanh", dtype=F64),
        keras.layers.Dense(1, dtype=F64),
    ])
    x_inside = tf.constant(np.linspace(-1.0, 1.0, collocation)[:, None])
    x_boundary = tf.constant([[-1.0], [1.0]], tf.float64)
    source = np.pi**2 * tf.sin(np.pi * x_inside)

    def residual_groups():
        with tf.GradientTape() as outer:
            outer.watch(x_inside)
            with tf.GradientTape() as inner:
                inner.watch(x_inside)
                u = model(x_inside)
            u_x = inner.gradient(u, x_inside)
        u_xx = outer.gradient(u_x, x_inside)
        return [-u_xx - source, model(x_boundary)]

    def loss():
        pde, boundary = residual_groups()
        return tf.reduce_mean(pde**2) + tf.reduce_mean(boundary**2)

    x_test = np.linspace(-1.0, 1.0, 201)[:, None]
    exact = np.sin(np.pi * x_test)

    def l2_error() -> float:
        u = model(tf.constant(x_test)).numpy()
        return float(np.linalg.norm(u - exact) / np.linalg.norm(exact))

    return model, residual_groups, loss, l2_error


def adam(model, loss, steps: int) -> None:
    """DeepXDE's first phase: Adam with learning rate 1e-3."""
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss()
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return value

    for _ in range(steps):
        step()


def main(fast: bool = False) -> dict[str, dict[str, float]]:
    adam_steps, iterations = (500, 60) if fast else (3000, 400)
    model, residual_groups, loss, l2_error = build_problem()
    adam(model, loss, adam_steps)
    start = [v.numpy() for v in model.trainable_variables]
    print(f"after Adam ({adam_steps} steps): loss {float(loss()):.3e}, "
          f"L2 error {l2_error():.3e}")
    results = {}
    for name, fn, options in [
        ("lbfgs", loss, {}),
        ("lbfgs, L-BFGS-B's ftol test", loss, {"ftol_floor": 1.0}),
        ("lm", residual_groups, {"residual_weights": "mean"}),
    ]:
        for variable, value in zip(model.trainable_variables, start):
            variable.assign(value)
        algo = name.split(",")[0]
        t0 = time.perf_counter()
        res = flatvec.minimize(fn, model.trainable_variables, algo, max_iter=iterations,
                               gtol=1e-10, **options)
        wall = time.perf_counter() - t0
        results[name] = {"loss": res.fun, "nit": res.nit, "wall": wall, "l2": l2_error()}
        print(f"{name:28s} loss {res.fun:.3e}  nit {res.nit:4d}  {wall:6.2f} s  "
              f"L2 error {results[name]['l2']:.3e}  ({res.message.split('.')[0]})")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer steps (as the test runs)")
    main(fast=parser.parse_args().fast)
