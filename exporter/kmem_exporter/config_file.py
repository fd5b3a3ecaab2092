"""Reading the YAML config file defensively: a regular file of bounded size, strict UTF-8, plain YAML only.

The file can come from anywhere (a ConfigMap, a provisioning tool), so nothing in it may hang the exporter or make
it spend much memory or time: non-regular files (a FIFO, /dev/zero) are refused before reading, at most MAX_BYTES+1
bytes are read, aliases and merge keys are refused (no alias bomb), and nesting and the number of nodes are bounded.
Duplicate keys, which YAML would silently resolve to the last one, are refused at any depth.
"""

from __future__ import annotations

import os
from typing import Callable

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import Event
from yaml.nodes import MappingNode, Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from kmem_exporter.reading.bounded import FileTooLarge, read_bounded_bytes
from kmem_exporter.settings import shorten, shown

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 10_000


class ConfigFileError(ValueError):
    """The file cannot be used; the message says why, without naming the file (the caller does)."""


def read_text(path: str) -> str:
    """The file's text: a regular file of at most MAX_BYTES bytes of UTF-8."""
    data = _read_capped(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}") from None


def _read_capped(path: str) -> bytes:
    try:
        return read_bounded_bytes(path, MAX_BYTES)
    except FileTooLarge:
        size = os.stat(path).st_size  # a regular file: say how large, unless it is still growing
        raise ConfigFileError(f"larger than {MAX_BYTES} bytes" + (f" ({size} bytes)" if size > MAX_BYTES else "")
                              ) from None
    except OSError as err:  # NotARegularFile says which kind of file it found
        raise ConfigFileError(f"cannot read: {err.strerror or err}") from None


class _BoundedComposer(Composer):
    """Builds the node tree from parser events, refusing aliases and bounding nesting and the number of nodes."""

    _depth = 0
    _nodes = 0
    peek_event: Callable[[], Event]  # from the parser it is mixed with

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        problem = None
        if isinstance(event, yaml.AliasEvent):
            problem = f"aliases are not allowed (*{shorten(event.anchor or '')})"
        elif self._nodes >= MAX_NODES:
            problem = f"more than {MAX_NODES} values"
        elif self._depth >= MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep"
        if problem is not None:
            raise ComposerError(None, None, problem, event.start_mark)  # type: ignore[arg-type]  # libyaml's Mark
        self._nodes += 1
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _UniqueKeyConstructor(SafeConstructor):
    """SafeConstructor refusing duplicate keys at any depth, and merge keys."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConstructorError(None, None, "merge keys (<<) are not allowed", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise ConstructorError(None, None, "a key must be a plain value", key_node.start_mark) from None
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Plain scalars that stay strings, except null: how Go's YAML fills string fields (exporter-toolkit's web config).
_NULL_ONLY = {first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
              for first, resolvers in Resolver.yaml_implicit_resolvers.items()}

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _Loader(_BoundedComposer, CParser, _UniqueKeyConstructor, Resolver):
        """libyaml's scanner and parser (C: a megabyte in milliseconds), with the bounded composer above."""

        def __init__(self, stream: str, strings: bool) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            _UniqueKeyConstructor.__init__(self)
            Resolver.__init__(self)
            if strings:
                self.yaml_implicit_resolvers = _NULL_ONLY
else:  # PyYAML built without libyaml: the pure-Python scanner, some seconds per megabyte at worst
    class _Loader(Reader, Scanner, Parser, _BoundedComposer, _UniqueKeyConstructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, stream: str, strings: bool) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _BoundedComposer.__init__(self)
            _UniqueKeyConstructor.__init__(self)
            Resolver.__init__(self)
            if strings:
                self.yaml_implicit_resolvers = _NULL_ONLY


def parse_yaml(text: str, strings: bool = False) -> object:
    """The single YAML document in `text`, as plain Python values; with `strings`, plain scalars other than null
    stay strings."""
    try:
        loader = _Loader(text, strings)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        raise ConfigFileError(f"not valid YAML: {_describe(err)}") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"not valid YAML: {shorten(str(err), 200)}") from None
    except (ValueError, OverflowError) as err:  # a scalar YAML resolves but cannot build: 2001-13-45, 10**5000
        raise ConfigFileError(f"not valid YAML: a value cannot be read: {shorten(str(err), 200)}") from None


def _describe(err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = err.problem or err.context or "unreadable"
    return where + shorten(problem, 200)
