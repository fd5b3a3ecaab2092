"""Counts allocation failures, OOM kills and related kernel messages as they are logged, from /dev/kmsg.

Only records of the kernel facility are counted: text that user space writes into /dev/kmsg (facility 1 or higher)
never is, whatever it says. The reader starts at the end of the log, so counting starts when the exporter does.

Every event's series exists from the start at 0, so that `increase()` sees the first event. Events with an order
(page allocation failures and stalls) are created at 0 for every order this kernel has (the columns of
/proc/buddyinfo; 0..10 when it cannot be read); a higher order, up to 20, gets its series when it first happens.
"""

from __future__ import annotations

import os
import threading
from typing import Iterable, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector, CollectorSettings
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.reading.kmsg_reader import KmsgReader, ReadFunction, describe_open_error
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo
from kmem_exporter.parsers.kernel_log_patterns import EVENTS, EVENTS_WITH_ORDER, match_event
from kmem_exporter.parsers.kmsg import KmsgRecord
from kmem_exporter.threads import run_in_daemon_thread

DEFAULT_ORDERS = 11  # x86: orders 0..10

EventKey = tuple[str, Optional[str]]  # (event, order or None)


def initial_counts(orders: int) -> dict[EventKey, int]:
    """The series that exist from the start, all at 0."""
    counts: dict[EventKey, int] = {}
    for event in EVENTS:
        if event in EVENTS_WITH_ORDER:
            counts.update({(event, str(order)): 0 for order in range(orders)})
        else:
            counts[(event, None)] = 0
    return counts


class KernelLogCollector(Collector):
    name = "kernel_log"
    description = "allocation failures, OOM kills and related kernel messages counted from /dev/kmsg"

    def __init__(self, config: CollectorSettings, read: ReadFunction = os.read) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._counts: dict[EventKey, int] = {}
        self.reader = KmsgReader(config.kmsg, self.count_record, read=read)
        self._open_error: Optional[str] = "the kernel log reader has not started"
        self._initial_series_created = False

    def _kernel_orders(self, files: KernelFiles) -> int:
        """How many orders this kernel's buddy allocator has."""
        try:
            zones = files.parse_optional(self.config.procfs / "buddyinfo", parse_buddyinfo)
        except CollectorError:
            return DEFAULT_ORDERS
        return DEFAULT_ORDERS if zones is None else len(zones[0].free_blocks)

    def _create_initial_series(self, files: KernelFiles) -> None:
        """Every event's series at 0 (events counted before this keep their counts). Done in the first collection,
        not at start: reading buddyinfo there runs under the collector timeout."""
        initial = initial_counts(self._kernel_orders(files))
        with self._lock:
            for key, count in initial.items():
                self._counts.setdefault(key, count)
        self._initial_series_created = True

    def _start(self) -> None:
        try:
            self.reader.open()
        except OSError as err:
            self._open_error = describe_open_error(self.config.kmsg, err)
            return
        self._open_error = None
        self.reader.start()

    async def start(self) -> None:
        await run_in_daemon_thread(self._start, f"start-{self.name}")

    async def stop(self) -> None:
        await run_in_daemon_thread(self.reader.stop, f"stop-{self.name}")

    def count_record(self, record: KmsgRecord) -> None:
        """Count one record if it is a kernel message the pattern table knows (called by the reader thread)."""
        if not record.from_kernel:
            return
        event = match_event(record.text)
        if event is not None:
            key = (event.event, event.order)
            with self._lock:
                self._counts[key] = self._counts.get(key, 0) + 1

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        if self._open_error is not None:
            raise CollectorError(self._open_error)
        if not self._initial_series_created:
            self._create_initial_series(files)
        with self._lock:
            counts = dict(self._counts)
        state = self.reader.state()
        events = CounterMetricFamily(
            "kmem_kernel_log_events",
            "Kernel messages counted since the exporter started, by event: page_allocation_failure, "
            "page_allocation_stall (these two with the allocation order), slub_allocation_failure, "
            "slab_cache_create_failure, nf_conntrack_cache_failure, nf_conntrack_table_full, "
            "netdev_unregister_wait, oom_kill.",
        )
        for (event, order), value in counts.items():
            labels = {"event": event} if order is None else {"event": event, "order": order}
            events.add_sample("kmem_kernel_log_events_total", labels, value)
        return [
            events,
            CounterMetricFamily("kmem_kernel_log_records_read",
                                "Records read from the kernel log since the exporter started, of any facility.",
                                value=state.records_read),
            CounterMetricFamily("kmem_kernel_log_records_lost",
                                "Kernel log records overwritten by the kernel before the exporter read them.",
                                value=state.records_lost),
            GaugeMetricFamily("kmem_kernel_log_reader_up",
                              "1 while the kernel log is being read; 0 while the reader waits to open it again "
                              "after a failure.", value=1.0 if state.up else 0.0),
            CounterMetricFamily("kmem_kernel_log_reader_restarts",
                                "Times the kernel log reader opened the log again after a failure.",
                                value=state.restarts),
        ]
