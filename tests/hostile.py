"""Clients that misbehave, for the hardening tests: raw sockets, stalled TLS hellos, answers read or not, and a
slabinfo large enough to make big answers (real files in a copy of a fixture tree)."""

from __future__ import annotations

import base64
import errno
import fcntl
import os
import selectors
import socket
import ssl
import struct
import termios
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import bcrypt

from conftest import copy_proc, fixture_root

SLABINFO_HEAD = ("slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> "
                 "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> "
                 "<num_slabs> <sharedavail>\n")


_TCP_ESTABLISHED = 1


def cache_name(i: int) -> str:
    """A distinct slab cache name that no folding rule touches (letters only)."""
    letters = ""
    for _ in range(5):
        i, rest = divmod(i, 26)
        letters += chr(ord("a") + rest)
    return f"kmem_{letters}"


def tree_with_slabinfo(tmp_path: Path, caches: int, host: str = "rhel7-fragmented") -> list[str]:
    """Flags pointing at a copy of a fixture tree whose slabinfo lists `caches` distinct caches."""
    proc = copy_proc(host, tmp_path)
    lines = [f"{cache_name(i):<24} {i % 997 + 1:>6} {i % 997 + 64:>6}    192   21    1 : tunables    0    0    0 : "
             f"slabdata {i % 31 + 1:>6} {i % 31 + 1:>6}      0\n" for i in range(caches)]
    (proc / "slabinfo").unlink(missing_ok=True)
    (proc / "slabinfo").write_text(SLABINFO_HEAD + "".join(lines))
    root = fixture_root(host)
    return [f"--path.procfs={proc}", f"--path.sysfs={root / 'sys'}", f"--path.kmsg={root / 'dev' / 'kmsg'}"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def hashed(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def request(path: str = "/metrics", headers: Optional[dict[str, str]] = None, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(port: int, receive_buffer: Optional[int] = None, timeout: float = 20) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def connect_many(port: int, count: int, timeout: float = 20) -> list[socket.socket]:
    """`count` connections started at once (non-blocking), those established within `timeout`."""
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS):
            selector.register(sock, selectors.EVENT_WRITE)
        else:
            sock.close()
    connected = []
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            sock = ready
            selector.unregister(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(sock)
            else:
                sock.close()
    for key in list(selector.get_map().values()):
        assert isinstance(key.fileobj, socket.socket)
        key.fileobj.close()
    selector.close()
    return connected


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (its FIN or reset has come), without reading anything: a client
    that does not read stays one that does not read."""
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state != _TCP_ESTABLISHED


def unacknowledged(sock: socket.socket) -> int:
    """Bytes sent on `sock` that the other side's kernel has not acknowledged yet."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return 0


def unread(sock: socket.socket) -> int:
    """Bytes received on `sock` not read yet."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return 0


def still_open(sockets: Iterable[socket.socket]) -> int:
    return sum(not closed_by_server(sock) for sock in sockets)


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 30, every: float = 0.01,
             state: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what} {state()}"
        time.sleep(every)


def client_hello() -> bytes:
    """The first bytes of a real TLS client handshake (a ClientHello): sent, then nothing more."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole answer (Content-Length framed): status, headers (lower-case names), body; AssertionError when the
    connection ends before the answer is whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before the answer's head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(body)} of {length} bytes of the answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def socket_fds(pid: int) -> int:
    """Open sockets of process `pid` (its listener included)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def accepted_sockets(port: int) -> int:
    """This process's open TCP sockets whose local port is `port`, the listener left out: the connections a server in
    this process has accepted on it and not closed (a client socket of this process has another local port)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/self/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] != "0A" and fields[9] in inodes:
                    count += 1  # 0A: listening
    return count
