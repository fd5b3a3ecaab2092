"""Basic authentication for `--web.config.file`'s `basic_auth_users`, with bcrypt.

Interface:

- `BasicAuth(users)`, with `await BasicAuth.check(authorization_header) -> bool`: bcrypt runs in a thread, at most
  two at once, and a successful check is remembered (64 users at most, keyed by an HMAC of the password with a
  per-process random key) so that a scrape pays bcrypt's cost once, not every time. Failures are never remembered.
  A failed check takes as long as a check at the highest cost among the users, whoever the user is (unknown users
  are checked against that user's hash; a cheaper user's failure waits out the difference), so that its time tells
  nothing of which users exist.
- `kmem_exporter.web.middleware` applies it to requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from typing import Mapping, Optional

import bcrypt

CACHE_SIZE = 64
"""Users whose last successful password is remembered."""

MAX_CONCURRENT_BCRYPT = 2
"""bcrypt verifications running at once; more wait their turn, so bad passwords cannot take every core."""

MAX_AUTHORIZATION_HEADER = 4096

_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def is_bcrypt_hash(value: str) -> bool:
    """Whether `value` is a bcrypt hash as htpasswd and exporter-toolkit write them ($2a$, $2b$ or $2y$)."""
    return _BCRYPT_HASH.fullmatch(value) is not None


def parse_basic_authorization(header: Optional[str]) -> Optional[tuple[str, bytes]]:
    """User and password from an `Authorization: Basic ...` header, or None when it is absent or malformed."""
    if not header or len(header) > MAX_AUTHORIZATION_HEADER:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, sep, password = decoded.partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def bcrypt_cost(hashed: bytes) -> int:
    """The cost of a bcrypt hash ($2b$12$... -> 12)."""
    return int(hashed[4:6])


def _checkpw(password: bytes, hashed: bytes) -> tuple[bool, float]:
    """Whether `password` matches, and how long bcrypt took."""
    started = time.perf_counter()
    try:
        matches = bcrypt.checkpw(password, hashed)
    except ValueError:  # a password over bcrypt's 72 bytes, as Go's bcrypt refuses it too
        matches = False
    return matches, time.perf_counter() - started


class BasicAuth:
    """Checks `Authorization` headers against `basic_auth_users` (user name -> bcrypt hash)."""

    def __init__(self, users: Mapping[str, bytes], cache_size: int = CACHE_SIZE,
                 max_concurrent: int = MAX_CONCURRENT_BCRYPT) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._users = dict(users)
        # An unknown user is checked against the costliest real hash; a failure takes as long as that check.
        self._decoy = max(self._users.values(), key=bcrypt_cost)
        self._max_cost = bcrypt_cost(self._decoy)
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._max_concurrent = max_concurrent
        self._semaphore: Optional[asyncio.Semaphore] = None
        self.bcrypt_calls = 0
        """bcrypt verifications started so far (a figure for tests and benchmarks)."""

    async def check(self, header: Optional[str]) -> bool:
        """Whether the header carries the user name and password of one of the users."""
        credentials = parse_basic_authorization(header)
        if credentials is None:
            return False
        user, password = credentials
        digest = self._digest(user, password)
        remembered = self._verified.get(user)
        if remembered is not None and hmac.compare_digest(remembered, digest):
            self._verified.move_to_end(user)
            return True
        hashed = self._users.get(user)
        checked = self._decoy if hashed is None else hashed
        matches, took = await self._bcrypt(password, checked)
        if not matches or hashed is None:
            # bcrypt's time doubles with each step of cost: wait out what the costliest hash would have taken more.
            await asyncio.sleep(took * (2 ** (self._max_cost - bcrypt_cost(checked)) - 1))
            return False
        self._verified[user] = digest
        self._verified.move_to_end(user)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return True

    def _digest(self, user: str, password: bytes) -> bytes:
        name = user.encode("utf-8")
        message = len(name).to_bytes(4, "big") + name + password
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def _bcrypt(self, password: bytes, hashed: bytes) -> tuple[bool, float]:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrent)
        semaphore = self._semaphore
        await semaphore.acquire()
        try:
            self.bcrypt_calls += 1
            running = asyncio.get_running_loop().run_in_executor(None, _checkpw, password, hashed)
        except BaseException:
            semaphore.release()
            raise
        # The slot is freed when bcrypt really ends, even if the request is cancelled while it runs.
        running.add_done_callback(lambda _: semaphore.release())
        return await asyncio.shield(running)
