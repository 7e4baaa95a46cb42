"""Trains the fault-injection corpus, and scores the diagnosis on it.

    python -m benchmarks.corpus.run train [--root DIR] [--split dev|test|all] [--seeds 0 1]
                                          [--only BASE[/OP] ...] [--workers N] [--cases]
    python -m benchmarks.corpus.run score [--root DIR] [--split dev|test|all]
                                          [--json FILE] [--markdown FILE]

`train` trains every (base, operator or "none", seed) into DIR/<base>/<op>/seed<k>/ with
`bases.train`, in worker processes (TensorFlow imported once per worker, one thread each, so
that two workers share two cores), and writes a `result.json` per run at its end; runs that
have one are skipped, so an interrupted `train` resumes. A training that raises is recorded
as crashed and the others go on. `--cases` lists the cases instead of training them.

`score` reads every run and diagnoses it exactly as `tb-plateau diagnose` does
(`rundata.read_logdir_run` + `diagnosis.run_report`, no TensorFlow needed), then reports per
split:

* which mutants were effective: a mutant counts only if it really hurt the training compared
  with the same base and seed unmutated (DeepCrime's "killed" mutants, see `effect`); the
  others are listed apart and left out of every figure below;
* per cause: precision (of the runs whose top warning/critical finding is the cause, those
  expected to be), recall (of the mutants expecting it, those with the cause among their
  warning/critical findings) and root-first rate (those where it is the top finding);
* false alarms: unmutated bases with any warning/critical finding;
* a confusion matrix (expected cause -> named top cause, "none" for no warning/critical);
* the misses, with their top 3 findings;
* time to diagnosis: for each mutant named right, the smallest fraction f of the run (every
  series cut to steps <= f x the last step) from which on the expected cause stays the top
  finding: as if the diagnosis had watched the training live.
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import fnmatch
import json
import logging
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np

from benchmarks.corpus import bases, operators

DEFAULT_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus_logs"
)
NONE = "none"  # the operator name of an unmutated base, and the "no finding" cause
RESULT_FILE = "result.json"
SPLITS = ("dev", "test")
# A mutant is effective when its harm exceeds this share of what the unmutated base achieved:
# of its loss drop (first batch -> final training loss), or of its score above chance.
EFFECT_SHARE = 0.1
# Fractions of a run at which time to diagnosis looks.
CUT_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SERIOUS = ("warning", "critical")


@dataclasses.dataclass(frozen=True, order=True)
class Case:
    base: str
    operator: str
    seed: int

    @property
    def name(self):
        return "%s/%s/seed%d" % (self.base, self.operator, self.seed)

    def logdir(self, root):
        return os.path.join(root, self.base, self.operator, "seed%d" % self.seed)


def expected_cause(base_name, operator_name):
    if operator_name == NONE:
        return None
    return operators.OPERATORS[operator_name].expected_cause(bases.BASES[base_name])


def _in_split(base, split):
    return split == "all" or base.split == split


def list_cases(split="all", seeds=(0, 1), only=None):
    """Every (base, operator or "none", seed) of the split, filtered by `only` patterns
    ("BASE" or "BASE/OP", shell wildcards allowed)."""
    found = []
    for base in bases.BASES.values():
        if not _in_split(base, split):
            continue
        names = [NONE] + [name for name, op in operators.OPERATORS.items() if op.applies(base)]
        for name in names:
            key = "%s/%s" % (base.name, name)
            if only and not any(
                fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(base.name, p) for p in only
            ):
                continue
            found.extend(Case(base.name, name, seed) for seed in seeds)
    return found


# ----------------------------------------------------------------- training


class _Collect(logging.Handler):
    """Keeps the first line of each tb_plateau warning logged while a run trains."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage().splitlines()[0][:300])


def _init_worker(root):
    """Once per worker: one thread for TensorFlow, its chatter into a log file, TF imported."""
    os.makedirs(os.path.join(root, "workers"), exist_ok=True)
    log = open(os.path.join(root, "workers", "%d.log" % os.getpid()), "a")
    os.dup2(log.fileno(), 2)  # C++ start-up lines and Keras warnings: not the progress output
    warnings.simplefilter("ignore")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    try:
        import torch  # the PyTorch bases (`torch_bases`): one thread too

        torch.set_num_threads(1)
    except ImportError:
        pass
    import tb_plateau.summaries  # noqa: F401  (imported once here rather than in the first run)

    logging.getLogger("tb_plateau").propagate = False  # collected into result.json instead


