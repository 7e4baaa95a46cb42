"""The recording side: writes what the diagnosis needs into TensorBoard event files.

Three levels:
  * `write_scalar`, `write_vector`, `write_config`: low-level writers into the
    default `tf.summary` writer, with tb_plateau's metadata.
  * `Recorder`: for custom `tf.GradientTape` loops, one call per step.
  * `PlateauCallback`: for `model.fit`, one line.

How the callback sees gradients: Keras 3 callbacks see neither the batch nor
the gradients, so at `on_train_begin` the callback wraps, on this model
instance only, `compute_loss`, the optimizer's `apply` and the `call` of each
layer with an activation, then re-traces the train function. Inside the traced
step, on recorded steps only (a `tf.cond` on a flag the callback sets), the
wraps reduce the real batch's loss, gradients and activations to a few
numbers each and store them in variables; the callback reads those after the
step and writes them. Steps that are not recorded pay one `tf.cond` per
wrapped function. The wraps are removed at `on_train_end`.
"""

import atexit
import functools
import json
import logging
import math
import os
import tempfile
import threading
import weakref

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2

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

# Activation families, by the function's name.
RELU_FAMILY = frozenset(
    [
        "relu",
        "relu6",
        "leaky_relu",
        "prelu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "swish",
        "hard_silu",
        "hard_swish",
        "mish",
        "celu",
        "threshold",
    ]
)
SIGMOID_FAMILY = frozenset(["sigmoid", "hard_sigmoid"])
TANH_FAMILY = frozenset(["tanh", "softsign", "hard_tanh"])
SOFTMAX_FAMILY = frozenset(["softmax", "log_softmax"])
# An output this close to its limit passes (almost) no gradient: sigmoid'(x) at
# 0.97 is 0.03, a thirtieth of its peak; the same cut for |tanh|.
SATURATION_MARGIN = 0.03

_ACTIVATION_LAYER_NAMES = {
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "ELU": "elu",
    "Softmax": "softmax",
}

# Per-layer entries stored in the step variables.
_GRAD_FIELDS = ("norm", "zero_count", "nonfinite")
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
    if rank >= 3 and getattr(layer, "data_format", None) == "channels_first":
        return 1
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
        self.activation_layers = []  # (layer, label, activation name)
        seen = set()
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if id(layer) in seen or not _is_leaf(layer):
                continue
            seen.add(id(layer))
            name = _activation_name(layer)
            if name is not None:
                label = getattr(layer, "path", None) or layer.name
                label = _layer_label(model.name, label + "/x")
                self.activation_layers.append((layer, label, name))

    @property
    def activation_labels(self):
        return [label for _, label, _ in self.activation_layers]

    @property
    def activation_names(self):
        return [name for _, _, name in self.activation_layers]

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
                "tb_plateau: recording %r failed and stops for this run (training goes on): %s: %s",
                name,
                type(e).__name__,
                e,
            )
            return None


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
    """Writes one run's records; flushes at the first non-finite value and on exit."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self._writer = None
        self.guard = _Guard()
        self._config_written = False
        self._nonfinite_flushed = False
        self._write_failed = False
        atexit.register(_flush_at_exit, weakref.ref(self))

    def _get_writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def write(self, step, scalars=(), vectors=(), config=None):
        """scalars: [(name, value)]; vectors: [(name, values, labels, extra)]."""
        if self._write_failed:
            return
        try:
            writer = self._get_writer()
            with writer.as_default(), tf.device("/cpu:0"):
                for name, value in scalars:
                    self.guard.run(name, write_scalar, name, value, step)
                for name, values, labels, extra in vectors:
                    self.guard.run(name, write_vector, name, values, labels, step, **extra)
                if config is not None and not self._config_written:
                    self._config_written = True
                    self.guard.run(metadata.CONFIG, write_config, config, step)
        except Exception as e:
            # A full or read-only disk: one warning, then recording stops.
            self._write_failed = True
            logger.warning(
                "tb_plateau: cannot write to %r; recording stops, training goes on: %s",
                self.log_dir,
                e,
            )

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


def _flush_at_exit(ref):
    writer = ref()
    if writer is not None:
        writer.flush()


def _weights_stats(index):
    """Per layer: [weight sum of squares, NaN/Inf weights]. Eager, on the host's copy."""
    sumsq = np.zeros(len(index.layer_labels))
    nonfinite = np.zeros(len(index.layer_labels))
    for v in index.variables:
        i = index.var_layer[_var_key(v)]
        w = np.asarray(v.numpy(), dtype=np.float64)
        finite = np.isfinite(w)
        nonfinite[i] += w.size - np.count_nonzero(finite)
        sumsq[i] += float(np.sum(np.square(w, where=finite, out=np.zeros_like(w))))
    return sumsq, nonfinite


