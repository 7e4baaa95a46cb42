"""The step size: a learning rate too high (spikes, divergence, huge updates) or too low."""

import warnings

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes, curves
from tb_plateau.diagnosis.finding import Finding, fmt, fmt_ratio, percent

# Update-to-weight ratio ||dW|| / ||W|| of one step: healthy near 1e-3
# (published starting point: suspicious below 1e-4 or above 1e-2).
UPDATE_RATIO_HIGH = 1e-2  # suspicious when the loss misbehaves too
UPDATE_RATIO_EXTREME = 1e-1  # 100x the healthy 1e-3: too high on its own
# When the loss curve says the run is stuck, 30x the healthy ratio is enough.
UPDATE_RATIO_EXTREME_STUCK = 3e-2
# In the first records a step that changes the weights by their whole norm
# (healthy Adam warm starts reach ~0.1 on tiny layers) throws away the
# initialization; later records may be quiet because everything died.
EARLY_UPDATE_RATIO_EXTREME = 1.0
EARLY_RECORDS = 3  # records
UPDATE_RATIO_LOW = 1e-4  # suspicious when the loss creeps too
UPDATE_RATIO_LOW_STUCK = 3e-4  # when the curve says the run is stuck
UPDATE_RATIO_TINY = 1e-5  # 100x below the healthy 1e-3

# A spike undoes at least half of the progress made so far, and at least
# doubles the loss relative to the points just before it. Noise near
# convergence (a hard batch at 3x a tiny median) stays below the first bar.
SPIKE_PROGRESS_SHARE = 0.5  # of (start - best)
SPIKE_FACTOR = 2.0  # x the median of the preceding points
SPIKE_WINDOW = 5  # preceding points
MIN_SPIKES = 2  # spikes (one is bad luck; two is a pattern)

# An unrecovered jump: the loss rose this many times from one record to the
# next, to this many times the curve's median, and the run ended this many
# times above its best.
JUMP_FACTOR = 10.0  # x the record before
JUMP_OVER_MEDIAN = 3.0  # x the median of the curve
JUMP_UNRECOVERED = 3.0  # final loss / best loss

# Divergence: the end of the run is clearly worse than its start.
DIVERGENCE_FACTOR = 1.5  # tail / head
# The loss grew this much before it turned NaN: it diverged, it did not hit a log(0).
NAN_AFTER_GROWTH = 10.0  # last finite loss / start

# A learning-rate jump: a recorded rate this many times both the median of the
# rates recorded before it and the record just before (a jump up, not a
# schedule's warm-up or decay), at which the update moved the weights by over
# UPDATE_RATIO_HIGH. Compared with what came before, not with the whole run:
# a rate that jumps and stays high is the run's median afterwards.
LR_SPIKE_FACTOR = 10.0  # x the earlier rates

# Spike then flat, from the loss curve alone: an early loss this many times the
# level the loss then stays at, to within FLAT_AFTER_SPIKE_SPREAD: a huge step
# threw the network where its output no longer depends on the weights.
SPIKE_THEN_FLAT_FACTOR = 10.0  # x the flat level
FLAT_AFTER_SPIKE_SPREAD = 1e-3  # relative spread of the points after the spike
FLAT_AFTER_SPIKE_POINTS = 3  # points

# Creeping: less than this share of the starting loss gained over the run.
CREEPING_PROGRESS = 0.1  # of the starting loss
# A learning rate this small is too low for any common optimizer on its own.
TINY_LEARNING_RATE = 1e-6
# Steps that were of healthy size over the first records (at least this
# update/weight ratio) and shrank later clearly more than the learning rate did
# (this many times more) were made small by the gradient, not by the rate: a
# loss with nothing left to learn (a model at its labels' chance level), or
# units that died.
EARLY_STEPS_HEALTHY = 3e-4  # median early update/weight ratio
SHRANK_BEYOND_RATE = 3.0  # the steps' fall over the rate's fall


