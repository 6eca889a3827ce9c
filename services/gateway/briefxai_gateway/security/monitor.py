"""Lockouts after repeated authentication failures, and the rules that raise security events.

Authentication failures are counted per key id (when the credential names one) and per peer host in a
sliding window of ``auth.lockout.window_seconds``; at ``max_failures`` the key, or the peer, is refused
for ``lockout_seconds`` (the auth interceptor asks :meth:`SecurityMonitor.lockout_remaining` first).

Finished calls feed three rules, per actor, within ``auth.rules.window_seconds``:

- ``cross_tenant_probing``: ``not_found_threshold`` NOT_FOUND answers (guessing other tenants' ids);
- ``mass_export``: ``export_threshold`` successful result reads and exports;
- ``invalid_argument_burst``: ``invalid_argument_threshold`` INVALID_ARGUMENT answers.

Each rule fires once per window per actor. A security event is an audit record (``security.<kind>``),
a ``security_event`` warning log line and ``briefxai_security_events_total{service="gateway",kind}``.

Memory stays bounded whatever the callers do: a window keeps at most its threshold's timestamps, and
each table is an LRU of at most ``max_entries`` subjects, windows idle for longer than the window
dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from briefxai_common.logging import get_logger
from briefxai_common.security_metrics import SECURITY_EVENTS

from ..security_settings import LockoutSettings, SecurityRuleSettings
from .audit import AuditEvent
from .principal import ANONYMOUS_ACTOR, Principal

log = get_logger(__name__)

DEFAULT_MAX_ENTRIES = 10_000
MAX_KEY_ID_LENGTH = 128
LOCKOUT = "lockout"
CROSS_TENANT_PROBING = "cross_tenant_probing"
MASS_EXPORT = "mass_export"
INVALID_ARGUMENT_BURST = "invalid_argument_burst"
EXPORT_ACTIONS = frozenset({"read_results", "export"})


class MonitorSettings(Protocol):
    """What the monitor reads of ``AuthSettings``."""

    @property
    def lockout(self) -> LockoutSettings: ...

    @property
    def rules(self) -> SecurityRuleSettings: ...


Recorder = Callable[[AuditEvent], Awaitable[None]]


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string, without the port: ``ipv4:10.0.0.1:5555`` -> ``10.0.0.1``,
    ``ipv6:[::1]:5555`` (or its percent-encoded form) -> ``::1``; other forms (``unix:...``) whole."""
    scheme, sep, address = peer.partition(":")
    if not sep:
        return peer
    address = unquote(address)
    if scheme == "ipv6":
        if address.startswith("["):
            return address[1 : address.find("]")] if "]" in address else address[1:]
        return address
    if scheme == "ipv4":
        return address.rpartition(":")[0] or address
    return peer


@dataclass
class _Window:
    """Timestamps of the recent occurrences of one thing (at most ``limit`` of them are needed to tell
    whether ``limit`` fell within the window), and until when it is quiet after it fired."""

    times: deque[float] = field(default_factory=deque)
    quiet_until: float = 0.0

    def add(self, now: float, window: float, limit: int) -> int:
        """Adds an occurrence at ``now``; the count within the window, up to ``limit``."""
        self.times.append(now)
        self.prune(now, window)
        while len(self.times) > limit:
            self.times.popleft()
        return len(self.times)

    def prune(self, now: float, window: float) -> None:
        while self.times and self.times[0] <= now - window:
            self.times.popleft()


