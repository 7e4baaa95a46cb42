"""The PyTorch front end: `watch(model, optimizer, loss_fn, log_dir=...)`.

Needs torch, never TensorFlow: events are written with TensorBoard's own
record writer (`summaries/writer.py`).
  * `stats`: reductions of tensors on their own device, numpy data summaries;
  * `describe`: the modules, loss and optimizer, for the configuration record;
  * `watch`: the hooks, and one record assembled from what they saw.
"""

from tb_plateau.summaries.torch.watch import Watch, watch

__all__ = ["Watch", "watch"]
