"""The guards' invariants under random sequences of hostile clients (hypothesis' rule-based state machine), on the
real server in this process (so that its request slots and connection count can be read), over real sockets and
real TLS, collecting a real fixture tree.

Steps: connections that say nothing, partial request heads, odd headers (Expect, Upgrade, Transfer-Encoding),
pipelined requests, TLS hellos that stall, wrong and right passwords, requests whose answers are never read, bursts
of requests, floods of connections, and closes. After every step:
- once no request is in a handler (collections take milliseconds), no request slot is in use: slots in use equal
  requests in a handler or being written;
- the connections the server keeps open never exceed `--web.max-connections`, counted by the server and from the
  clients' side, and the sockets it has accepted and not closed, counted before every pass of its event loop, never
  exceed that plus the listen backlog (floods of connections bigger than the backlog);
- an authorized scraper that reads gets a complete answer within its timeout (asked again only after the refusal
  of `--web.max-requests` while other requests hold every slot and every place in its queue).

CI runs a fixed number of examples, derandomized (the same sequences every run), with no example database.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from aiohttp import web

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conftest import fixture_flags
from hostile import (accepted_sockets, basic, client_hello, closed_by_server, connect_many, hashed, read_answer,
                     request, still_open, unacknowledged, unread, wait_for)
from kmem_exporter.cli import build_scraper
from kmem_exporter.config import parse_args
from kmem_exporter.web.config import load_web_config
from kmem_exporter.web.server import Server
from kmem_exporter.web.shedding import REFUSED_TEXT
from metrics_text import only_collectors
from web.pki import Pki, make_pki

T = TypeVar("T")
MAX_CONNECTIONS = 8
BACKLOG = 128  # the listener's (aiohttp's default): at most so many sockets are accepted in one pass of the loop
SCRAPE_TIMEOUT = 10.0
PASSWORD = "s3cret"
ODD_HEADERS = ({"Expect": "x"}, {"Expect": "100-continue"}, {"Upgrade": "websocket", "Connection": "Upgrade"},
               {"Transfer-Encoding": "chunked"}, {"Transfer-Encoding": "gzip, chunked"}, {"Content-Length": "1, 2"},
               {"Connection": "close"}, {"Accept": "application/openmetrics-text; version=1.0.0"})
STEP_SETTINGS = settings(max_examples=12, stateful_step_count=10, derandomize=True, database=None, deadline=None,
                         suppress_health_check=list(HealthCheck), print_blob=True)


def listen_queue(port: int) -> int:
    """Connections waiting in the accept queue of this process's listener on `port`."""
    with open("/proc/self/net/tcp") as lines:
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    return 0


