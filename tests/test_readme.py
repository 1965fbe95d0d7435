"""The README's tour runs as written, and each of its calls does work (none starts from a
point that an earlier call already converged)."""

from __future__ import annotations

import re
from pathlib import Path

import flatvec

README = Path(__file__).resolve().parents[1] / "README.md"


def _tour() -> str:
    text = README.read_text()
    section = text[text.index("## A tour"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_tour_runs_and_every_call_does_work(monkeypatch):
    results = []
    minimize = flatvec.minimize

    def recording_minimize(*args, **kwargs):
        result = minimize(*args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(flatvec, "minimize", recording_minimize)
    exec(compile(_tour(), str(README), "exec"), {})  # the project's own text
    assert len(results) == 6
    for result in results:
        assert result.nit >= 1, result.message
    lbfgs, scipy_lbfgs = results[0], results[1]
    assert lbfgs.fun < 0.05 and scipy_lbfgs.fun < 0.05  # digits: both fit from one start
    assert results[-1].fun < 0.05  # the Objective's run, from another fresh model
