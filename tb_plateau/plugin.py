"""The Plateau tab: TensorBoard plugin serving the diagnosis and its evidence.

Routes (under ``/data/plugin/plateau/``), each a thin wrapper that reads and
validates its arguments, calls a pure ``*_impl`` function and answers through
`http_util.Respond`:

  /runs                    every diagnosable run with its verdict and top finding
  /diagnosis?run=NAME      exactly the CLI's run object (`diagnosis.run_report`)
  /series?run=NAME&tag=T   one series, downsampled for charts
  /index.js, /style.css, /vendor/...   the frontend, from an explicit allow-list

Runs are listed, and their changes detected, through `context.data_provider`
(under the default Rust data server `context.multiplexer` is None).
Diagnoses are cached per run and recomputed only when the run's data changes
(its tags' max step or wall time).

A run in a local logdir is read from its event files by the CLI's reader
(`rundata.read_run_directory`): every point, the same report as
`tb-plateau diagnose`, in a tenth of the time reading it back through the data
provider takes (benchmarks/tab_latency.py). It also reports what both
TensorBoard loaders pass over quietly (a corrupt record hides the rest of its
file), so a damaged run never looks complete. Runs elsewhere (gs://, a
multi-logdir name) are read through the data provider.
"""

import collections
import functools
import gzip
import importlib.resources
import logging
import os
import threading

import numpy as np
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.data import provider as provider_lib
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_plateau import metadata, rundata

logger = logging.getLogger("tb_plateau")

# Points sent per scalar series. A chart is ~1,000 px wide; min/max per bucket
# keeps spikes that a uniform stride would drop.
_SCALAR_POINTS = 1000  # points per series
# Steps (heatmap rows) sent per per-layer series.
_VECTOR_STEPS = 300  # steps per series

# How long `/runs` waits for the runs it found new or changed to be diagnosed
# before it answers with the rest marked pending.
_RUNS_WAIT_S = 2.0  # seconds

# Runs whose series stay in memory after their diagnosis; the others keep only
# their report, and `/series` reads the one series it is asked for. A
# 10,000-step, 50-layer run is ~60 MB of float64 series: a hundred such runs
# must not all stay in TensorBoard's memory.
_RUNS_WITH_SERIES_IN_MEMORY = 4  # runs

# Scalars of other plugins that make a run worth diagnosing.
_LOSS_WORD = "loss"

# Files the frontend may fetch: name -> (content type, seconds browsers may cache).
_STATIC_FILES = {
    "index.js": ("text/javascript", 0),
    "style.css": ("text/css", 0),
    # Pinned version (see frontend/vendor/README.md): safe to cache.
    "vendor/echarts.esm.min.js": ("text/javascript", 24 * 3600),
}

_FRONTEND_PACKAGE = "tb_plateau.frontend"


class RunUnreadableError(errors.PublicError):
    """The run exists but could not be read or diagnosed (corrupt data, an engine bug).

    422: the request was fine; this run's content could not be processed. The
    other runs are unaffected.
    """

    http_code = 422

    def __init__(self, details):
        super().__init__(details)


def _json_errors(route):
    """Answers `errors.PublicError` as JSON ``{"error": message}`` with its HTTP code.

    TensorBoard's own handler would answer text/plain; the tab and scripts
    read one format.
    """

    @functools.wraps(route)
    def wrapper(self, request):
        try:
            return route(self, request)
        except errors.PublicError as e:
            return http_util.Respond(
                request, {"error": str(e)}, "application/json", code=e.http_code
            )

    return wrapper


def _required_arg(request, name):
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError("missing required parameter %r" % name)
    if len(value) > 4096 or "\x00" in value:
        raise errors.InvalidArgumentError("parameter %r is malformed" % name)
    return value


class _Entry:
    """One run's cached reading and diagnosis.

    `problems`: what could not be read or checked, in plain words (the tab
    shows these apart from findings, and never calls such a run clean).
    """

    __slots__ = ("fingerprint", "data", "report", "error", "problems", "series", "incomplete")

    def __init__(self, fingerprint, data, report, error, problems=()):
        self.fingerprint = fingerprint
        self.data = data  # None when unreadable, or when dropped from memory
        self.report = report
        self.error = error
        self.problems = list(problems)
        self.series = _available_series(data) if data is not None else []
        self.incomplete = bool(
            error or (report or {}).get("incomplete") or getattr(data, "incomplete", False)
        )

    def notes(self):
        """The report's notes, less the one that only sums up `problems`."""
        from tb_plateau import diagnosis

        summary = getattr(diagnosis, "INCOMPLETE_NOTE", None)
        return [n for n in (self.report or {}).get("notes") or [] if n != summary]


class PlateauPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        self._logdir = getattr(context, "logdir", None) or ""
        self._cache = {}  # (experiment id, run name) -> _Entry
        self._cache_lock = threading.Lock()  # guards _cache, _pending, _run_locks, _worker
        # One lock per run: a run asked for twice at once is read once.
        self._run_locks = collections.defaultdict(threading.Lock)
        # Runs that `/runs` found undiagnosed or changed, diagnosed one at a
        # time by a background thread, so that listing 100 runs never waits
        # for reading 100 runs: (experiment id, run) -> request context.
        self._pending = collections.OrderedDict()
        self._worker = None
        self._in_progress = set()  # the key the worker is diagnosing now
        self._idle = threading.Event()  # set while nothing is queued
        self._idle.set()
        self._in_memory = collections.OrderedDict()  # key -> _Entry holding series, oldest first
        self._static_cache = {}  # file name -> gzipped bytes

    # -- TBPlugin -----------------------------------------------------------

    def get_plugin_apps(self):
        apps = {
            "/runs": self._serve_runs,
            "/diagnosis": self._serve_diagnosis,
            "/series": self._serve_series,
        }
        for name in _STATIC_FILES:
            apps["/" + name] = functools.partial(self._serve_static, name)
        return apps

    def is_active(self):
        # No I/O here: TensorBoard enables the tab when any run holds data of
        # a plugin named in `data_plugin_names` (ours, or scalars for a
        # loss-like scalar), from the data provider's cheap plugin listing.
        return False

    def data_plugin_names(self):
        return (metadata.PLUGIN_NAME, "scalars")

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Plateau")

    # -- routes -------------------------------------------------------------

    @wrappers.Request.application
    @_json_errors
    def _serve_runs(self, request):
        ctx, experiment = _context(request)
        return http_util.Respond(request, self.runs_impl(ctx, experiment), "application/json")

    @wrappers.Request.application
    @_json_errors
    def _serve_diagnosis(self, request):
        run = _required_arg(request, "run")
        ctx, experiment = _context(request)
        return http_util.Respond(
            request, self.diagnosis_impl(ctx, experiment, run), "application/json"
        )

    @wrappers.Request.application
    @_json_errors
    def _serve_series(self, request):
        run = _required_arg(request, "run")
        tag = _required_arg(request, "tag")
        ctx, experiment = _context(request)
        return http_util.Respond(
            request, self.series_impl(ctx, experiment, run, tag), "application/json"
        )

    @wrappers.Request.application
    def _serve_static(self, name, request):
        content_type, expires = _STATIC_FILES[name]
        body = self._static_cache.get(name)
        if body is None:
            raw = importlib.resources.files(_FRONTEND_PACKAGE).joinpath(name).read_bytes()
            body = gzip.compress(raw, compresslevel=6, mtime=0)
            self._static_cache[name] = body
        return http_util.Respond(
            request, body, content_type, expires=expires, content_encoding="gzip"
        )

    # -- implementations ----------------------------------------------------

    def runs_impl(self, ctx, experiment_id):
        """Every diagnosable run with its verdict and top finding.

        A run is diagnosable when it holds plateau data or a loss-like scalar.
        A Keras "…/validation" run is folded into its "…/train" sibling. A run
        that cannot be read or diagnosed is listed with an ``error``; the
        others are unaffected. Never reads a run's series itself: runs not yet
        diagnosed (or whose data changed since) are diagnosed in the
        background; it waits at most `_RUNS_WAIT_S` for them, and lists those
        still waiting with ``"pending": true`` (and their last verdict, if
        any); the tab asks again.
        """
        listing = _Listing(self._data_provider, ctx, experiment_id)
        names = listing.diagnosable_runs()
        fingerprints = {run: listing.fingerprint(run) for run in names}

        def is_current(run):
            entry = self._cached(experiment_id, run)
            return entry is not None and entry.fingerprint == fingerprints[run]

        queued = [self._enqueue(ctx, experiment_id, run) for run in names if not is_current(run)]
        if any(queued):
            # Runs this call found new or changed: a few small ones are diagnosed
            # within the wait (one answer has them all); a large logdir answers at
            # the bound, the rest pending. Polls while they wait do not wait again.
            self._idle.wait(_RUNS_WAIT_S)
        runs = []
        for run in names:
            item = _run_item(run, self._cached(experiment_id, run), listing)
            item["pending"] = not is_current(run)
            runs.append(item)
        return {"runs": runs}

    def diagnosis_impl(self, ctx, experiment_id, run):
        """The CLI's run object for one run."""
        entry = self._known_entry(ctx, experiment_id, run)
        if entry.report is None:
            raise RunUnreadableError("run %r could not be diagnosed: %s" % (run, entry.error))
        return entry.report

    def series_impl(self, ctx, experiment_id, run, tag):
        """One series of a run, downsampled for a chart.

        ``tag`` is a full tag: a tb_plateau tag ("plateau/grad_norm",
        "plateau/epoch/val_loss", "plateau/config") or any other scalar tag of
        the run ("epoch_loss").
        """
        listing = self._listing(ctx, experiment_id, run)
        entry = self._entry(ctx, experiment_id, run, listing)
        data = entry.data
        if data is None and entry.series:
            # Dropped from memory since its diagnosis: a local run is read again
            # whole (the tab asks for several of its series in a row); any
            # other, this one series through the data provider.
            try:
                if self._run_dir(run) is not None:
                    data = _read_run_data(
                        self._data_provider, ctx, experiment_id, run, listing, self._run_dir
                    )
                    entry.data = data
                    self._keep_in_memory((experiment_id, run), entry)
                else:
                    one_tag = _OneTagProvider(self._data_provider, tag)
                    data = rundata.from_provider(one_tag, ctx, experiment_id, run)
            except errors.PublicError:
                raise
            except Exception as e:  # noqa: BLE001 - shown as this run's error, not a 500
                raise RunUnreadableError(
                    "run %r could not be read: %s" % (run, _describe(e))
                ) from e
        if data is None:
            raise RunUnreadableError("run %r could not be read: %s" % (run, entry.error))
        return series_from_run_data(data, run, tag)

    # -- cache --------------------------------------------------------------

    def _keep_in_memory(self, key, entry):
        """Keeps the series of the runs used last; drops the others' (reports stay)."""
        with self._cache_lock:
            self._in_memory.pop(key, None)
            self._in_memory[key] = entry
            while len(self._in_memory) > _RUNS_WITH_SERIES_IN_MEMORY:
                _, dropped = self._in_memory.popitem(last=False)
                dropped.data = None

    def _cached(self, experiment_id, run):
        with self._cache_lock:
            return self._cache.get((experiment_id, run))

    def _enqueue(self, ctx, experiment_id, run):
        """Queues a run for the background worker; True if it was not queued yet."""
        key = (experiment_id, run)
        with self._cache_lock:
            if key in self._pending or key in self._in_progress:
                return False
            self._pending[key] = ctx
            self._idle.clear()
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._diagnose_pending, name="tb_plateau-diagnosis", daemon=True
                )
                self._worker.start()
        return True

    def _diagnose_pending(self):
        """Background: diagnoses queued runs one at a time, then ends."""
        while True:
            with self._cache_lock:
                if not self._pending:
                    self._worker = None
                    self._idle.set()
                    return
                (experiment_id, run), ctx = self._pending.popitem(last=False)
                self._in_progress.add((experiment_id, run))
            try:
                listing = _Listing(self._data_provider, ctx, experiment_id, run=run)
                if run in listing.run_names:
                    self._entry(ctx, experiment_id, run, listing)
            except Exception:  # noqa: BLE001 - the run is tried again on its next request
                logger.exception("tb_plateau: background diagnosis of run %r failed", run)
            finally:
                with self._cache_lock:
                    self._in_progress.discard((experiment_id, run))

    def _listing(self, ctx, experiment_id, run):
        """The listing of one run (and its sibling); NotFoundError if there is no such run."""
        listing = _Listing(self._data_provider, ctx, experiment_id, run=run)
        if run not in listing.run_names:
            raise errors.NotFoundError("no run named %r" % run)
        return listing

    def _known_entry(self, ctx, experiment_id, run):
        return self._entry(ctx, experiment_id, run, self._listing(ctx, experiment_id, run))

    def _entry(self, ctx, experiment_id, run, listing):
        """The run's entry for its current data: cached, or read and diagnosed now."""
        fingerprint = listing.fingerprint(run)
        key = (experiment_id, run)
        entry = self._cached(experiment_id, run)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry
        with self._cache_lock:
            run_lock = self._run_locks[key]
        with run_lock:
            entry = self._cached(experiment_id, run)
            if entry is not None and entry.fingerprint == fingerprint:
                return entry  # diagnosed meanwhile by another request or the worker
            entry = _diagnose(
                self._data_provider, ctx, experiment_id, run, listing, fingerprint, self._run_dir
            )
            with self._cache_lock:
                self._cache[key] = entry
                self._pending.pop(key, None)
            if entry.data is not None:
                self._keep_in_memory(key, entry)
        return entry

    def _run_dir(self, run):
        """The run's local directory, or None (a remote or multi-logdir name)."""
        if not self._logdir or "://" in self._logdir:
            return None
        path = os.path.join(self._logdir, *run.split("/")) if run != "." else self._logdir
        return path if os.path.isdir(path) else None


