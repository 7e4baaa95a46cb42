"""Small real trainings, healthy and broken in known ways, each recorded with PlateauCallback.

Every scenario is a function `scenario(logdir)` that trains one tiny Keras
model (seconds on a CPU, data made here) into `logdir`. `SCENARIOS` maps a
scenario's name to (function, expected top cause or None for healthy). The
diagnosis tests, the demo and the benchmarks can reuse them:

    from tests import reproducers
    fn, expected = reproducers.SCENARIOS["dead_relu_negative_bias"]
    fn("logs/dead")
"""

import numpy as np

EVERY_N_STEPS = 5  # records often enough for short runs


def _keras():
    import keras  # imported lazily: the module lists scenarios without TensorFlow

    return keras


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
    seed=0,
):
    keras = _keras()
    from tb_plateau.summaries import PlateauCallback

    model.compile(optimizer=optimizer, loss=loss)
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation,
        validation_split=validation_split or 0.0,
        verbose=0,
        shuffle=True,
        callbacks=[PlateauCallback(logdir, every_n_steps=EVERY_N_STEPS)],
    )
    keras.backend.clear_session()


def _rng(seed=0):
    _keras().utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def _blobs(rng, n=600, classes=3, features=4, spread=0.6):
    centers = rng.normal(0, 2.0, size=(classes, features))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, spread, size=(n, features))
    return x.astype("float32"), y.astype("int32")


def _mlp(inputs, hidden, out_units, activation="relu", out_activation=None, **dense_kwargs):
    keras = _keras()
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(u, activation=activation, **dense_kwargs) for u in hidden]
    layers.append(keras.layers.Dense(out_units, activation=out_activation))
    return keras.Sequential(layers)


def _images(rng, n=400, size=8):
    """Two classes: a bright 3x3 patch top-left or bottom-right; pixels in [0, 1]."""
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.3, size=(n, size, size, 1))
    for i in range(n):
        r, c = (1, 1) if y[i] == 0 else (size - 4, size - 4)
        x[i, r : r + 3, c : c + 3, 0] += 0.7
    return x.astype("float32"), y.astype("int32")


def _cnn(size=8, kernel_initializer="glorot_uniform"):
    keras = _keras()
    return keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", kernel_initializer=kernel_initializer),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )


_SPARSE_LOGITS = "sparse_ce_logits"


def _loss(name):
    keras = _keras()
    if name == _SPARSE_LOGITS:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return name


# ----------------------------------------------------------------- healthy


def healthy_classification(logdir):
    rng = _rng()
    x, y = _blobs(rng)
    _fit(
        logdir,
        _mlp(4, [32], 3),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(1e-2),
        epochs=15,
        validation_split=0.2,
    )


def healthy_regression_noise_floor(logdir):
    rng = _rng(1)
    x = rng.normal(size=(800, 3)).astype("float32")
    y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] + rng.normal(0, 0.3, 800)).astype("float32")
    _fit(
        logdir,
        _mlp(3, [32], 1, activation="tanh"),
        x,
        y,
        "mse",
        _keras().optimizers.Adam(1e-2),
        epochs=25,
        validation_split=0.2,
    )


def _patch_cnn(logdir, learning_rate, epochs):
    rng = _rng(2)
    x, y = _images(rng)
    _fit(
        logdir,
        _cnn(),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(learning_rate),
        epochs=epochs,
        validation_split=0.2,
    )


def healthy_cnn(logdir):
    _patch_cnn(logdir, learning_rate=2e-2, epochs=30)


def healthy_lr_schedule(logdir):
    keras = _keras()
    rng = _rng(3)
    x, y = _blobs(rng, classes=4, features=6)
    schedule = keras.optimizers.schedules.ExponentialDecay(3e-2, decay_steps=30, decay_rate=0.7)
    _fit(
        logdir,
        _mlp(6, [32, 16], 4),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        keras.optimizers.Adam(schedule),
        epochs=15,
        validation_split=0.2,
    )


# ----------------------------------------------------------------- nonfinite


