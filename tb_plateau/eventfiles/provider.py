"""A TensorBoard `DataProvider` over one local run's event files, filled in one pass.

`EventFilesProvider` takes the records `records.scan_run_directory` found
readable and keeps what TensorBoard's loader keeps of them (the compat
migrations, the purge of orphaned data after a restart), decoding records that
repeat one layout with new numbers in bulk with numpy. It answers both
TensorBoard's `DataProvider` API and `points`, the arrays `rundata` builds a
run from. Importable without TensorFlow.
"""

import mmap

import numpy as np
from tensorboard.data import provider as provider_lib

from tb_plateau import metadata
from tb_plateau.eventfiles import records

# Plugins whose data `from_provider` reads; other plugins' values (images,
# histograms) are dropped on reading, so a run's memory is what we use.
_READ_PLUGINS = (metadata.PLUGIN_NAME, "scalars")

# A point's place in reading order: record number x this + value index.
_VALUES_PER_RECORD = 1 << 20
# Layouts tried per record length before the rest are parsed one by one.
_TEMPLATES_PER_LENGTH = 4


class _Tag:
    """One tag's points, in reading order once `columns` has sorted them.

    Points come as TensorProtos (records parsed one by one) and as blocks of
    arrays (records decoded in bulk); each carries its place in reading order.
    """

    __slots__ = ("name", "metadata", "dropped", "protos", "blocks", "_columns")

    def __init__(self, name):
        self.name = name
        self.metadata = None
        self.dropped = False  # another plugin's tag: its values are not kept
        self.protos = []  # (order, step, wall time, TensorProto)
        self.blocks = []  # (orders, steps, wall times, values [n, *shape])
        self._columns = None

    def add_proto(self, order, step, wall_time, tensor):
        self.protos.append((order, step, wall_time, tensor))
        self._columns = None

    def add_block(self, orders, steps, wall_times, values):
        self.blocks.append((orders, steps, wall_times, values))
        self._columns = None

    def drop(self):
        self.dropped, self.protos, self.blocks, self._columns = True, [], [], None

    def columns(self, purges):
        """(steps, wall times, values) in reading order, purged; cached.

        values is an array whose first axis runs over the points when they
        share dtype and shape, else a list of arrays.
        """
        if self._columns is None:
            self._columns = self._gather(purges)
        return self._columns

    def _gather(self, purges):
        pieces = list(self.blocks)
        if self.protos:
            orders, steps, walls, tensors = zip(*self.protos)
            pieces.append(
                (
                    np.array(orders, dtype=np.int64),
                    np.array(steps, dtype=np.int64),
                    np.array(walls, dtype=np.float64),
                    _decode_tensors(list(tensors)),
                )
            )
        if not pieces:
            empty = np.zeros(0, dtype=np.int64)
            return empty, np.zeros(0), np.zeros((0,))
        orders = np.concatenate([p[0] for p in pieces])
        steps = np.concatenate([p[1] for p in pieces])
        walls = np.concatenate([p[2] for p in pieces])
        arrays = [p[3] for p in pieces]
        uniform = all(isinstance(a, np.ndarray) for a in arrays) and (
            len({a.shape[1:] for a in arrays}) == 1
        )
        if uniform:
            values = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        else:
            values = [row for a in arrays for row in a]
        keep = np.ones(len(orders), dtype=bool)
        for order, step, tags in purges:
            if tags is None or self.name in tags:
                keep &= (orders > order) | (steps < step)
        if keep.all() and (len(orders) < 2 or (orders[1:] > orders[:-1]).all()):
            index = None  # in reading order, nothing purged (the usual case): no copies
        else:
            index = np.argsort(orders, kind="stable")
            index = index[keep[index]]
        if uniform:
            if index is not None:
                orders, steps, walls, values = (
                    orders[index],
                    steps[index],
                    walls[index],
                    values[index],
                )
            # Held once: the gathered points replace their pieces.
            self.blocks, self.protos = [(orders, steps, walls, values)], []
            return steps, walls, values
        if index is None:
            return steps, walls, list(values)
        return steps[index], walls[index], [values[i] for i in index.tolist()]


