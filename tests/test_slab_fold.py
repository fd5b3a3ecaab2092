"""The one-pass slabinfo parse-and-fold agrees with the plain parser and fold on every input, and names are kept."""

from __future__ import annotations

import re
from typing import Iterator, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from kmem_exporter.parsers import ParseError, slab_fold, slab_grouping
from kmem_exporter.parsers.slab_fold import parse_slab_families
from kmem_exporter.parsers.slabinfo import (ConntrackCaches, SlabSummary, conntrack_caches, family_name, fold_caches,
                                       is_conntrack_cache, is_memcg_copy, parse_slabinfo)

HEADER = ("slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> "
          ": tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n")
HOSTS = sorted(p.parent.parent.name for p in FIXTURES.glob("*/proc/slabinfo"))


def plain(text: str, fold: bool) -> SlabSummary:
    """What parse_slab_families must give: the straightforward reading."""
    caches = parse_slabinfo(text)
    return SlabSummary(fold_caches(caches, fold), conntrack_caches(caches))


def outcome(parse: object, text: str, fold: bool) -> object:
    """The result, or the ParseError's message; any other exception fails the test."""
    try:
        return parse(text, fold)  # type: ignore[operator]
    except ParseError as error:
        return f"ParseError: {error}"


def assert_same(text: str) -> None:
    for fold in (True, False):
        assert outcome(parse_slab_families, text, fold) == outcome(plain, text, fold)


