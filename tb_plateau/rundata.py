"""One run's series as numpy arrays, read through TensorBoard's data provider.

The Plateau tab reads through `context.data_provider` (Rust data server or
Python loader). The CLI reads one local run at a time with `EventFilesProvider`:
the run's readable records in one pass, checksums checked vectorized, what
TensorBoard's loader does to them kept (compat migrations, restart purge), and
every damaged or empty file named in `RunData.problems` (TensorBoard's readers
stop silently at a corrupt record). Remote runs go through TensorBoard's
`EventMultiplexer`. All go through `from_provider`, so the tab and the CLI see
the same numbers (tests/test_robustness.py checks the two readers agree).
Importable without TensorFlow.
"""

import dataclasses
import json
import os
import struct
from typing import Dict, List, Optional

import numpy as np
from tensorboard.data import provider as provider_lib

from tb_plateau import metadata

# Points read per series. A million-step run recorded every 100 steps has
# 10,000 records; beyond this the provider downsamples uniformly.
MAX_POINTS = 100_000  # points per series

# Suffixes of the runs that Keras' TensorBoard callback writes side by side.
KERAS_TRAIN_RUN = "train"
KERAS_VALIDATION_RUN = "validation"


@dataclasses.dataclass
class Series:
    """A scalar series: steps ascending and unique, values float64 (NaN/Inf kept)."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self):
        return len(self.steps)


@dataclasses.dataclass
class VectorSeries:
    """A per-layer (or per-entry) statistic over steps.

    `values[i, j]` is entry `labels[j]` at `steps[i]`. `header` is the summary
    metadata header (e.g. ``sizes`` for gradient-zero counts, ``activations``
    for activation statistics).
    """

    steps: np.ndarray
    values: np.ndarray
    labels: List[str]
    header: dict

    def __len__(self):
        return len(self.steps)

    def column(self, label):
        """The series of one entry, by label."""
        return Series(self.steps, self.values[:, self.labels.index(label)])


@dataclasses.dataclass
class RunData:
    """Everything the diagnosis reads about one run.

    Attributes:
      name: the run's name as TensorBoard shows it (path relative to the logdir).
      scalars: tb_plateau scalars by short name: "batch_loss", "learning_rate",
        "epoch/loss", "epoch/val_loss", "epoch/accuracy", ...
      vectors: tb_plateau per-layer statistics by short name (see `metadata`).
      config: the configuration record, or None.
      other_scalars: every other scalar of the run by tag (Keras' own
        "epoch_loss", a PyTorch "Loss/train", ...).
      validation_scalars: for a Keras "…/train" run, the scalars of its sibling
        "…/validation" run; else empty.
      problems: what could not be read, in plain words (a corrupt file, data
        from a newer version); the rest of the run is still here.
      incomplete: True when data of this run exists but could not be read (a
        corrupt record that stops TensorBoard's reader, plateau data from a
        newer version, an unreadable run). The diagnosis then never calls the
        run healthy: see `diagnosis.run_report`.
    """

    name: str
    scalars: Dict[str, Series] = dataclasses.field(default_factory=dict)
    vectors: Dict[str, VectorSeries] = dataclasses.field(default_factory=dict)
    config: Optional[dict] = None
    other_scalars: Dict[str, Series] = dataclasses.field(default_factory=dict)
    validation_scalars: Dict[str, Series] = dataclasses.field(default_factory=dict)
    problems: List[str] = dataclasses.field(default_factory=list)
    incomplete: bool = False

    @property
    def has_plateau_data(self):
        return bool(self.scalars or self.vectors or self.config is not None)


def _sorted_unique(steps, rows):
    """Orders records by step; of repeated steps keeps the one written last.

    A training restarted into the same logdir writes its steps again; the
    newer record is the one that describes the weights now on disk.
    """
    steps = np.asarray(steps, dtype=np.int64)
    if len(steps) == 0:
        return steps, rows
    # Reverse, take the first occurrence of each step (= the last written),
    # then np.unique sorts by step.
    reversed_steps = steps[::-1]
    unique_steps, first_in_reversed = np.unique(reversed_steps, return_index=True)
    keep = len(steps) - 1 - first_in_reversed
    return unique_steps, rows[keep]


def series_from_points(steps, values):
    """A `Series` from unordered points, repeated steps resolved."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    steps, values = _sorted_unique(steps, values)
    return Series(steps, values)


