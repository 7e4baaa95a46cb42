"""The `tensorboard_plugins` entry point.

Kept tiny on purpose: an ImportError here would stop TensorBoard from
starting at all, so the plugin module is imported only in `load()`.
"""

from tensorboard.plugins import base_plugin

# Records kept per plateau tag by TensorBoard's Python loader (default 10) and
# by the Rust data server (default ~100): the diagnosis reads whole series, and
# a 100,000-step run recorded every 100 steps has 1,000 records.
_SAMPLES_PER_PLATEAU_TAG = 100_000  # records per tag


class PlateauLoader(base_plugin.TBLoader):
    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault("plateau", _SAMPLES_PER_PLATEAU_TAG)

    def load(self, context):
        from tb_plateau.plugin import PlateauPlugin

        return PlateauPlugin(context)
