"""Event-file records: framing, checksums, and bulk decoding of look-alike records.

An event file is a sequence of records: uint64 length, uint32 masked CRC-32C
of the length, the serialized Event, uint32 masked CRC-32C of the Event.

TensorBoard's readers (Python and TensorFlow) stop reading a file at the first
record that fails a check and log it at debug level only: a truncated last
record is a training still writing (read on the next reload), but a corrupt
record in the middle silently hides every record after it. `scan_event_file`
finds both, per file, so the CLI and the tab can say what is missing.

A recorder writes the same Event over and over with new numbers: the same tags,
dtypes and shapes, a new step, wall time and tensor bytes. `RecordTemplate`
reads the layout of one such record with a small protobuf wire walker and then
decodes every record of the same length whose other bytes are identical to it
with a few numpy operations, instead of parsing each record and each value in
Python. Records that differ anywhere else are left to the protobuf parser.

Checksums use Google's hardware CRC-32C (`google-crc32c`) when its C extension
is present, else a numpy pass over all records of one length at once.
Importable without TensorFlow.
"""

import dataclasses
import math
import mmap
import os
import struct
from typing import List

import numpy as np

HEADER_BYTES = 12  # uint64 length + uint32 CRC of it
FOOTER_BYTES = 4  # uint32 CRC of the data
# Records of equal length are checked (and decoded) together, this many at a
# time: bounds the temporary memory to about CHUNK x record size.
CHUNK = 4096  # records
# Fewer records of one length than this are checked one by one in Python:
# a vectorized pass costs a numpy call per byte whatever the record count.
_MIN_VECTORIZED = 16  # records


# -- checksums -----------------------------------------------------------------


def _hardware_crc32c():
    """google_crc32c.value when its C extension is installed, else None."""
    try:
        import google_crc32c
    except ImportError:
        return None
    return google_crc32c.value if getattr(google_crc32c, "implementation", "") == "c" else None


_crc32c = _hardware_crc32c()


def _mask_int(crc):
    """TFRecord's CRC masking of one CRC."""
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) & 0xFFFFFFFF


def _mask(crc):
    """TFRecord's CRC masking, vectorized over uint32 arrays."""
    crc = crc.astype(np.uint64)
    rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def masked_crc32c(data):
    """TFRecord's masked CRC-32C of some bytes."""
    if _crc32c is not None:
        return _mask_int(_crc32c(data if isinstance(data, bytes) else bytes(data)))
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as crc

    return crc(bytes(data))


