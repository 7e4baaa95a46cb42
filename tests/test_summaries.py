"""The recording side: tiny real trainings, read back from the event files.

Each recorded statistic is checked against a value the test computes itself
(its own GradientTape, its own forward pass, numpy on the batch).
"""

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_plateau import diagnosis, metadata, rundata, summaries
from tests.conftest import due_steps

BATCH = 32


def _data(n=256, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = ((x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")).astype("int32")
    return x, y


def _read(logdir, run):
    data = rundata.read_logdir_run(str(logdir), run)
    assert not data.problems, data.problems
    return data


def _half_dead_mlp(seed=1):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    kernel, bias = model.get_layer("hidden").get_weights()
    bias[:8] = -100.0  # units 0-7 can never fire on unit-scale inputs
    model.get_layer("hidden").set_weights([kernel, bias])
    return model


def _own_step(model, loss_fn, xb, yb):
    """Loss, per-layer gradient norms and exactly-zero gradient counts for one batch."""
    with tf.GradientTape() as tape:
        logits = model(xb, training=True)
        loss = loss_fn(yb, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    norms, zeros = {}, {}
    for v, g in zip(model.trainable_variables, grads):
        layer = v.path.split("/")[-2]
        norms[layer] = norms.get(layer, 0.0) + float(tf.reduce_sum(g * g))
        zeros[layer] = zeros.get(layer, 0) + int(np.sum(g.numpy() == 0))
    return float(loss), {k: np.sqrt(v) for k, v in norms.items()}, zeros, logits.numpy()


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_callback_records_match_own_computation(tmp_path, jit_compile):
    x, y = _data()
    model = _half_dead_mlp()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # A zero learning rate keeps the weights fixed, so the test can recompute
    # every recorded step from the same weights.
    model.compile(keras.optimizers.SGD(0.0), loss_fn, jit_compile=jit_compile)
    callback = summaries.PlateauCallback(tmp_path / "run", every_n_steps=3)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[callback])

    data = _read(tmp_path, "run")
    recorded_steps = due_steps(3, 8)  # 256 samples: 8 steps
    np.testing.assert_array_equal(data.scalars[metadata.BATCH_LOSS].steps, recorded_steps)
    grad_norm = data.vectors[metadata.GRAD_NORM]
    assert grad_norm.labels == ["hidden", "logits"]
    for row, step in enumerate(recorded_steps):
        xb, yb = x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]
        loss, norms, zeros, logits = _own_step(model, loss_fn, xb, yb)
        assert data.scalars[metadata.BATCH_LOSS].values[row] == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(
            grad_norm.values[row], [norms["hidden"], norms["logits"]], rtol=1e-4
        )
        np.testing.assert_array_equal(
            data.vectors[metadata.GRAD_ZERO_COUNT].values[row],
            [zeros["hidden"], zeros["logits"]],
        )
        output = data.vectors[metadata.OUTPUT_STATS].column
        assert output("min").values[row] == pytest.approx(logits.min(), rel=1e-5)
        assert output("max").values[row] == pytest.approx(logits.max(), rel=1e-5)

    # Dead units, from the test's own forward pass: half the hidden layer.
    kernel, bias = model.get_layer("hidden").get_weights()
    own_dead = np.mean((np.maximum(x[:BATCH] @ kernel + bias, 0).max(axis=0)) <= 0)
    assert own_dead == 0.5
    dead = data.vectors[metadata.ACT_DEAD_FRACTION]
    assert dead.labels == ["hidden"]
    assert dead.header["activations"] == ["relu"]
    assert dead.values[0, 0] == own_dead

    own_weight_norms = [
        np.sqrt(sum(np.sum(w.astype(np.float64) ** 2) for w in model.get_layer(n).get_weights()))
        for n in ("hidden", "logits")
    ]
    np.testing.assert_allclose(data.vectors[metadata.WEIGHT_NORM].values[-1], own_weight_norms)
    np.testing.assert_array_equal(data.vectors[metadata.UPDATE_RATIO].values[-1], [0.0, 0.0])
    np.testing.assert_array_equal(data.vectors[metadata.NONFINITE].values, 0)
    assert data.vectors[metadata.GRAD_ZERO_COUNT].header["sizes"] == [8 * 16 + 16, 16 * 3 + 3]
    assert data.scalars["epoch/loss"].steps.tolist() == [8]


def test_configuration_record(tmp_path):
    x, y = _data()
    x[:, 3] *= 1000.0  # one feature on another scale
    model = _half_dead_mlp()
    model.compile(
        keras.optimizers.Adam(3e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=100)],
    )
    config = _read(tmp_path, "run").config
    assert config["loss"]["from_logits"] is True
    assert config["loss"]["name"] == "sparse_categorical_crossentropy"
    assert config["optimizer"]["name"] == "Adam"
    assert config["optimizer"]["config"]["learning_rate"] == pytest.approx(3e-4)
    assert [(entry["name"], entry["activation"]) for entry in config["layers"]] == [
        ("hidden", "relu"),
        ("logits", None),
    ]
    assert config["model"]["output_units"] == [3]
    assert config["batch_size"] == BATCH
    first = x[:BATCH]
    inputs = config["data"]["inputs"][0]
    # Named as model.summary() names the input, not as the symbolic "keras_tensor_N".
    assert inputs["name"] == model.layers[0].input._keras_history.operation.name
    assert not inputs["name"].startswith("keras_tensor")
    np.testing.assert_allclose(inputs["std"], first.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(inputs["max"], first.max(axis=0), rtol=1e-6)
    assert inputs["scale_spread"] == pytest.approx(
        first.std(axis=0).max() / first.std(axis=0).min(), rel=1e-4
    )
    labels = config["data"]["labels"][0]
    assert labels["class_counts"] == np.bincount(y[:BATCH], minlength=3).tolist()
    assert labels["encoding"] == "sparse"
    assert (labels["min"], labels["max"]) == (0, 2)


def test_reconstruction_targets_are_recorded_as_the_inputs(tmp_path):
    # A classifier's labels match no input; an autoencoder's `fit(x, x)` targets are its
    # inputs, so the diagnosis never says they carry no signal: a one-unit code that
    # leaves the loss near the targets' variance is a capacity problem.
    x, _ = _data(n=512, features=16)  # 16 independent features: one unit holds little of them
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(1),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(16),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    model.fit(
        x,
        x,
        batch_size=BATCH,
        epochs=8,
        verbose=0,
        shuffle=False,
        validation_split=0.2,
        callbacks=[summaries.PlateauCallback(tmp_path / "ae", every_n_steps=4)],
    )
    data = _read(tmp_path, "ae")
    labels = data.config["data"]["labels"][0]
    assert labels["input_match_fraction"] == 1.0
    # The targets' spectrum over the first batch: what a one-unit code cannot pass on.
    singular = np.linalg.svd(x[:BATCH] - x[:BATCH].mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(
        labels["principal_shares"], (singular**2 / np.sum(singular**2))[:8], rtol=1e-3
    )
    causes_named = [f.cause for f in diagnosis.diagnose(data)]
    assert "no_signal" not in causes_named
    assert causes_named[0] == "insufficient_capacity", causes_named
    classifier = _half_dead_mlp()
    classifier.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(
        *_data(),
        batch_size=BATCH,
        epochs=1,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "clf", every_n_steps=100)],
    )
    labels = _read(tmp_path, "clf").config["data"]["labels"][0]
    assert labels["input_match_fraction"] == 0.0


def test_update_ratio_is_one_steps_update(tmp_path):
    x, y = _data()
    model = _half_dead_mlp()
    lr = 0.01
    model.compile(
        keras.optimizers.SGD(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=2)],
    )
    data = _read(tmp_path, "run")
    # Plain SGD moves the weights by lr * g in one step.
    expected = (
        lr * data.vectors[metadata.GRAD_NORM].values / data.vectors[metadata.WEIGHT_NORM].values
    )
    np.testing.assert_allclose(data.vectors[metadata.UPDATE_RATIO].values, expected, rtol=0.02)
    assert data.scalars[metadata.LEARNING_RATE].values == pytest.approx(lr)


