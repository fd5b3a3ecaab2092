"""Fuzzing parsers: any input may be refused, but only with ParseError."""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

from kmem_exporter.parsers import ParseError

In = TypeVar("In")
Out = TypeVar("Out")


def parse_or_none(parser: Callable[[In], Out], data: In) -> Optional[Out]:
    """What `parser` makes of `data`, or None when it raises ParseError; any other exception fails the test."""
    try:
        return parser(data)
    except ParseError:
        return None


def cut_and_mutated(sample: str, cut: int, at: int, insert: str) -> tuple[str, str]:
    """Two variants of `sample` from hypothesis-drawn numbers: cut short at `cut`, and with the character at `at`
    replaced by `insert` (both positions taken modulo the length + 1)."""
    at %= len(sample) + 1
    return sample[: cut % (len(sample) + 1)], sample[:at] + insert + sample[at + 1:]
