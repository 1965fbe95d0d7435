"""Between compiled calls: history, Keras callbacks, plain callables and the progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from flatvec._run.record import LOG_FIELDS, IterationRecord
from flatvec.result import OptimizeResult

__all__ = ["RunReporter"]



class _NoModel:
    """Stands in for ``callback.model`` in function/closure runs, so ``stop_training`` works."""

    stop_training = False


class _NoCallbacks:
    """An empty ``CallbackList``."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class RunReporter:
    """Records the history and drives callbacks once per compiled call.

    Keras callbacks see each iteration as an epoch (``on_epoch_begin``/``on_epoch_end`` with
    logs ``loss``, ``grad_norm``, ``step_size``, ``nfev``, ``njev``, ``nhev``) and the whole
    run as training (``on_train_begin``/``on_train_end``); setting
    ``model.stop_training = True`` stops the run.
    A plain callable receives an intermediate :class:`OptimizeResult` (``x``, ``fun``, ``jac``,
    ``nit``, ``nfev``, ``njev``, ``nhev``) and stops the run by returning True.
    """

    def __init__(
        self, callbacks: Sequence[Any] | None, model: Any, *, verbose: int, max_iter: int
    ) -> None:
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        keras_callbacks, plain = [], []
        for cb in callbacks or ():
            if isinstance(cb, keras.callbacks.Callback):
                keras_callbacks.append(cb)
            elif callable(cb):
                plain.append(cb)
            else:
                raise TypeError(
                    "callbacks: expected keras.callbacks.Callback objects or callables, "
                    f"got {type(cb).__name__}"
                )
        self._model = model if model is not None else _NoModel()
        # Without Keras callbacks the CallbackList's per-epoch log handling is skipped: it cost
        # ~0.4 ms an iteration, 5% of an L-BFGS iteration on the digits MLP.
        self._keras = (keras.callbacks.CallbackList(keras_callbacks, model=model)
                       if keras_callbacks else _NoCallbacks())
        if model is None:
            for cb in keras_callbacks:
                cb.set_model(self._model)
        self._plain = plain
        self._progbar = keras.utils.Progbar(
            max_iter or None, verbose=1, stateful_metrics=["loss", "grad_norm"]
        ) if verbose else None
        self.history: dict[str, list[float]] = {k: [] for k in (*LOG_FIELDS, "nit", "time")}

    @property
    def has_callbacks(self) -> bool:
        """True when Keras callbacks or plain callables were given."""
        return bool(self._plain) or not isinstance(self._keras, _NoCallbacks)

    def record(self, record: IterationRecord, elapsed: float) -> dict[str, float]:
        """Add an iteration to the history only (no callbacks, no progress bar)."""
        logs = record.logs()
        for key, value in logs.items():
            self.history[key].append(value)
        self.history["nit"].append(record.nit)
        self.history["time"].append(elapsed)
        return logs

    def begin(self, record: IterationRecord, elapsed: float) -> None:
        """Record the start point (its ``nit`` is not 0 for a run resumed from a
        checkpoint)."""
        self._model.stop_training = False
        self.record(record, elapsed)
        self._keras.on_train_begin()

    def iteration(
        self,
        record: IterationRecord,
        elapsed: float,
        point: Callable[[], tuple[np.ndarray, np.ndarray]],
    ) -> bool:
        """Report an iteration; True when a callback asked to stop.

        ``point()`` returns ``(x, g)`` as arrays; it is only called for plain callables, so a
        run without them never copies the vectors to the host.
        """
        nit = record.nit
        self._keras.on_epoch_begin(nit - 1)
        logs = self.record(record, elapsed)
        self._keras.on_epoch_end(nit - 1, dict(logs))
        stop = bool(getattr(self._model, "stop_training", False))
        if self._plain:
            x, g = point()
            partial = OptimizeResult(x=x, fun=logs["loss"], jac=g, nit=nit,
                                     nfev=int(logs["nfev"]), njev=int(logs["njev"]),
                                     nhev=int(logs["nhev"]))
            for cb in self._plain:
                stop |= bool(cb(partial))
        if self._progbar is not None:
            self._progbar.update(nit, [("loss", logs["loss"]), ("grad_norm", logs["grad_norm"])])
        return stop

    def end(self, result: OptimizeResult) -> None:
        if self._progbar is not None and result.nit != self._progbar.target:
            self._progbar.update(result.nit, finalize=True)
        grad_norm = float(np.max(np.abs(result.jac)))
        self._keras.on_train_end({"loss": result.fun, "grad_norm": grad_norm})
