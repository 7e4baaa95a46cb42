"""Latency of the Plateau tab's routes through a real `tensorboard` process.

On a generated logdir (`make_logdir`: 100 runs x 10,000 recorded steps x 50
layers by default), for each loader asked for (the default Rust data server,
and `--load_fast=false`, TensorBoard's Python loader):

  1. start `tensorboard` on a free loopback port and wait until it has loaded
     every run (until the tab's `/runs` lists every run at the last step the
     generator wrote: `/runs` reads only TensorBoard's cheap tag listing);
  2. cold: `/diagnosis?run=` for each run in turn, asked before the tab's
     background worker reached it (the first request reads and diagnoses it);
  3. `/runs` until no run is pending (the background worker diagnosed the rest);
  4. warm: `/runs` and `/diagnosis?run=` again for every run (cached);
  5. appends records to one run and checks that only that run is read again.

    python benchmarks/tab_latency.py --logdir /tmp/tab_latency_logdir
    python benchmarks/tab_latency.py --runs 10 --steps 1000 --layers 10   # quick

Figures are wall-clock latencies of single requests, one at a time: median and
95th percentile. Stop every process it starts (on error too).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

READY_TIMEOUT_S = 1800  # loading 3 GB of event files on a shared 2-core machine
REQUEST_TIMEOUT_S = 600


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base, path, **params):
    """(seconds, parsed JSON) of one GET."""
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
        body = response.read()
    return time.perf_counter() - start, json.loads(body)


def _summary(seconds):
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 4),
        "p95_s": round(p95, 4),
        "max_s": round(ordered[-1], 4),
    }


class TensorBoard:
    def __init__(self, logdir, extra_args, log_path):
        self.port = _free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log = open(log_path, "w")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", logdir]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--reload_interval", "5"]
            + extra_args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


def _rss_mb(pid):
    """Resident memory of the tensorboard (Python) process, in MB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024)
    return None


def _poll_runs(tb, ready, what, timeout_s=READY_TIMEOUT_S):
    """Polls `/runs` until `ready(body)`; returns (seconds waited, body)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if tb.process.poll() is not None:
            raise RuntimeError("tensorboard exited with %s" % tb.process.returncode)
        try:
            _, body = _get(tb.base, "/data/plugin/plateau/runs")
            if ready(body):
                return time.monotonic() - start, body
        except OSError:
            pass
        time.sleep(2)
    raise RuntimeError("tensorboard did not %s within %d s" % (what, timeout_s))


def _append(run_dir, step, layers):
    """One more record in a new event file of the run, as a restarted training would."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer import record_writer
    from tensorboard.util import tensor_util

    from tb_plateau import metadata

    labels = ["layer_%d" % i for i in range(layers)]
    values = [
        summary_pb2.Summary.Value(
            tag=metadata.tag(metadata.BATCH_LOSS),
            tensor=tensor_util.make_tensor_proto(np.float32(0.5)),
            metadata=metadata.create_summary_metadata(summary_pb2.DATA_CLASS_SCALAR),
        ),
        summary_pb2.Summary.Value(
            tag=metadata.tag(metadata.GRAD_NORM),
            tensor=tensor_util.make_tensor_proto(np.full(layers, 1e-2, dtype=np.float32)),
            metadata=metadata.create_summary_metadata(summary_pb2.DATA_CLASS_TENSOR, labels=labels),
        ),
    ]
    path = os.path.join(run_dir, "events.out.tfevents.9999999999.append.0.0")
    with open(path, "wb") as f:
        writer = record_writer.RecordWriter(f)
        writer.write(
            event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )
        writer.write(
            event_pb2.Event(
                wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
            ).SerializeToString()
        )