def _update_ratio(index, before):
    """Per layer ||W_after - W_before|| / ||W_before|| over one step."""
    delta = np.zeros(len(index.layer_labels))
    base = np.zeros(len(index.layer_labels))
    for v, w0 in zip(index.variables, before):
        i = index.var_layer[_var_key(v)]
        w1 = np.asarray(v.numpy(), dtype=np.float64)
        delta[i] += float(np.sum(np.square(w1 - w0)))
        base[i] += float(np.sum(np.square(w0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(delta) / np.sqrt(base)


def _data_summary(
    index, input_names, feature_stats, label_stats, class_counts, x_dtypes, y_dtypes, y_shapes
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

    Two modes. In-step (PlateauCallback): inside the traced train step, each
    wrap adds a `tf.cond` on the record flag whose true branch stores its
    statistics in variables. Probe (Recorder): during an eager forward pass
    the activation wraps put their statistics in a dict. Outside these the
    wraps add nothing to the graph.
    """

    def __init__(self, index, guard):
        self.index = index
        self.guard = guard
        self.local = threading.local()
        self._restore = []
        self.vars = None  # _StepVariables, in-step mode only
        self.missing = [0.0] * len(index.layer_labels)

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
        for i, (layer, _, activation) in enumerate(self.index.activation_layers):
            original = layer.call

            def call(*args, _original=original, _i=i, _layer=layer, _act=activation, **kwargs):
                output = _original(*args, **kwargs)
                self._on_activation(_i, _layer, _act, output)
                return output

            functools.update_wrapper(call, original)
            self._patch(layer, "call", call)

    def install_train_step(self, model):
        original_train_step = model.train_step
        original_compute_loss = model.compute_loss

        def train_step(*args, **kwargs):
            self.local.in_train = True
            self.local.pending_activations = []
            try:
                return original_train_step(*args, **kwargs)
            finally:
                self.local.in_train = False
                self.local.record = None
                self.local.pending_activations = []

        def compute_loss(*args, **kwargs):
            loss = original_compute_loss(*args, **kwargs)
            if getattr(self.local, "in_train", False):
                bound = dict(zip(("x", "y", "y_pred", "sample_weight"), args))
                bound.update({k: v for k, v in kwargs.items() if k != "training"})
                if kwargs.get("training", True):
                    self.guard.run("loss", self._on_loss, bound, loss)
            return loss

        functools.update_wrapper(train_step, original_train_step)
        functools.update_wrapper(compute_loss, original_compute_loss)
        self._patch(model, "train_step", train_step)
        self._patch(model, "compute_loss", compute_loss)

        optimizer = model.optimizer
        while hasattr(optimizer, "inner_optimizer"):
            # Below a LossScaleOptimizer: unscaled gradients, and only those
            # it applies (it skips the steps whose scaled gradients overflow).
            optimizer = optimizer.inner_optimizer
        original_apply = optimizer.apply

        def apply(grads, trainable_variables=None):
            variables = trainable_variables
            if variables is None:
                variables = getattr(optimizer, "_trainable_variables", None) or []
            self.guard.run("gradients", self._on_gradients, list(grads), list(variables))
            return original_apply(grads, trainable_variables)

        functools.update_wrapper(apply, original_apply)
        self._patch(optimizer, "apply", apply)

    # -- the statistics

    def _record_condition(self):
        record = getattr(self.local, "record", None)
        if record is None:
            record = self.vars.flag.read_value()
        return record

    def _on_activation(self, i, layer, activation, output):
        if "activations" in self.guard.disabled:
            return
        tensor = output[0] if isinstance(output, (list, tuple)) and output else output
        if not tf.is_tensor(tensor) or not tensor.dtype.is_floating:
            return
        probe = getattr(self.local, "probe", None)
        if probe is not None:
            axis = _unit_axis(layer, tensor.shape.rank or 0)
            probe[i] = self.guard.run(
                "activations", lambda: _activation_stats(tensor, activation, axis).numpy()
            )
            return
        if not getattr(self.local, "in_train", False) or self.vars is None:
            return
        # Stored by the step's one `tf.cond` (in compute_loss, else in apply).
        self.local.pending_activations.append((i, layer, activation, tensor))

    def _store_activations(self):
        pending = getattr(self.local, "pending_activations", None) or []
        self.local.pending_activations = []
        if "activations" in self.guard.disabled:
            return
        for i, layer, activation, tensor in pending:
            axis = _unit_axis(layer, tensor.shape.rank or 0)
            stats = _activation_stats(tf.stop_gradient(tensor), activation, axis)
            self.vars.activations[i].assign(stats * self.vars.replica_weights_act)

    def _on_loss(self, bound, loss):
        x, y, y_pred = bound.get("x"), bound.get("y"), bound.get("y_pred")
        loss_value = tf.reduce_mean(_float32(loss))
        replicas = float(self.vars.replicas)
        xs = _flat_tensors(x)
        ys = _flat_tensors(y)
        preds = _flat_tensors(y_pred)
        # Checked on every step (one reduction per input and label tensor), so
        # that the first NaN/Inf is recorded at the step it appears.
        inputs_nonfinite = _nonfinite_count(xs)
        labels_nonfinite = _nonfinite_count(ys)
        loss_nonfinite = _nonfinite_count([loss_value])
        nonfinite = (inputs_nonfinite + labels_nonfinite + loss_nonfinite) > 0
        triggered = tf.logical_and(self.vars.armed.read_value() > 0.5, nonfinite)
        record = tf.logical_or(self.vars.flag.read_value(), triggered)
        self.local.record = record
        iteration = tf.cast(tf.convert_to_tensor(self.vars.iterations), tf.float32)

        def store():
            self.guard.run("activations", self._store_activations)
            batch = tf.cast(tf.shape(xs[0])[0], tf.float32) if xs else tf.constant(0.0)
            step_stats = tf.stack(
                [loss_value, inputs_nonfinite, labels_nonfinite, loss_nonfinite, batch]
            )
            self.vars.step.assign(step_stats * replicas)
            # The first NaN/Inf step stays in the variables (nothing else is
            # stored until the host looks) and disarms this trigger.
            self.vars.triggered.assign(tf.stack([tf.cast(triggered, tf.float32), iteration]))
            self.vars.armed.assign(tf.where(triggered, 0.0, self.vars.armed.read_value()))
            for out_var, pred in zip(self.vars.outputs, preds):
                out_var.assign(_output_stats(tf.stop_gradient(pred)))
            if len(xs) == len(self.vars.features):
                for feature_var, tensor in zip(self.vars.features, xs):
                    feature_var.assign(_feature_stats(tensor, feature_var.shape[0]))
            if len(ys) == len(self.vars.label_summaries):
                for summary_var, counts_var, tensor in zip(
                    self.vars.label_summaries, self.vars.label_counts, ys
                ):
                    summary, counts = _label_stats(tensor, counts_var.shape[0])
                    summary_var.assign(summary)
                    counts_var.assign(counts * replicas)

        self.vars.shapes = {
            "x_dtypes": [t.dtype.name for t in xs],
            "y_dtypes": [t.dtype.name for t in ys],
            "y_shapes": [[None if d is None else int(d) for d in t.shape] for t in ys],
        }
        tf.cond(record, store, _noop)

    def _on_gradients(self, grads, variables):
        if self.vars is None:
            return
        per_layer, missing = self.index.group_grads(grads, variables)
        self.missing = missing
        replicas = float(self.vars.replicas)

        def store():
            if getattr(self.local, "pending_activations", None):
                # A train_step that did not call compute_loss.
                self.guard.run("activations", self._store_activations)
            stats = tf.stack([_gradient_stats(g) for g in per_layer])
            # Norms and NaN counts add up over replicas (each holds its
            # share of the batch); zero counts are averaged.
            self.vars.gradients.assign(stats * tf.constant([replicas, 1.0, replicas]))

        if per_layer:
            tf.cond(self._record_condition(), store, _noop)


def _noop():
    return None


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
    multiplied by the replica count).
    """

    def __init__(self, index, strategy, input_info, output_units, iterations):
        self.iterations = iterations
        self.replicas = strategy.num_replicas_in_sync
        self.replica_weights_act = tf.constant([1.0, 1.0, 1.0, 1.0, float(self.replicas)])
        self.shapes = {}

        def on_read(shape, name):
            return tf.Variable(
                tf.zeros(shape),
                trainable=False,
                name="tb_plateau_" + name,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.MEAN,
            )

        with strategy.scope():
            self.flag = tf.Variable(False, trainable=False, name="tb_plateau_record")
            # Until the first NaN/Inf is recorded, one appearing records its
            # step: [triggered (0/1), optimizer iteration at that step].
            self.armed = on_read([], "armed")
            self.triggered = on_read([2], "triggered")
            self.step = on_read([len(_STEP_FIELDS)], "step")
            self.gradients = on_read([max(len(index.layer_labels), 1), 3], "gradients")
            self.activations = [
                on_read([len(_ACT_FIELDS)], "act_%d" % i)
                for i in range(len(index.activation_layers))
            ]
            self.outputs = [
                on_read([len(_OUTPUT_FIELDS)], "output_%d" % i) for i in range(len(output_units))
            ]
            self.features = [
                on_read([features, len(_FEATURE_FIELDS)], "features_%d" % i)
                for i, (_, features) in enumerate(input_info)
            ]
            self.label_summaries = [
                on_read([len(_LABEL_FIELDS)], "labels_%d" % i) for i in range(len(output_units))
            ]
            self.label_counts = [
                on_read([_class_slots(units)], "classes_%d" % i)
                for i, units in enumerate(output_units)
            ]

    def reset(self):
        nan = float("nan")
        for v in [self.step, self.gradients, *self.activations, *self.outputs]:
            v.assign(tf.fill(v.shape, nan))

    def read(self):
        return {
            "step": self.step.numpy(),
            "gradients": self.gradients.numpy(),
            "activations": [v.numpy() for v in self.activations],
            "outputs": [v.numpy() for v in self.outputs],
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
):
    """The vectors of one record, and the NaN/Inf totals per source.

    gradients: [layers, 3] norm / zero count / NaN count, or None.
    activations: per activation layer a [5] array or None.
    outputs: per output a [6] array.
    step_nonfinite: NaN/Inf counts in inputs, labels and loss.
    """
    labels = index.layer_labels
    vectors = []
    weights = guard.run("weights", _weights_stats, index)
    weights_nonfinite_total = 0.0
    if weights is not None:
        weights_sumsq, weights_nonfinite = weights
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
    return vectors, sum(nonfinite) > 0


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
            {"layer": label, "activation": name} for _, label, name in index.activation_layers
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
        self._recording = False
        self._weights_before = None
        self._nonfinite_seen = False
        self._config = None
        self._output_names = []
        self._input_info = []

    # Keras' async dispatch would run on_train_batch_end off the training thread.
    async_safe = False

    def _guard(self):
        return self._run.guard

    def on_train_begin(self, logs=None):
        if self._run is None:
            self._run = _RunWriter(self.log_dir)
        try:
            self._step = int(self.model.optimizer.iterations.numpy())
        except Exception:
            self._step = 0
        self._try_setup()

    def _try_setup(self):
        # A subclassed model creates its variables in its first step: until
        # then there is nothing to watch, and setup waits for that step's end.
        if not self.model.built or not self.model.trainable_variables:
            return
        self._run.guard.run("setup", self._setup)
        if "setup" in self._run.guard.disabled:
            self._guard().run("teardown", self._teardown)

    def _setup(self):
        model = self.model
        self._index = _ModelIndex(model)
        self._output_names, output_units = _output_info(model)
        self._input_info = _input_info(model)
        strategy = model.distribute_strategy
        self._vars = _StepVariables(
            self._index, strategy, self._input_info, output_units, model.optimizer.iterations
        )
        self._vars.reset()
        self._vars.armed.assign(1.0)
        self._hooks = _Hooks(self._index, self._run.guard)
        self._hooks.vars = self._vars
        self._hooks.install_activations()
        self._hooks.install_train_step(model)
        self._config = _static_config(model, self._index, self.every_n_steps, "PlateauCallback")
        self._config["steps_per_epoch"] = (self.params or {}).get("steps")
        self._config["epochs"] = (self.params or {}).get("epochs")
        model.make_train_function(force=True)
        self._wrap_train_function(model)

    def _wrap_train_function(self, model):
        train_function = model.train_function
        callback = self

        def guarded(*args, **kwargs):
            try:
                return train_function(*args, **kwargs)
            except BaseException:
                # The run crashed or was interrupted: keep what was recorded.
                callback._write_pending_nonfinite()
                callback._run.flush()
                raise

        model.train_function = guarded

    def _teardown(self):
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
            # The traced function holds the wraps: let the next fit trace anew.
            self.model.train_function = None

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin = batch
        if self._vars is None or "setup" in self._guard().disabled:
            return
        due = self._step % self.every_n_steps == 0 or not self._run._config_written
        if due:
            # A NaN/Inf in the inputs or labels that left the loss finite
            # was kept by the step it appeared in: write it before this record.
            self._write_pending_nonfinite()
            self._recording = True
            self._guard().run("flag", self._vars.flag.assign, True)
            self._weights_before = self._guard().run(
                "update_ratio", lambda: [np.array(v.numpy()) for v in self._index.variables]
            )

    def on_train_batch_end(self, batch, logs=None):
        step = self._step
        self._step += max(1, batch - getattr(self, "_batch_begin", batch) + 1)
        if self._vars is None and "setup" not in self._guard().disabled:
            self._try_setup()
            return
        if self._vars is None or "setup" in self._guard().disabled:
            return
        if not self._nonfinite_seen and not _is_finite_number((logs or {}).get("loss")):
            # The first non-finite loss: its step stored everything; write now.
            self._write_pending_nonfinite()
        if self._recording:
            self._guard().run("record", self._record, step)
            self._recording = False
            self._guard().run("flag", self._vars.flag.assign, False)

    def _write_pending_nonfinite(self):
        if self._nonfinite_seen:
            return
        triggered = self._guard().run("nonfinite", self._vars.triggered.numpy)
        if triggered is None or not triggered[0] > 0:
            return
        self._nonfinite_seen = True
        self._guard().run("record", self._record, int(round(float(triggered[1]))))
        self._run.note_nonfinite()

    def _record(self, step):
        guard = self._guard()
        values = self._vars.read()
        # What the step did not store (a custom train_step that skips
        # compute_loss, a statistic switched off) reads NaN and is not written.
        guard.run("reset", self._vars.reset)
        step_stats = values["step"]
        loss_seen = "loss" not in guard.disabled and not np.all(np.isnan(step_stats))
        gradients = values["gradients"]
        if "gradients" in guard.disabled or np.all(np.isnan(gradients)):
            gradients = None
        activations = None
        if "activations" not in guard.disabled:
            activations = [None if np.all(np.isnan(a)) else a for a in values["activations"]]
            if all(a is None for a in activations):
                activations = None
        scalars = [(metadata.BATCH_LOSS, step_stats[0])] if loss_seen else []
        lr = guard.run("learning_rate", _current_learning_rate, self.model.optimizer)
        if lr is not None:
            scalars.append((metadata.LEARNING_RATE, lr))
        update_ratio = None
        if self._recording and self._weights_before is not None:
            update_ratio = guard.run(
                "update_ratio", _update_ratio, self._index, self._weights_before
            )
        self._weights_before = None
        vectors, _ = _record_vectors(
            self._index,
            guard,
            gradients=gradients,
            missing=self._hooks.missing if self._hooks else None,
            activations=activations,
            outputs=values["outputs"] if loss_seen else None,
            output_names=self._output_names,
            update_ratio=update_ratio,
            step_nonfinite=step_stats[1:4] if loss_seen else (0.0, 0.0, 0.0),
        )
        config = None
        if not self._run._config_written:
            config = dict(self._config)
            batch = float(step_stats[4])
            config["batch_size"] = int(round(batch)) if math.isfinite(batch) else None
            config["data"] = self._guard().run("data_summary", self._data_summary)
            config["first_step"] = step
        self._run.write(step, scalars=scalars, vectors=vectors, config=config)

    def _data_summary(self):
        shapes = self._vars.shapes
        return _data_summary(
            self._index,
            self._input_info,
            [v.numpy() for v in self._vars.features],
            [v.numpy() for v in self._vars.label_summaries],
            [v.numpy() for v in self._vars.label_counts],
            shapes.get("x_dtypes", []),
            shapes.get("y_dtypes", []),
            shapes.get("y_shapes", []),
        )

    def on_epoch_end(self, epoch, logs=None):
        if self._run is None:
            return
        if self._vars is not None:
            self._write_pending_nonfinite()
        scalars = []
        for key, value in (logs or {}).items():
            try:
                scalars.append((metadata.EPOCH_PREFIX + str(key), float(value)))
            except (TypeError, ValueError):
                continue
        self._run.write(self._step, scalars=scalars)
        self._run.flush()

    def on_train_end(self, logs=None):
        if self._run is None:
            return
        if self._vars is not None:
            self._write_pending_nonfinite()
        self._guard().run("teardown", self._teardown)
        self._run.flush()


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
        vectors, _ = _record_vectors(
            index,
            guard,
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
            self._weights_after_record = guard.run(
                "update_ratio", lambda: [np.array(v.numpy()) for v in index.variables]
            )
            self._record_step = step

    def _probe(self, x):
        self._hooks.local.probe = probe = {}
        try:
            self.model(x, training=False)
        finally:
            self._hooks.local.probe = None
        return [probe.get(i) for i in range(len(self._index.activation_layers))]

    def _write_update_ratio(self, step):
        before = self._weights_after_record
        self._weights_after_record = None
        self._record_step = None
        if before is None:
            return
        ratio = self._run.guard.run("update_ratio", _update_ratio, self._index, before)
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
            self._index,
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
        scalars = []
        for key, value in (logs or {}).items():
            try:
                scalars.append((metadata.EPOCH_PREFIX + str(key), float(value)))
            except (TypeError, ValueError):
                continue
        self._run.write(int(step), scalars=scalars)
        self._run.flush()

    def flush(self):
        self._run.flush()

    def close(self):
        """Flushes, and removes the activation wraps from the model."""
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
            self._index = None
        self._run.close()
