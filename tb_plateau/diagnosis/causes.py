"""The cause ids, their titles and the fixes a user can paste: in one place.

The ids are a public contract (changed only with a schema version bump): the tab, the CLI's
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
OVER_REGULARIZATION = "over_regularization"
# Not a cause: the loss curve says the training is stuck and no check named
# why. Reported so that a stuck run is never called healthy.
UNEXPLAINED_PLATEAU = "unexplained_plateau"

# The version of the report's schema (`run_report`). 2 added the cause ids
# `over_regularization` and `unexplained_plateau`, and `schema_version` itself;
# 3 moved what could not be read out of `notes` into `problems`, and added
# `status`, `loss_series` and `drawing`.
SCHEMA_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Cause:
    id: str
    title: str  # the default one-line title; detectors may make it specific
    fixes: Tuple[str, ...]  # Keras code, for runs recorded from Keras
    # The same advice in words any framework's user can act on (runs logged
    # from PyTorch or an unknown writer never get Keras code).
    neutral_fixes: Tuple[str, ...] = ()


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
        (
            "Drop or impute the rows of the training data that hold NaN/Inf before training.",
            "Guard logs, divisions and square roots in custom code (clip their argument away from"
            " 0).",
            "Clip the gradient norm (e.g. to 1.0) and stop the run at the first NaN loss.",
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
        (
            "Lower the learning rate about 10x.",
            "Clip the gradient norm (e.g. to 1.0) so that no single step can be huge.",
            "Warm the learning rate up over the first few hundred steps instead of starting high.",
        ),
    ),
    Cause(
        LR_TOO_LOW,
        "The learning rate is too low",
        (
            "optimizer = keras.optimizers.Adam(learning_rate=1e-3)  # or 10x higher than now",
            "# Find a good rate: train a few hundred steps at each of 1e-4, 1e-3, 1e-2\n"
            "# and keep the largest that lowers the loss steadily.",
        ),
        (
            "Raise the learning rate about 10x.",
            "Run a learning-rate range test: a few hundred steps at each of several rates 10x "
            "apart, keeping the largest that lowers the loss steadily.",
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
        (
            "Clip the gradient norm (e.g. to 1.0).",
            "Initialize ReLU layers with He initialization (variance 2 / fan-in), others with "
            "Glorot.",
            "Add normalization (LayerNorm/BatchNorm) between the layers whose gradients grow.",
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
        (
            "Use ReLU-family activations with He initialization in hidden layers instead of "
            "sigmoid/tanh.",
            "Add normalization after each hidden layer.",
            "Add residual connections (x + block(x)) around deep stacks.",
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
        (
            "Initialize ReLU layers with He initialization and zero biases.",
            "Use LeakyReLU or GELU, which pass gradient below zero.",
            "Lower the learning rate: large steps push units where they never fire.",
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
        (
            "Initialize sigmoid/tanh layers with Glorot initialization and normalize their inputs.",
            "Use ReLU-family activations in hidden layers.",
            "Add normalization before the saturating activation.",
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
        (
            "Standardize each input feature to mean 0 and std 1 with statistics of the training "
            "set (or scale 0-255 pixels by 1/255).",
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
        (
            "Output raw logits and use the cross-entropy that applies softmax/sigmoid itself "
            "(from logits).",
            "Use one output unit per class for multi-class cross-entropy, and a linear output for"
            " regression.",
            "Check that the labels are in the range the loss expects (class ids 0..C-1, 0/1 for "
            "binary cross-entropy).",
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
        (
            "Replace non-differentiable ops (sign, round, argmax, thresholds, casts) by smooth "
            "ones.",
            "Check that every trainable layer is connected to the loss and not behind a stop-"
            "gradient/detach.",
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
        (
            "Train batch normalization on batches of 16 or more, or use LayerNorm or GroupNorm "
            "for small batches.",
            "Evaluate in inference mode, and let frozen batch-norm layers keep statistics of the "
            "data they see.",
        ),
    ),
    Cause(
        INSUFFICIENT_CAPACITY,
        "The model is too small for the task",
        (
            'keras.layers.Dense(128, activation="relu")  # wider hidden layers',
            "# Add hidden layers, and remove bottlenecks narrower than the output.",
        ),
        (
            "Widen the hidden layers and remove bottlenecks narrower than the output.",
            "Add hidden layers.",
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
        (
            "Check that inputs and labels are still aligned (shuffled together, same order): "
            "print a few pairs.",
            "Count the labels per class: constant or wrong labels?",
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
        (
            "Stop early on the validation loss and keep the best weights.",
            "Add dropout or weight decay, or more training data.",
        ),
    ),
    Cause(
        NOT_CONVERGED,
        "The loss was still falling when training stopped",
        (
            "model.fit(x, y, epochs=2 * epochs)  # train longer",
            'keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=3)',
        ),
        (
            "Train for more epochs.",
            "Lower the learning rate when the loss levels off instead of stopping.",
        ),
    ),
    Cause(
        OVER_REGULARIZATION,
        "Regularization is too strong for the model to fit",
        (
            'keras.layers.Dense(64, activation="relu",'
            " kernel_regularizer=keras.regularizers.L2(1e-4))  # 1e-5 to 1e-3 is usual",
            "keras.layers.Dropout(0.2)  # 0.1-0.5 between hidden layers",
            "loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)",
        ),
        (
            "Lower the weight decay / L2 coefficient (1e-5 to 1e-3 is usual).",
            "Lower the dropout rate (0.1-0.5 between hidden layers).",
            "Lower label smoothing to about 0.1.",
        ),
    ),
    Cause(
        UNEXPLAINED_PLATEAU,
        "The loss is stuck; no cause was identified",
        (
            "# Check the step size first: train a few hundred steps at each of 1e-4, 1e-3,"
            " 1e-2\n# and keep the largest that lowers the loss steadily.",
            "# Check the data: can the model overfit 32 samples?\n"
            "model.fit(x[:32], y[:32], epochs=200, verbose=0)",
        ),
        (
            "Run a learning-rate range test: a few hundred steps at each of several rates 10x"
            " apart.",
            "Check that the model can overfit a handful of samples; if not, the model, loss or"
            " labels are wrong.",
        ),
    ),
)

CAUSES = {cause.id: cause for cause in _CAUSES}
CAUSE_IDS = tuple(cause.id for cause in _CAUSES)


# What each cause can produce: the findings that may be its consequences
# (see `ranking`). A finding explained by a root present in the same
# run is shown under it. Edges in both directions (lr_too_high and
# exploding_gradients) are decided by time: what showed first is the root.
# A learning rate is never a consequence of the data, a bottleneck in the
# architecture never a consequence of anything, and no cause is a consequence
# of a symptom that only describes the loss curve.
# The title of the loss-output mismatch whose regression targets lie beyond what the output
# activation produces (`configuration`), which `ranking` tells apart from the others.
TARGETS_OUT_OF_REACH = "The output activation cannot reach the targets"

PRODUCES = {
    LOSS_OUTPUT_MISMATCH: {
        NO_SIGNAL,
        ZERO_GRADIENT,
        SATURATED_ACTIVATIONS,
        VANISHING_GRADIENTS,
        DEAD_RELU,
        NOT_CONVERGED,
        NONFINITE,
        LR_TOO_LOW,
        UNEXPLAINED_PLATEAU,
    },
    UNNORMALIZED_INPUTS: {
        LOSS_OUTPUT_MISMATCH,  # an autoencoder's targets out of its output's reach
        DEAD_RELU,
        SATURATED_ACTIVATIONS,
        EXPLODING_GRADIENTS,
        VANISHING_GRADIENTS,
        ZERO_GRADIENT,
        NO_SIGNAL,
        NONFINITE,
        NOT_CONVERGED,
        BATCHNORM_MISUSE,
        UNEXPLAINED_PLATEAU,
    },
    BATCHNORM_MISUSE: {
        ZERO_GRADIENT,
        OVERFITTING,
        NO_SIGNAL,
        NOT_CONVERGED,
        VANISHING_GRADIENTS,
        UNEXPLAINED_PLATEAU,
    },
    LR_TOO_HIGH: {
        EXPLODING_GRADIENTS,
        NONFINITE,
        DEAD_RELU,
        SATURATED_ACTIVATIONS,
        ZERO_GRADIENT,
        NO_SIGNAL,
        VANISHING_GRADIENTS,
        NOT_CONVERGED,
        UNEXPLAINED_PLATEAU,
    },
    # Weights initialized too wide also make every step small beside them:
    # the update/weight ratio reads low without the rate being so.
    EXPLODING_GRADIENTS: {
        LR_TOO_LOW,
        NONFINITE,
        DEAD_RELU,
        SATURATED_ACTIVATIONS,
        ZERO_GRADIENT,
        NO_SIGNAL,
        LR_TOO_HIGH,
        NOT_CONVERGED,
        UNEXPLAINED_PLATEAU,
    },
    # Weights shrinking under a heavy penalty make each step large relative to
    # them: the update/weight ratio reads high without the rate being so.
    OVER_REGULARIZATION: {
        LR_TOO_HIGH,
        NO_SIGNAL,
        DEAD_RELU,
        VANISHING_GRADIENTS,
        ZERO_GRADIENT,
        LR_TOO_LOW,
        NOT_CONVERGED,
        SATURATED_ACTIVATIONS,
        UNEXPLAINED_PLATEAU,
    },
    # Weights initialized too large pin bounded units at their limits, and the
    # gradient of those weights is large with them (decided in `ranking`).
    SATURATED_ACTIVATIONS: {
        EXPLODING_GRADIENTS,
        VANISHING_GRADIENTS,
        ZERO_GRADIENT,
        NO_SIGNAL,
        NOT_CONVERGED,
        LR_TOO_LOW,
        UNEXPLAINED_PLATEAU,
    },
    DEAD_RELU: {
        ZERO_GRADIENT,
        VANISHING_GRADIENTS,
        NO_SIGNAL,
        NOT_CONVERGED,
        LR_TOO_LOW,
        UNEXPLAINED_PLATEAU,
    },
    # A signal that fades layer by layer from the first record (a too-narrow
    # initialization) leaves units whose sign only their bias sets.
    VANISHING_GRADIENTS: {
        NO_SIGNAL,
        NOT_CONVERGED,
        LR_TOO_LOW,
        ZERO_GRADIENT,
        DEAD_RELU,
        UNEXPLAINED_PLATEAU,
    },
    ZERO_GRADIENT: {
        NO_SIGNAL,
        NOT_CONVERGED,
        LR_TOO_LOW,
        UNEXPLAINED_PLATEAU,
    },
    LR_TOO_LOW: {NOT_CONVERGED, NO_SIGNAL, UNEXPLAINED_PLATEAU},
    # Labels that carry nothing drive the network to a constant output: its
    # units die or saturate and its gradients fade.
    NO_SIGNAL: {
        OVERFITTING,
        NOT_CONVERGED,
        DEAD_RELU,
        VANISHING_GRADIENTS,
        ZERO_GRADIENT,
        SATURATED_ACTIVATIONS,
        UNEXPLAINED_PLATEAU,
    },
    # A layer too narrow for what it must carry is driven to its extremes.
    INSUFFICIENT_CAPACITY: {
        NOT_CONVERGED,
        SATURATED_ACTIVATIONS,
        DEAD_RELU,
        UNEXPLAINED_PLATEAU,
    },
    NONFINITE: set(),  # NaN in the data poisons everything: see ranking
    OVERFITTING: set(),
    NOT_CONVERGED: set(),
    UNEXPLAINED_PLATEAU: set(),
}


@dataclasses.dataclass(frozen=True)
class Drawing:
    """What the tab draws for a finding of a cause (the report carries it: see `drawing`)."""

    # Chart kinds, when the finding's evidence names no series: "loss" (the
    # loss curves), "ratio" (update/weight ratios), "grad" (gradient norms per
    # layer), "activations" (dead and saturated units), "config" (the
    # configuration record).
    charts: Tuple[str, ...]
    # What the shaded span from the finding's first step to the end is called.
    region: str = ""
    # The sections of the configuration record its check reads, and whether the
    # output layer's row is one of them.
    config_sections: Tuple[str, ...] = ()
    output_layer: bool = False


DRAWINGS = {
    NONFINITE: Drawing(("loss",), "NaN/Inf"),
    LR_TOO_HIGH: Drawing(("loss", "ratio"), "unstable", ("optimizer",)),
    LR_TOO_LOW: Drawing(("ratio", "loss"), "creeping", ("optimizer",)),
    EXPLODING_GRADIENTS: Drawing(("grad",), "exploding"),
    VANISHING_GRADIENTS: Drawing(("grad",), "plateau"),
    ZERO_GRADIENT: Drawing(("grad",), "plateau"),
    DEAD_RELU: Drawing(("activations",), "plateau"),
    SATURATED_ACTIVATIONS: Drawing(("activations",), "plateau"),
    LOSS_OUTPUT_MISMATCH: Drawing(("config",), "plateau", ("loss", "model", "data"), True),
    UNNORMALIZED_INPUTS: Drawing(("config",), "plateau", ("data",)),
    INSUFFICIENT_CAPACITY: Drawing(("loss",), "plateau", ("model", "layers")),
    NO_SIGNAL: Drawing(("loss",), "plateau", ("data", "loss")),
    OVERFITTING: Drawing(("loss",), "overfitting"),
    NOT_CONVERGED: Drawing(("loss",), "still falling"),
    BATCHNORM_MISUSE: Drawing(("loss",), "plateau", ("layers", "batch_size")),
    OVER_REGULARIZATION: Drawing(("loss", "config"), "plateau", ("layers", "loss", "optimizer")),
    UNEXPLAINED_PLATEAU: Drawing(("loss",), "plateau"),
}


def drawing(cause_id):
    """The report's drawing of a cause, JSON-ready."""
    found = DRAWINGS[cause_id]
    return {
        "charts": list(found.charts),
        "region": found.region,
        "config_sections": list(found.config_sections),
        "output_layer": found.output_layer,
    }