def masked_crc32c_many(buffer, offsets, length, hardware=None):
    """Masked CRC-32C of `buffer[o : o + length]` for each offset, as uint32.

    With the hardware CRC, one C call per record; without it, one numpy
    operation per byte position over all records at once, instead of
    TensorBoard's pure-Python loop per byte. `hardware=False` forces numpy.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if hardware is None:
        hardware = _crc32c is not None
    if hardware and _crc32c is not None:
        with memoryview(buffer) as view:
            crcs = [_crc32c(bytes(view[o : o + length])) for o in offsets.tolist()]
        return _mask(np.array(crcs, dtype=np.uint32))
    if len(offsets) < _MIN_VECTORIZED or length == 0:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as crc

        with memoryview(buffer) as view:
            return np.array([crc(bytes(view[o : o + length])) for o in offsets], dtype=np.uint32)
    table = _crc_table()
    result = np.empty(len(offsets), dtype=np.uint32)
    for start in range(0, len(offsets), CHUNK):
        chunk = offsets[start : start + CHUNK]
        with memoryview(buffer) as view:
            joined = b"".join([view[o : o + length] for o in chunk])
        # Column j holds byte j of every record: contiguous for the loop below.
        columns = np.frombuffer(joined, dtype=np.uint8).reshape(len(chunk), length).T.copy()
        crc = np.full(len(chunk), 0xFFFFFFFF, dtype=np.uint32)
        for column in columns:
            crc = table[(crc ^ column) & 0xFF] ^ (crc >> 8)
        result[start : start + len(chunk)] = _mask(crc ^ np.uint32(0xFFFFFFFF))
    return result


def _crc_table():
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    return np.array(pywrap_tensorflow.CRC_TABLE, dtype=np.uint32)


# -- framing -------------------------------------------------------------------


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


def _frame(buffer, size):
    """Walks the record headers: (offsets, lengths, bad_header_at, truncated_at)."""
    offsets, lengths = [], []
    unpack_length = struct.Struct("<Q").unpack_from
    unpack_crc = struct.Struct("<I").unpack_from
    pos = 0
    while pos < size:  # bounded: pos grows by at least 16 bytes per record
        if size - pos < HEADER_BYTES:
            return offsets, lengths, None, pos
        header = buffer[pos : pos + 8]
        if masked_crc32c(header) != unpack_crc(buffer, pos + 8)[0]:
            return offsets, lengths, pos, None
        (length,) = unpack_length(header)
        if pos + HEADER_BYTES + length + FOOTER_BYTES > size:
            return offsets, lengths, None, pos
        offsets.append(pos + HEADER_BYTES)
        lengths.append(length)
        pos += HEADER_BYTES + length + FOOTER_BYTES
    return offsets, lengths, None, None


def scan_event_file(path):
    """Checks one event file's record framing and checksums (see above)."""
    name = os.path.basename(path)
    size = os.path.getsize(path)
    scan = FileScan(path=path, size=size)
    if size == 0:
        scan.problems.append("%s is empty (0 bytes): nothing to read" % name)
        return scan
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        size = min(size, len(buffer))
        offsets, lengths, bad_header_at, truncated_at = _frame(buffer, size)
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
                    offsets[first_bad] - HEADER_BYTES,
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
    expected = np.frombuffer(
        b"".join(buffer[o + n : o + n + FOOTER_BYTES] for o, n in zip(offsets, lengths)),
        dtype="<u4",
    )
    if _crc32c is not None:
        crc = _crc32c
        actual = _mask(
            np.array([crc(buffer[o : o + n]) for o, n in zip(offsets, lengths)], dtype=np.uint32)
        )
        hits = np.flatnonzero(actual != expected)
        return int(hits[0]) if len(hits) else None
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    bad = np.zeros(len(offsets), dtype=bool)
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        actual = masked_crc32c_many(buffer, offsets[members], int(length))
        bad[members] = actual != expected[members]
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def scan_run_directory(run_dir, read=None):
    """(problems, data_lost) over the event files TensorBoard reads for a run.

    A run's files are the event files directly in its directory (deeper
    directories are other runs), read in name order, as TensorBoard does.
    `read(path, scan)`, if given, is called with each file's `FileScan`
    (an OSError it raises is reported as the file's).
    """
    problems = []
    data_lost = False
    try:
        paths = run_event_files(run_dir)
    except OSError as e:
        return ["cannot list %s: %s" % (run_dir, e)], True
    for path in paths:
        try:
            scan = scan_event_file(path)
            if read is not None:
                read(path, scan)
        except OSError as e:
            problems.append("cannot read %s: %s" % (os.path.basename(path), e))
            data_lost = True
            continue
        problems.extend(scan.problems)
        data_lost = data_lost or scan.data_lost
    return problems, data_lost


def run_event_files(run_dir):
    """The event files TensorBoard reads for a run: directly in its directory, by name."""
    from tensorboard.backend.event_processing import io_wrapper

    paths = (os.path.join(run_dir, name) for name in sorted(os.listdir(run_dir)))
    return [p for p in paths if io_wrapper.IsSummaryEventsFile(p) and os.path.isfile(p)]


# -- bulk decoding -------------------------------------------------------------

# Fewer look-alike records than this are parsed one by one.
MIN_BULK_RECORDS = 8

# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
# TensorProto dtypes decoded in bulk, by `types_pb2` number.
_DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8")}  # DT_FLOAT, DT_DOUBLE


