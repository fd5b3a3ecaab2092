"""The HTTP server: /metrics (text or OpenMetrics, gzip when accepted), the status page, and health endpoints.

Bounded whatever clients do: at most `--web.max-requests` /metrics requests are served at once and as many more
wait for a slot (beyond that, or after the wait, 503: shedding.py); a request leaves its slot when its answer is
handed to the connection, where an answer its client does not read waits within a budget of bytes and of time;
every request that joins a collection shares its rendering; connections are limited and must send their request
heads in time (`kmem_exporter.web.connections`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import time
from typing import Any, AsyncIterator, Callable, Optional

from aiohttp import web

from kmem_exporter.config import Config, ConfigError, split_host_port
from kmem_exporter.web.connections import GuardedConnection, guard
from kmem_exporter.web.limits import ConnectionLimit
from kmem_exporter.web.listener import Listener, bind
from kmem_exporter.exposition import accepts_gzip, choose_format
from kmem_exporter.scrape.collection import AnswerError
from kmem_exporter.scrape.scraper import Scraper
from kmem_exporter.settings import shown
from kmem_exporter.web.shedding import REFUSED_TEXT, RequestSlots, Shedder, slot_wait
from kmem_exporter.web.middleware import install_web_config
from kmem_exporter.web.config import WebConfig
from kmem_exporter.web.status_page import CSP, PageLinks, StatusPage
from kmem_exporter.report.thresholds import thresholds
from kmem_exporter.web.heap import HeapKeeper, tune_heap

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT = 75.0  # seconds an idle keep-alive connection stays open (Prometheus reuses it between scrapes)
SHUTDOWN_TIMEOUT = 5.0


ANSWER_REFUSED_TEXT = "answers waiting for clients that do not read fill the memory budget; try again\n"


def make_app(config: Config, scraper: Scraper, limit: ConnectionLimit[GuardedConnection], slots: RequestSlots,
             web_config: Optional[WebConfig] = None) -> web.Application:
    app = web.Application()
    checked_later = web_config is not None and bool(web_config.basic_auth or web_config.rate_limit
                                                    or (web_config.tls and web_config.tls.client_allowed_sans))
    if web_config is not None:
        install_web_config(app, web_config, _on_checked(limit))
    app.middlewares.insert(0, _counting_requests(limit, not checked_later))  # first: counts requests being checked

    async def metrics(request: web.Request) -> web.StreamResponse:
        form = choose_format(request.headers.get("Accept", ""))
        if request.method == "HEAD":  # the headers only: no collection
            return web.Response(headers={"Content-Type": form.content_type})
        arrived_during = scraper.in_progress()  # a request that waits for a slot is answered from it
        if not await _take_slot(slots, request):
            return web.Response(status=503, text=REFUSED_TEXT, headers={"Retry-After": "1"})
        try:
            gzipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
            try:
                collection = await scraper.scrape(form, gzipped, arrived_during)
                body = await collection.body(form, gzipped)
            except (AnswerError, MemoryError) as err:
                return _no_answer(request, err)
            connection = limit.connection_of(request.transport)
            if connection is not None and not await limit.answers.room(connection, len(body)):
                return web.Response(status=503, text=ANSWER_REFUSED_TEXT, headers={"Retry-After": "1"})
        finally:
            slots.release()  # the server hands the answer to the connection as this returns (see module doc)
        headers = {"Content-Type": form.content_type, "Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    status_page = StatusPage(PageLinks(config.telemetry_path, config.enabled_collectors), scraper, thresholds())

    async def landing(request: web.Request) -> web.Response:
        if not await _take_slot(slots, request):  # limited like /metrics: it may wait for a collection
            return web.Response(status=503, text=REFUSED_TEXT, headers={"Retry-After": "1"})
        try:
            page = await status_page.render()
        finally:
            slots.release()
        return web.Response(text=page, content_type="text/html", headers={"Content-Security-Policy": CSP})

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    readiness: Optional["asyncio.Task[None]"] = None  # done once every collector has something to serve

    async def ready(request: web.Request) -> web.Response:
        if readiness is None or not readiness.done():
            return web.Response(status=503, text="starting\n")
        return web.Response(text="OK\n")

    async def become_ready() -> None:
        await scraper.start()
        await scraper.wait_ready()
        log.info("ready; collectors: %s", ", ".join(config.enabled_collectors) or "none")

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # The port is bound after this part: nothing here may wait for a collector.
        nonlocal readiness
        readiness = asyncio.create_task(become_ready())
        yield
        readiness.cancel()
        await scraper.stop()

    app.router.add_get(config.telemetry_path, metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.cleanup_ctx.append(lifecycle)
    return app


async def _take_slot(slots: RequestSlots, request: web.Request) -> bool:
    """A request slot for `request`, waiting for one if need be; False when refused, or when its client left while
    it waited (the slot passes on at once)."""
    if not await slots.take(slot_wait(request.headers)):
        return False
    if request.transport is None or request.transport.is_closing():
        slots.release()
        return False
    return True


def _no_answer(request: web.Request, err: BaseException) -> web.StreamResponse:
    """Close the connection without an answer (Prometheus marks the scrape failed) when the exposition cannot be
    written whole: never a 200 with families left out."""
    what = "out of memory (MemoryError)" if isinstance(err, MemoryError) else str(err)
    log.error("closing a /metrics request's connection without an answer: %s", what)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # not written: the connection is gone


def _counting_requests(limit: ConnectionLimit[GuardedConnection], checked: bool) -> Any:
    """A middleware that tells each connection when it is answering a request, so that only connections that have
    not earned their place make room for new ones at the connection limit (`checked` False: each request waits for
    the web config's access checks first, and the web config middleware says when it has passed them)."""

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        connection = limit.connection_of(request.transport)
        if connection is None:
            return await handler(request)  # type: ignore[no-any-return]
        connection.request_started(checked)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            connection.request_finished(unchecked=not checked and _CHECKED not in request)

    return count


_CHECKED = web.RequestKey("kmem_exporter.checked", bool)  # set on a request that passed the access checks


def _on_checked(limit: ConnectionLimit[GuardedConnection]) -> Callable[[web.Request, bool], None]:
    def checked(request: web.Request, authenticated: bool) -> None:
        connection = limit.connection_of(request.transport)
        if connection is not None and _CHECKED not in request:
            request[_CHECKED] = True
            connection.request_checked(authenticated)

    return checked


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections go through a ConnectionLimit."""

    def __init__(self, runner: web.BaseRunner, address: str, limit: ConnectionLimit[GuardedConnection],
                 web_config: Optional[WebConfig]) -> None:
        super().__init__(runner, ssl_context=web_config.ssl_context() if web_config is not None else None)
        self._web_config = web_config
        self._address = address
        self._host, self._port = split_host_port(address)
        self._limit = limit

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._address}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None

        def accept() -> GuardedConnection:
            if self._web_config is not None:
                self._web_config.reload_if_changed()  # before the handshake: new certificate files serve at once
            return guard(self._limit, server(), self._ssl_context)  # TLS, if any, is done by the connection

        self._server = Listener(await bind(self._host, self._port, self._backlog), accept, self._backlog, self._limit)


def raise_open_file_limit() -> None:
    """Raise the soft limit of open files to the hard limit, as Go programs such as node_exporter do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as err:
            log.debug("could not raise the open-file limit from %d to %d: %s", soft, hard, err)


def _loop_exception_handler() -> Any:
    """Log the event loop's own errors (a failed accept when out of file descriptors, ...) once a minute per kind,
    on one line: asyncio retries a failed accept by itself after a second."""
    last: dict[str, float] = {}

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))
        exception = context.get("exception")
        now = time.monotonic()
        if now - last.get(message, -float("inf")) >= 60:
            last[message] = now
            log.error("%s: %s", message, exception if exception is not None else "(no exception)")

    return handle


