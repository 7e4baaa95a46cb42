"""Statistics: pure TensorFlow reductions of tensors, used inside the traced train step,
and the numpy summaries of weights and data taken off it."""

import logging

import numpy as np
import tensorflow as tf

from tb_plateau import metadata
from tb_plateau.summaries.record import (  # noqa: F401 - the Keras side's names for them
    _ACT_FIELDS,
    _FEATURE_FIELDS,
    _LABEL_FIELDS,
    _LABEL_VECTOR,
    _MAX_CLASSES,
    _MAX_FEATURES,
    _MAX_PRINCIPAL_FEATURES,
    _OUTPUT_FIELDS,
    _PRINCIPAL_SHARES,
    _STEP_FIELDS,
    _data_summary,
)

logger = logging.getLogger("tb_plateau")


# Activation families and the saturation margin: the contract in `metadata`.
RELU_FAMILY = metadata.RELU_FAMILY
SIGMOID_FAMILY = metadata.SIGMOID_FAMILY
TANH_FAMILY = metadata.TANH_FAMILY
SOFTMAX_FAMILY = metadata.SOFTMAX_FAMILY
SATURATION_MARGIN = metadata.SATURATION_MARGIN


# --------------------------------------------------------------------------
# Statistics: pure functions of tensors, used inside the traced train step
# (callback) and eagerly (Recorder).


def _flat_tensors(structure):
    return [t for t in tf.nest.flatten(structure) if t is not None]


def _float32(tensor):
    tensor = tf.convert_to_tensor(tensor)
    if tensor.dtype == tf.float32:
        return tensor
    return tf.cast(tensor, tf.float32)


def _nonfinite_count(tensors):
    """NaN/Inf entries over floating tensors (integer tensors cannot hold them)."""
    total = tf.constant(0.0)
    for t in tensors:
        t = tf.convert_to_tensor(t)
        if t.dtype.is_floating:
            total += tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(t)), tf.float32))
    return total


def _finite_only(t):
    return tf.where(tf.math.is_finite(t), t, tf.zeros_like(t))


def _gradient_stats(grads):
    """[norm, exactly-zero entries, NaN/Inf entries] of one layer's gradients."""
    if not grads:
        return tf.constant([0.0, 0.0, 0.0])
    sumsq = tf.constant(0.0)
    zeros = tf.constant(0.0)
    for g in grads:
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        g = _float32(g)
        sumsq += tf.reduce_sum(tf.square(g))
        zeros += tf.reduce_sum(tf.cast(tf.equal(g, 0.0), tf.float32))
    return tf.stack([tf.sqrt(sumsq), zeros, _nonfinite_count(grads)])


def _unit_axis(layer, rank):
    """The axis of `layer`'s units (channels) in an output of `rank` dimensions."""
    if rank >= 3 and getattr(layer, "data_format", None) == "channels_first":
        # Channels come just before the spatial axes; a ConvLSTM's or a
        # TimeDistributed convolution's time axis comes before them.
        kernel_size = getattr(layer, "kernel_size", None)
        spatial = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else rank - 2
        return max(1, rank - 1 - spatial)
    return rank - 1


