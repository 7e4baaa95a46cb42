"""Logdirs for the Plateau tab's tests: tiny real trainings plus edge cases.

`write_logdir(root)` writes, in a fresh process-independent layout:
  trained/dead_relu      Keras fit with PlateauCallback; ReLU layer whose bias
                         starts far negative, so its units never fire
  trained/diverging      Keras fit with PlateauCallback; SGD with a huge step
  trained/healthy        Keras fit with PlateauCallback; a learnable problem
  keras/train, keras/validation
                         Keras' own TensorBoard callback only (epoch_loss)
  <img src=x onerror=alert(1)>
                         a run whose name is HTML: the tab must show it as text
  newer_version          plateau data from a future tb_plateau (header version 99)
  images_only            no loss, no plateau data: not listed by the tab

Imports TensorFlow; call it once per session.
"""

import os

XSS_RUN = "<img src=x onerror=alert(1)>"
BROKEN_RUN = "trained/dead_relu"
DIVERGING_RUN = "trained/diverging"
HEALTHY_RUN = "trained/healthy"
KERAS_TRAIN_RUN = "keras/train"
KERAS_VALIDATION_RUN = "keras/validation"
NEWER_VERSION_RUN = "newer_version"
IMAGES_ONLY_RUN = "images_only"

DIAGNOSABLE_RUNS = sorted(
    [BROKEN_RUN, DIVERGING_RUN, HEALTHY_RUN, KERAS_TRAIN_RUN, XSS_RUN, NEWER_VERSION_RUN]
)


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _data(tf, seed, n=512, features=8):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _train(tf, log_dir, *, hidden_bias, optimizer, seed, epochs=6):
    from tb_plateau.summaries import PlateauCallback

    tf.keras.utils.set_random_seed(seed)
    x, y = _data(tf, seed)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(x.shape[1],)),
            tf.keras.layers.Dense(
                16,
                activation="relu",
                bias_initializer=tf.keras.initializers.Constant(hidden_bias),
                name="hidden",
            ),
            tf.keras.layers.Dense(16, activation="relu", name="hidden_2"),
            tf.keras.layers.Dense(1, name="head"),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=epochs,
        validation_split=0.25,
        verbose=0,
        callbacks=[PlateauCallback(log_dir, every_n_steps=2)],
    )


def _write_keras_only(tf, root):
    tf.keras.utils.set_random_seed(3)
    x, y = _data(tf, 3, n=256)
    model = tf.keras.Sequential(
        [tf.keras.Input(shape=(x.shape[1],)), tf.keras.layers.Dense(1, name="linear")]
    )
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    model.fit(
        x,
        y,
        epochs=4,
        validation_split=0.25,
        verbose=0,
        callbacks=[tf.keras.callbacks.TensorBoard(os.path.join(root, "keras"), write_graph=False)],
    )


def _write_xss_run(tf, root):
    writer = tf.summary.create_file_writer(os.path.join(root, XSS_RUN))
    with writer.as_default():
        for step in range(20):
            tf.summary.scalar("loss", 1.0 / (1 + step), step=step)
    writer.close()


def _write_newer_version(tf, root):
    from tensorboard.compat.proto import summary_pb2

    from tb_plateau import metadata

    writer = tf.summary.create_file_writer(os.path.join(root, NEWER_VERSION_RUN))
    md = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=b'{"version": 99}'
        ),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    )
    with writer.as_default():
        for step in range(5):
            tf.summary.write(
                metadata.tag(metadata.BATCH_LOSS),
                tf.constant(1.0),
                step=step,
                metadata=md.SerializeToString(),
            )
    writer.close()


def _write_images_only(tf, root):
    writer = tf.summary.create_file_writer(os.path.join(root, IMAGES_ONLY_RUN))
    with writer.as_default():
        tf.summary.image("picture", tf.zeros([1, 4, 4, 1]), step=0)
    writer.close()


def write_logdir(root):
    """Writes every run listed in the module docstring under `root`."""
    tf = _quiet_tf()
    _train(
        tf,
        os.path.join(root, BROKEN_RUN),
        hidden_bias=-20.0,
        optimizer=tf.keras.optimizers.Adam(1e-3),
        seed=1,
    )
    _train(
        tf,
        os.path.join(root, DIVERGING_RUN),
        hidden_bias=0.0,
        optimizer=tf.keras.optimizers.SGD(3.0),
        seed=2,
    )
    _train(
        tf,
        os.path.join(root, HEALTHY_RUN),
        hidden_bias=0.0,
        optimizer=tf.keras.optimizers.Adam(1e-2),
        seed=4,
    )
    _write_keras_only(tf, root)
    _write_xss_run(tf, root)
    _write_newer_version(tf, root)
    _write_images_only(tf, root)
    return root