def nonfinite_nan_inputs(logdir):
    rng = _rng(4)
    x, y = _blobs(rng)
    x[rng.choice(len(x), 20, replace=False), 1] = np.nan  # missing values read as NaN
    _fit(logdir, _mlp(4, [16], 3), x, y, _loss(_SPARSE_LOGITS), "adam", epochs=3)


def nonfinite_log_of_linear_output(logdir):
    import tensorflow as tf

    def log_loss(y_true, y_pred):
        # A hand-written log-likelihood on an unbounded output: log of negatives.
        return -tf.reduce_mean(y_true * tf.math.log(y_pred))

    rng = _rng(5)
    x = rng.normal(size=(400, 5)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    _fit(logdir, _mlp(5, [16], 1), x, y, log_loss, "adam", epochs=3)


# ----------------------------------------------------------------- learning rate


def lr_too_high_adam(logdir):
    # Overlapping blobs: a task the huge steps keep the model from solving
    # (on well-separated blobs it still reaches a near-zero loss).
    rng = _rng(6)
    x, y = _blobs(rng, classes=4, features=8, spread=1.5)
    _fit(
        logdir,
        _mlp(8, [64, 64], 4),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(3.0),
        epochs=8,
        validation_split=0.25,
    )


def lr_too_high_sgd_regression(logdir):
    rng = _rng(7)
    x = rng.normal(size=(600, 6)).astype("float32")
    y = (x @ rng.normal(size=6) + rng.normal(0, 0.1, 600)).astype("float32")
    _fit(
        logdir,
        _mlp(6, [32], 1, activation="tanh"),
        x,
        y,
        "mse",
        _keras().optimizers.SGD(0.6),
        epochs=6,
    )


def lr_too_low_adam(logdir):
    rng = _rng(8)
    x, y = _blobs(rng)
    _fit(
        logdir,
        _mlp(4, [32], 3),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(1e-7),
        epochs=8,
    )


def lr_too_low_sgd_regression(logdir):
    rng = _rng(9)
    x = rng.normal(size=(600, 5)).astype("float32")
    y = (x @ rng.normal(size=5) * 3 + 5).astype("float32")
    _fit(logdir, _mlp(5, [32], 1), x, y, "mse", _keras().optimizers.SGD(1e-6), epochs=8)


# ----------------------------------------------------------------- gradients


def exploding_deep_linear_large_init(logdir):
    keras = _keras()
    rng = _rng(10)
    x = rng.normal(size=(400, 16)).astype("float32")
    y = (x[:, :1] * 2).astype("float32")
    init = keras.initializers.RandomNormal(stddev=1.0)
    _fit(
        logdir,
        _mlp(16, [32] * 6, 1, activation=None, kernel_initializer=init),
        x,
        y,
        "mse",
        keras.optimizers.SGD(1e-4),
        epochs=3,
    )


def exploding_relu_rnn(logdir):
    keras = _keras()
    rng = _rng(11)
    x = rng.normal(size=(300, 30, 4)).astype("float32")
    y = x[:, :, 0].sum(axis=1, keepdims=True).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((30, 4)),
            keras.layers.SimpleRNN(
                16,
                activation="relu",
                recurrent_initializer=keras.initializers.RandomNormal(stddev=0.6),
            ),
            keras.layers.Dense(1),
        ]
    )
    _fit(logdir, model, x, y, "mse", keras.optimizers.SGD(1e-5), epochs=3)


def vanishing_deep_sigmoid(logdir):
    rng = _rng(12)
    x, y = _blobs(rng, features=8)
    _fit(
        logdir,
        _mlp(8, [16] * 10, 3, activation="sigmoid"),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.SGD(0.05),
        epochs=4,
    )


