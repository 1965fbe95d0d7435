"""The benchmark problems written in PyTorch: same architecture, data, dtype and start point.

Each mirror is what a PyTorch user would write (``nn.Sequential`` models, ``torch.optim.LBFGS``
closures). Keras stores Dense kernels as ``(in, out)`` and Conv2D kernels as ``(kh, kw, in,
out)`` on NHWC data; the mirrors take the same numbers in PyTorch's layouts and, for the CNN,
flatten in NHWC order so that the two networks compute the same function of the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = ["TorchProblem", "available", "build_mirror", "pick_threads"]

# Set by `--threads`: then no automatic choice is made.
FIXED_THREADS: int | None = None


def available() -> bool:
    """True when PyTorch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def pick_threads(closure: Callable[[], Any], calls: int = 5) -> int:
    """Use whichever of 1 thread or PyTorch's default evaluates ``closure`` faster; return it.

    On a machine whose cores are shared with other processes, PyTorch's OpenMP pool can be many
    times slower with all cores than with one (the CNN here: 200-340 ms against 26 ms per
    evaluation with two threads against one, while TensorFlow's pool was unaffected), so a
    fixed choice would measure the machine's load rather than the library.
    """
    import torch

    if FIXED_THREADS is not None:
        torch.set_num_threads(FIXED_THREADS)
        return FIXED_THREADS
    default = _DEFAULT_THREADS.setdefault("n", torch.get_num_threads())
    best, best_time = default, float("inf")
    for threads in dict.fromkeys((default, 1)):
        torch.set_num_threads(threads)
        closure()
        start = time.perf_counter()
        for _ in range(calls):
            closure()
        elapsed = time.perf_counter() - start
        if elapsed < best_time:
            best, best_time = threads, elapsed
    torch.set_num_threads(best)
    return best


_DEFAULT_THREADS: dict[str, int] = {}


class TorchProblem(NamedTuple):
    """``params`` to optimize and ``closure()``: zero the gradients, evaluate f, backpropagate,
    return f (a 0-d tensor), as ``torch.optim.LBFGS.step`` expects. ``fun(x)``, where there is
    one, is the same loss as a differentiable function of all parameters as one flat tensor
    (what pytorch-minimize takes)."""

    params: list[Any]
    closure: Callable[[], Any]
    fun: Callable[[Any], Any] | None = None


def build_mirror(mirror: dict[str, Any], dtype: str) -> TorchProblem:
    """The PyTorch version of a problem from its ``Instance.mirror`` arrays."""
    import torch

    kind = mirror["kind"]
    tdt = getattr(torch, dtype)
    if kind == "rosenbrock":
        return _rosenbrock(torch, torch.tensor(mirror["x0"], dtype=tdt))
    if kind == "logreg":
        return _logreg(torch, mirror, tdt)
    if kind == "pinn":
        return _pinn(torch, mirror, tdt)
    if kind in ("mlp", "cnn"):
        return _classifier(torch, mirror, tdt)
    if kind == "sinc":
        return _sinc(torch, mirror, tdt)
    raise ValueError(f"mirror: unknown problem kind {kind!r}")


def _closure(torch: Any, params: list[Any], loss_fn: Callable[[], Any],
             fun: Callable[[Any], Any] | None = None) -> TorchProblem:
    def closure() -> Any:
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        return loss.detach()

    return TorchProblem(params, closure, fun)


def _flat_call(torch: Any, net: Any) -> Callable[[Any, Any], Any]:
    """``call(x, inputs)``: the net's output with its parameters taken from the flat ``x``."""
    names = [name for name, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    sizes = [p.numel() for _, p in net.named_parameters()]

    def call(x: Any, inputs: Any) -> Any:
        parts = [t.reshape(shape) for t, shape in zip(torch.split(x, sizes), shapes)]
        return torch.func.functional_call(net, dict(zip(names, parts)), (inputs,))

    return call


def _rosenbrock(torch: Any, x0: Any) -> TorchProblem:
    x = x0.clone().requires_grad_(True)

    def fun(z: Any) -> Any:
        odd, even = z[0::2], z[1::2]
        return torch.sum(100.0 * (even - odd**2) ** 2 + (1.0 - odd) ** 2)

    return _closure(torch, [x], lambda: fun(x), fun)


def _logreg(torch: Any, mirror: dict[str, Any], tdt: Any) -> TorchProblem:
    features = torch.tensor(mirror["x"], dtype=tdt)
    labels = torch.tensor(mirror["y"], dtype=tdt)
    w = torch.tensor(mirror["x0"], dtype=tdt).requires_grad_(True)
    d, l2 = features.shape[1], mirror["l2"]

    def fun(v: Any) -> Any:
        z = features @ v[:d] + v[d]
        data_term = torch.mean(torch.nn.functional.softplus(z) - labels * z)
        return data_term + 0.5 * l2 * torch.sum(v[:d] ** 2)

    return _closure(torch, [w], lambda: fun(w), fun)


def _nhwc_flatten(torch: Any) -> Any:
    """A module flattening NCHW conv features in Keras' (H, W, C) order."""

    class FlattenNHWC(torch.nn.Module):
        def forward(self, h: Any) -> Any:
            return h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)

    return FlattenNHWC()


