"""Unit tests of the diagnosis engine on synthetic RunData (no TensorFlow, no files)."""

import json
import math

import numpy as np
import pytest

from tb_plateau import diagnosis, metadata
from tb_plateau.diagnosis import causes, ranking
from tb_plateau.diagnosis.finding import Finding
from tb_plateau.rundata import RunData, Series, VectorSeries


def _series(values, start=0, every=10):
    values = np.asarray(values, float)
    return Series(np.arange(len(values)) * every + start, values)


def _vector(rows, labels, every=10, **header):
    rows = np.asarray(rows, float)
    return VectorSeries(np.arange(len(rows)) * every, rows, list(labels), dict(header))


def _decaying(n=60, start=2.3, floor=0.1, rate=0.15, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return floor + (start - floor) * np.exp(-rate * t) * (1 + noise * rng.normal(size=n))


def _run(loss=None, **kwargs):
    run = RunData(name="exp", **kwargs)
    if loss is not None:
        run.scalars[metadata.BATCH_LOSS] = _series(loss)
    return run


def _top(run):
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    return findings[0].cause if findings else None


def test_every_cause_has_title_and_fixes():
    assert len(causes.CAUSE_IDS) == 17
    for cause in causes.CAUSE_IDS:
        assert causes.title(cause)
        assert causes.fixes(cause)


def test_healthy_converged_curve_has_no_warning():
    run = _run(_decaying(noise=0.05))
    report = diagnosis.run_report(run)
    assert report["verdict"] == "healthy"
    assert report["findings"] == []


def test_report_schema_and_json():
    run = _run(_decaying(n=40, rate=0.01))
    report = diagnosis.run_report(run)
    assert set(report) <= {
        "schema_version",
        "status",
        "run",
        "verdict",
        "findings",
        "notes",
        "loss_series",
        "drawing",
    }
    assert report["drawing"] == {
        "not_converged": {
            "charts": ["loss"],
            "region": "still falling",
            "config_sections": [],
            "output_layer": False,
        }
    }
    assert report["loss_series"] == {
        "train": {"run": "exp", "tag": "plateau/batch_loss"},
        "validation": None,
    }
    assert report["schema_version"] == causes.SCHEMA_VERSION == 3
    assert report["findings"][0]["cause"] == "not_converged"
    finding = report["findings"][0]
    assert set(finding) == {
        "cause",
        "severity",
        "confidence",
        "title",
        "explanation",
        "first_step",
        "layers",
        "fixes",
        "evidence",
    }
    assert finding["evidence"]["series"] == ["plateau/batch_loss"]
    json.dumps(report)


def test_problems_are_reported_apart_from_notes():
    run = _run(_decaying(), problems=["plateau/grad_norm: written by a newer tb_plateau"])
    report = diagnosis.run_report(run)
    assert report["problems"] == ["plateau/grad_norm: written by a newer tb_plateau"]
    assert report["notes"] == [diagnosis.NOT_RECORDED_NOTE]  # (a loss series alone)
    assert report["verdict"] == report["status"] == "healthy"  # not marked incomplete
    run.incomplete = True
    report = diagnosis.run_report(run)
    assert report["verdict"] == "healthy" and report["status"] == "incomplete"
    assert report["notes"][0] == diagnosis.INCOMPLETE_NOTE


def test_vanishing_gradients_with_numbers():
    run = _run(_decaying(n=30, rate=0.01))
    rows = [[2e-8, 1e-5, 1e-2]] * 10
    run.vectors[metadata.GRAD_NORM] = _vector(rows, ["dense", "dense_1", "dense_2"])
    findings = diagnosis.diagnose(run)
    assert findings[0].cause == "vanishing_gradients"
    assert "2e-08" in findings[0].explanation
    assert "500,000 times" in findings[0].explanation


def test_zero_gradient_names_the_custom_loss():
    run = _run(np.full(20, 0.5) + np.linspace(0, 1e-3, 20))
    run.vectors[metadata.GRAD_NORM] = _vector([[0.0, 0.0]] * 8, ["dense", "dense_1"])
    run.config = {"loss": {"name": "thresholded_loss", "custom": True}, "layers": []}
    top = diagnosis.diagnose(run)[0]
    assert top.cause == "zero_gradient" and "thresholded_loss" in top.title


def test_dead_relu_from_unnormalized_inputs_ranks_inputs_first():
    run = _run(np.full(30, 0.69) + np.linspace(0, 1e-3, 30))
    run.vectors[metadata.ACT_DEAD_FRACTION] = _vector(
        [[0.98, 0.9]] * 6, ["dense", "dense_1"], activations=["relu", "relu"]
    )
    run.config = {
        "layers": [
            {"name": "dense", "class": "Dense", "activation": "relu", "units": 8},
            {"name": "dense_1", "class": "Dense", "activation": "relu", "units": 8},
            {"name": "out", "class": "Dense", "activation": None, "units": 1},
        ],
        "data": {
            "inputs": [
                {
                    "name": "x",
                    "mean": [5000.0, 1.0],
                    "std": [800.0, 0.5],
                    "min": [100.0, 0.0],
                    "max": [9000.0, 2.0],
                }
            ]
        },
    }
    findings = diagnosis.diagnose(run)
    assert [f.cause for f in findings[:2]] == ["unnormalized_inputs", "dead_relu"]
    assert findings[0].severity == "critical"  # takes its symptom's severity
    assert "unnormalized_inputs" in findings[1].explanation


def test_nonfinite_in_inputs_is_the_root():
    run = _run(np.array([1.0, 0.9, np.nan, np.nan, np.nan]))
    run.vectors[metadata.NONFINITE] = _vector(
        [[0, 0, 0, 0, 0, 0], [3, 0, 1, 40, 0, 0]], metadata.NUMERICS_SOURCES
    )
    top = diagnosis.diagnose(run)[0]
    assert top.cause == "nonfinite" and top.evidence["source"] == "inputs"
    assert top.first_step == 10


def test_loss_output_mismatch_softmax_one_unit():
    run = _run(np.full(20, 0.0))
    run.config = {
        "layers": [{"name": "out", "class": "Dense", "activation": "softmax", "units": 1}],
        "loss": {"name": "binary_crossentropy", "from_logits": False},
    }
    assert _top(run) == "loss_output_mismatch"


def test_overfitting_from_keras_style_curves():
    train = np.linspace(1.0, 0.1, 12)
    val = np.concatenate([np.linspace(1.0, 0.5, 5), np.linspace(0.55, 0.9, 7)])
    run = RunData(name="exp/train")
    run.other_scalars["epoch_loss"] = _series(train, every=1)
    run.validation_scalars["epoch_loss"] = _series(val, every=1)
    report = diagnosis.run_report(run)
    assert report["findings"][0]["cause"] == "overfitting"
    assert any("not recorded with tb_plateau" in note for note in report["notes"])


def test_pytorch_style_loss_flat_at_log_c_is_stuck_without_asserting_a_class_count():
    """Without the configuration the class count is unknown: ln 10 is a hint, not a verdict."""
    run = RunData(name="torch")
    rng = np.random.default_rng(0)
    run.other_scalars["Loss/train"] = _series(math.log(10) + 0.002 * rng.normal(size=50))
    report = diagnosis.run_report(run)
    top = report["findings"][0]
    assert report["verdict"] == "warning" and top["cause"] == "unexplained_plateau"
    assert "if the model has 10 balanced classes" in top["explanation"]
    # Fixes for a run not written from Keras are words, not Keras code.
    assert top["fixes"] and not any("keras" in fix for fix in top["fixes"])


def test_negative_cross_entropy_curve_only():
    run = RunData(name="torch")
    run.other_scalars["train_loss"] = _series(np.linspace(0.5, -3.0, 30))
    assert "loss_output_mismatch" in [f.cause for f in diagnosis.diagnose(run)]


def test_lr_too_high_from_spikes():
    # Spikes that keep the loss from settling (it ends at 40% of its start).
    loss = _decaying(n=60, floor=1.0, noise=0.02)
    loss[[20, 35, 50]] = 2.5
    run = _run(loss)
    assert _top(run) == "lr_too_high"


def test_finding_rejects_unknown_cause():
    with pytest.raises(ValueError):
        Finding(cause="bogus", severity="warning", confidence=0.5, explanation="")


def test_ranking_puts_roots_first():
    symptom = Finding("zero_gradient", "critical", 0.9, "zero")
    evidence = {"at_init": True, "dead_fraction": {"dense": 1.0}}
    root = Finding("dead_relu", "warning", 0.8, "dead", evidence=evidence)
    ranked = ranking.rank([symptom, root])
    assert [f.cause for f in ranked] == ["dead_relu", "zero_gradient"]
    assert ranked[1].explained_by == "dead_relu"


def test_partly_dead_units_explain_neither_zero_gradients_nor_tiny_steps():
    # A layer a third dead still passes gradient through its live units.
    for cause in ("zero_gradient", "lr_too_low"):
        other = Finding(cause, "warning", 0.8, cause)
        evidence = {"at_init": True, "dead_fraction": {"dense": 0.33}}
        dead = Finding("dead_relu", "warning", 0.6, "dead", first_step=0, evidence=evidence)
        ranked = ranking.rank([dead, other])
        assert [f.explained_by for f in ranked] == [None, None]


def test_gradients_large_in_a_saturated_layer_are_its_weights():
    def findings(saturated_layer):
        exploding = Finding(
            "exploding_gradients",
            "warning",
            0.7,
            "explode",
            first_step=0,
            layers=["rnn/cell"],
            evidence={"at_init": True, "depth_ratio": 140.0},
        )
        saturated = Finding(
            "saturated_activations",
            "warning",
            0.9,
            "saturated",
            first_step=0,
            layers=[saturated_layer],
            evidence={"at_init": True},
        )
        return ranking.rank([exploding, saturated])

    # The same layer, from the first record: one fault (too-large weights), seen as saturation.
    ranked = findings("rnn/cell")
    assert [f.cause for f in ranked] == ["saturated_activations", "exploding_gradients"]
    assert ranked[1].explained_by == "saturated_activations"
    # Saturation elsewhere does not explain gradients blowing up in another layer.
    ranked = findings("dense_3")
    assert ranked[0].cause == "exploding_gradients"
    assert ranked[1].explained_by == "exploding_gradients"


def test_probabilities_as_logits_disproved_by_the_loss_is_only_a_note():
    """softmax + from_logits=True caps the loss at ln(1 + (K-1)/e), unless Keras forgives it."""
    config = {
        "layers": [{"name": "out", "class": "Dense", "units": 4, "activation": "softmax"}],
        "loss": {"name": "categorical_crossentropy", "from_logits": True},
    }
    floor = math.log(1 + 3 / math.e)  # 0.74 for 4 classes
    stuck = _run(_decaying(floor=floor + 0.05), config=config)
    forgiven = _run(_decaying(floor=0.01), config=config)
    (finding,) = [f for f in diagnosis.diagnose(stuck) if f.cause == causes.LOSS_OUTPUT_MISMATCH]
    assert finding.severity == causes.WARNING
    (finding,) = [f for f in diagnosis.diagnose(forgiven) if f.cause == causes.LOSS_OUTPUT_MISMATCH]
    assert finding.severity == causes.INFO and "forgiven" in finding.title
    assert "0.7" in finding.explanation  # the floor it went below, shown


def test_one_huge_gradient_record_is_not_an_explosion():
    """A single record 1e6x the early norm, then calm: a bad step, not exploding gradients."""
    grads = np.ones((40, 3))
    grads[10] = 1e6
    run = _run(_decaying(), vectors={metadata.GRAD_NORM: _vector(grads, ["a", "b", "c"])})
    assert causes.EXPLODING_GRADIENTS not in [f.cause for f in diagnosis.diagnose(run)]
    grads[11:] = 1e6  # and it stays there
    run = _run(_decaying(), vectors={metadata.GRAD_NORM: _vector(grads, ["a", "b", "c"])})
    assert causes.EXPLODING_GRADIENTS in [f.cause for f in diagnosis.diagnose(run)]


def test_keras_log_spike_then_constant_loss_is_a_learning_rate_not_healthy():
    """Epoch 1 at 72,000, then exactly ln 10 for seven epochs: a falling curve overall, yet
    the constant tail says the network's output no longer depends on its weights."""
    losses = [72_000.0] + [math.log(10)] * 7
    run = RunData(name="train")
    run.other_scalars["epoch_loss"] = _series(losses, every=1)
    report = diagnosis.run_report(run)
    assert report["verdict"] != "healthy"
    top = report["findings"][0]
    assert top["cause"] == "lr_too_high" and top["first_step"] == 0
    assert "ln 10" in top["explanation"] and "if the model has 10" in top["explanation"]
    assert any("keras" in fix for fix in top["fixes"])  # a Keras log gets Keras code


def test_time_decides_the_root_between_two_events():
    """Units that died after a learning-rate jump stand under it; units dead before it do not."""
    jump = Finding("lr_too_high", "warning", 0.85, "jump", first_step=360)
    died_after = Finding("dead_relu", "critical", 0.9, "dead", first_step=380)
    ranked = ranking.rank([died_after, jump])
    assert [f.cause for f in ranked] == ["lr_too_high", "dead_relu"]
    assert ranked[0].severity == "critical"  # as grave as what it caused
    assert ranked[1].explained_by == "lr_too_high" and ranked[1].fixes == []
    jump = Finding("lr_too_high", "warning", 0.85, "jump", first_step=360)
    died_before = Finding("dead_relu", "critical", 0.9, "dead", first_step=100)
    ranked = ranking.rank([jump, died_before])
    assert ranked[0].cause == "dead_relu" and ranked[1].explained_by is None


def _f(cause, severity="warning", first_step=None, **evidence):
    return Finding(cause, severity, 0.8, cause, first_step=first_step, evidence=evidence)


def test_labels_without_signal_are_a_root_and_explain_what_they_do_to_the_units():
    """All-alike labels drive the output to a constant: units die and gradients fade under
    them. A loss at chance with partly dead units is the labels' doing; a layer dead through
    and through explains the chance-level loss itself."""
    constant = _f("no_signal", "critical", 0, source="labels")
    dead = _f("dead_relu", "critical", 10, dead_fraction={"d": 0.6}, at_init=False)
    fading = _f("vanishing_gradients", "warning", 20, at_init=False)
    ranked = ranking.rank([dead, fading, constant])
    assert [(f.cause, f.explained_by) for f in ranked] == [
        ("no_signal", None),
        ("dead_relu", "no_signal"),
        ("vanishing_gradients", "no_signal"),
    ]
    # What was there before any training (measured on the initial weights) is not theirs.
    fading = _f("vanishing_gradients", "warning", 0, at_init=True)
    constant = _f("no_signal", "critical", 0, source="labels")
    assert ranking.rank([fading, constant])[1].explained_by is None
    at_chance = _f("no_signal", "critical", 0)
    partly = _f("dead_relu", "critical", 10, dead_fraction={"d": 0.6}, at_init=False)
    assert [f.cause for f in ranking.rank([partly, at_chance])] == ["no_signal", "dead_relu"]
    at_chance = _f("no_signal", "critical", 0)
    blocked = _f("dead_relu", "critical", 10, dead_fraction={"d": 1.0}, at_init=False)
    assert [f.cause for f in ranking.rank([at_chance, blocked])] == ["dead_relu", "no_signal"]


def test_at_the_first_record_a_collapsing_signal_explains_partly_dead_units():
    """A too-narrow initialization: gradients fade layer by layer and units whose sign only
    their bias sets read as dead. A layer already entirely dead is a bias that keeps it off."""
    fading = _f("vanishing_gradients", "critical", 0, at_init=True)
    partly = _f("dead_relu", "critical", 0, at_init=True, initial_dead_fraction=0.6)
    assert ranking.rank([partly, fading])[0].cause == "vanishing_gradients"
    fading = _f("vanishing_gradients", "critical", 0, at_init=True)
    off = _f("dead_relu", "critical", 0, at_init=True, initial_dead_fraction=1.0)
    assert ranking.rank([fading, off])[0].cause == "dead_relu"


def test_of_independent_roots_strong_evidence_goes_before_moderate_evidence():
    """Gradients of None in three layers (a strong finding) and a third of a layer off
    since initialization (named only because the loss is stuck): both at the first record,
    neither explains the other, and the strong one leads."""
    partly_dead = _f(
        "dead_relu", first_step=0, at_init=True, dead_fraction={"d1": 0.38}, moderate=True
    )
    no_gradient = _f("zero_gradient", first_step=0)
    ranked = ranking.rank([partly_dead, no_gradient])
    assert [f.cause for f in ranked] == ["zero_gradient", "dead_relu"]
    assert all(f.explained_by is None for f in ranked)
    partly_dead.evidence["moderate"] = False  # a strong finding each: priority decides
    assert ranking.rank([no_gradient, partly_dead])[0].cause == "dead_relu"


def _relu_config(units=(32, 32), classes=3, batch=32, **labels):
    layers = [
        {"name": "d%d" % i, "class": "Dense", "units": u, "activation": "relu"}
        for i, u in enumerate(units)
    ]
    layers.append({"name": "out", "class": "Dense", "units": classes, "activation": "linear"})
    return {
        "layers": layers,
        "trainable_layers": [layer["name"] for layer in layers],
        "activation_layers": [
            {"layer": layer["name"], "activation": "relu"} for layer in layers[:-1]
        ],
        "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True},
        "batch_size": batch,
        "data": {"labels": [dict({"shape": [batch]}, **labels)]} if labels else {},
    }


def test_weights_initialized_too_wide_explode_the_signal_from_the_first_record():
    """Each layer's outputs 40x wider than the last's at step 0, the loss 300x chance: the
    initialization is the root, and the tiny update/weight ratios it brings stand under it."""
    n = 30
    config = _relu_config()
    act_std = np.tile([15.0, 600.0], (n, 1))
    grads = np.tile([30.0, 30.0, 1500.0], (n, 1))
    updates = np.full((n, 3), 5e-5)
    run = _run(
        _decaying(n=n, start=500.0, floor=40.0, rate=0.05),
        config=config,
        vectors={
            metadata.ACT_STD: _vector(act_std, ["d0", "d1"]),
            metadata.GRAD_NORM: _vector(grads, ["d0", "d1", "out"]),
            metadata.UPDATE_RATIO: _vector(updates, ["d0", "d1", "out"]),
        },
    )
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    top = findings[0]
    assert top.cause == "exploding_gradients" and top.first_step == 0
    assert "40 times wider" in top.explanation and "chance level" in top.explanation
    for finding in findings[1:]:
        assert finding.explained_by is not None


def test_a_learning_rate_jump_is_found_when_updates_are_recorded_a_step_later():
    """A custom loop may record the update one step after the rate; the jump still governs it."""
    n = 40
    rates = np.full(n, 1e-3)
    rates[20:] = 0.5
    updates = np.full((n, 2), 1e-3)
    updates[20] = 0.4
    run = _run(
        _decaying(n=n),
        config=_relu_config(units=(16,)),
        vectors={
            metadata.UPDATE_RATIO: VectorSeries(np.arange(n) * 10 + 1, updates, ["d0", "out"], {})
        },
    )
    run.scalars[metadata.LEARNING_RATE] = _series(rates)
    finding = next(f for f in diagnosis.diagnose(run) if f.cause == causes.LR_TOO_HIGH)
    assert finding.first_step == 200 and "500" in finding.explanation


def test_units_partly_off_at_initialization_that_die_after_a_rate_jump_died_of_the_jump():
    """A head layer 40% off at initialization (it reads non-negative pooled features) dies
    entirely after the learning rate jumps 500x: the jump is the root, the dead layer its
    consequence; the 40% at the first record does not make the death "from the start"."""
    n = 40
    counts = {"class_counts": [11, 10, 11], "distinct_classes": 3}
    loss = np.concatenate([_decaying(n=20, start=1.1, floor=0.5), np.full(20, math.log(3))])
    rates = np.full(n, 1e-3)
    rates[20:] = 0.5
    updates = np.full((n, 2), 1e-3)
    updates[20:] = 0.5
    dead = np.full((n, 2), [0.4, 0.0])
    dead[21:, 0] = 1.0
    run = _run(
        loss,
        config=_relu_config(units=(16,), **counts),
        vectors={
            metadata.UPDATE_RATIO: _vector(updates, ["d0", "out"]),
            metadata.ACT_DEAD_FRACTION: _vector(dead, ["d0", "out"], activations=["relu", None]),
        },
    )
    run.scalars[metadata.LEARNING_RATE] = _series(rates)
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert [f.cause for f in findings][:2] == ["lr_too_high", "dead_relu"]
    assert findings[1].explained_by == "lr_too_high" and findings[1].first_step == 210
    assert "died during training" in findings[1].explanation


def test_a_rate_jump_whose_first_step_throws_the_weights_to_inf_is_the_root_of_the_nan():
    """The schedule multiplies the rate 400x at step 200 and that very step turns the
    weights Inf (update ratio Inf), the loss NaN from the next record: the jump is the root
    of the NaN, and a PyTorch run's fixes keep the usual rate rather than a tenth of the
    jump."""
    n = 40
    loss = np.concatenate([_decaying(n=20, start=1.1, floor=0.5), np.full(20, np.nan)])
    rates = np.full(n, 0.04)
    rates[20:] = 16.0
    updates = np.full((n, 2), 1e-2)
    updates[20] = np.inf
    updates[21:] = np.nan
    config = dict(_relu_config(units=(16,)), framework="pytorch", optimizer={"name": "SGD"})
    run = _run(
        loss, config=config, vectors={metadata.UPDATE_RATIO: _vector(updates, ["d0", "out"])}
    )
    run.scalars[metadata.LEARNING_RATE] = _series(rates)
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert [f.cause for f in findings][:2] == ["lr_too_high", "nonfinite"], findings
    assert "Inf/NaN" in findings[0].explanation and findings[1].explained_by == "lr_too_high"
    assert any("lr=0.04" in fix for fix in findings[0].fixes), findings[0].fixes


def test_steps_that_shrank_after_healthy_first_steps_are_not_a_too_low_rate():
    """At chance level with tiny steps at the end: when the first steps were of healthy
    size at the same rate, the gradient shrank (nothing left to learn), not the rate; when
    they were tiny from the first record, the rate is too low."""
    counts = {"class_counts": [11, 10, 11], "distinct_classes": 3}
    n = 40
    loss = math.log(3) + 0.01 * np.random.default_rng(1).normal(size=n)
    rates = _series(np.full(n, 0.01))
    shrinking = np.full((n, 2), 1e-5)
    shrinking[:6] = 1e-3
    causes_found = []
    for updates in (shrinking, np.full((n, 2), 1e-5)):
        run = _run(
            loss,
            config=_relu_config(units=(16,), **counts),
            vectors={metadata.UPDATE_RATIO: _vector(updates, ["d0", "out"])},
        )
        run.scalars[metadata.LEARNING_RATE] = rates
        causes_found.append([f.cause for f in diagnosis.diagnose(run)])
    assert "lr_too_low" not in causes_found[0] and "no_signal" in causes_found[0]
    assert "lr_too_low" in causes_found[1]


def test_gradients_that_underflow_to_zero_at_the_bottom_of_a_vanishing_chain_vanished():
    """A deep ReLU stack initialized 100x too narrow: each layer's gradient is 1,000x the
    one before, and the two first get exactly 0 (below what float32 holds). That is a
    gradient vanishing, not layers cut off from the loss; the zeros stand under it."""
    labels = ["d%d" % i for i in range(8)]
    row = [0.0, 0.0] + [10.0 ** (-3 * (7 - i)) for i in range(2, 8)]
    config = _relu_config(units=(16,) * 7, classes=3)
    run = _run(
        _decaying(n=30, start=1.1, floor=1.09),
        config=config,
        vectors={metadata.GRAD_NORM: _vector([row] * 30, labels)},
    )
    run.vectors[metadata.GRAD_ZERO_COUNT] = _vector(
        [[16.0 * 17, 16.0 * 17] + [0.0] * 6] * 30, labels, sizes=[16 * 17] * 8
    )
    findings = diagnosis.diagnose(run)
    vanishing = next(f for f in findings if f.cause == "vanishing_gradients")
    assert vanishing.evidence["underflowed_from"] == "d0"
    assert findings[0].cause == "vanishing_gradients"
    for finding in findings:
        if finding.cause == "zero_gradient":
            assert finding.explained_by == "vanishing_gradients"


def test_a_rate_jump_is_the_root_of_gradients_that_grow_from_the_same_step():
    """Gradients grow 20,000x from step 145, where the schedule multiplied the rate by 500:
    the same step, and the rate, set from outside the network, is the root."""
    jump = _f("lr_too_high", first_step=145, spike_step=145)
    growth = _f("exploding_gradients", first_step=145, growth=2e4, at_init=False)
    ranked = ranking.rank([growth, jump])
    assert [f.cause for f in ranked] == ["lr_too_high", "exploding_gradients"]
    assert ranked[1].explained_by == "lr_too_high"


def test_a_steady_gap_to_a_harder_validation_split_does_not_hide_a_bottleneck():
    """A one-unit layer: training loss flat at 0.65 of a 1.1 chance level, validation flat
    at 0.80 all along (a steady 22% above): too small. The same gap opening up as the
    training loss keeps falling is a model fitting its samples, not a bottleneck."""
    config = {
        "layers": [
            {"name": "d0", "class": "Dense", "units": 64, "activation": "relu", "params": 576},
            {"name": "d1", "class": "Dense", "units": 1, "activation": None, "params": 65},
            {"name": "out", "class": "Dense", "units": 3, "activation": None, "params": 6},
        ],
        "loss": {"name": "mean_squared_error"},
        "batch_size": 32,
        "data": {"labels": [{"shape": [32, 3], "mean": 0.0, "std": 1.05}]},
    }
    epochs = np.arange(1, 13) * 30
    train = np.array(
        [0.82, 0.69, 0.67, 0.666, 0.662, 0.66, 0.657, 0.655, 0.654, 0.653, 0.651, 0.65]
    )
    run = _run(np.repeat(train, 3)[:36], config=config)
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train)
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train * 1.22)
    assert _top(run) == "insufficient_capacity"
    widening = train * np.linspace(1.05, 1.3, 12)
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, widening)
    assert "insufficient_capacity" not in [f.cause for f in diagnosis.diagnose(run)]


