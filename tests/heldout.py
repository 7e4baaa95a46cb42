"""A held-out suite of small real trainings, unlike those the thresholds were tuned on.

Same interface as `tests/reproducers.py`: every scenario is a function
`scenario(logdir)` that trains one tiny Keras model (seconds on a CPU, data
made here with numpy) into `logdir` with PlateauCallback, and `SCENARIOS` maps
a scenario's name to (function, expected top cause or None for healthy).

The architectures, data, optimizers and ways of breaking differ on purpose from
the reproducers' (sequence models, Conv1D, embeddings, autoencoders,
multi-output and subclassed models, BatchNormalization + Dropout, residual
blocks with LayerNormalization, schedules, label smoothing, sample weights), so
that this suite measures how the diagnosis does on trainings it was not tuned
on. `tests/run_heldout.py` trains and diagnoses them:

    python tests/run_heldout.py [--only NAME]
"""

import numpy as np

from tests.reproducers import _keras, _rng

EVERY_N_STEPS = 5  # records often enough for short runs

# The per-epoch losses of the last scenario trained ({"loss": [...], "val_loss": [...]}),
# for the runner's sanity check of each training.
LAST_HISTORY = {}


def _fit(
    logdir,
    model,
    x,
    y,
    loss,
    optimizer,
    epochs,
    batch_size=32,
    validation=None,
    validation_split=None,
    sample_weight=None,
    class_weight=None,
    loss_weights=None,
    every_n_steps=EVERY_N_STEPS,
):
    keras = _keras()
    from tb_plateau.summaries import PlateauCallback

    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights)
    history = model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation,
        validation_split=validation_split or 0.0,
        sample_weight=sample_weight,
        class_weight=class_weight,
        verbose=0,
        shuffle=True,
        callbacks=[PlateauCallback(logdir, every_n_steps=every_n_steps)],
    )
    LAST_HISTORY.clear()
    LAST_HISTORY.update({k: [float(v) for v in vs] for k, vs in history.history.items()})
    keras.backend.clear_session()


def _sparse_logits():
    return _keras().losses.SparseCategoricalCrossentropy(from_logits=True)


# ----------------------------------------------------------------- data


def _trend_sequences(rng, n=900, steps=20, features=3):
    """Three classes of sequences: feature 0 rises, falls, or oscillates; noisy."""
    y = rng.integers(0, 3, n)
    t = np.linspace(0, 1, steps)
    x = rng.normal(0, 0.4, size=(n, steps, features))
    slope = rng.uniform(0.8, 1.5, size=n)
    x[y == 0, :, 0] += slope[y == 0, None] * (t - 0.5) * 2
    x[y == 1, :, 0] -= slope[y == 1, None] * (t - 0.5) * 2
    x[y == 2, :, 0] += np.sin(2 * np.pi * 3 * t)[None, :] * slope[y == 2, None]
    return x.astype("float32"), y.astype("int32")


def _waveforms(rng, n=900, length=64, classes=3, noise=0.5):
    """Noisy sines of 2, 5 or 9 cycles (one per class) with random phase and amplitude."""
    y = rng.integers(0, classes, n)
    cycles = np.array([2.0, 5.0, 9.0, 14.0])[:classes]
    t = np.linspace(0, 1, length)
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0.7, 1.3, n)
    x = amp[:, None] * np.sin(2 * np.pi * cycles[y][:, None] * t[None, :] + phase[:, None])
    x += rng.normal(0, noise, size=x.shape)
    return x[..., None].astype("float32"), y.astype("int32")


def _bars(rng, n=600, size=12, classes=3, noise=0.25):
    """Images of a horizontal bar, a vertical bar or a diagonal at a random place; [0, 1]."""
    y = rng.integers(0, classes, n)
    x = rng.uniform(0, noise, size=(n, size, size, 1))
    for i in range(n):
        k = rng.integers(1, size - 1)
        if y[i] == 0:
            x[i, k, 1:-1, 0] += 0.7
        elif y[i] == 1:
            x[i, 1:-1, k, 0] += 0.7
        else:
            idx = np.arange(1, size - 1)
            x[i, idx, idx if rng.random() < 0.5 else idx[::-1], 0] += 0.7
    return np.clip(x, 0, 1).astype("float32"), y.astype("int32")


