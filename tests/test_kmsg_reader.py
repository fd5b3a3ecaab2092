"""The kernel log reader against stand-ins for /dev/kmsg: a FIFO and a regular file in the record format, and a
scripted read() for what only the kernel does (one record per read, EPIPE, read errors) - plus the real device."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, Union

import pytest

from conftest import WAIT_SECONDS, is_root, wait_for
from kmem_exporter.reading.kmsg_reader import READ_SIZE, KmsgReader, describe_open_error
from kmem_exporter.parsers.kmsg import KmsgRecord

FIXTURES = Path(__file__).parent / "fixtures"


class Collected:
    """The records a reader handed over, in order."""

    def __init__(self) -> None:
        self.records: list[KmsgRecord] = []
        self._lock = threading.Lock()

    def __call__(self, record: KmsgRecord) -> None:
        with self._lock:
            self.records.append(record)

    @property
    def seqs(self) -> list[int]:
        with self._lock:
            return [r.seq for r in self.records]


@pytest.fixture
def readers() -> Iterator[list[KmsgReader]]:
    started: list[KmsgReader] = []
    yield started
    for reader in started:
        reader.stop()


def start_reader(readers: list[KmsgReader], path: Path, **kwargs: object) -> tuple[KmsgReader, Collected]:
    collected = Collected()
    reader = KmsgReader(path, collected, **kwargs)  # type: ignore[arg-type]
    reader.open()
    reader.start()
    readers.append(reader)
    return reader, collected


def record(seq: int, text: str = "message", prio: int = 6, dictionary: bytes = b"") -> bytes:
    return f"{prio},{seq},{seq * 1000},-;{text}\n".encode() + dictionary


# Stand-ins in the record format.

def test_fifo_with_continuation_lines_escapes_and_facilities(tmp_path: Path, readers: list[KmsgReader]) -> None:
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # keeps the pipe open, like the kernel side
    try:
        reader, collected = start_reader(readers, fifo)
        os.write(writer, record(7, "exe: page allocation failure: order:6, mode:0x10c0d0", prio=4,
                                dictionary=b" SUBSYSTEM=net\n DEVICE=+net:eth0\n"))
        os.write(writer, record(8, "exe: page allocation failure: order:6, mode:0x10c0d0", prio=12))
        os.write(writer, record(9, "\\xe6\\x97\\xa5: SLUB: Unable to allocate memory on node -1 (gfp=0x20)\\x0a", 4))
        wait_for("three records", lambda: len(collected.seqs) == 3)
    finally:
        os.close(writer)
    first, user, escaped = collected.records
    assert (first.facility, first.text, first.fields) == (
        0, "exe: page allocation failure: order:6, mode:0x10c0d0", {"SUBSYSTEM": "net", "DEVICE": "+net:eth0"})
    assert (user.facility, user.level) == (1, 4)
    assert escaped.text == "\u65e5: SLUB: Unable to allocate memory on node -1 (gfp=0x20)\n"
    state = reader.state()
    assert (state.up, state.records_read, state.records_lost, state.restarts, state.error) == (True, 3, 0, 0, None)


def test_regular_file_starts_at_its_end(tmp_path: Path, readers: list[KmsgReader]) -> None:
    """What is already in the log is never read: only what comes after the reader opened it."""
    path = tmp_path / "kmsg"
    path.write_bytes((FIXTURES / "rhel7-fragmented" / "dev" / "kmsg").read_bytes())
    reader, collected = start_reader(readers, path)
    with open(path, "ab") as f:
        f.write(record(48231, "after the start"))
    wait_for("the appended record", lambda: collected.seqs == [48231])
    assert reader.state().records_read == 1


def test_stream_records_split_across_reads(tmp_path: Path, readers: list[KmsgReader]) -> None:
    """A file holding many records is read in buffer-sized pieces; records cut at a piece's end are joined."""
    path = tmp_path / "kmsg"
    path.touch()
    reader, collected = start_reader(readers, path)
    count = 3000
    stream = b"".join(record(seq, f"record {seq} " + "x" * (seq % 97), dictionary=b" SUBSYSTEM=test\n")
                      for seq in range(1, count + 1))
    assert len(stream) > 10 * READ_SIZE
    with open(path, "ab") as f:
        f.write(stream)
    wait_for(f"{count} records", lambda: len(collected.seqs) == count)
    assert collected.seqs == list(range(1, count + 1))
    assert all(r.text == f"record {r.seq} " + "x" * (r.seq % 97) for r in collected.records)
    assert reader.state().records_lost == 0


# A scripted read(): what /dev/kmsg does that no file or pipe can (one record per read, EPIPE, errors).

Step = Union[bytes, OSError]


