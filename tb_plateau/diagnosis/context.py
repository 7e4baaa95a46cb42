"""What every detector reads: the run, its loss curves and its configuration, prepared once."""

import dataclasses
from typing import Optional

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import configview, curves

# Training and validation losses this close count as equal (published starting
# point for overfitting: (val - train) / train > 0.1).
TRAIN_VAL_GAP = 0.1  # relative


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


def _finite_tail(values, points=2):
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    return float(np.mean(finite[-points:]))


def build(run):
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
    return RunContext(
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
    )
