"""JSON log lines (python-json-logger), each carrying the request id and user if known.

:func:`log_config` is a :func:`logging.config.dictConfig` document that ``ssreg serve`` hands
to uvicorn: its own loggers and the app's write one JSON object per line to stderr. The API's
request middleware writes one line per request on the ``app.request`` logger (method, route
template, path, status, duration in ms, request id, user); uvicorn's access log is off, as
it would repeat those lines without the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from app.telemetry.context import current

REQUEST_LOG = logging.getLogger("app.request")


class RequestFields(logging.Filter):
    """Adds ``request_id`` (and ``user``, once known) of the request being served to every
    record logged while serving it, unless the record brings its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current()
        if context is not None:
            if not hasattr(record, "request_id"):
                record.request_id = context.request_id
            if context.user is not None and not hasattr(record, "user"):
                record.user = context.user
        return True


def log_config(level: str = "INFO") -> dict[str, Any]:
    """Logging configuration: JSON lines on stderr for the app and uvicorn at ``level``."""
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "json",
        "filters": ["request"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": f"{__name__}.RequestFields"}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
                "timestamp": "time",  # UTC, ISO 8601
                # uvicorn's "color_message" repeats the message with terminal colours.
                "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
            }
        },
        "handlers": {"stderr": handler},
        "loggers": {
            "app": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
