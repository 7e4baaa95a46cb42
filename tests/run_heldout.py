"""Trains the held-out scenarios of `tests/heldout.py` and diagnoses each one.

    python tests/run_heldout.py [--only NAME ...] [--root DIR] [--out FILE] [--evidence]

Each scenario trains into its own logdir (a temporary directory unless --root
is given) and is diagnosed by the same code path as
`tests/test_diagnosis_reproducers.py`: `rundata.read_logdir_run(logdir, ".")`
then `diagnosis.run_report`. For every run it prints the expected cause, the
verdict, every finding (cause, severity, confidence, title), the first and last
epoch's loss / val_loss (to check that a "healthy" run really trained) and the
training time, then a tally: a healthy run with any warning/critical finding is
a false alarm; a broken run whose top warning/critical finding is not the
expected cause is a miss. --out also writes the whole report as Markdown.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import heldout  # noqa: E402


def diagnose(logdir):
    from tb_plateau import diagnosis, rundata

    return diagnosis.run_report(rundata.read_logdir_run(logdir, "."))


def top_serious(report):
    serious = [f for f in report["findings"] if f["severity"] != "info"]
    return serious[0]["cause"] if serious else None


def _fmt(value):
    return "-" if value is None else "%.4g" % value


def _loss_line(history):
    def ends(key):
        values = history.get(key)
        return (values[0], values[-1]) if values else (None, None)

    (l0, l1), (v0, v1) = ends("loss"), ends("val_loss")
    text = "loss %s -> %s" % (_fmt(l0), _fmt(l1))
    if v0 is not None:
        text += ", val_loss %s -> %s" % (_fmt(v0), _fmt(v1))
    return text + " (%d epochs)" % len(history.get("loss", []))


class _Collect(logging.Handler):
    """Keeps the first line of each tb_plateau warning logged while a scenario trains."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage().splitlines()[0][:300])


def run_one(name, root):
    fn, expected = heldout.SCENARIOS[name]
    logdir = os.path.join(root, name)
    collect = _Collect()
    logging.getLogger("tb_plateau").addHandler(collect)
    start = time.perf_counter()
    try:
        fn(logdir)
    finally:
        logging.getLogger("tb_plateau").removeHandler(collect)
    seconds = time.perf_counter() - start
    history = dict(heldout.LAST_HISTORY)
    report = diagnose(logdir)
    got = top_serious(report)
    if expected is None:
        outcome = "ok" if report["verdict"] == "healthy" else "FALSE ALARM"
    else:
        outcome = "ok" if got == expected else "MISS"
    return {
        "name": name,
        "expected": expected,
        "got": got,
        "outcome": outcome,
        "seconds": seconds,
        "history": history,
        "report": report,
        "recorder_warnings": collect.lines,
    }


def describe(result, evidence=False):
    report = result["report"]
    lines = [
        "### %s" % result["name"],
        "expected: %s | verdict: %s | top: %s | %s"
        % (
            result["expected"] or "healthy",
            report["verdict"],
            result["got"] or "-",
            result["outcome"],
        ),
        "training: %s, %.1f s" % (_loss_line(result["history"]), result["seconds"]),
    ]
    for f in report["findings"]:
        lines.append(
            "- %s %s (%.2f): %s" % (f["cause"], f["severity"], f["confidence"], f["title"])
        )
        if evidence:
            lines.append("    evidence: %s" % json.dumps(f["evidence"], default=str))
    for note in report.get("notes", []):
        lines.append("- note: %s" % note)
    for warning in result.get("recorder_warnings", []):
        lines.append("- recorder warning: %s" % warning)
    return "\n".join(lines)


def tally(results):
    healthy = [r for r in results if r["expected"] is None]
    broken = [r for r in results if r["expected"] is not None]
    false_alarms = [r for r in healthy if r["outcome"] != "ok"]
    misses = [r for r in broken if r["outcome"] != "ok"]
    lines = [
        "| run | expected | verdict | top warning/critical | outcome | s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            "| %s | %s | %s | %s | %s | %.1f |"
            % (
                r["name"],
                r["expected"] or "healthy",
                r["report"]["verdict"],
                r["got"] or "-",
                r["outcome"],
                r["seconds"],
            )
        )
    lines.append("")
    lines.append(
        "healthy runs: %d, false alarms: %d%s"
        % (
            len(healthy),
            len(false_alarms),
            "" if not false_alarms else " (%s)" % ", ".join(r["name"] for r in false_alarms),
        )
    )
    lines.append(
        "broken runs: %d, misses: %d%s"
        % (
            len(broken),
            len(misses),
            "" if not misses else " (%s)" % ", ".join(r["name"] for r in misses),
        )
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only these")
    parser.add_argument("--root", help="train into ROOT/<name> (default: a temp directory)")
    parser.add_argument("--out", help="also write the results as Markdown to this file")
    parser.add_argument("--json", help="also write the full reports as JSON to this file")
    parser.add_argument("--evidence", action="store_true", help="print each finding's evidence")
    args = parser.parse_args(argv)
    names = args.only or list(heldout.SCENARIOS)
    unknown = [n for n in names if n not in heldout.SCENARIOS]
    if unknown:
        parser.error("unknown scenario(s): %s" % ", ".join(unknown))
    root = args.root or tempfile.mkdtemp(prefix="tb_plateau_heldout_")
    results = []
    for name in names:
        result = run_one(name, root)
        results.append(result)
        print(describe(result, args.evidence) + "\n", flush=True)
    summary = tally(results)
    print(summary)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# tb_plateau held-out evaluation\n\nlogdirs: %s\n\n" % root)
            f.write(summary + "\n\n## Runs\n\n")
            f.write("\n\n".join(describe(r, evidence=True) for r in results) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
