"""Regularization too strong for the model to fit: weight penalties, dropout, label smoothing."""

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes
from tb_plateau.diagnosis.finding import Finding, fmt, percent

# The weight penalty makes up this share of the training loss: the optimizer
# spends its steps shrinking the weights rather than fitting the data. With
# usual coefficients (1e-5 to 1e-3) it is a few percent.
PENALTY_SHARE = 0.3  # of the loss
# An L1/L2 coefficient this large is 10x beyond the usual range (1e-5 to 1e-3).
STRONG_PENALTY = 1e-2
# Decoupled weight decay this strong (AdamW's default is 0.004).
STRONG_WEIGHT_DECAY = 0.1
# Dropout this strong keeps most units off at every training step.
STRONG_DROPOUT = 0.5
# Label smoothing this strong leaves the targets closer to uniform than to
# the labels (usual: 0.1).
STRONG_LABEL_SMOOTHING = 0.4
# The training loss (measured with dropout on) this much above the validation
# loss (dropout off): the model fits better than training lets it show.
DROPOUT_TRAIN_OVER_VAL = 0.2  # relative
# ... and this far above it names the dropout even when the run is not stuck.
DROPOUT_HOLDS_BACK = 0.25  # relative
# The weights' norm shrank to this share of its first record over the run.
WEIGHT_SHRINK = 0.5


def _penalty_share(ctx):
    """Median over the records of penalty / loss, or None."""
    penalty = ctx.run.scalars.get(metadata.REGULARIZATION_LOSS)
    loss = ctx.run.scalars.get(metadata.BATCH_LOSS)
    if penalty is None or loss is None or not len(penalty):
        return None
    steps, at_penalty, at_loss = np.intersect1d(penalty.steps, loss.steps, return_indices=True)
    if not len(steps):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = penalty.values[at_penalty] / loss.values[at_loss]
    shares = shares[np.isfinite(shares)]
    return float(np.median(shares)) if len(shares) else None


def _weight_shrink(ctx):
    """Median over layers of (last weight norm / first), or None."""
    series = ctx.vector(metadata.WEIGHT_NORM)
    if series is None or len(series) < 3:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = series.values[-1] / series.values[0]
    ratios = ratios[np.isfinite(ratios)]
    return float(np.median(ratios)) if len(ratios) else None


def _train_over_val(ctx):
    """(train - val) / val at the end of the epoch curves, or None."""
    gap = ctx.train_val_gap()
    if gap is None or not -1.0 < gap < 0:
        return None
    # train_val_gap is (val - train) / train; turn it around.
    return 1.0 / (1.0 + gap) - 1.0


def detect_over_regularization(ctx):
    """Penalties, dropout or label smoothing so strong that the model cannot fit."""
    config = ctx.config
    if config.is_empty:
        return None
    share = _penalty_share(ctx)
    penalties = config.penalties
    strongest = max(penalties, key=lambda p: p[2]) if penalties else None
    decay = config.weight_decay
    dropout = [(name, rate) for name, rate in config.dropout_rates if rate >= STRONG_DROPOUT]
    smoothing = config.label_smoothing
    train_over_val = _train_over_val(ctx)
    shrink = _weight_shrink(ctx)

    parts = []
    layers = []
    heavy_share = share is not None and share >= PENALTY_SHARE
    strong_and_shrinking = (
        strongest is not None
        and strongest[2] >= STRONG_PENALTY
        and shrink is not None
        and shrink < WEIGHT_SHRINK
    )
    if strongest is not None and (heavy_share or strong_and_shrinking):
        words = "%s of %s is %s (usual coefficients: 1e-5 to 1e-3)" % (
            strongest[1],
            strongest[0],
            fmt(strongest[2]),
        )
        if share is not None:
            words += "; the weight penalty is %s of the training loss" % percent(share)
        if shrink is not None:
            words += "; the weights' norm went to %s of its start" % percent(shrink)
        parts.append(words)
        layers += sorted({name for name, _, c in penalties if c >= STRONG_PENALTY})
    if decay is not None and decay >= STRONG_WEIGHT_DECAY and shrink is not None:
        if shrink < WEIGHT_SHRINK:
            parts.append(
                "the optimizer's weight decay is %s (AdamW's default is 0.004), and the"
                " weights' norm shrank to %s of its start" % (fmt(decay), percent(shrink))
            )
    if dropout and train_over_val is not None and train_over_val >= DROPOUT_TRAIN_OVER_VAL:
        parts.append(
            "dropout of %s (%s) leaves the training loss, measured with dropout on, %s above"
            " the validation loss"
            % (
                ", ".join(fmt(rate) for _, rate in dropout[:3]),
                ", ".join(name for name, _ in dropout[:3]),
                percent(train_over_val),
            )
        )
        layers += [name for name, _ in dropout]
    elif dropout and ctx.stuck:
        parts.append(
            "dropout of %s after %s keeps most units off at every training step"
            % (fmt(max(rate for _, rate in dropout)), ", ".join(n for n, _ in dropout[:3]))
        )
        layers += [name for name, _ in dropout]
    if smoothing is not None and smoothing >= STRONG_LABEL_SMOOTHING and ctx.stuck:
        parts.append(
            "label smoothing of %s makes the targets nearly uniform (usual: 0.1), so even a"
            " perfect model's loss stays near chance level" % fmt(smoothing)
        )
    # Dropout above the customary 0.5 that holds the training loss far above
    # the validation loss is evidence on its own: the model is fitted through a
    # mask that hides most of it. Not for a run that reached a good fit anyway.
    dropout_holds_back = (
        any(rate > STRONG_DROPOUT for _, rate in dropout)
        and train_over_val is not None
        and train_over_val >= DROPOUT_HOLDS_BACK
        and not ctx.good_fit
    )
    if not parts or not (ctx.stuck or heavy_share or dropout_holds_back):
        return None
    explanation = "Regularization is too strong for the model to fit: " + "; ".join(parts) + "."
    if ctx.progress_reason:
        explanation += " The training is stuck: %s." % ctx.progress_reason
    series = [ctx.train.tag] if ctx.train is not None else []
    if share is not None:
        series.append(metadata.tag(metadata.REGULARIZATION_LOSS))
    if ctx.val is not None:
        series.append(ctx.val.tag)
    first = ctx.train.steps[0] if ctx.train is not None and len(ctx.train) else 0
    return Finding(
        cause=causes.OVER_REGULARIZATION,
        severity=causes.WARNING,
        confidence=0.8 if len(parts) > 1 or heavy_share else 0.65,
        explanation=explanation,
        first_step=int(first),
        layers=list(dict.fromkeys(layers)),
        evidence={
            "series": series,
            "penalty_share": share,
            "strongest_penalty": list(strongest) if strongest else None,
            "weight_decay": decay,
            "dropout": [list(d) for d in dropout],
            "label_smoothing": smoothing,
            "train_over_val": train_over_val,
            "weight_norm_ratio": shrink,
            "thresholds": {
                "penalty_share": PENALTY_SHARE,
                "penalty": STRONG_PENALTY,
                "dropout": STRONG_DROPOUT,
                "label_smoothing": STRONG_LABEL_SMOOTHING,
            },
        },
    )


DETECTORS = (detect_over_regularization,)