def test_weights_too_wide_behind_a_normalization_are_named_by_their_tiny_steps():
    """Dense layers before BatchNormalization start at weight RMS 10: the forward pass
    ignores their scale, but their steps are 100x smaller (relative) than the other layers':
    initialized too wide. The same RMS with steps like the others' is not named."""
    config = _relu_config(units=(64,), classes=3)
    config["layers"][0]["params"] = 12 * 64
    config["layers"].insert(
        1, {"name": "bn", "class": "BatchNormalization", "params": 256, "activation": None}
    )
    config["layers"][-1]["params"] = 64 * 3 + 3
    labels = ["d0", "bn", "out"]
    norms = _vector([[10.0 * np.sqrt(768), 8.0, 3.0]] * 20, labels)
    slow = _vector([[1e-5, 1e-3, 2e-3]] * 20, labels)
    grads = _vector([[0.1, 0.1, 0.1]] * 20, labels)
    vectors = {metadata.WEIGHT_NORM: norms, metadata.UPDATE_RATIO: slow, metadata.GRAD_NORM: grads}
    run = _run(_decaying(n=20, start=1.1, floor=0.9, rate=0.05), config=config, vectors=vectors)
    finding = next(f for f in diagnosis.diagnose(run) if f.cause == "exploding_gradients")
    assert finding.layers == ["d0"] and "initialized too wide" in finding.title
    # The tab draws what the finding read: the steps and the weights, not gradient norms.
    assert finding.evidence["series"] == [
        metadata.tag(metadata.UPDATE_RATIO),
        metadata.tag(metadata.WEIGHT_NORM),
    ]
    # ... and fixes what it found, the initializer: no gradient was large, so no clipping.
    assert finding.fixes == [causes.fixes("exploding_gradients")[1]]
    assert "he_normal" in finding.fixes[0]
    vectors[metadata.UPDATE_RATIO] = _vector([[1e-3, 1e-3, 2e-3]] * 20, labels)
    run = _run(_decaying(n=20, start=1.1, floor=0.9, rate=0.05), config=config, vectors=vectors)
    assert "exploding_gradients" not in [f.cause for f in diagnosis.diagnose(run)]


