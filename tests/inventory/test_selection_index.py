"""The TUI filter's index (inventory.selection.AttrIndex) in loose mode: the same nodes as
the plain attrs function, for substrings of names and shown attributes too, as nodes
change and are read again in slices."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inventory.errors import SelectionError
from inventory.selection import AttrIndex, select
from tests.inventory.test_selection import GROUPS, NAMES, _attrs

#: substrings of names and of shown values (rack, role), words, a separator of the
#: search text, a glob, a key=value, a state word
_PIECES = ["n0", "R02", "-n1", "sw", "swit", "gpu", "CPU", "r0", "1", "dal1-r03", "mgmt", "x", "\x00", "n\x00r",
           "off", "rack=r01", "role!=gpu", "dal1-r01-n0*", "ri"]


def _loose(expr: str, attrs, names=NAMES) -> list[str] | str:
    try:
        return select(expr, names, attrs=attrs, groups=GROUPS, allow_empty=True, vocabulary={"off"}, loose=True)
    except SelectionError as exc:
        return f"error: {exc}"


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.sampled_from(_PIECES), min_size=1, max_size=3), names=st.sampled_from(["all", "tuple",
                                                                                                   "some"]))
def test_loose_index_selects_what_the_attrs_function_selects(words: list[str], names: str) -> None:
    """Whether the names selected from are the index's own (a tuple, kept as a set),
    or a subset of them, or include a name the index was never given (which has no
    attributes then)."""
    expr = " ".join(words)
    index = AttrIndex(NAMES, _attrs)
    chosen = {"all": NAMES, "tuple": tuple(NAMES), "some": NAMES[5:20] + ["dal1-r09-n01"]}[names]
    plain = lambda n: _attrs(n) if n in NAMES else {}  # noqa: E731
    assert _loose(expr, index, chosen) == _loose(expr, plain, chosen)
    assert _loose(expr, index, chosen) == _loose(expr, plain, chosen)  # again: the kept set


@settings(max_examples=80, deadline=None)
@given(changed=st.lists(st.sampled_from(NAMES), max_size=8, unique=True),
       word=st.sampled_from(_PIECES), step=st.integers(0, 40))
def test_search_texts_follow_changed_nodes(changed: list[str], word: str, step: int) -> None:
    """A node's rack or role changes: once read again (in slices or at the lookup), the
    substring search finds it by the new value and not by the old."""
    current = {n: dict(_attrs(n)) for n in NAMES}
    index = AttrIndex(NAMES, lambda n: current[n])
    while index.pending:
        index.sync(limit=step or None)
    for name in changed:
        current[name]["rack"] = "swamp"
        current[name].pop("role", None)
    index.invalidate(changed)
    index.invalidate(changed)  # twice: read once
    index.sync(limit=step // 8)
    assert index.pending == max(0, len(changed) - step // 8)
    assert _loose(word, index) == _loose(word, lambda n: current[n])
    assert _loose("swa", index) == _loose("swa", lambda n: current[n]) == [n for n in NAMES if n in changed]


def test_nodes_are_read_in_the_order_they_were_invalidated() -> None:
    reads: list[str] = []
    index = AttrIndex(NAMES[:3], lambda n: reads.append(n) or _attrs(n))
    index.invalidate([NAMES[1], NAMES[5]])  # NAMES[1] keeps its place
    index.sync(limit=2)
    assert reads == NAMES[:2] and index.pending == 2
    index.sync()
    assert reads == [*NAMES[:3], NAMES[5]] and index.pending == 0


def test_a_value_given_twice_can_change() -> None:
    current = {n: dict(_attrs(n)) for n in NAMES}
    current[NAMES[0]]["tags"] = ("a", "a")
    index = AttrIndex(NAMES, lambda n: current[n])
    assert _loose("a", index) == [NAMES[0]]
    current[NAMES[0]]["tags"] = ("b",)
    index.invalidate([NAMES[0]])
    assert _loose("tags=a", index) == [] and _loose("tags=b", index) == [NAMES[0]]
