"""The Plateau tab: TensorBoard plugin serving the diagnosis and its evidence.

This module holds the routes; `cache` (each run read and diagnosed once per
change of its data, a background worker), `listing` (the cheap listing of
runs) and `bodies` (the JSON of `/series`) do the work.

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

import functools
import gzip
import importlib.resources
import logging

from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_plateau import metadata
from tb_plateau.plugin import bodies, cache
from tb_plateau.plugin import listing as listing_lib

logger = logging.getLogger("tb_plateau")


# How long `/runs` waits for the runs it found new or changed to be diagnosed
# before it answers with the rest marked pending.
_RUNS_WAIT_S = 2.0  # seconds


# Files the frontend may fetch: name -> (content type, seconds browsers may cache).
_STATIC_FILES = {
    "index.js": ("text/javascript", 0),
    # The modules index.js imports (frontend/*.js, one concern each).
    "common.js": ("text/javascript", 0),
    "api.js": ("text/javascript", 0),
    "runlist.js": ("text/javascript", 0),
    "findings.js": ("text/javascript", 0),
    "charts.js": ("text/javascript", 0),
    "config.js": ("text/javascript", 0),
    "style.css": ("text/css", 0),
    # Pinned version (see frontend/vendor/README.md): safe to cache.
    "vendor/echarts.esm.min.js": ("text/javascript", 24 * 3600),
}


_FRONTEND_PACKAGE = "tb_plateau.frontend"


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


def _context(request):
    from tensorboard import plugin_util

    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


class PlateauPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        self._runs = cache.RunCache(self._data_provider, getattr(context, "logdir", None))
        self._static_cache = {}  # file name -> gzipped bytes

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
        listing = listing_lib.Listing(self._data_provider, ctx, experiment_id)
        names = listing.diagnosable_runs()
        fingerprints = {run: listing.fingerprint(run) for run in names}

        def is_current(run):
            entry = self._runs.cached(experiment_id, run)
            return entry is not None and entry.fingerprint == fingerprints[run]

        queued = [
            self._runs.enqueue(ctx, experiment_id, run) for run in names if not is_current(run)
        ]
        if any(queued):
            # Runs this call found new or changed: a few small ones are diagnosed
            # within the wait (one answer has them all); a large logdir answers at
            # the bound, the rest pending. Polls while they wait do not wait again.
            self._runs.wait_idle(_RUNS_WAIT_S)
        runs = []
        for run in names:
            item = listing_lib.run_item(run, self._runs.cached(experiment_id, run), listing)
            item["pending"] = not is_current(run)
            runs.append(item)
        return {"runs": runs}

    def diagnosis_impl(self, ctx, experiment_id, run):
        """The CLI's run object for one run."""
        entry = self._runs.known_entry(ctx, experiment_id, run)
        if entry.report is None:
            raise cache.RunUnreadableError("run %r could not be diagnosed: %s" % (run, entry.error))
        return entry.report

    def series_impl(self, ctx, experiment_id, run, tag):
        """One series of a run, downsampled for a chart.

        ``tag`` is a full tag: a tb_plateau tag ("plateau/grad_norm",
        "plateau/epoch/val_loss", "plateau/config") or any other scalar tag of
        the run ("epoch_loss").
        """
        data = self._runs.series_data(ctx, experiment_id, run, tag)
        return bodies.series_from_run_data(data, run, tag)
