"""The Plateau tab's backend, through TensorBoard's own WSGI app.

A real data provider (TensorBoard's Python loader) reads a logdir written by
tiny real trainings (`plugin_logdirs`); requests go through werkzeug's test
client, so routing, error handling and `--path_prefix` are TensorBoard's.
"""

import argparse
import json
import os
import shutil

import numpy as np
import pytest

from tb_plateau import cli, diagnosis, metadata, plugin, rundata
from tb_plateau.loader import PlateauLoader
from tb_plateau.plugin import bodies
from tb_plateau.plugin import cache as run_cache
from tests import plugin_logdirs

PREFIX = "/data/plugin/plateau"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return plugin_logdirs.write_logdir(str(tmp_path_factory.mktemp("logdir")))


Server = plugin_logdirs.WsgiServer


@pytest.fixture(scope="module")
def server(logdir):
    return Server(logdir)


def _runs(server):
    return server.runs()


# -- listing and activation ---------------------------------------------------


def test_tab_is_listed_as_an_iframe_es_module(server):
    listing = server.json("/data/plugins_listing")
    entry = listing[metadata.PLUGIN_NAME]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Plateau"
    assert entry["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": PREFIX + "/index.js",
    }


def test_is_active_does_no_io():
    class Exploding:
        def __getattr__(self, name):
            raise AssertionError("is_active touched the data provider: %s" % name)

    context = argparse.Namespace(data_provider=Exploding())
    tab = plugin.PlateauPlugin(context)
    tab.is_active()  # must not touch the data provider (it would raise)
    # TensorBoard enables the tab from its cheap plugin listing instead (see
    # test_tab_enabled_by_a_loss_scalar_alone for the listing itself).
    assert set(tab.data_plugin_names()) == {"plateau", "scalars"}


def test_tab_enabled_by_a_loss_scalar_alone(tmp_path, logdir):
    shutil.copytree(os.path.join(logdir, plugin_logdirs.XSS_RUN), tmp_path / "only" / "run")
    listing = Server(str(tmp_path / "only")).json("/data/plugins_listing")
    assert listing["plateau"]["enabled"] is True


def test_tab_disabled_without_scalars_or_plateau_data(tmp_path, logdir):
    shutil.copytree(
        os.path.join(logdir, plugin_logdirs.IMAGES_ONLY_RUN), tmp_path / "images" / "run"
    )
    listing = Server(str(tmp_path / "images")).json("/data/plugins_listing")
    assert listing["plateau"]["enabled"] is False


def test_whole_series_without_raising_tensorboards_sampling(server, logdir):
    """A local logdir's runs are read from their files: TensorBoard keeps its 10 records a tag.

    Where the tab must read through the data provider (a remote logdir, a
    --logdir_spec), the loader asks TensorBoard to keep every record.
    """
    assert "plateau" not in server.flags.samples_per_plugin
    body = server.json(PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag="plateau/batch_loss")
    assert body["total_points"] > 10
    remote = Server(logdir, local=False)
    assert remote.flags.samples_per_plugin["plateau"] >= 10_000
    assert remote.json(PREFIX + "/diagnosis", run=plugin_logdirs.BROKEN_RUN) == server.json(
        PREFIX + "/diagnosis", run=plugin_logdirs.BROKEN_RUN
    )
    for flags in (
        dict(logdir="gs://bucket/logs", logdir_spec=""),
        dict(logdir="", logdir_spec="a:/tmp/a,b:/tmp/b"),
    ):
        namespace = argparse.Namespace(samples_per_plugin={}, **flags)
        PlateauLoader().fix_flags(namespace)
        assert namespace.samples_per_plugin["plateau"] >= 10_000, flags


# -- /runs ----------------------------------------------------------------------


def test_runs_lists_every_diagnosable_run_once(server):
    runs = _runs(server)
    assert sorted(runs) == plugin_logdirs.DIAGNOSABLE_RUNS
    # The Keras validation run is folded into its train run; a run with no
    # loss and no plateau data is not diagnosable.
    assert plugin_logdirs.KERAS_VALIDATION_RUN not in runs
    assert plugin_logdirs.IMAGES_ONLY_RUN not in runs
    assert runs[plugin_logdirs.KERAS_TRAIN_RUN]["validation_run"] == (
        plugin_logdirs.KERAS_VALIDATION_RUN
    )


def test_runs_still_being_written_are_marked_live(tmp_path, write_scalars):
    """A run whose last event is seconds old is live; one last written long ago is not."""
    import time

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    write_scalars(tmp_path / "finished", "loss", [1.0, 0.5, 0.4])  # wall times 1970
    writer = EventFileWriter(str(tmp_path / "training"))
    for step, value in enumerate([1.0, 0.8]):
        value = summary_pb2.Summary.Value(tag="loss", simple_value=value)
        event = event_pb2.Event(
            step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=[value])
        )
        writer.add_event(event)
    writer.close()
    runs = Server(str(tmp_path)).runs()
    assert runs["training"]["live"] is True
    assert runs["finished"]["live"] is False


