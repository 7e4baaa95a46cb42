"""Configuration: what the configuration record alone shows is wrong.

Inputs far from unit scale, targets far from it, a loss that does not fit the
output or the labels, labels without information. (Batch normalization that
cannot work: `batchnorm`.)
"""

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import causes, configview
from tb_plateau.diagnosis.finding import Finding, fmt, fmt_ratio

# A feature's typical magnitude (max of |mean| and std) beyond this is an
# order of magnitude off unit scale (published: features outside [-1, 1] by
# orders of magnitude). 0-255 pixels and raw tabular units pass it easily.
LARGE_FEATURE_SCALE = 10.0
# Regression targets this far from unit scale (mean or std) need scaling when
# the model has not even learned their mean; targets in the tens train fine.
LARGE_TARGET_SCALE = 100.0
# Per-feature standard deviations differing by more than this (published: scales
# that differ by more than 100x) ...
SCALE_SPREAD = 100.0  # max std / min std
# ... matter only when the largest is itself off unit scale: a rare binary
# feature (std 0.01) beside standardized ones is fine.
SPREAD_MIN_LARGEST_SCALE = 3.0

# Labels with a spread this small cannot be told apart by a squared error the
# optimizer can see (float32 and typical loss scales).
TINY_LABEL_STD = 1e-3

# Tolerance on "labels within the output's range".
RANGE_TOLERANCE = 0.01
# Target rows whose sum is this far from 1 on average are not one class per
# sample (multi-label): a softmax output, summing to 1, cannot match them.
MULTI_LABEL_ROW_SUM_GAP = 0.1

_PROBABILITY_OUTPUTS = ("softmax", "sigmoid")


def _scales(inp):
    mean = np.abs(np.asarray(inp.get("mean") or [], float))
    std = np.asarray(inp.get("std") or [], float)
    if not len(mean) or len(mean) != len(std):
        return None, None
    return np.maximum(mean, std), std


def detect_unnormalized_inputs(ctx):
    """Raw features in the hundreds or thousands, or on very different scales."""
    config = ctx.config
    if not config.inputs:
        return None
    first = config.first_layer
    if first is not None and first.get("class") in configview.INPUT_ADAPTING_LAYERS:
        return None
    problems = []
    evidence = {"inputs": []}
    for inp in config.inputs:
        scale, std = _scales(inp)
        if scale is None:
            continue
        finite = np.isfinite(scale)
        if not finite.any():
            continue
        largest = int(np.nanargmax(np.where(finite, scale, -1)))
        positive = std[np.isfinite(std) & (std > 0)]
        spread = float(positive.max() / positive.min()) if len(positive) >= 2 else 1.0
        name = inp.get("name") or "input"
        lows = np.asarray(inp.get("min") or [np.nan], float)
        highs = np.asarray(inp.get("max") or [np.nan], float)
        value_range = "[%s, %s]" % (fmt(np.nanmin(lows)), fmt(np.nanmax(highs)))
        entry = {
            "name": name,
            "largest_scale": float(scale[largest]),
            "scale_spread": spread,
            "range": [float(np.nanmin(lows)), float(np.nanmax(highs))],
        }
        if scale[largest] > LARGE_FEATURE_SCALE:
            feature = " (feature %d)" % largest if len(scale) > 1 else ""
            problems.append(
                "input %r has values in %s; its largest feature%s has mean %s and std %s,"
                " %s unit scale"
                % (
                    name,
                    value_range,
                    feature,
                    fmt(inp["mean"][largest]),
                    fmt(std[largest]),
                    fmt_ratio(scale[largest]) + " beyond",
                )
            )
            evidence["inputs"].append(entry)
        elif spread > SCALE_SPREAD and scale[largest] > SPREAD_MIN_LARGEST_SCALE:
            problems.append(
                "the features of input %r have standard deviations from %s to %s (%s apart)"
                % (name, fmt(positive.min()), fmt(positive.max()), fmt_ratio(spread))
            )
            evidence["inputs"].append(entry)
    if not problems:
        return None
    explanation = (
        "Inputs are not normalized: " + "; ".join(problems) + ". The first layer (%s) has no"
        " normalization before it, so its pre-activations are that large too: ReLUs die or"
        " sigmoid/tanh saturate, and one learning rate cannot suit both large and small"
        " features." % ((first or {}).get("name") or "?")
    )
    worst = max(e["largest_scale"] for e in evidence["inputs"])
    fixes = causes.fixes(causes.UNNORMALIZED_INPUTS)
    if config.targets_are_inputs:
        explanation += (
            " The targets are these same inputs (an autoencoder), so the output must reach"
            " their scale too: scale the data itself, not only what the first layer sees."
        )
        fixes = [
            "x = (x - x.min()) / (x.max() - x.min())  # scale the data itself, once: it is"
            " the autoencoder's targets too (a Normalization layer would scale only its inputs)"
        ]
    return Finding(
        cause=causes.UNNORMALIZED_INPUTS,
        severity=causes.WARNING,
        confidence=0.9 if worst > 10 * LARGE_FEATURE_SCALE else 0.75,
        title="Inputs are not normalized (values up to %s)"
        % fmt(max(abs(v) for e in evidence["inputs"] for v in e["range"])),
        explanation=explanation,
        first_step=0,
        layers=[first["name"]] if first and first.get("name") else [],
        evidence=dict(
            evidence,
            series=[],
            targets_are_inputs=config.targets_are_inputs,
            thresholds={"feature_scale": LARGE_FEATURE_SCALE, "scale_spread": SCALE_SPREAD},
        ),
        fixes=fixes,
    )


