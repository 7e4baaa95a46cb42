"""Assembling one record from what the hooks stored."""

import numpy as np
import tensorflow as tf

from tb_plateau import metadata
from tb_plateau.summaries.keras.describe import (
    _describe_layers,
    _describe_loss,
    _describe_optimizer,
    _output_info,
)
from tb_plateau.summaries.keras.stats import _ACT_FIELDS, _OUTPUT_FIELDS, _weights_stats

# Training steps between two records. At 100, recording costs under 3% of a
# small MLP's step time on a CPU (benchmarks/recording_overhead.py) while a
# 1,000-step run still gives the diagnosis ten points per series.
DEFAULT_EVERY_N_STEPS = 100  # steps

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
