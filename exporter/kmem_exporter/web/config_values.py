"""Typed values of a parsed web config document: each check names the key it refuses, as `key: reason`."""

from __future__ import annotations

import re
from typing import Mapping, Optional

_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"})

_FALSE = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"})

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")


class Invalid(Exception):
    """One key's value is refused: `key: reason`."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")


def show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


def mapping(value: object, key: str, allowed: tuple[str, ...], allow_none: bool = True) -> dict[str, object]:
    if value is None and allow_none:
        return {}
    if not isinstance(value, dict):
        raise Invalid(key, f"expected a mapping, got {show(value)}")
    for name in value:
        if name not in allowed:
            raise Invalid(f"{key}.{name}" if key != "(top level)" else str(name),
                            f"unknown key; expected one of {', '.join(allowed)}")
    return value


def string(value: object, key: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(key, f"expected a string, got {show(value)}")
    return value


def string_list(value: object, key: str) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid(key, f"expected a list of strings, got {show(value)}")
    return tuple(value)


def boolean(value: object, key: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, str):
        raise Invalid(key, f"expected true or false, got {show(value)}")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Invalid(key, f"expected true or false, got {show(value)}")


def choice(value: object, key: str, choices: Mapping[str, object], default: str) -> str:
    name = string(value, key) or default
    if name not in choices:
        raise Invalid(key, f"unknown value {show(name)}; expected one of {', '.join(choices)}")
    return name


def known_names(value: object, key: str, known: Mapping[str, object]) -> tuple[str, ...]:
    names = string_list(value, key) or ()
    for name in names:
        if name not in known:
            raise Invalid(key, f"unknown name {show(name)}; expected some of {', '.join(known)}")
    return names


def duration(value: object, key: str) -> float:
    """Seconds from a Go duration (`1s`, `1m30s`, `250ms`); 0 is allowed and turns rate limiting off."""
    if value == "0":
        return 0.0
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise Invalid(key, f"expected a duration such as 1s or 250ms, got {show(value)}")
    seconds = sum(float(number) * _DURATION_UNITS[unit]
                  for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", value))
    if not 1e-6 <= seconds <= 86400 * 365:
        raise Invalid(key, f"{show(value)} is outside 1us to 1 year")
    return seconds
