"""`--web.config.file`: TLS, basic authentication and response headers in the Prometheus exporter-toolkit format.

The same file node_exporter takes (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md)
works here unchanged, within what Python's `ssl` module can apply (see docs/web-config.md).

Interface:

- `load_web_config(path) -> WebConfig` reads and validates the file and every file it names; any problem raises
  `WebConfigError`, whose message names the file and the key.
- `WebConfig.ssl_context()` is the server `ssl.SSLContext` (None without `tls_server_config`); always the same object.
- `WebConfig.reload_if_changed()` re-reads the certificate, key and client CA files when they changed (stat at most
  once a second) into that same context; a failed reload keeps the old certificate and logs one error. The server
  calls it as it accepts each connection, before the handshake.
- `WebConfig.basic_auth` is a `kmem_exporter.web.auth.BasicAuth` (None without `basic_auth_users`), and
  `kmem_exporter.web.middleware.web_config_middleware(web_config)` is the aiohttp middleware that applies basic
  authentication, `client_allowed_sans`, `rate_limit` and `http_server_config.headers`.
"""


from __future__ import annotations

import logging
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from kmem_exporter.config_file import ConfigFileError, parse_yaml
from kmem_exporter.web.auth import BasicAuth, is_bcrypt_hash
from kmem_exporter.web.config_files import WebConfigError, read_capped
from kmem_exporter.web.config_values import Invalid, boolean, duration, mapping, show, string
from kmem_exporter.web.tls import TLSSettings, load_credentials, new_context, tls_settings

log = logging.getLogger(__name__)

RELOAD_CHECK_INTERVAL = 1.0
"""Seconds between two looks at the certificate files' metadata."""


# The headers exporter-toolkit lets a file set, with the values it accepts (None: any value).
ALLOWED_HEADERS: Mapping[str, Optional[tuple[str, ...]]] = MappingProxyType({
    "Content-Security-Policy": None,
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
})


_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")


_TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences")


_HTTP_KEYS = ("http2", "headers")


_RATE_LIMIT_KEYS = ("interval", "burst")