def test_learning_rate_schedule_is_recorded_as_used(tmp_path):
    x, y = _data()
    model = _half_dead_mlp()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model.compile(
        keras.optimizers.SGD(schedule),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=4)],
    )
    data = _read(tmp_path, "run")
    lr = data.scalars[metadata.LEARNING_RATE]
    # The rate the recorded step's update used: the schedule at that step (Keras'
    # `optimizer.learning_rate`, read after the step, gives the next step's).
    np.testing.assert_allclose(lr.values, [0.1 * 0.5**s for s in lr.steps], rtol=1e-5)
    # ...which is the rate that moved the weights: SGD's update is lr * |g|.
    updates = data.vectors[metadata.UPDATE_RATIO]
    grad, weight = data.vectors[metadata.GRAD_NORM], data.vectors[metadata.WEIGHT_NORM]
    moving = grad.values[:, 0] > 0
    np.testing.assert_allclose(
        updates.values[moving, 0],
        lr.values[moving] * grad.values[moving, 0] / weight.values[moving, 0],
        rtol=0.02,
    )


def test_nonfinite_inputs_are_counted_on_recorded_steps(tmp_path):
    x, y = _data()
    x[5 * BATCH + 3, 2] = np.nan  # batch 5 carries one NaN input ...
    keras.utils.set_random_seed(1)
    # ... which the model imputes (as a preprocessing layer would), so the loss stays finite.
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Lambda(lambda t: tf.where(tf.math.is_nan(t), tf.zeros_like(t), t)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=5)],
    )
    data = _read(tmp_path, "run")
    assert data.scalars[metadata.BATCH_LOSS].steps.tolist() == due_steps(5, 8)
    assert np.all(np.isfinite(data.scalars[metadata.BATCH_LOSS].values))
    nonfinite = data.vectors[metadata.NONFINITE]
    assert nonfinite.labels == list(metadata.NUMERICS_SOURCES)
    inputs = nonfinite.column("inputs")
    assert {int(s): v for s, v in zip(inputs.steps, inputs.values)} == {
        s: (1.0 if s == 5 else 0.0) for s in due_steps(5, 8)
    }


