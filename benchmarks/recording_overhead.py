"""What recording costs a training: median step time with and without it.

For a small MLP and a small CNN, alternates in one process, round after round:
  * no callback (the baseline),
  * PlateauCallback at its default every_n_steps (and at other settings given
    with --every),
  * keras.callbacks.TensorBoard(histogram_freq=1), the usual alternative.
Each is a `fit` of a few epochs; the first epoch (tracing) is dropped and the
step time is an epoch's wall time over its steps. Prints medians and the
overhead against the baseline of the same round.

With --whole-run, each fit is one run of --steps steps, timed from fit's start
to the end of its last step: the recorder's dense first records (every step,
then doubling gaps), its live verdict thread and the tracing of both train
functions (Keras' own and the instrumented one) fall inside the measured time.
The median step is printed beside it.

    python benchmarks/recording_overhead.py [--rounds 5] [--every 10 100]
    python benchmarks/recording_overhead.py --whole-run [--steps 1000]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tb_plateau import summaries  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class BatchTimer(keras.callbacks.Callback):
    """Wall time between consecutive batch ends (the first batch from fit's start)."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_begin(self, logs=None):
        self.ends = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def mlp_task(rng):
    x = rng.normal(size=(8192, 32)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("int32")

    def build():
        return keras.Sequential(
            [
                keras.Input((32,)),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(2),
            ]
        )

    return "MLP 32-128-128-2", build, x, y, 32


def cnn_task(rng):
    x = rng.normal(size=(2048, 16, 16, 3)).astype("float32")
    y = (x[:, :8, :, 0].mean(axis=(1, 2)) > 0).astype("int32")

    def build():
        return keras.Sequential(
            [
                keras.Input((16, 16, 3)),
                keras.layers.Conv2D(16, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(2),
            ]
        )

    return "CNN conv16-conv32-dense", build, x, y, 32


def compiled(build):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def run_once(build, x, y, batch, callbacks, epochs):
    model = compiled(build)
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=callbacks + [timer])
    steps = int(np.ceil(len(x) / batch))
    return [s / steps for s in timer.seconds[1:]]  # drop the tracing epoch


def run_whole(build, x, y, batch, callbacks, steps):
    """(seconds from fit's start to the end of step `steps` - 1, [seconds of each step])."""
    model = compiled(build)
    per_epoch = int(np.ceil(len(x) / batch))
    epochs = int(np.ceil(steps / per_epoch))
    timer = BatchTimer()
    model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        steps_per_epoch=min(per_epoch, steps),
        verbose=0,
        callbacks=callbacks + [timer],
    )
    ends = timer.ends[: steps + 1]
    return ends[-1] - ends[0], list(np.diff(ends))


def bench_whole(task, rounds, steps, workdir):
    name, build, x, y, batch = task
    configs = {
        "none": lambda: [],
        "PlateauCallback [defaults: dense start, live verdicts]": lambda: [
            summaries.PlateauCallback(tempfile.mkdtemp(dir=workdir))
        ],
        "PlateauCallback(live=False)": lambda: [
            summaries.PlateauCallback(tempfile.mkdtemp(dir=workdir), live=False)
        ],
    }
    totals = {label: [] for label in configs}
    steps_all = {label: [] for label in configs}
    overheads = {label: [] for label in configs}
    for r in range(rounds):
        labels = list(configs)
        labels = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in labels:
            total, step_times = run_whole(build, x, y, batch, configs[label](), steps)
            totals[label].append(total)
            steps_all[label].extend(step_times)
        for label in configs:
            overheads[label].append(totals[label][-1] / totals["none"][-1] - 1.0)
    print("\n%s, batch %d, %d rounds of one %d-step run" % (name, batch, rounds, steps))
    print("%-56s %10s %10s %12s" % ("", "run (s)", "overhead", "median step (ms)"))
    for label in configs:
        print(
            "%-56s %10.3f %9.1f%% %12.3f"
            % (
                label,
                statistics.median(totals[label]),
                100 * statistics.median(overheads[label]),
                1e3 * statistics.median(steps_all[label]),
            )
        )


def bench(task, rounds, epochs, every_list, workdir):
    name, build, x, y, batch = task
    configs = {"none": lambda: []}
    for every in every_list:
        label = "PlateauCallback(every_n_steps=%d)" % every
        if every == summaries.DEFAULT_EVERY_N_STEPS:
            label += " [default]"
        configs[label] = lambda every=every: [
            summaries.PlateauCallback(tempfile.mkdtemp(dir=workdir), every_n_steps=every)
        ]
    configs["keras TensorBoard(histogram_freq=1)"] = lambda: [
        keras.callbacks.TensorBoard(tempfile.mkdtemp(dir=workdir), histogram_freq=1)
    ]
    step_times = {label: [] for label in configs}
    overheads = {label: [] for label in configs}
    for r in range(rounds):
        # Rotate the order so that no configuration always runs first.
        labels = list(configs)
        labels = labels[r % len(labels) :] + labels[: r % len(labels)]
        medians = {}
        for label in labels:
            times = run_once(build, x, y, batch, configs[label](), epochs)
            medians[label] = statistics.median(times)
            step_times[label].extend(times)
        for label in configs:
            overheads[label].append(medians[label] / medians["none"] - 1.0)
    print(
        "\n%s, batch %d, %d rounds x %d epochs of %d steps"
        % (name, batch, rounds, epochs - 1, int(np.ceil(len(x) / batch)))
    )
    print("%-44s %16s %22s" % ("", "median step (ms)", "overhead (median of rounds)"))
    for label in configs:
        print(
            "%-44s %16.3f %21.1f%%"
            % (
                label,
                1e3 * statistics.median(step_times[label]),
                100 * statistics.median(overheads[label]),
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4, help="per fit; the first is dropped")
    parser.add_argument(
        "--every",
        type=int,
        nargs="*",
        default=[summaries.DEFAULT_EVERY_N_STEPS],
        help="every_n_steps settings to measure",
    )
    parser.add_argument("--task", choices=["mlp", "cnn", "both"], default="both")
    parser.add_argument(
        "--whole-run", action="store_true", help="time whole runs from their first step"
    )
    parser.add_argument("--steps", type=int, default=1000, help="per run, with --whole-run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tasks = {"mlp": [mlp_task(rng)], "cnn": [cnn_task(rng)]}
    tasks["both"] = tasks["mlp"] + tasks["cnn"]
    with tempfile.TemporaryDirectory() as workdir:
        for task in tasks[args.task]:
            if args.whole_run:
                bench_whole(task, args.rounds, args.steps, workdir)
            else:
                bench(task, args.rounds, args.epochs, args.every, workdir)


if __name__ == "__main__":
    main()
