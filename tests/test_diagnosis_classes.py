"""Each class of diagnosis error found on unseen trainings, checked on a training unlike it.

The classes (ranking a symptom above its root, losing a cause that came
first, fixes that contradict the run, missed causes, curve-only logs, silence
on a stuck run, a false alarm on a run that trained well) were found on
trainings written elsewhere; each test here trains a different model, with
different data, into the same kind of trouble, and checks the report as a
user reads it: which cause comes first, what stands under it, the numbers and
the fixes.
"""

import re

import numpy as np
import pytest

from tests import heldout, reproducers

tf = pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow

_keras = reproducers._keras


def _report(logdir):
    from tb_plateau import diagnosis, rundata

    return diagnosis.run_report(rundata.read_logdir_run(str(logdir), "."))


def _serious(report):
    return [f for f in report["findings"] if f["severity"] != "info"]


def _fit(logdir, model, x, y, loss, optimizer, epochs, callbacks=(), **kwargs):
    from tb_plateau.summaries import PlateauCallback

    keras = _keras()
    model.compile(optimizer=optimizer, loss=loss)
    model.fit(
        x,
        y,
        epochs=epochs,
        verbose=0,
        callbacks=[PlateauCallback(str(logdir), every_n_steps=5), *callbacks],
        **kwargs,
    )
    keras.backend.clear_session()


def _conv_images(rng, n=480):
    """8x8 images, two classes: a bright vertical or horizontal bar; pixels in [0, 1]."""
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.2, size=(n, 8, 8, 1))
    for i in range(n):
        at = rng.integers(1, 7)
        if y[i]:
            x[i, :, at, 0] += 0.8
        else:
            x[i, at, :, 0] += 0.8
    return x.astype("float32"), y.astype("int32")


def test_a_learning_rate_jump_is_the_root_of_what_it_kills(tmp_path):
    """A CNN whose rate a callback raises 1,000x mid-run: the jump comes first, the
    dead units and exploding gradients after it stand under it, without fixes."""
    keras = _keras()
    rng = reproducers._rng(41)
    x, y = _conv_images(rng)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    steps_per_epoch = len(x) // 32
    jump_epoch = 4

    def schedule(epoch, lr):
        return 3.0 if epoch >= jump_epoch else 3e-3

    _fit(
        tmp_path,
        model,
        x,
        y,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.optimizers.SGD(3e-3, momentum=0.9),
        epochs=10,
        batch_size=32,
        callbacks=[keras.callbacks.LearningRateScheduler(schedule)],
    )
    report = _report(tmp_path)
    root = report["findings"][0]
    assert root["cause"] == "lr_too_high" and root["severity"] != "info", report
    assert root["first_step"] >= jump_epoch * steps_per_epoch  # named at the jump, with its step
    assert "jumped to 3" in root["title"]
    for symptom in report["findings"][1:]:
        if symptom["cause"] in ("dead_relu", "exploding_gradients", "zero_gradient"):
            assert "consequence of" in symptom["explanation"]
            assert symptom["fixes"] == []


def test_l1_penalty_too_strong_is_over_regularization(tmp_path):
    """An Embedding + Conv1D text model with an L1 penalty of 0.3 on every weight:
    the penalty outweighs the data and the loss stays at chance."""
    keras = _keras()
    rng = reproducers._rng(43)
    x, y = heldout._keyword_texts(rng, n=900, classes=3)
    l1 = keras.regularizers.L1(0.3)
    model = keras.Sequential(
        [
            keras.Input((24,), dtype="int32"),
            keras.layers.Embedding(60, 16, embeddings_regularizer=l1),
            keras.layers.Conv1D(16, 3, activation="relu", kernel_regularizer=l1),
            keras.layers.GlobalMaxPooling1D(),
            keras.layers.Dense(3, kernel_regularizer=l1),
        ]
    )
    _fit(
        tmp_path,
        model,
        x,
        y,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=8,
        validation_split=0.2,
    )
    report = _report(tmp_path)
    (top, *_) = _serious(report)
    assert top["cause"] == "over_regularization", report
    assert top["evidence"]["penalty_share"] > 0.3  # the number behind it
    assert "%" in top["explanation"] and top["fixes"]
    # The fixes are for the penalty found, not for dropout or label smoothing it lacks.
    assert all("Dropout" not in f and "smoothing" not in f for f in top["fixes"])


def test_fixes_move_the_learning_rate_the_right_way(tmp_path):
    """RMSprop at 1e-7 on a GRU: the fix names a rate above the one in use."""
    keras = _keras()
    rng = reproducers._rng(44)
    x, y = heldout._waveforms(rng, n=480, length=32)
    model = keras.Sequential([keras.Input((32, 1)), keras.layers.GRU(12), keras.layers.Dense(3)])
    _fit(
        tmp_path,
        model,
        x,
        y,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.optimizers.RMSprop(1e-7),
        epochs=4,
    )
    report = _report(tmp_path)
    (top, *_) = _serious(report)
    assert top["cause"] == "lr_too_low", report
    rate = float(re.search(r"learning_rate=([0-9.e-]+)", top["fixes"][0]).group(1))
    assert rate > 1e-7 and "RMSprop" in top["fixes"][0]


