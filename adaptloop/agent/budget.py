"""Wall-clock budgets: parsing and tracking."""

from __future__ import annotations

import re
import time

from adaptloop.errors import BudgetError

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """Seconds in ``90s``, ``20m``, ``1h``, ``1h30m`` or a bare number of minutes.

    Raises:
        BudgetError: the text does not parse or is not positive.
    """
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t) * 60
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", t)
        if not parts or re.sub(r"\s+", "", "".join(a + b for a, b in parts)) != re.sub(r"\s+", "", t):
            raise BudgetError(f"budget '{text}' does not parse; write it like 90s, 20m or 1h30m")
        seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if seconds <= 0:
        raise BudgetError(f"budget '{text}' must be more than zero; write it like 20m")
    return seconds


class Clock:
    """Monotonic budget clock; ``spent`` carries time spent before a resume."""

    def __init__(self, budget_s: float, spent: float = 0.0) -> None:
        self.budget_s = budget_s
        self._start = time.monotonic() - spent

    @property
    def spent(self) -> float:
        return time.monotonic() - self._start

    @property
    def left(self) -> float:
        return self.budget_s - self.spent

    def deadline(self, reserve: float = 0.0) -> float:
        """``time.monotonic()`` value at which the budget, less ``reserve``, runs out."""
        return self._start + self.budget_s - reserve
