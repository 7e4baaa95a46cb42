"""Bad and partial event files: every other run is diagnosed, the bad one says what is wrong.

The bad files are made byte by byte from a real event file that a tiny Keras
training with `PlateauCallback` wrote. Also pins what TensorBoard's own reader
does with each (it stops silently at a corrupt record), since that is what the
framing scan in `rundata` exists to report.
"""

import glob
import json
import os
import shutil
import struct

import numpy as np
import pytest

from tb_plateau import cli, diagnosis, metadata, rundata
from tb_plateau.eventfiles import records
from tests.readers import assert_same_run_data, count_bulk_decoded

HEADER = 12  # uint64 length + uint32 masked CRC
FOOTER = 4  # uint32 masked CRC of the data


def _records(data):
    """(offset of the record, length of its Event) for each record of an event file."""
    out = []
    pos = 0
    while pos + HEADER <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append((pos, length))
        pos += HEADER + length + FOOTER
    return out


def _framed(event_bytes):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    header = struct.pack("<Q", len(event_bytes))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + event_bytes
        + struct.pack("<I", masked_crc32c(event_bytes))
    )


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real run directory written by PlateauCallback (one event file)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from tb_plateau.summaries import PlateauCallback

    tf.get_logger().setLevel("ERROR")
    tf.keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1))).astype("float32")
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(6,)),
            tf.keras.layers.Dense(8, activation="relu", name="hidden"),
            tf.keras.layers.Dense(1, name="head"),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    run_dir = str(tmp_path_factory.mktemp("real") / "run")
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=3,
        validation_split=0.25,
        verbose=0,
        callbacks=[PlateauCallback(run_dir, every_n_steps=1)],
    )
    (path,) = glob.glob(os.path.join(run_dir, "*tfevents*"))
    return path


def _place(logdir, run, name, data):
    os.makedirs(os.path.join(logdir, run), exist_ok=True)
    with open(os.path.join(logdir, run, name), "wb") as f:
        f.write(data)