def _keyword_texts(rng, n=1200, length=24, vocab=60, classes=4, keywords=4, hits=3):
    """Token-id sequences: each class has its keywords, a few of which appear among filler."""
    y = rng.integers(0, classes, n)
    first_filler = 1 + classes * keywords
    x = rng.integers(first_filler, vocab, size=(n, length))
    for i in range(n):
        slots = rng.choice(length, hits, replace=False)
        x[i, slots] = 1 + y[i] * keywords + rng.integers(0, keywords, hits)
    return x.astype("int32"), y.astype("int32")


# ----------------------------------------------------------------- healthy


def healthy_lstm_trends(logdir):
    """LSTM classifying noisy rising / falling / oscillating sequences."""
    keras = _keras()
    rng = _rng(101)
    x, y = _trend_sequences(rng)
    model = keras.Sequential([keras.Input((20, 3)), keras.layers.LSTM(16), keras.layers.Dense(3)])
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(1e-2),
        epochs=10,
        validation_split=0.2,
    )


def healthy_gru_rmsprop_regression(logdir):
    """GRU with RMSprop predicting a weighted running statistic of a sequence."""
    keras = _keras()
    rng = _rng(102)
    x = rng.normal(size=(900, 15, 2)).astype("float32")
    target = x[:, :, 0].mean(axis=1) * 3 + 0.5 * x[:, -3:, 1].mean(axis=1)
    y = ((target - target.mean()) / target.std()).astype("float32")
    model = keras.Sequential([keras.Input((15, 2)), keras.layers.GRU(16), keras.layers.Dense(1)])
    _fit(
        logdir,
        model,
        x,
        y,
        "mse",
        keras.optimizers.RMSprop(3e-3),
        epochs=12,
        validation_split=0.2,
    )