class PeakSelector(selectors.DefaultSelector):  # type: ignore[valid-type,misc]
    """The event loop's selector, which counts the sockets the server has accepted on `port` before each pass of the
    loop: the most ever open (sockets accepted in a pass and closed in a later one included)."""

    port = 0
    peak = 0

    def select(self, timeout: Optional[float] = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.port:
            self.peak = max(self.peak, accepted_sockets(self.port))
        return super().select(timeout)  # type: ignore[no-any-return]


class InProcessServer:
    """The exporter's HTTP server with a real scraper, on its own event loop in a thread, on a free port."""

    def __init__(self, argv: list[str], web_config: Optional[Path] = None) -> None:
        _, self.config = parse_args(["serve", "--web.listen-address=127.0.0.1:0", *argv])
        self.web_config = load_web_config(str(web_config)) if web_config is not None else None
        self.selector = PeakSelector()
        self.loop = asyncio.SelectorEventLoop(self.selector)
        self.server: Optional[Server] = None
        self.port = 0
        self.in_handler = 0  # /metrics requests in the server's handler now
        self._scraper = build_scraper(self.config)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        self.server = Server(self.config, self._scraper, self.web_config)
        self.server._runner.app.middlewares.append(self._count_handlers)  # innermost: right around the handler
        await self.server.start()
        self.port = self.selector.port = self.server._runner.addresses[0][1]
        await self._scraper.start()
        await self._scraper.wait_ready()

    @web.middleware
    async def _count_handlers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != self.config.telemetry_path:
            return await handler(request)  # type: ignore[no-any-return]
        self.in_handler += 1
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            self.in_handler -= 1

    def on_loop(self, function: Callable[[], T]) -> T:
        """`function()` run on the server's loop, between two of its steps: the state it reads is consistent."""
        async def call() -> T:
            return function()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def stop(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


class Guards(RuleBasedStateMachine):
    """The steps and invariants, for a server that `serving` gives (TLS and a password, or neither)."""

    serving: Callable[[], tuple[InProcessServer, Optional[ssl.SSLContext], dict[str, str]]]

    def __init__(self) -> None:
        super().__init__()
        self.exporter, self.tls, self.authorization = type(self).serving()
        self.clients: list[socket.socket] = []
        self.scraper: Optional[socket.socket] = None
        self.connects = 0

    # --- clients ------------------------------------------------------------------------------------------------

    def _connect(self, tls: bool = True) -> Optional[socket.socket]:
        try:
            sock = socket.create_connection(("127.0.0.1", self.exporter.port), timeout=10)
            self.connects += 1
            if tls and self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname="localhost")
        except (OSError, ssl.SSLError):
            return None  # refused or closed at the limit: the server's choice, checked by the invariants
        self.clients.append(sock)
        return sock

    def _send(self, data: bytes, tls: bool = True) -> None:
        sock = self._connect(tls)
        if sock is not None:
            try:
                sock.sendall(data)
            except (OSError, ssl.SSLError):
                pass

    def _headers(self, right: bool) -> dict[str, str]:
        if not self.authorization:
            return {}
        return self.authorization if right else {"Authorization": basic("prometheus", "wrong")}

    @rule()
    def silent(self) -> None:
        self._connect(tls=False)

    @rule(cut=st.integers(1, 30))
    def partial_head(self, cut: int) -> None:
        self._send(request(headers=self._headers(True))[:cut])

    @rule(odd=st.sampled_from(ODD_HEADERS), right=st.booleans())
    def odd_header(self, odd: dict[str, str], right: bool) -> None:
        self._send(request(headers={**self._headers(right), **odd}))

    @rule(count=st.integers(2, 6), right=st.booleans())
    def pipelined(self, count: int, right: bool) -> None:
        self._send(request(headers=self._headers(right)) * count)

    @rule()
    def stalled_tls_hello(self) -> None:
        self._send(client_hello(), tls=False)

    @rule(right=st.booleans())
    def one_request_never_read(self, right: bool) -> None:
        self._send(request(headers=self._headers(right)))

    @rule(count=st.integers(2, 8))
    def burst(self, count: int) -> None:
        for _ in range(count):
            self._send(request(headers=self._headers(True)))

    @rule(count=st.integers(BACKLOG + 1, 3 * BACKLOG))
    def connection_flood(self, count: int) -> None:
        """More connections at once than the listen backlog holds (then closed), and the server done accepting them:
        none waiting in the listen queue or being connected, so that the flood does not go on into later steps."""
        flood = connect_many(self.exporter.port, count)
        self.connects += len(flood)
        for sock in flood:
            sock.close()
        server = self.exporter.server
        assert server is not None
        wait_for("the flood to be accepted", lambda: listen_queue(self.exporter.port) == 0 and self.exporter.on_loop(
            lambda: all(c._transport is not None for c in server.limit._connections)), 30)

    @rule(which=st.integers(0, 1000))
    def close_one(self, which: int) -> None:
        if self.clients:
            self.clients.pop(which % len(self.clients)).close()

    # --- invariants ---------------------------------------------------------------------------------------------

    @invariant()
    def slots_in_use_are_requests_in_a_handler(self) -> None:
        server = self.exporter.server
        assert server is not None
        in_use, in_handler = self.exporter.on_loop(lambda: (server.slots.in_use, self.exporter.in_handler))
        assert in_use <= in_handler, f"{in_use} request slots in use, {in_handler} requests in the handler"

    @invariant()
    def connections_stay_within_the_limit(self) -> None:
        server = self.exporter.server
        assert server is not None
        assert self.exporter.on_loop(lambda: server.limit.open) <= MAX_CONNECTIONS
        peak = self.exporter.selector.peak
        assert peak <= MAX_CONNECTIONS + BACKLOG, f"{peak} open sockets: more than the limit and the backlog"
        wait_for("clients to see the connections the server closed",
                 lambda: still_open(self.clients) <= MAX_CONNECTIONS, 10)

    @invariant()
    def an_authorized_reading_scraper_gets_a_complete_answer(self) -> None:
        """Within its timeout. One 503 alone is asked again: `--web.max-requests`' refusal ("too many requests in
        flight"), which the server gives only while every request slot and every place in its queue is held by
        another request in its handler (a pipelined request of a step that the server takes up as the scraper asks:
        requests of equal standing, and refusing the newest is what the flag means); a slot that is never given back
        makes the refusal last until the timeout, and fails. Any other 503 (the connection limit, the answers
        budget), a cut, a close or no answer fails at once."""
        wait_for("the steps' requests to be received and leave the handler, and the connections closed to make room "
                 "to be closed", self._quiet, 30, state=self._state)
        deadline = time.monotonic() + SCRAPE_TIMEOUT
        while True:
            if self.scraper is None or closed_by_server(self.scraper):
                self.scraper = self._connect()
                assert self.scraper is not None, "the authorized scraper could not connect"
                self.clients.remove(self.scraper)
            self.scraper.settimeout(SCRAPE_TIMEOUT)
            before = self._state()
            self.scraper.sendall(request(headers={**self._headers(True), "Accept-Encoding": "gzip"}))
            try:
                status, headers, body = read_answer(self.scraper)
            except (AssertionError, OSError) as error:
                raise AssertionError(f"the scraper's answer: {error!r}; before it asked: {before}; "
                                     f"after: {self._state()}") from error
            if status != 503 or body != REFUSED_TEXT.encode() or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200, (status, body, self._state())
        assert headers["content-encoding"] == "gzip" and len(body) == int(headers["content-length"])

    def _state(self) -> dict[str, object]:
        server = self.exporter.server
        assert server is not None

        def read() -> dict[str, object]:
            sockets = [t.get_extra_info("socket") for t in server.limit._by_transport]
            limit = server.limit
            return {"accepted": limit.accepted, "evicted": limit.evicted, "closing": limit.closing,
                    "in handler": self.exporter.in_handler, "slots": server.slots.in_use,
                    "unread": [unread(sock) for sock in sockets if sock is not None], "open": server.limit.open}

        return {**self.exporter.on_loop(read), "connects": self.connects,
                "listen queue": listen_queue(self.exporter.port),
                "unacknowledged": [unacknowledged(sock) for sock in self.clients]}

    def _quiet(self) -> bool:
        server = self.exporter.server
        assert server is not None
        if any(unacknowledged(sock) and not closed_by_server(sock) for sock in self.clients):
            return False

        def received_all() -> bool:
            transports = list(server.limit._by_transport)
            sockets = [t.get_extra_info("socket") for t in transports]
            return (server.limit.accepted >= self.connects and server.limit.closing == 0
                    and self.exporter.in_handler == 0 and not any(unread(sock) for sock in sockets if sock is not None))

        # Every connection accepted: none is left in the listen queue, where a late one could displace the scraper's
        # idle connection as it asks (a flood's accepts count too, so `accepted` alone could not tell).
        return listen_queue(self.exporter.port) == 0 and self.exporter.on_loop(received_all)

    def teardown(self) -> None:
        for sock in [*self.clients, *([self.scraper] if self.scraper else [])]:
            sock.close()
        self.exporter.stop()


ARGS = [*fixture_flags("rhel7-fragmented"), *only_collectors("buddyinfo", "vmstat", "sysctl", "kernel"),
        f"--web.max-connections={MAX_CONNECTIONS}", "--web.read-header-timeout=60s"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_plain_http_with_one_request_slot() -> None:
    """No TLS, no password: the pre-parse refusal is on, with one request slot, so bursts and pipelines meet it."""
    class Plain(Guards):
        @staticmethod
        def serving() -> tuple[InProcessServer, Optional[ssl.SSLContext], dict[str, str]]:
            return InProcessServer([*ARGS, "--web.max-requests=1"]), None, {}

    Plain.TestCase.settings = STEP_SETTINGS
    Plain.TestCase().runTest()


def test_tls_and_a_password(pki: Pki, tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key)},
        "basic_auth_users": {"prometheus": hashed(PASSWORD, 8)}}))
    client = ssl.create_default_context(cafile=str(pki.ca.cert))

    class Secured(Guards):
        @staticmethod
        def serving() -> tuple[InProcessServer, Optional[ssl.SSLContext], dict[str, str]]:
            return (InProcessServer([*ARGS, "--web.max-requests=4"], config), client,
                    {"Authorization": basic("prometheus", PASSWORD)})

    Secured.TestCase.settings = STEP_SETTINGS
    Secured.TestCase().runTest()

