"""Scenario: network namespaces and conntrack.

First thousands of network namespaces are created and destroyed with nf_conntrack loaded: the exporter's live
count must follow the truth and the 3.10-leak alert must stay silent (these kernels have one nf_conntrack cache).
Then a small conntrack table is filled by new UDP flows on loopback, tracked by an nftables rule, until the
kernel logs "nf_conntrack: table full, dropping packet".
"""

from __future__ import annotations

import errno
import socket
import subprocess
import time
from pathlib import Path

from lab.guest.harness import Lab, kernel_lines, run, write

NETNS_DIR = Path("/run/netns")
NETFILTER = Path("/proc/sys/net/netfilter")


class Conntrack:
    def __init__(self, lab: Lab, namespaces: int, batch: int, table: int, rate: float, hold: float) -> None:
        self.lab, self.namespaces, self.batch, self.table, self.rate, self.hold = (
            lab, namespaces, batch, table, rate, hold)
        self.comparisons = self.mismatches = 0
        self.examples: list[str] = []
        lab.plot = [
            {"title": "conntrack entries / limit", "query": "kmem_nf_conntrack_entries / kmem_nf_conntrack_entries_limit"},
            {"title": "network namespaces", "query": "kmem_network_namespaces"},
            {"title": "nf_conntrack slab caches", "query": "kmem_nf_conntrack_slab_caches"},
            {"title": "table-full events", "query": 'sum(kmem_kernel_log_events_total{event="nf_conntrack_table_full"})'},
        ]

    def compare_namespaces(self, expected: int) -> None:
        ours = self.lab.scrape_once("netns").get("kmem_network_namespaces")
        self.comparisons += 1
        if ours != expected:
            self.mismatches += 1
            if len(self.examples) < 5:
                self.examples.append(f"expected {expected}, exporter {ours}")

    def ip_batch(self, verb: str, names: list[str]) -> None:
        commands = "".join(f"netns {verb} {name}\n" for name in names)
        subprocess.run(["ip", "-batch", "-"], input=commands, text=True, check=True, capture_output=True)

    def churn_namespaces(self) -> None:
        lab = self.lab
        run("modprobe", "nf_conntrack")
        lab.mark("netns")
        base = 1  # the initial namespace; the guest runs nothing else in its own
        self.compare_namespaces(base)
        made = 0
        while made < self.namespaces:
            names = [f"lab{made + i}" for i in range(min(self.batch, self.namespaces - made))]
            self.ip_batch("add", names)
            self.compare_namespaces(base + len(names))
            self.ip_batch("delete", names)
            self.compare_namespaces(base)
            made += len(names)
        lab.measures["namespaces_created"] = made
        caches = lab.scrape().get("kmem_nf_conntrack_slab_caches")
        lab.check("the live namespace count follows the truth", self.mismatches == 0,
                  f"{self.comparisons} collections compared, {self.mismatches} differ " + "; ".join(self.examples))
        lab.check("one nf_conntrack slab cache whatever the namespaces", caches == 1, f"{caches}")

    def fill_table(self) -> None:
        lab = self.lab
        write(NETFILTER / "nf_conntrack_max", f"{self.table}\n")
        write(NETFILTER / "nf_conntrack_udp_timeout", "3600\n")
        rules = ("add table inet kmem_lab\n"
                 "add chain inet kmem_lab out { type filter hook output priority 0; }\n"
                 "add rule inet kmem_lab out ct state new counter accept\n")
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
        time.sleep(5)
        lab.mark("fill")
        sent, dropped_at = 0, None
        start = time.monotonic()
        while dropped_at is None and sent < self.table * 2:
            due = start + sent / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.sendto(b"x", ("127.0.0.1", 9))
                    sent += 1
                except OSError as error:
                    if error.errno != errno.EPERM:
                        raise
                    dropped_at = lab.mark("failure")
        entries = int((NETFILTER / "nf_conntrack_count").read_text())
        lab.measures["at_failure"] = {"flows_sent": sent, "entries": entries, "limit": self.table}
        time.sleep(1)
        logged = kernel_lines("nf_conntrack: table full, dropping packet")
        lab.check("the kernel logs a full table", dropped_at is not None and bool(logged),
                  f"{len(logged)} line(s); entries {entries} of {self.table}")
        time.sleep(self.hold)
        samples = lab.scrape()
        counted = samples.get('kmem_kernel_log_events_total{event="nf_conntrack_table_full"}', 0.0)
        logged = kernel_lines("nf_conntrack: table full, dropping packet")
        lab.check("one event counted per logged line", counted == len(logged),
                  f"exporter {counted:.0f}, kernel log {len(logged)}")
        lab.check("the fill gauge equals nf_conntrack_count",
                  samples.get("kmem_nf_conntrack_entries") == float(entries)
                  or samples.get("kmem_nf_conntrack_entries") == float((NETFILTER / "nf_conntrack_count").read_text()),
                  f"exporter {samples.get('kmem_nf_conntrack_entries')}, kernel {entries}")
        subprocess.run(["nft", "delete", "table", "inet", "kmem_lab"], check=False)

    def run(self) -> None:
        self.churn_namespaces()
        self.fill_table()