def healthy_conv1d_cosine_sgd(logdir):
    """Conv1D on noisy sines of three frequencies; SGD + momentum with cosine decay."""
    keras = _keras()
    rng = _rng(103)
    x, y = _waveforms(rng)
    model = keras.Sequential(
        [
            keras.Input((64, 1)),
            keras.layers.Conv1D(16, 7, activation="relu"),
            keras.layers.MaxPooling1D(2),
            keras.layers.Conv1D(16, 5, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )
    steps = 15 * (720 // 32 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(5e-2, decay_steps=steps, alpha=0.05)
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.SGD(schedule, momentum=0.9),
        epochs=15,
        validation_split=0.2,
    )


def healthy_embedding_label_smoothing(logdir):
    """Embedding + GlobalAveragePooling1D on keyword 'texts'; one-hot labels, smoothing 0.1."""
    keras = _keras()
    rng = _rng(104)
    x, y = _keyword_texts(rng)
    model = keras.Sequential(
        [
            keras.Input((24,), dtype="int32"),
            keras.layers.Embedding(60, 16),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    _fit(
        logdir,
        model,
        x,
        np.eye(4, dtype="float32")[y],
        loss,
        keras.optimizers.Adam(5e-3),
        epochs=15,
        validation_split=0.2,
    )


def healthy_autoencoder(logdir):
    """Dense autoencoder (16 -> 4 -> 16) reconstructing data on a 3-D nonlinear manifold."""
    keras = _keras()
    rng = _rng(105)
    z = rng.normal(size=(1000, 3))
    mix = rng.normal(size=(3, 16))
    x = (np.tanh(z @ mix) + rng.normal(0, 0.05, size=(1000, 16))).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, activation="elu"),
            keras.layers.Dense(4),
            keras.layers.Dense(32, activation="elu"),
            keras.layers.Dense(16),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        x,
        "mse",
        keras.optimizers.Adam(3e-3),
        epochs=20,
        validation_split=0.2,
    )


def healthy_multi_output(logdir):
    """A functional model with a classification head and a regression head."""
    keras = _keras()
    rng = _rng(106)
    x = rng.normal(size=(1000, 8)).astype("float32")
    y_cls = (x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 1.0).astype("int32")
    y_reg = np.sin(x[:, 3]) + 0.5 * x[:, 4] * x[:, 5] + rng.normal(0, 0.1, 1000)
    y_reg = y_reg.astype("float32")[:, None]
    inputs = keras.Input((8,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Dense(32, activation="relu")(h)
    cls = keras.layers.Dense(3, name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    model = keras.Model(inputs, [cls, reg])
    _fit(
        logdir,
        model,
        x,
        [y_cls, y_reg],
        [_sparse_logits(), "mse"],
        keras.optimizers.Adam(5e-3),
        epochs=15,
        validation_split=0.2,
        loss_weights=[1.0, 0.5],
    )


def healthy_cnn_batchnorm_dropout(logdir):
    """A CNN with BatchNormalization and Dropout on bar-orientation images."""
    keras = _keras()
    rng = _rng(107)
    x, y = _bars(rng, n=1200)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(8, 3, use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.Activation("relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.3),
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
        epochs=10,
        validation_split=0.2,
    )


def healthy_residual_layernorm_adamw(logdir):
    """A residual MLP (Add, LayerNormalization, GELU) trained with AdamW + weight decay."""
    keras = _keras()
    rng = _rng(108)
    x = rng.normal(size=(1200, 6)).astype("float32")
    y = np.sin(2 * x[:, 0]) * x[:, 1] + 0.5 * x[:, 2] ** 2 - x[:, 3] + rng.normal(0, 0.1, 1200)
    y = ((y - y.mean()) / y.std()).astype("float32")
    inputs = keras.Input((6,))
    h = keras.layers.Dense(32)(inputs)
    for _ in range(2):
        r = keras.layers.LayerNormalization()(h)
        r = keras.layers.Dense(64, activation="gelu")(r)
        r = keras.layers.Dense(32)(r)
        h = keras.layers.Add()([h, r])
    h = keras.layers.LayerNormalization()(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    _fit(
        logdir,
        model,
        x,
        y,
        "mse",
        keras.optimizers.AdamW(3e-3, weight_decay=1e-2),
        epochs=20,
        validation_split=0.2,
    )


def healthy_standardized_regression(logdir):
    """Targets around 100 and features in the thousands, both standardized with the
    training set's statistics; swish MLP, SGD + Nesterov momentum, exponential decay,
    an explicit validation set."""
    keras = _keras()
    rng = _rng(109)
    n = 1000
    area = rng.normal(1500, 400, n)  # square feet
    age = rng.uniform(0, 60, n)  # years
    dist = rng.exponential(5, n)  # km
    price = 40 + 0.05 * area - 0.6 * age - 4 * np.log1p(dist) + rng.normal(0, 6, n)  # ~100
    x = np.stack([area, age, dist], axis=1)
    train, val = slice(0, 800), slice(800, n)
    mu, sd = x[train].mean(0), x[train].std(0)
    y_mu, y_sd = price[train].mean(), price[train].std()
    xs = ((x - mu) / sd).astype("float32")
    ys = ((price - y_mu) / y_sd).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(32, activation="swish"),
            keras.layers.Dense(32, activation="swish"),
            keras.layers.Dense(1),
        ]
    )
    schedule = keras.optimizers.schedules.ExponentialDecay(2e-2, decay_steps=50, decay_rate=0.8)
    _fit(
        logdir,
        model,
        xs[train],
        ys[train],
        "mse",
        keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        epochs=15,
        validation=(xs[val], ys[val]),
    )


def healthy_imbalanced_sample_weights(logdir):
    """Binary task with 10% positives, balanced by sample weights; ELU MLP; explicit
    validation set."""
    keras = _keras()
    rng = _rng(110)
    n = 1500
    y = (rng.random(n) < 0.1).astype("float32")
    x = rng.normal(size=(n, 6))
    x[:, 0] += 2.0 * y
    x[:, 1] -= 1.5 * y
    x = x.astype("float32")
    weights = np.where(y == 1, 0.5 / 0.1, 0.5 / 0.9).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="elu"),
            keras.layers.Dense(16, activation="elu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(
        logdir,
        model,
        x[:1200],
        y[:1200],
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(3e-3),
        epochs=12,
        validation=(x[1200:], y[1200:]),
        sample_weight=weights[:1200],
    )


class _TwoMoonsNet:
    """Built lazily (keras.Model is only importable with TensorFlow installed)."""

    @staticmethod
    def build():
        keras = _keras()

        class TwoMoonsNet(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden1 = keras.layers.Dense(32, activation="tanh")
                self.hidden2 = keras.layers.Dense(32, activation="relu")
                self.out = keras.layers.Dense(1)

            def call(self, inputs):
                return self.out(self.hidden2(self.hidden1(inputs)))

        return TwoMoonsNet()


def healthy_subclassed_two_moons(logdir):
    """A subclassed keras.Model on two interleaved half moons."""
    keras = _keras()
    rng = _rng(111)
    n = 1000
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, np.pi, n)
    x = np.where(
        y[:, None] == 0,
        np.stack([np.cos(angle), np.sin(angle)], 1),
        np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1),
    )
    x = (x + rng.normal(0, 0.15, size=x.shape)).astype("float32")
    _fit(
        logdir,
        _TwoMoonsNet.build(),
        x,
        y.astype("float32"),
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(1e-2),
        epochs=20,
        validation_split=0.2,
    )


def healthy_solved_quickly(logdir):
    """An easy, well separated task: the loss reaches ~0 in a few epochs and stays."""
    keras = _keras()
    rng = _rng(112)
    n = 800
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, size=(n, 5))
    x[:, 0] += np.where(y == 1, 4.0, -4.0)
    x = x.astype("float32")
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(1e-2),
        epochs=20,
        validation_split=0.2,
    )


def healthy_val_flattens(logdir):
    """Overlapping classes, a Dropout MLP trained a moderate 20 epochs: the validation loss
    flattens a little above the training loss, as it normally does."""
    keras = _keras()
    rng = _rng(113)
    n = 3000
    centers = rng.normal(0, 0.7, size=(4, 8))
    y = rng.integers(0, 4, n)
    x = (centers[y] + rng.normal(0, 1.0, size=(n, 8))).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(4),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y.astype("int32"),
        _sparse_logits(),
        keras.optimizers.Adam(1e-3),
        epochs=20,
        validation_split=0.25,
    )


