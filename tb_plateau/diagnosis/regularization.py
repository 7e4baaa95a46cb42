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


def _strongest_penalty(config):
    """[layer, kind, coefficient] of the strongest weight penalty, or None."""
    penalties = config.penalties
    return list(max(penalties, key=lambda p: p[2])) if penalties else None


def _penalty_words(config, share, shrink):
    """(words, layers) on weight penalties that dominate the loss or shrink the weights."""
    penalties = config.penalties
    strongest = _strongest_penalty(config)
    if strongest is None:
        return None
    heavy_share = share is not None and share >= PENALTY_SHARE
    shrinking = shrink is not None and shrink < WEIGHT_SHRINK
    if not (heavy_share or (strongest[2] >= STRONG_PENALTY and shrinking)):
        return None
    words = "%s of %s is %s (usual coefficients: 1e-5 to 1e-3)" % (
        strongest[1],
        strongest[0],
        fmt(strongest[2]),
    )
    if share is not None:
        words += "; the weight penalty is %s of the training loss" % percent(share)
    if shrink is not None:
        words += "; the weights' norm went to %s of its start" % percent(shrink)
    return words, sorted({name for name, _, c in penalties if c >= STRONG_PENALTY})


def _dropout_words(ctx, dropout, train_over_val):
    """(words, layers) on dropout that holds the training loss up or keeps units off."""
    if not dropout:
        return None
    layers = [name for name, _ in dropout]
    if train_over_val is not None and train_over_val >= DROPOUT_TRAIN_OVER_VAL:
        words = (
            "dropout of %s (%s) leaves the training loss, measured with dropout on, %s above"
            " the validation loss"
            % (
                ", ".join(fmt(rate) for _, rate in dropout[:3]),
                ", ".join(name for name, _ in dropout[:3]),
                percent(train_over_val),
            )
        )
        return words, layers
    if ctx.stuck:
        words = "dropout of %s after %s keeps most units off at every training step" % (
            fmt(max(rate for _, rate in dropout)),
            ", ".join(n for n, _ in dropout[:3]),
        )
        return words, layers
    return None


def _decay_words(decay, shrink):
    """(words, layers) on an optimizer weight decay that shrank the weights."""
    if decay is None or decay < STRONG_WEIGHT_DECAY or shrink is None or shrink >= WEIGHT_SHRINK:
        return None
    words = (
        "the optimizer's weight decay is %s (AdamW's default is 0.004), and the"
        " weights' norm shrank to %s of its start" % (fmt(decay), percent(shrink))
    )
    return words, []


def _smoothing_words(ctx, smoothing):
    """(words, layers) on label smoothing so strong that even a perfect model stays stuck."""
    if smoothing is None or smoothing < STRONG_LABEL_SMOOTHING or not ctx.stuck:
        return None
    words = (
        "label smoothing of %s makes the targets nearly uniform (usual: 0.1), so even a"
        " perfect model's loss stays near chance level" % fmt(smoothing)
    )
    return words, []


def detect_over_regularization(ctx):
    """Penalties, dropout or label smoothing so strong that the model cannot fit."""
    config = ctx.config
    if config.is_empty:
        return None
    share = _penalty_share(ctx)
    decay = config.weight_decay
    dropout = [(name, rate) for name, rate in config.dropout_rates if rate >= STRONG_DROPOUT]
    smoothing = config.label_smoothing
    train_over_val = _train_over_val(ctx)
    shrink = _weight_shrink(ctx)

    parts = []
    layers = []
    kinds = []  # which fixes apply: see FIX_KINDS
    for kind, found in (
        ("penalty", _penalty_words(config, share, shrink)),
        ("penalty", _decay_words(decay, shrink)),
        ("dropout", _dropout_words(ctx, dropout, train_over_val)),
        ("label_smoothing", _smoothing_words(ctx, smoothing)),
    ):
        if found is not None:
            parts.append(found[0])
            layers += found[1]
            kinds.append(kind)
    heavy_share = share is not None and share >= PENALTY_SHARE
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
            "strongest_penalty": _strongest_penalty(config),
            "weight_decay": decay,
            "dropout": [list(d) for d in dropout],
            "label_smoothing": smoothing,
            "train_over_val": train_over_val,
            "weight_norm_ratio": shrink,
            "regularizers": list(dict.fromkeys(kinds)),
            "fix_kinds": list(dict.fromkeys(kinds)),  # causes.FIX_KINDS
            "thresholds": {
                "penalty_share": PENALTY_SHARE,
                "penalty": STRONG_PENALTY,
                "dropout": STRONG_DROPOUT,
                "label_smoothing": STRONG_LABEL_SMOOTHING,
            },
        },
    )


DETECTORS = (detect_over_regularization,)
