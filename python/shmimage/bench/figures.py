"""One row of the report: a figure, its baseline, their ratio and its interval."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Figure:
    """One row of the table.

    ``value`` and ``baseline`` are seconds unless ``unit`` says otherwise.
    ``ratio`` is ``value / baseline``, or ``baseline / value`` when ``inverse``
    (bandwidth, "N x faster"); ``interval`` is its 95% bootstrap interval.
    ``id`` names what is compared, the same at every size and in every run.
    """

    id: str
    name: str
    size: str | None
    value: float | None
    baseline_name: str
    baseline: float | None
    inverse: bool = False
    unit: str = "s"
    interval: tuple[float, float] | None = None
    runs: int = 0
    skipped: str | None = None
    #: What a reader should know beside the ratio (how often a peer stalled, ...).
    note: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.skipped or self.value is None or self.baseline is None:
            return None
        num, den = (self.baseline, self.value) if self.inverse else (self.value, self.baseline)
        return num / den if den > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "figure": self.name,
            "size": self.size,
            "value": self.value,
            "unit": self.unit,
            "baseline_name": self.baseline_name,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "ratio_kind": "baseline/value" if self.inverse else "value/baseline",
            "interval": list(self.interval) if self.interval else None,
            "runs": self.runs,
            "skipped": self.skipped,
            "note": self.note,
        }