def healthy_conv1d_regression_rmsprop(logdir):
    """Conv1D estimating the frequency of a noisy sine (standardized target); RMSprop."""
    keras = _keras()
    rng = _rng(114)
    n, length = 1000, 48
    freq = rng.uniform(1, 6, n)
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * freq[:, None] * t + rng.uniform(0, 6.3, (n, 1)))
    x = (x + rng.normal(0, 0.3, x.shape))[..., None].astype("float32")
    y = ((freq - freq.mean()) / freq.std()).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((length, 1)),
            keras.layers.Conv1D(16, 5, activation="relu", padding="same"),
            keras.layers.MaxPooling1D(2),
            keras.layers.Conv1D(32, 5, activation="relu", padding="same"),
            keras.layers.GlobalMaxPooling1D(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        "mse",
        keras.optimizers.RMSprop(1e-3),
        epochs=15,
        validation_split=0.2,
    )


# ----------------------------------------------------------------- broken


def lr_too_high_rmsprop_cnn(logdir):
    """The bar-images CNN trained with RMSprop at a learning rate of 0.3."""
    keras = _keras()
    rng = _rng(201)
    x, y = _bars(rng)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, activation="relu"),
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
        keras.optimizers.RMSprop(0.3),
        epochs=8,
        validation_split=0.2,
    )


def vanishing_deep_sigmoid_cnn(logdir):
    """Eight stacked sigmoid Conv2D layers trained with plain SGD."""
    keras = _keras()
    rng = _rng(202)
    x, y = _bars(rng, n=400, size=10)
    layers = [keras.Input((10, 10, 1))]
    layers += [keras.layers.Conv2D(8, 3, padding="same", activation="sigmoid") for _ in range(8)]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    _fit(
        logdir,
        keras.Sequential(layers),
        x,
        y,
        _sparse_logits(),
        keras.optimizers.SGD(0.05),
        epochs=5,
    )


def _spike_schedule(base, peak, start, stop):
    keras = _keras()
    import tensorflow as tf

    class Spike(keras.optimizers.schedules.LearningRateSchedule):
        """`base`, but `peak` for steps in [start, stop): a mistyped warm-up."""

        def __call__(self, step):
            in_spike = tf.logical_and(step >= start, step < stop)
            return tf.where(in_spike, peak, base)

        def get_config(self):
            return {}

    return Spike()