def test_runs_carry_verdict_and_top_finding(server):
    runs = _runs(server)
    for name, entry in runs.items():
        assert entry["verdict"] in ("healthy", "warning", "critical"), (name, entry)
        assert isinstance(entry["max_step"], int)
        if entry["verdict"] == "healthy":
            continue
        top = entry["top_finding"]
        assert set(top) == {"cause", "severity", "confidence", "title"}
    broken = runs[plugin_logdirs.BROKEN_RUN]
    assert broken["verdict"] == "critical"
    assert "plateau/grad_norm" in broken["series"]
    assert "plateau/config" in broken["series"]


def test_runs_html_name_is_returned_verbatim(server):
    assert plugin_logdirs.XSS_RUN in _runs(server)


# -- /diagnosis -----------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        plugin_logdirs.BROKEN_RUN,
        plugin_logdirs.DIVERGING_RUN,
        plugin_logdirs.HEALTHY_RUN,
        plugin_logdirs.KERAS_TRAIN_RUN,
        plugin_logdirs.NEWER_VERSION_RUN,
        plugin_logdirs.XSS_RUN,
    ],
)
def test_diagnosis_is_exactly_the_cli_run_object(server, logdir, run):
    body = server.json(PREFIX + "/diagnosis", run=run)
    (expected,) = cli.diagnose_logdir(logdir, only_run=run)["runs"]
    # Through JSON as the CLI prints it (NaN/Inf spelled as Respond spells them).
    assert body == json.loads(_respond_json(expected))
    assert list(body)[:3] == ["run", "verdict", "findings"]
    assert body["run"] == run


def test_runs_read_through_the_data_provider_get_the_same_report(server, logdir):
    """A local run is read from its files; elsewhere the data provider gives the same answer."""
    remote = Server(logdir, local=False)
    for run in plugin_logdirs.DIAGNOSABLE_RUNS:
        assert remote.json(PREFIX + "/diagnosis", run=run) == server.json(
            PREFIX + "/diagnosis", run=run
        ), run


def test_diagnosis_of_broken_run_names_dead_units(server):
    body = server.json(PREFIX + "/diagnosis", run=plugin_logdirs.BROKEN_RUN)
    assert body["verdict"] == "critical"
    causes = [finding["cause"] for finding in body["findings"]]
    assert "dead_relu" in causes or "zero_gradient" in causes, causes
    for finding in body["findings"]:
        # Every series a finding cites is one the tab can draw from this run.
        assert finding["evidence"]["series"], finding["cause"]
        for tag in finding["evidence"]["series"]:
            drawn = server.json(PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag=tag)
            assert drawn["total_points"] > 0, (finding["cause"], tag)


def test_diagnosis_of_keras_run_reads_its_validation_sibling(server, logdir):
    """The tab diagnoses a Keras "train" run together with its "validation" sibling."""
    run = plugin_logdirs.KERAS_TRAIN_RUN
    body = server.json(PREFIX + "/diagnosis", run=run)
    joined = cli.read_run(logdir, run, rundata.list_logdir_runs(logdir))
    assert len(joined.validation_scalars["epoch_loss"]) == 4  # the sibling's 4 epochs
    assert body == json.loads(_respond_json(diagnosis.run_report(joined)))
    # Through the data provider too (a run the tab cannot read from files).
    assert Server(logdir, local=False).json(PREFIX + "/diagnosis", run=run) == body


def _respond_json(value):
    from tensorboard.backend import json_util

    return json.dumps(json_util.Cleanse(value))


# -- /series --------------------------------------------------------------------


def test_series_scalar(server):
    body = server.json(PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag="plateau/batch_loss")
    assert body["kind"] == "scalar"
    assert len(body["steps"]) == len(body["values"]) == body["total_points"]
    assert body["steps"] == sorted(body["steps"])


def test_series_vector_has_layer_labels_in_model_order(server):
    body = server.json(PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag="plateau/grad_norm")
    assert body["kind"] == "vector"
    assert body["labels"] == ["hidden", "hidden_2", "head"]
    assert all(len(row) == 3 for row in body["values"])
    dead = server.json(
        PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag="plateau/act_dead_fraction"
    )
    assert dead["header"]["activations"] == ["relu", "relu"]
    assert dead["values"][-1][0] == pytest.approx(1.0)


