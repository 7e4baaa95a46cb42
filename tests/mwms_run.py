"""One worker of a two-process MultiWorkerMirroredStrategy training on loopback (a custom
`tf.GradientTape` loop recorded with `Recorder`). Run by test_summaries.py, one process
per worker:

    python -m tests.mwms_run INDEX PORT0 PORT1 LOGDIR

Both workers pass the same LOGDIR: only the chief (worker 0) may write there. (Keras 3's
`fit` fails under this strategy, keras-team/keras#20585, hence the custom loop.)
"""

import json
import os
import sys


def main(index, ports, log_dir):
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": ["127.0.0.1:%d" % port for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from tb_plateau.summaries import Recorder

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(index)  # each worker its own shard
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
        )
        optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="sum_over_batch_size"
    )

    @tf.function
    def train_step(xb, yb):
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss, grads

        return strategy.run(step, args=(xb, yb))

    losses = []
    with Recorder(log_dir, model, every_n_steps=4, optimizer=optimizer, loss=loss_fn) as recorder:
        for step in range(16):
            batch = slice((step % 8) * 32, (step % 8) * 32 + 32)
            loss, grads = train_step(x[batch], y[batch])
            loss = strategy.experimental_local_results(loss)[0]
            grads = [strategy.experimental_local_results(g)[0] for g in grads]
            recorder.record(step, loss, grads, x=x[batch], y=y[batch])
            losses.append(float(loss))
        chief = recorder.chief
    print(json.dumps({"index": index, "chief": chief, "loss": losses}))


if __name__ == "__main__":
    main(int(sys.argv[1]), [int(sys.argv[2]), int(sys.argv[3])], sys.argv[4])
