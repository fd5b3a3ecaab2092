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

from conftest import PROJECT, WAIT_SECONDS, RunningExporter, fixture_flags, promtool_check_metrics, wait_for
from metrics_text import only_collectors
from tcp import ServerEnd, close_and_wait, listening, listening_port, wait_until_read

FOUR = only_collectors("buddyinfo", "vmstat", "sysctl", "kernel")
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CLOSING = REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
# Connections that stay silent or half-sent while a test looks at the limit: not closed by the header timeout then.
NO_HEADER_TIMEOUT = "--web.read-header-timeout=1h"


def connect(exporter: RunningExporter) -> socket.socket:
    host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=WAIT_SECONDS)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = WAIT_SECONDS) -> bytes:
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


def scrape_closing(exporter: RunningExporter) -> int:
    """The status of a scrape on a connection of its own, once the server has closed it (it has let go of it: the
    server closes its end, after letting go, before the client reads the end of the answer)."""
    sock = connect(exporter)
    sock.sendall(CLOSING)
    answer = read_until_closed(sock)
    sock.close()
    return int(answer.split(b" ", 2)[1])


def test_at_the_limit_a_new_connection_takes_the_place_of_the_longest_idle_one(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.max-connections=3",
                                NO_HEADER_TIMEOUT)
    kept_alive = []
    for _ in range(3):  # each asks once, reads its answer, and keeps the connection open
        sock = connect(exporter)
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        kept_alive.append(sock)
    kept_alive[0].sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")  # the first is now the most recent
    assert kept_alive[0].recv(65536).startswith(b"HTTP/1.1 200")
    newcomer = connect(exporter)
    newcomer.sendall(CLOSING)
    assert read_until_closed(newcomer).startswith(b"HTTP/1.1 200")
    assert read_until_closed(kept_alive[1]) == b""  # the longest idle was closed to make room
    kept_alive[0].sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept_alive[0].recv(65536).startswith(b"HTTP/1.1 200")
    for sock in kept_alive:
        sock.close()


def test_connections_that_send_nothing_make_room(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.max-connections=8",
                                NO_HEADER_TIMEOUT)
    silent = [connect(exporter) for _ in range(8)]
    # The server accepts connections in the order they came: each scrape's comes after the silent ones. A scrape's
    # connection is let go of before the next one comes, so the others find room again.
    for _ in range(3):  # the first takes the place of the oldest silent connection; the others find room again
        assert scrape_closing(exporter) == 200
    assert read_until_closed(silent[0]) == b""
    assert all(ServerEnd(sock).open() for sock in silent[1:])  # still open
    for sock in silent:
        sock.close()


def test_half_sent_requests_and_silent_connections_are_closed(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.read-header-timeout=5s")
    silent = connect(exporter)
    half = connect(exporter)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert read_until_closed(half) == b""  # within read_until_closed's deadline, well after the header timeout
    assert read_until_closed(silent) == b""
    slow_but_complete = connect(exporter)
    for byte in REQUEST[:-2]:
        slow_but_complete.sendall(bytes([byte]))
    wait_until_read([slow_but_complete])  # the server holds a head begun
    slow_but_complete.sendall(b"\r\n")  # within the timeout: answered
    slow_but_complete.settimeout(60)
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
    """`:PORT` listens on every address of both families; each listener here gets a port of its own (port 0)."""
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.listen-address=:0",
                                "--web.listen-address=[::1]:0")
    # The exporter answers on its first address while it binds the others: wait until it has bound them all.
    assert "listening on 127.0.0.1:0, :0, [::1]:0, metrics at /metrics" in exporter.wait_for_log("listening on ")
    ports = {host: port for host, port in listening(exporter.process.pid)}
    assert set(ports) == {"127.0.0.1", "0.0.0.0", "::", "::1"}
    for host, port in (("127.0.0.1", ports["0.0.0.0"]), ("::1", ports["::"]), ("::1", ports["::1"])):
        with socket.create_connection((host, port), timeout=WAIT_SECONDS) as sock:
            sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200"), (host, port)


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
    log_path = tmp_path / "exporter.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "kmem_exporter", "--web.listen-address=127.0.0.1:0",
                                    "--web.max-connections=1000", *fixture_flags("rhel7-fragmented"), *FOUR],
                                   stdout=log_file, stderr=subprocess.STDOUT, cwd=PROJECT, preexec_fn=low_limit)
    try:
        port = listening_port(process, what="the exporter", log=log_path)
        # Beyond what the exporter can accept: the rest wait in the listen backlog (a connect may wait for room).
        flood = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(150)]
        wait_for("accept() to fail with EMFILE", log_path.read_text, lambda log: "Too many open files" in log)
        assert process.poll() is None
        for sock in flood:
            sock.close()
        # accept() is retried (once a second): the connection waits in the backlog until then.
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(CLOSING)
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
        time.sleep(10)  # the scenario: 10 s of clients that read nothing (not a wait for something to happen)
        assert exporter.process.poll() is None
        assert rss_peak_mib(exporter.process.pid) < 100
        status = wait_for("a normal scrape to be answered 200", lambda: exporter.get("/metrics")[0],
                          lambda status: status not in (503,))
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
        close_and_wait(sock, exporter.process.pid)
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
        ends = [ServerEnd(sock) for sock in stalled]
        # Each has been answered (or refused, beyond the slots) and the answers wait for it to read them.
        wait_for("answers to wait for each stalled client", lambda: all(end.answering() for end in ends))
        # Until every stalled connection is paused, one may be answering its next request and hold a slot for that
        # moment: a normal scrape refused then is asked again. Slots held by clients that do not read would refuse
        # it every time.
        for _ in range(5):
            assert wait_for("a normal scrape to be answered", lambda: exporter.get("/metrics")[0],
                            lambda status: status != 503) == 200
        assert exporter.process.poll() is None
    finally:
        for sock in stalled:
            sock.close()
    assert "Traceback" not in exporter.log()