def vanishing_deep_tanh_small_init(logdir):
    keras = _keras()
    rng = _rng(13)
    x = rng.normal(size=(500, 10)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("float32")
    init = keras.initializers.RandomNormal(stddev=0.03)
    _fit(
        logdir,
        _mlp(10, [32] * 10, 1, activation="tanh", kernel_initializer=init),
        x,
        y,
        keras.losses.BinaryCrossentropy(from_logits=True),
        "adam",
        epochs=4,
    )


# ----------------------------------------------------------------- activations


def dead_relu_negative_bias(logdir):
    keras = _keras()
    rng = _rng(14)
    x, y = _blobs(rng, features=6)
    _fit(
        logdir,
        _mlp(6, [32, 32], 3, bias_initializer=keras.initializers.Constant(-6.0)),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        "adam",
        epochs=4,
    )


def dead_relu_cnn_negative_kernels(logdir):
    rng = _rng(15)
    x, y = _images(rng)
    init = _keras().initializers.RandomUniform(-0.5, 0.0)
    _fit(logdir, _cnn(kernel_initializer=init), x, y, _loss(_SPARSE_LOGITS), "adam", epochs=4)


def saturated_tanh_large_init(logdir):
    keras = _keras()
    # Three saturated layers on overlapping blobs: the loss is still far from
    # where the default initialization gets in as many epochs.
    rng = _rng(16)
    x, y = _blobs(rng, features=8, spread=1.5)
    init = keras.initializers.RandomNormal(stddev=4.0)
    _fit(
        logdir,
        _mlp(8, [64, 64, 64], 3, activation="tanh", kernel_initializer=init),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        keras.optimizers.SGD(0.01),
        epochs=4,
        validation_split=0.25,
    )


def saturated_sigmoid_bias(logdir):
    keras = _keras()
    rng = _rng(17)
    x = rng.normal(size=(500, 6)).astype("float32")
    y = (x @ rng.normal(size=6)).astype("float32")
    _fit(
        logdir,
        _mlp(6, [32], 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(8.0)),
        x,
        y,
        "mse",
        keras.optimizers.SGD(0.01),
        epochs=4,
    )


# ----------------------------------------------------------------- configuration


def unnormalized_tabular(logdir):
    rng = _rng(18)
    n = 600
    income = rng.normal(50_000, 15_000, n)
    age = rng.normal(40, 12, n)
    rooms = rng.integers(1, 8, n)
    x = np.stack([income, age, rooms], axis=1).astype("float32")
    y = ((income - 50_000) / 15_000 + (age - 40) / 12 > 0).astype("float32")
    _fit(
        logdir,
        _mlp(3, [32, 32], 1),
        x,
        y,
        _keras().losses.BinaryCrossentropy(from_logits=True),
        "adam",
        epochs=4,
    )


def unnormalized_raw_pixels(logdir):
    rng = _rng(19)
    x, y = _images(rng)
    _fit(logdir, _cnn(), x * 255.0, y, _loss(_SPARSE_LOGITS), "adam", epochs=4)


def mismatch_softmax_single_unit(logdir):
    rng = _rng(20)
    x = rng.normal(size=(500, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    _fit(
        logdir,
        _mlp(5, [16], 1, out_activation="softmax"),
        x,
        y,
        "binary_crossentropy",
        "adam",
        epochs=3,
    )


def mismatch_bce_minus_one_labels(logdir):
    rng = _rng(21)
    x = rng.normal(size=(500, 5)).astype("float32")
    y = np.where(x[:, 0] > 0, 1.0, -1.0).astype("float32")
    _fit(
        logdir,
        _mlp(5, [16], 1, out_activation="sigmoid"),
        x,
        y,
        "binary_crossentropy",
        "adam",
        epochs=3,
    )


def mismatch_sigmoid_regression(logdir):
    rng = _rng(22)
    x = rng.normal(size=(500, 4)).astype("float32")
    y = (x @ rng.normal(size=4) * 10 + 30).astype("float32")  # targets around 30
    _fit(logdir, _mlp(4, [16], 1, out_activation="sigmoid"), x, y, "mse", "adam", epochs=3)


def zero_gradient_sign_activation(logdir):
    import tensorflow as tf

    keras = _keras()
    rng = _rng(23)
    x, y = _blobs(rng)

    def sign(t):
        return tf.sign(t)

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16),
            keras.layers.Lambda(sign),
            keras.layers.Dense(3),
        ]
    )
    _fit(logdir, model, x, y, _loss(_SPARSE_LOGITS), "adam", epochs=3)


