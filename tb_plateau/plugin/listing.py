"""The cheap listing of a logdir's runs (names, tags, last steps) and `/runs` items."""

import logging
import time

from tensorboard.data import provider as provider_lib

from tb_plateau import metadata, rundata

logger = logging.getLogger("tb_plateau")


# Scalars of other plugins that make a run worth diagnosing.
_LOSS_WORD = "loss"


class Listing:
    """The cheap metadata of every run: names, tags, max steps and wall times."""

    def __init__(self, data_provider, ctx, experiment_id, run=None):
        runs = data_provider.list_runs(ctx, experiment_id=experiment_id)
        self.run_names = {r.run_name for r in runs}
        run_filter = None
        if run is not None:
            runs = [run]
            sibling = rundata.keras_validation_sibling(run, self.run_names)
            if sibling:
                runs.append(sibling)
            run_filter = provider_lib.RunTagFilter(runs=runs)
        kwargs = dict(experiment_id=experiment_id, run_tag_filter=run_filter)
        self.plateau = _merge(
            data_provider.list_scalars(ctx, plugin_name=metadata.PLUGIN_NAME, **kwargs),
            data_provider.list_tensors(ctx, plugin_name=metadata.PLUGIN_NAME, **kwargs),
        )
        self.scalars = data_provider.list_scalars(ctx, plugin_name="scalars", **kwargs)

    def validation_sibling(self, run):
        return rundata.keras_validation_sibling(run, self.run_names)

    def diagnosable_runs(self):
        names = []
        for run in sorted(self.run_names):
            if rundata.is_keras_validation_run(run, self.run_names):
                continue
            loss_like = any(_LOSS_WORD in tag.lower() for tag in self.scalars.get(run, {}))
            if self.plateau.get(run) or loss_like:
                names.append(run)
        return names

    def last_update(self, run):
        """(max step, max wall time) over the run's tags; what the tab polls on."""
        parts = self.fingerprint(run)
        if not parts:
            return None, None
        return max(p[2] for p in parts), max(p[3] for p in parts)

    def fingerprint(self, run):
        """Changes whenever new data reaches the run (or its validation sibling)."""
        runs = [run]
        sibling = self.validation_sibling(run)
        if sibling:
            runs.append(sibling)
        parts = []
        for name in runs:
            for source in (self.plateau, self.scalars):
                for tag, series in sorted(source.get(name, {}).items()):
                    parts.append((name, tag, series.max_step, series.max_wall_time))
        return tuple(parts)


def _merge(*listings):
    merged = {}
    for listing in listings:
        for run, tags in listing.items():
            merged.setdefault(run, {}).update(tags)
    return merged


# A run whose last event is this recent is still being written (the tab marks it
# "live"): a few times TensorBoard's 30 s reload, and long enough for a training
# that records every 100 steps of a second each.
LIVE_SECONDS = 120.0  # seconds


def run_item(run, entry, listing, now=None):
    """One run of `/runs`, from its (possibly missing or stale) cache entry."""
    max_step, last_wall_time = listing.last_update(run)
    now = time.time() if now is None else now
    item = {
        "run": run,
        "verdict": None,
        "status": None,
        "top_finding": None,
        "findings_count": 0,
        "series": [],
        "validation_run": listing.validation_sibling(run),
        "max_step": max_step,
        "last_wall_time": last_wall_time,
        "live": last_wall_time is not None and 0 <= now - last_wall_time < LIVE_SECONDS,
        "incomplete": False,
        "problems": [],
        "notes": [],
    }
    if entry is None:
        return item
    item["series"] = entry.series
    if entry.report is not None:
        findings = entry.report.get("findings") or []
        item["verdict"] = entry.report.get("verdict")
        item["status"] = entry.report.get("status")
        item["findings_count"] = len(findings)
        if findings:
            item["top_finding"] = {
                key: findings[0].get(key) for key in ("cause", "severity", "confidence", "title")
            }
    if entry.error is not None:
        item["error"] = entry.error
    # What could not be read: the tab must not call such a run clean.
    item["problems"] = entry.problems
    item["incomplete"] = entry.incomplete
    # The report's notes (not recorded with tb_plateau, no loss).
    item["notes"] = entry.notes()
    return item
