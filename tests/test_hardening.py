"""The real exporter against clients nobody listed at first: odd headers that the server answers itself, bursts of
connections, stalled TLS hellos, wrong-password floods, timing of failed logins, credentials in debug logs, clients
that do not read huge answers, and kernel files with a huge number of caches. Real sockets, real TLS, real files."""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from conftest import PROJECT, RunningExporter, fixture_flags
from hostile import (basic, client_hello, connect, connect_many, hashed, read_answer, request,
                     socket_fds, still_open, tree_with_slabinfo, wait_for)
from metrics_text import collector_success, only_collectors, value
from tcp import listening_port
from web.pki import Pki, make_pki

FOUR = only_collectors("buddyinfo", "vmstat", "sysctl", "kernel")


def port_of(exporter: RunningExporter) -> int:
    return int(exporter.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def web_config(tmp_path: Path, config: dict[str, object]) -> str:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(config))
    return f"--web.config.file={path}"


def test_requests_the_server_answers_itself_never_keep_a_request_slot(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    """`Expect: x` is answered 417 by the HTTP server before any handler runs; with the only request slot, such
    requests left open must not keep it, nor may a request with a bad header."""
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.max-requests=1")
    held = []
    for odd, refused in (({"Expect": "x"}, 417), ({"Expect": "x"}, 417), ({"Content-Length": "1, 2"}, 400)):
        sock = connect(port_of(exporter))
        sock.sendall(request(headers=odd))
        assert read_answer(sock)[0] == refused
        held.append(sock)  # left open
    for _ in range(3):
        status, _, body = exporter.get("/metrics")
        assert status == 200, body
    for sock in held:
        sock.close()


def test_a_burst_of_connections_never_passes_the_connection_limit(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    """20 idle connections, then 300 at once: every connection accepted in one pass must find its own one to
    replace, so that the exporter keeps at most 20 open (counted on its side: connections beyond the listen backlog
    may look established to a client that the exporter never accepted)."""
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.max-connections=20",
                                "--web.read-header-timeout=120s")
    port = port_of(exporter)
    own = socket_fds(exporter.process.pid)  # its listener, and the event loop's own pair
    idle = connect_many(port, 20)
    burst = connect_many(port, 300)
    everyone = idle + burst
    try:
        # A scrape queued behind the burst: once it is answered, the exporter has accepted the whole burst.
        assert exporter.get("/metrics")[0] == 200
        wait_for("the exporter to keep at most 20 connections open",
                 lambda: socket_fds(exporter.process.pid) <= own + 20, 30)
    finally:
        for sock in everyone:
            sock.close()
    assert "connection limit reached (20 open, --web.max-connections=20)" in exporter.log()


def test_stalled_tls_hellos_are_bounded(guarded: Callable[..., RunningExporter], pki: Pki, tmp_path: Path) -> None:
    """300 clients send a ClientHello and stall: at most 64 handshakes are kept (each costs the handshake's
    buffers), the oldest closed first, and a real TLS scrape still works."""
    config = web_config(tmp_path, {"tls_server_config": {"cert_file": str(pki.server.cert),
                                                          "key_file": str(pki.server.key)}})
    exporter = guarded(*fixture_flags("rhel7-fragmented"), *FOUR, config, "--web.read-header-timeout=120s",
                       scheme="https")
    port = port_of(exporter)
    hello = client_hello()
    stalled = connect_many(port, 300)
    try:
        for sock in stalled:
            sock.sendall(hello)
        wait_for("at most 64 stalled handshakes left open", lambda: still_open(stalled) <= 64, 30)
        assert https_status(port, pki.ca.cert) == 200
    finally:
        for sock in stalled:
            sock.close()
    assert "TLS handshakes in progress reached 64" in exporter.log()


def https_status(port: int, ca: Path, path: str = "/metrics") -> int:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=30) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def start_guarded_exporter(args: list[str], log_path: Path, scheme: str = "http") -> RunningExporter:
    """The real exporter (with TLS or a password, which /-/ready asks for too) on a port of its own, once it listens
    and logs that it is ready (it can be ready before it listens)."""
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "kmem_exporter", "--web.listen-address=127.0.0.1:0",
                                    *args], stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=PROJECT)
    try:
        port = listening_port(process, what="the exporter", log=log_path)
    except BaseException:
        process.kill()
        process.wait(30)
        raise
    exporter = RunningExporter(process, f"{scheme}://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        assert process.poll() is None, exporter.log()
        return "msg=\"ready; collectors" in exporter.log()

    wait_for("the exporter to be ready", ready, 30)
    return exporter


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Callable[..., RunningExporter]]:
    started: list[RunningExporter] = []

    def start(*args: str, scheme: str = "http") -> RunningExporter:
        started.append(start_guarded_exporter(list(args), tmp_path / f"guarded-{len(started)}.log", scheme))
        return started[-1]

    yield start
    for exporter in started:
        exporter.stop(signal.SIGKILL)


