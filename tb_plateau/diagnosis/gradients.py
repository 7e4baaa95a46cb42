"""Gradients: vanishing toward the input, exploding, or exactly zero."""

import numpy as np

from tb_plateau import metadata
from tb_plateau.diagnosis import activations, causes, curves
from tb_plateau.diagnosis.finding import Finding, fmt, fmt_ratio, percent

# Vanishing: the first layer's gradient norm is under 1/1,000 of the last
# layer's and tiny in absolute terms (published starting point: ratio < 1e-3
# with ||g_first|| < 1e-4).
VANISHING_RATIO = 1e-3  # ||g_first|| / ||g_last||
VANISHING_FIRST_NORM = 1e-4  # ||g_first||
# When the loss curve says the run is stuck, 10x weaker evidence is enough.
VANISHING_RATIO_STUCK = 1e-2
VANISHING_FIRST_NORM_STUCK = 1e-3
# Or the first layer's gradient entries are this small on average (published:
# mean |g| < 1e-7); we use the root mean square, which equals it for Gaussians
# up to a factor 1.25.
VANISHING_RMS = 1e-7  # per gradient entry
# ... provided the first layer's norm is also well under the last's: tiny
# gradients everywhere are a loss with nothing left to learn (constant labels
# fitted to 1e-5), not a gradient that fades on its way to the input.
VANISHING_RMS_RATIO = 0.1  # ||g_first|| / ||g_last||
# Or over the first third of the run alone (at least this many records), at the
# strict bars: gradients that vanished while the loss stalled and recovered later.
VANISHING_EARLY_RECORDS = 3  # records

# Exploding across depth: the first layer's gradient over 70x the last one's
# (published starting point).
EXPLODING_RATIO = 70.0  # ||g_first|| / ||g_last||
# Exploding over time: the total gradient norm grows 1,000x over its first
# records. Healthy runs stay within ~10x (gradients shrink as the loss falls).
EXPLODING_GROWTH = 1e3  # max ||g|| / early ||g||
EXPLODING_GROWTH_STUCK = 1e2  # when the loss curve says the run is stuck
# Or the total gradient norm is already this large at the first record. With
# inputs and targets near unit scale, healthy norms are 1e-3 to 1e2.
EXPLODING_NORM_AT_INIT = 1e5  # ||g||
# Or the signal blows up on its way forward from the first record: a layer's
# outputs spread this many times wider than the layer's before it (healthy
# Glorot/He initializations keep the spread within ~2x from layer to layer),
# to a spread well above unit scale. Weights initialized too wide multiply the
# signal at every layer, and the gradients coming back with it.
FORWARD_GROWTH = 10.0  # act_std of a layer / act_std of the layer before
FORWARD_SCALE = 3.0  # act_std reached
# Or, where the layer before is not recorded (it follows a normalization, an
# attention block): a hidden layer's outputs already spread this wide at the
# first record (Glorot/He/LeCun keep them near unit scale; healthy runs here
# stay under 1), while the loss starts this many times above the chance level
# (a model that knows nothing starts at it): the wide signal reached the
# output as large, confidently wrong predictions.
WIDE_SIGNAL_STD = 5.0  # act_std at the first record
WIDE_SIGNAL_LOSS = 3.0  # first recorded loss / chance-level loss
# Or, behind a normalization (which undoes their scale in the forward pass), a
# layer's weights start with a root mean square beyond what Glorot or He give
# any layer (at most about 1.4), and its steps stay this many times smaller
# (relative to the weights) than the other layers': the layer barely learns.
WIDE_WEIGHT_RMS = 2.0  # weight RMS at the first record
WIDE_WEIGHTS_STILL = 10.0  # the other layers' median update ratio / the layer's

# A layer whose gradient norm is exactly 0 in this share of records gets no
# learning signal. Not 100%: one record may fall on a batch that happens to
# reach the layer.
ZERO_GRADIENT_RECORD_SHARE = 0.9  # of records

