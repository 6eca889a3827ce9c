"""API keys: created with a tenant, a role and an optional lifetime; stored as the SHA-256 of the key
(``briefxai_common.apikeys``); listed and revoked by admins.

Admins manage the keys of their own tenant; admins of the operator tenant (the gateway's ``tenant_id``)
those of every tenant. The bootstrap admin key (``auth.bootstrap_admin_key_file``, written by
``briefxai up``) is stored at start as an operator admin key unless it is known already.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from briefxai_common.apikeys import generate_api_key, hash_api_key, key_id_of
from briefxai_common.errors import InvalidArgument, NotFound, PermissionDenied

from ..concurrency import in_thread
from .principal import SYSTEM_ACTOR, Principal, Role

if TYPE_CHECKING:
    from ..store import Store

TENANT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
MAX_DESCRIPTION_CHARS = 200
# A key's lifetime, at most (100 years: "does not expire" is ttl 0).
MAX_TTL_SECONDS = 100 * 365 * 86400


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    tenant_id: str
    role: Role
    key_hash: str
    description: str
    created_by: str
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    last_used_time: datetime | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why the key is refused now (``revoked``, ``expired``), or None while it is valid."""
        if self.revoke_time is not None:
            return "revoked"
        if self.expire_time is not None and self.expire_time <= now:
            return "expired"
        return None


def check_tenant_id(value: str, field: str = "tenant_id") -> str:
    if not TENANT_ID.match(value):
        raise InvalidArgument(field, "must be 1..64 characters of letters, digits, '.', '_' or '-'")
    return value


class KeyManager:
    def __init__(self, store: Store, operator_tenant: str) -> None:
        self.store = store
        self.operator_tenant = operator_tenant

    def _scope(self, caller: Principal) -> str | None:
        """The tenant whose keys ``caller`` manages (None: every tenant's)."""
        return None if caller.tenant_id == self.operator_tenant else caller.tenant_id

    async def create(
        self, caller: Principal, tenant_id: str, role: Role | None, ttl_seconds: int, description: str
    ) -> tuple[ApiKeyRecord, str]:
        """A new key and its record; the key is returned once and never stored."""
        tenant_id = check_tenant_id(tenant_id or caller.tenant_id)
        if role is None:
            raise InvalidArgument("role", "must be ROLE_VIEWER, ROLE_ANALYST or ROLE_ADMIN")
        if ttl_seconds < 0 or ttl_seconds > MAX_TTL_SECONDS:
            raise InvalidArgument("ttl_seconds", f"must be 0 (no expiry) to {MAX_TTL_SECONDS}")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidArgument("description", f"at most {MAX_DESCRIPTION_CHARS} characters")
        scope = self._scope(caller)
        if scope is not None and tenant_id != scope:
            raise PermissionDenied(f"an admin of tenant {scope!r} creates keys of that tenant only")
        key = generate_api_key()
        now = utcnow()
        record = ApiKeyRecord(
            id=key_id_of(key),
            tenant_id=tenant_id,
            role=role,
            key_hash=hash_api_key(key),
            description=description,
            created_by=caller.actor,
            create_time=now,
            expire_time=now + timedelta(seconds=ttl_seconds) if ttl_seconds else None,
        )
        await in_thread(self.store.insert_api_key, record)
        return record, key

    async def list(self, caller: Principal, include_inactive: bool) -> list[ApiKeyRecord]:
        return await in_thread(self.store.list_api_keys, self._scope(caller), include_inactive, utcnow())

    async def revoke(self, caller: Principal, key_id: str) -> ApiKeyRecord:
        key_id = key_id.strip()
        if not key_id:
            raise InvalidArgument("id", "must be non-empty")
        record = await in_thread(self.store.revoke_api_key, key_id, self._scope(caller), utcnow())
        if record is None:
            raise NotFound(f"API key {key_id!r} not found")
        return record

    async def lookup(self, key: str) -> ApiKeyRecord | None:
        return await in_thread(self.store.api_key_by_hash, hash_api_key(key))

    async def touch(self, key_id: str) -> None:
        await in_thread(self.store.touch_api_key, key_id, utcnow())

    async def ensure_bootstrap(self, path: str) -> ApiKeyRecord | None:
        """Stores the key in ``path`` as an operator admin key unless known; returns the new record, or
        None when it was known already. A file that does not hold a key is a configuration error."""
        key = (await in_thread(Path(path).read_text)).strip()
        key_id = key_id_of(key)
        if await self.lookup(key) is not None:
            return None
        record = ApiKeyRecord(
            id=key_id,
            tenant_id=self.operator_tenant,
            role=Role.ADMIN,
            key_hash=hash_api_key(key),
            description=f"bootstrap admin key ({Path(path).name})",
            created_by=SYSTEM_ACTOR,
            create_time=utcnow(),
        )
        await in_thread(self.store.insert_api_key, record)
        return record
