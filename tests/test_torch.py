"""The PyTorch recorder: real tiny trainings, their records checked against the test's
own computation, and the diagnosis of PyTorch runs through the CLI."""

import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from tb_plateau import cli, metadata, rundata  # noqa: E402
from tests import torch_training  # noqa: E402
from tests.conftest import due_steps  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(log_dir):
    return rundata.read_run_directory(str(log_dir), ".")


def _rows(series, step):
    index = series.steps.tolist().index(step)
    return series.values[index]


def test_records_match_the_tests_own_computation(tmp_path):
    """Every recorded statistic of a recorded step equals what the test computes itself
    from the same batch: the loss, gradient norms from `param.grad` before the step,
    update/weight ratios and weight norms from the weights around it, the learning rate,
    and dead/mean activations from its own forward pass."""
    from tb_plateau.summaries.torch import watch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].bias[:6] = -50.0  # six of the sixteen units never fire
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    expected = {}
    with watch(model, optimizer, loss_fn, log_dir=tmp_path, every_n_steps=5, live=False):
        for step in range(12):
            batch = slice((step % 4) * 16, (step % 4) * 16 + 16)
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            with torch.no_grad():
                hidden = torch.relu(model[0](x[batch]))
                before = [p.detach().clone() for p in model.parameters()]
                grads = [p.grad.detach().clone() for p in model.parameters()]
            optimizer.step()
            with torch.no_grad():
                after = [p.detach().clone() for p in model.parameters()]

            def per_layer(values):
                return [float(np.sqrt(sum(values[0:2]))), float(np.sqrt(sum(values[2:4])))]

            expected[step] = {
                "loss": loss.item(),
                "grad_norm": per_layer([float(g.square().sum()) for g in grads]),
                "weight_norm": per_layer([float(w.square().sum()) for w in after]),
                "update_ratio": [
                    a / b
                    for a, b in zip(
                        per_layer(
                            [float((w1 - w0).square().sum()) for w0, w1 in zip(before, after)]
                        ),
                        per_layer([float(w.square().sum()) for w in before]),
                    )
                ],
                "dead": float((hidden.amax(dim=0) <= 0).float().mean()),
                "mean": float(hidden.mean()),
            }
    data = _read(tmp_path)
    recorded = due_steps(5, 12)
    assert data.scalars[metadata.BATCH_LOSS].steps.tolist() == recorded
    grad = data.vectors[metadata.GRAD_NORM]
    assert grad.labels == ["0", "2"]
    for step in recorded:
        want = expected[step]
        assert _rows(data.scalars[metadata.BATCH_LOSS], step) == pytest.approx(want["loss"], 1e-5)
        np.testing.assert_allclose(_rows(grad, step), want["grad_norm"], rtol=1e-4)
        np.testing.assert_allclose(
            _rows(data.vectors[metadata.WEIGHT_NORM], step), want["weight_norm"], rtol=1e-4
        )
        np.testing.assert_allclose(
            _rows(data.vectors[metadata.UPDATE_RATIO], step), want["update_ratio"], rtol=1e-3
        )
        dead = _rows(data.vectors[metadata.ACT_DEAD_FRACTION], step)
        assert dead[0] == pytest.approx(want["dead"]) and dead[0] >= 6 / 16
        mean = _rows(data.vectors[metadata.ACT_MEAN], step)
        assert mean[0] == pytest.approx(want["mean"], rel=1e-4)
        assert _rows(data.scalars[metadata.LEARNING_RATE], step) == pytest.approx(0.05)
    assert data.vectors[metadata.ACT_DEAD_FRACTION].labels == ["1"]
    config = data.config
    assert config["framework"] == "pytorch"
    assert [layer["class"] for layer in config["layers"]] == ["Linear", "ReLU", "Linear"]
    assert config["loss"]["class"] == "CrossEntropyLoss" and config["loss"]["from_logits"]
    assert config["loss"]["name"] == "sparse_categorical_crossentropy"  # class ids
    assert config["optimizer"]["name"] == "SGD"
    assert config["optimizer"]["config"]["learning_rate"] == pytest.approx(0.05)
    assert config["batch_size"] == 16
    labels = config["data"]["labels"][0]
    assert labels["class_counts"] == np.bincount(y[:16].numpy(), minlength=3).tolist()
    assert labels["shape"] == [16]  # with the batch, as Keras records it
    inputs = config["data"]["inputs"][0]
    np.testing.assert_allclose(inputs["mean"], x[:16].double().mean(0).numpy(), atol=1e-6)


