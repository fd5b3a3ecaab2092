"""Log lines: logfmt (default) or JSON, as Prometheus' tools write them (`level=warn`), one line per record whatever
the message holds, from the real exporter and from the formatters."""

from __future__ import annotations

import datetime
import json
import logging
import re
import signal
from pathlib import Path
from typing import Callable

import pytest

from conftest import RunningExporter, fixture_flags, run_exporter
from metrics_text import only_collectors

from kmem_exporter.logs import JsonFormatter, LogfmtFormatter

LOGFMT = re.compile(r'ts=(\S+) level=(debug|info|warn|error) logger=(\S+) msg="((?:[^"\\]|\\.)*)"')
AWKWARD = 'a "quoted" word\nand a second line\r\twith \\n a backslash, \x1b[31m an escape \u2028 and é'
FLAGS = (*fixture_flags("rhel7-fragmented"), *only_collectors("buddyinfo"))


def logfmt_unquote(value: str) -> str:
    """The inverse of the formatter's escaping: how a logfmt reader gets the message back."""
    return json.loads(f'"{value}"')


def record(message: str, level: int = logging.WARNING, args: tuple = ()) -> logging.LogRecord:
    return logging.LogRecord("kmem_exporter.test", level, __file__, 1, message, args, None)


@pytest.mark.parametrize("level, name", [(logging.DEBUG, "debug"), (logging.INFO, "info"),
                                         (logging.WARNING, "warn"), (logging.ERROR, "error"),
                                         (logging.CRITICAL, "error"), (5, "debug"), (25, "info"), (45, "error")])
def test_levels_are_named_as_prometheus_names_them(level: int, name: str) -> None:
    assert f" level={name} " in LogfmtFormatter().format(record("x", level))
    assert json.loads(JsonFormatter().format(record("x", level)))["level"] == name


def test_logfmt_keeps_any_message_on_one_line_and_readable_back() -> None:
    line = LogfmtFormatter().format(record("%s", args=(AWKWARD,)))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    match = LOGFMT.fullmatch(line)
    assert match, line
    assert logfmt_unquote(match.group(4)) == AWKWARD
    assert match.group(3) == "kmem_exporter.test"


def test_json_keeps_any_message_on_one_line_and_readable_back() -> None:
    line = JsonFormatter().format(record("%s", args=(AWKWARD,)))
    assert line.isascii() and "\n" not in line
    entry = json.loads(line)
    assert list(entry) == ["ts", "level", "logger", "msg"]
    assert entry["msg"] == AWKWARD and entry["level"] == "warn"


def test_a_traceback_stays_on_the_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys
        failing = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    for formatter in (LogfmtFormatter(), JsonFormatter()):
        line = formatter.format(failing)
        assert "\n" not in line and "ValueError: boom" in line


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    line = LogfmtFormatter().format(record("x"))
    stamp = LOGFMT.fullmatch(line).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - parsed).total_seconds()) < 60


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_the_exporter_writes_one_line_per_record_with_an_awkward_path(log_format: str, tmp_path: Path) -> None:
    """A kernel log path holding quotes, a newline and a backslash: its failure is one line that gives the path
    back exactly."""
    kmsg = tmp_path / 'no"such\nkmsg\\n'
    result = run_exporter("scrape", *fixture_flags("rhel7-fragmented"), *only_collectors("kernel_log"),
                          f"--path.kmsg={kmsg}", f"--log.format={log_format}")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    if log_format == "json":
        message = json.loads(line)["msg"]
    else:
        match = LOGFMT.fullmatch(line)
        assert match, line
        message = logfmt_unquote(match.group(4))
    assert message.startswith(f"collector=kernel_log failed: {kmsg}: not found")


def test_the_server_logs_warn_in_json(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*FLAGS, "--log.format=json")
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_for_log("SIGHUP")  # written when the signal is handled
    entries = [json.loads(line) for line in exporter.log().splitlines()]
    (warning,) = [e for e in entries if "SIGHUP" in e["msg"]]
    assert warning["level"] == "warn" and warning["logger"] == "kmem_exporter.cli"


@pytest.mark.parametrize("value", ["xml", "", "JSONL"])
def test_an_unknown_format_is_refused_at_start(value: str) -> None:
    result = run_exporter("scrape", f"--log.format={value}")
    assert result.returncode == 2
    assert "log.format: expected one of logfmt, json" in result.stderr
