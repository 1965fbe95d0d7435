"""minimize(..., checkpoint=DIR): kill and resume, resume after a finished run, mismatches, errors.

The truth every resume is held to is the uninterrupted run of the same problem: the same
iterates, bit for bit (float64, same machine and build), the same losses after the resume
point, and the same totals (nit, nfev).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from checkpoint_worker import EVERY, MAX_ITER, mlp_problem, rosen, run

import flatvec
from flatvec import Status

WORKER = Path(__file__).with_name("checkpoint_worker.py")
TIMEOUT = 60  # seconds, per subprocess: a hung worker fails the test instead of blocking it


def _saved_iterations(directory) -> list[int]:
    """Iterations of the checkpoints the manager's state file lists, oldest first."""
    state = tf.train.get_checkpoint_state(str(directory))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


def _assert_same_run_after(resumed, straight, start: int) -> None:
    """``resumed`` (its history starting at iteration ``start``) is ``straight`` from there."""
    assert resumed.history["nit"][0] == start
    np.testing.assert_array_equal(resumed.history["nit"], straight.history["nit"][start:])
    np.testing.assert_array_equal(resumed.history["loss"], straight.history["loss"][start:])
    np.testing.assert_array_equal(resumed.x, straight.x)
    assert (resumed.nit, resumed.nfev, resumed.njev) == (straight.nit, straight.nfev,
                                                         straight.njev)
    assert resumed.reason == straight.reason


# ---------------------------------------------------------------------- kill and resume
def test_a_killed_run_resumes_in_a_new_process_on_the_uninterrupted_trajectory(tmp_path):
    directory = tmp_path / "run"
    # The workers import the flatvec this process tests, whichever environment runs them.
    source = str(Path(flatvec.__file__).parents[1])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]))
    errors = tmp_path / "killed.err"
    with errors.open("w") as stderr:
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), "rosen", str(directory), str(tmp_path / "killed.npz"),
             "--slow"], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    watchdog = threading.Timer(TIMEOUT, worker.kill)
    watchdog.start()
    try:
        # The worker saves before its callback prints, so "nit 35" means flatvec-30 is written.
        for line in worker.stdout:
            if int(line.split()[1]) >= 3 * EVERY + EVERY // 2:
                worker.send_signal(signal.SIGKILL)
                break
        worker.wait(timeout=TIMEOUT)
    finally:
        watchdog.cancel()
        worker.stdout.close()
    assert worker.returncode == -signal.SIGKILL, errors.read_text()[-3000:]
    assert not (tmp_path / "killed.npz").exists()  # it did not finish
    killed_at = _saved_iterations(directory)[-1]
    assert killed_at % EVERY == 0 and 3 * EVERY <= killed_at < MAX_ITER

    # A fresh process without callbacks: blocks of several iterations, cut at the multiples.
    done = subprocess.run([sys.executable, str(WORKER), "rosen", str(directory),
                           str(tmp_path / "resumed.npz")], timeout=TIMEOUT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = np.load(tmp_path / "resumed.npz")
    straight = run("rosen", None)
    assert resumed["nit"][0] == killed_at and resumed["total_nit"] == straight.nit == MAX_ITER
    np.testing.assert_array_equal(resumed["x"], straight.x)  # bit-identical
    np.testing.assert_array_equal(resumed["loss"], straight.history["loss"][killed_at:])
    assert resumed["nfev"] == straight.nfev
    assert _saved_iterations(directory) == [MAX_ITER - EVERY, MAX_ITER]


# ---------------------------------------------------------------------- in-process resume
def test_a_keras_model_stopped_by_a_callback_resumes_into_a_fresh_model(tmp_path):
    straight = run("mlp", None)
    first = run("mlp", str(tmp_path), callbacks=[lambda r: r.nit == 23])
    assert first.reason == Status.STOPPED_BY_CALLBACK and first.nit == 23
    assert _saved_iterations(tmp_path) == [20, 23]  # every EVERY and at the end

    class Epochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append(epoch)

    epochs = Epochs()
    model, data, _ = mlp_problem(seed=1)  # other weights: the checkpoint, not x0, is the start
    resumed = flatvec.minimize(model, data, "lbfgs", loss="mse", gtol=0.0, ftol=0.0,
                               max_iter=MAX_ITER, checkpoint=str(tmp_path),
                               checkpoint_every=EVERY, callbacks=[epochs])
    _assert_same_run_after(resumed, straight, 23)
    assert epochs.seen == list(range(23, MAX_ITER))  # epochs numbered from the start
    reference, _, _ = mlp_problem(seed=0)
    flatvec.FlatParamSpace(reference.trainable_variables).assign(straight.x)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)  # the model ends at the result


