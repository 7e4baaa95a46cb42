"""The diagnosis: pure functions of a `RunData` -> ranked findings.

No TensorFlow, no TensorBoard, no I/O: the Plateau tab and `tb-plateau
diagnose` both call `diagnose` / `run_report`, so they never disagree.

    findings = diagnose(run_data)   # [Finding], most likely root cause first
    report = run_report(run_data)   # the run object of `--json` and /diagnosis

`run_report` returns the public run object
``{"run", "verdict", "findings"}``, then ``"schema_version"``, ``"status"``
(what a reader shows: see `display_status`), ``"loss_series"`` (the training
and validation loss curves the diagnosis read, by run and tag, when the run
has a loss), ``"drawing"`` (for each cause found, what the tab draws: see
`causes.DRAWINGS`) and, only when there is something to say:

* on a finding, ``"first_named_step"`` and ``"first_named_elapsed_s"``: the
  step (and seconds into training) at which the recorder's live verdict first
  named its cause while the run trained (`tb_plateau.live`);

* ``"problems"``: what could not be read or checked, in plain words (damaged
  parts of the run from `run_data.problems`, a check that failed);
* ``"notes"``: what a reader should know about how the run was diagnosed (a
  run written without tb_plateau whose curves alone were read, no loss found,
  a run not fully read).

A run whose data could not all be read (`run_data.incomplete`: a corrupt
record hides the rest of a file, plateau data from a newer version, an
unreadable run) carries ``"incomplete": true`` and a first note saying so. Its
verdict keeps its public meaning, the worst severity among the findings on
what was read, so that a non-healthy verdict always has a finding to show; but
"healthy" with ``"incomplete": true`` is no clean bill of health: its status
is "incomplete", and readers (the CLI's text report, the tab) say "not fully
read" instead of "no problem found". Other problems (a training still writing
its last record, an empty file) do not mark a run incomplete.

Numbers in a report may be NaN or ±Inf (evidence of a diverged run). Written
as JSON they become the strings "NaN", "Infinity", "-Infinity", as TensorBoard's
`http_util.Respond` writes them for the tab: see `json_ready`.
"""

import logging
import warnings

import numpy as np

from tb_plateau.diagnosis import (
    activations,
    batchnorm,
    causes,
    configuration,
    context,
    convergence,
    gradients,
    learning_rate,
    loss_curve,
    numerics,
    ranking,
    regularization,
)
from tb_plateau.diagnosis.causes import CAUSE_IDS, CRITICAL, INFO, WARNING
from tb_plateau.diagnosis.finding import Finding, fmt

__all__ = [
    "CAUSE_IDS",
    "CRITICAL",
    "HEALTHY",
    "INFO",
    "WARNING",
    "Finding",
    "diagnose",
    "json_ready",
    "run_report",
    "unreadable_run_report",
]

logger = logging.getLogger("tb_plateau")

HEALTHY = "healthy"
# The display status of a healthy verdict on a run not fully read.
INCOMPLETE = "incomplete"

# Every detector, family by family. Each takes a `RunContext` and returns a
# `Finding` or None.
DETECTORS = (
    numerics.DETECTORS
    + configuration.DETECTORS
    + batchnorm.DETECTORS
    + learning_rate.DETECTORS
    + gradients.DETECTORS
    + activations.DETECTORS
    + regularization.DETECTORS
    + loss_curve.DETECTORS
    + convergence.DETECTORS
)

NOT_RECORDED_NOTE = (
    "This run was not recorded with tb_plateau, so only its loss curves were diagnosed."
    " Recorded with tb_plateau.summaries (PlateauCallback for Keras' fit, Recorder for a"
    " custom training loop), its gradients, activations and configuration would be too."
)
NO_LOSS_NOTE = "No loss series found in this run (no scalar named like a loss)."
INCOMPLETE_NOTE = (
    "Part of this run could not be read (see its problems): the verdict covers only what was read."
)


def _run_detectors(ctx, problems):
    # Statistics that do not apply are NaN by design (a dead fraction of a
    # tanh layer, a layer not called at a step): numpy's warnings about
    # all-NaN slices say nothing a user needs to see.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run_each_detector(ctx, problems)


def _run_each_detector(ctx, problems):
    findings = []
    for detector in DETECTORS:
        try:
            finding = detector(ctx)
        except Exception as e:  # one broken check must not hide the others' findings
            logger.exception("tb_plateau: %s failed on run %r", detector.__name__, ctx.run.name)
            problems.append("check %s failed: %s: %s" % (detector.__name__, type(e).__name__, e))
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


# Causes that say how the training ended: a good final loss does not make
# them harmless (NaN anywhere; a validation loss rising; a loss still falling).
_OUTCOME_CAUSES = (causes.NONFINITE, causes.OVERFITTING, causes.NOT_CONVERGED)


