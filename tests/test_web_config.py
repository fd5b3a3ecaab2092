"""`--web.config.file`: the exporter-toolkit format loaded, validated and applied with real certificates (made by
openssl at test time), real clients (curl, Python's ssl, openssl s_client) and a real Prometheus."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import bcrypt
import pytest
import yaml

import kmem_exporter.web.auth as web_auth
from conftest import PROJECT, fixture_flags, require_tool, wait_for
from metrics_text import only_collectors
from tcp import listening_port
from test_e2e import http_json, start_server
from kmem_exporter.web.limits import ConnectionLimit
from kmem_exporter.web.auth import BasicAuth, parse_basic_authorization
from kmem_exporter.web.config import WebConfig, load_web_config
from kmem_exporter.web.config_files import WebConfigError
from web.pki import Pair, Pki, make_leaf, make_pki, openssl
from web.tiny_app import EXPOSITION, TinyServer, curl, https_get, serving

PASSWORD = "correct horse"


def hashed(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_config(tmp_path: Path, config: Any, name: str = "web.yml") -> str:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return str(path)


def tls_config(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"tls_server_config": {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key), **extra}}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Any], TinyServer]]:
    with contextlib.ExitStack() as stack:
        yield lambda config: stack.enter_context(serving(load_web_config(write_config(tmp_path, config))))


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


# --- TLS -----------------------------------------------------------------------------------------------------


def test_tls_is_served_to_curl_and_python(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    server = serve(tls_config(pki))
    answer = curl(server.url + "/metrics", "--cacert", str(pki.ca.cert), tmp=tmp_path)
    assert (answer.exit_code, answer.status, answer.body) == (0, 200, EXPOSITION), answer.stderr
    handshake = https_get(server.port, pki.ca.cert)
    assert handshake.der == der(pki.server.cert)
    assert handshake.status_line == "HTTP/1.1 200 OK"
    assert handshake.version == "TLSv1.3"  # the default max_version


def test_connections_that_never_start_tls_are_limited_and_closed(pki: Pki, tmp_path: Path) -> None:
    """Connections that never begin their TLS handshake count against the connection limit from the moment they are
    accepted: at the limit a new one takes the oldest one's place, and each is closed after the header timeout."""
    web_config = load_web_config(write_config(tmp_path, tls_config(pki)))
    server = TinyServer(web_config, ConnectionLimit(4, 5.0)).start()
    try:
        silent = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(4)]
        wait_for("the server to count the 4 silent connections", lambda: server.limit.open == 4)
        for _ in range(3):  # the first takes the oldest silent connection's place; the others find room again
            assert https_get(server.port, pki.ca.cert).status_line == "HTTP/1.1 200 OK"
        assert silent[0].recv(1) == b""  # made room for
        for sock in silent[1:]:
            assert sock.recv(1) == b""  # no handshake within the header timeout (5 s)
        # The client sees the close before the server's loop has run the connection's end: wait for that, not a time.
        wait_for("the server to forget every closed connection", lambda: server.limit.open == 0)
        for sock in silent:
            sock.close()
    finally:
        server.stop()


def test_plain_http_is_refused_on_a_tls_port(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    server = serve(tls_config(pki))
    answer = curl(f"http://127.0.0.1:{server.port}/metrics", tmp=tmp_path)
    assert answer.status != 200


def test_require_and_verify_client_cert(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    server = serve(tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca.cert)))
    ok = curl(server.url, "--cacert", str(pki.ca.cert), "--cert", str(pki.client.cert), "--key",
              str(pki.client.key), tmp=tmp_path)
    assert (ok.exit_code, ok.status) == (0, 200), ok.stderr
    without = curl(server.url, "--cacert", str(pki.ca.cert), tmp=tmp_path)
    assert without.exit_code != 0 and without.status == 0
    wrong = curl(server.url, "--cacert", str(pki.ca.cert), "--cert", str(pki.other_client.cert), "--key",
                 str(pki.other_client.key), tmp=tmp_path)
    assert wrong.exit_code != 0 and wrong.status == 0, wrong
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(server.port, pki.ca.cert, pki.other_client.cert, pki.other_client.key, maximum=version)
        assert https_get(server.port, pki.ca.cert, pki.client.cert, pki.client.key,
                         maximum=version).status_line.endswith("200 OK")


