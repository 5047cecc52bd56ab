"""Structured logging: one event per line as `key=value` pairs.

Never pass passwords, tokens or other users' message bodies as fields.
"""

from __future__ import annotations

import logging
import sys

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _format_value(value) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """Render a record as `ts=… level=… service=… event=… key=value …`."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        pairs = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "event": record.getMessage(),
        }
        pairs.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        line = " ".join(f"{key}={_format_value(value)}" for key, value in pairs.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of this process to stderr as key=value lines."""
    import time

    handler = logging.StreamHandler(sys.stderr)
    formatter = KeyValueFormatter(service)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika is chatty at INFO about every connection step.
    logging.getLogger("pika").setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, exc_info: bool = False,
              **fields) -> None:
    """Log one named event with its fields (and the exception being handled, with `exc_info`).

    A field named like a LogRecord attribute (`process`, `name`, `created`, …) is written
    with a trailing underscore: logging would refuse it, and a log line must never crash
    the process that writes it.
    """
    if not _RESERVED.isdisjoint(fields):
        fields = {(f"{key}_" if key in _RESERVED else key): value for key, value in fields.items()}
    logger.log(level, event, exc_info=exc_info, extra=fields)
