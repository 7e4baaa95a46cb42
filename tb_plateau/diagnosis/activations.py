"""Activations: dead ReLU units and saturated sigmoid/tanh units."""

import warnings

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes
from tb_plateau.diagnosis.finding import Finding, fmt, percent

# A layer is flagged when more than half of its units are dead (published
# starting point: flag a layer above 50% dead).
DEAD_LAYER_FRACTION = 0.5  # of the layer's units
# When the loss curve says the run is stuck, a third of a layer dead is enough
# to name (moderate evidence, said as such).
DEAD_LAYER_FRACTION_STUCK = 0.3  # of the layer's units
# A whole layer dead (all but a few units) blocks every gradient to the layers
# before it: training cannot succeed.
DEAD_LAYER_CRITICAL = 0.95  # of the layer's units
# When the units died: the first record at which the layer was this share of
# the way to its final dead fraction. A layer that idles at a third dead for
# most of a run and then dies at once died then, not when it first passed the bar.
DEAD_ONSET_SHARE = 0.8  # of the final dead fraction

# Saturation: flag a layer above 50% saturated (published starting point); the
# recorder counts sigmoid outputs beyond 0.03/0.97 and |tanh| > 0.97.
SATURATED_LAYER_FRACTION = 0.5  # of the layer's outputs
SATURATED_LAYER_CRITICAL = 0.9  # of the layer's outputs
SATURATED_LAYER_FRACTION_STUCK = 0.3  # when the loss curve says the run is stuck

# Only these pass exactly zero gradient below zero; leaky/ELU/GELU units that
# never fire still pass some.
DEAD_CAPABLE = metadata.DEAD_CAPABLE
SATURATING = metadata.SATURATING

# The share of the run's records that describe its current state.
_LATE_SHARE = 1.0 / 3.0


def _activation_table(ctx, vector_name):
    series = ctx.vector(vector_name)
    if series is None:
        return None, []
    names = series.header.get("activations") or []
    if len(names) != len(series.labels):
        names = [""] * len(series.labels)
    return series, [str(name).lower() for name in names]


def _late_median(series):
    """Per-layer median over the last third of the records (NaN where a layer has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # layers of another family are all NaN
        return np.nanmedian(series.values[_late_rows(series)], axis=0)


def _late_rows(series):
    count = len(series)
    return slice(count - max(1, int(np.ceil(count * _LATE_SHARE))), count)


def output_layer_label(ctx, series):
    """The output layer's label among the activation layers, or None if it has no activation."""
    output = ctx.config.output_layer
    if output is not None:
        for label in series.labels:
            if label == output.get("name") or label.split("/")[-1] == output.get("name"):
                return label
        return None
    return series.labels[-1] if series.labels else None


