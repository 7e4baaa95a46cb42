"""Benchmarks of tb_plateau: recording overhead, diagnosis at scale, the tab's latency, and
the fault-injection corpus (`benchmarks.corpus`). A package so that tests can reuse the corpus's
trainings."""