def run_case(case, root):
    """Trains one case into its logdir (replacing a partial one) and writes its result.json."""
    base = bases.BASES[case.base]
    op = operators.OPERATORS.get(case.operator)
    params = op.params(base) if op else base.default_params()
    logdir = case.logdir(root)
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)
    record = {
        "base": case.base,
        "operator": case.operator,
        "seed": case.seed,
        "split": base.split,
        "expected": expected_cause(case.base, case.operator),
        "harm": op.harm_for(base) if op else None,
        "params": params,
    }
    collect = _Collect()
    logger = logging.getLogger("tb_plateau")
    logger.addHandler(collect)
    start = time.perf_counter()
    try:
        record.update(bases.train(base, params, case.seed, logdir))
        record["status"] = "ok"
    except Exception as e:  # a broken training is a result too; the others go on
        record["status"] = "crashed"
        record["error"] = "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0][:300])
        record["traceback"] = traceback.format_exc()[-3000:]
    finally:
        logger.removeHandler(collect)
    record["wall_seconds"] = time.perf_counter() - start
    record["recorder_warnings"] = collect.lines
    _write_json(os.path.join(logdir, RESULT_FILE), record)
    return record


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)  # a result.json is complete or absent


def _done(case, root):
    return os.path.exists(os.path.join(case.logdir(root), RESULT_FILE))


def _progress_line(count, total, record):
    if record["status"] != "ok":
        return "[%d/%d] %s/%s/seed%d: CRASHED %s" % (
            count,
            total,
            record["base"],
            record["operator"],
            record["seed"],
            record.get("error", ""),
        )
    return "[%d/%d] %s/%s/seed%d: %.1f s, loss %.3g -> %.3g, val %.3g, %s %.3f" % (
        count,
        total,
        record["base"],
        record["operator"],
        record["seed"],
        record["wall_seconds"],
        record["initial_loss"],
        record["final_loss"],
        record["final_val_loss"],
        record["score_name"],
        record["score"],
    )