def detect_dead_relu(ctx):
    """ReLU layers whose units never activate over the recorded batch."""
    series, names = _activation_table(ctx, metadata.ACT_DEAD_FRACTION)
    if series is None:
        return None
    late = _late_median(series)
    bar = ctx.threshold(DEAD_LAYER_FRACTION, DEAD_LAYER_FRACTION_STUCK)
    flagged = [
        i for i, name in enumerate(names) if name.split(":")[-1] in DEAD_CAPABLE and late[i] > bar
    ]
    if not flagged:
        return None
    worst = max(flagged, key=lambda i: late[i])
    if ctx.too_early and late[worst] < DEAD_LAYER_CRITICAL:
        # Within the first epoch a partly dead layer is still changing: units whose
        # inputs still move come back. A layer all but entirely dead is named at once.
        return None
    onset_level = max(bar, DEAD_ONSET_SHARE * float(late[worst]))
    onset_rows = np.flatnonzero(series.values[:, worst] >= onset_level)
    onset_step = int(series.steps[onset_rows[0]]) if len(onset_rows) else None
    at_start = float(series.values[0, worst])
    # Dead from the first record only when the layer was already as dead as it ended up
    # (DEAD_ONSET_SHARE of it): a layer partly off at initialization that dies later died
    # then, of what happened then.
    at_init = at_start >= onset_level
    # The most of any flagged layer dead at the first record: a layer all but
    # entirely dead passes no signal at all; a partly dead one still does.
    initial_dead = float(np.nanmax(series.values[0, flagged]))
    output_name = output_layer_label(ctx, series)
    details = ", ".join("%s %s" % (series.labels[i], percent(late[i])) for i in flagged[:6])
    explanation = "Dead ReLU units (never above zero over the recorded batch): %s." % details
    if at_init:
        explanation += " Layer %s was %s dead from the first record (step %d)" % (
            series.labels[worst],
            percent(at_start),
            int(series.steps[0]),
        )
        explanation += ": the initialization or the scale of its inputs keeps it off."
    else:
        explanation += (
            " Layer %s was %s dead at the first record and reached %s at step %d: the units"
            " died during training, typically after a too-large update."
            % (series.labels[worst], percent(at_start), percent(onset_level), onset_step)
        )
    explanation += " Dead units pass no gradient, so they never recover."
    moderate = late[worst] <= DEAD_LAYER_FRACTION
    if moderate:
        explanation += (
            " Under half of the layer is dead, moderate evidence on its own; it is named"
            " because the loss is stuck (%s)." % ctx.progress_reason
        )
    if series.labels[worst] == output_name:
        explanation += " It is the output layer: a ReLU output cannot predict below zero."
    return Finding(
        cause=causes.DEAD_RELU,
        severity=causes.CRITICAL if late[worst] >= DEAD_LAYER_CRITICAL else causes.WARNING,
        confidence=min(0.95, 0.6 + float(late[worst]) * 0.35) - 0.15 * moderate,
        title="%s of layer %s's ReLU units are dead" % (percent(late[worst]), series.labels[worst]),
        explanation=explanation,
        first_step=onset_step,
        layers=[series.labels[i] for i in flagged],
        evidence={
            "series": [metadata.tag(metadata.ACT_DEAD_FRACTION)],
            "dead_fraction": {series.labels[i]: float(late[i]) for i in flagged},
            "at_init": bool(at_init),
            "initial_dead_fraction": initial_dead,
            "onset_step": onset_step,
            "output_layer": series.labels[worst] == output_name,
            "threshold": bar,
            "moderate": bool(moderate),
        },
    )


# Weights whose root mean square exceeds this are wider than Glorot's
# initialization makes any layer (RMS sqrt(2 / (fan_in + fan_out)) <= 1): a
# sigmoid/tanh layer so initialized sums inputs into its saturated range. The
# evidence for saturation inside recurrent cells, whose gates are not recorded.
SATURATING_WEIGHT_RMS = 2.0
# ... read at the first record only when that step barely moved the weights
# (a huge first step is the step size's evidence, not the initialization's).
FIRST_STEP_UPDATE_RATIO = 0.1


def initial_weight_rms(ctx):
    """[(label, layer, RMS of its weights at the first record)] of the recorded layers whose
    parameter count the configuration gives."""
    norms = ctx.vector(metadata.WEIGHT_NORM)
    if norms is None or not ctx.has_config:
        return []
    found = []
    for i, label in enumerate(norms.labels):
        layer = ctx.config.layer_for_label(label) or {}
        params = layer.get("params")
        if isinstance(params, int) and params > 0:
            found.append((label, layer, float(norms.values[0, i]) / np.sqrt(params)))
    return found


def _too_wide_saturating_layers(ctx):
    """[(layer, weight RMS)] of sigmoid/tanh layers initialized wider than Glorot allows."""
    updates = ctx.vector(metadata.UPDATE_RATIO)
    moved = {}
    if updates is not None:
        moved = dict(zip(updates.labels, np.nan_to_num(updates.values[0], nan=0.0)))
    found = []
    for label, layer, rms in initial_weight_rms(ctx):
        if str(layer.get("activation") or "").lower() not in SATURATING:
            continue
        if rms > SATURATING_WEIGHT_RMS and moved.get(label, 0.0) < FIRST_STEP_UPDATE_RATIO:
            found.append((label, rms))
    return found


def _too_wide_finding(ctx, found):
    series = ctx.vector(metadata.WEIGHT_NORM)
    details = ", ".join("%s %s" % (label, fmt(rms)) for label, rms in found[:6])
    return Finding(
        cause=causes.SATURATED_ACTIVATIONS,
        severity=causes.WARNING,
        confidence=0.7,
        title="Sigmoid/tanh layer %s initialized too wide to leave saturation" % found[0][0],
        explanation=(
            "At the first record (step %d) the weights of sigmoid/tanh layers have a root mean"
            " square of %s: beyond what Glorot initialization gives any layer (at most 1)."
            " Each unit then sums its inputs far into the flat ends of its activation, where"
            " almost no gradient passes (inside a recurrent cell, its gates too)."
            % (int(series.steps[0]), details)
            + (" The training: %s." % ctx.progress_reason if ctx.progress_reason else "")
        ),
        first_step=int(series.steps[0]),
        layers=[label for label, _ in found],
        evidence={
            "series": [metadata.tag(metadata.WEIGHT_NORM)],
            "weight_rms": {label: rms for label, rms in found},
            "at_init": True,
            "threshold": SATURATING_WEIGHT_RMS,
            "fed_by": _layers_feeding(ctx.config, [label for label, _ in found]),
        },
    )


