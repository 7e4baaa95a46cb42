"""`tb-plateau diagnose` against merely reading the same event files.

    # one logdir (made by make_logdir.py): diagnose vs TensorBoard's readers
    python benchmarks/diagnose_scale.py compare /tmp/big --repeats 3

    # how cost grows with steps, layers and runs (generates small logdirs)
    python benchmarks/diagnose_scale.py table --root /tmp/scale

    # the extremes: 2,000 runs, a million steps, a thousand layers
    python benchmarks/diagnose_scale.py extremes --root /tmp/extremes

Each measurement runs in a fresh Python process, which reports its own wall
time and peak RSS (VmHWM), so memory is per measurement:

  loader       TensorBoard's `EventFileLoader` iterating every event of every
               run, without TensorFlow (TensorBoard's pure-Python reader: what
               `tensorboard` and `tb-plateau` use when TensorFlow is absent)
  loader_tf    the same through TensorFlow's C++ record reader (what
               `tensorboard` uses when TensorFlow is installed); the seconds
               exclude importing TensorFlow, reported apart
  multiplexer  the previous CLI read path: an `EventMultiplexer` per run and
               its data provider (no TensorFlow)
  diagnose     `tb-plateau diagnose LOGDIR --json` end to end, in process
               (no TensorFlow): list runs, read, check, diagnose, print JSON

Medians of --repeats runs. Figures depend on the machine: quote its cores.
"""

import argparse
import glob
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

KINDS = ("loader", "loader_tf", "multiplexer", "diagnose")


def _event_files(logdir):
    return sorted(glob.glob(os.path.join(logdir, "**", "*tfevents*"), recursive=True))


