"""structlog JSON logs: service, level, timestamp, trace/span ids, request and analysis ids, redacted.

Every line, ours and those of libraries that log through the standard library (grpc, aiohttp,
SQLAlchemy, asyncio), is rendered by one formatter: one JSON object per line (or the console
renderer), with ``service``, ``level``, ``timestamp``, ``trace_id``/``span_id`` of the current
OpenTelemetry span when there is one, and whatever is bound in structlog's context (``request_id``
by the server interceptor, ``analysis_id`` by the gateway's scheduler while an analysis runs).

Redaction, on every value, nested ones included:

- secrets by key: the value of a key such as ``api_key``, ``authorization``, ``password``, ``token``,
  ``secret``, ``cookie``, ``credentials`` or ``private_key`` is replaced as a whole;
- secrets by value: ``sk-...`` keys, ``Bearer``/``Basic`` credentials, JWTs, ``user:password@`` in URLs,
  ``api_key=...``/``token=...`` assignments, AWS access key ids, GitHub tokens;
- personal data in free text (:mod:`briefxai_common.pii`: e-mail addresses, payment cards, IBANs,
  SSNs, phone numbers, a name after "my name is"), except under keys that hold identifiers or
  addresses (``*_id``, ``*_address``, ``*_url``, ``method``...); links and IP addresses are kept, as logs
  need the service addresses.

Output goes to stderr, or to ``log_file`` rotated at ``max_mb`` with ``backups`` older files kept.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from briefxai_common import pii

SECRET_KEY_PATTERN = re.compile(
    r"(api[_-]?key|secret|password|passwd|pwd|authorization|cookie|credentials?|private[_-]?key|"
    r"(^|_)token)$",
    re.I,
)
SECRET_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "[REDACTED]"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/\-]{8,}=*", re.I), "[REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"), "[REDACTED]"),
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"), "[REDACTED]"),
    (
        re.compile(
            r"\b((?:api[_-]?key|access[_-]?token|token|secret|password|passwd)\s*[=:]\s*)[^\s&,;\"']+", re.I
        ),
        r"\1[REDACTED]",
    ),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "[REDACTED]"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), "[REDACTED]"),
)
REDACTED = "[REDACTED]"
# Values under these keys are identifiers, addresses or names of code, not free text: no PII scan.
STRUCTURAL_KEYS = frozenset(
    {
        "timestamp", "level", "service", "module", "logger", "method", "code", "trace_id", "span_id",
        "address", "url", "base_url", "host", "path", "backend", "model", "provider", "stage", "state",
    }
)  # fmt: skip
MAX_DEPTH = 6
LOGGER_NAME = "briefxai"

_handler: logging.Handler | None = None


def _scrub(text: str, pii_scan: bool) -> str:
    for pattern, replacement in SECRET_VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    if pii_scan:
        text = pii.redact(text, urls=False, ips=False)
    return text


def _structural(key: str) -> bool:
    return key in STRUCTURAL_KEYS or key == "id" or key.endswith(("_id", "_url", "_address"))


def _redact_value(key: str, value: Any, depth: int) -> Any:
    if SECRET_KEY_PATTERN.search(key):
        return REDACTED
    if isinstance(value, str):
        return _scrub(value, not _structural(key))
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v, depth + 1) for v in value)
    return value


def mask_secrets(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with secrets masked by key and by value (no personal-data scan): for printing settings."""
    return {key: _mask(key, value) for key, value in values.items()}


def _mask(key: str, value: Any) -> Any:
    if SECRET_KEY_PATTERN.search(key) and value not in ("", None):
        return REDACTED
    if isinstance(value, str):
        return _scrub(value, pii_scan=False)
    if isinstance(value, dict):
        return mask_secrets({str(k): v for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_mask(key, v) for v in value]
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Masks secrets by key and by value, and personal data in free text (see the module docstring)."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value, 0)
    return event_dict


def add_trace_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Binds the current OpenTelemetry trace and span ids, when a span is recording."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def _add_service(service: str) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    def add(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each line (tests swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def rotating_handler(path: str | Path, max_mb: float, backups: int) -> logging.Handler:
    """A handler that writes each record's message as one line to ``path`` (its folder is created),
    renaming it to ``path.1`` (``.1`` to ``.2``...) when it would grow past ``max_mb`` MiB and deleting
    what is older than ``backups`` files. ``briefxai up`` writes each service's output through one."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        file, maxBytes=max(1, int(max_mb * 1024 * 1024)), backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def configure_logging(
    service: str,
    level: str = "info",
    fmt: str = "json",
    *,
    log_file: str = "",
    max_mb: float = 100.0,
    backups: int = 5,
) -> None:
    """Configures structlog and the standard library's root logger to render every line one way, to
    stderr or to ``log_file`` (rotated). Calling it again replaces the previous configuration."""
    global _handler
    numeric_level = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        add_trace_context,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=not log_file and sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=lambda *_: logging.getLogger(LOGGER_NAME),
        # Not cached: a reconfiguration (tests, a second service in one process) reaches every logger.
        cache_logger_on_first_use=False,
    )
    handler = rotating_handler(log_file, max_mb, backups) if log_file else _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    _handler = handler
    # Libraries log warnings and worse; our own loggers log at the configured level.
    root.setLevel(max(numeric_level, logging.WARNING))
    logging.getLogger(LOGGER_NAME).setLevel(numeric_level)


def reset_logging() -> None:
    """Undoes :func:`configure_logging` (structlog's defaults, our handler removed and closed)."""
    global _handler
    structlog.reset_defaults()
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
        _handler = None


def get_logger(name: str | None = None) -> Any:
    """A lazy structlog logger (safe at import time, before configure); ``name`` becomes ``module``."""
    return structlog.get_logger() if name is None else structlog.get_logger(module=name)
