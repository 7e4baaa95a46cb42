"""The Keras (TensorFlow) front end of the recording side: `PlateauCallback` for
`model.fit` and `Recorder` for custom `tf.GradientTape` loops.

Importing this package imports TensorFlow; `tb_plateau.summaries` re-exports its
public names on first use.
"""

from tb_plateau.summaries.keras.callback import PlateauCallback
from tb_plateau.summaries.keras.record import DEFAULT_EVERY_N_STEPS
from tb_plateau.summaries.keras.recorder import Recorder

__all__ = ["DEFAULT_EVERY_N_STEPS", "PlateauCallback", "Recorder"]
