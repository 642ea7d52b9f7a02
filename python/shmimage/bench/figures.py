"""Figures, their targets and the "met" rule of the specification."""
from __future__ import annotations

import dataclasses
from typing import Any

#: A ratio within this fraction of its target still counts as met.
TOLERANCE = 0.05

MET = "yes"
MET_WITHIN_NOISE = "met within noise"
NOT_MET = "NO"
NO_TARGET = "-"
SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class Target:
    """``ratio <= limit`` (``op == "<="``), ``ratio >= limit`` or ``value < limit``."""

    op: str
    limit: float

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">=", "<"):
            raise ValueError(f"unknown target operator {self.op!r}")
        if not self.limit > 0:
            raise ValueError(f"target limit must be positive, got {self.limit!r}")

    def label(self, unit: str = "x") -> str:
        return f"{self.op} {self.limit:g}{unit}"

    def verdict(self, x: float) -> str:
        """MET, MET_WITHIN_NOISE or NOT_MET for the measured ``x``."""
        if self.op == "<=":
            if x <= self.limit:
                return MET
            return MET_WITHIN_NOISE if x <= self.limit * (1 + TOLERANCE) else NOT_MET
        if self.op == ">=":
            if x >= self.limit:
                return MET
            return MET_WITHIN_NOISE if x >= self.limit * (1 - TOLERANCE) else NOT_MET
        if x < self.limit:
            return MET
        return MET_WITHIN_NOISE if x < self.limit * (1 + TOLERANCE) else NOT_MET


@dataclasses.dataclass
class Figure:
    """One row of the table.

    ``value`` and ``baseline`` are seconds unless ``unit`` says otherwise.
    ``ratio`` is what the target is checked against: ``value / baseline``, or
    ``baseline / value`` when ``inverse`` (bandwidth, "N x faster").
    A target with operator ``<`` is checked against ``value`` itself.
    """

    name: str
    size: str | None
    value: float | None
    baseline_name: str
    baseline: float | None
    target: Target | None = None
    inverse: bool = False
    unit: str = "s"
    skipped: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.skipped or self.value is None or self.baseline is None:
            return None
        num, den = (self.baseline, self.value) if self.inverse else (self.value, self.baseline)
        return num / den if den > 0 else None

    @property
    def met(self) -> str:
        if self.skipped:
            return SKIPPED
        if self.target is None:
            return NO_TARGET
        checked = self.value if self.target.op == "<" else self.ratio
        if checked is None:
            return SKIPPED
        return self.target.verdict(checked)

    def target_label(self) -> str:
        if self.target is None:
            return NO_TARGET
        return self.target.label(" MiB" if self.target.op == "<" else "x")

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.name,
            "size": self.size,
            "value": self.value,
            "unit": self.unit,
            "baseline_name": self.baseline_name,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "ratio_kind": "baseline/value" if self.inverse else "value/baseline",
            "target": self.target_label() if self.target else None,
            "met": self.met,
            "skipped": self.skipped,
        }