def _activation_stats(output, activation, unit_axis):
    """[mean, std, dead fraction, saturated fraction, NaN/Inf entries] of a layer's output.

    Dead: a ReLU-family unit that is never above zero over the batch (for a
    convolution, over the batch and all positions). Saturated: the fraction of
    outputs within `SATURATION_MARGIN` of a sigmoid/tanh limit, or of softmax
    rows whose largest probability is. Entries that do not apply are NaN.
    """
    y = _float32(output)
    nonfinite = _nonfinite_count([y])
    y_finite = _finite_only(y)
    mean = tf.reduce_mean(y_finite)
    std = tf.math.reduce_std(y_finite)
    nan = tf.constant(float("nan"))
    dead = nan
    saturated = nan
    rank = y.shape.rank or 0
    if activation in RELU_FAMILY and rank >= 1:
        other_axes = [a for a in range(rank) if a != unit_axis]
        unit_max = tf.reduce_max(y, axis=other_axes) if other_axes else y
        dead = tf.reduce_mean(tf.cast(unit_max <= 0.0, tf.float32))
    elif activation in SIGMOID_FAMILY:
        low, high = SATURATION_MARGIN, 1.0 - SATURATION_MARGIN
        saturated = tf.reduce_mean(tf.cast((y < low) | (y > high), tf.float32))
    elif activation in TANH_FAMILY:
        saturated = tf.reduce_mean(tf.cast(tf.abs(y) > 1.0 - SATURATION_MARGIN, tf.float32))
    elif activation in SOFTMAX_FAMILY and rank >= 1:
        probs = tf.exp(y) if activation == "log_softmax" else y
        row_max = tf.reduce_max(probs, axis=unit_axis)
        saturated = tf.reduce_mean(tf.cast(row_max > 1.0 - SATURATION_MARGIN, tf.float32))
    return tf.stack([mean, std, dead, saturated, nonfinite])


def _output_stats(y_pred):
    """[min, max, mean, row-sum min, row-sum max, row-sum mean] of one output."""
    y = _finite_only(_float32(y_pred))
    if (y.shape.rank or 0) >= 1:
        row_sums = tf.reduce_sum(y, axis=-1)
    else:
        row_sums = y
    return tf.stack(
        [
            tf.reduce_min(y),
            tf.reduce_max(y),
            tf.reduce_mean(y),
            tf.reduce_min(row_sums),
            tf.reduce_max(row_sums),
            tf.reduce_mean(row_sums),
        ]
    )


def _feature_stats(x, num_features):
    """[num_features, 4] mean/std/min/max per feature (the last axis) of one input.

    With `num_features == 1`, statistics over all entries.
    """
    x = _finite_only(_float32(x))
    if num_features == 1 or (x.shape.rank or 0) < 2 or x.shape[-1] != num_features:
        flat = tf.reshape(x, [-1, 1])
        if num_features != 1:
            flat = tf.tile(flat, [1, num_features])
    else:
        flat = tf.reshape(x, [-1, num_features])
    return tf.stack(
        [
            tf.reduce_mean(flat, axis=0),
            tf.math.reduce_std(flat, axis=0),
            tf.reduce_min(flat, axis=0),
            tf.reduce_max(flat, axis=0),
        ],
        axis=1,
    )


def _label_stats(y, num_classes, inputs=()):
    """(summary [_LABEL_VECTOR], class counts [num_classes]) of one label tensor.

    `input_match_fraction`: the largest share of label entries equal to the
    same entries of an input of the same shape (1 for an autoencoder's
    `fit(x, x)`: its targets are its inputs, so they cannot lack signal).

    Class counts: for one-hot or probability labels (last axis == classes) the
    column sums; for integer labels the count of each id in [0, classes); for
    a single-unit output the counts of labels below and at/above 0.5.
    """
    match = _input_match_fraction(y, inputs)
    y = _finite_only(_float32(y))
    rank = y.shape.rank or 0
    flat = tf.reshape(y, [-1])
    integral = tf.reduce_mean(tf.cast(tf.equal(flat, tf.round(flat)), tf.float32))
    unit = tf.reduce_mean(tf.cast((flat >= 0.0) & (flat <= 1.0), tf.float32))
    last = y.shape[-1] if rank >= 2 else None
    if rank >= 2 and last is not None and last > 1:
        row_sums = tf.reduce_sum(y, axis=-1)
        binary = tf.reduce_all(tf.equal(y, 0.0) | tf.equal(y, 1.0), axis=-1)
        one_hot_rows = tf.reduce_mean(tf.cast(binary & tf.equal(row_sums, 1.0), tf.float32))
        row_sum_mean = tf.reduce_mean(row_sums)
    else:
        one_hot_rows = tf.constant(0.0)
        row_sum_mean = tf.reduce_mean(flat)
    summary = tf.stack(
        [
            tf.reduce_min(flat),
            tf.reduce_max(flat),
            tf.reduce_mean(flat),
            tf.math.reduce_std(flat),
            integral,
            unit,
            one_hot_rows,
            row_sum_mean,
            match,
        ]
    )
    summary = tf.concat([summary, _principal_shares(y)], axis=0)
    if last is not None and last == num_classes and num_classes > 1:
        counts = tf.reduce_sum(tf.reshape(y, [-1, num_classes]), axis=0)
    elif num_classes == 2:
        above = tf.reduce_sum(tf.cast(flat >= 0.5, tf.float32))
        counts = tf.stack([tf.cast(tf.size(flat), tf.float32) - above, above])
    else:
        ids = tf.cast(tf.round(flat), tf.int32)
        counts = tf.reduce_sum(tf.one_hot(ids, num_classes, dtype=tf.float32), axis=0)
    return summary, counts


