"""Per-thread flags that a block of code sets for the calls it makes (tracing and eager
execution are per thread)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["flag_set"]


@contextlib.contextmanager
def flag_set(scope: threading.local, name: str, value: Any) -> Iterator[None]:
    """``scope.<name>`` is ``value`` inside the block (in this thread), what it was after."""
    before = getattr(scope, name, False)
    setattr(scope, name, value)
    try:
        yield
    finally:
        setattr(scope, name, before)
