"""What recording a PyTorch training costs: run and step time with and without it.

For a small MLP and a small CNN (CPU, float32), alternates in one process,
round after round, plain PyTorch loops of --steps optimizer steps each:
  * no recording (the baseline),
  * tb_plateau's `watch(model, optimizer, loss_fn, log_dir=...)` at its defaults
    (dense first records, live verdicts) and with live=False,
  * cockpit-for-pytorch's "economy" configuration (BackPACK individual
    gradients and nine quantities, tracked at every step),
  * `wandb.watch(model, loss_fn, log="all", log_freq=100)` in offline mode.
The order rotates each round so that no configuration always runs first, after
one short untimed baseline run per model (one-time kernel and allocator setup). Each
run is timed with time.perf_counter from the first step's start to the end of
its last `optimizer.step()`; setting the recorder up (watch, Cockpit,
wandb.init) and closing it (handle.close, run.finish) are not timed. Prints the
median run time, the median over rounds of the overhead against the baseline of
the same round, and the median step time. A configuration whose package is
missing or that fails is skipped with a one-line reason.

    python benchmarks/torch_overhead.py [--rounds 5] [--steps 1000] [--task mlp|cnn|both]
        [--only none,watch,watch-nolive,cockpit,wandb]
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from torch import nn

from tb_plateau.summaries.torch import watch

WANDB_LOG_FREQ = 100


class Task:
    def __init__(self, name, build, x, y, batch):
        self.name, self.build, self.batch = name, build, batch
        self.batches = [
            (x[i : i + batch], y[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)
        ]


def mlp_task(gen):
    x = torch.randn(8192, 32, generator=gen)
    y = (x[:, :4].sum(1) > 0).long()

    def build():
        return nn.Sequential(
            nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2)
        )

    return Task("MLP 32-128-128-2", build, x, y, 32)


def cnn_task(gen):
    x = torch.randn(2048, 3, 16, 16, generator=gen)
    y = (x[:, 0, :8, :].mean(dim=(1, 2)) > 0).long()

    def build():
        return nn.Sequential(
            nn.Conv2d(3, 16, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 2),
        )

    return Task("CNN conv16-conv32-linear", build, x, y, 32)


def setup(task, extend=None):
    """A fresh seeded model, its Adam optimizer and loss (both through `extend` if given)."""
    torch.manual_seed(0)
    model = task.build()
    loss_fn = nn.CrossEntropyLoss()
    if extend is not None:
        model, loss_fn = extend(model), extend(nn.CrossEntropyLoss(reduction="mean"))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), loss_fn


def train(task, model, optimizer, loss_fn, steps, backward=None, after_step=None):
    """(seconds from the first step's start to the end of the last, [seconds of each step])."""
    ends = [time.perf_counter()]
    for step in range(steps):
        x, y = task.batches[step % len(task.batches)]
        optimizer.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        if backward is None:
            loss.backward()
        else:
            backward(step, x, y, out, loss)
        optimizer.step()
        if after_step is not None:
            after_step(step, loss)
        ends.append(time.perf_counter())
    return ends[-1] - ends[0], [b - a for a, b in zip(ends, ends[1:])]


def run_none(task, steps, workdir):
    return train(task, *setup(task), steps)


def run_watch(task, steps, workdir, **kwargs):
    model, optimizer, loss_fn = setup(task)
    handle = watch(model, optimizer, loss_fn, log_dir=tempfile.mkdtemp(dir=workdir), **kwargs)
    try:
        return train(task, model, optimizer, loss_fn, steps)
    finally:
        handle.close()  # not timed


def run_cockpit(task, steps, workdir):
    # As in cockpit's basic example (examples/01_basic_fmnist.py): BackPACK-extended model
    # and mean loss, a reduction="none" loss for the individual losses, and the backward
    # pass inside the cockpit context. configuration("economy") tracks its nine quantities
    # at every step (its default schedule is linear(interval=1)). No CockpitPlotter: the
    # example's per-step plotting is display, not recording.
    from backpack import extend
    from cockpit import Cockpit
    from cockpit.utils.configuration import configuration

    model, optimizer, loss_fn = setup(task, extend=extend)
    individual_loss_fn = nn.CrossEntropyLoss(reduction="none")
    cockpit = Cockpit(model.parameters(), quantities=configuration("economy"))

    def backward(step, x, y, out, loss):
        losses = individual_loss_fn(out, y)
        info = {"batch_size": x.shape[0], "individual_losses": losses, "loss": loss}
        info["optimizer"] = optimizer
        with cockpit(step, info=info):
            loss.backward(create_graph=cockpit.create_graph(step))

    return train(task, model, optimizer, loss_fn, steps, backward=backward)


def run_wandb(task, steps, workdir):
    # wandb.watch's hooks count batches themselves: a forward hook on the model (parameters)
    # and tensor hooks on each parameter's gradient fire on every log_freq-th forward/backward
    # and stage histograms with commit=False; the next wandb.log call commits them. Its docs
    # pair watch(log_freq=N) with a wandb.log of the loss every N batches, as done here.
    import wandb

    tmp = tempfile.mkdtemp(dir=workdir)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["WANDB_DIR"] = tmp
    model, optimizer, loss_fn = setup(task)
    run = wandb.init(project="bench", mode="offline", dir=tmp)
    try:
        wandb.watch(model, loss_fn, log="all", log_freq=WANDB_LOG_FREQ)

        def after_step(step, loss):
            if (step + 1) % WANDB_LOG_FREQ == 0:
                wandb.log({"loss": loss.item()})

        return train(task, model, optimizer, loss_fn, steps, after_step=after_step)
    finally:
        run.finish()  # not timed


CONFIGS = {
    "none": ("none", run_none),
    "watch": ("tb_plateau watch (defaults)", run_watch),
    "watch-nolive": ("tb_plateau watch(live=False)", lambda *a: run_watch(*a, live=False)),
    "cockpit": ("cockpit (economy)", run_cockpit),
    "wandb": ("wandb.watch(log='all') offline", run_wandb),
}


def unavailable(key):
    """Why a configuration cannot run here, or None."""
    try:
        if key == "cockpit":
            with warnings.catch_warnings():  # cockpit imports the deprecated pkg_resources
                warnings.simplefilter("ignore")
                import backpack  # noqa: F401
                import cockpit  # noqa: F401
        elif key == "wandb":
            import wandb  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return "%s: %s" % (type(e).__name__, e)
    return None


def bench(task, keys, rounds, steps, workdir):
    skipped = {}  # a configuration that fails is skipped for the rest of this model's rounds
    run_none(task, min(steps, 50), workdir)  # untimed: one-time kernel and allocator setup
    totals = {k: [] for k in keys}
    steps_all = {k: [] for k in keys}
    overheads = {k: [] for k in keys}
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        this_round = {}
        for key in order:
            if key in skipped:
                continue
            try:
                total, step_times = CONFIGS[key][1](task, steps, workdir)
            except Exception as e:  # noqa: BLE001
                skipped[key] = ("%s: %s" % (type(e).__name__, e)).splitlines()[0]
                print("skipping %s on %s: %s" % (CONFIGS[key][0], task.name, skipped[key]))
                continue
            this_round[key] = total
            totals[key].append(total)
            steps_all[key].extend(step_times)
        for key, total in this_round.items():
            if "none" in this_round:
                overheads[key].append(total / this_round["none"] - 1.0)
    print(
        "\n%s, batch %d, %d rounds of one %d-step run (setup, close/finish not timed)"
        % (task.name, task.batch, rounds, steps)
    )
    print("%-36s %10s %10s %17s" % ("", "run (s)", "overhead", "median step (ms)"))
    for key in keys:
        label = CONFIGS[key][0]
        if not totals[key]:
            print("%-36s skipped (%s)" % (label, skipped.get(key, "no run")))
            continue
        overhead = "%.1f%%" % (100 * statistics.median(overheads[key])) if overheads[key] else "n/a"
        print(
            "%-36s %10.3f %10s %17.3f"
            % (
                label,
                statistics.median(totals[key]),
                overhead,
                1e3 * statistics.median(steps_all[key]),
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps per run")
    parser.add_argument("--task", choices=["mlp", "cnn", "both"], default="both")
    parser.add_argument(
        "--only",
        default=",".join(CONFIGS),
        help="comma-separated subset of %s ('none' is always run)" % ",".join(CONFIGS),
    )
    args = parser.parse_args()
    wanted = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in CONFIGS]
    if unknown:
        parser.error("unknown configuration(s) %s; choose from %s" % (unknown, ",".join(CONFIGS)))
    keys = ["none"] + [k for k in CONFIGS if k in wanted and k != "none"]
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # BackPACK's hooks
    for key in list(keys):
        reason = unavailable(key)
        if reason:
            keys.remove(key)
            print("skipping %s: %s" % (CONFIGS[key][0], reason.splitlines()[0]))
    print(
        "torch %s, %d threads (torch.get_num_threads(), left default), CPU float32"
        % (torch.__version__, torch.get_num_threads())
    )
    gen = torch.Generator().manual_seed(0)
    tasks = {"mlp": [mlp_task(gen)], "cnn": [cnn_task(gen)]}
    tasks["both"] = tasks["mlp"] + tasks["cnn"]
    with tempfile.TemporaryDirectory() as workdir:
        for task in tasks[args.task]:
            bench(task, keys, args.rounds, args.steps, workdir)


if __name__ == "__main__":
    main()
