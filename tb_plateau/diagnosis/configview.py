"""Read-only questions about the configuration record that `PlateauCallback` writes.

The record is JSON written once per run (see `tb_plateau.summaries`): the
layers in order, the loss, the optimizer, the batch size, and statistics of a
sample of inputs and labels. Every accessor tolerates a missing or partial
record (an older writer, a custom loop that wrote its own) and answers None.
"""

import math

import numpy as np

from tb_plateau import metadata

# Keras loss names (function and class spellings, lower-cased) by family.
_CROSS_ENTROPY = (
    "categorical_crossentropy",
    "categoricalcrossentropy",
    "sparse_categorical_crossentropy",
    "sparsecategoricalcrossentropy",
    "binary_crossentropy",
    "binarycrossentropy",
    "binary_focal_crossentropy",
    "binaryfocalcrossentropy",
    "categorical_focal_crossentropy",
    "categoricalfocalcrossentropy",
    "kl_divergence",
    "kldivergence",
)
_SQUARED_ERROR = ("mse", "mean_squared_error", "meansquarederror")
_NONNEGATIVE_LOSSES = (
    _CROSS_ENTROPY
    + _SQUARED_ERROR
    + (
        "mae",
        "mean_absolute_error",
        "meanabsoluteerror",
        "huber",
        "huber_loss",
        "msle",
        "mean_squared_logarithmic_error",
        "meansquaredlogarithmicerror",
        "hinge",
        "squared_hinge",
        "categorical_hinge",
        "poisson",
        "log_cosh",
        "logcosh",
    )
)
_REGRESSION_LOSSES = _SQUARED_ERROR + (
    "mae",
    "mean_absolute_error",
    "meanabsoluteerror",
    "huber",
    "huber_loss",
    "log_cosh",
    "logcosh",
)

# Layers that make raw inputs fine: they normalize, rescale or look up ids.
INPUT_ADAPTING_LAYERS = frozenset(
    [
        "Normalization",
        "Rescaling",
        *metadata.NORMALIZATION_LAYERS,
        "Embedding",
        "EmbeddingBag",
        "StringLookup",
        "IntegerLookup",
        "TextVectorization",
        "CategoryEncoding",
        "Hashing",
        "Discretization",
        "HashedCrossing",
    ]
)
# Layers that only reshape: the first layer that does arithmetic comes after them.
_SHAPE_ONLY_LAYERS = frozenset(
    [
        "InputLayer",
        "Flatten",
        "Reshape",
        "Permute",
        "Dropout",
        "RepeatVector",
        "Cropping1D",
        "Cropping2D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "Masking",
        # PyTorch
        "Unflatten",
        "Identity",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
    ]
)


# A label sample smaller than this says nothing about the labels' distribution:
# neither their class frequencies nor that they are all alike (16 draws of 3
# balanced classes are all one class with probability 7e-8).
MIN_LABEL_SAMPLE = 16  # labels
# Labels equal to an input on at least this share of their entries are that
# input (a reconstruction's targets; a few NaNs may differ).
TARGETS_ARE_INPUTS_MATCH = 0.99


def _canon(name):
    return str(name or "").lower().replace(" ", "_")


