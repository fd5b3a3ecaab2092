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
- `WebConfig.basic_auth` is a `kmem_exporter.web_auth.BasicAuth` (None without `basic_auth_users`), and
  `kmem_exporter.web_auth.web_config_middleware(web_config)` is the aiohttp middleware that applies basic
  authentication, `client_allowed_sans`, `rate_limit` and `http_server_config.headers`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Optional

from kmem_exporter.config_file import ConfigFileError, parse_yaml
from kmem_exporter.reading import FileTooLarge, NotARegularFile, read_bounded_bytes
from kmem_exporter.web_auth import BasicAuth, is_bcrypt_hash

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 << 20
"""The web config file, and each certificate, key and CA file, is refused above this size."""

RELOAD_CHECK_INTERVAL = 1.0
"""Seconds between two looks at the certificate files' metadata."""

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType({
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
})

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType({
    # Go requests a certificate without checking it; nothing uses it, so not asking is the same to the server.
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    # Python's ssl cannot require a certificate without verifying it: these verify against the client CA.
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,  # the older exporter-toolkit name of RequireAnyClientCert
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
})
_REQUIRE_CERT = ("RequireAnyClientCert", "RequireClientCert", "RequireAndVerifyClientCert")

# Go's names (crypto/tls CipherSuites(), plus the RSA key exchange suites older Go releases listed there) with
# OpenSSL's name; None for TLS 1.3 suites, which neither Go nor Python's ssl lets a server choose.
CIPHER_SUITES: Mapping[str, Optional[str]] = MappingProxyType({
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
})

CURVES: Mapping[str, str] = MappingProxyType({
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
})

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
_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"})
_FALSE = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"})
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class WebConfigError(Exception):
    """The web config file or a file it names is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit`: a token bucket refilled with one request every `interval` seconds, holding up to `burst`."""

    interval: float
    burst: int


@dataclass(frozen=True)
class _Source:
    """A PEM input: a file (watched for changes) or text given inline in the web config file."""

    key: str
    path: Optional[str] = None
    text: Optional[str] = field(default=None, repr=False)

    def read(self) -> bytes:
        if self.path is None:
            return (self.text or "").encode()
        return _read_capped(self.path, self.key)

    def signature(self) -> Optional[tuple[int, ...]]:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return (-1,)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class TLSSettings:
    """`tls_server_config`, validated; the certificate files are read again on every reload."""

    cert: _Source
    key: _Source
    client_ca: Optional[_Source]
    client_auth_type: str
    client_allowed_sans: Optional[tuple[str, ...]]
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    openssl_ciphers: tuple[str, ...]
    prefer_server_cipher_suites: bool
    openssl_curves: tuple[str, ...]


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
            self._context = _new_context(tls, self._where)
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
            _load_credentials(self._context, self.tls, self._where)
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


# --- reading the file ------------------------------------------------------------------------------------------


def load_web_config(path: str) -> WebConfig:
    """Read, validate and apply a web config file; WebConfigError names the file and key of any problem."""
    where = f"web config {path}"
    try:
        raw = _read_capped(path, "")
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
    except _Invalid as err:
        raise WebConfigError(f"{where}: {err}") from None


class _Invalid(Exception):
    """One key's value is refused: `key: reason`."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")


def _build(path: str, document: object) -> WebConfig:
    top = _mapping(document, "(top level)", _TOP_KEYS, allow_none=True)
    base = Path(path).parent
    tls = _tls_settings(_mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS), base)
    http = _mapping(top.get("http_server_config"), "http_server_config", _HTTP_KEYS)
    http2 = _bool(http.get("http2"), "http_server_config.http2", default=True)
    headers = _headers(http.get("headers"))
    users = _users(top.get("basic_auth_users"))
    rate_limit = _rate_limit(_mapping(top.get("rate_limit"), "rate_limit", _RATE_LIMIT_KEYS))
    return WebConfig(path, tls, http2, headers, users, rate_limit)


def _read_capped(path: str, key: str) -> bytes:
    """A regular file's bytes, refused beyond MAX_FILE_BYTES; never blocks on a FIFO or device."""
    what = f"{key}: " if key else ""
    try:
        return read_bounded_bytes(path, MAX_FILE_BYTES)
    except FileTooLarge:
        raise WebConfigError(f"{what}{path} is larger than {MAX_FILE_BYTES} bytes") from None
    except NotARegularFile as err:
        raise WebConfigError(f"{what}{path} is {err.strerror}") from None
    except OSError as err:
        raise WebConfigError(f"{what}cannot read {path}: {err.strerror}") from None


# --- validating each section -----------------------------------------------------------------------------------


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


def _mapping(value: object, key: str, allowed: tuple[str, ...], allow_none: bool = True) -> dict[str, object]:
    if value is None and allow_none:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(key, f"expected a mapping, got {_show(value)}")
    for name in value:
        if name not in allowed:
            raise _Invalid(f"{key}.{name}" if key != "(top level)" else str(name),
                            f"unknown key; expected one of {', '.join(allowed)}")
    return value


