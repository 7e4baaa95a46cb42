"""Custom training loops: `Recorder`, one call per step."""

import math

import numpy as np
import tensorflow as tf

from tb_plateau import metadata
from tb_plateau.live import LiveHandle, LiveVerdict, check_stop_on
from tb_plateau.summaries.guard import _check_every_n_steps, _check_log_dir
from tb_plateau.summaries.keras.callback import _is_chief
from tb_plateau.summaries.keras.describe import (
    _current_learning_rate,
    _describe_loss,
    _describe_optimizer,
    _ModelIndex,
    _output_info,
)
from tb_plateau.summaries.keras.hooks import _class_slots, _Hooks
from tb_plateau.summaries.keras.record import DEFAULT_EVERY_N_STEPS, _record_vectors, _static_config
from tb_plateau.summaries.keras.stats import (
    _MAX_FEATURES,
    _data_summary,
    _feature_stats,
    _flat_tensors,
    _float32,
    _gradient_stats,
    _label_stats,
    _nonfinite_count,
    _output_stats,
    _read_weights,
    _update_ratio,
)
from tb_plateau.summaries.writer import _RunWriter

# --------------------------------------------------------------------------
# Custom training loops


def _check_step(step):
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        if tf.is_tensor(step) and step.dtype.is_integer:
            return int(step)
        raise ValueError("step must be an int, got %r" % (step,))
    return int(step)