class _OneTagProvider:
    """A data provider narrowed to one tag.

    `rundata.from_provider` through it reads one series of a run, decoded
    exactly as the whole run is, at the cost of that series alone.
    """

    def __init__(self, data_provider, tag):
        self._data_provider = data_provider
        self._tag = tag

    def _narrowed(self, kwargs):
        run_filter = kwargs.get("run_tag_filter")
        runs = run_filter.runs if run_filter is not None else None
        kwargs["run_tag_filter"] = provider_lib.RunTagFilter(runs=runs, tags=[self._tag])
        return kwargs

    def list_scalars(self, ctx, **kwargs):
        return self._data_provider.list_scalars(ctx, **self._narrowed(kwargs))

    def list_tensors(self, ctx, **kwargs):
        return self._data_provider.list_tensors(ctx, **self._narrowed(kwargs))

    def read_scalars(self, ctx, **kwargs):
        return self._data_provider.read_scalars(ctx, **self._narrowed(kwargs))

    def read_tensors(self, ctx, **kwargs):
        return self._data_provider.read_tensors(ctx, **self._narrowed(kwargs))


def _run_item(run, entry, listing):
    """One run of `/runs`, from its (possibly missing or stale) cache entry."""
    max_step, last_wall_time = listing.last_update(run)
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


