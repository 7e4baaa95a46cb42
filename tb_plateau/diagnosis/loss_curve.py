"""The loss curves: chance level, constant, negative, overfitting, not converged, too small.

These detectors need only the training (and validation) loss, so they also
serve logs written without tb_plateau (Keras' TensorBoard callback, PyTorch's
SummaryWriter); the configuration record sharpens them where it exists.
"""

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes, curves
from tb_plateau.diagnosis.context import TRAIN_VAL_GAP, falls_steeply
from tb_plateau.diagnosis.finding import Finding, fmt, percent

# A loss within this of chance level has learned nothing about the inputs. The
# chance level of a regression comes from a sample's label variance, which is
# itself uncertain by ~10% for a few hundred labels.
CHANCE_TOLERANCE_CE = 0.05  # relative to ln C (or the label entropy)
CHANCE_TOLERANCE_MSE = 0.1  # relative to the label variance
# Without a configuration record, a loss this close to ln C for a common class
# count C is taken as chance-level cross-entropy. Candidates are few so that
# an unrelated loss rarely lands near one by accident.
CURVE_ONLY_CHANCE_TOLERANCE = 0.01  # relative to ln C
CURVE_ONLY_CLASS_COUNTS = (2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000)
# Flat: the whole run gained under this share of its starting loss.
FLAT_PROGRESS = 0.02

# Constant: the loss spread over the run is under this share of its value.
CONSTANT_SPREAD = 1e-6  # relative
MIN_CONSTANT_POINTS = 5  # records

# Overfitting (published starting point: validation loss rising for several
# evaluations while training loss falls, (val - train) / train > 0.1).
OVERFIT_PATIENCE = 3  # evaluations after the best validation loss
OVERFIT_MIN_RISE = 0.05  # final val over best val, relative
# Or, on a small training set (see `context.SMALL_SET_PER_CLASS`), the
# validation loss ends this share of the chance level above the training loss.
MEMORIZED_GAP = 0.25  # of the chance-level loss

# Not converged: the last fifth of the run still made a good share of the
# total fall (a straight line makes 20%; a converged curve almost 0) ...
NOT_CONVERGED_SHARE = 0.15  # of the total fall
# ... and lowered the loss by a noticeable amount relative to where it ends.
NOT_CONVERGED_DROP = 0.05  # relative to the final loss
# Below this fall over the run, a "still falling" end is noise on a flat curve.
NOT_CONVERGED_MIN_PROGRESS = 0.1  # of the starting loss
# Or, by epoch (few epochs give few points): the last epoch still lowered the
# (validation) loss by this much, at this share of its average fall per epoch,
# and the loss fell this much overall. A levelling curve falls less and less.
NOT_CONVERGED_EPOCH_DROP = 0.1  # of the loss before the last epoch
NOT_CONVERGED_EPOCH_PACE = 0.5  # of the average fall per epoch
NOT_CONVERGED_EPOCH_FALL = 0.2  # of the first epoch's loss
# Or the last third of the epochs, every one lower than the last, made this
# share of the whole fall (a straight line makes a third; a levelled curve ~0).
NOT_CONVERGED_LAST_THIRD_SHARE = 0.25  # of the whole fall
# A run this short is judged by its pace alone (see `_short_run_still_falling`).
SHORT_RUN_EPOCHS = 5  # epochs
# A loss already this small relative to its start has converged for practical
# purposes, however it is still creeping (separable data drives CE toward 0).
NEGLIGIBLE_LOSS_SHARE = 0.05  # of the starting loss

# Insufficient capacity: the loss settled flat, far above a perfect fit ...
PLATEAU_SHARE = 0.1  # last fifth's share of the fall, at most
CAPACITY_LOSS_SHARE = 0.25  # final loss over chance level, at least
# ... in a model with a bottleneck this narrow (or no hidden layer at all).
CAPACITY_BOTTLENECK_UNITS = 2  # units


def _tags(ctx):
    tags = [ctx.train.tag]
    if ctx.val is not None:
        tags.append(ctx.val.tag)
    return tags


def _curve_only_note(ctx):
    if ctx.recorded:
        return ""
    return (
        " (From the loss curve alone: recorded with tb_plateau, the per-layer gradients and"
        " activations would show why.)"
    )