def _output_range(activation):
    """The values an output activation can produce, or None for unbounded."""
    return {
        "sigmoid": (0.0, 1.0),
        "hard_sigmoid": (0.0, 1.0),
        "softmax": (0.0, 1.0),
        "tanh": (-1.0, 1.0),
        "relu": (0.0, float("inf")),
        "relu6": (0.0, 6.0),
        "softplus": (0.0, float("inf")),
        "exponential": (0.0, float("inf")),
    }.get(activation)


def _mismatches(config):
    """[(severity, title, explanation, fixes)] of loss/output/label mismatches."""
    found = []
    units = config.output_units
    activation = config.output_activation
    loss = config.loss_name or config.loss_class
    label_min, label_max = config.label_range
    if units == 1 and activation == "softmax":
        found.append(
            (
                causes.CRITICAL,
                "Softmax over a single output unit",
                "The output layer has 1 unit with a softmax: a softmax over one value is"
                " always 1.0, whatever the input, so the loss cannot change.",
                [
                    'keras.layers.Dense(1, activation="sigmoid")  # loss="binary_crossentropy"',
                    'keras.layers.Dense(num_classes, activation="softmax")',
                ],
            )
        )
    if config.is_categorical_cross_entropy and units == 1:
        found.append(
            (
                causes.CRITICAL,
                "Categorical cross-entropy on a single output unit",
                "The loss %r compares a distribution over classes, but the output has 1"
                " unit: the cross-entropy of a one-class distribution is constant." % loss,
                [
                    "loss = keras.losses.BinaryCrossentropy()  # one unit, labels 0/1",
                    "keras.layers.Dense(num_classes)  # one unit per class",
                ],
            )
        )
    if (
        config.is_cross_entropy
        and config.from_logits is True
        and activation in _PROBABILITY_OUTPUTS
    ):
        found.append(
            (
                causes.WARNING,
                "Probabilities passed to a loss that expects logits",
                "The output layer applies %s, but %s: it applies %s again to values"
                " already in [0, 1], so predictions can never become confident and"
                " gradients stay weak." % (activation, _takes_logits(config), activation),
                [
                    "keras.layers.Dense(num_classes)  # drop the output activation, keep"
                    " from_logits=True"
                ],
            )
        )
    if (
        config.is_cross_entropy
        and config.from_logits is False
        and activation is None
        and units is not None
    ):
        found.append(
            (
                causes.CRITICAL,
                "Logits passed to a loss that expects probabilities",
                "The output layer has no activation (it outputs logits, any real number),"
                " but %s: it reads them as probabilities, clipping them to"
                " [1e-7, 1 - 1e-7], where the gradient is zero." % _takes_probabilities(config),
                [
                    "loss = keras.losses.%s(from_logits=True)" % _loss_class_name(config),
                    'keras.layers.Dense(units, activation="%s")'
                    % ("sigmoid" if units == 1 else "softmax"),
                ],
            )
        )
    if (
        config.is_binary_cross_entropy
        and label_min is not None
        and (label_min < -RANGE_TOLERANCE or label_max > 1 + RANGE_TOLERANCE)
    ):
        found.append(
            (
                causes.CRITICAL,
                "Binary cross-entropy on labels outside [0, 1]",
                "Binary cross-entropy needs labels in [0, 1], but they range over [%s, %s]:"
                " the loss can go negative and has no minimum where the model could"
                " settle." % (fmt(label_min), fmt(label_max)),
                ['y = (y > 0).astype("float32")  # e.g. labels -1/+1 -> 0/1'],
            )
        )
    if (
        config.is_sparse_cross_entropy
        and label_max is not None
        and units
        and label_max > units - 1 + RANGE_TOLERANCE
    ):
        found.append(
            (
                causes.CRITICAL,
                "Sparse labels out of range",
                "The labels go up to %s, but the output has %d units (classes 0 to %d):"
                " label %s has no unit.%s"
                % (
                    fmt(label_max),
                    units,
                    units - 1,
                    fmt(label_max),
                    " Labels start at %s: are they numbered from 1?" % fmt(label_min)
                    if label_min is not None and label_min >= 1
                    else "",
                ),
                [
                    "y = y - 1  # if classes are numbered from 1",
                    "keras.layers.Dense(int(y.max()) + 1)  # one unit per class id",
                ],
            )
        )
    row_sum = _finite_label_row_sum(config)
    if (
        activation == "softmax"
        and units
        and units > 1
        and row_sum is not None
        and abs(row_sum - 1.0) > MULTI_LABEL_ROW_SUM_GAP
        and label_min is not None
        and label_min >= -RANGE_TOLERANCE
        and label_max <= 1 + RANGE_TOLERANCE
    ):
        found.append(
            (
                causes.CRITICAL,
                "Softmax output for multi-label targets",
                "The output applies softmax, whose %d values always sum to 1, but the"
                " target rows sum to %s on average (several labels per sample): no output"
                " can match them, and raising one label's score lowers the others'."
                % (units, fmt(row_sum)),
                [
                    'keras.layers.Dense(num_labels, activation="sigmoid")  # one probability'
                    " per label, with\nloss = keras.losses.BinaryCrossentropy()",
                ],
            )
        )
    reachable = _output_range(activation)
    if config.is_regression_loss and reachable is not None and label_min is not None:
        low, high = reachable
        if label_min < low - RANGE_TOLERANCE or label_max > high + RANGE_TOLERANCE:
            found.append(
                (
                    causes.CRITICAL,
                    causes.TARGETS_OUT_OF_REACH,
                    "The output applies %s, which only produces values in [%s, %s], but the"
                    " regression targets range over [%s, %s]: the loss %r cannot go below"
                    " the error on the targets out of reach, and the units pinned at the"
                    " limit pass no gradient."
                    % (activation, fmt(low), fmt(high), fmt(label_min), fmt(label_max), loss),
                    ["keras.layers.Dense(1)  # a linear output for regression"],
                )
            )
    return found


