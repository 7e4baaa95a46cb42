"""The JSON bodies of `/series`: one series of a run, downsampled for a chart."""

import logging

import numpy as np
from tensorboard import errors

from tb_plateau import metadata

logger = logging.getLogger("tb_plateau")


# Points sent per scalar series. A chart is ~1,000 px wide; min/max per bucket
# keeps spikes that a uniform stride would drop.
_SCALAR_POINTS = 1000  # points per series


# Steps (heatmap rows) sent per per-layer series.
_VECTOR_STEPS = 300  # steps per series


def available_series(data):
    """The full tags a chart may ask `/series` for, tb_plateau's first."""
    tags = [metadata.tag(name) for name in sorted(data.scalars)]
    tags += [metadata.tag(name) for name in sorted(data.vectors)]
    if data.config is not None:
        tags.append(metadata.tag(metadata.CONFIG))
    tags += sorted(data.other_scalars)
    return tags


def series_from_run_data(data, run, tag):
    """The JSON body of `/series` for one tag of a `RunData`."""
    name = metadata.short_name(tag)
    if name == metadata.CONFIG:
        if data.config is None:
            raise errors.NotFoundError("run %r has no configuration record" % run)
        return {"run": run, "tag": tag, "kind": "config", "config": data.config}
    if name is not None and name in data.scalars:
        return _scalar_body(run, tag, data.scalars[name])
    if name is not None and name in data.vectors:
        return _vector_body(run, tag, data.vectors[name])
    if tag in data.other_scalars:
        return _scalar_body(run, tag, data.other_scalars[tag])
    raise errors.NotFoundError("run %r has no series %r" % (run, tag))


def _scalar_body(run, tag, series):
    keep = downsample_min_max(series.values, _SCALAR_POINTS)
    return {
        "run": run,
        "tag": tag,
        "kind": "scalar",
        "steps": series.steps[keep].tolist(),
        "values": series.values[keep].tolist(),
        "total_points": len(series),
    }


def _vector_body(run, tag, series):
    keep = downsample_uniform(len(series), _VECTOR_STEPS)
    header = {k: v for k, v in series.header.items() if k not in ("labels", "version")}
    return {
        "run": run,
        "tag": tag,
        "kind": "vector",
        "labels": list(series.labels),
        "steps": series.steps[keep].tolist(),
        "values": series.values[keep].tolist(),
        "header": header,
        "total_points": len(series),
    }


def downsample_uniform(length, max_points):
    """Indices of at most `max_points` evenly spaced rows, first and last kept."""
    if length <= max_points:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_points).round().astype(np.int64))


def downsample_min_max(values, max_points):
    """Indices keeping each bucket's min and max (and first and last point).

    Spikes, the NaN that ended a run and the plateau's floor survive; a uniform
    stride would drop them. Non-finite points are always kept.
    """
    values = np.asarray(values, dtype=np.float64)
    length = len(values)
    if length <= max_points:
        return np.arange(length)
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, length, buckets + 1).astype(np.int64)
    finite = np.isfinite(values)
    keep = [0, length - 1]
    for start, end in zip(edges[:-1], edges[1:]):
        if end <= start:
            continue
        chunk = values[start:end]
        ok = finite[start:end]
        if ok.any():
            masked_low = np.where(ok, chunk, np.inf)
            masked_high = np.where(ok, chunk, -np.inf)
            keep.append(start + int(np.argmin(masked_low)))
            keep.append(start + int(np.argmax(masked_high)))
        if not ok.all():
            keep.append(start + int(np.argmin(ok)))  # the first non-finite point
    return np.unique(np.asarray(keep, dtype=np.int64))
