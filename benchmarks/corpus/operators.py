"""Fault operators: the ways real trainings break, each with the cause it should be named as.

The operators come from published catalogues of real faults, so that the corpus measures the
faults people make rather than the ones the engine was written for:

* DeepCrime (Humbatova, Jahangirova, Tonella, ISSTA 2021): mutation operators distilled from
  real faults, e.g. HLR change learning rate, HNE change epochs, HBS change batch size, ACH
  change activation function, WCI change weights initialisation, WAB add bias, LCH change loss
  function, RAW add weights regularisation, RCD change dropout rate, TCL change labels, TRD
  remove a portion of the training data.
* DeepFD (Cao et al., ICSE 2022): fault classes of its benchmark of real faulty programs:
  learning rate, activation, loss, epochs, missing preprocessing (normalization).
* AutoTrainer (Zhang et al., ICSE 2021): training problems it detects and repairs: vanishing
  and exploding gradients, dying ReLU, oscillating loss, slow convergence.
* Humbatova et al.'s taxonomy of real faults (ICSE 2020) for what the mutation sets leave
  out: NaN in the data, wrong label encoding, BatchNormalization misuse.

Each operator changes entries of a base's params (`bases.DEFAULTS`), names the cause that
the run's evidence should show (per base where it depends on the base: a too-wide initializer
explodes ReLU layers but saturates tanh ones) and says how its harm is measured, so that the
runner counts a mutant only when it really hurt the training (DeepCrime's "killed" mutants).
"""

import dataclasses
from typing import Callable, Union

from benchmarks.corpus import bases

# How an operator's harm shows (see `run.effect`). A non-finite loss or prediction is harm
# under every measure.
LOSS = "loss"  # final training or validation loss above the base's, or the score below it
VAL_LOSS = "val_loss"  # the validation loss or the score (dropout inflates the training loss)
SCORE = "score"  # only the score: the operator changes what the loss measures (the labels,
# the loss function, a penalty added to it)
OVERFIT = "overfit"  # validation loss up from its best, or a wider train/validation gap
BY_CONSTRUCTION = "construction"  # fewer epochs: the harm is the training cut short

# The operators' settings, with the evidence each one aims at.
LR_UP = 100.0
LR_DOWN = 1e-3
LR_JUMP = (0.4, 500.0)  # [fraction of the run's steps, factor]
INPUT_SCALE = 1000.0  # raw values in the thousands (pixel sums, prices, counts)
INPUT_SHIFT = 300.0  # unit-scale features on a far offset (temperatures in Kelvin)
DEEP = 8  # hidden Dense layers of a "deep enough" stack
WIDE_STDDEV = 10.0  # RandomNormal stddev of a too-wide initializer
NARROW_STDDEV = 0.01  # ... and of a too-narrow one
NEGATIVE_BIAS = -5.0  # initial bias that keeps ReLU inputs below zero
SATURATING_BIAS = 4.0  # initial bias that pins tanh units near +1
SATURATING_RNN_STDDEV = 3.0  # RNN kernels that pin the gates and the cell's tanh
STRONG_L2 = 1.0
STRONG_DROPOUT = 0.9
STRONG_SMOOTHING = 0.95
NAN_ROWS = 8  # training rows with a NaN feature (about 1%)
SHORT_EPOCHS = 3
SHORT_LR_FACTOR = 1 / 3
SMALL_DATA_FRACTION = 0.06  # of the training samples kept: 30 to 60 samples
OVERFIT_EPOCHS_FACTOR = 4
OVERFIT_WIDTH = 256
TINY_BATCH = 2
TINY_BATCH_EPOCHS = 2  # batch size 2 is 16x the steps per epoch: cap the run's length


@dataclasses.dataclass(frozen=True)
class Operator:
    """One fault operator.

    Attributes:
      name: the operator's id, a directory name in the corpus.
      cause: the cause id it should be diagnosed as, or a function of the base giving it.
      description, source: what it does, and which catalogue's fault it is.
      mutate: (base, params) -> the params it changes.
      applies_to: base -> whether it fits that base (default: every base).
      harm: how its harm is measured (LOSS, VAL_LOSS, SCORE, OVERFIT, BY_CONSTRUCTION).
    """

    name: str
    cause: Union[str, Callable]
    description: str
    source: str
    mutate: Callable
    applies_to: Callable = lambda base: True
    harm: str = LOSS

    def expected_cause(self, base):
        return self.cause(base) if callable(self.cause) else self.cause

    def applies(self, base):
        return bool(self.applies_to(base))

    def harm_for(self, base):
        """How this operator's harm shows on `base`: an autoencoder's inputs are its
        targets, so rescaling them rescales its loss too, and only the score (R^2, which
        does not depend on the scale) compares."""
        if base.task == bases.RECONSTRUCTION and self.name in _RESCALE_TARGETS_TOO:
            return SCORE
        return self.harm

    def params(self, base):
        """The base's params with this operator's changes."""
        params = base.default_params()
        params.update(self.mutate(base, params))
        return params


