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
from typing import Dict, List, Optional, Tuple

import numpy as np
from tensorboard.data import provider as provider_lib

from tb_plateau import metadata
from tb_plateau.eventfiles import records
from tb_plateau.eventfiles.provider import EventFilesProvider

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
      validation_run: the name of that sibling run, when it was read.
      problems: what could not be read, in plain words (a corrupt file, data
        from a newer version); the rest of the run is still here.
      verdicts: the live verdicts the recorder wrote during training, as
        [(step, {"root", "severity", "title", "causes", "elapsed_s"})] in step order.
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
    validation_run: Optional[str] = None
    problems: List[str] = dataclasses.field(default_factory=list)
    incomplete: bool = False
    verdicts: List[Tuple[int, dict]] = dataclasses.field(default_factory=list)

    @property
    def has_plateau_data(self):
        return bool(self.scalars or self.vectors or self.config is not None)


def _sorted_unique(steps, rows):
    """Orders records by step; of repeated steps keeps the one written last.

    A training restarted into the same logdir writes its steps again; the
    newer record is the one that describes the weights now on disk.
    """
    steps = np.asarray(steps, dtype=np.int64)
    if len(steps) == 0 or (steps[1:] > steps[:-1]).all():  # already ordered (the usual case)
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


def _vector_from_points(steps, arrays, header):
    """A `VectorSeries` from points' steps and arrays (an array [n, ...] or a list)."""
    labels = list(header.get("labels") or [])
    width = len(labels)
    if len(steps) and width:
        # All rows of the labels' width (the usual case): one array at once.
        try:
            values = np.asarray(arrays, dtype=np.float64)
        except (TypeError, ValueError):  # ragged or not numeric: row by row below
            values = None
        if values is not None and values.ndim == 2 and values.shape[1] == width:
            steps, values = _sorted_unique(steps, values)
            return VectorSeries(steps, values, labels, header)
    kept_steps = []
    rows = []
    for step, array in zip(steps, arrays):
        row = np.asarray(array, dtype=np.float64).reshape(-1)
        if width == 0:
            width = len(row)
            labels = [str(i) for i in range(width)]
        if len(row) != width:
            # A vector of another width (e.g. a model rebuilt with other
            # layers into the same run) cannot share this table.
            continue
        kept_steps.append(step)
        rows.append(row)
    values = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    steps, values = _sorted_unique(kept_steps, values)
    return VectorSeries(steps, values, labels, header)


def _decode_config(arrays):
    for raw in reversed(list(arrays)):
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


def _decode_verdicts(steps, arrays):
    """[(step, verdict dict)] in step order; records that are not JSON objects are skipped."""
    verdicts = []
    for step, raw in zip(steps, arrays):
        verdict = _decode_config([raw])
        if verdict is not None:
            verdicts.append((int(step), verdict))
    return sorted(verdicts, key=lambda item: item[0])


def _read_points(data_provider, ctx, experiment_id, run, plugin_name, tags, scalars):
    """{tag: (steps, values)} of scalar or tensor tags (all of the run's when tags is None),
    through the provider's `read_scalars` / `read_tensors`: floats, or a list of arrays."""
    read = data_provider.read_scalars if scalars else data_provider.read_tensors
    data = read(
        ctx,
        experiment_id=experiment_id,
        plugin_name=plugin_name,
        downsample=MAX_POINTS,
        run_tag_filter=provider_lib.RunTagFilter(runs=[run], tags=tags),
    ).get(run, {})
    return {
        tag: ([p.step for p in points], [p.value if scalars else p.numpy for p in points])
        for tag, points in data.items()
    }


def from_provider(data_provider, ctx, experiment_id, run, read_points=None):
    """Reads one run through a TensorBoard `DataProvider`.

    `read_points(plugin_name, tags, scalars)` -> {tag: (steps, values)} reads
    the points themselves when given (`EventFilesProvider.points`: whole
    arrays, no per-point objects); else the provider's `read_scalars` and
    `read_tensors` do. Raises `tensorboard.errors.NotFoundError` if the
    provider has no such run.
    """
    if read_points is None:

        def read_points(plugin_name, tags, scalars):
            return _read_points(data_provider, ctx, experiment_id, run, plugin_name, tags, scalars)

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

    listing = list(plateau_scalars.items()) + list(plateau_tensors.items())
    headers = _plateau_headers(listing, result)

    scalar_tags = [t for t in plateau_scalars if t in headers]
    if scalar_tags:
        _read_plateau_scalars(read_points, scalar_tags, result)

    tensor_tags = [t for t in plateau_tensors if t in headers]
    if tensor_tags:
        _read_plateau_tensors(read_points, tensor_tags, headers, result)

    result.other_scalars = _read_other_scalars(data_provider, ctx, experiment_id, run, read_points)
    return result


