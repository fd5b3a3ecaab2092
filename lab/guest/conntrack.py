"""Scenario: network namespaces and conntrack.

First thousands of network namespaces are created and destroyed with nf_conntrack loaded: the exporter's live
count must follow the truth and the 3.10-leak alert must stay silent (these kernels have one nf_conntrack cache).
Then a small conntrack table is filled by TCP connections on loopback, tracked by an nftables rule and kept open,
until the kernel logs "nf_conntrack: table full, dropping packet" for the next one's SYN. Established connections,
as on a busy node: their entries are assured, which the kernel never evicts to make room. (Unanswered UDP flows, which
the lab sent before, leave unassured entries that the kernel drops for a new one when it finds one near the new
one's hash bucket: the table then overflows only by chance, which a 4,096-entry table on 6.12 did not in 8,192
flows.)
"""

from __future__ import annotations

import errno
import resource
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

from lab.guest.harness import Lab, kernel_lines, run, write

NETNS_DIR = Path("/run/netns")
NETFILTER = Path("/proc/sys/net/netfilter")
CONNECT_WAIT = 0.9  # seconds a connection may take on loopback; its SYN dropped, TCP would send it again after 1 s


class FillServer(threading.Thread):
    """Accepts every connection to a loopback port and keeps it open, as a busy server would."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.socket.settimeout(0.2)
        self.address = self.socket.getsockname()
        self.accepted: list[socket.socket] = []
        self.stopped = False
        self.start()

    def run(self) -> None:
        while not self.stopped:
            try:
                self.accepted.append(self.socket.accept()[0])
            except socket.timeout:
                continue

    def close(self) -> None:
        self.stopped = True
        self.join()
        for sock in [self.socket, *self.accepted]:
            sock.close()


def connects(client: socket.socket, address: tuple[str, int]) -> bool:
    """Whether a TCP connection to `address` is established within CONNECT_WAIT seconds."""
    client.setblocking(False)
    if client.connect_ex(address) not in (0, errno.EINPROGRESS):
        return False
    poller = select.poll()  # select() stops at file descriptor 1023; the fill holds thousands
    poller.register(client, select.POLLOUT)
    return bool(poller.poll(CONNECT_WAIT * 1000)) and client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


class Conntrack:
    def __init__(self, lab: Lab, namespaces: int, batch: int, table: int, rate: float, hold: float) -> None:
        self.lab, self.namespaces, self.batch, self.table, self.rate, self.hold = (
            lab, namespaces, batch, table, rate, hold)
        self.comparisons = self.mismatches = 0
        self.examples: list[str] = []
        lab.plot = [
            {"title": "conntrack entries / limit",
             "query": "kmem_nf_conntrack_entries / kmem_nf_conntrack_entries_limit"},
            {"title": "network namespaces", "query": "kmem_network_namespaces"},
            {"title": "nf_conntrack slab caches", "query": "kmem_nf_conntrack_slab_caches"},
            {"title": "table-full events",
             "query": 'sum(kmem_kernel_log_events_total{event="nf_conntrack_table_full"})'},
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
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 4 * self.table + 256  # both ends of every connection, and room
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        server = FillServer()
        clients: list[socket.socket] = []
        # Only the fill's connections are tracked: a full table drops every new connection's SYN, and the lab's own
        # (the checks' scrapes, Prometheus's) must go on. On a node they would be tracked too.
        port = server.address[1]
        rules = ("add table inet kmem_lab\n"
                 "add chain inet kmem_lab raw { type filter hook output priority raw; }\n"
                 f"add rule inet kmem_lab raw tcp dport {port} accept\n"  # not `dport != P sport != P`, which nft
                 f"add rule inet kmem_lab raw tcp sport {port} accept\n"  # merges into one compare of both ports
                 "add rule inet kmem_lab raw notrack\n"
                 "add chain inet kmem_lab out { type filter hook output priority 0; }\n"
                 "add rule inet kmem_lab out ct state new counter accept\n")
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
        time.sleep(5)
        lab.mark("fill")
        dropped_at = None
        start = time.monotonic()
        while dropped_at is None and len(clients) < self.table * 2:
            due = start + len(clients) / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            attempt = time.time()
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if connects(client, server.address):
                clients.append(client)
            else:
                client.close()
                dropped_at = attempt
                lab.marks["failure"] = attempt  # when its SYN was dropped, not when the wait for it ended
                print(f"lab: failure at {attempt - lab.marks['start']:.1f}s", flush=True)
        entries = int((NETFILTER / "nf_conntrack_count").read_text())
        lab.measures["at_failure"] = {"connections": len(clients), "entries": entries, "limit": self.table}
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
        for client in clients:
            client.close()
        server.close()
        subprocess.run(["nft", "delete", "table", "inet", "kmem_lab"], check=False)

    def run(self) -> None:
        self.churn_namespaces()
        self.fill_table()