def measure(logdir, loader, args):
    from benchmarks.make_logdir import run_name

    runs = [run_name(i) for i in range(args.runs)]
    extra = [] if loader == "default" else ["--load_fast=false"]
    tb = TensorBoard(logdir, extra, os.path.join(os.path.dirname(logdir), "tb-%s.log" % loader))
    result = {"loader": loader}
    try:
        listed, body = _poll_runs(tb, lambda b: len(b["runs"]) >= len(runs), "list every run")
        last_step = max(e["max_step"] or 0 for e in body["runs"])

        def loaded(body):
            steps = {e["run"]: e["max_step"] for e in body["runs"]}
            return all(steps.get(run) == last_step for run in runs)

        waited, _ = _poll_runs(tb, loaded, "load every run")
        result["load_wait_s"] = round(listed + waited, 1)

        # /runs right after loading: lists, queues every run, reads none.
        seconds, body = _get(tb.base, "/data/plugin/plateau/runs")
        result["runs_first_s"] = round(seconds, 4)

        # Cold: each run's first /diagnosis, in reverse order so that the
        # background worker (which starts from the first run) has not reached it.
        cold = []
        for run in reversed(runs[len(runs) // 2 :]):
            seconds, _ = _get(tb.base, "/data/plugin/plateau/diagnosis", run=run)
            cold.append(seconds)
        result["diagnosis_cold"] = _summary(cold)

        # Until the background worker has diagnosed every run.
        start = time.monotonic()
        polls = []
        while True:
            seconds, body = _get(tb.base, "/data/plugin/plateau/runs")
            polls.append(seconds)
            if not any(e["pending"] for e in body["runs"]):
                break
            time.sleep(1)
        result["all_diagnosed_after_s"] = round(time.monotonic() - start, 1)
        result["runs_while_diagnosing"] = _summary(polls)

        result["tensorboard_rss_mb"] = _rss_mb(tb.process.pid)
        warm_runs = [_get(tb.base, "/data/plugin/plateau/runs")[0] for _ in range(20)]
        result["runs_warm"] = _summary(warm_runs)
        warm = [_get(tb.base, "/data/plugin/plateau/diagnosis", run=run)[0] for run in runs]
        result["diagnosis_warm"] = _summary(warm)
        series = [
            _get(tb.base, "/data/plugin/plateau/series", run=run, tag="plateau/grad_norm")[0]
            for run in runs[:20]
        ]
        result["series_grad_norm"] = _summary(series)

        # Appending to one run re-reads that run only.
        target = runs[0]
        _append(os.path.join(logdir, target), last_step + 10, args.layers)
        start = time.monotonic()
        while True:
            _, body = _get(tb.base, "/data/plugin/plateau/runs")
            entries = {e["run"]: e for e in body["runs"]}
            if entries[target]["max_step"] == last_step + 10:
                break
            if time.monotonic() - start > 300:
                raise RuntimeError("the appended record never showed")
            time.sleep(1)
        pending = sorted(run for run, e in entries.items() if e["pending"])
        result["pending_after_append"] = pending
        seconds, _ = _get(tb.base, "/data/plugin/plateau/diagnosis", run=target)
        result["diagnosis_after_append_s"] = round(seconds, 4)
        result["runs_after_append"] = _summary(
            [_get(tb.base, "/data/plugin/plateau/runs")[0] for _ in range(10)]
        )
    finally:
        tb.stop()
        appended = os.path.join(logdir, runs[0], "events.out.tfevents.9999999999.append.0.0")
        if os.path.exists(appended):
            os.remove(appended)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", default="/tmp/tab_latency_logdir")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    # The Python loader (--load_fast=false) holds every plateau record of every
    # run as Python protos: on the full logdir it passed 9 GB at 43 of 100 runs
    # after 12 minutes here, so it is opt-in, for smaller logdirs.
    parser.add_argument("--loaders", default="default", help="default, python, or default,python")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.logdir) or len(os.listdir(args.logdir)) < args.runs:
        from benchmarks.make_logdir import make_logdir

        print("generating %s ..." % args.logdir, file=sys.stderr)
        make_logdir(
            args.logdir, runs=args.runs, steps=args.steps, layers=args.layers, seed=args.seed
        )
    results = []
    for loader in args.loaders.split(","):
        result = measure(args.logdir, loader.strip(), args)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
