"""The wheel holds every package of the source tree: pyproject.toml lists its packages by name
(``algorithms/`` is installed as ``flatvec.algorithms``), so a new sub-package must be listed."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(("flatvec", *p.parent.relative_to(ROOT / "flatvec").parts))
               for p in (ROOT / "flatvec").rglob("__init__.py")}
    on_disk |= {".".join(("flatvec.algorithms", *p.parent.relative_to(ROOT / "algorithms").parts))
                for p in (ROOT / "algorithms").rglob("__init__.py")}
    assert on_disk == listed, (f"missing from pyproject: {on_disk - listed}; "
                               f"stale: {listed - on_disk}")
    assert config["package-dir"]["flatvec.algorithms"] == "algorithms"