def _takes_logits(config):
    if config.framework == "pytorch":
        return "%s takes raw logits" % config.loss.get("class")
    return "the loss %r has from_logits=True" % (config.loss_name or config.loss_class)


def _takes_probabilities(config):
    if config.framework == "pytorch":
        return "%s takes probabilities" % config.loss.get("class")
    return "the loss %r has from_logits=False" % (config.loss_name or config.loss_class)


# The same fixes as PyTorch code, by the problem's title.
_TORCH_MISMATCH_FIXES = {
    "Softmax over a single output unit": [
        "nn.Linear(hidden, 1)  # one logit, with nn.BCEWithLogitsLoss() and 0./1. labels",
        "nn.Linear(hidden, num_classes)  # one unit per class, with nn.CrossEntropyLoss()",
    ],
    "Categorical cross-entropy on a single output unit": [
        "loss_fn = nn.BCEWithLogitsLoss()  # one logit per sample, labels 0./1.",
        "nn.Linear(hidden, num_classes)  # one unit per class, with nn.CrossEntropyLoss()",
    ],
    "Probabilities passed to a loss that expects logits": [
        "model = nn.Sequential(..., nn.Linear(hidden, num_classes))  # no final nn.Softmax:"
        " nn.CrossEntropyLoss applies it itself (nn.BCEWithLogitsLoss the sigmoid)",
        "probabilities = model(x).softmax(dim=1)  # where you need them, at inference",
    ],
    "Logits passed to a loss that expects probabilities": [
        "loss_fn = nn.BCEWithLogitsLoss()  # instead of nn.BCELoss on raw outputs",
        "model = nn.Sequential(..., nn.Linear(hidden, 1), nn.Sigmoid())  # if nn.BCELoss stays",
    ],
    "Binary cross-entropy on labels outside [0, 1]": [
        "y = (y > 0).float()  # e.g. labels -1/+1 -> 0/1",
    ],
    "Sparse labels out of range": [
        "y = y - 1  # if classes are numbered from 1",
        "nn.Linear(hidden, int(y.max()) + 1)  # one unit per class id",
    ],
    "Softmax output for multi-label targets": [
        "nn.Linear(hidden, num_labels)  # one logit per label, with\n"
        "loss_fn = nn.BCEWithLogitsLoss()",
    ],
    "The output activation cannot reach the targets": [
        "nn.Linear(hidden, 1)  # a linear output for regression: no activation after it",
    ],
}


