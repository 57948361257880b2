"""Columns laid out for a width (screens.fit.fit), with the telling column last or not."""

from __future__ import annotations

from screens.fit import Col, fit

COLUMNS = (Col("name", "NAME", None), Col("what", "WHAT", 20, 10), Col("size", "SIZE", 6, 4, "SZ"),
           Col("when", "WHEN", 8))
STEPS = (("compact", ("size",)), ("drop", ("when",)))


def width(columns) -> int:
    return sum(size + 2 for _, _, size in columns)


def test_the_last_column_takes_the_room_left() -> None:
    assert fit(COLUMNS, STEPS, 60, 8, 10) == (("name", "NAME", 8), ("what", "WHAT", 20), ("size", "SIZE", 6),
                                              ("when", "WHEN", 18))


def test_a_flexible_column_takes_the_room_left_up_to_its_full_width() -> None:
    wide = fit(COLUMNS, STEPS, 100, 8, 20, flex="what")
    assert wide == (("name", "NAME", 8), ("what", "WHAT", 20), ("size", "SIZE", 6), ("when", "WHEN", 8))
    assert width(wide) < 100  # the room left over stays at the right, after the columns
    assert fit(COLUMNS, STEPS, 48, 8, 20, flex="what") == (("name", "NAME", 8), ("what", "WHAT", 20),
                                                           ("size", "SZ", 4), ("when", "WHEN", 8))
    narrow = fit(COLUMNS, STEPS, 38, 8, 20, flex="what")
    assert narrow == (("name", "NAME", 8), ("what", "WHAT", 20), ("size", "SZ", 4))  # in order, whole
    assert width(narrow) <= 38
    assert fit(COLUMNS, STEPS, 30, 8, 20, flex="what")[1] == ("what", "WHAT", 12)  # the room left
    assert fit(COLUMNS, STEPS, 24, 8, 20, flex="what")[1] == ("what", "WHAT", 10)  # its compact width the least
