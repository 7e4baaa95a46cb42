"""tb_plateau: says why a training loss will not go down.

The recording side lives in `tb_plateau.summaries` (needs TensorFlow); the
diagnosis, the TensorBoard plugin and the CLI import without it.
"""

__version__ = "0.1.0"
