"""A real `tensorboard` process finds the Plateau tab and serves a diagnosis.

Once with the default loader (the Rust data server) and once with
`--load_fast=false` (the Python loader): the plugin reads only through
`context.data_provider`, and its loader raises both loaders' retention for
plateau data.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import plugin_logdirs
import pytest

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 120  # TensorBoard with TensorFlow installed starts in ~5-20 s
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


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, json.loads(response.read().decode("utf-8"))


class TensorBoardProcess:
    def __init__(self, logdir, extra_args):
        self.port = _free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.log = open(os.path.join(logdir, "..", "tensorboard-%d.log" % self.port), "w+")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                logdir,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--reload_interval",
                "2",
            ]
            + extra_args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_for(self, path, ready, timeout_s=STARTUP_TIMEOUT_S):
        """Polls `path` until `ready(body)` holds; bounded by `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    "tensorboard exited with %s:\n%s" % (self.process.returncode, self.output())
                )
            try:
                status, body = _get(self.base + path)
                if status == 200 and ready(body):
                    return body
                last = body
            except (urllib.error.URLError, ConnectionError, OSError, ValueError) as e:
                last = e
            time.sleep(0.5)
        pytest.fail("timed out waiting for %s (last: %.300r)\n%s" % (path, last, self.output()))

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.log.close()


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

    status, report = _get(
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
