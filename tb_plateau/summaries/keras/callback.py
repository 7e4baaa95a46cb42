"""The Keras callback: `PlateauCallback` for `model.fit`."""

import logging
import math

import numpy as np
import tensorflow as tf

from tb_plateau import metadata
from tb_plateau.live import LiveVerdict, check_stop_on
from tb_plateau.summaries.guard import _check_every_n_steps, _check_log_dir
from tb_plateau.summaries.keras.describe import (
    _current_learning_rate,
    _input_info,
    _ModelIndex,
    _output_info,
    _regularization_loss,
)
from tb_plateau.summaries.keras.hooks import _Hooks, _is_finite_number, _StepVariables
from tb_plateau.summaries.keras.record import DEFAULT_EVERY_N_STEPS, _record_vectors, _static_config
from tb_plateau.summaries.keras.stats import _data_summary, _read_weights, _update_ratio
from tb_plateau.summaries.writer import _RunWriter

logger = logging.getLogger("tb_plateau")

# A loss spike: a batch's loss this many times the epoch's running mean before
# it, after this many batches of the epoch (the first are noisy), and above any
# running mean the run has had (its starting loss, as a rule): a low loss's
# batch-to-batch noise is many times its mean and is no spike.
SPIKE_FACTOR = 3.0
SPIKE_MIN_BATCHES = 4  # batches

# --------------------------------------------------------------------------
# The Keras callback


