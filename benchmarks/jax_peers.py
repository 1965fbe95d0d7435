"""JAX peers: optax, jaxopt and optimistix L-BFGS on the JAX mirror of a problem.

Each peer runs the whole optimization as one ``jax.jit``-compiled function of the start point
on :mod:`benchmarks.jax_mirror`'s ``fun(x)`` (same data, start point and dtype; float64 problems
need ``jax_enable_x64``, which the mirror turns on). The function is compiled once per problem:
the runner's cold call (``first``) carries the tracing and XLA compilation, the timed repeats
(``wall``) reuse the compiled executable.

- ``optax:lbfgs``: ``optax.lbfgs(memory_size=10)`` (zoom line search) stepped in a
  ``jax.lax.while_loop`` with ``optax.value_and_grad_from_state``; stops on ``||g||_inf <= gtol``,
  ``max_iter`` iterations, or L-BFGS-B's relative-decrease test ``f_prev - f <= ftol *
  max(|f_prev|, |f|, 1)`` (optax has no stopping rule of its own, so the loop applies the
  same ones as SciPy). ``nfev`` is 1 + the line search's steps, each one value-and-gradient
  evaluation.
- ``jaxopt:lbfgs``: ``jaxopt.LBFGS(fun, maxiter=max_iter, tol=gtol, history_size=10)``, its
  ``init_state``/``update`` driven by the same loop as ``LBFGS.run`` (so that the loss per
  iteration can be kept). jaxopt's ``tol`` bounds the gradient's l2 norm, which is at least its
  inf norm, so ``tol=gtol`` is the stricter test; jaxopt has no ``ftol``. ``nfev`` is jaxopt's
  ``num_fun_eval``.
- ``optimistix:lbfgs``, ``optimistix:bfgs``: ``optx.minimise(fun, optx.LBFGS(...) or
  optx.BFGS(...), x0, max_steps=2 * max_iter, throw=False)``. Optimistix has no gradient test:
  it stops when both the step and the decrease of f are small, ``|dy| < atol + rtol |y|``
  (inf norm) and ``|df| < atol + rtol |f|``; ``rtol = atol = ftol`` makes the f part L-BFGS-B's
  relative-decrease test, and the step part is then the binding one. Each optimistix step is one
  evaluation (a rejected line-search trial is a step too), so ``max_steps`` counts
  evaluations: ``2 * max_iter`` allows ``max_iter`` iterations at up to 2 evaluations each.
  ``nit`` is its accepted steps, ``nfev`` its steps. No per-step loss is returned, so the trace
  has the start and the end only (time to target is the whole run's time when it is reached).

Loss traces of optax and jaxopt are kept per iteration inside the compiled loop (XLA has no
clock): their times are interpolated by evaluation count over the run's wall time, as for
flatvec's iterations inside one compiled call. ``||g||_inf`` is that of the returned point.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import jax_mirror
from benchmarks.measure import RunOutput, Trace
from benchmarks.peers import MEMORY, Method, Prepared
from benchmarks.problems import Instance, ProblemSpec

__all__ = ["JAX_METHODS", "JaxMethod"]

_PACKAGES = {"optax": "optax", "jaxopt": "jaxopt", "optimistix": "optimistix"}


class JaxMethod(Method):
    """A :class:`~benchmarks.peers.Method` run on the problem's JAX mirror."""

    def unavailable(self) -> str | None:
        if not jax_mirror.available():
            return "JAX not installed (optional: pip install '.[jax]')"
        if importlib.util.find_spec(_PACKAGES[self.family]) is None:
            return f"{self.family} not installed (optional: pip install '.[jax]')"
        return None

    def applies(self, inst: Instance) -> str | None:
        return jax_mirror.unsupported(inst.mirror) or super().applies(inst)

    def prepare(self, inst: Instance) -> Prepared:
        import jax
        import jax.numpy as jnp

        fun = jax_mirror.build_mirror(inst.mirror, inst.spec.dtype)
        x0 = jnp.asarray(inst.x0, inst.spec.dtype)
        value_and_grad = jax.jit(jax.value_and_grad(fun))
        build = {"optax": _optax_solve, "jaxopt": _jaxopt_solve}.get(self.family)
        solve = jax.jit(build(fun, inst.spec) if build else _optimistix_solve(
            fun, inst.spec, self.algo))

        # float32 problems run with JAX's default, 64-bit types off (the mirror turns them on
        # for the float64 problems, process-wide): with them on, optimistix's L-BFGS promoted
        # its float32 descent direction to float64 and failed to trace.
        x64 = inst.spec.dtype == "float64"

        def evaluate() -> Any:
            with jax.enable_x64(x64):
                return jax.block_until_ready(value_and_grad(x0))

        def run() -> RunOutput:
            with jax.enable_x64(x64):
                start = time.perf_counter()
                out = jax.block_until_ready(solve(x0))
                wall = time.perf_counter() - start
            return _output(out, wall)

        return Prepared(lambda: None, run, evaluate)


def _output(out: dict[str, Any], wall: float) -> RunOutput:
    """The run's numbers from the compiled solver's outputs (trace times interpolated)."""
    nit, nfev = int(out["nit"]), int(out["nfev"])
    points = min(nit + 1, len(out["losses"]))
    losses = [float(v) for v in np.asarray(out["losses"])[:points]]
    evals = [int(v) for v in np.asarray(out["nfevs"])[:points]]
    times = [wall * e / max(nfev, 1) for e in evals]
    grad_inf = float(np.max(np.abs(np.asarray(out["grad"]))))
    return RunOutput(nit, nfev, float(out["loss"]), grad_inf, str(out.get("message", "")),
                     Trace(evals, times, losses), None)


