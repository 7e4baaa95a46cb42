"""Generates a large logdir in exactly the format `PlateauCallback` writes.

N runs x S recorded steps x L layers, each run one directory with one event
file written by TensorBoard's own `EventFileWriter` (no TensorFlow): one event
per record holding all of that record's values in one `Summary`, each tag's
summary metadata on its first value only, a configuration record at step 0,
and the epoch's logs ("plateau/epoch/loss", "plateau/epoch/val_loss") in an
event of their own at each epoch end — as `summaries.writer._RunWriter` writes them.

The checksums are computed vectorized instead of by the writer's Python loop
(the bytes are the same: `tests/test_robustness.py` checks them with
TensorBoard's reader), so 100 runs x 10,000 records x 50 layers take minutes,
not an hour.

The values look like a real training: a loss that falls and flattens with
batch noise, per-layer gradient norms that shrink as the loss does, slowly
growing weight norms, update/weight ratios near 1e-3, ReLU activations with a
few dead units. Runs cycle through four shapes so the diagnosis has work to do:
healthy, plateau with a dead ReLU layer, too-high learning rate (oscillating
loss), and not converged.

    python benchmarks/make_logdir.py /tmp/big --runs 100 --steps 10000 --layers 50

or, from Python (e.g. another benchmark):

    from benchmarks.make_logdir import make_logdir
    make_logdir("/tmp/big", runs=100, steps=10_000, layers=50, seed=0)
"""

import argparse
import json
import os
import sys
import time
import types

import numpy as np

# TensorBoard's writer would import TensorFlow when it is installed (seconds);
# its stub is enough to write local files. Set before tensorboard.compat.tf loads.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from tensorboard.compat.proto import (  # noqa: E402
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tb_plateau import metadata  # noqa: E402

EVERY_N_STEPS = 10  # training steps between records, as PlateauCallback(every_n_steps=10)
RECORDS_PER_EPOCH = 100  # recorded steps per epoch (epoch logs written at each epoch end)
SHAPES = ("healthy", "dead_relu", "lr_too_high", "not_converged")

_OUTPUT_FIELDS = ("min", "max", "mean", "row_sum_min", "row_sum_max", "row_sum_mean")


def run_name(index):
    """The name of the index-th generated run (sorted order is index order)."""
    return "run_%05d" % index


def _float_tensor(values):
    values = np.asarray(values, dtype=np.float32)
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in values.shape]
        ),
        tensor_content=values.tobytes(),
    )


def _scalar_tensor(value):
    # make_tensor_proto writes a 0-d float32 as float_val, not tensor_content.
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        float_val=[float(value)],
    )


def _string_tensor(text):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[text.encode("utf-8")],
    )


def _config(layer_labels, shape, layers):
    return {
        "tb_plateau_version": "0.1.0",
        "recorder": "PlateauCallback",
        "every_n_steps": EVERY_N_STEPS,
        "model": {
            "name": "generated",
            "class": "Sequential",
            "params": 4160 * layers,
            "trainable_params": 4160 * layers,
            "dtype_policy": "float32",
            "output_names": ["output_0"],
            "output_units": [10],
        },
        "layers": [
            {
                "name": label,
                "path": label,
                "class": "Dense",
                "activation": "relu" if i < layers - 1 else "softmax",
                "trainable": True,
                "params": 4160,
                "nested": False,
                "units": 64 if i < layers - 1 else 10,
                "use_bias": True,
                "kernel_initializer": "GlorotUniform",
                "bias_initializer": "Zeros",
                "output_shape": [None, 64 if i < layers - 1 else 10],
            }
            for i, label in enumerate(layer_labels)
        ],
        "trainable_layers": layer_labels,
        "activation_layers": [
            {"layer": label, "activation": "relu" if i < layers - 1 else "softmax"}
            for i, label in enumerate(layer_labels)
        ],
        "loss": {
            "name": "sparse_categorical_crossentropy",
            "class": "SparseCategoricalCrossentropy",
            "from_logits": False,
            "reduction": "sum_over_batch_size",
            "label_smoothing": None,
            "custom": False,
        },
        "optimizer": {
            "name": "Adam",
            "config": {"name": "adam", "learning_rate": 0.1 if shape == "lr_too_high" else 1e-3},
            "learning_rate_schedule": None,
            "loss_scale": False,
        },
        "distribution": {"strategy": "_DefaultDistributionStrategy", "replicas": 1},
        "steps_per_epoch": RECORDS_PER_EPOCH * EVERY_N_STEPS,
        "batch_size": 32,
        "data": {
            "inputs": [
                {
                    "name": "keras_tensor",
                    "dtype": "float32",
                    "features": 8,
                    "mean": [0.0] * 8,
                    "std": [1.0] * 8,
                    "min": [-3.0] * 8,
                    "max": [3.0] * 8,
                    "abs_max": 3.0,
                    "scale_spread": 1.2,
                }
            ],
            "labels": [
                {
                    "min": 0.0,
                    "max": 9.0,
                    "mean": 4.5,
                    "std": 2.9,
                    "integral_fraction": 1.0,
                    "unit_interval_fraction": 0.2,
                    "one_hot_row_fraction": 0.0,
                    "row_sum_mean": 4.5,
                    "dtype": "int64",
                    "shape": [32],
                    "class_counts": [3.0] * 10,
                    "distinct_classes": 10,
                    "encoding": "sparse",
                }
            ],
        },
        "first_step": 0,
    }