# Activation names that pass no gradient (derivative 0 almost everywhere).
NON_DIFFERENTIABLE_NAMES = frozenset(
    [
        "sign",
        "round",
        "floor",
        "ceil",
        "argmax",
        "argmin",
        "step",
        "heaviside",
        "cast",
        "threshold",
        "binarize",
        "binary",
        "hard_threshold",
        "greater",
        "less",
        "equal",
    ]
)

_NORMALIZATION_CLASSES = metadata.NORMALIZATION_LAYERS


def _norm_matrix(ctx):
    series = ctx.vector(metadata.GRAD_NORM)
    if series is None:
        return None, None, None
    values = np.where(np.isfinite(series.values), series.values, np.nan)
    return series, values, list(series.labels)


def _weight_layer_columns(ctx, labels):
    """Columns of layers with kernels (not normalization layers), in model order."""
    columns = []
    for i, label in enumerate(labels):
        layer = ctx.config.layer_for_label(label)
        if layer is not None and layer.get("class") in _NORMALIZATION_CLASSES:
            continue
        columns.append(i)
    return columns


def _layer_sizes(ctx, labels):
    series = ctx.vector(metadata.GRAD_ZERO_COUNT)
    sizes = (series.header.get("sizes") if series is not None else None) or []
    if len(sizes) != len(labels):
        return None
    return np.asarray(sizes, float)


def _first_and_last(ctx):
    """(labels, first column, last column, per-record first norms, last norms) or None."""
    series, values, labels = _norm_matrix(ctx)
    if series is None:
        return None
    columns = _weight_layer_columns(ctx, labels)
    if len(columns) < 2:
        return None
    return series, labels, columns[0], columns[-1], values[:, columns[0]], values[:, columns[-1]]


def _vanishing_medians(ctx, found, rows):
    """(first norm, last norm, ratio, first layer's RMS entry) as medians over `rows`."""
    series, labels, first, last, g_first, g_last = found
    first_norm = float(np.nanmedian(g_first[rows]))
    last_norm = float(np.nanmedian(g_last[rows]))
    sizes = _layer_sizes(ctx, labels)
    first_rms = first_norm / np.sqrt(sizes[first]) if sizes is not None else None
    return first_norm, last_norm, first_norm / last_norm, first_rms