class _Table:
    """Windows by subject: an LRU of at most ``max_entries``."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.windows: OrderedDict[str, _Window] = OrderedDict()

    def touch(self, subject: str, now: float, window: float) -> _Window:
        """The window of ``subject`` (a new one if it has none), now the most recently used."""
        self._drop_idle(now, window)
        found = self.windows.get(subject)
        if found is None:
            found = self.windows[subject] = _Window()
            while len(self.windows) > self.max_entries:
                self.windows.popitem(last=False)
        else:
            self.windows.move_to_end(subject)
        return found

    def _drop_idle(self, now: float, window: float) -> None:
        """Drops, from the least recently used end, windows with nothing left in them."""
        while self.windows:
            oldest = next(iter(self.windows.values()))
            idle = not oldest.times or oldest.times[-1] <= now - window
            if not (idle and oldest.quiet_until <= now):
                break
            self.windows.popitem(last=False)

    def __len__(self) -> int:
        return len(self.windows)


class SecurityMonitor:
    """Counts authentication failures and finished calls; locks out and raises security events.

    ``record`` stores the audit record of each event (None: log line and metric only); ``clock`` is
    monotonic seconds (a fake one in tests). Reads ``settings.lockout`` and ``settings.rules`` on every
    call, so a reload that swaps them (:meth:`reconfigure`) applies at once.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        record: Recorder | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._settings = settings
        self._record = record
        self._clock = clock
        self._max_entries = max_entries
        self._failures = _Table(max_entries)
        self._rules = _Table(max_entries)
        self._locked_until: dict[str, float] = {}

    def reconfigure(self, settings: MonitorSettings) -> None:
        self._settings = settings

    @property
    def tracked(self) -> int:
        """How many subjects the monitor holds state for (failure and rule windows, lockouts)."""
        return len(self._failures) + len(self._rules) + len(self._locked_until)

    def lockout_remaining(self, key_id: str, peer: str) -> float:
        """Seconds left while the key id (when given) or the peer's host is locked out, else 0."""
        now = self._clock()
        return max((self._remaining(subject, now) for subject in _subjects(key_id, peer)), default=0.0)

    async def authentication_failed(
        self, *, key_id: str, peer: str, reason: str, rpc: str, trace_id: str = "", tenant_id: str = ""
    ) -> None:
        """Counts a refused credential against its key id and its peer's host; locks out whichever
        reaches ``max_failures`` within the window (one ``lockout`` event per lockout). Failures of a
        key or peer already locked out are not counted: they are refused anyway."""
        lockout = self._settings.lockout
        now = self._clock()
        for subject in _subjects(key_id, peer):
            if self._remaining(subject, now) > 0:
                continue
            window = self._failures.touch(subject, now, lockout.window_seconds)
            failures = window.add(now, lockout.window_seconds, lockout.max_failures)
            if failures < lockout.max_failures:
                continue
            window.times.clear()
            self._lock(subject, now + lockout.lockout_seconds, now)
            locked = subject.partition(":")[0]
            await self._raise(
                LOCKOUT,
                actor=subject if locked == "key" else ANONYMOUS_ACTOR,
                tenant_id=tenant_id,
                peer=peer,
                rpc=rpc,
                resource=subject,
                trace_id=trace_id,
                details={
                    "locked": locked,
                    "failures": failures,
                    "window_seconds": lockout.window_seconds,
                    "lockout_seconds": lockout.lockout_seconds,
                    "last_reason": reason,
                },
            )

    async def call_finished(
        self, *, principal: Principal, peer: str, rpc: str, action: str, status_code: str, trace_id: str = ""
    ) -> None:
        """Feeds one authenticated call's outcome to the rules; raises the events of those that fire."""
        rules = self._settings.rules
        kind, threshold = _rule_for(rules, action, status_code)
        if not kind:
            return
        now = self._clock()
        window = self._rules.touch(f"{kind}|{principal.actor}", now, rules.window_seconds)
        count = window.add(now, rules.window_seconds, threshold)
        if count < threshold or window.quiet_until > now:
            return
        window.times.clear()
        window.quiet_until = now + rules.window_seconds
        await self._raise(
            kind,
            actor=principal.actor,
            tenant_id=principal.tenant_id,
            peer=peer,
            rpc=rpc,
            resource=principal.actor,
            trace_id=trace_id,
            details={"count": count, "threshold": threshold, "window_seconds": rules.window_seconds},
        )

    def _remaining(self, subject: str, now: float) -> float:
        until = self._locked_until.get(subject)
        if until is None:
            return 0.0
        if until <= now:
            del self._locked_until[subject]
            return 0.0
        return until - now

    def _lock(self, subject: str, until: float, now: float) -> None:
        self._locked_until[subject] = until
        if len(self._locked_until) > self._max_entries:
            for expired in [s for s, u in self._locked_until.items() if u <= now]:
                del self._locked_until[expired]
        while len(self._locked_until) > self._max_entries:
            del self._locked_until[min(self._locked_until, key=self._locked_until.__getitem__)]

    async def _raise(
        self,
        kind: str,
        *,
        actor: str,
        tenant_id: str,
        peer: str,
        rpc: str,
        resource: str,
        trace_id: str,
        details: dict[str, Any],
    ) -> None:
        SECURITY_EVENTS.labels(service="gateway", kind=kind).inc()
        log.warning(
            "security_event",
            kind=kind,
            actor=actor,
            tenant_id=tenant_id,
            peer=peer,
            rpc=rpc,
            subject=resource,
            **details,
        )
        if self._record is None:
            return
        event = AuditEvent(
            actor=actor,
            tenant_id=tenant_id,
            peer=peer,
            rpc=rpc,
            resource=resource,
            action=f"security.{kind}",
            outcome="denied" if kind == LOCKOUT else "flagged",
            status_code="UNAUTHENTICATED" if kind == LOCKOUT else "OK",
            trace_id=trace_id,
            details={"kind": kind, **details},
        )
        try:
            await self._record(event)
        except Exception:
            # The event is already in the log and the metric; a failing audit store must not turn the
            # caller's answer into an internal error.
            log.exception("security_event_not_recorded", kind=kind, actor=actor)


def _subjects(key_id: str, peer: str) -> list[str]:
    """What a failure counts against: ``key:<id>`` (the id cut to a bounded length: it comes from the
    caller) and ``peer:<host>``."""
    subjects = [f"key:{key_id[:MAX_KEY_ID_LENGTH]}"] if key_id else []
    host = peer_host(peer)
    if host:
        subjects.append(f"peer:{host}")
    return subjects


def _rule_for(rules: SecurityRuleSettings, action: str, status_code: str) -> tuple[str, int]:
    """The rule a call with this action and status feeds, and its threshold; ("", 0) for none."""
    if status_code == "NOT_FOUND":
        return CROSS_TENANT_PROBING, rules.not_found_threshold
    if status_code == "INVALID_ARGUMENT":
        return INVALID_ARGUMENT_BURST, rules.invalid_argument_threshold
    if status_code == "OK" and action in EXPORT_ACTIONS:
        return MASS_EXPORT, rules.export_threshold
    return "", 0