def _str(value: object, key: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(key, f"expected a string, got {_show(value)}")
    return value


def _str_list(value: object, key: str) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid(key, f"expected a list of strings, got {_show(value)}")
    return tuple(value)


def _bool(value: object, key: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, str):
        raise _Invalid(key, f"expected true or false, got {_show(value)}")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Invalid(key, f"expected true or false, got {_show(value)}")


def _choice(value: object, key: str, choices: Mapping[str, object], default: str) -> str:
    name = _str(value, key) or default
    if name not in choices:
        raise _Invalid(key, f"unknown value {_show(name)}; expected one of {', '.join(choices)}")
    return name


def _file_or_inline(section: Mapping[str, object], file_key: str, inline_key: str, base: Path) -> Optional[_Source]:
    path = _str(section.get(file_key), f"tls_server_config.{file_key}")
    text = _str(section.get(inline_key), f"tls_server_config.{inline_key}")
    if path and text:
        raise _Invalid(f"tls_server_config.{inline_key}", f"set together with {file_key}; set only one of them")
    if path:
        return _Source(f"tls_server_config.{file_key}", path=str(base / path))
    if text:
        return _Source(f"tls_server_config.{inline_key}", text=text)
    return None


def _tls_settings(section: Mapping[str, object], base: Path) -> Optional[TLSSettings]:
    k = "tls_server_config"
    cert = _file_or_inline(section, "cert_file", "cert", base)
    key = _file_or_inline(section, "key_file", "key", base)
    client_ca = _file_or_inline(section, "client_ca_file", "client_ca", base)
    auth_given = _str(section.get("client_auth_type"), f"{k}.client_auth_type")
    if cert is None and key is None and client_ca is None and auth_given is None:
        if section:
            raise _Invalid(k, f"sets {', '.join(section)} but no cert_file and key_file, so TLS would be off")
        return None
    if cert is None:
        raise _Invalid(f"{k}.cert_file", "missing: TLS needs cert_file (or cert) with key_file")
    if key is None:
        raise _Invalid(f"{k}.key_file", "missing: TLS needs key_file (or key) with cert_file")
    auth = _choice(auth_given, f"{k}.client_auth_type", CLIENT_AUTH_TYPES, "NoClientCert")
    if client_ca is not None and auth == "NoClientCert":
        raise _Invalid(f"{k}.client_auth_type", "client_ca_file is set but client_auth_type is NoClientCert; "
                                                 "set RequireAndVerifyClientCert to check client certificates")
    sans = _str_list(section.get("client_allowed_sans"), f"{k}.client_allowed_sans")
    if sans is not None and auth not in _REQUIRE_CERT:
        raise _Invalid(f"{k}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert "
                                                    "(or RequireAnyClientCert)")
    min_name = _choice(section.get("min_version"), f"{k}.min_version", TLS_VERSIONS, "TLS12")
    max_name = _choice(section.get("max_version"), f"{k}.max_version", TLS_VERSIONS, "TLS13")
    if TLS_VERSIONS[min_name] > TLS_VERSIONS[max_name]:
        raise _Invalid(f"{k}.min_version", f"{min_name} is above max_version {max_name}")
    ciphers = _names(section.get("cipher_suites"), f"{k}.cipher_suites", CIPHER_SUITES)
    curves = _names(section.get("curve_preferences"), f"{k}.curve_preferences", CURVES)
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        log.warning("%s.client_auth_type %s: client certificates are verified against the client CA, as with "
                    "RequireAndVerifyClientCert", k, auth)
    return TLSSettings(
        cert=cert, key=key, client_ca=client_ca, client_auth_type=auth, client_allowed_sans=sans,
        min_version=TLS_VERSIONS[min_name], max_version=TLS_VERSIONS[max_name],
        openssl_ciphers=tuple(c for c in (CIPHER_SUITES[n] for n in ciphers) if c is not None),
        prefer_server_cipher_suites=_bool(section.get("prefer_server_cipher_suites"),
                                          f"{k}.prefer_server_cipher_suites", default=True),
        openssl_curves=tuple(CURVES[n] for n in curves),
    )


def _names(value: object, key: str, known: Mapping[str, object]) -> tuple[str, ...]:
    names = _str_list(value, key) or ()
    for name in names:
        if name not in known:
            raise _Invalid(key, f"unknown name {_show(name)}; expected some of {', '.join(known)}")
    return names


def _headers(value: object) -> dict[str, str]:
    key = "http_server_config.headers"
    headers = _mapping(value, key, tuple(ALLOWED_HEADERS))
    result: dict[str, str] = {}
    for name, given in headers.items():
        text = _str(given, f"{key}.{name}")
        if text is None:  # blank: unset, as in exporter-toolkit
            continue
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and text not in allowed:
            raise _Invalid(f"{key}.{name}", f"got {_show(text)}; expected one of {', '.join(allowed)}")
        if not _HEADER_VALUE.fullmatch(text):
            raise _Invalid(f"{key}.{name}", "a header value cannot hold control characters or line breaks")
        result[name] = text
    return result


def _users(value: object) -> dict[str, bytes]:
    key = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(key, f"expected a mapping of user name to bcrypt hash, got {_show(value)}")
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise _Invalid(key, f"user name {_show(user)} is not a non-empty string")
        if ":" in user:
            raise _Invalid(f"{key}.{user}", "a user name cannot contain ':' in basic authentication")
        if not isinstance(hashed, str) or not is_bcrypt_hash(hashed):
            # The value is not shown: a user may have put a clear-text password here by mistake.
            raise _Invalid(f"{key}.{user}", "not a bcrypt hash (expected $2a$, $2b$ or $2y$, a cost of 04 to 31 "
                                             "and 53 characters; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)")
        users[user] = hashed.encode()
    return users


def _rate_limit(section: Mapping[str, object]) -> Optional[RateLimit]:
    if not section:
        return None
    interval = _duration(section.get("interval"), "rate_limit.interval")
    burst_text = section.get("burst")
    if not isinstance(burst_text, str) or not burst_text.isdigit() or not 0 < int(burst_text) <= 1_000_000:
        raise _Invalid("rate_limit.burst", f"expected a whole number from 1 to 1000000, got {_show(burst_text)}")
    return RateLimit(interval, int(burst_text)) if interval > 0 else None


def _duration(value: object, key: str) -> float:
    """Seconds from a Go duration (`1s`, `1m30s`, `250ms`); 0 is allowed and turns rate limiting off."""
    if value == "0":
        return 0.0
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise _Invalid(key, f"expected a duration such as 1s or 250ms, got {_show(value)}")
    seconds = sum(float(number) * _DURATION_UNITS[unit]
                  for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", value))
    if not 1e-6 <= seconds <= 86400 * 365:
        raise _Invalid(key, f"{_show(value)} is outside 1us to 1 year")
    return seconds


# --- the TLS context -------------------------------------------------------------------------------------------


def _new_context(tls: TLSSettings, where: str) -> ssl.SSLContext:
    """A server context with every setting of `tls_server_config` applied, and its credentials loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    if tls.openssl_ciphers:
        try:
            context.set_ciphers(":".join(tls.openssl_ciphers))
        except ssl.SSLError as err:
            raise WebConfigError(f"{where}: tls_server_config.cipher_suites: OpenSSL refuses them: "
                                 f"{getattr(err, 'reason', None) or err}") from None
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.openssl_curves:
        # Python's ssl sets one group: the most preferred curve is the one offered.
        context.set_ecdh_curve(tls.openssl_curves[0])
    context.set_alpn_protocols(["http/1.1"])
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if context.verify_mode != ssl.CERT_NONE and tls.client_ca is None:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go verifies against the system roots then
    _load_credentials(context, tls, where)
    return context


def _load_credentials(context: ssl.SSLContext, tls: TLSSettings, where: str) -> None:
    """Check the certificate, key and client CA on a scratch context, then load them into `context`.

    The files are read once, so what is checked is what is loaded; `context` is left untouched on failure.
    """
    def read(source: _Source) -> bytes:
        try:
            return source.read()
        except WebConfigError as err:
            raise WebConfigError(f"{where}: {err}") from None

    cert_pem, key_pem = read(tls.cert), read(tls.key)
    ca_pem = read(tls.client_ca) if tls.client_ca is not None else None
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _check_certificates(scratch, cert_pem, tls.cert, where)
    if ca_pem is not None and tls.client_ca is not None:
        _check_certificates(scratch, ca_pem, tls.client_ca, where)
    try:
        _load_chain(scratch, cert_pem, key_pem)
    except ssl.SSLError as err:
        raise WebConfigError(f"{where}: {tls.key.key}: not an unencrypted PEM private key matching "
                             f"{tls.cert.key} ({getattr(err, 'reason', None) or err})") from None
    _load_chain(context, cert_pem, key_pem)
    if ca_pem is not None:
        context.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))


def _check_certificates(scratch: ssl.SSLContext, pem: bytes, source: _Source, where: str) -> None:
    what = f"{where}: {source.key}: {source.path or 'the inline text'}"
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise WebConfigError(f"{what} holds no PEM certificate")
    try:
        scratch.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as err:
        raise WebConfigError(f"{what} is not a valid PEM certificate ({err})") from None


def _refuse_password() -> bytes:
    raise ssl.SSLError("the key is encrypted; give an unencrypted key")


def _load_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    with _memory_file(cert_pem) as cert_path, _memory_file(key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path, password=_refuse_password)


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path holding `data` that never touches a disk (memfd), so a read-only root filesystem is no obstacle."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("kmem-exporter-tls", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:  # pragma: no cover - Linux always has memfd
        path = os.path.join(directory, "pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
        yield path