def test_a_partly_dead_layer_is_not_named_within_the_first_epoch():
    """Live, 20 steps into a 50-step first epoch: a head layer 60% off (it reads pooled
    non-negative features) may still come back and is not named yet; a layer 100% dead
    is named at once."""
    config = dict(_relu_config(units=(16,)), steps_per_epoch=50, epochs=10)
    findings = {}
    for fraction in (0.6, 1.0):
        dead = _vector([[fraction, 0.0]] * 5, ["d0", "out"], every=5, activations=["relu", None])
        run = _run(np.full(5, 1.1), config=config, vectors={metadata.ACT_DEAD_FRACTION: dead})
        run.scalars[metadata.BATCH_LOSS] = _series(np.full(5, 1.1), every=5)
        findings[fraction] = [f.cause for f in diagnosis.diagnose(run, live=True)]
    assert "dead_relu" not in findings[0.6] and "dead_relu" in findings[1.0]


def test_a_layer_narrower_than_the_classes_is_too_small_however_the_curve_goes():
    """One unit before a 4-class output can separate two classes at most: named while the
    loss still creeps down far above a good fit. A one-unit layer off the path (an attention
    score: the output still reads 32 inputs) is not."""
    config = _relu_config(units=(32, 1), classes=4)
    for layer, params in zip(config["layers"], [(8 + 1) * 32, (32 + 1) * 1, (1 + 1) * 4]):
        layer["params"] = params
    run = _run(_decaying(n=60, start=1.39, floor=0.9, rate=0.02), config=config)
    finding = next(f for f in diagnosis.diagnose(run) if f.cause == causes.INSUFFICIENT_CAPACITY)
    assert finding.layers == ["d1"] and "4 classes" in finding.title
    config["layers"][-1]["params"] = (32 + 1) * 4
    run = _run(_decaying(n=60, start=1.39, floor=0.9, rate=0.02), config=config)
    assert causes.INSUFFICIENT_CAPACITY not in [f.cause for f in diagnosis.diagnose(run)]


