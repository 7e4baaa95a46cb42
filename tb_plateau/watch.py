"""`tb-plateau watch LOGDIR`: follows a logdir that trainings are writing, and prints each
run's findings as they appear.

For runs in other processes or on other machines (any path TensorBoard reads):
every `interval` seconds it reads the runs whose event files changed and
diagnoses them with the same `diagnosis` as `tb-plateau diagnose`. A finding is
printed when it first appears at warning or critical severity, or becomes more
severe; how a run ended ("not converged") is left to `diagnose`, since a
training still running is not ended. Ctrl-C exits 0; with `exit_on`, the first
finding of at least that severity exits 1, for CI jobs and schedulers that
should stop a job.
"""

import os
import sys
import time

from tb_plateau.live import ENDING_CAUSES, SEVERITIES

EXIT_OK = 0
EXIT_FOUND = 1


def _signature(logdir, run):
    """What changes when a local run is written to: its event files' names, sizes and
    modification times; None for a remote path (always read again)."""
    if "://" in logdir:
        return None
    path = os.path.join(logdir, run) if run != "." else logdir
    try:
        names = sorted(n for n in os.listdir(path) if "tfevents" in n)
        return tuple((n, os.stat(os.path.join(path, n))[6:9]) for n in names)
    except OSError:
        return None


def _new_findings(findings, seen):
    """The warning/critical findings not printed before (or now more severe); updates seen."""
    new = []
    for finding in findings:
        if finding.severity not in SEVERITIES or finding.cause in ENDING_CAUSES:
            continue
        before = seen.get(finding.cause)
        if before is None or SEVERITIES.index(finding.severity) > SEVERITIES.index(before):
            seen[finding.cause] = finding.severity
            new.append(finding)
    return new


def _line(run, step, finding):
    text = "%s: step %s: %s: %s" % (
        run,
        "?" if step is None else step,
        finding.severity,
        finding.title,
    )
    if finding.explained_by:
        text += " (a consequence of %s)" % finding.explained_by
    elif finding.fixes:
        text += "\n    fix: " + finding.fixes[0].splitlines()[0]
    return text


def _last_step(data):
    steps = [
        int(s.steps[-1])
        for s in list(data.scalars.values()) + list(data.vectors.values())
        if len(s)
    ]
    steps += [int(s.steps[-1]) for s in data.other_scalars.values() if len(s)]
    return max(steps) if steps else None


class _Watcher:
    """The state of one watch: what was printed per run, and each run's files when read."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.seen = {}  # run -> {cause: severity printed}
        self.signatures = {}

    def poll(self):
        """[(run, step, finding)] of the findings that appeared since the last poll."""
        from tb_plateau import cli, diagnosis

        try:
            names, runs = cli._runs_to_diagnose(self.logdir, None)
        except cli._ArgumentError:
            return []
        found = []
        for run in runs:
            signature = _signature(self.logdir, run)
            if signature is not None and self.signatures.get(run) == signature:
                continue
            self.signatures[run] = signature
            try:
                data = cli.read_run(self.logdir, run, names)
            except Exception:  # a run being created: read it next round
                self.signatures.pop(run, None)
                continue
            step = _last_step(data)
            seen = self.seen.setdefault(run, {})
            findings = diagnosis.diagnose(data, live=True)
            found += [(run, step, f) for f in _new_findings(findings, seen)]
        return found


def _at_least(severity, exit_on):
    return exit_on is not None and SEVERITIES.index(severity) >= SEVERITIES.index(exit_on)


def watch(logdir, interval=5.0, exit_on=None, out=None, polls=None):
    """Follows `logdir` until interrupted (or for `polls` rounds); the exit status."""
    out = out or sys.stdout
    watcher = _Watcher(logdir)
    waiting_said = False
    try:
        for _ in iter(int, 1) if polls is None else range(polls):
            if "://" not in logdir and not os.path.isdir(logdir):
                if not waiting_said:
                    print("waiting for %s to appear..." % logdir, file=out, flush=True)
                    waiting_said = True
            else:
                for run, step, finding in watcher.poll():
                    print(_line(run, step, finding), file=out, flush=True)
                    if _at_least(finding.severity, exit_on):
                        print(
                            "exiting: a %s finding in run %s" % (finding.severity, run),
                            file=out,
                            flush=True,
                        )
                        return EXIT_FOUND
            time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK
