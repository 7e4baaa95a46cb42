"""Statistics of PyTorch tensors: reductions on the tensors' own device (one transfer
per record), and the numpy summaries of a batch's inputs and labels for the
configuration record. The same numbers, in the same layouts, as the Keras side's
`summaries/keras/stats.py`."""

import numpy as np
import torch

from tb_plateau import metadata
from tb_plateau.summaries.record import (
    _LABEL_VECTOR,
    _MAX_CLASSES,
    _MAX_FEATURES,
    principal_shares,
)

RELU_FAMILY = metadata.RELU_FAMILY
SIGMOID_FAMILY = metadata.SIGMOID_FAMILY
TANH_FAMILY = metadata.TANH_FAMILY
SOFTMAX_FAMILY = metadata.SOFTMAX_FAMILY
SATURATION_MARGIN = metadata.SATURATION_MARGIN


def tensors_in(structure):
    """The tensors in a nest of tuples, lists and dicts (a module's inputs or outputs)."""
    if isinstance(structure, torch.Tensor):
        return [structure]
    if isinstance(structure, dict):
        structure = list(structure.values())
    if isinstance(structure, (list, tuple)):
        return [t for item in structure for t in tensors_in(item)]
    return []


def nonfinite_count(tensors):
    """NaN/Inf entries over the floating tensors, as a 0-d float tensor (0 without any)."""
    total = None
    for t in tensors:
        if t.is_floating_point() or t.is_complex():
            count = (~torch.isfinite(t.detach())).sum(dtype=torch.float32)
            total = count if total is None else total + count.to(total.device)
    return total if total is not None else torch.zeros(())


def _flat(tensors):
    """One float32 vector of all the tensors' entries (sparse gradients: their values)."""
    parts = []
    for t in tensors:
        t = t.detach()
        if t.is_sparse:
            t = t.coalesce().values()
        parts.append(t.reshape(-1).float())
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def gradient_stats(grads):
    """[norm, exactly-zero entries, NaN/Inf entries] of one layer's gradients (a list)."""
    if not grads:
        return torch.zeros(3)
    g = _flat(grads)
    nonfinite = (~torch.isfinite(g)).sum(dtype=torch.float32)
    # (A NaN/Inf entry makes the norm NaN/Inf, as on the Keras side.)
    return torch.stack([torch.linalg.vector_norm(g), (g == 0).sum(dtype=torch.float32), nonfinite])


def weight_stats(params):
    """(sum of squares of the finite entries, NaN/Inf entries) of one layer's weights."""
    w = _flat(params)
    finite = torch.isfinite(w)
    sumsq = torch.where(finite, w, torch.zeros((), device=w.device)).square().sum()
    return torch.stack([sumsq, (~finite).sum(dtype=torch.float32)])


def update_stats(params, before):
    """(||after - before||^2, ||before||^2) of one layer's weights over a step."""
    after, old = _flat(params), _flat(before)
    return torch.stack([(after - old).square().sum(), old.square().sum()])


def activation_stats(output, activation, unit_axis):
    """[mean, std, dead fraction, saturated fraction, NaN/Inf entries] of a module's output.

    Dead: a ReLU-family unit never above zero over the batch (for a convolution,
    over the batch and all positions). Saturated: the share of outputs within
    `SATURATION_MARGIN` of a sigmoid/tanh limit, or of softmax rows whose largest
    probability is. Entries that do not apply are NaN.
    """
    y = output.detach().float()
    finite = torch.isfinite(y)
    nonfinite = (~finite).sum(dtype=torch.float32)
    y_finite = torch.where(finite, y, torch.zeros_like(y))
    mean = y_finite.mean()
    std = y_finite.std(unbiased=False) if y.numel() > 1 else torch.zeros((), device=y.device)
    nan = torch.full((), float("nan"), device=y.device)
    dead = nan
    saturated = nan
    rank = y.dim()
    if activation in RELU_FAMILY and rank >= 1:
        axis = unit_axis % rank
        other = [a for a in range(rank) if a != axis]
        unit_max = torch.amax(y, dim=other) if other else y
        dead = (unit_max <= 0).float().mean()
    elif activation in SIGMOID_FAMILY:
        low, high = SATURATION_MARGIN, 1.0 - SATURATION_MARGIN
        saturated = ((y < low) | (y > high)).float().mean()
    elif activation in TANH_FAMILY:
        saturated = (y.abs() > 1.0 - SATURATION_MARGIN).float().mean()
    elif activation in SOFTMAX_FAMILY and rank >= 1:
        probs = torch.exp(y) if activation == "log_softmax" else y
        row_max = torch.amax(probs, dim=unit_axis % rank)
        saturated = (row_max > 1.0 - SATURATION_MARGIN).float().mean()
    return torch.stack([mean, std, dead, saturated, nonfinite])


