"""Security metrics every service may raise (one registration per process)."""

from __future__ import annotations

from prometheus_client import Counter

#: kinds: auth_failure, lockout, service_token_rejected, cross_tenant_probing, mass_export,
#: invalid_argument_burst, permission_denied.
SECURITY_EVENTS = Counter(
    "briefxai_security_events_total",
    "Security events by kind (authentication failures, lockouts, rules that fired).",
    ["service", "kind"],
)
AUTH_FAILURES = Counter(
    "briefxai_auth_failures_total",
    "Calls refused UNAUTHENTICATED, by reason (missing, malformed, unknown, expired, revoked, locked, "
    "bad_jwt, bad_service_token).",
    ["service", "reason"],
)