class EventFilesProvider(provider_lib.DataProvider):
    """One run's events as a TensorBoard `DataProvider`, for `from_provider`.

    Fed record by record as `plugin_event_accumulator.EventAccumulator` is
    (`data_compat` and `dataclass_compat` migrations per file, first metadata
    of a tag wins, orphaned data purged on a restart), but keeps every point
    (no reservoir sampling, no downsampling) and only the plugins we read.
    Records that `records.RecordTemplate` decodes in bulk take the path the
    accumulator takes for them: tensor values of tags whose data class is
    known pass both migrations unchanged, and only a session log or an
    out-of-order step in an old-format file purges.
    """

    def __init__(self, run, bulk=True):
        self._run = run
        self._bulk = bulk
        self._tags = {}
        self._file_version = None
        self._seen_session_start = False
        self._most_recent_step = -1
        self._records = 0  # records read so far, over all files: reading order
        self._purges = []  # (order, step, tags or None): points before order, at or after step

    # -- feeding ---------------------------------------------------------------

    def add_records(self, path, offsets, lengths):
        """Adds the records of one event file (as `records.FileScan` located them)."""
        from tensorboard import data_compat, dataclass_compat
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if not offsets:
            return
        for data in self._tags.values():
            data._columns = None
        first = self._records
        self._records += len(offsets)
        initial_metadata = {}  # per file, as each EventFileLoader keeps it
        # Tags whose first metadata in this file names a data class: both
        # migrations return their tensor values unchanged, so an event made of
        # such values only (nearly all of them) skips the migration calls.
        settled = set()
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            bulk = self._decode_in_bulk(buffer, offsets, lengths) if self._bulk else None
            template_of = bulk.template_of.tolist() if bulk else [-1] * len(offsets)
            bulk_records = []
            last_summary = -1  # the last record parsed one by one that holds a summary
            for i, (offset, length) in enumerate(zip(offsets, lengths)):
                template = template_of[i]
                if (
                    template >= 0
                    and self._file_version is not None
                    and self._file_version >= 2
                    and bulk.templates[template].tags <= settled
                ):
                    bulk_records.append(i)
                    continue
                order = (first + i) * _VALUES_PER_RECORD
                event = event_pb2.Event.FromString(buffer[offset : offset + length])
                if event.HasField("summary"):
                    last_summary = i
                values = event.summary.value
                if (
                    values
                    and event.WhichOneof("what") == "summary"
                    and all(v.tag in settled and v.WhichOneof("value") == "tensor" for v in values)
                ):
                    self._process(event, order)
                    continue
                event = data_compat.migrate_event(event)
                for migrated in dataclass_compat.migrate_event(event, initial_metadata):
                    self._process(migrated, order)
                settled.update(
                    tag
                    for tag, md in initial_metadata.items()
                    if md.data_class != summary_pb2.DATA_CLASS_UNKNOWN
                )
        if bulk_records:
            self._add_bulk(bulk, bulk_records, first)
            if bulk_records[-1] > last_summary:  # as `_maybe_purge` would have left it
                self._most_recent_step = bulk.step_of(bulk_records[-1])

    def _decode_in_bulk(self, buffer, offsets, lengths):
        """Decodes look-alike records of one file (see `records.RecordTemplate`)."""
        lengths_array = np.asarray(lengths, dtype=np.int64)
        offsets_array = np.asarray(offsets, dtype=np.int64)
        bulk = _Bulk(len(offsets))
        sizes, inverse, counts = np.unique(lengths_array, return_inverse=True, return_counts=True)
        for size_index in np.flatnonzero(counts >= records.MIN_BULK_RECORDS):
            remaining = np.flatnonzero(inverse == size_index)
            length = int(sizes[size_index])
            # Records of one length may hold different layouts: each template
            # is taken from the first record the ones before did not match.
            for _ in range(_TEMPLATES_PER_LENGTH):
                if len(remaining) < records.MIN_BULK_RECORDS:
                    break
                first = int(offsets_array[remaining[0]])
                try:
                    template = records.RecordTemplate(buffer[first : first + length])
                except records.NoTemplate:
                    remaining = remaining[1:]
                    continue
                remaining = bulk.add(template, remaining, offsets_array, length, buffer)
        return bulk

    def _add_bulk(self, bulk, chosen, first):
        """Adds the bulk-decoded records `chosen` (indices in the file) to their tags."""
        chosen = np.asarray(chosen, dtype=np.int64)
        template_of = bulk.template_of[chosen]
        for t, template in enumerate(bulk.templates):
            indices = chosen[template_of == t]
            if not len(indices):
                continue
            if len(indices) == len(bulk.members[t]):
                where = slice(None)  # every decoded record: no copies
            else:
                where = np.searchsorted(bulk.members[t], indices)  # rows of the decoded arrays
            steps = bulk.steps[t][where]
            walls = bulk.walls[t][where]
            base = (first + indices) * _VALUES_PER_RECORD
            for v, slot in enumerate(template.slots):
                data = self._tag(slot.tag)
                if not data.dropped:
                    data.add_block(base + v, steps, walls, bulk.values[t][v][where])

    def _tag(self, name):
        """The tag's points so far, created empty on its first value."""
        data = self._tags.get(name)
        if data is None:
            data = self._tags[name] = _Tag(name)
        return data

    def _process(self, event, order):
        from tensorboard.backend.event_processing import event_util
        from tensorboard.compat.proto import event_pb2

        if event.HasField("file_version"):
            self._file_version = event_util.ParseFileVersion(event.file_version)
        self._maybe_purge(event, order, event_pb2)
        if not event.HasField("summary"):
            return
        step, wall_time = event.step, event.wall_time
        for index, value in enumerate(event.summary.value):
            data = self._tag(value.tag or value.node_name)
            if data.metadata is None and value.HasField("metadata"):
                data.metadata = value.metadata
                if data.metadata.plugin_data.plugin_name not in _READ_PLUGINS:
                    data.drop()
            if not data.dropped and value.HasField("tensor"):
                data.add_proto(order + index, step, wall_time, value.tensor)

    def _maybe_purge(self, event, order, event_pb2):
        # EventAccumulator._MaybePurgeOrphanedData, for the tags we keep.
        if self._file_version is not None and self._file_version >= 2:
            if event.session_log.status == event_pb2.SessionLog.START:
                if self._seen_session_start:
                    self._purges.append((order, event.step, None))
                self._seen_session_start = True
        elif event.step < self._most_recent_step and event.HasField("summary"):
            tags = frozenset(v.tag for v in event.summary.value)
            self._purges.append((order, event.step, tags))
        if event.HasField("summary"):
            self._most_recent_step = event.step

    # -- DataProvider -----------------------------------------------------------

    def data_location(self, ctx=None, *, experiment_id):
        return self._run

    def list_runs(self, ctx=None, *, experiment_id):
        return [provider_lib.Run(run_id=self._run, run_name=self._run, start_time=None)]

    def _index(self, plugin_name, data_class, run_tag_filter):
        """{tag: (its _Tag, its columns)} of the tags a request asks for."""
        runs = run_tag_filter.runs if run_tag_filter is not None else None
        tags = run_tag_filter.tags if run_tag_filter is not None else None
        if runs is not None and self._run not in runs:
            return {}
        index = {}
        for tag, data in self._tags.items():
            if (
                data.metadata is None
                or data.metadata.plugin_data.plugin_name != plugin_name
                or data.metadata.data_class != data_class
                or (tags is not None and tag not in tags)
            ):
                continue
            columns = data.columns(self._purges)
            if len(columns[0]):
                index[tag] = (data, columns)
        return index

    def _list(self, series_class, index):
        return {
            self._run: {
                tag: series_class(
                    max_step=int(steps.max()),
                    max_wall_time=float(walls.max()),
                    plugin_content=data.metadata.plugin_data.content,
                    description=data.metadata.summary_description,
                    display_name=data.metadata.display_name,
                )
                for tag, (data, (steps, walls, _)) in index.items()
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

    def points(self, plugin_name, tags, scalars):
        """{tag: (steps, values)} for `rundata.from_provider`: arrays, no per-point objects."""
        if scalars:
            return self.scalar_arrays(plugin_name, tags)
        return self.tensor_arrays(plugin_name, tags)

    def scalar_arrays(self, plugin_name, tags=None):
        """{tag: (steps, float64 values)} of scalar tags, without per-point objects."""
        from tensorboard.compat.proto import summary_pb2

        run_tag_filter = provider_lib.RunTagFilter(runs=[self._run], tags=tags)
        index = self._index(plugin_name, summary_pb2.DATA_CLASS_SCALAR, run_tag_filter)
        return {
            tag: (steps, _scalar_values(values)) for tag, (_, (steps, _, values)) in index.items()
        }

    def tensor_arrays(self, plugin_name, tags=None):
        """{tag: (steps, values)} of tensor tags; values as `_Tag.columns` gives them."""
        from tensorboard.compat.proto import summary_pb2

        run_tag_filter = provider_lib.RunTagFilter(runs=[self._run], tags=tags)
        index = self._index(plugin_name, summary_pb2.DATA_CLASS_TENSOR, run_tag_filter)
        return {tag: (steps, values) for tag, (_, (steps, _, values)) in index.items()}

    def read_scalars(
        self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None
    ):
        from tensorboard.compat.proto import summary_pb2

        index = self._index(plugin_name, summary_pb2.DATA_CLASS_SCALAR, run_tag_filter)
        return {
            self._run: {
                tag: [
                    provider_lib.ScalarDatum(step, wall_time, value)
                    for step, wall_time, value in zip(
                        steps.tolist(), walls.tolist(), _scalar_values(values).tolist()
                    )
                ]
                for tag, (_, (steps, walls, values)) in index.items()
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
        return {
            self._run: {
                tag: [
                    provider_lib.TensorDatum(step, wall_time, array)
                    for step, wall_time, array in zip(steps.tolist(), walls.tolist(), values)
                ]
                for tag, (_, (steps, walls, values)) in index.items()
            }
        }


def _scalar_values(values):
    """One float64 per point, as `MultiplexerDataProvider.read_scalars` reads it."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values.astype(np.float64)
    return np.array([float(np.asarray(a).item()) for a in values], dtype=np.float64)


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
                return np.array([getattr(t, field)[0] for t in tensors], dtype=dtype)
    return [tensor_util.make_ndarray(t) for t in tensors]


class _Bulk:
    """The records of one file that `records.RecordTemplate`s decoded, by template."""

    def __init__(self, records_in_file):
        self.template_of = np.full(records_in_file, -1, dtype=np.int64)
        self.templates = []
        self.members = []  # per template: record indices in the file, ascending
        self.steps = []
        self.walls = []
        self.values = []  # per template: one array per slot

    def add(self, template, members, offsets, length, buffer):
        """Decodes the records `members` (all `length` bytes) that match `template`.

        Returns the members that do not match it.
        """
        matched, unmatched, steps, walls, values = [], [], [], [], []
        for start in range(0, len(members), records.CHUNK):
            chunk = members[start : start + records.CHUNK]
            rows = records.records_as_rows(buffer, offsets[chunk].tolist(), length)
            ok = template.match(rows)
            unmatched.append(chunk[~ok])
            if not ok.any():
                continue
            if not ok.all():
                chunk, rows = chunk[ok], rows[ok]
            chunk_steps, chunk_walls, chunk_values = template.decode(rows)
            matched.append(chunk)
            steps.append(chunk_steps)
            walls.append(chunk_walls)
            values.append(chunk_values)
        unmatched = np.concatenate(unmatched)
        if not matched:
            return unmatched
        t = len(self.templates)
        self.templates.append(template)
        self.members.append(np.concatenate(matched))
        self.template_of[self.members[t]] = t
        self.steps.append(np.concatenate(steps))
        self.walls.append(np.concatenate(walls))
        self.values.append(
            [np.concatenate([chunk[v] for chunk in values]) for v in range(len(template.slots))]
        )
        return unmatched

    def step_of(self, index):
        t = self.template_of[index]
        return int(self.steps[t][np.searchsorted(self.members[t], index)])