def test_a_run_stopped_by_max_iter_returns_at_once_or_continues_under_a_larger_one(tmp_path):
    x0 = np.tile([-1.2, 1.0], 25)
    options = dict(gtol=0.0, ftol=0.0, checkpoint=str(tmp_path), checkpoint_every=7)
    straight = flatvec.minimize(rosen, x0, "lbfgs", gtol=0.0, ftol=0.0, max_iter=60)
    first = flatvec.minimize(rosen, x0, "lbfgs", max_iter=40, **options)
    assert _saved_iterations(tmp_path) == [35, 40]

    calls = []

    def counted(x):
        calls.append(1)
        return rosen(x)

    again = flatvec.minimize(counted, x0, "lbfgs", max_iter=40, **options)
    assert again.reason == Status.MAX_ITER and len(again.history["nit"]) == 1
    np.testing.assert_array_equal(again.x, first.x)
    assert (again.nit, again.nfev) == (first.nit, first.nfev)  # no evaluation counted
    # gtol is tested again at the restored point: a loose one is met there at once.
    loose = flatvec.minimize(rosen, x0, "lbfgs", max_iter=60, **dict(options, gtol=1e3))
    assert loose.reason == Status.CONVERGED_GTOL and loose.nit == 40
    longer = flatvec.minimize(rosen, x0, "lbfgs", max_iter=60, **options)
    _assert_same_run_after(longer, straight, 40)


def test_a_converged_run_keeps_its_status_when_resumed(tmp_path):
    x0 = np.tile([-1.2, 1.0], 25)
    done = flatvec.minimize(rosen, x0, "lbfgs", gtol=0.0, ftol_floor=1.0,
                            checkpoint=str(tmp_path))
    assert done.reason == Status.CONVERGED_FTOL
    # ftol=0 would not have stopped it; the stored reason (the last step's) is kept.
    again = flatvec.minimize(rosen, x0, "lbfgs", gtol=0.0, ftol=0.0, checkpoint=str(tmp_path))
    assert again.reason == Status.CONVERGED_FTOL and again.nit == done.nit
    np.testing.assert_array_equal(again.x, done.x)


# ---------------------------------------------------------------------- mismatches
@pytest.mark.parametrize(
    ("x0", "algo", "options", "what"),
    [
        (np.zeros(50), "cg", {}, "algorithm"),
        (np.zeros(50), "lbfgs", {"memory": 5}, "algorithm"),
        (np.zeros(40), "lbfgs", {}, "size"),
        (np.zeros(50, np.float32), "lbfgs", {}, "dtype"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused(tmp_path, x0, algo, options, what):
    flatvec.minimize(rosen, np.zeros(50), "lbfgs", max_iter=2, checkpoint=str(tmp_path))
    calls = []

    def counted(x):
        calls.append(1)
        return rosen(x)

    with pytest.raises(ValueError, match=f"checkpoint: .* {what} "):
        flatvec.minimize(counted, x0, algo, checkpoint=str(tmp_path), **options)
    assert calls == []  # refused before anything was traced or evaluated
    assert _saved_iterations(tmp_path) == [2]


def test_a_checkpoint_flatvec_did_not_write_is_refused(tmp_path):
    tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="checkpoint: .* did not write"):
        flatvec.minimize(rosen, np.zeros(50), "lbfgs", checkpoint=str(tmp_path))


# ---------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(checkpoint=3), TypeError, "checkpoint: expected a directory path.*got 3"),
        (dict(checkpoint=""), ValueError, "checkpoint: expected a directory path, got ''"),
        (dict(checkpoint=b"DIR"), TypeError, "checkpoint: expected a directory path .*got b'DIR'"),
        (dict(checkpoint="FILE"), ValueError, "checkpoint: expected a directory, got the file"),
        (dict(checkpoint="DIR", checkpoint_every=0), ValueError,
         "checkpoint_every: expected an int >= 1, got 0"),
        (dict(checkpoint="DIR", checkpoint_every=2.5), TypeError,
         "checkpoint_every: expected an int >= 1, got 2.5"),
        (dict(checkpoint="DIR", checkpoint_every=True), TypeError, "checkpoint_every"),
        (dict(checkpoint_every=5), TypeError, "checkpoint_every: only used with checkpoint"),
        (dict(checkpoint="DIR", algo="scipy:L-BFGS-B"), TypeError,
         "checkpoint: not supported with algo='scipy:L-BFGS-B'"),
    ],
)
def test_bad_checkpoint_arguments_raise_before_anything_runs(tmp_path, kwargs, error, match):
    (tmp_path / "FILE").write_text("not a directory")
    for key in ("checkpoint",):
        if kwargs.get(key) in ("DIR", "FILE"):
            kwargs[key] = tmp_path / kwargs[key]  # a pathlib.Path: os.PathLike is accepted
    calls = []

    def counted(x):
        calls.append(1)
        return rosen(x)

    kwargs.setdefault("algo", "lbfgs")
    with pytest.raises(error, match=match):
        flatvec.minimize(counted, np.zeros(4), **kwargs)
    assert calls == [] and not (tmp_path / "DIR").exists()
