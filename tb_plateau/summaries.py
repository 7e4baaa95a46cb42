"""The recording side: writes what the diagnosis needs into TensorBoard event files.

Three levels:
  * `write_scalar`, `write_vector`, `write_config`: low-level writers into the
    default `tf.summary` writer, with tb_plateau's metadata.
  * `Recorder`: for custom `tf.GradientTape` loops, one call per step.
  * `PlateauCallback`: for `model.fit`, one line.
"""

import json

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2

from tb_plateau import metadata


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
