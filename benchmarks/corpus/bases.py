"""The corpus's healthy base trainings, and the hooks through which operators break them.

Each base is a small, really healthy training of its own kind (tabular MLP, CNN with
BatchNormalization, LSTM, embeddings, a custom `tf.GradientTape` loop, regression, residual
model, autoencoder, GRU, Conv1D with BatchNormalization), with data made here with numpy from a
seed: it trains to a clearly good result in a few seconds on a CPU. A base is split "dev" or
"test" (see the package docstring).

A training is `train(base, params, seed, logdir)`. `params` starts from `base.default_params()`
(`DEFAULTS` with the base's own overrides); fault operators change entries of it (a learning
rate, an initializer, a data transform...). Every base reads every hook that makes sense for
it through the shared builders below, so one operator breaks ten different trainings the same
way. Models are built with the functional API so that a hook can insert a layer anywhere.
"""

import dataclasses
import math
import time
from typing import Callable

import numpy as np

# Records often enough that short runs (a few hundred steps) have dozens of records.
EVERY_N_STEPS = 5  # steps between records
VALIDATION_FRACTION = 0.2  # of each base's samples, held out as validation data
# Labels drawn at random for this fraction of samples: a loss floor above zero, as real
# labels have, so that a healthy base levels off instead of creeping towards zero (which
# would rightly read as overfitting or not converged).
LABEL_NOISE = 0.05
LR_DECAY_FLOOR = 0.1  # of the initial rate, at the end of a run with "lr_decay"

CLASSIFICATION = "classification"
REGRESSION = "regression"
RECONSTRUCTION = "reconstruction"

# The hooks, with the value that leaves a base as it is. A base overrides some of them.
DEFAULTS = {
    "optimizer": "adam",  # "adam" | "adamw" | "rmsprop" | "sgd" (momentum 0.9)
    "learning_rate": 5e-3,
    "lr_decay": False,  # cosine decay of the rate over the run, to LR_DECAY_FLOOR of it
    # [fraction of the run's steps, factor]: the rate is multiplied by factor from there on,
    # through a LearningRateSchedule.
    "lr_jump": None,
    "epochs": 15,
    "batch_size": 32,
    "hidden_activation": "relu",  # of every hidden Dense/Conv layer
    "head_depth": 1,  # hidden Dense layers between the features and the output
    "head_width": 32,  # units of each of them
    "kernel_stddev": None,  # RandomNormal(stddev) kernels for hidden Dense/Conv; None: Glorot
    "bias_init": 0.0,  # constant initial bias of hidden Dense layers (beta of BatchNorm)
    "rnn_kernel_stddev": None,  # RandomNormal(stddev) input and recurrent kernels of RNNs
    "l2": 0.0,  # L2 factor on every layer's kernel (embeddings included)
    "dropout": 0.0,  # rate of a Dropout layer after every hidden layer
    "batchnorm_frozen": False,  # BatchNormalization(trainable=False): inference mode
    "input_scale": 1.0,  # inputs multiplied by this (train and validation)...
    "input_shift": 0.0,  # ...then shifted by this
    "nan_rows": 0,  # training rows with a NaN feature
    "labels": "true",  # "true" | "shuffled" | "constant" | "off_by_one" (train and validation)
    "label_smoothing": 0.0,  # > 0: one-hot labels and CategoricalCrossentropy(label_smoothing)
    "from_logits": True,  # of the classifiers' cross-entropy (their output is linear)
    "output_activation": None,
    "non_differentiable": None,  # "round" | "sign" | "stop_gradient": a Lambda before the output
    "bottleneck": None,  # units of a linear layer before the output (the code width of an AE)
    "train_fraction": 1.0,  # of the training samples kept
    "jit_compile": "auto",  # Keras' (and the custom loop's tf.function's) XLA switch
}


@dataclasses.dataclass(frozen=True)
class Base:
    """One healthy training of the corpus.

    Attributes:
      name, split ("dev" | "test"), description: what it is.
      task: CLASSIFICATION (sparse integer labels, `classes` of them), REGRESSION (one
        standardized target) or RECONSTRUCTION (the inputs are the targets).
      make_data: rng -> (x, y), all samples, inputs at unit scale (y None for reconstruction).
      make_model: (params, input_shape, out_units) -> keras.Model.
      overrides: this base's departures from DEFAULTS.
      tokens: inputs are token ids (no scaling, no NaN).
      batchnorm: has BatchNormalization layers.
      recurrent: has an RNN layer (tanh, and in an LSTM/GRU sigmoid, units inside).
      custom_loop: trained by a `tf.GradientTape` loop with `Recorder`, not by `fit`.
      unit_targets: the targets lie in [0, 1] (pixels): a sigmoid output fits them.
      framework: "keras", or "torch" for a PyTorch model (`torch_bases`) recorded with
        `summaries.torch.watch`.
    """

    name: str
    split: str
    description: str
    task: str
    make_data: Callable
    make_model: Callable
    overrides: dict = dataclasses.field(default_factory=dict)
    classes: int = 0
    tokens: bool = False
    batchnorm: bool = False
    recurrent: bool = False
    custom_loop: bool = False
    unit_targets: bool = False
    framework: str = "keras"  # or "torch": `torch_bases`

    def default_params(self):
        return {**DEFAULTS, **self.overrides}

    @property
    def hidden_activation(self):
        return self.default_params()["hidden_activation"]


def _keras():
    import keras  # lazily: the corpus lists its cases and scores without TensorFlow

    return keras


# ----------------------------------------------------------------- data


def _noisy_labels(rng, y, classes):
    y = y.astype("int32")
    flip = rng.random(len(y)) < LABEL_NOISE
    y[flip] = rng.integers(0, classes, int(flip.sum()))
    return y


def _standardized(a):
    return ((a - a.mean(axis=0)) / a.std(axis=0)).astype("float32")


