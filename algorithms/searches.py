"""Choosing a line search by name for the algorithms' ``line_search`` option."""

from __future__ import annotations

from typing import Any

from .line_search import LineSearch
from .more_thuente import MoreThuente
from .strong_wolfe import StrongWolfe

__all__ = ["LINE_SEARCHES", "make_line_search"]

LINE_SEARCHES = {"strong_wolfe": StrongWolfe, "more_thuente": MoreThuente}


def make_line_search(
    line_search: str | LineSearch, *, c1: float, c2: float, max_evals: int,
    defaults: dict[str, dict[str, Any]] | None = None, **options: Any,
) -> LineSearch:
    """A line search from its name in ``LINE_SEARCHES`` (built with ``c1``, ``c2``,
    ``max_evals`` and ``options``), or ``line_search`` itself if it is already an object with a
    ``search`` method.

    Parameters
    ----------
    line_search : str or LineSearch
        ``"strong_wolfe"`` (N&W Algorithms 3.5/3.6), ``"more_thuente"`` (MINPACK-2
        ``dcsrch``), or an instance.
    c1, c2, max_evals :
        The Wolfe constants and the evaluation budget of a search built by name.
    defaults : dict, optional
        Per name, keyword arguments used unless ``options`` gives them (an algorithm's own
        choice, such as ``{"more_thuente": {"xtol": 1e-14}}``).
    **options :
        Further keyword arguments of the class built by name (``xtol`` ...).
    """
    if isinstance(line_search, str):
        key = line_search.lower().replace("-", "_")
        if key not in LINE_SEARCHES:
            raise ValueError(
                f"line_search: expected one of {sorted(LINE_SEARCHES)} or an object with a "
                f"search method, got {line_search!r}")
        kwargs = {**(defaults or {}).get(key, {}), **options}
        return LINE_SEARCHES[key](c1=c1, c2=c2, max_evals=max_evals, **kwargs)
    if not callable(getattr(line_search, "search", None)):
        raise TypeError(f"line_search: expected a name or an object with a search method, got "
                        f"{type(line_search).__name__}")
    return line_search
