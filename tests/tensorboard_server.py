"""A real `tensorboard` process on a free loopback port, for end-to-end tests."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

STARTUP_TIMEOUT_S = 120  # TensorBoard with TensorFlow installed starts in ~5-20 s


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=10):
    """(status, parsed JSON body) of a GET."""
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
                status, body = get_json(self.base + path)
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
