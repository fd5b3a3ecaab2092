"""`--web.max-requests`: beyond it, as many `/metrics` requests wait for a slot, the longest waiting first, for as
long as their scraper waits; beyond those, or after the wait, a request is answered 503, and the connection stays
usable.

While the slots and the queue are full, a plain `GET /metrics` on a connection with nothing else in progress is
refused from its bytes, before HTTP parsing (exporter/kmem_exporter/web/shedding.py); everything else goes through
the server as usual, and only the server's handler takes a slot. The real exporter, over raw sockets, with one slot
held by a scrape whose read of /proc/vmstat is stuck (a FUSE file).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from conftest import FIXTURES, WAIT_SECONDS, RunningExporter
from metrics_text import only_collectors
from stuck_files import StuckTree, StuckTreeFactory, stuck_trees  # noqa: F401  (a fixture)
from tcp import wait_until_read

VMSTAT = "proc/vmstat"
METRICS = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HEALTHY = b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def waiting_metrics(timeout: float) -> bytes:
    """A scrape that waits for a slot for `timeout` seconds, as Prometheus says how long it waits for its answer."""
    return (f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Prometheus-Scrape-Timeout-Seconds: {timeout:g}\r\n"
            "\r\n").encode()
REFUSED = b"too many requests in flight\n"


def connect(exporter: RunningExporter) -> socket.socket:
    host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=WAIT_SECONDS)


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` whole answers (Content-Length framed): status, headers (names in lower case), body."""
    data = b""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} answers"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, f"closed in answer {len(answers) + 1}"
            data += chunk
        answers.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    assert data == b"", "more bytes than the answers asked for"
    return answers


def closed(sock: socket.socket) -> bool:
    return sock.recv(65536) == b""


class HeldScrape(threading.Thread):
    """A scrape that takes the only request slot until its stuck read is released."""

    def __init__(self, exporter: RunningExporter) -> None:
        super().__init__(daemon=True)
        self.exporter = exporter
        self.status, self.body = 0, b""
        self.start()

    def run(self) -> None:
        self.status, _, self.body = self.exporter.get("/metrics")


@pytest.fixture
def held_slot(stuck_trees: StuckTreeFactory, exporter_factory: Callable[..., RunningExporter]
              ) -> Iterator[tuple[RunningExporter, StuckTree, HeldScrape]]:
    """The only slot taken; the queue empty."""
    tree = stuck_trees(FIXTURES / "rhel7-fragmented", blocked={VMSTAT})
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "vmstat"),
                                "--web.max-requests=1", "--collector.timeout=300s")
    scrape = HeldScrape(exporter)
    tree.wait_for_waiting_reads(VMSTAT)  # the slot is taken
    yield exporter, tree, scrape
    tree.release_all()
    scrape.join(WAIT_SECONDS)


@pytest.fixture
def held(held_slot: tuple[RunningExporter, StuckTree, HeldScrape]
         ) -> Iterator[tuple[RunningExporter, StuckTree, HeldScrape]]:
    """The only slot taken, and the one place in the queue: a request now is refused at once."""
    exporter = held_slot[0]
    with connect(exporter) as waiting:
        waiting.sendall(waiting_metrics(WAIT_SECONDS * 4))
        wait_until_read([waiting])  # in the handler, waiting (nothing in the handler before the wait yields)
        yield held_slot
        held_slot[1].release_all()
        [(status, _, _)] = read_answers(waiting, 1)
        assert status == 200, "the waiting request was not given the slot"


def test_a_request_beyond_the_slots_waits_for_one_as_long_as_its_scraper_waits(
        held_slot: tuple[RunningExporter, StuckTree, HeldScrape]) -> None:
    exporter, tree, scrape = held_slot
    with connect(exporter) as sock:
        sock.sendall(waiting_metrics(1))
        started = time.monotonic()
        [(status, headers, body)] = read_answers(sock, 1)
        assert time.monotonic() - started >= 1.0, "refused before its scraper's timeout"
        assert (status, headers["retry-after"], body) == (503, "1", REFUSED)
        assert "1 /metrics requests in flight and 1 waiting" in exporter.log()
        sock.sendall(waiting_metrics(WAIT_SECONDS * 4))
        wait_until_read([sock])
        tree.release(VMSTAT)  # the held scrape ends and gives its slot to the waiting request
        [(status, _, _)] = read_answers(sock, 1)
        assert status == 200
    scrape.join(WAIT_SECONDS)
    assert scrape.status == 200


