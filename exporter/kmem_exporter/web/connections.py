"""Client connections, bounded: at most so many open at once, a request head must arrive in time, and answers that
wait for a client to read them are bounded in bytes and in time.

`GuardedConnection` wraps the HTTP server's protocol for one connection, counted from the moment its socket is
accepted (listener.py). At the connection limit, a new connection takes the place of the one that costs the most and
has earned the least (limits.py: never one that authenticated or is reading); when every one has earned its place, the
new one is answered 503 and closed at once. So idle or hostile clients can neither use up the process's file
descriptors nor keep others out by holding connections open. A client that opens a connection (or starts a request)
and does not finish sending the request head within the header timeout is disconnected, so half-sent requests do not
pile up. With TLS, a connection is counted from the moment it is accepted and the handshake is done here
(`asyncio.start_tls`) within that same timeout, so connections that never finish a handshake are limited, made room
for and closed like silent ones.

An answer is handed to the connection's transport whole, after its size was reserved in the budget of answers
waiting to be read (answers.py); the connection tells the budget what its transport still holds as that changes.
At most `max_handshakes` connections may be in their TLS handshake at once (each costs the handshake's buffers);
beyond it the oldest handshake is closed. Which connection goes first at a limit is said in limits.py.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import re
import socket
import ssl
import struct
import termios
from typing import Optional

from kmem_exporter.web.limits import EARNED, ConnectionLimit

log = logging.getLogger(__name__)

_REJECTED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Connection: close\r\nContent-Length: 29\r\n\r\ntoo many open connections\r\n\r\n")
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n", b"\n\r\n")

_HEAD_END = re.compile(rb"\r?\n\r?\n")  # each match ends one request head (a body could hold one too: counted)


def _head_ends(received: bytes) -> tuple[int, int]:
    """How many request heads end in `received`, and where the last one ends (-1: none does)."""
    if received.endswith(b"\r\n\r\n") and received.count(b"\n\r\n") == 1 and b"\n\n" not in received:
        return 1, len(received)  # the usual case: one whole head (every head end holds "\n\n" or "\n\r\n")
    heads = len(_HEAD_END.findall(received))
    return heads, max(received.rfind(marker) + len(marker) if marker in received else -1 for marker in _HEAD_ENDS)


class GuardedConnection(asyncio.Protocol):
    """One client connection: counted against the limit, with a deadline for each request head."""

    def __init__(self, inner: asyncio.Protocol, limit: ConnectionLimit[GuardedConnection],
                 tls: Optional[ssl.SSLContext] = None) -> None:
        self._inner = inner
        self._limit = limit
        self._tls = tls
        self._inner_connected = False  # the server's protocol has the (TLS) transport
        self._early: list[bytes] = []  # decrypted before the handshake's end was handled: replayed then
        self._socket: Optional[socket.socket] = None  # accepted, not yet handed to the event loop (see `admit`)
        self._transport: Optional[asyncio.BaseTransport] = None
        self._counted = False
        self.handshaking = False
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._tail = b""  # the last bytes received, to find a head's end split over two reads
        self.requests = 0  # requests being answered (the server counts them in and out)
        self._unchecked = 0  # of those, requests waiting for their access checks (password, ...)
        self.authenticated = False  # a request on this connection passed the password check
        self._head_begun = False  # bytes of a request head have come, not yet its end
        self._handed = 0  # request heads passed to the server
        self._started = 0  # requests the server has begun to answer

    @property
    def idle(self) -> bool:
        """Between requests (or before the first): none being answered, and no request head begun."""
        return self.requests == 0 and not self._head_begun

    def standing(self, now: float) -> int:
        """How much it has earned its place (see limits.py): lower goes first."""
        if self.handshaking or self._limit.answers.stalled(self, now):
            return 0
        if self.authenticated or self.requests > self._unchecked or self._limit.answers.holds(self):
            return EARNED
        return 1 if self.requests or self._head_begun else 2

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def evict(self) -> bool:
        """Disconnect at once; the limit has stopped counting it already. True when the event loop closes its socket
        later: aborted, or (being connected to this protocol) aborted as it is made (see `connection_made`)."""
        self._counted = False
        if self._socket is not None:  # accepted in this pass of the event loop: closed before it is connected
            self._socket.close()
            self._socket = None
            return False
        _abort(self._transport)
        return True

    def unsent(self) -> int:
        transport = self._transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            return transport.get_write_buffer_size()
        return 0

    def undelivered(self) -> int:
        """Unsent bytes, and those in the kernel's send queue: the sum drops whenever the client reads."""
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        queued = 0
        if sock is not None:
            try:
                queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except OSError:
                pass
        return self.unsent() + queued

    def request_started(self, checked: bool = True) -> None:
        """A request reaches the application; `checked` False while it waits for its access checks."""
        self._started += 1
        self.requests += 1
        if not checked:
            self._unchecked += 1

    def request_checked(self, authenticated: bool) -> None:
        """The request passed its access checks (with a password when `authenticated`)."""
        self._unchecked -= 1
        self.authenticated = self.authenticated or authenticated

    def request_finished(self, unchecked: bool = False) -> None:
        """Called as the server's handler returns (`unchecked`: without passing its access checks); the server writes
        the answer it returned before the event loop runs anything else, so the count drops in the loop's next round,
        once the answer is in the transport."""
        if unchecked:
            self._unchecked -= 1
        asyncio.get_running_loop().call_soon(self._one_less)

    def _one_less(self) -> None:
        self.requests -= 1
        self._limit.answers.settle(self)

    @property
    def _answered_all(self) -> bool:
        """Every request passed to the server has been answered: an answer written now comes after theirs."""
        return self.requests == 0 and self._handed == self._started and not self._head_begun

    def admit(self, sock: socket.socket) -> bool:
        """Count the connection in as its socket is accepted; False when the limit refuses it (see `refuse`)."""
        self._counted = self._limit.admit(self)
        if self._counted:
            self._socket = sock
        return self._counted

    def take_socket(self) -> Optional[socket.socket]:
        """The accepted socket, to be connected to this protocol; None when it was closed to make room meanwhile."""
        sock, self._socket = self._socket, None
        return sock

    def refuse(self, sock: socket.socket) -> None:
        """Answer 503 on the socket of a refused connection (a TLS client gets no answer) and close it."""
        if self._tls is None:
            try:
                sock.send(_REJECTED)
            except OSError:
                pass
        sock.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._counted:  # closed to make room while being connected (see `evict`)
            _abort(transport)
            return
        self._limit.attach(self, transport)
        self._arm()  # with TLS, the handshake and then the first request head must come within the header timeout
        if self._tls is None:
            self._connect_inner(transport)
        else:
            assert isinstance(transport, asyncio.ReadTransport)
            transport.pause_reading()  # nothing reaches this protocol before the TLS layer is in place
            asyncio.ensure_future(self._handshake(transport, self._tls))

    def _connect_inner(self, transport: asyncio.BaseTransport) -> None:
        self._inner_connected = True
        self._inner.connection_made(transport)

    async def _handshake(self, transport: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        self.handshaking = True
        self._limit.handshake_started(self)
        try:
            secured = await loop.start_tls(transport, self, context, server_side=True,  # type: ignore[arg-type]
                                           ssl_handshake_timeout=self._limit.header_timeout)
        except BaseException as err:  # noqa: BLE001 - a failed handshake ends this connection alone
            self._leave()
            _abort(transport)
            if isinstance(err, asyncio.CancelledError):
                raise
            log.debug("TLS handshake failed: %s", err)
            return
        finally:
            self.handshaking = False
            self._limit.handshake_ended(self)
        if secured is None or not self._counted:  # closed during the handshake (made room for, or too slow)
            self._leave()
            return
        self._limit.secured(self, transport, secured)
        self._transport = secured
        self._connect_inner(secured)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._leave()
        if self._inner_connected:
            self._inner_connected = False
            self._inner.connection_lost(exc)

    def _leave(self) -> None:
        self._disarm()
        self._limit.answers.release(self)
        self._limit.leave(self, self._transport)
        self._counted = False

    def data_received(self, data: bytes) -> None:
        if not self._counted:
            return
        if not self._inner_connected:
            self._early.append(data)
            return
        self._limit.touch(self)
        answered_all = self._answered_all
        received = self._tail + data
        heads, end = _head_ends(received)
        if end >= 0:  # a head is complete; whatever follows starts the next request
            self._disarm()
            received = received[end:]
        if received and self._deadline is None:
            self._arm()
        self._head_begun = bool(received)
        self._tail = received[-3:]
        if answered_all and heads == 1 and not received and self._limit.shed is not None:
            refusal = self._limit.shed(data)
            if refusal is not None:
                answer, close = refusal
                assert isinstance(self._transport, asyncio.WriteTransport)
                self._transport.write(answer)
                if close:
                    self._transport.close()
                return
        self._handed += heads
        assert isinstance(self._inner, asyncio.Protocol)
        self._inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return self._inner.eof_received() if self._counted and self._inner_connected else None

    def pause_writing(self) -> None:
        if self._counted and self._inner_connected:
            self._inner.pause_writing()
            self._limit.answers.settle(self)

    def resume_writing(self) -> None:
        if self._counted and self._inner_connected:
            self._limit.answers.settle(self)
            self._inner.resume_writing()

    def _arm(self) -> None:
        self._deadline = asyncio.get_running_loop().call_later(self._limit.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            log.debug("closing a connection that sent no complete request head in %gs", self._limit.header_timeout)
            self._transport.close()


def _abort(transport: Optional[asyncio.BaseTransport]) -> None:
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


def guard(limit: ConnectionLimit[GuardedConnection], inner: asyncio.Protocol,
          tls: Optional[ssl.SSLContext] = None) -> GuardedConnection:
    """`inner`, the server's protocol for a new TCP connection, counted against `limit`; with `tls`, the
    connection's TLS handshake is done before `inner` sees it."""
    return GuardedConnection(inner, limit, tls)
