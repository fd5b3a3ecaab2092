"""The collectors, registered by name. The order here is the order of their flags in --help."""

from __future__ import annotations

from exporter.collectors.base import Collector
from exporter.collectors.buddyinfo import BuddyinfoCollector

COLLECTORS: dict[str, type[Collector]] = {
    cls.name: cls
    for cls in (
        BuddyinfoCollector,
    )
}
