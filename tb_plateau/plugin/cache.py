"""The run cache of the tab and its background worker: each run read and diagnosed once
per change of its data."""

import collections
import logging
import os
import threading

from tensorboard import errors
from tensorboard.data import provider as provider_lib

from tb_plateau import rundata
from tb_plateau.plugin import bodies
from tb_plateau.plugin import listing as listing_lib

logger = logging.getLogger("tb_plateau")


# Runs whose series stay in memory after their diagnosis; the others keep only
# their report, and `/series` reads the one series it is asked for. A
# 10,000-step, 50-layer run is ~60 MB of float64 series: a hundred such runs
# must not all stay in TensorBoard's memory.
_RUNS_WITH_SERIES_IN_MEMORY = 4  # runs


class RunUnreadableError(errors.PublicError):
    """The run exists but could not be read or diagnosed (corrupt data, an engine bug).

    422: the request was fine; this run's content could not be processed. The
    other runs are unaffected.
    """

    http_code = 422

    def __init__(self, details):
        super().__init__(details)


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
        self.series = bodies.available_series(data) if data is not None else []
        self.incomplete = bool(
            error or (report or {}).get("incomplete") or getattr(data, "incomplete", False)
        )

    def notes(self):
        """The report's notes, less the one that only sums up `problems`."""
        from tb_plateau import diagnosis

        summary = getattr(diagnosis, "INCOMPLETE_NOTE", None)
        return [n for n in (self.report or {}).get("notes") or [] if n != summary]


class RunCache:
    """Each run's reading and diagnosis, cached until its data changes.

    Runs `/runs` finds new or changed are diagnosed one at a time by a
    background thread; a run asked for directly is read and diagnosed at
    once (once, however many requests ask for it together). Only the runs
    used last keep their series in memory.
    """

    def __init__(self, data_provider, logdir):
        self._data_provider = data_provider
        self._logdir = logdir or ""
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

    def wait_idle(self, seconds):
        """Waits up to `seconds` for the queued runs to be diagnosed."""
        self._idle.wait(seconds)

    def entries(self):
        """The cached entries (a snapshot)."""
        with self._cache_lock:
            return list(self._cache.values())

    def series_data(self, ctx, experiment_id, run, tag):
        """The `RunData` to draw `tag` of `run` from: held, read again, or that one series."""
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
        return data

    def _keep_in_memory(self, key, entry):
        """Keeps the series of the runs used last; drops the others' (reports stay)."""
        with self._cache_lock:
            self._in_memory.pop(key, None)
            self._in_memory[key] = entry
            while len(self._in_memory) > _RUNS_WITH_SERIES_IN_MEMORY:
                _, dropped = self._in_memory.popitem(last=False)
                dropped.data = None

    def cached(self, experiment_id, run):
        with self._cache_lock:
            return self._cache.get((experiment_id, run))

    def enqueue(self, ctx, experiment_id, run):
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
                listing = listing_lib.Listing(self._data_provider, ctx, experiment_id, run=run)
                if run in listing.run_names:
                    self._entry(ctx, experiment_id, run, listing)
            except Exception:  # noqa: BLE001 - the run is tried again on its next request
                logger.exception("tb_plateau: background diagnosis of run %r failed", run)
            finally:
                with self._cache_lock:
                    self._in_progress.discard((experiment_id, run))

    def _listing(self, ctx, experiment_id, run):
        """The listing of one run (and its sibling); NotFoundError if there is no such run."""
        listing = listing_lib.Listing(self._data_provider, ctx, experiment_id, run=run)
        if run not in listing.run_names:
            raise errors.NotFoundError("no run named %r" % run)
        return listing

    def known_entry(self, ctx, experiment_id, run):
        return self._entry(ctx, experiment_id, run, self._listing(ctx, experiment_id, run))

    def _entry(self, ctx, experiment_id, run, listing):
        """The run's entry for its current data: cached, or read and diagnosed now."""
        fingerprint = listing.fingerprint(run)
        key = (experiment_id, run)
        entry = self.cached(experiment_id, run)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry
        with self._cache_lock:
            run_lock = self._run_locks[key]
        with run_lock:
            entry = self.cached(experiment_id, run)
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
