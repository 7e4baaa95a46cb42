"""The corpus's PyTorch bases: the same hooks as `bases` (an activation, an initializer, a
learning rate...), read by PyTorch models trained by a plain loop recorded with
`tb_plateau.summaries.torch.watch`.

The PyTorch form of each hook is the one a PyTorch user writes: an `nn.ReLU`/`nn.Tanh`/
`nn.Sigmoid` module, `nn.init.normal_` for an initializer, the optimizer's `weight_decay`
for an L2 penalty (2 x the Keras coefficient: the same gradient), a `LambdaLR` for decay and
jumps, `nn.CrossEntropyLoss(label_smoothing=...)`, a BatchNorm left in eval mode with frozen
parameters for "frozen", and an `nn.Softmax` before `nn.CrossEntropyLoss` for the loss that
does not fit the output (PyTorch's form of probabilities into a logits loss).
"""

import math
import time

import numpy as np

from benchmarks.corpus import bases


def _torch():
    import torch  # lazily: the corpus lists and scores its cases without torch

    return torch


def _activation(name):
    nn = _torch().nn
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}[name]()


def _init(layer, params, bias=True):
    nn = _torch().nn
    if params["kernel_stddev"] is not None:
        nn.init.normal_(layer.weight, 0.0, params["kernel_stddev"])
    if bias and getattr(layer, "bias", None) is not None:
        nn.init.constant_(layer.bias, params["bias_init"])
    return layer


def _activated(layers, params):
    """`layers`, then the hidden activation and, where set, dropout."""
    layers = list(layers) + [_activation(params["hidden_activation"])]
    if params["dropout"]:
        layers.append(_torch().nn.Dropout(params["dropout"]))
    return layers


def _dense_stack(width_in, params, depth=None):
    nn = _torch().nn
    layers = []
    for _ in range(params["head_depth"] if depth is None else depth):
        layers += _activated([_init(nn.Linear(width_in, params["head_width"]), params)], params)
        width_in = params["head_width"]
    return layers, width_in


def _non_differentiable_module(kind):
    nn = _torch().nn
    torch = _torch()

    class Round(nn.Module):
        def forward(self, x):
            return torch.round(x)

    class Sign(nn.Module):
        def forward(self, x):
            return torch.sign(x)

    class StopGradient(nn.Module):
        def forward(self, x):
            return x.detach()

    return {"round": Round, "sign": Sign, "stop_gradient": StopGradient}[kind]()


def _output(width_in, params, units):
    nn = _torch().nn
    layers = []
    if params["non_differentiable"]:
        layers.append(_non_differentiable_module(params["non_differentiable"]))
    if params["bottleneck"]:
        layers.append(nn.Linear(width_in, params["bottleneck"]))
        width_in = params["bottleneck"]
    layers.append(nn.Linear(width_in, units))
    activation = params["output_activation"]
    if activation == "sigmoid":
        layers.append(nn.Sigmoid())
    elif activation == "softmax":
        layers.append(nn.Softmax(dim=1))
    return layers


def mlp_model(params, input_shape, out_units):
    nn = _torch().nn
    hidden, width = _dense_stack(int(np.prod(input_shape)), params)
    return nn.Sequential(*hidden, *_output(width, params, out_units))


def _bn_frozen(module, params):
    """BatchNorm in eval mode with frozen parameters, whatever `model.train()` says."""
    if params["batchnorm_frozen"]:
        nn = _torch().nn
        for p in module.parameters():
            p.requires_grad_(False)

        def stay_in_eval(mode=True):
            return nn.Module.train(module, False)

        module.train = stay_in_eval
        module.eval()
    return module


