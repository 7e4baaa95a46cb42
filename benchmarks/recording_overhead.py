"""What recording costs a training: median step time with and without it.

For a small MLP and a small CNN, alternates in one process, round after round:
  * no callback (the baseline),
  * PlateauCallback at its default every_n_steps (and at other settings given
    with --every),
  * keras.callbacks.TensorBoard(histogram_freq=1), the usual alternative.
Each is a `fit` of a few epochs; the first epoch (tracing) is dropped and the
step time is an epoch's wall time over its steps. Prints medians and the
overhead against the baseline of the same round.

    python benchmarks/recording_overhead.py [--rounds 5] [--every 10 100]
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


def run_once(build, x, y, batch, callbacks, epochs):
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=callbacks + [timer])
    steps = int(np.ceil(len(x) / batch))
    return [s / steps for s in timer.seconds[1:]]  # drop the tracing epoch


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
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tasks = {"mlp": [mlp_task(rng)], "cnn": [cnn_task(rng)]}
    tasks["both"] = tasks["mlp"] + tasks["cnn"]
    with tempfile.TemporaryDirectory() as workdir:
        for task in tasks[args.task]:
            bench(task, args.rounds, args.epochs, args.every, workdir)


if __name__ == "__main__":
    main()
