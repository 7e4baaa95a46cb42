"""The diagnosis on real (tiny) Keras trainings, healthy and broken in known ways.

Three suites: `tests/reproducers.py` (the trainings the thresholds were tuned
on), then `tests/heldout.py` and `tests/heldout_fresh.py` (trainings written
later, each unlike the ones before, to measure how the diagnosis does on
trainings it was not tuned on; what it got wrong there was fixed, and they
stay here so it stays fixed). Each scenario trains
once per session (about 2 minutes per suite on 2 CPU cores); each test asserts
the top warning/critical finding, or none for a healthy run.
`precision_recall` gives the README's tables:

    python -m tests.test_diagnosis_reproducers
"""

import json
import os
import subprocess
import sys

import pytest

from tests import heldout, heldout_fresh, reproducers

tf = pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow


def top_cause(logdir):
    from tb_plateau import diagnosis, rundata

    findings = diagnosis.diagnose(rundata.read_logdir_run(logdir, "."))
    serious = [f for f in findings if f.severity != diagnosis.INFO]
    return serious[0].cause if serious else None


SUITES = {"reproducers": reproducers, "heldout": heldout, "heldout_fresh": heldout_fresh}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """{suite: {scenario: logdir}}. At first use the three suites start training at once, each
    in a process of its own (`python -m tests.test_diagnosis_reproducers --train SUITE ROOT`):
    they are independent, and their small models leave a core idle when trained one suite
    after another."""
    started = {}
    cache = {}

    def start_all():
        for suite in SUITES:
            root = tmp_path_factory.mktemp(suite)
            command = [sys.executable, "-m", "tests.test_diagnosis_reproducers", "--train"]
            # Output into files: a full pipe would hold a process up while another is awaited.
            with open(root / "train.out", "w") as out, open(root / "train.err", "w") as err:
                process = subprocess.Popen(
                    command + [suite, str(root)], cwd=ROOT, stdout=out, stderr=err
                )
            started[suite] = (root, process)

    def logdirs(suite):
        if not started:
            start_all()
        if suite not in cache:
            root, process = started[suite]
            process.wait(timeout=1800)
            err = (root / "train.err").read_text()
            assert process.returncode == 0, err[-3000:]
            cache[suite] = json.loads((root / "train.out").read_text().strip().splitlines()[-1])
        return cache[suite]

    yield logdirs
    for _, process in started.values():
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    "suite, name", [(s, n) for s, module in SUITES.items() for n in sorted(module.SCENARIOS)]
)
def test_top_finding(trained, suite, name):
    expected = SUITES[suite].SCENARIOS[name][1]
    assert top_cause(trained(suite)[name]) == expected


def precision_recall(results):
    """{cause: (precision, recall, support)} from {scenario: (expected, got)}."""
    table = {}
    causes = sorted({e for e, _ in results.values() if e} | {g for _, g in results.values() if g})
    for cause in causes:
        predicted = [n for n, (_, g) in results.items() if g == cause]
        relevant = [n for n, (e, _) in results.items() if e == cause]
        hits = [n for n in predicted if results[n][0] == cause]
        precision = len(hits) / len(predicted) if predicted else float("nan")
        recall = len(hits) / len(relevant) if relevant else float("nan")
        table[cause] = (precision, recall, len(relevant))
    return table


def main(root):
    for suite, module in SUITES.items():
        logdirs = module.train_all(os.path.join(root, suite))
        results = {n: (module.SCENARIOS[n][1], top_cause(d)) for n, d in logdirs.items()}
        print("\n%s\n\n| cause | precision | recall | scenarios |\n|---|---|---|---|" % suite)
        for cause, (p, r, support) in precision_recall(results).items():
            print("| `%s` | %.2f | %.2f | %d |" % (cause, p, r, support))
        healthy = [n for n, (e, _) in results.items() if e is None]
        false_alarms = [n for n in healthy if results[n][1] is not None]
        print("\nhealthy runs: %d, false alarms: %d" % (len(healthy), len(false_alarms)))
        for name, (expected, got) in sorted(results.items()):
            if expected != got:
                print("miss: %s expected %s got %s" % (name, expected, got))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--train"]:  # one suite, for the `trained` fixture
        print(json.dumps(SUITES[sys.argv[2]].train_all(sys.argv[3])))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else os.path.join("/tmp", "tb_plateau_reproducers"))
