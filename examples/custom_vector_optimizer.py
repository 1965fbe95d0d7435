"""Train a small LeNet-style CNN on scikit-learn's 8x8 digits two ways.

(a) ``model.fit`` with ``flatvec.keras.VectorOptimizer`` running a rule written here in a few
    lines: momentum on the *globally normalized* gradient, a rule that needs the whole
    gradient vector (its norm over all layers), which a per-variable Keras optimizer never sees.
(b) ``flatvec.minimize(model, dataset, algo="lbfgs")``: full-batch L-BFGS on the same model.

Both print the test accuracy. Run: ``python examples/custom_vector_optimizer.py [--fast]``.
"""

from __future__ import annotations

import argparse
import os
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import flatvec  # noqa: E402
from flatvec.keras import VectorOptimizer  # noqa: E402


# ---------------------------------------------------------------------- a user-written rule
class Velocity(NamedTuple):
    v: tf.Tensor


class NormalizedMomentum(flatvec.UpdateRule):
    r"""Heavy-ball momentum on the unit gradient direction of the whole model.

    .. math:: v \leftarrow \mu v + g / (\|g\|_2 + \epsilon), \qquad x \leftarrow x - \eta v
    """

    def __init__(self, *, learning_rate: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(learning_rate=learning_rate)
        self.momentum = float(momentum)

    def init_slots(self, x):
        return Velocity(tf.zeros_like(x))

    def update(self, x, g, slots, *, learning_rate):
        v = self.momentum * slots.v + g / (tf.norm(g) + 1e-12)
        return x - learning_rate * v, Velocity(v)


# ---------------------------------------------------------------------- data and model
def load_data(seed: int = 0):
    """Digits as (N, 8, 8, 1) float32 images in [0, 1]; a stratified 75/25 split."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)


def lenet(seed: int = 0, l2: float = 1e-3) -> keras.Model:
    """LeNet-5 shrunk to 8x8 inputs: two 3x3 conv layers, one pooling, three dense layers.

    A light L2 penalty on the dense kernels keeps full-batch L-BFGS, which drives the training
    loss near zero, from overfitting; both trainings minimize the same regularized loss.
    """
    keras.utils.set_random_seed(seed)
    dense = {"kernel_regularizer": keras.regularizers.L2(l2)}
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="relu", **dense),
            keras.layers.Dense(84, activation="relu", **dense),
            keras.layers.Dense(10, **dense),
        ]
    )


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# ---------------------------------------------------------------------- the two trainings
def train_with_fit(x_train, y_train, *, epochs: int = 5, batch_size: int = 32) -> keras.Model:
    model = lenet()
    # The Keras learning rate, schedules included, is the rule's step size eta.
    steps = epochs * -(-len(x_train) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.2, decay_steps=steps)
    rule = NormalizedMomentum(momentum=0.9)
    model.compile(optimizer=VectorOptimizer(rule, learning_rate=schedule), loss=LOSS)
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    return model


def train_with_lbfgs(
    x_train, y_train, *, max_iter: int = 300
) -> tuple[keras.Model, flatvec.OptimizeResult]:
    model = lenet()
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(1024)
    result = flatvec.minimize(model, dataset, algo="lbfgs", loss=LOSS, max_iter=max_iter)
    return model, result


def main(fast: bool = False) -> dict[str, float]:
    """Run both trainings; return the test accuracies. ``fast`` shortens the L-BFGS run."""
    x_train, x_test, y_train, y_test = load_data()

    fitted = train_with_fit(x_train, y_train, epochs=5)
    acc_fit = accuracy(fitted, x_test, y_test)
    print(
        "(a) model.fit + VectorOptimizer(NormalizedMomentum), 5 epochs: "
        f"test accuracy {acc_fit:.4f}"
    )

    minimized, result = train_with_lbfgs(x_train, y_train, max_iter=150 if fast else 300)
    acc_lbfgs = accuracy(minimized, x_test, y_test)
    print(
        f"(b) flatvec.minimize(algo='lbfgs'), {result.nit} iterations, {result.nfev} evaluations, "
        f"loss {float(result.fun):.3g}: test accuracy {acc_lbfgs:.4f}"
    )
    return {"fit": acc_fit, "lbfgs": acc_lbfgs}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer L-BFGS iterations")
    main(fast=parser.parse_args().fast)