def test_first_nonfinite_loss_is_caught_at_its_step(tmp_path):
    """A NaN batch between two records: its loss is written at once, the next step whole;
    the hooks come off at close."""
    from tb_plateau.summaries.torch import watch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    handle = watch(model, optimizer, loss_fn, log_dir=tmp_path, live=False)
    nan_step = 40
    assert nan_step not in due_steps(100, 60)
    for step in range(60):
        x = torch.randn(8, 4)
        if step == nan_step:
            x[0, 0] = float("nan")
        optimizer.zero_grad()
        loss_fn(model(x), x[:, :1]).backward()
        optimizer.step()
    handle.close()
    data = _read(tmp_path)
    loss = data.scalars[metadata.BATCH_LOSS]
    assert nan_step in loss.steps.tolist() and np.isnan(_rows(loss, nan_step))
    nonfinite = data.vectors[metadata.NONFINITE]
    assert nan_step + 1 in nonfinite.steps.tolist()
    # The step that broke, between records: its batch is read, and the NaN was in the data
    # (one input entry, and the target the test slices from it).
    counts = dict(zip(nonfinite.labels, _rows(nonfinite, nan_step)))
    assert (counts["inputs"], counts["labels"], counts["loss"]) == (1.0, 1.0, 1.0)
    assert np.isnan(counts["gradients"])  # not measured on that step
    from tb_plateau import diagnosis

    top = diagnosis.diagnose(data)[0]
    assert top.cause == "nonfinite" and top.evidence.get("source") == "inputs", top
    assert model._forward_hooks == {} and model._forward_pre_hooks == {}
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    assert not loss_fn._forward_hooks
    # A recorded step (the first) counts NaN in its labels too.
    with watch(model, optimizer, loss_fn, log_dir=tmp_path / "labels", live=False):
        x = torch.randn(8, 4)
        y = x[:, :1].clone()
        y[2, 0] = float("nan")
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    counts = _read(tmp_path / "labels").vectors[metadata.NONFINITE]
    assert dict(zip(counts.labels, _rows(counts, 0)))["labels"] == 1.0


