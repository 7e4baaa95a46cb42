"""What every detector reads: the run, its loss curves and its configuration, prepared once."""

import dataclasses
from typing import Optional

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import configview, curves, sampling
from tb_plateau.diagnosis.finding import fmt, percent

# Training and validation losses this close count as equal (published starting
# point for overfitting: (val - train) / train > 0.1).
TRAIN_VAL_GAP = 0.1  # relative

# A training set this small is memorized by any model with a hidden layer:
# a validation loss that stays far above the training loss is then the small
# set's doing, not labels without signal (which a large set shows by a
# training loss that barely moves).
SMALL_SET_PER_CLASS = 50  # samples per class

# The loss curve's verdict, which every detector reads.
# Stuck: the training loss gained under this share of its start over the run
# (a healthy run gains most of its fall in the first epochs) ...
STUCK_PROGRESS = 0.25  # of the starting loss
# ... or it ended this close to the chance level (predicting the label
# distribution alone), when the chance level is known.
STUCK_CHANCE_SHARE = 0.85  # of the chance-level loss
# Where the loss settles is not judged before this many epochs have ended, in a
# run that was asked for more (a live diagnosis): the first epoch's mean is the
# descent itself.
EARLY_EPOCHS = 2  # epochs
# ... and in a live run that has no epochs, before this many of its regular intervals
# between records (`every_n_steps`): its first records are the descent itself.
EARLY_RECORD_SPANS = 3  # record intervals
# A good fit: the (validation) loss ended below this share of the chance level
# (a 10-class classifier at 0.58 from ln 10 = 2.3, a regression explaining
# 75% of its targets' variance). A cause that did not stop such a training is
# worth knowing, not why a loss is stuck.
GOOD_FIT_CHANCE_SHARE = 0.25  # of the chance-level loss
# Without a known chance level: the loss fell by this share of its start.
GOOD_FIT_PROGRESS = 0.9  # of the starting loss
# And it ended near its best: a run that ends this many times above the lowest
# loss it reached did not end well, however far it fell first.
GOOD_FIT_NEAR_BEST = 1.5  # final / best
# Frozen: the last records of the loss are equal to this relative spread: the
# weights no longer move the output (a dead network, a zero learning rate).
# No fit, however far the loss fell before.
FROZEN_SPREAD = 1e-5  # relative
FROZEN_POINTS = 3  # records
# ... reached at once: the record before them is this many times their level.
FROZEN_ARRIVAL = 1.5  # x the frozen level
# Still falling steeply: the last epoch lowered the training loss by this share
# of the epoch before. Such a run is neither stuck nor converged: it was
# stopped early (the not-converged check says so).
STEEP_EPOCH_DROP = 0.05  # of the previous epoch's loss
# Leaving its first plateau: a run of SHORT_RUN_EPOCHS or fewer whose training
# loss fell every epoch, each time by more than the epoch before, the last by
# at least this share (and whose validation loss ends at its lowest). It is
# accelerating away from where it started: too short to call stuck.
SHORT_RUN_EPOCHS = 5  # epochs
ACCELERATING_LAST_DROP = 0.005  # of the previous epoch's loss


