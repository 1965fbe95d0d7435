"""``minimize(..., checkpoint=DIR)``: save a run every few iterations and resume it after a kill.

What is saved (with ``tf.train.Checkpoint``, through a ``tf.train.CheckpointManager`` keeping the
last :data:`MAX_TO_KEEP`): the compiled loop's carry (the algorithm state, which holds ``x``; the
best point; the iteration count; the in-graph status), the objective's evaluation counters, and
a signature of the run (algorithm and its options, problem size and dtype, the carry's fields)
that a resume checks first. The loop's and the objective's own variables are what the
checkpoint tracks, so saving copies nothing on the host side and restoring puts the run back
where it stood: the next compiled call continues the saved trajectory.

A checkpoint is written at every multiple of ``checkpoint_every`` iterations and at the end of
the run, whatever ended it (convergence, a limit, a callback, Ctrl-C). The driver cuts its
blocks of iterations (``steps_per_call``) to end at the multiples (:meth:`RunCheckpoint.block`)
rather than saving at the first block end past one: with the automatic block size, which
follows measured times, the save points would otherwise depend on timing. On the development
machine (2 vCPUs) blocks cut to 10 iterations cost nothing measurable against the automatic
ones (50-D Rosenbrock, L-BFGS); a save itself takes about 10 ms at n = 50 and 25 ms at
n = 100 000, so ``checkpoint_every`` should make saves rare next to the iterations.
``CheckpointManager`` lists a new checkpoint only once its files are complete (the
``checkpoint`` state file is replaced atomically), so a kill during a write leaves the
previous one usable.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
import tensorflow as tf

from flatvec._run.loop import CompiledLoop, Report
from flatvec._run.stopping import StopRule
from flatvec.status import Status

__all__ = ["DEFAULT_EVERY", "MAX_TO_KEEP", "RunCheckpoint", "check_arguments", "open_checkpoint"]

DEFAULT_EVERY = 100  # iterations between checkpoints when checkpoint_every is not given
# The newest, and the one before it to go back to by hand (a resume reads the newest only: a
# kill cannot leave it half-written, as the manager lists a checkpoint once it is complete).
MAX_TO_KEEP = 2
_NAME = "flatvec"  # checkpoint file prefix: DIR/flatvec-<nit>.index, DIR/flatvec-<nit>.data-*
_FORMAT = 1

# Stored statuses that a resume tests again with this call's options (all are properties of
# the restored point and the totals): a run stopped by max_iter continues under a larger one.
# The others are about the last step (ftol, a failed line search, non-finite values, the
# algorithm's own reasons) and are kept: such a run returns its result at once.
_RETESTED = (Status.RUNNING, Status.CONVERGED_GTOL, Status.MAX_ITER, Status.MAX_EVAL)


def check_arguments(checkpoint: Any, checkpoint_every: Any, algo: Any) -> None:
    """Validate ``minimize``'s ``checkpoint`` and ``checkpoint_every`` (before anything runs)."""
    if checkpoint is None:
        if checkpoint_every is not None:
            raise TypeError(
                f"checkpoint_every: only used with checkpoint=DIR, got {checkpoint_every!r} "
                "without a checkpoint directory")
        return
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            f"checkpoint: expected a directory path (str or os.PathLike), got {checkpoint!r}")
    path = os.fspath(checkpoint)
    if isinstance(path, bytes):
        raise TypeError(f"checkpoint: expected a str directory path, got bytes {checkpoint!r}")
    if not path:
        raise ValueError("checkpoint: expected a directory path, got ''")
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        raise ValueError(f"checkpoint: expected a directory, got the file {path!r}")
    if checkpoint_every is not None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every,
                                                                (int, np.integer)):
            raise TypeError(f"checkpoint_every: expected an int >= 1, got {checkpoint_every!r}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: expected an int >= 1, got {checkpoint_every!r}")
    if isinstance(algo, str) and algo.lower().startswith("scipy:"):
        raise TypeError(
            f"checkpoint: not supported with algo={algo!r} (SciPy's state lives outside "
            "TensorFlow); use a flatvec algorithm such as 'lbfgs'")


def open_checkpoint(checkpoint: Any, checkpoint_every: Any, algorithm: Any,
                    x0: tf.Tensor) -> RunCheckpoint | _NoCheckpoint:
    """The run's checkpoint keeper (a do-nothing one when ``checkpoint`` is None)."""
    if checkpoint is None:
        return _NoCheckpoint()
    every = DEFAULT_EVERY if checkpoint_every is None else int(checkpoint_every)
    return RunCheckpoint(os.fspath(checkpoint), every, algorithm, x0)