def _chance(ctx):
    """(chance-level loss, how it was derived, tolerance) or (None, None, None)."""
    config = ctx.config
    if ctx.chance_loss is not None:
        if config.is_cross_entropy:
            classes = config.num_classes
            how = (
                "the entropy of the label frequencies"
                if config.class_frequencies is not None
                else "ln(%d)" % classes
            )
            return ctx.chance_loss, how, CHANCE_TOLERANCE_CE
        return ctx.chance_loss, "the variance of the labels", CHANCE_TOLERANCE_MSE
    # Without the configuration the class count is unknown: a loss that sits at
    # ln C is only said to look like chance level (see `chance_hint`), never
    # asserted to be it.
    return None, None, None


def chance_hint(level):
    """Words for a loss level that equals ln C for a common class count C, or ""."""
    classes, distance = curves.nearest_log_integer(level)
    if classes in CURVE_ONLY_CLASS_COUNTS and distance < CURVE_ONLY_CHANCE_TOLERANCE:
        return (
            " %s is ln %d, the loss of uniform predictions over %d classes: if the model has"
            " %d balanced classes, it has learned nothing."
            % (fmt(level), classes, classes, classes)
        )
    return ""


def detect_chance_level(ctx):
    """The loss stays at what predicting the label distribution alone gives."""
    shape = ctx.train_shape
    if shape is None:
        return None
    chance, how, tolerance = _chance(ctx)
    if chance is None or chance <= 0:
        return None
    if not ctx.has_config and abs(shape.progress) > FLAT_PROGRESS:
        return None  # a guessed chance level counts only for a loss that never moved
    # A loss still falling steeply is on its way down, not staying at chance.
    train_at_chance = (
        abs(shape.tail - chance) / chance < tolerance
        and shape.best > chance * (1 - 2 * tolerance)
        and not ctx.falling_steeply
    )
    val_never_better = False
    # (A small training set is memorized whatever its labels: that is overfitting.)
    if ctx.val_shape is not None and ctx.val_shape.n >= 2 and not ctx.small_training_set:
        # (A validation loss still falling steeply is on its way, not stuck above chance.)
        val_never_better = (
            ctx.val_shape.best > chance * (1 - tolerance)
            and shape.tail < chance * (1 - tolerance)
            and not falls_steeply(ctx.val.values)
        )
    if not (train_at_chance or val_never_better):
        return None
    if train_at_chance:
        explanation = (
            "The training loss stayed at chance level: it ended at %s, and %s (the loss of a"
            " model that ignores its inputs) is %s. The best it reached was %s."
            % (fmt(shape.tail), how, fmt(chance), fmt(shape.best))
        )
    else:
        explanation = (
            "The training loss fell to %s, but the validation loss never got below chance"
            " level (%s = %s; best %s): the model memorizes the training labels without"
            " learning anything that generalizes."
            % (fmt(shape.tail), how, fmt(chance), fmt(ctx.val_shape.best))
        )
    explanation += (
        " When gradients and activations are healthy, this means the labels carry no"
        " information about the inputs: shuffled apart from them, constant, or wrong."
    ) + _curve_only_note(ctx)
    return Finding(
        cause=causes.NO_SIGNAL,
        severity=causes.CRITICAL if ctx.has_config else causes.WARNING,
        confidence=0.8 if ctx.has_config else 0.55,
        title="The loss stays at chance level (%s)" % fmt(chance),
        explanation=explanation,
        first_step=int(shape.steps[0] if train_at_chance else ctx.val_shape.steps[0]),
        evidence={
            "series": _tags(ctx),
            "chance_loss": chance,
            "final_loss": shape.tail,
            "best_loss": shape.best,
            "val_never_better": val_never_better,
        },
    )


def detect_constant_loss(ctx):
    """The loss does not change at all; without gradient records, say what that means."""
    if ctx.vector(metadata.GRAD_NORM) is not None or ctx.train is None:
        return None  # the gradient detectors know better
    steps, values, _ = curves.finite_prefix(ctx.train)
    if len(values) < MIN_CONSTANT_POINTS:
        return None
    spread = float(np.ptp(values))
    if spread > CONSTANT_SPREAD * max(abs(float(np.mean(values))), 1e-12):
        return None
    return Finding(
        cause=causes.ZERO_GRADIENT,
        severity=causes.CRITICAL,
        confidence=0.6,
        title="The loss is constant (%s at every record)" % fmt(values[0]),
        explanation=(
            "The loss was %s at all %d records from step %d to %d: no weight moved. Usually"
            " the gradient is exactly zero (a non-differentiable op such as sign/round/argmax,"
            " a loss of constants, tf.stop_gradient), or the learning rate is 0."
            % (fmt(values[0]), len(values), int(steps[0]), int(steps[-1]))
        )
        + _curve_only_note(ctx),
        first_step=int(steps[0]),
        evidence={"series": _tags(ctx), "value": float(values[0]), "points": len(values)},
    )


