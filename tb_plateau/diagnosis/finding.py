"""A `Finding`: one cause, with the numbers that prove it and what to change."""

import dataclasses
import math
from typing import List, Optional

import numpy as np

from tb_plateau.diagnosis import causes


@dataclasses.dataclass(eq=False)
class Finding:
    """One diagnosed cause.

    Attributes:
      cause: one of `causes.CAUSE_IDS`.
      severity: `causes.CRITICAL`, `WARNING` or `INFO`.
      confidence: 0-1, how sure the detector is that this cause is present.
      explanation: plain words with the numbers behind the finding.
      first_step: the first step where the problem shows, if known.
      layers: the layers concerned, in model order.
      evidence: JSON-friendly numbers; ``series`` lists the tags to draw.
      title: one line; the cause's default title unless the detector has a
        more specific one.
      fixes: code to paste; the cause's defaults unless given.
      explained_by: the cause id of a root cause found in the same run that
        explains this finding (set by the ranking).
    """

    cause: str
    severity: str
    confidence: float
    explanation: str
    first_step: Optional[int] = None
    layers: List[str] = dataclasses.field(default_factory=list)
    evidence: dict = dataclasses.field(default_factory=dict)
    title: Optional[str] = None
    fixes: Optional[List[str]] = None
    explained_by: Optional[str] = None

    def __post_init__(self):
        if self.cause not in causes.CAUSES:
            raise ValueError("unknown cause id %r" % (self.cause,))
        if self.severity not in causes.SEVERITY_RANK:
            raise ValueError("unknown severity %r" % (self.severity,))
        if self.title is None:
            self.title = causes.title(self.cause)
        if self.fixes is None:
            self.fixes = causes.fixes(self.cause)
        self.confidence = float(min(1.0, max(0.0, self.confidence)))

    @property
    def severity_rank(self):
        return causes.SEVERITY_RANK[self.severity]

    def to_dict(self):
        """The public finding object (README, "Diagnosis"): plain JSON types, NaN/Inf kept."""
        return {
            "cause": self.cause,
            "severity": self.severity,
            "confidence": round(self.confidence, 3),
            "title": self.title,
            "explanation": self.explanation,
            "first_step": None if self.first_step is None else int(self.first_step),
            "layers": [str(layer) for layer in self.layers],
            "fixes": list(self.fixes),
            "evidence": to_json_friendly(self.evidence),
        }


def to_json_friendly(value):
    """Numpy scalars and arrays to plain Python; NaN/Inf stay floats."""
    if isinstance(value, dict):
        return {str(k): to_json_friendly(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_friendly(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_json_friendly(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def fmt(value):
    """A number as people read it in an explanation: 2.4e-07, 0.031, 1,234."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        return "%.2g" % value
    if magnitude >= 100:
        return "{:,.0f}".format(value)
    if magnitude >= 1:
        return "%.3g" % value
    return "%.2g" % value


def fmt_ratio(value):
    """A ratio as a multiple in words: '400,000 times'."""
    value = float(value)
    if value >= 100:
        return "{:,.0f} times".format(float("%.2g" % value))
    return "%.2g times" % value


def percent(fraction):
    return "%.0f%%" % (100.0 * float(fraction))