def test_a_wrong_password_flood_never_closes_the_authorized_scraper(
        guarded: Callable[..., RunningExporter], tmp_path: Path) -> None:
    """60 connections each wait for bcrypt with a wrong password, at a limit of 20 connections: the authorized
    scraper's kept-alive connection keeps its place and is answered, and a new login gets in."""
    config = web_config(tmp_path, {"basic_auth_users": {"prometheus": hashed("s3cret", 10)}})
    exporter = guarded(*fixture_flags("rhel7-fragmented"), *FOUR, config, "--web.max-connections=20",
                                "--web.read-header-timeout=120s")
    port = port_of(exporter)
    right = {"Authorization": basic("prometheus", "s3cret")}
    scraper = connect(port)
    scraper.sendall(request(headers=right))
    assert read_answer(scraper)[0] == 200  # its password is now remembered
    flood = connect_many(port, 60)
    try:
        for sock in flood:
            sock.sendall(request(headers={"Authorization": basic("prometheus", "wrong")}))
        for _ in range(5):
            scraper.sendall(request(headers=right))
            assert read_answer(scraper)[0] == 200
        fresh = connect(port)
        fresh.sendall(request(headers=right))
        assert read_answer(fresh)[0] == 200
        fresh.close()
    finally:
        for sock in flood:
            sock.close()
        scraper.close()


def failure_seconds(port: int, authorization: str) -> float:
    """The shortest of three failed logins, each on its own connection."""
    times = []
    for _ in range(3):
        with connect(port) as sock:
            started = time.perf_counter()
            sock.sendall(request(headers={"Authorization": authorization}))
            assert read_answer(sock)[0] == 401
            times.append(time.perf_counter() - started)
    return min(times)


def test_a_failed_login_takes_as_long_whoever_the_user_is(
        guarded: Callable[..., RunningExporter], tmp_path: Path) -> None:
    """Users of cost 4 and 12: a failure for the cheap user, or for an unknown one, takes about as long as one for
    the costly user (unpadded, the cheap one takes 1/256 of it)."""
    config = web_config(tmp_path, {"basic_auth_users": {"cheap": hashed("a", 4), "costly": hashed("b", 12)}})
    exporter = guarded(*fixture_flags("rhel7-fragmented"), *FOUR, config)
    port = port_of(exporter)
    costly = failure_seconds(port, basic("costly", "wrong"))
    assert failure_seconds(port, basic("cheap", "wrong")) >= costly / 5
    assert failure_seconds(port, basic("nobody", "wrong")) >= costly / 5