def test_first_nonfinite_loss_is_recorded_at_once_and_survives_a_crash(tmp_path):
    class CrashAfterNaN(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not np.isfinite(logs["loss"]):
                raise RuntimeError("the training crashed")

    x, _ = _data()
    target = x @ np.arange(8, dtype="float32")[:, None]
    x[6 * BATCH + 1, 0] = np.nan  # step 6, past the dense first records, turns the loss NaN
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    with pytest.raises(RuntimeError, match="crashed"):
        model.fit(
            x,
            target,
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[
                summaries.PlateauCallback(tmp_path / "run", every_n_steps=100),
                CrashAfterNaN(),
            ],
        )
    data = _read(tmp_path, "run")
    loss = data.scalars[metadata.BATCH_LOSS]
    # Every due step before the first NaN loss, then that step at once; nothing after.
    first_nan = int(loss.steps[-1])
    assert first_nan == 6 and first_nan not in due_steps(100, 10)
    assert loss.steps[:-1].tolist() == due_steps(100, first_nan)
    assert np.isfinite(loss.values[:-1]).all() and not np.isfinite(loss.values[-1])
    # The test's own replay: the loss of every earlier step was finite.
    keras.utils.set_random_seed(2)
    replay = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    replay.compile(keras.optimizers.SGD(0.01), "mse")
    losses = [
        float(
            replay.train_on_batch(
                x[i * BATCH : (i + 1) * BATCH], target[i * BATCH : (i + 1) * BATCH]
            )
        )
        for i in range(first_nan + 1)
    ]
    assert np.all(np.isfinite(losses[:-1])) and not np.isfinite(losses[-1])
    at_nan = dict(zip(metadata.NUMERICS_SOURCES, data.vectors[metadata.NONFINITE].values[-1]))
    assert at_nan["loss"] == 1
    # The weights that step left, counted by the test itself.
    own = sum(int(np.sum(~np.isfinite(w))) for w in replay.get_weights())
    assert at_nan["weights"] == own


def test_tanh_saturation_matches_own_forward_pass(tmp_path):
    x, y = _data()
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(
                32,
                activation="tanh",
                kernel_initializer=keras.initializers.RandomNormal(stddev=3.0),
                name="squash",
            ),
            keras.layers.Dense(3),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=100)],
    )
    kernel, bias = model.get_layer("squash").get_weights()
    own = np.mean(np.abs(np.tanh(x[:BATCH] @ kernel + bias)) > 0.97)
    assert own > 0.3
    saturated = _read(tmp_path, "run").vectors[metadata.ACT_SATURATED_FRACTION]
    assert saturated.values[0, 0] == pytest.approx(own, abs=1e-6)


