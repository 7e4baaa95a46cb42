"""The plugin's name, tag names and versioned summary metadata.

Everything tb_plateau writes is a summary with ``plugin_name="plateau"``, an
explicit ``data_class`` (TensorBoard drops third-party data without one) and a
JSON content header ``{"version": N, ...}``. Per-layer statistics are one
tensor summary per statistic per step: a vector over layers whose names are in
the header's ``labels``. A model with a thousand layers thus writes a dozen
tags, not twelve thousand.

Importable without TensorFlow or TensorBoard (only `create_summary_metadata`,
which builds the protobuf, imports TensorBoard's protos when called).
"""

import json

PLUGIN_NAME = "plateau"

# Bumped when the meaning of a tag or of the header changes. Readers report
# data written by a newer version instead of misreading it.
PROTO_VERSION = 1

TAG_PREFIX = "plateau/"

# Scalars (DATA_CLASS_SCALAR). Short names; the tag is TAG_PREFIX + name.
BATCH_LOSS = "batch_loss"  # loss of the recorded training batch itself
LEARNING_RATE = "learning_rate"  # the learning rate in use at that step
EPOCH_PREFIX = "epoch/"  # epoch-end logs: "epoch/loss", "epoch/val_loss", ...
# The weight penalty (sum of the weights' regularizers) included in the loss,
# at recorded steps of models that have regularizers.
REGULARIZATION_LOSS = "regularization_loss"

# Per-layer vectors (DATA_CLASS_TENSOR, float32 [num_layers]) over the
# trainable layers, in model order.
GRAD_NORM = "grad_norm"  # L2 norm of the layer's gradient
WEIGHT_NORM = "weight_norm"  # L2 norm of the layer's trainable weights
UPDATE_RATIO = "update_ratio"  # ||W_after - W_before|| / ||W_before|| of one step
GRAD_ZERO_COUNT = "grad_zero_count"  # gradient entries exactly 0; header "sizes"
GRAD_MISSING = "grad_missing"  # trainable variables whose gradient was None
GRAD_NONFINITE = "grad_nonfinite"  # NaN/Inf gradient entries
WEIGHT_NONFINITE = "weight_nonfinite"  # NaN/Inf weight entries

# Per-layer vectors over the layers that apply an activation, in model order.
# Header "activations" names each layer's activation function.
ACT_MEAN = "act_mean"
ACT_STD = "act_std"
ACT_DEAD_FRACTION = "act_dead_fraction"  # ReLU family: units never > 0 over the batch
ACT_SATURATED_FRACTION = "act_saturated_fraction"  # sigmoid/tanh/softmax outputs at a limit
ACT_NONFINITE = "act_nonfinite"

# Vector over named statistics of the model's output(s): labels such as
# "min", "max", "mean", "row_sum_min", "row_sum_max", "row_sum_mean", prefixed
# with "<output name>/" when the model has several outputs.
OUTPUT_STATS = "output_stats"

# Vector over NUMERICS_SOURCES: NaN/Inf counts at the recorded step. A NaN
# entry means "not measured at this step" (the step of the first non-finite
# loss, seen from the host between two recorded steps, knows only the loss and
# the weights).
NONFINITE = "nonfinite"
NUMERICS_SOURCES = ("inputs", "labels", "loss", "gradients", "weights", "activations")

# The configuration record (DATA_CLASS_TENSOR, a scalar string holding JSON),
# written once per run at step 0.
CONFIG = "config"

# The live verdicts (DATA_CLASS_TENSOR, a scalar string holding JSON): what the
# diagnosis said during training, written by the recorder when its root cause
# first appeared or changed: {"root", "severity", "title", "causes":
# {cause: severity}, "elapsed_s"} (see `tb_plateau.live`).
VERDICT = "verdict"

SCALAR_NAMES = (BATCH_LOSS, LEARNING_RATE, REGULARIZATION_LOSS)
VECTOR_NAMES = (
    GRAD_NORM,
    WEIGHT_NORM,
    UPDATE_RATIO,
    GRAD_ZERO_COUNT,
    GRAD_MISSING,
    GRAD_NONFINITE,
    WEIGHT_NONFINITE,
    ACT_MEAN,
    ACT_STD,
    ACT_DEAD_FRACTION,
    ACT_SATURATED_FRACTION,
    ACT_NONFINITE,
    OUTPUT_STATS,
    NONFINITE,
)