def _did_not_stop_training(ctx, findings):
    """A cause that did not stop a training that reached a good fit is at most info; one
    that began after the loss was at its best (a learning rate that jumped at the end, seen
    live) is not shown harmless by a fit that came before it. Units partly dead in a run
    whose losses were still falling at every epoch when it stopped did not stop it either:
    their live units carry the signal the run was still learning from. A finding whose
    evidence accounts for the loss left at the end (`explains_final_loss`: a bottleneck
    that leaves out the share of the targets' variance the loss still holds) is what the fit
    stopped at, however good it looks against chance level."""
    if ctx.descending_to_chance or ctx.accelerating:
        for finding in findings:
            if finding.cause == causes.DEAD_RELU and not ranking.blocks_signal(finding):
                _not_what_stopped_it(
                    finding, "both losses were still falling at every epoch when it stopped"
                )
    if not ctx.good_fit:
        return
    best_step = ctx.train_shape.best_step if ctx.train_shape is not None else None
    for finding in findings:
        if finding.cause in _OUTCOME_CAUSES or finding.severity == INFO:
            continue
        if finding.evidence.get("explains_final_loss"):
            continue  # its own numbers account for the loss left: it is where the fit stopped
        if best_step is not None and finding.first_step is not None:
            if finding.first_step > best_step:
                continue  # it began after the loss was at its best: the fit came before it
        _not_what_stopped_it(finding, ctx.progress_reason)


def _not_what_stopped_it(finding, reason):
    finding.severity = INFO
    finding.confidence = min(finding.confidence, 0.5)
    finding.explanation += (
        " It did not stop this training: %s. Worth fixing for a faster or steadier"
        " training, but not why a loss would be stuck." % reason
    )


def _stuck_without_cause(ctx, findings):
    """The finding for a run the curve shows stuck when no check named a cause, or None."""
    if not ctx.stuck or any(f.severity_rank >= causes.SEVERITY_RANK[WARNING] for f in findings):
        return None
    checked = (
        "the step size, gradient flow, dead and saturated units, the inputs, the loss and"
        " output layer, the labels, regularization and batch normalization"
        if ctx.recorded
        else "only the loss curves (the run was not recorded with tb_plateau)"
    )
    return Finding(
        cause=causes.UNEXPLAINED_PLATEAU,
        severity=WARNING,
        confidence=0.5,
        title="The loss is stuck; no cause was identified",
        explanation=(
            "The training is not learning: %s.%s No check found why; checked: %s. Findings"
            " below, if any, were too weak to name as the cause."
            % (
                ctx.progress_reason,
                loss_curve.chance_hint(ctx.train_shape.tail) if ctx.chance_loss is None else "",
                checked,
            )
        ),
        first_step=int(ctx.train.steps[0]) if ctx.train is not None and len(ctx.train) else None,
        evidence={
            "series": [ctx.train.tag] if ctx.train is not None else [],
            "reason": ctx.progress_reason,
        },
    )


def _framework_fixes(ctx, findings):
    """Fixes in the run's framework: PyTorch code for PyTorch runs, words any framework's
    user can act on for runs from an unknown writer (detectors write Keras code)."""
    if ctx.framework == "keras":
        return
    pytorch = ctx.framework == "pytorch"
    for finding in findings:
        if not finding.fixes:
            continue
        if pytorch:
            finding.fixes = configuration.torch_mismatch_fixes(finding) or causes.torch_fixes(
                finding.cause
            )
        else:
            finding.fixes = causes.neutral_fixes(finding.cause)
        rate = finding.evidence.get("learning_rate")
        if finding.evidence.get("spike_step") is not None:
            finding.fixes = _rate_jump_fixes(ctx, finding, pytorch)
        elif finding.cause in (causes.LR_TOO_HIGH, causes.LR_TOO_LOW) and rate:
            factor = 0.1 if finding.cause == causes.LR_TOO_HIGH else 10.0
            if pytorch:
                finding.fixes[0] = (
                    "optimizer = torch.optim.%s(model.parameters(), lr=%s)  # 10x %s"
                    % (
                        ctx.config.optimizer_name or "Adam",
                        fmt(rate * factor),
                        "lower" if factor < 1 else "higher",
                    )
                )
            else:
                finding.fixes[0] = "Set the learning rate to %s (now %s)." % (
                    fmt(rate * factor),
                    fmt(rate),
                )


def _rate_jump_fixes(ctx, finding, pytorch):
    """A rate that jumped once: find what set it, and keep the run's usual rate."""
    step = finding.evidence["spike_step"]
    usual = finding.evidence.get("usual_learning_rate")
    if pytorch:
        return [
            "# find what set the rate at step %d: a scheduler (LambdaLR, OneCycleLR,"
            " CyclicLR...) or code writing param_group['lr']" % step,
            "optimizer = torch.optim.%s(model.parameters(), lr=%s)  # the usual rate"
            % (ctx.config.optimizer_name or "Adam", fmt(usual)),
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"
            "  # between backward() and step(): bounds any one step",
        ]
    return [
        "Find what set the learning rate at step %d (a schedule, a warm restart, a callback)"
        " and keep it at the run's usual %s." % (step, fmt(usual)),
        "Clip the gradient norm (e.g. to 1.0) so that no single step can throw the weights far.",
    ]


