"""How the run ended: still falling when it stopped (not converged), or settled far up in a
model too small to fit (insufficient capacity).

Read from the loss curves, like `loss_curve`, so they also serve logs written
without tb_plateau; the configuration record names the narrow layer.
"""

import numpy as np

from tb_plateau.diagnosis import causes
from tb_plateau.diagnosis.context import (
    SHORT_RUN_EPOCHS,
    STEEP_EPOCH_DROP,
    TRAIN_VAL_GAP,
    falls_steeply,
)
from tb_plateau.diagnosis.finding import Finding, fmt, percent
from tb_plateau.diagnosis.loss_curve import FLAT_PROGRESS, chance_of, curve_only_note, evidence_tags

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
# A run this short is judged by its pace alone (see `_short_run_still_falling`),
# or by a pace that grows (`RunContext.accelerating`).
# A loss already this small relative to its start has converged for practical
# purposes, however it is still creeping (separable data drives CE toward 0).
NEGLIGIBLE_LOSS_SHARE = 0.05  # of the starting loss

# Insufficient capacity: the loss settled flat, far above a perfect fit ...
PLATEAU_SHARE = 0.1  # last fifth's share of the fall, at most
CAPACITY_LOSS_SHARE = 0.25  # final loss over chance level, at least
# ... in a model with a bottleneck this narrow (or no hidden layer at all).
CAPACITY_BOTTLENECK_UNITS = 2  # units
# A regression's targets that keep this share of their variance beyond the first principal
# directions a bottleneck can pass on (as many as its units) ...
CAPACITY_BEYOND_SHARE = 0.1
# ... explain a plateau that holds at least this fraction of that share (whatever its level
# against chance: the targets' own spread says what the narrow layer leaves out).
CAPACITY_BEYOND_LOSS = 0.5
# A validation loss above the training loss rules a plateau out as too little capacity
# (the model fits its training samples better than others) only when the gap widened by
# this much (relative to the training loss) over the second half of the epochs.
GAP_WIDENING = 0.05


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
    if ctx.descending_to_chance:
        return "validation", np.asarray(ctx.val.values, float)
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
    if train is not None and (ctx.accelerating or _short_run_still_falling(train, val)):
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


def _short_run_still_falling(values, val=None):
    """A run of a few epochs, each lower than the last, the last keeping the average pace,
    or the last lowering the loss (and the validation loss) steeply.

    Over so few epochs a curve cannot have levelled off by much; its pace is
    the evidence: a levelling curve falls less and less per epoch. Every curve
    slows down after its first epochs, though: one whose last epoch still took
    STEEP_EPOCH_DROP off both losses has not levelled off either.
    """
    if not 3 <= len(values) <= SHORT_RUN_EPOCHS or not (np.diff(values) < 0).all():
        return False
    fall = values[0] - values[-1]
    last = values[-2] - values[-1]
    if fall < NOT_CONVERGED_MIN_PROGRESS * values[0]:
        return False
    if last >= NOT_CONVERGED_EPOCH_PACE * fall / (len(values) - 1):
        return True
    return bool(
        val is not None
        and len(val) >= 2
        and falls_steeply(values)
        and val[-2] - val[-1] >= STEEP_EPOCH_DROP * val[-2]
    )


def detect_not_converged(ctx):
    """The loss was still falling steeply when training stopped."""
    shape = ctx.train_shape
    if shape is None or shape.n < 5:
        return None
    if (
        shape.progress < NOT_CONVERGED_MIN_PROGRESS
        and not ctx.accelerating
        and not ctx.descending_to_chance
    ):
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
        # Single noisy batches fell; the epoch means, the curve without their noise, judge
        # whether the end still made a good share of the fall.
        batches_say = (
            epoch_shape.last_fifth_drop >= NOT_CONVERGED_DROP
            and epoch_shape.last_fifth_share >= NOT_CONVERGED_SHARE
        )
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
        + curve_only_note(ctx),
        first_step=int(shape.steps[int(round(0.8 * (shape.n - 1)))]),
        evidence={
            "series": evidence_tags(ctx),
            "last_fifth_share": shape.last_fifth_share,
            "last_fifth_drop": shape.last_fifth_drop,
            "thresholds": {"share": NOT_CONVERGED_SHARE, "drop": NOT_CONVERGED_DROP},
        },
    )


