"""The exporter's configuration: one frozen dataclass built from defaults, a YAML file and flags, validated at start.

Every setting has one name, used both as the flag (`--path.procfs`) and as the config-file key (`path.procfs:`).
A flag beats the file, the file beats the default.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, NoReturn, Optional, Sequence

from kmem_exporter import __version__
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.report.options import HELP as REPORT_HELP
from kmem_exporter.config_file import ConfigFileError, parse_yaml, read_text
from kmem_exporter.settings import (Setting, SettingError, parse_bool, parse_duration, parse_path, parse_positive_int,
                               parse_size, parse_str, shorten, shown)

COMMANDS = ("serve", "scrape", "report")
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
DEFAULT_PORT = 9792


class ConfigError(Exception):
    """The configuration is unusable; the message names the setting or file and what is wrong."""


_PORT = re.compile(r"[0-9]{1,5}")
_HOST = re.compile(r"\[[0-9A-Fa-f:.%\w-]+\]|[\w.:-]+")
_URL_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*")


def _parse_listen_address(value: object) -> str:
    address = parse_str(value)
    host, sep, port = address.rpartition(":")
    if not sep or not _PORT.fullmatch(port) or int(port) > 65535 or (host and not _HOST.fullmatch(host)):
        raise SettingError(f"expected [host]:port with a port from 0 to 65535, got {shown(address)}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise SettingError(f"an IPv6 address goes in brackets ([::1]:9792), got {shown(address)}")
    return address


def _parse_listen_addresses(value: object) -> tuple[str, ...]:
    """One address, or a list of them (the flag may be repeated; the file takes a string or a list)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or len(values) > 64:
        raise SettingError(f"expected 1 to 64 addresses, got {len(values)}")
    return tuple(dict.fromkeys(_parse_listen_address(v) for v in values))


def split_host_port(address: str) -> tuple[Optional[str], int]:
    """The host (None: every address, IPv4 and IPv6) and port of a listen address."""
    host, _, port = address.rpartition(":")
    return host.strip("[]") or None, int(port)


def _parse_telemetry_path(value: object) -> str:
    path = parse_str(value)
    if not _URL_PATH.fullmatch(path) or path in ("/", "/-/healthy", "/-/ready"):
        raise SettingError("expected an absolute path other than /, /-/healthy and /-/ready, of letters, digits "
                           f"and -._~!$&'()*+,;=:@/, got {shown(path)}")
    return path


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        choice = parse_str(value).lower()
        if choice not in choices:
            raise SettingError(f"expected one of {', '.join(choices)}, got {shown(value)}")
        return choice

    return parse


_parse_log_level = _one_of(LOG_LEVELS)
_parse_log_format = _one_of(LOG_FORMATS)


CORE_SETTINGS: tuple[Setting, ...] = (
    Setting("web.listen-address", _parse_listen_addresses, f":{DEFAULT_PORT}",
            "Address to listen on for the web interface and telemetry; repeat the flag (or give a list in the file) "
            "for several. :PORT listens on every IPv4 and IPv6 address.", "[HOST]:PORT"),
    Setting("web.max-requests", parse_positive_int, 40,
            "Maximum number of /metrics requests served at once; as many more wait for a slot as long as their "
            "scraper waits (X-Prometheus-Scrape-Timeout-Seconds, else 10s); beyond those, 503.", "N"),
    Setting("web.max-connections", parse_positive_int, 512,
            "Maximum number of open client connections; more are closed as soon as they are accepted.", "N"),
    Setting("web.read-header-timeout", parse_duration, "10s",
            "A connection that has not sent a complete request head this long after it opened (or after the head's "
            "first byte) is closed.", "DURATION"),
    Setting("web.config.file", parse_path, None,
            "Web configuration file in the Prometheus exporter-toolkit format (TLS, basic authentication, headers), "
            "as node_exporter takes it.", "FILE"),
    Setting("web.telemetry-path", _parse_telemetry_path, "/metrics", "Path under which to expose metrics.", "PATH"),
    Setting("web.disable-exporter-metrics", parse_bool, False,
            "Exclude the exporter's own process and Python runtime metrics (process_*, python_*) from what serve "
            "exposes."),
    Setting("path.procfs", parse_path, "/proc", "procfs mountpoint.", "PATH"),
    Setting("path.sysfs", parse_path, "/sys", "sysfs mountpoint.", "PATH"),
    Setting("path.debugfs", parse_path, None, "debugfs mountpoint (default: <path.sysfs>/kernel/debug).", "PATH"),
    Setting("path.cgroupfs", parse_path, None, "cgroup filesystem root (default: <path.sysfs>/fs/cgroup).", "PATH"),
    Setting("path.kmsg", parse_path, "/dev/kmsg", "Kernel log device.", "PATH"),
    Setting("collector.max-file-size", parse_size, "32MiB",
            "Largest kernel file a collector reads (slabinfo, mountinfo and the other tables; one-value files such "
            "as sysctls are capped at 64KiB); a larger or endless file fails its collector.", "SIZE"),
    Setting("collector.max-series", parse_positive_int, 100_000,
            "Most series in one collection; above it the collectors with the most series fail, each with its reason, "
            "so that memory stays bounded whatever the kernel files hold.", "COUNT"),
    Setting("collector.timeout", parse_duration, "10s",
            "A collector still running after this long fails the scrape for itself only.", "DURATION"),
    Setting("collector.disable-defaults", parse_bool, False,
            "Disable every collector that is not enabled explicitly with --collector.<name>."),
    Setting("log.level", _parse_log_level, "info",
            f"Only log messages of this level or above: {', '.join(LOG_LEVELS)}.", "LEVEL"),
    Setting("log.format", _parse_log_format, "logfmt",
            f"Output format of log messages: {', '.join(LOG_FORMATS)}.", "FORMAT"),
)


