"""What the kernel knows of this machine's TCP sockets (/proc/net/tcp, /proc/net/tcp6), so that a test can wait for
what a server has done instead of guessing how long it takes: which ports a process listens on, whether the server
has read what a client sent, and whether it has let go of a connection."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from conftest import wait_for

Address = tuple[str, int]

_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
           "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


@dataclass(frozen=True)
class Socket:
    local: Address
    remote: Address
    state: str
    unsent: int  # bytes written and not yet taken by the other end
    unread: int  # bytes received that the owning process has not read yet (for a listener: connections not accepted)
    inode: int


def _address(text: str) -> Address:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word in host byte order (little-endian here).
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw), int(port, 16)
    shown = socket.inet_ntop(socket.AF_INET6, raw)
    return shown.removeprefix("::ffff:") if "." in shown else shown, int(port, 16)


def sockets() -> list[Socket]:
    """Every TCP socket of this network namespace."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            queues = fields[4].split(":")
            found.append(Socket(_address(fields[1]), _address(fields[2]), _STATES.get(fields[3], fields[3]),
                                int(queues[0], 16), int(queues[1], 16), int(fields[9])))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The sockets process `pid` holds open, by inode number."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listening(pid: int) -> set[Address]:
    """The addresses process `pid` listens on."""
    inodes = socket_inodes(pid)
    return {s.local for s in sockets() if s.state == "LISTEN" and s.inode in inodes}


def listening_port(process: subprocess.Popen[str] | subprocess.Popen[bytes], host: str = "127.0.0.1",
                   what: str = "the server", log: Optional[Path] = None) -> int:
    """The port `process` listens on at `host`, once it does (it was started with port 0); fails if it exits."""

    def port() -> Optional[int]:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}: {log.read_text() if log else ''}")
        return next((p for h, p in listening(process.pid) if h == host), None)

    return wait_for(f"{what} to listen on {host}", port)


class ServerEnd:
    """The server's end of a client's connection, found by the client socket's addresses (taken while it is open)."""

    def __init__(self, client: socket.socket) -> None:
        self.local: Address = client.getpeername()[:2]
        self.remote: Address = client.getsockname()[:2]

    def socket(self) -> Optional[Socket]:
        return next((s for s in sockets() if s.local == self.local and s.remote == self.remote), None)

    def has_read_all(self) -> bool:
        """The server has accepted the connection and read every byte the client sent."""
        found = self.socket()
        return found is not None and found.state in ("ESTABLISHED", "CLOSE_WAIT") and found.unread == 0

    def answering(self) -> bool:
        """The server has written bytes that wait for its client: in its end's send queue, or received and not read
        by the client."""
        ends = [s for s in sockets() if {s.local, s.remote} == {self.local, self.remote}]
        return any(s.unsent > 0 if s.local == self.local else s.unread > 0 for s in ends)

    def open(self) -> bool:
        """The server holds the connection open (whether or not its client has closed its side)."""
        found = self.socket()
        return found is not None and found.state in ("ESTABLISHED", "CLOSE_WAIT")


def wait_until_read(clients: list[socket.socket]) -> None:
    """Until the server has accepted each client's connection and read all it sent."""
    ends = [ServerEnd(client) for client in clients]
    wait_for(f"the server to read what {len(ends)} client(s) sent", lambda: all(e.has_read_all() for e in ends))


def close_and_wait(client: socket.socket, server: int) -> None:
    """Close a client's connection, which process `server` has accepted, and wait until the server has closed its
    end too (it has let go of it). Its end is followed by inode: after a reset it leaves the kernel's table at once."""
    end = ServerEnd(client)
    inode = wait_for("the server's end of the connection", end.socket).inode
    client.close()
    wait_for("the server to close its end of the connection", lambda: inode not in socket_inodes(server))