def train_cases(cases, root, workers=2, attempts=2):
    """Trains the cases not yet done, `workers` at a time; returns the records written.

    A worker that dies (not an exception: those are recorded by `run_case`) breaks its
    pool; the cases it had started are tried again in a fresh pool, up to `attempts` times,
    then recorded as crashed.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers
    os.makedirs(root, exist_ok=True)
    pending = [case for case in cases if not _done(case, root)]
    total, count, tries = len(pending), 0, collections.Counter()
    records = []
    context = multiprocessing.get_context("spawn")
    while pending:
        broken = []
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(root,)
        ) as pool:
            futures = {pool.submit(run_case, case, root): case for case in pending}
            for future in concurrent.futures.as_completed(futures):
                case = futures[future]
                try:
                    record = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    broken.append(case)
                    continue
                count += 1
                records.append(record)
                print(_progress_line(count, total, record), flush=True)
        pending = []
        for case in broken:
            if os.path.isdir(case.logdir(root)):  # it had started: it may be the culprit
                tries[case] += 1
            if tries[case] < attempts:
                pending.append(case)
                continue
            record = {
                "base": case.base,
                "operator": case.operator,
                "seed": case.seed,
                "split": bases.BASES[case.base].split,
                "expected": expected_cause(case.base, case.operator),
                "status": "crashed",
                "error": "the worker process died (%d attempts)" % attempts,
            }
            _write_json(os.path.join(case.logdir(root), RESULT_FILE), record)
            count += 1
            records.append(record)
            print(_progress_line(count, total, record), flush=True)
    return records


def cases_markdown(cases):
    seeds = sorted({case.seed for case in cases})
    lines = [
        "| base | split | operator | expected cause |",
        "|---|---|---|---|",
    ]
    for case in sorted({(c.base, c.operator) for c in cases}, key=_case_order):
        base_name, op = case
        lines.append(
            "| %s | %s | %s | %s |"
            % (
                base_name,
                bases.BASES[base_name].split,
                op,
                expected_cause(base_name, op) or "(healthy)",
            )
        )
    lines.append("")
    lines.append(
        "%d cases x %d seed(s) = %d runs"
        % (len(cases) // max(1, len(seeds)), len(seeds), len(cases))
    )
    return "\n".join(lines)


def _case_order(pair):
    base_name, op = pair
    ops = [NONE] + list(operators.OPERATORS)
    return list(bases.BASES).index(base_name), ops.index(op)


# ----------------------------------------------------------------- scoring


def load_results(root, split="all"):
    """The result.json of every run under root in the split, with its logdir."""
    results = []
    for base in bases.BASES.values():
        if not _in_split(base, split):
            continue
        base_dir = os.path.join(root, base.name)
        if not os.path.isdir(base_dir):
            continue
        for op in sorted(os.listdir(base_dir)):
            op_dir = os.path.join(base_dir, op)
            for seed_dir in sorted(os.listdir(op_dir)) if os.path.isdir(op_dir) else []:
                path = os.path.join(op_dir, seed_dir, RESULT_FILE)
                if os.path.exists(path):
                    with open(path) as f:
                        record = json.load(f)
                    record["logdir"] = os.path.dirname(path)
                    results.append(record)
    return results


def _finite(*values):
    return all(v is not None and math.isfinite(v) for v in values)


def effect(record, base_record):
    """(effective, why): did the operator really hurt the training? None when unknown.

    Measured against the same base and seed unmutated, by the operator's `harm`:
    a non-finite loss or prediction always counts; LOSS: final training or validation loss
    above the base's by more than EFFECT_SHARE of the base's loss drop, or the score
    (validation accuracy on the real labels, or R^2) below the base's by more than
    EFFECT_SHARE of its margin over chance; VAL_LOSS: the same without the training loss;
    SCORE: the score only; OVERFIT: validation loss up from its best, or the
    train/validation gap wider than the base's (or than none), by EFFECT_SHARE of the
    base's loss drop;
    BY_CONSTRUCTION: always.
    """
    if base_record is None or base_record.get("status") != "ok":
        return None, "no unmutated run of this base and seed to compare with"
    op, base = operators.OPERATORS.get(record["operator"]), bases.BASES.get(record["base"])
    harm = op.harm_for(base) if op is not None and base is not None else record["harm"]
    if not _finite(record["final_loss"], record["final_val_loss"], record["score"]):
        return True, "non-finite loss or predictions"
    if harm == operators.BY_CONSTRUCTION:
        return True, "by construction"
    drop = base_record["initial_loss"] - base_record["final_loss"]
    loss_margin = EFFECT_SHARE * max(drop, 0.0)
    if harm == operators.OVERFIT:
        val = record["history"]["val_loss"]
        rise = val[-1] - min(val)
        # (A base whose validation loss ends below its training loss has no gap to widen:
        # the mutant's gap counts from zero.)
        gap = (record["final_val_loss"] - record["final_loss"]) - max(
            base_record["final_val_loss"] - base_record["final_loss"], 0.0
        )
        if rise > loss_margin or gap > loss_margin:
            return True, "validation loss +%.3g from its best, gap +%.3g" % (rise, gap)
        return False, "validation loss +%.3g from its best, gap +%.3g" % (rise, gap)
    reasons = []
    if harm == operators.LOSS and record["final_loss"] > base_record["final_loss"] + loss_margin:
        reasons.append("loss %.3g vs %.3g" % (record["final_loss"], base_record["final_loss"]))
    if harm in (operators.LOSS, operators.VAL_LOSS) and (
        record["final_val_loss"] > base_record["final_val_loss"] + loss_margin
    ):
        reasons.append(
            "val loss %.3g vs %.3g" % (record["final_val_loss"], base_record["final_val_loss"])
        )
    score_margin = EFFECT_SHARE * (base_record["score"] - base_record["chance_score"])
    if record["score"] < base_record["score"] - score_margin:
        reasons.append(
            "%s %.3f vs %.3f" % (record["score_name"], record["score"], base_record["score"])
        )
    if reasons:
        return True, "; ".join(reasons)
    return False, "loss %.3g vs %.3g, val loss %.3g vs %.3g, %s %.3f vs %.3f" % (
        record["final_loss"],
        base_record["final_loss"],
        record["final_val_loss"],
        base_record["final_val_loss"],
        record["score_name"],
        record["score"],
        base_record["score"],
    )


def _diagnosis():
    from tb_plateau import diagnosis, rundata

    return diagnosis, rundata


def top_serious(report):
    """The cause of the top warning/critical finding (the named root cause), or None."""
    for finding in report["findings"]:
        if finding["severity"] in SERIOUS:
            return finding["cause"]
    return None


def truncated(run_data, fraction):
    """The run as it stood at `fraction` of its last step: every series cut there."""
    from tb_plateau import rundata

    series = [*run_data.scalars.values(), *run_data.vectors.values()]
    series += [*run_data.other_scalars.values(), *run_data.validation_scalars.values()]
    last = max((int(s.steps[-1]) for s in series if len(s)), default=0)
    limit = fraction * last

    def cut_scalars(scalars):
        return {
            k: rundata.Series(s.steps[s.steps <= limit], s.values[s.steps <= limit])
            for k, s in scalars.items()
        }

    vectors = {
        k: rundata.VectorSeries(
            v.steps[v.steps <= limit], v.values[v.steps <= limit], v.labels, v.header
        )
        for k, v in run_data.vectors.items()
    }
    return dataclasses.replace(
        run_data,
        scalars=cut_scalars(run_data.scalars),
        vectors=vectors,
        other_scalars=cut_scalars(run_data.other_scalars),
        validation_scalars=cut_scalars(run_data.validation_scalars),
    )


def time_to_diagnosis(run_data, expected):
    """The smallest CUT_FRACTIONS f from which on `expected` stays the top finding."""
    diagnosis, _ = _diagnosis()
    first = None
    for fraction in reversed(CUT_FRACTIONS):
        if top_serious(diagnosis.run_report(truncated(run_data, fraction))) != expected:
            break
        first = fraction
    return first


def live_time_to_diagnosis(run_data, expected):
    """The fraction of the run's steps after which the recorder's own live verdict first
    named `expected` as the root cause (1.0 when only its verdict at the end did), or None
    for a run recorded without live verdicts."""
    if not run_data.verdicts:
        return None
    last = max(int(s.steps[-1]) for s in run_data.scalars.values() if len(s))
    for step, verdict in run_data.verdicts:
        if verdict.get("root") == expected:
            return min(1.0, max(step, 0) / max(last, 1))
    return 1.0


def live_alarm(run_data):
    """The worst severity of a root cause the live verdicts named, or None."""
    severities = [v.get("severity") for _, v in run_data.verdicts if v.get("root")]
    for severity in ("critical", "warning"):
        if severity in severities:
            return severity
    return None


def _finding_line(finding):
    explanation = (finding.get("explanation") or "").strip().splitlines()
    return "%s %s %.2f: %s" % (
        finding["cause"],
        finding["severity"],
        finding["confidence"],
        explanation[0][:240] if explanation else finding.get("title", ""),
    )


def diagnose_results(results):
    """Adds to each record its diagnosis ("top", "serious", "findings") and, for effective
    mutants named right, "time_to_diagnosis"."""
    diagnosis, rundata = _diagnosis()
    base_runs = {(r["base"], r["seed"]): r for r in results if r["operator"] == NONE}
    for record in results:
        if record["status"] != "ok":
            continue
        run_data = rundata.read_logdir_run(record["logdir"], ".")
        report = diagnosis.run_report(run_data)
        record["verdict"] = report["verdict"]
        record["top"] = top_serious(report)
        record["serious"] = [f["cause"] for f in report["findings"] if f["severity"] in SERIOUS]
        record["findings"] = [_finding_line(f) for f in report["findings"]]
        record["live_alarm"] = live_alarm(run_data)
        record["live_verdicts"] = bool(run_data.verdicts)
        if record["operator"] == NONE:
            continue
        record["effective"], record["effect"] = effect(
            record, base_runs.get((record["base"], record["seed"]))
        )
        if record["effective"] and record["top"] == record["expected"]:
            record["time_to_diagnosis"] = time_to_diagnosis(run_data, record["expected"])
            record["live_time_to_diagnosis"] = live_time_to_diagnosis(run_data, record["expected"])
    return results


def _rate(hits, total):
    return None if not total else hits / total


def _cause_order(causes):
    from tb_plateau import diagnosis

    known = [c for c in diagnosis.CAUSE_IDS if c in causes]
    return (
        known
        + sorted(c for c in causes if c not in known and c != NONE)
        + ([NONE] if NONE in causes else [])
    )


def split_figures(results):
    """The figures of one split (see the module docstring), JSON-ready."""
    ok = [r for r in results if r["status"] == "ok"]
    unmutated = [r for r in ok if r["operator"] == NONE]
    mutants = [r for r in ok if r["operator"] != NONE]
    effective = [r for r in mutants if r.get("effective")]
    not_effective = [r for r in mutants if r.get("effective") is False]
    no_baseline = [r for r in mutants if r.get("effective") is None]
    judged = effective + unmutated  # the runs every figure counts

    def expected(r):
        return r["expected"] or NONE

    def named(r):
        return r["top"] or NONE

    causes = _cause_order({expected(r) for r in judged} | {named(r) for r in judged})
    per_cause = {}
    for cause in causes:
        if cause == NONE:
            continue
        expecting = [r for r in effective if r["expected"] == cause]
        naming = [r for r in judged if r["top"] == cause]
        times = [r["time_to_diagnosis"] for r in expecting if r.get("time_to_diagnosis")]
        live = [r["live_time_to_diagnosis"] for r in expecting if r.get("live_time_to_diagnosis")]
        per_cause[cause] = {
            "live_time_to_diagnosis": _quantiles(live),
            "mutants": len(expecting),
            "named_top": len(naming),
            "precision": _rate(sum(r["expected"] == cause for r in naming), len(naming)),
            "recall": _rate(sum(cause in r["serious"] for r in expecting), len(expecting)),
            "root_first": _rate(sum(r["top"] == cause for r in expecting), len(expecting)),
            "time_to_diagnosis": _quantiles(times),
        }
    confusion = collections.Counter((expected(r), named(r)) for r in judged)
    times = [r["time_to_diagnosis"] for r in effective if r.get("time_to_diagnosis")]
    live = [r["live_time_to_diagnosis"] for r in effective if r.get("live_time_to_diagnosis")]
    not_effective_by_op = collections.Counter(r["operator"] for r in not_effective)
    mutants_by_op = collections.Counter(r["operator"] for r in mutants)
    return {
        "runs": len(results),
        "crashed": [
            _run_name(r) + ": " + r.get("error", "") for r in results if r["status"] != "ok"
        ],
        "unmutated": len(unmutated),
        "false_alarms": [
            {"run": _run_name(r), "findings": r["findings"]} for r in unmutated if r["serious"]
        ],
        "mutants": len(mutants),
        "effective": len(effective),
        "not_effective": {
            op: {"not_effective": n, "of": mutants_by_op[op]}
            for op, n in sorted(not_effective_by_op.items())
        },
        "not_effective_runs": [
            {"run": _run_name(r), "why": r["effect"], "top": r["top"]} for r in not_effective
        ],
        "no_baseline": [_run_name(r) for r in no_baseline],
        "root_first": _rate(sum(r["top"] == r["expected"] for r in effective), len(effective)),
        "recall": _rate(sum(r["expected"] in r["serious"] for r in effective), len(effective)),
        "per_cause": per_cause,
        "confusion": [
            {"expected": e, "named": n, "runs": count}
            for (e, n), count in sorted(confusion.items())
        ],
        "causes": causes,
        "misses": [
            {
                "run": _run_name(r),
                "expected": r["expected"],
                "named": r["top"],
                "top_findings": r["findings"][:3],
            }
            for r in effective
            if r["top"] != r["expected"]
        ],
        "time_to_diagnosis": _quantiles(times),
        "live_time_to_diagnosis": _quantiles(live),
        "live_verdicts": sum(bool(r.get("live_verdicts")) for r in results),
        "live_false_alarms": [_run_name(r) for r in unmutated if r.get("live_alarm")],
        "live_false_stops": [_run_name(r) for r in unmutated if r.get("live_alarm") == "critical"],
    }


def _run_name(record):
    return "%s/%s/seed%d" % (record["base"], record["operator"], record["seed"])


def _quantiles(values):
    if not values:
        return None
    return {
        "runs": len(values),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
    }


def _fmt_rate(value):
    return "-" if value is None else "%.2f" % value


def _fmt_time(q):
    return "-" if q is None else "%.2f / %.2f" % (q["median"], q["p90"])


def split_markdown(split, figures):
    lines = ["## %s split" % split, ""]
    if not figures["runs"]:
        return "\n".join(lines + ["No runs."])
    lines.append(
        "%d runs: %d unmutated, %d mutants (%d effective, %d not effective%s), %d crashed."
        % (
            figures["runs"],
            figures["unmutated"],
            figures["mutants"],
            figures["effective"],
            sum(v["not_effective"] for v in figures["not_effective"].values()),
            ", %d without a baseline" % len(figures["no_baseline"])
            if figures["no_baseline"]
            else "",
            len(figures["crashed"]),
        )
    )
    lines.append(
        "Effective mutants: root cause named first %s, expected cause among the warnings %s;"
        " false alarms on unmutated bases: %d of %d."
        % (
            _fmt_rate(figures["root_first"]),
            _fmt_rate(figures["recall"]),
            len(figures["false_alarms"]),
            figures["unmutated"],
        )
    )
    lines += [
        "",
        "| cause | effective mutants | precision | recall | root-first | time to diagnosis"
        " (median / p90 of the run) | live, by the recorder's own verdicts |",
        "|---|---|---|---|---|---|---|",
    ]
    for cause, c in figures["per_cause"].items():
        lines.append(
            "| `%s` | %d | %s | %s | %s | %s | %s |"
            % (
                cause,
                c["mutants"],
                _fmt_rate(c["precision"]),
                _fmt_rate(c["recall"]),
                _fmt_rate(c["root_first"]),
                _fmt_time(c["time_to_diagnosis"]),
                _fmt_time(c.get("live_time_to_diagnosis")),
            )
        )
    lines.append(
        "| **all** | %d | | %s | %s | %s | %s |"
        % (
            figures["effective"],
            _fmt_rate(figures["recall"]),
            _fmt_rate(figures["root_first"]),
            _fmt_time(figures["time_to_diagnosis"]),
            _fmt_time(figures.get("live_time_to_diagnosis")),
        )
    )
    lines.append("")
    lines.append(
        "Live verdicts: %d runs recorded them; on the unmutated bases %d named a root cause"
        ' while training (%s) and %d would have stopped with `stop_on="critical"`%s.'
        % (
            figures.get("live_verdicts", 0),
            len(figures.get("live_false_alarms", [])),
            ", ".join(figures.get("live_false_alarms", [])) or "none",
            len(figures.get("live_false_stops", [])),
            " (%s)" % ", ".join(figures["live_false_stops"])
            if figures.get("live_false_stops")
            else "",
        )
    )
    lines += [
        "",
        "**Confusion** (rows: expected cause, `none` = unmutated; columns: named"
        " top cause, `none` = no warning/critical finding)",
        "",
    ]
    rows = [c for c in figures["causes"] if any(x["expected"] == c for x in figures["confusion"])]
    cols = [c for c in figures["causes"] if any(x["named"] == c for x in figures["confusion"])]
    cells = {(x["expected"], x["named"]): x["runs"] for x in figures["confusion"]}
    lines.append("| expected \\ named | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for row in rows:
        lines.append(
            "| %s | " % row
            + " | ".join(
                ("**%d**" if row == col else "%d") % cells[(row, col)]
                if (row, col) in cells
                else ""
                for col in cols
            )
            + " |"
        )
    lines += [
        "",
        "**False alarms** (unmutated bases with a warning/critical finding): %d"
        % len(figures["false_alarms"]),
    ]
    for alarm in figures["false_alarms"]:
        lines.append("- %s: %s" % (alarm["run"], "; ".join(alarm["findings"][:3])))
    lines += [
        "",
        "**Not effective** (left out of the figures), per operator:"
        " %s"
        % (
            ", ".join(
                "%s %d/%d" % (op, v["not_effective"], v["of"])
                for op, v in figures["not_effective"].items()
            )
            or "none"
        ),
    ]
    for run in figures["not_effective_runs"]:
        lines.append("- %s: %s" % (run["run"], run["why"]))
    if figures["no_baseline"] or figures["crashed"]:
        lines += ["", "**Not judged**: " + ", ".join(figures["no_baseline"] + figures["crashed"])]
    lines += [
        "",
        "**Misses** (effective mutants whose top warning/critical finding is not the"
        " expected cause): %d" % len(figures["misses"]),
    ]
    for miss in figures["misses"]:
        lines.append(
            "- %s: expected `%s`, named `%s`"
            % (miss["run"], miss["expected"], miss["named"] or NONE)
        )
        for line in miss["top_findings"] or ["(no finding at all)"]:
            lines.append("    - %s" % line)
    return "\n".join(lines)


def engine_version():
    """The tb_plateau being scored: its git commit, and whether its files differ from it."""
    from tb_plateau import diagnosis

    package = os.path.dirname(os.path.dirname(os.path.abspath(diagnosis.__file__)))

    def git(*args):
        done = subprocess.run(["git", "-C", package, *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return "tb_plateau from %s (not a git checkout)" % package
    modified = git("status", "--porcelain", "--", ".")
    return "tb_plateau at commit %s%s (%s)" % (
        commit,
        " with uncommitted changes" if modified else "",
        package,
    )


def _framework(record):
    base = bases.BASES.get(record["base"])
    return base.framework if base is not None else None


def score(root, split="all"):
    """{split: figures} and the Markdown report, for the runs under root."""
    results = diagnose_results(load_results(root, split))
    figures = {}
    for name in SPLITS:
        if split in ("all", name):
            figures[name] = split_figures([r for r in results if r["split"] == name])
    for name in SPLITS:
        # The PyTorch bases apart too: the same figures, for `summaries.torch.watch` runs.
        torch_runs = [r for r in results if r["split"] == name and _framework(r) == "torch"]
        if split in ("all", name) and torch_runs:
            figures[name + " (PyTorch bases)"] = split_figures(torch_runs)
    markdown = "\n\n".join(split_markdown(name, f) for name, f in figures.items())
    return figures, results, markdown


# ----------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the corpus (skips finished runs)")
    score_parser = commands.add_parser("score", help="diagnose the trained runs and score them")
    for sub in (train_parser, score_parser):
        sub.add_argument("--root", default=DEFAULT_ROOT, help="corpus directory (%(default)s)")
        sub.add_argument("--split", choices=("dev", "test", "all"), default="all")
    train_parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    train_parser.add_argument(
        "--only", nargs="+", metavar="BASE[/OP]", help="only these cases (wildcards allowed)"
    )
    train_parser.add_argument("--workers", type=int, default=2)
    train_parser.add_argument(
        "--cases", action="store_true", help="list the cases (bases x operators) and exit"
    )
    score_parser.add_argument("--json", help="also write the figures and every run's diagnosis")
    score_parser.add_argument("--markdown", help="also write the report to this file")
    args = parser.parse_args(argv)
    # TensorBoard's event reader imports TensorFlow when it is installed: quiet its start-up.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    if args.command == "train":
        cases = list_cases(args.split, args.seeds, args.only)
        if args.cases:
            print(cases_markdown(cases))
            return 0
        start = time.perf_counter()
        records = train_cases(cases, args.root, args.workers)
        run_seconds = sum(r.get("wall_seconds", 0.0) for r in records)
        print(
            "trained %d runs in %.1f min with %d workers (%.1f min of run time; %d already done)"
            % (
                len(records),
                (time.perf_counter() - start) / 60,
                args.workers,
                run_seconds / 60,
                len(cases) - len(records),
            )
        )
        return 0

    start = time.perf_counter()
    figures, results, markdown = score(args.root, args.split)
    markdown += "\n\n(diagnosed %d runs in %.1f s by %s)\n" % (
        len(results),
        time.perf_counter() - start,
        engine_version(),
    )
    print(markdown)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# tb_plateau fault-injection corpus\n\n" + markdown)
    if args.json:
        from tb_plateau import diagnosis

        with open(args.json, "w") as f:
            json.dump(diagnosis.json_ready({"splits": figures, "runs": results}), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