def _early_rows(usable):
    """The usable records of the run's first third (at least VANISHING_EARLY_RECORDS)."""
    early = np.zeros_like(usable)
    early[: max(VANISHING_EARLY_RECORDS, len(usable) // 3)] = True
    return usable & early


def _past_underflow(ctx, found):
    """`found` with its first layer moved to the first that gets a gradient, when the layers
    before it get exactly zero at the bottom of a chain that shrinks by orders of magnitude
    toward them: the gradient vanished below what float32 holds (it underflowed to 0)
    rather than being cut off. None otherwise."""
    series, labels, first, last, g_first, g_last = found
    columns = _weight_layer_columns(ctx, labels)
    values = series.values
    for position, column in enumerate(columns[1:-1], start=1):
        g = values[:, column]
        usable = (g > 0) & (g_last > 0)
        if usable.sum() < VANISHING_EARLY_RECORDS:
            continue
        zero_below = all(np.nanmedian(values[:, c]) == 0 for c in columns[:position])
        ratio = float(np.nanmedian(g[usable] / g_last[usable]))
        if zero_below and ratio < VANISHING_RATIO**2:
            return series, labels, column, last, g, g_last
        return None
    return None


def _vanishing_chain(ctx):
    """(found, usable records, the first layer where the gradient underflowed or None), or
    None when no layer pair can be compared."""
    found = _first_and_last(ctx)
    if found is None:
        return None
    g_first, g_last = found[4], found[5]
    usable = (g_first > 0) & (g_last > 0)
    if usable.sum():
        return found, usable, None
    # Exactly zero is `zero_gradient`, not vanishing, unless it is where a vanishing chain
    # underflowed.
    moved = _past_underflow(ctx, found)
    if moved is None:
        return None
    return moved, (moved[4] > 0) & (moved[5] > 0), found[1][found[2]]


def detect_vanishing_gradients(ctx):
    """The first layers get gradients orders of magnitude smaller than the last."""
    chain_found = _vanishing_chain(ctx)
    if chain_found is None:
        return None
    found, usable, underflowed = chain_found
    series, labels, first, last, g_first, g_last = found
    first_norm, last_norm, ratio, first_rms = _vanishing_medians(ctx, found, usable)
    ratio_bar = ctx.threshold(VANISHING_RATIO, VANISHING_RATIO_STUCK)
    by_ratio = ratio < ratio_bar and first_norm < ctx.threshold(
        VANISHING_FIRST_NORM, VANISHING_FIRST_NORM_STUCK
    )
    by_rms = first_rms is not None and first_rms < VANISHING_RMS and ratio < VANISHING_RMS_RATIO
    rows, early = usable, None
    if not (by_ratio or by_rms):
        # Gradients that vanished over the first third of the run (the loss
        # stalled) and recovered later: the finding held then, with its steps.
        rows = _early_rows(usable)
        if rows.sum() < VANISHING_EARLY_RECORDS:
            return None
        first_norm, last_norm, ratio, first_rms = _vanishing_medians(ctx, found, rows)
        if not (ratio < VANISHING_RATIO and first_norm < VANISHING_FIRST_NORM):
            return None
        by_ratio, early = True, int(series.steps[np.flatnonzero(rows)[-1]])
    moderate = not by_rms and not (ratio < VANISHING_RATIO and first_norm < VANISHING_FIRST_NORM)
    first_step_rows = np.flatnonzero(usable & (g_first / np.maximum(g_last, 1e-30) < ratio_bar))
    first_step = int(series.steps[first_step_rows[0]]) if len(first_step_rows) else None
    explanation = (
        "The first layer's (%s) gradient norm is %s, %s smaller than the last layer's (%s, %s)"
        % (labels[first], fmt(first_norm), fmt_ratio(1.0 / ratio), labels[last], fmt(last_norm))
    )
    if first_rms is not None:
        explanation += "; its average gradient entry is %s" % fmt(first_rms)
    explanation += (
        " (medians over %d records%s). The first layers barely learn; the loss creeps or stalls."
        % (int(rows.sum()), "" if early is None else ", up to step %d" % early)
    )
    if early is not None:
        explanation += " Later in the run the gap closed: the finding held over its first third."
    if underflowed is not None:
        explanation += (
            " The layers before it, from %s, get exactly zero: the gradient shrank below what"
            " float32 can hold on its way down." % underflowed
        )
    chain = [
        "%s %s" % (labels[i], fmt(np.nanmedian(series.values[:, i])))
        for i in _weight_layer_columns(ctx, labels)
    ]
    if len(chain) > 2:
        explanation += " Gradient norm by layer, input to output: " + ", ".join(chain[:8])
        explanation += ", ..." if len(chain) > 8 else "."
    if moderate:
        explanation += (
            " A gap this size is moderate evidence on its own; it is named because the loss"
            " is stuck (%s)." % ctx.progress_reason
        )
    severity = causes.CRITICAL if ratio < VANISHING_RATIO**2 else causes.WARNING
    return Finding(
        cause=causes.VANISHING_GRADIENTS,
        severity=severity,
        confidence=(0.9 if by_ratio and by_rms else 0.75) - 0.15 * moderate,
        title="Gradients vanish%s: the first layer's are %s smaller than the last's"
        % ("" if early is None else " (until step %d)" % early, fmt_ratio(1.0 / ratio)),
        explanation=explanation,
        first_step=first_step,
        layers=[labels[i] for i in _weight_layer_columns(ctx, labels)[:-1]],
        evidence={
            "series": [metadata.tag(metadata.GRAD_NORM)],
            "underflowed_from": underflowed,
            "first_layer": labels[first],
            "last_layer": labels[last],
            "first_norm": first_norm,
            "last_norm": last_norm,
            "ratio": ratio,
            "first_rms": first_rms,
            "until_step": early,
            "at_init": first_step is not None and first_step == int(series.steps[0]),
            "thresholds": {"ratio": VANISHING_RATIO, "first_norm": VANISHING_FIRST_NORM},
            "moderate": bool(moderate),
        },
    )


def _total_norm(values):
    return np.sqrt(np.nansum(np.square(values), axis=1))


def _forward_blowup(ctx):
    """(layer before, layer, growth, std) of the first record's widest layer-to-layer growth.

    None when no layer's outputs spread FORWARD_GROWTH times wider than the
    recorded layer before them, to over FORWARD_SCALE.
    """
    series = ctx.vector(metadata.ACT_STD)
    if series is None or series.values.shape[1] < 2:
        return None
    row = np.asarray(series.values[0], float)
    best = None
    for i in range(1, len(row)):
        before, after = row[i - 1], row[i]
        if not (np.isfinite(before) and np.isfinite(after) and before > 0):
            continue
        growth = after / before
        if growth >= FORWARD_GROWTH and after >= FORWARD_SCALE:
            if best is None or growth > best[2]:
                best = (series.labels[i - 1], series.labels[i], float(growth), float(after))
    return best


def _wide_from_the_start(ctx):
    """(layer, std, first loss / chance) when a hidden layer's outputs spread over
    WIDE_SIGNAL_STD at the first record and the first recorded loss is WIDE_SIGNAL_LOSS
    times the chance level or more, else None."""
    series = ctx.vector(metadata.ACT_STD)
    chance = ctx.chance_loss
    if series is None or not chance or chance <= 0 or ctx.train is None or not len(ctx.train):
        return None
    first_loss = float(ctx.train.values[0])
    if not np.isfinite(first_loss) or first_loss < WIDE_SIGNAL_LOSS * chance:
        return None
    output_label = activations.output_layer_label(ctx, series)
    row = np.asarray(series.values[0], float)
    wide = [
        (float(std), label)
        for label, std in zip(series.labels, row)
        if np.isfinite(std) and std >= WIDE_SIGNAL_STD and label != output_label
    ]
    if not wide:
        return None
    std, label = max(wide)
    return label, std, first_loss / chance


def _too_wide_weights(ctx):
    """([(layer, weight RMS, its update ratio)], the other layers' update ratio) of layers
    initialized wider than WIDE_WEIGHT_RMS whose steps stay WIDE_WEIGHTS_STILL times
    smaller than the other layers', or None."""
    updates = ctx.vector(metadata.UPDATE_RATIO)
    if updates is None:
        return None
    ratios = {
        label: curves.moving_median(updates.values[:, i]) for i, label in enumerate(updates.labels)
    }
    wide = []
    for label, layer, rms in activations.initial_weight_rms(ctx):
        if layer.get("class") in _NORMALIZATION_CLASSES:
            continue
        if str(layer.get("activation") or "").lower() in metadata.SATURATING:
            continue
        if rms > WIDE_WEIGHT_RMS and ratios.get(label) is not None:
            wide.append((label, rms, ratios[label]))
    wide_labels = {label for label, _, _ in wide}
    others = [r for label, r in ratios.items() if r is not None and label not in wide_labels]
    if not wide or not others:
        return None
    others_ratio = float(np.median(others))
    wide = [w for w in wide if w[2] * WIDE_WEIGHTS_STILL < others_ratio]
    return (wide, others_ratio) if wide else None


def _wide_weights_words(found):
    wide, others_ratio = found
    return (
        "at the first record the weights of %s have a root mean square of %s, beyond what"
        " Glorot or He initialization gives any layer (about 1 at most), and each step moves"
        " them by a median %s of their norm against %s in the other layers: they are too"
        " large for the steps to change them (where a normalization follows, the forward"
        " pass ignores their scale, and the effective learning rate falls with its square)"
        % (
            ", ".join(label for label, _, _ in wide[:4]),
            ", ".join(fmt(rms) for _, rms, _ in wide[:4]),
            fmt(float(np.median([r for _, _, r in wide]))),
            fmt(others_ratio),
        )
    )


def _first_nonfinite_gradient_step(ctx):
    grad_nonfinite = ctx.vector(metadata.GRAD_NONFINITE)
    if grad_nonfinite is None:
        return None
    rows = np.flatnonzero(np.nan_to_num(grad_nonfinite.values, nan=1.0).sum(axis=1) > 0)
    return int(grad_nonfinite.steps[rows[0]]) if len(rows) else None


def _early_depth_ratio(found):
    """Median over the first records of ||g_first|| / ||g_last||, or None."""
    if found is None:
        return None
    _, _, _, _, g_first, g_last = found
    early = slice(0, max(1, min(3, len(g_first))))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = g_first[early] / g_last[early]
    ratios = ratios[np.isfinite(ratios)]
    return float(np.median(ratios)) if len(ratios) else None


def _growth_over_time(series, total):
    """(growth of the total norm over its early level, step of the peak, the early level),
    or (None, None, None).

    An explosion lasts: the record after the peak is as far above the early
    norm, or NaN/Inf, or the run ends there. One huge record followed by calm
    is a single bad step (a learning-rate spike, one odd batch), which the
    loss and update-ratio detectors judge.
    """
    finite_total = total[np.isfinite(total) & (total > 0)]
    if len(finite_total) < 3:
        return None, None, None
    early_norm = float(np.median(finite_total[:3]))
    peak = int(np.nanargmax(np.where(np.isfinite(total), total, -np.inf)))
    growth = float(total[peak] / early_norm) if early_norm > 0 else None
    if peak + 1 < len(total) and growth is not None:
        after = total[peak + 1]
        if np.isfinite(after) and after / early_norm <= EXPLODING_GROWTH:
            growth = float(after / early_norm)
    return growth, int(series.steps[peak]), early_norm


def _blowup_words(ctx, series, blowup):
    before, layer, forward_growth, spread = blowup
    words = (
        "at the first record (step %d) the outputs of layer %s spread %s wider than those"
        " of %s before it (std %s): the weights are initialized too wide, and the signal"
        " and its gradients grow at every layer"
        % (int(series.steps[0]), layer, fmt_ratio(forward_growth), before, fmt(spread))
    )
    start = ctx.train_shape.head if ctx.train_shape is not None else None
    if ctx.chance_loss and start is not None and start > ctx.chance_loss:
        words += "; the loss started at %s, %s the chance level %s" % (
            fmt(start),
            fmt_ratio(start / ctx.chance_loss),
            fmt(ctx.chance_loss),
        )
    return words


def _wide_words(ctx, series, wide):
    layer, std, loss_ratio = wide
    return (
        "at the first record (step %d) the outputs of layer %s already spread with std %s"
        " (initializers built for the purpose keep them near 1), and the loss started at %s"
        " the chance level %s: the weights are initialized too wide, and the large signal"
        " reaches the output as large, confidently wrong predictions"
        % (int(series.steps[0]), layer, fmt(std), fmt_ratio(loss_ratio), fmt(ctx.chance_loss))
    )


def _exploding_title(blowup, huge_initial_norm, depth_ratio, growth, wide=None, weights=None):
    """What the title names: the first-record evidence before what came later."""
    across_depth = depth_ratio is not None and depth_ratio > EXPLODING_RATIO
    if weights is not None and blowup is None and wide is None and not across_depth:
        return "layer %s's weights start at RMS %s and barely move" % (
            weights[0][0][0],
            fmt(weights[0][0][1]),
        )
    if blowup is not None and not across_depth:
        return "the signal grows %s at layer %s from the first record" % (
            fmt_ratio(blowup[2]),
            blowup[1],
        )
    if wide is not None and not across_depth:
        return "layer %s's outputs spread with std %s from the first record" % (
            wide[0],
            fmt(wide[1]),
        )
    if huge_initial_norm is not None and not across_depth:
        return "norm %s at the first record" % fmt(huge_initial_norm)
    if across_depth:
        return "%s larger at the input than at the output" % fmt_ratio(depth_ratio)
    return "%s growth during training" % fmt_ratio(growth)


def _exploding_evidence(ctx):
    """What says gradients explode or weights start too wide, as a dict, or None."""
    found = _first_and_last(ctx)
    series, values, labels = _norm_matrix(ctx)
    if series is None:
        return None
    total = _total_norm(values)
    growth, peak_step, early_norm = _growth_over_time(series, total)
    depth_ratio = _early_depth_ratio(found)
    initial_norm = float(total[0]) if len(total) else None
    blowup = _forward_blowup(ctx)
    e = {
        "series": series,
        "labels": labels,
        "found": found,
        "total": total,
        "growth": growth,
        "peak_step": peak_step,
        "early_norm": early_norm,
        "depth_ratio": depth_ratio,
        "initial_norm": initial_norm,
        "across_depth": depth_ratio is not None and depth_ratio > EXPLODING_RATIO,
        "over_time": growth is not None
        and growth > ctx.threshold(EXPLODING_GROWTH, EXPLODING_GROWTH_STUCK),
        "huge_at_init": initial_norm is not None and not (initial_norm <= EXPLODING_NORM_AT_INIT),
        "blowup": blowup,
        "wide": None if blowup is not None else _wide_from_the_start(ctx),
        "wide_weights": _too_wide_weights(ctx),
    }
    # Gradients measured large, or only weights (and the signal) too wide from the start.
    e["measured"] = bool(e["across_depth"] or e["over_time"] or e["huge_at_init"] or blowup)
    if not (e["measured"] or e["wide"] or e["wide_weights"]):
        return None
    return e


def _exploding_parts(ctx, e):
    series, labels, found = e["series"], e["labels"], e["found"]
    parts = []
    if e["blowup"] is not None:
        parts.append(_blowup_words(ctx, series, e["blowup"]))
    if e["wide"] is not None:
        parts.append(_wide_words(ctx, series, e["wide"]))
    if e["wide_weights"] is not None:
        parts.append(_wide_weights_words(e["wide_weights"]))
    if e["huge_at_init"]:
        parts.append(
            "at the first record (step %d) the total gradient norm is already %s"
            % (int(series.steps[0]), fmt(e["initial_norm"]))
        )
    if e["across_depth"]:
        parts.append(
            "from the first records, the first layer's (%s) gradient norm is %s the last"
            " layer's (%s)" % (labels[found[2]], fmt_ratio(e["depth_ratio"]), labels[found[3]])
        )
    if e["over_time"]:
        total = e["total"]
        parts.append(
            "the total gradient norm grew %s from %s early on to %s at step %d"
            % (
                fmt_ratio(e["growth"]),
                fmt(e["early_norm"]),
                fmt(np.nanmax(total[np.isfinite(total)])),
                e["peak_step"],
            )
        )
    return parts


def _exploding_series(e):
    """The series the finding read, for the tab to draw: the gradient norms where they were
    measured large, the layers' output spread, the weights and their steps."""
    names = [metadata.GRAD_NORM] if e["measured"] else []
    if e["wide"] is not None:
        names.append(metadata.ACT_STD)
    if e["wide_weights"] is not None:
        names += [metadata.UPDATE_RATIO, metadata.WEIGHT_NORM]
    return [metadata.tag(name) for name in names]


def _exploding_layers(e):
    if e["across_depth"]:
        return [e["labels"][e["found"][2]]]
    if e["blowup"]:
        return [e["blowup"][1]]
    if e["wide"]:
        return [e["wide"][0]]
    if e["wide_weights"]:
        return [w[0] for w in e["wide_weights"][0]]
    return []


def _exploding_fix_kinds(e):
    """The kinds of fix (`causes.FIX_KINDS`) for what was found: gradients measured large
    take all three; weights initialized too wide take the initializer (and, where the signal
    grows from layer to layer with nothing in between, a normalization), not clipping."""
    if e["measured"]:
        return None
    if e["blowup"] and not (e["wide"] or e["wide_weights"]):
        return ["init", "normalize"]
    return ["init"]


def detect_exploding_gradients(ctx):
    """Gradients far larger toward the input, or growing by orders of magnitude; or weights
    initialized too wide, seen in the signal or in steps too small for them."""
    e = _exploding_evidence(ctx)
    if e is None:
        return None
    series, measured = e["series"], e["measured"]
    first_nonfinite_step = _first_nonfinite_gradient_step(ctx)
    explanation = (
        ("Gradients explode: " if measured else "The weights are initialized too wide: ")
        + "; ".join(_exploding_parts(ctx, e))
        + "."
    )
    if first_nonfinite_step is not None:
        explanation += " Gradients turned NaN/Inf at step %d." % first_nonfinite_step
    if measured:
        explanation += " Each update then overshoots, so the loss cannot settle."
    what = _exploding_title(
        e["blowup"],
        e["initial_norm"] if e["huge_at_init"] else None,
        e["depth_ratio"],
        e["growth"],
        e["wide"],
        e["wide_weights"],
    )
    at_init = bool(
        e["across_depth"] or e["huge_at_init"] or e["blowup"] or e["wide"] or e["wide_weights"]
    )
    wide, wide_weights = e["wide"], e["wide_weights"]
    return Finding(
        cause=causes.EXPLODING_GRADIENTS,
        severity=causes.CRITICAL if first_nonfinite_step is not None else causes.WARNING,
        confidence=0.85 if e["across_depth"] and e["over_time"] else 0.7,
        title=("Gradients explode (%s)" if measured else "Weights initialized too wide (%s)")
        % what,
        explanation=explanation,
        first_step=int(series.steps[0]) if at_init else e["peak_step"],
        layers=_exploding_layers(e),
        evidence={
            "series": _exploding_series(e),
            "depth_ratio": e["depth_ratio"],
            "growth": e["growth"],
            "at_init": at_init,
            "initial_norm": e["initial_norm"],
            "forward_growth": None if e["blowup"] is None else e["blowup"][2],
            "wide_signal": None if wide is None else {"layer": wide[0], "std": wide[1]},
            "first_loss_over_chance": None if wide is None else wide[2],
            "wide_weights": None
            if wide_weights is None
            else {label: rms for label, rms, _ in wide_weights[0]},
            "nonfinite_step": first_nonfinite_step,
            "fix_kinds": _exploding_fix_kinds(e),
            "thresholds": {
                "depth_ratio": EXPLODING_RATIO,
                "growth": EXPLODING_GROWTH,
                "forward_growth": FORWARD_GROWTH,
                "weight_rms": WIDE_WEIGHT_RMS,
            },
        },
    )


def _zero_gradient_layers(ctx):
    """Layers whose gradient is exactly zero in most records, and those with None gradients."""
    series, values, labels = _norm_matrix(ctx)
    zero_layers = []
    first_step = None
    if series is not None and len(series) >= 1:
        is_zero = series.values == 0
        share = is_zero.mean(axis=0)
        for i, label in enumerate(labels):
            if share[i] >= ZERO_GRADIENT_RECORD_SHARE:
                zero_layers.append(label)
                rows = np.flatnonzero(is_zero[:, i])
                step = int(series.steps[rows[0]])
                first_step = step if first_step is None else min(first_step, step)
    missing_layers = []
    missing = ctx.vector(metadata.GRAD_MISSING)
    if missing is not None:
        counts = np.nanmax(missing.values, axis=0)
        missing_layers = [label for label, c in zip(missing.labels, counts) if c > 0]
        if missing_layers:
            first_step = int(missing.steps[0]) if first_step is None else first_step
    return labels or [], zero_layers, missing_layers, first_step


def _culprit_between(ctx, zero_layers, all_labels):
    """The non-differentiable function just after the last zero-gradient layer, if named."""
    layers = ctx.config.layers
    if not layers:
        return None
    names = [layer.get("name") for layer in layers]
    paths = [layer.get("path") for layer in layers]
    last_zero = zero_layers[-1]
    start = None
    for i, (name, path) in enumerate(zip(names, paths)):
        if last_zero in (name, path) or last_zero.split("/")[-1] == name:
            start = i
    if start is None:
        return None
    trainable = set(all_labels)
    for layer in layers[start:]:
        if layer is not layers[start] and (
            layer.get("name") in trainable or layer.get("path") in trainable
        ):
            break
        activation = str(layer.get("activation") or "")
        function = str(layer.get("function") or "")
        for candidate in (activation, function):
            bare = candidate.split(":")[-1].lower()
            if bare and (
                bare in NON_DIFFERENTIABLE_NAMES
                or any(word in bare for word in ("sign", "round", "threshold", "step", "argmax"))
            ):
                return layer.get("name"), candidate.split(":")[-1]
    return None


def _has_non_differentiable_function(ctx):
    """True when some layer's activation or function has a non-differentiable name."""
    for layer in ctx.config.layers:
        for candidate in (layer.get("activation"), layer.get("function")):
            bare = str(candidate or "").split(":")[-1].lower()
            if bare in NON_DIFFERENTIABLE_NAMES or any(
                word in bare for word in ("round", "threshold", "argmax", "binarize")
            ):
                return True
    return ctx.config.is_empty  # without a configuration, nothing rules them out


def detect_zero_gradient(ctx):
    """Layers whose weights get exactly zero or no (None) gradient."""
    labels, zero_layers, missing_layers, first_step = _zero_gradient_layers(ctx)
    if not zero_layers and not missing_layers:
        return None
    affected = [label for label in labels if label in zero_layers or label in missing_layers]
    every_layer = bool(labels) and len(affected) == len(labels)
    parts = []
    if zero_layers:
        parts.append(
            "%d of %d trainable layers (%s) get a gradient that is exactly 0"
            % (len(zero_layers), len(labels), ", ".join(zero_layers[:6]))
        )
    if missing_layers:
        parts.append(
            "%s get no gradient at all (None): they are not connected to the loss, or sit"
            " behind tf.stop_gradient" % ", ".join(missing_layers[:6])
        )
    explanation = "; ".join(parts) + " (in at least %s of the records)." % percent(
        ZERO_GRADIENT_RECORD_SHARE
    )
    title = "%s get exactly zero or no gradient" % (
        "All layers" if every_layer else "%d layers" % len(affected)
    )
    fixes = causes.fixes(causes.ZERO_GRADIENT)
    culprit = _culprit_between(ctx, zero_layers, labels) if zero_layers else None
    if culprit is not None:
        layer_name, function = culprit
        explanation += (
            " Layer %s applies %r, whose derivative is 0 almost everywhere, so nothing"
            " before it learns." % (layer_name, function)
        )
        title = "%r in layer %s passes no gradient" % (function, layer_name)
    elif every_layer and ctx.config.is_custom_loss:
        loss_name = ctx.config.loss.get("name")
        explanation += (
            " Every layer is affected, so the loss itself passes no gradient: the custom"
            " loss %r is flat almost everywhere (a threshold, round, cast or comparison)."
            % loss_name
        )
        title = "The custom loss %r passes no gradient" % loss_name
        fixes = [
            "# Make the loss smooth, e.g. replace tf.cast(y_pred > 0.5, ...) by y_pred itself:\n"
            "loss = keras.losses.BinaryCrossentropy()",
        ] + fixes
    elif not _has_non_differentiable_function(ctx):
        # No sign/round/threshold anywhere in the model: advise on what can be
        # checked here (connection to the loss, stop_gradient), not on ops it lacks.
        fixes = fixes[1:]
    if ctx.train_shape is not None:
        explanation += " The loss moved %s from %s to %s." % (
            percent(abs(ctx.train_shape.progress)),
            fmt(ctx.train_shape.head),
            fmt(ctx.train_shape.tail),
        )
    return Finding(
        cause=causes.ZERO_GRADIENT,
        severity=causes.CRITICAL if every_layer or culprit is not None else causes.WARNING,
        confidence=0.95 if every_layer or culprit else 0.8,
        title=title,
        explanation=explanation,
        first_step=first_step,
        layers=affected,
        evidence={
            "series": [metadata.tag(metadata.GRAD_NORM), metadata.tag(metadata.GRAD_MISSING)],
            "zero_layers": zero_layers,
            "missing_layers": missing_layers,
            "culprit": list(culprit) if culprit else None,
            "every_layer": every_layer,
        },
        fixes=fixes,
    )


DETECTORS = (detect_exploding_gradients, detect_vanishing_gradients, detect_zero_gradient)
