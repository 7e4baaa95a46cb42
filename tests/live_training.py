"""A small Keras training whose learning rate jumps mid-run, for the live-verdict tests.

    python tests/live_training.py LOG_DIR JUMP_STEP

trains it (slowly, as a real training would go) into LOG_DIR with `PlateauCallback`,
for `tb-plateau watch` to follow from another process.
"""

import sys
import time

import keras
import numpy as np


def data(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    return x, y


def build():
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(2),
        ]
    )


class JumpSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """1e-3, then `rate` from step `at` on (a schedule or warm restart gone wrong)."""

    def __init__(self, at, rate):
        self.at, self.rate = at, rate

    def __call__(self, step):
        return keras.ops.where(step >= self.at, self.rate, 1e-3)

    def get_config(self):
        return {"at": self.at, "rate": self.rate}


def jump_schedule(at, rate):
    return JumpSchedule(at, rate)


class SlowSteps(keras.callbacks.Callback):
    """Each step takes at least `seconds` more, as a real model's would."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


def main(log_dir, jump_step):
    from tb_plateau.summaries import PlateauCallback

    keras.utils.set_random_seed(0)
    x, y = data()
    model = build()
    model.compile(
        keras.optimizers.Adam(jump_schedule(jump_step, 50.0)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callback = PlateauCallback(log_dir, every_n_steps=20)
    model.fit(x, y, batch_size=16, epochs=50, verbose=0, callbacks=[SlowSteps(0.02), callback])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
