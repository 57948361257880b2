"""Node range expansion, compression and natural order (inventory.ranges)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory.errors import FleetError
from inventory.ranges import (
    MAX_ITEMS,
    RangeError,
    compress,
    count,
    count_parallel,
    expand,
    expand_parallel,
    natural_key,
)

# --------------------------------------------------------------------------- expand


def test_padded_range() -> None:
    names = expand("dal1-r01-n[01-40]")
    assert len(names) == 40
    assert names[0] == "dal1-r01-n01"
    assert names[8:10] == ["dal1-r01-n09", "dal1-r01-n10"]
    assert names[-1] == "dal1-r01-n40"


def test_unpadded_range() -> None:
    assert expand("n[1-20]")[8:10] == ["n9", "n10"]
    assert expand("n[8-10]") == ["n8", "n9", "n10"]


def test_padding_grows_past_the_width() -> None:
    assert expand("n[098-101]") == ["n098", "n099", "n100", "n101"]
    assert expand("n[01-100]")[-2:] == ["n99", "n100"]


def test_list_inside_brackets_keeps_the_written_order() -> None:
    assert expand("n[01-03,07,10-11]") == ["n01", "n02", "n03", "n07", "n10", "n11"]
    assert expand("n[10,01-02]") == ["n10", "n01", "n02"]
    assert expand("n[01 - 02, 05]") == ["n01", "n02", "n05"]


def test_cartesian_product_first_group_slowest() -> None:
    assert expand("r[1-2]-n[1-2]") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]
    assert len(expand("dal1-r[01-04]-n[01-40]")) == 160


def test_ip_and_mac() -> None:
    assert expand("10.2.1.[11-50]")[:2] == ["10.2.1.11", "10.2.1.12"]
    assert len(expand("10.2.1.[11-50]")) == 40
    macs = expand("52:54:00:01:00:[01-20]")
    assert len(macs) == 20  # [01-20] has no hex letter: decimal
    assert macs[-1] == "52:54:00:01:00:20"


def test_hex_keeps_width_and_case() -> None:
    assert expand("m[0a-0f]") == ["m0a", "m0b", "m0c", "m0d", "m0e", "m0f"]
    assert expand("m[0A-0C]") == ["m0A", "m0B", "m0C"]
    assert expand("m[09-0c]") == ["m09", "m0a", "m0b", "m0c"]
    assert expand("m[fe-101]") == ["mfe", "mff", "m100", "m101"]
    assert len(expand("52:54:00:01:00:[00-ff]")) == 256


def test_plain_strings_and_commas() -> None:
    assert expand("mgmt-sw1") == ["mgmt-sw1"]
    assert expand("a, b ,n[1-2]") == ["a", "b", "n1", "n2"]
    assert expand("n[07]") == ["n07"]


def test_duplicates_are_dropped_keeping_the_first() -> None:
    assert expand("n[1-3],n2,n[3,1]") == ["n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("n[01-10", "never closed"),
        ("n01-10]", "without a matching '['"),
        ("n[[1-2]]", "inside brackets"),
        ("n[10-01]", "reversed range '10-01'"),
        ("n[]", "empty brackets"),
        ("n[1,,2]", "empty item"),
        ("n[1-]", "missing a bound"),
        ("n[1-2-3]", "malformed range"),
        ("n[a-z]", "'z' is not a number"),
        ("n[x]", "'x' is not a number"),
        ("n[0A-0f]", "mixes upper and lower case"),
        ("a,,b", "empty name"),
        ("a,", "empty name"),
        ("n[1-100001]", "more than the limit"),
        ("r[1-1000]-n[1-1000]", "1,000,000 names"),
        ("n[1-" + "9" * 40 + "]", "too long"),
    ],
)
def test_errors(pattern: str, words: str) -> None:
    with pytest.raises(RangeError) as info:
        expand(pattern)
    assert words in str(info.value)


def test_range_error_is_a_value_error_and_a_fleet_error() -> None:
    with pytest.raises(ValueError):
        expand("n[2-1]")
    with pytest.raises(FleetError) as info:
        expand("n[2-1]")
    assert info.value.title == "bad range"


def test_limit_is_exact() -> None:
    assert len(expand(f"n[1-{MAX_ITEMS}]")) == MAX_ITEMS


@settings(max_examples=60, deadline=None)
@given(
    lo=st.integers(0, 5000),
    count=st.integers(1, 300),
    width=st.integers(0, 5),
    prefix=st.sampled_from(["n", "dal1-r01-n", "10.2.1.", ""]),
    suffix=st.sampled_from(["", "-bmc", ".mgmt"]),
)
def test_generated_ranges_count_and_padding(lo: int, count: int, width: int, prefix: str, suffix: str) -> None:
    hi = lo + count - 1
    lo_text = str(lo).zfill(width)
    names = expand(f"{prefix}[{lo_text}-{hi}]{suffix}")
    assert len(names) == count
    padded = len(lo_text) > 1 and lo_text[0] == "0"
    for value, name in zip(range(lo, hi + 1), names, strict=True):
        assert name == f"{prefix}{str(value).zfill(len(lo_text) if padded else 0)}{suffix}"


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3))
def test_generated_products_count(sizes: list[int]) -> None:
    pattern = "-".join(f"g{i}[1-{size}]" for i, size in enumerate(sizes))
    names = expand(pattern)
    expected = 1
    for size in sizes:
        expected *= size
    assert len(names) == len(set(names)) == expected


# --------------------------------------------------------------------------- expand_parallel


def test_parallel_in_step_with_broadcast() -> None:
    rows = expand_parallel(
        {
            "name": "dal1-r03-n[01-20]",
            "u": "[1-20]",
            "mac": "52:54:00:01:00:[01-20]",
            "host": "10.3.1.[1-20]",
            "rack": "r03",
        }
    )
    assert len(rows) == 20
    assert rows[0] == {
        "name": "dal1-r03-n01",
        "u": "1",
        "mac": "52:54:00:01:00:01",
        "host": "10.3.1.1",
        "rack": "r03",
    }
    assert rows[19]["name"] == "dal1-r03-n20" and rows[19]["host"] == "10.3.1.20"


def test_parallel_keeps_duplicates_in_a_column() -> None:
    rows = expand_parallel({"name": "n[1-3]", "rack": "r[1,1,2]"})
    assert [r["rack"] for r in rows] == ["r1", "r1", "r2"]


def test_parallel_all_single_and_empty() -> None:
    assert expand_parallel({"name": "n1", "u": "7"}) == [{"name": "n1", "u": "7"}]
    assert expand_parallel({}) == []


def test_parallel_size_mismatch_names_both_fields() -> None:
    with pytest.raises(RangeError) as info:
        expand_parallel({"name": "n[01-20]", "u": "[1-20]", "mac": "aa:[01-19]"})
    message = str(info.value)
    assert "name expands to 20" in message and "mac expands to 19" in message


def test_parallel_bad_pattern_names_the_field() -> None:
    with pytest.raises(RangeError, match=r"^host: .*reversed range"):
        expand_parallel({"name": "n[1-2]", "host": "10.0.0.[9-1]"})


@settings(max_examples=30, deadline=None)
@given(a=st.integers(2, 40), b=st.integers(2, 40))
def test_parallel_mismatch_property(a: int, b: int) -> None:
    patterns = {"name": f"n[1-{a}]", "u": f"[1-{b}]"}
    if a == b:
        assert len(expand_parallel(patterns)) == a
    else:
        with pytest.raises(RangeError, match=f"name expands to {a} values but u expands to {b}"):
            expand_parallel(patterns)


# --------------------------------------------------------------------------- compress


def test_compress_examples() -> None:
    assert compress(["n01", "n02", "n03", "n04", "n05", "n07"]) == "n[01-05,07]"
    assert compress(["n3", "n1", "n2", "n2"]) == "n[1-3]"
    assert compress(["n08", "n09", "n10", "n11"]) == "n[08-11]"
    assert compress(["n9", "n10"]) == "n[9-10]"
    assert compress(["n1", "n01"]) == "n[1,01]"
    assert compress(["r1-n1", "r1-n2", "r2-n1"]) == "r1-n[1-2],r2-n1"
    assert compress(["mgmt-sw1"]) == "mgmt-sw1"
    assert compress([]) == ""


def test_compress_varies_the_last_changing_number() -> None:
    names = expand("dal1-r[01-02]-n[01-40]")
    assert compress(names) == "dal1-r01-n[01-40],dal1-r02-n[01-40]"


@pytest.mark.parametrize("bad", ["", " n1", "n[1]", "a,b"])
def test_compress_refuses_names_range_syntax_cannot_spell(bad: str) -> None:
    with pytest.raises(RangeError):
        compress(["n1", bad])


_structured = st.builds(
    lambda prefix, number, width, suffix: f"{prefix}{str(number).zfill(width)}{suffix}",
    st.sampled_from(["n", "dal1-r01-n", "dal1-r02-n", "10.2.1.", "x", ""]),
    st.integers(0, 120),
    st.integers(0, 4),
    st.sampled_from(["", "-bmc", "a7"]),
)
_free_text = st.text(
    alphabet=st.characters(blacklist_characters="[],", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
).filter(lambda s: s == s.strip())


@settings(max_examples=150, deadline=None)
@given(names=st.lists(st.one_of(_structured, _structured, _free_text), min_size=1, max_size=60))
def test_expand_compress_round_trip(names: list[str]) -> None:
    assert expand(compress(names)) == sorted(set(names), key=natural_key)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), racks=st.integers(1, 4), nodes=st.integers(2, 45))
def test_compress_of_a_whole_rack_is_one_term_per_rack(data: st.DataObject, racks: int, nodes: int) -> None:
    names = expand(f"dal1-r[01-{racks:02}]-n[01-{nodes:02}]")
    shuffled = data.draw(st.permutations(names))
    compressed = compress(shuffled)
    assert compressed.count("dal1-") == racks
    assert expand(compressed) == names


# --------------------------------------------------------------------------- natural_key


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["n10", "n2", "n1", "r10-n1", "r2-n9", "n01", "m", "n"]
    assert sorted(names, key=natural_key) == ["m", "n", "n1", "n01", "n2", "n10", "r2-n9", "r10-n1"]


@settings(max_examples=60, deadline=None)
@given(a=st.text(max_size=8), b=st.text(max_size=8))
def test_natural_key_is_total_and_distinct(a: str, b: str) -> None:
    # comparing never raises, and only equal strings get equal keys
    assert (natural_key(a) == natural_key(b)) == (a == b)
    assert (natural_key(a) < natural_key(b)) or (natural_key(a) >= natural_key(b))


# --------------------------------------------------------------------------- counting without expanding


def test_count_is_arithmetic() -> None:
    assert count("n[01-20],m[1-3]-x[1-2]") == 26
    assert count("n[1,1]") == 2  # duplicates count: a column keeps them
    # 20 x 99,999 would be 2 million names to expand; counting them is instant
    assert sum(count(f"r{i}-n[1-99999]") for i in range(20)) == 1_999_980
    with pytest.raises(RangeError, match="more than the limit"):
        count(f"n[1-{MAX_ITEMS + 1}]")


def test_count_parallel_names_the_field_at_fault() -> None:
    assert count_parallel({"name": "n[1-3]", "u": "[1-3]", "rack": "r1"}) == 3
    assert count_parallel({}) == 0
    with pytest.raises(RangeError) as info:
        count_parallel({"name": "n[1-3]", "u": "[1-3]", "host": "10.0.0.[1-2]"})
    assert info.value.field == "host"
    with pytest.raises(RangeError) as info:
        expand_parallel({"name": "n[1-2]", "u": "[1-2]", "host": "10.0.0.[9-1]"})
    assert info.value.field == "host" and str(info.value).startswith("host: ")
