"""Hooks into the Keras model and optimizer: every patch of `train_step`, `compute_loss`,
`optimizer.apply` and `layer.call`, in one place, and the variables they fill."""

import functools
import logging
import math
import threading

import tensorflow as tf

from tb_plateau.summaries.guard import _brief
from tb_plateau.summaries.keras.stats import (
    _ACT_FIELDS,
    _FEATURE_FIELDS,
    _LABEL_VECTOR,
    _MAX_CLASSES,
    _OUTPUT_FIELDS,
    _STEP_FIELDS,
    _activation_stats,
    _feature_stats,
    _flat_tensors,
    _float32,
    _gradient_stats,
    _label_stats,
    _nonfinite_count,
    _output_stats,
    _unit_axis,
)

logger = logging.getLogger("tb_plateau")

# --------------------------------------------------------------------------
# Hooks into the model and optimizer


class _Hooks:
    """Wraps, on one model instance, the calls whose tensors the statistics need.

    Two modes. In-step (PlateauCallback): while the recording train function
    is traced, the forward pass and compute_loss note their tensors and the
    optimizer's `apply` reduces them, with the gradients, to a few numbers
    that it stores in variables. Probe (Recorder): during an eager forward
    pass the activation wraps put their statistics in a dict. Anywhere else
    (the plain train function, evaluation, prediction) the wraps add nothing
    to the graph.
    """

    def __init__(self, index, guard):
        self.index = index
        self.guard = guard
        self.local = threading.local()
        self._restore = []
        self.vars = None  # _StepVariables, in-step mode only
        self.missing = [0.0] * len(index.layer_labels)
        self.loss_scaled = False
        self.stored = set()  # what the recording step stores, known once traced
        self.skipped = set()  # activation layers whose statistics failed
        self._skip_lock = threading.Lock()

    # -- installing

    def _patch(self, obj, name, wrapper):
        had_own = name in obj.__dict__
        previous = obj.__dict__.get(name)
        object.__setattr__(obj, name, wrapper)
        self._restore.append((obj, name, had_own, previous))

    def uninstall(self):
        for obj, name, had_own, previous in reversed(self._restore):
            if had_own:
                object.__setattr__(obj, name, previous)
            else:
                try:
                    object.__delattr__(obj, name)
                except AttributeError:
                    pass
        self._restore = []

    def install_activations(self):
        for i, watched in enumerate(self.index.activation_layers):
            original = watched.layer.call

            def call(*args, _original=original, _i=i, **kwargs):
                output = _original(*args, **kwargs)
                self._on_activation(_i, output)
                return output

            functools.update_wrapper(call, original)
            self._patch(watched.layer, "call", call)

    def install_train_step(self, model):
        original_train_step = model.train_step
        original_compute_loss = model.compute_loss

        def train_step(*args, **kwargs):
            # Thread-local: MirroredStrategy traces each replica in a thread.
            self.local.in_train = True
            self.local.activations = {}
            self.local.loss = None
            try:
                return original_train_step(*args, **kwargs)
            finally:
                self.local.in_train = False
                self.local.activations = {}
                self.local.loss = None

        def compute_loss(*args, **kwargs):
            loss = original_compute_loss(*args, **kwargs)
            if getattr(self.local, "in_train", False) and kwargs.get("training", True):
                bound = dict(zip(("x", "y", "y_pred", "sample_weight"), args))
                bound.update(kwargs)
                self.local.loss = (
                    loss,
                    _flat_tensors(bound.get("x")),
                    _flat_tensors(bound.get("y")),
                    _flat_tensors(bound.get("y_pred")),
                )
            return loss

        functools.update_wrapper(train_step, original_train_step)
        functools.update_wrapper(compute_loss, original_compute_loss)
        self._patch(model, "train_step", train_step)
        self._patch(model, "compute_loss", compute_loss)

        optimizer = model.optimizer
        # A LossScaleOptimizer's apply gets scaled gradients, on every step
        # (its inner optimizer's only on the steps it does not skip).
        self.loss_scaled = hasattr(optimizer, "inner_optimizer")
        original_apply = optimizer.apply

        def apply(grads, trainable_variables=None):
            variables = trainable_variables
            if variables is None:
                variables = getattr(optimizer, "_trainable_variables", None) or []
            self.guard.run("gradients", self._on_step, optimizer, list(grads), list(variables))
            return original_apply(grads, trainable_variables)

        functools.update_wrapper(apply, original_apply)
        self._patch(optimizer, "apply", apply)

    # -- the statistics

    def _on_activation(self, i, output):
        if "activations" in self.guard.disabled or i in self.skipped:
            return
        tensor = output[0] if isinstance(output, (list, tuple)) and output else output
        if not tf.is_tensor(tensor) or not tensor.dtype.is_floating:
            return
        probe = getattr(self.local, "probe", None)
        if probe is not None:
            try:
                probe[i] = self._layer_stats(i, tensor).numpy()
            except Exception as e:  # costs this layer only: see skip_layers
                self.local.probe_failures[i] = e
            return
        if getattr(self.local, "in_train", False) and self.vars is not None:
            self.local.activations[i] = tensor

    def _layer_stats(self, i, tensor):
        watched = self.index.activation_layers[i]
        axis = _unit_axis(watched.source, tensor.shape.rank or 0)
        return _activation_stats(tensor, watched.activation, axis)

    def skip_layers(self, failures, attempted):
        """Stops, for the rest of the run, the layers whose statistics failed.

        failures: {layer index: exception} of one pass over `attempted` layers.
        When every layer failed, the statistic itself is broken: the first
        error is raised for the guard to stop it whole, with one warning.
        """
        with self._skip_lock:  # MirroredStrategy traces replicas in threads
            failures = {i: e for i, e in failures.items() if i not in self.skipped}
            if not failures:
                return
            if len(failures) == attempted:
                raise next(iter(failures.values()))
            self.skipped.update(failures)
        labels = self.index.activation_labels
        logger.warning(
            "tb_plateau: activation statistics of %s cannot be recorded; %s for this run"
            " (training and the other layers' statistics go on): %s",
            "layer" if len(failures) == 1 else "%d layers" % len(failures),
            "it stops" if len(failures) == 1 else "they stop",
            "; ".join("%r: %s" % (labels[i], _brief(e)) for i, e in sorted(failures.items())),
        )

    def _on_step(self, optimizer, grads, variables):
        """Stores the step's statistics (traced into the recording function only)."""
        if self.vars is None or not getattr(self.local, "in_train", False):
            return
        per_layer, missing = self.index.group_grads(grads, variables)
        self.missing = missing
        replicas = float(self.vars.replicas)
        activations = dict(getattr(self.local, "activations", {}))
        loss_info = getattr(self.local, "loss", None)
        for name, present, store, args in (
            ("activations", activations, self._store_activations, (activations,)),
            ("gradients", per_layer, self._store_gradients, (optimizer, per_layer, replicas)),
            ("loss", loss_info is not None, self._store_loss, (loss_info, replicas)),
            ("outputs", loss_info is not None, self._store_outputs, (loss_info,)),
            ("data", loss_info is not None, self._store_data, (loss_info, replicas)),
        ):
            if present and name not in self.guard.disabled:
                self.guard.run(name, store, *args)
                if name not in self.guard.disabled:
                    self.stored.add(name)

    def _store_activations(self, activations):
        nan_row = tf.fill([len(_ACT_FIELDS)], float("nan"))
        rows = []
        attempted = 0
        failures = {}
        for i in range(len(self.index.activation_layers)):
            row = nan_row  # a layer this step did not call, or one that failed
            if i in activations and i not in self.skipped:
                attempted += 1
                try:
                    row = self._layer_stats(i, tf.stop_gradient(activations[i]))
                except Exception as e:  # e.g. a tensor out of this graph's reach
                    failures[i] = e
            rows.append(row)
        self.skip_layers(failures, attempted)
        self.vars.activations.assign(tf.stack(rows) * self.vars.replica_weights_act)

    def _store_gradients(self, optimizer, per_layer, replicas):
        if self.loss_scaled:
            scale = tf.cast(tf.convert_to_tensor(optimizer.dynamic_scale), tf.float32)
            per_layer = [[_float32(g) / scale for g in grads] for grads in per_layer]
        stats = tf.stack([_gradient_stats(g) for g in per_layer])
        # Norms and NaN counts add up over replicas (each holds its share of
        # the batch); zero counts are averaged.
        self.vars.gradients.assign(stats * tf.constant([replicas, 1.0, replicas]))

    def _store_loss(self, loss_info, replicas):
        loss, xs, ys, _ = loss_info
        loss_value = _float32(loss)
        if loss_value.shape.rank != 0:
            loss_value = tf.reduce_mean(loss_value)
        batch = tf.cast(tf.shape(xs[0])[0], tf.float32) if xs else tf.constant(0.0)
        step_stats = tf.stack(
            [
                loss_value,
                _nonfinite_count(xs),
                _nonfinite_count(ys),
                _nonfinite_count([loss_value]),
                batch,
            ]
        )
        self.vars.step.assign(step_stats * replicas)

    def _store_outputs(self, loss_info):
        preds = loss_info[3]
        if len(preds) != self.vars.outputs.shape[0]:
            raise ValueError(
                "%d model outputs, %d expected" % (len(preds), self.vars.outputs.shape[0])
            )
        self.vars.outputs.assign(tf.stack([_output_stats(tf.stop_gradient(p)) for p in preds]))

    def _store_data(self, loss_info, replicas):
        """Statistics of the batch's inputs and labels, for the configuration record."""
        _, xs, ys, _ = loss_info
        if len(xs) == len(self.vars.features):
            for feature_var, tensor in zip(self.vars.features, xs):
                feature_var.assign(_feature_stats(tensor, feature_var.shape[0]))
        if len(ys) == len(self.vars.label_counts):
            summaries = []
            for counts_var, tensor in zip(self.vars.label_counts, ys):
                summary, counts = _label_stats(tensor, counts_var.shape[0], xs)
                summaries.append(summary)
                counts_var.assign(counts * replicas)
            self.vars.label_summaries.assign(tf.stack(summaries))
        self.vars.shapes = {
            "x_dtypes": [t.dtype.name for t in xs],
            "y_dtypes": [t.dtype.name for t in ys],
            "y_shapes": [[None if d is None else int(d) for d in t.shape] for t in ys],
        }


