"""Fixtures shared by the test modules."""

import os

import pytest

# Quiet TensorFlow's C++ start-up chatter in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _write_scalars(logdir, tag, values):
    """An event file of plain scalar summaries, step 0, 1, ..., as a PyTorch SummaryWriter or
    Keras' TensorBoard callback leaves them; written with TensorBoard's own writer (no TF)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(logdir))
    for step, value in enumerate(values):
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))]
        )
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0 + step, summary=summary))
    writer.close()


@pytest.fixture
def write_scalars():
    """write_scalars(logdir, tag, values): a run of plain scalars, as other writers log them."""
    return _write_scalars


def due_steps(every_n_steps, total_steps, start=0):
    """The steps of a run of `total_steps` that the recorder records: densely first, then
    every `every_n_steps` (the writer's own schedule, TensorFlow not needed)."""
    from tb_plateau.summaries.writer import _RunWriter

    writer = _RunWriter("unused", every_n_steps)
    writer.densify(start)
    writer._config_written = True  # (the first record carries it; it is due anyway)
    return [step for step in range(start, start + total_steps) if writer.is_due(step)]
