"""Live verdicts: the diagnosis of a run while it trains, off the training thread.

The recorder's writer tells a `LiveVerdict` each record it writes; the verdict
keeps the run in memory (`RunLog`, no reading back of files) and, on a thread
of its own, runs the same `diagnosis` the CLI and the tab run. When the root
cause it names first appears or changes, it logs one line through the
`tb_plateau` logger and writes a verdict record into the run (read back as
`RunData.verdicts`, reported as each finding's `first_named_step`). Asked to
(`stop_on="critical"`), it says when a critical root cause has held for
STOP_AFTER_RECORDS records, and the recorder stops the training.

Its cost is bounded: a diagnosis runs after a record, at most one at a time,
and after a diagnosis that took d seconds the next waits d / DUTY, so the
diagnosis thread takes at most DUTY of the run's wall time.

Framework-neutral: it needs numpy and the diagnosis, not TensorFlow.
"""

import logging
import threading
import time

import numpy as np

from tb_plateau import metadata

logger = logging.getLogger("tb_plateau.live")  # a child: configuring "tb_plateau" covers it

# The share of wall time the diagnosis thread may take (see the module docstring).
DUTY = 0.02
# A verdict needs this many records of the batch loss: fewer say nothing about a curve.
MIN_RECORDS = 5  # records
# A critical root cause stops the run (when asked) once it has held this many records.
STOP_AFTER_RECORDS = 3  # records
# Causes about how a run ended: a run still training is not judged on them.
ENDING_CAUSES = frozenset(["not_converged"])
# Severities, in order, that a verdict names and `stop_on` accepts.
SEVERITIES = ("warning", "critical")


def check_stop_on(stop_on):
    """`stop_on` as given, when it is None or one of SEVERITIES; else a ValueError naming it."""
    if stop_on is None or stop_on in SEVERITIES:
        return stop_on
    raise ValueError("stop_on must be None, 'warning' or 'critical', got %r" % (stop_on,))


class RunLog:
    """One run's records, kept in memory as they are written; `snapshot` gives its RunData."""

    def __init__(self, name):
        self.name = name
        self._lock = threading.Lock()
        self._scalars = {}  # name -> ([steps], [values])
        self._vectors = {}  # name -> ([steps], [rows], labels, header)
        self.config = None
        self.records = 0  # records holding the batch loss
        self.last_step = None

    def add(self, step, scalars, vectors, config=None):
        with self._lock:
            for name, value in scalars:
                steps, values = self._scalars.setdefault(name, ([], []))
                steps.append(step)
                values.append(float(value))
                if name == metadata.BATCH_LOSS:
                    self.records += 1
            for name, values, labels, extra in vectors:
                entry = self._vectors.get(name)
                if entry is None or entry[2] != list(labels):
                    # (New labels, a model changed mid-run: the newer layout wins.)
                    entry = self._vectors[name] = ([], [], list(labels), dict(extra))
                entry[0].append(step)
                entry[1].append(np.asarray(values, dtype=np.float64).reshape(-1))
            if config is not None:
                self.config = config
            self.last_step = step if self.last_step is None else max(self.last_step, step)

    def snapshot(self):
        """The run so far, as the diagnosis reads it."""
        from tb_plateau.rundata import RunData, VectorSeries, series_from_points

        with self._lock:
            scalars = {n: (list(s), list(v)) for n, (s, v) in self._scalars.items()}
            vectors = {n: (list(s), list(r), lb, h) for n, (s, r, lb, h) in self._vectors.items()}
            config = self.config
        data = RunData(name=self.name, config=config)
        for name, (steps, values) in scalars.items():
            data.scalars[name] = series_from_points(steps, values)
        for name, (steps, rows, labels, header) in vectors.items():
            order = np.argsort(np.asarray(steps), kind="stable")
            data.vectors[name] = VectorSeries(
                np.asarray(steps, dtype=np.int64)[order],
                np.stack(rows)[order],
                labels,
                dict(header, labels=labels),
            )
        return data


def _root(findings, final=False):
    """The first warning/critical finding that no other explains, or None; while the run
    trains, not one about how it ended."""
    for finding in findings:
        if finding.severity in SEVERITIES and finding.explained_by is None:
            if final or finding.cause not in ENDING_CAUSES:
                return finding
    return None


