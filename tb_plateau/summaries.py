"""The recording side: writes what the diagnosis needs into TensorBoard event files.

Three levels:
  * `write_scalar`, `write_vector`, `write_config`: low-level writers into the
    default `tf.summary` writer, with tb_plateau's metadata.
  * `Recorder`: for custom `tf.GradientTape` loops, one call per step.
  * `PlateauCallback`: for `model.fit`, one line.

How the callback sees gradients: Keras 3 callbacks see neither the batch nor
the gradients, so at `on_train_begin` the callback wraps, on this model
instance only, `train_step`, `compute_loss`, the optimizer's `apply` and the
`call` of each layer with an activation (of an RNN, not of its cell, which runs
inside the RNN's loop), and traces a second train function through them: on
the real batch it reduces the loss, gradients and activations to a few numbers
each and stores them in variables. The recorded steps run that function; every
other step runs Keras' own, unchanged. The wraps are removed at `on_train_end`.
"""

import atexit
import collections
import functools
import itertools
import json
import logging
import math
import os
import socket
import tempfile
import threading
import time
import weakref

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

from tb_plateau import metadata

logger = logging.getLogger("tb_plateau")

# Training steps between two records. At 100, recording costs under 3% of a
# small MLP's step time on a CPU (benchmarks/recording_overhead.py) while a
# 1,000-step run still gives the diagnosis ten points per series.
DEFAULT_EVERY_N_STEPS = 100  # steps

# Entries of one input's per-feature statistics; wider inputs (one-hot text,
# flattened images) are summarized over all features instead.
_MAX_FEATURES = 4096  # features
# Classes counted in the label statistics; more are summarized by range only.
_MAX_CLASSES = 10_000  # classes

# Activation families and the saturation margin: the contract in `metadata`.
RELU_FAMILY = metadata.RELU_FAMILY
SIGMOID_FAMILY = metadata.SIGMOID_FAMILY
TANH_FAMILY = metadata.TANH_FAMILY
SOFTMAX_FAMILY = metadata.SOFTMAX_FAMILY
SATURATION_MARGIN = metadata.SATURATION_MARGIN

_ACTIVATION_LAYER_NAMES = {
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "ELU": "elu",
    "Softmax": "softmax",
}

# Per-layer entries stored in the step variables.
_ACT_FIELDS = ("mean", "std", "dead_fraction", "saturated_fraction", "nonfinite")
_OUTPUT_FIELDS = ("min", "max", "mean", "row_sum_min", "row_sum_max", "row_sum_mean")
_STEP_FIELDS = ("loss", "inputs_nonfinite", "labels_nonfinite", "loss_nonfinite", "batch_size")
_FEATURE_FIELDS = ("mean", "std", "min", "max")
_LABEL_FIELDS = (
    "min",
    "max",
    "mean",
    "std",
    "integral_fraction",
    "unit_interval_fraction",
    "one_hot_row_fraction",
    "row_sum_mean",
)


# --------------------------------------------------------------------------
# Low-level writers


def _serialized(summary_metadata):
    return summary_metadata.SerializeToString()


def write_scalar(name, value, step):
    """Writes a tb_plateau scalar (e.g. `metadata.BATCH_LOSS`) at `step`."""
    md = metadata.create_summary_metadata(summary_pb2.DATA_CLASS_SCALAR)
    return tf.summary.write(
        metadata.tag(name),
        tf.constant(float(value), dtype=tf.float32),
        step=step,
        metadata=_serialized(md),
    )


def write_vector(name, values, labels, step, **extra):
    """Writes a per-layer (or per-entry) statistic: `values[i]` belongs to `labels[i]`.

    `extra` are further header fields, e.g. ``sizes=[...]`` for gradient-zero counts.
    """
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if len(values) != len(labels):
        raise ValueError(
            "write_vector(%r): %d values for %d labels" % (name, len(values), len(labels))
        )
    md = metadata.create_summary_metadata(summary_pb2.DATA_CLASS_TENSOR, labels=labels, **extra)
    return tf.summary.write(metadata.tag(name), values, step=step, metadata=_serialized(md))


def write_config(config, step=0):
    """Writes the configuration record (a JSON-serializable dict)."""
    text = json.dumps(config, default=_json_default, allow_nan=True)
    md = metadata.create_summary_metadata(summary_pb2.DATA_CLASS_TENSOR)
    return tf.summary.write(
        metadata.tag(metadata.CONFIG), tf.constant(text), step=step, metadata=_serialized(md)
    )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


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


def _label_stats(y, num_classes):
    """(summary [len(_LABEL_FIELDS)], class counts [num_classes]) of one label tensor.

    Class counts: for one-hot or probability labels (last axis == classes) the
    column sums; for integer labels the count of each id in [0, classes); for
    a single-unit output the counts of labels below and at/above 0.5.
    """
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
        ]
    )
    if last is not None and last == num_classes and num_classes > 1:
        counts = tf.reduce_sum(tf.reshape(y, [-1, num_classes]), axis=0)
    elif num_classes == 2:
        above = tf.reduce_sum(tf.cast(flat >= 0.5, tf.float32))
        counts = tf.stack([tf.cast(tf.size(flat), tf.float32) - above, above])
    else:
        ids = tf.cast(tf.round(flat), tf.int32)
        counts = tf.reduce_sum(tf.one_hot(ids, num_classes, dtype=tf.float32), axis=0)
    return summary, counts


# --------------------------------------------------------------------------
# What the model looks like


def _activation_name(layer):
    """The name of the activation a layer applies, or None (linear, none)."""
    cls = type(layer).__name__
    if cls in _ACTIVATION_LAYER_NAMES:
        return _ACTIVATION_LAYER_NAMES[cls]
    if cls == "Lambda":
        fn = getattr(layer, "function", None)
        return "lambda:" + getattr(fn, "__name__", type(fn).__name__)
    fn = getattr(layer, "activation", None)
    if fn is None:
        return None
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if name == "linear":
        return None
    return name


def _stepped_layer(layer):
    """The layer that `layer` calls once per time step, inside its own loop, or None.

    An RNN's cell (LSTM, GRU, ConvLSTM, `RNN(cell)`) runs in a `tf.while_loop`
    body, TimeDistributed's layer in a loop or a `vectorized_map`: their
    tensors cannot be read from the train step (InaccessibleTensorError), or
    would speak for one time step only. The wrapper's own output is the same
    values over all the time steps it returns, so that is what is watched.
    """
    if isinstance(layer, tf.keras.layers.TimeDistributed):
        return layer.layer
    cell = getattr(layer, "cell", None)
    return cell if isinstance(cell, tf.keras.layers.Layer) else None


def _output_source(layer):
    """The layer whose activation `layer`'s output is: itself, or the (last) cell it steps."""
    inner = _stepped_layer(layer)
    while inner is not None:
        layer = inner
        cells = getattr(layer, "cells", None)  # StackedRNNCells returns its last cell's output
        if isinstance(cells, (list, tuple)) and cells:
            layer = cells[-1]
        inner = _stepped_layer(layer)
    return layer


def _is_leaf(layer):
    try:
        return not layer._flatten_layers(include_self=False, recursive=False)
    except Exception:
        return True


def _layer_label(model_name, var_path):
    layer_path = var_path.rsplit("/", 1)[0] if "/" in var_path else var_path
    prefix = model_name + "/"
    if layer_path.startswith(prefix):
        layer_path = layer_path[len(prefix) :]
    return layer_path