def _collector_switches() -> tuple[Setting, ...]:
    return tuple(
        Setting(f"collector.{name}", parse_bool, cls.default_enabled,
                f"Enable the {name} collector: {cls.description}.")
        for name, cls in COLLECTORS.items()
    )


COLLECTOR_OPTIONS: tuple[Setting, ...] = tuple(option for cls in COLLECTORS.values() for option in cls.options)
COLLECTOR_SWITCHES = frozenset(f"collector.{name}" for name in COLLECTORS)
ALL_SETTINGS: tuple[Setting, ...] = CORE_SETTINGS + _collector_switches() + COLLECTOR_OPTIONS
SETTINGS_BY_KEY: Mapping[str, Setting] = MappingProxyType({s.key: s for s in ALL_SETTINGS})


@dataclass(frozen=True)
class Config:
    listen_addresses: tuple[str, ...]
    max_requests: int
    max_connections: int
    read_header_timeout: float
    telemetry_path: str
    web_config_file: Optional[str]
    procfs: Path
    sysfs: Path
    debugfs: Path
    cgroupfs: Path
    kmsg: Path
    collector_timeout: float
    max_file_bytes: int
    max_series: int
    log_level: str
    enabled_collectors: tuple[str, ...]
    options: Mapping[str, object] = field(default_factory=dict)
    exporter_metrics: bool = True
    log_format: str = "logfmt"

    def option(self, key: str) -> object:
        return self.options[key]

    @property
    def listen_host_port(self) -> tuple[Optional[str], int]:
        """The host and port of the first listen address."""
        return split_host_port(self.listen_addresses[0])

    @property
    def python_log_level(self) -> int:
        return {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}[
            self.log_level
        ]

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> "Config":
        """Build a Config from raw setting values by key (flag/file form); unset keys take their defaults."""
        unknown = sorted(set(values) - set(SETTINGS_BY_KEY))
        if unknown:
            raise ConfigError(f"unknown setting {shown(unknown[0])}")
        resolved: dict[str, object] = {}
        for setting in ALL_SETTINGS:  # collector.disable-defaults comes before the switches it changes
            raw = values.get(setting.key)
            default = setting.default
            if setting.key in COLLECTOR_SWITCHES and resolved["collector.disable-defaults"]:
                default = False
            try:
                resolved[setting.key] = setting.value(default if raw is None else raw)
            except SettingError as err:
                raise ConfigError(str(err)) from None
        sysfs = Path(str(resolved["path.sysfs"]))
        debugfs = resolved["path.debugfs"] or sysfs / "kernel" / "debug"
        cgroupfs = resolved["path.cgroupfs"] or sysfs / "fs" / "cgroup"
        return cls(
            listen_addresses=resolved["web.listen-address"],  # type: ignore[arg-type]
            max_requests=int(resolved["web.max-requests"]),  # type: ignore[call-overload]
            max_connections=int(resolved["web.max-connections"]),  # type: ignore[call-overload]
            read_header_timeout=float(resolved["web.read-header-timeout"]),  # type: ignore[arg-type]
            telemetry_path=str(resolved["web.telemetry-path"]),
            web_config_file=None if resolved["web.config.file"] is None else str(resolved["web.config.file"]),
            procfs=Path(str(resolved["path.procfs"])),
            sysfs=sysfs,
            debugfs=Path(str(debugfs)),
            cgroupfs=Path(str(cgroupfs)),
            kmsg=Path(str(resolved["path.kmsg"])),
            collector_timeout=float(resolved["collector.timeout"]),  # type: ignore[arg-type]
            max_file_bytes=int(resolved["collector.max-file-size"]),  # type: ignore[call-overload]
            max_series=int(resolved["collector.max-series"]),  # type: ignore[call-overload]
            log_level=str(resolved["log.level"]),
            enabled_collectors=tuple(name for name in COLLECTORS if resolved[f"collector.{name}"]),
            options=MappingProxyType({s.key: resolved[s.key] for s in COLLECTOR_OPTIONS}),
            exporter_metrics=not resolved["web.disable-exporter-metrics"],
            log_format=str(resolved["log.format"]),
        )


