"""PyTorch Lightning: `PlateauCallback` for `Trainer(callbacks=[...])`.

```python
from tb_plateau.summaries.lightning import PlateauCallback

trainer = lightning.Trainer(max_epochs=10, callbacks=[PlateauCallback()])
```

Records what `tb_plateau.summaries.torch.watch` records, into the Trainer's log
directory (its TensorBoard logger's `version_N` folder) unless given another.
Lightning runs the forward and backward pass inside `optimizer.step` (a closure),
so the gradients are read at `on_before_optimizer_step` and the step is recorded
at `on_train_batch_end`, where the loss that `training_step` returned is known.
The loss's kind (cross-entropy, MSE, ...) is read from a loss module the
LightningModule holds as an attribute (`self.loss_fn = nn.CrossEntropyLoss()`),
or from `loss_fn=`; with a functional loss the checks that need it are skipped.
"""

from torch import nn

from tb_plateau.live import check_stop_on
from tb_plateau.summaries.guard import _check_every_n_steps
from tb_plateau.summaries.record import DEFAULT_EVERY_N_STEPS
from tb_plateau.summaries.torch.watch import Watch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    from pytorch_lightning.callbacks import Callback

# Names under which a LightningModule commonly logs its epoch losses.
_TRAIN_LOSS_KEYS = ("train_loss_epoch", "train_loss", "loss", "train/loss")
_VAL_LOSS_KEYS = ("val_loss", "val/loss", "validation_loss", "valid_loss")


def _loss_module(pl_module):
    """The first loss module the LightningModule holds as an attribute, or None."""
    for module in pl_module.modules():
        if isinstance(module, nn.modules.loss._Loss):
            return module
    return None


def _batch_tensors(batch):
    """(inputs, targets) of an `(x, y, ...)` batch, else (None, None)."""
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        return batch.get("x", batch.get("input")), batch.get("y", batch.get("target"))
    return None, None


def _first_metric(metrics, keys):
    for key in keys:
        value = metrics.get(key)
        if value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
    return None


class PlateauCallback(Callback):
    """Records a Lightning training for the Plateau tab (see the module docstring).

    Args:
      log_dir: the run's directory; default the Trainer's `log_dir`.
      every_n_steps: optimizer steps between records, a positive integer.
      stop_on: None (never), "critical" or "warning": sets `trainer.should_stop`
        once such a root cause held for a few records (`stopped_because` says why).
      live: False to diagnose only after training.
      loss_fn: the loss module or function, when the LightningModule holds none.
    """

    def __init__(
        self,
        log_dir=None,
        every_n_steps=DEFAULT_EVERY_N_STEPS,
        stop_on=None,
        live=True,
        loss_fn=None,
    ):
        super().__init__()
        self.log_dir = log_dir
        self.every_n_steps = _check_every_n_steps(every_n_steps)
        self.stop_on = check_stop_on(stop_on)
        if stop_on is not None and not live:
            raise ValueError("stop_on needs live=True: the live verdict decides when to stop")
        self.live = bool(live)
        self.loss_fn = loss_fn
        self.stopped_because = None
        self.watch = None
        self._stepped = False
        self._loss_sum = None
        self._loss_count = 0

    def on_fit_start(self, trainer, pl_module):
        if not trainer.optimizers:
            return
        log_dir = self.log_dir or trainer.log_dir or trainer.default_root_dir
        batches = trainer.num_training_batches
        self.watch = Watch(
            pl_module,
            trainer.optimizers[0],
            self.loss_fn if self.loss_fn is not None else _loss_module(pl_module),
            log_dir=log_dir,
            every_n_steps=self.every_n_steps,
            stop_on=self.stop_on,
            live=self.live,
            steps_per_epoch=int(batches) if batches not in (None, float("inf")) else None,
            epochs=trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None,
            recorder="lightning",
            optimizer_hooks=False,
        )

    def on_train_epoch_start(self, trainer, pl_module):
        self._loss_sum, self._loss_count = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._stepped = False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.watch is not None and self.watch.writes:
            self.watch._before_step()
            self._stepped = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        watch = self.watch
        if watch is None or not watch.writes:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and hasattr(loss, "detach") and loss.numel() == 1:
            loss = loss.detach()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
        inputs, targets = _batch_tensors(batch)
        watch._guard.run("batch", watch._see_step, loss, inputs, targets)
        if self._stepped:
            watch._after_step()
        if watch.stop_requested and self.stopped_because is None:
            self.stopped_because = watch.stop_requested
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module):
        if self.watch is None or not self.watch.writes:
            return
        metrics = dict(trainer.callback_metrics)
        loss = _first_metric(metrics, _TRAIN_LOSS_KEYS)
        if loss is None and self._loss_count:
            loss = float(self._loss_sum) / self._loss_count
        self.watch.epoch_end(loss=loss, val_loss=_first_metric(metrics, _VAL_LOSS_KEYS))

    def on_fit_end(self, trainer, pl_module):
        self._close()

    def on_exception(self, trainer, pl_module, exception):
        self._close()

    def _close(self):
        if self.watch is not None:
            self.watch.close()
