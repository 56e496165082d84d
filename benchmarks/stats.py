"""Medians, spreads and ratios: the machine is shared and noisy, so every number is a median of
repeats, printed with its range."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def to_json(self) -> dict:
        v = self.values
        return {"median": self.median, "min": min(v) if v else None, "max": max(v) if v else None, "samples": v}


def fmt(value: float | None) -> str:
    if value is None:
        return "–"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(s: Samples | None) -> str:
    """'median (min–max)' or the single value."""
    if s is None or not s.values:
        return "–"
    if len(s.values) == 1:
        return fmt(s.values[0])
    return f"{fmt(s.median)} ({fmt(min(s.values))}–{fmt(max(s.values))})"


def ratio(a: Samples | None, b: Samples | None) -> float | None:
    if a is None or b is None or a.median is None or not b.median:
        return None
    return a.median / b.median
