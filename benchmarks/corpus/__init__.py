"""A fault-injection corpus: how well the diagnosis names causes on trainings it was not tuned on.

Twenty-seven small healthy base trainings (`bases`) of different kinds are each broken by fault
operators taken from published catalogues of real deep-learning faults (`operators`: DeepCrime's
mutation operators, DeepFD's and AutoTrainer's fault classes), every operator with the cause it
should be diagnosed as. `run` trains the corpus into event files and scores the diagnosis on it:

    python -m benchmarks.corpus.run train [--split dev|test|all] [--seeds 0 1] [--workers 2]
    python -m benchmarks.corpus.run score [--split dev|test|all] [--markdown FILE] [--json FILE]

Bases are split into "dev" (to look at while changing the engine) and "test" (to report, and
not to tune on), so that the corpus keeps measuring generalization after it has been used.
"""