# What the per-layer activation statistics mean, by activation family (the
# activation function's name). The recorder computes `act_dead_fraction` for
# the ReLU family (units never above zero over the batch) and
# `act_saturated_fraction` for sigmoid, tanh and softmax outputs within
# SATURATION_MARGIN of a limit; the diagnosis reads them by the same sets.
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
# Of the ReLU family, those whose output and gradient are exactly 0 below zero:
# only their units can die. (LeakyReLU, ELU, GELU, SiLU ... pass gradient there:
# a unit of theirs never above zero is quiet, not dead.)
DEAD_CAPABLE = frozenset(["relu", "relu6", "threshold"])
SIGMOID_FAMILY = frozenset(["sigmoid", "hard_sigmoid"])
TANH_FAMILY = frozenset(["tanh", "softsign", "hard_tanh"])
SATURATING = SIGMOID_FAMILY | TANH_FAMILY
SOFTMAX_FAMILY = frozenset(["softmax", "log_softmax"])
# An output this close to its limit passes (almost) no gradient: sigmoid'(x) at
# 0.97 is 0.03, a thirtieth of its peak; the same cut for |tanh|.
SATURATION_MARGIN = 0.03

# Layer classes in the configuration record that normalize their input: batch
# statistics (BATCH_NORMALIZATION_LAYERS) or per sample.
BATCH_NORMALIZATION_LAYERS = frozenset(
    [
        "BatchNormalization",
        "SyncBatchNormalization",
        # PyTorch
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "SyncBatchNorm",
    ]
)
NORMALIZATION_LAYERS = BATCH_NORMALIZATION_LAYERS | frozenset(
    [
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
        # PyTorch
        "LayerNorm",
        "GroupNorm",
        "RMSNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
    ]
)


class MetadataError(ValueError):
    """The summary metadata cannot be read by this version."""


def tag(name):
    """The full tag of a short statistic name."""
    return TAG_PREFIX + name


def short_name(full_tag):
    """The short statistic name of a full tag, or None if it is not ours."""
    if not full_tag.startswith(TAG_PREFIX):
        return None
    return full_tag[len(TAG_PREFIX) :]


def create_summary_metadata(data_class, labels=None, **extra):
    """A `SummaryMetadata` proto for one of tb_plateau's summaries.

    Args:
      data_class: `summary_pb2.DATA_CLASS_SCALAR` or `DATA_CLASS_TENSOR`.
      labels: for a vector, the name of each entry (layer or statistic).
      **extra: further JSON-serializable header fields (e.g. ``sizes``).
    """
    # The one protobuf helper here, imported on use: the rest of this module
    # (and the diagnosis reading it) needs neither TensorBoard nor TensorFlow.
    from tensorboard.compat.proto import summary_pb2

    header = {"version": PROTO_VERSION}
    if labels is not None:
        header["labels"] = [str(label) for label in labels]
    header.update(extra)
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(header, separators=(",", ":")).encode("utf-8"),
        ),
        data_class=data_class,
    )


def parse_plugin_metadata(content):
    """The header dict of a summary's plugin content.

    Raises:
      MetadataError: the content is not a header, or was written by a newer
        version than this reader knows.
    """
    if not isinstance(content, bytes):
        raise TypeError("content must be bytes, got %r" % type(content).__name__)
    try:
        header = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MetadataError("unreadable plateau summary header: %s" % e) from None
    if not isinstance(header, dict) or not isinstance(header.get("version"), int):
        raise MetadataError("plateau summary header without a version: %.80r" % content)
    if header["version"] > PROTO_VERSION:
        raise MetadataError(
            "written by a newer tb_plateau (data version %d; this one reads up to %d): "
            "upgrade tb_plateau" % (header["version"], PROTO_VERSION)
        )
    labels = header.get("labels")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(x, str) for x in labels)
    ):
        raise MetadataError("plateau summary header has malformed labels")
    return header
