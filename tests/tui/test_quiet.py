"""Quiet when idle: ages are coarse, so an idle fleet screen writes next to nothing.

The figure itself (bytes per second written to a real terminal) is measured by
``bench/idle_bytes.py``; these check why it stays low: a node polled every few
seconds reads ``<1m`` however many seconds passed, and an age past a minute moves
once a minute.
"""

from __future__ import annotations

import pytest

from screens.common import age_text


@pytest.mark.parametrize("age, shown", [(0, "<1m"), (9.9, "<1m"), (59.9, "<1m"), (60, "1m"), (119.9, "1m"),
                                        (3599, "59m"), (3600, "1h"), (86399, "23h"), (86400, "1d")])
def test_ages_are_coarse(age, shown):
    assert age_text(1000.0, 1000.0 + age).plain == shown


def test_an_age_moves_once_a_minute_past_the_first():
    shown = [age_text(1000.0, 1000.0 + s).plain for s in range(0, 600)]
    changes = sum(1 for a, b in zip(shown, shown[1:], strict=False) if a != b)
    assert changes == 9  # <1m -> 1m -> ... -> 9m


def test_never_polled_and_stale_ages_say_so():
    assert age_text(None).plain == "never"
    assert age_text(1000.0, 1000.0 + 100).style == ""
    assert age_text(1000.0, 1000.0 + 121).style == "yellow"
