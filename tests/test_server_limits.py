"""The real exporter against clients that misbehave, over raw sockets: connections beyond the limit, half-sent
requests, pipelining, odd headers, several listen addresses, and running out of file descriptors."""

from __future__ import annotations

import gzip
import re
import resource
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import PROJECT, RunningExporter, fixture_flags, free_port, promtool_check_metrics
from metrics_text import only_collectors

FOUR = only_collectors("buddyinfo", "vmstat", "sysctl", "kernel")
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def connect(exporter: RunningExporter) -> socket.socket:
    host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=20)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 20) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """The status and body of each HTTP/1.1 response in `data` (Content-Length framed)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(headers[b"Content-Length"])
        found.append((int(lines[0].split()[1]), rest[:length]))
        data = rest[length:]
    return found


def test_at_the_limit_a_new_connection_takes_the_place_of_the_longest_idle_one(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.max-connections=3")
    kept_alive = []
    for _ in range(3):  # each asks once, reads its answer, and keeps the connection open
        sock = connect(exporter)
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        kept_alive.append(sock)
        time.sleep(0.1)
    kept_alive[0].sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")  # the first is now the most recent
    assert kept_alive[0].recv(65536).startswith(b"HTTP/1.1 200")
    newcomer = connect(exporter)
    newcomer.sendall(REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert read_until_closed(newcomer).startswith(b"HTTP/1.1 200")
    assert read_until_closed(kept_alive[1]) == b""  # the longest idle was closed to make room
    kept_alive[0].sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept_alive[0].recv(65536).startswith(b"HTTP/1.1 200")
    for sock in kept_alive:
        sock.close()


def test_connections_that_send_nothing_make_room(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.max-connections=8")
    silent = [connect(exporter) for _ in range(8)]
    time.sleep(0.5)
    for _ in range(3):  # the first takes the place of the oldest silent connection; the others find room again
        assert exporter.get("/metrics")[0] == 200
    assert read_until_closed(silent[0], timeout=5) == b""
    silent[1].settimeout(0.5)
    with pytest.raises(socket.timeout):
        silent[1].recv(1)  # still open
    for sock in silent:
        sock.close()


def test_half_sent_requests_and_silent_connections_are_closed(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.read-header-timeout=1s")
    silent = connect(exporter)
    half = connect(exporter)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    assert read_until_closed(half) == b""
    assert read_until_closed(silent) == b""
    assert time.monotonic() - started < 10
    slow_but_complete = connect(exporter)
    for byte in REQUEST[:-2]:
        slow_but_complete.sendall(bytes([byte]))
    time.sleep(0.3)
    slow_but_complete.sendall(b"\r\n")  # within the timeout: answered
    slow_but_complete.settimeout(20)
    assert slow_but_complete.recv(12) == b"HTTP/1.1 200"
    slow_but_complete.close()


def test_pipelined_requests_are_answered_in_order(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR)
    sock = connect(exporter)
    sock.sendall(REQUEST * 19 + REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    answers = responses(read_until_closed(sock))
    assert [status for status, _ in answers] == [200] * 20
    assert all(b"kmem_buddy_free_blocks{" in body for _, body in answers)


def test_odd_headers_get_a_usable_answer(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR)
    status, headers, body = exporter.get("/metrics", {"Accept": "application/openmetrics-text; version=abc"})
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert promtool_check_metrics(body.decode()) == ""
    status, headers, body = exporter.get("/metrics", {"Accept-Encoding": "gzip;q=0, identity"})
    assert status == 200 and "Content-Encoding" not in headers and body.startswith(b"# HELP")
    status, headers, body = exporter.get("/metrics", {"Accept-Encoding": "deflate, gzip;q=0.5"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body).startswith(b"# HELP")
    sock = connect(exporter)
    sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head = read_until_closed(sock)
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    for request in (b"GARBAGE\r\n\r\n", b"GET /metrics HTTP/1.1\r\nHost: " + b"x" * 100_000 + b"\r\n\r\n"):
        sock = connect(exporter)
        sock.sendall(request)
        answer = read_until_closed(sock)
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:100]
    assert exporter.get("/metrics")[0] == 200
    assert "Traceback" not in exporter.log()


def test_several_listen_addresses(exporter_factory: Callable[..., RunningExporter]) -> None:
    every, loopback6 = free_port(), free_port()
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, f"--web.listen-address=:{every}",
                                f"--web.listen-address=[::1]:{loopback6}")
    for host, port in (("127.0.0.1", every), ("::1", every), ("::1", loopback6)):
        with socket.create_connection((host, port), timeout=20) as sock:
            sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200"), (host, port)
    assert "listening on 127.0.0.1:" in exporter.log() and f":{every}, [::1]:{loopback6}" in exporter.log()


def test_a_port_in_use_is_refused_with_exit_2(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR)
    taken = exporter.url.removeprefix("http://")
    result = subprocess.run([sys.executable, "-m", "kmem_exporter", f"--web.listen-address={taken}",
                             *fixture_flags("rhel7-fragmented"), *FOUR], capture_output=True, text=True, timeout=60,
                            cwd=PROJECT)
    assert result.returncode == 2
    assert f"web.listen-address '{taken}': cannot listen: " in result.stderr


def test_out_of_file_descriptors_is_logged_once_and_recovers(tmp_path: Path) -> None:
    """With a hard limit of 64 open files and a connection limit above it, accept() fails with EMFILE: the exporter
    logs it (not once per attempt), keeps running, and serves again once clients go."""
    port = free_port()
    log_path = tmp_path / "exporter.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "kmem_exporter", f"--web.listen-address=127.0.0.1:{port}",
                                    "--web.max-connections=1000", *fixture_flags("rhel7-fragmented"), *FOUR],
                                   stdout=log_file, stderr=subprocess.STDOUT, cwd=PROJECT, preexec_fn=low_limit)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        flood = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(150)]
        time.sleep(3)  # accept() fails with EMFILE and is retried (once a second)
        assert process.poll() is None
        for sock in flood:
            sock.close()
        time.sleep(2)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
        log = log_path.read_text()
        assert 1 <= log.count("Too many open files") <= 2, log[-3000:]
        assert "Traceback" not in log
    finally:
        process.kill()
        process.wait(30)


@pytest.mark.parametrize("address", ["[::1", "::1:9792", "127.0.0.1:99999", "host name:80"])
def test_bad_listen_addresses_are_refused(address: str) -> None:
    result = subprocess.run([sys.executable, "-m", "kmem_exporter", f"--web.listen-address={address}"],
                            capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert result.returncode == 2 and "web.listen-address" in result.stderr, result.stderr


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_900_clients_pipelining_without_reading_leave_memory_bounded(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    """Each of 900 connections sends 20 `GET /metrics` at once and reads nothing for 10 s: the exporter stays up,
    under 100 MiB, and serves a normal client (at once, or after a 503 while every slot is taken)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    exporter = exporter_factory("--collector.slabinfo.fields=.*")  # this host, every collector: the largest answer
    clients = []
    try:
        for _ in range(900):
            sock = connect(exporter)
            sock.sendall(REQUEST * 20)
            clients.append(sock)
        time.sleep(10)
        assert exporter.process.poll() is None
        assert rss_peak_mib(exporter.process.pid) < 100
        deadline = time.monotonic() + 60
        status = 0
        while status != 200 and time.monotonic() < deadline:
            status = exporter.get("/metrics")[0]
            assert status in (200, 503)
            time.sleep(0.5)
        assert status == 200
    finally:
        for sock in clients:
            sock.close()
    assert "Traceback" not in exporter.log()