def _lstm_classifier():
    return keras.Sequential(
        [
            keras.Input((12, 3)),
            keras.layers.LSTM(16, kernel_initializer=_large_init(), name="lstm"),
            keras.layers.Dense(3, activation="softmax", name="probs"),
        ]
    )


def _bidirectional_gru_tagger():
    return keras.Sequential(
        [
            keras.Input((12, 3)),
            keras.layers.Bidirectional(
                keras.layers.GRU(
                    8, return_sequences=True, kernel_initializer=_large_init(), name="gru"
                ),
                name="bi",
            ),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, activation="softmax", name="probs"),
        ]
    )


def _large_init():
    return keras.initializers.RandomNormal(stddev=3.0)  # some tanh outputs saturate


def _own_activations(model, xb):
    """Each watched layer's output on `xb` from the test's own forward pass, by label.

    An RNN's output is its cell's activation over the time steps it returns.
    """
    outputs, h = {}, xb
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            # Statistics over all positions do not depend on the time order.
            for rnn in (layer.forward_layer, layer.backward_layer):
                label = "%s/%s/%s" % (layer.name, rnn.name, rnn.cell.name)
                outputs[label] = np.asarray(rnn(h))
        elif isinstance(layer, keras.layers.RNN):
            outputs["%s/%s" % (layer.name, layer.cell.name)] = np.asarray(layer(h))
        elif hasattr(layer, "activation"):
            outputs[layer.name] = np.asarray(layer(h))
        h = layer(h)
    return outputs


@pytest.mark.parametrize(
    "build", [_lstm_classifier, _bidirectional_gru_tagger], ids=lambda f: f.__name__
)
def test_recurrent_layers_activations_match_own_forward_pass(tmp_path, caplog, build):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 12, 3)).astype("float32")
    y = rng.integers(0, 3, size=128)
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    with caplog.at_level(logging.WARNING, logger="tb_plateau"):
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=5)],
        )
    assert [r.getMessage() for r in caplog.records if r.name == "tb_plateau"] == []

    data = _read(tmp_path, "run")
    own = _own_activations(model, x[:BATCH])
    labels = data.vectors[metadata.ACT_MEAN].labels
    assert sorted(labels) == sorted(own)
    assert [entry["layer"] for entry in data.config["activation_layers"]] == labels
    # SGD(0.0) keeps the weights the test's own pass uses; record 0 is the first batch's.
    row = {
        name: dict(zip(labels, data.vectors[name].values[0]))
        for name in (metadata.ACT_MEAN, metadata.ACT_STD, metadata.ACT_SATURATED_FRACTION)
    }
    for label, output in own.items():
        assert row[metadata.ACT_MEAN][label] == pytest.approx(output.mean(), abs=1e-5)
        assert row[metadata.ACT_STD][label] == pytest.approx(output.std(), rel=1e-4)
        if "/" in label:  # the recurrent layers: tanh, saturated within 0.03 of +-1
            own_saturated = np.mean(np.abs(output) > 0.97)
            assert row[metadata.ACT_SATURATED_FRACTION][label] == pytest.approx(own_saturated)
    assert data.vectors[metadata.ACT_SATURATED_FRACTION].header["activations"] == [
        "relu" if label == "hidden" else "softmax" if label == "probs" else "tanh"
        for label in labels
    ]


