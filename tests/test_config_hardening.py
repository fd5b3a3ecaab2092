"""Hostile configuration: whatever the config file or a flag holds, the exporter refuses it at start with exit
status 2 and a short message naming the setting or file, quickly, never with a traceback; SIGHUP does not end it."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Callable

import pytest

from conftest import WAIT_SECONDS, RunningExporter, fixture_flags, free_port, run_exporter
from kmem_exporter.config_file import MAX_BYTES, MAX_DEPTH, MAX_NODES
from kmem_exporter.settings import MAX_STRING_LENGTH

# A refusal comes before any collector or file is looked at: far under this bound, whatever the input.
QUICK = WAIT_SECONDS


def refused(*args: str) -> str:
    """stderr of `kmem-exporter ARGS` (serve by default), which must refuse to start: exit 2, one short message."""
    result = run_exporter(f"--web.listen-address=127.0.0.1:{free_port()}", *args, timeout=QUICK)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "kmem-exporter: error: " in result.stderr.splitlines()[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr) < 1200, f"{len(result.stderr)} characters of stderr"
    return result.stderr


def refused_file(tmp_path: Path, content: str | bytes) -> str:
    """stderr of the exporter refusing a config file with this content; the message names the file."""
    path = tmp_path / "kmem-exporter.yml"
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    stderr = refused(f"--config.file={path}")
    assert f"config.file '{path}': " in stderr
    return stderr


def accepted(*args: str) -> None:
    """`kmem-exporter scrape ARGS` with only the kernel collector starts and succeeds."""
    result = run_exporter("scrape", *fixture_flags("rhel7-fragmented"), "--collector.disable-defaults",
                          "--collector.kernel", *args, timeout=QUICK)
    assert result.returncode == 0, result.stderr
    assert "kmem_collector_success" in result.stdout


# The config file itself

def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    assert f"config.file '{fifo}': cannot read: not a regular file (a FIFO)" in refused(f"--config.file={fifo}")


def test_an_endless_device_is_refused_unread() -> None:
    assert "config.file '/dev/zero': cannot read: not a regular file (a character device)" in \
        refused("--config.file=/dev/zero")


def test_a_file_over_the_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    # Unparsed, this would be a 50 MB value in a known key.
    big = b"path.procfs: " + b"x" * (50 << 20) + b"\n"
    assert f"larger than {MAX_BYTES} bytes ({len(big)} bytes)" in refused_file(tmp_path, big)


def test_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    config = tmp_path / "kmem-exporter.yml"
    text = "collector.timeout: 5s\n"
    config.write_text(text + "#" * (MAX_BYTES - len(text) - 1) + "\n")
    assert config.stat().st_size == MAX_BYTES
    accepted(f"--config.file={config}")


def test_invalid_utf8_is_refused(tmp_path: Path) -> None:
    assert "not valid UTF-8: byte 0xff at offset 13" in refused_file(tmp_path, b"path.procfs: \xff\xfe/proc\n")


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
) + "collector.vmstat.fields: *i\n"

# (case, file content, message)
BAD_YAML = [
    ("alias bomb in a known key", ALIAS_BOMB, "line 2, column 8: aliases are not allowed (*a)"),
    ("plain alias", "path.procfs: &p /host/proc\npath.sysfs: *p\n", "aliases are not allowed (*p)"),
    ("merge key", "path.procfs: {<<: {a: 1}}\n", "merge keys (<<) are not allowed"),
    ("duplicate key", "path.procfs: /a\ncollector.timeout: 5s\npath.procfs: /b\n",
     "line 3, column 1: duplicate key 'path.procfs'"),
    ("nested duplicate key", "path.procfs: {a: 1, b: {c: 2, c: 3}}\n", "duplicate key 'c'"),
    ("unhashable key", "? [a, b]\n: 1\n", "a key must be a plain value"),
    ("deep nesting", "path.procfs: " + "[" * 40 + "]" * 40 + "\n", f"nested more than {MAX_DEPTH} levels deep"),
    ("very deep nesting", "path.procfs: " + "[" * 100_000 + "]" * 100_000 + "\n", "not valid YAML: line 1, column"),
    ("too many values", "path.procfs: [" + ", ".join(["1"] * (MAX_NODES + 10)) + "]\n",
     f"more than {MAX_NODES} values"),
    ("a number too big to read", "collector.timeout: " + "9" * 5000 + "\n", "not valid YAML: a value cannot be read"),
    ("an impossible date", "collector.timeout: 2001-13-45\n", "not valid YAML: a value cannot be read"),
    ("a long tag", "path.procfs: !" + "t" * 100_000 + " x\n", "not valid YAML: line 1, column 14: could not"),
    ("two documents", "path.procfs: /a\n---\npath.procfs: /b\n", "but found another document"),
]


@pytest.mark.parametrize("content, message", [b[1:] for b in BAD_YAML], ids=[b[0] for b in BAD_YAML])
def test_hostile_yaml_is_refused(tmp_path: Path, content: str, message: str) -> None:
    assert message in refused_file(tmp_path, content)


def test_a_long_unknown_key_is_shown_shortened(tmp_path: Path) -> None:
    stderr = refused_file(tmp_path, "k" * 1000 + ": 1\n")  # YAML allows plain keys up to 1024 characters
    assert "unknown setting 'kkkkkkkkkk" in stderr and "…" in stderr


# Durations, from the file and from flags

BAD_DURATIONS_IN_FILE = [".nan", ".inf", "-.inf", "1.0e-7", "1e-7", "'inf'", "'nan'", "0.0005", "500us", "0", "-1",
                         "1.0e400", "9" * 400, "9000h", "367d", "true", "[1]", "' '"]


@pytest.mark.parametrize("value", BAD_DURATIONS_IN_FILE)
def test_bad_duration_in_file(tmp_path: Path, value: str) -> None:
    stderr = refused_file(tmp_path, f"collector.memcg.interval: {value}\n")
    assert "collector.memcg.interval: " in stderr
    assert "expected a duration" in stderr or "a duration must be from 1ms to 365 days" in stderr


BAD_DURATION_FLAGS = ["inf", "nan", "Infinity", "1e-7", "1e3", "0.0001", "0ms", "9000h", "1_000", "1m30", "s",
                      "1.5.5s", "0x10", "9" * 5000]


@pytest.mark.parametrize("value", BAD_DURATION_FLAGS, ids=lambda v: v[:20])
def test_bad_duration_flag(value: str) -> None:
    stderr = refused(f"--collector.timeout={value}")
    assert "collector.timeout: " in stderr
    assert "expected a duration" in stderr or "a duration must be from 1ms to 365 days" in stderr


@pytest.mark.parametrize("value", ["30s", "1m30s", "500ms", "1ms", "2", "0.5", "8760h", "1h0m0.5s"])
def test_good_duration_flag(value: str) -> None:
    accepted(f"--collector.timeout={value}")


def test_good_durations_in_file(tmp_path: Path) -> None:
    config = tmp_path / "kmem-exporter.yml"
    config.write_text("collector.timeout: 2.5\ncollector.memcg.interval: 90\ncollector.netns.interval: 1m30s\n")
    accepted(f"--config.file={config}")


# Other settings

BAD_FLAGS = [
    ("empty path", ["--path.procfs="], "path.procfs: expected a path, got an empty string"),
    ("empty derived path", ["--path.debugfs="], "path.debugfs: expected a path"),
    ("huge port", ["--web.listen-address=:99999999999999999999"], "web.listen-address: expected [host]:port"),
    ("port of 5000 digits", ["--web.listen-address=:" + "9" * 5000], "web.listen-address: longer than 4096"),
    ("port of 4000 digits", ["--web.listen-address=:" + "9" * 4000], "web.listen-address: expected [host]:port"),
    ("non-ASCII digit port", ["--web.listen-address=:²"], "web.listen-address: expected [host]:port"),
    ("host with a space", ["--web.listen-address=a b:9792"], "web.listen-address: expected [host]:port"),
    ("100 kB regex", ["--collector.vmstat.fields=" + "a" * 100_000], "collector.vmstat.fields: longer than 4096"),
    ("deeply nested regex", ["--collector.slabinfo.include=" + "(" * 4000],
     "collector.slabinfo.include: invalid regular expression '((((("),
    ("huge repeat count", ["--collector.slabinfo.exclude=a{99999999999999999999}"],
     "collector.slabinfo.exclude: invalid regular expression"),
    ("route pattern as telemetry path", ["--web.telemetry-path=/{name}"], "web.telemetry-path: expected an absolute"),
    ("space in telemetry path", ["--web.telemetry-path=/a b"], "web.telemetry-path: expected an absolute"),
    ("long log level", ["--log.level=" + "x" * 4000], "log.level: expected one of"),
    ("long unknown flag", ["--" + "x" * 100_000], "unrecognized arguments: --xxxxx"),
]


@pytest.mark.parametrize("flags, message", [b[1:] for b in BAD_FLAGS], ids=[b[0] for b in BAD_FLAGS])
def test_bad_setting_flag(flags: list[str], message: str) -> None:
    assert message in refused(*flags)


BAD_SETTINGS_IN_FILE = [
    ("empty path", 'path.kmsg: ""\n', "path.kmsg: expected a path, got an empty string"),
    ("NUL in a path", 'path.procfs: "/pro\\0c"\n', "path.procfs: a NUL character is not allowed, got '/pro\\x00c'"),
    ("long path", f"path.sysfs: /{'s' * MAX_STRING_LENGTH}\n", "path.sysfs: longer than 4096 characters (4097): '/sss"),
    ("number as a path", "path.sysfs: 5\n", "path.sysfs: expected a string, got 5"),
    ("mapping as a regex", "collector.vmstat.fields: {a: b}\n", "collector.vmstat.fields: expected a regular"),
]


@pytest.mark.parametrize("content, message", [b[1:] for b in BAD_SETTINGS_IN_FILE],
                         ids=[b[0] for b in BAD_SETTINGS_IN_FILE])
def test_bad_setting_in_file(tmp_path: Path, content: str, message: str) -> None:
    assert message in refused_file(tmp_path, content)


def test_a_huge_value_is_shown_shortened(tmp_path: Path) -> None:
    stderr = refused_file(tmp_path, f"log.level: {'v' * (MAX_BYTES - 100)}\n")
    assert f"log.level: longer than 4096 characters ({MAX_BYTES - 100}): 'vvvvv" in stderr
    assert "…" in stderr


def test_an_address_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_exporter("--collector.disable-defaults", f"--web.listen-address=127.0.0.1:{port}", timeout=QUICK)
    assert result.returncode == 2, result.stderr
    assert f"kmem-exporter: error: web.listen-address '127.0.0.1:{port}': cannot listen: " in result.stderr
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr


# SIGHUP

def test_sighup_is_ignored_and_said_so(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), "--collector.disable-defaults",
                                "--collector.kernel")
    exporter.process.send_signal(signal.SIGHUP)
    message = "received SIGHUP: ignored; flags and --config.file are read only at start, " \
              "restart the exporter to apply changes"
    assert exporter.wait_for_log(message).count(message) == 1  # written when the signal is handled
    assert exporter.process.poll() is None
    assert exporter.get("/metrics")[0] == 200
    exporter.process.send_signal(signal.SIGHUP)
    assert exporter.get("/metrics")[0] == 200
    assert exporter.stop() == 0
    assert "level=warn logger=kmem_exporter.cli" in exporter.log()

