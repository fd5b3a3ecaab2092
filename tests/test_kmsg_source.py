"""The /dev/kmsg record parser on records as this machine's kernel and a 3.10 kernel return them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.kmsg import KmsgRecord, parse_record, split_records, unescape
from fuzzing import parse_or_none

FIXTURES = Path(__file__).parent / "fixtures"


def test_record_with_dictionary() -> None:
    """A record as read from this machine's /dev/kmsg (Linux 6.18): the dictionary lines are not text."""
    raw = (b"6,194,293174,-;acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig ASPM ClockPM Segments MSI HPX-Type3]\n"
           b" SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A08:00\n")
    assert parse_record(raw) == KmsgRecord(
        facility=0, level=6, seq=194, usec=293174, flags="-",
        text="acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig ASPM ClockPM Segments MSI HPX-Type3]",
        fields={"SUBSYSTEM": "acpi", "DEVICE": "+acpi:PNP0A08:00"},
    )


def test_user_space_record_has_facility_1() -> None:
    """`echo '<4>text' > /dev/kmsg` is stored with LOG_USER: prio (1 << 3) | 4."""
    record = parse_record(b"12,4711,98765432,-;exe: page allocation failure: order:6, mode:0x10c0d0\n")
    assert (record.facility, record.level, record.from_kernel) == (1, 4, False)
    assert parse_record(b"4,1,2,-;x\n").from_kernel


def test_header_with_caller_field_and_continuation_flag() -> None:
    record = parse_record(b"4,52,7001,c,caller=T1234;exe: page allocation failure: order:3\n")
    assert (record.seq, record.usec, record.flags, record.text) == (
        52, 7001, "c", "exe: page allocation failure: order:3")


def test_escaped_bytes() -> None:
    r"""The kernel escapes control bytes, bytes >= 0x7f and the backslash as \xNN: a UTF-8 comm, a newline
    inside the message, a backslash."""
    record = parse_record(b"4,9,10,-;\\xe6\\x97\\xa5\\xe6\\x9c\\xac: page allocation failure: order:2\\x0aline two"
                          b" C:\\x5cpath\n DRIVER=e1000\\x0a\n")
    assert record.text == "\u65e5\u672c: page allocation failure: order:2\nline two C:\\path"
    assert record.fields == {"DRIVER": "e1000\n"}
    assert unescape(b"\\xff\\xzz") == "\ufffd\\xzz"  # an invalid byte replaced, a non-escape kept


def test_record_cut_without_newline() -> None:
    """A record the kernel cut to fit its buffer ends without a newline, in the text or in the dictionary."""
    assert parse_record(b"4,9,10,-;kmem_cache_create(nf_conntrack_ffff8803eef66180) failed with err").text == \
        "kmem_cache_create(nf_conntrack_ffff8803eef66180) failed with err"
    assert parse_record(b"4,9,10,-;text\n SUBSYSTEM=ac").fields == {"SUBSYSTEM": "ac"}


@pytest.mark.parametrize("raw,reason", [
    (b"", "no ';'"),
    (b"garbage without header\n", "no ';'"),
    (b"4,9;text\n", "expected 'prio,seq,usec,flags;'"),
    (b"4,x,10,-;text\n", "non-numeric"),
    (b"-4,9,10,-;text\n", "negative"),
    (b"4,9,10,-;text\nsecond line\n", "does not start with a space"),
])
def test_malformed_records(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_record(raw)


def test_split_records_of_a_stream() -> None:
    stream = (FIXTURES / "rhel7-fragmented" / "dev" / "kmsg").read_bytes()
    records = [parse_record(r) for r in split_records(stream)]
    assert len(records) == 20
    assert records[0] == KmsgRecord(0, 4, 48211, 3871204512, "-",
                                    "exe: page allocation failure: order:6, mode:0x10c0d0")
    assert records[-1].text == "Unable to create nf_conn slab cache"
    assert records[-1].level == 3
    assert [r.seq for r in records] == list(range(48211, 48231))


def test_split_keeps_continuation_lines_with_their_record() -> None:
    stream = b" ORPHAN=1\n6,1,2,-;one\n A=1\n B=2\n\n6,2,3,-;two\n6,3,4,-;three cut"
    assert split_records(stream) == [b"6,1,2,-;one\n A=1\n B=2", b"6,2,3,-;two", b"6,3,4,-;three cut"]
    assert split_records(b"") == []


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_parse_error(raw: bytes) -> None:
    parse_or_none(parse_record, raw)
    for record in split_records(raw):
        parse_or_none(parse_record, record)


@given(st.integers(min_value=0, max_value=80))
def test_truncated_real_record_raises_only_parse_error(cut: int) -> None:
    raw = b"6,194,293174,-;acpi PNP0A08:00: _OSC: OS supports\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A08:00\n"
    record = parse_or_none(parse_record, raw[:cut])
    assert record is None or (record.seq == 194 and "acpi PNP0A08:00: _OSC: OS supports".startswith(record.text))
