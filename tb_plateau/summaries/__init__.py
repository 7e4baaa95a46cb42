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
  * `stats`: pure TensorFlow reductions (gradient, activation, output, input and
    label statistics) and the numpy summaries of weights and data;
  * `describe`: the model's layers, loss, optimizer, inputs and outputs, for the
    configuration record;
  * `guard`: a recorder error never stops training;
  * `writer`: tb_plateau's summaries into event files (TensorBoard's record writer);
  * `hooks`: every patch of Keras internals, in one place;
  * `record`: one record assembled from what the hooks stored;
  * `callback`: `PlateauCallback`; `recorder`: `Recorder`.
"""

from tb_plateau.summaries.callback import PlateauCallback
from tb_plateau.summaries.record import DEFAULT_EVERY_N_STEPS
from tb_plateau.summaries.recorder import Recorder
from tb_plateau.summaries.writer import write_config, write_scalar, write_vector

__all__ = [
    "DEFAULT_EVERY_N_STEPS",
    "PlateauCallback",
    "Recorder",
    "write_config",
    "write_scalar",
    "write_vector",
]