def _at_chance_words(ctx, values):
    """The explanation of a run stopped while both losses were still at chance level and
    falling (see `RunContext.descending_to_chance`)."""
    train = np.asarray(ctx.epoch_train.values, float)
    chance, how, _ = chance_of(ctx)
    return (
        "Over %d epochs the training loss went %s and the validation loss %s, the"
        " validation loss at its lowest at the end: both still falling, and still no better"
        " than chance level (%s = %s). Training stopped on the way down, before the model"
        " learned anything beyond %s; labels without signal would not lower the validation"
        " loss. More epochs (or a larger learning rate) would take it further."
        % (
            len(train),
            " -> ".join("%.4g" % v for v in train[-4:]),
            " -> ".join("%.4g" % v for v in values[-4:]),
            how,
            fmt(chance),
            "the targets' mean" if not ctx.config.is_cross_entropy else "the label frequencies",
        )
    )


def _not_converged_by_epoch(ctx, name, values):
    last = values[-2] - values[-1]
    pace = (values[0] - values[-1]) / (len(values) - 1)
    if ctx.descending_to_chance:
        explanation = _at_chance_words(ctx, values) + (
            " Each epoch lowered it more than the one before: it was leaving its first plateau."
            if ctx.accelerating
            else ""
        )
    else:
        explanation = (
            "Over %d epochs the %s loss fell from %s to %s, and the last epoch alone took it"
            " from %s to %s: %s of its average fall per epoch, at its lowest at the end. It"
            " had not levelled off; more epochs would lower it further.%s"
            % (
                len(values),
                name,
                fmt(values[0]),
                fmt(values[-1]),
                fmt(values[-2]),
                fmt(values[-1]),
                percent(last / pace),
                " Each epoch lowered it more than the one before: it was leaving its first"
                " plateau when training stopped."
                if ctx.accelerating
                else "",
            )
        )
    return Finding(
        cause=causes.NOT_CONVERGED,
        severity=causes.WARNING,
        confidence=0.7,
        title=(
            "The loss was still at chance level and falling when training stopped"
            if ctx.descending_to_chance
            else "The %s loss was still falling when training stopped (-%s in the last epoch)"
            % (name, percent(last / values[-2]))
        ),
        explanation=explanation + curve_only_note(ctx),
        first_step=int(ctx.train_shape.steps[-1]),
        evidence={
            "series": evidence_tags(ctx),
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


def _gap_widened(ctx):
    """True unless the validation loss stayed the same distance above the training loss over
    the second half of the epochs (both flat: the validation split is harder, an offset, not
    a model fitting its training samples ever better than the rest). Without epoch curves:
    True."""
    if ctx.epoch_train is None or ctx.val is None:
        return True
    train = np.asarray(ctx.epoch_train.values, float)
    val = np.asarray(ctx.val.values, float)
    if len(train) != len(val) or len(train) < 4 or not np.isfinite(train).all():
        return True
    if not np.isfinite(val).all() or (train <= 0).any():
        return True
    middle = len(train) // 2
    gaps = (val - train) / train
    return bool(gaps[-1] - gaps[middle] > GAP_WIDENING)


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
    if layer.get("class") not in ("Dense", "Linear") or not isinstance(units, int) or units <= 0:
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


def _variance_beyond_bottleneck(config, bottleneck):
    """The share of a regression's variance its targets keep beyond the first principal
    directions its narrowest hidden layer (`bottleneck`, see `_bottleneck`) can pass on (one
    per unit), from the recorded labels' spectrum, when at least CAPACITY_BEYOND_SHARE;
    else None."""
    if not bottleneck or not bottleneck[1] or not config.is_regression_loss:
        return None
    shares = config.label_principal_shares
    if shares is None:
        return None
    beyond = float(max(0.0, 1.0 - np.sum(shares[: bottleneck[1]])))
    return beyond if beyond >= CAPACITY_BEYOND_SHARE else None


def _plateau_start(shape):
    """The first step at which the smoothed loss came within a tenth of its whole fall of
    where it settled: where the plateau begins (not its lowest point, near the end)."""
    settled = shape.tail + 0.1 * max(shape.head - shape.tail, 0.0)
    reached = np.flatnonzero(shape.smoothed <= settled)
    return int(shape.steps[reached[0]] if len(reached) else shape.best_step)


def _plateau_explanation(level, chance, head, gap, bottleneck, beyond):
    """Why a flat plateau far up is the model's size: the numbers behind the finding."""
    name, units = bottleneck
    if units:
        where = "its narrowest hidden layer, %s, has %d unit%s" % (name, units, "s" * (units > 1))
    else:
        where = "it has no hidden layer: a linear model"
    explanation = (
        "The loss settled at %s (%s of chance level %s, from %s at the start) and stopped"
        " improving, " % (fmt(level), percent(level / chance), fmt(chance), fmt(head))
    )
    if gap is None:
        explanation += "with no validation loss to compare"
    elif abs(gap) > TRAIN_VAL_GAP:
        explanation += (
            "with the validation loss a steady %s above the training loss (a gap that did not"
            " widen: the validation split is harder, the model is not memorizing)" % percent(gap)
        )
    else:
        explanation += "with training and validation loss %s apart" % percent(abs(gap))
    explanation += "; the model cannot fit the training data better: %s" % where
    if beyond is not None:
        explanation += (
            ", while the targets spread %s of their variance beyond their first %s (over a"
            " recorded batch), which %s cannot pass on to the output"
            % (
                percent(beyond),
                "principal direction" if units == 1 else "%d principal directions" % units,
                "one unit" if units == 1 else "%d units" % units,
            )
        )
    explanation += "."
    return explanation


def detect_insufficient_capacity(ctx):
    """A model too small to fit: a layer narrower than the classes, or a flat plateau far up
    (or where a bottleneck leaves out what the targets spread beyond its width)."""
    shape = ctx.train_shape
    if shape is None or not ctx.has_config or shape.n < 5 or shape.progress <= FLAT_PROGRESS:
        return None
    chance, how, _ = chance_of(ctx)
    # Epoch means show the level and a plateau without the batch-to-batch noise (a few
    # recorded batches that a narrow model happens to fit well say little).
    epoch_shape = ctx.epoch_train_shape
    level = epoch_shape.tail if epoch_shape is not None and epoch_shape.n >= 3 else shape.tail
    bottleneck = _bottleneck(ctx.config)
    beyond = _variance_beyond_bottleneck(ctx.config, bottleneck)
    needed = CAPACITY_LOSS_SHARE
    if beyond is not None:
        needed = min(needed, CAPACITY_BEYOND_LOSS * beyond)
    if chance is None or level < needed * chance:
        return None
    narrow = _narrower_than_classes(ctx.config)
    if narrow is not None and not ctx.good_fit:
        return _too_narrow_finding(ctx, level, chance, narrow)
    plateau_shape = epoch_shape if epoch_shape is not None and epoch_shape.n >= 5 else shape
    if plateau_shape.last_fifth_share > PLATEAU_SHARE:
        return None
    gap = ctx.train_val_gap()
    if gap is not None and abs(gap) > TRAIN_VAL_GAP and (gap < 0 or _gap_widened(ctx)):
        return None
    if bottleneck is None:
        return None
    name, units = bottleneck
    explanation = _plateau_explanation(level, chance, shape.head, gap, bottleneck, beyond)
    return Finding(
        cause=causes.INSUFFICIENT_CAPACITY,
        severity=causes.WARNING,
        confidence=0.65,
        title="The model is too small: the loss plateaus at %s of chance level"
        % percent(level / chance),
        explanation=explanation,
        first_step=_plateau_start(shape),
        layers=[name] if name else [],
        evidence={
            "series": evidence_tags(ctx),
            "final_loss": level,
            "chance_loss": chance,
            "train_val_gap": gap,
            "bottleneck_units": units,
            "target_variance_beyond_bottleneck": beyond,
            # the loss holds at least CAPACITY_BEYOND_LOSS of what the bottleneck leaves out
            "explains_final_loss": beyond is not None
            and level >= CAPACITY_BEYOND_LOSS * beyond * chance,
        },
    )


def _too_narrow_finding(ctx, level, chance, narrow):
    name, units, classes = narrow
    return Finding(
        cause=causes.INSUFFICIENT_CAPACITY,
        severity=causes.WARNING,
        confidence=0.75,
        title="Layer %s (%d unit%s) is too narrow for %d classes"
        % (name, units, "s" * (units > 1), classes),
        explanation=(
            "Hidden layer %s has %d unit%s, but telling %d classes apart takes %d directions"
            " before the output in general: through it, the model can only separate classes"
            " that happen to lie in order along %s. The loss ended at %s, %s of the chance"
            " level %s."
            % (
                name,
                units,
                "s" * (units > 1),
                classes,
                classes - 1,
                "one direction" if units == 1 else "%d directions" % units,
                fmt(level),
                percent(level / chance),
                fmt(chance),
            )
        ),
        first_step=int(ctx.train_shape.steps[0]),
        layers=[name],
        evidence={
            "series": evidence_tags(ctx),
            "final_loss": level,
            "chance_loss": chance,
            "bottleneck_units": units,
            "classes": classes,
        },
    )


DETECTORS = (detect_not_converged, detect_insufficient_capacity)
