"""Assembling one record from what the hooks stored."""

import numpy as np
import tensorflow as tf

from tb_plateau.summaries.keras.describe import (
    _describe_layers,
    _describe_loss,
    _describe_optimizer,
    _output_info,
)
from tb_plateau.summaries.keras.stats import _weights_stats
from tb_plateau.summaries.record import (
    DEFAULT_EVERY_N_STEPS,  # noqa: F401 - re-exported
    _package_version,
)
from tb_plateau.summaries.record import _record_vectors as _vectors


def _record_vectors(index, guard, *, weights=None, **stats):
    """The vectors of one record (see `summaries.record._record_vectors`); `weights`: the
    trainable variables' values, in index order, or None."""
    weight_stats = None
    if weights is not None:
        weight_stats = guard.run("weights", _weights_stats, index, weights)
    return _vectors(index, guard, weight_stats=weight_stats, **stats)


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
