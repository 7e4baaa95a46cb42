"""A second held-out suite: tiny real Keras trainings that neither
tests/reproducers.py nor tests/heldout.py contains, written after the fixes
that tests/heldout.py prompted, to measure the diagnosis again on trainings
it had not seen (see README: one false alarm and three misses at first).

Same interface as those files: `SCENARIOS = {name: (fn(logdir), expected cause or None)}`.
Trainings go through heldout's `_fit` (same conventions: PlateauCallback every
heldout.EVERY_N_STEPS steps, verbose 0, shuffle, clear_session, history in
heldout.LAST_HISTORY); `_fit_more` is the same helper extended with extra
callbacks and tf.data inputs for the few scenarios that need them.
"""

import numpy as np

from tests import heldout

_fit = heldout._fit
_rng = heldout._rng
_keras = heldout._keras


def _sparse_logits():
    return _keras().losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit_more(
    logdir,
    model,
    data,
    loss,
    optimizer,
    epochs,
    y=None,
    batch_size=32,
    validation=None,
    validation_split=None,
    callbacks=(),
    every_n_steps=heldout.EVERY_N_STEPS,
):
    """heldout._fit plus extra callbacks and tf.data inputs (data is a Dataset when y is None)."""
    keras = _keras()
    from tb_plateau.summaries import PlateauCallback

    model.compile(optimizer=optimizer, loss=loss)
    kwargs = {}
    if y is not None:
        kwargs = dict(batch_size=batch_size, validation_split=validation_split or 0.0, shuffle=True)
    history = model.fit(
        data,
        y,
        epochs=epochs,
        validation_data=validation,
        verbose=0,
        callbacks=list(callbacks) + [PlateauCallback(logdir, every_n_steps=every_n_steps)],
        **kwargs,
    )
    heldout.LAST_HISTORY.clear()
    heldout.LAST_HISTORY.update({k: [float(v) for v in vs] for k, vs in history.history.items()})
    keras.backend.clear_session()


# ----------------------------------------------------------------- data


def _shapes_images(rng, n=600, size=16, noise=0.3):
    """Ring outlines, filled squares and plus signs of random size and place; [0, 1]."""
    y = rng.integers(0, 3, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cx = rng.uniform(5, size - 6, n)[:, None, None]
    cy = rng.uniform(5, size - 6, n)[:, None, None]
    r = rng.uniform(2.5, 4.5, n)[:, None, None]
    dx, dy = xx[None] - cx, yy[None] - cy
    dist = np.sqrt(dx**2 + dy**2)
    ring = np.abs(dist - r) < 0.8
    square = np.maximum(np.abs(dx), np.abs(dy)) <= 0.75 * r
    plus = ((np.abs(dx) < 0.9) & (np.abs(dy) <= r)) | ((np.abs(dy) < 0.9) & (np.abs(dx) <= r))
    masks = np.stack([ring, square, plus], 1)[np.arange(n), y]
    x = 0.8 * masks + rng.uniform(0, noise, size=masks.shape)
    return np.clip(x, 0, 1)[..., None].astype("float32"), y.astype("int32")


def _friedman(rng, n=1000, noise=1.0):
    """Friedman #1 regression (5 informative + 1 noise feature), both sides standardized."""
    x = rng.uniform(0, 1, size=(n, 6))
    y = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
        + rng.normal(0, noise, n)
    )
    xs = ((x - 0.5) / np.sqrt(1 / 12)).astype("float32")
    ys = ((y - y.mean()) / y.std()).astype("float32")
    return xs, ys


def _rule_classes(rng, n=1500, noise=0.3):
    """Three classes, each the argmax of a different nonlinear score of 6 features."""
    x = rng.normal(size=(n, 6))
    scores = np.stack(
        [
            x[:, 0] * x[:, 1],
            np.sin(2 * x[:, 2]) + 0.7 * x[:, 3],
            0.5 * (x[:, 4] ** 2 - 1) + 0.5 * x[:, 5],
        ],
        1,
    ) + rng.normal(0, noise, size=(n, 3))
    return x.astype("float32"), scores.argmax(1).astype("int32")


def _spirals(rng, n=1200, turns=1.5, noise=0.08):
    """Two interleaved spirals in 2-D."""
    y = rng.integers(0, 2, n)
    t = rng.uniform(0.05, 1, n)
    angle = 2 * np.pi * turns * t + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1) * 2
    x += rng.normal(0, noise, x.shape)
    return x.astype("float32"), y.astype("int32")