@pytest.fixture(scope="module")
def bad_logdir(real_run, tmp_path_factory):
    """One run per kind of damage, next to an undamaged copy."""
    logdir = str(tmp_path_factory.mktemp("bad"))
    name = os.path.basename(real_run)
    with open(real_run, "rb") as f:
        data = f.read()
    records = _records(data)
    assert len(records) > 20
    middle_offset, middle_length = records[len(records) // 2]

    _place(logdir, "good", name, data)
    # Training still writing: the last record cut half-way.
    last_offset, last_length = records[-1]
    _place(logdir, "truncated", name, data[: last_offset + HEADER + last_length // 2])
    # A flipped byte in a record's Event: still parses, fails its checksum.
    flipped = bytearray(data)
    flipped[middle_offset + HEADER + middle_length - 3] ^= 0x40
    _place(logdir, "corrupt_data", name, bytes(flipped))
    # A flipped byte in a record's length: the framing after it is lost.
    flipped = bytearray(data)
    flipped[middle_offset + 1] ^= 0x01
    _place(logdir, "corrupt_length", name, bytes(flipped))
    # An empty file only.
    _place(logdir, "empty", name, b"")
    # An empty file next to a good one.
    _place(logdir, "empty_and_good", "events.out.tfevents.0.empty", b"")
    _place(logdir, "empty_and_good", name, data)
    # Garbage that is not an event file at all, with the right name.
    _place(logdir, "garbage", name, b"\x00not an event file" * 7)
    # Every plateau header rewritten as written by a future version.
    from tensorboard.compat.proto import event_pb2

    newer = b""
    for offset, length in records:
        event = event_pb2.Event.FromString(data[offset + HEADER : offset + HEADER + length])
        for value in event.summary.value:
            content = value.metadata.plugin_data.content
            if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME and content:
                header = json.loads(content)
                header["version"] = 99
                value.metadata.plugin_data.content = json.dumps(header).encode()
        newer += _framed(event.SerializeToString())
    _place(logdir, "newer_version", name, newer)
    # Restarted training appending to the same run: the same steps again, in a
    # second file written later; the later records win.
    _place(logdir, "restarted", name, data)
    _place(logdir, "restarted", name.replace("tfevents.", "tfevents.9"), data)
    return logdir


@pytest.fixture(scope="module")
def reports(bad_logdir):
    return {report["run"]: report for report in cli.diagnose_logdir(bad_logdir)["runs"]}


def _notes(report):
    return " | ".join(report.get("notes", []))


def _problems(report):
    return " | ".join(report.get("problems", []))


def test_every_run_gets_a_report(reports):
    assert set(reports) == {
        "good",
        "truncated",
        "corrupt_data",
        "corrupt_length",
        "empty",
        "empty_and_good",
        "garbage",
        "newer_version",
        "restarted",
    }
    for report in reports.values():
        assert report["verdict"] in ("healthy", "warning", "critical")


def test_undamaged_runs_are_diagnosed_as_usual(reports):
    good = reports["good"]
    assert "incomplete" not in good and "notes" not in good and "problems" not in good
    for run in ("empty_and_good", "restarted"):
        assert reports[run]["verdict"] == good["verdict"]
        assert reports[run]["findings"] == good["findings"]
        assert "incomplete" not in reports[run]
    assert "is empty (0 bytes)" in _problems(reports["empty_and_good"])


def test_truncated_last_record_is_a_note_not_a_failure(reports):
    report = reports["truncated"]
    assert "the last record is incomplete" in _problems(report)
    assert "incomplete" not in report  # a live training: nothing is lost yet


def test_corrupt_record_says_what_tensorboard_will_not_show(reports, bad_logdir):
    report = reports["corrupt_data"]
    assert report["incomplete"] is True
    assert "fails its checksum" in _problems(report)
    assert "complete records after it (steps" in _problems(report)
    assert report["notes"][0] == diagnosis.INCOMPLETE_NOTE
    expected = "incomplete" if report["verdict"] == "healthy" else report["verdict"]
    assert report["status"] == expected

    report = reports["corrupt_length"]
    assert report["incomplete"] is True
    assert "its length fails its checksum" in _problems(report)


def test_tensorboards_reader_stops_silently_at_a_corrupt_record(bad_logdir):
    """Why the scan exists: the reader yields fewer events and raises nothing."""
    from tensorboard.backend.event_processing import event_file_loader

    def count(run):
        (path,) = glob.glob(os.path.join(bad_logdir, run, "*"))
        return sum(1 for _ in event_file_loader.EventFileLoader(path).Load()), path

    good, _ = count("good")
    corrupt, path = count("corrupt_data")
    assert corrupt < good
    scan = records.scan_event_file(path)
    assert scan.data_lost and scan.records == corrupt


def test_empty_and_garbage_runs_do_not_crash(reports):
    assert "is empty (0 bytes)" in _problems(reports["empty"])
    assert "No loss series found" in _notes(reports["empty"])
    garbage = reports["garbage"]
    assert garbage["incomplete"] is True
    assert "corrupt" in _problems(garbage)


def test_newer_version_is_marked_incomplete(reports):
    report = reports["newer_version"]
    assert report["incomplete"] is True
    # The verdict judges what was read (here: nothing), and is flagged as such.
    assert report["verdict"] == "healthy" and report["findings"] == []
    assert report["status"] == "incomplete"  # what the CLI and the tab both show
    assert "newer tb_plateau" in _problems(report)
    assert diagnosis.NOT_RECORDED_NOTE not in report["notes"]


def test_cli_json_is_strict_and_text_report_is_honest(bad_logdir, capsys):
    assert cli.main(["diagnose", bad_logdir, "--json"]) == 0
    out = capsys.readouterr().out

    def reject(constant):
        raise AssertionError("bare %s in the JSON" % constant)

    result = json.loads(out, parse_constant=reject)
    assert len(result["runs"]) == 9
    assert cli.main(["diagnose", bad_logdir]) == 0
    text = capsys.readouterr().out
    assert "INCOMPLETE  newer_version" in text and "HEALTHY  newer_version" not in text
    assert "Not fully read" in text


def test_sound_file_scans_clean(real_run):
    scan = records.scan_event_file(real_run)
    assert scan.problems == [] and not scan.data_lost
    with open(real_run, "rb") as f:
        assert scan.records == len(_records(f.read()))


def test_vectorized_crc_matches_tensorboards(real_run):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    rng = np.random.default_rng(0)
    buffer = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    offsets = rng.integers(0, 4000, 40)
    for length in (0, 1, 7, 100, 999):
        got = records.masked_crc32c_many(buffer, offsets, length)
        want = [masked_crc32c(buffer[o : o + length]) for o in offsets]
        assert got.tolist() == want
    # Below the vectorizing threshold too.
    got = records.masked_crc32c_many(buffer, offsets[:3], 50)
    assert got.tolist() == [masked_crc32c(buffer[o : o + 50]) for o in offsets[:3]]


def test_scan_copes_with_a_file_that_grows_while_read(tmp_path, real_run):
    run = tmp_path / "live"
    run.mkdir()
    shutil.copy(real_run, run / os.path.basename(real_run))
    problems, lost = records.scan_run_directory(str(run))
    assert problems == [] and not lost
    with open(run / os.path.basename(real_run), "ab") as f:
        f.write(b"\x10\x00")  # the first bytes of a record being written
    problems, lost = records.scan_run_directory(str(run))
    assert "the last record is incomplete" in problems[0] and not lost


# -- size: not timed, but these took minutes before the rolling median was linear


def test_a_million_steps_with_nan_inf_and_a_restart():
    from tb_plateau.rundata import RunData, series_from_points

    n = 1_000_000
    rng = np.random.default_rng(0)
    t = np.arange(n)
    loss = 0.1 + 2.0 * np.exp(-t / 2e5) * (1 + 0.05 * rng.normal(size=n))
    loss[n // 2] = np.nan
    loss[n * 6 // 10 : n * 6 // 10 + 10] = np.inf
    # A restart rewrote the first thousand steps: the later records win.
    steps = np.concatenate([t, t[:1000]])
    loss = np.concatenate([loss, np.full(1000, 0.5)])
    run = RunData(name="long", scalars={metadata.BATCH_LOSS: series_from_points(steps, loss)})
    assert len(run.scalars[metadata.BATCH_LOSS]) == n
    assert run.scalars[metadata.BATCH_LOSS].values[0] == 0.5
    report = diagnosis.run_report(run)
    assert "nonfinite" in [f["cause"] for f in report["findings"]]
    json.dumps(diagnosis.json_ready(report), allow_nan=False)


def test_a_thousand_layers():
    from tb_plateau.rundata import RunData, Series, VectorSeries

    layers, records = 1000, 500
    rng = np.random.default_rng(1)
    labels = ["dense_%d" % i for i in range(layers)]
    steps = np.arange(records) * 10
    run = RunData(
        name="deep",
        scalars={metadata.BATCH_LOSS: Series(steps, 0.1 + 2 * np.exp(-np.arange(records) / 100))},
    )
    grad = np.abs(rng.normal(size=(records, layers))) * np.logspace(-9, 0, layers)
    run.vectors[metadata.GRAD_NORM] = VectorSeries(steps, grad, labels, {"labels": labels})
    run.vectors[metadata.WEIGHT_NORM] = VectorSeries(
        steps, np.ones((records, layers)), labels, {"labels": labels}
    )
    report = diagnosis.run_report(run)
    assert "vanishing_gradients" in [f["cause"] for f in report["findings"]]
    json.dumps(diagnosis.json_ready(report), allow_nan=False)


# -- the CLI's one-pass reader reads what TensorBoard's multiplexer reads


def test_one_pass_reader_equals_the_multiplexer_on_damaged_runs(bad_logdir):
    for run in rundata.list_logdir_runs(bad_logdir):
        fast = rundata.read_logdir_run(bad_logdir, run)
        slow = rundata.read_logdir_run_with_multiplexer(bad_logdir, run)
        assert_same_run_data(fast, slow)


def test_generated_benchmark_logdir_is_sound(tmp_path):
    """benchmarks/make_logdir.py writes what TensorBoard reads, checksums included."""
    from tensorboard.backend.event_processing import event_file_loader

    from benchmarks.make_logdir import make_logdir

    logdir = str(tmp_path / "gen")
    names = make_logdir(logdir, runs=2, steps=120, layers=3, seed=1)
    for name in names:
        (path,) = glob.glob(os.path.join(logdir, name, "*tfevents*"))
        events = list(event_file_loader.EventFileLoader(path).Load())
        scan = records.scan_event_file(path)
        assert scan.problems == [] and scan.records == len(events) == 1 + 120 + 1
        fast = rundata.read_logdir_run(logdir, name)
        assert_same_run_data(fast, rundata.read_logdir_run_with_multiplexer(logdir, name))
        assert fast.vectors[metadata.GRAD_NORM].values.shape == (120, 3)


def _write_restarted_run(run_dir, with_start):
    """A run whose training restarted at step 5: loss 1.0 at steps 0-9, then 2.0 at 5-7.

    With `with_start`, a SessionLog.START opens the run and the restart.
    """
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    def loss_event(step, value, with_metadata):
        v = summary_pb2.Summary.Value(
            tag=metadata.tag(metadata.BATCH_LOSS),
            tensor=tensor_util.make_tensor_proto(np.float32(value)),
        )
        if with_metadata:
            v.metadata.CopyFrom(metadata.create_summary_metadata(summary_pb2.DATA_CLASS_SCALAR))
        return event_pb2.Event(
            step=step, wall_time=1.0 + step, summary=summary_pb2.Summary(value=[v])
        )

    def start(step):
        return event_pb2.Event(
            step=step, wall_time=50.0, session_log=event_pb2.SessionLog(status=1)
        )

    writer = EventFileWriter(run_dir)
    if with_start:
        writer.add_event(start(0))
    for step in range(10):
        writer.add_event(loss_event(step, 1.0, step == 0))
    if with_start:
        writer.add_event(start(5))
    for step in range(5, 8):
        writer.add_event(loss_event(step, 2.0, False))
    writer.close()


def test_one_pass_reader_purges_a_restart_as_tensorboard_does(tmp_path):
    """Steps rewritten after a restart; a SessionLog.START purges what follows it."""
    for name, with_start in (("plain", False), ("session", True)):
        _write_restarted_run(str(tmp_path / name), with_start)
    for name in ("plain", "session"):
        fast = rundata.read_logdir_run(str(tmp_path), name)
        assert_same_run_data(fast, rundata.read_logdir_run_with_multiplexer(str(tmp_path), name))
        loss = fast.scalars[metadata.BATCH_LOSS]
        assert loss.values[5:8].tolist() == [2.0, 2.0, 2.0]
        # Without a START the old steps 8 and 9 stay; after one they are purged.
        assert loss.steps.tolist() == (list(range(8)) if name == "session" else list(range(10)))


def test_callback_records_are_decoded_in_bulk(real_run, tmp_path, monkeypatch):
    """What PlateauCallback writes takes the bulk path, and reads as record by record."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(real_run, run / os.path.basename(real_run))
    decoded = count_bulk_decoded(monkeypatch)
    bulk = rundata.read_run_directory(str(run), "run")
    by_record = rundata.read_run_directory(str(run), "run", bulk=False)
    assert_same_run_data(bulk, by_record)
    steps = len(bulk.scalars[metadata.BATCH_LOSS])
    assert steps >= 30 and sum(decoded) >= steps - 5, (steps, decoded)