def tabular_data(rng, n=1000):
    """Eight features; the class is the quadrant of two nonlinear scores (4 classes)."""
    x = rng.normal(size=(n, 8))
    a = x[:, 0] + 0.8 * x[:, 1] * x[:, 2]
    b = x[:, 3] - x[:, 4] + 0.5 * x[:, 5] ** 2 - 0.5
    y = 2 * (a > 0) + (b > 0)
    return x.astype("float32"), _noisy_labels(rng, y, 4)


def shape_images(rng, n=600, size=10):
    """10x10 images of a plus, a ring or a diagonal at a random place on noise; pixels [0, 1]."""
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 0.4, size=(n, size, size, 1))
    for i in range(n):
        r, c = rng.integers(0, size - 3, 2)
        patch = x[i, r : r + 3, c : c + 3, 0]
        if y[i] == 0:
            patch[1, :] += 0.6
            patch[[0, 2], 1] += 0.6
        elif y[i] == 1:
            patch += 0.6
            patch[1, 1] -= 0.6
        else:
            patch[[0, 1, 2], [0, 1, 2]] += 0.6
    return np.clip(x, 0, 1).astype("float32"), _noisy_labels(rng, y, 3)


def sum_sequences(rng, n=600, steps=12):
    """Sequences of two noisy features; the class is the tertile of feature 0's sum."""
    x = rng.normal(size=(n, steps, 2))
    total = x[:, :, 0].sum(axis=1) / math.sqrt(steps)
    y = np.digitize(total, [-0.43, 0.43])  # tertiles of a standard normal
    return x.astype("float32"), _noisy_labels(rng, y, 3)


def topic_texts(rng, n=1000, length=20, vocab=50, topics=3, words=6):
    """Token ids: four words of the text's topic and two of another one, among filler words."""
    y = rng.integers(0, topics, n)
    first_filler = 1 + topics * words
    x = rng.integers(first_filler, vocab, size=(n, length))
    for i in range(n):
        slots = rng.choice(length, 6, replace=False)
        other = (y[i] + rng.integers(1, topics)) % topics
        x[i, slots[:4]] = 1 + y[i] * words + rng.integers(0, words, 4)
        x[i, slots[4:]] = 1 + other * words + rng.integers(0, words, 2)
    return x.astype("int32"), _noisy_labels(rng, y, topics)


def ring_points(rng, n=900):
    """Three noisy concentric rings in the plane, plus two pure-noise features."""
    y = rng.integers(0, 3, n)
    radius = 1.0 + y + rng.normal(0, 0.25, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    noise = rng.normal(size=(n, 2))
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle), noise])
    return _standardized(x), _noisy_labels(rng, y, 3)


def smooth_regression(rng, n=1000):
    """A smooth nonlinear function of six features plus noise (R^2 ceiling about 0.9)."""
    x = rng.normal(size=(n, 6))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3] + rng.normal(0, 0.3, n)
    return x.astype("float32"), _standardized(y)


def sector_classes(rng, n=1000):
    """Eight features; the class is the angular sector (of 4) of two random projections."""
    x = rng.normal(size=(n, 8))
    plane = x @ rng.normal(size=(8, 2))
    y = (np.floor((np.arctan2(plane[:, 1], plane[:, 0]) + np.pi) / (np.pi / 2)) % 4).astype(int)
    return x.astype("float32"), _noisy_labels(rng, y, 4)


def manifold_points(rng, n=1000):
    """Twelve features that are smooth functions of two hidden ones, with a little noise."""
    z = rng.uniform(-1, 1, size=(n, 2))
    x = np.sin(1.5 * z @ rng.normal(size=(2, 12))) + rng.normal(0, 0.05, size=(n, 12))
    return _standardized(x), None


def bump_sequences(rng, n=500, steps=12):
    """Noise with a bump in feature 0 in the first, middle or last third (the class)."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, size=(n, steps, 2))
    start = y * (steps // 3) + rng.integers(0, steps // 3 - 2, n)
    for i in range(n):
        x[i, start[i] : start[i] + 3, 0] += 1.5
    return x.astype("float32"), _noisy_labels(rng, y, 3)


def pulse_signals(rng, n=1000, length=40):
    """A square pulse, a triangle or a pair of spikes at a random place in noise (3 classes)."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.2, size=(n, length))
    for i in range(n):
        at = rng.integers(0, length - 10)
        if y[i] == 0:
            x[i, at : at + 6] += 1.0
        elif y[i] == 1:
            x[i, at : at + 9] += 1.5 - np.abs(np.arange(9) - 4) * 0.35
        else:
            x[i, [at, at + 4]] += 2.0
    return x[..., None].astype("float32"), _noisy_labels(rng, y, 3)


def piecewise_regression(rng, n=1000):
    """Ten features; a sum of kinks, steps and one interaction, plus noise (R^2 ceiling ~0.9)."""
    x = rng.normal(size=(n, 10))
    y = (
        np.maximum(x[:, 0], 0)
        + 0.8 * np.abs(x[:, 1])
        - 0.6 * (x[:, 2] > 0.5)
        + 0.5 * x[:, 3] * (x[:, 4] > 0)
        + 0.4 * x[:, 5]
        + rng.normal(0, 0.3, n)
    )
    return x.astype("float32"), _standardized(y)


def flat_shape_images(rng, n=800):
    """The 10x10 shape images, flattened to 100 pixels in [0, 1] (no labels: reconstruction)."""
    x, _ = shape_images(rng, n)
    return x.reshape(n, -1), None


