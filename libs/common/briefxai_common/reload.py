"""Reloading a running service's settings (SIGHUP): what can change safely changes now, the rest is
reported as needing a restart.

:meth:`Reloader.reload` reads the config file again through the service's settings class (the same
path, or ``BRIEFXAI_CONFIG``, and environment the process started with) and validates it. An invalid
file is rejected: logged at error (``config_reload_rejected``), the old settings stay. A valid one is
compared with the settings in force; of the changed top-level keys,

- the logging keys (``log_level``, ``log_format``, ``log_file``, ``log_max_mb``, ``log_backups``)
  reconfigure the logs;
- ``features`` updates the service's :class:`~briefxai_common.features.FeatureFlags`;
- the rest go to the service's own hook (``Service.reload``), which applies what it can change safely
  (the gateway: retries, breakers, outage budget; the facets service: its provider chain) and returns
  the keys it applied.

Keys nobody applied (ports, the store, model paths...) keep their old value until a restart. Every
reload is logged once (``config_reloaded``: ``changed`` dotted keys, ``applied``, ``needs_restart``),
before the new log settings take effect, so a reload that raises the log level still shows.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from briefxai_common.config import BreakerSettings, ConfigError, ServiceSettings
from briefxai_common.features import FeatureFlags
from briefxai_common.logging import configure_logging, get_logger
from briefxai_common.resilience import CircuitBreaker

log = get_logger(__name__)

LOGGING_KEYS = frozenset({"log_level", "log_format", "log_file", "log_max_mb", "log_backups"})
FEATURES_KEY = "features"
# A service's hook: the new settings and the changed top-level keys left to it -> the keys it applied.
ReloadHook = Callable[[Any, frozenset[str]], Awaitable[Collection[str]] | Collection[str]]
S = TypeVar("S", bound=ServiceSettings)


def reconfigure_breaker(breaker: CircuitBreaker, settings: BreakerSettings) -> None:
    """Gives a breaker in use the thresholds and timeouts of ``settings``; its state and counts stay."""
    fresh = settings.breaker(breaker.name, is_failure=breaker.is_failure, probe=breaker.probe)
    for name in (
        "failure_threshold",
        "success_threshold",
        "open_timeout",
        "half_open_max_calls",
        "probe_interval",
    ):
        setattr(breaker, name, getattr(fresh, name))


def changed_keys(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ (``retry.max_attempts``, ``features.x``), sorted."""
    return sorted(_diff(old.model_dump(mode="json"), new.model_dump(mode="json"), prefix))


def _diff(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in old.keys() | new.keys():
            path = f"{prefix}{key}"
            if key not in old or key not in new:
                paths.append(path)
            else:
                paths += _diff(old[key], new[key], path + ".")
        return paths
    return [] if old == new else [prefix.rstrip(".")]


@dataclass
class ReloadOutcome:
    """What one reload did: ``accepted`` False when the file was invalid (``error`` says why)."""

    accepted: bool
    changed: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    error: str = ""


def configure_service_logging(service_name: str, settings: ServiceSettings) -> None:
    """The service's logs as its settings say: level, format, file and rotation."""
    configure_logging(
        service_name,
        settings.log_level,
        settings.log_format,
        log_file=settings.log_file,
        max_mb=settings.log_max_mb,
        backups=settings.log_backups,
    )


class Reloader(Generic[S]):
    """Reloads one service's settings; ``current`` is what is in force (restart-only keys keep their
    old value there, so a later reload still reports them)."""

    def __init__(
        self,
        service_name: str,
        settings: S,
        load: Callable[[], S],
        *,
        features: FeatureFlags | None = None,
        hook: ReloadHook | None = None,
        configure_logs: bool = True,
    ) -> None:
        self.service_name = service_name
        self.current = settings
        self.load = load
        self.features = features
        self.hook = hook
        # Off where the process's logging is not the service's own (tests with several services).
        self.configure_logs = configure_logs
        self._lock = asyncio.Lock()

    async def reload(self) -> ReloadOutcome:
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> ReloadOutcome:
        try:
            new = await asyncio.to_thread(self.load)
        except ConfigError as exc:
            log.error("config_reload_rejected", service=self.service_name, error=str(exc))
            return ReloadOutcome(False, error=str(exc))
        changed = changed_keys(self.current, new)
        if not changed:
            # A SIGHUP and the file watcher may both ask for one edit: the second finds nothing to do.
            log.debug("config_unchanged", service=self.service_name)
            return ReloadOutcome(True)
        top = {path.split(".", 1)[0] for path in changed}
        applied: set[str] = set()
        left = frozenset(top - {FEATURES_KEY} - LOGGING_KEYS)
        if left and self.hook is not None:
            # The hook checks everything before it changes anything: raising rejects the whole reload.
            try:
                result = self.hook(new, left)
                done = await result if inspect.isawaitable(result) else result
            except (ConfigError, ValueError) as exc:
                log.error(
                    "config_reload_rejected", service=self.service_name, error=str(exc), changed=changed
                )
                return ReloadOutcome(False, changed=changed, error=str(exc))
            applied |= set(done) & left
        if FEATURES_KEY in top and self.features is not None:
            self.features.update(new.features)
            applied.add(FEATURES_KEY)
        logging_changed = top & LOGGING_KEYS
        if self.configure_logs:
            applied |= logging_changed
        outcome = ReloadOutcome(
            True,
            changed=changed,
            applied=sorted(applied),
            needs_restart=sorted(top - applied),
        )
        fields: dict[str, Any] = {}
        if self.features is not None:
            fields = {"features": self.features.snapshot(), "unknown_features": self.features.unknown}
        log.info(
            "config_reloaded",
            service=self.service_name,
            changed=outcome.changed,
            applied=outcome.applied,
            needs_restart=outcome.needs_restart,
            **fields,
        )
        self.current = self.current.model_copy(update={key: getattr(new, key) for key in applied})
        if logging_changed and self.configure_logs:
            configure_service_logging(self.service_name, new)
        return outcome
