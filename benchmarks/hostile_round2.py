"""The second round of hostile clients, each phase against an exporter of its own (started here, with the settings
the phase needs: TLS, a password, a huge slabinfo), its RSS sampled every 0.1 s:
  expect     40 connections send `GET /metrics` with `Expect: x` and stay open; then 10 scrapes
  burst      --web.max-connections=50: 50 idle connections, then 3 bursts of 1,000: the exporter's open sockets
  tls        3,000 clients send a ClientHello and stall (then close); RSS at the peak, after, and a TLS scrape
  authflood  a password (bcrypt cost 10), --web.max-connections=50: 600 wrong-password requests left waiting; the
             authorized scraper's 20 scrapes on its kept-alive connection, and a fresh login
  nonreader  the largest answer the default series bound allows (slabinfo of 11,000 caches, every column: 99,000
             series, 4.5 MB): 10 clients ask and never read, 5 read
  hugeslab   200,000 distinct cache names (13 MB file): the series bound, then 40 clients that do not read
  hugeslab32 the same with as many distinct names as the 32 MiB read cap takes (about 420,000)
Used by hostile_clients.py (`--phases expect,burst,...`).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import bcrypt

from exporter_process import free_port, kmem_exporter_command, status_fields

HEAD = ("slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables "
        "<limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n")


class Started:
    """An exporter started for one phase: its log, its RSS peak (sampled every 0.1 s) and its sockets."""

    def __init__(self, flags: list[str], work: Path, tls: Optional[ssl.SSLContext] = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.log = work / f"exporter-{self.port}.log"
        with open(self.log, "wb") as log:
            command = [*kmem_exporter_command(), "serve", f"--web.listen-address=127.0.0.1:{self.port}",
                       "--path.sysfs=/sys", *flags]
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while b"ready; collectors" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"exporter did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.peak_kib = self.rss_kib()
        self.peak_sockets = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss_kib(self) -> int:
        try:
            return status_fields(self.process.pid).get("VmRSS", 0)
        except OSError:
            return 0

    def sockets(self) -> int:
        count = 0
        try:
            for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
                with contextlib.suppress(OSError):
                    count += os.readlink(f"/proc/{self.process.pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
        return count

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_kib = max(self.peak_kib, self.rss_kib())
            self.peak_sockets = max(self.peak_sockets, self.sockets())

    def connect(self, receive_buffer: Optional[int] = None, timeout: float = 30) -> socket.socket:
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.port))
        return self.tls.wrap_socket(sock, server_hostname="localhost") if self.tls else sock

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> list[str]:
        self._stop.set()
        self._sampler.join()
        alive = self.alive()
        if alive:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        text = self.log.read_text(errors="replace")
        warnings = [line.split("msg=", 1)[-1][:160] for line in text.splitlines() if "level=warn" in line or
                    "level=error" in line]
        return [f"alive at the end: {'yes' if alive else 'NO'}; peak RSS {self.peak_kib / 1024:.0f} MiB; "
                f"log: {len(text.splitlines())} lines, {text.count('Traceback')} tracebacks",
                *(f"log: {w}" for w in warnings[:4])]


def request(headers: Optional[dict[str, str]] = None) -> bytes:
    lines = ["GET /metrics HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, int, int]:
    """(status, body bytes read, Content-Length); status 0 when nothing whole came."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return 0, 0, 0
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next((line.split(b":", 1)[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), b"0"))
        got = len(body)
        while got < length:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        return int(head.split()[1]), got, length
    except (OSError, ValueError):
        return 0, 0, 0


def many(port: int, count: int, timeout: float = 10) -> list[socket.socket]:
    """`count` connections started at once; those established within `timeout`."""
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        if sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS):
            selector.register(sock, selectors.EVENT_WRITE)
        else:
            sock.close()
    done, deadline = [], time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            selector.unregister(ready)
            (done.append(ready) if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 else ready.close())
    for key in list(selector.get_map().values()):
        assert isinstance(key.fileobj, socket.socket)
        key.fileobj.close()
    return done


def send_all(sockets: list[socket.socket], data: bytes) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.send(data)


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def scrapes(exporter: Started, count: int, headers: Optional[dict[str, str]] = None) -> dict[int, int]:
    statuses: dict[int, int] = {}
    for _ in range(count):
        try:
            with exporter.connect() as sock:
                sock.sendall(request(headers))
                status = read_answer(sock)[0]
        except OSError:
            status = 0
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def client_hello() -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with contextlib.suppress(ssl.SSLWantReadError):
        context.wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    return outgoing.read()


def slab_tree(work: Path, caches: int, max_bytes: int = 0) -> Path:
    """A procfs with only a slabinfo of `caches` distinct names (and this host's page size file); with `max_bytes`,
    as many distinct names as fit in that many bytes instead."""
    proc = work / f"proc-{caches}-{max_bytes}"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    with open(proc / "slabinfo", "w") as out:
        out.write(HEAD)
        size, i = len(HEAD), 0
        while i < caches or max_bytes:
            name, n = "", i
            for _ in range(6):
                n, rest = divmod(n, 26)
                name += chr(97 + rest)
            line = f"kmem_{name} {i % 997 + 1} {i % 997 + 64} 192 21 1 : tunables 0 0 0 : slabdata 3 3 0\n"
            size += len(line)
            if max_bytes and size > max_bytes:
                break
            out.write(line)
            i += 1
    return proc