def _plateau_headers(listing, result):
    """{tag: metadata header} of the (tag, time series) pairs whose metadata parses.

    The others are noted in `result.problems` and mark it incomplete.
    """
    headers = {}
    unreadable = {}  # error message -> tags: one note per kind of error
    for tag, time_series in listing:
        try:
            headers[tag] = metadata.parse_plugin_metadata(time_series.plugin_content)
        except metadata.MetadataError as e:
            unreadable.setdefault(str(e), []).append(tag)
    for message, tags in unreadable.items():
        shown = ", ".join(tags[:4]) + (", ..." if len(tags) > 4 else "")
        what = tags[0] if len(tags) == 1 else "%d tags (%s)" % (len(tags), shown)
        result.problems.append("%s: %s" % (what, message))
        result.incomplete = True
    return headers


def _read_plateau_scalars(read_points, tags, result):
    """Reads the plugin's scalar tags into `result.scalars`, by short name."""
    points = read_points(metadata.PLUGIN_NAME, tags, True)
    for tag, (steps, values) in points.items():
        name = metadata.short_name(tag)
        if name is not None:
            result.scalars[name] = series_from_points(steps, values)


def _read_plateau_tensors(read_points, tags, headers, result):
    """Reads the plugin's tensor tags into `result.config` and `result.vectors`.

    A vector whose values do not fit its header is noted in `result.problems`
    and marks it incomplete.
    """
    points = read_points(metadata.PLUGIN_NAME, tags, False)
    for tag, (steps, arrays) in points.items():
        name = metadata.short_name(tag)
        if name == metadata.CONFIG:
            result.config = _decode_config(arrays)
        elif name == metadata.VERDICT:
            result.verdicts = _decode_verdicts(steps, arrays)
        elif name is not None:
            try:
                result.vectors[name] = _vector_from_points(steps, arrays, headers[tag])
            except (TypeError, ValueError) as e:
                result.problems.append("%s: unreadable values (%s)" % (tag, e))
                result.incomplete = True


def _read_other_scalars(data_provider, ctx, experiment_id, run, read_points):
    """Scalars of the scalars plugin (Keras' callback, PyTorch, tf.summary.scalar)."""
    run_filter = provider_lib.RunTagFilter(runs=[run])
    listing = data_provider.list_scalars(
        ctx, experiment_id=experiment_id, plugin_name="scalars", run_tag_filter=run_filter
    ).get(run, {})
    if not listing:
        return {}
    points = read_points("scalars", None, True)
    return {tag: series_from_points(steps, values) for tag, (steps, values) in points.items()}


def keras_validation_sibling(run, run_names):
    """For a Keras "…/train" run, the name of its "…/validation" sibling, if present."""
    head, leaf = os.path.split(run) if "/" in run else ("", run)
    if leaf != KERAS_TRAIN_RUN:
        return None
    sibling = head + "/" + KERAS_VALIDATION_RUN if head else KERAS_VALIDATION_RUN
    return sibling if sibling in run_names else None


def read_with_validation_sibling(read, run, run_names):
    """`read(run)` with its Keras "…/validation" sibling's scalars attached, if it has one.

    The one join of a run with its sibling: the CLI and the tab both call it
    (each with its own `read`), so they give the same report.
    """
    data = read(run)
    sibling = keras_validation_sibling(run, run_names)
    if sibling is not None:
        validation = read(sibling)
        data.validation_scalars = dict(validation.other_scalars)
        data.validation_run = sibling
        data.problems.extend(validation.problems)
        data.incomplete = data.incomplete or validation.incomplete
    return data


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
        problems, data_lost = records.scan_run_directory(path)
        data.problems.extend(problems)
        data.incomplete = data.incomplete or data_lost
    return data


def read_run_directory(run_dir, run, bulk=True):
    """Reads one local run: its event files' readable records, in one pass.

    Yields what TensorBoard's readers yield for the run (the records before
    any damage, the same compat migrations, the same purge of orphaned data
    on a restart) through `EventFilesProvider` and `from_provider`, plus a
    problem line for each damaged or empty file. Checksums are checked once
    per record (`records.scan_event_file`); look-alike records are decoded in
    bulk (`records.RecordTemplate`) unless `bulk` is False.
    """
    provider = EventFilesProvider(run, bulk=bulk)
    problems, data_lost = records.scan_run_directory(
        run_dir, read=lambda path, scan: provider.add_records(path, scan.offsets, scan.lengths)
    )
    data = from_provider(provider, None, "", run, read_points=provider.points)
    data.problems.extend(problems)
    data.incomplete = data.incomplete or data_lost
    return data
