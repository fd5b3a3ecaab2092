"""Bounded reads: a file that is huge, endless or not a file at all fails; it never blocks or takes the process.

Every file the exporter reads is a regular file: kernel files (procfs, sysfs, debugfs and cgroupfs files all are),
the config file, the web config file and the certificates it names. Opening with O_NONBLOCK keeps a FIFO put in a
file's place from blocking the open; it is then refused as not a regular file, as are devices such as /dev/zero. A
regular file is read up to a cap and refused when it holds more.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Files that hold one value or one line (sysctls, osrelease, cmdline, cgroup control files): the kernel prints at
# most a page, and a command line is at most a few KiB.
VALUE_FILE_MAX_BYTES = 64 * 1024
_CHUNK = 256 * 1024


class FileTooLarge(OSError):
    """The file holds more than the cap allows (or never ends)."""


class NotARegularFile(OSError):
    """The path is a FIFO, a device, a socket or a directory, where a kernel file was expected."""


def read_bounded(path: Path, max_bytes: int) -> str:
    """The text of `path`, at most `max_bytes` long, decoded as UTF-8 (invalid bytes replaced).

    Raises OSError: the open or read failed, FileTooLarge, or NotARegularFile.
    """
    return read_bounded_bytes(path, max_bytes).decode("utf-8", errors="replace")


def read_bounded_bytes(path: "Path | str", max_bytes: int) -> bytes:
    """The bytes of `path`, at most `max_bytes` of them; raises like `read_bounded`."""
    fd = _open_regular(path)
    try:
        chunks = []
        size = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge(0, f"larger than the {max_bytes}-byte limit")
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_head(path: Path, max_bytes: int) -> str:
    """At most the first `max_bytes` of `path` (a regular file), for files only whose start matters."""
    fd = _open_regular(path)
    try:
        return os.read(fd, max_bytes).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def _open_regular(path: "Path | str") -> int:
    """A descriptor of `path`, opened without blocking; IsADirectoryError or NotARegularFile unless a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise NotARegularFile(0, f"not a regular file ({_kind(mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "unknown type"


def describe_os_error(path: Path, err: OSError) -> str:
    """A one-line reason for a failed read that tells an operator what to do."""
    if isinstance(err, FileTooLarge):
        return f"{path}: {err.strerror} (--collector.max-file-size)"
    if isinstance(err, NotARegularFile):
        return f"{path}: {err.strerror}"
    if isinstance(err, FileNotFoundError):
        return f"{path}: file not found"
    if isinstance(err, PermissionError):
        return f"{path}: permission denied (run as root, or grant CAP_DAC_READ_SEARCH in a container)"
    reason = errno.errorcode.get(err.errno or 0, "error")
    return f"{path}: {reason}: {err.strerror or err}"