def test_verify_client_cert_if_given(serve: Callable[[Any], TinyServer], pki: Pki) -> None:
    server = serve(tls_config(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=str(pki.ca.cert)))
    assert https_get(server.port, pki.ca.cert).status_line.endswith("200 OK")
    assert https_get(server.port, pki.ca.cert, pki.client.cert, pki.client.key).status_line.endswith("200 OK")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(server.port, pki.ca.cert, pki.other_client.cert, pki.other_client.key)


def test_client_allowed_sans(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    client = ("--cacert", str(pki.ca.cert), "--cert", str(pki.client.cert), "--key", str(pki.client.key))
    allowed = serve(tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca.cert),
                               client_allowed_sans=["127.0.0.2"]))
    assert curl(allowed.url, *client, tmp=tmp_path).status == 200
    other = serve(tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca.cert),
                             client_allowed_sans=["scraper.example"]))
    assert curl(other.url, *client, tmp=tmp_path).status == 403


def test_min_version_is_enforced(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    server = serve(tls_config(pki, min_version="TLS13"))
    refused = curl(server.url, "--cacert", str(pki.ca.cert), "--tls-max", "1.2", tmp=tmp_path)
    assert refused.exit_code != 0 and refused.status == 0
    with pytest.raises(ssl.SSLError):
        https_get(server.port, pki.ca.cert, maximum=ssl.TLSVersion.TLSv1_2)
    assert https_get(server.port, pki.ca.cert).version == "TLSv1.3"


def test_max_version_cipher_and_curve(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    server = serve(tls_config(pki, max_version="TLS12", cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
                              curve_preferences=["CurveP384", "X25519"], prefer_server_cipher_suites=False))
    handshake = https_get(server.port, pki.ca.cert)
    assert (handshake.version, handshake.cipher) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError):
        https_get(server.port, pki.ca.cert, minimum=ssl.TLSVersion.TLSv1_3)
    s_client = subprocess.run(
        [require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(pki.ca.cert)],
        input="", capture_output=True, text=True, timeout=60)
    assert "Server Temp Key: ECDH, secp384r1" in s_client.stdout, s_client.stdout


# --- reloading certificates --------------------------------------------------------------------------------


def replace_files(new_cert: Path, new_key: Path, cert: Path, key: Path) -> None:
    os.replace(new_key, key)
    os.replace(new_cert, cert)


def test_new_handshakes_present_a_replaced_certificate(pki: Pki, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    live = make_leaf(tmp_path / "live", "server", pki.ca)
    web_config = load_web_config(write_config(tmp_path, {"tls_server_config": {
        "cert_file": "live/server.crt", "key_file": "live/server.key"}}))  # relative to the config file
    context = web_config.ssl_context()
    original = der(live.cert)
    with serving(web_config) as server:
        assert https_get(server.port, pki.ca.cert).der == original
        assert not web_config.reload_if_changed(force=True)  # nothing changed

        fresh = make_leaf(tmp_path / "fresh", "server", pki.ca)
        renewed = der(fresh.cert)
        replace_files(fresh.cert, fresh.key, live.cert, live.key)
        assert web_config.reload_if_changed(force=True)
        assert web_config.ssl_context() is context
        assert https_get(server.port, pki.ca.cert).der == renewed != original

        # A key that does not match: the running certificate stays, one error is logged for that state of the files.
        broken = make_leaf(tmp_path / "broken", "server", pki.ca)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="kmem_exporter.web.config"):
            os.replace(broken.cert, live.cert)
            assert not web_config.reload_if_changed(force=True)
            assert not web_config.reload_if_changed(force=True)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "key_file" in errors[0].getMessage(), errors
        assert https_get(server.port, pki.ca.cert).der == renewed

        os.replace(broken.key, live.key)  # the matching key arrives: the next look loads the pair
        assert web_config.reload_if_changed(force=True)
        assert https_get(server.port, pki.ca.cert).der == der(live.cert)


def live_config_on_a_fake_clock(pki: Pki, tmp_path: Path) -> tuple[Pair, WebConfig, list[float]]:
    """A web config whose certificate files tests replace, and the clock (seconds) its reload checks read."""
    live = make_leaf(tmp_path / "live", "server", pki.ca)
    web_config = load_web_config(write_config(tmp_path, {"tls_server_config": {
        "cert_file": str(live.cert), "key_file": str(live.key)}}))
    now = [1000.0]
    web_config._clock = lambda: now[0]  # type: ignore[method-assign]
    web_config._next_check = now[0] + 1  # as if loaded at that time: the first look is due a second later
    return live, web_config, now


def test_a_handshake_notices_replaced_files_without_any_request(pki: Pki, tmp_path: Path) -> None:
    live, web_config, now = live_config_on_a_fake_clock(pki, tmp_path)
    with serving(web_config) as server:
        fresh = make_leaf(tmp_path / "fresh", "server", pki.ca)
        renewed = der(fresh.cert)
        replace_files(fresh.cert, fresh.key, live.cert, live.key)
        now[0] += 2  # the once-a-second look is due
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as raw:  # a handshake, no request
            ssl.create_default_context(cafile=str(pki.ca.cert)).wrap_socket(raw, server_hostname="127.0.0.1").close()
        assert https_get(server.port, pki.ca.cert).der == renewed


def test_reload_looks_at_the_files_at_most_once_a_second(pki: Pki, tmp_path: Path) -> None:
    live, web_config, now = live_config_on_a_fake_clock(pki, tmp_path)
    web_config._next_check = 0.0
    fresh = make_leaf(tmp_path / "fresh", "server", pki.ca)
    assert not web_config.reload_if_changed()  # looks now: nothing changed yet
    replace_files(fresh.cert, fresh.key, live.cert, live.key)
    now[0] += 0.5
    assert not web_config.reload_if_changed()  # too soon to look again
    now[0] += 0.6
    assert web_config.reload_if_changed()


# --- basic authentication ----------------------------------------------------------------------------------


def test_basic_auth_over_tls_with_curl(serve: Callable[[Any], TinyServer], pki: Pki, tmp_path: Path) -> None:
    headers = {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
               "Strict-Transport-Security": "max-age=31536000", "Content-Security-Policy": "default-src 'none'"}
    server = serve({**tls_config(pki), "basic_auth_users": {"alice": hashed(PASSWORD),
                                                             "bob": hashed("other").replace("$2b$", "$2y$")},
                    "http_server_config": {"headers": headers}})
    auth = server.web_config.basic_auth
    assert auth is not None
    tls = ("--cacert", str(pki.ca.cert))

    anonymous = curl(server.url + "/metrics", *tls, tmp=tmp_path)
    assert anonymous.status == 401 and anonymous.headers["www-authenticate"] == "Basic"
    assert EXPOSITION.strip() not in anonymous.body
    assert curl(server.url + "/metrics", *tls, "-u", "alice:wrong", tmp=tmp_path).status == 401
    assert curl(server.url + "/metrics", *tls, "-u", f"mallory:{PASSWORD}", tmp=tmp_path).status == 401
    calls = auth.bcrypt_calls
    assert curl(server.url + "/metrics", *tls, "-u", "alice:wrong", tmp=tmp_path).status == 401
    assert auth.bcrypt_calls == calls + 1  # a failure is never remembered

    first = curl(server.url + "/metrics", *tls, "-u", f"alice:{PASSWORD}", tmp=tmp_path)
    assert (first.status, first.body) == (200, EXPOSITION)
    calls = auth.bcrypt_calls
    for _ in range(3):
        assert curl(server.url + "/metrics", *tls, "-u", f"alice:{PASSWORD}", tmp=tmp_path).status == 200
    assert auth.bcrypt_calls == calls  # remembered: no bcrypt on later scrapes
    assert curl(server.url + "/metrics", *tls, "-u", "bob:other", tmp=tmp_path).status == 200  # a $2y$ hash

    for answer in (anonymous, first, curl(server.url + "/nowhere", *tls, "-u", f"alice:{PASSWORD}", tmp=tmp_path)):
        for name, value in headers.items():
            assert answer.headers[name.lower()] == value, (answer.status, answer.headers)


async def test_bcrypt_runs_in_threads_two_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    active, peak, threads = [0], [0], set()
    lock = threading.Lock()
    real = web_auth._checkpw

    def watched(password: bytes, hashed_password: bytes) -> tuple[bool, float]:
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # not on the event loop
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            threads.add(threading.get_ident())
        try:
            return real(password, hashed_password)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(web_auth, "_checkpw", watched)
    auth = BasicAuth({"alice": hashed(PASSWORD, cost=8).encode()})
    results = await asyncio.gather(*(auth.check(basic("alice", f"guess{i}")) for i in range(12)))
    assert results == [False] * 12
    assert auth.bcrypt_calls == 12 and 1 <= peak[0] <= 2
    assert threading.get_ident() not in threads


async def test_cache_is_bounded_and_per_password() -> None:
    users = {f"user{i}": hashed(f"pw{i}").encode() for i in range(5)}
    auth = BasicAuth(users, cache_size=3)
    for i in range(5):
        assert await auth.check(basic(f"user{i}", f"pw{i}"))
    assert auth.bcrypt_calls == 5
    assert await auth.check(basic("user4", "pw4")) and auth.bcrypt_calls == 5  # remembered
    assert await auth.check(basic("user0", "pw0")) and auth.bcrypt_calls == 6  # evicted, checked again
    assert not await auth.check(basic("user0", "pw1")) and auth.bcrypt_calls == 7  # another password: bcrypt
    assert not await auth.check(basic("user0", "x" * 100))  # beyond bcrypt's 72 bytes


@pytest.mark.parametrize("header", [
    None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
    "Basic " + base64.b64encode(b"\xff:x").decode(), "Basic " + "A" * 5000])
def test_malformed_authorization_headers(header: Any) -> None:
    assert parse_basic_authorization(header) is None


def test_authorization_header_parsing() -> None:
    assert parse_basic_authorization(basic("alice", "a:b")) == ("alice", b"a:b")
    assert parse_basic_authorization("basic " + base64.b64encode(b"u:").decode()) == ("u", b"")


# --- what is refused ------------------------------------------------------------------------------------------


def refusal(tmp_path: Path, config: Any) -> str:
    path = write_config(tmp_path, config)
    with pytest.raises(WebConfigError) as error:
        load_web_config(path)
    message = str(error.value)
    assert path in message, message
    return message


def tls_case(pki: Pki, **fields: Any) -> Callable[[Path], Any]:
    def build(tmp_path: Path) -> Any:
        section = {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key)}
        section.update({k: v for k, v in fields.items() if v is not None})
        for k in [k for k, v in fields.items() if v is None]:
            section.pop(k)
        return {"tls_server_config": section}
    return build


