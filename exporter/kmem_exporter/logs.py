"""Log lines as Prometheus' own tools write them: logfmt (the default) or JSON, one line per record whatever the
message holds (file contents, client bytes), with the levels debug, info, warn and error.

    ts=2026-01-02T03:04:05.678Z level=warn logger=kmem_exporter.cli msg="received SIGHUP: ..."
    {"ts": "2026-01-02T03:04:05.678Z", "level": "warn", "logger": "kmem_exporter.cli", "msg": "received SIGHUP: ..."}
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
           logging.CRITICAL: "error"}
# Control characters other than those with a short escape, the DEL character, and the line and paragraph
# separators that some readers take for line ends.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
# Credentials a client may send, wherever a message quotes its bytes (a request the HTTP parser refused, at debug
# level): the value of an authorization or cookie header, up to the end of the quoted line, and a URL's query.
_CREDENTIAL_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|x-api-key)([ \t]*:[ \t]*)[^'\"\r\n]*")
_QUERY = re.compile(r"(/[^\s?'\"]*)\?[^\s'\"]*")
_SHORT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def level_name(levelno: int) -> str:
    """The Prometheus name of a logging level (`warn`, not `warning`)."""
    if levelno in _LEVELS:
        return _LEVELS[levelno]
    return "debug" if levelno < logging.INFO else "info" if levelno < logging.WARNING else "error"


def timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Prometheus writes `ts`."""
    seconds = int(created)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{int((created - seconds) * 1000):03d}Z"


def logfmt_quote(value: str) -> str:
    """A logfmt value in double quotes, with backslashes, quotes and every control character escaped."""
    escaped = value.translate(_SHORT_ESCAPES)
    return '"' + _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


def redact(message: str) -> str:
    """`message` without the credentials a client's bytes may carry (authorization headers, query strings)."""
    if ":" in message:
        message = _CREDENTIAL_HEADER.sub(r"\1\2<redacted>", message)
    if "?" in message:
        message = _QUERY.sub(r"\1?<redacted>", message)
    return message


class _Formatter(logging.Formatter):
    def message(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " " + self.formatException(record.exc_info)
        return redact(message)


class LogfmtFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return (f"ts={timestamp(record.created)} level={level_name(record.levelno)} logger={record.name} "
                f"msg={logfmt_quote(self.message(record))}")


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # ensure_ascii: every control and non-ASCII character escaped, so the line is always one valid line.
        return json.dumps({"ts": timestamp(record.created), "level": level_name(record.levelno),
                           "logger": record.name, "msg": self.message(record)})


FORMATTERS: dict[str, type[logging.Formatter]] = {"logfmt": LogfmtFormatter, "json": JsonFormatter}


def setup_logging(level: int, log_format: str = "logfmt") -> None:
    """Every record to stderr at `level` and above, in `log_format` (a key of FORMATTERS)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
