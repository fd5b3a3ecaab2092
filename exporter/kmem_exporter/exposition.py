"""The exposition formats, written directly: Prometheus text 0.0.4 and OpenMetrics 1.0.0.

The output is byte for byte what prometheus-client's encoders produce for the same families (a test compares them
on every fixture tree), at a fraction of their cost: the exposition is most of a scrape's work. Families of types
the exporter does not produce (histograms, summaries, ...) are handed to prometheus-client's encoders.

Rendering never fails a whole scrape: a family whose samples cannot be written (a value that is not a number) is
reported to the caller and left out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, cast

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest as prometheus_text
from prometheus_client.openmetrics.exposition import generate_latest as prometheus_openmetrics
from prometheus_client.utils import floatToGoString

from kmem_exporter.families import RowFamily

_go_float = cast(Callable[[float], str], floatToGoString)  # Go's float formatting, as Prometheus writes values

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_TEXT_TYPES = {"gauge": "gauge", "counter": "counter", "unknown": "untyped", "info": "gauge"}
_TEXT_SUFFIXES = {"counter": "_total", "info": "_info"}
_SIMPLE_TYPES = frozenset({"gauge", "counter", "unknown", "info"})


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str


TEXT = Format("text", TEXT_CONTENT_TYPE)
OPENMETRICS = Format("openmetrics", OPENMETRICS_CONTENT_TYPE)


# Scrapers send the same headers every time: their answers are kept (a few, as a header may be 8 KiB long).
@functools.lru_cache(maxsize=32)
def choose_format(accept: str) -> Format:
    """The format an Accept header asks for: OpenMetrics 1.x when it is preferred (by q-value, then order) to the
    text format, else text; anything unknown or malformed falls back to text."""
    best, best_q = TEXT, -1.0
    for media, settings, q in header_items(accept):
        if media == "application/openmetrics-text" and _openmetrics_1(settings.get("version")):
            candidate = OPENMETRICS
        elif media in ("text/plain", "*/*", "text/*"):
            candidate = TEXT
        else:
            continue
        if q > best_q:
            best, best_q = candidate, q
    return best if best_q != 0 else TEXT


@functools.lru_cache(maxsize=32)
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip: listed (or `*`) with a q-value above 0."""
    codings = {coding.lower(): q for coding, _, q in header_items(accept_encoding)}
    return codings.get("gzip", codings.get("x-gzip", codings.get("*", 0.0))) > 0


def header_items(header: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """The items of an Accept or Accept-Encoding header (the first 32): each value, its parameters (names in lower
    case) and its q-value (1 when absent; 0 when malformed or out of 0..1)."""
    for item in header.split(",")[:32]:
        value, *params = (part.strip() for part in item.split(";"))
        settings = dict(_param(p) for p in params)
        yield value, settings, _quality(settings.get("q", "1"))


def _param(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.strip().lower(), value.strip().strip('"')


def _quality(text: str) -> float:
    try:
        q = float(text)
    except ValueError:
        return 0.0
    return q if 0.0 <= q <= 1.0 else 0.0


def _openmetrics_1(version: str | None) -> bool:
    if version is None:
        return True
    major = version.split(".")[0]
    return major.isdigit() and int(major) >= 1


def render(families: Sequence[Metric], form: Format, on_error: Callable[[Metric, Exception], None]) -> bytes:
    """The exposition of `families` in `form`; a family that cannot be written goes to `on_error` instead."""
    writer = _text_family if form is TEXT else _openmetrics_family
    chunks = []
    for family in families:
        try:
            chunks.append(writer(family))
        except Exception as err:  # noqa: BLE001 - one bad family must not fail the scrape
            on_error(family, err)
    if form is OPENMETRICS:
        chunks.append("# EOF\n")
    return "".join(chunks).encode("utf-8")


def _escape_help_text(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def format_value(value: float) -> str:
    """A sample value as prometheus-client writes it (Go's formatting), the common case of a small whole number
    written without going through its general function."""
    if type(value) is int and -10**15 < value < 1_000_000:
        return f"{value}.0"
    return _go_float(value)


_heads: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}  # sample name and labels -> their written form
_row_heads: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], str]] = {}  # the same, for row families
_HEADS_MAX = 100_000


def _head(name: str, labels: dict[str, str]) -> str:
    """`name{label="value",...}`, labels sorted by name; remembered, since the same series come back every scrape."""
    key = (name, tuple(labels.items()))
    head = _heads.get(key)
    if head is None:
        if not _legacy_name(name) or not all(map(_legacy_label_name, labels)):
            raise _Unusual()
        if len(_heads) >= _HEADS_MAX:
            _heads.clear()
        head = _heads[key] = _written_head(name, labels.items())
    return head


def _written_head(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """`name{label="value",...}` with the labels sorted by name, as prometheus-client writes it; `name` alone
    without labels."""
    pairs = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(labels))
    return f"{name}{{{pairs}}}" if pairs else name


def _samples(family: Metric) -> Iterable[str]:
    for sample in family.samples:
        if sample.exemplar is not None or sample.native_histogram is not None:
            raise ValueError(f"sample {sample.name} carries an exemplar or histogram: not written by this encoder")
        head = _head(sample.name, sample.labels)
        value = format_value(sample.value)
        yield f"{head} {value}\n" if sample.timestamp is None else f"{head} {value} {sample.timestamp}\n"


def _rows(family: RowFamily) -> str:
    """The series lines of a row family; the text before each value is remembered, like `_head`'s."""
    name = family.sample_name
    if not _legacy_name(name):
        raise _Unusual()
    if not family.label_names:
        return "".join([f"{name} {format_value(value)}\n" for value in family.values])
    heads = _row_heads.get((name, family.label_names))
    if heads is None:
        if not all(map(_legacy_label_name, family.label_names)):
            raise _Unusual()
        heads = _row_heads[(name, family.label_names)] = {}
    elif len(heads) >= _HEADS_MAX:
        heads.clear()
    lines = []
    for labels, value in zip(family.label_values, family.values):
        head = heads.get(labels)
        if head is None:
            head = heads[labels] = _written_head(name, zip(family.label_names, labels))
        lines.append(f"{head} {format_value(value)}\n")
    return "".join(lines)


def _series(family: Metric, timestamps: bool) -> str:
    if isinstance(family, RowFamily):
        return _rows(family)
    _check_simple(family, timestamps)
    return "".join(_samples(family))


def _text_family(family: Metric) -> str:
    try:
        # A timestamp is in milliseconds in this format, in seconds in OpenMetrics; the exporter never sets one.
        return _header(family, TEXT) + _series(family, timestamps=False)
    except _Unusual:
        return _fallback(family, prometheus_text)


def _openmetrics_family(family: Metric) -> str:
    try:
        return _header(family, OPENMETRICS) + _series(family, timestamps=True)
    except _Unusual:
        return _fallback(family, prometheus_openmetrics).removesuffix("# EOF\n")


_headers: dict[tuple[str, str, str, str, str], str] = {}  # (format, name, type, unit, help) -> HELP, TYPE, UNIT lines


def _header(family: Metric, form: Format) -> str:
    key = (form.name, family.name, family.type, family.unit, family.documentation)
    header = _headers.get(key)
    if header is None:
        if family.type not in _SIMPLE_TYPES:
            raise _Unusual()
        if len(_headers) >= _HEADS_MAX:
            _headers.clear()
        if form is TEXT:
            name = family.name + _TEXT_SUFFIXES.get(family.type, "")
            header = (f"# HELP {name} {_escape_help_text(family.documentation)}\n"
                      f"# TYPE {name} {_TEXT_TYPES[family.type]}\n")
        else:
            name = family.name
            unit = f"# UNIT {name} {family.unit}\n" if family.unit else ""
            header = f"# HELP {name} {_escape_label_value(family.documentation)}\n# TYPE {name} {family.type}\n{unit}"
        _headers[key] = header
    return header


class _Unusual(Exception):
    """The family is one the fast path does not write as prometheus-client would: a type other than gauge, counter,
    info and unknown; names outside the classic character set (prometheus-client escapes them); OpenMetrics-only
    `_created` samples (its text encoder moves them to a family of their own). Sample names and labels are checked as
    a sample's written form is first made (`_head`)."""


def _check_simple(family: Metric, timestamps: bool) -> None:
    created = family.name + "_created"
    for sample in family.samples:
        if sample.name == created or (not timestamps and sample.timestamp is not None):
            raise _Unusual()


@functools.lru_cache(maxsize=4096)
def _legacy_name(name: str) -> bool:
    return (bool(name) and not name[0].isdigit() and name.isascii()
            and name.replace("_", "a").replace(":", "a").isalnum())


@functools.lru_cache(maxsize=4096)
def _legacy_label_name(name: str) -> bool:
    return ":" not in name and _legacy_name(name)


class _One:
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


def _fallback(family: Metric, encoder: Callable[[_One], bytes]) -> str:
    return encoder(_One(family)).decode("utf-8")
