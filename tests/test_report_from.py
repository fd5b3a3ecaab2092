"""`kmem-exporter report --from URL`: the verdict of a running exporter's /metrics is the verdict of its kernel files,
over plain HTTP and over the web config's TLS and basic auth; what cannot be read (a refusal, a wrong certificate, an
endless or silent answer) exits 3 with a message."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import fixture_flags, run_exporter
from secured_exporter import PASSWORD, USER, secured_exporter
from web.pki import Pki, make_pki

HOSTS = ("rhel7-fragmented", "memcg-near-exhausted", "cgroup2-6.18")


def report(*args: str) -> tuple[int, str, str]:
    result = run_exporter("report", *args)
    return result.returncode, result.stdout, result.stderr


def without_source(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != "source"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("host", HOSTS)
def test_the_same_verdict_as_from_the_files(exporter_factory: Callable[..., Any], host: str) -> None:
    exporter = exporter_factory(*fixture_flags(host))
    for form in ("json", "text"):
        local = report("--format", form, *fixture_flags(host))
        remote = report("--format", form, "--from", exporter.url)
        assert remote[0] == local[0] and remote[2] == "", remote[2]
        if form == "json":
            assert json.loads(remote[1])["source"] == f"{exporter.url}"
            assert without_source(json.loads(remote[1])) == without_source(json.loads(local[1]))
        else:
            assert remote[1] == local[1]


def test_over_tls_with_basic_auth(pki: Pki, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    with secured_exporter(pki, tmp_path, fixture_flags("rhel7-fragmented")) as exporter:
        status, out, err = report("--format", "json", "--from", exporter.url + "/metrics", "--from.ca-file",
                                  str(pki.ca.cert), "--from.username", USER, "--from.password-file",
                                  str(password_file))
        assert status == 1, err
        assert without_source(json.loads(out)) == without_source(json.loads(report(
            "--format", "json", *fixture_flags("rhel7-fragmented"))[1]))

        status, _, err = report("--from", exporter.url, "--from.ca-file", str(pki.ca.cert))
        assert (status, err.strip()) == (3, f"kmem-exporter: error: report --from: {exporter.url}/metrics answered "
                                            "401 Unauthorized")
        status, _, err = report("--from", exporter.url, "--from.username", USER, "--from.password-file",
                                str(password_file))  # the system's CAs do not know the test CA
        assert status == 3 and "CERTIFICATE_VERIFY_FAILED" in err, err
        status, _, err = report("--from", exporter.url, "--from.insecure-skip-verify", "--from.username", USER,
                                "--from.password-file", str(password_file))
        assert status == 1, err


def test_with_a_client_certificate(pki: Pki, tmp_path: Path) -> None:
    """An exporter that requires a client certificate (mutual TLS) answers report --from.cert-file/key-file."""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    with secured_exporter(pki, tmp_path, fixture_flags("memcg-near-exhausted"), client_certificates=True) as exporter:
        common = ["--from", exporter.url, "--from.ca-file", str(pki.ca.cert), "--from.username", USER,
                  "--from.password-file", str(password_file)]
        status, out, err = report(*common, "--from.cert-file", str(pki.client.cert), "--from.key-file",
                                  str(pki.client.key))
        assert status == 2, err  # critical, as from the files
        assert out == report(*fixture_flags("memcg-near-exhausted"))[1]
        status, _, err = report(*common)  # no client certificate: the handshake fails
        assert status == 3 and "kmem-exporter: error: report --from:" in err
        status, _, err = report(*common, "--from.key-file", str(pki.client.key))
        assert status == 3 and "--from.key-file needs --from.cert-file" in err


def test_credentials_in_the_url_are_refused() -> None:
    status, _, err = report("--from", f"http://{USER}:{PASSWORD}@127.0.0.1:9/metrics")
    assert status == 3 and "--from.password-file" in err and PASSWORD not in err
    status, _, err = report("--from", "ftp://127.0.0.1/metrics")
    assert status == 3 and "not an http(s) URL" in err


class _Endless(BaseHTTPRequestHandler):
    """Answers every GET with a body that never ends (comment lines of the text format)."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        line = b"# " + b"x" * 65533 + b"\n"
        try:
            while True:
                self.wfile.write(line)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endless_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_endless_answer_is_cut_at_its_limit(endless_server: str) -> None:
    status, _, err = report("--from", endless_server)
    assert status == 3
    assert err.strip() == f"kmem-exporter: error: report --from: {endless_server}/metrics: the answer is over " \
                          f"{64 * 1024 * 1024} bytes"


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        status, _, err = report("--from", url, "--from.timeout=1s")
    assert status == 3
    assert err.strip() == f"kmem-exporter: error: report --from: {url}/metrics: no complete answer within 1s"
