"""Safety: a recorder error never stops the training it watches."""

import logging
import os
import tempfile

import numpy as np

logger = logging.getLogger("tb_plateau")

# --------------------------------------------------------------------------
# Safety: a recorder error never stops training.


class _Guard:
    """Runs each statistic's host-side work; the first error disables that statistic."""

    def __init__(self):
        self.disabled = set()

    def run(self, name, fn, *args, **kwargs):
        if name in self.disabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # the training matters more than the statistic
            self.disabled.add(name)
            logger.warning(
                "tb_plateau: recording %r failed and stops for this run (training goes on): %s",
                name,
                _brief(e),
            )
            logger.debug("tb_plateau: recording %r failed", name, exc_info=e)
            return None


def _brief(error):
    """The error's type and first line: TensorFlow's messages can carry whole tracebacks."""
    lines = str(error).strip().splitlines()
    return "%s: %s" % (type(error).__name__, lines[0] if lines else "")


def _check_log_dir(log_dir):
    if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
        raise ValueError("log_dir must be a non-empty path, got %r" % (log_dir,))
    log_dir = os.fspath(log_dir)
    if "://" in log_dir:
        return log_dir  # remote filesystems are checked by the writer itself
    try:
        os.makedirs(log_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=log_dir, prefix=".tb_plateau_probe"):
            pass
    except OSError as e:
        raise ValueError("log_dir %r cannot be written: %s" % (log_dir, e)) from None
    return log_dir


def _check_every_n_steps(every_n_steps):
    if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, (int, np.integer)):
        raise ValueError("every_n_steps must be a positive integer, got %r" % (every_n_steps,))
    if every_n_steps < 1:
        raise ValueError("every_n_steps must be a positive integer, got %r" % (every_n_steps,))
    return int(every_n_steps)