def torch_mismatch_fixes(finding):
    """A loss/output mismatch's fixes as PyTorch code, or None for other findings."""
    if finding.cause != causes.LOSS_OUTPUT_MISMATCH:
        return None
    fixes = []
    for problem in finding.evidence.get("problems") or []:
        fixes.extend(_TORCH_MISMATCH_FIXES.get(problem, []))
    return fixes or None


def _finite_label_row_sum(config):
    labels = config.labels
    if not labels or labels.get("encoding") == "sparse":
        return None
    value = labels.get("row_sum_mean")
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def _loss_class_name(config):
    if config.is_sparse_cross_entropy:
        return "SparseCategoricalCrossentropy"
    if config.is_binary_cross_entropy:
        return "BinaryCrossentropy"
    return "CategoricalCrossentropy"


_PROBABILITIES_AS_LOGITS = "Probabilities passed to a loss that expects logits"


def _double_activation_floor(config):
    """The lowest loss a cross-entropy can reach on outputs squashed twice, or None.

    Outputs already in [0, 1] passed through softmax again give the right
    class at most e / (e + K - 1); through sigmoid again, at most sigmoid(1)
    for a positive label (and 0.5 for a negative one).
    """
    units = config.output_units
    if not units:
        return None
    if units == 1:
        return float(np.log1p(np.exp(-1.0)))  # -ln sigmoid(1)
    return float(np.log(1.0 + (units - 1) / np.e))


def _forgiven(ctx, mismatch):
    """A probabilities-as-logits mismatch the run disproves becomes a note.

    Some Keras backends notice the output activation and use its input as the
    logits: the loss then goes below the floor a double activation allows.
    """
    severity, title, explanation, fixes = mismatch
    floor = _double_activation_floor(ctx.config)
    shape = ctx.train_shape
    if title != _PROBABILITIES_AS_LOGITS or floor is None or shape is None:
        return mismatch
    if not shape.best < 0.9 * floor:
        return mismatch
    return (
        causes.INFO,
        title + " (forgiven by this Keras)",
        explanation.split(":")[0]
        + ". Squashing twice would keep the loss above %s, but it reached %s: this Keras"
        " used the layer's input as the logits. Training works here; another backend or"
        " version may not forgive it." % (fmt(floor), fmt(shape.best)),
        fixes,
    )


def detect_loss_output_mismatch(ctx):
    """A loss that does not fit the output layer or the labels."""
    config = ctx.config
    if config.is_empty or config.loss is None or config.has_multiple_outputs:
        return None
    found = [_forgiven(ctx, f) for f in _mismatches(config)]
    if not found:
        return None
    severity = max((f[0] for f in found), key=lambda s: causes.SEVERITY_RANK[s])
    output = config.output_layer or {}
    explanation = " ".join(f[2] for f in found)
    stats = ctx.vector(metadata.OUTPUT_STATS)
    series = [ctx.train.tag] if ctx.train is not None else []
    if stats is not None:
        row = dict(zip(stats.labels, stats.values[-1]))
        if "min" in row and "max" in row:
            explanation += " At the last record the output ranged over [%s, %s]." % (
                fmt(row["min"]),
                fmt(row["max"]),
            )
        series.append(metadata.tag(metadata.OUTPUT_STATS))
    fixes = []
    for f in found:
        fixes.extend(f[3])
    return Finding(
        cause=causes.LOSS_OUTPUT_MISMATCH,
        severity=severity,
        confidence=0.95,
        title=found[0][1],
        explanation=explanation,
        first_step=0,
        layers=[output["name"]] if output.get("name") else [],
        evidence={
            "series": series,
            "loss": config.loss_name,
            "from_logits": config.from_logits,
            "output_activation": config.output_activation,
            "output_units": config.output_units,
            "label_range": list(config.label_range),
            "problems": [f[1] for f in found],
            "targets_are_inputs": config.targets_are_inputs,
        },
        fixes=fixes,
    )