def detect_negative_loss(ctx):
    """A loss below zero that cannot be (cross-entropy, squared error, ...)."""
    if ctx.train is None:
        return None
    _, values, _ = curves.finite_prefix(ctx.train)
    if not len(values) or float(np.min(values)) >= 0:
        return None
    if ctx.has_config and not ctx.config.loss_cannot_be_negative:
        return None  # cosine similarity, log-likelihoods of densities: negative by design
    first_negative = int(ctx.train.steps[int(np.argmax(values < 0))])
    if ctx.has_config:
        explanation = (
            "The loss %r reached %s, but it cannot be negative for valid labels: the labels"
            " are outside the range the loss expects (e.g. -1/+1 or class ids for"
            " binary cross-entropy, non-one-hot rows for categorical cross-entropy)."
            % (ctx.config.loss_name, fmt(np.min(values)))
        )
    else:
        explanation = (
            "The loss reached %s. Cross-entropy and squared-error losses cannot be negative"
            " for valid labels: unless this loss is negative by design (cosine similarity, a"
            " density's log-likelihood), the labels do not fit the loss (e.g. -1/+1 labels"
            " with binary cross-entropy)." % fmt(np.min(values))
        ) + _curve_only_note(ctx)
    return Finding(
        cause=causes.LOSS_OUTPUT_MISMATCH,
        severity=causes.CRITICAL if ctx.has_config else causes.WARNING,
        confidence=0.9 if ctx.has_config else 0.6,
        title="The loss is negative (%s)" % fmt(np.min(values)),
        explanation=explanation,
        first_step=first_negative,
        evidence={"series": _tags(ctx), "min_loss": float(np.min(values))},
    )


def detect_overfitting(ctx):
    """Validation loss rising for several evaluations while training loss falls."""
    if ctx.val is None or ctx.train_shape is None:
        return None
    steps, values, _ = curves.finite_prefix(ctx.val)
    if len(values) < OVERFIT_PATIENCE + 2:
        return None
    best = int(np.argmin(values))
    after = len(values) - 1 - best
    rise = (values[-1] - values[best]) / abs(values[best]) if values[best] else 0.0
    gap = ctx.train_val_gap()
    if gap is None or gap < TRAIN_VAL_GAP:
        return None
    if after < OVERFIT_PATIENCE or rise < OVERFIT_MIN_RISE:
        return _memorized_small_set(ctx, values, gap)
    train_steps = ctx.train_shape.steps
    train_at_best = float(np.interp(steps[best], train_steps, ctx.train_shape.smoothed))
    if ctx.train_shape.tail >= train_at_best:
        return None  # both rising: not overfitting, something else broke
    return Finding(
        cause=causes.OVERFITTING,
        severity=causes.WARNING,
        confidence=min(0.95, 0.6 + 0.1 * after),
        title="Overfitting since step %d: validation loss up %s, training loss down"
        % (int(steps[best]), percent(rise)),
        explanation=(
            "The validation loss was lowest (%s) at step %d and rose for the %d evaluations"
            " after it, to %s (+%s), while the training loss fell from %s to %s. At the end"
            " the validation loss is %s above the training loss."
            % (
                fmt(values[best]),
                int(steps[best]),
                after,
                fmt(values[-1]),
                percent(rise),
                fmt(train_at_best),
                fmt(ctx.train_shape.tail),
                percent(gap),
            )
            + _small_set_words(ctx)
        ),
        first_step=int(steps[best]),
        evidence={
            "series": _tags(ctx),
            "training_samples": ctx.training_samples,
            "best_val_step": int(steps[best]),
            "best_val_loss": float(values[best]),
            "final_val_loss": float(values[-1]),
            "gap": gap,
            "threshold": TRAIN_VAL_GAP,
        },
    )


def _small_set_words(ctx):
    if not ctx.small_training_set:
        return ""
    return (
        " Each epoch trains on at most %d samples (%d steps of %d): too few to learn from"
        " without memorizing them."
        % (
            ctx.training_samples,
            ctx.training_samples // ctx.config.batch_size,
            ctx.config.batch_size,
        )
    )


