"""`callbacks.TimeEstimate`: which steps it times, what it prints and when,
in `fit()` on TensorFlow and on JAX."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_directcopy.training.callbacks import TimeEstimate, format_duration

REPO_ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A clock that returns the given readings in turn; one call more fails."""

    def __init__(self, *readings):
        self.readings = list(readings)

    def __call__(self):
        return self.readings.pop(0)


def fit(estimate, steps_per_epoch, epochs=1, steps_per_execution=1):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    x, y = np.ones((steps_per_epoch, 2), "float32"), np.ones((steps_per_epoch, 1), "float32")
    model.fit(x, y, batch_size=1, epochs=epochs, callbacks=[estimate], verbose=0, shuffle=False)


def test_the_steps_after_the_skipped_ones_are_timed_and_the_rest_estimated_once():
    lines = []
    # Opened at the end of step 2, closed at the end of step 6: 4 steps in 10 s.
    estimate = TimeEstimate(10, skip_steps=2, timed_steps=4, print_fn=lines.append, clock=Clock(5.0, 15.0))
    fit(estimate, steps_per_epoch=10)
    assert lines == ["Timing: 2.5 s per step over 4 steps; the 4 steps that remain take about 10 s, besides "
                     "the kNN evaluations and backups at epoch ends."]
    assert estimate.estimate == (2.5, 10.0) and estimate.steps == 10


def test_a_window_does_not_span_an_epoch_end():
    """Steps 3-4 of epoch 1 cannot fill a window of 3: it opens again at the
    end of the first step of epoch 2 (step 5) and closes at step 8."""
    lines = []
    estimate = TimeEstimate(12, skip_steps=2, timed_steps=3, print_fn=lines.append, clock=Clock(0.0, 100.0, 106.0))
    fit(estimate, steps_per_epoch=4, epochs=3)
    assert lines == ["Timing: 2 s per step over 3 steps; the 4 steps that remain take about 8 s, besides "
                     "the kNN evaluations and backups at epoch ends."]


def test_steps_are_counted_when_callbacks_see_every_other_step():
    lines = []
    estimate = TimeEstimate(10, skip_steps=2, timed_steps=4, print_fn=lines.append, clock=Clock(0.0, 2.0))
    fit(estimate, steps_per_epoch=10, steps_per_execution=2)
    assert lines and "0.5 s per step over 4 steps; the 4 steps that remain" in lines[0]
    assert estimate.steps == 10


def test_the_estimate_is_of_the_steps_the_callback_is_told_remain():
    """A resumed run gives the steps still to run; two fits (the rest of an
    interrupted epoch, then whole epochs) count as one run."""
    lines = []
    estimate = TimeEstimate(11, skip_steps=1, timed_steps=3, print_fn=lines.append, clock=Clock(0.0, 1.0, 4.0))
    fit(estimate, steps_per_epoch=3)  # opens after step 1; the epoch ends after step 3
    assert not lines
    fit(estimate, steps_per_epoch=4, epochs=2)  # opens after step 4 (its first), closes after step 7
    assert lines == ["Timing: 1 s per step over 3 steps; the 4 steps that remain take about 4 s, besides "
                     "the kNN evaluations and backups at epoch ends."]


def test_a_run_too_short_for_a_window_prints_nothing():
    lines = []
    estimate = TimeEstimate(4, skip_steps=2, timed_steps=4, print_fn=lines.append, clock=Clock(0.0))
    fit(estimate, steps_per_epoch=4)
    assert lines == [] and estimate.estimate is None


def test_a_window_of_no_steps_is_refused():
    with pytest.raises(ValueError, match="timed_steps=0"):
        TimeEstimate(10, timed_steps=0)


@pytest.mark.parametrize(
    "seconds, text",
    [(0.4, "0 s"), (59.4, "59 s"), (725, "12 min 5 s"), (3 * 3600 + 20 * 60 + 10, "3 h 20 min"),
     (52 * 3600 + 59, "2 d 4 h")],
)
def test_durations_read_as_people_write_them(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.slow
def test_the_estimate_on_jax():
    """In a fresh interpreter on Keras' JAX backend, with the real clock."""
    script = textwrap.dedent("""
        import keras, numpy as np
        from keras_directcopy.training.callbacks import TimeEstimate
        lines = []
        estimate = TimeEstimate(12, skip_steps=2, timed_steps=5, print_fn=lines.append)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.ones((12, 2)), np.ones((12, 1)), batch_size=1, callbacks=[estimate], verbose=0)
        assert keras.backend.backend() == "jax", keras.backend.backend()
        print(lines)
        assert len(lines) == 1 and "over 5 steps; the 5 steps that remain" in lines[0], lines
        assert estimate.estimate[0] > 0
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
