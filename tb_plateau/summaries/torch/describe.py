"""What a PyTorch model looks like, for the configuration record: its modules in order,
its loss and optimizer, in the record's schema (the one the Keras side writes), so
the diagnosis reads both alike."""

import collections

import torch
from torch import nn

from tb_plateau import metadata

# Activation modules and the family names the record uses for them.
ACTIVATION_MODULES = {
    "ReLU": "relu",
    "ReLU6": "relu6",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "RReLU": "leaky_relu",
    "ELU": "elu",
    "CELU": "celu",
    "SELU": "selu",
    "GELU": "gelu",
    "SiLU": "silu",
    "Mish": "mish",
    "Hardswish": "hard_swish",
    "Threshold": "threshold",
    "Sigmoid": "sigmoid",
    "Hardsigmoid": "hard_sigmoid",
    "Tanh": "tanh",
    "Hardtanh": "hard_tanh",
    "Softsign": "softsign",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}
# Recurrent modules: their output (all time steps) is a tanh's, as Keras' LSTM's is.
RECURRENT_MODULES = ("LSTM", "GRU", "RNN")
# Modules whose output has its units (channels) on axis 1 of a batch.
CHANNELS_FIRST_MODULES = (
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "GroupNorm",
    "MaxPool2d",
    "AvgPool2d",
)

# PyTorch losses in the record's terms: (Keras-family name, from_logits).
# `from_logits` as Keras means it: True for a loss that applies the softmax or
# sigmoid itself and wants raw scores.
_LOSSES = {
    "CrossEntropyLoss": ("categorical_crossentropy", True),
    "NLLLoss": ("nll_loss", None),
    "BCEWithLogitsLoss": ("binary_crossentropy", True),
    "BCELoss": ("binary_crossentropy", False),
    "MSELoss": ("mean_squared_error", None),
    "L1Loss": ("mean_absolute_error", None),
    "HuberLoss": ("huber", None),
    "SmoothL1Loss": ("huber", None),
    "KLDivLoss": ("kl_divergence", None),
    "PoissonNLLLoss": ("poisson", None),
    "HingeEmbeddingLoss": ("hinge", None),
}

_Watched = collections.namedtuple("_Watched", "module label activation unit_axis")


def module_label(name, model):
    """A module's label in the record: its qualified name, the model's class for the root."""
    return name or type(model).__name__


def activation_name(module):
    cls = type(module).__name__
    if cls in ACTIVATION_MODULES:
        return ACTIVATION_MODULES[cls]
    if cls in RECURRENT_MODULES:
        return getattr(module, "nonlinearity", "tanh") if cls == "RNN" else "tanh"
    return None


def _is_builtin(module):
    return type(module).__module__.startswith("torch.")


class ModelIndex:
    """Which parameters belong to which module, and which modules' outputs to watch.

    A layer is a module that owns trainable parameters itself (`fc1`, `0`); its
    gradient norm, weight norm and update ratio sum over those parameters. The
    watched outputs are those of activation modules and recurrent modules.
    """

    def __init__(self, model):
        self.model = model
        self.layer_labels = []
        self.layer_sizes = []
        self.layer_params = []  # per layer, its trainable parameters
        for name, module in model.named_modules():
            params = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if params:
                self.layer_labels.append(module_label(name, model))
                self.layer_sizes.append(int(sum(p.numel() for p in params)))
                self.layer_params.append(params)
        self.activation_layers = []
        channels_first = False
        for name, module in model.named_modules():
            cls = type(module).__name__
            if cls in CHANNELS_FIRST_MODULES:
                channels_first = True
            elif cls in ("Linear", "Flatten", "LSTM", "GRU", "RNN", "Embedding", "LayerNorm"):
                channels_first = False
            activation = activation_name(module)
            if activation is None:
                continue
            if cls in RECURRENT_MODULES:
                unit_axis = -1
            elif cls in ("Softmax", "LogSoftmax") and module.dim is not None:
                unit_axis = module.dim
            else:
                unit_axis = 1 if channels_first else -1
            label = module_label(name, model)
            self.activation_layers.append(_Watched(module, label, activation, unit_axis))

    @property
    def activation_labels(self):
        return [w.label for w in self.activation_layers]

    @property
    def activation_names(self):
        return [w.activation for w in self.activation_layers]

    @property
    def parameters(self):
        return [p for params in self.layer_params for p in params]