# -- TensorBoard's WSGI app over a logdir ----------------------------------------


class WsgiServer:
    """TensorBoard's WSGI app with the Python loader over one logdir.

    `local=False` hides the logdir from the plugin, as for a remote logdir or
    a custom data provider: it then reads runs through the data provider.
    """

    def __init__(self, logdir, path_prefix="", local=True):
        import argparse

        from tensorboard.backend import application
        from tensorboard.backend.event_processing import data_provider as mux_provider
        from tensorboard.backend.event_processing import plugin_event_multiplexer
        from werkzeug import test as werkzeug_test

        from tb_plateau.loader import PlateauLoader

        self.flags = argparse.Namespace(
            logdir=logdir if local else "",
            path_prefix=path_prefix,
            samples_per_plugin={},
            window_title="",
        )
        loader = PlateauLoader()
        loader.fix_flags(self.flags)
        # As TensorBoard does: --samples_per_plugin becomes the loader's size guidance.
        self.multiplexer = plugin_event_multiplexer.EventMultiplexer(
            tensor_size_guidance=dict(self.flags.samples_per_plugin)
        )
        self.multiplexer.AddRunsFromDirectory(logdir)
        self.multiplexer.Reload()
        provider = mux_provider.MultiplexerDataProvider(self.multiplexer, logdir)
        self.app = application.TensorBoardWSGIApp(self.flags, [loader], data_provider=provider)
        self.client = werkzeug_test.Client(self.app)
        self.prefix = path_prefix

    def get(self, path, **params):
        response = self.client.get(self.prefix + path, query_string=params)
        return response

    def runs(self, timeout_s=60):
        """`/runs` once no run is pending (diagnosed in the background), by run name."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            body = self.json("/data/plugin/plateau/runs")
            if not any(e["pending"] for e in body["runs"]) or time.monotonic() > deadline:
                return {entry["run"]: entry for entry in body["runs"]}
            time.sleep(0.05)

    def json(self, path, expect=200, **params):
        import json

        response = self.get(path, **params)
        assert response.status_code == expect, response.get_data(as_text=True)
        assert response.headers["Content-Type"].startswith("application/json")
        return json.loads(response.get_data(as_text=True))


# -- synthetic runs, written without TensorFlow --------------------------------
#
# `SyntheticRun` writes an event file in exactly the format of
# `tb_plateau.summaries.writer._RunWriter` (one event per recorded step; a tag's
# metadata with its first value only; float32 scalars and vectors; the
# configuration as a JSON string tensor), through TensorBoard's own record
# writer, so tests can write hostile and broken data in milliseconds.

HTML_LAYER_NAMES = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "\"quoted\" 'single'",
    "</div><b>bold</b>",
    "{hot|x} plain_dense",
]
HTML_FUNCTION_NAME = "<img src=y onerror=alert(3)>"
HTML_LOSS_TAG = "<b>loss</b> & <i>more</i>"
HTML_NAMES_RUN = "html/<svg onload=alert(4)>"
NONFINITE_RUN = "numerics/nan_inf"
CORRUPT_RUN = "broken/corrupt_middle"
CORRUPT_HEADER_RUN = "broken/corrupt_header"
TRUNCATED_RUN = "broken/truncated_tail"
EMPTY_RUN = "broken/empty_file"
SYNTHETIC_NEWER_RUN = "broken/newer_version"
ODD_NAME_RUNS = ["unicodé ☃ run", "back\\slash", "per%2ecent", "sp ace", "..."]


class SyntheticRun:
    """One run's event file, written the way `summaries.writer._RunWriter` writes it."""

    def __init__(self, run_dir, file_index=0):
        import socket

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer import record_writer

        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(
            run_dir,
            "events.out.tfevents.%010d.%s.%d.%d"
            % (1_700_000_000 + file_index, socket.gethostname(), os.getpid(), file_index),
        )
        self._file = open(self.path, "wb")
        self._records = record_writer.RecordWriter(self._file)
        self._tags_with_metadata = set()
        self._event_pb2 = event_pb2
        self._wall_time = 1_700_000_000.0
        self._write_event(event_pb2.Event(wall_time=self._wall_time, file_version="brain.Event:2"))

    def _write_event(self, event):
        self._records.write(event.SerializeToString())

    def _value(self, tag, array, data_class, plugin_content=None, plugin_name=None, **header):
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.util import tensor_util

        from tb_plateau import metadata

        value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(array))
        if tag not in self._tags_with_metadata:
            self._tags_with_metadata.add(tag)
            if plugin_name is not None:
                value.metadata.CopyFrom(
                    summary_pb2.SummaryMetadata(
                        plugin_data=summary_pb2.SummaryMetadata.PluginData(
                            plugin_name=plugin_name, content=plugin_content or b""
                        ),
                        data_class=data_class,
                    )
                )
            else:
                value.metadata.CopyFrom(metadata.create_summary_metadata(data_class, **header))
        return value

    def write(self, step, scalars=(), vectors=(), config=None, other_scalars=(), header=None):
        """scalars: [(short name, value)]; vectors: [(short name, values, labels, extra)];
        other_scalars: [(tag, value)] of the scalars plugin (Keras' own, PyTorch)."""
        import json

        import numpy as np
        from tensorboard.compat.proto import summary_pb2

        from tb_plateau import metadata

        scalar_class = summary_pb2.DATA_CLASS_SCALAR
        tensor_class = summary_pb2.DATA_CLASS_TENSOR
        values = []
        for name, number in scalars:
            array = np.asarray(number, dtype=np.float32)
            if header is not None:
                values.append(
                    self._value(
                        metadata.tag(name),
                        array,
                        scalar_class,
                        plugin_name=metadata.PLUGIN_NAME,
                        plugin_content=json.dumps(header).encode("utf-8"),
                    )
                )
            else:
                values.append(self._value(metadata.tag(name), array, scalar_class))
        for name, vector, labels, extra in vectors:
            array = np.asarray(vector, dtype=np.float32).reshape(-1)
            values.append(
                self._value(metadata.tag(name), array, tensor_class, labels=labels, **extra)
            )
        if config is not None:
            text = json.dumps(config, allow_nan=True).encode("utf-8")
            values.append(
                self._value(
                    metadata.tag(metadata.CONFIG), np.array(text, dtype=object), tensor_class
                )
            )
        for tag, number in other_scalars:
            values.append(
                self._value(
                    tag,
                    np.asarray(number, dtype=np.float32),
                    scalar_class,
                    plugin_name="scalars",
                )
            )
        self._wall_time += 1.0
        self._write_event(
            self._event_pb2.Event(
                wall_time=self._wall_time, step=int(step), summary=summary_pb2.Summary(value=values)
            )
        )

    def close(self):
        self._records.close()