def _memorized_small_set(ctx, values, gap):
    """Overfitting without a rise: a small training set fitted far below the validation loss."""
    chance, _, _ = _chance(ctx)
    if not ctx.small_training_set or chance is None or chance <= 0:
        return None
    train_tail, val_tail = ctx.train_shape.tail, float(values[-1])
    if val_tail - train_tail < MEMORIZED_GAP * chance:
        return None
    return Finding(
        cause=causes.OVERFITTING,
        severity=causes.WARNING,
        confidence=0.75,
        title="Overfitting a small training set: validation loss %s above training" % percent(gap),
        explanation=(
            "The training loss fell to %s while the validation loss ended at %s, %s of the"
            " chance level %s higher: the model memorized its training samples."
            % (
                fmt(train_tail),
                fmt(val_tail),
                percent((val_tail - train_tail) / chance),
                fmt(chance),
            )
            + _small_set_words(ctx)
        ),
        first_step=int(ctx.val.steps[0]),
        evidence={
            "series": _tags(ctx),
            "training_samples": ctx.training_samples,
            "final_val_loss": val_tail,
            "final_train_loss": train_tail,
            "gap": gap,
            "threshold": MEMORIZED_GAP,
        },
    )


def _epoch_still_falling(ctx):
    """(curve name, values) of an epoch loss still falling at full pace at the end, or None.

    The validation loss (else the epoch training loss), over at least 3 epochs:
    at its lowest at the last epoch, down NOT_CONVERGED_EPOCH_DROP in that epoch,
    at no less than NOT_CONVERGED_EPOCH_PACE of its average fall per epoch, and
    down NOT_CONVERGED_EPOCH_FALL overall. A curve that levels off falls less
    and less per epoch; a few epochs of a long descent keep their pace. A run
    of SHORT_RUN_EPOCHS or fewer is judged by its pace alone (see
    `_short_run_still_falling`).
    """
    for name, curve in (
        ("validation", ctx.val),
        ("training", ctx.epoch_train),
    ):
        if curve is None:
            continue
        values = np.asarray(curve.values, float)
        if len(values) < 3 or not np.isfinite(values).all() or values[0] <= 0:
            return None
        if _epochs_still_falling(values):
            return name, values
        break
    # A short run, judged on its training epochs (the validation loss of a few
    # epochs is noisier), provided the validation loss ends at its lowest too.
    train = None if ctx.epoch_train is None else np.asarray(ctx.epoch_train.values, float)
    val = None if ctx.val is None else np.asarray(ctx.val.values, float)
    if train is not None and _short_run_still_falling(train):
        if val is None or not len(val) or val[-1] <= np.nanmin(val):
            return "training", train
    return None


def _epochs_still_falling(values):
    fall = values[0] - values[-1]
    last = values[-2] - values[-1]
    third = len(values) // 3
    if values[-1] > values.min() or fall < NOT_CONVERGED_EPOCH_FALL * values[0]:
        return False
    if values[-1] < NEGLIGIBLE_LOSS_SHARE * values[0]:
        return False
    # A few epochs that keep their pace ...
    if last >= NOT_CONVERGED_EPOCH_DROP * values[-2] and last >= NOT_CONVERGED_EPOCH_PACE * (
        fall / (len(values) - 1)
    ):
        return True
    # ... or a long steady descent: the last third of the epochs, each lower
    # than the one before, still made a good share of the whole fall.
    return bool(
        third >= 2
        and (np.diff(values[-third - 1 :]) < 0).all()
        and values[-third - 1] - values[-1] >= NOT_CONVERGED_LAST_THIRD_SHARE * fall
    )


def _short_run_still_falling(values):
    """A run of a few epochs, each lower than the last, the last keeping the average pace.

    Over so few epochs a curve cannot have levelled off by much; its pace is
    the evidence: a levelling curve falls less and less per epoch.
    """
    if not 3 <= len(values) <= SHORT_RUN_EPOCHS or not (np.diff(values) < 0).all():
        return False
    fall = values[0] - values[-1]
    last = values[-2] - values[-1]
    return bool(
        fall >= NOT_CONVERGED_MIN_PROGRESS * values[0]
        and last >= NOT_CONVERGED_EPOCH_PACE * fall / (len(values) - 1)
    )