def sign_sequences(rng, n=600, steps=10):
    """Sequences of three noisy features; the class says whether feature 1 rises, falls or
    stays level from the first half to the second (3 classes)."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.5, size=(n, steps, 3))
    trend = np.array([1.0, -1.0, 0.0])[y]
    x[:, steps // 2 :, 1] += trend[:, None]
    return x.astype("float32"), _noisy_labels(rng, y, 3)


def blob_classes(rng, n=1200, features=16, classes=10):
    """Ten classes, each two Gaussian blobs in 16 dimensions (not linearly separable)."""
    centers = rng.normal(0, 1.2, size=(classes, 2, features))
    y = rng.integers(0, classes, n)
    x = centers[y, rng.integers(0, 2, n)] + rng.normal(0, 0.8, size=(n, features))
    return _standardized(x), _noisy_labels(rng, y, classes)


def decay_sequences(rng, n=2000, steps=15):
    """Two noisy features; the target is feature 0's exponentially weighted sum, recent steps
    weighing most, times the sign of feature 1's mean, plus noise (regression)."""
    x = rng.normal(size=(n, steps, 2))
    weights = 0.75 ** np.arange(steps)[::-1]
    y = (x[:, :, 0] @ weights) * np.sign(x[:, :, 1].mean(axis=1)) + rng.normal(0, 0.3, n)
    return x.astype("float32"), _standardized(y)


def tone_signals(rng, n=900, length=48):
    """A sine burst of a low, middle or high frequency (the class) at a random place and
    phase in noise."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, size=(n, length))
    periods = np.array([16.0, 8.0, 4.0])
    for i in range(n):
        at = rng.integers(0, length // 2)
        t = np.arange(length // 2)
        x[i, at : at + length // 2] += np.sin(2 * np.pi * t / periods[y[i]] + rng.uniform(0, 6.3))
    return x[..., None].astype("float32"), _noisy_labels(rng, y, 3)


def stripe_images(rng, n=900, size=12):
    """12x12 images of faint horizontal, vertical or diagonal stripes (the class) with a
    random phase, on noise; pixels [0, 1]."""
    y = rng.integers(0, 3, n)
    rows, cols = np.mgrid[0:size, 0:size]
    x = rng.uniform(0, 0.5, size=(n, size, size))
    for i in range(n):
        coordinate = (rows, cols, rows + cols)[y[i]]
        x[i] += 0.35 * ((coordinate + rng.integers(0, 4)) % 4 < 2)
    return np.clip(x, 0, 1)[..., None].astype("float32"), _noisy_labels(rng, y, 3)


def roll_points(rng, n=1200):
    """Sixteen features that are smooth functions of a 3-D swiss roll, with a little noise
    (no labels: reconstruction)."""
    t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)
    h = rng.uniform(-1, 1, n)
    z = rng.uniform(-1, 1, n)
    hidden = np.column_stack([t * np.cos(t) / 10, h, t * np.sin(t) / 10, z])
    x = np.tanh(hidden @ rng.normal(size=(4, 16))) + rng.normal(0, 0.05, size=(n, 16))
    return _standardized(x), None


def three_targets(rng, n=1200):
    """Eight features; three targets (a smooth function, a product, a thresholded sum), each
    with noise (multi-output regression)."""
    x = rng.normal(size=(n, 8))
    y = np.column_stack(
        [
            np.sin(1.5 * x[:, 0]) + 0.5 * x[:, 1],
            x[:, 2] * x[:, 3],
            np.maximum(x[:, 4] + x[:, 5], 0) - 0.5 * x[:, 6],
        ]
    ) + rng.normal(0, 0.25, size=(n, 3))
    return x.astype("float32"), _standardized(y)


def six_class_tabular(rng, n=2500):
    """Twelve features; six classes: the sign of one nonlinear score times the tertile of
    another."""
    x = rng.normal(size=(n, 12))
    a = x[:, 0] + 0.8 * x[:, 1] * x[:, 2]
    b = x[:, 3] - 0.5 * np.abs(x[:, 4])
    y = 3 * (a > 0) + np.digitize(b, np.quantile(b, [1 / 3, 2 / 3]))
    return x.astype("float32"), _noisy_labels(rng, y, 6)


def knot_points(rng, n=1200):
    """Twenty features that are smooth functions of a point on a trefoil knot and two more
    uniform coordinates (three hidden dimensions), with a little noise (no labels:
    reconstruction)."""
    t = rng.uniform(0, 2 * np.pi, n)
    knot = np.column_stack(
        [np.sin(t) + 2 * np.sin(2 * t), np.cos(t) - 2 * np.cos(2 * t), -np.sin(3 * t)]
    )
    hidden = np.column_stack([knot / 2, rng.uniform(-1, 1, size=(n, 2))])
    x = np.tanh(hidden @ rng.normal(size=(5, 20))) + rng.normal(0, 0.05, size=(n, 20))
    return _standardized(x), None


def sensor_factors(rng, n=1200, sensors=24):
    """Readings of 24 sensors driven by three hidden factors of falling strength (one shared
    factor dominates, as a common load or temperature does), mixed nonlinearly, with a little
    noise (no labels: reconstruction)."""
    factors = rng.normal(size=(n, 3)) * np.array([1.0, 0.25, 0.12])
    x = np.tanh(0.7 * factors @ rng.normal(size=(3, sensors)))
    return _standardized(x + rng.normal(0, 0.05, size=(n, sensors))), None


def peak_spectra(rng, n=1200, bins=32):
    """Spectra of 32 bins: one Gaussian peak of random height, place and width on a sloped
    baseline, with a little noise (no labels: reconstruction)."""
    grid = np.arange(bins)
    place = rng.uniform(12, 20, n)[:, None]
    width = rng.uniform(2.5, 3.5, n)[:, None]
    height = rng.uniform(0.5, 1.5, n)[:, None]
    slope = rng.normal(0, 0.3, n)[:, None]
    x = height * np.exp(-0.5 * ((grid - place) / width) ** 2) + slope * grid / bins
    return _standardized(x + rng.normal(0, 0.03, size=(n, bins))), None


def friedman_regression(rng, n=1500):
    """Friedman's first regression problem: ten uniform features, five of them used
    (a product inside a sine, a square, two linear terms), with noise; standardized target."""
    x = rng.uniform(0, 1, size=(n, 10))
    y = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
        + rng.normal(0, 1.0, n)
    )
    return _standardized(x).astype("float32"), _standardized(y[:, None])


# ----------------------------------------------------------------- layers with the hooks


def _regularizer(params):
    return _keras().regularizers.L2(params["l2"]) if params["l2"] else None


def _kernel_initializer(params):
    stddev = params["kernel_stddev"]
    return "glorot_uniform" if stddev is None else _keras().initializers.RandomNormal(stddev=stddev)


def _hidden(layer_class, params, *args, **kwargs):
    """A hidden Dense/Conv layer with the activation, initializer and regularizer hooks."""
    keras = _keras()
    return layer_class(
        *args,
        activation=params["hidden_activation"],
        kernel_initializer=_kernel_initializer(params),
        bias_initializer=keras.initializers.Constant(params["bias_init"]),
        kernel_regularizer=_regularizer(params),
        **kwargs,
    )


def _dropout(x, params):
    return _keras().layers.Dropout(params["dropout"])(x) if params["dropout"] else x


def _dense_stack(x, params, depth=None):
    for _ in range(params["head_depth"] if depth is None else depth):
        x = _dropout(_hidden(_keras().layers.Dense, params, params["head_width"])(x), params)
    return x


def _conv_bn(x, params, conv_class, filters, size):
    """Convolution without bias -> BatchNormalization -> activation, as CNNs usually stack them."""
    return _normalized(conv_class(filters, size, **_unbiased(params))(x), params)


def _unbiased(params):
    """A Dense/Conv layer's arguments before a normalization: no bias, the kernel hooks."""
    return {
        "use_bias": False,
        "kernel_initializer": _kernel_initializer(params),
        "kernel_regularizer": _regularizer(params),
    }