class ScriptedKmsg:
    """Stands in for os.read on /dev/kmsg: each call returns the next record or raises the next error; then
    nothing is available (EAGAIN). A record larger than the buffer fails with EINVAL, as the kernel's does."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        self.lock = threading.Lock()

    def __call__(self, fd: int, size: int) -> bytes:
        with self.lock:
            step = self.steps.pop(0) if self.steps else None
        if step is None:
            time.sleep(0.01)
            raise BlockingIOError(errno.EAGAIN, "no record")
        if isinstance(step, OSError):
            raise step
        if len(step) > size:
            raise OSError(errno.EINVAL, "buffer too small")
        return step


# /dev/null is a character device like /dev/kmsg: the reader takes one record per read() from it.
CHAR_DEVICE = Path("/dev/null")


def test_epipe_counts_the_overwritten_records(readers: list[KmsgReader]) -> None:
    script = ScriptedKmsg([record(10), record(11), BrokenPipeError(errno.EPIPE, "overwritten"), record(15),
                           record(16)])
    reader, collected = start_reader(readers, CHAR_DEVICE, read=script)
    wait_for("four records", lambda: len(collected.seqs) == 4)
    assert collected.seqs == [10, 11, 15, 16]
    state = reader.state()
    assert (state.records_read, state.records_lost, state.up) == (4, 3, True)


def test_epipe_before_the_first_record_counts_one(readers: list[KmsgReader]) -> None:
    script = ScriptedKmsg([BrokenPipeError(errno.EPIPE, "overwritten"), record(100), record(101)])
    reader, collected = start_reader(readers, CHAR_DEVICE, read=script)
    wait_for("two records", lambda: len(collected.seqs) == 2)
    assert reader.state().records_lost == 1


def test_one_record_per_read_with_dictionary_and_a_record_cut_at_the_buffer(readers: list[KmsgReader]) -> None:
    """The kernel cuts a record at its 8 KiB buffer: no newline at the end. Each read is one record, so the
    cut record does not swallow the next one."""
    header = b"4,20,20000,-;"
    text = b"exe: page allocation failure: order:3, mode:0x10c0d0 " + b"y" * 9000
    cut = (header + text)[:8192]
    script = ScriptedKmsg([
        record(19, "with dictionary", dictionary=b" SUBSYSTEM=net\n DEVICE=+net:eth0\n"),
        cut,
        record(21, " starts with a space"),
    ])
    reader, collected = start_reader(readers, CHAR_DEVICE, read=script)
    wait_for("three records", lambda: len(collected.seqs) == 3)
    dictionary, truncated, spaced = collected.records
    assert dictionary.fields == {"SUBSYSTEM": "net", "DEVICE": "+net:eth0"}
    assert truncated.text == (text[:8192 - len(header)]).decode()
    assert spaced.text == " starts with a space"
    assert reader.state().records_read == 3


def test_read_failure_restarts_and_resumes_after_the_last_record(readers: list[KmsgReader]) -> None:
    """After a failed read the reader opens the log again from its start (the kernel then returns the oldest
    records again) and skips what it had already read: nothing is counted twice."""
    script = ScriptedKmsg([record(1), record(2), OSError(errno.EIO, "Input/output error"),
                           record(0), record(1), record(2), record(3)])
    reader, collected = start_reader(readers, CHAR_DEVICE, read=script, initial_backoff=0.01)
    wait_for("records 1, 2, 3", lambda: collected.seqs == [1, 2, 3])
    state = reader.state()
    assert (state.up, state.records_read, state.records_lost, state.restarts, state.error) == (True, 3, 0, 1, None)


def test_reader_down_while_backing_off_and_stop_still_works(readers: list[KmsgReader]) -> None:
    script = ScriptedKmsg([record(1), OSError(errno.EIO, "Input/output error")])
    reader, _ = start_reader(readers, CHAR_DEVICE, read=script, initial_backoff=3600.0)
    wait_for("the reader to go down", lambda: not reader.state().up)
    state = reader.state()
    assert state.error is not None and state.error.startswith("/dev/null: read failed: EIO")
    assert (state.records_read, state.restarts) == (1, 0)
    reader.stop(timeout=WAIT_SECONDS)  # wakes the back-off wait
    assert reader._thread is None


def test_log_gone_after_a_failure_keeps_the_reader_down_until_it_is_back(tmp_path: Path,
                                                                         readers: list[KmsgReader]) -> None:
    path = tmp_path / "kmsg"
    path.touch()
    script = ScriptedKmsg([record(1), OSError(errno.ENODEV, "No such device")])
    collected = Collected()
    reader = KmsgReader(path, collected, read=script, initial_backoff=0.01, max_backoff=0.05)
    reader.open()
    path.unlink()
    reader.start()
    readers.append(reader)
    wait_for("the open to fail", lambda: (reader.state().error or "").endswith("--no-collector.kernel_log)"))
    state = reader.state()
    assert not state.up
    assert state.error == describe_open_error(path, FileNotFoundError())
    assert state.restarts >= 1
    path.touch()
    wait_for("the reader to be up again", lambda: reader.state().up)
    assert reader.state().error is None
    assert collected.seqs == [1]


def test_bug_in_the_handler_restarts_the_reader(readers: list[KmsgReader]) -> None:
    seen: list[int] = []

    def handle(record: KmsgRecord) -> None:
        seen.append(record.seq)
        if record.seq == 2 and seen.count(2) == 1:
            raise RuntimeError("bug")

    script = ScriptedKmsg([record(1), record(2), record(1), record(2), record(3)])
    reader = KmsgReader(CHAR_DEVICE, handle, read=script, initial_backoff=0.01)
    reader.open()
    reader.start()
    readers.append(reader)
    wait_for("records 1, 2, 3", lambda: seen == [1, 2, 3])
    assert reader.state().restarts == 1


def test_stop_returns_while_waiting_for_records(tmp_path: Path) -> None:
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)
    try:
        reader = KmsgReader(fifo, Collected())
        reader.open()
        reader.start()
        thread = reader._thread
        assert thread is not None and thread.is_alive()
        reader.stop(timeout=WAIT_SECONDS)
        assert not thread.is_alive()
        assert not reader.state().up
    finally:
        os.close(writer)


def test_open_errors_name_the_path_and_the_remedy(tmp_path: Path) -> None:
    missing = tmp_path / "kmsg"
    with pytest.raises(FileNotFoundError) as err:
        KmsgReader(missing, Collected()).open()
    assert describe_open_error(missing, err.value) == (
        f"{missing}: not found (no kernel log device, as in some containers: mount the host's /dev/kmsg, "
        f"or disable this collector with --no-collector.kernel_log)")
    assert describe_open_error(missing, PermissionError(errno.EPERM, "Operation not permitted")) == (
        f"{missing}: permission denied (reading the kernel log needs root, or CAP_SYSLOG when "
        f"kernel.dmesg_restrict=1)")


# The real /dev/kmsg.

def kmsg_buffer_size() -> int:
    """The kernel log buffer's size (syslog(2) SYSLOG_ACTION_SIZE_BUFFER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.klogctl(10, None, 0))


