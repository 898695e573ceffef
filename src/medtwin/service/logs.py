"""Structured logs: one JSON object per line on stderr (logger ``medtwin.service``), one line per request.

:func:`configure_logging` is called by the app factory (idempotent: one handler, however many apps are made).

Examples
--------
>>> import json, logging
>>> record = logging.LogRecord("medtwin.service", logging.INFO, "x", 1, "request", None, None)
>>> record.fields = {"path": "/health", "status": 200}
>>> json.loads(JsonFormatter().format(record))["path"]
'/health'
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

__all__ = ["JsonFormatter", "configure_logging", "LOGGER"]

#: Name of the service's logger.
LOGGER = "medtwin.service"


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: time, level, logger, message and the record's ``fields`` dict."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> logging.Logger:
    """The service logger, writing JSON lines to stderr (handler added once)."""
    logger = logging.getLogger(LOGGER)
    if not any(getattr(h, "_medtwin_json", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler._medtwin_json = True
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger
