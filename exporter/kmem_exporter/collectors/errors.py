"""A collector's failure: the error type, and parsing that turns a parser's error into one that names the file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from kmem_exporter.parsers import ParseError, TooLarge

T = TypeVar("T")


class CollectorError(Exception):
    """A collector could not produce its metrics. The message names the path and the reason."""


def parse_text(path: Path, text: str, parser: Callable[[str], T]) -> T:
    """Parse `text`, read from `path`; a parse error becomes a CollectorError naming the path."""
    try:
        return parser(text)
    except TooLarge as err:
        raise CollectorError(f"{path}: {err}") from None
    except ParseError as err:
        raise CollectorError(f"{path}: malformed: {err}") from None
