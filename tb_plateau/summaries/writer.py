"""Writing records: tb_plateau's summaries into TensorBoard event files."""

import atexit
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
import weakref

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

from tb_plateau import metadata
from tb_plateau.summaries.guard import _Guard

logger = logging.getLogger("tb_plateau")

# --------------------------------------------------------------------------
# Values: one builder for every writer


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def scalar_value(number):
    """(array, data class, header) of one scalar statistic."""
    return np.asarray(number, dtype=np.float32), summary_pb2.DATA_CLASS_SCALAR, {}


def vector_value(values, labels, extra=None):
    """(array, data class, header) of a per-layer statistic: `values[i]` belongs to `labels[i]`."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if len(values) != len(labels):
        raise ValueError("%d values for %d labels" % (len(values), len(labels)))
    return values, summary_pb2.DATA_CLASS_TENSOR, dict(extra or {}, labels=list(labels))


def config_value(config):
    """(array, data class, header) of a JSON record (the configuration, a verdict)."""
    text = json.dumps(config, default=_json_default, allow_nan=True)
    return np.array(text.encode("utf-8"), dtype=object), summary_pb2.DATA_CLASS_TENSOR, {}


# --------------------------------------------------------------------------
# When to record: densely first, then spaced out


# Every step of the first DENSE_STEPS is recorded, then the gap doubles (2, 4,
# 8, ...) until it reaches `every_n_steps`; from there every `every_n_steps`.
# Most causes show in the first iterations: a run has its first statistics at
# once and a diagnosis within its first few dozen steps. An anomaly (a loss
# spike, a change of learning rate) starts a dense phase again (`densify`).
DENSE_STEPS = 4  # steps
# A change of learning rate by this factor (either way) between two records.
RATE_CHANGE_FACTOR = 2.0


def dense_offsets(every_n_steps):
    """The offsets from the start of a dense phase that are recorded, before the regular grid."""
    offsets = list(range(min(DENSE_STEPS, every_n_steps)))
    gap, at = 2, offsets[-1]
    while gap < every_n_steps:
        at += gap
        offsets.append(at)
        gap *= 2
    return frozenset(offsets)


# --------------------------------------------------------------------------
# Low-level writers into the default `tf.summary` writer


def _tf_write(name, built, step):
    import tensorflow as tf  # the default tf.summary writer is TensorFlow's

    array, data_class, header = built
    md = metadata.create_summary_metadata(data_class, **header)
    return tf.summary.write(
        metadata.tag(name), tf.constant(array), step=step, metadata=md.SerializeToString()
    )


def write_scalar(name, value, step):
    """Writes a tb_plateau scalar (e.g. `metadata.BATCH_LOSS`) at `step`."""
    return _tf_write(name, scalar_value(value), step)


def write_vector(name, values, labels, step, **extra):
    """Writes a per-layer (or per-entry) statistic: `values[i]` belongs to `labels[i]`.

    `extra` are further header fields, e.g. ``sizes=[...]`` for gradient-zero counts.
    """
    try:
        built = vector_value(values, labels, extra)
    except ValueError as e:
        raise ValueError("write_vector(%r): %s" % (name, e)) from None
    return _tf_write(name, built, step)


def write_config(config, step=0):
    """Writes the configuration record (a JSON-serializable dict)."""
    return _tf_write(metadata.CONFIG, config_value(config), step)


# --------------------------------------------------------------------------
# The writer shared by Recorder and PlateauCallback


class _RunWriter:
    """Writes one run's records; flushes at the first non-finite value and on exit.

    Uses TensorBoard's own event file writer, which serializes on the host and
    writes from a background thread: a record of a dozen summaries costs well
    under a millisecond, against that many eager `tf.summary.write` ops. Each
    record is one event; a tag's metadata (which names the layers) goes with
    its first value only, as TensorBoard's readers take it from there.
    """

    def __init__(self, log_dir, every_n_steps, silent=False):
        self.log_dir = log_dir
        self.every_n_steps = every_n_steps
        # A silent writer keeps the schedule (which steps are due) but writes nothing:
        # a worker that is not the chief of a multi-worker training runs the same
        # recording steps as the chief (their collectives must match) and leaves
        # the files to it.
        self.silent = bool(silent)
        self._dense = dense_offsets(every_n_steps)
        self._dense_last = max(self._dense)
        self._dense_from = 0
        self._last_rate = None
        # Called with (step, scalars, vectors) after each record is written (the
        # live verdict reads the run from there, without reading the files back).
        self.listener = None
        self._lock = threading.Lock()
        self._writer = None
        self.guard = _Guard()
        self._config_written = False
        self._nonfinite_flushed = False
        self._write_failed = False
        self._tags_with_metadata = set()
        atexit.register(_flush_at_exit, weakref.ref(self))

    def is_due(self, step):
        """True when `step` is to be recorded: the dense phase (see `DENSE_STEPS`), every
        `every_n_steps`, and any step until the first record (with the configuration)."""
        step = int(step)
        return (
            step % self.every_n_steps == 0
            or (step - self._dense_from) in self._dense
            or self.needs_config
        )

    def is_dense(self, step):
        """True while `step` is inside the current dense phase."""
        return 0 <= int(step) - self._dense_from <= self._dense_last

    def note_learning_rate(self, step, rate):
        """Densifies after `step` when the rate changed by RATE_CHANGE_FACTOR since the last
        record; True then."""
        before, self._last_rate = self._last_rate, float(rate)
        if before is None or not (before > 0 and self._last_rate > 0):
            return False
        if max(before / self._last_rate, self._last_rate / before) < RATE_CHANGE_FACTOR:
            return False
        self.densify(int(step) + 1)
        return True

    def densify(self, step):
        """Records densely from `step` on: a training (re)starts there, or something changed
        (a loss spike, a new learning rate)."""
        self._dense_from = int(step)

    @property
    def needs_config(self):
        """True until the run's configuration record is written."""
        return not self._config_written

    def _get_writer(self):
        if self._writer is None:
            self._writer = _EventFile(self.log_dir)
            self._tags_with_metadata = set()  # each file names its tags' layers
        return self._writer

    def _value(self, name, built):
        array, data_class, header = built
        value = summary_pb2.Summary.Value(
            tag=metadata.tag(name), tensor=tensor_util.make_tensor_proto(array)
        )
        if value.tag not in self._tags_with_metadata:
            self._tags_with_metadata.add(value.tag)
            value.metadata.CopyFrom(metadata.create_summary_metadata(data_class, **header))
        return value

    def _scalar_value(self, name, number):
        return self._value(name, scalar_value(number))

    def _vector_value(self, name, values, labels, extra):
        return self._value(name, vector_value(values, labels, extra))

    def _config_value(self, config):
        return self._value(metadata.CONFIG, config_value(config))

    def _values(self, scalars, vectors, config):
        # One statistic that cannot be serialized stops alone.
        values = [self.guard.run(name, self._scalar_value, name, x) for name, x in scalars]
        values += [self.guard.run(v[0], self._vector_value, *v) for v in vectors]
        if config is not None:
            values.append(self.guard.run(metadata.CONFIG, self._config_value, config))
        return [v for v in values if v is not None]

    def write(self, step, scalars=(), vectors=(), config=None, verdict=None):
        """scalars: [(name, value)]; vectors: [(name, values, labels, extra)]; config and
        verdict: JSON records."""
        with self._lock:  # the training thread writes records, the live verdict its verdicts
            if self.silent:
                self._config_written = self._config_written or config is not None
                return
            if self._write_failed:
                return
            if self._config_written:
                config = None
            try:
                values = self._values(scalars, vectors, config)
                if verdict is not None:
                    values.append(self._value(metadata.VERDICT, config_value(verdict)))
                event = event_pb2.Event(
                    wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
                )
                writer = self._get_writer()
                writer.add_event(event)
                # Each record reaches the file at once (well under a millisecond
                # every `every_n_steps` steps): a killed run loses nothing.
                writer.flush()
                if config is not None:
                    self._config_written = True
            except Exception as e:
                # A full or read-only disk: one warning, then recording stops.
                self._write_failed = True
                logger.warning(
                    "tb_plateau: cannot write to %r; recording stops, training goes on: %s",
                    self.log_dir,
                    e,
                )
                return
        if scalars or vectors or config is not None:
            self._tell(step, scalars, vectors, config)

    def _tell(self, step, scalars, vectors, config):
        if self.listener is not None:
            self.guard.run("live", self.listener, int(step), scalars, vectors, config)

    def write_epoch(self, step, logs):
        """Epoch logs as "epoch/<key>" scalars (values that are not numbers are skipped)."""
        scalars = []
        for key, value in (logs or {}).items():
            try:
                scalars.append((metadata.EPOCH_PREFIX + str(key), float(value)))
            except (TypeError, ValueError):
                continue
        self.write(step, scalars=scalars)

    def note_nonfinite(self):
        if not self._nonfinite_flushed:
            self._nonfinite_flushed = True
            self.flush()

    def flush(self):
        with self._lock:
            if self._writer is None or self._write_failed:
                return
            try:
                self._writer.flush()
            except Exception as e:
                self._write_failed = True
                logger.warning("tb_plateau: cannot flush %r: %s", self.log_dir, e)

    def close(self):
        self.flush()
        with self._lock:
            if self._writer is not None:
                try:
                    self._writer.close()
                except Exception:
                    pass
                self._writer = None