def test_series_config_and_other_scalars(server):
    config = server.json(PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag="plateau/config")
    assert config["kind"] == "config"
    assert config["config"]["loss"]["name"]
    keras = server.json(
        PREFIX + "/series", run=plugin_logdirs.KERAS_VALIDATION_RUN, tag="epoch_loss"
    )
    assert keras["kind"] == "scalar" and len(keras["values"]) == 4


def test_downsampling_keeps_spikes_and_nonfinite_points():
    values = np.ones(100_000)
    values[31_337] = 50.0
    values[77_777] = np.nan
    keep = bodies.downsample_min_max(values, 1000)
    assert len(keep) <= 1500
    assert 31_337 in keep and 77_777 in keep
    assert keep[0] == 0 and keep[-1] == 99_999
    assert list(bodies.downsample_min_max(values[:10], 1000)) == list(range(10))
    rows = bodies.downsample_uniform(10_000, 300)
    assert len(rows) <= 300 and rows[0] == 0 and rows[-1] == 9_999


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, params, code",
    [
        ("/diagnosis", {}, 400),
        ("/diagnosis", {"run": ""}, 400),
        ("/diagnosis", {"run": "no/such/run"}, 404),
        ("/diagnosis", {"run": "x" * 5000}, 400),
        ("/diagnosis", {"run": "a\x00b"}, 400),
        ("/diagnosis", {"run": "../../etc/passwd"}, 404),
        ("/series", {"run": plugin_logdirs.BROKEN_RUN}, 400),
        ("/series", {"tag": "plateau/grad_norm"}, 400),
        ("/series", {"run": "nope", "tag": "plateau/grad_norm"}, 404),
        ("/series", {"run": plugin_logdirs.BROKEN_RUN, "tag": "plateau/nope"}, 404),
        ("/series", {"run": plugin_logdirs.XSS_RUN, "tag": "plateau/config"}, 404),
        ("/series", {"run": plugin_logdirs.IMAGES_ONLY_RUN, "tag": "picture"}, 404),
    ],
)
def test_bad_requests_answer_json_errors(server, path, params, code):
    body = server.json(PREFIX + path, expect=code, **params)
    assert isinstance(body["error"], str) and body["error"]


# Arbitrary parameters, traversal and NaN/Inf bodies: test_plugin_properties.py.


def test_one_failing_run_never_blocks_the_others(logdir, monkeypatch):
    real = diagnosis.run_report

    def flaky(run_data):
        if run_data.name == plugin_logdirs.HEALTHY_RUN:
            raise RuntimeError("engine bug")
        return real(run_data)

    monkeypatch.setattr(diagnosis, "run_report", flaky)
    fresh = Server(logdir)
    runs = _runs(fresh)
    assert "engine bug" in runs[plugin_logdirs.HEALTHY_RUN]["error"]
    assert runs[plugin_logdirs.HEALTHY_RUN]["verdict"] is None
    # Listed as not fully read, with the reason among its problems.
    assert runs[plugin_logdirs.HEALTHY_RUN]["incomplete"] is True
    assert any("engine bug" in p for p in runs[plugin_logdirs.HEALTHY_RUN]["problems"])
    assert runs[plugin_logdirs.BROKEN_RUN]["verdict"] == "critical"
    body = fresh.json(PREFIX + "/diagnosis", expect=422, run=plugin_logdirs.HEALTHY_RUN)
    assert "engine bug" in body["error"]
    # Its series still draw.
    fresh.json(PREFIX + "/series", run=plugin_logdirs.HEALTHY_RUN, tag="plateau/batch_loss")


def test_newer_data_version_is_reported_not_fatal(server):
    entry = _runs(server)[plugin_logdirs.NEWER_VERSION_RUN]
    assert entry["verdict"] in ("healthy", "warning", "critical")
    assert entry["incomplete"] is True
    assert any("newer" in problem for problem in entry["problems"])


def test_runs_never_waits_long_for_a_diagnosis(logdir, monkeypatch):
    import threading
    import time

    release = threading.Event()
    real = diagnosis.run_report

    def blocked(run_data):
        assert release.wait(30)
        return real(run_data)

    monkeypatch.setattr(diagnosis, "run_report", blocked)
    monkeypatch.setattr(plugin, "_RUNS_WAIT_S", 0.2)
    fresh = Server(logdir)
    first = fresh.json(PREFIX + "/runs")["runs"]
    assert first and all(e["pending"] and e["verdict"] is None for e in first)
    again = time.monotonic()
    fresh.json(PREFIX + "/runs")
    assert time.monotonic() - again < 5
    release.set()
    runs = fresh.runs()
    assert all(not e["pending"] and e["verdict"] for e in runs.values())


