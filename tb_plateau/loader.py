"""The `tensorboard_plugins` entry point.

Kept tiny on purpose: an ImportError here would stop TensorBoard from
starting at all, so the plugin module is imported only in `load()`.
"""

from tensorboard.plugins import base_plugin

# Records kept per plateau tag by TensorBoard's loaders when the tab reads runs
# through the data provider (a gs:// logdir, --logdir_spec): TensorBoard keeps
# 10 by default, and the diagnosis reads whole series (a 100,000-step run
# recorded every 100 steps has 1,000 records). A local logdir's runs are read
# from their files, so TensorBoard's default sampling (and memory) is kept.
_SAMPLES_PER_PLATEAU_TAG = 100_000  # records per tag


def reads_local_files(flags):
    """True when the tab reads runs from a local logdir's files, not the data provider."""
    logdir = getattr(flags, "logdir", "") or ""
    return bool(logdir) and "://" not in logdir and not getattr(flags, "logdir_spec", "")


class PlateauLoader(base_plugin.TBLoader):
    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict) and not reads_local_files(flags):
            samples.setdefault("plateau", _SAMPLES_PER_PLATEAU_TAG)

    def load(self, context):
        from tb_plateau.plugin import PlateauPlugin

        return PlateauPlugin(context)