def test_a_one_unit_code_is_named_from_the_targets_spectrum(tmp_path):
    """An autoencoder of six readings driven by two hidden factors through a one-unit code:
    the recorded targets' spectrum (the first batch's, as the test computes it) shows the
    second factor's share that the code leaves out, and the diagnosis names the code."""
    from tb_plateau import diagnosis
    from tb_plateau.summaries.torch import watch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(1024, 2)) * np.array([1.0, 0.6])
    x = np.tanh(factors @ rng.normal(size=(2, 6))) + rng.normal(0, 0.05, size=(1024, 6))
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    model = nn.Sequential(
        nn.Linear(6, 32), nn.ELU(), nn.Linear(32, 1), nn.Linear(1, 32), nn.ELU(), nn.Linear(32, 6)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.MSELoss()
    with watch(model, optimizer, loss_fn, log_dir=tmp_path, every_n_steps=8, live=False):
        for _ in range(12):
            for start in range(0, 1024, 32):
                batch = x[start : start + 32]
                optimizer.zero_grad()
                loss_fn(model(batch), batch).backward()
                optimizer.step()
    data = _read(tmp_path)
    first = x[:32].double().numpy()
    singular = np.linalg.svd(first - first.mean(axis=0), compute_uv=False)
    shares = data.config["data"]["labels"][0]["principal_shares"]
    np.testing.assert_allclose(shares[:6], singular**2 / np.sum(singular**2), rtol=1e-6)
    assert shares[6:] == [0.0, 0.0]
    top = diagnosis.diagnose(data)[0]
    assert (top.cause, top.layers) == ("insufficient_capacity", ["2"]), top


def test_a_recorder_error_never_stops_the_training(tmp_path, monkeypatch, caplog):
    from tb_plateau.summaries.torch import stats

    def broken(*args, **kwargs):
        raise RuntimeError("activation statistics broke")

    monkeypatch.setattr(stats, "activation_stats", broken)
    with caplog.at_level(logging.WARNING, logger="tb_plateau"):
        handle = torch_training.train("healthy", str(tmp_path), epochs=2, live=False)
    assert handle.step == 2 * torch_training.SAMPLES // torch_training.BATCH
    assert any("activations" in r.getMessage() for r in caplog.records)
    data = _read(tmp_path)
    assert metadata.GRAD_NORM in data.vectors and metadata.ACT_MEAN not in data.vectors


def test_bad_arguments_name_themselves(tmp_path):
    from tb_plateau.summaries.torch import watch

    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        watch("model", optimizer, log_dir=tmp_path)
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer"):
        watch(model, None, log_dir=tmp_path)
    with pytest.raises(ValueError, match="every_n_steps"):
        watch(model, optimizer, log_dir=tmp_path, every_n_steps=0)
    with pytest.raises(ValueError, match="stop_on"):
        watch(model, optimizer, log_dir=tmp_path, stop_on="sometimes")


@pytest.fixture(scope="module")
def torch_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_runs")
    for kind in torch_training.KINDS:
        torch_training.train(kind, str(root / kind))
    return root


@pytest.mark.slow
def test_cli_diagnoses_pytorch_runs_with_pytorch_fixes(torch_logdir, capsys):
    assert cli.main(["diagnose", str(torch_logdir), "--json"]) in (0, 1)
    reports = {r["run"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    for kind, cause in torch_training.EXPECTED.items():
        serious = [f for f in reports[kind]["findings"] if f["severity"] != "info"]
        if cause is None:
            assert serious == [], (kind, serious)
            continue
        assert serious and serious[0]["cause"] == cause, (kind, serious[:2])
        assert all(torch_training.is_pytorch_fix(f) for f in serious[0]["fixes"]), serious[0]
    mismatch = [f for f in reports["softmax_ce"]["findings"] if f["severity"] != "info"][0]
    assert "CrossEntropyLoss" in mismatch["explanation"]
    assert "no final nn.Softmax" in mismatch["fixes"][0]


def test_watch_imports_without_tensorflow(tmp_path):
    """The PyTorch side, the CLI and the plugin import with TensorFlow unavailable."""
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from tests import torch_training\n"
        "torch_training.train('healthy', sys.argv[1], epochs=1, live=False)\n"
        "from tb_plateau import cli\n"
        "sys.exit(cli.main(['diagnose', sys.argv[1]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "HEALTHY" in result.stdout or "not_converged" in result.stdout, result.stdout


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_rank_zero_writes_the_synchronized_gradients(tmp_path):
    """Two DistributedDataParallel processes (gloo on loopback): one event file, from rank
    0, whose gradient norms are those of the averaged gradients, not of its own half."""
    log_dir, out = tmp_path / "run", tmp_path / "norms.json"
    port = _free_port()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.torch_ddp_run", str(rank), "2", str(port)]
            + [str(log_dir), str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
    result = json.loads(out.read_text())
    files = [f for f in os.listdir(log_dir) if f.startswith("events.out.tfevents")]
    assert len(files) == 1 and result["writes"], files
    grad = _read(log_dir).vectors[metadata.GRAD_NORM]
    assert grad.steps.tolist() == [0, 1, 2, 3]
    synced = [n["synced"] for n in result["norms"]]
    own = [n["own"] for n in result["norms"]]
    np.testing.assert_allclose(grad.values[:, 0], synced, rtol=1e-5)
    assert all(abs(s - o) > 1e-3 * o for s, o in zip(synced, own)), (synced, own)


EPOCHS = 12  # of the Lightning run; stop_on stops it within its first half


def _lightning_module(lr):
    lightning = pytest.importorskip("lightning")

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_training.model_for("healthy")
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            time.sleep(0.002)  # a step takes a little while, as a real model's would
            x, y = batch
            loss = self.loss_fn(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", self.loss_fn(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

    return lightning, Module()


def _fit(tmp_path, lr, **callback_args):
    from torch.utils.data import DataLoader, TensorDataset

    from tb_plateau.summaries.lightning import PlateauCallback

    lightning, module = _lightning_module(lr)
    torch.manual_seed(0)
    x, y = torch_training.data(0)
    callback = PlateauCallback(**callback_args)
    trainer = lightning.Trainer(
        max_epochs=EPOCHS,
        default_root_dir=str(tmp_path),
        callbacks=[callback],
        logger=lightning.pytorch.loggers.CSVLogger(str(tmp_path)),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        deterministic=True,
    )
    trainer.fit(
        module,
        DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True),
        DataLoader(TensorDataset(x[:256], y[:256]), batch_size=64),
    )
    return trainer, callback


@pytest.mark.slow
def test_lightning_callback_records_into_the_trainers_log_dir(tmp_path):
    trainer, callback = _fit(tmp_path, lr=3.0, stop_on="critical")
    assert callback.stopped_because and "learning rate" in callback.stopped_because
    assert trainer.global_step < EPOCHS * (torch_training.SAMPLES // 32) // 2  # stopped early
    data = _read(trainer.log_dir)
    assert data.config["recorder"] == "lightning"
    assert data.config["loss"]["class"] == "CrossEntropyLoss"
    assert metadata.GRAD_NORM in data.vectors and metadata.ACT_DEAD_FRACTION in data.vectors
    from tb_plateau import diagnosis

    findings = [f for f in diagnosis.diagnose(data) if f.severity != "info"]
    assert findings[0].cause == "lr_too_high"
    # Epoch losses from what the module logged; the last epoch's validation loss too.
    assert len(data.scalars[metadata.EPOCH_PREFIX + "loss"]) >= 1
    assert metadata.EPOCH_PREFIX + "val_loss" in data.scalars
