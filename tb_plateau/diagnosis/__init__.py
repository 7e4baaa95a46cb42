"""The diagnosis: pure functions of a `RunData` -> ranked findings.

No TensorFlow, no TensorBoard, no I/O: the Plateau tab and `tb-plateau
diagnose` both call `diagnose` / `run_report`, so they never disagree.

    findings = diagnose(run_data)   # [Finding], most likely root cause first
    report = run_report(run_data)   # the design's run object, JSON-ready

`run_report` returns exactly the design's run object
``{"run", "verdict", "findings"}`` plus, only when there is something to say,
``"notes"``: a list of plain-text lines about what could not be diagnosed
(unreadable parts of the run from `run_data.problems`, a run written without
tb_plateau whose curves alone were read, a detector that failed). Notes never
change the verdict.
"""

import logging
import warnings

import numpy as np

from tb_plateau.diagnosis import (
    activations,
    causes,
    configuration,
    context,
    gradients,
    learning_rate,
    loss_curve,
    numerics,
    ranking,
)
from tb_plateau.diagnosis.causes import CAUSE_IDS, CRITICAL, INFO, WARNING
from tb_plateau.diagnosis.finding import Finding

__all__ = [
    "CAUSE_IDS",
    "CRITICAL",
    "HEALTHY",
    "INFO",
    "WARNING",
    "Finding",
    "diagnose",
    "run_report",
]

logger = logging.getLogger("tb_plateau")

HEALTHY = "healthy"

# Every detector, family by family. Each takes a `RunContext` and returns a
# `Finding` or None.
DETECTORS = (
    numerics.DETECTORS
    + configuration.DETECTORS
    + learning_rate.DETECTORS
    + gradients.DETECTORS
    + activations.DETECTORS
    + loss_curve.DETECTORS
)

NOT_RECORDED_NOTE = (
    "This run was not recorded with tb_plateau, so only its loss curves were diagnosed."
    " Add callbacks=[tb_plateau.summaries.PlateauCallback(log_dir)] to model.fit to see"
    " gradients, activations and the configuration."
)
NO_LOSS_NOTE = "No loss series found in this run (no scalar named like a loss)."


def _run_detectors(ctx, notes):
    # Statistics that do not apply are NaN by design (a dead fraction of a
    # tanh layer, a layer not called at a step): numpy's warnings about
    # all-NaN slices say nothing a user needs to see.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run_each_detector(ctx, notes)


def _run_each_detector(ctx, notes):
    findings = []
    for detector in DETECTORS:
        try:
            finding = detector(ctx)
        except Exception as e:  # one broken check must not hide the others' findings
            logger.exception("tb_plateau: %s failed on run %r", detector.__name__, ctx.run.name)
            notes.append("check %s failed: %s: %s" % (detector.__name__, type(e).__name__, e))
            continue
        if finding is not None:
            findings.append(finding)
    return findings


def _merge_same_cause(findings):
    """One finding per cause: the strongest, with the others' explanations appended."""
    by_cause = {}
    for finding in sorted(findings, key=lambda f: (-f.severity_rank, -f.confidence)):
        kept = by_cause.get(finding.cause)
        if kept is None:
            by_cause[finding.cause] = finding
            continue
        kept.explanation += " " + finding.explanation
        series = kept.evidence.setdefault("series", [])
        for tag in finding.evidence.get("series", []):
            if tag not in series:
                series.append(tag)
        kept.layers += [layer for layer in finding.layers if layer not in kept.layers]
    return list(by_cause.values())


def _diagnose(run_data):
    notes = list(run_data.problems)
    ctx = context.build(run_data)
    findings = ranking.rank(_merge_same_cause(_run_detectors(ctx, notes)))
    if not ctx.recorded:
        notes.append(NOT_RECORDED_NOTE)
    if ctx.train is None:
        notes.append(NO_LOSS_NOTE)
    return findings, notes


def diagnose(run_data):
    """Ranked findings for one run, most likely root cause first."""
    return _diagnose(run_data)[0]


def verdict(findings):
    """The worst severity among warning/critical findings, or "healthy"."""
    worst = max((f.severity_rank for f in findings), default=0)
    if worst >= causes.SEVERITY_RANK[CRITICAL]:
        return CRITICAL
    if worst >= causes.SEVERITY_RANK[WARNING]:
        return WARNING
    return HEALTHY


def run_report(run_data):
    """The design's run object for one run (see the module docstring for "notes")."""
    findings, notes = _diagnose(run_data)
    report = {
        "run": run_data.name,
        "verdict": verdict(findings),
        "findings": [finding.to_dict() for finding in findings],
    }
    if notes:
        report["notes"] = notes
    return report
