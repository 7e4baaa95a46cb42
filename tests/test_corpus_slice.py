"""A fast slice of the fault-injection corpus (`benchmarks/corpus`), as a CI check.

One dev base of each framework (Keras, and PyTorch where torch is installed) trained
unmutated and broken by five operators whose causes the engine names today, all through the
corpus's own code (`run.run_case`, the same function its workers run,
then `run.diagnose_results`, the same diagnosis as `score`). It keeps the corpus's code
working and its clearest cases named; the corpus itself (about 430 trainings) is a benchmark,
`python -m benchmarks.corpus.run train` then `score`, not a test.
"""

import importlib.util

import pytest

pytest.importorskip("tensorflow")

from benchmarks.corpus import run  # noqa: E402

pytestmark = pytest.mark.slow

# The fastest dev base of each framework.
BASES = ["tabular_mlp"] + (["torch_mlp"] if importlib.util.find_spec("torch") else [])
# Five different causes, each the operator's expected top finding.
OPERATORS = ("lr_x100", "nan_rows", "labels_constant", "bias_negative", "inputs_x1000")


@pytest.fixture(scope="module", params=BASES)
def diagnosed(request, tmp_path_factory):
    base = request.param
    root = str(tmp_path_factory.mktemp("corpus"))
    records = [run.run_case(run.Case(base, op, 0), root) for op in (run.NONE,) + OPERATORS]
    for record in records:
        record["logdir"] = run.Case(base, record["operator"], 0).logdir(root)
    return {record["operator"]: record for record in run.diagnose_results(records)}


def test_the_base_trains_well_and_raises_no_alarm(diagnosed):
    base = diagnosed[run.NONE]
    assert base["status"] == "ok"
    assert base["final_loss"] < 0.5 * base["initial_loss"]
    assert base["score"] > base["chance_score"] + 0.3
    assert base["serious"] == [], base["findings"]


@pytest.mark.parametrize("operator", OPERATORS)
def test_each_mutant_is_effective_and_named(diagnosed, operator):
    mutant = diagnosed[operator]
    assert mutant["status"] == "ok", mutant.get("error")
    assert mutant["effective"], mutant["effect"]
    assert mutant["top"] == mutant["expected"], mutant["findings"]
