"""The recorder never harms the training it watches.

Failures injected into each statistic, an interrupted training, a disk that
fills up or turns read-only: the training goes on (or ends as the user made it
end), with one clear warning, and what was recorded stays readable.
"""

import importlib
import json
import logging
import os
import pkgutil
import subprocess
import sys
import textwrap
import uuid

import keras
import numpy as np
import pytest

from tb_plateau import metadata, rundata, summaries
from tests.conftest import due_steps

BATCH = 32

_ACT_TAGS = {
    metadata.ACT_MEAN,
    metadata.ACT_STD,
    metadata.ACT_DEAD_FRACTION,
    metadata.ACT_SATURATED_FRACTION,
    metadata.ACT_NONFINITE,
}
_GRAD_TAGS = {
    metadata.GRAD_NORM,
    metadata.GRAD_ZERO_COUNT,
    metadata.GRAD_NONFINITE,
    metadata.GRAD_MISSING,
}
_ALL_VECTORS = (
    _ACT_TAGS
    | _GRAD_TAGS
    | {
        metadata.WEIGHT_NORM,
        metadata.WEIGHT_NONFINITE,
        metadata.UPDATE_RATIO,
        metadata.OUTPUT_STATS,
        metadata.NONFINITE,
    }
)


def _data(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


_SUMMARIES_MODULES = [
    importlib.import_module(info.name)
    for info in pkgutil.walk_packages(summaries.__path__, "tb_plateau.summaries.")
]

# (function to break, the statistic that stops, vectors that go missing)
_INJECTIONS = [
    ("_activation_stats", "activations", _ACT_TAGS),
    ("_gradient_stats", "gradients", _GRAD_TAGS),
    ("_output_stats", "outputs", {metadata.OUTPUT_STATS}),
    ("_feature_stats", "data", set()),
    ("_label_stats", "data", set()),
    ("_weights_stats", "weights", {metadata.WEIGHT_NORM, metadata.WEIGHT_NONFINITE}),
    ("_update_ratio", "update_ratio", {metadata.UPDATE_RATIO}),
    ("_current_learning_rate", "learning_rate", set()),
    ("_describe_layers", "setup", _ALL_VECTORS),
]


@pytest.mark.parametrize("function, statistic, missing", _INJECTIONS, ids=lambda v: str(v))
def test_a_failing_statistic_stops_alone(
    tmp_path, monkeypatch, caplog, function, statistic, missing
):
    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    # Broken wherever the recorder's modules call it from.
    patched = [m for m in _SUMMARIES_MODULES if hasattr(m, function)]
    assert patched, function
    for module in patched:
        monkeypatch.setattr(module, function, broken)
    x, y = _data()
    model = _model()
    with caplog.at_level(logging.WARNING, logger="tb_plateau"):
        history = model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=2,
            verbose=0,
            callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=4)],
        )
    assert len(history.history["loss"]) == 2  # the training finished
    warnings = [r.getMessage() for r in caplog.records if r.name == "tb_plateau"]
    assert len(warnings) == 1, warnings
    assert "%r" % statistic in warnings[0] and "injected failure" in warnings[0]

    data = rundata.read_logdir_run(str(tmp_path), "run")
    assert set(data.vectors) == _ALL_VECTORS - missing
    assert len(data.scalars["epoch/loss"]) == 2
    if statistic == "setup":
        return
    assert data.scalars[metadata.BATCH_LOSS].steps.tolist() == due_steps(4, 16)
    assert (metadata.LEARNING_RATE in data.scalars) == (statistic != "learning_rate")
    assert ("data" in data.config) == (statistic != "data")


class RefineThreeTimes(keras.layers.Layer):
    """Runs its own layer in a loop: that layer's output lives in the loop body."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.step = keras.layers.Dense(8, activation="tanh", name="step")

    def call(self, x):
        return keras.ops.fori_loop(0, 3, lambda i, h: self.step(h), x)


def test_a_layer_whose_statistics_fail_is_skipped_alone(tmp_path, caplog):
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            RefineThreeTimes(name="refine"),
            keras.layers.Dense(2, activation="softmax", name="probs"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    with caplog.at_level(logging.WARNING, logger="tb_plateau"):
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=2,
            verbose=0,
            callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=4)],
        )
    warnings = [r.getMessage() for r in caplog.records if r.name == "tb_plateau"]
    assert len(warnings) == 1, warnings
    assert "'refine/step'" in warnings[0] and "InaccessibleTensorError" in warnings[0]
    assert "\n" not in warnings[0]  # TensorFlow's message carries a traceback

    data = rundata.read_logdir_run(str(tmp_path), "run")
    assert set(data.vectors) == _ALL_VECTORS
    mean = data.vectors[metadata.ACT_MEAN]
    assert mean.labels == [entry["layer"] for entry in data.config["activation_layers"]]
    assert mean.labels == ["hidden", "refine/step", "probs"]
    assert mean.steps.tolist() == due_steps(4, 16)
    assert np.all(np.isnan(mean.values[:, 1]))
    assert np.all(np.isfinite(mean.values[:, [0, 2]]))


_INTERRUPTED_TRAINING = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras, numpy as np
    from tb_plateau.summaries import PlateauCallback

    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 37:
                print("interrupting", flush=True)
                # What Python raises on a user's Ctrl-C mid-epoch, raised here at a
                # known batch (a real SIGINT lands wherever the interpreter is then,
                # which would make the number of records depend on the machine's load).
                raise KeyboardInterrupt

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(1e-5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=3, verbose=0,
              callbacks=[PlateauCallback(sys.argv[1], every_n_steps=5), CtrlC()])
    """
)