def write_training_like_run(run_dir, steps, labels, *, seed=0, every=1, config=None, hook=None):
    """A plausible recorded training: a falling loss and per-layer statistics.

    `hook(step, record)` may change a step's record (a dict with "scalars",
    "vectors", "config") before it is written, e.g. to put NaN in it.
    """
    import numpy as np

    from tb_plateau import metadata

    rng = np.random.default_rng(seed)
    width = len(labels)
    depth_scale = np.logspace(-1, 0, width)
    writer = SyntheticRun(run_dir)
    for i in range(steps):
        step = i * every
        progress = i / max(1, steps - 1)
        loss = 2.0 * np.exp(-3 * progress) + 0.05 + 0.01 * rng.standard_normal()
        grad = depth_scale * (1 + 0.1 * rng.standard_normal(width))
        weight = 1.0 + 0.01 * i / max(1, steps) + np.zeros(width)
        record = {
            "scalars": [(metadata.BATCH_LOSS, loss), (metadata.LEARNING_RATE, 1e-3)],
            "vectors": [
                (metadata.GRAD_NORM, grad, labels, {}),
                (metadata.WEIGHT_NORM, weight, labels, {}),
                (metadata.UPDATE_RATIO, 1e-3 * (1 + 0.1 * rng.random(width)), labels, {}),
                (metadata.ACT_DEAD_FRACTION, 0.05 * rng.random(width), labels, {}),
                (metadata.NONFINITE, np.zeros(6), list(metadata.NUMERICS_SOURCES), {}),
            ],
            "config": config if i == 0 else None,
        }
        if hook is not None:
            hook(step, record)
        writer.write(step, record["scalars"], record["vectors"], record["config"])
    writer.close()
    return writer.path


