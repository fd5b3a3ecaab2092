"""The aiohttp side of `--web.config.file`: the middleware that applies `rate_limit` (429), `client_allowed_sans`
(403) and `basic_auth_users` (401 with `WWW-Authenticate: Basic`), and `http_server_config.headers` on every
response (streamed ones and errors included)."""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from aiohttp import web

from kmem_exporter.web.config import WebConfig

Checked = Callable[[web.Request, bool], None]

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware


class _TokenBucket:
    """`rate_limit`: one request allowed every `interval` seconds on average, `burst` at once."""

    def __init__(self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval, self._burst, self._clock = interval, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def _normal_san(value: str) -> str:
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value


def _peer_sans(request: web.Request) -> set[str]:
    transport = request.transport
    peercert: Any = transport.get_extra_info("peercert") if transport is not None else None
    if not peercert:
        return set()
    return {_normal_san(str(value)) for _, value in peercert.get("subjectAltName", ())}


def web_config_middleware(web_config: WebConfig, on_checked: Optional[Checked] = None) -> Middleware:
    """The aiohttp middleware applying a web config's access rules: rate limit, client certificate names, basic
    authentication (`install_web_config` adds the headers). `on_checked(request, authenticated)` is called when a
    request has passed them.

    As exporter-toolkit does (web/handler.go), the rate limit is one bucket for every client and comes first,
    before the password check: clients without a password use it up as well."""
    auth = web_config.basic_auth
    bucket = (_TokenBucket(web_config.rate_limit.interval, web_config.rate_limit.burst)
              if web_config.rate_limit is not None else None)
    sans = web_config.tls.client_allowed_sans if web_config.tls is not None else None
    allowed_sans = frozenset(_normal_san(san) for san in sans) if sans is not None else None

    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if bucket is not None and not bucket.allow():
            raise web.HTTPTooManyRequests()
        if allowed_sans is not None and not _peer_sans(request) & allowed_sans:
            raise web.HTTPForbidden(text="client certificate has no allowed subject alternative name\n")
        if auth is not None and not await auth.check(request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Basic"})
        if on_checked is not None:
            on_checked(request, auth is not None)
        return await handler(request)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await guarded(request, handler)

    return middleware


def install_web_config(app: web.Application, web_config: WebConfig, on_checked: Optional[Checked] = None) -> None:
    """Apply a web config's HTTP settings to `app`: its middleware first, and its headers on every response, streamed
    ones and errors included (added as each response is prepared)."""
    app.middlewares.insert(0, web_config_middleware(web_config, on_checked))
    headers = dict(web_config.headers)
    if headers:
        async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.update(headers)

        app.on_response_prepare.append(add_headers)
