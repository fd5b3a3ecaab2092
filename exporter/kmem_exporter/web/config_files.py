"""The files of a web config: the file itself and the PEM files it names, read with a cap and refused by name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from kmem_exporter.reading.bounded import FileTooLarge, NotARegularFile, read_bounded_bytes

MAX_FILE_BYTES = 1 << 20
"""The web config file, and each certificate, key and CA file, is refused above this size."""


class WebConfigError(Exception):
    """The web config file or a file it names is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class PemSource:
    """A PEM input: a file (watched for changes) or text given inline in the web config file."""

    key: str
    path: Optional[str] = None
    text: Optional[str] = field(default=None, repr=False)

    def read(self) -> bytes:
        if self.path is None:
            return (self.text or "").encode()
        return read_capped(self.path, self.key)

    def signature(self) -> Optional[tuple[int, ...]]:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return (-1,)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_capped(path: str, key: str) -> bytes:
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
