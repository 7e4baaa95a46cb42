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

The package, one concern per module (imports run down this list):
  * `guard`: a recorder error never stops training (no framework);
  * `writer`: tb_plateau's summaries into event files (TensorBoard's record
    writer, one value builder, "is this step due?"; no framework);
  * `keras/`, the Keras front end:
      - `stats`: pure TensorFlow reductions (gradient, activation, output, input
        and label statistics) and the numpy summaries of weights and data;
      - `describe`: the model's layers, loss, optimizer, inputs and outputs, for
        the configuration record;
      - `hooks`: every patch of Keras internals, in one place;
      - `record`: one record assembled from what the hooks stored;
      - `callback`: `PlateauCallback`; `recorder`: `Recorder`.
"""

import importlib

# Public names, imported on first use: the writer (`writer`) and the contract
# need no TensorFlow, so a front end for another framework can use them
# without importing it; the Keras side imports TensorFlow when asked for.
_PUBLIC = {
    "DEFAULT_EVERY_N_STEPS": "record",
    "PlateauCallback": "keras.callback",
    "Recorder": "keras.recorder",
    "write_config": "writer",
    "write_scalar": "writer",
    "write_vector": "writer",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    return getattr(importlib.import_module("tb_plateau.summaries." + module), name)


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