# Operators on the inputs that, in a reconstruction, change the targets with them.
_RESCALE_TARGETS_TOO = ("inputs_x1000", "inputs_offset")


def _not_tokens(base):
    return not base.tokens


def _has_labels(base):
    return base.task != bases.RECONSTRUCTION


def _classifier(base):
    return base.task == bases.CLASSIFICATION


def _relu_hidden(base):
    return base.hidden_activation == "relu"


def _saturating_units(base):
    """Bases with tanh/sigmoid units of their own: tanh hidden layers, or an LSTM/GRU."""
    return base.recurrent or base.hidden_activation in ("tanh", "sigmoid")


def _wide_init_cause(base):
    # Large weights blow ReLU activations (and so gradients) up layer by layer, but pin
    # bounded tanh units at +-1.
    return "saturated_activations" if base.hidden_activation == "tanh" else "exploding_gradients"


def _non_differentiable_fn(base):
    """round, sign and stop_gradient in turn over the bases: the three usual culprits."""
    kinds = sorted(bases.NON_DIFFERENTIABLE)
    return kinds[list(bases.BASES).index(base.name) % len(kinds)]


def _loss_mismatch(base, params):
    if base.task == bases.CLASSIFICATION and base.framework == "torch":
        # PyTorch's form: an nn.Softmax before nn.CrossEntropyLoss, which wants logits.
        return {"output_activation": "softmax"}
    if base.task == bases.CLASSIFICATION:
        # The output layer gives logits; the loss is told they are probabilities.
        return {"from_logits": False}
    # Standardized targets (negative half the time) behind a sigmoid output.
    return {"output_activation": "sigmoid"}


def _saturating(base, params):
    if base.recurrent:
        return {"rnn_kernel_stddev": SATURATING_RNN_STDDEV}
    return {"bias_init": SATURATING_BIAS}


