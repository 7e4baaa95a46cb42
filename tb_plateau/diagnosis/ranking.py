"""Root causes before symptoms.

When one finding explains another (raw inputs in the thousands -> dead ReLUs ->
zero gradients), the root comes first, takes the worst severity of what it
explains, and each symptom names its root.
"""

from tb_plateau.diagnosis import causes as c

# root -> the findings it can cause. Acyclic except exploding/lr_too_high,
# which `_explains` breaks by timing.
_CAN_CAUSE = {
    c.LOSS_OUTPUT_MISMATCH: {
        c.NO_SIGNAL,
        c.ZERO_GRADIENT,
        c.SATURATED_ACTIVATIONS,
        c.VANISHING_GRADIENTS,
        c.DEAD_RELU,
        c.NOT_CONVERGED,
        c.INSUFFICIENT_CAPACITY,
        c.NONFINITE,
        c.LR_TOO_LOW,
    },
    c.UNNORMALIZED_INPUTS: {
        c.DEAD_RELU,
        c.SATURATED_ACTIVATIONS,
        c.EXPLODING_GRADIENTS,
        c.VANISHING_GRADIENTS,
        c.LR_TOO_HIGH,
        c.ZERO_GRADIENT,
        c.NO_SIGNAL,
        c.NONFINITE,
        c.NOT_CONVERGED,
        c.INSUFFICIENT_CAPACITY,
        c.LR_TOO_LOW,
        c.BATCHNORM_MISUSE,
    },
    c.BATCHNORM_MISUSE: {
        c.ZERO_GRADIENT,
        c.OVERFITTING,
        c.NO_SIGNAL,
        c.NOT_CONVERGED,
        c.INSUFFICIENT_CAPACITY,
        c.LR_TOO_LOW,
        c.VANISHING_GRADIENTS,
    },
    c.LR_TOO_HIGH: {
        c.EXPLODING_GRADIENTS,
        c.NONFINITE,
        c.DEAD_RELU,
        c.SATURATED_ACTIVATIONS,
        c.ZERO_GRADIENT,
        c.NO_SIGNAL,
        c.VANISHING_GRADIENTS,
        c.INSUFFICIENT_CAPACITY,
        c.NOT_CONVERGED,
    },
    c.EXPLODING_GRADIENTS: {
        c.NONFINITE,
        c.DEAD_RELU,
        c.SATURATED_ACTIVATIONS,
        c.ZERO_GRADIENT,
        c.NO_SIGNAL,
        c.LR_TOO_HIGH,
        c.NOT_CONVERGED,
    },
    c.SATURATED_ACTIVATIONS: {
        c.VANISHING_GRADIENTS,
        c.ZERO_GRADIENT,
        c.NO_SIGNAL,
        c.NOT_CONVERGED,
        c.LR_TOO_LOW,
        c.INSUFFICIENT_CAPACITY,
    },
    c.DEAD_RELU: {
        c.ZERO_GRADIENT,
        c.VANISHING_GRADIENTS,
        c.NO_SIGNAL,
        c.INSUFFICIENT_CAPACITY,
        c.NOT_CONVERGED,
        c.LR_TOO_LOW,
    },
    c.VANISHING_GRADIENTS: {
        c.NO_SIGNAL,
        c.NOT_CONVERGED,
        c.LR_TOO_LOW,
        c.INSUFFICIENT_CAPACITY,
        c.ZERO_GRADIENT,
    },
    c.ZERO_GRADIENT: {c.NO_SIGNAL, c.NOT_CONVERGED, c.LR_TOO_LOW, c.INSUFFICIENT_CAPACITY},
    c.LR_TOO_LOW: {c.NOT_CONVERGED, c.NO_SIGNAL, c.INSUFFICIENT_CAPACITY},
    c.NO_SIGNAL: {c.OVERFITTING, c.NOT_CONVERGED, c.INSUFFICIENT_CAPACITY},
    c.INSUFFICIENT_CAPACITY: {c.NOT_CONVERGED},
}

# Ties among independent roots: the more fundamental problem first.
_PRIORITY = (
    c.NONFINITE,
    c.LOSS_OUTPUT_MISMATCH,
    c.UNNORMALIZED_INPUTS,
    c.BATCHNORM_MISUSE,
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
)
_DATA_SOURCES = ("inputs", "labels")


def _explains(root, symptom):
    """True when `root`, found in the same run, accounts for `symptom`."""
    if root is symptom:
        return False
    if root.cause == c.NONFINITE:
        # NaN in the data poisons everything after it.
        return root.evidence.get("source") in _DATA_SOURCES
    if symptom.cause == c.NONFINITE and symptom.evidence.get("source") in _DATA_SOURCES:
        return False
    if {root.cause, symptom.cause} == {c.EXPLODING_GRADIENTS, c.LR_TOO_HIGH}:
        # Gradients already exploding at the first record are the network's
        # (initialization, depth); growing later, the step size drove them.
        exploding = root if root.cause == c.EXPLODING_GRADIENTS else symptom
        return (root is exploding) == bool(exploding.evidence.get("at_init"))
    if root.cause == c.LR_TOO_HIGH and symptom.cause == c.DEAD_RELU:
        # Units dead from the first record died of their initialization, not a step.
        return not symptom.evidence.get("at_init")
    if root.cause == c.LOSS_OUTPUT_MISMATCH and symptom.cause == c.DEAD_RELU:
        return bool(symptom.evidence.get("output_layer"))
    return symptom.cause in _CAN_CAUSE.get(root.cause, ())


def _order_key(finding):
    return (-finding.severity_rank, _PRIORITY.index(finding.cause), -finding.confidence)


def _root_of(finding, findings):
    """The most fundamental finding that explains `finding`, following chains."""
    roots = [r for r in findings if _explains(r, finding)]
    if not roots:
        return None
    seen = {id(finding)}
    root = min(roots, key=lambda r: _PRIORITY.index(r.cause))
    while True:
        seen.add(id(root))
        above = [r for r in findings if id(r) not in seen and _explains(r, root)]
        if not above:
            return root
        root = min(above, key=lambda r: _PRIORITY.index(r.cause))


def rank(findings):
    """Orders findings root causes first and links each symptom to its root."""
    findings = list(findings)
    for finding in findings:
        root = _root_of(finding, findings)
        if root is None:
            continue
        finding.explained_by = root.cause
        finding.explanation += ' This is likely a consequence of "%s" (%s).' % (
            root.title,
            root.cause,
        )
        if finding.severity_rank > root.severity_rank:
            root.severity = finding.severity
    roots = sorted((f for f in findings if f.explained_by is None), key=_order_key)
    ranked = []
    placed = set()
    for root in roots:
        group = [root] + sorted(
            (
                f
                for f in findings
                if f.explained_by == root.cause and id(f) not in placed and f is not root
            ),
            key=_order_key,
        )
        for finding in group:
            if id(finding) not in placed:
                placed.add(id(finding))
                ranked.append(finding)
    ranked.extend(sorted((f for f in findings if id(f) not in placed), key=_order_key))
    return ranked
