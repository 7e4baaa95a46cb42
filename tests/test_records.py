"""Bulk decoding of event records: whatever the bytes, it agrees with protobuf or stands aside.

`records.RecordTemplate` reads one record's layout and decodes records of the
same length whose structure bytes are identical. Properties: every record it
accepts decodes to exactly what protobuf's parser reads from it (step, wall
time, every value's tag and numbers); records that differ in structure (a tag,
a shape, a dtype, metadata) are refused, never misread; and a whole run read
with bulk decoding equals the run read record by record and the run read by
TensorBoard's EventMultiplexer, restarts and foreign records included.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util

from tb_plateau import metadata, rundata
from tb_plateau.eventfiles import records
from tests.readers import assert_same_run_data, count_bulk_decoded

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _tensor(values, dtype, as_content):
    array = np.asarray(values, dtype=dtype)
    proto = tensor_util.make_tensor_proto(array)
    if as_content and not proto.tensor_content:
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
        proto.ClearField("float_val")
        proto.ClearField("double_val")
    return proto


def _event(step, wall_time, values):
    return event_pb2.Event(
        step=step,
        wall_time=wall_time,
        summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor) for tag, tensor in values]
        ),
    )


def _parsed(record):
    """(step, wall time, [(tag, array)]) as protobuf and TensorBoard read a record."""
    event = event_pb2.Event.FromString(record)
    return (
        event.step,
        event.wall_time,
        [(v.tag, tensor_util.make_ndarray(v.tensor)) for v in event.summary.value],
    )


def _decoded(template, record):
    rows = np.frombuffer(record, dtype=np.uint8).reshape(1, -1)
    assert template.match(rows)[0]
    steps, walls, values = template.decode(rows)
    return (
        int(steps[0]),
        float(walls[0]),
        [(slot.tag, values[i][0]) for i, slot in enumerate(template.slots)],
    )


def _same(a, b):
    assert a[0] == b[0]
    assert a[1] == b[1] or (np.isnan(a[1]) and np.isnan(b[1]))
    assert [tag for tag, _ in a[2]] == [tag for tag, _ in b[2]]
    for (_, x), (_, y) in zip(a[2], b[2]):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert np.array_equal(x, y, equal_nan=True)


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
shapes = st.sampled_from([(), (1,), (3,), (2, 2), (50,)])
value_specs = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=12),
        shapes,
        st.sampled_from([np.float32, np.float64]),
        st.booleans(),  # tensor_content, or float_val / double_val
    ),
    min_size=1,
    max_size=5,
)
steps = st.integers(min_value=-(2**63), max_value=2**63 - 1)
wall_times = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def look_alike_records(draw):
    """A template record and others of the same structure with new numbers."""
    specs = draw(value_specs)
    records_ = []
    first_step = draw(steps)
    for _ in range(draw(st.integers(min_value=2, max_value=6))):
        # Steps near the first keep the varint's length most of the time.
        step = draw(st.one_of(steps, st.integers(first_step - 3, first_step + 3)))
        step = min(max(step, -(2**63)), 2**63 - 1)
        values = []
        for tag, shape, dtype, as_content in specs:
            size = int(np.prod(shape)) if shape else 1
            numbers = draw(st.lists(floats, min_size=size, max_size=size))
            values.append((tag, _tensor(np.reshape(numbers, shape), dtype, as_content)))
        records_.append(_event(step, draw(wall_times), values).SerializeToString())
    return records_


@PROPERTY_SETTINGS
@given(look_alike_records())
def test_accepted_records_decode_exactly_as_protobuf_reads_them(records_):
    try:
        template = records.RecordTemplate(records_[0])
    except records.NoTemplate:
        # Only for what the bulk path leaves to protobuf: a one-value
        # float_val filling a larger tensor never occurs here.
        pytest.fail("a float-tensor event was refused")
    _same(_decoded(template, records_[0]), _parsed(records_[0]))
    for record in records_[1:]:
        rows = np.frombuffer(record, dtype=np.uint8).reshape(1, -1)
        # Same length is not same structure (a 10-byte negative step where the
        # template has a wall time and a 1-byte step): refused, it goes to protobuf.
        if len(record) != len(records_[0]) or not template.match(rows)[0]:
            continue
        _same(_decoded(template, record), _parsed(record))


@PROPERTY_SETTINGS
@given(look_alike_records(), st.data())
def test_a_changed_structure_byte_is_refused_or_still_read_right(records_, data):
    """Flip any byte of a record: the template refuses it, or reads it as protobuf does."""
    template = records.RecordTemplate(records_[0])
    record = bytearray(records_[-1])
    assume(len(record) == template.length)
    position = data.draw(st.integers(0, len(record) - 1))
    record[position] ^= data.draw(st.integers(1, 255))
    rows = np.frombuffer(bytes(record), dtype=np.uint8).reshape(1, -1)
    if not template.match(rows)[0]:
        return
    _same(_decoded(template, bytes(record)), _parsed(bytes(record)))


def test_other_kinds_of_event_are_left_to_protobuf():
    def refused(event):
        with pytest.raises(records.NoTemplate):
            records.RecordTemplate(event.SerializeToString())

    scalar = _tensor(1.5, np.float32, False)
    with_metadata = _event(3, 1.0, [("loss", scalar)])
    with_metadata.summary.value[0].metadata.CopyFrom(
        metadata.create_summary_metadata(summary_pb2.DATA_CLASS_SCALAR)
    )
    refused(with_metadata)
    refused(event_pb2.Event(step=1, file_version="brain.Event:2"))
    refused(event_pb2.Event(step=1, session_log=event_pb2.SessionLog(status=1)))
    refused(_event(1, 1.0, [("config", tensor_util.make_tensor_proto(np.array(b"{}")))]))
    refused(_event(1, 1.0, [("ints", tensor_util.make_tensor_proto(np.arange(3)))]))
    refused(_event(1, 1.0, [("", scalar)]))
    simple = event_pb2.Event(step=1)
    simple.summary.value.add(tag="old", simple_value=2.0)
    refused(simple)
    # One float_val filling a tensor of three.
    filled = _tensor([1.0, 1.0, 1.0], np.float32, False)
    filled.ClearField("tensor_content")
    filled.float_val[:] = [1.0]
    refused(_event(1, 1.0, [("filled", filled)]))


def test_a_different_tag_of_the_same_length_is_refused():
    a = _event(5, 1.0, [("grad_a", _tensor([1.0, 2.0], np.float32, True))]).SerializeToString()
    b = _event(5, 1.0, [("grad_b", _tensor([1.0, 2.0], np.float32, True))]).SerializeToString()
    assert len(a) == len(b)
    template = records.RecordTemplate(a)
    rows = np.frombuffer(b, dtype=np.uint8).reshape(1, -1)
    assert not template.match(rows)[0]


def test_hardware_and_numpy_checksums_agree():
    rng = np.random.default_rng(0)
    buffer = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    offsets = rng.integers(0, 15000, 100)
    for length in (0, 1, 8, 333, 4096):
        numpy_crc = records.masked_crc32c_many(buffer, offsets, length, hardware=False)
        assert records.masked_crc32c_many(buffer, offsets, length).tolist() == numpy_crc.tolist()
        assert [records.masked_crc32c(buffer[o : o + length]) for o in offsets] == (
            numpy_crc.tolist()
        )


# -- whole runs: bulk decoding, record by record, and TensorBoard's multiplexer


def _write(path, events):
    """Writes `events` into a new event file of `path`, named to sort after the ones there.

    Readers take a run's files in name order; TensorBoard's writer names them by the second
    and a per-process counter, so two files written within one second may sort either way
    (a counter of 10 sorts before 9).
    """
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    os.makedirs(path, exist_ok=True)
    before = set(os.listdir(path))
    writer = EventFileWriter(path)
    for event in events:
        writer.add_event(event)
    writer.close()
    (created,) = set(os.listdir(path)) - before
    os.rename(
        os.path.join(path, created),
        os.path.join(path, "events.out.tfevents.%010d.test" % (len(before) + 1)),
    )


def _plateau_event(step, loss, grads, with_metadata):
    values = [
        summary_pb2.Summary.Value(
            tag=metadata.tag(metadata.BATCH_LOSS), tensor=_tensor(loss, np.float32, False)
        ),
        summary_pb2.Summary.Value(
            tag=metadata.tag(metadata.GRAD_NORM), tensor=_tensor(grads, np.float32, True)
        ),
    ]
    if with_metadata:
        values[0].metadata.CopyFrom(metadata.create_summary_metadata(summary_pb2.DATA_CLASS_SCALAR))
        values[1].metadata.CopyFrom(
            metadata.create_summary_metadata(
                summary_pb2.DATA_CLASS_TENSOR, labels=["dense", "head"]
            )
        )
    return event_pb2.Event(
        step=step, wall_time=100.0 + step, summary=summary_pb2.Summary(value=values)
    )


def test_restarts_and_foreign_records_read_the_same_three_ways(tmp_path, monkeypatch):
    """Two files, a restart with a SessionLog.START, images and NaN among the records."""
    rng = np.random.default_rng(4)
    run = tmp_path / "run"

    def image(step):
        v = summary_pb2.Summary.Value(
            tag="input",
            image=summary_pb2.Summary.Image(
                height=1, width=1, colorspace=1, encoded_image_string=b"\x89PNG" * (step % 5 + 1)
            ),
        )
        return event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=[v]))

    first = [event_pb2.Event(step=0, session_log=event_pb2.SessionLog(status=1))]
    for step in range(0, 300):
        grads = rng.normal(size=2)
        if step == 123:
            grads[1] = np.nan
        first.append(_plateau_event(step, 2.0 - step / 300, grads, step == 0))
        if step % 40 == 0:
            first.append(image(step))
    # The training restarts from step 200: what was written after it is stale.
    first.append(event_pb2.Event(step=200, session_log=event_pb2.SessionLog(status=1)))
    for step in range(200, 260):
        first.append(_plateau_event(step, 0.5, rng.normal(size=2), False))
    os.makedirs(run)
    _write(str(run), first)
    # A second file continues, metadata again (first one wins).
    second = [
        _plateau_event(step, 0.25, rng.normal(size=2), step == 260) for step in range(260, 400)
    ]
    _write(str(run), second)

    decoded = count_bulk_decoded(monkeypatch)
    bulk = rundata.read_run_directory(str(run), "run")
    assert sum(decoded) > 450
    by_record = rundata.read_run_directory(str(run), "run", bulk=False)
    by_tensorboard = rundata.read_logdir_run_with_multiplexer(str(tmp_path), "run")
    assert_same_run_data(bulk, by_record)
    assert_same_run_data(bulk, by_tensorboard)
    loss = bulk.scalars[metadata.BATCH_LOSS]
    assert loss.steps.tolist() == list(range(400))
    assert loss.values[250] == 0.5 and loss.values[300] == 0.25
    assert np.isnan(bulk.vectors[metadata.GRAD_NORM].column("head").values[123])


def test_benchmark_format_runs_are_decoded_in_bulk(tmp_path, monkeypatch):
    """The records of benchmarks/make_logdir.py (PlateauCallback's layout) take the bulk path."""
    from benchmarks.make_logdir import make_logdir

    (name,) = make_logdir(str(tmp_path), runs=1, steps=300, layers=4, seed=2)
    decoded = count_bulk_decoded(monkeypatch)
    bulk = rundata.read_logdir_run(str(tmp_path), name)
    # All but the first record of each tag (metadata) and the epoch ends.
    assert sum(decoded) >= 290
    assert_same_run_data(bulk, rundata.read_logdir_run_with_multiplexer(str(tmp_path), name))


def test_two_layouts_of_one_length_are_both_decoded_in_bulk(tmp_path, monkeypatch):
    """Alternating records of equal length but other tags: each layout gets its template."""
    ratio_tag = metadata.tag(metadata.UPDATE_RATIO)
    missing_tag = metadata.tag(metadata.GRAD_MISSING)
    assert len(ratio_tag) == len(missing_tag)
    events = []
    rng = np.random.default_rng(5)
    for step in range(1, 101):
        for tag in (ratio_tag, missing_tag):
            value = summary_pb2.Summary.Value(
                tag=tag, tensor=_tensor(rng.normal(size=2), np.float32, True)
            )
            if step == 1:
                value.metadata.CopyFrom(
                    metadata.create_summary_metadata(
                        summary_pb2.DATA_CLASS_TENSOR, labels=["dense", "head"]
                    )
                )
            events.append(
                event_pb2.Event(
                    step=step, wall_time=float(step), summary=summary_pb2.Summary(value=[value])
                )
            )
    run = tmp_path / "run"
    run.mkdir()
    _write(str(run), events)
    decoded = count_bulk_decoded(monkeypatch)
    bulk = rundata.read_run_directory(str(run), "run")
    assert sum(decoded) == 198 and len(decoded) == 2  # all but the two records with metadata
    assert_same_run_data(bulk, rundata.read_run_directory(str(run), "run", bulk=False))
    assert bulk.vectors[metadata.GRAD_MISSING].values.shape == (100, 2)
