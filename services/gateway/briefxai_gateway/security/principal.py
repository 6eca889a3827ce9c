"""The caller of the current call, and the tenant every store call made for it is scoped to.

The tenant travels in a context variable: the auth interceptor sets it for the call's task, a pipeline
sets it for its own task (``asyncio.to_thread`` copies the context, so store calls in worker threads
see it). The store reads it (``store/base.py``); outside any call it is the gateway's ``tenant_id``.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Ordered: each role may do everything the ones below it may."""

    VIEWER = 1
    ANALYST = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}: viewer, analyst or admin") from None


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``actor`` is what the audit trail names: ``key:<id>``, ``jwt:<subject>``,
    ``system`` or ``anonymous``."""

    actor: str
    tenant_id: str
    role: Role
    key_id: str = ""

    def may(self, needed: Role) -> bool:
        return self.role >= needed


SYSTEM_ACTOR = "system"
ANONYMOUS_ACTOR = "anonymous"

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)
_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


def current_principal() -> Principal | None:
    return _principal.get()


def current_tenant() -> str | None:
    """The tenant the current task is scoped to; None outside any call or pipeline."""
    return _tenant.get()


def bind_principal(principal: Principal) -> None:
    """Scopes the rest of the current task (and what it starts) to ``principal`` and its tenant."""
    _principal.set(principal)
    _tenant.set(principal.tenant_id)


def bind_tenant(tenant_id: str) -> None:
    """Scopes the rest of the current task (and what it starts) to ``tenant_id``."""
    _tenant.set(tenant_id)


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[None]:
    """Scopes the block to ``tenant_id``, then restores the previous scope."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)