def _algorithm_key(algorithm: Any) -> str:
    """The algorithm's class and options; memory addresses in reprs of option values (a
    function, an object without a repr) differ between processes and are left out."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(algorithm))


def _field_names(structure: Any, prefix: str = "") -> list[str]:
    """Dotted field paths of a nested state, in ``tf.nest.flatten`` order (the checkpoint's
    keys: a restore then matches fields by name, not by position)."""
    if hasattr(structure, "_fields"):
        items = [(field, getattr(structure, field)) for field in structure._fields]
    elif isinstance(structure, dict):
        items = [(str(key), structure[key]) for key in sorted(structure)]
    elif isinstance(structure, (list, tuple)):
        items = [(str(i), item) for i, item in enumerate(structure)]
    else:
        return [prefix[:-1]]
    return [name for key, item in items for name in _field_names(item, f"{prefix}{key}.")]


class RunCheckpoint:
    """Saves and restores one run of :func:`flatvec.minimize` in a directory.

    The driver calls, in order: :meth:`resume` once after the loop's start, :meth:`block` for
    every block size it sets, :meth:`after_block` after every compiled call and :meth:`finish`
    once at the end.
    """

    def __init__(self, directory: str, every: int, algorithm: Any, x0: tf.Tensor) -> None:
        self.directory, self.every = directory, every
        self._signature = {
            "format": _FORMAT,
            "algorithm": _algorithm_key(algorithm),
            "size": int(x0.shape[0]),
            "dtype": x0.dtype.name,
        }
        self._manager: tf.train.CheckpointManager | None = None
        self._loop: CompiledLoop | None = None
        self._saved_nit: int | None = None
        # Checked before the loop starts (nothing traced or evaluated for a wrong directory);
        # the carry's fields are checked in resume, once the algorithm's state exists.
        self._stored = self._read_signature()
        if self._stored is not None:
            self._compare(("format", "algorithm", "size", "dtype"))

    # ------------------------------------------------------------------ driver hooks
    def resume(self, loop: CompiledLoop, rule: StopRule, report: Report) -> Report:
        """Track ``loop``'s variables; if the directory holds a checkpoint, restore it into
        them and return the restored point's report (else ``report``, the fresh start's)."""
        carry = loop.variables
        names = _field_names(carry)
        variables = tf.nest.flatten(carry)
        self._signature["carry"] = [[n, v.shape.as_list(), v.dtype.name]
                                    for n, v in zip(names, variables)]
        self._loop = loop
        objective = loop.objective
        self._meta = tf.Variable(json.dumps(self._signature), dtype=tf.string, trainable=False)
        root = tf.train.Checkpoint(
            signature=self._meta,
            carry=dict(zip(names, variables)),
            counters={"nfev": objective.nfev, "njev": objective.njev, "nhev": objective.nhev,
                      "nonfinite": loop.nonfinite},
        )
        self._manager = tf.train.CheckpointManager(
            root, self.directory, max_to_keep=MAX_TO_KEEP, checkpoint_name=_NAME)
        path = self._manager.latest_checkpoint
        if self._stored is None or path is None:
            return report
        self._compare(("carry",))
        try:
            # Every object matched (assert_consumed): a resume restores all of the run or fails.
            root.restore(path).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            raise ValueError(f"checkpoint: cannot restore {path!r} ({err})") from err
        self._meta.assign(json.dumps(self._signature))
        nit = int(carry.nit.numpy())
        self._saved_nit = nit
        carry.status.assign(self._status_at_resume(carry, rule, objective))
        return loop.report()

    def block(self, iterations: int, nit: int) -> int:
        """``iterations`` cut so that the block ends at the next multiple of ``every``."""
        return max(1, min(iterations, self.every - nit % self.every))

    def after_block(self, nit: int) -> None:
        """Save when iteration ``nit`` is a multiple of ``every``."""
        if nit % self.every == 0:
            self._save(nit)

    def finish(self) -> None:
        """Save the final carry (unless the last save was of this iteration already)."""
        if self._loop is not None:
            self._save(int(self._loop.variables.nit.numpy()))

    # ------------------------------------------------------------------ internals
    def _save(self, nit: int) -> None:
        if nit != self._saved_nit:
            self._loop.sync_variables()  # the eager tier's carry, if newer
            self._manager.save(checkpoint_number=nit)
            self._saved_nit = nit

    def _read_signature(self) -> dict[str, Any] | None:
        path = tf.train.latest_checkpoint(self.directory)
        if path is None:
            return None
        meta = tf.Variable("", dtype=tf.string, trainable=False)
        try:
            # Only the signature: a partial restore (expect_partial) of one object.
            tf.train.Checkpoint(signature=meta).restore(path).expect_partial()
            text = meta.numpy().decode()
            stored = json.loads(text) if text else None
        except (tf.errors.OpError, ValueError) as err:
            raise ValueError(
                f"checkpoint: cannot read the checkpoint {path!r} ({err})") from err
        if not isinstance(stored, dict):
            raise ValueError(
                f"checkpoint: {self.directory!r} holds a checkpoint ({path!r}) that "
                "flatvec.minimize did not write; use an empty or new directory")
        return stored

    def _compare(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            stored, current = self._stored.get(key), self._signature.get(key)
            if stored != current:
                raise ValueError(
                    f"checkpoint: {self.directory!r} holds a run with {key} {stored!r}, but "
                    f"this run has {key} {current!r}; resume it with the same algorithm, "
                    "options and problem, or use another directory")

    @staticmethod
    def _status_at_resume(carry: Any, rule: StopRule, objective: Any) -> int:
        """The stored status, or (for :data:`_RETESTED` ones) the tests that depend on this
        call's options, at the restored point and totals, in the in-graph order."""
        stored = int(carry.status.numpy())
        if stored not in [int(s) for s in _RETESTED]:
            return stored
        g = carry.state.g
        if bool(tf.reduce_max(tf.abs(g)) <= tf.cast(rule.gtol, g.dtype)):
            return int(Status.CONVERGED_GTOL)
        if int(carry.nit.numpy()) >= rule.max_iter:
            return int(Status.MAX_ITER)
        evaluations = int(objective.nfev.numpy() + objective.nhev.numpy())
        if rule.max_eval > 0 and evaluations >= rule.max_eval:
            return int(Status.MAX_EVAL)
        return int(Status.RUNNING)


class _NoCheckpoint:
    """Stands in for :class:`RunCheckpoint` when ``checkpoint`` is None."""

    def resume(self, loop: Any, rule: Any, report: Report) -> Report:
        return report

    def block(self, iterations: int, nit: int) -> int:
        return iterations

    def after_block(self, nit: int) -> None:
        pass

    def finish(self) -> None:
        pass

