"""The command line: `serve` (default) runs the HTTP server; `scrape` collects once and prints the exposition;
`report` collects once (or reads a running exporter) and prints the node's verdict, as text or JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from types import FrameType
from typing import Callable, Iterable, Optional, Sequence

from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.core import Metric

from kmem_exporter import logs
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.config import Config, ConfigError, parse_args
from kmem_exporter.exporter_metrics import ExporterMetrics
from kmem_exporter.report.data import report_data
from kmem_exporter.report.findings import STATUSES, judge
from kmem_exporter.report.options import OptionsError, ReportOptions, split_report_args
from kmem_exporter.report.remote import FetchError, fetch_families, shown_url
from kmem_exporter.report.state import read_state
from kmem_exporter.report.text import render_text
from kmem_exporter.report.thresholds import thresholds
from kmem_exporter.exposition import TEXT
from kmem_exporter.scrape.collection import Collection
from kmem_exporter.scrape.scraper import Scraper
from kmem_exporter.web.server import serve
from kmem_exporter.settings import shorten
from kmem_exporter.web.config_files import WebConfigError
from kmem_exporter.web.config import load_web_config

log = logging.getLogger(__name__)

SIGHUP_MESSAGE = ("received SIGHUP: ignored; flags and --config.file are read only at start, "
                  "restart the exporter to apply changes (--web.config.file is re-read automatically)")


def setup_logging(config: Config) -> None:
    logs.setup_logging(config.python_log_level, config.log_format)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_quiet_client_errors)


def _quiet_client_errors(record: logging.LogRecord) -> bool:
    """A malformed request is the client's error, not the exporter's: it is answered 400 and logged at debug level,
    on one line, so that no client can fill the log with tracebacks."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args, record.exc_info, record.exc_text = f"bad request: {error}", None, None, None
        return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True


def build_scraper(config: Config, serving: bool = False) -> Scraper:
    """The scraper of the enabled collectors. Serving, it adds the exporter's own process metrics unless
    --web.disable-exporter-metrics is given; `scrape` and `report` describe the kernel only (the one-shot process
    is not the exporter that Prometheus watches, and `scrape` output fed to node_exporter's textfile collector
    must not clash with node_exporter's own process_* series)."""
    extra: Callable[[], Iterable[Metric]] = ExporterMetrics() if serving and config.exporter_metrics else tuple
    return Scraper([COLLECTORS[name](config) for name in config.enabled_collectors], config.collector_timeout,
                   config.max_file_bytes, extra, config.max_series)


async def collect_once(config: Config) -> Collection:
    """One collection, with every collector started first (and stopped after)."""
    scraper = build_scraper(config)
    await scraper.start()
    try:
        await scraper.wait_ready()
        return await scraper.scrape()
    finally:
        await scraper.stop()


async def scrape_once(config: Config) -> tuple[bytes, bool]:
    """One collection, as the text exposition, and whether every enabled collector succeeded."""
    collection = await collect_once(config)
    return await collection.body(TEXT), collection.succeeded


async def report_once(config: Config, options: ReportOptions) -> tuple[str, int]:
    """The node's verdict in the asked format, and its exit status (0 healthy, 1 warning, 2 critical, 3 unknown),
    from one collection or from the exporter at `options.source` (FetchError when it cannot be read)."""
    if options.source is not None:
        families, failures, source = await fetch_families(options.source), {}, shown_url(options.source.url)
    else:
        collection = await collect_once(config)
        families, failures, source = collection.families, collection.failures, "files"
    state = read_state(families, failures)
    limits = thresholds()
    verdict = judge(state, limits)
    if options.format == "json":
        text = json.dumps(report_data(state, verdict, limits, source), indent=2) + "\n"
    else:
        text = render_text(state, verdict, limits)
    return text, verdict.exit_status


def ignore_sighup() -> None:
    """Keep running on SIGHUP (by default it ends the process), saying why nothing is reloaded."""

    def on_sighup(signum: int, frame: Optional[FrameType]) -> None:
        log.warning(SIGHUP_MESSAGE)

    signal.signal(signal.SIGHUP, on_sighup)


def fail(message: str, status: int = 2) -> int:
    """Say why the exporter cannot start; exit status 2 (`report`: 3, could not judge)."""
    print(f"kmem-exporter: error: {shorten(message, 1000)}", file=sys.stderr)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    reporting = "report" in args
    unusable = STATUSES.index("unknown") if reporting else 2
    try:
        options, args = split_report_args(args) if reporting else (ReportOptions(), args)
        command, config = parse_args(args)
    except (ConfigError, OptionsError) as err:
        return fail(str(err), unusable)
    except Exception as err:  # noqa: BLE001 (any start-up failure is exit 2 with a message, never a traceback)
        return fail(f"unusable configuration: {type(err).__name__}: {err}", unusable)
    except SystemExit as exit:  # argparse: --help and --version (0), a flag it refuses (2)
        if exit.code not in (0, None) and reporting:
            return unusable
        raise
    setup_logging(config)
    if command == "scrape":
        body, ok = asyncio.run(scrape_once(config))
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return 0 if ok else 1
    if command == "report":
        try:
            text, status = asyncio.run(report_once(config, options))
        except FetchError as err:
            return fail(f"report --from: {err}", unusable)
        sys.stdout.write(text)
        sys.stdout.flush()
        return status
    web_config = None
    if config.web_config_file is not None:
        try:
            web_config = load_web_config(config.web_config_file)
        except WebConfigError as err:
            return fail(f"web.config.file: {err}")
    ignore_sighup()
    try:
        return serve(config, build_scraper(config, serving=True), web_config)
    except ConfigError as err:  # an address that cannot be bound: in use, not local, host not found
        return fail(str(err))