def detect_uninformative_labels(ctx):
    """Labels that are all the same, or so small the loss cannot see them."""
    config = ctx.config
    labels = config.labels
    if not labels:
        return None
    std = config.label_std
    distinct = config.distinct_labels
    label_min, label_max = config.label_range
    sample = config.label_sample_size
    if sample is not None and sample < configview.MIN_LABEL_SAMPLE:
        return None  # two labels alike say nothing about the rest
    if (std is not None and std == 0) or (config.is_cross_entropy and distinct == 1):
        value = fmt(label_min) if label_min is not None else "?"
        return Finding(
            cause=causes.NO_SIGNAL,
            severity=causes.CRITICAL,
            confidence=0.95,
            title="Every label is the same (%s)" % value,
            explanation="All labels in the recorded sample are %s%s: the model can only learn"
            " that constant, and the loss says nothing about the inputs."
            % (value, " (one class of %d)" % config.num_classes if config.num_classes else ""),
            first_step=0,
            evidence={
                "series": [],
                "source": "labels",
                "label_std": std,
                "distinct_labels": distinct,
            },
        )
    if (
        config.is_regression_loss
        and std is not None
        and std < TINY_LABEL_STD
        and (max(abs(label_min or 0), abs(label_max or 0)) < 10 * TINY_LABEL_STD)
    ):
        return Finding(
            cause=causes.NO_SIGNAL,
            severity=causes.WARNING,
            confidence=0.7,
            title="The regression targets are mis-scaled (std %s)" % fmt(std),
            explanation="The targets have standard deviation %s and range over [%s, %s]: the"
            " squared error between a good and a useless prediction is under %s, too small"
            " for the optimizer to tell apart."
            % (fmt(std), fmt(label_min), fmt(label_max), fmt(std**2)),
            first_step=0,
            evidence={"series": [], "source": "labels", "label_std": std},
            fixes=["y_scaled = (y - y.mean()) / y.std()  # predict y_scaled; invert afterwards"],
        )
    return None


def detect_unscaled_targets(ctx):
    """Squared-error targets far from unit scale that the model never learned to reach.

    With targets in the thousands the first steps must move the output layer's
    bias by thousands: at a usual learning rate the loss stays near the
    targets' mean square, worse than predicting their mean (their variance).
    """
    config = ctx.config
    shape = ctx.train_shape
    if not config.is_squared_error or shape is None or shape.n < 5:
        return None
    mean = config.label_mean
    std = config.label_std
    if mean is None or std is None:
        return None
    scale = max(abs(mean), std)
    variance = std**2
    if scale <= LARGE_TARGET_SCALE or not shape.tail > variance:
        return None
    return Finding(
        cause=causes.UNNORMALIZED_INPUTS,
        severity=causes.WARNING,
        confidence=0.8,
        title="The targets are not scaled (mean %s, std %s)" % (fmt(mean), fmt(std)),
        explanation=(
            "The regression targets have mean %s and std %s, %s beyond unit scale. The loss"
            " ended at %s (from %s), above %s, what always predicting their mean would give:"
            " the model has not even learned their offset. Scale the targets (and unscale"
            " the predictions), or start the output layer's bias at their mean."
            % (
                fmt(mean),
                fmt(std),
                fmt_ratio(scale),
                fmt(shape.tail),
                fmt(shape.head),
                fmt(variance),
            )
        ),
        first_step=int(shape.steps[0]),
        evidence={
            "series": [ctx.train.tag],
            "target_mean": mean,
            "target_std": std,
            "final_loss": shape.tail,
            "variance": variance,
            "thresholds": {"scale": LARGE_TARGET_SCALE},
        },
        fixes=[
            "y_mean, y_std = y_train.mean(), y_train.std()\n"
            "model.fit(x_train, (y_train - y_mean) / y_std, ...)\n"
            "y_pred = model.predict(x) * y_std + y_mean",
            "keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(y_train.mean()))",
        ],
    )


DETECTORS = (
    detect_unnormalized_inputs,
    detect_unscaled_targets,
    detect_loss_output_mismatch,
    detect_uninformative_labels,
)
