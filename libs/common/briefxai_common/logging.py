"""structlog JSON logs: service, level, timestamp, trace/span ids, request id, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

SECRET_KEY_PATTERN = re.compile(
    r"(api[_-]?key|secret|password|passwd|authorization|credentials?|(^|_)token)$", re.I
)
SECRET_VALUE_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bBearer\s+[A-Za-z0-9._\-]{8,}", re.I),
)
REDACTED = "[REDACTED]"


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Masks values under secret-looking keys and secret-looking substrings in any string value."""
    for key, value in list(event_dict.items()):
        if SECRET_KEY_PATTERN.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            for pattern in SECRET_VALUE_PATTERNS:
                value = pattern.sub(REDACTED, value)
            event_dict[key] = value
    return event_dict


def add_trace_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Binds the current OpenTelemetry trace and span ids, when a span is recording."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def configure_logging(service: str, level: str = "info", fmt: str = "json") -> None:
    """Configures structlog (and the stdlib root logger it renders through) once per process."""
    numeric_level = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_trace_context,
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr)


def get_logger(name: str | None = None) -> Any:
    """A lazy structlog logger (safe at import time, before configure); ``name`` becomes ``module``."""
    return structlog.get_logger() if name is None else structlog.get_logger(module=name)
