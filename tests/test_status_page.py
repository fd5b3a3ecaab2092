"""The status page `/` as a person sees it: Debian's chromium, headless with a fresh profile, loads it from the real
exporter (plain, and under the web config's TLS and basic auth), its DOM is checked for the verdict, the links and
every chart, and its screenshot is kept. `make screenshots` writes the screenshots to docs/ (SCREENSHOTS=docs)."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import FIXTURES, PROJECT, RunningExporter, fixture_flags, require_tool, run_exporter
from kmem_exporter.web import svg
from metrics_text import only_collectors
from secured_exporter import PASSWORD, USER, secured_exporter
from stuck_files import StuckTreeFactory, stuck_trees  # noqa: F401  (a fixture)
from test_request_limit import VMSTAT, HeldScrape
from web.pki import Pki, make_pki

# A fragmented node, and a healthy one (rhel7-healthy is not: its 3.10.0-514 kernel leaks memory cgroups).
PAGES = {"fragmented": "rhel7-fragmented", "healthy": "cgroup2-6.18"}
WINDOW = (1024, 1700)


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless chromium on `url` with a fresh profile; its standard output."""
    command = [require_tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
               "--hide-scrollbars", "--no-first-run", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def report_data(host: str) -> dict[str, Any]:
    return json.loads(run_exporter("report", "--format", "json", *fixture_flags(host)).stdout)


def png_size_and_colors(path: Path) -> tuple[tuple[int, int], int]:
    """The PNG's width and height, and how many byte values its pixel rows hold (a blank page has very few)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    size = struct.unpack(">II", data[16:24])
    pixels, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            pixels += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return size, len(set(zlib.decompress(pixels)))


def check_page(dom: str, data: dict[str, Any], metrics_path: str = "/metrics") -> None:
    """The DOM holds the verdict, its findings, the links and every chart the report's data calls for."""
    assert f"<title>kmem-exporter: {data['status']}</title>" in dom
    assert f"Verdict: {data['status']}" in dom
    for finding in data["findings"]:
        assert f"<b>{finding['alert']}</b>" in dom
        assert f'href="https://kmem-exporter.invalid/{finding["runbook"]}"' in dom
    for href in (metrics_path, "/-/healthy", "/-/ready", "https://kmem-exporter.invalid/docs/"):
        assert f'href="{href}"' in dom
    zones = data["fragmentation"]["zones"]
    assert zones
    assert dom.count('class="chart free-blocks"') == len(zones)
    assert dom.count('class="chart extfrag"') == sum(1 for zone in zones if zone["extfrag_index"])
    assert dom.count('class="watched-order"') == 2 * len(zones)  # the watched order marked on both charts
    for zone in zones:
        assert f'aria-label="Node {zone["node"]}, zone {zone["zone"]}: free blocks by order"' in dom
        assert f'id="zone-{zone["node"]}-{zone["zone"]}"' in dom
    assert dom.count('class="chart memcg-ids"') == (1 if data["memcg"] else 0)
    if data["memcg"]:
        memcg = data["memcg"]
        share = memcg["in_use"] / memcg["limit"]
        assert f"{memcg['in_use']:.0f} of {memcg['limit']:.0f} ({share:.1%})" in dom
    assert "<script" not in dom and "src=" not in dom and "<link" not in dom and "@import" not in dom


@pytest.mark.parametrize("name", sorted(PAGES))
def test_a_browser_shows_the_verdict_and_every_chart(exporter_factory: Callable[..., RunningExporter],
                                                     tmp_path: Path, name: str) -> None:
    host = PAGES[name]
    exporter = exporter_factory(*fixture_flags(host))
    data = report_data(host)
    assert data["status"] == ("warning" if name == "fragmented" else "healthy")
    check_page(chromium(exporter.url + "/", tmp_path / "profile-dom", "--dump-dom"), data)

    target = Path(os.environ.get("SCREENSHOTS") or tmp_path)
    screenshot = target / f"status-page-{name}.png"
    chromium(exporter.url + "/", tmp_path / "profile-shot", f"--screenshot={screenshot}")
    size, colors = png_size_and_colors(screenshot)
    assert size == WINDOW
    assert colors > 50  # text and charts, not a blank or error page


def test_the_screenshots_in_docs_are_of_the_page() -> None:
    """The README shows both screenshots kept in docs/."""
    readme = (PROJECT / "README.md").read_text()
    for name in PAGES:
        path = PROJECT / "docs" / f"status-page-{name}.png"
        assert png_size_and_colors(path)[0] == WINDOW
        assert f"](docs/status-page-{name}.png)" in readme


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_under_tls_and_basic_auth(pki: Pki, tmp_path: Path) -> None:
    host = PAGES["fragmented"]
    with secured_exporter(pki, tmp_path, fixture_flags(host)) as exporter:
        status, body = exporter.get("/")
        assert status == 200
        check_page(body.decode(), report_data(host))
        assert exporter.get("/", password="wrong")[0] == 401
        # The browser: credentials in the URL, the test CA's certificate accepted (checked above with the CA).
        url = exporter.url.replace("https://", f"https://{USER}:{PASSWORD.replace(' ', '%20')}@") + "/"
        dom = chromium(url, tmp_path / "profile", "--ignore-certificate-errors", "--dump-dom")
        check_page(dom, report_data(host))


def test_the_page_uses_the_latest_collection(stuck_trees: StuckTreeFactory,
                                             exporter_factory: Callable[..., RunningExporter]) -> None:
    """After a scrape, the page is drawn from that scrape's collection: buddyinfo is not read again. Without any
    scrape, the first visit collects once, and later visits use that collection."""
    tree = stuck_trees(FIXTURES / PAGES["fragmented"])
    exporter = exporter_factory(*tree.path_flags())
    assert tree.reads_started("proc/buddyinfo") == 0
    assert exporter.get("/metrics")[0] == 200
    reads = tree.reads_started("proc/buddyinfo")
    assert reads >= 1
    for _ in range(3):
        status, headers, body = exporter.get("/")
        assert status == 200 and "Verdict: warning" in body.decode()
        assert headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert tree.reads_started("proc/buddyinfo") == reads

    fresh = exporter_factory(*fixture_flags(PAGES["fragmented"]), *tree.path_flags()[:1])
    before = tree.reads_started("proc/buddyinfo")
    assert fresh.get("/")[0] == 200
    once = tree.reads_started("proc/buddyinfo")
    assert once > before
    assert fresh.get("/")[0] == 200 and fresh.get("/")[0] == 200
    assert tree.reads_started("proc/buddyinfo") == once
    assert re.search(r"collected \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)", fresh.get("/")[2].decode())


def test_the_page_takes_a_request_slot(stuck_trees: StuckTreeFactory,
                                       exporter_factory: Callable[..., RunningExporter]) -> None:
    """Limited like /metrics: while a scrape stuck on vmstat holds the only slot, the page waits for it as long as its
    client waits (here 1 s), then is refused."""
    tree = stuck_trees(FIXTURES / PAGES["fragmented"], blocked={VMSTAT})
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "vmstat"), "--web.max-requests=1",
                                "--collector.timeout=60s")
    scrape = HeldScrape(exporter)
    tree.wait_for_waiting_reads(VMSTAT)  # the slot is taken
    started = time.monotonic()
    status, headers, _ = exporter.get("/", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert (status, headers["Retry-After"]) == (503, "1")
    assert time.monotonic() - started >= 1.0
    tree.release(VMSTAT)
    scrape.join(30)
    assert scrape.status == 200
    status, _, body = exporter.get("/")  # drawn from the scrape that held the slot
    assert status == 200 and 'class="chart free-blocks"' in body.decode()


@pytest.mark.parametrize("host, used, held, color", [
    ("memcg-near-exhausted", 64000, 64000, svg.BAD),  # 3.10: its 63978 dying cgroups hold IDs
    ("memcg-dying-6.18", 10, 63988, svg.GOOD),  # 6.18: the same dying cgroups gave theirs back
])
def test_the_memcg_bar_shows_the_ids_in_use(exporter_factory: Callable[..., RunningExporter], host: str, used: int,
                                            held: int, color: str) -> None:
    exporter = exporter_factory(*fixture_flags(host), *only_collectors("memcg", "buddyinfo", "kernel"))
    status, _, body = exporter.get("/")
    assert status == 200
    page = body.decode()
    bar = re.search(r'<svg[^>]*class="chart memcg-ids".*?</svg>', page, re.S)
    assert bar is not None, page
    assert f"{used} of 65535 ({used / 65535:.1%})" in bar.group(0)
    width = max(920 * used / 65535, 3)
    assert f'class="bar" x="10" y="8" width="{width:.1f}" height="26" fill="{color}"' in bar.group(0)
    assert f"{held} cgroups held, " in page and ", 63978 dying" in page