class ConfigView:
    """Questions the detectors ask of the configuration record."""

    def __init__(self, config):
        self.raw = config if isinstance(config, dict) else {}
        self._by_name = None  # name or path -> first leaf layer so named

    # ----- layers

    @property
    def layers(self):
        """Leaf layers in model order (dicts with name, class, activation, units...)."""
        layers = self.raw.get("layers") or []
        return [layer for layer in layers if isinstance(layer, dict) and not layer.get("nested")]

    def layer(self, name):
        if self._by_name is None:
            # Built once: detectors ask for every layer of a thousand-layer model.
            self._by_name = {}
            for layer in self.layers:
                for key in (layer.get("name"), layer.get("path")):
                    try:
                        self._by_name.setdefault(key, layer)
                    except TypeError:  # an unhashable name from a hand-written record
                        pass
        try:
            return self._by_name.get(name)
        except TypeError:
            return None

    def layer_for_label(self, label):
        """The layer a recorded series' label names (its name or path, else the last part of
        a nested label), or None."""
        return self.layer(label) or self.layer(str(label).split("/")[-1])

    @property
    def computing_layers(self):
        """Layers that do arithmetic on their input (not Flatten, Dropout, ...)."""
        return [layer for layer in self.layers if layer.get("class") not in _SHAPE_ONLY_LAYERS]

    @property
    def first_layer(self):
        layers = self.computing_layers
        return layers[0] if layers else None

    @property
    def output_layer(self):
        """The last layer with weights or an activation, or None."""
        for layer in reversed(self.computing_layers):
            if layer.get("params") or layer.get("activation") or layer.get("units"):
                return layer
        return None

    @property
    def output_activation(self):
        """The output's activation name: the last activation at or after the last
        layer with units (an `Activation("softmax")` after `Dense(10)` counts)."""
        layers = self.computing_layers
        last_with_units = None
        for i, layer in enumerate(layers):
            if _units(layer) is not None:
                last_with_units = i
        if last_with_units is None:
            return None
        activation = None
        for layer in layers[last_with_units:]:
            if layer.get("activation"):
                activation = layer.get("activation")
        return activation

    @property
    def _model_output_units(self):
        model = self.raw.get("model")
        units = model.get("output_units") if isinstance(model, dict) else None
        return units if isinstance(units, list) else None

    @property
    def output_units(self):
        units = self._model_output_units
        if units and len(units) == 1 and isinstance(units[0], int):
            return units[0]
        for layer in reversed(self.computing_layers):
            units = _units(layer)
            if units is not None:
                return units
        return None

    @property
    def has_multiple_outputs(self):
        units = self._model_output_units
        return bool(units) and len(units) > 1

    @property
    def hidden_widths(self):
        """(layer name, units) of the layers with units before the output layer."""
        widths = [
            (layer.get("name"), _units(layer))
            for layer in self.computing_layers
            if _units(layer) is not None
        ]
        return widths[:-1]

    @property
    def batchnorm_layers(self):
        return [
            layer
            for layer in self.layers
            if layer.get("class") in metadata.BATCH_NORMALIZATION_LAYERS
        ]

    @property
    def is_empty(self):
        return not self.raw

    @property
    def framework(self):
        """ "pytorch" for a record from `summaries.torch`, "keras" for the Keras recorders
        (which name no framework), None without a record."""
        if self.is_empty:
            return None
        return str(self.raw.get("framework") or "keras")

    # ----- loss

    @property
    def loss(self):
        loss = self.raw.get("loss")
        if isinstance(loss, dict) and "per_output" in loss:
            return None  # several losses: the per-output checks do not apply
        return loss if isinstance(loss, dict) else None

    @property
    def loss_name(self):
        loss = self.loss
        return _canon(loss.get("name")) if loss else None

    @property
    def loss_class(self):
        loss = self.loss
        return _canon(loss.get("class")) if loss else None

    def _loss_in(self, names):
        return bool(self.loss) and (self.loss_name in names or self.loss_class in names)

    @property
    def is_custom_loss(self):
        loss = self.loss
        return bool(loss and loss.get("custom"))

    @property
    def is_cross_entropy(self):
        return self._loss_in(_CROSS_ENTROPY)

    @property
    def is_binary_cross_entropy(self):
        return self._loss_in(
            (
                "binary_crossentropy",
                "binarycrossentropy",
                "binary_focal_crossentropy",
                "binaryfocalcrossentropy",
            )
        )

    @property
    def is_sparse_cross_entropy(self):
        return self._loss_in(("sparse_categorical_crossentropy", "sparsecategoricalcrossentropy"))

    @property
    def is_categorical_cross_entropy(self):
        return self.is_cross_entropy and not (
            self.is_binary_cross_entropy or self.is_sparse_cross_entropy
        )

    @property
    def is_squared_error(self):
        return self._loss_in(_SQUARED_ERROR)

    @property
    def is_regression_loss(self):
        return self._loss_in(_REGRESSION_LOSSES)

    @property
    def loss_cannot_be_negative(self):
        return self._loss_in(_NONNEGATIVE_LOSSES)

    @property
    def from_logits(self):
        loss = self.loss
        value = loss.get("from_logits") if loss else None
        return value if isinstance(value, bool) else None

    # ----- optimizer

    @property
    def optimizer_name(self):
        optimizer = self.raw.get("optimizer")
        return optimizer.get("name") if isinstance(optimizer, dict) else None

    @property
    def learning_rate(self):
        optimizer = self.raw.get("optimizer")
        if not isinstance(optimizer, dict):
            return None
        config = optimizer.get("config") or {}
        return _finite_float(config.get("learning_rate", optimizer.get("learning_rate")))

    @property
    def _optimizer_config(self):
        optimizer = self.raw.get("optimizer")
        return (optimizer.get("config") or {}) if isinstance(optimizer, dict) else {}

    @property
    def weight_decay(self):
        """The optimizer's decoupled weight decay (AdamW, ...), or None."""
        return _finite_float(self._optimizer_config.get("weight_decay"))

    @property
    def label_smoothing(self):
        loss = self.loss
        return _finite_float(loss.get("label_smoothing")) if loss else None

    @property
    def penalties(self):
        """[(layer name, what, coefficient)]: each layer's L1/L2 penalties."""
        found = []
        for layer in self.layers:
            for attr, value in layer.items():
                if not attr.endswith("_regularizer") or not isinstance(value, dict):
                    continue
                for kind in ("l1", "l2"):
                    coefficient = _finite_float(value.get(kind))
                    if coefficient:
                        found.append((layer.get("name"), "%s %s" % (attr, kind), coefficient))
        return found

    @property
    def dropout_rates(self):
        """[(layer name, rate)] of the dropout layers."""
        return [
            (layer.get("name"), float(layer["rate"]))
            for layer in self.layers
            if "Dropout" in str(layer.get("class")) and _finite_float(layer.get("rate"))
        ]

    @property
    def steps_per_epoch(self):
        value = self.raw.get("steps_per_epoch")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def epochs(self):
        """The epochs the training was asked for (Keras' fit), or None."""
        value = self.raw.get("epochs")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    @property
    def batch_size(self):
        value = self.raw.get("batch_size")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    # ----- data

    def _data(self, key):
        data = self.raw.get("data")
        entries = data.get(key) if isinstance(data, dict) else self.raw.get(key)
        if isinstance(entries, dict):
            entries = [entries]
        return [e for e in entries or [] if isinstance(e, dict)]

    @property
    def inputs(self):
        return self._data("inputs")

    @property
    def labels(self):
        """The statistics of the labels, when the model has one output, else None."""
        labels = self._data("labels")
        return labels[0] if len(labels) == 1 else None

    @property
    def label_mean(self):
        labels = self.labels
        return _finite_float(labels.get("mean")) if labels else None

    @property
    def label_std(self):
        labels = self.labels
        return _finite_float(labels.get("std")) if labels else None

    @property
    def label_principal_shares(self):
        """Shares of the labels' variance along their first principal directions (per
        sample, over one batch; largest first), or None where not recorded (one entry per
        sample, or a recorder before them)."""
        labels = self.labels
        shares = labels.get("principal_shares") if labels else None
        if not isinstance(shares, list) or not shares:
            return None
        values = [_finite_float(v) for v in shares]
        return None if None in values else np.asarray(values, dtype=float)

    @property
    def label_range(self):
        labels = self.labels
        if not labels:
            return None, None
        return _finite_float(labels.get("min")), _finite_float(labels.get("max"))

    @property
    def targets_are_inputs(self):
        """True when the recorded labels equal an input entry for entry (an autoencoder's
        `fit(x, x)`): such targets cannot lack signal about the inputs."""
        labels = self.labels
        match = _finite_float(labels.get("input_match_fraction")) if labels else None
        return match is not None and match >= TARGETS_ARE_INPUTS_MATCH

    @property
    def class_frequencies(self):
        labels = self.labels
        counts = labels.get("class_counts") if labels else None
        if not counts:
            return None
        counts = np.asarray(counts, float)
        if counts.sum() < MIN_LABEL_SAMPLE:
            return None  # a handful of labels says little about their frequencies
        return counts / counts.sum()

    @property
    def label_sample_size(self):
        """How many labels the recorded label statistics were taken over, or None."""
        labels = self.labels
        shape = labels.get("shape") if labels else None
        if not shape or not isinstance(shape[0], (int, float)):
            return None
        return int(shape[0])

    @property
    def label_sample_entries(self):
        """Entries of one sample's label (1 for a class id or a scalar target), or None."""
        labels = self.labels
        shape = labels.get("shape") if labels else None
        if not isinstance(shape, list) or not shape:
            return None
        if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
            return None
        return int(np.prod(shape[1:])) if len(shape) > 1 else 1

    @property
    def distinct_labels(self):
        labels = self.labels
        value = labels.get("distinct_classes", labels.get("distinct")) if labels else None
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def num_classes(self):
        """Classes of a classification output: units, or 2 for one sigmoid unit."""
        if not self.is_cross_entropy:
            return None
        units = self.output_units
        if units is None:
            return None
        return 2 if units == 1 else units


def _units(layer):
    for key in ("units", "filters"):
        value = layer.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _finite_float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
