"""The regular records of a run that was recorded densely at first.

The recorder writes every step of a run's first steps, then at doubling gaps,
then every `every_n_steps` (and densely again after a spike or a new learning
rate). The checks read a curve's shape and its medians over records as if the
records were evenly spaced: once the regular grid holds most of a run, the
dense extra records are left out of the plateau series, so that the first
steps do not weigh as much as the rest of the run. Records that hold a NaN/Inf
loss, and the step after one (recorded whole), are always kept. A short run,
still mostly dense, is read with every record (what a live verdict needs).
"""

import dataclasses

import numpy as np

from tb_plateau import metadata

# The grid is "regular" when this many records lie on it.
MIN_GRID_RECORDS = 8  # records


def _grid(steps):
    """(spacing, residue) of the most common gap between records, or None below 2."""
    gaps = np.diff(steps)
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return None
    values, counts = np.unique(gaps, return_counts=True)
    spacing = int(values[np.argmax(counts)])
    if spacing < 2:
        return None
    residues, counts = np.unique(np.asarray(steps) % spacing, return_counts=True)
    return spacing, int(residues[np.argmax(counts)])


def dense_extra_steps(run):
    """The steps of the batch-loss records that lie off the regular grid (a set)."""
    loss = run.scalars.get(metadata.BATCH_LOSS)
    if loss is None or len(loss) < MIN_GRID_RECORDS:
        return set()
    steps = np.asarray(loss.steps, dtype=np.int64)
    grid = _grid(steps)
    if grid is None:
        return set()
    spacing, residue = grid
    on_grid = steps % spacing == residue
    if on_grid.sum() < MIN_GRID_RECORDS:
        return set()
    bad = ~np.isfinite(np.asarray(loss.values, float))
    keep = on_grid | bad | np.isin(steps - 1, steps[bad])
    return set(int(s) for s in steps[~keep])


def regular_view(run):
    """`run` with the dense extra records left out of its plateau series (a shallow copy)."""
    extra = dense_extra_steps(run)
    if not extra:
        return run
    kept = set(int(s) for s in run.scalars[metadata.BATCH_LOSS].steps) - extra

    def dropped(step, name):
        # (A custom loop writes a record's update ratio one step after it.)
        late = name == metadata.UPDATE_RATIO and step - 1 in extra and step not in kept
        return step in extra or late

    def thin(series, name):
        keep = np.array([not dropped(int(s), name) for s in series.steps], dtype=bool)
        if keep.all():
            return series
        return dataclasses.replace(series, steps=series.steps[keep], values=series.values[keep])

    scalars = {
        # Epoch ends are their own grid.
        name: series if name.startswith(metadata.EPOCH_PREFIX) else thin(series, name)
        for name, series in run.scalars.items()
    }
    vectors = {name: thin(series, name) for name, series in run.vectors.items()}
    return dataclasses.replace(run, scalars=scalars, vectors=vectors)
