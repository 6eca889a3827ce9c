"""gRPC adapter of ``briefxai.gateway.v1.SecurityService``: API keys, the audit trail, users' data.

The auth interceptor has admitted the caller (admins only) and bound its principal; domain errors are
mapped to status codes by the bootstrap's interceptor.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from briefxai.gateway.v1 import security_pb2, security_pb2_grpc
from briefxai_common.errors import InvalidArgument, Unauthenticated

from .security.audit import AuditRecordRow
from .security.keys import ApiKeyRecord
from .security.principal import Principal, Role, current_principal

if TYPE_CHECKING:
    from .server import Gateway

SERVICE_NAME = security_pb2.DESCRIPTOR.services_by_name["SecurityService"].full_name
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
ROLES_TO_PB = {
    Role.VIEWER: security_pb2.ROLE_VIEWER,
    Role.ANALYST: security_pb2.ROLE_ANALYST,
    Role.ADMIN: security_pb2.ROLE_ADMIN,
}
ROLES_FROM_PB = {value: role for role, value in ROLES_TO_PB.items()}


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def api_key_to_pb(record: ApiKeyRecord) -> security_pb2.ApiKey:
    message = security_pb2.ApiKey(
        id=record.id,
        tenant_id=record.tenant_id,
        role=ROLES_TO_PB[record.role],
        description=record.description,
        create_time=_timestamp(record.create_time),
        created_by=record.created_by,
    )
    if record.expire_time is not None:
        message.expire_time.CopyFrom(_timestamp(record.expire_time))
    if record.revoke_time is not None:
        message.revoke_time.CopyFrom(_timestamp(record.revoke_time))
    if record.last_used_time is not None:
        message.last_used_time.CopyFrom(_timestamp(record.last_used_time))
    return message


def _time_or_none(message: Any, field: str) -> datetime | None:
    return message.__getattribute__(field).ToDatetime(tzinfo=UTC) if message.HasField(field) else None


def audit_record_to_pb(record: AuditRecordRow) -> security_pb2.AuditRecord:
    return security_pb2.AuditRecord(
        sequence=record.sequence,
        time=_timestamp(record.time),
        actor=record.actor,
        tenant_id=record.tenant_id,
        peer=record.peer,
        rpc=record.rpc,
        resource=record.resource,
        action=record.action,
        outcome=record.outcome,
        status_code=record.status_code,
        trace_id=record.trace_id,
        details_json=record.details_json,
        previous_hash=record.previous_hash,
        hash=record.hash,
    )


def _caller() -> Principal:
    principal = current_principal()
    if principal is None:
        raise Unauthenticated("no caller bound to this call")
    return principal


class SecurityServicer(security_pb2_grpc.SecurityServiceServicer):
    def __init__(self, gateway: Callable[[], Gateway]) -> None:
        # A callable: the gateway's parts are created when the service starts, after registration.
        self._gateway = gateway

    async def CreateApiKey(
        self, request: security_pb2.CreateApiKeyRequest, context: Context
    ) -> security_pb2.CreateApiKeyResponse:
        record, key = await self._gateway().keys.create(
            _caller(),
            request.tenant_id,
            ROLES_FROM_PB.get(request.role),
            request.ttl_seconds,
            request.description,
        )
        return security_pb2.CreateApiKeyResponse(api_key=api_key_to_pb(record), key=key)

    async def ListApiKeys(
        self, request: security_pb2.ListApiKeysRequest, context: Context
    ) -> security_pb2.ListApiKeysResponse:
        records = await self._gateway().keys.list(_caller(), request.include_inactive)
        return security_pb2.ListApiKeysResponse(api_keys=[api_key_to_pb(r) for r in records])

    async def RevokeApiKey(
        self, request: security_pb2.RevokeApiKeyRequest, context: Context
    ) -> security_pb2.RevokeApiKeyResponse:
        gateway = self._gateway()
        record = await gateway.keys.revoke(_caller(), request.id)
        gateway.guard.authenticator.forget(record.id)
        return security_pb2.RevokeApiKeyResponse(api_key=api_key_to_pb(record))

    async def VerifyAuditLog(
        self, request: security_pb2.VerifyAuditLogRequest, context: Context
    ) -> security_pb2.VerifyAuditLogResponse:
        result = await self._gateway().audit.verify()
        return security_pb2.VerifyAuditLogResponse(
            intact=result.intact,
            records_checked=result.records_checked,
            first_bad_sequence=result.first_bad_sequence or 0,
            reason=result.reason or "",
            records_checkpointed=result.records_checkpointed,
        )

    async def ExportAuditLog(
        self, request: security_pb2.ExportAuditLogRequest, context: Context
    ) -> AsyncIterator[security_pb2.ExportAuditLogResponse]:
        start = _time_or_none(request, "start_time")
        end = _time_or_none(request, "end_time")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        gateway = self._gateway()
        caller = _caller()
        tenant = None if caller.tenant_id == gateway.settings.tenant_id else caller.tenant_id
        async for chunk in gateway.audit.export(start, end, tenant):
            yield security_pb2.ExportAuditLogResponse(records=[audit_record_to_pb(r) for r in chunk])

    async def EraseUser(
        self, request: security_pb2.EraseUserRequest, context: Context
    ) -> security_pb2.EraseUserResponse:
        outcome = await self._gateway().users.erase(request.user_id)
        return security_pb2.EraseUserResponse(
            deleted_rows=dict(outcome.deleted_rows), stale_analysis_ids=list(outcome.stale_analysis_ids)
        )

    async def ExportUserData(
        self, request: security_pb2.ExportUserDataRequest, context: Context
    ) -> security_pb2.ExportUserDataResponse:
        document = await self._gateway().users.export(request.user_id)
        return security_pb2.ExportUserDataResponse(
            json_document=json.dumps(document, ensure_ascii=False, sort_keys=True, default=str)
        )
