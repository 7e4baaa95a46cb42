"""`watch`: one line records a PyTorch training, from hooks alone."""

import logging
import math

import numpy as np
import torch
from torch import nn

from tb_plateau import metadata
from tb_plateau.live import LiveHandle, LiveVerdict, check_stop_on
from tb_plateau.summaries.guard import _check_every_n_steps, _check_log_dir
from tb_plateau.summaries.record import (
    DEFAULT_EVERY_N_STEPS,
    _data_summary,
    _package_version,
    _record_vectors,
)
from tb_plateau.summaries.torch import describe, stats
from tb_plateau.summaries.writer import _RunWriter

logger = logging.getLogger("tb_plateau")

# A loss spike: a step's loss this many times the running mean of the losses
# before it, and above any that mean has been (the starting loss, as a rule).
SPIKE_FACTOR = 3.0
SPIKE_MIN_STEPS = 4  # steps before spikes are looked for
LOSS_MEAN_DECAY = 0.9  # of the running mean of the step losses


def _rank():
    """This process's rank under torch.distributed, 0 without it."""
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


def _unwrap(model):
    """The module that DistributedDataParallel / DataParallel wrap, else the model."""
    parallel = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, parallel) else model


class Watch(LiveHandle):
    """The records of one PyTorch training; see `watch`."""

    def __init__(
        self,
        model,
        optimizer,
        loss_fn=None,
        log_dir="runs/plateau",
        every_n_steps=DEFAULT_EVERY_N_STEPS,
        stop_on=None,
        live=True,
        steps_per_epoch=None,
        epochs=None,
        recorder="watch",
        optimizer_hooks=True,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError("model must be a torch.nn.Module, got %r" % (type(model).__name__,))
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                "optimizer must be a torch.optim.Optimizer, got %r" % (type(optimizer).__name__,)
            )
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError("loss_fn must be callable, got %r" % (type(loss_fn).__name__,))
        self.every_n_steps = _check_every_n_steps(every_n_steps)
        self.stop_on = check_stop_on(stop_on)
        if stop_on is not None and not live:
            raise ValueError("stop_on needs live=True: the live verdict decides when to stop")
        self.model = _unwrap(model)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.rank = _rank()
        # Under torch.distributed only rank 0 writes: the gradients it sees at the
        # optimizer step are the synchronized ones, the same on every rank.
        self.writes = self.rank == 0
        self.log_dir = _check_log_dir(log_dir) if self.writes else log_dir
        self._extra_config = {
            "recorder": recorder,
            "steps_per_epoch": steps_per_epoch,
            "epochs": epochs,
        }
        self.step = 0  # optimizer steps taken since `watch`
        self._handles = []
        self._step_handles = []  # hooks that live for one recorded step
        self._recording = False  # the coming step is recorded (its hooks are armed)
        self._live = None
        self._run = None
        self._closed = False
        if not self.writes:
            return
        self._run = _RunWriter(self.log_dir, self.every_n_steps)
        self._run.densify(0)
        self._index = describe.ModelIndex(self.model)
        self._reset_step()
        self._loss_mean = None
        self._loss_ceiling = 0.0
        self._losses_seen = 0
        self._nonfinite_seen = False
        self._record_next = False
        self._config = None
        if live:
            self._live = self._guard.run(
                "live", LiveVerdict, self._run, str(self.log_dir), self.stop_on
            )
        if optimizer_hooks:
            self._handles.append(optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(optimizer.register_step_post_hook(self._post_step))
        # (Without them, a front end that runs the step itself, as Lightning does with a
        # closure inside `optimizer.step`, calls `_before_step` and `_after_step`.)
        if isinstance(loss_fn, nn.Module):
            self._handles.append(loss_fn.register_forward_hook(self._on_loss_module))
        # Every step keeps a reference to its batch (no copy): a record reads it, and so does
        # a loss turning NaN/Inf on a step between records, to say whether the data brought it.
        self._handles.append(model.register_forward_pre_hook(self._on_inputs, with_kwargs=True))
        self._arm(0)

    # ----- public

    def loss(self, *args, **kwargs):
        """Calls `loss_fn(*args, **kwargs)` and records it: the way in for a plain loss
        function (`F.cross_entropy`), which no hook can see. The first two positional
        arguments are the prediction and the target, as in `torch.nn.functional`."""
        if self.loss_fn is None:
            raise ValueError("watch(...) was given no loss_fn to call")
        value = self.loss_fn(*args, **kwargs)
        if self.writes and not isinstance(self.loss_fn, nn.Module):
            self._guard.run("loss", self._on_loss, args, value)
        return value

    def epoch_end(self, **logs):
        """Writes epoch-level numbers, e.g. `epoch_end(loss=train_loss, val_loss=val_loss)`:
        the diagnosis reads `loss` and `val_loss` as Keras' epoch logs."""
        if self.writes and not self._closed:
            values = {k: float(v) for k, v in logs.items() if v is not None}
            self._guard.run("epoch", self._run.write_epoch, self.step, values)

    def close(self):
        """Removes the hooks, gives the run its final verdict and flushes the file."""
        if self._closed:
            return
        self._closed = True
        self._disarm()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._live is not None:
            self._guard.run("live", self._live.close)
        if self._run is not None:
            self._run.close()

    # ----- hooks

    @property
    def _guard(self):
        return self._run.guard

    def _reset_step(self):
        self._inputs = None
        self._acts = {}
        # The step's first loss call: its prediction, target and (detached) value.
        self._prediction = None
        self._target = None
        self._loss = None
        self._weights_before = None
        self._grads = None

    def _arm(self, step):
        """Installs the hooks that collect a recorded step's statistics, if `step` is due."""
        self._reset_step()
        if not (self._run.is_due(step) or self._record_next):
            return
        self._record_next = False
        self._recording = True
        if "activations" not in self._guard.disabled:
            for i, watched in enumerate(self._index.activation_layers):
                self._step_handles.append(
                    watched.module.register_forward_hook(self._activation_hook(i))
                )

    def _disarm(self):
        for handle in self._step_handles:
            handle.remove()
        self._step_handles = []
        self._recording = False

    def _on_inputs(self, module, args, kwargs):
        if self._inputs is None and module.training:
            self._inputs = stats.tensors_in((args, kwargs))

    def _activation_hook(self, i):
        watched = self._index.activation_layers[i]

        def hook(module, args, output):
            if i in self._acts or not module.training:
                return
            if isinstance(output, tuple):  # an LSTM's (output, (h, c))
                output = output[0]
            if isinstance(output, torch.Tensor):
                self._acts[i] = self._guard.run(
                    "activations",
                    stats.activation_stats,
                    output,
                    watched.activation,
                    watched.unit_axis,
                )

        return hook

    def _on_loss_module(self, module, args, output):
        if self.model.training:  # not a validation loop's loss
            self._guard.run("loss", self._on_loss, args, output)

    def _on_loss(self, args, value):
        if self._closed or not isinstance(value, torch.Tensor) or value.numel() != 1:
            return
        if self._loss is None:
            self._loss = value.detach()
            prediction, target = (list(args[:2]) + [None, None])[:2]
            if isinstance(target, torch.Tensor):
                self._target = target.detach()  # a reference: read on a record or a NaN loss
            if not self._recording:
                return  # only a recorded step's predictions are read
            if isinstance(prediction, torch.Tensor):
                self._prediction = prediction.detach()

    def _pre_step(self, optimizer, args, kwargs):
        self._before_step()

    def _post_step(self, optimizer, args, kwargs):
        self._after_step()

    def _before_step(self):
        """The gradients are final and the weights not yet moved."""
        if self._recording:
            self._guard.run("gradients", self._read_gradients)
            self._weights_before = self._guard.run("update_ratio", self._weights)

    def _see_step(self, loss=None, inputs=None, target=None):
        """What a front end knows of the step that no hook saw: its loss, the batch."""
        if self._loss is None and isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._loss = loss.detach()
        if self._recording and not self._inputs and isinstance(inputs, torch.Tensor):
            self._inputs = [inputs]
        if self._recording and self._target is None and isinstance(target, torch.Tensor):
            self._target = target

    def _after_step(self):
        """The optimizer has stepped: record the step if it was due, arm the next."""
        if self._closed:
            return
        step = self.step
        self.step += 1
        recorded = self._recording
        self._disarm()
        if recorded:
            self._guard.run("record", self._record, step)
        self._guard.run("loss_watch", self._watch_loss, step, recorded)
        self._arm(self.step)

    # ----- per step

    @torch.no_grad()
    def _read_gradients(self):
        rows, missing = [], []
        for params in self._index.layer_params:
            grads = [p.grad for p in params if p.grad is not None]
            missing.append(float(len(params) - len(grads)))
            rows.append(stats.gradient_stats(grads).to(_device(params)))
        # One transfer per record, however many layers.
        self._grads = (_host(rows, 3), missing)

    @torch.no_grad()
    def _weights(self):
        return [[p.detach().clone() for p in params] for params in self._index.layer_params]

    @torch.no_grad()
    def _weight_stats(self):
        rows = [stats.weight_stats(params) for params in self._index.layer_params]
        values = _host(rows, 2)
        return values[:, 0], values[:, 1]

    @torch.no_grad()
    def _update_ratio(self, before):
        rows = [stats.update_stats(p, b) for p, b in zip(self._index.layer_params, before)]
        values = _host(rows, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(values[:, 0]) / np.sqrt(values[:, 1])

    def _learning_rate(self):
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr.item() if isinstance(lr, torch.Tensor) else lr)

    def _record(self, step):
        guard = self._guard
        scalars = []
        step_nonfinite = [0.0, 0.0, 0.0]
        outputs = None
        if self._loss is not None and "loss" not in guard.disabled:
            value = float(self._loss.float().cpu())
            scalars.append((metadata.BATCH_LOSS, value))
            step_nonfinite[2] = 0.0 if math.isfinite(value) else 1.0
        if self._target is not None:
            step_nonfinite[1] = float(stats.nonfinite_count([self._target]))
        if self._prediction is not None:
            outputs = guard.run("outputs", self._outputs, self._prediction)
        if self._inputs:
            step_nonfinite[0] = float(stats.nonfinite_count(self._inputs))
        lr = guard.run("learning_rate", self._learning_rate)
        if lr is not None:
            scalars.append((metadata.LEARNING_RATE, lr))
            if self._run.note_learning_rate(step, lr) and self._live is not None:
                self._live.urgent()
        weight_stats = guard.run("weights", self._weight_stats)
        update_ratio = None
        if self._weights_before is not None and "update_ratio" not in guard.disabled:
            update_ratio = guard.run("update_ratio", self._update_ratio, self._weights_before)
        gradients, missing = self._grads if self._grads is not None else (None, None)
        activations = None
        if self._acts and "activations" not in guard.disabled:
            activations = [
                self._acts[i].cpu().numpy() if self._acts.get(i) is not None else None
                for i in range(len(self._index.activation_layers))
            ]
        vectors = _record_vectors(
            self._index,
            guard,
            weight_stats=weight_stats,
            gradients=gradients,
            missing=missing,
            activations=activations,
            outputs=[outputs] if outputs is not None else None,
            output_names=["output"],
            update_ratio=update_ratio,
            step_nonfinite=step_nonfinite,
        )
        config = None
        if self._run.needs_config:
            config = guard.run("config", self._config_record, step)
        self._run.write(step, scalars=scalars, vectors=vectors, config=config)

    def _outputs(self, prediction):
        return stats.output_stats(prediction).cpu().numpy()

    def _watch_loss(self, step, recorded):
        """The first NaN/Inf loss: flushed at once and the next step recorded whole; a
        spike: the steps after it recorded densely."""
        if self._loss is None or self._nonfinite_seen:
            return
        loss = self._loss
        if not recorded and loss.device.type != "cpu":
            return  # reading a GPU loss every step would wait for the GPU every step
        value = float(loss.float())
        if not math.isfinite(value):
            self._on_nonfinite_loss(step, value, recorded)
        else:
            self._watch_spikes(step, value)

    def _on_nonfinite_loss(self, step, value, recorded):
        self._nonfinite_seen = True
        if not recorded:
            vectors = self._guard.run("numerics", self._batch_nonfinite)
            self._run.write(step, scalars=[(metadata.BATCH_LOSS, value)], vectors=vectors or ())
            self._record_next = True
        self._run.note_nonfinite()
        if self._live is not None:
            self._live.urgent()

    def _batch_nonfinite(self):
        """The NaN/Inf counts of a step between records whose loss broke: its inputs and
        labels (NaN for what that step did not measure: gradients, weights, activations)."""
        labels = [self._target] if self._target is not None else []
        counts = [
            float(stats.nonfinite_count(self._inputs or [])),
            float(stats.nonfinite_count(labels)),
        ]
        counts += [1.0] + [float("nan")] * (len(metadata.NUMERICS_SOURCES) - 3)
        return [(metadata.NONFINITE, counts, list(metadata.NUMERICS_SOURCES), {})]

    def _watch_spikes(self, step, value):
        self._losses_seen += 1
        mean = self._loss_mean
        if mean is not None and self._losses_seen > SPIKE_MIN_STEPS:
            spiked = value > max(SPIKE_FACTOR * max(mean, 0.0), self._loss_ceiling) > 0
            if spiked and not self._run.is_dense(step + 1):
                self._run.densify(step + 1)
                if self._live is not None:
                    self._live.urgent()
        decay = LOSS_MEAN_DECAY
        self._loss_mean = value if mean is None else decay * mean + (1 - decay) * value
        if self._losses_seen > SPIKE_MIN_STEPS or self._loss_ceiling == 0.0:
            self._loss_ceiling = max(self._loss_ceiling, self._loss_mean)

    # ----- the configuration record

    def _config_record(self, step):
        model = self.model
        index = self._index
        layers = describe.describe_modules(model)
        config = {
            "tb_plateau_version": _package_version(),
            "framework": "pytorch",
            "torch_version": torch.__version__,
            "every_n_steps": self.every_n_steps,
            "first_step": step,
            "model": {
                "name": type(model).__name__,
                "class": type(model).__name__,
                "params": int(sum(p.numel() for p in model.parameters())),
                "trainable_params": int(sum(index.layer_sizes)),
                "dtype_policy": str(next(iter(model.parameters()), torch.zeros(())).dtype),
                "output_names": ["output"],
                "output_units": [self._output_units(layers)],
            },
            "layers": layers,
            "trainable_layers": index.layer_labels,
            "activation_layers": [
                {"layer": w.label, "activation": w.activation} for w in index.activation_layers
            ],
            "loss": describe.describe_loss(self.loss_fn),
            "optimizer": describe.describe_optimizer(self.optimizer),
            "distribution": _distribution(),
        }
        config.update(self._extra_config)
        batch = self._batch_size()
        config["batch_size"] = batch
        loss = config["loss"]
        targets = self._target
        if loss is not None and loss.get("class") in ("CrossEntropyLoss", "cross_entropy"):
            # Class ids are Keras' sparse form; probabilities or one-hot rows the dense one.
            if targets is not None and not targets.is_floating_point():
                loss["name"] = "sparse_categorical_crossentropy"
        data = self._guard.run("data_summary", self._data_summary, layers)
        if data is not None:
            config["data"] = data
        return config

    def _output_units(self, layers):
        if self._prediction is not None:
            prediction = self._prediction
            if prediction.dim() >= 3:
                return int(prediction.shape[1])  # (batch, classes, ...) as CrossEntropyLoss
            return int(prediction.shape[-1]) if prediction.dim() >= 2 else 1
        for layer in reversed(layers):
            units = layer.get("units") or layer.get("filters")
            if isinstance(units, int):
                return units
        return None

    def _batch_size(self):
        for t in list(self._inputs or []) + [self._prediction, self._target]:
            if t is not None and t.dim() >= 1:
                return int(t.shape[0])
        return None

    @staticmethod
    def _channels_first(layers):
        for layer in layers:
            if layer.get("params"):
                return layer["class"] in describe.CHANNELS_FIRST_MODULES
        return False

    def _data_summary(self, layers):
        inputs = [t for t in (self._inputs or []) if t.dim() >= 1]
        channels_first = self._channels_first(layers)
        input_names = []
        features = []
        x_dtypes = []
        arrays = []
        for i, x in enumerate(inputs):
            array = stats.to_numpy(x)
            arrays.append(array)
            rows = stats.feature_stats(array, channels_first)
            input_names.append(("input_%d" % i if len(inputs) > 1 else "input", len(rows)))
            features.append(rows)
            x_dtypes.append(str(x.dtype).replace("torch.", ""))
        label_stats, class_counts, y_dtypes, y_shapes = [], [], [], []
        target = self._target
        if target is not None:
            prediction = self._prediction
            units = self._output_units(layers) or 1
            slots = 2 if units <= 1 else units
            class_axis = -1
            rank = prediction.dim() if prediction is not None else 0
            if rank >= 3 and target.dim() == rank:
                class_axis = 1  # (batch, classes, ...) probabilities, as the prediction
            summary, counts = stats.label_stats(
                stats.to_numpy(target), slots, inputs=arrays, class_axis=class_axis
            )
            label_stats.append(summary)
            class_counts.append(counts)
            y_dtypes.append(str(target.dtype).replace("torch.", ""))
            y_shapes.append([int(d) for d in target.shape])  # with the batch, as Keras
        return _data_summary(
            input_names, features, label_stats, class_counts, x_dtypes, y_dtypes, y_shapes
        )


def _device(params):
    return params[0].device if params else torch.device("cpu")


def _host(rows, width):
    """[layers, width] float64 numpy from per-layer rows, in one device-to-host transfer."""
    if not rows:
        return np.zeros((0, width))
    device = rows[0].device
    return torch.stack([r.to(device) for r in rows]).to("cpu", torch.float64).numpy()


def _distribution():
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return {"strategy": "torch.distributed", "replicas": int(dist.get_world_size())}
    return {"strategy": None, "replicas": 1}


def watch(
    model,
    optimizer,
    loss_fn=None,
    log_dir="runs/plateau",
    every_n_steps=DEFAULT_EVERY_N_STEPS,
    stop_on=None,
    live=True,
    steps_per_epoch=None,
    epochs=None,
):
    """Records a PyTorch training into `log_dir` for the Plateau tab; returns a `Watch`.

    ```python
    from tb_plateau.summaries.torch import watch

    handle = watch(model, optimizer, loss_fn, log_dir="runs/exp1")
    for x, y in loader:                 # the loop is unchanged
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    handle.close()                      # or: with watch(...) as handle:
    ```

    No call per step: hooks on the optimizer's step (gradient norms before it,
    update/weight ratios and the learning rate after it), on the loss module
    (the loss, the predictions and the targets) and, on recorded steps only, on
    the model (its inputs) and its activation modules give the records that
    `PlateauCallback` writes for Keras, at the same cadence: every step of the
    first few, then at doubling gaps up to every `every_n_steps`. A plain loss
    function (`F.cross_entropy`) is seen through `handle.loss(pred, y)`.
    Under torch.distributed only rank 0 writes (the other ranks' handles are inert).

    Args:
      model: the `torch.nn.Module` trained (a DistributedDataParallel's inner module
        is watched).
      optimizer: its `torch.optim.Optimizer`.
      loss_fn: the loss module (`nn.CrossEntropyLoss()`) or function, or None.
      log_dir: the run's directory.
      every_n_steps: optimizer steps between records, a positive integer.
      stop_on: None (never), "critical" or "warning": `handle.stop_requested` turns
        into the logged reason once such a root cause held for a few records.
      live: False to diagnose only after training.
      steps_per_epoch, epochs: the loop's shape, if it has one (the live verdict does
        not judge where the loss settles before two epochs of a longer training).
    """
    return Watch(
        model,
        optimizer,
        loss_fn,
        log_dir=log_dir,
        every_n_steps=every_n_steps,
        stop_on=stop_on,
        live=live,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
    )
