"""Which role each gateway method needs, what it is called in the audit trail, and whether it is recorded.

Default deny: a method of a protected service that is not listed here is refused to everyone (a new RPC
must be added on purpose). Methods of other services (health, reflection) are open: probes need them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .principal import Role

ANALYSIS_SERVICE = "/briefxai.gateway.v1.AnalysisService/"
SECURITY_SERVICE = "/briefxai.gateway.v1.SecurityService/"
PROTECTED_SERVICES = (ANALYSIS_SERVICE, SECURITY_SERVICE)


class Recorded(enum.Enum):
    """When a call is written to the audit trail (failures to authenticate always are)."""

    ALWAYS = "always"
    # Reads of results: unless ``audit.record_reads`` is off.
    READS = "reads"
    # Only when refused (PERMISSION_DENIED).
    DENIED = "denied"


@dataclass(frozen=True)
class Permission:
    role: Role
    action: str
    recorded: Recorded


_ANALYSIS = {
    "CreateAnalysis": Permission(Role.ANALYST, "create", Recorded.ALWAYS),
    "UploadAnalysis": Permission(Role.ANALYST, "create", Recorded.ALWAYS),
    "GetAnalysis": Permission(Role.VIEWER, "get", Recorded.DENIED),
    "ListAnalyses": Permission(Role.VIEWER, "list", Recorded.DENIED),
    "WatchAnalysis": Permission(Role.VIEWER, "watch", Recorded.DENIED),
    "CancelAnalysis": Permission(Role.ANALYST, "cancel", Recorded.ALWAYS),
    "DeleteAnalysis": Permission(Role.ANALYST, "delete", Recorded.ALWAYS),
    "GetAnalysisResults": Permission(Role.VIEWER, "read_results", Recorded.READS),
    "AssignConversations": Permission(Role.ANALYST, "assign", Recorded.ALWAYS),
    "GetPerformanceReport": Permission(Role.VIEWER, "read_performance", Recorded.DENIED),
}
_SECURITY = {
    "CreateApiKey": Permission(Role.ADMIN, "key.create", Recorded.ALWAYS),
    "ListApiKeys": Permission(Role.ADMIN, "key.list", Recorded.ALWAYS),
    "RevokeApiKey": Permission(Role.ADMIN, "key.revoke", Recorded.ALWAYS),
    "VerifyAuditLog": Permission(Role.ADMIN, "audit.verify", Recorded.ALWAYS),
    "ExportAuditLog": Permission(Role.ADMIN, "export", Recorded.ALWAYS),
    "EraseUser": Permission(Role.ADMIN, "user.erase", Recorded.ALWAYS),
    "ExportUserData": Permission(Role.ADMIN, "export", Recorded.ALWAYS),
}
PERMISSIONS: dict[str, Permission] = {
    **{ANALYSIS_SERVICE + name: p for name, p in _ANALYSIS.items()},
    **{SECURITY_SERVICE + name: p for name, p in _SECURITY.items()},
}
#: The HTTP report (``GET /analyses/{id}/report``): a read of results.
REPORT = Permission(Role.VIEWER, "read_results", Recorded.READS)


def is_protected(method: str) -> bool:
    return method.startswith(PROTECTED_SERVICES)


def permission_for(method: str) -> Permission | None:
    """The permission a protected method needs; None: an unlisted method, refused to everyone."""
    return PERMISSIONS.get(method)