@pytest.fixture(params=[1 << 18, 97], ids=["chunks of 256k", "chunks of 97 characters"])
def chunk_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Small chunks put chunk boundaries everywhere."""
    monkeypatch.setattr(slab_fold, "_CHUNK_CHARACTERS", request.param)
    slab_grouping._FAMILY_MEMO.clear()
    yield request.param


@pytest.mark.parametrize("host", HOSTS)
def test_every_fixture_gives_what_the_plain_reading_gives(host: str, chunk_size: int) -> None:
    text = (FIXTURES / host / "proc" / "slabinfo").read_text()
    assert_same(text)


@pytest.mark.parametrize("host", HOSTS)
def test_above_the_name_bound_the_conntrack_caches_are_still_counted(host: str) -> None:
    """A bound of one name stops the folding at once: no series, the reason, and the conntrack caches that the plain
    reading gives (or the same ParseError, for a file that has none)."""
    text = (FIXTURES / host / "proc" / "slabinfo").read_text()
    expected = outcome(plain, text, True)
    summary = outcome(lambda text, fold: parse_slab_families(text, fold, max_names=1), text, True)
    if isinstance(expected, str) or len(expected.families) <= 1:  # type: ignore[attr-defined]
        return
    assert isinstance(summary, SlabSummary) and summary.families == []
    assert summary.too_large == "more than 1 slab cache names to export: more series than the collection's bound " \
                                "(--collector.max-series) allows"
    assert summary.conntrack == expected.conntrack  # type: ignore[attr-defined]


def test_conntrack_summary_of_the_rhel7_sample() -> None:
    summary = parse_slab_families((FIXTURES / "rhel7-fragmented" / "proc" / "slabinfo").read_text())
    assert summary.conntrack == ConntrackCaches(8, 4650, 4775)
    unfolded = parse_slab_families((FIXTURES / "rhel7-fragmented" / "proc" / "slabinfo").read_text(), False)
    assert unfolded.conntrack == summary.conntrack and len(unfolded.families) == 8


def test_conntrack_summary_leaves_out_memcg_copies_and_expect() -> None:
    text = HEADER + ("nf_conntrack 10 16 256 16 1 : tunables 0 0 0 : slabdata 1 1 0\n"
                     "nf_conntrack(12:docker-abc) 3 16 256 16 1 : tunables 0 0 0 : slabdata 1 1 0\n"
                     "nf_conntrack_12 5 16 256 16 1 : tunables 0 0 0 : slabdata 1 1 0\n"
                     "nf_conntrack_expect 7 16 256 16 1 : tunables 0 0 0 : slabdata 1 1 0\n")
    summary = parse_slab_families(text)
    assert summary.conntrack == ConntrackCaches(2, 15, 32)
    assert [(f.name, f.caches) for f in summary.families] == [("nf_conntrack", 3), ("nf_conntrack_expect", 1)]


# -------------------------------------------------------------------------------- names the kernel prints as they are

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\r", "\x0b", "\x0c", "\u00a0", "\t"]


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
def test_memcg_cache_named_with_a_line_separator_is_kept_as_is(separator: str) -> None:
    name = f"dentry(1234:tenant{separator}name)"
    text = HEADER + (f"{name} 21 21 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n"
                     "dentry 100 100 192 21 1 : tunables 0 0 0 : slabdata 5 5 0\n"
                     "nf_conntrack_ffff8803f0b7ba80 25 25 320 25 2 : tunables 0 0 0 : slabdata 1 1 0\n")
    caches = parse_slabinfo(text)
    assert [c.name for c in caches] == [name, "dentry", "nf_conntrack_ffff8803f0b7ba80"]
    summary = parse_slab_families(text)
    assert [(f.name, f.caches, f.active_objects) for f in summary.families] == [("dentry", 2, 121),
                                                                                ("nf_conntrack", 1, 25)]
    assert summary.conntrack == ConntrackCaches(1, 25, 25)
    assert name in {f.name for f in parse_slab_families(text, fold_families=False).families}
    assert_same(text)


# ---------------------------------------------------------------------------------------------- values beyond 64 bits

@pytest.mark.parametrize("value, message", [
    (str(2**64), "line 3: num_objs does not fit in 64 bits: 18446744073709551616"),
    ("9" * 309, "line 3: num_objs does not fit in 64 bits: 999999999999999999999999... (309 characters)"),
    ("9" * 5000, "line 3: num_objs does not fit in 64 bits"),
    ("-1", "line 3: num_objs is not a non-negative integer: '-1' (the kernel prints it unsigned)"),
    ("+1", "line 3: num_objs is not a non-negative integer: '+1'"),
    ("1_0", "line 3: num_objs is not a non-negative integer: '1_0'"),
])
def test_values_that_cannot_be_exported_are_refused(value: str, message: str, chunk_size: int) -> None:
    text = HEADER + f"dentry 1 {value} 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n"
    for parse in (parse_slabinfo, parse_slab_families):
        with pytest.raises(ParseError) as error:
            parse(text)
        assert str(error.value).startswith(message)


@pytest.mark.parametrize("column", range(11))
def test_the_largest_64_bit_value_is_taken_in_every_column(column: int) -> None:
    numbers = ["1"] * 11
    numbers[column] = str(2**64 - 1)
    line = "dentry {} {} {} {} {} : tunables {} {} {} : slabdata {} {} {}\n".format(*numbers)
    assert_same(HEADER + line)
    numbers[column] = str(2**64)
    line = "dentry {} {} {} {} {} : tunables {} {} {} : slabdata {} {} {}\n".format(*numbers)
    with pytest.raises(ParseError, match="line 3: .* does not fit in 64 bits"):
        parse_slab_families(HEADER + line)


# --------------------------------------------------------------------------------------------- random valid files

# The reference spelling of the folding rules (the regular expressions the parser once used).
_MEMCG = re.compile(r"(?P<family>.+?)\(\d+:.*\)")
_ADDRESS = re.compile(r"(?P<family>.+)_(?=[a-f]*[0-9])(?:[0-9a-f]{16}|[0-9a-f]{8})")
_COUNTER = re.compile(r"(?P<family>.+)_\d+")


def reference_family(name: str) -> str:
    memcg = _MEMCG.fullmatch(name)
    if memcg:
        name = memcg.group("family")
    instance = _ADDRESS.fullmatch(name) or _COUNTER.fullmatch(name)
    if instance and instance.group("family") != "pid":
        return instance.group("family")
    return name


NAME_PIECES = st.sampled_from(["dentry", "nf_conntrack", "pid", "kmalloc-64", "_", "(", ")", ":", "12", "1234:",
                               "ffff8803f0b7ba80", "c0a8b000", "deadbeef", "ABCDEF01", "٣", "a", "x y", "\u2028", "-"])
NAMES = st.lists(NAME_PIECES, min_size=1, max_size=6).map("".join).filter(lambda n: n.strip() != "")


@settings(max_examples=500)
@given(NAMES)
def test_family_name_follows_the_reference_rules(name: str) -> None:
    name = name.replace("\n", "")
    assert family_name(name) == reference_family(name)
    assert is_memcg_copy(name) == (_MEMCG.fullmatch(name) is not None)
    assert is_conntrack_cache(name) == (reference_family(name) == "nf_conntrack" and not is_memcg_copy(name))


NUMBER = st.one_of(st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=2**64 - 1))
SPACES = st.sampled_from([" ", "  ", "      ", "\t"])


@st.composite
def cache_lines(draw: st.DrawFn) -> str:
    name = draw(st.one_of(NAMES, st.sampled_from(["dentry", "nf_conntrack_ffff8803f0b7ba80", "dentry(5:a b)"])))
    numbers = [str(draw(NUMBER)) for _ in range(11)]
    gap = draw(SPACES)
    return (f"{name}{gap}{' '.join(numbers[:5])} : tunables {' '.join(numbers[5:8])} : slabdata "
            f"{' '.join(numbers[8:])}")


@st.composite
def slabinfo_files(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.one_of(cache_lines(), st.sampled_from(["", "# comment", "   "])), min_size=1,
                          max_size=40))
    return HEADER + "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@settings(max_examples=300)
@given(slabinfo_files(), st.sampled_from([1 << 18, 64, 1]))
def test_one_pass_equals_the_plain_reading_on_random_files(text: str, chunk: int) -> None:
    saved = slab_fold._CHUNK_CHARACTERS
    slab_fold._CHUNK_CHARACTERS = chunk
    try:
        assert_same(text)
    finally:
        slab_fold._CHUNK_CHARACTERS = saved


@settings(max_examples=300)
@given(slabinfo_files(), st.integers(min_value=0), st.integers(min_value=0),
       st.sampled_from(["-", "9" * 25, "\u2028", "\n", "\x00", ":", " ", "#", "x", "١", "tunables", ""]))
def test_one_pass_equals_the_plain_reading_on_damaged_files(text: str, cut: int, at: int, insert: str) -> None:
    at %= len(text) + 1
    assert_same(text[: cut % (len(text) + 1)])
    assert_same(text[:at] + insert + text[at + 1:])


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_random_text_after_the_header(body: str) -> None:
    assert_same(HEADER + body)


def test_statistics_files_take_the_plain_path() -> None:
    text = ("slabinfo - version: 2.1 (statistics)\n"
            "dentry 94813 107840 192 20 1 : tunables 120 60 8 : slabdata 5392 5392 204 : globalstat 812345 107840 "
            "6001 20 0 4 0 0 0 : cpustat 700000 12000 650000 9000\n")
    assert_same(text)


def _summary_or_none(text: str) -> Optional[SlabSummary]:
    try:
        return parse_slab_families(text)
    except ParseError:
        return None


def test_header_and_empty_files_are_refused_like_the_plain_reading() -> None:
    for text in ("", "\n", "slabinfo - version: 2.0\n", HEADER, HEADER + "\n\n", "junk\n"):
        assert _summary_or_none(text) is None
        assert_same(text)


def test_chunks_kept_from_the_previous_parse_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse after parse, with lines changed first near the end (a live cache), then at the start (a new cache
    listed first), then a malformed line, then the first text again: each result is the plain reading's."""
    monkeypatch.setattr(slab_fold, "_CHUNK_CHARACTERS", 400)
    original = (FIXTURES / "rhel7-fragmented" / "proc" / "slabinfo").read_text()
    lines = original.split("\n")
    late, early, broken = list(lines), list(lines), list(lines)
    late[-2] = re.sub(r" 0 ", " 42 ", late[-2], count=1) if " 0 " in late[-2] else late[-2].replace("  ", " 9", 1)
    early.insert(2, "nf_conntrack_ffff88000000beef     25     25    320   25    2 : tunables    0    0    0 : "
                    "slabdata      1      1      0")
    broken[3] = broken[3][:20]
    slab_fold._CHUNK_MEMO.clear()
    for text in (original, original, "\n".join(late), "\n".join(early), "\n".join(broken), original):
        assert_same(text)
    assert slab_fold._CHUNK_MEMO, "the chunks of the last parse are kept"