def cnn_bn_model(params, input_shape, out_units):
    """Conv-BN-act x2 + global average pooling, on channels-first images."""
    nn = _torch().nn
    channels = input_shape[-1]

    def conv_bn(c_in, c_out):
        bn = nn.BatchNorm2d(c_out, momentum=0.1)
        nn.init.constant_(bn.bias, params["bias_init"])
        conv = _init(nn.Conv2d(c_in, c_out, 3, bias=False), params, bias=False)
        return _activated([conv, _bn_frozen(bn, params)], params)

    hidden, width = _dense_stack(16, params)
    return nn.Sequential(
        *conv_bn(channels, 8),
        nn.MaxPool2d(2),
        *conv_bn(8, 16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        *hidden,
        *_output(width, params, out_units),
    )


def lstm_model(params, input_shape, out_units):
    nn = _torch().nn

    class LastStep(nn.Module):
        """The LSTM's output at the last time step."""

        def forward(self, output):
            return output[0][:, -1] if isinstance(output, tuple) else output[:, -1]

    lstm = nn.LSTM(input_shape[-1], 16, batch_first=True)
    if params["rnn_kernel_stddev"] is not None:
        for name, weight in lstm.named_parameters():
            if name.startswith("weight"):
                nn.init.normal_(weight, 0.0, params["rnn_kernel_stddev"])
    layers = [lstm, LastStep()]
    if params["dropout"]:
        layers.append(nn.Dropout(params["dropout"]))
    hidden, width = _dense_stack(16, params)
    return nn.Sequential(*layers, *hidden, *_output(width, params, out_units))


def conv1d_model(params, input_shape, out_units):
    """Conv1d-ReLU, max pooling, Conv1d-ReLU, global max pooling, the head (no normalization);
    inputs (batch, length, channels) as the corpus makes them."""
    nn = _torch().nn

    class ChannelsFirst(nn.Module):
        def forward(self, x):
            return x.transpose(1, 2)

    def conv(c_in, c_out):
        return _activated([_init(nn.Conv1d(c_in, c_out, 5, padding=2), params)], params)

    hidden, width = _dense_stack(16, params)
    return nn.Sequential(
        ChannelsFirst(),
        *conv(input_shape[-1], 8),
        nn.MaxPool1d(2),
        *conv(8, 16),
        nn.AdaptiveMaxPool1d(1),
        nn.Flatten(),
        *hidden,
        *_output(width, params, out_units),
    )


def residual_mlp_model(params, input_shape, out_units, width=32, blocks=2):
    """A stem, then blocks x = x + Linear(act(Linear(x))), then the head."""
    nn = _torch().nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            inner = _activated([_init(nn.Linear(width, width), params)], params)
            self.body = nn.Sequential(*inner, nn.Linear(width, width))

        def forward(self, x):
            return x + self.body(x)

    stem = _activated([_init(nn.Linear(int(np.prod(input_shape)), width), params)], params)
    hidden, out_width = _dense_stack(width, params)
    return nn.Sequential(
        *stem,
        *[Residual() for _ in range(blocks)],
        *hidden,
        *_output(out_width, params, out_units),
    )


def autoencoder_model(params, input_shape, out_units, code_width=6):
    """Encoder stack -> linear code -> decoder stack -> linear output (the non-differentiable
    op, when set, sits on the code)."""
    nn = _torch().nn
    width_in = int(np.prod(input_shape))
    encoder, width = _dense_stack(width_in, params)
    code = params["bottleneck"] or code_width
    layers = [*encoder, nn.Linear(width, code)]
    if params["non_differentiable"]:
        layers.append(_non_differentiable_module(params["non_differentiable"]))
    decoder, width = _dense_stack(code, params)
    layers += [*decoder, nn.Linear(width, out_units)]
    if params["output_activation"] == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def spectra_autoencoder_model(params, input_shape, out_units):
    """Autoencoder with a 4-unit code."""
    return autoencoder_model(params, input_shape, out_units, code_width=4)


BASES = [
    bases.Base(
        "torch_mlp",
        "dev",
        "PyTorch MLP 8-32-32-4 on tabular features, quadrant classes (plain loop, watch)",
        bases.CLASSIFICATION,
        bases.tabular_data,
        mlp_model,
        {"head_depth": 2, "epochs": 10},
        classes=4,
        framework="torch",
    ),
    bases.Base(
        "torch_cnn_bn",
        "test",
        "PyTorch CNN Conv2d-BatchNorm2d-ReLU x2 + global average pooling on shape images",
        bases.CLASSIFICATION,
        bases.shape_images,
        cnn_bn_model,
        {"learning_rate": 3e-3, "lr_decay": True, "epochs": 15, "head_width": 16},
        classes=3,
        batchnorm=True,
        framework="torch",
    ),
    bases.Base(
        "torch_lstm",
        "test",
        "PyTorch LSTM(16) + Linear on sequences, class = tertile of a running sum",
        bases.CLASSIFICATION,
        bases.sum_sequences,
        lstm_model,
        {"learning_rate": 1e-2, "lr_decay": True, "epochs": 15},
        classes=3,
        recurrent=True,
        framework="torch",
    ),
    bases.Base(
        "torch_conv1d",
        "dev",
        "PyTorch Conv1d-ReLU x2 + global max pooling on sine bursts of three frequencies (AdamW)",
        bases.CLASSIFICATION,
        bases.tone_signals,
        conv1d_model,
        {"optimizer": "adamw", "learning_rate": 3e-3, "epochs": 12, "head_width": 16},
        classes=3,
        framework="torch",
    ),
    bases.Base(
        "torch_residual_blobs10",
        "dev",
        "PyTorch residual MLP (Linear blocks with skips) on ten classes of paired Gaussian"
        " blobs, SGD with momentum and cosine decay",
        bases.CLASSIFICATION,
        bases.blob_classes,
        residual_mlp_model,
        {
            "optimizer": "sgd",
            "learning_rate": 5e-2,
            "lr_decay": True,
            "epochs": 12,
            "head_width": 32,
            "batch_size": 64,
        },
        classes=10,
        framework="torch",
    ),
    bases.Base(
        "torch_ae_knots",
        "dev",
        "PyTorch ReLU dense autoencoder 20-48-6-48-20 of points on a knotted 3-D curve and"
        " plane seen through 20 features (MSE, Adam)",
        bases.RECONSTRUCTION,
        bases.knot_points,
        autoencoder_model,
        {"head_width": 48, "learning_rate": 3e-3, "epochs": 12},
        framework="torch",
    ),
    bases.Base(
        "torch_spectra_ae",
        "dev",
        "PyTorch ReLU dense autoencoder 32-64-4-64-32 of one-peak spectra (MSE, Adam)",
        bases.RECONSTRUCTION,
        bases.peak_spectra,
        spectra_autoencoder_model,
        {"head_width": 64, "learning_rate": 2e-3, "epochs": 12},
        framework="torch",
    ),
    bases.Base(
        "torch_silu_friedman",
        "dev",
        "PyTorch SiLU MLP 10-64-64-1 regression of Friedman's first problem (AdamW, cosine decay, batch 64)",
        bases.REGRESSION,
        bases.friedman_regression,
        mlp_model,
        {
            "hidden_activation": "silu",
            "head_depth": 2,
            "head_width": 64,
            "optimizer": "adamw",
            "learning_rate": 5e-3,
            "lr_decay": True,
            "batch_size": 64,
            "epochs": 25,
        },
        framework="torch",
    ),
]


# ----------------------------------------------------------------- training


def _optimizer(params, model):
    torch = _torch()
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = 2.0 * params["l2"]  # the gradient of Keras' L2(l2) penalty, l2 * sum(w^2)
    rate = params["learning_rate"]
    return {
        "adam": lambda: torch.optim.Adam(trainable, rate, weight_decay=decay),
        "adamw": lambda: torch.optim.AdamW(trainable, rate, weight_decay=decay or 0.01),
        "rmsprop": lambda: torch.optim.RMSprop(trainable, rate, weight_decay=decay),
        "sgd": lambda: torch.optim.SGD(trainable, rate, momentum=0.9, weight_decay=decay),
    }[params["optimizer"]]()


def _schedule(params, optimizer, total_steps):
    """Cosine decay and the mid-run jump of `bases._learning_rate`, as a LambdaLR, or None."""
    decay, jump = params["lr_decay"], params["lr_jump"]
    if not decay and not jump:
        return None

    def factor(step):
        value = 1.0
        if decay:
            progress = min(step / total_steps, 1.0)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            value *= bases.LR_DECAY_FLOOR + (1.0 - bases.LR_DECAY_FLOOR) * cosine
        if jump and step >= int(jump[0] * total_steps):
            value *= jump[1]
        return value

    return _torch().optim.lr_scheduler.LambdaLR(optimizer, factor)


def _tensor(x, base):
    torch = _torch()
    t = torch.tensor(np.asarray(x))
    if t.dim() == 4:  # channels-last images -> PyTorch's channels-first
        t = t.permute(0, 3, 1, 2).contiguous()
    return t


def _targets(y, base):
    torch = _torch()
    if base.task == bases.CLASSIFICATION:
        return torch.tensor(np.asarray(y)).long()
    return torch.tensor(np.asarray(y, dtype=np.float32)).reshape(len(y), -1)


def _accuracy(pred, y):
    return float((pred.argmax(dim=1) == y).float().mean())


def train(base, params, seed, logdir):
    """Trains a PyTorch `base` with `params` into `logdir`; returns what `run` compares."""
    torch = _torch()
    from tb_plateau.summaries.torch import watch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = bases.make_data(base, params, rng)
    if params["label_smoothing"]:  # the base's one-hot labels back to class ids
        data.y_train, data.y_val = data.y_train.argmax(-1), data.y_val.argmax(-1)
    classification = base.task == bases.CLASSIFICATION
    out_units = base.classes if classification else int(np.prod(data.y_val.shape[1:]))
    model = base.make_model(params, data.x_train.shape[1:], max(out_units, 1))
    if classification:
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=params["label_smoothing"])
    else:
        loss_fn = torch.nn.MSELoss()
    optimizer = _optimizer(params, model)
    steps_per_epoch = data.steps_per_epoch
    schedule = _schedule(params, optimizer, params["epochs"] * steps_per_epoch)
    x_train, y_train = _tensor(data.x_train, base), _targets(data.y_train, base)
    x_val, y_val = _tensor(data.x_val, base), _targets(data.y_val, base)
    history = {"loss": [], "val_loss": []}
    if classification:
        history.update(accuracy=[], val_accuracy=[])
    first_loss = float("nan")
    batch = params["batch_size"]
    start = time.perf_counter()
    with watch(
        model,
        optimizer,
        loss_fn,
        log_dir=logdir,
        every_n_steps=bases.EVERY_N_STEPS,
        steps_per_epoch=steps_per_epoch,
        epochs=params["epochs"],
    ) as handle:
        for _ in range(params["epochs"]):
            order = torch.tensor(rng.permutation(len(x_train)))
            step = (model, optimizer, schedule, loss_fn)
            losses, hits = _train_epoch(step, x_train, y_train, order, batch, steps_per_epoch)
            if math.isnan(first_loss):
                first_loss = losses[0]
            epoch = _epoch_logs(model, loss_fn, x_val, y_val, losses, hits, classification)
            handle.epoch_end(**epoch)
            for key, value in epoch.items():
                history[key].append(value)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = model(x_val).double().numpy()
    score, chance = bases.score_predictions(base, pred, data.truth_val)
    return bases.run_result(base, seconds, first_loss, history, score, chance)


def _train_epoch(step, x_train, y_train, order, batch, steps):
    """One epoch of the plain loop; ([batch losses], [batch accuracies])."""
    model, optimizer, schedule, loss_fn = step
    model.train()
    losses, hits = [], []
    for i in range(steps):
        idx = order[i * batch : (i + 1) * batch]
        optimizer.zero_grad()
        pred = model(x_train[idx])
        loss = loss_fn(pred, y_train[idx])
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.item())
        if pred.dim() == 2 and y_train.dtype == _torch().long:
            hits.append(_accuracy(pred.detach(), y_train[idx]))
    return losses, hits


def _epoch_logs(model, loss_fn, x_val, y_val, losses, hits, classification):
    torch = _torch()
    model.eval()
    with torch.no_grad():
        val_pred = model(x_val)
        logs = {"loss": float(np.mean(losses)), "val_loss": loss_fn(val_pred, y_val).item()}
        if classification:
            logs["accuracy"] = float(np.mean(hits))
            logs["val_accuracy"] = _accuracy(val_pred, y_val)
    return logs
