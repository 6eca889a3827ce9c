"""API keys: one row per key with the SHA-256 of the key, never the key (``security/keys.py``).

Keys are looked up by hash before any tenant is known, and operator admins list and revoke the keys of
every tenant, so these methods take the tenant as an argument (None: every tenant) instead of using the
tenant of the current call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update

from .. import schema
from ..security.keys import ApiKeyRecord
from ..security.principal import Role
from .base import StoreBase, aware


def _optional_time(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def _record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        role=Role.parse(row.role),
        key_hash=row.key_hash,
        description=row.description,
        created_by=row.created_by,
        create_time=aware(row.create_time),
        expire_time=_optional_time(row.expire_time),
        revoke_time=_optional_time(row.revoke_time),
        last_used_time=_optional_time(row.last_used_time),
    )


class KeyRepository(StoreBase):
    def insert_api_key(self, record: ApiKeyRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(schema.api_keys).values(
                    id=record.id,
                    tenant_id=record.tenant_id,
                    role=record.role.label,
                    key_hash=record.key_hash,
                    description=record.description,
                    created_by=record.created_by,
                    create_time=record.create_time,
                    expire_time=record.expire_time,
                    revoke_time=record.revoke_time,
                    last_used_time=record.last_used_time,
                )
            )

    def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        k = schema.api_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.api_keys).where(k.key_hash == key_hash)).first()
        return None if row is None else _record(row)

    def list_api_keys(
        self, tenant_id: str | None, include_inactive: bool, now: datetime
    ) -> list[ApiKeyRecord]:
        """Keys of ``tenant_id`` (None: every tenant), newest first; revoked and expired ones only with
        ``include_inactive``."""
        k = schema.api_keys.c
        query = select(schema.api_keys).order_by(k.create_time.desc(), k.id)
        if tenant_id is not None:
            query = query.where(k.tenant_id == tenant_id)
        if not include_inactive:
            query = query.where(k.revoke_time.is_(None), or_(k.expire_time.is_(None), k.expire_time > now))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def revoke_api_key(self, key_id: str, tenant_id: str | None, now: datetime) -> ApiKeyRecord | None:
        """Sets the key's revoke time (kept if it was revoked already); None when there is no such key."""
        k = schema.api_keys.c
        where = [k.id == key_id]
        if tenant_id is not None:
            where.append(k.tenant_id == tenant_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.api_keys).where(*where, k.revoke_time.is_(None)).values(revoke_time=now)
            )
            row = conn.execute(select(schema.api_keys).where(*where)).first()
        return None if row is None else _record(row)

    def touch_api_key(self, key_id: str, now: datetime) -> None:
        k = schema.api_keys.c
        with self.engine.begin() as conn:
            conn.execute(update(schema.api_keys).where(k.id == key_id).values(last_used_time=now))