@dataclasses.dataclass
class RunContext:
    run: object  # rundata.RunData
    config: configview.ConfigView
    train: Optional[curves.LossCurve]
    train_shape: Optional[curves.CurveShape]
    first_nonfinite_loss_step: Optional[int]
    val: Optional[curves.LossCurve]
    val_shape: Optional[curves.CurveShape]
    chance_loss: Optional[float]
    # The epoch means of the training loss ("epoch/loss"), when there are any:
    # the curve without the batch-to-batch noise.
    epoch_train: Optional[object] = None  # rundata.Series
    epoch_train_shape: Optional[curves.CurveShape] = None
    # The loss curve's verdict: "stuck" (the run is not learning), "good_fit"
    # (it reached a good loss), or None (neither, or too little curve to say),
    # and the reason in words.
    progress: Optional[str] = None
    progress_reason: str = ""
    # "keras" when the run was written from Keras (tb_plateau's Keras
    # recorder, Keras' TensorBoard callback), else None: fixes are then words
    # any framework's user can act on.
    framework: Optional[str] = None
    # True while the run is still training (a live diagnosis).
    live: bool = False
    # The chance level's relative standard error (a regression's label variance
    # is estimated from one recorded batch), 0 where it is exact enough.
    chance_uncertainty: float = 0.0

    @property
    def falling_steeply(self):
        """True when the epoch training loss fell steeply in the last epoch."""
        return self.epoch_train is not None and falls_steeply(self.epoch_train.values)

    @property
    def too_early(self):
        """True while a run that trains by epochs has not finished its first, or, in a live
        diagnosis, its second of more: its first epoch is the descent itself, and where its
        loss settles cannot be judged yet. A live run without epochs: before EARLY_RECORD_SPANS
        regular record intervals of steps."""
        per_epoch = self.config.steps_per_epoch
        if per_epoch is None:
            every = self.config.raw.get("every_n_steps")
            last = self.last_step
            if not self.live or last is None or not isinstance(every, (int, float)):
                return False
            return last + 1 < EARLY_RECORD_SPANS * every
        done = 0 if self.epoch_train is None else len(self.epoch_train)
        planned = self.config.epochs
        if done >= EARLY_EPOCHS or (planned is not None and done >= planned):
            return False
        if done == 0:
            last = self.last_step
            return last is not None and last + 1 < per_epoch
        # One epoch done: still the descent while the run trains; a run that ended there
        # (interrupted, stopped) is judged on what it has.
        return planned is not None and self.live

    @property
    def accelerating(self):
        """True for a short run leaving its first plateau (see ACCELERATING_LAST_DROP)."""
        if self.epoch_train is None:
            return False
        values = np.asarray(self.epoch_train.values, float)
        if not 3 <= len(values) <= SHORT_RUN_EPOCHS or not np.isfinite(values).all():
            return False
        drops = -np.diff(values)
        if not ((drops > 0).all() and (np.diff(drops) > 0).all()):
            return False
        if drops[-1] < ACCELERATING_LAST_DROP * values[-2]:
            return False
        val = None if self.val is None else np.asarray(self.val.values, float)
        return val is None or not len(val) or bool(val[-1] <= np.nanmin(val))

    @property
    def descending_to_chance(self):
        """True when both losses are still no better than chance level but on their way
        down: both fell steeply in the last epoch (after two epochs: the validation loss
        did), or, in a run of SHORT_RUN_EPOCHS or fewer, both fell at every epoch (the
        validation loss to its lowest). The run stopped
        before it learned anything beyond the label distribution (or the mean). Labels
        without signal cannot lower the validation loss: training on them may fall (by
        memorizing), validation does not follow."""
        chance = self.chance_loss
        if chance is None or chance <= 0 or self.val is None or self.epoch_train is None:
            return False
        val = np.asarray(self.val.values, float)
        train = np.asarray(self.epoch_train.values, float)
        if len(val) < 2 or not np.isfinite(val).all() or val[-1] > np.nanmin(val):
            return False
        if val[-1] <= STUCK_CHANCE_SHARE * chance:
            return False
        if len(val) == 2 or len(train) == 2:
            # Two evaluations: each one ends an epoch, so the second's steep fall is the
            # descent itself (the training loss's first epoch mean is not comparable).
            return bool(
                len(train) >= 2
                and train[-1] < train[-2]
                and val[-2] - val[-1] >= STEEP_EPOCH_DROP * val[-2]
            )
        if self.falling_steeply and falls_steeply(val):
            return True
        return bool(
            len(train) <= SHORT_RUN_EPOCHS
            and len(train) == len(val)
            and (np.diff(train) < 0).all()
            and (np.diff(val) < 0).all()
        )

    @property
    def stuck(self):
        return self.progress == "stuck"

    @property
    def good_fit(self):
        return self.progress == "good_fit"

    def threshold(self, usual, when_stuck):
        """A detector's threshold: the moderate one when the curve says the run is stuck."""
        return when_stuck if self.stuck else usual

    @property
    def recorded(self):
        """True when tb_plateau recorded this run (per-layer statistics or config)."""
        return self.run.has_plateau_data and bool(self.run.vectors or self.run.config)

    @property
    def has_config(self):
        return not self.config.is_empty

    def vector(self, name):
        """A per-layer statistic with at least one record, or None."""
        series = self.run.vectors.get(name)
        if series is None or len(series) == 0 or series.values.shape[1] == 0:
            return None
        return series

    @property
    def last_step(self):
        steps = [s.steps[-1] for s in self.run.scalars.values() if len(s)]
        steps += [v.steps[-1] for v in self.run.vectors.values() if len(v)]
        if self.train is not None and len(self.train):
            steps.append(self.train.steps[-1])
        return int(max(steps)) if steps else None

    @property
    def training_steps(self):
        """Optimizer steps the run took (from the last recorded step), or None."""
        last = self.last_step
        return None if last is None else last + 1

    @property
    def training_samples(self):
        """At most how many samples one epoch trains on (steps per epoch x batch size), or None."""
        batch = self.config.batch_size
        if self.epoch_train is None or len(self.epoch_train) < 2 or not batch:
            return None
        per_epoch = np.diff(np.asarray(self.epoch_train.steps, float))
        per_epoch = per_epoch[per_epoch > 0]
        return int(np.median(per_epoch) * batch) if len(per_epoch) else None

    @property
    def small_training_set(self):
        """True when an epoch holds under SMALL_SET_PER_CLASS samples per class (or output)."""
        samples = self.training_samples
        classes = max(self.config.num_classes or 0, 2)
        return samples is not None and samples < SMALL_SET_PER_CLASS * classes

    def train_val_gap(self):
        """(val - train) / train at the last epoch both have, or None."""
        if self.train is None or self.val is None or not len(self.val):
            return None
        train = self.epoch_train if self.epoch_train is not None else self.train
        train_tail = _finite_tail(train.values)
        val_tail = _finite_tail(self.val.values)
        if train_tail is None or val_tail is None or train_tail <= 0:
            return None
        return (val_tail - train_tail) / train_tail


