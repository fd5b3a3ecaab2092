"""Reading a running exporter's /metrics for `report --from URL`: bounded in size and time, over TLS when the URL is
https (verified against the system's or a given CA; with a client certificate when the exporter asks for one), with
basic auth when a user is given."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

MAX_BYTES = 64 * 1024 * 1024  # an exposition of the worst-case node is a few MB
ACCEPT = "text/plain;version=0.0.4"


class FetchError(Exception):
    """The exporter could not be read; the message says why."""


@dataclass(frozen=True)
class Source:
    url: str
    timeout: float = 30.0
    ca_file: Optional[str] = None
    insecure_skip_verify: bool = False
    cert_file: Optional[str] = None  # a client certificate (and its key, in key_file or in the same file)
    key_file: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    max_bytes: int = MAX_BYTES

    @property
    def metrics_url(self) -> str:
        """The URL, with /metrics when it names no path."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"not an http(s) URL: {shown_url(self.url)}")
        if parts.username is not None:
            raise FetchError("give the user with --from.username and the password with --from.password-file, "
                             "not in the URL")
        return urlunsplit(parts._replace(path=parts.path if parts.path not in ("", "/") else "/metrics"))


def shown_url(url: str) -> str:
    """The URL without any user or password in it, for messages and the report's `source`."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc))[:200]


def _ssl_context(source: Source) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=source.ca_file)
    if source.cert_file is not None:
        context.load_cert_chain(source.cert_file, source.key_file)
    if source.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def fetch_families(source: Source) -> list[Metric]:
    """The metric families of the exporter's /metrics; FetchError when it cannot be read or parsed."""
    url = source.metrics_url
    auth = aiohttp.BasicAuth(source.username, source.password or "") if source.username is not None else None
    timeout = aiohttp.ClientTimeout(total=source.timeout)
    try:
        context: "ssl.SSLContext | bool" = _ssl_context(source) if url.startswith("https:") else True
        async with aiohttp.ClientSession(timeout=timeout, auth=auth) as session:
            async with session.get(url, headers={"Accept": ACCEPT}, ssl=context, allow_redirects=False) as response:
                if response.status != 200:
                    raise FetchError(f"{shown_url(url)} answered {response.status} {response.reason or ''}".rstrip())
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > source.max_bytes:
                        raise FetchError(f"{shown_url(url)}: the answer is over {source.max_bytes} bytes")
    except asyncio.TimeoutError:
        raise FetchError(f"{shown_url(url)}: no complete answer within {source.timeout:g}s") from None
    except (aiohttp.ClientError, ssl.SSLError, OSError) as err:
        raise FetchError(f"{shown_url(url)}: {type(err).__name__}: {err}") from None
    try:
        return list(text_string_to_metric_families(body.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as err:
        raise FetchError(f"{shown_url(url)}: not a Prometheus text exposition: {err}") from None
