"""Declarations of the exporter's settings: each is a command-line flag and a config-file key of the same name.

Every parser refuses what it cannot use with a SettingError whose message shows the value shortened (`shown`), so
a huge value can neither flood the log nor make the exporter spend long on it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

MAX_STRING_LENGTH = 4096
"""The longest string any setting takes: far above a real path, address or regular expression."""

SHOWN_LENGTH = 80
"""The most characters of a value an error message shows."""

MIN_DURATION = 0.001
MAX_DURATION = 365 * 24 * 3600.0

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"\d{1,15}(?:\.\d{1,15})?"
_PLAIN_SECONDS = re.compile(_NUMBER)
_WITH_UNITS = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h))+")
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h)")


class SettingError(ValueError):
    """A setting's value is not acceptable; the message says why."""


def shorten(text: str, limit: int = SHOWN_LENGTH) -> str:
    """The text cut to `limit` characters, with an ellipsis when longer."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def shown(value: object, limit: int = SHOWN_LENGTH) -> str:
    """The value's repr, cut to `limit` characters with an ellipsis when longer."""
    return shorten(repr(value[:limit + 1]) if isinstance(value, str) else _short_repr(value), limit)


def _short_repr(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** SHOWN_LENGTH:
        return "a number of more than 80 digits"  # repr() of a huge int is slow, or refused beyond 4300 digits
    return repr(value)


def parse_duration(value: object) -> float:
    """Seconds from a Prometheus-style duration (`30s`, `1m30s`, `500ms`) or a plain number of seconds,
    from 1ms to 365 days."""
    seconds = _duration_seconds(value)
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise SettingError(f"a duration must be from 1ms to 365 days (8760h), got {shown(value)}")
    return seconds


def _duration_seconds(value: object) -> float:
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(min(value, 10 ** 16))  # beyond any bound, without float overflow
    if isinstance(value, str) and len(value) <= MAX_STRING_LENGTH:
        text = value.strip()
        if _PLAIN_SECONDS.fullmatch(text):
            return float(text)
        if _WITH_UNITS.fullmatch(text):
            return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    raise SettingError(f"expected a duration such as 30s, 1m30s, 500ms or a number of seconds, got {shown(value)}")


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
        raise SettingError(f"expected a regular expression string, got {shown(value)}")
    _check_length(value)
    try:
        return re.compile(value)
    except (re.error, OverflowError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise SettingError(f"invalid regular expression {shown(value)}: {reason}") from None


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SettingError(f"expected true or false, got {shown(value)}")


def parse_str(value: object) -> str:
    """A string of at most MAX_STRING_LENGTH characters, without NUL (which no path or address can hold)."""
    if not isinstance(value, str):
        raise SettingError(f"expected a string, got {shown(value)}")
    _check_length(value)
    if "\0" in value:
        raise SettingError(f"a NUL character is not allowed, got {shown(value)}")
    return value


def parse_path(value: object) -> str:
    """A file system path: a non-empty string."""
    path = parse_str(value)
    if not path:
        raise SettingError("expected a path, got an empty string")
    return path


def _check_length(value: str) -> None:
    if len(value) > MAX_STRING_LENGTH:
        raise SettingError(f"longer than {MAX_STRING_LENGTH} characters ({len(value)}): {shown(value)}")


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
        except (ValueError, OverflowError, RecursionError) as err:  # a parser's own bug must not become a traceback
            raise SettingError(f"{self.key}: unusable value {shown(raw)}: {type(err).__name__}") from None