def test_a_request_that_waited_is_answered_from_the_collection_under_way_as_it_arrived(
        held_slot: tuple[RunningExporter, StuckTree, HeldScrape]) -> None:
    """The held request's collection was under way when the waiting request arrived: the waiting one is answered
    from it (the same exposition, durations included) rather than waiting for a collection of its own too. A request
    that arrives once it has ended gets a new one."""
    exporter, tree, scrape = held_slot
    with connect(exporter) as sock:
        sock.sendall(waiting_metrics(WAIT_SECONDS * 4))
        wait_until_read([sock])
        tree.release(VMSTAT)
        [(status, _, body)] = read_answers(sock, 1)
    scrape.join(WAIT_SECONDS)
    assert status == scrape.status == 200
    assert body == scrape.body, "the waiting request was answered from another collection"
    later = exporter.get("/metrics")
    assert later[0] == 200 and later[2] != body, "a request after the collection ended was answered from it"


def test_the_longest_waiting_request_gets_the_slot_first(
        held_slot: tuple[RunningExporter, StuckTree, HeldScrape]) -> None:
    """With the only slot held and one request waiting, the one place in the queue is taken; the request that waited
    gets the slot when it is given back, and the next request finds it free."""
    exporter, tree, scrape = held_slot
    with connect(exporter) as first, connect(exporter) as second:
        first.sendall(waiting_metrics(WAIT_SECONDS * 4))
        wait_until_read([first])
        second.sendall(waiting_metrics(WAIT_SECONDS * 4))
        [(status, _, body)] = read_answers(second, 1)  # no room to wait: at once
        assert (status, body) == (503, REFUSED)
        tree.release(VMSTAT)
        assert read_answers(first, 1)[0][0] == 200
        second.sendall(METRICS)
        assert read_answers(second, 1)[0][0] == 200
    scrape.join(WAIT_SECONDS)
    assert scrape.status == 200


def test_beyond_the_limit_503_at_once_and_the_connection_stays_usable(
        held: tuple[RunningExporter, StuckTree, HeldScrape]) -> None:
    exporter, tree, scrape = held
    with connect(exporter) as sock:
        sock.sendall(METRICS)
        [(status, headers, body)] = read_answers(sock, 1)
        assert (status, headers["retry-after"], body) == (503, "1", REFUSED)
        assert "connection" not in headers  # HTTP/1.1: kept alive
        assert "server" not in headers  # written from the request's bytes, not by the HTTP server (which names itself)
        sock.sendall(HEALTHY)
        assert read_answers(sock, 1)[0][0] == 200
        sock.sendall(METRICS)  # after an answered request on the same connection
        assert read_answers(sock, 1)[0][:1] == (503,)
    assert "1 /metrics requests in flight and 1 waiting (--web.max-requests); answering 503" in exporter.log()
    tree.release(VMSTAT)
    scrape.join(WAIT_SECONDS)
    assert scrape.status == 200
    assert exporter.get("/metrics")[0] == 200  # the slot is free again


@pytest.mark.parametrize("request_bytes", [
    b"GET /metrics HTTP/1.0\r\n\r\n",
    b"GET /metrics?debug=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nconnection:Keep-Alive, CLOSE\r\n\r\n",
])
def test_a_refusal_closes_the_connection_when_the_client_asks(
        held: tuple[RunningExporter, StuckTree, HeldScrape], request_bytes: bytes) -> None:
    exporter, _, _ = held
    with connect(exporter) as sock:
        sock.sendall(request_bytes)
        [(status, headers, body)] = read_answers(sock, 1)
        assert (status, headers.get("connection"), body) == (503, "close", REFUSED)
        assert closed(sock)


def test_pipelined_requests_keep_their_order(held: tuple[RunningExporter, StuckTree, HeldScrape]) -> None:
    exporter, _, _ = held
    with connect(exporter) as sock:
        sock.sendall(HEALTHY + METRICS + HEALTHY)
        assert [a[0] for a in read_answers(sock, 3)] == [200, 503, 200]
        sock.sendall(HEALTHY)
        sock.sendall(METRICS)  # may arrive while the first is being answered: still after it
        assert [a[0] for a in read_answers(sock, 2)] == [200, 503]