OPERATORS = {
    op.name: op
    for op in [
        Operator(
            "lr_x100",
            "lr_too_high",
            "learning rate x100",
            "DeepCrime HLR; DeepFD learning rate; AutoTrainer oscillating loss",
            lambda base, p: {"learning_rate": p["learning_rate"] * LR_UP},
        ),
        Operator(
            "lr_div1000",
            "lr_too_low",
            "learning rate /1000",
            "DeepCrime HLR; DeepFD learning rate; AutoTrainer slow convergence",
            lambda base, p: {"learning_rate": p["learning_rate"] * LR_DOWN},
        ),
        Operator(
            "lr_jump_midrun",
            "lr_too_high",
            "a LearningRateSchedule that jumps to 500x the rate at 40% of the run",
            "DeepCrime HLR (mid-run, as a schedule or warm restart gone wrong)",
            lambda base, p: {"lr_jump": list(LR_JUMP)},
        ),
        Operator(
            "inputs_x1000",
            "unnormalized_inputs",
            "inputs not normalized: values x1000",
            "DeepFD missing preprocessing",
            lambda base, p: {"input_scale": INPUT_SCALE},
            _not_tokens,
        ),
        Operator(
            "inputs_offset",
            "unnormalized_inputs",
            "inputs not centered: +300 on every feature",
            "DeepFD missing preprocessing",
            lambda base, p: {"input_shift": INPUT_SHIFT},
            _not_tokens,
        ),
        Operator(
            "sigmoid_deep",
            "vanishing_gradients",
            "hidden activations changed to sigmoid, in a head 8 Dense layers deep",
            "DeepCrime ACH; DeepFD activation; AutoTrainer vanishing gradient",
            lambda base, p: {"hidden_activation": "sigmoid", "head_depth": DEEP},
        ),
        Operator(
            "init_wide",
            _wide_init_cause,
            "hidden kernels initialized RandomNormal(stddev=10)",
            "DeepCrime WCI; AutoTrainer exploding gradient",
            lambda base, p: {"kernel_stddev": WIDE_STDDEV},
        ),
        Operator(
            "init_narrow_deep",
            "vanishing_gradients",
            "hidden kernels initialized RandomNormal(stddev=0.01), head 8 Dense layers deep",
            "DeepCrime WCI; AutoTrainer vanishing gradient",
            lambda base, p: {"kernel_stddev": NARROW_STDDEV, "head_depth": DEEP},
        ),
        Operator(
            "bias_negative",
            "dead_relu",
            "ReLU layers' bias (BatchNorm beta) initialized to -5",
            "DeepCrime WCI/WAB; AutoTrainer dying ReLU",
            lambda base, p: {"bias_init": NEGATIVE_BIAS},
            _relu_hidden,
        ),
        Operator(
            "saturating_init",
            "saturated_activations",
            "tanh units pushed to their limits: bias +4 (tanh layers) or kernels"
            " RandomNormal(stddev=3) (LSTM/GRU)",
            "DeepCrime WCI/WAB; Humbatova et al. saturated activation",
            _saturating,
            _saturating_units,
        ),
        Operator(
            "non_differentiable",
            "zero_gradient",
            "a Lambda of tf.round / tf.sign / tf.stop_gradient before the output layers",
            "Humbatova et al. (custom layer with no gradient); DeepCrime ACH",
            lambda base, p: {"non_differentiable": _non_differentiable_fn(base)},
        ),
        Operator(
            "bottleneck_1",
            "insufficient_capacity",
            "a hidden layer (the autoencoder's code) of 1 unit before the output",
            "DeepCrime (change number of neurons); DeepFD layer",
            lambda base, p: {"bottleneck": 1},
        ),
        Operator(
            "labels_shuffled",
            "no_signal",
            "labels (targets) shuffled apart from their inputs",
            "DeepCrime TCL (all labels)",
            lambda base, p: {"labels": "shuffled"},
            _has_labels,
            SCORE,
        ),
        Operator(
            "labels_constant",
            "no_signal",
            "every label (target) read as 0",
            "Humbatova et al. (wrong labels); DeepCrime TCL",
            lambda base, p: {"labels": "constant"},
            _has_labels,
            SCORE,
        ),
        Operator(
            "labels_off_by_one",
            "loss_output_mismatch",
            "sparse labels numbered 1..K for K outputs, compiled with XLA as on a GPU (a NaN"
            " loss there; on a CPU without XLA TensorFlow raises instead)",
            "Humbatova et al. (wrong label encoding)",
            lambda base, p: {"labels": "off_by_one", "jit_compile": True},
            # (PyTorch's cross-entropy raises on a class id out of range: no silent fault.)
            lambda base: _classifier(base) and base.framework == "keras",
            SCORE,
        ),
        Operator(
            "loss_mismatch",
            "loss_output_mismatch",
            "logits into a from_logits=False cross-entropy (classifiers); a sigmoid output"
            " for standardized targets (regression, autoencoder)",
            "DeepCrime LCH; DeepFD loss",
            _loss_mismatch,
            lambda base: base.task == bases.CLASSIFICATION or not base.unit_targets,
            SCORE,
        ),
        Operator(
            "l2_strong",
            "over_regularization",
            "L2(1.0) on every layer's kernel",
            "DeepCrime RAW/RCR",
            lambda base, p: {"l2": STRONG_L2},
            harm=SCORE,
        ),
        Operator(
            "dropout_strong",
            "over_regularization",
            "Dropout(0.9) after every hidden layer",
            "DeepCrime RCD",
            lambda base, p: {"dropout": STRONG_DROPOUT},
            harm=VAL_LOSS,
        ),
        Operator(
            "label_smoothing_strong",
            "over_regularization",
            "one-hot labels with label_smoothing=0.95",
            "DeepCrime LCH (loss settings)",
            lambda base, p: {"label_smoothing": STRONG_SMOOTHING},
            _classifier,
            SCORE,
        ),
        Operator(
            "bn_batch_2",
            "batchnorm_misuse",
            "BatchNormalization trained with batch size 2 (2 epochs, same data)",
            "DeepCrime HBS; Humbatova et al. (batch normalization)",
            lambda base, p: {"batch_size": TINY_BATCH, "epochs": TINY_BATCH_EPOCHS},
            lambda base: base.batchnorm,
        ),
        Operator(
            "bn_frozen",
            "batchnorm_misuse",
            "BatchNormalization layers frozen (trainable=False): inference mode with"
            " never-updated statistics while training",
            "Humbatova et al. (batch normalization in the wrong mode)",
            lambda base, p: {"batchnorm_frozen": True},
            lambda base: base.batchnorm,
        ),
        Operator(
            "too_few_epochs",
            "not_converged",
            "3 epochs at a third of the rate",
            "DeepCrime HNE; DeepFD epochs",
            lambda base, p: {
                "epochs": SHORT_EPOCHS,
                "learning_rate": p["learning_rate"] * SHORT_LR_FACTOR,
            },
            harm=BY_CONSTRUCTION,
        ),
        Operator(
            "small_data_overfit",
            "overfitting",
            "6% of the training data, 4x the epochs, a 256-unit head",
            "DeepCrime TRD",
            lambda base, p: {
                "train_fraction": SMALL_DATA_FRACTION,
                "epochs": p["epochs"] * OVERFIT_EPOCHS_FACTOR,
                "head_width": OVERFIT_WIDTH,
                "head_depth": max(1, p["head_depth"]),
            },
            harm=OVERFIT,
        ),
        Operator(
            "nan_rows",
            "nonfinite",
            "a NaN feature in 8 training rows (missing values read as NaN)",
            "Humbatova et al. (missing values / NaN in the data)",
            lambda base, p: {"nan_rows": NAN_ROWS},
            _not_tokens,
        ),
    ]
}