class NoTemplate(ValueError):
    """The record holds something the bulk decoder leaves to the protobuf parser."""


def _varint(buffer, pos, end):
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise NoTemplate("bad varint")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buffer, start, end):
    """(field number, wire type, payload start, payload end) of a message's fields."""
    pos = start
    while pos < end:
        key, pos = _varint(buffer, pos, end)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            begin = pos
            _, pos = _varint(buffer, pos, end)
            yield field, wire, begin, pos
        elif wire == _FIXED64:
            yield field, wire, pos, pos + 8
            pos += 8
        elif wire == _BYTES:
            length, pos = _varint(buffer, pos, end)
            yield field, wire, pos, pos + length
            pos += length
        elif wire == _FIXED32:
            yield field, wire, pos, pos + 4
            pos += 4
        else:
            raise NoTemplate("wire type %d" % wire)
        if pos > end:
            raise NoTemplate("field past its message")


def _structure_bytes(record, variable):
    """The structure bytes, as (start, end, bytes) between the variable regions."""
    fixed = []
    pos = 0
    for begin, end in sorted(variable):
        if begin > pos:
            fixed.append((pos, begin, np.frombuffer(record, np.uint8, begin - pos, pos)))
        pos = end
    if pos < len(record):
        fixed.append((pos, len(record), np.frombuffer(record, np.uint8, len(record) - pos, pos)))
    return fixed


@dataclasses.dataclass(frozen=True)
class Slot:
    """One Summary.Value of a template: its tag and where its numbers lie."""

    tag: str
    start: int  # first payload byte in the record
    dtype: np.dtype
    shape: tuple  # the tensor's shape (() for a scalar)

    @property
    def size(self):
        return self.dtype.itemsize * math.prod(self.shape)


