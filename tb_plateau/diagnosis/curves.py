"""Which series is the training (and validation) loss, and the shape of a curve.

A run recorded by tb_plateau has the loss of each recorded batch
("plateau/batch_loss") and Keras' epoch logs ("plateau/epoch/loss",
"plateau/epoch/val_loss"). A run written without tb_plateau has whatever its
writer chose: Keras' TensorBoard callback writes "epoch_loss" into "train" and
"validation" runs; PyTorch users write "Loss/train", "train_loss", ...
"""

import dataclasses
import re

import numpy as np

from tb_plateau import metadata

# Fewer batch-loss records than this and the epoch losses describe the run
# better (one record per epoch is already a curve).
MIN_BATCH_POINTS = 8  # records

_VALIDATION_WORDS = re.compile(r"(^|[^a-z])(val|valid|validation|test|eval|dev)([^a-z]|$)")
_TRAIN_WORDS = re.compile(r"(^|[^a-z])(train|training)([^a-z]|$)")


@dataclasses.dataclass
class LossCurve:
    """A loss series and where it comes from."""

    steps: np.ndarray
    values: np.ndarray
    tag: str  # the tag to draw, as the run has it
    per_batch: bool  # True: one batch's loss per point; False: epoch means

    def __len__(self):
        return len(self.steps)


def _curve(series, tag, per_batch):
    return LossCurve(np.asarray(series.steps), np.asarray(series.values, float), tag, per_batch)


def training_loss(run):
    """The run's training loss curve, or None if it has none."""
    batch = run.scalars.get(metadata.BATCH_LOSS)
    epoch = run.scalars.get(metadata.EPOCH_PREFIX + "loss")
    if batch is not None and (len(batch) >= MIN_BATCH_POINTS or epoch is None):
        if len(batch):
            return _curve(batch, metadata.tag(metadata.BATCH_LOSS), True)
    if epoch is not None and len(epoch):
        return _curve(epoch, metadata.tag(metadata.EPOCH_PREFIX + "loss"), False)
    tag = _pick_loss_tag(run.other_scalars, validation=False)
    if tag is None:
        return None
    return _curve(run.other_scalars[tag], tag, per_batch=_looks_per_batch(tag))


def validation_loss(run):
    """The validation loss curve: tb_plateau's, a Keras sibling run's, or a tag's."""
    epoch = run.scalars.get(metadata.EPOCH_PREFIX + "val_loss")
    if epoch is not None and len(epoch):
        return _curve(epoch, metadata.tag(metadata.EPOCH_PREFIX + "val_loss"), False)
    tag = _pick_loss_tag(run.validation_scalars, validation=None)
    if tag is not None:
        return _curve(run.validation_scalars[tag], tag, per_batch=False)
    tag = _pick_loss_tag(run.other_scalars, validation=True)
    if tag is not None:
        return _curve(run.other_scalars[tag], tag, per_batch=False)
    return None


def learning_rate(run):
    """The learning-rate series (tb_plateau's or Keras' "epoch_learning_rate"), or None."""
    series = run.scalars.get(metadata.LEARNING_RATE)
    if series is not None and len(series):
        return series
    for tag, series in run.other_scalars.items():
        if tag.lower().replace("-", "_") in ("epoch_learning_rate", "learning_rate", "lr"):
            return series
    return None


def _looks_per_batch(tag):
    return not tag.lower().startswith("epoch")


def _pick_loss_tag(scalars, validation):
    """The tag most likely to be the loss; `validation` None means either kind."""
    candidates = []
    for tag in scalars:
        lower = tag.lower()
        if "loss" not in lower:
            continue
        is_validation = bool(_VALIDATION_WORDS.search(lower)) or lower.startswith("val_")
        if validation is not None and is_validation != validation:
            continue
        # Prefer the plain loss over its parts ("loss/reconstruction"), Keras'
        # epoch loss, and tags that say "train".
        score = (
            lower in ("epoch_loss", "loss", "train_loss", "loss/train", "val_loss", "loss/val"),
            bool(_TRAIN_WORDS.search(lower)) or is_validation,
            -lower.count("/"),
            -len(lower),
        )
        candidates.append((score, tag))
    if not candidates:
        return None
    return max(candidates)[1]