def load_file(path: str) -> dict[str, object]:
    """The settings in a YAML config file: a mapping of setting keys to values, each checked."""
    where = f"config.file {shown(path, 512)}"
    try:
        data = parse_yaml(read_text(path))
    except ConfigFileError as err:
        raise ConfigError(f"{where}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(f"{where}: expected a mapping of setting names to values")
    unknown = sorted(set(data) - set(SETTINGS_BY_KEY))
    if unknown:
        raise ConfigError(f"{where}: unknown setting {shown(unknown[0])}")
    for key, raw in data.items():
        if raw is None:
            raise ConfigError(f"{where}: setting {key!r} has no value")
        try:
            SETTINGS_BY_KEY[key].value(raw)
        except SettingError as err:
            raise ConfigError(f"{where}: {err}") from None
    return data


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with the value it quotes in an error shortened (a flag's value can be megabytes long)."""

    def error(self, message: str) -> NoReturn:
        super().error(shorten(message, 400))


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="kmem-exporter",
        description="Prometheus exporter for Linux kernel memory: fragmentation, slab caches, memory cgroups.",
        usage="kmem-exporter [serve|scrape|report] [flags]",
        epilog="Commands: serve (default) runs the HTTP server; scrape collects once, prints the exposition and exits "
        "0 when every enabled collector succeeded, 1 otherwise; report collects once and prints the node's verdict "
        "(fragmentation, slab caches, memory cgroups) as text or JSON. " + REPORT_HELP,
    )
    parser.add_argument("command", nargs="?", choices=COMMANDS, default="serve",
                        help="serve (default), scrape or report")
    parser.add_argument("--version", action="version", version=f"kmem-exporter {__version__}")
    parser.add_argument("--config.file", dest="config.file", metavar="FILE",
                        help="YAML file with settings; its keys are the flag names without the leading dashes.")
    for setting in ALL_SETTINGS:
        if setting.parse is parse_bool:
            parser.add_argument(f"--{setting.key}", dest=setting.key, action=argparse.BooleanOptionalAction,
                                default=None, help=_help(setting))
        elif setting.parse is _parse_listen_addresses:
            parser.add_argument(f"--{setting.key}", dest=setting.key, metavar=setting.metavar, default=None,
                                action="append", help=_help(setting))
        else:
            parser.add_argument(f"--{setting.key}", dest=setting.key, metavar=setting.metavar, default=None,
                                help=_help(setting))
    return parser


def _help(setting: Setting) -> str:
    if setting.default is None or setting.default == "":
        return setting.help
    default = str(setting.default).lower() if setting.parse is parse_bool else setting.default
    return f"{setting.help} (default: {default})"


def parse_args(argv: Sequence[str]) -> tuple[str, Config]:
    """The command and the configuration from a command line; ConfigError when anything is wrong."""
    args = vars(build_parser().parse_args(list(argv)))
    command = args.pop("command")
    config_file: Optional[str] = args.pop("config.file")
    values = load_file(config_file) if config_file else {}
    values.update({k: v for k, v in args.items() if v is not None})
    return command, Config.from_values(values)