def _normalized(x, params):
    """BatchNormalization (with the hooks) -> activation -> dropout."""
    keras = _keras()
    # momentum 0.9: the moving statistics catch up within the ~200 steps of a base's run
    # (Keras' default 0.99 would leave validation with stale statistics).
    x = keras.layers.BatchNormalization(
        momentum=0.9,
        beta_initializer=keras.initializers.Constant(params["bias_init"]),
        trainable=not params["batchnorm_frozen"],
    )(x)
    return _dropout(keras.layers.Activation(params["hidden_activation"])(x), params)


def _recurrent(layer_class, params, units):
    keras = _keras()
    stddev = params["rnn_kernel_stddev"]
    init = {}
    if stddev is not None:
        init = {
            "kernel_initializer": keras.initializers.RandomNormal(stddev=stddev),
            "recurrent_initializer": keras.initializers.RandomNormal(stddev=stddev),
        }
    return layer_class(units, kernel_regularizer=_regularizer(params), **init)


# Functions a model must not use inside it: each passes no gradient to the layers below
# (tf.round: none; tf.sign: exactly zero; stop_gradient: none by design). Module-level
# and named, so that the configuration record names them.
def round_features(t):
    import tensorflow as tf

    return tf.round(t)


def sign_features(t):
    import tensorflow as tf

    return tf.sign(t)


def stop_gradient_features(t):
    import tensorflow as tf

    return tf.stop_gradient(t)


NON_DIFFERENTIABLE = {
    "round": round_features,
    "sign": sign_features,
    "stop_gradient": stop_gradient_features,
}


def _non_differentiable(x, params):
    fn = params["non_differentiable"]
    return _keras().layers.Lambda(NON_DIFFERENTIABLE[fn])(x) if fn else x


def _output(x, params, units):
    """The optional non-differentiable op and bottleneck, then the output layer."""
    keras = _keras()
    x = _non_differentiable(x, params)
    if params["bottleneck"]:
        x = keras.layers.Dense(params["bottleneck"], kernel_regularizer=_regularizer(params))(x)
    return keras.layers.Dense(
        units, activation=params["output_activation"], kernel_regularizer=_regularizer(params)
    )(x)


# ----------------------------------------------------------------- models


def mlp_model(params, input_shape, out_units):
    keras = _keras()
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, _output(_dense_stack(inputs, params), params, out_units))


def cnn_bn_model(params, input_shape, out_units):
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, params, keras.layers.Conv2D, 8, 3)
    x = keras.layers.MaxPooling2D(2)(x)
    x = _conv_bn(x, params, keras.layers.Conv2D, 16, 3)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def conv1d_bn_model(params, input_shape, out_units):
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, params, keras.layers.Conv1D, 8, 5)
    x = keras.layers.MaxPooling1D(2)(x)
    x = _conv_bn(x, params, keras.layers.Conv1D, 16, 5)
    x = keras.layers.GlobalMaxPooling1D()(x)  # a detector: was the pulse anywhere?
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def _rnn_model(layer_name):
    def build(params, input_shape, out_units):
        keras = _keras()
        inputs = keras.Input(input_shape)
        x = _recurrent(getattr(keras.layers, layer_name), params, 16)(inputs)
        x = _dense_stack(_dropout(x, params), params)
        return keras.Model(inputs, _output(x, params, out_units))

    return build


