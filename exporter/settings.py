"""Declarations of the exporter's settings: each is a command-line flag and a config-file key of the same name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SettingError(ValueError):
    """A setting's value is not acceptable; the message says why."""


def parse_duration(value: object) -> float:
    """Seconds from a Prometheus-style duration (`30s`, `1m30s`, `500ms`) or a plain number of seconds."""
    if isinstance(value, bool):
        raise SettingError(f"expected a duration such as 30s, got {value!r}")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"((\d+(\.\d+)?)(ms|s|m|h))+", value.strip()):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value))
    else:
        raise SettingError(f"expected a duration such as 30s, 1m or 500ms, got {value!r}")
    if seconds <= 0:
        raise SettingError(f"a duration must be positive, got {value!r}")
    return seconds


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(value: object) -> int:
    """Bytes from a size such as `64MiB`, `500kB` or a plain number of bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingError(f"expected a size such as 64MiB, got {value!r:.80}")
    match = re.fullmatch(r"(\d{1,15})\s*([a-zA-Z]*)", str(value).strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise SettingError(f"expected a size such as 64MiB, 512KiB or 1000000, got {value!r:.80}")
    size = int(match.group(1)) * _SIZE_UNITS[unit]
    if size <= 0:
        raise SettingError(f"a size must be positive, got {value!r}")
    return size


def parse_positive_int(value: object) -> int:
    """A whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise SettingError(f"expected a positive whole number, got {value!r:.80}")
    number = int(str(value).strip()[:12])
    if number < 1:
        raise SettingError(f"expected a positive whole number, got {value!r}")
    return number


def parse_regex(value: object) -> re.Pattern[str]:
    """A compiled regular expression; it must match a whole name (like Prometheus' relabelling)."""
    if not isinstance(value, str):
        raise SettingError(f"expected a regular expression string, got {value!r}")
    try:
        return re.compile(value)
    except re.error as err:
        raise SettingError(f"invalid regular expression {value!r}: {err}") from None


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SettingError(f"expected true or false, got {value!r}")


def parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise SettingError(f"expected a string, got {value!r}")
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: `--<key>` on the command line and `<key>:` in the config file.

    `default` is given in the same form a user would write it, and goes through `parse` like any other value.
    A default of None means "not set" (the setting is then derived from another one, or unused).
    """

    key: str
    parse: Callable[[object], object]
    default: object
    help: str
    metavar: str = "VALUE"

    def value(self, raw: object) -> object:
        if raw is None:
            return None
        try:
            return self.parse(raw)
        except SettingError as err:
            raise SettingError(f"{self.key}: {err}") from None