def output_stats(y_pred):
    """[min, max, mean, row-sum min, row-sum max, row-sum mean] of a prediction tensor.

    Rows run along the class axis: the last one, or axis 1 of a (batch, classes,
    ...) prediction (as `CrossEntropyLoss` takes it for images and sequences).
    """
    y = y_pred.detach().float()
    y = torch.where(torch.isfinite(y), y, torch.zeros_like(y))
    if y.dim() >= 3:
        y = y.movedim(1, -1)
    row_sums = y.sum(dim=-1) if y.dim() >= 1 else y
    return torch.stack(
        [y.min(), y.max(), y.mean(), row_sums.min(), row_sums.max(), row_sums.mean()]
    )


# --------------------------------------------------------------------------
# Numpy summaries of one batch, for the configuration record


def to_numpy(tensor):
    return tensor.detach().to("cpu", torch.float64).numpy()


def feature_stats(x, channels_first):
    """[features, 4] mean/std/min/max per feature of one input batch (numpy).

    Features are the last axis, or axis 1 of a channels-first batch (images for
    a convolution); wider inputs are summarized over all entries (one row).
    """
    x = np.asarray(x, dtype=np.float64)
    x = np.where(np.isfinite(x), x, 0.0)
    if x.ndim >= 3 and channels_first:
        x = np.moveaxis(x, 1, -1)
    if x.ndim >= 2 and x.shape[-1] <= _MAX_FEATURES:
        flat = x.reshape(-1, x.shape[-1])
    else:
        flat = x.reshape(-1, 1)
    if not flat.size:
        return np.zeros((0, 4))
    return np.stack([flat.mean(0), flat.std(0), flat.min(0), flat.max(0)], axis=1)


def label_stats(y, num_classes, inputs=(), class_axis=-1):
    """(summary [_LABEL_VECTOR], class counts) of one label batch (numpy).

    Class counts: for one-hot or probability labels (class axis == classes) the
    sums over it; for integer labels the count of each id in [0, classes); for a
    single-unit output the counts below and at/above 0.5. `input_match_fraction`
    is the largest share of entries equal to an input of the same shape.
    """
    y = np.asarray(y, dtype=np.float64)
    match = 0.0
    for x in inputs:
        x = np.asarray(x, dtype=np.float64)
        if x.shape == y.shape and y.size:
            match = max(match, float(np.mean(x == y)))
    y = np.where(np.isfinite(y), y, 0.0)
    if y.ndim >= 3 and class_axis == 1:
        y = np.moveaxis(y, 1, -1)
    flat = y.reshape(-1)
    if not flat.size:
        return np.full(_LABEL_VECTOR, np.nan), np.zeros(max(num_classes, 0))
    last = y.shape[-1] if y.ndim >= 2 else None
    if last is not None and last > 1:
        rows = y.reshape(-1, last)
        row_sums = rows.sum(axis=1)
        binary = np.all((rows == 0) | (rows == 1), axis=1)
        one_hot = float(np.mean(binary & (row_sums == 1)))
        row_sum_mean = float(row_sums.mean())
    else:
        one_hot, row_sum_mean = 0.0, float(flat.mean())
    summary = np.array(
        [
            flat.min(),
            flat.max(),
            flat.mean(),
            flat.std(),
            np.mean(flat == np.round(flat)),
            np.mean((flat >= 0) & (flat <= 1)),
            one_hot,
            row_sum_mean,
            match,
            *principal_shares(y.reshape(y.shape[0], -1) if y.ndim else y.reshape(1, 1)),
        ]
    )
    classes = min(int(num_classes), _MAX_CLASSES)
    if last is not None and last == classes and classes > 1:
        counts = y.reshape(-1, classes).sum(axis=0)
    elif classes == 2:
        above = float(np.sum(flat >= 0.5))
        counts = np.array([flat.size - above, above])
    elif classes > 0:
        ids = np.round(flat).astype(np.int64)
        ids = ids[(ids >= 0) & (ids < classes)]
        counts = np.bincount(ids, minlength=classes).astype(np.float64)
    else:
        counts = np.zeros(0)
    return summary, counts
