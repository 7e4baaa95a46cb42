"""Batch normalization misused: statistics from tiny batches, moving statistics that
inference uses but training never filled, or layers frozen before they had any."""

import numpy as np

from tb_plateau.diagnosis import causes
from tb_plateau.diagnosis.finding import Finding, fmt, fmt_ratio, percent

# Batch normalization over fewer samples than this gives noisy statistics
# (Wu & He, Group Normalization, 2018: BN error grows quickly below 8-16).
BATCHNORM_MIN_BATCH = 8  # samples per batch
# Validation loss this many times the training loss with batch normalization in
# the model: the moving statistics used at inference do not match training.
BATCHNORM_VAL_TRAIN_RATIO = 3.0
# ... already over the first epochs.
BATCHNORM_FIRST_EPOCHS = 3  # epochs
# Share of the initial moving statistics (mean 0, variance 1) still in them at
# the end of training: momentum ** steps. Above this, inference uses mostly init.
BATCHNORM_INIT_RESIDUE = 0.1


def detect_batchnorm_misuse(ctx):
    """Batch normalization with tiny batches, or moving statistics that never caught up."""
    config = ctx.config
    layers = config.batchnorm_layers
    if not layers:
        return None
    names = [layer.get("name") for layer in layers]
    batch_size = config.batch_size
    if batch_size is not None and batch_size < BATCHNORM_MIN_BATCH:
        per_sample = [layer for layer in layers if len(layer.get("output_shape") or []) == 2]
        degenerate = batch_size == 1 and per_sample
        explanation = (
            "The model has %d BatchNormalization layer(s) (%s) but trains on batches of %d:"
            " their mean and variance are estimated from %d sample(s) per step."
            % (len(layers), ", ".join(names[:4]), batch_size, batch_size)
        )
        if degenerate:
            explanation += (
                " With one sample, x - mean(x) is exactly 0, so %s output only their bias:"
                " nothing before them receives any gradient."
                % ", ".join(layer.get("name") for layer in per_sample[:4])
            )
        else:
            explanation += " Such noisy statistics make the gradient noisy and inference"
            explanation += " statistics unlike training's."
        return Finding(
            cause=causes.BATCHNORM_MISUSE,
            severity=causes.CRITICAL if degenerate else causes.WARNING,
            confidence=0.9,
            title="Batch normalization on batches of %d" % batch_size,
            explanation=explanation,
            first_step=0,
            layers=names,
            evidence={"series": [], "batch_size": batch_size, "threshold": BATCHNORM_MIN_BATCH},
        )
    frozen = _frozen_without_statistics(layers)
    if frozen:
        return _frozen_finding(ctx, frozen)
    return _batchnorm_inference_mismatch(ctx, layers, names)


def _frozen_without_statistics(layers):
    """Names of batch-normalization layers frozen with their initial moving statistics."""
    return [
        layer.get("name")
        for layer in layers
        if layer.get("trainable") is False and layer.get("moving_statistics_initial") is True
    ]


def _frozen_finding(ctx, names):
    """Frozen BatchNormalization runs in inference mode: with mean 0 and variance 1 it never
    normalizes anything, and being frozen it never learns its statistics."""
    explanation = (
        "BatchNormalization layer%s %s %s frozen (trainable=False) with %s initial moving"
        " statistics (mean 0, variance 1). Keras runs a frozen BatchNormalization in"
        " inference mode, during training too: %s never normalize%s anything, and being"
        " frozen never learn%s the statistics of this data."
        % (
            "s" * (len(names) > 1),
            ", ".join(names[:4]),
            "are" if len(names) > 1 else "is",
            "their" if len(names) > 1 else "its",
            "they" if len(names) > 1 else "it",
            "" if len(names) > 1 else "s",
            "" if len(names) > 1 else "s",
        )
    )
    if ctx.progress_reason:
        explanation += " The training: %s." % ctx.progress_reason
    return Finding(
        cause=causes.BATCHNORM_MISUSE,
        severity=causes.WARNING,
        confidence=0.8,
        title="BatchNormalization frozen before it had statistics (%s)" % ", ".join(names[:2]),
        explanation=explanation,
        first_step=int(ctx.train.steps[0]) if ctx.train is not None and len(ctx.train) else 0,
        layers=names,
        evidence={"series": [], "frozen_layers": names, "moving_statistics_initial": True},
        fixes=[
            "for layer in model.layers:\n"
            "    if isinstance(layer, keras.layers.BatchNormalization):\n"
            "        layer.trainable = True  # or load the statistics of the model it comes from",
        ],
    )


def _batchnorm_inference_mismatch(ctx, layers, names):
    """Validation far worse than training from the start, with stale moving statistics."""
    if ctx.val is None or ctx.train is None:
        return None
    train = ctx.epoch_train
    if train is None:
        return None
    count = min(len(train), len(ctx.val))
    if count == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ctx.val.values[:count] / train.values[:count]
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios) or np.median(ratios) < BATCHNORM_VAL_TRAIN_RATIO:
        return None
    # From the first epochs on: stale statistics show before anything could be
    # memorized; a gap that opens as the training loss falls is overfitting.
    if np.median(ratios[:BATCHNORM_FIRST_EPOCHS]) < BATCHNORM_VAL_TRAIN_RATIO:
        return None
    steps = ctx.training_steps or 0
    residues = {}
    for layer in layers:
        momentum = layer.get("momentum")
        if isinstance(momentum, (int, float)) and 0 < momentum < 1 and steps:
            residues[layer.get("name")] = float(momentum) ** steps
    stale = {k: v for k, v in residues.items() if v > BATCHNORM_INIT_RESIDUE}
    explanation = (
        "The validation loss is %s the training loss (median over %d epochs), from the first"
        " epoch on, and the model has BatchNormalization (%s). At inference these layers use"
        " their moving statistics instead of the batch's."
        % (fmt_ratio(float(np.median(ratios))), len(ratios), ", ".join(names[:4]))
    )
    if stale:
        layer_name, residue = max(stale.items(), key=lambda kv: kv[1])
        momentum = next(
            layer.get("momentum") for layer in layers if layer.get("name") == layer_name
        )
        explanation += (
            " With momentum %s over %d steps, %s of %s's moving statistics are still their"
            " initial values (mean 0, variance 1)."
            % (fmt(momentum), steps, percent(residue), layer_name)
        )
    else:
        explanation += (
            " Check that the model is not called with training=True at inference and that"
            " frozen BatchNormalization layers were not trained on other data."
        )
    return Finding(
        cause=causes.BATCHNORM_MISUSE,
        severity=causes.WARNING,
        confidence=0.8 if stale else 0.6,
        title="Validation loss %s the training loss with BatchNormalization"
        % fmt_ratio(float(np.median(ratios))),
        explanation=explanation,
        first_step=int(ctx.val.steps[0]),
        layers=names,
        evidence={
            "series": [ctx.train.tag, ctx.val.tag],
            "val_train_ratio": float(np.median(ratios)),
            "init_residue": residues,
            "threshold": BATCHNORM_VAL_TRAIN_RATIO,
        },
    )


DETECTORS = (detect_batchnorm_misuse,)
