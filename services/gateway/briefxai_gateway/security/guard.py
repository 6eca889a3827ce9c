"""The checks every protected call passes, without gRPC: lockout, authentication, role, then after the
call the audit record and the security rules. ``interceptor.py`` (gRPC) and ``report_route.py`` (HTTP)
call it.

With ``auth.mode: off`` every caller is an admin of the operator tenant named ``anonymous``; what they
change is still recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from briefxai_common.errors import PermissionDenied, Unauthenticated
from briefxai_common.logging import get_logger
from briefxai_common.security_metrics import AUTH_FAILURES, SECURITY_EVENTS

from ..security_settings import AuditSettings, AuthSettings
from .audit import AuditEvent
from .authn import AuthenticationFailed, Authenticator
from .monitor import CROSS_TENANT_PROBING, INVALID_ARGUMENT_BURST, LOCKOUT, MASS_EXPORT, SecurityMonitor
from .permissions import Permission, Recorded
from .principal import ANONYMOUS_ACTOR, Principal, Role

log = get_logger(__name__)
AUTH_FAILURE = "auth_failure"
Recorder = Callable[[AuditEvent], Awaitable[None]]


@dataclass(frozen=True)
class CallFacts:
    """What the audit trail says of a call besides its principal: where from, which method, the trace."""

    rpc: str
    peer: str
    trace_id: str = ""


@dataclass
class Outcome:
    """How a call ended: its status code name, what it acted on, further facts."""

    status_code: str = "OK"
    resource: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def outcome_label(status_code: str) -> str:
    if status_code == "OK":
        return "ok"
    if status_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return "denied"
    return "failed"


class Guard:
    def __init__(
        self,
        auth: AuthSettings,
        audit: AuditSettings,
        operator_tenant: str,
        authenticator: Authenticator,
        monitor: SecurityMonitor,
        record: Recorder,
    ) -> None:
        self.auth = auth
        self.audit = audit
        self.operator_tenant = operator_tenant
        self.authenticator = authenticator
        self.monitor = monitor
        self.record = record
        # Every kind's series exists from the start at 0, so that the first event is an increase.
        for kind in (AUTH_FAILURE, LOCKOUT, CROSS_TENANT_PROBING, MASS_EXPORT, INVALID_ARGUMENT_BURST):
            SECURITY_EVENTS.labels(service="gateway", kind=kind)

    @property
    def enabled(self) -> bool:
        return self.auth.mode == "on"

    async def admit(
        self, authorization: str | None, permission: Permission | None, call: CallFacts
    ) -> Principal:
        """The caller, allowed to make ``call``; raises Unauthenticated or PermissionDenied (recorded)."""
        if not self.enabled:
            principal = Principal(ANONYMOUS_ACTOR, self.operator_tenant, Role.ADMIN)
        else:
            principal = await self._authenticate(authorization, call)
        if permission is None or not principal.may(permission.role):
            action = permission.action if permission is not None else "unknown"
            needed = (
                "no role (the method is not open to callers)" if permission is None else permission.role.label
            )
            await self._event(
                principal,
                call,
                action=action,
                status_code="PERMISSION_DENIED",
                details={"role": principal.role.label, "needed": needed},
            )
            await self.monitor.call_finished(
                principal=principal,
                peer=call.peer,
                rpc=call.rpc,
                action=action,
                status_code="PERMISSION_DENIED",
                trace_id=call.trace_id,
            )
            raise PermissionDenied(f"role {principal.role.label} may not call {call.rpc}; it needs {needed}")
        return principal

    async def _authenticate(self, authorization: str | None, call: CallFacts) -> Principal:
        token_key_id = self.authenticator.key_id_in(authorization)
        locked = self.monitor.lockout_remaining(token_key_id, call.peer)
        if locked > 0:
            await self._failure(AuthenticationFailed("locked", token_key_id), call)
            raise Unauthenticated(f"too many failed attempts: locked out for {locked:.0f} s more")
        try:
            return await self.authenticator.authenticate(authorization)
        except AuthenticationFailed as failure:
            await self._failure(failure, call)
            await self.monitor.authentication_failed(
                key_id=failure.key_id,
                peer=call.peer,
                reason=failure.reason,
                rpc=call.rpc,
                trace_id=call.trace_id,
            )
            raise Unauthenticated(failure.message) from None

    async def _failure(self, failure: AuthenticationFailed, call: CallFacts) -> None:
        AUTH_FAILURES.labels(service="gateway", reason=failure.reason.partition(":")[0]).inc()
        SECURITY_EVENTS.labels(service="gateway", kind=AUTH_FAILURE).inc()
        log.warning("auth_failed", reason=failure.reason, key_id=failure.key_id, peer=call.peer, rpc=call.rpc)
        actor = f"key:{failure.key_id}" if failure.key_id else ANONYMOUS_ACTOR
        await self.record(
            AuditEvent(
                actor=actor,
                tenant_id="",
                peer=call.peer,
                rpc=call.rpc,
                resource="",
                action="auth.failure",
                outcome="denied",
                status_code="UNAUTHENTICATED",
                trace_id=call.trace_id,
                details={"reason": failure.reason},
            )
        )

    async def finished(
        self, principal: Principal, permission: Permission, call: CallFacts, outcome: Outcome
    ) -> None:
        """Records the call when its permission says so, and feeds the security rules."""
        recorded = permission.recorded is Recorded.ALWAYS or (
            permission.recorded is Recorded.READS and self.audit.record_reads
        )
        if recorded:
            await self._event(
                principal,
                call,
                action=permission.action,
                status_code=outcome.status_code,
                resource=outcome.resource,
                details=outcome.details,
            )
        await self.monitor.call_finished(
            principal=principal,
            peer=call.peer,
            rpc=call.rpc,
            action=permission.action,
            status_code=outcome.status_code,
            trace_id=call.trace_id,
        )

    async def _event(
        self,
        principal: Principal,
        call: CallFacts,
        *,
        action: str,
        status_code: str,
        resource: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.record(
            AuditEvent(
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                peer=call.peer,
                rpc=call.rpc,
                resource=resource,
                action=action,
                outcome=outcome_label(status_code),
                status_code=status_code,
                trace_id=call.trace_id,
                details=details or {},
            )
        )
