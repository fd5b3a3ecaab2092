"""A tiny aiohttp app served on the exporter's own listener with a web config's TLS and middleware, in a thread, on
127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from aiohttp import web

from conftest import require_tool
from kmem_exporter.web.limits import ConnectionLimit
from kmem_exporter.web.server import GuardedSite
from kmem_exporter.web.middleware import install_web_config
from kmem_exporter.web.config import WebConfig

EXPOSITION = "# HELP tiny_up A tiny app's only metric.\n# TYPE tiny_up gauge\ntiny_up 1\n"


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(text=EXPOSITION, content_type="text/plain")


def tiny_app(web_config: WebConfig) -> web.Application:
    app = web.Application()
    install_web_config(app, web_config)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _metrics)
    return app


class TinyServer:
    """Runs `tiny_app(web_config)` on its own event loop in a thread until `stop()`."""

    def __init__(self, web_config: WebConfig, limit: Optional[ConnectionLimit] = None) -> None:
        self.web_config = web_config
        self.limit = limit if limit is not None else ConnectionLimit(64, 10.0)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._started = threading.Event()
        self._stop: Optional[asyncio.Event] = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(tiny_app(self.web_config), access_log=None)
        await runner.setup()
        site = GuardedSite(runner, "127.0.0.1:0", self.limit, self.web_config)  # the exporter's listener
        await site.start()
        self.port = runner.addresses[0][1]
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> "TinyServer":
        self._thread.start()
        assert self._started.wait(30), "the tiny app did not start"
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.loop.close()

    @property
    def url(self) -> str:
        scheme = "https" if self.web_config.ssl_context() is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving(web_config: WebConfig) -> Iterator[TinyServer]:
    server = TinyServer(web_config).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class CurlAnswer:
    exit_code: int
    status: int
    headers: dict[str, str]
    body: str
    stderr: str


def curl(url: str, *args: str, tmp: Path) -> CurlAnswer:
    """A GET with the real curl; `status` is 0 when no HTTP answer came (TLS refused, connection reset)."""
    header_file = tmp / "curl-headers.txt"
    header_file.unlink(missing_ok=True)
    result = subprocess.run([require_tool("curl"), "-sS", "--max-time", "60", "-D", str(header_file),
                             "-w", "\n%{http_code}", *args, url], capture_output=True, text=True, timeout=60)
    body, _, code = result.stdout.rpartition("\n")
    headers: dict[str, str] = {}
    if header_file.exists():
        for line in header_file.read_text().splitlines()[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
    return CurlAnswer(result.returncode, int(code or 0), headers, body, result.stderr)


@dataclass
class Handshake:
    der: bytes
    version: Optional[str]
    cipher: Optional[str]
    status_line: str


def https_get(port: int, ca: Path, cert: Optional[Path] = None, key: Optional[Path] = None,
              minimum: Optional[ssl.TLSVersion] = None, maximum: Optional[ssl.TLSVersion] = None,
              authorization: Optional[str] = None) -> Handshake:
    """One handshake and one request with Python's ssl; raises ssl.SSLError / OSError when the server refuses."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            extra = f"Authorization: {authorization}\r\n" if authorization else ""
            tls.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            if not answer:
                raise ConnectionResetError("the server closed the connection without an answer")
            return Handshake(der, tls.version(), (tls.cipher() or (None,))[0], answer.split(b"\r\n")[0].decode())