def _principal_shares(y):
    """[_PRINCIPAL_SHARES] shares of the label variance along its first principal directions
    (per sample, over the batch), as `record.principal_shares`; NaN where a sample's label
    has one entry, more than _MAX_PRINCIPAL_FEATURES or a shape the trace does not know."""
    entries = y.shape[1:].num_elements() if (y.shape.rank or 0) >= 1 else None
    if entries is None or not 2 <= entries <= _MAX_PRINCIPAL_FEATURES:
        return tf.fill([_PRINCIPAL_SHARES], float("nan"))
    rows = tf.cast(tf.reshape(y, [-1, entries]), tf.float64)
    centered = rows - tf.reduce_mean(rows, axis=0, keepdims=True)
    eigenvalues = tf.maximum(
        tf.reverse(tf.linalg.eigvalsh(tf.matmul(centered, centered, transpose_a=True)), [0]), 0.0
    )
    total = tf.reduce_sum(eigenvalues)
    top = eigenvalues[:_PRINCIPAL_SHARES] / tf.maximum(total, 1e-300)
    top = tf.pad(top, [[0, max(0, _PRINCIPAL_SHARES - entries)]])
    enough = (tf.shape(rows)[0] >= 2) & (total > 0)
    missing = tf.fill([_PRINCIPAL_SHARES], tf.constant(np.nan, tf.float64))
    return tf.cast(tf.where(enough, top, missing), tf.float32)


def _input_match_fraction(y, inputs):
    y = _float32(y)
    matches = [tf.constant(0.0)]
    for x in inputs:
        x = _float32(x)
        if x.shape.rank == y.shape.rank and x.shape.is_compatible_with(y.shape):
            same = tf.reduce_all(tf.equal(tf.shape(x), tf.shape(y)))
            matches.append(
                tf.cond(
                    same,
                    lambda x=x: tf.reduce_mean(tf.cast(tf.equal(x, y), tf.float32)),
                    lambda: tf.constant(0.0),
                )
            )
    return tf.reduce_max(tf.stack(matches))


def _read_weights(index):
    return [np.asarray(v.numpy(), dtype=np.float64) for v in index.variables]


def _weights_stats(index, weights):
    """Per layer: [weight sum of squares, NaN/Inf weights]."""
    sumsq = np.zeros(len(index.layer_labels))
    nonfinite = np.zeros(len(index.layer_labels))
    for v, w in zip(index.variables, weights):
        i = index.var_layer[_var_key(v)]
        finite = np.isfinite(w)
        nonfinite[i] += w.size - np.count_nonzero(finite)
        sumsq[i] += float(np.sum(np.square(w, where=finite, out=np.zeros_like(w))))
    return sumsq, nonfinite


def _update_ratio(index, before, after):
    """Per layer ||W_after - W_before|| / ||W_before|| over one step."""
    delta = np.zeros(len(index.layer_labels))
    base = np.zeros(len(index.layer_labels))
    for v, w0, w1 in zip(index.variables, before, after):
        i = index.var_layer[_var_key(v)]
        delta[i] += float(np.sum(np.square(w1 - w0)))
        base[i] += float(np.sum(np.square(w0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(delta) / np.sqrt(base)


def _var_key(variable):
    return getattr(variable, "path", None) or variable.name