def test_clients_that_go_away_mid_answer_leave_no_trace(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR)
    for _ in range(20):
        sock = connect(exporter)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.sendall(REQUEST * 5)
        sock.recv(100)
        sock.close()
    time.sleep(1)
    assert exporter.get("/metrics")[0] == 200
    log = exporter.log()
    assert "Traceback" not in log and "never retrieved" not in log and "level=error" not in log, log[-2000:]


def test_clients_that_do_not_read_hold_no_request_slot(exporter_factory: Callable[..., RunningExporter]) -> None:
    """With two request slots, six clients pipelining scrapes of this host's largest answer and reading none of it
    leave every slot free: a normal scrape is answered 200 at once, while their answers wait."""
    exporter = exporter_factory("--collector.slabinfo.fields=.*", "--web.max-requests=2")
    stalled = []
    try:
        for _ in range(6):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
            host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
            sock.connect((host, int(port)))
            sock.sendall(REQUEST * 20)
            stalled.append(sock)
        time.sleep(1)  # their answers fill the kernel's buffers and wait in the exporter's
        for _ in range(5):
            assert exporter.get("/metrics")[0] == 200
        assert exporter.process.poll() is None
    finally:
        for sock in stalled:
            sock.close()
    assert "Traceback" not in exporter.log()
