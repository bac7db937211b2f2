"""Structured log lines: logfmt (``key=value``, the default) or JSON lines.

``ContextFilter`` copies the request, run and task ids from ``observability.context``
onto every record a handler sees; the formatters write them as fields. Settings choose
the format with ``LOG_FORMAT`` (``logfmt`` or ``json``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from observability import context

# Plain values stay bare in logfmt; anything else is quoted.
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+\-]+$")


class ContextFilter(logging.Filter):
    """Adds the context fields that are set (request_id, run_id, task_id, task_name)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in context.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# What every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName",
}


def _extra_fields(record: logging.LogRecord) -> dict[str, str]:
    return {
        name: str(value) for name, value in record.__dict__.items()
        if name not in _STANDARD and name not in context.CONTEXT_FIELDS
        and not name.startswith("_") and isinstance(value, str | int | float | bool)
    }


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    fields = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
    }
    for name in context.CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = str(value)
    fields.update(_extra_fields(record))
    fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    return fields


def _logfmt_value(value: str) -> str:
    if value and _BARE.match(value):
        return value
    return json.dumps(value, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=INFO logger=training.tasks run_id=12 msg="training run 12 started"``"""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record, self).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the same fields as ``LogfmtFormatter``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self), ensure_ascii=False)


FORMATTERS = {"logfmt": LogfmtFormatter, "json": JsonFormatter}


def formatter_for(name: str) -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` names; logfmt for anything unknown."""
    return FORMATTERS.get(name, LogfmtFormatter)()