def _functional_two_heads():
    a = keras.Input((8,), name="a")
    b = keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="tanh", name="ha")(a), b])
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    model = keras.Model([a, b], [cls, reg])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    x, y = _data()
    return model, ([x, x[:, :4]], [y, x[:, :1]]), ["ha", "cls", "reg"]


class NestedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(16, activation="relu", name="first")
        self.block = keras.Sequential(
            [keras.layers.Dense(8, activation="sigmoid", name="inner")], name="block"
        )
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x):
        return self.head(self.block(self.first(x)))


def _subclassed_nested():
    model = NestedNet()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    return model, (x, y), ["first", "block/inner", "head"]


def _mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _half_dead_mlp()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    x, y = _data()
    return model, (x, y), ["hidden", "logits"]


@pytest.mark.parametrize(
    "build", [_functional_two_heads, _subclassed_nested, _mixed_precision], ids=lambda f: f.__name__
)
def test_model_kinds(tmp_path, build):
    model, (x, y), layers = build()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=4)],
    )
    data = _read(tmp_path, "run")
    grad_norm = data.vectors[metadata.GRAD_NORM]
    assert grad_norm.labels == layers
    assert np.all(np.isfinite(grad_norm.values)) and np.all(grad_norm.values > 0)
    assert len(grad_norm) >= 4
    assert np.all(np.isfinite(data.scalars[metadata.BATCH_LOSS].values))
    assert data.vectors[metadata.ACT_MEAN].labels  # activation layers were watched
    assert data.config["batch_size"] == BATCH
    # The wraps are gone: a later fit without the callback traces a clean step.
    assert "compute_loss" not in vars(model) and "train_step" not in vars(model)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)