REFUSED: list[tuple[str, Callable[[Pki, Path], Any], tuple[str, ...]]] = [
    ("unknown top-level key", lambda p, t: {"tls_config": {}}, ("tls_config", "unknown key")),
    ("unknown TLS key", lambda p, t: tls_case(p, certfile="x")(t), ("tls_server_config.certfile",)),
    ("cert without key", lambda p, t: tls_case(p, key_file=None)(t), ("tls_server_config.key_file", "missing")),
    ("key without cert", lambda p, t: tls_case(p, cert_file=None)(t), ("tls_server_config.cert_file", "missing")),
    ("settings without a certificate", lambda p, t: {"tls_server_config": {"min_version": "TLS13"}},
     ("tls_server_config", "min_version")),
    ("missing cert file", lambda p, t: tls_case(p, cert_file=str(t / "nope.crt"))(t),
     ("tls_server_config.cert_file", "nope.crt", "No such file")),
    ("key of another certificate", lambda p, t: tls_case(p, key_file=str(p.client.key))(t),
     ("tls_server_config.key_file", "matching")),
    ("key file given as cert", lambda p, t: tls_case(p, cert_file=str(p.server.key))(t),
     ("tls_server_config.cert_file", "no PEM certificate")),
    ("bad client CA", lambda p, t: tls_case(p, client_auth_type="RequireAndVerifyClientCert",
                                            client_ca_file=str(garbage_ca(t)))(t),
     ("tls_server_config.client_ca_file", "not a valid PEM certificate")),
    ("client CA without client auth", lambda p, t: tls_case(p, client_ca_file=str(p.ca.cert))(t),
     ("tls_server_config.client_auth_type", "NoClientCert")),
    ("unknown client auth", lambda p, t: tls_case(p, client_auth_type="RequireClientCertPlease")(t),
     ("tls_server_config.client_auth_type", "RequireClientCertPlease", "RequireAndVerifyClientCert")),
    ("SANs without a required cert", lambda p, t: tls_case(p, client_auth_type="VerifyClientCertIfGiven",
                                                            client_ca_file=str(p.ca.cert),
                                                            client_allowed_sans=["a"])(t),
     ("tls_server_config.client_allowed_sans",)),
    ("unknown TLS version", lambda p, t: tls_case(p, min_version="TLS14")(t), ("tls_server_config.min_version",)),
    ("min above max", lambda p, t: tls_case(p, min_version="TLS13", max_version="TLS12")(t),
     ("tls_server_config.min_version", "above")),
    ("unknown cipher", lambda p, t: tls_case(p, cipher_suites=["TLS_RSA_WITH_RC4_128_SHA"])(t),
     ("tls_server_config.cipher_suites", "TLS_RSA_WITH_RC4_128_SHA")),
    ("unknown curve", lambda p, t: tls_case(p, curve_preferences=["CurveP224"])(t),
     ("tls_server_config.curve_preferences", "CurveP224")),
    ("not a boolean", lambda p, t: tls_case(p, prefer_server_cipher_suites="sometimes")(t),
     ("tls_server_config.prefer_server_cipher_suites",)),
    ("cert inline and as a file", lambda p, t: tls_case(p, cert=p.server.cert.read_text())(t),
     ("tls_server_config.cert", "only one")),
    ("encrypted key", lambda p, t: tls_case(p, key_file=str(encrypted_key(p, t)))(t),
     ("tls_server_config.key_file",)),
    ("FIFO as certificate", lambda p, t: tls_case(p, cert_file=str(fifo(t)))(t),
     ("tls_server_config.cert_file", "not a regular file")),
    ("unknown http key", lambda p, t: {"http_server_config": {"http3": True}}, ("http_server_config.http3",)),
    ("http2 not a boolean", lambda p, t: {"http_server_config": {"http2": "maybe"}}, ("http_server_config.http2",)),
    ("header not allowed", lambda p, t: {"http_server_config": {"headers": {"X-Powered-By": "me"}}},
     ("http_server_config.headers.X-Powered-By",)),
    ("header value not allowed", lambda p, t: {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
     ("http_server_config.headers.X-Frame-Options", "deny")),
    ("header with a line break", lambda p, t: {"http_server_config": {"headers": {
        "Content-Security-Policy": "a\r\nSet-Cookie: x"}}}, ("http_server_config.headers.Content-Security-Policy",)),
    ("clear-text password", lambda p, t: {"basic_auth_users": {"alice": "hunter2"}},
     ("basic_auth_users.alice", "not a bcrypt hash")),
    ("users not a mapping", lambda p, t: {"basic_auth_users": ["alice"]}, ("basic_auth_users",)),
    ("bad rate limit", lambda p, t: {"rate_limit": {"interval": "fast", "burst": 2}}, ("rate_limit.interval",)),
    ("alias", lambda p, t: "http_server_config: &h {http2: true}\nrate_limit: *h\n", ("aliases",)),
    ("duplicate key", lambda p, t: "basic_auth_users: {}\nbasic_auth_users: {}\n", ("duplicate", "basic_auth_users")),
    ("merge key", lambda p, t: "http_server_config:\n  <<: {http2: true}\n", ("http_server_config.<<",)),
    ("not a mapping", lambda p, t: "- a\n", ("expected a mapping",)),
    ("very deep nesting", lambda p, t: "rate_limit: " + "[" * 50_000 + "]" * 50_000 + "\n",
     ("not valid YAML", "nest")),  # libyaml's depth limit, or the composer's
    ("too many values", lambda p, t: "rate_limit: [" + "1, " * 20_000 + "1]\n", ("more than 10000 values",)),
    ("invalid UTF-8", lambda p, t: None, ("UTF-8",)),
    ("too large", lambda p, t: "#" * (1 << 20) + "\n", ("larger than",)),
]


def garbage_ca(tmp_path: Path) -> Path:
    path = tmp_path / "garbage-ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    return path


def encrypted_key(pki: Pki, tmp_path: Path) -> Path:
    path = tmp_path / "encrypted.key"
    openssl("pkey", "-in", str(pki.server.key), "-aes256", "-passout", "pass:secret", "-out", str(path), cwd=tmp_path)
    return path


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "cert.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("case", REFUSED, ids=[case[0] for case in REFUSED])
def test_unusable_configs_are_refused_naming_the_key(case: Any, pki: Pki, tmp_path: Path) -> None:
    name, build, expected = case
    if name == "invalid UTF-8":
        path = tmp_path / "web.yml"
        path.write_bytes(b"basic_auth_users:\n  \xff: x\n")
        with pytest.raises(WebConfigError, match="UTF-8"):
            load_web_config(str(path))
        return
    message = refusal(tmp_path, build(pki, tmp_path))
    for part in expected:
        assert part in message, message
    assert "hunter2" not in message


def test_a_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="nope.yml.*No such file"):
        load_web_config(str(tmp_path / "nope.yml"))


