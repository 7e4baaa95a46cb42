"""`tb-plateau demo` end to end: trains its runs, serves them, the tab diagnoses them."""

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from tb_plateau import demo

pytestmark = pytest.mark.slow

_START_TIMEOUT = 240  # seconds: six trainings plus TensorBoard's start on 2 CPUs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


def test_demo_trains_serves_and_diagnoses(tmp_path):
    logdir = tmp_path / "demo"
    stale = logdir / "healthy" / "events.out.tfevents.1.from-an-earlier-demo"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    port = _free_port()
    cli = shutil.which("tb-plateau")
    assert cli, "the tb-plateau console script is not installed"
    process = subprocess.Popen(
        [cli, "demo", "--logdir", str(logdir), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    output = []
    url = None
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert process.poll() is None, "demo exited early:\n" + "".join(output)
                continue
            output.append(line)
            if line.startswith("TensorBoard with the Plateau tab:"):
                url = line.split(": ", 1)[1].strip().split("#")[0].rstrip("/")
        assert url == "http://localhost:%d" % port, "".join(output)
        text = "".join(output)
        names = demo.scenario_names()
        assert demo.torch_available() == ("pytorch_softmax_into_cross_entropy" in names)
        for name in names:
            assert "%s " % name in text  # progress and summary lines

        listing = _get_json(url + "/data/plugins_listing")
        assert listing["plateau"]["enabled"] is True
        runs = {r["run"]: r for r in _get_json(url + "/data/plugin/plateau/runs")["runs"]}
        assert sorted(runs) == sorted(names)
        assert runs["healthy"]["verdict"] == "healthy"
        expected_top = {
            "lr_too_high": "lr_too_high",
            "unnormalized_inputs": "unnormalized_inputs",
            "vanishing_gradients": "vanishing_gradients",
            "logits_into_probability_loss": "loss_output_mismatch",
            "dead_relu": "dead_relu",
        }
        if demo.torch_available():
            expected_top["pytorch_softmax_into_cross_entropy"] = "loss_output_mismatch"
        for run, cause in expected_top.items():
            assert runs[run]["verdict"] != "healthy", run
            assert runs[run]["top_finding"]["cause"] == cause, (run, runs[run]["top_finding"])
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Re-running replaced the earlier demo's run instead of adding to it.
    for name in demo.scenario_names():
        events = [f for f in os.listdir(logdir / name) if "tfevents" in f]
        assert len(events) == 1, (name, events)