@settings(max_examples=200)
@given(slabinfo_files(), slabinfo_files(), st.lists(st.integers(min_value=0), max_size=5))
def test_lines_kept_from_the_previous_parse_give_the_same_results(first: str, second: str, picks: list[int]) -> None:
    """A file of one chunk is parsed line by line, each line's result kept for the next parse: a second file that
    repeats some of the first's lines (in another order, twice, beside new ones) reads as the plain reading does."""
    old_lines = first.split("\n")[1:]
    reused = [old_lines[i % len(old_lines)] for i in picks] if old_lines else []
    mixed = second + "\n" + "\n".join(reused) if reused else second
    slab_fold._LINE_MEMO.clear()
    assert_same(first)
    assert_same(mixed)
    assert_same(first)


def test_a_cache_listed_first_leaves_the_chunks_below_it_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """3.10 lists a new network namespace's conntrack cache first: chunk boundaries depend on the lines, not on
    offsets from the top, so only chunks near the top are parsed again. Which lines end chunks depends on their hash,
    which differs from one run to the next: usually the first chunk alone is parsed again, at times a few more (5
    of 32 in 1 run of 200); boundaries at fixed offsets would have every chunk parsed again."""
    monkeypatch.setattr(slab_fold, "_CHUNK_CHARACTERS", 8000)
    line = ("nf_conntrack_ffff8800{:08x}     25     25    320   25    2 : tunables    0    0    0 : "
            "slabdata      1      1      0")
    header = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> ...\n"
    text = header + "".join(line.format(0x1000 + i * 0x140) + "\n" for i in range(3000))
    newer = header + line.format(0xfffff) + "\n" + text[len(header):]
    parsed: list[str] = []
    original = slab_fold._fold_regular_chunk

    def counting(chunk: str, fold_families: bool, totals: slab_fold.Totals) -> bool:
        parsed.append(chunk)
        return original(chunk, fold_families, totals)

    monkeypatch.setattr(slab_fold, "_fold_regular_chunk", counting)
    slab_fold._CHUNK_MEMO.clear()
    assert parse_slab_families(text, True) == plain(text, True)
    chunks = len(parsed)
    assert chunks > 20
    parsed.clear()
    assert parse_slab_families(newer, True) == plain(newer, True)
    assert 1 <= len(parsed) < chunks // 2, f"{len(parsed)} of {chunks} chunks parsed again"