def _is_multi_worker(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is not None and getattr(resolver, "task_type", None) is not None


def _is_chief(strategy):
    """True unless this process is a worker, not the chief, of a multi-worker training
    (MultiWorkerMirroredStrategy): the chief is task "chief", or worker 0 of a cluster
    without one, as Keras' own callbacks decide."""
    if not _is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    try:
        has_chief = "chief" in resolver.cluster_spec().as_dict()
    except Exception:  # noqa: BLE001 - a resolver without a spec: worker 0 leads
        has_chief = False
    return task_type == "worker" and int(task_id or 0) == 0 and not has_chief


class PlateauCallback(tf.keras.callbacks.Callback):
    """Records what tb_plateau needs to say why a loss will not go down.

    ```python
    model.fit(x, y, epochs=10, callbacks=[PlateauCallback("logs/run1")])
    ```

    Every `every_n_steps` training steps, and at once at the first non-finite
    loss, it writes into `log_dir`: the batch's own loss, the learning rate in
    use, per trainable layer the gradient norm, weight norm, one-step
    update/weight ratio and counts of zero, missing and NaN/Inf gradients, per
    activation layer the output's mean/std and dead (ReLU family) or saturated
    (sigmoid/tanh/softmax) fraction over the batch, the output's range and row
    sums, and NaN/Inf counts by source. At each epoch end, the epoch's logs
    (validation included). Once per run, a configuration record: the
    architecture, loss, optimizer, batch size and statistics of the first
    recorded batch's inputs and labels.

    The first steps are recorded densely (every step, then at doubling gaps
    up to `every_n_steps`), and again after a loss spike or a change of
    learning rate. While the model trains, the diagnosis runs on what was
    recorded, off the training thread (`tb_plateau.live`): when a warning or
    critical root cause first appears or changes, one line is logged through
    the `tb_plateau` logger and a verdict record is written into the run.

    Args:
      log_dir: the run's directory (one TensorBoard run).
      every_n_steps: training steps between records, a positive integer.
      stop_on: None (the default: never stop), "critical" or "warning": stop
        the training (`model.stop_training`) once a root cause of at least
        that severity has held for a few records; the reason is logged and
        the run stays diagnosable.
      live: False to diagnose only after training (no verdicts while it runs).
    """

    def __init__(self, log_dir, every_n_steps=DEFAULT_EVERY_N_STEPS, stop_on=None, live=True):
        super().__init__()
        self.every_n_steps = _check_every_n_steps(every_n_steps)
        self.log_dir = _check_log_dir(log_dir)
        self.stop_on = check_stop_on(stop_on)
        if stop_on is not None and not live:
            raise ValueError("stop_on needs live=True: the live verdict decides when to stop")
        self.live = bool(live)
        self._live = None
        self.stopped_because = None  # the logged reason, when stop_on stopped the training
        self._epoch_mean = None  # (batch index, running mean of the loss) of the last batch
        self._loss_ceiling = 0.0  # the highest running mean of the loss so far
        self._run = None
        self._hooks = None
        self._vars = None
        self._index = None
        self._step = 0
        self._weights_before = None
        self._nonfinite_seen = False
        self._last_recorded_step = None
        self._record_next = False
        self._config = None
        self._output_names = []
        self._has_regularizers = False
        self._input_info = []

    # Keras' async dispatch would run on_train_batch_end off the training thread.
    async_safe = False

    def _guard(self):
        return self._run.guard

    def on_train_begin(self, logs=None):
        if self._run is None:
            chief = _is_chief(self.model.distribute_strategy)
            self._run = _RunWriter(self.log_dir, self.every_n_steps, silent=not chief)
            if self.stop_on is not None and _is_multi_worker(self.model.distribute_strategy):
                # One worker stopping alone would leave the others waiting in their
                # collectives: under a multi-worker strategy the verdict only speaks.
                logger.warning(
                    "tb_plateau: stop_on is ignored under a multi-worker strategy;"
                    " the live verdict still logs on the chief"
                )
                self.stop_on = None
        self._sync_step()
        self._run.densify(self._step)  # a resumed training starts densely too
        if self.live and self._live is None and not self._run.silent:
            self._live = self._guard().run(
                "live", LiveVerdict, self._run, str(self.log_dir), self.stop_on
            )
        if self.model.built and self.model.trainable_variables:
            self._try_setup()
        else:
            # A subclassed model creates its variables in its first step:
            # until then there is nothing to watch.
            self._wrap_first_step(self.model)

    def _sync_step(self):
        try:
            self._step = int(self.model.optimizer.iterations.numpy())
        except Exception:
            self._step = 0

    def _try_setup(self):
        self._run.guard.run("setup", self._setup)
        if "setup" in self._run.guard.disabled:
            self._guard().run("teardown", self._teardown, True)

    def _setup(self):
        model = self.model
        self._index = _ModelIndex(model)
        self._has_regularizers = any(
            getattr(v, "regularizer", None) is not None for v in model.trainable_weights
        )
        self._output_names, output_units = _output_info(model)
        self._input_info = _input_info(model)
        strategy = model.distribute_strategy
        self._vars = _StepVariables(self._index, strategy, self._input_info, output_units)
        self._hooks = _Hooks(self._index, self._run.guard)
        self._hooks.vars = self._vars
        self._hooks.install_activations()
        if not model.optimizer.built:
            # Its state (a LossScaleOptimizer's scale) must exist before the
            # step is traced; fit would build it on the first step anyway.
            model.optimizer.build(model.trainable_variables)
        plain = model.train_function or model.make_train_function() or model.train_function
        self._hooks.install_train_step(model)
        self._config = _static_config(model, self._index, self.every_n_steps, "PlateauCallback")
        self._config["steps_per_epoch"] = (self.params or {}).get("steps")
        self._config["epochs"] = (self.params or {}).get("epochs")
        model.make_train_function(force=True)
        recording = model.train_function
        self._wrap_train_function(model, plain, recording)

    # Two train functions: Keras' own for the steps that are not recorded (they
    # pay nothing), and one traced through the wraps, which stores the step's
    # statistics, for the recorded steps. The choice is made in a wrap of
    # `model.train_function`, not in on_train_batch_begin: a batch hook makes
    # Keras convert every step's logs synchronously.

    def _wrap_first_step(self, model):
        train_function = model.train_function

        def first_step(*args, **kwargs):
            logs = train_function(*args, **kwargs)
            model.train_function = train_function
            self._sync_step()
            if model.trainable_variables:
                self._try_setup()
            return logs

        model.train_function = first_step

    def _wrap_train_function(self, model, plain, recording):
        steps_per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

        def train_function(*args, **kwargs):
            step = self._step
            record = self._before_step(step)
            try:
                logs = (recording if record else plain)(*args, **kwargs)
            except BaseException:
                # The run crashed or was interrupted: keep what was recorded.
                self._run.flush()
                raise
            self._step += steps_per_call
            if record:
                self._last_recorded_step = step + steps_per_call - 1
                self._guard().run("record", self._record, self._last_recorded_step, True)
            return logs

        model.train_function = train_function

    def _teardown(self, during_fit=False):
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
        self._vars = None
        if during_fit:
            # Setup failed half-way: give fit a clean train function to go on with.
            self.model.make_train_function(force=True)
        else:
            # The traced functions hold the wraps: let the next fit trace anew.
            self.model.train_function = None

    def _before_step(self, step):
        due = self._run.is_due(step)
        if not (due or self._record_next):
            return False
        self._record_next = False
        self._weights_before = self._guard().run("update_ratio", _read_weights, self._index)
        return True

    def on_train_batch_end(self, batch, logs=None):
        # Keras hands callbacks the logs already converted to floats: reading
        # the loss here costs nothing, in the wrap it would cost a sync.
        if self._vars is None:
            return
        loss = (logs or {}).get("loss")
        if self._nonfinite_seen:
            pass
        elif not _is_finite_number(loss):
            # Keras' loss is the epoch's running mean: this is the step the
            # first NaN/Inf loss appeared in. Mark it with what the host can
            # see (the weights it left), flush, and record the next step whole.
            self._nonfinite_seen = True
            step = self._step - 1
            if step != self._last_recorded_step:
                self._guard().run("nonfinite", self._record_nonfinite_step, step)
                self._record_next = True
            self._run.note_nonfinite()
            if self._live is not None:
                self._live.urgent()
        elif loss is not None:
            self._guard().run("spikes", self._watch_loss, batch, float(loss))
        if self._live is not None and self._live.stop_reason and self.stopped_because is None:
            self.stopped_because = self._live.stop_reason
            self.model.stop_training = True

    def _record_nonfinite_step(self, step):
        weights = self._guard().run("weights", _read_weights, self._index)
        vectors = _record_vectors(self._index, self._guard(), weights=weights)
        unknown = float("nan")
        nonfinite = [unknown, unknown, 1.0, unknown, unknown, unknown]
        for name, values, *_ in vectors:
            if name == metadata.WEIGHT_NONFINITE:
                nonfinite[4] = float(np.sum(values))
        vectors = [v for v in vectors if v[0] != metadata.NONFINITE]
        vectors.append((metadata.NONFINITE, nonfinite, list(metadata.NUMERICS_SOURCES), {}))
        self._run.write(step, scalars=[(metadata.BATCH_LOSS, float("nan"))], vectors=vectors)

    def _record(self, step, scheduled):
        guard = self._guard()
        values = self._vars.read()
        # What the recording step did not store (a custom train_step that
        # skips compute_loss, a statistic switched off) is not written.
        stored = self._hooks.stored if self._hooks else set()
        step_stats = values["step"]
        loss_seen = "loss" in stored and "loss" not in guard.disabled
        gradients = values["gradients"]
        if "gradients" not in stored or "gradients" in guard.disabled:
            gradients = None
        activations = None
        if "activations" in stored and "activations" not in guard.disabled:
            activations = values["activations"]
        scalars = [(metadata.BATCH_LOSS, step_stats[0])] if loss_seen else []
        lr = guard.run(
            "learning_rate", _current_learning_rate, self.model.optimizer, step_taken=True
        )
        if lr is not None:
            scalars.append((metadata.LEARNING_RATE, lr))
            if self._run.note_learning_rate(step, lr) and self._live is not None:
                self._live.urgent()
        if self._has_regularizers:
            penalty = guard.run("regularization_loss", _regularization_loss, self.model)
            if penalty is not None:
                scalars.append((metadata.REGULARIZATION_LOSS, penalty))
        weights = guard.run("weights", _read_weights, self._index)
        update_ratio = None
        if scheduled and self._weights_before is not None and weights is not None:
            update_ratio = guard.run(
                "update_ratio", _update_ratio, self._index, self._weights_before, weights
            )
        self._weights_before = None
        vectors = _record_vectors(
            self._index,
            guard,
            weights=weights,
            gradients=gradients,
            missing=self._hooks.missing if self._hooks else None,
            activations=activations,
            outputs=values["outputs"] if "outputs" in stored else None,
            output_names=self._output_names,
            update_ratio=update_ratio,
            step_nonfinite=step_stats[1:4] if loss_seen else (0.0, 0.0, 0.0),
        )
        config = None
        if self._run.needs_config:
            config = dict(self._config)
            batch = float(step_stats[4])
            config["batch_size"] = int(round(batch)) if math.isfinite(batch) else None
            if "data" in stored:
                config["data"] = self._guard().run("data_summary", self._data_summary)
            config["first_step"] = step
        self._run.write(step, scalars=scalars, vectors=vectors, config=config)

    def _data_summary(self):
        shapes = self._vars.shapes
        return _data_summary(
            self._input_info,
            [v.numpy() for v in self._vars.features],
            list(self._vars.label_summaries.numpy()),
            [v.numpy() for v in self._vars.label_counts],
            shapes.get("x_dtypes", []),
            shapes.get("y_dtypes", []),
            shapes.get("y_shapes", []),
        )

    def _watch_loss(self, batch, loss):
        """Records densely again after a loss spike."""
        previous, self._epoch_mean = self._epoch_mean, (batch, loss)
        if previous is not None and batch == previous[0] + 1 and batch >= SPIKE_MIN_BATCHES:
            # Keras logs the epoch's running mean: the batch's own loss from two of them.
            batch_loss = (batch + 1) * loss - batch * previous[1]
            ceiling = self._loss_ceiling
            if batch_loss > max(SPIKE_FACTOR * max(previous[1], 0.0), ceiling) > 0:
                if not self._run.is_dense(self._step):
                    self._densify(self._step)
        if batch >= SPIKE_MIN_BATCHES or self._loss_ceiling == 0.0:
            self._loss_ceiling = max(self._loss_ceiling, loss)

    def _densify(self, step):
        """Records densely from `step`, and has the live verdict look at once."""
        self._run.densify(step)
        if self._live is not None:
            self._live.urgent()

    def on_epoch_end(self, epoch, logs=None):
        if self._run is None:
            return
        self._sync_step()  # the last call of an epoch may run fewer steps
        self._run.write_epoch(self._step, logs)

    def on_train_end(self, logs=None):
        if self._run is None:
            return
        self._guard().run("teardown", self._teardown)
        if self._live is not None:
            # The whole run's verdict, logged and recorded before the file closes.
            self._guard().run("live", self._live.close)
            self._live = None
        # Close the file (a later fit with this callback opens a new one).
        self._run.close()
