"""`tb-plateau diagnose`: exit codes, JSON schema, Keras train/validation pairs, no TensorFlow."""

import json
import os
import subprocess
import sys

import pytest

from tb_plateau import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def keras_logdir(tmp_path, write_scalars):
    train = [1.0 - 0.08 * i for i in range(12)]
    val = [1.0, 0.9, 0.8, 0.7, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    write_scalars(str(tmp_path / "exp" / "train"), "epoch_loss", train)
    write_scalars(str(tmp_path / "exp" / "validation"), "epoch_loss", val)
    return str(tmp_path)


def test_json_pairs_keras_runs(keras_logdir, capsys):
    assert cli.main(["diagnose", keras_logdir, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [run["run"] for run in result["runs"]] == ["exp/train"]
    run = result["runs"][0]
    assert run["verdict"] == "warning"
    assert run["findings"][0]["cause"] == "overfitting"


def test_readable_report(keras_logdir, capsys):
    assert cli.main(["diagnose", keras_logdir]) == 0
    out = capsys.readouterr().out
    assert "WARNING  exp/train" in out and "\033[" not in out
    # Every fix of the finding, numbered, each line of multi-line code kept.
    result = cli.diagnose_logdir(keras_logdir)
    fixes = result["runs"][0]["findings"][0]["fixes"]
    assert len(fixes) > 1
    for number, fix in enumerate(fixes, 1):
        first, *rest = fix.splitlines()
        assert "%d. %s" % (number, first) in out
        assert all(line in out for line in rest)


def test_empty_logdir_report_ends_its_line(tmp_path, capsys):
    assert cli.main(["diagnose", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "No runs found (no event files under this logdir).\n"


def test_run_filter_and_bad_arguments(keras_logdir, tmp_path, capsys):
    assert cli.main(["diagnose", keras_logdir, "--run", "exp/train", "--json"]) == 0
    assert cli.main(["diagnose", keras_logdir, "--run", "nope"]) == 2
    assert "--run 'nope'" in capsys.readouterr().err
    assert cli.main(["diagnose", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["diagnose"])
    assert exit_info.value.code == 2


def test_empty_logdir(tmp_path, capsys):
    assert cli.main(["diagnose", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"runs": []}


def test_runs_without_tensorflow(keras_logdir):
    code = (
        "import sys; from tb_plateau import cli; rc = cli.main(['diagnose', %r]);"
        " assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)"
        % keras_logdir
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