def test_a_narrow_layer_is_judged_on_the_epoch_means_not_on_a_few_lucky_batches():
    """The recorded batches of a one-unit model end at 0.2 (batches it happens to fit),
    while every epoch's mean stays near 0.45 of a 1.1 chance level: too small."""
    counts = {"class_counts": [11, 10, 11], "distinct_classes": 3}
    config = _relu_config(units=(16, 1), **counts)
    for layer, params in zip(config["layers"], [(8 + 1) * 16, (16 + 1) * 1, (1 + 1) * 3]):
        layer["params"] = params
    run = _run(_decaying(n=40, start=1.1, floor=0.2, rate=0.1), config=config)
    epochs = np.arange(1, 9) * 50
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, np.array([1.0, 0.8, 0.6, 0.52, 0.49, 0.47, 0.46, 0.45])
    )
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, np.array([0.95, 0.75, 0.6, 0.55, 0.52, 0.5, 0.5, 0.49])
    )
    finding = next(f for f in diagnosis.diagnose(run) if f.cause == causes.INSUFFICIENT_CAPACITY)
    assert finding.layers == ["d1"] and "0.45" in finding.explanation


def test_a_short_run_still_falling_at_its_pace_is_not_converged_not_stuck():
    """Three epochs, each lower than the last at an unchanged pace: stopped too early."""
    run = _run(_decaying(n=15, start=1.1, floor=0.2, rate=0.02), config=_relu_config())
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        np.array([50, 100, 150]), np.array([1.06, 0.97, 0.9])
    )
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert findings[0].cause == "not_converged"