def test_keyboard_interrupt_mid_epoch_leaves_a_diagnosable_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_INTERRUPTED_TRAINING)
    run_dir = tmp_path / "logs" / "interrupted"
    result = subprocess.run(
        [sys.executable, str(script), str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert "interrupting" in result.stdout
    assert result.returncode != 0 and "KeyboardInterrupt" in result.stderr
    data = rundata.read_logdir_run(str(tmp_path / "logs"), "interrupted")
    steps = data.scalars[metadata.BATCH_LOSS].steps.tolist()
    assert steps == due_steps(5, 36)  # every record up to the interrupt, nothing after
    assert data.config["batch_size"] == 32
    cli = subprocess.run(
        [sys.executable, "-m", "tb_plateau.cli", "diagnose", str(tmp_path / "logs"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)["runs"][0]
    assert report["run"] == "interrupted"
    # SGD at 1e-5 barely moves the weights: the diagnosis reads the partial run.
    assert report["verdict"] != "healthy"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 128 KiB tmpfs, mounted for the test (needs root and mount rights)."""
    mount_point = tmp_path / ("disk-" + uuid.uuid4().hex[:8])
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + mounted.stderr.strip())
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _wide_model():
    """Records of a few KiB each: the 128 KiB disk fills within two epochs."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,))]
        + [keras.layers.Dense(8, activation="relu", name="hidden_%d" % i) for i in range(40)]
        + [keras.layers.Dense(2, name="head")]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 64)).astype("float32")
    return model, x, (x[:, 0] > 0).astype("int32")


def test_a_full_disk_gives_one_warning_and_training_goes_on(tiny_disk, caplog):
    model, x, y = _wide_model()
    callback = summaries.PlateauCallback(tiny_disk / "run", every_n_steps=1)
    with caplog.at_level(logging.WARNING, logger="tb_plateau"):
        history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "tb_plateau"]
    assert len(warnings) == 1, warnings
    assert "cannot write" in warnings[0] and "No space left" in warnings[0]
    # What was written before the disk filled is readable.
    data = rundata.read_logdir_run(str(tiny_disk), "run")
    assert data.config is not None and len(data.scalars[metadata.BATCH_LOSS]) >= 1


def test_a_read_only_log_dir_is_refused_by_name(tiny_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    with pytest.raises(ValueError, match="log_dir .*run.* cannot be written.*Read-only"):
        summaries.PlateauCallback(tiny_disk / "run")


def test_the_writer_needs_no_tensorflow(tmp_path):
    """The event writer (what a recording front end for another framework would use) imports
    and writes with TensorFlow blocked; what it writes reads back as a run."""
    code = textwrap.dedent(
        """
        import builtins, sys
        real = builtins.__import__
        def block(name, *args, **kwargs):
            if name.split(".")[0] == "tensorflow":
                raise ImportError("blocked: " + name)
            return real(name, *args, **kwargs)
        builtins.__import__ = block
        from tb_plateau.summaries.writer import _RunWriter
        run = _RunWriter(sys.argv[1], every_n_steps=10)
        assert [s for s in range(25) if run.is_due(s)] == list(range(25))  # until the config
        run.write(0, scalars=[("batch_loss", 2.0)], vectors=[("grad_norm", [1.0, 2.0],
                  ["a", "b"], {})], config={"batch_size": 4})
        assert not run.needs_config
        assert [s for s in range(25) if run.is_due(s)] == [0, 1, 2, 3, 5, 9, 10, 17, 20]
        run.write(10, scalars=[("batch_loss", 1.0)], vectors=[("grad_norm", [0.5, 1.0],
                  ["a", "b"], {})])
        run.flush()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    data = rundata.read_logdir_run(str(tmp_path), "run")
    assert data.scalars[metadata.BATCH_LOSS].values.tolist() == [2.0, 1.0]
    assert data.vectors[metadata.GRAD_NORM].labels == ["a", "b"]
    assert data.config == {"batch_size": 4}