def test_debug_logs_never_show_credentials(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--log.level=debug")
    port = port_of(exporter)
    secret = "cHJvbWV0aGV1czpzM2NyZXQ="  # prometheus:s3cret
    for bad in (f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {secret}\x01\r\n\r\n",
                f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization : Basic {secret}\r\n\r\n",
                f"GET /metrics HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic {secret}\x7f\r\n\r\n",
                "GET /metrics?password=s3cret HTTP/1.1\x01\r\nHost: x\r\n\r\n"):
        with connect(port) as sock:
            sock.sendall(bad.encode("latin-1"))
            assert read_answer(sock)[0] == 400
    exporter.stop()
    log = exporter.log()
    assert "bad request" in log  # what was wrong is still logged
    assert secret not in log and "s3cret" not in log and "<redacted>" in log


def test_the_rate_limit_comes_before_the_password_check_as_in_exporter_toolkit(
        guarded: Callable[..., RunningExporter], tmp_path: Path) -> None:
    """One bucket for every client, taken before the password is checked (exporter-toolkit's web/handler.go does
    the same): requests without a password use it up too. docs/web-config.md says so."""
    config = web_config(tmp_path, {"basic_auth_users": {"prometheus": hashed("s3cret", 4)},
                                   "rate_limit": {"interval": "1h", "burst": 2}})
    exporter = guarded(*fixture_flags("rhel7-fragmented"), *FOUR, config)
    port = port_of(exporter)
    statuses = []
    for authorization in (None, None, basic("prometheus", "s3cret")):
        with connect(port) as sock:
            sock.sendall(request(headers={"Authorization": authorization} if authorization else {}))
            statuses.append(read_answer(sock)[0])
    assert statuses == [401, 401, 429]


def test_clients_that_do_not_read_never_cut_off_readers(
        exporter_factory: Callable[..., RunningExporter], tmp_path: Path) -> None:
    """12 clients ask for a 20 MB answer and never read it (what the kernel does not take waits in the exporter,
    beyond the answers budget of 32 MiB all together); each of 4 readers then gets its answer whole."""
    flags = tree_with_slabinfo(tmp_path, 50_000)
    exporter = exporter_factory(*flags, *only_collectors("slabinfo"), "--collector.slabinfo.fields=.*",
                                "--collector.max-series=500000", "--collector.timeout=60s",
                                "--web.read-header-timeout=120s")
    port = port_of(exporter)
    stalled = []
    try:
        for _ in range(12):
            sock = connect(port, receive_buffer=4096)
            sock.sendall(request())
            stalled.append(sock)
        for _ in range(4):
            with connect(port, timeout=60) as reader:
                reader.sendall(request())
                status, headers, body = read_answer(reader)
                assert status == 200 and len(body) > 16_000_000
                assert body.endswith(b"\n")
    finally:
        for sock in stalled:
            sock.close()


def test_above_the_series_bound_the_collector_fails_alone_with_its_reason(
        exporter_factory: Callable[..., RunningExporter], tmp_path: Path) -> None:
    """5,000 distinct caches (2 series each) against a bound of 4,000 series: the slabinfo parse stops at 2,000
    names, slabinfo fails with its reason, and the others are served; conntrack, which reads the same file, still
    counts its caches, listed past where the parse stopped."""
    flags = tree_with_slabinfo(tmp_path, 5_000)
    slabinfo = Path(flags[0].split("=", 1)[1]) / "slabinfo"
    with open(slabinfo, "a") as out:
        for address, active in (("ffff8803f0b7ba80", 25), ("ffff8803f0b7c000", 7)):
            out.write(f"nf_conntrack_{address} {active} 50 320 25 2 : tunables 0 0 0 : slabdata 2 2 0\n")
        out.write("nf_conntrack_expect 0 0 240 17 1 : tunables 0 0 0 : slabdata 0 0 0\n")
    exporter = exporter_factory(*flags, *only_collectors("slabinfo", "conntrack", "vmstat", "buddyinfo"),
                                "--collector.max-series=4000")
    text = exporter.metrics()
    assert collector_success(text) == {"slabinfo": 0, "conntrack": 1, "vmstat": 1, "buddyinfo": 1}
    assert "kmem_slab_" not in text and "kmem_vmstat_" in text
    assert (value(text, "kmem_nf_conntrack_slab_caches"), value(text, "kmem_nf_conntrack_slab_objects_active"),
            value(text, "kmem_nf_conntrack_slab_objects")) == (2, 32, 100)
    exporter.stop()
    assert "collector=slabinfo failed: " in exporter.log()
    assert "slabinfo: more than 2000 slab cache names to export" in exporter.log()


def test_above_the_series_bound_the_collector_with_the_most_series_fails(
        exporter_factory: Callable[..., RunningExporter]) -> None:
    """A bound below what buddyinfo and vmstat give together: buddyinfo, the larger, fails with its reason; vmstat
    is served whole."""
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *only_collectors("vmstat", "buddyinfo"),
                                "--collector.max-series=30")
    text = exporter.metrics()
    assert 'kmem_collector_success{collector="buddyinfo"} 0.0' in text
    assert 'kmem_collector_success{collector="vmstat"} 1.0' in text
    assert "kmem_buddy_" not in text and "kmem_vmstat_" in text
    exporter.stop()
    assert re.search(r"collector=buddyinfo failed: \d+ series would take the collection to \d+, over "
                     r"--collector.max-series=30; its series are left out", exporter.log())