class _EventFile:
    """One event file, written synchronously with TensorBoard's record writer.

    Synchronous on purpose: an error (a full or read-only disk) surfaces in
    the call that caused it, not as a traceback from a writer thread, and a
    record is on disk when `flush` returns. Files are named as TensorBoard's
    and TensorFlow's writers name theirs, so readers order them the same way.
    """

    _uid = itertools.count()

    def __init__(self, log_dir):
        from tensorboard.summary.writer.record_writer import RecordWriter

        gfile = _gfile()
        gfile.makedirs(log_dir)
        name = "events.out.tfevents.%010d.%s.%s.%s.plateau" % (
            time.time(),
            socket.gethostname(),
            os.getpid(),
            next(self._uid),
        )
        self._file = gfile.GFile(os.path.join(log_dir, name), "wb")
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event):
        self._records.write(event.SerializeToString())

    def flush(self):
        self._records.flush()

    def close(self):
        self._records.close()


def _gfile():
    """TensorFlow's gfile when TensorFlow is already loaded (the Keras side), else
    TensorBoard's own (local paths, S3, fsspec): a PyTorch training never imports
    TensorFlow for its records."""
    if sys.modules.get("tensorflow") is not None:
        from tensorboard.compat import tf

        return tf.io.gfile
    from tensorboard.compat.tensorflow_stub.io import gfile

    return gfile


def _flush_at_exit(ref):
    writer = ref()
    if writer is not None:
        writer.flush()