def _var_key(variable):
    return getattr(variable, "path", None) or variable.name


def _initializer_name(initializer):
    if initializer is None:
        return None
    if isinstance(initializer, str):
        return initializer
    return type(initializer).__name__


def _fn_name(fn):
    if fn is None:
        return None
    return getattr(fn, "__name__", None) or type(fn).__name__


# A layer whose output the activation statistics describe. `layer`'s call is
# wrapped; `source` is the layer that computed the output: `layer` itself, or
# for an RNN or TimeDistributed the layer it steps, which names the label and
# the activation (an LSTM's output o * tanh(c) is the cell's, in tanh's range).
_Watched = collections.namedtuple("_Watched", "layer label activation source")


class _ModelIndex:
    """Which variables belong to which layer, and which layers to watch."""

    def __init__(self, model, variables=None):
        self.model = model
        variables = list(model.trainable_variables if variables is None else variables)
        self.variables = variables
        self.layer_labels = []
        self.layer_sizes = []
        self.var_layer = {}
        for v in variables:
            label = _layer_label(model.name, _var_key(v))
            if label not in self.layer_labels:
                self.layer_labels.append(label)
                self.layer_sizes.append(0)
            index = self.layer_labels.index(label)
            self.var_layer[_var_key(v)] = index
            self.layer_sizes[index] += int(np.prod(v.shape))
        self.activation_layers = []  # _Watched
        layers = list(model._flatten_layers(include_self=False, recursive=True))
        in_loops = set()  # what a layer calls inside its own loop: never wrapped
        for layer in layers:
            inner = _stepped_layer(layer)
            if inner is not None:
                in_loops.update(
                    id(sub) for sub in inner._flatten_layers(include_self=True, recursive=True)
                )
        seen = set()
        for layer in layers:
            if id(layer) in seen or id(layer) in in_loops:
                continue
            seen.add(id(layer))
            source = _output_source(layer)
            if not _is_leaf(source):
                continue
            name = _activation_name(source)
            if name is not None:
                label = getattr(source, "path", None) or source.name
                label = _layer_label(model.name, label + "/x")
                self.activation_layers.append(_Watched(layer, label, name, source))

    @property
    def activation_labels(self):
        return [watched.label for watched in self.activation_layers]

    @property
    def activation_names(self):
        return [watched.activation for watched in self.activation_layers]

    def group_grads(self, grads, variables):
        """Gradients per layer (a list per layer) and missing (None) counts per layer."""
        per_layer = [[] for _ in self.layer_labels]
        missing = [0.0] * len(self.layer_labels)
        for g, v in zip(grads, variables):
            index = self.var_layer.get(_var_key(v))
            if index is None:
                continue
            if g is None:
                missing[index] += 1
            else:
                per_layer[index].append(g)
        return per_layer, missing


_REGULARIZER_ATTRS = (
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "embeddings_regularizer",
    "recurrent_regularizer",
)


def _describe_regularizer(regularizer):
    """{"class": "L2", "l2": 0.01}: the regularizer's class and its numeric settings."""
    entry = {"class": type(regularizer).__name__}
    try:
        config = regularizer.get_config()
    except Exception:
        config = {}
    for key, value in (config or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            entry[key] = float(value)
    return entry


def _regularization_loss(model):
    """The weight penalty the loss carries now: the sum of the weights' regularizers.

    Read from the variables on the host, outside the train step, so it costs
    one small computation per recorded step and nothing otherwise.
    """
    total = 0.0
    for variable in model.trainable_weights:
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is not None:
            total += float(regularizer(variable))
    return total


def _describe_layers(model):
    layers = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        cls = type(layer).__name__
        if cls == "InputLayer":
            continue
        entry = {
            "name": layer.name,
            "path": _layer_label(model.name, (getattr(layer, "path", None) or layer.name) + "/x"),
            "class": cls,
            "activation": _activation_name(layer),
            "trainable": bool(layer.trainable),
            "params": int(sum(int(np.prod(w.shape)) for w in layer.weights))
            if _is_leaf(layer)
            else None,
            "nested": not _is_leaf(layer),
        }
        for attr in (
            "units",
            "filters",
            "kernel_size",
            "rate",
            "momentum",
            "epsilon",
            "output_dim",
            "input_dim",
            "use_bias",
            "axis",
            "strides",
            "padding",
        ):
            value = getattr(layer, attr, None)
            if value is not None and isinstance(value, (int, float, str, bool, tuple, list)):
                entry[attr] = list(value) if isinstance(value, tuple) else value
        for attr in ("kernel_initializer", "bias_initializer", "embeddings_initializer"):
            init = getattr(layer, attr, None)
            if init is not None:
                entry[attr] = _initializer_name(init)
        for attr in _REGULARIZER_ATTRS:
            regularizer = getattr(layer, attr, None)
            if regularizer is not None:
                entry[attr] = _describe_regularizer(regularizer)
        if cls == "Lambda":
            entry["function"] = _fn_name(getattr(layer, "function", None))
        try:
            shape = layer.output.shape
            entry["output_shape"] = [None if d is None else int(d) for d in shape]
        except Exception:
            pass
        layers.append(entry)
    return layers


def _describe_loss(loss):
    if loss is None:
        return None
    if isinstance(loss, dict):
        return {"per_output": {k: _describe_loss(v) for k, v in loss.items()}}
    if isinstance(loss, (list, tuple)):
        return {"per_output": [_describe_loss(v) for v in loss]}
    if isinstance(loss, str):
        return {"name": loss, "from_logits": False, "custom": False}
    config = {}
    if hasattr(loss, "get_config"):
        try:
            config = dict(loss.get_config())
        except Exception:
            config = {}
    fn = getattr(loss, "fn", None)
    name = _fn_name(fn) if fn is not None else None
    module = getattr(fn if fn is not None else type(loss), "__module__", "") or ""
    if fn is None and not hasattr(loss, "get_config"):
        name = _fn_name(loss)
        module = getattr(loss, "__module__", "") or ""
    return {
        "name": name or config.get("name") or type(loss).__name__,
        "class": type(loss).__name__,
        "from_logits": config.get("from_logits", False if module.startswith("keras") else None),
        "reduction": config.get("reduction"),
        "label_smoothing": config.get("label_smoothing"),
        "custom": not module.startswith("keras"),
    }


def _describe_optimizer(optimizer):
    if optimizer is None:
        return None
    inner = optimizer
    loss_scale = False
    while hasattr(inner, "inner_optimizer"):
        inner = inner.inner_optimizer
        loss_scale = True
    try:
        config = dict(inner.get_config())
    except Exception:
        config = {}
    lr = config.get("learning_rate")
    schedule = None
    if isinstance(lr, dict):
        schedule = lr
        config["learning_rate"] = _current_learning_rate(inner)
    return {
        "name": type(inner).__name__,
        "config": config,
        "learning_rate_schedule": schedule,
        "loss_scale": loss_scale,
    }


def _current_learning_rate(optimizer):
    try:
        lr = optimizer.learning_rate
        if callable(lr) and not hasattr(lr, "numpy"):
            lr = lr(optimizer.iterations)
        return float(np.asarray(lr))
    except Exception:
        return float("nan")


def _output_info(model):
    """(names, units) of the model's outputs, from its output tensors or layer."""
    outputs = []
    try:
        outputs = list(tf.nest.flatten(model.outputs))
    except Exception:
        outputs = []
    names = list(getattr(model, "output_names", None) or [])
    units = []
    for t in outputs:
        shape = tuple(t.shape)
        dim = shape[-1] if shape else None
        units.append(None if dim is None else int(dim))
    if not units:
        last = None
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if _is_leaf(layer) and type(layer).__name__ not in ("InputLayer", "Dropout"):
                last = layer
        dim = getattr(last, "units", None) or getattr(last, "filters", None)
        units = [int(dim) if dim else None]
        names = [last.name] if last is not None else ["output"]
    if len(names) != len(units):
        names = ["output_%d" % i for i in range(len(units))]
    return names, units


def _input_info(model):
    """[(name, feature count)] of the model's inputs, from static shapes where known."""
    shapes = []
    names = []
    try:
        for t in tf.nest.flatten(model.inputs):
            shapes.append(t.shape)
            names.append(getattr(t, "name", None) or "input")
    except Exception:
        build = getattr(model, "_build_shapes_dict", None) or {}
        for key, shape in build.items():
            for s in (
                tf.nest.flatten(shape, expand_composites=False)
                if not isinstance(shape, tuple)
                else [shape]
            ):
                shapes.append(tuple(s))
                names.append(key)
    info = []
    for name, shape in zip(names, shapes):
        shape = tuple(shape)
        dim = shape[-1] if len(shape) >= 2 else 1
        features = int(dim) if dim and dim <= _MAX_FEATURES else 1
        info.append((name, features))
    return info


# --------------------------------------------------------------------------
# Safety: a recorder error never stops training.


class _Guard:
    """Runs each statistic's host-side work; the first error disables that statistic."""

    def __init__(self):
        self.disabled = set()

    def run(self, name, fn, *args, **kwargs):
        if name in self.disabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # the training matters more than the statistic
            self.disabled.add(name)
            logger.warning(
                "tb_plateau: recording %r failed and stops for this run (training goes on): %s",
                name,
                _brief(e),
            )
            logger.debug("tb_plateau: recording %r failed", name, exc_info=e)
            return None


def _brief(error):
    """The error's type and first line: TensorFlow's messages can carry whole tracebacks."""
    lines = str(error).strip().splitlines()
    return "%s: %s" % (type(error).__name__, lines[0] if lines else "")


def _check_log_dir(log_dir):
    if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
        raise ValueError("log_dir must be a non-empty path, got %r" % (log_dir,))
    log_dir = os.fspath(log_dir)
    if "://" in log_dir:
        return log_dir  # remote filesystems are checked by the writer itself
    try:
        os.makedirs(log_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=log_dir, prefix=".tb_plateau_probe"):
            pass
    except OSError as e:
        raise ValueError("log_dir %r cannot be written: %s" % (log_dir, e)) from None
    return log_dir


def _check_every_n_steps(every_n_steps):
    if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, (int, np.integer)):
        raise ValueError("every_n_steps must be a positive integer, got %r" % (every_n_steps,))
    if every_n_steps < 1:
        raise ValueError("every_n_steps must be a positive integer, got %r" % (every_n_steps,))
    return int(every_n_steps)