def _median_update_ratio(ctx):
    """Median over records of the median over moving layers, and the per-record medians."""
    series = ctx.vector(metadata.UPDATE_RATIO)
    if series is None:
        return None, None
    values = np.where(np.isfinite(series.values), series.values, np.nan)
    # Layers that did not move at all (zero or missing gradient) are another
    # detector's business; the step size is read from the layers that move.
    moving = np.where(values > 0, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no layer moved
        per_record = np.nanmedian(moving, axis=1)
    per_record = per_record[np.isfinite(per_record)]
    if not len(per_record):
        all_zero = np.all(np.nan_to_num(values) == 0)
        return (0.0 if all_zero else None), series
    return float(np.median(per_record)), series


def _early_update_ratios(ctx):
    """(largest, median) over the first records of the per-record median update ratio."""
    series = ctx.vector(metadata.UPDATE_RATIO)
    if series is None:
        return None, None
    medians = [curves.moving_median(row) for row in series.values[:EARLY_RECORDS]]
    medians = [m for m in medians if m is not None]
    if not medians:
        return None, None
    return max(medians), float(np.median(medians))


def _unrecovered_jump(ctx):
    """(step, before, after, final, best) of an order-of-magnitude jump the run never undid.

    A record JUMP_FACTOR times the one before and JUMP_OVER_MEDIAN times the
    curve's median, in a run that ends JUMP_UNRECOVERED times above its best: a
    step threw the weights far off and training did not bring them back. Noise
    near convergence (a hard batch at 20x a tiny loss) stays under the median bar.
    """
    shape = ctx.train_shape
    if shape is None or shape.n < 4:
        return None
    steps, values, _ = curves.finite_prefix(ctx.train)
    if len(values) < 4 or shape.best <= 0 or shape.tail < JUMP_UNRECOVERED * shape.best:
        return None
    median = float(np.median(values))
    jumps = np.flatnonzero(
        (values[1:] >= JUMP_FACTOR * np.maximum(values[:-1], 0))
        & (values[1:] >= JUMP_OVER_MEDIAN * median)
        & (values[:-1] > 0)
    )
    if not len(jumps):
        return None
    i = int(jumps[0]) + 1
    return int(steps[i]), float(values[i - 1]), float(values[i]), shape.tail, shape.best


def _spikes(ctx):
    """Steps of the loss spikes in the finite prefix of the training loss."""
    shape = ctx.train_shape
    if shape is None or shape.n < SPIKE_WINDOW + 2:
        return []
    steps, values, _ = curves.finite_prefix(ctx.train)
    scale = max(shape.head - shape.best, 0.25 * abs(shape.head))
    if len(values) <= SPIKE_WINDOW:
        return []
    # The median of the SPIKE_WINDOW points before each point, all at once.
    before = np.median(np.lib.stride_tricks.sliding_window_view(values[:-1], SPIKE_WINDOW), axis=1)
    after = values[SPIKE_WINDOW:]
    spiking = (after > SPIKE_FACTOR * before) & (after - before > SPIKE_PROGRESS_SHARE * scale)
    return [int(step) for step in steps[SPIKE_WINDOW:][spiking]]


def _learning_rate_spike(ctx):
    """(step, rate, usual rate, previous rate, update ratio) of the first harmful spike, or None."""
    rates = curves.learning_rate(ctx.run)
    updates = ctx.vector(metadata.UPDATE_RATIO)
    if rates is None or updates is None or len(rates) < 3:
        return None
    values = np.asarray(rates.values, float)
    for i in range(1, len(values)):
        earlier = values[:i][np.isfinite(values[:i])]
        usual = float(np.median(earlier)) if len(earlier) else 0.0
        if not (usual > 0 and values[i] >= LR_SPIKE_FACTOR * max(usual, values[i - 1])):
            continue
        step = int(rates.steps[i])
        moved = _largest_update_between(updates, rates.steps[i - 1], _next(rates.steps, i))
        if moved is not None and moved > UPDATE_RATIO_HIGH:
            return step, float(values[i]), usual, float(values[i - 1]), moved
    return None


def _next(steps, i):
    return steps[i + 1] if i + 1 < len(steps) else np.inf


def _largest_update_between(updates, after, before):
    """The largest per-record median update ratio recorded at steps in (after, before), or None.

    The steps a recorded learning rate governs: since the record before it
    (the change happened in between) and until the next one. A recorder need
    not write the rate and the update at the same step (a custom loop may
    record the update one step later).
    """
    rows = np.flatnonzero((updates.steps > after) & (updates.steps < before))
    if len(rows) and not np.isfinite(updates.values[rows[0]]).any():
        # The first step at the new rate threw every weight to Inf/NaN: it moved them
        # further than any ratio says.
        return float("inf")
    moved = [curves.moving_median(updates.values[j]) for j in rows]
    moved = [m for m in moved if m is not None]
    return max(moved) if moved else None


def _spike_then_flat(ctx):
    """(peak step, peak, flat level, points): an early huge loss, then a constant one."""
    curve = ctx.train
    if curve is None:
        return None
    values = np.asarray(curve.values, float)
    if len(values) < FLAT_AFTER_SPIKE_POINTS + 1 or not np.isfinite(values).all():
        return None
    peak = int(np.argmax(values[: max(1, len(values) // 3)]))
    after = values[peak + 1 :]
    if len(after) < FLAT_AFTER_SPIKE_POINTS:
        return None
    level = float(after[-1])
    if not level > 0:
        return None
    points = curves.trailing_run(after, FLAT_AFTER_SPIKE_SPREAD)
    if points < FLAT_AFTER_SPIKE_POINTS or values[peak] < SPIKE_THEN_FLAT_FACTOR * level:
        return None
    return int(curve.steps[peak]), float(values[peak]), level, points


def _divergence(ctx):
    """(kind, number) if the loss ends far above its start or grew into NaN, else None."""
    shape = ctx.train_shape
    if shape is None:
        return None
    if ctx.first_nonfinite_loss_step is not None:
        finite = ctx.train.values[np.isfinite(ctx.train.values)]
        if len(finite) and shape.head > 0 and finite[-1] / shape.head > NAN_AFTER_GROWTH:
            return "nan_after_growth", float(finite[-1] / shape.head)
    if shape.head > 0 and shape.tail > DIVERGENCE_FACTOR * shape.head:
        return "grew", float(shape.tail / shape.head)
    return None


def _step_size(ctx):
    """(ratio, ratio series, early ratio): the update/weight ratio the step size is judged by.

    The median over records, raised to an early ratio where the first steps
    were huge: huge first steps after which most layers never move again
    threw the weights where the units died, and huge steps sustained over the
    first records (one large warm-start step of Adam is not) may leave later
    records quiet because the steps killed what they moved.
    """
    ratio, ratio_series = _median_update_ratio(ctx)
    early_ratio, early_typical = _early_update_ratios(ctx)
    if early_ratio is not None and (
        early_ratio > EARLY_UPDATE_RATIO_EXTREME
        or (early_ratio > UPDATE_RATIO_EXTREME and _mostly_still(ctx))
    ):
        ratio = max(ratio or 0.0, early_ratio)
    elif early_typical is not None and early_typical > UPDATE_RATIO_EXTREME:
        early_ratio = early_typical
        ratio = max(ratio or 0.0, early_typical)
    return ratio, ratio_series, early_ratio


def _curve_symptoms(ctx):
    """(spike steps, divergence, unrecovered jump) of the training loss."""
    return _spikes(ctx), _divergence(ctx), _unrecovered_jump(ctx)


def detect_lr_too_high(ctx):
    """Steps too large: huge update ratios, loss spikes or divergence."""
    spike = _learning_rate_spike(ctx)
    if spike is not None:
        return _spike_finding(ctx, spike)
    ratio, ratio_series, early_ratio = _step_size(ctx)
    spikes, divergence, jump = _curve_symptoms(ctx)
    curve_symptom = len(spikes) >= MIN_SPIKES or divergence is not None or jump is not None
    extreme = ratio is not None and ratio > ctx.threshold(
        UPDATE_RATIO_EXTREME, UPDATE_RATIO_EXTREME_STUCK
    )
    high = ratio is not None and ratio > UPDATE_RATIO_HIGH
    if not (extreme or curve_symptom):
        spike_then_flat = _spike_then_flat(ctx)
        return None if spike_then_flat is None else _spike_then_flat_finding(ctx, spike_then_flat)
    if curve_symptom and ratio is not None and not high:
        # The weights moved at a healthy pace: spikes come from elsewhere
        # (bad batches, exploding gradients), not from the step size.
        return None
    return _too_high_finding(
        ctx, ratio, ratio_series, early_ratio, (spikes, divergence, jump), extreme, high
    )


def _too_high_parts(ctx, ratio, early_ratio, symptoms):
    """The explanation's evidence, one clause each."""
    spikes, divergence, jump = symptoms
    parts = []
    if early_ratio is not None and ratio == early_ratio:
        parts.append(
            "an early step changed the weights by %s times their norm (median over layers;"
            " healthy is about 1e-3)" % fmt(early_ratio)
        )
    elif ratio is not None:
        parts.append(
            "each step changes the weights by %s of their norm (median update/weight ratio;"
            " healthy is about 1e-3: %s larger)" % (fmt(ratio), fmt_ratio(ratio / 1e-3))
        )
    if divergence is not None:
        kind, amount = divergence
        if kind == "grew":
            parts.append(
                "the loss ended %sx higher than it started (%s -> %s)"
                % (fmt(amount), fmt(ctx.train_shape.head), fmt(ctx.train_shape.tail))
            )
        else:
            parts.append(
                "the loss grew %sx from its start, then turned NaN at step %d"
                % (fmt(amount), ctx.first_nonfinite_loss_step)
            )
    if len(spikes) >= MIN_SPIKES:
        parts.append(
            "the loss spiked %d times (first at step %d), each time undoing at least half of"
            " the progress" % (len(spikes), spikes[0])
        )
    if jump is not None:
        step, before, after, final, best = jump
        parts.append(
            "the loss jumped %s from %s to %s at step %d and ended at %s, %s its best (%s)"
            % (
                fmt_ratio(after / before),
                fmt(before),
                fmt(after),
                step,
                fmt(final),
                fmt_ratio(final / best),
                fmt(best),
            )
        )
    return parts


def _too_high_finding(ctx, ratio, ratio_series, early_ratio, symptoms, extreme, high):
    spikes, divergence, jump = symptoms
    curve_symptom = len(spikes) >= MIN_SPIKES or divergence is not None or jump is not None
    moderate = extreme and not ratio > UPDATE_RATIO_EXTREME
    parts = _too_high_parts(ctx, ratio, early_ratio, symptoms)
    learning_rate = _current_learning_rate(ctx)
    explanation = "The learning rate is too high: " + "; ".join(parts) + "."
    if moderate:
        explanation += (
            " That ratio is moderate evidence on its own; it is named because the loss is"
            " stuck (%s)." % ctx.progress_reason
        )
    if learning_rate is not None:
        explanation += " The learning rate was %s" % fmt(learning_rate)
        if ctx.config.optimizer_name:
            explanation += " (%s)" % ctx.config.optimizer_name
        explanation += "."
    first_step = spikes[0] if spikes else (jump[0] if jump is not None else None)
    if divergence is not None and divergence[0] == "nan_after_growth":
        first_step = first_step if first_step is not None else ctx.first_nonfinite_loss_step
    if high and ratio_series is not None:
        # The first record whose steps were already too large.
        too_large = [
            int(step)
            for step, row in zip(ratio_series.steps, ratio_series.values)
            if (curves.moving_median(row) or 0.0) > UPDATE_RATIO_HIGH
        ]
        if too_large and (first_step is None or too_large[0] < first_step):
            first_step = too_large[0]
    severity = (
        causes.CRITICAL
        if divergence is not None or (extreme and curve_symptom)
        else (causes.WARNING)
    )
    confidence = 0.5 + 0.2 * bool(high) + 0.15 * bool(extreme) + 0.15 * bool(curve_symptom)
    confidence -= 0.15 * moderate
    series_tags = [ctx.train.tag] if ctx.train is not None else []
    if ratio_series is not None:
        series_tags.append(metadata.tag(metadata.UPDATE_RATIO))
    fixes = causes.fixes(causes.LR_TOO_HIGH)
    if learning_rate is not None:
        fixes = [
            "optimizer = keras.optimizers.%s(learning_rate=%s)  # 10x lower than now"
            % (ctx.config.optimizer_name or "Adam", fmt(learning_rate / 10))
        ] + fixes[1:]
    return Finding(
        cause=causes.LR_TOO_HIGH,
        severity=severity,
        confidence=confidence,
        title="The learning rate is too high"
        + (" (learning rate %s)" % fmt(learning_rate) if learning_rate is not None else ""),
        explanation=explanation,
        first_step=first_step,
        evidence={
            "series": series_tags,
            "update_ratio": ratio,
            "spike_steps": spikes[:20],
            "divergence": list(divergence) if divergence else None,
            "learning_rate": learning_rate,
            "thresholds": {"update_ratio": UPDATE_RATIO_HIGH, "spike_factor": SPIKE_FACTOR},
            "moderate": bool(moderate),
        },
        fixes=fixes,
    )


def _spike_finding(ctx, spike):
    step, rate, usual, before, moved = spike
    optimizer = ctx.config.optimizer_name or "Adam"
    series_tags = [ctx.train.tag] if ctx.train is not None else []
    series_tags += [metadata.tag(metadata.LEARNING_RATE), metadata.tag(metadata.UPDATE_RATIO)]
    return Finding(
        cause=causes.LR_TOO_HIGH,
        severity=causes.WARNING,
        confidence=0.85,
        title="The learning rate jumped to %s at step %d (%s its usual %s)"
        % (fmt(rate), step, fmt_ratio(rate / usual), fmt(usual)),
        explanation=(
            "The learning rate is too high at one point: at step %d it was %s, %s the run's"
            " usual %s (the record before: %s), and %s. One such step can throw the"
            " weights far from where training had brought them, and kill units or blow up"
            " the gradients that follow."
            % (
                step,
                fmt(rate),
                fmt_ratio(rate / usual),
                fmt(usual),
                fmt(before),
                "that step threw the weights to Inf/NaN"
                if not np.isfinite(moved)
                else "that step changed the weights by %s times their norm (median over"
                " layers; healthy is about 1e-3)" % fmt(moved),
            )
        ),
        first_step=step,
        evidence={
            "series": series_tags,
            "spike_step": step,
            "learning_rate": rate,
            "usual_learning_rate": usual,
            "previous_learning_rate": before,
            "update_ratio": moved,
            "thresholds": {"spike_factor": LR_SPIKE_FACTOR, "update_ratio": UPDATE_RATIO_EXTREME},
        },
        fixes=[
            "# find what set the rate at step %d: a schedule, warm-up or callback"
            " (LearningRateScheduler, a custom callback writing optimizer.learning_rate)" % step,
            "optimizer = keras.optimizers.%s(learning_rate=%s, clipnorm=1.0)"
            "  # the usual rate; clipping bounds any one step" % (optimizer, fmt(usual)),
        ],
    )


def _spike_then_flat_finding(ctx, found):
    peak_step, peak, level, points = found
    classes, distance = curves.nearest_log_integer(level)
    flat_words = "stayed at %s" % fmt(level)
    if classes is not None and distance < 1e-3:
        flat_words += (
            " (ln %d: the loss of uniform predictions over %d classes, if the model has"
            " %d)" % (classes, classes, classes)
        )
    return Finding(
        cause=causes.LR_TOO_HIGH,
        severity=causes.WARNING,
        confidence=0.55 if not ctx.recorded else 0.65,
        title="The loss spiked to %s, then stayed flat at %s" % (fmt(peak), fmt(level)),
        explanation=(
            "The loss reached %s at step %d, %s its later level, then %s for the last %d"
            " points without changing: after a huge early step the network's output no"
            " longer depends on its weights (dead or saturated units), the usual result of a"
            " learning rate far too high."
            % (fmt(peak), peak_step, fmt_ratio(peak / level), flat_words, points)
        )
        + (
            ""
            if ctx.recorded
            else " (From the loss curve alone: recorded with tb_plateau, the update sizes"
            " would show it directly.)"
        ),
        first_step=peak_step,
        evidence={
            "series": [ctx.train.tag],
            "peak_step": peak_step,
            "peak_loss": peak,
            "flat_loss": level,
            "flat_points": points,
            "learning_rate": _current_learning_rate(ctx),
            "thresholds": {
                "factor": SPIKE_THEN_FLAT_FACTOR,
                "spread": FLAT_AFTER_SPIKE_SPREAD,
            },
        },
    )


def _shrank_with_the_gradient(ctx):
    """True when the first records' steps were of healthy size and the last third's fell
    SHRANK_BEYOND_RATE times more than the learning rate did (a schedule's decay shrinks
    them with it)."""
    _, early = _early_update_ratios(ctx)
    series = ctx.vector(metadata.UPDATE_RATIO)
    if early is None or early < EARLY_STEPS_HEALTHY:
        return False
    late = [curves.moving_median(row) for row in series.values[-max(1, len(series) // 3) :]]
    late = [m for m in late if m is not None]
    if not late:
        return False
    steps_fell = early / max(float(np.median(late)), 1e-30)
    rate_fell = 1.0
    rates = curves.learning_rate(ctx.run)
    if rates is not None:
        finite = rates.values[np.isfinite(rates.values) & (rates.values > 0)]
        if len(finite) >= 2:
            rate_fell = max(float(finite[0] / finite[-1]), 1.0)
    return steps_fell >= SHRANK_BEYOND_RATE * rate_fell


def _current_learning_rate(ctx):
    series = curves.learning_rate(ctx.run)
    if series is not None:
        finite = series.values[np.isfinite(series.values)]
        if len(finite):
            return float(np.median(finite))
    return ctx.config.learning_rate


def _gradients_flow(ctx):
    """True unless every layer's gradient is exactly zero (then the step size is moot)."""
    series = ctx.vector(metadata.GRAD_NORM)
    return series is None or bool(np.nanmax(np.nan_to_num(series.values)) > 0)


def _mostly_still(ctx):
    """True when, over the second half of the records, most layers get no update.

    A layer is still at a record when its update is exactly 0, or its gradient
    is (momentum may carry it a little further, but nothing drives it).
    """
    still = None
    for name in (metadata.UPDATE_RATIO, metadata.GRAD_NORM):
        series = ctx.vector(name)
        if series is None or len(series) < 2:
            continue
        late = series.values[len(series) // 2 :]
        zero = np.isfinite(late) & (late == 0)
        fraction = float(np.median(zero.mean(axis=1)))
        still = fraction if still is None else max(still, fraction)
    return still is not None and still > 0.5


def detect_lr_too_low(ctx):
    """Steps too small: tiny update ratios while the loss barely moves."""
    ratio, ratio_series = _median_update_ratio(ctx)
    shape = ctx.train_shape
    learning_rate = _current_learning_rate(ctx)
    if shape is None or not _gradients_flow(ctx):
        return None
    creeping = shape.progress < CREEPING_PROGRESS
    tiny_rate = learning_rate is not None and 0 <= learning_rate <= TINY_LEARNING_RATE
    if ratio is not None and ratio > 0 and not tiny_rate and _mostly_still(ctx):
        # Most layers do not move at all (dead units, zero gradients): the few
        # that still move say nothing about the step size.
        return None
    if ratio is not None and not tiny_rate and _shrank_with_the_gradient(ctx):
        return None
    if ratio is not None:
        low_bar = ctx.threshold(UPDATE_RATIO_LOW, UPDATE_RATIO_LOW_STUCK)
        suspicious = (ratio < low_bar and (creeping or ctx.stuck)) or (
            ratio < UPDATE_RATIO_TINY and shape.progress < 0.5
        )
    else:
        suspicious = creeping and tiny_rate
    if not suspicious:
        return None
    parts = []
    if ratio is not None:
        parts.append(
            "each step changes the weights by only %s of their norm (median update/weight"
            " ratio; healthy is about 1e-3: %s larger)"
            % (fmt(ratio), fmt_ratio(1e-3 / max(ratio, 1e-12)))
        )
    parts.append(
        "over the run the loss fell by only %s (%s -> %s)"
        % (percent(max(shape.progress, 0.0)), fmt(shape.head), fmt(shape.tail))
    )
    explanation = "The learning rate is too low: " + "; ".join(parts) + "."
    if learning_rate is not None:
        explanation += " The learning rate was %s." % fmt(learning_rate)
    fixes = causes.fixes(causes.LR_TOO_LOW)
    if learning_rate:
        fixes[0] = "optimizer = keras.optimizers.%s(learning_rate=%s)  # 10x higher than now" % (
            ctx.config.optimizer_name or "Adam",
            fmt(learning_rate * 10),
        )
    series_tags = [ctx.train.tag]
    if ratio_series is not None:
        series_tags.append(metadata.tag(metadata.UPDATE_RATIO))
    return Finding(
        cause=causes.LR_TOO_LOW,
        severity=causes.CRITICAL if ratio == 0 or learning_rate == 0 else causes.WARNING,
        confidence=0.85 if ratio is not None else 0.6,
        title="The learning rate is too low"
        + (" (learning rate %s)" % fmt(learning_rate) if learning_rate is not None else ""),
        explanation=explanation,
        first_step=int(shape.steps[0]),
        evidence={
            "series": series_tags,
            "update_ratio": ratio,
            "progress": shape.progress,
            "learning_rate": learning_rate,
            "thresholds": {"update_ratio": UPDATE_RATIO_LOW, "progress": CREEPING_PROGRESS},
        },
        fixes=fixes,
    )


DETECTORS = (detect_lr_too_high, detect_lr_too_low)