def test_only_a_few_runs_keep_their_series_in_memory(logdir):
    fresh = Server(logdir)
    runs = fresh.runs()
    assert len(runs) > run_cache._RUNS_WITH_SERIES_IN_MEMORY
    for run in runs:
        for tag in runs[run]["series"]:
            fresh.json(PREFIX + "/series", run=run, tag=tag)  # read again when dropped
    (tab,) = [p for p in fresh.app._plugins if p.plugin_name == "plateau"]
    held = [e for e in tab._runs.entries() if e.data is not None]
    assert len(held) <= run_cache._RUNS_WITH_SERIES_IN_MEMORY


def test_a_small_logdir_is_diagnosed_within_one_runs_request(logdir):
    runs = Server(logdir).json(PREFIX + "/runs")["runs"]
    assert all(not e["pending"] and e["verdict"] for e in runs), runs


# -- caching --------------------------------------------------------------------


def test_diagnoses_are_cached_until_the_run_changes(tmp_path, logdir, monkeypatch):
    root = tmp_path / "logs"
    shutil.copytree(logdir, root)
    calls = []
    real = diagnosis.run_report

    def counting(run_data):
        calls.append(run_data.name)
        return real(run_data)

    monkeypatch.setattr(diagnosis, "run_report", counting)
    fresh = Server(str(root))
    _runs(fresh)
    first = sorted(calls)
    assert first == plugin_logdirs.DIAGNOSABLE_RUNS
    _runs(fresh)
    fresh.json(PREFIX + "/diagnosis", run=plugin_logdirs.BROKEN_RUN)
    fresh.json(PREFIX + "/series", run=plugin_logdirs.BROKEN_RUN, tag="plateau/grad_norm")
    assert sorted(calls) == first, "nothing changed, nothing recomputed"

    # Training writes more: only that run is diagnosed again.
    import tensorflow as tf

    from tb_plateau import summaries

    writer = tf.summary.create_file_writer(str(root / plugin_logdirs.HEALTHY_RUN))
    with writer.as_default():
        summaries.write_scalar(metadata.BATCH_LOSS, 0.01, step=10_000)
    writer.close()
    fresh.multiplexer.Reload()
    entry = _runs(fresh)[plugin_logdirs.HEALTHY_RUN]
    assert entry["max_step"] == 10_000
    assert sorted(calls) == sorted(first + [plugin_logdirs.HEALTHY_RUN])


# -- static files and path prefix ---------------------------------------------


@pytest.mark.parametrize(
    "name, content_type",
    [
        ("index.js", "text/javascript"),
        ("style.css", "text/css"),
        ("vendor/echarts.esm.min.js", "text/javascript"),
    ],
)
def test_static_files_from_the_allow_list(server, name, content_type):
    response = server.get(PREFIX + "/" + name)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == content_type
    assert len(response.get_data()) > 100


def test_the_frontend_modules_import_only_what_is_served(server):
    """index.js exports render; every module it reaches is served, by a relative URL; no
    module writes markup or reaches the network."""
    import re

    assert "export async function render" in server.get(PREFIX + "/index.js").get_data(as_text=True)
    seen, queue = set(), ["index.js"]
    while queue:
        name = queue.pop()
        seen.add(name)
        response = server.get(PREFIX + "/" + name)
        assert response.status_code == 200, name
        text = response.get_data(as_text=True)
        if not name.endswith(".js") or name.startswith("vendor/"):
            continue
        assert "innerHTML" not in text, name
        assert "http://" not in text and "https://" not in text, name
        for target in re.findall(r'^import .* from "\./([^"]+)";$', text, re.M):
            if target not in seen:
                queue.append(target)
    assert {"index.js", "charts.js", "config.js", "vendor/echarts.esm.min.js"} <= seen
    assert seen <= set(plugin._STATIC_FILES)


@pytest.mark.parametrize(
    "name",
    ["vendor/LICENSE-echarts.txt", "__init__.py", "../cli.py", "vendor/../index.js.map", "x.js"],
)
def test_files_off_the_allow_list_are_not_served(server, name):
    assert server.get(PREFIX + "/" + name).status_code == 404


def test_vendored_library_ships_its_license():
    import importlib.resources

    vendor = importlib.resources.files("tb_plateau.frontend").joinpath("vendor")
    assert "Apache License" in vendor.joinpath("LICENSE-echarts.txt").read_text()
    assert vendor.joinpath("echarts.esm.min.js").is_file()


def test_routes_work_under_a_path_prefix(logdir):
    prefixed = Server(logdir, path_prefix="/tb")
    assert plugin_logdirs.BROKEN_RUN in _runs(prefixed)
    listing = prefixed.json("/data/plugins_listing")
    assert listing["plateau"]["loading_mechanism"]["module_path"] == "/tb" + PREFIX + "/index.js"
