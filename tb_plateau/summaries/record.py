"""One record's vectors and the data summary, from numbers any front end computed.

Framework-neutral (numpy only): the Keras and the PyTorch recorders reduce
tensors to the numbers below in their own framework, then build the record
here, so both write the same tags with the same layouts.
"""

import numpy as np

from tb_plateau import metadata

# Entries of one input's per-feature statistics; wider inputs (one-hot text,
# flattened images) are summarized over all features instead.
_MAX_FEATURES = 4096  # features
# Classes counted in the label statistics; more are summarized by range only.
_MAX_CLASSES = 10_000  # classes

# Per-layer entries stored in the step variables.
_ACT_FIELDS = ("mean", "std", "dead_fraction", "saturated_fraction", "nonfinite")
_OUTPUT_FIELDS = ("min", "max", "mean", "row_sum_min", "row_sum_max", "row_sum_mean")
_STEP_FIELDS = ("loss", "inputs_nonfinite", "labels_nonfinite", "loss_nonfinite", "batch_size")
_FEATURE_FIELDS = ("mean", "std", "min", "max")
_LABEL_FIELDS = (
    "min",
    "max",
    "mean",
    "std",
    "integral_fraction",
    "unit_interval_fraction",
    "one_hot_row_fraction",
    "row_sum_mean",
    "input_match_fraction",
)
# After the label fields: the shares of the labels' variance along their first principal
# directions (over one batch, per sample; NaN where a sample's label has one entry or more
# than _MAX_PRINCIPAL_FEATURES). They say how many directions the targets need, which a
# narrow layer in front of a regression's output cannot give.
_PRINCIPAL_SHARES = 8  # directions
_MAX_PRINCIPAL_FEATURES = 256  # label entries per sample
_LABEL_VECTOR = len(_LABEL_FIELDS) + _PRINCIPAL_SHARES


# Training steps between two records. At 100, recording costs under 3% of a
# small MLP's step time on a CPU (benchmarks/recording_overhead.py) while a
# 1,000-step run still gives the diagnosis ten points per series.
DEFAULT_EVERY_N_STEPS = 100  # steps

# --------------------------------------------------------------------------
# Assembling one record


def _output_labels(output_names):
    if len(output_names) == 1:
        return list(_OUTPUT_FIELDS)
    return ["%s/%s" % (name, field) for name in output_names for field in _OUTPUT_FIELDS]


def _record_vectors(
    index,
    guard,
    *,
    weight_stats=None,
    gradients=None,
    missing=None,
    activations=None,
    outputs=None,
    output_names=(),
    update_ratio=None,
    step_nonfinite=(0.0, 0.0, 0.0),
):
    """The vectors of one record, the NaN/Inf totals per source among them.

    gradients: [layers, 3] norm / zero count / NaN count, or None.
    activations: per activation layer a [5] array or None.
    outputs: per output a [6] array.
    step_nonfinite: NaN/Inf counts in inputs, labels and loss.
    weight_stats: per layer (sum of squares, NaN/Inf count) of its weights, or None.

    `index` names the layers: `layer_labels`, `layer_sizes`, `activation_layers`,
    `activation_labels`, `activation_names`.
    """
    labels = index.layer_labels
    vectors = []
    weights_nonfinite_total = 0.0
    if weight_stats is not None:
        weights_sumsq, weights_nonfinite = weight_stats
        vectors.append((metadata.WEIGHT_NORM, np.sqrt(weights_sumsq), labels, {}))
        vectors.append((metadata.WEIGHT_NONFINITE, weights_nonfinite, labels, {}))
        weights_nonfinite_total = float(np.sum(weights_nonfinite))
    grad_nonfinite_total = 0.0
    if gradients is not None and len(labels):
        gradients = np.asarray(gradients, dtype=np.float64).reshape(len(labels), 3)
        vectors.append((metadata.GRAD_NORM, gradients[:, 0], labels, {}))
        vectors.append(
            (metadata.GRAD_ZERO_COUNT, gradients[:, 1], labels, {"sizes": index.layer_sizes})
        )
        vectors.append((metadata.GRAD_NONFINITE, gradients[:, 2], labels, {}))
        vectors.append((metadata.GRAD_MISSING, np.asarray(missing, dtype=np.float64), labels, {}))
        grad_nonfinite_total = float(np.nansum(gradients[:, 2]))
    if update_ratio is not None:
        vectors.append((metadata.UPDATE_RATIO, update_ratio, labels, {}))
    act_nonfinite_total = 0.0
    if activations is not None and index.activation_layers:
        act = np.array(
            [a if a is not None else [np.nan] * len(_ACT_FIELDS) for a in activations],
            dtype=np.float64,
        )
        act_labels = index.activation_labels
        header = {"activations": index.activation_names}
        for name, column in (
            (metadata.ACT_MEAN, 0),
            (metadata.ACT_STD, 1),
            (metadata.ACT_DEAD_FRACTION, 2),
            (metadata.ACT_SATURATED_FRACTION, 3),
            (metadata.ACT_NONFINITE, 4),
        ):
            vectors.append((name, act[:, column], act_labels, header))
        act_nonfinite_total = float(np.nansum(act[:, 4]))
    if outputs:
        values = np.concatenate([np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs])
        out_labels = _output_labels(list(output_names))
        if len(values) == len(out_labels):
            vectors.append((metadata.OUTPUT_STATS, values, out_labels, {}))
    nonfinite = [
        float(step_nonfinite[0]),
        float(step_nonfinite[1]),
        float(step_nonfinite[2]),
        grad_nonfinite_total,
        weights_nonfinite_total,
        act_nonfinite_total,
    ]
    vectors.append((metadata.NONFINITE, nonfinite, list(metadata.NUMERICS_SOURCES), {}))
    return vectors