def embedding_model(params, input_shape, out_units):
    keras = _keras()
    inputs = keras.Input(input_shape, dtype="int32")
    x = keras.layers.Embedding(50, 8, embeddings_regularizer=_regularizer(params))(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def residual_model(params, input_shape, out_units, blocks=2, width=16):
    """A stem, then blocks x = x + Dense(Dense(LayerNorm(x))), then the head."""
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = _hidden(keras.layers.Dense, params, width)(inputs)
    for _ in range(blocks):
        r = keras.layers.LayerNormalization()(x)
        r = _dropout(_hidden(keras.layers.Dense, params, 2 * width)(r), params)
        r = keras.layers.Dense(width, kernel_regularizer=_regularizer(params))(r)
        x = keras.layers.Add()([x, r])
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def autoencoder_model(params, input_shape, out_units, code_width=4):
    """Encoder stack -> linear code -> decoder stack -> output (the non-differentiable op,
    when set, sits on the code: everything below it gets no gradient)."""
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = _dense_stack(inputs, params)
    x = keras.layers.Dense(
        params["bottleneck"] or code_width, kernel_regularizer=_regularizer(params)
    )(x)
    x = _dense_stack(_non_differentiable(x, params), params)
    outputs = keras.layers.Dense(
        out_units, activation=params["output_activation"], kernel_regularizer=_regularizer(params)
    )(x)
    return keras.Model(inputs, outputs)


def conv_residual_model(params, input_shape, out_units, filters=12):
    """A convolutional stem, two residual blocks x = x + Conv(Conv(x)) without normalization,
    global average pooling, then the head."""
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = _hidden(keras.layers.Conv2D, params, filters, 3, padding="same")(inputs)
    for _ in range(2):
        r = _hidden(keras.layers.Conv2D, params, filters, 3, padding="same")(x)
        r = keras.layers.Conv2D(
            filters, 3, padding="same", kernel_regularizer=_regularizer(params)
        )(_dropout(r, params))
        x = keras.layers.Add()([x, r])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def image_autoencoder_model(params, input_shape, out_units):
    """Dense autoencoder 100-64-16-64-100 on flattened images."""
    return autoencoder_model(params, input_shape, out_units, code_width=16)


def gru_tokens_model(params, input_shape, out_units):
    """Embedding(60, 16) -> GRU(24) -> Dense head, on token ids."""
    keras = _keras()
    inputs = keras.Input(input_shape, dtype="int32")
    x = keras.layers.Embedding(60, 16, embeddings_regularizer=_regularizer(params))(inputs)
    x = _recurrent(keras.layers.GRU, params, 24)(x)
    x = _dense_stack(_dropout(x, params), params)
    return keras.Model(inputs, _output(x, params, out_units))


def conv_autoencoder_model(params, input_shape, out_units, code_width=8):
    """Strided Conv2D 12x12 -> 6x6x8 -> 3x3x16 -> Dense code -> Dense 3x3x16 ->
    Conv2DTranspose back to 12x12 (the non-differentiable op, when set, sits on the code)."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = _hidden(layers.Conv2D, params, 8, 3, strides=2, padding="same")(inputs)
    x = _hidden(layers.Conv2D, params, 16, 3, strides=2, padding="same")(x)
    x = layers.Flatten()(_dropout(x, params))
    code = layers.Dense(params["bottleneck"] or code_width, kernel_regularizer=_regularizer(params))
    x = _non_differentiable(code(x), params)
    x = layers.Reshape((3, 3, 16))(_hidden(layers.Dense, params, 3 * 3 * 16)(x))
    x = _hidden(layers.Conv2DTranspose, params, 8, 3, strides=2, padding="same")(x)
    outputs = layers.Conv2DTranspose(
        input_shape[-1],
        3,
        strides=2,
        padding="same",
        activation=params["output_activation"],
        kernel_regularizer=_regularizer(params),
    )(x)
    return keras.Model(inputs, outputs)


def attention_model(params, input_shape, out_units, width=16):
    """Token embedding, one transformer encoder block (self-attention, then a GELU
    feed-forward layer, each residual with LayerNormalization), average pooling, the head."""
    keras = _keras()
    inputs = keras.Input(input_shape, dtype="int32")
    x = keras.layers.Embedding(60, width, embeddings_regularizer=_regularizer(params))(inputs)
    attended = keras.layers.MultiHeadAttention(2, width // 2)(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, _dropout(attended, params)]))
    r = _hidden(keras.layers.Dense, params, 2 * width)(x)
    r = keras.layers.Dense(width, kernel_regularizer=_regularizer(params))(_dropout(r, params))
    x = keras.layers.LayerNormalization()(keras.layers.Add()([x, r]))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def plain_cnn_model(params, input_shape, out_units):
    """Conv-ReLU, max pooling, Conv-ReLU, global average pooling, the head (no
    normalization, no skip connections)."""
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = _dropout(_hidden(keras.layers.Conv2D, params, 8, 3, padding="same")(inputs), params)
    x = keras.layers.MaxPooling2D(2)(x)
    x = _dropout(_hidden(keras.layers.Conv2D, params, 16, 3, padding="same")(x), params)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def bn_mlp_model(params, input_shape, out_units, widths=(64, 64, 32)):
    """Dense (no bias) -> BatchNormalization -> activation, three times, then the head: the
    usual tabular network with batch normalization."""
    keras = _keras()
    inputs = keras.Input(input_shape)
    x = inputs
    for width in widths:
        x = _normalized(keras.layers.Dense(width, **_unbiased(params))(x), params)
    return keras.Model(inputs, _output(_dense_stack(x, params), params, out_units))


def relu_autoencoder_model(params, input_shape, out_units):
    """Dense autoencoder with a 3-unit code (hidden activation from params)."""
    return autoencoder_model(params, input_shape, out_units, code_width=3)


BASES = {
    base.name: base
    for base in [
        Base(
            "tabular_mlp",
            "dev",
            "MLP 8-32-32-4 on tabular features, quadrant classes",
            CLASSIFICATION,
            tabular_data,
            mlp_model,
            {"head_depth": 2, "epochs": 10},
            classes=4,
        ),
        Base(
            "cnn_bn",
            "dev",
            "CNN conv-BN-ReLU x2 + GAP on 10x10 shape images",
            CLASSIFICATION,
            shape_images,
            cnn_bn_model,
            {"learning_rate": 3e-3, "epochs": 10, "head_width": 16},
            classes=3,
            batchnorm=True,
        ),
        Base(
            "lstm_seq",
            "dev",
            "LSTM(16) + Dense on sequences, class = tertile of a running sum",
            CLASSIFICATION,
            sum_sequences,
            _rnn_model("LSTM"),
            {"learning_rate": 1e-2, "epochs": 10},
            classes=3,
            recurrent=True,
        ),
        Base(
            "embedding_pool",
            "dev",
            "Embedding + GlobalAveragePooling1D + Dense on token-id texts, 3 topics",
            CLASSIFICATION,
            topic_texts,
            embedding_model,
            {"epochs": 7},
            classes=3,
            tokens=True,
        ),
        Base(
            "tape_mlp",
            "dev",
            "MLP trained by a custom tf.GradientTape loop with Recorder, 3 concentric rings",
            CLASSIFICATION,
            ring_points,
            mlp_model,
            {"learning_rate": 1e-2, "lr_decay": True, "head_depth": 2, "epochs": 10},
            classes=3,
            custom_loop=True,
        ),
        Base(
            "regression_tanh",
            "test",
            "tanh MLP 6-32-32-1 regression of a smooth function plus noise (MSE, RMSprop)",
            REGRESSION,
            smooth_regression,
            mlp_model,
            {
                "optimizer": "rmsprop",
                "hidden_activation": "tanh",
                "head_depth": 2,
                "epochs": 12,
            },
        ),
        Base(
            "residual_ln",
            "test",
            "residual MLP (Add + LayerNormalization blocks, AdamW), angular-sector classes",
            CLASSIFICATION,
            sector_classes,
            residual_model,
            {
                "optimizer": "adamw",
                "learning_rate": 1e-2,
                "lr_decay": True,
                "head_depth": 0,
                "epochs": 8,
            },
            classes=4,
        ),
        Base(
            "autoencoder",
            "test",
            "dense autoencoder 12-32-4-32-12 on a 2-D manifold (reconstruction MSE)",
            RECONSTRUCTION,
            manifold_points,
            autoencoder_model,
            {"epochs": 10},
        ),
        Base(
            "gru_seq",
            "test",
            "GRU(16) + Dense on sequences, class = where the bump is",
            CLASSIFICATION,
            bump_sequences,
            _rnn_model("GRU"),
            {"epochs": 8},
            classes=3,
            recurrent=True,
        ),
        Base(
            "conv1d_bn",
            "test",
            "Conv1D-BN-ReLU x2 + global max pooling on noisy pulses of three shapes",
            CLASSIFICATION,
            pulse_signals,
            conv1d_bn_model,
            {"learning_rate": 1e-2, "lr_decay": True, "epochs": 8},
            classes=3,
            batchnorm=True,
        ),
        Base(
            "regression_sgd",
            "dev",
            "ReLU MLP 10-64-64-1 regression of kinks and steps (MSE, SGD with momentum 0.9)",
            REGRESSION,
            piecewise_regression,
            mlp_model,
            {
                "optimizer": "sgd",
                "learning_rate": 1e-2,
                "head_depth": 2,
                "head_width": 64,
                "epochs": 12,
            },
        ),
        Base(
            "conv_residual",
            "dev",
            "CNN with residual conv blocks and no normalization, GAP, on 10x10 shape images",
            CLASSIFICATION,
            shape_images,
            conv_residual_model,
            {"learning_rate": 3e-3, "epochs": 10, "head_width": 16},
            classes=3,
        ),
        Base(
            "image_ae_tanh",
            "dev",
            "tanh dense autoencoder 100-64-16-64-100 on flattened shape images (MSE)",
            RECONSTRUCTION,
            flat_shape_images,
            image_autoencoder_model,
            {"hidden_activation": "tanh", "head_width": 64, "learning_rate": 2e-3, "epochs": 12},
            unit_targets=True,
        ),
        Base(
            "simple_rnn_seq",
            "dev",
            "SimpleRNN(16) + Dense on sequences, class = trend of a feature between halves",
            CLASSIFICATION,
            sign_sequences,
            _rnn_model("SimpleRNN"),
            {"learning_rate": 5e-3, "epochs": 10},
            classes=3,
            recurrent=True,
        ),
    ]
}


# ----------------------------------------------------------------- data with the hooks


@dataclasses.dataclass
class Data:
    """One training's arrays, after the data hooks; `truth_val` is what the score compares
    predictions with: the real validation labels (or targets) whatever the hooks did."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    truth_val: np.ndarray
    batch_size: int

    @property
    def steps_per_epoch(self):
        return math.ceil(len(self.x_train) / self.batch_size)


def make_data(base, params, rng):
    x, y = base.make_data(rng)
    n_val = int(len(x) * VALIDATION_FRACTION)
    x_train, x_val = x[n_val:], x[:n_val]
    n_train = max(1, int(round(len(x_train) * params["train_fraction"])))
    x_train = x_train[:n_train]
    if not base.tokens:
        x_train = x_train * np.float32(params["input_scale"]) + np.float32(params["input_shift"])
        x_val = x_val * np.float32(params["input_scale"]) + np.float32(params["input_shift"])
    if params["nan_rows"]:
        rows = rng.choice(len(x_train), params["nan_rows"], replace=False)
        x_train.reshape(len(x_train), -1)[rows, 0] = np.nan  # a missing value read as NaN
    if base.task == RECONSTRUCTION:
        return Data(x_train, x_train, x_val, x_val, x_val, params["batch_size"])
    y_train, y_val = y[n_val:][:n_train], y[:n_val]
    truth_val = y_val
    if params["labels"] == "shuffled":  # the labels lost their pairing with the inputs
        y_train, y_val = rng.permutation(y_train), rng.permutation(y_val)
    elif params["labels"] == "constant":  # a label column read as all zeros
        y_train, y_val = np.zeros_like(y_train), np.zeros_like(y_val)
    elif params["labels"] == "off_by_one":  # classes numbered 1..K instead of 0..K-1
        y_train, y_val = y_train + 1, y_val + 1
    if params["label_smoothing"]:
        eye = np.eye(base.classes, dtype="float32")
        y_train, y_val = eye[y_train], eye[y_val]
    return Data(x_train, y_train, x_val, y_val, truth_val, params["batch_size"])


# ----------------------------------------------------------------- training


def _learning_rate(params, total_steps):
    """The rate, or a schedule: cosine decay to LR_DECAY_FLOOR of it over the run where the base
    decays it, times the jump's factor from the jump's step on where an operator set one."""
    rate, decay, jump = params["learning_rate"], params["lr_decay"], params["lr_jump"]
    if not decay and not jump:
        return rate
    keras = _keras()
    ops = keras.ops

    class RateSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = ops.cast(step, "float32")
            value = ops.convert_to_tensor(rate, "float32")
            if decay:
                progress = ops.minimum(step / total_steps, 1.0)
                cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
                value = value * (LR_DECAY_FLOOR + (1.0 - LR_DECAY_FLOOR) * cosine)
            if jump:
                at, factor = jump
                value = ops.where(step >= int(at * total_steps), value * factor, value)
            return value

        def get_config(self):
            return {"learning_rate": rate, "decay": decay, "jump": jump, "steps": total_steps}

    return RateSchedule()


def _optimizer(params, total_steps):
    keras = _keras()
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": lambda rate: keras.optimizers.SGD(rate, momentum=0.9),
    }
    return optimizers[params["optimizer"]](_learning_rate(params, total_steps))