class RecordTemplate:
    """The layout of an Event made of float tensors only (see the module doc).

    Variable regions: the wall time's 8 bytes, the step's varint bytes and
    each tensor's payload (`tensor_content`, or packed `float_val` /
    `double_val`). Every other byte is structure (field keys, lengths, tags,
    dtypes, shapes): a record of the same length with the same structure
    bytes parses exactly as the template does, with its own numbers.

    Raises `NoTemplate` for an Event that holds anything else (metadata, a
    session log, strings, a value without a tag, ...).
    """

    def __init__(self, record):
        from tensorboard.compat.proto import tensor_shape_pb2

        record = bytes(record)
        self.length = len(record)
        self.wall_at = None  # offset of the wall time's double
        self.step_span = None  # (start, end) of the step's varint
        slots = []
        variable = []
        summaries = 0
        for field, wire, begin, end in _fields(record, 0, len(record)):
            if field == 1 and wire == _FIXED64 and self.wall_at is None:
                self.wall_at = begin
                variable.append((begin, end))
            elif field == 2 and wire == _VARINT and self.step_span is None:
                self.step_span = (begin, end)
                variable.append((begin, end))
            elif field == 5 and wire == _BYTES and not summaries:
                summaries += 1
                for v_field, v_wire, v_begin, v_end in _fields(record, begin, end):
                    if v_field != 1 or v_wire != _BYTES:
                        raise NoTemplate("summary field %d" % v_field)
                    slot = self._value(record, v_begin, v_end, tensor_shape_pb2)
                    slots.append(slot)
                    variable.append((slot.start, slot.start + slot.size))
            else:
                raise NoTemplate("event field %d" % field)
        if not slots:
            raise NoTemplate("no summary values")
        self.slots = tuple(slots)
        self.tags = frozenset(slot.tag for slot in slots)
        self._fixed = _structure_bytes(record, variable)

    @staticmethod
    def _value(record, start, end, tensor_shape_pb2):
        tag, tensor = RecordTemplate._tag_and_tensor(record, start, end)
        dtype, shape, payload = RecordTemplate._tensor_layout(record, *tensor, tensor_shape_pb2)
        if dtype not in _DTYPES or payload is None:
            raise NoTemplate("not a float tensor")
        shape = shape or ()
        field, begin, stop = payload
        if field == 5 and dtype != 1 or field == 6 and dtype != 2:
            raise NoTemplate("float_val of another dtype")
        slot = Slot(tag=tag, start=begin, dtype=_DTYPES[dtype], shape=shape)
        # tensor_content holds the whole tensor; a repeated value holds every
        # element (one value filling a larger tensor is left to the parser).
        if stop - begin != slot.size or slot.size == 0:
            raise NoTemplate("payload size")
        return slot

    @staticmethod
    def _tag_and_tensor(record, start, end):
        """A Summary.Value's tag and the (start, end) of its tensor; nothing else allowed."""
        tag = None
        tensor = None
        for field, wire, begin, stop in _fields(record, start, end):
            if field == 1 and wire == _BYTES and tag is None:
                try:
                    tag = record[begin:stop].decode("utf-8")
                except UnicodeDecodeError:
                    raise NoTemplate("tag not UTF-8") from None
            elif field == 8 and wire == _BYTES and tensor is None:
                tensor = (begin, stop)
            else:
                raise NoTemplate("value field %d" % field)
        if not tag or tensor is None:
            raise NoTemplate("value without tag or tensor")
        return tag, tensor

    @staticmethod
    def _tensor_layout(record, start, end, tensor_shape_pb2):
        """A TensorProto's dtype, shape and payload (field, start, end); None where absent."""
        dtype = None
        shape = None
        payload = None  # (field, start, end)
        for field, wire, begin, stop in _fields(record, start, end):
            if field == 1 and wire == _VARINT and dtype is None:
                dtype, _ = _varint(record, begin, stop)
            elif field == 2 and wire == _BYTES and shape is None:
                proto = tensor_shape_pb2.TensorShapeProto.FromString(record[begin:stop])
                if proto.unknown_rank or any(d.size < 0 for d in proto.dim):
                    raise NoTemplate("unknown shape")
                shape = tuple(d.size for d in proto.dim)
            elif field == 3 and wire == _VARINT:
                pass  # version_number: structure
            elif field in (4, 5, 6) and wire == _BYTES and payload is None:
                payload = (field, begin, stop)
            else:
                raise NoTemplate("tensor field %d" % field)
        return dtype, shape, payload

    def match(self, rows):
        """Which rows (uint8 [n, length], one record each) share the template's structure."""
        ok = np.ones(len(rows), dtype=bool)
        for begin, end, expected in self._fixed:
            ok &= (rows[:, begin:end] == expected).all(axis=1)
        if self.step_span is not None:
            begin, end = self.step_span
            varint = rows[:, begin:end]
            ok &= (varint[:, :-1] >= 0x80).all(axis=1) & (varint[:, -1] < 0x80)
        return ok

    def decode(self, rows):
        """(steps int64 [n], wall times float64 [n], one array [n, *shape] per slot)."""
        n = len(rows)
        if self.wall_at is None:
            walls = np.zeros(n)
        else:
            walls = rows[:, self.wall_at : self.wall_at + 8].copy().view("<f8").reshape(n)
        steps = np.zeros(n, dtype=np.uint64)
        if self.step_span is not None:
            begin, end = self.step_span
            for i, column in enumerate(rows[:, begin:end].T):
                steps |= (column & 0x7F).astype(np.uint64) << np.uint64(7 * i)
        values = [
            rows[:, s.start : s.start + s.size].copy().view(s.dtype).reshape((n,) + s.shape)
            for s in self.slots
        ]
        return steps.view(np.int64), walls.astype(np.float64), values


def records_as_rows(buffer, offsets, length):
    """The records at `offsets`, each `length` bytes, as a uint8 array [n, length]."""
    with memoryview(buffer) as view:
        joined = b"".join([view[o : o + length] for o in offsets])
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(offsets), length)