def detect_not_converged(ctx):
    """The loss was still falling steeply when training stopped."""
    shape = ctx.train_shape
    if shape is None or shape.n < 5 or shape.progress < NOT_CONVERGED_MIN_PROGRESS:
        return None
    if shape.head > 0 and shape.tail < NEGLIGIBLE_LOSS_SHARE * shape.head:
        return None
    by_epoch = _epoch_still_falling(ctx)
    batches_say = (
        shape.last_fifth_share >= NOT_CONVERGED_SHARE
        and shape.last_fifth_drop >= NOT_CONVERGED_DROP
    )
    epoch_shape = ctx.epoch_train_shape
    if batches_say and epoch_shape is not None and epoch_shape.n >= 5:
        # Single noisy batches fell; the epoch means may have levelled off.
        batches_say = epoch_shape.last_fifth_drop >= NOT_CONVERGED_DROP
    if not batches_say:
        return _not_converged_by_epoch(ctx, *by_epoch) if by_epoch is not None else None
    if ctx.val_shape is not None and ctx.val_shape.n >= 3 and ctx.val_shape.last_fifth_drop < 0:
        return None  # validation already rising: more training would overfit
    at_four_fifths = float(shape.smoothed[int(round(0.8 * (shape.n - 1)))])
    return Finding(
        cause=causes.NOT_CONVERGED,
        severity=causes.WARNING,
        confidence=min(0.9, 0.5 + shape.last_fifth_share),
        title="The loss was still falling when training stopped (-%s in the last fifth)"
        % percent(shape.last_fifth_drop / (1 + shape.last_fifth_drop)),
        explanation=(
            "Over the last fifth of the run the loss fell from %s to %s: %s of its whole fall"
            " (%s -> %s) happened there, so it had not levelled off at step %d. More steps,"
            " or a larger learning rate, would lower it further."
            % (
                fmt(at_four_fifths),
                fmt(shape.tail),
                percent(shape.last_fifth_share),
                fmt(shape.head),
                fmt(shape.tail),
                int(shape.steps[-1]),
            )
        )
        + _curve_only_note(ctx),
        first_step=int(shape.steps[int(round(0.8 * (shape.n - 1)))]),
        evidence={
            "series": _tags(ctx),
            "last_fifth_share": shape.last_fifth_share,
            "last_fifth_drop": shape.last_fifth_drop,
            "thresholds": {"share": NOT_CONVERGED_SHARE, "drop": NOT_CONVERGED_DROP},
        },
    )


def _not_converged_by_epoch(ctx, name, values):
    last = values[-2] - values[-1]
    pace = (values[0] - values[-1]) / (len(values) - 1)
    return Finding(
        cause=causes.NOT_CONVERGED,
        severity=causes.WARNING,
        confidence=0.7,
        title="The %s loss was still falling when training stopped (-%s in the last epoch)"
        % (name, percent(last / values[-2])),
        explanation=(
            "Over %d epochs the %s loss fell from %s to %s, and the last epoch alone took it"
            " from %s to %s: %s of its average fall per epoch, at its lowest at the end. It"
            " had not levelled off; more epochs would lower it further."
            % (
                len(values),
                name,
                fmt(values[0]),
                fmt(values[-1]),
                fmt(values[-2]),
                fmt(values[-1]),
                percent(last / pace),
            )
        )
        + _curve_only_note(ctx),
        first_step=int(ctx.train_shape.steps[-1]),
        evidence={
            "series": _tags(ctx),
            "epoch_losses": [float(v) for v in values[-10:]],
            "last_epoch_drop": float(last / values[-2]),
            "pace": float(last / pace),
            "thresholds": {
                "last_epoch_drop": NOT_CONVERGED_EPOCH_DROP,
                "pace": NOT_CONVERGED_EPOCH_PACE,
                "fall": NOT_CONVERGED_EPOCH_FALL,
            },
        },
    )


def _bottleneck(config):
    """(layer, units) of the narrowest hidden layer if narrow enough, or ('', 0) for none."""
    widths = [(name, units) for name, units in config.hidden_widths if units]
    if not widths:
        return "", 0
    name, units = min(widths, key=lambda w: w[1])
    if units <= CAPACITY_BOTTLENECK_UNITS:
        return name, units
    return None


def _fan_in(layer):
    """Inputs a Dense layer reads per sample, from its parameter count, or None."""
    units, params = layer.get("units"), layer.get("params")
    if layer.get("class") != "Dense" or not isinstance(units, int) or units <= 0:
        return None
    if not isinstance(params, int) or params <= 0 or params % units:
        return None
    return params // units - (1 if layer.get("use_bias", True) else 0)


