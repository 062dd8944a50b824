"""The report document of ``orchestrator report`` (what ``--json`` prints) and its thresholds."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.designer.report_stats import CONFIDENCE

MIN_N = 30
"""Rows with fewer instances (customers) than this are marked "n too small" and get no verdict."""
SRM_ALPHA = 0.001
"""An assignment check below this p-value is reported as a sample ratio mismatch."""
NO_SPLIT = "(all)"

Unit = Literal["instance", "customer"]
Verdict = Literal["higher", "lower", "no clear difference", "n too small"]


class Interval(BaseModel):
    model_config = ConfigDict(frozen=True)

    low: float
    high: float

    @classmethod
    def of(cls, bounds: tuple[float, float] | None) -> Interval | None:
        return cls(low=bounds[0], high=bounds[1]) if bounds is not None else None


class Uplift(BaseModel):
    """One variant against its split's baseline."""

    baseline: str
    relative: float | None
    """rate / baseline rate − 1; None when the baseline rate is 0."""
    relative_interval: Interval | None
    """95 % Katz log interval of the rate ratio, minus 1; None when either side has no conversion."""
    difference: float
    """rate − baseline rate (a fraction: 0.05 = 5 percentage points)."""
    difference_interval: Interval
    """95 % Newcombe hybrid score interval of the difference."""
    intervals_overlap: bool
    """Whether the two Wilson intervals overlap (does not decide anything by itself)."""
    verdict: Verdict


class VariantRow(BaseModel):
    variant: str
    entered: int
    """Instances (customers with unit=customer) in this variant."""
    customers: int
    converted: int
    open: int
    """Entered and not ended yet (as of --until)."""
    rate: float | None
    interval: Interval | None
    n_too_small: bool
    sends: dict[str, int]
    weight: int | None = None
    uplift: Uplift | None = None


class SplitReport(BaseModel):
    step_id: str
    baseline: str
    baseline_from: Literal["journey file", "name order"]
    variants: list[VariantRow]
    not_split: int
    """Entered (instances or customers) that did not reach this split (yet)."""
    assignment_p: float | None = None
    """Chi-square p-value of customers per variant against the declared weights (None: weights unknown or too few)."""
    sample_ratio_mismatch: bool = False


class JourneyReport(BaseModel):
    journey_id: str
    version: int
    total: VariantRow
    not_entered: dict[str, int]
    """``not_entered`` records in the window by reason (the text before its first colon)."""
    splits: list[SplitReport]
    reentries: bool
    """Some customer entered this version more than once in the window."""


class Report(BaseModel):
    source: str
    records: int
    unit: Unit
    since: datetime | None
    until: datetime | None
    confidence: float = CONFIDENCE
    min_n: int = MIN_N
    method: str = (
        "rates: Wilson score interval; relative uplift: Katz log interval of the rate ratio; "
        "difference: Newcombe hybrid score interval; verdict from the difference interval; "
        "assignment: chi-square against the split weights"
    )
    journeys: list[JourneyReport]
    skipped: dict[str, int]
    """Records or instances left out, by why (no entered record, unreadable record, ...)."""
    notes: list[str]