def lr_spike_kills_relus(logdir):
    """A ReLU MLP whose SGD learning rate spikes to 2.5 for a few steps, then returns to
    normal: the spike kills most units and they never come back. The spike is the root
    cause; the dead units are its symptom."""
    keras = _keras()
    rng = _rng(203)
    centers = rng.normal(0, 2.0, size=(4, 10))
    y = rng.integers(0, 4, 1200)
    x = (centers[y] + rng.normal(0, 0.8, size=(1200, 10))).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y.astype("int32"),
        _sparse_logits(),
        keras.optimizers.SGD(_spike_schedule(1e-2, 2.5, 10, 14)),
        epochs=6,
    )


def unnormalized_lstm_sensor_readings(logdir):
    """An LSTM fed raw sensor readings in the thousands (pressure ~1000, rpm ~3000)."""
    keras = _keras()
    rng = _rng(204)
    x, y = _trend_sequences(rng, n=900, steps=20, features=3)
    x = x * np.array([40.0, 300.0, 5.0]) + np.array([1000.0, 3000.0, 20.0])
    model = keras.Sequential([keras.Input((20, 3)), keras.layers.LSTM(16), keras.layers.Dense(3)])
    _fit(
        logdir,
        model,
        x.astype("float32"),
        y,
        _sparse_logits(),
        keras.optimizers.Adam(1e-3),
        epochs=6,
        validation_split=0.2,
    )


def mismatch_mse_softmax_class_ids(logdir):
    """A softmax classifier compiled with loss="mse" against integer class ids 0..2."""
    keras = _keras()
    rng = _rng(205)
    x, y = _waveforms(rng, n=800)
    model = keras.Sequential(
        [
            keras.Input((64, 1)),
            keras.layers.Conv1D(16, 7, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y[:, None].astype("float32"),
        "mse",
        keras.optimizers.Adam(3e-3),
        epochs=6,
    )


def mismatch_bce_multiclass_ids(logdir):
    """Three keyword classes (ids 0, 1, 2) fitted with one sigmoid unit and
    binary_crossentropy, as if the task were binary."""
    keras = _keras()
    rng = _rng(206)
    x, y = _keyword_texts(rng, classes=3)
    model = keras.Sequential(
        [
            keras.Input((24,), dtype="int32"),
            keras.layers.Embedding(60, 16),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y.astype("float32"),
        "binary_crossentropy",
        keras.optimizers.Adam(3e-3),
        epochs=8,
        validation_split=0.2,
    )


def no_signal_random_labels_cnn(logdir):
    """The bar-images CNN given labels drawn independently of the images."""
    keras = _keras()
    rng = _rng(207)
    x, _ = _bars(rng)
    y = rng.integers(0, 3, len(x)).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, activation="relu"),
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
        keras.optimizers.Adam(3e-3),
        epochs=10,
        validation_split=0.2,
    )


def overfitting_big_mlp_60_samples(logdir):
    """A 256-256 GELU MLP on 60 noisy training samples for 60 epochs; held-out validation."""
    keras = _keras()
    rng = _rng(208)
    n = 400
    w = rng.normal(size=12)
    x = rng.normal(size=(n, 12)).astype("float32")
    y = (x @ w + rng.normal(0, 2.0, n) > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(256, activation="gelu"),
            keras.layers.Dense(256, activation="gelu"),
            keras.layers.Dense(1),
        ]
    )
    _fit(
        logdir,
        model,
        x[:60],
        y[:60],
        keras.losses.BinaryCrossentropy(from_logits=True),
        keras.optimizers.Adam(1e-3),
        epochs=60,
        validation=(x[100:], y[100:]),
    )


def not_converged_gru_three_epochs(logdir):
    """A GRU on the trend sequences stopped after 3 epochs at a small learning rate."""
    keras = _keras()
    rng = _rng(209)
    x, y = _trend_sequences(rng, n=1200)
    model = keras.Sequential([keras.Input((20, 3)), keras.layers.GRU(16), keras.layers.Dense(3)])
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.Adam(1e-3),
        epochs=3,
        validation_split=0.2,
    )


def lr_too_low_momentum_conv1d(logdir):
    """The Conv1D waveform classifier with SGD + momentum at a learning rate of 1e-6."""
    keras = _keras()
    rng = _rng(210)
    x, y = _waveforms(rng)
    model = keras.Sequential(
        [
            keras.Input((64, 1)),
            keras.layers.Conv1D(16, 7, activation="relu"),
            keras.layers.MaxPooling1D(2),
            keras.layers.Conv1D(16, 5, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.SGD(1e-6, momentum=0.9),
        epochs=8,
        validation_split=0.2,
    )


def saturated_tanh_conv1d_large_init(logdir):
    """Three tanh Conv1D layers whose kernels start with standard deviation 3: most of
    their units start pinned at +-1 and learn ~25x slower than with the default init
    (at a modest rate: a large one still reaches a good loss through them)."""
    keras = _keras()
    rng = _rng(211)
    x, y = _waveforms(rng, n=900)
    init = keras.initializers.RandomNormal(stddev=3.0)
    model = keras.Sequential(
        [
            keras.Input((64, 1)),
            keras.layers.Conv1D(16, 7, activation="tanh", kernel_initializer=init),
            keras.layers.MaxPooling1D(2),
            keras.layers.Conv1D(32, 5, activation="tanh", kernel_initializer=init),
            keras.layers.Conv1D(32, 5, activation="tanh", kernel_initializer=init),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3),
        ]
    )
    _fit(
        logdir,
        model,
        x,
        y,
        _sparse_logits(),
        keras.optimizers.SGD(5e-3, momentum=0.9),
        epochs=6,
        validation_split=0.2,
    )


SCENARIOS = {
    "healthy_lstm_trends": (healthy_lstm_trends, None),
    "healthy_gru_rmsprop_regression": (healthy_gru_rmsprop_regression, None),
    "healthy_conv1d_cosine_sgd": (healthy_conv1d_cosine_sgd, None),
    "healthy_embedding_label_smoothing": (healthy_embedding_label_smoothing, None),
    "healthy_autoencoder": (healthy_autoencoder, None),
    "healthy_multi_output": (healthy_multi_output, None),
    "healthy_cnn_batchnorm_dropout": (healthy_cnn_batchnorm_dropout, None),
    "healthy_residual_layernorm_adamw": (healthy_residual_layernorm_adamw, None),
    "healthy_standardized_regression": (healthy_standardized_regression, None),
    "healthy_imbalanced_sample_weights": (healthy_imbalanced_sample_weights, None),
    "healthy_subclassed_two_moons": (healthy_subclassed_two_moons, None),
    "healthy_solved_quickly": (healthy_solved_quickly, None),
    "healthy_val_flattens": (healthy_val_flattens, None),
    "healthy_conv1d_regression_rmsprop": (healthy_conv1d_regression_rmsprop, None),
    "lr_too_high_rmsprop_cnn": (lr_too_high_rmsprop_cnn, "lr_too_high"),
    "lr_too_low_momentum_conv1d": (lr_too_low_momentum_conv1d, "lr_too_low"),
    "vanishing_deep_sigmoid_cnn": (vanishing_deep_sigmoid_cnn, "vanishing_gradients"),
    "lr_spike_kills_relus": (lr_spike_kills_relus, "lr_too_high"),
    "saturated_tanh_conv1d_large_init": (
        saturated_tanh_conv1d_large_init,
        "saturated_activations",
    ),
    "unnormalized_lstm_sensor_readings": (unnormalized_lstm_sensor_readings, "unnormalized_inputs"),
    "mismatch_mse_softmax_class_ids": (mismatch_mse_softmax_class_ids, "loss_output_mismatch"),
    "mismatch_bce_multiclass_ids": (mismatch_bce_multiclass_ids, "loss_output_mismatch"),
    "no_signal_random_labels_cnn": (no_signal_random_labels_cnn, "no_signal"),
    "overfitting_big_mlp_60_samples": (overfitting_big_mlp_60_samples, "overfitting"),
    "not_converged_gru_three_epochs": (not_converged_gru_three_epochs, "not_converged"),
}


def train_all(root, names=None):
    """Trains the named scenarios (all by default) into root/<name>; returns {name: logdir}."""
    from tests.reproducers import train_all as train

    return train(root, names, scenarios=SCENARIOS)
