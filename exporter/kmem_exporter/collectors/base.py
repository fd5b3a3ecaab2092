"""What every collector is: a name, flags, and `collect(files)`; and the settings it is given."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import ClassVar, Iterable, Protocol

from prometheus_client.core import Metric

from kmem_exporter.collectors.kernel_files import KernelFiles, read_page_size
from kmem_exporter.settings import Setting, parse_duration


class CollectorSettings(Protocol):
    """What a collector reads of the exporter's configuration (`kmem_exporter.config.Config` is one)."""

    @property
    def procfs(self) -> Path: ...

    @property
    def sysfs(self) -> Path: ...

    @property
    def debugfs(self) -> Path: ...

    @property
    def cgroupfs(self) -> Path: ...

    @property
    def kmsg(self) -> Path: ...

    @property
    def max_file_bytes(self) -> int: ...

    def option(self, key: str) -> object: ...


class Collector:
    """One area of metrics. `collect()` is blocking and runs off the event loop; it raises CollectorError on failure."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_enabled: ClassVar[bool] = True
    options: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, config: CollectorSettings) -> None:
        self.config = config

    def option(self, suffix: str) -> object:
        """The value of this collector's option `collector.<name>.<suffix>`."""
        return self.config.option(f"collector.{self.name}.{suffix}")

    @cached_property
    def page_size(self) -> int:
        """The kernel's page size in bytes (see `read_page_size`), read at the first use."""
        return read_page_size(self.config.procfs)

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        """The collector's metric families, from the files of this collection."""
        raise NotImplementedError

    async def start(self) -> None:
        """Begin background work, if the collector has any. Called once before the first scrape; it must not wait
        for slow work (`first_result` does)."""

    async def first_result(self) -> None:
        """Wait until the collector has something to serve: at once, unless it works in the background."""

    async def stop(self) -> None:
        """End background work."""


def interval_option(collector_name: str, default: str, what: str) -> Setting:
    return Setting(
        f"collector.{collector_name}.interval",
        parse_duration,
        default,
        f"How often the background {what} runs.",
        metavar="DURATION",
    )
