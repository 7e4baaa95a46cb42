"""Comparing what the run readers read (bulk, record by record, TensorBoard's multiplexer)."""

import numpy as np

from tb_plateau.eventfiles import records


def assert_same_run_data(a, b):
    """Two `RunData` hold the same problems, config and every series, NaN included."""
    assert a.problems == b.problems and a.incomplete == b.incomplete
    assert a.config == b.config
    for field in ("scalars", "vectors", "other_scalars"):
        x, y = getattr(a, field), getattr(b, field)
        assert set(x) == set(y), field
        for name in x:
            assert np.array_equal(x[name].steps, y[name].steps), (field, name)
            assert np.array_equal(x[name].values, y[name].values, equal_nan=True), (field, name)
            if field == "vectors":
                assert x[name].labels == y[name].labels and x[name].header == y[name].header


def count_bulk_decoded(monkeypatch):
    """A list that gets the number of records of each bulk decoding from now on."""
    decoded = []
    decode = records.RecordTemplate.decode

    def counting_decode(self, rows):
        decoded.append(len(rows))
        return decode(self, rows)

    monkeypatch.setattr(records.RecordTemplate, "decode", counting_decode)
    return decoded
