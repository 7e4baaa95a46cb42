"""Numerics: where and when NaN or Inf first appeared."""

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes
from tb_plateau.diagnosis.finding import Finding, fmt

# Sources in the order data flows through a step: at the same step, the
# earliest source is where the NaN came from, the later ones caught it.
_FLOW_ORDER = metadata.NUMERICS_SOURCES  # inputs, labels, loss, gradients, weights, activations
DATA_SOURCES = ("inputs", "labels")

# Per-layer counts, by the source they belong to.
_LAYER_VECTORS = (
    ("activations", metadata.ACT_NONFINITE),
    ("gradients", metadata.GRAD_NONFINITE),
    ("weights", metadata.WEIGHT_NONFINITE),
)


def _first_bad_record(series):
    """(row index, counts at that row) of the first record with a NaN/Inf count > 0.

    A count that is itself NaN was not measured at that step (see `metadata.NONFINITE`).
    """
    bad = np.nan_to_num(series.values, nan=0.0, posinf=1.0) > 0
    rows = np.flatnonzero(bad.any(axis=1))
    if not len(rows):
        return None, None
    return int(rows[0]), series.values[rows[0]]


def _source_at_first_step(ctx):
    """(step, source, count) from the per-source counts, or Nones."""
    series = ctx.vector(metadata.NONFINITE)
    if series is None:
        return None, None, None
    row, counts = _first_bad_record(series)
    if row is None:
        return None, None, None
    by_source = dict(zip(series.labels, counts))
    for source in _FLOW_ORDER:
        if by_source.get(source, 0) > 0:
            return int(series.steps[row]), source, by_source[source]
    counts = np.nan_to_num(counts, nan=0.0)
    return int(series.steps[row]), series.labels[int(np.argmax(counts))], float(np.max(counts))


def _first_layer_with_nonfinite(ctx, vector_name):
    """(step, layer, count) of the first layer with NaN/Inf in this per-layer count."""
    series = ctx.vector(vector_name)
    if series is None:
        return None, None, None
    row, counts = _first_bad_record(series)
    if row is None:
        return None, None, None
    column = int(np.flatnonzero(np.nan_to_num(counts, nan=0.0) > 0)[0])
    return int(series.steps[row]), series.labels[column], float(counts[column])


def _loss_before_nonfinite(ctx):
    """How much the finite loss grew from its start to its last finite point."""
    if ctx.train_shape is None:
        return None
    values = ctx.train.values[np.isfinite(ctx.train.values)]
    if not len(values) or ctx.train_shape.head <= 0:
        return None
    return float(values[-1] / ctx.train_shape.head)


def _what_broke(ctx, source, growth):
    """Words on where the NaN/Inf came from: the data, a loss that grew, or a log of zero."""
    if source in DATA_SOURCES:
        return (
            " They come from the training data itself, so every later value is"
            " poisoned: clean the data before training."
        )
    if growth is not None and growth > 1:
        return " The loss had grown %sx from its start before it broke." % fmt(growth)
    if growth is not None:
        return (
            " The loss was %s before it broke, without growing first: look for a log,"
            " division or square root of zero in the loss or a custom layer."
            % fmt(ctx.train.values[np.isfinite(ctx.train.values)][-1])
        )
    return ""


def detect_nonfinite(ctx):
    """NaN/Inf anywhere: the step, the first source in data-flow order, and the layer."""
    step, source, count = _source_at_first_step(ctx)
    layer = None
    layer_step = None
    series_tags = [metadata.tag(metadata.NONFINITE)] if step is not None else []
    for layer_source, vector_name in _LAYER_VECTORS:
        s, name, _ = _first_layer_with_nonfinite(ctx, vector_name)
        if s is not None and (layer_step is None or s < layer_step):
            layer_step, layer = s, name
            series_tags.append(metadata.tag(vector_name))
            if step is None:
                step, source = s, layer_source
    loss_step = ctx.first_nonfinite_loss_step
    if loss_step is not None:
        series_tags.insert(0, ctx.train.tag)
        if step is None or loss_step < step:
            step, source, count = loss_step, "loss", None
    if step is None:
        return None

    growth = _loss_before_nonfinite(ctx)
    where = "the %s" % source
    if layer is not None and source not in DATA_SOURCES and source != "loss":
        where += " of layer %s" % layer
    explanation = "NaN/Inf first appeared at step %d, in %s" % (step, where)
    if count:
        explanation += " (%s values)" % fmt(count)
    explanation += "." + _what_broke(ctx, source, growth)
    if source in DATA_SOURCES:
        fixes = causes.fixes(causes.NONFINITE)[:1] + causes.fixes(causes.NONFINITE)[3:]
    else:
        fixes = causes.fixes(causes.NONFINITE)[1:]
    return Finding(
        cause=causes.NONFINITE,
        severity=causes.CRITICAL,
        confidence=1.0,
        title="NaN/Inf appeared in the %s at step %d" % (source, step),
        explanation=explanation,
        first_step=step,
        layers=[layer] if layer else [],
        evidence={
            "series": series_tags,
            "source": source,
            "step": step,
            "layer": layer,
            "loss_growth_before": growth,
        },
        fixes=fixes,
    )


DETECTORS = (detect_nonfinite,)