def test_a_short_run_slowing_down_but_still_falling_steeply_is_not_converged():
    """Four epochs slowing down as every curve does after its first ones, but the last still
    took 11% off the training loss and 8% off the validation loss: far from levelled off.
    The same run whose validation loss moved 1% in the last epoch has levelled."""
    run = _run(_decaying(n=20, start=1.1, floor=0.38, rate=0.15), config=_relu_config())
    epochs = np.array([50, 100, 150, 200])
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, np.array([1.0, 0.6, 0.45, 0.4]))
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, np.array([0.8, 0.55, 0.47, 0.43])
    )
    assert _top(run) == "not_converged"
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, np.array([0.8, 0.55, 0.44, 0.435])
    )
    assert "not_converged" not in [f.cause for f in diagnosis.diagnose(run)]


def test_a_short_run_leaving_its_plateau_at_chance_is_not_converged_not_labels():
    """Three epochs at chance level, each lower by more than the last (train and
    validation): the run was stopped as it left its first plateau."""
    counts = {"class_counts": [11, 10, 11], "distinct_classes": 3}
    chance = math.log(3)
    batches = chance - np.array([0.0, 0.001, 0.002, 0.004, 0.006, 0.009, 0.012, 0.016, 0.02])
    run = _run(batches, config=_relu_config(**counts))
    epochs = np.array([40, 80, 120])
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, chance - np.array([0.0, 0.006, 0.015])
    )
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, chance - np.array([0.004, 0.01, 0.025])
    )
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert [f.cause for f in findings][:1] == ["not_converged"]
    assert "leaving its first plateau" in findings[0].explanation
    # The same three epochs slowing down: still on its way while the validation loss
    # follows it down at every epoch ...
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, chance - np.array([0.0, 0.009, 0.012])
    )
    assert _top(run) == "not_converged"
    # ... but stuck at chance once the validation loss no longer does.
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, chance - np.array([0.004, 0.01, 0.008])
    )
    assert "not_converged" not in [f.cause for f in diagnosis.diagnose(run)]