# --------------------------------------------------------------------------
# The writer shared by Recorder and PlateauCallback


class _RunWriter:
    """Writes one run's records; flushes at the first non-finite value and on exit.

    Uses TensorBoard's own event file writer, which serializes on the host and
    writes from a background thread: a record of a dozen summaries costs well
    under a millisecond, against that many eager `tf.summary.write` ops. Each
    record is one event; a tag's metadata (which names the layers) goes with
    its first value only, as TensorBoard's readers take it from there.
    """

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self._writer = None
        self.guard = _Guard()
        self._config_written = False
        self._nonfinite_flushed = False
        self._write_failed = False
        self._tags_with_metadata = set()
        atexit.register(_flush_at_exit, weakref.ref(self))

    def _get_writer(self):
        if self._writer is None:
            self._writer = _EventFile(self.log_dir)
            self._tags_with_metadata = set()  # each file names its tags' layers
        return self._writer

    def _value(self, name, array, data_class, **header):
        value = summary_pb2.Summary.Value(
            tag=metadata.tag(name), tensor=tensor_util.make_tensor_proto(array)
        )
        if value.tag not in self._tags_with_metadata:
            self._tags_with_metadata.add(value.tag)
            value.metadata.CopyFrom(metadata.create_summary_metadata(data_class, **header))
        return value

    def _scalar_value(self, name, number):
        return self._value(
            name, np.asarray(number, dtype=np.float32), summary_pb2.DATA_CLASS_SCALAR
        )

    def _vector_value(self, name, values, labels, extra):
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if len(values) != len(labels):
            raise ValueError("%d values for %d labels" % (len(values), len(labels)))
        return self._value(name, values, summary_pb2.DATA_CLASS_TENSOR, labels=labels, **extra)

    def _config_value(self, config):
        text = json.dumps(config, default=_json_default, allow_nan=True)
        return self._value(
            metadata.CONFIG,
            np.array(text.encode("utf-8"), dtype=object),
            summary_pb2.DATA_CLASS_TENSOR,
        )

    def _values(self, scalars, vectors, config):
        # One statistic that cannot be serialized stops alone.
        values = [self.guard.run(name, self._scalar_value, name, x) for name, x in scalars]
        values += [self.guard.run(v[0], self._vector_value, *v) for v in vectors]
        if config is not None:
            values.append(self.guard.run(metadata.CONFIG, self._config_value, config))
        return [v for v in values if v is not None]

    def write(self, step, scalars=(), vectors=(), config=None):
        """scalars: [(name, value)]; vectors: [(name, values, labels, extra)]."""
        if self._write_failed:
            return
        if self._config_written:
            config = None
        try:
            values = self._values(scalars, vectors, config)
            event = event_pb2.Event(
                wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
            )
            writer = self._get_writer()
            writer.add_event(event)
            # Each record reaches the file at once (well under a millisecond
            # every `every_n_steps` steps): a killed run loses nothing.
            writer.flush()
            if config is not None:
                self._config_written = True
        except Exception as e:
            # A full or read-only disk: one warning, then recording stops.
            self._write_failed = True
            logger.warning(
                "tb_plateau: cannot write to %r; recording stops, training goes on: %s",
                self.log_dir,
                e,
            )

    def write_epoch(self, step, logs):
        """Epoch logs as "epoch/<key>" scalars (values that are not numbers are skipped)."""
        scalars = []
        for key, value in (logs or {}).items():
            try:
                scalars.append((metadata.EPOCH_PREFIX + str(key), float(value)))
            except (TypeError, ValueError):
                continue
        self.write(step, scalars=scalars)

    def note_nonfinite(self):
        if not self._nonfinite_flushed:
            self._nonfinite_flushed = True
            self.flush()

    def flush(self):
        if self._writer is None or self._write_failed:
            return
        try:
            self._writer.flush()
        except Exception as e:
            self._write_failed = True
            logger.warning("tb_plateau: cannot flush %r: %s", self.log_dir, e)

    def close(self):
        self.flush()
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._writer = None