@dataclasses.dataclass
class CurveShape:
    """Robust summary numbers of a loss curve (its finite prefix).

    head/tail: median of the first/last tenth of the points. best: the lowest
    point of the smoothed curve. progress: (head - tail) / |head|.
    last_fifth_share: the fraction of the whole fall made in the last fifth
    of the run (about 0.2 for a straight line, near 0 once converged).
    """

    n: int
    head: float
    tail: float
    best: float
    best_step: int
    progress: float
    last_fifth_share: float
    last_fifth_drop: float  # relative fall over the last fifth: (L(80%) - tail) / tail
    smoothed: np.ndarray
    steps: np.ndarray
    relative_noise: float  # median |point - smoothed| / |smoothed|


def finite_prefix(curve):
    """The points before the first NaN/Inf, and the step of that first one (or None)."""
    finite = np.isfinite(curve.values)
    if finite.all():
        return curve.steps, curve.values, None
    first_bad = int(np.argmin(finite))
    return curve.steps[:first_bad], curve.values[:first_bad], int(curve.steps[first_bad])


# Above this many points the rolling median is computed exactly at this many
# evenly spaced centres and interpolated between them. The smoothing window is
# a twentieth of the curve, so neighbouring centres share over 97% of their
# window and the curve between them is the interpolation's to within noise;
# evaluating every point would cost n x n/20 (minutes for a million steps).
ROLLING_MEDIAN_CENTRES = 2000  # points


# Windows taken at once by `_medians_at`: bounds its temporary to ~16 MB.
_MEDIAN_BATCH_VALUES = 2_000_000
# Wider windows are taken one call each: the call's overhead no longer counts,
# and a batch would copy every window first.
_MEDIAN_BATCH_MAX_WINDOW = 2001


