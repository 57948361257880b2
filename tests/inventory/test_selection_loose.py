"""The forgiving selection of the TUI filter (``select(..., loose=True)``): spaces mean
``&``, and a word found nowhere else matches as a substring of names."""

from __future__ import annotations

import pytest

from inventory.errors import SelectionError
from inventory.ranges import expand
from inventory.selection import AttrIndex, select
from tests.inventory.test_selection import GROUPS, NAMES, _attrs


def loose(expr: str, *, indexed: bool = False) -> list[str]:
    attrs = AttrIndex(NAMES, _attrs) if indexed else _attrs
    return select(expr, NAMES, attrs=attrs, groups=GROUPS, allow_empty=True, vocabulary={"off", "error"},
                  loose=True)


@pytest.mark.parametrize("indexed", [False, True])
def test_a_word_found_nowhere_else_is_a_substring_of_names(indexed: bool) -> None:
    assert loose("n07", indexed=indexed) == expand("dal1-r[01-03]-n07")
    assert loose("R02-N0", indexed=indexed) == expand("dal1-r02-n0[1-9]")  # ignoring case
    assert loose("sw1", indexed=indexed) == ["mgmt-sw1"]
    assert loose("-n0", indexed=indexed) == ["dal1-r01-n10", "dal1-r02-n10", "dal1-r03-n10", "mgmt-sw1"]
    assert loose("nothing-like-it", indexed=indexed) == []  # selects nothing: not an error


@pytest.mark.parametrize("indexed", [False, True])
def test_shown_attributes_match_as_substrings_too(indexed: bool) -> None:
    assert loose("swit", indexed=indexed) == ["mgmt-sw1"]  # role=switch


@pytest.mark.parametrize("indexed", [False, True])
def test_spaces_mean_and(indexed: bool) -> None:
    assert loose("r02 off", indexed=indexed) == ["dal1-r02-n10"]
    assert loose("r02   n0 gpu", indexed=indexed) == ["dal1-r02-n01", "dal1-r02-n02"]
    assert loose("rack = r03 & n1", indexed=indexed) == ["dal1-r03-n10"]
    assert loose("r01 n01, r03 n02", indexed=indexed) == ["dal1-r01-n01", "dal1-r03-n02"]
    assert loose("-off r02", indexed=indexed) == [n for n in NAMES if n != "dal1-r02-n10"]


def test_exact_forms_keep_their_meaning() -> None:
    assert loose("dal1-r01-n01") == ["dal1-r01-n01"]
    assert loose("gpu") == expand("dal1-r[01-03]-n0[1-2]")  # a value, not a substring
    assert loose("error") == []  # a state word no node has now
    assert loose("dal1-r0[1-2]-n10") == ["dal1-r01-n10", "dal1-r02-n10"]


@pytest.mark.parametrize("bad, says", [
    ("@nosuch", "unknown group @nosuch"),
    ("colour=red", "unknown attribute 'colour'"),
    ("dal1-r01-n[09-11]", r"unknown node\(s\): dal1-r01-n11"),
    ("r02 -off", "'-' excludes a whole term"),
])
def test_what_cannot_mean_anything_is_still_rejected(bad: str, says: str) -> None:
    with pytest.raises(SelectionError, match=says):
        loose(bad)


def test_strict_selection_is_unchanged() -> None:
    with pytest.raises(SelectionError, match=r"unknown node\(s\): n07"):
        select("n07", NAMES, attrs=_attrs, groups=GROUPS)
    with pytest.raises(SelectionError):
        select("r02 off", NAMES, attrs=_attrs, groups=GROUPS)