def _data_summary(
    input_names, feature_stats, label_stats, class_counts, x_dtypes, y_dtypes, y_shapes
):
    inputs = []
    for (name, _), stats, dtype in zip(input_names, feature_stats, x_dtypes):
        stats = np.asarray(stats, dtype=np.float64)
        stds = stats[:, 1]
        positive = stds[np.isfinite(stds) & (stds > 0)]
        inputs.append(
            {
                "name": name,
                "dtype": dtype,
                "features": int(stats.shape[0]),
                "mean": stats[:, 0].tolist(),
                "std": stds.tolist(),
                "min": stats[:, 2].tolist(),
                "max": stats[:, 3].tolist(),
                "abs_max": float(np.nanmax(np.abs(stats[:, 2:4]))) if stats.size else None,
                "scale_spread": float(positive.max() / positive.min()) if positive.size else None,
            }
        )
    labels = []
    for summary, counts, dtype, shape in zip(label_stats, class_counts, y_dtypes, y_shapes):
        summary = np.asarray(summary, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        entry = {name: float(value) for name, value in zip(_LABEL_FIELDS, summary)}
        shares = summary[len(_LABEL_FIELDS) :]
        if shares.size and np.isfinite(shares).all():
            entry["principal_shares"] = shares.tolist()
        entry["dtype"] = dtype
        entry["shape"] = shape
        entry["class_counts"] = counts.tolist()
        entry["distinct_classes"] = int(np.count_nonzero(counts))
        entry["encoding"] = (
            "one_hot"
            if entry["one_hot_row_fraction"] > 0.99
            else "sparse"
            if entry["integral_fraction"] > 0.99 and (shape[-1:] in ([1], []) or len(shape) <= 1)
            else "dense"
        )
        labels.append(entry)
    return {"inputs": inputs, "labels": labels}


def principal_shares(rows):
    """[_PRINCIPAL_SHARES] shares of the variance of `rows` ([samples, entries], numpy) along
    its first principal directions; NaN when there are too few samples or entries."""
    rows = np.asarray(rows, dtype=np.float64)
    shares = np.full(_PRINCIPAL_SHARES, np.nan)
    if rows.ndim != 2 or rows.shape[0] < 2 or not 2 <= rows.shape[1] <= _MAX_PRINCIPAL_FEATURES:
        return shares
    centered = rows - rows.mean(axis=0)
    eigenvalues = np.clip(np.linalg.eigvalsh(centered.T @ centered), 0.0, None)[::-1]
    total = eigenvalues.sum()
    if total > 0:
        top = eigenvalues[:_PRINCIPAL_SHARES] / total
        shares[: len(top)] = top
        shares[len(top) :] = 0.0
    return shares


def _package_version():
    from tb_plateau import __version__

    return __version__