class LiveHandle:
    """What a recorder for a training loop offers around its live verdict (`self._live`, a
    `LiveVerdict` or None): use as a context manager (`close` at exit), and
    `stop_requested` for the loop to read."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def stop_requested(self):
        """With `stop_on`: the reason (a logged line) once the loop should stop, else None."""
        return None if self._live is None else self._live.stop_reason


class LiveVerdict:
    """Diagnoses a run while it trains (see the module docstring).

    Args:
      writer: the run's `_RunWriter`; its records feed the verdict, and the
        verdict records go through it.
      name: the run's name, for the log lines.
      stop_on: None (never stop), "warning" or "critical": the least severity
        of a root cause that asks the training to stop.
    """

    def __init__(self, writer, name, stop_on=None):
        self.stop_on = check_stop_on(stop_on)
        self.log = RunLog(name)
        self.stop_reason = None  # set once the run should stop: the line logged
        self._writer = writer
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._closed = False
        self._not_before = 0.0
        self._started = time.time()
        self._named = None  # (cause, severity) of the current root cause
        self._written = {}  # {cause: severity} of the last verdict record
        self._held_since = None  # records count when the current root was first named
        self._seen = set()  # causes already logged
        self._lock = threading.Lock()  # one diagnosis at a time
        writer.listener = self._on_record
        self._thread = threading.Thread(target=self._loop, name="tb_plateau-live", daemon=True)
        self._thread.start()

    def _on_record(self, step, scalars, vectors, config):
        self.log.add(step, scalars, vectors, config)
        self._wake.set()

    def urgent(self):
        """Diagnoses after the next record without waiting for the duty bound: something
        changed (a loss spike, a new learning rate, the first NaN)."""
        self._not_before = 0.0
        self._urgent.set()

    def _loop(self):
        from tb_plateau import diagnosis, rundata  # noqa: F401 (imported once, not timed)

        while True:
            self._wake.wait()
            if self._closed:
                return
            wait = self._not_before - time.time()
            if wait > 0:
                # The duty bound (records that come meanwhile are read then), cut short
                # by `urgent`.
                self._urgent.wait(wait)
                if self._closed:
                    return
            self._urgent.clear()
            self._wake.clear()
            try:
                self.update()
            except Exception as e:  # a verdict is never worth a training
                logger.warning("tb_plateau: live diagnosis failed and stops: %s", e)
                return

    def update(self, final=False):
        """Diagnoses the run so far; logs and records a new root cause. Returns it, or None."""
        with self._lock:
            if self.log.records < MIN_RECORDS and not final:
                return None
            from tb_plateau import diagnosis

            began = time.time()
            data = self.log.snapshot()
            findings = diagnosis.diagnose(data, live=not final)
            spent = time.time() - began
            self._not_before = time.time() + spent / DUTY
            root = _root(findings, final)
            self._note(root, findings, final)
            return root

    def _note(self, root, findings, final):
        step = self.log.last_step if self.log.last_step is not None else 0
        named = _named_causes(findings)
        key = None if root is None else (root.cause, root.severity)
        if key != self._named:
            self._named = key
            self._held_since = self.log.records
            if root is not None and root.cause not in self._seen:
                self._seen.add(root.cause)
                logger.warning("%s", self._line(step, root))
        if named != self._written:
            # Every change of what is named (a new symptom too) is recorded, with its step.
            self._written = named
            self._write(step, root, named)
        if root is not None and self._should_stop(root) and self.stop_reason is None:
            held = self.log.records - self._held_since + 1
            # A stop is pending: the next records are looked at as they come, not after
            # the duty wait, so that the training stops as soon as the cause has held.
            self._not_before = 0.0
            if held >= STOP_AFTER_RECORDS:
                self.stop_reason = "%s (held for %d records); stopping the training." % (
                    self._line(step, root),
                    held,
                )
                logger.warning("%s", self.stop_reason)

    def _should_stop(self, root):
        if self.stop_on is None or root.cause == "unexplained_plateau":
            return False
        return SEVERITIES.index(root.severity) >= SEVERITIES.index(self.stop_on)

    def _line(self, step, root):
        fix = " Fix: %s" % root.fixes[0].splitlines()[0].lstrip("# ") if root.fixes else ""
        return "tb_plateau: %s: step %d: %s: %s.%s" % (
            self.log.name,
            step,
            root.severity,
            root.title,
            fix,
        )

    def _write(self, step, root, named):
        verdict = {
            "root": None if root is None else root.cause,
            "severity": "healthy" if root is None else root.severity,
            "title": "" if root is None else root.title,
            "causes": dict(named),
            "elapsed_s": round(time.time() - self._started, 3),
        }
        self._writer.write(step, verdict=verdict)

    def close(self):
        """Stops the thread, then gives the whole run one last verdict."""
        self._closed = True
        self._wake.set()
        self._urgent.set()
        self._thread.join(timeout=30)
        try:
            self.update(final=True)
        except Exception as e:
            logger.warning("tb_plateau: live diagnosis failed: %s", e)


def _named_causes(findings):
    return {
        f.cause: f.severity
        for f in findings
        if f.severity in SEVERITIES and f.cause not in ENDING_CAUSES
    }
