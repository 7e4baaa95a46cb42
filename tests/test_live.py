"""Live verdicts: the diagnosis while the training runs, the stop it may ask for, and
`tb-plateau watch` following a training written by another process."""

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tb_plateau import diagnosis, rundata
from tb_plateau.summaries.writer import _RunWriter, dense_offsets

JUMP_STEP = 300
# Each step takes at least this long, as a real model's would: 40 steps (the bound on how late
# the jump may be named) are then several times a live diagnosis, even on a loaded machine.
STEP_SECONDS = 0.01
JUMP_SCRIPT = os.path.join(os.path.dirname(__file__), "live_training.py")


def test_records_are_dense_first_then_spaced_out(tmp_path):
    writer = _RunWriter(str(tmp_path), every_n_steps=20)
    writer._config_written = True  # (the first record, with the configuration, is any step)
    due = [step for step in range(120) if writer.is_due(step)]
    assert due == [0, 1, 2, 3, 5, 9, 17, 20, 33, 40, 60, 80, 100]
    assert dense_offsets(1) == {0}  # every step anyway
    # A new learning rate starts a dense phase again, from the step after it.
    assert writer.note_learning_rate(60, 1e-3) is False
    assert writer.note_learning_rate(100, 0.5) is True
    due = [s for s in range(100, 140) if writer.is_due(s)]
    assert due == [100, 101, 102, 103, 104, 106, 110, 118, 120, 134]
    assert writer.note_learning_rate(120, 0.4) is False  # within a factor of 2


def _train(log_dir, jump, stop_on):
    import keras

    from tb_plateau.summaries import PlateauCallback
    from tests.live_training import SlowSteps, build, data, jump_schedule

    keras.utils.set_random_seed(0)
    x, y = data()
    model = build()
    rate = jump_schedule(JUMP_STEP, 50.0) if jump else 1e-3
    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callback = PlateauCallback(log_dir, every_n_steps=20, stop_on=stop_on)
    steps = [SlowSteps(STEP_SECONDS), callback]
    model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=steps)
    return model, callback


def test_a_learning_rate_jump_is_named_at_once_and_stops_the_run(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tb_plateau")
    model, callback = _train(str(tmp_path / "run"), jump=True, stop_on="critical")
    lines = [r.getMessage() for r in caplog.records if "learning rate jumped" in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
    named_at = int(lines[0].split(": step ")[1].split(":")[0])
    # Named within a few records of the jump (the records are dense again after it).
    assert JUMP_STEP <= named_at <= JUMP_STEP + 40, lines[0]  # the jump's own record at best
    assert "Fix:" in lines[0]
    # Stopped well before the 6 epochs (768 steps) were through, and said why.
    assert callback.stopped_because and "stopping the training" in callback.stopped_because
    assert int(model.optimizer.iterations.numpy()) < 600
    # The run stays diagnosable, and the report says when the cause was first named.
    report = diagnosis.run_report(rundata.read_run_directory(str(tmp_path / "run"), "run"))
    top = report["findings"][0]
    assert top["cause"] == "lr_too_high"
    assert top["first_named_step"] == named_at and top["first_named_elapsed_s"] > 0


def test_a_healthy_run_is_quiet_and_never_stopped(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tb_plateau")
    model, callback = _train(str(tmp_path / "run"), jump=False, stop_on="warning")
    assert [r.getMessage() for r in caplog.records] == []
    assert callback.stopped_because is None
    assert int(model.optimizer.iterations.numpy()) == 6 * 128
    data = rundata.read_run_directory(str(tmp_path / "run"), "run")
    assert data.verdicts == []
    assert diagnosis.run_report(data)["verdict"] == "healthy"


def test_bad_stop_on_is_named(tmp_path):
    from tb_plateau.summaries import PlateauCallback

    with pytest.raises(ValueError, match="stop_on"):
        PlateauCallback(tmp_path / "run", stop_on="sometimes")
    with pytest.raises(ValueError, match="stop_on needs live"):
        PlateauCallback(tmp_path / "run", stop_on="critical", live=False)


# `tb-plateau watch` as a terminal runs it. A test run started in the background (`cmd &`)
# has SIGINT ignored, children inherit that, and Python then never raises KeyboardInterrupt;
# a terminal's Ctrl-C is delivered: the child restores Python's handler first.
_WATCH = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " from tb_plateau import cli; sys.exit(cli.main(sys.argv[1:]))"
)


def _watch(logdir, *args):
    return subprocess.Popen(
        [sys.executable, "-c", _WATCH, "watch", logdir, "--interval", "0.3", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_follows_a_training_in_another_process(tmp_path):
    logdir = str(tmp_path / "logs")
    # The watcher starts first, before the logdir exists.
    watcher = _watch(logdir, "--exit-on", "critical")
    trainer = subprocess.Popen(
        [sys.executable, JUMP_SCRIPT, os.path.join(logdir, "jump"), str(JUMP_STEP)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, err = watcher.communicate(timeout=240)
        still_training = trainer.poll() is None
    finally:
        trainer.kill()
        trainer.communicate()
    assert watcher.returncode == 1, (out, err)
    assert "waiting for" in out
    assert "jump: step" in out and "learning rate jumped to 50" in out, out
    assert "exiting: a critical finding in run jump" in out
    assert still_training  # it followed the run while it was written


def test_watch_exits_0_on_ctrl_c(tmp_path):
    watcher = _watch(str(tmp_path))
    assert "following" in watcher.stderr.readline()  # started, imports done
    time.sleep(1.0)  # a few polls
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "Traceback" not in err


def test_live_log_reads_the_run_as_the_files_do(tmp_path):
    """The in-memory run the live verdict diagnoses equals the run read back from disk."""
    from tb_plateau.live import RunLog

    writer = _RunWriter(str(tmp_path / "run"), every_n_steps=5)
    log = RunLog("run")
    writer.listener = log.add
    rng = np.random.default_rng(0)
    for step in range(30):
        if writer.is_due(step):
            writer.write(
                step,
                scalars=[("batch_loss", 1.0 / (step + 1))],
                vectors=[("grad_norm", rng.random(2), ["a", "b"], {})],
                config={"recorder": "test"} if step == 0 else None,
            )
    writer.write_epoch(29, {"loss": 0.1, "val_loss": 0.2})
    writer.close()
    live, disk = log.snapshot(), rundata.read_run_directory(str(tmp_path / "run"), "run")
    assert live.config == disk.config
    assert sorted(live.scalars) == sorted(disk.scalars)
    for name in disk.scalars:
        np.testing.assert_array_equal(live.scalars[name].steps, disk.scalars[name].steps)
        np.testing.assert_allclose(live.scalars[name].values, disk.scalars[name].values, 1e-6)
    np.testing.assert_allclose(
        live.vectors["grad_norm"].values, disk.vectors["grad_norm"].values, 1e-6
    )
    assert live.vectors["grad_norm"].labels == ["a", "b"]