def zero_gradient_thresholded_loss(logdir):
    import tensorflow as tf

    def thresholded_loss(y_true, y_pred):
        # Counts wrong decisions: a step function of the prediction.
        decision = 0.5 * (tf.sign(y_pred - 0.5) + 1.0)
        return tf.reduce_mean(tf.square(y_true - decision))

    rng = _rng(24)
    x = rng.normal(size=(500, 5)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    _fit(
        logdir, _mlp(5, [16], 1, out_activation="sigmoid"), x, y, thresholded_loss, "adam", epochs=3
    )


def batchnorm_batch_of_one(logdir):
    keras = _keras()
    rng = _rng(25)
    x, y = _blobs(rng, n=150)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(3),
        ]
    )
    _fit(logdir, model, x, y, _loss(_SPARSE_LOGITS), "adam", epochs=2, batch_size=1)


def batchnorm_slow_moving_statistics(logdir):
    keras = _keras()
    rng = _rng(26)
    x, y = _blobs(rng, n=800, features=5)
    x = x + 6.0  # features centered near 6, unit-ish scale: fine for training mode
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.BatchNormalization(momentum=0.999),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    _fit(logdir, model, x, y, _loss(_SPARSE_LOGITS), "adam", epochs=6, validation_split=0.25)


# ----------------------------------------------------------------- loss curve


def capacity_one_unit_bottleneck(logdir):
    rng = _rng(27)
    x, y = _blobs(rng, n=1000, classes=8, features=6, spread=0.5)
    _fit(
        logdir,
        _mlp(6, [1], 8),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(3e-2),
        epochs=20,
        validation_split=0.2,
    )


def capacity_tiny_regression(logdir):
    rng = _rng(28)
    x = rng.uniform(-3, 3, size=(800, 2)).astype("float32")
    y = (np.sin(2 * x[:, 0]) * np.cos(2 * x[:, 1])).astype("float32")
    _fit(
        logdir,
        _mlp(2, [2], 1, activation="tanh"),
        x,
        y,
        "mse",
        _keras().optimizers.Adam(3e-2),
        epochs=20,
        validation_split=0.2,
    )


def no_signal_shuffled_labels(logdir):
    rng = _rng(29)
    x, _ = _blobs(rng, n=600, classes=4)
    y = rng.integers(0, 4, len(x)).astype("int32")  # labels shuffled apart from the inputs
    _fit(
        logdir,
        _mlp(4, [16], 4),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        "adam",
        epochs=10,
        validation_split=0.2,
    )


def no_signal_constant_labels(logdir):
    rng = _rng(30)
    x, _ = _blobs(rng)
    y = np.zeros(len(x), "int32")  # a label column that was read as all zeros
    _fit(logdir, _mlp(4, [16], 3), x, y, _loss(_SPARSE_LOGITS), "adam", epochs=4)


def overfitting_small_noisy_data(logdir):
    rng = _rng(31)
    x, y = _blobs(rng, n=300, classes=3, features=10, spread=2.5)
    flip = rng.random(len(y)) < 0.2
    y[flip] = rng.integers(0, 3, flip.sum())
    x_val, y_val = x[200:], y[200:]
    _fit(
        logdir,
        _mlp(10, [256, 256], 3),
        x[:80],
        y[:80],
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(3e-3),
        epochs=60,
        validation=(x_val, y_val),
    )


def overfitting_cnn_few_images(logdir):
    keras = _keras()
    rng = _rng(32)
    x, y = _images(rng, n=300)
    flip = rng.random(len(y)) < 0.2
    y[flip] = 1 - y[flip]
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(2),
        ]
    )
    _fit(
        logdir,
        model,
        x[:48],
        y[:48],
        _loss(_SPARSE_LOGITS),
        keras.optimizers.Adam(3e-3),
        epochs=60,
        validation=(x[150:], y[150:]),
    )


def not_converged_short_run(logdir):
    rng = _rng(33)
    x, y = _blobs(rng, n=2000, classes=5, features=10, spread=1.5)
    _fit(
        logdir,
        _mlp(10, [32], 5),
        x,
        y,
        _loss(_SPARSE_LOGITS),
        _keras().optimizers.Adam(2e-4),
        epochs=2,
    )