def test_mirrored_strategy_two_replicas(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "mirrored_run.py")
    result = subprocess.run(
        [sys.executable, script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "two replicas agree with one device" in result.stdout


def test_only_the_chief_of_a_multi_worker_training_writes(tmp_path):
    """Who writes, from TensorFlow's own cluster resolvers; a worker that is not the chief
    records the same steps (its collectives must match the chief's) and writes nothing.
    (Keras 3's `fit` itself fails under MultiWorkerMirroredStrategy, keras-team/keras#20585:
    the two-process test below trains a custom loop.)"""
    from types import SimpleNamespace

    from tb_plateau.summaries.keras.callback import _is_chief
    from tb_plateau.summaries.writer import _RunWriter

    def strategy(cluster, task_type, task_id):
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
        )
        return SimpleNamespace(cluster_resolver=resolver)

    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert _is_chief(strategy(workers, "worker", 0))
    assert not _is_chief(strategy(workers, "worker", 1))
    with_chief = dict(workers, chief=["127.0.0.1:3"])
    assert _is_chief(strategy(with_chief, "chief", 0))
    assert not _is_chief(strategy(with_chief, "worker", 0))
    assert _is_chief(tf.distribute.get_strategy())  # one process, no cluster

    os.makedirs(tmp_path / "worker")
    chief = _RunWriter(str(tmp_path / "chief"), 10)
    worker = _RunWriter(str(tmp_path / "worker"), 10, silent=True)
    for writer in (chief, worker):
        for step in range(40):
            if writer.is_due(step):
                config = {"first_step": step} if writer.needs_config else None
                writer.write(step, scalars=[(metadata.BATCH_LOSS, 1.0)], config=config)
        writer.close()
    assert os.listdir(tmp_path / "worker") == []
    chief_steps = rundata.read_run_directory(str(tmp_path / "chief"), "chief")
    assert chief_steps.scalars[metadata.BATCH_LOSS].steps.tolist() == due_steps(10, 40)


def test_multi_worker_custom_loop_only_the_chief_writes(tmp_path):
    """Two MultiWorkerMirroredStrategy workers on loopback, each with a Recorder on the same
    logdir: one event file, the chief's, with the records of its schedule."""
    import json
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    log_dir = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.mwms_run", str(i), str(ports[0]), str(ports[1])]
            + [str(log_dir)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["chief"] for r in results] == [True, False]
    files = [f for f in os.listdir(log_dir) if f.startswith("events.out.tfevents")]
    assert len(files) == 1, files
    data = rundata.read_run_directory(str(log_dir), "run")
    loss = data.scalars[metadata.BATCH_LOSS]
    assert loss.steps.tolist() == due_steps(4, 16)
    np.testing.assert_allclose(loss.values, [results[0]["loss"][s] for s in due_steps(4, 16)])


def test_recorder_for_a_custom_loop(tmp_path):
    x, y = _data()
    model = _half_dead_mlp()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD(0.01)
    own = {}
    with summaries.Recorder(
        tmp_path / "run", model, every_n_steps=3, optimizer=optimizer, loss=loss_fn
    ) as recorder:
        for step in range(8):
            xb, yb = x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]
            loss, norms, _, _ = _own_step(model, loss_fn, xb, yb)
            with tf.GradientTape() as tape:
                logits = model(xb, training=True)
                loss = loss_fn(yb, logits)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            recorder.record(step, loss, grads, x=xb, y=yb, y_pred=logits)
            own[step] = (float(loss), norms)
    data = _read(tmp_path, "run")
    recorded = due_steps(3, 8)
    assert data.scalars[metadata.BATCH_LOSS].steps.tolist() == recorded
    for row, step in enumerate(recorded):
        loss, norms = own[step]
        assert data.scalars[metadata.BATCH_LOSS].values[row] == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(
            data.vectors[metadata.GRAD_NORM].values[row],
            [norms["hidden"], norms["logits"]],
            rtol=1e-4,
        )
    assert data.vectors[metadata.ACT_DEAD_FRACTION].values[0, 0] == 0.5
    # The update of the step after each record (SGD: lr * |g| / |W|).
    assert data.vectors[metadata.UPDATE_RATIO].steps.tolist() == [s + 1 for s in recorded]
    assert np.all(data.vectors[metadata.UPDATE_RATIO].values > 0)
    assert data.config["recorder"] == "Recorder"
    assert data.config["loss"]["from_logits"] is True
    assert "call" not in vars(model.get_layer("hidden"))  # close() removed the wraps


def test_public_writers_read_back_as_the_recorder_writes(tmp_path):
    # The low-level writers into a `tf.summary` writer and the recorder share
    # one value builder: the reader sees the same tags, labels and record.
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        summaries.write_config({"optimizer": {"name": "SGD"}, "batch_size": np.int64(4)})
        summaries.write_scalar(metadata.BATCH_LOSS, 1.5, step=3)
        summaries.write_vector(metadata.GRAD_NORM, [0.5, 2.0], ["a", "b"], step=3)
        with pytest.raises(ValueError, match="write_vector.*grad_norm.*2 values for 3 labels"):
            summaries.write_vector(metadata.GRAD_NORM, [0.5, 2.0], ["a", "b", "c"], step=4)
    writer.close()
    data = _read(tmp_path, "run")
    assert data.config == {"optimizer": {"name": "SGD"}, "batch_size": 4}
    assert data.scalars[metadata.BATCH_LOSS].values.tolist() == [1.5]
    grad = data.vectors[metadata.GRAD_NORM]
    assert grad.labels == ["a", "b"] and grad.values.tolist() == [[0.5, 2.0]]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10", None])
