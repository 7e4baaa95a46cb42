"""Trains one small model on two logical CPUs and on one, and compares the records.

Run by test_summaries.py in its own process: logical devices must be set
before TensorFlow starts. Usage: python mirrored_run.py LOGDIR
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tb_plateau import metadata, rundata, summaries  # noqa: E402


def train(logdir, run, strategy):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
        )
        model.compile(
            keras.optimizers.SGD(0.0),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    callback = summaries.PlateauCallback(os.path.join(logdir, run), every_n_steps=2)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return rundata.read_logdir_run(logdir, run)


def main(logdir):
    two = train(logdir, "mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    one = train(logdir, "single", tf.distribute.get_strategy())
    assert two.config["distribution"]["replicas"] == 2, two.config["distribution"]
    assert two.config["batch_size"] == 32, two.config["batch_size"]
    # One writer, one record per step.
    np.testing.assert_array_equal(
        two.scalars[metadata.BATCH_LOSS].steps, one.scalars[metadata.BATCH_LOSS].steps
    )
    # The loss is the mean over the whole batch, summed from the replicas' shares.
    np.testing.assert_allclose(
        two.scalars[metadata.BATCH_LOSS].values, one.scalars[metadata.BATCH_LOSS].values, rtol=1e-5
    )
    # Gradient norms add up the replicas' shares: equal when they agree, a
    # little above the all-reduced norm otherwise.
    ratio = two.vectors[metadata.GRAD_NORM].values / one.vectors[metadata.GRAD_NORM].values
    assert np.all((ratio > 0.99) & (ratio < 1.5)), ratio
    np.testing.assert_allclose(
        two.vectors[metadata.WEIGHT_NORM].values, one.vectors[metadata.WEIGHT_NORM].values
    )
    np.testing.assert_allclose(
        two.vectors[metadata.ACT_DEAD_FRACTION].values,
        one.vectors[metadata.ACT_DEAD_FRACTION].values,
        atol=0.13,
    )
    print("two replicas agree with one device")


if __name__ == "__main__":
    main(sys.argv[1])
