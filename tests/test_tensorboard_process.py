"""A real `tensorboard` process finds the Plateau tab and serves a diagnosis.

Once with the default loader (the Rust data server) and once with
`--load_fast=false` (the Python loader): the plugin reads only through
`context.data_provider`, and its loader raises both loaders' retention for
plateau data.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests import plugin_logdirs
from tests.tensorboard_server import TensorBoardProcess, get_json

pytestmark = pytest.mark.slow


LONG_RUN = "long"
LONG_RUN_STEPS = 400  # above both loaders' default retention (10 and 100 tensors)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("logdir"))
    plugin_logdirs.write_logdir(root)
    _write_long_run(os.path.join(root, LONG_RUN))
    return root


def _write_long_run(path):
    import tensorflow as tf

    from tb_plateau import metadata, summaries

    writer = tf.summary.create_file_writer(path)
    with writer.as_default():
        for step in range(LONG_RUN_STEPS):
            summaries.write_scalar(metadata.BATCH_LOSS, 2.0 / (1 + 0.01 * step), step)
            summaries.write_vector(metadata.GRAD_NORM, [1e-3, 1e-1], ["a", "b"], step)
    writer.close()


@pytest.fixture(params=["default", "load_fast_false"], scope="module")
def tensorboard(request, logdir):
    args = [] if request.param == "default" else ["--load_fast=false"]
    process = TensorBoardProcess(logdir, args)
    yield process
    process.stop()


def _query(path, **params):
    return path + "?" + urllib.parse.urlencode(params)


def test_tab_listed_and_diagnosis_served(tensorboard):
    listing = tensorboard.wait_for(
        "/data/plugins_listing", lambda body: body.get("plateau", {}).get("enabled")
    )
    assert listing["plateau"]["tab_name"] == "Plateau"
    assert listing["plateau"]["loading_mechanism"]["type"] == "IFRAME"

    def all_runs_diagnosed(body):
        runs = {entry["run"]: entry for entry in body["runs"]}
        return plugin_logdirs.BROKEN_RUN in runs and all(
            entry["verdict"] for entry in runs.values()
        )

    tensorboard.wait_for("/data/plugin/plateau/runs", all_runs_diagnosed)
    # Runs appear as the loader reaches them: wait until the last is in.
    body = tensorboard.wait_for(
        "/data/plugin/plateau/runs",
        lambda body: {e["run"] for e in body["runs"]} >= set(plugin_logdirs.DIAGNOSABLE_RUNS),
    )
    assert {e["run"] for e in body["runs"]} == set(plugin_logdirs.DIAGNOSABLE_RUNS + [LONG_RUN])

    status, report = get_json(
        tensorboard.base + _query("/data/plugin/plateau/diagnosis", run=plugin_logdirs.BROKEN_RUN)
    )
    assert status == 200
    assert report["run"] == plugin_logdirs.BROKEN_RUN
    assert report["verdict"] == "critical"
    assert report["findings"][0]["cause"] in ("dead_relu", "zero_gradient")


def test_whole_series_kept_by_either_loader(tensorboard):
    def complete(body):
        return body.get("total_points") == LONG_RUN_STEPS

    path = _query("/data/plugin/plateau/series", run=LONG_RUN, tag="plateau/grad_norm")
    tensorboard.wait_for(
        "/data/plugin/plateau/runs", lambda body: any(e["run"] == LONG_RUN for e in body["runs"])
    )
    body = tensorboard.wait_for(path, complete, timeout_s=60)
    assert body["labels"] == ["a", "b"]


def test_errors_are_json(tensorboard):
    tensorboard.wait_for("/data/plugins_listing", lambda body: "plateau" in body)
    url = tensorboard.base + _query("/data/plugin/plateau/diagnosis", run="no such run")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(url, timeout=10)
    assert raised.value.code == 404
    assert "no such run" in json.loads(raised.value.read().decode("utf-8"))["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/data/plugin/plateau/../../../cli.py",
        "/data/plugin/plateau/%2e%2e/%2e%2e/cli.py",
        "/data/plugin/plateau/index.js/../cli.py",
        "/data/plugin/plateau/..%2f..%2fcli.py",
        "/data/plugin/plateau/vendor/..\\..\\cli.py",
        "/data/plugin/plateau/%2fetc%2fpasswd",
    ],
)
def test_traversal_over_http_serves_nothing_of_ours(tensorboard, path):
    import http.client

    tensorboard.wait_for("/data/plugins_listing", lambda body: "plateau" in body)
    # http.client sends the path as written: no client-side normalization.
    connection = http.client.HTTPConnection("127.0.0.1", tensorboard.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status < 500
    assert b"PlateauPlugin" not in body and b"root:x:0:0" not in body
    if response.status == 200:
        # Only TensorBoard's own page (a path it normalized to "/"), never a file of ours.
        assert response.getheader("Content-Type", "").startswith("text/html"), path
