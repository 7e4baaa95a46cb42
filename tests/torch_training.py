"""Tiny real PyTorch trainings recorded with `tb_plateau.summaries.torch.watch`.

`train(kind, log_dir)` runs an ordinary training loop (no tb_plateau call in it but
`watch` and, once an epoch, `epoch_end`) on a learnable 3-class problem:
  healthy       Adam 3e-3, standardized inputs
  lr_high       SGD with momentum at learning rate 3
  unnormalized  the same inputs, scaled by 1000 and shifted by 500
  softmax_ce    an nn.Softmax before nn.CrossEntropyLoss (probabilities into a logits loss)
"""

import numpy as np
import torch
from torch import nn

KINDS = ("healthy", "lr_high", "unnormalized", "softmax_ce")
# The root cause each kind is diagnosed with (None: healthy).
EXPECTED = {
    "healthy": None,
    "lr_high": "lr_too_high",
    "unnormalized": "unnormalized_inputs",
    "softmax_ce": "loss_output_mismatch",
}
SAMPLES = 2048
FEATURES = 20
CLASSES = 3
BATCH = 32
EPOCHS = 5
# Label noise: the loss levels off at a floor well above zero within the epochs.
LABEL_NOISE = 3.0


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    w = rng.normal(size=(FEATURES, CLASSES))
    y = np.argmax(x @ w + LABEL_NOISE * rng.normal(size=(SAMPLES, CLASSES)), axis=1)
    return torch.tensor(x), torch.tensor(y)


def model_for(kind):
    layers = [
        nn.Linear(FEATURES, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, CLASSES),
    ]
    if kind == "softmax_ce":
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers)


def train(kind, log_dir, seed=0, epochs=EPOCHS, **watch_args):
    """Trains one kind of run into `log_dir`; returns the closed `Watch`."""
    from tb_plateau.summaries.torch import watch

    torch.manual_seed(seed)
    x, y = data(seed)
    if kind == "unnormalized":
        x = x * 1000 + 500
    model = model_for(kind)
    if kind == "lr_high":
        optimizer = torch.optim.SGD(model.parameters(), lr=3.0, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps_per_epoch = SAMPLES // BATCH
    generator = torch.Generator().manual_seed(seed)
    with watch(
        model,
        optimizer,
        loss_fn,
        log_dir=log_dir,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        **watch_args,
    ) as handle:
        for _ in range(epochs):
            order = torch.randperm(SAMPLES, generator=generator)
            total = 0.0
            for i in range(steps_per_epoch):
                batch = order[i * BATCH : (i + 1) * BATCH]
                optimizer.zero_grad()
                loss = loss_fn(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += loss.item()
            handle.epoch_end(loss=total / steps_per_epoch)
    return handle


def is_pytorch_fix(fix):
    """True for a fix from the PyTorch catalogue (or the learning-rate fix in PyTorch code,
    which carries the run's own rate), never Keras code."""
    from tb_plateau.diagnosis import causes, configuration

    catalogue = [f for fixes in causes.TORCH_FIXES.values() for f in fixes]
    catalogue += [f for fixes in configuration._TORCH_MISMATCH_FIXES.values() for f in fixes]
    return "keras" not in fix and (fix in catalogue or fix.startswith("optimizer = torch.optim."))
