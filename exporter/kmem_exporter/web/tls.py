"""`tls_server_config`: its settings validated, and the server `ssl.SSLContext` built and reloaded from them."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping, Optional

from kmem_exporter.web.config_files import PemSource, WebConfigError
from kmem_exporter.web.config_values import Invalid, boolean, choice, known_names, string, string_list

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class TLSSettings:
    """`tls_server_config`, validated; the certificate files are read again on every reload."""

    cert: PemSource
    key: PemSource
    client_ca: Optional[PemSource]
    client_auth_type: str
    client_allowed_sans: Optional[tuple[str, ...]]
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    openssl_ciphers: tuple[str, ...]
    prefer_server_cipher_suites: bool
    openssl_curves: tuple[str, ...]


def _file_or_inline(section: Mapping[str, object], file_key: str, inline_key: str, base: Path) -> Optional[PemSource]:
    path = string(section.get(file_key), f"tls_server_config.{file_key}")
    text = string(section.get(inline_key), f"tls_server_config.{inline_key}")
    if path and text:
        raise Invalid(f"tls_server_config.{inline_key}", f"set together with {file_key}; set only one of them")
    if path:
        return PemSource(f"tls_server_config.{file_key}", path=str(base / path))
    if text:
        return PemSource(f"tls_server_config.{inline_key}", text=text)
    return None


def tls_settings(section: Mapping[str, object], base: Path) -> Optional[TLSSettings]:
    k = "tls_server_config"
    cert = _file_or_inline(section, "cert_file", "cert", base)
    key = _file_or_inline(section, "key_file", "key", base)
    client_ca = _file_or_inline(section, "client_ca_file", "client_ca", base)
    auth_given = string(section.get("client_auth_type"), f"{k}.client_auth_type")
    if cert is None and key is None and client_ca is None and auth_given is None:
        if section:
            raise Invalid(k, f"sets {', '.join(section)} but no cert_file and key_file, so TLS would be off")
        return None
    if cert is None:
        raise Invalid(f"{k}.cert_file", "missing: TLS needs cert_file (or cert) with key_file")
    if key is None:
        raise Invalid(f"{k}.key_file", "missing: TLS needs key_file (or key) with cert_file")
    auth = choice(auth_given, f"{k}.client_auth_type", CLIENT_AUTH_TYPES, "NoClientCert")
    if client_ca is not None and auth == "NoClientCert":
        raise Invalid(f"{k}.client_auth_type", "client_ca_file is set but client_auth_type is NoClientCert; "
                                                 "set RequireAndVerifyClientCert to check client certificates")
    sans = string_list(section.get("client_allowed_sans"), f"{k}.client_allowed_sans")
    if sans is not None and auth not in _REQUIRE_CERT:
        raise Invalid(f"{k}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert "
                                                    "(or RequireAnyClientCert)")
    min_name = choice(section.get("min_version"), f"{k}.min_version", TLS_VERSIONS, "TLS12")
    max_name = choice(section.get("max_version"), f"{k}.max_version", TLS_VERSIONS, "TLS13")
    if TLS_VERSIONS[min_name] > TLS_VERSIONS[max_name]:
        raise Invalid(f"{k}.min_version", f"{min_name} is above max_version {max_name}")
    ciphers = known_names(section.get("cipher_suites"), f"{k}.cipher_suites", CIPHER_SUITES)
    curves = known_names(section.get("curve_preferences"), f"{k}.curve_preferences", CURVES)
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        log.warning("%s.client_auth_type %s: client certificates are verified against the client CA, as with "
                    "RequireAndVerifyClientCert", k, auth)
    return TLSSettings(
        cert=cert, key=key, client_ca=client_ca, client_auth_type=auth, client_allowed_sans=sans,
        min_version=TLS_VERSIONS[min_name], max_version=TLS_VERSIONS[max_name],
        openssl_ciphers=tuple(c for c in (CIPHER_SUITES[n] for n in ciphers) if c is not None),
        prefer_server_cipher_suites=boolean(section.get("prefer_server_cipher_suites"),
                                          f"{k}.prefer_server_cipher_suites", default=True),
        openssl_curves=tuple(CURVES[n] for n in curves),
    )


def new_context(tls: TLSSettings, where: str) -> ssl.SSLContext:
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
    load_credentials(context, tls, where)
    return context


def load_credentials(context: ssl.SSLContext, tls: TLSSettings, where: str) -> None:
    """Check the certificate, key and client CA on a scratch context, then load them into `context`.

    The files are read once, so what is checked is what is loaded; `context` is left untouched on failure.
    """
    def read(source: PemSource) -> bytes:
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


def _check_certificates(scratch: ssl.SSLContext, pem: bytes, source: PemSource, where: str) -> None:
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
