"""Property-based tests of the diagnosis on arbitrary series (hypothesis).

Whatever a run holds (any length, NaN/±Inf anywhere, repeated and unordered
steps, zero layers, values near the float64 limits), `run_report` returns the
design's run object and the report is strict JSON after `json_ready`.
"""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_plateau import diagnosis, metadata
from tb_plateau.diagnosis import causes
from tb_plateau.rundata import RunData, VectorSeries, series_from_points

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, 1e-300)
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "linear", "swish")
RUN_KEYS = {"schema_version", "status", "run", "verdict", "findings"}
OPTIONAL_RUN_KEYS = {"notes", "problems", "incomplete", "loss_series", "drawing"}
FINDING_KEYS = {
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


@st.composite
def steps(draw, n):
    """Steps as a reader might find them: ascending, restarted, repeated or shuffled."""
    kind = draw(st.sampled_from(["ascending", "restarted", "repeated", "shuffled", "huge"]))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    every = draw(st.integers(1, 1000))
    base = np.arange(n, dtype=np.int64) * every
    if kind == "restarted" and n > 2:
        cut = n // 2
        base = np.concatenate([base[:cut], base[: n - cut]])
    elif kind == "repeated":
        base = rng.integers(0, max(n // 3, 1), n)
    elif kind == "shuffled":
        base = rng.permutation(base)
    elif kind == "huge":
        base = base + 2**40
    return base


@st.composite
def values(draw, shape):
    """float64 values of a shape: a plausible curve at any scale, with specials injected."""
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["decay", "constant", "noise", "ramp", "zeros"]))
    scale = 10.0 ** draw(st.integers(-300, 300))
    n = shape[0]
    t = np.arange(n, dtype=np.float64).reshape((n,) + (1,) * (len(shape) - 1))
    if kind == "decay":
        out = np.exp(-t / max(n / 4, 1)) + 0.1 * rng.random(shape)
    elif kind == "constant":
        out = np.ones(shape)
    elif kind == "noise":
        out = rng.normal(size=shape)
    elif kind == "ramp":
        out = t + np.zeros(shape)
    else:
        out = np.zeros(shape)
    out = np.broadcast_to(out * scale, shape).astype(np.float64).copy()
    specials = draw(st.integers(0, 3))
    if out.size and specials:
        flat = out.reshape(-1)
        for _ in range(specials):
            where = draw(st.sampled_from(["one", "tail", "all"]))
            special = draw(st.sampled_from(SPECIALS))
            if where == "one":
                flat[rng.integers(0, flat.size)] = special
            elif where == "tail":
                flat[rng.integers(0, flat.size) :] = special
            else:
                flat[:] = special
    return out


@st.composite
def scalar_series(draw, max_len=80):
    n = draw(st.integers(0, max_len))
    return series_from_points(draw(steps(n)), draw(values((n,))))


@st.composite
def vector_series(draw, name, layer_labels, activation_names):
    n = draw(st.integers(0, 60))
    if name == metadata.NONFINITE:
        labels = list(metadata.NUMERICS_SOURCES)
    elif name == metadata.OUTPUT_STATS:
        labels = ["min", "max", "mean", "row_sum_min", "row_sum_max", "row_sum_mean"]
    else:
        labels = list(layer_labels)
    header = {"version": 1, "labels": labels}
    if name.startswith("act_"):
        header["activations"] = list(activation_names)
    if name == metadata.GRAD_ZERO_COUNT:
        header["sizes"] = draw(
            st.lists(st.integers(0, 10**9), min_size=len(labels), max_size=len(labels))
        )
    rows = draw(values((n, len(labels))))
    step_list = draw(steps(n))
    # As the reader builds it: ordered, of repeated steps the last written.
    order = series_from_points(step_list, np.arange(n, dtype=np.float64))
    kept = order.values.astype(np.int64)
    return VectorSeries(order.steps, rows[kept].reshape(len(kept), len(labels)), labels, header)


@st.composite
def configs(draw, layer_labels, activation_names):
    if draw(st.booleans()):
        return None
    lr = draw(st.sampled_from([1e-3, 0.0, -1.0, 1e300, float("nan"), float("inf"), None, "x"]))
    return {
        "recorder": "PlateauCallback",
        "every_n_steps": draw(st.sampled_from([1, 10, 0, None])),
        "model": {
            "params": draw(st.integers(0, 10**12)),
            "output_names": ["output_0"],
            "output_units": [draw(st.sampled_from([1, 10, None, 0]))],
        },
        "layers": [
            {"name": label, "path": label, "class": "Dense", "activation": act, "units": 4}
            for label, act in zip(layer_labels, activation_names)
        ],
        "trainable_layers": list(layer_labels),
        "activation_layers": [
            {"layer": label, "activation": act}
            for label, act in zip(layer_labels, activation_names)
        ],
        "loss": draw(
            st.sampled_from(
                [
                    None,
                    {"name": "mse", "from_logits": False, "custom": False},
                    {"name": "binary_crossentropy", "from_logits": None, "custom": False},
                    {"name": "categorical_crossentropy", "from_logits": True, "custom": False},
                    {"per_output": [{"name": "mse"}]},
                ]
            )
        ),
        "optimizer": {"name": "SGD", "config": {"learning_rate": lr}},
        "batch_size": draw(st.sampled_from([32, 1, 0, None])),
        "steps_per_epoch": draw(st.sampled_from([100, 0, None])),
        "data": draw(
            st.sampled_from(
                [
                    None,
                    {},
                    {"inputs": [], "labels": []},
                    {
                        "inputs": [{"abs_max": float("inf"), "scale_spread": float("nan")}],
                        "labels": [{"min": 0.0, "max": 1.0, "distinct_classes": 1}],
                    },
                ]
            )
        ),
    }


@st.composite
def run_data(draw):
    layers = draw(st.integers(0, 6))
    layer_labels = ["layer_%d" % i for i in range(layers)]
    activation_names = [draw(st.sampled_from(ACTIVATIONS)) for _ in range(layers)]
    run = RunData(name=draw(st.sampled_from(["exp", "a/train", "<b>x</b>", "."])))
    for name in (
        metadata.BATCH_LOSS,
        metadata.LEARNING_RATE,
        "epoch/loss",
        "epoch/val_loss",
        "epoch/accuracy",
    ):
        if draw(st.booleans()):
            run.scalars[name] = draw(scalar_series())
    chosen = draw(st.sets(st.sampled_from(metadata.VECTOR_NAMES)))
    for name in sorted(chosen):
        run.vectors[name] = draw(vector_series(name, layer_labels, activation_names))
    run.config = draw(configs(layer_labels, activation_names))
    for tag in draw(st.sets(st.sampled_from(["epoch_loss", "Loss/train", "val_loss", "acc"]))):
        run.other_scalars[tag] = draw(scalar_series())
    if draw(st.booleans()):
        run.validation_scalars["epoch_loss"] = draw(scalar_series())
    if draw(st.booleans()):
        run.problems.append("plateau/grad_norm: written by a newer tb_plateau")
        run.incomplete = draw(st.booleans())
    return run


def _check_schema(report, run):
    assert RUN_KEYS <= set(report) <= RUN_KEYS | OPTIONAL_RUN_KEYS
    assert report["run"] == run.name
    assert report["verdict"] in ("healthy", "warning", "critical")
    assert report.get("incomplete", False) is bool(run.incomplete)
    for note in report.get("notes", []) + report.get("problems", []):
        assert isinstance(note, str) and note
    assert report["status"] == (
        "incomplete" if run.incomplete and report["verdict"] == "healthy" else report["verdict"]
    )
    # The tab is told what to draw for every cause found, and for nothing else.
    assert set(report.get("drawing", {})) == {f["cause"] for f in report["findings"]}
    # The loss curves it read are named, each a scalar of this run (or its sibling).
    series = report.get("loss_series")
    if series is not None:
        train = series["train"]
        assert train["run"] == run.name
        assert train["tag"] in run.other_scalars or metadata.short_name(train["tag"]) in run.scalars
    worst = "healthy"
    for finding in report["findings"]:
        assert set(finding) == FINDING_KEYS
        assert finding["cause"] in causes.CAUSE_IDS
        assert finding["severity"] in ("critical", "warning", "info")
        assert isinstance(finding["confidence"], float)
        assert 0.0 <= finding["confidence"] <= 1.0
        assert isinstance(finding["title"], str) and finding["title"]
        assert isinstance(finding["explanation"], str) and finding["explanation"]
        assert finding["first_step"] is None or isinstance(finding["first_step"], int)
        assert all(isinstance(layer, str) for layer in finding["layers"])
        assert all(isinstance(fix, str) for fix in finding["fixes"])
        assert isinstance(finding["evidence"], dict)
        if finding["severity"] == "critical" or (
            finding["severity"] == "warning" and worst == "healthy"
        ):
            worst = finding["severity"]
    assert report["verdict"] == worst
    causes_seen = [f["cause"] for f in report["findings"]]
    assert len(causes_seen) == len(set(causes_seen))


def _reject(constant):
    raise AssertionError("bare %s in the JSON" % constant)


@SETTINGS
@given(run_data())
def test_run_report_never_raises_and_matches_the_schema(run):
    report = diagnosis.run_report(run)
    _check_schema(report, run)
    # No detector may fail on any input: a failing one becomes a note.
    assert not any(note.startswith("check ") for note in report.get("notes", []))
    text = json.dumps(diagnosis.json_ready(report), allow_nan=False)
    json.loads(text, parse_constant=_reject)


@SETTINGS
@given(st.integers(0, 5000), st.sampled_from(SPECIALS))
def test_a_lone_loss_series_of_any_length_and_value(n, special):
    loss = np.full(n, special)
    run = RunData(name="r", scalars={metadata.BATCH_LOSS: series_from_points(np.arange(n), loss)})
    report = diagnosis.run_report(run)
    _check_schema(report, run)
    json.dumps(diagnosis.json_ready(report), allow_nan=False)


def test_json_ready_maps_non_finite_numbers_as_the_tab_does():
    out = diagnosis.json_ready({"a": [float("nan"), float("inf"), -float("inf"), 1.5, 2]})
    assert out == {"a": ["NaN", "Infinity", "-Infinity", 1.5, 2]}