def _narrower_than_classes(config):
    """(narrow layer, width, classes) where the signal narrows below what the classes need.

    C classes need C - 1 directions on the way to the logits. A Dense layer
    (past the first, which reads the data as it is) that reads fewer inputs
    than that gets them from a layer too narrow; its parameter count says how
    many it reads, so a one-unit layer that does not feed the path (an
    attention score) is not taken for one.
    """
    classes = config.num_classes
    if not classes or classes < 3:
        return None
    layers = [layer for layer in config.computing_layers if not layer.get("nested")]
    for i, layer in enumerate(layers[1:], start=1):
        fan_in = _fan_in(layer)
        if fan_in is None or fan_in < 1 or fan_in >= classes - 1:
            continue
        before = [earlier for earlier in layers[:i] if earlier.get("units") == fan_in]
        name = before[-1].get("name") if before else "the input of %s" % layer.get("name")
        return name, fan_in, classes
    return None


def detect_insufficient_capacity(ctx):
    """A model too small to fit: a layer narrower than the classes, or a flat plateau far up."""
    shape = ctx.train_shape
    if shape is None or not ctx.has_config or shape.n < 5 or shape.progress <= FLAT_PROGRESS:
        return None
    chance, how, _ = _chance(ctx)
    if chance is None or shape.tail < CAPACITY_LOSS_SHARE * chance:
        return None
    narrow = _narrower_than_classes(ctx.config)
    if narrow is not None and not ctx.good_fit:
        return _too_narrow_finding(ctx, shape, chance, narrow)
    # Epoch means show a plateau without the batch-to-batch noise.
    epoch_shape = ctx.epoch_train_shape
    plateau_shape = epoch_shape if epoch_shape is not None and epoch_shape.n >= 5 else shape
    if plateau_shape.last_fifth_share > PLATEAU_SHARE:
        return None
    gap = ctx.train_val_gap()
    if gap is not None and abs(gap) > TRAIN_VAL_GAP:
        return None
    bottleneck = _bottleneck(ctx.config)
    if bottleneck is None:
        return None
    name, units = bottleneck
    if units:
        where = "its narrowest hidden layer, %s, has %d unit%s" % (name, units, "s" * (units > 1))
    else:
        where = "it has no hidden layer: a linear model"
    explanation = (
        "The loss settled at %s (%s of chance level %s, from %s at the start) and stopped"
        " improving, "
        % (fmt(shape.tail), percent(shape.tail / chance), fmt(chance), fmt(shape.head))
    )
    explanation += (
        "with training and validation loss %s apart" % percent(abs(gap))
        if gap is not None
        else "with no validation loss to compare"
    )
    explanation += "; the model cannot fit the training data better: %s." % where
    return Finding(
        cause=causes.INSUFFICIENT_CAPACITY,
        severity=causes.WARNING,
        confidence=0.65,
        title="The model is too small: the loss plateaus at %s of chance level"
        % percent(shape.tail / chance),
        explanation=explanation,
        first_step=int(shape.best_step),
        layers=[name] if name else [],
        evidence={
            "series": _tags(ctx),
            "final_loss": shape.tail,
            "chance_loss": chance,
            "train_val_gap": gap,
            "bottleneck_units": units,
        },
    )


def _too_narrow_finding(ctx, shape, chance, narrow):
    name, units, classes = narrow
    return Finding(
        cause=causes.INSUFFICIENT_CAPACITY,
        severity=causes.WARNING,
        confidence=0.75,
        title="Layer %s (%d unit%s) is too narrow for %d classes"
        % (name, units, "s" * (units > 1), classes),
        explanation=(
            "Hidden layer %s has %d unit%s, but telling %d classes apart takes at least %d"
            " directions before the output: whatever the weights, the model cannot separate"
            " them all. The loss ended at %s, %s of the chance level %s."
            % (
                name,
                units,
                "s" * (units > 1),
                classes,
                classes - 1,
                fmt(shape.tail),
                percent(shape.tail / chance),
                fmt(chance),
            )
        ),
        first_step=int(shape.steps[0]),
        layers=[name],
        evidence={
            "series": _tags(ctx),
            "final_loss": shape.tail,
            "chance_loss": chance,
            "bottleneck_units": units,
            "classes": classes,
        },
    )


DETECTORS = (
    detect_negative_loss,
    detect_constant_loss,
    detect_chance_level,
    detect_overfitting,
    detect_not_converged,
    detect_insufficient_capacity,
)
