"""Root causes before symptoms: what explains what, and what came first.

`causes.PRODUCES` says which findings each cause can produce. A finding that
a root present in the same run can explain is shown under that root as a
consequence: never above it, never more severe, and without fixes of its own
(the root's fixes are the ones to apply). Time decides between candidates:
of two events (a learning-rate jump, units dying, gradients blowing up, the
first NaN) a root cannot have come after its consequence, and of several roots
that could explain a finding the one that showed first is taken. Findings
about the whole run (the configuration, the data, the shape of the loss
curve) have no moment to compare: the table alone decides for them.
"""

from tb_plateau.diagnosis import causes as c

# Ties among independent roots at the same severity and step: the more
# fundamental problem first.
_PRIORITY = (
    c.NONFINITE,
    c.LOSS_OUTPUT_MISMATCH,
    c.UNNORMALIZED_INPUTS,
    c.BATCHNORM_MISUSE,
    c.OVER_REGULARIZATION,
    c.EXPLODING_GRADIENTS,
    c.LR_TOO_HIGH,
    c.SATURATED_ACTIVATIONS,
    c.DEAD_RELU,
    c.VANISHING_GRADIENTS,
    c.ZERO_GRADIENT,
    c.LR_TOO_LOW,
    c.NO_SIGNAL,
    c.INSUFFICIENT_CAPACITY,
    c.OVERFITTING,
    c.NOT_CONVERGED,
    c.UNEXPLAINED_PLATEAU,
)
_DATA_SOURCES = ("inputs", "labels")
# Causes that act through training (the optimizer's steps, what the labels
# teach): they cannot explain what was already there at the first record,
# measured on the initial weights.
_TRAINING_CAUSES = (c.LR_TOO_HIGH, c.LR_TOO_LOW, c.NO_SIGNAL)
# A layer this dead passes no signal at all; a partly dead one still carries
# what its live units compute.
_BLOCKING_DEAD_FRACTION = 0.95  # of the layer's units
_LATE = float("inf")  # a finding without a first step sorts after those with one
# Findings that describe an event at a step of the run, so that time can tell
# which came first.
_EVENTS = frozenset(
    [
        c.NONFINITE,
        c.LR_TOO_HIGH,
        c.EXPLODING_GRADIENTS,
        c.DEAD_RELU,
        c.SATURATED_ACTIVATIONS,
        c.VANISHING_GRADIENTS,
        c.ZERO_GRADIENT,
    ]
)


def _step(finding):
    return _LATE if finding.first_step is None else finding.first_step


def _at_init(finding):
    return bool(finding.evidence.get("at_init"))


def _from_data(finding):
    """True for a finding about the data itself (NaN rows, constant labels): a fact."""
    return finding.evidence.get("source") in _DATA_SOURCES


def blocks_signal(dead, at_first_record=False):
    """True when a dead-ReLU finding has a layer all but entirely dead (at the first record)."""
    if at_first_record:
        fraction = dead.evidence.get("initial_dead_fraction") or 0.0
    else:
        fraction = max((dead.evidence.get("dead_fraction") or {}).values(), default=0.0)
    return fraction >= _BLOCKING_DEAD_FRACTION


def _large_weights_of(exploding, saturated):
    """True when gradients "explode" only as one layer's being far larger than the last's,
    and that layer is one whose bounded units were saturated from the first record (or the
    layer right before it, whose gradient passes back through its too-wide weights).

    Weights initialized too large pin tanh/sigmoid units at their limits, and
    the gradient of those same weights is large with them (an RNN's recurrent
    kernel): one fault, seen as saturation. A signal blown up layer by layer,
    a huge total norm or a NaN is an explosion in its own right.
    """
    evidence = exploding.evidence
    if evidence.get("forward_growth") is not None or evidence.get("nonfinite_step") is not None:
        return False
    if not evidence.get("depth_ratio") or not exploding.layers:
        return False
    # The layer right before a too-wide one gets its gradient through those weights.
    wide = set(saturated.layers) | set(saturated.evidence.get("fed_by") or ())
    return set(exploding.layers) <= wide


# What units partly dead leave unexplained (see `_labels_and_units`).
_PARTLY_DEAD_LEAVES = (c.ZERO_GRADIENT, c.LR_TOO_LOW, c.NOT_CONVERGED)