class Recorder(LiveHandle):
    """The same records as `PlateauCallback`, for a custom `tf.GradientTape` loop.

    Call `record` once per step, after the optimizer applied the gradients:

    ```python
    recorder = Recorder("logs/run1", model, optimizer=optimizer, loss=loss_fn)
    for step, (x, y) in enumerate(dataset):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        recorder.record(step, loss, grads, x=x, y=y, y_pred=y_pred)
    recorder.close()
    ```

    On steps that are not recorded `record` only reads the loss, to catch the
    first non-finite one. On recorded steps, it takes activation statistics
    from one extra forward pass over `x` in inference mode (no batch-norm
    update, no dropout), and the update/weight ratio of the next step from a
    copy of the weights. Call it eagerly (outside `tf.function`).

    Args:
      log_dir: the run's directory.
      model: the Keras model being trained.
      every_n_steps: steps between records, a positive integer.
      optimizer: the optimizer, for the learning rate and the configuration record.
      loss: the loss function or object, for the configuration record.
      stop_on: as for `PlateauCallback`; the loop reads `stop_requested`.
      live: False to diagnose only after training.
    """

    def __init__(
        self,
        log_dir,
        model,
        every_n_steps=DEFAULT_EVERY_N_STEPS,
        optimizer=None,
        loss=None,
        stop_on=None,
        live=True,
    ):
        if not isinstance(model, tf.keras.Model):
            raise ValueError("model must be a keras.Model, got %r" % (type(model).__name__,))
        self.every_n_steps = _check_every_n_steps(every_n_steps)
        self.log_dir = _check_log_dir(log_dir)
        self.stop_on = check_stop_on(stop_on)
        if stop_on is not None and not live:
            raise ValueError("stop_on needs live=True: the live verdict decides when to stop")
        self.model = model
        self.optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
        self.loss = loss
        # In a multi-worker training only the chief records; the others' `record` returns
        # at once (the Recorder runs outside the train step: no collective to match).
        self.chief = _is_chief(getattr(model, "distribute_strategy", None))
        self._run = _RunWriter(self.log_dir, self.every_n_steps, silent=not self.chief)
        self._live = None
        if live and self.chief:
            self._live = self._run.guard.run(
                "live", LiveVerdict, self._run, str(self.log_dir), self.stop_on
            )
        self._index = None
        self._hooks = None
        self._weights_after_record = None
        self._record_step = None
        self._nonfinite_seen = False

    def should_record(self, step):
        """True on the steps whose statistics `record` writes."""
        return self._run.is_due(step)

    def _ensure_index(self):
        if self._index is None:
            self._index = _ModelIndex(self.model)
            self._hooks = _Hooks(self._index, self._run.guard)
            self._hooks.install_activations()

    def record(
        self,
        step,
        loss,
        grads=None,
        *,
        variables=None,
        x=None,
        y=None,
        y_pred=None,
        learning_rate=None,
    ):
        """Records one training step (a no-op on most steps).

        Args:
          step: the global step, an int.
          loss: the step's loss (a scalar tensor or float).
          grads: the gradients, aligned with `variables` (default: the
            model's trainable variables); None entries count as missing.
          variables: the variables `grads` belong to.
          x, y, y_pred: the batch's inputs, labels and predictions (any nesting).
          learning_rate: the learning rate in use, if not the optimizer's.
        """
        step = _check_step(step)
        if not self.chief:
            return
        guard = self._run.guard
        guard.run("setup", self._ensure_index)
        if "setup" in guard.disabled:
            return
        if self._record_step is not None and step == self._record_step + 1:
            self._write_update_ratio(step)
        due = self.should_record(step)
        first_nonfinite = False
        if not self._nonfinite_seen:
            try:
                first_nonfinite = not math.isfinite(float(np.mean(np.asarray(loss))))
            except (TypeError, ValueError):
                first_nonfinite = False
        if not (due or first_nonfinite):
            return
        guard.run(
            "record", self._record, step, loss, grads, variables, x, y, y_pred, learning_rate, due
        )
        if first_nonfinite:
            self._nonfinite_seen = True
            self._run.note_nonfinite()
            if self._live is not None:
                self._live.urgent()

    def _record(self, step, loss, grads, variables, x, y, y_pred, learning_rate, due):
        index = self._index
        guard = self._run.guard
        loss_value = float(np.mean(np.asarray(_float32(loss))))
        xs = _flat_tensors(x)
        ys = _flat_tensors(y)
        gradients = missing = None
        if grads is not None:
            grads = list(grads)
            variables = list(self.model.trainable_variables if variables is None else variables)
            per_layer, missing = index.group_grads(grads, variables)
            gradients = guard.run(
                "gradients", lambda: np.stack([_gradient_stats(g).numpy() for g in per_layer])
            )
        activations = None
        if due and xs:
            activations = guard.run("activations", self._probe, x)
        outputs = None
        output_names = []
        if y_pred is not None:
            preds = _flat_tensors(y_pred)
            outputs = guard.run("outputs", lambda: [_output_stats(p).numpy() for p in preds])
            output_names = (
                list(y_pred.keys())
                if isinstance(y_pred, dict)
                else ["output_%d" % i for i in range(len(preds))]
            )
        step_nonfinite = (
            float(_nonfinite_count(xs)),
            float(_nonfinite_count(ys)),
            0.0 if math.isfinite(loss_value) else 1.0,
        )
        if learning_rate is None and self.optimizer is not None:
            learning_rate = guard.run(
                "learning_rate", _current_learning_rate, self.optimizer, step_taken=True
            )
        scalars = [(metadata.BATCH_LOSS, loss_value)]
        if learning_rate is not None:
            scalars.append((metadata.LEARNING_RATE, float(learning_rate)))
            if self._run.note_learning_rate(step, learning_rate) and self._live is not None:
                self._live.urgent()
        weights = guard.run("weights", _read_weights, index)
        vectors = _record_vectors(
            index,
            guard,
            weights=weights,
            gradients=gradients,
            missing=missing,
            activations=activations,
            outputs=outputs,
            output_names=output_names,
            step_nonfinite=step_nonfinite,
        )
        config = None
        if self._run.needs_config:
            config = guard.run("config", self._config, step, xs, ys, y_pred)
        self._run.write(step, scalars=scalars, vectors=vectors, config=config)
        if due:
            self._weights_after_record = weights
            self._record_step = step

    def _probe(self, x):
        hooks = self._hooks
        hooks.local.probe = probe = {}
        hooks.local.probe_failures = failures = {}
        try:
            self.model(x, training=False)
        finally:
            hooks.local.probe = None
            hooks.local.probe_failures = None
        for i in failures:
            probe.pop(i, None)
        hooks.skip_layers(failures, attempted=len(probe) + len(failures))
        return [probe.get(i) for i in range(len(self._index.activation_layers))]

    def _write_update_ratio(self, step):
        before = self._weights_after_record
        self._weights_after_record = None
        self._record_step = None
        if before is None:
            return
        after = self._run.guard.run("weights", _read_weights, self._index)
        if after is None:
            return
        ratio = self._run.guard.run("update_ratio", _update_ratio, self._index, before, after)
        if ratio is not None:
            self._run.write(
                step, vectors=[(metadata.UPDATE_RATIO, ratio, self._index.layer_labels, {})]
            )

    def _config(self, step, xs, ys, y_pred):
        model = self.model
        config = _static_config(model, self._index, self.every_n_steps, "Recorder")
        if self.loss is not None:
            config["loss"] = _describe_loss(self.loss)
        if self.optimizer is not None:
            config["optimizer"] = _describe_optimizer(self.optimizer)
        config["batch_size"] = int(xs[0].shape[0]) if xs and xs[0].shape else None
        config["first_step"] = step
        preds = _flat_tensors(y_pred) if y_pred is not None else []
        units = [int(p.shape[-1]) if len(p.shape) >= 2 else 1 for p in preds]
        if not units:
            units = _output_info(model)[1]
        input_info = []
        feature_stats = []
        for i, t in enumerate(xs):
            shape = tuple(t.shape)
            features = int(shape[-1]) if len(shape) >= 2 and shape[-1] <= _MAX_FEATURES else 1
            input_info.append(("input_%d" % i, features))
            feature_stats.append(_feature_stats(t, features).numpy())
        label_summaries, label_counts = [], []
        if len(ys) == len(units):
            for t, u in zip(ys, units):
                summary, counts = _label_stats(t, _class_slots(u), xs)
                label_summaries.append(summary.numpy())
                label_counts.append(counts.numpy())
        config["data"] = _data_summary(
            input_info,
            feature_stats,
            label_summaries,
            label_counts,
            [tf.convert_to_tensor(t).dtype.name for t in xs],
            [tf.convert_to_tensor(t).dtype.name for t in ys],
            [[int(d) for d in t.shape] for t in ys],
        )
        return config

    def record_epoch(self, step, logs):
        """Writes epoch-level values (e.g. ``{"loss": ..., "val_loss": ...}``) at `step`."""
        self._run.write_epoch(int(step), logs)

    def flush(self):
        self._run.flush()

    def close(self):
        """Gives the run its last live verdict, flushes, and removes the activation wraps."""
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
            self._index = None
        if self._live is not None:
            self._run.guard.run("live", self._live.close)
            self._live = None
        self._run.close()