def phase_expect(work: Path) -> list[str]:
    exporter = Started(["--path.procfs=/proc"], work)
    held = many(exporter.port, 40)
    send_all(held, request({"Expect": "x"}))
    time.sleep(1)
    statuses = scrapes(exporter, 10)
    close_all(held)
    return [f"40 connections with `Expect: x` held open; 10 scrapes meanwhile: {statuses}", *exporter.close()]


def phase_burst(work: Path) -> list[str]:
    exporter = Started(["--path.procfs=/proc", "--web.max-connections=50"], work)
    idle = many(exporter.port, 50)
    lines, held = [], list(idle)
    for round_ in range(3):
        held += many(exporter.port, 1000)
        time.sleep(1)
        lines.append(f"burst {round_ + 1} of 1,000: exporter's sockets {exporter.sockets()} (peak so far "
                     f"{exporter.peak_sockets}); scrape: {scrapes(exporter, 1)}")
    close_all(held)
    return [*lines, *exporter.close()]


def self_signed(work: Path) -> tuple[Path, Path]:
    cert, key = work / "server.crt", work / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def phase_tls(work: Path) -> list[str]:
    cert, key = self_signed(work)
    config = work / "tls.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    client = ssl.create_default_context(cafile=str(cert))
    exporter = Started(["--path.procfs=/proc", f"--web.config.file={config}"], work, client)
    before = exporter.rss_kib()
    hello, stalled = client_hello(), []
    for _ in range(30):
        batch = many(exporter.port, 100)
        send_all(batch, hello)
        stalled += batch
    time.sleep(1)
    during = scrapes(exporter, 5)
    peak = exporter.peak_kib
    close_all(stalled)
    time.sleep(7)  # the heap is trimmed within 5 s of the clients leaving
    after = exporter.rss_kib()
    return [f"3,000 stalled ClientHellos: RSS {before // 1024} -> peak {peak // 1024} MiB, {after // 1024} MiB 7 s "
            f"after they closed; TLS scrapes meanwhile: {during}", *exporter.close()]


def phase_authflood(work: Path) -> list[str]:
    config = work / "auth.yml"
    password_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10)).decode()
    config.write_text(f"basic_auth_users:\n  prometheus: {password_hash}\n")
    exporter = Started(["--path.procfs=/proc", f"--web.config.file={config}", "--web.max-connections=50"], work)
    right = {"Authorization": "Basic " + base64.b64encode(b"prometheus:s3cret").decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"prometheus:wrong").decode()}
    scraper = exporter.connect()
    scraper.sendall(request(right))
    first = read_answer(scraper)[0]
    flood = many(exporter.port, 600)
    send_all(flood, request(wrong))
    statuses: dict[int, int] = {}
    for _ in range(20):
        try:
            scraper.sendall(request(right))
            status = read_answer(scraper)[0]
        except OSError:
            status = 0
        statuses[status] = statuses.get(status, 0) + 1
        time.sleep(0.05)
    started = time.perf_counter()
    fresh = scrapes(exporter, 1, right)
    fresh_ms = (time.perf_counter() - started) * 1000
    close_all([*flood, scraper])
    return [f"authorized scraper (first {first}), during 600 wrong-password requests: {statuses}; a fresh login: "
            f"{fresh} in {fresh_ms:.0f} ms", *exporter.close()]


def phase_nonreader(work: Path) -> list[str]:
    proc = slab_tree(work, 11_000)
    exporter = Started([f"--path.procfs={proc}", "--collector.disable-defaults", "--collector.slabinfo",
                        "--collector.slabinfo.fields=.*", "--collector.timeout=60s"], work)
    stalled = []
    for _ in range(10):
        sock = exporter.connect(receive_buffer=4096)
        sock.sendall(request())
        stalled.append(sock)
    results = []
    for _ in range(5):
        with exporter.connect(timeout=60) as sock:
            sock.sendall(request())
            results.append(read_answer(sock))
    close_all(stalled)
    whole = sum(1 for status, got, length in results if status == 200 and got == length)
    size = max((length for _, _, length in results), default=0)
    return [f"10 clients that never read a {size / 1e6:.0f} MB answer; 5 readers: {whole} whole answers, "
            f"{[(s, got) for s, got, length in results if got != length or s != 200]} cut or refused",
            *exporter.close()]


def phase_hugeslab(work: Path, max_bytes: int = 0) -> list[str]:
    proc = slab_tree(work, 200_000, max_bytes)
    exporter = Started([f"--path.procfs={proc}", "--collector.disable-defaults", "--collector.slabinfo",
                        "--collector.vmstat", "--collector.timeout=60s"], work)
    first = scrapes(exporter, 1)
    stalled = []
    for _ in range(40):
        try:
            sock = exporter.connect(receive_buffer=4096)
            sock.sendall(request())
            stalled.append(sock)
        except OSError:
            pass
    time.sleep(3)
    after = scrapes(exporter, 3)
    close_all(stalled)
    size = (proc / "slabinfo").stat().st_size
    caches = (proc / "slabinfo").read_bytes().count(b"\n") - 2
    return [f"slabinfo of {caches:,} distinct caches ({size / 2**20:.1f} MiB): first scrape {first}, then 40 clients "
            f"that do not read and 3 scrapes: {after}", *exporter.close()]


def phase_hugeslab32(work: Path) -> list[str]:
    return phase_hugeslab(work, 32 << 20)


PHASES: dict[str, Callable[[Path], list[str]]] = {
    "expect": phase_expect, "burst": phase_burst, "tls": phase_tls, "authflood": phase_authflood,
    "nonreader": phase_nonreader, "hugeslab": phase_hugeslab, "hugeslab32": phase_hugeslab32,
}


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kmem-hostile2-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
