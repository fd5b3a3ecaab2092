"""Configuration: flag beats file beats default, as the running server shows; bad settings refused before binding."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from kmem_exporter.collectors import COLLECTORS
from conftest import RunningExporter, fixture_flags, free_port, run_exporter, scrape_ok
from metrics_text import collector_success, only_collectors
from tcp import listening

FOUR = only_collectors("buddyinfo", "vmstat", "sysctl", "kernel")


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kmem-exporter.yml"
    path.write_text(text)
    return path


def test_file_beats_default(exporter_factory: Callable[..., RunningExporter], tmp_path: Path) -> None:
    config = write_config(tmp_path, "web.telemetry-path: /from-file\n")
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, f"--config.file={config}")
    status, _, body = exporter.get("/from-file")
    assert status == 200
    assert exporter.get("/metrics")[0] == 404
    assert collector_success(body.decode()) == {"buddyinfo": 1, "vmstat": 1, "sysctl": 1, "kernel": 1}


def test_collector_switches_flag_beats_file_beats_default(exporter_factory: Callable[..., RunningExporter],
                                                          tmp_path: Path) -> None:
    # vmstat and sysctl are enabled by default; the file turns both off; a flag turns sysctl back on.
    others = [f"--no-collector.{name}" for name in COLLECTORS
              if name not in ("buddyinfo", "kernel", "vmstat", "sysctl")]
    config = write_config(tmp_path, "collector.vmstat: false\ncollector.sysctl: false\n")
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *others, f"--config.file={config}",
                                "--collector.sysctl")
    assert collector_success(exporter.metrics()) == {"buddyinfo": 1, "sysctl": 1, "kernel": 1}
    page = exporter.get("/")[2].decode()
    assert "<li>sysctl</li>" in page and "<li>vmstat</li>" not in page


def test_disable_defaults_leaves_only_explicitly_enabled_collectors(tmp_path: Path) -> None:
    config = write_config(tmp_path, "collector.disable-defaults: true\ncollector.kernel: true\n")
    result = run_exporter("scrape", *fixture_flags("rhel7-fragmented"), f"--config.file={config}", "--collector.sysctl")
    assert result.returncode == 0, result.stderr
    assert collector_success(result.stdout) == {"kernel": 1, "sysctl": 1}
    # The flag beats the file: every default collector is back, except the one switched off explicitly.
    result = run_exporter("scrape", *fixture_flags("rhel7-fragmented"), f"--config.file={config}",
                          "--no-collector.disable-defaults", "--no-collector.vmstat")
    defaults = {name for name, cls in COLLECTORS.items() if cls.default_enabled}
    assert "pagetypeinfo" not in defaults
    assert set(collector_success(result.stdout)) == defaults - {"vmstat"}


def test_flag_beats_file(exporter_factory: Callable[..., RunningExporter], tmp_path: Path) -> None:
    file_port = free_port()
    config = write_config(tmp_path, f'web.listen-address: "127.0.0.1:{file_port}"\n'
                                    "web.telemetry-path: /from-file\n"
                                    "collector.kernel: false\n")
    # exporter_factory passes its own --web.listen-address flag, which must win over the file's.
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, f"--config.file={config}",
                                "--web.telemetry-path=/from-flag")
    status, _, body = exporter.get("/from-flag")
    assert status == 200
    assert exporter.get("/from-file")[0] == 404
    assert collector_success(body.decode()) == {"buddyinfo": 1, "vmstat": 1, "sysctl": 1, "kernel": 1}
    assert listening(exporter.process.pid) == {("127.0.0.1", int(exporter.url.rsplit(":", 1)[1]))}  # not the file's


def test_vmstat_fields_from_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'collector.vmstat.fields: "oom_kill|allocstall_normal"\n')
    out = scrape_ok(*fixture_flags("live-6.18"), *only_collectors("vmstat"), f"--config.file={config}")
    vmstat = sorted(line.split()[0] for line in out.splitlines() if line.startswith("kmem_vmstat_"))
    assert vmstat == ["kmem_vmstat_allocstall_normal_total", "kmem_vmstat_oom_kill_total"]


# (case, file content, message, whether the message names the file as well as the setting)
BAD_FILES = [
    ("unknown key", "web.listen-adress: ':9792'\n", "unknown setting 'web.listen-adress'", True),
    ("wrong type", "collector.timeout: true\n", "collector.timeout: expected a duration", True),
    ("wrong type for a switch", "collector.vmstat: 3\n", "collector.vmstat: expected true or false, got 3", True),
    ("bad regex", 'collector.vmstat.fields: "("\n', "collector.vmstat.fields: invalid regular expression '('",
     True),
    ("not a mapping", "- path.procfs: /proc\n", "expected a mapping of setting names to values", True),
    ("not YAML", "path.procfs: [\n", "not valid YAML", True),
    ("empty value", "path.procfs:\n", "setting 'path.procfs' has no value", True),
]


@pytest.mark.parametrize("content, message, names_file", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_config_file_exits_2_before_binding(tmp_path: Path, content: str, message: str, names_file: bool) -> None:
    config = write_config(tmp_path, content)
    port = free_port()
    result = run_exporter(f"--web.listen-address=127.0.0.1:{port}", f"--config.file={config}")
    assert result.returncode == 2
    assert message in result.stderr
    assert (f"config.file '{config}'" in result.stderr) is names_file
    assert "listening on" not in result.stderr


def test_unreadable_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    result = run_exporter(f"--config.file={missing}")
    assert result.returncode == 2
    assert f"config.file '{missing}': cannot read: No such file or directory" in result.stderr
    result = run_exporter(f"--config.file={tmp_path}")  # a directory: unreadable even for root
    assert result.returncode == 2
    assert f"config.file '{tmp_path}': cannot read: Is a directory" in result.stderr
    assert "listening on" not in result.stderr


BAD_FLAGS = [
    ("unknown flag", ["--collector.nonexistent"], "unrecognized arguments: --collector.nonexistent"),
    ("bad address", ["--web.listen-address=localhost"], "web.listen-address: expected [host]:port"),
    ("bad duration", ["--collector.timeout=soon"], "collector.timeout: expected a duration"),
    ("bad regex", ["--collector.vmstat.fields=("], "collector.vmstat.fields: invalid regular expression"),
    ("bad log level", ["--log.level=loud"], "log.level: expected one of debug, info, warn, error"),
    ("value for a switch", ["--collector.vmstat=maybe"], "--collector.vmstat"),
    ("bad telemetry path", ["--web.telemetry-path=metrics"], "web.telemetry-path: expected an absolute path"),
]


@pytest.mark.parametrize("flags, message", [b[1:] for b in BAD_FLAGS], ids=[b[0] for b in BAD_FLAGS])
def test_bad_flag_exits_2_before_binding(flags: list[str], message: str) -> None:
    port = free_port()
    result = run_exporter(f"--web.listen-address=127.0.0.1:{port}", *flags)  # a later flag wins
    assert result.returncode == 2
    assert message in result.stderr
    assert "listening on" not in result.stderr