_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit`: a token bucket refilled with one request every `interval` seconds, holding up to `burst`."""

    interval: float
    burst: int


class WebConfig:
    """A loaded web config file; see the module docstring for what a server does with it."""

    def __init__(self, path: str, tls: Optional[TLSSettings], http2: bool, headers: Mapping[str, str],
                 users: Mapping[str, bytes], rate_limit: Optional[RateLimit],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.tls = tls
        self.http2 = http2
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers))
        self.rate_limit = rate_limit
        self.basic_auth: Optional[BasicAuth] = BasicAuth(users) if users else None
        self._clock = clock
        self._context: Optional[ssl.SSLContext] = None
        self._signatures: tuple[Optional[tuple[int, ...]], ...] = ()
        self._failed_signatures: Optional[tuple[Optional[tuple[int, ...]], ...]] = None
        self._next_check = 0.0
        if tls is not None:
            self._context = new_context(tls, self._where)
            self._signatures = self._current_signatures()
            self._next_check = clock() + RELOAD_CHECK_INTERVAL

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """The server context (the same object for the life of this WebConfig), or None when TLS is off."""
        return self._context

    def reload_if_changed(self, force: bool = False) -> bool:
        """Re-read the certificate, key and client CA into the same context if their files changed.

        Cheap enough to call on every request: it looks at the files at most once a second (`force` looks now).
        Returns True when a new certificate was loaded. A failed reload keeps the previous certificate and logs one
        error for that state of the files.
        """
        if self.tls is None or self._context is None:
            return False
        now = self._clock()
        if not force and now < self._next_check:
            return False
        self._next_check = now + RELOAD_CHECK_INTERVAL
        signatures = self._current_signatures()
        if signatures == self._signatures or signatures == self._failed_signatures:
            return False
        try:
            load_credentials(self._context, self.tls, self._where)
        except (WebConfigError, OSError, ssl.SSLError) as err:
            self._failed_signatures = signatures
            log.error("keeping the previous TLS certificate: %s", err)
            return False
        self._signatures, self._failed_signatures = signatures, None
        log.info("reloaded the TLS certificate of %s", self.path)
        return True

    def _current_signatures(self) -> tuple[Optional[tuple[int, ...]], ...]:
        assert self.tls is not None
        sources = (self.tls.cert, self.tls.key, self.tls.client_ca)
        return tuple(source.signature() if source else None for source in sources)

    @property
    def _where(self) -> str:
        return f"web config {self.path}"


def load_web_config(path: str) -> WebConfig:
    """Read, validate and apply a web config file; WebConfigError names the file and key of any problem."""
    where = f"web config {path}"
    try:
        raw = read_capped(path, "")
    except WebConfigError as err:
        raise WebConfigError(f"{where}: {err}") from None
    try:
        document = parse_yaml(raw.decode("utf-8"), strings=True)
    except UnicodeDecodeError as err:
        raise WebConfigError(f"{where}: not valid UTF-8 at byte {err.start}") from None
    except ConfigFileError as err:
        raise WebConfigError(f"{where}: {err}") from None
    try:
        return _build(path, document)
    except Invalid as err:
        raise WebConfigError(f"{where}: {err}") from None


def _build(path: str, document: object) -> WebConfig:
    top = mapping(document, "(top level)", _TOP_KEYS, allow_none=True)
    base = Path(path).parent
    tls = tls_settings(mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS), base)
    http = mapping(top.get("http_server_config"), "http_server_config", _HTTP_KEYS)
    http2 = boolean(http.get("http2"), "http_server_config.http2", default=True)
    headers = _headers(http.get("headers"))
    users = _users(top.get("basic_auth_users"))
    rate_limit = _rate_limit(mapping(top.get("rate_limit"), "rate_limit", _RATE_LIMIT_KEYS))
    return WebConfig(path, tls, http2, headers, users, rate_limit)


def _headers(value: object) -> dict[str, str]:
    key = "http_server_config.headers"
    headers = mapping(value, key, tuple(ALLOWED_HEADERS))
    result: dict[str, str] = {}
    for name, given in headers.items():
        text = string(given, f"{key}.{name}")
        if text is None:  # blank: unset, as in exporter-toolkit
            continue
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and text not in allowed:
            raise Invalid(f"{key}.{name}", f"got {show(text)}; expected one of {', '.join(allowed)}")
        if not _HEADER_VALUE.fullmatch(text):
            raise Invalid(f"{key}.{name}", "a header value cannot hold control characters or line breaks")
        result[name] = text
    return result


def _users(value: object) -> dict[str, bytes]:
    key = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(key, f"expected a mapping of user name to bcrypt hash, got {show(value)}")
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise Invalid(key, f"user name {show(user)} is not a non-empty string")
        if ":" in user:
            raise Invalid(f"{key}.{user}", "a user name cannot contain ':' in basic authentication")
        if not isinstance(hashed, str) or not is_bcrypt_hash(hashed):
            # The value is not shown: a user may have put a clear-text password here by mistake.
            raise Invalid(f"{key}.{user}", "not a bcrypt hash (expected $2a$, $2b$ or $2y$, a cost of 04 to 31 "
                                             "and 53 characters; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)")
        users[user] = hashed.encode()
    return users


def _rate_limit(section: Mapping[str, object]) -> Optional[RateLimit]:
    if not section:
        return None
    interval = duration(section.get("interval"), "rate_limit.interval")
    burst_text = section.get("burst")
    if not isinstance(burst_text, str) or not burst_text.isdigit() or not 0 < int(burst_text) <= 1_000_000:
        raise Invalid("rate_limit.burst", f"expected a whole number from 1 to 1000000, got {show(burst_text)}")
    return RateLimit(interval, int(burst_text)) if interval > 0 else None