def _medians_at(values, centres, half):
    """Median of values[c - half : c + half + 1] (clipped at the ends) for each centre."""
    n = len(values)
    out = np.empty(len(centres))
    full = (centres >= half) & (centres + half < n)
    if 2 * half + 1 > _MEDIAN_BATCH_MAX_WINDOW:
        full[:] = False
    for i in np.flatnonzero(~full):  # the ends (shorter windows) and wide windows
        c = centres[i]
        out[i] = np.median(values[max(0, c - half) : c + half + 1])
    inner = np.flatnonzero(full)
    if len(inner):
        windows = np.lib.stride_tricks.sliding_window_view(values, 2 * half + 1)
        batch = max(1, _MEDIAN_BATCH_VALUES // (2 * half + 1))
        for start in range(0, len(inner), batch):
            chosen = inner[start : start + batch]
            out[chosen] = np.median(windows[centres[chosen] - half], axis=1)
    return out


def rolling_median(values, window):
    """Centered rolling median; the window shrinks at the ends.

    Exact up to `ROLLING_MEDIAN_CENTRES` points; beyond, exact at that many
    evenly spaced centres (the ends included) and interpolated between them,
    so its cost grows linearly with the number of points.
    """
    values = np.asarray(values, float)
    n = len(values)
    if window <= 1 or n < 3:
        return values.copy()
    half = window // 2
    if n <= ROLLING_MEDIAN_CENTRES:
        return _medians_at(values, np.arange(n), half)
    centres = np.unique(np.linspace(0, n - 1, ROLLING_MEDIAN_CENTRES).round().astype(np.int64))
    return np.interp(np.arange(n), centres, _medians_at(values, centres, half))


def shape(steps, values):
    """A `CurveShape`, or None for fewer than 3 points."""
    values = np.asarray(values, float)
    n = len(values)
    if n < 3:
        return None
    tenth = max(1, n // 10)
    head = float(np.median(values[:tenth]))
    tail = float(np.median(values[-tenth:]))
    smoothed = rolling_median(values, max(1, n // 20) | 1)
    best_index = int(np.argmin(smoothed))
    fall = head - tail
    # The level at four fifths is read as the head and the tail are, a median over a tenth
    # of the points: one point of the lightly smoothed curve still moves with the batches
    # (records that meet the same few batches in turn repeat their losses).
    four_fifths = min(n - 1, int(round(0.8 * (n - 1))))
    around = values[max(0, four_fifths - tenth // 2) : four_fifths + tenth // 2 + 1]
    at_four_fifths = float(np.median(around))
    share = (at_four_fifths - tail) / fall if fall > 0 else 0.0
    scale = np.maximum(np.abs(smoothed), 1e-12)
    return CurveShape(
        n=n,
        head=head,
        tail=tail,
        best=float(smoothed[best_index]),
        best_step=int(np.asarray(steps)[best_index]),
        progress=fall / abs(head) if head != 0 else 0.0,
        last_fifth_share=float(share),
        last_fifth_drop=(at_four_fifths - tail) / abs(tail) if tail != 0 else 0.0,
        smoothed=smoothed,
        steps=np.asarray(steps),
        relative_noise=float(np.median(np.abs(values - smoothed) / scale)),
    )


def chance_level_loss(config_view):
    """What the loss is when the model predicts the label distribution only.

    Cross-entropy: the entropy of the class frequencies (ln C when balanced).
    Squared error: the variance of the labels. None when unknown.
    """
    if config_view is None:
        return None
    if config_view.is_cross_entropy:
        balance = config_view.class_frequencies
        if balance is not None and len(balance) >= 2:
            p = np.asarray(balance, float)
            p = p[p > 0] / p.sum()
            if config_view.is_binary_cross_entropy and len(p) == 2:
                return float(-(p * np.log(p)).sum())
            return float(-(p * np.log(p)).sum())
        classes = config_view.num_classes
        if classes:
            return float(np.log(classes)) if classes > 1 else float(np.log(2))
        return None
    if config_view.is_squared_error:
        std = config_view.label_std
        if std is not None:
            return float(std) ** 2
    return None


def moving_median(values):
    """The median of the finite, positive entries (the layers that moved, in a row of update
    ratios), or None."""
    values = np.asarray(values, float)
    moving = values[np.isfinite(values) & (values > 0)]
    return float(np.median(moving)) if len(moving) else None


def chance_level_uncertainty(config_view):
    """The relative standard error of a squared-error chance level, else 0.

    The chance level is the mean variance of the label entries over the n recorded samples.
    For one entry per sample that sample variance is uncertain by sqrt(2 / (n - 1)) (a
    quarter for one batch of 32). Entries of one sample that vary together add little
    evidence: the sum of the variances is uncertain by that much times sqrt(sum of the
    squared principal shares) (the targets' spectrum: 1 for one direction, 1/sqrt(k) for k
    independent entries alike). Without the spectrum, the entries are taken as independent.
    """
    if config_view is None or not config_view.is_squared_error:
        return 0.0
    samples = config_view.label_sample_size
    if not samples or samples < 2:
        return 0.0
    one_entry = float(np.sqrt(2.0 / (samples - 1)))
    entries = config_view.label_sample_entries or 1
    if entries <= 1:
        return one_entry
    shares = config_view.label_principal_shares
    if shares is None:
        return one_entry / float(np.sqrt(entries))
    rest = max(0.0, 1.0 - float(np.sum(shares)))
    spread_over = max(1, entries - len(shares))
    return one_entry * float(np.sqrt(np.sum(shares**2) + rest**2 / spread_over))


def trailing_run(values, spread):
    """How many of the last `values` lie within `spread` (relative) of the last one."""
    values = np.asarray(values, float)
    if not len(values):
        return 0
    level = values[-1]
    close = np.abs(values - level) <= spread * abs(level)
    return len(values) if close.all() else int(np.argmin(close[::-1]))


def nearest_log_integer(value, max_classes=1000):
    """(C, relative distance) for the C whose ln C is nearest `value`."""
    if not np.isfinite(value) or value <= 0.3:
        return None, float("inf")
    # Clamp before exp: a loss of 1e4 would overflow it (and means no chance level).
    classes = int(round(np.exp(min(value, np.log(max_classes) + 1.0))))
    classes = min(max(classes, 2), max_classes)
    target = np.log(classes)
    return classes, abs(value - target) / target