def test_a_short_run_still_falling_steeply_is_not_converged(tmp_path):
    """A Conv1D regression stopped after 4 epochs while its loss still halves each epoch."""
    keras = _keras()
    rng = reproducers._rng(45)
    x = rng.normal(size=(800, 16, 1)).astype("float32")
    y = (x[:, :8, 0].sum(axis=1) - 0.5 * x[:, 8:, 0].sum(axis=1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((16, 1)),
            keras.layers.Conv1D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    _fit(tmp_path, model, x, y, "mse", keras.optimizers.Adam(1e-3), epochs=4, validation_split=0.2)
    report = _report(tmp_path)
    (top, *_) = _serious(report)
    assert top["cause"] == "not_converged", report


def test_softmax_output_on_multi_label_targets_is_a_mismatch(tmp_path):
    """Several tags per sample, predicted by a softmax trained with categorical
    cross-entropy: the softmax must split its one unit of probability among the tags."""
    keras = _keras()
    rng = reproducers._rng(46)
    x = rng.normal(size=(600, 10)).astype("float32")
    w = rng.normal(size=(10, 5))
    y = (x @ w > 0.3).astype("float32")  # about two tags of five per sample
    model = reproducers._mlp(10, [32], 5, out_activation="softmax")
    _fit(tmp_path, model, x, y, "categorical_crossentropy", keras.optimizers.Adam(1e-2), epochs=6)
    report = _report(tmp_path)
    (top, *_) = _serious(report)
    assert top["cause"] == "loss_output_mismatch", report
    assert "multi-label" in top["title"]


def test_shuffled_training_labels_with_a_clean_validation_set_is_no_signal(tmp_path):
    """An embedding model memorizes shuffled training labels; validation never leaves chance."""
    keras = _keras()
    rng = reproducers._rng(47)
    x, y = heldout._keyword_texts(rng, n=1000, classes=4)
    x_val, y_val = x[800:], y[800:]
    x, y = x[:800], rng.permutation(y[:800])
    model = keras.Sequential(
        [
            keras.Input((24,), dtype="int32"),
            keras.layers.Embedding(60, 32),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    _fit(
        tmp_path,
        model,
        x,
        y,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=25,
        validation_data=(x_val, y_val),
    )
    report = _report(tmp_path)
    (top, *_) = _serious(report)
    assert top["cause"] == "no_signal", report
    for finding in report["findings"][1:]:
        if finding["cause"] == "overfitting":
            assert "consequence of" in finding["explanation"]


def _numpy_softmax_regression(rng, lr, steps, classes=6, features=12):
    """A real softmax regression trained by full-batch gradient descent in numpy (a
    framework tb_plateau does not record): returns the loss of every step."""
    centers = rng.normal(0, 3.0, size=(classes, features))
    y = rng.integers(0, classes, 600)
    x = centers[y] + rng.normal(size=(600, features))
    w = np.zeros((features, classes))
    losses = []
    for _ in range(steps):
        logits = x @ w
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        losses.append(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
        p[np.arange(len(y)), y] -= 1
        w -= lr * x.T @ p / len(y)
    return np.array(losses)


def test_a_flat_log_from_another_framework_is_stuck_and_gets_neutral_fixes(tmp_path, write_scalars):
    """A numpy training at a learning rate of 1e-7 logged as "Loss/train": flat from the
    start, so never healthy; no class count is asserted and no Keras code is offered."""
    losses = _numpy_softmax_regression(np.random.default_rng(48), lr=1e-7, steps=60)
    write_scalars(tmp_path, "Loss/train", losses)
    report = _report(tmp_path)
    assert report["verdict"] != "healthy", report
    (top, *_) = _serious(report)
    assert top["cause"] == "unexplained_plateau"
    assert (
        "balanced classes" not in top["explanation"] or "if the model has" in (top["explanation"])
    )
    assert not any(
        "keras" in fix or "model.fit" in fix for f in report["findings"] for fix in f["fixes"]
    )
    assert not any("model.fit" in note for note in report.get("notes", []))


def test_a_keras_log_whose_loss_jumped_and_never_recovered_is_a_learning_rate(tmp_path):
    """Keras' own TensorBoard callback on Adam at rate 5: the loss starts in the tens of
    thousands, falls, jumps back up by an order of magnitude and ends far above its best.
    It fell overall, yet it is named from the curve alone, never "healthy"."""
    keras = _keras()
    rng = reproducers._rng(49)
    x, y = reproducers._blobs(rng, n=600, classes=5, features=6)
    model = reproducers._mlp(6, [64, 64], 5)
    model.compile(
        keras.optimizers.Adam(5.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x,
        y,
        epochs=8,
        verbose=0,
        validation_split=0.2,
        callbacks=[keras.callbacks.TensorBoard(str(tmp_path))],
    )
    keras.backend.clear_session()
    from tb_plateau import cli

    (train,) = [r for r in cli.diagnose_logdir(str(tmp_path))["runs"] if r["run"] == "train"]
    assert train["verdict"] != "healthy", train
    top = _serious(train)[0]
    assert top["cause"] == "lr_too_high"
    assert "jumped" in top["explanation"] and "its best" in top["explanation"]


def test_raw_pixel_values_that_trained_well_are_only_info(tmp_path):
    """A CNN on 0-255 pixels that still reaches a good validation loss: the unnormalized
    inputs did not stop it, so they are worth knowing, not a warning."""
    keras = _keras()
    rng = reproducers._rng(50)
    x, y = _conv_images(rng, n=600)
    x = np.round(x * 255.0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(2),
        ]
    )
    _fit(
        tmp_path,
        model,
        x,
        y,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=12,
        validation_split=0.25,
    )
    report = _report(tmp_path)
    assert report["verdict"] == "healthy", report
    (finding,) = [f for f in report["findings"] if f["cause"] == "unnormalized_inputs"]
    assert (
        finding["severity"] == "info" and "did not stop this training" in (finding["explanation"])
    )
