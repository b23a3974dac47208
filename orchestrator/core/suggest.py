"""The one did-you-mean: the names closest to a misspelled one, and the hint that offers them."""

from __future__ import annotations

import difflib
from typing import Iterable


def closest(word: str, names: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``names`` close to ``word``, closest first."""
    return difflib.get_close_matches(word, list(names), n=n, cutoff=cutoff)


def did_you_mean(word: str, names: Iterable[str], otherwise: str = "") -> str:
    """``; did you mean 'name'?`` for the name closest to ``word``, else ``otherwise``."""
    close = closest(word, names)
    return f"; did you mean {close[0]!r}?" if close else otherwise