@pytest.mark.parametrize("request_bytes, status", [
    (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),  # HEAD takes no slot
    (b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
])
def test_other_requests_are_answered_by_the_server(held: tuple[RunningExporter, StuckTree, HeldScrape],
                                                   request_bytes: bytes, status: int) -> None:
    exporter, _, _ = held
    with connect(exporter) as sock:
        sock.sendall(request_bytes)
        assert sock.recv(65536).startswith(f"HTTP/1.1 {status} ".encode())


def test_headers_of_the_web_config_are_on_the_refusal_too(
        stuck_trees: StuckTreeFactory, exporter_factory: Callable[..., RunningExporter], tmp_path: Path) -> None:
    """A web config that adds to every answer (headers here; authentication, a rate limit) keeps the refusal in the
    server, where it is added."""
    config = tmp_path / "web.yml"
    config.write_text(yaml.safe_dump({"http_server_config": {"headers": {"X-Frame-Options": "deny"}}}))
    tree = stuck_trees(FIXTURES / "rhel7-fragmented", blocked={VMSTAT})
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "vmstat"), "--web.max-requests=1",
                                "--collector.timeout=300s", f"--web.config.file={config}")
    scrape = HeldScrape(exporter)
    tree.wait_for_waiting_reads(VMSTAT)
    with connect(exporter) as sock:
        sock.sendall(METRICS)
        [(status, headers, body)] = read_answers(sock, 1)
        assert (status, headers.get("x-frame-options"), body) == (503, "deny", REFUSED)
        assert "server" in headers  # answered by the HTTP server
    tree.release_all()
    scrape.join(WAIT_SECONDS)
    assert scrape.status == 200


def test_a_burst_gets_the_free_slots_then_the_queue_and_the_rest_is_refused(
        stuck_trees: StuckTreeFactory, exporter_factory: Callable[..., RunningExporter]) -> None:
    """Requests received in one burst get the free slots, then the places in the queue, however many arrive before
    the server reaches any of them, and the rest are refused at once."""
    tree = stuck_trees(FIXTURES / "rhel7-fragmented", blocked={VMSTAT})
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "vmstat"), "--web.max-requests=3",
                                "--collector.timeout=300s")
    held = HeldScrape(exporter)
    tree.wait_for_waiting_reads(VMSTAT)  # one slot taken, two free, three places in the queue
    sockets = [connect(exporter) for _ in range(12)]
    try:
        for sock in sockets:
            sock.sendall(waiting_metrics(WAIT_SECONDS * 4))
        # Seven are refused; the two given the free slots join the stuck collection and the three in the queue wait:
        # none of them gets an answer until it ends.
        refused: list[tuple[int, dict[str, str], bytes]] = []
        admitted = list(sockets)
        deadline = time.monotonic() + WAIT_SECONDS
        while len(refused) < 7:
            answering, _, _ = select.select(admitted, [], [], max(0.0, deadline - time.monotonic()))
            assert answering, f"only {len(refused)} of 12 requests were refused"
            for sock in answering:
                refused.append(read_answers(sock, 1)[0])
                admitted.remove(sock)
        assert len(admitted) == 5
        assert [(status, body) for status, headers, body in refused] == [(503, REFUSED)] * 7
        assert select.select(admitted, [], [], 0)[0] == []  # no answer while the collection is stuck
        tree.release_all()
        for sock in admitted:
            assert read_answers(sock, 1)[0][0] == 200
    finally:
        for sock in sockets:
            sock.close()
    held.join(WAIT_SECONDS)
    assert held.status == 200
    assert exporter.get("/metrics")[0] == 200


def test_a_slot_given_to_a_request_the_server_refuses_is_given_back(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    """A plain request that the HTTP parser refuses (a header line without a colon) never reaches the handler: the
    slot it was given as it arrived is freed with its connection."""
    exporter = exporter_factory(*only_collectors("buddyinfo"), "--web.max-requests=1")
    for _ in range(3):
        with connect(exporter) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
            assert sock.recv(65536).split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
            assert closed(sock)
    status, headers, _ = exporter.get("/metrics")
    assert status == 200, headers