def _context(request):
    from tensorboard import plugin_util

    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


class _Listing:
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


def _diagnose(data_provider, ctx, experiment_id, run, listing, fingerprint, run_dir):
    """Reads and diagnoses one run; a failure is kept as the entry's error.

    `run_dir(name)` is a run's local directory, or None. A local run is read
    from its event files by `rundata.read_run_directory` (the CLI's reader:
    the same report in the tab and in the terminal, records TensorBoard's
    readers skip reported); others through the data provider.
    """

    def entry(data, report, error):
        if report is not None:
            problems = list(report.get("problems") or [])
        else:
            problems = list(data.problems) if data is not None else []
        if error is not None:
            problems.append(error)
        return _Entry(fingerprint, data, report, error, problems)

    try:
        data = _read_run_data(data_provider, ctx, experiment_id, run, listing, run_dir)
    except errors.PublicError:
        raise
    except Exception as e:  # noqa: BLE001 - one unreadable run must not break the others
        return entry(None, None, "unreadable run: %s" % _describe(e))
    try:
        from tb_plateau import diagnosis

        report = diagnosis.run_report(data)
    except Exception as e:  # noqa: BLE001 - an engine failure is shown, not a 500
        return entry(data, None, "diagnosis failed: %s" % _describe(e))
    return entry(data, report, None)


def _read_run_data(data_provider, ctx, experiment_id, run, listing, run_dir):
    """A run's `RunData`, its Keras validation sibling's scalars folded in.

    A local run is read from its files (`rundata.read_run_directory`, the
    CLI's reader); any other through the data provider.
    """

    def read(name):
        directory = run_dir(name)
        if directory is not None:
            return rundata.read_run_directory(directory, name)
        return rundata.from_provider(data_provider, ctx, experiment_id, name)

    return rundata.read_with_validation_sibling(read, run, listing.run_names)


def _describe(exception):
    return "%s: %s" % (type(exception).__name__, exception)


def _available_series(data):
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