def test_bad_every_n_steps_is_named(tmp_path, bad):
    with pytest.raises(ValueError, match="every_n_steps"):
        summaries.PlateauCallback(tmp_path / "run", every_n_steps=bad)


def test_unwritable_log_dir_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="log_dir .*a_file"):
        summaries.PlateauCallback(blocker / "run")
    with pytest.raises(ValueError, match="log_dir"):
        summaries.PlateauCallback("")


def test_step_after_the_first_nonfinite_loss_is_recorded_whole(tmp_path):
    x, _ = _data()
    target = x @ np.arange(8, dtype="float32")[:, None]
    x[6 * BATCH + 1, 0] = np.nan  # step 6 turns the loss (then every weight) NaN
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.fit(
        x,
        target,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=100)],
    )
    data = _read(tmp_path, "run")
    loss = data.scalars[metadata.BATCH_LOSS]
    first_nan = int(loss.steps[~np.isfinite(loss.values)][0])
    assert first_nan == 6
    # Step 7 is not due (the dense first records are over): recorded whole for the NaN.
    grad_norm = data.vectors[metadata.GRAD_NORM]
    assert 7 not in due_steps(100, 8)
    assert grad_norm.steps.tolist() == due_steps(100, 6) + [7]
    assert not np.all(np.isfinite(grad_norm.values[-1]))


def test_weight_penalty_and_regularizers_are_recorded(tmp_path):
    """The penalty in the loss equals the test's own sum of 0.01 * ||W||^2 (weights frozen
    by a zero learning rate), and the configuration names each layer's regularizer."""
    x, y = _data()
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(
                16, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01)
            ),
            keras.layers.Dense(3),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(True))
    kernel = model.layers[0].kernel.numpy()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        verbose=0,
        callbacks=[summaries.PlateauCallback(tmp_path / "run", every_n_steps=4)],
    )
    data = _read(tmp_path, "run")
    penalty = data.scalars[metadata.REGULARIZATION_LOSS]
    np.testing.assert_allclose(penalty.values, 0.01 * np.sum(kernel**2), rtol=1e-4)
    assert penalty.values[0] < data.scalars[metadata.BATCH_LOSS].values[0]  # part of the loss
    (hidden,) = [layer for layer in data.config["layers"] if layer.get("units") == 16]
    assert hidden["kernel_regularizer"]["class"] == "L2"
    assert hidden["kernel_regularizer"]["l2"] == pytest.approx(0.01)


def test_a_batchnorm_frozen_before_it_had_statistics_is_named(tmp_path):
    """A BatchNormalization frozen on a fresh model runs in inference mode with mean 0 and
    variance 1 for ever: the recorder notes its untouched statistics, the diagnosis names it;
    the same model with the layer trainable records statistics of its own and is not named."""
    from tb_plateau import diagnosis

    x, y = _data()
    reports = {}
    for frozen in (True, False):
        keras.utils.set_random_seed(0)
        norm = keras.layers.BatchNormalization(name="norm")
        norm.trainable = not frozen
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                norm,
                keras.layers.Dense(3),
            ]
        )
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        run = "frozen" if frozen else "trainable"
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=2,
            verbose=0,
            callbacks=[summaries.PlateauCallback(tmp_path / run, every_n_steps=4)],
        )
        data = _read(tmp_path, run)
        (entry,) = [layer for layer in data.config["layers"] if layer["name"] == "norm"]
        assert entry["trainable"] is not frozen
        assert entry["moving_statistics_initial"] is True  # recorded before training moved them
        reports[frozen] = diagnosis.diagnose(data)
    named = [f for f in reports[True] if f.cause == "batchnorm_misuse"]
    assert named and named[0].layers == ["norm"] and "frozen" in named[0].title
    assert "batchnorm_misuse" not in [f.cause for f in reports[False]]