def _count_tokens(rng, n=1000, length=30, vocab=40):
    """Token sequences; the label says whether token 1 occurs more often than token 2."""
    x = rng.integers(3, vocab, size=(n, length))
    a = rng.integers(0, 6, n)
    b = rng.integers(0, 6, n)
    b[a == b] += 1
    for i in range(n):
        slots = rng.choice(length, a[i] + b[i], replace=False)
        x[i, slots[: a[i]]] = 1
        x[i, slots[a[i] :]] = 2
    return x.astype("int32"), (a > b).astype("int32")


def _multilabel(rng, n=1500):
    """8 features, 5 independent binary tags, each a different nonlinear rule."""
    x = rng.normal(size=(n, 8))
    y = np.stack(
        [
            x[:, 0] > 0.5,
            x[:, 1] * x[:, 2] > 0,
            np.abs(x[:, 3]) > 1.0,
            x[:, 4] + x[:, 5] > 0,
            np.sin(3 * x[:, 6]) + 0.3 * x[:, 7] > 0.3,
        ],
        1,
    )
    return x.astype("float32"), y.astype("float32")


# ----------------------------------------------------------------- healthy


def healthy_slow_long_schedule(logdir):
    """Friedman #1 regression, ReLU MLP, Adam 3e-4 for 60 epochs: the loss still creeps
    down at the end, a little per epoch, as long schedules often do."""
    keras = _keras()
    rng = _rng(301)
    x, y = _friedman(rng, n=1000)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(logdir, model, x, y, "mse", keras.optimizers.Adam(3e-4), epochs=60, validation_split=0.2)


def healthy_batch4_noisy_sgd(logdir):
    """Rule-based 3-class tabular task, plain SGD, batch_size=4: a noisy but sound run."""
    keras = _keras()
    rng = _rng(302)
    x, y = _rule_classes(rng, n=800)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.SGD(0.03),
        epochs=8,
        batch_size=4,
        validation_split=0.2,
        every_n_steps=20,
    )


def healthy_step_decay_scheduler(logdir):
    """Shape-images CNN, SGD + momentum with a step decay (x0.1 at epochs 8 and 14)
    from a LearningRateScheduler callback."""
    keras = _keras()
    rng = _rng(303)
    x, y = _shapes_images(rng, n=900)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(12, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(24, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )

    def step_decay(epoch, lr):
        return 0.05 * (0.1 ** (int(epoch >= 8) + int(epoch >= 14)))

    _fit_more(
        logdir,
        model,
        x,
        _sparse_logits(),
        keras.optimizers.SGD(0.05, momentum=0.9),
        epochs=18,
        y=y,
        validation_split=0.2,
        callbacks=[keras.callbacks.LearningRateScheduler(step_decay)],
    )


def healthy_adagrad_reduce_lr_on_plateau(logdir):
    """Rule-based 3-class task, Adagrad 0.1 with ReduceLROnPlateau on val_loss."""
    keras = _keras()
    rng = _rng(304)
    x, y = _rule_classes(rng, n=1500)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    _fit_more(
        logdir,
        model,
        x,
        _sparse_logits(),
        keras.optimizers.Adagrad(0.1),
        epochs=25,
        y=y,
        validation_split=0.2,
        callbacks=[
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.3, patience=2, min_lr=1e-4
            )
        ],
    )


def healthy_large_batch_high_lr(logdir):
    """Friedman #1 on 6000 samples, batch_size=500 with Adam at 1e-2."""
    keras = _keras()
    rng = _rng(305)
    x, y = _friedman(rng, n=6000)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        "mse",
        keras.optimizers.Adam(1e-2),
        epochs=40,
        batch_size=500,
        validation_split=1 / 6,
    )


def healthy_deep_he_mlp_spirals(logdir):
    """Ten 48-unit ReLU layers with He-normal init on two spirals; Adam 2e-3."""
    keras = _keras()
    rng = _rng(306)
    x, y = _spirals(rng)
    layers = [keras.Input((2,))]
    layers += [
        keras.layers.Dense(48, activation="relu", kernel_initializer="he_normal") for _ in range(10)
    ]
    layers += [keras.layers.Dense(2)]
    _fit(
        logdir,
        keras.Sequential(layers),
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(2e-3),
        epochs=25,
        validation_split=0.2,
    )


def healthy_selu_nadam(logdir):
    """Self-normalizing MLP (SELU, lecun_normal, AlphaDropout) on the rule-based task; Nadam."""
    keras = _keras()
    rng = _rng(307)
    x, y = _rule_classes(rng, n=1500)
    layers = [keras.Input((6,))]
    for _ in range(4):
        layers += [
            keras.layers.Dense(64, activation="selu", kernel_initializer="lecun_normal"),
            keras.layers.AlphaDropout(0.05),
        ]
    layers += [keras.layers.Dense(3)]
    _fit(
        logdir,
        keras.Sequential(layers),
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Nadam(3e-3),
        epochs=20,
        validation_split=0.2,
    )


