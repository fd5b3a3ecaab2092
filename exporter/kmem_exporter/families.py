"""Metric families kept as rows of label values and values, for the collectors with hundreds of series.

A `RowFamily` is a prometheus-client `Metric` (gauge or counter) whose series are given as two parallel sequences:
the label values of each series and its value. Collectors build no `Sample` per series, the exposition writes the
rows straight out (`exposition.py`), and `check()` validates them in a few passes in C. `samples` builds the usual
`Sample` list for whoever asks for it (the `report` command, prometheus-client's encoders, tests).
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence, Union

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

Value = Union[int, float]

_SUFFIXES = {"counter": "_total", "gauge": ""}
_NUMBER_TYPES = frozenset({int, float})
_FLOAT_LIMIT = 2**1024 - 2**970  # the smallest integer that float() cannot convert (it rounds up to 2**1024)


class RowFamily(Metric):
    """A gauge or counter family: `label_names` for every series, one tuple of `label_values` and one value per
    series, in the order written. `name` is a valid metric name made by the exporter (it is not checked again)."""

    def __init__(self, name: str, documentation: str, typ: str, label_names: tuple[str, ...],
                 label_values: Sequence[tuple[str, ...]], values: Sequence[Value]) -> None:
        # Metric.__init__ is left out on purpose: it checks the name with a regular expression at every scrape.
        if typ not in _SUFFIXES:
            raise ValueError(f"a row family is a gauge or a counter, not {typ!r}")
        self.name = name
        self.documentation = documentation
        self.unit = ""
        self.type = typ
        self.label_names = label_names
        self.label_values = label_values
        self.values = values
        self.sample_name = name + _SUFFIXES[typ]

    @classmethod
    def single(cls, name: str, documentation: str, typ: str, value: Value) -> "RowFamily":
        """A family of one series without labels."""
        return cls(name, documentation, typ, (), ((),), (value,))

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]  # read-only: the rows are the data
        names = self.label_names
        return [Sample(self.sample_name, dict(zip(names, labels)), value)
                for labels, value in zip(self.label_values, self.values)]

    def check(self) -> None:
        """ValueError unless every series can be written: as many label tuples as values, each of strings and of
        the family's width, no series twice, and every value a number that a float holds."""
        if len(self.label_values) != len(self.values):
            raise ValueError(f"{len(self.label_values)} label sets for {len(self.values)} values")
        if not self.label_names:
            if len(self.values) != 1:
                raise ValueError("a family without labels has one series")
            value = self.values[0]
            if type(value) not in _NUMBER_TYPES or (type(value) is int and not -_FLOAT_LIMIT < value < _FLOAT_LIMIT):
                raise ValueError(f"value {str(value)[:40]!r} cannot be exported")
            return
        width = len(self.label_names)
        if not set(map(len, self.label_values)) <= {width}:
            raise ValueError(f"a series does not have {width} label values")
        try:
            "".join(chain.from_iterable(self.label_values))
        except TypeError:
            raise ValueError("a label value is not a string") from None
        if len(set(self.label_values)) != len(self.label_values):
            raise ValueError("a series is listed twice")
        if not all(map(_NUMBER_TYPES.__contains__, map(type, self.values))):
            bad = next(v for v in self.values if type(v) not in _NUMBER_TYPES)
            raise ValueError(f"value {str(bad)[:40]!r} is not a number")
        try:
            list(map(float, self.values))
        except OverflowError:
            raise ValueError("a value is too large for a float") from None