def _diagnose(run_data, live=False):
    problems = list(run_data.problems)
    notes = []
    # Overflow and all-NaN warnings from extreme series (a diverged run's 1e300
    # losses) say nothing the findings do not: the whole diagnosis is quiet.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        ctx = context.build(run_data, live=live)
        findings = _merge_same_cause(_run_detectors(ctx, problems))
        _did_not_stop_training(ctx, findings)
        findings = ranking.rank(findings)
        stuck = _stuck_without_cause(ctx, findings)
        if stuck is not None:
            findings.insert(0, stuck)
        _framework_fixes(ctx, findings)
        for finding in findings:
            causes.narrow_fixes(finding)
    if run_data.incomplete:
        notes.insert(0, INCOMPLETE_NOTE)
    elif not ctx.recorded:
        # (An incomplete run may have been recorded with tb_plateau, by a newer version.)
        notes.append(NOT_RECORDED_NOTE)
    if ctx.train is None:
        notes.append(NO_LOSS_NOTE)
    return findings, problems, notes, ctx


def diagnose(run_data, live=False):
    """Ranked findings for one run, most likely root cause first.

    `live`: the run is still training (the live verdict, `tb-plateau watch`): where its loss
    settles is not judged before it has trained long enough (see `RunContext.too_early`).
    """
    return _diagnose(run_data, live=live)[0]


def loss_series(run_data, ctx):
    """The loss curves the diagnosis read: {"train": {"run", "tag"}, "validation": ... or None}.

    So that the tab draws the very curves the findings speak of. None when the
    run has no training loss.
    """
    if ctx.train is None:
        return None
    validation = None
    if ctx.val is not None:
        from_sibling = ctx.val.tag in run_data.validation_scalars
        validation = {
            "run": run_data.validation_run if from_sibling else run_data.name,
            "tag": ctx.val.tag,
        }
    return {"train": {"run": run_data.name, "tag": ctx.train.tag}, "validation": validation}


def verdict(findings):
    """The worst severity among warning/critical findings, or "healthy"."""
    worst = max((f.severity_rank for f in findings), default=0)
    if worst >= causes.SEVERITY_RANK[CRITICAL]:
        return CRITICAL
    if worst >= causes.SEVERITY_RANK[WARNING]:
        return WARNING
    return HEALTHY


def run_report(run_data):
    """The public run object of one run (see the module docstring for its keys)."""
    findings, problems, notes, ctx = _diagnose(run_data)
    report = {
        "run": run_data.name,
        "verdict": verdict(findings),
        "findings": [finding.to_dict() for finding in findings],
        "schema_version": causes.SCHEMA_VERSION,
    }
    _add_first_named(report["findings"], run_data.verdicts)
    report["status"] = display_status(
        {"verdict": report["verdict"], "incomplete": run_data.incomplete}
    )
    series = loss_series(run_data, ctx)
    if series is not None:
        report["loss_series"] = series
    if findings:
        # What the tab draws for each cause found: charts, shaded region, the
        # configuration sections its check read.
        report["drawing"] = {f.cause: causes.drawing(f.cause) for f in findings}
    if run_data.incomplete:
        report["incomplete"] = True
    if problems:
        report["problems"] = problems
    if notes:
        report["notes"] = notes
    return report


def _add_first_named(findings, verdicts):
    """Each finding that a live verdict named while the run trained gets the step (and the
    seconds into training) it was first named at: `first_named_step`, `first_named_elapsed_s`."""
    first = {}
    for step, verdict in verdicts:
        named = verdict.get("causes")
        if not isinstance(named, dict):
            continue
        for cause in named:
            if cause not in first:
                first[cause] = (step, verdict.get("elapsed_s"))
    for finding in findings:
        if finding["cause"] in first:
            step, elapsed = first[finding["cause"]]
            finding["first_named_step"] = int(step)
            if isinstance(elapsed, (int, float)):
                finding["first_named_elapsed_s"] = float(elapsed)


def display_status(report):
    """What a reader shows for a run: its verdict, or "incomplete" for a healthy one not fully read.

    One rule for the CLI, the tab's run list and its run page: nothing found
    in part of the data is no clean bill of health.
    """
    if report.get("incomplete") and report.get("verdict") == HEALTHY:
        return INCOMPLETE
    return report.get("verdict")


def unreadable_run_report(run, error):
    """The report of a run that could not be read at all."""
    report = {
        "run": run,
        "verdict": HEALTHY,
        "findings": [],
        "schema_version": causes.SCHEMA_VERSION,
        "status": INCOMPLETE,
        "incomplete": True,
        "problems": ["could not read this run: %s: %s" % (type(error).__name__, error)],
        "notes": [INCOMPLETE_NOTE],
    }
    return report


def json_ready(value):
    """`value` with NaN/±Inf as "NaN"/"Infinity"/"-Infinity", ready for strict JSON.

    The same mapping as TensorBoard's `http_util.Respond` (its
    `json_util.Cleanse`), so the CLI's JSON equals the tab's.
    """
    from tensorboard.backend import json_util

    return json_util.Cleanse(value)