def _peak_rss_mb():
    """This process's peak RSS since it started (exec), in MB.

    Linux's VmHWM: `ru_maxrss` would carry over the parent's peak through
    fork and exec (a parent that just generated a large logdir in memory).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _measure(kind, logdir):
    """Runs one measurement in this process; returns its figures."""
    if kind != "loader_tf":
        sys.modules.setdefault(
            "tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf")
        )
    start = time.perf_counter()
    extra = {}
    if kind in ("loader", "loader_tf"):
        from tensorboard.backend.event_processing import event_file_loader
        from tensorboard.compat import tf

        extra["reader"] = tf.__version__  # resolves the lazy module (imports TensorFlow or not)
        extra["import_s"] = time.perf_counter() - start
        start = time.perf_counter()
        events = 0
        for path in _event_files(logdir):
            for _ in event_file_loader.EventFileLoader(path).Load():
                events += 1
        extra["events"] = events
    elif kind == "multiplexer":
        from tb_plateau import rundata

        for run in rundata.list_logdir_runs(logdir):
            rundata.read_logdir_run_with_multiplexer(logdir, run)
    elif kind == "diagnose":
        from tb_plateau import cli

        stdout, sys.stdout = sys.stdout, io.StringIO()
        try:
            cli.main(["diagnose", logdir, "--json"])
            extra["json_bytes"] = len(sys.stdout.getvalue())
        finally:
            sys.stdout = stdout
    else:
        raise ValueError("unknown kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    seconds = time.perf_counter() - start
    max_rss_mb = _peak_rss_mb()
    return dict(kind=kind, seconds=seconds, max_rss_mb=max_rss_mb, **extra)


def measure(kind, logdir, repeats=1, timeout=3600):
    """Median figures of `repeats` fresh processes measuring `kind` on logdir."""
    results = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "_measure", kind, logdir],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    merged = dict(results[0])
    for key in ("seconds", "max_rss_mb", "import_s"):
        if key in merged:
            merged[key] = statistics.median(r[key] for r in results)
    merged["all_seconds"] = [round(r["seconds"], 2) for r in results]
    return merged


def _size_mb(logdir):
    return sum(os.path.getsize(p) for p in _event_files(logdir)) / 1e6


def compare(logdir, repeats, kinds):
    print("logdir %s: %.0f MB of event files" % (logdir, _size_mb(logdir)))
    figures = {}
    for kind in kinds:
        figures[kind] = measure(kind, logdir, repeats if kind == "diagnose" else 1)
        f = figures[kind]
        print(
            "  %-12s %8.1f s  peak RSS %6.0f MB%s  (runs: %s)"
            % (
                kind,
                f["seconds"],
                f["max_rss_mb"],
                "  (+%.1f s importing TensorFlow)" % f["import_s"] if kind == "loader_tf" else "",
                f["all_seconds"],
            ),
            flush=True,
        )
    if "diagnose" in figures:
        for base in ("loader", "loader_tf", "multiplexer"):
            if base in figures:
                print(
                    "  diagnose / %-11s = %.2f"
                    % (base, figures["diagnose"]["seconds"] / figures[base]["seconds"])
                )
    return figures


# (runs, recorded steps, layers): one factor varies per group, around a base.
TABLE = {
    "steps": [(10, 2_500, 50), (10, 5_000, 50), (10, 10_000, 50)],
    "layers": [(10, 5_000, 25), (10, 5_000, 50), (10, 5_000, 100)],
    "runs": [(10, 5_000, 50), (20, 5_000, 50), (40, 5_000, 50)],
}


def table(root, repeats, jobs, kinds):
    from benchmarks.make_logdir import make_logdir

    rows = []
    seen = {}
    for factor, shapes in TABLE.items():
        for runs, steps, layers in shapes:
            logdir = os.path.join(root, "r%d_s%d_l%d" % (runs, steps, layers))
            if not os.path.isdir(logdir):
                make_logdir(logdir, runs, steps, layers, seed=0, jobs=jobs)
            key = (runs, steps, layers)
            if key not in seen:
                seen[key] = {k: measure(k, logdir, repeats) for k in kinds}
            f = seen[key]
            rows.append((factor, runs, steps, layers, _size_mb(logdir), f))
            print(
                "%-7s runs %3d  steps %6d  layers %4d  %7.0f MB  "
                % (factor, runs, steps, layers, _size_mb(logdir))
                + "  ".join(
                    "%s %.1f s / %.0f MB" % (k, f[k]["seconds"], f[k]["max_rss_mb"]) for k in kinds
                ),
                flush=True,
            )
    return rows


# (runs, recorded steps, layers) at the edges the issue names.
EXTREMES = [(2_000, 100, 5), (1, 1_000_000, 5), (1, 1_000, 1_000)]


def extremes(root, repeats, jobs, kinds):
    from benchmarks.make_logdir import make_logdir

    rows = []
    for runs, steps, layers in EXTREMES:
        logdir = os.path.join(root, "r%d_s%d_l%d" % (runs, steps, layers))
        if not os.path.isdir(logdir):
            make_logdir(logdir, runs, steps, layers, seed=0, jobs=jobs)
        f = {k: measure(k, logdir, repeats) for k in kinds}
        rows.append((runs, steps, layers, _size_mb(logdir), f))
        print(
            "runs %5d  steps %8d  layers %5d  %7.0f MB  " % (runs, steps, layers, _size_mb(logdir))
            + "  ".join(
                "%s %.1f s / %.0f MB" % (k, f[k]["seconds"], f[k]["max_rss_mb"]) for k in kinds
            ),
            flush=True,
        )
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_measure":
        print(json.dumps(_measure(argv[1], argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("compare", help="diagnose vs reading, on one logdir")
    one.add_argument("logdir")
    one.add_argument("--repeats", type=int, default=3, help="runs of diagnose (median)")
    one.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of " + str(KINDS))
    grow = commands.add_parser("table", help="cost against steps, layers and runs")
    grow.add_argument("--root", default="/tmp/tb_plateau_scale")
    grow.add_argument("--repeats", type=int, default=1)
    grow.add_argument("--jobs", type=int, default=1, help="processes generating logdirs")
    grow.add_argument("--kinds", default="loader_tf,diagnose")
    edge = commands.add_parser("extremes", help="2,000 runs, a million steps, 1,000 layers")
    edge.add_argument("--root", default="/tmp/tb_plateau_extremes")
    edge.add_argument("--repeats", type=int, default=1)
    edge.add_argument("--jobs", type=int, default=1, help="processes generating logdirs")
    edge.add_argument("--kinds", default="loader_tf,diagnose")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error("unknown kinds %s (known: %s)" % (sorted(unknown), ", ".join(KINDS)))
    if args.command == "compare":
        compare(args.logdir, args.repeats, kinds)
    elif args.command == "extremes":
        extremes(args.root, args.repeats, args.jobs, kinds)
    else:
        table(args.root, args.repeats, args.jobs, kinds)


if __name__ == "__main__":
    main()