def not_converged_cnn(logdir):
    # The same CNN as healthy_cnn, stopped at 12 epochs with half the rate.
    _patch_cnn(logdir, learning_rate=1e-2, epochs=12)


SCENARIOS = {
    "healthy_classification": (healthy_classification, None),
    "healthy_regression_noise_floor": (healthy_regression_noise_floor, None),
    "healthy_cnn": (healthy_cnn, None),
    "healthy_lr_schedule": (healthy_lr_schedule, None),
    "nonfinite_nan_inputs": (nonfinite_nan_inputs, "nonfinite"),
    "nonfinite_log_of_linear_output": (nonfinite_log_of_linear_output, "nonfinite"),
    "lr_too_high_adam": (lr_too_high_adam, "lr_too_high"),
    "lr_too_high_sgd_regression": (lr_too_high_sgd_regression, "lr_too_high"),
    "lr_too_low_adam": (lr_too_low_adam, "lr_too_low"),
    "lr_too_low_sgd_regression": (lr_too_low_sgd_regression, "lr_too_low"),
    "exploding_deep_linear_large_init": (exploding_deep_linear_large_init, "exploding_gradients"),
    "exploding_relu_rnn": (exploding_relu_rnn, "exploding_gradients"),
    "vanishing_deep_sigmoid": (vanishing_deep_sigmoid, "vanishing_gradients"),
    "vanishing_deep_tanh_small_init": (vanishing_deep_tanh_small_init, "vanishing_gradients"),
    "dead_relu_negative_bias": (dead_relu_negative_bias, "dead_relu"),
    "dead_relu_cnn_negative_kernels": (dead_relu_cnn_negative_kernels, "dead_relu"),
    "saturated_tanh_large_init": (saturated_tanh_large_init, "saturated_activations"),
    "saturated_sigmoid_bias": (saturated_sigmoid_bias, "saturated_activations"),
    "unnormalized_tabular": (unnormalized_tabular, "unnormalized_inputs"),
    "unnormalized_raw_pixels": (unnormalized_raw_pixels, "unnormalized_inputs"),
    "mismatch_softmax_single_unit": (mismatch_softmax_single_unit, "loss_output_mismatch"),
    "mismatch_bce_minus_one_labels": (mismatch_bce_minus_one_labels, "loss_output_mismatch"),
    "mismatch_sigmoid_regression": (mismatch_sigmoid_regression, "loss_output_mismatch"),
    "zero_gradient_sign_activation": (zero_gradient_sign_activation, "zero_gradient"),
    "zero_gradient_thresholded_loss": (zero_gradient_thresholded_loss, "zero_gradient"),
    "batchnorm_batch_of_one": (batchnorm_batch_of_one, "batchnorm_misuse"),
    "batchnorm_slow_moving_statistics": (batchnorm_slow_moving_statistics, "batchnorm_misuse"),
    "capacity_one_unit_bottleneck": (capacity_one_unit_bottleneck, "insufficient_capacity"),
    "capacity_tiny_regression": (capacity_tiny_regression, "insufficient_capacity"),
    "no_signal_shuffled_labels": (no_signal_shuffled_labels, "no_signal"),
    "no_signal_constant_labels": (no_signal_constant_labels, "no_signal"),
    "overfitting_small_noisy_data": (overfitting_small_noisy_data, "overfitting"),
    "overfitting_cnn_few_images": (overfitting_cnn_few_images, "overfitting"),
    "not_converged_short_run": (not_converged_short_run, "not_converged"),
    "not_converged_cnn": (not_converged_cnn, "not_converged"),
}


def train_all(root, names=None, scenarios=None):
    """Trains the named scenarios (all by default) into root/<name>; returns {name: logdir}.

    `scenarios` is another suite's table (tests/heldout.py), SCENARIOS by default.
    """
    import os

    scenarios = SCENARIOS if scenarios is None else scenarios
    logdirs = {}
    for name in names or scenarios:
        logdir = os.path.join(root, name)
        scenarios[name][0](logdir)
        logdirs[name] = logdir
    return logdirs
