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
# Causes that act through the optimizer's steps: they cannot explain what was
# already there at the first record, measured on the initial weights.
_STEP_CAUSES = (c.LR_TOO_HIGH, c.LR_TOO_LOW)
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


def _explains(root, symptom):
    """True when `root`, found in the same run, accounts for `symptom`."""
    if root is symptom:
        return False
    if root.cause == c.NONFINITE:
        # NaN in the data poisons everything after it.
        return root.evidence.get("source") in _DATA_SOURCES
    if symptom.cause == c.NONFINITE and symptom.evidence.get("source") in _DATA_SOURCES:
        return False
    if symptom.cause not in c.PRODUCES.get(root.cause, ()):
        return False
    if root.cause in _STEP_CAUSES and _at_init(symptom):
        return False
    if root.cause == c.LOSS_OUTPUT_MISMATCH and symptom.cause == c.DEAD_RELU:
        # A mismatch kills units only where the output is (a ReLU output for
        # targets below zero); dead hidden layers have their own cause.
        return bool(symptom.evidence.get("output_layer"))
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
    return (
        -finding.severity_rank,
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