def _module_settings(module):
    settings = {}
    for attr, key in (
        ("out_features", "units"),
        ("in_features", "input_dim"),
        ("out_channels", "filters"),
        ("kernel_size", "kernel_size"),
        ("stride", "strides"),
        ("padding", "padding"),
        ("hidden_size", "units"),
        ("num_layers", "num_layers"),
        ("num_embeddings", "input_dim"),
        ("embedding_dim", "output_dim"),
        ("p", "rate"),
        ("momentum", "momentum"),
        ("eps", "epsilon"),
        ("negative_slope", "negative_slope"),
    ):
        value = getattr(module, attr, None)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, (int, float, str, bool, list)) and not isinstance(value, bool):
            settings.setdefault(key, value)
    if isinstance(getattr(module, "bias", None), torch.Tensor) or hasattr(module, "bias"):
        settings["use_bias"] = isinstance(getattr(module, "bias", None), torch.Tensor)
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.numel() > 1:
        with torch.no_grad():
            settings["initial_weight_std"] = float(weight.detach().float().std())
    if type(module).__name__ in metadata.BATCH_NORMALIZATION_LAYERS:
        mean = getattr(module, "running_mean", None)
        var = getattr(module, "running_var", None)
        if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor):
            settings["moving_statistics_initial"] = bool(
                torch.all(mean == 0) and torch.all(var == 1)
            )
    return settings


def describe_modules(model):
    """The modules in order, as the record's `layers` (leaves, and custom containers nested)."""
    layers = []
    for name, module in model.named_modules():
        if module is model and list(model.children()):
            continue  # the model itself
        if isinstance(module, nn.modules.loss._Loss):
            continue  # a loss module kept as an attribute (a LightningModule's)
        cls = type(module).__name__
        leaf = not list(module.children())
        params = [p for p in module.parameters(recurse=False)]
        entry = {
            "name": module_label(name, model),
            "path": module_label(name, model),
            "class": cls,
            "activation": activation_name(module),
            # A frozen module: no trainable weight, or a norm layer left in eval mode.
            "trainable": bool(module.training)
            and (not params or any(p.requires_grad for p in params)),
            "params": int(sum(p.numel() for p in params)) if leaf else None,
            "nested": not leaf,
        }
        if leaf and not params and entry["activation"] is None and not _is_builtin(module):
            entry["function"] = cls  # a custom parameter-free module (an activation, a cast)
        entry.update(_module_settings(module))
        layers.append(entry)
    return layers


def describe_loss(loss_fn):
    """The loss in the record's terms; None when unknown."""
    if loss_fn is None:
        return None
    cls = type(loss_fn).__name__
    if isinstance(loss_fn, nn.Module):
        name, from_logits = _LOSSES.get(cls, (cls, None))
        custom = not _is_builtin(loss_fn)
        entry = {
            "name": name,
            "class": cls,
            "from_logits": from_logits,
            "reduction": getattr(loss_fn, "reduction", None),
            "label_smoothing": getattr(loss_fn, "label_smoothing", None),
            "custom": custom,
        }
        ignore = getattr(loss_fn, "ignore_index", None)
        if isinstance(ignore, int):
            entry["ignore_index"] = ignore
        if getattr(loss_fn, "weight", None) is not None:
            entry["class_weights"] = True
        return entry
    name = getattr(loss_fn, "__name__", None) or cls
    module = getattr(loss_fn, "__module__", "") or ""
    builtin = module.startswith("torch.")
    known = {
        "cross_entropy": "CrossEntropyLoss",
        "nll_loss": "NLLLoss",
        "binary_cross_entropy_with_logits": "BCEWithLogitsLoss",
        "binary_cross_entropy": "BCELoss",
        "mse_loss": "MSELoss",
        "l1_loss": "L1Loss",
        "huber_loss": "HuberLoss",
        "smooth_l1_loss": "SmoothL1Loss",
        "kl_div": "KLDivLoss",
    }
    if builtin and name in known:
        family, from_logits = _LOSSES[known[name]]
        return {"name": family, "class": name, "from_logits": from_logits, "custom": False}
    return {"name": name, "class": name, "from_logits": None, "custom": not builtin}


def describe_optimizer(optimizer):
    """{"name", "config"} with the first parameter group's hyperparameters."""
    if optimizer is None:
        return None
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    config = {}
    for key, value in group.items():
        if key == "params":
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, (int, float, str, bool, list)) or value is None:
            config["learning_rate" if key == "lr" else key] = value
    name = type(optimizer).__name__
    # AdamW's weight decay is decoupled from the gradient; Adam's, SGD's and RMSprop's is
    # an L2 term in it: the record says which.
    config["weight_decay_decoupled"] = name == "AdamW"
    return {"name": name, "config": config, "param_groups": len(optimizer.param_groups)}