def falls_steeply(values):
    """True when the last of 3+ epoch losses is STEEP_EPOCH_DROP below the one before."""
    values = np.asarray(values, float)
    if len(values) < 3 or not np.isfinite(values[-2:]).all() or values[-2] <= 0:
        return False
    return bool(values[-2] - values[-1] >= STEEP_EPOCH_DROP * values[-2])


def _finite_tail(values, points=2):
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    return float(np.mean(finite[-points:]))


def _fit_curve(ctx):
    """(shape, name) of the curve that says how well the run ended: validation, else training."""
    for name, shape in (("validation", ctx.val_shape), ("training", ctx.epoch_train_shape)):
        if shape is not None and shape.n >= 3:
            return shape, name
    return ctx.train_shape, "training"


# The loss at the start is read from this many first batch-loss records: the
# first epoch's mean already holds most of what a healthy run learns.
INITIAL_RECORDS = 3  # records


def _initial_loss(ctx, shape):
    """The loss before training had its effect: the first batch records, else the curve's head."""
    if ctx.train is not None and ctx.train.per_batch and len(ctx.train) >= INITIAL_RECORDS:
        first = np.asarray(ctx.train.values[:INITIAL_RECORDS], float)
        first = first[np.isfinite(first)]
        if len(first):
            return max(float(np.median(first)), shape.head)
    return shape.head


def _frozen_tail(curve):
    """(level, points) when the loss's last FROZEN_POINTS+ finite records are equal, else None."""
    if curve is None:
        return None
    values = np.asarray(curve.values, float)
    values = values[np.isfinite(values)]
    if len(values) < FROZEN_POINTS + 1:
        return None
    level = float(values[-1])
    if not abs(level) > 1e-6:
        return None  # a loss at 0 has nothing left to learn
    points = curves.trailing_run(values, FROZEN_SPREAD)
    if points < FROZEN_POINTS:
        return None
    # A loss that settles on its floor approaches it gradually (label smoothing's
    # floor, a solved task); a frozen one arrives at once, from far above.
    before = values[-points - 1] if points < len(values) else None
    if before is not None and before < FROZEN_ARRIVAL * level:
        return None
    return level, points


def _ended_near_best(shape):
    return shape.best > 0 and shape.tail <= GOOD_FIT_NEAR_BEST * shape.best