def _rate_jump(finding):
    """The step at which a learning rate jumped (a schedule's, a callback's), or None."""
    return finding.evidence.get("spike_step") if finding.cause == c.LR_TOO_HIGH else None


def _pair_evidence(root, symptom):
    """True/False where what the labels, the units or the first record show decides the
    pair, else None."""
    decided = _labels_and_units(root, symptom)
    if decided is not None:
        return decided
    # A rate set from outside the network (a schedule, a callback) that jumped is the root
    # of what the network does from that step on, gradients that grow included.
    if _rate_jump(root) is not None and symptom.first_step is not None:
        if not _at_init(symptom) and symptom.first_step >= _rate_jump(root):
            return True
    if _rate_jump(symptom) is not None and root.first_step is not None:
        if not _at_init(root) and root.first_step >= _rate_jump(symptom):
            return False
    if _at_init(root) and _at_init(symptom):
        return _first_record(root, symptom)
    if (root.cause, symptom.cause) == (c.VANISHING_GRADIENTS, c.DEAD_RELU):
        # Fading gradients leave units dead at the first record; after it, only a signal
        # collapsed from the first record that never recovered does: the units' signs are
        # left to their biases, and they die as the biases move.
        return (
            _at_init(root)
            and root.evidence.get("until_step") is None
            and not blocks_signal(symptom, at_first_record=True)
        )
    if (root.cause, symptom.cause) == (c.VANISHING_GRADIENTS, c.ZERO_GRADIENT):
        return bool(root.evidence.get("underflowed_from"))  # the zeros are where it underflowed
    return None


def _labels_and_units(root, symptom):
    """Labels that carry no information (all one class) drive the network toward a
    constant output: units die and gradients fade because of them, never the
    other way round. A loss at chance level with partly dead units is the
    labels' doing; dead units explain it only when a layer passes no signal at
    all. Partly dead units leave gradients flowing: they explain neither
    exactly-zero gradients, nor tiny steps everywhere, nor a loss still falling
    when the run stopped. Weights initialized too
    wide make every step small beside them (a low update ratio); gradients that
    explode later do not; gradients fading under the vanishing bar do not either.
    An autoencoder's unscaled inputs are its targets out of a bounded output's reach.
    """
    pair = (root.cause, symptom.cause)
    if pair == (c.EXPLODING_GRADIENTS, c.LR_TOO_LOW):
        return _at_init(root)
    if pair == (c.VANISHING_GRADIENTS, c.LR_TOO_LOW):
        # Gradients fading toward the input shrink the first layers' steps; steps too small
        # across the network (the median layer's) need them faded through most of it: a
        # fading under the vanishing bar (named only because the loss is stuck) leaves the
        # later layers' healthy gradients taking tiny steps, the rate's own doing.
        return not root.evidence.get("moderate")
    if pair == (c.UNNORMALIZED_INPUTS, c.LOSS_OUTPUT_MISMATCH):
        # An autoencoder's targets are its inputs: unscaled inputs put the targets out of a
        # bounded output's reach, and scaling the data mends both. No other mismatch.
        return bool(symptom.evidence.get("targets_are_inputs")) and symptom.evidence.get(
            "problems"
        ) == [c.TARGETS_OUT_OF_REACH]
    if root.cause == c.DEAD_RELU and symptom.cause in (
        c.ZERO_GRADIENT,
        c.LR_TOO_LOW,
        c.NOT_CONVERGED,
    ):
        return blocks_signal(root)
    if root.cause == c.NO_SIGNAL and symptom.cause != c.DEAD_RELU:
        if symptom.cause in (c.VANISHING_GRADIENTS, c.ZERO_GRADIENT, c.SATURATED_ACTIVATIONS):
            return _from_data(root)
        return None
    if pair == (c.NO_SIGNAL, c.DEAD_RELU):
        return _from_data(root) or not blocks_signal(symptom)
    if pair == (c.DEAD_RELU, c.NO_SIGNAL):
        return blocks_signal(root)
    if pair == (c.SATURATED_ACTIVATIONS, c.EXPLODING_GRADIENTS):
        return _at_init(root) and _at_init(symptom) and _large_weights_of(symptom, root)
    return None