def hostile_config(layer_names, function_name=HTML_FUNCTION_NAME):
    """A configuration record whose names carry markup, with NaN and ±Inf numbers."""
    return {
        "tb_plateau_version": "<b>0.0</b>",
        "recorder": "callback",
        "every_n_steps": 1,
        "model": {"name": "<script>alert(5)</script>", "class": "Sequential", "params": 10},
        "layers": [
            {
                "name": name,
                "path": name,
                "class": "Lambda" if i == 0 else "Dense",
                "activation": function_name if i == 0 else "relu",
                "function": function_name if i == 0 else None,
                "units": 4,
                "trainable": True,
                "params": 4,
                "nested": False,
            }
            for i, name in enumerate(layer_names)
        ],
        "trainable_layers": list(layer_names),
        "activation_layers": [{"layer": layer_names[0], "activation": function_name}],
        "loss": {"name": "<i>my_loss</i>", "from_logits": False, "custom": True},
        "optimizer": {
            "name": "SGD",
            "config": {"learning_rate": float("nan"), "momentum": float("inf")},
            "loss_scale": False,
        },
        "inputs": {"features": [{"mean": float("-inf"), "std": float("nan")}]},
    }


def record_offsets(path):
    """Byte offsets of the TFRecords of an event file."""
    import struct

    offsets = []
    with open(path, "rb") as f:
        data = f.read()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offsets.append(offset)
        offset += 12 + length + 4
    return offsets


def corrupt_middle_record(path, where="payload"):
    """Overwrites bytes of the middle record's payload (or of its length header)."""
    offset = record_offsets(path)[len(record_offsets(path)) // 2]
    with open(path, "r+b") as f:
        f.seek(offset + (16 if where == "payload" else 0))
        f.write(b"\xff" * 8)


def age(path, seconds=3600):
    """Sets a file's times `seconds` into the past: a logdir copied, not being written."""
    import time

    past = time.time() - seconds
    os.utime(path, (past, past))


def write_hostile_logdir(root):
    """Runs with markup in every name, NaN/Inf everywhere and broken files; no TensorFlow.

    Returns the run names TensorBoard will list that the tab should diagnose.
    """
    import numpy as np

    from tb_plateau import metadata

    def nonfinite(step, record):
        if step in (30, 31):
            record["scalars"][0] = (metadata.BATCH_LOSS, float("nan"))
        if step == 40:
            record["scalars"][0] = (metadata.BATCH_LOSS, float("inf"))
        if step >= 35:
            name, values, labels, extra = record["vectors"][0]
            values = np.array(values)
            values[0] = np.nan
            values[-1] = -np.inf if step % 2 else np.inf
            record["vectors"][0] = (name, values, labels, extra)

    write_training_like_run(
        os.path.join(root, NONFINITE_RUN),
        50,
        HTML_LAYER_NAMES,
        config=hostile_config(HTML_LAYER_NAMES),
        hook=nonfinite,
    )

    html = SyntheticRun(os.path.join(root, HTML_NAMES_RUN))
    html.write(0, config=hostile_config(HTML_LAYER_NAMES))
    for step in range(40):
        grad = np.logspace(-6, 0, len(HTML_LAYER_NAMES))
        html.write(
            step,
            scalars=[(metadata.BATCH_LOSS, 1.0)],
            vectors=[
                (metadata.GRAD_NORM, grad, HTML_LAYER_NAMES, {}),
                (metadata.ACT_DEAD_FRACTION, [1.0, 1.0, 0.0, 0.0, 0.0], HTML_LAYER_NAMES, {}),
            ],
            other_scalars=[(HTML_LOSS_TAG, 1.0 + 0.001 * step)],
        )
    html.close()

    path = write_training_like_run(os.path.join(root, CORRUPT_RUN), 60, ["a", "b", "c"])
    corrupt_middle_record(path, "payload")
    age(path)
    path = write_training_like_run(os.path.join(root, CORRUPT_HEADER_RUN), 60, ["a", "b", "c"])
    corrupt_middle_record(path, "header")
    age(path)

    path = write_training_like_run(os.path.join(root, TRUNCATED_RUN), 30, ["a", "b"])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 7)
    age(path)

    os.makedirs(os.path.join(root, EMPTY_RUN))
    open(os.path.join(root, EMPTY_RUN, "events.out.tfevents.1700000000.empty.0.0"), "wb").close()

    newer = SyntheticRun(os.path.join(root, SYNTHETIC_NEWER_RUN))
    for step in range(5):
        newer.write(step, scalars=[(metadata.BATCH_LOSS, 1.0)], header={"version": 99})
    newer.close()

    for i, name in enumerate(ODD_NAME_RUNS):
        write_training_like_run(os.path.join(root, name), 12, ["dense"], seed=i)
    return root


if __name__ == "__main__":
    import sys

    write_logdir(sys.argv[1])
