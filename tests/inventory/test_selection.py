"""The node selection syntax (inventory.selection)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory.errors import FleetError, SelectionError
from inventory.ranges import compress, expand, split_terms
from inventory.selection import AttrIndex, Selection, TermKind, describe, parse, select

# Three racks of ten nodes; n01-n02 of every rack are GPU nodes, n10 is off,
# r02-n05 has drifted, n01 carries the "critical" tag.
NAMES = expand("dal1-r[01-03]-n[01-10]") + ["mgmt-sw1"]


def _attrs(name: str) -> Mapping[str, str | frozenset[str]]:
    if name == "mgmt-sw1":
        return {"role": "switch", "rack": "r01"}
    rack, node = name.split("-")[1:]
    number = int(node[1:])
    tags = {"critical"} if number == 1 else set()
    if name == "dal1-r02-n05":
        tags.add("drift")
    return {
        "rack": rack,
        "role": "gpu" if number <= 2 else "cpu",
        "power": "off" if number == 10 else "on",
        "tags": frozenset(tags),
    }


GROUPS = {
    "gpu": [n for n in NAMES if _attrs(n)["role"] == "gpu"],
    "r01": expand("dal1-r01-n[01-10]"),
    "r02": expand("dal1-r02-n[01-10]"),
    "r03": expand("dal1-r03-n[01-10]"),
}


def sel(expr: str, *, names: list[str] = NAMES, allow_empty: bool = False) -> list[str]:
    return select(expr, names, attrs=_attrs, groups=GROUPS, allow_empty=allow_empty)


# --------------------------------------------------------------------------- term types


def test_node_name() -> None:
    assert sel("dal1-r01-n03") == ["dal1-r01-n03"]


def test_node_range() -> None:
    assert sel("dal1-r01-n[01-03]") == ["dal1-r01-n01", "dal1-r01-n02", "dal1-r01-n03"]
    assert sel("dal1-r[01-03]-n01") == ["dal1-r01-n01", "dal1-r02-n01", "dal1-r03-n01"]


def test_commas_inside_brackets_belong_to_the_range() -> None:
    assert sel("dal1-r01-n[01-02,09], mgmt-sw1") == ["dal1-r01-n01", "dal1-r01-n02", "dal1-r01-n09", "mgmt-sw1"]


def test_glob() -> None:
    assert sel("dal1-r0*-n1?") == ["dal1-r01-n10", "dal1-r02-n10", "dal1-r03-n10"]
    assert sel("mgmt-*") == ["mgmt-sw1"]


def test_glob_with_a_range_expands_the_range_first() -> None:
    assert sel("dal1-r0[2-3]-n1*") == ["dal1-r02-n10", "dal1-r03-n10"]


def test_group() -> None:
    assert sel("@gpu") == expand("dal1-r[01-03]-n[01-02]")


def test_groups_by_range() -> None:
    assert sel("@r[02-03]") == expand("dal1-r[02-03]-n[01-10]")


def test_group_members_outside_names_are_ignored() -> None:
    rack1 = expand("dal1-r01-n[01-10]")
    assert sel("@gpu", names=rack1) == ["dal1-r01-n01", "dal1-r01-n02"]


def test_attribute_match() -> None:
    assert sel("rack=r02") == expand("dal1-r02-n[01-10]")


def test_attribute_glob_and_range() -> None:
    assert sel("rack=r0*") == NAMES
    assert sel("rack=r0[2-3]") == expand("dal1-r[02-03]-n[01-10]")


def test_collection_attribute_matches_any_element() -> None:
    assert sel("tags=drift") == ["dal1-r02-n05"]
    assert sel("tags=crit*") == expand("dal1-r[01-03]-n01")


def test_attribute_not_equal() -> None:
    assert sel("power!=on") == expand("dal1-r[01-03]-n10") + ["mgmt-sw1"]  # no power attribute
    assert sel("rack!=r0[1-2]") == expand("dal1-r03-n[01-10]")
    assert "dal1-r01-n01" not in sel("tags!=critical")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("off", expand("dal1-r[01-03]-n10")),
        ("critical", expand("dal1-r[01-03]-n01")),
        ("drift", ["dal1-r02-n05"]),
        ("gpu", expand("dal1-r[01-03]-n[01-02]")),
        ("r03", expand("dal1-r03-n[01-10]")),
        ("switch", ["mgmt-sw1"]),
    ],
)
def test_words_match_attribute_values(word: str, expected: list[str]) -> None:
    assert sel(word) == expected


@pytest.mark.parametrize("word", ["Off", "OFF", "Critical", "GPU", "R03"])
def test_words_match_attribute_values_ignoring_case(word: str) -> None:
    assert sel(word) == sel(word.lower())


def test_node_names_stay_case_sensitive() -> None:
    with pytest.raises(SelectionError, match=r"unknown node\(s\): DAL1-R01-N01"):
        sel("DAL1-R01-N01")
    names = NAMES + ["Off"]
    attrs = lambda n: {} if n == "Off" else _attrs(n)  # noqa: E731
    assert select("Off", names, attrs=attrs) == ["Off"]  # the node, not the value
    assert select("off", names, attrs=attrs) == expand("dal1-r[01-03]-n10")  # no node "off": the value


def test_key_value_stays_case_sensitive() -> None:
    assert sel("power=Off", allow_empty=True) == []
    with pytest.raises(SelectionError, match="unknown attribute 'Power'"):
        sel("Power=off")


def test_node_name_beats_word() -> None:
    names = NAMES + ["off"]
    assert select("off", names, attrs=lambda n: {} if n == "off" else _attrs(n)) == ["off"]


def test_all_and_star() -> None:
    assert sel("all") == NAMES
    assert sel("*") == NAMES


# --------------------------------------------------------------------------- combinations


def test_intersection() -> None:
    assert sel("role=gpu&rack=r01") == ["dal1-r01-n01", "dal1-r01-n02"]
    assert sel("@gpu&critical") == expand("dal1-r[01-03]-n01")
    assert sel("dal1-r0*-n0[1-3]&role!=gpu&rack=r0[2-3]") == ["dal1-r02-n03", "dal1-r03-n03"]
    assert sel("all&off") == sel("off")
    assert sel("*&tags=drift") == ["dal1-r02-n05"]
    assert sel("dal1-r01-n01&gpu") == ["dal1-r01-n01"]
    assert sel("dal1-r01-n[01-03]&role=cpu") == ["dal1-r01-n03"]


def test_intersection_binds_tighter_than_comma() -> None:
    assert sel("role=gpu&rack=r01, mgmt-sw1") == ["dal1-r01-n01", "dal1-r01-n02", "mgmt-sw1"]
    assert sel("rack=r03&off, rack=r01&critical") == ["dal1-r01-n01", "dal1-r03-n10"]


def test_excluded_intersection_removes_only_nodes_matching_every_part() -> None:
    assert sel("@r01,-role=gpu&critical") == expand("dal1-r01-n[02-10]")
    assert sel("-role=gpu&rack=r01") == [n for n in NAMES if n not in ("dal1-r01-n01", "dal1-r01-n02")]
    assert sel("- role=gpu & rack=r01") == sel("-role=gpu&rack=r01")


def test_ampersand_inside_brackets_is_not_special() -> None:
    # '&' cannot be part of a range, so the whole range reaches the range parser (not split).
    with pytest.raises(SelectionError, match=r"'01&02' is not a number in \[01&02\]"):
        sel("dal1-r01-n[01&02]")
    assert [t.kind for t in parse("n[01-02,04]&rack=r01").terms] == [TermKind.AND]


def test_intersection_that_matches_nothing() -> None:
    assert sel("role=gpu&off", allow_empty=True) == []
    with pytest.raises(SelectionError, match="selection 'role=gpu&off' matches no nodes"):
        sel("role=gpu&off")


def test_every_part_of_an_intersection_is_checked() -> None:
    # The first part already matches nothing, but the typo in the second is still reported.
    with pytest.raises(SelectionError, match="unknown group @gpus"):
        sel("role=fpga&@gpus")
    with pytest.raises(SelectionError, match="unknown attribute 'colour'"):
        sel("@gpu&colour=red")


def test_group_minus_node() -> None:
    assert sel("@gpu,-dal1-r01-n02") == ["dal1-r01-n01"] + expand("dal1-r0[2-3]-n[01-02]")


def test_terms_are_a_union() -> None:
    result = sel("rack=r03,role=gpu")
    assert result == expand("dal1-r0[1-2]-n[01-02]") + expand("dal1-r03-n[01-10]")


def test_exclusion_applies_after_inclusions_wherever_it_stands() -> None:
    assert sel("-dal1-r01-n02,@gpu") == sel("@gpu,-dal1-r01-n02")
    assert sel("-off, rack=r01") == expand("dal1-r01-n[01-09]") + ["mgmt-sw1"]


def test_exclusion_only_means_all_minus() -> None:
    assert sel("-@r01,-@r02") == expand("dal1-r03-n[01-10]") + ["mgmt-sw1"]
    assert sel("-rack=r0*", allow_empty=True) == []  # every node has a rack
    assert sel("-mgmt-sw1, -off") == [n for n in NAMES if n != "mgmt-sw1" and not n.endswith("n10")]


def test_all_minus_group() -> None:
    assert sel("all,-@gpu,-mgmt-sw1") == expand("dal1-r[01-03]-n[03-10]")


def test_result_follows_names_order_not_term_order() -> None:
    names = list(reversed(NAMES))
    assert select("dal1-r01-n01,dal1-r03-n10", names, attrs=_attrs) == ["dal1-r03-n10", "dal1-r01-n01"]


def test_whitespace_and_empty_terms_are_tolerated() -> None:
    assert sel("  dal1-r01-n01 ,  ,dal1-r01-n02 , ") == ["dal1-r01-n01", "dal1-r01-n02"]
    assert sel("- @gpu") == sel("-@gpu")


def test_selection_object_can_be_reused() -> None:
    parsed = parse("@gpu")
    assert select(parsed, NAMES, attrs=_attrs, groups=GROUPS) == sel("@gpu")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("dal1-r01-n[09-12]", "unknown node(s): dal1-r01-n[11-12]"),
        ("dal1-r09-n01", "unknown node(s): dal1-r09-n01"),
        ("-dal1-r09-n[01-02]", "unknown node(s): dal1-r09-n[01-02]"),
        ("@nosuch", "unknown group @nosuch; known groups: @gpu, @r01, @r02, @r03"),
        ("colour=red", "unknown attribute 'colour' in 'colour=red'; known attributes: power, rack, role, tags"),
        ("role=fpga", "selection 'role=fpga' matches no nodes"),
        ("dal9-*", "selection 'dal9-*' matches no nodes"),
        ("all,-all", "selection 'all,-all' matches no nodes"),
        ("", "empty selection"),
        (" , ", "empty selection"),
        ("-", "'-' must be followed by the term to exclude"),
        ("--off", "exclude with a single '-'"),
        ("@", "a group name must follow '@'"),
        ("rack=", "a value must follow '='"),
        ("=r01", "an attribute name must come before '='"),
        ("rack!=", "a value must follow '!='"),
        ("dal1-r01-n[01-02", "never closed"),
        ("dal1-r01-n01]", "without a matching '['"),
        ("dal1-r01-n[02-01]", "reversed range '02-01'"),
        ("n[1-200000]", "more than the limit"),
        ("role=gpu&", "'role=gpu&': a term must follow '&'"),
        ("&rack=r01", "'&rack=r01': a term must come before '&'"),
        ("a& ,b", "a term must follow '&'"),
        ("a&&b", "a term must follow '&'"),
        ("&", "a term must come before '&'"),
        ("-&b", "a term must come before '&'"),
        ("-role=gpu&", "a term must follow '&'"),
        ("role=gpu&-rack=r01", "'-' excludes a whole term and goes before it"),
        ("@gpu&@", "'@gpu&@': a group name must follow '@'"),
        ("@gpu&rack=", "a value must follow '='"),
        ("@gpu&dal1-r01-n[01-02", "never closed"),
    ],
)
def test_errors(expr: str, message: str) -> None:
    with pytest.raises(SelectionError) as info:
        sel(expr)
    assert message in str(info.value)
    assert isinstance(info.value, FleetError) and info.value.title == "bad selection"


def test_unknown_word_is_reported_as_unknown_node() -> None:
    with pytest.raises(SelectionError, match=r"unknown node\(s\): dal1-r01-n99"):
        sel("dal1-r01-n99")


def test_no_groups_defined() -> None:
    with pytest.raises(SelectionError, match="no groups are defined"):
        select("@gpu", NAMES, attrs=_attrs)


def test_long_lists_of_known_groups_are_cut() -> None:
    groups = {f"g{i}": [] for i in range(30)}
    with pytest.raises(SelectionError, match=r"@g9 and 20 more$"):
        select("@nosuch", NAMES, attrs=_attrs, groups=groups)


def test_allow_empty() -> None:
    assert sel("role=fpga", allow_empty=True) == []
    assert select("-all", [], attrs=_attrs, allow_empty=True) == []


def test_attrs_called_once_per_node() -> None:
    calls: list[str] = []

    def counting(name: str) -> Mapping[str, str | frozenset[str]]:
        calls.append(name)
        return _attrs(name)

    select("rack=r01,off,gpu,-tags=critical", NAMES, attrs=counting)
    assert sorted(calls) == sorted(NAMES)


# --------------------------------------------------------------------------- parse / describe


def test_parse_classifies_terms() -> None:
    parsed = parse("dal1-r01-n[01-02], n1, n*, @gpu, rack=r01, role!=gpu, all, -off")
    assert isinstance(parsed, Selection)
    assert [t.kind for t in parsed.terms] == [
        TermKind.NODES,
        TermKind.NAME,
        TermKind.GLOB,
        TermKind.GROUP,
        TermKind.ATTR,
        TermKind.ATTR,
        TermKind.ALL,
        TermKind.NAME,
    ]
    assert parsed.terms[0].patterns == ("dal1-r01-n01", "dal1-r01-n02")
    assert parsed.terms[5].key == "role" and parsed.terms[5].negate
    assert [t.text for t in parsed.excludes] == ["off"]
    assert len(parsed.includes) == 7


def test_parse_intersection() -> None:
    parsed = parse("role=gpu & rack=r0[1-2], -@gpu&off, n1")
    assert [t.kind for t in parsed.terms] == [TermKind.AND, TermKind.AND, TermKind.NAME]
    first, second = parsed.terms[:2]
    assert first.text == "role=gpu&rack=r0[1-2]" and not first.exclude
    assert [c.kind for c in first.children] == [TermKind.ATTR, TermKind.ATTR]
    assert first.children[1].key == "rack" and first.children[1].patterns == ("r01", "r02")
    assert second.exclude and second.text == "@gpu&off"
    assert [c.kind for c in second.children] == [TermKind.GROUP, TermKind.NAME]
    assert not any(c.exclude for c in second.children)
    assert parsed.excludes == (second,)


def test_describe_intersection() -> None:
    assert describe("role=gpu&rack=r01") == "nodes with role=gpu and nodes with rack=r01"
    assert describe("-@gpu&off") == "all nodes, except group @gpu and node or value 'off'"
    assert (
        describe("role=gpu&rack=r01,mgmt-sw1,-off")
        == "(nodes with role=gpu and nodes with rack=r01) or node or value 'mgmt-sw1', except node or value 'off'"
    )
    assert describe("@r01,-@gpu&critical,-off") == (
        "group @r01, except (group @gpu and node or value 'critical') and node or value 'off'"
    )


def test_describe() -> None:
    assert describe("@gpu,-dal1-r01-n02") == "group @gpu, except node or value 'dal1-r01-n02'"
    assert describe("rack=r07,role!=gpu") == "nodes with rack=r07 or nodes whose role is not gpu"
    assert describe("-off") == "all nodes, except node or value 'off'"
    assert describe("n[01-03],n*") == "3 nodes n[01-03] or nodes matching n*"


# --------------------------------------------------------------------------- properties


@st.composite
def inventories(draw: st.DrawFn) -> list[str]:
    """A shuffled site: a few sites, racks and nodes with varying padding."""
    names: list[str] = []
    for site in draw(st.lists(st.sampled_from(["dal1", "fra2", "sjc10"]), min_size=1, max_size=2, unique=True)):
        racks, nodes, width = draw(st.integers(1, 4)), draw(st.integers(1, 25)), draw(st.integers(1, 3))
        names += expand(f"{site}-r[{'1'.zfill(width)}-{racks}]-n[{'1'.zfill(width)}-{nodes}]")
    names += draw(st.lists(st.sampled_from(["mgmt-sw1", "mgmt-sw2", "pdu7", "head"]), unique=True))
    return draw(st.permutations(names))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), names=inventories())
def test_select_of_compressed_subset_is_the_subset(data: st.DataObject, names: list[str]) -> None:
    subset = set(data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True)))
    expected = [n for n in names if n in subset]
    assert select(compress(subset), names, attrs=lambda n: {}) == expected


@settings(max_examples=40, deadline=None)
@given(data=st.data(), names=inventories())
def test_exclusion_of_compressed_subset_is_the_complement(data: st.DataObject, names: list[str]) -> None:
    subset = set(data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True)))
    expected = [n for n in names if n not in subset]
    expr = ",".join("-" + term for term in split_terms(compress(subset)))
    result = select(expr, names, attrs=lambda n: {}, allow_empty=True)
    assert result == expected


_ATTR_VALUES = {
    "rack": ["r01", "r02", "r03", "r0*", "r0[1-2]", "r9"],
    "role": ["gpu", "cpu", "switch", "*pu", "fpga"],
    "power": ["on", "off", "o*"],
    "tags": ["critical", "drift", "crit*", "none"],
}
_WORDS = ["off", "on", "critical", "drift", "gpu", "cpu", "switch", "r01", "r02", "r03"]


@st.composite
def attribute_terms(draw: st.DrawFn) -> str:
    """key=value, key!=value (values may be globs or ranges, or match nothing) or a word in any case."""
    kind = draw(st.sampled_from(["=", "!=", "word"]))
    if kind == "word":
        word = draw(st.sampled_from(_WORDS))
        return "".join(c.upper() if draw(st.booleans()) else c for c in word)
    key = draw(st.sampled_from(sorted(_ATTR_VALUES)))
    return f"{key}{kind}{draw(st.sampled_from(_ATTR_VALUES[key]))}"


@settings(max_examples=150, deadline=None)
@given(a=attribute_terms(), b=attribute_terms())
def test_intersection_is_the_nodes_both_select(a: str, b: str) -> None:
    in_b = set(sel(b, allow_empty=True))
    assert sel(f"{a}&{b}", allow_empty=True) == [n for n in sel(a, allow_empty=True) if n in in_b]
    assert sel(f"{b}&{a}", allow_empty=True) == sel(f"{a}&{b}", allow_empty=True)
    both = set(sel(f"{a}&{b}", allow_empty=True))
    assert sel(f"-{a}&{b}", allow_empty=True) == [n for n in NAMES if n not in both]


@settings(max_examples=60, deadline=None)
@given(terms=st.lists(attribute_terms(), min_size=1, max_size=4))
def test_intersection_of_many_terms(terms: list[str]) -> None:
    expected = list(NAMES)
    for term in terms:
        chosen = set(sel(term, allow_empty=True))
        expected = [n for n in expected if n in chosen]
    assert sel("&".join(terms), allow_empty=True) == expected


# --------------------------------------------------------------------------- the index


def _outcome(expr: str, attrs) -> list[str] | str:
    try:
        return select(expr, NAMES, attrs=attrs, groups=GROUPS, allow_empty=True)
    except SelectionError as exc:
        return f"error: {exc}"


@settings(max_examples=150, deadline=None)
@given(terms=st.lists(st.one_of(attribute_terms(),
                                st.sampled_from(["dal1-r01-n0*", "@gpu", "Off", "nosuch", "nosuch=1", "-rack=r01"])),
                      min_size=1, max_size=3),
       excluded=st.booleans())
def test_index_selects_what_the_attrs_function_selects(terms: list[str], excluded: bool) -> None:
    expr = ",".join(terms) if not excluded else f"{terms[0]},-" + "&".join(terms)
    assert _outcome(expr, AttrIndex(NAMES, _attrs)) == _outcome(expr, _attrs)


@settings(max_examples=80, deadline=None)
@given(changed=st.lists(st.sampled_from(NAMES), max_size=8, unique=True),
       term=attribute_terms(), sync_first=st.integers(0, 8))
def test_index_follows_changed_nodes(changed: list[str], term: str, sync_first: int) -> None:
    """Nodes change (power flips, tags come and go); after invalidate() the index agrees again,
    whether it re-reads them lazily at the lookup or partly ahead with sync(limit)."""
    current = {n: dict(_attrs(n)) for n in NAMES}
    index = AttrIndex(NAMES, lambda n: current[n])
    index.sync()
    for name in changed:
        attrs = current[name]
        if "power" in attrs:
            attrs["power"] = "on" if attrs["power"] == "off" else "off"
            attrs["tags"] = frozenset({"drift"} ^ set(attrs["tags"]))
        else:
            attrs["role"] = "spare"
    index.invalidate(changed)
    index.sync(limit=sync_first)
    assert index.pending == max(0, len(changed) - sync_first)
    assert _outcome(term, index) == _outcome(term, lambda n: current[n])
    assert _outcome("spare", index) == _outcome("spare", lambda n: current[n])


def test_index_reads_each_node_once_until_invalidated() -> None:
    reads: list[str] = []

    def counting(name: str):
        reads.append(name)
        return _attrs(name)

    index = AttrIndex(NAMES, counting)
    for expr in ("off", "rack=r01", "critical", "role!=gpu", "rack=r0*"):
        select(expr, NAMES, attrs=index)
    assert sorted(reads) == sorted(NAMES)
    index.invalidate(["dal1-r01-n01"])
    select("off", NAMES, attrs=index)
    assert len(reads) == len(NAMES) + 1


def test_a_vocabulary_word_no_node_has_selects_nothing() -> None:
    """Live state words (the TUI's ``off``) select nothing while no node has them; other
    unknown words are still typos."""
    assert select("critical", NAMES, attrs=_attrs, allow_empty=True, vocabulary={"warning"}) == sel("critical")
    assert select("Warning", NAMES, attrs=_attrs, allow_empty=True, vocabulary={"warning"}) == []
    assert select("warning,off", NAMES, attrs=_attrs, vocabulary={"warning"}) == sel("off")
    with pytest.raises(SelectionError, match="unknown node"):
        select("warnin", NAMES, attrs=_attrs, allow_empty=True, vocabulary={"warning"})