def title(cause_id):
    return CAUSES[cause_id].title


# What each of a cause's fixes acts on, in the order of every framework's table. A finding
# whose evidence names `fix_kinds` (what it found) keeps the fixes of those kinds only: an
# L2 penalty gets the penalty fix, weights initialized too wide the initializer.
FIX_KINDS = {
    EXPLODING_GRADIENTS: ("clip", "init", "normalize"),
    OVER_REGULARIZATION: ("penalty", "dropout", "label_smoothing"),
}


def narrow_fixes(finding):
    """Keeps the fixes of the kinds the finding's evidence names (`fix_kinds`), if any."""
    kinds = finding.evidence.get("fix_kinds")
    table = FIX_KINDS.get(finding.cause)
    if not kinds or table is None or len(finding.fixes) != len(table):
        return
    kept = [fix for fix, kind in zip(finding.fixes, table) if kind in kinds]
    if kept:
        finding.fixes = kept


def fixes(cause_id):
    return list(CAUSES[cause_id].fixes)


def neutral_fixes(cause_id):
    return list(CAUSES[cause_id].neutral_fixes)


# The fixes as PyTorch code, for runs recorded with `tb_plateau.summaries.torch`.
TORCH_FIXES = {
    NONFINITE: (
        "# Find rows with NaN/Inf before training:\n"
        "bad = ~torch.isfinite(x).all(dim=1)\n"
        "x, y = x[~bad], y[~bad]",
        "torch.autograd.set_detect_anomaly(True)  # names the op that made the first NaN"
        " (slow: debugging only)",
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"
        "  # between backward() and step()",
        "loss = -torch.log(p.clamp_min(1e-7))  # guard logs in custom code",
    ),
    LR_TOO_HIGH: (
        "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # or 10x lower than now",
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"
        "  # between backward() and step()",
        "scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01,"
        " total_iters=500)  # warm up instead of starting high",
    ),
    LR_TOO_LOW: (
        "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # or 10x higher than now",
        "# Find a good rate: train a few hundred steps at each of 1e-4, 1e-3, 1e-2\n"
        "# and keep the largest that lowers the loss steadily.",
    ),
    EXPLODING_GRADIENTS: (
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"
        "  # between backward() and step()",
        'nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # He init for ReLU layers',
        "nn.LayerNorm(features)  # between the layers whose gradients grow",
    ),
    VANISHING_GRADIENTS: (
        "nn.Linear(n, 64), nn.ReLU()  # instead of nn.Sigmoid/nn.Tanh in hidden layers",
        "nn.BatchNorm1d(64)  # after each hidden nn.Linear (nn.BatchNorm2d after nn.Conv2d)",
        "# Residual connections, in forward():\nx = x + self.block(x)",
    ),
    DEAD_RELU: (
        'nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")\nnn.init.zeros_(layer.bias)',
        "nn.LeakyReLU(0.1)  # or nn.GELU(): both pass gradient below zero",
        "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # a lower rate",
    ),
    SATURATED_ACTIVATIONS: (
        "nn.init.xavier_uniform_(layer.weight)  # Glorot init for tanh/sigmoid layers",
        "nn.ReLU()  # in hidden layers, with kaiming_normal_ init",
        "nn.BatchNorm1d(features)  # before the saturating activation",
    ),
    UNNORMALIZED_INPUTS: (
        "mean, std = x_train.mean(dim=0), x_train.std(dim=0)\n"
        "x_train = (x_train - mean) / std  # the same mean and std for validation data",
        "torchvision.transforms.Normalize(mean, std)  # for images, after ToTensor()",
    ),
    LOSS_OUTPUT_MISMATCH: (
        "nn.CrossEntropyLoss()  # takes raw logits: no nn.Softmax before it",
        "nn.BCEWithLogitsLoss()  # one logit per label: no nn.Sigmoid before it",
        "nn.Linear(hidden, 1)  # a linear output for regression, with nn.MSELoss()",
    ),
    ZERO_GRADIENT: (
        "# Replace non-differentiable ops (sign, round, argmax, thresholds, .long()) by\n"
        "# smooth ones: torch.tanh(k * x) for sign, torch.sigmoid(k * (x - t)) for x > t.",
        "# Find parameters that get no gradient (not connected to the loss, or behind\n"
        "# .detach()):\n"
        "loss.backward()\n"
        "print([n for n, p in model.named_parameters() if p.grad is None])",
    ),
    BATCHNORM_MISUSE: (
        "DataLoader(dataset, batch_size=32, drop_last=True)  # batch norm needs 16 or more",
        "nn.LayerNorm(features)  # or nn.GroupNorm(8, channels), for small batches",
        "model.train()  # before training: in eval mode batch norm never updates its statistics",
    ),
    INSUFFICIENT_CAPACITY: (
        "nn.Linear(n, 128), nn.ReLU()  # wider hidden layers",
        "# Add hidden layers, and remove bottlenecks narrower than the output.",
    ),
    NO_SIGNAL: (
        "# Check that inputs and labels are still aligned (shuffled together, same order):\n"
        "x, y = next(iter(loader))\n"
        "print(x[:5], y[:5])",
        "print(torch.unique(y_train, return_counts=True))  # constant or wrong labels?",
    ),
    OVERFITTING: (
        "# Early stopping: keep the weights of the epoch with the lowest validation loss\n"
        "if val_loss < best:\n"
        "    best, best_state = val_loss, copy.deepcopy(model.state_dict())",
        "nn.Dropout(0.3)  # between hidden layers",
        "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)",
    ),
    NOT_CONVERGED: (
        "for epoch in range(2 * epochs):  # train longer",
        "scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,"
        " patience=3)\nscheduler.step(val_loss)  # once per epoch",
    ),
    OVER_REGULARIZATION: (
        "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)"
        "  # 1e-5 to 1e-3 is usual",
        "nn.Dropout(0.2)  # 0.1-0.5 between hidden layers",
        "nn.CrossEntropyLoss(label_smoothing=0.1)",
    ),
    UNEXPLAINED_PLATEAU: (
        "# Check the step size first: train a few hundred steps at each of 1e-4, 1e-3,"
        " 1e-2\n# and keep the largest that lowers the loss steadily.",
        "# Check the data: can the model overfit 32 samples?\n"
        "x, y = x_train[:32], y_train[:32]\n"
        "for _ in range(200):\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()",
    ),
}
assert set(TORCH_FIXES) == set(CAUSES), "every cause has PyTorch fixes"


def torch_fixes(cause_id):
    return list(TORCH_FIXES[cause_id])