def test_a_loss_still_falling_steeply_onto_chance_level_is_not_converged_not_stuck():
    """A run that starts far above chance level (large initial logits) and stops while
    both losses still fall steeply onto it has not got anywhere yet: not converged, with
    no claim that the labels carry nothing. The same run with a validation loss that sits
    at chance level is stuck there."""
    counts = {"class_counts": [11, 10, 11], "distinct_classes": 3}
    chance = math.log(3)
    run = _run(_decaying(n=16, start=3.2, floor=1.0, rate=0.12), config=_relu_config(**counts))
    epochs = np.array([50, 100, 150])
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, np.array([2.6, 1.6, 1.25]))
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, np.array([1.9, 1.4, 1.2])
    )
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert [f.cause for f in findings][:1] == ["not_converged"]
    assert "no better than chance level" in findings[0].explanation
    assert "no_signal" not in [f.cause for f in findings]
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs, np.array([chance + 0.01, chance, chance + 0.005])
    )
    assert "not_converged" not in [f.cause for f in diagnosis.diagnose(run)]
    # Live, two epochs into a longer run: still at chance, but the validation loss fell
    # 6% in the second epoch; labels without signal would not do that.
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs[:2], np.array([1.101, 1.068]))
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs[:2], np.array([1.094, 1.024])
    )
    run.config["epochs"] = 10
    run.scalars[metadata.BATCH_LOSS] = _series(np.linspace(1.1, 1.07, 10), every=10)
    assert "no_signal" not in [f.cause for f in diagnosis.diagnose(run, live=True)]
    # The same two epochs with a validation loss that stays put: at chance, named.
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        epochs[:2], np.array([1.094, 1.09])
    )
    assert "no_signal" in [f.cause for f in diagnosis.diagnose(run, live=True)]


def test_a_layer_spreading_wide_at_the_first_record_with_the_loss_far_above_chance():
    """A GELU layer after a normalization (the layer before it is not recorded) spreads
    with std 15 at the first record and the loss starts 15x chance level: weights
    initialized too wide. The same spread with the loss starting at chance is not."""
    counts = {"class_counts": [11, 10, 11], "distinct_classes": 3}
    config = _relu_config(units=(32,), **counts)
    std = _vector([[15.0, np.nan]] * 20, ["d0", "out"], activations=["gelu", "softmax"])
    loss = np.concatenate([[16.5, 4.0, 2.0], _decaying(n=17, start=1.0, floor=0.4)])
    grads = _vector([[3.0, 2.0]] * 20, ["d0", "out"])
    run = _run(loss, config=config, vectors={metadata.ACT_STD: std, metadata.GRAD_NORM: grads})
    finding = next(f for f in diagnosis.diagnose(run) if f.cause == "exploding_gradients")
    assert finding.layers == ["d0"] and finding.first_step == 0
    assert "std 15" in finding.explanation and "15 times the chance level" in finding.explanation
    run = _run(
        _decaying(n=20, start=1.1, floor=0.4),
        config=config,
        vectors={metadata.ACT_STD: std, metadata.GRAD_NORM: grads},
    )
    assert "exploding_gradients" not in [f.cause for f in diagnosis.diagnose(run)]


def test_a_regression_chance_level_from_one_batch_is_read_with_its_uncertainty():
    """Shuffled targets: the loss stays at the targets' variance (1.0), but the one recorded
    batch of 32 labels had a variance of 1.3. Within the uncertainty of 32 labels the loss
    is at chance level; the same figures summarizing 10,000 labels are not."""
    config = {
        "layers": [
            {"name": "d0", "class": "Dense", "units": 32, "activation": "relu"},
            {"name": "out", "class": "Dense", "units": 1, "activation": "linear"},
        ],
        "loss": {"name": "mean_squared_error"},
        "batch_size": 32,
        "data": {"labels": [{"shape": [32], "mean": 0.1, "std": 1.14}]},
    }
    loss = 1.0 + 0.02 * np.random.default_rng(0).normal(size=40) - np.linspace(0, 0.03, 40)
    epochs = np.arange(1, 9) * 50
    run = _run(loss, config=config)
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, np.linspace(1.0, 0.97, 8))
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, np.full(8, 1.06))
    assert _top(run) == "no_signal"
    config["data"]["labels"][0]["shape"] = [10000]
    assert "no_signal" not in [f.cause for f in diagnosis.diagnose(_run(loss, config=config))]


def test_a_small_set_whose_validation_loss_stopped_following_is_memorized():
    """96 samples of 4 classes: the training loss falls 40% over the last three epochs to
    0.03 while the validation loss, 10x higher, moves 2%: memorization, though the gap is
    under a quarter of the chance level and validation never rose."""
    counts = {"class_counts": [8, 8, 8, 8], "distinct_classes": 4}
    run = _run(
        _decaying(n=60, start=1.39, floor=0.02, rate=0.08), config=_relu_config(classes=4, **counts)
    )
    epochs = np.arange(1, 21) * 3
    train = 1.39 * np.exp(-0.17 * np.arange(20))
    val = 0.31 + 1.08 * np.exp(-0.3 * np.arange(20))
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train)
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, val)
    finding = next(f for f in diagnosis.diagnose(run) if f.cause == "overfitting")
    assert "no longer following it down" in finding.explanation


def test_gradients_that_vanished_over_the_first_third_are_named_with_their_steps():
    """Vanishing for the first third of the run, then the gap closes: the finding held."""
    run = _run(np.r_[np.full(10, 1.1), np.linspace(1.1, 0.7, 20)])
    rows = [[1e-6, 1e-4, 0.5]] * 10 + [[0.05, 0.05, 0.1]] * 20
    run.vectors[metadata.GRAD_NORM] = _vector(rows, ["dense", "dense_1", "dense_2"])
    (finding,) = [f for f in diagnosis.diagnose(run) if f.cause == "vanishing_gradients"]
    assert finding.first_step == 0 and finding.evidence["until_step"] == 90
    assert "until step 90" in finding.title and "500,000 times" in finding.explanation
    # Vanishing only after the first third is for the whole-run medians to judge.
    run.vectors[metadata.GRAD_NORM] = _vector(
        rows[10:] + rows[:10], ["dense", "dense_1", "dense_2"]
    )
    assert "vanishing_gradients" not in [f.cause for f in diagnosis.diagnose(run)]


def test_a_small_training_set_memorized_is_overfitting_not_labels_without_signal():
    """Two steps of 32 per epoch for 3 classes: the training loss falls to 0.05 while the
    validation loss stays above chance. Too little data, not labels without information."""
    epochs = 30
    run = _run(
        _decaying(n=60, start=1.1, floor=0.05, rate=0.1),
        config=_relu_config(class_counts=[11, 11, 10]),
    )
    steps = np.arange(1, epochs + 1) * 2
    run.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(steps, np.linspace(1.0, 0.05, epochs))
    run.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(
        steps, np.linspace(1.3, 1.5, epochs)
    )
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert findings[0].cause == "overfitting"
    assert "at most 64 samples" in findings[0].explanation
    assert causes.NO_SIGNAL not in [f.cause for f in findings]