def _series(rng, shape, steps, layers):
    """All recorded values of one run as arrays over [steps] or [steps, layers]."""
    t = np.arange(steps, dtype=np.float64)
    tau = max(steps / (12.0 if shape == "not_converged" else 4.0), 1.0)
    decay = np.exp(-t / tau)
    floor = {"healthy": 0.05, "dead_relu": 1.2, "lr_too_high": 0.9, "not_converged": 0.05}[shape]
    loss = floor + (2.3 - floor) * decay
    if shape == "not_converged":
        loss = floor + (2.3 - floor) * np.exp(-t / (steps * 0.8))
    noise = rng.normal(0.0, 0.03, steps)
    if shape == "lr_too_high":
        noise = rng.normal(0.0, 0.6, steps) + 0.5 * np.sin(t / 3.0)
    loss = np.abs(loss * (1.0 + noise))

    depth_scale = np.linspace(1.0, 0.6, layers)  # gradients a little smaller toward the input
    grad_norm = (
        (0.3 + 0.7 * decay)[:, None]
        * depth_scale[None, :]
        * rng.lognormal(0.0, 0.2, (steps, layers))
    )
    weight_norm = (4.0 + 0.5 * (1.0 - decay))[:, None] * rng.uniform(0.8, 1.2, layers)[None, :]
    ratio_level = 3e-2 if shape == "lr_too_high" else 1e-3
    update_ratio = (
        ratio_level * (0.3 + 0.7 * decay)[:, None] * rng.lognormal(0, 0.3, (steps, layers))
    )
    act_mean = 0.3 + 0.05 * rng.standard_normal((steps, layers))
    act_std = 0.5 + 0.05 * rng.standard_normal((steps, layers))
    dead = np.clip(0.03 + 0.01 * rng.standard_normal((steps, layers)), 0.0, 1.0)
    if shape == "dead_relu":
        dead[:, layers // 2] = 1.0
        act_mean[:, layers // 2] = 0.0
        act_std[:, layers // 2] = 0.0
        grad_norm[:, layers // 2] = 0.0
    dead[:, -1] = 0.0  # the softmax output layer
    saturated = np.zeros((steps, layers))
    saturated[:, -1] = np.clip(0.02 + 0.01 * rng.standard_normal(steps), 0.0, 1.0)
    output_stats = np.column_stack(
        [
            np.full(steps, 1e-4),
            0.9 - 0.5 * decay,
            np.full(steps, 0.1),
            np.ones(steps),
            np.ones(steps),
            np.ones(steps),
        ]
    )
    return {
        "loss": loss,
        metadata.GRAD_NORM: grad_norm,
        metadata.WEIGHT_NORM: weight_norm,
        metadata.UPDATE_RATIO: update_ratio,
        metadata.ACT_MEAN: act_mean,
        metadata.ACT_STD: act_std,
        metadata.ACT_DEAD_FRACTION: dead,
        metadata.ACT_SATURATED_FRACTION: saturated,
        metadata.OUTPUT_STATS: output_stats,
    }


def _write_events(run_dir, events):
    """Appends events to a new event file of run_dir, byte for byte as EventFileWriter would.

    TensorBoard's `EventFileWriter` names the file and writes its first record
    (the file version); the records follow in its framing (length, masked
    CRC-32C of the length, Event, masked CRC-32C of the Event), with the
    checksums computed vectorized (`records.masked_crc32c_many`): the writer's
    own pure-Python checksum loop would take 0.4 ms a record.
    """
    import glob
    import struct

    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from tb_plateau.eventfiles.records import masked_crc32c_many

    before = set(glob.glob(os.path.join(run_dir, "*tfevents*")))
    EventFileWriter(run_dir).close()
    (path,) = set(glob.glob(os.path.join(run_dir, "*tfevents*"))) - before
    payloads = [event.SerializeToString() for event in events]
    headers = [struct.pack("<Q", len(p)) for p in payloads]
    header_crcs = masked_crc32c_many(b"".join(headers), np.arange(len(headers)) * 8, 8)
    lengths = np.array([len(p) for p in payloads])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    joined = b"".join(payloads)
    data_crcs = np.zeros(len(payloads), dtype=np.uint32)
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        data_crcs[members] = masked_crc32c_many(joined, offsets[members], int(length))
    with open(path, "ab") as f:
        for header, header_crc, payload, data_crc in zip(
            headers, header_crcs.tolist(), payloads, data_crcs.tolist()
        ):
            f.write(header + struct.pack("<I", header_crc) + payload + struct.pack("<I", data_crc))


def write_run(run_dir, steps, layers, seed, shape=None):
    """Writes one run of `steps` records over `layers` layers into run_dir."""
    rng = np.random.default_rng(seed)
    shape = shape or SHAPES[seed % len(SHAPES)]
    layer_labels = ["dense_%d" % i for i in range(layers)]
    activation_names = ["relu"] * (layers - 1) + ["softmax"]
    series = _series(rng, shape, steps, layers)
    zeros_layers = np.zeros(layers, dtype=np.float32)
    zeros_sources = np.zeros(len(metadata.NUMERICS_SOURCES), dtype=np.float32)
    vector_tags = [
        # (name, source of each row, labels, extra header), in _record_vectors' order
        (metadata.WEIGHT_NORM, series[metadata.WEIGHT_NORM], layer_labels, {}),
        (metadata.WEIGHT_NONFINITE, None, layer_labels, {}),
        (metadata.GRAD_NORM, series[metadata.GRAD_NORM], layer_labels, {}),
        (metadata.GRAD_ZERO_COUNT, None, layer_labels, {"sizes": [4160] * layers}),
        (metadata.GRAD_NONFINITE, None, layer_labels, {}),
        (metadata.GRAD_MISSING, None, layer_labels, {}),
        (metadata.UPDATE_RATIO, series[metadata.UPDATE_RATIO], layer_labels, {}),
    ] + [
        (name, series[name], layer_labels, {"activations": activation_names})
        for name in (
            metadata.ACT_MEAN,
            metadata.ACT_STD,
            metadata.ACT_DEAD_FRACTION,
            metadata.ACT_SATURATED_FRACTION,
        )
    ]
    vector_tags.append(
        (metadata.ACT_NONFINITE, None, layer_labels, {"activations": activation_names})
    )
    vector_tags.append(
        (metadata.OUTPUT_STATS, series[metadata.OUTPUT_STATS], list(_OUTPUT_FIELDS), {})
    )
    vector_tags.append((metadata.NONFINITE, None, list(metadata.NUMERICS_SOURCES), {}))

    # Rows as float32 bytes, converted once per array rather than once per record.
    rows = {}
    for name, source, labels, _ in vector_tags:
        if source is None:
            zero = zeros_sources if len(labels) == len(metadata.NUMERICS_SOURCES) else zeros_layers
            rows[name] = None, _float_tensor(zero)
        else:
            rows[name] = np.asarray(source, dtype=np.float32), None

    events = []
    learning_rate = 0.1 if shape == "lr_too_high" else 1e-3
    first = True
    wall_time = time.time() - steps
    for i in range(steps):
        step = i * EVERY_N_STEPS
        values = []

        def value(name, tensor, data_class, values=values, first=first, **header):
            v = summary_pb2.Summary.Value(tag=metadata.tag(name), tensor=tensor)
            if first:
                v.metadata.CopyFrom(metadata.create_summary_metadata(data_class, **header))
            values.append(v)

        value(metadata.BATCH_LOSS, _scalar_tensor(series["loss"][i]), summary_pb2.DATA_CLASS_SCALAR)
        value(metadata.LEARNING_RATE, _scalar_tensor(learning_rate), summary_pb2.DATA_CLASS_SCALAR)
        for name, _, labels, extra in vector_tags:
            array, constant = rows[name]
            tensor = constant if array is None else _float_tensor(array[i])
            value(name, tensor, summary_pb2.DATA_CLASS_TENSOR, labels=labels, **extra)
        if first:
            config = _config(layer_labels, shape, layers)
            value(
                metadata.CONFIG, _string_tensor(json.dumps(config)), summary_pb2.DATA_CLASS_TENSOR
            )
        events.append(
            event_pb2.Event(
                wall_time=wall_time + i, step=step, summary=summary_pb2.Summary(value=values)
            )
        )
        first = False
        if (i + 1) % RECORDS_PER_EPOCH == 0:
            epoch_loss = float(np.mean(series["loss"][i + 1 - RECORDS_PER_EPOCH : i + 1]))
            first_epoch = i + 1 == RECORDS_PER_EPOCH
            events.append(_epoch_event(epoch_loss, step, wall_time + i + 0.5, first_epoch))
    _write_events(run_dir, events)


def _epoch_event(epoch_loss, step, wall_time, first_epoch):
    """The event of an epoch's logs: its loss, and a validation loss 5% above it.

    The first epoch's values carry the summary metadata.
    """
    epoch_values = []
    for name, number in (("epoch/loss", epoch_loss), ("epoch/val_loss", epoch_loss * 1.05)):
        v = summary_pb2.Summary.Value(tag=metadata.tag(name), tensor=_scalar_tensor(number))
        if first_epoch:
            v.metadata.CopyFrom(metadata.create_summary_metadata(summary_pb2.DATA_CLASS_SCALAR))
        epoch_values.append(v)
    return event_pb2.Event(
        wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=epoch_values)
    )


def _write_indexed_run(args):
    path, index, steps, layers, seed = args
    write_run(os.path.join(path, run_name(index)), steps, layers, seed=seed * 100_003 + index)


def make_logdir(path, runs, steps, layers, seed=0, jobs=1):
    """Writes `runs` runs of `steps` records over `layers` layers under path.

    jobs: processes writing runs in parallel (TensorBoard's writer computes
    its checksums in Python: about 0.4 ms per record of 50 layers each).
    Returns the run names (as TensorBoard names them), in sorted order.
    """
    if runs < 1 or steps < 1 or layers < 1 or jobs < 1:
        raise ValueError(
            "runs, steps, layers and jobs must be positive, got %r, %r, %r, %r"
            % (runs, steps, layers, jobs)
        )
    os.makedirs(path, exist_ok=True)
    work = [(path, index, steps, layers, seed) for index in range(runs)]
    if jobs == 1:
        for item in work:
            _write_indexed_run(item)
    else:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            pool.map(_write_indexed_run, work, chunksize=1)
    return [run_name(index) for index in range(runs)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", help="the logdir to write (created if missing)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10_000, help="recorded steps per run")
    parser.add_argument("--layers", type=int, default=50, help="trainable layers per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="processes writing in parallel")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    make_logdir(args.path, args.runs, args.steps, args.layers, args.seed, args.jobs)
    size = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(args.path) for f in files
    )
    print(
        "%s: %d runs x %d steps x %d layers, %.1f MB, %.1f s"
        % (args.path, args.runs, args.steps, args.layers, size / 1e6, time.perf_counter() - start)
    )


if __name__ == "__main__":
    main()