def _load(torch: Any, net: Any, weights: list[np.ndarray], tdt: Any) -> list[Any]:
    """Copy Keras-layout weights into the net's Linear/Conv2d layers (in order)."""
    layers = [m for m in net if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    if 2 * len(layers) != len(weights):
        raise ValueError(f"weights: expected {2 * len(layers)} arrays, got {len(weights)}")
    net.to(tdt)
    with torch.no_grad():
        for layer, kernel, bias in zip(layers, weights[0::2], weights[1::2]):
            k = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
            layer.weight.copy_(torch.tensor(np.ascontiguousarray(k), dtype=tdt))
            layer.bias.copy_(torch.tensor(bias, dtype=tdt))
    return list(net.parameters())


def _classifier(torch: Any, mirror: dict[str, Any], tdt: Any) -> TorchProblem:
    nn = torch.nn
    x = torch.tensor(mirror["x"], dtype=tdt)
    y = torch.tensor(mirror["y"], dtype=torch.long)
    if mirror["kind"] == "mlp":
        net = nn.Sequential(
            nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10)
        )
    else:
        x = x.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        net = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 3, padding=1), nn.Tanh(), _nhwc_flatten(torch),
            nn.Linear(256, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
        )
    params = _load(torch, net, mirror["weights"], tdt)
    kernels = [m.weight for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
    l2 = mirror["l2"]

    def penalty() -> Any:
        return l2 * sum(torch.sum(k**2) for k in kernels)

    batch_size = mirror.get("batch_size")
    if batch_size is None:
        call = _flat_call(torch, net)
        weights = [name.endswith("weight") for name, _ in net.named_parameters()]
        sizes = [p.numel() for p in net.parameters()]

        def fun(z: Any) -> Any:
            reg = sum(torch.sum(t**2) for t, w in zip(torch.split(z, sizes), weights) if w)
            return nn.functional.cross_entropy(call(z, x), y) + l2 * reg

        return _closure(
            torch, params, lambda: nn.functional.cross_entropy(net(x), y) + penalty(), fun
        )

    # Same full-batch objective, accumulated batch by batch (as a DataLoader loop would).
    batches = list(zip(torch.split(x, batch_size), torch.split(y, batch_size)))
    total = float(x.shape[0])

    def closure() -> Any:
        for p in params:
            p.grad = None
        reg = penalty()
        reg.backward()
        loss = reg.detach()
        for xb, yb in batches:
            part = nn.functional.cross_entropy(net(xb), yb, reduction="sum") / total
            part.backward()
            loss += part.detach()
        return loss

    return TorchProblem(params, closure)


def _pinn(torch: Any, mirror: dict[str, Any], tdt: Any) -> TorchProblem:
    nn = torch.nn
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    params = _load(torch, net, mirror["weights"], tdt)
    xs = torch.tensor(mirror["x"], dtype=tdt).requires_grad_(True)
    source = torch.tensor(mirror["source"], dtype=tdt)
    bound = torch.tensor(mirror["bound"], dtype=tdt)

    def loss_of(forward: Callable[[Any], Any]) -> Any:
        u = forward(xs)
        (du,) = torch.autograd.grad(u.sum(), xs, create_graph=True)
        (d2u,) = torch.autograd.grad(du.sum(), xs, create_graph=True)
        return torch.mean((d2u - source) ** 2) + 0.5 * torch.sum(forward(bound) ** 2)

    call = _flat_call(torch, net)
    return _closure(torch, params, lambda: loss_of(net),
                    lambda z: loss_of(lambda inputs: call(z, inputs)))


def _sinc(torch: Any, mirror: dict[str, Any], tdt: Any) -> TorchProblem:
    nn = torch.nn
    width = mirror["weights"][0].shape[1]
    net = nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1))
    params = _load(torch, net, mirror["weights"], tdt)
    x = torch.tensor(mirror["x"], dtype=tdt)
    y = torch.tensor(mirror["y"], dtype=tdt)
    call = _flat_call(torch, net)
    return _closure(torch, params, lambda: nn.functional.mse_loss(net(x), y),
                    lambda z: nn.functional.mse_loss(call(z, x), y))