def tune_garbage_collection() -> None:
    """A scrape makes thousands of short-lived objects. Objects made at start (modules, settings, collectors) are moved
    out of the collector's way, and young objects are collected less often, so that a collection does not walk the
    whole heap again and again: about a tenth of a scrape's CPU."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


class Server:
    """The HTTP side, started and stopped as a whole: its request slots, connection limit and listeners."""

    def __init__(self, config: Config, scraper: Scraper, web_config: Optional[WebConfig]) -> None:
        self.config = config
        self.slots = RequestSlots(config.max_requests)
        # While the slots and the queue are full, a plain request for the metrics gets its 503 before HTTP parsing,
        # unless the web config adds something to every answer first (authentication, a rate limit, headers).
        plain = web_config is None or not (web_config.basic_auth or web_config.rate_limit or web_config.headers)
        self.limit: ConnectionLimit[GuardedConnection] = ConnectionLimit(
            config.max_connections, config.read_header_timeout,
            Shedder(self.slots, config.telemetry_path) if plain else None)
        self._web_config = web_config
        self._runner = web.AppRunner(make_app(config, scraper, self.limit, self.slots, web_config), access_log=None,
                                     keepalive_timeout=KEEPALIVE_TIMEOUT, shutdown_timeout=SHUTDOWN_TIMEOUT)
        self._heap: Optional[HeapKeeper] = None

    async def start(self) -> None:
        """Listen on every configured address; ConfigError when one cannot be bound."""
        await self._runner.setup()
        for address in self.config.listen_addresses:
            try:
                await GuardedSite(self._runner, address, self.limit, self._web_config).start()
            except OSError as err:
                reason = err.strerror or err
                raise ConfigError(f"web.listen-address {shown(address)}: cannot listen: {reason}") from None
        self._heap = HeapKeeper(lambda: self.limit.closed)
        log.info("listening on %s, metrics at %s", ", ".join(self.config.listen_addresses), self.config.telemetry_path)

    async def stop(self) -> None:
        if self._heap is not None:
            self._heap.stop()
        await self._runner.cleanup()


async def run_server(config: Config, scraper: Scraper, web_config: Optional[WebConfig]) -> int:
    """Serve until SIGTERM or SIGINT, then shut down cleanly (exit status 0). ConfigError when an address cannot be
    bound."""
    tune_garbage_collection()
    tune_heap()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception_handler())
    raise_open_file_limit()
    server = Server(config, scraper, web_config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
        log.info("shutting down")
        return 0
    finally:
        await server.stop()


def serve(config: Config, scraper: Scraper, web_config: Optional[WebConfig] = None) -> int:
    return asyncio.run(run_server(config, scraper, web_config))