def _decreased_enough(f_prev: Any, f: Any, ftol: float) -> Any:
    """L-BFGS-B's relative-decrease test, negated: True while the run should go on."""
    import jax.numpy as jnp

    scale = jnp.maximum(jnp.maximum(jnp.abs(f_prev), jnp.abs(f)), 1.0)
    return (f_prev - f) > ftol * scale


def _optax_solve(fun: Callable[[Any], Any], spec: ProblemSpec) -> Callable[[Any], Any]:
    import jax
    import jax.numpy as jnp
    import optax
    import optax.tree_utils as otu

    opt = optax.lbfgs(memory_size=MEMORY)
    value_and_grad = optax.value_and_grad_from_state(fun)
    cap = spec.max_iter + 1

    def solve(x0: Any) -> dict[str, Any]:
        def body(c: dict[str, Any]) -> dict[str, Any]:
            # At k = 0 this evaluates f at x0; later it reuses the line search's last value.
            value, grad = value_and_grad(c["x"], state=c["state"])
            updates, state = opt.update(grad, c["state"], c["x"], value=value, grad=grad,
                                        value_fn=fun)
            nfev = c["nfev"] + otu.tree_get(state, "num_linesearch_steps")
            f = otu.tree_get(state, "value")
            k = c["k"] + 1
            return {
                "x": optax.apply_updates(c["x"], updates), "state": state, "k": k,
                "f_prev": value, "f": f, "g": otu.tree_get(state, "grad"), "nfev": nfev,
                "losses": c["losses"].at[c["k"]].set(value).at[k].set(f),
                "nfevs": c["nfevs"].at[k].set(nfev),
            }

        def go_on(c: dict[str, Any]) -> Any:
            g_inf = jnp.max(jnp.abs(c["g"]))
            more = (c["k"] < spec.max_iter) & (g_inf > spec.gtol)
            return (c["k"] == 0) | (more & _decreased_enough(c["f_prev"], c["f"], spec.ftol))

        inf = jnp.asarray(jnp.inf, x0.dtype)
        carry = {
            "x": x0, "state": opt.init(x0), "k": jnp.asarray(0), "f_prev": inf, "f": inf,
            "g": jnp.full_like(x0, jnp.inf), "nfev": jnp.asarray(1),
            "losses": jnp.zeros(cap, x0.dtype), "nfevs": jnp.ones(cap, jnp.asarray(1).dtype),
        }
        c = jax.lax.while_loop(go_on, body, carry)
        return {"nit": c["k"], "nfev": c["nfev"], "loss": c["f"], "grad": c["g"],
                "losses": c["losses"], "nfevs": c["nfevs"]}

    return solve


def _jaxopt_solve(fun: Callable[[Any], Any], spec: ProblemSpec) -> Callable[[Any], Any]:
    import jax
    import jax.numpy as jnp
    import jaxopt

    solver = jaxopt.LBFGS(fun=fun, maxiter=spec.max_iter, tol=spec.gtol, history_size=MEMORY)
    cap = spec.max_iter + 1

    def solve(x0: Any) -> dict[str, Any]:
        def body(c: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
            x, state, losses, nfevs = c
            x, state = solver.update(x, state)
            k = state.iter_num
            return x, state, losses.at[k].set(state.value), nfevs.at[k].set(state.num_fun_eval)

        def go_on(c: tuple[Any, Any, Any, Any]) -> Any:
            state = c[1]
            # LBFGS.run's own test: error (||g||_2, inf before the first step) above tol.
            return (state.iter_num < spec.max_iter) & (state.error > spec.gtol)

        state = solver.init_state(x0)
        losses = jnp.zeros(cap, x0.dtype).at[0].set(state.value)
        nfevs = jnp.ones(cap, state.num_fun_eval.dtype)
        _, state, losses, nfevs = jax.lax.while_loop(go_on, body, (x0, state, losses, nfevs))
        return {"nit": state.iter_num, "nfev": state.num_fun_eval, "loss": state.value,
                "grad": state.grad, "losses": losses, "nfevs": nfevs}

    return solve


def _optimistix_solve(fun: Callable[[Any], Any], spec: ProblemSpec,
                      algo: str) -> Callable[[Any], Any]:
    import jax
    import jax.numpy as jnp
    import optimistix as optx

    tol = {"rtol": spec.ftol, "atol": spec.ftol}
    solver = (optx.LBFGS(**tol, history_length=MEMORY) if algo == "lbfgs"
              else optx.BFGS(**tol))

    def solve(x0: Any) -> dict[str, Any]:
        sol = optx.minimise(lambda y, _: fun(y), solver, x0, max_steps=2 * spec.max_iter,
                            throw=False)
        f0 = fun(x0)  # the trace's first point (not counted)
        f, g = jax.value_and_grad(fun)(sol.value)  # the returned point's (not counted)
        nfev = sol.stats["num_steps"]
        return {"nit": sol.state.num_accepted_steps, "nfev": nfev, "loss": f, "grad": g,
                "losses": jnp.stack([f0, f]), "nfevs": jnp.stack([jnp.ones_like(nfev), nfev])}

    return solve


JAX_METHODS: tuple[JaxMethod, ...] = (
    JaxMethod("optax:lbfgs", "optax"),
    JaxMethod("jaxopt:lbfgs", "jaxopt"),
    JaxMethod("optimistix:lbfgs", "optimistix"),
    JaxMethod("optimistix:bfgs", "optimistix", max_size=2000),
)
