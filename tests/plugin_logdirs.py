"""Logdirs for the Plateau tab's tests: tiny real trainings plus edge cases.

`write_logdir(root)` writes, in a fresh process-independent layout:
  trained/dead_relu      Keras fit with PlateauCallback; ReLU layer whose bias
                         starts far negative, so its units never fire
  trained/diverging      Keras fit with PlateauCallback; SGD with a huge step
  trained/healthy        Keras fit with PlateauCallback; a learnable problem
  keras/train, keras/validation
                         Keras' own TensorBoard callback only (epoch_loss)
  <img src=x onerror=alert(1)>
                         a run whose name is HTML: the tab must show it as text
  newer_version          plateau data from a future tb_plateau (header version 99)
  images_only            no loss, no plateau data: not listed by the tab

Imports TensorFlow; call it once per session.
"""

import os

XSS_RUN = "<img src=x onerror=alert(1)>"
BROKEN_RUN = "trained/dead_relu"
DIVERGING_RUN = "trained/diverging"
HEALTHY_RUN = "trained/healthy"
KERAS_TRAIN_RUN = "keras/train"
KERAS_VALIDATION_RUN = "keras/validation"
NEWER_VERSION_RUN = "newer_version"
IMAGES_ONLY_RUN = "images_only"

DIAGNOSABLE_RUNS = sorted(
    [BROKEN_RUN, DIVERGING_RUN, HEALTHY_RUN, KERAS_TRAIN_RUN, XSS_RUN, NEWER_VERSION_RUN]
)


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _data(tf, seed, n=512, features=8):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _train(tf, log_dir, *, hidden_bias, optimizer, seed, epochs=6):
    from tb_plateau.summaries import PlateauCallback

    tf.keras.utils.set_random_seed(seed)
    x, y = _data(tf, seed)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(x.shape[1],)),
            tf.keras.layers.Dense(
                16,
                activation="relu",
                bias_initializer=tf.keras.initializers.Constant(hidden_bias),
                name="hidden",
            ),
            tf.keras.layers.Dense(16, activation="relu", name="hidden_2"),
            tf.keras.layers.Dense(1, name="head"),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=epochs,
        validation_split=0.25,
        verbose=0,
        callbacks=[PlateauCallback(log_dir, every_n_steps=2)],
    )


def _write_keras_only(tf, root):
    tf.keras.utils.set_random_seed(3)
    x, y = _data(tf, 3, n=256)
    model = tf.keras.Sequential(
        [tf.keras.Input(shape=(x.shape[1],)), tf.keras.layers.Dense(1, name="linear")]
    )
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    model.fit(
        x,
        y,
        epochs=4,
        validation_split=0.25,
        verbose=0,
        callbacks=[tf.keras.callbacks.TensorBoard(os.path.join(root, "keras"), write_graph=False)],
    )


def _write_xss_run(tf, root):
    writer = tf.summary.create_file_writer(os.path.join(root, XSS_RUN))
    with writer.as_default():
        for step in range(20):
            tf.summary.scalar("loss", 1.0 / (1 + step), step=step)
    writer.close()


def _write_newer_version(tf, root):
    from tensorboard.compat.proto import summary_pb2

    from tb_plateau import metadata

    writer = tf.summary.create_file_writer(os.path.join(root, NEWER_VERSION_RUN))
    md = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=b'{"version": 99}'
        ),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    )
    with writer.as_default():
        for step in range(5):
            tf.summary.write(
                metadata.tag(metadata.BATCH_LOSS),
                tf.constant(1.0),
                step=step,
                metadata=md.SerializeToString(),
            )
    writer.close()


def _write_images_only(tf, root):
    writer = tf.summary.create_file_writer(os.path.join(root, IMAGES_ONLY_RUN))
    with writer.as_default():
        tf.summary.image("picture", tf.zeros([1, 4, 4, 1]), step=0)
    writer.close()


def write_logdir(root):
    """Writes every run listed in the module docstring under `root`."""
    tf = _quiet_tf()
    _train(
        tf,
        os.path.join(root, BROKEN_RUN),
        hidden_bias=-20.0,
        optimizer=tf.keras.optimizers.Adam(1e-3),
        seed=1,
    )
    _train(
        tf,
        os.path.join(root, DIVERGING_RUN),
        hidden_bias=0.0,
        optimizer=tf.keras.optimizers.SGD(3.0),
        seed=2,
    )
    _train(
        tf,
        os.path.join(root, HEALTHY_RUN),
        hidden_bias=0.0,
        optimizer=tf.keras.optimizers.Adam(1e-2),
        seed=4,
    )
    _write_keras_only(tf, root)
    _write_xss_run(tf, root)
    _write_newer_version(tf, root)
    _write_images_only(tf, root)
    return root


if __name__ == "__main__":
    import sys

    write_logdir(sys.argv[1])