def _is_finite_number(value):
    """False only for a NaN or infinite number (None and non-numbers pass)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class _StepVariables:
    """Where the traced step leaves its statistics for the callback to read.

    Created under the model's distribution strategy as on-read variables: each
    replica writes its own copy without synchronization, and reading from the
    host averages them (the values that add up over replicas are stored
    multiplied by the replica count). Few variables, since each one is a
    capture that every call of the train function passes.
    """

    def __init__(self, index, strategy, input_info, output_units):
        self.replicas = strategy.num_replicas_in_sync
        self.replica_weights_act = tf.constant([1.0, 1.0, 1.0, 1.0, float(self.replicas)])
        self.shapes = {}
        outputs = max(len(output_units), 1)

        def on_read(shape, name):
            return tf.Variable(
                tf.zeros(shape),
                trainable=False,
                name="tb_plateau_" + name,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.MEAN,
            )

        with strategy.scope():
            self.step = on_read([len(_STEP_FIELDS)], "step")
            self.gradients = on_read([max(len(index.layer_labels), 1), 3], "gradients")
            self.activations = on_read(
                [max(len(index.activation_layers), 1), len(_ACT_FIELDS)], "activations"
            )
            self.outputs = on_read([outputs, len(_OUTPUT_FIELDS)], "outputs")
            self.features = [
                on_read([features, len(_FEATURE_FIELDS)], "features_%d" % i)
                for i, (_, features) in enumerate(input_info)
            ]
            self.label_summaries = on_read([outputs, _LABEL_VECTOR], "labels")
            self.label_counts = [
                on_read([_class_slots(units)], "classes_%d" % i)
                for i, units in enumerate(output_units)
            ]

    def read(self):
        activations = self.activations.numpy()
        return {
            "step": self.step.numpy(),
            "gradients": self.gradients.numpy(),
            "activations": list(activations),
            "outputs": list(self.outputs.numpy()),
        }


def _class_slots(units):
    if not units or units <= 1:
        return 2  # one unit: binary labels, counted below / at-or-above 0.5
    return min(int(units), _MAX_CLASSES)
