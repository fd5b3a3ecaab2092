"""A collector is complete or failed, and an answer is whole or absent, when memory runs out: real MemoryErrors
(from an allocation no machine can make, put where a parse or the writing of a family allocates), real fixture
files, the real server over real sockets."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

import kmem_exporter.collectors.slabinfo as slabinfo_collector
import kmem_exporter.exposition as exposition
from conftest import fixture_flags
from hostile import read_answer, request, wait_for
from metrics_text import only_collectors
from test_guard_invariants import InProcessServer


def out_of_memory(*_: Any, **__: Any) -> Any:
    return bytearray(1 << 62)  # raises a real MemoryError


def serve(*collectors: str) -> InProcessServer:
    return InProcessServer([*fixture_flags("rhel7-fragmented"), *only_collectors(*collectors)])


def scrape(server: InProcessServer) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request())
        status, _, body = read_answer(sock)
    return status, body.decode()


def test_a_parse_out_of_memory_fails_every_collector_sharing_the_file_with_that_reason(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """slabinfo and conntrack share one parse of /proc/slabinfo: both fail, each saying it ran out of memory (not
    `AssertionError()`), and vmstat is served."""
    monkeypatch.setattr(slabinfo_collector, "parse_slab_families", out_of_memory)
    slabinfo_collector._parser.cache_clear()
    server = serve("slabinfo", "conntrack", "vmstat")
    try:
        with caplog.at_level(logging.ERROR):
            status, text = scrape(server)
    finally:
        server.stop()
        slabinfo_collector._parser.cache_clear()
    assert status == 200
    assert 'kmem_collector_success{collector="slabinfo"} 0.0' in text
    assert 'kmem_collector_success{collector="conntrack"} 0.0' in text
    assert 'kmem_collector_success{collector="vmstat"} 1.0' in text
    assert "kmem_slab_" not in text and "kmem_nf_conntrack_slab" not in text
    failures = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failures) == 2 and all("out of memory" in f and "(MemoryError)" in f for f in failures), failures
    assert "AssertionError" not in caplog.text


def test_an_answer_that_cannot_be_written_whole_is_not_sent_at_all(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Writing one family runs out of memory: the connection is closed without an answer (never a 200 with that
    family left out while every collector says it succeeded), and the log says why."""
    writer = exposition._text_family

    def fails_for_slabs(family: Any) -> str:
        return out_of_memory() if family.name.startswith("kmem_slab_") else writer(family)

    monkeypatch.setattr(exposition, "_text_family", fails_for_slabs)
    server = serve("slabinfo", "vmstat")
    try:
        with caplog.at_level(logging.ERROR), socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(request())
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
            assert received == b"", "an answer was sent"
            wait_for("the reason to be logged", lambda: "closing a /metrics request" in caplog.text, 10)
    finally:
        server.stop()
    assert "out of memory (MemoryError)" in caplog.text