def _judge_progress(ctx):
    """(verdict, reason) of the loss curve; see `RunContext.progress`."""
    shape = ctx.epoch_train_shape
    if shape is None or shape.n < 4:
        shape = ctx.train_shape
    if shape is None or shape.n < 4:
        return None, ""
    if ctx.first_nonfinite_loss_step is not None:
        return "stuck", "the loss turned NaN/Inf at step %d" % ctx.first_nonfinite_loss_step
    if ctx.too_early:
        return None, ""
    frozen = _frozen_tail(ctx.train)
    if frozen is not None:
        return "stuck", "the training loss stayed at exactly %s for its last %d records" % (
            fmt(frozen[0]),
            frozen[1],
        )
    fit, fit_name = _fit_curve(ctx)
    if (
        ctx.accelerating
        or ctx.descending_to_chance
        or (ctx.falling_steeply and not _validation_at_chance(ctx, fit, fit_name))
    ):
        # Still on its way down; but a training loss that falls while the
        # validation loss never leaves chance level is going nowhere.
        return None, ""
    start = _initial_loss(ctx, shape)
    progress = (start - shape.tail) / abs(start) if start else 0.0
    by_chance = _judge_by_chance(ctx, shape, fit, fit_name, progress)
    if by_chance is not None:
        return by_chance
    if progress < STUCK_PROGRESS:
        return "stuck", "the training loss fell only %s over the run (%s -> %s)" % (
            percent(max(progress, 0.0)),
            fmt(start),
            fmt(shape.tail),
        )
    if (
        ctx.chance_loss is None
        and fit is not None
        and fit.progress >= GOOD_FIT_PROGRESS
        and fit.tail >= 0
        and _ended_near_best(fit)
    ):
        return "good_fit", "the %s loss fell %s (%s -> %s)" % (
            fit_name,
            percent(fit.progress),
            fmt(fit.head),
            fmt(fit.tail),
        )
    return None, ""


def _validation_at_chance(ctx, fit, fit_name):
    """True when the validation loss never got below chance level and is not on its way
    there (see `RunContext.descending_to_chance`)."""
    chance = ctx.chance_loss
    return bool(
        fit_name == "validation"
        and chance is not None
        and chance > 0
        and fit.best > STUCK_CHANCE_SHARE * chance
        and not ctx.descending_to_chance
    )


def _judge_by_chance(ctx, shape, fit, fit_name, progress):
    """(verdict, reason) against the chance level when it is known and decides, else None."""
    chance = ctx.chance_loss
    if chance is None or chance <= 0 or fit is None:
        return None
    # (A loss below zero is no fit: these losses cannot go there with valid labels.)
    good = 0 <= fit.tail < GOOD_FIT_CHANCE_SHARE * chance and _ended_near_best(fit)
    if good and progress >= STUCK_PROGRESS:
        return "good_fit", "the %s loss ended at %s, %s of the chance level %s" % (
            fit_name,
            fmt(fit.tail),
            percent(fit.tail / chance),
            fmt(chance),
        )
    # (A chance level estimated from few labels may lie that much too high.)
    if shape.tail > STUCK_CHANCE_SHARE * chance * (1.0 - ctx.chance_uncertainty):
        return "stuck", "the training loss ended at %s, %s of the chance level %s%s" % (
            fmt(shape.tail),
            percent(shape.tail / chance),
            fmt(chance),
            _uncertainty_words(ctx),
        )
    return None


def _uncertainty_words(ctx):
    if ctx.chance_uncertainty <= 0.1:
        return ""
    return " (the label variance over %d recorded samples: uncertain by about %s)" % (
        ctx.config.label_sample_size,
        percent(ctx.chance_uncertainty),
    )


_KERAS_TAGS = ("epoch_loss", "epoch_learning_rate", "evaluation_loss_vs_iterations")


def _framework(run, config):
    if not config.is_empty:
        return config.framework
    if any(tag in _KERAS_TAGS for tag in list(run.other_scalars) + list(run.validation_scalars)):
        return "keras"
    return None


def build(run, live=False):
    run = sampling.regular_view(run)  # the checks read evenly spaced records
    config = configview.ConfigView(run.config)
    train = curves.training_loss(run)
    train_shape = None
    first_nonfinite = None
    if train is not None:
        steps, values, first_nonfinite = curves.finite_prefix(train)
        train_shape = curves.shape(steps, values)
    val = curves.validation_loss(run)
    val_shape = None
    if val is not None:
        steps, values, _ = curves.finite_prefix(val)
        val_shape = curves.shape(steps, values)
    epoch_train = run.scalars.get(metadata.EPOCH_PREFIX + "loss")
    if epoch_train is not None and not len(epoch_train):
        epoch_train = None
    ctx = RunContext(
        run=run,
        config=config,
        train=train,
        train_shape=train_shape,
        first_nonfinite_loss_step=first_nonfinite,
        val=val,
        val_shape=val_shape,
        chance_loss=curves.chance_level_loss(config) if not config.is_empty else None,
        epoch_train=epoch_train,
        epoch_train_shape=(
            curves.shape(epoch_train.steps, epoch_train.values) if epoch_train is not None else None
        ),
        framework=_framework(run, config),
        live=live,
        chance_uncertainty=curves.chance_level_uncertainty(config) if not config.is_empty else 0.0,
    )
    ctx.progress, ctx.progress_reason = _judge_progress(ctx)
    return ctx