def _layers_feeding(config, labels):
    """Names (and paths) of the computing layers right before the layers `labels` name: the
    gradient they receive passes back through those layers' weights."""
    layers = config.computing_layers
    feeding = []
    for label in labels:
        layer = config.layer_for_label(label)
        at = next((i for i, candidate in enumerate(layers) if candidate is layer), None)
        if at:
            before = layers[at - 1]
            feeding += [n for n in (before.get("name"), before.get("path")) if n]
    return list(dict.fromkeys(feeding))


def detect_saturated_activations(ctx):
    """Hidden sigmoid/tanh layers whose outputs sit at their limits, or whose weights put
    them there from the start."""
    found = _saturated_outputs(ctx)
    if found is not None:
        return found
    too_wide = _too_wide_saturating_layers(ctx)
    return _too_wide_finding(ctx, too_wide) if too_wide else None


def _saturated_outputs(ctx):
    """Hidden sigmoid/tanh layers whose recorded outputs sit at their limits."""
    series, names = _activation_table(ctx, metadata.ACT_SATURATED_FRACTION)
    if series is None:
        return None
    output_name = output_layer_label(ctx, series)
    late = _late_median(series)
    bar = ctx.threshold(SATURATED_LAYER_FRACTION, SATURATED_LAYER_FRACTION_STUCK)
    # A saturated output layer means confident predictions, which is what
    # training aims for; only hidden layers lose their gradient to it.
    flagged = [
        i
        for i, name in enumerate(names)
        if name.split(":")[-1] in SATURATING and series.labels[i] != output_name and late[i] > bar
    ]
    if not flagged:
        return None
    worst = max(flagged, key=lambda i: late[i])
    onset_rows = np.flatnonzero(series.values[:, worst] > bar)
    onset_step = int(series.steps[onset_rows[0]]) if len(onset_rows) else None
    details = ", ".join(
        "%s (%s) %s" % (series.labels[i], names[i], percent(late[i])) for i in flagged[:6]
    )
    mean_series = ctx.vector(metadata.ACT_MEAN)
    explanation = (
        "Saturated units (sigmoid beyond 0.03/0.97, |tanh| beyond 0.97) in hidden layers: %s."
        " There the derivative is under 0.03, so almost no gradient flows through them"
        " to the layers before." % details
    )
    moderate = late[worst] <= SATURATED_LAYER_FRACTION
    if moderate:
        explanation += (
            " Under half of the layer is saturated, moderate evidence on its own; it is named"
            " because the loss is stuck (%s)." % ctx.progress_reason
        )
    if float(series.values[0, worst]) > bar:
        explanation += " Layer %s was already %s saturated at the first record (step %d):" % (
            series.labels[worst],
            percent(series.values[0, worst]),
            int(series.steps[0]),
        )
        explanation += " its weights or inputs are too large for the activation."
    return Finding(
        cause=causes.SATURATED_ACTIVATIONS,
        severity=causes.CRITICAL if late[worst] >= SATURATED_LAYER_CRITICAL else causes.WARNING,
        confidence=min(0.95, 0.55 + float(late[worst]) * 0.4) - 0.15 * moderate,
        title="%s of layer %s's %s units are saturated"
        % (percent(late[worst]), series.labels[worst], names[worst]),
        explanation=explanation,
        first_step=onset_step,
        layers=[series.labels[i] for i in flagged],
        evidence={
            "series": [metadata.tag(metadata.ACT_SATURATED_FRACTION)]
            + ([metadata.tag(metadata.ACT_MEAN)] if mean_series is not None else []),
            "saturated_fraction": {series.labels[i]: float(late[i]) for i in flagged},
            "at_init": bool(float(series.values[0, worst]) > bar),
            "fed_by": _layers_feeding(ctx.config, [series.labels[i] for i in flagged]),
            "threshold": bar,
            "moderate": bool(moderate),
        },
    )


DETECTORS = (detect_dead_relu, detect_saturated_activations)
