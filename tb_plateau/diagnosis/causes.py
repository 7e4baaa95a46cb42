"""The cause ids, their titles and the fixes a user can paste: in one place.

The ids are a public contract (see DESIGN.md): the Plateau tab, the CLI's
``--json`` and users' scripts match on them. Detectors choose among these fixes
and may add a specific one (naming the user's layer or loss); they never invent
a cause id.
"""

import dataclasses
from typing import Tuple

CRITICAL = "critical"  # training cannot succeed as configured
WARNING = "warning"  # training is hampered
INFO = "info"  # worth knowing; not why the loss is stuck

SEVERITY_RANK = {INFO: 0, WARNING: 1, CRITICAL: 2}

NONFINITE = "nonfinite"
LR_TOO_HIGH = "lr_too_high"
LR_TOO_LOW = "lr_too_low"
EXPLODING_GRADIENTS = "exploding_gradients"
VANISHING_GRADIENTS = "vanishing_gradients"
DEAD_RELU = "dead_relu"
SATURATED_ACTIVATIONS = "saturated_activations"
UNNORMALIZED_INPUTS = "unnormalized_inputs"
LOSS_OUTPUT_MISMATCH = "loss_output_mismatch"
ZERO_GRADIENT = "zero_gradient"
BATCHNORM_MISUSE = "batchnorm_misuse"
INSUFFICIENT_CAPACITY = "insufficient_capacity"
NO_SIGNAL = "no_signal"
OVERFITTING = "overfitting"
NOT_CONVERGED = "not_converged"


@dataclasses.dataclass(frozen=True)
class Cause:
    id: str
    title: str  # the default one-line title; detectors may make it specific
    fixes: Tuple[str, ...]


_CAUSES = (
    Cause(
        NONFINITE,
        "NaN or Inf values appeared",
        (
            "# Find rows with NaN/Inf before training:\n"
            "import numpy as np\n"
            "bad = ~np.isfinite(x).all(axis=1) | ~np.isfinite(y).reshape(len(y), -1).all(axis=1)\n"
            "x, y = x[~bad], y[~bad]",
            "# Guard logs and divisions in custom code:\n"
            "loss = -tf.math.log(tf.clip_by_value(p, 1e-7, 1.0))",
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3, clipnorm=1.0)",
            "keras.callbacks.TerminateOnNaN()  # stop at once instead of training on NaN",
        ),
    ),
    Cause(
        LR_TOO_HIGH,
        "The learning rate is too high",
        (
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3)  # or 10x lower than now",
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3, clipnorm=1.0)",
            "keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=10_000,"
            " warmup_target=1e-3, warmup_steps=500)  # warm up instead of starting high",
        ),
    ),
    Cause(
        LR_TOO_LOW,
        "The learning rate is too low",
        (
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3)",
            "# Find a good rate: train a few hundred steps at each of 1e-4, 1e-3, 1e-2\n"
            "# and keep the largest that lowers the loss steadily.",
        ),
    ),
    Cause(
        EXPLODING_GRADIENTS,
        "Gradients explode",
        (
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3, clipnorm=1.0)",
            'keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")',
            "keras.layers.LayerNormalization()  # between the layers whose gradients grow",
        ),
    ),
    Cause(
        VANISHING_GRADIENTS,
        "Gradients vanish before they reach the first layers",
        (
            'keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")'
            "  # instead of sigmoid/tanh in hidden layers",
            "keras.layers.BatchNormalization()  # after each hidden Dense/Conv layer",
            "# Residual connections: x = keras.layers.Add()([x, block(x)])",
        ),
    ),
    Cause(
        DEAD_RELU,
        "ReLU units are dead: they never activate",
        (
            'keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal",'
            ' bias_initializer="zeros")',
            'keras.layers.LeakyReLU(negative_slope=0.1)  # or activation="gelu"',
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3)  # a lower rate",
        ),
    ),
    Cause(
        SATURATED_ACTIVATIONS,
        "Sigmoid/tanh units are saturated at their limits",
        (
            'keras.layers.Dense(64, activation="tanh", kernel_initializer="glorot_uniform")',
            'keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")',
            "keras.layers.BatchNormalization()  # before the saturating activation",
        ),
    ),
    Cause(
        UNNORMALIZED_INPUTS,
        "The input features are not normalized",
        (
            "norm = keras.layers.Normalization()\n"
            "norm.adapt(x_train)\n"
            "model = keras.Sequential([keras.Input(x_train.shape[1:]), norm, ...])",
            "keras.layers.Rescaling(1.0 / 255)  # for 0-255 pixels, as the first layer",
        ),
    ),
    Cause(
        LOSS_OUTPUT_MISMATCH,
        "The loss does not fit the output layer or the labels",
        (
            "keras.layers.Dense(num_classes)  # logits, with\n"
            "loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
            "keras.layers.Dense(1)  # one logit, with\n"
            "loss = keras.losses.BinaryCrossentropy(from_logits=True)",
            'keras.layers.Dense(1)  # linear output for regression, with loss="mse"',
        ),
    ),
    Cause(
        ZERO_GRADIENT,
        "Weights get exactly zero or no gradient",
        (
            "# Replace non-differentiable ops (sign, round, argmax, thresholds, casts) by\n"
            "# smooth ones: tf.tanh(k * x) for sign, tf.sigmoid(k * (x - t)) for x > t.",
            "# Check that every layer is connected to the loss and not behind\n"
            "# tf.stop_gradient:\n"
            "with tf.GradientTape() as tape:\n"
            "    loss = loss_fn(y, model(x, training=True))\n"
            "print([v.path for v, g in zip(model.trainable_variables,\n"
            "       tape.gradient(loss, model.trainable_variables)) if g is None])",
        ),
    ),
    Cause(
        BATCHNORM_MISUSE,
        "Batch normalization statistics are unreliable",
        (
            "model.fit(x, y, batch_size=32)  # batch norm needs batches of 16 or more",
            "keras.layers.LayerNormalization()  # instead of BatchNormalization for small batches",
            "keras.layers.BatchNormalization(momentum=0.9)  # moving statistics that catch up",
        ),
    ),
    Cause(
        INSUFFICIENT_CAPACITY,
        "The model is too small for the task",
        (
            'keras.layers.Dense(128, activation="relu")  # wider hidden layers',
            "# Add hidden layers, and remove bottlenecks narrower than the output.",
        ),
    ),
    Cause(
        NO_SIGNAL,
        "The labels carry no learnable information",
        (
            "# Check that x and y are still aligned (shuffled together, same order):\n"
            "print(x[:5], y[:5])",
            "import numpy as np\n"
            "print(np.unique(y, return_counts=True))  # constant or wrong labels?",
        ),
    ),
    Cause(
        OVERFITTING,
        "The model overfits: validation loss rises while training loss falls",
        (
            'keras.callbacks.EarlyStopping(monitor="val_loss", patience=3,'
            " restore_best_weights=True)",
            "keras.layers.Dropout(0.3)  # between hidden layers",
            'keras.layers.Dense(64, activation="relu",'
            " kernel_regularizer=keras.regularizers.L2(1e-4))",
        ),
    ),
    Cause(
        NOT_CONVERGED,
        "The loss was still falling when training stopped",
        (
            "model.fit(x, y, epochs=2 * epochs)  # train longer",
            'keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=3)',
        ),
    ),
)

CAUSES = {cause.id: cause for cause in _CAUSES}
CAUSE_IDS = tuple(cause.id for cause in _CAUSES)


def title(cause_id):
    return CAUSES[cause_id].title


def fixes(cause_id):
    return list(CAUSES[cause_id].fixes)