def healthy_separable_conv_globalmax(logdir):
    """DepthwiseConv2D + SeparableConv2D + GlobalMaxPooling2D on shape images; Adam."""
    keras = _keras()
    rng = _rng(308)
    x, y = _shapes_images(rng, n=900)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.SeparableConv2D(24, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.SeparableConv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(3e-3),
        epochs=12,
        validation_split=0.2,
    )


def healthy_huber_outliers_adadelta(logdir):
    """Friedman #1 with 5% gross outliers in the targets, Huber loss, Adadelta (lr 1.0)."""
    keras = _keras()
    rng = _rng(309)
    x, y = _friedman(rng, n=1200)
    outliers = rng.random(len(y)) < 0.05
    y = y.copy()
    y[outliers] += rng.choice([-1, 1], outliers.sum()) * rng.uniform(4, 8, outliers.sum())
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y.astype("float32"),
        keras.losses.Huber(delta=1.0),
        keras.optimizers.Adadelta(1.0),
        epochs=35,
        validation_split=0.2,
    )


def healthy_binary_logits_tf_data(logdir):
    """Token-count sequences (is token 1 more frequent than token 2?), Embedding + Conv1D,
    one logit with BinaryCrossentropy(from_logits=True), fed as a tf.data.Dataset."""
    import tensorflow as tf

    keras = _keras()
    rng = _rng(310)
    x, y = _count_tokens(rng, n=1200)
    y = y.astype("float32")
    train = (
        tf.data.Dataset.from_tensor_slices((x[:1000], y[:1000]))
        .shuffle(1000, seed=310)
        .batch(32)
        .prefetch(2)
    )
    val = tf.data.Dataset.from_tensor_slices((x[1000:], y[1000:])).batch(64)
    model = keras.Sequential(
        [
            keras.Input((30,), dtype="int32"),
            keras.layers.Embedding(40, 16),
            keras.layers.Conv1D(32, 1, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit_more(
        logdir,
        model,
        train,
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=15,
        validation=val,
    )


def healthy_multilabel_sigmoid_lion(logdir):
    """Five independent tags, sigmoid outputs with binary_crossentropy; Lion optimizer."""
    keras = _keras()
    rng = _rng(311)
    x, y = _multilabel(rng, n=3000)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(5, activation="sigmoid"),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        "binary_crossentropy",
        keras.optimizers.Lion(5e-4),
        epochs=16,
        validation_split=0.2,
    )


def healthy_mixed_float16(logdir):
    """The shape-images CNN under the "mixed_float16" policy (float32 output layer)."""
    keras = _keras()
    rng = _rng(312)
    x, y = _shapes_images(rng, n=900)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [
                keras.Input((16, 16, 1)),
                keras.layers.Conv2D(12, 3, activation="relu", padding="same"),
                keras.layers.MaxPooling2D(2),
                keras.layers.Conv2D(24, 3, activation="relu", padding="same"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, dtype="float32"),
            ]
        )
        _fit(
            logdir,
            model,
            x,
            y,
            _sparse_logits(),
            keras.optimizers.Adam(5e-3),
            epochs=20,
            validation_split=0.2,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


def healthy_frozen_pretrained_first_layer(logdir):
    """A first Dense layer pretrained (as an autoencoder's encoder) on unlabeled data,
    then frozen (trainable=False) under a new trainable head."""
    keras = _keras()
    rng = _rng(313)
    x, y = _multilabel(rng, n=2500)
    encoder = keras.layers.Dense(32, activation="relu", name="pretrained")
    auto = keras.Sequential([keras.Input((8,)), encoder, keras.layers.Dense(8)])
    auto.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    auto.fit(x[1000:], x[1000:], epochs=8, batch_size=64, verbose=0)
    encoder.trainable = False
    model = keras.Sequential(
        [
            keras.Input((8,)),
            encoder,
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(
        logdir,
        model,
        x[:1000],
        y[:1000, 1],
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=20,
        validation_split=0.2,
    )


def healthy_noisy_flat_val(logdir):
    """Overlapping 4-class task, Dropout MLP, SGD + momentum 0.9 at 0.02, judged on a
    small (100-sample) validation set: both losses level off within two epochs (the task
    is easy to fit, hard to be sure about); the validation loss then wobbles around a flat
    line for 28 epochs. (At lr 0.1 the held-out loss is ~10% worse: that variant is not
    healthy, and tb_plateau rightly called its rate too high.)"""
    keras = _keras()
    rng = _rng(314)
    n = 1600
    centers = rng.normal(0, 1.0, size=(4, 6))
    y = rng.integers(0, 4, n).astype("int32")
    x = (centers[y] + rng.normal(0, 1.0, size=(n, 6))).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(4),
        ]
    )
    _fit(
        logdir,
        model,
        x[:1500],
        y[:1500],
        _sparse_logits(),
        keras.optimizers.SGD(0.02, momentum=0.9),
        epochs=30,
        validation=(x[1500:], y[1500:]),
    )


# ----------------------------------------------------------------- broken


def nonfinite_poisson_nll_linear_output(logdir):
    """Count regression with a hand-written Poisson NLL, y_pred - y * log(y_pred), on a
    linear output that starts positive (bias 2) and later goes negative: log of a negative."""
    import tensorflow as tf

    keras = _keras()
    rng = _rng(401)
    x = rng.normal(size=(1000, 5)).astype("float32")
    rate = np.exp(0.8 * x[:, 0] - 0.5 * x[:, 1])
    y = rng.poisson(rate).astype("float32")[:, None]

    def poisson_nll(y_true, y_pred):
        return tf.reduce_mean(y_pred - y_true * tf.math.log(y_pred))

    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(2.0)),
        ]
    )
    _fit(logdir, model, x, y, poisson_nll, keras.optimizers.Adam(1e-2), epochs=6)