def _first_record(root, symptom):
    """Both at the first record: gradients that fade layer by layer and units whose sign
    is set by their bias alone are one collapse of a too-narrow initialization, unless a
    layer is already entirely dead (a bias that keeps it off). Gradients large only in a
    layer saturated from the start are that layer's too-large weights: the saturation is
    the root."""
    pair = (root.cause, symptom.cause)
    if pair == (c.VANISHING_GRADIENTS, c.DEAD_RELU):
        return not blocks_signal(symptom, at_first_record=True)
    if pair == (c.DEAD_RELU, c.VANISHING_GRADIENTS):
        return blocks_signal(root, at_first_record=True)
    if pair == (c.EXPLODING_GRADIENTS, c.SATURATED_ACTIVATIONS):
        return not _large_weights_of(root, symptom)
    return None


def _explains(root, symptom):
    """True when `root`, found in the same run, accounts for `symptom`."""
    if root is symptom:
        return False
    if root.cause == c.NONFINITE:
        # NaN in the data poisons everything after it.
        return _from_data(root)
    if _from_data(symptom) or symptom.cause not in c.PRODUCES.get(root.cause, ()):
        return False
    if root.cause in _TRAINING_CAUSES and _at_init(symptom):
        return False
    decided = _pair_evidence(root, symptom)
    if decided is not None:
        return decided
    if root.cause == c.LOSS_OUTPUT_MISMATCH and symptom.cause == c.DEAD_RELU:
        # A mismatch kills units only where the output is (a ReLU output for
        # targets below zero); dead hidden layers have their own cause.
        return bool(symptom.evidence.get("output_layer"))
    return _time_and_priority(root, symptom)


def _time_and_priority(root, symptom):
    """Of a cause and a finding it can produce: True unless time or the pair says otherwise."""
    timed = root.cause in _EVENTS and symptom.cause in _EVENTS
    root_step, symptom_step = _step(root), _step(symptom)
    if timed and root_step > symptom_step:
        return False  # a cause comes before its consequences
    mutual = root.cause in c.PRODUCES.get(symptom.cause, ())
    if mutual and (root_step == symptom_step or not timed):
        # Each could explain the other and both showed at once: gradients
        # already exploding at the first record are the network's (its
        # initialization), and so are the huge steps they drive; otherwise
        # the more fundamental cause is the root.
        if _at_init(root) != _at_init(symptom):
            return _at_init(root)
        return _PRIORITY.index(root.cause) < _PRIORITY.index(symptom.cause)
    return True


def _root_key(finding):
    """Of several roots that could explain a finding: the one that showed first."""
    return (_step(finding), _PRIORITY.index(finding.cause))


def _root_of(finding, findings):
    """The first-showing finding that explains `finding`, following chains to the top."""
    roots = [r for r in findings if _explains(r, finding)]
    if not roots:
        return None
    seen = {id(finding)}
    root = min(roots, key=_root_key)
    while True:
        seen.add(id(root))
        above = [r for r in findings if id(r) not in seen and _explains(r, root)]
        if not above:
            return root
        root = min(above, key=_root_key)


def _order_key(finding):
    """Graver first; at the same severity, strong evidence before moderate evidence (a
    finding named below its usual bar because the loss is stuck), then what showed first."""
    return (
        -finding.severity_rank,
        bool(finding.evidence.get("moderate")),
        _step(finding),
        _PRIORITY.index(finding.cause),
        -finding.confidence,
    )


def rank(findings):
    """Orders findings root causes first and places each symptom under its root."""
    findings = list(findings)
    roots_of = {id(f): _root_of(f, findings) for f in findings}
    for finding in findings:
        root = roots_of[id(finding)]
        if root is not None and finding.severity_rank > root.severity_rank:
            root.severity = finding.severity  # a root is as grave as what it causes
    for finding in findings:
        root = roots_of[id(finding)]
        if root is None:
            continue
        finding.explained_by = root.cause
        finding.fixes = []
        finding.explanation += ' This is likely a consequence of "%s" (%s)%s.' % (
            root.title,
            root.cause,
            "" if root.first_step is None else ", which showed at step %d" % root.first_step,
        )
    ranked = []
    for root in sorted((f for f in findings if roots_of[id(f)] is None), key=_order_key):
        ranked.append(root)
        ranked.extend(sorted((f for f in findings if roots_of[id(f)] is root), key=_order_key))
    return ranked
