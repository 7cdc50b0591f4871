"""Wall-clock budgets: parsing and tracking."""

from __future__ import annotations

import re
import time

from adaptloop.errors import BudgetError

_UNITS = {"s": 1, "m": 60, "h": 3600}


MIN_BUDGET_S = 10.0  # a budget under this cannot cover even the first pipeline and the final scoring
MAX_BUDGET_S = 48 * 3600.0


def parse_budget(text: str, minimum: float | None = None) -> float:
    """Seconds in ``90s``, ``20m``, ``1h`` or ``1h30m``, between ``minimum`` (default ``MIN_BUDGET_S``) and
    ``MAX_BUDGET_S``.

    Raises:
        BudgetError: the text does not parse, has no unit, or is out of range.
    """
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        raise BudgetError(f"budget '{text}' has no unit; write {t}s, {t}m or {t}h")
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", t)
    if not parts or re.sub(r"\s+", "", "".join(a + b for a, b in parts)) != re.sub(r"\s+", "", t):
        raise BudgetError(f"budget '{text}' does not parse; write it like 90s, 20m or 1h30m")
    seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if minimum is not None:
        if seconds < minimum:
            raise BudgetError(f"budget '{text}' is under {minimum:.0f}s")
    elif seconds < MIN_BUDGET_S:
        raise BudgetError(f"budget '{text}' is under the {MIN_BUDGET_S:.0f}s minimum: the first pipeline always "
                          "runs to the end and the winner is then scored on the frozen eval set; give at least "
                          f"{MIN_BUDGET_S:.0f}s (a useful cold start takes minutes)")
    if seconds > MAX_BUDGET_S:
        raise BudgetError(f"budget '{text}' is over the {MAX_BUDGET_S / 3600:.0f}h maximum; a run that long is "
                          "better split: stop, look at `adaptloop runs`, and `new --resume`")
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
