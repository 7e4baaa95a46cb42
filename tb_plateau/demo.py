"""`tb-plateau demo`: trains small example runs, then opens TensorBoard on them.

One healthy run and several broken in known, different ways, each a few
seconds on a laptop CPU, recorded with `PlateauCallback`; with PyTorch
installed, a PyTorch run too, recorded with `summaries.torch.watch`.
Re-running replaces the demo's runs instead of adding to them.
"""

import os
import shutil
import sys
import tempfile
import time
import webbrowser

import numpy as np

DEFAULT_LOGDIR = os.path.join(tempfile.gettempdir(), "tb_plateau_demo")
_EVERY_N_STEPS = 5  # the demo runs are short: record often


def _data(rng, n=1200, features=8, classes=3):
    """Tabular features at unit scale, labels a learnable function of them."""
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features, classes))
    y = (x @ w + 0.3 * rng.normal(size=(n, classes))).argmax(axis=1).astype("int32")
    return x, y


def _classifier(keras, hidden=(32, 32), activation="relu", out_activation=None, **dense):
    layers = [keras.Input((8,))]
    layers += [keras.layers.Dense(h, activation=activation, **dense) for h in hidden]
    layers.append(keras.layers.Dense(3, activation=out_activation))
    return keras.Sequential(layers)


def _compile(keras, model, optimizer):
    model.compile(
        optimizer,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def healthy(keras, rng):
    """A well-set-up classifier: Adam at 1e-3, unit-scale inputs, logits + from_logits."""
    x, y = _data(rng)
    model = _classifier(keras)
    _compile(keras, model, keras.optimizers.Adam(1e-3))
    return model, x, y, 12


def learning_rate_too_high(keras, rng):
    """Plain SGD at a learning rate of 3: the loss spikes and diverges."""
    x, y = _data(rng)
    model = _classifier(keras)
    _compile(keras, model, keras.optimizers.SGD(3.0))
    return model, x, y, 6


def unnormalized_inputs(keras, rng):
    """Raw features in the thousands, on scales 10,000x apart, fed to ReLUs."""
    x, y = _data(rng)
    scales = np.logspace(0, 4, x.shape[1]).astype("float32")
    model = _classifier(keras)
    _compile(keras, model, keras.optimizers.Adam(1e-3))
    return model, x * scales + 1000.0, y, 6


def vanishing_gradients(keras, rng):
    """Ten sigmoid layers with small initial weights under plain SGD."""
    x, y = _data(rng)
    model = _classifier(
        keras,
        hidden=(32,) * 10,
        activation="sigmoid",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.05),
    )
    _compile(keras, model, keras.optimizers.SGD(0.01))
    return model, x, y, 6


def logits_into_probability_loss(keras, rng):
    """Logits (no output activation) fed to a loss told `from_logits=False`.

    The loss reads them as probabilities and clips them to [1e-7, 1 - 1e-7],
    where their gradient is zero.
    """
    x, y = _data(rng)
    model = _classifier(keras)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=False),
        metrics=["accuracy"],
    )
    return model, x, y, 8


def dead_relus(keras, rng):
    """ReLU layers whose biases start at -10: almost every unit never fires."""
    x, y = _data(rng)
    model = _classifier(keras, bias_initializer=keras.initializers.Constant(-10.0))
    _compile(keras, model, keras.optimizers.Adam(1e-3))
    return model, x, y, 6


SCENARIOS = [
    ("healthy", healthy),
    ("lr_too_high", learning_rate_too_high),
    ("unnormalized_inputs", unnormalized_inputs),
    ("vanishing_gradients", vanishing_gradients),
    ("logits_into_probability_loss", logits_into_probability_loss),
    ("dead_relu", dead_relus),
]


def pytorch_softmax_before_cross_entropy(torch, rng):
    """A PyTorch classifier ending in nn.Softmax, trained with nn.CrossEntropyLoss (which
    applies log-softmax itself): probabilities into a logits loss."""
    from torch import nn

    x, y = _data(rng)
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3), nn.Softmax(1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer, nn.CrossEntropyLoss(), x, y, 10


# Run with PyTorch when it is installed (`pip install tb-plateau[torch]`).
TORCH_SCENARIOS = [("pytorch_softmax_into_cross_entropy", pytorch_softmax_before_cross_entropy)]


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _train_torch(run_dir, build, seed, batch_size=32):
    import torch

    from tb_plateau.summaries.torch import watch

    torch.manual_seed(seed)
    model, optimizer, loss_fn, x, y, epochs = build(torch, np.random.default_rng(seed))
    x, y = torch.tensor(x), torch.tensor(y, dtype=torch.long)
    steps = len(x) // batch_size
    with watch(
        model,
        optimizer,
        loss_fn,
        log_dir=run_dir,
        every_n_steps=_EVERY_N_STEPS,
        steps_per_epoch=steps,
        epochs=epochs,
    ) as handle:
        for _ in range(epochs):
            order = torch.randperm(len(x))
            total = 0.0
            for i in range(steps):
                batch = order[i * batch_size : (i + 1) * batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += loss.item()
            handle.epoch_end(loss=total / steps)


def scenario_names():
    """The demo's runs: the Keras scenarios, and the PyTorch ones when torch is installed."""
    names = [name for name, _ in SCENARIOS]
    if torch_available():
        names += [name for name, _ in TORCH_SCENARIOS]
    return names


def train_all(logdir, out=sys.stdout):
    """Trains every scenario into logdir/<name>, replacing earlier demo runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from tb_plateau.summaries import PlateauCallback

    os.makedirs(logdir, exist_ok=True)
    started = time.perf_counter()
    scenarios = SCENARIOS + (TORCH_SCENARIOS if torch_available() else [])
    for i, (name, build) in enumerate(scenarios, 1):
        run_dir = os.path.join(logdir, name)
        shutil.rmtree(run_dir, ignore_errors=True)
        out.write("[%d/%d] %-34s " % (i, len(scenarios), name))
        out.flush()
        t0 = time.perf_counter()
        if (name, build) in TORCH_SCENARIOS:
            _train_torch(run_dir, build, seed=i)
        else:
            keras.utils.set_random_seed(i)
            model, x, y, epochs = build(keras, np.random.default_rng(i))
            model.fit(
                x,
                y,
                batch_size=32,
                epochs=epochs,
                validation_split=0.2,
                verbose=0,
                callbacks=[PlateauCallback(run_dir, every_n_steps=_EVERY_N_STEPS)],
            )
        out.write("trained in %.1fs\n" % (time.perf_counter() - t0))
        out.flush()
    out.write(
        "All %d runs in %.1fs, in %s\n" % (len(scenarios), time.perf_counter() - started, logdir)
    )
    return [name for name, _ in scenarios]


def print_summary(logdir, names, out=sys.stdout):
    """One line per run: its verdict and most likely cause."""
    from tb_plateau import diagnosis, rundata

    for name in names:
        report = diagnosis.run_report(rundata.read_logdir_run(logdir, name))
        top = report["findings"][0]["title"] if report["findings"] else "no problem found"
        out.write("  %-34s %-9s %s\n" % (name, report["verdict"], top))


def serve(logdir, port=None, open_browser=True, out=sys.stdout):
    """Starts TensorBoard on logdir and blocks until interrupted."""
    from tensorboard import program

    argv = [None, "--logdir", logdir, "--host", "localhost"]
    if port is not None:
        argv += ["--port", str(port)]
    board = program.TensorBoard()
    board.configure(argv=argv)
    url = board.launch()
    tab_url = url.rstrip("/") + "/#plateau"
    out.write("\nTensorBoard with the Plateau tab: %s\n(Ctrl-C to stop)\n" % tab_url)
    out.flush()
    if open_browser:
        try:
            webbrowser.open(tab_url)
        except Exception:
            pass  # no browser here: the URL above is enough
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out.write("stopped\n")


def main(logdir=None, port=None, open_browser=True):
    logdir = logdir or DEFAULT_LOGDIR
    names = train_all(logdir)
    print_summary(logdir, names)
    serve(logdir, port=port, open_browser=open_browser)
    return 0