def _vector_from_data(datums, header):
    labels = list(header.get("labels") or [])
    width = len(labels)
    if datums and width:
        # All rows of the labels' width (the usual case): one array at once.
        try:
            values = np.array([d.numpy for d in datums], dtype=np.float64)
        except (TypeError, ValueError):  # ragged or not numeric: row by row below
            values = None
        if values is not None and values.ndim == 2 and values.shape[1] == width:
            steps, values = _sorted_unique([d.step for d in datums], values)
            return VectorSeries(steps, values, labels, header)
    steps = []
    rows = []
    for datum in datums:
        row = np.asarray(datum.numpy, dtype=np.float64).reshape(-1)
        if width == 0:
            width = len(row)
            labels = [str(i) for i in range(width)]
        if len(row) != width:
            # A vector of another width (e.g. a model rebuilt with other
            # layers into the same run) cannot share this table.
            continue
        steps.append(datum.step)
        rows.append(row)
    values = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    steps, values = _sorted_unique(steps, values)
    return VectorSeries(steps, values, labels, header)


def _decode_config(datums):
    for datum in reversed(list(datums)):
        raw = datum.numpy
        try:
            item = raw.item() if hasattr(raw, "item") else raw
            if isinstance(item, bytes):
                item = item.decode("utf-8")
            config = json.loads(item)
        except (ValueError, TypeError, UnicodeDecodeError):
            continue
        if isinstance(config, dict):
            return config
    return None


def from_provider(data_provider, ctx, experiment_id, run):
    """Reads one run through a TensorBoard `DataProvider`.

    Raises `tensorboard.errors.NotFoundError` if the provider has no such run.
    """
    run_filter = provider_lib.RunTagFilter(runs=[run])
    result = RunData(name=run)

    plateau_scalars = data_provider.list_scalars(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=run_filter,
    ).get(run, {})
    plateau_tensors = data_provider.list_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=run_filter,
    ).get(run, {})

    headers = {}
    unreadable = {}  # error message -> tags: one note per kind of error
    for tag, time_series in list(plateau_scalars.items()) + list(plateau_tensors.items()):
        try:
            headers[tag] = metadata.parse_plugin_metadata(time_series.plugin_content)
        except metadata.MetadataError as e:
            unreadable.setdefault(str(e), []).append(tag)
    for message, tags in unreadable.items():
        shown = ", ".join(tags[:4]) + (", ..." if len(tags) > 4 else "")
        what = tags[0] if len(tags) == 1 else "%d tags (%s)" % (len(tags), shown)
        result.problems.append("%s: %s" % (what, message))
        result.incomplete = True

    scalar_tags = [t for t in plateau_scalars if t in headers]
    if scalar_tags:
        data = data_provider.read_scalars(
            ctx,
            experiment_id=experiment_id,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=MAX_POINTS,
            run_tag_filter=provider_lib.RunTagFilter(runs=[run], tags=scalar_tags),
        ).get(run, {})
        for tag, points in data.items():
            name = metadata.short_name(tag)
            if name is not None:
                result.scalars[name] = series_from_points(
                    [p.step for p in points], [p.value for p in points]
                )

    tensor_tags = [t for t in plateau_tensors if t in headers]
    if tensor_tags:
        data = data_provider.read_tensors(
            ctx,
            experiment_id=experiment_id,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=MAX_POINTS,
            run_tag_filter=provider_lib.RunTagFilter(runs=[run], tags=tensor_tags),
        ).get(run, {})
        for tag, datums in data.items():
            name = metadata.short_name(tag)
            if name == metadata.CONFIG:
                result.config = _decode_config(datums)
            elif name is not None:
                try:
                    result.vectors[name] = _vector_from_data(datums, headers[tag])
                except (TypeError, ValueError) as e:
                    result.problems.append("%s: unreadable values (%s)" % (tag, e))
                    result.incomplete = True

    result.other_scalars = _read_other_scalars(data_provider, ctx, experiment_id, run)
    return result