def _loss(base, params):
    keras = _keras()
    if base.task != CLASSIFICATION:
        return keras.losses.MeanSquaredError()
    if params["label_smoothing"]:
        return keras.losses.CategoricalCrossentropy(
            from_logits=params["from_logits"], label_smoothing=params["label_smoothing"]
        )
    return keras.losses.SparseCategoricalCrossentropy(from_logits=params["from_logits"])


def _history(history):
    return {key: [float(v) for v in values] for key, values in history.items()}


class _FirstLoss:
    """Keras callback (built lazily) keeping the loss of the very first batch: the loss
    before training, against which a base's improvement is measured."""

    @staticmethod
    def build():
        keras = _keras()

        class FirstLoss(keras.callbacks.Callback):
            loss = float("nan")

            def on_train_batch_end(self, batch, logs=None):
                if self.model.optimizer.iterations.numpy() == 1:
                    self.loss = float((logs or {}).get("loss", float("nan")))

        return FirstLoss()


def _fit(base, params, data, model, logdir):
    from tb_plateau.summaries import PlateauCallback

    model.compile(
        optimizer=_optimizer(params, params["epochs"] * data.steps_per_epoch),
        loss=_loss(base, params),
        metrics=["accuracy"] if base.task == CLASSIFICATION else None,
        jit_compile=params["jit_compile"],
    )
    first = _FirstLoss.build()
    history = model.fit(
        data.x_train,
        data.y_train,
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        validation_data=(data.x_val, data.y_val),
        shuffle=True,
        verbose=0,
        callbacks=[first, PlateauCallback(logdir, every_n_steps=EVERY_N_STEPS)],
    )
    return first.loss, _history(history.history)


