"""The `report` command's own flags: the output format and where the metrics come from (`--from URL`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from kmem_exporter.report.remote import Source
from kmem_exporter.settings import SettingError, parse_duration, shorten

FORMATS = ("text", "json")
HELP = (
    "report flags: --format text|json (default text; json is described by docs/report.schema.json); "
    "--from URL reads a running exporter's /metrics instead of the kernel files, with --from.username and "
    "--from.password-file (basic auth), --from.ca-file or --from.insecure-skip-verify and --from.cert-file with "
    "--from.key-file (https) and --from.timeout "
    "(default 30s). Exit status of report: 0 healthy, 1 warning, 2 critical, 3 could not judge."
)


class OptionsError(ValueError):
    """A report flag is unusable."""


@dataclass(frozen=True)
class ReportOptions:
    format: str = "text"
    source: Optional[Source] = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise OptionsError(shorten(message, 400))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(add_help=False, allow_abbrev=False)
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--from", dest="url")
    parser.add_argument("--from.username", dest="username")
    parser.add_argument("--from.password-file", dest="password_file")
    parser.add_argument("--from.ca-file", dest="ca_file")
    parser.add_argument("--from.insecure-skip-verify", dest="insecure", action="store_true")
    parser.add_argument("--from.cert-file", dest="cert_file")
    parser.add_argument("--from.key-file", dest="key_file")
    parser.add_argument("--from.timeout", dest="timeout", default="30s")
    return parser


def split_report_args(argv: Sequence[str]) -> tuple[ReportOptions, list[str]]:
    """The report's options and the other arguments (for the exporter's own parser); OptionsError when wrong."""
    args, rest = _parser().parse_known_args(list(argv))
    if args.url is None:
        given = [flag for flag in ("username", "password_file", "ca_file", "cert_file", "key_file")
                 if getattr(args, flag) is not None]
        if given or args.insecure:
            raise OptionsError("the --from.* flags need --from URL")
        return ReportOptions(args.format), rest
    password = None
    if args.password_file is not None:
        try:
            password = Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise OptionsError(f"--from.password-file: {err}") from None
    if args.key_file is not None and args.cert_file is None:
        raise OptionsError("--from.key-file needs --from.cert-file")
    try:
        timeout = parse_duration(args.timeout)
    except SettingError as err:
        raise OptionsError(f"--from.timeout: {err}") from None
    return ReportOptions(args.format, Source(args.url, timeout, args.ca_file, args.insecure, args.cert_file,
                                             args.key_file, args.username, password)), rest