# --- what is accepted ----------------------------------------------------------------------------------------


def test_every_key_of_the_format_is_accepted(pki: Pki, tmp_path: Path) -> None:
    config = f"""
tls_server_config:
  cert_file: {pki.server.cert}
  key_file: {pki.server.key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca.cert}
  client_allowed_sans: [prometheus.example]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: true
  curve_preferences: [X25519, CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: sameorigin
    X-XSS-Protection: "1; mode=block"
    Strict-Transport-Security: ""
basic_auth_users:
  alice: {hashed(PASSWORD)}
  1234: {hashed(PASSWORD)}
rate_limit:
  interval: 1s
  burst: 20
"""
    web_config = load_web_config(write_config(tmp_path, config))
    assert web_config.ssl_context() is not None and web_config.http2 is False
    assert dict(web_config.headers) == {"X-Frame-Options": "sameorigin", "X-XSS-Protection": "1; mode=block"}
    assert web_config.rate_limit is not None and web_config.rate_limit.burst == 20
    assert web_config.tls is not None and web_config.tls.client_allowed_sans == ("prometheus.example",)


def test_inline_certificate_and_key(serve: Callable[[Any], TinyServer], pki: Pki) -> None:
    server = serve({"tls_server_config": {"cert": pki.server.cert.read_text(), "key": pki.server.key.read_text()}})
    assert https_get(server.port, pki.ca.cert).der == der(pki.server.cert)


