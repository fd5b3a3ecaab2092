"""The exporter's own process and runtime: prometheus-client's process (`process_*`), platform (`python_info`) and
garbage-collector (`python_gc_*`) series, as every Python exporter serves them. `serve` adds them to each
collection unless --web.disable-exporter-metrics is given, as node_exporter serves its `process_*` and `go_*` series.

They describe the exporter's own process through the /proc it runs with, never through --path.procfs (the host's
/proc in a container).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric


class ExporterMetrics:
    """The families of the exporter's own process, collected anew at each call (about 0.1 ms)."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)

    def __call__(self) -> list[Metric]:
        return list(self._registry.collect())
