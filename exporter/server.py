"""The HTTP server: /metrics (text or OpenMetrics, gzip when accepted), a landing page, and health endpoints."""

from __future__ import annotations

import asyncio
import html
import logging
from typing import AsyncIterator, Optional, Sequence

from aiohttp import web
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.config import Config
from exporter.scrape import Scraper

log = logging.getLogger(__name__)



class _Snapshot:
    """What prometheus-client's encoders want: an object whose collect() yields metric families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Sequence[Metric]:
        return self._families


def render(families: Sequence[Metric], accept: str) -> tuple[bytes, str]:
    """The exposition body and its content type, chosen by the Accept header like prometheus-client does."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Snapshot(families)), content_type


def make_app(config: Config, scraper: Scraper) -> web.Application:
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        families = await scraper.scrape()
        body, content_type = render(families, request.headers.get("Accept", ""))
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()  # gzip or deflate only when the client's Accept-Encoding allows it
        return response

    async def landing(request: web.Request) -> web.Response:
        path = html.escape(config.telemetry_path)
        collectors = "".join(f"<li>{html.escape(name)}</li>" for name in config.enabled_collectors)
        page = (
            "<!DOCTYPE html><html><head><title>kmem-exporter</title></head><body>"
            f"<h1>kmem-exporter</h1><p>Version {html.escape(__version__)}</p>"
            f'<p><a href="{path}">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>'
            f"<h2>Enabled collectors</h2><ul>{collectors}</ul></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    readiness: Optional["asyncio.Task[None]"] = None  # done once every collector has something to serve

    async def ready(request: web.Request) -> web.Response:
        if readiness is None or not readiness.done():
            return web.Response(status=503, text="starting\n")
        return web.Response(text="OK\n")

    async def become_ready() -> None:
        await scraper.wait_ready()
        log.info("ready; collectors: %s", ", ".join(config.enabled_collectors) or "none")

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # The port is bound after this part: nothing here may wait for a slow (or stuck) collector.
        nonlocal readiness
        await scraper.start()
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


def serve(config: Config, scraper: Scraper) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    host, port = config.listen_host_port
    log.info("listening on %s:%d, metrics at %s", host, port, config.telemetry_path)
    web.run_app(make_app(config, scraper), host=host, port=port, print=None, access_log=None,
                shutdown_timeout=5.0)