def _custom_loop(base, params, data, model, logdir, rng):
    """The loop of the README's "Custom tf.GradientTape loops", with validation each epoch."""
    import tensorflow as tf

    from tb_plateau.summaries import Recorder

    loss_fn = _loss(base, params)
    optimizer = _optimizer(params, params["epochs"] * data.steps_per_epoch)

    @tf.function(jit_compile=params["jit_compile"] is True, reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred) + tf.add_n([0.0] + model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, grads, y_pred

    @tf.function(jit_compile=params["jit_compile"] is True)
    def val_step(x, y):
        y_pred = model(x, training=False)
        return loss_fn(y, y_pred), y_pred

    def accuracy(y, y_pred):
        labels = np.argmax(y, -1) if params["label_smoothing"] else y
        return float(np.mean(np.argmax(y_pred, -1) == labels))

    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    first_loss = float("nan")
    step = 0
    n, batch = len(data.x_train), params["batch_size"]
    with Recorder(logdir, model, EVERY_N_STEPS, optimizer=optimizer, loss=loss_fn) as recorder:
        for _ in range(params["epochs"]):
            order = rng.permutation(n)
            losses, hits = [], []
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                x, y = data.x_train[idx], data.y_train[idx]
                loss, grads, y_pred = train_step(x, y)
                recorder.record(step, loss, grads, x=x, y=y, y_pred=y_pred)
                losses.append(float(loss))
                hits.append(accuracy(y, y_pred.numpy()))
                if step == 0:
                    first_loss = losses[0]
                step += 1
            val_loss, val_pred = val_step(data.x_val, data.y_val)
            epoch = {
                "loss": float(np.mean(losses)),
                "accuracy": float(np.mean(hits)),
                "val_loss": float(val_loss),
                "val_accuracy": accuracy(data.y_val, val_pred.numpy()),
            }
            recorder.record_epoch(step, epoch)
            for key, value in epoch.items():
                history[key].append(value)
    return first_loss, history


def _score(base, model, data):
    pred = np.asarray(model(data.x_val, training=False), dtype=np.float64)
    return score_predictions(base, pred, data.truth_val)


def score_predictions(base, pred, truth):
    """(score, chance): validation accuracy against the real labels for classifiers, R^2
    against the real targets otherwise; NaN when the model's predictions are not finite."""
    if base.task == CLASSIFICATION:
        chance = float(np.bincount(truth).max() / len(truth))
        if not np.isfinite(pred).all():
            return float("nan"), chance
        return float(np.mean(np.argmax(pred, axis=-1) == truth)), chance
    if not np.isfinite(pred).all():
        return float("nan"), 0.0
    truth = truth.reshape(pred.shape)
    return float(1.0 - np.mean((pred - truth) ** 2) / np.var(truth)), 0.0


def train(base, params, seed, logdir):
    """Trains `base` with `params` into `logdir`; returns what `run` compares runs by.

    Seeds Python, numpy and TensorFlow (`keras.utils.set_random_seed`) and the data's own
    numpy Generator, so that a base and its mutants with the same seed start from the same
    data and, where the model is the same, the same weights.
    """
    if base.framework == "torch":
        from benchmarks.corpus import torch_bases

        return torch_bases.train(base, params, seed, logdir)
    keras = _keras()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    data = make_data(base, params, rng)
    out_units = base.classes if base.task == CLASSIFICATION else int(np.prod(data.y_val.shape[1:]))
    model = base.make_model(params, data.x_train.shape[1:], max(out_units, 1))
    start = time.perf_counter()
    try:
        if base.custom_loop:
            first_loss, history = _custom_loop(base, params, data, model, logdir, rng)
        else:
            first_loss, history = _fit(base, params, data, model, logdir)
        seconds = time.perf_counter() - start
        score, chance = _score(base, model, data)
    finally:
        keras.backend.clear_session()
    return run_result(base, seconds, first_loss, history, score, chance)


def run_result(base, seconds, first_loss, history, score, chance):
    """What `train` returns for `run` to compare runs by (any framework's base)."""
    return {
        "seconds": seconds,
        "initial_loss": first_loss,
        "final_loss": history["loss"][-1],
        "final_val_loss": history["val_loss"][-1],
        "final_val_accuracy": (history.get("val_accuracy") or [None])[-1],
        "score": score,
        "score_name": "accuracy" if base.task == CLASSIFICATION else "r2",
        "chance_score": chance,
        "history": history,
    }


def _add_torch_bases():
    from benchmarks.corpus import torch_bases  # defines its bases with this module's hooks

    BASES.update((base.name, base) for base in torch_bases.BASES)


_add_torch_bases()

# Bases added after the PyTorch ones (an operator may pick its variant by a base's place in
# BASES, see `operators._non_differentiable_fn`: earlier bases keep theirs).
BASES.update(
    (base.name, base)
    for base in [
        Base(
            "attention_tokens",
            "dev",
            "transformer encoder block (self-attention, GELU feed-forward, LayerNorm) on"
            " token-id texts, 4 topics",
            CLASSIFICATION,
            lambda rng: topic_texts(rng, n=2000, vocab=60, topics=4, words=5),
            attention_model,
            {"hidden_activation": "gelu", "learning_rate": 1e-3, "epochs": 5},
            classes=4,
            tokens=True,
        ),
        Base(
            "elu_blobs10",
            "dev",
            "ELU MLP 16-64-64-10 on ten classes of paired Gaussian blobs (RMSprop, batch 64)",
            CLASSIFICATION,
            blob_classes,
            mlp_model,
            {
                "optimizer": "rmsprop",
                "learning_rate": 3e-3,
                "hidden_activation": "elu",
                "head_depth": 2,
                "head_width": 64,
                "batch_size": 64,
                "epochs": 12,
            },
            classes=10,
        ),
        Base(
            "lstm_regression",
            "dev",
            "LSTM(16) + Dense regression of a decaying weighted sum over a sequence (MSE, Adam)",
            REGRESSION,
            decay_sequences,
            _rnn_model("LSTM"),
            {"learning_rate": 5e-3, "epochs": 8},
            recurrent=True,
        ),
        Base(
            "cnn_cosine",
            "dev",
            "plain CNN conv-ReLU x2 + GAP on stripe images, SGD with momentum and cosine decay",
            CLASSIFICATION,
            stripe_images,
            plain_cnn_model,
            {
                "optimizer": "sgd",
                "learning_rate": 3e-2,
                "lr_decay": True,
                "epochs": 10,
                "head_width": 16,
            },
            classes=3,
        ),
        Base(
            "bn_mlp6",
            "dev",
            "MLP Dense-BatchNorm-ReLU x3 on tabular features, six classes (Adam, batch 64)",
            CLASSIFICATION,
            six_class_tabular,
            bn_mlp_model,
            {"learning_rate": 2e-3, "batch_size": 64, "epochs": 8, "head_depth": 0},
            classes=6,
            batchnorm=True,
        ),
        Base(
            "relu_ae_roll",
            "dev",
            "ReLU dense autoencoder 16-48-3-48-16 on a swiss roll seen through 16 features",
            RECONSTRUCTION,
            roll_points,
            relu_autoencoder_model,
            {"head_width": 48, "learning_rate": 3e-3, "epochs": 12},
        ),
        Base(
            "multi_target",
            "dev",
            "MLP 8-64-64-3 regression of three noisy targets at once (MSE, Adam)",
            REGRESSION,
            three_targets,
            mlp_model,
            {"head_depth": 2, "head_width": 64, "learning_rate": 5e-3, "epochs": 12},
        ),
        Base(
            "sensor_ae",
            "dev",
            "ELU dense autoencoder 24-48-3-48-24 of sensor readings with one dominant hidden"
            " factor (MSE, Adam)",
            RECONSTRUCTION,
            sensor_factors,
            relu_autoencoder_model,
            {"hidden_activation": "elu", "head_width": 48, "learning_rate": 3e-3, "epochs": 12},
        ),
        Base(
            "gru_tokens",
            "dev",
            "Embedding + GRU(24) + Dense on token-id texts, 5 topics (Adam)",
            CLASSIFICATION,
            lambda rng: topic_texts(rng, n=4000, vocab=60, topics=5, words=5),
            gru_tokens_model,
            {"learning_rate": 3e-3, "epochs": 5},
            classes=5,
            tokens=True,
            recurrent=True,
        ),
        Base(
            "conv_ae_stripes",
            "dev",
            "strided-convolution autoencoder of 12x12 stripe images, 8-unit dense code,"
            " transposed convolutions back (sigmoid output, MSE, Adam)",
            RECONSTRUCTION,
            stripe_images,
            conv_autoencoder_model,
            {"learning_rate": 5e-3, "epochs": 20, "output_activation": "sigmoid"},
            unit_targets=True,
        ),
    ]
)
