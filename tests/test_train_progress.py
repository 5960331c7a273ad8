"""The progress bar's clock."""

from owngpt.train.progress import clock


def test_progress_clock():
    assert clock(187.4) == "0:03:07" and clock(3 * 3600 + 5) == "3:00:05"
    assert clock(None) == clock(float("nan")) == "-:--:--"