def _read_other_scalars(data_provider, ctx, experiment_id, run):
    """Scalars of the scalars plugin (Keras' callback, PyTorch, tf.summary.scalar)."""
    run_filter = provider_lib.RunTagFilter(runs=[run])
    listing = data_provider.list_scalars(
        ctx, experiment_id=experiment_id, plugin_name="scalars", run_tag_filter=run_filter
    ).get(run, {})
    if not listing:
        return {}
    data = data_provider.read_scalars(
        ctx,
        experiment_id=experiment_id,
        plugin_name="scalars",
        downsample=MAX_POINTS,
        run_tag_filter=run_filter,
    ).get(run, {})
    return {
        tag: series_from_points([p.step for p in points], [p.value for p in points])
        for tag, points in data.items()
    }


def keras_validation_sibling(run, run_names):
    """For a Keras "…/train" run, the name of its "…/validation" sibling, if present."""
    head, leaf = os.path.split(run) if "/" in run else ("", run)
    if leaf != KERAS_TRAIN_RUN:
        return None
    sibling = head + "/" + KERAS_VALIDATION_RUN if head else KERAS_VALIDATION_RUN
    return sibling if sibling in run_names else None


def is_keras_validation_run(run, run_names):
    """True for a Keras "…/validation" run whose "…/train" sibling exists."""
    head, leaf = os.path.split(run) if "/" in run else ("", run)
    if leaf != KERAS_VALIDATION_RUN:
        return False
    sibling = head + "/" + KERAS_TRAIN_RUN if head else KERAS_TRAIN_RUN
    return sibling in run_names


def list_logdir_runs(logdir):
    """Run names under a logdir, as TensorBoard names them ("." for the logdir itself)."""
    from tensorboard.backend.event_processing import io_wrapper

    names = []
    for subdir in io_wrapper.GetLogdirSubdirectories(logdir):
        rel = os.path.relpath(subdir, logdir) if "://" not in logdir else subdir[len(logdir) :]
        rel = rel.strip("/").replace(os.sep, "/") or "."
        names.append(rel)
    return sorted(names)


def read_logdir_run(logdir, run):
    """Reads one run of a logdir; only this run is held in memory.

    Local runs are read by `read_run_directory` (one pass, checksums checked
    vectorized, damage reported in `problems`); remote ones (gs://, s3://) by
    TensorBoard's `EventMultiplexer`. Both answer through `from_provider`.
    """
    path = logdir if run == "." else logdir.rstrip("/") + "/" + run
    if "://" not in path:
        return read_run_directory(path, run)
    return read_logdir_run_with_multiplexer(logdir, run)


def read_logdir_run_with_multiplexer(logdir, run):
    """Reads one run of a logdir with TensorBoard's `EventMultiplexer`.

    What the Plateau tab sees under TensorBoard's Python loader. Raises
    `tensorboard.errors.NotFoundError` when the run holds no events.
    """
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider as mux_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    # Keep every point of the series the diagnosis reads; other plugins' data
    # (histograms, images) keeps TensorBoard's small defaults.
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0, "scalars": 0},
    )
    path = logdir if run == "." else logdir.rstrip("/") + "/" + run
    multiplexer.AddRun(path, run)
    multiplexer.Reload()
    data_provider = mux_provider.MultiplexerDataProvider(multiplexer, logdir)
    data = from_provider(data_provider, tb_context.RequestContext(), "", run)
    if "://" not in path:
        problems, data_lost = scan_run_directory(path)
        data.problems.extend(problems)
        data.incomplete = data.incomplete or data_lost
    return data


def read_run_directory(run_dir, run):
    """Reads one local run: its event files' readable records, in one pass.

    Yields what TensorBoard's readers yield for the run (the records before
    any damage, the same compat migrations, the same purge of orphaned data
    on a restart) through `EventFilesProvider` and `from_provider`, plus a
    problem line for each damaged or empty file. The checksums are checked
    once, vectorized (`scan_event_file`), instead of TensorBoard's Python
    reader's per-byte loop; per-layer vectors are decoded in bulk.
    """
    provider = EventFilesProvider(run)
    problems = []
    data_lost = False
    for path in _run_event_files(run_dir):
        try:
            scan = scan_event_file(path)
            provider.add_records(path, scan.offsets, scan.lengths)
        except OSError as e:
            problems.append("cannot read %s: %s" % (os.path.basename(path), e))
            data_lost = True
            continue
        problems.extend(scan.problems)
        data_lost = data_lost or scan.data_lost
    data = from_provider(provider, None, "", run)
    data.problems.extend(problems)
    data.incomplete = data.incomplete or data_lost
    return data


