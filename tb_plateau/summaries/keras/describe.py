"""What the model looks like: its layers, loss, optimizer, inputs and outputs, described
for the configuration record."""

import collections

import keras
import numpy as np
import tensorflow as tf

from tb_plateau.summaries.keras.stats import _MAX_FEATURES, _var_key

_ACTIVATION_LAYER_NAMES = {
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "ELU": "elu",
    "Softmax": "softmax",
}


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


def _layer_settings(layer):
    """The layer's settings that it has: sizes and options, initializers, regularizers."""
    settings = {}
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
            settings[attr] = list(value) if isinstance(value, tuple) else value
    for attr in ("kernel_initializer", "bias_initializer", "embeddings_initializer"):
        init = getattr(layer, attr, None)
        if init is not None:
            settings[attr] = _initializer_name(init)
    for attr in _REGULARIZER_ATTRS:
        regularizer = getattr(layer, attr, None)
        if regularizer is not None:
            settings[attr] = _describe_regularizer(regularizer)
    initial = _moving_statistics_initial(layer)
    if initial is not None:
        settings["moving_statistics_initial"] = initial
    return settings


def _moving_statistics_initial(layer):
    """For a batch-normalization layer: True while its moving statistics are still their
    initial mean 0 and variance 1 (never trained, never loaded), else False; None for others.
    """
    mean = getattr(layer, "moving_mean", None)
    variance = getattr(layer, "moving_variance", None)
    if mean is None or variance is None:
        return None
    try:
        return bool(np.all(np.asarray(mean) == 0) and np.all(np.asarray(variance) == 1))
    except Exception:  # noqa: BLE001 - a variable that cannot be read says nothing
        return None


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
        entry.update(_layer_settings(layer))
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


def _current_learning_rate(optimizer, step_taken=False):
    """The optimizer's learning rate as a float (NaN when it cannot be read).

    With `step_taken`, the rate of the step the optimizer has just applied: a
    schedule is read at `iterations - 1`, as Keras' own `learning_rate`
    property reads it at `iterations`, the step to come.
    """
    try:
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = getattr(inner, "_learning_rate", None)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            step = inner.iterations - 1 if step_taken else inner.iterations
            return float(np.asarray(schedule(tf.maximum(step, 0))))
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


def _input_name(tensor):
    """The name `model.summary()` shows for an input: its InputLayer's ("pixels",
    "input_layer_1"), not the symbolic tensor's ("keras_tensor_8")."""
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None)
    return getattr(layer, "name", None) or getattr(tensor, "name", None) or "input"


def _input_info(model):
    """[(name, feature count)] of the model's inputs, from static shapes where known."""
    shapes = []
    names = []
    try:
        for t in tf.nest.flatten(model.inputs):
            shapes.append(t.shape)
            names.append(_input_name(t))
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