def lr_too_high_momentum_sgd_5(logdir):
    """The shape-images CNN with SGD + momentum 0.9 at a learning rate of 5.0."""
    keras = _keras()
    rng = _rng(402)
    x, y = _shapes_images(rng, n=600)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(12, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(24, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.SGD(5.0, momentum=0.9),
        epochs=6,
        validation_split=0.2,
    )


def lr_too_low_adam_separable(logdir):
    """The separable-conv network of healthy_separable_conv_globalmax with Adam at 1e-7."""
    keras = _keras()
    rng = _rng(403)
    x, y = _shapes_images(rng, n=700)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.SeparableConv2D(24, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.SeparableConv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(1e-7),
        epochs=8,
        validation_split=0.2,
    )


def no_signal_embedding_shuffled_labels(logdir):
    """The token-count model (Embedding + Conv1D), labels permuted apart from the inputs."""
    keras = _keras()
    rng = _rng(404)
    x, y = _count_tokens(rng, n=1000)
    y = rng.permutation(y).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((30,), dtype="int32"),
            keras.layers.Embedding(40, 16),
            keras.layers.Conv1D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        "binary_crossentropy",
        keras.optimizers.Adam(3e-3),
        epochs=12,
        validation_split=0.2,
    )


def capacity_linear_xor(logdir):
    """A linear model (one Dense(1) logit) on y = [x0 * x1 + 0.7 * x2 > 0]: the XOR part
    is out of reach of any linear boundary."""
    keras = _keras()
    rng = _rng(405)
    x = rng.normal(size=(1500, 4)).astype("float32")
    y = (x[:, 0] * x[:, 1] + 0.7 * x[:, 2] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    _fit(
        logdir,
        model,
        x,
        y,
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(1e-2),
        epochs=20,
        validation_split=0.2,
    )


def batchnorm_batch2_slow_momentum(logdir):
    """A conv net with BatchNormalization(momentum=0.999) trained on batches of 2,
    evaluated on a validation split (inference uses the moving statistics)."""
    keras = _keras()
    rng = _rng(406)
    x, y = _shapes_images(rng, n=500)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(12, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(momentum=0.999),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(24, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(momentum=0.999),
            keras.layers.Activation("relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(1e-3),
        epochs=3,
        batch_size=2,
        validation_split=0.2,
        every_n_steps=20,
    )


def zero_gradient_round_activation(logdir):
    """A "quantized ReLU" activation written with tf.round, used by both hidden layers."""
    import tensorflow as tf

    keras = _keras()
    rng = _rng(407)
    x, y = _rule_classes(rng, n=1000)

    def quantized_relu(t):
        return tf.round(tf.nn.relu(t) * 4.0) / 4.0

    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(32, activation=quantized_relu),
            keras.layers.Dense(32, activation=quantized_relu),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(3e-3),
        epochs=8,
        validation_split=0.2,
    )


def overfitting_gru_50_sequences(logdir):
    """A GRU(64) on only 50 noisy training sequences (20% flipped labels) for 80 epochs;
    400 held-out validation sequences."""
    keras = _keras()
    rng = _rng(408)
    n = 450
    x = rng.normal(size=(n, 12, 3)).astype("float32")
    y = (x[:, :, 0].mean(1) + 0.5 * x[:, -4:, 1].mean(1) > 0).astype("float32")
    flip = rng.random(n) < 0.2
    y[flip] = 1 - y[flip]
    model = keras.Sequential([keras.Input((12, 3)), keras.layers.GRU(64), keras.layers.Dense(1)])
    _fit(
        logdir,
        model,
        x[:50],
        y[:50],
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=80,
        validation=(x[50:], y[50:]),
        every_n_steps=2,
    )


def unscaled_targets_1e4(logdir):
    """Standardized features but raw regression targets around 20,000 (std ~5,000), MSE,
    Adam at its default 1e-3: the output has to grow 10^4-fold one 1e-3 step at a time."""
    keras = _keras()
    rng = _rng(409)
    x, y = _friedman(rng, n=1000)
    y = (20_000 + 5_000 * y).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(logdir, model, x, y, "mse", keras.optimizers.Adam(1e-3), epochs=15, validation_split=0.2)


def not_converged_sigmoid_mse_sgd(logdir):
    """A sigmoid output fitted with loss="mse" to 0/1 labels by plain SGD at 0.02 for 12
    epochs: the Brier-score loss falls at a steady pace to the very end (it keeps falling
    for 40 more epochs; binary cross-entropy at the same rate is not much faster)."""
    keras = _keras()
    rng = _rng(410)
    x = rng.normal(size=(1200, 8)).astype("float32")
    y = (x[:, 0] + 0.6 * x[:, 1] ** 2 - 0.6 + 0.4 * x[:, 2] > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        "mse",
        keras.optimizers.SGD(0.02),
        epochs=12,
        validation_split=0.2,
    )


SCENARIOS = {
    "healthy_slow_long_schedule": (healthy_slow_long_schedule, None),
    "healthy_batch4_noisy_sgd": (healthy_batch4_noisy_sgd, None),
    "healthy_step_decay_scheduler": (healthy_step_decay_scheduler, None),
    "healthy_adagrad_reduce_lr_on_plateau": (healthy_adagrad_reduce_lr_on_plateau, None),
    "healthy_large_batch_high_lr": (healthy_large_batch_high_lr, None),
    "healthy_deep_he_mlp_spirals": (healthy_deep_he_mlp_spirals, None),
    "healthy_selu_nadam": (healthy_selu_nadam, None),
    "healthy_separable_conv_globalmax": (healthy_separable_conv_globalmax, None),
    "healthy_huber_outliers_adadelta": (healthy_huber_outliers_adadelta, None),
    "healthy_binary_logits_tf_data": (healthy_binary_logits_tf_data, None),
    "healthy_multilabel_sigmoid_lion": (healthy_multilabel_sigmoid_lion, None),
    "healthy_mixed_float16": (healthy_mixed_float16, None),
    "healthy_frozen_pretrained_first_layer": (healthy_frozen_pretrained_first_layer, None),
    "healthy_noisy_flat_val": (healthy_noisy_flat_val, None),
    "nonfinite_poisson_nll_linear_output": (nonfinite_poisson_nll_linear_output, "nonfinite"),
    "lr_too_high_momentum_sgd_5": (lr_too_high_momentum_sgd_5, "lr_too_high"),
    "lr_too_low_adam_separable": (lr_too_low_adam_separable, "lr_too_low"),
    "no_signal_embedding_shuffled_labels": (no_signal_embedding_shuffled_labels, "no_signal"),
    "capacity_linear_xor": (capacity_linear_xor, "insufficient_capacity"),
    "batchnorm_batch2_slow_momentum": (batchnorm_batch2_slow_momentum, "batchnorm_misuse"),
    "zero_gradient_round_activation": (zero_gradient_round_activation, "zero_gradient"),
    "overfitting_gru_50_sequences": (overfitting_gru_50_sequences, "overfitting"),
    # Targets in the tens of thousands: the cause is their scale (unnormalized_inputs
    # covers inputs and targets), which no step size of a usual optimizer fixes.
    "unscaled_targets_1e4": (unscaled_targets_1e4, "unnormalized_inputs"),
    "not_converged_sigmoid_mse_sgd": (not_converged_sigmoid_mse_sgd, "not_converged"),
}


def train_all(root, names=None):
    """Trains the named scenarios (all by default) into root/<name>; returns {name: logdir}."""
    from tests.reproducers import train_all as train

    return train(root, names, scenarios=SCENARIOS)
