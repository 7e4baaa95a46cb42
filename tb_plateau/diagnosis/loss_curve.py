"""The loss curves: chance level, constant, negative, overfitting.

These detectors need only the training (and validation) loss, so they also
serve logs written without tb_plateau (Keras' TensorBoard callback, PyTorch's
SummaryWriter); the configuration record sharpens them where it exists.
"""

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes, curves
from tb_plateau.diagnosis.context import TRAIN_VAL_GAP, falls_steeply
from tb_plateau.diagnosis.finding import Finding, fmt, fmt_ratio, percent

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
# ... or the validation loss ends this many times the training loss and has
# stopped following it: over the last OVERFIT_PATIENCE evaluations it fell
# (relatively) under this share of what the training loss fell. The curves
# have parted: what training still gains is memorization.
MEMORIZED_RATIO = 3.0  # final validation loss / final training loss
MEMORIZED_FOLLOW = 0.1  # validation's relative fall / training's relative fall
# A validation loss rising is overfitting only while the training loss falls: its epoch
# means must have fallen by this share since the best validation loss (a flat training loss
# beside a rising validation loss is the validation's noise, or something else breaking).
OVERFIT_TRAIN_FALL = 0.02  # relative


def evidence_tags(ctx):
    tags = [ctx.train.tag]
    if ctx.val is not None:
        tags.append(ctx.val.tag)
    return tags


def curve_only_note(ctx):
    if ctx.recorded:
        return ""
    return (
        " (From the loss curve alone: recorded with tb_plateau, the per-layer gradients and"
        " activations would show why.)"
    )


def chance_of(ctx):
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
        # (The label variance of one recorded batch is itself uncertain.)
        tolerance = max(CHANCE_TOLERANCE_MSE, ctx.chance_uncertainty)
        return ctx.chance_loss, "the variance of the labels", tolerance
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
    chance, how, tolerance = chance_of(ctx)
    if chance is None or chance <= 0:
        return None
    if ctx.config.targets_are_inputs:
        return None  # a reconstruction's targets carry all the inputs' information
    if ctx.too_early:
        return None  # every run starts at chance level
    if not ctx.has_config and abs(shape.progress) > FLAT_PROGRESS:
        return None  # a guessed chance level counts only for a loss that never moved
    # A loss still falling steeply is on its way down, not staying at chance.
    train_at_chance = (
        abs(shape.tail - chance) / chance < tolerance
        and shape.best > chance * (1 - 2 * tolerance)
        and not ctx.falling_steeply
        and not ctx.accelerating
        and not ctx.descending_to_chance
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
    ) + curve_only_note(ctx)
    return Finding(
        cause=causes.NO_SIGNAL,
        severity=causes.CRITICAL if ctx.has_config else causes.WARNING,
        confidence=0.8 if ctx.has_config else 0.55,
        title="The loss stays at chance level (%s)" % fmt(chance),
        explanation=explanation,
        first_step=int(shape.steps[0] if train_at_chance else ctx.val_shape.steps[0]),
        evidence={
            "series": evidence_tags(ctx),
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
        + curve_only_note(ctx),
        first_step=int(steps[0]),
        evidence={"series": evidence_tags(ctx), "value": float(values[0]), "points": len(values)},
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
        ) + curve_only_note(ctx)
    return Finding(
        cause=causes.LOSS_OUTPUT_MISMATCH,
        severity=causes.CRITICAL if ctx.has_config else causes.WARNING,
        confidence=0.9 if ctx.has_config else 0.6,
        title="The loss is negative (%s)" % fmt(np.min(values)),
        explanation=explanation,
        first_step=first_negative,
        evidence={"series": evidence_tags(ctx), "min_loss": float(np.min(values))},
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
    if not _training_fell_since(ctx, best, len(values)):
        return None
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
            "series": evidence_tags(ctx),
            "training_samples": ctx.training_samples,
            "best_val_step": int(steps[best]),
            "best_val_loss": float(values[best]),
            "final_val_loss": float(values[-1]),
            "gap": gap,
            "threshold": TRAIN_VAL_GAP,
        },
    )


def _training_fell_since(ctx, best, evaluations):
    """False when the epoch means of the training loss (one per validation evaluation) fell
    under OVERFIT_TRAIN_FALL from the best validation evaluation to the last; True without
    them (the batch curve's fall, checked before, is all there is)."""
    epochs = ctx.epoch_train
    if epochs is None or len(epochs) != evaluations:
        return True
    means = np.asarray(epochs.values, float)
    if not np.isfinite(means[[best, -1]]).all() or means[best] <= 0:
        return True
    return bool((means[best] - means[-1]) / means[best] >= OVERFIT_TRAIN_FALL)


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


def _curves_parted(ctx, values, train_tail):
    """True when the validation loss ends MEMORIZED_RATIO times the training loss and, over
    the last OVERFIT_PATIENCE evaluations, fell under MEMORIZED_FOLLOW of what the training
    loss fell (relatively)."""
    epochs = ctx.epoch_train
    if train_tail <= 0 or values[-1] < MEMORIZED_RATIO * train_tail:
        return False
    if epochs is None or len(epochs) <= OVERFIT_PATIENCE or len(values) <= OVERFIT_PATIENCE:
        return False
    train = np.asarray(epochs.values, float)
    train_fall = 1.0 - train[-1] / train[-1 - OVERFIT_PATIENCE]
    val_fall = 1.0 - values[-1] / values[-1 - OVERFIT_PATIENCE]
    return bool(train_fall > 0 and val_fall < MEMORIZED_FOLLOW * train_fall)


def _memorized_small_set(ctx, values, gap):
    """Overfitting without a rise: a small training set fitted far below the validation loss."""
    chance, _, _ = chance_of(ctx)
    if not ctx.small_training_set or chance is None or chance <= 0:
        return None
    train_tail, val_tail = ctx.train_shape.tail, float(values[-1])
    parted = _curves_parted(ctx, values, train_tail)
    if val_tail - train_tail < MEMORIZED_GAP * chance and not parted:
        return None
    return Finding(
        cause=causes.OVERFITTING,
        severity=causes.WARNING,
        confidence=0.75,
        title="Overfitting a small training set: validation loss %s"
        % (
            "%s the training loss" % fmt_ratio(gap + 1)
            if gap >= 1
            else "%s above training" % percent(gap)
        ),
        explanation=(
            "The training loss fell to %s while the validation loss ended at %s, %s the"
            " training loss and %s of the chance level %s higher%s: the model memorized its"
            " training samples."
            % (
                fmt(train_tail),
                fmt(val_tail),
                fmt_ratio(val_tail / train_tail) if train_tail > 0 else "far above",
                percent((val_tail - train_tail) / chance),
                fmt(chance),
                ", no longer following it down over the last %d evaluations" % OVERFIT_PATIENCE
                if parted
                else "",
            )
            + _small_set_words(ctx)
        ),
        first_step=int(ctx.val.steps[0]),
        evidence={
            "series": evidence_tags(ctx),
            "training_samples": ctx.training_samples,
            "final_val_loss": val_tail,
            "final_train_loss": train_tail,
            "gap": gap,
            "threshold": MEMORIZED_GAP,
        },
    )


DETECTORS = (
    detect_negative_loss,
    detect_constant_loss,
    detect_chance_level,
    detect_overfitting,
)