@pytest.mark.parametrize("text", ["", "# nothing\n", "tls_server_config:\nbasic_auth_users:\n"])
def test_an_empty_config_means_plain_http_without_auth(text: str, tmp_path: Path) -> None:
    web_config = load_web_config(write_config(tmp_path, text))
    assert web_config.ssl_context() is None and web_config.basic_auth is None and not web_config.headers


def test_rate_limit_answers_429(serve: Callable[[Any], TinyServer], tmp_path: Path) -> None:
    server = serve({"rate_limit": {"interval": "1h", "burst": 2}})
    statuses = [curl(server.url + "/metrics", tmp=tmp_path).status for _ in range(3)]
    assert statuses == [200, 200, 429]


# --- a real Prometheus ----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_prometheus_scrapes_the_exporter_over_mutual_tls_with_basic_auth(pki: Pki, tmp_path: Path) -> None:
    """The real exporter, started with --web.config.file, scraped by a real Prometheus over mutual TLS."""
    prometheus_bin = require_tool("prometheus")
    web_yml = write_config(tmp_path, {**tls_config(pki, client_auth_type="RequireAndVerifyClientCert",
                                                   client_ca_file=str(pki.ca.cert)),
                                      "basic_auth_users": {"prometheus": hashed(PASSWORD, cost=10)},
                                      "http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    with open(tmp_path / "exporter.log", "w") as exporter_log:
        exporter = subprocess.Popen(
            [sys.executable, "-m", "kmem_exporter", "--web.listen-address=127.0.0.1:0",
             f"--web.config.file={web_yml}", *fixture_flags("rhel7-fragmented"),
             *only_collectors("buddyinfo", "vmstat")], stdout=exporter_log, stderr=subprocess.STDOUT, cwd=PROJECT)
    try:
        exporter_port = listening_port(exporter, what="the exporter", log=tmp_path / "exporter.log")
        url = f"https://127.0.0.1:{exporter_port}/metrics"
        client = ("--cacert", str(pki.ca.cert), "--cert", str(pki.client.cert), "--key", str(pki.client.key))
        answer = wait_for("the exporter to answer over TLS", lambda: curl(url, *client, "-u", f"prometheus:{PASSWORD}",
                                                                         tmp=tmp_path), lambda a: a.status)
        assert answer.status == 200 and "kmem_buddy_free_blocks" in answer.body
        assert answer.headers["x-frame-options"] == "deny"  # on the streamed /metrics answer too
        assert curl(url, *client, tmp=tmp_path).status == 401
        assert curl(url, "--cacert", str(pki.ca.cert), tmp=tmp_path).status == 0  # no client certificate
        scrape = {"scheme": "https", "metrics_path": "/metrics", "scrape_interval": "1s",
                  "tls_config": {"ca_file": str(pki.ca.cert), "cert_file": str(pki.client.cert),
                                 "key_file": str(pki.client.key)},
                  "basic_auth": {"username": "prometheus", "password": PASSWORD},
                  "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}
        wrong = {**scrape, "basic_auth": {"username": "prometheus", "password": "wrong"}}
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "kmem", **scrape}, {"job_name": "wrong-password", **wrong}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = start_server([prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'data'}"], tmp_path / "prometheus.log", "/-/ready")
        try:
            def scraped() -> tuple[dict[str, str], dict[str, str]]:
                """`up` of each job, and the last error of each target."""
                result = http_json(f"{prometheus.url}/api/v1/query?query=up")["data"]["result"]
                targets = http_json(f"{prometheus.url}/api/v1/targets")["data"]["activeTargets"]
                return ({r["metric"]["job"]: r["value"][1] for r in result},
                        {t["labels"]["job"]: t["lastError"] for t in targets})

            # A scrape of a loaded machine may time out (1 s): wait for one that succeeds, beside the refused job.
            up, errors = wait_for("a successful scrape over mutual TLS", scraped,
                                  lambda found: found[0].get("kmem") == "1" and found[1].get("kmem") == ""
                                  and "wrong-password" in found[0])
            assert up == {"kmem": "1", "wrong-password": "0"}
            assert "401" in errors["wrong-password"], errors
            assert http_json(f"{prometheus.url}/api/v1/query?query=kmem_buddy_free_blocks")["data"]["result"]
        finally:
            prometheus.stop()
    finally:
        exporter.kill()
        exporter.wait(30)
