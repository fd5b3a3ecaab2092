"""The kernel_log collector against real kernel log lines quoted in public reports and captured by the kernel lab
(kernel_log_corpus/lines.yaml): each line's event by itself, and the whole corpus written as /dev/kmsg records into
a file that the real exporter reads, with every count checked."""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from conftest import fixture_flags, promtool_check_metrics, wait_for
from metrics_text import value
from kmem_exporter.parsers.kernel_log_patterns import EVENTS, EVENTS_WITH_ORDER, KernelEvent, match_event
from test_kernel_log_collector import ONLY_KERNEL_LOG, events, expected_zero_series

CORPUS = Path(__file__).parent / "kernel_log_corpus" / "lines.yaml"
USER_FACILITY = 1
WARNING = 4

# A syslog prefix ("Mar  2 17:35:10 host kernel: ", " kernel:") and a dmesg time stamp ("[2858609.598568] ",
# "[Mon Apr 20 15:08:07 2020] ") in front of the message text.
_SYSLOG_PREFIX = re.compile(r"^.*?\bkernel: ?")
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ?|^\[[A-Z][a-z]{2} [^\]]*\d{4}\] ?")


def load_corpus() -> list[dict[str, Any]]:
    entries = yaml.safe_load(CORPUS.read_text())
    assert isinstance(entries, list) and entries
    return entries


def kmsg_text(line: str) -> str:
    """The text /dev/kmsg gives for a line copied from syslog or dmesg."""
    text = _SYSLOG_PREFIX.sub("", line, count=1)
    return _TIMESTAMP.sub("", text, count=1)


def expected_event(entry: dict[str, Any]) -> Optional[KernelEvent]:
    if entry["event"] is None:
        return None
    return KernelEvent(entry["event"], entry.get("order"))


def from_kernel(entry: dict[str, Any]) -> bool:
    return entry.get("facility", "kernel") == "kernel"


def escape(text: str) -> bytes:
    r"""The text as /dev/kmsg writes it: control bytes, bytes from 0x7f up and the backslash as \xNN."""
    return b"".join(bytes((b,)) if 0x20 <= b < 0x7f and b != 0x5c else b"\\x%02x" % b for b in text.encode())


def kmsg_records(entries: list[dict[str, Any]], first_seq: int) -> bytes:
    records = []
    for seq, entry in enumerate(entries, start=first_seq):
        prio = (0 if from_kernel(entry) else USER_FACILITY) << 3 | WARNING
        records.append(b"%d,%d,%d,-;%s\n" % (prio, seq, seq * 1000, escape(kmsg_text(entry["line"]))))
    return b"".join(records)


CORPUS_ENTRIES = load_corpus()


def entry_id(entry: dict[str, Any]) -> str:
    return f"{entry['event']}:{kmsg_text(entry['line'])[:60]}"


@pytest.mark.parametrize("entry", CORPUS_ENTRIES, ids=entry_id)
def test_corpus_line(entry: dict[str, Any]) -> None:
    """Each kernel line is the event it is listed as, or none; user-space entries repeat kernel texts on purpose,
    so only the collector (by facility) keeps them out."""
    assert set(entry) <= {"line", "source", "kernel", "event", "order", "facility", "real", "note"}
    assert isinstance(entry["source"], str) and isinstance(entry["kernel"], str) and entry["source"]
    if from_kernel(entry):
        assert match_event(kmsg_text(entry["line"])) == expected_event(entry)


def test_corpus_covers_every_event_with_real_lines() -> None:
    real = [e for e in CORPUS_ENTRIES if e.get("real", True) and from_kernel(e)]
    assert {e["event"] for e in real if e["event"]} == set(EVENTS)
    assert all(e["source"].startswith(("http://", "https://", "tests/samples/", "kmem-exporter lab on Debian kernel "))
               for e in real)
    assert all(e.get("order") is not None for e in real if e["event"] in EVENTS_WITH_ORDER)
    assert any(not from_kernel(e) for e in CORPUS_ENTRIES)


def test_one_oom_kill_per_victim_in_every_format() -> None:
    """Whatever lines a kernel prints around a kill (the victim's choice, the task list, the reaper), only the
    "Killed process" line counts, once per victim pid."""
    for entry in CORPUS_ENTRIES:
        text = kmsg_text(entry["line"])
        if from_kernel(entry) and re.search(r"\bKill(ed)? process \d+|reaped process \d+", text):
            killed = re.search(r"\bKilled process \d+", text) is not None
            assert (match_event(text) == KernelEvent("oom_kill", None)) == killed, text


def test_corpus_through_the_exporter(tmp_path: Path, exporter_factory) -> None:  # type: ignore[no-untyped-def]
    """Every corpus line as one record of a file in the /dev/kmsg format, appended after the exporter opened it:
    the counts are exactly the corpus's kernel-facility events, user-space records are read but not counted."""
    log = tmp_path / "kmsg"
    log.touch()
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), f"--path.kmsg={log}", *ONLY_KERNEL_LOG)
    with open(log, "ab") as f:
        f.write(kmsg_records(CORPUS_ENTRIES, first_seq=1000))
    total = len(CORPUS_ENTRIES)
    exposition = wait_for(f"{total} records", exporter.metrics,
                          lambda e: value(e, "kmem_kernel_log_records_read_total") >= total)
    counted = collections.Counter(
        (e["event"],) if e.get("order") is None else (e["event"], e["order"])
        for e in CORPUS_ENTRIES if e["event"] is not None and from_kernel(e))
    expected = expected_zero_series(11)
    expected.update({key: float(n) for key, n in counted.items()})
    assert events(exposition) == expected
    assert value(exposition, "kmem_kernel_log_records_read_total") == total
    assert value(exposition, "kmem_kernel_log_records_lost_total") == 0
    assert promtool_check_metrics(exposition) == ""