def write_kmsg(lines: list[str]) -> None:
    """Write lines into /dev/kmsg as user space does (facility 1). A new open file every 10 lines: the kernel
    rate-limits each open file to 10 lines per 5 seconds unless printk.devkmsg=on."""
    for start in range(0, len(lines), 10):
        fd = os.open("/dev/kmsg", os.O_WRONLY)
        try:
            for line in lines[start:start + 10]:
                os.write(fd, line.encode())
        finally:
            os.close(fd)


@pytest.mark.live
def test_real_kmsg_overwritten_under_the_reader_gives_epipe_and_reading_goes_on(readers: list[KmsgReader]) -> None:
    """The reader reads one record of the real /dev/kmsg and is then held up (its handler blocks) while more
    records are written than the kernel's buffer holds. When it reads again the kernel answers EPIPE; the gap in
    sequence numbers is counted as lost, and the records after it are read."""
    assert is_root(), "writing into /dev/kmsg needs root"
    tag = uuid.uuid4().hex
    collected = Collected()
    release = threading.Event()

    def handle(record: KmsgRecord) -> None:
        collected(record)
        if record.text.endswith(f"{tag} first"):
            release.wait(10 * WAIT_SECONDS)  # until the test has written the records

    reader = KmsgReader(Path("/dev/kmsg"), handle)
    reader.open()
    reader.start()
    readers.append(reader)
    write_kmsg([f"<6>kmem-exporter reader test {tag} first\n"])
    wait_for("the first record", lambda: any(r.text.endswith(f"{tag} first") for r in collected.records))
    line = f"<6>kmem-exporter reader test {tag} " + "z" * 100 + "\n"
    write_kmsg([line] * (3 * kmsg_buffer_size() // len(line) + 5000))  # more text and records than it holds
    write_kmsg([f"<6>kmem-exporter reader test {tag} last\n"])
    release.set()
    wait_for("the last record", lambda: any(r.text.endswith(f"{tag} last") for r in collected.records))
    first = next(r for r in collected.records if r.text.endswith(f"{tag} first"))
    after = collected.records[collected.records.index(first) + 1]
    state = reader.state()
    assert after.seq > first.seq + 1
    assert state.records_lost == after.seq - first.seq - 1
    assert state.up
    assert all(not r.from_kernel for r in collected.records if tag in r.text)