def _run_event_files(run_dir):
    """The event files TensorBoard reads for a run: directly in its directory, by name."""
    from tensorboard.backend.event_processing import io_wrapper

    paths = (os.path.join(run_dir, name) for name in sorted(os.listdir(run_dir)))
    return [p for p in paths if io_wrapper.IsSummaryEventsFile(p) and os.path.isfile(p)]


# Plugins whose data `from_provider` reads; other plugins' values (images,
# histograms) are dropped on reading, so a run's memory is what we use.
_READ_PLUGINS = (metadata.PLUGIN_NAME, "scalars")


class _Tag:
    """One tag's points: (step, wall time, TensorProto), in reading order."""

    __slots__ = ("metadata", "points", "dropped")

    def __init__(self):
        self.metadata = None
        self.points = []
        self.dropped = False  # another plugin's tag: its values are not kept

    @property
    def steps(self):
        return [p[0] for p in self.points]

    @property
    def wall_times(self):
        return [p[1] for p in self.points]

    @property
    def tensors(self):
        return [p[2] for p in self.points]

    def keep_before(self, step):
        self.points = [p for p in self.points if p[0] < step]


class EventFilesProvider(provider_lib.DataProvider):
    """One run's events as a TensorBoard `DataProvider`, for `from_provider`.

    Fed record by record as `plugin_event_accumulator.EventAccumulator` is
    (`data_compat` and `dataclass_compat` migrations per file, first metadata
    of a tag wins, orphaned data purged on a restart), but keeps every point
    (no reservoir sampling, no downsampling) and only the plugins we read.
    """

    def __init__(self, run):
        self._run = run
        self._tags = {}
        self._file_version = None
        self._seen_session_start = False
        self._most_recent_step = -1

    # -- feeding ---------------------------------------------------------------

    def add_records(self, path, offsets, lengths):
        """Adds the records of one event file (as `FileScan` located them)."""
        import mmap

        from tensorboard import data_compat, dataclass_compat
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if not offsets:
            return
        initial_metadata = {}  # per file, as each EventFileLoader keeps it
        # Tags whose first metadata in this file names a data class: both
        # migrations return their tensor values unchanged, so an event made of
        # such values only (nearly all of them) skips the migration calls.
        settled = set()
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            for offset, length in zip(offsets, lengths):
                event = event_pb2.Event.FromString(buffer[offset : offset + length])
                values = event.summary.value
                if (
                    values
                    and event.WhichOneof("what") == "summary"
                    and all(v.tag in settled and v.WhichOneof("value") == "tensor" for v in values)
                ):
                    self._process(event)
                    continue
                event = data_compat.migrate_event(event)
                for migrated in dataclass_compat.migrate_event(event, initial_metadata):
                    self._process(migrated)
                settled.update(
                    tag
                    for tag, md in initial_metadata.items()
                    if md.data_class != summary_pb2.DATA_CLASS_UNKNOWN
                )

    def _process(self, event):
        from tensorboard.backend.event_processing import event_util
        from tensorboard.compat.proto import event_pb2

        if event.HasField("file_version"):
            self._file_version = event_util.ParseFileVersion(event.file_version)
        self._maybe_purge(event, event_pb2)
        if not event.HasField("summary"):
            return
        step, wall_time = event.step, event.wall_time
        for value in event.summary.value:
            tag = value.tag or value.node_name
            data = self._tags.get(tag)
            if data is None:
                data = self._tags[tag] = _Tag()
            if data.metadata is None and value.HasField("metadata"):
                data.metadata = value.metadata
                if data.metadata.plugin_data.plugin_name not in _READ_PLUGINS:
                    data.dropped, data.points = True, []
            if not data.dropped and value.HasField("tensor"):
                data.points.append((step, wall_time, value.tensor))

    def _maybe_purge(self, event, event_pb2):
        # EventAccumulator._MaybePurgeOrphanedData, for the tags we keep.
        if self._file_version is not None and self._file_version >= 2:
            if event.session_log.status == event_pb2.SessionLog.START:
                if self._seen_session_start:
                    for data in self._tags.values():
                        data.keep_before(event.step)
                self._seen_session_start = True
        elif event.step < self._most_recent_step and event.HasField("summary"):
            for value in event.summary.value:
                data = self._tags.get(value.tag)
                if data is not None:
                    data.keep_before(event.step)
        if event.HasField("summary"):
            self._most_recent_step = event.step

    # -- DataProvider -----------------------------------------------------------

    def data_location(self, ctx=None, *, experiment_id):
        return self._run

    def list_runs(self, ctx=None, *, experiment_id):
        return [provider_lib.Run(run_id=self._run, run_name=self._run, start_time=None)]

    def _index(self, plugin_name, data_class, run_tag_filter):
        runs = run_tag_filter.runs if run_tag_filter is not None else None
        tags = run_tag_filter.tags if run_tag_filter is not None else None
        if runs is not None and self._run not in runs:
            return {}
        return {
            tag: data
            for tag, data in self._tags.items()
            if data.metadata is not None
            and data.metadata.plugin_data.plugin_name == plugin_name
            and data.metadata.data_class == data_class
            and data.points
            and (tags is None or tag in tags)
        }

    def _list(self, series_class, index):
        return {
            self._run: {
                tag: series_class(
                    max_step=max(data.steps),
                    max_wall_time=max(data.wall_times),
                    plugin_content=data.metadata.plugin_data.content,
                    description=data.metadata.summary_description,
                    display_name=data.metadata.display_name,
                )
                for tag, data in index.items()
            }
        }

    def list_scalars(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        from tensorboard.compat.proto import summary_pb2

        index = self._index(plugin_name, summary_pb2.DATA_CLASS_SCALAR, run_tag_filter)
        return self._list(provider_lib.ScalarTimeSeries, index)

    def list_tensors(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        from tensorboard.compat.proto import summary_pb2

        index = self._index(plugin_name, summary_pb2.DATA_CLASS_TENSOR, run_tag_filter)
        return self._list(provider_lib.TensorTimeSeries, index)

    def read_scalars(
        self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None
    ):
        from tensorboard.compat.proto import summary_pb2

        index = self._index(plugin_name, summary_pb2.DATA_CLASS_SCALAR, run_tag_filter)
        return {
            self._run: {
                tag: [
                    provider_lib.ScalarDatum(step, wall_time, float(value))
                    for step, wall_time, value in zip(
                        data.steps, data.wall_times, _scalar_values(data.tensors)
                    )
                ]
                for tag, data in index.items()
            }
        }

    def read_last_scalars(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        everything = self.read_scalars(
            ctx, experiment_id=experiment_id, plugin_name=plugin_name, run_tag_filter=run_tag_filter
        )
        return {
            run: {tag: points[-1] for tag, points in tags.items() if points}
            for run, tags in everything.items()
        }

    def read_tensors(
        self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None
    ):
        from tensorboard.compat.proto import summary_pb2

        index = self._index(plugin_name, summary_pb2.DATA_CLASS_TENSOR, run_tag_filter)
        result = {}
        for tag, data in index.items():
            arrays = _decode_tensors(data.tensors)
            result[tag] = [
                provider_lib.TensorDatum(step, wall_time, array)
                for step, wall_time, array in zip(data.steps, data.wall_times, arrays)
            ]
        return {self._run: result}


def _scalar_values(tensors):
    """One float per TensorProto, as `MultiplexerDataProvider.read_scalars` reads it."""
    arrays = _decode_tensors(tensors)
    if isinstance(arrays, np.ndarray) and arrays.ndim == 1:
        return arrays.astype(np.float64).tolist()
    return [float(np.asarray(a).item()) for a in arrays]


def _decode_tensors(tensors):
    """The arrays of TensorProtos: one `frombuffer` when they share dtype and shape.

    Returns an array whose first axis runs over the protos, or a list of
    arrays (`tensor_util.make_ndarray` each) when they differ.
    """
    from tensorboard.compat.proto import types_pb2
    from tensorboard.util import tensor_util

    if not tensors:
        return np.zeros((0,))
    first = tensors[0]
    dims = [d.size for d in first.tensor_shape.dim]
    dtype = {types_pb2.DT_FLOAT: "<f4", types_pb2.DT_DOUBLE: "<f8"}.get(first.dtype)
    shape = first.tensor_shape
    same_kind = dtype is not None and all(
        t.dtype == first.dtype and t.tensor_shape == shape for t in tensors
    )
    if same_kind:
        if all(t.tensor_content for t in tensors):
            joined = b"".join(t.tensor_content for t in tensors)
            return np.frombuffer(joined, dtype=dtype).reshape([len(tensors)] + dims)
        if not dims:  # scalars written as float_val / double_val
            field = "float_val" if first.dtype == types_pb2.DT_FLOAT else "double_val"
            if all(len(getattr(t, field)) == 1 for t in tensors):
                return np.array([getattr(t, field)[0] for t in tensors], dtype=np.float64)
    return [tensor_util.make_ndarray(t) for t in tensors]


# --------------------------------------------------------------------------
# Record framing: what TensorBoard's readers do not say
#
# An event file is a sequence of records: uint64 length, uint32 masked CRC-32C
# of the length, the serialized Event, uint32 masked CRC-32C of the Event.
# TensorBoard's readers (Python and TensorFlow) stop reading a file at the
# first record that fails a check and log it at debug level only: a truncated
# last record is a training still writing (read on the next reload), but a
# corrupt record in the middle silently hides every record after it. This scan
# finds both, per file, so the CLI can say what is missing.

_HEADER_BYTES = 12  # uint64 length + uint32 CRC of it
_FOOTER_BYTES = 4  # uint32 CRC of the data
# Records of equal length are checked together, this many at a time: bounds
# the scan's memory to about CHUNK x record size.
_CRC_CHUNK = 4096  # records
# Fewer records of one length than this are checked one by one in Python:
# a vectorized pass costs a numpy call per byte whatever the record count.
_MIN_VECTORIZED = 16  # records


@dataclasses.dataclass
class FileScan:
    """The record framing of one event file.

    records: complete records whose checks pass, up to the first bad one.
    problems: plain-text lines (empty for a sound file).
    data_lost: True when complete records exist that TensorBoard will not read.
    """

    path: str
    size: int
    records: int = 0
    problems: List[str] = dataclasses.field(default_factory=list)
    data_lost: bool = False
    # Where each readable record's Event starts and how long it is: exactly
    # the records TensorBoard's reader yields.
    offsets: List[int] = dataclasses.field(default_factory=list, repr=False)
    lengths: List[int] = dataclasses.field(default_factory=list, repr=False)


def _crc_table():
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    return np.array(pywrap_tensorflow.CRC_TABLE, dtype=np.uint32)


def _mask(crc):
    """TFRecord's CRC masking, vectorized over uint32 arrays."""
    crc = crc.astype(np.uint64)
    rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def masked_crc32c_many(buffer, offsets, length):
    """Masked CRC-32C of `buffer[o : o + length]` for each offset, as uint32.

    All records in one pass: one numpy operation per byte position over all
    records at once, instead of TensorBoard's pure-Python loop per byte.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if len(offsets) < _MIN_VECTORIZED or length == 0:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        with memoryview(buffer) as view:
            return np.array(
                [masked_crc32c(bytes(view[o : o + length])) for o in offsets], dtype=np.uint32
            )
    table = _crc_table()
    result = np.empty(len(offsets), dtype=np.uint32)
    for start in range(0, len(offsets), _CRC_CHUNK):
        chunk = offsets[start : start + _CRC_CHUNK]
        with memoryview(buffer) as view:
            joined = b"".join([view[o : o + length] for o in chunk])
        # Column j holds byte j of every record: contiguous for the loop below.
        columns = np.frombuffer(joined, dtype=np.uint8).reshape(len(chunk), length).T.copy()
        crc = np.full(len(chunk), 0xFFFFFFFF, dtype=np.uint32)
        for column in columns:
            crc = table[(crc ^ column) & 0xFF] ^ (crc >> 8)
        result[start : start + len(chunk)] = _mask(crc ^ np.uint32(0xFFFFFFFF))
    return result


def _event_steps(buffer, offsets, lengths):
    """(first, last) step of the Events at these offsets, or None if unparsable."""
    from tensorboard.compat.proto import event_pb2

    steps = []
    for o, n in ((offsets[0], lengths[0]), (offsets[-1], lengths[-1])):
        try:
            steps.append(event_pb2.Event.FromString(bytes(buffer[o : o + n])).step)
        except Exception:
            return None
    return steps[0], steps[1]


def scan_event_file(path):
    """Checks one event file's record framing and checksums (see above)."""
    import mmap

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    name = os.path.basename(path)
    size = os.path.getsize(path)
    scan = FileScan(path=path, size=size)
    if size == 0:
        scan.problems.append("%s is empty (0 bytes): nothing to read" % name)
        return scan
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        offsets, lengths = [], []
        pos = 0
        bad_header_at = None
        truncated_at = None
        while pos < size:  # bounded: pos grows by at least 16 bytes per record
            if size - pos < _HEADER_BYTES:
                truncated_at = pos
                break
            header = buffer[pos : pos + 8]
            (expected,) = struct.unpack_from("<I", buffer, pos + 8)
            if masked_crc32c(header) != expected:
                bad_header_at = pos
                break
            (length,) = struct.unpack("<Q", header)
            if pos + _HEADER_BYTES + length + _FOOTER_BYTES > size:
                truncated_at = pos
                break
            offsets.append(pos + _HEADER_BYTES)
            lengths.append(length)
            pos += _HEADER_BYTES + length + _FOOTER_BYTES
        first_bad = _first_bad_data_crc(buffer, offsets, lengths)
        if first_bad is not None:
            after = len(offsets) - first_bad - 1
            steps = (
                _event_steps(buffer, offsets[first_bad + 1 :], lengths[first_bad + 1 :])
                if after
                else None
            )
            scan.records = first_bad
            scan.offsets, scan.lengths = offsets[:first_bad], lengths[:first_bad]
            scan.data_lost = True
            scan.problems.append(
                "%s: record %d (byte %d) fails its checksum; TensorBoard stops reading this"
                " file there, so the %d complete records after it%s are not shown"
                % (
                    name,
                    first_bad,
                    offsets[first_bad] - _HEADER_BYTES,
                    after,
                    " (steps %d to %d)" % steps if steps else "",
                )
            )
            return scan
        scan.records = len(offsets)
        scan.offsets, scan.lengths = offsets, lengths
        if bad_header_at is not None:
            scan.data_lost = True
            scan.problems.append(
                "%s: the record at byte %d is corrupt (its length fails its checksum);"
                " TensorBoard stops reading this file there, so its last %d bytes are not"
                " shown" % (name, bad_header_at, size - bad_header_at)
            )
        elif truncated_at is not None:
            scan.problems.append(
                "%s: the last record is incomplete (%d of its bytes present): a training"
                " still writing, or one that stopped mid-write; everything before it was"
                " read" % (name, size - truncated_at)
            )
    return scan


def _first_bad_data_crc(buffer, offsets, lengths):
    """Index of the first record whose data checksum fails, or None."""
    if not offsets:
        return None
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    expected = np.frombuffer(
        b"".join(buffer[o + n : o + n + _FOOTER_BYTES] for o, n in zip(offsets, lengths)),
        dtype="<u4",
    )
    bad = np.zeros(len(offsets), dtype=bool)
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        actual = masked_crc32c_many(buffer, offsets[members], int(length))
        bad[members] = actual != expected[members]
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def scan_run_directory(run_dir):
    """(problems, data_lost) over the event files TensorBoard reads for a run.

    A run's files are the event files directly in its directory (deeper
    directories are other runs), read in name order, as TensorBoard does.
    """
    from tensorboard.backend.event_processing import io_wrapper

    problems = []
    data_lost = False
    try:
        names = sorted(os.listdir(run_dir))
    except OSError as e:
        return ["cannot list %s: %s" % (run_dir, e)], True
    for name in names:
        path = os.path.join(run_dir, name)
        if not io_wrapper.IsSummaryEventsFile(path) or not os.path.isfile(path):
            continue
        try:
            scan = scan_event_file(path)
        except OSError as e:
            problems.append("cannot read %s: %s" % (name, e))
            data_lost = True
            continue
        problems.extend(scan.problems)
        data_lost = data_lost or scan.data_lost
    return problems, data_lost
