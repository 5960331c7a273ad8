"""The progress bar: its clock, and its figures only once a step was read."""

from owngpt.train.progress import clock


def test_progress_clock():
    assert clock(187.4) == "0:03:07" and clock(3 * 3600 + 5) == "3:00:05"
    assert clock(None) == clock(float("nan")) == "-:--:--"


def test_bar_shows_no_figures_before_a_step_was_read():
    """A resumed run that is already finished draws its bar once, before any step: no "loss nan 0 tok/s"."""
    from owngpt.train.progress import bar_stats

    assert bar_stats(float("nan"), 0.0) == ""
    assert bar_stats(3.46251, 11076.4) == "loss 3.4625 11,076 tok/s"