class _EventFile:
    """One event file, written synchronously with TensorBoard's record writer.

    Synchronous on purpose: an error (a full or read-only disk) surfaces in
    the call that caused it, not as a traceback from a writer thread, and a
    record is on disk when `flush` returns. Files are named as TensorBoard's
    and TensorFlow's writers name theirs, so readers order them the same way.
    """

    _uid = itertools.count()

    def __init__(self, log_dir):
        from tensorboard.summary.writer.record_writer import RecordWriter

        tf.io.gfile.makedirs(log_dir)
        name = "events.out.tfevents.%010d.%s.%s.%s.plateau" % (
            time.time(),
            socket.gethostname(),
            os.getpid(),
            next(self._uid),
        )
        self._file = tf.io.gfile.GFile(os.path.join(log_dir, name), "wb")
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event):
        self._records.write(event.SerializeToString())

    def flush(self):
        self._records.flush()

    def close(self):
        self._records.close()


def _flush_at_exit(ref):
    writer = ref()
    if writer is not None:
        writer.flush()


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


def _data_summary(
    input_names, feature_stats, label_stats, class_counts, x_dtypes, y_dtypes, y_shapes
):
    inputs = []
    for (name, _), stats, dtype in zip(input_names, feature_stats, x_dtypes):
        stats = np.asarray(stats, dtype=np.float64)
        stds = stats[:, 1]
        positive = stds[np.isfinite(stds) & (stds > 0)]
        inputs.append(
            {
                "name": name,
                "dtype": dtype,
                "features": int(stats.shape[0]),
                "mean": stats[:, 0].tolist(),
                "std": stds.tolist(),
                "min": stats[:, 2].tolist(),
                "max": stats[:, 3].tolist(),
                "abs_max": float(np.nanmax(np.abs(stats[:, 2:4]))) if stats.size else None,
                "scale_spread": float(positive.max() / positive.min()) if positive.size else None,
            }
        )
    labels = []
    for summary, counts, dtype, shape in zip(label_stats, class_counts, y_dtypes, y_shapes):
        summary = np.asarray(summary, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        entry = {name: float(value) for name, value in zip(_LABEL_FIELDS, summary)}
        entry["dtype"] = dtype
        entry["shape"] = shape
        entry["class_counts"] = counts.tolist()
        entry["distinct_classes"] = int(np.count_nonzero(counts))
        entry["encoding"] = (
            "one_hot"
            if entry["one_hot_row_fraction"] > 0.99
            else "sparse"
            if entry["integral_fraction"] > 0.99 and (shape[-1:] in ([1], []) or len(shape) <= 1)
            else "dense"
        )
        labels.append(entry)
    return {"inputs": inputs, "labels": labels}


# --------------------------------------------------------------------------
# Hooks into the model and optimizer


class _Hooks:
    """Wraps, on one model instance, the calls whose tensors the statistics need.

    Two modes. In-step (PlateauCallback): while the recording train function
    is traced, the forward pass and compute_loss note their tensors and the
    optimizer's `apply` reduces them, with the gradients, to a few numbers
    that it stores in variables. Probe (Recorder): during an eager forward
    pass the activation wraps put their statistics in a dict. Anywhere else
    (the plain train function, evaluation, prediction) the wraps add nothing
    to the graph.
    """

    def __init__(self, index, guard):
        self.index = index
        self.guard = guard
        self.local = threading.local()
        self._restore = []
        self.vars = None  # _StepVariables, in-step mode only
        self.missing = [0.0] * len(index.layer_labels)
        self.loss_scaled = False
        self.stored = set()  # what the recording step stores, known once traced
        self.skipped = set()  # activation layers whose statistics failed
        self._skip_lock = threading.Lock()

    # -- installing

    def _patch(self, obj, name, wrapper):
        had_own = name in obj.__dict__
        previous = obj.__dict__.get(name)
        object.__setattr__(obj, name, wrapper)
        self._restore.append((obj, name, had_own, previous))

    def uninstall(self):
        for obj, name, had_own, previous in reversed(self._restore):
            if had_own:
                object.__setattr__(obj, name, previous)
            else:
                try:
                    object.__delattr__(obj, name)
                except AttributeError:
                    pass
        self._restore = []

    def install_activations(self):
        for i, watched in enumerate(self.index.activation_layers):
            original = watched.layer.call

            def call(*args, _original=original, _i=i, **kwargs):
                output = _original(*args, **kwargs)
                self._on_activation(_i, output)
                return output

            functools.update_wrapper(call, original)
            self._patch(watched.layer, "call", call)

    def install_train_step(self, model):
        original_train_step = model.train_step
        original_compute_loss = model.compute_loss

        def train_step(*args, **kwargs):
            # Thread-local: MirroredStrategy traces each replica in a thread.
            self.local.in_train = True
            self.local.activations = {}
            self.local.loss = None
            try:
                return original_train_step(*args, **kwargs)
            finally:
                self.local.in_train = False
                self.local.activations = {}
                self.local.loss = None

        def compute_loss(*args, **kwargs):
            loss = original_compute_loss(*args, **kwargs)
            if getattr(self.local, "in_train", False) and kwargs.get("training", True):
                bound = dict(zip(("x", "y", "y_pred", "sample_weight"), args))
                bound.update(kwargs)
                self.local.loss = (
                    loss,
                    _flat_tensors(bound.get("x")),
                    _flat_tensors(bound.get("y")),
                    _flat_tensors(bound.get("y_pred")),
                )
            return loss

        functools.update_wrapper(train_step, original_train_step)
        functools.update_wrapper(compute_loss, original_compute_loss)
        self._patch(model, "train_step", train_step)
        self._patch(model, "compute_loss", compute_loss)

        optimizer = model.optimizer
        # A LossScaleOptimizer's apply gets scaled gradients, on every step
        # (its inner optimizer's only on the steps it does not skip).
        self.loss_scaled = hasattr(optimizer, "inner_optimizer")
        original_apply = optimizer.apply

        def apply(grads, trainable_variables=None):
            variables = trainable_variables
            if variables is None:
                variables = getattr(optimizer, "_trainable_variables", None) or []
            self.guard.run("gradients", self._on_step, optimizer, list(grads), list(variables))
            return original_apply(grads, trainable_variables)

        functools.update_wrapper(apply, original_apply)
        self._patch(optimizer, "apply", apply)

    # -- the statistics

    def _on_activation(self, i, output):
        if "activations" in self.guard.disabled or i in self.skipped:
            return
        tensor = output[0] if isinstance(output, (list, tuple)) and output else output
        if not tf.is_tensor(tensor) or not tensor.dtype.is_floating:
            return
        probe = getattr(self.local, "probe", None)
        if probe is not None:
            try:
                probe[i] = self._layer_stats(i, tensor).numpy()
            except Exception as e:  # costs this layer only: see skip_layers
                self.local.probe_failures[i] = e
            return
        if getattr(self.local, "in_train", False) and self.vars is not None:
            self.local.activations[i] = tensor

    def _layer_stats(self, i, tensor):
        watched = self.index.activation_layers[i]
        axis = _unit_axis(watched.source, tensor.shape.rank or 0)
        return _activation_stats(tensor, watched.activation, axis)

    def skip_layers(self, failures, attempted):
        """Stops, for the rest of the run, the layers whose statistics failed.

        failures: {layer index: exception} of one pass over `attempted` layers.
        When every layer failed, the statistic itself is broken: the first
        error is raised for the guard to stop it whole, with one warning.
        """
        with self._skip_lock:  # MirroredStrategy traces replicas in threads
            failures = {i: e for i, e in failures.items() if i not in self.skipped}
            if not failures:
                return
            if len(failures) == attempted:
                raise next(iter(failures.values()))
            self.skipped.update(failures)
        labels = self.index.activation_labels
        logger.warning(
            "tb_plateau: activation statistics of %s cannot be recorded; %s for this run"
            " (training and the other layers' statistics go on): %s",
            "layer" if len(failures) == 1 else "%d layers" % len(failures),
            "it stops" if len(failures) == 1 else "they stop",
            "; ".join("%r: %s" % (labels[i], _brief(e)) for i, e in sorted(failures.items())),
        )

    def _on_step(self, optimizer, grads, variables):
        """Stores the step's statistics (traced into the recording function only)."""
        if self.vars is None or not getattr(self.local, "in_train", False):
            return
        per_layer, missing = self.index.group_grads(grads, variables)
        self.missing = missing
        replicas = float(self.vars.replicas)
        activations = dict(getattr(self.local, "activations", {}))
        loss_info = getattr(self.local, "loss", None)
        for name, present, store, args in (
            ("activations", activations, self._store_activations, (activations,)),
            ("gradients", per_layer, self._store_gradients, (optimizer, per_layer, replicas)),
            ("loss", loss_info is not None, self._store_loss, (loss_info, replicas)),
            ("outputs", loss_info is not None, self._store_outputs, (loss_info,)),
            ("data", loss_info is not None, self._store_data, (loss_info, replicas)),
        ):
            if present and name not in self.guard.disabled:
                self.guard.run(name, store, *args)
                if name not in self.guard.disabled:
                    self.stored.add(name)

    def _store_activations(self, activations):
        nan_row = tf.fill([len(_ACT_FIELDS)], float("nan"))
        rows = []
        attempted = 0
        failures = {}
        for i in range(len(self.index.activation_layers)):
            row = nan_row  # a layer this step did not call, or one that failed
            if i in activations and i not in self.skipped:
                attempted += 1
                try:
                    row = self._layer_stats(i, tf.stop_gradient(activations[i]))
                except Exception as e:  # e.g. a tensor out of this graph's reach
                    failures[i] = e
            rows.append(row)
        self.skip_layers(failures, attempted)
        self.vars.activations.assign(tf.stack(rows) * self.vars.replica_weights_act)

    def _store_gradients(self, optimizer, per_layer, replicas):
        if self.loss_scaled:
            scale = tf.cast(tf.convert_to_tensor(optimizer.dynamic_scale), tf.float32)
            per_layer = [[_float32(g) / scale for g in grads] for grads in per_layer]
        stats = tf.stack([_gradient_stats(g) for g in per_layer])
        # Norms and NaN counts add up over replicas (each holds its share of
        # the batch); zero counts are averaged.
        self.vars.gradients.assign(stats * tf.constant([replicas, 1.0, replicas]))

    def _store_loss(self, loss_info, replicas):
        loss, xs, ys, _ = loss_info
        loss_value = _float32(loss)
        if loss_value.shape.rank != 0:
            loss_value = tf.reduce_mean(loss_value)
        batch = tf.cast(tf.shape(xs[0])[0], tf.float32) if xs else tf.constant(0.0)
        step_stats = tf.stack(
            [
                loss_value,
                _nonfinite_count(xs),
                _nonfinite_count(ys),
                _nonfinite_count([loss_value]),
                batch,
            ]
        )
        self.vars.step.assign(step_stats * replicas)

    def _store_outputs(self, loss_info):
        preds = loss_info[3]
        if len(preds) != self.vars.outputs.shape[0]:
            raise ValueError(
                "%d model outputs, %d expected" % (len(preds), self.vars.outputs.shape[0])
            )
        self.vars.outputs.assign(tf.stack([_output_stats(tf.stop_gradient(p)) for p in preds]))

    def _store_data(self, loss_info, replicas):
        """Statistics of the batch's inputs and labels, for the configuration record."""
        _, xs, ys, _ = loss_info
        if len(xs) == len(self.vars.features):
            for feature_var, tensor in zip(self.vars.features, xs):
                feature_var.assign(_feature_stats(tensor, feature_var.shape[0]))
        if len(ys) == len(self.vars.label_counts):
            summaries = []
            for counts_var, tensor in zip(self.vars.label_counts, ys):
                summary, counts = _label_stats(tensor, counts_var.shape[0])
                summaries.append(summary)
                counts_var.assign(counts * replicas)
            self.vars.label_summaries.assign(tf.stack(summaries))
        self.vars.shapes = {
            "x_dtypes": [t.dtype.name for t in xs],
            "y_dtypes": [t.dtype.name for t in ys],
            "y_shapes": [[None if d is None else int(d) for d in t.shape] for t in ys],
        }


def _is_finite_number(value):
    """False only for a NaN or infinite number (None and non-numbers pass)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class _StepVariables:
    """Where the traced step leaves its statistics for the callback to read.

    Created under the model's distribution strategy as on-read variables: each
    replica writes its own copy without synchronization, and reading from the
    host averages them (the values that add up over replicas are stored
    multiplied by the replica count). Few variables, since each one is a
    capture that every call of the train function passes.
    """

    def __init__(self, index, strategy, input_info, output_units):
        self.replicas = strategy.num_replicas_in_sync
        self.replica_weights_act = tf.constant([1.0, 1.0, 1.0, 1.0, float(self.replicas)])
        self.shapes = {}
        outputs = max(len(output_units), 1)

        def on_read(shape, name):
            return tf.Variable(
                tf.zeros(shape),
                trainable=False,
                name="tb_plateau_" + name,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.MEAN,
            )

        with strategy.scope():
            self.step = on_read([len(_STEP_FIELDS)], "step")
            self.gradients = on_read([max(len(index.layer_labels), 1), 3], "gradients")
            self.activations = on_read(
                [max(len(index.activation_layers), 1), len(_ACT_FIELDS)], "activations"
            )
            self.outputs = on_read([outputs, len(_OUTPUT_FIELDS)], "outputs")
            self.features = [
                on_read([features, len(_FEATURE_FIELDS)], "features_%d" % i)
                for i, (_, features) in enumerate(input_info)
            ]
            self.label_summaries = on_read([outputs, len(_LABEL_FIELDS)], "labels")
            self.label_counts = [
                on_read([_class_slots(units)], "classes_%d" % i)
                for i, units in enumerate(output_units)
            ]

    def read(self):
        activations = self.activations.numpy()
        return {
            "step": self.step.numpy(),
            "gradients": self.gradients.numpy(),
            "activations": list(activations),
            "outputs": list(self.outputs.numpy()),
        }


def _class_slots(units):
    if not units or units <= 1:
        return 2  # one unit: binary labels, counted below / at-or-above 0.5
    return min(int(units), _MAX_CLASSES)


# --------------------------------------------------------------------------
# Assembling one record


def _output_labels(output_names):
    if len(output_names) == 1:
        return list(_OUTPUT_FIELDS)
    return ["%s/%s" % (name, field) for name in output_names for field in _OUTPUT_FIELDS]


def _record_vectors(
    index,
    guard,
    *,
    gradients=None,
    missing=None,
    activations=None,
    outputs=None,
    output_names=(),
    update_ratio=None,
    step_nonfinite=(0.0, 0.0, 0.0),
    weights=None,
):
    """The vectors of one record, the NaN/Inf totals per source among them.

    gradients: [layers, 3] norm / zero count / NaN count, or None.
    activations: per activation layer a [5] array or None.
    outputs: per output a [6] array.
    step_nonfinite: NaN/Inf counts in inputs, labels and loss.
    weights: the trainable variables' values, in index order, or None.
    """
    labels = index.layer_labels
    vectors = []
    stats = None
    if weights is not None:
        stats = guard.run("weights", _weights_stats, index, weights)
    weights_nonfinite_total = 0.0
    if stats is not None:
        weights_sumsq, weights_nonfinite = stats
        vectors.append((metadata.WEIGHT_NORM, np.sqrt(weights_sumsq), labels, {}))
        vectors.append((metadata.WEIGHT_NONFINITE, weights_nonfinite, labels, {}))
        weights_nonfinite_total = float(np.sum(weights_nonfinite))
    grad_nonfinite_total = 0.0
    if gradients is not None and len(labels):
        gradients = np.asarray(gradients, dtype=np.float64).reshape(len(labels), 3)
        vectors.append((metadata.GRAD_NORM, gradients[:, 0], labels, {}))
        vectors.append(
            (metadata.GRAD_ZERO_COUNT, gradients[:, 1], labels, {"sizes": index.layer_sizes})
        )
        vectors.append((metadata.GRAD_NONFINITE, gradients[:, 2], labels, {}))
        vectors.append((metadata.GRAD_MISSING, np.asarray(missing, dtype=np.float64), labels, {}))
        grad_nonfinite_total = float(np.nansum(gradients[:, 2]))
    if update_ratio is not None:
        vectors.append((metadata.UPDATE_RATIO, update_ratio, labels, {}))
    act_nonfinite_total = 0.0
    if activations is not None and index.activation_layers:
        act = np.array(
            [a if a is not None else [np.nan] * len(_ACT_FIELDS) for a in activations],
            dtype=np.float64,
        )
        act_labels = index.activation_labels
        header = {"activations": index.activation_names}
        for name, column in (
            (metadata.ACT_MEAN, 0),
            (metadata.ACT_STD, 1),
            (metadata.ACT_DEAD_FRACTION, 2),
            (metadata.ACT_SATURATED_FRACTION, 3),
            (metadata.ACT_NONFINITE, 4),
        ):
            vectors.append((name, act[:, column], act_labels, header))
        act_nonfinite_total = float(np.nansum(act[:, 4]))
    if outputs:
        values = np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs])
        out_labels = _output_labels(list(output_names))
        if len(values) == len(out_labels):
            vectors.append((metadata.OUTPUT_STATS, values, out_labels, {}))
    nonfinite = [
        float(step_nonfinite[0]),
        float(step_nonfinite[1]),
        float(step_nonfinite[2]),
        grad_nonfinite_total,
        weights_nonfinite_total,
        act_nonfinite_total,
    ]
    vectors.append((metadata.NONFINITE, nonfinite, list(metadata.NUMERICS_SOURCES), {}))
    return vectors


def _static_config(model, index, every_n_steps, recorder):
    output_names, output_units = _output_info(model)
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    policy = getattr(model, "dtype_policy", None)
    return {
        "tb_plateau_version": _package_version(),
        "recorder": recorder,
        "every_n_steps": every_n_steps,
        "model": {
            "name": model.name,
            "class": type(model).__name__,
            "params": int(sum(int(np.prod(w.shape)) for w in model.weights)),
            "trainable_params": int(sum(index.layer_sizes)),
            "dtype_policy": getattr(policy, "name", None),
            "output_names": output_names,
            "output_units": output_units,
        },
        "layers": _describe_layers(model),
        "trainable_layers": index.layer_labels,
        "activation_layers": [
            {"layer": watched.label, "activation": watched.activation}
            for watched in index.activation_layers
        ],
        "loss": _describe_loss(getattr(model, "loss", None)),
        "optimizer": _describe_optimizer(getattr(model, "optimizer", None)),
        "distribution": {
            "strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync),
        },
    }


def _package_version():
    from tb_plateau import __version__

    return __version__


# --------------------------------------------------------------------------
# The Keras callback


class PlateauCallback(tf.keras.callbacks.Callback):
    """Records what tb_plateau needs to say why a loss will not go down.

    ```python
    model.fit(x, y, epochs=10, callbacks=[PlateauCallback("logs/run1")])
    ```

    Every `every_n_steps` training steps, and at once at the first non-finite
    loss, it writes into `log_dir`: the batch's own loss, the learning rate in
    use, per trainable layer the gradient norm, weight norm, one-step
    update/weight ratio and counts of zero, missing and NaN/Inf gradients, per
    activation layer the output's mean/std and dead (ReLU family) or saturated
    (sigmoid/tanh/softmax) fraction over the batch, the output's range and row
    sums, and NaN/Inf counts by source. At each epoch end, the epoch's logs
    (validation included). Once per run, a configuration record: the
    architecture, loss, optimizer, batch size and statistics of the first
    recorded batch's inputs and labels.

    Args:
      log_dir: the run's directory (one TensorBoard run).
      every_n_steps: training steps between records, a positive integer.
    """

    def __init__(self, log_dir, every_n_steps=DEFAULT_EVERY_N_STEPS):
        super().__init__()
        self.every_n_steps = _check_every_n_steps(every_n_steps)
        self.log_dir = _check_log_dir(log_dir)
        self._run = None
        self._hooks = None
        self._vars = None
        self._index = None
        self._step = 0
        self._weights_before = None
        self._nonfinite_seen = False
        self._last_recorded_step = None
        self._record_next = False
        self._config = None
        self._output_names = []
        self._has_regularizers = False
        self._input_info = []

    # Keras' async dispatch would run on_train_batch_end off the training thread.
    async_safe = False

    def _guard(self):
        return self._run.guard

    def on_train_begin(self, logs=None):
        if self._run is None:
            self._run = _RunWriter(self.log_dir)
        self._sync_step()
        if self.model.built and self.model.trainable_variables:
            self._try_setup()
        else:
            # A subclassed model creates its variables in its first step:
            # until then there is nothing to watch.
            self._wrap_first_step(self.model)

    def _sync_step(self):
        try:
            self._step = int(self.model.optimizer.iterations.numpy())
        except Exception:
            self._step = 0

    def _try_setup(self):
        self._run.guard.run("setup", self._setup)
        if "setup" in self._run.guard.disabled:
            self._guard().run("teardown", self._teardown, True)

    def _setup(self):
        model = self.model
        self._index = _ModelIndex(model)
        self._has_regularizers = any(
            getattr(v, "regularizer", None) is not None for v in model.trainable_weights
        )
        self._output_names, output_units = _output_info(model)
        self._input_info = _input_info(model)
        strategy = model.distribute_strategy
        self._vars = _StepVariables(self._index, strategy, self._input_info, output_units)
        self._hooks = _Hooks(self._index, self._run.guard)
        self._hooks.vars = self._vars
        self._hooks.install_activations()
        if not model.optimizer.built:
            # Its state (a LossScaleOptimizer's scale) must exist before the
            # step is traced; fit would build it on the first step anyway.
            model.optimizer.build(model.trainable_variables)
        plain = model.train_function or model.make_train_function() or model.train_function
        self._hooks.install_train_step(model)
        self._config = _static_config(model, self._index, self.every_n_steps, "PlateauCallback")
        self._config["steps_per_epoch"] = (self.params or {}).get("steps")
        self._config["epochs"] = (self.params or {}).get("epochs")
        model.make_train_function(force=True)
        recording = model.train_function
        self._wrap_train_function(model, plain, recording)

    # Two train functions: Keras' own for the steps that are not recorded (they
    # pay nothing), and one traced through the wraps, which stores the step's
    # statistics, for the recorded steps. The choice is made in a wrap of
    # `model.train_function`, not in on_train_batch_begin: a batch hook makes
    # Keras convert every step's logs synchronously.

    def _wrap_first_step(self, model):
        train_function = model.train_function

        def first_step(*args, **kwargs):
            logs = train_function(*args, **kwargs)
            model.train_function = train_function
            self._sync_step()
            if model.trainable_variables:
                self._try_setup()
            return logs

        model.train_function = first_step

    def _wrap_train_function(self, model, plain, recording):
        steps_per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

        def train_function(*args, **kwargs):
            step = self._step
            record = self._before_step(step)
            try:
                logs = (recording if record else plain)(*args, **kwargs)
            except BaseException:
                # The run crashed or was interrupted: keep what was recorded.
                self._run.flush()
                raise
            self._step += steps_per_call
            if record:
                self._last_recorded_step = step + steps_per_call - 1
                self._guard().run("record", self._record, self._last_recorded_step, True)
            return logs

        model.train_function = train_function

    def _teardown(self, during_fit=False):
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
        self._vars = None
        if during_fit:
            # Setup failed half-way: give fit a clean train function to go on with.
            self.model.make_train_function(force=True)
        else:
            # The traced functions hold the wraps: let the next fit trace anew.
            self.model.train_function = None

    def _before_step(self, step):
        due = step % self.every_n_steps == 0 or not self._run._config_written
        if not (due or self._record_next):
            return False
        self._record_next = False
        self._weights_before = self._guard().run("update_ratio", _read_weights, self._index)
        return True

    def on_train_batch_end(self, batch, logs=None):
        # Keras hands callbacks the logs already converted to floats: reading
        # the loss here costs nothing, in the wrap it would cost a sync.
        if self._vars is None or self._nonfinite_seen:
            return
        if not _is_finite_number((logs or {}).get("loss")):
            # Keras' loss is the epoch's running mean: this is the step the
            # first NaN/Inf loss appeared in. Mark it with what the host can
            # see (the weights it left), flush, and record the next step whole.
            self._nonfinite_seen = True
            step = self._step - 1
            if step != self._last_recorded_step:
                self._guard().run("nonfinite", self._record_nonfinite_step, step)
                self._record_next = True
            self._run.note_nonfinite()

    def _record_nonfinite_step(self, step):
        weights = self._guard().run("weights", _read_weights, self._index)
        vectors = _record_vectors(self._index, self._guard(), weights=weights)
        unknown = float("nan")
        nonfinite = [unknown, unknown, 1.0, unknown, unknown, unknown]
        for name, values, *_ in vectors:
            if name == metadata.WEIGHT_NONFINITE:
                nonfinite[4] = float(np.sum(values))
        vectors = [v for v in vectors if v[0] != metadata.NONFINITE]
        vectors.append((metadata.NONFINITE, nonfinite, list(metadata.NUMERICS_SOURCES), {}))
        self._run.write(step, scalars=[(metadata.BATCH_LOSS, float("nan"))], vectors=vectors)

    def _record(self, step, scheduled):
        guard = self._guard()
        values = self._vars.read()
        # What the recording step did not store (a custom train_step that
        # skips compute_loss, a statistic switched off) is not written.
        stored = self._hooks.stored if self._hooks else set()
        step_stats = values["step"]
        loss_seen = "loss" in stored and "loss" not in guard.disabled
        gradients = values["gradients"]
        if "gradients" not in stored or "gradients" in guard.disabled:
            gradients = None
        activations = None
        if "activations" in stored and "activations" not in guard.disabled:
            activations = values["activations"]
        scalars = [(metadata.BATCH_LOSS, step_stats[0])] if loss_seen else []
        lr = guard.run("learning_rate", _current_learning_rate, self.model.optimizer)
        if lr is not None:
            scalars.append((metadata.LEARNING_RATE, lr))
        if self._has_regularizers:
            penalty = guard.run("regularization_loss", _regularization_loss, self.model)
            if penalty is not None:
                scalars.append((metadata.REGULARIZATION_LOSS, penalty))
        weights = guard.run("weights", _read_weights, self._index)
        update_ratio = None
        if scheduled and self._weights_before is not None and weights is not None:
            update_ratio = guard.run(
                "update_ratio", _update_ratio, self._index, self._weights_before, weights
            )
        self._weights_before = None
        vectors = _record_vectors(
            self._index,
            guard,
            weights=weights,
            gradients=gradients,
            missing=self._hooks.missing if self._hooks else None,
            activations=activations,
            outputs=values["outputs"] if "outputs" in stored else None,
            output_names=self._output_names,
            update_ratio=update_ratio,
            step_nonfinite=step_stats[1:4] if loss_seen else (0.0, 0.0, 0.0),
        )
        config = None
        if not self._run._config_written:
            config = dict(self._config)
            batch = float(step_stats[4])
            config["batch_size"] = int(round(batch)) if math.isfinite(batch) else None
            if "data" in stored:
                config["data"] = self._guard().run("data_summary", self._data_summary)
            config["first_step"] = step
        self._run.write(step, scalars=scalars, vectors=vectors, config=config)

    def _data_summary(self):
        shapes = self._vars.shapes
        return _data_summary(
            self._input_info,
            [v.numpy() for v in self._vars.features],
            list(self._vars.label_summaries.numpy()),
            [v.numpy() for v in self._vars.label_counts],
            shapes.get("x_dtypes", []),
            shapes.get("y_dtypes", []),
            shapes.get("y_shapes", []),
        )

    def on_epoch_end(self, epoch, logs=None):
        if self._run is None:
            return
        self._sync_step()  # the last call of an epoch may run fewer steps
        self._run.write_epoch(self._step, logs)

    def on_train_end(self, logs=None):
        if self._run is None:
            return
        self._guard().run("teardown", self._teardown)
        # Close the file (a later fit with this callback opens a new one).
        self._run.close()


# --------------------------------------------------------------------------
# Custom training loops


class Recorder:
    """The same records as `PlateauCallback`, for a custom `tf.GradientTape` loop.

    Call `record` once per step, after the optimizer applied the gradients:

    ```python
    recorder = Recorder("logs/run1", model, optimizer=optimizer, loss=loss_fn)
    for step, (x, y) in enumerate(dataset):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        recorder.record(step, loss, grads, x=x, y=y, y_pred=y_pred)
    recorder.close()
    ```

    On steps that are not recorded `record` only reads the loss, to catch the
    first non-finite one. On recorded steps, it takes activation statistics
    from one extra forward pass over `x` in inference mode (no batch-norm
    update, no dropout), and the update/weight ratio of the next step from a
    copy of the weights. Call it eagerly (outside `tf.function`).

    Args:
      log_dir: the run's directory.
      model: the Keras model being trained.
      every_n_steps: steps between records, a positive integer.
      optimizer: the optimizer, for the learning rate and the configuration record.
      loss: the loss function or object, for the configuration record.
    """

    def __init__(
        self, log_dir, model, every_n_steps=DEFAULT_EVERY_N_STEPS, optimizer=None, loss=None
    ):
        if not isinstance(model, tf.keras.Model):
            raise ValueError("model must be a keras.Model, got %r" % (type(model).__name__,))
        self.every_n_steps = _check_every_n_steps(every_n_steps)
        self.log_dir = _check_log_dir(log_dir)
        self.model = model
        self.optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
        self.loss = loss
        self._run = _RunWriter(self.log_dir)
        self._index = None
        self._hooks = None
        self._weights_after_record = None
        self._record_step = None
        self._nonfinite_seen = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def should_record(self, step):
        """True on the steps whose statistics `record` writes."""
        return int(step) % self.every_n_steps == 0 or not self._run._config_written

    def _ensure_index(self):
        if self._index is None:
            self._index = _ModelIndex(self.model)
            self._hooks = _Hooks(self._index, self._run.guard)
            self._hooks.install_activations()

    def record(
        self,
        step,
        loss,
        grads=None,
        *,
        variables=None,
        x=None,
        y=None,
        y_pred=None,
        learning_rate=None,
    ):
        """Records one training step (a no-op on most steps).

        Args:
          step: the global step, an int.
          loss: the step's loss (a scalar tensor or float).
          grads: the gradients, aligned with `variables` (default: the
            model's trainable variables); None entries count as missing.
          variables: the variables `grads` belong to.
          x, y, y_pred: the batch's inputs, labels and predictions (any nesting).
          learning_rate: the learning rate in use, if not the optimizer's.
        """
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            if tf.is_tensor(step) and step.dtype.is_integer:
                step = int(step)
            else:
                raise ValueError("step must be an int, got %r" % (step,))
        step = int(step)
        guard = self._run.guard
        guard.run("setup", self._ensure_index)
        if "setup" in guard.disabled:
            return
        if self._record_step is not None and step == self._record_step + 1:
            self._write_update_ratio(step)
        due = self.should_record(step)
        first_nonfinite = False
        if not self._nonfinite_seen:
            try:
                first_nonfinite = not math.isfinite(float(np.mean(np.asarray(loss))))
            except (TypeError, ValueError):
                first_nonfinite = False
        if not (due or first_nonfinite):
            return
        guard.run(
            "record", self._record, step, loss, grads, variables, x, y, y_pred, learning_rate, due
        )
        if first_nonfinite:
            self._nonfinite_seen = True
            self._run.note_nonfinite()

    def _record(self, step, loss, grads, variables, x, y, y_pred, learning_rate, due):
        index = self._index
        guard = self._run.guard
        loss_value = float(np.mean(np.asarray(_float32(loss))))
        xs = _flat_tensors(x)
        ys = _flat_tensors(y)
        gradients = missing = None
        if grads is not None:
            grads = list(grads)
            variables = list(self.model.trainable_variables if variables is None else variables)
            per_layer, missing = index.group_grads(grads, variables)
            gradients = guard.run(
                "gradients", lambda: np.stack([_gradient_stats(g).numpy() for g in per_layer])
            )
        activations = None
        if due and xs:
            activations = guard.run("activations", self._probe, x)
        outputs = None
        output_names = []
        if y_pred is not None:
            preds = _flat_tensors(y_pred)
            outputs = guard.run("outputs", lambda: [_output_stats(p).numpy() for p in preds])
            output_names = (
                list(y_pred.keys())
                if isinstance(y_pred, dict)
                else ["output_%d" % i for i in range(len(preds))]
            )
        step_nonfinite = (
            float(_nonfinite_count(xs)),
            float(_nonfinite_count(ys)),
            0.0 if math.isfinite(loss_value) else 1.0,
        )
        if learning_rate is None and self.optimizer is not None:
            learning_rate = guard.run("learning_rate", _current_learning_rate, self.optimizer)
        scalars = [(metadata.BATCH_LOSS, loss_value)]
        if learning_rate is not None:
            scalars.append((metadata.LEARNING_RATE, float(learning_rate)))
        weights = guard.run("weights", _read_weights, index)
        vectors = _record_vectors(
            index,
            guard,
            weights=weights,
            gradients=gradients,
            missing=missing,
            activations=activations,
            outputs=outputs,
            output_names=output_names,
            step_nonfinite=step_nonfinite,
        )
        config = None
        if not self._run._config_written:
            config = guard.run("config", self._config, step, xs, ys, y_pred)
        self._run.write(step, scalars=scalars, vectors=vectors, config=config)
        if due:
            self._weights_after_record = weights
            self._record_step = step

    def _probe(self, x):
        hooks = self._hooks
        hooks.local.probe = probe = {}
        hooks.local.probe_failures = failures = {}
        try:
            self.model(x, training=False)
        finally:
            hooks.local.probe = None
            hooks.local.probe_failures = None
        for i in failures:
            probe.pop(i, None)
        hooks.skip_layers(failures, attempted=len(probe) + len(failures))
        return [probe.get(i) for i in range(len(self._index.activation_layers))]

    def _write_update_ratio(self, step):
        before = self._weights_after_record
        self._weights_after_record = None
        self._record_step = None
        if before is None:
            return
        after = self._run.guard.run("weights", _read_weights, self._index)
        if after is None:
            return
        ratio = self._run.guard.run("update_ratio", _update_ratio, self._index, before, after)
        if ratio is not None:
            self._run.write(
                step, vectors=[(metadata.UPDATE_RATIO, ratio, self._index.layer_labels, {})]
            )

    def _config(self, step, xs, ys, y_pred):
        model = self.model
        config = _static_config(model, self._index, self.every_n_steps, "Recorder")
        if self.loss is not None:
            config["loss"] = _describe_loss(self.loss)
        if self.optimizer is not None:
            config["optimizer"] = _describe_optimizer(self.optimizer)
        config["batch_size"] = int(xs[0].shape[0]) if xs and xs[0].shape else None
        config["first_step"] = step
        preds = _flat_tensors(y_pred) if y_pred is not None else []
        units = [int(p.shape[-1]) if len(p.shape) >= 2 else 1 for p in preds]
        if not units:
            units = _output_info(model)[1]
        input_info = []
        feature_stats = []
        for i, t in enumerate(xs):
            shape = tuple(t.shape)
            features = int(shape[-1]) if len(shape) >= 2 and shape[-1] <= _MAX_FEATURES else 1
            input_info.append(("input_%d" % i, features))
            feature_stats.append(_feature_stats(t, features).numpy())
        label_summaries, label_counts = [], []
        if len(ys) == len(units):
            for t, u in zip(ys, units):
                summary, counts = _label_stats(t, _class_slots(u))
                label_summaries.append(summary.numpy())
                label_counts.append(counts.numpy())
        config["data"] = _data_summary(
            input_info,
            feature_stats,
            label_summaries,
            label_counts,
            [tf.convert_to_tensor(t).dtype.name for t in xs],
            [tf.convert_to_tensor(t).dtype.name for t in ys],
            [[int(d) for d in t.shape] for t in ys],
        )
        return config

    def record_epoch(self, step, logs):
        """Writes epoch-level values (e.g. ``{"loss": ..., "val_loss": ...}``) at `step`."""
        self._run.write_epoch(int(step), logs)

    def flush(self):
        self._run.flush()

    def close(self):
        """Flushes, and removes the activation wraps from the model."""
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
            self._index = None
        self._run.close()