def test_two_alike_labels_do_not_make_the_labels_constant():
    """The recorded label sample of a batch of 2 was both class 0: that says nothing."""
    config = _relu_config(
        batch=2, min=0.0, max=0.0, std=0.0, distinct_classes=1, class_counts=[2.0, 0.0, 0.0]
    )
    run = _run(_decaying(n=40), config=config)
    assert causes.NO_SIGNAL not in [f.cause for f in diagnosis.diagnose(run)]
    config["data"]["labels"][0]["shape"] = [64]
    run = _run(_decaying(n=40), config=config)
    assert causes.NO_SIGNAL in [f.cause for f in diagnosis.diagnose(run)]


def test_the_diagnosis_imports_with_neither_tensorflow_nor_tensorboard():
    """The engine is pure Python and numpy: it imports with both blocked from import."""
    import subprocess
    import sys

    code = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def block(name, *args, **kwargs):\n"
        "    if name.split('.')[0] in ('tensorflow', 'tensorboard'):\n"
        "        raise ImportError('blocked: ' + name)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = block\n"
        "import tb_plateau.diagnosis\n"
        "print(len(tb_plateau.diagnosis.CAUSE_IDS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(causes.CAUSE_IDS))


def test_sigmoid_tanh_weights_wider_than_glorot_allows_saturate_from_the_start():
    """An LSTM cell whose weights' RMS is 2.9 at the first record (Glorot gives any layer at
    most 1) sums its inputs into the flat ends of tanh: named though its gates are not
    recorded. The same norm reached by a huge first step is the step size's evidence."""
    params = 1216
    config = {
        "layers": [
            {
                "name": "lstm_cell",
                "path": "lstm/lstm_cell",
                "class": "LSTMCell",
                "activation": "tanh",
                "params": params,
            },
            {"name": "out", "class": "Dense", "units": 3, "activation": None, "params": 51},
        ],
        "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True},
    }
    n = 30
    norms = np.tile([2.9 * math.sqrt(params), 0.2 * math.sqrt(51)], (n, 1))
    for first_step_moved, named in ((1e-3, True), (0.9, False)):
        updates = np.full((n, 2), 1e-3)
        updates[0] = first_step_moved
        run = _run(
            _decaying(n=n, start=1.1, floor=0.95, rate=0.05),
            config=config,
            vectors={
                metadata.WEIGHT_NORM: _vector(norms, ["lstm/lstm_cell", "out"]),
                metadata.UPDATE_RATIO: _vector(updates, ["lstm/lstm_cell", "out"]),
            },
        )
        causes_found = [f.cause for f in diagnosis.diagnose(run)]
        assert (causes.SATURATED_ACTIVATIONS in causes_found) is named, causes_found


def test_a_bottleneck_is_named_where_the_targets_spread_beyond_its_width():
    """An autoencoder of 24 features through a 1-unit code settles at 21% of the inputs'
    variance, level and flat. The recorded batch of targets keeps 19% of its variance beyond
    its first principal direction: the loss holds what one unit cannot pass on, so the
    bottleneck is what stopped the fit, even though 21% of chance alone looks like a fair
    one. Targets whose first direction holds 97% of their variance leave nothing to blame
    on the code, and the same run is healthy."""
    config = {
        "layers": [
            {"name": "enc", "class": "Dense", "units": 48, "activation": "elu", "params": 1200},
            {"name": "code", "class": "Dense", "units": 1, "activation": None, "params": 49},
            {"name": "dec", "class": "Dense", "units": 48, "activation": "elu", "params": 96},
            {"name": "out", "class": "Dense", "units": 24, "activation": None, "params": 1176},
        ],
        "loss": {"name": "mean_squared_error"},
        "batch_size": 32,
        "data": {
            "labels": [
                {
                    "shape": [32, 24],
                    "mean": 0.0,
                    "std": 1.0,
                    "input_match_fraction": 1.0,
                    "principal_shares": [0.81, 0.13, 0.04, 0.01, 0.004, 0.003, 0.002, 0.001],
                }
            ]
        },
    }
    train = np.array([0.45, 0.26, 0.23, 0.222, 0.218, 0.215, 0.213, 0.212, 0.211, 0.21])
    epochs = np.arange(1, 11) * 30
    loss = np.repeat(train, 3) * (1 + 0.02 * np.random.default_rng(1).normal(size=30))

    def run():
        built = _run(loss, config=config)
        built.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train)
        built.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train * 1.02)
        return built

    findings = diagnosis.diagnose(run())
    assert findings[0].cause == "insufficient_capacity"
    assert findings[0].severity == causes.WARNING
    assert findings[0].layers == ["code"]
    assert findings[0].first_step == 60  # where the plateau begins, not its lowest point
    assert "19% of their variance beyond their first principal direction" in (
        findings[0].explanation
    )
    config["data"]["labels"][0]["principal_shares"] = [0.97, 0.02] + [0.002] * 6
    assert _top(run()) is None


def test_a_regression_chance_level_is_as_uncertain_as_its_samples_and_spectrum_make_it():
    """Dropout of 0.9 in an autoencoder of 20 features: the training loss (dropout on) ends
    at 0.86, the validation loss at 0.79. One recorded batch of 32 samples put the targets'
    variance at 1.08; its 640 entries vary together within each sample (five directions hold
    nearly all of it), so the estimate is uncertain by 13% (25% for 32 samples, times the
    spectrum's concentration), not the 6% that 640 independent entries would give: the loss
    is at chance level within it, stuck, and the dropout is named. With 20 independent
    entries alike the estimate is good to 6%, and the loss is not at chance level."""
    config = {
        "layers": [
            {"name": "enc", "class": "Dense", "units": 48, "activation": "relu", "params": 1008},
            {"name": "drop_1", "class": "Dropout", "rate": 0.9},
            {"name": "code", "class": "Dense", "units": 6, "activation": None, "params": 294},
            {"name": "dec", "class": "Dense", "units": 48, "activation": "relu", "params": 336},
            {"name": "drop_2", "class": "Dropout", "rate": 0.9},
            {"name": "out", "class": "Dense", "units": 20, "activation": None, "params": 980},
        ],
        "loss": {"name": "mean_squared_error"},
        "batch_size": 32,
        "data": {
            "labels": [
                {
                    "shape": [32, 20],
                    "mean": 0.05,
                    "std": 1.039,
                    "input_match_fraction": 1.0,
                    "principal_shares": [0.337, 0.294, 0.171, 0.115, 0.047, 0.01, 0.008, 0.005],
                }
            ]
        },
    }
    train = np.array(
        [1.15, 1.011, 0.998, 0.983, 0.955, 0.931, 0.9, 0.893, 0.865, 0.865, 0.871, 0.855]
    )
    val = np.array(
        [1.012, 1.011, 1.005, 0.983, 0.928, 0.849, 0.813, 0.82, 0.786, 0.792, 0.809, 0.79]
    )
    epochs = np.arange(1, 13) * 30
    # Batch losses recorded densely at first, then every 5 steps, as a training records them.
    steps = np.array([0, 1, 2, 3, 5, 9] + list(range(10, 360, 5)))
    rng = np.random.default_rng(2)
    batch = np.interp(steps, np.r_[0, epochs - 15], np.r_[1.6, train])
    batch = batch * (1 + 0.06 * rng.normal(size=len(steps)))

    def run():
        built = _run(config=config)
        built.scalars[metadata.BATCH_LOSS] = Series(steps, batch)
        built.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train)
        built.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, val)
        return built

    top = diagnosis.diagnose(run())[0]
    assert top.cause == "over_regularization" and top.severity != causes.INFO
    assert "the label variance over 32 recorded samples: uncertain by about 13%" in (
        " ".join(f.explanation for f in diagnosis.diagnose(run()))
    )
    config["data"]["labels"][0]["principal_shares"] = [0.05] * 8
    assert "over_regularization" not in [
        f.cause for f in diagnosis.diagnose(run()) if f.severity != causes.INFO
    ]


