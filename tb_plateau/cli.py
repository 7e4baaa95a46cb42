"""`tb-plateau diagnose LOGDIR [--run NAME] [--json]`, `tb-plateau watch LOGDIR
[--interval S] [--exit-on critical]` and `tb-plateau demo`.

Imports without TensorFlow and starts fast: TensorBoard's event reader would
import TensorFlow when it is installed (seconds), so for local paths we point
`tensorboard.compat.tf` at TensorBoard's own stub before anything resolves it.
Paths with a scheme (gs://, s3://) keep real TensorFlow for its filesystems.

One run is read and diagnosed at a time (memory: one run). A run that cannot
be read, or only in part, gets a report all the same, flagged "incomplete"
with notes; `--json` is strict JSON (NaN/±Inf as the strings "NaN",
"Infinity", "-Infinity", as the Plateau tab's routes write them).
"""

import argparse
import json
import os
import sys
import types

EXIT_OK = 0
EXIT_BAD_ARGUMENT = 2

_COLORS = {
    "critical": "\033[31;1m",
    "warning": "\033[33;1m",
    "info": "\033[36m",
    "healthy": "\033[32;1m",
}
_RESET = "\033[0m"


def _avoid_tensorflow():
    """Make TensorBoard use its TensorFlow stub (local files need no TensorFlow)."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class _ArgumentError(Exception):
    """A bad argument or an unreadable logdir: exit status 2 with this message."""


def _runs_to_diagnose(logdir, only_run):
    from tb_plateau import rundata

    try:
        names = rundata.list_logdir_runs(logdir)
    except Exception as e:
        raise _ArgumentError("cannot read LOGDIR %r: %s" % (logdir, e)) from None
    if only_run is not None:
        if only_run not in names:
            raise _ArgumentError(
                "--run %r: no such run in %r (runs: %s)"
                % (only_run, logdir, ", ".join(names) or "none")
            )
        return names, [only_run]
    # The "validation" run of a Keras train/validation pair is read with its
    # "train" sibling, not diagnosed on its own.
    return names, [n for n in names if not rundata.is_keras_validation_run(n, names)]


def read_run(logdir, run, run_names):
    """One run's `RunData`, with its Keras validation sibling's scalars attached."""
    from tb_plateau import rundata

    return rundata.read_with_validation_sibling(
        lambda name: rundata.read_logdir_run(logdir, name), run, run_names
    )


def diagnose_logdir(logdir, only_run=None):
    """The {"runs": [...]} object of `tb-plateau diagnose --json` for a logdir."""
    from tb_plateau import diagnosis

    if "://" not in logdir and not os.path.isdir(logdir):
        raise _ArgumentError("LOGDIR %r is not a directory" % logdir)
    names, runs = _runs_to_diagnose(logdir, only_run)
    reports = []
    for run in runs:
        try:
            data = read_run(logdir, run, names)
        except Exception as e:  # one unreadable run must not hide the others
            reports.append(diagnosis.unreadable_run_report(run, e))
            continue
        reports.append(diagnosis.run_report(data))
    return {"runs": reports}


def _paint(text, severity, color):
    return _COLORS[severity] + text + _RESET if color else text


def _indent(text, prefix):
    return "\n".join(prefix + line for line in text.splitlines())


def _fix_lines(fixes):
    """Every fix, numbered when there are several, code lines kept aligned."""
    if not fixes:
        return []
    if len(fixes) == 1:
        return ["     fix:", _indent(fixes[0], "       ")]
    lines = ["     fixes:"]
    for number, fix in enumerate(fixes, 1):
        first, *rest = fix.splitlines() or [""]
        lines.append("       %d. %s" % (number, first))
        lines.extend("          " + line for line in rest)
    return lines


def _finding_lines(number, finding, color):
    head = "  %d. [%s] %s  (%s, confidence %.2f)" % (
        number,
        finding["severity"],
        finding["title"],
        finding["cause"],
        finding["confidence"],
    )
    lines = [_paint(head, finding["severity"], color), _indent(finding["explanation"], "     ")]
    if finding["layers"]:
        lines.append("     layers: " + ", ".join(finding["layers"][:10]))
    if finding["first_step"] is not None:
        lines.append("     first seen at step %d" % finding["first_step"])
    if finding.get("first_named_step") is not None:
        lines.append("     named live (while training) since step %d" % finding["first_named_step"])
    return lines + _fix_lines(finding["fixes"])


def format_report(result, color=False):
    """The readable report: per run its verdict, then each finding with fixes."""
    if not result["runs"]:
        return "No runs found (no event files under this logdir).\n"
    lines = []
    for run in result["runs"]:
        # The report's one display status ("incomplete" for a healthy verdict
        # on a run not fully read: no clean bill of health).
        status = run.get("status") or run["verdict"]
        label, severity = status.upper(), ("warning" if status == "incomplete" else status)
        lines.append("%s  %s" % (_paint(label, severity, color), run["run"]))
        if not run["findings"]:
            if run.get("incomplete"):
                lines.append("  Not fully read: no problem found in what could be read.")
            else:
                lines.append("  No problem found.")
        for i, finding in enumerate(run["findings"], 1):
            lines.extend(_finding_lines(i, finding, color))
        for problem in run.get("problems", []):
            lines.append(_indent("problem: " + problem, "  "))
        for note in run.get("notes", []):
            lines.append(_indent("note: " + note, "  "))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _use_color(stream):
    return stream.isatty() and "NO_COLOR" not in os.environ


def _diagnose_command(args):
    if "://" not in args.logdir:
        _avoid_tensorflow()
    try:
        result = diagnose_logdir(args.logdir, args.run)
    except _ArgumentError as e:
        print("tb-plateau diagnose: error: %s" % e, file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    if args.json:
        from tb_plateau import diagnosis

        # Strict JSON: NaN/±Inf as strings, as the tab's JSON routes write them.
        json.dump(diagnosis.json_ready(result), sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(result, color=_use_color(sys.stdout)))
    return EXIT_OK


def _watch_command(args):
    if "://" not in args.logdir:
        _avoid_tensorflow()
    # Everything a poll needs is imported before the banner: a Ctrl-C after it never lands
    # inside an import (an interrupted numpy import can hang the exit).
    from tb_plateau import diagnosis, rundata, watch  # noqa: F401

    print(
        "tb-plateau watch: following %s every %gs (Ctrl-C to stop)" % (args.logdir, args.interval),
        file=sys.stderr,
    )
    return watch.watch(args.logdir, interval=args.interval, exit_on=args.exit_on)


def _interval(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds, got %r" % text) from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600 seconds, got %s" % text)
    return value


def _demo_command(args):
    from tb_plateau import demo  # trains models: imports TensorFlow, only here

    return demo.main(logdir=args.logdir, port=args.port, open_browser=not args.no_browser) or 0


def _port(text):
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a port number, got %r" % text) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535, got %d" % port)
    return port


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tb-plateau", description="Says why a training loss will not go down."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    diagnose = commands.add_parser(
        "diagnose",
        help="diagnose the runs of a TensorBoard logdir",
        description="Diagnose every run of LOGDIR (or one with --run): ranked causes with"
        " evidence and fixes. Exit status 0 whatever it finds, 2 for a bad argument.",
    )
    diagnose.add_argument(
        "logdir", metavar="LOGDIR", help="a TensorBoard logdir (local or gs://...)"
    )
    diagnose.add_argument("--run", metavar="NAME", help="only this run (its TensorBoard name)")
    diagnose.add_argument("--json", action="store_true", help="print the JSON report")
    diagnose.set_defaults(handler=_diagnose_command)
    watch = commands.add_parser(
        "watch",
        help="follow a logdir being written and print findings as they appear",
        description="Follow LOGDIR while trainings write it (local or any path TensorBoard"
        " reads) and print each run's findings as they appear. Ctrl-C exits 0; with"
        " --exit-on, the first finding of that severity (or worse) exits 1.",
    )
    watch.add_argument("logdir", metavar="LOGDIR", help="a TensorBoard logdir (local or gs://...)")
    watch.add_argument(
        "--interval", type=_interval, default=5.0, metavar="SECONDS", help="between reads (5)"
    )
    watch.add_argument(
        "--exit-on",
        choices=("warning", "critical"),
        default=None,
        help="exit 1 at the first finding of this severity or worse",
    )
    watch.set_defaults(handler=_watch_command)
    demo = commands.add_parser("demo", help="train example runs and open TensorBoard on them")
    demo.add_argument("--logdir", metavar="DIR", default=None, help="where to write the runs")
    demo.add_argument("--port", type=_port, default=None, metavar="N", help="TensorBoard's port")
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.set_defaults(handler=_demo_command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)  # exits 2 with a message on a bad argument
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