def test_a_validation_loss_rising_beside_a_flat_training_loss_is_not_overfitting():
    """Eight epochs seen live: the validation loss rose 11% over the three evaluations after
    its best while the training loss's epoch means stayed at 0.18 (the batch records, noisy,
    happen to end lower). That is the validation's noise, not the model fitting its training
    samples better. The same validation curve beside a training loss still falling is."""
    val = np.array([0.935, 0.468, 0.238, 0.215, 0.207, 0.208, 0.219, 0.229])
    epochs = np.arange(1, 9) * 23

    def run(train):
        built = _run(np.interp(np.arange(0, 184, 4), epochs - 11, train))
        built.scalars[metadata.BATCH_LOSS].values[-3:] *= 0.9
        built.scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, train)
        built.validation_scalars[metadata.EPOCH_PREFIX + "loss"] = Series(epochs, val)
        return built

    flat = np.array([1.018, 0.677, 0.298, 0.191, 0.18, 0.185, 0.176, 0.18])
    assert "overfitting" not in [f.cause for f in diagnosis.diagnose(run(flat), live=True)]
    falling = np.array([1.018, 0.677, 0.298, 0.191, 0.18, 0.16, 0.14, 0.12])
    assert _top(run(falling)) == "overfitting"


def test_an_autoencoders_unscaled_data_is_the_root_of_targets_out_of_its_outputs_reach():
    """Pixels read as 300..301 into an autoencoder with a sigmoid output: the targets are the
    inputs, so they lie beyond the output's [0, 1] too. The data's scale is the root, and
    its fix scales the data itself; a classifier-style mismatch (softmax over one unit) in
    a model whose targets are not its inputs stays its own root."""
    pixels = {"name": "x", "mean": [300.4] * 4, "std": [0.2] * 4}
    pixels.update(min=[300.0] * 4, max=[301.0] * 4)

    def run(targets_are_inputs):
        labels = {"shape": [32, 4], "mean": 300.4, "std": 0.2, "min": 300.0, "max": 301.0}
        labels["input_match_fraction"] = 1.0 if targets_are_inputs else 0.0
        built = _run(np.full(30, 9e4) + np.linspace(0, -1, 30))
        built.config = {
            "layers": [
                {"name": "enc", "class": "Dense", "activation": "relu", "units": 8},
                {"name": "out", "class": "Dense", "activation": "sigmoid", "units": 4},
            ],
            "loss": {"name": "mean_squared_error"},
            "data": {"inputs": [pixels], "labels": [labels]},
        }
        return built

    findings = diagnosis.diagnose(run(targets_are_inputs=True))
    assert [f.cause for f in findings[:2]] == ["unnormalized_inputs", "loss_output_mismatch"]
    assert len(findings[0].fixes) == 1 and "x.min()" in findings[0].fixes[0]
    assert findings[1].explained_by == "unnormalized_inputs"
    findings = diagnosis.diagnose(run(targets_are_inputs=False))
    assert findings[0].cause == "loss_output_mismatch"


def test_gradients_large_just_before_a_saturated_layer_come_back_through_its_weights():
    """Token embeddings into a GRU initialized far too wide: the GRU's tanh units sit at their
    limits from the first record, and the embedding below gets a gradient 10^5 times the
    output layer's, because it passes back through the GRU's wide input kernel. One fault,
    the initialization, seen as saturation."""
    layers = ["embedding", "gru", "out"]
    config = {
        "layers": [
            {"name": "embedding", "class": "Embedding", "params": 960},
            {"name": "gru", "class": "GRU", "activation": "tanh", "params": 3024, "units": 24},
            {"name": "out", "class": "Dense", "activation": None, "params": 125, "units": 5},
        ],
        "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True},
        "batch_size": 32,
        "data": {"labels": [{"shape": [32], "class_counts": [7, 6, 7, 6, 6]}]},
    }
    vectors = {
        metadata.GRAD_NORM: _vector([[4e5, 30.0, 0.7]] * 20, layers),
        metadata.ACT_SATURATED_FRACTION: _vector([[0.6]] * 20, ["gru"], activations=["tanh"]),
    }
    loss = 1.6 + 0.02 * np.random.default_rng(3).normal(size=20)
    run = _run(loss, config=config, vectors=vectors)
    findings = [f for f in diagnosis.diagnose(run) if f.severity != causes.INFO]
    assert findings[0].cause == "saturated_activations", [f.cause for f in findings]
    exploding = next(f for f in findings if f.cause == "exploding_gradients")
    assert exploding.explained_by == "saturated_activations"


def test_a_gradient_fading_under_the_vanishing_bar_does_not_explain_steps_too_small_everywhere():
    """A rate of 5e-6 in a six-layer convolutional autoencoder: every layer's step is 40x
    smaller than healthy (the median layer's), while the first layer's gradient is 130x
    smaller than the last's, under the vanishing bar (named only because the loss is stuck).
    The later layers' healthy gradients take tiny steps too: the rate is the root. A fading
    that meets the bar, through most of the network, does explain the tiny median step."""
    fading = _f("vanishing_gradients", first_step=0, at_init=True, ratio=0.008, moderate=True)
    tiny_steps = _f("lr_too_low", update_ratio=2.6e-5, learning_rate=5e-6)
    ranked = ranking.rank([fading, tiny_steps])
    assert ranked[0].cause == "lr_too_low" and ranked[0].explained_by is None
    fading.evidence.update(ratio=1e-5, moderate=False)
    tiny_steps.explained_by, tiny_steps.fixes = None, ["keep"]
    ranked = ranking.rank([tiny_steps, fading])
    assert ranked[0].cause == "vanishing_gradients"
    assert ranked[1].explained_by == "vanishing_gradients"
